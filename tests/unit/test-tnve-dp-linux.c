/* test-tnve-dp-linux.c: Check suite for tnve-agent's rtnetlink helpers and Linux dataplane
 * backend.  The requests the backend sends are built into buffers and read back with libmnl
 * (type, flags, family, attributes, lengths) without a kernel; the link parser gets
 * hand-built RTM_NEWLINK replies, well-formed and malformed.  A last case talks to the host
 * kernel for what needs no 802.1Q (the VLAN-aware paths run inside User-Mode Linux, see
 * tests/integration/test-tnve-dp-linux.sh).
 */
#include "../../tnve-agent/dataplane-provider.h"
#include "../../tnve-agent/netlink.h"
#include "snv-log.h"

#include <check.h>
#include <errno.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <string.h>

#define BUFSZ 8192

static unsigned char buf[BUFSZ];

/* ---- reading a built request back ---- */

struct attrs {
    const struct nlattr *tb[IFLA_MAX + 1];
    int count;
};

static int collect_cb(const struct nlattr *attr, void *data)
{
    struct attrs *a = data;
    unsigned type = mnl_attr_get_type(attr);
    ck_assert_uint_le(type, IFLA_MAX);
    ck_assert_ptr_null(a->tb[type]); /* no attribute twice */
    a->tb[type] = attr;
    a->count++;
    return MNL_CB_OK;
}

static const struct ifinfomsg *check_link_msg(const struct nlmsghdr *nlh, uint16_t type,
                                              uint16_t flags, unsigned char family, int ifindex,
                                              struct attrs *a)
{
    ck_assert_ptr_nonnull(nlh);
    ck_assert_ptr_eq(nlh, (const void *)buf);
    ck_assert_uint_eq(nlh->nlmsg_type, type);
    ck_assert_uint_eq(nlh->nlmsg_flags, flags);
    ck_assert_uint_eq(nlh->nlmsg_seq, 0);
    ck_assert_uint_ge(nlh->nlmsg_len, mnl_nlmsg_size(sizeof(struct ifinfomsg)));
    ck_assert_uint_eq(nlh->nlmsg_len % 4, 0);
    const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
    ck_assert_uint_eq(ifm->ifi_family, family);
    ck_assert_int_eq(ifm->ifi_index, ifindex);
    ck_assert_uint_eq(ifm->ifi_type, 0);
    ck_assert_uint_eq(ifm->ifi_flags, 0);
    ck_assert_uint_eq(ifm->ifi_change, 0);
    memset(a, 0, sizeof *a);
    ck_assert_int_eq(mnl_attr_parse(nlh, sizeof *ifm, collect_cb, a), MNL_CB_OK);
    /* The attributes fill the message exactly. */
    size_t sum = 0;
    for (int i = 0; i <= IFLA_MAX; i++)
        if (a->tb[i] != NULL)
            sum += MNL_ALIGN(a->tb[i]->nla_len);
    ck_assert_uint_eq(nlh->nlmsg_len, mnl_nlmsg_size(sizeof *ifm) + sum);
    return ifm;
}

START_TEST(getlink_by_name)
{
    struct nlmsghdr *nlh = tnve_nl_msg_getlink(buf, sizeof buf, "eth0", 0, RTEXT_FILTER_SKIP_STATS);
    struct attrs a;
    check_link_msg(nlh, RTM_GETLINK, NLM_F_REQUEST, AF_UNSPEC, 0, &a);
    ck_assert_int_eq(a.count, 2);
    ck_assert_ptr_nonnull(a.tb[IFLA_IFNAME]);
    ck_assert_int_eq(mnl_attr_validate(a.tb[IFLA_IFNAME], MNL_TYPE_NUL_STRING), 0);
    ck_assert_uint_eq(mnl_attr_get_payload_len(a.tb[IFLA_IFNAME]), 5);
    ck_assert_str_eq(mnl_attr_get_str(a.tb[IFLA_IFNAME]), "eth0");
    ck_assert_uint_eq(mnl_attr_get_payload_len(a.tb[IFLA_EXT_MASK]), 4);
    ck_assert_uint_eq(mnl_attr_get_u32(a.tb[IFLA_EXT_MASK]), RTEXT_FILTER_SKIP_STATS);
    ck_assert_uint_eq(nlh->nlmsg_len, 16 + 16 + 12 + 8);
}
END_TEST

