/* test-tls-records.c: the server's own TLS 1.3 record layer, white-box (lib/sncp-tls.c is
 * compiled into this test): a client connection on OpenSSL completes a real handshake with a
 * server connection, then a "mirror" record layer built from the client's traffic secrets
 * (its key log) seals records the OpenSSL client never sends (other inner content types,
 * padding, malformed alerts and KeyUpdates, replays, overflows).  Each must be accepted or
 * refused as RFC 8446 says, and a refusal is for good.
 * The PKI comes from scripts/gen-pki.sh in a private temporary directory.
 */
#include "sncp-tls.c"

#include <check.h>

#include "testutil.h"

static char pki_dir[256];

/* The client's traffic secrets, from its key log (parsed as the server parses its own). */
static struct tls_secrets cli_keys;

static void client_keylog(const SSL *ssl, const char *line)
{
    ck_assert_int_ge(keylog_take(ssl, line, &cli_keys), 0);
}

struct fixture {
    struct sncp_tls_ctx *sc, *cc;
    struct sncp_tls *s, *c;
    struct tls_rec m; /* the mirror: writes as the client */
};

static void pump(struct sncp_tls *from, struct sncp_tls *to)
{
    uint8_t buf[4096];
    size_t n;
    while ((n = sncp_tls_drain(from, buf, sizeof buf)) > 0)
        ck_assert_int_eq(sncp_tls_feed(to, buf, n), 0);
}

static void setup(struct fixture *f)
{
    char err[256];
    memset(f, 0, sizeof *f);
    f->sc = testutil_tls_ctx(pki_dir, SNCP_TLS_SERVER, "server", err, sizeof err);
    f->cc = testutil_tls_ctx(pki_dir, SNCP_TLS_CLIENT, "client", err, sizeof err);
    ck_assert_ptr_nonnull(f->sc);
    ck_assert_ptr_nonnull(f->cc);
    SSL_CTX_set_keylog_callback(f->cc->ssl_ctx, client_keylog);
    memset(&cli_keys, 0, sizeof cli_keys);
    f->s = sncp_tls_create(f->sc, "client");
    f->c = sncp_tls_create(f->cc, "server");
    for (int i = 0; i < 10 && !(sncp_tls_established(f->s) && sncp_tls_established(f->c)); i++) {
        ck_assert_int_ge(sncp_tls_handshake(f->c), 0);
        pump(f->c, f->s);
        ck_assert_int_ge(sncp_tls_handshake(f->s), 0);
        pump(f->s, f->c);
    }
    ck_assert(sncp_tls_established(f->s) && sncp_tls_established(f->c));
    ck_assert_ptr_nonnull(f->s->rec); /* the server left OpenSSL */
    ck_assert_ptr_null(f->s->ssl);
    ck_assert_ptr_null(f->c->rec); /* the client did not */
    const struct tls_rec *r = f->s->rec;
    ck_assert_uint_eq(cli_keys.c_len, r->suite->hash_len);
    ck_assert_uint_eq(cli_keys.s_len, r->suite->hash_len);
    ck_assert_int_eq(rec_keys(&f->m, r->suite, cli_keys.s, cli_keys.c), 0);
}

static void teardown(struct fixture *f)
{
    dir_clear(&f->m.rd);
    dir_clear(&f->m.wr);
    free(f->m.out);
    sncp_tls_destroy(f->c);
    sncp_tls_destroy(f->s);
    sncp_tls_ctx_destroy(f->cc);
    sncp_tls_ctx_destroy(f->sc);
}

/* Seals inner content `type` with data[0..len) as the client, into the mirror's output. */
static void seal(struct fixture *f, uint8_t type, const void *data, size_t len)
{
    ck_assert_int_eq(rec_seal(&f->m, type, data, len), 0);
}

/* Hands everything sealed so far to the server. */
static void deliver(struct fixture *f)
{
    ck_assert_int_eq(sncp_tls_feed(f->s, f->m.out + f->m.out_off, f->m.out_len - f->m.out_off), 0);
    f->m.out_off = f->m.out_len = 0;
}

/* The server refuses what it was given with `reason`, for good, and alerts the client
 * (unless the client's own alert ended the session). */
