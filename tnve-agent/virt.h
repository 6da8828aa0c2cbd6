/* virt.h: the agent's libvirt side: connection, events, domain XML, addresses.
 *
 * Connects to the configured URI through the libuv event loop (virt-loop.h), with libvirt
 * keepalive and a close callback; when the connection is lost it reconnects after a
 * bounded, jittered exponential backoff.  After every (re)connect it lists all domains and
 * hands each, with its desired state (events.h), to the reconciler; domains that vanished
 * meanwhile are removed.  Lifecycle, device added/removed and metadata-change events are
 * queued and processed in order; each maps through the event table and, when the table
 * says so, the domain XML is read again (for a start of a known domain: after its
 * activation).  Running domains' IP addresses are polled with virDomainInterfaceAddresses()
 * and passed on as TSI address updates.  Domain reads, listings and address polls run on
 * reader threads (virt.c): the loop never waits for them.
 */
#ifndef TNVE_VIRT_H
#define TNVE_VIRT_H 1

#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "config.h"
#include "lat.h"
#include "reconcile.h"

struct tnve_virt;

struct tnve_virt_config {
    const char *uri;
    uint32_t keepalive_s; /* libvirt keepalive interval (count 3); 0 disables */
    uint32_t retry_min_ms, retry_max_ms;
    uint32_t address_poll_ms;          /* 0 disables */
    unsigned address_sources;          /* 1 << VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_* */
    const struct tnve_map_rule *rules; /* must stay valid until replaced */
    unsigned n_rules;
    /* figures (may be NULL): per event whose effect waited for a domain read, the time in
     * libvirt calls, and the rest of the read (hand-off to the reader thread and back) */
    struct tnve_lat *lat_libvirt, *lat_hop;
};

/* Registers nothing with libvirt by itself: tnve_virt_loop_init() must have run.  Starts
 * connecting at once (a failure schedules a retry).  Every desired-state change goes to
 * each of the n_recs reconcilers (one per nNVE; 1..TNVE_MAX_NNVES).  Returns 0 and *out,
 * -EINVAL or -ENOMEM. */
int tnve_virt_create(uv_loop_t *loop, const struct tnve_virt_config *cfg,
                     struct tnve_rec *const *recs, unsigned n_recs, struct tnve_virt **out);
/* Closes the libvirt connection and the handles; the struct is freed from the last close
 * callback.  Run the loop afterwards.  Accepts NULL. */
void tnve_virt_destroy(struct tnve_virt *v);

/* Replaces the VN mapping rules (SIGHUP) and re-reads every domain. */
void tnve_virt_set_rules(struct tnve_virt *v, const struct tnve_map_rule *rules, unsigned n);
/* Starts listing every domain (no-op while disconnected; after the listing under way when
 * one is). */
void tnve_virt_resync(struct tnve_virt *v);
/* Queues a re-read of one domain (state + XML) after the events queued before it; it is
 * removed when libvirt no longer has it. */
void tnve_virt_refresh_domain(struct tnve_virt *v, const uint8_t uuid[16]);
/* Processes queued events that waited for a hook to finish. */
void tnve_virt_kick(struct tnve_virt *v);

/* connected, uri, events, queue, reconnects, last_error.  New reference. */
json_t *tnve_virt_json(const struct tnve_virt *v);

/* Time (uv_now) at which the event currently being processed was received from libvirt,
 * 0 outside event processing (used to measure event-to-acknowledged latency). */
uint64_t tnve_virt_event_time(const struct tnve_virt *v);

#endif
