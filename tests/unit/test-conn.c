/* test-conn.c: sncp-conn on a real libuv loop over 127.0.0.1 with real TLS.
 *
 * Each test runs its own loop and ends by closing every handle and checking that
 * uv_loop_close() succeeds (nothing leaked on the loop; ASan checks the heap).  Peers that
 * misbehave (plaintext, never reading) are raw libuv sockets driven by the test.  The PKI is
 * generated at test time by scripts/gen-pki.sh into a temporary directory.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "sncp-conn.h"
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

/* ---- loop helpers --------------------------------------------------------------------- */

static uv_loop_t loop;
static uv_timer_t ticker;
static struct sncp_tls_ctx *server_ctx, *client_ctx, *evil_ctx;

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static void loop_setup(void)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &ticker);
    uv_timer_start(&ticker, on_tick, 10, 10);
    server_ctx = ctx_for(SNCP_TLS_SERVER, "server");
    client_ctx = ctx_for(SNCP_TLS_CLIENT, "client");
    evil_ctx = ctx_for(SNCP_TLS_CLIENT, "evil");
}

/* Runs the loop until *flag becomes non-zero or timeout_ms passes.  Returns *flag. */
static int run_until(const int *flag, uint64_t timeout_ms)
{
    uv_update_time(&loop);
    uint64_t end = uv_now(&loop) + timeout_ms;
    while (!*flag && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    return *flag;
}

/* Runs the loop until *counter reaches n or timeout_ms passes.  Returns *counter >= n. */
static int run_until_count(const int *counter, int n, uint64_t timeout_ms)
{
    uv_update_time(&loop);
    uint64_t end = uv_now(&loop) + timeout_ms;
    while (*counter < n && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    return *counter >= n;
}

static void loop_teardown(void)
{
    uv_close((uv_handle_t *)&ticker, NULL);
    /* Everything else must already be closing: this run has to end by itself. */
    for (int i = 0; i < 1000 && uv_run(&loop, UV_RUN_NOWAIT); i++)
        usleep(1000);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    sncp_tls_ctx_destroy(server_ctx);
    sncp_tls_ctx_destroy(client_ctx);
    sncp_tls_ctx_destroy(evil_ctx);
}

/* ---- a peer built from sncp_conn ------------------------------------------------------ */

struct peer {
    const char *label;
    int connected, closed, closed_err;
    char identity[SNCP_TLS_IDENTITY_MAX];
    char error[320];
    int n_requests, n_responses;
    uint64_t last_cookie;
    int last_resp_err;
    struct sncp_msg last_rsp;
    char hello_node[SNCP_MAX_NODE_ID_LEN + 1];
    int conns_closed; /* server side: how many accepted connections closed */
    int flood;        /* server: on connect, send until the connection is closed */
    uv_timer_t flood_timer;
    struct sncp_conn *flood_conn;
    int flood_sent;
};

static void flood_step(uv_timer_t *t);

static void peer_connected(struct sncp_conn *c, const char *identity)
{
    struct peer *p = sncp_conn_data(c);
    p->connected++;
    snprintf(p->identity, sizeof p->identity, "%s", identity);
    if (p->flood) {
        p->flood_conn = c;
        uv_timer_init(&loop, &p->flood_timer);
        p->flood_timer.data = p;
        uv_timer_start(&p->flood_timer, flood_step, 1, 1);
    }
}

static void peer_request(struct sncp_conn *c, const struct sncp_msg *req)
{
    struct peer *p = sncp_conn_data(c);
    p->n_requests++;
    if (req->type != SNCP_MSG_HELLO) {
        sncp_conn_respond_error(c, req, SNCP_E_UNEXPECTED_MESSAGE, 0, NULL);
        return;
    }
    snprintf(p->hello_node, sizeof p->hello_node, "%s", req->node_id);
    struct sncp_msg rsp;
    sncp_msg_init(&rsp, SNCP_MSG_RESPONSE, 0);
    rsp.status = SNCP_STATUS_SUCCESS;
    rsp.version_min = rsp.version_max = 1;
    sncp_msg_set(&rsp, SNCP_TLV_VERSION_RANGE);
    snprintf(rsp.node_id, sizeof rsp.node_id, "%s", "tor-1");
    sncp_msg_set(&rsp, SNCP_TLV_NODE_ID);
    rsp.keepalive_ms = 10000;
    sncp_msg_set(&rsp, SNCP_TLV_KEEPALIVE);
    ck_assert_int_eq(sncp_conn_respond(c, req, &rsp), 0);
}

static void peer_response(struct sncp_conn *c, uint64_t cookie, const struct sncp_msg *rsp, int err)
{
    struct peer *p = sncp_conn_data(c);
    p->n_responses++;
    p->last_cookie = cookie;
    p->last_resp_err = err;
    if (rsp)
        p->last_rsp = *rsp;
}

static void on_flood_timer_closed(uv_handle_t *h)
{
    (void)h;
}

static void peer_closed(struct sncp_conn *c, int err)
{
    struct peer *p = sncp_conn_data(c);
    p->closed++;
    p->conns_closed++;
    p->closed_err = err;
    snprintf(p->error, sizeof p->error, "%s", sncp_session_error(sncp_conn_session(c)));
    if (p->flood && p->flood_conn == c) {
        p->flood_conn = NULL;
        uv_close((uv_handle_t *)&p->flood_timer, on_flood_timer_closed);
    }
}

static const struct sncp_conn_cbs peer_cbs = {peer_connected, peer_request, peer_response,
                                              peer_closed};

static void flood_step(uv_timer_t *t)
{
    struct peer *p = t->data;
    for (int i = 0; i < 100 && p->flood_conn; i++) {
        struct sncp_msg m;
        sncp_msg_init(&m, SNCP_MSG_TSI_ASSOCIATE, 0);
        memset(m.tsi.uuid, 0x11, sizeof m.tsi.uuid);
        memset(m.tsi.mac, 0x22, sizeof m.tsi.mac);
        m.tsi.mac[0] = 0x52;
        sncp_msg_set(&m, SNCP_TLV_TSI_ID);
        m.vn_id = 100;
        sncp_msg_set(&m, SNCP_TLV_VN_ID);
        for (int a = 0; a < SNCP_MAX_ADDRS; a++) {
            m.addrs[a].type = SNCP_ADDR_IPV6_MAC;
            m.addrs[a].ip[0] = 0x20;
            m.addrs[a].ip[1] = 0x01;
            m.addrs[a].ip[2] = 0x0d;
            m.addrs[a].ip[3] = 0xb8;
            m.addrs[a].ip[15] = (uint8_t)a;
            m.addrs[a].mac[0] = 0x52;
            m.addrs[a].mac[5] = (uint8_t)a;
        }
        m.n_addrs = SNCP_MAX_ADDRS;
        sncp_msg_set(&m, SNCP_TLV_ADDRESS);
        int64_t rc = sncp_conn_send(p->flood_conn, &m, 1);
        if (rc < 0)
            break;
        p->flood_sent++;
    }
}

static struct sncp_conn_config conn_cfg(struct sncp_tls_ctx *tls)
{
    struct sncp_conn_config c;
    memset(&c, 0, sizeof c);
    c.session.tls = tls;
    return c;
}

static struct sncp_listener *listen_on(struct peer *srv, struct sncp_conn_config *cfg)
{
    struct sncp_listener *l = NULL;
    ck_assert_int_eq(sncp_listener_create(&loop, "127.0.0.1", 0, cfg, &peer_cbs, srv, &l), 0);
    ck_assert_ptr_nonnull(l);
    ck_assert_uint_gt(sncp_listener_port(l), 0);
    return l;
}

static void send_hello(struct sncp_conn *c, uint64_t cookie)
{
    struct sncp_msg m;
    sncp_msg_init(&m, SNCP_MSG_HELLO, 0);
    m.version_min = m.version_max = 1;
    sncp_msg_set(&m, SNCP_TLV_VERSION_RANGE);
    snprintf(m.node_id, sizeof m.node_id, "%s", "hv-1");
    sncp_msg_set(&m, SNCP_TLV_NODE_ID);
    m.session_epoch = 7;
    sncp_msg_set(&m, SNCP_TLV_SESSION_EPOCH);
    ck_assert_int_gt(sncp_conn_send(c, &m, cookie), 0);
}

/* ---- tests ---------------------------------------------------------------------------- */

START_TEST(test_connect_hello)
{
    loop_setup();
    struct peer srv = {.label = "server"}, cli = {.label = "client"};
    struct sncp_conn_config scfg = conn_cfg(server_ctx);
    struct sncp_listener *l = listen_on(&srv, &scfg);
    struct sncp_conn_config ccfg = conn_cfg(client_ctx);
    ccfg.session.expected_peer = "server";
    struct sncp_conn *c = NULL;
    ck_assert_int_eq(
        sncp_conn_connect(&loop, "127.0.0.1", sncp_listener_port(l), &ccfg, &peer_cbs, &cli, &c),
        0);
    ck_assert_ptr_nonnull(c);
    ck_assert(run_until(&cli.connected, 5000));
    ck_assert_str_eq(cli.identity, "server");
    ck_assert(run_until(&srv.connected, 5000));
    ck_assert_str_eq(srv.identity, "client");
    ck_assert_uint_eq(sncp_listener_conns(l), 1);
    ck_assert_ptr_nonnull(strstr(sncp_conn_peer_name(c), "127.0.0.1:"));

    send_hello(c, 4242);
    ck_assert(run_until(&cli.n_responses, 5000));
    ck_assert_uint_eq(cli.last_cookie, 4242);
    ck_assert_int_eq(cli.last_resp_err, 0);
    ck_assert_int_eq(cli.last_rsp.status, SNCP_STATUS_SUCCESS);
    ck_assert_str_eq(cli.last_rsp.node_id, "tor-1");
    ck_assert_str_eq(srv.hello_node, "hv-1");
    ck_assert_uint_eq(sncp_conn_write_queue(c), 0);

    /* Orderly close from the client: both sides report err 0. */
    sncp_conn_close(c);
    sncp_conn_close(c);
    ck_assert(run_until(&cli.closed, 5000));
    ck_assert_int_eq(cli.closed_err, 0);
    ck_assert(run_until(&srv.closed, 5000));
    ck_assert_int_eq(srv.closed_err, 0);
    ck_assert_int_eq(cli.closed, 1);
    ck_assert_int_eq(srv.closed, 1);
    ck_assert_uint_eq(sncp_listener_conns(l), 0);
    sncp_listener_destroy(l);
    loop_teardown();
}
END_TEST

START_TEST(test_listener_destroyed_conn_stays)
{
    loop_setup();
    struct peer srv = {.label = "server"}, cli = {.label = "client"};
    struct sncp_conn_config scfg = conn_cfg(server_ctx);
    struct sncp_listener *l = listen_on(&srv, &scfg);
    struct sncp_conn_config ccfg = conn_cfg(client_ctx);
    struct sncp_conn *c = NULL;
    ck_assert_int_eq(
        sncp_conn_connect(&loop, "127.0.0.1", sncp_listener_port(l), &ccfg, &peer_cbs, &cli, &c),
        0);
    ck_assert(run_until(&srv.connected, 5000));
    ck_assert(run_until(&cli.connected, 5000));
    /* The listener goes away first; the established connection stays usable. */
    sncp_listener_destroy(l);
    struct sncp_msg m;
    sncp_msg_init(&m, SNCP_MSG_SYNC_BEGIN, 0);
    ck_assert_int_gt(sncp_conn_send(c, &m, 99), 0);
    ck_assert(run_until(&cli.n_responses, 5000));
    ck_assert_int_eq(cli.last_rsp.status, SNCP_STATUS_UNEXPECTED_MESSAGE);
    /* A corked burst goes out when uncorked, every request answered. */
    sncp_conn_cork(c);
    for (int i = 0; i < 50; i++)
        ck_assert_int_gt(sncp_conn_send(c, &m, 100 + (uint64_t)i), 0);
    ck_assert_uint_eq(sncp_session_stats(sncp_conn_session(c))->msgs_out[SNCP_MSG_SYNC_BEGIN], 51);
    sncp_conn_uncork(c);
    ck_assert(run_until_count(&cli.n_responses, 51, 5000));
    ck_assert_uint_eq(cli.last_cookie, 149);
    sncp_conn_close(c);
    ck_assert(run_until(&srv.closed, 5000));
    ck_assert(run_until(&cli.closed, 5000));
    loop_teardown();
}
END_TEST

/* A raw TCP client that writes `text`, then waits for the server to close. */
struct raw_client {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    const char *text;
    int connected, eof, closed;
    size_t received;
    uint8_t buf[4096];
    /* TLS mode: a session on the raw socket, reading stopped after the handshake. */
    struct sncp_session *s;
    int tls_connected;
};

static void raw_closed(uv_handle_t *h)
{
    struct raw_client *r = h->data;
    r->closed = 1;
}

static void raw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct raw_client *r = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)r->buf, sizeof r->buf);
}

