/* sncp-conn-l2.h: SNCP connections over the Layer-2 channel (AF_PACKET, Linux).
 *
 * The L2 provider of sncp-conn (see sncp-conn-provider.h): the same struct sncp_conn and
 * the same owner callbacks as over TCP, with the transport of proto/L2-TRANSPORT.md
 * (lib/sncp-l2.h) underneath.  A port is one AF_PACKET socket on one interface, bound to
 * the channel's EtherType; it demultiplexes frames to its connections by peer MAC address
 * and connection id, answers discovery (nNVE side), accepts OPENs (nNVE side) and opens
 * connections to an nNVE, found by discovery or configured (tNVE side).
 */
#ifndef SNCP_CONN_L2_H
#define SNCP_CONN_L2_H 1

#include <stdint.h>

#include <uv.h>

#include "sncp-conn.h"
#include "sncp-l2.h"

struct sncp_l2_port;

/* A budget of accepted connections whose TLS handshake has not completed, which several
 * ports may share (nnve-daemon: all its L2 interfaces).  The owner sets max and keeps the
 * struct until every port that uses it is gone (their connections included). */
struct sncp_l2_unauth {
    unsigned max;  /* 0: 32 */
    unsigned n;    /* such connections now, over the ports sharing it */
    unsigned peak; /* the most there were at once */
};

struct sncp_l2_port_config {
    const char *ifname;            /* the interface; its MAC is our address */
    uint16_t ethertype;            /* 0: SNCP_L2_DEFAULT_ETHERTYPE */
    const uint8_t *discovery_mac;  /* NULL: 03:53:4e:43:50:01 */
    const char *node_name;         /* in SOLICIT / ADVERTISE; NULL: none */
    uint16_t vlan;                 /* tNVE: send our frames tagged with this VLAN ID (the
                                    * channel runs in that VLAN); 0: untagged.  The nNVE
                                    * learns each connection's VLAN from its frames. */
    struct sncp_l2_config l2;      /* channel parameters; local_id and initial_seq are drawn
                                    * at random for every connection */
    int accept;                    /* nNVE: answer SOLICIT, accept OPEN */
    unsigned max_conns;            /* accepted connections beyond are refused; 0: 4096 */
    struct sncp_l2_unauth *unauth; /* nNVE: accepted connections whose TLS handshake has
                                    * not completed are counted there, OPENs beyond its max
                                    * refused; NULL: a budget of the port's own, max 32 */
    uint32_t open_rate;            /* nNVE: OPENs without a valid cookie answered per second
                                    * on the port (burst: twice as many); 0: 2000 */
    uint32_t open_rate_per_mac;    /* nNVE: OPENs taken per second from one source MAC
                                    * (burst: twice as many); 0: 10 */
    uint32_t cookie_secret_ms;     /* nNVE: cookie secret lifetime (for tests); 0:
                                    * SNCP_L2_COOKIE_SECRET_MS */
    uint32_t solicit_max_ms;       /* discovery repeats 1 s, 2 s, ... up to this; 0: 30000 */
    const char *nnve_name;         /* tNVE: accept only ADVERTISEs with this node name (not
                                    * authentication: TLS checks the nNVE); NULL: any */
};

struct sncp_l2_port_stats {
    uint64_t frames_in, frames_out;
    uint64_t malformed;  /* frames that failed decoding */
    uint64_t unknown;    /* valid frames for no connection (but OPENs: accepted or refused) */
    uint64_t resets_out; /* answers to unknown frames (rate-limited) */
    uint64_t solicits_in, advertises_out, solicits_out, advertises_in;
    uint64_t refused;         /* OPENs refused (max_conns, max_unauth, not accepting) */
    uint64_t cookies_out;     /* COOKIE answers to OPENs without a valid cookie */
    uint64_t cookie_failures; /* OPENs carrying a cookie that is not (or no longer) valid */
    uint64_t rate_limited;    /* OPENs dropped by the per-port or per-MAC rate limits */
    uint64_t unauth_refused;  /* OPENs refused at max_unauth (also counted in refused) */
    uint64_t unauth_peak;     /* the most unauthenticated connections of the budget (shared
                               * or not) seen when this port accepted one */
    uint64_t send_errors;     /* frames the kernel did not take (the channel retransmits) */
    uint64_t rx_dropped;      /* frames the kernel dropped for want of socket buffer (read by
                               * sncp_l2_port_check) */
};

