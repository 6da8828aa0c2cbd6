/* pairtab.h: the tag table of a significance domain shared by a ToR pair, pure rules.
 *
 * Two nnve-daemons serving one rack share one significance domain (PROTOCOL.md §17): a VN
 * must have one tag on both, and no tag may ever carry two VNs.  This module keeps one
 * side's view of the domain's bindings, indexed by tag: each row binds a tag to a VN and
 * says whether this side holds it (`mine`: a VAP, or a grant not yet used) and whether the
 * peer is known to hold it (`peer`).  The rules that keep the invariant without a working
 * peer session:
 *   - each side binds a *new* tag only from its own half of the pool (the allocator the
 *     lower half of the pool's VIDs, rounded up, the follower the rest);
 *   - a tag with a row is never bound again; a row is deleted only when neither side holds
 *     it and the peer has answered our RELEASE (it then no longer counts on us holding it);
 *   - a side adopts an existing row for a VN (sets `mine`) only when a side holds it; a
 *     row nobody holds (a tombstone waiting for the peer's word) is never adopted.
 * No I/O and no clock: the caller persists dirty rows and talks to the peer.
 */
#ifndef NNVE_PAIRTAB_H
#define NNVE_PAIRTAB_H 1

#include <stdint.h>

#include "backend-provider.h"
#include "tagpool.h"

enum nnve_pair_role {
    NNVE_PAIR_ALLOCATOR = 0, /* answers CLAIMs; owns the lower half */
    NNVE_PAIR_FOLLOWER = 1,  /* claims from the allocator while connected; upper half */
};

struct nnve_pair_row {
    struct nnve_vn vn; /* valid when `used` */
    uint8_t used;
    uint8_t mine;        /* this side holds the binding */
    uint8_t peer;        /* the peer holds it (as last known) */
    uint8_t unconfirmed; /* during the peer's SYNC: `peer` not re-announced yet */
    uint16_t releasing;  /* our RELEASEs of the VN sent on this session, not answered */
    uint8_t dirty;       /* changed since nnve_pairtab_clean() */
};

struct nnve_pairtab {
    enum nnve_pair_role role;
    uint8_t own[SNCP_MAX_VID + 1];    /* 1: in this side's half */
    uint8_t inpool[SNCP_MAX_VID + 1]; /* 1: in the domain's pool */
    unsigned pool_size, own_size;
    struct nnve_pair_row rows[SNCP_MAX_VID + 1];
    unsigned n_rows;
    unsigned n_dirty;
};

/* Sets up an empty table for `role` over the pool (ranges minus reserved, as the domain's
 * tag pool).  Returns 0 or -EINVAL (a range outside 1..4094). */
int nnve_pairtab_init(struct nnve_pairtab *t, enum nnve_pair_role role,
                      const struct nnve_tag_range *ranges, unsigned n_ranges,
                      const uint16_t *reserved, unsigned n_reserved);

/* Whether two VN identities are the same VN (by ID when either has one, else by name). */
int nnve_pairtab_vn_eq(const struct nnve_vn *a, const struct nnve_vn *b);

/* The tag of a row for vn that a side holds, preferring one this side holds; 0 if none. */
uint16_t nnve_pairtab_lookup(const struct nnve_pairtab *t, const struct nnve_vn *vn);

/* This side needs a tag for vn (a new VAP).  Adopts a held row, else, when `claim_first`
 * (a connected follower), returns SNCP_E_BUSY: ask the allocator; else binds a new tag of
 * this side's half (the first free of prefs[0..n), else the lowest free).  Returns 0 and
 * *tag (the row has `mine`), SNCP_E_BUSY, or SNCP_E_TAG_POOL_EXHAUSTED. */
int nnve_pairtab_acquire(struct nnve_pairtab *t, const struct nnve_vn *vn, const uint16_t *prefs,
                         unsigned n_prefs, int claim_first, uint16_t *tag);

/* The allocator answers the follower's CLAIM for vn: a row for vn that a side holds (never
 * a tombstone), else a new tag of its half; the row gets `peer`.  Returns 0 and *tag, or
 * SNCP_E_TAG_POOL_EXHAUSTED. */
