/* sncp-tls.c: the TLS 1.3 engine of SNCP on an OpenSSL memory BIO pair.
 *
 * Each connection owns two memory BIOs: the read BIO receives ciphertext handed in by the
 * owner (sncp_tls_feed), the write BIO collects what OpenSSL wants to send (sncp_tls_drain).
 * Nothing here touches a socket or a clock.  Both roles require and verify the peer's
 * certificate; the expected identity is checked inside the verify callback, so a mismatch
 * fails the handshake with a proper alert to the peer.  Every failure leaves a one-line,
 * human-readable reason in sncp_tls_error(), and the OpenSSL error queue is cleared around
 * every operation so one connection's errors never leak into another's.
 */
#include "sncp-tls.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/buffer.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "sncp-error.h"
#include "sncp-msg.h"

enum { TLS_ERROR_MAX = 256, TLS_PATH_MAX = 4096 };

struct sncp_tls_ctx {
    enum sncp_tls_role role;
    SSL_CTX *ssl_ctx;
    char cert_file[TLS_PATH_MAX];
    char key_file[TLS_PATH_MAX];
    char ca_file[TLS_PATH_MAX];
    char crl_file[TLS_PATH_MAX]; /* "" when no CRL is configured */
};

/* The application traffic secrets of one handshake, from its key log (keylog_take). */
struct tls_secrets {
    uint8_t c[EVP_MAX_MD_SIZE], s[EVP_MAX_MD_SIZE]; /* the client's and the server's */
    size_t c_len, s_len;
};

/* What only the handshake needs: freed when it completes (an idle connection is one of
 * many, and each keeps only what it still uses). */
struct tls_handshake {
    char expected[SNCP_TLS_IDENTITY_MAX];
    char mismatch_identity[SNCP_TLS_IDENTITY_MAX];
    char bad_identity[TLS_ERROR_MAX]; /* why the certificate has no usable identity */
    struct tls_secrets keys;          /* server role */
};

struct tls_rec;

struct sncp_tls {
    SSL *ssl;
    BIO *rbio;                /* ciphertext from the peer (we write, OpenSSL reads) */
    BIO *wbio;                /* ciphertext to the peer (OpenSSL writes, we read) */
    struct tls_handshake *hs; /* until the handshake completes */
    struct tls_rec *rec;      /* an established server connection: ssl is freed */
    char *identity;           /* the peer's, once established (exact size) */
    uint8_t *chain_keys;      /* the verified chain's issuers and serials (chain_keys_save) */
    size_t chain_keys_len;
    enum sncp_tls_role role;
    int established;
    int failed;
    int identity_mismatch;
    int saw_first_byte;
    uint8_t first_byte;
    char error[TLS_ERROR_MAX];
};

static int tls_ex_index = -1;

/* Empties this thread's OpenSSL error queue.  Peeking first is much cheaper than an
 * unconditional ERR_clear_error() in OpenSSL 3, and the queue is almost always empty on
 * the data path. */
static void clear_errors(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

static void set_error(struct sncp_tls *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error(struct sncp_tls *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->error, sizeof t->error, fmt, ap);
    va_end(ap);
}

static void put_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void put_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The most relevant queued OpenSSL error as text (the last one), then clears the queue. */
static void openssl_reason(char *buf, size_t cap)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0)
        last = e;
    if (!last) {
        snprintf(buf, cap, "unknown error");
        return;
    }
    const char *r = ERR_reason_error_string(last);
    if (r)
        snprintf(buf, cap, "%s", r);
    else
        ERR_error_string_n(last, buf, cap);
}

/* Decodes an ASN.1 string into an identity (PROTOCOL.md §11.1): converted to UTF-8 with
 * ASN1_STRING_to_UTF8, then 1..SNCP_TLS_IDENTITY_MAX-1 bytes of valid UTF-8 with no NUL and
 * no control character (C0, DEL, C1), so that it can be logged and shown as it is.  `ia5`:
 * the string is an IA5String (dNSName, URI; also a commonName of that type): ASCII only, where
 * ASN1_STRING_to_UTF8 would read other bytes as Latin-1.  Returns 0, or -1 with what
 * is wrong in *why. */
static int identity_decode(const ASN1_STRING *s, int ia5, char *out, size_t cap, const char **why)
{
    if (ia5 || ASN1_STRING_type(s) == V_ASN1_IA5STRING) {
        const unsigned char *raw = ASN1_STRING_get0_data(s);
        int rawlen = ASN1_STRING_length(s);
        for (int i = 0; raw && i < rawlen; i++)
            if (raw[i] >= 0x80) {
                *why = "not ASCII";
                return -1;
            }
    }
    unsigned char *u = NULL;
    int n = ASN1_STRING_to_UTF8(&u, s);
    if (n < 0) {
        clear_errors();
        *why = "not valid text (cannot be converted to UTF-8)";
        return -1;
    }
    int rc = -1;
    if (n == 0)
        *why = "empty";
    else if ((size_t)n >= cap || n >= SNCP_TLS_IDENTITY_MAX)
        *why = "longer than 255 bytes";
    else if (memchr(u, '\0', (size_t)n))
        *why = "contains a NUL byte";
    else if (!sncp_utf8_valid(u, (size_t)n))
        *why = "not valid UTF-8";
    else
        rc = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        /* C0 and DEL; C1 (U+0080..U+009F) is C2 80..C2 9F in UTF-8. */
        if (u[i] < 0x20 || u[i] == 0x7f || (u[i] == 0xc2 && i + 1 < n && u[i + 1] < 0xa0)) {
            *why = "contains a control character";
            rc = -1;
        }
    }
    if (rc == 0) {
        memcpy(out, u, (size_t)n);
        out[n] = '\0';
    }
    OPENSSL_free(u);
    return rc;
}

/* The identity of a certificate (PROTOCOL.md §11.1): its first subjectAltName of type
 * dNSName or uniformResourceIdentifier, in certificate order; without one, its subject
 * commonName (exactly one).  Returns 0 with the identity in out, or -1 with the reason in
 * why[0..whylen): the certificate is refused then (a bad first name is never skipped for
 * a later one).  If `expected` is non-NULL, *match is set when any valid DNS/URI name (or
 * the commonName, without such names) equals it. */
