/* nnve.c: the SNCP client session to the nNVE (see nnve.h).
 *
 * States: IDLE (waiting for the reconnect timer) -> CONNECTING (TCP or L2 discovery/open,
 * then TLS) -> HELLO (sent, awaiting the answer) -> UP.  The struct owns one uv_timer, at
 * most one sncp_conn and, over L2, at most one sncp_l2_port.  The timer's meaning follows
 * the state: IDLE: reconnect; UP over L2: the interface check.  The connection bounds
 * CONNECTING/HELLO itself: the whole attempt by connect_timeout from its start
 * (sncp_conn_config.connect_timeout_ms, SNCP_E_CONNECT_TIMEOUT), the TLS handshake and then
 * the HELLO answer by hello_timeout each (sncp_session_config.hello_timeout_ms).  A silent
 * established session ends by the session's dead-peer rule (3 x the nNVE's announced
 * keepalive).  The port lives as long as one connection: it is destroyed when that
 * connection closed (the port frees itself once its socket and connections are gone).
 * destroy closes everything and the struct is freed when the last close callback ran.
 */
#include "nnve.h"

#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sncp-conn-l2.h"
#include "sncp-conn.h"
#include "sncp-error.h"
#include "snv-log.h"

enum nnve_state { ST_IDLE, ST_CONNECTING, ST_HELLO, ST_UP };

enum {
    DEFAULT_CONNECT_TIMEOUT_MS = 15000,
    DEFAULT_HELLO_TIMEOUT_MS = 4000,
    LINK_CHECK_MS = 1000, /* how often an L2 session checks its interface */
};

struct tnve_nnve {
    uv_loop_t *loop;
    struct tnve_nnve_config cfg;
    char *address, *cert, *key, *ca, *identity, *node_id, *uplink, *l2_interface, *nnve_name;
    char *name;
    int l2;              /* the L2 transport */
    uint8_t nnve_mac[6]; /* configured (cfg.nnve_mac points here) */
    uint8_t discovery_mac[6];
    struct sncp_conn *corked;          /* the connection tnve_nnve_cork() corked */
    struct sncp_l2_port *port;         /* L2: the port of the current connection */
    int ifindex;                       /* L2: the interface's index when the port opened */
    uint8_t found_mac[6];              /* L2: the nNVE's MAC of the current/last session */
    int found;                         /* found_mac is valid */
    char via[SNCP_CONN_PEER_NAME_MAX]; /* transport peer of the current/last connection */
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
    char last_error[512]; /* of the current attempt or session */
    char prev_error[512]; /* of the attempt before, shown while the next one runs */
    const char *cause;    /* token of last_error's failure (static); "" none */
    const char *prev_cause;
    int session_lost; /* the session was up: on_closed logs "session lost" */
    uint64_t up_since;
    struct snv_ratelimit rl;
};

static void nnve_connect(struct tnve_nnve *n);
static void timer_cb(uv_timer_t *t);

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
    free(n->l2_interface);
    free(n->nnve_name);
    free(n->name);
    free(n);
}

/* Where the agent connects, for log lines: "address=A port=P" or "transport=l2 if=I
 * nnve_mac=M" (M: "discovery" when not configured). */
static const char *target(const struct tnve_nnve *n, char *buf, size_t len)
{
    if (!n->l2) {
        snprintf(buf, len, "address=%s port=%u", n->cfg.address, n->cfg.port);
        return buf;
    }
    char mac[SNCP_MAC_STRLEN] = "discovery";
    if (n->cfg.nnve_mac)
        sncp_mac_format(n->cfg.nnve_mac, mac, sizeof mac);
    snprintf(buf, len, "transport=l2 if=%s nnve_mac=%s", n->cfg.l2_interface, mac);
    return buf;
}

