/* test-l2-session.c: SNCP sessions (TLS 1.3, mutual certificates) over the Layer-2 channel.
 *
 * Two sncp_session instances talk through two sncp_l2 connections joined by a simulated
 * link that loses, duplicates and reorders frames (seeded PRNG, injected time): the same
 * session layer that runs over TCP runs unchanged over L2.  The PKI is generated at test
 * time by scripts/gen-pki.sh into a private temporary directory.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sncp-l2.h"
#include "sncp-session.h"
#include "sncp-tls.h"
#include "testutil.h"

static char pki_dir[256];
static struct sncp_tls_ctx *server_ctx, *client_ctx, *rogue_ctx;

static struct sncp_tls_ctx *ctx_for(enum sncp_tls_role role, const char *name)
{
    char err[256] = "";
    struct sncp_tls_ctx *c = testutil_tls_ctx(pki_dir, role, name, err, sizeof err);
    if (!c) {
        fprintf(stderr, "tls ctx %s: %s\n", name, err);
    }
    return c;
}

/* ---- one end: a session on an L2 connection ---- */

enum { N_REQUESTS = 1000, MAX_OUTSTANDING = 50 };

struct pkt {
    uint64_t at, order;
    int to;
    size_t len;
    uint8_t data[SNCP_L2_MAX_MTU];
};

struct side {
    int idx;
    struct sncp_session_config scfg;
    struct sncp_l2_config lcfg;
    struct sncp_session *s;
    struct sncp_l2_conn *c;
    uint8_t *pend; /* session output the L2 send buffer did not take yet */
    size_t pend_len, pend_cap;
    int connected;
    char identity[SNCP_TLS_IDENTITY_MAX];
    int sess_closed, sess_err;
    int l2_closed, l2_err;
    int n_requests;
    uint64_t n_sent, n_responses, n_failed;
    int order_errors;
};

static struct {
    struct side sd[2]; /* 0: client (tNVE, opens), 1: server (nNVE, accepts) */
    uint64_t now;
    uint64_t rng;
    uint32_t loss_ppm, dup_ppm, reorder_ppm;
    uint32_t latency_ms, jitter_ms;
    struct pkt **q;
    size_t nq, capq;
    uint64_t enqueued;
    int expect_failure;
} w;

static uint32_t rnd(void)
{
    w.rng ^= w.rng >> 12;
    w.rng ^= w.rng << 25;
    w.rng ^= w.rng >> 27;
    return (uint32_t)((w.rng * UINT64_C(2685821657736338717)) >> 32);
}

static int chance(uint32_t ppm)
{
    return ppm && rnd() % 1000000 < ppm;
}

static void link_send(int to, const uint8_t *data, size_t len)
{
    if (chance(w.loss_ppm)) {
        return;
    }
    int copies = chance(w.dup_ppm) ? 2 : 1;
    for (int i = 0; i < copies; i++) {
        if (w.nq == w.capq) {
            w.capq = w.capq ? 2 * w.capq : 64;
            w.q = realloc(w.q, w.capq * sizeof *w.q);
            ck_assert_ptr_nonnull(w.q);
        }
        struct pkt *p = malloc(sizeof *p);
        ck_assert_ptr_nonnull(p);
        p->at = w.now + w.latency_ms;
        if (w.jitter_ms && chance(w.reorder_ppm)) {
            p->at += 1 + rnd() % w.jitter_ms;
        }
        p->order = w.enqueued++;
        p->to = to;
        p->len = len;
        memcpy(p->data, data, len);
        w.q[w.nq++] = p;
    }
}

/* Hands session output to L2; what does not fit waits in pend for `writable`. */
static void side_flush(struct side *sd)
{
    if (!sd->pend_len || !sd->c || sncp_l2_conn_state(sd->c) != SNCP_L2_STATE_ESTABLISHED) {
        return;
    }
    int64_t n = sncp_l2_conn_send(sd->c, sd->pend, sd->pend_len, w.now);
    ck_assert_int_ge(n, 0);
    memmove(sd->pend, sd->pend + n, sd->pend_len - (size_t)n);
    sd->pend_len -= (size_t)n;
}

static void s_output(void *ctx, const uint8_t *data, size_t len)
{
    struct side *sd = ctx;
    if (sd->pend_len + len > sd->pend_cap) {
        sd->pend_cap = (sd->pend_len + len) * 2;
        sd->pend = realloc(sd->pend, sd->pend_cap);
        ck_assert_ptr_nonnull(sd->pend);
    }
    memcpy(sd->pend + sd->pend_len, data, len);
    sd->pend_len += len;
    side_flush(sd);
}

