/* nnve-load.c: load generator for nnve-daemon: many SNCP sessions over TLS, pipelined.
 *
 *   nnve-load --gen-certs DIR COUNT         writes DIR/benchN.crt/.key (N = 1..COUNT), signed
 *                                           by DIR/ca.crt + ca.key (e.g. from gen-pki.sh)
 *   nnve-load --connect HOST:PORT --pki DIR --pid DAEMON_PID [--sessions 100]
 *             [--tsis 100000] [--rate 5000] [--max-sessions 1000] [--window 64]
 *             [--serial N]
 *   nnve-load --l2 IFNAME [--nnve-mac MAC] [--vlan VID] ...   the same over the Layer-2
 *             channel: all sessions from one AF_PACKET port on IFNAME (the nNVE found by
 *             discovery unless --nnve-mac is given; frames tagged with VID); needs
 *             CAP_NET_RAW
 *   --first N: the identities are benchN, benchN+1, ...; --hold MS: keep the sessions open
 *             MS milliseconds after the last phase (printed "hold: ..."), for tests
 *   --label L: names the run in the TABLE lines (e.g. "sync=full"); --latency-floor MS and
 *             --echo-rate N: the floors measured in the same run (bench/floor): the latency
 *             p99's floor, and a bare TLS echo's round trips/s over as many sessions (its
 *             floor for transitions/s is twice that: one activation is two transitions); the
 *             throughput row is printed only with --echo-rate
 *   --ctl SOCKET: the daemon's control socket: the latency phase also reports what the
 *             daemon measured over its window (latency/show: from decoding each request
 *             to its answer, and the group commits), reset when the first measured request
 *             is due (from a thread: the generator keeps its timing) and read at the end
 *   --dump FILE: writes the latency phase's measured requests to FILE, one line each: when
 *             it was due (ns from the phase's start), its latency and how late it left (ns)
 *
 * Phases, each reported on stdout:
 *   1. throughput: --sessions sessions (identities bench1..) each activate their share of
 *      --tsis TSIs from Init (one TSI_ACTIVATE = the associate and activate transitions),
 *      `window` requests in flight per session; the daemon's VmRSS is sampled every 10,000
 *      TSIs (RSS per TSI from the growth);
 *   2. latency: deactivate/activate toggles of existing TSIs at --rate requests/s spread over
 *      the sessions, open loop (a timer with the request period sends each one when it is
 *      due, whatever the responses do): 1 s of warm-up, then 3 s measured: p50/p99/max of
 *      request latency from each request's due time to its response (a late send counts
 *      against the latency, no coordinated omission), and how late the requests left (the
 *      generator's own delay: if it is large the machine starved the generator), and how
 *      the slowest 1 % fall in time (in bursts behind a stall of the machine, or spread);
 *   3. serial (with --serial N): N deactivate/activate toggles on one session, one request
 *      in flight (window 1): p50/p99 latency and requests/s;
 *   4. sessions: more sessions up to --max-sessions concurrent ones, each through HELLO;
 *      2.5 s after the last one the daemon's VmRSS growth per added session (idle memory).
 * The figures are also printed as TABLE|figure|value|floor|ratio lines (run-bench.sh).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "cpu-ticks.h"
#include "sncp-conn-l2.h"
#include "sncp-conn.h"
#include "sncp-msg.h"
#include "snv-ctl.h"
#include "snv-log.h"

/* ---- certificates ---- */

static int gen_certs(const char *dir, int count)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/ca.key", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return perror(path), 1;
    EVP_PKEY *ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    snprintf(path, sizeof path, "%s/ca.crt", dir);
    f = fopen(path, "r");
    if (!f)
        return perror(path), 1;
    X509 *ca = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!ca_key || !ca)
        return fprintf(stderr, "cannot read the CA\n"), 1;
    for (int i = 1; i <= count; i++) {
        char name[64], san[80];
        snprintf(name, sizeof name, "bench%d", i);
        snprintf(san, sizeof san, "DNS:%s", name);
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *x = X509_new();
        X509_set_version(x, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 100000 + i);
        X509_gmtime_adj(X509_getm_notBefore(x), -3600);
        X509_gmtime_adj(X509_getm_notAfter(x), 86400);
        X509_set_pubkey(x, key);
        X509_NAME *n = X509_get_subject_name(x);
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0);
        X509_set_issuer_name(x, X509_get_subject_name(ca));
        X509V3_CTX v3;
        X509V3_set_ctx(&v3, ca, x, NULL, NULL, 0);
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
        e = X509V3_EXT_conf_nid(NULL, &v3, NID_ext_key_usage, "serverAuth,clientAuth");
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
        X509_sign(x, ca_key, EVP_sha256());
        snprintf(path, sizeof path, "%s/%s.crt", dir, name);
        f = fopen(path, "w");
        if (!f)
            return perror(path), 1;
        PEM_write_X509(f, x);
        fclose(f);
        snprintf(path, sizeof path, "%s/%s.key", dir, name);
        f = fopen(path, "w");
        if (!f)
            return perror(path), 1;
        PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
        fclose(f);
        X509_free(x);
        EVP_PKEY_free(key);
    }
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return 0;
}

