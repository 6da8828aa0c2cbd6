/* netlink.c: rtnetlink socket, request/ack and dump loops, message builders and the link
 * parser used by the Linux dataplane backend (see netlink.h).
 *
 * Everything received is read through libmnl's bounds-checked iterators; an attribute is only
 * read after mnl_attr_validate() accepted its type and length.
 */
#include "netlink.h"

#include <errno.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

/* Starts an rtnetlink link message: header + zeroed ifinfomsg.  NULL if `size` is short. */
static struct nlmsghdr *put_link_header(void *buf, size_t size, uint16_t type, uint16_t flags,
                                        unsigned char family, int ifindex)
{
    if (buf == NULL || size < TNVE_NL_MSG_MIN)
        return NULL;
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | flags;
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
    ifm->ifi_family = family;
    ifm->ifi_index = ifindex;
    return nlh;
}

struct nlmsghdr *tnve_nl_msg_getlink(void *buf, size_t size, const char *name, int ifindex,
                                     uint32_t ext_mask)
{
    if (name == NULL && ifindex <= 0)
        return NULL;
    if (name != NULL && (name[0] == '\0' || strlen(name) >= IF_NAMESIZE))
        return NULL;
    struct nlmsghdr *nlh =
        put_link_header(buf, size, RTM_GETLINK, 0, AF_UNSPEC, name != NULL ? 0 : ifindex);
    if (nlh == NULL)
        return NULL;
    if (name != NULL && !mnl_attr_put_strz_check(nlh, size, IFLA_IFNAME, name))
        return NULL;
    if (ext_mask != 0 && !mnl_attr_put_u32_check(nlh, size, IFLA_EXT_MASK, ext_mask))
        return NULL;
    return nlh;
}

struct nlmsghdr *tnve_nl_msg_link_dump(void *buf, size_t size)
{
    return put_link_header(buf, size, RTM_GETLINK, NLM_F_DUMP, AF_UNSPEC, 0);
}

struct nlmsghdr *tnve_nl_msg_bridge_dump(void *buf, size_t size, uint32_t ext_mask)
{
    struct nlmsghdr *nlh = put_link_header(buf, size, RTM_GETLINK, NLM_F_DUMP, AF_BRIDGE, 0);
    if (nlh == NULL)
        return NULL;
    if (ext_mask != 0 && !mnl_attr_put_u32_check(nlh, size, IFLA_EXT_MASK, ext_mask))
        return NULL;
    return nlh;
}

struct nlmsghdr *tnve_nl_msg_bridge_vlan(void *buf, size_t size, uint16_t type, int ifindex,
                                         const struct bridge_vlan_info *vinfo, size_t n)
{
    if ((type != RTM_SETLINK && type != RTM_DELLINK) || ifindex <= 0 || vinfo == NULL || n == 0 ||
        n > TNVE_NL_VLANS_PER_MSG)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (vinfo[i].vid < 1 || vinfo[i].vid > 4094)
            return NULL;
    /* AF_BRIDGE is what makes RTM_DELLINK remove VLANs instead of the device itself. */
    struct nlmsghdr *nlh = put_link_header(buf, size, type, 0, AF_BRIDGE, ifindex);
    if (nlh == NULL)
        return NULL;
    struct nlattr *spec = mnl_attr_nest_start_check(nlh, size, IFLA_AF_SPEC);
    if (spec == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!mnl_attr_put_check(nlh, size, IFLA_BRIDGE_VLAN_INFO, sizeof vinfo[i], &vinfo[i]))
            return NULL;
    mnl_attr_nest_end(nlh, spec);
    return nlh;
}

void tnve_nl_vlans_clear(struct tnve_nl_vlans *v)
{
    memset(v, 0, sizeof *v);
}

void tnve_nl_vlans_add(struct tnve_nl_vlans *v, uint16_t vid, uint16_t flags)
{
    if (vid < 1 || vid > 4094)
        return;
    uint64_t bit = UINT64_C(1) << (vid % 64);
    if (!(v->member[vid / 64] & bit))
        v->count++;
    v->member[vid / 64] |= bit;
    if (flags & BRIDGE_VLAN_INFO_UNTAGGED)
        v->untagged[vid / 64] |= bit;
    else
        v->untagged[vid / 64] &= ~bit;
    if (flags & BRIDGE_VLAN_INFO_PVID)
        v->pvid = vid;
}

int tnve_nl_vlans_has(const struct tnve_nl_vlans *v, uint16_t vid)
{
    if (vid < 1 || vid > 4094)
        return 0;
    return (v->member[vid / 64] >> (vid % 64)) & 1;
}