static void raw_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct raw_client *r = st->data;
    if (n > 0) {
        r->received += (size_t)n;
        if (r->s) {
            sncp_session_input(r->s, (const uint8_t *)buf->base, (size_t)n, uv_now(&loop));
            if (r->tls_connected)
                uv_read_stop(st); /* from now on, never read again */
        }
    } else if (n < 0) {
        r->eof = 1;
        uv_read_stop(st);
    }
}

static void raw_written(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
}

static void raw_connected(uv_connect_t *req, int status)
{
    struct raw_client *r = req->data;
    ck_assert_int_eq(status, 0);
    r->connected = 1;
    uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
    if (r->text) {
        uv_buf_t b = uv_buf_init((char *)r->text, (unsigned)strlen(r->text));
        r->wreq.data = NULL;
        uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, raw_written);
    }
    if (r->s)
        sncp_session_start(r->s, uv_now(&loop));
}

static void raw_connect(struct raw_client *r, uint16_t port)
{
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    uv_tcp_init(&loop, &r->tcp);
    r->tcp.data = r;
    r->creq.data = r;
    ck_assert_int_eq(uv_tcp_connect(&r->creq, &r->tcp, (const struct sockaddr *)&a, raw_connected),
                     0);
}

static void raw_session_output(void *ctx, const uint8_t *data, size_t len)
{
    struct raw_client *r = ctx;
    uv_write_t *w = malloc(sizeof *w + len);
    ck_assert_ptr_nonnull(w);
    memcpy(w + 1, data, len);
    w->data = w;
    uv_buf_t b = uv_buf_init((char *)(w + 1), (unsigned)len);
    uv_write(w, (uv_stream_t *)&r->tcp, &b, 1, raw_written);
}