START_TEST(getlink_by_index)
{
    struct nlmsghdr *nlh = tnve_nl_msg_getlink(buf, sizeof buf, NULL, 7, 0);
    struct attrs a;
    check_link_msg(nlh, RTM_GETLINK, NLM_F_REQUEST, AF_UNSPEC, 7, &a);
    ck_assert_int_eq(a.count, 0);
    ck_assert_uint_eq(nlh->nlmsg_len, 32);
}
END_TEST

START_TEST(getlink_invalid)
{
    ck_assert_ptr_null(tnve_nl_msg_getlink(buf, sizeof buf, "", 0, 0));
    ck_assert_ptr_null(tnve_nl_msg_getlink(buf, sizeof buf, "0123456789abcdef", 0, 0));
    ck_assert_ptr_nonnull(tnve_nl_msg_getlink(buf, sizeof buf, "0123456789abcde", 0, 0));
    ck_assert_ptr_null(tnve_nl_msg_getlink(buf, sizeof buf, NULL, 0, 0));
    ck_assert_ptr_null(tnve_nl_msg_getlink(buf, sizeof buf, NULL, -3, 0));
    ck_assert_ptr_null(tnve_nl_msg_getlink(buf, TNVE_NL_MSG_MIN - 1, "eth0", 0, 0));
    ck_assert_ptr_null(tnve_nl_msg_getlink(NULL, sizeof buf, "eth0", 0, 0));
}
END_TEST

START_TEST(bridge_dump)
{
    struct nlmsghdr *nlh = tnve_nl_msg_bridge_dump(buf, sizeof buf, RTEXT_FILTER_BRVLAN_COMPRESSED);
    struct attrs a;
    check_link_msg(nlh, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, AF_BRIDGE, 0, &a);
    ck_assert_int_eq(a.count, 1);
    ck_assert_uint_eq(mnl_attr_get_u32(a.tb[IFLA_EXT_MASK]), RTEXT_FILTER_BRVLAN_COMPRESSED);
    nlh = tnve_nl_msg_bridge_dump(buf, sizeof buf, RTEXT_FILTER_BRVLAN);
    check_link_msg(nlh, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, AF_BRIDGE, 0, &a);
    ck_assert_uint_eq(mnl_attr_get_u32(a.tb[IFLA_EXT_MASK]), RTEXT_FILTER_BRVLAN);
    ck_assert_ptr_null(tnve_nl_msg_bridge_dump(buf, 16, RTEXT_FILTER_BRVLAN));
}
END_TEST

/* Reads the IFLA_BRIDGE_VLAN_INFO entries of a built vlan message into out[]. */
static size_t read_vlans(const struct nlmsghdr *nlh, uint16_t type, int ifindex,
                         struct bridge_vlan_info *out, size_t max)
{
    struct attrs a;
    check_link_msg(nlh, type, NLM_F_REQUEST, AF_BRIDGE, ifindex, &a);
    ck_assert_int_eq(a.count, 1);
    const struct nlattr *spec = a.tb[IFLA_AF_SPEC];
    ck_assert_ptr_nonnull(spec);
    ck_assert_int_eq(mnl_attr_validate(spec, MNL_TYPE_NESTED), 0);
    size_t n = 0;
    const struct nlattr *attr;
    size_t inner = 0;
    mnl_attr_for_each_nested(attr, spec)
    {
        ck_assert_uint_eq(mnl_attr_get_type(attr), IFLA_BRIDGE_VLAN_INFO);
        ck_assert_uint_eq(mnl_attr_get_payload_len(attr), sizeof(struct bridge_vlan_info));
        ck_assert_uint_eq(attr->nla_len, 8);
        ck_assert_uint_lt(n, max);
        memcpy(&out[n++], mnl_attr_get_payload(attr), sizeof out[0]);
        inner += MNL_ALIGN(attr->nla_len);
    }
    ck_assert_uint_eq(spec->nla_len, MNL_ATTR_HDRLEN + inner);
    return n;
}

