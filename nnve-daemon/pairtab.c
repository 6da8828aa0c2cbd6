/* pairtab.c: a ToR pair's shared tag table, pure rules (see pairtab.h). */
#include "pairtab.h"

#include <errno.h>
#include <string.h>

#include "sncp-error.h"

int nnve_pairtab_init(struct nnve_pairtab *t, enum nnve_pair_role role,
                      const struct nnve_tag_range *ranges, unsigned n_ranges,
                      const uint16_t *reserved, unsigned n_reserved)
{
    memset(t, 0, sizeof *t);
    t->role = role;
    for (unsigned i = 0; i < n_ranges; i++) {
        if (ranges[i].lo < SNCP_MIN_VID || ranges[i].hi > SNCP_MAX_VID ||
            ranges[i].lo > ranges[i].hi)
            return -EINVAL;
        for (unsigned v = ranges[i].lo; v <= ranges[i].hi; v++)
            t->inpool[v] = 1;
    }
    for (unsigned i = 0; i < n_reserved; i++)
        if (reserved[i] >= SNCP_MIN_VID && reserved[i] <= SNCP_MAX_VID)
            t->inpool[reserved[i]] = 0;
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++)
        t->pool_size += t->inpool[v];
    /* The allocator's half: the lowest ceil(n/2) VIDs of the pool; the follower's: the rest.
     * Both sides compute it from the same [domain] tags, so the halves never overlap. */
    unsigned low = (t->pool_size + 1) / 2, seen = 0;
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++) {
        if (!t->inpool[v])
            continue;
        int in_low = seen++ < low;
        t->own[v] = (uint8_t)(role == NNVE_PAIR_ALLOCATOR ? in_low : !in_low);
        t->own_size += t->own[v];
    }
    return 0;
}

int nnve_pairtab_vn_eq(const struct nnve_vn *a, const struct nnve_vn *b)
{
    if (a->has_id || b->has_id)
        return a->has_id && b->has_id && a->id == b->id;
    return !strcmp(a->name, b->name);
}

static void touch(struct nnve_pairtab *t, uint16_t tag)
{
    if (!t->rows[tag].dirty) {
        t->rows[tag].dirty = 1;
        t->n_dirty++;
    }
}

static void row_set(struct nnve_pairtab *t, uint16_t tag, const struct nnve_vn *vn, int mine,
                    int peer)
{
    struct nnve_pair_row *r = &t->rows[tag];
    if (!r->used) {
        r->used = 1;
        r->vn = *vn;
        t->n_rows++;
    }
    r->mine = (uint8_t)mine;
    r->peer = (uint8_t)peer;
    touch(t, tag);
}

static void row_delete(struct nnve_pairtab *t, uint16_t tag)
{
    struct nnve_pair_row *r = &t->rows[tag];
    if (!r->used)
        return;
    uint8_t dirty = r->dirty;
    memset(r, 0, sizeof *r);
    r->dirty = dirty;
    t->n_rows--;
    touch(t, tag);
}

/* Whether the peer's word that it binds `tag` to vn may stand: nothing here binds the tag
 * to another VN, or only a record of the peer's own binding of a tag of its half, which
 * the peer (its owner) has changed since (its release and our record's clean-up crossed). */
static int peer_may_bind(struct nnve_pairtab *t, const struct nnve_vn *vn, uint16_t tag)
{
    struct nnve_pair_row *r = &t->rows[tag];
    if (!r->used || nnve_pairtab_vn_eq(&r->vn, vn))
        return 1;
    if (r->mine || t->own[tag])
        return 0;
    row_delete(t, tag);
    return 1;
}

/* The held row of vn: one this side holds first, then one the peer holds (own half
 * first); 0 if none. */
uint16_t nnve_pairtab_lookup(const struct nnve_pairtab *t, const struct nnve_vn *vn)
{
    uint16_t peer_own = 0, peer_other = 0;
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++) {
        const struct nnve_pair_row *r = &t->rows[v];
        if (!r->used || !nnve_pairtab_vn_eq(&r->vn, vn))
            continue;
        if (r->mine)
            return (uint16_t)v;
        if (r->peer && t->own[v] && !peer_own)
            peer_own = (uint16_t)v;
        else if (r->peer && !peer_other)
            peer_other = (uint16_t)v;
    }
    return peer_own ? peer_own : peer_other;
}

