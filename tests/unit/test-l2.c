/* test-l2.c: unit tests of the SNCP Layer-2 channel (lib/sncp-l2.c) with injected time.
 *
 * The codec tests cover every frame type, every truncation and the malformed forms of
 * proto/L2-TRANSPORT.md §4.  The connection tests put two connections on a simulated link
 * (this file's fault injector: seeded PRNG, latency, loss, duplication, reordering) and
 * drive both from one virtual clock.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sncp-l2.h"

/* ---- the simulated link ---- */

struct pkt {
    uint64_t at;
    uint64_t order; /* FIFO among frames due at the same time */
    int to;
    size_t len;
    uint8_t data[SNCP_L2_MAX_MTU];
};

struct net;

struct end {
    struct net *net;
    int idx;
    struct sncp_l2_conn *c;
    struct sncp_l2_config cfg;
    int passive;            /* accepts an OPEN by creating its connection */
    int drop_next;          /* frames this end sends that the link loses */
    uint64_t drop_data_nth; /* the link loses this end's n-th DATA frame (1-based) */
    int refuse;             /* answers OPEN with RESET instead */
    int cookies;            /* passive: demands the open cookie (COOKIE first) */
    int established;
    int closed;
    int closed_err;
    int writable_calls;
    /* stream to send */
    const uint8_t *tx;
    size_t tx_len, tx_off;
    /* stream received */
    uint8_t *rx;
    size_t rx_cap, rx_len;
    int rx_overflow;
    uint64_t frames_sent;
    uint64_t types_sent[SNCP_L2_TYPE_MAX + 1];
    uint32_t seed_chunk;
};

struct net {
    struct end e[2];
    uint64_t now;
    uint64_t rng;
    /* faults, in parts per million */
    uint32_t loss_ppm, dup_ppm, reorder_ppm;
    uint32_t latency_ms, jitter_ms;
    int cut; /* drop everything */
    struct pkt **q;
    size_t nq, capq;
    uint64_t enqueued;
    uint64_t dropped, duplicated, reordered;
};

static uint32_t rnd(struct net *n)
{
    /* xorshift64* */
    n->rng ^= n->rng >> 12;
    n->rng ^= n->rng << 25;
    n->rng ^= n->rng >> 27;
    return (uint32_t)((n->rng * UINT64_C(2685821657736338717)) >> 32);
}

static int chance(struct net *n, uint32_t ppm)
{
    return ppm && rnd(n) % 1000000 < ppm;
}

static void enqueue(struct net *n, int to, const uint8_t *data, size_t len, uint64_t delay)
{
    if (n->nq == n->capq) {
        n->capq = n->capq ? 2 * n->capq : 64;
        n->q = realloc(n->q, n->capq * sizeof *n->q);
        ck_assert_ptr_nonnull(n->q);
    }
    struct pkt *p = malloc(sizeof *p);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_le(len, sizeof p->data);
    p->at = n->now + delay;
    p->order = n->enqueued++;
    p->to = to;
    p->len = len;
    memcpy(p->data, data, len);
    n->q[n->nq++] = p;
}

static void link_send(struct net *n, int to, const uint8_t *data, size_t len)
{
    if (n->cut || chance(n, n->loss_ppm)) {
        n->dropped++;
        return;
    }
    int copies = 1;
    if (chance(n, n->dup_ppm)) {
        copies = 2;
        n->duplicated++;
    }
    for (int i = 0; i < copies; i++) {
        uint64_t delay = n->latency_ms;
        if (n->jitter_ms && chance(n, n->reorder_ppm)) {
            delay += 1 + rnd(n) % n->jitter_ms;
            n->reordered++;
        }
        enqueue(n, to, data, len, delay);
    }
}

static void cb_output(void *ctx, const uint8_t *frame, size_t len)
{
    struct end *e = ctx;
    struct sncp_l2_frame f;
    ck_assert_int_eq(sncp_l2_frame_decode(frame, len, &f), 0);
    e->frames_sent++;
    e->types_sent[f.type]++;
    if (e->drop_next > 0) {
        e->drop_next--;
        return;
    }
    if (f.type == SNCP_L2_DATA && e->types_sent[SNCP_L2_DATA] == e->drop_data_nth) {
        return;
    }
    link_send(e->net, 1 - e->idx, frame, len);
}

static void cb_established(void *ctx)
{
    struct end *e = ctx;
    ck_assert_int_eq(e->established, 0);
    e->established = 1;
}

static void cb_data(void *ctx, const uint8_t *data, size_t len)
{
    struct end *e = ctx;
    ck_assert_uint_gt(len, 0);
    if (e->rx_len + len > e->rx_cap) {
        e->rx_overflow = 1;
        return;
    }
    memcpy(e->rx + e->rx_len, data, len);
    e->rx_len += len;
}

static void cb_writable(void *ctx)
{
    struct end *e = ctx;
    e->writable_calls++;
}

static void cb_closed(void *ctx, int err)
{
    struct end *e = ctx;
    ck_assert_int_eq(e->closed, 0);
    e->closed = 1;
    e->closed_err = err;
}

static const struct sncp_l2_cbs test_cbs = {
    .output = cb_output,
    .established = cb_established,
    .data = cb_data,
    .writable = cb_writable,
    .closed = cb_closed,
};

static void net_init(struct net *n, uint64_t seed)
{
    memset(n, 0, sizeof *n);
    n->rng = seed * 0x9E3779B97F4A7C15ull + 1;
    n->now = 1000;
    for (int i = 0; i < 2; i++) {
        n->e[i].net = n;
        n->e[i].idx = i;
        n->e[i].cfg.local_id = 0x1000 + (uint32_t)i;
        n->e[i].cfg.initial_seq = 100 * (uint32_t)i;
    }
    n->e[1].passive = 1;
}

static void net_free(struct net *n)
{
    for (size_t i = 0; i < n->nq; i++) {
        free(n->q[i]);
    }
    free(n->q);
    for (int i = 0; i < 2; i++) {
        sncp_l2_conn_destroy(n->e[i].c);
        free(n->e[i].rx);
    }
}

static void end_create(struct end *e)
{
    ck_assert_ptr_null(e->c);
    ck_assert_int_eq(sncp_l2_conn_create(&e->cfg, &test_cbs, e, &e->c), 0);
}

/* The simulated acceptor's cookie secret and the two ends' MAC addresses. */
static const uint8_t test_secret[SNCP_L2_COOKIE_SECRET_LEN] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f};
static const uint8_t test_mac[2][6] = {{0x52, 0x54, 0x00, 0x12, 0x34, 0x56},
                                       {0x02, 0x00, 0x5e, 0x10, 0x00, 0x01}};

static void deliver(struct net *n, struct pkt *p)
{
    struct end *e = &n->e[p->to];
    struct sncp_l2_frame f;
    ck_assert_int_eq(sncp_l2_frame_decode(p->data, p->len, &f), 0);
    if (e->c && sncp_l2_conn_state(e->c) != SNCP_L2_STATE_CLOSED) {
        (void)sncp_l2_conn_input(e->c, &f, n->now);
        return;
    }
    if (f.type == SNCP_L2_OPEN && e->passive && e->cookies && !e->c &&
        !sncp_l2_cookie_check(&test_secret, 1, test_mac[p->to], test_mac[1 - p->to], 0, &f)) {
        uint8_t cookie[SNCP_L2_COOKIE_LEN], buf[SNCP_L2_HEADER_LEN + SNCP_L2_COOKIE_LEN];
        ck_assert_int_eq(sncp_l2_cookie_compute(test_secret, test_mac[p->to], test_mac[1 - p->to],
                                                0, &f, cookie),
                         0);
        int len = sncp_l2_cookie_build(&f, cookie, buf, sizeof buf);
        ck_assert_int_eq(len, SNCP_L2_HEADER_LEN + SNCP_L2_COOKIE_LEN);
        e->types_sent[SNCP_L2_COOKIE]++;
        if (e->drop_next > 0) {
            e->drop_next--;
            return;
        }
        link_send(n, 1 - p->to, buf, (size_t)len);
        return;
    }
    if (f.type == SNCP_L2_OPEN && e->passive && !e->refuse && !e->c) {
        end_create(e);
        ck_assert_int_eq(sncp_l2_conn_accept(e->c, &f, n->now), 0);
        return;
    }
    uint8_t buf[SNCP_L2_HEADER_LEN];
    int len = sncp_l2_reply_unknown(&f, buf, sizeof buf);
    ck_assert_int_ge(len, 0);
    if (len > 0) {
        link_send(n, 1 - p->to, buf, (size_t)len);
    }
}

/* Offers the rest of an end's stream in chunks of 1..8192 bytes until the buffer is full. */
static void pump(struct net *n, struct end *e)
{
    while (e->c && sncp_l2_conn_state(e->c) == SNCP_L2_STATE_ESTABLISHED && e->tx_off < e->tx_len) {
        size_t chunk = 1 + rnd(n) % 8192;
        if (chunk > e->tx_len - e->tx_off) {
            chunk = e->tx_len - e->tx_off;
        }
        int64_t r = sncp_l2_conn_send(e->c, e->tx + e->tx_off, chunk, n->now);
        ck_assert_int_ge(r, 0);
        e->tx_off += (size_t)r;
        if ((size_t)r < chunk) {
            break;
        }
    }
}

typedef int net_cond(struct net *n);

/* Runs the virtual clock until cond holds (returns 1) or until `limit` ms of virtual time
 * have passed or nothing is scheduled (returns cond's value). */
static int net_run(struct net *n, net_cond *cond, uint64_t limit_ms)
{
    uint64_t limit = n->now + limit_ms;
    for (;;) {
        for (int i = 0; i < 2; i++) {
            pump(n, &n->e[i]);
        }
        if (cond && cond(n)) {
            return 1;
        }
        uint64_t next = UINT64_MAX;
        for (int i = 0; i < 2; i++) {
            if (n->e[i].c) {
                uint64_t d = sncp_l2_conn_tick(n->e[i].c, n->now);
                ck_assert_uint_gt(d, n->now);
                next = d < next ? d : next;
            }
        }
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < n->nq; i++) {
            if (best == SIZE_MAX || n->q[i]->at < n->q[best]->at ||
                (n->q[i]->at == n->q[best]->at && n->q[i]->order < n->q[best]->order)) {
                best = i;
            }
        }
        if (best != SIZE_MAX && n->q[best]->at < next) {
            next = n->q[best]->at;
        }
        if (next == UINT64_MAX || next > limit) {
            if (limit > n->now && next != UINT64_MAX) {
                n->now = limit;
            }
            return cond ? cond(n) : 0;
        }
        if (next > n->now) {
            n->now = next;
        }
        if (best != SIZE_MAX && n->q[best]->at <= n->now) {
            struct pkt *p = n->q[best];
            n->q[best] = n->q[--n->nq];
            deliver(n, p);
            free(p);
        }
    }
}

