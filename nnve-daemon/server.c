/* server.c: SNCP sessions of nnve-daemon (see server.h).
 *
 * A session object exists from the TLS handshake's end (`connected`) to the connection's
 * `closed` callback.  Until HELLO it has no hypervisor; HELLO checks the version, the
 * identity's authorization (default deny), finds the port (configured, or learned through
 * the backend's forwarding table from the agent's uplink MACs), replaces an older session of
 * the same identity, and binds the session to the hypervisor in the state.  Responses are
 * queued per session and written by the uv_check handle after the store commit.
 *
 * Sessions arrive over TCP (the listeners) and over the Layer-2 channel (one AF_PACKET
 * port per l2_interfaces entry), into the same session code.  An L2 session's port is the
 * interface its frames arrive on.  A hypervisor that shows up on another interface opens a
 * new connection there (frames of the old one match no connection on the new port and are
 * answered with a reset); its HELLO replaces the old session and the state moves its VN
 * connections and TSIs to the new port.  A timer watches the interfaces: one that is
 * missing, deleted or replaced is (re)opened once it exists, the daemon never stops for it.
 */
#include "server.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <inttypes.h>
#include <malloc.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "activation.h"
#include "pair.h"
#include "sncp-conn-l2.h"
#include "sncp-conn.h"
#include "sncp-session.h"
#include "snv-file.h"
#include "snv-log.h"

struct pending {
    struct pending *next;
    uint32_t xid;
    uint8_t type;
    uint8_t hello;         /* a successful HELLO: build its response at flush */
    uint8_t close_after;   /* refuse: close the session once this is written */
    uint8_t version_range; /* a failure that carries our VERSION_RANGE (HELLO, §8.3) */
    int err;
    uint64_t queued_us; /* when the request was decoded and applied (monotonic) */
    struct nnve_result res;
};

/* A request whose VN's tag is being claimed from the ToR pair's allocator (PROTOCOL.md
 * §17.3): instead of BUSY it waits, and is applied again once the claim is answered, the
 * pair session drops, or DEFER_MAX_MS passed.  BUSY changes nothing, so applying it again
 * is the hypervisor's own retry, done here without the round trip. */
struct deferred {
    struct deferred *next;
    struct session *s;
    uint64_t deadline;
    struct nnve_result res; /* the BUSY answer (busy_vn: the VN claimed), given as is at shutdown */
    struct sncp_msg req;
};

enum {
    DEFER_MAX_MS = 1000,       /* a claim's answer is awaited this long, then BUSY as before */
    DEFER_MAX_PER_SESSION = 4, /* waiting requests of one session, ... */
    DEFER_MAX = 256,           /* ... and of all: beyond, BUSY at once */
};

/* A connection's data is the server until TLS completes, then its session: both start with
 * a tag telling them apart. */
enum { TAG_SERVER = 0x5e5e0001, TAG_SESSION = 0x5e5e0002 };

struct session {
    uint32_t tag;
    struct nnve_server *srv;
    struct sncp_conn *conn;
    struct session *prev, *next; /* server's list */
    struct session *dirty_next;  /* in the server's flush list */
    int dirty;
    char node_id[SNCP_MAX_NODE_ID_LEN + 1];
    char peer[72];
    char port[SNCP_MAX_PORT_LEN + 1];
    char l2_if[IF_NAMESIZE]; /* L2 sessions: the interface the frames arrive on */
    uint32_t peer_caps;      /* the tNVE's CAPABILITIES from its HELLO */
    uint64_t epoch;
    uint32_t peer_keepalive_ms;
    uint64_t connected_at;
    struct nnve_hv *hv; /* after a successful HELLO */
    int replaced;       /* a newer session took over the identity */
    struct pending *pend_head, *pend_tail;
    unsigned n_deferred;
    uint64_t requests, failures;
    char identity[]; /* the peer's certificate identity, at its size (many idle sessions) */
};

/* An operator action waiting for agents' answers. */
struct op {
    struct op *next;
    uint64_t cookie;
    struct snv_ctl_req *req;
    unsigned waiting;
    unsigned ok, failed;
    json_t *answers;
};

struct counters {
    uint64_t msgs_in[SNCP_MSG_TYPE_MAX + 1];
    uint64_t status_out[SNCP_STATUS_COUNT_];
    uint64_t sessions_accepted;    /* TLS completed */
    uint64_t sessions_established; /* HELLO accepted */
    uint64_t hello_refused;
    uint64_t not_authorized; /* HELLO refusals and VN refusals */
    uint64_t sessions_replaced;
    uint64_t handshake_failures;
    uint64_t hello_timeouts; /* sessions closed for not completing HELLO in time */
    uint64_t revoked_closed; /* sessions closed at a reload that revoked their peer */
    uint64_t sessions_closed_error;
    uint64_t commit_failures;
    uint64_t requests_sent, requests_failed;
    uint64_t deferred, deferred_done, deferred_busy, deferred_refused, deferred_dropped;
    /* from closed sessions' lib stats */
    uint64_t malformed, busy_rejected, timeouts, unmatched;
};

/* One interface of l2_interfaces. */
struct l2_if {
    char name[IF_NAMESIZE];
    struct sncp_l2_port *port; /* NULL while the interface is missing */
    int last_err;              /* of the last attempt to open it (logged once per change) */
    uint64_t opened;           /* times the port was opened */
};

enum {
    L2_CHECK_MS = 1000,     /* interface watch period */
    L2_DRAIN_MS = 20,       /* at shutdown: poll for the connections' orderly close */
    L2_DRAIN_MAX_MS = 1500, /* ... for at most this long, then abort the rest */
};

struct nnve_server {
    uint32_t tag;
    uv_loop_t *loop;
    const struct nnve_config *cfg;
    struct sncp_tls_ctx *tls;
    struct nnve_state *state;
    struct nnve_store *store;
    struct nnve_backend *be;
    struct sncp_listener **listeners;
    unsigned n_listeners;
    struct l2_if *l2_ifs;
    unsigned n_l2_ifs;
    struct sncp_l2_unauth l2_unauth; /* l2_max_unauthenticated, over all L2 interfaces */
    /* The L2 settings of the start (a reload does not change them: an interface that
     * comes back is opened as its siblings are). */
    uint16_t l2_ethertype;
    uint8_t l2_discovery_mac[6];
    char l2_node_name[SNCP_L2_MAX_NAME_LEN + 1];
    uv_timer_t l2_timer;
    uint64_t l2_drain_until; /* shutdown: abort what is left on the L2 ports after this */
    struct session *sessions;
    unsigned n_sessions, n_established;
    struct session *dirty;
    uv_check_t check;
    uv_prepare_t log_flush; /* before the loop blocks: the batched log lines go out */
    uv_timer_t tick;
    uv_work_t checkpoint;
    int checkpoint_running;
    int checkpoint_idle; /* the worker may run its checkpoints at SCHED_IDLE (idle_probe()) */
    uint64_t recover_at; /* degraded: next attempt to store the whole state */
    uint32_t recover_ms; /* ... and the interval, doubled after each failure */
    uint64_t checkpoint_commits; /* store commits at the last checkpoint */
    int checkpoint_idle_pass;    /* the running checkpoint is an idle spell's (on_tick) */
    uint64_t second_commits;     /* store commits at the last whole second's tick */
    unsigned ticks;
    int busy;      /* requests were answered since the last idle check */
    int heap_used; /* ... and the heap was not trimmed since */
    struct op *ops;
    uint64_t next_cookie;
    int shutting_down;
    struct counters c;
    struct snv_ratelimit rl, rl_auth, rl_req;
    struct nnve_pair *pair;
    struct deferred *deferred;
    /* From a request's decoding to its answer handed to TLS: its wait for the group
     * commit, the commit, and the answers written before it in the same loop turn. */
    struct snv_hist request_us;
};

static void session_mark_dirty(struct session *s)
{
    if (s->dirty)
        return;
    s->dirty = 1;
    s->dirty_next = s->srv->dirty;
    s->srv->dirty = s;
}

static struct pending *queue(struct session *s, const struct sncp_msg *req, int err,
                             const struct nnve_result *res, int hello, int close_after)
{
    struct pending *p = calloc(1, sizeof *p);
    if (!p) {
        sncp_conn_respond_error(s->conn, req, SNCP_E_INTERNAL, 0, "out of memory");
        return NULL;
    }
    p->xid = req->xid;
    p->type = req->type;
    p->err = err;
    p->queued_us = uv_hrtime() / 1000;
    p->hello = (uint8_t)hello;
    p->close_after = (uint8_t)close_after;
    if (res)
        p->res = *res;
    if (s->pend_tail)
        s->pend_tail->next = p;
    else
        s->pend_head = p;
    s->pend_tail = p;
    session_mark_dirty(s);
    return p;
}

/* Queues a failure; returns its pending answer, or NULL (out of memory: answered now). */
static struct pending *queue_error(struct session *s, const struct sncp_msg *req, int err,
                                   uint16_t bad_tlv, const char *reason, int close_after)
{
    struct nnve_result res;
    memset(&res, 0, sizeof res);
    res.error_tlv = bad_tlv;
    res.reason = reason;
    return queue(s, req, err, &res, 0, close_after);
}

static void free_pending(struct session *s)
{
    for (struct pending *p = s->pend_head, *next; p; p = next) {
        next = p->next;
        free(p);
    }
    s->pend_head = s->pend_tail = NULL;
}

/* A failure RESPONSE with its detail: REASON, ERROR_TLV, the instance's TSI_STATE
 * (INVALID_STATE, CONFLICT) and, for a HELLO refused for its version, our VERSION_RANGE. */
