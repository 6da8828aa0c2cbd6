/* snv-ctl.c: the control socket server, its client and the ctl tools' main (see snv-ctl.h).
 *
 * Wire format: the client sends one line, a JSON array of strings ending in "\n" (at most
 * SNV_CTL_LINE_MAX bytes before the newline, unless the server raised its limit); the
 * server sends one line,
 * {"status":0,"result":R} or {"status":N,"error":"text"} (compact JSON, then "\n"), and
 * closes.  A client must keep its write side open until it has read the reply: end of
 * input after the request line means the client went away.
 *
 * Request lifetime.  A request (struct snv_ctl_req) embeds its uv_pipe_t and is freed only
 * when both of these hold: its pipe's close callback has run, and it needs no reply (it
 * was never dispatched to a handler, or the handler has replied).  So a handler that
 * defers may keep the req pointer until it replies, whatever happens meanwhile: if the
 * client disconnected or the server was destroyed, the reply is dropped and the req freed
 * by the reply call itself.  A deferring handler must therefore reply exactly once in
 * every case (e.g. snv_ctl_reply_error(req, SNV_CTL_TIMEOUT, ...) from its own timer or
 * teardown); argv is only valid during the handler call, copy what is kept.
 *
 * The server ignores SIGPIPE process-wide if it is at its default disposition, so that
 * writing a reply to a vanished client yields EPIPE instead of killing the daemon.
 */
#include "snv-ctl.h"

#include "snv-log.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
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

enum {
    SNV_CTL_LINE_MAX = 64 * 1024,         /* request line, without its newline */
    SNV_CTL_REPLY_MAX = 64 * 1024 * 1024, /* reply line accepted by the client */
    SNV_CTL_MAX_REQS = 64,                /* concurrently open requests per server */
    SNV_CTL_READ_CHUNK = 4096,
    SNV_CTL_ERROR_MAX = 512,
    SNV_CTL_DEFAULT_TIMEOUT_S = 10,
    SNV_CTL_IDLE_MS = 10000, /* to send a complete request line */
    SNV_CTL_SWEEP_MS = 1000,
};

struct snv_ctl_command {
    char *name;
    char *usage;
    int min_args;
    int max_args; /* -1: any */
    snv_ctl_handler *handler;
    void *aux;
};

struct snv_ctl_server {
    uv_loop_t *loop;
    uv_pipe_t listener;
    uv_timer_t sweep; /* closes requests that never complete their line */
    int open_handles; /* listener and sweep: the server is freed when both closed */
    char *path;
    struct snv_ctl_command *commands;
    size_t n_commands;
    size_t cap_commands;
    struct snv_ctl_req *reqs; /* open requests (pipe not yet closed) */
    size_t n_reqs;
    uint64_t n_requests;
    uint64_t n_rejected; /* malformed, too long, too many open */
    size_t line_max;     /* request line limit (snv_ctl_server_set_line_max) */
    size_t large_bytes;  /* line buffer bytes past SNV_CTL_LINE_MAX, all requests */
};

struct snv_ctl_req {
    uv_pipe_t pipe;                /* pipe.data == the req */
    struct snv_ctl_server *server; /* NULL once the server is destroyed */
    struct snv_ctl_req *prev;
    struct snv_ctl_req *next;
    char *line;
    size_t len;
    size_t cap;
    size_t large;      /* bytes of cap counted in server->large_bytes */
    char scratch[256]; /* sink for bytes read after the request line */
    uv_write_t write_req;
    char *reply; /* the reply line while it is being written */
    uint64_t accepted_ms;
    int dispatched; /* handed to a handler: a reply is owed */
    int replied;
    int closing; /* uv_close() called */
    int closed;  /* close callback ran */
};

static struct snv_ratelimit ctl_rl = SNV_RATELIMIT_INIT(5, 20);

/* ---- request lifetime ---- */

static void req_free(struct snv_ctl_req *req)
{
    free(req->line);
    free(req->reply);
    free(req);
}

static void req_maybe_free(struct snv_ctl_req *req)
{
    if (req->closed && (!req->dispatched || req->replied))
        req_free(req);
}

/* Frees the request line (once dispatched or refused it is not needed any more). */
static void req_drop_line(struct snv_ctl_req *req)
{
    if (req->server)
        req->server->large_bytes -= req->large;
    req->large = 0;
    free(req->line);
    req->line = NULL;
    req->len = req->cap = 0;
}

static void req_unlink(struct snv_ctl_req *req)
{
    struct snv_ctl_server *s = req->server;

    req_drop_line(req);
    if (!s)
        return;
    if (req->prev)
        req->prev->next = req->next;
    else
        s->reqs = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
    s->n_reqs--;
}

static void on_req_close(uv_handle_t *h)
{
    struct snv_ctl_req *req = h->data;

    req_unlink(req);
    req->server = NULL;
    req->closed = 1;
    req_maybe_free(req);
}

static void req_close(struct snv_ctl_req *req)
{
    if (req->closing)
        return;
    req->closing = 1;
    uv_read_stop((uv_stream_t *)&req->pipe);
    uv_close((uv_handle_t *)&req->pipe, on_req_close);
}

