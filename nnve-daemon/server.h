/* server.h: nnve-daemon's SNCP sessions: listeners, HELLO, dispatch into the state machines,
 * group commit, operator actions toward agents, and counters.
 *
 * Every request is applied to the state at once but answered only after the changes of the
 * whole event-loop iteration have been committed to the store (a uv_check handle), so an
 * acknowledged change is durable.
 */
#ifndef NNVE_SERVER_H
#define NNVE_SERVER_H 1

#include <jansson.h>
#include <uv.h>

#include "backend-provider.h"
#include "config.h"
#include "sncp-tls.h"
#include "snv-ctl.h"
#include "state.h"
#include "store.h"

struct nnve_server;

/* Creates the server and listens on every cfg->listen address.  cfg, tls, state, store (may
 * be NULL) and be must outlive it (cfg: until nnve_server_reconfigure).  Returns 0 and *out,
 * or < 0 with the reason in err. */
int nnve_server_create(uv_loop_t *loop, const struct nnve_config *cfg, struct sncp_tls_ctx *tls,
                       struct nnve_state *state, struct nnve_store *store, struct nnve_backend *be,
                       struct nnve_server **out, char *err, size_t errlen);
struct nnve_pair;
/* Attaches the ToR pair (pair.h): its messages leave after each group commit, its counters
 * join counters/show, and shutdown closes it.  pair may be NULL. */
void nnve_server_set_pair(struct nnve_server *srv, struct nnve_pair *pair);
struct nnve_pair *nnve_server_pair(const struct nnve_server *srv);

/* Stops listening, closes every session (orderly) and pending operator request, commits.
 * Handles finish closing on the next loop turns; then call nnve_server_destroy(). */
void nnve_server_shutdown(struct nnve_server *srv);
/* Frees the server (after nnve_server_shutdown and the loop has run).  Accepts NULL. */
void nnve_server_destroy(struct nnve_server *srv);

/* New policy (SIGHUP): sessions whose identity is no longer authorized are closed (logged). */
void nnve_server_reconfigure(struct nnve_server *srv, const struct nnve_config *cfg);
/* The TLS context was reloaded: closes every session whose peer certificate (or a CA of its
 * chain) the new CRL revokes, as an operator disconnect would. */
void nnve_server_tls_reloaded(struct nnve_server *srv);

/* Bound port of the first listener (tests listen on port 0). */
uint16_t nnve_server_port(const struct nnve_server *srv);

/* ctl: JSON views and operator actions (reply later, when the agents answered). */
json_t *nnve_server_show_sessions(const struct nnve_server *srv);
json_t *nnve_server_show_counters(const struct nnve_server *srv);
/* latency/show: one object per histogram, "what" ("request", then "commit" when there is
 * a store) and the fields of snv_hist_json(); with reset != 0 both are emptied after.  New
 * reference, NULL on allocation failure. */
json_t *nnve_server_show_latency(struct nnve_server *srv, int reset);
void nnve_server_op_vn_disconnect(struct nnve_server *srv, struct snv_ctl_req *req,
                                  const char *identity, const char *vn);
void nnve_server_op_tsi(struct nnve_server *srv, struct snv_ctl_req *req, enum sncp_msg_type type,
                        const char *tsi, const char *const *addrs, int n_addrs);
/* nnvectl tsi update TSI add|remove|replace [ADDRESS...]: the address change at the nNVE
 * (PROTOCOL.md §9.3 row 24), then TSI_UPDATE to each hypervisor of the TSI with a session;
 * replies when they have answered (as nnve_server_op_tsi). */
void nnve_server_op_tsi_update(struct nnve_server *srv, struct snv_ctl_req *req, const char *tsi,
                               const char *op, const char *const *addrs, int n_addrs);

/* Writes the counters in the Prometheus text format to `path` (atomically: a temporary file
 * renamed over it), for node_exporter's textfile collector.  Returns 0 or -errno. */
int nnve_server_write_metrics(const struct nnve_server *srv, const char *path);

#endif
