/* test-nnve-backend-linux.c: Check suite for nnve-daemon's `linux` backend without a kernel.
 *
 * Every request the backend sends is built into a buffer and read back with libmnl (type,
 * flags, family, header fields, each attribute and its length, nesting); the parsers get
 * hand-built kernel replies, well-formed, ranged and malformed.  The configuration checks of
 * create() that fail before any netlink traffic are covered too.  The kernel paths run
 * inside User-Mode Linux (tests/integration/test-nnve-backend-linux.sh).
 */
#include "../../nnve-daemon/backend-linux.h"
#include "snv-log.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if_bridge.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>

#define BUFSZ 8192
#define MAXT 64

static unsigned char buf[BUFSZ];
static const uint8_t mac1[6] = {0x02, 0, 0, 0, 0, 0x01};
static const uint8_t zero6[6];

/* Every attribute of one nesting level, by type; a type seen twice fails the test. */
struct attrs {
    const struct nlattr *tb[MAXT];
    int count;
};

static int collect_cb(const struct nlattr *attr, void *data)
{
    struct attrs *a = data;
    unsigned type = mnl_attr_get_type(attr);
    ck_assert_uint_lt(type, MAXT);
    ck_assert_ptr_null(a->tb[type]);
    a->tb[type] = attr;
    a->count++;
    return MNL_CB_OK;
}

static void top_attrs(const struct nlmsghdr *nlh, size_t hdr, struct attrs *a)
{
    memset(a, 0, sizeof *a);
    ck_assert_int_ge(mnl_attr_parse(nlh, (unsigned)hdr, collect_cb, a), 0);
}

static void nested_attrs(const struct nlattr *nest, struct attrs *a)
{
    memset(a, 0, sizeof *a);
    ck_assert_ptr_nonnull(nest);
    ck_assert_int_ge(mnl_attr_parse_nested(nest, collect_cb, a), 0);
}

/* The message is whole: its length covers exactly the header and the attributes. */
static void check_whole(const struct nlmsghdr *nlh, size_t hdr)
{
    int len = (int)nlh->nlmsg_len;
    ck_assert(mnl_nlmsg_ok(nlh, len));
    ck_assert_uint_ge(mnl_nlmsg_get_payload_len(nlh), hdr);
    ck_assert_uint_eq(nlh->nlmsg_seq, 0);
    ck_assert(!(nlh->nlmsg_flags & NLM_F_ACK));
    ck_assert(nlh->nlmsg_flags & NLM_F_REQUEST);
}

/* ---- VLAN membership and tunnel map ---- */

START_TEST(vlan_with_tunnel)
{
    struct nlmsghdr *nlh = nnve_linux_msg_vlan(buf, sizeof buf, RTM_SETLINK, 7, 100, 0, 5000);
    ck_assert_ptr_nonnull(nlh);
    check_whole(nlh, sizeof(struct ifinfomsg));
    ck_assert_uint_eq(nlh->nlmsg_type, RTM_SETLINK);
    ck_assert_uint_eq(nlh->nlmsg_flags, NLM_F_REQUEST);
    const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
    ck_assert_uint_eq(ifm->ifi_family, AF_BRIDGE);
    ck_assert_int_eq(ifm->ifi_index, 7);
    struct attrs top, spec, tun;
    top_attrs(nlh, sizeof *ifm, &top);
    ck_assert_int_eq(top.count, 1);
    nested_attrs(top.tb[IFLA_AF_SPEC], &spec);
    ck_assert_int_eq(spec.count, 2);
    const struct nlattr *vi_attr = spec.tb[IFLA_BRIDGE_VLAN_INFO];
    ck_assert_ptr_nonnull(vi_attr);
    ck_assert_uint_eq(mnl_attr_get_payload_len(vi_attr), sizeof(struct bridge_vlan_info));
    struct bridge_vlan_info vi;
    memcpy(&vi, mnl_attr_get_payload(vi_attr), sizeof vi);
    ck_assert_uint_eq(vi.vid, 100);
    ck_assert_uint_eq(vi.flags, 0);
    /* the membership comes first: the kernel maps a tunnel only onto an existing VLAN */
    ck_assert((const char *)vi_attr < (const char *)spec.tb[IFLA_BRIDGE_VLAN_TUNNEL_INFO]);
    nested_attrs(spec.tb[IFLA_BRIDGE_VLAN_TUNNEL_INFO], &tun);
    ck_assert_int_eq(tun.count, 2);
    ck_assert_int_eq(mnl_attr_validate(tun.tb[IFLA_BRIDGE_VLAN_TUNNEL_ID], MNL_TYPE_U32), 0);
    ck_assert_uint_eq(mnl_attr_get_u32(tun.tb[IFLA_BRIDGE_VLAN_TUNNEL_ID]), 5000);
    ck_assert_int_eq(mnl_attr_validate(tun.tb[IFLA_BRIDGE_VLAN_TUNNEL_VID], MNL_TYPE_U16), 0);
    ck_assert_uint_eq(mnl_attr_get_u16(tun.tb[IFLA_BRIDGE_VLAN_TUNNEL_VID]), 100);
}
END_TEST