static int both_established(struct net *n)
{
    return n->e[0].established && n->e[1].established;
}

static int both_closed(struct net *n)
{
    return n->e[0].closed && n->e[1].closed;
}

static int e0_closed(struct net *n)
{
    return n->e[0].closed;
}

static int transfer_done(struct net *n)
{
    for (int i = 0; i < 2; i++) {
        struct end *src = &n->e[i], *dst = &n->e[1 - i];
        if (dst->rx_len < src->tx_len) {
            return 0;
        }
    }
    return 1;
}

static int all_acked(struct net *n)
{
    return transfer_done(n) && sncp_l2_conn_unacked_bytes(n->e[0].c) == 0 &&
           sncp_l2_conn_unacked_bytes(n->e[1].c) == 0;
}

static void net_connect(struct net *n)
{
    end_create(&n->e[0]);
    ck_assert_int_eq(sncp_l2_conn_open(n->e[0].c, n->now), 0);
    ck_assert_int_eq(sncp_l2_conn_state(n->e[0].c), SNCP_L2_STATE_OPEN_SENT);
    ck_assert(net_run(n, both_established, 120000));
}

static uint8_t *random_bytes(size_t len, uint32_t seed)
{
    uint8_t *b = malloc(len);
    ck_assert_ptr_nonnull(b);
    uint32_t x = seed | 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (uint8_t)x;
    }
    return b;
}

static void set_stream(struct end *src, struct end *dst, const uint8_t *data, size_t len)
{
    src->tx = data;
    src->tx_len = len;
    src->tx_off = 0;
    free(dst->rx);
    dst->rx = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(dst->rx);
    dst->rx_cap = len;
    dst->rx_len = 0;
}

/* ---- codec ---- */

static int encode(const struct sncp_l2_frame *f, uint8_t *buf, size_t cap)
{
    int n = sncp_l2_frame_encode(f, buf, cap);
    ck_assert_int_gt(n, 0);
    return n;
}

static const uint8_t open_body[4] = {0x05, 0xdc, 0, 0}; /* max payload 1500 */
static const uint8_t data_body[5] = {'h', 'e', 'l', 'l', 'o'};
static const uint8_t sack_body[2] = {0xa0, 0x01};
static const uint8_t disc_body[9] = {0x05, 0xc4, 0, 0, 'n', 'n', 'v', 'e', '1'};
static const uint8_t cookie_body[SNCP_L2_COOKIE_LEN] = {1, 2,  3,  4,  5,  6,  7,  8,
                                                        9, 10, 11, 12, 13, 14, 15, 16};

static const struct sncp_l2_frame valid_frames[] = {
    {.type = SNCP_L2_SOLICIT, .src_id = 0xabcdef01, .len = 9, .payload = disc_body},
    {.type = SNCP_L2_ADVERTISE, .dst_id = 0xabcdef01, .len = 4, .payload = disc_body},
    {.type = SNCP_L2_OPEN,
     .src_id = 7,
     .seq = 0xfffffff0,
     .window = 32,
     .len = 4,
     .payload = open_body},
    {.type = SNCP_L2_OPEN_ACK,
     .src_id = 9,
     .dst_id = 7,
     .seq = 1,
     .ack = 0xfffffff0,
     .window = 64,
     .len = 4,
     .payload = open_body},
    {.type = SNCP_L2_DATA,
     .flags = SNCP_L2_F_PROBE,
     .src_id = 7,
     .dst_id = 9,
     .seq = 0x01020304,
     .ack = 0x05060708,
     .window = 32,
     .len = 5,
     .payload = data_body},
    {.type = SNCP_L2_ACK,
     .flags = SNCP_L2_F_PROBE,
     .src_id = 7,
     .dst_id = 9,
     .seq = 3,
     .ack = 4,
     .window = 1},
    {.type = SNCP_L2_CLOSE, .src_id = 7, .dst_id = 9, .seq = 11},
    {.type = SNCP_L2_CLOSE, .flags = SNCP_L2_F_RESET, .dst_id = 9},
    {.type = SNCP_L2_CLOSE_ACK, .src_id = 9, .dst_id = 7, .ack = 11},
    {.type = SNCP_L2_COOKIE, .dst_id = 7, .ack = 0xfffffff0, .len = 16, .payload = cookie_body},
    {.type = SNCP_L2_ACK,
     .src_id = 7,
     .dst_id = 9,
     .seq = 3,
     .ack = 4,
     .window = 32,
     .len = 2,
     .payload = sack_body},
};
#define N_VALID (sizeof valid_frames / sizeof valid_frames[0])

START_TEST(test_codec_round_trip)
{
    for (size_t i = 0; i < N_VALID; i++) {
        const struct sncp_l2_frame *in = &valid_frames[i];
        uint8_t buf[256];
        int n = encode(in, buf, sizeof buf);
        ck_assert_int_eq(n, SNCP_L2_HEADER_LEN + in->len);
        struct sncp_l2_frame out;
        ck_assert_int_eq(sncp_l2_frame_decode(buf, (size_t)n, &out), 0);
        ck_assert_uint_eq(out.version, SNCP_L2_VERSION);
        ck_assert_uint_eq(out.type, in->type);
        ck_assert_uint_eq(out.flags, in->flags);
        ck_assert_uint_eq(out.src_id, in->src_id);
        ck_assert_uint_eq(out.dst_id, in->dst_id);
        ck_assert_uint_eq(out.seq, in->seq);
        ck_assert_uint_eq(out.ack, in->ack);
        ck_assert_uint_eq(out.window, in->window);
        ck_assert_uint_eq(out.len, in->len);
        ck_assert(in->len == 0 || memcmp(out.payload, in->payload, in->len) == 0);
        /* Ethernet padding after the payload is ignored. */
        memset(buf + n, 0, 60);
        ck_assert_int_eq(sncp_l2_frame_decode(buf, (size_t)n + 60, &out), 0);
        ck_assert_uint_eq(out.len, in->len);
        /* Every truncation fails, every short buffer is refused by the encoder. */
        for (int k = 0; k < n; k++) {
            ck_assert_int_eq(sncp_l2_frame_decode(buf, (size_t)k, &out), SNCP_E_MALFORMED);
            ck_assert_int_eq(sncp_l2_frame_encode(in, buf + 128, (size_t)k), -ENOBUFS);
        }
    }
}
END_TEST

START_TEST(test_codec_layout)
{
    /* The byte diagram of L2-TRANSPORT.md §4.1, pinned. */
    static const uint8_t expect[] = {
        0x01, 0x05, 0x00, 0x01, /* version, DATA, flags PROBE */
        0x00, 0x00, 0x00, 0x07, /* sender connection id */
        0x00, 0x00, 0x00, 0x09, /* receiver connection id */
        0x01, 0x02, 0x03, 0x04, /* sequence */
        0x05, 0x06, 0x07, 0x08, /* acknowledgement */
        0x00, 0x20, 0x00, 0x05, /* window 32, length 5 */
        'h',  'e',  'l',  'l',  'o',
    };
    uint8_t buf[64];
    int n = encode(&valid_frames[4], buf, sizeof buf);
    ck_assert_int_eq(n, (int)sizeof expect);
    ck_assert_mem_eq(buf, expect, sizeof expect);
}
END_TEST

static void hex_to_bytes(const char *hex, uint8_t *out, size_t *len)
{
    size_t n = 0;
    for (const char *p = hex; *p;) {
        if (*p == ' ') {
            p++;
            continue;
        }
        unsigned v;
        ck_assert_int_eq(sscanf(p, "%2x", &v), 1);
        out[n++] = (uint8_t)v;
        p += 2;
    }
    *len = n;
}

START_TEST(test_spec_examples)
{
    /* The hex examples of proto/L2-TRANSPORT.md §10. */
    uint8_t want[128], got[128];
    size_t wlen;
    struct sncp_l2_frame f;

    static const uint8_t mp[4] = {0x05, 0xc4, 0, 0}, sack[2] = {0xa0, 0x02};
    f = (struct sncp_l2_frame){
        .type = SNCP_L2_OPEN, .src_id = 0x101, .seq = 5000, .window = 32, .len = 4, .payload = mp};
    hex_to_bytes("01 03 00 00  00 00 01 01  00 00 00 00  00 00 13 88  00 00 00 00  00 20 00 04"
                 " 05 c4 00 00",
                 want, &wlen);
    ck_assert_int_eq(encode(&f, got, sizeof got), (int)wlen);
    ck_assert_mem_eq(got, want, wlen);

    f = (struct sncp_l2_frame){.type = SNCP_L2_ACK,
                               .src_id = 0x101,
                               .dst_id = 0x100,
                               .seq = 5000,
                               .ack = 1000,
                               .window = 32,
                               .len = 2,
                               .payload = sack};
    hex_to_bytes("01 06 00 00  00 00 01 01  00 00 01 00  00 00 13 88  00 00 03 e8  00 20 00 02"
                 " a0 02",
                 want, &wlen);
    ck_assert_int_eq(encode(&f, got, sizeof got), (int)wlen);
    ck_assert_mem_eq(got, want, wlen);

    f = (struct sncp_l2_frame){.type = SNCP_L2_OPEN, .src_id = 0x101, .len = 4, .payload = mp};
    int n = sncp_l2_reply_unknown(&f, got, sizeof got);
    hex_to_bytes("01 07 00 02  00 00 00 00  00 00 01 01  00 00 00 00  00 00 00 00  00 00 00 00",
                 want, &wlen);
    ck_assert_int_eq(n, (int)wlen);
    ck_assert_mem_eq(got, want, wlen);

    n = sncp_l2_solicit_build(0x11223344, 1476, "hv-1", got, sizeof got);
    hex_to_bytes("01 01 00 00  11 22 33 44  00 00 00 00  00 00 00 00  00 00 00 00  00 00 00 08"
                 " 05 c4 00 00  68 76 2d 31",
                 want, &wlen);
    ck_assert_int_eq(n, (int)wlen);
    ck_assert_mem_eq(got, want, wlen);

    static const uint8_t group[6] = SNCP_L2_DISCOVERY_MAC_INIT;
    static const uint8_t spec_group[6] = {0x03, 0x53, 0x4e, 0x43, 0x50, 0x01};
    ck_assert_mem_eq(group, spec_group, 6);
    ck_assert_int_eq(group[0] & 0x01, 1); /* group */
    ck_assert_int_eq(group[0] & 0x02, 2); /* locally administered */
    ck_assert_int_eq(group[0] & 0x0c, 0); /* SLAP AAI quadrant */
}
END_TEST

