/* sncp-conn-l2.c: the Layer-2 provider of sncp-conn (AF_PACKET on Linux).
 *
 * A port owns one AF_PACKET socket (SOCK_RAW, bound to the channel's EtherType on one
 * interface) polled by libuv.  Received frames are demultiplexed to connections by peer
 * MAC and connection id (proto/L2-TRANSPORT.md §6.1); discovery and unknown-connection
 * answers are handled here, the reliable byte stream by lib/sncp-l2.c, whose deadlines run
 * on one uv_timer per connection.  A connection's transport is released when that timer
 * has closed: the timer is the only libuv handle a connection has of its own.
 */
#include "sncp-conn-l2.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "sncp-conn-provider.h"
#include "sncp-error.h"
#include "sncp-session.h"
#include "snv-log.h"

enum {
    ETH_HDR = 14,
    VLAN_HDR = 4,
    ETH_MIN_FRAME = 60, /* without FCS: shorter frames are padded */
    RX_BATCH = 64,      /* frames read per poll callback */
    DEFAULT_MAX_CONNS_L2 = 4096,
    SOLICIT_FIRST_MS = 1000,
    SOCKET_BUFFER = 4 << 20, /* bytes, receive and send */
    ADVERTISE_RATE = 1000,   /* ADVERTISEs per second after the burst */
    MAX_POLL_ERRORS = 100,   /* socket errors in a row before the port is given up */
    DEFAULT_SOLICIT_MAX_MS = 30000,
    DEFAULT_MAX_UNAUTH = 32,
    DEFAULT_OPEN_RATE = 2000,   /* cookie answers per second and port */
    DEFAULT_OPEN_RATE_MAC = 10, /* OPENs per second and source MAC */
    ACCEPT_RATE = 200,          /* connections created per second and port (cookie valid) */
    MAC_TABLE_SIZE = 1024,      /* per-MAC rate limit entries */
    MAC_WAYS = 4,               /* ... in sets of this many */
};

/* The OPEN rate of one source MAC.  The table is bounded: a new MAC takes the least
 * recently used entry of its set, so a flood from random MACs costs no memory; an evicted
 * MAC just starts again with a full bucket, and the per-port limit still holds.  A MAC
 * that has authenticated a connection is `known`: its OPENs skip the per-port limit (a
 * hypervisor reconnecting during a flood is answered at once), and a new MAC evicts a known
 * one only when its whole set is known. */
struct mac_rl {
    uint8_t mac[6];
    uint8_t used;
    uint8_t known;
    struct snv_ratelimit rl;
};

struct l2c;

enum { BY_ID, BY_PEER, N_TABLES };

struct sncp_l2_port {
    uv_loop_t *loop;
    uv_poll_t poll;
    int fd;
    int ifindex;
    char ifname[IF_NAMESIZE];
    uint8_t mac[6];
    uint8_t group[6];
    uint16_t ethertype;
    uint16_t conf_mtu; /* as configured; pcfg.l2.mtu may be lowered to the interface's */
    struct sncp_l2_port_config pcfg;
    char node_name[SNCP_L2_MAX_NAME_LEN + 1];
    char nnve_name[SNCP_L2_MAX_NAME_LEN + 1];
    struct sncp_conn_config cfg;
    struct sncp_conn_cbs cbs;
    void *ctx;
    struct l2c *conns;
    struct l2c **tables[N_TABLES]; /* conns by local id; accepted conns by peer MAC and id */
    unsigned buckets[N_TABLES];    /* a power of two */
    uint64_t hash_seed;
    unsigned n_conns, n_accepted;
    int destroying, poll_closed;
    unsigned poll_errors; /* socket errors since the last readable event */
    int failed;           /* the socket cannot be used any more: -errno */
    struct snv_ratelimit reply_rl, adv_rl, log_rl;
    struct snv_ratelimit open_rl, accept_rl;   /* cookie answers; connections created */
    struct mac_rl *mac_rl;                     /* MAC_TABLE_SIZE entries, allocated at the first
                                                * OPEN */
    struct sncp_l2_unauth own_unauth, *unauth; /* pcfg.unauth, or own_unauth */
    unsigned n_unauth;                         /* this port's share of unauth->n */
    uint8_t cookie_secret[2][SNCP_L2_COOKIE_SECRET_LEN]; /* current, previous */
    uint64_t cookie_secret_at;                           /* when [0] was drawn */
    int cookie_primed;
    struct sncp_l2_port_stats stats;
};

struct l2c {
    struct sncp_conn up;
    struct sncp_l2_port *port;
    struct sncp_l2_conn *l2;
    uv_timer_t timer;
    struct l2c *prev, *next;
    struct l2c *chain[N_TABLES];
    uint32_t key[N_TABLES];
    int in_table[N_TABLES];
    uint32_t local_id; /* 0 until the channel exists */
    uint8_t peer_mac[6];
    uint16_t vlan;
    int accepted;
    int unauth_counted; /* accepted, TLS handshake not completed: counted in the budget */
    int discovering;
    uint32_t nonce;
    uint64_t solicit_at;
    uint32_t solicit_ivl;
    int reading;
    int nesting, rearm_pending;
    int close_pending; /* graceful close waits for wq to drain into the channel */
    int timer_closing;
    uint8_t *wq; /* session output the channel's send buffer did not take yet */
    size_t wq_len, wq_cap;
};

static const struct sncp_conn_class l2_class;

static struct mac_rl *mac_entry(struct sncp_l2_port *p, const uint8_t src[6]);

static struct l2c *l2c_cast(const struct sncp_conn *c)
{
    return (struct l2c *)((char *)c - offsetof(struct l2c, up));
}

static uint32_t random_u32(void)
{
    uint32_t v = 0;
    while (v == 0) {
        if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
            v = (uint32_t)uv_hrtime() ^ (uint32_t)(uintptr_t)&v;
        }
    }
    return v;
}

/* ---- connections by id: every frame but OPEN names our id, and an OPEN names the peer's
 * (with its MAC), so a port with thousands of connections finds each in a short hash chain,
 * also for every OPEN of a flood. ---- */

/* A keyed hash of a MAC address and a u32 (the seed is random per port: an attacker who
 * picks MACs cannot pick collisions). */
static uint32_t mac_hash(uint64_t seed, const uint8_t mac[6], uint32_t v)
{
    uint64_t h = seed;
    for (int i = 0; i < 6; i++) {
        h = (h ^ mac[i]) * 0x100000001b3ull;
    }
    h = (h ^ v) * 0x100000001b3ull;
    return (uint32_t)(h ^ (h >> 29) ^ (h >> 47));
}

