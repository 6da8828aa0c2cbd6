/* test-tls.c: the TLS engine (sncp-tls) with pairs of engines wired back to back in memory.
 *
 * The PKI is generated at test time by scripts/gen-pki.sh into a private temporary directory
 * that is removed afterwards: a test CA with "server" and "client", an expired "old", and
 * "evil" signed by an unrelated CA.  Certificates with unusual names (NULs, invalid UTF-8,
 * URI names) are issued with the OpenSSL API, CRLs by scripts/gen-crl.sh.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "sncp-error.h"
#include "sncp-tls.h"
#include "testutil.h"

static char pki_dir[256];

static const char *pki(const char *file)
{
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 512, "%s/%s", pki_dir, file);
    return b;
}

static struct sncp_tls_ctx *ctx_for(enum sncp_tls_role role, const char *name, const char *ca)
{
    char cert[64], key[64], err[256] = "";
    snprintf(cert, sizeof cert, "%s.crt", name);
    snprintf(key, sizeof key, "%s.key", name);
    struct sncp_tls_ctx *c =
        sncp_tls_ctx_create(role, pki(cert), pki(key), pki(ca), err, sizeof err);
    ck_assert_msg(c != NULL, "ctx for %s: %s", name, err);
    return c;
}

/* Moves everything a has to send into b.  Returns the number of bytes moved. */
static size_t move(struct sncp_tls *from, struct sncp_tls *to)
{
    uint8_t buf[4096];
    size_t total = 0, n;
    while ((n = sncp_tls_drain(from, buf, sizeof buf)) > 0) {
        ck_assert_int_eq(sncp_tls_feed(to, buf, n), 0);
        total += n;
    }
    return total;
}

struct pair_result {
    int client_rc, server_rc;     /* last handshake results */
    int client_read, server_read; /* a read after the handshake (alerts arrive there) */
};

static struct pair_result run_pair(struct sncp_tls *c, struct sncp_tls *s)
{
    struct pair_result r = {0, 0, 0, 0};
    for (int i = 0; i < 20; i++) {
        if (r.client_rc == 0)
            r.client_rc = sncp_tls_handshake(c);
        size_t moved = move(c, s);
        if (r.server_rc == 0)
            r.server_rc = sncp_tls_handshake(s);
        moved += move(s, c);
        if (r.client_rc != 0 && r.server_rc != 0 && !moved)
            break;
        if ((r.client_rc < 0 || r.server_rc < 0) && !moved)
            break;
    }
    uint8_t buf[256];
    if (r.client_rc == 1)
        r.client_read = sncp_tls_read(c, buf, sizeof buf);
    if (r.server_rc == 1)
        r.server_read = sncp_tls_read(s, buf, sizeof buf);
    return r;
}

START_TEST(test_mutual_auth)
{
    struct sncp_tls_ctx *sc = ctx_for(SNCP_TLS_SERVER, "server", "ca.crt");
    struct sncp_tls_ctx *cc = ctx_for(SNCP_TLS_CLIENT, "client", "ca.crt");
    struct sncp_tls *s = sncp_tls_create(sc, NULL);
    struct sncp_tls *c = sncp_tls_create(cc, "server");
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(sncp_tls_peer_identity(c), "");
    ck_assert_int_eq(sncp_tls_established(c), 0);
    struct pair_result r = run_pair(c, s);
    ck_assert_int_eq(r.client_rc, 1);
    ck_assert_int_eq(r.server_rc, 1);
    ck_assert_int_eq(r.client_read, 0);
    ck_assert_int_eq(r.server_read, 0);
    ck_assert_int_eq(sncp_tls_established(c), 1);
    ck_assert_int_eq(sncp_tls_established(s), 1);
    ck_assert_str_eq(sncp_tls_peer_identity(c), "server");
    ck_assert_str_eq(sncp_tls_peer_identity(s), "client");
    char desc[128];
    ck_assert_ptr_nonnull(strstr(sncp_tls_description(c, desc, sizeof desc), "TLSv1.3"));
    ck_assert_str_eq(sncp_tls_error(c), "");
    ck_assert_str_eq(sncp_tls_error(s), "");
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    sncp_tls_ctx_destroy(cc);
    sncp_tls_ctx_destroy(sc);
}
END_TEST

