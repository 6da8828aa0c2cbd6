/* sncp-msg.c: the SNCP v1 codec (proto/PROTOCOL.md §3, §4, §6, §7.2).
 *
 * Decoding reads the peer's bytes only through a bounds-checked cursor and validates every
 * TLV against one policy table (length bounds, how many may appear, which messages may carry
 * it) and every message against a table of mandatory TLVs.  The encoder enforces the same
 * tables, so whatever it produces decodes back to an equal struct.  No allocation, no I/O;
 * both directions are linear in the message size (duplicates are caught with the presence
 * bitmask, never by searching).
 *
 * The decoder follows the order of PROTOCOL.md §7.2 and stops at the first error: header,
 * type and xid (a request with xid 0 is MALFORMED), each TLV in wire order, then the
 * mandatory TLVs.
 *
 * Decisions the tables encode:
 * - a known TLV that the message type may not carry is skipped when non-critical and
 *   rejected (SNCP_E_CRITICAL_TLV) when critical, exactly like an unknown TLV;
 * - a single-valued TLV seen twice, or a repeatable one seen more often than its limit, is
 *   SNCP_E_MALFORMED (the message is not well formed, whatever our resources);
 * - a length outside the TLV's bounds is SNCP_E_MALFORMED, a well-sized value that is out of
 *   range is SNCP_E_INVALID_VALUE;
 * - the encoder writes every TLV without the critical bit, in ascending type order, and
 *   sends unknown flag bits as 0; the decoder drops unknown flag bits.
 */
#include "sncp-msg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* ---- cursors ------------------------------------------------------------------------ */

/* Read cursor over peer bytes: every pull checks what is left and fails without moving. */
struct cursor {
    const uint8_t *p;
    size_t left;
};

static bool try_pull_bytes(struct cursor *c, void *dst, size_t n)
{
    if (c->left < n) {
        return false;
    }
    memcpy(dst, c->p, n);
    c->p += n;
    c->left -= n;
    return true;
}

static bool try_pull_u8(struct cursor *c, uint8_t *v)
{
    return try_pull_bytes(c, v, 1);
}

static bool try_pull_u16(struct cursor *c, uint16_t *v)
{
    uint16_t n;
    if (!try_pull_bytes(c, &n, sizeof n)) {
        return false;
    }
    *v = ntohs(n);
    return true;
}

static bool try_pull_u32(struct cursor *c, uint32_t *v)
{
    uint32_t n;
    if (!try_pull_bytes(c, &n, sizeof n)) {
        return false;
    }
    *v = ntohl(n);
    return true;
}

static bool try_pull_u64(struct cursor *c, uint64_t *v)
{
    uint32_t hi, lo;
    if (!try_pull_u32(c, &hi) || !try_pull_u32(c, &lo)) {
        return false;
    }
    *v = (uint64_t)hi << 32 | lo;
    return true;
}

/* Splits the next n bytes off into their own cursor. */
static bool try_pull_sub(struct cursor *c, size_t n, struct cursor *sub)
{
    if (c->left < n) {
        return false;
    }
    sub->p = c->p;
    sub->left = n;
    c->p += n;
    c->left -= n;
    return true;
}

/* Write cursor over a caller buffer: every put checks the space left. */
struct wcursor {
    uint8_t *p;
    size_t len;
    size_t cap;
    bool overflow;
};

static void put_bytes(struct wcursor *w, const void *src, size_t n)
{
    if (w->overflow || w->cap - w->len < n) {
        w->overflow = true;
        return;
    }
    if (n) {
        memcpy(w->p + w->len, src, n);
    }
    w->len += n;
}

static void put_u8(struct wcursor *w, uint8_t v)
{
    put_bytes(w, &v, 1);
}

static void put_u16(struct wcursor *w, uint16_t v)
{
    uint16_t n = htons(v);
    put_bytes(w, &n, sizeof n);
}

static void put_u32(struct wcursor *w, uint32_t v)
{
    uint32_t n = htonl(v);
    put_bytes(w, &n, sizeof n);
}

static void put_u64(struct wcursor *w, uint64_t v)
{
    put_u32(w, (uint32_t)(v >> 32));
    put_u32(w, (uint32_t)v);
}

/* ---- policy tables ------------------------------------------------------------------ */

#define MSG_BIT(m) (1u << (m))
#define M_HELLO MSG_BIT(SNCP_MSG_HELLO)
#define M_VN_CONNECT MSG_BIT(SNCP_MSG_VN_CONNECT)
#define M_VN_DISCONNECT MSG_BIT(SNCP_MSG_VN_DISCONNECT)
#define M_ASSOCIATE MSG_BIT(SNCP_MSG_TSI_ASSOCIATE)
#define M_ACTIVATE MSG_BIT(SNCP_MSG_TSI_ACTIVATE)
#define M_DEACTIVATE MSG_BIT(SNCP_MSG_TSI_DEACTIVATE)
#define M_DEASSOCIATE MSG_BIT(SNCP_MSG_TSI_DEASSOCIATE)
#define M_UPDATE MSG_BIT(SNCP_MSG_TSI_UPDATE)
#define M_RESPONSE MSG_BIT(SNCP_MSG_RESPONSE)
#define M_VN_REQ (M_VN_CONNECT | M_VN_DISCONNECT | M_ASSOCIATE | M_ACTIVATE)
#define M_TSI_REQ (M_ASSOCIATE | M_ACTIVATE | M_DEACTIVATE | M_DEASSOCIATE | M_UPDATE)

struct tlv_policy {
    uint16_t min_len;
    uint16_t max_len;
    uint8_t max_count; /* 1: single-valued; more: repeatable up to this many */
    uint16_t msgs;     /* MSG_BIT()s of the message types that may carry it */
};