static struct l2c **bucket(const struct sncp_l2_port *p, int t, uint32_t key)
{
    uint32_t h = key * 0x9e3779b1u; /* spreads the bits of ids and hashes alike */
    return &p->tables[t][(h >> 16) & (p->buckets[t] - 1)];
}

/* The first connection in table t under key (the caller checks the rest), or NULL. */
static struct l2c *table_find(const struct sncp_l2_port *p, int t, uint32_t key)
{
    if (!p->buckets[t]) {
        return NULL;
    }
    struct l2c *lc = *bucket(p, t, key);
    while (lc && lc->key[t] != key) {
        lc = lc->chain[t];
    }
    return lc;
}

/* Adds lc to table t under key, growing the table to keep chains short.  Returns 0 or
 * -ENOMEM. */
static int table_insert(struct sncp_l2_port *p, int t, struct l2c *lc, uint32_t key)
{
    if (p->n_conns > p->buckets[t]) {
        unsigned nb = p->buckets[t] ? p->buckets[t] * 2 : 64;
        struct l2c **nt = calloc(nb, sizeof *nt);
        if (!nt) {
            return -ENOMEM;
        }
        struct l2c **old = p->tables[t];
        unsigned ob = p->buckets[t];
        p->tables[t] = nt;
        p->buckets[t] = nb;
        for (unsigned i = 0; i < ob; i++) {
            for (struct l2c *c = old[i], *next; c; c = next) {
                next = c->chain[t];
                struct l2c **b = bucket(p, t, c->key[t]);
                c->chain[t] = *b;
                *b = c;
            }
        }
        free(old);
    }
    struct l2c **b = bucket(p, t, key);
    lc->key[t] = key;
    lc->chain[t] = *b;
    lc->in_table[t] = 1;
    *b = lc;
    return 0;
}

static void table_remove(struct sncp_l2_port *p, int t, struct l2c *lc)
{
    if (!lc->in_table[t]) {
        return;
    }
    for (struct l2c **pp = bucket(p, t, lc->key[t]); *pp; pp = &(*pp)->chain[t]) {
        if (*pp == lc) {
            *pp = lc->chain[t];
            lc->in_table[t] = 0;
            return;
        }
    }
}

static struct l2c *id_find(const struct sncp_l2_port *p, uint32_t id)
{
    return table_find(p, BY_ID, id);
}

/* ---- sending ---------------------------------------------------------------------------- */

static void port_send(struct sncp_l2_port *p, const uint8_t dst[6], uint16_t vlan,
                      const uint8_t *frame, size_t len)
{
    uint8_t buf[ETH_HDR + VLAN_HDR + SNCP_L2_MAX_MTU];
    size_t off = 0;
    if (len > SNCP_L2_MAX_MTU) {
        return;
    }
    memcpy(buf, dst, 6);
    memcpy(buf + 6, p->mac, 6);
    off = 12;
    if (vlan) {
        uint16_t tpid = htons(ETHERTYPE_VLAN), tci = htons(vlan & 0x0fff);
        memcpy(buf + off, &tpid, 2);
        memcpy(buf + off + 2, &tci, 2);
        off += 4;
    }
    uint16_t et = htons(p->ethertype);
    memcpy(buf + off, &et, 2);
    off += 2;
    memcpy(buf + off, frame, len);
    off += len;
    if (off < ETH_MIN_FRAME) {
        memset(buf + off, 0, ETH_MIN_FRAME - off);
        off = ETH_MIN_FRAME;
    }
    struct sockaddr_ll sll = {
        .sll_family = AF_PACKET,
        .sll_ifindex = p->ifindex,
        .sll_halen = 6,
    };
    memcpy(sll.sll_addr, dst, 6);
    if (sendto(p->fd, buf, off, MSG_DONTWAIT, (struct sockaddr *)&sll, sizeof sll) < 0) {
        /* A frame the kernel does not take is a lost frame: the channel retransmits. */
        p->stats.send_errors++;
        snv_log_rl(&p->log_rl, SNV_LOG_WARN, "l2", "send failed if=%s err=%s", p->ifname,
                   strerror(errno));
        return;
    }
    p->stats.frames_out++;
}

/* ---- per-connection timer --------------------------------------------------------------- */

static void l2c_rearm(struct l2c *lc);

static void l2c_enter(struct l2c *lc)
{
    lc->nesting++;
}

static void l2c_leave(struct l2c *lc)
{
    if (--lc->nesting == 0 && lc->rearm_pending) {
        l2c_rearm(lc);
    }
}

static void send_solicit(struct l2c *lc)
{
    struct sncp_l2_port *p = lc->port;
    uint8_t buf[SNCP_L2_HEADER_LEN + SNCP_L2_DISC_BODY_LEN + SNCP_L2_MAX_NAME_LEN];
    int n = sncp_l2_solicit_build(lc->nonce, (uint16_t)(p->pcfg.l2.mtu - SNCP_L2_HEADER_LEN),
                                  p->node_name, buf, sizeof buf);
    if (n > 0) {
        p->stats.solicits_out++;
        port_send(p, p->group, p->pcfg.vlan, buf, (size_t)n);
    }
}

static void on_l2c_timer(uv_timer_t *t)
{
    struct l2c *lc = t->data;
    if (lc->discovering && uv_now(lc->port->loop) >= lc->solicit_at) {
        send_solicit(lc);
        uint32_t max = lc->port->pcfg.solicit_max_ms;
        lc->solicit_ivl = lc->solicit_ivl * 2 > max ? max : lc->solicit_ivl * 2;
        lc->solicit_at = uv_now(lc->port->loop) + lc->solicit_ivl;
    }
    l2c_rearm(lc);
}

/* Runs the channel's timers and arms ours for its next deadline.  Deferred while a call
 * into the channel is in progress (the channel is not re-entered from its callbacks). */
static void l2c_rearm(struct l2c *lc)
{
    if (lc->timer_closing) {
        return;
    }
    if (lc->nesting) {
        lc->rearm_pending = 1;
        return;
    }
    lc->rearm_pending = 0;
    uint64_t now = uv_now(lc->port->loop);
    l2c_enter(lc);
    uint64_t due = sncp_l2_conn_tick(lc->l2, now);
    lc->nesting--;
    if (lc->timer_closing) {
        return;
    }
    if (lc->discovering && lc->solicit_at < due) {
        due = lc->solicit_at;
    }
    if (due == UINT64_MAX) {
        uv_timer_stop(&lc->timer);
    } else {
        uv_timer_start(&lc->timer, on_l2c_timer, due > now ? due - now : 0, 0);
    }
}

