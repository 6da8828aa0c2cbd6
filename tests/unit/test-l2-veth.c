/* test-l2-veth.c: SNCP sessions over the AF_PACKET provider (lib/sncp-conn-l2.c) on real
 * veth interfaces.
 *
 * The test runs in a private network namespace (unshare(CLONE_NEWNET): everything it
 * creates disappears with the process).  Topology: the nNVE's interface nnve0 is one end of
 * a veth pair whose other end is a port of bridge br0; two hypervisors' interfaces hv1 and
 * hv2 reach the same bridge over their own veth pairs: two hypervisors behind one nNVE port
 * (RFC 8394 Req-1, Req-2).  TLS 1.3 with certificates from scripts/gen-pki.sh.
 * Needs root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN): without it the test is skipped.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sncp-conn-l2.h"
#include "sncp-conn.h"
#include "sncp-tls.h"
#include "testutil.h"

static char pki_dir[256];
static struct sncp_tls_ctx *nnve_ctx, *hv1_ctx, *hv2_ctx, *rogue_ctx;

static int make_topology(void)
{
    TESTUTIL_RUN("ip", "link", "add", "br0", "type", "bridge");
    TESTUTIL_RUN("ip", "link", "add", "nnve0", "type", "veth", "peer", "name", "p0");
    TESTUTIL_RUN("ip", "link", "add", "hv1", "type", "veth", "peer", "name", "p1");
    TESTUTIL_RUN("ip", "link", "add", "hv2", "type", "veth", "peer", "name", "p2");
    static const char *const ports[] = {"p0", "p1", "p2"};
    for (int i = 0; i < 3; i++) {
        TESTUTIL_RUN("ip", "link", "set", ports[i], "master", "br0");
        TESTUTIL_RUN("ip", "link", "set", ports[i], "up");
    }
    static const char *const ifs[] = {"lo", "br0", "nnve0", "hv1", "hv2"};
    for (int i = 0; i < 5; i++) {
        TESTUTIL_RUN("ip", "link", "set", ifs[i], "up");
    }
    return 0;
}

static struct sncp_tls_ctx *ctx_for(enum sncp_tls_role role, const char *name)
{
    char err[256] = "";
    struct sncp_tls_ctx *c = testutil_tls_ctx(pki_dir, role, name, err, sizeof err);
    if (!c) {
        fprintf(stderr, "tls ctx %s: %s\n", name, err);
    }
    return c;
}

/* ---- the two sides ------------------------------------------------------------------------ */

enum { N_REQ = 200, MAX_PEERS = 4, N_LAT = 500 };

struct peer {
    struct sncp_conn *c;
    char identity[SNCP_TLS_IDENTITY_MAX];
    char name[64];
    int connected, closed, closed_err;
    int n_sent, n_answered, order_errors, n_failed;
    int n_requests; /* server side */
    uint64_t sent_ns;
    uint64_t lat_ns[N_LAT];
};

static struct {
    uv_loop_t loop;
    struct sncp_l2_port *nnve_port, *hv_port[2];
    struct peer hv[2];          /* client ends */
    struct peer srv[MAX_PEERS]; /* server ends, in order of connection */
    int n_srv;
    int n_req, window; /* requests per hypervisor, outstanding at most */
} t;

static void srv_connected(struct sncp_conn *c, const char *identity)
{
    ck_assert_int_lt(t.n_srv, MAX_PEERS);
    struct peer *pe = &t.srv[t.n_srv++];
    pe->c = c;
    pe->connected = 1;
    snprintf(pe->identity, sizeof pe->identity, "%s", identity);
    snprintf(pe->name, sizeof pe->name, "%s", sncp_conn_peer_name(c));
    sncp_conn_set_data(c, pe);
}

static void srv_request(struct sncp_conn *c, const struct sncp_msg *req)
{
    struct peer *pe = sncp_conn_data(c);
    struct sncp_msg rsp;
    sncp_msg_init(&rsp, SNCP_MSG_RESPONSE, 0);
    rsp.status = SNCP_STATUS_SUCCESS;
    rsp.vn_id = req->vn_id;
    sncp_msg_set(&rsp, SNCP_TLV_VN_ID);
    ck_assert_int_eq(sncp_conn_respond(c, req, &rsp), 0);
    pe->n_requests++;
}

static void srv_closed(struct sncp_conn *c, int err)
{
    struct peer *pe = sncp_conn_data(c);
    if (pe && pe != (void *)&t) {
        pe->closed = 1;
        pe->closed_err = err;
        pe->c = NULL;
    }
}

static const struct sncp_conn_cbs srv_cbs = {
    .connected = srv_connected,
    .request = srv_request,
    .closed = srv_closed,
};

static void hv_send_more(struct peer *pe)
{
    while (pe->connected && !pe->closed && pe->n_sent < t.n_req &&
           pe->n_sent - pe->n_answered < t.window) {
        struct sncp_msg m;
        sncp_msg_init(&m, SNCP_MSG_VN_CONNECT, 0);
        m.vn_id = (uint32_t)pe->n_sent + 1;
        sncp_msg_set(&m, SNCP_TLV_VN_ID);
        pe->sent_ns = uv_hrtime();
        ck_assert_int_gt(sncp_conn_send(pe->c, &m, (uint64_t)pe->n_sent), 0);
        pe->n_sent++;
    }
}

static void hv_connected(struct sncp_conn *c, const char *identity)
{
    struct peer *pe = sncp_conn_data(c);
    pe->connected = 1;
    snprintf(pe->identity, sizeof pe->identity, "%s", identity);
    hv_send_more(pe);
}