/* Opens the port.  With pcfg->accept, accepted connections report through `cbs` with
 * sncp_conn_data() == ctx (as sncp_listener_create); cfg and cbs may be NULL otherwise.
 * Needs CAP_NET_RAW.  Returns 0 and *out, or -errno (-ENODEV: no such interface;
 * -EMSGSIZE: its MTU is below SNCP_L2_MIN_MTU; -EPERM: no CAP_NET_RAW). */
int sncp_l2_port_create(uv_loop_t *loop, const struct sncp_l2_port_config *pcfg,
                        const struct sncp_conn_config *cfg, const struct sncp_conn_cbs *cbs,
                        void *ctx, struct sncp_l2_port **out);
/* Aborts every connection of the port (their `closed` callbacks follow on the next loop
 * turns) and closes the socket once they are gone.  Accepts NULL. */
void sncp_l2_port_destroy(struct sncp_l2_port *p);
/* The interface's MAC address. */
void sncp_l2_port_mac(const struct sncp_l2_port *p, uint8_t mac[6]);
const char *sncp_l2_port_ifname(const struct sncp_l2_port *p);
/* The channel's frame size on this port: the configured mtu, lowered to the interface's
 * MTU when that is smaller. */
unsigned sncp_l2_port_mtu(const struct sncp_l2_port *p);
/* Checks that the port's interface still exists under its name with the index the socket
 * is bound to, and follows a change of its MAC address (logged).  An interface that was
 * deleted (and perhaps created again under the same name) leaves the socket bound to
 * nothing: the owner should destroy the port and create it again when the name is back.
 * Also reads the kernel's drop count into the stats.  Returns 0, -ENODEV (gone or
 * replaced), or another -errno when the socket failed for good (destroy and create the
 * port again).  An interface that goes down and up again needs nothing: the port reads
 * again once it is up. */
int sncp_l2_port_check(struct sncp_l2_port *p);
unsigned sncp_l2_port_conns(const struct sncp_l2_port *p);
/* This port's accepted connections whose TLS handshake has not completed. */
unsigned sncp_l2_port_unauth(const struct sncp_l2_port *p);
const struct sncp_l2_port_stats *sncp_l2_port_stats(const struct sncp_l2_port *p);

/* Opens a connection (tNVE side) to the nNVE at nnve_mac, or, with nnve_mac NULL, to the
 * first nNVE that answers a SOLICIT.  Failures arrive through `closed` (-ETIMEDOUT,
 * -ECONNREFUSED, ...).  The port must outlive the connection or be destroyed (which
 * aborts it).  Returns 0 and *out, or -errno. */
int sncp_conn_connect_l2(struct sncp_l2_port *p, const uint8_t *nnve_mac,
                         const struct sncp_conn_config *cfg, const struct sncp_conn_cbs *cbs,
                         void *ctx, struct sncp_conn **out);

/* The L2 connection under an sncp_conn of this provider (stats, state), or NULL for a
 * connection of another provider. */
const struct sncp_l2_conn *sncp_conn_l2(const struct sncp_conn *c);

/* Where the peer of an L2 connection is: the interface its frames arrive on, its MAC
 * address and its VLAN (0: untagged; the latest valid frame's tag).  Any output may be
 * NULL.  Returns 0, or -EINVAL for a connection of another provider. */
int sncp_conn_l2_peer(const struct sncp_conn *c, const char **ifname, uint8_t mac[6],
                      uint16_t *vlan);

#endif