START_TEST(test_round_trip)
{
    struct sncp_tls_ctx *sc = ctx_for(SNCP_TLS_SERVER, "server", "ca.crt");
    struct sncp_tls_ctx *cc = ctx_for(SNCP_TLS_CLIENT, "client", "ca.crt");
    struct sncp_tls *s = sncp_tls_create(sc, "client");
    struct sncp_tls *c = sncp_tls_create(cc, "server");
    struct pair_result r = run_pair(c, s);
    ck_assert_int_eq(r.client_rc, 1);
    ck_assert_int_eq(r.server_rc, 1);

    /* Before the handshake nothing can be written; after it, data flows both ways, also
     * larger than one TLS record. */
    static uint8_t big[100000], got[100000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    ck_assert_int_eq(sncp_tls_write(c, big, sizeof big), 0);
    ck_assert_uint_gt(sncp_tls_pending(c), sizeof big);
    move(c, s);
    ck_assert_uint_eq(sncp_tls_pending(c), 0);
    size_t total = 0;
    int n;
    while ((n = sncp_tls_read(s, got + total, sizeof got - total)) > 0)
        total += (size_t)n;
    ck_assert_int_eq(n, 0);
    ck_assert_uint_eq(total, sizeof big);
    ck_assert_int_eq(memcmp(big, got, sizeof big), 0);

    ck_assert_int_eq(sncp_tls_write(s, (const uint8_t *)"pong", 4), 0);
    move(s, c);
    uint8_t small[16];
    ck_assert_int_eq(sncp_tls_read(c, small, sizeof small), 4);
    ck_assert_int_eq(memcmp(small, "pong", 4), 0);
    ck_assert_int_eq(sncp_tls_read(c, small, sizeof small), 0);

    /* Ciphertext fed one byte at a time gives the same plaintext. */
    ck_assert_int_eq(sncp_tls_write(c, (const uint8_t *)"bytewise", 8), 0);
    uint8_t ct[256];
    size_t ctlen = sncp_tls_drain(c, ct, sizeof ct);
    ck_assert_uint_gt(ctlen, 8);
    for (size_t i = 0; i < ctlen; i++) {
        ck_assert_int_eq(sncp_tls_feed(s, ct + i, 1), 0);
        if (i + 1 < ctlen)
            ck_assert_int_eq(sncp_tls_read(s, small, sizeof small), 0);
    }
    ck_assert_int_eq(sncp_tls_read(s, small, sizeof small), 8);
    ck_assert_int_eq(memcmp(small, "bytewise", 8), 0);

    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    sncp_tls_ctx_destroy(cc);
    sncp_tls_ctx_destroy(sc);
}
END_TEST

START_TEST(test_write_before_handshake)
{
    struct sncp_tls_ctx *cc = ctx_for(SNCP_TLS_CLIENT, "client", "ca.crt");
    struct sncp_tls *c = sncp_tls_create(cc, NULL);
    ck_assert_int_eq(sncp_tls_write(c, (const uint8_t *)"x", 1), SNCP_E_NOT_ESTABLISHED);
    sncp_tls_destroy(c);
    sncp_tls_ctx_destroy(cc);
}
END_TEST

START_TEST(test_close_notify)
{
    struct sncp_tls_ctx *sc = ctx_for(SNCP_TLS_SERVER, "server", "ca.crt");
    struct sncp_tls_ctx *cc = ctx_for(SNCP_TLS_CLIENT, "client", "ca.crt");
    struct sncp_tls *s = sncp_tls_create(sc, NULL);
    struct sncp_tls *c = sncp_tls_create(cc, NULL);
    struct pair_result r = run_pair(c, s);
    ck_assert_int_eq(r.client_rc, 1);
    ck_assert_int_eq(r.server_rc, 1);
    ck_assert_int_eq(sncp_tls_write(c, (const uint8_t *)"last", 4), 0);
    sncp_tls_shutdown(c);
    move(c, s);
    uint8_t buf[16];
    ck_assert_int_eq(sncp_tls_read(s, buf, sizeof buf), 4);
    ck_assert_int_eq(sncp_tls_read(s, buf, sizeof buf), SNCP_E_PEER_CLOSED);
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    sncp_tls_ctx_destroy(cc);
    sncp_tls_ctx_destroy(sc);
}
END_TEST

/* The server side of a refused client: the server's handshake fails with `reason`, and the
 * client learns it was refused (its handshake or its first read fails). */
static void expect_refused_by_server(const char *client_name, const char *client_ca,
                                     const char *reason)
{
    struct sncp_tls_ctx *sc = ctx_for(SNCP_TLS_SERVER, "server", "ca.crt");
    struct sncp_tls_ctx *cc = ctx_for(SNCP_TLS_CLIENT, client_name, client_ca);
    struct sncp_tls *s = sncp_tls_create(sc, NULL);
    struct sncp_tls *c = sncp_tls_create(cc, "server");
    struct pair_result r = run_pair(c, s);
    ck_assert_int_eq(r.server_rc, SNCP_E_TLS_HANDSHAKE);
    ck_assert_msg(strstr(sncp_tls_error(s), reason) != NULL, "server error '%s', want '%s'",
                  sncp_tls_error(s), reason);
    ck_assert_str_eq(sncp_tls_peer_identity(s), "");
    /* TLS 1.3: the client may finish before the server's verdict, then reads the alert. */
    ck_assert_msg(r.client_rc < 0 || r.client_read < 0, "client not refused: %d %d", r.client_rc,
                  r.client_read);
    ck_assert_msg(strstr(sncp_tls_error(c), "peer refused") != NULL, "client error '%s'",
                  sncp_tls_error(c));
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    sncp_tls_ctx_destroy(cc);
    sncp_tls_ctx_destroy(sc);
}

START_TEST(test_other_ca_client)
{
    expect_refused_by_server("evil", "ca.crt",
                             "certificate verify failed: unable to get local issuer certificate");
}
END_TEST

START_TEST(test_expired_client)
{
    expect_refused_by_server("old", "ca.crt", "certificate verify failed: certificate has expired");
}
END_TEST

START_TEST(test_other_ca_server)
{
    /* The client refuses a server whose certificate comes from another CA. */
    struct sncp_tls_ctx *sc = ctx_for(SNCP_TLS_SERVER, "evil", "ca.crt");
    struct sncp_tls_ctx *cc = ctx_for(SNCP_TLS_CLIENT, "client", "ca.crt");
    struct sncp_tls *s = sncp_tls_create(sc, NULL);
    struct sncp_tls *c = sncp_tls_create(cc, NULL);
    struct pair_result r = run_pair(c, s);
    ck_assert_int_eq(r.client_rc, SNCP_E_TLS_HANDSHAKE);
    ck_assert_str_eq(sncp_tls_error(c),
                     "certificate verify failed: unable to get local issuer certificate");
    ck_assert_int_ne(r.server_rc, 1);
    ck_assert_ptr_nonnull(strstr(sncp_tls_error(s), "peer refused"));
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    sncp_tls_ctx_destroy(cc);
    sncp_tls_ctx_destroy(sc);
}
END_TEST

START_TEST(test_expired_server)
{
    struct sncp_tls_ctx *sc = ctx_for(SNCP_TLS_SERVER, "old", "ca.crt");
    struct sncp_tls_ctx *cc = ctx_for(SNCP_TLS_CLIENT, "client", "ca.crt");
    struct sncp_tls *s = sncp_tls_create(sc, NULL);
    struct sncp_tls *c = sncp_tls_create(cc, NULL);
    struct pair_result r = run_pair(c, s);
    ck_assert_int_eq(r.client_rc, SNCP_E_TLS_HANDSHAKE);
    ck_assert_str_eq(sncp_tls_error(c), "certificate verify failed: certificate has expired");
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    sncp_tls_ctx_destroy(cc);
    sncp_tls_ctx_destroy(sc);
}
END_TEST

START_TEST(test_no_client_certificate)
{
    /* The API always loads a certificate, so the certificate-less client is a bare OpenSSL
     * client on its own memory BIOs. */
    struct sncp_tls_ctx *sc = ctx_for(SNCP_TLS_SERVER, "server", "ca.crt");
    struct sncp_tls *s = sncp_tls_create(sc, NULL);
    SSL_CTX *raw_ctx = SSL_CTX_new(TLS_client_method());
    ck_assert_ptr_nonnull(raw_ctx);
    SSL_CTX_set_min_proto_version(raw_ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(raw_ctx, SSL_VERIFY_NONE, NULL);
    SSL *raw = SSL_new(raw_ctx);
    BIO *rin = BIO_new(BIO_s_mem()), *rout = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(rin, -1);
    SSL_set_bio(raw, rin, rout);
    SSL_set_connect_state(raw);
    int srv = 0;
    for (int i = 0; i < 10 && srv == 0; i++) {
        SSL_do_handshake(raw);
        uint8_t buf[8192];
        int n;
        while ((n = BIO_read(rout, buf, sizeof buf)) > 0)
            ck_assert_int_eq(sncp_tls_feed(s, buf, (size_t)n), 0);
        srv = sncp_tls_handshake(s);
        size_t m;
        while ((m = sncp_tls_drain(s, buf, sizeof buf)) > 0)
            BIO_write(rin, buf, (int)m);
    }
    ck_assert_int_eq(srv, SNCP_E_TLS_HANDSHAKE);
    ck_assert_str_eq(sncp_tls_error(s), "peer did not return a certificate");
    /* The raw client reads the server's alert. */
    char b[16];
    ck_assert_int_le(SSL_read(raw, b, sizeof b), 0);
    ERR_clear_error();
    SSL_free(raw);
    SSL_CTX_free(raw_ctx);
    sncp_tls_destroy(s);
    sncp_tls_ctx_destroy(sc);
}
END_TEST

START_TEST(test_wrong_identity)
{
    struct sncp_tls_ctx *sc = ctx_for(SNCP_TLS_SERVER, "server", "ca.crt");
    struct sncp_tls_ctx *cc = ctx_for(SNCP_TLS_CLIENT, "client", "ca.crt");
    /* Client expects another name than the server has. */
    struct sncp_tls *s = sncp_tls_create(sc, NULL);
    struct sncp_tls *c = sncp_tls_create(cc, "switch-7");
    struct pair_result r = run_pair(c, s);
    ck_assert_int_eq(r.client_rc, SNCP_E_PEER_IDENTITY);
    ck_assert_str_eq(sncp_tls_error(c),
                     "peer identity 'server' does not match expected 'switch-7'");
    ck_assert_int_ne(r.server_rc, 1);
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);

    /* Server expects a specific client. */
    s = sncp_tls_create(sc, "client");
    struct sncp_tls_ctx *oc = ctx_for(SNCP_TLS_CLIENT, "other-client", "ca.crt");
    c = sncp_tls_create(oc, "server");
    r = run_pair(c, s);
    ck_assert_int_eq(r.server_rc, SNCP_E_PEER_IDENTITY);
    ck_assert_str_eq(sncp_tls_error(s),
                     "peer identity 'other-client' does not match expected 'client'");
    ck_assert_msg(r.client_rc < 0 || r.client_read < 0, "client not refused");
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    sncp_tls_ctx_destroy(oc);
    sncp_tls_ctx_destroy(cc);
    sncp_tls_ctx_destroy(sc);
}
END_TEST

START_TEST(test_plaintext_to_server)
{
    struct sncp_tls_ctx *sc = ctx_for(SNCP_TLS_SERVER, "server", "ca.crt");
    const char *inputs[] = {"GET / HTTP/1.0\r\n\r\n", "hello there, this is not TLS\n",
                            "\x01\x02\x00\x0c\x00\x00\x00\x00\x00\x00\x00\x00"};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        struct sncp_tls *s = sncp_tls_create(sc, NULL);
        ck_assert_int_eq(sncp_tls_feed(s, (const uint8_t *)inputs[i], strlen(inputs[i]) + 1), 0);
        ck_assert_int_eq(sncp_tls_handshake(s), SNCP_E_TLS_HANDSHAKE);
        ck_assert_str_eq(sncp_tls_error(s),
                         "plaintext received on a TLS session (not a TLS record)");
        /* Sticky. */
        ck_assert_int_eq(sncp_tls_handshake(s), SNCP_E_TLS_HANDSHAKE);
        sncp_tls_destroy(s);
    }
    sncp_tls_ctx_destroy(sc);
}
END_TEST