/* Patches a valid encoded frame and expects `want` from the decoder. */
static void expect_decode(const struct sncp_l2_frame *base, size_t off, const uint8_t *bytes,
                          size_t n, int want)
{
    uint8_t buf[128];
    int len = encode(base, buf, sizeof buf);
    memcpy(buf + off, bytes, n);
    struct sncp_l2_frame f;
    ck_assert_int_eq(sncp_l2_frame_decode(buf, (size_t)len, &f), want);
}

START_TEST(test_codec_malformed)
{
    const struct sncp_l2_frame *data = &valid_frames[4], *ack = &valid_frames[5];
    const struct sncp_l2_frame *open = &valid_frames[2], *sol = &valid_frames[0];
    uint8_t b;

    /* version */
    for (unsigned v = 0; v < 256; v++) {
        if (v == SNCP_L2_VERSION) {
            continue;
        }
        b = (uint8_t)v;
        expect_decode(data, 0, &b, 1, SNCP_E_UNSUPPORTED_VERSION);
    }
    /* types */
    for (unsigned t = 0; t < 256; t++) {
        if (t >= 1 && t <= SNCP_L2_TYPE_MAX) {
            continue;
        }
        b = (uint8_t)t;
        expect_decode(ack, 1, &b, 1, SNCP_E_MALFORMED);
    }
    /* lying payload lengths: one more than present, the maximum, past the limit */
    static const uint8_t len6[2] = {0, 6}, lenmax[2] = {0xff, 0xff}, len0[2] = {0, 0};
    expect_decode(data, 22, len6, 2, SNCP_E_MALFORMED);
    expect_decode(data, 22, lenmax, 2, SNCP_E_MALFORMED);
    expect_decode(data, 22, len0, 2, SNCP_E_MALFORMED); /* empty DATA */
    /* a length that is too short leaves bytes that are then padding: still valid */
    static const uint8_t len1[2] = {0, 1};
    expect_decode(data, 22, len1, 2, 0);
    /* ACK: a selective ACK bitmap of up to SNCP_L2_MAX_SACK_LEN bytes, not more */
    static const uint8_t sack33[SNCP_L2_MAX_SACK_LEN + 1] = {0x80};
    struct sncp_l2_frame f = *ack;
    uint8_t buf[128];
    f.payload = sack33;
    f.len = SNCP_L2_MAX_SACK_LEN;
    ck_assert_int_eq(sncp_l2_frame_encode(&f, buf, sizeof buf),
                     SNCP_L2_HEADER_LEN + SNCP_L2_MAX_SACK_LEN);
    f.len = SNCP_L2_MAX_SACK_LEN + 1;
    ck_assert_int_eq(sncp_l2_frame_encode(&f, buf, sizeof buf), SNCP_E_INVALID_VALUE);
    b = SNCP_L2_ACK;
    expect_decode(data, 1, &b, 1, 0);
    f = *data;
    f.payload = sack33;
    f.len = sizeof sack33;
    int flen = encode(&f, buf, sizeof buf);
    buf[1] = SNCP_L2_ACK;
    struct sncp_l2_frame out;
    ck_assert_int_eq(sncp_l2_frame_decode(buf, (size_t)flen, &out), SNCP_E_MALFORMED);
    b = SNCP_L2_CLOSE_ACK;
    expect_decode(data, 1, &b, 1, SNCP_E_MALFORMED);
    b = SNCP_L2_CLOSE;
    expect_decode(data, 1, &b, 1, SNCP_E_MALFORMED);
    /* ids: zero where required, non-zero where forbidden */
    static const uint8_t zero4[4] = {0}, one4[4] = {0, 0, 0, 1};
    expect_decode(data, 4, zero4, 4, SNCP_E_MALFORMED);
    expect_decode(data, 8, zero4, 4, SNCP_E_MALFORMED);
    expect_decode(ack, 4, zero4, 4, SNCP_E_MALFORMED);
    expect_decode(open, 8, one4, 4, SNCP_E_MALFORMED);
    expect_decode(open, 4, zero4, 4, SNCP_E_MALFORMED);
    expect_decode(sol, 8, one4, 4, SNCP_E_MALFORMED);
    expect_decode(&valid_frames[6], 4, zero4, 4, SNCP_E_MALFORMED); /* CLOSE src 0 w/o RESET */
    expect_decode(&valid_frames[7], 8, zero4, 4, SNCP_E_MALFORMED); /* RESET to nobody */
    /* OPEN / discovery bodies: short, max payload out of range */
    static const uint8_t mp_small[2] = {0x02, 0x27}, mp_big[2] = {0x23, 0x29};
    expect_decode(open, 24, mp_small, 2, SNCP_E_MALFORMED);
    expect_decode(open, 24, mp_big, 2, SNCP_E_MALFORMED);
    expect_decode(sol, 24, mp_small, 2, SNCP_E_MALFORMED);
    static const uint8_t len3[2] = {0, 3};
    uint8_t obuf[64];
    int n = encode(open, obuf, sizeof obuf);
    memcpy(obuf + 22, len3, 2);
    ck_assert_int_eq(sncp_l2_frame_decode(obuf, (size_t)n, &out), SNCP_E_MALFORMED);
    /* a discovery name longer than the limit */
    uint8_t big[SNCP_L2_DISC_BODY_LEN + SNCP_L2_MAX_NAME_LEN + 1] = {0x05, 0xc4};
    f = *sol;
    f.payload = big;
    f.len = sizeof big;
    ck_assert_int_eq(sncp_l2_frame_encode(&f, buf, sizeof buf), SNCP_E_INVALID_VALUE);
    /* the encoder's own limits */
    f = *data;
    f.len = SNCP_L2_MAX_PAYLOAD + 1;
    ck_assert_int_eq(sncp_l2_frame_encode(&f, buf, sizeof buf), SNCP_E_TOO_BIG);
    f.len = 3;
    f.payload = NULL;
    ck_assert_int_eq(sncp_l2_frame_encode(&f, buf, sizeof buf), SNCP_E_INVALID_VALUE);
    ck_assert_str_eq(sncp_l2_frame_type_name(SNCP_L2_OPEN_ACK), "OPEN_ACK");
    ck_assert_str_eq(sncp_l2_frame_type_name(0), "UNKNOWN");
    ck_assert_str_eq(sncp_l2_frame_type_name(200), "UNKNOWN");
}
END_TEST

/* ---- open cookies ---- */

/* An OPEN from id 0x101, ISN 5000, max payload 1476, with `cookie` (NULL: none) in body. */
static struct sncp_l2_frame cookie_open(uint8_t body[SNCP_L2_OPEN_COOKIE_BODY_LEN],
                                        const uint8_t *cookie)
{
    static const uint8_t mp[4] = {0x05, 0xc4, 0, 0};
    memcpy(body, mp, sizeof mp);
    if (cookie) {
        memcpy(body + 4, cookie, SNCP_L2_COOKIE_LEN);
    }
    return (struct sncp_l2_frame){.type = SNCP_L2_OPEN,
                                  .src_id = 0x101,
                                  .seq = 5000,
                                  .window = 32,
                                  .len = cookie ? SNCP_L2_OPEN_COOKIE_BODY_LEN : 4,
                                  .payload = body};
}

