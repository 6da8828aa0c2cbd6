/* netlink.h: the agent's rtnetlink messages: builders for the requests its bridge backend
 * sends (pure functions into a caller-provided buffer, unit-testable without a kernel) and
 * tnve_nl_link_parse(), which validates every attribute it reads.  They travel over the
 * shared channel of snv-netlink.h (snv_nl_request / snv_nl_dump).
 */
#ifndef TNVE_NETLINK_H
#define TNVE_NETLINK_H 1

#include <net/if.h>
#include <stddef.h>
#include <stdint.h>

#include <libmnl/libmnl.h>

#include <linux/if_bridge.h>

#include "snv-netlink.h"

/* Smallest buffer a tnve_nl_msg_* builder accepts; requests are built into buffers of
 * MNL_SOCKET_BUFFER_SIZE bytes. */
enum { TNVE_NL_MSG_MIN = 256 };

/* VLAN IDs 1..4094 as bitmaps, plus the PVID. */
struct tnve_nl_vlans {
    uint64_t member[64];
    uint64_t untagged[64];
    uint16_t pvid;  /* 0: none */
    uint16_t count; /* number of member VLANs */
};

/* What tnve_nl_link_parse() extracts from an RTM_NEWLINK message. */
struct tnve_nl_link {
    int ifindex;
    int master; /* IFLA_MASTER, 0 when absent */
    char name[IF_NAMESIZE];
    char kind[16];        /* IFLA_LINKINFO/IFLA_INFO_KIND, "" when absent */
    int vlan_filtering;   /* bridges: IFLA_BR_VLAN_FILTERING 0/1; -1 when not reported */
    int has_af_spec;      /* 1 when the message carried IFLA_AF_SPEC (bridge VLAN data) */
    unsigned char family; /* ifi_family */
    unsigned flags;       /* ifi_flags (IFF_UP, IFF_LOWER_UP, ...) */
    int operstate;        /* IFLA_OPERSTATE (IF_OPER_*); -1 when not reported */
    int carrier;          /* IFLA_CARRIER 0/1; -1 when not reported */
    char slave_kind[16];  /* IFLA_LINKINFO/IFLA_INFO_SLAVE_KIND, "" when absent */
    /* kind "bond": IFLA_BOND_MODE (-1: not reported) and IFLA_BOND_ACTIVE_SLAVE (0: the
     * bond reported none, -1: no bond data at all) */
    int bond_mode;
    int bond_active_slave;
    /* slave_kind "bond": IFLA_BOND_SLAVE_STATE (0 active, 1 backup; -1 not reported) */
    int bond_slave_state;
};

/* Builders.  Each writes one request into `buf` (`size` bytes) and returns its header, or
 * NULL when `size` is too small or an argument is invalid.  None sets NLM_F_ACK (the senders
 * do) nor a sequence number. */

/* RTM_GETLINK (AF_UNSPEC) for one link, by `name` when non-NULL, else by `ifindex`, with
 * IFLA_EXT_MASK `ext_mask` (0: none). */
struct nlmsghdr *tnve_nl_msg_getlink(void *buf, size_t size, const char *name, int ifindex,
                                     uint32_t ext_mask);

/* RTM_GETLINK dump of every link (AF_UNSPEC), as the uplink watcher asks for it. */
struct nlmsghdr *tnve_nl_msg_link_dump(void *buf, size_t size);

/* RTM_GETLINK dump of every bridge and bridge port (AF_BRIDGE) with IFLA_EXT_MASK
 * `ext_mask` (RTEXT_FILTER_BRVLAN or RTEXT_FILTER_BRVLAN_COMPRESSED for the VLAN lists). */
struct nlmsghdr *tnve_nl_msg_bridge_dump(void *buf, size_t size, uint32_t ext_mask);

/* RTM_SETLINK (`type` RTM_SETLINK: add or update) or RTM_DELLINK (remove) of the VLANs
 * `vinfo[0..n)` on bridge port `ifindex`: family AF_BRIDGE, IFLA_AF_SPEC holding one
 * IFLA_BRIDGE_VLAN_INFO per entry.  n must be 1..TNVE_NL_VLANS_PER_MSG and each vid
 * 1..4094. */
enum { TNVE_NL_VLANS_PER_MSG = 256 };
struct nlmsghdr *tnve_nl_msg_bridge_vlan(void *buf, size_t size, uint16_t type, int ifindex,
                                         const struct bridge_vlan_info *vinfo, size_t n);

/* Parses an RTM_NEWLINK message into *link and, when `vlans` is non-NULL and the message has
 * IFLA_AF_SPEC, its bridge VLANs (single entries and RANGE_BEGIN/RANGE_END pairs) into
 * *vlans.  Returns 0, or -EINVAL for a message that is not a well-formed RTM_NEWLINK. */
int tnve_nl_link_parse(const struct nlmsghdr *nlh, struct tnve_nl_link *link,
                       struct tnve_nl_vlans *vlans);

/* VLAN bitmap helpers; vid outside 1..4094 is ignored / reads as absent. */
void tnve_nl_vlans_clear(struct tnve_nl_vlans *v);
void tnve_nl_vlans_add(struct tnve_nl_vlans *v, uint16_t vid, uint16_t flags);
int tnve_nl_vlans_has(const struct tnve_nl_vlans *v, uint16_t vid);
int tnve_nl_vlans_untagged(const struct tnve_nl_vlans *v, uint16_t vid);

#endif