static void s_connected(void *ctx, const char *identity)
{
    struct side *sd = ctx;
    sd->connected++;
    snprintf(sd->identity, sizeof sd->identity, "%s", identity);
}

static void s_request(void *ctx, const struct sncp_msg *req)
{
    struct side *sd = ctx;
    struct sncp_msg rsp;
    sncp_msg_init(&rsp, SNCP_MSG_RESPONSE, 0);
    rsp.status = SNCP_STATUS_SUCCESS;
    rsp.vn_id = req->vn_id;
    sncp_msg_set(&rsp, SNCP_TLV_VN_ID);
    rsp.tags[0].vid = (uint16_t)(req->vn_id % 4000 + 1);
    rsp.tags[0].pcp = SNCP_PCP_NONE;
    rsp.n_tags = 1;
    sncp_msg_set(&rsp, SNCP_TLV_LOCAL_TAG);
    ck_assert_int_eq(sncp_session_respond(sd->s, req, &rsp, w.now), 0);
    sd->n_requests++;
}

static void s_response(void *ctx, uint64_t cookie, const struct sncp_msg *rsp, int err)
{
    struct side *sd = ctx;
    if (err && w.expect_failure) {
        sd->n_failed++;
        return;
    }
    ck_assert_msg(err == 0, "request %" PRIu64 " failed: %s", cookie, sncp_strerror(err));
    ck_assert_ptr_nonnull(rsp);
    /* Exactly once and in order: the n-th response answers the n-th request. */
    if (cookie != sd->n_responses || rsp->vn_id != cookie + 1 ||
        rsp->tags[0].vid != (cookie + 1) % 4000 + 1) {
        sd->order_errors++;
    }
    sd->n_responses++;
}

static void s_closed(void *ctx, int err)
{
    struct side *sd = ctx;
    ck_assert_int_eq(sd->sess_closed, 0);
    sd->sess_closed = 1;
    sd->sess_err = err;
    /* As a daemon would: the session is over, so is its transport (after close_notify). */
    if (sd->c) {
        sncp_l2_conn_close(sd->c, w.now);
    }
}

static const struct sncp_session_cbs s_cbs = {s_output, s_connected, s_request, s_response,
                                              s_closed};

static void l_output(void *ctx, const uint8_t *frame, size_t len)
{
    struct side *sd = ctx;
    link_send(1 - sd->idx, frame, len);
}

static void l_established(void *ctx)
{
    struct side *sd = ctx;
    ck_assert_int_eq(sncp_session_start(sd->s, w.now), 0);
}

static void l_data(void *ctx, const uint8_t *data, size_t len)
{
    struct side *sd = ctx;
    if (!sncp_session_is_closed(sd->s)) {
        (void)sncp_session_input(sd->s, data, len, w.now);
    }
}

static void l_writable(void *ctx)
{
    side_flush(ctx);
}

static void l_closed(void *ctx, int err)
{
    struct side *sd = ctx;
    ck_assert_int_eq(sd->l2_closed, 0);
    sd->l2_closed = 1;
    sd->l2_err = err;
    if (!sncp_session_is_closed(sd->s)) {
        sncp_session_transport_closed(sd->s, err, w.now);
    }
}

static const struct sncp_l2_cbs l_cbs = {l_output, l_established, l_data, l_writable, l_closed};

static void world_init(uint64_t seed, struct sncp_tls_ctx *client_tls)
{
    memset(&w, 0, sizeof w);
    w.rng = seed * 0x9E3779B97F4A7C15ull + 1;
    w.now = 5000;
    w.latency_ms = 1;
    w.jitter_ms = 5;
    for (int i = 0; i < 2; i++) {
        struct side *sd = &w.sd[i];
        sd->idx = i;
        sd->scfg.role = i == 0 ? SNCP_TLS_CLIENT : SNCP_TLS_SERVER;
        sd->scfg.tls = i == 0 ? client_tls : server_ctx;
        sd->scfg.expected_peer = i == 0 ? "server" : NULL;
        sd->s = sncp_session_create(&sd->scfg, &s_cbs, sd);
        ck_assert_ptr_nonnull(sd->s);
        sd->lcfg.local_id = 0xa000 + (uint32_t)i;
        sd->lcfg.initial_seq = (uint32_t)(seed * 7919);
        sd->lcfg.dead_ms = 60000;
    }
}

