/* pair.c: the ToR pair session and the shared domain's tag policy (see pair.h).
 *
 * The pair session speaks the pair profile of SNCP (PROTOCOL.md §17): HELLO (follower to
 * allocator; NODE_ID names the shared domain), SYNC_BEGIN / VN_CONNECT with PREFERRED_TAG
 * (a HOLD: "I hold this VN on this tag") / SYNC_END in both directions, VN_CONNECT without
 * a tag (a CLAIM, follower to allocator, answered with the granted LOCAL_TAG), and
 * VN_DISCONNECT (a RELEASE, answered with the tag the answering side still holds for the
 * VN, if any).  Everything a message changes is written to the store in the state's group
 * transaction; what we send waits in an outbox until that transaction is committed, so the
 * peer never learns of a binding we could lose.  Any message the pair profile does not
 * allow, and any that contradicts our table (a tag we bind to another VN), closes the
 * session without changing anything: the peer is authenticated but still not trusted.
 *
 * HELLO and its answer carry the sender's role.  Besides the pair session (follower to
 * allocator), an allocator with a `peer` key connects once to ask the peer's role, and a
 * follower with a `listen` key answers such a HELLO: so two switches configured with one
 * role (who would bind new tags from the same half) find out, refuse the session, and bind
 * no new tag until one of them is reconfigured.
 */
#include "pair.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pairtab.h"
#include "sncp-conn.h"
#include "sncp-session.h"
#include "snv-log.h"

enum pair_state {
    PS_DOWN,       /* no session (partition, or the peer is down) */
    PS_CONNECTING, /* follower: TCP/TLS under way */
    PS_HANDSHAKE,  /* TLS up, HELLO not done */
    PS_UP,         /* HELLO done: claims go to the allocator */
};

static const char *const state_names[] = {"down", "connecting", "handshake", "up"};

/* The sender's role in the CAPABILITIES of HELLO and of its answer (the pair profile,
 * PROTOCOL.md §17.2): bits that no tNVE capability uses.  Absent: a peer that does not say. */
enum {
    PAIR_CAP_ALLOCATOR = 0x10000,
    PAIR_CAP_FOLLOWER = 0x20000,
};

enum {
    PROBE_COOKIE = UINT64_MAX, /* the probe's HELLO (our other requests count up from 1) */
    PAIR_MAX_INFLIGHT = 2 * (SNCP_MAX_VID + 16), /* a whole SYNC fits */
    CLAIM_RETRY_MIN_MS = 10,   /* RETRY_AFTER of a pending claim: twice the last claim's */
    CLAIM_RETRY_MAX_MS = 1000, /* round trip, within these bounds */
    /* The follower's attempt (TCP, TLS, HELLO) not up within this many keepalive intervals
     * is abandoned (the connection's connect_timeout_ms) and retried: behind a partition
     * that drops packets, a TCP connect would sit in the kernel's SYN retries for minutes
     * and, once the partition ends, wait for the next retransmission (up to half a minute)
     * before the heal. */
    PAIR_ATTEMPT_KEEPALIVES = 3,
};

/* A message waiting for the group commit. */
struct out {
    struct out *next;
    uint64_t gen; /* the session it belongs to */
    uint8_t response;
    uint8_t type; /* request type (of the request answered, for a response) */
    uint8_t close_after;
    uint8_t hello;
    uint32_t xid; /* response */
    int err;      /* response */
    const char *reason;
    struct nnve_vn vn;
    uint8_t has_vn;
    uint16_t tag; /* 0: none */
};

/* A request of ours waiting for its answer. */
struct req {
    struct req *next;
    uint64_t cookie;
    uint8_t type;
    uint8_t claim;
    struct nnve_vn vn;
    uint64_t sent_at; /* loop time */
};

struct nnve_pair {
    uv_loop_t *loop;
    struct nnve_state *st;
    struct nnve_store *store;
    struct nnve_pairtab tab;
    char domain[256];
    char peer_identity[SNCP_TLS_IDENTITY_MAX];
    char peer_host[256];
    uint16_t peer_port;
    char listen_addr[64];
    uint16_t listen_port;
    enum nnve_pair_role role;
    uint32_t retry_ms, keepalive_ms;
    struct nnve_domain_cfg dcfg; /* copies of the pool for reloads */
    struct nnve_tag_range *ranges;
    uint16_t *reserved;
    struct sncp_tls_ctx *tls;       /* our role's side: server (allocator), client (follower) */
    struct sncp_tls_ctx *tls_other; /* the other side, for a probe: allocator with `peer`,
                                     * follower with `listen` */
    struct sncp_listener *listener;
    struct sncp_conn *conn;
    struct sncp_conn *probe; /* allocator: the connection asking the peer's role */
    int probe_done;          /* allocator: the peer's role is known, no more probes */
    int role_conflict;       /* the peer has our role: no new tags until a session is up */
    enum pair_state state;
    int peer_synced; /* the peer's SYNC_END arrived on this session */
    int in_peer_sync;
    uint64_t gen; /* session generation */
    uint64_t epoch;
    uv_timer_t timer;
    int shutting_down;
    struct out *out_head, *out_tail;
    struct req *reqs;
    uint64_t next_cookie;
    uint32_t claim_rtt_ms; /* of the last claim answered */
    struct nnve_tag_policy policy;
    struct nnve_pair_counters c;
    char last_error[640];
    struct snv_ratelimit rl;
};

/* ---- table persistence ----------------------------------------------------------- */

static void persist(struct nnve_pair *p)
{
    if (!p->tab.n_dirty)
        return;
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++) {
        const struct nnve_pair_row *r = &p->tab.rows[v];
        if (!r->dirty)
            continue;
        if (r->used)
            nnve_store_pair_put(p->store, p->domain, (uint16_t)v, &r->vn, r->mine, r->peer);
        else
            nnve_store_pair_del(p->store, p->domain, (uint16_t)v);
    }
    nnve_pairtab_clean(&p->tab);
}

static int load_row(void *aux, uint16_t tag, const struct nnve_vn *vn, int mine, int peer)
{
    struct nnve_pair *p = aux;
    char vbuf[80];
    if (nnve_pairtab_load(&p->tab, tag, vn, mine, peer))
        SNV_WARN("pair", "stored row dropped domain=%s tag=%u vn=%s", p->domain, tag,
                 nnve_vn_format(vn, vbuf, sizeof vbuf));
    return 0;
}

