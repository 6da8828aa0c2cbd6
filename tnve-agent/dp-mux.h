/* dp-mux.h: one dataplane shared by the reconcilers of a dual-homed host.
 *
 * Each nNVE's reconciler gets a leg of the mux as its dataplane (tnve_dp_mux_class).  The
 * mux remembers which tag each leg wants on each vNIC port and applies one: the tag of the
 * best-ranked leg holding the port (ranked by the caller: the active nNVE first, then the
 * other nNVEs whose session is up, in configuration order).  A port held by two legs with
 * the same tag is set once and stays set while either holds it, so a leg that lets go
 * (its nNVE failed, or swept an active-standby TSI it no longer serves) changes nothing on
 * the port.  Two legs wanting different tags on one port is a tag mismatch between the
 * nNVEs (they must agree on one tag per VN): logged as an error once per port and episode,
 * counted, and resolved by the rank (the active nNVE's tag), never by a mix.
 *
 * Such a port follows the rank: when the preference moves (the bond failed over to the other
 * switch, a session went down, the operator chose), tnve_dp_mux_rerank() puts the newly
 * preferred leg's tag on the port ("retag vn=... tag X -> Y cause=..." at info), so a VN
 * bound under two tags (a partition of a ToR pair, PROTOCOL.md section 17.6) keeps its
 * traffic on the switch the host's traffic goes to.
 */
#ifndef TNVE_DP_MUX_H
#define TNVE_DP_MUX_H 1

#include <stdint.h>

#include <jansson.h>

#include "dataplane-provider.h"

struct tnve_dp_mux;

/* The rank of leg `leg` (lower is preferred). */
typedef unsigned tnve_dp_mux_rank_fn(void *aux, unsigned leg);
/* Writes into buf (cap bytes, NUL-terminated) the name of the VN leg `leg` binds to `tag`
 * ("-" when unknown); for log lines only. */
typedef void tnve_dp_mux_vn_name_fn(void *aux, unsigned leg, uint16_t tag, char *buf, size_t cap);

/* The leg whose tag goes on a port (pure): among the n legs with want[i] != 0 (0: the leg
 * does not hold the port), the one of lowest rank[i], the first of equal ranks; -1 when no
 * leg holds the port. */
int tnve_dp_mux_choose(const uint16_t *want, const unsigned *rank, unsigned n);

/* The reconcilers call it through their leg (struct tnve_dp *); create is not used. */
extern const struct tnve_dp_class tnve_dp_mux_class;

/* A mux of n_legs legs over the backend (cls, dp), which stays the caller's.  Legs are
 * named for log lines by names[i] (copied).  NULL on allocation failure. */
struct tnve_dp_mux *tnve_dp_mux_create(const struct tnve_dp_class *cls, struct tnve_dp *dp,
                                       unsigned n_legs, const char *const *names,
                                       tnve_dp_mux_rank_fn *rank, void *aux);
/* Frees the mux and its legs (the backend keeps its state).  Accepts NULL. */
void tnve_dp_mux_destroy(struct tnve_dp_mux *m);
/* The dataplane handle of leg i, for tnve_dp_mux_class. */
struct tnve_dp *tnve_dp_mux_leg(struct tnve_dp_mux *m, unsigned i);
/* Names VNs in the retag log lines through fn(aux, ...) (NULL: "-"). */
void tnve_dp_mux_set_vn_name(struct tnve_dp_mux *m, tnve_dp_mux_vn_name_fn *fn);
/* The ranks changed (a session went up or down, the active nNVE changed): re-applies the
 * preferred tag of every port whose legs disagree.  `cause` ("uplink", "session",
 * "operator") goes into the retag log lines. */
void tnve_dp_mux_rerank(struct tnve_dp_mux *m, const char *cause);
/* Counters: ports, mismatched_ports, tag_mismatches, dataplane_errors.  New reference. */
json_t *tnve_dp_mux_json(const struct tnve_dp_mux *m);
/* Tag mismatches seen since start. */
uint64_t tnve_dp_mux_mismatches(const struct tnve_dp_mux *m);

#endif