static const struct tlv_policy tlv_policies[SNCP_TLV_TYPE_MAX + 1] = {
    [SNCP_TLV_VERSION_RANGE] = {2, 2, 1, M_HELLO | M_RESPONSE},
    [SNCP_TLV_CAPABILITIES] = {4, 4, 1, M_HELLO | M_RESPONSE},
    [SNCP_TLV_NODE_ID] = {1, SNCP_MAX_NODE_ID_LEN, 1, M_HELLO | M_RESPONSE},
    [SNCP_TLV_SESSION_EPOCH] = {8, 8, 1, M_HELLO},
    [SNCP_TLV_KEEPALIVE] = {4, 4, 1, M_HELLO | M_RESPONSE},
    [SNCP_TLV_UPLINK_MAC] = {6, 6, SNCP_MAX_UPLINK_MACS, M_HELLO},
    [SNCP_TLV_VN_ID] = {4, 4, 1, M_VN_REQ | M_RESPONSE},
    [SNCP_TLV_VN_NAME] = {1, SNCP_MAX_VN_NAME_LEN, 1, M_VN_REQ | M_RESPONSE},
    [SNCP_TLV_TSI_ID] = {22, 22, 1, M_TSI_REQ | M_RESPONSE},
    [SNCP_TLV_ADDRESS] = {5, 23, SNCP_MAX_ADDRS,
                          M_ASSOCIATE | M_ACTIVATE | M_DEACTIVATE | M_UPDATE},
    [SNCP_TLV_LOCAL_TAG] = {4, 4, SNCP_MAX_TAGS, M_RESPONSE},
    [SNCP_TLV_PREFERRED_TAG] = {4, 4, SNCP_MAX_TAGS, M_VN_CONNECT | M_ASSOCIATE | M_ACTIVATE},
    [SNCP_TLV_STATUS] = {2, 2, 1, M_RESPONSE},
    [SNCP_TLV_REASON] = {0, SNCP_MAX_REASON_LEN, 1, M_RESPONSE},
    [SNCP_TLV_ERROR_TLV] = {2, 2, 1, M_RESPONSE},
    [SNCP_TLV_UPDATE_OP] = {1, 1, 1, M_UPDATE},
    [SNCP_TLV_PORT] = {1, SNCP_MAX_PORT_LEN, 1, M_RESPONSE},
    [SNCP_TLV_REQUEST_TYPE] = {1, 1, 1, M_RESPONSE},
    [SNCP_TLV_TSI_STATE] = {1, 1, 1, M_RESPONSE},
    [SNCP_TLV_HOLD_TIME] = {4, 4, 1, M_RESPONSE},
    [SNCP_TLV_RETRY_AFTER] = {4, 4, 1, M_RESPONSE},
};

#define T(t) SNCP_TLV_BIT(SNCP_TLV_##t)
#define REPEATABLE_TLVS (T(UPLINK_MAC) | T(ADDRESS) | T(LOCAL_TAG) | T(PREFERRED_TAG))

struct msg_policy {
    uint32_t mandatory; /* SNCP_TLV_BIT()s that must be present */
    bool need_vn;       /* VN_ID and/or VN_NAME must be present */
};

static const struct msg_policy msg_policies[SNCP_MSG_TYPE_MAX + 1] = {
    [SNCP_MSG_HELLO] = {T(VERSION_RANGE) | T(NODE_ID) | T(SESSION_EPOCH), false},
    [SNCP_MSG_KEEPALIVE] = {0, false},
    [SNCP_MSG_VN_CONNECT] = {0, true},
    [SNCP_MSG_VN_DISCONNECT] = {0, true},
    [SNCP_MSG_TSI_ASSOCIATE] = {T(TSI_ID), true},
    [SNCP_MSG_TSI_ACTIVATE] = {T(TSI_ID), true},
    [SNCP_MSG_TSI_DEACTIVATE] = {T(TSI_ID), false},
    [SNCP_MSG_TSI_DEASSOCIATE] = {T(TSI_ID), false},
    [SNCP_MSG_TSI_UPDATE] = {T(TSI_ID) | T(UPDATE_OP), false},
    [SNCP_MSG_SYNC_BEGIN] = {0, false},
    [SNCP_MSG_SYNC_END] = {0, false},
    [SNCP_MSG_RESPONSE] = {T(STATUS), false},
};

static bool tlv_allowed(unsigned type, unsigned msg_type)
{
    return type >= 1 && type <= SNCP_TLV_TYPE_MAX && (tlv_policies[type].msgs & MSG_BIT(msg_type));
}

/* The mandatory TLVs msg lacks, as a bit set; VN_ID's bit stands for "VN_ID and/or VN_NAME". */
static uint32_t missing_tlvs(const struct msg_policy *mp, uint32_t present)
{
    uint32_t missing = mp->mandatory & ~present;
    if (mp->need_vn && !(present & (T(VN_ID) | T(VN_NAME)))) {
        missing |= T(VN_ID);
    }
    return missing;
}

/* Requests carry a non-zero xid; KEEPALIVE and RESPONSE may use 0. */
static bool is_request(unsigned msg_type)
{
    return msg_type != SNCP_MSG_KEEPALIVE && msg_type != SNCP_MSG_RESPONSE;
}

static unsigned lowest_bit(uint32_t x)
{
    return (unsigned)__builtin_ctz(x);
}

/* ---- value checks shared by decoder and encoder -------------------------------------- */

/* Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, <= U+10FFFF), no NUL. */
static bool utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c == 0) {
            return false;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t more;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            more = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            more = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            more = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i - 1 < more) {
            return false;
        }
        for (size_t k = 1; k <= more; k++) {
            uint8_t cc = s[i + k];
            if ((cc & 0xC0) != 0x80) {
                return false;
            }
            cp = cp << 6 | (cc & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        i += more + 1;
    }
    return true;
}

int sncp_utf8_valid(const void *s, size_t n)
{
    return utf8_valid(s, n);
}

static bool tag_valid(const struct sncp_tag *t)
{
    return t->vid >= SNCP_MIN_VID && t->vid <= SNCP_MAX_VID &&
           (t->pcp <= 7 || t->pcp == SNCP_PCP_NONE);
}

/* Body length of an address type (after the type byte), 0 for unknown types. */
static size_t addr_body_len(uint8_t type)
{
    switch (type) {
    case SNCP_ADDR_MAC:
        return 6;
    case SNCP_ADDR_IPV4:
        return 4;
    case SNCP_ADDR_IPV6:
        return 16;
    case SNCP_ADDR_IPV4_MAC:
        return 10;
    case SNCP_ADDR_IPV6_MAC:
        return 22;
    default:
        return 0;
    }
}

static size_t addr_ip_len(uint8_t type)
{
    switch (type) {
    case SNCP_ADDR_IPV4:
    case SNCP_ADDR_IPV4_MAC:
        return 4;
    case SNCP_ADDR_IPV6:
    case SNCP_ADDR_IPV6_MAC:
        return 16;
    default:
        return 0;
    }
}

static bool addr_has_mac(uint8_t type)
{
    return type == SNCP_ADDR_MAC || type == SNCP_ADDR_IPV4_MAC || type == SNCP_ADDR_IPV6_MAC;
}

/* ---- decoding ----------------------------------------------------------------------- */

void sncp_msg_init(struct sncp_msg *msg, enum sncp_msg_type type, uint32_t xid)
{
    memset(msg, 0, sizeof *msg);
    msg->version = SNCP_VERSION;
    msg->type = (uint8_t)type;
    msg->xid = xid;
}