int tnve_nl_vlans_untagged(const struct tnve_nl_vlans *v, uint16_t vid)
{
    if (vid < 1 || vid > 4094)
        return 0;
    return (v->untagged[vid / 64] >> (vid % 64)) & 1;
}

struct af_spec_state {
    struct tnve_nl_vlans *vlans;
    uint16_t range_begin; /* 0: not inside a range */
    int bad;
};

static int af_spec_cb(const struct nlattr *attr, void *data)
{
    struct af_spec_state *st = data;
    if (mnl_attr_get_type(attr) != IFLA_BRIDGE_VLAN_INFO)
        return MNL_CB_OK;
    struct bridge_vlan_info vi;
    if (mnl_attr_get_payload_len(attr) < sizeof vi) {
        st->bad = 1;
        return MNL_CB_ERROR;
    }
    memcpy(&vi, mnl_attr_get_payload(attr), sizeof vi);
    if (vi.vid < 1 || vi.vid > 4094)
        return MNL_CB_OK; /* not a VLAN this bitmap can hold; nothing the agent sets */
    if (vi.flags & BRIDGE_VLAN_INFO_RANGE_BEGIN) {
        st->range_begin = vi.vid;
        return MNL_CB_OK;
    }
    if (vi.flags & BRIDGE_VLAN_INFO_RANGE_END) {
        if (st->range_begin == 0 || st->range_begin > vi.vid) {
            st->bad = 1;
            return MNL_CB_ERROR;
        }
        uint16_t flags = vi.flags & (uint16_t)~BRIDGE_VLAN_INFO_PVID;
        for (unsigned v = st->range_begin; v <= vi.vid; v++)
            tnve_nl_vlans_add(st->vlans, (uint16_t)v, flags);
        st->range_begin = 0;
        return MNL_CB_OK;
    }
    tnve_nl_vlans_add(st->vlans, vi.vid, vi.flags);
    return MNL_CB_OK;
}

static int info_data_cb(const struct nlattr *attr, void *data)
{
    struct tnve_nl_link *link = data;
    if (mnl_attr_get_type(attr) == IFLA_BR_VLAN_FILTERING &&
        mnl_attr_validate(attr, MNL_TYPE_U8) == 0)
        link->vlan_filtering = mnl_attr_get_u8(attr) != 0;
    return MNL_CB_OK;
}

static int bond_data_cb(const struct nlattr *attr, void *data)
{
    struct tnve_nl_link *link = data;
    switch (mnl_attr_get_type(attr)) {
    case IFLA_BOND_MODE:
        if (mnl_attr_validate(attr, MNL_TYPE_U8) == 0)
            link->bond_mode = mnl_attr_get_u8(attr);
        break;
    case IFLA_BOND_ACTIVE_SLAVE:
        if (mnl_attr_validate(attr, MNL_TYPE_U32) == 0 && mnl_attr_get_u32(attr) <= INT32_MAX)
            link->bond_active_slave = (int)mnl_attr_get_u32(attr);
        break;
    default:
        break;
    }
    return MNL_CB_OK;
}

static int bond_slave_data_cb(const struct nlattr *attr, void *data)
{
    struct tnve_nl_link *link = data;
    if (mnl_attr_get_type(attr) == IFLA_BOND_SLAVE_STATE &&
        mnl_attr_validate(attr, MNL_TYPE_U8) == 0)
        link->bond_slave_state = mnl_attr_get_u8(attr);
    return MNL_CB_OK;
}

struct linkinfo_state {
    struct tnve_nl_link *link;
    const struct nlattr *data;
    const struct nlattr *slave_data;
};

/* Copies a string attribute into dst[cap] when it fits (else leaves dst as it is). */
static void copy_str_attr(const struct nlattr *attr, char *dst, size_t cap)
{
    if (mnl_attr_validate(attr, MNL_TYPE_STRING) != 0)
        return;
    size_t n = mnl_attr_get_payload_len(attr);
    const char *s = mnl_attr_get_str(attr);
    size_t k = strnlen(s, n);
    if (k < cap) {
        memcpy(dst, s, k);
        dst[k] = '\0';
    }
}

