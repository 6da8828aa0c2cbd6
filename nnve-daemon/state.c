/* state.c: the nNVE state machines (see state.h).
 *
 * Objects and who owns them:
 *   domain   one per [domain] section ever configured: name + tag pool.
 *   port     a switch port some hypervisor is on; knows its domain and, per VAP, how many
 *            of its hypervisors are connected to the VN (the VN is on the port while > 0).
 *   vap      (domain, VN) -> local tag; n_users VN connections.  A VAP without users lingers
 *            for tag_hold_down so the VN gets its tag back if it returns.
 *   hv       a hypervisor identity: its port, VN connections (list), TSI instances (list).
 *   vnconn   hypervisor x VAP.
 *   tsi      an instance: TSI_ID x hypervisor; all instances of one TSI_ID share a hash slot
 *            chain in the TSI table, which is how migration finds the other instance.
 *   owner    (VAP, address) -> the TSI_ID that holds it: every MAC (the TSI_ID's and each
 *            address's) and IP of every instance, counted per declaration, so that another
 *            TSI claiming one in the same VAP is refused in O(1) (the two instances of a
 *            migrating TSI share their entries).
 * Memory per TSI instance: the struct (80 bytes), its address array, and a hash slot.
 *
 * Failures.  Every change goes to the backend and into the store's open transaction (one per
 * event-loop iteration, see store.h).  A backend or store failure marks the whole group
 * failed: the rest of the iteration's requests are refused, and nnve_state_commit() rolls
 * the transaction back and rebuilds memory and dataplane from the store (the last committed
 * state: exactly what was acknowledged), so a failed request has no effect.  A store failure
 * (or a rebuild that fails) also enters degraded mode: every request is refused and the store
 * is not written until nnve_state_recover() has rewritten all of it from memory in one
 * transaction (and replayed the dataplane if an operation failed meanwhile).
 */
#include "state.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "snv-log.h"
#include "tagpool.h"

struct nnve_domain {
    char *name;
    struct nnve_tagpool *pool;
    struct nnve_domain *next;
};

struct port_vn {
    struct nnve_vap *vap;
    unsigned refs;
};

struct nnve_port {
    char *name;
    struct nnve_domain *domain;
    struct port_vn *vns;
    unsigned n_vns, cap_vns;
    unsigned n_hvs;
};

struct nnve_vap {
    struct nnve_domain *domain;
    struct nnve_vn vn;
    char key[80]; /* "id:N" / "name:X" */
    uint32_t hash;
    uint16_t tag;
    unsigned n_users;
    unsigned n_tsis;
    uint64_t linger_until; /* n_users == 0: removed at this time */
    int loaded_hold;       /* loaded with a stored hold-down of loaded_hold_ms left */
    uint32_t loaded_hold_ms;
};

struct nnve_vnconn {
    struct nnve_vap *vap;
    struct nnve_hv *hv;
    struct nnve_vnconn *next;
    unsigned n_tsis;
    uint8_t unconfirmed;
    uint8_t implicit; /* made by IMPLICIT_CONNECT: ends with its last TSI (§9.2) */
    uint8_t removing; /* vnconn_remove() is taking its TSIs away */
};

struct nnve_tsi {
    struct sncp_tsi_id id;
    uint8_t state;
    uint8_t migrating;
    uint8_t unconfirmed;
    uint8_t handover; /* activated by the nNVE at the migration source's leave (§9.3) */
    uint8_t n_addrs;
    struct nnve_hv *hv;
    struct nnve_vnconn *vc;
    struct nnve_tsi *prev, *next; /* hv's list */
    struct sncp_addr *addrs;
};

struct nnve_hv {
    char *identity;
    struct nnve_port *port;
    struct nnve_vnconn *vnconns;
    unsigned n_vnconns;
    struct nnve_tsi *tsis;
    unsigned n_tsis;
    uint64_t hold_until; /* 0: connected */
    uint8_t syncing;
    void *session;
    const struct nnve_hv_cfg *hc; /* its [hypervisor] section in st->cfg, or NULL */
    struct snv_ratelimit rl;      /* its share of the refusals logged (HV_LOG_RATE) */
    struct nnve_vn *moved;        /* VNs removed by a move to another domain, to notify */
    unsigned n_moved;
};

enum { FAIL_BACKEND = 1, FAIL_STORE = 2 };

/* A hypervisor's refusals are logged at most HV_LOG_RATE lines/s (bursts of HV_LOG_BURST),
 * and everyone's at most ALL_LOG_RATE (ALL_LOG_BURST): one hypervisor sending nothing but
 * refused requests cannot hide the refusals of the others. */
enum { HV_LOG_RATE = 5, HV_LOG_BURST = 20, ALL_LOG_RATE = 50, ALL_LOG_BURST = 200 };

struct nnve_state {
    const struct nnve_config *cfg;
    struct nnve_backend *be;
    struct nnve_store *store; /* where changes go: db, or NULL while degraded */
    struct nnve_store *db;    /* the attached store */
    unsigned failed;          /* FAIL_*: the current group failed */
    int degraded;
    int dp_dirty;    /* a backend operation failed while degraded: replay before leaving */
    int need_reload; /* a revert failed: memory is not the stored state, reload it */
    int restoring;
    struct nnve_domain *domains;
    struct nnve_hmap hvs;   /* by identity */
    struct nnve_hmap ports; /* by name */
    struct nnve_hmap vaps;  /* by (domain, key) */
    struct nnve_hmap tsis;  /* by TSI_ID */
    struct nnve_hmap addrs; /* by (VAP, address): struct addr_owner */
    struct nnve_state_counters c;
    struct snv_ratelimit rl;                  /* everyone's refusals logged (ALL_LOG_RATE) */
    const struct nnve_tag_policy *tag_policy; /* a domain shared with a ToR pair peer */
    uint32_t retry_after_ms;                  /* set by tag_policy->acquire with SNCP_E_BUSY */
    struct nnve_vn busy_vn;                   /* ... and the VN it was called for */
};

/* Every state change is an audit line (snv_audit(), never rate-limited: RFC 8394 section
 * 10).  What a peer can make of them is bounded by the changes its limits allow. */

/* ---- helpers ---------------------------------------------------------------------- */

static const char *tsi_str(const struct sncp_tsi_id *id, char *buf, size_t cap)
{
    sncp_tsi_id_format(id, buf, cap);
    return buf;
}

static void vn_key(const struct nnve_vn *vn, char *buf, size_t cap)
{
    if (vn->has_id)
        snprintf(buf, cap, "id:%u", (unsigned)vn->id);
    else
        snprintf(buf, cap, "name:%s", vn->name);
}

static uint32_t tsi_hash(const struct sncp_tsi_id *id)
{
    uint8_t b[22];
    memcpy(b, id->uuid, 16);
    memcpy(b + 16, id->mac, 6);
    return nnve_hash_bytes(b, sizeof b, 0);
}

static int tsi_id_eq(const struct sncp_tsi_id *a, const struct sncp_tsi_id *b)
{
    return !memcmp(a->uuid, b->uuid, 16) && !memcmp(a->mac, b->mac, 6);
}

static void be_count(struct nnve_state *st, int r)
{
    st->be->ops++;
    if (r < 0) {
        st->be->errors++;
        st->c.backend_errors++;
        if (st->degraded)
            st->dp_dirty = 1;
        else
            st->failed |= FAIL_BACKEND;
    }
}

static void store_count(struct nnve_state *st, int r)
{
    if (r < 0) {
        st->c.store_errors++;
        st->failed |= FAIL_STORE;
    }
}

/* ---- domains and ports ------------------------------------------------------------- */

static struct nnve_domain *domain_find(const struct nnve_state *st, const char *name)
{
    for (struct nnve_domain *d = st->domains; d; d = d->next)
        if (!strcmp(d->name, name))
            return d;
    return NULL;
}

static struct nnve_tagpool *pool_from_cfg(const struct nnve_domain_cfg *dc, uint32_t hold)
{
    return nnve_tagpool_create(dc->ranges, dc->n_ranges, dc->reserved, dc->n_reserved, hold);
}

static struct nnve_port *port_find(const struct nnve_state *st, const char *name)
{
    struct nnve_hmap_iter it;
    for (struct nnve_port *p = nnve_hmap_first(&st->ports, nnve_hash_string(name, 1), &it); p;
         p = nnve_hmap_next(&st->ports, &it))
        if (!strcmp(p->name, name))
            return p;
    return NULL;
}

static struct nnve_port *port_get(struct nnve_state *st, const char *name)
{
    struct nnve_port *p = port_find(st, name);
    if (p)
        return p;
    const struct nnve_domain_cfg *dc = nnve_config_port_domain(st->cfg, name);
    struct nnve_domain *d = dc ? domain_find(st, dc->name) : NULL;
    if (!d)
        return NULL;
    p = calloc(1, sizeof *p);
    if (!p || !(p->name = strdup(name)) ||
        nnve_hmap_insert(&st->ports, nnve_hash_string(name, 1), p)) {
        if (p)
            free(p->name);
        free(p);
        return NULL;
    }
    p->domain = d;
    return p;
}

static void port_maybe_free(struct nnve_state *st, struct nnve_port *p)
{
    if (p->n_hvs || p->n_vns)
        return;
    nnve_hmap_remove(&st->ports, nnve_hash_string(p->name, 1), p);
    free(p->vns);
    free(p->name);
    free(p);
}

/* One more (delta 1) or one fewer (-1) hypervisor on port p connected to the VAP's VN. */
static int port_vn_ref(struct nnve_state *st, struct nnve_port *p, struct nnve_vap *vap, int delta)
{
    unsigned i;
    for (i = 0; i < p->n_vns && p->vns[i].vap != vap; i++)
        ;
    if (delta > 0) {
        if (i == p->n_vns) {
            if (p->n_vns == p->cap_vns) {
                unsigned cap = p->cap_vns ? p->cap_vns * 2 : 4;
                struct port_vn *v = realloc(p->vns, cap * sizeof *v);
                if (!v)
                    return -ENOMEM;
                p->vns = v;
                p->cap_vns = cap;
            }
            p->vns[p->n_vns++] = (struct port_vn){.vap = vap, .refs = 0};
        }
        if (p->vns[i].refs++ == 0 && st->be)
            be_count(st, st->be->cls->vn_add(st->be, p->name, vap->tag, &vap->vn));
        return 0;
    }
    if (i == p->n_vns)
        return 0;
    if (--p->vns[i].refs == 0) {
        if (st->be)
            be_count(st, st->be->cls->vn_remove(st->be, p->name, vap->tag, &vap->vn));
        p->vns[i] = p->vns[--p->n_vns];
    }
    return 0;
}

/* ---- VAPs ------------------------------------------------------------------------- */

static uint32_t vap_hash(const struct nnve_domain *d, const char *key)
{
    return nnve_hash_string(key, nnve_hash_string(d->name, 7));
}

static struct nnve_vap *vap_find(const struct nnve_state *st, const struct nnve_domain *d,
                                 const struct nnve_vn *vn)
{
    char key[80];
    vn_key(vn, key, sizeof key);
    struct nnve_hmap_iter it;
    for (struct nnve_vap *v = nnve_hmap_first(&st->vaps, vap_hash(d, key), &it); v;
         v = nnve_hmap_next(&st->vaps, &it))
        if (v->domain == d && !strcmp(v->key, key))
            return v;
    return NULL;
}

static struct nnve_vap *vap_new(struct nnve_state *st, struct nnve_domain *d,
                                const struct nnve_vn *vn, uint16_t tag)
{
    struct nnve_vap *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->domain = d;
    v->vn = *vn;
    v->tag = tag;
    vn_key(vn, v->key, sizeof v->key);
    v->hash = vap_hash(d, v->key);
    if (nnve_hmap_insert(&st->vaps, v->hash, v)) {
        free(v);
        return NULL;
    }
    st->c.vaps++;
    return v;
}

static void vap_free(struct nnve_state *st, struct nnve_vap *v)
{
    nnve_hmap_remove(&st->vaps, v->hash, v);
    st->c.vaps--;
    free(v);
}

/* The VAP of vn in domain d with a user more: found (reviving a lingering one) or created
 * with a tag from the pool.  Returns 0 and *out, or SNCP_E_TAG_POOL_EXHAUSTED / -ENOMEM
 * with nothing changed. */
static int vap_acquire(struct nnve_state *st, struct nnve_domain *d, const struct nnve_vn *vn,
                       const struct sncp_tag *prefs, unsigned n_prefs, uint64_t now,
                       struct nnve_vap **out)
{
    char vbuf[80];
    struct nnve_vap *v = vap_find(st, d, vn);
    if (v && v->n_users == 0) {
        /* Lingering: take its held tag back, unless the pool gave it away meanwhile (its
         * hold-down ran out before the VAP was reaped); a tag outside a reloaded pool stays. */
        if (nnve_tagpool_state(d->pool, v->tag, now) == NNVE_TAG_USED) {
            uint16_t tag, p[SNCP_MAX_TAGS];
            unsigned n = n_prefs < SNCP_MAX_TAGS ? n_prefs : SNCP_MAX_TAGS;
            for (unsigned i = 0; i < n; i++)
                p[i] = prefs[i].vid;
            int r = nnve_tagpool_alloc(d->pool, p, n, now, &tag);
            if (r)
                return r;
            v->tag = tag;
        } else {
            nnve_tagpool_claim(d->pool, v->tag, now);
        }
        v->linger_until = 0;
        if (!st->restoring) {
            store_count(st, nnve_store_vap_put(st->store, d->name, &v->vn, v->tag));
            store_count(st, nnve_store_vap_hold_del(st->store, d->name, &v->vn));
        }
        snv_audit("vap", "revived domain=%s vn=%s tag=%u", d->name,
                  nnve_vn_format(&v->vn, vbuf, sizeof vbuf), v->tag);
    } else if (!v) {
        uint16_t p[SNCP_MAX_TAGS], tag;
        unsigned n = n_prefs < SNCP_MAX_TAGS ? n_prefs : SNCP_MAX_TAGS;
        for (unsigned i = 0; i < n; i++)
            p[i] = prefs[i].vid;
        const struct nnve_tag_policy *tp = st->tag_policy;
        int r;
        if (tp && !st->restoring && !strcmp(tp->domain, d->name)) {
            /* The pair decides; the local pool only mirrors it (a tag it cannot take, in
             * use by a lingering VAP of another VN, would break the one-VN-per-tag rule). */
            r = tp->acquire(tp->aux, vn, p, n, &tag, &st->retry_after_ms);
            if (r == SNCP_E_BUSY)
                st->busy_vn = *vn;
            if (!r && nnve_tagpool_claim(d->pool, tag, now) == -EBUSY) {
                SNV_ERR("pair", "agreed tag in local use domain=%s vn=%s tag=%u", d->name,
                        nnve_vn_format(vn, vbuf, sizeof vbuf), tag);
                r = SNCP_E_INTERNAL;
            }
        } else {
            r = nnve_tagpool_alloc(d->pool, p, n, now, &tag);
        }
        if (r)
            return r;
        v = vap_new(st, d, vn, tag);
        if (!v) {
            nnve_tagpool_release(d->pool, tag, 0);
            return -ENOMEM;
        }
        if (!st->restoring)
            store_count(st, nnve_store_vap_put(st->store, d->name, &v->vn, v->tag));
        snv_audit("vap", "created domain=%s vn=%s tag=%u", d->name,
                  nnve_vn_format(&v->vn, vbuf, sizeof vbuf), v->tag);
    }
    v->n_users++;
    *out = v;
    return 0;
}

/* Puts an unused VAP's tag in hold-down for hold_ms: it goes to no other VN before then,
 * across restarts too (the VAP's row stays, with the deadline, until the VAP is reaped). */
