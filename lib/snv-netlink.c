/* snv-netlink.c: a synchronous rtnetlink channel shared by the daemons' Linux dataplane
 * backends: one NETLINK_ROUTE socket, a request/ack and a dump loop matched by sequence
 * number, the kernel's errors as -errno and its extended-ack text for log lines. */
#include "snv-netlink.h"

#include <ctype.h>
#include <errno.h>
#include <net/if.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

struct snv_nl {
    struct mnl_socket *sock;
    uint32_t portid;
    uint32_t seq;
    char reason[256];
    unsigned char rx[SNV_NL_RX_SIZE];
};

int snv_nl_create(struct snv_nl **out)
{
    *out = NULL;
    struct snv_nl *nl = calloc(1, sizeof *nl);
    if (nl == NULL)
        return -ENOMEM;
    nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (nl->sock == NULL) {
        int err = -errno;
        free(nl);
        return err;
    }
    if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
        int err = -errno;
        mnl_socket_close(nl->sock);
        free(nl);
        return err;
    }
    /* Best effort: older kernels lack these; errors are then plain errno values. */
    int one = 1;
    (void)mnl_socket_setsockopt(nl->sock, NETLINK_EXT_ACK, &one, sizeof one);
    (void)mnl_socket_setsockopt(nl->sock, NETLINK_CAP_ACK, &one, sizeof one);
    /* The kernel answers synchronously; the timeout only keeps a daemon from hanging forever
     * on a lost reply. */
    struct timeval tv = {.tv_sec = 5};
    (void)setsockopt(mnl_socket_get_fd(nl->sock), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    nl->portid = mnl_socket_get_portid(nl->sock);
    nl->seq = 1;
    *out = nl;
    return 0;
}

void snv_nl_destroy(struct snv_nl *nl)
{
    if (nl == NULL)
        return;
    mnl_socket_close(nl->sock);
    free(nl);
}

static int extack_attr_cb(const struct nlattr *attr, void *data)
{
    struct snv_nl *nl = data;
    if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
        mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0) {
        int n = snprintf(nl->reason, sizeof nl->reason, "%s", mnl_attr_get_str(attr));
        (void)n; /* a longer text is cut; it is only shown in a log line */
    }
    return MNL_CB_OK;
}

/* Reads the error code of an NLMSG_ERROR or NLMSG_DONE message and its extended-ack text
 * into nl->reason.  Returns 0 and *error, or -EPROTO for a short message. */
static int parse_status(struct snv_nl *nl, const struct nlmsghdr *h, int *error)
{
    size_t plen = mnl_nlmsg_get_payload_len(h);
    size_t offset;
    if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
        if (plen < sizeof *e)
            return -EPROTO;
        *error = e->error;
        offset = sizeof *e;
        if (!(h->nlmsg_flags & NLM_F_CAPPED)) {
            if (e->msg.nlmsg_len < sizeof(struct nlmsghdr))
                return 0;
            offset += e->msg.nlmsg_len - sizeof(struct nlmsghdr);
        }
    } else {
        int code = 0;
        if (plen >= sizeof code)
            memcpy(&code, mnl_nlmsg_get_payload(h), sizeof code);
        *error = code;
        offset = sizeof code;
    }
    if ((h->nlmsg_flags & NLM_F_ACK_TLVS) && offset < plen)
        (void)mnl_attr_parse(h, (unsigned int)offset, extack_attr_cb, nl);
    return 0;
}

/* The common send/receive loop: `dump` decides whether NLMSG_DONE or the ack ends it. */
static int nl_talk(struct snv_nl *nl, struct nlmsghdr *req, int dump,
                   int (*cb)(const struct nlmsghdr *nlh, void *data), void *data,
                   const char **reason)
{
    if (reason != NULL)
        *reason = NULL;
    nl->reason[0] = '\0';
    if (++nl->seq == 0)
        nl->seq = 1;
    uint32_t seq = nl->seq;
    req->nlmsg_seq = seq;
    req->nlmsg_pid = 0;
    if (!dump)
        req->nlmsg_flags |= NLM_F_ACK;
    if (mnl_socket_sendto(nl->sock, req, req->nlmsg_len) < 0)
        return -errno;

    int result = 0;
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl->sock, nl->rx, sizeof nl->rx);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return -ETIMEDOUT;
            return errno == ENOSPC ? -EMSGSIZE : -errno;
        }
        const struct nlmsghdr *h = (const struct nlmsghdr *)nl->rx;
        int len = (int)n;
        for (; mnl_nlmsg_ok(h, len); h = mnl_nlmsg_next(h, &len)) {
            if (h->nlmsg_seq != seq || h->nlmsg_pid != nl->portid)
                continue; /* left over from an earlier, aborted exchange */
            if (h->nlmsg_type == NLMSG_NOOP)
                continue;
            if (h->nlmsg_type == NLMSG_ERROR || h->nlmsg_type == NLMSG_DONE) {
                int error = 0;
                if (parse_status(nl, h, &error) < 0)
                    return -EPROTO;
                if (reason != NULL && nl->reason[0] != '\0')
                    *reason = nl->reason;
                if (h->nlmsg_type == NLMSG_DONE && !dump)
                    return -EPROTO;
                if (error > 0)
                    return -EPROTO;
                return error != 0 ? error : result;
            }
            if (result == 0 && cb != NULL) {
                int r = cb(h, data);
                if (r < 0) {
                    if (dump)
                        return r; /* the rest of the dump is skipped by sequence number */
                    result = r;   /* keep reading up to the ack */
                }
            }
        }
        if (len != 0)
            return -EPROTO;
    }
}

int snv_nl_request(struct snv_nl *nl, struct nlmsghdr *req,
                    int (*cb)(const struct nlmsghdr *nlh, void *data), void *data,
                    const char **reason)
{
    return nl_talk(nl, req, 0, cb, data, reason);
}

int snv_nl_dump(struct snv_nl *nl, struct nlmsghdr *req,
                 int (*cb)(const struct nlmsghdr *nlh, void *data), void *data, const char **reason)
{
    if (!(req->nlmsg_flags & NLM_F_DUMP))
        return -EINVAL;
    return nl_talk(nl, req, 1, cb, data, reason);
}

const char *snv_nl_reason(const struct snv_nl *nl)
{
    return nl->reason;
}

int snv_ifname_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= IF_NAMESIZE || !strcmp(s, ".") || !strcmp(s, ".."))
        return 0;
    for (const char *c = s; *c; c++)
        if (*c == '/' || *c == ':' || isspace((unsigned char)*c) || !isprint((unsigned char)*c))
            return 0;
    return 1;
}
