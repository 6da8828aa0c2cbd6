/* reconcile.h: the agent's reconciler: desired TSI state (from libvirt) vs the state the
 * nNVE acknowledged, converged by SNCP requests.
 *
 * The reconciler holds every tracked domain, its TSIs (one per vNIC that has a VN) and the
 * VNs they use.  Libvirt events and listings only change the desired state and wake it;
 * tnve_rec_run() then sends what closes the gap, never more than one request per TSI or VN
 * at a time, and retries failures with bounded, jittered exponential backoff.  The first
 * TSI of a VN needing Associated is preceded by VN_CONNECT (with PREFERRED_TAG = the last
 * tag known for the VN); when no TSI of a VN remains, VN_DISCONNECT follows.
 *
 * After (re)connecting to the nNVE, once the domain inventory is complete: SYNC_BEGIN, then
 * VN_CONNECT and TSI_ASSOCIATE/TSI_ACTIVATE for everything desired (PREFERRED_TAG = last
 * known tag, so re-announcing changes nothing), then SYNC_END, which sweeps the rest.
 * nNVE-initiated VN_DISCONNECT / TSI_DEACTIVATE / TSI_DEASSOCIATE / TSI_UPDATE are
 * answered SUCCESS and converged back after a backoff.  The last tag of each VN is kept in
 * a small state file so that an agent restart keeps tags stable.
 *
 * No I/O and no clock: requests leave through `ops->send`, time is a parameter.  The
 * dataplane backend (optional) gets the tag of each Activated TSI's target device.
 */
#ifndef TNVE_RECONCILE_H
#define TNVE_RECONCILE_H 1

#include <stdint.h>

#include <jansson.h>

#include "dataplane-provider.h"
#include "domxml.h"
#include "events.h"
#include "sncp-msg.h"

struct tnve_rec;

struct tnve_rec_ops {
    /* Sends a request (the transport fills in the xid).  Returns > 0, or a negative error
     * when nothing was sent (the reconciler retries later). */
    int64_t (*send)(void *aux, struct sncp_msg *msg, uint64_t cookie);
    /* Answers a request the nNVE sent.  Returns 0 or < 0. */
    int (*respond)(void *aux, const struct sncp_msg *req, struct sncp_msg *rsp);
    /* The reconciler has work: call tnve_rec_run() soon (not from within this callback). */
    void (*wake)(void *aux);
    /* A domain prepared by the hook never started: re-read it from libvirt.  May be NULL. */
    void (*refresh_domain)(void *aux, const uint8_t uuid[16]);
    /* A TSI reached the desired state `state` set while the stamp `stamp` was current (see
     * tnve_rec_set_stamp): for event-to-acknowledged latency.  May be NULL. */
    void (*acked)(void *aux, uint64_t stamp, enum sncp_tsi_state state);
    /* Whether this reconciler's nNVE is to hold the TSIs of VN `vn` now (a dual-homed host:
     * an active-standby VN is held by the active nNVE only).  The TSIs of a VN it does not
     * serve are desired Init here, and a hook does not wait for them.  Asked again at every
     * tnve_rec_run() and tnve_rec_serve_changed().  May be NULL: every VN is served. */
    int (*serves)(void *aux, const struct tnve_vn *vn);
    /* The first request for the change of stamp `stamp` left for the nNVE (once per TSI and
     * change, as acked): the agent's own share of that latency.  May be NULL. */
    void (*sent)(void *aux, uint64_t stamp);
};

struct tnve_rec_config {
    uint32_t retry_min_ms;         /* first retry delay; 0: 500 */
    uint32_t retry_max_ms;         /* cap; 0: 30000 */
    int associate_on_define;       /* inactive domains desired Associated */
    const char *state_file;        /* last known tags; NULL: not persisted */
    const char *dp_state_file;     /* the vNIC ports the dataplane set, "PORT VID" per line,
                                    * so that a restarted agent can remove what became stale
                                    * while it was down; the tnve_rec_run() after a change
                                    * hands the new content to a thread of its own, which
                                    * writes it durably without holding the loop (newest
                                    * content wins, see tnve_rec_wait_files()), and
                                    * tnve_rec_destroy() writes the last content before it
                                    * returns; NULL: not persisted */
    const struct tnve_dp_class *dp_class; /* NULL: no dataplane */
    struct tnve_dp *dp;
    uint32_t seed;                 /* jitter PRNG seed; 0: fixed default */
    uint32_t prepare_hold_ms;      /* a hook-prepared domain that does not start within this
                                    * is re-read from libvirt; 0: 60000 */
};

/* Creates the reconciler (loads the tag file when configured; a missing file is fine).
 * Strings and the dataplane in cfg must outlive it.  Returns NULL on allocation failure or
 * when the ports file's writer thread cannot start. */