START_TEST(vlan_plain_and_flags)
{
    struct nlmsghdr *nlh =
        nnve_linux_msg_vlan(buf, sizeof buf, RTM_SETLINK, 3, 4094,
                            BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED, 0);
    ck_assert_ptr_nonnull(nlh);
    struct attrs top, spec;
    top_attrs(nlh, sizeof(struct ifinfomsg), &top);
    nested_attrs(top.tb[IFLA_AF_SPEC], &spec);
    ck_assert_int_eq(spec.count, 1);
    ck_assert_ptr_null(spec.tb[IFLA_BRIDGE_VLAN_TUNNEL_INFO]);
    struct bridge_vlan_info vi;
    memcpy(&vi, mnl_attr_get_payload(spec.tb[IFLA_BRIDGE_VLAN_INFO]), sizeof vi);
    ck_assert_uint_eq(vi.vid, 4094);
    ck_assert_uint_eq(vi.flags, BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED);

    nlh = nnve_linux_msg_vlan(buf, sizeof buf, RTM_DELLINK, 3, 1, 0, 0);
    ck_assert_ptr_nonnull(nlh);
    ck_assert_uint_eq(nlh->nlmsg_type, RTM_DELLINK);
}
END_TEST

START_TEST(vlan_invalid)
{
    ck_assert_ptr_null(nnve_linux_msg_vlan(buf, sizeof buf, RTM_SETLINK, 3, 0, 0, 0));
    ck_assert_ptr_null(nnve_linux_msg_vlan(buf, sizeof buf, RTM_SETLINK, 3, 4095, 0, 0));
    ck_assert_ptr_null(nnve_linux_msg_vlan(buf, sizeof buf, RTM_SETLINK, 3, 10, 0, 0x1000000));
    ck_assert_ptr_null(nnve_linux_msg_vlan(buf, sizeof buf, RTM_SETLINK, 0, 10, 0, 0));
    ck_assert_ptr_null(nnve_linux_msg_vlan(buf, sizeof buf, RTM_NEWLINK, 3, 10, 0, 0));
    ck_assert_ptr_null(nnve_linux_msg_vlan(buf, NNVE_LINUX_MSG_MIN - 1, RTM_SETLINK, 3, 10, 0, 0));
    ck_assert_ptr_null(nnve_linux_msg_vlan(NULL, sizeof buf, RTM_SETLINK, 3, 10, 0, 0));
}
END_TEST

/* ---- static FDB entries, flood entries, neighbours ---- */

START_TEST(fdb_static)
{
    struct nlmsghdr *nlh = nnve_linux_msg_fdb(buf, sizeof buf, RTM_NEWNEIGH, 9, mac1, 100, 1);
    ck_assert_ptr_nonnull(nlh);
    check_whole(nlh, sizeof(struct ndmsg));
    ck_assert_uint_eq(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE);
    const struct ndmsg *ndm = mnl_nlmsg_get_payload(nlh);
    ck_assert_uint_eq(ndm->ndm_family, AF_BRIDGE);
    ck_assert_int_eq(ndm->ndm_ifindex, 9);
    ck_assert_uint_eq(ndm->ndm_state, NUD_NOARP); /* "static": not local, passes a lock */
    /* sticky: learning the MAC on another port (VXLAN) must not move the entry */
    ck_assert_uint_eq(ndm->ndm_flags, NTF_MASTER | NTF_STICKY);
    struct attrs a;
    top_attrs(nlh, sizeof *ndm, &a);
    ck_assert_int_eq(a.count, 2);
    ck_assert_uint_eq(mnl_attr_get_payload_len(a.tb[NDA_LLADDR]), 6);
    ck_assert_mem_eq(mnl_attr_get_payload(a.tb[NDA_LLADDR]), mac1, 6);
    ck_assert_int_eq(mnl_attr_validate(a.tb[NDA_VLAN], MNL_TYPE_U16), 0);
    ck_assert_uint_eq(mnl_attr_get_u16(a.tb[NDA_VLAN]), 100);

    nlh = nnve_linux_msg_fdb(buf, sizeof buf, RTM_DELNEIGH, 9, mac1, 100, 1);
    ck_assert_ptr_nonnull(nlh);
    ck_assert_uint_eq(nlh->nlmsg_type, RTM_DELNEIGH);
    ck_assert_uint_eq(nlh->nlmsg_flags, NLM_F_REQUEST);
    ck_assert_uint_eq(((const struct ndmsg *)mnl_nlmsg_get_payload(nlh))->ndm_flags, NTF_MASTER);

    /* not sticky (remote_vteps = evpn: zebra would advertise a sticky MAC, which cannot move) */
    nlh = nnve_linux_msg_fdb(buf, sizeof buf, RTM_NEWNEIGH, 9, mac1, 100, 0);
    ck_assert_ptr_nonnull(nlh);
    ck_assert_uint_eq(((const struct ndmsg *)mnl_nlmsg_get_payload(nlh))->ndm_flags, NTF_MASTER);

    ck_assert_ptr_null(nnve_linux_msg_fdb(buf, sizeof buf, RTM_NEWNEIGH, 9, mac1, 0, 0));
    ck_assert_ptr_null(nnve_linux_msg_fdb(buf, sizeof buf, RTM_NEWNEIGH, 9, NULL, 10, 0));
    ck_assert_ptr_null(nnve_linux_msg_fdb(buf, sizeof buf, RTM_NEWLINK, 9, mac1, 10, 0));
}
END_TEST

