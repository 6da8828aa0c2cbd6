/* sncp-conn-tcp.c: the TCP provider of sncp-conn (listener and outgoing connections).
 *
 * A TCP connection embeds its uv_tcp_t and the requests it may have in flight (connect,
 * getaddrinfo, shutdown); it is freed only after the last of them has called back.  Writes
 * first try the socket directly (uv_try_write); only what the kernel does not take is
 * copied into a write request that carries its own buffer and frees it in its callback.
 * Reads land in one per-thread buffer: libuv delivers each chunk before asking for the next
 * buffer, and the session consumes it synchronously.
 */
#include "sncp-conn.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sncp-conn-provider.h"
#include "sncp-error.h"
#include "snv-addr.h"
#include "snv-log.h"

enum {
    READ_BUF = 64 * 1024,
    LISTEN_BACKLOG = 128,
    DEFAULT_MAX_CONNS = 4096,
};

/* What only an outgoing connection needs: accepted ones (the nNVE's many idle sessions)
 * do without these 500 bytes. */
struct tcp_dial {
    uv_connect_t connect_req;
    uv_getaddrinfo_t gai_req;
    char host[256];
};

struct tcp_conn {
    struct sncp_conn up;
    uv_tcp_t tcp;
    uv_shutdown_t shutdown_req;
    struct tcp_dial *dial; /* outgoing connections only */
    int resolving;         /* dial->gai_req in flight */
    int shutting_down;     /* shutdown_req in flight */
    int tcp_closed;        /* close callback of tcp ran */
    int close_started;     /* uv_close(tcp) called */
    /* Accepted connections that have not completed HELLO: the listener's pending list. */
    struct tcp_conn *p_prev, *p_next;
    int hello_pending;
    struct sockaddr_storage src; /* the peer's address (port ignored in comparisons) */
};

struct tcp_wreq {
    uv_write_t req;
    struct tcp_conn *tc;
    size_t len;
    uint8_t data[];
};

struct sncp_listener {
    uv_tcp_t tcp;
    uv_loop_t *loop;
    struct sncp_conn_config cfg;
    struct sncp_conn_cbs cbs;
    void *ctx;
    unsigned max_conns;
    unsigned n_conns;
    unsigned max_pending, max_pending_per_source; /* 0: no limit */
    unsigned n_pending;
    uint16_t port;
    struct sncp_conn *conns;
    struct tcp_conn *pending; /* connections before HELLO, newest first */
    struct sncp_listener_stats stats;
    struct snv_ratelimit rl;
};

static _Thread_local uint8_t read_buf[READ_BUF];
static struct snv_ratelimit resolve_rl = SNV_RATELIMIT_INIT(5, 20);

/* A write to a socket the peer has reset must fail with EPIPE, not kill the process.  Only a
 * default disposition is changed: a program that chose its own handler keeps it. */
static void ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_IGN;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGPIPE, &sa, NULL);
    }
}

static struct tcp_conn *tcp_conn_cast(const struct sncp_conn *c)
{
    return (struct tcp_conn *)((char *)c - offsetof(struct tcp_conn, up));
}

static void format_addr(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, ip, sizeof ip);
        snprintf(buf, cap, "%s:%u", ip, ntohs(a->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, ip, sizeof ip);
        snprintf(buf, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        snprintf(buf, cap, "%s", "?");
    }
}

static void set_peer_name_from_socket(struct tcp_conn *tc)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char name[SNCP_CONN_PEER_NAME_MAX];
    if (uv_tcp_getpeername(&tc->tcp, (struct sockaddr *)&ss, &len) == 0) {
        format_addr(&ss, name, sizeof name);
        sncp_conn_set_peer_name(&tc->up, name);
    }
}

/* ---- class operations ----------------------------------------------------------------- */

static void on_write(uv_write_t *req, int status)
{
    struct tcp_wreq *w = req->data;
    struct tcp_conn *tc = w->tc;
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        sncp_conn_transport_failed(&tc->up, status);
}