static int cert_identity(X509 *cert, char *out, size_t cap, const char *expected, int *match,
                         char *why, size_t whylen)
{
    int have_san = 0, rc = 0;
    const char *bad = NULL;
    if (match)
        *match = 0;
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        const ASN1_STRING *s;
        if (gn->type == GEN_DNS)
            s = gn->d.dNSName;
        else if (gn->type == GEN_URI)
            s = gn->d.uniformResourceIdentifier;
        else
            continue;
        char tmp[SNCP_TLS_IDENTITY_MAX];
        int ok = identity_decode(s, 1, tmp, sizeof tmp, &bad) == 0;
        if (!have_san) {
            have_san = 1;
            if (!ok) {
                snprintf(why, whylen, "its first DNS/URI subjectAltName is %s", bad);
                rc = -1;
                break;
            }
            snprintf(out, cap, "%s", tmp);
        }
        if (ok && expected && match && strcmp(tmp, expected) == 0)
            *match = 1;
    }
    GENERAL_NAMES_free(names);
    if (rc < 0 || have_san)
        return rc;
    X509_NAME *subj = X509_get_subject_name(cert);
    int idx = subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
    if (idx < 0) {
        snprintf(why, whylen, "it has no DNS/URI subjectAltName and no commonName");
        return -1;
    }
    if (X509_NAME_get_index_by_NID(subj, NID_commonName, idx) >= 0) {
        snprintf(why, whylen, "it has no DNS/URI subjectAltName and several commonNames");
        return -1;
    }
    const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
    if (!cn || identity_decode(cn, 0, out, cap, &bad) < 0) {
        snprintf(why, whylen, "its commonName is %s", cn ? bad : "missing");
        return -1;
    }
    if (expected && match && strcmp(out, expected) == 0)
        *match = 1;
    return 0;
}

/* Decodes exactly `n` bytes of hex from s; returns the position after them or NULL. */
static const char *hex_decode(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = OPENSSL_hexchar2int((unsigned char)s[2 * i]);
        int lo = hi < 0 ? -1 : OPENSSL_hexchar2int((unsigned char)s[2 * i + 1]);
        if (lo < 0)
            return NULL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return s + 2 * n;
}

/* Takes an application traffic secret of ssl's own handshake from one of its key log lines
 * into k.  Returns 1 when the line gave one, 0 for a line of another kind, -1 for one that
 * does not decode or is of another handshake (another client random). */
static int keylog_take(const SSL *ssl, const char *line, struct tls_secrets *k)
{
    static const char cl[] = "CLIENT_TRAFFIC_SECRET_0 ", sv[] = "SERVER_TRAFFIC_SECRET_0 ";
    uint8_t *dst;
    size_t *dlen;
    if (!strncmp(line, cl, sizeof cl - 1)) {
        dst = k->c;
        dlen = &k->c_len;
    } else if (!strncmp(line, sv, sizeof sv - 1)) {
        dst = k->s;
        dlen = &k->s_len;
    } else {
        return 0;
    }
    uint8_t random[SSL3_RANDOM_SIZE], logged[SSL3_RANDOM_SIZE];
    const char *p = hex_decode(line + sizeof cl - 1, logged, sizeof logged);
    if (!p || *p != ' ' || SSL_get_client_random(ssl, random, sizeof random) != sizeof random ||
        CRYPTO_memcmp(random, logged, sizeof random))
        return -1;
    size_t n = strlen(++p) / 2;
    if (n == 0 || n > EVP_MAX_MD_SIZE || p[2 * n] != '\0' || !hex_decode(p, dst, n))
        return -1;
    *dlen = n;
    return 1;
}

/* The server's key log: keeps this handshake's application traffic secrets (for the record
 * layer it continues on, see rec_create). */
static void keylog_cb(const SSL *ssl, const char *line)
{
    struct sncp_tls *t = SSL_get_ex_data(ssl, tls_ex_index);
    if (t && t->hs)
        keylog_take(ssl, line, &t->hs->keys);
}

/* Keeps the issuer name and serial number of each certificate of the verified peer chain:
 * all a later revocation check needs (sncp_tls_revoked), without the certificates.  Returns
 * 0 or -1 (out of memory or an unencodable field). */
static int chain_keys_save(struct sncp_tls *t)
{
    STACK_OF(X509) *chain = SSL_get0_verified_chain(t->ssl);
    size_t total = 0;
    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        int a = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), NULL);
        int b = i2d_X509_NAME(X509_get_issuer_name(x), NULL);
        if (a <= 0 || b <= 0 || a > 0xffff || b > 0xffff)
            return -1;
        total += 4 + (size_t)a + (size_t)b;
    }
    uint8_t *buf = total ? malloc(total) : NULL;
    if (total && !buf)
        return -1;
    uint8_t *p = buf;
    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        uint8_t *len = p;
        p += 2;
        int a = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &p);
        len[0] = (uint8_t)(a >> 8);
        len[1] = (uint8_t)a;
        len = p;
        p += 2;
        int b = i2d_X509_NAME(X509_get_issuer_name(x), &p);
        len[0] = (uint8_t)(b >> 8);
        len[1] = (uint8_t)b;
    }
    t->chain_keys = buf;
    t->chain_keys_len = total;
    return 0;
}

static int verify_cb(int preverify_ok, X509_STORE_CTX *store)
{
    if (!preverify_ok || X509_STORE_CTX_get_error_depth(store) != 0)
        return preverify_ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct sncp_tls *t = ssl ? SSL_get_ex_data(ssl, tls_ex_index) : NULL;
    if (!t)
        return preverify_ok;
    struct tls_handshake *hs = t->hs;
    if (!hs) /* no verification outside the handshake (no post-handshake authentication) */
        return 0;
    X509 *cert = X509_STORE_CTX_get_current_cert(store);
    char id[SNCP_TLS_IDENTITY_MAX];
    int match = 0;
    if (cert_identity(cert, id, sizeof id, hs->expected[0] ? hs->expected : NULL, &match,
                      hs->bad_identity, sizeof hs->bad_identity) < 0 ||
        (hs->expected[0] && !match)) {
        t->identity_mismatch = 1;
        if (!hs->bad_identity[0])
            snprintf(hs->mismatch_identity, sizeof hs->mismatch_identity, "%s", id);
        X509_STORE_CTX_set_error(store, X509_V_ERR_HOSTNAME_MISMATCH);
        return 0;
    }
    return 1;
}

/* Loads the CRLs of crl_file into c's store and turns revocation checking on for the whole
 * chain: every CA a peer chains through needs a CRL in the file.  Each CRL must come from a
 * CA of the bundle and carry its valid signature (a wrong file would otherwise refuse every
 * peer at its handshake).  Returns 0 or -1 with the reason in err. */
static int load_crl(SSL_CTX *c, const char *crl_file, char *err, size_t errlen)
{
    char reason[TLS_ERROR_MAX];
    X509_STORE *store = SSL_CTX_get_cert_store(c);
    X509_LOOKUP *lu = X509_STORE_add_lookup(store, X509_LOOKUP_file());
    if (!lu || X509_load_crl_file(lu, crl_file, X509_FILETYPE_PEM) <= 0) {
        openssl_reason(reason, sizeof reason);
        put_err(err, errlen, "cannot load CRL file %s: %s", crl_file, reason);
        return -1;
    }
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, i));
        if (!crl)
            continue;
        int signed_by_ca = 0;
        for (int k = 0; k < sk_X509_OBJECT_num(objs) && !signed_by_ca; k++) {
            X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, k));
            signed_by_ca = ca &&
                           !X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) &&
                           X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1;
        }
        if (!signed_by_ca) {
            char issuer[TLS_ERROR_MAX];
            X509_NAME_oneline(X509_CRL_get_issuer(crl), issuer, sizeof issuer);
            clear_errors();
            put_err(err, errlen, "CRL file %s: the CRL of %s is not signed by a CA of the bundle",
                    crl_file, issuer);
            return -1;
        }
    }
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    return 0;
}

