/* test-tnve-nnve-l2.c: Check suite for tnve-agent's SNCP client (tnve-agent/nnve.c) over
 * the Layer-2 transport, on real veth interfaces in a private network namespace.
 *
 * Topology (unshare(CLONE_NEWNET), gone with the process): bridge br0 joins nnve0, the
 * interface of a small nNVE made of an accepting sncp_l2_port that answers HELLO with
 * SUCCESS and PORT "p0", and the hypervisor interfaces hv1 and hv2 (a third, hv9, is
 * created by the test that starts without it).  Covered: discovery and a configured nNVE
 * MAC (with a VLAN), what session/show reports, the uplink MAC in HELLO, an interface that
 * is missing at start, one that goes down and up while the session is up, discovery that
 * nobody answers (connect_timeout), an nNVE that never answers HELLO (hello_timeout, well
 * before connect_timeout), and destroy in every state with the loop closing
 * cleanly.  Needs root: skipped otherwise.
 */
#include <check.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../tnve-agent/nnve.h"
#include "sncp-conn-l2.h"
#include "sncp-conn.h"
#include "sncp-error.h"
#include "sncp-tls.h"
#include "testutil.h"

static char pki_dir[256];

/* A veth pair IF <-> PORT, PORT in br0, both up. */
static int plug(const char *ifname, const char *port)
{
    TESTUTIL_RUN("ip", "link", "add", ifname, "type", "veth", "peer", "name", port);
    TESTUTIL_RUN("ip", "link", "set", port, "master", "br0");
    TESTUTIL_RUN("ip", "link", "set", port, "up");
    TESTUTIL_RUN("ip", "link", "set", ifname, "up");
    return 0;
}

static int make_topology(void)
{
    TESTUTIL_RUN("ip", "link", "set", "lo", "up");
    TESTUTIL_RUN("ip", "link", "add", "br0", "type", "bridge");
    TESTUTIL_RUN("ip", "link", "set", "br0", "up");
    if (plug("nnve0", "p0") < 0 || plug("hv1", "p1") < 0 || plug("hv2", "p2") < 0)
        return -1;
    return 0;
}

static void path_of(char *buf, size_t len, const char *name, const char *ext)
{
    snprintf(buf, len, "%s/%s.%s", pki_dir, name, ext);
}

/* ---- the nNVE ------------------------------------------------------------------------------ */

static struct {
    uv_loop_t loop;
    struct sncp_tls_ctx *nnve_tls;
    struct sncp_l2_port *port;
    uint8_t nnve_mac[6];
    int hellos;
    uint8_t hello_uplink[6];
    int hello_has_uplink;
    uint16_t hello_vlan;
    struct tnve_nnve *n;
    int ups, downs;
    int mute_hello;            /* the nNVE leaves HELLO unanswered */
    uint32_t hello_timeout_ms; /* the agent's; 0: its default */
} t;

static void srv_request(struct sncp_conn *c, const struct sncp_msg *req)
{
    struct sncp_msg rsp;
    sncp_msg_init(&rsp, SNCP_MSG_RESPONSE, 0);
    rsp.status = SNCP_STATUS_SUCCESS;
    if (req->type == SNCP_MSG_HELLO) {
        t.hellos++;
        if (t.mute_hello)
            return;
        t.hello_has_uplink = req->n_uplink_macs > 0;
        if (t.hello_has_uplink)
            memcpy(t.hello_uplink, req->uplink_macs[0], 6);
        sncp_conn_l2_peer(c, NULL, NULL, &t.hello_vlan);
        snprintf(rsp.node_id, sizeof rsp.node_id, "tor-test");
        sncp_msg_set(&rsp, SNCP_TLV_NODE_ID);
        snprintf(rsp.port, sizeof rsp.port, "p0");
        sncp_msg_set(&rsp, SNCP_TLV_PORT);
    }
    ck_assert_int_eq(sncp_conn_respond(c, req, &rsp), 0);
}

static void srv_closed(struct sncp_conn *c, int err)
{
    (void)c;
    (void)err;
}

static const struct sncp_conn_cbs srv_cbs = {.request = srv_request, .closed = srv_closed};

static void agent_up(void *aux)
{
    (void)aux;
    t.ups++;
}

static void agent_down(void *aux)
{
    (void)aux;
    t.downs++;
}

/* Runs the loop until cond() or timeout_ms; returns cond(). */
static int run_until(int (*cond)(void), uint64_t timeout_ms)
{
    return testutil_run_until(&t.loop, cond, timeout_ms);
}

static int is_up(void)
{
    return t.n && tnve_nnve_is_up(t.n);
}

static void setup(void)
{
    memset(&t, 0, sizeof t);
    ck_assert_int_eq(uv_loop_init(&t.loop), 0);
    char err[256] = "";
    t.nnve_tls = testutil_tls_ctx(pki_dir, SNCP_TLS_SERVER, "nnve", err, sizeof err);
    ck_assert_msg(t.nnve_tls != NULL, "%s", err);
    struct sncp_conn_config scfg;
    memset(&scfg, 0, sizeof scfg);
    scfg.session.tls = t.nnve_tls;
    struct sncp_l2_port_config pcfg = {.ifname = "nnve0", .accept = 1, .node_name = "tor-test"};
    ck_assert_int_eq(sncp_l2_port_create(&t.loop, &pcfg, &scfg, &srv_cbs, NULL, &t.port), 0);
    sncp_l2_port_mac(t.port, t.nnve_mac);
}

