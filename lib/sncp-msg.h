/* sncp-msg.h: SNCP v1 messages: wire constants, limits, the decoded form, the codec.
 *
 * proto/PROTOCOL.md is normative; this header mirrors its numbers.  The codec does no I/O
 * and no allocation: a message decodes into a flat struct sncp_msg owned by the caller, and
 * encodes from one into a caller-supplied buffer.  Decoding goes through a bounds-checked
 * cursor and a TLV policy table (type, length bounds, repeatability, which messages may
 * carry it, which require it).
 */
#ifndef SNCP_MSG_H
#define SNCP_MSG_H 1

#include <stddef.h>
#include <stdint.h>

#include "sncp-error.h"

#define SNCP_VERSION 1
#define SNCP_HEADER_LEN 12
#define SNCP_TLV_HEADER_LEN 4
#define SNCP_DEFAULT_PORT 8394
#define SNCP_DEFAULT_ETHERTYPE 0x88B5

/* Every limit of the protocol and its implementation, in one place. */
enum sncp_limits {
    SNCP_MAX_MSG_LEN = 16384,      /* header + TLVs, bytes */
    SNCP_MAX_TLVS = 256,           /* TLVs in one message, including unknown ones */
    SNCP_MAX_NODE_ID_LEN = 255,    /* bytes of UTF-8 */
    SNCP_MAX_VN_NAME_LEN = 64,     /* bytes of UTF-8 */
    SNCP_MAX_REASON_LEN = 255,     /* bytes of UTF-8 */
    SNCP_MAX_PORT_LEN = 64,        /* bytes of UTF-8 */
    SNCP_MAX_ADDRS = 64,           /* ADDRESS TLVs in one message (and per TSI) */
    SNCP_MAX_TAGS = 4,             /* LOCAL_TAG / PREFERRED_TAG TLVs in one message */
    SNCP_MAX_UPLINK_MACS = 8,      /* UPLINK_MAC TLVs in one HELLO */
    SNCP_MAX_VN_ID = 0xFFFFFF,     /* 24-bit VN ID */
    SNCP_MIN_VID = 1,              /* 802.1Q VLAN IDs usable as local tags */
    SNCP_MAX_VID = 4094,
    SNCP_MIN_KEEPALIVE_MS = 100,
    SNCP_MAX_KEEPALIVE_MS = 3600000,
};

enum sncp_msg_type {
    SNCP_MSG_HELLO = 1,
    SNCP_MSG_KEEPALIVE = 2,
    SNCP_MSG_VN_CONNECT = 3,
    SNCP_MSG_VN_DISCONNECT = 4,
    SNCP_MSG_TSI_ASSOCIATE = 5,
    SNCP_MSG_TSI_ACTIVATE = 6,
    SNCP_MSG_TSI_DEACTIVATE = 7,
    SNCP_MSG_TSI_DEASSOCIATE = 8,
    SNCP_MSG_TSI_UPDATE = 9,
    SNCP_MSG_SYNC_BEGIN = 10,
    SNCP_MSG_SYNC_END = 11,
    SNCP_MSG_RESPONSE = 12,
    SNCP_MSG_TYPE_MAX = 12,
};

/* Header flags. */
enum sncp_msg_flags {
    SNCP_F_MIGRATION = 0x0001,        /* caused by a live migration (Req-13) */
    SNCP_F_MIGRATION_SOURCE = 0x0002, /* with MIGRATION: sender is the source; else destination */
    SNCP_F_IMPLICIT_CONNECT = 0x0004, /* ASSOCIATE: connect the VN if needed; RESPONSE: it was */
    SNCP_F_KNOWN = 0x0007,            /* others are sent as 0 and ignored on receipt */
};

/* TLV types.  Bit 15 of the type on the wire is the critical bit. */
#define SNCP_TLV_CRITICAL 0x8000u
enum sncp_tlv_type {
    SNCP_TLV_VERSION_RANGE = 1,  /* u8 min, u8 max */
    SNCP_TLV_CAPABILITIES = 2,   /* u32 bit set, enum sncp_capability */
    SNCP_TLV_NODE_ID = 3,        /* UTF-8, 1..SNCP_MAX_NODE_ID_LEN */
    SNCP_TLV_SESSION_EPOCH = 4,  /* u64 */
    SNCP_TLV_KEEPALIVE = 5,      /* u32 milliseconds */
    SNCP_TLV_UPLINK_MAC = 6,     /* 6 bytes, repeatable */
    SNCP_TLV_VN_ID = 7,          /* u32, <= SNCP_MAX_VN_ID */
    SNCP_TLV_VN_NAME = 8,        /* UTF-8, 1..SNCP_MAX_VN_NAME_LEN */
    SNCP_TLV_TSI_ID = 9,         /* 16-byte UUID + 6-byte MAC */
    SNCP_TLV_ADDRESS = 10,       /* u8 type + body, repeatable */
    SNCP_TLV_LOCAL_TAG = 11,     /* u16 VID, u8 PCP (0xFF none), u8 reserved; repeatable */
    SNCP_TLV_PREFERRED_TAG = 12, /* as LOCAL_TAG; repeatable */
    SNCP_TLV_STATUS = 13,        /* u16 enum sncp_status */
    SNCP_TLV_REASON = 14,        /* UTF-8, 0..SNCP_MAX_REASON_LEN */
    SNCP_TLV_ERROR_TLV = 15,     /* u16: the TLV type a failure is about */
    SNCP_TLV_UPDATE_OP = 16,     /* u8 enum sncp_update_op */
    SNCP_TLV_PORT = 17,          /* UTF-8, 1..SNCP_MAX_PORT_LEN: the nNVE port name */
    SNCP_TLV_REQUEST_TYPE = 18,  /* u8: in RESPONSE, the type of the request answered */
    SNCP_TLV_TSI_STATE = 19,     /* u8 enum sncp_tsi_state */
    SNCP_TLV_HOLD_TIME = 20,     /* u32 milliseconds */
    SNCP_TLV_RETRY_AFTER = 21,   /* u32 milliseconds */
    SNCP_TLV_TYPE_MAX = 21,
};
#define SNCP_TLV_BIT(t) (UINT32_C(1) << (t))