START_TEST(vlan_set_pvid_untagged)
{
    struct bridge_vlan_info vi = {.flags = BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED,
                                  .vid = 10};
    struct nlmsghdr *nlh = tnve_nl_msg_bridge_vlan(buf, sizeof buf, RTM_SETLINK, 42, &vi, 1);
    struct bridge_vlan_info got[4];
    ck_assert_uint_eq(read_vlans(nlh, RTM_SETLINK, 42, got, 4), 1);
    ck_assert_uint_eq(got[0].vid, 10);
    ck_assert_uint_eq(got[0].flags, BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED);
    /* header 16 + ifinfomsg 16 + AF_SPEC 4 + one VLAN_INFO 8 */
    ck_assert_uint_eq(nlh->nlmsg_len, 44);
    /* No IFLA_BRIDGE_FLAGS: the kernel applies it to the port's master bridge, not "self". */
}
END_TEST

START_TEST(vlan_set_tagged_uplink)
{
    struct bridge_vlan_info vi = {.flags = 0, .vid = 4094};
    struct nlmsghdr *nlh = tnve_nl_msg_bridge_vlan(buf, sizeof buf, RTM_SETLINK, 3, &vi, 1);
    struct bridge_vlan_info got[1];
    ck_assert_uint_eq(read_vlans(nlh, RTM_SETLINK, 3, got, 1), 1);
    ck_assert_uint_eq(got[0].vid, 4094);
    ck_assert_uint_eq(got[0].flags, 0);
}
END_TEST

START_TEST(vlan_del_is_af_bridge)
{
    /* RTM_DELLINK in any other family deletes the interface itself. */
    struct bridge_vlan_info vi[3] = {{.vid = 1}, {.vid = 20}, {.vid = 99}};
    struct nlmsghdr *nlh = tnve_nl_msg_bridge_vlan(buf, sizeof buf, RTM_DELLINK, 5, vi, 3);
    ck_assert_ptr_nonnull(nlh);
    const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
    ck_assert_uint_eq(ifm->ifi_family, AF_BRIDGE);
    struct bridge_vlan_info got[4];
    ck_assert_uint_eq(read_vlans(nlh, RTM_DELLINK, 5, got, 4), 3);
    ck_assert_uint_eq(got[0].vid, 1);
    ck_assert_uint_eq(got[1].vid, 20);
    ck_assert_uint_eq(got[2].vid, 99);
    ck_assert_uint_eq(nlh->nlmsg_len, 16 + 16 + 4 + 3 * 8);
}
END_TEST

START_TEST(vlan_batch_fits_a_page)
{
    static struct bridge_vlan_info vi[TNVE_NL_VLANS_PER_MSG + 1];
    for (size_t i = 0; i < TNVE_NL_VLANS_PER_MSG + 1; i++)
        vi[i].vid = (uint16_t)(i + 1);
    size_t page = (size_t)MNL_SOCKET_BUFFER_SIZE;
    struct nlmsghdr *nlh =
        tnve_nl_msg_bridge_vlan(buf, page, RTM_DELLINK, 9, vi, TNVE_NL_VLANS_PER_MSG);
    ck_assert_ptr_nonnull(nlh);
    ck_assert_uint_le(nlh->nlmsg_len, page);
    static struct bridge_vlan_info got[TNVE_NL_VLANS_PER_MSG];
    ck_assert_uint_eq(read_vlans(nlh, RTM_DELLINK, 9, got, TNVE_NL_VLANS_PER_MSG),
                      TNVE_NL_VLANS_PER_MSG);
    ck_assert_uint_eq(got[TNVE_NL_VLANS_PER_MSG - 1].vid, TNVE_NL_VLANS_PER_MSG);
    ck_assert_ptr_null(
        tnve_nl_msg_bridge_vlan(buf, page, RTM_DELLINK, 9, vi, TNVE_NL_VLANS_PER_MSG + 1));
    /* A buffer too small for the entries is refused, not overrun. */
    memset(buf, 0xA5, sizeof buf);
    ck_assert_ptr_null(tnve_nl_msg_bridge_vlan(buf, 300, RTM_DELLINK, 9, vi, 100));
    for (size_t i = 300; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], 0xA5);
}
END_TEST

