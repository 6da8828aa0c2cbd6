/* agent.c: wires the agent's modules together on one loop (see agent.h). */
#include "agent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "ctl.h"
#include "dp-mux.h"
#include "sncp-error.h"
#include "snv-log.h"

/* ---------------------------------------------------------------- reconciler plumbing */

static void run_rec(struct tnve_agent *a);
static void run_written(struct tnve_agent *a);
static void prepares_check(struct tnve_agent *a);

static void timer_cb(uv_timer_t *t)
{
    run_rec(t->data);
}

enum { VN_CHECK_MS = 200 };

static int vn_mismatch_find(const struct tnve_agent *a, const char *vn)
{
    for (unsigned i = 0; i < a->n_vn_mismatch; i++)
        if (!strcmp(a->vn_mismatch[i], vn))
            return (int)i;
    return -1;
}

/* One tag per VN across the nNVEs of the host (they share one significance domain): a VN
 * connected at two nNVEs under two tags is reported (error, counter) once per episode.
 * The dataplane applies the active nNVE's tag (dp-mux.h). */
static void check_vn_tags(struct tnve_agent *a)
{
    /* "VN" -> {"tags": "sw1=101,sw2=150", "first": the first tag, "differ": bool} */
    json_t *seen = json_object();
    struct tnve_rec_vn_tag *buf = NULL;
    unsigned cap = 0;
    for (unsigned i = 0; i < a->n_homes; i++) {
        unsigned n = tnve_rec_vn_tags(a->homes[i].rec, buf, cap);
        if (n > cap) {
            free(buf);
            cap = n;
            buf = calloc(cap, sizeof *buf);
            if (!buf)
                break;
            n = tnve_rec_vn_tags(a->homes[i].rec, buf, cap);
        }
        for (unsigned k = 0; k < n; k++) {
            char key[TNVE_VN_STRLEN];
            tnve_vn_format(&buf[k].vn, key, sizeof key);
            json_t *e = json_object_get(seen, key);
            char part[128];
            snprintf(part, sizeof part, "%s=%u", a->homes[i].ncfg->name, buf[k].tag);
            if (!e) {
                e = json_pack("{s:s, s:i, s:b}", "tags", part, "first", buf[k].tag, "differ", 0);
                json_object_set_new(seen, key, e);
                continue;
            }
            char tags[512];
            snprintf(tags, sizeof tags, "%s,%s", json_string_value(json_object_get(e, "tags")),
                     part);
            json_object_set_new(e, "tags", json_string(tags));
            if (json_integer_value(json_object_get(e, "first")) != buf[k].tag)
                json_object_set_new(e, "differ", json_true());
        }
    }
    free(buf);
    const char *key;
    json_t *e;
    json_object_foreach(seen, key, e)
    {
        int idx = vn_mismatch_find(a, key);
        int differ = json_is_true(json_object_get(e, "differ"));
        if (differ && idx < 0) {
            a->vn_tag_mismatches++;
            snv_log_rl(&a->vn_check_rl, SNV_LOG_ERR, "agent",
                       "tag mismatch between nNVEs vn=%s tags=%s: the dataplane uses the active "
                       "nNVE's tag active=%s; the pair must agree on one tag per VN",
                       key, json_string_value(json_object_get(e, "tags")),
                       tnve_agent_active_name(a));
            if (a->n_vn_mismatch < sizeof a->vn_mismatch / sizeof a->vn_mismatch[0])
                snprintf(a->vn_mismatch[a->n_vn_mismatch++], sizeof a->vn_mismatch[0], "%s", key);
        } else if (!differ && idx >= 0) {
            snv_log_rl(&a->vn_check_rl, SNV_LOG_INFO, "agent", "tag mismatch over vn=%s tags=%s",
                       key, json_string_value(json_object_get(e, "tags")));
            memmove(a->vn_mismatch[idx], a->vn_mismatch[--a->n_vn_mismatch],
                    sizeof a->vn_mismatch[0]);
        }
    }
    /* a VN no nNVE holds any more ends its episode too */
    for (unsigned i = 0; i < a->n_vn_mismatch;) {
        if (json_object_get(seen, a->vn_mismatch[i])) {
            i++;
            continue;
        }
        SNV_INFO("agent", "tag mismatch over vn=%s (no longer connected)", a->vn_mismatch[i]);
        memmove(a->vn_mismatch[i], a->vn_mismatch[--a->n_vn_mismatch], sizeof a->vn_mismatch[0]);
    }
    json_decref(seen);
}

static void run_rec(struct tnve_agent *a)
{
    if (a->destroying)
        return;
    uint64_t now = uv_now(a->loop);
    uint64_t next = UINT64_MAX;
    for (unsigned i = 0; i < a->n_homes; i++) {
        /* one write per nNVE for the whole run (a start's VN_CONNECT and TSI_ACTIVATE) */
        a->in_run = 1;
        a->run_start_ns = uv_hrtime();
        if (a->homes[i].nnve)
            tnve_nnve_cork(a->homes[i].nnve);
        uint64_t n = tnve_rec_run(a->homes[i].rec, now);
        if (a->homes[i].nnve)
            tnve_nnve_uncork(a->homes[i].nnve);
        a->in_run = 0;
        run_written(a);
        if (n < next)
            next = n;
    }
    if (a->n_homes > 1) {
        if (now >= a->vn_check_at) {
            check_vn_tags(a);
            a->vn_check_at = now + VN_CHECK_MS;
            a->vn_check_due = 0;
        } else {
            a->vn_check_due = 1;
        }
        if (a->vn_check_due && a->vn_check_at < next)
            next = a->vn_check_at;
    }
    if (a->virt)
        tnve_virt_kick(a->virt);
    uv_timer_stop(&a->timer);
    if (next != UINT64_MAX)
        uv_timer_start(&a->timer, timer_cb, next > now ? next - now : 1, 0);
}