static void vap_hold(struct nnve_state *st, struct nnve_vap *v, uint64_t now, uint32_t hold_ms)
{
    uint32_t full = st->cfg->tag_hold_down_ms;
    nnve_tagpool_release(v->domain->pool, v->tag, now + hold_ms >= full ? now + hold_ms - full : 0);
    v->linger_until = now + hold_ms;
    if (v->linger_until == 0)
        v->linger_until = 1;
    store_count(st, nnve_store_vap_hold_put(st->store, v->domain->name, &v->vn, hold_ms));
}

static void vap_release(struct nnve_state *st, struct nnve_vap *v, uint64_t now)
{
    if (--v->n_users > 0)
        return;
    char vbuf[80];
    vap_hold(st, v, now, st->cfg->tag_hold_down_ms);
    snv_audit("vap", "released domain=%s vn=%s tag=%u hold_down_ms=%u", v->domain->name,
              nnve_vn_format(&v->vn, vbuf, sizeof vbuf), v->tag, st->cfg->tag_hold_down_ms);
}

/* ---- VN resolution and policy ------------------------------------------------------ */

/* The catalogue VN a request names (PROTOCOL.md §4.4).  VN_ID alone: the VN with that ID
 * (with its [vn] name when it has one).  VN_NAME: a [vn] entry, else NO_SUCH_VN.  Both: the
 * same entry, else CONFLICT.  The result always has an ID, and only the catalogue's name:
 * never a name the peer added, so authorization and the VAP key see the VN itself.
 * Returns 0, SNCP_E_MISSING_TLV, SNCP_E_INVALID_VALUE (an ID out of range),
 * SNCP_E_NO_SUCH_VN or SNCP_E_CONFLICT, with res->error_tlv and res->reason. */
static int vn_resolve(const struct nnve_config *cfg, int has_id, uint32_t id, const char *name,
                      struct nnve_vn *out, struct nnve_result *res)
{
    memset(out, 0, sizeof *out);
    if (!has_id && (!name || !*name)) {
        res->error_tlv = SNCP_TLV_VN_ID;
        res->reason = "VN_ID or VN_NAME required";
        return SNCP_E_MISSING_TLV;
    }
    if (has_id && id > SNCP_MAX_VN_ID) {
        res->error_tlv = SNCP_TLV_VN_ID;
        return SNCP_E_INVALID_VALUE;
    }
    if (name && *name) {
        const struct nnve_vn_cfg *vc = nnve_config_find_vn_name(cfg, name);
        if (!vc || !vc->has_id) {
            res->error_tlv = SNCP_TLV_VN_NAME;
            if (has_id && nnve_config_find_vn_id(cfg, id)) {
                res->reason = "VN_ID has another VN_NAME";
                return SNCP_E_CONFLICT;
            }
            res->reason = "no such VN_NAME in the catalogue";
            return SNCP_E_NO_SUCH_VN;
        }
        if (has_id && vc->id != id) {
            res->error_tlv = SNCP_TLV_VN_NAME;
            res->reason = "VN_NAME names another VN_ID";
            return SNCP_E_CONFLICT;
        }
        id = vc->id;
    }
    const struct nnve_vn_cfg *byid = nnve_config_find_vn_id(cfg, id);
    if (byid)
        snprintf(out->name, sizeof out->name, "%s", byid->name);
    out->has_id = 1;
    out->id = id;
    return 0;
}

/* A peer's string for a log line: '"' and '\\' escaped, bytes outside 0x20..0x7e as \\xNN,
 * so it cannot forge a line or a field. */
static const char *log_str(const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 5 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            o += (size_t)snprintf(buf + o, cap - o, "\\%c", c);
        else if (c < 0x20 || c > 0x7e)
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
    }
    buf[o] = '\0';
    return buf;
}

/* vn_resolve for a request of hv; a refusal about the VN's identity (NO_SUCH_VN, CONFLICT)
 * is logged (`policy: refused: VN not in the catalogue`, rate-limited). */
static int vn_resolve_msg(struct nnve_state *st, struct nnve_hv *hv, const struct sncp_msg *req,
                          struct nnve_vn *out, struct nnve_result *res)
{
    int has_id = sncp_msg_has(req, SNCP_TLV_VN_ID);
    const char *name = sncp_msg_has(req, SNCP_TLV_VN_NAME) ? req->vn_name : NULL;
    int r = vn_resolve(st->cfg, has_id, req->vn_id, name, out, res);
    if (r == SNCP_E_NO_SUCH_VN || r == SNCP_E_CONFLICT) {
        char idbuf[16] = "none", nbuf[4 * SNCP_MAX_VN_NAME_LEN + 1];
        if (has_id)
            snprintf(idbuf, sizeof idbuf, "%u", (unsigned)req->vn_id);
        snv_log_rl2(&hv->rl, &st->rl, SNV_LOG_WARN, "policy",
                    "refused: VN not in the catalogue hypervisor=%s vn_id=%s vn_name=\"%s\" "
                    "request=%s status=%s",
                    hv->identity, idbuf, log_str(name ? name : "", nbuf, sizeof nbuf),
                    sncp_msg_type_name(req->type), sncp_error_token(r));
    }
    return r;
}

/* Whether the configuration grants the (resolved) VN to the hypervisor. */
static int vn_granted(const struct nnve_hv *hv, const struct nnve_vn *vn)
{
    return hv->hc && vn->has_id && nnve_config_vn_allowed(hv->hc, vn->id);
}

/* Authorizes a request of hv about the resolved VN `vn`: NOT_AUTHORIZED unless granted.
 * Refusals are logged (`policy: refused`, rate-limited). */
static int vn_authorize(struct nnve_state *st, struct nnve_hv *hv, const struct nnve_vn *vn,
                        const struct sncp_msg *req, struct nnve_result *res)
{
    if (vn_granted(hv, vn))
        return 0;
    char vbuf[80];
    snv_log_rl2(&hv->rl, &st->rl, SNV_LOG_WARN, "policy",
                "refused: VN not authorized hypervisor=%s vn=%s request=%s status=not-authorized",
                hv->identity, nnve_vn_format(vn, vbuf, sizeof vbuf), sncp_msg_type_name(req->type));
    res->error_tlv = sncp_msg_has(req, SNCP_TLV_VN_ID) || !sncp_msg_has(req, SNCP_TLV_VN_NAME)
                         ? SNCP_TLV_VN_ID
                         : SNCP_TLV_VN_NAME;
    res->reason = "VN not authorized for this hypervisor";
    return SNCP_E_NOT_AUTHORIZED;
}

/* A per-hypervisor limit refusal: RESOURCE_LIMIT with the reason, logged. */
static int limit_refuse(struct nnve_state *st, struct nnve_hv *hv, const char *limit,
                        unsigned value, const char *reason, struct nnve_result *res)
{
    snv_log_rl2(&hv->rl, &st->rl, SNV_LOG_WARN, "policy",
                "refused: limit reached hypervisor=%s limit=%s value=%u status=resource-limit",
                hv->identity, limit, value);
    res->reason = reason;
    return SNCP_E_RESOURCE_LIMIT;
}

static struct nnve_hv_limits hv_limits(const struct nnve_state *st, const struct nnve_hv *hv)
{
    return nnve_config_hv_limits(st->cfg, hv->hc);
}

static void result_vn(struct nnve_result *res, const struct nnve_vap *vap)
{
    res->has_vn = 1;
    res->vn = vap->vn;
    res->n_tags = 1;
    res->tags[0].vid = vap->tag;
    res->tags[0].pcp = SNCP_PCP_NONE;
}

/* ---- VN connections --------------------------------------------------------------- */

static struct nnve_vnconn *vnconn_find(const struct nnve_hv *hv, const struct nnve_vap *vap)
{
    for (struct nnve_vnconn *vc = hv->vnconns; vc; vc = vc->next)
        if (vc->vap == vap)
            return vc;
    return NULL;
}

static int vnconn_create(struct nnve_state *st, struct nnve_hv *hv, const struct nnve_vn *vn,
                         const struct sncp_tag *prefs, unsigned n_prefs, int implicit, uint64_t now,
                         struct nnve_vnconn **out)
{
    struct nnve_vnconn *vc = calloc(1, sizeof *vc);
    if (!vc)
        return -ENOMEM;
    struct nnve_vap *vap;
    int r = vap_acquire(st, hv->port->domain, vn, prefs, n_prefs, now, &vap);
    if (r) {
        free(vc);
        return r;
    }
    if (port_vn_ref(st, hv->port, vap, 1)) {
        vap_release(st, vap, now);
        free(vc);
        return -ENOMEM;
    }
    vc->vap = vap;
    vc->hv = hv;
    vc->implicit = (uint8_t) !!implicit;
    vc->next = hv->vnconns;
    hv->vnconns = vc;
    hv->n_vnconns++;
    st->c.vn_connections++;
    char vbuf[80];
    if (!st->restoring)
        store_count(st, nnve_store_vn_connection_put(st->store, hv->identity, &vap->vn, implicit));
    snv_audit("vn", "connected hypervisor=%s vn=%s port=%s tag=%u%s", hv->identity,
              nnve_vn_format(&vap->vn, vbuf, sizeof vbuf), hv->port->name, vap->tag,
              implicit ? " implicit=yes" : "");
    *out = vc;
    return 0;
}

static void tsi_remove(struct nnve_state *st, struct nnve_tsi *t, uint64_t now, const char *why);

static void vnconn_remove(struct nnve_state *st, struct nnve_vnconn *vc, uint64_t now,
                          const char *why)
{
    struct nnve_hv *hv = vc->hv;
    vc->removing = 1;
    for (struct nnve_tsi *t = hv->tsis, *next; t; t = next) {
        next = t->next;
        if (t->vc == vc)
            tsi_remove(st, t, now, why);
    }
    struct nnve_vnconn **pp = &hv->vnconns;
    while (*pp != vc)
        pp = &(*pp)->next;
    *pp = vc->next;
    hv->n_vnconns--;
    st->c.vn_connections--;
    char vbuf[80];
    struct nnve_vap *vap = vc->vap;
    snv_audit("vn", "disconnected hypervisor=%s vn=%s port=%s tag=%u reason=%s", hv->identity,
              nnve_vn_format(&vap->vn, vbuf, sizeof vbuf), hv->port->name, vap->tag, why);
    store_count(st, nnve_store_vn_connection_del(st->store, hv->identity, &vap->vn));
    port_vn_ref(st, hv->port, vap, -1);
    vap_release(st, vap, now);
    free(vc);
}

/* ---- address ownership ----------------------------------------------------------- */

/* One MAC, IPv4 or IPv6 address (kind: SNCP_ADDR_MAC, _IPV4 or _IPV6). */
struct addr_key {
    uint8_t kind;
    uint8_t bytes[16];
};

/* Instances of `owner` declare `key` in `vap` `refs` times.  Normally one owner per (vap,
 * key); state loaded from an older store may hold more, each counted on its own. */
struct addr_owner {
    const struct nnve_vap *vap;
    struct addr_key key;
    struct sncp_tsi_id owner;
    unsigned refs;
};

enum { ADDR_KEYS_MAX = 1 + 2 * SNCP_MAX_ADDRS };

/* The keys instance (id, addrs[0..n)) declares: its TSI_ID MAC first, then each address's
 * MAC and IP (repeats included: counted per declaration).  Returns the count. */
static unsigned addr_keys(const struct sncp_tsi_id *id, const struct sncp_addr *a, unsigned n,
                          struct addr_key *out)
{
    unsigned k = 0;
    out[k] = (struct addr_key){.kind = SNCP_ADDR_MAC};
    memcpy(out[k++].bytes, id->mac, 6);
    for (unsigned i = 0; i < n && i < SNCP_MAX_ADDRS; i++) {
        uint8_t t = a[i].type;
        if (t == SNCP_ADDR_MAC || t == SNCP_ADDR_IPV4_MAC || t == SNCP_ADDR_IPV6_MAC) {
            out[k] = (struct addr_key){.kind = SNCP_ADDR_MAC};
            memcpy(out[k++].bytes, a[i].mac, 6);
        }
        if (t == SNCP_ADDR_IPV4 || t == SNCP_ADDR_IPV4_MAC) {
            out[k] = (struct addr_key){.kind = SNCP_ADDR_IPV4};
            memcpy(out[k++].bytes, a[i].ip, 4);
        } else if (t == SNCP_ADDR_IPV6 || t == SNCP_ADDR_IPV6_MAC) {
            out[k] = (struct addr_key){.kind = SNCP_ADDR_IPV6};
            memcpy(out[k++].bytes, a[i].ip, 16);
        }
    }
    return k;
}

static uint32_t owner_hash(const struct nnve_vap *vap, const struct addr_key *key)
{
    return nnve_hash_bytes(key, sizeof *key, vap->hash);
}

static const char *addr_key_str(const struct addr_key *key, char *buf, size_t cap)
{
    struct sncp_addr a = {.type = key->kind};
    if (key->kind == SNCP_ADDR_MAC)
        memcpy(a.mac, key->bytes, 6);
    else
        memcpy(a.ip, key->bytes, 16);
    sncp_addr_format(&a, buf, cap);
    return buf;
}

/* The entry of (vap, key) held by `id`; with `other`, one held by any TSI_ID but `id`. */
static struct addr_owner *owner_find(const struct nnve_state *st, const struct nnve_vap *vap,
                                     const struct addr_key *key, const struct sncp_tsi_id *id,
                                     int other)
{
    struct nnve_hmap_iter it;
    for (struct addr_owner *o = nnve_hmap_first(&st->addrs, owner_hash(vap, key), &it); o;
         o = nnve_hmap_next(&st->addrs, &it))
        if (o->vap == vap && !memcmp(&o->key, key, sizeof *key) &&
            tsi_id_eq(&o->owner, id) != other)
            return o;
    return NULL;
}

static void owners_del(struct nnve_state *st, const struct nnve_vap *vap,
                       const struct sncp_tsi_id *id, const struct addr_key *keys, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct addr_owner *o = owner_find(st, vap, &keys[i], id, 0);
        if (o && --o->refs == 0) {
            nnve_hmap_remove(&st->addrs, owner_hash(vap, &o->key), o);
            free(o);
        }
    }
}

/* Counts one more declaration of each key by `id`.  Returns 0, or -ENOMEM (unchanged). */
static int owners_add(struct nnve_state *st, const struct nnve_vap *vap,
                      const struct sncp_tsi_id *id, const struct addr_key *keys, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct addr_owner *o = owner_find(st, vap, &keys[i], id, 0);
        if (o) {
            o->refs++;
            continue;
        }
        o = calloc(1, sizeof *o);
        if (!o || nnve_hmap_insert(&st->addrs, owner_hash(vap, &keys[i]), o)) {
            free(o);
            owners_del(st, vap, id, keys, i);
            return -ENOMEM;
        }
        *o = (struct addr_owner){.vap = vap, .key = keys[i], .owner = *id, .refs = 1};
    }
    return 0;
}

/* The policy on the addresses hypervisor hv asks for TSI `id` in `vap` (NULL: a VAP that
 * does not exist yet): the TSI MAC and every address usable by a host (sncp_addr_check) and
 * none held by another TSI in the VAP.  Returns 0, SNCP_E_INVALID_VALUE or SNCP_E_CONFLICT
 * with res->error_tlv and res->reason; each refusal is logged (rate-limited). */
