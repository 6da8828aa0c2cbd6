/* sncp-l2.c: the SNCP Layer-2 channel (proto/L2-TRANSPORT.md): frame codec, discovery
 * frames, and the per-peer connection state machine.
 *
 * A connection numbers its DATA frames, keeps every sent frame's bytes in a bounded ring
 * until the peer's cumulative ACK covers them, retransmits on an RFC 6298 timer (Karn's
 * rule, exponential backoff) and after duplicate / partial ACKs (RFC 6582 style), and
 * reassembles the peer's frames in a reorder buffer of `window` slots.  No I/O, no clock:
 * frames go out through a callback and time comes in as `now`.
 */
#include "sncp-l2.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

/* ---- bounds-checked cursors ---- */

struct l2_rd {
    const uint8_t *p;
    size_t left;
    int err;
};

static void rd_bytes(struct l2_rd *r, void *dst, size_t n)
{
    if (r->err || r->left < n) {
        r->err = 1;
        memset(dst, 0, n);
        return;
    }
    memcpy(dst, r->p, n);
    r->p += n;
    r->left -= n;
}

static uint8_t rd_u8(struct l2_rd *r)
{
    uint8_t v;
    rd_bytes(r, &v, 1);
    return v;
}

static uint16_t rd_u16(struct l2_rd *r)
{
    uint16_t v;
    rd_bytes(r, &v, 2);
    return ntohs(v);
}

static uint32_t rd_u32(struct l2_rd *r)
{
    uint32_t v;
    rd_bytes(r, &v, 4);
    return ntohl(v);
}

struct l2_wr {
    uint8_t *p;
    size_t left;
    int err;
};

static void wr_bytes(struct l2_wr *w, const void *src, size_t n)
{
    if (w->err || w->left < n) {
        w->err = 1;
        return;
    }
    if (n) {
        memcpy(w->p, src, n);
    }
    w->p += n;
    w->left -= n;
}

static void wr_u8(struct l2_wr *w, uint8_t v)
{
    wr_bytes(w, &v, 1);
}

static void wr_u16(struct l2_wr *w, uint16_t v)
{
    v = htons(v);
    wr_bytes(w, &v, 2);
}

static void wr_u32(struct l2_wr *w, uint32_t v)
{
    v = htonl(v);
    wr_bytes(w, &v, 4);
}

/* ---- frame codec ---- */

static const char *const type_names[SNCP_L2_TYPE_MAX + 1] = {
    [SNCP_L2_SOLICIT] = "SOLICIT",   [SNCP_L2_ADVERTISE] = "ADVERTISE", [SNCP_L2_OPEN] = "OPEN",
    [SNCP_L2_OPEN_ACK] = "OPEN_ACK", [SNCP_L2_DATA] = "DATA",           [SNCP_L2_ACK] = "ACK",
    [SNCP_L2_CLOSE] = "CLOSE",       [SNCP_L2_CLOSE_ACK] = "CLOSE_ACK", [SNCP_L2_COOKIE] = "COOKIE",
};

const char *sncp_l2_frame_type_name(unsigned type)
{
    if (type <= SNCP_L2_TYPE_MAX && type_names[type]) {
        return type_names[type];
    }
    return "UNKNOWN";
}

/* The u16 max-payload field at the start of OPEN/OPEN_ACK/SOLICIT/ADVERTISE bodies. */
static uint16_t body_max_payload(const struct sncp_l2_frame *f)
{
    uint16_t v;
    memcpy(&v, f->payload, 2);
    return ntohs(v);
}

/* The per-type rules of L2-TRANSPORT.md §4.2, shared by decoder and encoder so that an
 * encoded frame always decodes.  Returns 0 or SNCP_E_MALFORMED. */
static int frame_check(const struct sncp_l2_frame *f)
{
    if (f->len > SNCP_L2_MAX_PAYLOAD) {
        return SNCP_E_MALFORMED;
    }
    switch (f->type) {
    case SNCP_L2_SOLICIT:
        if (f->src_id == 0 || f->dst_id != 0) {
            return SNCP_E_MALFORMED;
        }
        goto disc_body;
    case SNCP_L2_ADVERTISE:
        if (f->src_id != 0 || f->dst_id == 0) {
            return SNCP_E_MALFORMED;
        }
    disc_body:
        if (f->len < SNCP_L2_DISC_BODY_LEN ||
            f->len > SNCP_L2_DISC_BODY_LEN + SNCP_L2_MAX_NAME_LEN) {
            return SNCP_E_MALFORMED;
        }
        goto max_payload;
    case SNCP_L2_OPEN:
        if (f->src_id == 0 || f->dst_id != 0) {
            return SNCP_E_MALFORMED;
        }
        goto open_body;
    case SNCP_L2_OPEN_ACK:
        if (f->src_id == 0 || f->dst_id == 0) {
            return SNCP_E_MALFORMED;
        }
    open_body:
        if (f->len < SNCP_L2_OPEN_BODY_LEN) {
            return SNCP_E_MALFORMED;
        }
    max_payload : {
        uint16_t mp = body_max_payload(f);
        if (mp < SNCP_L2_MIN_PAYLOAD || mp > SNCP_L2_MAX_PAYLOAD) {
            return SNCP_E_MALFORMED;
        }
        return 0;
    }
    case SNCP_L2_DATA:
        if (f->src_id == 0 || f->dst_id == 0 || f->len == 0) {
            return SNCP_E_MALFORMED;
        }
        return 0;
    case SNCP_L2_ACK:
        if (f->src_id == 0 || f->dst_id == 0 || f->len > SNCP_L2_MAX_SACK_LEN) {
            return SNCP_E_MALFORMED;
        }
        return 0;
    case SNCP_L2_CLOSE_ACK:
        if (f->src_id == 0 || f->dst_id == 0 || f->len != 0) {
            return SNCP_E_MALFORMED;
        }
        return 0;
    case SNCP_L2_CLOSE:
        if (f->dst_id == 0 || f->len != 0 || (f->src_id == 0 && !(f->flags & SNCP_L2_F_RESET))) {
            return SNCP_E_MALFORMED;
        }
        return 0;
    case SNCP_L2_COOKIE:
        if (f->src_id != 0 || f->dst_id == 0 || f->len != SNCP_L2_COOKIE_LEN) {
            return SNCP_E_MALFORMED;
        }
        return 0;
    default:
        return SNCP_E_MALFORMED;
    }
}

