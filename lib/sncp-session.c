/* sncp-session.c: one SNCP session over TLS: handshake, framing, request/response pairing,
 * keepalives, timeouts and flow limits, with no I/O and no clock of its own.
 *
 * Data path: ciphertext in -> sncp_tls -> plaintext -> sncp_framer -> sncp_msg_decode into a
 * session-owned scratch message -> callbacks.  Outgoing messages are encoded straight into a
 * plaintext buffer; the buffer goes through TLS and out through the `output` callback once
 * per API call (when the outermost call returns), so a burst of responses produced while
 * handling one input chunk leaves as a few large records and one write.
 *
 * Our outstanding requests live in a pool of slots, found by xid through an open-addressing
 * hash table, and chained in send order.  Every request gets the same timeout, so send order
 * is deadline order and the timeout scan in tick only looks at the head of the chain: every
 * operation is O(1).  The pool doubles when full, up to max_outstanding, and is released by
 * a tick that finds no request outstanding.
 *
 * Memory: an idle session holds no buffer.  The working buffers (decrypted input, the
 * decoded message, ciphertext on its way out, the queued plaintext) are borrowed for the
 * length of a call from a per-thread pool shared by all sessions; a call that runs nested in
 * another session's (an in-memory transport hands one session's output straight to another's
 * input) finds a buffer taken and allocates its own for the call.  The reassembly buffer
 * exists only while a partial message is pending.  A daemon with thousands of quiet sessions
 * pays for the sessions' state, not for their peak traffic.
 */
#include "sncp-session.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sncp-error.h"
#include "sncp-frame.h"
#include "snv-log.h"

enum {
    SESSION_ERROR_MAX = 320,
    SESSION_NAME_MAX = 96,
    PT_FLUSH_AT = 16 * 1024, /* plaintext queued before it is pushed through TLS:
                                one full TLS record */
    PT_CAP = PT_FLUSH_AT + SNCP_MAX_MSG_LEN,
    SLOTS_MIN = 16,     /* outstanding-request slots allocated at first */
    RX_BUF = 16 * 1024, /* plaintext read per sncp_tls_read() call */
    TX_BUF = 34 * 1024, /* ciphertext handed to `output` per call (PT_CAP plus
                           record overhead: one call per flush) */
    BUSY_RETRY_AFTER_MS = 1000,
};

#define NIL UINT32_MAX

enum session_state {
    S_NEW,
    S_HANDSHAKE,
    S_ESTABLISHED,
    S_CLOSED,
};

struct pending {
    uint32_t xid;
    uint32_t prev, next; /* send-order chain, or the free list through `next` */
    uint64_t cookie;
    uint64_t deadline;
};

struct sncp_session {
    struct sncp_session_config cfg;
    struct sncp_session_cbs cbs;
    void *ctx;
    enum session_state state;

    struct sncp_tls *tls;
    struct sncp_framer *framer;
    uint8_t *pt; /* queued plaintext, PT_CAP bytes, borrowed while pt_len > 0 */
    size_t pt_len;
    int depth; /* nesting of API calls; output is flushed at depth 0 */
    int flushing;
    int transport_gone;

    /* Our requests awaiting a response: n_slots slots (0 until the first request). */
    struct pending *slots;
    uint32_t n_slots;
    uint32_t *hash;
    uint32_t hash_mask;
    uint32_t free_head;
    uint32_t head, tail; /* oldest, newest */
    uint32_t n_outstanding;
    uint32_t next_xid;

    uint32_t inflight; /* peer requests delivered and not yet answered */
    uint32_t peer_keepalive_ms;
    uint64_t started, last_rx, last_tx;
    uint64_t established_at;  /* the TLS handshake's end */
    int hello_done;           /* sncp_session_hello_done() called */
    sncp_session_tap_fn *tap; /* sncp_session_set_tap() */
    void *tap_ctx;

    int close_err;
    char error[SESSION_ERROR_MAX];
    char name[SESSION_NAME_MAX];
    struct sncp_session_stats stats;
};

/* One limiter for every session's peer-triggered lines: a burst of misbehaving peers cannot
 * flood the log, whatever their number. */
static struct snv_ratelimit session_rl = SNV_RATELIMIT_INIT(20, 50);

