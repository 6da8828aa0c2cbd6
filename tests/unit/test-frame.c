/* test-frame.c: Check suite for the stream framer (lib/sncp-frame.c).
 *
 * The valid proto/vectors/ messages, concatenated, must come out as the same sequence of
 * messages whatever the chunking: whole, split at every point, byte at a time, random chunks.
 * Invalid headers are rejected as soon as the header is complete, before the body is
 * buffered, and the failure is sticky.
 */
#include <check.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sncp-frame.h"

/* ---- the vectors, as one stream ----------------------------------------------------- */

#define MAX_MSGS 256
#define STREAM_CAP (64 * 1024)

static uint8_t stream[STREAM_CAP];
static size_t stream_len;
static size_t msg_off[MAX_MSGS], msg_len[MAX_MSGS];
static size_t n_msgs;

static const char *src_dir(void)
{
    const char *s = getenv("SPLITNVE_SRC");
    return s && *s ? s : SRCDIR;
}

static int vec_filter(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 4 && strcmp(d->d_name + n - 4, ".vec") == 0;
}

/* Appends the hex lines of one vector file to the stream as one message. */
static void append_vec(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char line[16384];
    size_t start = stream_len;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "hex: ", 5) != 0) {
            continue;
        }
        for (const char *p = line + 5; p[0] && p[0] != '\n' && p[1]; p += 2) {
            unsigned v;
            ck_assert_int_eq(sscanf(p, "%2x", &v), 1);
            ck_assert(stream_len < STREAM_CAP);
            stream[stream_len++] = (uint8_t)v;
        }
    }
    fclose(f);
    ck_assert(n_msgs < MAX_MSGS);
    msg_off[n_msgs] = start;
    msg_len[n_msgs] = stream_len - start;
    n_msgs++;
}

static void load_stream(void)
{
    char dir[4096];
    ck_assert((size_t)snprintf(dir, sizeof dir, "%s/proto/vectors/valid", src_dir()) <
              sizeof dir);
    struct dirent **names;
    int n = scandir(dir, &names, vec_filter, alphasort);
    ck_assert_msg(n > 0, "no vectors in %s", dir);
    stream_len = 0;
    n_msgs = 0;
    for (int i = 0; i < n; i++) {
        char path[8192];
        ck_assert((size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name) <
                  sizeof path);
        append_vec(path);
        free(names[i]);
    }
    free(names);
}

/* ---- a callback that checks the sequence -------------------------------------------- */

struct seen {
    size_t count;
    bool mismatch;
    size_t stop_at; /* return 42 from this message (1-based), 0 = never */
};

static int check_cb(void *ctx, const uint8_t *msg, size_t len)
{
    struct seen *s = ctx;
    if (s->count >= n_msgs || len != msg_len[s->count] ||
        memcmp(msg, stream + msg_off[s->count], len) != 0) {
        s->mismatch = true;
    }
    s->count++;
    return s->stop_at && s->count == s->stop_at ? 42 : 0;
}

static void feed_chunks(const size_t *sizes, size_t n_sizes)
{
    static struct sncp_framer f;
    struct seen s = {0};
    size_t off = 0;

    sncp_framer_init(&f);
    for (size_t i = 0; off < stream_len; i++) {
        size_t n = sizes[i % n_sizes];
        if (n > stream_len - off) {
            n = stream_len - off;
        }
        ck_assert_int_eq(sncp_framer_feed(&f, stream + off, n, check_cb, &s), 0);
        off += n;
    }
    ck_assert(!s.mismatch);
    ck_assert_uint_eq(s.count, n_msgs);
    ck_assert_uint_eq(sncp_framer_pending(&f), 0);
}

START_TEST(test_whole_stream)
{
    load_stream();
    ck_assert_uint_ge(n_msgs, 12);
    size_t all = stream_len;
    feed_chunks(&all, 1);
    size_t one = 1;
    feed_chunks(&one, 1);
    /* Zero-length feeds are harmless. */
    static struct sncp_framer f;
    sncp_framer_init(&f);
    struct seen s = {0};
    ck_assert_int_eq(sncp_framer_feed(&f, stream, 0, check_cb, &s), 0);
    ck_assert_uint_eq(s.count, 0);
}
END_TEST