START_TEST(test_garbage_after_handshake)
{
    struct sncp_tls_ctx *sc = ctx_for(SNCP_TLS_SERVER, "server", "ca.crt");
    struct sncp_tls_ctx *cc = ctx_for(SNCP_TLS_CLIENT, "client", "ca.crt");
    struct sncp_tls *s = sncp_tls_create(sc, NULL);
    struct sncp_tls *c = sncp_tls_create(cc, NULL);
    struct pair_result r = run_pair(c, s);
    ck_assert_int_eq(r.server_rc, 1);
    /* A record with a valid header and a corrupted body fails authentication. */
    ck_assert_int_eq(sncp_tls_write(c, (const uint8_t *)"payload", 7), 0);
    uint8_t ct[256];
    size_t n = sncp_tls_drain(c, ct, sizeof ct);
    ct[n - 1] ^= 0x55;
    ck_assert_int_eq(sncp_tls_feed(s, ct, n), 0);
    uint8_t buf[64];
    ck_assert_int_eq(sncp_tls_read(s, buf, sizeof buf), SNCP_E_TLS);
    ck_assert_str_ne(sncp_tls_error(s), "");
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    sncp_tls_ctx_destroy(cc);
    sncp_tls_ctx_destroy(sc);
}
END_TEST

/* One message each way between an established pair: what one side writes, the other reads. */
static void exchange(struct sncp_tls *c, struct sncp_tls *s, const char *tag)
{
    uint8_t buf[64];
    char want[32];
    snprintf(want, sizeof want, "c>s %s", tag);
    ck_assert_int_eq(sncp_tls_write(c, (const uint8_t *)want, strlen(want)), 0);
    move(c, s);
    ck_assert_int_eq(sncp_tls_read(s, buf, sizeof buf), (int)strlen(want));
    ck_assert_mem_eq(buf, want, strlen(want));
    snprintf(want, sizeof want, "s>c %s", tag);
    ck_assert_int_eq(sncp_tls_write(s, (const uint8_t *)want, strlen(want)), 0);
    move(s, c);
    ck_assert_int_eq(sncp_tls_read(c, buf, sizeof buf), (int)strlen(want));
    ck_assert_mem_eq(buf, want, strlen(want));
}