static void on_l2c_timer_closed(uv_handle_t *h)
{
    struct l2c *lc = h->data;
    sncp_conn_transport_released(&lc->up);
}

static void l2c_release(struct l2c *lc)
{
    if (lc->timer_closing) {
        return;
    }
    lc->timer_closing = 1;
    lc->discovering = 0;
    uv_close((uv_handle_t *)&lc->timer, on_l2c_timer_closed);
}

/* ---- channel callbacks ------------------------------------------------------------------ */

/* lc (accepted) completed its TLS handshake or goes: it leaves the budget. */
static void unauth_release(struct l2c *lc)
{
    if (lc->unauth_counted) {
        lc->unauth_counted = 0;
        lc->port->unauth->n--;
        lc->port->n_unauth--;
    }
}

static void set_peer_name(struct l2c *lc)
{
    char mac[SNCP_MAC_STRLEN], name[SNCP_CONN_PEER_NAME_MAX];
    sncp_mac_format(lc->peer_mac, mac, sizeof mac);
    if (lc->vlan) {
        snprintf(name, sizeof name, "%s/%s/vlan%u", lc->port->ifname, mac, lc->vlan);
    } else {
        snprintf(name, sizeof name, "%s/%s", lc->port->ifname, mac);
    }
    sncp_conn_set_peer_name(&lc->up, name);
}

static void cb_output(void *ctx, const uint8_t *frame, size_t len)
{
    struct l2c *lc = ctx;
    port_send(lc->port, lc->peer_mac, lc->vlan, frame, len);
}

static void cb_established(void *ctx)
{
    struct l2c *lc = ctx;
    set_peer_name(lc);
    SNV_DBG("l2", "channel established peer=%s local_id=%08x peer_id=%08x", lc->up.peer_name,
            sncp_l2_conn_local_id(lc->l2), sncp_l2_conn_peer_id(lc->l2));
    sncp_conn_transport_up(&lc->up);
}

static void cb_data(void *ctx, const uint8_t *data, size_t len)
{
    struct l2c *lc = ctx;
    if (lc->reading) {
        sncp_conn_transport_input(&lc->up, data, len);
        /* The server's TLS handshake completes on the client's Finished: the connection
         * leaves the unauthenticated budget then. */
        if (lc->unauth_counted && lc->up.session && sncp_session_is_established(lc->up.session)) {
            unauth_release(lc);
            struct mac_rl *e = mac_entry(lc->port, lc->peer_mac);
            if (e) {
                e->known = 1;
            }
        }
    }
}

/* Moves queued session output into the channel as its send buffer frees up. */
static void drain_wq(struct l2c *lc)
{
    if (lc->wq_len && sncp_l2_conn_state(lc->l2) == SNCP_L2_STATE_ESTABLISHED) {
        int64_t n = sncp_l2_conn_send(lc->l2, lc->wq, lc->wq_len, uv_now(lc->port->loop));
        if (n > 0) {
            memmove(lc->wq, lc->wq + n, lc->wq_len - (size_t)n);
            lc->wq_len -= (size_t)n;
        }
    }
    if (lc->close_pending && lc->wq_len == 0) {
        lc->close_pending = 0;
        sncp_l2_conn_close(lc->l2, uv_now(lc->port->loop));
    }
}

static void cb_writable(void *ctx)
{
    drain_wq(ctx);
}

static void cb_closed(void *ctx, int err)
{
    struct l2c *lc = ctx;
    SNV_DBG("l2", "channel closed peer=%s err=%s", lc->up.peer_name, sncp_error_token(err));
    if (!lc->up.closing) {
        sncp_conn_transport_failed(&lc->up, err); /* 0: the peer closed: EOF */
    }
    l2c_release(lc);
}

static const struct sncp_l2_cbs l2_cbs = {cb_output, cb_established, cb_data, cb_writable,
                                          cb_closed};

/* ---- class operations ------------------------------------------------------------------- */

static int l2c_write(struct sncp_conn *c, const uint8_t *data, size_t len)
{
    struct l2c *lc = l2c_cast(c);
    size_t done = 0;
    if (lc->wq_len == 0) {
        l2c_enter(lc);
        int64_t n = sncp_l2_conn_send(lc->l2, data, len, uv_now(lc->port->loop));
        lc->rearm_pending = 1;
        l2c_leave(lc);
        if (n < 0) {
            return -EPIPE;
        }
        done = (size_t)n;
    }
    size_t rest = len - done;
    if (rest == 0) {
        return 0;
    }
    if (lc->wq_len + rest > lc->wq_cap) {
        size_t cap = lc->wq_cap ? lc->wq_cap : 65536;
        while (cap < lc->wq_len + rest) {
            cap *= 2;
        }
        uint8_t *nq = realloc(lc->wq, cap);
        if (!nq) {
            return -ENOMEM;
        }
        lc->wq = nq;
        lc->wq_cap = cap;
    }
    memcpy(lc->wq + lc->wq_len, data + done, rest);
    lc->wq_len += rest;
    return 0;
}

static size_t l2c_write_queue(const struct sncp_conn *c)
{
    const struct l2c *lc = l2c_cast(c);
    return lc->wq_len + (lc->l2 ? sncp_l2_conn_unacked_bytes(lc->l2) : 0);
}

static int l2c_read_start(struct sncp_conn *c)
{
    l2c_cast(c)->reading = 1;
    return 0;
}

static void l2c_read_stop(struct sncp_conn *c)
{
    l2c_cast(c)->reading = 0;
}

static void l2c_close(struct sncp_conn *c, int graceful)
{
    struct l2c *lc = l2c_cast(c);
    if (lc->timer_closing) {
        return;
    }
    lc->discovering = 0;
    enum sncp_l2_state st = lc->l2 ? sncp_l2_conn_state(lc->l2) : SNCP_L2_STATE_IDLE;
    if (st == SNCP_L2_STATE_IDLE || st == SNCP_L2_STATE_CLOSED) {
        if (lc->l2) {
            sncp_l2_conn_abort(lc->l2, uv_now(lc->port->loop));
        }
        l2c_release(lc);
        return;
    }
    l2c_enter(lc);
    if (graceful && st == SNCP_L2_STATE_ESTABLISHED) {
        lc->close_pending = 1;
        drain_wq(lc);
    } else if (!graceful) {
        sncp_l2_conn_abort(lc->l2, uv_now(lc->port->loop)); /* `closed` releases */
    }
    lc->rearm_pending = 1;
    l2c_leave(lc);
}

