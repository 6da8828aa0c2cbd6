/* uplink.h: which uplink of a dual-homed host carries its traffic, watched over rtnetlink.
 *
 * Each [nnve NAME] section may name the hypervisor interface cabled to that nNVE's switch
 * (`uplink = IFNAME`, e.g. a slave of an active-backup bond).  The watcher keeps one
 * NETLINK_ROUTE socket subscribed to RTNLGRP_LINK on the loop (non-blocking; an initial dump,
 * and a new dump after the kernel dropped notifications, ENOBUFS), the last RTM_NEWLINK of
 * every watched name and of every bond, and reports through a callback when the state of a
 * watched uplink changed.  tnve_uplink_eval() (a pure function) turns what the kernel said
 * into a state; tnve_active_choose() (also pure) picks the active nNVE from those states and
 * the sessions.
 */
#ifndef TNVE_UPLINK_H
#define TNVE_UPLINK_H 1

#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "netlink.h"

enum tnve_uplink_state {
    TNVE_UPLINK_UNKNOWN = 0, /* not reported yet */
    TNVE_UPLINK_ABSENT,      /* no interface of that name (it may appear later) */
    TNVE_UPLINK_DOWN,        /* administratively down, no carrier, or its bond is down */
    TNVE_UPLINK_BACKUP,      /* up, but a bond slave that is not the bond's active one */
    TNVE_UPLINK_ACTIVE,      /* up and the active slave of its bond */
    TNVE_UPLINK_UP,          /* up, not a bond slave */
};

/* "unknown", "absent", "down", "backup", "active", "up". */
const char *tnve_uplink_state_name(enum tnve_uplink_state s);
/* 1 when an uplink in state s carries the host's traffic (ACTIVE, UP). */
int tnve_uplink_carrying(enum tnve_uplink_state s);

/* The state of uplink `link` (NULL: absent) whose master is `master` (NULL: none, or not
 * known).  `slave_newer`: link's message is more recent than master's (the newer snapshot
 * decides between the bond's active slave and the slave's own bond state). */
enum tnve_uplink_state tnve_uplink_eval(const struct tnve_nl_link *link,
                                        const struct tnve_nl_link *master, int slave_newer);

/* The choice of the active nNVE among n (pure).  Per nNVE: */
struct tnve_active_in {
    int carrying; /* its uplink carries the traffic (tnve_uplink_carrying); 0 without one */
    int up;       /* its session is up */
    int lost;     /* it failed (session or attempt) since it was last up */
};
/* The preferred nNVE: the first whose uplink carries the traffic, or -1 (no uplink
 * configured, none carrying, or the states are not known). */
int tnve_active_preferred(const struct tnve_active_in *in, unsigned n);
/* The nNVE to be active, given the current one and the operator's choice `override` (-1:
 * none): the override while its session is up; else the preferred one while its session is
 * up; else the current one while its session is up or before it ever failed; else the
 * first one whose session is up; else the preferred one; else the current one. */
unsigned tnve_active_choose(const struct tnve_active_in *in, unsigned n, unsigned current,
                            int override);

/* ---- the watcher ---- */

struct tnve_uplinks;
/* A watched uplink's state changed (the new states are in tnve_uplinks_state()). */
typedef void tnve_uplinks_cb(void *aux);

enum { TNVE_UPLINKS_MAX = 8 };

/* Watches the n interface names (copied; "" entries are not watched).  Returns 0 and *out,
 * or -errno (netlink socket) with nothing left open. */
int tnve_uplinks_create(uv_loop_t *loop, const char *const *names, unsigned n, tnve_uplinks_cb *cb,
                        void *aux, struct tnve_uplinks **out);
/* Closes the socket; the struct is freed once its handles closed (run the loop).  NULL ok. */
void tnve_uplinks_destroy(struct tnve_uplinks *u);
/* The state of watched name i (UNKNOWN for "" or out of range). */
enum tnve_uplink_state tnve_uplinks_state(const struct tnve_uplinks *u, unsigned i);
/* The bond uplink i is a slave of ("" when none known). */
const char *tnve_uplinks_master(const struct tnve_uplinks *u, unsigned i);
/* Sets the socket's receive buffer (default 1 MiB; the kernel rounds it up to its minimum):
 * the tests make notifications overrun it.  0 or -errno. */
int tnve_uplinks_set_rcvbuf(struct tnve_uplinks *u, int bytes);
/* Counters: dumps, overruns (ENOBUFS), messages, bad_messages.  New reference. */
json_t *tnve_uplinks_json(const struct tnve_uplinks *u);

#endif
