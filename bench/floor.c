/* floor.c: the machine's own floors for nnve-daemon's figures, measured in the same run
 * (called by bench/nnve.sh right before it loads the daemon).
 *
 *   floor --fdatasync DIR [--count N] [--gap-ms G | --rate R]
 *       N (2,000) writes of 4 KiB, each followed by fdatasync(), cycling over a 4 MiB file in
 *       DIR (preallocated and synced first, as SQLite reuses its log): p50/p99 in ms, and
 *       the p99 wait of a request arriving at a random moment for the sync in progress and
 *       the next (commit_wait_p99()).  With G, one write and sync every G ms instead of back
 *       to back: what a lone request's commit costs (on a virtual disk a sync after an idle
 *       spell costs several times one that follows another), p50/p99 only.  With R, then N
 *       more at R per second, one due every 1/R s (back to back only when one overran): the
 *       syncs of a daemon that commits each request of a load at R requests/s alone, whose
 *       CPU goes idle between them (on a virtual machine waking it for the completion costs
 *       more than a sync that follows another at once): p50/p99.
 *   floor --echo --pki DIR [--sessions N] [--window W] [--seconds S] [--size B] [--rate R]
 *       a bare TLS echo over TCP on 127.0.0.1, through lib's TLS engine (sncp_tls) and
 *       libuv, the server in a child process (as the daemon is): first one session with one
 *       message in flight (round trip p50/p99); with R, then R messages/s over N sessions
 *       sent as bench/nnve-load's latency phase sends its requests (a timer with the period
 *       1/R, open loop, 1 s of warm-up then 3 s counted, each round trip from its message's
 *       due time): the floor of that phase's figure, which pays what the back-to-back round
 *       trip does not (the timer's wake-up, waking an idle CPU for each message); then N
 *       (100) sessions with W (64) messages of B (96) bytes in flight each for S (2) seconds
 *       (round trips/s).  Certificates:
 *       DIR/nnve.crt for the server, DIR/benchK.crt for session K (bench/nnve-load
 *       --gen-certs).
 * Every figure is also printed as a line TABLE|figure|value|-|- (scripts/run-bench.sh).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "cpu-ticks.h"
#include "sncp-tls.h"

enum { FLOOR_FILE_BYTES = 4 << 20, FLOOR_BLOCK = 4096 }; /* the fdatasync floor's file, writes */
static uint8_t block[FLOOR_BLOCK];                       /* what they write (0xa5...) */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The q quantile of the n sorted durations v (ns), in ms; 0 when there are none. */
static double pct(const uint64_t *v, size_t n, double q)
{
    return n ? (double)v[(size_t)((double)n * q)] / 1e6 : 0;
}

/* ---- fdatasync ---- */

/* The syncs ran back to back, as a group commit's do under load.  A request that arrives at a
 * random moment waits for the rest of the sync in progress and for the next one (its own
 * group's): the p99 of that wait over arrival times spread evenly over the run.  Unlike the
 * p99 of the syncs themselves it weighs a sync by how long it lasts, as the requests do: one
 * 50 ms stall among 2,000 syncs of 0.1 ms is under their p99, yet a fifth of the run's
 * arrivals wait for it.  Returns ms. */
static double commit_wait_p99(const uint64_t *ns, unsigned count)
{
    enum { SAMPLES = 100000 };
    uint64_t total = 0;
    for (unsigned i = 0; i + 1 < count; i++)
        total += ns[i];
    uint64_t *wait = calloc(SAMPLES, sizeof *wait);
    if (!wait || count < 2 || !total) {
        free(wait);
        return 0;
    }
    uint64_t start = 0; /* of sync i */
    unsigned i = 0;
    for (unsigned k = 0; k < SAMPLES; k++) {
        uint64_t t = total * k / SAMPLES; /* arrival, in [0, total): during syncs 0..count-2 */
        while (start + ns[i] <= t)
            start += ns[i++];
        wait[k] = start + ns[i] - t + ns[i + 1];
    }
    qsort(wait, SAMPLES, sizeof *wait, cmp_u64);
    double p99 = wait[(size_t)(SAMPLES * 0.99)] / 1e6;
    free(wait);
    return p99;
}