int nnve_pairtab_grant(struct nnve_pairtab *t, const struct nnve_vn *vn, const uint16_t *prefs,
                       unsigned n_prefs, uint16_t *tag);

/* The follower got the allocator's grant of `tag` for vn.  Returns 0, or SNCP_E_CONFLICT
 * when this side binds tag to another VN (nothing changed), SNCP_E_INVALID_VALUE when tag
 * is outside the pool. */
int nnve_pairtab_granted(struct nnve_pairtab *t, const struct nnve_vn *vn, uint16_t tag);

/* This side stopped holding vn (its VAP ended).  Returns the tag whose `mine` was cleared,
 * or 0; the caller then sends RELEASE (a row nobody holds is kept until the answer). */
uint16_t nnve_pairtab_release(struct nnve_pairtab *t, const struct nnve_vn *vn);

/* The peer says it holds vn on tag (HOLD, or an entry of its SYNC).  Returns 0 (*split set
 * when this side has another row for vn: the VN got two tags during a partition),
 * SNCP_E_CONFLICT when this side binds tag to another VN, SNCP_E_INVALID_VALUE when tag
 * is outside the pool; nothing changes on failure. */
int nnve_pairtab_peer_hold(struct nnve_pairtab *t, const struct nnve_vn *vn, uint16_t tag,
                           int *split);

/* The peer's RELEASE of vn: its `peer` marks go (rows are deleted only on the answer to
 * our own RELEASE, so neither side can still count on a row the other has freed).
 * *tombstoned: rows that nobody holds now (send a RELEASE for vn).  Returns the tag this
 * side still holds for vn (the answer carries it), 0 if none, or SNCP_E_NO_SUCH_VN when no
 * row for vn exists. */
int nnve_pairtab_peer_release(struct nnve_pairtab *t, const struct nnve_vn *vn, int *tombstoned);

/* A RELEASE of vn went to the peer.  Only the answer to the last one may delete the
 * tombstones of vn: an earlier answer predates what we told the peer since (a HOLD). */
void nnve_pairtab_release_sent(struct nnve_pairtab *t, const struct nnve_vn *vn);

/* The answer to our RELEASE of vn: held_tag is the tag the peer still holds (0: none).
 * When it answers the last RELEASE sent, the tombstones of vn are deleted; the peer's row
 * is marked. */
void nnve_pairtab_release_answered(struct nnve_pairtab *t, const struct nnve_vn *vn,
                                   uint16_t held_tag);

/* The peer's SYNC: begin marks every `peer` unconfirmed, its HOLDs confirm, end clears
 * what stayed unconfirmed (rows nobody holds then wait for RELEASE). */
void nnve_pairtab_sync_begin(struct nnve_pairtab *t);
void nnve_pairtab_sync_end(struct nnve_pairtab *t);
/* The session ended: no RELEASE will be answered, and a SYNC of the peer that was under
 * way clears nothing (what was not re-announced yet stays held). */
void nnve_pairtab_session_lost(struct nnve_pairtab *t);

/* Rows nobody holds (RELEASE not answered yet): calls fn for each. */
void nnve_pairtab_foreach_tombstone(const struct nnve_pairtab *t,
                                    void (*fn)(void *aux, uint16_t tag, const struct nnve_vn *vn),
                                    void *aux);
/* Number of VNs that have more than one row (split during a partition). */
unsigned nnve_pairtab_splits(const struct nnve_pairtab *t);

/* This side holds vn on tag already (a VAP older than the table).  Returns 1 (row added or
 * marked), 0 (already so), SNCP_E_CONFLICT (tag bound to another VN) or
 * SNCP_E_INVALID_VALUE (outside the pool); nothing changes on failure. */
int nnve_pairtab_hold_local(struct nnve_pairtab *t, const struct nnve_vn *vn, uint16_t tag);

/* Loads a stored row (at start-up).  Returns 0 or SNCP_E_CONFLICT (tag already bound). */
int nnve_pairtab_load(struct nnve_pairtab *t, uint16_t tag, const struct nnve_vn *vn, int mine,
                      int peer);
/* Marks every row clean (after they were written). */
void nnve_pairtab_clean(struct nnve_pairtab *t);

#endif