static int table_load(struct nnve_pair *p)
{
    int r = nnve_pairtab_init(&p->tab, p->role, p->ranges, p->dcfg.n_ranges, p->reserved,
                              p->dcfg.n_reserved);
    if (r)
        return r;
    return p->store ? nnve_store_pair_load(p->store, p->domain, load_row, p) : 0;
}

/* A VAP of the domain that the table does not know (the domain had VAPs before [pair] was
 * configured): it is this side's holding from now on. */
static void import_vap(void *aux, const struct nnve_vn *vn, uint16_t tag)
{
    struct nnve_pair *p = aux;
    char vbuf[80];
    int r = nnve_pairtab_hold_local(&p->tab, vn, tag);
    if (r == 1)
        SNV_WARN("pair", "existing VAP taken into the pair table domain=%s vn=%s tag=%u", p->domain,
                 nnve_vn_format(vn, vbuf, sizeof vbuf), tag);
    else if (r < 0)
        SNV_ERR("pair", "existing VAP left out of the pair table domain=%s vn=%s tag=%u: %s",
                p->domain, nnve_vn_format(vn, vbuf, sizeof vbuf), tag,
                r == SNCP_E_CONFLICT ? "the table binds the tag to another VN"
                                     : "tag outside the pool");
}

/* ---- outbox ---------------------------------------------------------------------- */

static struct out *out_add(struct nnve_pair *p)
{
    struct out *o = calloc(1, sizeof *o);
    if (!o) {
        SNV_ERR("pair", "out of memory: message to the peer dropped");
        return NULL;
    }
    o->gen = p->gen;
    if (p->out_tail)
        p->out_tail->next = o;
    else
        p->out_head = o;
    p->out_tail = o;
    return o;
}

static void queue_request(struct nnve_pair *p, uint8_t type, const struct nnve_vn *vn, uint16_t tag)
{
    struct out *o = out_add(p);
    if (!o)
        return;
    o->type = type;
    if (vn) {
        o->vn = *vn;
        o->has_vn = 1;
    }
    o->tag = tag;
}

static void queue_response(struct nnve_pair *p, const struct sncp_msg *req, int err,
                           const char *reason, const struct nnve_vn *vn, uint16_t tag,
                           int close_after)
{
    struct out *o = out_add(p);
    if (!o)
        return;
    o->response = 1;
    o->type = req->type;
    o->xid = req->xid;
    o->err = err;
    o->reason = reason;
    o->close_after = (uint8_t)close_after;
    if (vn) {
        o->vn = *vn;
        o->has_vn = 1;
    }
    o->tag = tag;
}

static void out_clear(struct nnve_pair *p)
{
    for (struct out *o = p->out_head, *n; o; o = n) {
        n = o->next;
        free(o);
    }
    p->out_head = p->out_tail = NULL;
}

/* The HELLO TLVs (request: with SESSION_EPOCH) of the pair profile, our role included. */
static void fill_hello(const struct nnve_pair *p, struct sncp_msg *m, int request)
{
    m->version_min = m->version_max = SNCP_VERSION;
    sncp_msg_set(m, SNCP_TLV_VERSION_RANGE);
    snprintf(m->node_id, sizeof m->node_id, "%s", p->domain);
    sncp_msg_set(m, SNCP_TLV_NODE_ID);
    if (request) {
        m->session_epoch = p->epoch;
        sncp_msg_set(m, SNCP_TLV_SESSION_EPOCH);
    }
    m->keepalive_ms = p->keepalive_ms;
    sncp_msg_set(m, SNCP_TLV_KEEPALIVE);
    m->capabilities = p->role == NNVE_PAIR_ALLOCATOR ? PAIR_CAP_ALLOCATOR : PAIR_CAP_FOLLOWER;
    sncp_msg_set(m, SNCP_TLV_CAPABILITIES);
}

/* The role a HELLO or its answer announces, or -1 when it names none or both. */
static int msg_role(const struct sncp_msg *m)
{
    uint32_t caps = sncp_msg_has(m, SNCP_TLV_CAPABILITIES) ? m->capabilities : 0;
    caps &= PAIR_CAP_ALLOCATOR | PAIR_CAP_FOLLOWER;
    return caps == PAIR_CAP_ALLOCATOR  ? NNVE_PAIR_ALLOCATOR
           : caps == PAIR_CAP_FOLLOWER ? NNVE_PAIR_FOLLOWER
                                       : -1;
}

static const char *conflict_reason(const struct nnve_pair *p)
{
    return p->role == NNVE_PAIR_ALLOCATOR ? "both switches of the pair are configured as allocator"
                                          : "both switches of the pair are configured as follower";
}

/* The peer is configured with our role: both would bind new tags from the same half.  From
 * now until a pair session comes up (which shows two roles), no new tag is bound here; rows
 * a side holds stay usable.  Counted each time, logged once. */
static void role_conflict(struct nnve_pair *p, const char *how)
{
    p->c.peer_refused++;
    snprintf(p->last_error, sizeof p->last_error, "role conflict: %s", how);
    if (p->role_conflict)
        return;
    p->role_conflict = 1;
    SNV_ERR("pair",
            "role conflict domain=%s peer=%s: %s: no new tags in the domain until one switch "
            "is reconfigured",
            p->domain, p->peer_identity, how);
}

static void send_out(struct nnve_pair *p, const struct out *o)
{
    static struct sncp_msg m;
    if (o->response) {
        static struct sncp_msg req;
        memset(&req, 0, offsetof(struct sncp_msg, capabilities));
        sncp_msg_init(&m, SNCP_MSG_RESPONSE, o->xid);
        req.version = SNCP_VERSION;
        req.type = o->type;
        req.xid = o->xid;
        if (o->err) {
            sncp_conn_respond_error(p->conn, &req, o->err, 0, o->reason);
            return;
        }
        if (o->type == SNCP_MSG_HELLO)
            fill_hello(p, &m, 0);
        if (o->has_vn)
            nnve_vn_to_msg(&m, &o->vn);
        if (o->tag) {
            m.tags[0] = (struct sncp_tag){.vid = o->tag, .pcp = SNCP_PCP_NONE};
            m.n_tags = 1;
        }
        sncp_conn_respond(p->conn, &req, &m);
        return;
    }
    sncp_msg_init(&m, o->type, 0);
    if (o->type == SNCP_MSG_HELLO)
        fill_hello(p, &m, 1);
    if (o->has_vn)
        nnve_vn_to_msg(&m, &o->vn);
    if (o->tag) {
        m.preferred_tags[0] = (struct sncp_tag){.vid = o->tag, .pcp = SNCP_PCP_NONE};
        m.n_preferred_tags = 1;
    }
    struct req *r = calloc(1, sizeof *r);
    if (!r) {
        SNV_ERR("pair", "out of memory: request to the peer dropped");
        return;
    }
    r->cookie = ++p->next_cookie;
    r->type = o->type;
    r->claim = o->type == SNCP_MSG_VN_CONNECT && !o->tag;
    r->vn = o->vn;
    r->sent_at = uv_now(p->loop);
    int64_t x = sncp_conn_send(p->conn, &m, r->cookie);
    if (x < 0) {
        snv_log_rl(&p->rl, SNV_LOG_WARN, "pair", "cannot send %s to the peer: %s",
                   sncp_msg_type_name(o->type), sncp_strerror((int)x));
        free(r);
        return;
    }
    if (o->type == SNCP_MSG_VN_DISCONNECT)
        nnve_pairtab_release_sent(&p->tab, &o->vn);
    r->next = p->reqs;
    p->reqs = r;
}