int sncp_l2_frame_decode(const uint8_t *buf, size_t len, struct sncp_l2_frame *f)
{
    struct l2_rd r = {.p = buf, .left = len};

    memset(f, 0, sizeof *f);
    if (len < SNCP_L2_HEADER_LEN) {
        return SNCP_E_MALFORMED;
    }
    f->version = rd_u8(&r);
    f->type = rd_u8(&r);
    f->flags = rd_u16(&r);
    f->src_id = rd_u32(&r);
    f->dst_id = rd_u32(&r);
    f->seq = rd_u32(&r);
    f->ack = rd_u32(&r);
    f->window = rd_u16(&r);
    f->len = rd_u16(&r);
    if (r.err) {
        return SNCP_E_MALFORMED;
    }
    if (f->version != SNCP_L2_VERSION) {
        return SNCP_E_UNSUPPORTED_VERSION;
    }
    /* Declared payload against what arrived; anything after it is Ethernet padding. */
    if (f->len > r.left) {
        return SNCP_E_MALFORMED;
    }
    f->payload = r.p;
    return frame_check(f);
}

int sncp_l2_frame_encode(const struct sncp_l2_frame *f, uint8_t *buf, size_t cap)
{
    if (f->len > SNCP_L2_MAX_PAYLOAD) {
        return SNCP_E_TOO_BIG;
    }
    if (f->len && !f->payload) {
        return SNCP_E_INVALID_VALUE;
    }
    if (frame_check(f) != 0) {
        return SNCP_E_INVALID_VALUE;
    }
    struct l2_wr w = {.p = buf, .left = cap};
    wr_u8(&w, SNCP_L2_VERSION);
    wr_u8(&w, f->type);
    wr_u16(&w, f->flags);
    wr_u32(&w, f->src_id);
    wr_u32(&w, f->dst_id);
    wr_u32(&w, f->seq);
    wr_u32(&w, f->ack);
    wr_u16(&w, f->window);
    wr_u16(&w, f->len);
    wr_bytes(&w, f->payload, f->len);
    if (w.err) {
        return -ENOBUFS;
    }
    return SNCP_L2_HEADER_LEN + f->len;
}

/* ---- discovery ---- */

static int disc_build(uint8_t type, uint32_t src, uint32_t dst, uint16_t max_payload,
                      const char *name, uint8_t *buf, size_t cap)
{
    uint8_t body[SNCP_L2_DISC_BODY_LEN + SNCP_L2_MAX_NAME_LEN];
    size_t nlen = name ? strnlen(name, SNCP_L2_MAX_NAME_LEN) : 0;
    struct l2_wr w = {.p = body, .left = sizeof body};

    wr_u16(&w, max_payload);
    wr_u16(&w, 0);
    wr_bytes(&w, name, nlen);
    struct sncp_l2_frame f = {
        .type = type,
        .src_id = src,
        .dst_id = dst,
        .len = (uint16_t)(SNCP_L2_DISC_BODY_LEN + nlen),
        .payload = body,
    };
    return sncp_l2_frame_encode(&f, buf, cap);
}

int sncp_l2_solicit_build(uint32_t nonce, uint16_t max_payload, const char *name, uint8_t *buf,
                          size_t cap)
{
    return disc_build(SNCP_L2_SOLICIT, nonce, 0, max_payload, name, buf, cap);
}

int sncp_l2_advertise_build(const struct sncp_l2_frame *solicit, uint16_t max_payload,
                            const char *name, uint8_t *buf, size_t cap)
{
    if (solicit->type != SNCP_L2_SOLICIT) {
        return SNCP_E_INVALID_VALUE;
    }
    return disc_build(SNCP_L2_ADVERTISE, 0, solicit->src_id, max_payload, name, buf, cap);
}

int sncp_l2_discovery_parse(const struct sncp_l2_frame *f, struct sncp_l2_discovery *out)
{
    memset(out, 0, sizeof *out);
    if ((f->type != SNCP_L2_SOLICIT && f->type != SNCP_L2_ADVERTISE) || frame_check(f) != 0) {
        return SNCP_E_MALFORMED;
    }
    struct l2_rd r = {.p = f->payload, .left = f->len};
    out->nonce = f->type == SNCP_L2_SOLICIT ? f->src_id : f->dst_id;
    out->max_payload = rd_u16(&r);
    (void)rd_u16(&r);
    size_t nlen = r.left;
    rd_bytes(&r, out->name, nlen);
    if (r.err) {
        return SNCP_E_MALFORMED;
    }
    /* The name is informational and ends up in logs: keep it printable. */
    for (size_t i = 0; i < nlen; i++) {
        if (out->name[i] < 0x20 || out->name[i] == 0x7f) {
            out->name[i] = '?';
        }
    }
    out->name[nlen] = '\0';
    return 0;
}

/* ---- stateless open cookies ---- */

int sncp_l2_cookie_compute(const uint8_t secret[SNCP_L2_COOKIE_SECRET_LEN],
                           const uint8_t local_mac[6], const uint8_t peer_mac[6], uint16_t vlan,
                           const struct sncp_l2_frame *open, uint8_t cookie[SNCP_L2_COOKIE_LEN])
{
    static const char label[] = "SNCP-L2-COOKIE";
    uint8_t in[sizeof label - 1 + 6 + 6 + 2 + 4 + 4 + 2];
    struct l2_wr w = {.p = in, .left = sizeof in};

    if (open->type != SNCP_L2_OPEN || open->len < SNCP_L2_OPEN_BODY_LEN || !open->payload) {
        return SNCP_E_INVALID_VALUE;
    }
    wr_bytes(&w, label, sizeof label - 1);
    wr_bytes(&w, local_mac, 6);
    wr_bytes(&w, peer_mac, 6);
    wr_u16(&w, vlan);
    wr_u32(&w, open->src_id);
    wr_u32(&w, open->seq);
    wr_u16(&w, body_max_payload(open));
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (w.err ||
        !HMAC(EVP_sha256(), secret, SNCP_L2_COOKIE_SECRET_LEN, in, sizeof in, md, &mdlen) ||
        mdlen < SNCP_L2_COOKIE_LEN) {
        return SNCP_E_INVALID_VALUE;
    }
    memcpy(cookie, md, SNCP_L2_COOKIE_LEN);
    return 0;
}

const uint8_t *sncp_l2_open_cookie(const struct sncp_l2_frame *open)
{
    if (open->type != SNCP_L2_OPEN || open->len < SNCP_L2_OPEN_COOKIE_BODY_LEN) {
        return NULL;
    }
    return open->payload + SNCP_L2_OPEN_BODY_LEN;
}

int sncp_l2_cookie_check(const uint8_t (*secrets)[SNCP_L2_COOKIE_SECRET_LEN], unsigned n_secrets,
                         const uint8_t local_mac[6], const uint8_t peer_mac[6], uint16_t vlan,
                         const struct sncp_l2_frame *open)
{
    const uint8_t *got = sncp_l2_open_cookie(open);
    if (!got) {
        return 0;
    }
    for (unsigned i = 0; i < n_secrets; i++) {
        uint8_t want[SNCP_L2_COOKIE_LEN];
        if (sncp_l2_cookie_compute(secrets[i], local_mac, peer_mac, vlan, open, want) == 0 &&
            CRYPTO_memcmp(want, got, SNCP_L2_COOKIE_LEN) == 0) {
            return 1;
        }
    }
    return 0;
}