static SSL_CTX *build_ssl_ctx(enum sncp_tls_role role, const char *cert_file, const char *key_file,
                              const char *ca_file, const char *crl_file, char *err, size_t errlen)
{
    char reason[TLS_ERROR_MAX];
    clear_errors();
    SSL_CTX *c = SSL_CTX_new(role == SNCP_TLS_SERVER ? TLS_server_method() : TLS_client_method());
    if (!c) {
        openssl_reason(reason, sizeof reason);
        put_err(err, errlen, "cannot create TLS context: %s", reason);
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION)) {
        openssl_reason(reason, sizeof reason);
        put_err(err, errlen, "cannot restrict the TLS context to TLS 1.3: %s", reason);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(c, cert_file) != 1) {
        openssl_reason(reason, sizeof reason);
        put_err(err, errlen, "cannot load certificate %s: %s", cert_file, reason);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(c, key_file, SSL_FILETYPE_PEM) != 1) {
        int mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        openssl_reason(reason, sizeof reason);
        if (mismatch)
            put_err(err, errlen, "private key %s does not match certificate %s", key_file,
                    cert_file);
        else
            put_err(err, errlen, "cannot load private key %s: %s", key_file, reason);
        goto fail;
    }
    if (SSL_CTX_check_private_key(c) != 1) {
        openssl_reason(reason, sizeof reason);
        put_err(err, errlen, "private key %s does not match certificate %s: %s", key_file,
                cert_file, reason);
        goto fail;
    }
    if (SSL_CTX_load_verify_locations(c, ca_file, NULL) != 1) {
        openssl_reason(reason, sizeof reason);
        put_err(err, errlen, "cannot load CA bundle %s: %s", ca_file, reason);
        goto fail;
    }
    if (crl_file && *crl_file && load_crl(c, crl_file, err, errlen) < 0)
        goto fail;
    if (role == SNCP_TLS_SERVER) {
        STACK_OF(X509_NAME) *cas = SSL_load_client_CA_file(ca_file);
        if (cas)
            SSL_CTX_set_client_CA_list(c, cas);
        /* No resumption: every session authenticates with certificates, and no tickets
         * means no post-handshake bytes. */
        SSL_CTX_set_num_tickets(c, 0);
        SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
        /* The application traffic secrets, for the record layer an established server
         * connection continues on (rec_create). */
        SSL_CTX_set_keylog_callback(c, keylog_cb);
    }
    SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
    /* Record buffers only while a record is in transit: idle sessions hold none. */
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
    SSL_CTX_set_verify_depth(c, 8);
    clear_errors();
    return c;

fail:
    SSL_CTX_free(c);
    clear_errors();
    return NULL;
}

static int copy_path(char *dst, const char *src)
{
    int n = snprintf(dst, TLS_PATH_MAX, "%s", src ? src : "");
    return (n < 0 || n >= TLS_PATH_MAX || !src || !*src) ? -1 : 0;
}

struct sncp_tls_ctx *sncp_tls_ctx_create(enum sncp_tls_role role, const char *cert_file,
                                         const char *key_file, const char *ca_file, char *err,
                                         size_t errlen)
{
    if (tls_ex_index < 0) {
        tls_ex_index = SSL_get_ex_new_index(0, "sncp_tls", NULL, NULL, NULL);
        if (tls_ex_index < 0) {
            put_err(err, errlen, "cannot allocate OpenSSL ex_data index");
            return NULL;
        }
    }
    struct sncp_tls_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        put_err(err, errlen, "out of memory");
        return NULL;
    }
    ctx->role = role;
    if (copy_path(ctx->cert_file, cert_file) < 0 || copy_path(ctx->key_file, key_file) < 0 ||
        copy_path(ctx->ca_file, ca_file) < 0) {
        put_err(err, errlen, "certificate, key and CA file names are required (and bounded)");
        free(ctx);
        return NULL;
    }
    ctx->ssl_ctx = build_ssl_ctx(role, cert_file, key_file, ca_file, NULL, err, errlen);
    if (!ctx->ssl_ctx) {
        free(ctx);
        return NULL;
    }
    return ctx;
}

int sncp_tls_ctx_reload(struct sncp_tls_ctx *ctx, char *err, size_t errlen)
{
    SSL_CTX *c = build_ssl_ctx(ctx->role, ctx->cert_file, ctx->key_file, ctx->ca_file,
                               ctx->crl_file, err, errlen);
    if (!c)
        return SNCP_E_CONFIG;
    /* Connections created earlier hold their own reference on the old SSL_CTX. */
    SSL_CTX_free(ctx->ssl_ctx);
    ctx->ssl_ctx = c;
    return 0;
}

int sncp_tls_ctx_set_crl(struct sncp_tls_ctx *ctx, const char *crl_file, char *err, size_t errlen)
{
    char old[TLS_PATH_MAX];
    memcpy(old, ctx->crl_file, sizeof old);
    int n = snprintf(ctx->crl_file, sizeof ctx->crl_file, "%s", crl_file ? crl_file : "");
    int rc = n < 0 || (size_t)n >= sizeof ctx->crl_file ? SNCP_E_CONFIG : 0;
    if (rc)
        put_err(err, errlen, "CRL file name too long");
    else
        rc = sncp_tls_ctx_reload(ctx, err, errlen);
    if (rc)
        memcpy(ctx->crl_file, old, sizeof old);
    return rc;
}

/* Whether a CRL of objs revokes the certificate of that issuer and serial number: the
 * certificate itself is gone, a stand-in carries the two fields a CRL lookup reads. */
static int revoked_by(STACK_OF(X509_OBJECT) * objs, X509_NAME *issuer, ASN1_INTEGER *serial)
{
    X509 *x = X509_new();
    if (!x || X509_set_issuer_name(x, issuer) != 1 || X509_set_serialNumber(x, serial) != 1) {
        X509_free(x);
        return 0;
    }
    int hit = 0;
    for (int k = 0; k < sk_X509_OBJECT_num(objs) && !hit; k++) {
        X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, k));
        X509_REVOKED *rev = NULL;
        if (crl && !X509_NAME_cmp(X509_CRL_get_issuer(crl), issuer))
            hit = X509_CRL_get0_by_cert(crl, &rev, x) == 1;
    }
    X509_free(x);
    return hit;
}