/* Runs the interface ioctl req on ifname with *ifr zeroed and named; 0 or -errno. */
static int if_ioctl(const char *ifname, unsigned long req, struct ifreq *ifr)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    memset(ifr, 0, sizeof *ifr);
    snprintf(ifr->ifr_name, sizeof ifr->ifr_name, "%s", ifname);
    int rc = ioctl(fd, req, ifr) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* The L2 interface's state: 0 when it exists, is up and has a carrier (*ifindex set),
 * -ENODEV when it does not exist, -ENETDOWN when it is administratively down, -ENOLINK
 * without carrier, or another -errno. */
static int link_state(const char *ifname, int *ifindex)
{
    unsigned idx = if_nametoindex(ifname);
    if (!idx)
        return errno == ENODEV || errno == ENXIO ? -ENODEV : -errno;
    struct ifreq ifr;
    int rc = if_ioctl(ifname, SIOCGIFFLAGS, &ifr);
    if (rc < 0)
        return rc == -ENXIO ? -ENODEV : rc;
    *ifindex = (int)idx;
    if (!(ifr.ifr_flags & IFF_UP))
        return -ENETDOWN;
    if (!(ifr.ifr_flags & IFF_RUNNING))
        return -ENOLINK;
    return 0;
}

static const char *link_problem(int err)
{
    switch (err) {
    case -ENODEV:
        return "does not exist";
    case -ENETDOWN:
        return "is down";
    case -ENOLINK:
        return "has no carrier";
    default:
        return strerror(-err);
    }
}