static int addrs_claim_check(struct nnve_state *st, struct nnve_hv *hv, const struct nnve_vap *vap,
                             const struct nnve_vn *vn, const struct sncp_tsi_id *id,
                             const struct sncp_addr *addrs, unsigned n, struct nnve_result *res)
{
    char tbuf[SNCP_TSI_ID_STRLEN], vbuf[80], abuf[SNCP_ADDR_STRLEN];
    const char *why = NULL;
    if (sncp_mac_check(id->mac, &why)) {
        res->error_tlv = SNCP_TLV_TSI_ID;
        res->reason = why;
        snv_log_rl2(&hv->rl, &st->rl, SNV_LOG_WARN, "policy",
                    "invalid TSI MAC refused hypervisor=%s tsi=%s vn=%s reason=\"%s\"",
                    hv->identity, tsi_str(id, tbuf, sizeof tbuf),
                    nnve_vn_format(vn, vbuf, sizeof vbuf), why);
        return SNCP_E_INVALID_VALUE;
    }
    for (unsigned i = 0; i < n; i++)
        if (sncp_addr_check(&addrs[i], &why)) {
            res->error_tlv = SNCP_TLV_ADDRESS;
            res->reason = why;
            sncp_addr_format(&addrs[i], abuf, sizeof abuf);
            snv_log_rl2(&hv->rl, &st->rl, SNV_LOG_WARN, "policy",
                        "invalid address refused hypervisor=%s tsi=%s vn=%s address=%s "
                        "reason=\"%s\"",
                        hv->identity, tsi_str(id, tbuf, sizeof tbuf),
                        nnve_vn_format(vn, vbuf, sizeof vbuf), abuf, why);
            return SNCP_E_INVALID_VALUE;
        }
    if (!vap || !nnve_hmap_count(&st->addrs))
        return 0;
    struct addr_key keys[ADDR_KEYS_MAX];
    unsigned nk = addr_keys(id, addrs, n, keys);
    for (unsigned i = 0; i < nk; i++) {
        const struct addr_owner *o = owner_find(st, vap, &keys[i], id, 1);
        if (!o)
            continue;
        char obuf[SNCP_TSI_ID_STRLEN];
        res->error_tlv = i == 0 ? SNCP_TLV_TSI_ID : SNCP_TLV_ADDRESS;
        res->reason = i == 0 ? "TSI MAC held by another TSI in this VN"
                             : "address held by another TSI in this VN";
        snv_log_rl2(&hv->rl, &st->rl, SNV_LOG_WARN, "policy",
                    "address conflict refused hypervisor=%s tsi=%s vn=%s domain=%s address=%s "
                    "owner=%s",
                    hv->identity, tsi_str(id, tbuf, sizeof tbuf),
                    nnve_vn_format(vn, vbuf, sizeof vbuf), vap->domain->name,
                    addr_key_str(&keys[i], abuf, sizeof abuf),
                    tsi_str(&o->owner, obuf, sizeof obuf));
        return SNCP_E_CONFLICT;
    }
    return 0;
}

static int addrs_set(struct nnve_tsi *t, const struct sncp_addr *a, unsigned n);

/* Replaces the address set of t, keeping the owner index in step.  Returns 0 or -ENOMEM
 * (unchanged). */
static int tsi_addrs_set(struct nnve_state *st, struct nnve_tsi *t, const struct sncp_addr *a,
                         unsigned n)
{
    struct addr_key old[ADDR_KEYS_MAX], keys[ADDR_KEYS_MAX];
    unsigned n_old = addr_keys(&t->id, t->addrs, t->n_addrs, old);
    unsigned nk = addr_keys(&t->id, a, n, keys);
    const struct nnve_vap *vap = t->vc->vap;
    if (owners_add(st, vap, &t->id, keys, nk))
        return -ENOMEM;
    if (addrs_set(t, a, n)) {
        owners_del(st, vap, &t->id, keys, nk);
        return -ENOMEM;
    }
    owners_del(st, vap, &t->id, old, n_old);
    return 0;
}

/* ---- TSI instances ---------------------------------------------------------------- */

static struct nnve_tsi *tsi_find(const struct nnve_state *st, const struct sncp_tsi_id *id,
                                 const struct nnve_hv *hv)
{
    struct nnve_hmap_iter it;
    for (struct nnve_tsi *t = nnve_hmap_first(&st->tsis, tsi_hash(id), &it); t;
         t = nnve_hmap_next(&st->tsis, &it))
        if (t->hv == hv && tsi_id_eq(&t->id, id))
            return t;
    return NULL;
}

/* Another instance of the same TSI_ID (at another hypervisor), or NULL. */
static struct nnve_tsi *tsi_other(const struct nnve_state *st, const struct sncp_tsi_id *id,
                                  const struct nnve_hv *hv)
{
    struct nnve_hmap_iter it;
    for (struct nnve_tsi *t = nnve_hmap_first(&st->tsis, tsi_hash(id), &it); t;
         t = nnve_hmap_next(&st->tsis, &it))
        if (t->hv != hv && tsi_id_eq(&t->id, id))
            return t;
    return NULL;
}

enum be_tsi_op { BE_ASSOCIATE, BE_ACTIVATE, BE_DEACTIVATE, BE_DEASSOCIATE, BE_UPDATE };

static void be_tsi(struct nnve_state *st, enum be_tsi_op op, const struct nnve_tsi *t);

/* After t's forwarding entries went (deactivated or removed): the other instance of its
 * TSI_ID, if Activated, is declared again so that every backend puts back the entries the
 * two shared (FDB of the TSI's MACs, neighbours), whatever it did with them (§9.3). */
static void twin_redeclare(struct nnve_state *st, const struct nnve_tsi *t)
{
    const struct nnve_tsi *o = tsi_other(st, &t->id, t->hv);
    if (o && o->state == SNCP_TSI_ACTIVATED)
        be_tsi(st, BE_ACTIVATE, o);
}

/* The store's migrating column: bit 0 migrating, bit 1 handover (activated by the nNVE at
 * the migration source's leave, until the instance's own TSI_ACTIVATE or DEACTIVATE). */
enum { STORED_MIGRATING = 1, STORED_HANDOVER = 2 };

static uint8_t tsi_stored_flags(const struct nnve_tsi *t)
{
    return (uint8_t)((t->migrating ? STORED_MIGRATING : 0) | (t->handover ? STORED_HANDOVER : 0));
}

static void tsi_persist(struct nnve_state *st, const struct nnve_tsi *t)
{
    if (!st->restoring)
        store_count(st, nnve_store_tsi_put(st->store, t->hv->identity, &t->vc->vap->vn, &t->id,
                                           t->state, tsi_stored_flags(t), t->addrs, t->n_addrs));
}

static void be_tsi(struct nnve_state *st, enum be_tsi_op op, const struct nnve_tsi *t)
{
    if (!st->be)
        return;
    const struct nnve_backend_class *c = st->be->cls;
    int (*fn)(struct nnve_backend *, const char *, uint16_t, const struct nnve_vn *,
              const struct sncp_tsi_id *, const struct sncp_addr *, unsigned) =
        op == BE_ASSOCIATE     ? c->tsi_associate
        : op == BE_ACTIVATE    ? c->tsi_activate
        : op == BE_DEACTIVATE  ? c->tsi_deactivate
        : op == BE_DEASSOCIATE ? c->tsi_deassociate
                               : c->tsi_update;
    const struct nnve_vap *vap = t->vc->vap;
    be_count(st, fn(st->be, t->hv->port->name, vap->tag, &vap->vn, &t->id, t->addrs, t->n_addrs));
}

static void tsi_count_state(struct nnve_state *st, uint8_t state, int delta)
{
    if (state == SNCP_TSI_ASSOCIATED)
        st->c.tsis_associated += (uint64_t)(int64_t)delta;
    else if (state == SNCP_TSI_ACTIVATED)
        st->c.tsis_activated += (uint64_t)(int64_t)delta;
}

static void tsi_set_state(struct nnve_state *st, struct nnve_tsi *t, uint8_t state)
{
    tsi_count_state(st, t->state, -1);
    t->state = state;
    tsi_count_state(st, state, 1);
    st->c.transitions++;
}

/* A line built piece by piece, cut at its end (the TSI audit lines, two per activation,
 * are built without printf). */
struct audit_line {
    char *p, *end;
};

static void al_str(struct audit_line *l, const char *s)
{
    while (*s && l->p < l->end)
        *l->p++ = *s++;
}