static void respond_failure(struct session *s, const struct sncp_msg *req, int err,
                            const struct pending *p)
{
    static struct sncp_msg rsp;
    sncp_msg_init(&rsp, SNCP_MSG_RESPONSE, req->xid);
    rsp.status = sncp_status_from_error(err);
    snprintf(rsp.reason, sizeof rsp.reason, "%s",
             p->res.reason ? p->res.reason : sncp_status_text(rsp.status));
    sncp_msg_set(&rsp, SNCP_TLV_REASON);
    if (p->res.error_tlv) {
        rsp.error_tlv = p->res.error_tlv;
        sncp_msg_set(&rsp, SNCP_TLV_ERROR_TLV);
    }
    /* Not on a success turned INTERNAL by a failed commit: that state was undone. */
    if (p->res.has_tsi_state && (err == SNCP_E_INVALID_STATE || err == SNCP_E_CONFLICT)) {
        rsp.tsi_state = p->res.tsi_state;
        sncp_msg_set(&rsp, SNCP_TLV_TSI_STATE);
    }
    if (p->version_range) {
        rsp.version_min = rsp.version_max = SNCP_VERSION;
        sncp_msg_set(&rsp, SNCP_TLV_VERSION_RANGE);
    }
    if (p->res.retry_after_ms && err == SNCP_E_BUSY) {
        rsp.retry_after_ms = p->res.retry_after_ms;
        sncp_msg_set(&rsp, SNCP_TLV_RETRY_AFTER);
    }
    int rc = sncp_conn_respond(s->conn, req, &rsp);
    if (rc < 0)
        snv_log_rl(&s->srv->rl, SNV_LOG_ERR, "server",
                   "cannot encode response hypervisor=%s type=%s err=%s", s->identity,
                   sncp_msg_type_name(req->type), sncp_error_token(rc));
}

/* Writes s's queued responses. */
static void flush_session(struct session *s, int commit_failed)
{
    uint64_t now_us = uv_hrtime() / 1000;
    static struct sncp_msg req, rsp;
    struct nnve_server *srv = s->srv;
    int close = 0;
    /* One loop turn's responses of a session leave together: few TLS records, few writes
     * (TCP) or full frames (L2). */
    sncp_conn_cork(s->conn);
    for (struct pending *p = s->pend_head, *next; p; p = next) {
        next = p->next;
        if (sncp_session_is_closed(sncp_conn_session(s->conn))) {
            free(p); /* the peer is gone (e.g. cut off for not reading) */
            continue;
        }
        memset(&req, 0, offsetof(struct sncp_msg, capabilities));
        req.version = SNCP_VERSION;
        req.type = p->type;
        req.xid = p->xid;
        int err = p->err;
        if (commit_failed && !err) {
            err = SNCP_E_INTERNAL;
            p->res.reason = "state could not be stored";
        }
        srv->c.status_out[sncp_status_from_error(err) < SNCP_STATUS_COUNT_
                              ? sncp_status_from_error(err)
                              : SNCP_STATUS_INTERNAL]++;
        if (err) {
            respond_failure(s, &req, err, p);
        } else {
            sncp_msg_init(&rsp, SNCP_MSG_RESPONSE, p->xid);
            const struct nnve_result *r = &p->res;
            rsp.flags = r->flags;
            if (p->hello) {
                rsp.version_min = rsp.version_max = SNCP_VERSION;
                sncp_msg_set(&rsp, SNCP_TLV_VERSION_RANGE);
                snprintf(rsp.node_id, sizeof rsp.node_id, "%s",
                         srv->cfg->node_id ? srv->cfg->node_id : "nnve-daemon");
                sncp_msg_set(&rsp, SNCP_TLV_NODE_ID);
                rsp.keepalive_ms = srv->cfg->keepalive_ms;
                sncp_msg_set(&rsp, SNCP_TLV_KEEPALIVE);
                rsp.hold_time_ms = srv->cfg->hold_time_ms;
                sncp_msg_set(&rsp, SNCP_TLV_HOLD_TIME);
                rsp.capabilities = SNCP_CAPS_IMPLEMENTED;
                sncp_msg_set(&rsp, SNCP_TLV_CAPABILITIES);
                snprintf(rsp.port, sizeof rsp.port, "%s", s->port);
                sncp_msg_set(&rsp, SNCP_TLV_PORT);
            }
            if (r->n_tags) {
                rsp.tags[0] = r->tags[0];
                rsp.n_tags = 1;
            }
            if (r->has_tsi_state) {
                rsp.tsi_state = r->tsi_state;
                sncp_msg_set(&rsp, SNCP_TLV_TSI_STATE);
            }
            if (r->has_vn)
                nnve_vn_to_msg(&rsp, &r->vn);
            int rc = sncp_conn_respond(s->conn, &req, &rsp);
            if (rc < 0)
                snv_log_rl(&srv->rl, SNV_LOG_ERR, "server",
                           "cannot encode response hypervisor=%s type=%s err=%s", s->identity,
                           sncp_msg_type_name(p->type), sncp_strerror(rc));
        }
        snv_hist_add_us(&srv->request_us, now_us - p->queued_us);
        close |= p->close_after;
        free(p);
    }
    s->pend_head = s->pend_tail = NULL;
    sncp_conn_uncork(s->conn);
    if (close)
        sncp_conn_close(s->conn);
}

/* After the state was rebuilt from the store its hypervisor objects are new: sessions find
 * theirs again by identity (a session the state could not keep is closed). */
static void sessions_rebind(struct nnve_server *srv)
{
    for (struct session *s = srv->sessions; s; s = s->next) {
        if (!s->hv)
            continue;
        s->hv = nnve_state_hv_find(srv->state, s->identity);
        if (!s->hv || nnve_state_hv_session(s->hv) != s) {
            s->hv = NULL;
            srv->n_established--;
            sncp_conn_close(s->conn);
        }
    }
}

static void checkpoint_start(struct nnve_server *srv);

/* Counts and (debug) logs a request that failed with err (0: nothing). */
static void request_failed(struct session *s, const struct sncp_msg *req, int err)
{
    if (!err)
        return;
    s->failures++;
    if (err == SNCP_E_NOT_AUTHORIZED)
        s->srv->c.not_authorized++;
    if (snv_log_get_level() >= SNV_LOG_DEBUG)
        snv_log_rl(&s->srv->rl_req, SNV_LOG_DEBUG, "session",
                   "request failed hypervisor=%s type=%s xid=%u status=%s", s->identity,
                   sncp_msg_type_name(req->type), req->xid, sncp_error_token(err));
}

/* The requests held now: each one held is answered, BUSY after all or dropped once. */
static uint64_t defer_count(const struct nnve_server *srv)
{
    const struct counters *c = &srv->c;
    return c->deferred - c->deferred_done - c->deferred_busy - c->deferred_dropped;
}

/* Whether a deferred request of s may still be applied: s has its hypervisor and is not
 * closing (closed for a revoked certificate or a withdrawn identity at a reload, its close
 * callback not run yet: what it asked for before is not applied after). */
static int defer_live(struct session *s)
{
    return s->hv && !s->replaced && !sncp_session_is_closed(sncp_conn_session(s->conn));
}

/* Applies a deferred request again (or, at shutdown or for a session that lost its
 * hypervisor or is closing, gives its BUSY) and queues the answer; frees d. */
static void defer_answer(struct nnve_server *srv, struct deferred *d)
{
    struct session *s = d->s;
    s->n_deferred--;
    struct nnve_result res = d->res;
    int err = SNCP_E_BUSY;
    if (defer_live(s) && !srv->shutting_down)
        err = nnve_state_request(srv->state, s->hv, &d->req, uv_now(srv->loop), &res);
    request_failed(s, &d->req, err);
    if (err == SNCP_E_BUSY)
        srv->c.deferred_busy++;
    else
        srv->c.deferred_done++;
    queue(s, &d->req, err, &res, 0, 0);
    free(d);
}

/* Answers the deferred requests of session `only` (NULL: of all) whose claim was answered,
 * whose pair session dropped or whose time is up; with `all`, every one of them. */
static void defer_run(struct nnve_server *srv, const struct session *only, int all)
{
    uint64_t now = uv_now(srv->loop);
    for (struct deferred **pp = &srv->deferred; *pp;) {
        struct deferred *d = *pp;
        int wait = !all && !srv->shutting_down && defer_live(d->s) && now < d->deadline &&
                   nnve_pair_claim_pending(srv->pair, &d->res.busy_vn);
        if ((only && d->s != only) || wait) {
            pp = &d->next;
            continue;
        }
        *pp = d->next;
        defer_answer(srv, d);
    }
}

/* Frees the deferred requests of a closed session, unanswered. */
static void defer_drop(struct session *s)
{
    struct nnve_server *srv = s->srv;
    for (struct deferred **pp = &srv->deferred; *pp && s->n_deferred;) {
        struct deferred *d = *pp;
        if (d->s != s) {
            pp = &d->next;
            continue;
        }
        *pp = d->next;
        s->n_deferred--;
        srv->c.deferred_dropped++;
        free(d);
    }
}

/* Keeps a request refused BUSY (res) for a pending claim until the claim is answered.
 * Returns 1 when it waits, 0 when it is to be answered now (no claim, over the bounds, no
 * memory). */
static int defer(struct session *s, const struct sncp_msg *req, const struct nnve_result *res)
{
    struct nnve_server *srv = s->srv;
    if (!res->retry_after_ms || !nnve_pair_claim_pending(srv->pair, &res->busy_vn))
        return 0;
    if (s->n_deferred >= DEFER_MAX_PER_SESSION || defer_count(srv) >= DEFER_MAX) {
        srv->c.deferred_refused++;
        snv_log_rl(&srv->rl_req, SNV_LOG_WARN, "session",
                   "too many requests waiting for a pair claim hypervisor=%s: BUSY", s->identity);
        return 0;
    }
    struct deferred *d = malloc(sizeof *d);
    if (!d)
        return 0;
    d->s = s;
    d->deadline = uv_now(srv->loop) + DEFER_MAX_MS;
    d->res = *res;
    d->req = *req;
    d->next = srv->deferred;
    srv->deferred = d;
    s->n_deferred++;
    srv->c.deferred++;
    return 1;
}

/* Whether req may be applied before the session's deferred requests: only a VN_CONNECT or
 * VN_DISCONNECT of another VN (by VN_ID) keeps them waiting, so the requests of one VN
 * take effect in the order received (PROTOCOL.md §3.3). */