/* ---- the session ----------------------------------------------------------------- */

static void send_sync(struct nnve_pair *p)
{
    queue_request(p, SNCP_MSG_SYNC_BEGIN, NULL, 0);
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++)
        if (p->tab.rows[v].used && p->tab.rows[v].mine) {
            queue_request(p, SNCP_MSG_VN_CONNECT, &p->tab.rows[v].vn, (uint16_t)v);
            p->c.holds_sent++;
        }
    queue_request(p, SNCP_MSG_SYNC_END, NULL, 0);
}

static void session_up(struct nnve_pair *p)
{
    p->state = PS_UP;
    p->c.sessions_up++;
    p->last_error[0] = '\0';
    if (p->role_conflict)
        SNV_INFO("pair", "role conflict over domain=%s: the peer has the other role", p->domain);
    p->role_conflict = 0;
    p->probe_done = 1;
    snv_log_rl(&p->rl, SNV_LOG_INFO, "pair", "session up domain=%s role=%s peer=%s via=%s",
               p->domain, p->role == NNVE_PAIR_ALLOCATOR ? "allocator" : "follower",
               p->peer_identity, sncp_conn_peer_name(p->conn));
    send_sync(p);
}

static void session_fail(struct nnve_pair *p, struct sncp_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The peer sent something the pair profile does not allow: count, log, close. */
static void session_fail(struct nnve_pair *p, struct sncp_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->last_error, sizeof p->last_error, fmt, ap);
    va_end(ap);
    p->c.peer_errors++;
    snv_log_rl(&p->rl, SNV_LOG_ERR, "pair", "peer error, closing the session domain=%s: %s",
               p->domain, p->last_error);
    sncp_conn_close(c);
}

static void tombstone_release(void *aux, uint16_t tag, const struct nnve_vn *vn)
{
    (void)tag;
    struct nnve_pair *p = aux;
    queue_request(p, SNCP_MSG_VN_DISCONNECT, vn, 0);
    p->c.releases_sent++;
}

static void msg_vn(const struct sncp_msg *m, struct nnve_vn *vn)
{
    memset(vn, 0, sizeof *vn);
    if (sncp_msg_has(m, SNCP_TLV_VN_ID)) {
        vn->has_id = 1;
        vn->id = m->vn_id;
    }
    if (sncp_msg_has(m, SNCP_TLV_VN_NAME))
        snprintf(vn->name, sizeof vn->name, "%s", m->vn_name);
}

/* A HELLO on the follower's listener: the peer connected as if we were the allocator.  It
 * is answered with our role and closed (the pair session is the one we open), or refused
 * with CONFLICT when the peer says it is a follower too. */
static void probe_hello(struct nnve_pair *p, struct sncp_conn *c, const struct sncp_msg *req)
{
    if (strcmp(req->node_id, p->domain)) {
        p->c.peer_refused++;
        sncp_conn_respond_error(c, req, SNCP_E_NOT_AUTHORIZED, 0,
                                "not the same significance domain");
    } else if (msg_role(req) == (int)p->role) {
        role_conflict(p, conflict_reason(p));
        sncp_conn_respond_error(c, req, SNCP_E_CONFLICT, 0, conflict_reason(p));
    } else {
        static struct sncp_msg m;
        sncp_msg_init(&m, SNCP_MSG_RESPONSE, req->xid);
        fill_hello(p, &m, 0);
        sncp_conn_respond(c, req, &m);
    }
    sncp_conn_close(c);
}