static int tcp_write(struct sncp_conn *c, const uint8_t *data, size_t len)
{
    struct tcp_conn *tc = tcp_conn_cast(c);
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&tc->tcp, &buf, 1);
    if (n == (int)len)
        return 0;
    if (n < 0 && n != UV_EAGAIN)
        return n;
    size_t done = n > 0 ? (size_t)n : 0;
    size_t rest = len - done;
    struct tcp_wreq *w = malloc(sizeof *w + rest);
    if (!w)
        return -ENOMEM;
    w->tc = tc;
    w->len = rest;
    memcpy(w->data, data + done, rest);
    w->req.data = w;
    buf = uv_buf_init((char *)w->data, (unsigned)rest);
    int rc = uv_write(&w->req, (uv_stream_t *)&tc->tcp, &buf, 1, on_write);
    if (rc < 0) {
        free(w);
        return rc;
    }
    return 0;
}

static size_t tcp_write_queue(const struct sncp_conn *c)
{
    const struct tcp_conn *tc = tcp_conn_cast(c);
    return uv_stream_get_write_queue_size((const uv_stream_t *)&tc->tcp);
}

static void maybe_released(struct tcp_conn *tc)
{
    if (tc->tcp_closed && !tc->resolving)
        sncp_conn_transport_released(&tc->up);
}

static void on_tcp_closed(uv_handle_t *h)
{
    struct tcp_conn *tc = h->data;
    tc->tcp_closed = 1;
    maybe_released(tc);
}

