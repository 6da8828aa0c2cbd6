/* test-session.c: two SNCP sessions (client and server) wired back to back in memory, with
 * injected time.  Each side's `output` appends to a buffer that the test delivers to the
 * other side when it pumps, so the test controls exactly what arrives and when.  The PKI is
 * generated at test time by scripts/gen-pki.sh into a temporary directory.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sncp-error.h"
#include "sncp-session.h"
#include "sncp-tls.h"
#include "testutil.h"

static char pki_dir[256];

static struct sncp_tls_ctx *ctx_for(enum sncp_tls_role role, const char *name)
{
    char err[256] = "";
    struct sncp_tls_ctx *c = testutil_tls_ctx(pki_dir, role, name, err, sizeof err);
    ck_assert_msg(c != NULL, "ctx %s: %s", name, err);
    return c;
}

/* ---- one side of the wire ------------------------------------------------------------- */

enum { MAX_RECORDED = 4096 };

struct side {
    const char *label;
    struct sncp_session *s;
    uint8_t *out; /* ciphertext not yet delivered to the other side */
    size_t out_len, out_cap;
    int connected;
    char identity[SNCP_TLS_IDENTITY_MAX];
    int auto_respond; /* answer each request with SUCCESS + LOCAL_TAG(vn_id % 4000 + 1) */
    int n_requests;
    struct sncp_msg *requests; /* copies of the requests not answered automatically */
    int n_responses;
    uint64_t resp_cookie[MAX_RECORDED];
    int resp_err[MAX_RECORDED];
    uint16_t resp_status[MAX_RECORDED];
    struct sncp_msg last_rsp;
    int n_closed;
    int closed_err;
};

static uint64_t now;
static struct sncp_tls_ctx *server_ctx, *client_ctx;
static struct side cli, srv;

static void cb_output(void *ctx, const uint8_t *data, size_t len)
{
    struct side *sd = ctx;
    if (sd->out_len + len > sd->out_cap) {
        size_t cap = sd->out_cap ? sd->out_cap : 65536;
        while (cap < sd->out_len + len)
            cap *= 2;
        sd->out = realloc(sd->out, cap);
        ck_assert_ptr_nonnull(sd->out);
        sd->out_cap = cap;
    }
    memcpy(sd->out + sd->out_len, data, len);
    sd->out_len += len;
}

static void cb_connected(void *ctx, const char *identity)
{
    struct side *sd = ctx;
    sd->connected++;
    snprintf(sd->identity, sizeof sd->identity, "%s", identity);
}

static void cb_request(void *ctx, const struct sncp_msg *req)
{
    struct side *sd = ctx;
    if (sd->auto_respond) {
        struct sncp_msg rsp;
        sncp_msg_init(&rsp, SNCP_MSG_RESPONSE, 0);
        rsp.status = SNCP_STATUS_SUCCESS;
        rsp.tags[0].vid = (uint16_t)(req->vn_id % 4000 + 1);
        rsp.tags[0].pcp = SNCP_PCP_NONE;
        rsp.n_tags = 1;
        sncp_msg_set(&rsp, SNCP_TLV_LOCAL_TAG);
        ck_assert_int_eq(sncp_session_respond(sd->s, req, &rsp, now), 0);
        sd->n_requests++;
        return;
    }
    ck_assert_int_lt(sd->n_requests, MAX_RECORDED);
    sd->requests[sd->n_requests++] = *req;
}

static void cb_response(void *ctx, uint64_t cookie, const struct sncp_msg *rsp, int err)
{
    struct side *sd = ctx;
    ck_assert_int_lt(sd->n_responses, MAX_RECORDED);
    ck_assert_int_eq(rsp == NULL, err != 0);
    sd->resp_cookie[sd->n_responses] = cookie;
    sd->resp_err[sd->n_responses] = err;
    sd->resp_status[sd->n_responses] = rsp ? rsp->status : 0xffff;
    if (rsp)
        sd->last_rsp = *rsp;
    sd->n_responses++;
}

static void cb_closed(void *ctx, int err)
{
    struct side *sd = ctx;
    sd->n_closed++;
    sd->closed_err = err;
}

static const struct sncp_session_cbs cbs = {cb_output, cb_connected, cb_request, cb_response,
                                            cb_closed};

static void side_init(struct side *sd, const char *label, const struct sncp_session_config *cfg)
{
    free(sd->out);
    free(sd->requests);
    memset(sd, 0, sizeof *sd);
    sd->label = label;
    sd->requests = calloc(MAX_RECORDED, sizeof *sd->requests);
    ck_assert_ptr_nonnull(sd->requests);
    sd->s = sncp_session_create(cfg, &cbs, sd);
    ck_assert_ptr_nonnull(sd->s);
}

static void side_free(struct side *sd)
{
    sncp_session_destroy(sd->s);
    free(sd->out);
    free(sd->requests);
    memset(sd, 0, sizeof *sd);
}

/* Delivers what `from` has sent to `to` (unless `drop`).  Returns the bytes moved. */
static size_t deliver(struct side *from, struct side *to, int drop)
{
    size_t n = from->out_len;
    if (!n)
        return 0;
    /* The receiver may output into its own buffer while we feed it; ours is stable. */
    uint8_t *copy = malloc(n);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, from->out, n);
    from->out_len = 0;
    if (!drop && !sncp_session_is_closed(to->s))
        sncp_session_input(to->s, copy, n, now);
    free(copy);
    return n;
}

static void pump(void)
{
    for (int i = 0; i < 100; i++) {
        size_t moved = deliver(&cli, &srv, 0) + deliver(&srv, &cli, 0);
        if (!moved)
            return;
    }
    ck_abort_msg("pump did not settle");
}

static struct sncp_session_config base_cfg(enum sncp_tls_role role)
{
    struct sncp_session_config c;
    memset(&c, 0, sizeof c);
    c.role = role;
    c.tls = role == SNCP_TLS_SERVER ? server_ctx : client_ctx;
    c.keepalive_ms = 1000;
    c.request_timeout_ms = 5000;
    return c;
}