/* ---- load ---- */

enum phase { P_THROUGHPUT, P_LATENCY, P_SERIAL, P_SESSIONS, P_DONE };
enum { COOKIE_HELLO = 1, COOKIE_CONNECT = 2, COOKIE_TSI = 3, COOKIE_LAT = 4, COOKIE_SERIAL = 5 };

struct sess {
    int idx;
    struct sncp_conn *conn;
    struct sncp_tls_ctx *tls;
    int established;
    unsigned next, acked, inflight, share;
    unsigned toggle;
};

static uv_loop_t *loop;
static const char *host, *pki;
static uint16_t port;
static int daemon_pid;
static unsigned n_sessions = 100, max_sessions = 1000, window = 64;
static unsigned total_tsis = 100000, rate = 5000;
static struct sess *sessions;
static unsigned n_open, n_established, n_closed;
static enum phase phase = P_THROUGHPUT;
static uint64_t t_start, t_end, total_acked, errors;
static long rss_base_kb, rss_samples[64];
static unsigned n_rss;
static uv_timer_t timer;
enum { LAT_WARMUP_MS = 1000, LAT_MEASURE_MS = 3000 };
static uint64_t *lat_send, *lat_ns, *lat_lag_ns;
static unsigned lat_cap, lat_warmup, lat_sent, lat_done;
static struct cpu_window lat_window; /* from the first counted request's due time */
static uint64_t lat_t0;
static uv_poll_t lat_poll;
static int lat_tfd = -1;
static uint64_t sess_t0;
static const char *l2_ifname;
static unsigned first_id = 1, hold_ms;
static uint16_t l2_vlan;
static uint8_t l2_nnve_mac[6];
static int l2_has_mac;
static struct sncp_l2_port *l2_port;
static unsigned serial_n, serial_done;
static uint64_t *serial_ns, serial_t0, serial_sent_at;
static const char *label = "";
static const char *dump_path; /* --dump: the latency phase's requests, one line each */
static double latency_floor_ms, echo_rate;
static const char *ctl_path; /* --ctl: the daemon's control socket */
static pthread_t ctl_reset;  /* resets the daemon's latency histograms */
static int ctl_reset_started;
static long rss_sess0_kb;
/* The idle memory per session the nNVE aims at (the row's floor column). */
#define IDLE_GOAL_KIB 16.0

/* One TABLE line; floor <= 0 prints "-" for the floor and the ratio. */
static void table(const char *figure, double value, double floor, int decimals)
{
    if (!label[0]) /* an unnamed run (a test's, a detail's) prints no table rows */
        return;
    if (floor > 0)
        printf("TABLE|%s|%.*f|%.*f|%.2f\n", figure, decimals, value, decimals, floor,
               value / floor);
    else
        printf("TABLE|%s|%.*f|-|-\n", figure, decimals, value);
}

static long daemon_rss_kb(void)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", daemon_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static void tsi_of(unsigned s, unsigned n, struct sncp_tsi_id *id)
{
    memset(id, 0, sizeof *id);
    memcpy(id->uuid, &s, 4);
    memcpy(id->uuid + 8, &n, 4);
    id->uuid[6] = 0x40;
    id->mac[0] = 0x52;
    id->mac[1] = 0x54;
    memcpy(id->mac + 2, &n, 4);
    id->mac[5] = (uint8_t)s;
}

static void send_tsi(struct sess *s, enum sncp_msg_type type, unsigned n, uint64_t cookie)
{
    static struct sncp_msg m;
    sncp_msg_init(&m, type, 0);
    tsi_of((unsigned)s->idx, n, &m.tsi);
    sncp_msg_set(&m, SNCP_TLV_TSI_ID);
    if (type == SNCP_MSG_TSI_ACTIVATE) {
        m.vn_id = 5000 + (unsigned)s->idx % 100;
        sncp_msg_set(&m, SNCP_TLV_VN_ID);
        m.n_addrs = 1;
        m.addrs[0].type = SNCP_ADDR_IPV4;
        m.addrs[0].ip[0] = 10;
        m.addrs[0].ip[1] = (uint8_t)s->idx;
        m.addrs[0].ip[2] = (uint8_t)(n >> 8);
        m.addrs[0].ip[3] = (uint8_t)n;
    }
    if (sncp_conn_send(s->conn, &m, cookie) < 0)
        errors++;
    else
        s->inflight++;
}