static void on_request(struct sncp_conn *c, const struct sncp_msg *req)
{
    struct nnve_pair *p = sncp_conn_data(c);
    char vbuf[80];
    struct nnve_vn vn;
    if (c != p->conn) {
        if (p->role == NNVE_PAIR_FOLLOWER && req->type == SNCP_MSG_HELLO && c != p->probe)
            probe_hello(p, c, req);
        else
            sncp_conn_close(c);
        return;
    }
    if (nnve_state_degraded(p->st)) {
        /* Nothing can be stored: be apart until the store recovers (each side keeps to
         * its half meanwhile), rather than tell the peer what a crash could lose. */
        snprintf(p->last_error, sizeof p->last_error, "degraded: the state cannot be stored");
        queue_response(p, req, SNCP_E_INTERNAL, "the switch cannot store its state", NULL, 0, 1);
        return;
    }
    if (req->type == SNCP_MSG_HELLO) {
        if (p->role != NNVE_PAIR_ALLOCATOR || p->state != PS_HANDSHAKE) {
            session_fail(p, c, "unexpected HELLO");
            return;
        }
        if (req->version_min > SNCP_VERSION || strcmp(req->node_id, p->domain)) {
            p->c.peer_refused++;
            snprintf(p->last_error, sizeof p->last_error, "peer's domain \"%s\" is not %s",
                     req->node_id, p->domain);
            snv_log_rl(&p->rl, SNV_LOG_ERR, "pair", "refused peer identity=%s: %s",
                       p->peer_identity, p->last_error);
            queue_response(p, req, SNCP_E_NOT_AUTHORIZED, "not the same significance domain", NULL,
                           0, 1);
            return;
        }
        if (msg_role(req) == (int)p->role) {
            role_conflict(p, conflict_reason(p));
            queue_response(p, req, SNCP_E_CONFLICT, conflict_reason(p), NULL, 0, 1);
            return;
        }
        sncp_conn_hello_done(c);
        queue_response(p, req, 0, NULL, NULL, 0, 0);
        if (req->keepalive_ms)
            sncp_session_set_peer_keepalive(sncp_conn_session(c), req->keepalive_ms);
        session_up(p);
        return;
    }
    if (p->state != PS_UP) {
        session_fail(p, c, "%s before HELLO", sncp_msg_type_name(req->type));
        return;
    }
    switch (req->type) {
    case SNCP_MSG_SYNC_BEGIN:
        nnve_pairtab_sync_begin(&p->tab);
        p->in_peer_sync = 1;
        queue_response(p, req, 0, NULL, NULL, 0, 0);
        return;
    case SNCP_MSG_SYNC_END:
        if (!p->in_peer_sync) {
            session_fail(p, c, "SYNC_END without SYNC_BEGIN");
            return;
        }
        nnve_pairtab_sync_end(&p->tab);
        persist(p);
        p->in_peer_sync = 0;
        p->peer_synced = 1;
        p->c.syncs++;
        queue_response(p, req, 0, NULL, NULL, 0, 0);
        nnve_pairtab_foreach_tombstone(&p->tab, tombstone_release, p);
        SNV_INFO("pair", "synchronised domain=%s rows=%u splits=%u", p->domain, p->tab.n_rows,
                 nnve_pairtab_splits(&p->tab));
        return;
    case SNCP_MSG_VN_CONNECT: {
        msg_vn(req, &vn);
        if (req->n_preferred_tags > 1) {
            session_fail(p, c, "HOLD with %u tags", req->n_preferred_tags);
            return;
        }
        if (req->n_preferred_tags == 1) { /* HOLD */
            uint16_t tag = req->preferred_tags[0].vid;
            int split;
            int r = nnve_pairtab_peer_hold(&p->tab, &vn, tag, &split);
            if (r) {
                p->c.conflicts++;
                session_fail(p, c, "peer holds vn=%s on tag=%u: %s",
                             nnve_vn_format(&vn, vbuf, sizeof vbuf), tag,
                             r == SNCP_E_CONFLICT ? "bound to another VN here"
                                                  : "outside the domain's pool");
                return;
            }
            p->c.holds_received++;
            if (split) {
                p->c.splits_seen++;
                snv_log_rl(&p->rl, SNV_LOG_WARN, "pair",
                           "split vn=%s has two tags in domain=%s (peer tag=%u, ours=%u)",
                           nnve_vn_format(&vn, vbuf, sizeof vbuf), p->domain, tag,
                           nnve_pairtab_lookup(&p->tab, &vn));
            }
            persist(p);
            queue_response(p, req, 0, NULL, &vn, tag, 0);
            return;
        }
        if (p->role != NNVE_PAIR_ALLOCATOR) { /* CLAIM */
            session_fail(p, c, "CLAIM sent to the follower");
            return;
        }
        uint16_t tag;
        int r = nnve_pairtab_grant(&p->tab, &vn, NULL, 0, &tag);
        if (r) {
            snv_log_rl(&p->rl, SNV_LOG_WARN, "pair", "claim refused vn=%s domain=%s: %s",
                       nnve_vn_format(&vn, vbuf, sizeof vbuf), p->domain, sncp_strerror(r));
            queue_response(p, req, r, "the allocator's half of the pool is exhausted", NULL, 0, 0);
            return;
        }
        persist(p);
        p->c.grants++;
        snv_audit("pair", "granted domain=%s vn=%s tag=%u", p->domain,
                  nnve_vn_format(&vn, vbuf, sizeof vbuf), tag);
        queue_response(p, req, 0, NULL, &vn, tag, 0);
        return;
    }
    case SNCP_MSG_VN_DISCONNECT: { /* RELEASE */
        msg_vn(req, &vn);
        int tombstoned;
        int r = nnve_pairtab_peer_release(&p->tab, &vn, &tombstoned);
        p->c.releases_received++;
        persist(p);
        if (r < 0)
            queue_response(p, req, r, NULL, NULL, 0, 0);
        else
            queue_response(p, req, 0, NULL, &vn, (uint16_t)r, 0);
        if (tombstoned) { /* nobody holds it now: ours goes once the peer confirms */
            queue_request(p, SNCP_MSG_VN_DISCONNECT, &vn, 0);
            p->c.releases_sent++;
        }
        return;
    }
    default:
        session_fail(p, c, "%s is not part of the pair profile", sncp_msg_type_name(req->type));
        return;
    }
}

static struct req *req_take(struct nnve_pair *p, uint64_t cookie)
{
    for (struct req **pp = &p->reqs; *pp; pp = &(*pp)->next)
        if ((*pp)->cookie == cookie) {
            struct req *r = *pp;
            *pp = r->next;
            return r;
        }
    return NULL;
}

/* A HELLO answer that says the peer has our role (refused with CONFLICT, or an answer
 * naming our role): 1 after recording the conflict, else 0. */
static int hello_conflict(struct nnve_pair *p, const struct sncp_msg *rsp, int status)
{
    char how[400];
    if (status == SNCP_E_CONFLICT)
        snprintf(how, sizeof how, "the peer refused our HELLO (%s: %s)", sncp_error_token(status),
                 rsp && rsp->reason[0] ? rsp->reason : sncp_strerror(status));
    else if (!status && msg_role(rsp) == (int)p->role)
        snprintf(how, sizeof how, "the peer answered our HELLO as %s too",
                 p->role == NNVE_PAIR_ALLOCATOR ? "allocator" : "follower");
    else
        return 0;
    role_conflict(p, how);
    return 1;
}

/* The answer to the probe's HELLO: the peer's role is known (or it refused us for another
 * reason); either way no more probes. */
static void probe_answer(struct nnve_pair *p, struct sncp_conn *c, const struct sncp_msg *rsp,
                         int status)
{
    if (status == SNCP_E_CLOSED)
        return; /* on_closed probes again */
    p->probe_done = 1;
    if (!hello_conflict(p, rsp, status) && status)
        snv_log_rl(&p->rl, SNV_LOG_WARN, "pair", "the peer refused our role probe domain=%s: %s",
                   p->domain, rsp && rsp->reason[0] ? rsp->reason : sncp_strerror(status));
    sncp_conn_close(c);
}

