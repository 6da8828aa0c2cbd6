/* state.h: the nNVE's RFC 8394 state machines, pure: no I/O, time passed in.
 *
 * Holds the hypervisors (by certificate identity, each on a port), the VAPs (one per
 * significance domain and VN, with the VN's local tag), each hypervisor's VN connections,
 * and the TSI instances (keyed by TSI_ID + hypervisor identity: Associated or Activated,
 * with addresses and the migrating mark).  Requests from agents, session loss and its hold
 * timer, SYNC mark-and-sweep, and operator actions (Req-6, Req-9) go through here; every
 * change is handed to the dataplane backend and to the store (when one is attached) and
 * logged at info.  The transition rules are those of proto/PROTOCOL.md.
 */
#ifndef NNVE_STATE_H
#define NNVE_STATE_H 1

#include <stdint.h>

#include <jansson.h>

#include "backend-provider.h"
#include "config.h"
#include "sncp-msg.h"
#include "store.h"

struct nnve_state;
struct nnve_hv;

/* What a request produced, for its RESPONSE. */
struct nnve_result {
    uint16_t flags; /* SNCP_F_IMPLICIT_CONNECT when the VN got connected */
    uint8_t n_tags;
    struct sncp_tag tags[1];
    uint8_t has_tsi_state;
    uint8_t tsi_state;
    uint8_t has_vn;
    struct nnve_vn vn;
    uint16_t error_tlv;      /* on failure: the TLV at fault, or 0 */
    const char *reason;      /* on failure: static text, or NULL */
    uint32_t retry_after_ms; /* on failure (BUSY): RETRY_AFTER, or 0 */
    struct nnve_vn busy_vn;  /* ... and with it, the VN whose tag the tag policy refused */
};

struct nnve_state_counters {
    uint64_t hypervisors, hypervisors_held;
    uint64_t vaps, vn_connections;
    uint64_t tsis_associated, tsis_activated, tsis_migrating;
    uint64_t transitions;     /* TSI state changes */
    uint64_t hold_expired;    /* hypervisors whose hold timer ran out */
    uint64_t sync_swept_tsis; /* TSIs removed by SYNC_END */
    uint64_t sync_swept_vns;
    uint64_t backend_errors;
    uint64_t store_errors;
    uint64_t degraded;         /* 1 while in degraded mode */
    uint64_t degraded_entered; /* times degraded mode was entered */
    uint64_t reverts;          /* failed groups undone by reloading the stored state */
};

/* Creates the state from `cfg` (the config must outlive the state, or be replaced through
 * nnve_state_reconfigure).  With a store, loads what it holds and replays it to the backend
 * between reconcile_begin and reconcile_end; loaded hypervisors start in hold (they must
 * reconnect within hold_time).  be and store may be NULL.  Returns 0 and *out, or < 0
 * with the reason in err. */
int nnve_state_create(const struct nnve_config *cfg, struct nnve_backend *be,
                      struct nnve_store *store, uint64_t now, struct nnve_state **out, char *err,
                      size_t errlen);
/* Frees everything, changing nothing in the backend or store.  Accepts NULL. */
void nnve_state_destroy(struct nnve_state *st);

/* Switches to a new config (SIGHUP): policy, limits, timers and tag pools.  Tags in use
 * stay with their VNs even when a new pool no longer contains them (logged).  Returns 0 or
 * < 0 (state unchanged). */
int nnve_state_reconfigure(struct nnve_state *st, const struct nnve_config *cfg, uint64_t now);

/* A session of `identity` is up on `port`: cancels its hold timer; a changed port moves
 * its VN connections and TSIs (RFC 8394 §3.2).  A port in another significance domain
 * cannot keep the tags: the VN connections (and their TSIs) are removed and remembered for
 * nnve_state_hv_moved_notify() (PROTOCOL.md §6.9).  Returns 0 and *out,
 * SNCP_E_NOT_AUTHORIZED when the port is in no domain, or -ENOMEM. */
int nnve_state_hv_up(struct nnve_state *st, const char *identity, const char *port, uint64_t now,
                     struct nnve_hv **out);
/* Its session is gone: state is kept until now + hold_time, then removed. */
void nnve_state_hv_down(struct nnve_state *st, struct nnve_hv *hv, uint64_t now);
struct nnve_hv *nnve_state_hv_find(const struct nnve_state *st, const char *identity);
/* Iterates hypervisors: start with *pos = 0; NULL at the end. */
struct nnve_hv *nnve_state_hv_next(const struct nnve_state *st, size_t *pos);
const char *nnve_state_hv_identity(const struct nnve_hv *hv);
const char *nnve_state_hv_port(const struct nnve_hv *hv);
unsigned nnve_state_hv_tsis(const struct nnve_hv *hv);
unsigned nnve_state_hv_vns(const struct nnve_hv *hv);
/* 0 while connected, else the absolute hold expiry. */
uint64_t nnve_state_hv_hold_until(const struct nnve_hv *hv);
/* The server's session object for the hypervisor (NULL: none). */
void nnve_state_hv_set_session(struct nnve_hv *hv, void *session);
void *nnve_state_hv_session(const struct nnve_hv *hv);