static void al_uint(struct audit_line *l, unsigned long v)
{
    char digits[24];
    int n = 0;
    do
        digits[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (n && l->p < l->end)
        *l->p++ = digits[--n];
}

static void tsi_log(const struct nnve_tsi *t, const char *what, const char *why)
{
    char tbuf[SNCP_TSI_ID_STRLEN], text[1024];
    const struct nnve_vap *vap = t->vc->vap;
    struct audit_line l = {text, text + sizeof text - 1};
    al_str(&l, what);
    al_str(&l, " tsi=");
    al_str(&l, tsi_str(&t->id, tbuf, sizeof tbuf));
    al_str(&l, " vn=");
    if (vap->vn.has_id)
        al_uint(&l, vap->vn.id);
    else
        al_str(&l, vap->vn.name);
    al_str(&l, " port=");
    al_str(&l, t->hv->port->name);
    al_str(&l, " tag=");
    al_uint(&l, vap->tag);
    al_str(&l, " hypervisor=");
    al_str(&l, t->hv->identity);
    al_str(&l, " addrs=");
    al_uint(&l, t->n_addrs);
    if (t->migrating)
        al_str(&l, " migrating=yes");
    if (why) {
        al_str(&l, " reason=");
        al_str(&l, why);
    }
    *l.p = '\0';
    snv_audit_text("tsi", text);
}

static int addrs_equal(const struct nnve_tsi *t, const struct sncp_addr *a, unsigned n)
{
    if (t->n_addrs != n)
        return 0;
    for (unsigned i = 0; i < n; i++)
        if (memcmp(&t->addrs[i], &a[i], sizeof *a))
            return 0;
    return 1;
}

static int addrs_set(struct nnve_tsi *t, const struct sncp_addr *a, unsigned n)
{
    struct sncp_addr *na = NULL;
    if (n) {
        na = malloc(n * sizeof *na);
        if (!na)
            return -ENOMEM;
        memcpy(na, a, n * sizeof *na);
    }
    free(t->addrs);
    t->addrs = na;
    t->n_addrs = (uint8_t)n;
    return 0;
}

static void tsi_free(struct nnve_tsi *t)
{
    free(t->addrs);
    free(t);
}

static struct nnve_tsi *tsi_create(struct nnve_state *st, struct nnve_hv *hv,
                                   struct nnve_vnconn *vc, const struct sncp_tsi_id *id,
                                   const struct sncp_addr *addrs, unsigned n)
{
    struct nnve_tsi *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->id = *id;
    t->hv = hv;
    t->vc = vc;
    t->state = SNCP_TSI_INIT;
    struct addr_key keys[ADDR_KEYS_MAX];
    unsigned nk = addr_keys(id, addrs, n, keys);
    if (addrs_set(t, addrs, n) || owners_add(st, vc->vap, id, keys, nk)) {
        tsi_free(t);
        return NULL;
    }
    if (nnve_hmap_insert(&st->tsis, tsi_hash(id), t)) {
        owners_del(st, vc->vap, id, keys, nk);
        tsi_free(t);
        return NULL;
    }
    t->next = hv->tsis;
    if (hv->tsis)
        hv->tsis->prev = t;
    hv->tsis = t;
    hv->n_tsis++;
    vc->n_tsis++;
    vc->vap->n_tsis++;
    return t;
}

/* Clears the migrating mark of the instances of t's TSI_ID once only one remains. */
static void migration_settle(struct nnve_state *st, const struct sncp_tsi_id *id)
{
    struct nnve_hmap_iter it;
    struct nnve_tsi *only = NULL;
    unsigned n = 0;
    for (struct nnve_tsi *t = nnve_hmap_first(&st->tsis, tsi_hash(id), &it); t;
         t = nnve_hmap_next(&st->tsis, &it))
        if (tsi_id_eq(&t->id, id)) {
            only = t;
            n++;
        }
    if (n == 1 && only->migrating) {
        only->migrating = 0;
        st->c.tsis_migrating--;
        tsi_persist(st, only);
        tsi_log(only, "migration-complete", NULL);
    }
}

/* Removes instance t (-> Init).  When t was the last TSI of an implicit VN connection, the
 * connection ends too ("last TSI gone", PROTOCOL.md §9.2): callers must not use t's VN
 * connection afterwards. */
static void tsi_remove(struct nnve_state *st, struct nnve_tsi *t, uint64_t now, const char *why)
{
    struct nnve_hv *hv = t->hv;
    struct nnve_vnconn *vc = t->vc;
    be_tsi(st, BE_DEASSOCIATE, t);
    twin_redeclare(st, t);
    tsi_log(t, "deassociated", why);
    store_count(st, nnve_store_tsi_del(st->store, hv->identity, &t->id));
    tsi_count_state(st, t->state, -1);
    st->c.transitions++;
    if (t->migrating)
        st->c.tsis_migrating--;
    if (t->prev)
        t->prev->next = t->next;
    else
        hv->tsis = t->next;
    if (t->next)
        t->next->prev = t->prev;
    hv->n_tsis--;
    t->vc->n_tsis--;
    t->vc->vap->n_tsis--;
    nnve_hmap_remove(&st->tsis, tsi_hash(&t->id), t);
    struct addr_key keys[ADDR_KEYS_MAX];
    owners_del(st, t->vc->vap, &t->id, keys, addr_keys(&t->id, t->addrs, t->n_addrs, keys));
    struct sncp_tsi_id id = t->id;
    int was_migrating = t->migrating;
    tsi_free(t);
    if (was_migrating)
        migration_settle(st, &id);
    if (vc->implicit && !vc->n_tsis && !vc->removing)
        vnconn_remove(st, vc, now, "last-tsi-gone");
}

/* ---- hypervisors ------------------------------------------------------------------ */

static uint32_t hv_hash(const char *identity)
{
    return nnve_hash_string(identity, 3);
}

struct nnve_hv *nnve_state_hv_find(const struct nnve_state *st, const char *identity)
{
    struct nnve_hmap_iter it;
    for (struct nnve_hv *hv = nnve_hmap_first(&st->hvs, hv_hash(identity), &it); hv;
         hv = nnve_hmap_next(&st->hvs, &it))
        if (!strcmp(hv->identity, identity))
            return hv;
    return NULL;
}

static struct nnve_hv *hv_create(struct nnve_state *st, const char *identity,
                                 struct nnve_port *port)
{
    struct nnve_hv *hv = calloc(1, sizeof *hv);
    if (!hv || !(hv->identity = strdup(identity)) ||
        nnve_hmap_insert(&st->hvs, hv_hash(identity), hv)) {
        if (hv)
            free(hv->identity);
        free(hv);
        return NULL;
    }
    hv->port = port;
    hv->hc = nnve_config_find_hv(st->cfg, identity);
    hv->rl = (struct snv_ratelimit)SNV_RATELIMIT_INIT(HV_LOG_RATE, HV_LOG_BURST);
    port->n_hvs++;
    st->c.hypervisors++;
    return hv;
}

static void hv_free(struct nnve_state *st, struct nnve_hv *hv)
{
    nnve_hmap_remove(&st->hvs, hv_hash(hv->identity), hv);
    hv->port->n_hvs--;
    port_maybe_free(st, hv->port);
    st->c.hypervisors--;
    free(hv->moved);
    free(hv->identity);
    free(hv);
}

/* Removes every TSI and VN connection of hv. */
static void hv_purge(struct nnve_state *st, struct nnve_hv *hv, uint64_t now, const char *why)
{
    while (hv->vnconns)
        vnconn_remove(st, hv->vnconns, now, why);
}

/* Frees hv when it has neither state nor session. */
static void hv_maybe_free(struct nnve_state *st, struct nnve_hv *hv)
{
    if (hv->session || hv->hold_until == 0 || hv->vnconns)
        return;
    store_count(st, nnve_store_hv_del(st->store, hv->identity));
    st->c.hypervisors_held--;
    hv_free(st, hv);
}

/* Moves hv to port np (same domain): its VNs and TSIs follow. */
static int hv_move(struct nnve_state *st, struct nnve_hv *hv, struct nnve_port *np, uint64_t now)
{
    struct nnve_port *op = hv->port;
    snv_audit("hypervisor", "port changed hypervisor=%s old_port=%s port=%s", hv->identity,
              op->name, np->name);
    if (op->domain != np->domain) {
        /* The tags belong to the old domain: the connections end here, and the agent is
         * told (nnve_state_hv_moved_notify) so that it connects again in the new one. */
        free(hv->moved);
        hv->n_moved = 0;
        hv->moved = hv->n_vnconns ? calloc(hv->n_vnconns, sizeof *hv->moved) : NULL;
        for (struct nnve_vnconn *vc = hv->vnconns; vc && hv->moved; vc = vc->next)
            hv->moved[hv->n_moved++] = vc->vap->vn;
        SNV_WARN("state",
                 "port moved to another domain: VN connections withdrawn hypervisor=%s "
                 "old_domain=%s domain=%s vns=%u tsis=%u",
                 hv->identity, op->domain->name, np->domain->name, hv->n_vnconns, hv->n_tsis);
        hv_purge(st, hv, now, "port-moved-domain");
    } else {
        for (struct nnve_tsi *t = hv->tsis; t; t = t->next)
            be_tsi(st, BE_DEASSOCIATE, t);
        for (struct nnve_vnconn *vc = hv->vnconns; vc; vc = vc->next)
            if (port_vn_ref(st, np, vc->vap, 1))
                return -ENOMEM;
    }
    op->n_hvs--;
    hv->port = np;
    np->n_hvs++;
    for (struct nnve_vnconn *vc = hv->vnconns; vc; vc = vc->next)
        port_vn_ref(st, op, vc->vap, -1);
    for (struct nnve_tsi *t = hv->tsis; t; t = t->next)
        be_tsi(st, t->state == SNCP_TSI_ACTIVATED ? BE_ACTIVATE : BE_ASSOCIATE, t);
    port_maybe_free(st, op);
    store_count(st, nnve_store_hv_put(st->store, hv->identity, np->name));
    return 0;
}

int nnve_state_hv_up(struct nnve_state *st, const char *identity, const char *port, uint64_t now,
                     struct nnve_hv **out)
{
    struct nnve_port *p = port_get(st, port);
    if (!p)
        return port_find(st, port) || nnve_config_port_domain(st->cfg, port)
                   ? -ENOMEM
                   : SNCP_E_NOT_AUTHORIZED;
    struct nnve_hv *hv = nnve_state_hv_find(st, identity);
    if (!hv) {
        hv = hv_create(st, identity, p);
        if (!hv) {
            port_maybe_free(st, p);
            return -ENOMEM;
        }
        store_count(st, nnve_store_hv_put(st->store, identity, port));
    } else {
        if (hv->hold_until) {
            st->c.hypervisors_held--;
            snv_audit("hypervisor", "hold cancelled hypervisor=%s tsis=%u", identity, hv->n_tsis);
        }
        hv->hold_until = 0;
        if (hv->port != p && hv_move(st, hv, p, now))
            return -ENOMEM;
    }
    hv->hold_until = 0;
    hv->syncing = 0;
    *out = hv;
    return 0;
}

void nnve_state_hv_down(struct nnve_state *st, struct nnve_hv *hv, uint64_t now)
{
    if (hv->hold_until)
        return;
    hv->session = NULL;
    hv->syncing = 0;
    hv->hold_until = now + st->cfg->hold_time_ms;
    if (hv->hold_until == 0)
        hv->hold_until = 1;
    st->c.hypervisors_held++;
    snv_audit("hypervisor",
              "session lost, holding state hypervisor=%s tsis=%u vns=%u "
              "hold_ms=%u",
              hv->identity, hv->n_tsis, hv->n_vnconns, st->cfg->hold_time_ms);
    if (!hv->vnconns)
        hv_maybe_free(st, hv);
}

struct nnve_hv *nnve_state_hv_next(const struct nnve_state *st, size_t *pos)
{
    return nnve_hmap_at(&st->hvs, pos);
}

const char *nnve_state_hv_identity(const struct nnve_hv *hv)
{
    return hv->identity;
}

const char *nnve_state_hv_port(const struct nnve_hv *hv)
{
    return hv->port->name;
}

unsigned nnve_state_hv_tsis(const struct nnve_hv *hv)
{
    return hv->n_tsis;
}

unsigned nnve_state_hv_vns(const struct nnve_hv *hv)
{
    return hv->n_vnconns;
}

uint64_t nnve_state_hv_hold_until(const struct nnve_hv *hv)
{
    return hv->hold_until;
}

void nnve_state_hv_set_session(struct nnve_hv *hv, void *session)
{
    hv->session = session;
}

void *nnve_state_hv_session(const struct nnve_hv *hv)
{
    return hv->session;
}

/* ---- requests --------------------------------------------------------------------- */

/* Whether hv may connect the VN `vn` (not connected yet): its VN connection limit, and its
 * share of the domain's tag pool when the connection needs a tag nobody else holds (a VAP
 * shared with other hypervisors costs the pool nothing).  Returns 0 or
 * SNCP_E_RESOURCE_LIMIT (logged). */
static int vnconn_admit(struct nnve_state *st, struct nnve_hv *hv, const struct nnve_vn *vn,
                        struct nnve_result *res)
{
    struct nnve_hv_limits l = hv_limits(st, hv);
    if (hv->n_vnconns >= l.vns)
        return limit_refuse(st, hv, "max_vns", l.vns, "VN connection limit of this hypervisor",
                            res);
    struct nnve_domain *d = hv->port->domain;
    const struct nnve_vap *vap = vap_find(st, d, vn);
    if (vap && vap->n_users > 0)
        return 0;
    unsigned max_tags = l.tags ? l.tags : (nnve_tagpool_size(d->pool) + 1) / 2;
    unsigned alone = 0;
    for (const struct nnve_vnconn *vc = hv->vnconns; vc; vc = vc->next)
        alone += vc->vap->n_users == 1;
    if (alone >= max_tags)
        return limit_refuse(st, hv, "max_tags", max_tags,
                            "tag share limit of this hypervisor in its domain", res);
    return 0;
}

static int req_vn_connect(struct nnve_state *st, struct nnve_hv *hv, const struct sncp_msg *req,
                          uint64_t now, struct nnve_result *res)
{
    struct nnve_vn vn;
    int r = vn_resolve_msg(st, hv, req, &vn, res);
    if (r || (r = vn_authorize(st, hv, &vn, req, res)))
        return r;
    struct nnve_vap *vap = vap_find(st, hv->port->domain, &vn);
    struct nnve_vnconn *vc = vap ? vnconn_find(hv, vap) : NULL;
    if (!vc) {
        if ((r = vnconn_admit(st, hv, &vn, res)))
            return r;
        r = vnconn_create(st, hv, &vn, req->preferred_tags, req->n_preferred_tags, 0, now, &vc);
        if (r) {
            if (r == SNCP_E_TAG_POOL_EXHAUSTED) {
                res->reason = "local tag pool exhausted";
                snv_log_rl2(&hv->rl, &st->rl, SNV_LOG_WARN, "vap",
                            "tag pool exhausted domain=%s "
                            "hypervisor=%s",
                            hv->port->domain->name, hv->identity);
            }
            return r;
        }
    }
    if (vc->implicit) {
        vc->implicit = 0;
        store_count(st, nnve_store_vn_connection_put(st->store, hv->identity, &vc->vap->vn, 0));
        char vbuf[80];
        snv_audit("vn", "connection made explicit hypervisor=%s vn=%s", hv->identity,
                  nnve_vn_format(&vc->vap->vn, vbuf, sizeof vbuf));
    }
    vc->unconfirmed = 0;
    result_vn(res, vc->vap);
    return 0;
}

static int req_vn_disconnect(struct nnve_state *st, struct nnve_hv *hv, const struct sncp_msg *req,
                             uint64_t now, struct nnve_result *res)
{
    struct nnve_vn vn;
    int r = vn_resolve_msg(st, hv, req, &vn, res);
    if (r)
        return r;
    struct nnve_vap *vap = vap_find(st, hv->port->domain, &vn);
    struct nnve_vnconn *vc = vap ? vnconn_find(hv, vap) : NULL;
    if (!vc) {
        res->reason = "VN not connected";
        return SNCP_E_NO_SUCH_VN;
    }
    res->has_vn = 1;
    res->vn = vap->vn;
    vnconn_remove(st, vc, now, "vn-disconnect");
    return 0;
}

/* A TSI has at most two instances: the source and the destination of a migration.
 * Returns 0, or SNCP_E_CONFLICT (logged) when `id` has two already. */
static int tsi_third_check(struct nnve_state *st, struct nnve_hv *hv, const struct nnve_vn *vn,
                           const struct sncp_tsi_id *id, struct nnve_result *res)
{
    unsigned n = 0;
    struct nnve_hmap_iter it;
    for (struct nnve_tsi *t = nnve_hmap_first(&st->tsis, tsi_hash(id), &it); t;
         t = nnve_hmap_next(&st->tsis, &it))
        n += tsi_id_eq(&t->id, id);
    if (n < 2)
        return 0;
    char tbuf[SNCP_TSI_ID_STRLEN], vbuf[80];
    snv_log_rl2(&hv->rl, &st->rl, SNV_LOG_WARN, "policy",
                "third TSI instance refused hypervisor=%s tsi=%s vn=%s instances=%u", hv->identity,
                tsi_str(id, tbuf, sizeof tbuf), nnve_vn_format(vn, vbuf, sizeof vbuf), n);
    res->error_tlv = SNCP_TLV_TSI_ID;
    res->reason = "TSI has two instances already (migration source and destination)";
    return SNCP_E_CONFLICT;
}

/* Copies addrs[0..n) to out without repeats (first occurrence kept, order kept): a repeated
 * ADDRESS counts once against the limits and in the owner index.  Returns the count. */
static unsigned addrs_unique(const struct sncp_addr *addrs, unsigned n, struct sncp_addr *out)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n && i < SNCP_MAX_ADDRS; i++) {
        int seen = 0;
        for (unsigned j = 0; j < k && !seen; j++)
            seen = !memcmp(&out[j], &addrs[i], sizeof *out);
        if (!seen)
            out[k++] = addrs[i];
    }
    return k;
}

/* TSI_ASSOCIATE and TSI_ACTIVATE.  Guards in the order of PROTOCOL.md §9.3: VN ok
 * (resolves, granted, connected or IMPLICIT_CONNECT with the connection limits), VN match
 * and state, other instance, limits, addresses; all before anything changes, except that
 * the tag of an implicit connection is allocated last (TAG_POOL_EXHAUSTED). */
static int req_tsi_attach(struct nnve_state *st, struct nnve_hv *hv, const struct sncp_msg *req,
                          uint64_t now, struct nnve_result *res)
{
    int activate = req->type == SNCP_MSG_TSI_ACTIVATE;
    struct nnve_vn vn;
    int r = vn_resolve_msg(st, hv, req, &vn, res);
    if (r || (r = vn_authorize(st, hv, &vn, req, res)))
        return r;
    struct nnve_vap *vap = vap_find(st, hv->port->domain, &vn);
    struct nnve_vnconn *vc = vap ? vnconn_find(hv, vap) : NULL;
    if (!vc) {
        if (!(req->flags & SNCP_F_IMPLICIT_CONNECT)) {
            res->error_tlv = vn.has_id ? SNCP_TLV_VN_ID : SNCP_TLV_VN_NAME;
            res->reason = "VN not connected (no IMPLICIT_CONNECT)";
            return SNCP_E_NO_SUCH_VN;
        }
        if ((r = vnconn_admit(st, hv, &vn, res)))
            return r;
    }
    struct nnve_tsi *t = tsi_find(st, &req->tsi, hv);
    int migration_dest = (req->flags & SNCP_F_MIGRATION) && !(req->flags & SNCP_F_MIGRATION_SOURCE);

    if (t) {
        if (t->vc != vc) {
            res->error_tlv = SNCP_TLV_VN_ID;
            res->reason = "TSI is in another VN";
            return SNCP_E_CONFLICT;
        }
        if (!activate && t->state == SNCP_TSI_ACTIVATED && !t->handover) {
            res->reason = "TSI is activated: deactivate first";
            return SNCP_E_INVALID_STATE;
        }
    } else {
        struct nnve_tsi *other = tsi_other(st, &req->tsi, hv);
        if (other && !migration_dest) {
            res->error_tlv = SNCP_TLV_TSI_ID;
            res->reason = "TSI exists at another hypervisor (no migration flag)";
            return SNCP_E_CONFLICT;
        }
        if (other && (r = tsi_third_check(st, hv, &vn, &req->tsi, res)))
            return r;
        char key[80];
        vn_key(&vn, key, sizeof key);
        if (other && strcmp(other->vc->vap->key, key)) {
            res->error_tlv = SNCP_TLV_VN_ID;
            res->reason = "TSI is in another VN at its other hypervisor";
            return SNCP_E_CONFLICT;
        }
    }
    struct nnve_hv_limits lim = hv_limits(st, hv);
    struct sncp_addr addrs[SNCP_MAX_ADDRS];
    unsigned n_addrs = addrs_unique(req->addrs, req->n_addrs, addrs);
    if (n_addrs > lim.addrs_per_tsi) {
        res->error_tlv = SNCP_TLV_ADDRESS;
        return limit_refuse(st, hv, "max_addrs_per_tsi", lim.addrs_per_tsi,
                            "too many addresses for one TSI", res);
    }
    if (!t && hv->n_tsis >= lim.tsis)
        return limit_refuse(st, hv, "max_tsis", lim.tsis, "TSI limit of this hypervisor reached",
                            res);
    if ((!t || n_addrs) &&
        (r = addrs_claim_check(st, hv, vap, &vn, &req->tsi, addrs, n_addrs, res)))
        return r;
    if (!vc) {
        r = vnconn_create(st, hv, &vn, req->preferred_tags, req->n_preferred_tags, 1, now, &vc);
        if (r) {
            if (r == SNCP_E_TAG_POOL_EXHAUSTED)
                res->reason = "local tag pool exhausted";
            return r;
        }
        res->flags |= SNCP_F_IMPLICIT_CONNECT;
    }
    vc->unconfirmed = 0;

    int changed = 0;
    if (!t) {
        t = tsi_create(st, hv, vc, &req->tsi, addrs, n_addrs);
        if (!t)
            return -ENOMEM;
        struct nnve_tsi *other = tsi_other(st, &req->tsi, hv);
        if (other) {
            t->migrating = 1;
            st->c.tsis_migrating++;
            if (!other->migrating) {
                other->migrating = 1;
                st->c.tsis_migrating++;
                tsi_persist(st, other);
                tsi_log(other, "migrating-away", NULL);
            }
        }
        tsi_set_state(st, t, SNCP_TSI_ASSOCIATED);
        be_tsi(st, BE_ASSOCIATE, t);
        tsi_log(t, "associated", NULL);
        changed = 1;
    } else if (n_addrs && !addrs_equal(t, addrs, n_addrs)) {
        if (tsi_addrs_set(st, t, addrs, n_addrs))
            return -ENOMEM;
        be_tsi(st, t->state == SNCP_TSI_ACTIVATED ? BE_UPDATE : BE_ASSOCIATE, t);
        tsi_log(t, "addresses-replaced", NULL);
        changed = 1;
    }
    if (activate && t->handover) {
        t->handover = 0;
        changed = 1;
    }
    if (activate && t->state != SNCP_TSI_ACTIVATED) {
        tsi_set_state(st, t, SNCP_TSI_ACTIVATED);
        be_tsi(st, BE_ACTIVATE, t);
        tsi_log(t, "activated", NULL);
        changed = 1;
    }
    t->unconfirmed = 0;
    if (changed)
        tsi_persist(st, t);
    result_vn(res, vc->vap);
    res->has_tsi_state = 1;
    res->tsi_state = t->state;
    return 0;
}