START_TEST(flood_entries)
{
    uint8_t v4[4] = {198, 51, 100, 2};
    struct nlmsghdr *nlh =
        nnve_linux_msg_flood(buf, sizeof buf, RTM_NEWNEIGH, 4, AF_INET, v4, 5000);
    ck_assert_ptr_nonnull(nlh);
    check_whole(nlh, sizeof(struct ndmsg));
    ck_assert_uint_eq(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND);
    const struct ndmsg *ndm = mnl_nlmsg_get_payload(nlh);
    ck_assert_uint_eq(ndm->ndm_family, AF_BRIDGE);
    ck_assert_uint_eq(ndm->ndm_flags, NTF_SELF);
    ck_assert_uint_eq(ndm->ndm_state, NUD_PERMANENT | NUD_NOARP);
    struct attrs a;
    top_attrs(nlh, sizeof *ndm, &a);
    ck_assert_int_eq(a.count, 3);
    ck_assert_mem_eq(mnl_attr_get_payload(a.tb[NDA_LLADDR]), zero6, 6);
    ck_assert_uint_eq(mnl_attr_get_payload_len(a.tb[NDA_DST]), 4);
    ck_assert_mem_eq(mnl_attr_get_payload(a.tb[NDA_DST]), v4, 4);
    ck_assert_uint_eq(mnl_attr_get_u32(a.tb[NDA_SRC_VNI]), 5000);

    uint8_t v6[16];
    ck_assert_int_eq(inet_pton(AF_INET6, "2001:db8::2", v6), 1);
    nlh = nnve_linux_msg_flood(buf, sizeof buf, RTM_DELNEIGH, 4, AF_INET6, v6, 0);
    ck_assert_ptr_nonnull(nlh);
    ck_assert_uint_eq(nlh->nlmsg_flags, NLM_F_REQUEST);
    top_attrs(nlh, sizeof *ndm, &a);
    ck_assert_int_eq(a.count, 2); /* a per-VNI device: no NDA_SRC_VNI */
    ck_assert_uint_eq(mnl_attr_get_payload_len(a.tb[NDA_DST]), 16);
    ck_assert_mem_eq(mnl_attr_get_payload(a.tb[NDA_DST]), v6, 16);

    ck_assert_ptr_null(nnve_linux_msg_flood(buf, sizeof buf, RTM_NEWNEIGH, 4, AF_UNIX, v4, 1));
    ck_assert_ptr_null(nnve_linux_msg_flood(buf, sizeof buf, RTM_NEWNEIGH, 4, AF_INET, NULL, 1));
    ck_assert_ptr_null(
        nnve_linux_msg_flood(buf, sizeof buf, RTM_NEWNEIGH, 4, AF_INET, v4, 0x1000000));
}
END_TEST

START_TEST(neighbour)
{
    uint8_t ip[4] = {192, 0, 2, 1};
    struct nlmsghdr *nlh =
        nnve_linux_msg_neigh(buf, sizeof buf, RTM_NEWNEIGH, 12, AF_INET, ip, mac1);
    ck_assert_ptr_nonnull(nlh);
    check_whole(nlh, sizeof(struct ndmsg));
    ck_assert_uint_eq(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE);
    const struct ndmsg *ndm = mnl_nlmsg_get_payload(nlh);
    ck_assert_uint_eq(ndm->ndm_family, AF_INET);
    ck_assert_int_eq(ndm->ndm_ifindex, 12);
    ck_assert_uint_eq(ndm->ndm_state, NUD_NOARP);
    ck_assert_uint_eq(ndm->ndm_flags, 0);
    struct attrs a;
    top_attrs(nlh, sizeof *ndm, &a);
    ck_assert_int_eq(a.count, 3);
    ck_assert_mem_eq(mnl_attr_get_payload(a.tb[NDA_DST]), ip, 4);
    ck_assert_mem_eq(mnl_attr_get_payload(a.tb[NDA_LLADDR]), mac1, 6);
    /* the entries are marked as ours */
    ck_assert_uint_eq(mnl_attr_get_u8(a.tb[NDA_PROTOCOL]), NNVE_LINUX_NEIGH_PROTO);
    nlh = nnve_linux_msg_neigh(buf, sizeof buf, RTM_DELNEIGH, 12, AF_INET, ip, mac1);
    ck_assert_ptr_nonnull(nlh);
    top_attrs(nlh, sizeof *ndm, &a);
    ck_assert_int_eq(a.count, 2);
    ck_assert_ptr_null(a.tb[NDA_PROTOCOL]);
    ck_assert_ptr_null(
        nnve_linux_msg_neigh(buf, sizeof buf, RTM_NEWNEIGH, 12, AF_BRIDGE, ip, mac1));
    ck_assert_ptr_null(nnve_linux_msg_neigh(buf, sizeof buf, RTM_NEWNEIGH, 0, AF_INET, ip, mac1));
}
END_TEST

