/* sncp-frame.h: splits a byte stream into SNCP messages.
 *
 * Byte-stream transports (TLS over TCP, TLS over the L2 channel) carry messages back to
 * back; each message's header declares its total length (PROTOCOL.md §3).  The framer is
 * incremental: any chunking of the same bytes yields the same messages.  It buffers at
 * most one message (SNCP_MAX_MSG_LEN), never more, whatever the peer sends.
 */
#ifndef SNCP_FRAME_H
#define SNCP_FRAME_H 1

#include <stddef.h>
#include <stdint.h>

#include "sncp-msg.h"

struct sncp_framer {
    uint8_t buf[SNCP_MAX_MSG_LEN];
    size_t len;   /* bytes buffered */
    size_t need;  /* total length of the message being assembled, 0 while unknown */
    int error;    /* sticky: once the stream is broken it stays broken */
};

/* Called for each complete message (header included).  The bytes are valid only during the
 * call.  A non-zero return stops feeding and is returned by sncp_framer_feed(). */
typedef int sncp_framer_cb(void *ctx, const uint8_t *msg, size_t len);

void sncp_framer_init(struct sncp_framer *f);

/* Feeds data[0..len).  Returns 0 when all bytes were consumed; the callback's non-zero return
 * if it stopped; or SNCP_E_MALFORMED / SNCP_E_UNSUPPORTED_VERSION when a header is invalid
 * (declared length below the header size or above SNCP_MAX_MSG_LEN, wrong version), after
 * which every later call fails the same way: the stream cannot be resynchronised. */
int sncp_framer_feed(struct sncp_framer *f, const uint8_t *data, size_t len, sncp_framer_cb *cb,
                     void *ctx);

/* Bytes buffered of an incomplete message. */
size_t sncp_framer_pending(const struct sncp_framer *f);

#endif