static void session_fail(struct sncp_session *s, int err, uint64_t now, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static const char *peer_name(const struct sncp_session *s)
{
    return s->name[0] ? s->name : "-";
}

static const char *peer_id(const struct sncp_session *s)
{
    const char *id = sncp_tls_peer_identity(s->tls);
    return id[0] ? id : "-";
}

/* ---- borrowed buffers ----------------------------------------------------------------- */

enum scratch_kind { SCRATCH_RX, SCRATCH_TX, SCRATCH_RXBUF, SCRATCH_TXBUF, SCRATCH_PT, SCRATCH_N };

static const size_t scratch_size[SCRATCH_N] = {
    [SCRATCH_RX] = sizeof(struct sncp_msg),
    [SCRATCH_TX] = sizeof(struct sncp_msg),
    [SCRATCH_RXBUF] = RX_BUF,
    [SCRATCH_TXBUF] = TX_BUF,
    [SCRATCH_PT] = PT_CAP,
};

/* The thread's buffers (allocated at first use, kept for the thread's life) and whether a
 * call has borrowed each. */
static _Thread_local struct {
    void *buf;
    int busy;
} scratch[SCRATCH_N];

/* Lends the thread's buffer of that kind, or allocates one when it is lent already.
 * Returns NULL when out of memory.  Give it back with scratch_put(). */
static void *scratch_get(enum scratch_kind k)
{
    if (scratch[k].busy)
        return malloc(scratch_size[k]);
    if (!scratch[k].buf)
        scratch[k].buf = malloc(scratch_size[k]);
    if (scratch[k].buf)
        scratch[k].busy = 1;
    return scratch[k].buf;
}

static void scratch_put(enum scratch_kind k, void *p)
{
    if (p && p == scratch[k].buf)
        scratch[k].busy = 0;
    else
        free(p);
}

/* ---- outstanding requests ------------------------------------------------------------- */

static uint32_t hash_pos(const struct sncp_session *s, uint32_t xid)
{
    return (xid * UINT32_C(2654435761)) & s->hash_mask;
}

/* Position in the hash table of xid's entry, or NIL. */
static uint32_t pending_find(const struct sncp_session *s, uint32_t xid)
{
    if (!s->hash)
        return NIL;
    for (uint32_t i = hash_pos(s, xid);; i = (i + 1) & s->hash_mask) {
        uint32_t slot = s->hash[i];
        if (slot == NIL)
            return NIL;
        if (s->slots[slot].xid == xid)
            return i;
    }
}

static void hash_insert(struct sncp_session *s, uint32_t slot)
{
    uint32_t i = hash_pos(s, s->slots[slot].xid);
    while (s->hash[i] != NIL)
        i = (i + 1) & s->hash_mask;
    s->hash[i] = slot;
}

/* Removes the entry at position i, shifting later members of its probe run back. */
static void hash_remove_at(struct sncp_session *s, uint32_t i)
{
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & s->hash_mask;
        uint32_t slot = s->hash[j];
        if (slot == NIL)
            break;
        uint32_t k = hash_pos(s, s->slots[slot].xid);
        /* Move j's entry to i unless its home k lies cyclically in (i, j]. */
        int keep = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
        if (!keep) {
            s->hash[i] = slot;
            i = j;
        }
    }
    s->hash[i] = NIL;
}

static void chain_unlink(struct sncp_session *s, uint32_t slot)
{
    struct pending *p = &s->slots[slot];
    if (p->prev != NIL)
        s->slots[p->prev].next = p->next;
    else
        s->head = p->next;
    if (p->next != NIL)
        s->slots[p->next].prev = p->prev;
    else
        s->tail = p->prev;
}

/* Doubles the pool of slots (to max_outstanding at most) when every slot is taken, and
 * rebuilds the hash table for the new size.  Returns 0 or -ENOMEM (the pool unchanged). */
static int pending_grow(struct sncp_session *s)
{
    uint32_t cap = s->n_slots ? s->n_slots * 2 : SLOTS_MIN;
    if (cap > s->cfg.max_outstanding)
        cap = s->cfg.max_outstanding;
    uint32_t hsize = 16;
    while (hsize < 2 * cap)
        hsize <<= 1;
    uint32_t *hash = malloc(hsize * sizeof *hash);
    struct pending *slots = hash ? realloc(s->slots, cap * sizeof *slots) : NULL;
    if (!slots) {
        free(hash);
        return -ENOMEM;
    }
    s->slots = slots;
    free(s->hash);
    s->hash = hash;
    s->hash_mask = hsize - 1;
    memset(hash, 0xff, hsize * sizeof *hash);
    for (uint32_t i = s->head; i != NIL; i = s->slots[i].next)
        hash_insert(s, i);
    for (uint32_t i = s->n_slots; i < cap; i++)
        s->slots[i].next = i + 1 < cap ? i + 1 : s->free_head;
    if (cap > s->n_slots)
        s->free_head = s->n_slots;
    s->n_slots = cap;
    return 0;
}