/* ---- port lock and VXLAN device ---- */

/* A RTM_SETLINK of bridge port `ifindex` with only IFLA_PROTINFO: its attributes in *pi. */
static void check_port_flags(const struct nlmsghdr *nlh, int ifindex, struct attrs *pi)
{
    ck_assert_ptr_nonnull(nlh);
    check_whole(nlh, sizeof(struct ifinfomsg));
    ck_assert_uint_eq(nlh->nlmsg_type, RTM_SETLINK);
    const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
    ck_assert_uint_eq(ifm->ifi_family, AF_BRIDGE);
    ck_assert_int_eq(ifm->ifi_index, ifindex);
    struct attrs top;
    top_attrs(nlh, sizeof *ifm, &top);
    ck_assert_int_eq(top.count, 1);
    const struct nlattr *p = top.tb[IFLA_PROTINFO];
    ck_assert_ptr_nonnull(p);
    /* without NLA_F_NESTED the bridge reads IFLA_PROTINFO as a port state byte */
    ck_assert(p->nla_type & NLA_F_NESTED);
    nested_attrs(p, pi);
}

START_TEST(port_locked)
{
    for (int lock = 0; lock <= 1; lock++) {
        struct attrs pi;
        check_port_flags(nnve_linux_msg_port_locked(buf, sizeof buf, 5, lock), 5, &pi);
        ck_assert_int_eq(pi.count, 1);
        ck_assert_int_eq(mnl_attr_validate(pi.tb[IFLA_BRPORT_LOCKED], MNL_TYPE_U8), 0);
        ck_assert_uint_eq(mnl_attr_get_u8(pi.tb[IFLA_BRPORT_LOCKED]), (unsigned)lock);
    }
    ck_assert_ptr_null(nnve_linux_msg_port_locked(buf, sizeof buf, 0, 1));
}
END_TEST

START_TEST(port_evpn)
{
    struct attrs pi;
    check_port_flags(nnve_linux_msg_port_evpn(buf, sizeof buf, 7, 0, 1), 7, &pi);
    ck_assert_int_eq(pi.count, 2);
    ck_assert_int_eq(mnl_attr_validate(pi.tb[IFLA_BRPORT_LEARNING], MNL_TYPE_U8), 0);
    ck_assert_uint_eq(mnl_attr_get_u8(pi.tb[IFLA_BRPORT_LEARNING]), 0);
    ck_assert_int_eq(mnl_attr_validate(pi.tb[IFLA_BRPORT_NEIGH_SUPPRESS], MNL_TYPE_U8), 0);
    ck_assert_uint_eq(mnl_attr_get_u8(pi.tb[IFLA_BRPORT_NEIGH_SUPPRESS]), 1);
    ck_assert_ptr_null(nnve_linux_msg_port_evpn(buf, sizeof buf, 0, 0, 1));
    ck_assert_ptr_null(nnve_linux_msg_port_evpn(buf, NNVE_LINUX_MSG_MIN - 1, 7, 0, 1));
}
END_TEST

