/* test-msg.c: Check suite for the SNCP message codec (lib/sncp-msg.c).
 *
 * Covers the proto/vectors/ files (valid and malformed), a round trip of every message type
 * with every TLV it may carry, every truncation of every valid vector, lying lengths,
 * duplicate / unknown / critical / over-limit TLVs, the encoder's policy checks and its
 * behaviour with buffers of every too-small size, and the text helpers.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sncp-msg.h"

/* ---- vector files ------------------------------------------------------------------- */

struct vec {
    char name[256];
    uint8_t data[SNCP_MAX_MSG_LEN + 16];
    size_t len;
    char text[8192];
    bool canonical;
    char error[64];
    int bad_tlv;
};

static const char *src_dir(void)
{
    const char *s = getenv("SPLITNVE_SRC");
    return s && *s ? s : SRCDIR;
}

static int hexval(int c)
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

static void load_vec(const char *path, struct vec *v)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char line[16384];
    v->canonical = true;
    v->bad_tlv = -1;
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
            line[--n] = '\0';
        }
        if (n == 0 || line[0] == '#') {
            continue;
        }
        if (strncmp(line, "hex: ", 5) == 0) {
            const char *p = line + 5;
            while (p[0] && p[1]) {
                int hi = hexval(p[0]), lo = hexval(p[1]);
                ck_assert_msg(hi >= 0 && lo >= 0, "%s: bad hex", path);
                ck_assert(v->len < sizeof v->data);
                v->data[v->len++] = (uint8_t)(hi << 4 | lo);
                p += 2;
            }
            ck_assert_msg(*p == '\0', "%s: odd hex", path);
        } else if (strncmp(line, "text: ", 6) == 0) {
            ck_assert((size_t)snprintf(v->text, sizeof v->text, "%s", line + 6) < sizeof v->text);
        } else if (strcmp(line, "canonical: no") == 0) {
            v->canonical = false;
        } else if (strncmp(line, "error: ", 7) == 0) {
            ck_assert((size_t)snprintf(v->error, sizeof v->error, "%s", line + 7) <
                      sizeof v->error);
        } else if (strncmp(line, "bad_tlv: ", 9) == 0) {
            v->bad_tlv = atoi(line + 9);
        } else {
            ck_abort_msg("%s: unknown line '%s'", path, line);
        }
    }
    fclose(f);
    ck_assert_msg(v->len > 0, "%s: no hex", path);
}

static int vec_filter(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 4 && strcmp(d->d_name + n - 4, ".vec") == 0;
}

/* Loads every vector of proto/vectors/<kind>; caller frees the array. */
static struct vec *load_vecs(const char *kind, size_t *count)
{
    char dir[4096];
    ck_assert((size_t)snprintf(dir, sizeof dir, "%s/proto/vectors/%s", src_dir(), kind) <
              sizeof dir);
    struct dirent **names;
    int n = scandir(dir, &names, vec_filter, alphasort);
    ck_assert_msg(n > 0, "no vectors in %s", dir);
    struct vec *v = calloc((size_t)n, sizeof *v);
    ck_assert(v != NULL);
    for (int i = 0; i < n; i++) {
        char path[8192];
        ck_assert((size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name) <
                  sizeof path);
        ck_assert((size_t)snprintf(v[i].name, sizeof v[i].name, "%s", names[i]->d_name) <
                  sizeof v[i].name);
        load_vec(path, &v[i]);
        free(names[i]);
    }
    free(names);
    *count = (size_t)n;
    return v;
}

/* ---- helpers ------------------------------------------------------------------------ */

#define REPEATABLE                                                                             \
    (SNCP_TLV_BIT(SNCP_TLV_UPLINK_MAC) | SNCP_TLV_BIT(SNCP_TLV_ADDRESS) |                      \
     SNCP_TLV_BIT(SNCP_TLV_LOCAL_TAG) | SNCP_TLV_BIT(SNCP_TLV_PREFERRED_TAG))

static bool addr_equal(const struct sncp_addr *a, const struct sncp_addr *b)
{
    if (a->type != b->type) {
        return false;
    }
    bool mac = a->type == SNCP_ADDR_MAC || a->type == SNCP_ADDR_IPV4_MAC ||
               a->type == SNCP_ADDR_IPV6_MAC;
    size_t ip = (a->type == SNCP_ADDR_IPV4 || a->type == SNCP_ADDR_IPV4_MAC)   ? 4
                : (a->type == SNCP_ADDR_IPV6 || a->type == SNCP_ADDR_IPV6_MAC) ? 16
                                                                               : 0;
    return (!mac || memcmp(a->mac, b->mac, 6) == 0) && memcmp(a->ip, b->ip, ip) == 0;
}

static bool tags_equal(const struct sncp_tag *a, const struct sncp_tag *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i].vid != b[i].vid || a[i].pcp != b[i].pcp) {
            return false;
        }
    }
    return true;
}

/* Semantic equality: every field a present TLV carries, strings as strings. */
static bool msg_equal(const struct sncp_msg *a, const struct sncp_msg *b)
{
#define HAS(t) (a->tlvs & SNCP_TLV_BIT(SNCP_TLV_##t))
    if (a->type != b->type || a->xid != b->xid ||
        (a->flags & SNCP_F_KNOWN) != (b->flags & SNCP_F_KNOWN) ||
        (a->tlvs & ~REPEATABLE) != (b->tlvs & ~REPEATABLE)) {
        return false;
    }
    if (a->n_uplink_macs != b->n_uplink_macs || a->n_addrs != b->n_addrs ||
        a->n_tags != b->n_tags || a->n_preferred_tags != b->n_preferred_tags) {
        return false;
    }
    if (memcmp(a->uplink_macs, b->uplink_macs, 6u * a->n_uplink_macs) != 0 ||
        !tags_equal(a->tags, b->tags, a->n_tags) ||
        !tags_equal(a->preferred_tags, b->preferred_tags, a->n_preferred_tags)) {
        return false;
    }
    for (size_t i = 0; i < a->n_addrs; i++) {
        if (!addr_equal(&a->addrs[i], &b->addrs[i])) {
            return false;
        }
    }
    return (!HAS(VERSION_RANGE) ||
            (a->version_min == b->version_min && a->version_max == b->version_max)) &&
           (!HAS(CAPABILITIES) || a->capabilities == b->capabilities) &&
           (!HAS(NODE_ID) || strcmp(a->node_id, b->node_id) == 0) &&
           (!HAS(SESSION_EPOCH) || a->session_epoch == b->session_epoch) &&
           (!HAS(KEEPALIVE) || a->keepalive_ms == b->keepalive_ms) &&
           (!HAS(VN_ID) || a->vn_id == b->vn_id) &&
           (!HAS(VN_NAME) || strcmp(a->vn_name, b->vn_name) == 0) &&
           (!HAS(TSI_ID) || memcmp(&a->tsi, &b->tsi, sizeof a->tsi) == 0) &&
           (!HAS(STATUS) || a->status == b->status) &&
           (!HAS(REASON) || strcmp(a->reason, b->reason) == 0) &&
           (!HAS(ERROR_TLV) || a->error_tlv == b->error_tlv) &&
           (!HAS(UPDATE_OP) || a->update_op == b->update_op) &&
           (!HAS(PORT) || strcmp(a->port, b->port) == 0) &&
           (!HAS(REQUEST_TYPE) || a->request_type == b->request_type) &&
           (!HAS(TSI_STATE) || a->tsi_state == b->tsi_state) &&
           (!HAS(HOLD_TIME) || a->hold_time_ms == b->hold_time_ms) &&
           (!HAS(RETRY_AFTER) || a->retry_after_ms == b->retry_after_ms);
#undef HAS
}

static const uint8_t mac1[6] = {0x52, 0x54, 0x00, 0x00, 0x00, 0x01};

static void set_str(char *dst, size_t cap, const char *s)
{
    ck_assert((size_t)snprintf(dst, cap, "%s", s) < cap);
}