/* Frees the pool while no request is outstanding (an idle session holds none). */
static void pending_release(struct sncp_session *s)
{
    if (s->n_outstanding || !s->slots)
        return;
    free(s->slots);
    free(s->hash);
    s->slots = NULL;
    s->hash = NULL;
    s->n_slots = 0;
    s->hash_mask = 0;
    s->free_head = NIL;
}

static uint32_t pending_add(struct sncp_session *s, uint32_t xid, uint64_t cookie,
                            uint64_t deadline)
{
    uint32_t slot = s->free_head;
    struct pending *p = &s->slots[slot];
    s->free_head = p->next;
    p->xid = xid;
    p->cookie = cookie;
    p->deadline = deadline;
    p->next = NIL;
    p->prev = s->tail;
    if (s->tail != NIL)
        s->slots[s->tail].next = slot;
    else
        s->head = slot;
    s->tail = slot;
    hash_insert(s, slot);
    s->n_outstanding++;
    return slot;
}

/* Removes the request at hash position pos; returns its cookie. */
static uint64_t pending_remove(struct sncp_session *s, uint32_t pos)
{
    uint32_t slot = s->hash[pos];
    uint64_t cookie = s->slots[slot].cookie;
    hash_remove_at(s, pos);
    chain_unlink(s, slot);
    s->slots[slot].next = s->free_head;
    s->free_head = slot;
    s->n_outstanding--;
    return cookie;
}

static uint32_t xid_alloc(struct sncp_session *s)
{
    for (;;) {
        uint32_t xid = s->next_xid++;
        if (xid != 0 && pending_find(s, xid) == NIL)
            return xid;
    }
}

/* ---- output --------------------------------------------------------------------------- */

/* Gives the plaintext buffer back (its content is dropped). */
static void pt_release(struct sncp_session *s)
{
    scratch_put(SCRATCH_PT, s->pt);
    s->pt = NULL;
    s->pt_len = 0;
}

/* Pushes queued plaintext through TLS and hands all pending ciphertext to `output`. */
static void flush_output(struct sncp_session *s)
{
    if (s->flushing)
        return;
    s->flushing = 1;
    if (s->pt_len) {
        size_t len = s->pt_len;
        int rc = sncp_tls_established(s->tls) ? sncp_tls_write(s->tls, s->pt, len) : 0;
        pt_release(s);
        if (rc < 0 && s->state != S_CLOSED) {
            s->flushing = 0;
            session_fail(s, rc, s->last_tx, "TLS write failed: %s", sncp_tls_error(s->tls));
            return;
        }
    }
    if (sncp_tls_pending(s->tls)) {
        uint8_t *txbuf = scratch_get(SCRATCH_TXBUF);
        size_t n;
        while (txbuf && (n = sncp_tls_drain(s->tls, txbuf, TX_BUF)) > 0) {
            if (s->transport_gone)
                continue;
            s->stats.bytes_out += n;
            s->cbs.output(s->ctx, txbuf, n);
        }
        scratch_put(SCRATCH_TXBUF, txbuf);
        if (!txbuf && s->state != S_CLOSED) {
            s->flushing = 0;
            session_fail(s, -ENOMEM, s->last_tx, "%s", "out of memory for output");
            return;
        }
    }
    s->flushing = 0;
}

static void enter(struct sncp_session *s)
{
    s->depth++;
}

/* The outermost call's end: the output leaves, and the session drops its TLS buffers until
 * the next burst. */
static void leave(struct sncp_session *s)
{
    if (--s->depth == 0) {
        flush_output(s);
        sncp_tls_trim(s->tls);
    }
}

/* Encodes msg at the end of the plaintext buffer. */
static int queue_msg(struct sncp_session *s, const struct sncp_msg *msg, uint64_t now)
{
    if (s->pt_len >= PT_FLUSH_AT) {
        flush_output(s);
        if (s->state == S_CLOSED)
            return SNCP_E_CLOSED;
    }
    if (!s->pt && !(s->pt = scratch_get(SCRATCH_PT)))
        return -ENOMEM;
    int n = sncp_msg_encode(msg, s->pt + s->pt_len, PT_CAP - s->pt_len);
    if (n < 0 && !s->pt_len)
        pt_release(s);
    if (n < 0)
        return n;
    s->pt_len += (size_t)n;
    if (msg->type <= SNCP_MSG_TYPE_MAX)
        s->stats.msgs_out[msg->type]++;
    if (msg->type == SNCP_MSG_RESPONSE && msg->status < SNCP_STATUS_COUNT_)
        s->stats.status_out[msg->status]++;
    s->last_tx = now;
    return 0;
}