START_TEST(test_every_split_point)
{
    static struct sncp_framer f;
    load_stream();
    for (size_t cut = 0; cut <= stream_len; cut++) {
        struct seen s = {0};
        sncp_framer_init(&f);
        ck_assert_int_eq(sncp_framer_feed(&f, stream, cut, check_cb, &s), 0);
        size_t done = s.count;
        size_t consumed = done ? msg_off[done - 1] + msg_len[done - 1] : 0;
        ck_assert_uint_eq(sncp_framer_pending(&f), cut - consumed);
        ck_assert_int_eq(sncp_framer_feed(&f, stream + cut, stream_len - cut, check_cb, &s), 0);
        ck_assert_msg(!s.mismatch && s.count == n_msgs, "split at %zu", cut);
        ck_assert_uint_eq(sncp_framer_pending(&f), 0);
    }
}
END_TEST

START_TEST(test_random_chunks)
{
    load_stream();
    unsigned seed = 12345;
    for (int round = 0; round < 200; round++) {
        size_t sizes[64];
        for (size_t i = 0; i < 64; i++) {
            seed = seed * 1103515245u + 12345u;
            unsigned r = (seed >> 16) & 0x7fff;
            /* Mostly small chunks, sometimes several messages at once. */
            sizes[i] = 1 + (r % 8 == 0 ? r % 3000 : r % 40);
        }
        feed_chunks(sizes, 64);
    }
}
END_TEST

START_TEST(test_callback_stop_is_sticky)
{
    static struct sncp_framer f;
    load_stream();
    struct seen s = {.stop_at = 3};
    sncp_framer_init(&f);
    ck_assert_int_eq(sncp_framer_feed(&f, stream, stream_len, check_cb, &s), 42);
    ck_assert_uint_eq(s.count, 3);
    ck_assert_int_eq(sncp_framer_feed(&f, stream, stream_len, check_cb, &s), 42);
    ck_assert_uint_eq(s.count, 3);
    ck_assert(!s.mismatch);
}
END_TEST

static int count_cb(void *ctx, const uint8_t *msg, size_t len)
{
    (void)msg;
    (void)len;
    (*(size_t *)ctx)++;
    return 0;
}

static void header(uint8_t *h, uint8_t version, uint8_t type, uint32_t total)
{
    memset(h, 0, SNCP_HEADER_LEN);
    h[0] = version;
    h[1] = type;
    h[4] = (uint8_t)(total >> 24);
    h[5] = (uint8_t)(total >> 16);
    h[6] = (uint8_t)(total >> 8);
    h[7] = (uint8_t)total;
}

