/* sncp-conn.c: the transport-independent half of an SNCP connection on libuv.
 *
 * Glues a session (sncp-session) to a provider (sncp-conn-provider.h): received bytes go
 * into the session, the session's output goes to the provider's write(), the session's
 * deadlines and the connect deadline (connect_timeout_ms) run on one uv_timer per
 * connection.  It also owns the teardown order, which is the same for every transport:
 *
 *   session ends (orderly close, protocol failure)  -> graceful transport close, bounded
 *                                                      in time by the timer
 *   transport ends (EOF, error, write queue full)   -> immediate transport close; the
 *                                                      session is told once it is released
 *   transport released -> timer closed -> owner's `closed` -> session destroyed -> freed
 */
#include "sncp-conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sncp-conn-provider.h"
#include "sncp-error.h"
#include "snv-log.h"

enum {
    DEFAULT_MAX_WRITE_QUEUE = 4 * 1024 * 1024,
    CLOSE_GUARD_MS = 2000, /* how long a graceful close may wait for the peer to read */
};

static void conn_rearm(struct sncp_conn *c);

static struct snv_ratelimit conn_rl = SNV_RATELIMIT_INIT(20, 50);

/* ---- session callbacks ---------------------------------------------------------------- */

static void begin_teardown(struct sncp_conn *c, int graceful);

static void on_output(void *ctx, const uint8_t *data, size_t len)
{
    struct sncp_conn *c = ctx;
    if (c->closing)
        return;
    /* What was logged before these bytes leaves first (a no-op unless lines are batched and
     * some are waiting): a peer never sees an effect before its log line is written. */
    snv_log_flush();
    int rc = c->cls->write(c, data, len);
    if (rc < 0) {
        sncp_conn_transport_failed(c, rc);
        return;
    }
    size_t queued = c->cls->write_queue(c);
    if (queued > c->max_write_queue) {
        snv_log_rl(&conn_rl, SNV_LOG_WARN, "conn",
                   "closing connection: peer is not reading peer=%s identity=%s queued=%zu "
                   "limit=%zu",
                   c->peer_name, sncp_session_peer_identity(c->session), queued,
                   c->max_write_queue);
        sncp_conn_transport_failed(c, -ENOBUFS);
    }
}

static void on_connected(void *ctx, const char *peer_identity)
{
    struct sncp_conn *c = ctx;
    if (c->cbs.connected)
        c->cbs.connected(c, peer_identity);
}

static void on_request(void *ctx, const struct sncp_msg *req)
{
    struct sncp_conn *c = ctx;
    if (c->cbs.request)
        c->cbs.request(c, req);
    else
        sncp_session_respond_error(c->session, req, SNCP_E_UNEXPECTED_MESSAGE, 0, NULL,
                                   uv_now(c->loop));
}

static void on_response(void *ctx, uint64_t cookie, const struct sncp_msg *rsp, int err)
{
    struct sncp_conn *c = ctx;
    if (c->cbs.response)
        c->cbs.response(c, cookie, rsp, err);
}

static void on_session_closed(void *ctx, int err)
{
    struct sncp_conn *c = ctx;
    c->session_done = 1;
    c->err = err;
    begin_teardown(c, !c->transport_failed);
}

static const struct sncp_session_cbs session_cbs = {on_output, on_connected, on_request,
                                                    on_response, on_session_closed};

/* ---- timer and teardown --------------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    struct sncp_conn *c = t->data;
    c->timer_due = 0;
    if (c->closing) {
        /* A graceful close took too long (the peer does not read): cut it short. */
        if (!c->released)
            c->cls->close(c, 0);
        return;
    }
    if (c->connect_deadline && uv_now(c->loop) >= c->connect_deadline) {
        /* An attempt that is not up in time is a failed one: abort it whatever its stage
         * (a TCP connect in SYN retries, an unanswered L2 discovery, a silent peer). */
        c->connect_deadline = 0;
        sncp_conn_transport_failed(c, SNCP_E_CONNECT_TIMEOUT);
        return;
    }
    conn_rearm(c);
}

/* Runs the session's timers and arms ours for the next deadline.  Deferred while a conn
 * call into the session is in progress (no re-entrant tick from inside callbacks). */
static void conn_rearm(struct sncp_conn *c)
{
    if (c->closing || c->session_done)
        return;
    if (c->nesting) {
        c->rearm_pending = 1;
        return;
    }
    c->rearm_pending = 0;
    uint64_t now = uv_now(c->loop);
    c->nesting++;
    uint64_t due = sncp_session_tick(c->session, now);
    c->nesting--;
    if (c->closing || c->session_done)
        return;
    if (c->connect_deadline && c->connect_deadline < due)
        due = c->connect_deadline;
    if (due == UINT64_MAX) {
        if (c->timer_due) {
            uv_timer_stop(&c->timer);
            c->timer_due = 0;
        }
        return;
    }
    /* A timer that fires early is harmless (it re-ticks), so only move it earlier. */
    if (c->timer_due && c->timer_due <= due)
        return;
    c->timer_due = due;
    uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
}

static void leave_session(struct sncp_conn *c)
{
    if (--c->nesting == 0 && c->rearm_pending)
        conn_rearm(c);
}

static void begin_teardown(struct sncp_conn *c, int graceful)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_timer_stop(&c->timer);
    c->timer_due = 0;
    if (graceful)
        uv_timer_start(&c->timer, on_timer, CLOSE_GUARD_MS, 0);
    c->cls->read_stop(c);
    snv_log_flush(); /* as in on_output: the reason is logged before the peer sees the end */
    c->cls->close(c, graceful);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct sncp_conn *c = h->data;
    if (c->listener)
        sncp_listener_conn_finished(c->listener, c);
    if (!c->silent && c->cbs.closed)
        c->cbs.closed(c, c->err);
    sncp_session_destroy(c->session);
    c->session = NULL;
    c->cls->destroy(c);
}