/* A RESPONSE generated by the session itself (malformed input, BUSY): not a delivered
 * request, so the in-flight count is untouched. */
static void answer_internal(struct sncp_session *s, uint32_t xid, uint8_t req_type, int err,
                            uint16_t bad_tlv, const char *reason, uint64_t now)
{
    struct sncp_msg *m = scratch_get(SCRATCH_TX);
    if (!m) {
        session_fail(s, -ENOMEM, now, "%s", "out of memory for an error response");
        return;
    }
    sncp_msg_init(m, SNCP_MSG_RESPONSE, xid);
    m->status = sncp_status_from_error(err);
    sncp_msg_set(m, SNCP_TLV_STATUS);
    if (req_type >= 1 && req_type <= SNCP_MSG_TYPE_MAX) {
        m->request_type = req_type;
        sncp_msg_set(m, SNCP_TLV_REQUEST_TYPE);
    }
    snprintf(m->reason, sizeof m->reason, "%s", reason ? reason : sncp_status_text(m->status));
    sncp_msg_set(m, SNCP_TLV_REASON);
    if (bad_tlv) {
        m->error_tlv = bad_tlv;
        sncp_msg_set(m, SNCP_TLV_ERROR_TLV);
    }
    if (err == SNCP_E_BUSY) {
        m->retry_after_ms = BUSY_RETRY_AFTER_MS;
        sncp_msg_set(m, SNCP_TLV_RETRY_AFTER);
    }
    int rc = queue_msg(s, m, now);
    scratch_put(SCRATCH_TX, m);
    if (rc < 0 && s->state != S_CLOSED)
        snv_log_rl(&session_rl, SNV_LOG_ERR, "session",
                   "cannot encode error response peer=%s identity=%s err=%s", peer_name(s),
                   peer_id(s), sncp_error_token(rc));
}

/* ---- closing -------------------------------------------------------------------------- */

static void flush_outstanding(struct sncp_session *s)
{
    while (s->head != NIL) {
        uint32_t slot = s->head;
        uint32_t pos = pending_find(s, s->slots[slot].xid);
        uint64_t cookie = pending_remove(s, pos);
        s->cbs.response(s->ctx, cookie, NULL, SNCP_E_CLOSED);
    }
}

static void finish_close(struct sncp_session *s, int err)
{
    flush_output(s);
    pt_release(s);
    flush_outstanding(s);
    s->inflight = 0;
    s->cbs.closed(s->ctx, err);
}

static void session_fail(struct sncp_session *s, int err, uint64_t now, const char *fmt, ...)
{
    if (s->state == S_CLOSED)
        return;
    (void)now;
    s->state = S_CLOSED;
    s->close_err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof s->error, fmt, ap);
    va_end(ap);
    /* Debug only: the owner's closed callback logs the failure with its own context
     * (hypervisor, port, counters), and one failure should be one warning. */
    snv_log_rl(&session_rl, SNV_LOG_DEBUG, "session",
               "closed peer=%s identity=%s err=%s reason=\"%s\"", peer_name(s), peer_id(s),
               sncp_error_token(err), s->error);
    /* Queued plaintext is dropped, but a TLS alert already written still goes out. */
    s->pt_len = 0;
    finish_close(s, err);
}

/* A RESPONSE for xid that did not decode: its request, if outstanding, fails with
 * SNCP_E_MALFORMED. */
static void fail_pending(struct sncp_session *s, uint32_t xid)
{
    uint32_t pos = pending_find(s, xid);
    if (pos == NIL)
        return;
    uint64_t cookie = pending_remove(s, pos);
    s->cbs.response(s->ctx, cookie, NULL, SNCP_E_MALFORMED);
}

/* Closes after what is queued (an answer) has gone out: close_notify follows it. */
static void close_after_answer(struct sncp_session *s, int err, const char *fmt, ...)
{
    if (s->state == S_CLOSED)
        return;
    flush_output(s);
    if (s->state == S_CLOSED)
        return;
    sncp_tls_shutdown(s->tls);
    s->state = S_CLOSED;
    s->close_err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof s->error, fmt, ap);
    va_end(ap);
    finish_close(s, err);
}

/* ---- input ---------------------------------------------------------------------------- */

static void handle_response(struct sncp_session *s, const struct sncp_msg *m)
{
    if (m->status < SNCP_STATUS_COUNT_)
        s->stats.status_in[m->status]++;
    uint32_t pos = pending_find(s, m->xid);
    if (pos == NIL) {
        s->stats.unmatched++;
        snv_log_rl(&session_rl, SNV_LOG_WARN, "session",
                   "dropped response without request peer=%s identity=%s xid=%u status=%s",
                   peer_name(s), peer_id(s), m->xid, sncp_status_token(m->status));
        return;
    }
    uint64_t cookie = pending_remove(s, pos);
    s->cbs.response(s->ctx, cookie, m, 0);
}