START_TEST(vlan_invalid)
{
    struct bridge_vlan_info ok = {.vid = 10};
    struct bridge_vlan_info zero = {.vid = 0};
    struct bridge_vlan_info big = {.vid = 4095};
    ck_assert_ptr_null(tnve_nl_msg_bridge_vlan(buf, sizeof buf, RTM_NEWLINK, 1, &ok, 1));
    ck_assert_ptr_null(tnve_nl_msg_bridge_vlan(buf, sizeof buf, RTM_SETLINK, 0, &ok, 1));
    ck_assert_ptr_null(tnve_nl_msg_bridge_vlan(buf, sizeof buf, RTM_SETLINK, 1, &ok, 0));
    ck_assert_ptr_null(tnve_nl_msg_bridge_vlan(buf, sizeof buf, RTM_SETLINK, 1, NULL, 1));
    ck_assert_ptr_null(tnve_nl_msg_bridge_vlan(buf, sizeof buf, RTM_SETLINK, 1, &zero, 1));
    ck_assert_ptr_null(tnve_nl_msg_bridge_vlan(buf, sizeof buf, RTM_DELLINK, 1, &big, 1));
    ck_assert_ptr_null(tnve_nl_msg_bridge_vlan(buf, 64, RTM_SETLINK, 1, &ok, 1));
}
END_TEST

/* ---- the link parser on hand-built replies ---- */

static struct nlmsghdr *reply_start(uint16_t type, unsigned char family, int ifindex)
{
    memset(buf, 0, sizeof buf);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
    ifm->ifi_family = family;
    ifm->ifi_index = ifindex;
    return nlh;
}

static void put_vlan(struct nlmsghdr *nlh, uint16_t vid, uint16_t flags)
{
    struct bridge_vlan_info vi = {.flags = flags, .vid = vid};
    mnl_attr_put(nlh, IFLA_BRIDGE_VLAN_INFO, sizeof vi, &vi);
}

START_TEST(parse_bridge_port)
{
    struct nlmsghdr *nlh = reply_start(RTM_NEWLINK, AF_BRIDGE, 12);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, "vnet3");
    mnl_attr_put_u32(nlh, IFLA_MASTER, 4);
    mnl_attr_put_u32(nlh, IFLA_MTU, 1500);
    struct nlattr *spec = mnl_attr_nest_start(nlh, IFLA_AF_SPEC);
    put_vlan(nlh, 1, BRIDGE_VLAN_INFO_UNTAGGED);
    put_vlan(nlh, 10, BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED);
    put_vlan(nlh, 100, BRIDGE_VLAN_INFO_RANGE_BEGIN);
    put_vlan(nlh, 103, BRIDGE_VLAN_INFO_RANGE_END);
    put_vlan(nlh, 4094, 0);
    put_vlan(nlh, 4095, 0);                     /* not a VLAN ID: ignored */
    mnl_attr_put_u16(nlh, IFLA_BRIDGE_MODE, 0); /* other AF_SPEC attributes: ignored */
    mnl_attr_nest_end(nlh, spec);

    struct tnve_nl_link link;
    struct tnve_nl_vlans v;
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &link, &v), 0);
    ck_assert_int_eq(link.ifindex, 12);
    ck_assert_int_eq(link.master, 4);
    ck_assert_str_eq(link.name, "vnet3");
    ck_assert_str_eq(link.kind, "");
    ck_assert_int_eq(link.vlan_filtering, -1);
    ck_assert_int_eq(link.has_af_spec, 1);
    ck_assert_uint_eq(link.family, AF_BRIDGE);
    ck_assert_uint_eq(v.pvid, 10);
    ck_assert_uint_eq(v.count, 7);
    ck_assert(tnve_nl_vlans_has(&v, 1) && tnve_nl_vlans_untagged(&v, 1));
    ck_assert(tnve_nl_vlans_has(&v, 10) && tnve_nl_vlans_untagged(&v, 10));
    for (uint16_t vid = 100; vid <= 103; vid++)
        ck_assert(tnve_nl_vlans_has(&v, vid) && !tnve_nl_vlans_untagged(&v, vid));
    ck_assert(!tnve_nl_vlans_has(&v, 99) && !tnve_nl_vlans_has(&v, 104));
    ck_assert(tnve_nl_vlans_has(&v, 4094) && !tnve_nl_vlans_untagged(&v, 4094));
    ck_assert(!tnve_nl_vlans_has(&v, 4095) && !tnve_nl_vlans_has(&v, 0));

    /* Without a vlans output the same message parses too. */
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &link, NULL), 0);
}
END_TEST