/* count writes of 4 KiB, each followed by fdatasync(), cycling over the file; with gap_ms
 * one every gap_ms ms after the last ended, with period_ns one due every period_ns (a sleep
 * until it is due; back to back when behind), else back to back.  ns[i]: sync i's time.
 * Returns 0 or -1 (errno). */
static int sync_run(int fd, unsigned count, unsigned gap_ms, uint64_t period_ns, uint64_t *ns)
{
    uint64_t due = uv_hrtime();
    for (unsigned i = 0; i < count; i++) {
        if (period_ns) {
            due += period_ns;
            struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
            if (uv_hrtime() < due)
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        }
        block[0] = (uint8_t)i;
        uint64_t t0 = uv_hrtime();
        if (pwrite(fd, block, FLOOR_BLOCK,
                   (off_t)(i % (FLOOR_FILE_BYTES / FLOOR_BLOCK)) * FLOOR_BLOCK) != FLOOR_BLOCK ||
            fdatasync(fd) < 0)
            return -1;
        ns[i] = uv_hrtime() - t0;
        if (gap_ms)
            usleep(gap_ms * 1000);
    }
    return 0;
}

static int fdatasync_floor(const char *dir, unsigned count, unsigned gap_ms, unsigned rate)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/floor-fdatasync.tmp", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return perror(path), 1;
    memset(block, 0xa5, sizeof block);
    for (off_t off = 0; off < FLOOR_FILE_BYTES; off += sizeof block)
        if (pwrite(fd, block, sizeof block, off) != sizeof block)
            return perror(path), close(fd), unlink(path), 1;
    fsync(fd);
    uint64_t *ns = calloc(count, sizeof *ns), *paced_ns = calloc(count, sizeof *ns);
    struct cpu_window win; /* around the paced syncs */
    cpu_window_init(&win);
    int e = !ns || !paced_ns || sync_run(fd, count, gap_ms, 0, ns) < 0;
    if (!e && rate && !gap_ms) {
        cpu_window_start(&win);
        e = sync_run(fd, count, 0, 1000000000u / rate, paced_ns) < 0;
        if (!e)
            cpu_window_end(&win);
    }
    if (e) {
        perror(path);
        free(ns);
        free(paced_ns);
        close(fd);
        unlink(path);
        return 1;
    }
    close(fd);
    unlink(path);
    double wait_p99 = gap_ms ? 0 : commit_wait_p99(ns, count);
    qsort(ns, count, sizeof *ns, cmp_u64);
    double p50 = pct(ns, count, 0.5), p99 = pct(ns, count, 0.99), max = ns[count - 1] / 1e6;
    free(ns);
    if (gap_ms) {
        free(paced_ns);
        printf("fdatasync, one at a time: %u writes of 4 KiB in %s, %u ms apart: p50 %.3f ms, "
               "p99 %.3f ms, max %.3f ms\n",
               count, dir, gap_ms, p50, p99, max);
        printf("TABLE|fdatasync p99, 4 KiB write %u ms after the last (a lone request's sync) "
               "(ms)|%.3f|-|-\n",
               gap_ms, p99);
        return 0;
    }
    printf("fdatasync: %u writes of 4 KiB in %s: p50 %.3f ms, p99 %.3f ms, max %.3f ms; a "
           "request arriving at a random moment waits for the one in progress and the next: "
           "p99 %.3f ms\n",
           count, dir, p50, p99, max, wait_p99);
    printf("TABLE|fdatasync p99, 4 KiB write in the state dir (ms)|%.3f|-|-\n", p99);
    printf("TABLE|fdatasync, in progress + next for a request at a random moment, p99 (ms)|%.3f|-|-"
           "\n",
           wait_p99);
    if (rate) {
        qsort(paced_ns, count, sizeof *paced_ns, cmp_u64);
        printf("fdatasync at %u/s (one due every %.0f us, as a commit per request at that rate): "
               "%u writes of 4 KiB: p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
               rate, 1e6 / rate, count, pct(paced_ns, count, 0.5), pct(paced_ns, count, 0.99),
               paced_ns[count - 1] / 1e6);
        printf("TABLE|fdatasync p99, 4 KiB write, %u/s (ms)|%.3f|-|-\n", rate,
               pct(paced_ns, count, 0.99));
        char what[64];
        snprintf(what, sizeof what, "fdatasync at %u/s", rate);
        cpu_window_print(&win, what, 1);
    }
    free(paced_ns);
    return 0;
}