/* Builds both sides with the given configs (NULL: defaults) and completes the handshake. */
static void setup_pair(const struct sncp_session_config *ccfg,
                       const struct sncp_session_config *scfg, int handshake)
{
    struct sncp_session_config c = ccfg ? *ccfg : base_cfg(SNCP_TLS_CLIENT);
    struct sncp_session_config s = scfg ? *scfg : base_cfg(SNCP_TLS_SERVER);
    now = 1000000;
    side_init(&cli, "client", &c);
    side_init(&srv, "server", &s);
    if (!handshake)
        return;
    ck_assert_int_eq(sncp_session_start(srv.s, now), 0);
    ck_assert_int_eq(sncp_session_start(cli.s, now), 0);
    pump();
    ck_assert_int_eq(cli.connected, 1);
    ck_assert_int_eq(srv.connected, 1);
}

static void teardown_pair(void)
{
    side_free(&cli);
    side_free(&srv);
}

static int64_t send_vn_connect(struct side *sd, uint32_t vn, uint64_t cookie)
{
    struct sncp_msg m;
    sncp_msg_init(&m, SNCP_MSG_VN_CONNECT, 12345);
    m.vn_id = vn;
    sncp_msg_set(&m, SNCP_TLV_VN_ID);
    return sncp_session_send(sd->s, &m, cookie, now);
}

static void unchecked_setup(void)
{
    server_ctx = ctx_for(SNCP_TLS_SERVER, "server");
    client_ctx = ctx_for(SNCP_TLS_CLIENT, "client");
}

static void unchecked_teardown(void)
{
    sncp_tls_ctx_destroy(server_ctx);
    sncp_tls_ctx_destroy(client_ctx);
}

/* Writes raw plaintext through a side's TLS engine, bypassing its session's encoder, and
 * delivers the resulting records to the other side. */
static void inject_plaintext(struct side *from, struct side *to, const uint8_t *bytes, size_t len)
{
    struct sncp_tls *t = (struct sncp_tls *)sncp_session_tls(from->s);
    ck_assert_int_eq(sncp_tls_write(t, bytes, len), 0);
    uint8_t buf[4096];
    size_t n;
    while ((n = sncp_tls_drain(t, buf, sizeof buf)) > 0)
        cb_output(from, buf, n);
    deliver(from, to, 0);
}

/* ---- tests ---------------------------------------------------------------------------- */

START_TEST(test_handshake)
{
    struct sncp_session_config c = base_cfg(SNCP_TLS_CLIENT);
    c.expected_peer = "server";
    setup_pair(&c, NULL, 0);
    ck_assert_int_eq(send_vn_connect(&cli, 1, 1), SNCP_E_NOT_ESTABLISHED);
    ck_assert_int_eq(sncp_session_start(srv.s, now), 0);
    ck_assert_uint_eq(srv.out_len, 0); /* the server waits for the ClientHello */
    ck_assert_int_eq(sncp_session_start(cli.s, now), 0);
    ck_assert_uint_gt(cli.out_len, 0);
    ck_assert_int_eq(sncp_session_is_established(cli.s), 0);
    pump();
    ck_assert_int_eq(cli.connected, 1);
    ck_assert_int_eq(srv.connected, 1);
    ck_assert_str_eq(cli.identity, "server");
    ck_assert_str_eq(srv.identity, "client");
    ck_assert_str_eq(sncp_session_peer_identity(srv.s), "client");
    ck_assert_int_eq(sncp_session_is_established(cli.s), 1);
    ck_assert_int_eq(sncp_session_is_established(srv.s), 1);
    ck_assert_uint_gt(sncp_session_stats(cli.s)->bytes_out, 0);
    ck_assert_uint_eq(sncp_session_stats(cli.s)->bytes_out, sncp_session_stats(srv.s)->bytes_in);
    teardown_pair();
}
END_TEST

START_TEST(test_wrong_peer_identity)
{
    struct sncp_session_config c = base_cfg(SNCP_TLS_CLIENT);
    c.expected_peer = "some-other-switch";
    setup_pair(&c, NULL, 0);
    sncp_session_start(srv.s, now);
    sncp_session_start(cli.s, now);
    pump();
    ck_assert_int_eq(cli.connected, 0);
    ck_assert_int_eq(cli.n_closed, 1);
    ck_assert_int_eq(cli.closed_err, SNCP_E_PEER_IDENTITY);
    ck_assert_ptr_nonnull(strstr(sncp_session_error(cli.s), "does not match expected"));
    ck_assert_int_eq(srv.connected, 0);
    ck_assert_int_eq(srv.n_closed, 1);
    teardown_pair();
}
END_TEST

START_TEST(test_request_response)
{
    setup_pair(NULL, NULL, 1);
    int64_t xid = send_vn_connect(&cli, 5000, 0xC00C1E);
    ck_assert_int_gt(xid, 0);
    ck_assert_uint_eq(sncp_session_outstanding(cli.s), 1);
    pump();
    ck_assert_int_eq(srv.n_requests, 1);
    ck_assert_uint_eq(sncp_session_inflight(srv.s), 1);
    const struct sncp_msg *req = &srv.requests[0];
    ck_assert_int_eq(req->type, SNCP_MSG_VN_CONNECT);
    ck_assert_uint_eq(req->xid, (uint32_t)xid);
    ck_assert_uint_eq(req->vn_id, 5000);

    struct sncp_msg rsp;
    sncp_msg_init(&rsp, SNCP_MSG_RESPONSE, 0);
    rsp.status = SNCP_STATUS_SUCCESS;
    rsp.tags[0].vid = 42;
    rsp.tags[0].pcp = SNCP_PCP_NONE;
    rsp.n_tags = 1;
    sncp_msg_set(&rsp, SNCP_TLV_LOCAL_TAG);
    ck_assert_int_eq(sncp_session_respond(srv.s, req, &rsp, now), 0);
    ck_assert_uint_eq(sncp_session_inflight(srv.s), 0);
    pump();
    ck_assert_int_eq(cli.n_responses, 1);
    ck_assert_uint_eq(cli.resp_cookie[0], 0xC00C1E);
    ck_assert_int_eq(cli.resp_err[0], 0);
    ck_assert_int_eq(cli.last_rsp.status, SNCP_STATUS_SUCCESS);
    ck_assert_int_eq(cli.last_rsp.request_type, SNCP_MSG_VN_CONNECT);
    ck_assert_int_eq(cli.last_rsp.n_tags, 1);
    ck_assert_int_eq(cli.last_rsp.tags[0].vid, 42);
    ck_assert_uint_eq(sncp_session_outstanding(cli.s), 0);

    /* Error shorthand. */
    int64_t xid2 = send_vn_connect(&cli, 7, 77);
    ck_assert_int_gt(xid2, xid);
    pump();
    ck_assert_int_eq(sncp_session_respond_error(srv.s, &srv.requests[1], SNCP_E_NO_SUCH_VN,
                                                SNCP_TLV_VN_ID, NULL, now),
                     0);
    pump();
    ck_assert_int_eq(cli.n_responses, 2);
    ck_assert_uint_eq(cli.resp_cookie[1], 77);
    ck_assert_int_eq(cli.last_rsp.status, SNCP_STATUS_NO_SUCH_VN);
    ck_assert_int_eq(cli.last_rsp.error_tlv, SNCP_TLV_VN_ID);
    ck_assert_str_eq(cli.last_rsp.reason, "no such VN");
    ck_assert_uint_eq(sncp_session_stats(srv.s)->status_out[SNCP_STATUS_NO_SUCH_VN], 1);
    ck_assert_uint_eq(sncp_session_stats(cli.s)->status_in[SNCP_STATUS_NO_SUCH_VN], 1);
    ck_assert_uint_eq(sncp_session_stats(cli.s)->msgs_out[SNCP_MSG_VN_CONNECT], 2);

    /* A RESPONSE cannot be sent as a request. */
    struct sncp_msg bad;
    sncp_msg_init(&bad, SNCP_MSG_RESPONSE, 0);
    ck_assert_int_lt(sncp_session_send(cli.s, &bad, 1, now), 0);
    teardown_pair();
}
END_TEST