int sncp_tls_revoked(const struct sncp_tls *t, const struct sncp_tls_ctx *ctx, char *why,
                     size_t whylen)
{
    if (!t->established || !ctx->crl_file[0] || !t->chain_keys)
        return 0;
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx->ssl_ctx));
    const uint8_t *p = t->chain_keys, *end = p + t->chain_keys_len;
    int found = 0;
    for (int i = 0; p && p < end && !found; i++) {
        /* Written by chain_keys_save: [len][serial DER][len][issuer DER] per certificate. */
        size_t a = (size_t)p[0] << 8 | p[1];
        const uint8_t *q = p + 2;
        ASN1_INTEGER *serial = d2i_ASN1_INTEGER(NULL, &q, (long)a);
        q = p + 2 + a;
        size_t b = (size_t)q[0] << 8 | q[1];
        const uint8_t *r = q + 2;
        X509_NAME *issuer = d2i_X509_NAME(NULL, &r, (long)b);
        p = q + 2 + b;
        if (serial && issuer && revoked_by(objs, issuer, serial)) {
            char hexserial[80] = "?";
            BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
            char *hex = bn ? BN_bn2hex(bn) : NULL;
            if (hex)
                snprintf(hexserial, sizeof hexserial, "%s", hex);
            OPENSSL_free(hex);
            BN_free(bn);
            put_err(why, whylen, "%s certificate (serial %s) is revoked",
                    i == 0 ? "the peer's" : "a CA", hexserial);
            found = 1;
        }
        ASN1_INTEGER_free(serial);
        X509_NAME_free(issuer);
    }
    clear_errors();
    return found;
}

void sncp_tls_ctx_destroy(struct sncp_tls_ctx *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

/* ---- the server's own record layer after the handshake -----------------------------------
 *
 * OpenSSL keeps about 21 KB per established connection that its API cannot release while the
 * connection lives (the SSL object, the SSL_SESSION with the peer's parsed certificate and two
 * copies of its public key, the record and transcript contexts, the key shares).  An nNVE
 * holds thousands of mostly idle sessions, so once a server handshake completes the
 * connection keeps only its application traffic secrets and continues on this record layer
 * (RFC 8446 §5.2-5.5, §4.6.3, §6), and the SSL object is freed: an idle session then holds
 * a few hundred bytes of TLS state; cipher contexts and buffers exist only while data is in
 * transit (sncp_tls_trim).  The secrets come from OpenSSL's key log callback for this
 * connection's own handshake, checked against its client random.  The peer was authenticated
 * by OpenSSL before (certificate chain, CRL, identity); what a later revocation check needs is
 * kept apart (chain_keys_save).  Handed over only in the state where OpenSSL has sent and
 * read nothing under those secrets (sequence numbers 0): the server sends no tickets, and
 * OpenSSL reads no record past the client's Finished (no read-ahead; SSL_has_pending is
 * checked): what follows it in the read BIO is taken over as it is.  The client role (one
 * session per tNVE) stays on OpenSSL.
 * Post-handshake messages accepted from the client: KeyUpdate (answered when requested); any
 * other one, a plaintext record or a change_cipher_spec is fatal (unexpected_message). */

enum {
    REC_HDR = 5,
    REC_TAG = 16,
    REC_IV = 12,
    REC_PLAIN_MAX = 16384,            /* 2^14 */
    REC_CT_MAX = REC_PLAIN_MAX + 256, /* RFC 8446 §5.2 */
    REC_KEY_UPDATE_AFTER = 1 << 24,   /* records under one write key (§5.5) */
    HS_KEY_UPDATE = 24,
    ALERT_CLOSE_NOTIFY = 0,
    ALERT_UNEXPECTED_MESSAGE = 10,
    ALERT_BAD_RECORD_MAC = 20,
    ALERT_RECORD_OVERFLOW = 22,
    ALERT_ILLEGAL_PARAMETER = 47,
    ALERT_DECODE_ERROR = 50,
    ALERT_USER_CANCELED = 90,
    CT_ALERT = 21,
    CT_HANDSHAKE = 22,
    CT_APPLICATION_DATA = 23,
};

struct rec_dir {
    uint8_t secret[EVP_MAX_MD_SIZE];
    uint8_t key[32];
    uint8_t iv[REC_IV];
    uint64_t seq;
    EVP_CIPHER_CTX *ctx; /* while data flows (sncp_tls_trim frees it) */
};

/* The TLS 1.3 suites OpenSSL enables by default (tests/integration/test-tls-suites.sh). */
static const struct rec_suite {
    uint16_t id;
    const char *name; /* as SSL_CIPHER_get_name() */
    const EVP_CIPHER *(*aead)(void);
    const char *md_name; /* the suite's hash */
    size_t key_len, hash_len;
} rec_suites[] = {
    {0x1301, "TLS_AES_128_GCM_SHA256", EVP_aes_128_gcm, "SHA256", 16, 32},
    {0x1302, "TLS_AES_256_GCM_SHA384", EVP_aes_256_gcm, "SHA384", 32, 48},
    {0x1303, "TLS_CHACHA20_POLY1305_SHA256", EVP_chacha20_poly1305, "SHA256", 32, 32},
};

struct tls_rec {
    const struct rec_suite *suite;
    struct rec_dir rd, wr;
    uint8_t *in; /* ciphertext received: in[in_off..in_len) */
    size_t in_off, in_len, in_cap;
    size_t pt_off, pt_len; /* decrypted application data not handed out yet, inside in */
    uint8_t *out;          /* ciphertext to send: out[out_off..out_len) */
    size_t out_off, out_len, out_cap;
    int peer_closed;
    int sent_close;  /* close_notify sent (a failure is sncp_tls.failed) */
    int ku_answered; /* a KeyUpdate answered the peer's request, no data sealed since */
};

/* HKDF-Expand-Label(secret, label, "", len) (RFC 8446 §7.1). */
static int expand_label(const struct tls_rec *r, const uint8_t *secret, const char *label,
                        uint8_t *out, size_t len)
{
    uint8_t info[2 + 1 + 6 + 16 + 1];
    size_t ll = strlen(label);
    info[0] = (uint8_t)(len >> 8);
    info[1] = (uint8_t)len;
    info[2] = (uint8_t)(6 + ll);
    memcpy(info + 3, "tls13 ", 6);
    memcpy(info + 9, label, ll);
    info[9 + ll] = 0;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (!kc)
        return -1;
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)r->suite->md_name, 0),
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, r->suite->hash_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, 10 + ll),
        OSSL_PARAM_construct_end(),
    };
    int ok = EVP_KDF_derive(kc, out, len, p) == 1;
    EVP_KDF_CTX_free(kc);
    return ok ? 0 : -1;
}

/* The key and IV of d's current secret; drops a cipher context made with the old key. */
static int dir_rekey(struct tls_rec *r, struct rec_dir *d)
{
    EVP_CIPHER_CTX_free(d->ctx);
    d->ctx = NULL;
    d->seq = 0;
    return expand_label(r, d->secret, "key", d->key, r->suite->key_len) < 0 ||
                   expand_label(r, d->secret, "iv", d->iv, REC_IV) < 0
               ? -1
               : 0;
}