int sncp_msg_peek_header(const uint8_t *buf, size_t len, uint32_t *total_len)
{
    struct cursor c = {buf, len};
    uint8_t version, type;
    uint16_t flags;
    uint32_t total;

    if (len < SNCP_HEADER_LEN || !try_pull_u8(&c, &version) || !try_pull_u8(&c, &type) ||
        !try_pull_u16(&c, &flags) || !try_pull_u32(&c, &total)) {
        return SNCP_E_MALFORMED;
    }
    if (version != SNCP_VERSION) {
        return SNCP_E_UNSUPPORTED_VERSION;
    }
    if (total < SNCP_HEADER_LEN || total > SNCP_MAX_MSG_LEN) {
        return SNCP_E_MALFORMED;
    }
    *total_len = total;
    return 0;
}

/* Copies a string TLV value into dst (cap bytes incl. NUL) after validating it. */
static int decode_string(struct cursor *v, char *dst, size_t cap)
{
    size_t n = v->left;
    if (n >= cap || !try_pull_bytes(v, dst, n)) {
        return SNCP_E_MALFORMED;
    }
    dst[n] = '\0';
    return utf8_valid((const uint8_t *)dst, n) ? 0 : SNCP_E_INVALID_VALUE;
}

static int decode_tag(struct cursor *v, struct sncp_tag *tag)
{
    uint8_t reserved;
    if (!try_pull_u16(v, &tag->vid) || !try_pull_u8(v, &tag->pcp) || !try_pull_u8(v, &reserved)) {
        return SNCP_E_MALFORMED;
    }
    return tag_valid(tag) ? 0 : SNCP_E_INVALID_VALUE;
}

static int decode_addr(struct cursor *v, struct sncp_addr *a)
{
    if (!try_pull_u8(v, &a->type)) {
        return SNCP_E_MALFORMED;
    }
    size_t body = addr_body_len(a->type);
    if (body == 0) {
        return SNCP_E_INVALID_VALUE;
    }
    if (v->left != body) {
        return SNCP_E_MALFORMED;
    }
    if (!try_pull_bytes(v, a->ip, addr_ip_len(a->type))) {
        return SNCP_E_MALFORMED;
    }
    if (addr_has_mac(a->type) && !try_pull_bytes(v, a->mac, 6)) {
        return SNCP_E_MALFORMED;
    }
    return 0;
}

/* Decodes the value of known, allowed TLV t (its length already within the policy bounds). */
static int decode_value(struct sncp_msg *m, unsigned t, struct cursor *v)
{
    uint8_t u8;
    uint32_t u32;

    switch (t) {
    case SNCP_TLV_VERSION_RANGE:
        if (!try_pull_u8(v, &m->version_min) || !try_pull_u8(v, &m->version_max)) {
            return SNCP_E_MALFORMED;
        }
        return m->version_min >= 1 && m->version_min <= m->version_max ? 0 : SNCP_E_INVALID_VALUE;
    case SNCP_TLV_CAPABILITIES:
        return try_pull_u32(v, &m->capabilities) ? 0 : SNCP_E_MALFORMED;
    case SNCP_TLV_NODE_ID:
        return decode_string(v, m->node_id, sizeof m->node_id);
    case SNCP_TLV_SESSION_EPOCH:
        return try_pull_u64(v, &m->session_epoch) ? 0 : SNCP_E_MALFORMED;
    case SNCP_TLV_KEEPALIVE:
        if (!try_pull_u32(v, &m->keepalive_ms)) {
            return SNCP_E_MALFORMED;
        }
        return m->keepalive_ms >= SNCP_MIN_KEEPALIVE_MS && m->keepalive_ms <= SNCP_MAX_KEEPALIVE_MS
                   ? 0
                   : SNCP_E_INVALID_VALUE;
    case SNCP_TLV_UPLINK_MAC:
        if (m->n_uplink_macs >= SNCP_MAX_UPLINK_MACS) {
            return SNCP_E_MALFORMED;
        }
        if (!try_pull_bytes(v, m->uplink_macs[m->n_uplink_macs], 6)) {
            return SNCP_E_MALFORMED;
        }
        m->n_uplink_macs++;
        return 0;
    case SNCP_TLV_VN_ID:
        if (!try_pull_u32(v, &m->vn_id)) {
            return SNCP_E_MALFORMED;
        }
        return m->vn_id <= SNCP_MAX_VN_ID ? 0 : SNCP_E_INVALID_VALUE;
    case SNCP_TLV_VN_NAME:
        return decode_string(v, m->vn_name, sizeof m->vn_name);
    case SNCP_TLV_TSI_ID:
        if (!try_pull_bytes(v, m->tsi.uuid, 16) || !try_pull_bytes(v, m->tsi.mac, 6)) {
            return SNCP_E_MALFORMED;
        }
        return 0;
    case SNCP_TLV_ADDRESS: {
        if (m->n_addrs >= SNCP_MAX_ADDRS) {
            return SNCP_E_MALFORMED;
        }
        int err = decode_addr(v, &m->addrs[m->n_addrs]);
        if (err) {
            memset(&m->addrs[m->n_addrs], 0, sizeof m->addrs[0]);
            return err;
        }
        m->n_addrs++;
        return 0;
    }
    case SNCP_TLV_LOCAL_TAG: {
        if (m->n_tags >= SNCP_MAX_TAGS) {
            return SNCP_E_MALFORMED;
        }
        int err = decode_tag(v, &m->tags[m->n_tags]);
        if (err) {
            return err;
        }
        m->n_tags++;
        return 0;
    }
    case SNCP_TLV_PREFERRED_TAG: {
        if (m->n_preferred_tags >= SNCP_MAX_TAGS) {
            return SNCP_E_MALFORMED;
        }
        int err = decode_tag(v, &m->preferred_tags[m->n_preferred_tags]);
        if (err) {
            return err;
        }
        m->n_preferred_tags++;
        return 0;
    }
    case SNCP_TLV_STATUS:
        return try_pull_u16(v, &m->status) ? 0 : SNCP_E_MALFORMED;
    case SNCP_TLV_REASON:
        return decode_string(v, m->reason, sizeof m->reason);
    case SNCP_TLV_ERROR_TLV:
        return try_pull_u16(v, &m->error_tlv) ? 0 : SNCP_E_MALFORMED;
    case SNCP_TLV_UPDATE_OP:
        if (!try_pull_u8(v, &m->update_op)) {
            return SNCP_E_MALFORMED;
        }
        return m->update_op >= SNCP_UPDATE_ADD && m->update_op <= SNCP_UPDATE_REPLACE
                   ? 0
                   : SNCP_E_INVALID_VALUE;
    case SNCP_TLV_PORT:
        return decode_string(v, m->port, sizeof m->port);
    case SNCP_TLV_REQUEST_TYPE:
        return try_pull_u8(v, &m->request_type) ? 0 : SNCP_E_MALFORMED;
    case SNCP_TLV_TSI_STATE:
        if (!try_pull_u8(v, &u8)) {
            return SNCP_E_MALFORMED;
        }
        m->tsi_state = u8;
        return u8 <= SNCP_TSI_ACTIVATED ? 0 : SNCP_E_INVALID_VALUE;
    case SNCP_TLV_HOLD_TIME:
        return try_pull_u32(v, &m->hold_time_ms) ? 0 : SNCP_E_MALFORMED;
    case SNCP_TLV_RETRY_AFTER:
        if (!try_pull_u32(v, &u32)) {
            return SNCP_E_MALFORMED;
        }
        m->retry_after_ms = u32;
        return 0;
    default:
        return SNCP_E_INTERNAL;
    }
}