static void hv_response(struct sncp_conn *c, uint64_t cookie, const struct sncp_msg *rsp, int err)
{
    struct peer *pe = sncp_conn_data(c);
    if (err) {
        pe->n_failed++;
        return;
    }
    if (cookie != (uint64_t)pe->n_answered || rsp->vn_id != cookie + 1) {
        pe->order_errors++;
    }
    if (pe->n_answered < N_LAT) {
        pe->lat_ns[pe->n_answered] = uv_hrtime() - pe->sent_ns;
    }
    pe->n_answered++;
    hv_send_more(pe);
}

static void hv_closed(struct sncp_conn *c, int err)
{
    struct peer *pe = sncp_conn_data(c);
    pe->closed = 1;
    pe->closed_err = err;
    pe->c = NULL;
}

static const struct sncp_conn_cbs hv_cbs = {
    .connected = hv_connected,
    .response = hv_response,
    .closed = hv_closed,
};

/* Runs the loop until cond() or timeout_ms; returns cond(). */
static int run_until(int (*cond)(void), uint64_t timeout_ms)
{
    return testutil_run_until(&t.loop, cond, timeout_ms);
}

static struct sncp_conn_config conn_cfg(struct sncp_tls_ctx *tls, const char *expected)
{
    struct sncp_conn_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.session.tls = tls;
    cfg.session.expected_peer = expected;
    return cfg;
}

static uint32_t setup_open_rate; /* the nNVE port's open_rate for the next setup() */

static void setup(void)
{
    memset(&t, 0, sizeof t);
    t.n_req = N_REQ;
    t.window = 20;
    ck_assert_int_eq(uv_loop_init(&t.loop), 0);
    struct sncp_conn_config scfg = conn_cfg(nnve_ctx, NULL);
    struct sncp_l2_port_config pcfg = {
        .ifname = "nnve0", .accept = 1, .node_name = "nnve-test", .open_rate = setup_open_rate};
    setup_open_rate = 0;
    ck_assert_int_eq(sncp_l2_port_create(&t.loop, &pcfg, &scfg, &srv_cbs, &t, &t.nnve_port), 0);
    static const char *const names[2] = {"hv1", "hv2"};
    for (int i = 0; i < 2; i++) {
        struct sncp_l2_port_config hcfg = {.ifname = names[i], .node_name = names[i]};
        ck_assert_int_eq(sncp_l2_port_create(&t.loop, &hcfg, NULL, NULL, NULL, &t.hv_port[i]), 0);
    }
}

/* hv1 (client end t.hv[0], on port t.hv_port[0]) connects to the nNVE's MAC address:
 * no discovery. */
static void connect_hv1_by_mac(void)
{
    uint8_t nnve_mac[6];
    sncp_l2_port_mac(t.nnve_port, nnve_mac);
    struct sncp_conn_config cfg = conn_cfg(hv1_ctx, "nnve");
    ck_assert_int_eq(
        sncp_conn_connect_l2(t.hv_port[0], nnve_mac, &cfg, &hv_cbs, &t.hv[0], &t.hv[0].c), 0);
}

static int all_closed(void)
{
    for (int i = 0; i < 2; i++) {
        if (t.hv[i].c) {
            return 0;
        }
    }
    for (int i = 0; i < t.n_srv; i++) {
        if (t.srv[i].c) {
            return 0;
        }
    }
    return 1;
}

static void teardown(void)
{
    for (int i = 0; i < 2; i++) {
        if (t.hv[i].c) {
            sncp_conn_close(t.hv[i].c);
        }
    }
    ck_assert(run_until(all_closed, 10000));
    sncp_l2_port_destroy(t.nnve_port);
    sncp_l2_port_destroy(t.hv_port[0]);
    sncp_l2_port_destroy(t.hv_port[1]);
    uv_run(&t.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&t.loop), 0);
}

static int both_done(void)
{
    return (t.hv[0].n_answered == t.n_req || t.hv[0].closed) &&
           (t.hv[1].n_answered == t.n_req || t.hv[1].closed);
}

START_TEST(test_two_hypervisors_one_port)
{
    /* Both hypervisors find the nNVE by SOLICIT through the bridge and get sessions of
     * their own on the nNVE's single port, told apart by MAC address. */
    setup();
    struct sncp_tls_ctx *ctxs[2] = {hv1_ctx, hv2_ctx};
    for (int i = 0; i < 2; i++) {
        struct sncp_conn_config cfg = conn_cfg(ctxs[i], "nnve");
        ck_assert_int_eq(
            sncp_conn_connect_l2(t.hv_port[i], NULL, &cfg, &hv_cbs, &t.hv[i], &t.hv[i].c), 0);
    }
    ck_assert(run_until(both_done, 20000));
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(!t.hv[i].closed, "hv%d closed: %s", i + 1,
                      sncp_error_token(t.hv[i].closed_err));
        ck_assert_str_eq(t.hv[i].identity, "nnve");
        ck_assert_int_eq(t.hv[i].n_answered, N_REQ);
        ck_assert_int_eq(t.hv[i].order_errors, 0);
        ck_assert_int_eq(t.hv[i].n_failed, 0);
    }
    ck_assert_int_eq(t.n_srv, 2);
    ck_assert_uint_eq(sncp_l2_port_conns(t.nnve_port), 2);
    ck_assert_str_ne(t.srv[0].identity, t.srv[1].identity);
    ck_assert_str_ne(t.srv[0].name, t.srv[1].name);
    uint8_t mac[2][6];
    char macs[2][SNCP_MAC_STRLEN];
    for (int i = 0; i < 2; i++) {
        sncp_l2_port_mac(t.hv_port[i], mac[i]);
        sncp_mac_format(mac[i], macs[i], sizeof macs[i]);
    }
    for (int i = 0; i < 2; i++) {
        struct peer *s = &t.srv[i];
        int h = strcmp(s->identity, "hv1") == 0 ? 0 : 1;
        ck_assert_str_eq(s->identity, h == 0 ? "hv1" : "hv2");
        ck_assert_int_eq(s->n_requests, N_REQ);
        ck_assert_msg(strstr(s->name, "nnve0/") == s->name && strstr(s->name, macs[h]),
                      "peer name %s", s->name);
    }
    const struct sncp_l2_port_stats *ps = sncp_l2_port_stats(t.nnve_port);
    ck_assert_uint_ge(ps->solicits_in, 2);
    ck_assert_uint_ge(ps->advertises_out, 2);
    teardown();
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(t.hv[i].closed_err, 0);
        ck_assert_int_eq(t.srv[i].closed_err, 0);
    }
}
END_TEST

