/* sncp-conn-provider.h: how a transport plugs into sncp-conn.
 *
 * sncp-conn.c owns everything that does not depend on the transport: the SNCP session (TLS,
 * framing, keepalives), the session timer, the write-queue limit, the teardown order and the
 * owner's callbacks.  A provider (TCP in sncp-conn-tcp.c; the Layer-2 channel later) supplies a
 * struct that embeds `struct sncp_conn` plus its own handles, fills in a small class of
 * operations, and reports what its transport does through the sncp_conn_transport_*()
 * calls below (OVS stream-provider style).
 *
 * Lifetime contract for a provider:
 *   1. allocate its struct, call sncp_conn_init() (creates the session and the timer);
 *   2. when the transport can carry bytes, set the peer name and call
 *      sncp_conn_transport_up() (starts reading through class->read_start(), then the TLS
 *      handshake);
 *   3. hand every received byte to sncp_conn_transport_input(); report EOF (err 0) or a
 *      failure (-errno) with sncp_conn_transport_failed();
 *   4. the conn layer calls class->close() exactly once (and possibly once more with
 *      graceful = 0 to cut a graceful close short); the provider then closes its handles and,
 *      from the last libuv close callback, calls sncp_conn_transport_released();
 *   5. the conn layer calls class->destroy() after the owner's `closed` callback: free the
 *      struct there.
 */
#ifndef SNCP_CONN_PROVIDER_H
#define SNCP_CONN_PROVIDER_H 1

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "sncp-conn.h"

struct sncp_conn_class {
    const char *name; /* "tcp", "l2" */
    /* Queues a copy of data[0..len) for sending, in order.  Returns 0, or -errno (the conn
     * then tears the transport down). */
    int (*write)(struct sncp_conn *c, const uint8_t *data, size_t len);
    /* Bytes accepted by write() and not yet handed to the kernel/device. */
    size_t (*write_queue)(const struct sncp_conn *c);
    /* Starts delivering received bytes (sncp_conn_transport_input); returns 0 or -errno.
     * Called by sncp_conn_transport_up(). */
    int (*read_start)(struct sncp_conn *c);
    /* Stops delivering received bytes (called when the teardown starts, also when reading
     * never started). */
    void (*read_stop)(struct sncp_conn *c);
    /* Tears the transport down.  graceful: let queued bytes (the close_notify) go out
     * first.  Ends with one sncp_conn_transport_released() from a libuv callback. */
    void (*close)(struct sncp_conn *c, int graceful);
    /* Frees the provider's struct (which embeds c). */
    void (*destroy)(struct sncp_conn *c);
};

/* The transport-independent part of a connection.  Providers embed it; only sncp-conn.c
 * and providers look inside. */
struct sncp_conn {
    const struct sncp_conn_class *cls;
    uv_loop_t *loop;
    struct sncp_session *session;
    struct sncp_conn_cbs cbs;
    void *data;
    size_t max_write_queue;

    struct sncp_listener *listener; /* accepted connections, until the listener goes */
    struct sncp_conn *l_prev, *l_next;

    uv_timer_t timer;   /* session deadlines; after teardown starts, the close guard */
    uint64_t timer_due; /* absolute uv_now() time the timer is armed for, 0 if idle */
    int nesting;        /* conn calls into the session in progress */
    int rearm_pending;
    uint64_t connect_deadline; /* uv_now() time connect_timeout_ms runs out, 0: none */

    int err;           /* the reason reported to `closed` */
    int transport_err; /* what the transport reported (0: EOF) */
    int transport_failed;
    int session_done; /* the session's `closed` ran */
    int closing;      /* class->close() called */
    int released;     /* the transport's handles are closed */
    int silent;       /* immediate failure in connect: no owner callback */
    char peer_name[SNCP_CONN_PEER_NAME_MAX];
};

/* Initialises the common part: copies cfg and cbs, creates the session (role given) and
 * the timer, armed for the connect deadline of a client with cfg->connect_timeout_ms.
 * Returns 0 or -ENOMEM (nothing to undo then but the provider's own struct). */
int sncp_conn_init(struct sncp_conn *c, const struct sncp_conn_class *cls, uv_loop_t *loop,
                   const struct sncp_conn_config *cfg, enum sncp_tls_role role,
                   const struct sncp_conn_cbs *cbs, void *data);
/* Sets the name used by sncp_conn_peer_name() and in log lines (copied). */
void sncp_conn_set_peer_name(struct sncp_conn *c, const char *name);
/* The transport is connected: starts the session (the client sends its ClientHello). */
void sncp_conn_transport_up(struct sncp_conn *c);
/* Bytes received from the peer. */
void sncp_conn_transport_input(struct sncp_conn *c, const uint8_t *data, size_t len);
/* EOF (err 0) or a transport failure (-errno; also connect/resolve failures): starts an
 * immediate teardown.  The session learns about it once the transport is released. */
void sncp_conn_transport_failed(struct sncp_conn *c, int err);
/* The provider's handles are all closed (called once, from a libuv close callback). */
void sncp_conn_transport_released(struct sncp_conn *c);

/* Implemented by the listener (sncp-conn-tcp.c): an accepted connection is finished and
 * leaves the listener's list and count. */
void sncp_listener_conn_finished(struct sncp_listener *l, struct sncp_conn *c);
/* ... and no longer counts as a connection before HELLO. */
void sncp_listener_conn_hello_done(struct sncp_listener *l, struct sncp_conn *c);

#endif