static void on_reply_written(uv_write_t *w, int status)
{
    struct snv_ctl_req *req = w->data;

    if (status < 0 && status != UV_ECANCELED)
        SNV_DBG("ctl", "reply not delivered error=%s", uv_strerror(status));
    free(req->reply);
    req->reply = NULL;
    req_close(req);
}

/* Sends `reply` (ownership taken) unless the client is gone; frees the req if it was only
 * waiting for this reply. */
static void req_send(struct snv_ctl_req *req, json_t *reply)
{
    if (req->replied) {
        SNV_WARN("ctl", "second reply to one request dropped");
        json_decref(reply);
        return;
    }
    req->replied = 1;
    if (!req->dispatched)
        req_drop_line(req); /* refused before dispatch; dispatch() drops it itself */
    if (req->closing) {
        json_decref(reply);
        req_maybe_free(req);
        return;
    }

    char *text = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
    json_decref(reply);
    if (!text)
        text = strdup("{\"status\":1,\"error\":\"internal error: reply not encodable\"}");
    size_t n = text ? strlen(text) : 0;
    char *line = text ? malloc(n + 2) : NULL;
    if (!line) {
        free(text);
        req_close(req);
        return;
    }
    memcpy(line, text, n);
    line[n] = '\n';
    line[n + 1] = '\0';
    free(text);

    req->reply = line;
    req->write_req.data = req;
    snv_log_flush(); /* a command's log lines are out before its reply (when batching) */
    uv_buf_t buf = uv_buf_init(line, (unsigned int)(n + 1));
    int err = uv_write(&req->write_req, (uv_stream_t *)&req->pipe, &buf, 1, on_reply_written);
    if (err < 0) {
        SNV_DBG("ctl", "reply not sent error=%s", uv_strerror(err));
        free(req->reply);
        req->reply = NULL;
        req_close(req);
    }
}

void snv_ctl_reply_ok(struct snv_ctl_req *req, json_t *result)
{
    json_t *reply = json_object();

    if (reply) {
        json_object_set_new(reply, "status", json_integer(SNV_CTL_OK));
        json_object_set_new(reply, "result", result ? result : json_null());
    } else {
        json_decref(result);
    }
    req_send(req, reply);
}

static void reply_verror(struct snv_ctl_req *req, enum snv_ctl_status status, const char *fmt,
                         va_list ap)
{
    char text[SNV_CTL_ERROR_MAX];

    if (vsnprintf(text, sizeof text, fmt, ap) < 0)
        snprintf(text, sizeof text, "error");
    if (status == SNV_CTL_OK)
        status = SNV_CTL_FAILED;
    json_t *reply = json_object();
    if (reply) {
        json_object_set_new(reply, "status", json_integer(status));
        json_object_set_new(reply, "error", json_string(text));
    }
    req_send(req, reply);
}

void snv_ctl_reply_error(struct snv_ctl_req *req, enum snv_ctl_status status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    reply_verror(req, status, fmt, ap);
    va_end(ap);
}