/* An established server connection runs on its own record layer: KeyUpdate either way (each
 * side asks the other to update too) keeps the traffic flowing, several times over. */
START_TEST(test_key_update)
{
    struct sncp_tls_ctx *sc = ctx_for(SNCP_TLS_SERVER, "server", "ca.crt");
    struct sncp_tls_ctx *cc = ctx_for(SNCP_TLS_CLIENT, "client", "ca.crt");
    struct sncp_tls *s = sncp_tls_create(sc, NULL);
    struct sncp_tls *c = sncp_tls_create(cc, "server");
    ck_assert_int_eq(sncp_tls_key_update(s), SNCP_E_NOT_ESTABLISHED);
    struct pair_result r = run_pair(c, s);
    ck_assert_int_eq(r.client_rc, 1);
    ck_assert_int_eq(r.server_rc, 1);
    char ds[96], dc[96];
    ck_assert_str_eq(sncp_tls_description(s, ds, sizeof ds),
                     sncp_tls_description(c, dc, sizeof dc));
    /* tests/integration/test-tls-suites.sh runs this suite once per cipher suite. */
    const char *suite = getenv("SNCP_TEST_TLS_SUITE");
    if (suite)
        ck_assert_msg(strstr(ds, suite) != NULL, "negotiated '%s', want %s", ds, suite);
    exchange(c, s, "before");
    uint8_t buf[64];
    for (int round = 0; round < 3; round++) {
        char tag[16];
        /* The client asks: the server updates its read key, then answers with its own. */
        ck_assert_int_eq(sncp_tls_key_update(c), 0);
        ck_assert_uint_gt(move(c, s), 0);
        ck_assert_int_eq(sncp_tls_read(s, buf, sizeof buf), 0);
        ck_assert_uint_gt(move(s, c), 0);
        ck_assert_int_eq(sncp_tls_read(c, buf, sizeof buf), 0);
        snprintf(tag, sizeof tag, "c%d", round);
        exchange(c, s, tag);
        /* The server asks: OpenSSL answers with its next write (exchange's first). */
        ck_assert_int_eq(sncp_tls_key_update(s), 0);
        ck_assert_uint_gt(move(s, c), 0);
        ck_assert_int_eq(sncp_tls_read(c, buf, sizeof buf), 0);
        snprintf(tag, sizeof tag, "s%d", round);
        exchange(c, s, tag);
        sncp_tls_trim(s);
        sncp_tls_trim(c);
    }
    ck_assert_str_eq(sncp_tls_error(s), "");
    ck_assert_str_eq(sncp_tls_error(c), "");
    /* Our close_notify reaches the client. */
    sncp_tls_shutdown(s);
    move(s, c);
    ck_assert_int_eq(sncp_tls_read(c, buf, sizeof buf), SNCP_E_PEER_CLOSED);
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    sncp_tls_ctx_destroy(cc);
    sncp_tls_ctx_destroy(sc);
}
END_TEST

/* Records an attacker could send to an established server: each one fails the connection
 * with its reason, and the client is told (an alert) where the record was protected. */