static void wake_cb(uv_idle_t *h)
{
    struct tnve_agent *a = h->data;
    uv_idle_stop(h);
    run_rec(a);
}

static void op_wake(void *aux)
{
    struct tnve_home *h = aux;
    if (!h->a->destroying)
        uv_idle_start(&h->a->wake, wake_cb);
}

static int64_t op_send(void *aux, struct sncp_msg *msg, uint64_t cookie)
{
    struct tnve_home *h = aux;
    struct tnve_agent *a = h->a;
    if (!h->nnve)
        return SNCP_E_NOT_ESTABLISHED;
    int64_t x = tnve_nnve_send(h->nnve, msg, cookie);
    if (x > 0 && h->index == a->active) { /* the round trips of the active nNVE */
        unsigned slot = (unsigned)(cookie % TNVE_AGENT_RTT_SLOTS);
        a->rtt[slot].cookie = cookie;
        a->rtt[slot].sent_ns = uv_hrtime();
        a->rtt[slot].idle_ns = uv_metrics_idle_time(a->loop);
    }
    return x;
}

static int op_respond(void *aux, const struct sncp_msg *req, struct sncp_msg *rsp)
{
    struct tnve_home *h = aux;
    return h->nnve ? tnve_nnve_respond(h->nnve, req, rsp) : SNCP_E_NOT_ESTABLISHED;
}

static void op_refresh(void *aux, const uint8_t uuid[16])
{
    struct tnve_home *h = aux;
    if (h->a->virt)
        tnve_virt_refresh_domain(h->a->virt, uuid);
}

static void op_acked(void *aux, uint64_t stamp, enum sncp_tsi_state state)
{
    struct tnve_home *h = aux;
    struct tnve_agent *a = h->a;
    uint64_t now = uv_hrtime();
    /* one sample per change: the active nNVE's acknowledgement */
    if (now >= stamp && h->index == a->active) {
        tnve_lat_add_ns(&a->lat_total, now - stamp);
        if (state <= SNCP_TSI_ACTIVATED)
            tnve_lat_add_ns(&a->lat_state[state], now - stamp);
    }
}

static void op_sent(void *aux, uint64_t stamp)
{
    struct tnve_home *h = aux;
    struct tnve_agent *a = h->a;
    if (h->index != a->active)
        return;
    if (a->in_run && a->n_run_sent < TNVE_AGENT_RUN_SENT) {
        a->run_sent[a->n_run_sent++] = stamp; /* taken when the run's write is done */
        return;
    }
    uint64_t now = uv_hrtime();
    if (now >= stamp)
        tnve_lat_add_ns(&a->lat_send, now - stamp);
}

/* The run's requests were written (uncorked): their round trips start now. */
static void run_written(struct tnve_agent *a)
{
    uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(a->loop);
    for (unsigned i = 0; i < TNVE_AGENT_RTT_SLOTS; i++)
        if (a->rtt[i].cookie && a->rtt[i].sent_ns >= a->run_start_ns) {
            a->rtt[i].sent_ns = now;
            a->rtt[i].idle_ns = idle;
        }
    for (unsigned i = 0; i < a->n_run_sent; i++)
        if (now >= a->run_sent[i])
            tnve_lat_add_ns(&a->lat_send, now - a->run_sent[i]);
    a->n_run_sent = 0;
}

static int home_up(const struct tnve_home *h);

/* Active-standby: the active nNVE serves the VN; a move is make-before-break: an nNVE that
 * served it keeps it until the active nNVE holds it (tnve_rec_vn_settled), then lets it go
 * for good (it does not take it back unless it becomes active again).  So at most the
 * latest target and the nNVEs that held the VN before hold it, and a flap back to the
 * previous nNVE (still holding it) ends the move at once. */
int tnve_agent_serves(const struct tnve_home *h, const struct tnve_vn *vn)
{
    const struct tnve_agent *a = h->a;
    if (tnve_config_vn_mode(a->cfg, vn) == TNVE_MODE_ACTIVE_ACTIVE)
        return 1;
    if (h->index == a->active)
        return 1;
    if (!h->rec || !tnve_rec_vn_served(h->rec, vn))
        return 0;
    const struct tnve_home *act = &a->homes[a->active];
    if (!home_up(act) || !act->rec)
        return 1;
    return !tnve_rec_vn_settled(act->rec, vn);
}

static int op_serves(void *aux, const struct tnve_vn *vn)
{
    return tnve_agent_serves(aux, vn);
}

static int home_up(const struct tnve_home *h)
{
    return h->nnve && tnve_nnve_is_up(h->nnve);
}

const char *tnve_agent_active_name(const struct tnve_agent *a)
{
    return a->homes[a->active].ncfg->name;
}