START_TEST(vxlan_new)
{
    uint8_t local[4] = {198, 51, 100, 1};
    struct nlmsghdr *nlh =
        nnve_linux_msg_vxlan_new(buf, sizeof buf, "vx-6000", 6000, AF_INET, local, 4789, 2);
    ck_assert_ptr_nonnull(nlh);
    check_whole(nlh, sizeof(struct ifinfomsg));
    ck_assert_uint_eq(nlh->nlmsg_type, RTM_NEWLINK);
    ck_assert_uint_eq(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL);
    const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
    ck_assert_uint_eq(ifm->ifi_flags & IFF_UP, IFF_UP);
    ck_assert_uint_eq(ifm->ifi_change & IFF_UP, IFF_UP);
    struct attrs top, li, data;
    top_attrs(nlh, sizeof *ifm, &top);
    ck_assert_int_eq(mnl_attr_validate(top.tb[IFLA_IFNAME], MNL_TYPE_NUL_STRING), 0);
    ck_assert_str_eq(mnl_attr_get_str(top.tb[IFLA_IFNAME]), "vx-6000");
    ck_assert_uint_eq(mnl_attr_get_u32(top.tb[IFLA_MASTER]), 2);
    nested_attrs(top.tb[IFLA_LINKINFO], &li);
    ck_assert_str_eq(mnl_attr_get_str(li.tb[IFLA_INFO_KIND]), "vxlan");
    nested_attrs(li.tb[IFLA_INFO_DATA], &data);
    ck_assert_uint_eq(mnl_attr_get_u32(data.tb[IFLA_VXLAN_ID]), 6000);
    ck_assert_mem_eq(mnl_attr_get_payload(data.tb[IFLA_VXLAN_LOCAL]), local, 4);
    ck_assert_ptr_null(data.tb[IFLA_VXLAN_LOCAL6]);
    ck_assert_uint_eq(mnl_attr_get_u16(data.tb[IFLA_VXLAN_PORT]), htons(4789));
    ck_assert_uint_eq(mnl_attr_get_u8(data.tb[IFLA_VXLAN_LEARNING]), 0);

    uint8_t l6[16];
    ck_assert_int_eq(inet_pton(AF_INET6, "2001:db8::1", l6), 1);
    nlh = nnve_linux_msg_vxlan_new(buf, sizeof buf, "vx-1", 1, AF_INET6, l6, 8472, 2);
    ck_assert_ptr_nonnull(nlh);
    top_attrs(nlh, sizeof *ifm, &top);
    nested_attrs(top.tb[IFLA_LINKINFO], &li);
    nested_attrs(li.tb[IFLA_INFO_DATA], &data);
    ck_assert_mem_eq(mnl_attr_get_payload(data.tb[IFLA_VXLAN_LOCAL6]), l6, 16);
    ck_assert_ptr_null(data.tb[IFLA_VXLAN_LOCAL]);
    ck_assert_uint_eq(mnl_attr_get_u16(data.tb[IFLA_VXLAN_PORT]), htons(8472));

    nlh = nnve_linux_msg_vxlan_new(buf, sizeof buf, "vx-2", 2, 0, NULL, 4789, 2);
    ck_assert_ptr_nonnull(nlh);

    ck_assert_ptr_null(
        nnve_linux_msg_vxlan_new(buf, sizeof buf, "0123456789abcdef", 1, 0, NULL, 4789, 2));
    ck_assert_ptr_null(nnve_linux_msg_vxlan_new(buf, sizeof buf, "vx-0", 0, 0, NULL, 4789, 2));
    ck_assert_ptr_null(nnve_linux_msg_vxlan_new(buf, sizeof buf, "vx-1", 1, 0, NULL, 4789, 0));
    ck_assert_ptr_null(
        nnve_linux_msg_vxlan_new(buf, sizeof buf, "vx-1", 1, AF_INET, NULL, 4789, 2));
}
END_TEST

/* ---- parsers of kernel replies ---- */

static struct nlmsghdr *fake_neigh(unsigned char family, int ifindex, uint16_t state, uint8_t flags)
{
    memset(buf, 0, sizeof buf);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWNEIGH;
    struct ndmsg *ndm = mnl_nlmsg_put_extra_header(nlh, sizeof *ndm);
    ndm->ndm_family = family;
    ndm->ndm_ifindex = ifindex;
    ndm->ndm_state = state;
    ndm->ndm_flags = flags;
    return nlh;
}

START_TEST(fdb_parse)
{
    struct nlmsghdr *nlh = fake_neigh(AF_BRIDGE, 9, NUD_NOARP, 0);
    mnl_attr_put(nlh, NDA_LLADDR, 6, mac1);
    mnl_attr_put_u16(nlh, NDA_VLAN, 100);
    mnl_attr_put_u32(nlh, NDA_MASTER, 2);
    struct nnve_linux_fdb f;
    ck_assert_int_eq(nnve_linux_fdb_parse(nlh, &f), 0);
    ck_assert_int_eq(f.ifindex, 9);
    ck_assert_int_eq(f.master, 2);
    ck_assert_uint_eq(f.vid, 100);
    ck_assert_uint_eq(f.state, NUD_NOARP);
    ck_assert_mem_eq(f.mac, mac1, 6);
    ck_assert_int_eq(f.dst_family, 0);
    ck_assert_uint_eq(f.updated, UINT32_MAX); /* no cache info */
    struct nda_cacheinfo ci = {.ndm_used = 5, .ndm_updated = 42};
    mnl_attr_put(nlh, NDA_CACHEINFO, sizeof ci, &ci);
    ck_assert_int_eq(nnve_linux_fdb_parse(nlh, &f), 0);
    ck_assert_uint_eq(f.updated, 42);

    /* a VXLAN flood entry, DST before LLADDR */
    uint8_t v4[4] = {198, 51, 100, 2};
    nlh = fake_neigh(AF_BRIDGE, 4, NUD_PERMANENT | NUD_NOARP, NTF_SELF);
    mnl_attr_put(nlh, NDA_DST, 4, v4);
    mnl_attr_put(nlh, NDA_LLADDR, 6, zero6);
    mnl_attr_put_u32(nlh, NDA_SRC_VNI, 5000);
    ck_assert_int_eq(nnve_linux_fdb_parse(nlh, &f), 0);
    ck_assert_int_eq(f.dst_family, AF_INET);
    ck_assert_mem_eq(f.dst, v4, 4);
    ck_assert_uint_eq(f.src_vni, 5000);
    ck_assert_uint_eq(f.flags, NTF_SELF);
    ck_assert_mem_eq(f.mac, zero6, 6);
}
END_TEST