/* Replies with an error to a request no handler saw (so `dispatched` stays 0). */
static void req_reject(struct snv_ctl_req *req, enum snv_ctl_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void req_reject(struct snv_ctl_req *req, enum snv_ctl_status status, const char *fmt, ...)
{
    va_list ap;

    if (req->server)
        req->server->n_rejected++;
    va_start(ap, fmt);
    reply_verror(req, status, fmt, ap);
    va_end(ap);
}

/* ---- request parsing and dispatch ---- */

static struct snv_ctl_command *find_command(struct snv_ctl_server *s, const char *name)
{
    for (size_t i = 0; i < s->n_commands; i++)
        if (strcmp(s->commands[i].name, name) == 0)
            return &s->commands[i];
    return NULL;
}

static void dispatch(struct snv_ctl_req *req, const char *line, size_t len)
{
    struct snv_ctl_server *s = req->server;
    json_error_t jerr;

    s->n_requests++;
    json_t *array = json_loadb(line, len, 0, &jerr);
    if (!array || !json_is_array(array) || json_array_size(array) == 0) {
        snv_log_rl(&ctl_rl, SNV_LOG_WARN, "ctl", "malformed request");
        req_reject(req, SNV_CTL_USAGE, "malformed request: expected a JSON array of strings");
        json_decref(array);
        return;
    }
    size_t n = json_array_size(array);
    const char **argv = calloc(n + 1, sizeof *argv);
    if (!argv) {
        req_reject(req, SNV_CTL_FAILED, "out of memory");
        json_decref(array);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        argv[i] = json_string_value(json_array_get(array, i));
        if (!argv[i]) {
            snv_log_rl(&ctl_rl, SNV_LOG_WARN, "ctl", "malformed request argument=%zu", i);
            req_reject(req, SNV_CTL_USAGE, "malformed request: argument %zu is not a string", i);
            goto out;
        }
    }

    struct snv_ctl_command *cmd = find_command(s, argv[0]);
    int argc = (int)(n - 1);
    if (!cmd) {
        req_reject(req, SNV_CTL_USAGE, "unknown command \"%s\" (try \"help\")", argv[0]);
        goto out;
    }
    if (argc < cmd->min_args || (cmd->max_args >= 0 && argc > cmd->max_args)) {
        req_reject(req, SNV_CTL_USAGE, "usage: %s%s%s", cmd->name, *cmd->usage ? " " : "",
                   cmd->usage);
        goto out;
    }
    SNV_DBG("ctl", "request command=%s args=%d", cmd->name, argc);
    req->dispatched = 1;
    cmd->handler(req, argc, argv + 1, cmd->aux);
out:
    free(argv);
    json_decref(array);
}

static void on_req_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct snv_ctl_req *req = h->data;

    (void)suggested;
    if (req->dispatched || req->replied) {
        *buf = uv_buf_init(req->scratch, sizeof req->scratch);
        return;
    }
    /* Room for one byte past the limit, so an over-long line is detected.  The buffer
     * doubles (a long line is not copied over and over); what it holds past
     * SNV_CTL_LINE_MAX comes out of a budget shared by all requests. */
    struct snv_ctl_server *s = req->server;
    size_t limit = (s ? s->line_max : SNV_CTL_LINE_MAX) + 1;
    if (req->cap - req->len < SNV_CTL_READ_CHUNK && req->cap < limit) {
        size_t cap = req->cap < SNV_CTL_READ_CHUNK * 4 ? SNV_CTL_READ_CHUNK * 4 : req->cap * 2;
        if (cap > limit)
            cap = limit;
        size_t large = cap > SNV_CTL_LINE_MAX + 1 ? cap - (SNV_CTL_LINE_MAX + 1) : 0;
        int fits = !s || s->large_bytes - req->large + large <= 2 * s->line_max;
        char *p = fits ? realloc(req->line, cap) : NULL;
        if (p) {
            req->line = p;
            req->cap = cap;
            if (s)
                s->large_bytes = s->large_bytes - req->large + large;
            req->large = large;
        }
    }
    if (req->cap == req->len) {
        *buf = uv_buf_init(req->scratch, sizeof req->scratch);
        return;
    }
    *buf = uv_buf_init(req->line + req->len, (unsigned int)(req->cap - req->len));
}

static void on_req_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct snv_ctl_req *req = stream->data;

    if (nread < 0) {
        /* End of input or an error: before the line, nothing to answer; after it, the
         * client is gone and a pending reply will be dropped. */
        req_close(req);
        return;
    }
    if (nread == 0 || req->dispatched || req->replied || !req->server)
        return;
    if (buf->base != req->line + req->len) {
        /* The buffer could not grow: out of memory, or the budget for long lines is held
         * by other requests. */
        snv_log_rl(&ctl_rl, SNV_LOG_WARN, "ctl", "request not buffered len=%zu", req->len);
        req_reject(req, SNV_CTL_FAILED,
                   "request of more than %zu bytes cannot be buffered now (out of memory, or "
                   "other long requests are being read): retry",
                   req->len);
        return;
    }
    size_t old = req->len;
    req->len += (size_t)nread;
    char *nl = memchr(req->line + old, '\n', req->len - old);
    if (nl) {
        size_t len = (size_t)(nl - req->line);
        if (len > req->server->line_max)
            goto too_long;
        dispatch(req, req->line, len);
        req_drop_line(req);
        return;
    }
    if (req->len > req->server->line_max)
        goto too_long;
    return;
too_long:
    snv_log_rl(&ctl_rl, SNV_LOG_WARN, "ctl", "request too long max=%zu", req->server->line_max);
    req_reject(req, SNV_CTL_USAGE, "request line longer than %zu bytes", req->server->line_max);
}

static void on_rejected_close(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct snv_ctl_server *s = listener->data;

    if (status < 0) {
        snv_log_rl(&ctl_rl, SNV_LOG_WARN, "ctl", "accept failed error=%s", uv_strerror(status));
        return;
    }
    if (s->n_reqs >= SNV_CTL_MAX_REQS) {
        uv_pipe_t *p = malloc(sizeof *p);
        if (p && uv_pipe_init(s->loop, p, 0) == 0) {
            if (uv_accept(listener, (uv_stream_t *)p) < 0)
                SNV_DBG("ctl", "accept of an excess client failed");
            uv_close((uv_handle_t *)p, on_rejected_close);
        } else {
            free(p);
        }
        s->n_rejected++;
        snv_log_rl(&ctl_rl, SNV_LOG_WARN, "ctl", "too many open requests max=%d", SNV_CTL_MAX_REQS);
        return;
    }
    struct snv_ctl_req *req = calloc(1, sizeof *req);
    if (!req)
        return;
    if (uv_pipe_init(s->loop, &req->pipe, 0) < 0) {
        free(req);
        return;
    }
    req->pipe.data = req;
    req->server = s;
    req->accepted_ms = uv_now(s->loop);
    req->next = s->reqs;
    if (s->reqs)
        s->reqs->prev = req;
    s->reqs = req;
    s->n_reqs++;
    int err = uv_accept(listener, (uv_stream_t *)&req->pipe);
    if (err == 0)
        err = uv_read_start((uv_stream_t *)&req->pipe, on_req_alloc, on_req_read);
    if (err < 0) {
        snv_log_rl(&ctl_rl, SNV_LOG_WARN, "ctl", "accept failed error=%s", uv_strerror(err));
        req_close(req);
    }
}

