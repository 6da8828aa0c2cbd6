/* uplink.c: the uplink watcher and the choice of the active nNVE (see uplink.h).
 *
 * One NETLINK_ROUTE socket, non-blocking, polled by the loop: it receives the RTNLGRP_LINK
 * notifications and the answers of our own dumps.  Every RTM_NEWLINK of a watched name or
 * of a bond is kept (the last one wins); an RTM_DELLINK forgets it.  A dump marks what it
 * saw, and at its NLMSG_DONE what it did not see is gone.  When the kernel could not queue
 * a notification (ENOBUFS) the state may be stale: a new dump follows.
 */
#include "uplink.h"

#include <errno.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "snv-log.h"

/* RFC 2863 operational states as IFLA_OPERSTATE reports them */
enum { OPER_UNKNOWN = 0, OPER_UP = 6 };
/* IFLA_BOND_MODE of an active-backup bond */
enum { BOND_MODE_AB = 1 };

const char *tnve_uplink_state_name(enum tnve_uplink_state s)
{
    switch (s) {
    case TNVE_UPLINK_ABSENT:
        return "absent";
    case TNVE_UPLINK_DOWN:
        return "down";
    case TNVE_UPLINK_BACKUP:
        return "backup";
    case TNVE_UPLINK_ACTIVE:
        return "active";
    case TNVE_UPLINK_UP:
        return "up";
    case TNVE_UPLINK_UNKNOWN:
    default:
        return "unknown";
    }
}

int tnve_uplink_carrying(enum tnve_uplink_state s)
{
    return s == TNVE_UPLINK_ACTIVE || s == TNVE_UPLINK_UP;
}

static int link_up(const struct tnve_nl_link *l)
{
    if (!(l->flags & IFF_UP))
        return 0;
    if (l->carrier >= 0)
        return l->carrier;
    return l->operstate < 0 || l->operstate == OPER_UP || l->operstate == OPER_UNKNOWN;
}

enum tnve_uplink_state tnve_uplink_eval(const struct tnve_nl_link *link,
                                        const struct tnve_nl_link *master, int slave_newer)
{
    if (!link)
        return TNVE_UPLINK_ABSENT;
    if (!link_up(link))
        return TNVE_UPLINK_DOWN;
    int bond_slave = !strcmp(link->slave_kind, "bond");
    if (link->master > 0 && master && master->ifindex == link->master &&
        !strcmp(master->kind, "bond")) {
        if (!link_up(master))
            return TNVE_UPLINK_DOWN;
        if ((slave_newer || master->bond_active_slave < 0) && link->bond_slave_state >= 0)
            return link->bond_slave_state == 0 ? TNVE_UPLINK_ACTIVE : TNVE_UPLINK_BACKUP;
        if (master->bond_mode == BOND_MODE_AB || master->bond_active_slave > 0)
            return master->bond_active_slave == link->ifindex ? TNVE_UPLINK_ACTIVE
                                                              : TNVE_UPLINK_BACKUP;
        return TNVE_UPLINK_ACTIVE; /* every slave of such a bond carries traffic */
    }
    if (link->master > 0 && bond_slave) /* the bond itself not seen yet */
        return link->bond_slave_state == 0 ? TNVE_UPLINK_ACTIVE : TNVE_UPLINK_BACKUP;
    return TNVE_UPLINK_UP;
}

int tnve_active_preferred(const struct tnve_active_in *in, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (in[i].carrying)
            return (int)i;
    return -1;
}

unsigned tnve_active_choose(const struct tnve_active_in *in, unsigned n, unsigned current,
                            int override)
{
    if (current >= n)
        current = 0;
    if (override >= 0 && (unsigned) override < n && in[override].up)
        return (unsigned) override;
    int p = tnve_active_preferred(in, n);
    if (p >= 0 && in[p].up)
        return (unsigned)p;
    if (in[current].up || !in[current].lost)
        return current;
    for (unsigned i = 0; i < n; i++)
        if (in[i].up)
            return i;
    return p >= 0 ? (unsigned)p : current;
}

/* ---------------------------------------------------------------- the watcher */

