/* ctl.h: nnve-daemon's control-socket commands (nnvectl's counterpart).
 *
 *   session/show   sessions, and hypervisors held after losing theirs
 *   vn/show        VAPs: vn_id, vn_name, domain, tag, tsis, state, hypervisors
 *   tsi/show       TSI instances: tsi, vn_id, vn_name, port, hypervisor, state, tag,
 *                  addresses, migrating
 *   mapping/show   the NVE-to-NVE mapping table: per TSI instance its VN, VNI, MACs, IPs, the
 *                  local VTEP address and its state (same filters and pages as tsi/show)
 *   tag/show       tag pools per domain
 *   counters/show  counters (also written as a Prometheus textfile, see metrics_file)
 *   vn/disconnect HYPERVISOR VN, tsi/deactivate TSI [ADDRESS...], tsi/deassociate TSI:
 *                  operator actions (Req-6, Req-9), answered once the agents confirmed
 */
#ifndef NNVE_CTL_H
#define NNVE_CTL_H 1

#include "server.h"
#include "snv-ctl.h"
#include "state.h"

/* Registers the commands.  state and srv must outlive the ctl server.  Returns 0 or < 0. */
int nnve_ctl_register(struct snv_ctl_server *ctl, struct nnve_state *state, struct nnve_server *srv,
                      uv_loop_t *loop);
/* The local VTEP address mapping/show reports (copied; NULL: none). */
void nnve_ctl_set_vtep(const char *addr);

#endif