int sncp_msg_decode(const uint8_t *buf, size_t len, struct sncp_msg *msg, uint16_t *bad_tlv)
{
    struct cursor c = {buf, len};
    uint16_t bad = 0;
    uint16_t flags;
    uint32_t total;
    int err = SNCP_E_MALFORMED;

    memset(msg, 0, sizeof *msg);
    if (!try_pull_u8(&c, &msg->version) || !try_pull_u8(&c, &msg->type) ||
        !try_pull_u16(&c, &flags) || !try_pull_u32(&c, &total) || !try_pull_u32(&c, &msg->xid)) {
        goto fail;
    }
    msg->flags = flags & SNCP_F_KNOWN;
    if (msg->version != SNCP_VERSION) {
        err = SNCP_E_UNSUPPORTED_VERSION;
        goto fail;
    }
    if (total != len || total > SNCP_MAX_MSG_LEN || msg->type == 0 ||
        msg->type > SNCP_MSG_TYPE_MAX || (msg->xid == 0 && is_request(msg->type))) {
        goto fail;
    }

    unsigned n_tlvs = 0;
    while (c.left > 0) {
        uint16_t wire_type, tlv_len;
        struct cursor v;

        err = SNCP_E_MALFORMED;
        if (!try_pull_u16(&c, &wire_type) || !try_pull_u16(&c, &tlv_len)) {
            goto fail;
        }
        unsigned t = wire_type & ~SNCP_TLV_CRITICAL;
        if (!try_pull_sub(&c, tlv_len, &v)) {
            bad = (uint16_t)t;
            goto fail;
        }
        if (++n_tlvs > SNCP_MAX_TLVS) {
            goto fail;
        }
        if (!tlv_allowed(t, msg->type)) {
            if (wire_type & SNCP_TLV_CRITICAL) {
                bad = (uint16_t)t;
                err = SNCP_E_CRITICAL_TLV;
                goto fail;
            }
            continue;
        }
        const struct tlv_policy *tp = &tlv_policies[t];
        if (tlv_len < tp->min_len || tlv_len > tp->max_len ||
            (tp->max_count == 1 && (msg->tlvs & SNCP_TLV_BIT(t)))) {
            bad = (uint16_t)t;
            goto fail;
        }
        err = decode_value(msg, t, &v);
        if (err) {
            bad = (uint16_t)t;
            goto fail;
        }
        msg->tlvs |= SNCP_TLV_BIT(t);
    }

    uint32_t missing = missing_tlvs(&msg_policies[msg->type], msg->tlvs);
    if (missing) {
        bad = (uint16_t)lowest_bit(missing);
        err = SNCP_E_MISSING_TLV;
        goto fail;
    }
    if (bad_tlv) {
        *bad_tlv = 0;
    }
    return 0;

fail:
    if (bad_tlv) {
        *bad_tlv = bad;
    }
    return err;
}

/* ---- encoding ----------------------------------------------------------------------- */

static int check_string(const char *s, size_t cap, size_t min_len, size_t *len)
{
    size_t n = strnlen(s, cap);
    if (n == cap || n < min_len || !utf8_valid((const uint8_t *)s, n)) {
        return SNCP_E_INVALID_VALUE;
    }
    *len = n;
    return 0;
}

/* Validates msg against the policy tables and returns its encoded size (or an error). */
static int encoded_size(const struct sncp_msg *m, size_t *size)
{
    if (m->type == 0 || m->type > SNCP_MSG_TYPE_MAX || (m->xid == 0 && is_request(m->type))) {
        return SNCP_E_INVALID_VALUE;
    }
    uint32_t present = m->tlvs & ~REPEATABLE_TLVS;
    present |= m->n_uplink_macs ? T(UPLINK_MAC) : 0;
    present |= m->n_addrs ? T(ADDRESS) : 0;
    present |= m->n_tags ? T(LOCAL_TAG) : 0;
    present |= m->n_preferred_tags ? T(PREFERRED_TAG) : 0;

    if (missing_tlvs(&msg_policies[m->type], present)) {
        return SNCP_E_MISSING_TLV;
    }
    size_t total = SNCP_HEADER_LEN;
    size_t n;
    for (unsigned t = 0; t < 32; t++) {
        if (!(present & SNCP_TLV_BIT(t))) {
            continue;
        }
        if (!tlv_allowed(t, m->type)) {
            return SNCP_E_INVALID_VALUE;
        }
        const struct tlv_policy *tp = &tlv_policies[t];
        size_t count = 1, len = tp->min_len;
        switch (t) {
        case SNCP_TLV_VERSION_RANGE:
            if (m->version_min < 1 || m->version_min > m->version_max) {
                return SNCP_E_INVALID_VALUE;
            }
            break;
        case SNCP_TLV_NODE_ID:
        case SNCP_TLV_VN_NAME:
        case SNCP_TLV_REASON:
        case SNCP_TLV_PORT: {
            const char *s = t == SNCP_TLV_NODE_ID   ? m->node_id
                            : t == SNCP_TLV_VN_NAME ? m->vn_name
                            : t == SNCP_TLV_REASON  ? m->reason
                                                    : m->port;
            size_t cap = t == SNCP_TLV_NODE_ID   ? sizeof m->node_id
                         : t == SNCP_TLV_VN_NAME ? sizeof m->vn_name
                         : t == SNCP_TLV_REASON  ? sizeof m->reason
                                                 : sizeof m->port;
            int err = check_string(s, cap, tp->min_len, &len);
            if (err) {
                return err;
            }
            break;
        }
        case SNCP_TLV_KEEPALIVE:
            if (m->keepalive_ms < SNCP_MIN_KEEPALIVE_MS ||
                m->keepalive_ms > SNCP_MAX_KEEPALIVE_MS) {
                return SNCP_E_INVALID_VALUE;
            }
            break;
        case SNCP_TLV_UPLINK_MAC:
            count = m->n_uplink_macs;
            break;
        case SNCP_TLV_VN_ID:
            if (m->vn_id > SNCP_MAX_VN_ID) {
                return SNCP_E_INVALID_VALUE;
            }
            break;
        case SNCP_TLV_ADDRESS:
            count = m->n_addrs;
            len = 0;
            for (size_t i = 0; i < count && count <= tp->max_count; i++) {
                n = addr_body_len(m->addrs[i].type);
                if (n == 0) {
                    return SNCP_E_INVALID_VALUE;
                }
                total += SNCP_TLV_HEADER_LEN + 1 + n;
            }
            break;
        case SNCP_TLV_LOCAL_TAG:
        case SNCP_TLV_PREFERRED_TAG: {
            const struct sncp_tag *tags = t == SNCP_TLV_LOCAL_TAG ? m->tags : m->preferred_tags;
            count = t == SNCP_TLV_LOCAL_TAG ? m->n_tags : m->n_preferred_tags;
            for (size_t i = 0; i < count && count <= tp->max_count; i++) {
                if (!tag_valid(&tags[i])) {
                    return SNCP_E_INVALID_VALUE;
                }
            }
            break;
        }
        case SNCP_TLV_UPDATE_OP:
            if (m->update_op < SNCP_UPDATE_ADD || m->update_op > SNCP_UPDATE_REPLACE) {
                return SNCP_E_INVALID_VALUE;
            }
            break;
        case SNCP_TLV_TSI_STATE:
            if (m->tsi_state > SNCP_TSI_ACTIVATED) {
                return SNCP_E_INVALID_VALUE;
            }
            break;
        default:
            break;
        }
        if (count > tp->max_count) {
            return SNCP_E_INVALID_VALUE;
        }
        if (t != SNCP_TLV_ADDRESS) {
            total += count * (SNCP_TLV_HEADER_LEN + len);
        }
    }
    if (total > SNCP_MAX_MSG_LEN) {
        return SNCP_E_TOO_BIG;
    }
    *size = total;
    return 0;
}

