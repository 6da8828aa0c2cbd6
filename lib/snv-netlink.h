/* snv-netlink.h: a synchronous rtnetlink channel for the Linux dataplane backends.
 *
 * The kernel answers route-netlink requests at once, so a backend sends one request and
 * reads its answer before returning: no event loop involvement, a 5 s receive timeout only
 * against a lost reply.  Message building and parsing stay with each backend. */
#ifndef SNV_NETLINK_H
#define SNV_NETLINK_H 1

#include <libmnl/libmnl.h>

/* Receive buffer size.  One page (MNL_SOCKET_BUFFER_SIZE) is too small for a link dump that
 * reports an uplink carrying a few hundred VLANs: the kernel sizes a dump datagram for the
 * largest link message and drops what does not fit (MSG_TRUNC, seen as -EMSGSIZE).  With
 * RTEXT_FILTER_BRVLAN_COMPRESSED a port's VLAN list takes at most ~22 KiB (the worst case is
 * 1365 two-VLAN ranges of 16 bytes each), so 32 KiB, the kernel's usual ceiling for a dump
 * datagram, always holds one link message. */
enum { SNV_NL_RX_SIZE = 32768 };

struct snv_nl;

/* Opens a NETLINK_ROUTE socket (extended acks on, 5 s receive timeout).  Returns 0 and *out
 * (caller destroys), or -errno. */
int snv_nl_create(struct snv_nl **out);
/* Accepts NULL. */
void snv_nl_destroy(struct snv_nl *nl);

/* Sends `req` with NLM_F_ACK added and a fresh sequence number, then reads until the kernel's
 * ack.  Replies other than the ack (e.g. the RTM_NEWLINK answering a GET) go to `cb` (may be
 * NULL).  Returns 0, the kernel's -errno, or a local -errno (-ETIMEDOUT, -EMSGSIZE for a
 * truncated datagram, -EPROTO for a malformed reply, or cb's negative return).  *reason
 * (may be NULL) gets the kernel's extended-ack text or NULL; it stays valid until the next
 * call on `nl`. */
int snv_nl_request(struct snv_nl *nl, struct nlmsghdr *req,
                   int (*cb)(const struct nlmsghdr *nlh, void *data), void *data,
                   const char **reason);

/* Sends `req` (built with NLM_F_DUMP, else -EINVAL) and runs `cb` on every reply until
 * NLMSG_DONE.  Returns as snv_nl_request(); a negative return of `cb` aborts the dump. */
int snv_nl_dump(struct snv_nl *nl, struct nlmsghdr *req,
                int (*cb)(const struct nlmsghdr *nlh, void *data), void *data,
                const char **reason);

/* The kernel's extended-ack text of the last exchange, "" if it gave none. */
const char *snv_nl_reason(const struct snv_nl *nl);

/* 1 when `s` can name a Linux network interface: 1..15 bytes (IF_NAMESIZE - 1), printable,
 * none of '/', ':' or blanks, not "." or "..".  The kernel refuses the others (dev_valid_name);
 * configuration checks this so that a bad name stops the daemon at load time with its line,
 * not at the first netlink or socket call. */
int snv_ifname_valid(const char *s);

#endif
