/* test-ctl.c: Check suite for snv-ctl.  A real libuv loop serves a socket in a temporary
 * directory from a second thread; the test thread is the client (snv_ctl_call, the ctl tool
 * main, or raw sockets for malformed and abandoned requests).  Also the golden renderings of
 * snv_ctl_print. */
#include "snv-ctl.h"
#include "snv-log.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef SPLITNVE_VERSION
#define SPLITNVE_VERSION "unknown"
#endif

/* ---- the server thread ---- */

struct server_ctx {
    uv_loop_t loop;
    uv_async_t stop;
    struct snv_ctl_server *server;
    pthread_t thread;
    char dir[40];
    char sub[60];
    char path[100];
    int loop_close_rc;
    atomic_int deferred_replied;
};

struct later {
    uv_timer_t timer;
    struct snv_ctl_req *req;
    struct server_ctx *ctx;
    unsigned long ms;
};

static struct server_ctx ctx;

static void h_echo(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)aux;
    json_t *a = json_array();
    for (int i = 0; i < argc; i++)
        json_array_append_new(a, json_string(argv[i]));
    snv_ctl_reply_ok(req, a);
}

static void h_fail(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    (void)aux;
    snv_ctl_reply_error(req, SNV_CTL_NOT_FOUND, "no such %s", "thing");
}

static void h_table(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    (void)aux;
    snv_ctl_reply_ok(req, json_pack("[{s:s, s:i}, {s:s, s:i}]", "vn", "blue", "tag", 100, "vn",
                                    "red", "tag", 7));
}

static void on_later_close(uv_handle_t *h)
{
    free(h->data);
}

static void on_later(uv_timer_t *t)
{
    struct later *l = t->data;
    atomic_fetch_add(&l->ctx->deferred_replied, 1);
    snv_ctl_reply_ok(l->req, json_pack("{s:i}", "waited", (int)l->ms));
    uv_close((uv_handle_t *)&l->timer, on_later_close);
}

/* Replies after argv[0] milliseconds: the request outlives the handler call. */
static void h_later(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    struct server_ctx *c = aux;
    (void)argc;
    struct later *l = calloc(1, sizeof *l);
    ck_assert_ptr_nonnull(l);
    l->req = req;
    l->ctx = c;
    l->ms = strtoul(argv[0], NULL, 10);
    uv_timer_init(&c->loop, &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, on_later, l->ms, 0);
}

static void on_stop(uv_async_t *a)
{
    struct server_ctx *c = a->data;
    snv_ctl_server_destroy(c->server);
    c->server = NULL;
    uv_close((uv_handle_t *)&c->stop, NULL);
}

static void *server_thread(void *arg)
{
    struct server_ctx *c = arg;
    uv_run(&c->loop, UV_RUN_DEFAULT);
    c->loop_close_rc = uv_loop_close(&c->loop);
    return NULL;
}

static void server_start_line_max(size_t line_max);

static void server_start(void)
{
    server_start_line_max(0);
}

/* line_max 0: the default limit. */
static void server_start_line_max(size_t line_max)
{
    memset(&ctx, 0, sizeof ctx);
    snprintf(ctx.dir, sizeof ctx.dir, "/tmp/snv-ctl-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(ctx.dir));
    snprintf(ctx.sub, sizeof ctx.sub, "%s/run", ctx.dir);
    snprintf(ctx.path, sizeof ctx.path, "%s/test.ctl", ctx.sub);
    ck_assert_int_eq(uv_loop_init(&ctx.loop), 0);
    ck_assert_int_eq(snv_ctl_server_create(&ctx.loop, ctx.path, &ctx.server), 0);
    if (line_max)
        snv_ctl_server_set_line_max(ctx.server, line_max);
    ck_assert_int_eq(snv_ctl_register(ctx.server, "test/echo", "[WORD...]", 0, -1, h_echo, &ctx),
                     0);
    ck_assert_int_eq(snv_ctl_register(ctx.server, "test/fail", "", 0, 0, h_fail, &ctx), 0);
    ck_assert_int_eq(snv_ctl_register(ctx.server, "test/table", "", 0, 0, h_table, &ctx), 0);
    ck_assert_int_eq(snv_ctl_register(ctx.server, "test/later", "MS", 1, 1, h_later, &ctx), 0);
    ck_assert_int_eq(uv_async_init(&ctx.loop, &ctx.stop, on_stop), 0);
    ctx.stop.data = &ctx;
    ck_assert_int_eq(pthread_create(&ctx.thread, NULL, server_thread, &ctx), 0);
}

static void server_stop(void)
{
    struct stat st;

    uv_async_send(&ctx.stop);
    ck_assert_int_eq(pthread_join(ctx.thread, NULL), 0);
    ck_assert_int_eq(ctx.loop_close_rc, 0);
    ck_assert_int_eq(lstat(ctx.path, &st), -1); /* unlinked on destroy */
    rmdir(ctx.sub);
    rmdir(ctx.dir);
}

/* ---- client helpers ---- */

static uint64_t ms_now(void)
{
    return snv_now_ms();
}

static int call(json_t **result, int timeout_ms, int argc, const char *const argv[])
{
    char err[256];
    return snv_ctl_call(ctx.path, argc, argv, timeout_ms, result, err, sizeof err);
}

static int raw_connect(void)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", ctx.path);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    return fd;
}