static int hv0_done(void)
{
    return t.hv[0].n_answered == t.n_req || t.hv[0].closed;
}

START_TEST(test_configured_mac_and_vlan)
{
    /* No discovery: hv1 is configured with the nNVE's MAC and runs the channel in VLAN 100;
     * the nNVE learns the VLAN from the frames (PACKET_AUXDATA) and answers in it. */
    setup();
    sncp_l2_port_destroy(t.hv_port[0]);
    struct sncp_l2_port_config hcfg = {.ifname = "hv1", .vlan = 100};
    ck_assert_int_eq(sncp_l2_port_create(&t.loop, &hcfg, NULL, NULL, NULL, &t.hv_port[0]), 0);
    connect_hv1_by_mac();
    ck_assert(run_until(hv0_done, 20000));
    ck_assert_msg(!t.hv[0].closed, "closed: %s", sncp_error_token(t.hv[0].closed_err));
    ck_assert_int_eq(t.hv[0].n_answered, N_REQ);
    ck_assert_int_eq(t.n_srv, 1);
    ck_assert_msg(strstr(t.srv[0].name, "/vlan100") != NULL, "peer name %s", t.srv[0].name);
    ck_assert_uint_eq(sncp_l2_port_stats(t.nnve_port)->solicits_in, 0);
    /* What nnve-daemon shows of the session: transport, interface, peer MAC, VLAN. */
    const char *ifname = NULL;
    uint8_t peer_mac[6], hv_mac[6];
    uint16_t vlan = 0;
    ck_assert_str_eq(sncp_conn_transport(t.srv[0].c), "l2");
    ck_assert_int_eq(sncp_conn_l2_peer(t.srv[0].c, &ifname, peer_mac, &vlan), 0);
    ck_assert_str_eq(ifname, "nnve0");
    sncp_l2_port_mac(t.hv_port[0], hv_mac);
    ck_assert_mem_eq(peer_mac, hv_mac, 6);
    ck_assert_uint_eq(vlan, 100);
    teardown();
}
END_TEST

static int rogue_closed(void)
{
    return t.hv[0].closed;
}

START_TEST(test_bad_certificate_refused)
{
    setup();
    struct sncp_conn_config cfg = conn_cfg(rogue_ctx, "nnve");
    ck_assert_int_eq(sncp_conn_connect_l2(t.hv_port[0], NULL, &cfg, &hv_cbs, &t.hv[0], &t.hv[0].c),
                     0);
    ck_assert(run_until(rogue_closed, 20000));
    ck_assert_int_ne(t.hv[0].closed_err, 0);
    ck_assert_int_eq(t.hv[0].n_answered, 0);
    ck_assert_int_eq(t.n_srv, 0); /* the nNVE never saw a verified peer */
    teardown();
}
END_TEST

static int hv0_connected(void)
{
    return t.hv[0].connected || t.hv[0].closed;
}

START_TEST(test_nnve_restart_resets)
{
    /* The nNVE's port goes away and comes back (a restart): the hypervisor's next frame is
     * answered with RESET and its connection fails at once, long before any timeout. */
    setup();
    connect_hv1_by_mac();
    ck_assert(run_until(hv0_connected, 20000));
    ck_assert_int_eq(t.hv[0].closed, 0);
    ck_assert(run_until(hv0_done, 20000));
    sncp_l2_port_destroy(t.nnve_port);
    struct sncp_conn_config scfg = conn_cfg(nnve_ctx, NULL);
    struct sncp_l2_port_config pcfg = {.ifname = "nnve0", .accept = 1};
    ck_assert_int_eq(sncp_l2_port_create(&t.loop, &pcfg, &scfg, &srv_cbs, &t, &t.nnve_port), 0);
    uint64_t t0 = uv_now(&t.loop);
    ck_assert(run_until(rogue_closed, 20000));
    ck_assert_int_ne(t.hv[0].closed_err, 0);
    ck_assert_uint_lt(uv_now(&t.loop) - t0, 5000);
    teardown();
}
END_TEST

