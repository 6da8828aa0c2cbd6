/* ctl.h: tnve-agent's control-socket commands.
 *
 *   domain/show            every tracked domain
 *   tsi/show               every TSI: domain, uuid, mac, vn_id, vn_name, desired, acked, tag
 *   vn/show                every VN the agent knows: users, connected, tag
 *   session/show           the nNVE session, the reconciler phase, the libvirt connection
 *   counters/show          counters of every module
 *   resync                 re-list libvirt domains and run SYNC with the nNVE
 *   hook/prepare OP DOMAIN XML [WAIT_MS]
 *                          the libvirt hook: OP "prepare" or "migrate" (incoming); answers
 *                          once every vNIC with a VN is Associated at the nNVE, or fails
 *                          with the reason (status 1, or 5 on timeout); waits at most
 *                          hook_timeout, or WAIT_MS when that is shorter
 */
#ifndef TNVE_CTL_H
#define TNVE_CTL_H 1

#include "agent.h"
#include "domxml.h"

/* A hook request carries the whole domain XML, as large as the agent parses (libvirt's own
 * limit on a domain XML over its API is 4 MiB); in the request's JSON line, escaping at
 * most doubles it (XML has no control characters but tab, CR and LF). */
enum {
    TNVE_HOOK_XML_MAX = TNVE_DOMXML_MAX,
    TNVE_CTL_LINE_MAX = 2 * TNVE_HOOK_XML_MAX + 64 * 1024,
};

/* Registers the commands above on a->ctl.  Returns 0 or a negative error. */
int tnve_ctl_register(struct tnve_agent *a);

#endif