START_TEST(parse_bridge_master_info)
{
    struct nlmsghdr *nlh = reply_start(RTM_NEWLINK, AF_UNSPEC, 4);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, "br0");
    struct nlattr *li = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
    struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
    mnl_attr_put_u32(nlh, IFLA_BR_FORWARD_DELAY, 1500);
    mnl_attr_put_u8(nlh, IFLA_BR_VLAN_FILTERING, 1);
    mnl_attr_nest_end(nlh, data);
    mnl_attr_nest_end(nlh, li);
    struct tnve_nl_link link;
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &link, NULL), 0);
    ck_assert_str_eq(link.kind, "bridge");
    ck_assert_int_eq(link.vlan_filtering, 1);
    ck_assert_int_eq(link.master, 0);
    ck_assert_int_eq(link.has_af_spec, 0);

    /* vlan_filtering 0 */
    nlh = reply_start(RTM_NEWLINK, AF_UNSPEC, 4);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, "br1");
    li = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
    data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
    mnl_attr_put_u8(nlh, IFLA_BR_VLAN_FILTERING, 0);
    mnl_attr_nest_end(nlh, data);
    mnl_attr_nest_end(nlh, li);
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &link, NULL), 0);
    ck_assert_int_eq(link.vlan_filtering, 0);

    /* A bond's info data is not read as a bridge's. */
    nlh = reply_start(RTM_NEWLINK, AF_UNSPEC, 5);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, "bond0");
    li = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bond");
    data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
    mnl_attr_put_u8(nlh, IFLA_BR_VLAN_FILTERING, 1);
    mnl_attr_nest_end(nlh, data);
    mnl_attr_nest_end(nlh, li);
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &link, NULL), 0);
    ck_assert_str_eq(link.kind, "bond");
    ck_assert_int_eq(link.vlan_filtering, -1);
}
END_TEST

START_TEST(parse_malformed)
{
    struct tnve_nl_link link;
    struct tnve_nl_vlans v;

    /* wrong type */
    struct nlmsghdr *nlh = reply_start(RTM_DELLINK, AF_BRIDGE, 3);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, "x");
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &link, &v), -EINVAL);

    /* shorter than an ifinfomsg */
    nlh = reply_start(RTM_NEWLINK, AF_BRIDGE, 3);
    nlh->nlmsg_len = mnl_nlmsg_size(8);
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &link, &v), -EINVAL);

    /* no name */
    nlh = reply_start(RTM_NEWLINK, AF_BRIDGE, 3);
    mnl_attr_put_u32(nlh, IFLA_MASTER, 2);
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &link, &v), -EINVAL);

    /* ifindex 0 */
    nlh = reply_start(RTM_NEWLINK, AF_BRIDGE, 0);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, "x");
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &link, &v), -EINVAL);

    /* name without its NUL */
    nlh = reply_start(RTM_NEWLINK, AF_BRIDGE, 3);
    mnl_attr_put(nlh, IFLA_IFNAME, 4, "eth0");
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &link, &v), -EINVAL);

    /* name longer than IFNAMSIZ */
    nlh = reply_start(RTM_NEWLINK, AF_BRIDGE, 3);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, "0123456789abcdefgh");
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &link, &v), -EINVAL);

    /* IFLA_MASTER of 2 bytes */
    nlh = reply_start(RTM_NEWLINK, AF_BRIDGE, 3);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, "x");
    mnl_attr_put_u16(nlh, IFLA_MASTER, 2);
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &link, &v), -EINVAL);

    /* a short VLAN info */
    nlh = reply_start(RTM_NEWLINK, AF_BRIDGE, 3);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, "x");
    struct nlattr *spec = mnl_attr_nest_start(nlh, IFLA_AF_SPEC);
    mnl_attr_put_u16(nlh, IFLA_BRIDGE_VLAN_INFO, 10);
    mnl_attr_nest_end(nlh, spec);
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &link, &v), -EINVAL);

    /* a range end without a begin, and a reversed range */
    nlh = reply_start(RTM_NEWLINK, AF_BRIDGE, 3);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, "x");
    spec = mnl_attr_nest_start(nlh, IFLA_AF_SPEC);
    put_vlan(nlh, 20, BRIDGE_VLAN_INFO_RANGE_END);
    mnl_attr_nest_end(nlh, spec);
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &link, &v), -EINVAL);
    nlh = reply_start(RTM_NEWLINK, AF_BRIDGE, 3);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, "x");
    spec = mnl_attr_nest_start(nlh, IFLA_AF_SPEC);
    put_vlan(nlh, 30, BRIDGE_VLAN_INFO_RANGE_BEGIN);
    put_vlan(nlh, 20, BRIDGE_VLAN_INFO_RANGE_END);
    mnl_attr_nest_end(nlh, spec);
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &link, &v), -EINVAL);

    /* an attribute whose length runs past the message: the parser stops, nothing read */
    nlh = reply_start(RTM_NEWLINK, AF_BRIDGE, 3);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, "x");
    struct nlattr *m = mnl_nlmsg_get_payload_tail(nlh);
    mnl_attr_put_u32(nlh, IFLA_MASTER, 9);
    m->nla_len = 200;
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &link, &v), 0);
    ck_assert_int_eq(link.master, 0);

    /* every truncation of a good message is refused or parsed within bounds */
    nlh = reply_start(RTM_NEWLINK, AF_BRIDGE, 3);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, "vnet0");
    mnl_attr_put_u32(nlh, IFLA_MASTER, 2);
    spec = mnl_attr_nest_start(nlh, IFLA_AF_SPEC);
    put_vlan(nlh, 7, BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED);
    mnl_attr_nest_end(nlh, spec);
    uint32_t full = nlh->nlmsg_len;
    for (uint32_t len = 0; len < full; len++) {
        nlh->nlmsg_len = len;
        int r = tnve_nl_link_parse(nlh, &link, &v);
        ck_assert(r == 0 || r == -EINVAL);
        ck_assert(v.pvid == 0 || v.pvid == 7);
    }
    nlh->nlmsg_len = full;
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &link, &v), 0);
    ck_assert_uint_eq(v.pvid, 7);
}
END_TEST