enum sncp_capability {
    SNCP_CAP_MIGRATION = 0x1,  /* understands the migration flags */
    SNCP_CAP_SYNC = 0x2,       /* SYNC_BEGIN / SYNC_END */
    SNCP_CAP_MULTI_TAG = 0x4,  /* more than one tag per VN */
    SNCP_CAP_ADDR_UPDATE = 0x8,/* TSI_UPDATE */
};
/* What splitnve implements and advertises on both sides (0xB): MULTI_TAG is not
 * implemented in version 1 (PROTOCOL.md §8.2). */
#define SNCP_CAPS_IMPLEMENTED (SNCP_CAP_MIGRATION | SNCP_CAP_SYNC | SNCP_CAP_ADDR_UPDATE)

enum sncp_update_op {
    SNCP_UPDATE_ADD = 1,
    SNCP_UPDATE_REMOVE = 2,
    SNCP_UPDATE_REPLACE = 3,
};

enum sncp_tsi_state {
    SNCP_TSI_INIT = 0,
    SNCP_TSI_ASSOCIATED = 1,
    SNCP_TSI_ACTIVATED = 2,
};

enum sncp_addr_type {
    SNCP_ADDR_MAC = 1,       /* 6 bytes */
    SNCP_ADDR_IPV4 = 2,      /* 4 bytes */
    SNCP_ADDR_IPV6 = 3,      /* 16 bytes */
    SNCP_ADDR_IPV4_MAC = 4,  /* 4 + 6 bytes */
    SNCP_ADDR_IPV6_MAC = 5,  /* 16 + 6 bytes */
};

struct sncp_addr {
    uint8_t type;    /* enum sncp_addr_type */
    uint8_t mac[6];  /* for MAC, IPV4_MAC, IPV6_MAC */
    uint8_t ip[16];  /* IPv4 in ip[0..3] */
};

#define SNCP_PCP_NONE 0xFF
struct sncp_tag {
    uint16_t vid;    /* SNCP_MIN_VID..SNCP_MAX_VID */
    uint8_t pcp;     /* 0..7 or SNCP_PCP_NONE */
};

/* A TSI is the domain's UUID plus the vNIC's MAC (PROTOCOL.md §4.3). */
struct sncp_tsi_id {
    uint8_t uuid[16];
    uint8_t mac[6];
};

/* The decoded form of any message.  `tlvs` has SNCP_TLV_BIT(t) set for each single-valued
 * TLV present; repeatable ones are present when their count is non-zero (the encoder emits
 * them from the counts, and the decoder sets their bit too).  Strings are NUL-terminated. */
struct sncp_msg {
    uint8_t version;           /* header version; the encoder always writes SNCP_VERSION */
    uint8_t type;              /* enum sncp_msg_type */
    uint16_t flags;            /* enum sncp_msg_flags */
    uint32_t xid;              /* transaction id; a RESPONSE echoes its request's */
    uint32_t tlvs;

    uint8_t version_min, version_max;
    uint32_t capabilities;
    char node_id[SNCP_MAX_NODE_ID_LEN + 1];
    uint64_t session_epoch;
    uint32_t keepalive_ms;
    uint32_t hold_time_ms;
    uint8_t uplink_macs[SNCP_MAX_UPLINK_MACS][6];
    uint8_t n_uplink_macs;

    uint32_t vn_id;
    char vn_name[SNCP_MAX_VN_NAME_LEN + 1];
    struct sncp_tsi_id tsi;
    struct sncp_addr addrs[SNCP_MAX_ADDRS];
    uint8_t n_addrs;
    struct sncp_tag tags[SNCP_MAX_TAGS];
    uint8_t n_tags;
    struct sncp_tag preferred_tags[SNCP_MAX_TAGS];
    uint8_t n_preferred_tags;
    uint8_t update_op;
    char port[SNCP_MAX_PORT_LEN + 1];

    uint16_t status;
    char reason[SNCP_MAX_REASON_LEN + 1];
    uint16_t error_tlv;
    uint8_t request_type;
    uint8_t tsi_state;
    uint32_t retry_after_ms;
};