/* RECV_SIZE: a link message with many altnames passes a page (MNL_SOCKET_BUFFER_SIZE);
 * libmnl's advice for dumps is 32 KiB */
enum { MAX_BONDS = 64, RCVBUF = 1 << 20, BATCH = 64, RETRY_MS = 200, RECV_SIZE = 32768 };

struct watched {
    char name[IF_NAMESIZE];
    int present;
    struct tnve_nl_link link;
    uint64_t stamp; /* when its last message was processed (message counter) */
    uint64_t seen;  /* dump generation */
    enum tnve_uplink_state state;
};

struct bond {
    struct tnve_nl_link link;
    uint64_t stamp, seen;
};

struct tnve_uplinks {
    uv_loop_t *loop;
    struct mnl_socket *nl;
    uv_poll_t poll;
    uv_timer_t retry;
    int handles_open;
    tnve_uplinks_cb *cb;
    void *aux;
    unsigned n;
    struct watched w[TNVE_UPLINKS_MAX];
    unsigned n_bonds;
    struct bond bonds[MAX_BONDS];
    uint32_t portid, seq;
    uint32_t dump_seq; /* the dump in progress; 0: none */
    int redump;        /* another dump once this one ends */
    uint64_t gen, stamp;
    uint64_t dumps, overruns, messages, bad;
    struct snv_ratelimit rl;
};

static struct bond *bond_find(struct tnve_uplinks *u, int ifindex)
{
    for (unsigned i = 0; i < u->n_bonds; i++)
        if (u->bonds[i].link.ifindex == ifindex)
            return &u->bonds[i];
    return NULL;
}

static void bond_forget(struct tnve_uplinks *u, struct bond *b)
{
    *b = u->bonds[--u->n_bonds];
}

static void retry_cb(uv_timer_t *t);

static int dump_start(struct tnve_uplinks *u)
{
    if (u->dump_seq) {
        u->redump = 1;
        return 0;
    }
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = tnve_nl_msg_link_dump(buf, sizeof buf);
    if (++u->seq == 0)
        u->seq = 1;
    nlh->nlmsg_seq = u->seq;
    if (mnl_socket_sendto(u->nl, nlh, nlh->nlmsg_len) < 0) {
        int err = -errno;
        snv_log_rl(&u->rl, SNV_LOG_WARN, "uplink", "link dump request failed: %s (retrying)",
                   strerror(-err));
        uv_timer_start(&u->retry, retry_cb, RETRY_MS, 0);
        return err;
    }
    u->dump_seq = u->seq;
    u->redump = 0;
    u->gen++;
    u->dumps++;
    return 0;
}

static void retry_cb(uv_timer_t *t)
{
    dump_start(t->data);
}

/* Re-evaluates every watched uplink; calls back when one changed. */
static void evaluate(struct tnve_uplinks *u)
{
    int changed = 0;
    for (unsigned i = 0; i < u->n; i++) {
        struct watched *w = &u->w[i];
        if (!w->name[0])
            continue;
        enum tnve_uplink_state s;
        if (!w->present) {
            s = TNVE_UPLINK_ABSENT;
        } else {
            const struct bond *b = w->link.master > 0 ? bond_find(u, w->link.master) : NULL;
            s = tnve_uplink_eval(&w->link, b ? &b->link : NULL, !b || w->stamp > b->stamp);
        }
        if (s == w->state)
            continue;
        SNV_INFO("uplink", "uplink state changed uplink=%s state=%s was=%s", w->name,
                 tnve_uplink_state_name(s), tnve_uplink_state_name(w->state));
        w->state = s;
        changed = 1;
    }
    if (changed && u->cb)
        u->cb(u->aux);
}