START_TEST(fdb_parse_malformed)
{
    struct nnve_linux_fdb f;
    /* no MAC */
    struct nlmsghdr *nlh = fake_neigh(AF_BRIDGE, 9, NUD_NOARP, 0);
    mnl_attr_put_u16(nlh, NDA_VLAN, 100);
    ck_assert_int_eq(nnve_linux_fdb_parse(nlh, &f), -EINVAL);
    /* a MAC of the wrong length */
    nlh = fake_neigh(AF_BRIDGE, 9, NUD_NOARP, 0);
    mnl_attr_put(nlh, NDA_LLADDR, 4, mac1);
    ck_assert_int_eq(nnve_linux_fdb_parse(nlh, &f), -EINVAL);
    /* another family */
    nlh = fake_neigh(AF_INET, 9, NUD_NOARP, 0);
    mnl_attr_put(nlh, NDA_LLADDR, 6, mac1);
    ck_assert_int_eq(nnve_linux_fdb_parse(nlh, &f), -EINVAL);
    /* a short VLAN attribute is ignored, not read past */
    nlh = fake_neigh(AF_BRIDGE, 9, NUD_NOARP, 0);
    mnl_attr_put(nlh, NDA_LLADDR, 6, mac1);
    mnl_attr_put(nlh, NDA_VLAN, 1, "x");
    ck_assert_int_eq(nnve_linux_fdb_parse(nlh, &f), 0);
    ck_assert_uint_eq(f.vid, 0);
    /* another message type; a truncated header */
    nlh = fake_neigh(AF_BRIDGE, 9, NUD_NOARP, 0);
    mnl_attr_put(nlh, NDA_LLADDR, 6, mac1);
    nlh->nlmsg_type = RTM_NEWLINK;
    ck_assert_int_eq(nnve_linux_fdb_parse(nlh, &f), -EINVAL);
    nlh = fake_neigh(AF_BRIDGE, 9, NUD_NOARP, 0);
    nlh->nlmsg_len = MNL_NLMSG_HDRLEN + 4;
    ck_assert_int_eq(nnve_linux_fdb_parse(nlh, &f), -EINVAL);
}
END_TEST

static struct nlmsghdr *fake_port(int ifindex, const char *name, int master)
{
    memset(buf, 0, sizeof buf);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWLINK;
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
    ifm->ifi_family = AF_BRIDGE;
    ifm->ifi_index = ifindex;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    mnl_attr_put_u32(nlh, IFLA_MASTER, (uint32_t)master);
    return nlh;
}

static void put_vlan(struct nlmsghdr *nlh, uint16_t vid, uint16_t flags)
{
    struct bridge_vlan_info vi = {.flags = flags, .vid = vid};
    mnl_attr_put(nlh, IFLA_BRIDGE_VLAN_INFO, sizeof vi, &vi);
}

static void put_tunnel(struct nlmsghdr *nlh, uint16_t vid, uint32_t vni, uint16_t flags)
{
    struct nlattr *t = mnl_attr_nest_start(nlh, IFLA_BRIDGE_VLAN_TUNNEL_INFO);
    mnl_attr_put_u32(nlh, IFLA_BRIDGE_VLAN_TUNNEL_ID, vni);
    mnl_attr_put_u16(nlh, IFLA_BRIDGE_VLAN_TUNNEL_VID, vid);
    if (flags)
        mnl_attr_put_u16(nlh, IFLA_BRIDGE_VLAN_TUNNEL_FLAGS, flags);
    mnl_attr_nest_end(nlh, t);
}