START_TEST(test_discovery_name_filter)
{
    /* hv1 only accepts an nNVE named "other": it hears the ADVERTISE of "nnve-test" and
     * keeps soliciting; closing the connection while it discovers ends it cleanly. */
    setup();
    sncp_l2_port_destroy(t.hv_port[0]);
    struct sncp_l2_port_config hcfg = {.ifname = "hv1", .nnve_name = "other"};
    ck_assert_int_eq(sncp_l2_port_create(&t.loop, &hcfg, NULL, NULL, NULL, &t.hv_port[0]), 0);
    struct sncp_conn_config cfg = conn_cfg(hv1_ctx, "nnve");
    ck_assert_int_eq(sncp_conn_connect_l2(t.hv_port[0], NULL, &cfg, &hv_cbs, &t.hv[0], &t.hv[0].c),
                     0);
    run_until(testutil_never, 1500);
    const struct sncp_l2_port_stats *st = sncp_l2_port_stats(t.hv_port[0]);
    ck_assert_uint_ge(st->solicits_out, 2); /* the first, and the repeat after 1 s */
    ck_assert_uint_ge(st->advertises_in, 2);
    ck_assert_int_eq(t.hv[0].connected, 0);
    ck_assert_int_eq(t.n_srv, 0);
    ck_assert_str_eq(sncp_conn_peer_name(t.hv[0].c), "discovering");
    sncp_conn_close(t.hv[0].c);
    ck_assert(run_until(rogue_closed, 5000));
    teardown();
}
END_TEST

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int hv1_connected(void)
{
    return t.hv[1].connected || t.hv[1].closed;
}

START_TEST(test_latency_l2_vs_tcp)
{
    /* One request at a time, N_LAT of them, over L2 (hv1 -> nnve0 through the bridge) and
     * over TCP on loopback in the same process: informational numbers, correctness checked. */
    setup();
    t.n_req = N_LAT;
    t.window = 1;
    connect_hv1_by_mac();
    uint64_t t0 = uv_hrtime();
    ck_assert(run_until(hv0_connected, 20000));
    uint64_t l2_handshake = uv_hrtime() - t0;
    ck_assert(run_until(hv0_done, 60000));
    uint64_t l2_total = uv_hrtime() - t0 - l2_handshake;
    ck_assert_int_eq(t.hv[0].n_answered, N_LAT);

    struct sncp_conn_config scfg = conn_cfg(nnve_ctx, NULL);
    struct sncp_listener *l;
    ck_assert_int_eq(sncp_listener_create(&t.loop, "127.0.0.1", 0, &scfg, &srv_cbs, &t, &l), 0);
    struct sncp_conn_config cfg = conn_cfg(hv2_ctx, "nnve");
    ck_assert_int_eq(sncp_conn_connect(&t.loop, "127.0.0.1", sncp_listener_port(l), &cfg, &hv_cbs,
                                       &t.hv[1], &t.hv[1].c),
                     0);
    t0 = uv_hrtime();
    ck_assert(run_until(hv1_connected, 20000));
    uint64_t tcp_handshake = uv_hrtime() - t0;
    ck_assert(run_until(both_done, 60000));
    uint64_t tcp_total = uv_hrtime() - t0 - tcp_handshake;
    ck_assert_int_eq(t.hv[1].n_answered, N_LAT);
    ck_assert_str_eq(sncp_conn_transport(t.hv[1].c), "tcp");
    ck_assert_int_eq(sncp_conn_l2_peer(t.hv[1].c, NULL, NULL, NULL), -EINVAL);
    ck_assert_int_eq(t.hv[0].order_errors + t.hv[1].order_errors, 0);

    for (int i = 0; i < 2; i++) {
        qsort(t.hv[i].lat_ns, N_LAT, sizeof t.hv[i].lat_ns[0], cmp_u64);
    }
    fprintf(stderr,
            "latency over veth+bridge, %d sequential requests: L2 p50=%.1f us p99=%.1f us "
            "%.0f req/s handshake=%.1f ms | TCP loopback p50=%.1f us p99=%.1f us %.0f req/s "
            "handshake=%.1f ms\n",
            N_LAT, t.hv[0].lat_ns[N_LAT / 2] / 1e3, t.hv[0].lat_ns[N_LAT * 99 / 100] / 1e3,
            N_LAT / (l2_total / 1e9), l2_handshake / 1e6, t.hv[1].lat_ns[N_LAT / 2] / 1e3,
            t.hv[1].lat_ns[N_LAT * 99 / 100] / 1e3, N_LAT / (tcp_total / 1e9), tcp_handshake / 1e6);
    sncp_listener_destroy(l);
    teardown();
}
END_TEST

/* Runs an `ip` command (in the test's network namespace) and asserts it succeeded. */
#define IP(...)                                                                                    \
    do {                                                                                           \
        const char *const argv_[] = {"ip", __VA_ARGS__, NULL};                                     \
        ck_assert_msg(testutil_run(argv_) == 0, "ip %s %s %s failed", argv_[1], argv_[2],          \
                      argv_[3]);                                                                   \
    } while (0)

START_TEST(test_link_down_up)
{
    /* The nNVE's interface goes down (the kernel reports ENETDOWN on the socket, which
     * makes libuv stop polling it) and up again: the port reads again and the session
     * carries on. */
    setup();
    connect_hv1_by_mac();
    ck_assert(run_until(hv0_done, 20000));
    IP("link", "set", "nnve0", "down");
    run_until(testutil_never, 300);
    IP("link", "set", "nnve0", "up");
    t.n_req += 20;
    hv_send_more(&t.hv[0]);
    /* What is sent while the link comes back may be lost whole: a timer expiry (at most
     * max_rto; twice if its retransmission is lost too) finds the first frame, the others
     * follow one round trip each (L2-TRANSPORT.md §6.4, "After a timeout"). */
    ck_assert(run_until(hv0_done, 2 * SNCP_L2_DEFAULT_MAX_RTO_MS + 1000));
    ck_assert_msg(!t.hv[0].closed, "closed: %s", sncp_error_token(t.hv[0].closed_err));
    ck_assert_int_eq(t.hv[0].n_answered, t.n_req);
    ck_assert_int_eq(sncp_l2_port_check(t.nnve_port), 0);
    teardown();
}
END_TEST

/* ---- many connections on one port ---- */

enum { N_MANY = 100, MANY_REQ = 5 };
static struct peer many[N_MANY];
static int many_srv;