/* ---- provider interface --------------------------------------------------------------- */

int sncp_conn_init(struct sncp_conn *c, const struct sncp_conn_class *cls, uv_loop_t *loop,
                   const struct sncp_conn_config *cfg, enum sncp_tls_role role,
                   const struct sncp_conn_cbs *cbs, void *data)
{
    memset(c, 0, sizeof *c);
    c->cls = cls;
    c->loop = loop;
    c->cbs = *cbs;
    c->data = data;
    c->max_write_queue = cfg->max_write_queue ? cfg->max_write_queue : DEFAULT_MAX_WRITE_QUEUE;
    snprintf(c->peer_name, sizeof c->peer_name, "%s", "-");
    struct sncp_session_config scfg = cfg->session;
    scfg.role = role;
    c->session = sncp_session_create(&scfg, &session_cbs, c);
    if (!c->session)
        return -ENOMEM;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    if (role == SNCP_TLS_CLIENT && cfg->connect_timeout_ms) {
        c->connect_deadline = uv_now(loop) + cfg->connect_timeout_ms;
        c->timer_due = c->connect_deadline;
        uv_timer_start(&c->timer, on_timer, cfg->connect_timeout_ms, 0);
    }
    return 0;
}

void sncp_conn_set_peer_name(struct sncp_conn *c, const char *name)
{
    snprintf(c->peer_name, sizeof c->peer_name, "%s", name);
    sncp_session_set_name(c->session, c->peer_name);
}

void sncp_conn_transport_up(struct sncp_conn *c)
{
    if (c->closing)
        return;
    int rc = c->cls->read_start(c);
    if (rc < 0) {
        sncp_conn_transport_failed(c, rc);
        return;
    }
    c->nesting++;
    sncp_session_start(c->session, uv_now(c->loop));
    c->rearm_pending = 1;
    leave_session(c);
}

void sncp_conn_transport_input(struct sncp_conn *c, const uint8_t *data, size_t len)
{
    if (c->closing)
        return;
    c->nesting++;
    sncp_session_input(c->session, data, len, uv_now(c->loop));
    c->rearm_pending = 1;
    leave_session(c);
}

void sncp_conn_transport_failed(struct sncp_conn *c, int err)
{
    if (c->closing)
        return;
    c->transport_failed = 1;
    c->transport_err = err;
    begin_teardown(c, 0);
}

void sncp_conn_transport_released(struct sncp_conn *c)
{
    c->released = 1;
    if (!c->session_done) {
        /* The session hears about the transport only now, outside any write path, so its
         * callbacks (outstanding requests failing, `closed`) never run inside a send. */
        c->nesting++;
        sncp_session_transport_closed(c->session, c->transport_err, uv_now(c->loop));
        c->nesting--;
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

/* ---- owner API ------------------------------------------------------------------------ */

int64_t sncp_conn_send(struct sncp_conn *c, struct sncp_msg *msg, uint64_t cookie)
{
    if (c->closing || c->session_done)
        return SNCP_E_CLOSED;
    c->nesting++;
    int64_t rc = sncp_session_send(c->session, msg, cookie, uv_now(c->loop));
    c->rearm_pending = 1;
    leave_session(c);
    return rc;
}

int sncp_conn_respond(struct sncp_conn *c, const struct sncp_msg *req, struct sncp_msg *rsp)
{
    if (c->closing || c->session_done)
        return SNCP_E_CLOSED;
    c->nesting++;
    int rc = sncp_session_respond(c->session, req, rsp, uv_now(c->loop));
    leave_session(c);
    return rc;
}

int sncp_conn_respond_error(struct sncp_conn *c, const struct sncp_msg *req, int err,
                            uint16_t bad_tlv, const char *reason)
{
    if (c->closing || c->session_done)
        return SNCP_E_CLOSED;
    c->nesting++;
    int rc = sncp_session_respond_error(c->session, req, err, bad_tlv, reason, uv_now(c->loop));
    leave_session(c);
    return rc;
}

void sncp_conn_cork(struct sncp_conn *c)
{
    c->nesting++;
    sncp_session_cork(c->session);
}

void sncp_conn_uncork(struct sncp_conn *c)
{
    sncp_session_uncork(c->session);
    leave_session(c);
}

void sncp_conn_hello_done(struct sncp_conn *c)
{
    c->connect_deadline = 0; /* the armed timer, if any, fires early and re-ticks */
    if (c->listener)
        sncp_listener_conn_hello_done(c->listener, c);
    sncp_session_hello_done(c->session);
}

void sncp_conn_close(struct sncp_conn *c)
{
    if (c->closing || c->session_done)
        return;
    c->nesting++;
    sncp_session_close(c->session, uv_now(c->loop));
    c->nesting--;
}

void sncp_conn_set_data(struct sncp_conn *c, void *data)
{
    c->data = data;
}

void *sncp_conn_data(const struct sncp_conn *c)
{
    return c->data;
}

struct sncp_session *sncp_conn_session(struct sncp_conn *c)
{
    return c->session;
}

const char *sncp_conn_peer_name(const struct sncp_conn *c)
{
    return c->peer_name;
}

size_t sncp_conn_write_queue(const struct sncp_conn *c)
{
    return c->released ? 0 : c->cls->write_queue(c);
}

const char *sncp_conn_transport(const struct sncp_conn *c)
{
    return c->cls->name;
}