/* The next traffic secret (KeyUpdate, §7.2). */
static int dir_update(struct tls_rec *r, struct rec_dir *d)
{
    uint8_t next[EVP_MAX_MD_SIZE];
    if (expand_label(r, d->secret, "traffic upd", next, r->suite->hash_len) < 0)
        return -1;
    memcpy(d->secret, next, r->suite->hash_len);
    OPENSSL_cleanse(next, sizeof next);
    return dir_rekey(r, d);
}

/* Sets r's suite and its read and write traffic secrets (suite->hash_len bytes each), and
 * derives their keys.  Returns 0 or -1. */
static int rec_keys(struct tls_rec *r, const struct rec_suite *suite, const uint8_t *rd_secret,
                    const uint8_t *wr_secret)
{
    r->suite = suite;
    memcpy(r->rd.secret, rd_secret, suite->hash_len);
    memcpy(r->wr.secret, wr_secret, suite->hash_len);
    return dir_rekey(r, &r->rd) < 0 || dir_rekey(r, &r->wr) < 0 ? -1 : 0;
}

static void dir_clear(struct rec_dir *d)
{
    EVP_CIPHER_CTX_free(d->ctx);
    OPENSSL_cleanse(d, sizeof *d);
}

/* Seals or opens one record in place: buf[0..len) (plus the tag after it when sealing; the
 * tag is its last REC_TAG bytes when opening), with the 5-byte header as additional data.
 * Returns 0, or -1 (opening: not authentic). */
static int dir_crypt(struct tls_rec *r, struct rec_dir *d, int seal, const uint8_t *hdr,
                     uint8_t *buf, size_t len)
{
    if (!d->ctx) {
        if (!(d->ctx = EVP_CIPHER_CTX_new()) ||
            EVP_CipherInit_ex(d->ctx, r->suite->aead(), NULL, NULL, NULL, seal) != 1 ||
            EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_SET_IVLEN, REC_IV, NULL) != 1 ||
            EVP_CipherInit_ex(d->ctx, NULL, NULL, d->key, NULL, seal) != 1) {
            EVP_CIPHER_CTX_free(d->ctx);
            d->ctx = NULL;
            clear_errors();
            return -1;
        }
    }
    uint8_t nonce[REC_IV];
    memcpy(nonce, d->iv, REC_IV);
    for (int i = 0; i < 8; i++)
        nonce[REC_IV - 1 - i] ^= (uint8_t)(d->seq >> (8 * i));
    int n = 0, fin = 0;
    size_t body = seal ? len : len - REC_TAG;
    if (EVP_CipherInit_ex(d->ctx, NULL, NULL, NULL, nonce, seal) != 1 ||
        (!seal && EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_SET_TAG, REC_TAG, buf + body) != 1) ||
        EVP_CipherUpdate(d->ctx, NULL, &n, hdr, REC_HDR) != 1 ||
        EVP_CipherUpdate(d->ctx, buf, &n, buf, (int)body) != 1 ||
        EVP_CipherFinal_ex(d->ctx, buf + n, &fin) != 1 ||
        (seal && EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_AEAD_GET_TAG, REC_TAG, buf + body) != 1)) {
        clear_errors();
        return -1;
    }
    d->seq++;
    return 0;
}

/* Makes *buf (*cap bytes; 4 KiB at first, then doubled) hold at least `need` bytes.
 * Returns 0 or -ENOMEM (the buffer unchanged). */
static int buf_reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    uint8_t *n = realloc(*buf, c);
    if (!n)
        return -ENOMEM;
    *buf = n;
    *cap = c;
    return 0;
}

/* Drops the input consumed, in[0..in_off), unless decrypted data is lent out of it. */
static void in_compact(struct tls_rec *r)
{
    if (!r->pt_len && r->in_off) {
        memmove(r->in, r->in + r->in_off, r->in_len - r->in_off);
        r->in_len -= r->in_off;
        r->in_off = 0;
    }
}

static int out_reserve(struct tls_rec *r, size_t more)
{
    if (r->out_len + more > r->out_cap && r->out_off) { /* drained bytes leave first */
        memmove(r->out, r->out + r->out_off, r->out_len - r->out_off);
        r->out_len -= r->out_off;
        r->out_off = 0;
    }
    return buf_reserve(&r->out, &r->out_cap, r->out_len + more);
}

/* Encrypts one record of content type `type` (len <= REC_PLAIN_MAX) into the output. */
static int rec_seal(struct tls_rec *r, uint8_t type, const uint8_t *data, size_t len)
{
    if (r->wr.seq == UINT64_MAX)
        return SNCP_E_TLS;
    size_t inner = len + 1, total = REC_HDR + inner + REC_TAG;
    if (out_reserve(r, total) < 0)
        return -ENOMEM;
    uint8_t *p = r->out + r->out_len;
    p[0] = CT_APPLICATION_DATA;
    p[1] = 3;
    p[2] = 3;
    p[3] = (uint8_t)((inner + REC_TAG) >> 8);
    p[4] = (uint8_t)(inner + REC_TAG);
    memcpy(p + REC_HDR, data, len);
    p[REC_HDR + len] = type;
    if (dir_crypt(r, &r->wr, 1, p, p + REC_HDR, inner) < 0)
        return SNCP_E_TLS;
    r->out_len += total;
    if (type == CT_APPLICATION_DATA)
        r->ku_answered = 0;
    return 0;
}

/* Our KeyUpdate (asking the peer to update too if `request`), then the new write key. */
static int rec_key_update(struct tls_rec *r, int request)
{
    const uint8_t msg[5] = {HS_KEY_UPDATE, 0, 0, 1, (uint8_t)(request ? 1 : 0)};
    int rc = rec_seal(r, CT_HANDSHAKE, msg, sizeof msg);
    if (rc == 0 && dir_update(r, &r->wr) < 0)
        rc = SNCP_E_TLS;
    return rc;
}

/* A fatal error: sends the alert (best effort, not after close_notify) and makes the
 * failure sticky.  Returns SNCP_E_TLS. */
static int rec_fail(struct sncp_tls *t, int alert, const char *what)
{
    clear_errors();
    if (!t->failed) {
        if (alert >= 0 && !t->rec->sent_close) {
            uint8_t a[2] = {2, (uint8_t)alert};
            rec_seal(t->rec, CT_ALERT, a, sizeof a);
        }
        t->failed = 1;
        set_error(t, "%s", what);
    }
    return SNCP_E_TLS;
}

/* The handshake message of one record (§4.6.3): a KeyUpdate, whole, ending the record (a
 * key change ends a record, §5.1; no client splits a 5-byte message). */