/* Decodes one message into m and acts on it.  Returns nonzero when the session closed. */
static int handle_frame(struct sncp_session *s, struct sncp_msg *m, const uint8_t *data, size_t len)
{
    uint16_t bad_tlv = 0;
    if (s->tap)
        s->tap(s->tap_ctx, data, len);
    int rc = sncp_msg_decode(data, len, m, &bad_tlv);
    uint8_t type = m->type;
    uint64_t now = s->last_rx;
    if (type >= 1 && type <= SNCP_MSG_TYPE_MAX)
        s->stats.msgs_in[type]++;
    if (rc < 0) {
        s->stats.malformed++;
        char reason[SNCP_MAX_REASON_LEN + 1];
        if (bad_tlv)
            snprintf(reason, sizeof reason, "%s (TLV %s, type %u)", sncp_strerror(rc),
                     sncp_tlv_name(bad_tlv), bad_tlv);
        else
            snprintf(reason, sizeof reason, "%s", sncp_strerror(rc));
        snv_log_rl(&session_rl, SNV_LOG_WARN, "session",
                   "rejected message peer=%s identity=%s type=%s xid=%u err=%s tlv=%u",
                   peer_name(s), peer_id(s), sncp_msg_type_name(type), m->xid, sncp_error_token(rc),
                   bad_tlv);
        /* Never answer a response or a keepalive: that could ping-pong forever.  A
         * response we cannot read still ends its request, now rather than at the timeout. */
        if (type == SNCP_MSG_RESPONSE)
            fail_pending(s, m->xid);
        else if (type != SNCP_MSG_KEEPALIVE)
            answer_internal(s, m->xid, type, rc, bad_tlv, reason, now);
        /* A HELLO that failed ends the session once its answer is out (PROTOCOL.md §6.1). */
        if (type == SNCP_MSG_HELLO && s->cfg.hello_timeout_ms && !s->hello_done)
            close_after_answer(s, rc, "HELLO failed: %s", reason);
        return s->state == S_CLOSED;
    }
    switch (type) {
    case SNCP_MSG_KEEPALIVE:
        break;
    case SNCP_MSG_RESPONSE:
        handle_response(s, m);
        break;
    default:
        if (s->inflight >= s->cfg.max_inflight) {
            s->stats.busy_rejected++;
            snv_log_rl(&session_rl, SNV_LOG_WARN, "session",
                       "refused request beyond max_inflight peer=%s identity=%s type=%s xid=%u "
                       "inflight=%u",
                       peer_name(s), peer_id(s), sncp_msg_type_name(type), m->xid, s->inflight);
            answer_internal(s, m->xid, type, SNCP_E_BUSY, 0, "too many requests in flight", now);
            break;
        }
        s->inflight++;
        s->cbs.request(s->ctx, m);
        break;
    }
    return s->state == S_CLOSED;
}

static int on_frame(void *ctx, const uint8_t *data, size_t len)
{
    struct sncp_session *s = ctx;
    if (s->state != S_ESTABLISHED)
        return 1;
    struct sncp_msg *m = scratch_get(SCRATCH_RX);
    if (!m) {
        session_fail(s, -ENOMEM, s->last_rx, "%s", "out of memory for a message");
        return 1;
    }
    int closed = handle_frame(s, m, data, len);
    scratch_put(SCRATCH_RX, m);
    return closed;
}

static void established(struct sncp_session *s, uint64_t now)
{
    s->state = S_ESTABLISHED;
    s->established_at = now;
    s->last_rx = now;
    s->last_tx = now;
    char desc[128];
    SNV_DBG("session", "established peer=%s identity=%s tls=\"%s\"", peer_name(s), peer_id(s),
            sncp_tls_description(s->tls, desc, sizeof desc));
    s->cbs.connected(s->ctx, sncp_tls_peer_identity(s->tls));
}

/* Reads everything TLS has decrypted into the framer, which exists while a partial message
 * is pending (allocated here, freed by the outermost call that leaves it empty). */