static void port_maybe_free(struct sncp_l2_port *p)
{
    if (p->destroying && p->poll_closed && p->n_conns == 0) {
        close(p->fd);
        free(p->tables[BY_ID]);
        free(p->tables[BY_PEER]);
        free(p->mac_rl);
        OPENSSL_cleanse(p->cookie_secret, sizeof p->cookie_secret);
        free(p);
    }
}

static void l2c_destroy(struct sncp_conn *c)
{
    struct l2c *lc = l2c_cast(c);
    struct sncp_l2_port *p = lc->port;
    if (lc->prev) {
        lc->prev->next = lc->next;
    } else {
        p->conns = lc->next;
    }
    if (lc->next) {
        lc->next->prev = lc->prev;
    }
    table_remove(p, BY_ID, lc);
    table_remove(p, BY_PEER, lc);
    unauth_release(lc);
    p->n_conns--;
    if (lc->accepted) {
        p->n_accepted--;
    }
    sncp_l2_conn_destroy(lc->l2);
    free(lc->wq);
    free(lc);
    port_maybe_free(p);
}

static const struct sncp_conn_class l2_class = {
    .name = "l2",
    .write = l2c_write,
    .write_queue = l2c_write_queue,
    .read_start = l2c_read_start,
    .read_stop = l2c_read_stop,
    .close = l2c_close,
    .destroy = l2c_destroy,
};

const struct sncp_l2_conn *sncp_conn_l2(const struct sncp_conn *c)
{
    return c->cls == &l2_class ? l2c_cast(c)->l2 : NULL;
}

int sncp_conn_l2_peer(const struct sncp_conn *c, const char **ifname, uint8_t mac[6],
                      uint16_t *vlan)
{
    if (c->cls != &l2_class) {
        return -EINVAL;
    }
    const struct l2c *lc = l2c_cast(c);
    if (ifname) {
        *ifname = lc->port->ifname;
    }
    if (mac) {
        memcpy(mac, lc->peer_mac, 6);
    }
    if (vlan) {
        *vlan = lc->vlan;
    }
    return 0;
}

/* A random connection id no connection of the port has (L2-TRANSPORT.md §6.1). */
static uint32_t unused_id(const struct sncp_l2_port *p)
{
    for (;;) {
        uint32_t id = random_u32();
        if (!id_find(p, id)) {
            return id;
        }
    }
}

/* Allocates a connection of port p (linked, timer initialised, channel created). */
static struct l2c *l2c_new(struct sncp_l2_port *p, const struct sncp_conn_config *cfg,
                           enum sncp_tls_role role, const struct sncp_conn_cbs *cbs, void *ctx,
                           int *err)
{
    struct l2c *lc = calloc(1, sizeof *lc);
    if (!lc) {
        *err = -ENOMEM;
        return NULL;
    }
    *err = sncp_conn_init(&lc->up, &l2_class, p->loop, cfg, role, cbs, ctx);
    if (*err < 0) {
        sncp_session_destroy(lc->up.session);
        free(lc);
        return NULL;
    }
    lc->port = p;
    uv_timer_init(p->loop, &lc->timer);
    lc->timer.data = lc;
    lc->next = p->conns;
    if (p->conns) {
        p->conns->prev = lc;
    }
    p->conns = lc;
    p->n_conns++;
    struct sncp_l2_config l2cfg = p->pcfg.l2;
    l2cfg.local_id = unused_id(p);
    l2cfg.initial_seq = random_u32();
    *err = sncp_l2_conn_create(&l2cfg, &l2_cbs, lc, &lc->l2);
    if (*err == 0) {
        lc->local_id = l2cfg.local_id;
        *err = table_insert(p, BY_ID, lc, lc->local_id);
    }
    if (*err < 0) {
        /* The handles exist: tear down through the normal path, without owner callback. */
        lc->up.silent = 1;
        sncp_conn_transport_failed(&lc->up, *err);
        return NULL;
    }
    return lc;
}

/* ---- receiving -------------------------------------------------------------------------- */

static struct l2c *find_conn(struct sncp_l2_port *p, const uint8_t src[6],
                             const struct sncp_l2_frame *f)
{
    if (f->type != SNCP_L2_OPEN) {
        struct l2c *lc = id_find(p, f->dst_id);
        return lc && lc->l2 && !lc->discovering && !memcmp(lc->peer_mac, src, 6) ? lc : NULL;
    }
    /* An OPEN names the peer's id: accepted connections are found by MAC and that id. */
    uint32_t key = mac_hash(p->hash_seed, src, f->src_id);
    for (struct l2c *lc = table_find(p, BY_PEER, key); lc; lc = lc->chain[BY_PEER]) {
        if (lc->key[BY_PEER] == key && lc->l2 && !memcmp(lc->peer_mac, src, 6) &&
            sncp_l2_conn_peer_id(lc->l2) == f->src_id) {
            return lc;
        }
    }
    return NULL;
}

static void reply_unknown(struct sncp_l2_port *p, const uint8_t src[6], uint16_t vlan,
                          const struct sncp_l2_frame *f)
{
    uint8_t buf[SNCP_L2_HEADER_LEN];
    if (!snv_ratelimit_allow(&p->reply_rl, uv_now(p->loop))) {
        return;
    }
    int n = sncp_l2_reply_unknown(f, buf, sizeof buf);
    if (n > 0) {
        p->stats.resets_out++;
        port_send(p, src, vlan, buf, (size_t)n);
    }
}

static void random_bytes(void *buf, size_t len)
{
    uint8_t *b = buf;
    while (len) {
        ssize_t n = getrandom(b, len, 0);
        if (n <= 0) {
            /* getrandom does not fail for small requests once the pool is up; never leave
             * a predictable secret all the same. */
            uint32_t v = random_u32();
            size_t k = len < sizeof v ? len : sizeof v;
            memcpy(b, &v, k);
            n = (ssize_t)k;
        }
        b += n;
        len -= (size_t)n;
    }
}

/* Replaces the cookie secret every SNCP_L2_COOKIE_SECRET_MS; cookies made with the
 * previous one stay valid for one more period (both when the port was quiet longer). */