START_TEST(test_bad_headers)
{
    static struct sncp_framer f;
    uint8_t h[SNCP_HEADER_LEN];
    size_t count;
    static const struct {
        uint8_t version;
        uint32_t total;
        int err;
    } cases[] = {
        {1, SNCP_MAX_MSG_LEN + 1, SNCP_E_MALFORMED},
        {1, 0xFFFFFFFF, SNCP_E_MALFORMED},
        {1, 0, SNCP_E_MALFORMED},
        {1, SNCP_HEADER_LEN - 1, SNCP_E_MALFORMED},
        {2, 20, SNCP_E_UNSUPPORTED_VERSION},
        {0, 20, SNCP_E_UNSUPPORTED_VERSION},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        header(h, cases[i].version, SNCP_MSG_KEEPALIVE, cases[i].total);
        /* Byte at a time: nothing happens until the header is complete, then the error. */
        sncp_framer_init(&f);
        count = 0;
        for (size_t k = 0; k + 1 < SNCP_HEADER_LEN; k++) {
            ck_assert_int_eq(sncp_framer_feed(&f, h + k, 1, count_cb, &count), 0);
        }
        ck_assert_int_eq(sncp_framer_feed(&f, h + SNCP_HEADER_LEN - 1, 1, count_cb, &count),
                         cases[i].err);
        ck_assert_uint_le(sncp_framer_pending(&f), SNCP_HEADER_LEN);
        /* Sticky: even a good message is refused now. */
        header(h, 1, SNCP_MSG_KEEPALIVE, SNCP_HEADER_LEN);
        ck_assert_int_eq(sncp_framer_feed(&f, h, SNCP_HEADER_LEN, count_cb, &count),
                         cases[i].err);
        ck_assert_uint_eq(count, 0);
    }

    /* The oversized header after good messages in the same chunk: those are delivered, then
     * the error; nothing of the oversized body is buffered. */
    static uint8_t buf[3 * SNCP_HEADER_LEN + 100];
    header(buf, 1, SNCP_MSG_KEEPALIVE, SNCP_HEADER_LEN);
    header(buf + SNCP_HEADER_LEN, 1, SNCP_MSG_SYNC_BEGIN, SNCP_HEADER_LEN);
    header(buf + 2 * SNCP_HEADER_LEN, 1, SNCP_MSG_SYNC_BEGIN, 100000);
    sncp_framer_init(&f);
    count = 0;
    ck_assert_int_eq(sncp_framer_feed(&f, buf, sizeof buf, count_cb, &count), SNCP_E_MALFORMED);
    ck_assert_uint_eq(count, 2);
    ck_assert_uint_le(sncp_framer_pending(&f), SNCP_HEADER_LEN);
    ck_assert_int_eq(sncp_framer_feed(&f, buf, 1, count_cb, &count), SNCP_E_MALFORMED);
    ck_assert_uint_eq(count, 2);

    /* Split header: the error is seen when the 12th byte arrives. */
    sncp_framer_init(&f);
    count = 0;
    header(h, 1, SNCP_MSG_HELLO, SNCP_MAX_MSG_LEN + 1);
    ck_assert_int_eq(sncp_framer_feed(&f, h, 7, count_cb, &count), 0);
    ck_assert_uint_eq(sncp_framer_pending(&f), 7);
    ck_assert_int_eq(sncp_framer_feed(&f, h + 7, 5, count_cb, &count), SNCP_E_MALFORMED);
}
END_TEST

/* The framer only frames: a message with a valid header but a bad body (unknown type, bad
 * TLVs) is delivered so the session can answer it; a maximum-size message passes whole. */
START_TEST(test_frames_bad_bodies_and_max_size)
{
    static struct sncp_framer f;
    static uint8_t buf[SNCP_MAX_MSG_LEN + SNCP_HEADER_LEN];
    size_t count = 0;

    header(buf, 1, 200, SNCP_HEADER_LEN + 3);
    buf[12] = buf[13] = buf[14] = 0xEE;
    sncp_framer_init(&f);
    ck_assert_int_eq(sncp_framer_feed(&f, buf, SNCP_HEADER_LEN + 3, count_cb, &count), 0);
    ck_assert_uint_eq(count, 1);

    memset(buf, 0x77, sizeof buf);
    header(buf, 1, SNCP_MSG_SYNC_BEGIN, SNCP_MAX_MSG_LEN);
    header(buf + SNCP_MAX_MSG_LEN, 1, SNCP_MSG_SYNC_END, SNCP_HEADER_LEN);
    count = 0;
    for (size_t chunk = 1; chunk < sizeof buf; chunk = chunk * 3 + 1) {
        size_t before = count;
        for (size_t off = 0; off < sizeof buf; off += chunk) {
            size_t n = sizeof buf - off < chunk ? sizeof buf - off : chunk;
            ck_assert_int_eq(sncp_framer_feed(&f, buf + off, n, count_cb, &count), 0);
            ck_assert_uint_le(sncp_framer_pending(&f), SNCP_MAX_MSG_LEN);
        }
        ck_assert_uint_eq(count - before, 2);
    }
}
END_TEST

static Suite *frame_suite(void)
{
    Suite *s = suite_create("sncp-frame");
    TCase *tc = tcase_create("framer");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_whole_stream);
    tcase_add_test(tc, test_every_split_point);
    tcase_add_test(tc, test_random_chunks);
    tcase_add_test(tc, test_callback_stop_is_sticky);
    tcase_add_test(tc, test_bad_headers);
    tcase_add_test(tc, test_frames_bad_bodies_and_max_size);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(frame_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
