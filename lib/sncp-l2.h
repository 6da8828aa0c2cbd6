/* sncp-l2.h: the SNCP Layer-2 channel: a reliable, ordered byte stream over Ethernet frames.
 *
 * proto/L2-TRANSPORT.md is normative; this header mirrors its numbers.  The module does no
 * I/O: the owner decodes each received frame (sncp_l2_frame_decode), finds the connection it
 * belongs to (peer MAC + receiver connection id), and feeds it in with the current time; the
 * connection hands the frames it wants sent to the `output` callback (the frame without the
 * Ethernet header: the owner adds destination MAC, source MAC and EtherType) and the
 * in-order stream bytes to `data`.  Time is a parameter (milliseconds on any monotonic
 * clock); call sncp_l2_conn_tick() by the deadline it returns.  The connection carries the
 * TLS byte stream of one SNCP session exactly as TCP would.
 *
 * Callbacks run from within sncp_l2_conn_open/accept/input/send/tick/close/abort.  They may
 * call sncp_l2_conn_send/close/abort on the same connection, never destroy it: the owner
 * destroys a connection after its `closed` callback, from outside the callback.
 */
#ifndef SNCP_L2_H
#define SNCP_L2_H 1

#include <stddef.h>
#include <stdint.h>

#include "sncp-error.h"

#define SNCP_L2_VERSION 1
#define SNCP_L2_HEADER_LEN 24
#define SNCP_L2_DEFAULT_ETHERTYPE 0x88B5
/* Locally administered group address for discovery: 03:'S':'N':'C':'P':01. */
#define SNCP_L2_DISCOVERY_MAC_INIT                                                                 \
    {                                                                                              \
        0x03, 0x53, 0x4e, 0x43, 0x50, 0x01                                                         \
    }

/* Every limit and default of the L2 channel, in one place (L2-TRANSPORT.md §8). */
enum sncp_l2_limits {
    SNCP_L2_MIN_MTU = 576, /* Ethernet payload bytes (our header included) */
    SNCP_L2_MAX_MTU = 9000,
    SNCP_L2_DEFAULT_MTU = 1500,
    SNCP_L2_MAX_PAYLOAD = SNCP_L2_MAX_MTU - SNCP_L2_HEADER_LEN,
    SNCP_L2_MIN_PAYLOAD = SNCP_L2_MIN_MTU - SNCP_L2_HEADER_LEN,
    SNCP_L2_MAX_WINDOW = 256, /* frames in flight / buffered out of order */
    SNCP_L2_DEFAULT_WINDOW = 32,
    SNCP_L2_MIN_SEND_BUFFER = 16384, /* bytes queued by the owner, sent or not */
    SNCP_L2_MAX_SEND_BUFFER = 16 << 20,
    SNCP_L2_DEFAULT_SEND_BUFFER = 256 << 10,
    SNCP_L2_MIN_RTO_MS = 1,
    SNCP_L2_MAX_RTO_MS = 60000,
    SNCP_L2_DEFAULT_INITIAL_RTO_MS = 200,
    SNCP_L2_DEFAULT_MIN_RTO_MS = 50,
    SNCP_L2_DEFAULT_MAX_RTO_MS = 2000,
    SNCP_L2_DEFAULT_MAX_RETRANSMITS = 15, /* of one frame, before the connection fails */
    SNCP_L2_MAX_RETRANSMITS = 100,
    SNCP_L2_DEFAULT_ACK_DELAY_MS = 5,
    SNCP_L2_MAX_ACK_DELAY_MS = 100,
    SNCP_L2_DEFAULT_KEEPALIVE_MS = 1000, /* probe after this much silence */
    SNCP_L2_DEFAULT_DEAD_MS = 10000,     /* peer dead after this much silence */
    SNCP_L2_MIN_KEEPALIVE_MS = 10,
    SNCP_L2_MAX_KEEPALIVE_MS = 3600000,
    SNCP_L2_LOSS_THRESHOLD = 3,                    /* later frames selectively acked: loss */
    SNCP_L2_MAX_SACK_LEN = SNCP_L2_MAX_WINDOW / 8, /* selective ACK bitmap bytes */
    SNCP_L2_MAX_NAME_LEN = 64,                     /* node name in SOLICIT / ADVERTISE */
    SNCP_L2_OPEN_BODY_LEN = 4,                     /* u16 max payload, u16 reserved */
    SNCP_L2_DISC_BODY_LEN = 4, /* u16 max payload, u16 reserved, then the name */
    SNCP_L2_COOKIE_LEN = 16,   /* the acceptor's stateless open cookie (§6.2) */
    SNCP_L2_OPEN_COOKIE_BODY_LEN = SNCP_L2_OPEN_BODY_LEN + SNCP_L2_COOKIE_LEN,
    SNCP_L2_COOKIE_SECRET_LEN = 32,
    SNCP_L2_COOKIE_SECRET_MS = 60000, /* a cookie secret is replaced after this long; the
                                       * previous one stays valid as long again */
};