int sncp_l2_cookie_build(const struct sncp_l2_frame *open, const uint8_t cookie[SNCP_L2_COOKIE_LEN],
                         uint8_t *buf, size_t cap)
{
    if (open->type != SNCP_L2_OPEN) {
        return SNCP_E_INVALID_VALUE;
    }
    struct sncp_l2_frame f = {
        .type = SNCP_L2_COOKIE,
        .dst_id = open->src_id,
        .ack = open->seq,
        .len = SNCP_L2_COOKIE_LEN,
        .payload = cookie,
    };
    return sncp_l2_frame_encode(&f, buf, cap);
}

int sncp_l2_discovery_mac_valid(const uint8_t mac[6])
{
    static const uint8_t bridge[5] = {0x01, 0x80, 0xc2, 0x00, 0x00};
    static const uint8_t ipv4[3] = {0x01, 0x00, 0x5e};
    static const uint8_t ptp[6] = {0x01, 0x1b, 0x19, 0x00, 0x00, 0x00};
    static const uint8_t token_ring[3] = {0x03, 0x00, 0x00};
    static const uint8_t broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    if (!(mac[0] & 1)) {
        return 0; /* not a group address */
    }
    if (!memcmp(mac, bridge, 5) && mac[5] <= 0x2f) {
        return 0;
    }
    if (!memcmp(mac, ipv4, 3) || (mac[0] == 0x33 && mac[1] == 0x33) || !memcmp(mac, ptp, 6) ||
        !memcmp(mac, token_ring, 3) || !memcmp(mac, broadcast, 6)) {
        return 0;
    }
    return 1;
}

int sncp_l2_reply_unknown(const struct sncp_l2_frame *in, uint8_t *buf, size_t cap)
{
    struct sncp_l2_frame f = {.src_id = in->dst_id, .dst_id = in->src_id};

    switch (in->type) {
    case SNCP_L2_CLOSE:
        if (in->flags & SNCP_L2_F_RESET) {
            return 0;
        }
        f.type = SNCP_L2_CLOSE_ACK;
        break;
    case SNCP_L2_OPEN:
    case SNCP_L2_OPEN_ACK:
    case SNCP_L2_DATA:
    case SNCP_L2_ACK:
        f.type = SNCP_L2_CLOSE;
        f.flags = SNCP_L2_F_RESET;
        break;
    default:
        return 0;
    }
    if (f.dst_id == 0) {
        return 0;
    }
    int n = sncp_l2_frame_encode(&f, buf, cap);
    return n == SNCP_E_INVALID_VALUE ? 0 : n;
}

/* ---- connections ---- */

#define TIME_NONE UINT64_MAX
#define MAX_BACKOFF_SHIFT 16

enum {
    SBUF_MIN = 4096,  /* the send ring starts this small and doubles up to send_buffer */
    SBUF_KEEP = 16384 /* a ring larger than this is released once drained */
};

struct l2_txslot {
    uint64_t off;     /* stream offset of the first byte */
    uint64_t sent_at; /* last transmission, ms */
    uint64_t order;   /* last transmission, in the order of all our DATA transmissions */
    uint32_t xmits;   /* transmissions so far */
    uint16_t len;
    uint8_t sacked; /* the peer holds it (selective ACK) */
};

struct l2_rxslot {
    uint16_t len;
    uint8_t present;
};

struct sncp_l2_conn {
    struct sncp_l2_config cfg; /* defaults resolved */
    struct sncp_l2_cbs cbs;
    void *ctx;
    enum sncp_l2_state state;
    int closed_reported;

    uint32_t peer_id;
    uint32_t peer_isn;
    uint16_t mru;      /* largest DATA payload we accept */
    uint16_t peer_mru; /* largest the peer accepts */
    uint16_t peer_window;

    /* Send side: the ring holds stream bytes from s_off (oldest unacknowledged) on.  It is
     * allocated on the first send, grows up to slimit, and is released when drained. */
    uint8_t *sbuf;
    size_t scap, slimit, shead, slen;
    uint64_t s_off, snd_off; /* snd_off: first byte not yet sent */
    uint32_t snd_una, snd_nxt;
    struct l2_txslot *tx; /* cfg.window slots; tx_head is snd_una's */
    unsigned tx_head;
    uint64_t rtx_deadline;
    unsigned backoff;
    uint32_t ctl_xmits; /* OPEN / OPEN_ACK / CLOSE transmissions */
    int confirmed;      /* acceptor: a frame after the OPEN showed our OPEN_ACK arrived */
    int have_cookie;    /* opener: the acceptor's cookie, repeated in our OPEN */
    uint8_t cookie[SNCP_L2_COOKIE_LEN];
    uint64_t ctl_sent_at;
    uint32_t srtt8, rttvar8, rto_base; /* srtt and rttvar in 1/8 ms */
    int have_rtt;
    uint64_t tx_order; /* DATA transmissions so far */
    uint64_t rto_mark; /* tx_order when the retransmission timer last expired */
    int want_writable;

    /* Receive side: a reorder buffer of cfg.window slots of mru bytes; rx_head is rcv_nxt's.
     * In-order frames are delivered straight from the received frame: rbuf exists only
     * while out-of-order frames are held (rx_held). */
    uint32_t rcv_nxt;
    uint8_t *rbuf;
    struct l2_rxslot *rx;
    unsigned rx_head, rx_held;
    unsigned rx_unacked;
    uint64_t ack_deadline;
    uint64_t last_rx;
    uint64_t probe_at;

    struct sncp_l2_stats stats;
};

static int seq_lt(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}