static void fill_window(struct sess *s)
{
    while (phase == P_THROUGHPUT && s->inflight < window && s->next < s->share)
        send_tsi(s, SNCP_MSG_TSI_ACTIVATE, s->next++, COOKIE_TSI);
}

static void close_all(void)
{
    for (unsigned i = 0; i < max_sessions; i++)
        if (sessions[i].conn)
            sncp_conn_close(sessions[i].conn);
}

static void on_hold_done(uv_timer_t *t)
{
    (void)t;
    close_all();
}

/* All phases done: close the sessions, after --hold ms (tests look at them meanwhile). */
static void finish(void)
{
    phase = P_DONE;
    if (!hold_ms) {
        close_all();
        return;
    }
    printf("hold: %u sessions open for %u ms\n", n_established, hold_ms);
    fflush(stdout);
    uv_timer_start(&timer, on_hold_done, hold_ms, 0);
}

static void start_latency(void);
static void lat_stop(void);
static void start_serial(void);
static void serial_next(void);
static void start_sessions(void);
static void open_session(unsigned i);

/* 2.5 s after the last session of phase 4 came up (the daemon has seen a second without
 * requests): what each idle session costs it. */
static void on_sessions_idle(uv_timer_t *t)
{
    (void)t;
    long rss = daemon_rss_kb();
    unsigned added = max_sessions - n_sessions;
    double per = added ? (double)(rss - rss_sess0_kb) / added : 0;
    printf("sessions: idle, daemon RSS %ld KiB: %.1f KiB per added session\n", rss, per);
    char fig[160];
    snprintf(fig, sizeof fig, "nnve-daemon idle memory per session (KiB)");
    table(fig, per, IDLE_GOAL_KIB, 1); /* against the goal: buffers only when needed */
    fflush(stdout);
    finish();
}

static void on_connected(struct sncp_conn *c, const char *peer)
{
    (void)peer;
    struct sess *s = sncp_conn_data(c);
    struct sncp_msg m;
    sncp_msg_init(&m, SNCP_MSG_HELLO, 0);
    m.version_min = m.version_max = SNCP_VERSION;
    sncp_msg_set(&m, SNCP_TLV_VERSION_RANGE);
    snprintf(m.node_id, sizeof m.node_id, "bench%d", s->idx);
    sncp_msg_set(&m, SNCP_TLV_NODE_ID);
    m.session_epoch = 1;
    sncp_msg_set(&m, SNCP_TLV_SESSION_EPOCH);
    sncp_conn_send(c, &m, COOKIE_HELLO);
}

static void on_request(struct sncp_conn *c, const struct sncp_msg *req)
{
    struct sncp_msg rsp;
    sncp_msg_init(&rsp, SNCP_MSG_RESPONSE, req->xid);
    sncp_conn_respond(c, req, &rsp);
}

static void throughput_done(void)
{
    t_end = uv_hrtime();
    double secs = (double)(t_end - t_start) / 1e9;
    printf("throughput: %u sessions, %" PRIu64 " TSI_ACTIVATE from Init (associate+activate) in "
           "%.2f s: %.0f activations/s = %.0f transitions/s, errors=%" PRIu64 "\n",
           n_sessions, total_acked, secs, (double)total_acked / secs,
           2.0 * (double)total_acked / secs, errors);
    char fig[160];
    snprintf(fig, sizeof fig, "nnve-daemon associate+activate, %u sessions, %s (transitions/s)",
             n_sessions, label);
    if (echo_rate > 0) /* a throughput run (not one that only opens sessions) */
        table(fig, 2.0 * (double)total_acked / secs, 2.0 * echo_rate, 0);
    for (unsigned i = 0; i < n_rss; i++)
        printf("rss: %6u TSIs: %ld KiB (+%ld KiB over the empty daemon, %.0f B/TSI)\n",
               (i + 1) * 10000, rss_samples[i], rss_samples[i] - rss_base_kb,
               1024.0 * (double)(rss_samples[i] - rss_base_kb) / ((i + 1) * 10000.0));
    fflush(stdout);
    start_latency();
}