/* The instance a TSI request of hv is about: only hv's own (TSI_ID x identity), and
 * authorized against the VN the instance is in (a VN_ID or VN_NAME the peer adds is not
 * looked at).  `changes` says whether the request adds to what the instance holds
 * (TSI_UPDATE): that needs the VN granted now; DEACTIVATE and DEASSOCIATE only take away
 * and are allowed on every own instance.  Returns 0 and *out, SNCP_E_NO_SUCH_TSI or
 * SNCP_E_NOT_AUTHORIZED. */
static int tsi_lookup_req(struct nnve_state *st, struct nnve_hv *hv, const struct sncp_msg *req,
                          int changes, struct nnve_result *res, struct nnve_tsi **out)
{
    struct nnve_tsi *t = tsi_find(st, &req->tsi, hv);
    if (!t) {
        res->error_tlv = SNCP_TLV_TSI_ID;
        res->reason = "no such TSI at this hypervisor";
        return SNCP_E_NO_SUCH_TSI;
    }
    if (changes) {
        int r = vn_authorize(st, hv, &t->vc->vap->vn, req, res);
        if (r) {
            res->error_tlv = SNCP_TLV_TSI_ID;
            res->has_tsi_state = 1;
            res->tsi_state = t->state;
            return r;
        }
    }
    *out = t;
    return 0;
}

/* RFC 8394 §3.3: the source leaves Activated only after the destination is Activated.  When
 * the migration source (MIGRATION|MIGRATION_SOURCE) deactivates or de-associates its
 * Activated instance while the destination's is still Associated, the VM runs (or is about
 * to run) at the destination: the nNVE activates the destination's instance first. */
static void migration_handover(struct nnve_state *st, const struct nnve_tsi *src,
                               const struct sncp_msg *req)
{
    const uint16_t f = SNCP_F_MIGRATION | SNCP_F_MIGRATION_SOURCE;
    if ((req->flags & f) != f || src->state != SNCP_TSI_ACTIVATED)
        return;
    struct nnve_tsi *dst = tsi_other(st, &src->id, src->hv);
    if (!dst || dst->state != SNCP_TSI_ASSOCIATED)
        return;
    tsi_set_state(st, dst, SNCP_TSI_ACTIVATED);
    dst->handover = 1;
    be_tsi(st, BE_ACTIVATE, dst);
    tsi_log(dst, "activated", "migration-handover");
    tsi_persist(st, dst);
}

/* Activated -> Associated (the caller persists and logs). */
static void tsi_deactivate(struct nnve_state *st, struct nnve_tsi *t)
{
    tsi_set_state(st, t, SNCP_TSI_ASSOCIATED);
    t->handover = 0;
    be_tsi(st, BE_DEACTIVATE, t);
    twin_redeclare(st, t);
}

static int addr_index(const struct sncp_addr *a, unsigned n, const struct sncp_addr *x);

/* Req-8/Req-9 for some addresses (TSI_DEACTIVATE with ADDRESS, §6.7): the listed addresses
 * leave t's set, and with them their FDB, neighbour and anti-spoofing entries (the backend's
 * update removes only what the new set lacks); t's state does not change.  Addresses t does
 * not hold are ignored.  Returns 0 or -ENOMEM (unchanged). */
static int tsi_withdraw_addrs(struct nnve_state *st, struct nnve_tsi *t,
                              const struct sncp_addr *addrs, unsigned n, const char *why)
{
    struct sncp_addr keep[SNCP_MAX_ADDRS];
    unsigned nk = 0;
    for (unsigned i = 0; i < t->n_addrs; i++)
        if (addr_index(addrs, n, &t->addrs[i]) < 0)
            keep[nk++] = t->addrs[i];
    if (nk == t->n_addrs)
        return 0;
    if (tsi_addrs_set(st, t, keep, nk))
        return -ENOMEM;
    be_tsi(st, BE_UPDATE, t);
    tsi_log(t, "addresses-withdrawn", why);
    tsi_persist(st, t);
    return 0;
}

static int req_tsi_deactivate(struct nnve_state *st, struct nnve_hv *hv, const struct sncp_msg *req,
                              struct nnve_result *res)
{
    struct nnve_tsi *t;
    int r = tsi_lookup_req(st, hv, req, 0, res, &t);
    if (r)
        return r;
    if (req->n_addrs) {
        if (tsi_withdraw_addrs(st, t, req->addrs, req->n_addrs, NULL))
            return -ENOMEM;
    } else if (t->state == SNCP_TSI_ACTIVATED) {
        migration_handover(st, t, req);
        tsi_deactivate(st, t);
        tsi_log(t, "deactivated", NULL);
        tsi_persist(st, t);
    }
    t->unconfirmed = 0;
    result_vn(res, t->vc->vap);
    res->has_tsi_state = 1;
    res->tsi_state = t->state;
    return 0;
}

static int req_tsi_deassociate(struct nnve_state *st, struct nnve_hv *hv,
                               const struct sncp_msg *req, uint64_t now, struct nnve_result *res)
{
    struct nnve_tsi *t;
    int r = tsi_lookup_req(st, hv, req, 0, res, &t);
    if (r)
        return r;
    result_vn(res, t->vc->vap);
    migration_handover(st, t, req);
    tsi_remove(st, t, now, (req->flags & SNCP_F_MIGRATION) ? "migrated" : NULL);
    res->has_tsi_state = 1;
    res->tsi_state = SNCP_TSI_INIT;
    return 0;
}

static int addr_index(const struct sncp_addr *a, unsigned n, const struct sncp_addr *x)
{
    for (unsigned i = 0; i < n; i++)
        if (!memcmp(&a[i], x, sizeof *x))
            return (int)i;
    return -1;
}

/* The address set that TSI_UPDATE `op` with addrs[0..n) makes of t's, in next[] (room for
 * 2 * SNCP_MAX_ADDRS), checked against t's hypervisor's limit and the addresses other TSIs
 * hold.  Changes nothing.  Returns 0 and *n_next, or SNCP_E_INVALID_VALUE (unknown op, or
 * an address no host may use), SNCP_E_RESOURCE_LIMIT or SNCP_E_CONFLICT, with res filled
 * (logged). */
static int update_check(struct nnve_state *st, const struct nnve_tsi *t, uint8_t op,
                        const struct sncp_addr *addrs, unsigned n, struct sncp_addr *next,
                        unsigned *n_next, struct nnve_result *res)
{
    unsigned k = 0;
    switch (op) {
    case SNCP_UPDATE_ADD:
        if (t->n_addrs) /* t->addrs is NULL without addresses */
            memcpy(next, t->addrs, t->n_addrs * sizeof *next);
        k = t->n_addrs;
        for (unsigned i = 0; i < n; i++)
            if (addr_index(next, k, &addrs[i]) < 0)
                next[k++] = addrs[i];
        break;
    case SNCP_UPDATE_REMOVE:
        for (unsigned i = 0; i < t->n_addrs; i++)
            if (addr_index(addrs, n, &t->addrs[i]) < 0)
                next[k++] = t->addrs[i];
        break;
    case SNCP_UPDATE_REPLACE:
        k = addrs_unique(addrs, n, next);
        break;
    default:
        res->error_tlv = SNCP_TLV_UPDATE_OP;
        res->reason = "unknown UPDATE_OP";
        return SNCP_E_INVALID_VALUE;
    }
    unsigned max_addrs = hv_limits(st, t->hv).addrs_per_tsi;
    if (k > max_addrs || k > SNCP_MAX_ADDRS) {
        res->error_tlv = SNCP_TLV_ADDRESS;
        return limit_refuse(st, t->hv, "max_addrs_per_tsi", max_addrs,
                            "too many addresses for one TSI", res);
    }
    int r = op == SNCP_UPDATE_REMOVE
                ? 0
                : addrs_claim_check(st, t->hv, t->vc->vap, &t->vc->vap->vn, &t->id, addrs, n, res);
    *n_next = k;
    return r;
}

/* Makes next[0..n) t's address set; the dataplane follows.  Returns 0 or -ENOMEM. */
static int update_apply(struct nnve_state *st, struct nnve_tsi *t, const struct sncp_addr *next,
                        unsigned n, const char *why)
{
    if (addrs_equal(t, next, n))
        return 0;
    if (tsi_addrs_set(st, t, next, n))
        return -ENOMEM;
    be_tsi(st, BE_UPDATE, t);
    tsi_log(t, "addresses-updated", why);
    tsi_persist(st, t);
    return 0;
}

static int req_tsi_update(struct nnve_state *st, struct nnve_hv *hv, const struct sncp_msg *req,
                          struct nnve_result *res)
{
    struct nnve_tsi *t;
    int r = tsi_lookup_req(st, hv, req, 1, res, &t);
    if (r)
        return r;
    if (!sncp_msg_has(req, SNCP_TLV_UPDATE_OP)) {
        res->error_tlv = SNCP_TLV_UPDATE_OP;
        return SNCP_E_MISSING_TLV;
    }
    struct sncp_addr next[SNCP_MAX_ADDRS * 2];
    unsigned n;
    r = update_check(st, t, req->update_op, req->addrs, req->n_addrs, next, &n, res);
    if (r || (r = update_apply(st, t, next, n, NULL)))
        return r;
    result_vn(res, t->vc->vap);
    res->has_tsi_state = 1;
    res->tsi_state = t->state;
    return 0;
}

static void sync_begin(struct nnve_state *st, struct nnve_hv *hv)
{
    (void)st;
    hv->syncing = 1;
    for (struct nnve_vnconn *vc = hv->vnconns; vc; vc = vc->next)
        vc->unconfirmed = 1;
    for (struct nnve_tsi *t = hv->tsis; t; t = t->next)
        t->unconfirmed = 1;
    snv_audit("sync", "begin hypervisor=%s tsis=%u vns=%u", hv->identity, hv->n_tsis,
              hv->n_vnconns);
}

static void sync_end(struct nnve_state *st, struct nnve_hv *hv, uint64_t now)
{
    unsigned swept_tsis = 0, swept_vns = 0;
    if (hv->syncing) {
        for (struct nnve_tsi *t = hv->tsis, *next; t; t = next) {
            next = t->next;
            if (t->unconfirmed) {
                tsi_remove(st, t, now, "sync-sweep");
                swept_tsis++;
            }
        }
        for (struct nnve_vnconn *vc = hv->vnconns, *next; vc; vc = next) {
            next = vc->next;
            if (vc->unconfirmed) {
                vnconn_remove(st, vc, now, "sync-sweep");
                swept_vns++;
            }
        }
    }
    hv->syncing = 0;
    st->c.sync_swept_tsis += swept_tsis;
    st->c.sync_swept_vns += swept_vns;
    snv_audit("sync", "end hypervisor=%s tsis=%u vns=%u swept_tsis=%u swept_vns=%u", hv->identity,
              hv->n_tsis, hv->n_vnconns, swept_tsis, swept_vns);
}

static int state_request(struct nnve_state *st, struct nnve_hv *hv, const struct sncp_msg *req,
                         uint64_t now, struct nnve_result *res)
{
    switch (req->type) {
    case SNCP_MSG_VN_CONNECT:
        return req_vn_connect(st, hv, req, now, res);
    case SNCP_MSG_VN_DISCONNECT:
        return req_vn_disconnect(st, hv, req, now, res);
    case SNCP_MSG_TSI_ASSOCIATE:
    case SNCP_MSG_TSI_ACTIVATE:
        return req_tsi_attach(st, hv, req, now, res);
    case SNCP_MSG_TSI_DEACTIVATE:
        return req_tsi_deactivate(st, hv, req, res);
    case SNCP_MSG_TSI_DEASSOCIATE:
        return req_tsi_deassociate(st, hv, req, now, res);
    case SNCP_MSG_TSI_UPDATE:
        return req_tsi_update(st, hv, req, res);
    case SNCP_MSG_SYNC_BEGIN:
        sync_begin(st, hv);
        return 0;
    case SNCP_MSG_SYNC_END:
        if (!hv->syncing) {
            res->reason = "SYNC_END without SYNC_BEGIN";
            return SNCP_E_UNEXPECTED_MESSAGE;
        }
        sync_end(st, hv, now);
        return 0;
    default:
        res->reason = "message not allowed here";
        return SNCP_E_UNEXPECTED_MESSAGE;
    }
}

int nnve_state_request(struct nnve_state *st, struct nnve_hv *hv, const struct sncp_msg *req,
                       uint64_t now, struct nnve_result *res)
{
    memset(res, 0, sizeof *res);
    if (st->degraded) {
        res->reason = "degraded: the switch cannot store or program its state; nothing changed";
        return SNCP_E_INTERNAL;
    }
    if (st->failed) {
        res->reason = "dataplane or store failure in this batch; nothing changed";
        return SNCP_E_INTERNAL;
    }
    st->retry_after_ms = 0;
    int r = state_request(st, hv, req, now, res);
    if (r == SNCP_E_BUSY && st->retry_after_ms) {
        res->retry_after_ms = st->retry_after_ms;
        res->busy_vn = st->busy_vn;
        res->reason = "the VN's tag is being agreed with the ToR pair peer";
    }
    if ((r == SNCP_E_INVALID_STATE || r == SNCP_E_CONFLICT) && !res->has_tsi_state &&
        sncp_msg_has(req, SNCP_TLV_TSI_ID)) {
        /* A failure about an existing instance tells its state (PROTOCOL.md §6.5). */
        const struct nnve_tsi *t = tsi_find(st, &req->tsi, hv);
        if (t) {
            res->has_tsi_state = 1;
            res->tsi_state = t->state;
        }
    }
    if (st->failed) {
        /* Undone with the whole group by nnve_state_commit() before any response leaves. */
        memset(res, 0, sizeof *res);
        res->reason = (st->failed & FAIL_STORE) ? "the switch could not store the change; "
                                                  "nothing changed"
                                                : "the switch could not program its dataplane; "
                                                  "nothing changed";
        return SNCP_E_INTERNAL;
    }
    return r;
}

/* ---- timers ----------------------------------------------------------------------- */

uint64_t nnve_state_tick(struct nnve_state *st, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    struct nnve_hv *hv;
    for (size_t i = 0; (hv = nnve_hmap_at(&st->hvs, &i)) != NULL;) {
        if (!hv->hold_until)
            continue;
        if (hv->hold_until <= now) {
            snv_audit("hypervisor",
                      "hold timer expired, removing state hypervisor=%s tsis=%u "
                      "vns=%u",
                      hv->identity, hv->n_tsis, hv->n_vnconns);
            st->c.hold_expired++;
            hv_purge(st, hv, now, "hold-expired");
            hv_maybe_free(st, hv);
            i = 0; /* the table changed: restart (expired ones are gone) */
            continue;
        }
        if (hv->hold_until < next)
            next = hv->hold_until;
    }
    struct nnve_vap *v;
    for (size_t i = 0; (v = nnve_hmap_at(&st->vaps, &i)) != NULL;) {
        if (v->n_users || !v->linger_until)
            continue;
        if (v->linger_until <= now) {
            store_count(st, nnve_store_vap_del(st->store, v->domain->name, &v->vn));
            store_count(st, nnve_store_vap_hold_del(st->store, v->domain->name, &v->vn));
            const struct nnve_tag_policy *tp = st->tag_policy;
            if (tp && !strcmp(tp->domain, v->domain->name))
                tp->release(tp->aux, &v->vn, v->tag);
            vap_free(st, v);
            i = 0;
            continue;
        }
        if (v->linger_until < next)
            next = v->linger_until;
    }
    return next;
}