static void put_tlv_header(struct wcursor *w, unsigned t, size_t len)
{
    put_u16(w, (uint16_t)t);
    put_u16(w, (uint16_t)len);
}

static void put_string(struct wcursor *w, unsigned t, const char *s)
{
    size_t n = strlen(s); /* bounded: validated by encoded_size() */
    put_tlv_header(w, t, n);
    put_bytes(w, s, n);
}

static void put_tag(struct wcursor *w, unsigned t, const struct sncp_tag *tag)
{
    put_tlv_header(w, t, 4);
    put_u16(w, tag->vid);
    put_u8(w, tag->pcp);
    put_u8(w, 0);
}

int sncp_msg_encode(const struct sncp_msg *m, uint8_t *buf, size_t cap)
{
    size_t size;
    int err = encoded_size(m, &size);
    if (err) {
        return err;
    }
    if (size > cap) {
        return -ENOBUFS;
    }

    struct wcursor w = {buf, 0, cap, false};
    uint32_t tlvs = m->tlvs;
    put_u8(&w, SNCP_VERSION);
    put_u8(&w, m->type);
    put_u16(&w, m->flags & SNCP_F_KNOWN);
    put_u32(&w, (uint32_t)size);
    put_u32(&w, m->xid);

    if (tlvs & T(VERSION_RANGE)) {
        put_tlv_header(&w, SNCP_TLV_VERSION_RANGE, 2);
        put_u8(&w, m->version_min);
        put_u8(&w, m->version_max);
    }
    if (tlvs & T(CAPABILITIES)) {
        put_tlv_header(&w, SNCP_TLV_CAPABILITIES, 4);
        put_u32(&w, m->capabilities);
    }
    if (tlvs & T(NODE_ID)) {
        put_string(&w, SNCP_TLV_NODE_ID, m->node_id);
    }
    if (tlvs & T(SESSION_EPOCH)) {
        put_tlv_header(&w, SNCP_TLV_SESSION_EPOCH, 8);
        put_u64(&w, m->session_epoch);
    }
    if (tlvs & T(KEEPALIVE)) {
        put_tlv_header(&w, SNCP_TLV_KEEPALIVE, 4);
        put_u32(&w, m->keepalive_ms);
    }
    for (size_t i = 0; i < m->n_uplink_macs; i++) {
        put_tlv_header(&w, SNCP_TLV_UPLINK_MAC, 6);
        put_bytes(&w, m->uplink_macs[i], 6);
    }
    if (tlvs & T(VN_ID)) {
        put_tlv_header(&w, SNCP_TLV_VN_ID, 4);
        put_u32(&w, m->vn_id);
    }
    if (tlvs & T(VN_NAME)) {
        put_string(&w, SNCP_TLV_VN_NAME, m->vn_name);
    }
    if (tlvs & T(TSI_ID)) {
        put_tlv_header(&w, SNCP_TLV_TSI_ID, 22);
        put_bytes(&w, m->tsi.uuid, 16);
        put_bytes(&w, m->tsi.mac, 6);
    }
    for (size_t i = 0; i < m->n_addrs; i++) {
        const struct sncp_addr *a = &m->addrs[i];
        put_tlv_header(&w, SNCP_TLV_ADDRESS, 1 + addr_body_len(a->type));
        put_u8(&w, a->type);
        put_bytes(&w, a->ip, addr_ip_len(a->type));
        if (addr_has_mac(a->type)) {
            put_bytes(&w, a->mac, 6);
        }
    }
    for (size_t i = 0; i < m->n_tags; i++) {
        put_tag(&w, SNCP_TLV_LOCAL_TAG, &m->tags[i]);
    }
    for (size_t i = 0; i < m->n_preferred_tags; i++) {
        put_tag(&w, SNCP_TLV_PREFERRED_TAG, &m->preferred_tags[i]);
    }
    if (tlvs & T(STATUS)) {
        put_tlv_header(&w, SNCP_TLV_STATUS, 2);
        put_u16(&w, m->status);
    }
    if (tlvs & T(REASON)) {
        put_string(&w, SNCP_TLV_REASON, m->reason);
    }
    if (tlvs & T(ERROR_TLV)) {
        put_tlv_header(&w, SNCP_TLV_ERROR_TLV, 2);
        put_u16(&w, m->error_tlv);
    }
    if (tlvs & T(UPDATE_OP)) {
        put_tlv_header(&w, SNCP_TLV_UPDATE_OP, 1);
        put_u8(&w, m->update_op);
    }
    if (tlvs & T(PORT)) {
        put_string(&w, SNCP_TLV_PORT, m->port);
    }
    if (tlvs & T(REQUEST_TYPE)) {
        put_tlv_header(&w, SNCP_TLV_REQUEST_TYPE, 1);
        put_u8(&w, m->request_type);
    }
    if (tlvs & T(TSI_STATE)) {
        put_tlv_header(&w, SNCP_TLV_TSI_STATE, 1);
        put_u8(&w, m->tsi_state);
    }
    if (tlvs & T(HOLD_TIME)) {
        put_tlv_header(&w, SNCP_TLV_HOLD_TIME, 4);
        put_u32(&w, m->hold_time_ms);
    }
    if (tlvs & T(RETRY_AFTER)) {
        put_tlv_header(&w, SNCP_TLV_RETRY_AFTER, 4);
        put_u32(&w, m->retry_after_ms);
    }
    if (w.overflow || w.len != size) {
        return SNCP_E_INTERNAL;
    }
    return (int)w.len;
}