/* The dataplane mux's preference: the active nNVE, then the others whose session is up,
 * then the rest, each in configuration order. */
static unsigned mux_rank(void *aux, unsigned leg)
{
    struct tnve_agent *a = aux;
    const struct tnve_home *h = &a->homes[leg];
    if (!home_up(h))
        return 2 * TNVE_MAX_NNVES + leg;
    return leg == a->active ? 0 : 1 + leg;
}

/* The mux's retag log lines: the VN leg `leg`'s nNVE has connected under `tag`. */
static void mux_vn_name(void *aux, unsigned leg, uint16_t tag, char *buf, size_t cap)
{
    struct tnve_agent *a = aux;
    snprintf(buf, cap, "-");
    if (leg >= a->n_homes || !a->homes[leg].rec)
        return;
    unsigned n = tnve_rec_vn_tags(a->homes[leg].rec, NULL, 0);
    struct tnve_rec_vn_tag *vt = n ? calloc(n, sizeof *vt) : NULL;
    if (!vt)
        return;
    n = tnve_rec_vn_tags(a->homes[leg].rec, vt, n);
    for (unsigned i = 0; i < n; i++) {
        if (vt[i].tag == tag) {
            char name[TNVE_VN_STRLEN];
            tnve_vn_format(&vt[i].vn, name, sizeof name);
            snprintf(buf, cap, "%s", name);
            break;
        }
    }
    free(vt);
}

/* The state of home h's uplink (UNKNOWN without one): the watcher's. */
static enum tnve_uplink_state home_uplink(const struct tnve_home *h)
{
    return tnve_uplinks_state(h->a->uplinks, h->index);
}

/* What tnve_active_choose() decides on, per home. */
static void active_inputs(const struct tnve_agent *a, struct tnve_active_in *in)
{
    for (unsigned i = 0; i < a->n_homes; i++) {
        const struct tnve_home *h = &a->homes[i];
        in[i].carrying = tnve_uplink_carrying(home_uplink(h));
        in[i].up = home_up(h);
        in[i].lost = h->lost;
    }
}

static void set_active(struct tnve_agent *a, unsigned to, const char *cause, const char *why)
{
    unsigned from = a->active;
    a->active = to;
    a->failovers++;
    a->homes[to].activations++;
    SNV_WARN("agent",
             "active nNVE changed nnve=%s was=%s cause=%s why=\"%s\" uplink=%s:%s "
             "was_uplink=%s:%s session_was=%s: active-standby VNs move",
             a->homes[to].ncfg->name, a->homes[from].ncfg->name, cause, why,
             a->homes[to].ncfg->uplink[0] ? a->homes[to].ncfg->uplink : "-",
             tnve_uplink_state_name(home_uplink(&a->homes[to])),
             a->homes[from].ncfg->uplink[0] ? a->homes[from].ncfg->uplink : "-",
             tnve_uplink_state_name(home_uplink(&a->homes[from])),
             home_up(&a->homes[from]) ? "up" : "down");
    uint64_t now = uv_now(a->loop);
    for (unsigned i = 0; i < a->n_homes; i++)
        tnve_rec_serve_changed(a->homes[i].rec, now);
}

/* Active-standby: tnve_active_choose() over the uplinks' and the sessions' states (see
 * agent.h).  `cause` ("uplink", "session", "operator") and `why` go into the log line when
 * the choice changes. */
static void select_active(struct tnve_agent *a, const char *cause, const char *why)
{
    if (a->n_homes < 2 || a->destroying)
        return;
    struct tnve_active_in in[TNVE_MAX_NNVES];
    active_inputs(a, in);
    if (a->override >= 0 && !in[a->override].up)
        a->override = -1; /* the operator's choice ends with its session */
    unsigned to = tnve_active_choose(in, a->n_homes, a->active, a->override);
    if (to != a->active)
        set_active(a, to, cause, why);
}

static void home_changed(struct tnve_agent *a, const char *cause, const char *why)
{
    select_active(a, cause, why);
    if (a->mux)
        tnve_dp_mux_rerank(a->mux, cause);
    prepares_check(a);
}

static void nnve_up(void *aux)
{
    struct tnve_home *h = aux;
    char why[128];
    snprintf(why, sizeof why, "session up at %s", h->ncfg->name);
    h->lost = 0;
    /* The choice first: a returning nNVE that becomes active re-announces its VNs in the
     * SYNC that follows, so it keeps what it held (nothing swept and added again). */
    select_active(h->a, "session", why);
    tnve_rec_set_peer_caps(h->rec, tnve_nnve_peer_caps(h->nnve));
    tnve_rec_session_up(h->rec, uv_now(h->a->loop));
    home_changed(h->a, "session", why);
}

static void nnve_down(void *aux)
{
    struct tnve_home *h = aux;
    h->lost = 1;
    h->lost_why = "session lost";
    tnve_rec_session_down(h->rec, uv_now(h->a->loop));
    home_changed(h->a, "session", h->lost_why);
}

static void nnve_failed(void *aux)
{
    struct tnve_home *h = aux;
    if (h->lost || h->a->destroying)
        return;
    h->lost = 1;
    h->lost_why = "connection attempt failed";
    if (h->rec)
        home_changed(h->a, "session", h->lost_why);
}