struct tnve_rec *tnve_rec_create(const struct tnve_rec_config *cfg, const struct tnve_rec_ops *ops,
                                 void *aux);
/* Frees everything; pending hook waiters are answered with SNCP_E_CLOSED first, and the
 * ports file holds the last content before it returns.  The dataplane is left as it is (an
 * agent restart must not disturb the switch).  Accepts NULL. */
void tnve_rec_destroy(struct tnve_rec *r);
/* Waits until the ports file holds what the last tnve_rec_run() handed over, and logs a
 * failed write (tnve_rec_run() does so itself once the write ended).  Blocks the caller
 * for the disk: for tests and shutdown. */
void tnve_rec_wait_files(struct tnve_rec *r);

/* Replaces the associate_on_define policy (SIGHUP); inactive domains follow it. */
void tnve_rec_set_policy(struct tnve_rec *r, int associate_on_define, uint64_t now);

/* ---- desired state, from libvirt ---- */

/* A listing starts: every domain is marked unseen. */
void tnve_rec_inventory_begin(struct tnve_rec *r);
/* The listing ended: domains not seen since tnve_rec_inventory_begin() are removed, and
 * the inventory counts as complete (SYNC may run). */
void tnve_rec_inventory_end(struct tnve_rec *r, uint64_t now);

/* Creates or updates a domain from its resolved XML (`d` owned by the caller) and applies
 * `effect` with request flags `flags` (SNCP_F_MIGRATION...).  vNICs that disappeared from
 * the XML go to Init; new ones take the domain's desired state; a vNIC whose VN changed is
 * de-associated from the old VN before it associates with the new one.  `state` is a short
 * text for domain/show ("running", "started/booted", ...).  Returns 0 or -ENOMEM. */
int tnve_rec_domain_update(struct tnve_rec *r, const struct tnve_domxml *d, enum tnve_effect effect,
                           uint16_t flags, const char *state, uint64_t now);
/* Applies an effect to a known domain without new XML.  Returns 0 or -ENOENT. */
int tnve_rec_domain_effect(struct tnve_rec *r, const uint8_t uuid[16], enum tnve_effect effect,
                           uint16_t flags, const char *state, uint64_t now);
/* The domain no longer exists in libvirt: all its TSIs go to Init, then it is forgotten. */
void tnve_rec_domain_remove(struct tnve_rec *r, const uint8_t uuid[16], uint16_t flags,
                            uint64_t now);
/* The addresses learnt for a vNIC (replaces the previous set; at most SNCP_MAX_ADDRS).
 * Returns 1 when they changed, 0 when not, -ENOENT for an unknown vNIC. */
int tnve_rec_set_addresses(struct tnve_rec *r, const uint8_t uuid[16], const uint8_t mac[6],
                           const struct sncp_addr *addrs, unsigned n, uint64_t now);
/* 1 when the domain is tracked (and not removed), else 0. */
int tnve_rec_domain_known(const struct tnve_rec *r, const uint8_t uuid[16]);
/* 1 while a hook request for the domain waits: libvirt holds the domain then, so nobody may
 * call libvirt about it until the hook has been answered. */
int tnve_rec_domain_busy(const struct tnve_rec *r, const uint8_t uuid[16]);
/* UUIDs of domains whose desired state is Activated (for address polling).  Returns the
 * count written (at most cap). */
unsigned tnve_rec_active_domains(const struct tnve_rec *r, uint8_t (*uuids)[16], unsigned cap);

/* Marks the desired-state changes of the following calls with `stamp` (e.g. the time the
 * libvirt event arrived, in any unit; 0 = none) until it is set again. */
void tnve_rec_set_stamp(struct tnve_rec *r, uint64_t stamp);

/* ---- the hook ---- */

/* Reply for a hook request: err 0 when every vNIC with a VN is at least Associated at the
 * nNVE, else why, with a one-line reason for the operator. */
typedef void tnve_rec_prepare_cb(void *aux, int err, const char *reason);

/* The domain (its XML as libvirt will start it) is about to start (flags 0) or to receive
 * an incoming migration (SNCP_F_MIGRATION): associate every vNIC and call `cb` once all are
 * acknowledged, on the first refusal, or at `deadline` (SNCP_E_TIMEOUT), whichever comes
 * first.  `cb` may run before this returns (nothing to wait for).  Returns 0, or < 0 when
 * the request could not be taken (cb not called). */
int tnve_rec_prepare(struct tnve_rec *r, const struct tnve_domxml *d, uint16_t flags,
                     uint64_t deadline, tnve_rec_prepare_cb *cb, void *aux, uint64_t now);