static void expect_record_refused(const uint8_t *rec, size_t len, int corrupt_real,
                                  const char *reason)
{
    struct sncp_tls_ctx *sc = ctx_for(SNCP_TLS_SERVER, "server", "ca.crt");
    struct sncp_tls_ctx *cc = ctx_for(SNCP_TLS_CLIENT, "client", "ca.crt");
    struct sncp_tls *s = sncp_tls_create(sc, NULL);
    struct sncp_tls *c = sncp_tls_create(cc, "server");
    struct pair_result r = run_pair(c, s);
    ck_assert_int_eq(r.server_rc, 1);
    exchange(c, s, "ok");
    uint8_t ct[512], buf[64];
    if (corrupt_real) { /* a real record, one byte changed at offset len */
        ck_assert_int_eq(sncp_tls_write(c, (const uint8_t *)"payload", 7), 0);
        size_t n = sncp_tls_drain(c, ct, sizeof ct);
        ck_assert_uint_gt(n, len);
        ct[len] ^= 0x01;
        ck_assert_int_eq(sncp_tls_feed(s, ct, n), 0);
    } else {
        ck_assert_int_eq(sncp_tls_feed(s, rec, len), 0);
    }
    ck_assert_int_eq(sncp_tls_read(s, buf, sizeof buf), SNCP_E_TLS);
    ck_assert_msg(strstr(sncp_tls_error(s), reason) != NULL, "server error '%s', want '%s'",
                  sncp_tls_error(s), reason);
    /* Failed for good: nothing more is read or written. */
    ck_assert_int_eq(sncp_tls_read(s, buf, sizeof buf), SNCP_E_TLS);
    ck_assert_int_lt(sncp_tls_write(s, (const uint8_t *)"x", 1), 0);
    ck_assert_uint_gt(move(s, c), 0); /* the alert */
    ck_assert_int_lt(sncp_tls_read(c, buf, sizeof buf), 0);
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    sncp_tls_ctx_destroy(cc);
    sncp_tls_ctx_destroy(sc);
}

START_TEST(test_records_refused)
{
    /* a plaintext alert, a change_cipher_spec, a wrong version, an oversized record, one
     * too short for a tag */
    static const uint8_t alert[] = {21, 3, 3, 0, 2, 2, 40};
    static const uint8_t ccs[] = {20, 3, 3, 0, 1, 1};
    static const uint8_t version[] = {23, 3, 1, 0, 20};
    static const uint8_t overflow[] = {23, 3, 3, 0x41, 0x01};
    static const uint8_t short_rec[] = {23, 3, 3, 0, 16};
    expect_record_refused(alert, sizeof alert, 0, "unprotected record");
    expect_record_refused(ccs, sizeof ccs, 0, "unprotected record");
    expect_record_refused(version, sizeof version, 0, "wrong record version");
    expect_record_refused(overflow, sizeof overflow, 0, "record overflow");
    expect_record_refused(short_rec, sizeof short_rec, 0, "record too short");
    /* a real record altered: in its body, in its tag */
    expect_record_refused(NULL, 5, 1, "bad record mac");
    expect_record_refused(NULL, 9, 1, "bad record mac");
    expect_record_refused(NULL, 5 + 7 + 1 + 15, 1, "bad record mac");
}
END_TEST

START_TEST(test_ctx_errors_and_reload)
{
    char err[256] = "";
    ck_assert_ptr_null(sncp_tls_ctx_create(SNCP_TLS_SERVER, pki("server.crt"), pki("client.key"),
                                           pki("ca.crt"), err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "does not match"));
    ck_assert_ptr_null(sncp_tls_ctx_create(SNCP_TLS_SERVER, pki("server.crt"), pki("server.key"),
                                           pki("missing-ca.crt"), err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "CA bundle"));
    struct sncp_tls_ctx *sc = ctx_for(SNCP_TLS_SERVER, "server", "ca.crt");
    ck_assert_int_eq(sncp_tls_ctx_reload(sc, err, sizeof err), 0);
    /* A session created before a reload keeps working after it. */
    struct sncp_tls *s = sncp_tls_create(sc, NULL);
    ck_assert_int_eq(sncp_tls_ctx_reload(sc, err, sizeof err), 0);
    struct sncp_tls_ctx *cc = ctx_for(SNCP_TLS_CLIENT, "client", "ca.crt");
    struct sncp_tls *c = sncp_tls_create(cc, NULL);
    struct pair_result r = run_pair(c, s);
    ck_assert_int_eq(r.server_rc, 1);
    ck_assert_int_eq(r.client_rc, 1);
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    sncp_tls_ctx_destroy(cc);
    sncp_tls_ctx_destroy(sc);
    sncp_tls_ctx_destroy(NULL);
    sncp_tls_destroy(NULL);
}
END_TEST

/* ---- certificate identity (PROTOCOL.md §11.1) -------------------------------------------- */

struct name_spec {
    int type; /* GEN_DNS, GEN_URI, GEN_EMAIL; for subject CNs: an ASN.1 string type */
    const char *data;
    int len; /* -1: strlen(data) */
};

/* Issues BASE.crt/BASE.key in the PKI directory, signed by the test CA, with the given subject
 * commonNames (any count, any string type, any bytes) and subjectAltNames in this order: what
 * the openssl CLI cannot write (NULs, invalid UTF-8), built with the OpenSSL API. */