/* ---- built-in commands ---- */

static void cmd_help(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    struct snv_ctl_server *s = aux;
    json_t *list = json_array();

    (void)argc;
    (void)argv;
    for (size_t i = 0; list && i < s->n_commands; i++) {
        json_t *row =
            json_pack("{s:s, s:s}", "command", s->commands[i].name, "usage", s->commands[i].usage);
        if (!row || json_array_append_new(list, row) < 0) {
            json_decref(list);
            list = NULL;
        }
    }
    if (!list) {
        snv_ctl_reply_error(req, SNV_CTL_FAILED, "out of memory");
        return;
    }
    snv_ctl_reply_ok(req, list);
}

static void cmd_version(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    (void)aux;
    snv_ctl_reply_ok(req, json_pack("{s:s, s:s}", "program", program_invocation_short_name,
                                    "version", SPLITNVE_VERSION));
}

static void cmd_log_set(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    enum snv_log_level level;

    (void)argc;
    (void)aux;
    if (snv_log_level_parse(argv[0], &level) < 0) {
        snv_ctl_reply_error(req, SNV_CTL_USAGE, "unknown log level \"%s\" (err, warn, info, debug)",
                            argv[0]);
        return;
    }
    snv_log_set_level(level);
    SNV_INFO("ctl", "log level set level=%s", snv_log_level_name(level));
    snv_ctl_reply_ok(req, json_pack("{s:s}", "level", snv_log_level_name(level)));
}

static void cmd_log_get(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    (void)aux;
    snv_ctl_reply_ok(req, json_pack("{s:s}", "level", snv_log_level_name(snv_log_get_level())));
}

/* ---- server ---- */

/* Creates every missing directory above `path` with mode 0755. */
static int make_parent_dirs(const char *path)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int n = snprintf(dir, sizeof dir, "%s", path);

    if (n < 0 || (size_t)n >= sizeof dir)
        return -ENAMETOOLONG;
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Removes a stale socket at `path`; refuses (-EADDRINUSE) if a server answers there and
 * (-EEXIST) if it is not a socket. */
static int remove_stale_socket(const char *path)
{
    struct stat st;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
        int live = connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0;
        close(fd);
        if (live)
            return -EADDRINUSE;
    }
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

static void ignore_sigpipe(void)
{
    struct sigaction old;

    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
        struct sigaction sa = {.sa_handler = SIG_IGN};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGPIPE, &sa, NULL);
    }
}

static void server_free(struct snv_ctl_server *s)
{
    for (size_t i = 0; i < s->n_commands; i++) {
        free(s->commands[i].name);
        free(s->commands[i].usage);
    }
    free(s->commands);
    free(s->path);
    free(s);
}

static void on_server_handle_close(uv_handle_t *h)
{
    struct snv_ctl_server *s = h->data;

    if (--s->open_handles == 0)
        server_free(s);
}

static void on_sweep(uv_timer_t *t)
{
    struct snv_ctl_server *s = t->data;
    uint64_t now = uv_now(s->loop);

    for (struct snv_ctl_req *req = s->reqs; req; req = req->next) {
        if (req->dispatched || req->replied || req->closing)
            continue;
        if (now - req->accepted_ms >= SNV_CTL_IDLE_MS) {
            snv_log_rl(&ctl_rl, SNV_LOG_WARN, "ctl", "request incomplete after %d ms",
                       SNV_CTL_IDLE_MS);
            req_reject(req, SNV_CTL_TIMEOUT, "no complete request line within %d ms",
                       SNV_CTL_IDLE_MS);
        }
    }
}