static void on_response(struct sncp_conn *c, uint64_t cookie, const struct sncp_msg *rsp, int err)
{
    struct nnve_pair *p = sncp_conn_data(c);
    int status = err ? err : rsp->status ? sncp_error_from_status(rsp->status) : 0;
    if (c == p->probe) {
        if (cookie == PROBE_COOKIE)
            probe_answer(p, c, err ? NULL : rsp, status);
        return;
    }
    struct req *r = req_take(p, cookie);
    char vbuf[80];
    if (!r)
        return;
    if (c != p->conn) {
        free(r);
        return;
    }
    switch (r->type) {
    case SNCP_MSG_HELLO:
        if (hello_conflict(p, err ? NULL : rsp, status)) {
            sncp_conn_close(c);
            break;
        }
        if (status || strcmp(rsp->node_id, p->domain)) {
            p->c.peer_refused++;
            if (status)
                snprintf(p->last_error, sizeof p->last_error, "HELLO refused: %s",
                         sncp_strerror(status));
            else
                snprintf(p->last_error, sizeof p->last_error,
                         "HELLO refused: the allocator serves domain \"%s\"", rsp->node_id);
            snv_log_rl(&p->rl, SNV_LOG_ERR, "pair", "refused by peer identity=%s: %s",
                       p->peer_identity, p->last_error);
            sncp_conn_close(c);
            break;
        }
        if (rsp->keepalive_ms)
            sncp_session_set_peer_keepalive(sncp_conn_session(c), rsp->keepalive_ms);
        sncp_conn_hello_done(c); /* ends the attempt's deadline */
        session_up(p);
        break;
    case SNCP_MSG_VN_CONNECT:
        if (!r->claim) {
            if (status == SNCP_E_CONFLICT || status == SNCP_E_INVALID_VALUE)
                p->c.conflicts++;
            if (status && status != SNCP_E_CLOSED)
                snv_log_rl(&p->rl, SNV_LOG_ERR, "pair", "peer refused our hold vn=%s: %s",
                           nnve_vn_format(&r->vn, vbuf, sizeof vbuf), sncp_strerror(status));
            break;
        }
        p->claim_rtt_ms = (uint32_t)(uv_now(p->loop) - r->sent_at);
        if (status || rsp->n_tags != 1) {
            p->c.claims_failed++;
            snv_log_rl(&p->rl, SNV_LOG_WARN, "pair", "claim failed vn=%s domain=%s: %s",
                       nnve_vn_format(&r->vn, vbuf, sizeof vbuf), p->domain,
                       status ? sncp_strerror(status) : "no tag in the answer");
            break;
        }
        int g = nnve_pairtab_granted(&p->tab, &r->vn, rsp->tags[0].vid);
        if (g) {
            p->c.conflicts++;
            session_fail(p, c, "granted tag=%u for vn=%s: %s", rsp->tags[0].vid,
                         nnve_vn_format(&r->vn, vbuf, sizeof vbuf),
                         g == SNCP_E_CONFLICT ? "bound to another VN here"
                                              : "outside the domain's pool");
            break;
        }
        persist(p);
        p->c.claims_granted++;
        snv_audit("pair", "claim granted domain=%s vn=%s tag=%u", p->domain,
                  nnve_vn_format(&r->vn, vbuf, sizeof vbuf), rsp->tags[0].vid);
        break;
    case SNCP_MSG_VN_DISCONNECT:
        if (status == 0 || status == SNCP_E_NO_SUCH_VN) {
            nnve_pairtab_release_answered(&p->tab, &r->vn,
                                          !status && rsp->n_tags == 1 ? rsp->tags[0].vid : 0);
            persist(p);
        }
        break;
    default:
        break;
    }
    free(r);
}

static void start_timer(struct nnve_pair *p);
static void on_timer(uv_timer_t *t);