static void make_cert(const char *base, const struct name_spec *cns, int n_cns,
                      const struct name_spec *sans, int n_sans)
{
    char file[64];
    FILE *f = fopen(pki("ca.key"), "r");
    ck_assert_ptr_nonnull(f);
    EVP_PKEY *ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    f = fopen(pki("ca.crt"), "r");
    ck_assert_ptr_nonnull(f);
    X509 *ca = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ck_assert(ca_key && ca);

    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ck_assert(key && x);
    X509_set_version(x, 2);
    unsigned char serial[16];
    RAND_bytes(serial, sizeof serial);
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(x), -300);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_issuer_name(x, X509_get_subject_name(ca));
    X509_NAME *subj = X509_get_subject_name(x);
    for (int i = 0; i < n_cns; i++) {
        int len = cns[i].len < 0 ? (int)strlen(cns[i].data) : cns[i].len;
        ck_assert(X509_NAME_add_entry_by_NID(subj, NID_commonName, cns[i].type,
                                             (const unsigned char *)cns[i].data, len, -1, 0));
    }
    if (n_sans) {
        GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
        for (int i = 0; i < n_sans; i++) {
            GENERAL_NAME *gn = GENERAL_NAME_new();
            ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
            int len = sans[i].len < 0 ? (int)strlen(sans[i].data) : sans[i].len;
            ASN1_STRING_set(ia5, sans[i].data, len);
            GENERAL_NAME_set0_value(gn, sans[i].type, ia5);
            sk_GENERAL_NAME_push(gens, gn);
        }
        X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT);
        GENERAL_NAMES_free(gens);
    }
    X509_set_pubkey(x, key);
    ck_assert_msg(X509_sign(x, ca_key, EVP_sha256()) > 0, "%s: %s", base,
                  ERR_error_string(ERR_get_error(), NULL));

    snprintf(file, sizeof file, "%s.crt", base);
    f = fopen(pki(file), "w");
    ck_assert_ptr_nonnull(f);
    PEM_write_X509(f, x);
    fclose(f);
    snprintf(file, sizeof file, "%s.key", base);
    f = fopen(pki(file), "w");
    ck_assert_ptr_nonnull(f);
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ca_key);
}

/* Handshakes a client holding BASE's certificate with the "server"; returns the server's
 * result and copies its identity or error into out. */
static int server_sees(const char *base, char *out, size_t cap)
{
    struct sncp_tls_ctx *sc = ctx_for(SNCP_TLS_SERVER, "server", "ca.crt");
    struct sncp_tls_ctx *cc = ctx_for(SNCP_TLS_CLIENT, base, "ca.crt");
    struct sncp_tls *s = sncp_tls_create(sc, NULL);
    struct sncp_tls *c = sncp_tls_create(cc, "server");
    struct pair_result r = run_pair(c, s);
    snprintf(out, cap, "%s", r.server_rc == 1 ? sncp_tls_peer_identity(s) : sncp_tls_error(s));
    if (r.server_rc != 1)
        ck_assert_msg(r.client_rc < 0 || r.client_read < 0, "%s: client not refused", base);
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    sncp_tls_ctx_destroy(cc);
    sncp_tls_ctx_destroy(sc);
    return r.server_rc;
}