enum sncp_l2_frame_type {
    SNCP_L2_SOLICIT = 1,
    SNCP_L2_ADVERTISE = 2,
    SNCP_L2_OPEN = 3,
    SNCP_L2_OPEN_ACK = 4,
    SNCP_L2_DATA = 5,
    SNCP_L2_ACK = 6,
    SNCP_L2_CLOSE = 7,
    SNCP_L2_CLOSE_ACK = 8,
    SNCP_L2_COOKIE = 9, /* the acceptor's stateless answer to an OPEN without a valid cookie */
    SNCP_L2_TYPE_MAX = 9,
};

enum sncp_l2_flags {
    SNCP_L2_F_PROBE = 0x0001, /* DATA / ACK: answer with an ACK at once (keepalive) */
    SNCP_L2_F_RESET = 0x0002, /* CLOSE: abortive; the sender has no such connection */
    SNCP_L2_F_KNOWN = 0x0003, /* others are sent as 0 and ignored on receipt */
};

/* A decoded frame.  `payload` points into the buffer it was decoded from. */
struct sncp_l2_frame {
    uint8_t version;
    uint8_t type;    /* enum sncp_l2_frame_type */
    uint16_t flags;  /* enum sncp_l2_flags */
    uint32_t src_id; /* the sender's connection id (SOLICIT: its nonce) */
    uint32_t dst_id; /* the receiver's connection id, 0 when not yet known (ADVERTISE: nonce) */
    uint32_t seq;    /* DATA: this frame's number; OPEN/OPEN_ACK/CLOSE: the sender's next */
    uint32_t ack;    /* next sequence number the sender expects */
    uint16_t window; /* frames the sender accepts beyond `ack` */
    uint16_t len;    /* payload bytes (ACK: the selective ACK bitmap) */
    const uint8_t *payload;
};

/* Decodes one frame from buf[0..len) (the Ethernet payload; bytes after the declared
 * payload are Ethernet padding and ignored).  Returns 0, SNCP_E_UNSUPPORTED_VERSION, or
 * SNCP_E_MALFORMED (short, payload length beyond the buffer or the limit, unknown type,
 * payload or ids not allowed for the type).  *f is unspecified on failure. */
int sncp_l2_frame_decode(const uint8_t *buf, size_t len, struct sncp_l2_frame *f);

/* Encodes *f (version is always SNCP_L2_VERSION; f->len bytes from f->payload) into
 * buf[0..cap).  Returns the frame length, -ENOBUFS if cap is too small, or SNCP_E_TOO_BIG /
 * SNCP_E_INVALID_VALUE when the frame would not decode. */
int sncp_l2_frame_encode(const struct sncp_l2_frame *f, uint8_t *buf, size_t cap);

/* "DATA", "OPEN_ACK", ...; "UNKNOWN" otherwise. */
const char *sncp_l2_frame_type_name(unsigned type);

/* Discovery (L2-TRANSPORT.md §5).  SOLICIT goes to the discovery group MAC with a random
 * non-zero nonce; an nNVE answers with ADVERTISE from its unicast MAC, echoing the nonce.
 * `name` (NUL-terminated, may be NULL) is the sender's node name, informational, truncated
 * to SNCP_L2_MAX_NAME_LEN.  Build functions return the frame length or a negative error as
 * sncp_l2_frame_encode. */