static int defer_may_pass(const struct session *s, const struct sncp_msg *req)
{
    if ((req->type != SNCP_MSG_VN_CONNECT && req->type != SNCP_MSG_VN_DISCONNECT) ||
        !sncp_msg_has(req, SNCP_TLV_VN_ID))
        return 0;
    for (const struct deferred *d = s->srv->deferred; d; d = d->next)
        if (d->s == s && (!sncp_msg_has(&d->req, SNCP_TLV_VN_ID) || d->req.vn_id == req->vn_id))
            return 0;
    return 1;
}

/* Group commit, then the responses of this loop iteration.  A failed group is undone in
 * the state (rebuilt from the store). */
static void on_check(uv_check_t *h)
{
    struct nnve_server *srv = h->data;
    int failed = 0;
    if (srv->deferred)
        defer_run(srv, NULL, 0); /* into this group: its answers leave after the commit */
    if (nnve_state_commit(srv->state, uv_now(srv->loop))) {
        srv->c.commit_failures++;
        failed = 1;
        sessions_rebind(srv);
    }
    snv_log_flush(); /* the audit lines of what is acknowledged below are written first */
    if (nnve_store_checkpoint_wanted(srv->store))
        checkpoint_start(srv);
    if (srv->dirty)
        srv->busy = srv->heap_used = 1;
    while (srv->dirty) {
        struct session *s = srv->dirty;
        srv->dirty = s->dirty_next;
        s->dirty = 0;
        flush_session(s, failed);
    }
    nnve_pair_flush(srv->pair, failed);
}

void nnve_server_set_pair(struct nnve_server *srv, struct nnve_pair *pair)
{
    srv->pair = pair;
}

struct nnve_pair *nnve_server_pair(const struct nnve_server *srv)
{
    return srv->pair;
}

static void on_log_flush(uv_prepare_t *h)
{
    (void)h;
    snv_log_flush();
}

/* Sets the calling thread to SCHED_IDLE, saving its policy in *pol and *old.  Returns 0 or
 * -errno. */
static int sched_idle_enter(int *pol, struct sched_param *old)
{
    struct sched_param idle = {.sched_priority = 0};
    int e = pthread_getschedparam(pthread_self(), pol, old);
    if (!e)
        e = pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
    return -e;
}

/* Whether a thread may go to SCHED_IDLE and come back (leaving it needs CAP_SYS_NICE or an
 * RLIMIT_NICE that allows the thread's nice value): tried on a thread of its own, since a
 * pool thread that could not come back would run everything after at idle priority. */
static void *idle_probe(void *arg)
{
    int pol, *ok = arg;
    struct sched_param old;
    *ok = !sched_idle_enter(&pol, &old) && !pthread_setschedparam(pthread_self(), pol, &old);
    return NULL;
}

/* A checkpoint copies and syncs pages while the loop commits: at SCHED_IDLE it runs on CPU
 * time nobody else wants, instead of delaying the loop (or a client on the same machine)
 * between a request's arrival and its commit.  It never holds a lock the loop waits for
 * (PASSIVE, busy_timeout 0; see store.c), so a starved pass only leaves the log longer. */
static void checkpoint_work(uv_work_t *w)
{
    struct nnve_server *srv = w->data;
    int pol = 0;
    struct sched_param old = {0};
    int idle = srv->checkpoint_idle && !sched_idle_enter(&pol, &old);
    nnve_store_checkpoint(srv->store);
    if (idle)
        pthread_setschedparam(pthread_self(), pol, &old);
}

static void checkpoint_done(uv_work_t *w, int status)
{
    struct nnve_server *srv = w->data;
    if (status == 0)
        nnve_store_checkpoint_done(srv->store);
    srv->checkpoint_running = 0;
    /* After an idle spell's checkpoint that no commit followed: the log is restarted now
     * rather than by the next request's commit (nnve_store_restart_log()). */
    if (status == 0 && srv->checkpoint_idle_pass &&
        nnve_store_stats(srv->store)->commits == srv->checkpoint_commits)
        nnve_store_restart_log(srv->store);
    srv->checkpoint_idle_pass = 0;
}

/* Runs a checkpoint on the worker thread, unless one is running. */
static void checkpoint_start(struct nnve_server *srv)
{
    if (!srv->store || srv->checkpoint_running)
        return;
    srv->checkpoint_commits = nnve_store_stats(srv->store)->commits;
    srv->checkpoint_running = 1;
    srv->checkpoint.data = srv;
    if (uv_queue_work(srv->loop, &srv->checkpoint, checkpoint_work, checkpoint_done) < 0)
        srv->checkpoint_running = 0;
}

static void on_tick(uv_timer_t *t)
{
    struct nnve_server *srv = t->data;
    nnve_state_tick(srv->state, uv_now(srv->loop));
    ++srv->ticks;
    /* Degraded: try to store the whole state again, after 1 s, 2 s, ... then every 8 s (a
     * full rewrite of a large state is not free, and a full disk stays full a while). */
    uint64_t now = uv_now(srv->loop);
    if (nnve_state_degraded(srv->state) && now >= srv->recover_at) {
        uint64_t reverts = nnve_state_reverts(srv->state);
        int r = nnve_state_recover(srv->state, now);
        if (nnve_state_reverts(srv->state) != reverts)
            sessions_rebind(srv); /* it reloaded the state from the store */
        if (r == 0) {
            srv->recover_ms = 0;
        } else {
            srv->recover_ms = srv->recover_ms ? srv->recover_ms * 2 : 1000;
            if (srv->recover_ms > 8000)
                srv->recover_ms = 8000;
            srv->recover_at = now + srv->recover_ms;
        }
    }
    /* A second without a request after a busy spell: hand the heap's free pages back (a
     * burst of handshakes or requests leaves them resident, the idle sessions need none). */
    if (srv->ticks % 5 == 0) {
        if (!srv->busy && srv->heap_used) {
            malloc_trim(0);
            srv->heap_used = 0;
        }
        srv->busy = 0;
    }
    /* After a second without a commit, fold the write-ahead log into the database off the
     * loop.  Not while requests come: a checkpoint that copies the whole log makes the next
     * commit restart it, and a restarted log's header is synced before that commit's own
     * sync (two syncs for the requests that wait on it); the worker's syncs also slow the
     * commit's.  A busy log asks for the worker itself (nnve_store_checkpoint_wanted()). */
    if (srv->store && srv->ticks % 5 == 0) {
        uint64_t commits = nnve_store_stats(srv->store)->commits;
        if (commits == srv->second_commits && commits != srv->checkpoint_commits &&
            !srv->checkpoint_running) {
            checkpoint_start(srv);
            srv->checkpoint_idle_pass = srv->checkpoint_running;
        }
        srv->second_commits = commits;
    }
}

/* ---- HELLO ------------------------------------------------------------------------ */

static void hello_moved_notify(struct nnve_server *srv, struct nnve_hv *hv);

static void hello(struct session *s, const struct sncp_msg *req)
{
    struct nnve_server *srv = s->srv;
    uint64_t now = uv_now(srv->loop);
    snprintf(s->node_id, sizeof s->node_id, "%s", req->node_id);
    s->epoch = req->session_epoch;
    /* PROTOCOL.md §6.1: authorization first, then the version. */
    const struct nnve_hv_cfg *hc = nnve_config_find_hv(srv->cfg, s->identity);
    if (!hc) {
        srv->c.hello_refused++;
        srv->c.not_authorized++;
        snv_audit("session", "refused: identity not authorized hypervisor=%s peer=%s node_id=%s",
                  s->identity, s->peer, s->node_id);
        queue_error(s, req, SNCP_E_NOT_AUTHORIZED, 0, "identity not authorized", 1);
        return;
    }
    if (req->version_min > SNCP_VERSION || req->version_max < SNCP_VERSION) {
        srv->c.hello_refused++;
        snv_audit("session", "refused: no common version hypervisor=%s peer=%s offered=%u-%u",
                  s->identity, s->peer, req->version_min, req->version_max);
        struct pending *p = queue_error(s, req, SNCP_E_UNSUPPORTED_VERSION, SNCP_TLV_VERSION_RANGE,
                                        "this nNVE speaks SNCP version 1", 1);
        if (p)
            p->version_range = 1;
        return;
    }
    /* A session that replaces one of its identity takes no new place. */
    struct nnve_hv *prev_hv = nnve_state_hv_find(srv->state, s->identity);
    unsigned replacing = prev_hv && nnve_state_hv_session(prev_hv) ? 1 : 0;
    if (srv->n_established - replacing >= srv->cfg->max_sessions) {
        srv->c.hello_refused++;
        snv_audit("session", "refused: max_sessions reached hypervisor=%s peer=%s max_sessions=%u",
                  s->identity, s->peer, srv->cfg->max_sessions);
        queue_error(s, req, SNCP_E_RESOURCE_LIMIT, 0, "too many sessions", 1);
        return;
    }
    if (s->l2_if[0]) {
        /* Over L2 the port is where the frames arrive; a configured port must agree. */
        if (hc->port && strcmp(hc->port, s->l2_if)) {
            srv->c.hello_refused++;
            srv->c.not_authorized++;
            snv_audit("session",
                      "refused: frames arrive on another port than configured hypervisor=%s "
                      "peer=%s interface=%s port=%s",
                      s->identity, s->peer, s->l2_if, hc->port);
            queue_error(s, req, SNCP_E_NOT_AUTHORIZED, 0,
                        "this hypervisor is configured on another port", 1);
            return;
        }
        snprintf(s->port, sizeof s->port, "%s", s->l2_if);
    } else if (hc->port) {
        snprintf(s->port, sizeof s->port, "%s", hc->port);
    } else {
        /* port = learn over TCP: the UPLINK_MACs are the peer's word, and any MAC it names
         * (another hypervisor's) is in the forwarding table.  Nothing ties this TLS
         * connection to a switch port, so the port is not learned: refused. */
        srv->c.hello_refused++;
        srv->c.not_authorized++;
        snv_audit("session",
                  "refused: port = learn cannot be confirmed over TCP hypervisor=%s peer=%s "
                  "macs=%u status=not-authorized",
                  s->identity, s->peer, req->n_uplink_macs);
        queue_error(s, req, SNCP_E_NOT_AUTHORIZED, SNCP_TLV_UPLINK_MAC,
                    "port = learn needs the Layer-2 transport (the port is where the frames "
                    "arrive)",
                    1);
        return;
    }
    if (!nnve_config_port_domain(srv->cfg, s->port)) {
        srv->c.hello_refused++;
        snv_audit("session", "refused: port in no domain hypervisor=%s port=%s", s->identity,
                  s->port);
        queue_error(s, req, SNCP_E_NOT_AUTHORIZED, 0, "port of this hypervisor is in no domain", 1);
        return;
    }
    /* A newer session replaces an older one of the same identity. */
    struct nnve_hv *old_hv = nnve_state_hv_find(srv->state, s->identity);
    struct session *old = old_hv ? nnve_state_hv_session(old_hv) : NULL;
    if (old && old != s) {
        old->replaced = 1;
        old->hv = NULL;
        nnve_state_hv_set_session(old_hv, NULL);
        srv->n_established--;
        srv->c.sessions_replaced++;
        snv_audit("session", "replaced by a new session hypervisor=%s old_peer=%s peer=%s",
                  s->identity, old->peer, s->peer);
        sncp_conn_close(old->conn);
    }
    struct nnve_hv *hv;
    int r = nnve_state_hv_up(srv->state, s->identity, s->port, now, &hv);
    if (r) {
        srv->c.hello_refused++;
        snv_audit("session", "refused: cannot bind the session hypervisor=%s port=%s err=%s",
                  s->identity, s->port, sncp_error_token(r));
        /* The replaced session's state is not orphaned: it is held, as at a session loss. */
        if (old_hv && (old_hv = nnve_state_hv_find(srv->state, s->identity)) != NULL &&
            !nnve_state_hv_session(old_hv))
            nnve_state_hv_down(srv->state, old_hv, now);
        queue_error(s, req, r, 0, "cannot bind the session", 1);
        return;
    }
    s->hv = hv;
    s->peer_caps = sncp_msg_has(req, SNCP_TLV_CAPABILITIES) ? req->capabilities : 0;
    nnve_state_hv_set_session(hv, s);
    sncp_conn_hello_done(s->conn);
    srv->n_established++;
    srv->c.sessions_established++;
    if (sncp_msg_has(req, SNCP_TLV_KEEPALIVE)) {
        s->peer_keepalive_ms = req->keepalive_ms;
        sncp_session_set_peer_keepalive(sncp_conn_session(s->conn), req->keepalive_ms);
    }
    snv_audit("session",
              "established hypervisor=%s peer=%s node_id=%s port=%s epoch=%" PRIu64 " tsis=%u",
              s->identity, s->peer, s->node_id, s->port, s->epoch, nnve_state_hv_tsis(hv));
    queue(s, req, 0, NULL, 1, 0);
    hello_moved_notify(srv, hv);
}