static void close_tcp(struct tcp_conn *tc)
{
    if (tc->close_started)
        return;
    tc->close_started = 1;
    uv_close((uv_handle_t *)&tc->tcp, on_tcp_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct tcp_conn *tc = req->data;
    (void)status;
    tc->shutting_down = 0;
    close_tcp(tc);
}

static void tcp_close(struct sncp_conn *c, int graceful)
{
    struct tcp_conn *tc = tcp_conn_cast(c);
    if (tc->resolving)
        uv_cancel((uv_req_t *)&tc->dial->gai_req);
    if (tc->close_started)
        return;
    if (graceful && !tc->shutting_down && uv_is_writable((uv_stream_t *)&tc->tcp)) {
        tc->shutdown_req.data = tc;
        if (uv_shutdown(&tc->shutdown_req, (uv_stream_t *)&tc->tcp, on_shutdown) == 0) {
            tc->shutting_down = 1;
            return;
        }
    }
    close_tcp(tc);
}

static void tcp_destroy(struct sncp_conn *c)
{
    struct tcp_conn *tc = tcp_conn_cast(c);
    free(tc->dial);
    free(tc);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void tcp_read_stop(struct sncp_conn *c)
{
    uv_read_stop((uv_stream_t *)&tcp_conn_cast(c)->tcp);
}

static int tcp_read_start(struct sncp_conn *c)
{
    return uv_read_start((uv_stream_t *)&tcp_conn_cast(c)->tcp, on_alloc, on_read);
}

static const struct sncp_conn_class tcp_class = {
    .name = "tcp",
    .write = tcp_write,
    .write_queue = tcp_write_queue,
    .read_stop = tcp_read_stop,
    .read_start = tcp_read_start,
    .close = tcp_close,
    .destroy = tcp_destroy,
};

/* ---- reading -------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init((char *)read_buf, sizeof read_buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tcp_conn *tc = s->data;
    if (nread > 0)
        sncp_conn_transport_input(&tc->up, (const uint8_t *)buf->base, (size_t)nread);
    else if (nread == UV_EOF)
        sncp_conn_transport_failed(&tc->up, 0);
    else if (nread < 0)
        sncp_conn_transport_failed(&tc->up, (int)nread);
}

/* The socket is connected: tune it and start the session. */
static void tcp_established(struct tcp_conn *tc)
{
    uv_tcp_nodelay(&tc->tcp, 1);
    set_peer_name_from_socket(tc);
    sncp_conn_transport_up(&tc->up);
}

/* ---- outgoing connections ------------------------------------------------------------- */

static void on_connect(uv_connect_t *req, int status)
{
    struct tcp_conn *tc = req->data;
    if (status == UV_ECANCELED || tc->up.closing)
        return;
    if (status < 0) {
        SNV_DBG("conn", "connect failed peer=%s err=%s", tc->up.peer_name, uv_err_name(status));
        sncp_conn_transport_failed(&tc->up, status);
        return;
    }
    tcp_established(tc);
}

static int start_connect(struct tcp_conn *tc, const struct sockaddr *sa)
{
    char name[SNCP_CONN_PEER_NAME_MAX];
    format_addr((const struct sockaddr_storage *)sa, name, sizeof name);
    sncp_conn_set_peer_name(&tc->up, name);
    tc->dial->connect_req.data = tc;
    return uv_tcp_connect(&tc->dial->connect_req, &tc->tcp, sa, on_connect);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct tcp_conn *tc = req->data;
    tc->resolving = 0;
    if (tc->up.closing) {
        uv_freeaddrinfo(res);
        maybe_released(tc);
        return;
    }
    if (status < 0 || !res) {
        snv_log_rl(&resolve_rl, SNV_LOG_WARN, "conn", "cannot resolve host=%s err=%s",
                   tc->dial->host, uv_strerror(status));
        uv_freeaddrinfo(res);
        sncp_conn_transport_failed(&tc->up, -EHOSTUNREACH);
        return;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    memcpy(&ss, res->ai_addr, res->ai_addrlen < sizeof ss ? res->ai_addrlen : sizeof ss);
    uv_freeaddrinfo(res);
    int rc = start_connect(tc, (const struct sockaddr *)&ss);
    if (rc < 0)
        sncp_conn_transport_failed(&tc->up, rc);
}

static int parse_numeric(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    char tmp[INET6_ADDRSTRLEN + 2];
    const char *h = host;
    size_t len = strlen(host);
    if (len > 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof tmp) {
        memcpy(tmp, host + 1, len - 2);
        tmp[len - 2] = '\0';
        h = tmp;
    }
    if (uv_ip6_addr(h, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return -EINVAL;
}

int sncp_conn_connect(uv_loop_t *loop, const char *host, uint16_t port,
                      const struct sncp_conn_config *cfg, const struct sncp_conn_cbs *cbs,
                      void *ctx, struct sncp_conn **out)
{
    *out = NULL;
    ignore_sigpipe();
    if (!host || !*host || strlen(host) >= sizeof((struct tcp_dial *)0)->host)
        return -EINVAL;
    struct tcp_conn *tc = calloc(1, sizeof *tc);
    struct tcp_dial *dial = calloc(1, sizeof *dial);
    if (!tc || !dial) {
        free(tc);
        free(dial);
        return -ENOMEM;
    }
    tc->dial = dial;
    int rc = sncp_conn_init(&tc->up, &tcp_class, loop, cfg, SNCP_TLS_CLIENT, cbs, ctx);
    if (rc < 0) {
        sncp_session_destroy(tc->up.session);
        free(dial);
        free(tc);
        return rc;
    }
    snprintf(dial->host, sizeof dial->host, "%s", host);
    uv_tcp_init(loop, &tc->tcp);
    tc->tcp.data = tc;

    struct sockaddr_storage ss;
    if (parse_numeric(host, port, &ss) == 0) {
        rc = start_connect(tc, (const struct sockaddr *)&ss);
    } else {
        char portstr[8];
        snprintf(portstr, sizeof portstr, "%u", port);
        char name[SNCP_CONN_PEER_NAME_MAX];
        snprintf(name, sizeof name, "%.50s:%u", host, port);
        sncp_conn_set_peer_name(&tc->up, name);
        struct addrinfo hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        dial->gai_req.data = tc;
        rc = uv_getaddrinfo(loop, &dial->gai_req, on_resolved, dial->host, portstr, &hints);
        if (rc == 0)
            tc->resolving = 1;
    }
    if (rc < 0) {
        /* Immediate failure: no callback for the owner; the handles still close through
         * the loop, which frees the connection. */
        tc->up.silent = 1;
        sncp_conn_transport_failed(&tc->up, rc);
        return rc;
    }
    *out = &tc->up;
    return 0;
}

/* ---- listener ------------------------------------------------------------------------- */

static void on_refused_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Why a new connection from src may not start its TLS handshake, or NULL if it may.
 * Checked right after accept(), before anything is allocated for the session. */
static const char *admission_refusal(struct sncp_listener *l, const struct sockaddr_storage *src)
{
    if (l->n_conns >= l->max_conns) {
        l->stats.refused_max_conns++;
        return "max_conns reached";
    }
    if (l->max_pending && l->n_pending >= l->max_pending) {
        l->stats.refused_hello_pending++;
        return "too many connections before HELLO";
    }
    if (l->max_pending_per_source) {
        unsigned n = 0;
        for (const struct tcp_conn *p = l->pending; p; p = p->p_next)
            n += snv_addr_equal(&p->src, src, false);
        if (n >= l->max_pending_per_source) {
            l->stats.refused_per_source++;
            return "too many connections before HELLO from this address";
        }
    }
    return NULL;
}

static void pending_remove(struct sncp_listener *l, struct tcp_conn *tc)
{
    if (!tc->hello_pending)
        return;
    if (tc->p_prev)
        tc->p_prev->p_next = tc->p_next;
    else
        l->pending = tc->p_next;
    if (tc->p_next)
        tc->p_next->p_prev = tc->p_prev;
    tc->p_prev = tc->p_next = NULL;
    tc->hello_pending = 0;
    l->n_pending--;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct sncp_listener *l = server->data;
    if (status < 0) {
        snv_log_rl(&l->rl, SNV_LOG_WARN, "conn", "accept failed port=%u err=%s", l->port,
                   uv_strerror(status));
        return;
    }
    struct tcp_conn *tc = calloc(1, sizeof *tc);
    if (!tc) {
        snv_log_rl(&l->rl, SNV_LOG_ERR, "conn", "cannot allocate a connection port=%u", l->port);
        return;
    }
    uv_tcp_init(l->loop, &tc->tcp);
    tc->tcp.data = tc;
    int rc = uv_accept(server, (uv_stream_t *)&tc->tcp);
    int len = sizeof tc->src;
    if (rc == 0)
        rc = uv_tcp_getpeername(&tc->tcp, (struct sockaddr *)&tc->src, &len);
    const char *refusal = rc == 0 ? admission_refusal(l, &tc->src) : NULL;
    if (refusal) {
        char name[SNCP_CONN_PEER_NAME_MAX];
        format_addr(&tc->src, name, sizeof name);
        snv_log_rl(&l->rl, SNV_LOG_WARN, "conn",
                   "refused connection: %s peer=%s port=%u connections=%u before_hello=%u", refusal,
                   name, l->port, l->n_conns, l->n_pending);
    }
    if (rc < 0 || refusal ||
        sncp_conn_init(&tc->up, &tcp_class, l->loop, &l->cfg, SNCP_TLS_SERVER, &l->cbs, l->ctx) <
            0) {
        if (!rc && !refusal)
            snv_log_rl(&l->rl, SNV_LOG_ERR, "conn", "cannot allocate a connection port=%u",
                       l->port);
        sncp_session_destroy(tc->up.session);
        uv_close((uv_handle_t *)&tc->tcp, on_refused_closed);
        return;
    }
    tc->up.listener = l;
    tc->up.l_next = l->conns;
    if (l->conns)
        l->conns->l_prev = &tc->up;
    l->conns = &tc->up;
    l->n_conns++;
    tc->hello_pending = 1;
    tc->p_next = l->pending;
    if (l->pending)
        l->pending->p_prev = tc;
    l->pending = tc;
    l->n_pending++;
    tcp_established(tc);
}

void sncp_listener_conn_hello_done(struct sncp_listener *l, struct sncp_conn *c)
{
    pending_remove(l, tcp_conn_cast(c));
}

void sncp_listener_conn_finished(struct sncp_listener *l, struct sncp_conn *c)
{
    if (c->l_prev)
        c->l_prev->l_next = c->l_next;
    else
        l->conns = c->l_next;
    if (c->l_next)
        c->l_next->l_prev = c->l_prev;
    c->l_prev = c->l_next = NULL;
    c->listener = NULL;
    l->n_conns--;
    pending_remove(l, tcp_conn_cast(c));
}

static void on_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

/* listener_start: a listener bound to bind_addr or, when bind_addr is NULL, on the socket
 * fd already bound by someone else (closed on failure).  Returns 0 and *out, or -errno. */
static int listener_start(uv_loop_t *loop, const struct sockaddr *bind_addr, int fd,
                          const struct sncp_conn_config *cfg, const struct sncp_conn_cbs *cbs,
                          void *ctx, struct sncp_listener **out)
{
    ignore_sigpipe();
    struct sncp_listener *l = calloc(1, sizeof *l);
    if (!l) {
        if (!bind_addr)
            close(fd);
        return -ENOMEM;
    }
    l->loop = loop;
    l->cfg = *cfg;
    l->cbs = *cbs;
    l->ctx = ctx;
    l->max_conns = cfg->max_conns ? cfg->max_conns : DEFAULT_MAX_CONNS;
    l->max_pending = cfg->max_hello_pending;
    l->max_pending_per_source = cfg->max_hello_pending_per_source;
    l->rl = (struct snv_ratelimit)SNV_RATELIMIT_INIT(5, 20);
    int rc = uv_tcp_init(loop, &l->tcp);
    if (rc < 0) {
        if (!bind_addr)
            close(fd);
        free(l);
        return rc;
    }
    l->tcp.data = l;
    if (bind_addr) {
        rc = uv_tcp_bind(&l->tcp, bind_addr, 0);
    } else if ((rc = uv_tcp_open(&l->tcp, fd)) < 0) {
        close(fd); /* not the handle's yet */
    }
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, LISTEN_BACKLOG, on_connection);
    if (rc == 0) {
        struct sockaddr_storage bound;
        int len = sizeof bound;
        rc = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &len);
        if (rc == 0)
            l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                        : ((struct sockaddr_in *)&bound)->sin_port);
    }
    if (rc < 0) {
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
        return rc;
    }
    *out = l;
    return 0;
}

int sncp_listener_create(uv_loop_t *loop, const char *addr, uint16_t port,
                         const struct sncp_conn_config *cfg, const struct sncp_conn_cbs *cbs,
                         void *ctx, struct sncp_listener **out)
{
    *out = NULL;
    struct sockaddr_storage ss;
    if (!addr || parse_numeric(addr, port, &ss) < 0)
        return -EINVAL;
    return listener_start(loop, (const struct sockaddr *)&ss, -1, cfg, cbs, ctx, out);
}

int sncp_listener_open(uv_loop_t *loop, int fd, const struct sncp_conn_config *cfg,
                       const struct sncp_conn_cbs *cbs, void *ctx, struct sncp_listener **out)
{
    *out = NULL;
    if (fd < 0)
        return -EBADF;
    return listener_start(loop, NULL, fd, cfg, cbs, ctx, out);
}

void sncp_listener_destroy(struct sncp_listener *l)
{
    if (!l)
        return;
    for (struct sncp_conn *c = l->conns, *next; c; c = next) {
        next = c->l_next;
        c->listener = NULL;
        c->l_prev = c->l_next = NULL;
        struct tcp_conn *tc = tcp_conn_cast(c);
        tc->hello_pending = 0;
        tc->p_prev = tc->p_next = NULL;
    }
    l->conns = NULL;
    l->pending = NULL;
    l->n_pending = 0;
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
}

uint16_t sncp_listener_port(const struct sncp_listener *l)
{
    return l->port;
}

unsigned sncp_listener_conns(const struct sncp_listener *l)
{
    return l->n_conns;
}

void sncp_listener_stats(const struct sncp_listener *l, struct sncp_listener_stats *out)
{
    *out = l->stats;
    out->hello_pending = l->n_pending;
}
