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
 * Memory per TSI instance: the struct (80 bytes), its address array, and a hash slot.
 */
#include "state.h"

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
};

struct nnve_tsi {
    struct sncp_tsi_id id;
    uint8_t state;
    uint8_t migrating;
    uint8_t unconfirmed;
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
};

struct nnve_state {
    const struct nnve_config *cfg;
    struct nnve_backend *be;
    struct nnve_store *store;
    int restoring;
    struct nnve_domain *domains;
    struct nnve_hmap hvs;   /* by identity */
    struct nnve_hmap ports; /* by name */
    struct nnve_hmap vaps;  /* by (domain, key) */
    struct nnve_hmap tsis;  /* by TSI_ID */
    struct nnve_state_counters c;
    struct snv_ratelimit rl;
};

/* State changes are logged at info but a peer can trigger them at will: they go through a
 * generous rate limiter (the suppressed count is reported) so a flood cannot fill the disk. */
static struct snv_ratelimit change_rl = SNV_RATELIMIT_INIT(2000, 10000);

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
    }
}

static void store_count(struct nnve_state *st, int r)
{
    if (r < 0)
        st->c.store_errors++;
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
        snv_log_rl(&change_rl, SNV_LOG_INFO, "vap", "revived domain=%s vn=%s tag=%u", d->name,
                   nnve_vn_format(&v->vn, vbuf, sizeof vbuf), v->tag);
    } else if (!v) {
        uint16_t p[SNCP_MAX_TAGS], tag;
        for (unsigned i = 0; i < n_prefs && i < SNCP_MAX_TAGS; i++)
            p[i] = prefs[i].vid;
        int r = nnve_tagpool_alloc(d->pool, p, n_prefs < SNCP_MAX_TAGS ? n_prefs : SNCP_MAX_TAGS,
                                   now, &tag);
        if (r)
            return r;
        v = vap_new(st, d, vn, tag);
        if (!v) {
            nnve_tagpool_release(d->pool, tag, 0);
            return -ENOMEM;
        }
        if (!st->restoring)
            store_count(st, nnve_store_vap_put(st->store, d->name, &v->vn, v->tag));
        snv_log_rl(&change_rl, SNV_LOG_INFO, "vap", "created domain=%s vn=%s tag=%u", d->name,
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
    snv_log_rl(&change_rl, SNV_LOG_INFO, "vap", "released domain=%s vn=%s tag=%u hold_down_ms=%u",
               v->domain->name, nnve_vn_format(&v->vn, vbuf, sizeof vbuf), v->tag,
               st->cfg->tag_hold_down_ms);
}

/* ---- VN resolution and policy ------------------------------------------------------ */

/* The canonical VN of a request: the ID when known (from the request or the [vn] table),
 * the name when known.  Returns 0, SNCP_E_MISSING_TLV, SNCP_E_INVALID_VALUE (an ID out of
 * range), or SNCP_E_CONFLICT (an ID and a name naming different VNs, PROTOCOL.md §4.4). */
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
        if (vc && has_id && vc->id != id) {
            res->error_tlv = SNCP_TLV_VN_NAME;
            res->reason = "VN_NAME names another VN_ID";
            return SNCP_E_CONFLICT;
        }
        if (vc) {
            has_id = 1;
            id = vc->id;
        } else if (has_id) {
            const struct nnve_vn_cfg *byid = nnve_config_find_vn_id(cfg, id);
            if (byid && strcmp(byid->name, name)) {
                res->error_tlv = SNCP_TLV_VN_NAME;
                res->reason = "VN_ID has another VN_NAME";
                return SNCP_E_CONFLICT;
            }
        }
        snprintf(out->name, sizeof out->name, "%s", name);
    } else {
        const struct nnve_vn_cfg *byid = nnve_config_find_vn_id(cfg, id);
        if (byid)
            snprintf(out->name, sizeof out->name, "%s", byid->name);
    }
    out->has_id = (uint8_t)has_id;
    out->id = has_id ? id : 0;
    return 0;
}

static int vn_resolve_msg(const struct nnve_config *cfg, const struct sncp_msg *req,
                          struct nnve_vn *out, struct nnve_result *res)
{
    return vn_resolve(cfg, sncp_msg_has(req, SNCP_TLV_VN_ID), req->vn_id,
                      sncp_msg_has(req, SNCP_TLV_VN_NAME) ? req->vn_name : NULL, out, res);
}