static int linkinfo_cb(const struct nlattr *attr, void *data)
{
    struct linkinfo_state *st = data;
    switch (mnl_attr_get_type(attr)) {
    case IFLA_INFO_KIND:
        copy_str_attr(attr, st->link->kind, sizeof st->link->kind);
        break;
    case IFLA_INFO_SLAVE_KIND:
        copy_str_attr(attr, st->link->slave_kind, sizeof st->link->slave_kind);
        break;
    case IFLA_INFO_DATA:
        if (mnl_attr_validate(attr, MNL_TYPE_NESTED) == 0)
            st->data = attr;
        break;
    case IFLA_INFO_SLAVE_DATA:
        if (mnl_attr_validate(attr, MNL_TYPE_NESTED) == 0)
            st->slave_data = attr;
        break;
    default:
        break;
    }
    return MNL_CB_OK;
}

struct link_state {
    struct tnve_nl_link *link;
    const struct nlattr *af_spec;
    const struct nlattr *linkinfo;
    int bad;
};

static int link_attr_cb(const struct nlattr *attr, void *data)
{
    struct link_state *st = data;
    switch (mnl_attr_get_type(attr)) {
    case IFLA_IFNAME: {
        if (mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) < 0) {
            st->bad = 1;
            return MNL_CB_ERROR;
        }
        const char *s = mnl_attr_get_str(attr);
        size_t k = strlen(s); /* NUL inside the payload: checked by the validation */
        if (k == 0 || k >= sizeof st->link->name) {
            st->bad = 1;
            return MNL_CB_ERROR;
        }
        memcpy(st->link->name, s, k + 1);
        break;
    }
    case IFLA_MASTER:
        if (mnl_attr_validate(attr, MNL_TYPE_U32) < 0) {
            st->bad = 1;
            return MNL_CB_ERROR;
        }
        st->link->master = (int)mnl_attr_get_u32(attr);
        break;
    case IFLA_LINKINFO:
        if (mnl_attr_validate(attr, MNL_TYPE_NESTED) == 0)
            st->linkinfo = attr;
        break;
    case IFLA_OPERSTATE:
        if (mnl_attr_validate(attr, MNL_TYPE_U8) == 0)
            st->link->operstate = mnl_attr_get_u8(attr);
        break;
    case IFLA_CARRIER:
        if (mnl_attr_validate(attr, MNL_TYPE_U8) == 0)
            st->link->carrier = mnl_attr_get_u8(attr) != 0;
        break;
    case IFLA_AF_SPEC:
        if (mnl_attr_validate(attr, MNL_TYPE_NESTED) == 0)
            st->af_spec = attr;
        break;
    default:
        break;
    }
    return MNL_CB_OK;
}

int tnve_nl_link_parse(const struct nlmsghdr *nlh, struct tnve_nl_link *link,
                       struct tnve_nl_vlans *vlans)
{
    memset(link, 0, sizeof *link);
    link->vlan_filtering = -1;
    link->operstate = -1;
    link->carrier = -1;
    link->bond_mode = -1;
    link->bond_active_slave = -1;
    link->bond_slave_state = -1;
    if (vlans != NULL)
        tnve_nl_vlans_clear(vlans);
    if (nlh->nlmsg_type != RTM_NEWLINK || nlh->nlmsg_len < mnl_nlmsg_size(sizeof(struct ifinfomsg)))
        return -EINVAL;
    const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
    link->ifindex = ifm->ifi_index;
    link->family = ifm->ifi_family;
    link->flags = ifm->ifi_flags;
    if (link->ifindex <= 0)
        return -EINVAL;

    struct link_state st = {.link = link};
    if (mnl_attr_parse(nlh, sizeof *ifm, link_attr_cb, &st) < 0 || st.bad)
        return -EINVAL;
    if (link->name[0] == '\0')
        return -EINVAL;
    if (st.linkinfo != NULL) {
        struct linkinfo_state li = {.link = link};
        (void)mnl_attr_parse_nested(st.linkinfo, linkinfo_cb, &li);
        if (li.data != NULL && strcmp(link->kind, "bridge") == 0)
            (void)mnl_attr_parse_nested(li.data, info_data_cb, link);
        if (li.data != NULL && strcmp(link->kind, "bond") == 0) {
            /* the kernel leaves IFLA_BOND_ACTIVE_SLAVE out when the bond has none */
            link->bond_active_slave = 0;
            (void)mnl_attr_parse_nested(li.data, bond_data_cb, link);
        }
        if (li.slave_data != NULL && strcmp(link->slave_kind, "bond") == 0)
            (void)mnl_attr_parse_nested(li.slave_data, bond_slave_data_cb, link);
    }
    if (st.af_spec != NULL) {
        link->has_af_spec = 1;
        if (vlans != NULL) {
            struct af_spec_state as = {.vlans = vlans};
            if (mnl_attr_parse_nested(st.af_spec, af_spec_cb, &as) < 0 || as.bad)
                return -EINVAL;
        }
    }
    return 0;
}
