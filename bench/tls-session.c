/* tls-session.c: request/response pairs per second through two SNCP sessions (client and
 * server) wired back to back in memory, TLS included, on one core.
 *
 *   tls-session [SECONDS_PER_RUN]
 *
 * Generates a throwaway PKI with scripts/gen-pki.sh (found next to the build or through
 * SPLITNVE_SRC), then measures VN_CONNECT -> RESPONSE(LOCAL_TAG) pairs with 1 request in
 * flight (ping-pong: every message is its own TLS record) and with windows of 16 and 256
 * (pipelined: responses produced while handling one input chunk leave together; requests
 * are batched too when the client corks its session around each burst).
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

#include "sncp-error.h"
#include "sncp-session.h"
#include "sncp-tls.h"

struct side {
    struct sncp_session *s;
    uint8_t *out;
    size_t out_len, out_cap;
    int connected;
    uint64_t responses;
    int auto_respond;
    struct sncp_msg rsp;
};

static uint64_t now_ms;

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void cb_output(void *ctx, const uint8_t *data, size_t len)
{
    struct side *sd = ctx;
    if (sd->out_len + len > sd->out_cap) {
        size_t cap = sd->out_cap ? sd->out_cap * 2 : 1 << 20;
        while (cap < sd->out_len + len)
            cap *= 2;
        uint8_t *n = realloc(sd->out, cap);
        if (!n) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        sd->out = n;
        sd->out_cap = cap;
    }
    memcpy(sd->out + sd->out_len, data, len);
    sd->out_len += len;
}

static void cb_connected(void *ctx, const char *id)
{
    struct side *sd = ctx;
    (void)id;
    sd->connected = 1;
}

static void cb_request(void *ctx, const struct sncp_msg *req)
{
    struct side *sd = ctx;
    sd->rsp.tags[0].vid = (uint16_t)(req->vn_id % 4000 + 1);
    if (sncp_session_respond(sd->s, req, &sd->rsp, now_ms) < 0) {
        fprintf(stderr, "respond failed\n");
        exit(1);
    }
}

static void cb_response(void *ctx, uint64_t cookie, const struct sncp_msg *rsp, int err)
{
    struct side *sd = ctx;
    (void)cookie;
    if (err || !rsp || rsp->status != SNCP_STATUS_SUCCESS) {
        fprintf(stderr, "bad response err=%d\n", err);
        exit(1);
    }
    sd->responses++;
}

static void cb_closed(void *ctx, int err)
{
    (void)ctx;
    fprintf(stderr, "session closed unexpectedly: %s\n", sncp_strerror(err));
    exit(1);
}

static const struct sncp_session_cbs cbs = {cb_output, cb_connected, cb_request, cb_response,
                                            cb_closed};

static uint8_t *scratch;
static size_t scratch_cap;

static size_t deliver(struct side *from, struct side *to)
{
    size_t n = from->out_len;
    if (!n)
        return 0;
    if (n > scratch_cap) {
        free(scratch);
        scratch_cap = n * 2;
        scratch = malloc(scratch_cap);
        if (!scratch)
            exit(1);
    }
    memcpy(scratch, from->out, n);
    from->out_len = 0;
    if (sncp_session_input(to->s, scratch, n, now_ms) < 0) {
        fprintf(stderr, "input failed\n");
        exit(1);
    }
    return n;
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

static void run(struct sncp_tls_ctx *sctx, struct sncp_tls_ctx *cctx, unsigned window, int corked,
                double seconds)
{
    struct side cli, srv;
    memset(&cli, 0, sizeof cli);
    memset(&srv, 0, sizeof srv);
    struct sncp_session_config c = {.role = SNCP_TLS_CLIENT, .tls = cctx, .max_outstanding = 4096};
    struct sncp_session_config s = {.role = SNCP_TLS_SERVER, .tls = sctx, .max_inflight = 4096};
    cli.s = sncp_session_create(&c, &cbs, &cli);
    srv.s = sncp_session_create(&s, &cbs, &srv);
    sncp_msg_init(&srv.rsp, SNCP_MSG_RESPONSE, 0);
    srv.rsp.status = SNCP_STATUS_SUCCESS;
    srv.rsp.n_tags = 1;
    srv.rsp.tags[0].pcp = SNCP_PCP_NONE;
    sncp_msg_set(&srv.rsp, SNCP_TLV_LOCAL_TAG);
    sncp_session_start(srv.s, now_ms);
    sncp_session_start(cli.s, now_ms);
    while (deliver(&cli, &srv) + deliver(&srv, &cli))
        ;
    if (!cli.connected || !srv.connected) {
        fprintf(stderr, "handshake failed\n");
        exit(1);
    }

    struct sncp_msg req;
    sncp_msg_init(&req, SNCP_MSG_VN_CONNECT, 0);
    sncp_msg_set(&req, SNCP_TLV_VN_ID);
    uint64_t sent = 0;
    double t0 = mono(), t1;
    do {
        for (int iter = 0; iter < 64; iter++) {
            if (corked)
                sncp_session_cork(cli.s);
            while (sncp_session_outstanding(cli.s) < window) {
                req.vn_id = (uint32_t)(sent % 100000);
                if (sncp_session_send(cli.s, &req, sent, now_ms) < 0) {
                    fprintf(stderr, "send failed\n");
                    exit(1);
                }
                sent++;
            }
            if (corked)
                sncp_session_uncork(cli.s);
            deliver(&cli, &srv);
            deliver(&srv, &cli);
        }
        t1 = mono();
    } while (t1 - t0 < seconds);
    const struct sncp_session_stats *st = sncp_session_stats(cli.s);
    printf("window=%-4u %-8s pairs=%-9llu seconds=%.2f pairs_per_sec=%.0f bytes_per_pair=%.1f\n",
           window, corked ? "corked" : "uncorked", (unsigned long long)cli.responses, t1 - t0,
           (double)cli.responses / (t1 - t0),
           (double)(st->bytes_out + st->bytes_in) / (double)(cli.responses ? cli.responses : 1));
    sncp_session_destroy(cli.s);
    sncp_session_destroy(srv.s);
    free(cli.out);
    free(srv.out);
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
    snprintf(dir, sizeof dir, "%s/sncp-bench-%ld-%ld", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (long)getpid(), (long)time(NULL));
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

    printf("tls-session: VN_CONNECT/RESPONSE pairs through two TLS 1.3 sessions, one core\n");
    run(sctx, cctx, 1, 0, seconds);
    run(sctx, cctx, 16, 0, seconds);
    run(sctx, cctx, 256, 0, seconds);
    run(sctx, cctx, 16, 1, seconds);
    run(sctx, cctx, 256, 1, seconds);
    sncp_tls_ctx_destroy(sctx);
    sncp_tls_ctx_destroy(cctx);
    free(scratch);
    return 0;
}