START_TEST(test_pipelining)
{
    setup_pair(NULL, NULL, 1);
    srv.auto_respond = 1;
    size_t before = cli.out_len;
    for (uint32_t i = 0; i < 1000; i++)
        ck_assert_int_gt(send_vn_connect(&cli, i, 100000 + i), 0);
    ck_assert_uint_gt(cli.out_len, before);
    ck_assert_uint_eq(sncp_session_outstanding(cli.s), 1000);
    pump();
    ck_assert_int_eq(srv.n_requests, 1000);
    ck_assert_int_eq(cli.n_responses, 1000);
    for (int i = 0; i < 1000; i++) {
        ck_assert_uint_eq(cli.resp_cookie[i], 100000 + (uint64_t)i);
        ck_assert_int_eq(cli.resp_err[i], 0);
        ck_assert_int_eq(cli.resp_status[i], SNCP_STATUS_SUCCESS);
    }
    ck_assert_uint_eq(sncp_session_outstanding(cli.s), 0);
    ck_assert_uint_eq(sncp_session_inflight(srv.s), 0);
    teardown_pair();
}
END_TEST

START_TEST(test_cork_batches_output)
{
    setup_pair(NULL, NULL, 1);
    srv.auto_respond = 1;
    /* Uncorked, each send outside a callback is its own TLS record. */
    size_t before = cli.out_len;
    send_vn_connect(&cli, 1, 1);
    size_t one = cli.out_len - before;
    ck_assert_uint_gt(one, 0);
    pump();
    /* Corked, 100 sends produce nothing until the outermost uncork, then fewer bytes than
     * 100 separate records. */
    before = cli.out_len;
    sncp_session_cork(cli.s);
    sncp_session_cork(cli.s);
    for (uint32_t i = 0; i < 100; i++)
        ck_assert_int_gt(send_vn_connect(&cli, i, 1000 + i), 0);
    ck_assert_uint_eq(cli.out_len, before);
    sncp_session_uncork(cli.s);
    ck_assert_uint_eq(cli.out_len, before);
    sncp_session_uncork(cli.s);
    ck_assert_uint_gt(cli.out_len, before);
    ck_assert_uint_lt(cli.out_len - before, 100 * one - 50 * 22);
    sncp_session_uncork(cli.s); /* unbalanced: ignored */
    pump();
    ck_assert_int_eq(cli.n_responses, 101);
    ck_assert_uint_eq(cli.resp_cookie[100], 1099);
    teardown_pair();
}
END_TEST

START_TEST(test_out_of_order)
{
    setup_pair(NULL, NULL, 1);
    enum { N = 50 };
    for (uint32_t i = 0; i < N; i++)
        ck_assert_int_gt(send_vn_connect(&cli, i, 500 + i), 0);
    pump();
    ck_assert_int_eq(srv.n_requests, N);
    ck_assert_uint_eq(sncp_session_inflight(srv.s), N);
    /* Answer odd ones backwards, then even ones backwards. */
    int order[N], k = 0;
    for (int i = N - 1; i >= 0; i--)
        if (i % 2)
            order[k++] = i;
    for (int i = N - 1; i >= 0; i--)
        if (!(i % 2))
            order[k++] = i;
    for (int i = 0; i < N; i++) {
        struct sncp_msg rsp;
        sncp_msg_init(&rsp, SNCP_MSG_RESPONSE, 0);
        rsp.status = SNCP_STATUS_SUCCESS;
        rsp.vn_id = srv.requests[order[i]].vn_id;
        sncp_msg_set(&rsp, SNCP_TLV_VN_ID);
        ck_assert_int_eq(sncp_session_respond(srv.s, &srv.requests[order[i]], &rsp, now), 0);
    }
    pump();
    ck_assert_int_eq(cli.n_responses, N);
    for (int i = 0; i < N; i++)
        ck_assert_uint_eq(cli.resp_cookie[i], 500 + (uint64_t)order[i]);
    ck_assert_uint_eq(sncp_session_outstanding(cli.s), 0);
    teardown_pair();
}
END_TEST

START_TEST(test_request_timeout)
{
    struct sncp_session_config c = base_cfg(SNCP_TLS_CLIENT);
    c.keepalive_ms = 10000; /* no dead-peer verdict inside the request timeout */
    setup_pair(&c, NULL, 1);
    int64_t xid = send_vn_connect(&cli, 9, 909);
    pump();
    ck_assert_int_eq(srv.n_requests, 1);
    uint64_t dl = sncp_session_tick(cli.s, now);
    ck_assert_uint_le(dl, now + 5000);
    now += 4999;
    sncp_session_tick(cli.s, now);
    pump();
    ck_assert_int_eq(cli.n_responses, 0);
    now += 1;
    sncp_session_tick(cli.s, now);
    ck_assert_int_eq(cli.n_responses, 1);
    ck_assert_uint_eq(cli.resp_cookie[0], 909);
    ck_assert_int_eq(cli.resp_err[0], SNCP_E_TIMEOUT);
    ck_assert_uint_eq(sncp_session_stats(cli.s)->timeouts, 1);
    ck_assert_uint_eq(sncp_session_outstanding(cli.s), 0);
    /* The late answer is counted and dropped; the session stays up. */
    ck_assert_int_eq(
        sncp_session_respond_error(srv.s, &srv.requests[0], SNCP_E_INTERNAL, 0, "late", now), 0);
    pump();
    ck_assert_int_eq(cli.n_responses, 1);
    ck_assert_uint_eq(sncp_session_stats(cli.s)->unmatched, 1);
    ck_assert_int_eq(sncp_session_is_established(cli.s), 1);
    (void)xid;
    teardown_pair();
}
END_TEST

