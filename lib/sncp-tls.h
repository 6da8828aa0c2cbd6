/* sncp-tls.h: TLS 1.3 with mutual certificate authentication, on memory BIOs.
 *
 * The engine never touches a socket: the owner feeds it the ciphertext it received and
 * sends the ciphertext it drains, over TCP or the L2 channel alike.  Both ends present a
 * certificate chained to the configured CA (and not revoked, when a CRL is configured); the
 * peer's identity is the first DNS (or URI) subject alternative name of its certificate, or
 * its subject CN when it has no such name, as printable UTF-8 (PROTOCOL.md §11.1): a
 * certificate whose identity is not is refused.
 * OpenSSL runs every handshake; an established server connection (the nNVE holds thousands)
 * then continues on this engine's own TLS 1.3 record layer with the traffic secrets of its
 * handshake, and OpenSSL's per-connection state is freed: idle, it keeps a few hundred bytes.
 */
#ifndef SNCP_TLS_H
#define SNCP_TLS_H 1

#include <stddef.h>
#include <stdint.h>

enum sncp_tls_role {
    SNCP_TLS_CLIENT, /* the tNVE: connects */
    SNCP_TLS_SERVER, /* the nNVE: accepts */
};

enum { SNCP_TLS_IDENTITY_MAX = 256 };

struct sncp_tls_ctx;
struct sncp_tls;

/* Creates a context from PEM files: our certificate (chain), our private key, and the CA
 * bundle that peers must chain to.  TLS 1.3 only; peer certificate required in both roles.
 * Returns NULL on failure with a one-line reason in err[0..errlen).  Caller destroys. */
struct sncp_tls_ctx *sncp_tls_ctx_create(enum sncp_tls_role role, const char *cert_file,
                                         const char *key_file, const char *ca_file, char *err,
                                         size_t errlen);
/* Re-reads the same files (SIGHUP, certificate rotation).  Existing sessions keep theirs.
 * Returns 0 or SNCP_E_CONFIG with the reason in err. */
int sncp_tls_ctx_reload(struct sncp_tls_ctx *ctx, char *err, size_t errlen);
/* Sets the CRL file (PEM, one or more CRLs; NULL or "" for none) and rebuilds the context
 * with it, re-reading the other files too.  With a CRL, every handshake checks the whole
 * peer chain against it (X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL): every CA the
 * peer chains through needs a current CRL in the file.  sncp_tls_ctx_reload() re-reads it.
 * Returns 0, or SNCP_E_CONFIG with the reason in err; the context then keeps its previous
 * files, CRL included. */
int sncp_tls_ctx_set_crl(struct sncp_tls_ctx *ctx, const char *crl_file, char *err, size_t errlen);
void sncp_tls_ctx_destroy(struct sncp_tls_ctx *ctx);

/* One TLS connection.  `expected_peer`, if non-NULL, must equal the peer's identity (any of
 * its DNS/URI SANs, or the CN without SAN) or the handshake fails with SNCP_E_PEER_IDENTITY.
 * Returns NULL only on allocation failure.  Caller destroys; the ctx must outlive it. */
struct sncp_tls *sncp_tls_create(struct sncp_tls_ctx *ctx, const char *expected_peer);
void sncp_tls_destroy(struct sncp_tls *t);

/* Drives the handshake.  Returns 1 when established, 0 when it needs more input (drain the
 * output and feed more), or a negative error (SNCP_E_TLS_HANDSHAKE, SNCP_E_PEER_IDENTITY)
 * with the reason in sncp_tls_error(). */
int sncp_tls_handshake(struct sncp_tls *t);

/* Ciphertext received from the peer.  Returns 0 or -ENOMEM. */
int sncp_tls_feed(struct sncp_tls *t, const uint8_t *data, size_t len);

/* Plaintext from the peer: returns bytes read (> 0), 0 when nothing is available yet,
 * SNCP_E_PEER_CLOSED on close_notify, or SNCP_E_TLS on a protocol failure. */
int sncp_tls_read(struct sncp_tls *t, uint8_t *buf, size_t cap);

/* Encrypts all of data[0..len) (after the handshake).  Returns 0 or a negative error. */
int sncp_tls_write(struct sncp_tls *t, const uint8_t *data, size_t len);

/* Ciphertext waiting to be sent: sncp_tls_pending() bytes; sncp_tls_drain() moves up to cap
 * of them into buf and returns how many. */
size_t sncp_tls_pending(const struct sncp_tls *t);
size_t sncp_tls_drain(struct sncp_tls *t, uint8_t *buf, size_t cap);

/* Frees what the connection holds only for data in transit: OpenSSL's record buffers (when
 * no record is partly read or written) and the ciphertext buffers (when empty).  Call it
 * when a burst of work is over: an idle connection then holds only its TLS state.  The
 * next feed, read or write allocates again. */
void sncp_tls_trim(struct sncp_tls *t);

/* Updates our traffic keys and asks the peer to update its own (RFC 8446 §4.6.3): the
 * KeyUpdate is ready to drain at once.  Returns 0, SNCP_E_NOT_ESTABLISHED or SNCP_E_TLS. */
int sncp_tls_key_update(struct sncp_tls *t);

/* Sends close_notify (drain afterwards). */
void sncp_tls_shutdown(struct sncp_tls *t);

int sncp_tls_established(const struct sncp_tls *t);
/* The peer identity after the handshake, "" before. */
const char *sncp_tls_peer_identity(const struct sncp_tls *t);
/* The negotiated protocol and cipher, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384". */
const char *sncp_tls_description(const struct sncp_tls *t, char *buf, size_t cap);
/* The last failure's reason, "" if none: e.g. "peer did not return a certificate",
 * "certificate has expired", "plaintext received on a TLS session". */
const char *sncp_tls_error(const struct sncp_tls *t);

/* 1 if the established peer's certificate, or a CA of its verified chain, is revoked by a
 * CRL ctx holds now (after a reload), with the reason in why; 0 otherwise (also before the
 * handshake and without a CRL). */
int sncp_tls_revoked(const struct sncp_tls *t, const struct sncp_tls_ctx *ctx, char *why,
                     size_t whylen);

#endif