static void read_plaintext(struct sncp_session *s, uint64_t now)
{
    uint8_t *rxbuf = NULL;
    while (s->state == S_ESTABLISHED) {
        if (!rxbuf && !(rxbuf = scratch_get(SCRATCH_RXBUF))) {
            session_fail(s, -ENOMEM, now, "%s", "out of memory for input");
            break;
        }
        int n = sncp_tls_read(s->tls, rxbuf, RX_BUF);
        if (n == 0)
            break;
        if (n == SNCP_E_PEER_CLOSED) {
            /* Answer the peer's close_notify with ours, then report an orderly end. */
            flush_output(s);
            sncp_tls_shutdown(s->tls);
            s->state = S_CLOSED;
            s->close_err = 0;
            snprintf(s->error, sizeof s->error, "%s", "peer closed the session");
            SNV_DBG("session", "peer closed peer=%s identity=%s", peer_name(s), peer_id(s));
            finish_close(s, 0);
            break;
        }
        if (n < 0) {
            session_fail(s, n, now, "TLS failure: %s", sncp_tls_error(s->tls));
            break;
        }
        if (!s->framer) {
            s->framer = malloc(sizeof *s->framer);
            if (!s->framer) {
                session_fail(s, -ENOMEM, now, "%s", "out of memory for input");
                break;
            }
            sncp_framer_init(s->framer);
        }
        int rc = sncp_framer_feed(s->framer, rxbuf, (size_t)n, on_frame, s);
        if (rc < 0 && s->state != S_CLOSED)
            session_fail(s, rc, now, "broken framing: %s", sncp_strerror(rc));
    }
    scratch_put(SCRATCH_RXBUF, rxbuf);
    /* Not inside a nested call: an outer one may be feeding this framer. */
    if (s->depth == 1 && s->framer && s->state != S_CLOSED && !sncp_framer_pending(s->framer)) {
        free(s->framer);
        s->framer = NULL;
    }
}

/* Runs the handshake if needed and reads everything TLS has decrypted. */
static void process_input(struct sncp_session *s, uint64_t now)
{
    if (s->state == S_HANDSHAKE) {
        int r = sncp_tls_handshake(s->tls);
        if (r < 0) {
            session_fail(s, r, now, "TLS handshake failed: %s", sncp_tls_error(s->tls));
            return;
        }
        if (r == 0)
            return;
        established(s, now);
    }
    read_plaintext(s, now);
}

/* ---- public API ----------------------------------------------------------------------- */

struct sncp_session *sncp_session_create(const struct sncp_session_config *cfg,
                                         const struct sncp_session_cbs *cbs, void *ctx)
{
    struct sncp_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cfg = *cfg;
    if (!s->cfg.handshake_timeout_ms)
        s->cfg.handshake_timeout_ms = 10000;
    if (!s->cfg.keepalive_ms)
        s->cfg.keepalive_ms = 10000;
    if (!s->cfg.dead_factor)
        s->cfg.dead_factor = 3;
    if (!s->cfg.request_timeout_ms)
        s->cfg.request_timeout_ms = 30000;
    if (!s->cfg.max_outstanding)
        s->cfg.max_outstanding = 1024;
    if (!s->cfg.max_inflight)
        s->cfg.max_inflight = 1024;
    if (s->cfg.max_outstanding > (UINT32_C(1) << 24))
        s->cfg.max_outstanding = UINT32_C(1) << 24;
    s->cbs = *cbs;
    s->ctx = ctx;
    s->state = S_NEW;
    s->head = s->tail = NIL;
    s->next_xid = 1;

    s->free_head = NIL;
    s->tls = sncp_tls_create(cfg->tls, cfg->expected_peer);
    if (!s->tls) {
        sncp_session_destroy(s);
        return NULL;
    }
    return s;
}

void sncp_session_destroy(struct sncp_session *s)
{
    if (!s)
        return;
    sncp_tls_destroy(s->tls);
    free(s->framer);
    scratch_put(SCRATCH_PT, s->pt);
    free(s->slots);
    free(s->hash);
    free(s);
}

int sncp_session_start(struct sncp_session *s, uint64_t now)
{
    if (s->state != S_NEW)
        return s->state == S_CLOSED ? SNCP_E_CLOSED : 0;
    enter(s);
    s->state = S_HANDSHAKE;
    s->started = now;
    s->last_rx = now;
    s->last_tx = now;
    if (s->cfg.role == SNCP_TLS_CLIENT)
        process_input(s, now);
    leave(s);
    return s->state == S_CLOSED ? s->close_err : 0;
}

int sncp_session_input(struct sncp_session *s, const uint8_t *data, size_t len, uint64_t now)
{
    if (s->state == S_CLOSED)
        return SNCP_E_CLOSED;
    enter(s);
    if (s->state == S_NEW) {
        s->state = S_HANDSHAKE;
        s->started = now;
        s->last_tx = now;
    }
    s->stats.bytes_in += len;
    s->last_rx = now;
    int rc = sncp_tls_feed(s->tls, data, len);
    if (rc < 0)
        session_fail(s, rc, now, "cannot buffer input: %s", sncp_strerror(rc));
    else
        process_input(s, now);
    leave(s);
    return s->state == S_CLOSED ? s->close_err : 0;
}