START_TEST(test_keepalive_and_dead_peer)
{
    setup_pair(NULL, NULL, 1);
    const struct sncp_session_stats *cs = sncp_session_stats(cli.s);
    const struct sncp_session_stats *ss = sncp_session_stats(srv.s);
    /* Idle for the keepalive interval: one KEEPALIVE each way, never answered. */
    uint64_t dl = sncp_session_tick(cli.s, now);
    ck_assert_uint_eq(dl, now + 1000);
    now += 999;
    sncp_session_tick(cli.s, now);
    ck_assert_uint_eq(cs->msgs_out[SNCP_MSG_KEEPALIVE], 0);
    now += 1;
    sncp_session_tick(cli.s, now);
    sncp_session_tick(srv.s, now);
    ck_assert_uint_eq(cs->msgs_out[SNCP_MSG_KEEPALIVE], 1);
    ck_assert_uint_eq(ss->msgs_out[SNCP_MSG_KEEPALIVE], 1);
    pump();
    ck_assert_uint_eq(ss->msgs_in[SNCP_MSG_KEEPALIVE], 1);
    ck_assert_uint_eq(cs->msgs_in[SNCP_MSG_KEEPALIVE], 1);
    ck_assert_uint_eq(ss->msgs_out[SNCP_MSG_RESPONSE], 0);
    /* Traffic postpones keepalives. */
    send_vn_connect(&cli, 1, 1);
    now += 600;
    sncp_session_tick(cli.s, now);
    ck_assert_uint_eq(cs->msgs_out[SNCP_MSG_KEEPALIVE], 1);

    /* The server goes silent (its output is lost): the client keeps sending keepalives and
     * declares it dead after 3 x 1000 ms without input. */
    uint64_t last_heard = now - 600;
    sncp_session_set_peer_keepalive(cli.s, 0);
    int guard = 0;
    while (cli.n_closed == 0 && guard++ < 100) {
        now += 250;
        sncp_session_tick(cli.s, now);
        deliver(&cli, &srv, 1);
    }
    ck_assert_int_eq(cli.n_closed, 1);
    ck_assert_int_eq(cli.closed_err, SNCP_E_TIMEOUT);
    ck_assert_uint_ge(now - last_heard, 3000);
    ck_assert_uint_lt(now - last_heard, 3250);
    ck_assert_uint_ge(cs->msgs_out[SNCP_MSG_KEEPALIVE], 3);
    ck_assert_ptr_nonnull(strstr(sncp_session_error(cli.s), "silent"));
    /* The outstanding request was flushed once. */
    ck_assert_int_eq(cli.n_responses, 1);
    ck_assert_int_eq(cli.resp_err[0], SNCP_E_CLOSED);
    ck_assert_uint_eq(sncp_session_tick(cli.s, now), UINT64_MAX);
    teardown_pair();
}
END_TEST

START_TEST(test_peer_keepalive_interval)
{
    setup_pair(NULL, NULL, 1);
    sncp_session_set_peer_keepalive(srv.s, 200);
    now += 599;
    sncp_session_tick(srv.s, now);
    ck_assert_int_eq(srv.n_closed, 0);
    now += 1;
    sncp_session_tick(srv.s, now);
    ck_assert_int_eq(srv.n_closed, 1);
    ck_assert_int_eq(srv.closed_err, SNCP_E_TIMEOUT);
    teardown_pair();
}
END_TEST

START_TEST(test_hello_deadline)
{
    struct sncp_session_config scfg = base_cfg(SNCP_TLS_SERVER);
    scfg.hello_timeout_ms = 2500;
    for (int done = 0; done <= 1; done++) {
        setup_pair(NULL, &scfg, 1);
        uint64_t t0 = now;
        ck_assert_uint_le(sncp_session_tick(srv.s, now), t0 + 2500);
        if (done)
            sncp_session_hello_done(srv.s);
        /* Traffic both ways (keepalives, a request) does not move the deadline. */
        send_vn_connect(&cli, 1, 1);
        while (now < t0 + 2499) {
            now = now + 500 < t0 + 2499 ? now + 500 : t0 + 2499;
            sncp_session_tick(cli.s, now);
            sncp_session_tick(srv.s, now);
            pump();
        }
        ck_assert_int_eq(srv.n_closed, 0);
        now = t0 + 2500;
        sncp_session_tick(srv.s, now);
        if (!done) {
            ck_assert_int_eq(srv.n_closed, 1);
            ck_assert_int_eq(srv.closed_err, SNCP_E_TIMEOUT);
            ck_assert_str_eq(sncp_session_error(srv.s),
                             "HELLO not completed within 2500 ms after the TLS handshake");
        } else {
            ck_assert_int_eq(srv.n_closed, 0);
        }
        teardown_pair();
    }
    /* The client side (no hello_timeout_ms) has no deadline. */
    setup_pair(NULL, NULL, 1);
    now += 2900;
    sncp_session_tick(cli.s, now);
    sncp_session_tick(srv.s, now);
    ck_assert_int_eq(cli.n_closed + srv.n_closed, 0);
    teardown_pair();
}
END_TEST

START_TEST(test_handshake_timeout)
{
    setup_pair(NULL, NULL, 0);
    sncp_session_start(cli.s, now);
    uint64_t dl = sncp_session_tick(cli.s, now);
    ck_assert_uint_eq(dl, now + 10000);
    now = dl - 1;
    sncp_session_tick(cli.s, now);
    ck_assert_int_eq(cli.n_closed, 0);
    now = dl;
    ck_assert_uint_eq(sncp_session_tick(cli.s, now), UINT64_MAX);
    ck_assert_int_eq(cli.n_closed, 1);
    ck_assert_int_eq(cli.closed_err, SNCP_E_TIMEOUT);
    teardown_pair();
}
END_TEST