/* ---- connection callbacks ---------------------------------------------------------- */

/* Closes s if the CRL loaded now revokes its peer's certificate: at a reload, and when a
 * handshake that began under an older CRL completes.  Returns 1 if it did. */
static int close_if_revoked(struct session *s)
{
    char why[256];
    const struct sncp_tls *t = sncp_session_tls(sncp_conn_session(s->conn));
    if (!t || !sncp_tls_revoked(t, s->srv->tls, why, sizeof why))
        return 0;
    s->srv->c.revoked_closed++;
    SNV_WARN("session", "closing: certificate revoked hypervisor=%s peer=%s detail=%s", s->identity,
             s->peer, why);
    sncp_conn_close(s->conn);
    return 1;
}

static void on_connected(struct sncp_conn *c, const char *identity)
{
    struct nnve_server *srv = sncp_conn_data(c);
    size_t id_len = strnlen(identity, SNCP_TLS_IDENTITY_MAX - 1);
    struct session *s = calloc(1, sizeof *s + id_len + 1);
    if (!s) {
        sncp_conn_close(c);
        return;
    }
    s->tag = TAG_SESSION;
    s->srv = srv;
    s->conn = c;
    memcpy(s->identity, identity, id_len);
    snprintf(s->peer, sizeof s->peer, "%s", sncp_conn_peer_name(c));
    const char *ifname;
    if (sncp_conn_l2_peer(c, &ifname, NULL, NULL) == 0)
        snprintf(s->l2_if, sizeof s->l2_if, "%s", ifname);
    s->connected_at = uv_now(srv->loop);
    s->next = srv->sessions;
    if (srv->sessions)
        srv->sessions->prev = s;
    srv->sessions = s;
    srv->n_sessions++;
    srv->c.sessions_accepted++;
    sncp_conn_set_data(c, s);
    snv_audit("session", "authenticated hypervisor=%s peer=%s", identity, s->peer);
    if (srv->shutting_down)
        sncp_conn_close(c);
    else
        close_if_revoked(s);
}

static void on_request(struct sncp_conn *c, const struct sncp_msg *req)
{
    struct session *s = sncp_conn_data(c);
    struct nnve_server *srv = s->srv;
    if (srv->shutting_down || s->replaced)
        return;
    if (req->type <= SNCP_MSG_TYPE_MAX)
        srv->c.msgs_in[req->type]++;
    s->requests++;
    if (s->n_deferred && !defer_may_pass(s, req))
        defer_run(srv, s, 1);
    if (req->type == SNCP_MSG_HELLO) {
        if (s->hv || s->pend_head) {
            queue_error(s, req, SNCP_E_UNEXPECTED_MESSAGE, 0, "second HELLO", 0);
            return;
        }
        hello(s, req);
        return;
    }
    if (!s->hv) {
        s->failures++;
        snv_log_rl(&srv->rl_req, SNV_LOG_WARN, "session",
                   "request before HELLO hypervisor=%s type=%s", s->identity,
                   sncp_msg_type_name(req->type));
        queue_error(s, req, SNCP_E_UNEXPECTED_MESSAGE, 0, "HELLO first", 0);
        return;
    }
    struct nnve_result res;
    int err = nnve_state_request(srv->state, s->hv, req, uv_now(srv->loop), &res);
    if (err == SNCP_E_BUSY && defer(s, req, &res))
        return;
    request_failed(s, req, err);
    queue(s, req, err, &res, 0, 0);
}

static void op_answer(struct nnve_server *srv, uint64_t cookie, const char *identity, int err,
                      const struct sncp_msg *rsp);

static void on_response(struct sncp_conn *c, uint64_t cookie, const struct sncp_msg *rsp, int err)
{
    struct session *s = sncp_conn_data(c);
    if (!err && rsp && rsp->status != SNCP_STATUS_SUCCESS)
        err = sncp_error_from_status(rsp->status);
    op_answer(s->srv, cookie, s->identity, err, rsp);
}

static void on_closed(struct sncp_conn *c, int err)
{
    void *data = sncp_conn_data(c);
    struct nnve_server *srv;
    struct session *s = NULL;
    if (*(const uint32_t *)data == TAG_SESSION) {
        s = data;
        srv = s->srv;
    } else {
        srv = data; /* TLS never completed */
    }
    if (!s) {
        if (err) {
            srv->c.handshake_failures++;
            snv_log_rl(&srv->rl_auth, SNV_LOG_WARN, "session",
                       "TLS handshake failed peer=%s err=%s detail=%s", sncp_conn_peer_name(c),
                       sncp_error_token(err), sncp_session_error(sncp_conn_session(c)));
        }
        return;
    }
    const struct sncp_session_stats *ss = sncp_session_stats(sncp_conn_session(c));
    srv->c.malformed += ss->malformed;
    srv->c.busy_rejected += ss->busy_rejected;
    srv->c.timeouts += ss->timeouts;
    srv->c.unmatched += ss->unmatched;
    if (err)
        srv->c.sessions_closed_error++;
    if (err == SNCP_E_TIMEOUT && !s->hv && !s->replaced)
        srv->c.hello_timeouts++;
    if (err || !s->hv)
        snv_audit("session", "closed hypervisor=%s peer=%s reason=%s detail=%s", s->identity,
                  s->peer, err ? sncp_error_token(err) : "orderly",
                  sncp_session_error(sncp_conn_session(c)));
    else
        snv_audit("session", "closed hypervisor=%s peer=%s reason=orderly", s->identity, s->peer);
    if (s->hv) {
        srv->n_established--;
        nnve_state_hv_set_session(s->hv, NULL);
        if (!srv->shutting_down)
            nnve_state_hv_down(srv->state, s->hv, uv_now(srv->loop));
        s->hv = NULL;
    }
    if (s->dirty) {
        struct session **pp = &srv->dirty;
        while (*pp != s)
            pp = &(*pp)->dirty_next;
        *pp = s->dirty_next;
    }
    defer_drop(s);
    free_pending(s);
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    srv->n_sessions--;
    free(s);
}

static const struct sncp_conn_cbs conn_cbs = {
    .connected = on_connected,
    .request = on_request,
    .response = on_response,
    .closed = on_closed,
};

/* ---- operator actions ------------------------------------------------------------- */

struct op_ctx {
    struct nnve_server *srv;
    struct op *op;
};

static void op_notify(void *aux, struct nnve_hv *hv, struct sncp_msg *msg)
{
    struct op_ctx *oc = aux;
    struct session *s = nnve_state_hv_session(hv);
    if (!s) {
        oc->op->failed++;
        return;
    }
    /* Only what the tNVE advertised (PROTOCOL.md §8.2). */
    if (!(s->peer_caps & SNCP_CAP_MIGRATION))
        msg->flags &= (uint16_t) ~(SNCP_F_MIGRATION | SNCP_F_MIGRATION_SOURCE);
    if (msg->type == SNCP_MSG_TSI_UPDATE && !(s->peer_caps & SNCP_CAP_ADDR_UPDATE)) {
        oc->op->failed++;
        json_array_append_new(oc->op->answers,
                              json_pack("{s:s, s:s, s:s}", "hypervisor", s->identity, "status",
                                        sncp_error_token(SNCP_E_UNEXPECTED_MESSAGE), "reason",
                                        "the hypervisor did not advertise ADDR_UPDATE"));
        return;
    }
    oc->srv->c.requests_sent++;
    int64_t r = sncp_conn_send(s->conn, msg, oc->op->cookie);
    if (r < 0) {
        oc->srv->c.requests_failed++;
        oc->op->failed++;
        json_array_append_new(oc->op->answers, json_pack("{s:s, s:s}", "hypervisor", s->identity,
                                                         "status", sncp_error_token((int)r)));
        return;
    }
    oc->op->waiting++;
}