START_TEST(test_cookie_codec)
{
    const uint8_t *nnve = test_mac[1], *hv = test_mac[0];
    uint8_t body[SNCP_L2_OPEN_COOKIE_BODY_LEN], cookie[SNCP_L2_COOKIE_LEN];
    struct sncp_l2_frame open = cookie_open(body, NULL);
    ck_assert_ptr_null(sncp_l2_open_cookie(&open));
    ck_assert_int_eq(sncp_l2_cookie_compute(test_secret, nnve, hv, 0, &open, cookie), 0);

    /* The examples of proto/L2-TRANSPORT.md §10: the cookie for this OPEN with the secret
     * 00 01 .. 1f, and the COOKIE frame carrying it. */
    uint8_t want[128], got[128];
    size_t wlen;
    hex_to_bytes("57 3f 4a 09  78 b3 d7 b0  f8 9c 1b 9b  c3 13 2a c9", want, &wlen);
    ck_assert_uint_eq(wlen, SNCP_L2_COOKIE_LEN);
    ck_assert_mem_eq(cookie, want, wlen);
    int n = sncp_l2_cookie_build(&open, cookie, got, sizeof got);
    hex_to_bytes("01 09 00 00  00 00 00 00  00 00 01 01  00 00 00 00  00 00 13 88  00 00 00 10"
                 " 57 3f 4a 09  78 b3 d7 b0  f8 9c 1b 9b  c3 13 2a c9",
                 want, &wlen);
    ck_assert_int_eq(n, (int)wlen);
    ck_assert_mem_eq(got, want, wlen);
    struct sncp_l2_frame f;
    ck_assert_int_eq(sncp_l2_frame_decode(got, (size_t)n, &f), 0);
    ck_assert_uint_eq(f.type, SNCP_L2_COOKIE);
    ck_assert_str_eq(sncp_l2_frame_type_name(SNCP_L2_COOKIE), "COOKIE");
    /* The repeated OPEN. */
    struct sncp_l2_frame open2 = cookie_open(body, cookie);
    n = encode(&open2, got, sizeof got);
    hex_to_bytes("01 03 00 00  00 00 01 01  00 00 00 00  00 00 13 88  00 00 00 00  00 20 00 14"
                 " 05 c4 00 00  57 3f 4a 09  78 b3 d7 b0  f8 9c 1b 9b  c3 13 2a c9",
                 want, &wlen);
    ck_assert_int_eq(n, (int)wlen);
    ck_assert_mem_eq(got, want, wlen);
    ck_assert_int_eq(sncp_l2_frame_decode(got, (size_t)n, &f), 0);
    ck_assert_ptr_nonnull(sncp_l2_open_cookie(&f));
    ck_assert_mem_eq(sncp_l2_open_cookie(&f), cookie, SNCP_L2_COOKIE_LEN);

    /* Valid under the current or the previous secret; bound to every input. */
    uint8_t secrets[2][SNCP_L2_COOKIE_SECRET_LEN];
    memset(secrets[0], 0xee, sizeof secrets[0]);
    memcpy(secrets[1], test_secret, sizeof secrets[1]);
    ck_assert_int_eq(sncp_l2_cookie_check(secrets, 2, nnve, hv, 0, &f), 1);
    ck_assert_int_eq(sncp_l2_cookie_check(secrets, 1, nnve, hv, 0, &f), 0);
    ck_assert_int_eq(sncp_l2_cookie_check(&secrets[1], 1, hv, nnve, 0, &f), 0);
    ck_assert_int_eq(sncp_l2_cookie_check(&secrets[1], 1, nnve, hv, 10, &f), 0);
    uint8_t other_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x57};
    ck_assert_int_eq(sncp_l2_cookie_check(&secrets[1], 1, nnve, other_mac, 0, &f), 0);
    struct sncp_l2_frame g = f;
    g.src_id++;
    ck_assert_int_eq(sncp_l2_cookie_check(&secrets[1], 1, nnve, hv, 0, &g), 0);
    g = f;
    g.seq++;
    ck_assert_int_eq(sncp_l2_cookie_check(&secrets[1], 1, nnve, hv, 0, &g), 0);
    uint8_t body2[SNCP_L2_OPEN_COOKIE_BODY_LEN];
    memcpy(body2, f.payload, sizeof body2);
    body2[1] ^= 1; /* another max payload */
    g = f;
    g.payload = body2;
    ck_assert_int_eq(sncp_l2_cookie_check(&secrets[1], 1, nnve, hv, 0, &g), 0);
    for (size_t i = 4; i < sizeof body2; i++) {
        memcpy(body2, f.payload, sizeof body2);
        body2[i] ^= 0x80;
        ck_assert_int_eq(sncp_l2_cookie_check(&secrets[1], 1, nnve, hv, 0, &g), 0);
    }
    /* A body of 5..19 bytes carries no cookie (the extra bytes are ignored). */
    g = f;
    g.len = SNCP_L2_OPEN_COOKIE_BODY_LEN - 1;
    ck_assert_ptr_null(sncp_l2_open_cookie(&g));
    ck_assert_int_eq(sncp_l2_cookie_check(&secrets[1], 1, nnve, hv, 0, &g), 0);
    /* Only OPENs have cookies. */
    g = f;
    g.type = SNCP_L2_OPEN_ACK;
    ck_assert_ptr_null(sncp_l2_open_cookie(&g));
    ck_assert_int_eq(sncp_l2_cookie_compute(test_secret, nnve, hv, 0, &g, cookie),
                     SNCP_E_INVALID_VALUE);
    ck_assert_int_eq(sncp_l2_cookie_build(&g, cookie, got, sizeof got), SNCP_E_INVALID_VALUE);
    ck_assert_int_eq(sncp_l2_cookie_build(&f, cookie, got, SNCP_L2_HEADER_LEN + 15), -ENOBUFS);

    /* Malformed COOKIE frames: a sender id, no receiver id, a cookie of another length. */
    static const struct {
        uint32_t src, dst;
        uint16_t len;
    } bad[] = {{1, 0x101, 16}, {0, 0, 16}, {0, 0x101, 15}, {0, 0x101, 17}, {0, 0x101, 0}};
    uint8_t big[32] = {0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct sncp_l2_frame c = {.type = SNCP_L2_COOKIE,
                                  .src_id = bad[i].src,
                                  .dst_id = bad[i].dst,
                                  .len = bad[i].len,
                                  .payload = big};
        ck_assert_int_eq(sncp_l2_frame_encode(&c, got, sizeof got), SNCP_E_INVALID_VALUE);
        uint8_t raw[SNCP_L2_HEADER_LEN + 32] = {1, SNCP_L2_COOKIE};
        uint32_t v = htonl(bad[i].src);
        memcpy(raw + 4, &v, 4);
        v = htonl(bad[i].dst);
        memcpy(raw + 8, &v, 4);
        uint16_t l = htons(bad[i].len);
        memcpy(raw + 22, &l, 2);
        ck_assert_int_eq(sncp_l2_frame_decode(raw, sizeof raw, &f), SNCP_E_MALFORMED);
    }
    /* A COOKIE for no connection is never answered. */
    n = sncp_l2_cookie_build(&open, cookie, got, sizeof got);
    ck_assert_int_eq(sncp_l2_frame_decode(got, (size_t)n, &f), 0);
    ck_assert_int_eq(sncp_l2_reply_unknown(&f, want, sizeof want), 0);
}
END_TEST

START_TEST(test_handshake_cookie)
{
    /* _i == 0: no loss; _i == 1: the first COOKIE is lost (the OPEN goes again on the timer,
     * without a cookie, and gets another); _i == 2: the OPEN with the cookie is lost. */
    struct net n;
    net_init(&n, 11);
    n.latency_ms = 2;
    n.e[1].cookies = 1;
    if (_i == 1) {
        n.e[1].drop_next = 1;
    }
    end_create(&n.e[0]);
    ck_assert_int_eq(sncp_l2_conn_open(n.e[0].c, n.now), 0);
    if (_i == 2) {
        /* The first OPEN passes (it is sent by open), the second (with the cookie) not. */
        n.e[0].drop_next = 1;
    }
    ck_assert(net_run(&n, both_established, 60000));
    struct end *a = &n.e[0], *b = &n.e[1];
    ck_assert_uint_eq(a->types_sent[SNCP_L2_OPEN], _i == 0 ? 2 : 3);
    ck_assert_uint_eq(b->types_sent[SNCP_L2_COOKIE], _i == 1 ? 2 : 1);
    ck_assert_uint_eq(sncp_l2_conn_stats(a->c)->cookies_in, 1);
    if (_i == 0) {
        /* The cookie round trip does not count as a retransmission: the OPEN with the cookie
         * gives the RTT sample. */
        ck_assert_uint_eq(sncp_l2_conn_stats(a->c)->retransmits, 0);
        ck_assert_uint_eq(sncp_l2_conn_stats(a->c)->rtt_samples, 1);
        ck_assert_uint_eq(sncp_l2_conn_stats(a->c)->srtt_ms, 4);
    }
    uint8_t *x = random_bytes(5000, 3);
    set_stream(a, b, x, 5000);
    ck_assert(net_run(&n, all_acked, 10000));
    ck_assert_mem_eq(b->rx, x, 5000);
    /* A COOKIE once established is not for this state. */
    uint8_t body[SNCP_L2_OPEN_COOKIE_BODY_LEN], buf[64];
    struct sncp_l2_frame open = cookie_open(body, NULL), f;
    open.src_id = sncp_l2_conn_local_id(a->c);
    open.seq = 0;
    int len = sncp_l2_cookie_build(&open, cookie_body, buf, sizeof buf);
    ck_assert_int_eq(sncp_l2_frame_decode(buf, (size_t)len, &f), 0);
    ck_assert_int_eq(sncp_l2_conn_input(a->c, &f, n.now), SNCP_E_UNEXPECTED_MESSAGE);
    net_free(&n);
    free(x);
}
END_TEST

START_TEST(test_cookie_forged)
{
    /* COOKIEs that do not answer our OPEN (another ISN) are rejected; a stream of different
     * cookies answering it counts against max_retransmits: the open still ends. */
    struct net n;
    net_init(&n, 12);
    n.cut = 1;
    n.e[0].cfg.max_retransmits = 3;
    end_create(&n.e[0]);
    struct end *a = &n.e[0];
    ck_assert_int_eq(sncp_l2_conn_open(a->c, n.now), 0);
    uint8_t body[SNCP_L2_OPEN_COOKIE_BODY_LEN], buf[64], ck[SNCP_L2_COOKIE_LEN] = {0};
    struct sncp_l2_frame open = cookie_open(body, NULL), f;
    open.src_id = sncp_l2_conn_local_id(a->c);
    open.seq = a->cfg.initial_seq + 1;
    int len = sncp_l2_cookie_build(&open, ck, buf, sizeof buf);
    ck_assert_int_eq(sncp_l2_frame_decode(buf, (size_t)len, &f), 0);
    ck_assert_int_eq(sncp_l2_conn_input(a->c, &f, n.now), SNCP_E_UNEXPECTED_MESSAGE);
    open.seq = a->cfg.initial_seq;
    for (int i = 0; i < 50; i++) {
        ck[0] = (uint8_t)i;
        len = sncp_l2_cookie_build(&open, ck, buf, sizeof buf);
        ck_assert_int_eq(sncp_l2_frame_decode(buf, (size_t)len, &f), 0);
        ck_assert_int_eq(sncp_l2_conn_input(a->c, &f, n.now), 0);
    }
    /* One OPEN from open(), one for the first cookie, then 3 retransmissions at most. */
    ck_assert_uint_eq(a->types_sent[SNCP_L2_OPEN], 5);
    ck_assert(net_run(&n, e0_closed, 60000));
    ck_assert_int_eq(a->closed_err, -ETIMEDOUT);
    ck_assert_uint_eq(a->types_sent[SNCP_L2_OPEN], 5);
    net_free(&n);
}
END_TEST

START_TEST(test_lazy_buffers)
{
    /* A connection holds no send ring or reorder buffer until it needs one; a small exchange
     * keeps a small ring; a burst's ring is released once acknowledged; the reorder buffer
     * exists only while frames after a gap are held. */
    struct net n;
    net_init(&n, 13);
    n.latency_ms = 1;
    net_connect(&n);
    struct end *a = &n.e[0], *b = &n.e[1];
    ck_assert_uint_eq(sncp_l2_conn_buffer_bytes(a->c), 0);
    ck_assert_uint_eq(sncp_l2_conn_buffer_bytes(b->c), 0);
    uint8_t *x = random_bytes(200000, 4);
    set_stream(a, b, x, 100);
    ck_assert(net_run(&n, all_acked, 10000));
    ck_assert_uint_eq(sncp_l2_conn_buffer_bytes(a->c), 4096);
    ck_assert_uint_eq(sncp_l2_conn_buffer_bytes(b->c), 0);
    ck_assert_uint_eq(sncp_l2_conn_send_space(a->c), SNCP_L2_DEFAULT_SEND_BUFFER);
    /* A burst: the ring grows (queued bytes kept in order across the growth). */
    set_stream(a, b, x, 200000);
    ck_assert_int_eq(sncp_l2_conn_send(a->c, x, 1000, n.now), 1000);
    ck_assert_int_eq(sncp_l2_conn_send(a->c, x + 1000, 199000, n.now), 199000);
    a->tx_off = 200000;
    ck_assert_uint_ge(sncp_l2_conn_buffer_bytes(a->c), 200000);
    ck_assert(net_run(&n, all_acked, 20000));
    ck_assert_mem_eq(b->rx, x, 200000);
    ck_assert_uint_eq(sncp_l2_conn_buffer_bytes(a->c), 0);
    /* A gap: the reorder buffer holds the frames after it, and goes when it is filled. */
    a->drop_data_nth = a->types_sent[SNCP_L2_DATA] + 1;
    set_stream(a, b, x, 5000);
    ck_assert_int_eq(sncp_l2_conn_send(a->c, x, 5000, n.now), 5000);
    a->tx_off = 5000;
    ck_assert(net_run(&n, NULL, 1) == 0);
    ck_assert_uint_eq(sncp_l2_conn_buffer_bytes(b->c), 32u * 1476);
    ck_assert(net_run(&n, all_acked, 10000));
    ck_assert_mem_eq(b->rx, x, 5000);
    ck_assert_uint_eq(sncp_l2_conn_buffer_bytes(b->c), 0);
    ck_assert_uint_eq(sncp_l2_conn_stats(b->c)->out_of_order, 3);
    net_free(&n);
    free(x);
}
END_TEST