/* Applies one request of hypervisor `hv` (VN_CONNECT, VN_DISCONNECT, TSI_*, SYNC_*).
 * Returns 0 with *res filled for the response, or a negative SNCP_E_* with res->error_tlv
 * and res->reason; a failed request changes nothing.  SNCP_E_INTERNAL: a backend or store
 * operation failed (this request's, or an earlier one's of the same group), or the state is
 * degraded; the group's changes are undone by nnve_state_commit(). */
int nnve_state_request(struct nnve_state *st, struct nnve_hv *hv, const struct sncp_msg *req,
                       uint64_t now, struct nnve_result *res);

/* Ends a group of changes (one event-loop iteration) before its responses are sent.
 * Returns 0: committed (or nothing to commit, or degraded and nothing stored).
 * SNCP_E_INTERNAL: a backend or store operation of the group failed, or the commit did: the
 * transaction is rolled back and memory and dataplane are rebuilt from the store, so none of
 * the group's changes remain; every success response of the group must become an error.
 * Hypervisor objects are new afterwards: find them again by identity (sessions stay bound).
 * A store failure, or a rebuild that fails, enters degraded mode (logged at error). */
int nnve_state_commit(struct nnve_state *st, uint64_t now);
/* In degraded mode, tries to leave it: reloads memory from the store first when an earlier
 * rebuild failed (new hypervisor objects, as after nnve_state_commit), then rewrites the
 * whole store from memory in one transaction and, when a dataplane operation failed
 * meanwhile, replays the dataplane.
 * Returns 0 (not degraded any more; logged at info) or < 0 (still degraded). */
int nnve_state_recover(struct nnve_state *st, uint64_t now);
int nnve_state_degraded(const struct nnve_state *st);
/* How many times the state was rebuilt from the store (each makes new hypervisor objects). */
uint64_t nnve_state_reverts(const struct nnve_state *st);

/* Who decides the tags of one significance domain instead of its local pool: the ToR pair
 * (pair.c, PROTOCOL.md §17).  acquire gives the tag of a new VAP of vn: 0 and *tag, or
 * SNCP_E_BUSY (being agreed with the peer: *retry_after_ms set) or
 * SNCP_E_TAG_POOL_EXHAUSTED.  release: the VAP of vn, on tag, ended (its hold-down ran
 * out). */
struct nnve_tag_policy {
    const char *domain;
    int (*acquire)(void *aux, const struct nnve_vn *vn, const uint16_t *prefs, unsigned n_prefs,
                   uint16_t *tag, uint32_t *retry_after_ms);
    void (*release)(void *aux, const struct nnve_vn *vn, uint16_t tag);
    void *aux;
};
/* Calls fn for each VAP of `domain` (lingering ones included) with its VN and tag. */
void nnve_state_foreach_vap(const struct nnve_state *st, const char *domain,
                            void (*fn)(void *aux, const struct nnve_vn *vn, uint16_t tag),
                            void *aux);
/* Sets (or with NULL clears) the policy; *p must outlive the state or the next call. */
void nnve_state_set_tag_policy(struct nnve_state *st, const struct nnve_tag_policy *p);

/* Runs hold timers and tag hold-downs.  Returns the next deadline, or UINT64_MAX. */
uint64_t nnve_state_tick(struct nnve_state *st, uint64_t now);

/* Operator actions.  Each applies the change here and calls notify() with the request to
 * send to each affected hypervisor that has a session; a held hypervisor (session lost,
 * hold timer running) is changed too and learns it when it resynchronises.  `vn` is a VN
 * ID in decimal or a VN name; `tsi` is "<uuid>/<mac>"; addrs (may be empty) as text.
 * Return the number of notifications (>= 0), or -ENOENT (no such hypervisor / VN / TSI),
 * SNCP_E_INVALID_VALUE (bad text; err says). */
typedef void nnve_state_notify_fn(void *aux, struct nnve_hv *hv, struct sncp_msg *msg);
/* After nnve_state_hv_up() moved hv to a port in another domain: hands notify() a
 * VN_DISCONNECT for each VN connection the move removed (the agent then connects again and
 * gets the new domain's tags, §6.9), and forgets them.  Returns how many. */
unsigned nnve_state_hv_moved_notify(struct nnve_state *st, struct nnve_hv *hv,
                                    nnve_state_notify_fn *notify, void *aux);