static void many_srv_connected(struct sncp_conn *c, const char *identity)
{
    (void)identity;
    sncp_conn_set_data(c, NULL);
    many_srv++;
}

static void many_srv_request(struct sncp_conn *c, const struct sncp_msg *req)
{
    struct sncp_msg rsp;
    sncp_msg_init(&rsp, SNCP_MSG_RESPONSE, 0);
    rsp.status = SNCP_STATUS_SUCCESS;
    rsp.vn_id = req->vn_id;
    sncp_msg_set(&rsp, SNCP_TLV_VN_ID);
    ck_assert_int_eq(sncp_conn_respond(c, req, &rsp), 0);
}

static void many_srv_closed(struct sncp_conn *c, int err)
{
    (void)c;
    (void)err;
}

static const struct sncp_conn_cbs many_srv_cbs = {
    .connected = many_srv_connected,
    .request = many_srv_request,
    .closed = many_srv_closed,
};

static int many_done(void)
{
    for (int i = 0; i < N_MANY; i++) {
        if (many[i].n_answered < MANY_REQ && !many[i].closed) {
            return 0;
        }
    }
    return 1;
}

static int many_closed(void)
{
    for (int i = 0; i < N_MANY; i++) {
        if (many[i].c) {
            return 0;
        }
    }
    return 1;
}

START_TEST(test_many_connections_one_mac)
{
    /* A hundred connections from one MAC address to one port (more than the id table's
     * first size): each is found by its id, all requests answered in order. */
    memset(&t, 0, sizeof t);
    memset(many, 0, sizeof many);
    many_srv = 0;
    t.n_req = MANY_REQ;
    t.window = MANY_REQ;
    ck_assert_int_eq(uv_loop_init(&t.loop), 0);
    struct sncp_conn_config scfg = conn_cfg(nnve_ctx, NULL);
    struct sncp_l2_port_config pcfg = {.ifname = "nnve0", .accept = 1};
    ck_assert_int_eq(sncp_l2_port_create(&t.loop, &pcfg, &scfg, &many_srv_cbs, NULL, &t.nnve_port),
                     0);
    struct sncp_l2_port_config hcfg = {.ifname = "hv1"};
    ck_assert_int_eq(sncp_l2_port_create(&t.loop, &hcfg, NULL, NULL, NULL, &t.hv_port[0]), 0);
    uint8_t nnve_mac[6];
    sncp_l2_port_mac(t.nnve_port, nnve_mac);
    struct sncp_conn_config cfg = conn_cfg(hv1_ctx, "nnve");
    for (int i = 0; i < N_MANY; i++) {
        ck_assert_int_eq(
            sncp_conn_connect_l2(t.hv_port[0], nnve_mac, &cfg, &hv_cbs, &many[i], &many[i].c), 0);
    }
    ck_assert(run_until(many_done, 30000));
    ck_assert_int_eq(many_srv, N_MANY);
    ck_assert_uint_eq(sncp_l2_port_conns(t.nnve_port), N_MANY);
    for (int i = 0; i < N_MANY; i++) {
        ck_assert_int_eq(many[i].closed, 0);
        ck_assert_int_eq(many[i].n_answered, MANY_REQ);
        ck_assert_int_eq(many[i].order_errors, 0);
    }
    ck_assert_uint_eq(sncp_l2_port_stats(t.nnve_port)->unknown, 0);
    for (int i = 0; i < N_MANY; i++) {
        sncp_conn_close(many[i].c);
    }
    ck_assert(run_until(many_closed, 10000));
    sncp_l2_port_destroy(t.nnve_port);
    sncp_l2_port_destroy(t.hv_port[0]);
    uv_run(&t.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&t.loop), 0);
}
END_TEST

/* ---- OPENs from an attacker on the wire ---- */

static int hv1_done(void)
{
    return t.hv[0].n_answered == t.n_req || t.hv[0].closed;
}

/* Sends an OPEN to `dst` from `src` out of interface `ifname` through its own raw socket,
 * with `cookie` (16 bytes, NULL: none). */
static void raw_open(int fd, int ifindex, const uint8_t dst[6], const uint8_t src[6], uint32_t id,
                     const uint8_t *cookie)
{
    uint8_t body[SNCP_L2_OPEN_COOKIE_BODY_LEN] = {0x05, 0xc4, 0, 0};
    if (cookie) {
        memcpy(body + SNCP_L2_OPEN_BODY_LEN, cookie, SNCP_L2_COOKIE_LEN);
    }
    struct sncp_l2_frame f = {.type = SNCP_L2_OPEN,
                              .src_id = id,
                              .seq = id * 7,
                              .window = 32,
                              .len = cookie ? SNCP_L2_OPEN_COOKIE_BODY_LEN : SNCP_L2_OPEN_BODY_LEN,
                              .payload = body};
    uint8_t pkt[64] = {0};
    memcpy(pkt, dst, 6);
    memcpy(pkt + 6, src, 6);
    pkt[12] = 0x88;
    pkt[13] = 0xb5;
    ck_assert_int_gt(sncp_l2_frame_encode(&f, pkt + 14, sizeof pkt - 14), 0);
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_ifindex = ifindex, .sll_halen = 6};
    memcpy(sll.sll_addr, dst, 6);
    ck_assert_int_eq(sendto(fd, pkt, 60, 0, (struct sockaddr *)&sll, sizeof sll), 60);
}

static unsigned flood_expected;
static uint64_t srv_rejected_base;

static int srv_rejected_more(void)
{
    return sncp_l2_conn_stats(sncp_conn_l2(t.srv[0].c))->rejected > srv_rejected_base;
}