START_TEST(test_codec_random_bytes)
{
    /* Random garbage never crashes the decoder and never decodes with a payload outside
     * the buffer. */
    struct net n;
    net_init(&n, 42);
    uint8_t buf[200];
    unsigned ok = 0;
    for (int i = 0; i < 200000; i++) {
        size_t len = rnd(&n) % sizeof buf;
        for (size_t k = 0; k < len; k++) {
            buf[k] = (uint8_t)rnd(&n);
        }
        if (len > 2) {
            buf[0] = 1;
            buf[1] = (uint8_t)(1 + rnd(&n) % 8);
        }
        struct sncp_l2_frame f;
        if (sncp_l2_frame_decode(buf, len, &f) == 0) {
            ok++;
            ck_assert(f.payload >= buf && f.payload + f.len <= buf + len);
        }
    }
    ck_assert_uint_gt(ok, 0);
    net_free(&n);
}
END_TEST

START_TEST(test_discovery)
{
    uint8_t buf[256];
    int n = sncp_l2_solicit_build(0x11223344, 1476, "hv-1", buf, sizeof buf);
    ck_assert_int_eq(n, SNCP_L2_HEADER_LEN + 4 + 4);
    struct sncp_l2_frame sol;
    ck_assert_int_eq(sncp_l2_frame_decode(buf, (size_t)n, &sol), 0);
    ck_assert_uint_eq(sol.type, SNCP_L2_SOLICIT);
    struct sncp_l2_discovery d;
    ck_assert_int_eq(sncp_l2_discovery_parse(&sol, &d), 0);
    ck_assert_uint_eq(d.nonce, 0x11223344);
    ck_assert_uint_eq(d.max_payload, 1476);
    ck_assert_str_eq(d.name, "hv-1");

    uint8_t abuf[256];
    char longname[100];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    longname[3] = '\n';
    n = sncp_l2_advertise_build(&sol, 8976, longname, abuf, sizeof abuf);
    ck_assert_int_eq(n, SNCP_L2_HEADER_LEN + 4 + SNCP_L2_MAX_NAME_LEN);
    struct sncp_l2_frame adv;
    ck_assert_int_eq(sncp_l2_frame_decode(abuf, (size_t)n, &adv), 0);
    ck_assert_uint_eq(adv.type, SNCP_L2_ADVERTISE);
    ck_assert_uint_eq(adv.dst_id, 0x11223344);
    ck_assert_int_eq(sncp_l2_discovery_parse(&adv, &d), 0);
    ck_assert_uint_eq(d.nonce, 0x11223344);
    ck_assert_uint_eq(d.max_payload, 8976);
    ck_assert_uint_eq(strlen(d.name), SNCP_L2_MAX_NAME_LEN);
    ck_assert_int_eq(d.name[3], '?'); /* made printable */

    /* No name; a nonce of 0 or a max payload out of range cannot be built. */
    ck_assert_int_eq(sncp_l2_solicit_build(5, 1476, NULL, buf, sizeof buf), SNCP_L2_HEADER_LEN + 4);
    ck_assert_int_eq(sncp_l2_solicit_build(0, 1476, NULL, buf, sizeof buf), SNCP_E_INVALID_VALUE);
    ck_assert_int_eq(sncp_l2_solicit_build(5, 10, NULL, buf, sizeof buf), SNCP_E_INVALID_VALUE);
    ck_assert_int_eq(sncp_l2_solicit_build(5, 1476, NULL, buf, 27), -ENOBUFS);
    ck_assert_int_eq(sncp_l2_advertise_build(&adv, 1476, NULL, buf, sizeof buf),
                     SNCP_E_INVALID_VALUE);
    ck_assert_int_eq(sncp_l2_discovery_parse(&valid_frames[4], &d), SNCP_E_MALFORMED);
}
END_TEST

START_TEST(test_reply_unknown)
{
    uint8_t buf[64];
    struct sncp_l2_frame r;
    /* DATA to an unknown connection: RESET back, ids swapped. */
    int n = sncp_l2_reply_unknown(&valid_frames[4], buf, sizeof buf);
    ck_assert_int_eq(n, SNCP_L2_HEADER_LEN);
    ck_assert_int_eq(sncp_l2_frame_decode(buf, (size_t)n, &r), 0);
    ck_assert_uint_eq(r.type, SNCP_L2_CLOSE);
    ck_assert_uint_eq(r.flags, SNCP_L2_F_RESET);
    ck_assert_uint_eq(r.src_id, 9);
    ck_assert_uint_eq(r.dst_id, 7);
    /* OPEN refused: RESET with sender id 0. */
    n = sncp_l2_reply_unknown(&valid_frames[2], buf, sizeof buf);
    ck_assert_int_eq(sncp_l2_frame_decode(buf, (size_t)n, &r), 0);
    ck_assert_uint_eq(r.type, SNCP_L2_CLOSE);
    ck_assert_uint_eq(r.src_id, 0);
    ck_assert_uint_eq(r.dst_id, 7);
    /* CLOSE: CLOSE_ACK (the peer's CLOSE_ACK got lost after we forgot the connection). */
    n = sncp_l2_reply_unknown(&valid_frames[6], buf, sizeof buf);
    ck_assert_int_eq(sncp_l2_frame_decode(buf, (size_t)n, &r), 0);
    ck_assert_uint_eq(r.type, SNCP_L2_CLOSE_ACK);
    /* Never answered: RESET, CLOSE_ACK, discovery. */
    ck_assert_int_eq(sncp_l2_reply_unknown(&valid_frames[7], buf, sizeof buf), 0);
    ck_assert_int_eq(sncp_l2_reply_unknown(&valid_frames[8], buf, sizeof buf), 0);
    ck_assert_int_eq(sncp_l2_reply_unknown(&valid_frames[0], buf, sizeof buf), 0);
    ck_assert_int_eq(sncp_l2_reply_unknown(&valid_frames[1], buf, sizeof buf), 0);
    ck_assert_int_eq(sncp_l2_reply_unknown(&valid_frames[4], buf, 10), -ENOBUFS);
}
END_TEST

START_TEST(test_config)
{
    struct sncp_l2_conn *c = (struct sncp_l2_conn *)&c;
    struct sncp_l2_config cfg = {0};
    ck_assert_int_eq(sncp_l2_conn_create(&cfg, &test_cbs, NULL, &c), -EINVAL);
    ck_assert_ptr_null(c);
    cfg.local_id = 1;
    struct sncp_l2_config bad[] = {
        {.local_id = 1, .mtu = 100},
        {.local_id = 1, .mtu = 9001},
        {.local_id = 1, .window = SNCP_L2_MAX_WINDOW + 1},
        {.local_id = 1, .send_buffer = 100},
        {.local_id = 1, .min_rto_ms = 500, .max_rto_ms = 100},
        {.local_id = 1, .initial_rto_ms = 10},
        {.local_id = 1, .max_retransmits = 1000},
        {.local_id = 1, .keepalive_ms = 1000, .dead_ms = 1500},
        {.local_id = 1, .ack_delay_ms = 1000},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(sncp_l2_conn_create(&bad[i], &test_cbs, NULL, &c), -EINVAL);
    }
    ck_assert_int_eq(sncp_l2_conn_create(&cfg, &test_cbs, NULL, &c), 0);
    ck_assert_int_eq(sncp_l2_conn_state(c), SNCP_L2_STATE_IDLE);
    ck_assert_str_eq(sncp_l2_state_name(SNCP_L2_STATE_IDLE), "idle");
    ck_assert_uint_eq(sncp_l2_conn_tick(c, 5), UINT64_MAX);
    ck_assert_int_eq(sncp_l2_conn_send(c, (const uint8_t *)"x", 1, 5), SNCP_E_NOT_ESTABLISHED);
    ck_assert_int_eq(sncp_l2_conn_input(c, &valid_frames[4], 5), SNCP_E_CLOSED);
    ck_assert_uint_eq(sncp_l2_conn_max_payload(c), 1476);
    /* accept refuses anything but a valid OPEN */
    ck_assert_int_eq(sncp_l2_conn_accept(c, &valid_frames[4], 5), SNCP_E_MALFORMED);
    sncp_l2_conn_close(c, 5); /* never opened: no callback */
    ck_assert_int_eq(sncp_l2_conn_state(c), SNCP_L2_STATE_CLOSED);
    ck_assert_int_eq(sncp_l2_conn_open(c, 5), -EINVAL);
    sncp_l2_conn_destroy(c);
    sncp_l2_conn_destroy(NULL);
}
END_TEST

/* ---- connections ---- */