static void fill_tsi(struct sncp_msg *m)
{
    ck_assert_int_eq(sncp_uuid_parse("4d5e6f70-0000-4000-8000-000000000001", m->tsi.uuid), 0);
    memcpy(m->tsi.mac, mac1, 6);
    sncp_msg_set(m, SNCP_TLV_TSI_ID);
}

static void fill_vn(struct sncp_msg *m)
{
    m->vn_id = 5000;
    sncp_msg_set(m, SNCP_TLV_VN_ID);
    set_str(m->vn_name, sizeof m->vn_name, "blue \xc3\xbc \"quoted\"");
    sncp_msg_set(m, SNCP_TLV_VN_NAME);
}

/* Every address type, then filler up to `n`. */
static void fill_addrs(struct sncp_msg *m, size_t n)
{
    static const char *const forms[] = {"52:54:00:00:00:01", "192.0.2.10", "2001:db8::10",
                                        "192.0.2.11@52:54:00:00:00:02",
                                        "2001:db8::11@52:54:00:00:00:03"};
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(sncp_addr_parse(forms[i % 5], &m->addrs[i]), 0);
        m->addrs[i].ip[15] ^= (uint8_t)(m->addrs[i].type >= SNCP_ADDR_IPV6 ? i : 0);
    }
    m->n_addrs = (uint8_t)n;
}

static void fill_tags(struct sncp_tag *tags, uint8_t *n)
{
    for (int i = 0; i < SNCP_MAX_TAGS; i++) {
        tags[i].vid = (uint16_t)(i == 0 ? SNCP_MIN_VID : i == 1 ? SNCP_MAX_VID : 100 + i);
        tags[i].pcp = (uint8_t)(i == 2 ? SNCP_PCP_NONE : i);
    }
    *n = SNCP_MAX_TAGS;
}

/* A message of `type` carrying every TLV that type may carry, repeatables at their limit. */
static void build_full(struct sncp_msg *m, int type)
{
    sncp_msg_init(m, (enum sncp_msg_type)type, 0x10000u + (uint32_t)type);
    switch (type) {
    case SNCP_MSG_HELLO:
        m->version_min = 1, m->version_max = 1;
        sncp_msg_set(m, SNCP_TLV_VERSION_RANGE);
        m->capabilities = 0xF;
        sncp_msg_set(m, SNCP_TLV_CAPABILITIES);
        memset(m->node_id, 'n', SNCP_MAX_NODE_ID_LEN);
        sncp_msg_set(m, SNCP_TLV_NODE_ID);
        m->session_epoch = UINT64_C(0x0102030405060708);
        sncp_msg_set(m, SNCP_TLV_SESSION_EPOCH);
        m->keepalive_ms = SNCP_MAX_KEEPALIVE_MS;
        sncp_msg_set(m, SNCP_TLV_KEEPALIVE);
        for (int i = 0; i < SNCP_MAX_UPLINK_MACS; i++) {
            memcpy(m->uplink_macs[i], mac1, 6);
            m->uplink_macs[i][5] = (uint8_t)i;
        }
        m->n_uplink_macs = SNCP_MAX_UPLINK_MACS;
        break;
    case SNCP_MSG_VN_CONNECT:
        fill_vn(m);
        fill_tags(m->preferred_tags, &m->n_preferred_tags);
        break;
    case SNCP_MSG_VN_DISCONNECT:
        fill_vn(m);
        break;
    case SNCP_MSG_TSI_ASSOCIATE:
    case SNCP_MSG_TSI_ACTIVATE:
        m->flags = SNCP_F_MIGRATION | SNCP_F_IMPLICIT_CONNECT;
        fill_vn(m);
        fill_tsi(m);
        fill_addrs(m, SNCP_MAX_ADDRS);
        fill_tags(m->preferred_tags, &m->n_preferred_tags);
        break;
    case SNCP_MSG_TSI_DEACTIVATE:
        fill_tsi(m);
        fill_addrs(m, 7);
        break;
    case SNCP_MSG_TSI_DEASSOCIATE:
        m->flags = SNCP_F_MIGRATION | SNCP_F_MIGRATION_SOURCE;
        fill_tsi(m);
        break;
    case SNCP_MSG_TSI_UPDATE:
        fill_tsi(m);
        fill_addrs(m, SNCP_MAX_ADDRS);
        m->update_op = SNCP_UPDATE_REPLACE;
        sncp_msg_set(m, SNCP_TLV_UPDATE_OP);
        break;
    case SNCP_MSG_RESPONSE:
        m->flags = SNCP_F_IMPLICIT_CONNECT;
        m->version_min = 1, m->version_max = 2;
        sncp_msg_set(m, SNCP_TLV_VERSION_RANGE);
        m->capabilities = 0x80000003;
        sncp_msg_set(m, SNCP_TLV_CAPABILITIES);
        set_str(m->node_id, sizeof m->node_id, "tor1");
        sncp_msg_set(m, SNCP_TLV_NODE_ID);
        m->keepalive_ms = SNCP_MIN_KEEPALIVE_MS;
        sncp_msg_set(m, SNCP_TLV_KEEPALIVE);
        fill_vn(m);
        fill_tsi(m);
        fill_tags(m->tags, &m->n_tags);
        m->status = SNCP_STATUS_CONFLICT;
        sncp_msg_set(m, SNCP_TLV_STATUS);
        memset(m->reason, 'r', SNCP_MAX_REASON_LEN);
        sncp_msg_set(m, SNCP_TLV_REASON);
        m->error_tlv = 0x7fff;
        sncp_msg_set(m, SNCP_TLV_ERROR_TLV);
        memset(m->port, 'p', SNCP_MAX_PORT_LEN);
        sncp_msg_set(m, SNCP_TLV_PORT);
        m->request_type = SNCP_MSG_TSI_ACTIVATE;
        sncp_msg_set(m, SNCP_TLV_REQUEST_TYPE);
        m->tsi_state = SNCP_TSI_ACTIVATED;
        sncp_msg_set(m, SNCP_TLV_TSI_STATE);
        m->hold_time_ms = 30000;
        sncp_msg_set(m, SNCP_TLV_HOLD_TIME);
        m->retry_after_ms = 0xFFFFFFFF;
        sncp_msg_set(m, SNCP_TLV_RETRY_AFTER);
        break;
    default:
        break;
    }
}

static int encode_ok(const struct sncp_msg *m, uint8_t *buf, size_t cap)
{
    int n = sncp_msg_encode(m, buf, cap);
    ck_assert_msg(n >= SNCP_HEADER_LEN, "encode %s: %s", sncp_msg_type_name(m->type),
                  sncp_strerror(n));
    return n;
}