static void expect_refused_alert(struct fixture *f, const char *reason, int alert)
{
    uint8_t buf[64];
    deliver(f);
    ck_assert_int_eq(sncp_tls_read(f->s, buf, sizeof buf), SNCP_E_TLS);
    ck_assert_msg(strstr(sncp_tls_error(f->s), reason) != NULL, "error '%s', want '%s'",
                  sncp_tls_error(f->s), reason);
    ck_assert_int_eq(sncp_tls_read(f->s, buf, sizeof buf), SNCP_E_TLS);
    ck_assert_int_lt(sncp_tls_write(f->s, (const uint8_t *)"x", 1), 0);
    if (!alert) {
        ck_assert_uint_eq(sncp_tls_pending(f->s), 0);
        return;
    }
    pump(f->s, f->c);
    ck_assert_int_lt(sncp_tls_read(f->c, buf, sizeof buf), 0);
}

static void expect_refused(struct fixture *f, const char *reason)
{
    expect_refused_alert(f, reason, 1);
}

/* The server reads exactly `want` (then nothing more). */
static void expect_data(struct fixture *f, const char *want)
{
    uint8_t buf[64];
    deliver(f);
    ck_assert_int_eq(sncp_tls_read(f->s, buf, sizeof buf), (int)strlen(want));
    ck_assert_mem_eq(buf, want, strlen(want));
    ck_assert_int_eq(sncp_tls_read(f->s, buf, sizeof buf), 0);
    ck_assert_str_eq(sncp_tls_error(f->s), "");
}

START_TEST(test_accepted)
{
    struct fixture f;
    setup(&f);
    /* padding after the content type, a zero-length record, a user_canceled warning */
    static const uint8_t padded[] = {'h', 'i', CT_APPLICATION_DATA, 0, 0, 0, 0};
    seal(&f, 0, padded, sizeof padded);
    seal(&f, CT_APPLICATION_DATA, "", 0);
    static const uint8_t canceled[] = {1, ALERT_USER_CANCELED};
    seal(&f, CT_ALERT, canceled, sizeof canceled);
    seal(&f, CT_APPLICATION_DATA, "!", 1);
    expect_data(&f, "hi!");
    /* a KeyUpdate not asking for ours: the next records are under the new key */
    static const uint8_t ku[] = {HS_KEY_UPDATE, 0, 0, 1, 0};
    seal(&f, CT_HANDSHAKE, ku, sizeof ku);
    ck_assert_int_eq(dir_update(&f.m, &f.m.wr), 0);
    seal(&f, CT_APPLICATION_DATA, "new key", 7);
    expect_data(&f, "new key");
    ck_assert_uint_eq(sncp_tls_pending(f.s), 0); /* not asked: no KeyUpdate back */
    /* the server's data reaches the real client, close_notify ends the stream */
    ck_assert_int_eq(sncp_tls_write(f.s, (const uint8_t *)"pong", 4), 0);
    pump(f.s, f.c);
    uint8_t buf[16];
    ck_assert_int_eq(sncp_tls_read(f.c, buf, sizeof buf), 4);
    static const uint8_t close_notify[] = {1, ALERT_CLOSE_NOTIFY};
    seal(&f, CT_ALERT, close_notify, sizeof close_notify);
    seal(&f, CT_APPLICATION_DATA, "late", 4);
    deliver(&f);
    ck_assert_int_eq(sncp_tls_read(f.s, buf, sizeof buf), SNCP_E_PEER_CLOSED);
    ck_assert_int_eq(sncp_tls_read(f.s, buf, sizeof buf), SNCP_E_PEER_CLOSED);
    teardown(&f);
}
END_TEST

/* Inner contents a client must not send. */
static const struct {
    uint8_t type;
    uint8_t data[8];
    size_t len;
    const char *reason;
    int no_alert; /* the client's fatal alert: none is sent back */
} bad_inner[] = {
    {0, {0, 0, 0}, 3, "record without a content type", 0},
    {20, {1}, 1, "unexpected record type", 0}, /* change_cipher_spec inside */
    {24, {1}, 1, "unexpected record type", 0}, /* heartbeat, unknown */
    {CT_HANDSHAKE, {0}, 0, "unexpected post-handshake message", 0},
    {CT_HANDSHAKE, {4, 0, 0, 1, 0}, 5, "unexpected post-handshake message", 0}, /* ticket */
    {CT_HANDSHAKE, {HS_KEY_UPDATE, 0, 0, 1, 2}, 5, "malformed KeyUpdate", 0},
    {CT_HANDSHAKE, {HS_KEY_UPDATE, 0, 0, 2, 0, 0}, 6, "malformed KeyUpdate", 0},
    {CT_HANDSHAKE, {HS_KEY_UPDATE, 0, 0, 1}, 4, "malformed KeyUpdate", 0},
    {CT_HANDSHAKE, {HS_KEY_UPDATE, 0, 0, 1, 0, 23}, 6, "data after a KeyUpdate", 0},
    {CT_ALERT, {1, 0, 0}, 3, "malformed alert", 0},
    {CT_ALERT, {2, 40}, 2, "peer refused the session: handshake failure", 1},
};