/* ---- names and text forms ----------------------------------------------------------- */

static const char *const msg_type_names[SNCP_MSG_TYPE_MAX + 1] = {
    [SNCP_MSG_HELLO] = "HELLO",
    [SNCP_MSG_KEEPALIVE] = "KEEPALIVE",
    [SNCP_MSG_VN_CONNECT] = "VN_CONNECT",
    [SNCP_MSG_VN_DISCONNECT] = "VN_DISCONNECT",
    [SNCP_MSG_TSI_ASSOCIATE] = "TSI_ASSOCIATE",
    [SNCP_MSG_TSI_ACTIVATE] = "TSI_ACTIVATE",
    [SNCP_MSG_TSI_DEACTIVATE] = "TSI_DEACTIVATE",
    [SNCP_MSG_TSI_DEASSOCIATE] = "TSI_DEASSOCIATE",
    [SNCP_MSG_TSI_UPDATE] = "TSI_UPDATE",
    [SNCP_MSG_SYNC_BEGIN] = "SYNC_BEGIN",
    [SNCP_MSG_SYNC_END] = "SYNC_END",
    [SNCP_MSG_RESPONSE] = "RESPONSE",
};

static const char *const tlv_names[SNCP_TLV_TYPE_MAX + 1] = {
    [SNCP_TLV_VERSION_RANGE] = "VERSION_RANGE",
    [SNCP_TLV_CAPABILITIES] = "CAPABILITIES",
    [SNCP_TLV_NODE_ID] = "NODE_ID",
    [SNCP_TLV_SESSION_EPOCH] = "SESSION_EPOCH",
    [SNCP_TLV_KEEPALIVE] = "KEEPALIVE",
    [SNCP_TLV_UPLINK_MAC] = "UPLINK_MAC",
    [SNCP_TLV_VN_ID] = "VN_ID",
    [SNCP_TLV_VN_NAME] = "VN_NAME",
    [SNCP_TLV_TSI_ID] = "TSI_ID",
    [SNCP_TLV_ADDRESS] = "ADDRESS",
    [SNCP_TLV_LOCAL_TAG] = "LOCAL_TAG",
    [SNCP_TLV_PREFERRED_TAG] = "PREFERRED_TAG",
    [SNCP_TLV_STATUS] = "STATUS",
    [SNCP_TLV_REASON] = "REASON",
    [SNCP_TLV_ERROR_TLV] = "ERROR_TLV",
    [SNCP_TLV_UPDATE_OP] = "UPDATE_OP",
    [SNCP_TLV_PORT] = "PORT",
    [SNCP_TLV_REQUEST_TYPE] = "REQUEST_TYPE",
    [SNCP_TLV_TSI_STATE] = "TSI_STATE",
    [SNCP_TLV_HOLD_TIME] = "HOLD_TIME",
    [SNCP_TLV_RETRY_AFTER] = "RETRY_AFTER",
};

const char *sncp_msg_type_name(unsigned type)
{
    return type <= SNCP_MSG_TYPE_MAX && msg_type_names[type] ? msg_type_names[type] : "UNKNOWN";
}

const char *sncp_tlv_name(unsigned type)
{
    return type <= SNCP_TLV_TYPE_MAX && tlv_names[type] ? tlv_names[type] : "UNKNOWN";
}

const char *sncp_tsi_state_name(unsigned state)
{
    switch (state) {
    case SNCP_TSI_INIT:
        return "init";
    case SNCP_TSI_ASSOCIATED:
        return "associated";
    case SNCP_TSI_ACTIVATED:
        return "activated";
    default:
        return "UNKNOWN";
    }
}

static const char *update_op_name(unsigned op)
{
    switch (op) {
    case SNCP_UPDATE_ADD:
        return "add";
    case SNCP_UPDATE_REMOVE:
        return "remove";
    case SNCP_UPDATE_REPLACE:
        return "replace";
    default:
        return "UNKNOWN";
    }
}

/* Writes b[0..n) as lowercase hex digit pairs, `sep` (if not '\0') before each byte whose
 * bit is set in `sep_before`; returns the end.  The formatters below run several times per
 * TSI transition (audit lines, dataplane keys): snprintf with a conversion per byte cost more
 * than the rest of a request. */
static char *hex_bytes(char *p, const uint8_t *b, size_t n, char sep, uint32_t sep_before)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        if (sep && (sep_before >> i & 1))
            *p++ = sep;
        *p++ = digits[b[i] >> 4];
        *p++ = digits[b[i] & 15];
    }
    return p;
}

/* Copies the len bytes at text into buf as snprintf would (truncated, NUL-terminated when
 * cap > 0); returns len. */
static int put_text(char *buf, size_t cap, const char *text, size_t len)
{
    if (cap) {
        size_t n = len < cap ? len : cap - 1;
        memcpy(buf, text, n);
        buf[n] = '\0';
    }
    return (int)len;
}