void sncp_session_transport_closed(struct sncp_session *s, int err, uint64_t now)
{
    if (s->state == S_CLOSED)
        return;
    s->transport_gone = 1;
    if (err == 0)
        session_fail(s, SNCP_E_PEER_CLOSED, now, "%s",
                     "transport closed by the peer without close_notify");
    else
        session_fail(s, err, now, "transport failed: %s", sncp_strerror(err));
}

int64_t sncp_session_send(struct sncp_session *s, struct sncp_msg *msg, uint64_t cookie,
                          uint64_t now)
{
    if (s->state != S_ESTABLISHED)
        return s->state == S_CLOSED ? SNCP_E_CLOSED : SNCP_E_NOT_ESTABLISHED;
    if (msg->type == SNCP_MSG_RESPONSE || msg->type == SNCP_MSG_KEEPALIVE)
        return SNCP_E_INVALID_VALUE;
    if (s->n_outstanding >= s->cfg.max_outstanding)
        return SNCP_E_BUSY;
    if (s->free_head == NIL && pending_grow(s) < 0)
        return -ENOMEM;
    uint32_t xid = xid_alloc(s);
    msg->xid = xid;
    enter(s);
    int rc = queue_msg(s, msg, now);
    if (rc == 0)
        pending_add(s, xid, cookie, now + s->cfg.request_timeout_ms);
    /* The flush may hand the bytes to a transport that fails right away; that is reported
     * from the transport's close path (see `output`), so no response callback runs before
     * we return. */
    leave(s);
    return rc < 0 ? rc : (int64_t)xid;
}

int sncp_session_respond(struct sncp_session *s, const struct sncp_msg *req, struct sncp_msg *rsp,
                         uint64_t now)
{
    if (s->state != S_ESTABLISHED)
        return s->state == S_CLOSED ? SNCP_E_CLOSED : SNCP_E_NOT_ESTABLISHED;
    rsp->type = SNCP_MSG_RESPONSE;
    rsp->version = SNCP_VERSION;
    rsp->xid = req->xid;
    rsp->request_type = req->type;
    sncp_msg_set(rsp, SNCP_TLV_REQUEST_TYPE);
    sncp_msg_set(rsp, SNCP_TLV_STATUS);
    enter(s);
    int rc = queue_msg(s, rsp, now);
    if (rc == 0 && s->inflight > 0)
        s->inflight--;
    leave(s);
    return rc;
}

int sncp_session_respond_error(struct sncp_session *s, const struct sncp_msg *req, int err,
                               uint16_t bad_tlv, const char *reason, uint64_t now)
{
    if (s->state != S_ESTABLISHED) /* there is no request to answer */
        return s->state == S_CLOSED ? SNCP_E_CLOSED : SNCP_E_NOT_ESTABLISHED;
    struct sncp_msg *m = scratch_get(SCRATCH_TX);
    if (!m)
        return -ENOMEM;
    sncp_msg_init(m, SNCP_MSG_RESPONSE, req->xid);
    m->status = sncp_status_from_error(err);
    const char *text = reason ? reason : sncp_status_text(m->status);
    size_t tl = strlen(text);
    if (tl > SNCP_MAX_REASON_LEN)
        tl = SNCP_MAX_REASON_LEN;
    memcpy(m->reason, text, tl);
    m->reason[tl] = '\0';
    sncp_msg_set(m, SNCP_TLV_REASON);
    if (bad_tlv) {
        m->error_tlv = bad_tlv;
        sncp_msg_set(m, SNCP_TLV_ERROR_TLV);
    }
    int rc = sncp_session_respond(s, req, m, now);
    scratch_put(SCRATCH_TX, m);
    return rc;
}

void sncp_session_cork(struct sncp_session *s)
{
    enter(s);
}

void sncp_session_uncork(struct sncp_session *s)
{
    if (s->depth > 0)
        leave(s);
}

void sncp_session_set_tap(struct sncp_session *s, sncp_session_tap_fn *fn, void *ctx)
{
    s->tap = fn;
    s->tap_ctx = ctx;
}

void sncp_session_hello_done(struct sncp_session *s)
{
    s->hello_done = 1;
}

void sncp_session_set_peer_keepalive(struct sncp_session *s, uint32_t ms)
{
    s->peer_keepalive_ms = ms;
}

void sncp_session_set_name(struct sncp_session *s, const char *name)
{
    snprintf(s->name, sizeof s->name, "%s", name ? name : "");
}