static void nnve_request(void *aux, const struct sncp_msg *req)
{
    struct tnve_home *h = aux;
    tnve_rec_request(h->rec, req, uv_now(h->a->loop));
}

static void nnve_response(void *aux, uint64_t cookie, const struct sncp_msg *rsp, int err)
{
    struct tnve_home *h = aux;
    struct tnve_agent *a = h->a;
    unsigned slot = (unsigned)(cookie % TNVE_AGENT_RTT_SLOTS);
    if (h->index == a->active && a->rtt[slot].cookie == cookie && !err) {
        uint64_t rtt = uv_hrtime() - a->rtt[slot].sent_ns;
        uint64_t idle = uv_metrics_idle_time(a->loop) - a->rtt[slot].idle_ns;
        tnve_lat_add_ns(&a->lat_nnve, rtt);
        tnve_lat_add_ns(&a->lat_nnve_busy, rtt > idle ? rtt - idle : 0);
        a->rtt[slot].cookie = 0;
    }
    tnve_rec_response(h->rec, cookie, rsp, err, uv_now(a->loop));
}

/* A watched uplink changed state: the preference follows the uplink that carries the
 * traffic; a change of it ends the operator's choice. */
static void uplinks_changed(void *aux)
{
    struct tnve_agent *a = aux;
    if (a->destroying)
        return;
    char states[256] = "";
    size_t used = 0;
    for (unsigned i = 0; i < a->n_homes; i++) {
        const struct tnve_home *h = &a->homes[i];
        int n = snprintf(states + used, sizeof states - used, "%s%s=%s", used ? "," : "",
                         h->ncfg->uplink, tnve_uplink_state_name(home_uplink(h)));
        if (n > 0 && (size_t)n < sizeof states - used)
            used += (size_t)n;
    }
    struct tnve_active_in in[TNVE_MAX_NNVES];
    active_inputs(a, in);
    int p = tnve_active_preferred(in, a->n_homes);
    if (p != a->preferred) {
        SNV_INFO("agent", "preferred nNVE changed nnve=%s was=%s uplinks=%s",
                 p >= 0 ? a->homes[p].ncfg->name : "-",
                 a->preferred >= 0 ? a->homes[a->preferred].ncfg->name : "-", states);
        a->preferred = p;
        a->override = -1;
    }
    char why[300];
    snprintf(why, sizeof why, "uplinks %s", states);
    /* the ports of VNs bound under two tags (a partition of a ToR pair) follow the uplink */
    select_active(a, "uplink", why);
    if (a->mux)
        tnve_dp_mux_rerank(a->mux, "uplink");
    prepares_check(a);
}

int tnve_agent_activate(struct tnve_agent *a, const char *name)
{
    for (unsigned i = 0; i < a->n_homes; i++) {
        if (strcmp(a->homes[i].ncfg->name, name))
            continue;
        if (!home_up(&a->homes[i]))
            return -ENETDOWN;
        a->override = (int)i;
        char why[128];
        snprintf(why, sizeof why, "tnvectl nnve activate %s", name);
        home_changed(a, "operator", why);
        return 0;
    }
    return -ENOENT;
}

/* ---------------------------------------------------------------- hook requests */

enum { PREP_PENDING = 1 };

struct agent_prepare;

struct prepare_leg {
    struct agent_prepare *p;
    unsigned index;
};

struct agent_prepare {
    struct agent_prepare *next;
    struct tnve_agent *a;
    tnve_agent_prepare_cb *cb;
    void *aux;
    char domain[256];
    unsigned n_vns;
    struct tnve_vn vns[TNVE_MAX_VNICS];
    struct prepare_leg legs[TNVE_MAX_NNVES];
    int result[TNVE_MAX_NNVES]; /* PREP_PENDING, 0, or the error */
    char reason[TNVE_MAX_NNVES][256];
    int calling; /* inside tnve_agent_prepare */
};

static int is_soft(int err)
{
    return err == SNCP_E_TIMEOUT || err == SNCP_E_CLOSED;
}

static void prepare_finish(struct agent_prepare *p, int err, const char *reason)
{
    struct tnve_agent *a = p->a;
    for (unsigned i = 0; i < a->n_homes; i++)
        if (p->result[i] == PREP_PENDING)
            tnve_rec_prepare_cancel(a->homes[i].rec, &p->legs[i], err && !is_soft(err));
    struct agent_prepare **pp = &a->prepares;
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
    if (a->n_homes > 1) {
        if (err)
            SNV_WARN("agent", "hook refused domain=%s err=%s reason=%s", p->domain,
                     sncp_error_token(err), reason);
        else
            SNV_INFO("agent", "hook answered domain=%s result=%s", p->domain, reason);
    }
    p->cb(p->aux, err, reason);
    free(p);
}

/* Answers a hook request with nNVE i's error (named when there are several). */
static void prepare_fail(struct agent_prepare *p, unsigned i)
{
    const struct tnve_agent *a = p->a;
    char reason[300];
    if (a->n_homes == 1)
        snprintf(reason, sizeof reason, "%s", p->reason[i]);
    else
        snprintf(reason, sizeof reason, "nNVE %s: %s", a->homes[i].ncfg->name, p->reason[i]);
    prepare_finish(p, p->result[i], reason);
}