static size_t put_header(uint8_t *b, uint8_t type, uint32_t total, uint32_t xid)
{
    b[0] = 1;
    b[1] = type;
    b[2] = 0;
    b[3] = 0;
    b[4] = (uint8_t)(total >> 24);
    b[5] = (uint8_t)(total >> 16);
    b[6] = (uint8_t)(total >> 8);
    b[7] = (uint8_t)total;
    b[8] = (uint8_t)(xid >> 24);
    b[9] = (uint8_t)(xid >> 16);
    b[10] = (uint8_t)(xid >> 8);
    b[11] = (uint8_t)xid;
    return 12;
}

START_TEST(test_malformed_answered)
{
    setup_pair(NULL, NULL, 1);
    /* A real request the server leaves unanswered gives us an xid the client waits on. */
    int64_t xid = send_vn_connect(&cli, 3, 333);
    pump();
    ck_assert_int_eq(srv.n_requests, 1);

    /* VN_CONNECT whose VN_ID TLV is 2 bytes long: invalid TLV, xid from the header. */
    uint8_t b[64];
    size_t n = put_header(b, SNCP_MSG_VN_CONNECT, 18, (uint32_t)xid);
    const uint8_t tlv[] = {0x00, 0x07, 0x00, 0x02, 0x00, 0x01};
    memcpy(b + n, tlv, sizeof tlv);
    inject_plaintext(&cli, &srv, b, n + sizeof tlv);
    pump();
    ck_assert_int_eq(srv.n_requests, 1); /* not delivered */
    ck_assert_uint_eq(sncp_session_stats(srv.s)->malformed, 1);
    ck_assert_int_eq(cli.n_responses, 1);
    ck_assert_uint_eq(cli.resp_cookie[0], 333);
    ck_assert_int_eq(cli.last_rsp.status, SNCP_STATUS_MALFORMED);
    ck_assert_int_eq(cli.last_rsp.error_tlv, SNCP_TLV_VN_ID);
    ck_assert_int_eq(cli.last_rsp.request_type, SNCP_MSG_VN_CONNECT);
    ck_assert_str_ne(cli.last_rsp.reason, "");
    ck_assert_uint_eq(sncp_session_inflight(srv.s), 1);

    /* Unknown critical TLV. */
    xid = send_vn_connect(&cli, 4, 444);
    pump();
    n = put_header(b, SNCP_MSG_VN_CONNECT, 12 + 8 + 4, (uint32_t)xid);
    const uint8_t tlv2[] = {0x00, 0x07, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0xF0, 0x00, 0x00, 0x00};
    memcpy(b + n, tlv2, sizeof tlv2);
    inject_plaintext(&cli, &srv, b, n + sizeof tlv2);
    pump();
    ck_assert_int_eq(cli.n_responses, 2);
    ck_assert_uint_eq(cli.resp_cookie[1], 444);
    ck_assert_int_eq(cli.last_rsp.status, SNCP_STATUS_CRITICAL_TLV);
    ck_assert_int_eq(cli.last_rsp.error_tlv, 0x7000);

    /* A malformed RESPONSE is dropped, not answered. */
    n = put_header(b, SNCP_MSG_RESPONSE, 12, 999);
    inject_plaintext(&cli, &srv, b, n);
    pump();
    ck_assert_uint_eq(sncp_session_stats(srv.s)->malformed, 3);
    ck_assert_int_eq(cli.n_responses, 2);

    /* The session is still up and works. */
    srv.auto_respond = 1;
    ck_assert_int_gt(send_vn_connect(&cli, 8, 888), 0);
    pump();
    ck_assert_int_eq(cli.n_responses, 3);
    ck_assert_uint_eq(cli.resp_cookie[2], 888);
    ck_assert_int_eq(cli.resp_status[2], SNCP_STATUS_SUCCESS);
    ck_assert_int_eq(sncp_session_is_established(srv.s), 1);
    ck_assert_int_eq(srv.n_closed, 0);
    teardown_pair();
}
END_TEST

/* A RESPONSE that does not decode ends its request at once with SNCP_E_MALFORMED (not at
 * the request timeout); the session stays up and later requests work. */
START_TEST(test_malformed_response_fails_request)
{
    setup_pair(NULL, NULL, 1);
    int64_t xid = send_vn_connect(&cli, 5, 555);
    pump();
    ck_assert_int_eq(srv.n_requests, 1);
    /* RESPONSE with a 2-byte STATUS TLV (STATUS is a u16 but say length 1). */
    uint8_t b[64];
    size_t n = put_header(b, SNCP_MSG_RESPONSE, 12 + 5, (uint32_t)xid);
    const uint8_t tlv[] = {0x00, 0x0d, 0x00, 0x01, 0x00};
    memcpy(b + n, tlv, sizeof tlv);
    inject_plaintext(&srv, &cli, b, n + sizeof tlv);
    pump();
    ck_assert_int_eq(cli.n_responses, 1);
    ck_assert_uint_eq(cli.resp_cookie[0], 555);
    ck_assert_int_eq(cli.resp_err[0], SNCP_E_MALFORMED);
    ck_assert_uint_eq(sncp_session_outstanding(cli.s), 0);
    ck_assert_uint_eq(sncp_session_stats(cli.s)->malformed, 1);
    ck_assert_uint_eq(sncp_session_stats(cli.s)->timeouts, 0);
    /* The server's real answer now is late: counted as unmatched, no second callback. */
    ck_assert_int_eq(
        sncp_session_respond_error(srv.s, &srv.requests[0], SNCP_E_INTERNAL, 0, "late", now), 0);
    pump();
    ck_assert_int_eq(cli.n_responses, 1);
    ck_assert_uint_eq(sncp_session_stats(cli.s)->unmatched, 1);
    srv.auto_respond = 1;
    ck_assert_int_gt(send_vn_connect(&cli, 6, 666), 0);
    pump();
    ck_assert_int_eq(cli.n_responses, 2);
    ck_assert_int_eq(cli.resp_status[1], SNCP_STATUS_SUCCESS);
    ck_assert_int_eq(cli.n_closed + srv.n_closed, 0);
    teardown_pair();
}
END_TEST