START_TEST(test_handshake)
{
    struct net n;
    net_init(&n, 1);
    n.latency_ms = 3;
    net_connect(&n);
    struct end *a = &n.e[0], *b = &n.e[1];
    ck_assert_int_eq(sncp_l2_conn_state(a->c), SNCP_L2_STATE_ESTABLISHED);
    ck_assert_int_eq(sncp_l2_conn_state(b->c), SNCP_L2_STATE_ESTABLISHED);
    ck_assert_uint_eq(sncp_l2_conn_peer_id(a->c), sncp_l2_conn_local_id(b->c));
    ck_assert_uint_eq(sncp_l2_conn_peer_id(b->c), sncp_l2_conn_local_id(a->c));
    ck_assert_uint_eq(a->types_sent[SNCP_L2_OPEN], 1);
    ck_assert_uint_eq(b->types_sent[SNCP_L2_OPEN_ACK], 1);
    /* The OPEN round trip gave the first RTT sample: 6 ms. */
    const struct sncp_l2_stats *st = sncp_l2_conn_stats(a->c);
    ck_assert_uint_eq(st->rtt_samples, 1);
    ck_assert_uint_eq(st->srtt_ms, 6);
    /* A small exchange both ways. */
    uint8_t *x = random_bytes(3000, 1), *y = random_bytes(10, 2);
    set_stream(a, b, x, 3000);
    set_stream(b, a, y, 10);
    ck_assert_int_eq(sncp_l2_conn_send(a->c, x, 3000, n.now), 3000);
    a->tx_off = 3000;
    ck_assert(net_run(&n, all_acked, 10000));
    ck_assert_mem_eq(b->rx, x, 3000);
    ck_assert_mem_eq(a->rx, y, 10);
    ck_assert_uint_eq(sncp_l2_conn_stats(a->c)->data_frames_out, 3); /* 1476 + 1476 + 48 */
    ck_assert_uint_eq(sncp_l2_conn_stats(a->c)->retransmits, 0);
    net_free(&n);
    free(x);
    free(y);
}
END_TEST

START_TEST(test_handshake_loss)
{
    /* _i == 0: the OPEN is lost: the opener's timer sends it again.
     * _i == 1: the OPEN_ACK is lost: the acceptor's timer sends it again (the opener's own
     * timer is set longer here so that it does not get there first). */
    struct net n;
    net_init(&n, 2);
    n.latency_ms = 1;
    n.e[_i].drop_next = 1;
    if (_i == 1) {
        n.e[0].cfg.initial_rto_ms = 1000;
    }
    end_create(&n.e[0]);
    ck_assert_int_eq(sncp_l2_conn_open(n.e[0].c, n.now), 0);
    uint64_t t0 = n.now;
    ck_assert(net_run(&n, both_established, 5000));
    ck_assert(net_run(&n, NULL, 3000) == 0); /* let the dust settle */
    ck_assert_int_eq(n.e[0].closed | n.e[1].closed, 0);
    const struct sncp_l2_stats *sa = sncp_l2_conn_stats(n.e[0].c);
    const struct sncp_l2_stats *sb = sncp_l2_conn_stats(n.e[1].c);
    if (_i == 0) {
        ck_assert_uint_eq(n.e[0].types_sent[SNCP_L2_OPEN], 2);
        ck_assert_uint_eq(n.e[1].types_sent[SNCP_L2_OPEN_ACK], 1);
        ck_assert_uint_eq(sa->retransmits, 1);
        ck_assert_uint_eq(sa->timeouts, 1);
        ck_assert_uint_eq(sa->rtt_samples, 0); /* Karn: no sample from a repeated OPEN */
        ck_assert_uint_eq(sa->rto_ms, 2 * SNCP_L2_DEFAULT_INITIAL_RTO_MS); /* backed off */
    } else {
        ck_assert_uint_eq(n.e[0].types_sent[SNCP_L2_OPEN], 1);
        ck_assert_uint_eq(n.e[1].types_sent[SNCP_L2_OPEN_ACK], 2);
        ck_assert_uint_eq(sb->retransmits, 1);
        ck_assert_uint_eq(sb->timeouts, 1);
        ck_assert_uint_eq(sa->retransmits, 0);
    }
    (void)t0;
    net_free(&n);
}
END_TEST

START_TEST(test_open_timeout_and_refused)
{
    struct net n;
    net_init(&n, 3);
    n.cut = 1;
    n.e[0].cfg.max_retransmits = 4;
    end_create(&n.e[0]);
    ck_assert_int_eq(sncp_l2_conn_open(n.e[0].c, n.now), 0);
    uint64_t t0 = n.now;
    ck_assert(net_run(&n, e0_closed, 60000));
    ck_assert_int_eq(n.e[0].closed_err, -ETIMEDOUT);
    ck_assert_uint_eq(n.e[0].types_sent[SNCP_L2_OPEN], 5);
    /* 200 + 400 + 800 + 1600 + 2000 (capped) */
    ck_assert_uint_eq(n.now - t0, 5000);
    net_free(&n);

    net_init(&n, 3);
    n.e[1].refuse = 1;
    end_create(&n.e[0]);
    ck_assert_int_eq(sncp_l2_conn_open(n.e[0].c, n.now), 0);
    ck_assert(net_run(&n, e0_closed, 60000));
    ck_assert_int_eq(n.e[0].closed_err, -ECONNREFUSED);
    net_free(&n);
}
END_TEST

struct transfer_result {
    uint64_t retransmits, timeouts, fast, dups, ooo, frames_a, frames_b, vtime;
    uint32_t max_in_flight, rto;
};

static void transfer(uint32_t loss_ppm, uint32_t dup_ppm, uint32_t reorder_ppm, uint64_t seed,
                     uint32_t isn, size_t len, struct transfer_result *res)
{
    struct net n;
    net_init(&n, seed);
    if (seed >= 5000) {
        /* soak variants: small and large windows, the smallest MTU, jumbo frames */
        static const uint16_t windows[] = {1, 2, 4, 7, 32, 256};
        static const uint16_t mtus[] = {576, 1500, 9000};
        for (int i = 0; i < 2; i++) {
            n.e[i].cfg.window = windows[(seed + (uint64_t)i) % 6];
            n.e[i].cfg.mtu = mtus[(seed / 6 + (uint64_t)i) % 3];
        }
    }
    n.latency_ms = 2;
    n.jitter_ms = 8;
    n.loss_ppm = loss_ppm;
    n.dup_ppm = dup_ppm;
    n.reorder_ppm = reorder_ppm;
    for (int i = 0; i < 2; i++) {
        n.e[i].cfg.initial_seq = isn + (uint32_t)i * 3;
        n.e[i].cfg.dead_ms = 60000;
    }
    net_connect(&n);
    struct end *a = &n.e[0], *b = &n.e[1];
    uint8_t *x = random_bytes(len, (uint32_t)seed), *y = random_bytes(len / 16, 77);
    set_stream(a, b, x, len);
    set_stream(b, a, y, len / 16);
    uint64_t t0 = n.now;
    ck_assert_msg(net_run(&n, all_acked, 3600000), "transfer stalled: %zu/%zu %zu/%zu", b->rx_len,
                  len, a->rx_len, len / 16);
    ck_assert_int_eq(a->rx_overflow | b->rx_overflow, 0);
    ck_assert_uint_eq(b->rx_len, len);
    ck_assert_mem_eq(b->rx, x, len);
    ck_assert_uint_eq(a->rx_len, len / 16);
    ck_assert_mem_eq(a->rx, y, len / 16);
    ck_assert_int_eq(a->closed | b->closed, 0);
    const struct sncp_l2_stats *sa = sncp_l2_conn_stats(a->c), *sb = sncp_l2_conn_stats(b->c);
    ck_assert_uint_eq(sa->bytes_out, len);
    ck_assert_uint_eq(sb->bytes_in, len);
    res->retransmits = sa->retransmits + sb->retransmits;
    res->timeouts = sa->timeouts + sb->timeouts;
    res->fast = sa->fast_retransmits + sb->fast_retransmits;
    res->dups = sa->duplicates + sb->duplicates;
    res->ooo = sa->out_of_order + sb->out_of_order;
    res->frames_a = sa->frames_out;
    res->frames_b = sb->frames_out;
    res->max_in_flight = sa->max_in_flight;
    res->rto = sa->rto_ms;
    res->vtime = n.now - t0;
    /* Orderly close with the same faults. */
    sncp_l2_conn_close(a->c, n.now);
    ck_assert(net_run(&n, both_closed, 600000));
    ck_assert_int_eq(a->closed_err, 0);
    ck_assert_int_eq(b->closed_err, 0);
    net_free(&n);
    free(x);
    free(y);
}

static const uint32_t loss_rates[] = {0, 10000, 100000, 300000};

START_TEST(test_transfer_loss)
{
    uint32_t loss = loss_rates[_i];
    struct transfer_result r;
    /* duplication 2%, reordering 10% when lossy; a clean link otherwise */
    uint32_t dup = loss ? 20000 : 0, reorder = loss ? 100000 : 0;
    transfer(loss, dup, reorder, 1000 + (uint64_t)_i, 0xfffffe00u, 1 << 20, &r);
    fprintf(stderr,
            "l2 transfer 1 MiB + 64 KiB back: loss %u.%u%% dup %u%% reorder %u%%: "
            "retransmits=%" PRIu64 " (rto=%" PRIu64 " fast=%" PRIu64 ") duplicates=%" PRIu64
            " out_of_order=%" PRIu64 " frames=%" PRIu64 "+%" PRIu64 " max_in_flight=%u "
            "virtual_ms=%" PRIu64 " rto_ms=%u\n",
            loss / 10000, loss / 1000 % 10, dup / 10000, reorder / 10000, r.retransmits, r.timeouts,
            r.fast, r.dups, r.ooo, r.frames_a, r.frames_b, r.max_in_flight, r.vtime, r.rto);
    ck_assert_uint_gt(r.max_in_flight, 1);
    if (loss == 0) {
        ck_assert_uint_eq(r.retransmits, 0);
        ck_assert_uint_eq(r.dups, 0);
        ck_assert_uint_eq(r.max_in_flight, SNCP_L2_DEFAULT_WINDOW);
    } else {
        ck_assert_uint_gt(r.retransmits, 0);
    }
}
END_TEST

START_TEST(test_burst_loss)
{
    /* A burst of DATA frames is lost whole (a link that was down, a full queue): no later
     * frame is held for the selective bitmap to report, so the timer finds the first; the
     * acknowledgement of its retransmission then shows the next lost, and so on: one timer
     * expiry for the burst, each frame sent again once (§6.4 "After a timeout"), not one
     * backed-off expiry per frame. */
    enum { BURST = 20 };
    struct net n;
    net_init(&n, 17);
    n.latency_ms = 1;
    net_connect(&n);
    struct end *a = &n.e[0], *b = &n.e[1];
    size_t len = (size_t)BURST * 1476;
    uint8_t *x = random_bytes(len, 5);
    set_stream(a, b, x, len);
    a->drop_next = BURST;
    ck_assert_int_eq(sncp_l2_conn_send(a->c, x, len, n.now), (int64_t)len);
    a->tx_off = len;
    ck_assert(net_run(&n, all_acked, 60000));
    ck_assert_mem_eq(b->rx, x, len);
    const struct sncp_l2_stats *st = sncp_l2_conn_stats(a->c);
    ck_assert_uint_eq(st->data_frames_out, BURST);
    ck_assert_uint_eq(st->timeouts, 1);
    ck_assert_uint_eq(st->retransmits, BURST);
    ck_assert_int_eq(a->closed | b->closed, 0);
    net_free(&n);
    free(x);
}
END_TEST