int snv_ctl_server_create(uv_loop_t *loop, const char *path, struct snv_ctl_server **out)
{
    struct sockaddr_un sun;
    int err;

    *out = NULL;
    if (!path || !*path)
        return -EINVAL;
    if (strlen(path) >= sizeof sun.sun_path)
        return -ENAMETOOLONG;
    struct snv_ctl_server *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->line_max = SNV_CTL_LINE_MAX;
    s->path = strdup(path);
    if (!s->path) {
        free(s);
        return -ENOMEM;
    }
    if ((err = snv_ctl_register(s, "help", "", 0, 0, cmd_help, s)) < 0 ||
        (err = snv_ctl_register(s, "version", "", 0, 0, cmd_version, s)) < 0 ||
        (err = snv_ctl_register(s, "log/set", "err|warn|info|debug", 1, 1, cmd_log_set, s)) < 0 ||
        (err = snv_ctl_register(s, "log/get", "", 0, 0, cmd_log_get, s)) < 0) {
        server_free(s);
        return err;
    }
    if ((err = make_parent_dirs(path)) < 0 || (err = remove_stale_socket(path)) < 0) {
        SNV_ERR("ctl", "cannot use control socket path=%s error=%s", path, strerror(-err));
        server_free(s);
        return err;
    }
    err = uv_pipe_init(loop, &s->listener, 0);
    if (err < 0) {
        server_free(s);
        return err;
    }
    s->listener.data = s;
    s->open_handles = 1;
    /* Bind with a restrictive umask so the socket never exists with looser permissions. */
    mode_t old_mask = umask(0117);
    err = uv_pipe_bind(&s->listener, path);
    umask(old_mask);
    if (err == 0 && chmod(path, 0660) < 0)
        err = -errno;
    if (err == 0)
        err = uv_listen((uv_stream_t *)&s->listener, 16, on_connection);
    if (err < 0) {
        SNV_ERR("ctl", "cannot listen on control socket path=%s error=%s", path, uv_strerror(err));
        unlink(path);
        uv_close((uv_handle_t *)&s->listener, on_server_handle_close);
        return err;
    }
    /* Cannot fail on an initialised loop; unref'd so it never keeps the loop alive. */
    uv_timer_init(loop, &s->sweep);
    s->sweep.data = s;
    s->open_handles++;
    uv_timer_start(&s->sweep, on_sweep, SNV_CTL_SWEEP_MS, SNV_CTL_SWEEP_MS);
    uv_unref((uv_handle_t *)&s->sweep);
    ignore_sigpipe();
    *out = s;
    return 0;
}

void snv_ctl_server_set_line_max(struct snv_ctl_server *s, size_t bytes)
{
    s->line_max = bytes > SNV_CTL_LINE_MAX ? bytes : SNV_CTL_LINE_MAX;
}

void snv_ctl_server_destroy(struct snv_ctl_server *s)
{
    if (!s)
        return;
    struct snv_ctl_req *req = s->reqs;
    while (req) {
        struct snv_ctl_req *next = req->next;
        req->server = NULL;
        req->prev = req->next = NULL;
        req_close(req);
        req = next;
    }
    s->reqs = NULL;
    s->n_reqs = 0;
    unlink(s->path);
    uv_close((uv_handle_t *)&s->sweep, on_server_handle_close);
    uv_close((uv_handle_t *)&s->listener, on_server_handle_close);
}