static void op_finish(struct nnve_server *srv, struct op *op)
{
    struct op **pp = &srv->ops;
    while (*pp && *pp != op)
        pp = &(*pp)->next;
    if (*pp)
        *pp = op->next;
    if (op->req) {
        if (op->failed) {
            char *answers = json_dumps(op->answers, JSON_COMPACT);
            snv_ctl_reply_error(op->req, SNV_CTL_FAILED,
                                "applied here; %u of %u hypervisor(s) did not confirm: %s",
                                op->failed, op->failed + op->ok, answers ? answers : "");
            free(answers);
        } else
            snv_ctl_reply_ok(op->req, json_pack("{s:O}", "answers", op->answers));
    }
    json_decref(op->answers);
    free(op);
}

static void op_answer(struct nnve_server *srv, uint64_t cookie, const char *identity, int err,
                      const struct sncp_msg *rsp)
{
    (void)rsp;
    struct op *op = srv->ops;
    while (op && op->cookie != cookie)
        op = op->next;
    if (!op)
        return;
    if (err) {
        op->failed++;
        srv->c.requests_failed++;
        SNV_WARN("operator", "agent did not confirm hypervisor=%s err=%s", identity,
                 sncp_error_token(err));
    } else {
        op->ok++;
    }
    json_array_append_new(op->answers, json_pack("{s:s, s:s}", "hypervisor", identity, "status",
                                                 err ? sncp_error_token(err) : "success"));
    if (--op->waiting == 0)
        op_finish(srv, op);
}

static struct op *op_new(struct nnve_server *srv, struct snv_ctl_req *req)
{
    struct op *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->req = req;
    op->cookie = ++srv->next_cookie;
    op->answers = json_array();
    return op;
}

static void op_result(struct nnve_server *srv, struct snv_ctl_req *req, struct op *op, int r,
                      const char *what)
{
    if (r < 0) {
        json_decref(op->answers);
        free(op);
        if (r == -ENOENT)
            snv_ctl_reply_error(req, SNV_CTL_NOT_FOUND, "no such %s", what);
        else if (r == SNCP_E_INVALID_VALUE)
            snv_ctl_reply_error(req, SNV_CTL_USAGE, "invalid %s", what);
        else
            snv_ctl_reply_error(req, SNV_CTL_FAILED, "%s", sncp_strerror(r));
        return;
    }
    if (op->waiting == 0) {
        op->next = NULL;
        op_finish(srv, op);
        return;
    }
    op->next = srv->ops;
    srv->ops = op;
}

/* A HELLO that moved the hypervisor to a port in another significance domain: each VN
 * connection the move ended is an nNVE VN_DISCONNECT to it (PROTOCOL.md §6.9); the answers
 * are logged like those of a reload's withdrawals. */
static void hello_moved_notify(struct nnve_server *srv, struct nnve_hv *hv)
{
    struct op *op = op_new(srv, NULL);
    if (!op) {
        nnve_state_hv_moved_notify(srv->state, hv, NULL, NULL);
        return;
    }
    struct op_ctx oc = {srv, op};
    unsigned n = nnve_state_hv_moved_notify(srv->state, hv, op_notify, &oc);
    if (n)
        SNV_INFO("policy", "port moved to another domain: withdrew vn_connections=%u notified=%u",
                 n, op->waiting);
    op_result(srv, NULL, op, 0, "");
}

void nnve_server_op_vn_disconnect(struct nnve_server *srv, struct snv_ctl_req *req,
                                  const char *identity, const char *vn)
{
    struct op *op = op_new(srv, req);
    if (!op) {
        snv_ctl_reply_error(req, SNV_CTL_FAILED, "out of memory");
        return;
    }
    struct op_ctx oc = {srv, op};
    int r =
        nnve_state_op_vn_disconnect(srv->state, identity, vn, uv_now(srv->loop), op_notify, &oc);
    if (r >= 0)
        snv_audit("operator", "vn disconnect hypervisor=%s vn=%s notified=%d", identity, vn, r);
    op_result(srv, req, op, r, "hypervisor or VN connection");
}

void nnve_server_op_tsi(struct nnve_server *srv, struct snv_ctl_req *req, enum sncp_msg_type type,
                        const char *tsi, const char *const *addrs, int n_addrs)
{
    struct op *op = op_new(srv, req);
    if (!op) {
        snv_ctl_reply_error(req, SNV_CTL_FAILED, "out of memory");
        return;
    }
    struct op_ctx oc = {srv, op};
    int r =
        nnve_state_op_tsi(srv->state, type, tsi, addrs, n_addrs, uv_now(srv->loop), op_notify, &oc);
    if (r >= 0)
        snv_audit("operator", "%s tsi=%s addrs=%d notified=%d",
                  type == SNCP_MSG_TSI_DEACTIVATE ? "tsi deactivate" : "tsi deassociate", tsi,
                  n_addrs, r);
    op_result(srv, req, op, r, "TSI (or TSI/address text)");
}

void nnve_server_op_tsi_update(struct nnve_server *srv, struct snv_ctl_req *req, const char *tsi,
                               const char *op_s, const char *const *addrs, int n_addrs)
{
    struct op *op = op_new(srv, req);
    if (!op) {
        snv_ctl_reply_error(req, SNV_CTL_FAILED, "out of memory");
        return;
    }
    struct op_ctx oc = {srv, op};
    const char *reason = NULL;
    int r =
        nnve_state_op_tsi_update(srv->state, tsi, op_s, addrs, n_addrs, op_notify, &oc, &reason);
    if (r >= 0)
        snv_audit("operator", "tsi update tsi=%s op=%s addrs=%d notified=%d", tsi, op_s, n_addrs,
                  r);
    if (reason && r < 0) { /* refused by policy: nothing changed */
        snv_ctl_reply_error(req, SNV_CTL_FAILED, "%s: %s", sncp_strerror(r), reason);
        json_decref(op->answers);
        free(op);
        return;
    }
    op_result(srv, req, op, r, "TSI, update operation or address");
}

/* ---- views ------------------------------------------------------------------------ */

/* A JSON string for text that should be UTF-8.  Identities (sncp-tls) and the names a peer
 * sends (the codec) are checked before they get here; should anything else slip through,
 * its row still shows, with the offending bytes as \xNN, instead of vanishing (jansson
 * refuses invalid UTF-8). */
static json_t *json_text(const char *text)
{
    json_t *j = json_string(text);
    if (j)
        return j;
    char buf[4 * SNCP_TLS_IDENTITY_MAX + 1];
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p && o + 5 < sizeof buf; p++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, *p >= 0x20 && *p < 0x7f ? "%c" : "\\x%02x",
                              *p);
    return json_string(buf);
}

json_t *nnve_server_show_sessions(const struct nnve_server *srv)
{
    json_t *arr = json_array();
    uint64_t now = uv_now(srv->loop);
    for (const struct session *s = srv->sessions; s; s = s->next) {
        if (s->replaced)
            continue;
        const struct sncp_session_stats *ss = sncp_session_stats(sncp_conn_session(s->conn));
        json_t *row = json_pack(
            "{s:o, s:s, s:s, s:o, s:o, s:o, s:I, s:i, s:i, s:I, s:I, s:I, s:I}", "hypervisor",
            json_text(s->identity), "state", s->hv ? "established" : "hello-pending", "transport",
            sncp_conn_transport(s->conn), "peer", json_text(s->peer), "port", json_text(s->port),
            "node_id", json_text(s->node_id), "epoch", (json_int_t)s->epoch, "tsis",
            s->hv ? (int)nnve_state_hv_tsis(s->hv) : 0, "vns",
            s->hv ? (int)nnve_state_hv_vns(s->hv) : 0, "uptime_ms",
            (json_int_t)(now - s->connected_at), "requests", (json_int_t)s->requests, "failures",
            (json_int_t)s->failures, "malformed", (json_int_t)ss->malformed);
        /* L2: where the peer is now (its VLAN follows its latest frame). */
        const char *ifname;
        uint8_t mac[6];
        uint16_t vlan;
        if (sncp_conn_l2_peer(s->conn, &ifname, mac, &vlan) == 0) {
            char mbuf[SNCP_MAC_STRLEN];
            sncp_mac_format(mac, mbuf, sizeof mbuf);
            json_object_set_new(row, "interface", json_string(ifname));
            json_object_set_new(row, "peer_mac", json_string(mbuf));
            json_object_set_new(row, "vlan", json_integer(vlan));
        }
        json_array_append_new(arr, row);
    }
    /* Hypervisors in hold (session lost, state kept). */
    size_t pos = 0;
    struct nnve_hv *hv;
    while ((hv = nnve_state_hv_next(srv->state, &pos)) != NULL) {
        uint64_t until = nnve_state_hv_hold_until(hv);
        if (!until)
            continue;
        json_array_append_new(
            arr, json_pack("{s:o, s:s, s:s, s:o, s:s, s:I, s:i, s:i, s:I, s:I, s:I, s:I}",
                           "hypervisor", json_text(nnve_state_hv_identity(hv)), "state", "held",
                           "peer", "", "port", json_text(nnve_state_hv_port(hv)), "node_id", "",
                           "epoch", (json_int_t)0, "tsis", (int)nnve_state_hv_tsis(hv), "vns",
                           (int)nnve_state_hv_vns(hv), "uptime_ms", (json_int_t)0, "requests",
                           (json_int_t)0, "failures", (json_int_t)0, "hold_remaining_ms",
                           (json_int_t)(until > now ? until - now : 0)));
    }
    return arr;
}

typedef void counter_fn(void *aux, const char *name, const char *help, const char *lkey,
                        const char *lval, uint64_t value);

struct domain_aux {
    counter_fn *fn;
    void *aux;
};