START_TEST(test_transfer_soak)
{
    /* Many seeds and shapes, smaller streams: 30% loss, 5% duplication, 20% reordering. */
    struct transfer_result r;
    transfer(300000, 50000, 200000, 5000 + (uint64_t)_i, (uint32_t)_i * 0x10000001u, 65536, &r);
}
END_TEST

START_TEST(test_window)
{
    struct net n;
    net_init(&n, 5);
    n.latency_ms = 10;
    n.e[0].cfg.window = 8;
    net_connect(&n);
    struct end *a = &n.e[0], *b = &n.e[1];
    uint8_t *x = random_bytes(100000, 5);
    set_stream(a, b, x, 100000);
    uint64_t t0 = n.now;
    pump(&n, a);
    /* The whole window went out at once, before any ACK could come back. */
    ck_assert_uint_eq(sncp_l2_conn_in_flight(a->c), 8);
    ck_assert_uint_eq(a->types_sent[SNCP_L2_DATA], 8);
    ck_assert_uint_eq(sncp_l2_conn_unacked_bytes(a->c), 100000);
    /* B's window is 32 but A's own caps it; B sending to A is capped by A's 8 too. */
    ck_assert(net_run(&n, all_acked, 10000));
    ck_assert_uint_eq(sncp_l2_conn_stats(a->c)->max_in_flight, 8);
    ck_assert_mem_eq(b->rx, x, 100000);
    /* 68 frames, 8 per 20 ms round trip: about 9 round trips, not 68. */
    ck_assert_uint_lt(n.now - t0, 20 * 12);
    net_free(&n);
    free(x);
}
END_TEST

START_TEST(test_selective_ack)
{
    /* _i == 0: the 5th of 20 frames is lost: the selective ACKs of the frames after it
     * show the gap and it goes again at once, without waiting for the timer.
     * _i == 1: the last frame is lost: nothing follows it, the timer resends it. */
    struct net n;
    net_init(&n, 15);
    n.latency_ms = 5;
    net_connect(&n);
    struct end *a = &n.e[0], *b = &n.e[1];
    size_t len = 20 * 1476;
    uint8_t *x = random_bytes(len, 15);
    set_stream(a, b, x, len);
    a->drop_data_nth = _i == 0 ? 5 : 20;
    ck_assert_int_eq(sncp_l2_conn_send(a->c, x, len, n.now), (int64_t)len);
    a->tx_off = len;
    uint64_t t0 = n.now;
    ck_assert(net_run(&n, all_acked, 10000));
    ck_assert_mem_eq(b->rx, x, len);
    const struct sncp_l2_stats *sa = sncp_l2_conn_stats(a->c), *sb = sncp_l2_conn_stats(b->c);
    ck_assert_uint_eq(sa->retransmits, 1);
    ck_assert_uint_eq(sb->duplicates, 0);
    if (_i == 0) {
        ck_assert_uint_eq(sa->fast_retransmits, 1);
        ck_assert_uint_eq(sa->timeouts, 0);
        ck_assert_uint_eq(sb->out_of_order, 15);
        ck_assert_uint_lt(n.now - t0, 25); /* two round trips and a bit */
    } else {
        ck_assert_uint_eq(sa->fast_retransmits, 0);
        ck_assert_uint_eq(sa->timeouts, 1);
    }
    net_free(&n);
    free(x);
}
END_TEST

START_TEST(test_send_buffer_full)
{
    struct net n;
    net_init(&n, 6);
    n.latency_ms = 1;
    n.e[0].cfg.send_buffer = SNCP_L2_MIN_SEND_BUFFER;
    net_connect(&n);
    struct end *a = &n.e[0], *b = &n.e[1];
    uint8_t *x = random_bytes(200000, 6);
    ck_assert_int_eq(sncp_l2_conn_send(a->c, x, 200000, n.now), SNCP_L2_MIN_SEND_BUFFER);
    ck_assert_uint_eq(sncp_l2_conn_send_space(a->c), 0);
    ck_assert_int_eq(sncp_l2_conn_send(a->c, x, 10, n.now), 0);
    set_stream(a, b, x, 200000);
    a->tx_off = SNCP_L2_MIN_SEND_BUFFER;
    ck_assert(net_run(&n, all_acked, 10000));
    ck_assert_mem_eq(b->rx, x, 200000);
    ck_assert_int_gt(a->writable_calls, 0);
    net_free(&n);
    free(x);
}
END_TEST

START_TEST(test_rto_adapts_and_backs_off)
{
    struct net n;
    net_init(&n, 7);
    n.latency_ms = 20;
    for (int i = 0; i < 2; i++) {
        n.e[i].cfg.min_rto_ms = 1;
        n.e[i].cfg.ack_delay_ms = 1;
        n.e[i].cfg.max_rto_ms = 10000;
        n.e[i].cfg.dead_ms = 600000;
        n.e[i].cfg.keepalive_ms = 100000;
        n.e[i].cfg.max_retransmits = 6;
    }
    net_connect(&n);
    struct end *a = &n.e[0], *b = &n.e[1];
    const struct sncp_l2_stats *st = sncp_l2_conn_stats(a->c);
    uint8_t *x = random_bytes(600000, 7);
    set_stream(a, b, x, 200000);
    ck_assert(net_run(&n, all_acked, 60000));
    /* RTT 40 ms (+ up to 1 ms ACK delay): SRTT converges there, RTO well below the
     * initial 200 ms. */
    ck_assert_uint_ge(st->srtt_ms, 39);
    ck_assert_uint_le(st->srtt_ms, 42);
    ck_assert_uint_lt(st->rto_ms, 100);
    uint32_t rto_fast = st->rto_ms;
    /* Slower link: RTT 200 ms; RTO follows. */
    n.latency_ms = 100;
    set_stream(a, b, x + 200000, 400000);
    ck_assert(net_run(&n, all_acked, 60000));
    ck_assert_uint_ge(st->srtt_ms, 150);
    ck_assert_uint_gt(st->rto_ms, rto_fast);
    uint32_t rto_slow = st->rto_ms;
    uint64_t samples = st->rtt_samples;

    /* Cut the link with data in flight: each expiry doubles the RTO. */
    n.cut = 1;
    set_stream(a, b, x, 10);
    pump(&n, a);
    uint64_t timeouts = st->timeouts;
    uint32_t prev = rto_slow;
    for (int k = 1; k <= 3; k++) {
        uint64_t t = n.now;
        while (st->timeouts == timeouts + (uint64_t)k - 1) {
            ck_assert_uint_le(n.now - t, (uint64_t)prev + 1);
            net_run(&n, NULL, 1);
        }
        ck_assert_uint_eq(n.now - t, prev);
        ck_assert_uint_eq(st->rto_ms, prev * 2 > 10000 ? 10000 : prev * 2);
        prev = st->rto_ms;
    }
    /* Restore: the retransmitted frame is acknowledged but gives no sample (Karn) and the
     * backed-off RTO stays until a fresh frame is acknowledged. */
    n.cut = 0;
    ck_assert(net_run(&n, all_acked, 60000));
    ck_assert_uint_eq(st->timeouts, timeouts + 4); /* the one that got through */
    ck_assert_uint_eq(st->rtt_samples, samples);
    prev = prev * 2 > 10000 ? 10000 : prev * 2;
    ck_assert_uint_eq(st->rto_ms, prev);
    set_stream(a, b, x, 10);
    ck_assert(net_run(&n, all_acked, 60000));
    ck_assert_uint_eq(st->rtt_samples, samples + 1);
    ck_assert_uint_lt(st->rto_ms, prev);

    /* Give up after max_retransmits. */
    n.cut = 1;
    set_stream(a, b, x, 10);
    ck_assert(net_run(&n, e0_closed, 600000));
    ck_assert_int_eq(a->closed_err, -ETIMEDOUT);
    ck_assert_uint_eq(st->rto_ms, 10000);
    net_free(&n);
    free(x);
}
END_TEST

START_TEST(test_keepalive_and_dead_peer)
{
    struct net n;
    net_init(&n, 8);
    n.latency_ms = 1;
    net_connect(&n);
    struct end *a = &n.e[0], *b = &n.e[1];
    /* Idle for a minute: probes keep both ends alive. */
    net_run(&n, NULL, 60000);
    ck_assert_int_eq(a->closed | b->closed, 0);
    /* Each probe and its answer reset both ends' silence: one probe a second between them. */
    ck_assert_uint_ge(sncp_l2_conn_stats(a->c)->probes_out + sncp_l2_conn_stats(b->c)->probes_out,
                      55);
    ck_assert_uint_le(sncp_l2_conn_stats(a->c)->probes_out + sncp_l2_conn_stats(b->c)->probes_out,
                      65);
    /* The link goes dark: both ends find out within dead_ms. */
    n.cut = 1;
    uint64_t t0 = n.now;
    ck_assert(net_run(&n, both_closed, 30000));
    ck_assert_int_eq(a->closed_err, -ETIMEDOUT);
    ck_assert_int_eq(b->closed_err, -ETIMEDOUT);
    ck_assert_uint_le(n.now - t0, SNCP_L2_DEFAULT_DEAD_MS);
    ck_assert_uint_ge(n.now - t0, SNCP_L2_DEFAULT_DEAD_MS - SNCP_L2_DEFAULT_KEEPALIVE_MS);
    ck_assert_uint_eq(sncp_l2_conn_tick(a->c, n.now), UINT64_MAX);
    ck_assert_int_eq(sncp_l2_conn_send(a->c, (const uint8_t *)"x", 1, n.now), SNCP_E_CLOSED);
    net_free(&n);
}
END_TEST