/* How long the follower's attempt may take to come up (connect_timeout_ms). */
static uint32_t attempt_ms(const struct nnve_pair *p)
{
    uint64_t ms = (uint64_t)PAIR_ATTEMPT_KEEPALIVES * p->keepalive_ms;
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

static void on_closed(struct sncp_conn *c, int err)
{
    struct nnve_pair *p = sncp_conn_data(c);
    if (c == p->probe) {
        p->probe = NULL;
        if (!p->probe_done && !p->shutting_down)
            start_timer(p);
        return;
    }
    if (c != p->conn) {
        if (err == SNCP_E_PEER_IDENTITY || err == SNCP_E_TLS_HANDSHAKE) {
            p->c.peer_refused++;
            snv_log_rl(&p->rl, SNV_LOG_WARN, "pair", "refused peer connection domain=%s: %s",
                       p->domain, sncp_strerror(err));
        }
        return;
    }
    /* Requests of this session are over (their callbacks ran with SNCP_E_CLOSED). */
    for (struct req *r = p->reqs, *n; r; r = n) {
        n = r->next;
        free(r);
    }
    p->reqs = NULL;
    if (p->state == PS_UP) {
        p->c.sessions_down++;
        snv_log_rl(&p->rl, SNV_LOG_WARN, "pair",
                   "session down domain=%s peer=%s err=%s: allocating from our half", p->domain,
                   p->peer_identity, err ? sncp_error_token(err) : "closed");
    } else if (err == SNCP_E_CONNECT_TIMEOUT) {
        snprintf(p->last_error, sizeof p->last_error, "no session within %u ms", attempt_ms(p));
        snv_log_rl(&p->rl, SNV_LOG_WARN, "pair", "attempt abandoned domain=%s peer=%s:%u: %s",
                   p->domain, p->peer_host, p->peer_port, p->last_error);
    } else if (err == SNCP_E_PEER_IDENTITY || err == SNCP_E_TLS_HANDSHAKE) {
        p->c.peer_refused++;
        snprintf(p->last_error, sizeof p->last_error, "%s", sncp_strerror(err));
        snv_log_rl(&p->rl, SNV_LOG_WARN, "pair", "refused peer domain=%s: %s", p->domain,
                   sncp_strerror(err));
    } else if (err && !p->role_conflict) {
        snprintf(p->last_error, sizeof p->last_error, "%s", sncp_strerror(err));
    }
    nnve_pairtab_session_lost(&p->tab); /* what was not re-announced yet stays held */
    p->conn = NULL;
    p->state = PS_DOWN;
    p->in_peer_sync = 0;
    p->peer_synced = 0;
    p->gen++;
    if (p->role == NNVE_PAIR_FOLLOWER && !p->shutting_down)
        start_timer(p);
}

/* Every message of the pair session must decode: one that does not ends the session
 * (the library answers it, this closes the connection). */
static void on_tap(void *ctx, const uint8_t *msg, size_t len)
{
    struct sncp_conn *c = ctx;
    struct nnve_pair *p = sncp_conn_data(c);
    static struct sncp_msg m;
    uint16_t bad;
    int r = sncp_msg_decode(msg, len, &m, &bad);
    if (r)
        session_fail(p, c, "malformed %s: %s (tlv %u)", sncp_msg_type_name(m.type),
                     sncp_strerror(r), bad);
}

static void on_connected(struct sncp_conn *c, const char *identity)
{
    struct nnve_pair *p = sncp_conn_data(c);
    if (strcmp(identity, p->peer_identity)) { /* the TLS layer checked it already */
        p->c.peer_refused++;
        snv_log_rl(&p->rl, SNV_LOG_ERR, "pair", "refused peer identity=%s expected=%s", identity,
                   p->peer_identity);
        sncp_conn_close(c);
        return;
    }
    sncp_session_set_tap(sncp_conn_session(c), on_tap, c);
    if (c == p->probe) {
        static struct sncp_msg m;
        sncp_msg_init(&m, SNCP_MSG_HELLO, 0);
        fill_hello(p, &m, 1);
        if (sncp_conn_send(c, &m, PROBE_COOKIE) < 0)
            sncp_conn_close(c);
        return;
    }
    if (p->role == NNVE_PAIR_FOLLOWER && c != p->conn)
        return; /* on our listener: its HELLO is a probe (probe_hello) */
    if (p->conn && p->conn != c) {
        snv_log_rl(&p->rl, SNV_LOG_INFO, "pair",
                   "a new session of the peer replaces the old one domain=%s", p->domain);
        struct sncp_conn *old = p->conn;
        p->conn = NULL;
        if (p->state == PS_UP)
            p->c.sessions_down++;
        p->gen++;
        sncp_conn_close(old);
    }
    p->conn = c;
    p->state = PS_HANDSHAKE;
    p->in_peer_sync = p->peer_synced = 0;
    p->gen++;
    if (p->role == NNVE_PAIR_FOLLOWER)
        queue_request(p, SNCP_MSG_HELLO, NULL, 0);
}

static const struct sncp_conn_cbs conn_cbs = {
    .connected = on_connected,
    .request = on_request,
    .response = on_response,
    .closed = on_closed,
};

/* server: for our listener, else for a connection we open. */
static void conn_config(const struct nnve_pair *p, int server, struct sncp_conn_config *cc)
{
    memset(cc, 0, sizeof *cc);
    cc->session.tls = server == (p->role == NNVE_PAIR_ALLOCATOR) ? p->tls : p->tls_other;
    cc->session.expected_peer = p->peer_identity;
    cc->session.keepalive_ms = p->keepalive_ms;
    cc->session.max_outstanding = PAIR_MAX_INFLIGHT;
    cc->session.max_inflight = PAIR_MAX_INFLIGHT;
    cc->session.hello_timeout_ms = server ? 10000 : 0;
    cc->max_conns = 4;
    cc->max_hello_pending = 2;
    cc->max_hello_pending_per_source = 2;
}

static void connect_peer(struct nnve_pair *p)
{
    struct sncp_conn_config cc;
    conn_config(p, 0, &cc);
    cc.connect_timeout_ms = attempt_ms(p); /* until session_up */
    struct sncp_conn *c;
    int r = sncp_conn_connect(p->loop, p->peer_host, p->peer_port, &cc, &conn_cbs, p, &c);
    if (r) {
        snprintf(p->last_error, sizeof p->last_error, "connect: %s", sncp_strerror(r));
        start_timer(p);
        return;
    }
    p->conn = c;
    p->state = PS_CONNECTING;
    p->gen++;
}

/* Allocator with a `peer` key: a connection to the peer's listener whose HELLO asks the
 * peer's role (probe_answer); the pair session is the one the follower opens. */
static void probe_peer(struct nnve_pair *p)
{
    struct sncp_conn_config cc;
    conn_config(p, 0, &cc);
    if (sncp_conn_connect(p->loop, p->peer_host, p->peer_port, &cc, &conn_cbs, p, &p->probe)) {
        p->probe = NULL;
        start_timer(p);
    }
}

/* The follower's retry (no connection); the allocator's next role probe. */
static void on_timer(uv_timer_t *t)
{
    struct nnve_pair *p = t->data;
    if (p->shutting_down)
        return;
    if (p->role == NNVE_PAIR_ALLOCATOR) {
        if (!p->probe && !p->probe_done)
            probe_peer(p);
    } else if (!p->conn) {
        connect_peer(p);
    }
}

static void start_timer(struct nnve_pair *p)
{
    if (!uv_is_active((uv_handle_t *)&p->timer))
        uv_timer_start(&p->timer, on_timer, p->retry_ms, 0);
}

/* ---- the tag policy -------------------------------------------------------------- */

static int has_claim(const struct nnve_pair *p, const struct nnve_vn *vn)
{
    for (const struct req *r = p->reqs; r; r = r->next)
        if (r->claim && nnve_pairtab_vn_eq(&r->vn, vn))
            return 1;
    for (const struct out *o = p->out_head; o; o = o->next)
        if (!o->response && o->type == SNCP_MSG_VN_CONNECT && !o->tag &&
            nnve_pairtab_vn_eq(&o->vn, vn))
            return 1;
    return 0;
}

static int policy_acquire(void *aux, const struct nnve_vn *vn, const uint16_t *prefs,
                          unsigned n_prefs, uint16_t *tag, uint32_t *retry_after_ms)
{
    struct nnve_pair *p = aux;
    char vbuf[80];
    int up = p->state == PS_UP;
    int known = nnve_pairtab_lookup(&p->tab, vn) != 0;
    /* With a role conflict only held rows are used: no half is ours for sure. */
    int r = nnve_pairtab_acquire(&p->tab, vn, prefs, n_prefs,
                                 (up && p->role == NNVE_PAIR_FOLLOWER) || p->role_conflict, tag);
    if (r == SNCP_E_BUSY && p->role_conflict) {
        snv_log_rl(&p->rl, SNV_LOG_WARN, "pair", "no new tag for vn=%s domain=%s: role conflict",
                   nnve_vn_format(vn, vbuf, sizeof vbuf), p->domain);
        *retry_after_ms = CLAIM_RETRY_MAX_MS;
        return r;
    }
    if (r == SNCP_E_BUSY) {
        if (!has_claim(p, vn)) {
            queue_request(p, SNCP_MSG_VN_CONNECT, vn, 0);
            p->c.claims_sent++;
        }
        uint32_t ms = 2 * p->claim_rtt_ms + CLAIM_RETRY_MIN_MS;
        *retry_after_ms = ms > CLAIM_RETRY_MAX_MS ? CLAIM_RETRY_MAX_MS : ms;
        return r;
    }
    if (r) {
        snv_log_rl(&p->rl, SNV_LOG_WARN, "pair", "no tag for vn=%s domain=%s: %s",
                   nnve_vn_format(vn, vbuf, sizeof vbuf), p->domain, sncp_strerror(r));
        return r;
    }
    persist(p);
    if (!known && !up) {
        p->c.partition_binds++;
        snv_audit("pair", "bound from our half (peer unreachable) domain=%s vn=%s tag=%u",
                  p->domain, nnve_vn_format(vn, vbuf, sizeof vbuf), *tag);
    } else {
        snv_audit("pair", "held domain=%s vn=%s tag=%u", p->domain,
                  nnve_vn_format(vn, vbuf, sizeof vbuf), *tag);
    }
    if (up) {
        queue_request(p, SNCP_MSG_VN_CONNECT, vn, *tag);
        p->c.holds_sent++;
    }
    return 0;
}

int nnve_pair_claim_pending(const struct nnve_pair *p, const struct nnve_vn *vn)
{
    return p && p->state == PS_UP && has_claim(p, vn);
}

static void policy_release(void *aux, const struct nnve_vn *vn, uint16_t tag)
{
    struct nnve_pair *p = aux;
    char vbuf[80];
    if (!nnve_pairtab_release(&p->tab, vn))
        return;
    persist(p);
    snv_audit("pair", "released domain=%s vn=%s tag=%u", p->domain,
              nnve_vn_format(vn, vbuf, sizeof vbuf), tag);
    if (p->state == PS_UP) {
        queue_request(p, SNCP_MSG_VN_DISCONNECT, vn, 0);
        p->c.releases_sent++;
    }
}

/* ---- lifecycle ------------------------------------------------------------------- */

/* A TLS context of the daemon's certificate for one side of a connection; NULL with err. */
static struct sncp_tls_ctx *tls_create(const struct nnve_config *cfg, enum sncp_tls_role role,
                                       char *err, size_t errlen)
{
    struct sncp_tls_ctx *t = sncp_tls_ctx_create(role, cfg->cert, cfg->key, cfg->ca, err, errlen);
    if (t && cfg->crl && sncp_tls_ctx_set_crl(t, cfg->crl, err, errlen)) {
        sncp_tls_ctx_destroy(t);
        return NULL;
    }
    return t;
}

int nnve_pair_create(uv_loop_t *loop, const struct nnve_config *cfg, struct nnve_state *st,
                     struct nnve_store *store, struct nnve_pair **out, char *err, size_t errlen)
{
    *out = NULL;
    const struct nnve_pair_cfg *pc = &cfg->pair;
    if (!pc->line)
        return 0;
    const struct nnve_domain_cfg *dc = NULL;
    for (unsigned i = 0; i < cfg->n_domains; i++)
        if (!strcmp(cfg->domains[i].name, pc->domain))
            dc = &cfg->domains[i];
    if (!dc) {
        snprintf(err, errlen, "[pair] domain %s is not a [domain]", pc->domain);
        return SNCP_E_CONFIG;
    }
    struct nnve_pair *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->loop = loop;
    p->st = st;
    p->store = store;
    p->role = pc->role ? NNVE_PAIR_FOLLOWER : NNVE_PAIR_ALLOCATOR;
    snprintf(p->domain, sizeof p->domain, "%s", pc->domain);
    snprintf(p->peer_identity, sizeof p->peer_identity, "%s", pc->peer_identity);
    if (pc->peer_host)
        snprintf(p->peer_host, sizeof p->peer_host, "%s", pc->peer_host);
    p->peer_port = pc->peer_port;
    snprintf(p->listen_addr, sizeof p->listen_addr, "%s", pc->listen_addr);
    p->listen_port = pc->listen_port;
    p->retry_ms = pc->retry_ms ? pc->retry_ms : 1000;
    p->keepalive_ms = cfg->keepalive_ms ? cfg->keepalive_ms : 10000;
    p->rl = (struct snv_ratelimit)SNV_RATELIMIT_INIT(2, 10);
    p->epoch = uv_hrtime();
    p->dcfg = *dc;
    p->ranges = calloc(dc->n_ranges + 1, sizeof *p->ranges);
    p->reserved = calloc(dc->n_reserved + 1, sizeof *p->reserved);
    if (!p->ranges || !p->reserved) {
        nnve_pair_destroy(p);
        return -ENOMEM;
    }
    if (dc->n_ranges)
        memcpy(p->ranges, dc->ranges, dc->n_ranges * sizeof *p->ranges);
    if (dc->n_reserved)
        memcpy(p->reserved, dc->reserved, dc->n_reserved * sizeof *p->reserved);
    int r = table_load(p);
    if (r) {
        snprintf(err, errlen, "[pair] cannot load the pair tag table: %s", sncp_strerror(r));
        nnve_pair_destroy(p);
        return r;
    }
    nnve_state_foreach_vap(st, p->domain, import_vap, p);
    persist(p);
    int allocator = p->role == NNVE_PAIR_ALLOCATOR;
    int other = allocator ? p->peer_host[0] != '\0' : pc->has_listen;
    p->tls = tls_create(cfg, allocator ? SNCP_TLS_SERVER : SNCP_TLS_CLIENT, err, errlen);
    if (other)
        p->tls_other = tls_create(cfg, allocator ? SNCP_TLS_CLIENT : SNCP_TLS_SERVER, err, errlen);
    if (!p->tls || (other && !p->tls_other)) {
        nnve_pair_destroy(p);
        return SNCP_E_CONFIG;
    }
    if (pc->has_listen) {
        struct sncp_conn_config cc;
        conn_config(p, 1, &cc);
        r = sncp_listener_create(loop, p->listen_addr, p->listen_port, &cc, &conn_cbs, p,
                                 &p->listener);
        if (r) {
            snprintf(err, errlen, "[pair] cannot listen on %s:%u: %s", p->listen_addr,
                     p->listen_port, sncp_strerror(r));
            nnve_pair_destroy(p);
            return r;
        }
    }
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    p->policy = (struct nnve_tag_policy){
        .domain = p->domain, .acquire = policy_acquire, .release = policy_release, .aux = p};
    nnve_state_set_tag_policy(st, &p->policy);
    SNV_INFO("pair", "started domain=%s role=%s peer_identity=%s port=%u pool=%u own=%u rows=%u",
             p->domain, p->role == NNVE_PAIR_ALLOCATOR ? "allocator" : "follower", p->peer_identity,
             nnve_pair_port(p), p->tab.pool_size, p->tab.own_size, p->tab.n_rows);
    if (p->role == NNVE_PAIR_FOLLOWER)
        connect_peer(p);
    else if (p->peer_host[0])
        probe_peer(p);
    *out = p;
    return 0;
}

void nnve_pair_flush(struct nnve_pair *p, int commit_failed)
{
    if (!p)
        return;
    if (commit_failed) {
        /* What the group wrote is gone: so is what it would have told the peer. */
        out_clear(p);
        int r = table_load(p);
        SNV_WARN("pair", "store commit failed: table reloaded (%s), session restarted",
                 r ? sncp_strerror(r) : "ok");
        if (p->conn)
            sncp_conn_close(p->conn);
        return;
    }
    if (!p->out_head)
        return;
    if (p->conn)
        sncp_conn_cork(p->conn);
    struct sncp_conn *corked = p->conn;
    struct out *o = p->out_head;
    p->out_head = p->out_tail = NULL;
    for (struct out *n; o; o = n) {
        n = o->next;
        if (p->conn && o->gen == p->gen) {
            send_out(p, o);
            if (o->close_after)
                sncp_conn_close(p->conn);
        }
        free(o);
    }
    if (corked)
        sncp_conn_uncork(corked);
}

uint16_t nnve_pair_port(const struct nnve_pair *p)
{
    return p && p->listener ? sncp_listener_port(p->listener) : 0;
}

int nnve_pair_connected(const struct nnve_pair *p)
{
    return p && p->state == PS_UP;
}

const struct nnve_pair_counters *nnve_pair_counters(const struct nnve_pair *p)
{
    return &p->c;
}

void nnve_pair_shutdown(struct nnve_pair *p)
{
    if (!p)
        return;
    if (!p->shutting_down) {
        p->shutting_down = 1;
        uv_close((uv_handle_t *)&p->timer, NULL);
    }
    nnve_state_set_tag_policy(p->st, NULL);
    sncp_listener_destroy(p->listener);
    p->listener = NULL;
    if (p->conn)
        sncp_conn_close(p->conn);
    if (p->probe)
        sncp_conn_close(p->probe);
}

void nnve_pair_destroy(struct nnve_pair *p)
{
    if (!p)
        return;
    out_clear(p);
    for (struct req *r = p->reqs, *n; r; r = n) {
        n = r->next;
        free(r);
    }
    sncp_tls_ctx_destroy(p->tls);
    sncp_tls_ctx_destroy(p->tls_other);
    free(p->ranges);
    free(p->reserved);
    free(p);
}

/* "100-149,160" */
static void half_text(const struct nnve_pair *p, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++) {
        if (!p->tab.own[v] || (v > SNCP_MIN_VID && p->tab.own[v - 1]))
            continue;
        unsigned e = v;
        while (e < SNCP_MAX_VID && p->tab.own[e + 1])
            e++;
        int w = e == v ? snprintf(buf + n, cap - n, "%s%u", n ? "," : "", v)
                       : snprintf(buf + n, cap - n, "%s%u-%u", n ? "," : "", v, e);
        if (w < 0 || (size_t)w >= cap - n)
            return;
        n += (size_t)w;
    }
}