/* Zeroes *msg and sets version, type and xid. */
void sncp_msg_init(struct sncp_msg *msg, enum sncp_msg_type type, uint32_t xid);

/* Marks single-valued TLV `t` present. */
static inline void sncp_msg_set(struct sncp_msg *msg, enum sncp_tlv_type t)
{
    msg->tlvs |= SNCP_TLV_BIT(t);
}
static inline int sncp_msg_has(const struct sncp_msg *msg, enum sncp_tlv_type t)
{
    return (msg->tlvs & SNCP_TLV_BIT(t)) != 0;
}

/* Encodes `msg` into buf[0..cap).  Returns the encoded length, or -ENOBUFS when cap is too
 * small, SNCP_E_TOO_BIG past SNCP_MAX_MSG_LEN, SNCP_E_INVALID_VALUE / SNCP_E_MISSING_TLV when
 * msg breaks the policy the decoder enforces (so an encoded message always decodes). */
int sncp_msg_encode(const struct sncp_msg *msg, uint8_t *buf, size_t cap);

/* Parses only the 12-byte header.  Returns 0 and fills *total_len (the message's declared
 * total length) or SNCP_E_MALFORMED (short input, length < header or > SNCP_MAX_MSG_LEN),
 * SNCP_E_UNSUPPORTED_VERSION.  Used by framers. */
int sncp_msg_peek_header(const uint8_t *buf, size_t len, uint32_t *total_len);

/* Decodes exactly one message occupying buf[0..len).  Returns 0, or a negative SNCP_E_*:
 * MALFORMED, UNSUPPORTED_VERSION, CRITICAL_TLV, MISSING_TLV, INVALID_VALUE.  On failure
 * msg->type, msg->flags and msg->xid are valid whenever the header was (so the caller can
 * answer with the right xid) and *bad_tlv (if non-NULL) holds the TLV type at fault, or 0. */
int sncp_msg_decode(const uint8_t *buf, size_t len, struct sncp_msg *msg, uint16_t *bad_tlv);

/* Canonical one-line text form, as used in proto/vectors/ ("TSI_ACTIVATE xid=7 flags=... ").
 * Writes at most cap bytes including the NUL; returns the length it wanted (snprintf rules). */
int sncp_msg_format(const struct sncp_msg *msg, char *buf, size_t cap);

/* Names: "TSI_ACTIVATE", "VN_ID", ...; unknown values give "UNKNOWN". */
const char *sncp_msg_type_name(unsigned type);
const char *sncp_tlv_name(unsigned type);
const char *sncp_tsi_state_name(unsigned state); /* "init", "associated", "activated" */

/* 1 if s[0..n) is strict UTF-8 (RFC 3629: no overlong forms, no surrogates) without NUL,
 * else 0: the rule for every UTF-8 TLV, also used for certificate identities. */
int sncp_utf8_valid(const void *s, size_t n);

/* Text forms of identifiers, shared by logs, ctl tools and configs.
 * TSI: "<uuid>/<mac>", e.g. "4d5e...-.../52:54:00:12:34:56".  Address: "52:54:00:00:00:01",
 * "192.0.2.1", "2001:db8::1", "192.0.2.1@52:54:00:00:00:01".  Format functions return the
 * snprintf length; parse functions return 0 or SNCP_E_INVALID_VALUE. */
int sncp_tsi_id_format(const struct sncp_tsi_id *id, char *buf, size_t cap);
int sncp_tsi_id_parse(const char *s, struct sncp_tsi_id *id);
int sncp_addr_format(const struct sncp_addr *a, char *buf, size_t cap);
int sncp_addr_parse(const char *s, struct sncp_addr *a);
int sncp_mac_format(const uint8_t mac[6], char *buf, size_t cap);
int sncp_mac_parse(const char *s, uint8_t mac[6]);
int sncp_uuid_format(const uint8_t uuid[16], char *buf, size_t cap);
int sncp_uuid_parse(const char *s, uint8_t uuid[16]);

/* Whether a MAC / an address can be a tenant system's own (PROTOCOL.md §4.5): every MAC in
 * it unicast and non-zero; its IP neither unspecified (0.0.0.0/8, ::), loopback
 * (127.0.0.0/8, ::1), multicast (224.0.0.0/4, ff00::/8: link-local multicast included) nor
 * the IPv4 limited broadcast 255.255.255.255; an IPv4-mapped IPv6 address (::ffff:0:0/96) is
 * judged as its IPv4 address.  The codec accepts all of these (they are well-formed): this
 * is the policy the nNVE applies and the tNVE follows.  Return 0, or SNCP_E_INVALID_VALUE
 * with *why set to a static text. */
int sncp_mac_check(const uint8_t mac[6], const char **why);
int sncp_addr_check(const struct sncp_addr *a, const char **why);

/* Size of buffers big enough for the text forms above. */
enum { SNCP_TSI_ID_STRLEN = 56, SNCP_ADDR_STRLEN = 72, SNCP_MAC_STRLEN = 18 };

#endif
