/* reconcile.c: desired vs acknowledged TSI state, converged over SNCP (see reconcile.h).
 *
 * Objects: domains (from libvirt), TSIs (one per vNIC with a VN, keyed by TSI_ID and VN),
 * VNs (kept for the process lifetime so their last tag survives a disconnect).  Lists are
 * plain linked lists: a host has at most a few thousand vNICs and every pass is O(n).
 *
 * A TSI's desired state is its domain's while the vNIC exists, else Init.  acked is the
 * state the nNVE last confirmed and stays across a session loss (it is what SYNC
 * re-announces against and what the dataplane shows).  During SYNC every object carries
 * sync_needed until it is re-announced (or swept by SYNC_END).
 *
 * Cookies: kind in the top 4 bits, the object's serial below; never 0 (the SNCP client
 * uses 0 for its HELLO).
 */
#include "reconcile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sncp-error.h"
#include "snv-file.h"
#include "snv-log.h"

enum rec_phase {
    PHASE_DOWN,
    PHASE_WAIT_INVENTORY,
    PHASE_SYNC_BEGIN,
    PHASE_SYNCING,
    PHASE_SYNC_END,
    PHASE_READY,
};

enum cookie_kind {
    CK_TSI = 1,
    CK_VN = 2,
    CK_SYNC_BEGIN = 3,
    CK_SYNC_END = 4,
};
#define COOKIE(kind, serial) (((uint64_t)(kind) << 60) | ((serial) & ((UINT64_C(1) << 60) - 1)))
#define COOKIE_KIND(c) ((unsigned)((c) >> 60))
#define COOKIE_SERIAL(c) ((c) & ((UINT64_C(1) << 60) - 1))

enum { REC_HASH = 4096 };

struct rec_vn {
    struct rec_vn *next;
    uint64_t serial;
    struct tnve_vn vn; /* the nNVE's catalogue entry once resolved, else the vNIC's form */
    int resolved;      /* vn is what the nNVE returned (PROTOCOL.md §4.4) */
    uint16_t tag;      /* last known local tag (0: none) */
    int served;        /* ops->serves: this nNVE is to hold the VN's TSIs */
    int acked;         /* the nNVE confirmed our connection */
    int sync_needed, sync_tried;
    uint8_t out_type; /* outstanding request type, 0 = none */
    uint64_t retry_at;
    unsigned failures, kicks;
    uint64_t last_kick;
    int last_err;
    char last_reason[300];
    uint64_t fail_time;
};

struct rec_domain {
    struct rec_domain *next;
    struct rec_domain *hnext; /* in its dom_hash bucket */
    struct rec_tsi *tsis;     /* its TSIs, oldest first (rec_tsi.dom_next) */
    int reap;                 /* collect(): freed with its TSIs */
    uint8_t uuid[16];
    char uuid_str[40];
    char name[256];
    char state[40];
    enum sncp_tsi_state desired;
    uint16_t flags;      /* SNCP flags of the last desired-state change */
    int inactive_policy; /* desired follows associate_on_define */
    int removed;         /* gone from libvirt: forget once all TSIs are Init */
    int seen;
    unsigned n_vnics, n_unmapped;
    uint8_t unmapped_logged[TNVE_MAX_VNICS][6];
    unsigned n_unmapped_logged;
    uint64_t prepared_until; /* hook-prepared, not yet started */
    int prepare_set;         /* the desired state is the hook's (no event since) */
    int prepare_new;         /* the hook made the domain known */
    int incoming;            /* destination of a migration under way (Associated until the
                              * guest resumes here): its requests carry MIGRATION, also when
                              * SYNC re-announces them */
    enum sncp_tsi_state prepare_prev;
};

struct rec_tsi {
    struct rec_tsi *next;
    struct rec_tsi *dom_next; /* in its domain's list */
    struct rec_tsi *snext;    /* in its tsi_hash bucket (by serial) */
    uint64_t serial;
    struct rec_domain *dom;
    struct rec_vn *vn;
    struct sncp_tsi_id id;
    char id_str[SNCP_TSI_ID_STRLEN];
    char ifname[64];
    int present; /* the vNIC still exists with this VN */
    enum sncp_tsi_state acked;
    uint16_t flags; /* SNCP flags for the next transition */
    uint16_t tag;
    uint8_t out_type;
    enum sncp_tsi_state out_target;
    int out_behind_connect; /* the request went out behind its VN's VN_CONNECT */
    uint32_t out_addr_gen;
    int sync_needed, sync_tried;
    int sync_deactivate; /* SYNC: ASSOCIATE met INVALID_STATE, DEACTIVATE next */
    int evict, evicted;  /* CONFLICT: the nNVE has the TSI_ID in a VN we do not know */
    uint64_t retry_at;
    unsigned failures, kicks;
    uint64_t last_kick;
    int last_err;
    char last_reason[300];
    uint64_t fail_time; /* when last_err was set */
    struct sncp_addr addrs[SNCP_MAX_ADDRS];
    unsigned n_addrs;
    uint32_t addr_gen, addr_acked_gen;
    uint16_t dp_vid;
    char dp_ifname[64];
    int dp_adopted; /* dp_vid is the previous run's, kept for the activation under way */
    uint64_t stamp; /* of the desired-state change not yet acknowledged */
    int stamp_sent; /* a request for that change has left (ops.sent was told) */
};

/* A vNIC port the previous run of the agent had set (from the ports file), kept until the
 * first SYNC shows whether a TSI still owns it. */
struct rec_dp_port {
    struct rec_dp_port *next;
    struct rec_dp_port *hnext; /* in its dp_inherited_hash bucket */
    char ifname[64];
    uint16_t vid;
    uint64_t owner; /* serial of the TSI that set it again in this run, 0: none yet */
};

struct rec_waiter {
    struct rec_waiter *next;
    uint8_t uuid[16];
    uint64_t start, deadline;
    tnve_rec_prepare_cb *cb;
    void *aux;
};

/* The retry of a state file write that failed (retry_arm()). */
struct file_retry {
    int failed;  /* a write failed: the next run sets the retry */
    uint64_t at; /* then: when the file is written again (0: not to) */
    unsigned ms; /* the delay of the last retry (0: the last write went through) */
};

struct tnve_rec {
    struct tnve_rec_config cfg;
    char *state_file;
    char *dp_state_file;
    struct snv_file_bg *dp_writer;                   /* writes dp_state_file off the loop */
    struct rec_dp_port *dp_inherited;                /* until the first SYNC_END */
    struct rec_dp_port *dp_inherited_hash[REC_HASH]; /* the same, by port name */
    struct tnve_rec_ops ops;
    void *aux;
    enum rec_phase phase;
    uint32_t peer_caps; /* the nNVE's CAPABILITIES of the current session */
    int inventory_ready;
    uint64_t next_serial;
    uint64_t stamp;
    uint32_t rng;
    struct rec_domain *domains;
    struct rec_tsi *tsis, *tsis_tail;
    /* indexes: domains by UUID, TSIs by serial (the responses' cookies) */
    struct rec_domain *dom_hash[REC_HASH];
    struct rec_tsi *tsi_hash[REC_HASH];
    int dp_dirty; /* the ports file is to be rewritten (at the end of the next run) */
    struct file_retry tags_retry, dp_retry;
    int window_full; /* the transport took no more requests in this run */
    struct rec_vn *vns;
    struct rec_waiter *waiters;
    int any_gone; /* some vNIC that went away is still held at the nNVE */
    struct tnve_rec_stats st;
    struct snv_ratelimit rl_peer;
};

/* ---------------------------------------------------------------- helpers */

static uint32_t rng_next(struct tnve_rec *r)
{
    uint32_t x = r->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    r->rng = x;
    return x;
}

enum { RETRY_AFTER_MIN_MS = 10 };

/* retry_min * 2^(n-1), capped at retry_max, times a jitter in [0.75, 1.25), still capped.
 * A peer's RETRY_AFTER is honoured as given instead (within [10 ms, retry_max]): it knows
 * when the request can succeed (e.g. a ToR pair's tag being agreed, PROTOCOL.md §17.3). */
static uint64_t backoff(struct tnve_rec *r, unsigned n, uint32_t retry_after)
{
    if (retry_after)
        return retry_after < RETRY_AFTER_MIN_MS    ? RETRY_AFTER_MIN_MS
               : retry_after > r->cfg.retry_max_ms ? r->cfg.retry_max_ms
                                                   : retry_after;
    uint64_t d = r->cfg.retry_min_ms;
    for (unsigned i = 1; i < n && d < r->cfg.retry_max_ms; i++)
        d *= 2;
    if (d > r->cfg.retry_max_ms)
        d = r->cfg.retry_max_ms;
    d = d * (750 + rng_next(r) % 500) / 1000;
    if (d > r->cfg.retry_max_ms)
        d = r->cfg.retry_max_ms;
    return d ? d : 1;
}

static void wake(struct tnve_rec *r)
{
    if (r->ops.wake)
        r->ops.wake(r->aux);
}

static int session_usable(const struct tnve_rec *r)
{
    return r->phase == PHASE_SYNCING || r->phase == PHASE_SYNC_END || r->phase == PHASE_READY;
}

static enum sncp_tsi_state tsi_desired(const struct rec_tsi *t)
{
    if (!t->present || t->dom->removed || !t->vn->served)
        return SNCP_TSI_INIT;
    return t->dom->desired;
}

static const char *vn_text(const struct rec_vn *v, char *buf, size_t cap)
{
    tnve_vn_format(&v->vn, buf, cap);
    return buf;
}

static const char *type_short(uint8_t type)
{
    switch (type) {
    case SNCP_MSG_VN_CONNECT:
        return "connect";
    case SNCP_MSG_VN_DISCONNECT:
        return "disconnect";
    case SNCP_MSG_TSI_ASSOCIATE:
        return "associate";
    case SNCP_MSG_TSI_ACTIVATE:
        return "activate";
    case SNCP_MSG_TSI_DEACTIVATE:
        return "deactivate";
    case SNCP_MSG_TSI_DEASSOCIATE:
        return "deassociate";
    case SNCP_MSG_TSI_UPDATE:
        return "update";
    default:
        return "-";
    }
}

static void set_reason(char *dst, size_t cap, int err, const struct sncp_msg *rsp)
{
    if (rsp && rsp->reason[0])
        snprintf(dst, cap, "%s: %s", sncp_error_token(err), rsp->reason);
    else
        snprintf(dst, cap, "%s", sncp_strerror(err));
}

/* ---------------------------------------------------------------- tag file */

static void file_error(const char *what, const char *path, int err)
{
    SNV_WARN("rec", "cannot write %s path=%s err=%s", what, path, strerror(-err));
}

/* A state file whose write failed (a full disk, a missing directory) is written again with
 * nothing changed: 1 s after the run that found the failure, then twice as long each time it
 * fails again, up to every 30 s, until a write goes through.  Else it would stay stale, and
 * the next start trust it, for as long as nothing changed. */
enum { RETRY_MIN_MS = 1000, RETRY_MAX_MS = 30000 };

/* At a run at `now`: a failure found since the last run sets the retry; lowers *next to it. */
static void retry_arm(struct file_retry *fr, uint64_t now, uint64_t *next)
{
    if (fr->failed) {
        fr->failed = 0;
        fr->ms = fr->ms ? fr->ms * 2 : RETRY_MIN_MS;
        if (fr->ms > RETRY_MAX_MS)
            fr->ms = RETRY_MAX_MS;
        fr->at = now + fr->ms;
    }
    if (fr->at && fr->at < *next)
        *next = fr->at;
}

/* Whether the retry is due at `now` (it is then taken). */
static int retry_due(struct file_retry *fr, uint64_t now)
{
    if (!fr->at || now < fr->at)
        return 0;
    fr->at = 0;
    return 1;
}

/* The agent's small state files are replaced whole through snv_file_write_atomic(), so a
 * crash leaves the old file or the complete new one, and a symlink planted at the path is
 * replaced, never followed.  The tag file changes rarely (a VN's tag): it is written here,
 * on the loop; the ports file off the loop (dp_flush). */
static int save_file(const char *path, const char *what, snv_file_writer *writer, void *aux)
{
    int err = snv_file_write_atomic(path, 0644, writer, aux);
    if (err < 0)
        file_error(what, path, err);
    return err;
}

static int tags_write(FILE *f, void *aux)
{
    const struct tnve_rec *r = aux;
    fprintf(f, "# tnve-agent: last local tag per VN (vn_id vn_name tag); rewritten by the "
               "agent\n");
    for (const struct rec_vn *v = r->vns; v; v = v->next)
        if (v->tag)
            fprintf(f, "%u %s %u\n", v->vn.id, v->vn.name[0] ? v->vn.name : "-", v->tag);
    return 0;
}

static void tags_save(struct tnve_rec *r)
{
    if (!r->state_file)
        return;
    r->tags_retry.at = 0; /* this content replaces the retry's */
    if (save_file(r->state_file, "tag file", tags_write, r) < 0) {
        r->tags_retry.failed = 1;
        wake(r); /* for the run that sets the retry */
    } else {
        r->tags_retry.ms = 0;
    }
}