int sncp_l2_solicit_build(uint32_t nonce, uint16_t max_payload, const char *name, uint8_t *buf,
                          size_t cap);
int sncp_l2_advertise_build(const struct sncp_l2_frame *solicit, uint16_t max_payload,
                            const char *name, uint8_t *buf, size_t cap);

struct sncp_l2_discovery {
    uint32_t nonce;
    uint16_t max_payload;
    char name[SNCP_L2_MAX_NAME_LEN + 1]; /* NUL-terminated, bytes as received */
};
/* Reads the body of a decoded SOLICIT or ADVERTISE.  Returns 0, or SNCP_E_MALFORMED for any
 * other frame type. */
int sncp_l2_discovery_parse(const struct sncp_l2_frame *f, struct sncp_l2_discovery *out);

/* The stateless answer to a frame that matches no connection (L2-TRANSPORT.md §7.3): a
 * CLOSE_ACK to a CLOSE, a CLOSE with RESET to OPEN (refused), OPEN_ACK, DATA and ACK, and
 * nothing to anything else.  Returns the length written to buf (0: send nothing), or
 * -ENOBUFS.  The owner should rate-limit these. */
int sncp_l2_reply_unknown(const struct sncp_l2_frame *in, uint8_t *buf, size_t cap);

/* Stateless open cookies (L2-TRANSPORT.md §6.2).  The acceptor answers an OPEN that carries
 * no valid cookie with a COOKIE frame and keeps nothing; the opener repeats its OPEN with
 * the cookie, and only then does the acceptor create the connection.  The cookie is the
 * first SNCP_L2_COOKIE_LEN bytes of HMAC-SHA256(secret, acceptor MAC, opener MAC, VLAN,
 * the OPEN's src_id, Sequence and max payload). */

/* Computes the cookie for `open` (a valid OPEN, cookie or not) that came from peer_mac to
 * local_mac on vlan.  Returns 0, or SNCP_E_INVALID_VALUE if `open` is not an OPEN. */
int sncp_l2_cookie_compute(const uint8_t secret[SNCP_L2_COOKIE_SECRET_LEN],
                           const uint8_t local_mac[6], const uint8_t peer_mac[6], uint16_t vlan,
                           const struct sncp_l2_frame *open, uint8_t cookie[SNCP_L2_COOKIE_LEN]);
/* The cookie an OPEN carries (its body bytes 4..19), or NULL when it carries none. */
const uint8_t *sncp_l2_open_cookie(const struct sncp_l2_frame *open);
/* Whether the cookie of `open` is valid under any of the n_secrets secrets (constant time
 * per secret).  Returns 1 or 0 (also for an OPEN without a cookie). */
int sncp_l2_cookie_check(const uint8_t (*secrets)[SNCP_L2_COOKIE_SECRET_LEN], unsigned n_secrets,
                         const uint8_t local_mac[6], const uint8_t peer_mac[6], uint16_t vlan,
                         const struct sncp_l2_frame *open);
/* Builds the COOKIE frame answering `open` (src_id 0, dst_id and Acknowledgement echo the
 * OPEN's src_id and Sequence).  Returns the frame length or a negative error as
 * sncp_l2_frame_encode. */
int sncp_l2_cookie_build(const struct sncp_l2_frame *open, const uint8_t cookie[SNCP_L2_COOKIE_LEN],
                         uint8_t *buf, size_t cap);

/* Whether mac may serve as the discovery group address (L2-TRANSPORT.md §5): a group
 * address outside the IEEE 802.1Q reserved 01:80:C2:00:00:00..2F, the IANA IPv4 and IPv6
 * multicast ranges 01:00:5E and 33:33, the PTP address 01:1B:19:00:00:00, the Token Ring
 * functional addresses 03:00:00, and broadcast.  Returns 1 or 0. */
int sncp_l2_discovery_mac_valid(const uint8_t mac[6]);

/* ---- connections ---- */