static void on_link(struct tnve_uplinks *u, const struct nlmsghdr *nlh)
{
    struct tnve_nl_link l;
    int del = nlh->nlmsg_type == RTM_DELLINK;
    if (del) {
        /* only the index matters: what had it is gone */
        struct ifinfomsg ifm;
        if (mnl_nlmsg_get_payload_len(nlh) < sizeof ifm) {
            u->bad++;
            return;
        }
        memcpy(&ifm, mnl_nlmsg_get_payload(nlh), sizeof ifm);
        memset(&l, 0, sizeof l);
        l.ifindex = ifm.ifi_index;
        l.family = ifm.ifi_family;
    } else if (tnve_nl_link_parse(nlh, &l, NULL) < 0) {
        u->bad++;
        return;
    }
    if (l.family != AF_UNSPEC && l.family != AF_PACKET)
        return; /* AF_BRIDGE port notifications: not the link's own state */
    u->stamp++;
    for (unsigned i = 0; i < u->n; i++) {
        struct watched *w = &u->w[i];
        if (!w->name[0])
            continue;
        if (!strcmp(w->name, l.name) && !del) {
            w->present = 1;
            w->link = l;
            w->stamp = u->stamp;
            w->seen = u->gen;
        } else if (w->present && w->link.ifindex == l.ifindex) {
            w->present = 0; /* removed, or renamed away from the watched name */
        }
    }
    struct bond *b = bond_find(u, l.ifindex);
    if (del || strcmp(l.kind, "bond")) {
        if (b)
            bond_forget(u, b);
        return;
    }
    if (!b) {
        if (u->n_bonds == MAX_BONDS) {
            snv_log_rl(&u->rl, SNV_LOG_WARN, "uplink", "too many bonds, %s not followed", l.name);
            return;
        }
        b = &u->bonds[u->n_bonds++];
    }
    b->link = l;
    b->stamp = u->stamp;
    b->seen = u->gen;
}

/* The dump ended: what it did not report is gone. */
static void dump_done(struct tnve_uplinks *u)
{
    u->dump_seq = 0;
    for (unsigned i = 0; i < u->n; i++)
        if (u->w[i].present && u->w[i].seen != u->gen)
            u->w[i].present = 0;
    for (unsigned i = 0; i < u->n_bonds;) {
        if (u->bonds[i].seen != u->gen)
            bond_forget(u, &u->bonds[i]);
        else
            i++;
    }
    if (u->redump)
        dump_start(u);
}

