/* nnve.c: the SNCP client session to the nNVE (see nnve.h).
 *
 * States: IDLE (waiting for the reconnect timer) -> CONNECTING (TCP + TLS) -> HELLO (sent,
 * awaiting the answer) -> UP.  The struct owns one uv_timer (reconnect) and at most one
 * sncp_conn; destroy closes both and the struct is freed when the last close callback ran.
 */
#include "nnve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sncp-conn.h"
#include "sncp-error.h"
#include "snv-log.h"

enum nnve_state { ST_IDLE, ST_CONNECTING, ST_HELLO, ST_UP };

struct tnve_nnve {
    uv_loop_t *loop;
    struct tnve_nnve_config cfg;
    char *address, *cert, *key, *ca, *identity, *node_id, *uplink;
    struct tnve_nnve_cbs cbs;
    void *aux;
    struct sncp_tls_ctx *tls;
    struct sncp_conn *conn;
    uv_timer_t timer;
    int timer_open;
    int destroying;
    enum nnve_state state;
    unsigned failures;
    uint32_t rng;
    uint64_t connects, ups;
    char peer_node_id[SNCP_MAX_NODE_ID_LEN + 1];
    char peer_port[SNCP_MAX_PORT_LEN + 1];
    char peer_identity[256];
    uint32_t hold_time_ms, peer_keepalive_ms, peer_caps;
    char last_error[512];
    uint64_t up_since;
    struct snv_ratelimit rl;
};

static void nnve_connect(struct tnve_nnve *n);

static void maybe_free(struct tnve_nnve *n)
{
    if (!n->destroying || n->conn || n->timer_open)
        return;
    sncp_tls_ctx_destroy(n->tls);
    free(n->address);
    free(n->cert);
    free(n->key);
    free(n->ca);
    free(n->identity);
    free(n->node_id);
    free(n->uplink);
    free(n);
}

static uint64_t next_delay(struct tnve_nnve *n)
{
    uint64_t d = n->cfg.retry_min_ms;
    for (unsigned i = 1; i < n->failures && d < n->cfg.retry_max_ms; i++)
        d *= 2;
    if (d > n->cfg.retry_max_ms)
        d = n->cfg.retry_max_ms;
    n->rng ^= n->rng << 13;
    n->rng ^= n->rng >> 17;
    n->rng ^= n->rng << 5;
    d = d * (750 + n->rng % 500) / 1000;
    return d ? d : 1;
}

static void timer_cb(uv_timer_t *t)
{
    struct tnve_nnve *n = t->data;
    if (!n->destroying && !n->conn)
        nnve_connect(n);
}

static void schedule_reconnect(struct tnve_nnve *n)
{
    if (n->destroying)
        return;
    n->failures++;
    uint64_t d = next_delay(n);
    SNV_INFO("nnve", "reconnecting in %llu ms address=%s port=%u", (unsigned long long)d,
             n->cfg.address, n->cfg.port);
    uv_timer_start(&n->timer, timer_cb, d, 0);
}

static void go_down(struct tnve_nnve *n)
{
    if (n->state == ST_UP) {
        n->state = ST_CONNECTING;
        SNV_WARN("nnve", "session lost peer=%s identity=%s err=%s", n->cfg.address,
                 n->peer_identity, n->last_error[0] ? n->last_error : "-");
        if (n->cbs.down)
            n->cbs.down(n->aux);
    }
}

