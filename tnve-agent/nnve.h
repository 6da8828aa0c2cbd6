/* nnve.h: the agent's SNCP client: one TLS session to the nNVE over sncp_conn.
 *
 * Connects to the nNVE over TCP (its address and port) or over the SNCP Layer-2 channel
 * (an AF_PACKET port on one interface; the nNVE's MAC configured, or found by discovery),
 * checks its certificate identity, sends HELLO (NODE_ID, SESSION_EPOCH = the agent's start
 * time in ms, KEEPALIVE, CAPABILITIES and the uplink's MAC when known) and reports the
 * session up once the HELLO is accepted.  Any loss (refused connection, TLS failure, HELLO
 * refused, dead peer, an attempt not up within connect_timeout_ms, a TLS handshake or a
 * HELLO answer not within hello_timeout_ms, the L2 interface missing or going down) reports
 * down and reconnects after a bounded, jittered exponential backoff.  Each failure has a
 * cause token (tnve_nnve_json "cause", `cause=` in the log lines): connect-failed,
 * connect-timeout, hello-timeout, hello-refused, dead-peer (no message for 3 x the nNVE's
 * announced keepalive), closed, session-error, revoked, link-down.
 * Over L2 every attempt opens the interface afresh, so an interface that was re-created or
 * changed its MAC is picked up; while the session is up the interface is checked every
 * second and an interface that went away or down ends the session at once.
 */
#ifndef TNVE_NNVE_H
#define TNVE_NNVE_H 1

#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "sncp-msg.h"

struct tnve_nnve;

struct tnve_nnve_config {
    const char *address;           /* TCP: host name or address */
    uint16_t port;                 /* TCP port */
    const char *l2_interface;      /* non-empty: the L2 transport on this interface, not TCP */
    const uint8_t *nnve_mac;       /* L2: the nNVE's MAC; NULL: discovery */
    const uint8_t *l2_discovery_mac; /* L2: SOLICIT group; NULL: the default */
    uint16_t l2_vlan;              /* L2: channel VLAN ID, 0 untagged */
    uint16_t l2_ethertype;         /* L2: 0: the default 0x88B5 */
    const char *nnve_name;         /* L2: only an nNVE advertising this name; NULL/"" any */
    uint32_t connect_timeout_ms;   /* attempt until HELLO accepted; 0: 15 s */
    uint32_t hello_timeout_ms;     /* once the transport is up: the TLS handshake, then the
                                    * HELLO answer, each within this; 0: 4 s */
    const char *name;              /* the nNVE's name in log lines (nnve=); NULL: "-" */
    const char *cert, *key, *ca;
    const char *crl;               /* PEM CRL checked at every handshake; NULL/"": none */
    const char *identity;          /* expected nNVE identity; NULL/"" accepts any */
    const char *node_id;
    const char *uplink;            /* interface whose MAC goes into HELLO; NULL/"": the
                                    * L2 interface over L2, none over TCP */
    uint32_t keepalive_ms;
    uint32_t request_timeout_ms;
    uint32_t retry_min_ms, retry_max_ms;
    uint64_t epoch;                /* SESSION_EPOCH */
};

struct tnve_nnve_cbs {
    void (*up)(void *aux);         /* HELLO accepted */
    void (*down)(void *aux);       /* the session is gone (before any CLOSED responses) */
    void (*request)(void *aux, const struct sncp_msg *req);
    void (*response)(void *aux, uint64_t cookie, const struct sncp_msg *rsp, int err);
    /* A connection attempt or the session failed; a reconnect is scheduled.  May be NULL. */
    void (*failed)(void *aux);
};

/* Loads the TLS context and starts connecting.  Returns 0 and *out, or SNCP_E_CONFIG with
 * the reason in err (certificate files unreadable, ...). */
int tnve_nnve_create(uv_loop_t *loop, const struct tnve_nnve_config *cfg,
                     const struct tnve_nnve_cbs *cbs, void *aux, struct tnve_nnve **out,
                     char *err, size_t errlen);
/* Closes the session (no callbacks run any more) and frees everything once libuv has
 * closed the handles; run the loop afterwards.  Accepts NULL. */
void tnve_nnve_destroy(struct tnve_nnve *n);

/* As sncp_conn_send / sncp_conn_respond; SNCP_E_NOT_ESTABLISHED while the session is not up.
 * Cookie 0 is reserved. */
int64_t tnve_nnve_send(struct tnve_nnve *n, struct sncp_msg *msg, uint64_t cookie);
int tnve_nnve_respond(struct tnve_nnve *n, const struct sncp_msg *req, struct sncp_msg *rsp);
/* Batches the requests sent until tnve_nnve_uncork() into few TLS records and one write
 * (sncp_conn_cork): a start's VN_CONNECT and TSI_ACTIVATE leave together.  Not nested; call
 * both within one callback of the loop (the connection outlives it). */
void tnve_nnve_cork(struct tnve_nnve *n);
void tnve_nnve_uncork(struct tnve_nnve *n);

int tnve_nnve_is_up(const struct tnve_nnve *n);
/* The CAPABILITIES the nNVE advertised in its HELLO response (0 when absent or not up). */
uint32_t tnve_nnve_peer_caps(const struct tnve_nnve *n);
/* Re-reads the certificate files and the CRL crl (SIGHUP; NULL/"": none), and closes the
 * session if the CRL now revokes the nNVE's certificate.  0 or SNCP_E_CONFIG with err (the
 * running files stay in force). */
int tnve_nnve_reload(struct tnve_nnve *n, const char *crl, char *err, size_t errlen);
/* Session state for session/show: state, transport, nnve (TCP address:port or L2
 * interface/MAC), identity, node_id, port, hold_time_ms, keepalive_ms, epoch, connects,
 * last_error, cause (of the last failure, see above; "" none), the session counters; over L2 also interface, nnve_mac (configured or found),
 * discovery, vlan and the channel's counters.  New reference. */
json_t *tnve_nnve_json(const struct tnve_nnve *n);

/* Reads the MAC of interface `ifname` in our network namespace.  0 or -errno (-ENODEV: no
 * such interface). */
int tnve_nnve_read_mac(const char *ifname, uint8_t mac[6]);

#endif