static int flood_counted(void)
{
    const struct sncp_l2_port_stats *ps = sncp_l2_port_stats(t.nnve_port);
    return ps->cookies_out + ps->rate_limited >= flood_expected;
}

START_TEST(test_open_flood)
{
    /* From one MAC, 200 OPENs at once: at most the per-MAC burst (20) plus 10/s are
     * answered, the rest dropped.  Another MAC is answered meanwhile.  A forged cookie is
     * counted and answered with a fresh one.  None of it creates a connection, and an
     * established session goes on. */
    setup();
    connect_hv1_by_mac();
    t.n_req = 10;
    ck_assert(run_until(hv1_done, 10000));
    ck_assert_uint_eq(sncp_l2_port_conns(t.nnve_port), 1);
    const struct sncp_l2_port_stats *ps = sncp_l2_port_stats(t.nnve_port);
    uint64_t cookies0 = ps->cookies_out;
    ck_assert_uint_eq(cookies0, 1); /* hv1's own open */
    ck_assert_uint_eq(ps->unauth_peak, 1);

    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    ck_assert_int_ge(fd, 0);
    int ifindex = (int)if_nametoindex("hv2");
    ck_assert_int_gt(ifindex, 0);
    uint8_t nnve_mac[6];
    sncp_l2_port_mac(t.nnve_port, nnve_mac);
    static const uint8_t mac1[6] = {0x02, 0xaa, 0, 0, 0, 1}, mac2[6] = {0x02, 0xaa, 0, 0, 0, 2};
    uint64_t t0 = uv_hrtime();
    for (uint32_t i = 1; i <= 200; i++) {
        raw_open(fd, ifindex, nnve_mac, mac1, i, NULL);
    }
    flood_expected = 1 + 200;
    ck_assert(run_until(flood_counted, 10000));
    uint64_t secs = (uv_hrtime() - t0) / 1000000000u + 1;
    uint64_t answered = ps->cookies_out - cookies0;
    ck_assert_uint_ge(answered, 1);
    ck_assert_uint_le(answered, 20 + 10 * secs);
    ck_assert_uint_eq(ps->rate_limited, 200 - answered);
    /* Another MAC has its own budget; a forged cookie gets a fresh one. */
    uint8_t forged[SNCP_L2_COOKIE_LEN] = {0xde, 0xad};
    raw_open(fd, ifindex, nnve_mac, mac2, 1, forged);
    flood_expected = 1 + 200 + 1;
    ck_assert(run_until(flood_counted, 10000));
    ck_assert_uint_eq(ps->cookies_out, cookies0 + answered + 1);
    ck_assert_uint_eq(ps->cookie_failures, 1);
    ck_assert_uint_eq(sncp_l2_port_conns(t.nnve_port), 1);
    ck_assert_uint_eq(sncp_l2_port_unauth(t.nnve_port), 0);
    ck_assert_uint_eq(ps->unauth_peak, 1);
    /* An OPEN naming hv1's connection (a repeat, here with another ISN) reaches that
     * connection, found by MAC and id, not the cookie path. */
    uint8_t hv1_mac[6];
    sncp_l2_port_mac(t.hv_port[0], hv1_mac);
    const struct sncp_l2_conn *srv_l2 = sncp_conn_l2(t.srv[0].c);
    ck_assert_ptr_nonnull(srv_l2);
    uint64_t rejected0 = sncp_l2_conn_stats(srv_l2)->rejected;
    srv_rejected_base = rejected0;
    uint64_t cookies1 = ps->cookies_out;
    raw_open(fd, (int)if_nametoindex("hv1"), nnve_mac, hv1_mac, sncp_l2_conn_peer_id(srv_l2), NULL);
    ck_assert(run_until(srv_rejected_more, 5000));
    ck_assert_uint_eq(sncp_l2_conn_stats(srv_l2)->rejected, rejected0 + 1);
    ck_assert_uint_eq(ps->cookies_out, cookies1);
    close(fd);
    /* hv1's session still answers. */
    t.n_req = 20;
    hv_send_more(&t.hv[0]);
    ck_assert(run_until(hv1_done, 10000));
    ck_assert_int_eq(t.hv[0].n_answered, 20);
    ck_assert_int_eq(t.hv[0].order_errors, 0);
    ck_assert_int_eq(t.hv[0].closed, 0);
    teardown();
}
END_TEST

/* What rx_cookie() looks for, and what it found. */
static struct {
    int fd;
    uint8_t mac[6];
    uint32_t id;
    int got;
    uint8_t cookie[SNCP_L2_COOKIE_LEN];
} ck;

/* Reads the raw socket for the COOKIE answering ck.id at ck.mac. */
static int rx_cookie(void)
{
    uint8_t pkt[2048];
    ssize_t n;
    while (!ck.got && (n = recv(ck.fd, pkt, sizeof pkt, MSG_DONTWAIT)) > 0) {
        struct sncp_l2_frame f;
        if (n < 14 || memcmp(pkt, ck.mac, 6) != 0 || pkt[12] != 0x88 || pkt[13] != 0xb5 ||
            sncp_l2_frame_decode(pkt + 14, (size_t)n - 14, &f) != 0) {
            continue;
        }
        if (f.type == SNCP_L2_COOKIE && f.dst_id == ck.id && f.ack == ck.id * 7) {
            memcpy(ck.cookie, f.payload, sizeof ck.cookie);
            ck.got = 1;
        }
    }
    return ck.got;
}

static void get_cookie(int ifindex, const uint8_t nnve_mac[6], const uint8_t mac[6], uint32_t id)
{
    memcpy(ck.mac, mac, 6);
    ck.id = id;
    ck.got = 0;
    raw_open(ck.fd, ifindex, nnve_mac, mac, id, NULL);
    ck_assert(run_until(rx_cookie, 5000));
}