static void cookie_rotate(struct sncp_l2_port *p, uint64_t now)
{
    uint64_t life = p->pcfg.cookie_secret_ms ? p->pcfg.cookie_secret_ms : SNCP_L2_COOKIE_SECRET_MS;
    if (!p->cookie_primed || now - p->cookie_secret_at >= 2 * life) {
        random_bytes(p->cookie_secret, sizeof p->cookie_secret);
        p->cookie_secret_at = now;
        p->cookie_primed = 1;
    } else if (now - p->cookie_secret_at >= life) {
        memcpy(p->cookie_secret[1], p->cookie_secret[0], sizeof p->cookie_secret[0]);
        random_bytes(p->cookie_secret[0], sizeof p->cookie_secret[0]);
        p->cookie_secret_at = now;
    }
}

/* The per-MAC entry of src, made (evicting) if there is none; NULL without memory. */
static struct mac_rl *mac_entry(struct sncp_l2_port *p, const uint8_t src[6])
{
    if (!p->mac_rl) {
        p->mac_rl = calloc(MAC_TABLE_SIZE, sizeof *p->mac_rl);
        if (!p->mac_rl) {
            return NULL;
        }
    }
    uint32_t h = mac_hash(p->hash_seed, src, 0);
    struct mac_rl *set = &p->mac_rl[(h % (MAC_TABLE_SIZE / MAC_WAYS)) * MAC_WAYS], *e = NULL;
    for (int i = 0; i < MAC_WAYS; i++) {
        if (set[i].used && !memcmp(set[i].mac, src, 6)) {
            return &set[i];
        }
    }
    /* The victim: a free entry, else the least recently used of the unknown ones, else of
     * all. */
    for (int i = 0; i < MAC_WAYS; i++) {
        struct mac_rl *c = &set[i];
        if (!c->used) {
            e = c;
            break;
        }
        if (!e || c->known < e->known || (c->known == e->known && c->rl.last_ms < e->rl.last_ms)) {
            e = c;
        }
    }
    uint32_t rate = p->pcfg.open_rate_per_mac ? p->pcfg.open_rate_per_mac : DEFAULT_OPEN_RATE_MAC;
    memset(e, 0, sizeof *e);
    memcpy(e->mac, src, 6);
    e->used = 1;
    e->rl = (struct snv_ratelimit)SNV_RATELIMIT_INIT(rate, 2 * rate);
    return e;
}

/* Whether one more OPEN from src may be taken now (per-MAC token bucket); *known: whether
 * src has authenticated a connection here. */
static int mac_allow(struct sncp_l2_port *p, const uint8_t src[6], uint64_t now, int *known)
{
    struct mac_rl *e = mac_entry(p, src);
    *known = e && e->known;
    return !e || snv_ratelimit_allow(&e->rl, now); /* without memory the port limit holds */
}

unsigned sncp_l2_port_unauth(const struct sncp_l2_port *p)
{
    return p->n_unauth;
}

/* An OPEN for no connection (L2-TRANSPORT.md §6.2).  Without a valid cookie it is answered
 * with one and nothing is kept; with one, a connection is created unless the port is at
 * its limits.  Per-MAC and per-port rate limits come first: a dropped OPEN is retransmitted
 * by a real opener. */
static void accept_open(struct sncp_l2_port *p, const uint8_t src[6], uint16_t vlan,
                        const struct sncp_l2_frame *f)
{
    unsigned max = p->pcfg.max_conns ? p->pcfg.max_conns : DEFAULT_MAX_CONNS_L2;
    if (!p->pcfg.accept || p->destroying) {
        p->stats.refused++;
        reply_unknown(p, src, vlan, f);
        return;
    }
    uint64_t now = uv_now(p->loop);
    int known;
    if (!mac_allow(p, src, now, &known)) {
        p->stats.rate_limited++;
        return;
    }
    cookie_rotate(p, now);
    if (!sncp_l2_cookie_check(p->cookie_secret, 2, p->mac, src, vlan, f)) {
        if (sncp_l2_open_cookie(f)) {
            p->stats.cookie_failures++; /* forged, or older than two secrets: a fresh one */
        }
        if (!known && !snv_ratelimit_allow(&p->open_rl, now)) {
            p->stats.rate_limited++;
            return;
        }
        uint8_t cookie[SNCP_L2_COOKIE_LEN], buf[SNCP_L2_HEADER_LEN + SNCP_L2_COOKIE_LEN];
        int n = sncp_l2_cookie_compute(p->cookie_secret[0], p->mac, src, vlan, f, cookie);
        if (n == 0) {
            n = sncp_l2_cookie_build(f, cookie, buf, sizeof buf);
        }
        if (n > 0) {
            p->stats.cookies_out++;
            port_send(p, src, vlan, buf, (size_t)n);
        }
        return;
    }
    unsigned max_unauth = p->unauth->max ? p->unauth->max : DEFAULT_MAX_UNAUTH;
    if (p->n_accepted >= max || p->unauth->n >= max_unauth) {
        if (p->n_accepted < max) {
            p->stats.unauth_refused++;
            snv_log_rl(&p->log_rl, SNV_LOG_WARN, "l2",
                       "OPEN refused: connections not yet authenticated at the limit if=%s "
                       "limit=%u",
                       p->ifname, max_unauth);
        }
        p->stats.refused++;
        reply_unknown(p, src, vlan, f);
        return;
    }
    if (!snv_ratelimit_allow(&p->accept_rl, now)) {
        p->stats.rate_limited++;
        return;
    }
    int err;
    struct l2c *lc = l2c_new(p, &p->cfg, SNCP_TLS_SERVER, &p->cbs, p->ctx, &err);
    if (!lc) {
        snv_log_rl(&p->log_rl, SNV_LOG_ERR, "l2", "cannot accept a connection if=%s err=%s",
                   p->ifname, sncp_error_token(err));
        return;
    }
    if (table_insert(p, BY_PEER, lc, mac_hash(p->hash_seed, src, f->src_id)) < 0) {
        lc->up.silent = 1;
        sncp_conn_transport_failed(&lc->up, -ENOMEM);
        return;
    }
    lc->accepted = 1;
    p->n_accepted++;
    lc->unauth_counted = 1;
    p->n_unauth++;
    if (++p->unauth->n > p->unauth->peak) {
        p->unauth->peak = p->unauth->n;
    }
    if (p->unauth->n > p->stats.unauth_peak) {
        p->stats.unauth_peak = p->unauth->n;
    }
    memcpy(lc->peer_mac, src, 6);
    lc->vlan = vlan;
    set_peer_name(lc);
    l2c_enter(lc);
    if (sncp_l2_conn_accept(lc->l2, f, now) < 0) {
        lc->up.silent = 1;
        sncp_conn_transport_failed(&lc->up, -EPROTO);
    }
    lc->rearm_pending = 1;
    l2c_leave(lc);
}