static void on_connected(struct sncp_conn *c, const char *peer_identity)
{
    struct tnve_nnve *n = sncp_conn_data(c);
    snprintf(n->peer_identity, sizeof n->peer_identity, "%s", peer_identity);
    struct sncp_msg m;
    sncp_msg_init(&m, SNCP_MSG_HELLO, 0);
    m.version_min = SNCP_VERSION;
    m.version_max = SNCP_VERSION;
    sncp_msg_set(&m, SNCP_TLV_VERSION_RANGE);
    snprintf(m.node_id, sizeof m.node_id, "%s", n->cfg.node_id);
    sncp_msg_set(&m, SNCP_TLV_NODE_ID);
    m.session_epoch = n->cfg.epoch;
    sncp_msg_set(&m, SNCP_TLV_SESSION_EPOCH);
    m.capabilities = SNCP_CAP_MIGRATION | SNCP_CAP_SYNC | SNCP_CAP_ADDR_UPDATE;
    sncp_msg_set(&m, SNCP_TLV_CAPABILITIES);
    m.keepalive_ms = n->cfg.keepalive_ms;
    sncp_msg_set(&m, SNCP_TLV_KEEPALIVE);
    if (n->cfg.uplink && *n->cfg.uplink) {
        if (tnve_nnve_read_mac(n->cfg.uplink, m.uplink_macs[0]) == 0) {
            m.n_uplink_macs = 1;
            sncp_msg_set(&m, SNCP_TLV_UPLINK_MAC);
        } else {
            snv_log_rl(&n->rl, SNV_LOG_WARN, "nnve", "cannot read uplink MAC uplink=%s",
                       n->cfg.uplink);
        }
    }
    int64_t x = sncp_conn_send(c, &m, 0);
    if (x < 0) {
        snprintf(n->last_error, sizeof n->last_error, "HELLO not sent: %s", sncp_strerror((int)x));
        sncp_conn_close(c);
        return;
    }
    n->state = ST_HELLO;
    SNV_INFO("nnve", "tls established peer=%s identity=%s, HELLO sent node_id=%s epoch=%llu",
             sncp_conn_peer_name(c), peer_identity, n->cfg.node_id,
             (unsigned long long)n->cfg.epoch);
}

static void hello_response(struct tnve_nnve *n, struct sncp_conn *c, const struct sncp_msg *rsp,
                           int err)
{
    if (!err && rsp->status != SNCP_STATUS_SUCCESS)
        err = sncp_error_from_status(rsp->status);
    if (err) {
        snprintf(n->last_error, sizeof n->last_error, "HELLO refused: %s%s%s",
                 sncp_error_token(err), rsp && rsp->reason[0] ? ": " : "",
                 rsp ? rsp->reason : "");
        snv_log_rl(&n->rl, SNV_LOG_ERR, "nnve", "%s", n->last_error);
        sncp_conn_close(c);
        return;
    }
    n->peer_keepalive_ms = sncp_msg_has(rsp, SNCP_TLV_KEEPALIVE) ? rsp->keepalive_ms : 0;
    if (n->peer_keepalive_ms)
        sncp_session_set_peer_keepalive(sncp_conn_session(c), n->peer_keepalive_ms);
    n->hold_time_ms = sncp_msg_has(rsp, SNCP_TLV_HOLD_TIME) ? rsp->hold_time_ms : 0;
    n->peer_caps = sncp_msg_has(rsp, SNCP_TLV_CAPABILITIES) ? rsp->capabilities : 0;
    snprintf(n->peer_node_id, sizeof n->peer_node_id, "%s", rsp->node_id);
    snprintf(n->peer_port, sizeof n->peer_port, "%s", rsp->port);
    n->state = ST_UP;
    n->failures = 0;
    n->ups++;
    n->last_error[0] = '\0';
    n->up_since = uv_now(n->loop);
    SNV_INFO("nnve", "session up identity=%s node_id=%s port=%s hold_time_ms=%u keepalive_ms=%u",
             n->peer_identity, n->peer_node_id, n->peer_port[0] ? n->peer_port : "-",
             n->hold_time_ms, n->peer_keepalive_ms);
    if (n->cbs.up)
        n->cbs.up(n->aux);
}

static void on_response(struct sncp_conn *c, uint64_t cookie, const struct sncp_msg *rsp, int err)
{
    struct tnve_nnve *n = sncp_conn_data(c);
    if (n->destroying)
        return;
    if (cookie == 0) {
        if (n->state == ST_HELLO)
            hello_response(n, c, rsp, err);
        return;
    }
    if (err == SNCP_E_CLOSED)
        go_down(n);
    if (n->cbs.response)
        n->cbs.response(n->aux, cookie, rsp, err);
}

static void on_request(struct sncp_conn *c, const struct sncp_msg *req)
{
    struct tnve_nnve *n = sncp_conn_data(c);
    if (n->state != ST_UP || n->destroying || !n->cbs.request) {
        sncp_conn_respond_error(c, req, SNCP_E_UNEXPECTED_MESSAGE, 0, "session not up");
        return;
    }
    n->cbs.request(n->aux, req);
}