static void raw_session_connected(void *ctx, const char *id)
{
    struct raw_client *r = ctx;
    (void)id;
    r->tls_connected = 1;
}

static void raw_session_request(void *ctx, const struct sncp_msg *req)
{
    (void)ctx;
    (void)req;
}

static void raw_session_response(void *ctx, uint64_t cookie, const struct sncp_msg *rsp, int err)
{
    (void)ctx;
    (void)cookie;
    (void)rsp;
    (void)err;
}

static void raw_session_closed(void *ctx, int err)
{
    (void)ctx;
    (void)err;
}

static const struct sncp_session_cbs raw_session_cbs = {raw_session_output, raw_session_connected,
                                                        raw_session_request, raw_session_response,
                                                        raw_session_closed};

START_TEST(test_plaintext_client_refused)
{
    loop_setup();
    struct peer srv = {.label = "server"};
    struct sncp_conn_config scfg = conn_cfg(server_ctx);
    struct sncp_listener *l = listen_on(&srv, &scfg);
    struct raw_client r;
    memset(&r, 0, sizeof r);
    r.text = "GET / HTTP/1.0\r\n\r\n";
    raw_connect(&r, sncp_listener_port(l));
    ck_assert(run_until(&srv.closed, 5000));
    ck_assert_int_eq(srv.connected, 0);
    ck_assert_int_eq(srv.closed_err, SNCP_E_TLS_HANDSHAKE);
    ck_assert_msg(strstr(srv.error, "plaintext received on a TLS session") != NULL, "error: %s",
                  srv.error);
    /* The server closed the TCP connection. */
    ck_assert(run_until(&r.eof, 5000));
    uv_close((uv_handle_t *)&r.tcp, raw_closed);
    sncp_listener_destroy(l);
    loop_teardown();
}
END_TEST