START_TEST(port_parse)
{
    static uint32_t vni_of_vid[4096];
    struct nlmsghdr *nlh = fake_port(4, "vxlan0", 2);
    struct nlattr *pi = mnl_attr_nest_start(nlh, IFLA_PROTINFO);
    mnl_attr_put_u8(nlh, IFLA_BRPORT_LEARNING, 0);
    mnl_attr_put_u8(nlh, IFLA_BRPORT_LOCKED, 1);
    mnl_attr_nest_end(nlh, pi);
    struct nlattr *spec = mnl_attr_nest_start(nlh, IFLA_AF_SPEC);
    put_vlan(nlh, 1, BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED);
    put_vlan(nlh, 100, 0);
    put_vlan(nlh, 200, BRIDGE_VLAN_INFO_RANGE_BEGIN);
    put_vlan(nlh, 203, BRIDGE_VLAN_INFO_RANGE_END);
    put_tunnel(nlh, 100, 5000, 0);
    put_tunnel(nlh, 200, 6000, BRIDGE_VLAN_INFO_RANGE_BEGIN);
    put_tunnel(nlh, 203, 6003, BRIDGE_VLAN_INFO_RANGE_END);
    mnl_attr_nest_end(nlh, spec);

    struct nnve_linux_port p;
    memset(&p, 0, sizeof p);
    p.vni_of_vid = vni_of_vid;
    ck_assert_int_eq(nnve_linux_port_parse(nlh, &p), 0);
    ck_assert_ptr_eq(p.vni_of_vid, vni_of_vid);
    ck_assert_int_eq(p.ifindex, 4);
    ck_assert_int_eq(p.master, 2);
    ck_assert_str_eq(p.name, "vxlan0");
    ck_assert_int_eq(p.locked, 1);
    ck_assert_uint_eq(p.pvid, 1);
    const uint16_t members[] = {1, 100, 200, 201, 202, 203};
    unsigned count = 0;
    for (unsigned v = 0; v < 4096; v++)
        count += (p.member[v / 64] >> (v % 64)) & 1;
    ck_assert_uint_eq(count, sizeof members / sizeof members[0]);
    for (size_t i = 0; i < sizeof members / sizeof members[0]; i++)
        ck_assert((p.member[members[i] / 64] >> (members[i] % 64)) & 1);
    ck_assert((p.untagged[0] >> 1) & 1);
    ck_assert(!((p.untagged[100 / 64] >> (100 % 64)) & 1));
    ck_assert_uint_eq(vni_of_vid[100], 5000);
    for (unsigned v = 200; v <= 203; v++)
        ck_assert_uint_eq(vni_of_vid[v], 6000 + (v - 200));
    ck_assert_uint_eq(vni_of_vid[204], 0);

    /* without a table the tunnel info is skipped; without PROTINFO the lock is unknown */
    nlh = fake_port(5, "swp1", 2);
    spec = mnl_attr_nest_start(nlh, IFLA_AF_SPEC);
    put_vlan(nlh, 10, 0);
    put_tunnel(nlh, 10, 7000, 0);
    mnl_attr_nest_end(nlh, spec);
    memset(&p, 0, sizeof p);
    ck_assert_int_eq(nnve_linux_port_parse(nlh, &p), 0);
    ck_assert_int_eq(p.locked, -1);
    ck_assert_uint_eq(p.pvid, 0);
    ck_assert((p.member[0] >> 10) & 1);
}
END_TEST

START_TEST(port_parse_malformed)
{
    struct nnve_linux_port p;
    static uint32_t table[4096];
    /* a VLAN info of the wrong size */
    struct nlmsghdr *nlh = fake_port(5, "swp1", 2);
    struct nlattr *spec = mnl_attr_nest_start(nlh, IFLA_AF_SPEC);
    mnl_attr_put(nlh, IFLA_BRIDGE_VLAN_INFO, 2, "xx");
    mnl_attr_nest_end(nlh, spec);
    memset(&p, 0, sizeof p);
    ck_assert_int_eq(nnve_linux_port_parse(nlh, &p), -EINVAL);
    /* a tunnel info without its VID, and one with VID 4095 */
    for (int k = 0; k < 2; k++) {
        nlh = fake_port(5, "vxlan0", 2);
        spec = mnl_attr_nest_start(nlh, IFLA_AF_SPEC);
        struct nlattr *t = mnl_attr_nest_start(nlh, IFLA_BRIDGE_VLAN_TUNNEL_INFO);
        mnl_attr_put_u32(nlh, IFLA_BRIDGE_VLAN_TUNNEL_ID, 5000);
        if (k == 1)
            mnl_attr_put_u16(nlh, IFLA_BRIDGE_VLAN_TUNNEL_VID, 4095);
        mnl_attr_nest_end(nlh, t);
        mnl_attr_nest_end(nlh, spec);
        memset(&p, 0, sizeof p);
        p.vni_of_vid = table;
        ck_assert_int_eq(nnve_linux_port_parse(nlh, &p), -EINVAL);
    }
    /* a name that does not fit */
    nlh = fake_port(5, "0123456789abcdefgh", 2);
    memset(&p, 0, sizeof p);
    ck_assert_int_eq(nnve_linux_port_parse(nlh, &p), -EINVAL);
    /* another message type */
    nlh = fake_port(5, "swp1", 2);
    nlh->nlmsg_type = RTM_NEWNEIGH;
    ck_assert_int_eq(nnve_linux_port_parse(nlh, &p), -EINVAL);
}
END_TEST