/* ---- TLS echo ---- */

enum { PACED_QUEUE = 64 }; /* a paced session's messages in flight (ring of indexes) */

struct peer {
    uv_tcp_t tcp;
    struct sncp_tls *tls;
    int established;
    uint64_t rx;                            /* client: echoed bytes received */
    uint64_t sent_at;                       /* client, window 1: when the message in flight left */
    unsigned q[PACED_QUEUE], q_head, q_len; /* client, paced: its messages in flight */
};

static uv_loop_t *loop;
static struct sncp_tls_ctx *server_ctx;
static const char *pki;
static unsigned n_sessions = 100, window = 64, msg_size = 96;
static double seconds = 2;
static struct peer *clients;
static unsigned n_established, n_closed, n_started;
static int measuring, done;
static uint64_t round_trips, measure_t0;
static uint64_t *rtt_ns;
static unsigned rtt_n, rtt_cap;
static uint8_t msg[4096];

/* The paced run (--rate): message k is due at paced_t0 + k / rate, sent by a timer with the
 * request period on session k % sessions; its round trip runs from that due time. */
static unsigned paced_rate;
static int paced;
static uint64_t paced_t0, paced_sent, paced_done, paced_warmup, paced_cap;
static uint64_t *paced_ns, *paced_lag_ns;
static struct cpu_window paced_window; /* from the first counted message's due time */
static int paced_tfd = -1;
static uv_poll_t paced_poll;

/* When paced message k is due. */
static uint64_t paced_due(uint64_t k)
{
    return paced_t0 + k * 1000000000u / paced_rate;
}

struct wreq {
    uv_write_t req;
    uint8_t data[];
};

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void on_closed(uv_handle_t *h)
{
    struct peer *p = h->data;
    sncp_tls_destroy(p->tls);
    p->tls = NULL;
    n_closed++;
    if (p < clients || p >= clients + n_sessions)
        free(p);
}

static void peer_close(struct peer *p)
{
    if (!uv_is_closing((uv_handle_t *)&p->tcp))
        uv_close((uv_handle_t *)&p->tcp, on_closed);
}

