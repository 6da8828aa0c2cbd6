/* pair.h: the ToR pair: two nnve-daemons serving one rack share one significance domain.
 *
 * The pair session is an SNCP session (TLS 1.3, mutual certificate authentication, the
 * peer's identity fixed by `peer_identity`) between the two daemons: the follower connects
 * to the allocator's pair listener.  Over it the two keep their tag tables (pairtab.h) in
 * step: the follower claims the tag of a VN from the allocator while the session is up,
 * each side tells the other which bindings it holds and releases, and both resynchronise
 * after a partition.  While the session is down each side binds new tags only from its own
 * half of the domain's pool.  PROTOCOL.md §17 is the protocol; this module runs it, hooks
 * into the state as the domain's tag policy, and persists the table in the state store
 * (written in the state's group transaction; messages to the peer leave only after it is
 * committed, nnve_pair_flush()).
 */
#ifndef NNVE_PAIR_H
#define NNVE_PAIR_H 1

#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "config.h"
#include "state.h"
#include "store.h"

struct nnve_pair;

struct nnve_pair_counters {
    uint64_t sessions_up;   /* pair sessions that completed HELLO */
    uint64_t sessions_down; /* ... that ended */
    uint64_t peer_refused;  /* handshakes or HELLOs refused (identity, domain) */
    uint64_t peer_errors;   /* sessions closed for a malformed or contradicting message */
    uint64_t claims_sent, claims_granted, claims_failed;
    uint64_t grants; /* allocator: claims answered with a tag */
    uint64_t holds_sent, holds_received;
    uint64_t releases_sent, releases_received;
    uint64_t partition_binds; /* new tags bound from our half while the session was down */
    uint64_t conflicts;       /* peer claims of a tag bound to another VN (refused) */
    uint64_t splits_seen;     /* VNs found with two tags after a partition */
    uint64_t syncs;           /* peer resynchronisations completed */
};

/* Creates the pair of cfg->pair (nothing when there is no [pair] section: *out = NULL):
 * loads the table from the store, installs the tag policy in st, and listens (allocator)
 * or starts connecting (follower).  Returns 0, or < 0 with the reason in err. */
int nnve_pair_create(uv_loop_t *loop, const struct nnve_config *cfg, struct nnve_state *st,
                     struct nnve_store *store, struct nnve_pair **out, char *err, size_t errlen);
/* After the group commit: sends what waits for it (responses, holds, releases, claims).
 * commit_failed: the table is reloaded from the store and the session restarted. */
void nnve_pair_flush(struct nnve_pair *p, int commit_failed);
/* Closes the listener, the session and the timer (the loop then finishes them). */
void nnve_pair_shutdown(struct nnve_pair *p);
/* Frees it (after the loop closed its handles).  Accepts NULL. */
void nnve_pair_destroy(struct nnve_pair *p);
/* The pair listener's port (allocator), 0 otherwise. */
uint16_t nnve_pair_port(const struct nnve_pair *p);
/* {"domain", "role", "peer", "peer_identity", "state", "half": [lo, hi]..., "rows": [...],
 *  "splits", "counters": {...}}; caller owns it. */
json_t *nnve_pair_show(const struct nnve_pair *p);
const struct nnve_pair_counters *nnve_pair_counters(const struct nnve_pair *p);
/* 1 while the pair session is up (HELLO done). */
int nnve_pair_connected(const struct nnve_pair *p);
/* 1 while a claim of vn is on its way or waits for its answer (session up); 0 for p
 * NULL. */
int nnve_pair_claim_pending(const struct nnve_pair *p, const struct nnve_vn *vn);

#endif