/* Withdraws the hook requests made with `aux` without calling their callback (the hook
 * was answered from another nNVE of a dual-homed host).  The domain keeps the desired state
 * the hook gave it, unless `refused` (the start was refused elsewhere): then it goes back
 * as after a refusal here.  Returns how many were withdrawn. */
unsigned tnve_rec_prepare_cancel(struct tnve_rec *r, void *aux, int refused);

/* ---- the SNCP session ---- */

/* ops->serves answers differently now (the active nNVE changed): re-reads it for every VN
 * and converges (TSIs of a VN no longer served are de-associated, newly served ones
 * associated and activated, at once, without the previous failures' backoff). */
void tnve_rec_serve_changed(struct tnve_rec *r, uint64_t now);

/* Whether VN `vn` (any form naming it) is served here now (the last answer of ops->serves);
 * 0 for a VN this reconciler does not know. */
int tnve_rec_vn_served(const struct tnve_rec *r, const struct tnve_vn *vn);
/* Whether this nNVE holds VN `vn` as desired: served, the session usable, and every TSI of
 * the VN acknowledged in its desired state with nothing outstanding or left to SYNC (a
 * dual-homed host's make-before-break: the previous nNVE lets the VN go after that).  1 for
 * a served VN without TSIs; 0 for a VN this reconciler does not know. */
int tnve_rec_vn_settled(const struct tnve_rec *r, const struct tnve_vn *vn);

/* What the reconciler may use towards the nNVE. */
#define TNVE_REC_CAPS_ALL SNCP_CAPS_IMPLEMENTED
/* The nNVE's CAPABILITIES from the HELLO response; call before tnve_rec_session_up().
 * Without SYNC the re-announcement runs without SYNC_BEGIN / SYNC_END (nothing is swept);
 * without ADDR_UPDATE address changes go by a repeated TSI_ASSOCIATE / TSI_ACTIVATE;
 * without MIGRATION no migration flag is sent.  Until called: TNVE_REC_CAPS_ALL. */
void tnve_rec_set_peer_caps(struct tnve_rec *r, uint32_t caps);
void tnve_rec_session_up(struct tnve_rec *r, uint64_t now);
void tnve_rec_session_down(struct tnve_rec *r, uint64_t now);
/* Feed every response (or SNCP_E_TIMEOUT / SNCP_E_CLOSED) for a cookie the reconciler used. */
void tnve_rec_response(struct tnve_rec *r, uint64_t cookie, const struct sncp_msg *rsp, int err,
                       uint64_t now);
/* A request from the nNVE: answered through ops->respond. */
void tnve_rec_request(struct tnve_rec *r, const struct sncp_msg *req, uint64_t now);
/* Runs a full SYNC again (tnvectl resync).  Returns 0, or SNCP_E_NOT_ESTABLISHED. */
int tnve_rec_resync(struct tnve_rec *r, uint64_t now);

/* Sends what is needed now and times out hook waiters.  Returns the next absolute time it
 * wants to run (a retry or a deadline), or UINT64_MAX. */
uint64_t tnve_rec_run(struct tnve_rec *r, uint64_t now);

/* ---- inspection ---- */

/* "down", "waiting-inventory", "sync-begin", "syncing", "sync-end", "ready". */
const char *tnve_rec_phase(const struct tnve_rec *r);
/* Every TSI: domain, uuid, mac, vn_id, vn_name, desired, acked, tag, port, pending,
 * failures, error, addresses.  New reference. */
json_t *tnve_rec_tsis_json(const struct tnve_rec *r);
/* Every domain: name, uuid, state, desired, vnics, tsis, unmapped.  New reference. */
json_t *tnve_rec_domains_json(const struct tnve_rec *r);
/* Every VN: vn_id, vn_name, desired users, connected, tag, served.  New reference. */
json_t *tnve_rec_vns_json(const struct tnve_rec *r);
/* The VNs connected at the nNVE (acknowledged) and their local tags: at most cap written
 * to out; returns how many there are. */
struct tnve_rec_vn_tag {
    struct tnve_vn vn;
    uint16_t tag;
};
unsigned tnve_rec_vn_tags(const struct tnve_rec *r, struct tnve_rec_vn_tag *out, unsigned cap);
/* Counters object.  New reference. */
json_t *tnve_rec_counters_json(const struct tnve_rec *r);

struct tnve_rec_stats {
    uint64_t sent[SNCP_MSG_TYPE_MAX + 1];
    uint64_t ok, failed, timeouts, retries, peer_requests, syncs, dp_errors;
    uint64_t prepares_ok, prepares_failed;
    unsigned domains, tsis, vns, outstanding;
};
void tnve_rec_get_stats(const struct tnve_rec *r, struct tnve_rec_stats *st);

#endif