/* Sends what TLS has produced. */
static void flush(struct peer *p)
{
    size_t n = sncp_tls_pending(p->tls);
    if (!n)
        return;
    struct wreq *w = malloc(sizeof *w + n);
    if (!w)
        return peer_close(p);
    n = sncp_tls_drain(p->tls, w->data, n);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&p->tcp, &b, 1, on_written) < 0) {
        free(w);
        peer_close(p);
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char rbuf[64 * 1024];
    *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void client_send(struct peer *p)
{
    p->sent_at = uv_hrtime();
    if (sncp_tls_write(p->tls, msg, msg_size) < 0)
        peer_close(p);
}

/* Client: count the echoed messages; each one answered sends the next. */
static void client_plaintext(struct peer *p, size_t n)
{
    uint64_t before = p->rx / msg_size;
    p->rx += n;
    uint64_t got = p->rx / msg_size - before;
    for (uint64_t i = 0; i < got; i++) {
        if (paced) {
            if (!p->q_len)
                continue;
            unsigned k = p->q[p->q_head];
            p->q_head = (p->q_head + 1) % PACED_QUEUE;
            p->q_len--;
            paced_ns[k] = uv_hrtime() - paced_due(k);
            if (++paced_done == paced_cap)
                done = 1;
            continue;
        }
        if (measuring) {
            round_trips++;
            if (window == 1 && rtt_n < rtt_cap)
                rtt_ns[rtt_n++] = uv_hrtime() - p->sent_at;
        }
        if (!done)
            client_send(p);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct peer *p = s->data;
    if (nread < 0)
        return peer_close(p);
    if (sncp_tls_feed(p->tls, (const uint8_t *)buf->base, (size_t)nread) < 0)
        return peer_close(p);
    int client = p >= clients && p < clients + n_sessions;
    if (!p->established) {
        int r = sncp_tls_handshake(p->tls);
        if (r < 0) {
            fprintf(stderr, "floor: TLS handshake: %s\n", sncp_tls_error(p->tls));
            return peer_close(p);
        }
        if (r == 1) {
            p->established = 1;
            if (client) {
                n_established++;
                for (unsigned i = 0; i < window && !paced; i++)
                    client_send(p);
            }
        }
    }
    static uint8_t pt[64 * 1024];
    int n;
    while (p->established && (n = sncp_tls_read(p->tls, pt, sizeof pt)) > 0) {
        if (client)
            client_plaintext(p, (size_t)n);
        else if (sncp_tls_write(p->tls, pt, (size_t)n) < 0)
            return peer_close(p);
    }
    if (n < 0 && p->established)
        return peer_close(p);
    flush(p);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    struct peer *p = calloc(1, sizeof *p);
    if (!p)
        return;
    uv_tcp_init(loop, &p->tcp);
    p->tcp.data = p;
    p->tls = sncp_tls_create(server_ctx, NULL);
    if (!p->tls || uv_accept(server, (uv_stream_t *)&p->tcp) < 0) {
        peer_close(p);
        return;
    }
    uv_tcp_nodelay(&p->tcp, 1);
    uv_read_start((uv_stream_t *)&p->tcp, alloc_cb, on_read);
}

static struct sncp_tls_ctx *ctx_for(enum sncp_tls_role role, const char *name)
{
    char cert[4096], key[4096], ca[4096], err[256];
    snprintf(cert, sizeof cert, "%s/%s.crt", pki, name);
    snprintf(key, sizeof key, "%s/%s.key", pki, name);
    snprintf(ca, sizeof ca, "%s/ca.crt", pki);
    struct sncp_tls_ctx *c = sncp_tls_ctx_create(role, cert, key, ca, err, sizeof err);
    if (!c) {
        fprintf(stderr, "floor: %s: %s\n", name, err);
        exit(1);
    }
    return c;
}

/* The echo server (child): accepts until killed; writes its port to fd. */
static void serve(int port_fd)
{
    loop = uv_default_loop();
    server_ctx = ctx_for(SNCP_TLS_SERVER, "nnve");
    static uv_tcp_t listener;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(loop, &listener);
    if (uv_tcp_bind(&listener, (const struct sockaddr *)&sa, 0) < 0 ||
        uv_listen((uv_stream_t *)&listener, 1024, on_connection) < 0)
        _exit(1);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(&listener, (struct sockaddr *)&ss, &len);
    uint16_t port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (write(port_fd, &port, sizeof port) != sizeof port)
        _exit(1);
    close(port_fd);
    uv_run(loop, UV_RUN_DEFAULT);
    _exit(0);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct peer *p = req->data;
    free(req);
    if (status < 0) {
        fprintf(stderr, "floor: connect: %s\n", uv_strerror(status));
        return peer_close(p);
    }
    uv_tcp_nodelay(&p->tcp, 1);
    uv_read_start((uv_stream_t *)&p->tcp, alloc_cb, on_read);
    sncp_tls_handshake(p->tls);
    flush(p);
}

static uv_timer_t timer;

/* Opens `sessions` client sessions (clients[i] with ctxs[i]) to the echo on port. */
static void connect_all(uint16_t port, unsigned sessions, struct sncp_tls_ctx **ctxs)
{
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    for (unsigned i = 0; i < sessions; i++) {
        struct peer *p = &clients[i];
        uv_tcp_init(loop, &p->tcp);
        p->tcp.data = p;
        p->tls = sncp_tls_create(ctxs[i], NULL);
        uv_connect_t *req = malloc(sizeof *req);
        req->data = p;
        if (!p->tls || uv_tcp_connect(req, &p->tcp, (const struct sockaddr *)&sa, on_connect)) {
            fprintf(stderr, "floor: cannot connect\n");
            exit(1);
        }
        n_started++;
    }
}

static void on_timer(uv_timer_t *t)
{
    (void)t;
    if (n_established < n_started && !measuring)
        return;
    if (!measuring) {
        measuring = 1;
        round_trips = 0;
        measure_t0 = uv_hrtime();
        uv_timer_start(&timer, on_timer, (uint64_t)(seconds * 1000), 0);
        return;
    }
    done = 1;
    uv_timer_stop(&timer);
    uv_close((uv_handle_t *)&timer, NULL);
    for (unsigned i = 0; i < n_started; i++)
        peer_close(&clients[i]);
}

/* One run: `sessions` clients, `win` messages in flight each; returns round trips/s. */
static double echo_run(uint16_t port, unsigned sessions, unsigned win, struct sncp_tls_ctx **ctxs)
{
    n_sessions = sessions;
    window = win;
    n_established = n_closed = n_started = 0;
    measuring = done = 0;
    clients = calloc(sessions, sizeof *clients);
    connect_all(port, sessions, ctxs);
    uv_timer_init(loop, &timer);
    uv_timer_start(&timer, on_timer, 10, 10);
    uint64_t t1 = 0;
    while (uv_run(loop, UV_RUN_ONCE)) {
        if (done && !t1)
            t1 = uv_hrtime();
        if (done && n_closed == n_started)
            break;
    }
    double secs = (double)(t1 - measure_t0) / 1e9;
    free(clients);
    clients = NULL;
    return (double)round_trips / secs;
}

/* Sends the messages that are due (open loop: whatever the echoes do).  A session with
 * PACED_QUEUE messages in flight, or closed, skips its turn: that message is lost to the
 * figures, which then count fewer samples (printed). */
static void paced_send_due(void)
{
    uint64_t now = uv_hrtime();
    uint64_t due = (now - paced_t0) * paced_rate / 1000000000u + 1;
    if (due > paced_warmup)
        cpu_window_start(&paced_window);
    while (paced_sent < due && paced_sent < paced_cap) {
        uint64_t k = paced_sent++;
        struct peer *p = &clients[k % n_sessions];
        paced_lag_ns[k] = uv_hrtime() - paced_due(k);
        if (p->q_len == PACED_QUEUE || !p->established || !p->tls ||
            uv_is_closing((uv_handle_t *)&p->tcp)) {
            paced_cap--;
            continue;
        }
        p->q[(p->q_head + p->q_len++) % PACED_QUEUE] = (unsigned)k;
        if (sncp_tls_write(p->tls, msg, msg_size) < 0)
            peer_close(p);
        flush(p);
    }
    if (paced_sent >= paced_cap)
        uv_poll_stop(&paced_poll);
}

static void on_paced_tick(uv_poll_t *h, int status, int events)
{
    (void)h;
    (void)status;
    (void)events;
    uint64_t expirations;
    if (read(paced_tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
        perror("floor: timerfd");
    paced_send_due();
}

/* A paced run whose echoes stopped coming (a session closed on an error) ends anyway. */
static void on_paced_deadline(uv_timer_t *t)
{
    (void)t;
    fprintf(stderr, "floor: paced run: %" PRIu64 " of %" PRIu64 " echoes after 15 s\n", paced_done,
            paced_cap);
    done = 1;
}

static void on_paced_start(uv_timer_t *t)
{
    if (n_established < n_started)
        return;
    uv_timer_start(t, on_paced_deadline, 15000, 0);
    uint64_t period = 1000000000u / paced_rate;
    struct timespec ts = {(time_t)(period / 1000000000u), (long)(period % 1000000000u)};
    struct itimerspec its = {ts, ts};
    timerfd_settime(paced_tfd, 0, &its, NULL);
    paced_t0 = uv_hrtime();
    uv_poll_start(&paced_poll, UV_READABLE, on_paced_tick);
}

/* The paced run: `sessions` clients, `paced_rate` messages/s spread over them as nnve-load's
 * latency phase sends its requests (1 s of warm-up, then 3 s counted), each message's round
 * trip from its due time.  Prints p50/p99/max and how late the messages left; returns the
 * p99 in ms (0 if nothing was measured). */
static double paced_run(uint16_t port, unsigned sessions, struct sncp_tls_ctx **ctxs)
{
    n_sessions = sessions;
    window = 1;
    n_established = n_closed = n_started = 0;
    measuring = done = 0;
    paced = 1;
    paced_warmup = paced_rate;
    paced_cap = paced_warmup + 3 * (uint64_t)paced_rate;
    paced_sent = paced_done = 0;
    cpu_window_init(&paced_window);
    paced_ns = calloc(paced_cap, sizeof *paced_ns);
    paced_lag_ns = calloc(paced_cap, sizeof *paced_lag_ns);
    clients = calloc(sessions, sizeof *clients);
    paced_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (!paced_ns || !paced_lag_ns || !clients || paced_tfd < 0) {
        perror("floor: paced run");
        exit(1);
    }
    uv_poll_init(loop, &paced_poll, paced_tfd);
    connect_all(port, sessions, ctxs);
    uv_timer_init(loop, &timer);
    uv_timer_start(&timer, on_paced_start, 10, 10);
    int closing = 0;
    while (uv_run(loop, UV_RUN_ONCE)) {
        if (done && !closing) {
            closing = 1;
            uv_close((uv_handle_t *)&paced_poll, NULL);
            uv_close((uv_handle_t *)&timer, NULL);
            for (unsigned i = 0; i < n_started; i++)
                peer_close(&clients[i]);
        }
        if (closing && n_closed == n_started)
            break;
    }
    cpu_window_end(&paced_window);
    close(paced_tfd);
    paced_tfd = -1;
    paced = 0;
    /* the counted messages: the ones sent after the warm-up that were answered */
    size_t n = 0;
    for (uint64_t k = paced_warmup; k < paced_sent; k++)
        if (paced_ns[k]) {
            paced_ns[n] = paced_ns[k];
            paced_lag_ns[n++] = paced_lag_ns[k];
        }
    qsort(paced_ns, n, sizeof *paced_ns, cmp_u64);
    qsort(paced_lag_ns, n, sizeof *paced_lag_ns, cmp_u64);
    double p99 = pct(paced_ns, n, 0.99);
    printf("tls echo: %u messages/s over %u sessions, %zu counted (after 1 s): from each one's "
           "due time p50 %.3f ms, p99 %.3f ms, max %.3f ms; sent late by p99 %.3f ms\n",
           paced_rate, sessions, n, pct(paced_ns, n, 0.5), p99, n ? paced_ns[n - 1] / 1e6 : 0,
           pct(paced_lag_ns, n, 0.99));
    if (n)
        printf("TABLE|loopback TLS round trip p99, %u/s over %u sessions (ms)|%.3f|-|-\n",
               paced_rate, sessions, p99);
    char what[64];
    snprintf(what, sizeof what, "TLS echo at %u/s", paced_rate);
    cpu_window_print(&paced_window, what, 1);
    fflush(stdout);
    free(paced_ns);
    free(paced_lag_ns);
    free(clients);
    clients = NULL;
    return p99;
}

static int echo_floor(void)
{
    int fds[2];
    if (pipe(fds) < 0)
        return perror("pipe"), 1;
    pid_t child = fork();
    if (child < 0)
        return perror("fork"), 1;
    if (child == 0) {
        close(fds[0]);
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the measurement */
        serve(fds[1]);
    }
    close(fds[1]);
    uint16_t port = 0;
    if (read(fds[0], &port, sizeof port) != sizeof port) {
        fprintf(stderr, "floor: the echo server did not start\n");
        return 1;
    }
    close(fds[0]);
    loop = uv_default_loop();
    memset(msg, 0x5a, sizeof msg);
    struct sncp_tls_ctx **ctxs = calloc(n_sessions, sizeof *ctxs);
    unsigned sessions = n_sessions, win = window;
    for (unsigned i = 0; i < sessions; i++) {
        char name[32];
        snprintf(name, sizeof name, "bench%u", i + 1);
        ctxs[i] = ctx_for(SNCP_TLS_CLIENT, name);
    }
    rtt_cap = 1000000;
    rtt_ns = calloc(rtt_cap, sizeof *rtt_ns);
    echo_run(port, 1, 1, ctxs);
    unsigned n = rtt_n;
    qsort(rtt_ns, n, sizeof *rtt_ns, cmp_u64);
    double p50 = pct(rtt_ns, n, 0.5), p99 = pct(rtt_ns, n, 0.99);
    printf("tls echo: 1 session, window 1, %u round trips of %u bytes: p50 %.3f ms, p99 %.3f "
           "ms\n",
           n, msg_size, p50, p99);
    printf("TABLE|loopback TLS round trip p99, 1 session (ms)|%.3f|-|-\n", p99);
    fflush(stdout);
    double paced_p99 = paced_rate ? paced_run(port, sessions, ctxs) : 1;
    double rate = 0; /* not after a paced run that measured nothing (the echo is gone) */
    if (paced_p99 > 0) {
        rate = echo_run(port, sessions, win, ctxs);
        printf("tls echo: %u sessions, window %u, %u bytes: %.0f round trips/s\n", sessions, win,
               msg_size, rate);
        printf("TABLE|bare TLS echo, %u sessions (round trips/s)|%.0f|-|-\n", sessions, rate);
    }
    kill(child, SIGTERM);
    waitpid(child, NULL, 0);
    for (unsigned i = 0; i < sessions; i++)
        sncp_tls_ctx_destroy(ctxs[i]);
    free(ctxs);
    free(rtt_ns);
    return n && rate > 0 && paced_p99 > 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"fdatasync", required_argument, NULL, 'f'},
        {"count", required_argument, NULL, 'c'},
        {"gap-ms", required_argument, NULL, 'g'},
        {"echo", no_argument, NULL, 'e'},
        {"pki", required_argument, NULL, 'P'},
        {"sessions", required_argument, NULL, 's'},
        {"window", required_argument, NULL, 'w'},
        {"seconds", required_argument, NULL, 'S'},
        {"size", required_argument, NULL, 'b'},
        {"rate", required_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    const char *fs_dir = NULL;
    unsigned count = 2000, gap_ms = 0;
    int echo = 0, opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'f':
            fs_dir = optarg;
            break;
        case 'c':
            count = (unsigned)atoi(optarg);
            break;
        case 'g':
            gap_ms = (unsigned)atoi(optarg);
            break;
        case 'e':
            echo = 1;
            break;
        case 'P':
            pki = optarg;
            break;
        case 's':
            n_sessions = (unsigned)atoi(optarg);
            break;
        case 'w':
            window = (unsigned)atoi(optarg);
            break;
        case 'S':
            seconds = atof(optarg);
            break;
        case 'b':
            msg_size = (unsigned)atoi(optarg);
            break;
        case 'r':
            paced_rate = (unsigned)atoi(optarg);
            break;
        default:
            return 2;
        }
    }
    if (fs_dir && count)
        return fdatasync_floor(fs_dir, count, gap_ms, paced_rate);
    if (echo && pki && n_sessions && window && msg_size && msg_size <= sizeof msg && seconds > 0)
        return echo_floor();
    fprintf(stderr, "usage: floor --fdatasync DIR [--count N] [--gap-ms G | --rate R]\n"
                    "       floor --echo --pki DIR [--sessions N] [--window W] [--seconds S] "
                    "[--size BYTES] [--rate R]\n");
    return 2;
}
