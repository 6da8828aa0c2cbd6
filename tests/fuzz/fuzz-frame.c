/* fuzz-frame.c: libFuzzer target for the stream framer.
 *
 * The first bytes of the input choose chunk sizes; the rest is fed to the framer in those
 * chunks, and every frame is decoded.  The same bytes are also fed in one piece: both runs
 * must give the same frames and the same final result (chunking never matters).
 * Seeds: tests/fuzz/corpus/frame/ (scripts/vectors-to-corpus.sh).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sncp-frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_SIZES 4

struct trace {
    uint64_t hash;
    size_t frames;
};

static int frame_cb(void *ctx, const uint8_t *msg, size_t len)
{
    static struct sncp_msg m;
    struct trace *t = ctx;
    uint16_t bad;

    if (len < SNCP_HEADER_LEN || len > SNCP_MAX_MSG_LEN) {
        abort();
    }
    sncp_msg_decode(msg, len, &m, &bad);
    /* FNV-1a over the frame boundaries and contents. */
    t->hash ^= len;
    t->hash *= 0x100000001b3ULL;
    for (size_t i = 0; i < len; i++) {
        t->hash ^= msg[i];
        t->hash *= 0x100000001b3ULL;
    }
    t->frames++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sncp_framer f;
    size_t sizes[N_SIZES];

    if (size < N_SIZES) {
        return 0;
    }
    for (int i = 0; i < N_SIZES; i++) {
        sizes[i] = 1 + (size_t)data[i] * (i == N_SIZES - 1 ? 97 : 1);
    }
    data += N_SIZES;
    size -= N_SIZES;

    struct trace chunked = {0xcbf29ce484222325ULL, 0};
    sncp_framer_init(&f);
    int err = 0;
    for (size_t off = 0, i = 0; off < size && err == 0; i++) {
        size_t n = sizes[i % N_SIZES];
        if (n > size - off) {
            n = size - off;
        }
        err = sncp_framer_feed(&f, data + off, n, frame_cb, &chunked);
        off += n;
        if (sncp_framer_pending(&f) > SNCP_MAX_MSG_LEN) {
            abort();
        }
    }
    size_t pending = err ? 0 : sncp_framer_pending(&f);

    struct trace whole = {0xcbf29ce484222325ULL, 0};
    sncp_framer_init(&f);
    int err2 = sncp_framer_feed(&f, data, size, frame_cb, &whole);
    if (err != err2 || chunked.hash != whole.hash || chunked.frames != whole.frames ||
        (!err && pending != sncp_framer_pending(&f))) {
        fprintf(stderr, "fuzz-frame: chunking changed the result\n");
        abort();
    }
    if (err && sncp_framer_feed(&f, data, size, frame_cb, &whole) != err) {
        fprintf(stderr, "fuzz-frame: error not sticky\n");
        abort();
    }
    return 0;
}