/* A new tag of this side's half: the first free preference, else the lowest free. */
static int bind_new(struct nnve_pairtab *t, const uint16_t *prefs, unsigned n_prefs, uint16_t *tag)
{
    for (unsigned i = 0; i < n_prefs; i++)
        if (prefs[i] >= SNCP_MIN_VID && prefs[i] <= SNCP_MAX_VID && t->own[prefs[i]] &&
            !t->rows[prefs[i]].used) {
            *tag = prefs[i];
            return 0;
        }
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++)
        if (t->own[v] && !t->rows[v].used) {
            *tag = (uint16_t)v;
            return 0;
        }
    return SNCP_E_TAG_POOL_EXHAUSTED;
}

int nnve_pairtab_acquire(struct nnve_pairtab *t, const struct nnve_vn *vn, const uint16_t *prefs,
                         unsigned n_prefs, int claim_first, uint16_t *tag)
{
    uint16_t v = nnve_pairtab_lookup(t, vn);
    if (v) {
        if (!t->rows[v].mine)
            row_set(t, v, vn, 1, t->rows[v].peer);
        *tag = v;
        return 0;
    }
    if (claim_first)
        return SNCP_E_BUSY;
    int r = bind_new(t, prefs, n_prefs, &v);
    if (r)
        return r;
    row_set(t, v, vn, 1, 0);
    *tag = v;
    return 0;
}

int nnve_pairtab_grant(struct nnve_pairtab *t, const struct nnve_vn *vn, const uint16_t *prefs,
                       unsigned n_prefs, uint16_t *tag)
{
    /* A tombstone (nobody holds it, our RELEASE is unanswered) is not given again: the
     * answer would delete it under the new holder. */
    uint16_t v = nnve_pairtab_lookup(t, vn);
    if (!v) {
        int r = bind_new(t, prefs, n_prefs, &v);
        if (r)
            return r;
    }
    row_set(t, v, vn, v && t->rows[v].used ? t->rows[v].mine : 0, 1);
    *tag = v;
    return 0;
}

int nnve_pairtab_granted(struct nnve_pairtab *t, const struct nnve_vn *vn, uint16_t tag)
{
    if (tag < SNCP_MIN_VID || tag > SNCP_MAX_VID || !t->inpool[tag])
        return SNCP_E_INVALID_VALUE;
    if (!peer_may_bind(t, vn, tag))
        return SNCP_E_CONFLICT;
    /* The allocator holds it or will keep it until our RELEASE: count it as held. */
    row_set(t, tag, vn, 1, 1);
    return 0;
}

uint16_t nnve_pairtab_release(struct nnve_pairtab *t, const struct nnve_vn *vn)
{
    uint16_t released = 0;
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++) {
        struct nnve_pair_row *r = &t->rows[v];
        if (r->used && r->mine && nnve_pairtab_vn_eq(&r->vn, vn)) {
            row_set(t, (uint16_t)v, vn, 0, r->peer);
            released = (uint16_t)v;
        }
    }
    return released;
}

int nnve_pairtab_peer_hold(struct nnve_pairtab *t, const struct nnve_vn *vn, uint16_t tag,
                           int *split)
{
    *split = 0;
    if (tag < SNCP_MIN_VID || tag > SNCP_MAX_VID || !t->inpool[tag])
        return SNCP_E_INVALID_VALUE;
    struct nnve_pair_row *r = &t->rows[tag];
    if (!peer_may_bind(t, vn, tag))
        return SNCP_E_CONFLICT;
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++)
        if (v != tag && t->rows[v].used && nnve_pairtab_vn_eq(&t->rows[v].vn, vn))
            *split = 1;
    row_set(t, tag, vn, r->used ? r->mine : 0, 1);
    r->unconfirmed = 0;
    return 0;
}

int nnve_pairtab_peer_release(struct nnve_pairtab *t, const struct nnve_vn *vn, int *tombstoned)
{
    int found = 0;
    uint16_t held = 0;
    *tombstoned = 0;
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++) {
        struct nnve_pair_row *r = &t->rows[v];
        if (!r->used || !nnve_pairtab_vn_eq(&r->vn, vn))
            continue;
        found = 1;
        if (r->mine)
            held = (uint16_t)v;
        else if (r->peer)
            (*tombstoned)++;
        if (r->peer)
            row_set(t, (uint16_t)v, vn, r->mine, 0);
    }
    if (!found)
        return SNCP_E_NO_SUCH_VN;
    return held;
}