START_TEST(test_close_abort_restart)
{
    struct net n;
    net_init(&n, 9);
    n.latency_ms = 1;
    net_connect(&n);
    struct end *a = &n.e[0], *b = &n.e[1];
    /* Close with data still queued: the data arrives first. */
    uint8_t *x = random_bytes(50000, 9);
    ck_assert_int_eq(sncp_l2_conn_send(a->c, x, 50000, n.now), 50000);
    set_stream(a, b, x, 0);
    free(b->rx);
    b->rx = malloc(50000);
    b->rx_cap = 50000;
    sncp_l2_conn_close(a->c, n.now);
    ck_assert_int_eq(sncp_l2_conn_state(a->c), SNCP_L2_STATE_CLOSING);
    ck_assert_int_eq(sncp_l2_conn_send(a->c, x, 1, n.now), SNCP_E_CLOSED);
    sncp_l2_conn_close(a->c, n.now); /* idempotent */
    ck_assert(net_run(&n, both_closed, 10000));
    ck_assert_uint_eq(b->rx_len, 50000);
    ck_assert_mem_eq(b->rx, x, 50000);
    ck_assert_int_eq(a->closed_err, 0);
    ck_assert_int_eq(b->closed_err, 0);
    ck_assert_uint_eq(a->types_sent[SNCP_L2_CLOSE], 1);
    ck_assert_uint_eq(b->types_sent[SNCP_L2_CLOSE_ACK], 1);
    net_free(&n);

    /* Abort: the peer sees RESET. */
    net_init(&n, 10);
    net_connect(&n);
    sncp_l2_conn_abort(n.e[1].c, n.now);
    ck_assert_int_eq(n.e[1].closed_err, -ECONNABORTED);
    sncp_l2_conn_abort(n.e[1].c, n.now); /* no second callback */
    ck_assert(net_run(&n, e0_closed, 1000));
    ck_assert_int_eq(n.e[0].closed_err, -ECONNRESET);
    net_free(&n);

    /* The acceptor restarts (loses all state): the opener's next probe is answered with
     * RESET and it learns at once, long before dead_ms. */
    net_init(&n, 11);
    net_connect(&n);
    sncp_l2_conn_destroy(n.e[1].c);
    n.e[1].c = NULL;
    n.e[1].passive = 0;
    uint64_t t0 = n.now;
    ck_assert(net_run(&n, e0_closed, 30000));
    ck_assert_int_eq(n.e[0].closed_err, -ECONNRESET);
    ck_assert_uint_le(n.now - t0, SNCP_L2_DEFAULT_KEEPALIVE_MS + 10);
    net_free(&n);

    /* The opener restarts with a new connection id: the acceptor accepts it as a new
     * connection; the old one is reset by the restarted end when it probes. */
    net_init(&n, 12);
    net_connect(&n);
    struct sncp_l2_conn *old_b = n.e[1].c;
    sncp_l2_conn_destroy(n.e[0].c);
    n.e[0].c = NULL;
    n.e[1].c = NULL; /* b's owner keeps the old connection aside */
    n.e[0].established = n.e[1].established = 0;
    n.e[0].cfg.local_id = 0x2000;
    net_connect(&n);
    ck_assert_uint_eq(sncp_l2_conn_peer_id(n.e[1].c), 0x2000);
    uint8_t rst[64];
    struct sncp_l2_frame probe = {.type = SNCP_L2_ACK,
                                  .flags = SNCP_L2_F_PROBE,
                                  .src_id = 0x1001,
                                  .dst_id = 0x1000,
                                  .window = 1};
    int len = sncp_l2_reply_unknown(&probe, rst, sizeof rst);
    struct sncp_l2_frame f;
    ck_assert_int_eq(sncp_l2_frame_decode(rst, (size_t)len, &f), 0);
    struct sncp_l2_conn *cur_b = n.e[1].c;
    n.e[1].c = old_b;
    n.e[1].closed = 0;
    ck_assert_int_eq(sncp_l2_conn_input(old_b, &f, n.now), 0);
    ck_assert_int_eq(n.e[1].closed_err, -ECONNRESET);
    sncp_l2_conn_destroy(old_b);
    n.e[1].c = cur_b;
    net_free(&n);
    free(x);
}
END_TEST

START_TEST(test_bad_frames_to_connection)
{
    struct net n;
    net_init(&n, 13);
    net_connect(&n);
    struct sncp_l2_conn *a = n.e[0].c;
    const struct sncp_l2_stats *st = sncp_l2_conn_stats(a);
    uint8_t p[64] = {0};
    struct sncp_l2_frame bad[] = {
        /* wrong receiver id */
        {.type = SNCP_L2_DATA, .src_id = 0x1001, .dst_id = 0x9999, .len = 1, .payload = p},
        /* wrong sender id */
        {.type = SNCP_L2_DATA, .src_id = 0x9999, .dst_id = 0x1000, .len = 1, .payload = p},
        /* discovery frames are not for connections */
        {.type = SNCP_L2_SOLICIT, .src_id = 5, .len = 4, .payload = open_body},
        /* an OPEN from someone else */
        {.type = SNCP_L2_OPEN, .src_id = 0x4444, .len = 4, .payload = open_body},
        /* a RESET from the wrong sender */
        {.type = SNCP_L2_CLOSE, .flags = SNCP_L2_F_RESET, .src_id = 0x9999, .dst_id = 0x1000},
        /* fails the frame rules (selective ACK too long) */
        {.type = SNCP_L2_ACK, .src_id = 0x1001, .dst_id = 0x1000, .len = 33, .payload = p},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(sncp_l2_conn_input(a, &bad[i], n.now), SNCP_E_UNEXPECTED_MESSAGE);
    }
    ck_assert_uint_eq(st->rejected, sizeof bad / sizeof bad[0]);
    /* An ACK for frames never sent is ignored (counted); the connection lives on. */
    struct sncp_l2_frame ack = {
        .type = SNCP_L2_ACK, .src_id = 0x1001, .dst_id = 0x1000, .ack = 12345, .window = 4};
    ck_assert_int_eq(sncp_l2_conn_input(a, &ack, n.now), 0);
    ck_assert_uint_eq(st->rejected, sizeof bad / sizeof bad[0] + 1);
    /* A DATA frame far outside the window is dropped. */
    uint8_t big[1500] = {0};
    struct sncp_l2_frame far = {.type = SNCP_L2_DATA,
                                .src_id = 0x1001,
                                .dst_id = 0x1000,
                                .seq = 100 + 5000,
                                .window = 4,
                                .len = 10,
                                .payload = big};
    ck_assert_int_eq(sncp_l2_conn_input(a, &far, n.now), 0);
    ck_assert_uint_eq(st->out_of_window, 1);
    /* A DATA frame larger than our MTU allows is refused. */
    far.seq = 100;
    far.len = 1477;
    ck_assert_int_eq(sncp_l2_conn_input(a, &far, n.now), 0);
    ck_assert_uint_eq(st->data_frames_in, 0);
    ck_assert_int_eq(sncp_l2_conn_state(a), SNCP_L2_STATE_ESTABLISHED);
    ck_assert(net_run(&n, NULL, 100) == 0);
    ck_assert_int_eq(n.e[0].closed | n.e[1].closed, 0);
    net_free(&n);
}
END_TEST

START_TEST(test_throughput)
{
    /* In-memory throughput over a lossless zero-latency link (informational). */
    struct net n;
    net_init(&n, 14);
    net_connect(&n);
    size_t len = 16u << 20;
    uint8_t *x = random_bytes(len, 14);
    set_stream(&n.e[0], &n.e[1], x, len);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert(net_run(&n, all_acked, 3600000));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_mem_eq(n.e[1].rx, x, len);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "l2 throughput in memory: %zu MiB in %.3f s = %.0f MiB/s, frames=%" PRIu64 "\n",
            len >> 20, s, (double)(len >> 20) / s, sncp_l2_conn_stats(n.e[0].c)->frames_out);
    net_free(&n);
    free(x);
}
END_TEST

START_TEST(test_discovery_mac_valid)
{
    static const struct {
        uint8_t mac[6];
        int valid;
    } cases[] = {
        {{0x03, 0x53, 0x4e, 0x43, 0x50, 0x01}, 1}, /* the default */
        {{0x03, 0x00, 0x5e, 0x00, 0x00, 0x07}, 1},
        {{0x01, 0x80, 0xc2, 0x00, 0x00, 0x30}, 1}, /* past the reserved block */
        {{0x02, 0x53, 0x4e, 0x43, 0x50, 0x01}, 0}, /* unicast */
        {{0x01, 0x80, 0xc2, 0x00, 0x00, 0x00}, 0}, /* bridge filtered */
        {{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e}, 0},
        {{0x01, 0x80, 0xc2, 0x00, 0x00, 0x21}, 0}, /* GARP / MRP */
        {{0x01, 0x80, 0xc2, 0x00, 0x00, 0x2f}, 0},
        {{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb}, 0}, /* IPv4 multicast */
        {{0x33, 0x33, 0x00, 0x00, 0x00, 0x01}, 0}, /* IPv6 multicast */
        {{0x01, 0x1b, 0x19, 0x00, 0x00, 0x00}, 0}, /* PTP */
        {{0x03, 0x00, 0x00, 0x00, 0x00, 0x01}, 0}, /* Token Ring functional */
        {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(sncp_l2_discovery_mac_valid(cases[i].mac) == cases[i].valid, "case %zu", i);
}
END_TEST

static Suite *l2_suite(void)
{
    Suite *s = suite_create("sncp-l2");
    TCase *tc = tcase_create("codec");
    tcase_add_test(tc, test_codec_round_trip);
    tcase_add_test(tc, test_discovery_mac_valid);
    tcase_add_test(tc, test_codec_layout);
    tcase_add_test(tc, test_spec_examples);
    tcase_add_test(tc, test_codec_malformed);
    tcase_add_test(tc, test_codec_random_bytes);
    tcase_add_test(tc, test_discovery);
    tcase_add_test(tc, test_reply_unknown);
    tcase_add_test(tc, test_cookie_codec);
    tcase_add_test(tc, test_config);
    suite_add_tcase(s, tc);

    tc = tcase_create("conn");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_handshake);
    tcase_add_loop_test(tc, test_handshake_cookie, 0, 3);
    tcase_add_test(tc, test_cookie_forged);
    tcase_add_test(tc, test_lazy_buffers);
    tcase_add_loop_test(tc, test_handshake_loss, 0, 2);
    tcase_add_test(tc, test_open_timeout_and_refused);
    tcase_add_loop_test(tc, test_transfer_loss, 0, sizeof loss_rates / sizeof loss_rates[0]);
    tcase_add_test(tc, test_burst_loss);
    tcase_add_loop_test(tc, test_transfer_soak, 0, 36);
    tcase_add_test(tc, test_window);
    tcase_add_loop_test(tc, test_selective_ack, 0, 2);
    tcase_add_test(tc, test_send_buffer_full);
    tcase_add_test(tc, test_rto_adapts_and_backs_off);
    tcase_add_test(tc, test_keepalive_and_dead_peer);
    tcase_add_test(tc, test_close_abort_restart);
    tcase_add_test(tc, test_bad_frames_to_connection);
    tcase_add_test(tc, test_throughput);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(l2_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
