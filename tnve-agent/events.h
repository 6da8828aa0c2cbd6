/* events.h: what each libvirt event means for a domain's TSIs (RFC 8394 §2, §3).
 *
 * One table maps a libvirt domain event (lifecycle event + detail, plus the device
 * added/removed and metadata-change events) to an effect on the desired TSI state of the
 * domain's vNICs, the SNCP flags the resulting requests carry (migration, Req-13) and
 * whether the domain XML must be read again.  A second, smaller table gives the desired
 * state of a domain found by listing (after every libvirt (re)connect), so that a domain
 * reached by events and the same domain found by a listing end up in the same state.
 */
#ifndef TNVE_EVENTS_H
#define TNVE_EVENTS_H 1

#include <stdint.h>

enum tnve_effect {
    TNVE_EFFECT_NONE = 0,      /* desired state unchanged */
    TNVE_EFFECT_ACTIVATE,      /* desired Activated (Associate first if needed) */
    TNVE_EFFECT_ASSOCIATE,     /* desired Associated (Deactivate when Activated) */
    TNVE_EFFECT_DEASSOCIATE,   /* desired Init (De-Associate) */
    TNVE_EFFECT_INACTIVE,      /* domain defined, not running: Associated when the config
                                * switch associate_on_define is on, else Init */
    TNVE_EFFECT_UNDEFINE,      /* domain may be gone: Init, forgotten once libvirt lacks it */
};

/* Pseudo lifecycle events for the non-lifecycle callbacks, so they sit in the same table. */
enum {
    TNVE_EVENT_DEVICE_ADDED = 100,
    TNVE_EVENT_DEVICE_REMOVED = 101,
    TNVE_EVENT_METADATA_CHANGE = 102,
};

struct tnve_event_action {
    int event;              /* virDomainEventType or TNVE_EVENT_* */
    int detail;             /* the event's detail, or -1 for any */
    const char *name;       /* "started/booted" */
    enum tnve_effect effect;
    uint16_t flags;         /* SNCP_F_MIGRATION, SNCP_F_MIGRATION_SOURCE */
    uint8_t refresh;        /* re-read the domain XML (vNICs, target devices, metadata) */
};

/* The entry for (event, detail): an exact detail match first, then the event's wildcard.
 * Never NULL: unknown events give a NONE entry named "unknown". */
const struct tnve_event_action *tnve_event_lookup(int event, int detail);

/* The whole table (for tests and documentation); *n gets the number of entries. */
const struct tnve_event_action *tnve_event_table(unsigned *n);

/* Effect for a domain found by listing in libvirt state `state` (virDomainState) with
 * `reason`.  `known` is non-zero when the agent already tracks the domain (a paused domain
 * then keeps its state).  Sets *name to a short description. */
enum tnve_effect tnve_event_effect_for_state(int state, int reason, int known, const char **name);

/* "none", "activate", "associate", "deassociate", "inactive", "undefine". */
const char *tnve_effect_name(enum tnve_effect e);

#endif