/* Decides a hook request when it can be (see tnve_agent_prepare). */
static void prepare_eval(struct agent_prepare *p)
{
    struct tnve_agent *a = p->a;
    if (p->calling)
        return;
    char reason[TNVE_MAX_NNVES * 300];
    for (unsigned i = 0; i < a->n_homes; i++) {
        if (p->result[i] != PREP_PENDING && p->result[i] && !is_soft(p->result[i])) {
            prepare_fail(p, i);
            return;
        }
    }
    /* which nNVEs the domain's VNs need now */
    int need[TNVE_MAX_NNVES] = {0}, standby = 0;
    for (unsigned v = 0; v < p->n_vns; v++) {
        if (tnve_config_vn_mode(a->cfg, &p->vns[v]) == TNVE_MODE_ACTIVE_STANDBY)
            standby = 1;
        for (unsigned i = 0; i < a->n_homes; i++)
            if (tnve_agent_serves(&a->homes[i], &p->vns[v]))
                need[i] = 1;
    }
    unsigned ok = 0, waiting = 0, pending = 0;
    for (unsigned i = 0; i < a->n_homes; i++) {
        if (p->result[i] == PREP_PENDING)
            pending++;
        if (!need[i])
            continue;
        if (p->result[i] == 0)
            ok++;
        else if (p->result[i] == PREP_PENDING && home_up(&a->homes[i]))
            waiting++;
    }
    int done = ok && !waiting && (!standby || p->result[a->active] == 0);
    if (!p->n_vns)
        done = 1;
    if (done) {
        size_t used = (size_t)snprintf(reason, sizeof reason, "associated at");
        for (unsigned i = 0; i < a->n_homes && used < sizeof reason; i++) {
            if (!need[i])
                continue;
            int n = snprintf(reason + used, sizeof reason - used, " %s%s", a->homes[i].ncfg->name,
                             p->result[i] == 0 ? "" : " (down)");
            if (n > 0)
                used += (size_t)n;
        }
        if (a->n_homes == 1)
            snprintf(reason, sizeof reason, "associated");
        prepare_finish(p, 0, reason);
        return;
    }
    if (pending)
        return;
    /* every nNVE answered and not enough succeeded: the first error */
    for (unsigned i = 0; i < a->n_homes; i++) {
        if (p->result[i] != 0) {
            prepare_fail(p, i);
            return;
        }
    }
    prepare_finish(p, SNCP_E_TIMEOUT, "no nNVE serves the domain's VNs");
}

static void prepares_check(struct tnve_agent *a)
{
    struct agent_prepare *p = a->prepares;
    while (p) {
        struct agent_prepare *next = p->next;
        prepare_eval(p);
        p = next;
    }
}

static void prepare_leg_done(void *aux, int err, const char *reason)
{
    struct prepare_leg *l = aux;
    struct agent_prepare *p = l->p;
    p->result[l->index] = err;
    snprintf(p->reason[l->index], sizeof p->reason[l->index], "%s",
             reason ? reason : sncp_strerror(err));
    prepare_eval(p);
}

int tnve_agent_prepare(struct tnve_agent *a, const struct tnve_domxml *x, uint16_t flags,
                       uint64_t deadline, tnve_agent_prepare_cb *cb, void *aux)
{
    struct agent_prepare *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->a = a;
    p->cb = cb;
    p->aux = aux;
    snprintf(p->domain, sizeof p->domain, "%s", x->name);
    for (unsigned i = 0; i < x->n_vnics && p->n_vns < TNVE_MAX_VNICS; i++)
        if (tnve_vn_is_set(&x->vnics[i].vn))
            p->vns[p->n_vns++] = x->vnics[i].vn;
    p->next = a->prepares;
    a->prepares = p;
    p->calling = 1;
    uint64_t now = uv_now(a->loop);
    int taken = 0, first_err = 0;
    for (unsigned i = 0; i < a->n_homes; i++) {
        p->legs[i].p = p;
        p->legs[i].index = i;
        p->result[i] = PREP_PENDING;
        int rc = tnve_rec_prepare(a->homes[i].rec, x, flags, deadline, prepare_leg_done,
                                  &p->legs[i], now);
        if (rc < 0) {
            p->result[i] = rc;
            snprintf(p->reason[i], sizeof p->reason[i], "%s", sncp_strerror(rc));
            if (!first_err)
                first_err = rc;
        } else {
            taken++;
        }
    }
    p->calling = 0;
    if (!taken) {
        for (struct agent_prepare **pp = &a->prepares; *pp; pp = &(*pp)->next) {
            if (*pp == p) {
                *pp = p->next;
                break;
            }
        }
        free(p);
        return first_err;
    }
    prepare_eval(p);
    return 0;
}

/* ---------------------------------------------------------------- create / destroy */