static struct rec_vn *vn_get(struct tnve_rec *r, const struct tnve_vn *vn, int create);

static void tags_load(struct tnve_rec *r)
{
    if (!r->state_file)
        return;
    FILE *f = fopen(r->state_file, "r");
    if (!f)
        return;
    char line[256];
    unsigned loaded = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#')
            continue;
        unsigned id, tag;
        char name[SNCP_MAX_VN_NAME_LEN + 2];
        if (sscanf(line, "%u %65s %u", &id, name, &tag) != 3)
            continue;
        struct tnve_vn vn;
        memset(&vn, 0, sizeof vn);
        if (id > SNCP_MAX_VN_ID || tag < SNCP_MIN_VID || tag > SNCP_MAX_VID)
            continue;
        vn.id = id;
        if (strcmp(name, "-") && tnve_vn_set_name(&vn, name))
            continue;
        if (!tnve_vn_is_set(&vn))
            continue;
        struct rec_vn *v = vn_get(r, &vn, 1);
        if (v) {
            v->resolved = 1; /* written from the nNVE's answers */
            v->tag = (uint16_t)tag;
            loaded++;
        }
    }
    fclose(f);
    SNV_INFO("rec", "loaded last known tags path=%s vns=%u", r->state_file, loaded);
}

/* ---------------------------------------------------------------- objects */

/* Whether the vNIC form `q` names the VN object `v` (see vn.h): a resolved VN by the rule
 * of PROTOCOL.md §4.4, one not resolved yet by the same form only. */
static int vn_matches(const struct rec_vn *v, const struct tnve_vn *q)
{
    return v->resolved ? tnve_vn_designates(&v->vn, q) : tnve_vn_equal(&v->vn, q);
}

/* The VN object a vNIC form names: a resolved one it designates, else one of the same form
 * not resolved yet, else (create) a new one.  Only the nNVE's answers resolve a VN, so a
 * vNIC's ID and name never complete each other (a disagreeing pair stays its own VN and
 * gets the nNVE's CONFLICT). */
static struct rec_vn *vn_get(struct tnve_rec *r, const struct tnve_vn *vn, int create)
{
    struct rec_vn *same_form = NULL;
    for (struct rec_vn *v = r->vns; v; v = v->next) {
        if (v->resolved && tnve_vn_designates(&v->vn, vn))
            return v;
        if (!v->resolved && !same_form && tnve_vn_equal(&v->vn, vn))
            same_form = v;
    }
    if (same_form || !create)
        return same_form;
    struct rec_vn *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->serial = ++r->next_serial;
    v->vn = *vn;
    v->served = r->ops.serves ? r->ops.serves(r->aux, vn) != 0 : 1;
    v->next = r->vns;
    r->vns = v;
    r->st.vns++;
    return v;
}

static unsigned uuid_hash(const uint8_t uuid[16])
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ uuid[i]) * 16777619u;
    return h % REC_HASH;
}

static struct rec_domain *dom_find(const struct tnve_rec *r, const uint8_t uuid[16])
{
    for (struct rec_domain *d = r->dom_hash[uuid_hash(uuid)]; d; d = d->hnext)
        if (!memcmp(d->uuid, uuid, 16))
            return d;
    return NULL;
}

static struct rec_tsi *tsi_find_serial(const struct tnve_rec *r, uint64_t serial)
{
    for (struct rec_tsi *t = r->tsi_hash[serial % REC_HASH]; t; t = t->snext)
        if (t->serial == serial)
            return t;
    return NULL;
}

static struct rec_tsi *tsi_find_present(const struct tnve_rec *r, const uint8_t uuid[16],
                                        const uint8_t mac[6])
{
    const struct rec_domain *d = dom_find(r, uuid);
    for (struct rec_tsi *t = d ? d->tsis : NULL; t; t = t->dom_next)
        if (t->present && !memcmp(t->id.mac, mac, 6))
            return t;
    return NULL;
}

/* The TSI the nNVE means by a TSI_ID: the present one, else any with acked state. */
static struct rec_tsi *tsi_find_id(const struct tnve_rec *r, const struct sncp_tsi_id *id)
{
    struct rec_tsi *any = NULL;
    for (struct rec_tsi *t = r->tsis; t; t = t->next) {
        if (memcmp(&t->id, id, sizeof *id))
            continue;
        if (t->present)
            return t;
        if (!any)
            any = t;
    }
    return any;
}

/* A TSI waits while another object with its TSI_ID (an old VN) is not yet back to Init. */
static int tsi_blocked(const struct tnve_rec *r, const struct rec_tsi *t)
{
    if (!t->present || !r->any_gone)
        return 0;
    for (const struct rec_tsi *o = r->tsis; o; o = o->next) {
        if (o == t || o->present || memcmp(&o->id, &t->id, sizeof t->id))
            continue;
        if (o->acked != SNCP_TSI_INIT || o->out_type)
            return 1;
    }
    return 0;
}

/* An instance of a vNIC that left its VN and stands in the way of the vNIC's present one
 * (PROTOCOL.md §4.3: one VN per TSI_ID and hypervisor): it is de-associated first. */
static int tsi_blocks_move(const struct tnve_rec *r, const struct rec_tsi *t)
{
    if (t->present || tsi_desired(t) != SNCP_TSI_INIT || t->acked == SNCP_TSI_INIT)
        return 0;
    for (const struct rec_tsi *o = r->tsis; o; o = o->next)
        if (o != t && o->present && tsi_desired(o) != SNCP_TSI_INIT &&
            !memcmp(&o->id, &t->id, sizeof t->id))
            return 1;
    return 0;
}

/* During SYNC: the present instance waits for an old one whose de-association failed. */
static int tsi_blocked_by_tried(const struct tnve_rec *r, const struct rec_tsi *t)
{
    for (const struct rec_tsi *o = r->tsis; o; o = o->next)
        if (o != t && !o->present && o->sync_needed && o->sync_tried &&
            !memcmp(&o->id, &t->id, sizeof t->id))
            return 1;
    return 0;
}

static unsigned vn_users(const struct tnve_rec *r, const struct rec_vn *v)
{
    unsigned n = 0;
    for (const struct rec_tsi *t = r->tsis; t; t = t->next)
        if (t->vn == v && tsi_desired(t) != SNCP_TSI_INIT)
            n++;
    return n;
}

/* TSIs of the VN that the nNVE still holds (or may hold: a request is out). */
static unsigned vn_held(const struct tnve_rec *r, const struct rec_vn *v)
{
    unsigned n = 0;
    for (const struct rec_tsi *t = r->tsis; t; t = t->next)
        if (t->vn == v && (t->acked != SNCP_TSI_INIT || t->out_type))
            n++;
    return n;
}

/* ---------------------------------------------------------------- dataplane */

/* Whether a vNIC port other than `except`'s still carries `vid`, so the uplink keeps it:
 * ports set in this run, and those of the previous run not decided yet. */
static int uplink_in_use(const struct tnve_rec *r, const struct rec_tsi *except, uint16_t vid)
{
    for (const struct rec_tsi *t = r->tsis; t; t = t->next)
        if (t != except && t->dp_vid == vid)
            return 1;
    for (const struct rec_dp_port *p = r->dp_inherited; p; p = p->next)
        if (p->vid == vid)
            return 1;
    return 0;
}

static int dp_write(FILE *f, void *aux)
{
    const struct tnve_rec *r = aux;
    fprintf(f, "# tnve-agent: vNIC ports carrying a local tag (port vid); rewritten by the "
               "agent\n");
    for (const struct rec_tsi *t = r->tsis; t; t = t->next)
        if (t->dp_vid)
            fprintf(f, "%s %u\n", t->dp_ifname, t->dp_vid);
    for (const struct rec_dp_port *p = r->dp_inherited; p; p = p->next)
        fprintf(f, "%s %u\n", p->ifname, p->vid);
    return 0;
}

/* The ports file is to be rewritten (every port set now, plus the inherited ones still
 * undecided): once per run, not once per port, which a restart with thousands of vNICs
 * would make quadratic. */
static void dp_save(struct tnve_rec *r)
{
    r->dp_dirty = 1;
    wake(r);
}

static unsigned name_hash(const char *name)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *name; name++)
        h = (h ^ (uint8_t)*name) * 16777619u;
    return h % REC_HASH;
}

/* The previous run's entry for (ifname, vid), or NULL. */
static struct rec_dp_port *dp_inherited_find(struct tnve_rec *r, const char *ifname, uint16_t vid)
{
    for (struct rec_dp_port *p = r->dp_inherited_hash[name_hash(ifname)]; p; p = p->hnext)
        if (p->vid == vid && !strcmp(p->ifname, ifname))
            return p;
    return NULL;
}

/* The ports file changes with every tag a vNIC port gets or loses, and its two fsyncs would
 * hold the loop a millisecond or more each time: its content is built here, on the loop,
 * and written by dp_writer's thread (the newest content wins, in order).  A failed write
 * is logged from the loop by dp_file_check(), at a later run. */
static void dp_flush(struct tnve_rec *r)
{
    if (r->dp_dirty && r->dp_writer) {
        r->dp_retry.at = 0; /* this content replaces the retry's */
        int err = snv_file_bg_write(r->dp_writer, dp_write, r);
        if (err < 0) {
            file_error("ports file", r->dp_state_file, err);
            r->dp_retry.failed = 1;
        }
    }
    r->dp_dirty = 0;
}

/* While a ports file write is under way, runs come this often to log its failure (and set
 * its retry, see retry_arm()). */
enum { DP_FILE_CHECK_MS = 100 };

/* Logs a ports file write that failed since the last call (the next run sets its retry).
 * Returns whether one is still under way. */
static int dp_file_check(struct tnve_rec *r)
{
    if (!r->dp_writer)
        return 0;
    int err;
    int busy = snv_file_bg_poll(r->dp_writer, &err);
    if (err < 0) {
        file_error("ports file", r->dp_state_file, err);
        r->dp_retry.failed = 1;
    } else if (!busy && !r->dp_retry.failed && !r->dp_retry.at) {
        r->dp_retry.ms = 0; /* what was handed over last is on disk */
    }
    return busy;
}

/* The ports file's part of a run at `now`: hands over its new content (or the retry's), and
 * lowers *next to when the run is wanted again for it. */
static void dp_file_run(struct tnve_rec *r, uint64_t now, uint64_t *next)
{
    if (retry_due(&r->dp_retry, now))
        r->dp_dirty = 1;
    dp_flush(r);
    if (dp_file_check(r) && now + DP_FILE_CHECK_MS < *next)
        *next = now + DP_FILE_CHECK_MS;
    retry_arm(&r->dp_retry, now, next);
}

void tnve_rec_wait_files(struct tnve_rec *r)
{
    if (r->dp_writer)
        snv_file_bg_wait(r->dp_writer);
    dp_file_check(r);
}

static void dp_load(struct tnve_rec *r)
{
    if (!r->dp_state_file)
        return;
    FILE *f = fopen(r->dp_state_file, "r");
    if (!f)
        return;
    char line[256];
    unsigned loaded = 0;
    while (fgets(line, sizeof line, f)) {
        char ifname[64];
        unsigned vid;
        if (line[0] == '#' || sscanf(line, "%63s %u", ifname, &vid) != 2 || vid < SNCP_MIN_VID ||
            vid > SNCP_MAX_VID || strlen(ifname) >= 16 ||
            dp_inherited_find(r, ifname, (uint16_t)vid))
            continue;
        struct rec_dp_port *p = calloc(1, sizeof *p);
        if (!p)
            break;
        snprintf(p->ifname, sizeof p->ifname, "%s", ifname);
        p->vid = (uint16_t)vid;
        p->next = r->dp_inherited;
        r->dp_inherited = p;
        unsigned h = name_hash(p->ifname);
        p->hnext = r->dp_inherited_hash[h];
        r->dp_inherited_hash[h] = p;
        loaded++;
    }
    fclose(f);
    SNV_INFO("rec", "loaded vnic ports of the previous run path=%s ports=%u", r->dp_state_file,
             loaded);
}

/* The TSI that may still own an inherited port whose activation is not acknowledged yet:
 * its vNIC is the port, it is meant to be Activated, and its tag is the port's or not
 * known yet.  NULL when none. */
static struct rec_tsi *dp_pending_owner(struct tnve_rec *r, const struct rec_dp_port *p)
{
    for (struct rec_tsi *t = r->tsis; t; t = t->next)
        if (!t->dp_vid && !strcmp(t->ifname, p->ifname) && tsi_desired(t) == SNCP_TSI_ACTIVATED &&
            (t->tag == p->vid || !t->tag))
            return t;
    return NULL;
}

/* After the first SYNC: an inherited port that no TSI has set again lost its VM while the
 * agent was down (destroyed, moved, unplugged); its tag goes, and the uplink's when unused.
 * Ports set again were left untouched by port_set (it sends nothing for what is in place).
 * A port whose running VM's activation is still under way (a request out, or being retried
 * after the nNVE lost the TSI) is handed to that TSI as set: its traffic keeps flowing, and
 * the acknowledgement keeps it, moves it to another tag, or clears it on failure. */