static uint64_t failures_before;

static int failed_and_one_conn(void)
{
    return sncp_l2_port_stats(t.nnve_port)->cookie_failures > failures_before &&
           sncp_l2_port_conns(t.nnve_port) == 1;
}

static int failed_more(void)
{
    return sncp_l2_port_stats(t.nnve_port)->cookie_failures > failures_before;
}

START_TEST(test_cookie_expiry)
{
    /* With a secret lifetime P of 1 s: a cookie still opens a connection after 1.2 s (made
     * with the previous secret), and no longer after more than 2 P; nor does a cookie
     * made for another ISN. */
    enum { P = 1000 };
    memset(&t, 0, sizeof t);
    ck_assert_int_eq(uv_loop_init(&t.loop), 0);
    struct sncp_conn_config scfg = conn_cfg(nnve_ctx, NULL);
    struct sncp_l2_port_config pcfg = {.ifname = "nnve0", .accept = 1, .cookie_secret_ms = P};
    ck_assert_int_eq(sncp_l2_port_create(&t.loop, &pcfg, &scfg, &srv_cbs, &t, &t.nnve_port), 0);
    uint8_t nnve_mac[6];
    sncp_l2_port_mac(t.nnve_port, nnve_mac);
    ck.fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    ck_assert_int_ge(ck.fd, 0);
    int ifindex = (int)if_nametoindex("hv2");
    struct sockaddr_ll sll = {
        .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = ifindex};
    ck_assert_int_eq(bind(ck.fd, (struct sockaddr *)&sll, sizeof sll), 0);
    const struct sncp_l2_port_stats *ps = sncp_l2_port_stats(t.nnve_port);
    static const uint8_t mac3[6] = {0x02, 0xbb, 0, 0, 0, 3}, mac4[6] = {0x02, 0xbb, 0, 0, 0, 4};

    get_cookie(ifindex, nnve_mac, mac3, 0x3003);
    uint64_t t0 = uv_hrtime();
    run_until(testutil_never, P + P / 5);
    /* A cookie for another ISN (the OPEN is not the one it answered) is refused. */
    uint8_t body_cookie[SNCP_L2_COOKIE_LEN];
    memcpy(body_cookie, ck.cookie, sizeof body_cookie);
    failures_before = ps->cookie_failures;
    raw_open(ck.fd, ifindex, nnve_mac, mac3, 0x3004, body_cookie);
    uint64_t elapsed_ms = (uv_hrtime() - t0) / 1000000u;
    raw_open(ck.fd, ifindex, nnve_mac, mac3, 0x3003, body_cookie);
    if (elapsed_ms < 2 * P - 100) {
        /* Sent within the previous secret's life (else the machine stalled: not judged). */
        ck_assert(run_until(failed_and_one_conn, 5000));
        ck_assert_uint_eq(ps->cookie_failures, 1);
        ck_assert_uint_eq(ps->unauth_peak, 1);
    } else {
        ck_assert(run_until(failed_more, 5000));
    }

    get_cookie(ifindex, nnve_mac, mac4, 0x4004);
    run_until(testutil_never, 2 * P + P / 5);
    uint64_t conns = sncp_l2_port_conns(t.nnve_port), cookies = ps->cookies_out;
    failures_before = ps->cookie_failures;
    raw_open(ck.fd, ifindex, nnve_mac, mac4, 0x4004, ck.cookie);
    ck_assert(run_until(failed_more, 5000));
    ck_assert_uint_eq(ps->cookie_failures, failures_before + 1);
    ck_assert_uint_eq(sncp_l2_port_conns(t.nnve_port), conns);
    ck_assert_uint_eq(ps->cookies_out, cookies + 1); /* a fresh one instead */
    close(ck.fd);
    sncp_l2_port_destroy(t.nnve_port);
    uv_run(&t.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&t.loop), 0);
}
END_TEST

START_TEST(test_known_mac_during_flood)
{
    /* The port answers 1 OPEN/s (burst 2).  hv1 authenticated a connection, so its MAC is
     * known: in a burst of OPENs from new MACs that the port limit drops, a new OPEN from
     * hv1's MAC (a reconnection) is still answered with a cookie. */
    setup_open_rate = 1;
    setup();
    connect_hv1_by_mac();
    t.n_req = 5;
    ck_assert(run_until(hv1_done, 10000));
    const struct sncp_l2_port_stats *ps = sncp_l2_port_stats(t.nnve_port);
    uint8_t nnve_mac[6];
    sncp_l2_port_mac(t.nnve_port, nnve_mac);
    int hv2_if = (int)if_nametoindex("hv2"), hv1_if = (int)if_nametoindex("hv1");
    int out = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    ck.fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    ck_assert_int_ge(out, 0);
    ck_assert_int_ge(ck.fd, 0);
    struct sockaddr_ll sll = {
        .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = hv1_if};
    ck_assert_int_eq(bind(ck.fd, (struct sockaddr *)&sll, sizeof sll), 0);
    sncp_l2_port_mac(t.hv_port[0], ck.mac);
    ck.id = 0x7777;
    ck.got = 0;
    uint64_t cookies0 = ps->cookies_out, limited0 = ps->rate_limited;
    /* All queued before the loop reads any: one batch, one `now`, no refill in between. */
    for (uint8_t i = 0; i < 20; i++) {
        uint8_t mac[6] = {0x02, 0xcc, 0, 0, 0, i};
        raw_open(out, hv2_if, nnve_mac, mac, 0x100u + i, NULL);
        if (i == 9) {
            raw_open(out, hv1_if, nnve_mac, ck.mac, ck.id, NULL);
        }
    }
    flood_expected = (unsigned)(cookies0 + limited0 + 21);
    ck_assert(run_until(flood_counted, 10000));
    ck_assert(run_until(rx_cookie, 5000));
    ck_assert_uint_le(ps->cookies_out - cookies0, 1 + 2);
    ck_assert_uint_ge(ps->rate_limited - limited0, 18);
    close(out);
    close(ck.fd);
    teardown();
}
END_TEST