static void on_datagram(struct tnve_uplinks *u, const void *buf, size_t len)
{
    int len_left = (int)len;
    for (const struct nlmsghdr *nlh = buf; mnl_nlmsg_ok(nlh, len_left);
         nlh = mnl_nlmsg_next(nlh, &len_left)) {
        u->messages++;
        int ours = u->dump_seq && nlh->nlmsg_seq == u->dump_seq && nlh->nlmsg_pid == u->portid;
        switch (nlh->nlmsg_type) {
        case NLMSG_DONE:
            if (ours)
                dump_done(u);
            break;
        case NLMSG_ERROR:
            if (ours) {
                snv_log_rl(&u->rl, SNV_LOG_WARN, "uplink", "link dump failed (retrying)");
                u->dump_seq = 0;
                uv_timer_start(&u->retry, retry_cb, RETRY_MS, 0);
            }
            break;
        case RTM_NEWLINK:
        case RTM_DELLINK:
            if (ours && (nlh->nlmsg_flags & NLM_F_DUMP_INTR))
                u->redump = 1;
            on_link(u, nlh);
            break;
        default:
            break;
        }
    }
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
    struct tnve_uplinks *u = p->data;
    (void)events;
    if (status < 0) {
        /* libuv reports the socket's pending error (POLLERR: ENOBUFS after the kernel
         * dropped notifications) as a failure and stops the handle: poll again, and let
         * the receive below take the error (and dump again) */
        int rc = uv_poll_start(&u->poll, UV_READABLE, poll_cb);
        if (rc < 0) {
            snv_log_rl(&u->rl, SNV_LOG_ERR, "uplink",
                       "netlink poll failed, uplinks no longer followed: %s", uv_strerror(rc));
            return;
        }
    }
    char buf[RECV_SIZE];
    for (int i = 0; i < BATCH; i++) {
        ssize_t n = mnl_socket_recvfrom(u->nl, buf, sizeof buf);
        if (n < 0) {
            if (errno == ENOBUFS || errno == ENOSPC) {
                /* notifications were dropped, or one did not fit the buffer (libmnl:
                 * ENOSPC for MSG_TRUNC): what we hold may be stale */
                u->overruns++;
                snv_log_rl(&u->rl, SNV_LOG_WARN, "uplink",
                           "netlink notifications lost (%s): dumping the links again",
                           errno == ENOBUFS ? "ENOBUFS" : "truncated");
                dump_start(u);
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                snv_log_rl(&u->rl, SNV_LOG_ERR, "uplink", "netlink receive failed: %s",
                           strerror(errno));
            break;
        }
        on_datagram(u, buf, (size_t)n);
    }
    evaluate(u);
}

static void closed_cb(uv_handle_t *h)
{
    struct tnve_uplinks *u = h->data;
    if (--u->handles_open > 0)
        return;
    mnl_socket_close(u->nl);
    free(u);
}

int tnve_uplinks_create(uv_loop_t *loop, const char *const *names, unsigned n, tnve_uplinks_cb *cb,
                        void *aux, struct tnve_uplinks **out)
{
    *out = NULL;
    if (n > TNVE_UPLINKS_MAX)
        return -EINVAL;
    struct tnve_uplinks *u = calloc(1, sizeof *u);
    if (!u)
        return -ENOMEM;
    u->loop = loop;
    u->cb = cb;
    u->aux = aux;
    u->n = n;
    u->rl = (struct snv_ratelimit)SNV_RATELIMIT_INIT(5, 20);
    for (unsigned i = 0; i < n; i++)
        snprintf(u->w[i].name, sizeof u->w[i].name, "%s", names[i] ? names[i] : "");
    u->nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (!u->nl) {
        int err = -errno;
        free(u);
        return err;
    }
    int rcvbuf = RCVBUF;
    (void)setsockopt(mnl_socket_get_fd(u->nl), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (mnl_socket_bind(u->nl, RTMGRP_LINK, MNL_SOCKET_AUTOPID) < 0) {
        int err = -errno;
        mnl_socket_close(u->nl);
        free(u);
        return err;
    }
    u->portid = mnl_socket_get_portid(u->nl);
    int rc = uv_poll_init(loop, &u->poll, mnl_socket_get_fd(u->nl));
    if (rc < 0) {
        mnl_socket_close(u->nl);
        free(u);
        return rc;
    }
    uv_timer_init(loop, &u->retry);
    u->poll.data = u->retry.data = u;
    u->handles_open = 2;
    *out = u;
    uv_poll_start(&u->poll, UV_READABLE, poll_cb);
    dump_start(u);
    return 0;
}

void tnve_uplinks_destroy(struct tnve_uplinks *u)
{
    if (!u)
        return;
    uv_poll_stop(&u->poll);
    uv_close((uv_handle_t *)&u->poll, closed_cb);
    uv_close((uv_handle_t *)&u->retry, closed_cb);
}

enum tnve_uplink_state tnve_uplinks_state(const struct tnve_uplinks *u, unsigned i)
{
    return u && i < u->n ? u->w[i].state : TNVE_UPLINK_UNKNOWN;
}

const char *tnve_uplinks_master(const struct tnve_uplinks *u, unsigned i)
{
    if (!u || i >= u->n || !u->w[i].present || u->w[i].link.master <= 0)
        return "";
    for (unsigned k = 0; k < u->n_bonds; k++)
        if (u->bonds[k].link.ifindex == u->w[i].link.master)
            return u->bonds[k].link.name;
    return "";
}

int tnve_uplinks_set_rcvbuf(struct tnve_uplinks *u, int bytes)
{
    if (setsockopt(mnl_socket_get_fd(u->nl), SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes) < 0)
        return -errno;
    return 0;
}

json_t *tnve_uplinks_json(const struct tnve_uplinks *u)
{
    return json_pack("{s:I, s:I, s:I, s:I}", "uplink_dumps", (json_int_t)u->dumps,
                     "uplink_overruns", (json_int_t)u->overruns, "uplink_messages",
                     (json_int_t)u->messages, "uplink_bad_messages", (json_int_t)u->bad);
}