static void dp_sweep_inherited(struct tnve_rec *r)
{
    unsigned removed = 0, adopted = 0;
    memset(r->dp_inherited_hash, 0, sizeof r->dp_inherited_hash);
    while (r->dp_inherited) {
        struct rec_dp_port *p = r->dp_inherited;
        r->dp_inherited = p->next;
        /* the TSI that set it again, if it still holds it; else any (a rare search) */
        const struct rec_tsi *o = p->owner ? tsi_find_serial(r, p->owner) : NULL;
        int owned = o && o->dp_vid == p->vid && !strcmp(o->dp_ifname, p->ifname);
        for (const struct rec_tsi *t = r->tsis; t && !owned && p->owner; t = t->next)
            owned = t->dp_vid == p->vid && !strcmp(t->dp_ifname, p->ifname);
        struct rec_tsi *pending = owned ? NULL : dp_pending_owner(r, p);
        if (pending) {
            SNV_INFO("rec", "vnic port kept for its pending activation tsi=%s port=%s tag=%u",
                     pending->id_str, p->ifname, p->vid);
            pending->dp_vid = p->vid;
            pending->dp_adopted = 1;
            snprintf(pending->dp_ifname, sizeof pending->dp_ifname, "%s", p->ifname);
            adopted++;
        } else if (!owned && r->cfg.dp_class) {
            SNV_INFO("rec", "stale vnic port from the previous run port=%s tag=%u", p->ifname,
                     p->vid);
            int err = r->cfg.dp_class->port_clear(r->cfg.dp, p->ifname, p->vid,
                                                  uplink_in_use(r, NULL, p->vid));
            if (err < 0) {
                r->st.dp_errors++;
                SNV_ERR("rec", "dataplane clear of a stale port failed port=%s tag=%u err=%s",
                        p->ifname, p->vid, sncp_strerror(err));
            }
            removed++;
        }
        free(p);
    }
    SNV_INFO("rec", "dataplane reconciled with the previous run stale_ports=%u pending_ports=%u",
             removed, adopted);
    dp_save(r);
}

static void dp_sync(struct tnve_rec *r, struct rec_tsi *t)
{
    uint16_t want = t->acked == SNCP_TSI_ACTIVATED && t->ifname[0] ? t->tag : 0;
    if (t->dp_adopted) {
        /* Steps on the way back to Activated (Associated first, after the nNVE lost the
         * TSI) keep the previous run's tag on the port; anything else ends the adoption. */
        if (!want && tsi_desired(t) == SNCP_TSI_ACTIVATED && !strcmp(t->dp_ifname, t->ifname))
            return;
        t->dp_adopted = 0;
    }
    if (t->dp_vid == want && (!want || !strcmp(t->dp_ifname, t->ifname)))
        return;
    if (!r->cfg.dp_class) {
        t->dp_vid = want;
        snprintf(t->dp_ifname, sizeof t->dp_ifname, "%s", want ? t->ifname : "");
        return;
    }
    int cleared = t->dp_vid != 0;
    if (t->dp_vid) {
        int err = r->cfg.dp_class->port_clear(r->cfg.dp, t->dp_ifname, t->dp_vid,
                                              uplink_in_use(r, t, t->dp_vid));
        if (err < 0) {
            r->st.dp_errors++;
            SNV_ERR("rec", "dataplane clear failed tsi=%s port=%s tag=%u err=%s", t->id_str,
                    t->dp_ifname, t->dp_vid, sncp_strerror(err));
        }
        t->dp_vid = 0;
        t->dp_ifname[0] = '\0';
    }
    if (want) {
        int err = r->cfg.dp_class->port_set(r->cfg.dp, t->ifname, want);
        if (err < 0) {
            r->st.dp_errors++;
            SNV_ERR("rec", "dataplane set failed tsi=%s port=%s tag=%u err=%s", t->id_str,
                    t->ifname, want, sncp_strerror(err));
            dp_save(r);
            return;
        }
        t->dp_vid = want;
        snprintf(t->dp_ifname, sizeof t->dp_ifname, "%s", t->ifname);
        /* Set again as the previous run left it (an agent restart): the ports file lists
         * it already, and stays as it is if nothing else changed. */
        struct rec_dp_port *p = cleared ? NULL : dp_inherited_find(r, t->ifname, want);
        if (p) {
            p->owner = t->serial;
            return;
        }
    }
    dp_save(r);
}

static void tsi_set_acked(struct tnve_rec *r, struct rec_tsi *t, enum sncp_tsi_state s,
                          const char *why)
{
    if (t->acked != s) {
        char vbuf[TNVE_VN_STRLEN];
        SNV_INFO("rec", "tsi state tsi=%s domain=%s vn=%s acked=%s was=%s tag=%u cause=%s",
                 t->id_str, t->dom->name, vn_text(t->vn, vbuf, sizeof vbuf), sncp_tsi_state_name(s),
                 sncp_tsi_state_name(t->acked), t->tag, why);
        t->acked = s;
    }
    if (s == SNCP_TSI_INIT)
        t->addr_acked_gen = 0;
    dp_sync(r, t);
}

/* Frees t, taken out of the main list by the caller, and out of the indexes here. */
static void tsi_free(struct tnve_rec *r, struct rec_tsi *t)
{
    struct rec_tsi **pt = &r->tsi_hash[t->serial % REC_HASH];
    while (*pt && *pt != t)
        pt = &(*pt)->snext;
    if (*pt)
        *pt = t->snext;
    for (pt = &t->dom->tsis; *pt && *pt != t; pt = &(*pt)->dom_next)
        ;
    if (*pt)
        *pt = t->dom_next;
    free(t);
}

/* ---------------------------------------------------------------- waiters */

static void dom_revert_prepare(struct tnve_rec *r, const uint8_t uuid[16]);

static void waiter_finish(struct tnve_rec *r, struct rec_waiter *w, int err, const char *reason)
{
    if (err && err != SNCP_E_CLOSED)
        dom_revert_prepare(r, w->uuid);
    struct rec_waiter **pw = &r->waiters;
    while (*pw && *pw != w)
        pw = &(*pw)->next;
    if (*pw)
        *pw = w->next;
    if (err)
        r->st.prepares_failed++;
    else
        r->st.prepares_ok++;
    w->cb(w->aux, err, reason);
    free(w);
}

/* Refusals that end a hook wait at once; anything else is retried until the deadline. */
static int is_refusal(int err)
{
    return err == SNCP_E_NOT_AUTHORIZED || err == SNCP_E_TAG_POOL_EXHAUSTED ||
           err == SNCP_E_RESOURCE_LIMIT || err == SNCP_E_CONFLICT || err == SNCP_E_NO_SUCH_VN ||
           err == SNCP_E_INVALID_VALUE || err == SNCP_E_MISSING_TLV || err == SNCP_E_MALFORMED ||
           err == SNCP_E_CRITICAL_TLV;
}

static void waiters_check(struct tnve_rec *r, uint64_t now)
{
    struct rec_waiter *w = r->waiters;
    while (w) {
        struct rec_waiter *next = w->next;
        struct rec_domain *d = dom_find(r, w->uuid);
        int pending = 0, err = 0;
        char reason[700] = "";
        for (struct rec_tsi *t = d ? d->tsis : NULL; t; t = t->dom_next) {
            if (!t->present || !t->vn->served)
                continue;
            if (t->acked == SNCP_TSI_INIT || t->sync_needed)
                pending++;
            if (err)
                continue;
            if (t->last_err && t->last_err != SNCP_E_NO_SUCH_VN && is_refusal(t->last_err) &&
                t->fail_time >= w->start) {
                err = t->last_err;
                snprintf(reason, sizeof reason, "nNVE refused vNIC %s: %s", t->id_str,
                         t->last_reason);
            } else if (t->vn->last_err && is_refusal(t->vn->last_err) &&
                       t->vn->fail_time >= w->start) {
                char vbuf[TNVE_VN_STRLEN];
                err = t->vn->last_err;
                snprintf(reason, sizeof reason, "nNVE refused VN %s: %s",
                         vn_text(t->vn, vbuf, sizeof vbuf), t->vn->last_reason);
            }
        }
        if (!d) {
            waiter_finish(r, w, SNCP_E_CLOSED, "domain no longer tracked");
        } else if (err) {
            waiter_finish(r, w, err, reason);
        } else if (!pending) {
            waiter_finish(r, w, 0, "associated");
        } else if (now >= w->deadline) {
            char last[340] = "";
            for (struct rec_tsi *t = d->tsis; t; t = t->dom_next)
                if (t->present && t->last_err && !last[0])
                    snprintf(last, sizeof last, "; last error: %s", t->last_reason);
            snprintf(reason, sizeof reason, "timed out waiting for the nNVE (%s%s)",
                     r->phase == PHASE_DOWN ? "nNVE unreachable" : tnve_rec_phase(r), last);
            waiter_finish(r, w, SNCP_E_TIMEOUT, reason);
        }
        w = next;
    }
}

/* ---------------------------------------------------------------- create */

struct tnve_rec *tnve_rec_create(const struct tnve_rec_config *cfg, const struct tnve_rec_ops *ops,
                                 void *aux)
{
    struct tnve_rec *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->cfg = *cfg;
    if (!r->cfg.retry_min_ms)
        r->cfg.retry_min_ms = 500;
    if (!r->cfg.retry_max_ms)
        r->cfg.retry_max_ms = 30000;
    if (r->cfg.retry_max_ms < r->cfg.retry_min_ms)
        r->cfg.retry_max_ms = r->cfg.retry_min_ms;
    if (!r->cfg.prepare_hold_ms)
        r->cfg.prepare_hold_ms = 60000;
    r->rng = cfg->seed ? cfg->seed : 0x9e3779b9u;
    if (cfg->state_file) {
        r->state_file = strdup(cfg->state_file);
        if (!r->state_file) {
            free(r);
            return NULL;
        }
    }
    r->cfg.state_file = r->state_file;
    if (cfg->dp_state_file) {
        r->dp_state_file = strdup(cfg->dp_state_file);
        r->dp_writer = r->dp_state_file ? snv_file_bg_create(r->dp_state_file, 0644) : NULL;
        if (!r->dp_writer) {
            free(r->dp_state_file);
            free(r->state_file);
            free(r);
            return NULL;
        }
    }
    r->cfg.dp_state_file = r->dp_state_file;
    r->ops = *ops;
    r->aux = aux;
    r->phase = PHASE_DOWN;
    r->peer_caps = TNVE_REC_CAPS_ALL;
    struct snv_ratelimit rl = SNV_RATELIMIT_INIT(5, 20);
    r->rl_peer = rl;
    tags_load(r);
    dp_load(r);
    return r;
}

void tnve_rec_destroy(struct tnve_rec *r)
{
    if (!r)
        return;
    while (r->waiters)
        waiter_finish(r, r->waiters, SNCP_E_CLOSED, "agent shutting down");
    dp_flush(r);
    tnve_rec_wait_files(r);
    snv_file_bg_destroy(r->dp_writer);
    while (r->tsis) {
        struct rec_tsi *t = r->tsis;
        r->tsis = t->next;
        tsi_free(r, t);
    }
    r->tsis_tail = NULL;
    while (r->domains) {
        struct rec_domain *d = r->domains;
        r->domains = d->next;
        free(d);
    }
    while (r->vns) {
        struct rec_vn *v = r->vns;
        r->vns = v->next;
        free(v);
    }
    while (r->dp_inherited) {
        struct rec_dp_port *p = r->dp_inherited;
        r->dp_inherited = p->next;
        free(p);
    }
    free(r->dp_state_file);
    free(r->state_file);
    free(r);
}

/* ---------------------------------------------------------------- desired state */

static enum sncp_tsi_state effect_state(const struct tnve_rec *r, const struct rec_domain *d,
                                        enum tnve_effect e)
{
    switch (e) {
    case TNVE_EFFECT_ACTIVATE:
        return SNCP_TSI_ACTIVATED;
    case TNVE_EFFECT_ASSOCIATE:
        return SNCP_TSI_ASSOCIATED;
    case TNVE_EFFECT_DEASSOCIATE:
    case TNVE_EFFECT_UNDEFINE:
        return SNCP_TSI_INIT;
    case TNVE_EFFECT_INACTIVE:
        return r->cfg.associate_on_define ? SNCP_TSI_ASSOCIATED : SNCP_TSI_INIT;
    case TNVE_EFFECT_NONE:
        break;
    }
    return d->desired;
}