static uint64_t tmin(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static int resolve(const struct sncp_l2_config *in, struct sncp_l2_config *c)
{
    *c = *in;
    if (c->local_id == 0) {
        return -EINVAL;
    }
#define DEFAULT(field, value)                                                                      \
    if (c->field == 0) {                                                                           \
        c->field = (value);                                                                        \
    }
    DEFAULT(mtu, SNCP_L2_DEFAULT_MTU);
    DEFAULT(window, SNCP_L2_DEFAULT_WINDOW);
    DEFAULT(send_buffer, SNCP_L2_DEFAULT_SEND_BUFFER);
    DEFAULT(initial_rto_ms, SNCP_L2_DEFAULT_INITIAL_RTO_MS);
    DEFAULT(min_rto_ms, SNCP_L2_DEFAULT_MIN_RTO_MS);
    DEFAULT(max_rto_ms, SNCP_L2_DEFAULT_MAX_RTO_MS);
    DEFAULT(max_retransmits, SNCP_L2_DEFAULT_MAX_RETRANSMITS);
    DEFAULT(ack_delay_ms, SNCP_L2_DEFAULT_ACK_DELAY_MS);
    DEFAULT(keepalive_ms, SNCP_L2_DEFAULT_KEEPALIVE_MS);
    DEFAULT(dead_ms, SNCP_L2_DEFAULT_DEAD_MS);
#undef DEFAULT
    if (c->mtu < SNCP_L2_MIN_MTU || c->mtu > SNCP_L2_MAX_MTU || c->window > SNCP_L2_MAX_WINDOW ||
        c->send_buffer < SNCP_L2_MIN_SEND_BUFFER || c->send_buffer > SNCP_L2_MAX_SEND_BUFFER ||
        c->min_rto_ms < SNCP_L2_MIN_RTO_MS || c->max_rto_ms > SNCP_L2_MAX_RTO_MS ||
        c->min_rto_ms > c->max_rto_ms || c->initial_rto_ms < c->min_rto_ms ||
        c->initial_rto_ms > c->max_rto_ms || c->max_retransmits > SNCP_L2_MAX_RETRANSMITS ||
        c->ack_delay_ms > SNCP_L2_MAX_ACK_DELAY_MS || c->keepalive_ms < SNCP_L2_MIN_KEEPALIVE_MS ||
        c->keepalive_ms > SNCP_L2_MAX_KEEPALIVE_MS || c->dead_ms < 2 * (uint64_t)c->keepalive_ms) {
        return -EINVAL;
    }
    return 0;
}

int sncp_l2_conn_create(const struct sncp_l2_config *cfg, const struct sncp_l2_cbs *cbs, void *ctx,
                        struct sncp_l2_conn **out)
{
    *out = NULL;
    struct sncp_l2_config rc;
    int err = resolve(cfg, &rc);
    if (err) {
        return err;
    }
    struct sncp_l2_conn *c = calloc(1, sizeof *c);
    if (!c) {
        return -ENOMEM;
    }
    c->cfg = rc;
    c->cbs = *cbs;
    c->ctx = ctx;
    c->mru = (uint16_t)(rc.mtu - SNCP_L2_HEADER_LEN);
    c->slimit = rc.send_buffer;
    c->tx = calloc(rc.window, sizeof *c->tx);
    c->rx = calloc(rc.window, sizeof *c->rx);
    if (!c->tx || !c->rx) {
        sncp_l2_conn_destroy(c);
        return -ENOMEM;
    }
    c->state = SNCP_L2_STATE_IDLE;
    c->snd_una = c->snd_nxt = rc.initial_seq;
    c->rto_base = rc.initial_rto_ms;
    c->rtx_deadline = c->ack_deadline = c->probe_at = TIME_NONE;
    c->stats.rto_ms = rc.initial_rto_ms;
    *out = c;
    return 0;
}

void sncp_l2_conn_destroy(struct sncp_l2_conn *c)
{
    if (!c) {
        return;
    }
    free(c->sbuf);
    free(c->tx);
    free(c->rx);
    free(c->rbuf);
    free(c);
}

static uint32_t cur_rto(const struct sncp_l2_conn *c)
{
    uint64_t rto = (uint64_t)c->rto_base << c->backoff;
    return rto > c->cfg.max_rto_ms ? c->cfg.max_rto_ms : (uint32_t)rto;
}

static void update_rto_stats(struct sncp_l2_conn *c)
{
    c->stats.srtt_ms = c->srtt8 / 8;
    c->stats.rttvar_ms = c->rttvar8 / 8;
    c->stats.rto_ms = cur_rto(c);
}

/* RFC 6298 §2 with alpha 1/8, beta 1/4, G = 1 ms. */
static void rtt_sample(struct sncp_l2_conn *c, uint64_t rtt_ms)
{
    if (rtt_ms > SNCP_L2_MAX_RTO_MS) {
        rtt_ms = SNCP_L2_MAX_RTO_MS;
    }
    uint32_t r8 = (uint32_t)rtt_ms * 8;
    if (!c->have_rtt) {
        c->srtt8 = r8;
        c->rttvar8 = r8 / 2;
        c->have_rtt = 1;
    } else {
        uint32_t delta = c->srtt8 > r8 ? c->srtt8 - r8 : r8 - c->srtt8;
        c->rttvar8 = (3 * c->rttvar8 + delta) / 4;
        c->srtt8 = (7 * c->srtt8 + r8) / 8;
    }
    uint32_t var4 = 4 * c->rttvar8;
    uint32_t rto = (c->srtt8 + (var4 > 8 ? var4 : 8) + 7) / 8;
    if (rto < c->cfg.min_rto_ms) {
        rto = c->cfg.min_rto_ms;
    }
    if (rto > c->cfg.max_rto_ms) {
        rto = c->cfg.max_rto_ms;
    }
    c->rto_base = rto;
    c->backoff = 0; /* a valid sample ends the backoff (RFC 6298 §5.7) */
    c->stats.rtt_samples++;
    update_rto_stats(c);
}

/* Builds and outputs one frame.  Every frame but OPEN carries our cumulative ACK, which
 * settles any pending (delayed) ACK. */
static void emit(struct sncp_l2_conn *c, uint8_t type, uint16_t flags, uint32_t seq,
                 const uint8_t *payload, uint16_t len)
{
    struct sncp_l2_frame f = {
        .type = type,
        .flags = flags,
        .src_id = c->cfg.local_id,
        .dst_id = type == SNCP_L2_OPEN ? 0 : c->peer_id,
        .seq = seq,
        .ack = c->rcv_nxt,
        .window = c->cfg.window,
        .len = len,
        .payload = payload,
    };
    uint8_t frame[SNCP_L2_MAX_MTU];
    int n = sncp_l2_frame_encode(&f, frame, sizeof frame);
    if (n < 0) {
        return; /* cannot happen for frames built here; nothing to send */
    }
    if (type != SNCP_L2_OPEN) {
        c->rx_unacked = 0;
        c->ack_deadline = TIME_NONE;
    }
    c->stats.frames_out++;
    c->cbs.output(c->ctx, frame, (size_t)n);
}

/* OPEN (with the acceptor's cookie once we have it) or OPEN_ACK. */
static void emit_open(struct sncp_l2_conn *c, uint8_t type)
{
    uint8_t body[SNCP_L2_OPEN_COOKIE_BODY_LEN];
    struct l2_wr w = {.p = body, .left = sizeof body};
    wr_u16(&w, c->mru);
    wr_u16(&w, 0);
    if (type == SNCP_L2_OPEN && c->have_cookie) {
        wr_bytes(&w, c->cookie, sizeof c->cookie);
    }
    emit(c, type, 0, c->cfg.initial_seq, body, (uint16_t)(sizeof body - w.left));
}

static void emit_ack(struct sncp_l2_conn *c, uint16_t flags)
{
    c->stats.acks_out++;
    if (flags & SNCP_L2_F_PROBE) {
        c->stats.probes_out++;
    }
    /* Selective ACK: bit j (MSB first) set when frame rcv_nxt + 1 + j is held. */
    uint8_t sack[SNCP_L2_MAX_SACK_LEN] = {0};
    uint16_t len = 0;
    for (unsigned j = 0; j + 1 < c->cfg.window; j++) {
        if (c->rx[(c->rx_head + 1 + j) % c->cfg.window].present) {
            sack[j / 8] |= (uint8_t)(0x80u >> (j % 8));
            len = (uint16_t)(j / 8 + 1);
        }
    }
    emit(c, SNCP_L2_ACK, flags, c->snd_nxt, sack, len);
}

static void finish(struct sncp_l2_conn *c, int err)
{
    c->state = SNCP_L2_STATE_CLOSED;
    c->rtx_deadline = c->ack_deadline = c->probe_at = TIME_NONE;
    if (!c->closed_reported) {
        c->closed_reported = 1;
        c->cbs.closed(c->ctx, err);
    }
}

static struct l2_txslot *tx_slot(struct sncp_l2_conn *c, uint32_t seq)
{
    return &c->tx[(c->tx_head + (seq - c->snd_una)) % c->cfg.window];
}

static void ring_copy_out(const struct sncp_l2_conn *c, uint64_t off, uint8_t *dst, size_t len)
{
    size_t pos = (c->shead + (size_t)(off - c->s_off)) % c->scap;
    size_t first = c->scap - pos < len ? c->scap - pos : len;
    memcpy(dst, c->sbuf + pos, first);
    memcpy(dst + first, c->sbuf, len - first);
}

static void send_data_frame(struct sncp_l2_conn *c, uint32_t seq, uint64_t now)
{
    struct l2_txslot *s = tx_slot(c, seq);
    uint8_t payload[SNCP_L2_MAX_PAYLOAD];
    ring_copy_out(c, s->off, payload, s->len);
    s->xmits++;
    s->sent_at = now;
    s->order = ++c->tx_order;
    emit(c, SNCP_L2_DATA, 0, seq, payload, s->len);
}

static void retransmit(struct sncp_l2_conn *c, uint32_t seq, uint64_t now)
{
    c->stats.retransmits++;
    send_data_frame(c, seq, now);
}

static uint16_t max_payload(const struct sncp_l2_conn *c)
{
    return c->peer_mru && c->peer_mru < c->mru ? c->peer_mru : c->mru;
}

static void send_close(struct sncp_l2_conn *c, uint64_t now)
{
    c->ctl_xmits++;
    c->ctl_sent_at = now;
    emit(c, SNCP_L2_CLOSE, 0, c->snd_nxt, NULL, 0);
}

/* Sends what the window allows; then, when closing and everything is acknowledged, CLOSE. */
static void flush(struct sncp_l2_conn *c, uint64_t now)
{
    if (c->state != SNCP_L2_STATE_ESTABLISHED && c->state != SNCP_L2_STATE_CLOSING) {
        return;
    }
    unsigned limit = c->peer_window < c->cfg.window ? c->peer_window : c->cfg.window;
    uint16_t mp = max_payload(c);
    while (c->snd_off < c->s_off + c->slen && c->snd_nxt - c->snd_una < limit) {
        uint64_t unsent = c->s_off + c->slen - c->snd_off;
        struct l2_txslot *s = tx_slot(c, c->snd_nxt);
        s->off = c->snd_off;
        s->len = (uint16_t)(unsent < mp ? unsent : mp);
        s->xmits = 0;
        s->sacked = 0;
        uint32_t seq = c->snd_nxt++;
        c->snd_off += s->len;
        c->stats.data_frames_out++;
        if (c->rtx_deadline == TIME_NONE) {
            c->rtx_deadline = now + cur_rto(c);
        }
        uint32_t in_flight = c->snd_nxt - c->snd_una;
        if (in_flight > c->stats.max_in_flight) {
            c->stats.max_in_flight = in_flight;
        }
        send_data_frame(c, seq, now);
        if (c->state == SNCP_L2_STATE_CLOSED) {
            return;
        }
    }
    if (c->state == SNCP_L2_STATE_CLOSING && c->slen == 0) {
        c->state = SNCP_L2_STATE_CLOSE_SENT;
        c->ctl_xmits = 0;
        c->rtx_deadline = now + cur_rto(c);
        send_close(c, now);
    }
}

int sncp_l2_conn_open(struct sncp_l2_conn *c, uint64_t now)
{
    if (c->state != SNCP_L2_STATE_IDLE) {
        return -EINVAL;
    }
    c->state = SNCP_L2_STATE_OPEN_SENT;
    c->ctl_xmits = 1;
    c->ctl_sent_at = now;
    c->rtx_deadline = now + cur_rto(c);
    c->last_rx = now;
    emit_open(c, SNCP_L2_OPEN);
    return 0;
}

static void establish(struct sncp_l2_conn *c, const struct sncp_l2_frame *f, uint64_t now)
{
    c->peer_id = f->src_id;
    c->peer_isn = f->seq;
    c->rcv_nxt = f->seq;
    c->peer_mru = body_max_payload(f);
    c->peer_window = f->window ? f->window : 1;
    c->state = SNCP_L2_STATE_ESTABLISHED;
    c->last_rx = now;
    c->probe_at = now + c->cfg.keepalive_ms;
}

int sncp_l2_conn_accept(struct sncp_l2_conn *c, const struct sncp_l2_frame *open, uint64_t now)
{
    if (c->state != SNCP_L2_STATE_IDLE) {
        return -EINVAL;
    }
    if (open->type != SNCP_L2_OPEN || frame_check(open) != 0) {
        return SNCP_E_MALFORMED;
    }
    c->stats.frames_in++;
    establish(c, open, now);
    /* OPEN_ACK is repeated on the retransmission timer until the opener shows it got it. */
    c->ctl_xmits = 1;
    c->ctl_sent_at = now;
    c->rtx_deadline = now + cur_rto(c);
    emit_open(c, SNCP_L2_OPEN_ACK);
    c->cbs.established(c->ctx);
    return 0;
}

/* Marks the frames a selective ACK reports as held by the peer.  Returns the transmission
 * (highest `order`) of the newly marked frames that were sent only once, for an RTT
 * sample, or NULL. */
static const struct l2_txslot *apply_sack(struct sncp_l2_conn *c, const uint8_t *sack, uint16_t len)
{
    const struct l2_txslot *sample = NULL;
    uint32_t outstanding = c->snd_nxt - c->snd_una;
    for (uint32_t j = 0; j < (uint32_t)len * 8 && j + 1 < outstanding; j++) {
        if (!(sack[j / 8] & (0x80u >> (j % 8)))) {
            continue;
        }
        struct l2_txslot *s = tx_slot(c, c->snd_una + 1 + j);
        if (s->sacked) {
            continue;
        }
        s->sacked = 1;
        if (s->xmits == 1 && (!sample || s->order > sample->order)) {
            sample = s;
        }
    }
    return sample;
}

/* A frame is lost once SNCP_L2_LOSS_THRESHOLD frames transmitted after its own last
 * transmission are held by the peer (L2-TRANSPORT.md §6.3); lost frames go again now. */
static void retransmit_lost(struct sncp_l2_conn *c, uint64_t now)
{
    for (uint32_t seq = c->snd_una; seq != c->snd_nxt; seq++) {
        struct l2_txslot *x = tx_slot(c, seq);
        if (x->sacked) {
            continue;
        }
        unsigned later = 0;
        for (uint32_t t = seq + 1; t != c->snd_nxt && later < SNCP_L2_LOSS_THRESHOLD; t++) {
            const struct l2_txslot *y = tx_slot(c, t);
            later += y->sacked && y->order > x->order;
        }
        if (later < SNCP_L2_LOSS_THRESHOLD) {
            continue;
        }
        if (x->xmits > c->cfg.max_retransmits) {
            continue; /* the retransmission timer gives up on it */
        }
        c->stats.fast_retransmits++;
        retransmit(c, seq, now);
    }
}

/* The acknowledgement fields of DATA / ACK frames: the cumulative ACK and, in ACK frames,
 * the selective ACK bitmap. */
static void process_ack(struct sncp_l2_conn *c, const struct sncp_l2_frame *f, uint64_t now)
{
    uint32_t ack = f->ack;
    uint32_t newly = ack - c->snd_una;
    if (seq_lt(ack, c->snd_una) || newly > c->snd_nxt - c->snd_una) {
        if (!seq_lt(ack, c->snd_una)) {
            c->stats.rejected++; /* acknowledges what we never sent */
        }
        return;
    }
    int sampled = 0;
    if (newly > 0) {
        /* Karn: sample only when no acknowledged frame was ever sent twice (then the ACK
         * was not held back by a gap either: the gap's frame would be among them). */
        int clean = 1;
        for (uint32_t i = 0; i < newly && clean; i++) {
            const struct l2_txslot *s = tx_slot(c, c->snd_una + i);
            clean = s->xmits == 1 && !s->sacked;
        }
        struct l2_txslot *last = tx_slot(c, ack - 1);
        uint64_t end = last->off + last->len;
        if (clean) {
            rtt_sample(c, now - last->sent_at);
            sampled = 1;
        }
        size_t freed = (size_t)(end - c->s_off);
        c->shead = (c->shead + freed) % c->scap;
        c->slen -= freed;
        c->s_off = end;
        if (c->slen == 0 && c->scap > SBUF_KEEP) {
            /* A burst is over: give its memory back; the next send starts small again. */
            free(c->sbuf);
            c->sbuf = NULL;
            c->scap = c->shead = 0;
        }
        c->tx_head = (c->tx_head + newly) % c->cfg.window;
        c->snd_una = ack;
        c->rtx_deadline = c->snd_una == c->snd_nxt ? TIME_NONE : now + cur_rto(c);
        /* After a timeout, an acknowledgement that stops short of a frame last sent before
         * the timeout shows that frame lost too (a burst loss leaves no later frame for
         * the selective bitmap to report): it goes again at once, as after a partial ACK
         * of RFC 6582, instead of one frame per (backed-off) timer expiry. */
        struct l2_txslot *next = tx_slot(c, c->snd_una);
        if (c->snd_una != c->snd_nxt && !next->sacked && next->order <= c->rto_mark &&
            next->xmits <= c->cfg.max_retransmits) {
            retransmit(c, c->snd_una, now);
        }
    }
    if (f->type == SNCP_L2_ACK && f->len > 0 && c->snd_una != c->snd_nxt) {
        const struct l2_txslot *s = apply_sack(c, f->payload, f->len);
        if (s && !sampled) {
            rtt_sample(c, now - s->sent_at);
        }
        retransmit_lost(c, now);
    }
}

/* Delivers one in-order payload and advances rcv_nxt. */
static void deliver(struct sncp_l2_conn *c, const uint8_t *data, uint16_t len)
{
    c->rx_head = (c->rx_head + 1) % c->cfg.window;
    c->rcv_nxt++;
    c->rx_unacked++;
    c->stats.data_frames_in++;
    c->stats.bytes_in += len;
    c->cbs.data(c->ctx, data, len);
}

/* Stores one DATA frame (only when it is out of order) and delivers what became
 * contiguous. */
static void process_data(struct sncp_l2_conn *c, const struct sncp_l2_frame *f, uint64_t now)
{
    uint32_t d = f->seq - c->rcv_nxt;
    if ((int32_t)d < 0) {
        c->stats.duplicates++;
        emit_ack(c, 0);
        return;
    }
    if (d >= c->cfg.window) {
        c->stats.out_of_window++;
        emit_ack(c, 0);
        return;
    }
    unsigned idx = (c->rx_head + d) % c->cfg.window;
    if (c->rx[idx].present) {
        c->stats.duplicates++;
        emit_ack(c, 0);
        return;
    }
    if (d > 0) {
        if (!c->rbuf) {
            c->rbuf = malloc((size_t)c->cfg.window * c->mru);
            if (!c->rbuf) {
                return; /* as if lost: the peer retransmits it */
            }
        }
        memcpy(c->rbuf + (size_t)idx * c->mru, f->payload, f->len);
        c->rx[idx].len = f->len;
        c->rx[idx].present = 1;
        c->rx_held++;
        c->stats.out_of_order++;
        emit_ack(c, 0); /* a duplicate ACK tells the sender about the gap */
        return;
    }
    deliver(c, f->payload, f->len);
    while (c->state != SNCP_L2_STATE_CLOSED && c->rx[c->rx_head].present) {
        unsigned h = c->rx_head;
        c->rx[h].present = 0;
        c->rx_held--;
        /* The slot stays intact during the callback: nothing can refill it before the
         * reorder window moves on by a full turn. */
        deliver(c, c->rbuf + (size_t)h * c->mru, c->rx[h].len);
    }
    if (c->rx_held == 0 && c->rbuf) {
        free(c->rbuf); /* the gap is filled: no reorder buffer until the next one */
        c->rbuf = NULL;
    }
    if (c->state == SNCP_L2_STATE_CLOSED) {
        return;
    }
    if (c->rx_unacked >= 2) {
        emit_ack(c, 0);
    } else if (c->rx_unacked && c->ack_deadline == TIME_NONE) {
        c->ack_deadline = now + c->cfg.ack_delay_ms;
    }
}

static int reject(struct sncp_l2_conn *c)
{
    c->stats.rejected++;
    return SNCP_E_UNEXPECTED_MESSAGE;
}

static void maybe_writable(struct sncp_l2_conn *c)
{
    if (c->want_writable && c->slen < c->slimit && (c->state == SNCP_L2_STATE_ESTABLISHED)) {
        c->want_writable = 0;
        if (c->cbs.writable) {
            c->cbs.writable(c->ctx);
        }
    }
}

/* The acceptor answered our OPEN with a cookie: repeat the OPEN with it at once.  The
 * first cookie starts the OPEN's transmission count afresh (the exchange costs one round
 * trip, not a retransmission); later ones (a restarted acceptor, new secrets) count as
 * retransmissions, so a stream of forged COOKIEs cannot keep the open alive forever. */
static int take_cookie(struct sncp_l2_conn *c, const struct sncp_l2_frame *f, uint64_t now)
{
    if (c->state != SNCP_L2_STATE_OPEN_SENT || f->ack != c->cfg.initial_seq) {
        return reject(c);
    }
    c->stats.frames_in++;
    c->stats.cookies_in++;
    if (!c->have_cookie) {
        c->ctl_xmits = 0;
    } else if (c->ctl_xmits > c->cfg.max_retransmits) {
        return 0; /* the timer gives up */
    } else {
        c->stats.retransmits++;
    }
    c->have_cookie = 1;
    memcpy(c->cookie, f->payload, sizeof c->cookie);
    c->ctl_xmits++;
    c->ctl_sent_at = now;
    c->rtx_deadline = now + cur_rto(c);
    emit_open(c, SNCP_L2_OPEN);
    return 0;
}

int sncp_l2_conn_input(struct sncp_l2_conn *c, const struct sncp_l2_frame *f, uint64_t now)
{
    if (c->state == SNCP_L2_STATE_CLOSED || c->state == SNCP_L2_STATE_IDLE) {
        return SNCP_E_CLOSED;
    }
    if (frame_check(f) != 0) {
        return reject(c);
    }
    if (f->type == SNCP_L2_OPEN) {
        /* A retransmitted OPEN: our OPEN_ACK was lost. */
        if (f->src_id != c->peer_id || c->state == SNCP_L2_STATE_OPEN_SENT ||
            f->seq != c->peer_isn) {
            return reject(c);
        }
        c->stats.frames_in++;
        c->last_rx = now;
        c->probe_at = now + c->cfg.keepalive_ms;
        emit_open(c, SNCP_L2_OPEN_ACK);
        return 0;
    }
    if (f->dst_id != c->cfg.local_id || f->type == SNCP_L2_SOLICIT ||
        f->type == SNCP_L2_ADVERTISE) {
        return reject(c);
    }
    if (f->type == SNCP_L2_COOKIE) {
        return take_cookie(c, f, now);
    }
    if (c->state == SNCP_L2_STATE_OPEN_SENT) {
        if (f->type == SNCP_L2_CLOSE && (f->flags & SNCP_L2_F_RESET) && f->src_id == 0) {
            c->stats.frames_in++;
            finish(c, -ECONNREFUSED);
            return 0;
        }
        if (f->type != SNCP_L2_OPEN_ACK || f->ack != c->cfg.initial_seq) {
            return reject(c);
        }
        c->stats.frames_in++;
        if (c->ctl_xmits == 1) {
            rtt_sample(c, now - c->ctl_sent_at);
        }
        establish(c, f, now);
        c->confirmed = 1;
        c->rtx_deadline = TIME_NONE;
        c->cbs.established(c->ctx);
        if (c->state != SNCP_L2_STATE_CLOSED) {
            flush(c, now);
        }
        if (c->state == SNCP_L2_STATE_ESTABLISHED && c->snd_nxt == c->snd_una) {
            emit_ack(c, 0); /* confirms the OPEN_ACK when no DATA did */
        }
        return 0;
    }
    if (f->src_id != c->peer_id) {
        return reject(c);
    }
    c->stats.frames_in++;
    c->last_rx = now;
    c->probe_at = now + c->cfg.keepalive_ms;
    if (!c->confirmed) {
        c->confirmed = 1;
        if (c->snd_una == c->snd_nxt && c->state == SNCP_L2_STATE_ESTABLISHED) {
            c->rtx_deadline = TIME_NONE;
        }
    }

    switch (f->type) {
    case SNCP_L2_OPEN_ACK:
        emit_ack(c, 0); /* a repeat: our confirmation was lost */
        return 0;
    case SNCP_L2_CLOSE_ACK:
        if (c->state == SNCP_L2_STATE_CLOSE_SENT) {
            finish(c, 0);
        }
        return 0;
    case SNCP_L2_CLOSE:
        if (f->flags & SNCP_L2_F_RESET) {
            /* After our CLOSE everything we sent was acknowledged: a peer that has already
             * forgotten the connection (its CLOSE_ACK lost, a stray frame of ours reset)
             * leaves nothing undone. */
            finish(c, c->state == SNCP_L2_STATE_CLOSE_SENT ? 0 : -ECONNRESET);
            return 0;
        }
        if (f->seq != c->rcv_nxt) {
            emit_ack(c, 0); /* data still missing: the peer retransmits it, then CLOSE */
            return 0;
        }
        emit(c, SNCP_L2_CLOSE_ACK, 0, c->snd_nxt, NULL, 0);
        finish(c, 0);
        return 0;
    default:
        break;
    }
    c->peer_window = f->window ? f->window : 1;
    process_ack(c, f, now);
    if (f->type == SNCP_L2_DATA) {
        if (f->len > c->mru) {
            c->stats.rejected++;
        } else {
            process_data(c, f, now);
            if (c->state == SNCP_L2_STATE_CLOSED) {
                return 0;
            }
        }
    }
    if (f->flags & SNCP_L2_F_PROBE) {
        emit_ack(c, 0);
    }
    flush(c, now);
    if (c->state != SNCP_L2_STATE_CLOSED) {
        maybe_writable(c);
    }
    return 0;
}

/* Makes the send ring hold at least `need` bytes (need <= slimit): doubles it from
 * SBUF_MIN, keeping the queued bytes in order.  Returns 0 or -ENOMEM (the ring is kept). */
static int grow_sbuf(struct sncp_l2_conn *c, size_t need)
{
    size_t cap = c->scap ? c->scap : SBUF_MIN;
    while (cap < need) {
        cap *= 2;
    }
    if (cap > c->slimit) {
        cap = c->slimit;
    }
    uint8_t *nb = malloc(cap);
    if (!nb) {
        return -ENOMEM;
    }
    if (c->slen) {
        size_t first = c->scap - c->shead < c->slen ? c->scap - c->shead : c->slen;
        memcpy(nb, c->sbuf + c->shead, first);
        memcpy(nb + first, c->sbuf, c->slen - first);
    }
    free(c->sbuf);
    c->sbuf = nb;
    c->scap = cap;
    c->shead = 0;
    return 0;
}

int64_t sncp_l2_conn_send(struct sncp_l2_conn *c, const uint8_t *data, size_t len, uint64_t now)
{
    if (c->state == SNCP_L2_STATE_IDLE || c->state == SNCP_L2_STATE_OPEN_SENT) {
        return SNCP_E_NOT_ESTABLISHED;
    }
    if (c->state != SNCP_L2_STATE_ESTABLISHED) {
        return SNCP_E_CLOSED;
    }
    size_t n = c->slimit - c->slen;
    if (n > len) {
        n = len;
    }
    if (n < len) {
        c->want_writable = 1;
    }
    if (n == 0) {
        return 0;
    }
    if (c->slen + n > c->scap && grow_sbuf(c, c->slen + n) < 0) {
        n = c->scap - c->slen; /* take what fits; `writable` follows when acked */
        c->want_writable = 1;
        if (n == 0) {
            return 0;
        }
    }
    size_t pos = (c->shead + c->slen) % c->scap;
    size_t first = c->scap - pos < n ? c->scap - pos : n;
    if (first) {
        memcpy(c->sbuf + pos, data, first);
    }
    if (n > first) {
        memcpy(c->sbuf, data + first, n - first);
    }
    c->slen += n;
    c->stats.bytes_out += n;
    flush(c, now);
    return (int64_t)n;
}

void sncp_l2_conn_abort(struct sncp_l2_conn *c, uint64_t now)
{
    (void)now;
    if (c->state == SNCP_L2_STATE_CLOSED) {
        return;
    }
    if (c->state == SNCP_L2_STATE_IDLE) {
        c->state = SNCP_L2_STATE_CLOSED;
        return;
    }
    if (c->peer_id) {
        emit(c, SNCP_L2_CLOSE, SNCP_L2_F_RESET, c->snd_nxt, NULL, 0);
    }
    finish(c, -ECONNABORTED);
}

void sncp_l2_conn_close(struct sncp_l2_conn *c, uint64_t now)
{
    switch (c->state) {
    case SNCP_L2_STATE_IDLE:
    case SNCP_L2_STATE_OPEN_SENT:
        sncp_l2_conn_abort(c, now);
        return;
    case SNCP_L2_STATE_ESTABLISHED:
        c->state = SNCP_L2_STATE_CLOSING;
        c->want_writable = 0;
        flush(c, now);
        return;
    default:
        return;
    }
}

/* The retransmission timer expired. */
static void on_rto(struct sncp_l2_conn *c, uint64_t now)
{
    c->stats.timeouts++;
    c->rto_mark = c->tx_order;
    if (c->backoff < MAX_BACKOFF_SHIFT) {
        c->backoff++;
    }
    update_rto_stats(c);
    if (c->state == SNCP_L2_STATE_OPEN_SENT || c->state == SNCP_L2_STATE_CLOSE_SENT) {
        if (c->ctl_xmits > c->cfg.max_retransmits) {
            finish(c, -ETIMEDOUT);
            return;
        }
        c->stats.retransmits++;
        c->rtx_deadline = now + cur_rto(c);
        if (c->state == SNCP_L2_STATE_OPEN_SENT) {
            c->ctl_xmits++;
            c->ctl_sent_at = now;
            emit_open(c, SNCP_L2_OPEN);
        } else {
            send_close(c, now);
        }
        return;
    }
    if (!c->confirmed) {
        if (c->ctl_xmits > c->cfg.max_retransmits) {
            finish(c, -ETIMEDOUT);
            return;
        }
        c->ctl_xmits++;
        c->stats.retransmits++;
        c->rtx_deadline = now + cur_rto(c);
        emit_open(c, SNCP_L2_OPEN_ACK);
    }
    if (c->snd_una == c->snd_nxt) {
        if (c->confirmed) {
            c->rtx_deadline = TIME_NONE;
        }
        return;
    }
    if (tx_slot(c, c->snd_una)->xmits > c->cfg.max_retransmits) {
        finish(c, -ETIMEDOUT);
        return;
    }
    c->rtx_deadline = now + cur_rto(c);
    retransmit(c, c->snd_una, now);
}

uint64_t sncp_l2_conn_tick(struct sncp_l2_conn *c, uint64_t now)
{
    if (c->state == SNCP_L2_STATE_IDLE || c->state == SNCP_L2_STATE_CLOSED) {
        return TIME_NONE;
    }
    int connected = c->state != SNCP_L2_STATE_OPEN_SENT;
    if (connected && now >= c->last_rx + c->cfg.dead_ms) {
        finish(c, -ETIMEDOUT);
        return TIME_NONE;
    }
    if (c->rtx_deadline <= now) {
        on_rto(c, now);
        if (c->state == SNCP_L2_STATE_CLOSED) {
            return TIME_NONE;
        }
    }
    if (c->ack_deadline <= now) {
        emit_ack(c, 0);
    }
    if (connected && c->probe_at <= now) {
        c->probe_at = now + c->cfg.keepalive_ms;
        emit_ack(c, SNCP_L2_F_PROBE);
    }
    uint64_t next = tmin(c->rtx_deadline, c->ack_deadline);
    if (connected) {
        next = tmin(next, tmin(c->probe_at, c->last_rx + c->cfg.dead_ms));
    }
    return next;
}

enum sncp_l2_state sncp_l2_conn_state(const struct sncp_l2_conn *c)
{
    return c->state;
}

const char *sncp_l2_state_name(enum sncp_l2_state state)
{
    switch (state) {
    case SNCP_L2_STATE_IDLE:
        return "idle";
    case SNCP_L2_STATE_OPEN_SENT:
        return "open-sent";
    case SNCP_L2_STATE_ESTABLISHED:
        return "established";
    case SNCP_L2_STATE_CLOSING:
        return "closing";
    case SNCP_L2_STATE_CLOSE_SENT:
        return "close-sent";
    case SNCP_L2_STATE_CLOSED:
        return "closed";
    }
    return "unknown";
}

uint32_t sncp_l2_conn_local_id(const struct sncp_l2_conn *c)
{
    return c->cfg.local_id;
}

uint32_t sncp_l2_conn_peer_id(const struct sncp_l2_conn *c)
{
    return c->peer_id;
}

size_t sncp_l2_conn_send_space(const struct sncp_l2_conn *c)
{
    return c->state == SNCP_L2_STATE_ESTABLISHED ? c->slimit - c->slen : 0;
}

size_t sncp_l2_conn_unacked_bytes(const struct sncp_l2_conn *c)
{
    return c->slen;
}

unsigned sncp_l2_conn_in_flight(const struct sncp_l2_conn *c)
{
    return c->snd_nxt - c->snd_una;
}

uint16_t sncp_l2_conn_max_payload(const struct sncp_l2_conn *c)
{
    return max_payload(c);
}

size_t sncp_l2_conn_buffer_bytes(const struct sncp_l2_conn *c)
{
    return c->scap + (c->rbuf ? (size_t)c->cfg.window * c->mru : 0);
}

const struct sncp_l2_stats *sncp_l2_conn_stats(const struct sncp_l2_conn *c)
{
    return &c->stats;
}
