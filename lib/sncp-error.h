/* sncp-error.h: the one error convention of splitnve.
 *
 * Every function returns int: 0 (or a non-negative count) on success, negative on failure.
 * System errors are -errno.  Protocol errors live in their own range, -(SNCP_ERR_BASE + n):
 * for n < 256 the error maps one-to-one onto the SNCP wire status code n (proto/PROTOCOL.md
 * §7), so a failure detected anywhere can be put on the wire without a translation table.
 * Errors at or above SNCP_ERR_LOCAL never go on the wire (TLS, timeouts, local conditions).
 */
#ifndef SNCP_ERROR_H
#define SNCP_ERROR_H 1

#include <stdint.h>

#define SNCP_ERR_BASE 4096
#define SNCP_ERR_LOCAL 256

/* XX(NAME, n, token, text): SNCP_STATUS_NAME = n on the wire, SNCP_E_NAME = -(BASE + n). */
#define SNCP_STATUS_MAP(XX)                                                                    \
    XX(SUCCESS, 0, "success", "success")                                                       \
    XX(MALFORMED, 1, "malformed", "malformed message")                                         \
    XX(UNSUPPORTED_VERSION, 2, "unsupported-version", "unsupported protocol version")          \
    XX(CRITICAL_TLV, 3, "unknown-critical-tlv", "unknown critical TLV")                        \
    XX(NOT_AUTHORIZED, 4, "not-authorized", "not authorized")                                  \
    XX(NO_SUCH_VN, 5, "no-such-vn", "no such VN")                                              \
    XX(NO_SUCH_TSI, 6, "no-such-tsi", "no such TSI")                                           \
    XX(INVALID_STATE, 7, "invalid-state", "invalid state transition")                          \
    XX(TAG_POOL_EXHAUSTED, 8, "tag-pool-exhausted", "local tag pool exhausted")                \
    XX(RESOURCE_LIMIT, 9, "resource-limit", "resource limit reached")                          \
    XX(BUSY, 10, "busy", "busy, retry later")                                                  \
    XX(INTERNAL, 11, "internal-error", "internal error")                                       \
    XX(MISSING_TLV, 12, "missing-tlv", "mandatory TLV missing")                                \
    XX(INVALID_VALUE, 13, "invalid-value", "invalid TLV value")                                \
    XX(CONFLICT, 14, "conflict", "conflicts with existing state")                              \
    XX(UNEXPECTED_MESSAGE, 15, "unexpected-message", "message not allowed here")

/* Local errors: never on the wire. */
#define SNCP_LOCAL_ERROR_MAP(XX)                                                               \
    XX(TLS, 256, "tls-error", "TLS failure")                                                   \
    XX(TLS_HANDSHAKE, 257, "tls-handshake-failed", "TLS handshake failed")                     \
    XX(PEER_IDENTITY, 258, "peer-identity-mismatch", "peer identity does not match")           \
    XX(PEER_CLOSED, 259, "peer-closed", "peer closed the session")                             \
    XX(TIMEOUT, 260, "timeout", "timed out")                                                   \
    XX(NOT_ESTABLISHED, 261, "not-established", "session not established")                     \
    XX(TOO_BIG, 262, "too-big", "message exceeds the maximum size")                            \
    XX(CONFIG, 263, "config-error", "configuration error")                                     \
    XX(CLOSED, 264, "closed", "session closed")                                                \
    XX(CONNECT_TIMEOUT, 265, "connect-timeout", "not connected in time")

enum sncp_status {
#define SNCP_XX_STATUS(name, n, token, text) SNCP_STATUS_##name = n,
    SNCP_STATUS_MAP(SNCP_XX_STATUS)
#undef SNCP_XX_STATUS
    SNCP_STATUS_COUNT_
};

enum sncp_error {
#define SNCP_XX_ERR(name, n, token, text) SNCP_E_##name = -(SNCP_ERR_BASE + (n)),
    SNCP_STATUS_MAP(SNCP_XX_ERR) SNCP_LOCAL_ERROR_MAP(SNCP_XX_ERR)
#undef SNCP_XX_ERR
};

/* Text for any error this project returns: -errno, SNCP_E_*, or 0.  Never NULL. */
const char *sncp_strerror(int err);

/* Short, grep-able token ("tag-pool-exhausted", "ECONNREFUSED", ...) for logs and JSON. */
const char *sncp_error_token(int err);

/* Wire status code for an error.  0 -> SUCCESS; wire-mappable SNCP_E_* -> its code;
 * anything else (errno, local errors) -> SNCP_STATUS_INTERNAL. */
uint16_t sncp_status_from_error(int err);

/* Error for a received wire status: SUCCESS -> 0; known code -> SNCP_E_*; an unknown code
 * -> -(SNCP_ERR_BASE + code) all the same (callers treat it as a generic failure). */
int sncp_error_from_status(uint16_t status);

/* Token and text for a wire status code; unknown codes give "status-N" / "unknown status". */
const char *sncp_status_token(uint16_t status);
const char *sncp_status_text(uint16_t status);

#endif