static void dom_apply(struct tnve_rec *r, struct rec_domain *d, enum tnve_effect e, uint16_t flags,
                      const char *state)
{
    enum sncp_tsi_state want = effect_state(r, d, e);
    if (e != TNVE_EFFECT_NONE)
        d->inactive_policy = e == TNVE_EFFECT_INACTIVE;
    if (state && *state)
        snprintf(d->state, sizeof d->state, "%s", state);
    if (e == TNVE_EFFECT_ACTIVATE || e == TNVE_EFFECT_DEASSOCIATE || e == TNVE_EFFECT_INACTIVE)
        d->prepared_until = 0;
    if (e != TNVE_EFFECT_NONE) {
        d->prepare_set = 0;
        /* The incoming migration failed (cancelled, destination QEMU gone): the destination
         * de-associates with MIGRATION set and MIGRATION_SOURCE clear (PROTOCOL.md §9.3). */
        if (d->incoming && want == SNCP_TSI_INIT)
            flags = (flags | SNCP_F_MIGRATION) & ~SNCP_F_MIGRATION_SOURCE;
        d->incoming = (flags & SNCP_F_MIGRATION) && !(flags & SNCP_F_MIGRATION_SOURCE) &&
                      want == SNCP_TSI_ASSOCIATED;
    }
    if (want == d->desired)
        return;
    SNV_INFO("rec", "domain desired domain=%s uuid=%s desired=%s was=%s cause=%s flags=0x%x",
             d->name, d->uuid_str, sncp_tsi_state_name(want), sncp_tsi_state_name(d->desired),
             state ? state : "-", flags);
    d->desired = want;
    d->flags = flags;
    for (struct rec_tsi *t = d->tsis; t; t = t->dom_next) {
        t->flags = flags;
        t->stamp = r->stamp;
        t->stamp_sent = 0;
        /* A new desired state deserves a prompt attempt, not the old failure's backoff. */
        t->retry_at = 0;
        t->failures = 0;
        t->last_err = 0;
    }
}

static struct rec_domain *dom_get(struct tnve_rec *r, const struct tnve_domxml *x)
{
    struct rec_domain *d = dom_find(r, x->uuid);
    if (d) {
        if (strcmp(d->name, x->name))
            snprintf(d->name, sizeof d->name, "%s", x->name);
        d->removed = 0;
        return d;
    }
    d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    memcpy(d->uuid, x->uuid, 16);
    sncp_uuid_format(d->uuid, d->uuid_str, sizeof d->uuid_str);
    snprintf(d->name, sizeof d->name, "%s", x->name);
    snprintf(d->state, sizeof d->state, "new");
    d->desired = SNCP_TSI_INIT;
    d->next = r->domains;
    r->domains = d;
    unsigned h = uuid_hash(d->uuid);
    d->hnext = r->dom_hash[h];
    r->dom_hash[h] = d;
    r->st.domains++;
    return d;
}

/* Makes the TSI set of `d` match the vNICs of `x`. */
static int dom_sync_vnics(struct tnve_rec *r, struct rec_domain *d, const struct tnve_domxml *x)
{
    for (struct rec_tsi *t = d->tsis; t; t = t->dom_next)
        t->present = -t->present; /* present ones become -1: "not yet seen" */
    d->n_vnics = x->n_vnics;
    d->n_unmapped = 0;
    for (unsigned i = 0; i < x->n_vnics; i++) {
        const struct tnve_vnic *v = &x->vnics[i];
        char mac[SNCP_MAC_STRLEN];
        sncp_mac_format(v->mac, mac, sizeof mac);
        if (!tnve_vn_is_set(&v->vn)) {
            d->n_unmapped++;
            unsigned k;
            for (k = 0; k < d->n_unmapped_logged; k++)
                if (!memcmp(d->unmapped_logged[k], v->mac, 6))
                    break;
            if (k == d->n_unmapped_logged && k < TNVE_MAX_VNICS) {
                memcpy(d->unmapped_logged[k], v->mac, 6);
                d->n_unmapped_logged++;
                SNV_INFO("rec",
                         "vnic has no VN, left alone domain=%s mac=%s network=%s "
                         "bridge=%s",
                         d->name, mac, v->network[0] ? v->network : "-",
                         v->bridge[0] ? v->bridge : "-");
            }
            continue;
        }
        struct rec_tsi *t = NULL, *same_id = NULL;
        for (struct rec_tsi *o = d->tsis; o; o = o->dom_next) {
            if (memcmp(o->id.mac, v->mac, 6) || o->present == 0)
                continue;
            same_id = o;
            if (vn_matches(o->vn, &v->vn)) {
                t = o;
                break;
            }
        }
        if (!t) {
            /* Back to a VN it left a moment ago: that instance is still held at the nNVE
             * (or on its way out) and is taken back as it is, with no remove/re-add. */
            for (struct rec_tsi *o = d->tsis; o && !t; o = o->dom_next)
                if (!o->present && !memcmp(o->id.mac, v->mac, 6) && vn_matches(o->vn, &v->vn))
                    t = o;
            if (t) {
                char vbuf[TNVE_VN_STRLEN];
                t->retry_at = 0;
                SNV_INFO("rec", "vnic back in its previous vn domain=%s tsi=%s vn=%s", d->name,
                         t->id_str, vn_text(t->vn, vbuf, sizeof vbuf));
            }
        }
        if (!t) {
            struct rec_vn *vn = vn_get(r, &v->vn, 1);
            t = calloc(1, sizeof *t);
            if (!vn || !t) {
                free(t);
                return -ENOMEM;
            }
            t->serial = ++r->next_serial;
            t->dom = d;
            t->vn = vn;
            memcpy(t->id.uuid, d->uuid, 16);
            memcpy(t->id.mac, v->mac, 6);
            sncp_tsi_id_format(&t->id, t->id_str, sizeof t->id_str);
            t->acked = SNCP_TSI_INIT;
            t->tag = vn->tag;
            t->flags = d->flags;
            t->stamp = r->stamp;
            /* append: older objects with the same TSI_ID come first */
            if (r->tsis_tail)
                r->tsis_tail->next = t;
            else
                r->tsis = t;
            r->tsis_tail = t;
            struct rec_tsi **pd = &d->tsis;
            while (*pd)
                pd = &(*pd)->dom_next;
            *pd = t;
            t->snext = r->tsi_hash[t->serial % REC_HASH];
            r->tsi_hash[t->serial % REC_HASH] = t;
            r->st.tsis++;
            char vbuf[TNVE_VN_STRLEN];
            SNV_INFO("rec", "vnic tracked domain=%s tsi=%s vn=%s source=%s%s", d->name, t->id_str,
                     vn_text(vn, vbuf, sizeof vbuf), tnve_domxml_vn_source_name(v->vn_source),
                     same_id ? " (VN changed)" : "");
        }
        t->present = 1;
        if (strcmp(t->ifname, v->target)) {
            snprintf(t->ifname, sizeof t->ifname, "%s", v->target);
            dp_sync(r, t);
        }
    }
    for (struct rec_tsi *t = d->tsis; t; t = t->dom_next) {
        if (t->present < 0) {
            t->present = 0;
            t->retry_at = 0;
            SNV_INFO("rec", "vnic gone domain=%s tsi=%s", d->name, t->id_str);
        }
    }
    return 0;
}

void tnve_rec_set_policy(struct tnve_rec *r, int associate_on_define, uint64_t now)
{
    (void)now;
    if (r->cfg.associate_on_define == associate_on_define)
        return;
    r->cfg.associate_on_define = associate_on_define;
    for (struct rec_domain *d = r->domains; d; d = d->next)
        if (d->inactive_policy)
            dom_apply(r, d, TNVE_EFFECT_INACTIVE, 0, NULL);
    wake(r);
}

void tnve_rec_inventory_begin(struct tnve_rec *r)
{
    for (struct rec_domain *d = r->domains; d; d = d->next)
        d->seen = 0;
}

void tnve_rec_inventory_end(struct tnve_rec *r, uint64_t now)
{
    for (struct rec_domain *d = r->domains; d; d = d->next)
        if (!d->seen && !d->removed && !d->prepared_until)
            tnve_rec_domain_remove(r, d->uuid, 0, now);
    if (!r->inventory_ready) {
        r->inventory_ready = 1;
        SNV_INFO("rec", "domain inventory complete domains=%u tsis=%u", r->st.domains, r->st.tsis);
        if (r->phase == PHASE_WAIT_INVENTORY)
            tnve_rec_session_up(r, now);
    }
    wake(r);
}

int tnve_rec_domain_update(struct tnve_rec *r, const struct tnve_domxml *x, enum tnve_effect effect,
                           uint16_t flags, const char *state, uint64_t now)
{
    (void)now;
    struct rec_domain *d = dom_get(r, x);
    if (!d)
        return -ENOMEM;
    d->seen = 1;
    dom_apply(r, d, effect, flags, state);
    int err = dom_sync_vnics(r, d, x);
    waiters_check(r, now);
    wake(r);
    return err;
}

int tnve_rec_domain_effect(struct tnve_rec *r, const uint8_t uuid[16], enum tnve_effect effect,
                           uint16_t flags, const char *state, uint64_t now)
{
    struct rec_domain *d = dom_find(r, uuid);
    if (!d)
        return -ENOENT;
    d->seen = 1;
    dom_apply(r, d, effect, flags, state);
    waiters_check(r, now);
    wake(r);
    return 0;
}

void tnve_rec_domain_remove(struct tnve_rec *r, const uint8_t uuid[16], uint16_t flags,
                            uint64_t now)
{
    struct rec_domain *d = dom_find(r, uuid);
    if (!d || d->removed)
        return;
    dom_apply(r, d, TNVE_EFFECT_UNDEFINE, flags, "undefined");
    d->removed = 1;
    d->prepared_until = 0;
    SNV_INFO("rec", "domain gone domain=%s uuid=%s", d->name, d->uuid_str);
    waiters_check(r, now);
    wake(r);
}

static int addr_cmp(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(struct sncp_addr));
}

int tnve_rec_set_addresses(struct tnve_rec *r, const uint8_t uuid[16], const uint8_t mac[6],
                           const struct sncp_addr *addrs, unsigned n, uint64_t now)
{
    (void)now;
    struct rec_tsi *t = tsi_find_present(r, uuid, mac);
    if (!t)
        return -ENOENT;
    struct sncp_addr sorted[SNCP_MAX_ADDRS];
    if (n > SNCP_MAX_ADDRS)
        n = SNCP_MAX_ADDRS;
    memset(sorted, 0, sizeof sorted);
    for (unsigned i = 0; i < n; i++) {
        sorted[i].type = addrs[i].type;
        memcpy(sorted[i].mac, addrs[i].mac, 6);
        memcpy(sorted[i].ip, addrs[i].ip, 16);
    }
    qsort(sorted, n, sizeof sorted[0], addr_cmp);
    if (n == t->n_addrs && !memcmp(sorted, t->addrs, n * sizeof sorted[0]))
        return 0;
    memcpy(t->addrs, sorted, n * sizeof sorted[0]);
    t->n_addrs = n;
    t->addr_gen++;
    if (!t->addr_gen)
        t->addr_gen = 1;
    SNV_INFO("rec", "addresses learnt tsi=%s domain=%s count=%u", t->id_str, t->dom->name, n);
    wake(r);
    return 1;
}

void tnve_rec_set_stamp(struct tnve_rec *r, uint64_t stamp)
{
    r->stamp = stamp;
}

int tnve_rec_domain_known(const struct tnve_rec *r, const uint8_t uuid[16])
{
    const struct rec_domain *d = dom_find(r, uuid);
    return d && !d->removed;
}

int tnve_rec_domain_busy(const struct tnve_rec *r, const uint8_t uuid[16])
{
    for (const struct rec_waiter *w = r->waiters; w; w = w->next)
        if (!memcmp(w->uuid, uuid, 16))
            return 1;
    return 0;
}

unsigned tnve_rec_active_domains(const struct tnve_rec *r, uint8_t (*uuids)[16], unsigned cap)
{
    unsigned n = 0;
    for (const struct rec_domain *d = r->domains; d && n < cap; d = d->next)
        if (!d->removed && d->desired == SNCP_TSI_ACTIVATED)
            memcpy(uuids[n++], d->uuid, 16);
    return n;
}

/* ---------------------------------------------------------------- hook */

int tnve_rec_prepare(struct tnve_rec *r, const struct tnve_domxml *x, uint16_t flags,
                     uint64_t deadline, tnve_rec_prepare_cb *cb, void *aux, uint64_t now)
{
    struct rec_waiter *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    int was_known = tnve_rec_domain_known(r, x->uuid);
    struct rec_domain *d = dom_get(r, x);
    if (!d) {
        free(w);
        return -ENOMEM;
    }
    d->seen = 1;
    if (d->desired == SNCP_TSI_INIT) {
        dom_apply(r, d, TNVE_EFFECT_ASSOCIATE, flags,
                  flags & SNCP_F_MIGRATION ? "hook/migrate" : "hook/prepare");
        /* Undone if the start is refused: libvirt then does not start the domain and,
         * holding it locked until we answer, sends no event about it. */
        d->prepare_set = 1;
        d->prepare_new = !was_known;
        d->prepare_prev = SNCP_TSI_INIT;
    }
    d->prepared_until = now + r->cfg.prepare_hold_ms;
    int err = dom_sync_vnics(r, d, x);
    if (err) {
        free(w);
        return err;
    }
    /* A fresh attempt for every vNIC: old failures must not refuse this start. */
    for (struct rec_tsi *t = d->tsis; t; t = t->dom_next) {
        if (t->present) {
            t->last_err = 0;
            t->retry_at = 0;
            t->vn->retry_at = 0;
            t->vn->last_err = 0;
        }
    }
    memcpy(w->uuid, d->uuid, 16);
    w->start = now;
    w->deadline = deadline;
    w->cb = cb;
    w->aux = aux;
    w->next = r->waiters;
    r->waiters = w;
    SNV_INFO("rec", "hook %s domain=%s uuid=%s vnics=%u",
             flags & SNCP_F_MIGRATION ? "migrate" : "prepare", d->name, d->uuid_str, d->n_vnics);
    waiters_check(r, now);
    wake(r);
    return 0;
}