static void on_advertise(struct sncp_l2_port *p, const uint8_t src[6], uint16_t vlan,
                         const struct sncp_l2_frame *f)
{
    struct sncp_l2_discovery d;
    if (sncp_l2_discovery_parse(f, &d) < 0) {
        return;
    }
    p->stats.advertises_in++;
    if (p->nnve_name[0] && strcmp(p->nnve_name, d.name) != 0) {
        return;
    }
    for (struct l2c *lc = p->conns; lc; lc = lc->next) {
        if (lc->discovering && lc->nonce == d.nonce && !lc->timer_closing) {
            lc->discovering = 0;
            memcpy(lc->peer_mac, src, 6);
            lc->vlan = vlan ? vlan : p->pcfg.vlan;
            set_peer_name(lc);
            SNV_INFO("l2", "nNVE found if=%s mac=%s name=%s", p->ifname, lc->up.peer_name,
                     d.name[0] ? d.name : "-");
            l2c_enter(lc);
            sncp_l2_conn_open(lc->l2, uv_now(p->loop));
            lc->rearm_pending = 1;
            l2c_leave(lc);
            return;
        }
    }
}

static void on_solicit(struct sncp_l2_port *p, const uint8_t src[6], uint16_t vlan,
                       const struct sncp_l2_frame *f)
{
    p->stats.solicits_in++;
    if (!p->pcfg.accept || p->destroying || !snv_ratelimit_allow(&p->adv_rl, uv_now(p->loop))) {
        return;
    }
    uint8_t buf[SNCP_L2_HEADER_LEN + SNCP_L2_DISC_BODY_LEN + SNCP_L2_MAX_NAME_LEN];
    int n = sncp_l2_advertise_build(f, (uint16_t)(p->pcfg.l2.mtu - SNCP_L2_HEADER_LEN),
                                    p->node_name, buf, sizeof buf);
    if (n > 0) {
        p->stats.advertises_out++;
        port_send(p, src, vlan, buf, (size_t)n);
    }
}

static void dispatch(struct sncp_l2_port *p, const uint8_t *pkt, size_t len, uint16_t vlan)
{
    if (len < ETH_HDR) {
        p->stats.malformed++;
        return;
    }
    const uint8_t *dst = pkt, *src = pkt + 6;
    uint16_t et;
    memcpy(&et, pkt + 12, 2);
    size_t off = ETH_HDR;
    if (ntohs(et) == ETHERTYPE_VLAN && len >= ETH_HDR + VLAN_HDR) {
        /* A tag the kernel left in the frame. */
        uint16_t tci;
        memcpy(&tci, pkt + 14, 2);
        vlan = ntohs(tci) & 0x0fff;
        memcpy(&et, pkt + 16, 2);
        off += VLAN_HDR;
    }
    if (ntohs(et) != p->ethertype || (src[0] & 1)) {
        return;
    }
    int to_us = memcmp(dst, p->mac, 6) == 0;
    if (!to_us && memcmp(dst, p->group, 6) != 0) {
        return;
    }
    struct sncp_l2_frame f;
    if (sncp_l2_frame_decode(pkt + off, len - off, &f) < 0) {
        p->stats.malformed++;
        return;
    }
    p->stats.frames_in++;
    if (f.type == SNCP_L2_SOLICIT) {
        on_solicit(p, src, vlan, &f);
        return;
    }
    if (!to_us) {
        return; /* only SOLICIT goes to the group address */
    }
    if (f.type == SNCP_L2_ADVERTISE) {
        on_advertise(p, src, vlan, &f);
        return;
    }
    struct l2c *lc = find_conn(p, src, &f);
    if (!lc || lc->timer_closing || sncp_l2_conn_state(lc->l2) == SNCP_L2_STATE_CLOSED) {
        if (f.type == SNCP_L2_OPEN && !lc) {
            accept_open(p, src, vlan, &f); /* a new connection, or counted as refused */
        } else {
            p->stats.unknown++;
            reply_unknown(p, src, vlan, &f);
        }
        return;
    }
    l2c_enter(lc);
    if (sncp_l2_conn_input(lc->l2, &f, uv_now(p->loop)) == 0 && lc->accepted && vlan != lc->vlan) {
        /* The peer's VLAN is learned from its latest valid frame (§3). */
        lc->vlan = vlan;
        set_peer_name(lc);
    }
    lc->rearm_pending = 1;
    l2c_leave(lc);
}

static void on_poll(uv_poll_t *h, int status, int events);

/* A socket error (the interface went down: the kernel reports ENETDOWN) made libuv stop
 * polling: take the error off the socket and poll again, so frames are read once the link
 * is back.  Errors that keep coming without a frame in between, or a poll that cannot
 * restart, fail the port: sncp_l2_port_check() reports it and the owner opens it anew. */
static void on_poll_error(struct sncp_l2_port *p, int status)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
        soerr = errno;
    }
    snv_log_rl(&p->log_rl, SNV_LOG_WARN, "l2", "socket error if=%s err=%s", p->ifname,
               soerr ? strerror(soerr) : uv_strerror(status));
    if (++p->poll_errors > MAX_POLL_ERRORS) {
        p->failed = soerr ? -soerr : -EIO;
        return;
    }
    int rc = uv_poll_start(&p->poll, UV_READABLE, on_poll);
    if (rc < 0) {
        p->failed = rc;
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sncp_l2_port *p = h->data;
    if (p->destroying) {
        return;
    }
    if (status < 0) {
        on_poll_error(p, status);
        return;
    }
    if (!(events & UV_READABLE)) {
        return;
    }
    p->poll_errors = 0;
    static uint8_t pkt[ETH_HDR + VLAN_HDR + SNCP_L2_MAX_MTU + 64];
    for (int i = 0; i < RX_BATCH && !p->destroying; i++) {
        struct sockaddr_ll sll;
        union {
            struct cmsghdr align;
            uint8_t buf[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
        } ctl;
        struct iovec iov = {.iov_base = pkt, .iov_len = sizeof pkt};
        struct msghdr msg = {
            .msg_name = &sll,
            .msg_namelen = sizeof sll,
            .msg_iov = &iov,
            .msg_iovlen = 1,
            .msg_control = ctl.buf,
            .msg_controllen = sizeof ctl.buf,
        };
        ssize_t n = recvmsg(p->fd, &msg, MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR) {
                snv_log_rl(&p->log_rl, SNV_LOG_WARN, "l2", "receive failed if=%s err=%s", p->ifname,
                           strerror(errno));
            }
            return;
        }
        if (sll.sll_pkttype == PACKET_OUTGOING || (size_t)n > sizeof pkt) {
            continue;
        }
        uint16_t vlan = 0;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level == SOL_PACKET && cm->cmsg_type == PACKET_AUXDATA &&
                cm->cmsg_len >= CMSG_LEN(sizeof(struct tpacket_auxdata))) {
                struct tpacket_auxdata aux;
                memcpy(&aux, CMSG_DATA(cm), sizeof aux);
                if (aux.tp_status & TP_STATUS_VLAN_VALID) {
                    vlan = aux.tp_vlan_tci & 0x0fff;
                }
            }
        }
        dispatch(p, pkt, (size_t)n, vlan);
    }
}