START_TEST(test_bad_inner)
{
    struct fixture f;
    setup(&f);
    seal(&f, bad_inner[_i].type, bad_inner[_i].data, bad_inner[_i].len);
    expect_refused_alert(&f, bad_inner[_i].reason, !bad_inner[_i].no_alert);
    teardown(&f);
}
END_TEST

START_TEST(test_overflow)
{
    struct fixture f;
    setup(&f);
    static uint8_t big[REC_PLAIN_MAX + 1];
    seal(&f, CT_APPLICATION_DATA, big, sizeof big);
    expect_refused(&f, "record overflow");
    teardown(&f);
}
END_TEST

/* A record replayed, reordered or under a key the server has left is not authentic. */
START_TEST(test_replay_reorder_old_key)
{
    struct fixture f;
    setup(&f);
    seal(&f, CT_APPLICATION_DATA, "one", 3);
    uint8_t copy[64];
    size_t n = f.m.out_len;
    memcpy(copy, f.m.out, n);
    expect_data(&f, "one");
    ck_assert_int_eq(sncp_tls_feed(f.s, copy, n), 0);
    expect_refused(&f, "bad record mac");
    teardown(&f);

    setup(&f);
    seal(&f, CT_APPLICATION_DATA, "one", 3);
    n = f.m.out_len;
    memcpy(copy, f.m.out, n);
    f.m.out_len = 0;
    seal(&f, CT_APPLICATION_DATA, "two", 3); /* sequence 1, delivered first */
    expect_refused(&f, "bad record mac");
    teardown(&f);

    setup(&f);
    static const uint8_t ku[] = {HS_KEY_UPDATE, 0, 0, 1, 0};
    seal(&f, CT_HANDSHAKE, ku, sizeof ku);
    seal(&f, CT_APPLICATION_DATA, "old key", 7); /* the mirror did not update */
    expect_refused(&f, "bad record mac");
    teardown(&f);
}
END_TEST

/* Asked to update, the server answers with its KeyUpdate and uses its new key. */
START_TEST(test_update_requested)
{
    struct fixture f;
    setup(&f);
    static const uint8_t ku[] = {HS_KEY_UPDATE, 0, 0, 1, 1};
    seal(&f, CT_HANDSHAKE, ku, sizeof ku);
    ck_assert_int_eq(dir_update(&f.m, &f.m.wr), 0);
    seal(&f, CT_APPLICATION_DATA, "after", 5);
    expect_data(&f, "after");
    ck_assert_int_eq(sncp_tls_write(f.s, (const uint8_t *)"pong", 4), 0);
    /* The real client follows: its read key changes at the server's KeyUpdate. */
    pump(f.s, f.c);
    uint8_t buf[16];
    ck_assert_int_eq(sncp_tls_read(f.c, buf, sizeof buf), 4);
    ck_assert_mem_eq(buf, "pong", 4);
    teardown(&f);
}
END_TEST

/* The mirror opens the next record the server sent (draining its output as needed): returns
 * the inner content type, with the content in out[0..*len). */
static uint8_t open_next(struct fixture *f, uint8_t *buf, size_t cap, size_t *have, uint8_t *out,
                         size_t *len)
{
    *have += sncp_tls_drain(f->s, buf + *have, cap - *have);
    ck_assert_uint_ge(*have, REC_HDR);
    ck_assert_int_eq(buf[0], CT_APPLICATION_DATA);
    size_t rlen = (size_t)buf[3] << 8 | buf[4];
    ck_assert_uint_ge(rlen, REC_TAG + 1);
    ck_assert_uint_ge(*have, REC_HDR + rlen);
    ck_assert_int_eq(dir_crypt(&f->m, &f->m.rd, 0, buf, buf + REC_HDR, rlen), 0);
    *len = rlen - REC_TAG - 1; /* the server does not pad */
    uint8_t type = buf[REC_HDR + *len];
    memcpy(out, buf + REC_HDR, *len);
    memmove(buf, buf + REC_HDR + rlen, *have - REC_HDR - rlen);
    *have -= REC_HDR + rlen;
    return type;
}

/* After REC_KEY_UPDATE_AFTER records under one key (RFC 8446 §5.5), the server's next write
 * starts with a KeyUpdate (not asking for the client's) and continues under the next key. */
