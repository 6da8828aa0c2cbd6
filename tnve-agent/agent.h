/* agent.h: tnve-agent assembled: config, libvirt side, reconciler, SNCP client,
 * dataplane backend and control socket on one libuv loop.
 *
 * A dual-homed host (several [nnve NAME] sections) has one "home" per nNVE: its SNCP
 * session (own reconnect, backoff, SYNC) and its reconciler, each holding the whole desired
 * state from libvirt.  An active-active VN is served by every nNVE; an active-standby VN
 * by the active nNVE (tnve_active_choose, uplink.h):
 *  - with `uplink` in the [nnve] sections: the nNVE whose uplink carries the traffic (the
 *    bond's active slave, or the link that is up) while its session is up, so the VN
 *    follows the host's bond; when that session is down, another nNVE whose session is up;
 *    when it returns, the VNs move back to it;
 *  - without: the first configured one at start; when its session fails (or its first
 *    attempts fail) the first other nNVE whose session is up takes over, with no automatic
 *    failback.
 * `tnvectl nnve activate NAME` overrides the choice until the next uplink change or until
 * that nNVE's session is lost.  A move is make-before-break: the previous nNVE keeps a VN
 * until the new one has acknowledged every TSI of it, and a returning nNVE that becomes
 * active before its SYNC re-announces what it held (nothing is removed and re-added there).
 * The reconcilers share the dataplane through a mux (dp-mux.h) that applies one tag per
 * port.
 *
 * main() parses options and the config file, creates the agent, runs the loop, and on
 * SIGTERM destroys the agent and runs the loop until every handle has closed.
 */
#ifndef TNVE_AGENT_H
#define TNVE_AGENT_H 1

#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "dataplane-provider.h"
#include "lat.h"
#include "nnve.h"
#include "reconcile.h"
#include "snv-ctl.h"
#include "snv-log.h"
#include "uplink.h"
#include "virt.h"

enum { TNVE_AGENT_LATENCY_MAX = 200000, TNVE_AGENT_RTT_SLOTS = 256, TNVE_AGENT_RUN_SENT = 64 };

struct tnve_agent;
struct tnve_dp_mux;
struct agent_prepare;

/* One nNVE of the host and what talks to it. */
struct tnve_home {
    struct tnve_agent *a;
    unsigned index;                      /* configuration order = preference */
    const struct tnve_config_nnve *ncfg; /* in a->cfg */
    char state_file[TNVE_CONFIG_STR + 64];
    char dp_state_file[TNVE_CONFIG_STR + 64];
    struct tnve_nnve *nnve;
    struct tnve_rec *rec;
    int lost;             /* failed (session or attempt) since it was last up */
    const char *lost_why; /* "session lost", "connection attempt failed" */
    uint64_t activations; /* times it became the active nNVE */
};