START_TEST(vlan_bitmap)
{
    struct tnve_nl_vlans v;
    tnve_nl_vlans_clear(&v);
    ck_assert_uint_eq(v.count, 0);
    tnve_nl_vlans_add(&v, 0, 0);
    tnve_nl_vlans_add(&v, 4095, 0);
    ck_assert_uint_eq(v.count, 0);
    tnve_nl_vlans_add(&v, 64, BRIDGE_VLAN_INFO_UNTAGGED);
    tnve_nl_vlans_add(&v, 64, 0);
    ck_assert_uint_eq(v.count, 1);
    ck_assert(tnve_nl_vlans_has(&v, 64) && !tnve_nl_vlans_untagged(&v, 64));
    ck_assert(!tnve_nl_vlans_has(&v, 63) && !tnve_nl_vlans_has(&v, 65));
    tnve_nl_vlans_add(&v, 4094, BRIDGE_VLAN_INFO_PVID);
    ck_assert_uint_eq(v.pvid, 4094);
    ck_assert_uint_eq(v.count, 2);
    ck_assert(!tnve_nl_vlans_has(&v, 4095));
    ck_assert(!tnve_nl_vlans_untagged(&v, 0));
}
END_TEST

/* ---- the backend's surface, with no 802.1Q needed ---- */

START_TEST(class_surface)
{
    const struct tnve_dp_class *c = &tnve_dp_linux_class;
    ck_assert_str_eq(c->name, "linux");
    ck_assert(c->create && c->destroy && c->port_set && c->port_clear && c->port_get);
    c->destroy(NULL);
    struct tnve_dp *dp = (struct tnve_dp *)&dp;
    struct tnve_dp_config cfg = {.uplink = "an-interface-name-too-long"};
    ck_assert_int_eq(c->create(&cfg, &dp), -EINVAL);
    ck_assert_ptr_null(dp);
}
END_TEST

struct link_ctx {
    struct tnve_nl_link *link;
    int got;
};

static int link_cb(const struct nlmsghdr *nlh, void *data)
{
    struct link_ctx *ctx = data;
    if (tnve_nl_link_parse(nlh, ctx->link, NULL) < 0)
        return -EPROTO;
    ctx->got++;
    return 0;
}

/* The host kernel answers rtnetlink without 802.1Q: acks, errors, dumps and create()'s
 * checks. */