/* On the accepting side (a HELLO deadline is set), a HELLO that does not decode is answered
 * and then ends the session; after sncp_session_hello_done() a bad second HELLO does not. */
START_TEST(test_malformed_hello_closes)
{
    struct sncp_session_config scfg = base_cfg(SNCP_TLS_SERVER);
    scfg.hello_timeout_ms = 10000;
    for (int done = 0; done <= 1; done++) {
        setup_pair(NULL, &scfg, 1);
        if (done)
            sncp_session_hello_done(srv.s);
        int64_t xid = send_vn_connect(&cli, 1, 77); /* an xid the client waits on */
        ck_assert_int_gt(xid, 0);
        pump();
        ck_assert_int_eq(srv.n_requests, 1); /* left unanswered */
        /* HELLO with a VERSION_RANGE TLV of length 1. */
        uint8_t b[64];
        size_t n = put_header(b, SNCP_MSG_HELLO, 12 + 5, (uint32_t)xid);
        const uint8_t tlv[] = {0x00, 0x01, 0x00, 0x01, 0x01};
        memcpy(b + n, tlv, sizeof tlv);
        inject_plaintext(&cli, &srv, b, n + sizeof tlv);
        pump();
        ck_assert_int_eq(srv.n_requests, 1); /* the HELLO was not delivered */
        ck_assert_int_eq(cli.n_responses, 1);
        ck_assert_uint_eq(cli.resp_cookie[0], 77);
        ck_assert_int_eq(cli.resp_status[0], SNCP_STATUS_MALFORMED);
        if (!done) {
            ck_assert_int_eq(srv.n_closed, 1);
            ck_assert_int_eq(srv.closed_err, SNCP_E_MALFORMED);
            ck_assert_ptr_nonnull(strstr(sncp_session_error(srv.s), "HELLO failed"));
            ck_assert_int_eq(cli.n_closed, 1); /* the server's close_notify arrived */
        } else {
            ck_assert_int_eq(srv.n_closed + cli.n_closed, 0);
        }
        teardown_pair();
    }
}
END_TEST

START_TEST(test_random_bodies_never_break_session)
{
    /* Well-framed messages with random types and random TLV bytes: each one is delivered,
     * answered as malformed, or dropped; the session stays up and counts them. */
    setup_pair(NULL, NULL, 1);
    srv.auto_respond = 1;
    srand(777);
    uint8_t b[512];
    for (int i = 0; i < 3000; i++) {
        size_t body = (size_t)(rand() % 120);
        uint8_t type = (uint8_t)(rand() % 16);
        size_t n = put_header(b, type, (uint32_t)(12 + body), (uint32_t)rand());
        for (size_t k = 0; k < body; k++) {
            /* Bias towards plausible TLV headers so the decoder goes deep. */
            int r = rand();
            b[n + k] = (k % 4 == 0) ? 0 : (k % 4 == 1) ? (uint8_t)(r % 24) : (uint8_t)r;
        }
        inject_plaintext(&cli, &srv, b, n + body);
        deliver(&srv, &cli, 0);
        ck_assert_int_eq(srv.n_closed, 0);
    }
    pump();
    const struct sncp_session_stats *st = sncp_session_stats(srv.s);
    ck_assert_uint_gt(st->malformed, 1000);
    ck_assert_int_eq(sncp_session_is_established(srv.s), 1);
    ck_assert_uint_eq(sncp_session_inflight(srv.s), 0);
    /* Still fully working. */
    int64_t x = send_vn_connect(&cli, 5, 5);
    ck_assert_int_gt(x, 0);
    pump();
    ck_assert_int_eq(cli.resp_status[cli.n_responses - 1], SNCP_STATUS_SUCCESS);
    ck_assert_uint_eq(cli.resp_cookie[cli.n_responses - 1], 5);
    teardown_pair();
}
END_TEST

START_TEST(test_framing_error_closes)
{
    setup_pair(NULL, NULL, 1);
    send_vn_connect(&srv, 1, 11); /* the server has one outstanding request */
    uint8_t b[16];
    size_t n = put_header(b, SNCP_MSG_VN_CONNECT, 5, 1); /* length below the header */
    inject_plaintext(&cli, &srv, b, n);
    ck_assert_int_eq(srv.n_closed, 1);
    ck_assert_int_eq(srv.closed_err, SNCP_E_MALFORMED);
    ck_assert_ptr_nonnull(strstr(sncp_session_error(srv.s), "framing"));
    ck_assert_int_eq(srv.n_responses, 1);
    ck_assert_int_eq(srv.resp_err[0], SNCP_E_CLOSED);
    ck_assert_int_eq(sncp_session_is_closed(srv.s), 1);
    ck_assert_int_eq(sncp_session_input(srv.s, b, 1, now), SNCP_E_CLOSED);
    teardown_pair();
}
END_TEST

START_TEST(test_busy_beyond_max_inflight)
{
    struct sncp_session_config s = base_cfg(SNCP_TLS_SERVER);
    s.max_inflight = 4;
    setup_pair(NULL, &s, 1);
    for (int i = 0; i < 6; i++)
        ck_assert_int_gt(send_vn_connect(&cli, (uint32_t)i, (uint64_t)i), 0);
    pump();
    ck_assert_int_eq(srv.n_requests, 4);
    ck_assert_uint_eq(sncp_session_inflight(srv.s), 4);
    ck_assert_uint_eq(sncp_session_stats(srv.s)->busy_rejected, 2);
    ck_assert_int_eq(cli.n_responses, 2);
    ck_assert_uint_eq(cli.resp_cookie[0], 4);
    ck_assert_uint_eq(cli.resp_cookie[1], 5);
    ck_assert_int_eq(cli.resp_status[0], SNCP_STATUS_BUSY);
    ck_assert_int_eq(cli.last_rsp.status, SNCP_STATUS_BUSY);
    ck_assert_int_ne(sncp_msg_has(&cli.last_rsp, SNCP_TLV_RETRY_AFTER), 0);
    ck_assert_uint_gt(cli.last_rsp.retry_after_ms, 0);
    /* Answering one makes room for one more. */
    ck_assert_int_eq(sncp_session_respond_error(srv.s, &srv.requests[0], 0, 0, NULL, now), 0);
    ck_assert_uint_eq(sncp_session_inflight(srv.s), 3);
    ck_assert_int_gt(send_vn_connect(&cli, 10, 10), 0);
    pump();
    ck_assert_int_eq(srv.n_requests, 5);
    ck_assert_uint_eq(sncp_session_stats(srv.s)->busy_rejected, 2);
    teardown_pair();
}
END_TEST