unsigned tnve_rec_prepare_cancel(struct tnve_rec *r, void *aux, int refused)
{
    unsigned n = 0;
    struct rec_waiter **pw = &r->waiters;
    while (*pw) {
        struct rec_waiter *w = *pw;
        if (w->aux != aux) {
            pw = &w->next;
            continue;
        }
        *pw = w->next;
        if (refused)
            dom_revert_prepare(r, w->uuid);
        free(w);
        n++;
    }
    return n;
}

/* A refused or timed-out hook: the domain goes back to its state before the hook (a domain
 * only the hook knew is forgotten), so nothing is retried for a start that did not happen. */
static void dom_revert_prepare(struct tnve_rec *r, const uint8_t uuid[16])
{
    struct rec_domain *d = dom_find(r, uuid);
    if (!d || !d->prepare_set)
        return;
    d->prepare_set = 0;
    d->prepared_until = 0;
    d->incoming = 0;
    SNV_INFO("rec", "hook refused, reverting domain=%s uuid=%s", d->name, d->uuid_str);
    if (d->prepare_new) {
        d->removed = 1;
        d->desired = SNCP_TSI_INIT;
    } else {
        d->desired = d->prepare_prev;
        snprintf(d->state, sizeof d->state, "hook-refused");
    }
    for (struct rec_tsi *t = d->tsis; t; t = t->dom_next) {
        t->flags = 0;
        t->stamp = 0;
    }
    for (struct rec_vn *v = r->vns; v; v = v->next) {
        if (v->last_err && !vn_users(r, v)) {
            /* nobody needs it now: no more attempts for the refused VN */
            v->retry_at = 0;
            v->failures = 0;
        }
    }
    wake(r);
}

/* ---------------------------------------------------------------- sending */

static void fill_vn(struct sncp_msg *m, const struct rec_vn *v)
{
    if (v->vn.id) {
        m->vn_id = v->vn.id;
        sncp_msg_set(m, SNCP_TLV_VN_ID);
    }
    if (v->vn.name[0]) {
        memcpy(m->vn_name, v->vn.name, sizeof m->vn_name);
        sncp_msg_set(m, SNCP_TLV_VN_NAME);
    }
}

static void fill_preferred(struct sncp_msg *m, uint16_t tag)
{
    if (!tag)
        return;
    m->preferred_tags[0].vid = tag;
    m->preferred_tags[0].pcp = SNCP_PCP_NONE;
    m->n_preferred_tags = 1;
    sncp_msg_set(m, SNCP_TLV_PREFERRED_TAG);
}

static void fill_addrs(struct sncp_msg *m, const struct rec_tsi *t)
{
    for (unsigned i = 0; i < t->n_addrs; i++)
        m->addrs[i] = t->addrs[i];
    m->n_addrs = (uint8_t)t->n_addrs;
    if (t->n_addrs)
        sncp_msg_set(m, SNCP_TLV_ADDRESS);
}

/* Returns 0, or the transport's error; SNCP_E_BUSY with requests of ours in flight means
 * the transport's window is full: nothing more is sent in this run, and nobody is
 * penalised for it (a response frees a slot and wakes the next run). */
static int do_send(struct tnve_rec *r, struct sncp_msg *m, uint64_t cookie)
{
    int64_t x = r->ops.send(r->aux, m, cookie);
    if (x == SNCP_E_BUSY && r->st.outstanding) {
        r->window_full = 1;
        return (int)x;
    }
    if (x < 0)
        return (int)x;
    r->st.sent[m->type]++;
    r->st.outstanding++;
    return 0;
}

static void vn_send(struct tnve_rec *r, struct rec_vn *v, uint8_t type, uint64_t now)
{
    struct sncp_msg m;
    sncp_msg_init(&m, type, 0);
    fill_vn(&m, v);
    if (type == SNCP_MSG_VN_CONNECT)
        fill_preferred(&m, v->tag);
    int err = do_send(r, &m, COOKIE(CK_VN, v->serial));
    char vbuf[TNVE_VN_STRLEN];
    if (r->window_full)
        return;
    if (err) {
        v->retry_at = now + backoff(r, ++v->failures, 0);
        SNV_WARN("rec", "send failed vn=%s request=%s err=%s", vn_text(v, vbuf, sizeof vbuf),
                 sncp_msg_type_name(type), sncp_strerror(err));
        return;
    }
    v->out_type = type;
    SNV_INFO("rec", "request %s vn=%s preferred_tag=%u%s", sncp_msg_type_name(type),
             vn_text(v, vbuf, sizeof vbuf), type == SNCP_MSG_VN_CONNECT ? v->tag : 0,
             v->sync_needed ? " sync=1" : "");
}

/* The migration flags of t's next request, sent only to an nNVE that advertised the
 * MIGRATION capability (PROTOCOL.md §5, §8.2). */
static uint16_t migration_flags(const struct tnve_rec *r, const struct rec_tsi *t)
{
    if (!(r->peer_caps & SNCP_CAP_MIGRATION))
        return 0;
    return t->flags & (SNCP_F_MIGRATION | SNCP_F_MIGRATION_SOURCE);
}

static void tsi_send(struct tnve_rec *r, struct rec_tsi *t, uint8_t type,
                     enum sncp_tsi_state target, uint64_t now)
{
    struct sncp_msg m;
    sncp_msg_init(&m, type, 0);
    m.tsi = t->id;
    sncp_msg_set(&m, SNCP_TLV_TSI_ID);
    t->out_addr_gen = t->addr_acked_gen;
    switch (type) {
    case SNCP_MSG_TSI_ASSOCIATE:
    case SNCP_MSG_TSI_ACTIVATE:
        fill_vn(&m, t->vn);
        fill_preferred(&m, t->vn->tag ? t->vn->tag : t->tag);
        if (type == SNCP_MSG_TSI_ASSOCIATE || t->acked == SNCP_TSI_INIT || t->sync_needed ||
            t->addr_gen != t->addr_acked_gen) {
            fill_addrs(&m, t);
            t->out_addr_gen = t->addr_gen;
        }
        m.flags = migration_flags(r, t);
        if (t->dom && t->dom->incoming && (r->peer_caps & SNCP_CAP_MIGRATION))
            m.flags |= SNCP_F_MIGRATION;
        break;
    case SNCP_MSG_TSI_DEASSOCIATE:
        m.flags = migration_flags(r, t);
        break;
    case SNCP_MSG_TSI_UPDATE:
        m.update_op = SNCP_UPDATE_REPLACE;
        sncp_msg_set(&m, SNCP_TLV_UPDATE_OP);
        fill_addrs(&m, t);
        t->out_addr_gen = t->addr_gen;
        break;
    default:
        break;
    }
    int err = do_send(r, &m, COOKIE(CK_TSI, t->serial));
    if (r->window_full)
        return;
    if (!err && t->stamp && !t->stamp_sent) {
        t->stamp_sent = 1;
        if (r->ops.sent)
            r->ops.sent(r->aux, t->stamp);
    }
    if (err) {
        t->retry_at = now + backoff(r, ++t->failures, 0);
        SNV_WARN("rec", "send failed tsi=%s request=%s err=%s", t->id_str, sncp_msg_type_name(type),
                 sncp_strerror(err));
        return;
    }
    t->out_type = type;
    t->out_target = target;
    t->out_behind_connect = !t->vn->acked;
    char vbuf[TNVE_VN_STRLEN];
    /* A SYNC re-announces every TSI: its requests and responses are debug lines (the SYNC
     * and each TSI state change have info lines of their own). */
    snv_log(t->sync_needed ? SNV_LOG_DEBUG : SNV_LOG_INFO, "rec",
            "request %s tsi=%s domain=%s vn=%s flags=0x%x addresses=%u%s", sncp_msg_type_name(type),
            t->id_str, t->dom->name, vn_text(t->vn, vbuf, sizeof vbuf), m.flags, m.n_addrs,
            t->sync_needed ? " sync=1" : "");
}

static void sync_send(struct tnve_rec *r, uint8_t type)
{
    struct sncp_msg m;
    sncp_msg_init(&m, type, 0);
    int err = do_send(r, &m, COOKIE(type == SNCP_MSG_SYNC_BEGIN ? CK_SYNC_BEGIN : CK_SYNC_END, 0));
    if (err) {
        SNV_WARN("rec", "send failed request=%s err=%s", sncp_msg_type_name(type),
                 sncp_strerror(err));
        return;
    }
    SNV_INFO("rec", "request %s", sncp_msg_type_name(type));
    r->phase = type == SNCP_MSG_SYNC_BEGIN ? PHASE_SYNC_BEGIN : PHASE_SYNC_END;
}

/* Decides and sends the next step for one VN.  Returns the time it wants to run again. */
static uint64_t vn_step(struct tnve_rec *r, struct rec_vn *v, uint64_t now)
{
    if (v->out_type)
        return UINT64_MAX;
    unsigned users = vn_users(r, v);
    if (r->phase == PHASE_SYNCING && v->sync_needed) {
        if (!users || v->sync_tried)
            return UINT64_MAX;
    } else if (v->sync_needed) {
        return UINT64_MAX; /* waits for SYNC_END */
    }
    uint8_t type = 0;
    if (users && (!v->acked || v->sync_needed))
        type = SNCP_MSG_VN_CONNECT;
    else if (!users && v->acked && !vn_held(r, v))
        type = SNCP_MSG_VN_DISCONNECT;
    if (!type)
        return UINT64_MAX;
    if (now < v->retry_at)
        return v->retry_at;
    if (r->window_full)
        return UINT64_MAX; /* a response wakes the next run */
    if (v->failures)
        r->st.retries++;
    vn_send(r, v, type, now);
    return v->out_type || r->window_full ? UINT64_MAX : v->retry_at;
}

/* Whether t's ASSOCIATE or ACTIVATE may go now: its VN is connected, or the VN's first
 * VN_CONNECT is out (outside a SYNC) and t has not failed: the request then follows it on the
 * session, the nNVE applies the two in that order (PROTOCOL.md §3.3) and commits them
 * together, and the first vNIC of a VN is up after one round trip instead of two.  Should the
 * connection fail, the nNVE answers the TSI request NO_SUCH_VN and t waits for the VN's
 * retry as it would have. */
static int tsi_vn_ready(const struct rec_tsi *t)
{
    const struct rec_vn *v = t->vn;
    if (v->sync_needed)
        return 0;
    if (v->acked)
        return !v->out_type;
    return v->out_type == SNCP_MSG_VN_CONNECT && !v->failures && !t->failures;
}

/* During SYNC, t (its desired state Init) is de-associated before SYNC_END rather than left
 * to the sweep: the old VN's instance of a moved vNIC (tsi_blocks_move()), and an instance
 * Activated when the session was lost whose guest then left by a completed migration.  The
 * latter goes as a migration source's leave: the nNVE then activates the destination's
 * Associated instance before it removes this one (PROTOCOL.md §9.3, RFC 8394 §3.3), where a
 * sweep would leave neither Activated until the destination re-announces its own. */
static int tsi_sync_leaves_first(const struct tnve_rec *r, const struct rec_tsi *t)
{
    return tsi_blocks_move(r, t) ||
           (t->acked == SNCP_TSI_ACTIVATED &&
            migration_flags(r, t) == (SNCP_F_MIGRATION | SNCP_F_MIGRATION_SOURCE));
}