int snv_ctl_register(struct snv_ctl_server *s, const char *command, const char *usage, int min_args,
                     int max_args, snv_ctl_handler *handler, void *aux)
{
    if (!command || !*command || !handler || min_args < 0 || (max_args >= 0 && max_args < min_args))
        return -EINVAL;
    if (find_command(s, command))
        return -EEXIST;
    if (s->n_commands == s->cap_commands) {
        size_t cap = s->cap_commands ? s->cap_commands * 2 : 16;
        struct snv_ctl_command *p = realloc(s->commands, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        s->commands = p;
        s->cap_commands = cap;
    }
    struct snv_ctl_command *c = &s->commands[s->n_commands];
    c->name = strdup(command);
    c->usage = strdup(usage ? usage : "");
    if (!c->name || !c->usage) {
        free(c->name);
        free(c->usage);
        return -ENOMEM;
    }
    c->min_args = min_args;
    c->max_args = max_args;
    c->handler = handler;
    c->aux = aux;
    s->n_commands++;
    return 0;
}

/* ---- client ---- */

static int64_t mono_ms(void)
{
    return (int64_t)snv_now_ms();
}

/* Waits for `events` on fd until deadline (-1: forever).  Returns 1 ready, 0 timeout, <0. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int timeout = -1;
        if (deadline >= 0) {
            int64_t left = deadline - mono_ms();
            if (left <= 0)
                return 0;
            timeout = left > 1000000 ? 1000000 : (int)left;
        }
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, timeout);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

static int call_fail(int status, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int call_fail(int status, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        if (vsnprintf(err, errlen, fmt, ap) < 0)
            err[0] = '\0';
        va_end(ap);
    }
    return status;
}

static char *encode_request(int argc, const char *const argv[], size_t *len)
{
    json_t *array = json_array();

    for (int i = 0; array && i < argc; i++) {
        if (!argv[i] || json_array_append_new(array, json_string(argv[i])) < 0) {
            json_decref(array);
            array = NULL;
        }
    }
    char *text = array ? json_dumps(array, JSON_COMPACT) : NULL;
    json_decref(array);
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *line = malloc(n + 2);
    if (line) {
        memcpy(line, text, n);
        line[n] = '\n';
        line[n + 1] = '\0';
        *len = n + 1;
    }
    free(text);
    return line;
}

static int parse_reply(const char *line, size_t len, json_t **result, char *err, size_t errlen,
                       const char *path)
{
    json_error_t jerr;
    json_t *reply = json_loadb(line, len, 0, &jerr);
    json_t *status = reply ? json_object_get(reply, "status") : NULL;

    if (!json_is_integer(status) || json_integer_value(status) < 0 ||
        json_integer_value(status) > 255) {
        json_decref(reply);
        return call_fail(SNV_CTL_UNREACHABLE, err, errlen, "invalid reply from %s", path);
    }
    int st = (int)json_integer_value(status);
    if (st == SNV_CTL_OK) {
        json_t *r = json_object_get(reply, "result");
        *result = json_incref(r ? r : json_null());
    } else {
        const char *text = json_string_value(json_object_get(reply, "error"));
        *result = json_string(text ? text : "unknown error");
        if (err && errlen)
            snprintf(err, errlen, "%s", text ? text : "unknown error");
    }
    json_decref(reply);
    return st;
}

int snv_ctl_call(const char *path, int argc, const char *const argv[], int timeout_ms,
                 json_t **result, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int64_t deadline = timeout_ms >= 0 ? mono_ms() + timeout_ms : -1;
    int status;

    *result = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (argc < 1)
        return call_fail(SNV_CTL_USAGE, err, errlen, "no command");
    if (strlen(path) >= sizeof sun.sun_path)
        return call_fail(SNV_CTL_UNREACHABLE, err, errlen, "socket path too long: %s", path);
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);

    size_t req_len = 0;
    char *req_line = encode_request(argc, argv, &req_len);
    if (!req_line)
        return call_fail(SNV_CTL_USAGE, err, errlen, "cannot encode the request");

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        status = call_fail(SNV_CTL_UNREACHABLE, err, errlen, "socket: %s", strerror(errno));
        free(req_line);
        return status;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;

    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        status = call_fail(SNV_CTL_UNREACHABLE, err, errlen, "cannot connect to %s: %s", path,
                           strerror(errno));
        goto out;
    }
    for (size_t off = 0; off < req_len;) {
        int w = wait_fd(fd, POLLOUT, deadline);
        if (w <= 0) {
            status = w == 0
                         ? call_fail(SNV_CTL_TIMEOUT, err, errlen, "timed out sending to %s", path)
                         : call_fail(SNV_CTL_UNREACHABLE, err, errlen, "poll: %s", strerror(-w));
            goto out;
        }
        ssize_t n = send(fd, req_line + off, req_len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            /* The server may have refused the request and closed: read its reply. */
            if (errno == EPIPE || errno == ECONNRESET)
                break;
            status = call_fail(SNV_CTL_UNREACHABLE, err, errlen, "cannot send to %s: %s", path,
                               strerror(errno));
            goto out;
        }
        off += (size_t)n;
    }
    for (;;) {
        if (cap - len < SNV_CTL_READ_CHUNK) {
            size_t ncap = cap ? cap * 2 : 16384;
            char *p = realloc(buf, ncap);
            if (!p) {
                status = call_fail(SNV_CTL_UNREACHABLE, err, errlen, "out of memory");
                goto out;
            }
            buf = p;
            cap = ncap;
        }
        int w = wait_fd(fd, POLLIN, deadline);
        if (w <= 0) {
            status = w == 0 ? call_fail(SNV_CTL_TIMEOUT, err, errlen,
                                        "no reply from %s within %d ms", path, timeout_ms)
                            : call_fail(SNV_CTL_UNREACHABLE, err, errlen, "poll: %s", strerror(-w));
            goto out;
        }
        ssize_t n = recv(fd, buf + len, cap - len, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            status = call_fail(SNV_CTL_UNREACHABLE, err, errlen, "cannot read from %s: %s", path,
                               strerror(errno));
            goto out;
        }
        if (n == 0) {
            status = call_fail(SNV_CTL_UNREACHABLE, err, errlen,
                               "%s closed the connection without a reply", path);
            goto out;
        }
        size_t old = len;
        len += (size_t)n;
        char *nl = memchr(buf + old, '\n', len - old);
        if (nl) {
            status = parse_reply(buf, (size_t)(nl - buf), result, err, errlen, path);
            goto out;
        }
        if (len > SNV_CTL_REPLY_MAX) {
            status = call_fail(SNV_CTL_UNREACHABLE, err, errlen, "reply from %s too long", path);
            goto out;
        }
    }
out:
    close(fd);
    free(buf);
    free(req_line);
    return status;
}

/* ---- rendering ---- */

/* Appends the text form of a table cell / object value to a memstream. */
static void print_value(FILE *f, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_NULL:
        fputs("-", f);
        break;
    case JSON_TRUE:
        fputs("yes", f);
        break;
    case JSON_FALSE:
        fputs("no", f);
        break;
    case JSON_STRING:
        fputs(json_string_length(v) ? json_string_value(v) : "-", f);
        break;
    case JSON_INTEGER:
        fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_ARRAY:
        if (json_array_size(v) == 0) {
            fputs("-", f);
            break;
        }
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                fputc(',', f);
            print_value(f, json_array_get(v, i));
        }
        break;
    default: {
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        fputs(text ? text : "-", f);
        free(text);
        break;
    }
    }
}

static char *value_text(const json_t *v)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);

    if (!f)
        return NULL;
    print_value(f, v);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static int all_objects(const json_t *array)
{
    if (json_array_size(array) == 0)
        return 0;
    for (size_t i = 0; i < json_array_size(array); i++)
        if (!json_is_object(json_array_get(array, i)))
            return 0;
    return 1;
}