static void domain_rows(void *aux, const char *domain, unsigned size, unsigned used, unsigned held)
{
    struct domain_aux *da = aux;
    da->fn(da->aux, "tags_in_use", "local tags in use per domain", "domain", domain, used);
    da->fn(da->aux, "tags_held", "local tags in hold-down per domain", "domain", domain, held);
    da->fn(da->aux, "tags_pool_size", "local tags in the pool per domain", "domain", domain, size);
}

/* Calls fn for every counter (name, help, optional label). */
static void each_counter(const struct nnve_server *srv, counter_fn *fn, void *aux)
{
    const struct counters *c = &srv->c;
    struct nnve_state_counters sc;
    nnve_state_counters(srv->state, &sc);
    uint64_t malformed = c->malformed, busy = c->busy_rejected, timeouts = c->timeouts;
    for (const struct session *s = srv->sessions; s; s = s->next) {
        const struct sncp_session_stats *ss = sncp_session_stats(sncp_conn_session(s->conn));
        malformed += ss->malformed;
        busy += ss->busy_rejected;
        timeouts += ss->timeouts;
    }
    fn(aux, "sessions", "established sessions", NULL, NULL, srv->n_established);
    fn(aux, "sessions_accepted_total", "TLS sessions accepted", NULL, NULL, c->sessions_accepted);
    fn(aux, "sessions_established_total", "HELLOs accepted", NULL, NULL, c->sessions_established);
    fn(aux, "sessions_replaced_total", "sessions replaced by a newer one", NULL, NULL,
       c->sessions_replaced);
    fn(aux, "sessions_closed_error_total", "sessions closed on an error", NULL, NULL,
       c->sessions_closed_error);
    fn(aux, "hello_refused_total", "HELLOs refused", NULL, NULL, c->hello_refused);
    fn(aux, "not_authorized_total", "requests refused by policy", NULL, NULL, c->not_authorized);
    fn(aux, "tls_handshake_failures_total", "TLS handshakes that failed or timed out", NULL, NULL,
       c->handshake_failures);
    struct sncp_listener_stats ls = {0};
    for (unsigned i = 0; i < srv->n_listeners; i++) {
        struct sncp_listener_stats one;
        sncp_listener_stats(srv->listeners[i], &one);
        ls.refused_max_conns += one.refused_max_conns;
        ls.refused_hello_pending += one.refused_hello_pending;
        ls.refused_per_source += one.refused_per_source;
        ls.hello_pending += one.hello_pending;
    }
    fn(aux, "hello_pending", "TCP connections that have not completed HELLO", NULL, NULL,
       ls.hello_pending);
    fn(aux, "hello_timeouts_total", "sessions closed for not completing HELLO in time", NULL, NULL,
       c->hello_timeouts);
    fn(aux, "connections_refused_total", "TCP connections refused at accept by limit", "limit",
       "max_sessions", ls.refused_max_conns);
    fn(aux, "connections_refused_total", "TCP connections refused at accept by limit", "limit",
       "max_hello_pending", ls.refused_hello_pending);
    fn(aux, "connections_refused_total", "TCP connections refused at accept by limit", "limit",
       "max_hello_pending_per_source", ls.refused_per_source);
    fn(aux, "sessions_revoked_total", "sessions closed because a new CRL revokes their peer", NULL,
       NULL, c->revoked_closed);
    fn(aux, "malformed_total", "malformed messages dropped or answered", NULL, NULL, malformed);
    fn(aux, "busy_rejected_total", "requests refused beyond max_outstanding", NULL, NULL, busy);
    fn(aux, "request_timeouts_total", "our requests to agents that timed out", NULL, NULL,
       timeouts);
    fn(aux, "commit_failures_total", "group commits that failed", NULL, NULL, c->commit_failures);
    fn(aux, "requests_sent_total", "operator requests sent to agents", NULL, NULL,
       c->requests_sent);
    for (unsigned t = 1; t <= SNCP_MSG_TYPE_MAX; t++)
        if (t != SNCP_MSG_RESPONSE && t != SNCP_MSG_KEEPALIVE)
            fn(aux, "messages_received_total", "requests received by type", "type",
               sncp_msg_type_name(t), c->msgs_in[t]);
    for (unsigned st = 0; st < SNCP_STATUS_COUNT_; st++)
        fn(aux, "responses_sent_total", "responses sent by status", "status",
           sncp_status_token((uint16_t)st), c->status_out[st]);
    if (srv->pair) {
        const struct nnve_pair_counters *pc = nnve_pair_counters(srv->pair);
        fn(aux, "pair_up", "1 while the ToR pair session is up", NULL, NULL,
           (uint64_t)nnve_pair_connected(srv->pair));
        fn(aux, "pair_sessions_total", "ToR pair sessions that came up", NULL, NULL,
           pc->sessions_up);
        fn(aux, "pair_sessions_down_total", "ToR pair sessions that ended", NULL, NULL,
           pc->sessions_down);
        fn(aux, "pair_peer_refused_total", "pair peers refused (identity, domain)", NULL, NULL,
           pc->peer_refused);
        fn(aux, "pair_peer_errors_total", "pair sessions closed for a bad message", NULL, NULL,
           pc->peer_errors);
        fn(aux, "pair_claims_total", "tag claims sent to the allocator", "result", "sent",
           pc->claims_sent);
        fn(aux, "pair_claims_total", "tag claims sent to the allocator", "result", "granted",
           pc->claims_granted);
        fn(aux, "pair_claims_total", "tag claims sent to the allocator", "result", "failed",
           pc->claims_failed);
        fn(aux, "pair_grants_total", "tag claims of the follower granted", NULL, NULL, pc->grants);
        fn(aux, "pair_partition_binds_total", "tags bound from our half while apart", NULL, NULL,
           pc->partition_binds);
        fn(aux, "pair_conflicts_total", "peer messages contradicting our tag table", NULL, NULL,
           pc->conflicts);
        fn(aux, "pair_splits_total", "VNs seen with two tags after a partition", NULL, NULL,
           pc->splits_seen);
        fn(aux, "pair_syncs_total", "pair resynchronisations completed", NULL, NULL, pc->syncs);
        static const char dh[] = "requests held for a tag claim instead of BUSY (held), then "
                                 "answered, BUSY after all or dropped with their session, or "
                                 "refused the wait (BUSY at once)";
        fn(aux, "pair_deferred_total", dh, "result", "held", c->deferred);
        fn(aux, "pair_deferred_total", dh, "result", "answered", c->deferred_done);
        fn(aux, "pair_deferred_total", dh, "result", "busy", c->deferred_busy);
        fn(aux, "pair_deferred_total", dh, "result", "refused", c->deferred_refused);
        fn(aux, "pair_deferred_total", dh, "result", "dropped", c->deferred_dropped);
        fn(aux, "pair_deferred", "requests waiting for a tag claim now", NULL, NULL,
           defer_count(srv));
    }
    fn(aux, "hypervisors", "hypervisors with state", NULL, NULL, sc.hypervisors);
    fn(aux, "hypervisors_held", "hypervisors in hold after session loss", NULL, NULL,
       sc.hypervisors_held);
    fn(aux, "vaps", "VAPs (domain, VN) with a tag", NULL, NULL, sc.vaps);
    fn(aux, "vn_connections", "hypervisor VN connections", NULL, NULL, sc.vn_connections);
    fn(aux, "tsis", "TSI instances by state", "state", "associated", sc.tsis_associated);
    fn(aux, "tsis", "TSI instances by state", "state", "activated", sc.tsis_activated);
    fn(aux, "tsis_migrating", "TSI instances marked migrating", NULL, NULL, sc.tsis_migrating);
    fn(aux, "tsi_transitions_total", "TSI state transitions", NULL, NULL, sc.transitions);
    fn(aux, "hold_expired_total", "hold timers that expired", NULL, NULL, sc.hold_expired);
    fn(aux, "sync_swept_tsis_total", "TSIs removed by SYNC_END", NULL, NULL, sc.sync_swept_tsis);
    fn(aux, "sync_swept_vns_total", "VN connections removed by SYNC_END", NULL, NULL,
       sc.sync_swept_vns);
    fn(aux, "backend_errors_total", "dataplane operations that failed", NULL, NULL,
       sc.backend_errors);
    fn(aux, "store_errors_total", "store writes that failed", NULL, NULL, sc.store_errors);
    fn(aux, "degraded", "1 while every request is refused until the state is stored again", NULL,
       NULL, sc.degraded);
    fn(aux, "degraded_entered_total", "times degraded mode was entered", NULL, NULL,
       sc.degraded_entered);
    fn(aux, "state_reverts_total", "failed groups undone by reloading the stored state", NULL, NULL,
       sc.reverts);
    if (srv->store) {
        const struct nnve_store_stats *ss = nnve_store_stats(srv->store);
        uint64_t db_bytes, wal_bytes;
        nnve_store_sizes(srv->store, &db_bytes, &wal_bytes);
        fn(aux, "store_db_bytes", "size of the database file", NULL, NULL, db_bytes);
        fn(aux, "store_wal_bytes", "size of the write-ahead log file", NULL, NULL, wal_bytes);
        fn(aux, "store_checkpoints_total", "WAL checkpoints run", NULL, NULL, ss->checkpoints);
        fn(aux, "store_checkpoint_failures_total", "WAL checkpoints that failed", NULL, NULL,
           ss->checkpoint_failures);
        fn(aux, "store_idle_log_restarts_total",
           "WAL restarts done after an idle checkpoint, off any request's path", NULL, NULL,
           ss->idle_log_restarts);
        fn(aux, "store_commits_total", "group commits", NULL, NULL,
           nnve_store_stats(srv->store)->commits);
        fn(aux, "store_writes_total", "rows written", NULL, NULL,
           nnve_store_stats(srv->store)->writes);
    }
    struct domain_aux da = {fn, aux};
    nnve_state_foreach_domain(srv->state, uv_now(srv->loop), domain_rows, &da);
    /* Per L2 interface (the frame counters restart when the interface is opened again);
     * one name's rows together, as the text format wants. */
    enum {
        L2_UP,
        L2_CONNS,
        L2_OPENS,
        L2_IN,
        L2_OUT,
        L2_MALFORMED,
        L2_UNKNOWN,
        L2_REFUSED,
        L2_SOLICITS,
        L2_SEND_ERRORS,
        L2_RX_DROPPED,
        L2_UNAUTH,
        L2_UNAUTH_PEAK,
        L2_COOKIES,
        L2_COOKIE_FAILURES,
        L2_RATE_LIMITED,
        L2_UNAUTH_REFUSED,
        L2_N
    };
    static const char *const l2_names[L2_N][2] = {
        {"l2_interface_up", "L2 channel open on the interface"},
        {"l2_connections", "L2 connections on the interface"},
        {"l2_interface_opens_total", "times the interface was opened"},
        {"l2_frames_received_total", "L2 channel frames received"},
        {"l2_frames_sent_total", "L2 channel frames sent"},
        {"l2_malformed_total", "L2 frames that failed decoding"},
        {"l2_unknown_total", "L2 frames for no connection"},
        {"l2_refused_total", "L2 connections refused"},
        {"l2_solicits_received_total", "discovery solicitations received"},
        {"l2_send_errors_total", "L2 frames the kernel did not take"},
        {"l2_rx_dropped_total", "L2 frames dropped by the kernel: socket buffer full"},
        {"l2_unauthenticated", "L2 connections whose TLS handshake has not completed"},
        {"l2_unauthenticated_peak", "most L2 connections not yet authenticated at once"},
        {"l2_cookies_sent_total", "OPENs answered with a cookie (nothing allocated)"},
        {"l2_cookie_failures_total", "OPENs with a cookie that is not valid"},
        {"l2_open_rate_limited_total", "OPENs dropped by the per-port or per-MAC rate limit"},
        {"l2_unauthenticated_refused_total", "OPENs refused at l2_max_unauthenticated"},
    };
    for (unsigned k = 0; k < L2_N; k++) {
        for (unsigned i = 0; i < srv->n_l2_ifs; i++) {
            const struct l2_if *li = &srv->l2_ifs[i];
            static const struct sncp_l2_port_stats none;
            const struct sncp_l2_port_stats *ps = li->port ? sncp_l2_port_stats(li->port) : &none;
            const uint64_t v[L2_N] = {
                li->port != NULL,    li->port ? sncp_l2_port_conns(li->port) : 0,
                li->opened,          ps->frames_in,
                ps->frames_out,      ps->malformed,
                ps->unknown,         ps->refused,
                ps->solicits_in,     ps->send_errors,
                ps->rx_dropped,      li->port ? sncp_l2_port_unauth(li->port) : 0,
                ps->unauth_peak,     ps->cookies_out,
                ps->cookie_failures, ps->rate_limited,
                ps->unauth_refused,
            };
            fn(aux, l2_names[k][0], l2_names[k][1], "interface", li->name, v[k]);
        }
    }
}