void nnve_state_foreach_vap(const struct nnve_state *st, const char *domain,
                            void (*fn)(void *aux, const struct nnve_vn *vn, uint16_t tag),
                            void *aux)
{
    struct nnve_vap *v;
    for (size_t i = 0; (v = nnve_hmap_at(&st->vaps, &i)) != NULL;)
        if (!strcmp(v->domain->name, domain))
            fn(aux, &v->vn, v->tag);
}

void nnve_state_set_tag_policy(struct nnve_state *st, const struct nnve_tag_policy *p)
{
    st->tag_policy = p;
}

/* ---- operator actions ------------------------------------------------------------- */

static void vn_disconnect_msg(struct sncp_msg *msg, const struct nnve_vn *vn)
{
    sncp_msg_init(msg, SNCP_MSG_VN_DISCONNECT, 0);
    if (vn->has_id) {
        msg->vn_id = vn->id;
        sncp_msg_set(msg, SNCP_TLV_VN_ID);
    }
    if (vn->name[0]) {
        snprintf(msg->vn_name, sizeof msg->vn_name, "%s", vn->name);
        sncp_msg_set(msg, SNCP_TLV_VN_NAME);
    }
}

/* Withdraws from hv what the configuration no longer grants it: every VN connection (with
 * its TSIs) when its identity is gone or its port is no longer where the configuration
 * puts it (another configured port, or a port in no domain or in another domain), else
 * each VN connection to a VN it is not granted.  Each withdrawal is an operator VN
 * disconnect (Req-6): notify() is called with the VN_DISCONNECT when hv has a session.
 * Returns the number of VN connections removed. */
static unsigned hv_enforce(struct nnve_state *st, struct nnve_hv *hv, uint64_t now,
                           nnve_state_notify_fn *notify, void *aux)
{
    const struct nnve_hv_cfg *hc = hv->hc;
    const struct nnve_domain_cfg *dc = nnve_config_port_domain(st->cfg, hv->port->name);
    const char *why = !hc ? "identity-withdrawn"
                      : (hc->port && strcmp(hc->port, hv->port->name)) || !dc ||
                              strcmp(dc->name, hv->port->domain->name)
                          ? "port-withdrawn"
                          : NULL;
    unsigned n = 0;
    for (struct nnve_vnconn *vc = hv->vnconns, *next; vc; vc = next) {
        next = vc->next;
        if (!why && vn_granted(hv, &vc->vap->vn))
            continue;
        struct sncp_msg msg;
        char vbuf[80];
        vn_disconnect_msg(&msg, &vc->vap->vn);
        SNV_WARN("policy", "withdrawn hypervisor=%s vn=%s port=%s tsis=%u reason=%s", hv->identity,
                 nnve_vn_format(&vc->vap->vn, vbuf, sizeof vbuf), hv->port->name, vc->n_tsis,
                 why ? why : "vn-withdrawn");
        vnconn_remove(st, vc, now, why ? why : "vn-withdrawn");
        n++;
        if (notify && hv->session)
            notify(aux, hv, &msg);
    }
    return n;
}

int nnve_state_enforce(struct nnve_state *st, uint64_t now, nnve_state_notify_fn *notify, void *aux)
{
    unsigned n = 0;
    struct nnve_hv *hv;
    for (size_t i = 0; (hv = nnve_hmap_at(&st->hvs, &i)) != NULL;) {
        n += hv_enforce(st, hv, now, notify, aux);
        if (hv->hold_until && !hv->vnconns && !hv->session) {
            hv_maybe_free(st, hv);
            i = 0; /* the table changed: restart (freed ones are gone) */
        }
    }
    /* A port moved to another domain carries no VN now (withdrawn above): its new VNs take
     * their tags from the new domain. */
    struct nnve_port *p;
    for (size_t i = 0; (p = nnve_hmap_at(&st->ports, &i)) != NULL;) {
        const struct nnve_domain_cfg *dc = nnve_config_port_domain(st->cfg, p->name);
        struct nnve_domain *d = dc ? domain_find(st, dc->name) : NULL;
        if (d && d != p->domain && !p->n_vns) {
            SNV_INFO("policy", "port moved port=%s old_domain=%s domain=%s", p->name,
                     p->domain->name, d->name);
            p->domain = d;
        }
    }
    return (int)n;
}

unsigned nnve_state_hv_moved_notify(struct nnve_state *st, struct nnve_hv *hv,
                                    nnve_state_notify_fn *notify, void *aux)
{
    (void)st;
    unsigned n = hv->n_moved;
    for (unsigned i = 0; i < n && hv->session && notify; i++) {
        struct sncp_msg msg;
        vn_disconnect_msg(&msg, &hv->moved[i]);
        notify(aux, hv, &msg);
    }
    free(hv->moved);
    hv->moved = NULL;
    hv->n_moved = 0;
    return n;
}

int nnve_state_op_vn_disconnect(struct nnve_state *st, const char *identity, const char *vn_s,
                                uint64_t now, nnve_state_notify_fn *notify, void *aux)
{
    struct nnve_hv *hv = nnve_state_hv_find(st, identity);
    if (!hv || (!hv->session && !hv->hold_until))
        return -ENOENT;
    char *end;
    unsigned long id = strtoul(vn_s, &end, 10);
    int numeric = *vn_s && !*end;
    struct nnve_result res;
    struct nnve_vn vn;
    memset(&res, 0, sizeof res);
    if (vn_resolve(st->cfg, numeric, (uint32_t)id, numeric ? NULL : vn_s, &vn, &res))
        return SNCP_E_INVALID_VALUE;
    struct nnve_vap *vap = vap_find(st, hv->port->domain, &vn);
    struct nnve_vnconn *vc = vap ? vnconn_find(hv, vap) : NULL;
    if (!vc)
        return -ENOENT;
    struct sncp_msg msg;
    vn_disconnect_msg(&msg, &vap->vn);
    vnconn_remove(st, vc, now, "operator");
    if (!hv->session) {
        /* Held: nobody to tell now; the agent resynchronises when it is back. */
        hv_maybe_free(st, hv);
        return 0;
    }
    notify(aux, hv, &msg);
    return 1;
}

/* An operator command's TSI and addresses, as text, and the instances of that TSI (at most
 * `cap`).  Returns the number of instances (> 0), SNCP_E_INVALID_VALUE or -ENOENT. */
static int op_tsi_parse(struct nnve_state *st, const char *tsi_s, const char *const *addr_s,
                        int n_addr_s, struct sncp_tsi_id *id, struct sncp_addr *addrs,
                        struct nnve_tsi **found, unsigned cap)
{
    if (sncp_tsi_id_parse(tsi_s, id) || n_addr_s > SNCP_MAX_ADDRS)
        return SNCP_E_INVALID_VALUE;
    for (int i = 0; i < n_addr_s; i++)
        if (sncp_addr_parse(addr_s[i], &addrs[i]))
            return SNCP_E_INVALID_VALUE;
    unsigned n_found = 0;
    struct nnve_hmap_iter it;
    for (struct nnve_tsi *t = nnve_hmap_first(&st->tsis, tsi_hash(id), &it); t;
         t = nnve_hmap_next(&st->tsis, &it))
        if (tsi_id_eq(&t->id, id) && n_found < cap)
            found[n_found++] = t;
    return n_found ? (int)n_found : -ENOENT;
}

int nnve_state_op_tsi_update(struct nnve_state *st, const char *tsi_s, const char *op_s,
                             const char *const *addr_s, int n_addr_s, nnve_state_notify_fn *notify,
                             void *aux, const char **reason)
{
    static const char *const ops[] = {[SNCP_UPDATE_ADD] = "add",
                                      [SNCP_UPDATE_REMOVE] = "remove",
                                      [SNCP_UPDATE_REPLACE] = "replace"};
    uint8_t op = 0;
    for (uint8_t i = 1; i < sizeof ops / sizeof ops[0]; i++)
        if (ops[i] && !strcmp(op_s, ops[i]))
            op = i;
    struct sncp_tsi_id id;
    struct sncp_addr addrs[SNCP_MAX_ADDRS];
    struct nnve_tsi *found[8];
    int n_found =
        op ? op_tsi_parse(st, tsi_s, addr_s, n_addr_s, &id, addrs, found, 8) : SNCP_E_INVALID_VALUE;
    if (n_found < 0)
        return n_found;
    /* every instance is checked before any changes: a refused update changes nothing */
    struct sncp_addr next[8][SNCP_MAX_ADDRS * 2];
    unsigned n_next[8];
    for (int k = 0; k < n_found; k++) {
        struct nnve_result res = {0};
        int r =
            update_check(st, found[k], op, addrs, (unsigned)n_addr_s, next[k], &n_next[k], &res);
        if (r) {
            *reason = res.reason;
            return r;
        }
    }
    int n_notified = 0;
    for (int k = 0; k < n_found; k++) {
        struct nnve_tsi *t = found[k];
        if (update_apply(st, t, next[k], n_next[k], "operator"))
            return -ENOMEM;
        if (!t->hv->session) /* a held hypervisor learns it when it resynchronises */
            continue;
        struct sncp_msg msg;
        sncp_msg_init(&msg, SNCP_MSG_TSI_UPDATE, 0);
        msg.tsi = id;
        sncp_msg_set(&msg, SNCP_TLV_TSI_ID);
        msg.update_op = op;
        sncp_msg_set(&msg, SNCP_TLV_UPDATE_OP);
        memcpy(msg.addrs, addrs, (size_t)n_addr_s * sizeof *addrs);
        msg.n_addrs = (uint8_t)n_addr_s;
        notify(aux, t->hv, &msg);
        n_notified++;
    }
    return n_notified;
}

int nnve_state_op_tsi(struct nnve_state *st, enum sncp_msg_type type, const char *tsi_s,
                      const char *const *addr_s, int n_addr_s, uint64_t now,
                      nnve_state_notify_fn *notify, void *aux)
{
    struct sncp_tsi_id id;
    struct sncp_addr addrs[SNCP_MAX_ADDRS];
    struct nnve_tsi *found[8];
    if (type == SNCP_MSG_TSI_DEASSOCIATE && n_addr_s > 0)
        return SNCP_E_INVALID_VALUE;
    int r = op_tsi_parse(st, tsi_s, addr_s, n_addr_s, &id, addrs, found, 8);
    if (r < 0)
        return r;
    unsigned n_found = (unsigned)r;
    int n_notified = 0;
    for (unsigned k = 0; k < n_found; k++) {
        struct nnve_tsi *t = found[k];
        struct nnve_hv *hv = t->hv;
        struct sncp_msg msg;
        sncp_msg_init(&msg, type, 0);
        msg.tsi = id;
        sncp_msg_set(&msg, SNCP_TLV_TSI_ID);
        int has_session = hv->session != NULL;
        if (type == SNCP_MSG_TSI_DEASSOCIATE) {
            tsi_remove(st, t, now, "operator");
            if (!has_session) /* its last implicit VN connection may have ended */
                hv_maybe_free(st, hv);
        } else if (n_addr_s > 0) {
            tsi_withdraw_addrs(st, t, addrs, (unsigned)n_addr_s, "operator");
            memcpy(msg.addrs, addrs, (size_t)n_addr_s * sizeof *addrs);
            msg.n_addrs = (uint8_t)n_addr_s;
        } else if (t->state == SNCP_TSI_ACTIVATED) {
            tsi_deactivate(st, t);
            tsi_log(t, "deactivated", "operator");
            tsi_persist(st, t);
        }
        if (has_session) { /* a held hypervisor learns it when it resynchronises */
            notify(aux, hv, &msg);
            n_notified++;
        }
    }
    return n_notified;
}

/* ---- show ------------------------------------------------------------------------- */

static json_t *vn_id_json(const struct nnve_vn *vn)
{
    return vn->has_id ? json_integer(vn->id) : json_null();
}

static json_t *vn_name_json(const struct nnve_vn *vn)
{
    return vn->name[0] ? json_string(vn->name) : json_null();
}

static json_t *tsi_json(const struct nnve_tsi *t)
{
    char tbuf[SNCP_TSI_ID_STRLEN];
    json_t *addrs = json_array();
    for (unsigned a = 0; a < t->n_addrs; a++) {
        char abuf[SNCP_ADDR_STRLEN];
        sncp_addr_format(&t->addrs[a], abuf, sizeof abuf);
        json_array_append_new(addrs, json_string(abuf));
    }
    const struct nnve_vap *vap = t->vc->vap;
    return json_pack("{s:s, s:o, s:o, s:s, s:s, s:s, s:i, s:o, s:b}", "tsi",
                     tsi_str(&t->id, tbuf, sizeof tbuf), "vn_id", vn_id_json(&vap->vn), "vn_name",
                     vn_name_json(&vap->vn), "port", t->hv->port->name, "hypervisor",
                     t->hv->identity, "state", sncp_tsi_state_name(t->state), "tag", (int)vap->tag,
                     "addresses", addrs, "migrating", t->migrating);
}

static int json_has_string(const json_t *arr, const char *v)
{
    size_t i;
    const json_t *e;
    json_array_foreach(arr, i, e) if (!strcmp(json_string_value(e), v)) return 1;
    return 0;
}

/* The NVE-to-NVE mapping of one TSI instance: what a remote NVE needs to reach it (its VN and
 * VNI, MACs, IPs, the local VTEP address) and whether it is Activated. */
static json_t *mapping_json(const struct nnve_tsi *t, const void *aux)
{
    const char *vtep = aux;
    char tbuf[SNCP_TSI_ID_STRLEN], buf[SNCP_ADDR_STRLEN];
    static const uint8_t zero[6];
    json_t *macs = json_array(), *ips = json_array();
    if (memcmp(t->id.mac, zero, 6)) {
        sncp_mac_format(t->id.mac, buf, sizeof buf);
        json_array_append_new(macs, json_string(buf));
    }
    for (unsigned a = 0; a < t->n_addrs; a++) {
        const struct sncp_addr *ad = &t->addrs[a];
        int has_mac = ad->type == SNCP_ADDR_MAC || ad->type == SNCP_ADDR_IPV4_MAC ||
                      ad->type == SNCP_ADDR_IPV6_MAC;
        if (has_mac && memcmp(ad->mac, zero, 6)) {
            sncp_mac_format(ad->mac, buf, sizeof buf);
            if (!json_has_string(macs, buf))
                json_array_append_new(macs, json_string(buf));
        }
        int fam = ad->type == SNCP_ADDR_IPV4 || ad->type == SNCP_ADDR_IPV4_MAC   ? AF_INET
                  : ad->type == SNCP_ADDR_IPV6 || ad->type == SNCP_ADDR_IPV6_MAC ? AF_INET6
                                                                                 : 0;
        if (fam && inet_ntop(fam, ad->ip, buf, sizeof buf) && !json_has_string(ips, buf))
            json_array_append_new(ips, json_string(buf));
    }
    const struct nnve_vap *vap = t->vc->vap;
    return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:s}", "tsi",
                     tsi_str(&t->id, tbuf, sizeof tbuf), "vn_id", vn_id_json(&vap->vn), "vn_name",
                     vn_name_json(&vap->vn), "vni", vn_id_json(&vap->vn), "macs", macs, "ips", ips,
                     "vtep", vtep && *vtep ? json_string(vtep) : json_null(), "state",
                     sncp_tsi_state_name(t->state), "hypervisor", t->hv->identity);
}

