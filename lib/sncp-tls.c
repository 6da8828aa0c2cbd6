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
#include <openssl/err.h>
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

/* What only the handshake needs: freed when it completes (an idle connection is one of
 * many, and each keeps only what it still uses). */
struct tls_handshake {
    char expected[SNCP_TLS_IDENTITY_MAX];
    char mismatch_identity[SNCP_TLS_IDENTITY_MAX];
    char bad_identity[TLS_ERROR_MAX]; /* why the certificate has no usable identity */
};

struct sncp_tls {
    SSL *ssl;
    BIO *rbio;                /* ciphertext from the peer (we write, OpenSSL reads) */
    BIO *wbio;                /* ciphertext to the peer (OpenSSL writes, we read) */
    struct tls_handshake *hs; /* until the handshake completes */
    char *identity;           /* the peer's, once established (exact size) */
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

int sncp_tls_revoked(const struct sncp_tls *t, const struct sncp_tls_ctx *ctx, char *why,
                     size_t whylen)
{
    if (!t->established || !ctx->crl_file[0])
        return 0;
    STACK_OF(X509) *chain = SSL_get0_verified_chain(t->ssl);
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx->ssl_ctx));
    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *cert = sk_X509_value(chain, i);
        for (int k = 0; k < sk_X509_OBJECT_num(objs); k++) {
            X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, k));
            X509_REVOKED *rev = NULL;
            if (!crl || X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_issuer_name(cert)))
                continue;
            if (X509_CRL_get0_by_cert(crl, &rev, cert) == 1) {
                char serial[80] = "?";
                BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
                char *hex = bn ? BN_bn2hex(bn) : NULL;
                if (hex)
                    snprintf(serial, sizeof serial, "%s", hex);
                OPENSSL_free(hex);
                BN_free(bn);
                put_err(why, whylen, "%s certificate (serial %s) is revoked",
                        i == 0 ? "the peer's" : "a CA", serial);
                clear_errors();
                return 1;
            }
        }
    }
    clear_errors();
    return 0;
}

void sncp_tls_ctx_destroy(struct sncp_tls_ctx *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
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
    free(t->hs);
    free(t->identity);
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
        if (!(t->identity = strdup(id))) {
            t->failed = 1;
            set_error(t, "out of memory");
            clear_errors();
            return SNCP_E_TLS_HANDSHAKE;
        }
        free(t->hs);
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
    return BIO_ctrl_pending(t->wbio);
}

size_t sncp_tls_drain(struct sncp_tls *t, uint8_t *buf, size_t cap)
{
    if (!cap)
        return 0;
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
    /* SSL_free_buffers() refuses (returns 0) while a record is in transit: nothing to do. */
    SSL_free_buffers(t->ssl);
    bio_trim(t->rbio);
    bio_trim(t->wbio);
    clear_errors();
}

void sncp_tls_shutdown(struct sncp_tls *t)
{
    clear_errors();
    /* Only after a completed handshake: before it there is nothing to close politely. */
    if (t->established && !t->failed)
        SSL_shutdown(t->ssl);
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
    const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
    snprintf(buf, cap, "%s %s", SSL_get_version(t->ssl), c ? SSL_CIPHER_get_name(c) : "?");
    return buf;
}

const char *sncp_tls_error(const struct sncp_tls *t)
{
    return t->error;
}
