/* fuzz-l2.c: libFuzzer target for the Layer-2 channel (lib/sncp-l2.c).
 *
 * 1. The whole input is decoded as one frame.  A frame that decodes must re-encode to the
 *    same bytes (header and payload), and the discovery, unknown-connection and cookie
 *    helpers must cope with it (an OPEN's cookie, once computed, answers and checks).
 * 2. The input is then read as a script driving two connected connections A and B over an
 *    in-memory link: forged frames (raw, or built from fuzzed fields with the right ids
 *    so they reach deep states) go to A, queued frames move between A and B, time
 *    advances, the application sends, closes, aborts.  Invariant: B only ever delivers a
 *    prefix of the stream A's application sent, however A is lied to.  The open goes
 *    through the cookie exchange, after forged COOKIEs when the input starts odd.
 * Seeds: tests/fuzz/corpus/l2/ (valid frames and short scripts).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sncp-l2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_QUEUE = 512, STREAM_MAX = 1 << 20 };

struct qframe {
    size_t len;
    uint8_t data[SNCP_L2_MAX_MTU];
};

struct end {
    struct sncp_l2_conn *c;
    struct qframe *q; /* frames it sent, not yet delivered */
    size_t nq;
    uint64_t rx_len; /* stream bytes delivered to it */
    int closed;
};

static struct end ends[2];
static uint64_t sent_a; /* stream bytes A's application sent (stream_byte(0..sent_a)) */
static uint64_t now;

static uint8_t stream_byte(uint64_t i)
{
    return (uint8_t)(i * 7 + (i >> 11));
}

static void cb_output(void *ctx, const uint8_t *frame, size_t len)
{
    struct end *e = ctx;
    struct sncp_l2_frame f;
    if (sncp_l2_frame_decode(frame, len, &f) != 0) {
        abort(); /* we only ever send valid frames */
    }
    if (e->nq < MAX_QUEUE) {
        e->q[e->nq].len = len;
        memcpy(e->q[e->nq].data, frame, len);
        e->nq++;
    }
}

static void cb_established(void *ctx)
{
    (void)ctx;
}

static void cb_data(void *ctx, const uint8_t *data, size_t len)
{
    struct end *e = ctx;
    if (e == &ends[1]) {
        /* B receives only from the genuine A: a prefix of A's stream, in order. */
        for (size_t i = 0; i < len; i++) {
            if (e->rx_len + i >= sent_a || data[i] != stream_byte(e->rx_len + i)) {
                abort();
            }
        }
    }
    e->rx_len += len;
}

static void cb_closed(void *ctx, int err)
{
    struct end *e = ctx;
    (void)err;
    if (e->closed) {
        abort(); /* exactly once */
    }
    e->closed = 1;
}

static const struct sncp_l2_cbs cbs = {cb_output, cb_established, cb_data, NULL, cb_closed};

/* Moves the frames `from` sent into `to` (or drops them). */
static void deliver(int from, int drop)
{
    struct end *src = &ends[from], *dst = &ends[1 - from];
    size_t n = src->nq;
    static struct qframe batch[MAX_QUEUE];
    memcpy(batch, src->q, n * sizeof batch[0]);
    src->nq = 0;
    for (size_t i = 0; i < n && !drop; i++) {
        struct sncp_l2_frame f;
        if (sncp_l2_frame_decode(batch[i].data, batch[i].len, &f) == 0 &&
            sncp_l2_conn_state(dst->c) != SNCP_L2_STATE_CLOSED) {
            sncp_l2_conn_input(dst->c, &f, now);
        }
    }
}