START_TEST(test_other_ca_client_refused)
{
    loop_setup();
    struct peer srv = {.label = "server"}, cli = {.label = "client"};
    struct sncp_conn_config scfg = conn_cfg(server_ctx);
    struct sncp_listener *l = listen_on(&srv, &scfg);
    struct sncp_conn_config ccfg = conn_cfg(evil_ctx);
    struct sncp_conn *c = NULL;
    ck_assert_int_eq(
        sncp_conn_connect(&loop, "127.0.0.1", sncp_listener_port(l), &ccfg, &peer_cbs, &cli, &c),
        0);
    ck_assert(run_until(&srv.closed, 5000));
    ck_assert_int_eq(srv.connected, 0);
    ck_assert_int_eq(srv.closed_err, SNCP_E_TLS_HANDSHAKE);
    ck_assert_msg(strstr(srv.error, "unable to get local issuer certificate") != NULL, "error: %s",
                  srv.error);
    ck_assert(run_until(&cli.closed, 5000));
    ck_assert_int_ne(cli.closed_err, 0);
    ck_assert_uint_eq(sncp_listener_conns(l), 0);
    sncp_listener_destroy(l);
    loop_teardown();
}
END_TEST

START_TEST(test_never_reading_peer_disconnected)
{
    loop_setup();
    struct peer srv = {.label = "server", .flood = 1};
    struct sncp_conn_config scfg = conn_cfg(server_ctx);
    scfg.max_write_queue = 256 * 1024;
    scfg.session.max_outstanding = 100000;
    struct sncp_listener *l = listen_on(&srv, &scfg);

    struct raw_client r;
    memset(&r, 0, sizeof r);
    struct sncp_session_config rc;
    memset(&rc, 0, sizeof rc);
    rc.role = SNCP_TLS_CLIENT;
    rc.tls = client_ctx;
    r.s = sncp_session_create(&rc, &raw_session_cbs, &r);
    ck_assert_ptr_nonnull(r.s);
    raw_connect(&r, sncp_listener_port(l));
    ck_assert(run_until(&srv.closed, 20000));
    ck_assert_int_eq(srv.connected, 1);
    ck_assert_int_eq(srv.closed_err, -ENOBUFS);
    ck_assert_int_gt(srv.flood_sent, 100);
    uv_close((uv_handle_t *)&r.tcp, raw_closed);
    sncp_listener_destroy(l);
    loop_teardown();
    sncp_session_destroy(r.s);
}
END_TEST

