/* events.c: the libvirt event -> TSI action table (see events.h).
 *
 * The table below is the single place that decides what an event means.  As a table for
 * the documentation (desired state of every vNIC of the domain; "flags" are the SNCP
 * header flags of the requests it causes; "xml" = the domain XML is read again):
 *
 * | libvirt event / detail             | effect                          | flags            | xml |
 * |------------------------------------|---------------------------------|------------------|-----|
 * | DEFINED / ADDED, UPDATED, RENAMED, | inactive: Init, or Associated   | -                | yes |
 * |   FROM_SNAPSHOT                    |   with associate_on_define      |                  |     |
 * | UNDEFINED / any                    | Init; forgotten when gone       | -                | yes |
 * | STARTED / BOOTED                   | Associate (if not yet), Activate| -                | yes |
 * | STARTED / RESTORED, FROM_SNAPSHOT, | Associate (if not yet), Activate| -                | yes |
 * |   WAKEUP                           |                                 |                  |     |
 * | STARTED / MIGRATED (destination,   | Associate                       | MIGRATION        | yes |
 * |   QEMU started paused)             |                                 |                  |     |
 * | SUSPENDED / PAUSED, IOERROR,       | nothing (a paused VM keeps its  | -                | no  |
 * |   WATCHDOG, API_ERROR, MIGRATED,   |   association, RFC 8394 §2.4)   |                  |     |
 * |   POSTCOPY, POSTCOPY_FAILED        |                                 |                  |     |
 * | SUSPENDED / RESTORED, FROM_SNAPSHOT| Associate (restored paused)     | -                | yes |
 * | RESUMED / UNPAUSED, FROM_SNAPSHOT  | Activate                        | -                | no  |
 * | RESUMED / MIGRATED, POSTCOPY       | Activate (destination: the guest| MIGRATION        | yes |
 * |   (POSTCOPY when post-copy starts, |   runs here now)                |                  |     |
 * |   MIGRATED at the switch-over and  |                                 |                  |     |
 * |   when post-copy ends)             |                                 |                  |     |
 * | RESUMED / POSTCOPY_FAILED          | nothing                         | -                | no  |
 * | STOPPED / SHUTDOWN, DESTROYED,     | De-Associate                    | -                | yes |
 * |   CRASHED, FAILED, FROM_SNAPSHOT   |   (inactive rule when           |                  |     |
 * |                                    |   associate_on_define)          |                  |     |
 * | STOPPED / SAVED (managed save)     | Deactivate (stays Associated)   | -                | yes |
 * | STOPPED / MIGRATED (source done)   | De-Associate                    | MIGRATION|SOURCE | no  |
 * | SHUTDOWN / any                     | nothing (STOPPED follows)       | -                | no  |
 * | PMSUSPENDED / MEMORY, DISK         | Deactivate (stays Associated)   | -                | no  |
 * | CRASHED / any                      | De-Associate                    | -                | no  |
 * | DEVICE_ADDED / DEVICE_REMOVED      | the domain's state for the new  | -                | yes |
 * |   (NIC hot-plug / unplug)          |   vNIC; Init for the removed one|                  |     |
 * | METADATA_CHANGE                    | VN of each vNIC re-read         | -                | yes |
 *
 * Domains found by listing (after every libvirt (re)connect):
 *   running, blocked, in shutdown -> Activated; paused for an incoming migration ->
 *   Associated with MIGRATION (decided in virt.c); other paused -> unchanged when known, else
 *   Activated; pmsuspended -> Associated; shut off after a save -> Associated; other shut
 *   off -> the inactive rule; crashed -> Init.
 *
 * IP addresses learnt for a vNIC (virDomainInterfaceAddresses) become TSI_UPDATE REPLACE
 * (Req-10); the first Associate of a VN on this host is preceded by VN_CONNECT and the last
 * De-Associate is followed by VN_DISCONNECT.
 */
#include "events.h"

#include <stddef.h>

#include <libvirt/libvirt.h>

#include "sncp-msg.h"

#define MIG SNCP_F_MIGRATION
#define MIG_SRC (SNCP_F_MIGRATION | SNCP_F_MIGRATION_SOURCE)