/* ---- configuration ---- */

START_TEST(config_defaults)
{
    struct nnve_linux_config c;
    nnve_linux_config_init(&c);
    ck_assert_str_eq(c.bridge, "br0");
    ck_assert_str_eq(c.vxlan_device, "vxlan0");
    ck_assert_int_eq(c.vxlan_mode, NNVE_LINUX_VXLAN_EXTERNAL);
    ck_assert_uint_eq(c.vxlan_port, 4789);
    ck_assert_str_eq(c.remote_vteps, "none");
    ck_assert_int_eq(c.anti_spoofing, NNVE_LINUX_ANTI_SPOOFING_ON);
    ck_assert_ptr_null(c.local_ip);
    enum nnve_linux_vxlan_mode m;
    ck_assert_int_eq(nnve_linux_vxlan_mode_parse("per-vni", &m), 0);
    ck_assert_int_eq(m, NNVE_LINUX_VXLAN_PER_VNI);
    ck_assert_int_eq(nnve_linux_vxlan_mode_parse("external", &m), 0);
    ck_assert_int_eq(m, NNVE_LINUX_VXLAN_EXTERNAL);
    ck_assert_int_eq(nnve_linux_vxlan_mode_parse("pervni", &m), -EINVAL);
    ck_assert_int_eq(nnve_linux_vxlan_mode_parse(NULL, &m), -EINVAL);
}
END_TEST

START_TEST(create_rejects_bad_config)
{
    struct nnve_linux_config c;
    struct nnve_backend *b = (struct nnve_backend *)1;
    nnve_linux_config_init(&c);
    c.remote_vteps = "198.51.100.2, not-an-ip";
    ck_assert_int_eq(nnve_backend_linux_create(&c, &b), -EINVAL);
    ck_assert_ptr_null(b);
    nnve_linux_config_init(&c);
    c.local_ip = "198.51.100.300";
    ck_assert_int_eq(nnve_backend_linux_create(&c, &b), -EINVAL);
    nnve_linux_config_init(&c);
    c.bridge = "a-bridge-name-too-long";
    ck_assert_int_eq(nnve_backend_linux_create(&c, &b), -EINVAL);
    /* evpn: per-VNI devices with an IPv4 local address only (before any kernel access) */
    nnve_linux_config_init(&c);
    c.remote_vteps = "evpn";
    c.local_ip = "198.51.100.1";
    ck_assert_int_eq(nnve_backend_linux_create(&c, &b), -EINVAL);
    c.vxlan_mode = NNVE_LINUX_VXLAN_PER_VNI;
    c.local_ip = "2001:db8::1";
    ck_assert_int_eq(nnve_backend_linux_create(&c, &b), -EINVAL);
    c.local_ip = NULL;
    ck_assert_int_eq(nnve_backend_linux_create(&c, &b), -EINVAL);
    ck_assert_ptr_null(b);
    /* the class entry point uses the linux config in the generic backend config */
    nnve_linux_config_init(&c);
    c.vxlan_device = "0123456789abcdefg";
    struct nnve_backend_config bc = {.linux_cfg = &c};
    ck_assert_int_eq(nnve_backend_linux_class.create(&bc, &b), -EINVAL);
    ck_assert_str_eq(nnve_backend_linux_class.name, "linux");
}
END_TEST

static Suite *backend_linux_suite(void)
{
    Suite *s = suite_create("nnve-backend-linux");
    TCase *tc = tcase_create("messages");
    tcase_add_test(tc, vlan_with_tunnel);
    tcase_add_test(tc, vlan_plain_and_flags);
    tcase_add_test(tc, vlan_invalid);
    tcase_add_test(tc, fdb_static);
    tcase_add_test(tc, port_evpn);
    tcase_add_test(tc, flood_entries);
    tcase_add_test(tc, neighbour);
    tcase_add_test(tc, port_locked);
    tcase_add_test(tc, vxlan_new);
    suite_add_tcase(s, tc);
    tc = tcase_create("parsers");
    tcase_add_test(tc, fdb_parse);
    tcase_add_test(tc, fdb_parse_malformed);
    tcase_add_test(tc, port_parse);
    tcase_add_test(tc, port_parse_malformed);
    suite_add_tcase(s, tc);
    tc = tcase_create("config");
    tcase_add_test(tc, config_defaults);
    tcase_add_test(tc, create_rejects_bad_config);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    snv_log_set_level(SNV_LOG_ERR);
    SRunner *sr = srunner_create(backend_linux_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