START_TEST(test_max_conns)
{
    loop_setup();
    struct peer srv = {.label = "server"}, c1 = {.label = "c1"}, c2 = {.label = "c2"};
    struct sncp_conn_config scfg = conn_cfg(server_ctx);
    scfg.max_conns = 1;
    struct sncp_listener *l = listen_on(&srv, &scfg);
    struct sncp_conn_config ccfg = conn_cfg(client_ctx);
    struct sncp_conn *a = NULL, *b = NULL;
    ck_assert_int_eq(
        sncp_conn_connect(&loop, "127.0.0.1", sncp_listener_port(l), &ccfg, &peer_cbs, &c1, &a), 0);
    ck_assert(run_until(&c1.connected, 5000));
    ck_assert(run_until(&srv.connected, 5000));
    ck_assert_uint_eq(sncp_listener_conns(l), 1);
    ck_assert_int_eq(
        sncp_conn_connect(&loop, "127.0.0.1", sncp_listener_port(l), &ccfg, &peer_cbs, &c2, &b), 0);
    ck_assert(run_until(&c2.closed, 5000));
    ck_assert_int_eq(c2.connected, 0);
    ck_assert_int_ne(c2.closed_err, 0);
    ck_assert_uint_eq(sncp_listener_conns(l), 1);
    ck_assert_int_eq(srv.connected, 1);
    /* After the first one goes, a new one is accepted. */
    sncp_conn_close(a);
    ck_assert(run_until(&c1.closed, 5000));
    ck_assert(run_until(&srv.closed, 5000));
    ck_assert_uint_eq(sncp_listener_conns(l), 0);
    struct peer c3 = {.label = "c3"};
    struct sncp_conn *d = NULL;
    ck_assert_int_eq(
        sncp_conn_connect(&loop, "127.0.0.1", sncp_listener_port(l), &ccfg, &peer_cbs, &c3, &d), 0);
    ck_assert(run_until(&c3.connected, 5000));
    sncp_conn_close(d);
    ck_assert(run_until(&c3.closed, 5000));
    ck_assert(run_until_count(&srv.conns_closed, 2, 5000));
    sncp_listener_destroy(l);
    loop_teardown();
}
END_TEST