json_t *nnve_pair_show(const struct nnve_pair *p)
{
    char half[512], peer[300];
    half_text(p, half, sizeof half);
    if (p->role == NNVE_PAIR_FOLLOWER)
        snprintf(peer, sizeof peer, "%s:%u", p->peer_host, p->peer_port);
    else
        snprintf(peer, sizeof peer, "%s", p->conn ? sncp_conn_peer_name(p->conn) : "");
    json_t *rows = json_array();
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++) {
        const struct nnve_pair_row *r = &p->tab.rows[v];
        if (!r->used)
            continue;
        json_t *o = json_pack("{s:i, s:s, s:b, s:b, s:b}", "tag", (int)v, "vn_name", r->vn.name,
                              "mine", r->mine, "peer", r->peer, "own_half", p->tab.own[v]);
        json_object_set_new(o, "vn_id", r->vn.has_id ? json_integer(r->vn.id) : json_null());
        json_array_append_new(rows, o);
    }
    const struct nnve_pair_counters *c = &p->c;
    json_t *cnt = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
        "sessions_up", (json_int_t)c->sessions_up, "sessions_down", (json_int_t)c->sessions_down,
        "peer_refused", (json_int_t)c->peer_refused, "peer_errors", (json_int_t)c->peer_errors,
        "claims_sent", (json_int_t)c->claims_sent, "claims_granted", (json_int_t)c->claims_granted,
        "claims_failed", (json_int_t)c->claims_failed, "grants", (json_int_t)c->grants,
        "holds_sent", (json_int_t)c->holds_sent, "holds_received", (json_int_t)c->holds_received,
        "releases_sent", (json_int_t)c->releases_sent, "releases_received",
        (json_int_t)c->releases_received, "partition_binds", (json_int_t)c->partition_binds,
        "conflicts", (json_int_t)c->conflicts, "splits_seen", (json_int_t)c->splits_seen, "syncs",
        (json_int_t)c->syncs);
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:i, s:i, s:i, s:s, s:o, s:o}", "domain", p->domain,
        "role", p->role == NNVE_PAIR_ALLOCATOR ? "allocator" : "follower", "peer_identity",
        p->peer_identity, "peer", peer, "state", state_names[p->state], "synced",
        p->state == PS_UP && p->peer_synced, "half", half, "pool_size", (int)p->tab.pool_size,
        "rows_count", (int)p->tab.n_rows, "splits", (int)nnve_pairtab_splits(&p->tab), "last_error",
        p->last_error, "rows", rows, "counters", cnt);
    json_object_set_new(o, "role_conflict", json_boolean(p->role_conflict));
    return o;
}