static void world_free(void)
{
    for (size_t i = 0; i < w.nq; i++) {
        free(w.q[i]);
    }
    free(w.q);
    for (int i = 0; i < 2; i++) {
        sncp_session_destroy(w.sd[i].s);
        sncp_l2_conn_destroy(w.sd[i].c);
        free(w.sd[i].pend);
    }
}

static void deliver(struct pkt *p)
{
    struct side *sd = &w.sd[p->to];
    struct sncp_l2_frame f;
    ck_assert_int_eq(sncp_l2_frame_decode(p->data, p->len, &f), 0);
    if (sd->c && sncp_l2_conn_state(sd->c) != SNCP_L2_STATE_CLOSED) {
        (void)sncp_l2_conn_input(sd->c, &f, w.now);
        return;
    }
    if (!sd->c && p->to == 1 && f.type == SNCP_L2_OPEN) {
        ck_assert_int_eq(sncp_l2_conn_create(&sd->lcfg, &l_cbs, sd, &sd->c), 0);
        ck_assert_int_eq(sncp_l2_conn_accept(sd->c, &f, w.now), 0);
        return;
    }
    uint8_t buf[SNCP_L2_HEADER_LEN];
    int n = sncp_l2_reply_unknown(&f, buf, sizeof buf);
    ck_assert_int_ge(n, 0);
    if (n > 0) {
        link_send(1 - p->to, buf, (size_t)n);
    }
}

/* The client keeps up to MAX_OUTSTANDING VN_CONNECT requests in flight. */
static void client_send(void)
{
    struct side *cl = &w.sd[0];
    while (cl->connected && !cl->sess_closed && cl->n_sent < N_REQUESTS &&
           cl->n_sent - cl->n_responses < MAX_OUTSTANDING) {
        struct sncp_msg m;
        sncp_msg_init(&m, SNCP_MSG_VN_CONNECT, 0);
        m.vn_id = (uint32_t)cl->n_sent + 1;
        sncp_msg_set(&m, SNCP_TLV_VN_ID);
        int64_t xid = sncp_session_send(cl->s, &m, cl->n_sent, w.now);
        ck_assert_int_gt(xid, 0);
        cl->n_sent++;
    }
}

typedef int world_cond(void);

static int world_run(world_cond *cond, uint64_t limit_ms)
{
    uint64_t limit = w.now + limit_ms;
    for (;;) {
        client_send();
        if (cond()) {
            return 1;
        }
        uint64_t next = UINT64_MAX;
        for (int i = 0; i < 2; i++) {
            struct side *sd = &w.sd[i];
            if (sd->c) {
                uint64_t d = sncp_l2_conn_tick(sd->c, w.now);
                next = d < next ? d : next;
            }
            if (!sncp_session_is_closed(sd->s) && (i == 0 || sd->c)) {
                uint64_t d = sncp_session_tick(sd->s, w.now);
                next = d < next ? d : next;
            }
        }
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < w.nq; i++) {
            if (best == SIZE_MAX || w.q[i]->at < w.q[best]->at ||
                (w.q[i]->at == w.q[best]->at && w.q[i]->order < w.q[best]->order)) {
                best = i;
            }
        }
        if (best != SIZE_MAX && w.q[best]->at < next) {
            next = w.q[best]->at;
        }
        if (next == UINT64_MAX || next > limit) {
            return cond();
        }
        if (next > w.now) {
            w.now = next;
        }
        if (best != SIZE_MAX && w.q[best]->at <= w.now) {
            struct pkt *p = w.q[best];
            w.q[best] = w.q[--w.nq];
            deliver(p);
            free(p);
        }
    }
}

static int all_answered(void)
{
    return w.sd[0].n_responses == N_REQUESTS || w.sd[0].sess_closed;
}

static int all_closed(void)
{
    return w.sd[0].l2_closed && w.sd[1].l2_closed;
}

static void start_client(void)
{
    struct side *cl = &w.sd[0];
    ck_assert_int_eq(sncp_l2_conn_create(&cl->lcfg, &l_cbs, cl, &cl->c), 0);
    ck_assert_int_eq(sncp_l2_conn_open(cl->c, w.now), 0);
}

static const uint32_t loss_rates[] = {10000, 100000, 300000};