void nnve_pairtab_release_sent(struct nnve_pairtab *t, const struct nnve_vn *vn)
{
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++)
        if (t->rows[v].used && nnve_pairtab_vn_eq(&t->rows[v].vn, vn) &&
            t->rows[v].releasing < UINT16_MAX)
            t->rows[v].releasing++;
}

void nnve_pairtab_release_answered(struct nnve_pairtab *t, const struct nnve_vn *vn,
                                   uint16_t held_tag)
{
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++) {
        struct nnve_pair_row *r = &t->rows[v];
        if (!r->used || !nnve_pairtab_vn_eq(&r->vn, vn))
            continue;
        if (r->releasing)
            r->releasing--;
        /* Only tombstones go, and only on the answer to our last RELEASE: a `peer` mark set
         * after it left (a grant) is newer than the answer, a stale one is cleared by the
         * next SYNC. */
        if (v == held_tag)
            row_set(t, (uint16_t)v, vn, r->mine, 1);
        else if (!r->mine && !r->peer && !r->releasing)
            row_delete(t, (uint16_t)v);
    }
}

void nnve_pairtab_sync_begin(struct nnve_pairtab *t)
{
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++)
        t->rows[v].unconfirmed = t->rows[v].used && t->rows[v].peer;
}

void nnve_pairtab_sync_end(struct nnve_pairtab *t)
{
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++) {
        struct nnve_pair_row *r = &t->rows[v];
        if (r->used && r->unconfirmed)
            row_set(t, (uint16_t)v, &r->vn, r->mine, 0);
        r->unconfirmed = 0;
    }
}

void nnve_pairtab_session_lost(struct nnve_pairtab *t)
{
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++) {
        t->rows[v].unconfirmed = 0;
        t->rows[v].releasing = 0;
    }
}

void nnve_pairtab_foreach_tombstone(const struct nnve_pairtab *t,
                                    void (*fn)(void *aux, uint16_t tag, const struct nnve_vn *vn),
                                    void *aux)
{
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++) {
        const struct nnve_pair_row *r = &t->rows[v];
        if (r->used && !r->mine && !r->peer)
            fn(aux, (uint16_t)v, &r->vn);
    }
}

unsigned nnve_pairtab_splits(const struct nnve_pairtab *t)
{
    unsigned n = 0;
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++) {
        if (!t->rows[v].used)
            continue;
        for (unsigned w = SNCP_MIN_VID; w < v; w++)
            if (t->rows[w].used && nnve_pairtab_vn_eq(&t->rows[w].vn, &t->rows[v].vn)) {
                n++;
                break;
            }
    }
    return n;
}

int nnve_pairtab_hold_local(struct nnve_pairtab *t, const struct nnve_vn *vn, uint16_t tag)
{
    if (tag < SNCP_MIN_VID || tag > SNCP_MAX_VID || !t->inpool[tag])
        return SNCP_E_INVALID_VALUE;
    struct nnve_pair_row *r = &t->rows[tag];
    if (r->used && !nnve_pairtab_vn_eq(&r->vn, vn))
        return SNCP_E_CONFLICT;
    if (r->used && r->mine)
        return 0;
    row_set(t, tag, vn, 1, r->used ? r->peer : 0);
    return 1;
}

int nnve_pairtab_load(struct nnve_pairtab *t, uint16_t tag, const struct nnve_vn *vn, int mine,
                      int peer)
{
    if (tag < SNCP_MIN_VID || tag > SNCP_MAX_VID)
        return SNCP_E_INVALID_VALUE;
    if (t->rows[tag].used)
        return SNCP_E_CONFLICT;
    row_set(t, tag, vn, !!mine, !!peer);
    t->rows[tag].dirty = 0;
    t->n_dirty--;
    return 0;
}

void nnve_pairtab_clean(struct nnve_pairtab *t)
{
    for (unsigned v = SNCP_MIN_VID; v <= SNCP_MAX_VID; v++)
        t->rows[v].dirty = 0;
    t->n_dirty = 0;
}