/* Sends data (errors ignored: the server may close early), half-closes if `eof`, and reads
 * until EOF or wait_ms. */
static char *raw_exchange_full(const void *data, size_t len, int eof, uint64_t wait_ms)
{
    int fd = raw_connect();
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, (const char *)data + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    if (eof)
        shutdown(fd, SHUT_WR);
    size_t cap = 65536, got = 0;
    char *buf = calloc(1, cap);
    ck_assert_ptr_nonnull(buf);
    uint64_t deadline = ms_now() + wait_ms;
    while (got + 1 < cap && ms_now() < deadline) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    return buf;
}

static char *raw_exchange(const void *data, size_t len)
{
    return raw_exchange_full(data, len, 0, 5000);
}

static void wait_deferred(int n)
{
    uint64_t deadline = ms_now() + 5000;
    while (atomic_load(&ctx.deferred_replied) < n && ms_now() < deadline) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    ck_assert_int_eq(atomic_load(&ctx.deferred_replied), n);
}

static void assert_echo_works(void)
{
    json_t *r = NULL;
    const char *argv[] = {"test/echo", "still", "alive"};
    ck_assert_int_eq(call(&r, 2000, 3, argv), SNV_CTL_OK);
    ck_assert_int_eq(json_array_size(r), 2);
    ck_assert_str_eq(json_string_value(json_array_get(r, 1)), "alive");
    json_decref(r);
}

/* ---- server / client tests ---- */

START_TEST(test_registered_command)
{
    json_t *r = NULL;
    const char *argv[] = {"test/echo", "a", "b c", "\xc3\xa9\"\\"};

    server_start();
    ck_assert_int_eq(call(&r, 2000, 4, argv), SNV_CTL_OK);
    ck_assert(json_is_array(r));
    ck_assert_int_eq(json_array_size(r), 3);
    ck_assert_str_eq(json_string_value(json_array_get(r, 0)), "a");
    ck_assert_str_eq(json_string_value(json_array_get(r, 1)), "b c");
    ck_assert_str_eq(json_string_value(json_array_get(r, 2)), "\xc3\xa9\"\\");
    json_decref(r);

    /* Many sequential calls: nothing accumulates. */
    for (int i = 0; i < 200; i++) {
        ck_assert_int_eq(call(&r, 2000, 1, argv), SNV_CTL_OK);
        ck_assert_int_eq(json_array_size(r), 0);
        json_decref(r);
    }
    server_stop();
}
END_TEST