START_TEST(test_connect_refused)
{
    loop_setup();
    /* A port bound but not listening refuses connections. */
    uv_tcp_t hold;
    uv_tcp_init(&loop, &hold);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    ck_assert_int_eq(uv_tcp_bind(&hold, (const struct sockaddr *)&a, 0), 0);
    struct sockaddr_in bound;
    int len = sizeof bound;
    ck_assert_int_eq(uv_tcp_getsockname(&hold, (struct sockaddr *)&bound, &len), 0);
    uint16_t port = ntohs(bound.sin_port);

    struct peer cli = {.label = "client"};
    struct sncp_conn_config ccfg = conn_cfg(client_ctx);
    struct sncp_conn *c = NULL;
    ck_assert_int_eq(sncp_conn_connect(&loop, "127.0.0.1", port, &ccfg, &peer_cbs, &cli, &c), 0);
    ck_assert(run_until(&cli.closed, 5000));
    ck_assert_int_eq(cli.closed_err, -ECONNREFUSED);
    ck_assert_int_eq(cli.connected, 0);
    uv_close((uv_handle_t *)&hold, NULL);

    /* Bad arguments fail at once, without a callback. */
    struct peer bad = {.label = "bad"};
    ck_assert_int_eq(sncp_conn_connect(&loop, "", port, &ccfg, &peer_cbs, &bad, &c), -EINVAL);
    struct sncp_listener *l = NULL;
    ck_assert_int_eq(sncp_listener_create(&loop, "not-an-address", 0, &ccfg, &peer_cbs, NULL, &l),
                     -EINVAL);
    loop_teardown();
    ck_assert_int_eq(bad.closed, 0);
}
END_TEST