static uint64_t tsi_step(struct tnve_rec *r, struct rec_tsi *t, uint64_t now)
{
    if (t->out_type)
        return UINT64_MAX;
    enum sncp_tsi_state want = tsi_desired(t);
    uint8_t type = 0;
    if (t->evict && want != SNCP_TSI_INIT) {
        type = SNCP_MSG_TSI_DEASSOCIATE;
    } else if (t->sync_needed) {
        if (r->phase != PHASE_SYNCING || t->sync_tried)
            return UINT64_MAX;
        if (want == SNCP_TSI_INIT) {
            /* Left alone, SYNC_END sweeps it. */
            if (!tsi_sync_leaves_first(r, t))
                return UINT64_MAX;
            type = SNCP_MSG_TSI_DEASSOCIATE;
        } else
            type = want == SNCP_TSI_ACTIVATED ? SNCP_MSG_TSI_ACTIVATE
                   : t->sync_deactivate       ? SNCP_MSG_TSI_DEACTIVATE
                                              : SNCP_MSG_TSI_ASSOCIATE;
    } else if (want != t->acked) {
        if (want == SNCP_TSI_INIT)
            type = SNCP_MSG_TSI_DEASSOCIATE;
        else if (want == SNCP_TSI_ACTIVATED)
            type = SNCP_MSG_TSI_ACTIVATE;
        else if (t->acked == SNCP_TSI_ACTIVATED)
            type = SNCP_MSG_TSI_DEACTIVATE;
        else
            type = SNCP_MSG_TSI_ASSOCIATE;
    } else if (want != SNCP_TSI_INIT && t->addr_gen != t->addr_acked_gen) {
        /* Without ADDR_UPDATE at the nNVE, the addresses go with a repeated ASSOCIATE or
         * ACTIVATE, whose ADDRESS TLVs replace the set (PROTOCOL.md §6.5, §8.2). */
        type = (r->peer_caps & SNCP_CAP_ADDR_UPDATE) ? SNCP_MSG_TSI_UPDATE
               : t->acked == SNCP_TSI_ACTIVATED      ? SNCP_MSG_TSI_ACTIVATE
                                                     : SNCP_MSG_TSI_ASSOCIATE;
    }
    if (!type)
        return UINT64_MAX;
    if ((type == SNCP_MSG_TSI_ASSOCIATE || type == SNCP_MSG_TSI_ACTIVATE) &&
        (!tsi_vn_ready(t) || tsi_blocked(r, t)))
        return UINT64_MAX; /* the VN (or the old instance) goes first; it wakes us */
    if (now < t->retry_at)
        return t->retry_at;
    if (r->window_full)
        return UINT64_MAX; /* a response wakes the next run */
    if (t->failures)
        r->st.retries++;
    if (type == SNCP_MSG_TSI_DEACTIVATE && t->sync_needed)
        want = SNCP_TSI_ASSOCIATED;
    tsi_send(r, t, type,
             type == SNCP_MSG_TSI_DEASSOCIATE  ? SNCP_TSI_INIT
             : type == SNCP_MSG_TSI_DEACTIVATE ? SNCP_TSI_ASSOCIATED
             : type == SNCP_MSG_TSI_UPDATE     ? t->acked
                                               : want,
             now);
    return t->out_type || r->window_full ? UINT64_MAX : t->retry_at;
}

/* SYNC_END waits for t: a re-announcement not yet tried (unless its VN's failed or an old
 * instance's de-association did), or a de-association that goes first. */
static int sync_waits_for(const struct tnve_rec *r, const struct rec_tsi *t)
{
    if (!t->sync_needed || t->sync_tried)
        return 0;
    if (tsi_desired(t) == SNCP_TSI_INIT)
        return tsi_sync_leaves_first(r, t);
    return !(t->vn->sync_tried && t->vn->sync_needed) && !tsi_blocked_by_tried(r, t);
}

static int sync_complete(const struct tnve_rec *r)
{
    if (r->st.outstanding)
        return 0;
    for (const struct rec_vn *v = r->vns; v; v = v->next)
        if (v->sync_needed && !v->sync_tried && vn_users(r, v))
            return 0;
    for (const struct rec_tsi *t = r->tsis; t; t = t->next)
        if (sync_waits_for(r, t))
            return 0;
    return 1;
}

/* Frees TSIs of gone vNICs and domains once the nNVE holds nothing for them. */
static void collect(struct tnve_rec *r)
{
    for (struct rec_domain *d = r->domains; d; d = d->next) {
        d->reap = d->removed;
        for (const struct rec_tsi *t = d->tsis; t && d->reap; t = t->dom_next)
            if (t->acked != SNCP_TSI_INIT || t->out_type || t->sync_needed)
                d->reap = 0;
    }
    struct rec_tsi **pt = &r->tsis;
    r->tsis_tail = NULL;
    while (*pt) {
        struct rec_tsi *t = *pt;
        if (t->dom->reap || (tsi_desired(t) == SNCP_TSI_INIT && !t->present &&
                             t->acked == SNCP_TSI_INIT && !t->out_type && !t->sync_needed)) {
            *pt = t->next;
            r->st.tsis--;
            tsi_free(r, t);
            continue;
        }
        r->tsis_tail = t;
        pt = &t->next;
    }
    struct rec_domain **pd = &r->domains;
    while (*pd) {
        struct rec_domain *d = *pd;
        if (d->reap) {
            struct rec_domain **ph = &r->dom_hash[uuid_hash(d->uuid)];
            while (*ph && *ph != d)
                ph = &(*ph)->hnext;
            if (*ph)
                *ph = d->hnext;
            *pd = d->next;
            r->st.domains--;
            free(d);
            continue;
        }
        pd = &d->next;
    }
}

static unsigned sync_finish(struct tnve_rec *r, int sweep);

/* Re-reads ops->serves for every VN; a VN whose answer changed gets a prompt attempt for
 * it and its TSIs (the change is a failover, not a failure).  Returns the count changed. */
static unsigned serve_refresh(struct tnve_rec *r)
{
    if (!r->ops.serves)
        return 0;
    unsigned changed = 0;
    for (struct rec_vn *v = r->vns; v; v = v->next) {
        int s = r->ops.serves(r->aux, &v->vn) != 0;
        if (s == v->served)
            continue;
        char vbuf[TNVE_VN_STRLEN];
        SNV_INFO("rec", "vn %s here vn=%s", s ? "served" : "no longer served",
                 vn_text(v, vbuf, sizeof vbuf));
        v->served = s;
        v->retry_at = 0;
        v->failures = 0;
        v->last_err = 0;
        for (struct rec_tsi *t = r->tsis; t; t = t->next) {
            if (t->vn != v)
                continue;
            t->retry_at = 0;
            t->failures = 0;
            t->last_err = 0;
            t->flags = 0;
        }
        changed++;
    }
    return changed;
}

/* The VN object naming the same VN as `q` (read-only lookup, either form). */
static const struct rec_vn *vn_lookup(const struct tnve_rec *r, const struct tnve_vn *q)
{
    const struct rec_vn *same = NULL;
    for (const struct rec_vn *v = r->vns; v; v = v->next) {
        if (vn_matches(v, q))
            return v;
        if (!same && (tnve_vn_designates(&v->vn, q) || tnve_vn_designates(q, &v->vn) ||
                      tnve_vn_equal(q, &v->vn)))
            same = v;
    }
    return same;
}

int tnve_rec_vn_served(const struct tnve_rec *r, const struct tnve_vn *vn)
{
    const struct rec_vn *v = vn_lookup(r, vn);
    return v && v->served;
}

int tnve_rec_vn_settled(const struct tnve_rec *r, const struct tnve_vn *vn)
{
    const struct rec_vn *v = vn_lookup(r, vn);
    if (!v || !v->served || !session_usable(r) || v->out_type || v->sync_needed)
        return 0;
    for (const struct rec_tsi *t = r->tsis; t; t = t->next) {
        if (t->vn != v)
            continue;
        enum sncp_tsi_state want = tsi_desired(t);
        if (t->acked != want || t->out_type || (t->sync_needed && want != SNCP_TSI_INIT))
            return 0;
    }
    return 1;
}

void tnve_rec_serve_changed(struct tnve_rec *r, uint64_t now)
{
    if (serve_refresh(r))
        wake(r);
    waiters_check(r, now);
}

uint64_t tnve_rec_run(struct tnve_rec *r, uint64_t now)
{
    serve_refresh(r);
    uint64_t next = UINT64_MAX;
    r->any_gone = 0;
    r->window_full = 0;
    for (const struct rec_tsi *t = r->tsis; t && !r->any_gone; t = t->next)
        if (!t->present && (t->acked != SNCP_TSI_INIT || t->out_type))
            r->any_gone = 1;
    if (r->phase == PHASE_SYNCING || r->phase == PHASE_SYNC_END || r->phase == PHASE_READY) {
        for (struct rec_vn *v = r->vns; v; v = v->next) {
            uint64_t n = vn_step(r, v, now);
            if (n < next)
                next = n;
        }
        for (struct rec_tsi *t = r->tsis; t; t = t->next) {
            uint64_t n = tsi_step(r, t, now);
            if (n < next)
                next = n;
        }
        if (r->phase == PHASE_SYNCING && sync_complete(r)) {
            if (r->peer_caps & SNCP_CAP_SYNC) {
                sync_send(r, SNCP_MSG_SYNC_END);
            } else {
                r->phase = PHASE_SYNC_END;
                sync_finish(r, 0);
            }
        }
    }
    collect(r);
    for (struct rec_domain *d = r->domains; d; d = d->next) {
        if (!d->prepared_until)
            continue;
        if (now >= d->prepared_until) {
            d->prepared_until = 0;
            SNV_INFO("rec", "hook-prepared domain did not start, re-reading domain=%s", d->name);
            if (r->ops.refresh_domain)
                r->ops.refresh_domain(r->aux, d->uuid);
        } else if (d->prepared_until < next) {
            next = d->prepared_until;
        }
    }
    waiters_check(r, now);
    for (struct rec_waiter *w = r->waiters; w; w = w->next)
        if (w->deadline < next)
            next = w->deadline;
    if (retry_due(&r->tags_retry, now))
        tags_save(r);
    retry_arm(&r->tags_retry, now, &next);
    dp_file_run(r, now, &next);
    return next;
}

/* ---------------------------------------------------------------- session */

void tnve_rec_set_peer_caps(struct tnve_rec *r, uint32_t caps)
{
    r->peer_caps = caps;
}

void tnve_rec_session_up(struct tnve_rec *r, uint64_t now)
{
    (void)now;
    if (!r->inventory_ready) {
        r->phase = PHASE_WAIT_INVENTORY;
        SNV_INFO("rec", "session up, waiting for the domain inventory before SYNC");
        return;
    }
    for (struct rec_vn *v = r->vns; v; v = v->next) {
        v->sync_needed = v->acked || vn_users(r, v) > 0;
        v->sync_tried = 0;
        v->retry_at = 0;
        v->failures = 0;
    }
    for (struct rec_tsi *t = r->tsis; t; t = t->next) {
        t->sync_needed = t->acked != SNCP_TSI_INIT || tsi_desired(t) != SNCP_TSI_INIT;
        t->sync_tried = 0;
        t->sync_deactivate = 0;
        t->retry_at = 0;
        t->failures = 0;
    }
    r->st.syncs++;
    if (!(r->peer_caps & SNCP_CAP_SYNC)) {
        /* The nNVE did not advertise SYNC: re-announce everything, sweep nothing. */
        SNV_INFO("rec", "nNVE without the SYNC capability: re-announcing without SYNC");
        r->phase = PHASE_SYNCING;
        wake(r);
        return;
    }
    sync_send(r, SNCP_MSG_SYNC_BEGIN);
    if (r->phase != PHASE_SYNC_BEGIN)
        r->phase = PHASE_DOWN;
    wake(r);
}

void tnve_rec_session_down(struct tnve_rec *r, uint64_t now)
{
    (void)now;
    if (r->phase != PHASE_DOWN)
        SNV_INFO("rec", "session down phase=%s", tnve_rec_phase(r));
    r->phase = PHASE_DOWN;
    r->st.outstanding = 0;
    for (struct rec_vn *v = r->vns; v; v = v->next)
        v->out_type = 0;
    for (struct rec_tsi *t = r->tsis; t; t = t->next)
        t->out_type = 0;
    wake(r);
}

int tnve_rec_resync(struct tnve_rec *r, uint64_t now)
{
    if (!session_usable(r) && r->phase != PHASE_SYNC_BEGIN)
        return SNCP_E_NOT_ESTABLISHED;
    if (r->phase != PHASE_READY)
        return 0; /* a SYNC is running already */
    tnve_rec_session_up(r, now);
    return 0;
}

/* ---------------------------------------------------------------- responses */

/* The nNVE resolved `v` to its catalogue entry `entry` (VN_CONNECT's answer): `v` becomes
 * that entry, or, when another object already is (the same VN named another way, e.g. by
 * name on one vNIC and by ID on another), `v`'s TSIs join it and `v` goes: one VN, one
 * object, so the last user of one form never disconnects a VN another form still uses.
 * Returns the object that now stands for the VN. */
/* Moves the TSIs of `from` to `to` and frees `from`. */
static void vn_merge(struct tnve_rec *r, struct rec_vn *from, struct rec_vn *to)
{
    char vbuf[TNVE_VN_STRLEN], wbuf[TNVE_VN_STRLEN];
    SNV_INFO("rec", "vn form joins its catalogue entry form=%s vn=%s",
             vn_text(from, vbuf, sizeof vbuf), vn_text(to, wbuf, sizeof wbuf));
    for (struct rec_tsi *t = r->tsis; t; t = t->next)
        if (t->vn == from)
            t->vn = to;
    struct rec_vn **pv = &r->vns;
    while (*pv != from)
        pv = &(*pv)->next;
    *pv = from->next;
    r->st.vns--;
    free(from);
}

