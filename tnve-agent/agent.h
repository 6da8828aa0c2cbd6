/* agent.h: tnve-agent assembled: config, libvirt side, reconciler, SNCP client,
 * dataplane backend and control socket on one libuv loop.
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
#include "virt.h"

enum { TNVE_AGENT_LATENCY_MAX = 200000, TNVE_AGENT_RTT_SLOTS = 256 };

struct tnve_agent {
    uv_loop_t *loop;
    struct tnve_config *cfg; /* owned */
    char *config_path;       /* for reload; NULL when none */
    uint64_t epoch;          /* SESSION_EPOCH: start time, ms since the Unix epoch */
    char state_file[TNVE_CONFIG_STR + 32];
    char dp_state_file[TNVE_CONFIG_STR + 32];
    const struct tnve_dp_class *dp_class;
    struct tnve_dp *dp;
    struct tnve_rec *rec;
    struct tnve_nnve *nnve;
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
     * request round trips. */
    struct tnve_lat lat_total, lat_libvirt, lat_hop, lat_nnve;
    struct {
        uint64_t cookie, sent_ns;
    } rtt[TNVE_AGENT_RTT_SLOTS]; /* requests in flight, by cookie (a sample per slot) */
};

/* Builds and starts the agent on `loop` (libvirt's event loop must be registered already,
 * tnve_virt_loop_init()).  Takes ownership of cfg.  Returns 0 and *out, or a negative error
 * with the reason in err; *out is set then too (partly built) and the caller destroys it. */
int tnve_agent_create(uv_loop_t *loop, struct tnve_config *cfg, const char *config_path,
                      struct tnve_agent **out, char *err, size_t errlen);
/* Tears everything down (the dataplane keeps its state; the nNVE keeps ours for its hold
 * time).  The struct is freed once its handles closed: run the loop afterwards. */
void tnve_agent_destroy(struct tnve_agent *a);
/* SIGHUP: re-reads the config file; applies the VN mapping rules, associate_on_define and
 * the TLS files; other keys need a restart (logged).  0 or < 0 (the old config stays). */
int tnve_agent_reload(struct tnve_agent *a);

#endif