/* ---- ports ------------------------------------------------------------------------------ */

static void on_poll_closed(uv_handle_t *h)
{
    struct sncp_l2_port *p = h->data;
    p->poll_closed = 1;
    port_maybe_free(p);
}

/* The socket listens to every frame (ETH_P_ALL) with a filter for our EtherType: a socket
 * bound to the EtherType itself gets VLAN-tagged frames only through a VLAN device (the
 * kernel drops the tag before it reaches such sockets), while ETH_P_ALL sockets see every
 * frame with its tag reported in PACKET_AUXDATA.  The filter reads the EtherType after the
 * tag was taken out of the frame. */
static int open_socket(struct sncp_l2_port *p)
{
    p->fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (p->fd < 0) {
        return -errno;
    }
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, p->ethertype, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0xffff),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
    if (setsockopt(p->fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) {
        return -errno;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, p->ifname, strlen(p->ifname) + 1);
    if (ioctl(p->fd, SIOCGIFINDEX, &ifr) < 0) {
        return errno == ENODEV ? -ENODEV : -errno;
    }
    p->ifindex = ifr.ifr_ifindex;
    if (ioctl(p->fd, SIOCGIFHWADDR, &ifr) < 0) {
        return -errno;
    }
    memcpy(p->mac, ifr.ifr_hwaddr.sa_data, 6);
    /* Frames larger than the interface takes would be lost for good: the channel uses the
     * smaller of both (the tag of a tagged frame is allowed on top by the kernel). */
    if (ioctl(p->fd, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0 && ifr.ifr_mtu < p->pcfg.l2.mtu) {
        if (ifr.ifr_mtu < SNCP_L2_MIN_MTU) {
            /* The owner reports it (and may retry every second). */
            SNV_DBG("l2", "interface MTU too small for the channel if=%s mtu=%d min=%d", p->ifname,
                    ifr.ifr_mtu, SNCP_L2_MIN_MTU);
            return -EMSGSIZE;
        }
        SNV_INFO("l2", "frame size lowered to the interface MTU if=%s mtu=%d", p->ifname,
                 ifr.ifr_mtu);
        p->pcfg.l2.mtu = (uint16_t)ifr.ifr_mtu;
    }
    struct sockaddr_ll sll = {
        .sll_family = AF_PACKET,
        .sll_protocol = htons(ETH_P_ALL),
        .sll_ifindex = p->ifindex,
    };
    if (bind(p->fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
        return -errno;
    }
    /* One socket carries every connection of the interface: bursts of many sessions must
     * not overflow the default buffers (a lost frame costs a retransmission).  The forced
     * variants pass the system limits with CAP_NET_ADMIN; without it the plain ones give
     * what the limits allow. */
    int bufsz = SOCKET_BUFFER;
    if (setsockopt(p->fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsz, sizeof bufsz) < 0) {
        (void)setsockopt(p->fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof bufsz);
    }
    if (setsockopt(p->fd, SOL_SOCKET, SO_SNDBUFFORCE, &bufsz, sizeof bufsz) < 0) {
        (void)setsockopt(p->fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
    }
    int one = 1;
    if (setsockopt(p->fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one) < 0) {
        return -errno;
    }
    /* Older kernels lack it; outgoing frames are then skipped by their packet type. */
    (void)setsockopt(p->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
    if (p->pcfg.accept) {
        struct packet_mreq mr = {
            .mr_ifindex = p->ifindex,
            .mr_type = PACKET_MR_MULTICAST,
            .mr_alen = 6,
        };
        memcpy(mr.mr_address, p->group, 6);
        if (setsockopt(p->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0) {
            return -errno;
        }
    }
    return 0;
}

int sncp_l2_port_create(uv_loop_t *loop, const struct sncp_l2_port_config *pcfg,
                        const struct sncp_conn_config *cfg, const struct sncp_conn_cbs *cbs,
                        void *ctx, struct sncp_l2_port **out)
{
    static const uint8_t default_group[6] = SNCP_L2_DISCOVERY_MAC_INIT;
    *out = NULL;
    if (!pcfg->ifname || strlen(pcfg->ifname) >= IF_NAMESIZE || !*pcfg->ifname ||
        pcfg->vlan > 4094 || (pcfg->accept && (!cfg || !cbs))) {
        return -EINVAL;
    }
    /* Check the channel parameters once, with placeholder ids. */
    struct sncp_l2_config check = pcfg->l2;
    check.local_id = 1;
    struct sncp_l2_conn *probe;
    static const struct sncp_l2_cbs none;
    int rc = sncp_l2_conn_create(&check, &none, NULL, &probe);
    if (rc < 0) {
        return rc;
    }
    sncp_l2_conn_destroy(probe);

    struct sncp_l2_port *p = calloc(1, sizeof *p);
    if (!p) {
        return -ENOMEM;
    }
    p->loop = loop;
    p->pcfg = *pcfg;
    if (!p->pcfg.l2.mtu) {
        p->pcfg.l2.mtu = SNCP_L2_DEFAULT_MTU;
    }
    p->conf_mtu = p->pcfg.l2.mtu;
    if (!p->pcfg.solicit_max_ms) {
        p->pcfg.solicit_max_ms = DEFAULT_SOLICIT_MAX_MS;
    }
    p->ethertype = pcfg->ethertype ? pcfg->ethertype : SNCP_L2_DEFAULT_ETHERTYPE;
    memcpy(p->group, pcfg->discovery_mac ? pcfg->discovery_mac : default_group, 6);
    memcpy(p->ifname, pcfg->ifname, strlen(pcfg->ifname) + 1);
    snprintf(p->node_name, sizeof p->node_name, "%s", pcfg->node_name ? pcfg->node_name : "");
    snprintf(p->nnve_name, sizeof p->nnve_name, "%s", pcfg->nnve_name ? pcfg->nnve_name : "");
    p->pcfg.ifname = p->ifname;
    p->pcfg.node_name = p->node_name;
    p->pcfg.nnve_name = p->nnve_name;
    p->pcfg.discovery_mac = NULL;
    if (cfg) {
        p->cfg = *cfg;
    }
    if (cbs) {
        p->cbs = *cbs;
    }
    p->ctx = ctx;
    p->unauth = pcfg->unauth ? pcfg->unauth : &p->own_unauth;
    random_bytes(&p->hash_seed, sizeof p->hash_seed);
    p->pcfg.unauth = NULL;
    p->reply_rl = (struct snv_ratelimit)SNV_RATELIMIT_INIT(100, 200);
    /* Every hypervisor of a rack may solicit at once (after a power cut): a burst of one
     * answer per connection we accept; a flood is held to ADVERTISE_RATE frames/s. */
    unsigned max = pcfg->max_conns ? pcfg->max_conns : DEFAULT_MAX_CONNS_L2;
    p->adv_rl = (struct snv_ratelimit)SNV_RATELIMIT_INIT(ADVERTISE_RATE, max);
    p->log_rl = (struct snv_ratelimit)SNV_RATELIMIT_INIT(5, 20);
    uint32_t open_rate = pcfg->open_rate ? pcfg->open_rate : DEFAULT_OPEN_RATE;
    p->open_rl = (struct snv_ratelimit)SNV_RATELIMIT_INIT(open_rate, 2 * open_rate);
    p->accept_rl = (struct snv_ratelimit)SNV_RATELIMIT_INIT(ACCEPT_RATE, ACCEPT_RATE);
    rc = open_socket(p);
    if (rc == 0) {
        rc = uv_poll_init(loop, &p->poll, p->fd);
    }
    if (rc < 0) {
        if (p->fd >= 0) {
            close(p->fd);
        }
        free(p);
        return rc;
    }
    p->poll.data = p;
    rc = uv_poll_start(&p->poll, UV_READABLE, on_poll);
    if (rc < 0) {
        /* The poll handle exists: the port is freed from its close callback. */
        sncp_l2_port_destroy(p);
        return rc;
    }
    *out = p;
    return 0;
}

void sncp_l2_port_destroy(struct sncp_l2_port *p)
{
    if (!p || p->destroying) {
        return;
    }
    p->destroying = 1;
    for (struct l2c *lc = p->conns; lc; lc = lc->next) {
        if (!lc->up.closing) {
            sncp_conn_transport_failed(&lc->up, -ECONNABORTED);
        }
    }
    uv_close((uv_handle_t *)&p->poll, on_poll_closed);
}

void sncp_l2_port_mac(const struct sncp_l2_port *p, uint8_t mac[6])
{
    memcpy(mac, p->mac, 6);
}

const char *sncp_l2_port_ifname(const struct sncp_l2_port *p)
{
    return p->ifname;
}

unsigned sncp_l2_port_mtu(const struct sncp_l2_port *p)
{
    return p->pcfg.l2.mtu;
}

int sncp_l2_port_check(struct sncp_l2_port *p)
{
    if (p->failed) {
        return p->failed;
    }
    struct tpacket_stats ts;
    socklen_t tl = sizeof ts;
    if (getsockopt(p->fd, SOL_PACKET, PACKET_STATISTICS, &ts, &tl) == 0) {
        p->stats.rx_dropped += ts.tp_drops; /* the kernel resets them on every read */
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, p->ifname, strlen(p->ifname) + 1);
    if (ioctl(p->fd, SIOCGIFINDEX, &ifr) < 0 || ifr.ifr_ifindex != p->ifindex) {
        return -ENODEV;
    }
    if (ioctl(p->fd, SIOCGIFHWADDR, &ifr) == 0 && memcmp(p->mac, ifr.ifr_hwaddr.sa_data, 6)) {
        char old[SNCP_MAC_STRLEN], now[SNCP_MAC_STRLEN];
        sncp_mac_format(p->mac, old, sizeof old);
        memcpy(p->mac, ifr.ifr_hwaddr.sa_data, 6);
        sncp_mac_format(p->mac, now, sizeof now);
        SNV_INFO("l2", "interface MAC changed if=%s old_mac=%s mac=%s", p->ifname, old, now);
    }
    uint16_t want = p->pcfg.l2.mtu;
    if (ioctl(p->fd, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu >= SNCP_L2_MIN_MTU &&
        ifr.ifr_mtu != p->pcfg.l2.mtu) {
        /* New connections use it; established ones keep what they negotiated. */
        unsigned conf = p->conf_mtu;
        want = (uint16_t)((unsigned)ifr.ifr_mtu < conf ? (unsigned)ifr.ifr_mtu : conf);
    }
    if (want != p->pcfg.l2.mtu) {
        SNV_INFO("l2", "frame size follows the interface MTU if=%s mtu=%u", p->ifname, want);
        p->pcfg.l2.mtu = want;
    }
    return 0;
}

unsigned sncp_l2_port_conns(const struct sncp_l2_port *p)
{
    return p->n_conns;
}

const struct sncp_l2_port_stats *sncp_l2_port_stats(const struct sncp_l2_port *p)
{
    return &p->stats;
}

int sncp_conn_connect_l2(struct sncp_l2_port *p, const uint8_t *nnve_mac,
                         const struct sncp_conn_config *cfg, const struct sncp_conn_cbs *cbs,
                         void *ctx, struct sncp_conn **out)
{
    *out = NULL;
    if (p->destroying) {
        return -ECONNABORTED;
    }
    int err;
    struct l2c *lc = l2c_new(p, cfg, SNCP_TLS_CLIENT, cbs, ctx, &err);
    if (!lc) {
        return err;
    }
    lc->vlan = p->pcfg.vlan;
    uint64_t now = uv_now(p->loop);
    if (nnve_mac) {
        memcpy(lc->peer_mac, nnve_mac, 6);
        set_peer_name(lc);
        l2c_enter(lc);
        sncp_l2_conn_open(lc->l2, now);
        lc->rearm_pending = 1;
        l2c_leave(lc);
    } else {
        sncp_conn_set_peer_name(&lc->up, "discovering");
        lc->discovering = 1;
        lc->nonce = random_u32();
        lc->solicit_ivl = SOLICIT_FIRST_MS;
        lc->solicit_at = now + lc->solicit_ivl;
        send_solicit(lc);
        l2c_rearm(lc);
    }
    *out = &lc->up;
    return 0;
}