START_TEST(test_socket_mode_and_reply_format)
{
    struct stat st;

    server_start();
    ck_assert_int_eq(lstat(ctx.path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_int_eq(st.st_mode & 0777, 0660);
    ck_assert_int_eq(lstat(ctx.sub, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0755);

    char *reply = raw_exchange("[\"test/echo\",\"x\"]\n", 18);
    ck_assert_str_eq(reply, "{\"status\":0,\"result\":[\"x\"]}\n");
    free(reply);
    reply = raw_exchange("[\"test/fail\"]\n", 14);
    ck_assert_str_eq(reply, "{\"status\":3,\"error\":\"no such thing\"}\n");
    free(reply);
    server_stop();
}
END_TEST

START_TEST(test_builtins)
{
    json_t *r = NULL;

    server_start();
    const char *help[] = {"help"};
    ck_assert_int_eq(call(&r, 2000, 1, help), SNV_CTL_OK);
    ck_assert(json_is_array(r));
    int found = 0;
    for (size_t i = 0; i < json_array_size(r); i++) {
        json_t *row = json_array_get(r, i);
        const char *name = json_string_value(json_object_get(row, "command"));
        ck_assert_ptr_nonnull(name);
        if (strcmp(name, "test/later") == 0) {
            ck_assert_str_eq(json_string_value(json_object_get(row, "usage")), "MS");
            found++;
        }
        if (strcmp(name, "log/set") == 0 || strcmp(name, "version") == 0)
            found++;
    }
    ck_assert_int_eq(found, 3);
    json_decref(r);

    const char *version[] = {"version"};
    ck_assert_int_eq(call(&r, 2000, 1, version), SNV_CTL_OK);
    ck_assert_str_eq(json_string_value(json_object_get(r, "version")), SPLITNVE_VERSION);
    json_decref(r);

    const char *set[] = {"log/set", "debug"};
    ck_assert_int_eq(call(&r, 2000, 2, set), SNV_CTL_OK);
    ck_assert_str_eq(json_string_value(json_object_get(r, "level")), "debug");
    json_decref(r);
    const char *get[] = {"log/get"};
    ck_assert_int_eq(call(&r, 2000, 1, get), SNV_CTL_OK);
    ck_assert_str_eq(json_string_value(json_object_get(r, "level")), "debug");
    json_decref(r);
    const char *bad[] = {"log/set", "loud"};
    ck_assert_int_eq(call(&r, 2000, 2, bad), SNV_CTL_USAGE);
    ck_assert_ptr_nonnull(strstr(json_string_value(r), "loud"));
    json_decref(r);
    const char *err_level[] = {"log/set", "err"};
    ck_assert_int_eq(call(&r, 2000, 2, err_level), SNV_CTL_OK);
    json_decref(r);
    server_stop();
}
END_TEST

START_TEST(test_usage_errors)
{
    json_t *r = NULL;
    char err[256];

    server_start();
    const char *extra[] = {"test/fail", "x"};
    ck_assert_int_eq(snv_ctl_call(ctx.path, 2, extra, 2000, &r, err, sizeof err), SNV_CTL_USAGE);
    ck_assert_str_eq(json_string_value(r), "usage: test/fail");
    ck_assert_str_eq(err, "usage: test/fail");
    json_decref(r);

    const char *missing[] = {"test/later"};
    ck_assert_int_eq(call(&r, 2000, 1, missing), SNV_CTL_USAGE);
    ck_assert_str_eq(json_string_value(r), "usage: test/later MS");
    json_decref(r);

    const char *unknown[] = {"no/such"};
    ck_assert_int_eq(call(&r, 2000, 1, unknown), SNV_CTL_USAGE);
    ck_assert_ptr_nonnull(strstr(json_string_value(r), "unknown command \"no/such\""));
    json_decref(r);

    const char *fail[] = {"test/fail"};
    ck_assert_int_eq(snv_ctl_call(ctx.path, 1, fail, 2000, &r, err, sizeof err), SNV_CTL_NOT_FOUND);
    ck_assert_str_eq(json_string_value(r), "no such thing");
    ck_assert_str_eq(err, "no such thing");
    json_decref(r);
    server_stop();
}
END_TEST

START_TEST(test_malformed_requests)
{
    static const char *const bad[] = {
        "not json\n",
        "[1,2]\n",
        "[]\n",
        "{\"a\":1}\n",
        "[\"test/echo\",null]\n",
        "[\"test/echo\"\n",
        "\"help\"\n",
        "[\"a\\u0000b\"]\n",
    };

    server_start();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *reply = raw_exchange(bad[i], strlen(bad[i]));
        ck_assert_msg(strncmp(reply, "{\"status\":2,\"error\":", 20) == 0, "%s -> %s", bad[i],
                      reply);
        ck_assert_uint_eq(strlen(reply) - 1, (size_t)(strchr(reply, '\n') - reply));
        free(reply);
    }
    /* End of input before a complete line: no reply, just closed. */
    uint64_t t0 = ms_now();
    char *reply = raw_exchange_full("[\"help\"]", 8, 1, 5000);
    ck_assert_str_eq(reply, "");
    ck_assert_uint_lt(ms_now() - t0, 2000);
    free(reply);
    /* A request line ending in CRLF is accepted. */
    reply = raw_exchange("[\"test/echo\"]\r\n", 15);
    ck_assert_str_eq(reply, "{\"status\":0,\"result\":[]}\n");
    free(reply);
    assert_echo_works();
    server_stop();
}
END_TEST

static char *request_of_length(size_t total)
{
    /* ["test/echo","xxx...x"] padded to exactly `total` bytes before the newline. */
    const char *head = "[\"test/echo\",\"";
    const char *tail = "\"]";
    size_t fixed = strlen(head) + strlen(tail);
    ck_assert_uint_gt(total, fixed);
    char *s = malloc(total + 2);
    ck_assert_ptr_nonnull(s);
    memcpy(s, head, strlen(head));
    memset(s + strlen(head), 'x', total - fixed);
    memcpy(s + total - strlen(tail), tail, strlen(tail));
    s[total] = '\n';
    s[total + 1] = '\0';
    return s;
}

START_TEST(test_request_line_limit)
{
    server_start();
    /* Exactly 64 KiB before the newline: served. */
    char *req = request_of_length(65536);
    char *reply = raw_exchange(req, 65537);
    ck_assert_msg(strncmp(reply, "{\"status\":0,\"result\":[\"xxx", 26) == 0, "%.80s", reply);
    free(reply);
    free(req);

    /* One byte more: refused with an error reply, connection closed. */
    req = request_of_length(65537);
    reply = raw_exchange(req, 65538);
    ck_assert_msg(strncmp(reply, "{\"status\":2,\"error\":\"request line longer than", 44) == 0,
                  "%.80s", reply);
    free(reply);
    free(req);

    /* Far too long, without any newline. */
    size_t big = 300000;
    char *junk = malloc(big);
    ck_assert_ptr_nonnull(junk);
    memset(junk, '[', big);
    reply = raw_exchange(junk, big);
    ck_assert_msg(strncmp(reply, "{\"status\":2,", 12) == 0, "%.80s", reply);
    free(reply);
    free(junk);

    /* Through the client API, the same limit. */
    json_t *r = NULL;
    char *arg = malloc(70000);
    ck_assert_ptr_nonnull(arg);
    memset(arg, 'y', 69999);
    arg[69999] = '\0';
    const char *argv[] = {"test/echo", arg};
    ck_assert_int_eq(call(&r, 5000, 2, argv), SNV_CTL_USAGE);
    json_decref(r);
    free(arg);
    assert_echo_works();
    server_stop();
}
END_TEST

/* A server that raised its limit (the agent, for the hook's domain XML) serves long lines;
 * past the limit, or past the budget shared by long requests, it refuses them. */
START_TEST(test_request_line_raised)
{
    server_start_line_max(4 << 20);
    /* 3 MiB of argument, with quotes and newlines that JSON escaping doubles: 4.5 MiB. */
    size_t n = 3u << 20;
    char *arg = malloc(n + 1);
    ck_assert_ptr_nonnull(arg);
    for (size_t i = 0; i < n; i++)
        arg[i] = i % 4 == 0 ? '"' : i % 4 == 1 ? '\n' : 'x';
    arg[n] = '\0';
    json_t *r = NULL;
    const char *argv[] = {"test/echo", arg};
    ck_assert_int_eq(call(&r, 5000, 2, argv), SNV_CTL_USAGE); /* 4.5 MiB > 4 MiB */
    json_decref(r);
    for (size_t i = 0; i < n; i++)
        arg[i] = i % 64 == 0 ? '"' : 'x';
    ck_assert_int_eq(call(&r, 10000, 2, argv), SNV_CTL_OK); /* ~3.05 MiB */
    ck_assert_int_eq(json_array_size(r), 1);
    ck_assert_uint_eq(strlen(json_string_value(json_array_get(r, 0))), n);
    ck_assert_int_eq(memcmp(json_string_value(json_array_get(r, 0)), arg, n), 0);
    json_decref(r);

    /* Three clients each hold 3 MiB of an unfinished line: the budget (2 * 4 MiB) takes
     * two; the third is refused and told to retry; the others finish. */
    int fds[3];
    char *chunk = malloc(n);
    ck_assert_ptr_nonnull(chunk);
    memset(chunk, 'z', n);
    const char *head = "[\"test/echo\",\"";
    for (int c = 0; c < 3; c++) {
        fds[c] = raw_connect();
        ck_assert_int_eq(send(fds[c], head, strlen(head), MSG_NOSIGNAL), (ssize_t)strlen(head));
        size_t off = 0;
        while (off < n) {
            struct pollfd pfd = {.fd = fds[c], .events = POLLOUT};
            if (poll(&pfd, 1, 2000) <= 0)
                break; /* the server stopped reading this one */
            ssize_t k = send(fds[c], chunk + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (k <= 0)
                break;
            off += (size_t)k;
        }
    }
    int refused = 0;
    for (int c = 0; c < 3; c++) {
        send(fds[c], "\"]\n", 3, MSG_NOSIGNAL);
        char buf[256] = "";
        struct pollfd pfd = {.fd = fds[c], .events = POLLIN};
        if (poll(&pfd, 1, 5000) > 0)
            recv(fds[c], buf, sizeof buf - 1, 0);
        if (strstr(buf, "cannot be buffered now"))
            refused++;
        else
            ck_assert_msg(strncmp(buf, "{\"status\":0,", 12) == 0, "client %d: %.80s", c, buf);
        close(fds[c]);
    }
    ck_assert_int_eq(refused, 1);
    free(chunk);
    free(arg);
    assert_echo_works();
    server_stop();
}
END_TEST

START_TEST(test_incomplete_request_times_out)
{
    server_start();
    uint64_t t0 = ms_now();
    char *reply = raw_exchange_full("[\"hel", 5, 0, 15000);
    uint64_t dt = ms_now() - t0;
    ck_assert_str_eq(reply,
                     "{\"status\":5,\"error\":\"no complete request line within 10000 ms\"}\n");
    ck_assert_uint_ge(dt, 9900);
    ck_assert_uint_lt(dt, 12500);
    free(reply);
    assert_echo_works();
    server_stop();
}
END_TEST

START_TEST(test_deferred_reply)
{
    json_t *r = NULL;
    const char *argv[] = {"test/later", "200"};

    server_start();
    uint64_t t0 = ms_now();
    ck_assert_int_eq(call(&r, 3000, 2, argv), SNV_CTL_OK);
    uint64_t dt = ms_now() - t0;
    ck_assert_uint_ge(dt, 190);
    ck_assert_uint_lt(dt, 2500);
    ck_assert_int_eq(json_integer_value(json_object_get(r, "waited")), 200);
    json_decref(r);
    ck_assert_int_eq(atomic_load(&ctx.deferred_replied), 1);
    server_stop();
}
END_TEST

START_TEST(test_client_timeout)
{
    json_t *r = NULL;
    char err[256];
    const char *argv[] = {"test/later", "800"};

    server_start();
    uint64_t t0 = ms_now();
    ck_assert_int_eq(snv_ctl_call(ctx.path, 2, argv, 200, &r, err, sizeof err), SNV_CTL_TIMEOUT);
    uint64_t dt = ms_now() - t0;
    ck_assert_uint_ge(dt, 190);
    ck_assert_uint_lt(dt, 700);
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(strstr(err, "no reply"));
    /* The handler's late reply goes to a client that has gone: dropped safely. */
    wait_deferred(1);
    assert_echo_works();
    server_stop();
}
END_TEST

START_TEST(test_client_gone_before_deferred_reply)
{
    server_start();
    for (int i = 0; i < 5; i++) {
        int fd = raw_connect();
        const char *req = "[\"test/later\",\"150\"]\n";
        ck_assert_int_eq(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000000};
        nanosleep(&ts, NULL);
        close(fd);
    }
    /* A client that half-closes right after its request counts as gone too. */
    int fd = raw_connect();
    const char *req = "[\"test/later\",\"100\"]\n";
    ck_assert_int_eq(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    shutdown(fd, SHUT_WR);
    wait_deferred(6);
    char c;
    ck_assert_int_le(recv(fd, &c, 1, 0), 0);
    close(fd);
    assert_echo_works();
    server_stop();
}
END_TEST

START_TEST(test_destroy_with_pending_request)
{
    server_start();
    int fd = raw_connect();
    const char *req = "[\"test/later\",\"300\"]\n";
    ck_assert_int_eq(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000000};
    nanosleep(&ts, NULL);
    /* The server goes away first; the handler replies later (dropped), loop closes clean. */
    server_stop();
    ck_assert_int_eq(atomic_load(&ctx.deferred_replied), 1);
    char c;
    ck_assert_int_le(recv(fd, &c, 1, 0), 0);
    close(fd);
}
END_TEST

START_TEST(test_unreachable_and_socket_reuse)
{
    json_t *r = NULL;
    char err[256];
    const char *argv[] = {"help"};

    ck_assert_int_eq(snv_ctl_call("/nonexistent/snv.ctl", 1, argv, 1000, &r, err, sizeof err),
                     SNV_CTL_UNREACHABLE);
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(strstr(err, "cannot connect to /nonexistent/snv.ctl"));

    /* A stale socket file (nobody listening) is replaced. */
    char dir[] = "/tmp/snv-ctl-stale-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[100];
    snprintf(path, sizeof path, "%s/s.ctl", dir);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    close(fd);

    uv_loop_t loop;
    struct snv_ctl_server *s = NULL, *s2 = NULL;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(snv_ctl_server_create(&loop, path, &s), 0);
    ck_assert_int_eq(snv_ctl_register(s, "help", "", 0, 0, NULL, NULL), -EINVAL);
    ck_assert_int_eq(snv_ctl_register(s, "version", "", 0, 0, h_fail, NULL), -EEXIST);
    /* A live server at the path is not replaced. */
    ck_assert_int_eq(snv_ctl_server_create(&loop, path, &s2), -EADDRINUSE);
    ck_assert_ptr_null(s2);
    snv_ctl_server_destroy(s);
    snv_ctl_server_destroy(NULL);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);

    /* A regular file at the path is not removed. */
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(snv_ctl_server_create(&loop, path, &s), -EEXIST);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    unlink(path);
    rmdir(dir);

    /* A path longer than sun_path. */
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(snv_ctl_server_create(&loop, longpath, &s), -ENAMETOOLONG);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    ck_assert_int_eq(snv_ctl_call(longpath, 1, argv, 1000, &r, err, sizeof err),
                     SNV_CTL_UNREACHABLE);
}
END_TEST

/* ---- the ctl tool main ---- */

struct std_capture {
    FILE *out, *err;
    int saved_out, saved_err;
};

static void std_capture_begin(struct std_capture *c)
{
    fflush(stdout);
    fflush(stderr);
    c->out = tmpfile();
    c->err = tmpfile();
    ck_assert(c->out && c->err);
    c->saved_out = dup(1);
    c->saved_err = dup(2);
    dup2(fileno(c->out), 1);
    dup2(fileno(c->err), 2);
}

static char *read_all(FILE *f)
{
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = calloc(1, (size_t)n + 1);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return s;
}

static void std_capture_end(struct std_capture *c, char **out, char **err)
{
    fflush(stdout);
    fflush(stderr);
    dup2(c->saved_out, 1);
    dup2(c->saved_err, 2);
    close(c->saved_out);
    close(c->saved_err);
    *out = read_all(c->out);
    *err = read_all(c->err);
}

static const struct snv_ctl_word_map tool_words[] = {
    {"show vns", "test/table"},          {"show", "test/echo"}, {"show echo", "test/echo"},
    {"show failing thing", "test/fail"}, {NULL, NULL},
};

static int tool(char **out, char **err, int argc, const char *const args[])
{
    struct std_capture c;
    char *argv[16];
    ck_assert_int_lt(argc, 16);
    for (int i = 0; i < argc; i++)
        argv[i] = (char *)args[i];
    argv[argc] = NULL;
    std_capture_begin(&c);
    int rc = snv_ctl_tool_main(argc, argv, ctx.path, tool_words, "usage: testctl COMMAND\n");
    std_capture_end(&c, out, err);
    return rc;
}

START_TEST(test_tool_main)
{
    char *out, *err;

    snv_log_set_level(SNV_LOG_ERR);
    server_start();
    const char *a1[] = {"/usr/bin/testctl", "show", "vns"};
    ck_assert_int_eq(tool(&out, &err, 3, a1), 0);
    ck_assert_str_eq(out, "VN    TAG\nblue  100\nred   7\n");
    ck_assert_str_eq(err, "");
    free(out);
    free(err);

    /* Longest prefix: "show echo" beats "show"; the rest are arguments. */
    const char *a2[] = {"testctl", "show", "echo", "x", "y"};
    ck_assert_int_eq(tool(&out, &err, 5, a2), 0);
    ck_assert_str_eq(out, "x\ny\n");
    free(out);
    free(err);
    const char *a3[] = {"testctl", "show", "other"};
    ck_assert_int_eq(tool(&out, &err, 3, a3), 0);
    ck_assert_str_eq(out, "other\n");
    free(out);
    free(err);

    /* --json after the words, pretty JSON. */
    const char *a4[] = {"testctl", "show", "echo", "z", "--json"};
    ck_assert_int_eq(tool(&out, &err, 5, a4), 0);
    ck_assert_str_eq(out, "[\n  \"z\"\n]\n");
    free(out);
    free(err);

    /* Unmapped words are a raw command. */
    const char *a5[] = {"testctl", "-t", "2", "log/get"};
    ck_assert_int_eq(tool(&out, &err, 4, a5), 0);
    ck_assert_str_eq(out, "level: err\n");
    free(out);
    free(err);

    const char *a6[] = {"testctl", "show", "failing", "thing"};
    ck_assert_int_eq(tool(&out, &err, 4, a6), SNV_CTL_NOT_FOUND);
    ck_assert_str_eq(out, "");
    ck_assert_str_eq(err, "testctl: no such thing\n");
    free(out);
    free(err);

    const char *a7[] = {"testctl", "frobnicate"};
    ck_assert_int_eq(tool(&out, &err, 2, a7), SNV_CTL_USAGE);
    ck_assert_str_eq(err, "testctl: unknown command \"frobnicate\" (try \"help\")\n");
    free(out);
    free(err);

    const char *a8[] = {"testctl", "-s", "/nonexistent/x.ctl", "show", "vns"};
    ck_assert_int_eq(tool(&out, &err, 5, a8), SNV_CTL_UNREACHABLE);
    ck_assert_ptr_nonnull(strstr(err, "testctl: cannot connect to /nonexistent/x.ctl"));
    free(out);
    free(err);

    const char *a9[] = {"testctl", "--timeout", "0.2", "test/later", "1000"};
    ck_assert_int_eq(tool(&out, &err, 5, a9), SNV_CTL_TIMEOUT);
    ck_assert_ptr_nonnull(strstr(err, "testctl: no reply from"));
    free(out);
    free(err);

    const char *a10[] = {"testctl", "-h"};
    ck_assert_int_eq(tool(&out, &err, 2, a10), 0);
    ck_assert_str_eq(out, "usage: testctl COMMAND\n");
    free(out);
    free(err);

    const char *a11[] = {"testctl", "--version"};
    ck_assert_int_eq(tool(&out, &err, 2, a11), 0);
    ck_assert_str_eq(out, "testctl " SPLITNVE_VERSION "\n");
    free(out);
    free(err);

    const char *a12[] = {"testctl"};
    ck_assert_int_eq(tool(&out, &err, 1, a12), SNV_CTL_USAGE);
    ck_assert_str_eq(err, "testctl: missing command (try --help)\n");
    free(out);
    free(err);

    const char *a13[] = {"testctl", "-t", "soon", "help"};
    ck_assert_int_eq(tool(&out, &err, 4, a13), SNV_CTL_USAGE);
    free(out);
    free(err);

    const char *a14[] = {"testctl", "--bogus", "help"};
    ck_assert_int_eq(tool(&out, &err, 3, a14), SNV_CTL_USAGE);
    free(out);
    free(err);

    wait_deferred(1);
    server_stop();
}
END_TEST

/* ---- rendering ---- */

static char *render(const char *json_text, int json)
{
    json_error_t e;
    json_t *v = json_text ? json_loads(json_text, JSON_DECODE_ANY, &e) : NULL;
    ck_assert(json_text == NULL || v != NULL);
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    ck_assert_ptr_nonnull(f);
    snv_ctl_print(f, v, json);
    fclose(f);
    json_decref(v);
    return buf;
}

static void assert_render(const char *json_text, int json, const char *expected)
{
    char *got = render(json_text, json);
    ck_assert_msg(strcmp(got, expected) == 0, "render %s:\n--- got\n%s--- expected\n%s",
                  json_text ? json_text : "NULL", got, expected);
    free(got);
}

START_TEST(test_print_table)
{
    assert_render(
        "[{\"name\":\"vn1\",\"tag\":100,\"tsis\":[\"a\",\"b\"],\"up\":true,\"extra\":null},"
        "{\"name\":\"longer-name\",\"tag\":7,\"tsis\":[],\"up\":false,"
        "\"extra\":{\"k\":1,\"l\":[2]}}]",
        0,
        "NAME         TAG  TSIS  UP   EXTRA\n"
        "vn1          100  a,b   yes  -\n"
        "longer-name  7    -     no   {\"k\":1,\"l\":[2]}\n");
    /* Missing keys show "-"; keys only in later rows become extra columns. */
    assert_render("[{\"hypervisor\":\"kvm1\",\"vn_id\":5001},{\"hypervisor\":\"kvm-22\","
                  "\"state\":\"activated\"}]",
                  0,
                  "HYPERVISOR  VN_ID  STATE\n"
                  "kvm1        5001   -\n"
                  "kvm-22      -      activated\n");
    assert_render("[{\"a\":1.5,\"b\":\"\"}]", 0, "A    B\n1.5  -\n");
}
END_TEST

START_TEST(test_print_other_shapes)
{
    assert_render("{\"node\":\"tor1\",\"sessions\":2,\"up\":true,\"tags\":[10,20],"
                  "\"peer\":{\"id\":\"x\"},\"none\":null}",
                  0,
                  "node: tor1\nsessions: 2\nup: yes\ntags: 10,20\npeer: {\"id\":\"x\"}\nnone: -\n");
    assert_render("\"plain text\"", 0, "plain text\n");
    assert_render("[\"one\",2,false]", 0, "one\n2\nno\n");
    assert_render("[]", 0, "");
    assert_render("null", 0, "");
    assert_render(NULL, 0, "");
    assert_render("42", 0, "42\n");
    assert_render("{\"a\":1,\"b\":[true]}", 1, "{\n  \"a\": 1,\n  \"b\": [\n    true\n  ]\n}\n");
    assert_render("null", 1, "null\n");
    assert_render("[]", 1, "[]\n");
}
END_TEST

static Suite *ctl_suite(void)
{
    Suite *s = suite_create("snv-ctl");
    TCase *tc = tcase_create("server");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_registered_command);
    tcase_add_test(tc, test_socket_mode_and_reply_format);
    tcase_add_test(tc, test_builtins);
    tcase_add_test(tc, test_usage_errors);
    tcase_add_test(tc, test_malformed_requests);
    tcase_add_test(tc, test_request_line_limit);
    tcase_add_test(tc, test_request_line_raised);
    tcase_add_test(tc, test_incomplete_request_times_out);
    tcase_add_test(tc, test_deferred_reply);
    tcase_add_test(tc, test_client_timeout);
    tcase_add_test(tc, test_client_gone_before_deferred_reply);
    tcase_add_test(tc, test_destroy_with_pending_request);
    tcase_add_test(tc, test_unreachable_and_socket_reuse);
    tcase_add_test(tc, test_tool_main);
    suite_add_tcase(s, tc);

    tc = tcase_create("print");
    tcase_add_test(tc, test_print_table);
    tcase_add_test(tc, test_print_other_shapes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* Keep the suite's output readable: only errors from the library. */
    snv_log_set_level(SNV_LOG_ERR);
    SRunner *sr = srunner_create(ctl_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