static int rec_handshake(struct sncp_tls *t, const uint8_t *p, size_t len)
{
    struct tls_rec *r = t->rec;
    if (len < 4 || p[0] != HS_KEY_UPDATE)
        return rec_fail(t, ALERT_UNEXPECTED_MESSAGE,
                        "unexpected post-handshake message from the peer");
    size_t mlen = (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    if (mlen != 1 || len < 5)
        return rec_fail(t, ALERT_DECODE_ERROR, "malformed KeyUpdate from the peer");
    if (p[4] > 1)
        return rec_fail(t, ALERT_ILLEGAL_PARAMETER, "malformed KeyUpdate from the peer");
    if (len != 5)
        return rec_fail(t, ALERT_UNEXPECTED_MESSAGE, "data after a KeyUpdate in its record");
    if (dir_update(r, &r->rd) < 0)
        return rec_fail(t, -1, "cannot derive the next read key");
    /* Requests received while we send no data get one answer (§4.6.3): a storm of them
     * costs no more output than it is answered by. */
    if (p[4] == 1 && !r->sent_close && !r->ku_answered) {
        if (rec_key_update(r, 0) < 0)
            return rec_fail(t, -1, "cannot send KeyUpdate");
        r->ku_answered = 1;
    }
    return 0;
}

/* Opens the next complete record, if any, and acts on it.  Returns 1 when a record was
 * consumed (application data, if any, is then at in[pt_off..pt_off+pt_len)), 0 when more
 * input is needed, or a negative error. */
static int rec_next(struct sncp_tls *t)
{
    struct tls_rec *r = t->rec;
    size_t avail = r->in_len - r->in_off;
    if (avail < REC_HDR)
        return 0;
    uint8_t *h = r->in + r->in_off;
    size_t len = (size_t)h[3] << 8 | h[4];
    if (h[0] != CT_APPLICATION_DATA)
        return rec_fail(t, ALERT_UNEXPECTED_MESSAGE,
                        "unprotected record from the peer after the handshake");
    if (h[1] != 3 || h[2] != 3)
        return rec_fail(t, ALERT_DECODE_ERROR, "wrong record version from the peer");
    if (len > REC_CT_MAX)
        return rec_fail(t, ALERT_RECORD_OVERFLOW, "record overflow from the peer");
    if (len < REC_TAG + 1)
        return rec_fail(t, ALERT_DECODE_ERROR, "record too short from the peer");
    if (avail < REC_HDR + len)
        return 0;
    uint8_t *body = h + REC_HDR;
    if (r->rd.seq == UINT64_MAX || dir_crypt(r, &r->rd, 0, h, body, len) < 0)
        return rec_fail(t, ALERT_BAD_RECORD_MAC, "decryption failed or bad record mac");
    r->in_off += REC_HDR + len;
    size_t n = len - REC_TAG;
    /* §5.4: the content, its type and the padding together stay within 2^14 + 1 */
    if (n > REC_PLAIN_MAX + 1)
        return rec_fail(t, ALERT_RECORD_OVERFLOW, "record overflow from the peer");
    while (n && body[n - 1] == 0) /* the padding */
        n--;
    if (!n)
        return rec_fail(t, ALERT_UNEXPECTED_MESSAGE, "record without a content type");
    uint8_t type = body[--n];
    if (type == CT_APPLICATION_DATA) {
        r->pt_off = (size_t)(body - r->in);
        r->pt_len = n;
        return 1;
    }
    if (type == CT_HANDSHAKE) {
        int rc = rec_handshake(t, body, n);
        return rc < 0 ? rc : 1;
    }
    if (type == CT_ALERT) {
        if (n != 2)
            return rec_fail(t, ALERT_DECODE_ERROR, "malformed alert from the peer");
        if (body[1] == ALERT_CLOSE_NOTIFY) {
            r->peer_closed = 1;
            set_error(t, "peer sent close_notify");
            return SNCP_E_PEER_CLOSED;
        }
        if (body[1] == ALERT_USER_CANCELED)
            return 1;
        char what[80];
        snprintf(what, sizeof what, "peer refused the session: %s",
                 SSL_alert_desc_string_long(body[1]));
        return rec_fail(t, -1, what);
    }
    return rec_fail(t, ALERT_UNEXPECTED_MESSAGE, "unexpected record type from the peer");
}

static int rec_read(struct sncp_tls *t, uint8_t *buf, size_t cap)
{
    struct tls_rec *r = t->rec;
    size_t got = 0;
    while (got < cap) {
        if (r->pt_len) {
            size_t n = r->pt_len < cap - got ? r->pt_len : cap - got;
            memcpy(buf + got, r->in + r->pt_off, n);
            r->pt_off += n;
            r->pt_len -= n;
            got += n;
            continue;
        }
        if (r->peer_closed)
            break;
        int rc = rec_next(t);
        if (rc <= 0) {
            if (rc < 0 && !got)
                return rc;
            break;
        }
    }
    if (!got && r->peer_closed)
        return SNCP_E_PEER_CLOSED;
    in_compact(r);
    return (int)(got > INT32_MAX ? INT32_MAX : got);
}

static int rec_feed(struct tls_rec *r, const uint8_t *data, size_t len)
{
    if (r->in_len + len > r->in_cap)
        in_compact(r);
    if (buf_reserve(&r->in, &r->in_cap, r->in_len + len) < 0)
        return -ENOMEM;
    memcpy(r->in + r->in_len, data, len);
    r->in_len += len;
    return 0;
}

static int rec_write(struct sncp_tls *t, const uint8_t *data, size_t len)
{
    struct tls_rec *r = t->rec;
    if (r->sent_close)
        return SNCP_E_PEER_CLOSED;
    while (len) {
        if (r->wr.seq >= REC_KEY_UPDATE_AFTER && rec_key_update(r, 0) < 0)
            return rec_fail(t, -1, "cannot update the write key");
        size_t n = len < REC_PLAIN_MAX ? len : REC_PLAIN_MAX;
        int rc = rec_seal(r, CT_APPLICATION_DATA, data, n);
        if (rc == -ENOMEM)
            return rc;
        if (rc < 0)
            return rec_fail(t, -1, "encryption failed");
        data += n;
        len -= n;
    }
    return 0;
}

static void rec_trim(struct tls_rec *r)
{
    if (r->in_off == r->in_len && !r->pt_len) {
        free(r->in);
        r->in = NULL;
        r->in_off = r->in_len = r->in_cap = 0;
    }
    if (r->out_off == r->out_len) {
        free(r->out);
        r->out = NULL;
        r->out_off = r->out_len = r->out_cap = 0;
    }
    EVP_CIPHER_CTX_free(r->rd.ctx);
    r->rd.ctx = NULL;
    EVP_CIPHER_CTX_free(r->wr.ctx);
    r->wr.ctx = NULL;
}

static void rec_destroy(struct tls_rec *r)
{
    if (!r)
        return;
    dir_clear(&r->rd);
    dir_clear(&r->wr);
    free(r->in);
    free(r->out);
    free(r);
}

/* Moves all that a memory BIO holds into buf (*len bytes, the BIO's pending count: it fits). */
static void bio_move(BIO *b, uint8_t *buf, size_t *len)
{
    size_t want = *len;
    *len = 0;
    int n;
    while (*len < want &&
           (n = BIO_read(b, buf + *len, (int)(want - *len > INT32_MAX ? INT32_MAX : want - *len))) >
               0)
        *len += (size_t)n;
    clear_errors();
}

/* The keys of a server connection whose handshake just completed: from the key log lines
 * of this handshake (hs), for the negotiated suite.  Returns NULL (the connection stays on
 * OpenSSL) when anything is missing or unexpected. */
static struct tls_rec *rec_create(struct sncp_tls *t)
{
    struct tls_handshake *hs = t->hs;
    const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
    if (!hs || !c || !hs->keys.c_len || hs->keys.c_len != hs->keys.s_len ||
        SSL_version(t->ssl) != TLS1_3_VERSION || SSL_has_pending(t->ssl) ||
        SSL_get_shutdown(t->ssl))
        return NULL;
    const struct rec_suite *suite = NULL;
    uint16_t id = SSL_CIPHER_get_protocol_id(c);
    for (size_t i = 0; i < sizeof rec_suites / sizeof rec_suites[0]; i++)
        if (rec_suites[i].id == id)
            suite = &rec_suites[i];
    if (!suite || hs->keys.c_len != suite->hash_len)
        return NULL;
    struct tls_rec *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    /* What the BIOs hold moves over: our last handshake bytes not drained yet, the peer's
     * first records. */
    r->out_cap = r->out_len = BIO_ctrl_pending(t->wbio);
    r->in_cap = r->in_len = BIO_ctrl_pending(t->rbio);
    if ((r->out_cap && !(r->out = malloc(r->out_cap))) ||
        (r->in_cap && !(r->in = malloc(r->in_cap))) ||
        rec_keys(r, suite, hs->keys.c, hs->keys.s) < 0) {
        rec_destroy(r);
        clear_errors();
        return NULL;
    }
    if (r->out)
        bio_move(t->wbio, r->out, &r->out_len);
    if (r->in)
        bio_move(t->rbio, r->in, &r->in_len);
    return r;
}

/* Frees the handshake block (it may hold traffic secrets). */
static void hs_free(struct tls_handshake *hs)
{
    if (hs)
        OPENSSL_cleanse(hs, sizeof *hs);
    free(hs);
}

struct sncp_tls *sncp_tls_create(struct sncp_tls_ctx *ctx, const char *expected_peer)
{
    struct sncp_tls *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    clear_errors();
    t->role = ctx->role;
    t->hs = calloc(1, sizeof *t->hs);
    if (t->hs && expected_peer)
        snprintf(t->hs->expected, sizeof t->hs->expected, "%s", expected_peer);
    t->ssl = SSL_new(ctx->ssl_ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->hs || !t->ssl || !t->rbio || !t->wbio) {
        SSL_free(t->ssl);
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        free(t->hs);
        free(t);
        clear_errors();
        return NULL;
    }
    /* An empty read BIO means "no data yet", not EOF. */
    BIO_set_mem_eof_return(t->rbio, -1);
    BIO_set_mem_eof_return(t->wbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_ex_data(t->ssl, tls_ex_index, t);
    if (t->role == SNCP_TLS_SERVER) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        /* SNI for servers that host several names; only for DNS-like identities. */
        if (t->hs->expected[0] && !strchr(t->hs->expected, ':'))
            SSL_set_tlsext_host_name(t->ssl, t->hs->expected);
    }
    clear_errors();
    return t;
}

void sncp_tls_destroy(struct sncp_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl); /* frees both BIOs */
    hs_free(t->hs);
    rec_destroy(t->rec);
    free(t->identity);
    free(t->chain_keys);
    free(t);
}