/* Starts the agent's client on ifname; mac: configured nNVE MAC or NULL. */
static void start_agent(const char *ifname, const uint8_t *mac, uint16_t vlan,
                        const char *nnve_name, uint32_t connect_timeout_ms)
{
    char cert[512], key[512], ca[512], err[256] = "";
    path_of(cert, sizeof cert, "hv1", "crt");
    path_of(key, sizeof key, "hv1", "key");
    path_of(ca, sizeof ca, "ca", "crt");
    struct tnve_nnve_config cfg = {
        .l2_interface = ifname,
        .nnve_mac = mac,
        .l2_vlan = vlan,
        .nnve_name = nnve_name,
        .connect_timeout_ms = connect_timeout_ms,
        .hello_timeout_ms = t.hello_timeout_ms,
        .cert = cert,
        .key = key,
        .ca = ca,
        .identity = "nnve",
        .node_id = "hv1",
        .keepalive_ms = 1000,
        .request_timeout_ms = 2000,
        .retry_min_ms = 50,
        .retry_max_ms = 200,
        .epoch = 1,
    };
    static const struct tnve_nnve_cbs cbs = {.up = agent_up, .down = agent_down};
    ck_assert_int_eq(tnve_nnve_create(&t.loop, &cfg, &cbs, NULL, &t.n, err, sizeof err), 0);
}

/* Destroys the agent's client and the nNVE; the loop must close with no handle left. */
static void teardown(void)
{
    tnve_nnve_destroy(t.n);
    t.n = NULL;
    run_until(testutil_never, 300); /* let orderly closes go out while the nNVE still listens */
    sncp_l2_port_destroy(t.port);
    uv_run(&t.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&t.loop), 0);
    sncp_tls_ctx_destroy(t.nnve_tls);
}

/* session/show field as a string ("" when absent or not a string). */
static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

START_TEST(test_discovery)
{
    setup();
    start_agent("hv1", NULL, 0, "tor-test", 0);
    ck_assert(run_until(is_up, 10000));
    ck_assert_int_eq(t.ups, 1);
    ck_assert_int_eq(t.hellos, 1);
    uint8_t hv1_mac[6];
    ck_assert_int_eq(tnve_nnve_read_mac("hv1", hv1_mac), 0);
    ck_assert(t.hello_has_uplink); /* no uplink configured: the L2 interface's MAC */
    ck_assert_mem_eq(t.hello_uplink, hv1_mac, 6);
    ck_assert_uint_eq(t.hello_vlan, 0);

    char mac[SNCP_MAC_STRLEN], via[64];
    sncp_mac_format(t.nnve_mac, mac, sizeof mac);
    snprintf(via, sizeof via, "hv1/%s", mac);
    json_t *o = tnve_nnve_json(t.n);
    ck_assert_str_eq(jstr(o, "state"), "up");
    ck_assert_str_eq(jstr(o, "transport"), "l2");
    ck_assert_str_eq(jstr(o, "interface"), "hv1");
    ck_assert_str_eq(jstr(o, "nnve_mac"), mac);
    ck_assert_str_eq(jstr(o, "nnve"), via);
    ck_assert_str_eq(jstr(o, "port"), "p0");
    ck_assert_str_eq(jstr(o, "identity"), "nnve");
    ck_assert(json_is_true(json_object_get(o, "discovery")));
    ck_assert_int_gt(json_integer_value(json_object_get(o, "l2_frames_in")), 0);
    json_decref(o);
    teardown();
}
END_TEST

START_TEST(test_configured_mac_and_vlan)
{
    setup();
    start_agent("hv1", t.nnve_mac, 7, NULL, 0);
    ck_assert(run_until(is_up, 10000));
    ck_assert_uint_eq(t.hello_vlan, 7);
    json_t *o = tnve_nnve_json(t.n);
    ck_assert(json_is_false(json_object_get(o, "discovery")));
    ck_assert_int_eq(json_integer_value(json_object_get(o, "vlan")), 7);
    ck_assert_ptr_nonnull(strstr(jstr(o, "nnve"), "/vlan7"));
    json_decref(o);
    teardown();
}
END_TEST

static int retried_twice(void)
{
    json_t *o = tnve_nnve_json(t.n);
    int n = (int)json_integer_value(json_object_get(o, "connects"));
    json_decref(o);
    return n >= 3;
}