START_TEST(test_auto_key_update)
{
    struct fixture f;
    setup(&f);
    struct tls_rec *r = f.s->rec;
    r->wr.seq = f.m.rd.seq = REC_KEY_UPDATE_AFTER - 1;
    uint8_t old_secret[EVP_MAX_MD_SIZE];
    memcpy(old_secret, r->wr.secret, r->suite->hash_len);
    /* One write of two records: the first one is the last under the old key. */
    static uint8_t data[REC_PLAIN_MAX + 1], got[REC_PLAIN_MAX + 1];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7);
    ck_assert_int_eq(sncp_tls_write(f.s, data, sizeof data), 0);
    static uint8_t buf[2 * (REC_HDR + REC_CT_MAX)];
    size_t have = 0, len;
    ck_assert_int_eq(open_next(&f, buf, sizeof buf, &have, got, &len), CT_APPLICATION_DATA);
    ck_assert_uint_eq(len, REC_PLAIN_MAX);
    ck_assert_mem_eq(got, data, REC_PLAIN_MAX);
    ck_assert(f.m.rd.seq == REC_KEY_UPDATE_AFTER);
    ck_assert_int_eq(open_next(&f, buf, sizeof buf, &have, got, &len), CT_HANDSHAKE);
    static const uint8_t ku[] = {HS_KEY_UPDATE, 0, 0, 1, 0};
    ck_assert_uint_eq(len, sizeof ku);
    ck_assert_mem_eq(got, ku, sizeof ku);
    ck_assert_int_eq(dir_update(&f.m, &f.m.rd), 0);
    ck_assert_int_eq(open_next(&f, buf, sizeof buf, &have, got, &len), CT_APPLICATION_DATA);
    ck_assert_uint_eq(len, 1);
    ck_assert_int_eq(got[0], data[REC_PLAIN_MAX]);
    ck_assert_uint_eq(have, 0);
    ck_assert_uint_eq(sncp_tls_pending(f.s), 0);
    /* The server is under its next key, at its second record, in step with the mirror. */
    ck_assert(r->wr.seq == 1 && f.m.rd.seq == 1);
    ck_assert_int_ne(memcmp(old_secret, r->wr.secret, r->suite->hash_len), 0);
    ck_assert_mem_eq(f.m.rd.secret, r->wr.secret, r->suite->hash_len);
    /* Our own key did not change: the client's records still open. */
    seal(&f, CT_APPLICATION_DATA, "still", 5);
    expect_data(&f, "still");
    teardown(&f);
}
END_TEST

/* The read sequence number never wraps (RFC 8446 §5.3): the record that would need
 * UINT64_MAX is fatal, the last one before it is not. */
START_TEST(test_read_seq_limit)
{
    struct fixture f;
    setup(&f);
    struct tls_rec *r = f.s->rec;
    r->rd.seq = f.m.wr.seq = UINT64_MAX - 1;
    seal(&f, CT_APPLICATION_DATA, "last", 4);
    expect_data(&f, "last");
    ck_assert(r->rd.seq == UINT64_MAX);
    /* The mirror's rec_seal refuses that number too: seal it by hand. */
    ck_assert_int_eq(rec_seal(&f.m, CT_APPLICATION_DATA, (const uint8_t *)"x", 1), SNCP_E_TLS);
    uint8_t rec[REC_HDR + 5 + REC_TAG] = {
        CT_APPLICATION_DATA, 3, 3, 0, 5 + REC_TAG, 'w', 'r', 'a', 'p', CT_APPLICATION_DATA};
    ck_assert_int_eq(dir_crypt(&f.m, &f.m.wr, 1, rec, rec + REC_HDR, 5), 0);
    ck_assert_int_eq(sncp_tls_feed(f.s, rec, sizeof rec), 0);
    expect_refused(&f, "decryption failed or bad record mac");
    ck_assert(r->rd.seq == UINT64_MAX); /* not wrapped */
    teardown(&f);
}
END_TEST

/* §5.4: the padding counts against the 2^14 + 1 bytes of an inner plaintext. */
START_TEST(test_padded_overflow)
{
    struct fixture f;
    static uint8_t inner[REC_PLAIN_MAX + 200]; /* sealed with one more zero after it */
    setup(&f);
    memset(inner, 'p', REC_PLAIN_MAX - 10);
    inner[REC_PLAIN_MAX - 10] = CT_APPLICATION_DATA; /* 2^14 + 1 in all: accepted */
    seal(&f, 0, inner, REC_PLAIN_MAX);
    deliver(&f);
    static uint8_t buf[REC_PLAIN_MAX];
    ck_assert_int_eq(sncp_tls_read(f.s, buf, sizeof buf), REC_PLAIN_MAX - 10);
    teardown(&f);

    setup(&f);
    memset(inner, 'p', REC_PLAIN_MAX);
    inner[REC_PLAIN_MAX] = CT_APPLICATION_DATA; /* 2^14 of data, 199 + 1 bytes of padding */
    seal(&f, 0, inner, sizeof inner);
    expect_refused(&f, "record overflow");
    teardown(&f);
}
END_TEST

