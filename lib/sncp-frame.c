/* sncp-frame.c: reassembles SNCP messages from a byte stream (PROTOCOL.md §3).
 *
 * A message that arrives whole inside one chunk is handed to the callback straight from the
 * caller's bytes; only a message split across chunks is copied into the framer's one-message
 * buffer.  The declared length is checked as soon as the 12-byte header is known, before any
 * of the body is buffered, so a peer can never make the framer hold more than
 * SNCP_MAX_MSG_LEN bytes.  Any failure is sticky: a byte stream cannot be resynchronised.
 */
#include "sncp-frame.h"

#include <string.h>

void sncp_framer_init(struct sncp_framer *f)
{
    f->len = 0;
    f->need = 0;
    f->error = 0;
}

size_t sncp_framer_pending(const struct sncp_framer *f)
{
    return f->len;
}

static int framer_fail(struct sncp_framer *f, int err)
{
    f->error = err;
    return err;
}

int sncp_framer_feed(struct sncp_framer *f, const uint8_t *data, size_t len, sncp_framer_cb *cb,
                     void *ctx)
{
    if (f->error) {
        return f->error;
    }
    while (len > 0) {
        uint32_t total;
        int err;

        if (f->len == 0 && len >= SNCP_HEADER_LEN) {
            /* Nothing buffered: deliver complete messages in place. */
            err = sncp_msg_peek_header(data, len, &total);
            if (err) {
                return framer_fail(f, err);
            }
            if (len >= total) {
                err = cb(ctx, data, total);
                data += total;
                len -= total;
                if (err) {
                    return framer_fail(f, err);
                }
                continue;
            }
            f->need = total;
        }
        if (f->need == 0) {
            size_t take = SNCP_HEADER_LEN - f->len;
            if (take > len) {
                take = len;
            }
            memcpy(f->buf + f->len, data, take);
            f->len += take;
            data += take;
            len -= take;
            if (f->len < SNCP_HEADER_LEN) {
                return 0;
            }
            err = sncp_msg_peek_header(f->buf, f->len, &total);
            if (err) {
                return framer_fail(f, err);
            }
            f->need = total;
        }
        size_t take = f->need - f->len;
        if (take > len) {
            take = len;
        }
        memcpy(f->buf + f->len, data, take);
        f->len += take;
        data += take;
        len -= take;
        if (f->len == f->need) {
            size_t msg_len = f->len;
            f->len = 0;
            f->need = 0;
            err = cb(ctx, f->buf, msg_len);
            if (err) {
                return framer_fail(f, err);
            }
        }
    }
    return 0;
}