int sncp_mac_format(const uint8_t mac[6], char *buf, size_t cap)
{
    char text[SNCP_MAC_STRLEN];
    char *end = hex_bytes(text, mac, 6, ':', 0x3e);
    return put_text(buf, cap, text, (size_t)(end - text));
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Parses exactly 2*n hex digits from s (advancing it) into out[0..n). */
static bool parse_hex_bytes(const char **s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hex_digit((*s)[0]);
        int lo = hi < 0 ? -1 : hex_digit((*s)[1]);
        if (lo < 0) {
            return false;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
        *s += 2;
    }
    return true;
}

/* Parses "xx:xx:xx:xx:xx:xx" at *s, advancing *s past it. */
static bool parse_mac_prefix(const char **s, uint8_t mac[6])
{
    for (int i = 0; i < 6; i++) {
        if (i > 0 && *(*s)++ != ':') {
            return false;
        }
        if (!parse_hex_bytes(s, &mac[i], 1)) {
            return false;
        }
    }
    return true;
}

int sncp_mac_parse(const char *s, uint8_t mac[6])
{
    uint8_t tmp[6];
    if (!parse_mac_prefix(&s, tmp) || *s != '\0') {
        return SNCP_E_INVALID_VALUE;
    }
    memcpy(mac, tmp, 6);
    return 0;
}

/* Bytes of a canonical UUID preceded by '-': 4, 6, 8 and 10. */
enum { UUID_DASHES = 1u << 4 | 1u << 6 | 1u << 8 | 1u << 10 };

int sncp_uuid_format(const uint8_t u[16], char *buf, size_t cap)
{
    char text[40];
    char *end = hex_bytes(text, u, 16, '-', UUID_DASHES);
    return put_text(buf, cap, text, (size_t)(end - text));
}

/* Parses a canonical 8-4-4-4-12 UUID at *s, advancing *s past it. */
static bool parse_uuid_prefix(const char **s, uint8_t uuid[16])
{
    static const uint8_t groups[5] = {4, 2, 2, 2, 6};
    size_t off = 0;
    for (int g = 0; g < 5; g++) {
        if (g > 0 && *(*s)++ != '-') {
            return false;
        }
        if (!parse_hex_bytes(s, uuid + off, groups[g])) {
            return false;
        }
        off += groups[g];
    }
    return true;
}

int sncp_uuid_parse(const char *s, uint8_t uuid[16])
{
    uint8_t tmp[16];
    if (!parse_uuid_prefix(&s, tmp) || *s != '\0') {
        return SNCP_E_INVALID_VALUE;
    }
    memcpy(uuid, tmp, 16);
    return 0;
}

int sncp_tsi_id_format(const struct sncp_tsi_id *id, char *buf, size_t cap)
{
    char text[64];
    char *p = hex_bytes(text, id->uuid, 16, '-', UUID_DASHES);
    *p++ = '/';
    p = hex_bytes(p, id->mac, 6, ':', 0x3e);
    return put_text(buf, cap, text, (size_t)(p - text));
}

int sncp_tsi_id_parse(const char *s, struct sncp_tsi_id *id)
{
    struct sncp_tsi_id tmp;
    if (!parse_uuid_prefix(&s, tmp.uuid) || *s++ != '/' || !parse_mac_prefix(&s, tmp.mac) ||
        *s != '\0') {
        return SNCP_E_INVALID_VALUE;
    }
    *id = tmp;
    return 0;
}

int sncp_addr_format(const struct sncp_addr *a, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN], mac[SNCP_MAC_STRLEN];
    int family = addr_ip_len(a->type) == 16 ? AF_INET6 : AF_INET;

    sncp_mac_format(a->mac, mac, sizeof mac);
    if (addr_ip_len(a->type) && !inet_ntop(family, a->ip, ip, sizeof ip)) {
        return snprintf(buf, cap, "invalid");
    }
    switch (a->type) {
    case SNCP_ADDR_MAC:
        return snprintf(buf, cap, "%s", mac);
    case SNCP_ADDR_IPV4:
    case SNCP_ADDR_IPV6:
        return snprintf(buf, cap, "%s", ip);
    case SNCP_ADDR_IPV4_MAC:
    case SNCP_ADDR_IPV6_MAC:
        return snprintf(buf, cap, "%s@%s", ip, mac);
    default:
        return snprintf(buf, cap, "type-%u", (unsigned)a->type);
    }
}

int sncp_addr_parse(const char *s, struct sncp_addr *a)
{
    struct sncp_addr tmp;
    char ip[INET6_ADDRSTRLEN];

    memset(&tmp, 0, sizeof tmp);
    const char *at = strchr(s, '@');
    size_t ip_len = at ? (size_t)(at - s) : strlen(s);
    if (!at && sncp_mac_parse(s, tmp.mac) == 0) {
        tmp.type = SNCP_ADDR_MAC;
        *a = tmp;
        return 0;
    }
    if (ip_len == 0 || ip_len >= sizeof ip) {
        return SNCP_E_INVALID_VALUE;
    }
    memcpy(ip, s, ip_len);
    ip[ip_len] = '\0';
    if (inet_pton(AF_INET, ip, tmp.ip) == 1) {
        tmp.type = at ? SNCP_ADDR_IPV4_MAC : SNCP_ADDR_IPV4;
    } else if (inet_pton(AF_INET6, ip, tmp.ip) == 1) {
        tmp.type = at ? SNCP_ADDR_IPV6_MAC : SNCP_ADDR_IPV6;
    } else {
        return SNCP_E_INVALID_VALUE;
    }
    if (at && sncp_mac_parse(at + 1, tmp.mac) != 0) {
        return SNCP_E_INVALID_VALUE;
    }
    *a = tmp;
    return 0;
}

int sncp_mac_check(const uint8_t mac[6], const char **why)
{
    static const uint8_t zero[6];
    if (!memcmp(mac, zero, 6)) {
        *why = "zero MAC";
        return SNCP_E_INVALID_VALUE;
    }
    if (mac[0] & 0x01) {
        *why = "multicast or broadcast MAC";
        return SNCP_E_INVALID_VALUE;
    }
    return 0;
}

static int ipv4_check(const uint8_t ip[4], const char **why)
{
    if (ip[0] == 0) {
        *why = "unspecified IPv4 address (0.0.0.0/8)";
        return SNCP_E_INVALID_VALUE;
    }
    if (ip[0] == 127) {
        *why = "loopback IPv4 address";
        return SNCP_E_INVALID_VALUE;
    }
    if ((ip[0] & 0xf0) == 224) {
        *why = ip[0] == 224 && ip[1] == 0 && ip[2] == 0 ? "link-local multicast IPv4 address"
                                                        : "multicast IPv4 address";
        return SNCP_E_INVALID_VALUE;
    }
    if (ip[0] == 255 && ip[1] == 255 && ip[2] == 255 && ip[3] == 255) {
        *why = "broadcast IPv4 address";
        return SNCP_E_INVALID_VALUE;
    }
    return 0;
}

static int ipv6_check(const uint8_t ip[16], const char **why)
{
    static const uint8_t zero[16];
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (!memcmp(ip, mapped, sizeof mapped))
        return ipv4_check(ip + 12, why);
    if (!memcmp(ip, zero, 16)) {
        *why = "unspecified IPv6 address";
        return SNCP_E_INVALID_VALUE;
    }
    if (!memcmp(ip, zero, 15) && ip[15] == 1) {
        *why = "loopback IPv6 address";
        return SNCP_E_INVALID_VALUE;
    }
    if (ip[0] == 0xff) {
        *why = (ip[1] & 0x0f) == 2 ? "link-local multicast IPv6 address" : "multicast IPv6 address";
        return SNCP_E_INVALID_VALUE;
    }
    return 0;
}

int sncp_addr_check(const struct sncp_addr *a, const char **why)
{
    switch (a->type) {
    case SNCP_ADDR_MAC:
        return sncp_mac_check(a->mac, why);
    case SNCP_ADDR_IPV4:
        return ipv4_check(a->ip, why);
    case SNCP_ADDR_IPV6:
        return ipv6_check(a->ip, why);
    case SNCP_ADDR_IPV4_MAC:
        return ipv4_check(a->ip, why) ? SNCP_E_INVALID_VALUE : sncp_mac_check(a->mac, why);
    case SNCP_ADDR_IPV6_MAC:
        return ipv6_check(a->ip, why) ? SNCP_E_INVALID_VALUE : sncp_mac_check(a->mac, why);
    default:
        *why = "unknown address type";
        return SNCP_E_INVALID_VALUE;
    }
}