static struct rec_vn *vn_settle_one(struct tnve_rec *r, struct rec_vn *v,
                                    const struct tnve_vn *entry);

static struct rec_vn *vn_settle(struct tnve_rec *r, struct rec_vn *v, const struct tnve_vn *entry)
{
    struct rec_vn *w = vn_settle_one(r, v, entry);
    /* Forms of the same entry not resolved yet and idle (no users since they were made)
     * join it too. */
    for (struct rec_vn *o = r->vns, *next; o; o = next) {
        next = o->next;
        if (o != w && !o->resolved && !o->out_type && !o->acked &&
            tnve_vn_designates(&w->vn, &o->vn))
            vn_merge(r, o, w);
    }
    return w;
}

static struct rec_vn *vn_settle_one(struct tnve_rec *r, struct rec_vn *v,
                                    const struct tnve_vn *entry)
{
    struct rec_vn *w = NULL;
    for (struct rec_vn *o = r->vns; o && !w; o = o->next)
        if (o != v && o->resolved && o->vn.id == entry->id &&
            (entry->id || !strcmp(o->vn.name, entry->name)))
            w = o;
    if (!w) {
        v->vn = *entry;
        v->resolved = 1;
        return v;
    }
    if (!w->out_type) {
        w->acked = 1;
        w->sync_needed = 0;
        w->failures = 0;
        w->last_err = 0;
    }
    vn_merge(r, v, w);
    return w;
}

static void vn_response(struct tnve_rec *r, struct rec_vn *v, const struct sncp_msg *rsp, int err,
                        uint64_t now)
{
    uint8_t type = v->out_type;
    v->out_type = 0;
    char vbuf[TNVE_VN_STRLEN];
    vn_text(v, vbuf, sizeof vbuf);
    if (err == SNCP_E_CLOSED)
        return;
    if (!err && rsp->status != SNCP_STATUS_SUCCESS)
        err = sncp_error_from_status(rsp->status);
    if (type == SNCP_MSG_VN_DISCONNECT && err == SNCP_E_NO_SUCH_VN)
        err = 0;
    if (!err) {
        r->st.ok++;
        v->failures = 0;
        v->last_err = 0;
        if (type == SNCP_MSG_VN_CONNECT) {
            v->acked = 1;
            v->sync_needed = 0;
            uint16_t tag = rsp->n_tags ? rsp->tags[0].vid : v->tag;
            if (sncp_msg_has(rsp, SNCP_TLV_VN_ID) || sncp_msg_has(rsp, SNCP_TLV_VN_NAME)) {
                struct tnve_vn entry;
                memset(&entry, 0, sizeof entry);
                if (sncp_msg_has(rsp, SNCP_TLV_VN_ID))
                    entry.id = rsp->vn_id;
                if (sncp_msg_has(rsp, SNCP_TLV_VN_NAME))
                    memcpy(entry.name, rsp->vn_name, sizeof entry.name);
                v = vn_settle(r, v, &entry);
                vn_text(v, vbuf, sizeof vbuf);
            }
            SNV_INFO("rec", "response VN_CONNECT vn=%s status=success tag=%u", vbuf, tag);
            if (tag != v->tag) {
                v->tag = tag;
                tags_save(r);
            }
            for (struct rec_tsi *t = r->tsis; t; t = t->next) {
                if (t->vn == v && t->tag != tag && t->acked != SNCP_TSI_INIT) {
                    t->tag = tag;
                    dp_sync(r, t);
                }
            }
        } else {
            v->acked = 0;
            SNV_INFO("rec", "response VN_DISCONNECT vn=%s status=success", vbuf);
            for (struct rec_tsi *t = r->tsis; t; t = t->next)
                if (t->vn == v && t->acked != SNCP_TSI_INIT)
                    tsi_set_acked(r, t, SNCP_TSI_INIT, "vn disconnected");
        }
        return;
    }
    if (err == SNCP_E_TIMEOUT)
        r->st.timeouts++;
    r->st.failed++;
    v->failures++;
    v->last_err = err;
    set_reason(v->last_reason, sizeof v->last_reason, err, rsp);
    v->retry_at = now + backoff(r, v->failures, rsp ? rsp->retry_after_ms : 0);
    if (v->sync_needed) {
        v->sync_tried = 1;
        for (struct rec_tsi *t = r->tsis; t; t = t->next)
            if (t->vn == v)
                t->sync_tried = 1;
    }
    v->fail_time = now;
    snv_log_rl(&r->rl_peer, SNV_LOG_WARN, "rec",
               "response %s vn=%s status=%s reason=\"%s\" retry_in_ms=%llu",
               sncp_msg_type_name(type), vbuf, sncp_error_token(err), v->last_reason,
               (unsigned long long)(v->retry_at - now));
}

static void tsi_response(struct tnve_rec *r, struct rec_tsi *t, const struct sncp_msg *rsp, int err,
                         uint64_t now)
{
    uint8_t type = t->out_type;
    t->out_type = 0;
    if (err == SNCP_E_CLOSED)
        return;
    if (!err && rsp->status != SNCP_STATUS_SUCCESS)
        err = sncp_error_from_status(rsp->status);
    if (err == SNCP_E_NO_SUCH_VN && t->out_behind_connect && !t->vn->acked && !t->vn->out_type &&
        t->vn->failures) {
        /* It followed its VN's VN_CONNECT, which failed (and was logged): t is not at fault
         * and waits for the VN's retry. */
        r->st.failed++;
        t->retry_at = now;
        return;
    }
    if (err == SNCP_E_NO_SUCH_TSI &&
        (type == SNCP_MSG_TSI_DEACTIVATE || type == SNCP_MSG_TSI_DEASSOCIATE ||
         type == SNCP_MSG_TSI_UPDATE)) {
        /* Nothing at the nNVE: that is Init. */
        t->failures = 0;
        t->last_err = 0;
        t->evict = 0;
        tsi_set_acked(r, t, SNCP_TSI_INIT, "no such tsi at the nNVE");
        r->st.ok++;
        return;
    }
    if (!err) {
        r->st.ok++;
        t->failures = 0;
        t->last_err = 0;
        t->flags = 0;
        int was_sync = t->sync_needed;
        t->sync_needed = 0;
        t->sync_deactivate = 0;
        if (t->evict)
            t->evict = 0;
        else
            t->evicted = 0;
        enum sncp_tsi_state s = t->out_target;
        if (sncp_msg_has(rsp, SNCP_TLV_TSI_STATE) && rsp->tsi_state <= SNCP_TSI_ACTIVATED)
            s = (enum sncp_tsi_state)rsp->tsi_state;
        if (rsp->n_tags) {
            uint16_t tag = rsp->tags[0].vid;
            t->tag = tag;
            if (tag != t->vn->tag) {
                t->vn->tag = tag;
                tags_save(r);
            }
        } else if (!t->tag) {
            t->tag = t->vn->tag;
        }
        if (type == SNCP_MSG_TSI_ASSOCIATE || type == SNCP_MSG_TSI_ACTIVATE) {
            t->vn->acked = 1;
            t->addr_acked_gen = t->out_addr_gen;
        } else if (type == SNCP_MSG_TSI_UPDATE) {
            t->addr_acked_gen = t->out_addr_gen;
        }
        snv_log(was_sync ? SNV_LOG_DEBUG : SNV_LOG_INFO, "rec",
                "response %s tsi=%s status=success state=%s tag=%u%s", sncp_msg_type_name(type),
                t->id_str, sncp_tsi_state_name(s), t->tag, was_sync ? " sync=1" : "");
        tsi_set_acked(r, t, s, type_short(type));
        if (t->stamp && s == tsi_desired(t)) {
            if (r->ops.acked)
                r->ops.acked(r->aux, t->stamp, s);
            t->stamp = 0;
        }
        return;
    }
    if (err == SNCP_E_TIMEOUT)
        r->st.timeouts++;
    r->st.failed++;
    t->last_err = err;
    t->fail_time = now;
    set_reason(t->last_reason, sizeof t->last_reason, err, rsp);
    uint64_t delay;
    if (err == SNCP_E_INVALID_STATE && type == SNCP_MSG_TSI_ASSOCIATE && t->sync_needed &&
        !t->sync_deactivate) {
        /* PROTOCOL.md §10.5: the nNVE has it Activated; confirm it with TSI_DEACTIVATE. */
        t->sync_deactivate = 1;
        t->last_err = 0;
        t->retry_at = now;
        return;
    }
    if (err == SNCP_E_CONFLICT && !t->evicted && t->present && t->acked == SNCP_TSI_INIT &&
        (type == SNCP_MSG_TSI_ASSOCIATE || type == SNCP_MSG_TSI_ACTIVATE) && !tsi_blocked(r, t)) {
        /* The nNVE holds this TSI_ID in a VN we hold nothing of (it moved while we were
         * away): de-associate it there, once, then associate in the VN it is in now. */
        t->evict = t->evicted = 1;
        t->retry_at = now;
        SNV_INFO("rec",
                 "tsi held by the nNVE elsewhere, de-associating it first tsi=%s "
                 "reason=\"%s\"",
                 t->id_str, t->last_reason);
        return;
    }
    if (t->sync_needed)
        t->sync_tried = 1;
    if (t->dp_adopted && err != SNCP_E_BUSY && err != SNCP_E_TIMEOUT && err != SNCP_E_PEER_CLOSED &&
        err != SNCP_E_NOT_ESTABLISHED) {
        /* The nNVE refused the activation that would have kept the inherited port. */
        t->dp_adopted = 0;
        dp_sync(r, t);
    }
    if (err == SNCP_E_NO_SUCH_VN) {
        /* Our VN connection is gone at the nNVE: connect it again first. */
        t->vn->acked = 0;
        t->failures++;
        delay = r->cfg.retry_min_ms;
    } else if (err == SNCP_E_INVALID_STATE && type == SNCP_MSG_TSI_ASSOCIATE) {
        /* It is Activated there: record that and step down with DEACTIVATE. */
        enum sncp_tsi_state s = SNCP_TSI_ACTIVATED;
        if (rsp && sncp_msg_has(rsp, SNCP_TLV_TSI_STATE) && rsp->tsi_state <= SNCP_TSI_ACTIVATED)
            s = (enum sncp_tsi_state)rsp->tsi_state;
        tsi_set_acked(r, t, s, "invalid-state");
        delay = 0;
    } else {
        t->failures++;
        delay = backoff(r, t->failures, rsp ? rsp->retry_after_ms : 0);
    }
    t->retry_at = now + delay;
    snv_log_rl(&r->rl_peer, SNV_LOG_WARN, "rec",
               "response %s tsi=%s status=%s reason=\"%s\" retry_in_ms=%llu",
               sncp_msg_type_name(type), t->id_str, sncp_error_token(err), t->last_reason,
               (unsigned long long)delay);
}

/* Ends a resynchronisation: what was not re-announced is forgotten (`sweep`: the nNVE
 * swept it at SYNC_END) or kept as acknowledged (no SYNC_END, or it failed).  Returns how
 * many VNs and TSIs were left unconfirmed. */
static unsigned sync_finish(struct tnve_rec *r, int sweep)
{
    r->phase = PHASE_READY;
    unsigned swept = 0;
    for (struct rec_vn *v = r->vns; v; v = v->next) {
        if (v->sync_needed) {
            v->sync_needed = 0;
            if (sweep)
                v->acked = 0;
            swept++;
        }
    }
    for (struct rec_tsi *t = r->tsis; t; t = t->next) {
        if (t->sync_needed) {
            t->sync_needed = 0;
            if (sweep)
                tsi_set_acked(r, t, SNCP_TSI_INIT, "swept by sync");
            swept++;
        }
    }
    if (r->dp_inherited)
        dp_sweep_inherited(r);
    return swept;
}

static void sync_response(struct tnve_rec *r, unsigned kind, const struct sncp_msg *rsp, int err,
                          uint64_t now)
{
    (void)now;
    if (err == SNCP_E_CLOSED)
        return;
    if (!err && rsp->status != SNCP_STATUS_SUCCESS)
        err = sncp_error_from_status(rsp->status);
    if (kind == CK_SYNC_BEGIN) {
        if (r->phase != PHASE_SYNC_BEGIN)
            return;
        if (err) {
            /* A peer without SYNC: re-announce all the same, just without the sweep. */
            SNV_WARN("rec", "SYNC_BEGIN refused status=%s; re-announcing without sweep",
                     sncp_error_token(err));
        } else {
            SNV_INFO("rec", "response SYNC_BEGIN status=success");
        }
        r->phase = PHASE_SYNCING;
        return;
    }
    if (r->phase != PHASE_SYNC_END)
        return;
    unsigned swept = sync_finish(r, !err);
    SNV_INFO("rec", "response SYNC_END status=%s swept=%u", err ? sncp_error_token(err) : "success",
             swept);
}

