/* tls-session.c: request/response pairs per second through two SNCP sessions (client and
 * server) wired back to back in memory, TLS included, on one core.
 *
 *   tls-session [SECONDS_PER_RUN [IDLE_SESSIONS]]
 *
 * First (in a child process, IDLE_SESSIONS pairs, default 200; 0 skips it): the idle memory
 * per session of each side after the handshake, from the heap in use (mallinfo2, glibc's
 * thread cache off so that it moves with every allocation and free) and from OpenSSL's own
 * allocations counted per call site (CRYPTO_set_mem_functions), by component; TABLE rows for
 * both sides, the server's against the nNVE's 16 KiB goal.  TLS_SESSION_MEMORY_ONLY=1 stops
 * after it; TLS_SESSION_VERBOSE=1 lists the server's OpenSSL call sites.
 *
 * Generates a throwaway PKI with scripts/gen-pki.sh (found next to the build or through
 * SPLITNVE_SRC), then measures VN_CONNECT -> RESPONSE(LOCAL_TAG) pairs with 1 request in
 * flight (ping-pong: every message is its own TLS record) and with windows of 16 and 256
 * (pipelined: responses produced while handling one input chunk leave together; requests
 * are batched too when the client corks its session around each burst).
 */
#include <errno.h>
#include <ftw.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

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
    int who; /* SIDE_CLIENT or SIDE_SERVER */
};

static uint64_t now_ms;

/* ---- memory accounting ----------------------------------------------------------------
 * OpenSSL 3 allocates through CRYPTO_malloc(), which reports the allocating source file and
 * line: every OpenSSL allocation is counted, in use, per call site and per side (the side
 * whose session call made it).  All allocations, OpenSSL's included, are also counted with
 * mallinfo2() (bytes in use, allocator overhead included) around each side's calls. */

enum { SIDE_CLIENT, SIDE_SERVER, SIDE_NONE, N_SIDES };
/* The idle memory per session the nNVE aims at (KiB). */
#define IDLE_GOAL_KIB 16.0
enum { SITES = 4096 };

struct site {
    const char *file;
    int line;
    long long bytes[N_SIDES];
    long long count[N_SIDES];
};

static struct site sites[SITES];
static int cur_side = SIDE_NONE;
static long long heap_delta[N_SIDES]; /* mallinfo2 in-use growth during each side's calls */

/* Each block carries a header: its size, site and side. */
struct mem_hdr {
    uint32_t size;
    uint16_t site;
    uint8_t side;
    uint8_t pad[9];
};

static uint16_t site_of(const char *file, int line)
{
    size_t h = ((size_t)file * 31u + (size_t)line) % (SITES - 1);
    for (size_t i = 0; i < SITES - 1; i++, h = (h + 1) % (SITES - 1)) {
        if (!sites[h].file) {
            sites[h].file = file ? file : "?";
            sites[h].line = line;
            return (uint16_t)h;
        }
        if (sites[h].line == line &&
            (sites[h].file == file || !strcmp(sites[h].file, file ? file : "?")))
            return (uint16_t)h;
    }
    return SITES - 1; /* table full: one bucket for the rest */
}

static void account(struct mem_hdr *h, int sign)
{
    sites[h->site].bytes[h->side] += sign * (long long)h->size;
    sites[h->site].count[h->side] += sign;
}

static void *mem_malloc(size_t n, const char *file, int line)
{
    struct mem_hdr *h = malloc(sizeof *h + n);
    if (!h)
        return NULL;
    h->size = (uint32_t)n;
    h->site = site_of(file, line);
    h->side = (uint8_t)cur_side;
    account(h, 1);
    return h + 1;
}

static void mem_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    if (!p)
        return;
    struct mem_hdr *h = (struct mem_hdr *)p - 1;
    account(h, -1);
    free(h);
}

static void *mem_realloc(void *p, size_t n, const char *file, int line)
{
    if (!p)
        return mem_malloc(n, file, line);
    if (!n) {
        mem_free(p, file, line);
        return NULL;
    }
    struct mem_hdr *h = (struct mem_hdr *)p - 1, *nh;
    account(h, -1);
    if (!(nh = realloc(h, sizeof *h + n))) {
        account(h, 1);
        return NULL;
    }
    nh->size = (uint32_t)n;
    account(nh, 1);
    return nh + 1;
}

static long long heap_in_use(void)
{
    return (long long)mallinfo2().uordblks;
}