static int make_dirs(const char *path)
{
    char buf[TNVE_CONFIG_STR];
    int n = snprintf(buf, sizeof buf, "%s", path);
    if (n < 0 || (size_t)n >= sizeof buf)
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static void handle_closed(uv_handle_t *h)
{
    struct tnve_agent *a = h->data;
    if (--a->handles_open > 0)
        return;
    free(a->config_path);
    free(a->cfg);
    tnve_lat_uninit(&a->lat_total);
    tnve_lat_uninit(&a->lat_libvirt);
    tnve_lat_uninit(&a->lat_hop);
    tnve_lat_uninit(&a->lat_nnve);
    tnve_lat_uninit(&a->lat_nnve_busy);
    tnve_lat_uninit(&a->lat_send);
    for (int s = 0; s <= SNCP_TSI_ACTIVATED; s++)
        tnve_lat_uninit(&a->lat_state[s]);
    free(a);
}

/* The state files of home i: the first nNVE keeps the single-nNVE names. */
static int home_files(struct tnve_agent *a, struct tnve_home *h)
{
    const char *dir = a->cfg->state_dir;
    int n1, n2;
    if (h->index == 0) {
        n1 = snprintf(h->state_file, sizeof h->state_file, "%s/tnve-agent.tags", dir);
        n2 = snprintf(h->dp_state_file, sizeof h->dp_state_file, "%s/tnve-agent.ports", dir);
    } else {
        n1 = snprintf(h->state_file, sizeof h->state_file, "%s/tnve-agent.%s.tags", dir,
                      h->ncfg->name);
        n2 = snprintf(h->dp_state_file, sizeof h->dp_state_file, "%s/tnve-agent.%s.ports", dir,
                      h->ncfg->name);
    }
    return n1 < 0 || (size_t)n1 >= sizeof h->state_file || n2 < 0 ||
                   (size_t)n2 >= sizeof h->dp_state_file
               ? -ENAMETOOLONG
               : 0;
}

static int home_create(struct tnve_agent *a, struct tnve_home *h, char *err, size_t errlen)
{
    const struct tnve_config *cfg = a->cfg;
    const struct tnve_config_nnve *e = h->ncfg;
    if (home_files(a, h) < 0) {
        snprintf(err, errlen, "state_dir %s: name too long", cfg->state_dir);
        return -ENAMETOOLONG;
    }
    struct tnve_rec_config rc_cfg = {
        .retry_min_ms = cfg->retry_min_ms,
        .retry_max_ms = cfg->retry_max_ms,
        .associate_on_define = cfg->associate_on_define,
        .state_file = h->state_file,
        .dp_state_file = h->dp_state_file,
        .dp_class = a->mux ? &tnve_dp_mux_class : a->dp_class,
        .dp = a->mux ? tnve_dp_mux_leg(a->mux, h->index) : a->dp,
        .seed = ((uint32_t)a->epoch + h->index * 0x9e3779b9u) | 1,
        .prepare_hold_ms = cfg->hook_timeout_ms * 6,
    };
    static const struct tnve_rec_ops ops = {
        .send = op_send,
        .respond = op_respond,
        .wake = op_wake,
        .refresh_domain = op_refresh,
        .acked = op_acked,
        .sent = op_sent,
        .serves = op_serves,
    };
    h->rec = tnve_rec_create(&rc_cfg, &ops, h);
    if (!h->rec) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int l2 = e->transport == TNVE_TRANSPORT_L2;
    struct tnve_nnve_config nc = {
        .address = e->nnve_address,
        .port = e->nnve_port,
        .l2_interface = l2 ? tnve_config_nnve_l2_interface(cfg, e) : NULL,
        .nnve_mac = l2 && e->nnve_mac_set ? e->nnve_mac : NULL,
        .l2_discovery_mac = e->l2_discovery_mac,
        .l2_vlan = e->l2_vlan,
        .l2_ethertype = e->l2_ethertype,
        .nnve_name = e->nnve_name,
        .connect_timeout_ms = cfg->connect_timeout_ms,
        .hello_timeout_ms = cfg->hello_timeout_ms,
        .name = e->name,
        .cert = cfg->cert,
        .key = cfg->key,
        .ca = cfg->ca,
        .crl = cfg->crl,
        .identity = e->nnve_identity,
        .node_id = cfg->node_id,
        .uplink = cfg->uplink,
        .keepalive_ms = cfg->keepalive_ms,
        .request_timeout_ms = cfg->request_timeout_ms,
        .retry_min_ms = cfg->retry_min_ms,
        .retry_max_ms = cfg->retry_max_ms,
        .epoch = a->epoch,
    };
    static const struct tnve_nnve_cbs ncbs = {nnve_up, nnve_down, nnve_request, nnve_response,
                                              nnve_failed};
    int rc = tnve_nnve_create(a->loop, &nc, &ncbs, h, &h->nnve, err, errlen);
    if (rc < 0) {
        h->nnve = NULL;
        return rc;
    }
    char where[300];
    if (l2) {
        char mac[SNCP_MAC_STRLEN] = "discovery";
        if (e->nnve_mac_set)
            sncp_mac_format(e->nnve_mac, mac, sizeof mac);
        snprintf(where, sizeof where, "%s/%s", tnve_config_nnve_l2_interface(cfg, e), mac);
    } else {
        snprintf(where, sizeof where, "%s:%u", e->nnve_address, e->nnve_port);
    }
    SNV_INFO("agent",
             "nnve configured name=%s transport=%s nnve=%s identity=%s preference=%u uplink=%s",
             e->name, tnve_transport_name(e->transport), where, e->nnve_identity, h->index,
             e->uplink[0] ? e->uplink : "-");
    return 0;
}

int tnve_agent_create(uv_loop_t *loop, struct tnve_config *cfg, const char *config_path,
                      struct tnve_agent **out, char *err, size_t errlen)
{
    struct tnve_agent *a = calloc(1, sizeof *a);
    if (!a) {
        free(cfg);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    a->loop = loop;
    a->cfg = cfg;
    a->config_path = config_path ? strdup(config_path) : NULL;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    a->epoch = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    uv_loop_configure(loop, UV_METRICS_IDLE_TIME); /* for the loop-busy part of nnve_rtt */
    uv_idle_init(loop, &a->wake);
    uv_timer_init(loop, &a->timer);
    a->wake.data = a->timer.data = a;
    a->handles_open = 2;
    a->vn_check_rl = (struct snv_ratelimit)SNV_RATELIMIT_INIT(5, 20);
    a->override = -1;
    a->preferred = -1;
    *out = a;
    if (!cfg->n_nnves) {
        tnve_config_single_nnve(cfg, &cfg->nnves[0]);
        cfg->n_nnves = 1;
    }

    int rc = make_dirs(cfg->state_dir);
    if (rc < 0) {
        snprintf(err, errlen, "state_dir %s: %s", cfg->state_dir, strerror(-rc));
        return rc;
    }

    a->dp_class = tnve_dp_class_find(cfg->dataplane);
    if (!a->dp_class) {
        snprintf(err, errlen, "unknown dataplane '%s'", cfg->dataplane);
        return SNCP_E_CONFIG;
    }
    struct tnve_dp_config dpc = {cfg->uplink, cfg->bridge[0] ? cfg->bridge : NULL};
    rc = a->dp_class->create(&dpc, &a->dp);
    if (rc < 0) {
        snprintf(err, errlen, "dataplane %s: %s", cfg->dataplane, sncp_strerror(rc));
        a->dp = NULL;
        return rc;
    }
    if (cfg->n_nnves > 1) {
        const char *names[TNVE_MAX_NNVES];
        for (unsigned i = 0; i < cfg->n_nnves; i++)
            names[i] = cfg->nnves[i].name;
        a->mux = tnve_dp_mux_create(a->dp_class, a->dp, cfg->n_nnves, names, mux_rank, a);
        if (!a->mux) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        tnve_dp_mux_set_vn_name(a->mux, mux_vn_name);
    }
    /* figures only: a series that cannot be allocated records nothing */
    tnve_lat_init(&a->lat_total, TNVE_AGENT_LATENCY_MAX);
    tnve_lat_init(&a->lat_libvirt, TNVE_AGENT_LATENCY_MAX);
    tnve_lat_init(&a->lat_hop, TNVE_AGENT_LATENCY_MAX);
    tnve_lat_init(&a->lat_nnve, TNVE_AGENT_LATENCY_MAX);
    tnve_lat_init(&a->lat_nnve_busy, TNVE_AGENT_LATENCY_MAX);
    tnve_lat_init(&a->lat_send, TNVE_AGENT_LATENCY_MAX);
    for (int s = 0; s <= SNCP_TSI_ACTIVATED; s++)
        tnve_lat_init(&a->lat_state[s], TNVE_AGENT_LATENCY_MAX);

    char sockdir[TNVE_CONFIG_STR];
    snprintf(sockdir, sizeof sockdir, "%s", cfg->control_socket);
    char *slash = strrchr(sockdir, '/');
    if (slash && slash != sockdir) {
        *slash = '\0';
        rc = make_dirs(sockdir);
        if (rc < 0) {
            snprintf(err, errlen, "control socket directory %s: %s", sockdir, strerror(-rc));
            return rc;
        }
    }
    rc = snv_ctl_server_create(loop, cfg->control_socket, &a->ctl);
    if (rc < 0) {
        snprintf(err, errlen, "control socket %s: %s", cfg->control_socket, strerror(-rc));
        a->ctl = NULL;
        return rc;
    }
    rc = tnve_ctl_register(a);
    if (rc < 0) {
        snprintf(err, errlen, "control commands: %s", strerror(-rc));
        return rc;
    }

    /* every reconciler exists before any session can come up and call into the others */
    a->n_homes = cfg->n_nnves;
    for (unsigned i = 0; i < a->n_homes; i++) {
        struct tnve_home *h = &a->homes[i];
        h->a = a;
        h->index = i;
        h->ncfg = &cfg->nnves[i];
    }
    for (unsigned i = 0; i < a->n_homes; i++) {
        rc = home_create(a, &a->homes[i], err, errlen);
        if (rc < 0)
            return rc;
    }

    if (a->n_homes > 1 && cfg->nnves[0].uplink[0]) {
        const char *names[TNVE_MAX_NNVES];
        for (unsigned i = 0; i < a->n_homes; i++)
            names[i] = cfg->nnves[i].uplink;
        rc = tnve_uplinks_create(loop, names, a->n_homes, uplinks_changed, a, &a->uplinks);
        if (rc < 0) {
            snprintf(err, errlen, "uplinks: rtnetlink socket: %s", strerror(-rc));
            return rc;
        }
    }

    struct tnve_virt_config vc = {
        .uri = cfg->libvirt_uri,
        .keepalive_s = cfg->libvirt_keepalive_s,
        .retry_min_ms = cfg->retry_min_ms,
        .retry_max_ms = cfg->retry_max_ms,
        .address_poll_ms = cfg->address_poll_ms,
        .address_sources = cfg->address_sources,
        .rules = cfg->rules,
        .n_rules = cfg->n_rules,
        .lat_libvirt = &a->lat_libvirt,
        .lat_hop = &a->lat_hop,
    };
    struct tnve_rec *recs[TNVE_MAX_NNVES];
    for (unsigned i = 0; i < a->n_homes; i++)
        recs[i] = a->homes[i].rec;
    rc = tnve_virt_create(loop, &vc, recs, a->n_homes, &a->virt);
    if (rc < 0) {
        a->virt = NULL;
        snprintf(err, errlen, "libvirt: %s", strerror(-rc));
        return rc;
    }
    SNV_INFO("agent",
             "started node_id=%s nnves=%u mode=%s active=%s libvirt=%s dataplane=%s "
             "epoch=%llu",
             cfg->node_id, a->n_homes, tnve_mode_name(cfg->mode), tnve_agent_active_name(a),
             cfg->libvirt_uri, cfg->dataplane, (unsigned long long)a->epoch);
    return 0;
}

void tnve_agent_destroy(struct tnve_agent *a)
{
    if (!a || a->destroying)
        return;
    SNV_INFO("agent", "shutting down");
    /* hook requests are answered while every reconciler still exists */
    while (a->prepares)
        prepare_finish(a->prepares, SNCP_E_CLOSED, "agent shutting down");
    a->destroying = 1;
    tnve_uplinks_destroy(a->uplinks);
    a->uplinks = NULL;
    tnve_virt_destroy(a->virt);
    a->virt = NULL;
    for (unsigned i = 0; i < a->n_homes; i++) {
        tnve_nnve_destroy(a->homes[i].nnve);
        a->homes[i].nnve = NULL;
    }
    for (unsigned i = 0; i < a->n_homes; i++) {
        tnve_rec_destroy(a->homes[i].rec);
        a->homes[i].rec = NULL;
    }
    snv_ctl_server_destroy(a->ctl);
    a->ctl = NULL;
    tnve_dp_mux_destroy(a->mux);
    a->mux = NULL;
    if (a->dp_class && a->dp)
        a->dp_class->destroy(a->dp);
    a->dp = NULL;
    uv_close((uv_handle_t *)&a->wake, handle_closed);
    uv_close((uv_handle_t *)&a->timer, handle_closed);
}

int tnve_agent_reload(struct tnve_agent *a)
{
    if (!a->config_path) {
        SNV_INFO("agent", "reload: no config file");
        return 0;
    }
    struct tnve_config *c = malloc(sizeof *c);
    if (!c)
        return -ENOMEM;
    tnve_config_defaults(c);
    char err[512];
    int rc = tnve_config_load(a->config_path, c, err, sizeof err);
    if (rc < 0) {
        SNV_ERR("agent", "reload failed, keeping the old configuration: %s", err);
        free(c);
        return rc;
    }
    a->reloads++;
    const struct tnve_config *o = a->cfg;
    if (c->n_nnves != o->n_nnves || memcmp(c->nnves, o->nnves, c->n_nnves * sizeof c->nnves[0]) ||
        c->connect_timeout_ms != o->connect_timeout_ms ||
        c->hello_timeout_ms != o->hello_timeout_ms || strcmp(c->libvirt_uri, o->libvirt_uri) ||
        strcmp(c->control_socket, o->control_socket) || strcmp(c->dataplane, o->dataplane) ||
        strcmp(c->state_dir, o->state_dir) || c->mode != o->mode)
        SNV_WARN("agent", "reload: changed nNVE, connection, mode, socket, dataplane or "
                          "state_dir keys take effect after a restart");
    /* The rules array moves into the live config; virt keeps a pointer to it.  A VN's mode
     * given in a [map] section stays as it was until a restart. */
    for (unsigned i = 0; i < c->n_rules; i++) {
        c->rules[i].mode = TNVE_MODE_UNSET;
        for (unsigned j = 0; j < a->cfg->n_rules; j++)
            if (!strcmp(a->cfg->rules[j].name, c->rules[i].name))
                c->rules[i].mode = a->cfg->rules[j].mode;
    }
    memcpy(a->cfg->rules, c->rules, sizeof c->rules);
    a->cfg->n_rules = c->n_rules;
    a->cfg->associate_on_define = c->associate_on_define;
    int crl_ok = 1;
    for (unsigned i = 0; i < a->n_homes; i++) {
        if (tnve_nnve_reload(a->homes[i].nnve, c->crl, err, sizeof err) < 0) {
            SNV_ERR("agent", "reload: TLS files not reloaded, keeping the running ones nnve=%s: %s",
                    a->homes[i].ncfg->name, err);
            crl_ok = 0;
        }
    }
    if (crl_ok)
        memcpy(a->cfg->crl, c->crl, sizeof c->crl);
    free(c);
    for (unsigned i = 0; i < a->n_homes; i++)
        tnve_rec_set_policy(a->homes[i].rec, a->cfg->associate_on_define, uv_now(a->loop));
    tnve_virt_set_rules(a->virt, a->cfg->rules, a->cfg->n_rules);
    SNV_INFO("agent", "configuration reloaded rules=%u associate_on_define=%d", a->cfg->n_rules,
             a->cfg->associate_on_define);
    return 0;
}