START_TEST(test_identity_rule)
{
    static const struct {
        const char *base;
        struct name_spec cns[2];
        int n_cns;
        struct name_spec sans[3];
        int n_sans;
        int ok;
        const char *want; /* the identity, or a part of the refusal */
    } cases[] = {
        /* the first DNS/URI name, in certificate order, whatever follows */
        {"id-dns",
         {{V_ASN1_UTF8STRING, "cn-ignored", -1}},
         1,
         {{GEN_EMAIL, "a@example.org", -1}, {GEN_DNS, "hv-a", -1}, {GEN_URI, "spiffe://x/a", -1}},
         3,
         1,
         "hv-a"},
        {"id-uri",
         {{V_ASN1_UTF8STRING, "cn-ignored", -1}},
         1,
         {{GEN_URI, "spiffe://example.org/hv/b", -1}, {GEN_DNS, "hv-b", -1}},
         2,
         1,
         "spiffe://example.org/hv/b"},
        /* no DNS/URI name (an e-mail address does not count): the commonName */
        {"id-cn",
         {{V_ASN1_UTF8STRING, "Hypervisor \xc3\xa9t\xc3\xa9 7", -1}},
         1,
         {{GEN_EMAIL, "a@example.org", -1}},
         1,
         1,
         "Hypervisor \xc3\xa9t\xc3\xa9 7"},
        {"id-cn-bmp", {{V_ASN1_BMPSTRING, "\0h\0v\0-\0c", 8}}, 1, {{0, NULL, 0}}, 0, 1, "hv-c"},
        /* refused: a bad first name is not skipped for a good later one */
        {"id-dns-nul",
         {{V_ASN1_UTF8STRING, "cn", -1}},
         1,
         {{GEN_DNS, "hv-a\0.evil", 10}, {GEN_DNS, "hv-a", -1}},
         2,
         0,
         "NUL"},
        {"id-dns-8bit",
         {{V_ASN1_UTF8STRING, "cn", -1}},
         1,
         {{GEN_DNS, "hv-\xc3\xa9", -1}},
         1,
         0,
         "not ASCII"},
        {"id-dns-ctl",
         {{V_ASN1_UTF8STRING, "cn", -1}},
         1,
         {{GEN_DNS, "hv\n-d", -1}},
         1,
         0,
         "control character"},
        {"id-cn-nul", {{V_ASN1_UTF8STRING, "hv-e\0admin", 10}}, 1, {{0, NULL, 0}}, 0, 0, "NUL"},
        {"id-cn-ia5", {{V_ASN1_IA5STRING, "hv-\xff", -1}}, 1, {{0, NULL, 0}}, 0, 0, "not ASCII"},
        {"id-cn-printable",
         {{V_ASN1_PRINTABLESTRING, "hv\x01", -1}},
         1,
         {{0, NULL, 0}},
         0,
         0,
         "control character"},
        {"id-cn-c1",
         {{V_ASN1_UTF8STRING, "hv-\xc2\x9b", -1}},
         1,
         {{0, NULL, 0}},
         0,
         0,
         "control character"},
        {"id-cn-two",
         {{V_ASN1_UTF8STRING, "hv-f", -1}, {V_ASN1_UTF8STRING, "hv-g", -1}},
         2,
         {{0, NULL, 0}},
         0,
         0,
         "several commonNames"},
        {"id-none",
         {{0, NULL, 0}},
         0,
         {{GEN_EMAIL, "a@example.org", -1}},
         1,
         0,
         "no DNS/URI subjectAltName and no commonName"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_cert(cases[i].base, cases[i].cns, cases[i].n_cns, cases[i].sans, cases[i].n_sans);
        char seen[512];
        int rc = server_sees(cases[i].base, seen, sizeof seen);
        if (cases[i].ok) {
            ck_assert_msg(rc == 1, "%s refused: %s", cases[i].base, seen);
            ck_assert_str_eq(seen, cases[i].want);
        } else {
            ck_assert_msg(rc == SNCP_E_PEER_IDENTITY, "%s: rc %d (%s)", cases[i].base, rc, seen);
            ck_assert_msg(strstr(seen, "no usable identity") && strstr(seen, cases[i].want),
                          "%s: %s", cases[i].base, seen);
        }
    }
    /* A UTF8String commonName that is not UTF-8 (here a surrogate) never gets as far as the
     * identity rule: OpenSSL refuses to decode such a certificate, so the peer's handshake
     * fails.  Checked here because the rule above relies on it. */
    struct name_spec cn = {V_ASN1_UTF8STRING, "hv-QQQ", -1};
    make_cert("id-cn-patch", &cn, 1, NULL, 0);
    FILE *f = fopen(pki("id-cn-patch.crt"), "r");
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    X509_free(x);
    unsigned char *at = memmem(der, (size_t)len, "hv-QQQ", 6);
    ck_assert_ptr_nonnull(at);
    memcpy(at + 3, "\xed\xa0\x80", 3);
    const unsigned char *p = der;
    ck_assert_ptr_null(d2i_X509(NULL, &p, len));
    ERR_clear_error();
    OPENSSL_free(der);

    /* A 255-byte identity is accepted, 256 bytes are not. */
    char longname[300];
    memset(longname, 'a', sizeof longname);
    struct name_spec dns = {GEN_DNS, longname, 255};
    make_cert("id-255", NULL, 0, &dns, 1);
    char seen[512];
    ck_assert_int_eq(server_sees("id-255", seen, sizeof seen), 1);
    ck_assert_uint_eq(strlen(seen), 255);
    dns.len = 256;
    make_cert("id-256", NULL, 0, &dns, 1);
    ck_assert_int_eq(server_sees("id-256", seen, sizeof seen), SNCP_E_PEER_IDENTITY);
    ck_assert_ptr_nonnull(strstr(seen, "longer than 255 bytes"));
}
END_TEST

/* The client's expected identity matches any valid DNS/URI name of the server, not only the
 * first; a bad first name still refuses the server. */
START_TEST(test_expected_identity_any_name)
{
    struct name_spec sans[] = {{GEN_URI, "spiffe://example.org/tor1", -1}, {GEN_DNS, "tor1", -1}};
    make_cert("sw-two", NULL, 0, sans, 2);
    struct sncp_tls_ctx *sc = ctx_for(SNCP_TLS_SERVER, "sw-two", "ca.crt");
    struct sncp_tls_ctx *cc = ctx_for(SNCP_TLS_CLIENT, "client", "ca.crt");
    struct sncp_tls *s = sncp_tls_create(sc, NULL);
    struct sncp_tls *c = sncp_tls_create(cc, "tor1");
    struct pair_result r = run_pair(c, s);
    ck_assert_int_eq(r.client_rc, 1);
    ck_assert_str_eq(sncp_tls_peer_identity(c), "spiffe://example.org/tor1");
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    sncp_tls_ctx_destroy(sc);

    struct name_spec bad[] = {{GEN_DNS, "tor1\0x", 6}, {GEN_DNS, "tor1", -1}};
    make_cert("sw-bad", NULL, 0, bad, 2);
    sc = ctx_for(SNCP_TLS_SERVER, "sw-bad", "ca.crt");
    s = sncp_tls_create(sc, NULL);
    c = sncp_tls_create(cc, "tor1");
    r = run_pair(c, s);
    ck_assert_int_eq(r.client_rc, SNCP_E_PEER_IDENTITY);
    ck_assert_ptr_nonnull(strstr(sncp_tls_error(c), "NUL"));
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    sncp_tls_ctx_destroy(sc);
    sncp_tls_ctx_destroy(cc);
}
END_TEST

/* ---- revocation -------------------------------------------------------------------------- */

static void gen_crl(const char *file, const char *revoke1, const char *revoke2)
{
    const char *argv[] = {SRCDIR "/scripts/gen-crl.sh", pki_dir, pki(file), revoke1, revoke2, NULL};
    ck_assert_int_eq(testutil_run(argv), 0);
}

START_TEST(test_crl)
{
    char err[512] = "";
    gen_crl("crl-client.pem", "client", NULL);
    gen_crl("crl-empty.pem", NULL, NULL);
    struct sncp_tls_ctx *sc = ctx_for(SNCP_TLS_SERVER, "server", "ca.crt");
    struct sncp_tls_ctx *cc = ctx_for(SNCP_TLS_CLIENT, "client", "ca.crt");
    struct sncp_tls_ctx *oc = ctx_for(SNCP_TLS_CLIENT, "other-client", "ca.crt");
    /* Established before any CRL. */
    struct sncp_tls *s0 = sncp_tls_create(sc, NULL);
    struct sncp_tls *c0 = sncp_tls_create(cc, "server");
    ck_assert_int_eq(run_pair(c0, s0).server_rc, 1);
    ck_assert_int_eq(sncp_tls_revoked(s0, sc, err, sizeof err), 0);

    ck_assert_msg(sncp_tls_ctx_set_crl(sc, pki("crl-client.pem"), err, sizeof err) == 0, "%s", err);
    /* The revoked client is refused at its next handshake ... */
    struct sncp_tls *s = sncp_tls_create(sc, NULL);
    struct sncp_tls *c = sncp_tls_create(cc, "server");
    struct pair_result r = run_pair(c, s);
    ck_assert_int_eq(r.server_rc, SNCP_E_TLS_HANDSHAKE);
    ck_assert_str_eq(sncp_tls_error(s), "certificate verify failed: certificate revoked");
    ck_assert_msg(r.client_rc < 0 || r.client_read < 0, "revoked client not told");
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    /* ... a client the CRL does not name is not ... */
    s = sncp_tls_create(sc, NULL);
    c = sncp_tls_create(oc, "server");
    r = run_pair(c, s);
    ck_assert_int_eq(r.server_rc, 1);
    ck_assert_int_eq(sncp_tls_revoked(s, sc, err, sizeof err), 0);
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    /* ... and the session established before the CRL is found revoked now. */
    ck_assert_int_eq(sncp_tls_revoked(s0, sc, err, sizeof err), 1);
    ck_assert_ptr_nonnull(strstr(err, "the peer's certificate (serial "));

    /* A missing file, a file without a CRL, a CRL of another CA: refused, the old one stays. */
    ck_assert_int_eq(sncp_tls_ctx_set_crl(sc, pki("missing.pem"), err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, "cannot load CRL file"));
    ck_assert_int_eq(sncp_tls_ctx_set_crl(sc, pki("client.crt"), err, sizeof err), SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, "cannot load CRL file"));
    {
        const char *argv[] = {SRCDIR "/scripts/gen-crl.sh", "--ca", "other-ca", pki_dir,
                              pki("crl-forged.pem"),        NULL};
        ck_assert_int_eq(testutil_run(argv), 0);
    }
    ck_assert_int_eq(sncp_tls_ctx_set_crl(sc, pki("crl-forged.pem"), err, sizeof err),
                     SNCP_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, "not signed by a CA of the bundle"));
    s = sncp_tls_create(sc, NULL);
    c = sncp_tls_create(cc, "server");
    ck_assert_int_eq(run_pair(c, s).server_rc, SNCP_E_TLS_HANDSHAKE);
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    /* reload re-reads the file: an empty CRL lets the client in again */
    ck_assert_msg(sncp_tls_ctx_set_crl(sc, pki("crl-empty.pem"), err, sizeof err) == 0, "%s", err);
    s = sncp_tls_create(sc, NULL);
    c = sncp_tls_create(cc, "server");
    ck_assert_int_eq(run_pair(c, s).server_rc, 1);
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    /* The client side checks the server the same way. */
    gen_crl("crl-server.pem", "server", NULL);
    ck_assert_msg(sncp_tls_ctx_set_crl(cc, pki("crl-server.pem"), err, sizeof err) == 0, "%s", err);
    s = sncp_tls_create(sc, NULL);
    c = sncp_tls_create(cc, "server");
    r = run_pair(c, s);
    ck_assert_int_eq(r.client_rc, SNCP_E_TLS_HANDSHAKE);
    ck_assert_str_eq(sncp_tls_error(c), "certificate verify failed: certificate revoked");
    sncp_tls_destroy(c);
    sncp_tls_destroy(s);
    /* No CRL any more. */
    ck_assert_int_eq(sncp_tls_ctx_set_crl(cc, NULL, err, sizeof err), 0);
    ck_assert_int_eq(sncp_tls_revoked(c0, cc, err, sizeof err), 0);
    sncp_tls_destroy(c0);
    sncp_tls_destroy(s0);
    sncp_tls_ctx_destroy(oc);
    sncp_tls_ctx_destroy(cc);
    sncp_tls_ctx_destroy(sc);
}
END_TEST

