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
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "sncp-error.h"

enum { TLS_ERROR_MAX = 256, TLS_PATH_MAX = 4096 };

struct sncp_tls_ctx {
    enum sncp_tls_role role;
    SSL_CTX *ssl_ctx;
    char cert_file[TLS_PATH_MAX];
    char key_file[TLS_PATH_MAX];
    char ca_file[TLS_PATH_MAX];
};

struct sncp_tls {
    SSL *ssl;
    BIO *rbio; /* ciphertext from the peer (we write, OpenSSL reads) */
    BIO *wbio; /* ciphertext to the peer (OpenSSL writes, we read) */
    enum sncp_tls_role role;
    int established;
    int failed;
    int identity_mismatch;
    int saw_first_byte;
    uint8_t first_byte;
    char expected[SNCP_TLS_IDENTITY_MAX];
    char mismatch_identity[SNCP_TLS_IDENTITY_MAX];
    char identity[SNCP_TLS_IDENTITY_MAX];
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

/* Copies an ASN1 string if it is printable text without NULs and fits. */
static int copy_asn1_text(const ASN1_STRING *s, char *out, size_t cap)
{
    const unsigned char *p = ASN1_STRING_get0_data(s);
    int len = ASN1_STRING_length(s);
    if (!p || len <= 0 || (size_t)len >= cap)
        return -1;
    for (int i = 0; i < len; i++)
        if (p[i] < 0x20 || p[i] == 0x7f)
            return -1;
    memcpy(out, p, (size_t)len);
    out[len] = '\0';
    return 0;
}

/* Identity of a certificate: first DNS or URI SAN, else the subject CN.  Returns 0 or -1.
 * If `expected` is non-NULL, returns 1 when any DNS/URI SAN (or the CN without SANs)
 * equals it. */
static int cert_identity(X509 *cert, char *out, size_t cap, const char *expected)
{
    int have_san = 0, found = -1, match = 0;
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (names) {
        for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
            const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
            const ASN1_STRING *s;
            if (gn->type == GEN_DNS)
                s = gn->d.dNSName;
            else if (gn->type == GEN_URI)
                s = gn->d.uniformResourceIdentifier;
            else
                continue;
            char tmp[SNCP_TLS_IDENTITY_MAX];
            if (copy_asn1_text(s, tmp, sizeof tmp) < 0)
                continue;
            have_san = 1;
            if (found < 0) {
                snprintf(out, cap, "%s", tmp);
                found = 0;
            }
            if (expected && strcmp(tmp, expected) == 0)
                match = 1;
        }
        GENERAL_NAMES_free(names);
    }
    if (!have_san) {
        X509_NAME *subj = X509_get_subject_name(cert);
        int idx = subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
        if (idx >= 0) {
            const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
            char tmp[SNCP_TLS_IDENTITY_MAX];
            if (cn && copy_asn1_text(cn, tmp, sizeof tmp) == 0) {
                snprintf(out, cap, "%s", tmp);
                found = 0;
                if (expected && strcmp(tmp, expected) == 0)
                    match = 1;
            }
        }
    }
    if (found < 0)
        return -1;
    return expected ? match : 0;
}

static int verify_cb(int preverify_ok, X509_STORE_CTX *store)
{
    if (!preverify_ok || X509_STORE_CTX_get_error_depth(store) != 0)
        return preverify_ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct sncp_tls *t = ssl ? SSL_get_ex_data(ssl, tls_ex_index) : NULL;
    if (!t)
        return preverify_ok;
    X509 *cert = X509_STORE_CTX_get_current_cert(store);
    char id[SNCP_TLS_IDENTITY_MAX];
    int r = cert_identity(cert, id, sizeof id, t->expected[0] ? t->expected : NULL);
    if (r < 0) {
        t->identity_mismatch = 1;
        snprintf(t->mismatch_identity, sizeof t->mismatch_identity, "%s", "");
        X509_STORE_CTX_set_error(store, X509_V_ERR_HOSTNAME_MISMATCH);
        return 0;
    }
    if (t->expected[0] && r == 0) {
        t->identity_mismatch = 1;
        snprintf(t->mismatch_identity, sizeof t->mismatch_identity, "%s", id);
        X509_STORE_CTX_set_error(store, X509_V_ERR_HOSTNAME_MISMATCH);
        return 0;
    }
    return 1;
}

static SSL_CTX *build_ssl_ctx(enum sncp_tls_role role, const char *cert_file, const char *key_file,
                              const char *ca_file, char *err, size_t errlen)
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
    ctx->ssl_ctx = build_ssl_ctx(role, cert_file, key_file, ca_file, err, errlen);
    if (!ctx->ssl_ctx) {
        free(ctx);
        return NULL;
    }
    return ctx;
}

int sncp_tls_ctx_reload(struct sncp_tls_ctx *ctx, char *err, size_t errlen)
{
    SSL_CTX *c = build_ssl_ctx(ctx->role, ctx->cert_file, ctx->key_file, ctx->ca_file, err, errlen);
    if (!c)
        return SNCP_E_CONFIG;
    /* Connections created earlier hold their own reference on the old SSL_CTX. */
    SSL_CTX_free(ctx->ssl_ctx);
    ctx->ssl_ctx = c;
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
    if (expected_peer)
        snprintf(t->expected, sizeof t->expected, "%s", expected_peer);
    t->ssl = SSL_new(ctx->ssl_ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        SSL_free(t->ssl);
        BIO_free(t->rbio);
        BIO_free(t->wbio);
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
        if (t->expected[0] && !strchr(t->expected, ':'))
            SSL_set_tlsext_host_name(t->ssl, t->expected);
    }
    clear_errors();
    return t;
}

void sncp_tls_destroy(struct sncp_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl); /* frees both BIOs */
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

    if (t->identity_mismatch) {
        if (t->mismatch_identity[0])
            set_error(t, "peer identity '%s' does not match expected '%s'", t->mismatch_identity,
                      t->expected);
        else
            set_error(t, "peer certificate carries no usable identity (no DNS/URI SAN or CN)");
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
        if (!peer || SSL_get_verify_result(t->ssl) != X509_V_OK ||
            cert_identity(peer, t->identity, sizeof t->identity, NULL) < 0) {
            /* Unreachable with SSL_VERIFY_FAIL_IF_NO_PEER_CERT, kept as a safety net. */
            X509_free(peer);
            t->failed = 1;
            t->identity[0] = '\0';
            set_error(t, "peer did not present a verified certificate with an identity");
            clear_errors();
            return SNCP_E_TLS_HANDSHAKE;
        }
        X509_free(peer);
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