static void json_row(void *aux, const char *name, const char *help, const char *lkey,
                     const char *lval, uint64_t value)
{
    (void)help;
    json_t *obj = aux;
    if (!lkey) {
        json_object_set_new(obj, name, json_integer((json_int_t)value));
        return;
    }
    json_t *sub = json_object_get(obj, name);
    if (!sub) {
        sub = json_object();
        json_object_set_new(obj, name, sub);
    }
    json_object_set_new(sub, lval, json_integer((json_int_t)value));
    (void)lkey;
}

json_t *nnve_server_show_counters(const struct nnve_server *srv)
{
    json_t *obj = json_object();
    each_counter(srv, json_row, obj);
    return obj;
}

struct prom {
    FILE *f;
    char last[64];
};

static void prom_row(void *aux, const char *name, const char *help, const char *lkey,
                     const char *lval, uint64_t value)
{
    struct prom *p = aux;
    if (strcmp(p->last, name)) {
        int counter = strstr(name, "_total") != NULL;
        fprintf(p->f, "# HELP nnve_%s %s\n# TYPE nnve_%s %s\n", name, help, name,
                counter ? "counter" : "gauge");
        snprintf(p->last, sizeof p->last, "%s", name);
    }
    if (lkey)
        fprintf(p->f, "nnve_%s{%s=\"%s\"} %" PRIu64 "\n", name, lkey, lval, value);
    else
        fprintf(p->f, "nnve_%s %" PRIu64 "\n", name, value);
}

static int prom_write(FILE *f, void *aux)
{
    const struct nnve_server *srv = aux;
    struct prom p = {.f = f};
    each_counter(srv, prom_row, &p);
    snv_hist_write_prom(&srv->request_us, f, "nnve_request_seconds",
                        "from a request's decoding to its answer written (seconds)");
    if (srv->store)
        snv_hist_write_prom(&nnve_store_stats(srv->store)->commit_us, f,
                            "nnve_store_commit_seconds",
                            "group commits: the log written and synced (seconds)");
    return 0;
}

/* One row of latency/show: {"what": what, then the histogram's fields}. */
static json_t *latency_row(const char *what, const struct snv_hist *h)
{
    json_t *row = json_pack("{s:s}", "what", what), *o = snv_hist_json(h);
    if (!row || !o || json_object_update(row, o)) {
        json_decref(row);
        row = NULL;
    }
    json_decref(o);
    return row;
}

json_t *nnve_server_show_latency(struct nnve_server *srv, int reset)
{
    json_t *a = json_array();
    if (!a)
        return NULL;
    json_array_append_new(a, latency_row("request", &srv->request_us));
    if (srv->store)
        json_array_append_new(a, latency_row("commit", &nnve_store_stats(srv->store)->commit_us));
    if (reset) {
        snv_hist_init(&srv->request_us);
        if (srv->store)
            nnve_store_reset_latency(srv->store);
    }
    return a;
}

int nnve_server_write_metrics(const struct nnve_server *srv, const char *path)
{
    return snv_file_write_atomic(path, 0644, prom_write, (void *)srv);
}

/* ---- life cycle ------------------------------------------------------------------- */

static void conn_config(const struct nnve_config *cfg, struct sncp_tls_ctx *tls,
                        struct sncp_conn_config *cc)
{
    memset(cc, 0, sizeof *cc);
    cc->session.role = SNCP_TLS_SERVER;
    cc->session.tls = tls;
    cc->session.handshake_timeout_ms = cfg->handshake_timeout_ms;
    cc->session.keepalive_ms = cfg->keepalive_ms;
    cc->session.max_inflight = cfg->max_outstanding;
    cc->max_write_queue = cfg->max_write_queue;
    cc->max_conns = cfg->max_sessions + cfg->max_hello_pending; /* HELLO enforces */
    cc->max_hello_pending = cfg->max_hello_pending;
    cc->max_hello_pending_per_source = cfg->max_hello_pending_per_source;
    cc->session.hello_timeout_ms = cfg->hello_timeout_ms;
}

/* Errors that no retry mends: the daemon lacks the permission (CAP_NET_RAW). */
static int l2_fatal(int err)
{
    return err == -EPERM || err == -EACCES || err == -EAFNOSUPPORT;
}

/* Opens the L2 port of interface li.  Returns 0 or the port's error (logged once per
 * change of error: a missing interface is retried every L2_CHECK_MS; at start, the caller
 * reports fatal ones). */
static int l2_open(struct nnve_server *srv, struct l2_if *li, int at_start)
{
    const struct nnve_config *cfg = srv->cfg;
    struct sncp_conn_config cc;
    conn_config(cfg, srv->tls, &cc);
    srv->l2_unauth.max = cfg->l2_max_unauth;
    struct sncp_l2_port_config pcfg = {
        .ifname = li->name,
        .ethertype = srv->l2_ethertype,
        .discovery_mac = srv->l2_discovery_mac,
        .node_name = srv->l2_node_name,
        .accept = 1,
        .max_conns = cc.max_conns,
        .unauth = &srv->l2_unauth,
    };
    int r = sncp_l2_port_create(srv->loop, &pcfg, &cc, &conn_cbs, srv, &li->port);
    if (r < 0) {
        char why[64];
        if (r == -EMSGSIZE)
            snprintf(why, sizeof why, "interface MTU below the channel's minimum of %d",
                     SNCP_L2_MIN_MTU);
        else
            snprintf(why, sizeof why, "%s", sncp_strerror(r));
        if (r != li->last_err && !(at_start && l2_fatal(r)))
            SNV_WARN("server", "L2 interface unavailable, retrying every %u ms if=%s err=%s",
                     L2_CHECK_MS, li->name, why);
        li->last_err = r;
        li->port = NULL;
        return r;
    }
    li->last_err = 0;
    li->opened++;
    uint8_t mac[6];
    char mbuf[SNCP_MAC_STRLEN], gbuf[SNCP_MAC_STRLEN];
    sncp_l2_port_mac(li->port, mac);
    sncp_mac_format(mac, mbuf, sizeof mbuf);
    sncp_mac_format(srv->l2_discovery_mac, gbuf, sizeof gbuf);
    SNV_INFO("server", "L2 channel open if=%s mac=%s ethertype=0x%04x discovery=%s mtu=%u",
             li->name, mbuf, srv->l2_ethertype, gbuf, sncp_l2_port_mtu(li->port));
    return 0;
}