static void decode_ok(const uint8_t *buf, size_t len, struct sncp_msg *m)
{
    uint16_t bad = 0xdead;
    int err = sncp_msg_decode(buf, len, m, &bad);
    ck_assert_msg(err == 0, "decode: %s bad_tlv=%u", sncp_strerror(err), bad);
    ck_assert_uint_eq(bad, 0);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Builds a header for `type` with total length `total` at buf. */
static void put_header(uint8_t *buf, uint8_t type, uint32_t total, uint32_t xid)
{
    buf[0] = SNCP_VERSION;
    buf[1] = type;
    put16(buf + 2, 0);
    put32(buf + 4, total);
    put32(buf + 8, xid);
}

static size_t put_tlv(uint8_t *p, uint16_t type, const void *val, uint16_t len)
{
    put16(p, type);
    put16(p + 2, len);
    if (len) {
        memcpy(p + 4, val, len);
    }
    return 4u + len;
}

static int decode_err(const uint8_t *buf, size_t len, uint16_t *bad)
{
    struct sncp_msg m;
    return sncp_msg_decode(buf, len, &m, bad);
}

/* ---- vectors ------------------------------------------------------------------------ */

START_TEST(test_vectors_valid)
{
    size_t n;
    struct vec *v = load_vecs("valid", &n);
    static struct sncp_msg m, m2;
    static uint8_t buf[SNCP_MAX_MSG_LEN];
    char text[8192];
    unsigned seen_types = 0, seen_status = 0, seen_addr = 0;

    for (size_t i = 0; i < n; i++) {
        uint16_t bad = 0xdead;
        int err = sncp_msg_decode(v[i].data, v[i].len, &m, &bad);
        ck_assert_msg(err == 0, "%s: %s bad_tlv=%u", v[i].name, sncp_strerror(err), bad);
        ck_assert_uint_eq(bad, 0);
        int tl = sncp_msg_format(&m, text, sizeof text);
        ck_assert_int_eq(tl, (int)strlen(text));
        ck_assert_msg(strcmp(text, v[i].text) == 0, "%s:\n got  %s\n want %s", v[i].name, text,
                      v[i].text);
        int len = sncp_msg_encode(&m, buf, sizeof buf);
        ck_assert_msg(len > 0, "%s: re-encode %s", v[i].name, sncp_strerror(len));
        if (v[i].canonical) {
            ck_assert_msg((size_t)len == v[i].len && memcmp(buf, v[i].data, v[i].len) == 0,
                          "%s: re-encoding differs", v[i].name);
        } else {
            ck_assert_msg((size_t)len != v[i].len || memcmp(buf, v[i].data, v[i].len) != 0,
                          "%s: marked non-canonical but re-encodes identically", v[i].name);
        }
        decode_ok(buf, (size_t)len, &m2);
        ck_assert_msg(msg_equal(&m, &m2), "%s: round trip differs", v[i].name);
        seen_types |= 1u << m.type;
        if (m.type == SNCP_MSG_RESPONSE && m.status < 32) {
            seen_status |= 1u << m.status;
        }
        for (size_t k = 0; k < m.n_addrs; k++) {
            seen_addr |= 1u << m.addrs[k].type;
        }
    }
    /* The vectors must keep covering every message type, status and address type. */
    ck_assert_uint_eq(seen_types, 0x1FFEu);
    ck_assert_uint_eq(seen_status, (1u << SNCP_STATUS_COUNT_) - 1);
    ck_assert_uint_eq(seen_addr, 0x3Eu);
    free(v);
}
END_TEST

START_TEST(test_vectors_malformed)
{
    size_t n;
    struct vec *v = load_vecs("malformed", &n);
    static struct sncp_msg m;
    unsigned seen = 0;

    ck_assert_uint_ge(n, 15);
    for (size_t i = 0; i < n; i++) {
        uint16_t bad = 0xdead;
        ck_assert_msg(v[i].error[0] && v[i].bad_tlv >= 0, "%s: error/bad_tlv missing",
                      v[i].name);
        int err = sncp_msg_decode(v[i].data, v[i].len, &m, &bad);
        ck_assert_msg(err < 0, "%s: decoded", v[i].name);
        ck_assert_msg(strcmp(sncp_error_token(err), v[i].error) == 0, "%s: got %s want %s",
                      v[i].name, sncp_error_token(err), v[i].error);
        ck_assert_msg(bad == v[i].bad_tlv, "%s: bad_tlv %u want %d", v[i].name, bad,
                      v[i].bad_tlv);
        if (v[i].len >= SNCP_HEADER_LEN) {
            /* The header was readable: type and xid are there to answer with. */
            ck_assert_uint_eq(m.type, v[i].data[1]);
            ck_assert_uint_eq(m.xid, (uint32_t)v[i].data[8] << 24 | (uint32_t)v[i].data[9] << 16 |
                                         (uint32_t)v[i].data[10] << 8 | v[i].data[11]);
        }
        seen |= 1u << (unsigned)(-err - SNCP_ERR_BASE);
    }
    ck_assert_uint_eq(seen, 1u << SNCP_STATUS_MALFORMED | 1u << SNCP_STATUS_UNSUPPORTED_VERSION |
                                1u << SNCP_STATUS_CRITICAL_TLV | 1u << SNCP_STATUS_MISSING_TLV |
                                1u << SNCP_STATUS_INVALID_VALUE);
    free(v);
}
END_TEST

/* Every prefix of every valid vector fails; with the header's length patched to the prefix it
 * fails as MALFORMED unless the cut falls on a TLV boundary. */
START_TEST(test_truncation)
{
    size_t n;
    struct vec *v = load_vecs("valid", &n);
    static uint8_t buf[SNCP_MAX_MSG_LEN];
    static struct sncp_msg m;

    for (size_t i = 0; i < n; i++) {
        bool boundary[SNCP_MAX_MSG_LEN + 1] = {false};
        size_t off = SNCP_HEADER_LEN;
        boundary[off] = true;
        while (off + 4 <= v[i].len) {
            off += 4u + ((size_t)v[i].data[off + 2] << 8 | v[i].data[off + 3]);
            boundary[off] = true;
        }
        for (size_t cut = 0; cut < v[i].len; cut++) {
            uint16_t bad;
            memcpy(buf, v[i].data, cut);
            int err = sncp_msg_decode(buf, cut, &m, &bad);
            ck_assert_msg(err == SNCP_E_MALFORMED, "%s cut %zu: %d", v[i].name, cut, err);
            if (cut < SNCP_HEADER_LEN) {
                continue;
            }
            put32(buf + 4, (uint32_t)cut);
            err = sncp_msg_decode(buf, cut, &m, &bad);
            if (!boundary[cut]) {
                ck_assert_msg(err == SNCP_E_MALFORMED, "%s patched cut %zu: %s", v[i].name, cut,
                              sncp_strerror(err));
            } else {
                ck_assert_msg(err == 0 || err == SNCP_E_MISSING_TLV, "%s boundary %zu: %s",
                              v[i].name, cut, sncp_strerror(err));
            }
        }
    }
    free(v);
}
END_TEST

/* ---- round trips -------------------------------------------------------------------- */

START_TEST(test_roundtrip_every_type)
{
    static struct sncp_msg m, m2;
    static uint8_t buf[SNCP_MAX_MSG_LEN];
    char text[16384];
    int type = _i;

    build_full(&m, type);
    int len = encode_ok(&m, buf, sizeof buf);
    ck_assert_uint_eq(buf[0], SNCP_VERSION);
    ck_assert_uint_eq(buf[1], (unsigned)type);
    decode_ok(buf, (size_t)len, &m2);
    ck_assert_msg(msg_equal(&m, &m2), "%s round trip differs", sncp_msg_type_name(type));
    /* The encoder emits TLVs in ascending type order. */
    unsigned prev = 0;
    for (size_t off = SNCP_HEADER_LEN; off < (size_t)len;) {
        unsigned t = (unsigned)buf[off] << 8 | buf[off + 1];
        ck_assert_uint_ge(t, prev);
        ck_assert_uint_eq(t & SNCP_TLV_CRITICAL, 0);
        prev = t;
        off += 4u + ((size_t)buf[off + 2] << 8 | buf[off + 3]);
    }
    int tl = sncp_msg_format(&m2, text, sizeof text);
    ck_assert_int_gt(tl, 0);
    ck_assert_int_lt(tl, (int)sizeof text);
    ck_assert_ptr_nonnull(strstr(text, sncp_msg_type_name(type)));

    /* Every smaller buffer: -ENOBUFS and not one byte written past the end. */
    static uint8_t small[SNCP_MAX_MSG_LEN + 64];
    for (int cap = 0; cap < len; cap++) {
        memset(small, 0xA5, (size_t)len + 64);
        ck_assert_int_eq(sncp_msg_encode(&m, small, (size_t)cap), -ENOBUFS);
        for (size_t k = (size_t)cap; k < (size_t)len + 64; k++) {
            ck_assert_uint_eq(small[k], 0xA5);
        }
    }
    ck_assert_int_eq(sncp_msg_encode(&m, small, (size_t)len), len);
    ck_assert_mem_eq(small, buf, (size_t)len);
}
END_TEST

START_TEST(test_roundtrip_minimal)
{
    static struct sncp_msg m, m2;
    uint8_t buf[512];

    /* Only VN_NAME (no VN_ID) satisfies "VN_ID and/or VN_NAME". */
    sncp_msg_init(&m, SNCP_MSG_TSI_ACTIVATE, 1);
    fill_tsi(&m);
    set_str(m.vn_name, sizeof m.vn_name, "x");
    sncp_msg_set(&m, SNCP_TLV_VN_NAME);
    decode_ok(buf, (size_t)encode_ok(&m, buf, sizeof buf), &m2);
    ck_assert(msg_equal(&m, &m2));
    ck_assert(!sncp_msg_has(&m2, SNCP_TLV_VN_ID));

    /* Unknown flag bits are sent as 0; a repeatable's bit alone emits nothing. */
    sncp_msg_init(&m, SNCP_MSG_SYNC_END, 2);
    m.flags = 0xFFFF;
    m.tlvs |= SNCP_TLV_BIT(SNCP_TLV_ADDRESS);
    int len = encode_ok(&m, buf, sizeof buf);
    ck_assert_int_eq(len, SNCP_HEADER_LEN);
    ck_assert_uint_eq(buf[2], 0);
    ck_assert_uint_eq(buf[3], SNCP_F_KNOWN);
    decode_ok(buf, (size_t)len, &m2);
    ck_assert_uint_eq(m2.flags, SNCP_F_KNOWN);

    /* Empty REASON is valid. */
    sncp_msg_init(&m, SNCP_MSG_RESPONSE, 3);
    sncp_msg_set(&m, SNCP_TLV_STATUS);
    sncp_msg_set(&m, SNCP_TLV_REASON);
    len = encode_ok(&m, buf, sizeof buf);
    decode_ok(buf, (size_t)len, &m2);
    ck_assert(sncp_msg_has(&m2, SNCP_TLV_REASON));
    ck_assert_str_eq(m2.reason, "");
}
END_TEST

/* ---- lying lengths and TLV rules ---------------------------------------------------- */

START_TEST(test_lying_lengths)
{
    static uint8_t buf[SNCP_MAX_MSG_LEN + 64];
    static const uint8_t filler[4000];
    uint16_t bad;
    uint32_t vn = 0;

    /* Total length one more / one less than the bytes given. */
    put_header(buf, SNCP_MSG_VN_CONNECT, 20, 1);
    put_tlv(buf + 12, SNCP_TLV_VN_ID, &vn, 4);
    ck_assert_int_eq(decode_err(buf, 20, &bad), 0);
    put32(buf + 4, 21);
    ck_assert_int_eq(decode_err(buf, 20, &bad), SNCP_E_MALFORMED);
    put32(buf + 4, 19);
    ck_assert_int_eq(decode_err(buf, 20, &bad), SNCP_E_MALFORMED);
    put32(buf + 4, 0);
    ck_assert_int_eq(decode_err(buf, 20, &bad), SNCP_E_MALFORMED);
    put32(buf + 4, 0xFFFFFFFF);
    ck_assert_int_eq(decode_err(buf, 20, &bad), SNCP_E_MALFORMED);

    /* A TLV length one past the end, and 0xFFFF. */
    put32(buf + 4, 20);
    put16(buf + 14, 5);
    ck_assert_int_eq(decode_err(buf, 20, &bad), SNCP_E_MALFORMED);
    ck_assert_uint_eq(bad, SNCP_TLV_VN_ID);
    put16(buf + 14, 0xFFFF);
    ck_assert_int_eq(decode_err(buf, 20, &bad), SNCP_E_MALFORMED);
    ck_assert_uint_eq(bad, SNCP_TLV_VN_ID);

    /* Exactly the maximum size decodes; one byte more is rejected even when consistent. */
    size_t len = SNCP_MAX_MSG_LEN;
    put_header(buf, SNCP_MSG_SYNC_BEGIN, (uint32_t)len, 2);
    memset(buf + 12, 0, sizeof buf - 12);
    size_t off = 12, last = 0;
    while (len - off > 4) {
        size_t chunk = len - off - 4 > 4000 ? 4000 : len - off - 4;
        last = off;
        off += put_tlv(buf + off, 0x4000, filler, (uint16_t)chunk);
    }
    ck_assert_uint_eq(off, len);
    ck_assert_int_eq(decode_err(buf, len, &bad), 0);
    put32(buf + 4, (uint32_t)len + 1);
    put16(buf + last + 2, (uint16_t)(((unsigned)buf[last + 2] << 8 | buf[last + 3]) + 1));
    ck_assert_int_eq(decode_err(buf, len + 1, &bad), SNCP_E_MALFORMED);
    uint32_t total;
    ck_assert_int_eq(sncp_msg_peek_header(buf, 12, &total), SNCP_E_MALFORMED);
    put32(buf + 4, (uint32_t)len);
    ck_assert_int_eq(sncp_msg_peek_header(buf, 12, &total), 0);
    ck_assert_uint_eq(total, len);
    ck_assert_int_eq(sncp_msg_peek_header(buf, 11, &total), SNCP_E_MALFORMED);
    buf[0] = 2;
    ck_assert_int_eq(sncp_msg_peek_header(buf, 12, &total), SNCP_E_UNSUPPORTED_VERSION);
    ck_assert_int_eq(decode_err(buf, 12, &bad), SNCP_E_UNSUPPORTED_VERSION);
}
END_TEST

START_TEST(test_tlv_rules)
{
    uint8_t buf[2048];
    uint8_t val[32] = {0};
    uint16_t bad;
    static struct sncp_msg m;

    /* Duplicates of each single-valued TLV a RESPONSE may carry: MALFORMED with the type. */
    static const struct {
        uint16_t type, len;
        uint8_t first;
    } singles[] = {
        {SNCP_TLV_VERSION_RANGE, 2, 1}, {SNCP_TLV_CAPABILITIES, 4, 0}, {SNCP_TLV_NODE_ID, 1, 'a'},
        {SNCP_TLV_KEEPALIVE, 4, 0},     {SNCP_TLV_VN_ID, 4, 0},        {SNCP_TLV_VN_NAME, 1, 'a'},
        {SNCP_TLV_TSI_ID, 22, 0},       {SNCP_TLV_STATUS, 2, 0},       {SNCP_TLV_REASON, 1, 'a'},
        {SNCP_TLV_ERROR_TLV, 2, 0},     {SNCP_TLV_PORT, 1, 'a'},       {SNCP_TLV_REQUEST_TYPE, 1, 0},
        {SNCP_TLV_TSI_STATE, 1, 0},     {SNCP_TLV_HOLD_TIME, 4, 0},    {SNCP_TLV_RETRY_AFTER, 4, 0},
    };
    for (size_t i = 0; i < sizeof singles / sizeof singles[0]; i++) {
        memset(val, 0, sizeof val);
        val[0] = singles[i].first;
        if (singles[i].type == SNCP_TLV_VERSION_RANGE) {
            val[1] = 1;
        }
        if (singles[i].type == SNCP_TLV_KEEPALIVE) {
            put32(val, 1000);
        }
        size_t off = 12;
        if (singles[i].type != SNCP_TLV_STATUS) {
            off += put_tlv(buf + off, SNCP_TLV_STATUS, "\0\0", 2);
        }
        off += put_tlv(buf + off, singles[i].type, val, singles[i].len);
        put_header(buf, SNCP_MSG_RESPONSE, (uint32_t)off, 1);
        ck_assert_msg(decode_err(buf, off, &bad) == 0, "single %s", sncp_tlv_name(singles[i].type));
        off += put_tlv(buf + off, singles[i].type, val, singles[i].len);
        put_header(buf, SNCP_MSG_RESPONSE, (uint32_t)off, 1);
        ck_assert_int_eq(decode_err(buf, off, &bad), SNCP_E_MALFORMED);
        ck_assert_uint_eq(bad, singles[i].type);
    }

    /* Repeatables: at the limit fine, one more MALFORMED. */
    static const struct {
        uint8_t msg;
        uint16_t type, len;
        int max;
    } reps[] = {
        {SNCP_MSG_HELLO, SNCP_TLV_UPLINK_MAC, 6, SNCP_MAX_UPLINK_MACS},
        {SNCP_MSG_TSI_DEACTIVATE, SNCP_TLV_ADDRESS, 7, SNCP_MAX_ADDRS},
        {SNCP_MSG_RESPONSE, SNCP_TLV_LOCAL_TAG, 4, SNCP_MAX_TAGS},
        {SNCP_MSG_VN_CONNECT, SNCP_TLV_PREFERRED_TAG, 4, SNCP_MAX_TAGS},
    };
    for (size_t i = 0; i < sizeof reps / sizeof reps[0]; i++) {
        size_t off = 12;
        uint8_t tv[8] = {0};
        switch (reps[i].msg) {
        case SNCP_MSG_HELLO:
            off += put_tlv(buf + off, SNCP_TLV_VERSION_RANGE, "\1\1", 2);
            off += put_tlv(buf + off, SNCP_TLV_NODE_ID, "h", 1);
            off += put_tlv(buf + off, SNCP_TLV_SESSION_EPOCH, val, 8);
            break;
        case SNCP_MSG_TSI_DEACTIVATE:
            off += put_tlv(buf + off, SNCP_TLV_TSI_ID, val, 22);
            tv[0] = SNCP_ADDR_MAC;
            break;
        case SNCP_MSG_RESPONSE:
            off += put_tlv(buf + off, SNCP_TLV_STATUS, "\0\0", 2);
            tv[1] = 10;
            break;
        default:
            off += put_tlv(buf + off, SNCP_TLV_VN_ID, val, 4);
            tv[1] = 10;
            tv[2] = SNCP_PCP_NONE;
            break;
        }
        for (int k = 0; k < reps[i].max; k++) {
            off += put_tlv(buf + off, reps[i].type, tv, reps[i].len);
        }
        put_header(buf, reps[i].msg, (uint32_t)off, 1);
        ck_assert_int_eq(sncp_msg_decode(buf, off, &m, &bad), 0);
        off += put_tlv(buf + off, reps[i].type, tv, reps[i].len);
        put_header(buf, reps[i].msg, (uint32_t)off, 1);
        ck_assert_int_eq(decode_err(buf, off, &bad), SNCP_E_MALFORMED);
        ck_assert_uint_eq(bad, reps[i].type);
    }

    /* Unknown non-critical TLVs of every unknown type are skipped; critical ones rejected
     * with their type.  Known but not allowed here: the same rule. */
    for (unsigned t = 0; t < 0x8000; t += (t < 64 ? 1 : 997)) {
        size_t off = 12;
        off += put_tlv(buf + off, (uint16_t)t, "zz", 2);
        put_header(buf, SNCP_MSG_SYNC_END, (uint32_t)off, 9);
        ck_assert_int_eq(sncp_msg_decode(buf, off, &m, &bad), 0);
        ck_assert_uint_eq(m.tlvs, 0);
        put16(buf + 12, (uint16_t)(t | SNCP_TLV_CRITICAL));
        ck_assert_int_eq(decode_err(buf, off, &bad), SNCP_E_CRITICAL_TLV);
        ck_assert_uint_eq(bad, t);
    }

    /* At most SNCP_MAX_TLVS TLVs, unknown ones included. */
    size_t off = 12;
    for (int k = 0; k < SNCP_MAX_TLVS; k++) {
        off += put_tlv(buf + off, 0x1234, NULL, 0);
    }
    put_header(buf, SNCP_MSG_SYNC_BEGIN, (uint32_t)off, 1);
    ck_assert_int_eq(decode_err(buf, off, &bad), 0);
    off += put_tlv(buf + off, 0x1234, NULL, 0);
    put_header(buf, SNCP_MSG_SYNC_BEGIN, (uint32_t)off, 1);
    ck_assert_int_eq(decode_err(buf, off, &bad), SNCP_E_MALFORMED);
    ck_assert_uint_eq(bad, 0);

    /* Type 0 and 13..255 are MALFORMED, with type and xid still reported. */
    for (unsigned t = 0; t < 256; t++) {
        if (t >= 1 && t <= SNCP_MSG_TYPE_MAX) {
            continue;
        }
        put_header(buf, (uint8_t)t, 12, 77);
        ck_assert_int_eq(sncp_msg_decode(buf, 12, &m, &bad), SNCP_E_MALFORMED);
        ck_assert_uint_eq(m.type, t);
        ck_assert_uint_eq(m.xid, 77);
    }

    /* A request with xid 0 is MALFORMED; KEEPALIVE and RESPONSE may use xid 0. */
    put_header(buf, SNCP_MSG_SYNC_BEGIN, 12, 0);
    ck_assert_int_eq(decode_err(buf, 12, &bad), SNCP_E_MALFORMED);
    ck_assert_uint_eq(bad, 0);
    put_header(buf, SNCP_MSG_KEEPALIVE, 12, 0);
    ck_assert_int_eq(decode_err(buf, 12, &bad), 0);
    size_t roff = 12 + put_tlv(buf + 12, SNCP_TLV_STATUS, "\0\0", 2);
    put_header(buf, SNCP_MSG_RESPONSE, (uint32_t)roff, 0);
    ck_assert_int_eq(decode_err(buf, roff, &bad), 0);

    /* The 257th TLV is checked for fitting before it is counted. */
    off = 12;
    for (int k = 0; k < SNCP_MAX_TLVS; k++) {
        off += put_tlv(buf + off, 0x1234, NULL, 0);
    }
    put16(buf + off, 0x1235);
    put16(buf + off + 2, 1);
    put_header(buf, SNCP_MSG_SYNC_BEGIN, (uint32_t)off + 4, 1);
    ck_assert_int_eq(decode_err(buf, off + 4, &bad), SNCP_E_MALFORMED);
    ck_assert_uint_eq(bad, 0x1235);

    /* Version: anything but 1 is UNSUPPORTED_VERSION, with type, flags and xid filled. */
    put_header(buf, SNCP_MSG_HELLO, 12, 88);
    buf[0] = 0;
    buf[3] = SNCP_F_MIGRATION;
    ck_assert_int_eq(sncp_msg_decode(buf, 12, &m, &bad), SNCP_E_UNSUPPORTED_VERSION);
    ck_assert_uint_eq(m.type, SNCP_MSG_HELLO);
    ck_assert_uint_eq(m.flags, SNCP_F_MIGRATION);
    ck_assert_uint_eq(m.xid, 88);
}
END_TEST

START_TEST(test_values)
{
    uint8_t buf[256];
    uint8_t val[32];
    uint16_t bad;
    static struct sncp_msg m;

    /* VN_ID bounds. */
    put32(val, SNCP_MAX_VN_ID);
    put_header(buf, SNCP_MSG_VN_CONNECT, 20, 1);
    put_tlv(buf + 12, SNCP_TLV_VN_ID, val, 4);
    ck_assert_int_eq(sncp_msg_decode(buf, 20, &m, &bad), 0);
    ck_assert_uint_eq(m.vn_id, SNCP_MAX_VN_ID);
    put32(buf + 16, SNCP_MAX_VN_ID + 1);
    ck_assert_int_eq(decode_err(buf, 20, &bad), SNCP_E_INVALID_VALUE);
    ck_assert_uint_eq(bad, SNCP_TLV_VN_ID);

    /* Tags: VID 1..4094, PCP 0..7 or 0xFF; reserved byte ignored. */
    for (unsigned vid = 0; vid < 4097; vid += (vid < 4 || vid > 4090) ? 1 : 1000) {
        for (unsigned pcp = 0; pcp < 256; pcp += (pcp < 9 || pcp > 250) ? 1 : 50) {
            put16(val, (uint16_t)vid);
            val[2] = (uint8_t)pcp;
            val[3] = 0x5A;
            size_t off = 12 + put_tlv(buf + 12, SNCP_TLV_STATUS, "\0\0", 2);
            off += put_tlv(buf + off, SNCP_TLV_LOCAL_TAG, val, 4);
            put_header(buf, SNCP_MSG_RESPONSE, (uint32_t)off, 1);
            bool ok = vid >= 1 && vid <= 4094 && (pcp <= 7 || pcp == 0xFF);
            int err = sncp_msg_decode(buf, off, &m, &bad);
            ck_assert_int_eq(err, ok ? 0 : SNCP_E_INVALID_VALUE);
            if (ok) {
                ck_assert_uint_eq(m.tags[0].vid, vid);
                ck_assert_uint_eq(m.tags[0].pcp, pcp);
            } else {
                ck_assert_uint_eq(bad, SNCP_TLV_LOCAL_TAG);
            }
        }
    }

    /* Keepalive limits. */
    static const struct {
        uint32_t v;
        bool ok;
    } kas[] = {{0, false},
               {SNCP_MIN_KEEPALIVE_MS - 1, false},
               {SNCP_MIN_KEEPALIVE_MS, true},
               {SNCP_MAX_KEEPALIVE_MS, true},
               {SNCP_MAX_KEEPALIVE_MS + 1, false},
               {0xFFFFFFFF, false}};
    for (size_t i = 0; i < sizeof kas / sizeof kas[0]; i++) {
        put32(val, kas[i].v);
        size_t off = 12 + put_tlv(buf + 12, SNCP_TLV_STATUS, "\0\0", 2);
        off += put_tlv(buf + off, SNCP_TLV_KEEPALIVE, val, 4);
        put_header(buf, SNCP_MSG_RESPONSE, (uint32_t)off, 1);
        ck_assert_int_eq(decode_err(buf, off, &bad), kas[i].ok ? 0 : SNCP_E_INVALID_VALUE);
    }

    /* UTF-8: valid forms accepted, every kind of invalid one rejected. */
    static const struct {
        const char *s;
        size_t len;
        bool ok;
    } strs[] = {
        {"abc", 3, true},
        {"\xc3\xbc", 2, true},
        {"\xe2\x82\xac", 3, true},
        {"\xf0\x9f\x98\x80", 4, true},
        {"\xf4\x8f\xbf\xbf", 4, true},
        {"\x7f", 1, true},
        {"a\0", 2, false},
        {"\x80", 1, false},
        {"\xc3", 1, false},
        {"\xc0\x80", 2, false},
        {"\xe0\x80\xaf", 3, false},
        {"\xed\xa0\x80", 3, false},
        {"\xf4\x90\x80\x80", 4, false},
        {"\xf8\x88\x80\x80\x80", 5, false},
        {"\xe2\x82", 2, false},
        {"\xe2\x28\xac", 3, false},
        {"\xff", 1, false},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        size_t off = 12 + put_tlv(buf + 12, SNCP_TLV_VN_NAME, strs[i].s, (uint16_t)strs[i].len);
        put_header(buf, SNCP_MSG_VN_CONNECT, (uint32_t)off, 1);
        int err = sncp_msg_decode(buf, off, &m, &bad);
        ck_assert_msg(err == (strs[i].ok ? 0 : SNCP_E_INVALID_VALUE), "string %zu: %d", i, err);
        if (strs[i].ok) {
            ck_assert_mem_eq(m.vn_name, strs[i].s, strs[i].len);
            ck_assert_uint_eq(strlen(m.vn_name), strs[i].len);
        }
    }

    /* Address types and their exact lengths. */
    static const size_t body[6] = {0, 6, 4, 16, 10, 22};
    for (unsigned type = 0; type < 8; type++) {
        for (size_t blen = 4; blen <= 22; blen++) {
            memset(val, 0x11, sizeof val);
            val[0] = (uint8_t)type;
            size_t off = 12 + put_tlv(buf + 12, SNCP_TLV_TSI_ID, val + 10, 22);
            off += put_tlv(buf + off, SNCP_TLV_ADDRESS, val, (uint16_t)(1 + blen));
            put_header(buf, SNCP_MSG_TSI_DEACTIVATE, (uint32_t)off, 1);
            int err = decode_err(buf, off, &bad);
            int want = (type < 1 || type > 5) ? SNCP_E_INVALID_VALUE
                       : blen == body[type]   ? 0
                                              : SNCP_E_MALFORMED;
            ck_assert_msg(err == want, "addr type %u len %zu: %d", type, blen, err);
        }
    }

    /* UPDATE_OP, TSI_STATE, VERSION_RANGE. */
    for (unsigned op = 0; op < 256; op++) {
        memset(val, 0, sizeof val);
        size_t off = 12 + put_tlv(buf + 12, SNCP_TLV_TSI_ID, val, 22);
        val[0] = (uint8_t)op;
        off += put_tlv(buf + off, SNCP_TLV_UPDATE_OP, val, 1);
        put_header(buf, SNCP_MSG_TSI_UPDATE, (uint32_t)off, 1);
        ck_assert_int_eq(decode_err(buf, off, &bad), op >= 1 && op <= 3 ? 0 : SNCP_E_INVALID_VALUE);

        off = 12 + put_tlv(buf + 12, SNCP_TLV_STATUS, "\0\0", 2);
        off += put_tlv(buf + off, SNCP_TLV_TSI_STATE, val, 1);
        put_header(buf, SNCP_MSG_RESPONSE, (uint32_t)off, 1);
        ck_assert_int_eq(decode_err(buf, off, &bad), op <= 2 ? 0 : SNCP_E_INVALID_VALUE);
    }
    for (unsigned lo = 0; lo < 4; lo++) {
        for (unsigned hi = 0; hi < 4; hi++) {
            val[0] = (uint8_t)lo;
            val[1] = (uint8_t)hi;
            size_t off = 12 + put_tlv(buf + 12, SNCP_TLV_STATUS, "\0\0", 2);
            off += put_tlv(buf + off, SNCP_TLV_VERSION_RANGE, val, 2);
            put_header(buf, SNCP_MSG_RESPONSE, (uint32_t)off, 1);
            ck_assert_int_eq(decode_err(buf, off, &bad),
                             lo >= 1 && lo <= hi ? 0 : SNCP_E_INVALID_VALUE);
        }
    }
}
END_TEST

/* ---- encoder policy ----------------------------------------------------------------- */

START_TEST(test_encode_policy)
{
    static struct sncp_msg m;
    uint8_t buf[4096];

#define EXPECT_ENC(err) ck_assert_int_eq(sncp_msg_encode(&m, buf, sizeof buf), (err))
    sncp_msg_init(&m, SNCP_MSG_VN_CONNECT, 1);
    EXPECT_ENC(SNCP_E_MISSING_TLV);
    m.vn_id = SNCP_MAX_VN_ID + 1;
    sncp_msg_set(&m, SNCP_TLV_VN_ID);
    EXPECT_ENC(SNCP_E_INVALID_VALUE);
    m.vn_id = 1;
    ck_assert_int_gt(sncp_msg_encode(&m, buf, sizeof buf), 0);
    sncp_msg_set(&m, SNCP_TLV_STATUS); /* not allowed in VN_CONNECT */
    EXPECT_ENC(SNCP_E_INVALID_VALUE);
    m.tlvs &= ~SNCP_TLV_BIT(SNCP_TLV_STATUS);
    m.n_preferred_tags = 1;
    m.preferred_tags[0].vid = 0;
    EXPECT_ENC(SNCP_E_INVALID_VALUE);
    m.preferred_tags[0] = (struct sncp_tag){4094, 8};
    EXPECT_ENC(SNCP_E_INVALID_VALUE);
    m.preferred_tags[0] = (struct sncp_tag){4094, 7};
    ck_assert_int_gt(sncp_msg_encode(&m, buf, sizeof buf), 0);
    m.n_preferred_tags = SNCP_MAX_TAGS + 1;
    EXPECT_ENC(SNCP_E_INVALID_VALUE);
    m.n_preferred_tags = 0;
    m.n_tags = 1; /* LOCAL_TAG only in RESPONSE */
    m.tags[0] = (struct sncp_tag){5, SNCP_PCP_NONE};
    EXPECT_ENC(SNCP_E_INVALID_VALUE);
    m.n_tags = 0;

    /* Strings: empty where a minimum applies, unterminated, invalid UTF-8. */
    sncp_msg_set(&m, SNCP_TLV_VN_NAME);
    EXPECT_ENC(SNCP_E_INVALID_VALUE);
    memset(m.vn_name, 'a', sizeof m.vn_name);
    EXPECT_ENC(SNCP_E_INVALID_VALUE);
    m.vn_name[SNCP_MAX_VN_NAME_LEN] = '\0';
    ck_assert_int_gt(sncp_msg_encode(&m, buf, sizeof buf), 0);
    m.vn_name[3] = (char)0xC0;
    EXPECT_ENC(SNCP_E_INVALID_VALUE);

    /* xid 0 only for KEEPALIVE and RESPONSE. */
    sncp_msg_init(&m, SNCP_MSG_SYNC_BEGIN, 0);
    EXPECT_ENC(SNCP_E_INVALID_VALUE);
    sncp_msg_init(&m, SNCP_MSG_KEEPALIVE, 0);
    ck_assert_int_eq(sncp_msg_encode(&m, buf, sizeof buf), SNCP_HEADER_LEN);

    /* Types, values. */
    sncp_msg_init(&m, 0, 1);
    EXPECT_ENC(SNCP_E_INVALID_VALUE);
    sncp_msg_init(&m, 13, 1);
    EXPECT_ENC(SNCP_E_INVALID_VALUE);
    sncp_msg_init(&m, SNCP_MSG_KEEPALIVE, 1);
    ck_assert_int_eq(sncp_msg_encode(&m, buf, sizeof buf), SNCP_HEADER_LEN);
    m.n_addrs = 1;
    m.addrs[0].type = SNCP_ADDR_MAC;
    EXPECT_ENC(SNCP_E_INVALID_VALUE);

    sncp_msg_init(&m, SNCP_MSG_TSI_UPDATE, 1);
    fill_tsi(&m);
    EXPECT_ENC(SNCP_E_MISSING_TLV);
    sncp_msg_set(&m, SNCP_TLV_UPDATE_OP);
    EXPECT_ENC(SNCP_E_INVALID_VALUE);
    m.update_op = SNCP_UPDATE_ADD;
    m.n_addrs = 1;
    m.addrs[0].type = 9;
    EXPECT_ENC(SNCP_E_INVALID_VALUE);
    m.addrs[0].type = SNCP_ADDR_IPV6_MAC;
    ck_assert_int_gt(sncp_msg_encode(&m, buf, sizeof buf), 0);
    m.n_addrs = SNCP_MAX_ADDRS + 1;
    EXPECT_ENC(SNCP_E_INVALID_VALUE);

    sncp_msg_init(&m, SNCP_MSG_RESPONSE, 1);
    sncp_msg_set(&m, SNCP_TLV_STATUS);
    sncp_msg_set(&m, SNCP_TLV_TSI_STATE);
    m.tsi_state = 3;
    EXPECT_ENC(SNCP_E_INVALID_VALUE);
    m.tsi_state = 2;
    sncp_msg_set(&m, SNCP_TLV_KEEPALIVE);
    EXPECT_ENC(SNCP_E_INVALID_VALUE);
    m.keepalive_ms = 1000;
    sncp_msg_set(&m, SNCP_TLV_VERSION_RANGE);
    m.version_min = 2, m.version_max = 1;
    EXPECT_ENC(SNCP_E_INVALID_VALUE);
    m.version_min = 1;
    ck_assert_int_gt(sncp_msg_encode(&m, buf, sizeof buf), 0);
    /* Failed encodes leave cap == 0 alone too. */
    ck_assert_int_eq(sncp_msg_encode(&m, NULL, 0), -ENOBUFS);

    sncp_msg_init(&m, SNCP_MSG_HELLO, 1);
    sncp_msg_set(&m, SNCP_TLV_VERSION_RANGE);
    m.version_min = m.version_max = 1;
    sncp_msg_set(&m, SNCP_TLV_SESSION_EPOCH);
    EXPECT_ENC(SNCP_E_MISSING_TLV);
    set_str(m.node_id, sizeof m.node_id, "n");
    sncp_msg_set(&m, SNCP_TLV_NODE_ID);
    m.n_uplink_macs = SNCP_MAX_UPLINK_MACS + 1;
    EXPECT_ENC(SNCP_E_INVALID_VALUE);
    m.n_uplink_macs = SNCP_MAX_UPLINK_MACS;
    ck_assert_int_gt(sncp_msg_encode(&m, buf, sizeof buf), 0);
#undef EXPECT_ENC
}
END_TEST

/* ---- text --------------------------------------------------------------------------- */

START_TEST(test_format_truncates)
{
    static struct sncp_msg m;
    char full[16384], small[64];

    build_full(&m, SNCP_MSG_RESPONSE);
    int len = sncp_msg_format(&m, full, sizeof full);
    ck_assert_int_eq(len, (int)strlen(full));
    for (size_t cap = 0; cap < sizeof small; cap++) {
        memset(small, 'X', sizeof small);
        ck_assert_int_eq(sncp_msg_format(&m, small, cap), len);
        if (cap > 0) {
            ck_assert_uint_eq(strlen(small), cap - 1);
            ck_assert(strncmp(small, full, cap - 1) == 0);
        } else {
            ck_assert_int_eq(small[0], 'X');
        }
    }
    ck_assert_int_eq(sncp_msg_format(&m, NULL, 0), len);

    /* Out-of-range values in a hand-built struct still format safely. */
    sncp_msg_init(&m, SNCP_MSG_RESPONSE, 5);
    m.type = 99;
    m.flags = 0x8001;
    m.tlvs = 0xFFFFFFFF;
    m.n_addrs = 255;
    m.n_tags = 255;
    m.n_preferred_tags = 255;
    m.n_uplink_macs = 255;
    m.status = 500;
    m.update_op = 9;
    m.tsi_state = 9;
    m.request_type = 200;
    m.error_tlv = 0x9999;
    memset(m.node_id, 'n', sizeof m.node_id);
    len = sncp_msg_format(&m, full, sizeof full);
    ck_assert_int_eq(len, (int)strlen(full));
    const char *prefix = "type-99 xid=5 flags=migration,0x8000 ";
    ck_assert(strncmp(full, prefix, strlen(prefix)) == 0);
    ck_assert_ptr_nonnull(strstr(full, " status=status-500 "));
    ck_assert_ptr_nonnull(strstr(full, " request_type=200 "));
    ck_assert_ptr_nonnull(strstr(full, " error_tlv=39321 "));
}
END_TEST

/* The identifier formatters behave as snprintf does at every buffer size: the full length
 * returned, the text cut to cap - 1 bytes and terminated, nothing written past cap. */
START_TEST(test_identifier_format_truncates)
{
    struct sncp_tsi_id id;
    ck_assert_int_eq(
        sncp_tsi_id_parse("0123abcd-ef45-4067-89ab-cdef01234567/fe:dc:ba:98:76:54", &id), 0);
    const char *want = "0123abcd-ef45-4067-89ab-cdef01234567/fe:dc:ba:98:76:54";
    int full = (int)strlen(want);
    for (size_t cap = 0; cap <= (size_t)full + 2; cap++) {
        char buf[80], mac[24], uuid[48];
        memset(buf, 'X', sizeof buf);
        ck_assert_int_eq(sncp_tsi_id_format(&id, buf, cap), full);
        if (cap) {
            size_t n = cap - 1 < (size_t)full ? cap - 1 : (size_t)full;
            ck_assert(memcmp(buf, want, n) == 0);
            ck_assert_int_eq(buf[n], '\0');
        }
        ck_assert_int_eq(buf[cap], 'X');
        if (cap <= 18) {
            memset(mac, 'X', sizeof mac);
            ck_assert_int_eq(sncp_mac_format(id.mac, mac, cap), 17);
            if (cap)
                ck_assert(strncmp(mac, "fe:dc:ba:98:76:54", cap - 1) == 0 &&
                          mac[cap - 1 < 17 ? cap - 1 : 17] == '\0');
            ck_assert_int_eq(mac[cap], 'X');
        }
        if (cap <= 37) {
            memset(uuid, 'X', sizeof uuid);
            ck_assert_int_eq(sncp_uuid_format(id.uuid, uuid, cap), 36);
            if (cap)
                ck_assert(strncmp(uuid, want, cap - 1 < 36 ? cap - 1 : 36) == 0 &&
                          uuid[cap - 1 < 36 ? cap - 1 : 36] == '\0');
            ck_assert_int_eq(uuid[cap], 'X');
        }
    }
}
END_TEST

START_TEST(test_identifiers)
{
    uint8_t mac[6], uuid[16];
    char buf[128];
    struct sncp_tsi_id id;
    struct sncp_addr a;

    ck_assert_int_eq(sncp_mac_parse("52:54:00:AB:cd:0f", mac), 0);
    ck_assert_int_eq(sncp_mac_format(mac, buf, sizeof buf), 17);
    ck_assert_str_eq(buf, "52:54:00:ab:cd:0f");
    static const char *const bad_macs[] = {"", "52:54:00:ab:cd", "52:54:00:ab:cd:0f:", "52-54-00-ab-cd-0f",
                                           "5:54:00:ab:cd:0f", "52:54:00:ab:cd:0g", "52:54:00:ab:cd:0f1"};
    for (size_t i = 0; i < sizeof bad_macs / sizeof bad_macs[0]; i++) {
        ck_assert_int_eq(sncp_mac_parse(bad_macs[i], mac), SNCP_E_INVALID_VALUE);
    }

    ck_assert_int_eq(sncp_uuid_parse("4D5E6F70-0000-4000-8000-0000000000AB", uuid), 0);
    ck_assert_int_eq(sncp_uuid_format(uuid, buf, sizeof buf), 36);
    ck_assert_str_eq(buf, "4d5e6f70-0000-4000-8000-0000000000ab");
    static const char *const bad_uuids[] = {"", "4d5e6f70000040008000000000000001",
                                            "4d5e6f70-0000-4000-8000-00000000000",
                                            "4d5e6f70-0000-4000-8000-0000000000011",
                                            "{4d5e6f70-0000-4000-8000-000000000001}",
                                            "4d5e6f7-00000-4000-8000-000000000001"};
    for (size_t i = 0; i < sizeof bad_uuids / sizeof bad_uuids[0]; i++) {
        ck_assert_int_eq(sncp_uuid_parse(bad_uuids[i], uuid), SNCP_E_INVALID_VALUE);
    }

    const char *tsi = "4d5e6f70-0000-4000-8000-000000000001/52:54:00:12:34:56";
    ck_assert_int_eq(sncp_tsi_id_parse(tsi, &id), 0);
    ck_assert_int_eq(sncp_tsi_id_format(&id, buf, sizeof buf), (int)strlen(tsi));
    ck_assert_str_eq(buf, tsi);
    ck_assert_int_lt((int)strlen(tsi), SNCP_TSI_ID_STRLEN);
    ck_assert_int_eq(sncp_tsi_id_parse("4d5e6f70-0000-4000-8000-000000000001", &id),
                     SNCP_E_INVALID_VALUE);
    ck_assert_int_eq(sncp_tsi_id_parse("4d5e6f70-0000-4000-8000-000000000001/52:54:00:12:34:56/",
                                       &id),
                     SNCP_E_INVALID_VALUE);

    static const struct {
        const char *in, *out;
        int type;
    } addrs[] = {
        {"52:54:00:00:00:01", "52:54:00:00:00:01", SNCP_ADDR_MAC},
        {"192.0.2.1", "192.0.2.1", SNCP_ADDR_IPV4},
        {"2001:DB8:0::1", "2001:db8::1", SNCP_ADDR_IPV6},
        {"192.0.2.1@52:54:00:00:00:01", "192.0.2.1@52:54:00:00:00:01", SNCP_ADDR_IPV4_MAC},
        {"2001:db8::1@52:54:00:00:00:01", "2001:db8::1@52:54:00:00:00:01", SNCP_ADDR_IPV6_MAC},
        {"::ffff:192.0.2.1", "::ffff:192.0.2.1", SNCP_ADDR_IPV6},
    };
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
        ck_assert_int_eq(sncp_addr_parse(addrs[i].in, &a), 0);
        ck_assert_int_eq(a.type, addrs[i].type);
        ck_assert_int_eq(sncp_addr_format(&a, buf, sizeof buf), (int)strlen(addrs[i].out));
        ck_assert_str_eq(buf, addrs[i].out);
    }
    static const char *const bad_addrs[] = {"", "@", "192.0.2.1@", "@52:54:00:00:00:01",
                                            "192.0.2.256", "192.0.2.1@52:54:00:00:00",
                                            "2001:db8::1@x", "host", "192.0.2.1@52:54:00:00:00:01@"};
    for (size_t i = 0; i < sizeof bad_addrs / sizeof bad_addrs[0]; i++) {
        ck_assert_msg(sncp_addr_parse(bad_addrs[i], &a) == SNCP_E_INVALID_VALUE, "%s",
                      bad_addrs[i]);
    }
    /* The longest form fits SNCP_ADDR_STRLEN. */
    memset(&a, 0xFF, sizeof a);
    a.type = SNCP_ADDR_IPV6_MAC;
    ck_assert_int_lt(sncp_addr_format(&a, buf, sizeof buf), SNCP_ADDR_STRLEN);

    ck_assert_str_eq(sncp_msg_type_name(SNCP_MSG_TSI_ACTIVATE), "TSI_ACTIVATE");
    ck_assert_str_eq(sncp_msg_type_name(0), "UNKNOWN");
    ck_assert_str_eq(sncp_msg_type_name(13), "UNKNOWN");
    ck_assert_str_eq(sncp_tlv_name(SNCP_TLV_RETRY_AFTER), "RETRY_AFTER");
    ck_assert_str_eq(sncp_tlv_name(22), "UNKNOWN");
    ck_assert_str_eq(sncp_tsi_state_name(SNCP_TSI_ASSOCIATED), "associated");
    ck_assert_str_eq(sncp_tsi_state_name(3), "UNKNOWN");
    for (unsigned t = 1; t <= SNCP_MSG_TYPE_MAX; t++) {
        ck_assert_str_ne(sncp_msg_type_name(t), "UNKNOWN");
    }
    for (unsigned t = 1; t <= SNCP_TLV_TYPE_MAX; t++) {
        ck_assert_str_ne(sncp_tlv_name(t), "UNKNOWN");
    }
}
END_TEST

static Suite *msg_suite(void)
{
    Suite *s = suite_create("sncp-msg");
    TCase *tc = tcase_create("codec");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_vectors_valid);
    tcase_add_test(tc, test_vectors_malformed);
    tcase_add_test(tc, test_truncation);
    tcase_add_loop_test(tc, test_roundtrip_every_type, 1, SNCP_MSG_TYPE_MAX + 1);
    tcase_add_test(tc, test_roundtrip_minimal);
    tcase_add_test(tc, test_lying_lengths);
    tcase_add_test(tc, test_tlv_rules);
    tcase_add_test(tc, test_values);
    tcase_add_test(tc, test_encode_policy);
    tcase_add_test(tc, test_format_truncates);
    tcase_add_test(tc, test_identifiers);
    tcase_add_test(tc, test_identifier_format_truncates);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(msg_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