START_TEST(test_max_outstanding)
{
    struct sncp_session_config c = base_cfg(SNCP_TLS_CLIENT);
    c.max_outstanding = 3;
    setup_pair(&c, NULL, 1);
    for (int i = 0; i < 3; i++)
        ck_assert_int_gt(send_vn_connect(&cli, 1, (uint64_t)i), 0);
    size_t out = cli.out_len;
    ck_assert_int_eq(send_vn_connect(&cli, 1, 99), SNCP_E_BUSY);
    ck_assert_uint_eq(cli.out_len, out);
    pump();
    ck_assert_int_eq(sncp_session_respond_error(srv.s, &srv.requests[1], 0, 0, NULL, now), 0);
    pump();
    ck_assert_int_eq(cli.n_responses, 1);
    ck_assert_int_gt(send_vn_connect(&cli, 1, 98), 0);
    ck_assert_int_eq(send_vn_connect(&cli, 1, 97), SNCP_E_BUSY);
    teardown_pair();
}
END_TEST

/* Random answer order over many requests: the outstanding table (hash with deletions that
 * wrap around) always pairs each response with its own request. */
static uint64_t last_pair_xid, last_pair_cookie;
static int pair_mismatch;

static void check_pair(void *ctx, uint64_t cookie, const struct sncp_msg *rsp, int err)
{
    cb_response(ctx, cookie, rsp, err);
    if (!rsp || cookie != (uint64_t)rsp->xid * 7 + 1)
        pair_mismatch++;
    last_pair_xid = rsp ? rsp->xid : 0;
    last_pair_cookie = cookie;
}

/* A connected pair whose client allows max_outstanding requests and checks each response
 * against its cookie (check_pair); no keepalive gets in the way. */
static void setup_checking_pair(uint32_t max_outstanding)
{
    struct sncp_session_config c = base_cfg(SNCP_TLS_CLIENT);
    c.max_outstanding = max_outstanding;
    c.keepalive_ms = 100000;
    struct sncp_session_config sv = base_cfg(SNCP_TLS_SERVER);
    sv.keepalive_ms = 100000;
    setup_pair(&c, &sv, 1);
    /* Swap in a response callback that checks the pairing. */
    struct sncp_session_cbs checking = cbs;
    checking.response = check_pair;
    sncp_session_destroy(cli.s);
    cli.s = sncp_session_create(&c, &checking, &cli);
    sncp_session_destroy(srv.s);
    srv.s = sncp_session_create(&sv, &cbs, &srv);
    srv.connected = cli.connected = 0;
    sncp_session_start(srv.s, now);
    sncp_session_start(cli.s, now);
    pump();
    ck_assert_int_eq(cli.connected, 1);
    pair_mismatch = 0;
}

/* Sends SYNC_BEGIN requests until target are outstanding, each cookie encoding the xid the
 * session is going to assign (xid * 7 + 1, see check_pair); *sent counts them. */
static void fill_outstanding(uint32_t target, int *sent)
{
    while (sncp_session_outstanding(cli.s) < target) {
        struct sncp_msg m;
        sncp_msg_init(&m, SNCP_MSG_SYNC_BEGIN, 0);
        uint32_t expect = (uint32_t)*sent + 1;
        ck_assert_int_eq(sncp_session_send(cli.s, &m, (uint64_t)expect * 7 + 1, now), expect);
        (*sent)++;
    }
    pump();
}

/* The server answers `count` of the requests it holds (at most all), picked at random;
 * returns how many it answered. */
static int answer_random(int count)
{
    int done = 0;
    for (; done < count && srv.n_requests > 0; done++) {
        int i = rand() % srv.n_requests;
        ck_assert_int_eq(sncp_session_respond_error(srv.s, &srv.requests[i], 0, 0, NULL, now), 0);
        srv.requests[i] = srv.requests[--srv.n_requests];
    }
    pump();
    return done;
}

START_TEST(test_random_order_stress)
{
    setup_checking_pair(64);

    srand(12345);
    int sent = 0, answered = 0;
    while (answered < 20000) {
        fill_outstanding(64, &sent);
        /* Answer a random half of what the server holds, in random order. */
        answered += answer_random(srv.n_requests / 2 + 1);
        cli.n_responses = 0;
    }
    ck_assert_int_eq(pair_mismatch, 0);
    ck_assert_uint_eq(sncp_session_stats(cli.s)->unmatched, 0);
    teardown_pair();
}
END_TEST

/* The request table starts small, grows while requests are outstanding (in any answer
 * order) and is released by a tick once none is: every response still finds its request,
 * and a request sent after the release works. */
START_TEST(test_outstanding_table_grows_and_shrinks)
{
    setup_checking_pair(1000);
    srand(777);
    int sent = 0, answered = 0;
    for (int round = 0; round < 3; round++) {
        /* 10, 100, then 1000 outstanding: each round grows the table past the last.  A
         * random third is answered, the rest stays outstanding across the next growth. */
        fill_outstanding(round == 0 ? 10 : round == 1 ? 100 : 1000, &sent);
        answered += answer_random(srv.n_requests / 3);
    }
    answered += answer_random(srv.n_requests);
    ck_assert_int_eq(answered, sent);
    ck_assert_uint_eq(sncp_session_outstanding(cli.s), 0);
    ck_assert_int_eq(pair_mismatch, 0);
    ck_assert_uint_eq(sncp_session_stats(cli.s)->unmatched, 0);
    /* A tick with nothing outstanding releases the table; the next request allocates again. */
    now += 10;
    sncp_session_tick(cli.s, now);
    fill_outstanding(1, &sent);
    ck_assert_int_eq(srv.n_requests, 1);
    ck_assert_int_eq(answer_random(1), 1);
    ck_assert_uint_eq(sncp_session_outstanding(cli.s), 0);
    ck_assert_int_eq(pair_mismatch, 0);
    teardown_pair();
}
END_TEST

/* Each side's output is fed to the other side at once, from inside the output callback, so
 * a session's input runs nested in its peer's call and, through the answers, in its own:
 * the per-call buffers must not be shared between the nested calls. */