static void check_frame(const uint8_t *data, size_t size)
{
    struct sncp_l2_frame f;
    if (sncp_l2_frame_decode(data, size, &f) != 0) {
        return;
    }
    if (f.payload < data || f.payload + f.len > data + size) {
        abort();
    }
    static uint8_t buf[SNCP_L2_HEADER_LEN + SNCP_L2_MAX_PAYLOAD];
    int n = sncp_l2_frame_encode(&f, buf, sizeof buf);
    if (n != (int)(SNCP_L2_HEADER_LEN + f.len) || memcmp(buf, data, (size_t)n) != 0) {
        abort();
    }
    struct sncp_l2_discovery d;
    if (sncp_l2_discovery_parse(&f, &d) == 0 && strlen(d.name) > SNCP_L2_MAX_NAME_LEN) {
        abort();
    }
    if (f.type == SNCP_L2_OPEN) {
        /* The cookie of any OPEN: its COOKIE decodes, and the OPEN repeated with it checks. */
        static const uint8_t secret[SNCP_L2_COOKIE_SECRET_LEN] = {1};
        static const uint8_t mac_a[6] = {2, 0, 0, 0, 0, 1}, mac_b[6] = {2, 0, 0, 0, 0, 2};
        uint8_t cookie[SNCP_L2_COOKIE_LEN], cf[64], body[SNCP_L2_OPEN_COOKIE_BODY_LEN];
        struct sncp_l2_frame c;
        if (sncp_l2_cookie_compute(secret, mac_b, mac_a, 7, &f, cookie) != 0) {
            abort();
        }
        int cn = sncp_l2_cookie_build(&f, cookie, cf, sizeof cf);
        if (cn <= 0 || sncp_l2_frame_decode(cf, (size_t)cn, &c) != 0 || c.dst_id != f.src_id ||
            c.ack != f.seq) {
            abort();
        }
        struct sncp_l2_frame o = f;
        memcpy(body, f.payload, SNCP_L2_OPEN_BODY_LEN);
        memcpy(body + SNCP_L2_OPEN_BODY_LEN, cookie, sizeof cookie);
        o.payload = body;
        o.len = sizeof body;
        if (!sncp_l2_cookie_check(&secret, 1, mac_b, mac_a, 7, &o) ||
            sncp_l2_cookie_check(&secret, 1, mac_b, mac_a, 8, &o)) {
            abort();
        }
    }
    uint8_t reply[64];
    n = sncp_l2_reply_unknown(&f, reply, sizeof reply);
    if (n < 0 || (n > 0 && sncp_l2_frame_decode(reply, (size_t)n, &f) != 0)) {
        abort();
    }
}

/* The acceptor's side of the cookie exchange for A's latest frame, an OPEN: a COOKIE when
 * it has no valid cookie (returns 0), else accepts it into B (returns 1). */
static int cookie_accept(void)
{
    static const uint8_t secret[SNCP_L2_COOKIE_SECRET_LEN] = {9};
    static const uint8_t mac_a[6] = {2, 0, 0, 0, 0, 1}, mac_b[6] = {2, 0, 0, 0, 0, 2};
    struct sncp_l2_frame open;
    if (ends[0].nq == 0 ||
        sncp_l2_frame_decode(ends[0].q[ends[0].nq - 1].data, ends[0].q[ends[0].nq - 1].len,
                             &open) != 0 ||
        open.type != SNCP_L2_OPEN) {
        abort();
    }
    ends[0].nq = 0;
    if (sncp_l2_cookie_check(&secret, 1, mac_b, mac_a, 0, &open)) {
        if (sncp_l2_conn_accept(ends[1].c, &open, now) != 0) {
            abort();
        }
        return 1;
    }
    uint8_t cookie[SNCP_L2_COOKIE_LEN], buf[64];
    struct sncp_l2_frame c;
    int n;
    if (sncp_l2_cookie_compute(secret, mac_b, mac_a, 0, &open, cookie) != 0 ||
        (n = sncp_l2_cookie_build(&open, cookie, buf, sizeof buf)) <= 0 ||
        sncp_l2_frame_decode(buf, (size_t)n, &c) != 0 || sncp_l2_conn_input(ends[0].c, &c, now)) {
        abort();
    }
    return 0;
}

struct script {
    const uint8_t *p;
    size_t left;
};

static unsigned take(struct script *s, unsigned nbytes)
{
    unsigned v = 0;
    for (unsigned i = 0; i < nbytes; i++) {
        v <<= 8;
        if (s->left) {
            v |= *s->p++;
            s->left--;
        }
    }
    return v;
}

static void app_send(size_t len)
{
    static uint8_t buf[65536];
    if (len > sizeof buf || sent_a + len > STREAM_MAX) {
        return;
    }
    for (size_t i = 0; i < len; i++) {
        buf[i] = stream_byte(sent_a + i);
    }
    int64_t n = sncp_l2_conn_send(ends[0].c, buf, len, now);
    if (n > 0) {
        sent_a += (uint64_t)n;
    }
}

/* A frame "from B" with B's ids and fuzzed fields, sequence numbers near the live ones. */
static void forge(struct script *s)
{
    static uint8_t payload[SNCP_L2_MAX_PAYLOAD];
    struct sncp_l2_frame f = {
        .type = (uint8_t)(1 + take(s, 1) % SNCP_L2_TYPE_MAX),
        .flags = (uint16_t)take(s, 1),
        .src_id = sncp_l2_conn_local_id(ends[1].c),
        .dst_id = sncp_l2_conn_local_id(ends[0].c),
        .seq = 5000 + (uint32_t)(int8_t)take(s, 1),
        .ack = 1000 + (uint32_t)(int16_t)take(s, 2),
        .window = (uint16_t)take(s, 1),
        .len = (uint16_t)(take(s, 2) % (SNCP_L2_MAX_PAYLOAD + 1)),
        .payload = payload,
    };
    if (take(s, 1) & 1) {
        f.src_id = take(s, 1); /* sometimes a stranger */
    }
    for (unsigned i = 0; i < f.len && i < 64; i++) {
        payload[i] = (uint8_t)take(s, 1);
    }
    if (sncp_l2_conn_state(ends[0].c) != SNCP_L2_STATE_CLOSED) {
        sncp_l2_conn_input(ends[0].c, &f, now);
    }
}