START_TEST(test_requests_over_lossy_l2)
{
    uint32_t loss = loss_rates[_i];
    world_init(100 + (uint64_t)_i, client_ctx);
    w.loss_ppm = loss;
    w.dup_ppm = 20000;
    w.reorder_ppm = 100000;
    start_client();
    uint64_t t0 = w.now;
    ck_assert(world_run(all_answered, 3600000));
    struct side *cl = &w.sd[0], *sv = &w.sd[1];
    const struct sncp_l2_stats *a = sncp_l2_conn_stats(cl->c);
    ck_assert_msg(!cl->sess_closed,
                  "client session closed: %s (l2 %s: retransmits=%" PRIu64 " timeouts=%" PRIu64
                  " rto=%u srtt=%u at %" PRIu64 " ms)",
                  sncp_session_error(cl->s), sncp_l2_state_name(sncp_l2_conn_state(cl->c)),
                  a->retransmits, a->timeouts, a->rto_ms, a->srtt_ms, w.now - t0);
    ck_assert_int_eq(cl->connected, 1);
    ck_assert_int_eq(sv->connected, 1);
    ck_assert_str_eq(cl->identity, "server");
    ck_assert_str_eq(sv->identity, "client");
    ck_assert_uint_eq(cl->n_responses, N_REQUESTS);
    ck_assert_int_eq(sv->n_requests, N_REQUESTS);
    ck_assert_int_eq(cl->order_errors, 0);
    uint64_t vms = w.now - t0;
    const struct sncp_l2_stats *b = sncp_l2_conn_stats(sv->c);
    fprintf(stderr,
            "l2+tls %d requests, loss %u%% dup 2%% reorder 10%%: virtual_ms=%" PRIu64
            " retransmits=%" PRIu64 "+%" PRIu64 " timeouts=%" PRIu64 "+%" PRIu64
            " duplicates=%" PRIu64 "+%" PRIu64 " frames=%" PRIu64 "+%" PRIu64 "\n",
            N_REQUESTS, loss / 10000, vms, a->retransmits, b->retransmits, a->timeouts, b->timeouts,
            a->duplicates, b->duplicates, a->frames_out, b->frames_out);
    /* Orderly close: close_notify over L2, then the L2 CLOSE handshake. */
    sncp_session_close(cl->s, w.now);
    ck_assert(world_run(all_closed, 600000));
    ck_assert_int_eq(cl->sess_err, 0);
    ck_assert_int_eq(sv->sess_closed, 1);
    ck_assert_int_eq(sv->sess_err, 0);
    ck_assert_int_eq(cl->l2_err, 0);
    ck_assert_int_eq(sv->l2_err, 0);
    world_free();
}
END_TEST

static int client_done(void)
{
    return w.sd[0].sess_closed && w.sd[1].sess_closed;
}

START_TEST(test_bad_certificate_refused)
{
    /* A client whose certificate chains to another CA: the server refuses it over L2 just
     * as over TCP, and both transports go down. */
    world_init(7, rogue_ctx);
    w.loss_ppm = 50000;
    w.expect_failure = 1;
    start_client();
    ck_assert(world_run(client_done, 60000));
    ck_assert_int_eq(w.sd[1].connected, 0);
    ck_assert_int_eq(w.sd[0].n_responses, 0);
    ck_assert_int_ne(w.sd[1].sess_err, 0);
    ck_assert(world_run(all_closed, 60000));
    world_free();
}
END_TEST

static Suite *l2_session_suite(void)
{
    Suite *s = suite_create("sncp-l2-session");
    TCase *tc = tcase_create("session");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_requests_over_lossy_l2, 0,
                        sizeof loss_rates / sizeof loss_rates[0]);
    tcase_add_test(tc, test_bad_certificate_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    static const char *const gen[] = {
        SRCDIR "/scripts/gen-pki.sh", "--other-ca", "rogue", pki_dir, "server", "client", NULL};
    if (testutil_pki_create(pki_dir, sizeof pki_dir, "test-l2-session", gen) < 0) {
        return 1;
    }
    int failed = 1;
    server_ctx = ctx_for(SNCP_TLS_SERVER, "server");
    client_ctx = ctx_for(SNCP_TLS_CLIENT, "client");
    rogue_ctx = ctx_for(SNCP_TLS_CLIENT, "rogue");
    if (!server_ctx || !client_ctx || !rogue_ctx) {
        goto out;
    }
    SRunner *sr = srunner_create(l2_session_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
out:
    sncp_tls_ctx_destroy(server_ctx);
    sncp_tls_ctx_destroy(client_ctx);
    sncp_tls_ctx_destroy(rogue_ctx);
    testutil_rm_tree(pki_dir);
    return failed ? 1 : 0;
}