json_t *nnve_state_show_mappings(const struct nnve_state *st, const char *vtep)
{
    json_t *arr = json_array();
    struct nnve_tsi *t;
    for (size_t i = 0; arr && (t = nnve_hmap_at(&st->tsis, &i)) != NULL;)
        if (json_array_append_new(arr, mapping_json(t, vtep)) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    return arr;
}

json_t *nnve_state_show_tsis(const struct nnve_state *st)
{
    json_t *arr = json_array();
    struct nnve_tsi *t;
    for (size_t i = 0; (t = nnve_hmap_at(&st->tsis, &i)) != NULL;)
        json_array_append_new(arr, tsi_json(t));
    return arr;
}

/* ---- paged TSI listing ----
 * Pages follow the order of (TSI ID bytes, hypervisor identity): the two instances of a
 * migrating TSI are two rows.  A cursor names the last row of a page, so the next page
 * is the rows after it whatever changed in between: a TSI present all along is listed
 * exactly once, one added or removed meanwhile may or may not be.  A page is the `limit`
 * smallest matching rows after the cursor, kept in a max-heap during one pass over the
 * table: O(n log limit) per page, no state kept between requests. */

struct tsi_key {
    struct sncp_tsi_id id;
    const char *identity;
};

static int tsi_key_cmp(const struct sncp_tsi_id *id, const char *identity, const struct tsi_key *k)
{
    int c = memcmp(id, &k->id, sizeof *id);
    return c ? c : strcmp(identity, k->identity);
}

static int tsi_cmp(const struct nnve_tsi *a, const struct nnve_tsi *b)
{
    struct tsi_key kb = {b->id, b->hv->identity};
    return tsi_key_cmp(&a->id, a->hv->identity, &kb);
}

static int tsi_qsort_cmp(const void *a, const void *b)
{
    return tsi_cmp(*(const struct nnve_tsi *const *)a, *(const struct nnve_tsi *const *)b);
}

static void heap_sift_down(const struct nnve_tsi **h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && tsi_cmp(h[l], h[m]) > 0)
            m = l;
        if (r < n && tsi_cmp(h[r], h[m]) > 0)
            m = r;
        if (m == i)
            return;
        const struct nnve_tsi *x = h[i];
        h[i] = h[m];
        h[m] = x;
        i = m;
    }
}

static void heap_push(const struct nnve_tsi **h, size_t *n, const struct nnve_tsi *t)
{
    size_t i = (*n)++;
    h[i] = t;
    while (i && tsi_cmp(h[(i - 1) / 2], h[i]) < 0) {
        const struct nnve_tsi *x = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = x;
        i = (i - 1) / 2;
    }
}

static int tsi_matches(const struct nnve_tsi *t, const struct nnve_tsi_filter *f)
{
    if (f->hypervisor && strcmp(t->hv->identity, f->hypervisor))
        return 0;
    if (f->port && strcmp(t->hv->port->name, f->port))
        return 0;
    if (f->state >= 0 && t->state != f->state)
        return 0;
    if (f->vn) {
        const struct nnve_vn *vn = &t->vc->vap->vn;
        char *end;
        unsigned long id = strtoul(f->vn, &end, 10);
        int numeric = *f->vn >= '0' && *f->vn <= '9' && !*end;
        if (numeric ? !vn->has_id || vn->id != id : strcmp(vn->name, f->vn) != 0)
            return 0;
    }
    return 1;
}

/* Cursor text: "<TSI>@<hypervisor>". */
static int cursor_parse(const char *s, struct sncp_tsi_id *id, const char **identity)
{
    const char *at = strchr(s, '@');
    char tbuf[SNCP_TSI_ID_STRLEN];
    if (!at || (size_t)(at - s) >= sizeof tbuf)
        return -EINVAL;
    memcpy(tbuf, s, (size_t)(at - s));
    tbuf[at - s] = '\0';
    if (sncp_tsi_id_parse(tbuf, id))
        return -EINVAL;
    *identity = at + 1;
    return 0;
}

int nnve_state_tsi_filter_set(struct nnve_tsi_filter *f, const char *key, const char *value)
{
    if (!strcmp(key, "hypervisor")) {
        f->hypervisor = value;
    } else if (!strcmp(key, "port")) {
        f->port = value;
    } else if (!strcmp(key, "vn")) {
        f->vn = value;
    } else if (!strcmp(key, "state")) {
        if (!strcmp(value, "associated"))
            f->state = SNCP_TSI_ASSOCIATED;
        else if (!strcmp(value, "activated"))
            f->state = SNCP_TSI_ACTIVATED;
        else
            return -EINVAL;
    } else if (!strcmp(key, "limit")) {
        char *end;
        unsigned long n = strtoul(value, &end, 10);
        if (*value < '1' || *value > '9' || *end || n > NNVE_SHOW_PAGE_MAX)
            return -EINVAL;
        f->limit = n;
    } else if (!strcmp(key, "after")) {
        struct sncp_tsi_id id;
        const char *identity;
        if (cursor_parse(value, &id, &identity))
            return -EINVAL;
        f->after = value;
    } else {
        return -ENOENT;
    }
    return 0;
}

static json_t *tsi_row(const struct nnve_tsi *t, const void *aux)
{
    (void)aux;
    return tsi_json(t);
}

static json_t *show_page(const struct nnve_state *st, const struct nnve_tsi_filter *f,
                         json_t *(*row)(const struct nnve_tsi *t, const void *aux),
                         const void *aux);

json_t *nnve_state_show_tsis_page(const struct nnve_state *st, const struct nnve_tsi_filter *f)
{
    return show_page(st, f, tsi_row, NULL);
}

json_t *nnve_state_show_mappings_page(const struct nnve_state *st, const struct nnve_tsi_filter *f,
                                      const char *vtep)
{
    return show_page(st, f, mapping_json, vtep);
}

static json_t *show_page(const struct nnve_state *st, const struct nnve_tsi_filter *f,
                         json_t *(*row)(const struct nnve_tsi *t, const void *aux), const void *aux)
{
    size_t limit = f->limit ? f->limit : NNVE_SHOW_PAGE_DEFAULT;
    struct tsi_key after;
    int has_after = f->after && !cursor_parse(f->after, &after.id, &after.identity);
    const struct nnve_tsi **heap = malloc(limit * sizeof *heap);
    if (!heap)
        return NULL;
    size_t n = 0, matched = 0;
    struct nnve_tsi *t;
    for (size_t i = 0; (t = nnve_hmap_at(&st->tsis, &i)) != NULL;) {
        if (!tsi_matches(t, f) || (has_after && tsi_key_cmp(&t->id, t->hv->identity, &after) <= 0))
            continue;
        matched++;
        if (n < limit) {
            heap_push(heap, &n, t);
        } else if (tsi_cmp(t, heap[0]) < 0) {
            heap[0] = t;
            heap_sift_down(heap, n, 0);
        }
    }
    qsort(heap, n, sizeof *heap, tsi_qsort_cmp);
    json_t *items = json_array();
    for (size_t i = 0; items && i < n; i++)
        if (json_array_append_new(items, row(heap[i], aux)) < 0) {
            json_decref(items);
            items = NULL;
        }
    json_t *next = json_null();
    if (items && matched > n) {
        char tbuf[SNCP_TSI_ID_STRLEN];
        char *cursor = NULL;
        if (asprintf(&cursor, "%s@%s", tsi_str(&heap[n - 1]->id, tbuf, sizeof tbuf),
                     heap[n - 1]->hv->identity) >= 0) {
            next = json_string(cursor);
            free(cursor);
        } else {
            json_decref(items);
            items = NULL;
        }
    }
    free(heap);
    json_t *page = items ? json_pack("{s:o, s:o}", "items", items, "next", next) : NULL;
    if (!items)
        json_decref(next);
    return page;
}

json_t *nnve_state_show_vns(const struct nnve_state *st)
{
    json_t *arr = json_array();
    struct nnve_vap *v;
    for (size_t i = 0; (v = nnve_hmap_at(&st->vaps, &i)) != NULL;) {
        json_t *hvs = json_array();
        struct nnve_hv *hv;
        for (size_t j = 0; (hv = nnve_hmap_at(&st->hvs, &j)) != NULL;)
            if (hv->port->domain == v->domain && vnconn_find(hv, v))
                json_array_append_new(hvs, json_string(hv->identity));
        json_array_append_new(
            arr, json_pack("{s:o, s:o, s:s, s:i, s:i, s:s, s:o}", "vn_id", vn_id_json(&v->vn),
                           "vn_name", vn_name_json(&v->vn), "domain", v->domain->name, "tag",
                           (int)v->tag, "tsis", (int)v->n_tsis, "state",
                           v->n_users ? "connected" : "hold-down", "hypervisors", hvs));
    }
    return arr;
}

json_t *nnve_state_show_tags(const struct nnve_state *st, uint64_t now)
{
    json_t *arr = json_array();
    for (const struct nnve_domain *d = st->domains; d; d = d->next) {
        const struct nnve_domain_cfg *dc = NULL;
        for (unsigned k = 0; k < st->cfg->n_domains; k++)
            if (!strcmp(st->cfg->domains[k].name, d->name))
                dc = &st->cfg->domains[k];
        char ranges[512] = "";
        size_t off = 0;
        for (unsigned k = 0; dc && k < dc->n_ranges && off < sizeof ranges; k++) {
            int n = dc->ranges[k].lo == dc->ranges[k].hi
                        ? snprintf(ranges + off, sizeof ranges - off, "%s%u", k ? "," : "",
                                   dc->ranges[k].lo)
                        : snprintf(ranges + off, sizeof ranges - off, "%s%u-%u", k ? "," : "",
                                   dc->ranges[k].lo, dc->ranges[k].hi);
            if (n < 0)
                break;
            off += (size_t)n;
        }
        unsigned size = nnve_tagpool_size(d->pool), used = nnve_tagpool_used(d->pool);
        unsigned held = nnve_tagpool_held(d->pool, now);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:i, s:i, s:i, s:i}", "domain", d->name,
                                             "tags", ranges, "size", (int)size, "used", (int)used,
                                             "held", (int)held, "free", (int)(size - used - held)));
    }
    return arr;
}

void nnve_state_counters(const struct nnve_state *st, struct nnve_state_counters *c)
{
    *c = st->c;
}

void nnve_state_foreach_domain(const struct nnve_state *st, uint64_t now,
                               void (*fn)(void *aux, const char *domain, unsigned size,
                                          unsigned used, unsigned held),
                               void *aux)
{
    for (const struct nnve_domain *d = st->domains; d; d = d->next)
        fn(aux, d->name, nnve_tagpool_size(d->pool), nnve_tagpool_used(d->pool),
           nnve_tagpool_held(d->pool, now));
}

/* ---- create, restore, reconfigure, destroy ---------------------------------------- */

static int sync_domains(struct nnve_state *st, const struct nnve_config *cfg, uint64_t now)
{
    for (unsigned i = 0; i < cfg->n_domains; i++) {
        const struct nnve_domain_cfg *dc = &cfg->domains[i];
        struct nnve_tagpool *pool = pool_from_cfg(dc, cfg->tag_hold_down_ms);
        if (!pool)
            return -ENOMEM;
        struct nnve_domain *d = domain_find(st, dc->name);
        if (!d) {
            d = calloc(1, sizeof *d);
            if (!d || !(d->name = strdup(dc->name))) {
                free(d);
                nnve_tagpool_destroy(pool);
                return -ENOMEM;
            }
            d->next = st->domains;
            st->domains = d;
        } else {
            /* Carry the tags in use (and held) over into the new pool. */
            struct nnve_vap *v;
            for (size_t k = 0; (v = nnve_hmap_at(&st->vaps, &k)) != NULL;) {
                if (v->domain != d)
                    continue;
                if (nnve_tagpool_claim(pool, v->tag, now) == SNCP_E_INVALID_VALUE) {
                    if (v->n_users)
                        SNV_WARN("vap", "tag outside the new pool kept domain=%s tag=%u", d->name,
                                 v->tag);
                } else if (!v->n_users) {
                    /* still in hold-down: held in the new pool until the same time */
                    uint64_t released = v->linger_until > cfg->tag_hold_down_ms
                                            ? v->linger_until - cfg->tag_hold_down_ms
                                            : 0;
                    nnve_tagpool_release(pool, v->tag, released);
                }
            }
            nnve_tagpool_destroy(d->pool);
        }
        d->pool = pool;
    }
    return 0;
}

static int load_hv(void *aux, const char *identity, const char *port)
{
    struct nnve_state *st = aux;
    struct nnve_port *p = port_get(st, port);
    if (!p) {
        SNV_WARN("state", "stored hypervisor dropped: port in no domain hypervisor=%s port=%s",
                 identity, port);
        return 0;
    }
    struct nnve_hv *hv = hv_create(st, identity, p);
    if (!hv)
        return -ENOMEM;
    hv->hold_until = 1; /* set properly after the load */
    st->c.hypervisors_held++;
    return 0;
}

static int load_vap(void *aux, const char *domain, const struct nnve_vn *vn, uint16_t tag)
{
    struct nnve_state *st = aux;
    struct nnve_domain *d = domain_find(st, domain);
    char vbuf[80];
    if (!d) {
        SNV_WARN("state", "stored VAP dropped: no such domain domain=%s vn=%s", domain,
                 nnve_vn_format(vn, vbuf, sizeof vbuf));
        return 0;
    }
    if (nnve_tagpool_claim(d->pool, tag, 0) == SNCP_E_INVALID_VALUE)
        SNV_WARN("vap", "stored tag outside the pool kept domain=%s vn=%s tag=%u", domain,
                 nnve_vn_format(vn, vbuf, sizeof vbuf), tag);
    return vap_new(st, d, vn, tag) ? 0 : -ENOMEM;
}

static int load_vap_hold(void *aux, const char *domain, const struct nnve_vn *vn, uint32_t hold_ms)
{
    struct nnve_state *st = aux;
    struct nnve_domain *d = domain_find(st, domain);
    struct nnve_vap *v = d ? vap_find(st, d, vn) : NULL;
    if (v) {
        v->loaded_hold = 1;
        v->loaded_hold_ms = hold_ms;
    }
    return 0;
}

static int load_vn_connection(void *aux, const char *identity, const struct nnve_vn *vn,
                              int implicit)
{
    struct nnve_state *st = aux;
    struct nnve_hv *hv = nnve_state_hv_find(st, identity);
    if (!hv)
        return 0;
    struct nnve_vap *vap = vap_find(st, hv->port->domain, vn);
    struct nnve_vnconn *vc;
    int r;
    if (vap) {
        /* The VAP was loaded with its tag (claimed in the pool): just one more user. */
        vc = calloc(1, sizeof *vc);
        if (!vc || port_vn_ref(st, hv->port, vap, 1)) {
            free(vc);
            return -ENOMEM;
        }
        vap->n_users++;
        vc->vap = vap;
        vc->hv = hv;
        vc->implicit = (uint8_t) !!implicit;
        vc->next = hv->vnconns;
        hv->vnconns = vc;
        hv->n_vnconns++;
        st->c.vn_connections++;
        return 0;
    }
    st->restoring = 0; /* a new VAP must be stored */
    r = vnconn_create(st, hv, vn, NULL, 0, implicit, 0, &vc);
    st->restoring = 1;
    return r == SNCP_E_TAG_POOL_EXHAUSTED ? 0 : r;
}