static Suite *tls_suite(void)
{
    Suite *s = suite_create("sncp-tls");
    TCase *tc = tcase_create("tls");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_mutual_auth);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_write_before_handshake);
    tcase_add_test(tc, test_close_notify);
    tcase_add_test(tc, test_other_ca_client);
    tcase_add_test(tc, test_expired_client);
    tcase_add_test(tc, test_other_ca_server);
    tcase_add_test(tc, test_expired_server);
    tcase_add_test(tc, test_no_client_certificate);
    tcase_add_test(tc, test_wrong_identity);
    tcase_add_test(tc, test_plaintext_to_server);
    tcase_add_test(tc, test_garbage_after_handshake);
    tcase_add_test(tc, test_ctx_errors_and_reload);
    tcase_add_test(tc, test_identity_rule);
    tcase_add_test(tc, test_expected_identity_any_name);
    tcase_add_test(tc, test_crl);
    tcase_add_test(tc, test_key_update);
    tcase_add_test(tc, test_records_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    static const char *const gen[] = {SRCDIR "/scripts/gen-pki.sh",
                                      "--expired",
                                      "old",
                                      "--other-ca",
                                      "evil",
                                      pki_dir,
                                      "server",
                                      "client",
                                      "other-client",
                                      NULL};
    if (testutil_pki_create(pki_dir, sizeof pki_dir, "sncp-test-tls", gen) < 0)
        return 1;
    SRunner *sr = srunner_create(tls_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    testutil_rm_tree(pki_dir);
    return failed ? 1 : 0;
}