/* §4.6.3: KeyUpdates asking for ours while the server sends nothing get one answer; the
 * next request after the server's data gets another. */
START_TEST(test_update_storm)
{
    struct fixture f;
    setup(&f);
    static const uint8_t ku[] = {HS_KEY_UPDATE, 0, 0, 1, 1};
    for (int i = 0; i < 100; i++) {
        seal(&f, CT_HANDSHAKE, ku, sizeof ku);
        ck_assert_int_eq(dir_update(&f.m, &f.m.wr), 0);
    }
    seal(&f, CT_APPLICATION_DATA, "ping", 4);
    expect_data(&f, "ping");
    uint8_t buf[256], msg[64];
    size_t have = 0, len;
    ck_assert_int_eq(open_next(&f, buf, sizeof buf, &have, msg, &len), CT_HANDSHAKE);
    ck_assert_uint_eq(len, 5);
    ck_assert_int_eq(msg[4], 0);
    ck_assert_int_eq(dir_update(&f.m, &f.m.rd), 0);
    ck_assert_uint_eq(have, 0);
    ck_assert_uint_eq(sncp_tls_pending(f.s), 0); /* one answer for the hundred */
    ck_assert_int_eq(sncp_tls_write(f.s, (const uint8_t *)"pong", 4), 0);
    ck_assert_int_eq(open_next(&f, buf, sizeof buf, &have, msg, &len), CT_APPLICATION_DATA);
    seal(&f, CT_HANDSHAKE, ku, sizeof ku);
    ck_assert_int_eq(dir_update(&f.m, &f.m.wr), 0);
    seal(&f, CT_HANDSHAKE, ku, sizeof ku);
    ck_assert_int_eq(dir_update(&f.m, &f.m.wr), 0);
    expect_data(&f, "");
    ck_assert_int_eq(open_next(&f, buf, sizeof buf, &have, msg, &len), CT_HANDSHAKE);
    ck_assert_int_eq(dir_update(&f.m, &f.m.rd), 0);
    ck_assert_uint_eq(have + sncp_tls_pending(f.s), 0);
    teardown(&f);
}
END_TEST

/* An owner that drains a little less than is pending each time: the output buffer holds
 * what is pending, not all that was ever written. */
START_TEST(test_partial_drain)
{
    struct fixture f;
    setup(&f);
    uint8_t data[100] = {0}, buf[256];
    for (int i = 0; i < 2000; i++) {
        ck_assert_int_eq(sncp_tls_write(f.s, data, sizeof data), 0);
        size_t want = sncp_tls_pending(f.s) - 1;
        ck_assert_uint_eq(sncp_tls_drain(f.s, buf, want), want);
    }
    ck_assert_uint_eq(sncp_tls_pending(f.s), 1);
    ck_assert_uint_le(f.s->rec->out_cap, 4096);
    teardown(&f);
}
END_TEST

static Suite *records_suite(void)
{
    Suite *s = suite_create("sncp-tls-records");
    TCase *tc = tcase_create("records");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_accepted);
    tcase_add_loop_test(tc, test_bad_inner, 0, (int)(sizeof bad_inner / sizeof bad_inner[0]));
    tcase_add_test(tc, test_overflow);
    tcase_add_test(tc, test_replay_reorder_old_key);
    tcase_add_test(tc, test_update_requested);
    tcase_add_test(tc, test_auto_key_update);
    tcase_add_test(tc, test_read_seq_limit);
    tcase_add_test(tc, test_padded_overflow);
    tcase_add_test(tc, test_update_storm);
    tcase_add_test(tc, test_partial_drain);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    static const char *const gen[] = {SRCDIR "/scripts/gen-pki.sh", pki_dir, "server", "client",
                                      NULL};
    if (testutil_pki_create(pki_dir, sizeof pki_dir, "sncp-test-tls-records", gen) < 0)
        return 1;
    SRunner *sr = srunner_create(records_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    testutil_rm_tree(pki_dir);
    return failed ? 1 : 0;
}
