/* conn-tcp.c: request/response pairs per second through sncp_conn over TCP on 127.0.0.1,
 * TLS included, both ends on one libuv loop (so one core does the work of both peers).
 *
 *   conn-tcp [SECONDS_PER_RUN]
 *
 * Generates a throwaway PKI with scripts/gen-pki.sh (through SPLITNVE_SRC), then measures
 * VN_CONNECT -> RESPONSE(LOCAL_TAG) pairs with 1, 16 and 256 requests in flight.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "sncp-conn.h"
#include "sncp-error.h"

struct bench {
    uv_loop_t loop;
    struct sncp_listener *listener;
    struct sncp_conn *client;
    unsigned window;
    int connected, closed_client, closed_server;
    uint64_t sent, answered;
    int done;
    struct sncp_msg req, rsp;
};

static void fill(struct bench *b)
{
    while (!b->done && b->sent - b->answered < b->window) {
        b->req.vn_id = (uint32_t)(b->sent % 100000);
        if (sncp_conn_send(b->client, &b->req, b->sent) < 0) {
            fprintf(stderr, "send failed\n");
            exit(1);
        }
        b->sent++;
    }
}

static void on_connected(struct sncp_conn *c, const char *id)
{
    struct bench *b = sncp_conn_data(c);
    (void)id;
    if (c == b->client) {
        b->connected = 1;
        fill(b);
    }
}

static void on_request(struct sncp_conn *c, const struct sncp_msg *req)
{
    struct bench *b = sncp_conn_data(c);
    b->rsp.tags[0].vid = (uint16_t)(req->vn_id % 4000 + 1);
    if (sncp_conn_respond(c, req, &b->rsp) < 0) {
        fprintf(stderr, "respond failed\n");
        exit(1);
    }
}

static void on_response(struct sncp_conn *c, uint64_t cookie, const struct sncp_msg *rsp, int err)
{
    struct bench *b = sncp_conn_data(c);
    (void)cookie;
    if (err || !rsp || rsp->status != SNCP_STATUS_SUCCESS) {
        if (b->done)
            return;
        fprintf(stderr, "bad response: %s\n", sncp_strerror(err));
        exit(1);
    }
    b->answered++;
    fill(b);
}

static void on_closed(struct sncp_conn *c, int err)
{
    struct bench *b = sncp_conn_data(c);
    if (c == b->client)
        b->closed_client = 1;
    else
        b->closed_server = 1;
    if (err && !b->done)
        fprintf(stderr, "connection closed: %s\n", sncp_strerror(err));
}

static const struct sncp_conn_cbs cbs = {on_connected, on_request, on_response, on_closed};

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int gen_pki(const char *script, const char *dir)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execl(script, "gen-pki.sh", dir, "server", "client", (char *)NULL);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static struct sncp_tls_ctx *make_ctx(const char *dir, enum sncp_tls_role role, const char *name)
{
    char cert[512], key[512], ca[512], err[256];
    snprintf(cert, sizeof cert, "%s/%s.crt", dir, name);
    snprintf(key, sizeof key, "%s/%s.key", dir, name);
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    struct sncp_tls_ctx *c = sncp_tls_ctx_create(role, cert, key, ca, err, sizeof err);
    if (!c) {
        fprintf(stderr, "tls context %s: %s\n", name, err);
        exit(1);
    }
    return c;
}

static void run(struct sncp_tls_ctx *sctx, struct sncp_tls_ctx *cctx, unsigned window,
                double seconds)
{
    struct bench *b = calloc(1, sizeof *b);
    if (!b || uv_loop_init(&b->loop) != 0)
        exit(1);
    b->window = window;
    sncp_msg_init(&b->req, SNCP_MSG_VN_CONNECT, 0);
    sncp_msg_set(&b->req, SNCP_TLV_VN_ID);
    sncp_msg_init(&b->rsp, SNCP_MSG_RESPONSE, 0);
    b->rsp.status = SNCP_STATUS_SUCCESS;
    b->rsp.n_tags = 1;
    b->rsp.tags[0].pcp = SNCP_PCP_NONE;
    sncp_msg_set(&b->rsp, SNCP_TLV_LOCAL_TAG);

    struct sncp_conn_config scfg = {.session = {.tls = sctx, .max_inflight = 4096}};
    struct sncp_conn_config ccfg = {.session = {.tls = cctx, .max_outstanding = 4096}};
    int rc = sncp_listener_create(&b->loop, "127.0.0.1", 0, &scfg, &cbs, b, &b->listener);
    if (rc == 0)
        rc = sncp_conn_connect(&b->loop, "127.0.0.1", sncp_listener_port(b->listener), &ccfg, &cbs,
                               b, &b->client);
    if (rc < 0) {
        fprintf(stderr, "setup failed: %s\n", sncp_strerror(rc));
        exit(1);
    }
    while (!b->connected && !b->closed_client)
        uv_run(&b->loop, UV_RUN_ONCE);
    double t0 = mono(), t1;
    uint64_t a0 = b->answered;
    do {
        for (int i = 0; i < 64 && !b->closed_client; i++)
            uv_run(&b->loop, UV_RUN_ONCE);
        t1 = mono();
    } while (t1 - t0 < seconds && !b->closed_client);
    uint64_t pairs = b->answered - a0;
    printf("window=%-4u pairs=%-9llu seconds=%.2f pairs_per_sec=%.0f\n", window,
           (unsigned long long)pairs, t1 - t0, (double)pairs / (t1 - t0));
    b->done = 1;
    sncp_conn_close(b->client);
    while (!b->closed_client || !b->closed_server)
        uv_run(&b->loop, UV_RUN_ONCE);
    sncp_listener_destroy(b->listener);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&b->loop) != 0)
        fprintf(stderr, "loop did not close cleanly\n");
    free(b);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    if (seconds <= 0)
        seconds = 2.0;
    const char *src = getenv("SPLITNVE_SRC");
    char script[1024];
    snprintf(script, sizeof script, "%s/scripts/gen-pki.sh", src ? src : ".");
    char dir[256];
    snprintf(dir, sizeof dir, "%s/sncp-bench-tcp-%ld-%ld",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long)getpid(), (long)time(NULL));
    if (mkdir(dir, 0700) < 0) {
        perror(dir);
        return 1;
    }
    if (gen_pki(script, dir) < 0) {
        fprintf(stderr, "cannot run %s (set SPLITNVE_SRC to the source tree)\n", script);
        nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        return 1;
    }
    struct sncp_tls_ctx *sctx = make_ctx(dir, SNCP_TLS_SERVER, "server");
    struct sncp_tls_ctx *cctx = make_ctx(dir, SNCP_TLS_CLIENT, "client");
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);

    printf("conn-tcp: VN_CONNECT/RESPONSE pairs over TCP 127.0.0.1 + TLS 1.3, both ends on "
           "one loop\n");
    run(sctx, cctx, 1, seconds);
    run(sctx, cctx, 16, seconds);
    run(sctx, cctx, 256, seconds);
    sncp_tls_ctx_destroy(sctx);
    sncp_tls_ctx_destroy(cctx);
    return 0;
}