int nnve_state_op_vn_disconnect(struct nnve_state *st, const char *identity, const char *vn,
                                uint64_t now, nnve_state_notify_fn *notify, void *aux);
int nnve_state_op_tsi(struct nnve_state *st, enum sncp_msg_type type, const char *tsi,
                      const char *const *addrs, int n_addrs, uint64_t now,
                      nnve_state_notify_fn *notify, void *aux);
/* Operator address change (PROTOCOL.md §9.3 row 24): TSI_UPDATE `op` ("add", "remove",
 * "replace") with addrs on every instance of `tsi`, checked like a TSI_UPDATE from the tNVE
 * (the hypervisor's address limit, addresses held by other TSIs) before anything changes;
 * then notify() gets the TSI_UPDATE for each instance whose hypervisor has a session.
 * Returns the number of notifications (>= 0), -ENOENT, SNCP_E_INVALID_VALUE (bad text or
 * address), SNCP_E_RESOURCE_LIMIT or SNCP_E_CONFLICT (with *reason; nothing changed). */
int nnve_state_op_tsi_update(struct nnve_state *st, const char *tsi, const char *op,
                             const char *const *addrs, int n_addrs, nnve_state_notify_fn *notify,
                             void *aux, const char **reason);

/* Applies the configuration's grants to the state (after nnve_state_reconfigure, and at
 * start after the load): a hypervisor loses every VN connection (and its TSIs) whose VN it
 * is no longer granted, and all of them when its identity is no longer configured or its
 * port is no longer the configured one (or in the same domain).  Each removal is logged
 * (`policy: withdrawn ...`) and, for a hypervisor with a session, handed to notify() as a
 * VN_DISCONNECT, as an operator disconnect is.  notify may be NULL.  Returns the number of
 * VN connections removed. */
int nnve_state_enforce(struct nnve_state *st, uint64_t now, nnve_state_notify_fn *notify,
                       void *aux);

/* Show commands (JSON arrays of objects; caller owns the result). */
json_t *nnve_state_show_tsis(const struct nnve_state *st);
/* A page of TSI instances for "tsi/show": those matching every filter that is set (NULL,
 * or state -1, matches anything; vn is a VN ID in decimal or a VN name), at most `limit`
 * (0: NNVE_SHOW_PAGE_DEFAULT) in (TSI, hypervisor) order, starting after the cursor
 * `after` (the "next" of a previous page) or from the beginning. */
enum { NNVE_SHOW_PAGE_DEFAULT = 1000, NNVE_SHOW_PAGE_MAX = 10000 };
struct nnve_tsi_filter {
    const char *hypervisor;
    const char *port;
    const char *vn;
    int state;
    size_t limit;
    const char *after;
};
#define NNVE_TSI_FILTER_INIT                                                                       \
    {                                                                                              \
        .state = -1                                                                                \
    }
/* Sets filter `key` (hypervisor, port, vn, state, limit, after) to `value` (kept by
 * reference).  Returns 0, -ENOENT for an unknown key, -EINVAL for a bad value. */
int nnve_state_tsi_filter_set(struct nnve_tsi_filter *f, const char *key, const char *value);
/* Returns {"items": [rows as in nnve_state_show_tsis], "next": cursor or null when this
 * is the last page}; NULL when out of memory.  Caller owns it. */
json_t *nnve_state_show_tsis_page(const struct nnve_state *st, const struct nnve_tsi_filter *f);
/* The NVE-to-NVE mapping table (draft-ietf-nvo3-nve-nve-mapping's view of the local TSIs):
 * per TSI instance {tsi, vn_id, vn_name, vni, macs, ips, vtep, state, hypervisor}, with
 * `vtep` the local VTEP address (NULL or "": null).  The whole table (NULL when out of
 * memory), or a page as nnve_state_show_tsis_page() gives.  Caller owns the result. */
json_t *nnve_state_show_mappings(const struct nnve_state *st, const char *vtep);
json_t *nnve_state_show_mappings_page(const struct nnve_state *st, const struct nnve_tsi_filter *f,
                                      const char *vtep);
json_t *nnve_state_show_vns(const struct nnve_state *st);
json_t *nnve_state_show_tags(const struct nnve_state *st, uint64_t now);

void nnve_state_counters(const struct nnve_state *st, struct nnve_state_counters *c);
/* Tags in use in each domain: calls fn for each. */
void nnve_state_foreach_domain(const struct nnve_state *st, uint64_t now,
                               void (*fn)(void *aux, const char *domain, unsigned size,
                                          unsigned used, unsigned held),
                               void *aux);

/* Sets VN_ID and VN_NAME of m from vn (each when known). */
void nnve_vn_to_msg(struct sncp_msg *m, const struct nnve_vn *vn);

#endif