START_TEST(test_connect_by_name)
{
    loop_setup();
    struct peer srv = {.label = "server"}, cli = {.label = "client"};
    struct sncp_conn_config scfg = conn_cfg(server_ctx);
    struct sncp_listener *l4 = NULL, *l6 = NULL;
    /* "localhost" may resolve to ::1 first: listen there too, on the same port, when the
     * host has IPv6.  Another process may hold that port on ::1: then both are let go and
     * the kernel picks another (bounded); once both are bound, nobody can take them. */
    for (int attempt = 0; attempt < 20; attempt++) {
        l4 = listen_on(&srv, &scfg);
        int rc =
            sncp_listener_create(&loop, "::1", sncp_listener_port(l4), &scfg, &peer_cbs, &srv, &l6);
        if (rc != -EADDRINUSE)
            break;
        sncp_listener_destroy(l4);
        l4 = NULL;
    }
    ck_assert_ptr_nonnull(l4);
    struct sncp_conn_config ccfg = conn_cfg(client_ctx);
    struct sncp_conn *c = NULL;
    ck_assert_int_eq(
        sncp_conn_connect(&loop, "localhost", sncp_listener_port(l4), &ccfg, &peer_cbs, &cli, &c),
        0);
    ck_assert(run_until(&cli.connected, 5000));
    send_hello(c, 1);
    ck_assert(run_until(&cli.n_responses, 5000));
    ck_assert_int_eq(cli.last_rsp.status, SNCP_STATUS_SUCCESS);
    sncp_conn_close(c);
    ck_assert(run_until(&cli.closed, 5000));
    ck_assert(run_until(&srv.closed, 5000));
    sncp_listener_destroy(l4);
    sncp_listener_destroy(l6);
    loop_teardown();
}
END_TEST

START_TEST(test_close_while_resolving)
{
    loop_setup();
    struct peer cli = {.label = "client"};
    struct sncp_conn_config ccfg = conn_cfg(client_ctx);
    struct sncp_conn *c = NULL;
    ck_assert_int_eq(sncp_conn_connect(&loop, "localhost", 1, &ccfg, &peer_cbs, &cli, &c), 0);
    sncp_conn_close(c);
    ck_assert(run_until(&cli.closed, 5000));
    ck_assert_int_eq(cli.closed, 1);
    ck_assert_int_eq(cli.connected, 0);
    loop_teardown();
}
END_TEST

START_TEST(test_timers_on_the_loop)
{
    loop_setup();
    /* Keepalives run from the connection's timer and keep an idle session up. */
    struct peer srv = {.label = "server"}, cli = {.label = "client"};
    struct sncp_conn_config scfg = conn_cfg(server_ctx);
    scfg.session.keepalive_ms = 100;
    scfg.session.handshake_timeout_ms = 300;
    struct sncp_listener *l = listen_on(&srv, &scfg);
    struct sncp_conn_config ccfg = conn_cfg(client_ctx);
    ccfg.session.keepalive_ms = 100;
    struct sncp_conn *c = NULL;
    ck_assert_int_eq(
        sncp_conn_connect(&loop, "127.0.0.1", sncp_listener_port(l), &ccfg, &peer_cbs, &cli, &c),
        0);
    ck_assert(run_until(&srv.connected, 5000));
    int never = 0;
    run_until(&never, 700);
    ck_assert_int_eq(cli.closed, 0);
    ck_assert_int_eq(srv.closed, 0);
    const struct sncp_session_stats *st = sncp_session_stats(sncp_conn_session(c));
    ck_assert_uint_ge(st->msgs_out[SNCP_MSG_KEEPALIVE], 3);
    ck_assert_uint_ge(st->msgs_in[SNCP_MSG_KEEPALIVE], 3);
    sncp_conn_close(c);
    ck_assert(run_until(&cli.closed, 5000));
    ck_assert(run_until(&srv.closed, 5000));

    /* A client that connects and says nothing is dropped after the handshake timeout. */
    struct raw_client r;
    memset(&r, 0, sizeof r);
    raw_connect(&r, sncp_listener_port(l));
    ck_assert(run_until_count(&srv.conns_closed, 2, 5000));
    ck_assert_int_eq(srv.closed_err, SNCP_E_TIMEOUT);
    ck_assert_ptr_nonnull(strstr(srv.error, "handshake"));
    ck_assert(run_until(&r.eof, 5000));
    uv_close((uv_handle_t *)&r.tcp, raw_closed);
    sncp_listener_destroy(l);
    loop_teardown();
}
END_TEST

/* A 127.0.0.1 socket that listens (backlog 0) and never accepts: a connect either completes
 * into the kernel's queue and then hears nothing, or, once that queue is full, hangs in SYN
 * retries.  Returns the fd; *port gets the port. */
static int silent_listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 0), 0);
    socklen_t len = sizeof a;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