void tnve_rec_response(struct tnve_rec *r, uint64_t cookie, const struct sncp_msg *rsp, int err,
                       uint64_t now)
{
    if (r->st.outstanding)
        r->st.outstanding--;
    if (!rsp && !err)
        err = SNCP_E_INTERNAL;
    unsigned kind = COOKIE_KIND(cookie);
    uint64_t serial = COOKIE_SERIAL(cookie);
    if (kind == CK_TSI) {
        struct rec_tsi *t = tsi_find_serial(r, serial);
        if (t && t->out_type)
            tsi_response(r, t, rsp, err, now);
    } else if (kind == CK_VN) {
        for (struct rec_vn *v = r->vns; v; v = v->next)
            if (v->serial == serial) {
                if (v->out_type)
                    vn_response(r, v, rsp, err, now);
                break;
            }
    } else if (kind == CK_SYNC_BEGIN || kind == CK_SYNC_END) {
        sync_response(r, kind, rsp, err, now);
    }
    waiters_check(r, now);
    wake(r);
}

/* ---------------------------------------------------------------- peer requests */

static uint64_t kick_delay(struct tnve_rec *r, unsigned *kicks, uint64_t *last_kick, uint64_t now)
{
    if (now - *last_kick > r->cfg.retry_max_ms)
        *kicks = 0;
    *last_kick = now;
    return backoff(r, ++*kicks, 0);
}

static void respond_status(struct tnve_rec *r, const struct sncp_msg *req, uint16_t status,
                           const char *reason)
{
    struct sncp_msg rsp;
    sncp_msg_init(&rsp, SNCP_MSG_RESPONSE, req->xid);
    rsp.status = status;
    sncp_msg_set(&rsp, SNCP_TLV_STATUS);
    if (reason) {
        snprintf(rsp.reason, sizeof rsp.reason, "%s", reason);
        sncp_msg_set(&rsp, SNCP_TLV_REASON);
    }
    r->ops.respond(r->aux, req, &rsp);
}

void tnve_rec_request(struct tnve_rec *r, const struct sncp_msg *req, uint64_t now)
{
    r->st.peer_requests++;
    switch (req->type) {
    case SNCP_MSG_VN_DISCONNECT: {
        struct tnve_vn vn;
        memset(&vn, 0, sizeof vn);
        if (sncp_msg_has(req, SNCP_TLV_VN_ID))
            vn.id = req->vn_id;
        if (sncp_msg_has(req, SNCP_TLV_VN_NAME))
            memcpy(vn.name, req->vn_name, sizeof vn.name);
        struct rec_vn *v = NULL;
        for (struct rec_vn *o = r->vns; o && !v; o = o->next)
            if ((vn.id && o->vn.id == vn.id) || (vn.name[0] && !strcmp(o->vn.name, vn.name)))
                v = o;
        if (!v) {
            /* Nothing of ours to disconnect: "already done" (PROTOCOL.md §6.4, §6.13). */
            respond_status(r, req, SNCP_STATUS_NO_SUCH_VN, "no such VN at this hypervisor");
            break;
        }
        respond_status(r, req, SNCP_STATUS_SUCCESS, NULL);
        char vbuf[TNVE_VN_STRLEN];
        v->acked = 0;
        v->sync_needed = 0;
        for (struct rec_tsi *t = r->tsis; t; t = t->next) {
            if (t->vn == v) {
                t->sync_needed = 0;
                t->dp_adopted = 0;
                tsi_set_acked(r, t, SNCP_TSI_INIT, "nNVE disconnected the vn");
            }
        }
        v->retry_at = now + kick_delay(r, &v->kicks, &v->last_kick, now);
        SNV_INFO("rec", "nNVE disconnected vn=%s; reconnecting in %llu ms",
                 vn_text(v, vbuf, sizeof vbuf), (unsigned long long)(v->retry_at - now));
        break;
    }
    case SNCP_MSG_TSI_DEACTIVATE:
    case SNCP_MSG_TSI_DEASSOCIATE:
    case SNCP_MSG_TSI_UPDATE: {
        struct rec_tsi *t = tsi_find_id(r, &req->tsi);
        if (!t || t->acked == SNCP_TSI_INIT) {
            respond_status(r, req, SNCP_STATUS_NO_SUCH_TSI, NULL);
            break;
        }
        respond_status(r, req, SNCP_STATUS_SUCCESS, NULL);
        uint64_t d = kick_delay(r, &t->kicks, &t->last_kick, now);
        t->retry_at = now + d;
        t->sync_needed = 0;
        if (req->type == SNCP_MSG_TSI_DEASSOCIATE) {
            t->dp_adopted = 0;
            tsi_set_acked(r, t, SNCP_TSI_INIT, "nNVE de-associated");
        } else if (req->type == SNCP_MSG_TSI_DEACTIVATE && !req->n_addrs) {
            if (t->acked == SNCP_TSI_ACTIVATED)
                tsi_set_acked(r, t, SNCP_TSI_ASSOCIATED, "nNVE deactivated");
        } else {
            /* Addresses withdrawn or changed by the nNVE: ours are re-sent later. */
            t->addr_acked_gen = t->addr_gen + 1;
        }
        SNV_INFO("rec", "nNVE %s tsi=%s; converging back in %llu ms", sncp_msg_type_name(req->type),
                 t->id_str, (unsigned long long)d);
        break;
    }
    default:
        snv_log_rl(&r->rl_peer, SNV_LOG_WARN, "rec", "unexpected request from the nNVE type=%s",
                   sncp_msg_type_name(req->type));
        respond_status(r, req, SNCP_STATUS_UNEXPECTED_MESSAGE, "not accepted by a tNVE");
        break;
    }
    wake(r);
}

/* ---------------------------------------------------------------- inspection */

const char *tnve_rec_phase(const struct tnve_rec *r)
{
    switch (r->phase) {
    case PHASE_DOWN:
        return "down";
    case PHASE_WAIT_INVENTORY:
        return "waiting-inventory";
    case PHASE_SYNC_BEGIN:
        return "sync-begin";
    case PHASE_SYNCING:
        return "syncing";
    case PHASE_SYNC_END:
        return "sync-end";
    case PHASE_READY:
        return "ready";
    }
    return "unknown";
}

/* The instance a vNIC is shown by: its present one, else the first still tracked. */
static const struct rec_tsi *tsi_shown(const struct tnve_rec *r, const struct rec_tsi *t)
{
    const struct rec_tsi *first = NULL;
    for (const struct rec_tsi *o = r->tsis; o; o = o->next) {
        if (memcmp(&o->id, &t->id, sizeof t->id))
            continue;
        if (o->present)
            return o;
        if (!first)
            first = o;
    }
    return first;
}

/* One row per vNIC: a vNIC that moved shows its new VN, and in `previous_vn` the old one
 * while the nNVE still holds it there.  `error` is the TSI's last refusal, else its VN's
 * while the VN is not connected (e.g. a VN this hypervisor may not use). */
json_t *tnve_rec_tsis_json(const struct tnve_rec *r)
{
    json_t *a = json_array();
    for (const struct rec_tsi *t = r->tsis; t; t = t->next) {
        if (tsi_shown(r, t) != t)
            continue;
        const struct rec_tsi *prev = NULL;
        for (const struct rec_tsi *o = r->tsis; o && !prev; o = o->next)
            if (o != t && !o->present && !memcmp(&o->id, &t->id, sizeof t->id) &&
                (o->acked != SNCP_TSI_INIT || o->out_type))
                prev = o;
        char pbuf[TNVE_VN_STRLEN];
        const char *err = t->last_err                        ? t->last_reason
                          : !t->vn->acked && t->vn->last_err ? t->vn->last_reason
                                                             : "";
        char mac[SNCP_MAC_STRLEN];
        sncp_mac_format(t->id.mac, mac, sizeof mac);
        json_t *addrs = json_array();
        for (unsigned i = 0; i < t->n_addrs; i++) {
            char ab[SNCP_ADDR_STRLEN];
            sncp_addr_format(&t->addrs[i], ab, sizeof ab);
            json_array_append_new(addrs, json_string(ab));
        }
        json_t *o = json_object();
        json_object_set_new(o, "domain", json_string(t->dom->name));
        json_object_set_new(o, "uuid", json_string(t->dom->uuid_str));
        json_object_set_new(o, "mac", json_string(mac));
        json_object_set_new(o, "vn_id", t->vn->vn.id ? json_integer(t->vn->vn.id) : json_null());
        json_object_set_new(o, "vn_name", json_string(t->vn->vn.name));
        json_object_set_new(o, "desired", json_string(sncp_tsi_state_name(tsi_desired(t))));
        json_object_set_new(o, "acked", json_string(sncp_tsi_state_name(t->acked)));
        json_object_set_new(o, "tag", json_integer(t->tag));
        json_object_set_new(o, "port", json_string(t->ifname));
        json_object_set_new(o, "pending", json_string(type_short(t->out_type)));
        json_object_set_new(o, "failures", json_integer(t->failures));
        json_object_set_new(o, "error", json_string(err));
        json_object_set_new(o, "previous_vn",
                            prev ? json_string(vn_text(prev->vn, pbuf, sizeof pbuf)) : json_null());
        json_object_set_new(o, "addresses", addrs);
        json_object_set_new(o, "tsi", json_string(t->id_str));
        json_array_append_new(a, o);
    }
    return a;
}

json_t *tnve_rec_domains_json(const struct tnve_rec *r)
{
    json_t *a = json_array();
    for (const struct rec_domain *d = r->domains; d; d = d->next) {
        unsigned n = 0;
        for (const struct rec_tsi *t = d->tsis; t; t = t->dom_next)
            if (t->present)
                n++;
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(d->name));
        json_object_set_new(o, "uuid", json_string(d->uuid_str));
        json_object_set_new(o, "state", json_string(d->removed ? "undefined" : d->state));
        json_object_set_new(
            o, "desired",
            json_string(sncp_tsi_state_name(d->removed ? SNCP_TSI_INIT : d->desired)));
        json_object_set_new(o, "vnics", json_integer(d->n_vnics));
        json_object_set_new(o, "tsis", json_integer(n));
        json_object_set_new(o, "unmapped", json_integer(d->n_unmapped));
        json_array_append_new(a, o);
    }
    return a;
}

json_t *tnve_rec_vns_json(const struct tnve_rec *r)
{
    json_t *a = json_array();
    for (const struct rec_vn *v = r->vns; v; v = v->next) {
        json_t *o = json_object();
        json_object_set_new(o, "vn_id", v->vn.id ? json_integer(v->vn.id) : json_null());
        json_object_set_new(o, "vn_name", json_string(v->vn.name));
        json_object_set_new(o, "users", json_integer(vn_users(r, v)));
        json_object_set_new(o, "connected", json_boolean(v->acked));
        json_object_set_new(o, "tag", json_integer(v->tag));
        json_object_set_new(o, "served", json_boolean(v->served));
        json_object_set_new(o, "pending", json_string(type_short(v->out_type)));
        json_object_set_new(o, "error", json_string(v->last_err ? v->last_reason : ""));
        json_array_append_new(a, o);
    }
    return a;
}

unsigned tnve_rec_vn_tags(const struct tnve_rec *r, struct tnve_rec_vn_tag *out, unsigned cap)
{
    unsigned n = 0;
    for (const struct rec_vn *v = r->vns; v; v = v->next) {
        if (!v->acked || !v->tag)
            continue;
        if (n < cap) {
            out[n].vn = v->vn;
            out[n].tag = v->tag;
        }
        n++;
    }
    return n;
}

json_t *tnve_rec_counters_json(const struct tnve_rec *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "phase", json_string(tnve_rec_phase(r)));
    json_object_set_new(o, "domains", json_integer(r->st.domains));
    json_object_set_new(o, "tsis", json_integer(r->st.tsis));
    json_object_set_new(o, "vns", json_integer(r->st.vns));
    json_object_set_new(o, "outstanding", json_integer(r->st.outstanding));
    for (unsigned t = 1; t <= SNCP_MSG_TYPE_MAX; t++) {
        if (!r->st.sent[t])
            continue;
        char key[64];
        snprintf(key, sizeof key, "sent_%s", sncp_msg_type_name(t));
        for (char *p = key; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        json_object_set_new(o, key, json_integer((json_int_t)r->st.sent[t]));
    }
    json_object_set_new(o, "responses_ok", json_integer((json_int_t)r->st.ok));
    json_object_set_new(o, "responses_failed", json_integer((json_int_t)r->st.failed));
    json_object_set_new(o, "timeouts", json_integer((json_int_t)r->st.timeouts));
    json_object_set_new(o, "retries", json_integer((json_int_t)r->st.retries));
    json_object_set_new(o, "peer_requests", json_integer((json_int_t)r->st.peer_requests));
    json_object_set_new(o, "syncs", json_integer((json_int_t)r->st.syncs));
    json_object_set_new(o, "dataplane_errors", json_integer((json_int_t)r->st.dp_errors));
    json_object_set_new(o, "hook_ok", json_integer((json_int_t)r->st.prepares_ok));
    json_object_set_new(o, "hook_failed", json_integer((json_int_t)r->st.prepares_failed));
    return o;
}

void tnve_rec_get_stats(const struct tnve_rec *r, struct tnve_rec_stats *st)
{
    *st = r->st;
}