static int vn_authorize(struct nnve_state *st, const struct nnve_hv *hv, const struct nnve_vn *vn,
                        struct nnve_result *res)
{
    const struct nnve_hv_cfg *hc = nnve_config_find_hv(st->cfg, hv->identity);
    if (hc && nnve_config_vn_allowed(hc, vn->has_id, vn->id, vn->name))
        return 0;
    char vbuf[80];
    snv_log_rl(&st->rl, SNV_LOG_WARN, "policy", "VN not authorized hypervisor=%s vn=%s",
               hv->identity, nnve_vn_format(vn, vbuf, sizeof vbuf));
    res->error_tlv = vn->has_id ? SNCP_TLV_VN_ID : SNCP_TLV_VN_NAME;
    res->reason = "VN not authorized for this hypervisor";
    return SNCP_E_NOT_AUTHORIZED;
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
                         const struct sncp_tag *prefs, unsigned n_prefs, uint64_t now,
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
    vc->next = hv->vnconns;
    hv->vnconns = vc;
    hv->n_vnconns++;
    st->c.vn_connections++;
    char vbuf[80];
    if (!st->restoring)
        store_count(st, nnve_store_vn_connection_put(st->store, hv->identity, &vap->vn));
    snv_log_rl(&change_rl, SNV_LOG_INFO, "vn", "connected hypervisor=%s vn=%s port=%s tag=%u",
               hv->identity, nnve_vn_format(&vap->vn, vbuf, sizeof vbuf), hv->port->name, vap->tag);
    *out = vc;
    return 0;
}

static void tsi_remove(struct nnve_state *st, struct nnve_tsi *t, uint64_t now, const char *why);