uint64_t sncp_session_tick(struct sncp_session *s, uint64_t now)
{
    if (s->state == S_CLOSED || s->state == S_NEW)
        return UINT64_MAX;
    enter(s);
    uint64_t next = UINT64_MAX;
    if (s->state == S_HANDSHAKE) {
        uint64_t dl = s->started + s->cfg.handshake_timeout_ms;
        if (now >= dl)
            session_fail(s, SNCP_E_TIMEOUT, now, "TLS handshake not completed within %u ms",
                         s->cfg.handshake_timeout_ms);
        else
            next = dl;
        leave(s);
        return s->state == S_CLOSED ? UINT64_MAX : next;
    }

    uint32_t peer_ms = s->peer_keepalive_ms ? s->peer_keepalive_ms : s->cfg.keepalive_ms;
    uint64_t dead_after = (uint64_t)peer_ms * s->cfg.dead_factor;
    if (now >= s->last_rx && now - s->last_rx >= dead_after) {
        session_fail(s, SNCP_E_TIMEOUT, now, "peer silent for %llu ms (keepalive %u ms x %u)",
                     (unsigned long long)(now - s->last_rx), peer_ms, s->cfg.dead_factor);
        leave(s);
        return UINT64_MAX;
    }
    next = s->last_rx + dead_after;

    if (s->cfg.hello_timeout_ms && !s->hello_done) {
        uint64_t dl = s->established_at + s->cfg.hello_timeout_ms;
        if (now >= dl) {
            session_fail(s, SNCP_E_TIMEOUT, now,
                         "HELLO not completed within %u ms after the TLS handshake",
                         s->cfg.hello_timeout_ms);
            leave(s);
            return UINT64_MAX;
        }
        if (dl < next)
            next = dl;
    }

    while (s->head != NIL && s->slots[s->head].deadline <= now && s->state == S_ESTABLISHED) {
        uint32_t slot = s->head;
        uint32_t xid = s->slots[slot].xid;
        uint64_t cookie = pending_remove(s, pending_find(s, xid));
        s->stats.timeouts++;
        snv_log_rl(&session_rl, SNV_LOG_WARN, "session",
                   "request timed out peer=%s identity=%s xid=%u after=%ums", peer_name(s),
                   peer_id(s), xid, s->cfg.request_timeout_ms);
        s->cbs.response(s->ctx, cookie, NULL, SNCP_E_TIMEOUT);
    }
    if (s->state != S_ESTABLISHED) {
        leave(s);
        return UINT64_MAX;
    }
    if (s->head != NIL && s->slots[s->head].deadline < next)
        next = s->slots[s->head].deadline;

    if (now >= s->last_tx && now - s->last_tx >= s->cfg.keepalive_ms) {
        struct sncp_msg *m = scratch_get(SCRATCH_TX);
        if (m) {
            sncp_msg_init(m, SNCP_MSG_KEEPALIVE, 0);
            queue_msg(s, m, now);
        }
        scratch_put(SCRATCH_TX, m);
    }
    pending_release(s);
    uint64_t ka = s->last_tx + s->cfg.keepalive_ms;
    if (ka < next)
        next = ka;
    leave(s);
    return s->state == S_CLOSED ? UINT64_MAX : next;
}

void sncp_session_close(struct sncp_session *s, uint64_t now)
{
    (void)now;
    if (s->state == S_CLOSED)
        return;
    enter(s);
    if (s->state == S_ESTABLISHED) {
        flush_output(s);
        sncp_tls_shutdown(s->tls);
    }
    s->state = S_CLOSED;
    s->close_err = 0;
    snprintf(s->error, sizeof s->error, "%s", "closed locally");
    finish_close(s, 0);
    leave(s);
}

int sncp_session_is_established(const struct sncp_session *s)
{
    return s->state == S_ESTABLISHED;
}

int sncp_session_is_closed(const struct sncp_session *s)
{
    return s->state == S_CLOSED;
}

const char *sncp_session_peer_identity(const struct sncp_session *s)
{
    return sncp_tls_peer_identity(s->tls);
}

const char *sncp_session_error(const struct sncp_session *s)
{
    return s->error;
}

const struct sncp_tls *sncp_session_tls(const struct sncp_session *s)
{
    return s->tls;
}

unsigned sncp_session_outstanding(const struct sncp_session *s)
{
    return s->n_outstanding;
}

unsigned sncp_session_inflight(const struct sncp_session *s)
{
    return s->inflight;
}

const struct sncp_session_stats *sncp_session_stats(const struct sncp_session *s)
{
    return &s->stats;
}