/* Runs one side's call, charging the heap growth to that side. */
#define ON_SIDE(side, call)                                                                        \
    do {                                                                                           \
        int saved_ = cur_side;                                                                     \
        long long h0_ = heap_in_use();                                                             \
        cur_side = (side);                                                                         \
        call;                                                                                      \
        cur_side = saved_;                                                                         \
        heap_delta[side] += heap_in_use() - h0_;                                                   \
    } while (0)

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
static int counting; /* the memory phase: charge each call's heap growth to its side */

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
    int rc;
    if (counting)
        ON_SIDE(to->who, rc = sncp_session_input(to->s, scratch, n, now_ms));
    else
        rc = sncp_session_input(to->s, scratch, n, now_ms);
    if (rc < 0) {
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

/* Sums the in-use OpenSSL bytes of one side over the sites whose file starts with prefix
 * (all when NULL); *blocks gets the number of blocks. */
static long long ossl_bytes(int side, const char *prefix, long long *blocks)
{
    long long b = 0, c = 0;
    for (size_t i = 0; i < SITES; i++)
        if (sites[i].file && (!prefix || strstr(sites[i].file, prefix))) {
            b += sites[i].bytes[side];
            c += sites[i].count[side];
        }
    if (blocks)
        *blocks = c;
    return b;
}

/* OpenSSL's allocations by what they hold after the handshake: each call site goes to the
 * first component whose list names its file (a substring of the path). */
static const struct {
    const char *label;
    const char *files[8];
} components[] = {
    {"SSL object (SSL_new)", {"ssl/ssl_lib.c"}},
    {"SSL_SESSION", {"ssl/ssl_sess.c"}},
    {"peer certificate, parsed (X509, names, ASN.1)", {"crypto/asn1/", "crypto/x509/x_"}},
    {"X25519 key shares (ours and the peer's)", {"crypto/ec/ecx_"}},
    {"public keys: peer's EC key (2 copies), EVP_PKEYs", {"crypto/bn/", "crypto/ec/", "p_lib.c"}},
    {"record AEAD contexts (read + write)", {"providers/implementations/ciphers/", "evp_enc.c"}},
    {"digest contexts (transcript)", {"providers/implementations/digests/", "evp/digest.c"}},
    {"locks of refcounted objects", {"threads_pthread.c"}},
    {"per-SSL copies of SSL_CTX settings (CERT, groups)", {"ssl/ssl_cert.c", "ssl/t1_lib.c"}},
    {"verify parameters copy", {"x509_vpm.c"}},
    {"memory BIOs", {"crypto/bio/", "crypto/buffer/"}},
    {"stacks", {"crypto/stack/"}},
};
enum { N_COMPONENTS = sizeof components / sizeof components[0] };

static size_t component_of(const char *file)
{
    for (size_t k = 0; k < N_COMPONENTS; k++)
        for (size_t f = 0; f < 8 && components[k].files[f]; f++)
            if (strstr(file, components[k].files[f]))
                return k;
    return N_COMPONENTS;
}

static long long component_bytes(int side, size_t k)
{
    long long b = 0;
    for (size_t i = 0; i < SITES; i++)
        if (sites[i].file && component_of(sites[i].file) == k)
            b += sites[i].bytes[side];
    return b;
}

static int cmp_site(const void *a, const void *b)
{
    const struct site *x = *(const struct site *const *)a, *y = *(const struct site *const *)b;
    long long d = y->bytes[SIDE_SERVER] - x->bytes[SIDE_SERVER];
    return d > 0 ? 1 : d < 0 ? -1 : 0;
}

/* Idle memory per session: n client/server session pairs complete their handshake one
 * after the other and stay open; then what each side holds per session, from the heap in
 * use (allocator overhead included) and OpenSSL's own allocations by component.  A first
 * pair, before the baseline, pays for what is allocated once per thread or context. */
static void memory(struct sncp_tls_ctx *sctx, struct sncp_tls_ctx *cctx, unsigned n, int verbose)
{
    struct side *sides = calloc(2 * (size_t)(n + 1), sizeof *sides);
    static uint8_t *wire[2];
    enum { WIRE_CAP = 1 << 20 };
    wire[0] = malloc(WIRE_CAP);
    wire[1] = malloc(WIRE_CAP);
    scratch_cap = WIRE_CAP;
    free(scratch);
    scratch = malloc(scratch_cap);
    if (!sides || !wire[0] || !wire[1] || !scratch) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    struct sncp_session_config c = {.role = SNCP_TLS_CLIENT, .tls = cctx};
    struct sncp_session_config s = {.role = SNCP_TLS_SERVER, .tls = sctx};
    long long base[N_SIDES];
    counting = 1;
    for (unsigned i = 0; i <= n; i++) {
        if (i == 1) {
            for (int k = 0; k < N_SIDES; k++) {
                base[k] = heap_delta[k];
            }
            for (size_t k = 0; k < SITES; k++)
                for (int d = 0; d < N_SIDES; d++)
                    sites[k].count[d] = sites[k].bytes[d] = 0;
        }
        struct side *cl = &sides[2 * i], *sv = &sides[2 * i + 1];
        cl->who = SIDE_CLIENT;
        sv->who = SIDE_SERVER;
        cl->out = wire[0];
        sv->out = wire[1];
        cl->out_cap = sv->out_cap = WIRE_CAP;
        ON_SIDE(SIDE_CLIENT, cl->s = sncp_session_create(&c, &cbs, cl));
        ON_SIDE(SIDE_SERVER, sv->s = sncp_session_create(&s, &cbs, sv));
        if (!cl->s || !sv->s) {
            fprintf(stderr, "session create failed\n");
            exit(1);
        }
        ON_SIDE(SIDE_SERVER, sncp_session_start(sv->s, now_ms));
        ON_SIDE(SIDE_CLIENT, sncp_session_start(cl->s, now_ms));
        while (deliver(cl, sv) + deliver(sv, cl))
            ;
        if (!cl->connected || !sv->connected) {
            fprintf(stderr, "handshake failed\n");
            exit(1);
        }
    }
    counting = 0;
    const char *names[] = {"client (tNVE)", "server (nNVE)"};
    double per[2];
    for (int side = SIDE_CLIENT; side <= SIDE_SERVER; side++) {
        long long blocks, ossl = ossl_bytes(side, NULL, &blocks);
        /* The counting headers are this program's, not the session's. */
        long long heap = heap_delta[side] - base[side] - blocks * (long long)sizeof(struct mem_hdr);
        per[side] = (double)heap / n;
        printf("memory: %s, %u idle sessions: %.0f B per session in the heap (allocator "
               "overhead included), of which OpenSSL %.0f B requested in %.1f blocks\n",
               names[side], n, per[side], (double)ossl / n, (double)blocks / n);
        long long listed = 0;
        for (size_t k = 0; k < sizeof components / sizeof components[0]; k++) {
            long long b = component_bytes(side, k);
            listed += b;
            if (b)
                printf("memory:   %-52s %7.0f B\n", components[k].label, (double)b / n);
        }
        printf("memory:   %-52s %7.0f B\n", "OpenSSL, elsewhere", (double)(ossl - listed) / n);
        printf("memory:   %-52s %7.0f B\n", "not OpenSSL: splitnve, allocator overhead",
               (double)(heap - ossl) / n);
    }
    if (verbose) {
        struct site *order[SITES];
        size_t m = 0;
        for (size_t k = 0; k < SITES; k++)
            if (sites[k].file && sites[k].bytes[SIDE_SERVER])
                order[m++] = &sites[k];
        qsort(order, m, sizeof order[0], cmp_site);
        for (size_t k = 0; k < m; k++)
            printf("memory:   server site %s:%d %.0f B in %.1f blocks\n", order[k]->file,
                   order[k]->line, (double)order[k]->bytes[SIDE_SERVER] / n,
                   (double)order[k]->count[SIDE_SERVER] / n);
    }
    /* The server side against the nNVE's goal (the floor column); the client's for reference. */
    printf("TABLE|sncp session idle memory per session, lib + OpenSSL, server side (KiB)"
           "|%.1f|%.1f|%.2f\n",
           per[SIDE_SERVER] / 1024, IDLE_GOAL_KIB, per[SIDE_SERVER] / 1024 / IDLE_GOAL_KIB);
    printf(
        "TABLE|sncp session idle memory per session, lib + OpenSSL, client side (KiB)|%.1f|-|-\n",
        per[SIDE_CLIENT] / 1024);
    for (unsigned i = 0; i < 2 * (n + 1); i++)
        sncp_session_destroy(sides[i].s);
    free(sides);
    free(wire[0]);
    free(wire[1]);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    unsigned mem_sessions = argc > 2 ? (unsigned)atoi(argv[2]) : 200;
    /* The memory phase runs in a child of its own: glibc's per-thread cache keeps freed
     * blocks counted as in use, and without it the heap in use changes exactly with each
     * allocation and free; the speed runs keep the ordinary allocator. */
    static const char no_tcache[] = "glibc.malloc.tcache_count=0";
    const char *tunables = getenv("GLIBC_TUNABLES");
    if (mem_sessions && (!tunables || !strstr(tunables, no_tcache))) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            setenv("GLIBC_TUNABLES", no_tcache, 1);
            setenv("TLS_SESSION_MEMORY_ONLY", "1", 1);
            execv("/proc/self/exe", argv);
            perror("tls-session: memory phase");
            _exit(1);
        }
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "tls-session: the memory phase failed\n");
            return 1;
        }
        if (getenv("TLS_SESSION_MEMORY_ONLY"))
            return 0;
        mem_sessions = 0;
    }
    /* Before OpenSSL allocates anything. */
    if (mem_sessions && !CRYPTO_set_mem_functions(mem_malloc, mem_realloc, mem_free)) {
        printf("memory: cannot count OpenSSL's allocations here (already initialized): "
               "skipped\n");
        mem_sessions = 0;
    }
    int verbose = getenv("TLS_SESSION_VERBOSE") != NULL;
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

    if (!getenv("TLS_SESSION_MEMORY_ONLY"))
        printf("tls-session: VN_CONNECT/RESPONSE pairs through two TLS 1.3 sessions, one core\n");
    if (mem_sessions)
        memory(sctx, cctx, mem_sessions, verbose);
    if (!getenv("TLS_SESSION_MEMORY_ONLY")) {
        run(sctx, cctx, 1, 0, seconds);
        run(sctx, cctx, 16, 0, seconds);
        run(sctx, cctx, 256, 0, seconds);
        run(sctx, cctx, 16, 1, seconds);
        run(sctx, cctx, 256, 1, seconds);
    }
    sncp_tls_ctx_destroy(sctx);
    sncp_tls_ctx_destroy(cctx);
    free(scratch);
    return 0;
}