static struct side *nested_peer(struct side *sd)
{
    return sd == &cli ? &srv : &cli;
}

static void cb_output_nested(void *ctx, const uint8_t *data, size_t len)
{
    struct side *to = nested_peer(ctx);
    uint8_t *copy = malloc(len);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, data, len);
    sncp_session_input(to->s, copy, len, now);
    free(copy);
}

START_TEST(test_nested_delivery)
{
    setup_pair(NULL, NULL, 1);
    struct sncp_session_cbs nested = cbs;
    nested.output = cb_output_nested;
    sncp_session_destroy(cli.s);
    sncp_session_destroy(srv.s);
    struct sncp_session_config cc = base_cfg(SNCP_TLS_CLIENT), sc = base_cfg(SNCP_TLS_SERVER);
    cli.s = sncp_session_create(&cc, &nested, &cli);
    srv.s = sncp_session_create(&sc, &nested, &srv);
    srv.connected = cli.connected = 0;
    cli.n_responses = 0;
    srv.auto_respond = 1;
    sncp_session_start(srv.s, now);
    sncp_session_start(cli.s, now);
    ck_assert_int_eq(cli.connected, 1);
    ck_assert_int_eq(srv.connected, 1);
    for (int round = 0; round < 20; round++) {
        sncp_session_cork(cli.s);
        for (uint32_t i = 0; i < 50; i++)
            ck_assert_int_gt(send_vn_connect(&cli, 5000 + i, 1000 * (uint64_t)round + i), 0);
        sncp_session_uncork(cli.s);
    }
    ck_assert_int_eq(srv.n_requests, 1000);
    ck_assert_int_eq(cli.n_responses, 1000);
    for (int i = 0; i < 1000; i++) {
        ck_assert_uint_eq(cli.resp_cookie[i], 1000 * (uint64_t)(i / 50) + (uint64_t)(i % 50));
        ck_assert_int_eq(cli.resp_status[i], SNCP_STATUS_SUCCESS);
    }
    ck_assert_int_eq(cli.n_closed + srv.n_closed, 0);
    teardown_pair();
}
END_TEST

START_TEST(test_close_flushes_outstanding)
{
    setup_pair(NULL, NULL, 1);
    for (int i = 0; i < 5; i++)
        send_vn_connect(&cli, 1, 700 + (uint64_t)i);
    pump();
    ck_assert_int_eq(srv.n_requests, 5);
    sncp_session_close(cli.s, now);
    ck_assert_int_eq(cli.n_closed, 1);
    ck_assert_int_eq(cli.closed_err, 0);
    ck_assert_int_eq(cli.n_responses, 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_uint_eq(cli.resp_cookie[i], 700 + (uint64_t)i);
        ck_assert_int_eq(cli.resp_err[i], SNCP_E_CLOSED);
    }
    ck_assert_uint_eq(sncp_session_outstanding(cli.s), 0);
    /* Nothing more after the close, whatever happens. */
    ck_assert_int_eq(send_vn_connect(&cli, 1, 1), SNCP_E_CLOSED);
    sncp_session_close(cli.s, now);
    sncp_session_transport_closed(cli.s, -ECONNRESET, now);
    ck_assert_uint_eq(sncp_session_tick(cli.s, now + 100000), UINT64_MAX);
    ck_assert_int_eq(cli.n_closed, 1);
    ck_assert_int_eq(cli.n_responses, 5);
    /* The server sees an orderly close (close_notify). */
    pump();
    ck_assert_int_eq(srv.n_closed, 1);
    ck_assert_int_eq(srv.closed_err, 0);
    ck_assert_int_eq(sncp_session_respond_error(srv.s, &srv.requests[0], 0, 0, NULL, now),
                     SNCP_E_CLOSED);
    teardown_pair();
}
END_TEST

START_TEST(test_transport_closed)
{
    setup_pair(NULL, NULL, 1);
    send_vn_connect(&cli, 1, 5);
    sncp_session_transport_closed(cli.s, -ECONNRESET, now);
    ck_assert_int_eq(cli.n_closed, 1);
    ck_assert_int_eq(cli.closed_err, -ECONNRESET);
    ck_assert_int_eq(cli.n_responses, 1);
    ck_assert_int_eq(cli.resp_err[0], SNCP_E_CLOSED);
    sncp_session_transport_closed(srv.s, 0, now);
    ck_assert_int_eq(srv.closed_err, SNCP_E_PEER_CLOSED);
    teardown_pair();
}
END_TEST

static Suite *session_suite(void)
{
    Suite *s = suite_create("sncp-session");
    TCase *tc = tcase_create("session");
    tcase_add_unchecked_fixture(tc, unchecked_setup, unchecked_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_handshake);
    tcase_add_test(tc, test_hello_deadline);
    tcase_add_test(tc, test_wrong_peer_identity);
    tcase_add_test(tc, test_request_response);
    tcase_add_test(tc, test_pipelining);
    tcase_add_test(tc, test_cork_batches_output);
    tcase_add_test(tc, test_out_of_order);
    tcase_add_test(tc, test_request_timeout);
    tcase_add_test(tc, test_keepalive_and_dead_peer);
    tcase_add_test(tc, test_peer_keepalive_interval);
    tcase_add_test(tc, test_handshake_timeout);
    tcase_add_test(tc, test_malformed_answered);
    tcase_add_test(tc, test_malformed_response_fails_request);
    tcase_add_test(tc, test_malformed_hello_closes);
    tcase_add_test(tc, test_random_bodies_never_break_session);
    tcase_add_test(tc, test_framing_error_closes);
    tcase_add_test(tc, test_busy_beyond_max_inflight);
    tcase_add_test(tc, test_max_outstanding);
    tcase_add_test(tc, test_random_order_stress);
    tcase_add_test(tc, test_outstanding_table_grows_and_shrinks);
    tcase_add_test(tc, test_nested_delivery);
    tcase_add_test(tc, test_close_flushes_outstanding);
    tcase_add_test(tc, test_transport_closed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    static const char *const gen[] = {SRCDIR "/scripts/gen-pki.sh", pki_dir, "server", "client",
                                      NULL};
    if (testutil_pki_create(pki_dir, sizeof pki_dir, "sncp-test-session", gen) < 0)
        return 1;
    SRunner *sr = srunner_create(session_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    testutil_rm_tree(pki_dir);
    return failed ? 1 : 0;
}
