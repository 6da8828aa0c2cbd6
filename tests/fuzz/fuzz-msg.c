/* fuzz-msg.c: libFuzzer target for the SNCP message decoder.
 *
 * Decodes the input; whatever decodes must encode, and the encoding must decode again to an
 * equal message and re-encode to the same bytes (abort otherwise).  The text form is
 * produced into a small buffer to exercise its truncation path.
 * Seeds: tests/fuzz/corpus/msg/ (scripts/vectors-to-corpus.sh).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sncp-msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPEATABLE                                                                             \
    (SNCP_TLV_BIT(SNCP_TLV_UPLINK_MAC) | SNCP_TLV_BIT(SNCP_TLV_ADDRESS) |                      \
     SNCP_TLV_BIT(SNCP_TLV_LOCAL_TAG) | SNCP_TLV_BIT(SNCP_TLV_PREFERRED_TAG))

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz-msg: %s\n", what);
        abort();
    }
}

/* The decoder zeroes the struct and fills only what the TLVs carry, so two decodes of
 * equivalent messages are equal field by field (strings compared as strings). */
static int msg_equal(const struct sncp_msg *a, const struct sncp_msg *b)
{
    return a->type == b->type && a->xid == b->xid && a->flags == b->flags &&
           (a->tlvs & ~REPEATABLE) == (b->tlvs & ~REPEATABLE) &&
           a->version_min == b->version_min && a->version_max == b->version_max &&
           a->capabilities == b->capabilities && strcmp(a->node_id, b->node_id) == 0 &&
           a->session_epoch == b->session_epoch && a->keepalive_ms == b->keepalive_ms &&
           a->hold_time_ms == b->hold_time_ms && a->n_uplink_macs == b->n_uplink_macs &&
           memcmp(a->uplink_macs, b->uplink_macs, sizeof a->uplink_macs) == 0 &&
           a->vn_id == b->vn_id && strcmp(a->vn_name, b->vn_name) == 0 &&
           memcmp(&a->tsi, &b->tsi, sizeof a->tsi) == 0 && a->n_addrs == b->n_addrs &&
           memcmp(a->addrs, b->addrs, sizeof a->addrs) == 0 && a->n_tags == b->n_tags &&
           memcmp(a->tags, b->tags, sizeof a->tags) == 0 &&
           a->n_preferred_tags == b->n_preferred_tags &&
           memcmp(a->preferred_tags, b->preferred_tags, sizeof a->preferred_tags) == 0 &&
           a->update_op == b->update_op && strcmp(a->port, b->port) == 0 &&
           a->status == b->status && strcmp(a->reason, b->reason) == 0 &&
           a->error_tlv == b->error_tlv && a->request_type == b->request_type &&
           a->tsi_state == b->tsi_state && a->retry_after_ms == b->retry_after_ms;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sncp_msg m1, m2;
    static uint8_t enc1[SNCP_MAX_MSG_LEN], enc2[SNCP_MAX_MSG_LEN];
    char text[96];
    uint16_t bad;

    int err = sncp_msg_decode(data, size, &m1, &bad);
    sncp_msg_format(&m1, text, sizeof text);
    if (err) {
        check(err == SNCP_E_MALFORMED || err == SNCP_E_UNSUPPORTED_VERSION ||
                  err == SNCP_E_CRITICAL_TLV || err == SNCP_E_MISSING_TLV ||
                  err == SNCP_E_INVALID_VALUE,
              "unexpected decode error");
        return 0;
    }
    check(bad == 0, "bad_tlv set on success");
    int len = sncp_msg_encode(&m1, enc1, sizeof enc1);
    check(len >= SNCP_HEADER_LEN && (size_t)len <= size, "decoded message does not encode");
    err = sncp_msg_decode(enc1, (size_t)len, &m2, &bad);
    check(err == 0, "encoded message does not decode");
    check(msg_equal(&m1, &m2), "round trip differs");
    check(sncp_msg_encode(&m2, enc2, sizeof enc2) == len && memcmp(enc1, enc2, (size_t)len) == 0,
          "re-encoding differs");
    check(sncp_msg_encode(&m1, enc2, (size_t)len - 1) < 0, "encode into short buffer");
    return 0;
}