START_TEST(test_missing_interface)
{
    /* The interface appears only later: the client retries with its backoff, says why,
     * and comes up once the interface is there. */
    setup();
    start_agent("hv9", NULL, 0, NULL, 0);
    ck_assert(run_until(retried_twice, 5000));
    ck_assert(!tnve_nnve_is_up(t.n));
    json_t *o = tnve_nnve_json(t.n);
    ck_assert_str_eq(jstr(o, "last_error"), "interface hv9 does not exist");
    ck_assert_str_eq(jstr(o, "cause"), "link-down");
    json_decref(o);
    ck_assert_int_eq(plug("hv9", "p9"), 0);
    ck_assert(run_until(is_up, 10000));
    teardown();
}
END_TEST

static int is_down(void)
{
    return t.downs > 0;
}

START_TEST(test_interface_down_and_up)
{
    /* Down while up: the session ends at once (the port would stay deaf), retries fail
     * with a clear reason while it is down, and the session comes back once it is up. */
    setup();
    start_agent("hv2", NULL, 0, NULL, 0);
    ck_assert(run_until(is_up, 10000));
    const char *down[] = {"ip", "link", "set", "hv2", "down", NULL};
    ck_assert_int_eq(testutil_run(down), 0);
    ck_assert(run_until(is_down, 2000)); /* the interface check, not the 3 s dead peer */
    ck_assert(!tnve_nnve_is_up(t.n));
    run_until(testutil_never, 500);
    json_t *o = tnve_nnve_json(t.n);
    ck_assert_str_eq(jstr(o, "last_error"), "interface hv2 is down");
    ck_assert_str_eq(jstr(o, "cause"), "link-down");
    json_decref(o);
    const char *up[] = {"ip", "link", "set", "hv2", "up", NULL};
    ck_assert_int_eq(testutil_run(up), 0);
    ck_assert(run_until(is_up, 10000));
    ck_assert_int_eq(t.ups, 2);
    ck_assert_int_eq(t.hellos, 2);
    teardown();
}
END_TEST

START_TEST(test_unanswered_hello)
{
    /* The channel and TLS come up but HELLO is never answered: each attempt ends at
     * hello_timeout (not the minute of connect_timeout), with the cause reported. */
    setup();
    t.mute_hello = 1;
    t.hello_timeout_ms = 300;
    start_agent("hv1", NULL, 0, "tor-test", 60000);
    ck_assert(run_until(retried_twice, 8000));
    ck_assert_int_eq(t.ups, 0);
    ck_assert_int_ge(t.hellos, 2);
    json_t *o = tnve_nnve_json(t.n);
    ck_assert_str_eq(jstr(o, "last_error"), "no HELLO answer within 300 ms of the TLS handshake");
    ck_assert_str_eq(jstr(o, "cause"), "hello-timeout");
    json_decref(o);
    teardown();
}
END_TEST

START_TEST(test_unanswered_discovery)
{
    /* An nNVE of another name answers: ignored; each attempt ends at connect_timeout and
     * the next one starts; destroy in the middle of discovery leaves nothing behind. */
    setup();
    start_agent("hv1", NULL, 0, "tor-other", 300);
    ck_assert(run_until(retried_twice, 5000));
    ck_assert_int_eq(t.ups, 0);
    ck_assert_int_eq(t.hellos, 0);
    json_t *o = tnve_nnve_json(t.n);
    ck_assert_str_eq(jstr(o, "last_error"),
                     "no session within 300 ms (no nNVE answered the discovery)");
    ck_assert_str_eq(jstr(o, "cause"), "connect-timeout");
    ck_assert_str_eq(jstr(o, "nnve_mac"), "");
    json_decref(o);
    teardown();
}
END_TEST

START_TEST(test_destroy_while_opening)
{
    /* A configured MAC nobody has: the OPEN is retransmitted; destroy ends it cleanly. */
    setup();
    static const uint8_t nobody[6] = {0x02, 0x00, 0x5e, 0x00, 0x53, 0x99};
    start_agent("hv1", nobody, 0, NULL, 0);
    run_until(testutil_never, 300);
    ck_assert(!tnve_nnve_is_up(t.n));
    teardown();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("tnve-nnve-l2");
    TCase *tc = tcase_create("veth");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_discovery);
    tcase_add_test(tc, test_configured_mac_and_vlan);
    tcase_add_test(tc, test_missing_interface);
    tcase_add_test(tc, test_interface_down_and_up);
    tcase_add_test(tc, test_unanswered_hello);
    tcase_add_test(tc, test_unanswered_discovery);
    tcase_add_test(tc, test_destroy_while_opening);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (geteuid() != 0) {
        printf("SKIP: test-tnve-nnve-l2 needs root (network namespace, veth, AF_PACKET)\n");
        return 0;
    }
    if (unshare(CLONE_NEWNET) < 0) {
        perror("unshare(CLONE_NEWNET)");
        return 1;
    }
    if (make_topology() < 0)
        return 1;
    static const char *const gen[] = {SRCDIR "/scripts/gen-pki.sh", pki_dir, "nnve", "hv1", NULL};
    if (testutil_pki_create(pki_dir, sizeof pki_dir, "test-tnve-nnve-l2", gen) < 0)
        return 1;
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    testutil_rm_tree(pki_dir);
    return failed ? 1 : 0;
}