/* ---- the port follows its interface ---- */

static unsigned port_mtu_now(void)
{
    ck_assert_int_eq(sncp_l2_port_check(t.nnve_port), 0);
    return sncp_l2_port_mtu(t.nnve_port);
}

START_TEST(test_port_follows_interface)
{
    /* MTU below the channel's frame size lowers it; a new MAC address is followed; a
     * deleted interface is reported; an MTU too small for the channel is refused. */
    memset(&t, 0, sizeof t);
    ck_assert_int_eq(uv_loop_init(&t.loop), 0);
    IP("link", "add", "tmp0", "type", "veth", "peer", "name", "tmp1");
    IP("link", "set", "tmp0", "mtu", "1000");
    IP("link", "set", "tmp0", "up");
    struct sncp_conn_config scfg = conn_cfg(nnve_ctx, NULL);
    struct sncp_l2_port_config pcfg = {.ifname = "tmp0", .accept = 1};
    ck_assert_int_eq(sncp_l2_port_create(&t.loop, &pcfg, &scfg, &srv_cbs, &t, &t.nnve_port), 0);
    ck_assert_str_eq(sncp_l2_port_ifname(t.nnve_port), "tmp0");
    ck_assert_uint_eq(sncp_l2_port_mtu(t.nnve_port), 1000);
    IP("link", "set", "tmp0", "mtu", "1400");
    ck_assert_uint_eq(port_mtu_now(), 1400);
    IP("link", "set", "tmp0", "mtu", "9000");
    ck_assert_uint_eq(port_mtu_now(), SNCP_L2_DEFAULT_MTU); /* the configured size caps it */
    IP("link", "set", "tmp0", "address", "02:00:00:00:00:42");
    ck_assert_uint_eq(port_mtu_now(), SNCP_L2_DEFAULT_MTU);
    uint8_t mac[6];
    static const uint8_t want[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x42};
    sncp_l2_port_mac(t.nnve_port, mac);
    ck_assert_mem_eq(mac, want, 6);
    IP("link", "del", "tmp0");
    ck_assert_int_eq(sncp_l2_port_check(t.nnve_port), -ENODEV);
    /* The same name again is another interface. */
    IP("link", "add", "tmp0", "type", "veth", "peer", "name", "tmp1");
    ck_assert_int_eq(sncp_l2_port_check(t.nnve_port), -ENODEV);
    sncp_l2_port_destroy(t.nnve_port);
    IP("link", "set", "tmp0", "mtu", "500");
    struct sncp_l2_port *small;
    ck_assert_int_eq(sncp_l2_port_create(&t.loop, &pcfg, &scfg, &srv_cbs, &t, &small), -EMSGSIZE);
    ck_assert_ptr_null(small);
    IP("link", "del", "tmp0");
    uv_run(&t.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&t.loop), 0);
}
END_TEST

static Suite *veth_suite(void)
{
    Suite *s = suite_create("sncp-l2-veth");
    TCase *tc = tcase_create("veth");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_two_hypervisors_one_port);
    tcase_add_test(tc, test_configured_mac_and_vlan);
    tcase_add_test(tc, test_bad_certificate_refused);
    tcase_add_test(tc, test_nnve_restart_resets);
    tcase_add_test(tc, test_discovery_name_filter);
    tcase_add_test(tc, test_latency_l2_vs_tcp);
    tcase_add_test(tc, test_many_connections_one_mac);
    tcase_add_test(tc, test_port_follows_interface);
    tcase_add_test(tc, test_link_down_up);
    tcase_add_test(tc, test_open_flood);
    tcase_add_test(tc, test_cookie_expiry);
    tcase_add_test(tc, test_known_mac_during_flood);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (geteuid() != 0) {
        printf("SKIP: test-l2-veth needs root (network namespace, veth, AF_PACKET)\n");
        return 0;
    }
    if (unshare(CLONE_NEWNET) < 0) {
        perror("unshare(CLONE_NEWNET)");
        return 1;
    }
    if (make_topology() < 0) {
        return 1;
    }
    static const char *const gen[] = {
        SRCDIR "/scripts/gen-pki.sh", "--other-ca", "rogue", pki_dir, "nnve", "hv1", "hv2", NULL};
    if (testutil_pki_create(pki_dir, sizeof pki_dir, "test-l2-veth", gen) < 0) {
        return 1;
    }
    int failed = 1;
    nnve_ctx = ctx_for(SNCP_TLS_SERVER, "nnve");
    hv1_ctx = ctx_for(SNCP_TLS_CLIENT, "hv1");
    hv2_ctx = ctx_for(SNCP_TLS_CLIENT, "hv2");
    rogue_ctx = ctx_for(SNCP_TLS_CLIENT, "rogue");
    if (!nnve_ctx || !hv1_ctx || !hv2_ctx || !rogue_ctx) {
        goto out;
    }
    SRunner *sr = srunner_create(veth_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
out:
    sncp_tls_ctx_destroy(nnve_ctx);
    sncp_tls_ctx_destroy(hv1_ctx);
    sncp_tls_ctx_destroy(hv2_ctx);
    sncp_tls_ctx_destroy(rogue_ctx);
    testutil_rm_tree(pki_dir);
    return failed ? 1 : 0;
}