static void on_response(struct sncp_conn *c, uint64_t cookie, const struct sncp_msg *rsp, int err)
{
    struct sess *s = sncp_conn_data(c);
    int ok = !err && rsp && rsp->status == SNCP_STATUS_SUCCESS;
    if (!ok) {
        errors++;
        if (errors < 5)
            fprintf(stderr, "nnve-load: session %d: %s\n", s->idx,
                    err ? sncp_error_token(err) : sncp_status_token(rsp->status));
    }
    if (cookie == COOKIE_HELLO) {
        if (ok) {
            s->established = 1;
            n_established++;
        }
        if (phase == P_THROUGHPUT) {
            struct sncp_msg m;
            sncp_msg_init(&m, SNCP_MSG_VN_CONNECT, 0);
            m.vn_id = 5000 + (unsigned)s->idx % 100;
            sncp_msg_set(&m, SNCP_TLV_VN_ID);
            sncp_conn_send(c, &m, COOKIE_CONNECT);
        } else if (phase == P_SESSIONS && n_established == max_sessions) {
            printf("sessions: %u concurrent sessions established (TLS + HELLO); the last %u in "
                   "%.2f s; daemon RSS %ld KiB\n",
                   n_established, max_sessions - n_sessions, (double)(uv_hrtime() - sess_t0) / 1e9,
                   daemon_rss_kb());
            fflush(stdout);
            uv_timer_start(&timer, on_sessions_idle, 2500, 0);
        }
        return;
    }
    if (cookie == COOKIE_CONNECT) {
        if (!t_start)
            t_start = uv_hrtime();
        fill_window(s);
        return;
    }
    s->inflight--;
    if (cookie == COOKIE_TSI) {
        s->acked++;
        total_acked++;
        if (total_acked % 10000 == 0 && n_rss < 64)
            rss_samples[n_rss++] = daemon_rss_kb();
        fill_window(s);
        if (total_acked == (uint64_t)total_tsis)
            throughput_done();
        return;
    }
    if (cookie == COOKIE_SERIAL) {
        serial_ns[serial_done++] = uv_hrtime() - serial_sent_at;
        serial_next();
        return;
    }
    if (cookie >= COOKIE_LAT * 1000000000ull) {
        unsigned k = (unsigned)(cookie - COOKIE_LAT * 1000000000ull);
        if (k < lat_cap)
            lat_ns[k] = uv_hrtime() - lat_send[k];
        lat_done++;
        if (lat_done == lat_cap)
            start_serial();
    }
}

/* L2 channel counters summed over the closed sessions (this side's). */
static struct sncp_l2_stats l2_sum;

static void on_closed(struct sncp_conn *c, int err)
{
    struct sess *s = sncp_conn_data(c);
    const struct sncp_l2_conn *l2 = sncp_conn_l2(c);
    if (l2) {
        const struct sncp_l2_stats *st = sncp_l2_conn_stats(l2);
        l2_sum.frames_in += st->frames_in;
        l2_sum.frames_out += st->frames_out;
        l2_sum.data_frames_in += st->data_frames_in;
        l2_sum.data_frames_out += st->data_frames_out;
        l2_sum.acks_out += st->acks_out;
        l2_sum.retransmits += st->retransmits;
        l2_sum.timeouts += st->timeouts;
        l2_sum.fast_retransmits += st->fast_retransmits;
    }
    s->conn = NULL;
    n_closed++;
    if (phase != P_DONE) {
        /* Before the end, any close (also the daemon's orderly one after a refusal) fails
         * the run. */
        errors++;
        fprintf(stderr, "nnve-load: session %d closed: %s\n", s->idx,
                err ? sncp_error_token(err) : "by the daemon");
        phase = P_DONE;
        for (unsigned i = 0; i < max_sessions; i++)
            if (sessions[i].conn)
                sncp_conn_close(sessions[i].conn);
    }
    if (n_closed == n_open && !uv_is_closing((uv_handle_t *)&timer)) {
        lat_stop();
        uv_close((uv_handle_t *)&timer, NULL);
        sncp_l2_port_destroy(l2_port);
        l2_port = NULL;
    }
}

static const struct sncp_conn_cbs cbs = {on_connected, on_request, on_response, on_closed};