static int load_tsi(void *aux, const char *identity, const struct nnve_vn *vn,
                    const struct sncp_tsi_id *id, uint8_t state, uint8_t migrating,
                    const struct sncp_addr *addrs, unsigned n_addrs)
{
    struct nnve_state *st = aux;
    struct nnve_hv *hv = nnve_state_hv_find(st, identity);
    if (!hv || (state != SNCP_TSI_ASSOCIATED && state != SNCP_TSI_ACTIVATED))
        return 0;
    struct nnve_vap *vap = vap_find(st, hv->port->domain, vn);
    struct nnve_vnconn *vc = vap ? vnconn_find(hv, vap) : NULL;
    if (!vc)
        return 0;
    struct nnve_result chk = {0};
    if (addrs_claim_check(st, hv, vap, vn, id, addrs, n_addrs, &chk)) {
        char tbuf[SNCP_TSI_ID_STRLEN];
        SNV_WARN("state",
                 "stored TSI loaded although the policy refuses it now hypervisor=%s "
                 "tsi=%s reason=\"%s\"",
                 identity, tsi_str(id, tbuf, sizeof tbuf), chk.reason);
    }
    struct nnve_tsi *t = tsi_create(st, hv, vc, id, addrs, n_addrs);
    if (!t)
        return -ENOMEM;
    tsi_count_state(st, state, 1);
    t->state = state;
    t->migrating = (migrating & STORED_MIGRATING) != 0;
    t->handover = state == SNCP_TSI_ACTIVATED && (migrating & STORED_HANDOVER);
    if (t->migrating)
        st->c.tsis_migrating++;
    be_tsi(st, state == SNCP_TSI_ACTIVATED ? BE_ACTIVATE : BE_ASSOCIATE, t);
    return 0;
}

/* Loads what the store holds and declares it to the backend between reconcile_begin and
 * reconcile_end; loaded hypervisors go into hold, unused VAPs into hold-down. */
static int restore(struct nnve_state *st, uint64_t now)
{
    static const struct nnve_store_loader loader = {
        .hv = load_hv,
        .vap = load_vap,
        .vap_hold = load_vap_hold,
        .vn_connection = load_vn_connection,
        .tsi = load_tsi,
    };
    if (st->be)
        be_count(st, st->be->cls->reconcile_begin(st->be));
    st->restoring = 1;
    int r = nnve_store_load(st->db, &loader, st);
    st->restoring = 0;
    if (st->be)
        be_count(st, st->be->cls->reconcile_end(st->be));
    if (r)
        return r;
    /* Loaded VAPs nobody uses go into hold-down (what was left of a stored one, else a full
     * one); loaded hypervisors into hold. */
    struct nnve_vap *v;
    for (size_t i = 0; (v = nnve_hmap_at(&st->vaps, &i)) != NULL;) {
        if (!v->n_users)
            vap_hold(st, v, now, v->loaded_hold ? v->loaded_hold_ms : st->cfg->tag_hold_down_ms);
        else if (v->loaded_hold)
            store_count(st, nnve_store_vap_hold_del(st->store, v->domain->name, &v->vn));
        v->loaded_hold = 0;
    }
    struct nnve_hv *hv;
    for (size_t i = 0; (hv = nnve_hmap_at(&st->hvs, &i)) != NULL;) {
        hv->hold_until = now + st->cfg->hold_time_ms;
        if (!hv->hold_until)
            hv->hold_until = 1;
    }
    return 0;
}

int nnve_state_create(const struct nnve_config *cfg, struct nnve_backend *be,
                      struct nnve_store *store, uint64_t now, struct nnve_state **out, char *err,
                      size_t errlen)
{
    struct nnve_state *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    st->cfg = cfg;
    st->be = be;
    st->store = st->db = store;
    st->rl = (struct snv_ratelimit)SNV_RATELIMIT_INIT(ALL_LOG_RATE, ALL_LOG_BURST);
    nnve_hmap_init(&st->hvs);
    nnve_hmap_init(&st->ports);
    nnve_hmap_init(&st->vaps);
    nnve_hmap_init(&st->tsis);
    nnve_hmap_init(&st->addrs);
    int r = sync_domains(st, cfg, now);
    if (r) {
        snprintf(err, errlen, "cannot build tag pools: %s", sncp_strerror(r));
        nnve_state_destroy(st);
        return r;
    }
    if (store) {
        r = restore(st, now);
        if (r) {
            snprintf(err, errlen, "cannot load the stored state: %s", sncp_strerror(r));
            nnve_state_destroy(st);
            return r;
        }
        /* What was stored under an older configuration is held to the current one. */
        nnve_state_enforce(st, now, NULL, NULL);
        SNV_INFO("state", "loaded hypervisors=%" PRIu64 " vaps=%" PRIu64 " tsis=%" PRIu64,
                 st->c.hypervisors, st->c.vaps, st->c.tsis_associated + st->c.tsis_activated);
    }
    *out = st;
    return 0;
}

int nnve_state_reconfigure(struct nnve_state *st, const struct nnve_config *cfg, uint64_t now)
{
    int r = sync_domains(st, cfg, now);
    if (r)
        return r;
    st->cfg = cfg;
    struct nnve_hv *hv;
    for (size_t i = 0; (hv = nnve_hmap_at(&st->hvs, &i)) != NULL;)
        hv->hc = nnve_config_find_hv(cfg, hv->identity);
    return 0;
}

/* Frees every hypervisor, VN connection, TSI, VAP and port (not the domains). */
static void objects_free(struct nnve_state *st)
{
    struct nnve_tsi *t;
    for (size_t i = 0; (t = nnve_hmap_at(&st->tsis, &i)) != NULL;)
        tsi_free(t);
    struct nnve_hv *hv;
    for (size_t i = 0; (hv = nnve_hmap_at(&st->hvs, &i)) != NULL;) {
        for (struct nnve_vnconn *vc = hv->vnconns, *next; vc; vc = next) {
            next = vc->next;
            free(vc);
        }
        free(hv->moved);
        free(hv->identity);
        free(hv);
    }
    struct nnve_vap *v;
    for (size_t i = 0; (v = nnve_hmap_at(&st->vaps, &i)) != NULL;)
        free(v);
    struct nnve_port *p;
    for (size_t i = 0; (p = nnve_hmap_at(&st->ports, &i)) != NULL;) {
        free(p->vns);
        free(p->name);
        free(p);
    }
    struct addr_owner *o;
    for (size_t i = 0; (o = nnve_hmap_at(&st->addrs, &i)) != NULL;)
        free(o);
    nnve_hmap_uninit(&st->addrs);
    nnve_hmap_uninit(&st->tsis);
    nnve_hmap_uninit(&st->hvs);
    nnve_hmap_uninit(&st->vaps);
    nnve_hmap_uninit(&st->ports);
}

void nnve_state_destroy(struct nnve_state *st)
{
    if (!st)
        return;
    objects_free(st);
    for (struct nnve_domain *d = st->domains, *next; d; d = next) {
        next = d->next;
        nnve_tagpool_destroy(d->pool);
        free(d->name);
        free(d);
    }
    free(st);
}

/* ---- failures: revert, degraded mode ------------------------------------------------ */

static void degraded_enter(struct nnve_state *st, const char *why)
{
    if (st->degraded)
        return;
    st->degraded = 1;
    nnve_store_rollback(st->db);
    st->store = NULL;
    st->c.degraded = 1;
    st->c.degraded_entered++;
    SNV_ERR("state",
            "entering degraded mode: %s; every request is refused until the whole state is "
            "stored again",
            why);
}

/* A session's hypervisor, kept across a revert. */
struct bound_hv {
    char *identity;
    char *port;
    void *session;
};

/* Rebuilds memory and dataplane from the store (the last committed state), keeping the
 * hypervisors that have a session bound to them.  Returns 0 or < 0 (logged). */
static int revert(struct nnve_state *st, uint64_t now)
{
    size_t n = 0, cap = nnve_hmap_count(&st->hvs);
    struct bound_hv *b = calloc(cap ? cap : 1, sizeof *b);
    if (!b)
        return -ENOMEM;
    struct nnve_hv *hv;
    for (size_t i = 0; (hv = nnve_hmap_at(&st->hvs, &i)) != NULL;) {
        if (!hv->session)
            continue;
        b[n].identity = hv->identity;
        hv->identity = NULL;
        b[n].port = strdup(hv->port->name);
        b[n++].session = hv->session;
    }
    objects_free(st);
    nnve_hmap_init(&st->hvs);
    nnve_hmap_init(&st->ports);
    nnve_hmap_init(&st->vaps);
    nnve_hmap_init(&st->tsis);
    nnve_hmap_init(&st->addrs);
    uint64_t keep[] = {st->c.transitions,    st->c.hold_expired,     st->c.sync_swept_tsis,
                       st->c.sync_swept_vns, st->c.backend_errors,   st->c.store_errors,
                       st->c.degraded,       st->c.degraded_entered, st->c.reverts};
    memset(&st->c, 0, sizeof st->c);
    st->c.transitions = keep[0];
    st->c.hold_expired = keep[1];
    st->c.sync_swept_tsis = keep[2];
    st->c.sync_swept_vns = keep[3];
    st->c.backend_errors = keep[4];
    st->c.store_errors = keep[5];
    st->c.degraded = keep[6];
    st->c.degraded_entered = keep[7];
    st->c.reverts = keep[8] + 1;
    /* Fresh pools: the loaded VAPs claim their tags again. */
    for (struct nnve_domain *d = st->domains; d; d = d->next) {
        nnve_tagpool_destroy(d->pool);
        d->pool = NULL;
    }
    int r = sync_domains(st, st->cfg, now);
    if (!r)
        r = restore(st, now);
    for (size_t i = 0; i < n; i++) {
        if (!r) {
            hv = nnve_state_hv_find(st, b[i].identity);
            struct nnve_port *p = b[i].port ? port_get(st, b[i].port) : NULL;
            if (!p) {
                /* port in no domain any more (or no memory): the session is let go */
                SNV_WARN("state", "session not kept across the revert hypervisor=%s",
                         b[i].identity);
            } else if (!hv) {
                hv = hv_create(st, b[i].identity, p);
                if (!hv)
                    r = -ENOMEM;
                else
                    store_count(st, nnve_store_hv_put(st->store, hv->identity, p->name));
            } else {
                st->c.hypervisors_held--;
                hv->hold_until = 0;
                if (hv->port != p)
                    r = hv_move(st, hv, p, now);
            }
            if (!r && p) {
                hv->hold_until = 0;
                hv->session = b[i].session;
            }
        }
        free(b[i].identity);
        free(b[i].port);
    }
    free(b);
    SNV_INFO("state", "reverted to the stored state hypervisors=%" PRIu64 " tsis=%" PRIu64 "%s",
             st->c.hypervisors, st->c.tsis_associated + st->c.tsis_activated,
             r ? " (incomplete)" : "");
    return r;
}

int nnve_state_commit(struct nnve_state *st, uint64_t now)
{
    if (!st->failed) {
        if (!nnve_store_dirty(st->store) || !nnve_store_commit(st->store))
            return 0;
        st->failed |= FAIL_STORE;
    }
    unsigned failed = st->failed;
    st->failed = 0;
    nnve_store_rollback(st->db);
    if (failed & FAIL_STORE)
        degraded_enter(st, "the state store failed");
    if (!st->db) {
        /* Nothing to rebuild from: refuse until the dataplane replays. */
        st->dp_dirty = 1;
        degraded_enter(st, "a dataplane operation failed (no store to revert to)");
        return SNCP_E_INTERNAL;
    }
    int r = revert(st, now);
    if (st->failed & FAIL_BACKEND)
        st->dp_dirty = 1;
    if (r || st->failed) {
        st->dp_dirty = 1;
        st->need_reload = r != 0;
        degraded_enter(st, r ? "the state could not be reloaded from the store"
                             : "the dataplane could not be programmed with the stored state");
    }
    st->failed = 0;
    return SNCP_E_INTERNAL;
}

/* Declares every VN on a port and every TSI to the backend between reconcile_begin and
 * reconcile_end.  Every declaration is made even after one fails: reconcile_end removes
 * what was not declared, which must never be a correct entry.  Returns 0 or the first
 * error. */
static int replay(struct nnve_state *st)
{
    struct nnve_backend *be = st->be;
    const struct nnve_backend_class *c = be->cls;
    int r = c->reconcile_begin(be);
    if (r < 0)
        return r;
    struct nnve_port *p;
    for (size_t i = 0; (p = nnve_hmap_at(&st->ports, &i)) != NULL;)
        for (unsigned k = 0; k < p->n_vns; k++) {
            int e =
                p->vns[k].refs ? c->vn_add(be, p->name, p->vns[k].vap->tag, &p->vns[k].vap->vn) : 0;
            r = r ? r : e;
        }
    struct nnve_tsi *t;
    for (size_t i = 0; (t = nnve_hmap_at(&st->tsis, &i)) != NULL;) {
        const struct nnve_vap *vap = t->vc->vap;
        int e = (t->state == SNCP_TSI_ACTIVATED ? c->tsi_activate : c->tsi_associate)(
            be, t->hv->port->name, vap->tag, &vap->vn, &t->id, t->addrs, t->n_addrs);
        r = r ? r : e;
    }
    int e = c->reconcile_end(be);
    return r ? r : e;
}

/* Writes every record from memory into one transaction of the store, lingering VAPs with
 * what is left of their tag hold-down. */
static int rewrite(struct nnve_state *st, uint64_t now)
{
    struct nnve_store *db = st->db;
    int r = nnve_store_clear(db);
    struct nnve_hv *hv;
    for (size_t i = 0; !r && (hv = nnve_hmap_at(&st->hvs, &i)) != NULL;) {
        r = nnve_store_hv_put(db, hv->identity, hv->port->name);
        for (struct nnve_vnconn *vc = hv->vnconns; vc && !r; vc = vc->next)
            r = nnve_store_vn_connection_put(db, hv->identity, &vc->vap->vn, vc->implicit);
        for (struct nnve_tsi *t = hv->tsis; t && !r; t = t->next)
            r = nnve_store_tsi_put(db, hv->identity, &t->vc->vap->vn, &t->id, t->state,
                                   tsi_stored_flags(t), t->addrs, t->n_addrs);
    }
    struct nnve_vap *v;
    for (size_t i = 0; !r && (v = nnve_hmap_at(&st->vaps, &i)) != NULL;) {
        r = nnve_store_vap_put(db, v->domain->name, &v->vn, v->tag);
        if (!r && !v->n_users)
            r = nnve_store_vap_hold_put(db, v->domain->name, &v->vn,
                                        v->linger_until > now ? (uint32_t)(v->linger_until - now)
                                                              : 0);
    }
    if (r) {
        nnve_store_rollback(db);
        return r;
    }
    return nnve_store_commit(db);
}

int nnve_state_recover(struct nnve_state *st, uint64_t now)
{
    if (!st->degraded)
        return 0;
    if (st->need_reload) {
        /* Memory may be partial: what is on disk is the truth, never the other way round. */
        st->failed = 0;
        int r = revert(st, now);
        st->failed = 0;
        if (r)
            return r;
        st->need_reload = 0;
    }
    if (st->db && rewrite(st, now))
        return SNCP_E_INTERNAL;
    if (st->dp_dirty && st->be) {
        int r = replay(st);
        st->be->ops++;
        if (r < 0) {
            st->be->errors++;
            st->c.backend_errors++;
            return r;
        }
    }
    st->dp_dirty = 0;
    st->degraded = 0;
    st->store = st->db;
    st->c.degraded = 0;
    SNV_INFO("state",
             "leaving degraded mode: the whole state is stored%s hypervisors=%" PRIu64
             " tsis=%" PRIu64,
             st->be ? " and in the dataplane" : "", st->c.hypervisors,
             st->c.tsis_associated + st->c.tsis_activated);
    return 0;
}

int nnve_state_degraded(const struct nnve_state *st)
{
    return st->degraded;
}

uint64_t nnve_state_reverts(const struct nnve_state *st)
{
    return st->c.reverts;
}

void nnve_vn_to_msg(struct sncp_msg *m, const struct nnve_vn *vn)
{
    if (vn->has_id) {
        m->vn_id = vn->id;
        sncp_msg_set(m, SNCP_TLV_VN_ID);
    }
    if (vn->name[0]) {
        snprintf(m->vn_name, sizeof m->vn_name, "%s", vn->name);
        sncp_msg_set(m, SNCP_TLV_VN_NAME);
    }
}
