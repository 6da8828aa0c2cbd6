/* sncp-session.h: one SNCP session over TLS, transport independent, no I/O.
 *
 * The owner feeds received ciphertext in with the current time and sends what the output
 * callback hands out; the session runs the TLS handshake, frames and decodes messages,
 * answers malformed ones itself (RESPONSE with the status code, the offending TLV and a
 * reason), keeps the peer alive with KEEPALIVE, pairs responses with requests by xid,
 * times requests out, and bounds both directions' requests in flight.  Time is a
 * parameter (milliseconds on any monotonic clock); call sncp_session_tick() by the
 * deadline it returns.  HELLO content and its meaning belong to the owner: the session
 * only delivers it, like any other request.
 *
 * Callbacks run from within sncp_session_input/tick/send.  The owner must not destroy
 * the session from inside a callback: `closed` asks it to tear the transport down, and it
 * destroys the session afterwards (e.g. from the transport's close callback).
 */
#ifndef SNCP_SESSION_H
#define SNCP_SESSION_H 1

#include <stddef.h>
#include <stdint.h>

#include "sncp-msg.h"
#include "sncp-tls.h"

struct sncp_session;

struct sncp_session_cbs {
    /* Ciphertext to put on the wire, in order; the bytes are valid only during the call.
     * A transport failure noticed while writing is reported later (from the transport's
     * close path), never by calling sncp_session_transport_closed() from in here. */
    void (*output)(void *ctx, const uint8_t *data, size_t len);
    /* The TLS handshake completed and the peer's certificate identity checked out.  With
     * TLS 1.3 a client gets this before the server has judged the client's certificate: a
     * refused client then sees `closed` (the server's alert) instead of its first response. */
    void (*connected)(void *ctx, const char *peer_identity);
    /* A well-formed request from the peer (anything but RESPONSE and KEEPALIVE).  Answer it,
     * now or later, with sncp_session_respond(). */
    void (*request)(void *ctx, const struct sncp_msg *req);
    /* The answer to a request we sent with `cookie`: err 0 and rsp set (rsp->status may still
     * be a failure), or rsp NULL and err SNCP_E_TIMEOUT / SNCP_E_CLOSED (the session ended
     * with it outstanding) / SNCP_E_MALFORMED (its RESPONSE did not decode).  Every
     * outstanding request gets exactly one callback. */
    void (*response)(void *ctx, uint64_t cookie, const struct sncp_msg *rsp, int err);
    /* The session is over: err is 0 after the peer's orderly close, else why (TLS failure,
     * broken framing, keepalive timeout, ...), with detail in sncp_session_error(). */
    void (*closed)(void *ctx, int err);
};

struct sncp_session_config {
    enum sncp_tls_role role;
    struct sncp_tls_ctx *tls;
    const char *expected_peer;     /* identity the peer must have; NULL accepts any */
    uint32_t handshake_timeout_ms; /* 0: 10000 */
    uint32_t keepalive_ms;         /* our KEEPALIVE interval when idle; 0: 10000 */
    uint32_t dead_factor;          /* peer silent for dead_factor * peer interval: 0: 3 */
    uint32_t request_timeout_ms;   /* 0: 30000 */
    uint32_t max_outstanding;      /* our unanswered requests; 0: 1024 */
    uint32_t max_inflight;         /* the peer's requests we have not answered; 0: 1024 */
    /* The accepting side's HELLO deadline: a session for which the owner has not called
     * sncp_session_hello_done() this long after the TLS handshake fails with SNCP_E_TIMEOUT.
     * Set, it also makes a HELLO that does not decode before then end the session once the
     * session's own failure RESPONSE is out (closed with the decode error).  0: neither. */
    uint32_t hello_timeout_ms;
};

struct sncp_session_stats {
    uint64_t bytes_in, bytes_out;
    uint64_t msgs_in[SNCP_MSG_TYPE_MAX + 1], msgs_out[SNCP_MSG_TYPE_MAX + 1];
    uint64_t status_out[SNCP_STATUS_COUNT_], status_in[SNCP_STATUS_COUNT_];
    uint64_t malformed;        /* messages we rejected as malformed / critical TLV / ... */
    uint64_t unmatched;        /* responses with no outstanding request */
    uint64_t busy_rejected;    /* peer requests refused beyond max_inflight */
    uint64_t timeouts;         /* our requests that timed out */
};

/* Creates a session; nothing is sent until sncp_session_start().  The config's strings and
 * TLS context must outlive the session.  Returns NULL on allocation failure. */