enum sncp_l2_state {
    SNCP_L2_STATE_IDLE = 0,  /* created, neither opened nor accepted */
    SNCP_L2_STATE_OPEN_SENT, /* OPEN sent, waiting for OPEN_ACK */
    SNCP_L2_STATE_ESTABLISHED,
    SNCP_L2_STATE_CLOSING,    /* close requested: our queued data still draining */
    SNCP_L2_STATE_CLOSE_SENT, /* CLOSE sent, waiting for CLOSE_ACK */
    SNCP_L2_STATE_CLOSED,     /* final; `closed` has run (or the connection never opened) */
};

struct sncp_l2_config {
    uint32_t local_id;        /* our connection id: random, non-zero, unique per interface */
    uint32_t initial_seq;     /* our first DATA sequence number (random is best) */
    uint16_t mtu;             /* Ethernet payload bytes: 0: 1500; SNCP_L2_MIN..MAX_MTU */
    uint16_t window;          /* frames: 0: 32; 1..SNCP_L2_MAX_WINDOW */
    uint32_t send_buffer;     /* bytes: 0: 256 KiB */
    uint32_t initial_rto_ms;  /* 0: 200 */
    uint32_t min_rto_ms;      /* 0: 50 */
    uint32_t max_rto_ms;      /* 0: 2000 */
    uint32_t max_retransmits; /* of one frame: 0: 15 */
    uint32_t ack_delay_ms;    /* 0: 5 */
    uint32_t keepalive_ms;    /* 0: 1000 */
    uint32_t dead_ms;         /* 0: 10000; at least 2 * keepalive_ms */
};

struct sncp_l2_cbs {
    /* A frame to send to the peer (without Ethernet header); valid only during the call. */
    void (*output)(void *ctx, const uint8_t *frame, size_t len);
    /* The handshake completed (opener: OPEN_ACK received; acceptor: OPEN accepted). */
    void (*established)(void *ctx);
    /* Stream bytes from the peer, in order, each exactly once. */
    void (*data)(void *ctx, const uint8_t *data, size_t len);
    /* Room in the send buffer again after sncp_l2_conn_send() accepted less than offered.
     * May be NULL. */
    void (*writable)(void *ctx);
    /* Runs exactly once for a connection that was opened or accepted: err 0 after an
     * orderly close (ours or the peer's), -ETIMEDOUT (OPEN unanswered, a frame
     * unacknowledged after max_retransmits, or the peer silent for dead_ms), -ECONNREFUSED
     * (OPEN answered by RESET), -ECONNRESET (RESET received), -ECONNABORTED (our abort). */
    void (*closed)(void *ctx, int err);
};

struct sncp_l2_stats {
    uint64_t frames_in, frames_out;
    uint64_t data_frames_in, data_frames_out; /* DATA frames, first transmissions only out */
    uint64_t bytes_in, bytes_out;             /* stream bytes delivered / accepted to send */
    uint64_t retransmits;      /* DATA, OPEN and CLOSE frames sent again (all causes) */
    uint64_t timeouts;         /* retransmission timer expiries */
    uint64_t fast_retransmits; /* after selective ACKs showed a loss */
    uint64_t duplicates;       /* DATA frames received that were already received */
    uint64_t out_of_order;     /* DATA frames buffered ahead of a gap */
    uint64_t out_of_window;    /* DATA frames beyond our window, dropped */
    uint64_t rejected;         /* frames not valid for this connection or state */
    uint64_t cookies_in;       /* COOKIE frames taken (opener) */
    uint64_t acks_out, probes_out;
    uint64_t rtt_samples;
    uint32_t srtt_ms, rttvar_ms, rto_ms; /* current; rto_ms includes backoff */
    uint32_t max_in_flight;              /* highest number of DATA frames in flight seen */
};

struct sncp_l2_conn;

/* Creates a connection in state IDLE.  The config is copied.  Returns 0 and *out,
 * -EINVAL for a configuration out of range (local_id 0, mtu, window, ...), or -ENOMEM.
 * Caller destroys. */
int sncp_l2_conn_create(const struct sncp_l2_config *cfg, const struct sncp_l2_cbs *cbs, void *ctx,
                        struct sncp_l2_conn **out);