static void l2_close_all(struct nnve_server *srv)
{
    for (unsigned i = 0; i < srv->n_l2_ifs; i++) {
        sncp_l2_port_destroy(srv->l2_ifs[i].port);
        srv->l2_ifs[i].port = NULL;
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

/* Watches the interfaces; at shutdown, waits for the L2 connections' orderly close. */
static void on_l2_timer(uv_timer_t *t)
{
    struct nnve_server *srv = t->data;
    if (srv->shutting_down) {
        unsigned conns = 0;
        for (unsigned i = 0; i < srv->n_l2_ifs; i++)
            conns += srv->l2_ifs[i].port ? sncp_l2_port_conns(srv->l2_ifs[i].port) : 0;
        if (conns && uv_now(srv->loop) < srv->l2_drain_until)
            return;
        l2_close_all(srv);
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, on_handle_closed);
        return;
    }
    for (unsigned i = 0; i < srv->n_l2_ifs; i++) {
        struct l2_if *li = &srv->l2_ifs[i];
        int r = li->port ? sncp_l2_port_check(li->port) : 0;
        if (r < 0) {
            SNV_WARN("server",
                     "L2 interface lost if=%s reason=%s connections=%u: closing them, "
                     "reopening when it is back",
                     li->name, r == -ENODEV ? "gone or replaced" : sncp_strerror(r),
                     sncp_l2_port_conns(li->port));
            sncp_l2_port_destroy(li->port);
            li->port = NULL;
            li->last_err = -ENODEV;
        }
        if (!li->port)
            l2_open(srv, li, 0);
    }
}

/* Opens every L2 interface.  A missing one is retried later; one the daemon may not open
 * (no CAP_NET_RAW) fails the start.  Returns 0 or < 0 with err set. */
static int l2_start(struct nnve_server *srv, char *err, size_t errlen)
{
    const struct nnve_config *cfg = srv->cfg;
    if (!(cfg->transports & NNVE_TRANSPORT_L2))
        return 0;
    srv->l2_ifs = calloc(cfg->n_l2_interfaces, sizeof *srv->l2_ifs);
    if (!srv->l2_ifs) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    srv->n_l2_ifs = cfg->n_l2_interfaces;
    srv->l2_ethertype = cfg->l2_ethertype;
    memcpy(srv->l2_discovery_mac, cfg->l2_discovery_mac, 6);
    snprintf(srv->l2_node_name, sizeof srv->l2_node_name, "%s",
             cfg->node_id ? cfg->node_id : "nnve-daemon");
    for (unsigned i = 0; i < srv->n_l2_ifs; i++) {
        struct l2_if *li = &srv->l2_ifs[i];
        snprintf(li->name, sizeof li->name, "%s", cfg->l2_interfaces[i]);
        int r = l2_open(srv, li, 1);
        if (l2_fatal(r)) {
            snprintf(err, errlen, "cannot open L2 interface %s: %s (needs CAP_NET_RAW)", li->name,
                     sncp_strerror(r));
            l2_close_all(srv);
            return r;
        }
    }
    uv_timer_init(srv->loop, &srv->l2_timer);
    srv->l2_timer.data = srv;
    uv_timer_start(&srv->l2_timer, on_l2_timer, L2_CHECK_MS, L2_CHECK_MS);
    return 0;
}

int nnve_server_create(uv_loop_t *loop, const struct nnve_config *cfg, struct sncp_tls_ctx *tls,
                       struct nnve_state *state, struct nnve_store *store, struct nnve_backend *be,
                       struct nnve_server **out, char *err, size_t errlen)
{
    struct nnve_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return -ENOMEM;
    srv->tag = TAG_SERVER;
    srv->loop = loop;
    srv->cfg = cfg;
    srv->tls = tls;
    srv->state = state;
    srv->store = store;
    srv->be = be;
    srv->rl = (struct snv_ratelimit)SNV_RATELIMIT_INIT(5, 20);
    srv->rl_auth = (struct snv_ratelimit)SNV_RATELIMIT_INIT(50, 200);
    srv->rl_req = (struct snv_ratelimit)SNV_RATELIMIT_INIT(10, 50);
    srv->listeners = calloc(cfg->n_listen ? cfg->n_listen : 1, sizeof *srv->listeners);
    if (!srv->listeners) {
        free(srv);
        return -ENOMEM;
    }
    struct sncp_conn_config cc;
    conn_config(cfg, tls, &cc);
    for (unsigned i = 0; i < ((cfg->transports & NNVE_TRANSPORT_TCP) ? cfg->n_listen : 0); i++) {
        /* A socket passed by the service manager (activation.h) replaces our own bind. */
        int fd = nnve_activation_take(cfg->listen[i].addr, cfg->listen[i].port);
        int r = fd >= 0 ? sncp_listener_open(loop, fd, &cc, &conn_cbs, srv, &srv->listeners[i])
                        : sncp_listener_create(loop, cfg->listen[i].addr, cfg->listen[i].port, &cc,
                                               &conn_cbs, srv, &srv->listeners[i]);
        if (r < 0) {
            snprintf(err, errlen, "cannot listen on %s port %u: %s", cfg->listen[i].addr,
                     cfg->listen[i].port, sncp_strerror(r));
            for (unsigned k = 0; k < i; k++)
                sncp_listener_destroy(srv->listeners[k]);
            free(srv->listeners);
            free(srv);
            return r;
        }
        srv->n_listeners++;
        SNV_INFO("server", "listening addr=%s port=%u%s", cfg->listen[i].addr,
                 sncp_listener_port(srv->listeners[i]), fd >= 0 ? " socket=passed" : "");
    }
    nnve_activation_finish();
    int r = l2_start(srv, err, errlen);
    if (r < 0) {
        for (unsigned k = 0; k < srv->n_listeners; k++)
            sncp_listener_destroy(srv->listeners[k]);
        free(srv->l2_ifs);
        free(srv->listeners);
        free(srv);
        return r;
    }
    pthread_t probe;
    if (!pthread_create(&probe, NULL, idle_probe, &srv->checkpoint_idle))
        pthread_join(probe, NULL);
    uv_check_init(loop, &srv->check);
    srv->check.data = srv;
    uv_check_start(&srv->check, on_check);
    uv_prepare_init(loop, &srv->log_flush);
    uv_prepare_start(&srv->log_flush, on_log_flush);
    snv_log_set_buffered(1);
    uv_timer_init(loop, &srv->tick);
    srv->tick.data = srv;
    uv_timer_start(&srv->tick, on_tick, 200, 200);
    *out = srv;
    return 0;
}

uint16_t nnve_server_port(const struct nnve_server *srv)
{
    return srv->n_listeners ? sncp_listener_port(srv->listeners[0]) : 0;
}

/* Whether cfg asks for other transports than the running ones (those need a restart). */
static int transports_changed(const struct nnve_server *srv, const struct nnve_config *old,
                              const struct nnve_config *cfg)
{
    if (cfg->transports != old->transports || cfg->n_listen != old->n_listen ||
        memcmp(cfg->listen, old->listen, cfg->n_listen * sizeof *cfg->listen))
        return 1;
    if (!(cfg->transports & NNVE_TRANSPORT_L2))
        return 0;
    if (cfg->n_l2_interfaces != srv->n_l2_ifs || cfg->l2_ethertype != srv->l2_ethertype ||
        memcmp(cfg->l2_discovery_mac, srv->l2_discovery_mac, 6))
        return 1;
    for (unsigned i = 0; i < srv->n_l2_ifs; i++)
        if (strcmp(cfg->l2_interfaces[i], srv->l2_ifs[i].name))
            return 1;
    return 0;
}

void nnve_server_reconfigure(struct nnve_server *srv, const struct nnve_config *cfg)
{
    if (transports_changed(srv, srv->cfg, cfg))
        SNV_WARN("server", "transport, listen and l2_* changes take effect at the next "
                           "restart; still serving the ones of the start");
    srv->cfg = cfg;
    /* What the new configuration no longer grants is withdrawn at once, each VN as an
     * operator disconnect (the agent is told; its answers are logged). */
    struct op *op = op_new(srv, NULL);
    if (op) {
        struct op_ctx oc = {srv, op};
        int n = nnve_state_enforce(srv->state, uv_now(srv->loop), op_notify, &oc);
        if (n > 0)
            SNV_INFO("policy", "reload withdrew vn_connections=%d notified=%u", n, op->waiting);
        op_result(srv, NULL, op, 0, "");
    } else {
        nnve_state_enforce(srv->state, uv_now(srv->loop), NULL, NULL);
    }
    for (struct session *s = srv->sessions; s; s = s->next) {
        if (s->replaced)
            continue;
        const struct nnve_hv_cfg *hc = nnve_config_find_hv(cfg, s->identity);
        const char *why = !hc ? "identity no longer authorized"
                          : s->hv && hc->port && strcmp(hc->port, s->port)
                              ? "port no longer the configured one"
                          : s->hv && !nnve_config_port_domain(cfg, s->port) ? "port in no domain"
                                                                            : NULL;
        if (!why)
            continue;
        srv->c.not_authorized++;
        snv_audit("session", "closing: %s hypervisor=%s peer=%s port=%s", why, s->identity, s->peer,
                  s->port);
        sncp_conn_close(s->conn);
    }
}

void nnve_server_tls_reloaded(struct nnve_server *srv)
{
    for (struct session *s = srv->sessions; s; s = s->next)
        if (!s->replaced)
            close_if_revoked(s);
}

void nnve_server_shutdown(struct nnve_server *srv)
{
    if (!srv || srv->shutting_down)
        return;
    srv->shutting_down = 1;
    on_check(&srv->check); /* commit and answer what is pending */
    nnve_pair_shutdown(srv->pair);
    for (unsigned i = 0; i < srv->n_listeners; i++)
        sncp_listener_destroy(srv->listeners[i]);
    srv->n_listeners = 0;
    while (srv->ops) {
        struct op *op = srv->ops;
        srv->ops = op->next;
        if (op->req)
            snv_ctl_reply_error(op->req, SNV_CTL_FAILED, "daemon shutting down");
        json_decref(op->answers);
        free(op);
    }
    for (struct session *s = srv->sessions; s; s = s->next)
        sncp_conn_close(s->conn);
    if (srv->n_l2_ifs) {
        /* The L2 ports carry the orderly closes: they go once those are done. */
        srv->l2_drain_until = uv_now(srv->loop) + L2_DRAIN_MAX_MS;
        uv_timer_start(&srv->l2_timer, on_l2_timer, 0, L2_DRAIN_MS);
    }
    uv_check_stop(&srv->check);
    uv_close((uv_handle_t *)&srv->check, on_handle_closed);
    snv_log_set_buffered(0);
    uv_prepare_stop(&srv->log_flush);
    uv_close((uv_handle_t *)&srv->log_flush, on_handle_closed);
    uv_timer_stop(&srv->tick);
    uv_close((uv_handle_t *)&srv->tick, on_handle_closed);
}

void nnve_server_destroy(struct nnve_server *srv)
{
    if (!srv)
        return;
    free(srv->listeners);
    free(srv->l2_ifs);
    free(srv);
}