static void drop_port(struct tnve_nnve *n)
{
    sncp_l2_port_destroy(n->port);
    n->port = NULL;
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

/* UP over L2: an interface that went away, was re-created or went down leaves the port
 * deaf (the kernel detaches its socket), so the session cannot recover on it: end it now
 * rather than after the channel's dead-peer time. */
static void check_link(struct tnve_nnve *n)
{
    int ifindex = 0;
    int rc = link_state(n->cfg.l2_interface, &ifindex);
    if (rc == -ENOLINK)
        rc = 0; /* carrier loss alone: the channel rides out a short one */
    if (rc == 0 && ifindex != n->ifindex)
        rc = -ENODEV;
    if (rc == 0) {
        uv_timer_start(&n->timer, timer_cb, LINK_CHECK_MS, 0);
        return;
    }
    snprintf(n->last_error, sizeof n->last_error, "interface %s %s", n->cfg.l2_interface,
             rc == -ENODEV && ifindex ? "was re-created" : link_problem(rc));
    n->cause = "link-down";
    SNV_WARN("nnve", "l2 interface lost if=%s err=%s, closing the session", n->cfg.l2_interface,
             n->last_error);
    drop_port(n); /* aborts the connection: on_closed follows */
}

static void timer_cb(uv_timer_t *t)
{
    struct tnve_nnve *n = t->data;
    if (n->destroying)
        return;
    if (!n->conn)
        nnve_connect(n);
    else if (n->state == ST_UP && n->l2)
        check_link(n);
}

/* The connection's connect deadline (connect_timeout) ended the attempt, whatever its
 * stage: records and logs why. */
static void connect_timed_out(struct tnve_nnve *n)
{
    char where[160];
    n->cause = "connect-timeout";
    snprintf(n->last_error, sizeof n->last_error, "no session within %u ms%s",
             n->cfg.connect_timeout_ms,
             n->l2 && !n->cfg.nnve_mac && !n->found ? " (no nNVE answered the discovery)" : "");
    snv_log_rl(&n->rl, SNV_LOG_WARN, "nnve", "connect timed out %s err=%s cause=%s nnve=%s",
               target(n, where, sizeof where), n->last_error, n->cause, n->name);
}

static void schedule_reconnect(struct tnve_nnve *n)
{
    if (n->destroying)
        return;
    n->failures++;
    uint64_t d = next_delay(n);
    char where[160];
    SNV_INFO("nnve", "reconnecting in %llu ms %s", (unsigned long long)d,
             target(n, where, sizeof where));
    uv_timer_start(&n->timer, timer_cb, d, 0);
    if (n->cbs.failed)
        n->cbs.failed(n->aux);
}

/* The session ended: reports down at once (also from the first CLOSED response, before the
 * connection's closed callback); on_closed logs it with the cause, known by then. */
static void go_down(struct tnve_nnve *n)
{
    if (n->state == ST_UP) {
        n->state = ST_CONNECTING;
        n->session_lost = 1;
        if (n->cbs.down)
            n->cbs.down(n->aux);
    }
}

/* Closes the session if the nNVE's certificate is revoked by the CRL loaded now (the
 * handshake may have started under an older one).  Returns 1 if it did. */
static int close_if_revoked(struct tnve_nnve *n)
{
    const struct sncp_tls *t = n->conn ? sncp_session_tls(sncp_conn_session(n->conn)) : NULL;
    char why[256];
    if (!t || !sncp_tls_revoked(t, n->tls, why, sizeof why))
        return 0;
    SNV_WARN("nnve",
             "closing the session: the nNVE's certificate is revoked peer=%s identity=%s "
             "detail=%s",
             sncp_conn_peer_name(n->conn), sncp_tls_peer_identity(t), why);
    snprintf(n->last_error, sizeof n->last_error, "%s", why);
    n->cause = "revoked";
    sncp_conn_close(n->conn);
    return 1;
}

static void on_connected(struct sncp_conn *c, const char *peer_identity)
{
    struct tnve_nnve *n = sncp_conn_data(c);
    if (close_if_revoked(n))
        return;
    snprintf(n->peer_identity, sizeof n->peer_identity, "%s", peer_identity);
    snprintf(n->via, sizeof n->via, "%s", sncp_conn_peer_name(c));
    if (n->l2 && sncp_conn_l2_peer(c, NULL, n->found_mac, NULL) == 0)
        n->found = 1;
    struct sncp_msg m;
    sncp_msg_init(&m, SNCP_MSG_HELLO, 0);
    m.version_min = SNCP_VERSION;
    m.version_max = SNCP_VERSION;
    sncp_msg_set(&m, SNCP_TLV_VERSION_RANGE);
    snprintf(m.node_id, sizeof m.node_id, "%s", n->cfg.node_id);
    sncp_msg_set(&m, SNCP_TLV_NODE_ID);
    m.session_epoch = n->cfg.epoch;
    sncp_msg_set(&m, SNCP_TLV_SESSION_EPOCH);
    m.capabilities = SNCP_CAPS_IMPLEMENTED;
    sncp_msg_set(&m, SNCP_TLV_CAPABILITIES);
    m.keepalive_ms = n->cfg.keepalive_ms;
    sncp_msg_set(&m, SNCP_TLV_KEEPALIVE);
    /* over L2 the channel's interface is the uplink unless another one is named */
    const char *uplink = n->cfg.uplink && *n->cfg.uplink ? n->cfg.uplink
                         : n->l2                         ? n->cfg.l2_interface
                                                         : NULL;
    if (uplink) {
        if (tnve_nnve_read_mac(uplink, m.uplink_macs[0]) == 0) {
            m.n_uplink_macs = 1;
            sncp_msg_set(&m, SNCP_TLV_UPLINK_MAC);
        } else {
            snv_log_rl(&n->rl, SNV_LOG_WARN, "nnve", "cannot read uplink MAC uplink=%s", uplink);
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
    /* The connection ended with HELLO unanswered (a deadline, the nNVE closing): not a
     * refusal; on_closed follows and reports why. */
    if (!rsp && err == SNCP_E_CLOSED)
        return;
    if (!err && rsp->status != SNCP_STATUS_SUCCESS)
        err = sncp_error_from_status(rsp->status);
    if (err) {
        char range[64] = "";
        if (rsp && sncp_msg_has(rsp, SNCP_TLV_VERSION_RANGE))
            snprintf(range, sizeof range, " (nNVE versions %u-%u, ours %u-%u)", rsp->version_min,
                     rsp->version_max, SNCP_VERSION, SNCP_VERSION);
        snprintf(n->last_error, sizeof n->last_error, "HELLO refused: %s%s%s%s",
                 sncp_error_token(err), rsp && rsp->reason[0] ? ": " : "", rsp ? rsp->reason : "",
                 range);
        n->cause = "hello-refused";
        snv_log_rl(&n->rl, SNV_LOG_ERR, "nnve", "%s cause=%s nnve=%s", n->last_error, n->cause,
                   n->name);
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
    sncp_conn_hello_done(c);
    n->state = ST_UP;
    n->failures = 0;
    n->ups++;
    n->last_error[0] = '\0';
    n->prev_error[0] = '\0';
    n->cause = n->prev_cause = "";
    n->up_since = uv_now(n->loop);
    SNV_INFO("nnve",
             "session up transport=%s peer=%s identity=%s node_id=%s port=%s "
             "hold_time_ms=%u keepalive_ms=%u",
             n->l2 ? "l2" : "tcp", n->via, n->peer_identity, n->peer_node_id,
             n->peer_port[0] ? n->peer_port : "-", n->hold_time_ms, n->peer_keepalive_ms);
    uint64_t dead_ms = 3 * (uint64_t)(n->peer_keepalive_ms ? n->peer_keepalive_ms : 10000);
    if (n->hold_time_ms && dead_ms > n->hold_time_ms)
        SNV_WARN("nnve",
                 "a silent nNVE is declared failed only after %llu ms (3 x its keepalive), "
                 "beyond its hold_time_ms=%u nnve=%s",
                 (unsigned long long)dead_ms, n->hold_time_ms, n->name);
    if (n->l2)
        uv_timer_start(&n->timer, timer_cb, LINK_CHECK_MS, 0);
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

/* The cause token of a connection that closed with err (0: orderly), up or not, when no
 * more precise one was recorded: the session's own timeouts are the TLS handshake's and the
 * HELLO answer's (before up, each bounded by hello_timeout) and dead peer (once up). */
static const char *failure_cause(int was_up, int err)
{
    if (!err)
        return "closed";
    if (err == SNCP_E_TIMEOUT)
        return was_up ? "dead-peer" : "hello-timeout";
    return was_up ? "session-error" : "connect-failed";
}

static void on_closed(struct sncp_conn *c, int err)
{
    struct tnve_nnve *n = sncp_conn_data(c);
    n->conn = NULL;
    uv_timer_stop(&n->timer);
    drop_port(n);
    if (err == SNCP_E_CONNECT_TIMEOUT && !n->destroying) {
        connect_timed_out(n);
    } else if (err == SNCP_E_TIMEOUT && n->state == ST_HELLO && !n->last_error[0]) {
        /* the session's HELLO deadline (hello_timeout_ms) */
        snprintf(n->last_error, sizeof n->last_error,
                 "no HELLO answer within %u ms of the TLS handshake", n->cfg.hello_timeout_ms);
    } else if (err && !n->last_error[0]) {
        const char *detail = sncp_session_error(sncp_conn_session(c));
        const char *what = sncp_strerror(err);
        /* The detail often starts with the error's own text ("TLS handshake failed: ..."). */
        if (detail && !strncmp(detail, what, strlen(what)))
            what = "";
        snprintf(n->last_error, sizeof n->last_error, "%s%s%s", what,
                 *what && detail && *detail ? ": " : "", detail ? detail : "");
    } else if (!err && !n->last_error[0]) {
        snprintf(n->last_error, sizeof n->last_error, "closed by the nNVE");
    }
    int was_up = n->state == ST_UP || n->session_lost;
    if (!*n->cause)
        n->cause = failure_cause(was_up, err);
    if (!n->destroying) {
        char where[160];
        go_down(n);
        if (was_up)
            SNV_WARN("nnve", "session lost peer=%s identity=%s err=%s cause=%s nnve=%s", n->via,
                     n->peer_identity, n->last_error[0] ? n->last_error : "-", n->cause, n->name);
        else
            snv_log_rl(&n->rl, SNV_LOG_WARN, "nnve", "connection failed %s err=%s cause=%s nnve=%s",
                       target(n, where, sizeof where), n->last_error, n->cause, n->name);
        n->session_lost = 0;
        n->state = ST_IDLE;
        schedule_reconnect(n);
    }
    maybe_free(n);
}

/* Opens the L2 port on the interface (afresh for every attempt) and a connection to the
 * configured nNVE MAC or by discovery.  0, or -errno with last_error set for interface
 * problems. */
static int l2_connect(struct tnve_nnve *n, const struct sncp_conn_config *cc,
                      const struct sncp_conn_cbs *cbs)
{
    int rc = link_state(n->cfg.l2_interface, &n->ifindex);
    if (rc < 0) {
        snprintf(n->last_error, sizeof n->last_error, "interface %s %s", n->cfg.l2_interface,
                 link_problem(rc));
        return rc;
    }
    struct sncp_l2_port_config pcfg = {
        .ifname = n->cfg.l2_interface,
        .ethertype = n->cfg.l2_ethertype,
        .discovery_mac = n->discovery_mac,
        .node_name = n->cfg.node_id,
        .vlan = n->cfg.l2_vlan,
        .nnve_name = n->cfg.nnve_name && *n->cfg.nnve_name ? n->cfg.nnve_name : NULL,
    };
    rc = sncp_l2_port_create(n->loop, &pcfg, NULL, NULL, NULL, &n->port);
    if (rc < 0) {
        n->port = NULL;
        snprintf(n->last_error, sizeof n->last_error, "cannot open interface %s: %s",
                 n->cfg.l2_interface,
                 rc == -EPERM ? "permission denied (needs CAP_NET_RAW)" : sncp_strerror(rc));
        return rc;
    }
    return sncp_conn_connect_l2(n->port, n->cfg.nnve_mac, cc, cbs, n, &n->conn);
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
    cc.session.handshake_timeout_ms = n->cfg.hello_timeout_ms;
    /* the HELLO answer is due within hello_timeout of the TLS handshake (the session's
     * deadline, ended by sncp_conn_hello_done); the connect deadline still holds */
    cc.session.hello_timeout_ms = n->cfg.hello_timeout_ms;
    cc.connect_timeout_ms = n->cfg.connect_timeout_ms; /* also ended by sncp_conn_hello_done */
    if (n->last_error[0]) {
        memcpy(n->prev_error, n->last_error, sizeof n->prev_error);
        n->prev_cause = n->cause;
    }
    n->last_error[0] = '\0';
    n->cause = "";
    n->connects++;
    n->state = ST_CONNECTING;
    n->found = 0;
    n->via[0] = '\0';
    int err = n->l2
                  ? l2_connect(n, &cc, &cbs)
                  : sncp_conn_connect(n->loop, n->cfg.address, n->cfg.port, &cc, &cbs, n, &n->conn);
    if (err < 0) {
        n->conn = NULL;
        n->state = ST_IDLE;
        drop_port(n);
        if (!n->last_error[0])
            snprintf(n->last_error, sizeof n->last_error, "%s", sncp_strerror(err));
        n->cause = n->l2 ? "link-down" : "connect-failed";
        char where[160];
        snv_log_rl(&n->rl, SNV_LOG_WARN, "nnve", "connect failed %s err=%s cause=%s nnve=%s",
                   target(n, where, sizeof where), n->last_error, n->cause, n->name);
        schedule_reconnect(n);
    }
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int tnve_nnve_create(uv_loop_t *loop, const struct tnve_nnve_config *cfg,
                     const struct tnve_nnve_cbs *cbs, void *aux, struct tnve_nnve **out, char *err,
                     size_t errlen)
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
    n->l2_interface = dup_or_null(cfg->l2_interface);
    n->nnve_name = dup_or_null(cfg->nnve_name);
    n->name = dup_or_null(cfg->name && *cfg->name ? cfg->name : "-");
    n->cause = n->prev_cause = "";
    n->l2 = cfg->l2_interface && *cfg->l2_interface;
    if (cfg->nnve_mac) {
        memcpy(n->nnve_mac, cfg->nnve_mac, 6);
        n->cfg.nnve_mac = n->nnve_mac;
    }
    static const uint8_t default_group[6] = SNCP_L2_DISCOVERY_MAC_INIT;
    memcpy(n->discovery_mac, cfg->l2_discovery_mac ? cfg->l2_discovery_mac : default_group, 6);
    n->cfg.l2_discovery_mac = n->discovery_mac;
    n->cfg.l2_interface = n->l2_interface;
    n->cfg.nnve_name = n->nnve_name;
    if (!n->cfg.connect_timeout_ms)
        n->cfg.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    if (!n->cfg.hello_timeout_ms)
        n->cfg.hello_timeout_ms = DEFAULT_HELLO_TIMEOUT_MS;
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
    n->cfg.name = n->name;
    if (!n->name || (!n->l2 && !n->address) || !n->cert || !n->key || !n->ca || !n->node_id) {
        snprintf(err, errlen, "nNVE address (or L2 interface), cert, key and ca are required");
        n->destroying = 1;
        maybe_free(n);
        return SNCP_E_CONFIG;
    }
    n->tls = sncp_tls_ctx_create(SNCP_TLS_CLIENT, n->cert, n->key, n->ca, err, errlen);
    if (n->tls && cfg->crl && *cfg->crl && sncp_tls_ctx_set_crl(n->tls, cfg->crl, err, errlen)) {
        sncp_tls_ctx_destroy(n->tls);
        n->tls = NULL;
    }
    n->cfg.crl = NULL; /* the context keeps its own copy of the name */
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
        sncp_conn_close(n->conn); /* the port goes when the connection closed */
    else
        drop_port(n);
    uv_close((uv_handle_t *)&n->timer, timer_close_cb);
}

int64_t tnve_nnve_send(struct tnve_nnve *n, struct sncp_msg *msg, uint64_t cookie)
{
    if (!n->conn || n->state != ST_UP || n->destroying || cookie == 0)
        return SNCP_E_NOT_ESTABLISHED;
    return sncp_conn_send(n->conn, msg, cookie);
}

/* The connection is freed only once libuv closed its handles (on_closed, a later loop
 * phase), so the one corked here is still there to uncork, even if it closed meanwhile. */
void tnve_nnve_cork(struct tnve_nnve *n)
{
    if (n->conn && !n->corked && !n->destroying) {
        n->corked = n->conn;
        sncp_conn_cork(n->corked);
    }
}

void tnve_nnve_uncork(struct tnve_nnve *n)
{
    struct sncp_conn *c = n->corked;
    n->corked = NULL;
    if (c)
        sncp_conn_uncork(c);
}

int tnve_nnve_respond(struct tnve_nnve *n, const struct sncp_msg *req, struct sncp_msg *rsp)
{
    if (!n->conn || n->destroying)
        return SNCP_E_NOT_ESTABLISHED;
    return sncp_conn_respond(n->conn, req, rsp);
}

uint32_t tnve_nnve_peer_caps(const struct tnve_nnve *n)
{
    return n->state == ST_UP ? n->peer_caps : 0;
}

int tnve_nnve_is_up(const struct tnve_nnve *n)
{
    return n->state == ST_UP;
}

int tnve_nnve_reload(struct tnve_nnve *n, const char *crl, char *err, size_t errlen)
{
    int rc = sncp_tls_ctx_set_crl(n->tls, crl, err, errlen);
    if (rc)
        return rc;
    close_if_revoked(n);
    return 0;
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
    json_object_set_new(o, "transport", json_string(n->l2 ? "l2" : "tcp"));
    char addr[300];
    if (!n->l2) {
        snprintf(addr, sizeof addr, "%s:%u", n->cfg.address, n->cfg.port);
    } else if (n->via[0]) {
        snprintf(addr, sizeof addr, "%s", n->via);
    } else {
        char mac[SNCP_MAC_STRLEN] = "discovery";
        if (n->cfg.nnve_mac)
            sncp_mac_format(n->cfg.nnve_mac, mac, sizeof mac);
        snprintf(addr, sizeof addr, "%s/%s", n->cfg.l2_interface, mac);
    }
    json_object_set_new(o, "nnve", json_string(addr));
    if (n->l2) {
        char mac[SNCP_MAC_STRLEN] = "";
        if (n->found)
            sncp_mac_format(n->found_mac, mac, sizeof mac);
        else if (n->cfg.nnve_mac)
            sncp_mac_format(n->cfg.nnve_mac, mac, sizeof mac);
        json_object_set_new(o, "interface", json_string(n->cfg.l2_interface));
        json_object_set_new(o, "nnve_mac", json_string(mac));
        json_object_set_new(o, "discovery", json_boolean(!n->cfg.nnve_mac));
        json_object_set_new(o, "vlan", json_integer(n->cfg.l2_vlan));
    }
    json_object_set_new(o, "identity", json_string(n->state >= ST_HELLO ? n->peer_identity : ""));
    json_object_set_new(o, "peer_node_id", json_string(n->peer_node_id));
    json_object_set_new(o, "port", json_string(n->peer_port));
    json_object_set_new(o, "node_id", json_string(n->cfg.node_id));
    json_object_set_new(o, "epoch", json_integer((json_int_t)n->cfg.epoch));
    json_object_set_new(o, "hold_time_ms", json_integer(n->hold_time_ms));
    json_object_set_new(o, "peer_keepalive_ms", json_integer(n->peer_keepalive_ms));
    json_object_set_new(
        o, "up_for_ms",
        json_integer(n->state == ST_UP ? (json_int_t)(uv_now(n->loop) - n->up_since) : 0));
    json_object_set_new(o, "connects", json_integer((json_int_t)n->connects));
    json_object_set_new(o, "sessions", json_integer((json_int_t)n->ups));
    json_object_set_new(o, "last_error",
                        json_string(n->last_error[0] ? n->last_error : n->prev_error));
    json_object_set_new(o, "cause", json_string(n->last_error[0] ? n->cause : n->prev_cause));
    if (n->conn && n->state == ST_UP) {
        const struct sncp_session_stats *st = sncp_session_stats(sncp_conn_session(n->conn));
        json_object_set_new(o, "bytes_in", json_integer((json_int_t)st->bytes_in));
        json_object_set_new(o, "bytes_out", json_integer((json_int_t)st->bytes_out));
        json_object_set_new(o, "outstanding",
                            json_integer(sncp_session_outstanding(sncp_conn_session(n->conn))));
        json_object_set_new(o, "request_timeouts", json_integer((json_int_t)st->timeouts));
        const struct sncp_l2_conn *l2c = sncp_conn_l2(n->conn);
        if (l2c) {
            const struct sncp_l2_stats *ls = sncp_l2_conn_stats(l2c);
            json_object_set_new(o, "l2_frames_in", json_integer((json_int_t)ls->frames_in));
            json_object_set_new(o, "l2_frames_out", json_integer((json_int_t)ls->frames_out));
            json_object_set_new(o, "l2_retransmits", json_integer((json_int_t)ls->retransmits));
            json_object_set_new(o, "l2_srtt_ms", json_integer(ls->srtt_ms));
        }
    }
    return o;
}

int tnve_nnve_read_mac(const char *ifname, uint8_t mac[6])
{
    /* ioctl, not /sys/class/net: sysfs shows the namespace it was mounted in, which need
     * not be ours (a namespace entered without remounting /sys) */
    if (!ifname || !*ifname || strlen(ifname) >= IFNAMSIZ)
        return -EINVAL;
    struct ifreq ifr;
    int rc = if_ioctl(ifname, SIOCGIFHWADDR, &ifr);
    if (rc < 0)
        return rc;
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    return 0;
}