struct tnve_agent {
    uv_loop_t *loop;
    struct tnve_config *cfg; /* owned */
    char *config_path;       /* for reload; NULL when none */
    uint64_t epoch;          /* SESSION_EPOCH: start time, ms since the Unix epoch */
    const struct tnve_dp_class *dp_class;
    struct tnve_dp *dp;
    struct tnve_dp_mux *mux; /* several nNVEs: the reconcilers' shared dataplane */
    unsigned n_homes;
    struct tnve_home homes[TNVE_MAX_NNVES];
    unsigned active; /* the home serving active-standby VNs */
    int override;    /* tnvectl nnve activate: that home, until the next uplink change; -1 */
    int preferred;   /* the home whose uplink carries the traffic, -1 none */
    struct tnve_uplinks *uplinks; /* NULL without [nnve] uplink keys */
    uint64_t failovers;
    /* VNs whose tag differs between the nNVEs (reported once per episode) */
    char vn_mismatch[64][80]; /* the VNs' text forms (tnve_vn_format) */
    unsigned n_vn_mismatch;
    uint64_t vn_tag_mismatches;
    uint64_t vn_check_at;             /* next comparison of the nNVEs' tags (uv_now) */
    struct snv_ratelimit vn_check_rl; /* its log lines (the tags come from the nNVEs) */
    int vn_check_due;
    struct agent_prepare *prepares; /* hook requests not answered yet */
    struct tnve_virt *virt;
    struct snv_ctl_server *ctl;
    uv_idle_t wake;   /* runs the reconciler on the next loop iteration */
    uv_timer_t timer; /* runs it at its next deadline */
    int handles_open;
    int destroying;
    uint64_t reloads;
    /* For latency/show and the benchmarks (the first TNVE_AGENT_LATENCY_MAX samples of each
     * since the last reset): event-to-acknowledged; of that, the libvirt calls an event's
     * effect waited for, the hand-off to and from the domain reader thread, and the nNVE's
     * request round trips, and of each round trip the time this agent's loop was busy (not
     * waiting in the poll), in which a response that came is not read. */
    struct tnve_lat lat_total, lat_libvirt, lat_hop, lat_nnve, lat_nnve_busy, lat_send;
    struct tnve_lat lat_state[SNCP_TSI_ACTIVATED + 1]; /* lat_total by the state reached */
    struct {
        uint64_t cookie, sent_ns, idle_ns; /* idle_ns: the loop's idle time at the send */
    } rtt[TNVE_AGENT_RTT_SLOTS];           /* requests in flight, by cookie (a sample per slot) */
    /* A reconciler run's requests leave together when it ends (corked): their round trips
     * start then, and the event-to-sent samples of the run (the first RUN_SENT) are taken
     * then too. */
    uint64_t run_start_ns, run_sent[TNVE_AGENT_RUN_SENT];
    unsigned n_run_sent;
    int in_run;
};

/* Builds and starts the agent on `loop` (libvirt's event loop must be registered already,
 * tnve_virt_loop_init()).  Takes ownership of cfg.  Returns 0 and *out, or a negative error
 * with the reason in err; *out is set then too (partly built) and the caller destroys it. */
int tnve_agent_create(uv_loop_t *loop, struct tnve_config *cfg, const char *config_path,
                      struct tnve_agent **out, char *err, size_t errlen);
/* Tears everything down (the dataplane keeps its state; the nNVE keeps ours for its hold
 * time).  The struct is freed once its handles closed: run the loop afterwards. */
void tnve_agent_destroy(struct tnve_agent *a);
/* A hook request (tnvectl hook prepare/migrate) for domain x, answered through cb once
 * every vNIC is associated where its VN's mode needs it: an active-standby VN at the
 * active nNVE; an active-active VN at every nNVE whose session is up, and at least one.
 * An nNVE that is down does not hold a start up; any nNVE's refusal refuses it.  cb runs
 * once (perhaps before this returns).  0, or < 0 when the request was not taken. */
typedef void tnve_agent_prepare_cb(void *aux, int err, const char *reason);
int tnve_agent_prepare(struct tnve_agent *a, const struct tnve_domxml *x, uint16_t flags,
                       uint64_t deadline, tnve_agent_prepare_cb *cb, void *aux);
/* Makes home `name` the active nNVE (its session must be up) until the next uplink change
 * or until its session is lost.  0, -ENOENT, -ENETDOWN. */
int tnve_agent_activate(struct tnve_agent *a, const char *name);
/* The name of the active nNVE. */
const char *tnve_agent_active_name(const struct tnve_agent *a);
/* Whether home h's nNVE serves VN vn now. */
int tnve_agent_serves(const struct tnve_home *h, const struct tnve_vn *vn);

/* SIGHUP: re-reads the config file; applies the VN mapping rules, associate_on_define and
 * the TLS files; other keys need a restart (logged).  0 or < 0 (the old config stays). */
int tnve_agent_reload(struct tnve_agent *a);

#endif