static void print_table(FILE *out, const json_t *rows)
{
    size_t n_rows = json_array_size(rows);
    json_t *columns = json_array(); /* key names: first row's order, then new keys */
    char **cells = NULL;
    size_t *widths = NULL;

    if (!columns)
        return;
    for (size_t r = 0; r < n_rows; r++) {
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)json_array_get(rows, r), key, val)
        {
            int seen = 0;
            for (size_t c = 0; c < json_array_size(columns) && !seen; c++)
                seen = strcmp(json_string_value(json_array_get(columns, c)), key) == 0;
            if (!seen)
                json_array_append_new(columns, json_string(key));
        }
    }
    size_t n_cols = json_array_size(columns);
    cells = calloc((n_rows + 1) * n_cols + 1, sizeof *cells);
    widths = calloc(n_cols + 1, sizeof *widths);
    if (!cells || !widths)
        goto out;
    for (size_t c = 0; c < n_cols; c++) {
        const char *key = json_string_value(json_array_get(columns, c));
        char *h = strdup(key);
        if (!h)
            goto out;
        for (char *p = h; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        cells[c] = h;
        for (size_t r = 0; r < n_rows; r++) {
            json_t *v = json_object_get(json_array_get(rows, r), key);
            char *t = v ? value_text(v) : strdup("-");
            if (!t)
                goto out;
            cells[(r + 1) * n_cols + c] = t;
        }
    }
    for (size_t i = 0; i < (n_rows + 1) * n_cols; i++) {
        size_t w = strlen(cells[i]);
        if (w > widths[i % n_cols])
            widths[i % n_cols] = w;
    }
    for (size_t r = 0; r <= n_rows; r++) {
        for (size_t c = 0; c < n_cols; c++) {
            const char *t = cells[r * n_cols + c];
            if (c + 1 < n_cols)
                fprintf(out, "%-*s  ", (int)widths[c], t);
            else
                fprintf(out, "%s\n", t);
        }
    }
out:
    if (cells)
        for (size_t i = 0; i < (n_rows + 1) * n_cols; i++)
            free(cells[i]);
    free(cells);
    free(widths);
    json_decref(columns);
}

void snv_ctl_print(FILE *out, const json_t *result, int json)
{
    if (json) {
        char *text = json_dumps(result ? result : json_null(), JSON_INDENT(2) | JSON_ENCODE_ANY);
        if (text) {
            fprintf(out, "%s\n", text);
            free(text);
        }
        return;
    }
    if (!result || json_is_null(result))
        return;
    if (json_is_array(result) && all_objects(result)) {
        print_table(out, result);
    } else if (json_is_array(result)) {
        for (size_t i = 0; i < json_array_size(result); i++) {
            print_value(out, json_array_get(result, i));
            fputc('\n', out);
        }
    } else if (json_is_object(result)) {
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)result, key, val)
        {
            fprintf(out, "%s: ", key);
            print_value(out, val);
            fputc('\n', out);
        }
    } else if (json_is_string(result)) {
        fprintf(out, "%s\n", json_string_value(result));
    } else {
        print_value(out, result);
        fputc('\n', out);
    }
}

/* ---- ctl tool main ---- */

/* A page of a long listing: {"items": [...], "next": CURSOR or null}. */
static int is_page(const json_t *r)
{
    return json_is_object(r) && json_object_size(r) == 2 &&
           json_is_array(json_object_get(r, "items")) &&
           (json_is_string(json_object_get(r, "next")) || json_is_null(json_object_get(r, "next")));
}

/* Asks for the pages after the first (*result), each with "after CURSOR" added to argv, and
 * replaces *result with all their items in one array.  Returns the status of the calls. */
static int follow_pages(const char *path, int argc, const char **argv, int timeout_ms,
                        json_t **result, char *err, size_t errlen)
{
    json_t *all = json_incref(json_object_get(*result, "items"));
    json_t *page = *result;
    const char **next_argv = calloc((size_t)argc + 3, sizeof *next_argv);
    char *cursor = NULL;
    int status = SNV_CTL_OK;

    if (!next_argv) {
        status = call_fail(SNV_CTL_FAILED, err, errlen, "out of memory");
        goto out;
    }
    memcpy(next_argv, argv, (size_t)argc * sizeof *argv);
    while (json_is_string(json_object_get(page, "next"))) {
        const char *next = json_string_value(json_object_get(page, "next"));
        if (cursor && strcmp(cursor, next) == 0) {
            status = call_fail(SNV_CTL_FAILED, err, errlen, "the listing did not advance");
            goto out;
        }
        free(cursor);
        cursor = strdup(next);
        if (!cursor) {
            status = call_fail(SNV_CTL_FAILED, err, errlen, "out of memory");
            goto out;
        }
        next_argv[argc] = "after";
        next_argv[argc + 1] = cursor;
        json_decref(page);
        page = NULL;
        status = snv_ctl_call(path, argc + 2, next_argv, timeout_ms, &page, err, errlen);
        if (status != SNV_CTL_OK)
            goto out;
        if (!is_page(page)) {
            status = call_fail(SNV_CTL_FAILED, err, errlen, "invalid page from %s", path);
            goto out;
        }
        if (json_array_extend(all, json_object_get(page, "items")) < 0) {
            status = call_fail(SNV_CTL_FAILED, err, errlen, "out of memory");
            goto out;
        }
    }
out:
    free(cursor);
    free(next_argv);
    json_decref(page);
    if (status == SNV_CTL_OK) {
        *result = all;
    } else {
        json_decref(all);
        *result = json_string(err);
    }
    return status;
}

