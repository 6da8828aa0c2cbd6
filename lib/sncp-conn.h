/* sncp-conn.h: an SNCP session on a libuv transport (TLS over TCP today; the L2 channel
 * plugs in behind the same calls through sncp-conn-provider.h).
 *
 * This is the I/O half that both daemons, the test client and the load generator share:
 * it reads from the socket into the session, writes what the session outputs (bounded:
 * a peer that stops reading is disconnected once max_write_queue bytes are queued), runs
 * the session's timers on a uv_timer, and tears everything down through uv_close.
 *
 * Lifetime: `closed` runs exactly once per connection, from a libuv close callback, after
 * which the library frees the connection: the owner drops its pointer there.  All other
 * callbacks run before it.  sncp_conn_close() may be called at any time, also from a
 * callback, and more than once.
 *
 * A write to a socket the peer reset must fail, not kill the process: the first listen or
 * connect sets SIGPIPE to ignored if it still has its default disposition.
 */
#ifndef SNCP_CONN_H
#define SNCP_CONN_H 1

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "sncp-session.h"

struct sncp_conn;
struct sncp_listener;

struct sncp_conn_cbs {
    /* TLS done, identity checked; a client should now send its HELLO. */
    void (*connected)(struct sncp_conn *c, const char *peer_identity);
    void (*request)(struct sncp_conn *c, const struct sncp_msg *req);
    void (*response)(struct sncp_conn *c, uint64_t cookie, const struct sncp_msg *rsp, int err);
    /* Final: err 0 for an orderly close, else why (also connect failures: -ECONNREFUSED ...,
     * SNCP_E_CONNECT_TIMEOUT when connect_timeout_ms ran out). */
    void (*closed)(struct sncp_conn *c, int err);
};

struct sncp_conn_config {
    struct sncp_session_config session; /* role is set by listen/connect */
    size_t max_write_queue;             /* bytes; 0: 4 MiB */
    unsigned max_conns;                 /* listener only: accepted beyond are closed; 0: 4096 */
    /* Listener only, 0: no limit.  Connections that have not completed HELLO (from accept to
     * sncp_conn_hello_done()), in all and from one source address: a connection beyond
     * either is closed right after accept, before its TLS handshake costs anything. */
    unsigned max_hello_pending;
    unsigned max_hello_pending_per_source;
    /* Connecting side only (sncp_conn_connect, sncp_conn_connect_l2), 0: no limit.  The whole
     * attempt must be up this many ms after the connect call: name resolution, TCP connect
     * or L2 discovery and open, TLS handshake, and the HELLO exchange until the owner calls
     * sncp_conn_hello_done() (an owner that has no HELLO calls it once it deems the
     * connection established).  Otherwise the connection is aborted (no close_notify) and
     * `closed` runs with SNCP_E_CONNECT_TIMEOUT.  Bounds what the session's own deadlines
     * (handshake_timeout_ms, hello_timeout_ms) do not: a connect that hangs in SYN retries
     * or an L2 discovery nobody answers. */
    uint32_t connect_timeout_ms;
};

/* A listener's refusals at accept (counters since its creation) and its connections before
 * HELLO now. */
struct sncp_listener_stats {
    uint64_t refused_max_conns;
    uint64_t refused_hello_pending;
    uint64_t refused_per_source;
    unsigned hello_pending;
};

/* Listens on addr:port ("0.0.0.0", "::", "127.0.0.1", ...).  Every accepted connection
 * reports through `cbs` with sncp_conn_data() == ctx until the owner sets its own.
 * Returns 0 and *out, or -errno (e.g. -EADDRINUSE). */
int sncp_listener_create(uv_loop_t *loop, const char *addr, uint16_t port,
                         const struct sncp_conn_config *cfg, const struct sncp_conn_cbs *cbs,
                         void *ctx, struct sncp_listener **out);
/* As sncp_listener_create, on fd, a TCP socket already bound (e.g. passed by a service
 * manager, see sd_listen_fds(3)); it may already listen.  The listener owns fd: it is closed
 * with the listener, or before returning on failure unless that is -EBADF (fd < 0).
 * Returns 0 and *out, or -errno (-ENOTSOCK, -EINVAL for a socket that is not TCP...). */
int sncp_listener_open(uv_loop_t *loop, int fd, const struct sncp_conn_config *cfg,
                       const struct sncp_conn_cbs *cbs, void *ctx, struct sncp_listener **out);
/* Stops accepting; established connections stay. Accepts NULL. */
void sncp_listener_destroy(struct sncp_listener *l);
/* The bound port (useful after listening on port 0). */
uint16_t sncp_listener_port(const struct sncp_listener *l);
unsigned sncp_listener_conns(const struct sncp_listener *l);
void sncp_listener_stats(const struct sncp_listener *l, struct sncp_listener_stats *out);

/* Connects to host:port (numeric address or a name, resolved asynchronously).  Failures
 * arrive through `closed`.  Returns 0 and *out, or -errno for an immediate failure. */
int sncp_conn_connect(uv_loop_t *loop, const char *host, uint16_t port,
                      const struct sncp_conn_config *cfg, const struct sncp_conn_cbs *cbs,
                      void *ctx, struct sncp_conn **out);

/* As sncp_session_send/respond/respond_error, with the loop's time. */
int64_t sncp_conn_send(struct sncp_conn *c, struct sncp_msg *msg, uint64_t cookie);
int sncp_conn_respond(struct sncp_conn *c, const struct sncp_msg *req, struct sncp_msg *rsp);
int sncp_conn_respond_error(struct sncp_conn *c, const struct sncp_msg *req, int err,
                            uint16_t bad_tlv, const char *reason);

/* As sncp_session_cork/uncork: batch the messages sent between them into few TLS records
 * and few writes.  Calls nest; every cork needs its uncork while the connection exists. */
void sncp_conn_cork(struct sncp_conn *c);
void sncp_conn_uncork(struct sncp_conn *c);

/* The owner accepted the peer's HELLO (or, connecting, its answer to ours): the connection
 * no longer counts against the listener's max_hello_pending limits, and the session's HELLO
 * deadline and the connect deadline (connect_timeout_ms) stop. */
void sncp_conn_hello_done(struct sncp_conn *c);

/* Orderly close (close_notify, then the transport). */
void sncp_conn_close(struct sncp_conn *c);

void sncp_conn_set_data(struct sncp_conn *c, void *data);
void *sncp_conn_data(const struct sncp_conn *c);
struct sncp_session *sncp_conn_session(struct sncp_conn *c);
enum { SNCP_CONN_PEER_NAME_MAX = 64 }; /* sncp_conn_peer_name(), NUL included */

/* "192.0.2.1:40312" / "[2001:db8::1]:40312", or for L2 "IFNAME/PEER_MAC[/vlanN]". */
const char *sncp_conn_peer_name(const struct sncp_conn *c);
/* The transport's name: "tcp" or "l2". */
const char *sncp_conn_transport(const struct sncp_conn *c);
/* Bytes queued for writing and not yet written. */
size_t sncp_conn_write_queue(const struct sncp_conn *c);

#endif