struct sncp_session *sncp_session_create(const struct sncp_session_config *cfg,
                                         const struct sncp_session_cbs *cbs, void *ctx);
/* Frees everything; no callback runs.  Accepts NULL. */
void sncp_session_destroy(struct sncp_session *s);

/* Starts the handshake (the client's first flight goes to `output`). Returns 0 or < 0. */
int sncp_session_start(struct sncp_session *s, uint64_t now);

/* Ciphertext from the transport.  Returns 0, or the negative error that closed the session
 * (the `closed` callback has run). */
int sncp_session_input(struct sncp_session *s, const uint8_t *data, size_t len, uint64_t now);

/* The transport reached EOF or failed: closes the session (callbacks run). */
void sncp_session_transport_closed(struct sncp_session *s, int err, uint64_t now);

/* Sends a request.  msg->xid is assigned by the session (any value given is replaced) and
 * returned (> 0); `cookie` comes back in the response callback.  Returns SNCP_E_NOT_ESTABLISHED
 * before the handshake, SNCP_E_BUSY at max_outstanding, or an encoding error; nothing is
 * sent then and no response callback will run. */
int64_t sncp_session_send(struct sncp_session *s, struct sncp_msg *msg, uint64_t cookie,
                          uint64_t now);

/* Answers `req` with rsp (type, xid and REQUEST_TYPE are filled in from req; the STATUS TLV
 * is always sent).  Returns 0 or a negative error. */
int sncp_session_respond(struct sncp_session *s, const struct sncp_msg *req,
                         struct sncp_msg *rsp, uint64_t now);
/* Shorthand: a RESPONSE with status from `err` (any error, see sncp_status_from_error) and
 * reason text (NULL: the status's text), plus ERROR_TLV if bad_tlv != 0. */
int sncp_session_respond_error(struct sncp_session *s, const struct sncp_msg *req, int err,
                               uint16_t bad_tlv, const char *reason, uint64_t now);

/* Batches output.  Between cork and the matching uncork, messages sent or answered are
 * only queued (up to one TLS record's worth at a time); they leave as a few large records
 * and one `output` call when the outermost uncork returns.  Calls nest.  Use around loops
 * that send many messages from outside the session's callbacks (inside callbacks, output is
 * already batched until the callback's caller returns). */
void sncp_session_cork(struct sncp_session *s);
void sncp_session_uncork(struct sncp_session *s);

/* Names the transport endpoint in the session's log lines (peer=...), e.g.
 * "192.0.2.1:40312"; the string is copied.  Optional (sncp-conn sets it). */
void sncp_session_set_name(struct sncp_session *s, const char *name);

/* Hands every framed message received to fn (the bytes as they arrived, before decoding),
 * for test and capture tools; fn NULL stops it. */
typedef void sncp_session_tap_fn(void *ctx, const uint8_t *msg, size_t len);
void sncp_session_set_tap(struct sncp_session *s, sncp_session_tap_fn *fn, void *ctx);

/* The owner accepted the peer's HELLO: stops the HELLO deadline (hello_timeout_ms). */
void sncp_session_hello_done(struct sncp_session *s);

/* Sets the interval at which the peer promised keepalives (from its HELLO), for dead-peer
 * detection; 0 keeps the default (our own interval). */
void sncp_session_set_peer_keepalive(struct sncp_session *s, uint32_t ms);

/* Runs timers: handshake timeout, keepalive sending, dead-peer detection, request timeouts.
 * Returns the next absolute deadline, or UINT64_MAX if none. */
uint64_t sncp_session_tick(struct sncp_session *s, uint64_t now);

/* Orderly close: close_notify goes out through `output`; outstanding requests get
 * SNCP_E_CLOSED; `closed` runs with 0. */
void sncp_session_close(struct sncp_session *s, uint64_t now);

int sncp_session_is_established(const struct sncp_session *s);
int sncp_session_is_closed(const struct sncp_session *s);
const char *sncp_session_peer_identity(const struct sncp_session *s);
const char *sncp_session_error(const struct sncp_session *s); /* last failure's detail */
const struct sncp_tls *sncp_session_tls(const struct sncp_session *s);
unsigned sncp_session_outstanding(const struct sncp_session *s); /* ours in flight */
unsigned sncp_session_inflight(const struct sncp_session *s);    /* theirs unanswered */
const struct sncp_session_stats *sncp_session_stats(const struct sncp_session *s);

#endif