static int looks_like_plaintext(const struct sncp_tls *t)
{
    /* A client's first TLS record is a handshake (22) or an alert (21); text protocols and
     * SNCP messages sent in the clear start otherwise. */
    return t->role == SNCP_TLS_SERVER && t->saw_first_byte && t->first_byte != 22 &&
           t->first_byte != 21;
}

/* Builds the reason for a failed handshake or read and returns the error code. */
static int record_failure(struct sncp_tls *t, int during_handshake)
{
    char reason[TLS_ERROR_MAX];
    unsigned long e, first = 0;
    while ((e = ERR_get_error()) != 0) {
        if (!first)
            first = e;
    }
    int code = during_handshake ? SNCP_E_TLS_HANDSHAKE : SNCP_E_TLS;
    int lib_reason = first ? ERR_GET_REASON(first) : 0;
    long vr = SSL_get_verify_result(t->ssl);
    t->failed = 1;

    if (t->identity_mismatch && t->hs) {
        if (t->hs->bad_identity[0])
            set_error(t, "peer certificate has no usable identity: %s", t->hs->bad_identity);
        else
            set_error(t, "peer identity '%s' does not match expected '%s'",
                      t->hs->mismatch_identity, t->hs->expected);
        return SNCP_E_PEER_IDENTITY;
    }
    if (looks_like_plaintext(t) || lib_reason == SSL_R_HTTP_REQUEST ||
        lib_reason == SSL_R_HTTPS_PROXY_REQUEST ||
        (lib_reason == SSL_R_WRONG_VERSION_NUMBER && t->role == SNCP_TLS_SERVER &&
         !t->established)) {
        set_error(t, "plaintext received on a TLS session (not a TLS record)");
        return code;
    }
    if (lib_reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        set_error(t, "peer did not return a certificate");
        return code;
    }
    if (vr != X509_V_OK && lib_reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        set_error(t, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
        return code;
    }
    if (!first) {
        set_error(t, "%s", during_handshake ? "TLS handshake failed" : "TLS failure");
        return code;
    }
    const char *r = ERR_reason_error_string(first);
    if (r)
        snprintf(reason, sizeof reason, "%s", r);
    else
        ERR_error_string_n(first, reason, sizeof reason);
    if (lib_reason >= SSL_AD_REASON_OFFSET)
        set_error(t, "peer refused the session: %s", reason);
    else if (vr != X509_V_OK)
        set_error(t, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
    else
        set_error(t, "%s", reason);
    return code;
}

int sncp_tls_handshake(struct sncp_tls *t)
{
    if (t->established)
        return 1;
    if (t->failed)
        return t->identity_mismatch ? SNCP_E_PEER_IDENTITY : SNCP_E_TLS_HANDSHAKE;
    if (looks_like_plaintext(t)) {
        clear_errors();
        return record_failure(t, 1);
    }
    clear_errors();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        X509 *peer = SSL_get1_peer_certificate(t->ssl);
        char why[TLS_ERROR_MAX], id[SNCP_TLS_IDENTITY_MAX];
        if (!peer || SSL_get_verify_result(t->ssl) != X509_V_OK ||
            cert_identity(peer, id, sizeof id, NULL, NULL, why, sizeof why) < 0) {
            /* Unreachable with SSL_VERIFY_FAIL_IF_NO_PEER_CERT and the verify callback's
             * identity check, kept as a safety net. */
            X509_free(peer);
            t->failed = 1;
            set_error(t, "peer did not present a verified certificate with an identity");
            clear_errors();
            return SNCP_E_TLS_HANDSHAKE;
        }
        X509_free(peer);
        if (!(t->identity = strdup(id)) || chain_keys_save(t) < 0) {
            t->failed = 1;
            set_error(t, "out of memory");
            clear_errors();
            return SNCP_E_TLS_HANDSHAKE;
        }
        /* A server connection lets OpenSSL go (see rec_create); if it cannot, it stays. */
        if (t->role == SNCP_TLS_SERVER && (t->rec = rec_create(t)) != NULL) {
            SSL_free(t->ssl); /* frees both BIOs */
            t->ssl = NULL;
            t->rbio = t->wbio = NULL;
        }
        hs_free(t->hs);
        t->hs = NULL;
        t->established = 1;
        clear_errors();
        return 1;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        clear_errors();
        return 0;
    }
    return record_failure(t, 1);
}

int sncp_tls_feed(struct sncp_tls *t, const uint8_t *data, size_t len)
{
    if (!len)
        return 0;
    if (!t->saw_first_byte) {
        t->saw_first_byte = 1;
        t->first_byte = data[0];
    }
    if (t->rec)
        return rec_feed(t->rec, data, len);
    while (len) {
        int chunk = len > INT32_MAX ? INT32_MAX : (int)len;
        int n = BIO_write(t->rbio, data, chunk);
        if (n <= 0) {
            clear_errors();
            return -ENOMEM;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int sncp_tls_read(struct sncp_tls *t, uint8_t *buf, size_t cap)
{
    if (t->failed)
        return SNCP_E_TLS;
    if (t->rec)
        return rec_read(t, buf, cap);
    size_t got = 0;
    clear_errors();
    while (got < cap) {
        size_t n = 0;
        int r = SSL_read_ex(t->ssl, buf + got, cap - got, &n);
        if (r == 1) {
            got += n;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (got) {
            /* Hand out what we have; the failure shows up again on the next call. */
            clear_errors();
            break;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            clear_errors();
            set_error(t, "peer sent close_notify");
            return SNCP_E_PEER_CLOSED;
        }
        return record_failure(t, !t->established);
    }
    clear_errors();
    if (got > INT32_MAX)
        got = INT32_MAX;
    return (int)got;
}

int sncp_tls_write(struct sncp_tls *t, const uint8_t *data, size_t len)
{
    if (!t->established)
        return SNCP_E_NOT_ESTABLISHED;
    if (t->failed)
        return SNCP_E_TLS;
    if (t->rec)
        return rec_write(t, data, len);
    clear_errors();
    while (len) {
        size_t n = 0;
        int r = SSL_write_ex(t->ssl, data, len, &n);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_ZERO_RETURN) {
                clear_errors();
                return SNCP_E_PEER_CLOSED;
            }
            return record_failure(t, 0);
        }
        data += n;
        len -= n;
    }
    return 0;
}

size_t sncp_tls_pending(const struct sncp_tls *t)
{
    if (t->rec)
        return t->rec->out_len - t->rec->out_off;
    return BIO_ctrl_pending(t->wbio);
}

size_t sncp_tls_drain(struct sncp_tls *t, uint8_t *buf, size_t cap)
{
    if (!cap)
        return 0;
    if (t->rec) {
        struct tls_rec *r = t->rec;
        size_t n = r->out_len - r->out_off < cap ? r->out_len - r->out_off : cap;
        if (!n)
            return 0;
        memcpy(buf, r->out + r->out_off, n);
        r->out_off += n;
        return n;
    }
    if (cap > INT32_MAX)
        cap = INT32_MAX;
    int n = BIO_read(t->wbio, buf, (int)cap);
    if (n <= 0) {
        clear_errors();
        return 0;
    }
    return (size_t)n;
}

/* A memory BIO keeps its buffer at the largest size it ever held: give an empty one a new,
 * empty buffer (BIO_set_mem_buf frees the old one). */
static void bio_trim(BIO *b)
{
    BUF_MEM *bm = NULL;
    if (BIO_ctrl_pending(b) || BIO_get_mem_ptr(b, &bm) != 1 || !bm || !bm->max)
        return;
    BUF_MEM *fresh = BUF_MEM_new();
    if (fresh)
        BIO_set_mem_buf(b, fresh, BIO_CLOSE);
}

void sncp_tls_trim(struct sncp_tls *t)
{
    if (t->rec) {
        rec_trim(t->rec);
        return;
    }
    /* SSL_free_buffers() refuses (returns 0) while a record is in transit: nothing to do. */
    SSL_free_buffers(t->ssl);
    bio_trim(t->rbio);
    bio_trim(t->wbio);
    clear_errors();
}

int sncp_tls_key_update(struct sncp_tls *t)
{
    if (!t->established)
        return SNCP_E_NOT_ESTABLISHED;
    if (t->failed)
        return SNCP_E_TLS;
    if (t->rec) {
        if (t->rec->sent_close)
            return SNCP_E_TLS;
        int rc = rec_key_update(t->rec, 1);
        return rc < 0 ? rec_fail(t, -1, "cannot send KeyUpdate") : 0;
    }
    clear_errors();
    /* Scheduled by SSL_key_update, sent by SSL_do_handshake. */
    int ok = SSL_key_update(t->ssl, SSL_KEY_UPDATE_REQUESTED) == 1 && SSL_do_handshake(t->ssl) == 1;
    clear_errors();
    return ok ? 0 : SNCP_E_TLS;
}

void sncp_tls_shutdown(struct sncp_tls *t)
{
    clear_errors();
    /* Only after a completed handshake: before it there is nothing to close politely. */
    if (t->rec && !t->failed && !t->rec->sent_close) {
        static const uint8_t close_notify[2] = {1, ALERT_CLOSE_NOTIFY};
        t->rec->sent_close = 1;
        rec_seal(t->rec, CT_ALERT, close_notify, sizeof close_notify);
    } else if (t->ssl && t->established && !t->failed) {
        SSL_shutdown(t->ssl);
    }
    clear_errors();
}

int sncp_tls_established(const struct sncp_tls *t)
{
    return t->established;
}

const char *sncp_tls_peer_identity(const struct sncp_tls *t)
{
    return t->established ? t->identity : "";
}

const char *sncp_tls_description(const struct sncp_tls *t, char *buf, size_t cap)
{
    if (!cap)
        return buf;
    if (!t->established) {
        snprintf(buf, cap, "%s", "none");
        return buf;
    }
    if (t->rec) {
        snprintf(buf, cap, "TLSv1.3 %s", t->rec->suite->name);
        return buf;
    }
    const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
    snprintf(buf, cap, "%s %s", SSL_get_version(t->ssl), c ? SSL_CIPHER_get_name(c) : "?");
    return buf;
}

const char *sncp_tls_error(const struct sncp_tls *t)
{
    return t->error;
}