/* Frees everything; no callback runs.  Accepts NULL. */
void sncp_l2_conn_destroy(struct sncp_l2_conn *c);

/* Active open: sends OPEN (retransmitted until OPEN_ACK).  Returns 0, or -EINVAL unless
 * the connection is IDLE. */
int sncp_l2_conn_open(struct sncp_l2_conn *c, uint64_t now);

/* Passive open from a received OPEN (the owner has checked its cookie): answers OPEN_ACK, becomes
 * ESTABLISHED and runs `established`.  Returns 0, -EINVAL unless IDLE, or SNCP_E_MALFORMED if
 * `open` is not a valid OPEN (nothing is sent then). */
int sncp_l2_conn_accept(struct sncp_l2_conn *c, const struct sncp_l2_frame *open, uint64_t now);

/* A decoded frame from this connection's peer.  An opener waiting for OPEN_ACK takes a
 * COOKIE answering its OPEN and repeats the OPEN with the cookie at once.  Returns 0 when the frame
 * was used or harmlessly ignored (duplicates, stale ACKs), SNCP_E_UNEXPECTED_MESSAGE when it does
 * not belong to this connection or state (counted in stats.rejected), SNCP_E_CLOSED when the
 * connection is closed.  Callbacks may run. */
int sncp_l2_conn_input(struct sncp_l2_conn *c, const struct sncp_l2_frame *f, uint64_t now);

/* Queues stream bytes for the peer; frames go out as the window allows.  Returns the number
 * of bytes accepted (0..len; less than len when the send buffer is full: wait for
 * `writable`), SNCP_E_NOT_ESTABLISHED before the handshake, or SNCP_E_CLOSED after a close
 * was requested. */
int64_t sncp_l2_conn_send(struct sncp_l2_conn *c, const uint8_t *data, size_t len, uint64_t now);

/* Orderly close: queued data is delivered first, then CLOSE / CLOSE_ACK; `closed` runs with
 * 0 when the peer confirmed.  Before the handshake completed it aborts instead.  Idempotent. */
void sncp_l2_conn_close(struct sncp_l2_conn *c, uint64_t now);
/* Abortive close: sends CLOSE with RESET (if the peer is known) and runs `closed` with
 * -ECONNABORTED.  No-op once closed. */
void sncp_l2_conn_abort(struct sncp_l2_conn *c, uint64_t now);

/* Runs timers: retransmission, delayed ACK, keepalive, dead peer.  Returns the next
 * absolute deadline, or UINT64_MAX if none (IDLE or CLOSED). */
uint64_t sncp_l2_conn_tick(struct sncp_l2_conn *c, uint64_t now);

enum sncp_l2_state sncp_l2_conn_state(const struct sncp_l2_conn *c);
const char *sncp_l2_state_name(enum sncp_l2_state state); /* "established", ... */
uint32_t sncp_l2_conn_local_id(const struct sncp_l2_conn *c);
uint32_t sncp_l2_conn_peer_id(const struct sncp_l2_conn *c); /* 0 until known */
/* Bytes sncp_l2_conn_send() would accept now; queued bytes not yet acknowledged. */
size_t sncp_l2_conn_send_space(const struct sncp_l2_conn *c);
size_t sncp_l2_conn_unacked_bytes(const struct sncp_l2_conn *c);
/* DATA frames sent and not yet acknowledged. */
unsigned sncp_l2_conn_in_flight(const struct sncp_l2_conn *c);
/* Largest DATA payload we send (our MTU and the peer's announced maximum). */
uint16_t sncp_l2_conn_max_payload(const struct sncp_l2_conn *c);
/* Bytes the connection holds in buffers now (send ring and reorder buffer are allocated
 * when first needed and released when idle), for tests and accounting. */
size_t sncp_l2_conn_buffer_bytes(const struct sncp_l2_conn *c);
/* The stats, with srtt/rttvar/rto current. */
const struct sncp_l2_stats *sncp_l2_conn_stats(const struct sncp_l2_conn *c);

#endif