/* snprintf-style text builder: counts what it wanted even after running out of room. */
struct text {
    char *buf;
    size_t cap;
    size_t len;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = t->len < t->cap ? t->cap - t->len : 0;
    int n = vsnprintf(room ? t->buf + t->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0) {
        t->len += (size_t)n;
    }
}

/* Adds ` key="value"` with '"' and '\' escaped and bytes outside 0x20..0x7e as \xNN. */
static void text_add_string(struct text *t, const char *key, const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    text_add(t, " %s=\"", key);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            text_add(t, "\\%c", c);
        } else if (c < 0x20 || c > 0x7e) {
            text_add(t, "\\x%02x", c);
        } else {
            text_add(t, "%c", c);
        }
    }
    text_add(t, "\"");
}

static void text_add_tag(struct text *t, const char *key, const struct sncp_tag *tag)
{
    if (tag->pcp == SNCP_PCP_NONE) {
        text_add(t, " %s=%u", key, (unsigned)tag->vid);
    } else {
        text_add(t, " %s=%u:%u", key, (unsigned)tag->vid, (unsigned)tag->pcp);
    }
}

static void text_add_type(struct text *t, const char *key, unsigned type, bool is_tlv)
{
    const char *name = is_tlv ? sncp_tlv_name(type) : sncp_msg_type_name(type);
    if (strcmp(name, "UNKNOWN") == 0) {
        text_add(t, " %s=%u", key, type);
    } else {
        text_add(t, " %s=%s", key, name);
    }
}

int sncp_msg_format(const struct sncp_msg *m, char *buf, size_t cap)
{
    struct text t = {buf, cap, 0};
    char s[SNCP_ADDR_STRLEN];

    if (cap > 0) {
        buf[0] = '\0';
    }
    if (m->type >= 1 && m->type <= SNCP_MSG_TYPE_MAX) {
        text_add(&t, "%s", sncp_msg_type_name(m->type));
    } else {
        text_add(&t, "type-%u", (unsigned)m->type);
    }
    text_add(&t, " xid=%u", (unsigned)m->xid);
    if (m->flags) {
        static const char *const flag_names[] = {"migration", "migration-source",
                                                 "implicit-connect"};
        const char *sep = " flags=";
        for (unsigned i = 0; i < 16; i++) {
            if (!(m->flags & (1u << i))) {
                continue;
            }
            if (i < 3) {
                text_add(&t, "%s%s", sep, flag_names[i]);
            } else {
                text_add(&t, "%s0x%x", sep, 1u << i);
            }
            sep = ",";
        }
    }

    uint32_t tlvs = m->tlvs;
    if (tlvs & T(VERSION_RANGE)) {
        text_add(&t, " version_range=%u-%u", (unsigned)m->version_min, (unsigned)m->version_max);
    }
    if (tlvs & T(CAPABILITIES)) {
        static const char *const cap_names[] = {"migration", "sync", "multi-tag", "addr-update"};
        if (m->capabilities == 0) {
            text_add(&t, " capabilities=0");
        } else {
            const char *sep = " capabilities=";
            for (unsigned i = 0; i < 4; i++) {
                if (m->capabilities & (1u << i)) {
                    text_add(&t, "%s%s", sep, cap_names[i]);
                    sep = ",";
                }
            }
            if (m->capabilities & ~UINT32_C(0xF)) {
                text_add(&t, "%s0x%x", sep, (unsigned)(m->capabilities & ~UINT32_C(0xF)));
            }
        }
    }
    if (tlvs & T(NODE_ID)) {
        text_add_string(&t, "node_id", m->node_id, sizeof m->node_id);
    }
    if (tlvs & T(SESSION_EPOCH)) {
        text_add(&t, " session_epoch=%llu", (unsigned long long)m->session_epoch);
    }
    if (tlvs & T(KEEPALIVE)) {
        text_add(&t, " keepalive_ms=%u", (unsigned)m->keepalive_ms);
    }
    for (size_t i = 0; i < m->n_uplink_macs && i < SNCP_MAX_UPLINK_MACS; i++) {
        sncp_mac_format(m->uplink_macs[i], s, sizeof s);
        text_add(&t, " uplink_mac=%s", s);
    }
    if (tlvs & T(VN_ID)) {
        text_add(&t, " vn_id=%u", (unsigned)m->vn_id);
    }
    if (tlvs & T(VN_NAME)) {
        text_add_string(&t, "vn_name", m->vn_name, sizeof m->vn_name);
    }
    if (tlvs & T(TSI_ID)) {
        char id[SNCP_TSI_ID_STRLEN];
        sncp_tsi_id_format(&m->tsi, id, sizeof id);
        text_add(&t, " tsi=%s", id);
    }
    for (size_t i = 0; i < m->n_addrs && i < SNCP_MAX_ADDRS; i++) {
        sncp_addr_format(&m->addrs[i], s, sizeof s);
        text_add(&t, " addr=%s", s);
    }
    for (size_t i = 0; i < m->n_tags && i < SNCP_MAX_TAGS; i++) {
        text_add_tag(&t, "local_tag", &m->tags[i]);
    }
    for (size_t i = 0; i < m->n_preferred_tags && i < SNCP_MAX_TAGS; i++) {
        text_add_tag(&t, "preferred_tag", &m->preferred_tags[i]);
    }
    if (tlvs & T(STATUS)) {
        text_add(&t, " status=%s", sncp_status_token(m->status));
    }
    if (tlvs & T(REASON)) {
        text_add_string(&t, "reason", m->reason, sizeof m->reason);
    }
    if (tlvs & T(ERROR_TLV)) {
        text_add_type(&t, "error_tlv", m->error_tlv, true);
    }
    if (tlvs & T(UPDATE_OP)) {
        text_add(&t, " update_op=%s", update_op_name(m->update_op));
    }
    if (tlvs & T(PORT)) {
        text_add_string(&t, "port", m->port, sizeof m->port);
    }
    if (tlvs & T(REQUEST_TYPE)) {
        text_add_type(&t, "request_type", m->request_type, false);
    }
    if (tlvs & T(TSI_STATE)) {
        text_add(&t, " tsi_state=%s", sncp_tsi_state_name(m->tsi_state));
    }
    if (tlvs & T(HOLD_TIME)) {
        text_add(&t, " hold_time_ms=%u", (unsigned)m->hold_time_ms);
    }
    if (tlvs & T(RETRY_AFTER)) {
        text_add(&t, " retry_after_ms=%u", (unsigned)m->retry_after_ms);
    }
    return t.len > (size_t)INT32_MAX ? INT32_MAX : (int)t.len;
}