START_TEST(host_kernel)
{
    struct snv_nl *nl = NULL;
    ck_assert_int_eq(snv_nl_create(&nl), 0);
    struct nlmsghdr *req = tnve_nl_msg_getlink(buf, sizeof buf, "lo", 0, RTEXT_FILTER_SKIP_STATS);
    struct tnve_nl_link link = {0};
    struct link_ctx ctx = {.link = &link};
    ck_assert_int_eq(snv_nl_request(nl, req, link_cb, &ctx, NULL), 0);
    ck_assert_int_eq(ctx.got, 1);
    ck_assert_str_eq(link.name, "lo");
    ck_assert_int_gt(link.ifindex, 0);

    const char *reason = "unset";
    req = tnve_nl_msg_getlink(buf, sizeof buf, "nosuch-if0", 0, 0);
    ck_assert_int_eq(snv_nl_request(nl, req, NULL, NULL, &reason), -ENODEV);

    req = tnve_nl_msg_bridge_dump(buf, sizeof buf, RTEXT_FILTER_BRVLAN_COMPRESSED);
    ck_assert_int_eq(snv_nl_dump(nl, req, NULL, NULL, NULL), 0);
    /* A dump needs NLM_F_DUMP. */
    req = tnve_nl_msg_getlink(buf, sizeof buf, "lo", 0, 0);
    ck_assert_int_eq(snv_nl_dump(nl, req, NULL, NULL, NULL), -EINVAL);
    /* Requests after an error keep working (sequence numbers). */
    req = tnve_nl_msg_getlink(buf, sizeof buf, "lo", 0, 0);
    ctx.got = 0;
    ck_assert_int_eq(snv_nl_request(nl, req, link_cb, &ctx, NULL), 0);
    ck_assert_int_eq(ctx.got, 1);
    snv_nl_destroy(nl);
    snv_nl_destroy(NULL);

    const struct tnve_dp_class *c = &tnve_dp_linux_class;
    struct tnve_dp *dp = NULL;
    struct tnve_dp_config cfg = {.uplink = "nosuch-if0"};
    ck_assert_int_eq(c->create(&cfg, &dp), -ENODEV);
    cfg.uplink = "lo";
    ck_assert_int_eq(c->create(&cfg, &dp), -ENOTCONN);
    cfg.uplink = NULL;
    ck_assert_int_eq(c->create(&cfg, &dp), 0);
    ck_assert_int_eq(c->port_get(dp, "lo"), 0);
    ck_assert_int_eq(c->port_get(dp, "nosuch-if0"), -ENODEV);
    ck_assert_int_eq(c->port_clear(dp, "nosuch-if0", 10, 0), 0);
    ck_assert_int_eq(c->port_set(dp, "nosuch-if0", 10), -ENODEV);
    ck_assert_int_eq(c->port_set(dp, "lo", 10), -ENOTCONN);
    ck_assert_int_eq(c->port_set(dp, "lo", 0), -EINVAL);
    c->destroy(dp);
}
END_TEST

static Suite *dp_linux_suite(void)
{
    Suite *s = suite_create("tnve-dp-linux");
    TCase *tc = tcase_create("build");
    tcase_add_test(tc, getlink_by_name);
    tcase_add_test(tc, getlink_by_index);
    tcase_add_test(tc, getlink_invalid);
    tcase_add_test(tc, bridge_dump);
    tcase_add_test(tc, vlan_set_pvid_untagged);
    tcase_add_test(tc, vlan_set_tagged_uplink);
    tcase_add_test(tc, vlan_del_is_af_bridge);
    tcase_add_test(tc, vlan_batch_fits_a_page);
    tcase_add_test(tc, vlan_invalid);
    suite_add_tcase(s, tc);
    tc = tcase_create("parse");
    tcase_add_test(tc, parse_bridge_port);
    tcase_add_test(tc, parse_bridge_master_info);
    tcase_add_test(tc, parse_malformed);
    tcase_add_test(tc, vlan_bitmap);
    suite_add_tcase(s, tc);
    tc = tcase_create("backend");
    tcase_add_test(tc, class_surface);
    tcase_add_test(tc, host_kernel);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    snv_log_set_level(SNV_LOG_ERR);
    SRunner *sr = srunner_create(dp_linux_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