static const struct tnve_event_action event_table[] = {
    {VIR_DOMAIN_EVENT_DEFINED, -1, "defined", TNVE_EFFECT_INACTIVE, 0, 1},
    {VIR_DOMAIN_EVENT_UNDEFINED, -1, "undefined", TNVE_EFFECT_UNDEFINE, 0, 1},

    {VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_BOOTED, "started/booted",
     TNVE_EFFECT_ACTIVATE, 0, 1},
    {VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_MIGRATED, "started/migrated",
     TNVE_EFFECT_ASSOCIATE, MIG, 1},
    {VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_RESTORED, "started/restored",
     TNVE_EFFECT_ACTIVATE, 0, 1},
    {VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_FROM_SNAPSHOT, "started/snapshot",
     TNVE_EFFECT_ACTIVATE, 0, 1},
    {VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_WAKEUP, "started/wakeup",
     TNVE_EFFECT_ACTIVATE, 0, 1},
    {VIR_DOMAIN_EVENT_STARTED, -1, "started", TNVE_EFFECT_ACTIVATE, 0, 1},

    {VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_RESTORED, "suspended/restored",
     TNVE_EFFECT_ASSOCIATE, 0, 1},
    {VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_FROM_SNAPSHOT, "suspended/snapshot",
     TNVE_EFFECT_ASSOCIATE, 0, 1},
    {VIR_DOMAIN_EVENT_SUSPENDED, -1, "suspended", TNVE_EFFECT_NONE, 0, 0},

    {VIR_DOMAIN_EVENT_RESUMED, VIR_DOMAIN_EVENT_RESUMED_MIGRATED, "resumed/migrated",
     TNVE_EFFECT_ACTIVATE, MIG, 1},
    {VIR_DOMAIN_EVENT_RESUMED, VIR_DOMAIN_EVENT_RESUMED_POSTCOPY, "resumed/postcopy",
     TNVE_EFFECT_ACTIVATE, MIG, 1},
    {VIR_DOMAIN_EVENT_RESUMED, VIR_DOMAIN_EVENT_RESUMED_POSTCOPY_FAILED, "resumed/postcopy-failed",
     TNVE_EFFECT_NONE, 0, 0},
    {VIR_DOMAIN_EVENT_RESUMED, -1, "resumed", TNVE_EFFECT_ACTIVATE, 0, 0},

    /* A stopped domain is its persistent definition again (a --config VN change made
     * while it ran applies now): re-read, as a listing would. */
    {VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_SAVED, "stopped/saved",
     TNVE_EFFECT_ASSOCIATE, 0, 1},
    {VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_MIGRATED, "stopped/migrated",
     TNVE_EFFECT_DEASSOCIATE, MIG_SRC, 0},
    {VIR_DOMAIN_EVENT_STOPPED, -1, "stopped", TNVE_EFFECT_INACTIVE, 0, 1},

    {VIR_DOMAIN_EVENT_SHUTDOWN, -1, "shutdown", TNVE_EFFECT_NONE, 0, 0},
    {VIR_DOMAIN_EVENT_PMSUSPENDED, -1, "pmsuspended", TNVE_EFFECT_ASSOCIATE, 0, 0},
    {VIR_DOMAIN_EVENT_CRASHED, -1, "crashed", TNVE_EFFECT_DEASSOCIATE, 0, 0},

    {TNVE_EVENT_DEVICE_ADDED, -1, "device-added", TNVE_EFFECT_NONE, 0, 1},
    {TNVE_EVENT_DEVICE_REMOVED, -1, "device-removed", TNVE_EFFECT_NONE, 0, 1},
    {TNVE_EVENT_METADATA_CHANGE, -1, "metadata-change", TNVE_EFFECT_NONE, 0, 1},
};

static const struct tnve_event_action unknown_action = {-1, -1, "unknown", TNVE_EFFECT_NONE, 0, 0};

const struct tnve_event_action *tnve_event_lookup(int event, int detail)
{
    const struct tnve_event_action *wild = NULL;
    for (size_t i = 0; i < sizeof event_table / sizeof event_table[0]; i++) {
        const struct tnve_event_action *a = &event_table[i];
        if (a->event != event)
            continue;
        if (a->detail == detail)
            return a;
        if (a->detail == -1 && !wild)
            wild = a;
    }
    return wild ? wild : &unknown_action;
}

const struct tnve_event_action *tnve_event_table(unsigned *n)
{
    *n = sizeof event_table / sizeof event_table[0];
    return event_table;
}

enum tnve_effect tnve_event_effect_for_state(int state, int reason, int known, const char **name)
{
    const char *dummy;
    if (!name)
        name = &dummy;
    switch (state) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:
    case VIR_DOMAIN_SHUTDOWN:
        *name = "running";
        return TNVE_EFFECT_ACTIVATE;
    case VIR_DOMAIN_PAUSED:
        *name = "paused";
        return known ? TNVE_EFFECT_NONE : TNVE_EFFECT_ACTIVATE;
    case VIR_DOMAIN_PMSUSPENDED:
        *name = "pmsuspended";
        return TNVE_EFFECT_ASSOCIATE;
    case VIR_DOMAIN_SHUTOFF:
        if (reason == VIR_DOMAIN_SHUTOFF_SAVED) {
            *name = "saved";
            return TNVE_EFFECT_ASSOCIATE;
        }
        *name = "shutoff";
        return TNVE_EFFECT_INACTIVE;
    case VIR_DOMAIN_CRASHED:
        *name = "crashed";
        return TNVE_EFFECT_DEASSOCIATE;
    default:
        *name = "nostate";
        return TNVE_EFFECT_NONE;
    }
}

const char *tnve_effect_name(enum tnve_effect e)
{
    switch (e) {
    case TNVE_EFFECT_NONE:
        return "none";
    case TNVE_EFFECT_ACTIVATE:
        return "activate";
    case TNVE_EFFECT_ASSOCIATE:
        return "associate";
    case TNVE_EFFECT_DEASSOCIATE:
        return "deassociate";
    case TNVE_EFFECT_INACTIVE:
        return "inactive";
    case TNVE_EFFECT_UNDEFINE:
        return "undefine";
    }
    return "unknown";
}