START_TEST(test_connect_timeout)
{
    loop_setup();
    /* Attempts to a peer that never answers end at connect_timeout_ms with their own error,
     * long before the TLS handshake's deadline (10 s by default), whatever stage they hang
     * in; the listener is closed only after they ended. */
    uint16_t port;
    int fd = silent_listener(&port);
    struct peer cli[3] = {{.label = "client0"}, {.label = "client1"}, {.label = "client2"}};
    struct sncp_conn_config ccfg = conn_cfg(client_ctx);
    ccfg.connect_timeout_ms = 200;
    for (int i = 0; i < 3; i++) {
        struct sncp_conn *c = NULL;
        ck_assert_int_eq(sncp_conn_connect(&loop, "127.0.0.1", port, &ccfg, &peer_cbs, &cli[i], &c),
                         0);
    }
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(run_until(&cli[i].closed, 5000), "%s never closed", cli[i].label);
        ck_assert_int_eq(cli[i].closed_err, SNCP_E_CONNECT_TIMEOUT);
        ck_assert_int_eq(cli[i].connected, 0);
    }
    close(fd);
    ck_assert_str_eq(sncp_error_token(SNCP_E_CONNECT_TIMEOUT), "connect-timeout");

    /* A connection whose owner accepted the HELLO answer (sncp_conn_hello_done) outlives the
     * deadline; on the accepting side connect_timeout_ms means nothing (its owner never
     * calls sncp_conn_hello_done here). */
    struct peer srv = {.label = "server"}, ok = {.label = "client"};
    struct sncp_conn_config scfg = conn_cfg(server_ctx);
    scfg.connect_timeout_ms = 200;
    struct sncp_listener *l = listen_on(&srv, &scfg);
    ccfg.connect_timeout_ms = 3000;
    struct sncp_conn *c = NULL;
    ck_assert_int_eq(
        sncp_conn_connect(&loop, "127.0.0.1", sncp_listener_port(l), &ccfg, &peer_cbs, &ok, &c), 0);
    ck_assert(run_until(&ok.connected, 5000));
    send_hello(c, 1);
    ck_assert(run_until(&ok.n_responses, 5000));
    ck_assert_int_eq(ok.last_rsp.status, SNCP_STATUS_SUCCESS);
    sncp_conn_hello_done(c);
    int never = 0;
    run_until(&never, 3500); /* past both deadlines */
    ck_assert_int_eq(ok.closed, 0);
    ck_assert_int_eq(srv.closed, 0);
    sncp_conn_close(c);
    ck_assert(run_until(&ok.closed, 5000));
    ck_assert_int_eq(ok.closed_err, 0);
    ck_assert(run_until(&srv.closed, 5000));
    ck_assert_int_eq(srv.closed_err, 0);
    sncp_listener_destroy(l);
    loop_teardown();
}
END_TEST

static Suite *conn_suite(void)
{
    Suite *s = suite_create("sncp-conn");
    TCase *tc = tcase_create("conn");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_connect_hello);
    tcase_add_test(tc, test_listener_destroyed_conn_stays);
    tcase_add_test(tc, test_plaintext_client_refused);
    tcase_add_test(tc, test_other_ca_client_refused);
    tcase_add_test(tc, test_never_reading_peer_disconnected);
    tcase_add_test(tc, test_max_conns);
    tcase_add_test(tc, test_connect_refused);
    tcase_add_test(tc, test_connect_by_name);
    tcase_add_test(tc, test_close_while_resolving);
    tcase_add_test(tc, test_timers_on_the_loop);
    tcase_add_test(tc, test_connect_timeout);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    static const char *const gen[] = {
        SRCDIR "/scripts/gen-pki.sh", "--other-ca", "evil", pki_dir, "server", "client", NULL};
    if (testutil_pki_create(pki_dir, sizeof pki_dir, "sncp-test-conn", gen) < 0)
        return 1;
    SRunner *sr = srunner_create(conn_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    testutil_rm_tree(pki_dir);
    return failed ? 1 : 0;
}