static void open_session(unsigned i)
{
    struct sess *s = &sessions[i];
    char crt[4096], key[4096], ca[4096], err[256];
    s->idx = (int)(i + first_id);
    snprintf(crt, sizeof crt, "%s/bench%d.crt", pki, s->idx);
    snprintf(key, sizeof key, "%s/bench%d.key", pki, s->idx);
    snprintf(ca, sizeof ca, "%s/ca.crt", pki);
    s->tls = sncp_tls_ctx_create(SNCP_TLS_CLIENT, crt, key, ca, err, sizeof err);
    if (!s->tls) {
        fprintf(stderr, "nnve-load: %s\n", err);
        exit(1);
    }
    struct sncp_conn_config cc;
    memset(&cc, 0, sizeof cc);
    cc.session.role = SNCP_TLS_CLIENT;
    cc.session.tls = s->tls;
    cc.session.handshake_timeout_ms = 30000;
    cc.session.max_outstanding = 4096;
    cc.max_write_queue = 64u << 20;
    int r = l2_port ? sncp_conn_connect_l2(l2_port, l2_has_mac ? l2_nnve_mac : NULL, &cc, &cbs, s,
                                           &s->conn)
                    : sncp_conn_connect(loop, host, port, &cc, &cbs, s, &s->conn);
    if (r < 0) {
        fprintf(stderr, "nnve-load: connect failed: %s\n", sncp_strerror(r));
        exit(1);
    }
    n_open++;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void *ctl_reset_main(void *arg)
{
    (void)arg;
    const char *argv[] = {"latency/show", "reset"};
    json_t *res = NULL;
    char err[256];
    if (snv_ctl_call(ctl_path, 2, argv, 5000, &res, err, sizeof err) != SNV_CTL_OK)
        fprintf(stderr, "nnve-load: %s: latency/show reset failed: %s\n", ctl_path, err);
    json_decref(res);
    return NULL;
}

/* One line of what the daemon measured (--ctl): `key`'s histogram in ms, and its row. */
static void daemon_row(json_t *res, const char *key, const char *what, const char *figure)
{
    json_t *h = NULL;
    for (size_t i = 0; i < json_array_size(res); i++) {
        const char *w = json_string_value(json_object_get(json_array_get(res, i), "what"));
        if (w && !strcmp(w, key))
            h = json_array_get(res, i);
    }
    json_int_t n = json_integer_value(json_object_get(h, "samples"));
    if (!n)
        return;
    double p50 = (double)json_integer_value(json_object_get(h, "p50_us")) / 1e3,
           p99 = (double)json_integer_value(json_object_get(h, "p99_us")) / 1e3,
           max = (double)json_integer_value(json_object_get(h, "max_us")) / 1e3;
    printf("  inside nnve-daemon, %s: %lld samples, p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", what,
           (long long)n, p50, p99, max);
    char fig[160];
    snprintf(fig, sizeof fig, "  of which %s, p99 (ms)", figure);
    table(fig, p99, 0, 3);
}

/* The daemon's own figures over the measured window (--ctl). */
static void daemon_latency(void)
{
    if (!ctl_path)
        return;
    if (ctl_reset_started)
        pthread_join(ctl_reset, NULL);
    ctl_reset_started = 0;
    const char *argv[] = {"latency/show"};
    json_t *res = NULL;
    char err[256];
    if (snv_ctl_call(ctl_path, 1, argv, 5000, &res, err, sizeof err) != SNV_CTL_OK) {
        fprintf(stderr, "nnve-load: %s: latency/show failed: %s\n", ctl_path, err);
        json_decref(res);
        return;
    }
    daemon_row(res, "request", "from decoding a request to its answer",
               "inside nnve-daemon, decoded to answered");
    daemon_row(res, "commit", "group commits (log written and synced)",
               "its group commits (log written and synced)");
    json_decref(res);
}

/* Open loop: request k of the phase is due at lat_t0 + k / rate, whatever the responses do;
 * its latency runs from that due time (a generator that falls behind does not hide the
 * delay that made it late: no coordinated omission), and how late it actually left is kept
 * apart (lat_lag_ns) to show a starved generator.  The first LAT_WARMUP_MS are sent but not
 * counted: the daemon is still folding the throughput phase's log into its database. */
static void lat_send_due(void)
{
    uint64_t due = (uv_hrtime() - lat_t0) * rate / 1000000000u + 1;
    if (due > lat_warmup)
        cpu_window_start(&lat_window);
    if (ctl_path && !ctl_reset_started && due > lat_warmup)
        ctl_reset_started = !pthread_create(&ctl_reset, NULL, ctl_reset_main, NULL);
    while (lat_sent < due && lat_sent < lat_cap) {
        struct sess *s = &sessions[lat_sent % n_sessions];
        unsigned k = s->toggle++;
        enum sncp_msg_type type = (k & 1) ? SNCP_MSG_TSI_ACTIVATE : SNCP_MSG_TSI_DEACTIVATE;
        lat_send[lat_sent] = lat_t0 + (uint64_t)lat_sent * 1000000000u / rate;
        lat_lag_ns[lat_sent] = uv_hrtime() - lat_send[lat_sent];
        send_tsi(s, type, (k / 2) % (s->share ? s->share : 1),
                 COOKIE_LAT * 1000000000ull + lat_sent);
        lat_sent++;
    }
    if (lat_sent >= lat_cap)
        uv_poll_stop(&lat_poll);
}

/* Closes the latency phase's timer (once). */
static void lat_stop(void)
{
    if (lat_tfd < 0)
        return;
    uv_close((uv_handle_t *)&lat_poll, NULL);
    close(lat_tfd);
    lat_tfd = -1;
}

static void on_lat_tick(uv_poll_t *p, int status, int events)
{
    (void)p;
    (void)status;
    (void)events;
    uint64_t expirations;
    if (read(lat_tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
        perror("nnve-load: timerfd");
    lat_send_due();
}

static void start_latency(void)
{
    phase = P_LATENCY;
    if (!rate) { /* --rate 0: no latency phase */
        start_serial();
        return;
    }
    lat_warmup = rate * LAT_WARMUP_MS / 1000;
    lat_cap = lat_warmup + rate * LAT_MEASURE_MS / 1000;
    lat_send = calloc(lat_cap, sizeof *lat_send);
    lat_ns = calloc(lat_cap, sizeof *lat_ns);
    lat_lag_ns = calloc(lat_cap, sizeof *lat_lag_ns);
    /* A timer with the request period: libuv's count whole milliseconds (at 5,000/s they
     * would send bursts of 5, up to 1 ms late). */
    lat_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (lat_tfd < 0 || !lat_send || !lat_ns || !lat_lag_ns) {
        perror("nnve-load: latency phase");
        exit(1);
    }
    uint64_t period = 1000000000u / rate;
    struct timespec ts = {(time_t)(period / 1000000000u), (long)(period % 1000000000u)};
    struct itimerspec its = {ts, ts};
    timerfd_settime(lat_tfd, 0, &its, NULL);
    uv_poll_init(loop, &lat_poll, lat_tfd);
    lat_t0 = uv_hrtime();
    uv_poll_start(&lat_poll, UV_READABLE, on_lat_tick);
}

/* Prints how the slowest 1 % of the n measured requests (latency p99 ns or more) fall in
 * time: in bursts (requests due within LAT_BURST_GAP_NS of the previous slow one), as behind
 * one stall of the machine (a sync the disk held, a CPU taken away) that every request
 * during it waits out, or spread evenly.  lat_ns in the order the requests were due. */
#define LAT_BURST_GAP_NS 1000000u
static void lat_bursts(unsigned n, uint64_t p99)
{
    uint64_t last = 0, first = 0, longest_ns = 0;
    unsigned slow = 0, bursts = 0, in_burst = 0, longest = 0;
    for (unsigned k = lat_warmup; k < lat_warmup + n; k++) {
        if (lat_ns[k] < p99)
            continue;
        if (!slow || lat_send[k] - last > LAT_BURST_GAP_NS) {
            bursts++;
            in_burst = 0;
            first = lat_send[k];
        }
        slow++;
        last = lat_send[k];
        if (++in_burst > longest || (in_burst == longest && last - first > longest_ns)) {
            longest = in_burst;
            longest_ns = last - first;
        }
    }
    printf("  the slowest 1%% (%u requests of %.3f ms or more) in %u bursts (due within 1 ms of "
           "another slow one); the largest: %u requests due over %.1f ms\n",
           slow, p99 / 1e6, bursts, longest, longest_ns / 1e6);
}

/* Ends the latency phase (once, from whichever of its timer or its last response sees the
 * end first) and starts the serial one. */
static void start_serial(void)
{
    if (phase != P_LATENCY)
        return;
    lat_stop();
    cpu_window_end(&lat_window);
    unsigned n = lat_done > lat_warmup ? lat_done - lat_warmup : 0;
    if (dump_path && n) {
        FILE *df = fopen(dump_path, "w");
        for (unsigned k = lat_warmup; df && k < lat_done; k++)
            fprintf(df, "%" PRIu64 " %" PRIu64 " %" PRIu64 "\n", lat_send[k] - lat_t0, lat_ns[k],
                    lat_lag_ns[k]);
        if (!df || fclose(df))
            perror(dump_path);
    }
    if (n) {
        /* sorted apart: lat_ns keeps the order the requests were due in (lat_bursts()) */
        uint64_t *l = malloc(n * sizeof *l), *lag = lat_lag_ns + lat_warmup;
        if (!l) {
            perror("nnve-load: latency phase");
            exit(1);
        }
        memcpy(l, lat_ns + lat_warmup, n * sizeof *l);
        qsort(l, n, sizeof *l, cmp_u64);
        qsort(lag, n, sizeof *lag, cmp_u64);
        uint64_t p99 = l[(size_t)(n * 0.99)];
        printf("latency: %u requests at %u/s over %u sessions (after %u ms at that rate), from "
               "each one's due time: p50 %.3f ms, p99 %.3f ms, max %.3f ms; sent late by: p99 "
               "%.3f ms, max %.3f ms\n",
               n, rate, n_sessions, (unsigned)LAT_WARMUP_MS, l[n / 2] / 1e6, p99 / 1e6,
               l[n - 1] / 1e6, lag[(size_t)(n * 0.99)] / 1e6, lag[n - 1] / 1e6);
        lat_bursts(n, p99);
        char fig[160];
        snprintf(fig, sizeof fig, "nnve-daemon request p99 at %u/s, %s (ms)", rate, label);
        table(fig, p99 / 1e6, latency_floor_ms, 3);
        free(l);
        daemon_latency();
        snprintf(fig, sizeof fig, "requests at %u/s%s%s", rate, label[0] ? ", " : "", label);
        cpu_window_print(&lat_window, fig, label[0] != 0);
        fflush(stdout);
    }
    phase = P_SERIAL;
    serial_t0 = uv_hrtime();
    serial_next();
}

/* Window 1: the next toggle goes out when the previous one is answered. */
static void serial_next(void)
{
    struct sess *s = &sessions[0];
    if (serial_done < serial_n && s->conn) {
        unsigned k = s->toggle++;
        serial_sent_at = uv_hrtime();
        send_tsi(s, (k & 1) ? SNCP_MSG_TSI_ACTIVATE : SNCP_MSG_TSI_DEACTIVATE,
                 (k / 2) % (s->share ? s->share : 1), COOKIE_SERIAL);
        return;
    }
    unsigned n = serial_done;
    if (n) {
        double secs = (double)(uv_hrtime() - serial_t0) / 1e9;
        qsort(serial_ns, n, sizeof *serial_ns, cmp_u64);
        printf("serial: %u requests, window 1, one session: p50 %.3f ms, p99 %.3f ms, max "
               "%.3f ms, %.0f requests/s\n",
               n, serial_ns[n / 2] / 1e6, serial_ns[(size_t)(n * 0.99)] / 1e6,
               serial_ns[n - 1] / 1e6, (double)n / secs);
        fflush(stdout);
    }
    start_sessions();
}

static void start_sessions(void)
{
    if (phase != P_SERIAL)
        return;
    phase = P_SESSIONS;
    sess_t0 = uv_hrtime();
    rss_sess0_kb = daemon_rss_kb();
    if (max_sessions <= n_sessions) {
        finish();
        return;
    }
    for (unsigned i = n_sessions; i < max_sessions; i++)
        open_session(i);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"gen-certs", required_argument, NULL, 'g'},
        {"connect", required_argument, NULL, 'C'},
        {"pki", required_argument, NULL, 'P'},
        {"pid", required_argument, NULL, 'p'},
        {"sessions", required_argument, NULL, 's'},
        {"tsis", required_argument, NULL, 'n'},
        {"rate", required_argument, NULL, 'r'},
        {"max-sessions", required_argument, NULL, 'm'},
        {"window", required_argument, NULL, 'w'},
        {"serial", required_argument, NULL, 'S'},
        {"l2", required_argument, NULL, 'L'},
        {"nnve-mac", required_argument, NULL, 'M'},
        {"vlan", required_argument, NULL, 'V'},
        {"first", required_argument, NULL, 'F'},
        {"hold", required_argument, NULL, 'H'},
        {"label", required_argument, NULL, 'l'},
        {"latency-floor", required_argument, NULL, 'f'},
        {"echo-rate", required_argument, NULL, 'e'},
        {"ctl", required_argument, NULL, 'c'},
        {"dump", required_argument, NULL, 'D'},
        {NULL, 0, NULL, 0},
    };
    const char *gen = NULL, *target = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'g':
            gen = optarg;
            break;
        case 'C':
            target = optarg;
            break;
        case 'P':
            pki = optarg;
            break;
        case 'p':
            daemon_pid = atoi(optarg);
            break;
        case 's':
            n_sessions = (unsigned)atoi(optarg);
            break;
        case 'n':
            total_tsis = (unsigned)atoi(optarg);
            break;
        case 'r':
            rate = (unsigned)atoi(optarg);
            break;
        case 'm':
            max_sessions = (unsigned)atoi(optarg);
            break;
        case 'w':
            window = (unsigned)atoi(optarg);
            break;
        case 'S':
            serial_n = (unsigned)atoi(optarg);
            break;
        case 'L':
            l2_ifname = optarg;
            break;
        case 'V':
            l2_vlan = (uint16_t)atoi(optarg);
            break;
        case 'F':
            first_id = (unsigned)atoi(optarg);
            break;
        case 'D':
            dump_path = optarg;
            break;
        case 'H':
            hold_ms = (unsigned)atoi(optarg);
            break;
        case 'l':
            label = optarg;
            break;
        case 'f':
            latency_floor_ms = atof(optarg);
            break;
        case 'e':
            echo_rate = atof(optarg);
            break;
        case 'c':
            ctl_path = optarg;
            break;
        case 'M':
            if (sncp_mac_parse(optarg, l2_nnve_mac)) {
                fprintf(stderr, "nnve-load: bad MAC address \"%s\"\n", optarg);
                return 2;
            }
            l2_has_mac = 1;
            break;
        default:
            return 2;
        }
    }
    if (gen)
        return optind < argc ? gen_certs(gen, atoi(argv[optind])) : 2;
    if ((!target == !l2_ifname) || !pki || !daemon_pid || !n_sessions || total_tsis % n_sessions) {
        fprintf(stderr, "usage: nnve-load {--connect HOST:PORT | --l2 IFNAME [--nnve-mac MAC]} "
                        "--pki DIR --pid PID [--sessions N]\n"
                        "                 [--tsis N (multiple of sessions)] [--rate N] "
                        "[--max-sessions N] [--window N] [--serial N]\n"
                        "                 [--vlan VID] [--first N (identity benchN first)] "
                        "[--hold MS] [--ctl SOCKET] [--dump FILE]\n"
                        "       nnve-load --gen-certs DIR COUNT\n");
        return 2;
    }
    if (target) {
        static char hbuf[128];
        snprintf(hbuf, sizeof hbuf, "%s", target);
        char *colon = strrchr(hbuf, ':');
        if (!colon)
            return 2;
        *colon = '\0';
        host = hbuf;
        port = (uint16_t)atoi(colon + 1);
    }
    if (max_sessions < n_sessions)
        max_sessions = n_sessions;
    snv_log_open("nnve-load", SNV_LOG_STDERR);
    snv_log_set_level(SNV_LOG_ERR);
    loop = uv_default_loop();
    uv_timer_init(loop, &timer);
    if (l2_ifname) {
        struct sncp_l2_port_config pcfg = {
            .ifname = l2_ifname, .node_name = "nnve-load", .vlan = l2_vlan};
        int r = sncp_l2_port_create(loop, &pcfg, NULL, NULL, NULL, &l2_port);
        if (r < 0) {
            fprintf(stderr, "nnve-load: cannot open L2 port on %s: %s\n", l2_ifname,
                    sncp_strerror(r));
            return 1;
        }
    }
    serial_ns = calloc(serial_n ? serial_n : 1, sizeof *serial_ns);
    sessions = calloc(max_sessions, sizeof *sessions);
    rss_base_kb = daemon_rss_kb();
    printf("daemon pid %d: VmRSS %ld KiB before the load\n", daemon_pid, rss_base_kb);
    for (unsigned i = 0; i < n_sessions; i++) {
        sessions[i].share = total_tsis / n_sessions;
        open_session(i);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    int rc = errors ? 1 : 0;
    if (phase != P_DONE || n_established < max_sessions)
        rc = 1;
    for (unsigned i = 0; i < max_sessions; i++)
        sncp_tls_ctx_destroy(sessions[i].tls);
    free(sessions);
    free(lat_send);
    free(lat_ns);
    free(lat_lag_ns);
    free(serial_ns);
    uv_loop_close(loop);
    if (l2_ifname)
        printf("l2 (load side): frames out %" PRIu64 " (DATA %" PRIu64 ", ACK %" PRIu64
               "), in %" PRIu64 " (DATA %" PRIu64 "); retransmits %" PRIu64 " (timeouts %" PRIu64
               ", fast %" PRIu64 ")\n",
               l2_sum.frames_out, l2_sum.data_frames_out, l2_sum.acks_out, l2_sum.frames_in,
               l2_sum.data_frames_in, l2_sum.retransmits, l2_sum.timeouts, l2_sum.fast_retransmits);
    printf("errors: %" PRIu64 "\n", errors);
    return rc;
}