static void on_closed(struct sncp_conn *c, int err)
{
    struct tnve_nnve *n = sncp_conn_data(c);
    n->conn = NULL;
    if (err && !n->last_error[0]) {
        const char *detail = sncp_session_error(sncp_conn_session(c));
        snprintf(n->last_error, sizeof n->last_error, "%s%s%s", sncp_strerror(err),
                 detail && *detail ? ": " : "", detail ? detail : "");
    } else if (!err && !n->last_error[0]) {
        snprintf(n->last_error, sizeof n->last_error, "closed by the nNVE");
    }
    if (!n->destroying) {
        if (n->state == ST_UP)
            go_down(n);
        else
            snv_log_rl(&n->rl, SNV_LOG_WARN, "nnve", "connection failed address=%s port=%u "
                                                    "err=%s",
                       n->cfg.address, n->cfg.port, n->last_error);
        n->state = ST_IDLE;
        schedule_reconnect(n);
    }
    maybe_free(n);
}

static void nnve_connect(struct tnve_nnve *n)
{
    static const struct sncp_conn_cbs cbs = {on_connected, on_request, on_response, on_closed};
    struct sncp_conn_config cc;
    memset(&cc, 0, sizeof cc);
    cc.session.tls = n->tls;
    cc.session.expected_peer = n->cfg.identity && *n->cfg.identity ? n->cfg.identity : NULL;
    cc.session.keepalive_ms = n->cfg.keepalive_ms;
    cc.session.request_timeout_ms = n->cfg.request_timeout_ms;
    n->last_error[0] = '\0';
    n->connects++;
    n->state = ST_CONNECTING;
    int err = sncp_conn_connect(n->loop, n->cfg.address, n->cfg.port, &cc, &cbs, n, &n->conn);
    if (err < 0) {
        n->conn = NULL;
        n->state = ST_IDLE;
        snprintf(n->last_error, sizeof n->last_error, "%s", sncp_strerror(err));
        snv_log_rl(&n->rl, SNV_LOG_WARN, "nnve", "connect failed address=%s port=%u err=%s",
                   n->cfg.address, n->cfg.port, n->last_error);
        schedule_reconnect(n);
    }
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int tnve_nnve_create(uv_loop_t *loop, const struct tnve_nnve_config *cfg,
                     const struct tnve_nnve_cbs *cbs, void *aux, struct tnve_nnve **out,
                     char *err, size_t errlen)
{
    struct tnve_nnve *n = calloc(1, sizeof *n);
    if (!n) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    n->loop = loop;
    n->cfg = *cfg;
    n->address = dup_or_null(cfg->address);
    n->cert = dup_or_null(cfg->cert);
    n->key = dup_or_null(cfg->key);
    n->ca = dup_or_null(cfg->ca);
    n->identity = dup_or_null(cfg->identity);
    n->node_id = dup_or_null(cfg->node_id ? cfg->node_id : "tnve-agent");
    n->uplink = dup_or_null(cfg->uplink);
    n->cfg.address = n->address;
    n->cfg.cert = n->cert;
    n->cfg.key = n->key;
    n->cfg.ca = n->ca;
    n->cfg.identity = n->identity;
    n->cfg.node_id = n->node_id;
    n->cfg.uplink = n->uplink;
    if (!n->cfg.retry_min_ms)
        n->cfg.retry_min_ms = 500;
    if (n->cfg.retry_max_ms < n->cfg.retry_min_ms)
        n->cfg.retry_max_ms = n->cfg.retry_min_ms;
    n->cbs = *cbs;
    n->aux = aux;
    n->rng = (uint32_t)(cfg->epoch ^ (cfg->epoch >> 32)) | 1;
    n->rl = (struct snv_ratelimit)SNV_RATELIMIT_INIT(1, 5);
    if (!n->address || !n->cert || !n->key || !n->ca || !n->node_id) {
        snprintf(err, errlen, "nNVE address, cert, key and ca are required");
        n->destroying = 1;
        maybe_free(n);
        return SNCP_E_CONFIG;
    }
    n->tls = sncp_tls_ctx_create(SNCP_TLS_CLIENT, n->cert, n->key, n->ca, err, errlen);
    if (!n->tls) {
        n->destroying = 1;
        maybe_free(n);
        return SNCP_E_CONFIG;
    }
    uv_timer_init(loop, &n->timer);
    n->timer.data = n;
    n->timer_open = 1;
    nnve_connect(n);
    *out = n;
    return 0;
}

static void timer_close_cb(uv_handle_t *h)
{
    struct tnve_nnve *n = h->data;
    n->timer_open = 0;
    maybe_free(n);
}

void tnve_nnve_destroy(struct tnve_nnve *n)
{
    if (!n || n->destroying)
        return;
    n->destroying = 1;
    if (n->conn)
        sncp_conn_close(n->conn);
    uv_close((uv_handle_t *)&n->timer, timer_close_cb);
}

int64_t tnve_nnve_send(struct tnve_nnve *n, struct sncp_msg *msg, uint64_t cookie)
{
    if (!n->conn || n->state != ST_UP || n->destroying || cookie == 0)
        return SNCP_E_NOT_ESTABLISHED;
    return sncp_conn_send(n->conn, msg, cookie);
}

int tnve_nnve_respond(struct tnve_nnve *n, const struct sncp_msg *req, struct sncp_msg *rsp)
{
    if (!n->conn || n->destroying)
        return SNCP_E_NOT_ESTABLISHED;
    return sncp_conn_respond(n->conn, req, rsp);
}

int tnve_nnve_is_up(const struct tnve_nnve *n)
{
    return n->state == ST_UP;
}

int tnve_nnve_reload(struct tnve_nnve *n, char *err, size_t errlen)
{
    return sncp_tls_ctx_reload(n->tls, err, errlen);
}

static const char *state_name(enum nnve_state s)
{
    switch (s) {
    case ST_IDLE:
        return "idle";
    case ST_CONNECTING:
        return "connecting";
    case ST_HELLO:
        return "hello";
    case ST_UP:
        return "up";
    }
    return "unknown";
}

json_t *tnve_nnve_json(const struct tnve_nnve *n)
{
    json_t *o = json_object();
    json_object_set_new(o, "state", json_string(state_name(n->state)));
    char addr[300];
    snprintf(addr, sizeof addr, "%s:%u", n->cfg.address, n->cfg.port);
    json_object_set_new(o, "nnve", json_string(addr));
    json_object_set_new(o, "identity", json_string(n->state >= ST_HELLO ? n->peer_identity : ""));
    json_object_set_new(o, "peer_node_id", json_string(n->peer_node_id));
    json_object_set_new(o, "port", json_string(n->peer_port));
    json_object_set_new(o, "node_id", json_string(n->cfg.node_id));
    json_object_set_new(o, "epoch", json_integer((json_int_t)n->cfg.epoch));
    json_object_set_new(o, "hold_time_ms", json_integer(n->hold_time_ms));
    json_object_set_new(o, "peer_keepalive_ms", json_integer(n->peer_keepalive_ms));
    json_object_set_new(o, "up_for_ms", json_integer(n->state == ST_UP
                                                         ? (json_int_t)(uv_now(n->loop) -
                                                                        n->up_since)
                                                         : 0));
    json_object_set_new(o, "connects", json_integer((json_int_t)n->connects));
    json_object_set_new(o, "sessions", json_integer((json_int_t)n->ups));
    json_object_set_new(o, "last_error", json_string(n->last_error));
    if (n->conn && n->state == ST_UP) {
        const struct sncp_session_stats *st = sncp_session_stats(sncp_conn_session(n->conn));
        json_object_set_new(o, "bytes_in", json_integer((json_int_t)st->bytes_in));
        json_object_set_new(o, "bytes_out", json_integer((json_int_t)st->bytes_out));
        json_object_set_new(o, "outstanding",
                            json_integer(sncp_session_outstanding(sncp_conn_session(n->conn))));
        json_object_set_new(o, "request_timeouts", json_integer((json_int_t)st->timeouts));
    }
    return o;
}

int tnve_nnve_read_mac(const char *ifname, uint8_t mac[6])
{
    if (!ifname || !*ifname || strchr(ifname, '/') || strlen(ifname) > 15)
        return -EINVAL;
    char path[96], buf[64];
    snprintf(path, sizeof path, "/sys/class/net/%s/address", ifname);
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    char *ok = fgets(buf, sizeof buf, f);
    fclose(f);
    if (!ok)
        return -EIO;
    buf[strcspn(buf, "\n")] = '\0';
    return sncp_mac_parse(buf, mac) == 0 ? 0 : -EINVAL;
}