static void vnconn_remove(struct nnve_state *st, struct nnve_vnconn *vc, uint64_t now,
                          const char *why)
{
    struct nnve_hv *hv = vc->hv;
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
    snv_log_rl(&change_rl, SNV_LOG_INFO, "vn",
               "disconnected hypervisor=%s vn=%s port=%s tag=%u reason=%s", hv->identity,
               nnve_vn_format(&vap->vn, vbuf, sizeof vbuf), hv->port->name, vap->tag, why);
    store_count(st, nnve_store_vn_connection_del(st->store, hv->identity, &vap->vn));
    port_vn_ref(st, hv->port, vap, -1);
    vap_release(st, vap, now);
    free(vc);
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

static void tsi_persist(struct nnve_state *st, const struct nnve_tsi *t)
{
    if (!st->restoring)
        store_count(st, nnve_store_tsi_put(st->store, t->hv->identity, &t->vc->vap->vn, &t->id,
                                           t->state, t->migrating, t->addrs, t->n_addrs));
}

enum be_tsi_op { BE_ASSOCIATE, BE_ACTIVATE, BE_DEACTIVATE, BE_DEASSOCIATE, BE_UPDATE };

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

static void tsi_log(const struct nnve_tsi *t, const char *what, const char *why)
{
    if (snv_log_get_level() < SNV_LOG_INFO)
        return;
    char tbuf[SNCP_TSI_ID_STRLEN], vbuf[80];
    const struct nnve_vap *vap = t->vc->vap;
    snv_log_rl(&change_rl, SNV_LOG_INFO, "tsi",
               "%s tsi=%s vn=%s port=%s tag=%u hypervisor=%s addrs=%u%s%s%s", what,
               tsi_str(&t->id, tbuf, sizeof tbuf), nnve_vn_format(&vap->vn, vbuf, sizeof vbuf),
               t->hv->port->name, vap->tag, t->hv->identity, t->n_addrs,
               t->migrating ? " migrating=yes" : "", why ? " reason=" : "", why ? why : "");
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
    if (addrs_set(t, addrs, n) || nnve_hmap_insert(&st->tsis, tsi_hash(id), t)) {
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

static void tsi_remove(struct nnve_state *st, struct nnve_tsi *t, uint64_t now, const char *why)
{
    (void)now;
    struct nnve_hv *hv = t->hv;
    be_tsi(st, BE_DEASSOCIATE, t);
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
    struct sncp_tsi_id id = t->id;
    int was_migrating = t->migrating;
    tsi_free(t);
    if (was_migrating)
        migration_settle(st, &id);
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
    SNV_INFO("hypervisor", "port changed hypervisor=%s old_port=%s port=%s", hv->identity, op->name,
             np->name);
    if (op->domain != np->domain) {
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
            SNV_INFO("hypervisor", "hold cancelled hypervisor=%s tsis=%u", identity, hv->n_tsis);
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
    SNV_INFO("hypervisor",
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

static int req_vn_connect(struct nnve_state *st, struct nnve_hv *hv, const struct sncp_msg *req,
                          uint64_t now, struct nnve_result *res)
{
    struct nnve_vn vn;
    int r = vn_resolve_msg(st->cfg, req, &vn, res);
    if (r || (r = vn_authorize(st, hv, &vn, res)))
        return r;
    struct nnve_vap *vap = vap_find(st, hv->port->domain, &vn);
    struct nnve_vnconn *vc = vap ? vnconn_find(hv, vap) : NULL;
    if (!vc) {
        r = vnconn_create(st, hv, &vn, req->preferred_tags, req->n_preferred_tags, now, &vc);
        if (r) {
            if (r == SNCP_E_TAG_POOL_EXHAUSTED) {
                res->reason = "local tag pool exhausted";
                snv_log_rl(&st->rl, SNV_LOG_WARN, "vap",
                           "tag pool exhausted domain=%s "
                           "hypervisor=%s",
                           hv->port->domain->name, hv->identity);
            }
            return r;
        }
    }
    vc->unconfirmed = 0;
    result_vn(res, vc->vap);
    return 0;
}

static int req_vn_disconnect(struct nnve_state *st, struct nnve_hv *hv, const struct sncp_msg *req,
                             uint64_t now, struct nnve_result *res)
{
    struct nnve_vn vn;
    int r = vn_resolve_msg(st->cfg, req, &vn, res);
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

/* TSI_ASSOCIATE and TSI_ACTIVATE. */
static int req_tsi_attach(struct nnve_state *st, struct nnve_hv *hv, const struct sncp_msg *req,
                          uint64_t now, struct nnve_result *res)
{
    int activate = req->type == SNCP_MSG_TSI_ACTIVATE;
    struct nnve_vn vn;
    int r = vn_resolve_msg(st->cfg, req, &vn, res);
    if (r || (r = vn_authorize(st, hv, &vn, res)))
        return r;
    if (req->n_addrs > st->cfg->max_addrs_per_tsi) {
        res->error_tlv = SNCP_TLV_ADDRESS;
        res->reason = "too many addresses for one TSI";
        return SNCP_E_RESOURCE_LIMIT;
    }
    struct nnve_vap *vap = vap_find(st, hv->port->domain, &vn);
    struct nnve_vnconn *vc = vap ? vnconn_find(hv, vap) : NULL;
    struct nnve_tsi *t = tsi_find(st, &req->tsi, hv);
    int migration_dest = (req->flags & SNCP_F_MIGRATION) && !(req->flags & SNCP_F_MIGRATION_SOURCE);

    if (t) {
        if (t->vc != vc) {
            res->error_tlv = SNCP_TLV_VN_ID;
            res->reason = "TSI is in another VN";
            return SNCP_E_CONFLICT;
        }
        if (!activate && t->state == SNCP_TSI_ACTIVATED) {
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
        char key[80];
        vn_key(&vn, key, sizeof key);
        if (other && strcmp(other->vc->vap->key, key)) {
            res->error_tlv = SNCP_TLV_VN_ID;
            res->reason = "TSI is in another VN at its other hypervisor";
            return SNCP_E_CONFLICT;
        }
        if (hv->n_tsis >= st->cfg->max_tsis_per_session) {
            res->reason = "TSI limit of this hypervisor reached";
            return SNCP_E_RESOURCE_LIMIT;
        }
    }
    if (!vc) {
        if (!(req->flags & SNCP_F_IMPLICIT_CONNECT)) {
            res->error_tlv = vn.has_id ? SNCP_TLV_VN_ID : SNCP_TLV_VN_NAME;
            res->reason = "VN not connected (no IMPLICIT_CONNECT)";
            return SNCP_E_NO_SUCH_VN;
        }
        r = vnconn_create(st, hv, &vn, req->preferred_tags, req->n_preferred_tags, now, &vc);
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
        t = tsi_create(st, hv, vc, &req->tsi, req->addrs, req->n_addrs);
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
    } else if (req->n_addrs && !addrs_equal(t, req->addrs, req->n_addrs)) {
        if (addrs_set(t, req->addrs, req->n_addrs))
            return -ENOMEM;
        be_tsi(st, t->state == SNCP_TSI_ACTIVATED ? BE_UPDATE : BE_ASSOCIATE, t);
        tsi_log(t, "addresses-replaced", NULL);
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

static struct nnve_tsi *tsi_lookup_req(struct nnve_state *st, struct nnve_hv *hv,
                                       const struct sncp_msg *req, struct nnve_result *res)
{
    struct nnve_tsi *t = tsi_find(st, &req->tsi, hv);
    if (!t) {
        res->error_tlv = SNCP_TLV_TSI_ID;
        res->reason = "no such TSI at this hypervisor";
    }
    return t;
}

static int req_tsi_deactivate(struct nnve_state *st, struct nnve_hv *hv, const struct sncp_msg *req,
                              struct nnve_result *res)
{
    struct nnve_tsi *t = tsi_lookup_req(st, hv, req, res);
    if (!t)
        return SNCP_E_NO_SUCH_TSI;
    if (t->state == SNCP_TSI_ACTIVATED) {
        tsi_set_state(st, t, SNCP_TSI_ASSOCIATED);
        be_tsi(st, BE_DEACTIVATE, t);
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
    struct nnve_tsi *t = tsi_lookup_req(st, hv, req, res);
    if (!t)
        return SNCP_E_NO_SUCH_TSI;
    result_vn(res, t->vc->vap);
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

static int req_tsi_update(struct nnve_state *st, struct nnve_hv *hv, const struct sncp_msg *req,
                          struct nnve_result *res)
{
    struct nnve_tsi *t = tsi_lookup_req(st, hv, req, res);
    if (!t)
        return SNCP_E_NO_SUCH_TSI;
    if (!sncp_msg_has(req, SNCP_TLV_UPDATE_OP)) {
        res->error_tlv = SNCP_TLV_UPDATE_OP;
        return SNCP_E_MISSING_TLV;
    }
    struct sncp_addr next[SNCP_MAX_ADDRS * 2];
    unsigned n = 0;
    switch (req->update_op) {
    case SNCP_UPDATE_ADD:
        memcpy(next, t->addrs, t->n_addrs * sizeof *next);
        n = t->n_addrs;
        for (unsigned i = 0; i < req->n_addrs; i++)
            if (addr_index(next, n, &req->addrs[i]) < 0)
                next[n++] = req->addrs[i];
        break;
    case SNCP_UPDATE_REMOVE:
        for (unsigned i = 0; i < t->n_addrs; i++)
            if (addr_index(req->addrs, req->n_addrs, &t->addrs[i]) < 0)
                next[n++] = t->addrs[i];
        break;
    case SNCP_UPDATE_REPLACE:
        memcpy(next, req->addrs, req->n_addrs * sizeof *next);
        n = req->n_addrs;
        break;
    default:
        res->error_tlv = SNCP_TLV_UPDATE_OP;
        res->reason = "unknown UPDATE_OP";
        return SNCP_E_INVALID_VALUE;
    }
    if (n > st->cfg->max_addrs_per_tsi || n > SNCP_MAX_ADDRS) {
        res->error_tlv = SNCP_TLV_ADDRESS;
        res->reason = "too many addresses for one TSI";
        return SNCP_E_RESOURCE_LIMIT;
    }
    if (!addrs_equal(t, next, n)) {
        if (addrs_set(t, next, n))
            return -ENOMEM;
        be_tsi(st, BE_UPDATE, t);
        tsi_log(t, "addresses-updated", NULL);
        tsi_persist(st, t);
    }
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
    snv_log_rl(&change_rl, SNV_LOG_INFO, "sync", "begin hypervisor=%s tsis=%u vns=%u", hv->identity,
               hv->n_tsis, hv->n_vnconns);
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
    snv_log_rl(&change_rl, SNV_LOG_INFO, "sync",
               "end hypervisor=%s tsis=%u vns=%u swept_tsis=%u swept_vns=%u", hv->identity,
               hv->n_tsis, hv->n_vnconns, swept_tsis, swept_vns);
}

int nnve_state_request(struct nnve_state *st, struct nnve_hv *hv, const struct sncp_msg *req,
                       uint64_t now, struct nnve_result *res)
{
    memset(res, 0, sizeof *res);
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
        sync_end(st, hv, now);
        return 0;
    default:
        res->reason = "message not allowed here";
        return SNCP_E_UNEXPECTED_MESSAGE;
    }
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
            SNV_INFO("hypervisor",
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
            vap_free(st, v);
            i = 0;
            continue;
        }
        if (v->linger_until < next)
            next = v->linger_until;
    }
    return next;
}

/* ---- operator actions ------------------------------------------------------------- */

int nnve_state_op_vn_disconnect(struct nnve_state *st, const char *identity, const char *vn_s,
                                uint64_t now, nnve_state_notify_fn *notify, void *aux)
{
    struct nnve_hv *hv = nnve_state_hv_find(st, identity);
    if (!hv)
        return -ENOENT;
    if (!hv->session)
        return -ENOTCONN;
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
    sncp_msg_init(&msg, SNCP_MSG_VN_DISCONNECT, 0);
    if (vap->vn.has_id) {
        msg.vn_id = vap->vn.id;
        sncp_msg_set(&msg, SNCP_TLV_VN_ID);
    }
    if (vap->vn.name[0]) {
        snprintf(msg.vn_name, sizeof msg.vn_name, "%s", vap->vn.name);
        sncp_msg_set(&msg, SNCP_TLV_VN_NAME);
    }
    vnconn_remove(st, vc, now, "operator");
    notify(aux, hv, &msg);
    return 1;
}

int nnve_state_op_tsi(struct nnve_state *st, enum sncp_msg_type type, const char *tsi_s,
                      const char *const *addr_s, int n_addr_s, uint64_t now,
                      nnve_state_notify_fn *notify, void *aux)
{
    struct sncp_tsi_id id;
    struct sncp_addr addrs[SNCP_MAX_ADDRS];
    if (sncp_tsi_id_parse(tsi_s, &id) || n_addr_s > SNCP_MAX_ADDRS)
        return SNCP_E_INVALID_VALUE;
    if (type == SNCP_MSG_TSI_DEASSOCIATE && n_addr_s > 0)
        return SNCP_E_INVALID_VALUE;
    for (int i = 0; i < n_addr_s; i++)
        if (sncp_addr_parse(addr_s[i], &addrs[i]))
            return SNCP_E_INVALID_VALUE;
    struct nnve_tsi *found[8];
    unsigned n_found = 0, n_any = 0;
    struct nnve_hmap_iter it;
    for (struct nnve_tsi *t = nnve_hmap_first(&st->tsis, tsi_hash(&id), &it); t;
         t = nnve_hmap_next(&st->tsis, &it)) {
        if (!tsi_id_eq(&t->id, &id))
            continue;
        n_any++;
        if (t->hv->session && n_found < 8)
            found[n_found++] = t;
    }
    if (!n_any)
        return -ENOENT;
    if (!n_found)
        return -ENOTCONN;
    for (unsigned k = 0; k < n_found; k++) {
        struct nnve_tsi *t = found[k];
        struct nnve_hv *hv = t->hv;
        struct sncp_msg msg;
        sncp_msg_init(&msg, type, 0);
        msg.tsi = id;
        sncp_msg_set(&msg, SNCP_TLV_TSI_ID);
        if (type == SNCP_MSG_TSI_DEASSOCIATE) {
            tsi_remove(st, t, now, "operator");
        } else if (n_addr_s > 0) {
            struct sncp_addr keep[SNCP_MAX_ADDRS];
            unsigned nk = 0;
            for (unsigned i = 0; i < t->n_addrs; i++)
                if (addr_index(addrs, (unsigned)n_addr_s, &t->addrs[i]) < 0)
                    keep[nk++] = t->addrs[i];
            if (nk != t->n_addrs && !addrs_set(t, keep, nk)) {
                be_tsi(st, BE_UPDATE, t);
                tsi_log(t, "addresses-withdrawn", "operator");
                tsi_persist(st, t);
            }
            memcpy(msg.addrs, addrs, (size_t)n_addr_s * sizeof *addrs);
            msg.n_addrs = (uint8_t)n_addr_s;
        } else if (t->state == SNCP_TSI_ACTIVATED) {
            tsi_set_state(st, t, SNCP_TSI_ASSOCIATED);
            be_tsi(st, BE_DEACTIVATE, t);
            tsi_log(t, "deactivated", "operator");
            tsi_persist(st, t);
        }
        notify(aux, hv, &msg);
    }
    return (int)n_found;
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

json_t *nnve_state_show_tsis(const struct nnve_state *st)
{
    json_t *arr = json_array();
    struct nnve_tsi *t;
    for (size_t i = 0; (t = nnve_hmap_at(&st->tsis, &i)) != NULL;) {
        char tbuf[SNCP_TSI_ID_STRLEN];
        json_t *addrs = json_array();
        for (unsigned a = 0; a < t->n_addrs; a++) {
            char abuf[SNCP_ADDR_STRLEN];
            sncp_addr_format(&t->addrs[a], abuf, sizeof abuf);
            json_array_append_new(addrs, json_string(abuf));
        }
        const struct nnve_vap *vap = t->vc->vap;
        json_array_append_new(
            arr, json_pack("{s:s, s:o, s:o, s:s, s:s, s:s, s:i, s:o, s:b}", "tsi",
                           tsi_str(&t->id, tbuf, sizeof tbuf), "vn_id", vn_id_json(&vap->vn),
                           "vn_name", vn_name_json(&vap->vn), "port", t->hv->port->name,
                           "hypervisor", t->hv->identity, "state", sncp_tsi_state_name(t->state),
                           "tag", (int)vap->tag, "addresses", addrs, "migrating", t->migrating));
    }
    return arr;
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

static int load_vn_connection(void *aux, const char *identity, const struct nnve_vn *vn)
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
        vc->next = hv->vnconns;
        hv->vnconns = vc;
        hv->n_vnconns++;
        st->c.vn_connections++;
        return 0;
    }
    st->restoring = 0; /* a new VAP must be stored */
    r = vnconn_create(st, hv, vn, NULL, 0, 0, &vc);
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
    struct nnve_tsi *t = tsi_create(st, hv, vc, id, addrs, n_addrs);
    if (!t)
        return -ENOMEM;
    tsi_count_state(st, state, 1);
    t->state = state;
    t->migrating = migrating;
    if (migrating)
        st->c.tsis_migrating++;
    be_tsi(st, state == SNCP_TSI_ACTIVATED ? BE_ACTIVATE : BE_ASSOCIATE, t);
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
    st->store = store;
    st->rl = (struct snv_ratelimit)SNV_RATELIMIT_INIT(5, 20);
    nnve_hmap_init(&st->hvs);
    nnve_hmap_init(&st->ports);
    nnve_hmap_init(&st->vaps);
    nnve_hmap_init(&st->tsis);
    int r = sync_domains(st, cfg, now);
    if (r) {
        snprintf(err, errlen, "cannot build tag pools: %s", sncp_strerror(r));
        nnve_state_destroy(st);
        return r;
    }
    if (store) {
        static const struct nnve_store_loader loader = {
            .hv = load_hv,
            .vap = load_vap,
            .vap_hold = load_vap_hold,
            .vn_connection = load_vn_connection,
            .tsi = load_tsi,
        };
        if (be)
            be_count(st, be->cls->reconcile_begin(be));
        st->restoring = 1;
        r = nnve_store_load(store, &loader, st);
        st->restoring = 0;
        if (be)
            be_count(st, be->cls->reconcile_end(be));
        if (r) {
            snprintf(err, errlen, "cannot load the stored state: %s", sncp_strerror(r));
            nnve_state_destroy(st);
            return r;
        }
        /* Loaded VAPs nobody uses go into hold-down (what was left of a stored one, else a
         * full one); loaded hypervisors into hold. */
        struct nnve_vap *v;
        for (size_t i = 0; (v = nnve_hmap_at(&st->vaps, &i)) != NULL;) {
            if (!v->n_users)
                vap_hold(st, v, now, v->loaded_hold ? v->loaded_hold_ms : cfg->tag_hold_down_ms);
            else if (v->loaded_hold)
                store_count(st, nnve_store_vap_hold_del(st->store, v->domain->name, &v->vn));
            v->loaded_hold = 0;
        }
        struct nnve_hv *hv;
        for (size_t i = 0; (hv = nnve_hmap_at(&st->hvs, &i)) != NULL;) {
            hv->hold_until = now + cfg->hold_time_ms;
            if (!hv->hold_until)
                hv->hold_until = 1;
        }
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
    return 0;
}

void nnve_state_destroy(struct nnve_state *st)
{
    if (!st)
        return;
    struct nnve_tsi *t;
    for (size_t i = 0; (t = nnve_hmap_at(&st->tsis, &i)) != NULL;)
        tsi_free(t);
    struct nnve_hv *hv;
    for (size_t i = 0; (hv = nnve_hmap_at(&st->hvs, &i)) != NULL;) {
        for (struct nnve_vnconn *vc = hv->vnconns, *next; vc; vc = next) {
            next = vc->next;
            free(vc);
        }
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
    for (struct nnve_domain *d = st->domains, *next; d; d = next) {
        next = d->next;
        nnve_tagpool_destroy(d->pool);
        free(d->name);
        free(d);
    }
    nnve_hmap_uninit(&st->tsis);
    nnve_hmap_uninit(&st->hvs);
    nnve_hmap_uninit(&st->vaps);
    nnve_hmap_uninit(&st->ports);
    free(st);
}