static int has_word(int argc, const char *const argv[], const char *word)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], word) == 0)
            return 1;
    return 0;
}

/* Number of words in `phrase` if they equal words[0..] (all of them), else 0. */
static int match_words(const char *phrase, int nwords, char *const words[])
{
    int i = 0;
    const char *p = phrase;

    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *end = strchr(p, ' ');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (i >= nwords || strlen(words[i]) != n || strncmp(words[i], p, n) != 0)
            return 0;
        i++;
        p += n;
    }
    return i;
}

int snv_ctl_tool_main(int argc, char **argv, const char *default_socket,
                      const struct snv_ctl_word_map *words, const char *help)
{
    static const struct option options[] = {
        {"socket", required_argument, NULL, 's'},  {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},       {NULL, 0, NULL, 0},
    };
    const char *prog = argc > 0 && argv[0] ? strrchr(argv[0], '/') : NULL;
    prog = prog ? prog + 1 : (argc > 0 && argv[0] ? argv[0] : "ctl");
    const char *socket_path = default_socket;
    int json = 0;
    int timeout_ms = SNV_CTL_DEFAULT_TIMEOUT_S * 1000;
    int opt;

    optind = 0; /* glibc: full reinitialisation, so the function may run more than once */
    while ((opt = getopt_long(argc, argv, "s:jt:h", options, NULL)) != -1) {
        switch (opt) {
        case 's':
            socket_path = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 't': {
            char *end;
            errno = 0;
            double secs = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(secs > 0) || secs > 86400) {
                fprintf(stderr, "%s: invalid timeout \"%s\" (seconds, > 0)\n", prog, optarg);
                return SNV_CTL_USAGE;
            }
            timeout_ms = (int)(secs * 1000);
            if (timeout_ms < 1)
                timeout_ms = 1;
            break;
        }
        case 'h':
            fputs(help ? help : "", stdout);
            return SNV_CTL_OK;
        case 'V':
            printf("%s %s\n", prog, SPLITNVE_VERSION);
            return SNV_CTL_OK;
        default:
            fprintf(stderr, "%s: try --help\n", prog);
            return SNV_CTL_USAGE;
        }
    }
    int nwords = argc - optind;
    char **w = argv + optind;
    if (nwords < 1) {
        fprintf(stderr, "%s: missing command (try --help)\n", prog);
        return SNV_CTL_USAGE;
    }
    if (!socket_path || !*socket_path) {
        fprintf(stderr, "%s: no control socket given (-s)\n", prog);
        return SNV_CTL_USAGE;
    }

    const char *command = w[0];
    int used = 1;
    int best = 0;
    for (const struct snv_ctl_word_map *m = words; m && m->words; m++) {
        int n = match_words(m->words, nwords, w);
        if (n > best) {
            best = n;
            command = m->command;
            used = n;
        }
    }

    int call_argc = 1 + nwords - used;
    const char **call_argv = calloc((size_t)call_argc + 1, sizeof *call_argv);
    if (!call_argv) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return SNV_CTL_FAILED;
    }
    call_argv[0] = command;
    for (int i = used; i < nwords; i++)
        call_argv[1 + i - used] = w[i];

    json_t *result = NULL;
    char err[SNV_CTL_ERROR_MAX];
    int status =
        snv_ctl_call(socket_path, call_argc, call_argv, timeout_ms, &result, err, sizeof err);
    /* A paged listing is followed to its end, unless one page was asked for. */
    int one_page =
        has_word(call_argc, call_argv, "limit") || has_word(call_argc, call_argv, "after");
    if (status == SNV_CTL_OK && is_page(result) && !one_page)
        status =
            follow_pages(socket_path, call_argc, call_argv, timeout_ms, &result, err, sizeof err);
    free(call_argv);
    if (status == SNV_CTL_OK && is_page(result) && !json) {
        snv_ctl_print(stdout, json_object_get(result, "items"), 0);
        if (json_is_string(json_object_get(result, "next")))
            fprintf(stderr, "%s: more: add \"after %s\"\n", prog,
                    json_string_value(json_object_get(result, "next")));
    } else if (status == SNV_CTL_OK) {
        snv_ctl_print(stdout, result, json);
    } else
        fprintf(stderr, "%s: %s\n", prog, err[0] ? err : "failed");
    json_decref(result);
    if (fflush(stdout) != 0 && status == SNV_CTL_OK)
        status = SNV_CTL_FAILED;
    return status;
}