static void raw(struct script *s)
{
    static uint8_t buf[1024];
    unsigned len = take(s, 1) * 4;
    if (len > s->left) {
        len = (unsigned)s->left;
    }
    memcpy(buf, s->p, len);
    s->p += len;
    s->left -= len;
    struct sncp_l2_frame f;
    if (sncp_l2_frame_decode(buf, len, &f) == 0 &&
        sncp_l2_conn_state(ends[0].c) != SNCP_L2_STATE_CLOSED) {
        sncp_l2_conn_input(ends[0].c, &f, now);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_frame(data, size);

    static struct qframe queues[2][MAX_QUEUE];
    now = 1000;
    sent_a = 0;
    for (int i = 0; i < 2; i++) {
        memset(&ends[i], 0, sizeof ends[i]);
        ends[i].q = queues[i];
        struct sncp_l2_config cfg = {
            .local_id = 0x100 + (uint32_t)i,
            .initial_seq = i == 0 ? 1000 : 5000,
            .window = (uint16_t)(i == 0 ? 8 : 32),
            .send_buffer = SNCP_L2_MIN_SEND_BUFFER,
            .max_retransmits = 5,
        };
        if (sncp_l2_conn_create(&cfg, &cbs, &ends[i], &ends[i].c) != 0) {
            abort();
        }
    }
    /* Open A -> B over a perfect link, through the cookie exchange; before it, COOKIEs with
     * fuzzed cookies and acknowledgements (A must take only those for its ISN, and count
     * them against its retransmissions). */
    sncp_l2_conn_open(ends[0].c, now);
    for (size_t i = 0; size && (data[0] & 1) && i + 17 <= size && i < 3 * 17; i += 17) {
        struct sncp_l2_frame c = {
            .type = SNCP_L2_COOKIE,
            .dst_id = sncp_l2_conn_local_id(ends[0].c),
            .ack = 1000 + (data[i] & 1),
            .len = SNCP_L2_COOKIE_LEN,
            .payload = data + i + 1,
        };
        sncp_l2_conn_input(ends[0].c, &c, now);
    }
    if (sncp_l2_conn_state(ends[0].c) != SNCP_L2_STATE_OPEN_SENT || cookie_accept() != 0 ||
        cookie_accept() != 1) {
        abort();
    }
    deliver(1, 0);
    if (sncp_l2_conn_state(ends[0].c) != SNCP_L2_STATE_ESTABLISHED) {
        abort();
    }

    struct script s = {data, size};
    for (int steps = 0; s.left && steps < 2000; steps++) {
        switch (take(&s, 1) % 10) {
        case 0:
            forge(&s);
            break;
        case 1:
            raw(&s);
            break;
        case 2:
            deliver(0, 0);
            break;
        case 3:
            deliver(1, 0);
            break;
        case 4:
            deliver(take(&s, 1) & 1, 1);
            break;
        case 5:
            now += take(&s, 2);
            for (int i = 0; i < 2; i++) {
                uint64_t d = sncp_l2_conn_tick(ends[i].c, now);
                if (d != UINT64_MAX && d <= now) {
                    abort(); /* a deadline in the past would spin an event loop */
                }
            }
            break;
        case 6:
            app_send(take(&s, 2));
            break;
        case 7:
            app_send(take(&s, 1));
            if (sncp_l2_conn_state(ends[1].c) == SNCP_L2_STATE_ESTABLISHED) {
                static const uint8_t b[100];
                sncp_l2_conn_send(ends[1].c, b, take(&s, 1) % sizeof b, now);
            }
            break;
        case 8:
            sncp_l2_conn_close(ends[take(&s, 1) & 1].c, now);
            break;
        case 9:
            if (take(&s, 1) == 0xAB) {
                sncp_l2_conn_abort(ends[take(&s, 1) & 1].c, now);
            }
            break;
        }
    }
    /* Whatever happened, a lossless run to the end never breaks the invariants. */
    for (int round = 0; round < 50; round++) {
        deliver(0, 0);
        deliver(1, 0);
        now += 10;
        sncp_l2_conn_tick(ends[0].c, now);
        sncp_l2_conn_tick(ends[1].c, now);
    }
    if (ends[1].rx_len > sent_a) {
        abort();
    }
    for (int i = 0; i < 2; i++) {
        sncp_l2_conn_destroy(ends[i].c);
    }
    return 0;
}
