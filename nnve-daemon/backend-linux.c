/* backend-linux.c: the `linux` dataplane backend (see backend-linux.h, backend-provider.h).
 *
 * Everything is rtnetlink over libmnl, synchronous (the kernel answers at once; a 5 s
 * receive timeout keeps a lost reply from hanging the daemon).
 *
 * What is programmed:
 *  - vn_add(port, tag, vn): the port becomes a tagged member of `tag`; the first port of a
 *    tag also maps it to the VNI (external: the VXLAN device joins the VLAN with tunnel_info
 *    id VNI; per-vni: device "vx-<VNI>" is created with the tag as untagged PVID) and, with
 *    a remote VTEP list, installs the all-zero-MAC flood entries of the VNI.  The last port
 *    leaving a tag removes the mapping (a refcount of ports per tag, rebuilt by reconcile).
 *    With remote_vteps = evpn (per-vni only) the device's bridge port also gets learning off
 *    and neigh_suppress on: FRR's zebra installs the remote MACs and neighbour entries, and
 *    the bridge answers ARP/ND for remote TSIs from the latter.
 *  - tsi_activate: one static FDB entry (NTF_MASTER, NUD_NOARP: "static" in `bridge fdb`)
 *    per MAC of the TSI; sticky (NTF_STICKY) unless remote_vteps = evpn: else the bridge
 *    moves it to any port where it learns the MAC, such as a learning VXLAN port (the other
 *    switch of a pair flooding the TSI's ARP), and the locked port then drops the TSI's
 *    frames.  With evpn the VXLAN ports do not learn, and zebra would advertise a sticky
 *    entry as a sticky MAC, which EVPN never lets move (its TSI_ID MAC and every address's MAC) on
 * (port, tag); for each IP+MAC pair a NUD_NOARP neighbour entry on the VLAN's layer-3 interface,
 * which is the 802.1Q device on the bridge with that VLAN ID (an SVI such as br0.100).  A pure
 * layer-2 switch has no such interface: then no neighbour entry is installed (logged at debug; an
 * EVPN speaker then advertises MAC-only routes).  associate installs nothing (reservation is
 * bookkeeping); deactivate/deassociate remove exactly what activate installed; update
 * installs/removes the difference.
 *  - Anti-spoofing, source MACs: bridge port locking (IFLA_BRPORT_LOCKED, Linux >= 6.1).  A
 *    locked port accepts a frame only when its source MAC has an FDB entry on that port in
 *    the frame's VLAN, so the static entries above are at once the forwarding state and the
 *    MAC filter: only the associated MACs of Activated TSIs, per (port, VLAN), get through;
 *    deactivate closes the filter in the same netlink operation that withdraws the entry.
 *    It costs nothing per packet beyond the FDB lookup the bridge does anyway and cannot drift
 *    from the forwarding state.  It applies to the whole port: the hypervisor's own traffic
 *    through a locked port passes only from MACs that have an FDB entry on the port (an entry
 *    learned before the lock stays, and is refreshed, while traffic keeps it alive; an
 *    operator may add static entries for it in VLANs carrying no VN, which this backend
 *    never touches).  A port is locked with its first VN and unlocked with its last one,
 *    unless it was locked before.
 *  - Anti-spoofing, source IPs (anti_spoofing = on): port locking cannot look at IPs, so the
 *    TSIs that have IP addresses also get elements in the daemon's own nftables table (see
 *    nft-filter.h): their (port, VLAN, MAC) is put under control and only their (MAC, IP)
 *    pairs pass as IPv4 source, ARP sender or IPv6 source.  Elements are added on activate
 *    and removed on deactivate/deassociate in one nftables transaction per TSI; the rules
 *    themselves never change.
 *  - lookup_mac: a bridge FDB dump; the port of the first non-local entry for the MAC.
 *
 * What is ours: VLAN memberships, tunnel maps, flood entries and vx-<VNI> devices this
 * process installed for a declared VN; static FDB entries (NUD_NOARP, not extern_learn) on a
 * (port, VLAN) pair that carries a declared VN; neighbour entries this process installed.
 * The remote VTEPs of the configured list are recorded in state_dir/linux-remote-vteps at
 * each reconcile_end(), so that after a change of the list (to evpn or none included) the next
 * start removes the flood entries toward the old VTEPs, which the kernel cannot tell from an
 * EVPN speaker's.
 * reconcile_begin() reads the kernel (ports, VLANs, tunnel map, lock flags, FDB, neighbour
 * entries, the nftables table's elements);
 * the declarations that follow install only what is missing; reconcile_end() removes what
 * is ours and was not declared (stale static FDB entries of managed pairs with the
 * NUD_NOARP neighbour entries of their MAC on the VLAN's interface, flood entries of managed
 * VNIs toward VTEPs no longer configured, elements of the nftables table that no declared TSI
 * holds, and what this process installed earlier).  VLAN
 * memberships present in the kernel but neither declared nor installed by this process are left
 * alone: nothing in the kernel tells them from an operator's.
 */
#include "backend-linux.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if_bridge.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "nft-filter.h"
#include "snv-file.h"
#include "snv-log.h"
#include "snv-netlink.h"

#define MOD "backend"

/* Operations are triggered by hypervisors' requests: their log lines (one per kernel
 * change, one per failure) go through rate limiters. */
static struct snv_ratelimit rl_err = SNV_RATELIMIT_INIT(20, 100);
static struct snv_ratelimit rl_info = SNV_RATELIMIT_INIT(200, 2000);
#define OP_ERR(...) snv_log_rl(&rl_err, SNV_LOG_ERR, MOD, __VA_ARGS__)
#define OP_INFO(...) snv_log_rl(&rl_info, SNV_LOG_INFO, MOD, __VA_ARGS__)

enum { VID_MAX = 4094, VNI_MAX = 0xffffff };

static const uint8_t zero_mac[6];

/* ---------------------------------------------------------------- message builders --- */

static struct nlmsghdr *put_header(void *buf, size_t size, uint16_t type, uint16_t flags)
{
    if (buf == NULL || size < NNVE_LINUX_MSG_MIN)
        return NULL;
    memset(buf, 0, NNVE_LINUX_MSG_MIN);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | flags;
    return nlh;
}

static struct nlmsghdr *put_link(void *buf, size_t size, uint16_t type, uint16_t flags,
                                 unsigned char family, int ifindex)
{
    struct nlmsghdr *nlh = put_header(buf, size, type, flags);
    if (nlh == NULL)
        return NULL;
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
    ifm->ifi_family = family;
    ifm->ifi_index = ifindex;
    return nlh;
}

static struct nlmsghdr *put_neigh(void *buf, size_t size, uint16_t type, uint16_t flags,
                                  unsigned char family, int ifindex, uint16_t state, uint8_t ntf)
{
    struct nlmsghdr *nlh = put_header(buf, size, type, flags);
    if (nlh == NULL)
        return NULL;
    struct ndmsg *ndm = mnl_nlmsg_put_extra_header(nlh, sizeof *ndm);
    ndm->ndm_family = family;
    ndm->ndm_ifindex = ifindex;
    ndm->ndm_state = state;
    ndm->ndm_flags = ntf;
    return nlh;
}

static size_t ip_len(int family)
{
    return family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
}

struct nlmsghdr *nnve_linux_msg_vlan(void *buf, size_t size, uint16_t type, int ifindex,
                                     uint16_t vid, uint16_t vlan_flags, uint32_t vni)
{
    if ((type != RTM_SETLINK && type != RTM_DELLINK) || ifindex <= 0 || vid < 1 || vid > VID_MAX ||
        vni > VNI_MAX)
        return NULL;
    struct nlmsghdr *nlh = put_link(buf, size, type, 0, AF_BRIDGE, ifindex);
    if (nlh == NULL)
        return NULL;
    struct nlattr *spec = mnl_attr_nest_start(nlh, IFLA_AF_SPEC);
    struct bridge_vlan_info vi = {.flags = vlan_flags, .vid = vid};
    mnl_attr_put(nlh, IFLA_BRIDGE_VLAN_INFO, sizeof vi, &vi);
    if (vni != 0) {
        struct nlattr *t = mnl_attr_nest_start(nlh, IFLA_BRIDGE_VLAN_TUNNEL_INFO);
        mnl_attr_put_u32(nlh, IFLA_BRIDGE_VLAN_TUNNEL_ID, vni);
        mnl_attr_put_u16(nlh, IFLA_BRIDGE_VLAN_TUNNEL_VID, vid);
        mnl_attr_nest_end(nlh, t);
    }
    mnl_attr_nest_end(nlh, spec);
    return nlh;
}

struct nlmsghdr *nnve_linux_msg_fdb(void *buf, size_t size, uint16_t type, int ifindex,
                                    const uint8_t mac[6], uint16_t vid, int sticky)
{
    if ((type != RTM_NEWNEIGH && type != RTM_DELNEIGH) || ifindex <= 0 || vid < 1 ||
        vid > VID_MAX || mac == NULL)
        return NULL;
    uint16_t flags = type == RTM_NEWNEIGH ? NLM_F_CREATE | NLM_F_REPLACE : 0;
    uint8_t ntf = type == RTM_NEWNEIGH && sticky ? NTF_MASTER | NTF_STICKY : NTF_MASTER;
    struct nlmsghdr *nlh = put_neigh(buf, size, type, flags, AF_BRIDGE, ifindex, NUD_NOARP, ntf);
    if (nlh == NULL)
        return NULL;
    mnl_attr_put(nlh, NDA_LLADDR, 6, mac);
    mnl_attr_put_u16(nlh, NDA_VLAN, vid);
    return nlh;
}

struct nlmsghdr *nnve_linux_msg_flood(void *buf, size_t size, uint16_t type, int ifindex,
                                      int family, const uint8_t *remote, uint32_t src_vni)
{
    if ((type != RTM_NEWNEIGH && type != RTM_DELNEIGH) || ifindex <= 0 || remote == NULL ||
        ip_len(family) == 0 || src_vni > VNI_MAX)
        return NULL;
    uint16_t flags = type == RTM_NEWNEIGH ? NLM_F_CREATE | NLM_F_APPEND : 0;
    struct nlmsghdr *nlh =
        put_neigh(buf, size, type, flags, AF_BRIDGE, ifindex, NUD_PERMANENT | NUD_NOARP, NTF_SELF);
    if (nlh == NULL)
        return NULL;
    mnl_attr_put(nlh, NDA_LLADDR, 6, zero_mac);
    mnl_attr_put(nlh, NDA_DST, ip_len(family), remote);
    if (src_vni != 0)
        mnl_attr_put_u32(nlh, NDA_SRC_VNI, src_vni);
    return nlh;
}

/* RTM_SETLINK of bridge port `ifindex` with the u8 port flags (type, value) of `flags` in
 * IFLA_PROTINFO; n pairs. */
static struct nlmsghdr *put_port_flags(void *buf, size_t size, int ifindex, const uint16_t *flags,
                                       const int *values, size_t n)
{
    if (ifindex <= 0)
        return NULL;
    struct nlmsghdr *nlh = put_link(buf, size, RTM_SETLINK, 0, AF_BRIDGE, ifindex);
    if (nlh == NULL)
        return NULL;
    struct nlattr *pi = mnl_attr_nest_start(nlh, IFLA_PROTINFO);
    /* The bridge reads IFLA_PROTINFO as a flat u8 port state unless NLA_F_NESTED is set. */
    pi->nla_type |= NLA_F_NESTED;
    for (size_t i = 0; i < n; i++)
        mnl_attr_put_u8(nlh, flags[i], values[i] ? 1 : 0);
    mnl_attr_nest_end(nlh, pi);
    return nlh;
}

struct nlmsghdr *nnve_linux_msg_port_locked(void *buf, size_t size, int ifindex, int locked)
{
    static const uint16_t flags[] = {IFLA_BRPORT_LOCKED};
    return put_port_flags(buf, size, ifindex, flags, &locked, 1);
}

struct nlmsghdr *nnve_linux_msg_port_evpn(void *buf, size_t size, int ifindex, int learning,
                                          int neigh_suppress)
{
    static const uint16_t flags[] = {IFLA_BRPORT_LEARNING, IFLA_BRPORT_NEIGH_SUPPRESS};
    const int values[] = {learning, neigh_suppress};
    return put_port_flags(buf, size, ifindex, flags, values, 2);
}

struct nlmsghdr *nnve_linux_msg_vxlan_new(void *buf, size_t size, const char *name, uint32_t vni,
                                          int family, const uint8_t *local, uint16_t port,
                                          int master)
{
    if (name == NULL || name[0] == '\0' || strlen(name) >= IF_NAMESIZE || vni < 1 ||
        vni > VNI_MAX || master <= 0 || (family != 0 && (ip_len(family) == 0 || !local)))
        return NULL;
    struct nlmsghdr *nlh =
        put_link(buf, size, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, AF_UNSPEC, 0);
    if (nlh == NULL)
        return NULL;
    struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
    ifm->ifi_flags = IFF_UP;
    ifm->ifi_change = IFF_UP;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    mnl_attr_put_u32(nlh, IFLA_MASTER, (uint32_t)master);
    struct nlattr *li = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "vxlan");
    struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
    mnl_attr_put_u32(nlh, IFLA_VXLAN_ID, vni);
    if (family == AF_INET)
        mnl_attr_put(nlh, IFLA_VXLAN_LOCAL, 4, local);
    else if (family == AF_INET6)
        mnl_attr_put(nlh, IFLA_VXLAN_LOCAL6, 16, local);
    mnl_attr_put_u16(nlh, IFLA_VXLAN_PORT, htons(port));
    mnl_attr_put_u8(nlh, IFLA_VXLAN_LEARNING, 0);
    mnl_attr_nest_end(nlh, data);
    mnl_attr_nest_end(nlh, li);
    return nlh;
}

struct nlmsghdr *nnve_linux_msg_neigh(void *buf, size_t size, uint16_t type, int ifindex,
                                      int family, const uint8_t *ip, const uint8_t mac[6])
{
    if ((type != RTM_NEWNEIGH && type != RTM_DELNEIGH) || ifindex <= 0 || ip == NULL ||
        ip_len(family) == 0 || mac == NULL)
        return NULL;
    uint16_t flags = type == RTM_NEWNEIGH ? NLM_F_CREATE | NLM_F_REPLACE : 0;
    struct nlmsghdr *nlh =
        put_neigh(buf, size, type, flags, (unsigned char)family, ifindex, NUD_NOARP, 0);
    if (nlh == NULL)
        return NULL;
    mnl_attr_put(nlh, NDA_DST, ip_len(family), ip);
    mnl_attr_put(nlh, NDA_LLADDR, 6, mac);
    if (type == RTM_NEWNEIGH)
        mnl_attr_put_u8(nlh, NDA_PROTOCOL, NNVE_LINUX_NEIGH_PROTO);
    return nlh;
}

/* ---------------------------------------------------------------------- parsers --- */

struct fdb_parse {
    struct nnve_linux_fdb *f;
    int mac_seen;
};

static int fdb_attr_cb(const struct nlattr *attr, void *data)
{
    struct fdb_parse *fp = data;
    struct nnve_linux_fdb *f = fp->f;
    switch (mnl_attr_get_type(attr)) {
    case NDA_LLADDR:
        if (mnl_attr_get_payload_len(attr) == 6) {
            memcpy(f->mac, mnl_attr_get_payload(attr), 6);
            fp->mac_seen = 1;
        }
        break;
    case NDA_VLAN:
        if (mnl_attr_validate(attr, MNL_TYPE_U16) == 0)
            f->vid = mnl_attr_get_u16(attr);
        break;
    case NDA_MASTER:
        if (mnl_attr_validate(attr, MNL_TYPE_U32) == 0)
            f->master = (int)mnl_attr_get_u32(attr);
        break;
    case NDA_SRC_VNI:
        if (mnl_attr_validate(attr, MNL_TYPE_U32) == 0)
            f->src_vni = mnl_attr_get_u32(attr);
        break;
    case NDA_CACHEINFO:
        if (mnl_attr_get_payload_len(attr) >= sizeof(struct nda_cacheinfo)) {
            struct nda_cacheinfo ci;
            memcpy(&ci, mnl_attr_get_payload(attr), sizeof ci);
            f->updated = ci.ndm_updated;
        }
        break;
    case NDA_DST: {
        uint16_t len = mnl_attr_get_payload_len(attr);
        if (len == 4 || len == 16) {
            memcpy(f->dst, mnl_attr_get_payload(attr), len);
            f->dst_family = len == 4 ? AF_INET : AF_INET6;
        }
        break;
    }
    default:
        break;
    }
    return MNL_CB_OK;
}

int nnve_linux_fdb_parse(const struct nlmsghdr *nlh, struct nnve_linux_fdb *out)
{
    memset(out, 0, sizeof *out);
    if (nlh->nlmsg_type != RTM_NEWNEIGH || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ndmsg))
        return -EINVAL;
    const struct ndmsg *ndm = mnl_nlmsg_get_payload(nlh);
    if (ndm->ndm_family != AF_BRIDGE)
        return -EINVAL;
    out->ifindex = ndm->ndm_ifindex;
    out->state = ndm->ndm_state;
    out->flags = ndm->ndm_flags;
    out->updated = UINT32_MAX;
    struct fdb_parse fp = {.f = out};
    if (mnl_attr_parse(nlh, sizeof *ndm, fdb_attr_cb, &fp) < 0 || !fp.mac_seen) {
        memset(out, 0, sizeof *out);
        return -EINVAL;
    }
    return 0;
}

struct port_parse {
    struct nnve_linux_port *p;
    const struct nlattr *protinfo, *af_spec;
    uint16_t range_begin;
    uint32_t tun_begin_vni;
    uint16_t tun_begin_vid;
    int bad;
};

static void vlan_set(struct nnve_linux_port *p, uint16_t vid, uint16_t flags)
{
    if (vid < 1 || vid > VID_MAX)
        return;
    p->member[vid / 64] |= 1ULL << (vid % 64);
    if (flags & BRIDGE_VLAN_INFO_UNTAGGED)
        p->untagged[vid / 64] |= 1ULL << (vid % 64);
    if (flags & BRIDGE_VLAN_INFO_PVID)
        p->pvid = vid;
}

static int tunnel_cb(const struct nlattr *attr, void *data)
{
    uint32_t *v = data; /* [0] id, [1] vid, [2] flags, [3] bits seen */
    switch (mnl_attr_get_type(attr)) {
    case IFLA_BRIDGE_VLAN_TUNNEL_ID:
        if (mnl_attr_validate(attr, MNL_TYPE_U32) == 0) {
            v[0] = mnl_attr_get_u32(attr);
            v[3] |= 1;
        }
        break;
    case IFLA_BRIDGE_VLAN_TUNNEL_VID:
        if (mnl_attr_validate(attr, MNL_TYPE_U16) == 0) {
            v[1] = mnl_attr_get_u16(attr);
            v[3] |= 2;
        }
        break;
    case IFLA_BRIDGE_VLAN_TUNNEL_FLAGS:
        if (mnl_attr_validate(attr, MNL_TYPE_U16) == 0)
            v[2] = mnl_attr_get_u16(attr);
        break;
    default:
        break;
    }
    return MNL_CB_OK;
}

static int af_spec_cb(const struct nlattr *attr, void *data)
{
    struct port_parse *pp = data;
    struct nnve_linux_port *p = pp->p;
    if (mnl_attr_get_type(attr) == IFLA_BRIDGE_VLAN_INFO) {
        struct bridge_vlan_info vi;
        if (mnl_attr_get_payload_len(attr) != sizeof vi) {
            pp->bad = 1;
            return MNL_CB_OK;
        }
        memcpy(&vi, mnl_attr_get_payload(attr), sizeof vi);
        if (vi.flags & BRIDGE_VLAN_INFO_RANGE_BEGIN) {
            pp->range_begin = vi.vid;
        } else if (vi.flags & BRIDGE_VLAN_INFO_RANGE_END) {
            for (unsigned v = pp->range_begin; v >= 1 && v <= vi.vid && v <= VID_MAX; v++)
                vlan_set(p, (uint16_t)v, vi.flags);
            pp->range_begin = 0;
        } else {
            vlan_set(p, vi.vid, vi.flags);
        }
    } else if (mnl_attr_get_type(attr) == IFLA_BRIDGE_VLAN_TUNNEL_INFO && p->vni_of_vid) {
        uint32_t v[4] = {0, 0, 0, 0};
        if (mnl_attr_validate(attr, MNL_TYPE_NESTED) < 0 ||
            mnl_attr_parse_nested(attr, tunnel_cb, v) < 0 || v[3] != 3 || v[1] < 1 ||
            v[1] > VID_MAX) {
            pp->bad = 1;
            return MNL_CB_OK;
        }
        if (v[2] & BRIDGE_VLAN_INFO_RANGE_BEGIN) {
            pp->tun_begin_vid = (uint16_t)v[1];
            pp->tun_begin_vni = v[0];
        } else if (v[2] & BRIDGE_VLAN_INFO_RANGE_END) {
            for (unsigned vid = pp->tun_begin_vid; vid >= 1 && vid <= v[1]; vid++)
                p->vni_of_vid[vid] = pp->tun_begin_vni + (vid - pp->tun_begin_vid);
            pp->tun_begin_vid = 0;
        } else {
            p->vni_of_vid[v[1]] = v[0];
        }
    }
    return MNL_CB_OK;
}

static int protinfo_cb(const struct nlattr *attr, void *data)
{
    struct nnve_linux_port *p = data;
    if (mnl_attr_get_type(attr) == IFLA_BRPORT_LOCKED && mnl_attr_validate(attr, MNL_TYPE_U8) == 0)
        p->locked = mnl_attr_get_u8(attr) ? 1 : 0;
    return MNL_CB_OK;
}

static int port_attr_cb(const struct nlattr *attr, void *data)
{
    struct port_parse *pp = data;
    switch (mnl_attr_get_type(attr)) {
    case IFLA_IFNAME:
        if (mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0) {
            int n = snprintf(pp->p->name, sizeof pp->p->name, "%s", mnl_attr_get_str(attr));
            if (n < 0 || (size_t)n >= sizeof pp->p->name)
                pp->bad = 1;
        }
        break;
    case IFLA_MASTER:
        if (mnl_attr_validate(attr, MNL_TYPE_U32) == 0)
            pp->p->master = (int)mnl_attr_get_u32(attr);
        break;
    case IFLA_PROTINFO:
        if (mnl_attr_validate(attr, MNL_TYPE_NESTED) == 0)
            pp->protinfo = attr;
        break;
    case IFLA_AF_SPEC:
        if (mnl_attr_validate(attr, MNL_TYPE_NESTED) == 0)
            pp->af_spec = attr;
        break;
    default:
        break;
    }
    return MNL_CB_OK;
}

int nnve_linux_port_parse(const struct nlmsghdr *nlh, struct nnve_linux_port *port)
{
    uint32_t *table = port->vni_of_vid;
    memset(port, 0, sizeof *port);
    port->vni_of_vid = table;
    port->locked = -1;
    if (nlh->nlmsg_type != RTM_NEWLINK || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ifinfomsg))
        return -EINVAL;
    const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
    port->ifindex = ifm->ifi_index;
    struct port_parse pp = {.p = port};
    if (mnl_attr_parse(nlh, sizeof *ifm, port_attr_cb, &pp) < 0 || pp.bad)
        return -EINVAL;
    if (pp.protinfo != NULL)
        (void)mnl_attr_parse_nested(pp.protinfo, protinfo_cb, port);
    if (pp.af_spec != NULL && (mnl_attr_parse_nested(pp.af_spec, af_spec_cb, &pp) < 0 || pp.bad))
        return -EINVAL;
    return 0;
}

static int vlan_has(const struct nnve_linux_port *p, uint16_t vid)
{
    return vid >= 1 && vid <= VID_MAX && (p->member[vid / 64] >> (vid % 64)) & 1;
}

static int vlan_untagged(const struct nnve_linux_port *p, uint16_t vid)
{
    return vid >= 1 && vid <= VID_MAX && (p->untagged[vid / 64] >> (vid % 64)) & 1;
}

/* ------------------------------------------------------------------------- model --- */

/* A VN on a port: the port is a tagged member of `tag`, mapped to `vni`. */
struct vlan_ent {
    char port[IF_NAMESIZE];
    uint16_t tag;
    uint32_t vni; /* 0: VN known by name only, no overlay mapping */
    int declared;
};

/* A port we locked (or found locked while carrying declared VNs). */
struct port_ent {
    char name[IF_NAMESIZE];
    int was_locked; /* locked before we took it: never unlocked by us */
    int locked;     /* we know it locked */
};

struct ip_ent {
    int family;
    uint8_t ip[16];
    uint8_t mac[6];
    int svi; /* ifindex the entry is installed on; 0: not installed */
};

struct tsi_ent {
    char port[IF_NAMESIZE];
    uint16_t tag;
    struct sncp_tsi_id id;
    int active;
    int declared;
    unsigned n_macs;
    uint8_t macs[SNCP_MAX_ADDRS + 1][6]; /* installed static FDB entries on (port, tag) */
    unsigned n_ips;
    struct ip_ent ips[SNCP_MAX_ADDRS];
    struct nnve_nft_elem *fl; /* installed IP anti-spoofing elements */
    unsigned n_fl;
};

struct remote {
    int family;
    uint8_t ip[16];
};

struct kneigh {
    int ifindex;
    int family;
    uint8_t proto; /* NDA_PROTOCOL, 0 when absent */
    uint8_t flags; /* ndm_flags */
    uint8_t ip[16];
    uint8_t mac[6];
};

/* The kernel as read by reconcile_begin(). */
struct kview {
    struct nnve_linux_port *ports;
    size_t n_ports, cap_ports;
    uint32_t *vni_of_vid; /* external device's tunnel map */
    struct nnve_linux_fdb *fdb;
    size_t n_fdb, cap_fdb;
    struct kneigh *neighs; /* NUD_NOARP IPv4/IPv6 neighbour entries */
    size_t n_neighs, cap_neighs;
    struct nnve_nft_elem *nft; /* elements of the anti-spoofing table */
    size_t n_nft;
};

struct linux_backend {
    struct nnve_backend up;
    struct snv_nl *nl;
    char bridge[IF_NAMESIZE];
    int br_ifindex;
    uint16_t default_pvid;
    enum nnve_linux_vxlan_mode mode;
    char vxdev[IF_NAMESIZE];
    int vx_ifindex; /* external mode */
    int local_family;
    uint8_t local[16];
    uint16_t vxlan_port;
    struct remote *remotes;
    size_t n_remotes;
    int evpn;                /* remote_vteps = evpn */
    char *vteps_file;        /* <state_dir>/linux-remote-vteps, NULL without a state_dir */
    struct remote *recorded; /* the remote VTEPs of the last run (vteps_file) */
    size_t n_recorded;
    int old_vx_ifindex; /* per-vni mode: the external device, if there is one (reconcile) */
    enum nnve_linux_anti_spoofing anti_spoofing;
    struct nnve_nft *nft; /* anti_spoofing on: the IP filter table */

    struct vlan_ent **vlans;
    size_t n_vlans, cap_vlans;
    struct port_ent **ports;
    size_t n_ports, cap_ports;
    struct tsi_ent **tsis;
    size_t n_tsis, cap_tsis;

    int reconciling;
    struct kview kv;
    unsigned char req[8192];
};

static struct linux_backend *lb_cast(struct nnve_backend *b)
{
    return (struct linux_backend *)b;
}

/* Room for one more entry in an array of `n` entries of `elem` bytes with capacity *cap.
 * Returns the array (moved, perhaps), or NULL when out of memory (the old one stays). */
static void *vec_reserve(void *arr, size_t n, size_t *cap, size_t elem)
{
    if (n < *cap)
        return arr;
    size_t nc = *cap ? *cap * 2 : 16;
    void *na = realloc(arr, nc * elem);
    if (na != NULL)
        *cap = nc;
    return na;
}

static const char *reason_of(const struct linux_backend *lb)
{
    return snv_nl_reason(lb->nl);
}

static const char *reason_sep(const struct linux_backend *lb)
{
    return snv_nl_reason(lb->nl)[0] ? ": " : "";
}

/* Sends a built request and waits for the ack. */
/* Dumps: the builders leave the request type's flags to the sender. */
static int dump(struct linux_backend *lb, struct nlmsghdr *nlh,
                int (*cb)(const struct nlmsghdr *nlh, void *data), void *data)
{
    nlh->nlmsg_flags |= NLM_F_DUMP;
    return snv_nl_dump(lb->nl, nlh, cb, data, NULL);
}

static int request(struct linux_backend *lb, struct nlmsghdr *nlh)
{
    if (nlh == NULL)
        return -EINVAL;
    SNV_DBG(MOD, "linux: request type=%u flags=%#x len=%u", nlh->nlmsg_type, nlh->nlmsg_flags,
            nlh->nlmsg_len);
    return snv_nl_request(lb->nl, nlh, NULL, NULL, NULL);
}

/* ---------------------------------------------------------------- link look-ups --- */

struct link_info {
    int ifindex;
    int master;
    int link;
    char kind[16];
    uint16_t vlan_id;
    int vlan_filtering;
    uint16_t default_pvid;
    int locked;         /* bridge ports: IFLA_BRPORT_LOCKED; -1 when not reported */
    int learning;       /* bridge ports: IFLA_BRPORT_LEARNING; -1 when not reported */
    int neigh_suppress; /* bridge ports: IFLA_BRPORT_NEIGH_SUPPRESS; -1 when not reported */
};

static int slave_data_cb(const struct nlattr *attr, void *data)
{
    struct link_info *li = data;
    if (mnl_attr_validate(attr, MNL_TYPE_U8) < 0)
        return MNL_CB_OK;
    switch (mnl_attr_get_type(attr)) {
    case IFLA_BRPORT_LOCKED:
        li->locked = mnl_attr_get_u8(attr) ? 1 : 0;
        break;
    case IFLA_BRPORT_LEARNING:
        li->learning = mnl_attr_get_u8(attr) ? 1 : 0;
        break;
    case IFLA_BRPORT_NEIGH_SUPPRESS:
        li->neigh_suppress = mnl_attr_get_u8(attr) ? 1 : 0;
        break;
    default:
        break;
    }
    return MNL_CB_OK;
}

static int link_data_cb(const struct nlattr *attr, void *data)
{
    struct link_info *li = data;
    uint16_t t = mnl_attr_get_type(attr);
    if (!strcmp(li->kind, "vlan") && t == IFLA_VLAN_ID &&
        mnl_attr_validate(attr, MNL_TYPE_U16) == 0)
        li->vlan_id = mnl_attr_get_u16(attr);
    if (!strcmp(li->kind, "bridge") && t == IFLA_BR_VLAN_FILTERING &&
        mnl_attr_validate(attr, MNL_TYPE_U8) == 0)
        li->vlan_filtering = mnl_attr_get_u8(attr);
    if (!strcmp(li->kind, "bridge") && t == IFLA_BR_VLAN_DEFAULT_PVID &&
        mnl_attr_validate(attr, MNL_TYPE_U16) == 0)
        li->default_pvid = mnl_attr_get_u16(attr);
    return MNL_CB_OK;
}

static int linkinfo_cb(const struct nlattr *attr, void *data)
{
    const struct nlattr **tb = data;
    uint16_t t = mnl_attr_get_type(attr);
    if (t == IFLA_INFO_KIND && mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
        tb[0] = attr;
    if (t == IFLA_INFO_DATA && mnl_attr_validate(attr, MNL_TYPE_NESTED) == 0)
        tb[1] = attr;
    if (t == IFLA_INFO_SLAVE_DATA && mnl_attr_validate(attr, MNL_TYPE_NESTED) == 0)
        tb[2] = attr;
    return MNL_CB_OK;
}

static int link_attr_cb(const struct nlattr *attr, void *data)
{
    const struct nlattr **tb = data;
    uint16_t t = mnl_attr_get_type(attr);
    if (t == IFLA_MASTER && mnl_attr_validate(attr, MNL_TYPE_U32) == 0)
        tb[0] = attr;
    if (t == IFLA_LINK && mnl_attr_validate(attr, MNL_TYPE_U32) == 0)
        tb[1] = attr;
    if (t == IFLA_LINKINFO && mnl_attr_validate(attr, MNL_TYPE_NESTED) == 0)
        tb[2] = attr;
    return MNL_CB_OK;
}

static int link_parse(const struct nlmsghdr *nlh, struct link_info *li)
{
    memset(li, 0, sizeof *li);
    li->vlan_filtering = -1;
    li->locked = -1;
    li->learning = -1;
    li->neigh_suppress = -1;
    if (nlh->nlmsg_type != RTM_NEWLINK || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ifinfomsg))
        return -EINVAL;
    const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
    li->ifindex = ifm->ifi_index;
    const struct nlattr *tb[3] = {NULL, NULL, NULL};
    if (mnl_attr_parse(nlh, sizeof *ifm, link_attr_cb, tb) < 0)
        return -EINVAL;
    if (tb[0])
        li->master = (int)mnl_attr_get_u32(tb[0]);
    if (tb[1])
        li->link = (int)mnl_attr_get_u32(tb[1]);
    if (tb[2]) {
        const struct nlattr *info[3] = {NULL, NULL, NULL};
        (void)mnl_attr_parse_nested(tb[2], linkinfo_cb, info);
        if (info[0])
            snprintf(li->kind, sizeof li->kind, "%s", mnl_attr_get_str(info[0]));
        if (info[1])
            (void)mnl_attr_parse_nested(info[1], link_data_cb, li);
        if (info[2])
            (void)mnl_attr_parse_nested(info[2], slave_data_cb, li);
    }
    return 0;
}

static int getlink_cb(const struct nlmsghdr *nlh, void *data)
{
    return link_parse(nlh, data) < 0 ? -EPROTO : 0;
}

/* Reads one link by name.  Returns 0 and *li, -ENODEV when absent, or -errno. */
static int link_get(struct linux_backend *lb, const char *name, struct link_info *li)
{
    memset(li, 0, sizeof *li);
    li->locked = -1;
    li->learning = -1;
    li->neigh_suppress = -1;
    struct nlmsghdr *nlh = put_link(lb->req, sizeof lb->req, RTM_GETLINK, 0, AF_UNSPEC, 0);
    if (strlen(name) >= IF_NAMESIZE)
        return -ENODEV;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    li->ifindex = 0;
    int r = snv_nl_request(lb->nl, nlh, getlink_cb, li, NULL);
    if (r == -ENODEV || (r == 0 && li->ifindex <= 0))
        return -ENODEV;
    return r;
}

struct svi_find {
    int br;
    uint16_t vid;
    int found;
};

static int svi_cb(const struct nlmsghdr *nlh, void *data)
{
    struct svi_find *sf = data;
    struct link_info li;
    if (link_parse(nlh, &li) == 0 && !strcmp(li.kind, "vlan") && li.link == sf->br &&
        li.vlan_id == sf->vid && sf->found == 0)
        sf->found = li.ifindex;
    return 0;
}

/* The 802.1Q upper of the bridge for `vid` (its SVI), or 0. */
static int svi_find(struct linux_backend *lb, uint16_t vid)
{
    struct nlmsghdr *nlh = put_link(lb->req, sizeof lb->req, RTM_GETLINK, 0, AF_UNSPEC, 0);
    /* the kernel dumps only 802.1Q devices (a filter older kernels ignore: svi_cb checks) */
    struct nlattr *li = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "vlan");
    mnl_attr_nest_end(nlh, li);
    struct svi_find sf = {.br = lb->br_ifindex, .vid = vid};
    int r = dump(lb, nlh, svi_cb, &sf);
    if (r < 0) {
        SNV_WARN(MOD, "linux: cannot list links to find the vlan interface vlan=%u: %s", vid,
                 strerror(-r));
        return 0;
    }
    return sf.found;
}

/* The VLAN ID of layer-3 interface `ifindex` (an 802.1Q device), for log lines; 0 when
 * unknown. */
static uint16_t svi_vid(struct linux_backend *lb, int ifindex)
{
    char name[IF_NAMESIZE];
    struct link_info li;
    if (if_indextoname((unsigned)ifindex, name) == NULL || link_get(lb, name, &li) < 0)
        return 0;
    return li.vlan_id;
}

/* Resolves a switch port: it must exist and be a port of our bridge.  Returns its
 * ifindex, -ENODEV (absent), -EINVAL (not on the bridge), or -errno; logs with `what`. */
static int port_resolve(struct linux_backend *lb, const char *port, uint16_t tag, const char *what,
                        int quiet_absent, struct link_info *out)
{
    struct link_info tmp = {0};
    struct link_info *lip = out ? out : &tmp;
    int r = link_get(lb, port, lip);
    struct link_info li = *lip;
    if (r == -ENODEV) {
        if (!quiet_absent)
            OP_ERR("linux: %s: port does not exist port=%s vlan=%u", what, port, tag);
        return -ENODEV;
    }
    if (r < 0) {
        OP_ERR("linux: %s: cannot read port port=%s vlan=%u: %s", what, port, tag, strerror(-r));
        return r;
    }
    if (li.master != lb->br_ifindex) {
        OP_ERR("linux: %s: not a port of the bridge port=%s bridge=%s vlan=%u", what, port,
               lb->bridge, tag);
        return -EINVAL;
    }
    return li.ifindex;
}

/* ------------------------------------------------------------------ kernel view --- */

static void kview_free(struct kview *kv)
{
    free(kv->nft);
    free(kv->neighs);
    free(kv->ports);
    free(kv->vni_of_vid);
    free(kv->fdb);
    memset(kv, 0, sizeof *kv);
}

struct kview_ctx {
    struct linux_backend *lb;
    int err;
};

static int kview_link_cb(const struct nlmsghdr *nlh, void *data)
{
    struct kview_ctx *c = data;
    struct kview *kv = &c->lb->kv;
    if (mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ifinfomsg))
        return 0;
    const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
    if (kv->n_ports == kv->cap_ports) {
        size_t nc = kv->cap_ports ? kv->cap_ports * 2 : 16;
        struct nnve_linux_port *np = realloc(kv->ports, nc * sizeof *np);
        if (np == NULL)
            return -ENOMEM;
        kv->ports = np;
        kv->cap_ports = nc;
    }
    struct nnve_linux_port *p = &kv->ports[kv->n_ports];
    p->vni_of_vid = ifm->ifi_index == c->lb->vx_ifindex ? kv->vni_of_vid : NULL;
    if (nnve_linux_port_parse(nlh, p) < 0 || p->master != c->lb->br_ifindex)
        return 0;
    p->vni_of_vid = NULL;
    kv->n_ports++;
    return 0;
}

static int kview_fdb_cb(const struct nlmsghdr *nlh, void *data)
{
    struct kview_ctx *c = data;
    struct kview *kv = &c->lb->kv;
    struct nnve_linux_fdb f;
    if (nnve_linux_fdb_parse(nlh, &f) < 0)
        return 0;
    int ours_bridge = f.master == c->lb->br_ifindex && f.vid != 0;
    int flood = (f.flags & NTF_SELF) && !memcmp(f.mac, zero_mac, 6) && f.dst_family != 0;
    if (!ours_bridge && !flood)
        return 0;
    if (kv->n_fdb == kv->cap_fdb) {
        size_t nc = kv->cap_fdb ? kv->cap_fdb * 2 : 64;
        struct nnve_linux_fdb *nf = realloc(kv->fdb, nc * sizeof *nf);
        if (nf == NULL)
            return -ENOMEM;
        kv->fdb = nf;
        kv->cap_fdb = nc;
    }
    kv->fdb[kv->n_fdb++] = f;
    return 0;
}

struct neigh_parse {
    struct kneigh *n;
    int have_dst, have_mac;
};

static int neigh_attr_cb(const struct nlattr *attr, void *data)
{
    struct neigh_parse *np = data;
    uint16_t len = mnl_attr_get_payload_len(attr);
    if (mnl_attr_get_type(attr) == NDA_DST && len == ip_len(np->n->family)) {
        memcpy(np->n->ip, mnl_attr_get_payload(attr), len);
        np->have_dst = 1;
    } else if (mnl_attr_get_type(attr) == NDA_LLADDR && len == 6) {
        memcpy(np->n->mac, mnl_attr_get_payload(attr), 6);
        np->have_mac = 1;
    } else if (mnl_attr_get_type(attr) == NDA_PROTOCOL && len == 1) {
        np->n->proto = mnl_attr_get_u8(attr);
    }
    return MNL_CB_OK;
}

static int kview_neigh_cb(const struct nlmsghdr *nlh, void *data)
{
    struct kview_ctx *c = data;
    struct kview *kv = &c->lb->kv;
    if (nlh->nlmsg_type != RTM_NEWNEIGH || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ndmsg))
        return 0;
    const struct ndmsg *ndm = mnl_nlmsg_get_payload(nlh);
    if ((ndm->ndm_family != AF_INET && ndm->ndm_family != AF_INET6) || ndm->ndm_state != NUD_NOARP)
        return 0;
    struct kneigh n = {
        .ifindex = ndm->ndm_ifindex, .family = ndm->ndm_family, .flags = ndm->ndm_flags};
    struct neigh_parse np = {.n = &n};
    if (mnl_attr_parse(nlh, sizeof *ndm, neigh_attr_cb, &np) < 0 || !np.have_dst || !np.have_mac)
        return 0;
    if (kv->n_neighs == kv->cap_neighs) {
        size_t nc = kv->cap_neighs ? kv->cap_neighs * 2 : 32;
        struct kneigh *nn = realloc(kv->neighs, nc * sizeof *nn);
        if (nn == NULL)
            return -ENOMEM;
        kv->neighs = nn;
        kv->cap_neighs = nc;
    }
    kv->neighs[kv->n_neighs++] = n;
    return 0;
}

static int kview_has_neigh(const struct linux_backend *lb, int ifindex, const struct ip_ent *ie)
{
    for (size_t i = 0; i < lb->kv.n_neighs; i++) {
        const struct kneigh *n = &lb->kv.neighs[i];
        if (n->ifindex == ifindex && n->family == ie->family &&
            !memcmp(n->ip, ie->ip, ip_len(ie->family)) && !memcmp(n->mac, ie->mac, 6))
            return 1;
    }
    return 0;
}

static int kview_load(struct linux_backend *lb)
{
    kview_free(&lb->kv);
    lb->kv.vni_of_vid = calloc(VID_MAX + 2, sizeof *lb->kv.vni_of_vid);
    if (lb->kv.vni_of_vid == NULL)
        return -ENOMEM;
    struct kview_ctx c = {.lb = lb};
    struct nlmsghdr *nlh = put_link(lb->req, sizeof lb->req, RTM_GETLINK, 0, AF_BRIDGE, 0);
    mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_BRVLAN);
    int r = dump(lb, nlh, kview_link_cb, &c);
    if (r < 0) {
        OP_ERR("linux: cannot read the bridge ports bridge=%s: %s%s%s", lb->bridge, strerror(-r),
               reason_sep(lb), reason_of(lb));
        return r;
    }
    nlh = put_neigh(lb->req, sizeof lb->req, RTM_GETNEIGH, 0, AF_BRIDGE, 0, 0, 0);
    r = dump(lb, nlh, kview_fdb_cb, &c);
    if (r < 0) {
        OP_ERR("linux: cannot read the forwarding table bridge=%s: %s", lb->bridge, strerror(-r));
        return r;
    }
    static const unsigned char families[] = {AF_INET, AF_INET6};
    for (size_t i = 0; i < sizeof families; i++) {
        nlh = put_neigh(lb->req, sizeof lb->req, RTM_GETNEIGH, 0, families[i], 0, 0, 0);
        r = dump(lb, nlh, kview_neigh_cb, &c);
        if (r == -EAFNOSUPPORT)
            continue;
        if (r < 0) {
            OP_ERR("linux: cannot read the neighbour tables: %s", strerror(-r));
            return r;
        }
    }
    return 0;
}

static const struct nnve_linux_port *kview_port(const struct linux_backend *lb, const char *name)
{
    for (size_t i = 0; i < lb->kv.n_ports; i++)
        if (!strcmp(lb->kv.ports[i].name, name))
            return &lb->kv.ports[i];
    return NULL;
}

static const char *kview_name(const struct linux_backend *lb, int ifindex)
{
    for (size_t i = 0; i < lb->kv.n_ports; i++)
        if (lb->kv.ports[i].ifindex == ifindex)
            return lb->kv.ports[i].name;
    return NULL;
}

static int kview_has_static(const struct linux_backend *lb, int ifindex, uint16_t vid,
                            const uint8_t mac[6])
{
    for (size_t i = 0; i < lb->kv.n_fdb; i++) {
        const struct nnve_linux_fdb *f = &lb->kv.fdb[i];
        if (f->ifindex == ifindex && f->vid == vid && f->master == lb->br_ifindex &&
            f->state == NUD_NOARP && ((f->flags & NTF_STICKY) != 0) == !lb->evpn &&
            !memcmp(f->mac, mac, 6))
            return 1;
    }
    return 0;
}

static int kview_has_flood(const struct linux_backend *lb, int ifindex, uint32_t src_vni,
                           const struct remote *rm)
{
    for (size_t i = 0; i < lb->kv.n_fdb; i++) {
        const struct nnve_linux_fdb *f = &lb->kv.fdb[i];
        if (f->ifindex == ifindex && (f->flags & NTF_SELF) && f->src_vni == src_vni &&
            f->dst_family == rm->family && !memcmp(f->dst, rm->ip, ip_len(rm->family)) &&
            !memcmp(f->mac, zero_mac, 6))
            return 1;
    }
    return 0;
}

/* ------------------------------------------------------------- VN on a port --- */

static struct vlan_ent *vlan_find(struct linux_backend *lb, const char *port, uint16_t tag,
                                  size_t *idx)
{
    for (size_t i = 0; i < lb->n_vlans; i++)
        if (lb->vlans[i]->tag == tag && !strcmp(lb->vlans[i]->port, port)) {
            if (idx)
                *idx = i;
            return lb->vlans[i];
        }
    return NULL;
}

/* The VNI `tag` is mapped to in our model, or 0 with *found = 0. */
static uint32_t tag_vni(const struct linux_backend *lb, uint16_t tag, int *found)
{
    *found = 0;
    for (size_t i = 0; i < lb->n_vlans; i++)
        if (lb->vlans[i]->tag == tag) {
            *found = 1;
            return lb->vlans[i]->vni;
        }
    return 0;
}

static int port_carries_vn(const struct linux_backend *lb, const char *port)
{
    for (size_t i = 0; i < lb->n_vlans; i++)
        if (!strcmp(lb->vlans[i]->port, port))
            return 1;
    return 0;
}

static struct port_ent *port_ent_find(struct linux_backend *lb, const char *name, size_t *idx)
{
    for (size_t i = 0; i < lb->n_ports; i++)
        if (!strcmp(lb->ports[i]->name, name)) {
            if (idx)
                *idx = i;
            return lb->ports[i];
        }
    return NULL;
}

static void per_vni_name(uint32_t vni, char name[IF_NAMESIZE])
{
    snprintf(name, IF_NAMESIZE, "vx-%u", (unsigned)vni);
}

/* Installs (add = 1) or removes the flood entries of `vni` on device `ifindex`. */
static int flood_set(struct linux_backend *lb, int add, int ifindex, uint32_t vni, const char *dev)
{
    int ret = 0;
    uint32_t src_vni = lb->mode == NNVE_LINUX_VXLAN_EXTERNAL ? vni : 0;
    for (size_t i = 0; i < lb->n_remotes; i++) {
        const struct remote *rm = &lb->remotes[i];
        if (add && lb->reconciling && kview_has_flood(lb, ifindex, src_vni, rm))
            continue;
        int r = request(lb, nnve_linux_msg_flood(lb->req, sizeof lb->req,
                                                 add ? RTM_NEWNEIGH : RTM_DELNEIGH, ifindex,
                                                 rm->family, rm->ip, src_vni));
        if (r == -ENOENT && !add)
            r = 0;
        if (r < 0) {
            char ip[INET6_ADDRSTRLEN];
            inet_ntop(rm->family, rm->ip, ip, sizeof ip);
            OP_ERR("linux: cannot %s flood entry dev=%s vni=%u remote=%s: %s%s%s",
                   add ? "add" : "remove", dev, (unsigned)vni, ip, strerror(-r), reason_sep(lb),
                   reason_of(lb));
            if (ret == 0)
                ret = r;
        } else if (add) {
            char ip[INET6_ADDRSTRLEN];
            inet_ntop(rm->family, rm->ip, ip, sizeof ip);
            OP_INFO("linux: flood entry added dev=%s vni=%u remote=%s", dev, (unsigned)vni, ip);
        }
    }
    return ret;
}

/* Maps `tag` to `vni` (the first port of the tag). */
static int tag_map(struct linux_backend *lb, uint16_t tag, uint32_t vni)
{
    if (lb->mode == NNVE_LINUX_VXLAN_EXTERNAL) {
        const struct nnve_linux_port *kp = lb->reconciling ? kview_port(lb, lb->vxdev) : NULL;
        if (!(kp && vlan_has(kp, tag) && lb->kv.vni_of_vid[tag] == vni)) {
            int r = request(lb, nnve_linux_msg_vlan(lb->req, sizeof lb->req, RTM_SETLINK,
                                                    lb->vx_ifindex, tag, 0, vni));
            if (r == -EEXIST) {
                /* a tunnel id is there already: fine if it is this VNI */
                struct kview saved = lb->kv;
                memset(&lb->kv, 0, sizeof lb->kv);
                int lr = kview_load(lb);
                uint32_t have = lr == 0 ? lb->kv.vni_of_vid[tag] : 0;
                kview_free(&lb->kv);
                lb->kv = saved;
                if (lr == 0 && have == vni)
                    r = 0;
                else if (lr == 0)
                    OP_ERR("linux: vlan already mapped to another vni dev=%s vlan=%u "
                           "vni=%u mapped=%u",
                           lb->vxdev, tag, (unsigned)vni, (unsigned)have);
            }
            if (r < 0) {
                OP_ERR("linux: cannot map vlan to vni dev=%s vlan=%u vni=%u: %s%s%s", lb->vxdev,
                       tag, (unsigned)vni, strerror(-r), reason_sep(lb), reason_of(lb));
                return r;
            }
            OP_INFO("linux: vlan mapped dev=%s vlan=%u vni=%u", lb->vxdev, tag, (unsigned)vni);
        }
        return flood_set(lb, 1, lb->vx_ifindex, vni, lb->vxdev);
    }

    char name[IF_NAMESIZE];
    per_vni_name(vni, name);
    struct link_info li;
    int r = link_get(lb, name, &li);
    if (r == -ENODEV) {
        r = request(lb,
                    nnve_linux_msg_vxlan_new(lb->req, sizeof lb->req, name, vni, lb->local_family,
                                             lb->local, lb->vxlan_port, lb->br_ifindex));
        if (r == 0)
            r = link_get(lb, name, &li);
        if (r < 0) {
            OP_ERR("linux: cannot create vxlan device dev=%s vni=%u vlan=%u: %s%s%s", name,
                   (unsigned)vni, tag, strerror(-r), reason_sep(lb), reason_of(lb));
            return r;
        }
        OP_INFO("linux: vxlan device created dev=%s vni=%u", name, (unsigned)vni);
    } else if (r < 0) {
        OP_ERR("linux: cannot read vxlan device dev=%s vni=%u: %s", name, (unsigned)vni,
               strerror(-r));
        return r;
    } else if (li.master != lb->br_ifindex) {
        OP_ERR("linux: vxlan device is not a port of the bridge dev=%s bridge=%s vni=%u", name,
               lb->bridge, (unsigned)vni);
        return -EINVAL;
    }
    const struct nnve_linux_port *kp = lb->reconciling ? kview_port(lb, name) : NULL;
    if (!(kp && kp->pvid == tag && vlan_untagged(kp, tag))) {
        r = request(lb, nnve_linux_msg_vlan(lb->req, sizeof lb->req, RTM_SETLINK, li.ifindex, tag,
                                            BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED, 0));
        if (r < 0) {
            OP_ERR("linux: cannot set the vlan of vxlan device dev=%s vlan=%u: %s%s%s", name, tag,
                   strerror(-r), reason_sep(lb), reason_of(lb));
            return r;
        }
    }
    /* The bridge gave the new port its default PVID: that VLAN must not reach the VNI. */
    if (lb->default_pvid != 0 && lb->default_pvid != tag &&
        (kp == NULL || vlan_has(kp, lb->default_pvid))) {
        r = request(lb, nnve_linux_msg_vlan(lb->req, sizeof lb->req, RTM_DELLINK, li.ifindex,
                                            lb->default_pvid, 0, 0));
        if (r < 0 && r != -ENOENT) {
            OP_ERR("linux: cannot remove the default vlan dev=%s vlan=%u: %s%s%s", name,
                   lb->default_pvid, strerror(-r), reason_sep(lb), reason_of(lb));
            return r;
        }
    }
    /* EVPN: the speaker installs the remote MACs, so the bridge must not learn them from the
     * tunnel; and it installs the remote neighbour entries that let the bridge answer ARP
     * and ND for remote TSIs itself (neigh_suppress) instead of flooding them to every VTEP. */
    if (lb->evpn && (li.learning != 0 || li.neigh_suppress != 1)) {
        r = request(lb, nnve_linux_msg_port_evpn(lb->req, sizeof lb->req, li.ifindex, 0, 1));
        if (r < 0) {
            OP_ERR("linux: cannot set learning off and neigh_suppress on dev=%s vni=%u: %s%s%s",
                   name, (unsigned)vni, strerror(-r), reason_sep(lb), reason_of(lb));
            return r;
        }
        OP_INFO("linux: vxlan port set for evpn dev=%s vni=%u learning=off neigh_suppress=on", name,
                (unsigned)vni);
    }
    return flood_set(lb, 1, li.ifindex, vni, name);
}

/* Removes the mapping of `tag` (its last port left). */
static int tag_unmap(struct linux_backend *lb, uint16_t tag, uint32_t vni)
{
    if (lb->mode == NNVE_LINUX_VXLAN_EXTERNAL) {
        int ret = flood_set(lb, 0, lb->vx_ifindex, vni, lb->vxdev);
        int r = request(lb, nnve_linux_msg_vlan(lb->req, sizeof lb->req, RTM_DELLINK,
                                                lb->vx_ifindex, tag, 0, 0));
        if (r == -ENOENT)
            r = 0;
        if (r < 0) {
            OP_ERR("linux: cannot unmap vlan dev=%s vlan=%u vni=%u: %s%s%s", lb->vxdev, tag,
                   (unsigned)vni, strerror(-r), reason_sep(lb), reason_of(lb));
            return r;
        }
        OP_INFO("linux: vlan unmapped dev=%s vlan=%u vni=%u", lb->vxdev, tag, (unsigned)vni);
        return ret;
    }
    char name[IF_NAMESIZE];
    per_vni_name(vni, name);
    struct link_info li;
    int r = link_get(lb, name, &li);
    if (r == -ENODEV)
        return 0;
    if (r == 0 && (strcmp(li.kind, "vxlan") || li.master != lb->br_ifindex)) {
        SNV_WARN(MOD, "linux: not deleting a device that is not ours dev=%s vni=%u", name,
                 (unsigned)vni);
        return 0;
    }
    if (r == 0)
        r = request(lb, put_link(lb->req, sizeof lb->req, RTM_DELLINK, 0, AF_UNSPEC, li.ifindex));
    if (r < 0 && r != -ENODEV) {
        OP_ERR("linux: cannot delete vxlan device dev=%s vni=%u: %s%s%s", name, (unsigned)vni,
               strerror(-r), reason_sep(lb), reason_of(lb));
        return r;
    }
    OP_INFO("linux: vxlan device deleted dev=%s vni=%u vlan=%u", name, (unsigned)vni, tag);
    return 0;
}

static int port_lock(struct linux_backend *lb, const char *port, int ifindex, int lock)
{
    int r = request(lb, nnve_linux_msg_port_locked(lb->req, sizeof lb->req, ifindex, lock));
    if (r < 0)
        OP_ERR("linux: cannot %s port port=%s: %s%s%s", lock ? "lock" : "unlock", port,
               strerror(-r), reason_sep(lb), reason_of(lb));
    else
        OP_INFO("linux: port %s port=%s", lock ? "locked" : "unlocked", port);
    return r;
}

/* Locks `port` for anti-spoofing when it is not yet (`locked`: the kernel says it is). */
static int port_take(struct linux_backend *lb, const char *port, int ifindex, int locked)
{
    if (!lb->anti_spoofing)
        return 0;
    struct port_ent *pe = port_ent_find(lb, port, NULL);
    if (pe && pe->locked)
        return 0;
    if (pe == NULL) {
        pe = calloc(1, sizeof *pe);
        struct port_ent **np =
            pe ? vec_reserve(lb->ports, lb->n_ports, &lb->cap_ports, sizeof *np) : NULL;
        if (np == NULL) {
            free(pe);
            return -ENOMEM;
        }
        lb->ports = np;
        lb->ports[lb->n_ports++] = pe;
        snprintf(pe->name, sizeof pe->name, "%s", port);
        /* Locked before its first VN: the operator's, never unlocked by us.  During a
         * reconcile a locked port carrying declared VNs is taken to be ours. */
        pe->was_locked = locked && !lb->reconciling;
    }
    if (locked) {
        pe->locked = 1;
        return 0;
    }
    int r = port_lock(lb, port, ifindex, 1);
    if (r == 0)
        pe->locked = 1;
    return r;
}

/* Unlocks `port` after its last VN left, if we locked it. */
static int port_release(struct linux_backend *lb, const char *port, int ifindex)
{
    size_t idx;
    struct port_ent *pe = port_ent_find(lb, port, &idx);
    if (pe == NULL || port_carries_vn(lb, port))
        return 0;
    int r = 0;
    if (pe->locked && !pe->was_locked && ifindex > 0)
        r = port_lock(lb, port, ifindex, 0);
    lb->ports[idx] = lb->ports[--lb->n_ports];
    free(pe);
    return r;
}

static int linux_vn_add(struct nnve_backend *b, const char *port, uint16_t tag,
                        const struct nnve_vn *vn)
{
    struct linux_backend *lb = lb_cast(b);
    char vbuf[80];
    nnve_vn_format(vn, vbuf, sizeof vbuf);
    if (tag < 1 || tag > VID_MAX || strlen(port) >= IF_NAMESIZE || port[0] == '\0') {
        OP_ERR("linux: invalid vn_add port=%s vlan=%u vn=%s", port, tag, vbuf);
        return -EINVAL;
    }
    uint32_t vni = vn->has_id ? vn->id : 0;
    if (vni > VNI_MAX) {
        OP_ERR("linux: vn id out of the vni range port=%s vlan=%u vn=%s", port, tag, vbuf);
        return -EINVAL;
    }
    struct vlan_ent *ve = vlan_find(lb, port, tag, NULL);
    if (ve && ve->vni == vni) {
        ve->declared = 1;
        return 0;
    }
    int found;
    uint32_t have = tag_vni(lb, tag, &found);
    if (found && have != vni) {
        OP_ERR("linux: vlan already carries another vn port=%s vlan=%u vn=%s vni=%u", port, tag,
               vbuf, (unsigned)have);
        return -EEXIST;
    }
    struct link_info pli;
    int ifindex = port_resolve(lb, port, tag, "vn_add", 0, &pli);
    if (ifindex < 0)
        return ifindex;
    const struct nnve_linux_port *kp = lb->reconciling ? kview_port(lb, port) : NULL;
    int added = 0;
    if (!(kp && vlan_has(kp, tag) && !vlan_untagged(kp, tag))) {
        int r = request(
            lb, nnve_linux_msg_vlan(lb->req, sizeof lb->req, RTM_SETLINK, ifindex, tag, 0, 0));
        if (r < 0) {
            OP_ERR("linux: cannot add vlan to port port=%s vlan=%u vn=%s: %s%s%s", port, tag, vbuf,
                   strerror(-r), reason_sep(lb), reason_of(lb));
            return r;
        }
        added = 1;
        OP_INFO("linux: vlan added port=%s vlan=%u vn=%s", port, tag, vbuf);
    }
    if (!found && vni != 0) {
        int r = tag_map(lb, tag, vni);
        if (r < 0) {
            /* without its overlay mapping the membership is not installed either */
            if (added && request(lb, nnve_linux_msg_vlan(lb->req, sizeof lb->req, RTM_DELLINK,
                                                         ifindex, tag, 0, 0)) == 0)
                OP_INFO("linux: vlan removed again port=%s vlan=%u vn=%s", port, tag, vbuf);
            return r;
        }
    } else if (!found) {
        SNV_WARN(MOD,
                 "linux: vn has no id, vlan not mapped to the overlay port=%s vlan=%u "
                 "vn=%s",
                 port, tag, vbuf);
    }
    ve = calloc(1, sizeof *ve);
    struct vlan_ent **nv =
        ve ? vec_reserve(lb->vlans, lb->n_vlans, &lb->cap_vlans, sizeof *nv) : NULL;
    if (nv == NULL) {
        free(ve);
        return -ENOMEM;
    }
    lb->vlans = nv;
    lb->vlans[lb->n_vlans++] = ve;
    snprintf(ve->port, sizeof ve->port, "%s", port);
    ve->tag = tag;
    ve->vni = vni;
    ve->declared = 1;
    return port_take(lb, port, ifindex, pli.locked == 1);
}

/* Removes one VN membership; `ve` is freed. */
static int vlan_remove(struct linux_backend *lb, struct vlan_ent *ve, size_t idx)
{
    char port[IF_NAMESIZE];
    snprintf(port, sizeof port, "%s", ve->port);
    uint16_t tag = ve->tag;
    uint32_t vni = ve->vni;
    int ret = 0;
    int ifindex = port_resolve(lb, port, tag, "vn_remove", 1, NULL);
    if (ifindex > 0) {
        int r = request(
            lb, nnve_linux_msg_vlan(lb->req, sizeof lb->req, RTM_DELLINK, ifindex, tag, 0, 0));
        if (r < 0 && r != -ENOENT) {
            OP_ERR("linux: cannot remove vlan from port port=%s vlan=%u vni=%u: %s%s%s", port, tag,
                   (unsigned)vni, strerror(-r), reason_sep(lb), reason_of(lb));
            return r;
        }
        OP_INFO("linux: vlan removed port=%s vlan=%u vni=%u", port, tag, (unsigned)vni);
    } else if (ifindex != -ENODEV) {
        return ifindex;
    }
    lb->vlans[idx] = lb->vlans[--lb->n_vlans];
    free(ve);
    int found;
    (void)tag_vni(lb, tag, &found);
    if (!found && vni != 0)
        ret = tag_unmap(lb, tag, vni);
    int r = port_release(lb, port, ifindex);
    return ret < 0 ? ret : r;
}

static int linux_vn_remove(struct nnve_backend *b, const char *port, uint16_t tag,
                           const struct nnve_vn *vn)
{
    struct linux_backend *lb = lb_cast(b);
    (void)vn;
    size_t idx;
    struct vlan_ent *ve = vlan_find(lb, port, tag, &idx);
    if (ve == NULL)
        return 0;
    return vlan_remove(lb, ve, idx);
}

/* ------------------------------------------------------------------------- TSIs --- */

struct want {
    unsigned n_macs;
    uint8_t macs[SNCP_MAX_ADDRS + 1][6];
    unsigned n_ips;
    struct ip_ent ips[SNCP_MAX_ADDRS];
};

static int mac_in(const uint8_t (*macs)[6], unsigned n, const uint8_t mac[6])
{
    for (unsigned i = 0; i < n; i++)
        if (!memcmp(macs[i], mac, 6))
            return 1;
    return 0;
}

static int ip_in(const struct ip_ent *ips, unsigned n, const struct ip_ent *x)
{
    for (unsigned i = 0; i < n; i++)
        if (ips[i].family == x->family && !memcmp(ips[i].ip, x->ip, 16) &&
            !memcmp(ips[i].mac, x->mac, 6))
            return 1;
    return 0;
}

static void want_build(struct want *w, const struct sncp_tsi_id *tsi, const struct sncp_addr *addrs,
                       unsigned n_addrs)
{
    memset(w, 0, sizeof *w);
    if (memcmp(tsi->mac, zero_mac, 6))
        memcpy(w->macs[w->n_macs++], tsi->mac, 6);
    for (unsigned i = 0; i < n_addrs && i < SNCP_MAX_ADDRS; i++) {
        const struct sncp_addr *a = &addrs[i];
        int has_mac = a->type == SNCP_ADDR_MAC || a->type == SNCP_ADDR_IPV4_MAC ||
                      a->type == SNCP_ADDR_IPV6_MAC;
        if (has_mac && memcmp(a->mac, zero_mac, 6) && !mac_in(w->macs, w->n_macs, a->mac) &&
            w->n_macs < SNCP_MAX_ADDRS + 1)
            memcpy(w->macs[w->n_macs++], a->mac, 6);
        int fam = a->type == SNCP_ADDR_IPV4 || a->type == SNCP_ADDR_IPV4_MAC   ? AF_INET
                  : a->type == SNCP_ADDR_IPV6 || a->type == SNCP_ADDR_IPV6_MAC ? AF_INET6
                                                                               : 0;
        if (fam == 0)
            continue;
        struct ip_ent ie = {.family = fam};
        memcpy(ie.ip, a->ip, ip_len(fam));
        memcpy(ie.mac, has_mac ? a->mac : tsi->mac, 6);
        if (!memcmp(ie.mac, zero_mac, 6) || ip_in(w->ips, w->n_ips, &ie))
            continue;
        w->ips[w->n_ips++] = ie;
    }
}

static struct tsi_ent *tsi_find(struct linux_backend *lb, const char *port,
                                const struct sncp_tsi_id *id, size_t *idx)
{
    for (size_t i = 0; i < lb->n_tsis; i++)
        if (!memcmp(&lb->tsis[i]->id, id, sizeof *id) && !strcmp(lb->tsis[i]->port, port)) {
            if (idx)
                *idx = i;
            return lb->tsis[i];
        }
    return NULL;
}

/* Another active TSI on (port, tag) than `self` holds `mac`. */
static int mac_shared(const struct linux_backend *lb, const struct tsi_ent *self,
                      const uint8_t mac[6])
{
    for (size_t i = 0; i < lb->n_tsis; i++) {
        const struct tsi_ent *t = lb->tsis[i];
        if (t != self && t->tag == self->tag && !strcmp(t->port, self->port) &&
            mac_in((const uint8_t(*)[6])t->macs, t->n_macs, mac))
            return 1;
    }
    return 0;
}

/* An instance other than `self` that has `mac` installed on VLAN `tag`, at any port: of
 * self's own TSI_ID with `twin` (its migration twin), else of another TSI.  The bridge keeps
 * one FDB entry per (MAC, VLAN), so adding it for self (NLM_F_REPLACE) would take it from
 * that instance: the entry may move between the two instances of one TSI (it follows the
 * latest activation, PROTOCOL.md §9.3), never from another TSI. */
static struct tsi_ent *mac_holder(const struct linux_backend *lb, const struct tsi_ent *self,
                                  uint16_t tag, const uint8_t mac[6], int twin)
{
    for (size_t i = 0; i < lb->n_tsis; i++) {
        struct tsi_ent *t = lb->tsis[i];
        if (t != self && t->tag == tag && !memcmp(&t->id, &self->id, sizeof t->id) == !!twin &&
            mac_in((const uint8_t(*)[6])t->macs, t->n_macs, mac))
            return t;
    }
    return NULL;
}

/* Whether instance t has the IP of `ie` on VLAN `tag`: a neighbour entry, or an
 * anti-spoofing element. */
static int ip_held(const struct tsi_ent *t, uint16_t tag, const struct ip_ent *ie)
{
    for (unsigned j = 0; j < t->n_ips; j++)
        if (t->tag == tag && t->ips[j].family == ie->family && !memcmp(t->ips[j].ip, ie->ip, 16))
            return 1;
    for (unsigned j = 0; j < t->n_fl; j++)
        if (t->fl[j].vid == tag && t->fl[j].family == ie->family &&
            !memcmp(t->fl[j].ip, ie->ip, 16))
            return 1;
    return 0;
}

/* An instance of another TSI than self's with the IP of `ie` on VLAN `tag`, or NULL. */
static const struct tsi_ent *ip_holder(const struct linux_backend *lb, const struct tsi_ent *self,
                                       uint16_t tag, const struct ip_ent *ie)
{
    for (size_t i = 0; i < lb->n_tsis; i++) {
        const struct tsi_ent *t = lb->tsis[i];
        if (t != self && memcmp(&t->id, &self->id, sizeof t->id) && ip_held(t, tag, ie))
            return t;
    }
    return NULL;
}

/* Another instance of self's TSI_ID with the very neighbour entry `ie` (same interface, IP
 * and MAC): the entry is shared and stays while that instance holds it. */
static int ip_twin_holds(const struct linux_backend *lb, const struct tsi_ent *self,
                         const struct ip_ent *ie)
{
    for (size_t i = 0; i < lb->n_tsis; i++) {
        const struct tsi_ent *t = lb->tsis[i];
        if (t == self || memcmp(&t->id, &self->id, sizeof t->id))
            continue;
        for (unsigned j = 0; j < t->n_ips; j++)
            if (t->ips[j].svi == ie->svi && t->ips[j].family == ie->family &&
                !memcmp(t->ips[j].ip, ie->ip, 16) && !memcmp(t->ips[j].mac, ie->mac, 6))
                return 1;
    }
    return 0;
}

/* Drops from `w` every MAC and IP that an instance of another TSI holds on VLAN `tag`
 * (logged): self gets no FDB entry, neighbour entry or anti-spoofing element for them, so
 * it can neither take the other TSI's entries over (NLM_F_REPLACE) nor send as it.  The
 * control plane refuses such claims (CONFLICT); this keeps the dataplane safe from any
 * state that slipped past it.  Returns 0, or -EEXIST when something was dropped. */
static int want_drop_held(const struct linux_backend *lb, const struct tsi_ent *self, uint16_t tag,
                          struct want *w, const char *port, const char *tbuf)
{
    int ret = 0;
    char key[INET6_ADDRSTRLEN + 8], hbuf[SNCP_TSI_ID_STRLEN];
    for (unsigned i = 0; i < w->n_macs;) {
        const struct tsi_ent *h = mac_holder(lb, self, tag, w->macs[i], 0);
        if (!h) {
            i++;
            continue;
        }
        sncp_mac_format(w->macs[i], key, sizeof key);
        sncp_tsi_id_format(&h->id, hbuf, sizeof hbuf);
        OP_ERR("linux: static fdb entry refused, held by another tsi port=%s vlan=%u mac=%s "
               "tsi=%s holder=%s holder_port=%s",
               port, tag, key, tbuf, hbuf, h->port);
        memmove(w->macs[i], w->macs[i + 1], (w->n_macs - i - 1) * 6);
        w->n_macs--;
        ret = -EEXIST;
    }
    for (unsigned i = 0; i < w->n_ips;) {
        const struct tsi_ent *h = ip_holder(lb, self, tag, &w->ips[i]);
        if (!h && mac_in((const uint8_t(*)[6])w->macs, w->n_macs, w->ips[i].mac)) {
            i++;
            continue;
        }
        inet_ntop(w->ips[i].family, w->ips[i].ip, key, sizeof key);
        if (h) {
            sncp_tsi_id_format(&h->id, hbuf, sizeof hbuf);
            OP_ERR("linux: neighbour entry refused, held by another tsi port=%s vlan=%u ip=%s "
                   "tsi=%s holder=%s holder_port=%s",
                   port, tag, key, tbuf, hbuf, h->port);
        }
        w->ips[i] = w->ips[--w->n_ips];
        ret = -EEXIST;
    }
    return ret;
}

static int fdb_op(struct linux_backend *lb, int add, const char *port, int ifindex, uint16_t tag,
                  const uint8_t mac[6], const char *tsi)
{
    char m[SNCP_MAC_STRLEN];
    sncp_mac_format(mac, m, sizeof m);
    int r =
        request(lb, nnve_linux_msg_fdb(lb->req, sizeof lb->req, add ? RTM_NEWNEIGH : RTM_DELNEIGH,
                                       ifindex, mac, tag, !lb->evpn));
    if (!add && r == -ENOENT)
        return 0; /* gone, or now pointing at another port (a migration): not ours */
    if (r < 0)
        OP_ERR("linux: cannot %s static fdb entry port=%s vlan=%u mac=%s tsi=%s: %s%s%s",
               add ? "add" : "remove", port, tag, m, tsi, strerror(-r), reason_sep(lb),
               reason_of(lb));
    else
        OP_INFO("linux: static fdb entry %s port=%s vlan=%u mac=%s tsi=%s",
                add ? "added" : "removed", port, tag, m, tsi);
    return r;
}

struct neigh_get {
    struct kneigh n;
    uint16_t state;
    int found;
};

static int neigh_get_cb(const struct nlmsghdr *nlh, void *data)
{
    struct neigh_get *g = data;
    if (nlh->nlmsg_type != RTM_NEWNEIGH || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ndmsg))
        return 0;
    const struct ndmsg *ndm = mnl_nlmsg_get_payload(nlh);
    struct kneigh n = {
        .ifindex = ndm->ndm_ifindex, .family = ndm->ndm_family, .flags = ndm->ndm_flags};
    struct neigh_parse np = {.n = &n};
    if (mnl_attr_parse(nlh, sizeof *ndm, neigh_attr_cb, &np) < 0 || !np.have_dst)
        return 0;
    g->n = n;
    g->state = ndm->ndm_state;
    g->found = 1;
    return 0;
}

/* Whether the kernel's neighbour entry for ie's IP on `svi` is still the one this backend
 * installed (NUD_NOARP, our protocol, ie's MAC, not extern_learn).  An EVPN speaker replaces
 * the entry of a TSI that moved to another switch with its own (extern_learn, protocol
 * zebra): that one is not ours to delete.  1 yes, 0 no or absent; on a read error 1 (the
 * delete then decides). */
static int neigh_is_ours(struct linux_backend *lb, int svi, const struct ip_ent *ie)
{
    struct nlmsghdr *nlh =
        put_neigh(lb->req, sizeof lb->req, RTM_GETNEIGH, 0, (unsigned char)ie->family, svi, 0, 0);
    mnl_attr_put(nlh, NDA_DST, ip_len(ie->family), ie->ip);
    struct neigh_get g = {.found = 0};
    int r = snv_nl_request(lb->nl, nlh, neigh_get_cb, &g, NULL);
    if (r == -ENOENT || (r == 0 && !g.found))
        return 0;
    if (r < 0)
        return 1;
    return g.state == NUD_NOARP && g.n.proto == NNVE_LINUX_NEIGH_PROTO &&
           !(g.n.flags & NTF_EXT_LEARNED) && !memcmp(g.n.mac, ie->mac, 6);
}

static int neigh_op(struct linux_backend *lb, int add, int svi, uint16_t tag,
                    const struct ip_ent *ie, const char *tsi)
{
    char ip[INET6_ADDRSTRLEN], m[SNCP_MAC_STRLEN];
    inet_ntop(ie->family, ie->ip, ip, sizeof ip);
    sncp_mac_format(ie->mac, m, sizeof m);
    if (!add && !neigh_is_ours(lb, svi, ie)) {
        SNV_DBG(MOD, "linux: neighbour entry no longer ours, left ifindex=%d ip=%s mac=%s tsi=%s",
                svi, ip, m, tsi);
        return 0;
    }
    int r =
        request(lb, nnve_linux_msg_neigh(lb->req, sizeof lb->req, add ? RTM_NEWNEIGH : RTM_DELNEIGH,
                                         svi, ie->family, ie->ip, ie->mac));
    if (!add && (r == -ENOENT || r == -ENODEV))
        return 0;
    char dev[IF_NAMESIZE] = "?";
    if (if_indextoname((unsigned)svi, dev) == NULL)
        snprintf(dev, sizeof dev, "%d", svi);
    if (r < 0)
        OP_ERR("linux: cannot %s neighbour entry dev=%s vlan=%u ip=%s mac=%s tsi=%s: "
               "%s%s%s",
               add ? "add" : "remove", dev, tag, ip, m, tsi, strerror(-r), reason_sep(lb),
               reason_of(lb));
    else
        OP_INFO("linux: neighbour entry %s dev=%s vlan=%u ip=%s mac=%s tsi=%s",
                add ? "added" : "removed", dev, tag, ip, m, tsi);
    return r;
}

/* Whether a TSI other than `self` holds filter element `e`. */
static int elem_shared(const struct linux_backend *lb, const struct tsi_ent *self,
                       const struct nnve_nft_elem *e)
{
    for (size_t i = 0; i < lb->n_tsis; i++) {
        const struct tsi_ent *t = lb->tsis[i];
        if (t == self || t->n_fl == 0 || strcmp(t->port, e->port))
            continue;
        for (unsigned j = 0; j < t->n_fl; j++)
            if (nnve_nft_elem_equal(&t->fl[j], e))
                return 1;
    }
    return 0;
}

static int elem_in(const struct nnve_nft_elem *v, size_t n, const struct nnve_nft_elem *e)
{
    for (size_t i = 0; i < n; i++)
        if (nnve_nft_elem_equal(&v[i], e))
            return 1;
    return 0;
}

/* Converges the IP anti-spoofing elements of TSI `t` on (port, tag): with `w` (an Activated
 * TSI that has IP addresses) its MACs under control and its (MAC, IP) pairs; else none.
 * One nftables transaction. */
static int filter_apply(struct linux_backend *lb, struct tsi_ent *t, const struct want *w,
                        const char *port, uint16_t tag, const char *tbuf)
{
    if (lb->nft == NULL || (t->n_fl == 0 && (w == NULL || w->n_ips == 0)))
        return 0;
    unsigned n_want = 0;
    struct nnve_nft_elem *want = NULL;
    if (w != NULL && w->n_ips > 0) {
        want = calloc(w->n_macs + w->n_ips, sizeof *want);
        if (want == NULL)
            return -ENOMEM;
        for (unsigned i = 0; i < w->n_macs; i++) {
            struct nnve_nft_elem *e = &want[n_want++];
            snprintf(e->port, sizeof e->port, "%s", port);
            e->vid = tag;
            memcpy(e->mac, w->macs[i], 6);
        }
        for (unsigned i = 0; i < w->n_ips; i++) {
            struct nnve_nft_elem *e = &want[n_want++];
            snprintf(e->port, sizeof e->port, "%s", port);
            e->vid = tag;
            memcpy(e->mac, w->ips[i].mac, 6);
            e->family = w->ips[i].family;
            memcpy(e->ip, w->ips[i].ip, 16);
        }
    }
    struct nnve_nft_elem *add = calloc(n_want ? n_want : 1, sizeof *add);
    struct nnve_nft_elem *del = calloc(t->n_fl ? t->n_fl : 1, sizeof *del);
    if (add == NULL || del == NULL) {
        free(want);
        free(add);
        free(del);
        return -ENOMEM;
    }
    size_t n_add = 0, n_del = 0;
    for (unsigned i = 0; i < n_want; i++)
        if (!elem_in(t->fl, t->n_fl, &want[i]) && !elem_shared(lb, t, &want[i]) &&
            !(lb->reconciling && elem_in(lb->kv.nft, lb->kv.n_nft, &want[i])))
            add[n_add++] = want[i];
    for (unsigned i = 0; i < t->n_fl; i++)
        if (!elem_in(want, n_want, &t->fl[i]) && !elem_shared(lb, t, &t->fl[i]))
            del[n_del++] = t->fl[i];
    int r = nnve_nft_apply(lb->nft, add, n_add, del, n_del);
    if (r == 0) {
        free(t->fl);
        t->fl = want;
        t->n_fl = n_want;
        want = NULL;
        if (n_add || n_del)
            OP_INFO("linux: ip filter %s port=%s vlan=%u tsi=%s macs=%u ips=%u",
                    n_want ? "set" : "removed", port, tag, tbuf, w && n_want ? w->n_macs : 0,
                    w && n_want ? w->n_ips : 0);
    }
    free(want);
    free(add);
    free(del);
    return r;
}

/* Whether IPv6 is off on interface `ifindex` (disable_ipv6, or no IPv6 in the kernel): it
 * then takes no IPv6 neighbour entries, which is a set-up choice, not a failure. */
static int ipv6_disabled(int ifindex)
{
    char name[IF_NAMESIZE], path[96];
    if (if_indextoname((unsigned)ifindex, name) == NULL)
        return 0;
    snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 1;
    int v = 0;
    if (fscanf(f, "%d", &v) != 1)
        v = 0;
    fclose(f);
    return v != 0;
}

enum tsi_target { T_REMOVE, T_ASSOCIATE, T_ACTIVATE, T_UPDATE, T_DEACTIVATE };

/* Converges the kernel entries of one TSI instance to `target`. */
static int tsi_apply(struct linux_backend *lb, enum tsi_target target, const char *port,
                     uint16_t tag, const struct sncp_tsi_id *tsi, const struct sncp_addr *addrs,
                     unsigned n_addrs)
{
    char tbuf[SNCP_TSI_ID_STRLEN];
    sncp_tsi_id_format(tsi, tbuf, sizeof tbuf);
    if (strlen(port) >= IF_NAMESIZE || port[0] == '\0' || tag < 1 || tag > VID_MAX) {
        OP_ERR("linux: invalid tsi operation port=%s vlan=%u tsi=%s", port, tag, tbuf);
        return -EINVAL;
    }
    size_t idx;
    struct tsi_ent *t = tsi_find(lb, port, tsi, &idx);
    if (t == NULL && target == T_REMOVE)
        return 0;
    if (t == NULL) {
        t = calloc(1, sizeof *t);
        struct tsi_ent **nt =
            t ? vec_reserve(lb->tsis, lb->n_tsis, &lb->cap_tsis, sizeof *nt) : NULL;
        if (nt == NULL) {
            free(t);
            return -ENOMEM;
        }
        lb->tsis = nt;
        lb->tsis[lb->n_tsis++] = t;
        idx = lb->n_tsis - 1;
        snprintf(t->port, sizeof t->port, "%s", port);
        t->tag = tag;
        t->id = *tsi;
    }
    int active = target == T_ACTIVATE || (target == T_UPDATE && t->active);
    struct want w;
    want_build(&w, tsi, addrs, active ? n_addrs : 0);
    if (!active) {
        w.n_macs = 0; /* want_build() always counts the TSI_ID MAC */
        w.n_ips = 0;
    }

    int ret = want_drop_held(lb, t, tag, &w, port, tbuf);
    int ifindex = 0;
    if (t->n_macs > 0 || w.n_macs > 0) {
        ifindex = port_resolve(lb, port, tag, "tsi", !active, NULL);
        if (ifindex < 0 && !(ifindex == -ENODEV && !active))
            return ifindex;
    }
    /* withdraw what is installed and no longer wanted (or installed on another tag) */
    for (unsigned i = 0; i < t->n_macs;) {
        if (t->tag == tag && mac_in((const uint8_t(*)[6])w.macs, w.n_macs, t->macs[i])) {
            i++;
            continue;
        }
        int r = 0;
        if (ifindex > 0 && !mac_shared(lb, t, t->macs[i])) {
            r = fdb_op(lb, 0, port, ifindex, t->tag, t->macs[i], tbuf);
            struct tsi_ent *twin = r == 0 ? mac_holder(lb, t, t->tag, t->macs[i], 1) : NULL;
            int tif = twin ? port_resolve(lb, twin->port, twin->tag, "tsi", 1, NULL) : 0;
            if (tif > 0) /* the entry goes back to the other instance of the TSI */
                fdb_op(lb, 1, twin->port, tif, twin->tag, t->macs[i], tbuf);
        }
        if (r < 0) {
            ret = ret ? ret : r;
            i++;
            continue;
        }
        memmove(t->macs[i], t->macs[i + 1], (t->n_macs - i - 1) * 6);
        t->n_macs--;
    }
    for (unsigned i = 0; i < t->n_ips;) {
        if (t->tag == tag && ip_in(w.ips, w.n_ips, &t->ips[i]) && t->ips[i].svi != 0) {
            i++;
            continue;
        }
        int r = t->ips[i].svi && !ip_twin_holds(lb, t, &t->ips[i])
                    ? neigh_op(lb, 0, t->ips[i].svi, t->tag, &t->ips[i], tbuf)
                    : 0;
        if (r < 0) {
            ret = ret ? ret : r;
            i++;
            continue;
        }
        t->ips[i] = t->ips[--t->n_ips];
    }
    if (t->n_macs == 0 && t->n_ips == 0)
        t->tag = tag;
    /* install what is wanted and missing */
    for (unsigned i = 0; i < w.n_macs && t->tag == tag; i++) {
        if (mac_in((const uint8_t(*)[6])t->macs, t->n_macs, w.macs[i]))
            continue;
        if (!(lb->reconciling && kview_has_static(lb, ifindex, tag, w.macs[i])) &&
            !mac_shared(lb, t, w.macs[i])) {
            int r = fdb_op(lb, 1, port, ifindex, tag, w.macs[i], tbuf);
            if (r < 0) {
                ret = ret ? ret : r;
                continue;
            }
        }
        memcpy(t->macs[t->n_macs++], w.macs[i], 6);
    }
    int svi = -1, v6_off = -1;
    for (unsigned i = 0; i < w.n_ips && t->tag == tag; i++) {
        if (ip_in(t->ips, t->n_ips, &w.ips[i]))
            continue;
        if (svi < 0)
            svi = svi_find(lb, tag);
        if (svi == 0) {
            SNV_DBG(MOD,
                    "linux: no layer-3 interface for the vlan, ip neighbour entries "
                    "skipped vlan=%u tsi=%s",
                    tag, tbuf);
            break;
        }
        struct ip_ent ie = w.ips[i];
        if (ie.family == AF_INET6 && v6_off < 0)
            v6_off = ipv6_disabled(svi);
        if (ie.family == AF_INET6 && v6_off) {
            SNV_DBG(MOD,
                    "linux: ipv6 is disabled on the layer-3 interface of the vlan, ipv6 "
                    "neighbour entries skipped vlan=%u tsi=%s",
                    tag, tbuf);
            continue;
        }
        int r = lb->reconciling && kview_has_neigh(lb, svi, &ie)
                    ? 0
                    : neigh_op(lb, 1, svi, tag, &ie, tbuf);
        if (r < 0) {
            ret = ret ? ret : r;
            continue;
        }
        ie.svi = svi;
        t->ips[t->n_ips++] = ie;
    }
    if (t->tag == tag || t->n_fl > 0) {
        int r = filter_apply(lb, t, active ? &w : NULL, port, tag, tbuf);
        if (r < 0)
            ret = ret ? ret : r;
    }
    if (target == T_REMOVE && t->n_macs == 0 && t->n_ips == 0 && t->n_fl == 0) {
        lb->tsis[idx] = lb->tsis[--lb->n_tsis];
        free(t->fl);
        free(t);
        return ret;
    }
    if (target != T_UPDATE)
        t->active = active;
    if (target != T_REMOVE)
        t->declared = 1;
    return ret;
}

static int linux_tsi_associate(struct nnve_backend *b, const char *port, uint16_t tag,
                               const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,
                               const struct sncp_addr *addrs, unsigned n_addrs)
{
    (void)vn;
    return tsi_apply(lb_cast(b), T_ASSOCIATE, port, tag, tsi, addrs, n_addrs);
}

static int linux_tsi_activate(struct nnve_backend *b, const char *port, uint16_t tag,
                              const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,
                              const struct sncp_addr *addrs, unsigned n_addrs)
{
    (void)vn;
    return tsi_apply(lb_cast(b), T_ACTIVATE, port, tag, tsi, addrs, n_addrs);
}

static int linux_tsi_deactivate(struct nnve_backend *b, const char *port, uint16_t tag,
                                const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,
                                const struct sncp_addr *addrs, unsigned n_addrs)
{
    (void)vn;
    return tsi_apply(lb_cast(b), T_DEACTIVATE, port, tag, tsi, addrs, n_addrs);
}

static int linux_tsi_deassociate(struct nnve_backend *b, const char *port, uint16_t tag,
                                 const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,
                                 const struct sncp_addr *addrs, unsigned n_addrs)
{
    (void)vn;
    return tsi_apply(lb_cast(b), T_REMOVE, port, tag, tsi, addrs, n_addrs);
}

static int linux_tsi_update(struct nnve_backend *b, const char *port, uint16_t tag,
                            const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,
                            const struct sncp_addr *addrs, unsigned n_addrs)
{
    (void)vn;
    return tsi_apply(lb_cast(b), T_UPDATE, port, tag, tsi, addrs, n_addrs);
}

/* -------------------------------------------------------------------- lookup_mac --- */

struct mac_hit {
    int ifindex;
    uint32_t updated;
};

struct mac_find {
    int br;
    const uint8_t *mac;
    struct mac_hit hits[16]; /* one entry per VLAN the MAC is in, at most */
    size_t n_hits;
};

static int mac_find_cb(const struct nlmsghdr *nlh, void *data)
{
    struct mac_find *mf = data;
    struct nnve_linux_fdb f;
    if (nnve_linux_fdb_parse(nlh, &f) < 0 || f.master != mf->br || f.ifindex == mf->br ||
        (f.state & NUD_PERMANENT) || memcmp(f.mac, mf->mac, 6))
        return 0;
    /* keep the most recently updated entries */
    size_t at = mf->n_hits;
    if (at == sizeof mf->hits / sizeof mf->hits[0]) {
        at = 0;
        for (size_t i = 1; i < mf->n_hits; i++)
            if (mf->hits[i].updated > mf->hits[at].updated)
                at = i;
        if (mf->hits[at].updated <= f.updated)
            return 0;
    } else {
        mf->n_hits++;
    }
    mf->hits[at].ifindex = f.ifindex;
    mf->hits[at].updated = f.updated;
    return 0;
}

static int hit_cmp(const void *a, const void *b)
{
    const struct mac_hit *x = a, *y = b;
    return x->updated < y->updated ? -1 : x->updated > y->updated;
}

/* The port is the bridge port the MAC was last seen on, in any VLAN.  Entries on VXLAN
 * devices are skipped: a MAC behind the overlay (learned from a remote VTEP, or installed by
 * an EVPN speaker) is not behind a port of this switch.  The bridge's own addresses
 * (permanent entries) are skipped too. */
static int linux_lookup_mac(struct nnve_backend *b, const uint8_t mac[6], char *port, size_t cap)
{
    struct linux_backend *lb = lb_cast(b);
    struct nlmsghdr *nlh = put_neigh(lb->req, sizeof lb->req, RTM_GETNEIGH, 0, AF_BRIDGE, 0, 0, 0);
    struct mac_find mf = {.br = lb->br_ifindex, .mac = mac};
    int r = dump(lb, nlh, mac_find_cb, &mf);
    char m[SNCP_MAC_STRLEN];
    sncp_mac_format(mac, m, sizeof m);
    if (r < 0) {
        OP_ERR("linux: cannot read the forwarding table bridge=%s mac=%s: %s", lb->bridge, m,
               strerror(-r));
        return r;
    }
    qsort(mf.hits, mf.n_hits, sizeof mf.hits[0], hit_cmp);
    for (size_t i = 0; i < mf.n_hits; i++) {
        char name[IF_NAMESIZE];
        struct link_info li;
        if (if_indextoname((unsigned)mf.hits[i].ifindex, name) == NULL ||
            link_get(lb, name, &li) < 0 || !strcmp(li.kind, "vxlan"))
            continue;
        int n = snprintf(port, cap, "%s", name);
        return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
    }
    return -ENOENT;
}

/* --------------------------------------------------------------------- reconcile --- */

static int linux_reconcile_begin(struct nnve_backend *b)
{
    struct linux_backend *lb = lb_cast(b);
    for (size_t i = 0; i < lb->n_vlans; i++)
        lb->vlans[i]->declared = 0;
    for (size_t i = 0; i < lb->n_tsis; i++)
        lb->tsis[i]->declared = 0;
    int r = kview_load(lb);
    if (r == 0 && lb->nft != NULL)
        r = nnve_nft_read(lb->nft, &lb->kv.nft, &lb->kv.n_nft);
    lb->old_vx_ifindex = 0;
    struct link_info li;
    if (r == 0 && lb->mode == NNVE_LINUX_VXLAN_PER_VNI && lb->n_recorded > 0 &&
        link_get(lb, lb->vxdev, &li) == 0 && !strcmp(li.kind, "vxlan"))
        lb->old_vx_ifindex = li.ifindex;
    if (r < 0) {
        kview_free(&lb->kv);
        return r;
    }
    lb->reconciling = 1;
    OP_INFO("linux: reconcile begins bridge=%s ports=%zu fdb=%zu neighbours=%zu filter=%zu",
            lb->bridge, lb->kv.n_ports, lb->kv.n_fdb, lb->kv.n_neighs, lb->kv.n_nft);
    return 0;
}

static int declared_pair(const struct linux_backend *lb, const char *port, uint16_t vid)
{
    for (size_t i = 0; i < lb->n_vlans; i++)
        if (lb->vlans[i]->tag == vid && !strcmp(lb->vlans[i]->port, port))
            return 1;
    return 0;
}

static int declared_vni_dev(const struct linux_backend *lb, int ifindex, uint32_t src_vni)
{
    for (size_t i = 0; i < lb->n_vlans; i++) {
        uint32_t vni = lb->vlans[i]->vni;
        if (vni == 0)
            continue;
        if (lb->mode == NNVE_LINUX_VXLAN_EXTERNAL && ifindex == lb->vx_ifindex && src_vni == vni)
            return 1;
        /* the external device of an earlier run in external mode */
        if (lb->mode == NNVE_LINUX_VXLAN_PER_VNI && lb->old_vx_ifindex > 0 &&
            ifindex == lb->old_vx_ifindex && src_vni == vni)
            return 1;
        if (lb->mode == NNVE_LINUX_VXLAN_PER_VNI) {
            char name[IF_NAMESIZE];
            per_vni_name(vni, name);
            const char *kn = kview_name(lb, ifindex);
            if (kn && !strcmp(kn, name))
                return 1;
        }
    }
    return 0;
}

static int remote_in(const struct remote *v, size_t n, const struct nnve_linux_fdb *f)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].family == f->dst_family && !memcmp(v[i].ip, f->dst, ip_len(f->dst_family)))
            return 1;
    return 0;
}

/* Whether flood entry `f` is one of ours that is no longer wanted.  With a list of remote
 * VTEPs, every flood entry of a managed VNI toward another address (an EVPN speaker does not
 * share a switch with a static list).  With evpn or none, the entries toward the VTEPs of the
 * previous run's list (vteps_file), which an EVPN speaker may also have installed: it then
 * installs its entry again when it sees ours deleted. */
static int flood_stale(const struct linux_backend *lb, const struct nnve_linux_fdb *f)
{
    if (lb->n_remotes > 0)
        return !remote_in(lb->remotes, lb->n_remotes, f);
    return remote_in(lb->recorded, lb->n_recorded, f);
}

static int vteps_write(FILE *f, void *aux)
{
    const struct linux_backend *lb = aux;
    fputs("# remote VTEPs nnve-daemon's linux backend installs flood entries toward\n", f);
    for (size_t i = 0; i < lb->n_remotes; i++) {
        char ip[INET6_ADDRSTRLEN];
        inet_ntop(lb->remotes[i].family, lb->remotes[i].ip, ip, sizeof ip);
        fprintf(f, "%s\n", ip);
    }
    return ferror(f) ? -EIO : 0;
}

static int linux_reconcile_end(struct nnve_backend *b)
{
    struct linux_backend *lb = lb_cast(b);
    int ret = 0;
    unsigned removed = 0;
    /* TSIs this process installed and nobody declared */
    for (size_t i = 0; i < lb->n_tsis;) {
        struct tsi_ent *t = lb->tsis[i];
        if (t->declared) {
            i++;
            continue;
        }
        size_t before = lb->n_tsis;
        int r = tsi_apply(lb, T_REMOVE, t->port, t->tag, &t->id, NULL, 0);
        if (r < 0)
            ret = ret ? ret : r;
        removed++;
        if (lb->n_tsis == before)
            i++;
    }
    /* static FDB entries of managed (port, VLAN) pairs that no active TSI declared */
    if (lb->reconciling) {
        for (size_t i = 0; i < lb->kv.n_fdb; i++) {
            const struct nnve_linux_fdb *f = &lb->kv.fdb[i];
            if (f->master != lb->br_ifindex || f->state != NUD_NOARP ||
                (f->flags & NTF_EXT_LEARNED) || f->vid == 0)
                continue;
            const char *pn = kview_name(lb, f->ifindex);
            if (pn == NULL || !declared_pair(lb, pn, f->vid))
                continue;
            int held = 0;
            for (size_t j = 0; j < lb->n_tsis && !held; j++) {
                const struct tsi_ent *t = lb->tsis[j];
                held = t->tag == f->vid && !strcmp(t->port, pn) &&
                       mac_in((const uint8_t(*)[6])t->macs, t->n_macs, f->mac);
            }
            if (held)
                continue;
            int r = fdb_op(lb, 0, pn, f->ifindex, f->vid, f->mac, "stale");
            if (r < 0)
                ret = ret ? ret : r;
            removed++;
        }
        /* neighbour entries of ours (by their protocol) that no declared TSI holds: the
         * entries of stale MACs, and the old IPs of TSIs whose addresses changed while the
         * daemon was down; an operator's or an EVPN speaker's entries are never touched */
        for (size_t i = 0; i < lb->kv.n_neighs; i++) {
            const struct kneigh *n = &lb->kv.neighs[i];
            if (n->proto != NNVE_LINUX_NEIGH_PROTO || (n->flags & NTF_EXT_LEARNED))
                continue;
            struct ip_ent ie = {.family = n->family, .svi = n->ifindex};
            memcpy(ie.ip, n->ip, 16);
            memcpy(ie.mac, n->mac, 6);
            int held = 0;
            for (size_t j = 0; j < lb->n_tsis && !held; j++) {
                const struct tsi_ent *t = lb->tsis[j];
                for (unsigned k = 0; k < t->n_ips && !held; k++)
                    held = t->ips[k].svi == n->ifindex && t->ips[k].family == n->family &&
                           !memcmp(t->ips[k].ip, n->ip, ip_len(n->family)) &&
                           !memcmp(t->ips[k].mac, n->mac, 6);
            }
            if (held)
                continue;
            int r = neigh_op(lb, 0, n->ifindex, svi_vid(lb, n->ifindex), &ie, "stale");
            if (r < 0)
                ret = ret ? ret : r;
            removed++;
        }
        /* flood entries of managed VNIs toward VTEPs no longer configured */
        for (size_t i = 0; i < lb->kv.n_fdb; i++) {
            const struct nnve_linux_fdb *f = &lb->kv.fdb[i];
            if (!(f->flags & NTF_SELF) || f->dst_family == 0 || memcmp(f->mac, zero_mac, 6) ||
                !flood_stale(lb, f) || !declared_vni_dev(lb, f->ifindex, f->src_vni))
                continue;
            int r =
                request(lb, nnve_linux_msg_flood(lb->req, sizeof lb->req, RTM_DELNEIGH, f->ifindex,
                                                 f->dst_family, f->dst, f->src_vni));
            char ip[INET6_ADDRSTRLEN];
            inet_ntop(f->dst_family, f->dst, ip, sizeof ip);
            if (r < 0 && r != -ENOENT) {
                OP_ERR("linux: cannot remove stale flood entry ifindex=%d vni=%u "
                       "remote=%s: %s",
                       f->ifindex, (unsigned)f->src_vni, ip, strerror(-r));
                ret = ret ? ret : r;
            } else {
                OP_INFO("linux: stale flood entry removed ifindex=%d vni=%u remote=%s", f->ifindex,
                        (unsigned)f->src_vni, ip);
            }
            removed++;
        }
    }
    /* anti-spoofing elements no TSI holds (the whole table is ours) */
    if (lb->reconciling && lb->nft != NULL && lb->kv.n_nft > 0) {
        struct nnve_nft_elem *del = calloc(lb->kv.n_nft, sizeof *del);
        size_t n_del = 0;
        for (size_t i = 0; del && i < lb->kv.n_nft; i++) {
            int held = 0;
            for (size_t j = 0; j < lb->n_tsis && !held; j++)
                held = elem_in(lb->tsis[j]->fl, lb->tsis[j]->n_fl, &lb->kv.nft[i]);
            if (!held)
                del[n_del++] = lb->kv.nft[i];
        }
        int r = del ? nnve_nft_apply(lb->nft, NULL, 0, del, n_del) : -ENOMEM;
        if (r < 0)
            ret = ret ? ret : r;
        else if (n_del > 0)
            OP_INFO("linux: stale ip filter elements removed count=%zu", n_del);
        removed += (unsigned)n_del;
        free(del);
    }
    /* VN memberships this process installed and nobody declared */
    for (size_t i = 0; i < lb->n_vlans;) {
        if (lb->vlans[i]->declared) {
            i++;
            continue;
        }
        size_t before = lb->n_vlans;
        int r = vlan_remove(lb, lb->vlans[i], i);
        if (r < 0)
            ret = ret ? ret : r;
        removed++;
        if (lb->n_vlans == before)
            i++;
    }
    /* what the next start removes after a change of remote_vteps */
    if (lb->reconciling && lb->vteps_file) {
        int r = snv_file_write_atomic(lb->vteps_file, 0640, vteps_write, lb);
        if (r < 0) {
            OP_ERR("linux: cannot write file=%s: %s", lb->vteps_file, strerror(-r));
            ret = ret ? ret : r;
        } else {
            free(lb->recorded);
            lb->recorded = NULL;
            lb->n_recorded = 0;
        }
    }
    lb->old_vx_ifindex = 0;
    lb->reconciling = 0;
    kview_free(&lb->kv);
    OP_INFO("linux: reconcile ends bridge=%s withdrawn=%u", lb->bridge, removed);
    return ret;
}

/* ---------------------------------------------------------------- create/destroy --- */

void nnve_linux_config_init(struct nnve_linux_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->bridge = "br0";
    cfg->vxlan_mode = NNVE_LINUX_VXLAN_EXTERNAL;
    cfg->vxlan_device = "vxlan0";
    cfg->vxlan_port = 4789;
    cfg->remote_vteps = "none";
    cfg->anti_spoofing = NNVE_LINUX_ANTI_SPOOFING_ON;
}

int nnve_linux_anti_spoofing_parse(const char *s, enum nnve_linux_anti_spoofing *as)
{
    if (s && !strcmp(s, "on"))
        *as = NNVE_LINUX_ANTI_SPOOFING_ON;
    else if (s && !strcmp(s, "mac"))
        *as = NNVE_LINUX_ANTI_SPOOFING_MAC;
    else if (s && !strcmp(s, "off"))
        *as = NNVE_LINUX_ANTI_SPOOFING_OFF;
    else
        return -EINVAL;
    return 0;
}

const char *nnve_linux_anti_spoofing_name(enum nnve_linux_anti_spoofing as)
{
    return as == NNVE_LINUX_ANTI_SPOOFING_ON    ? "on"
           : as == NNVE_LINUX_ANTI_SPOOFING_MAC ? "mac"
                                                : "off";
}

int nnve_linux_vxlan_mode_parse(const char *s, enum nnve_linux_vxlan_mode *mode)
{
    if (s && !strcmp(s, "external"))
        *mode = NNVE_LINUX_VXLAN_EXTERNAL;
    else if (s && !strcmp(s, "per-vni"))
        *mode = NNVE_LINUX_VXLAN_PER_VNI;
    else
        return -EINVAL;
    return 0;
}

static int parse_ip(const char *s, int *family, uint8_t ip[16])
{
    memset(ip, 0, 16);
    if (inet_pton(AF_INET, s, ip) == 1)
        *family = AF_INET;
    else if (inet_pton(AF_INET6, s, ip) == 1)
        *family = AF_INET6;
    else
        return -EINVAL;
    return 0;
}

/* Appends the addresses of `s` ("A, B C") to *v.  Returns 0, -EINVAL (logged), -ENOMEM. */
static int remotes_parse(const char *s, struct remote **v, size_t *n)
{
    const char *p = s;
    while (*p) {
        size_t skip = strspn(p, ", \t\n");
        p += skip;
        size_t len = strcspn(p, ", \t\n");
        if (len == 0)
            break;
        char tok[INET6_ADDRSTRLEN];
        struct remote rm;
        if (len >= sizeof tok) {
            SNV_ERR(MOD, "linux: invalid remote vtep address remote=%.*s", (int)len, p);
            return -EINVAL;
        }
        memcpy(tok, p, len);
        tok[len] = '\0';
        if (parse_ip(tok, &rm.family, rm.ip) < 0) {
            SNV_ERR(MOD, "linux: invalid remote vtep address remote=%s", tok);
            return -EINVAL;
        }
        struct remote *nr = realloc(*v, (*n + 1) * sizeof *nr);
        if (nr == NULL)
            return -ENOMEM;
        *v = nr;
        (*v)[(*n)++] = rm;
        p += len;
    }
    return 0;
}

/* Reads the remote VTEPs of the previous run from vteps_file (absent: none). */
static int recorded_load(struct linux_backend *lb)
{
    if (lb->vteps_file == NULL)
        return 0;
    FILE *f = fopen(lb->vteps_file, "re");
    if (f == NULL)
        return errno == ENOENT ? 0 : -errno;
    char line[128];
    int r = 0;
    while (r == 0 && fgets(line, sizeof line, f))
        if (line[0] != '#')
            r = remotes_parse(line, &lb->recorded, &lb->n_recorded);
    fclose(f);
    if (r == -EINVAL) {
        SNV_WARN(MOD, "linux: ignoring file=%s", lb->vteps_file);
        free(lb->recorded);
        lb->recorded = NULL;
        lb->n_recorded = 0;
        r = 0;
    }
    return r;
}

static int parse_remotes(struct linux_backend *lb, const char *s)
{
    if (s == NULL || s[0] == '\0' || !strcmp(s, "evpn") || !strcmp(s, "none"))
        return 0;
    return remotes_parse(s, &lb->remotes, &lb->n_remotes);
}

static void linux_destroy(struct nnve_backend *b)
{
    if (b == NULL)
        return;
    struct linux_backend *lb = lb_cast(b);
    for (size_t i = 0; i < lb->n_vlans; i++)
        free(lb->vlans[i]);
    for (size_t i = 0; i < lb->n_ports; i++)
        free(lb->ports[i]);
    for (size_t i = 0; i < lb->n_tsis; i++) {
        free(lb->tsis[i]->fl);
        free(lb->tsis[i]);
    }
    free(lb->vlans);
    free(lb->ports);
    free(lb->tsis);
    free(lb->remotes);
    free(lb->recorded);
    free(lb->vteps_file);
    kview_free(&lb->kv);
    nnve_nft_destroy(lb->nft);
    snv_nl_destroy(lb->nl);
    free(lb);
}

static int name_copy(char dst[IF_NAMESIZE], const char *src, const char *dflt, const char *what)
{
    const char *s = src && src[0] ? src : dflt;
    int n = snprintf(dst, IF_NAMESIZE, "%s", s);
    if (n < 0 || n >= IF_NAMESIZE) {
        SNV_ERR(MOD, "linux: %s name too long name=%s", what, s);
        return -EINVAL;
    }
    return 0;
}

int nnve_backend_linux_create(const struct nnve_linux_config *cfg, struct nnve_backend **out)
{
    *out = NULL;
    struct nnve_linux_config dflt;
    nnve_linux_config_init(&dflt);
    if (cfg == NULL)
        cfg = &dflt;
    struct linux_backend *lb = calloc(1, sizeof *lb);
    if (lb == NULL)
        return -ENOMEM;
    lb->up.cls = &nnve_backend_linux_class;
    lb->mode = cfg->vxlan_mode;
    lb->anti_spoofing = cfg->anti_spoofing;
    if (lb->anti_spoofing != NNVE_LINUX_ANTI_SPOOFING_OFF &&
        lb->anti_spoofing != NNVE_LINUX_ANTI_SPOOFING_ON &&
        lb->anti_spoofing != NNVE_LINUX_ANTI_SPOOFING_MAC) {
        SNV_ERR(MOD, "linux: invalid anti_spoofing value %d", (int)lb->anti_spoofing);
        free(lb);
        return -EINVAL;
    }
    lb->vxlan_port = cfg->vxlan_port ? cfg->vxlan_port : 4789;
    int r = name_copy(lb->bridge, cfg->bridge, "br0", "bridge");
    if (r == 0)
        r = name_copy(lb->vxdev, cfg->vxlan_device, "vxlan0", "vxlan device");
    if (r == 0 && cfg->local_ip && cfg->local_ip[0] &&
        parse_ip(cfg->local_ip, &lb->local_family, lb->local) < 0) {
        SNV_ERR(MOD, "linux: invalid local vtep address local_ip=%s", cfg->local_ip);
        r = -EINVAL;
    }
    if (r == 0 && lb->mode != NNVE_LINUX_VXLAN_EXTERNAL && lb->mode != NNVE_LINUX_VXLAN_PER_VNI)
        r = -EINVAL;
    if (r == 0)
        r = parse_remotes(lb, cfg->remote_vteps);
    lb->evpn = cfg->remote_vteps && !strcmp(cfg->remote_vteps, "evpn");
    /* what FRR 8.4 can serve (the configuration refuses the rest with its line) */
    if (r == 0 && lb->evpn && lb->mode != NNVE_LINUX_VXLAN_PER_VNI) {
        SNV_ERR(MOD, "linux: remote_vteps=evpn needs vxlan_mode=per-vni");
        r = -EINVAL;
    } else if (r == 0 && lb->evpn && lb->local_family != AF_INET) {
        SNV_ERR(MOD, "linux: remote_vteps=evpn needs an IPv4 local_ip");
        r = -EINVAL;
    }
    if (r == 0 && cfg->state_dir && cfg->state_dir[0] &&
        asprintf(&lb->vteps_file, "%s/linux-remote-vteps", cfg->state_dir) < 0) {
        lb->vteps_file = NULL;
        r = -ENOMEM;
    }
    if (r == 0) {
        r = recorded_load(lb);
        if (r < 0)
            SNV_ERR(MOD, "linux: cannot read file=%s: %s", lb->vteps_file, strerror(-r));
    }
    if (r == 0) {
        r = snv_nl_create(&lb->nl);
        if (r < 0)
            SNV_ERR(MOD, "linux: cannot open an rtnetlink socket: %s", strerror(-r));
    }
    struct link_info li;
    if (r == 0) {
        r = link_get(lb, lb->bridge, &li);
        if (r < 0)
            SNV_ERR(MOD, "linux: cannot find the bridge bridge=%s: %s", lb->bridge, strerror(-r));
        else if (strcmp(li.kind, "bridge")) {
            SNV_ERR(MOD, "linux: not a bridge bridge=%s kind=%s", lb->bridge, li.kind);
            r = -EINVAL;
        } else if (li.vlan_filtering != 1) {
            SNV_ERR(MOD, "linux: bridge has vlan_filtering off bridge=%s", lb->bridge);
            r = -EINVAL;
        } else {
            lb->br_ifindex = li.ifindex;
            lb->default_pvid = li.default_pvid;
        }
    }
    if (r == 0 && lb->mode == NNVE_LINUX_VXLAN_EXTERNAL) {
        r = link_get(lb, lb->vxdev, &li);
        if (r < 0)
            SNV_ERR(MOD, "linux: cannot find the vxlan device dev=%s: %s", lb->vxdev, strerror(-r));
        else if (strcmp(li.kind, "vxlan") || li.master != lb->br_ifindex) {
            SNV_ERR(MOD, "linux: not a vxlan port of the bridge dev=%s bridge=%s", lb->vxdev,
                    lb->bridge);
            r = -EINVAL;
        } else {
            lb->vx_ifindex = li.ifindex;
        }
    }
    if (r == 0 && lb->anti_spoofing == NNVE_LINUX_ANTI_SPOOFING_ON)
        r = nnve_nft_create(NULL, &lb->nft);
    else if (r == 0)
        (void)nnve_nft_remove_table(NULL);
    if (r < 0) {
        linux_destroy(&lb->up);
        return r;
    }
    if (lb->mode == NNVE_LINUX_VXLAN_EXTERNAL)
        SNV_INFO(MOD,
                 "linux: opened bridge=%s vxlan=external dev=%s remotes=%zu "
                 "anti_spoofing=%s",
                 lb->bridge, lb->vxdev, lb->n_remotes,
                 nnve_linux_anti_spoofing_name(lb->anti_spoofing));
    else
        SNV_INFO(MOD,
                 "linux: opened bridge=%s vxlan=per-vni local_ip=%s port=%u remotes=%s "
                 "anti_spoofing=%s",
                 lb->bridge, cfg->local_ip && cfg->local_ip[0] ? cfg->local_ip : "none",
                 lb->vxlan_port,
                 lb->evpn            ? "evpn"
                 : cfg->remote_vteps ? cfg->remote_vteps
                                     : "none",
                 nnve_linux_anti_spoofing_name(lb->anti_spoofing));
    *out = &lb->up;
    return 0;
}

static int linux_create(const struct nnve_backend_config *cfg, struct nnve_backend **out)
{
    return nnve_backend_linux_create(cfg ? cfg->linux_cfg : NULL, out);
}

/* Counts operations and failures around each class entry point. */
#define COUNT(b, expr)                                                                             \
    do {                                                                                           \
        (b)->ops++;                                                                                \
        int r_ = (expr);                                                                           \
        if (r_ < 0)                                                                                \
            (b)->errors++;                                                                         \
        return r_;                                                                                 \
    } while (0)

static int c_reconcile_begin(struct nnve_backend *b)
{
    COUNT(b, linux_reconcile_begin(b));
}

static int c_reconcile_end(struct nnve_backend *b)
{
    COUNT(b, linux_reconcile_end(b));
}

static int c_vn_add(struct nnve_backend *b, const char *port, uint16_t tag,
                    const struct nnve_vn *vn)
{
    COUNT(b, linux_vn_add(b, port, tag, vn));
}

static int c_vn_remove(struct nnve_backend *b, const char *port, uint16_t tag,
                       const struct nnve_vn *vn)
{
    COUNT(b, linux_vn_remove(b, port, tag, vn));
}

#define C_TSI(name)                                                                                \
    static int c_##name(struct nnve_backend *b, const char *port, uint16_t tag,                    \
                        const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,                   \
                        const struct sncp_addr *addrs, unsigned n_addrs)                           \
    {                                                                                              \
        COUNT(b, linux_##name(b, port, tag, vn, tsi, addrs, n_addrs));                             \
    }
C_TSI(tsi_associate)
C_TSI(tsi_activate)
C_TSI(tsi_deactivate)
C_TSI(tsi_deassociate)
C_TSI(tsi_update)

static int c_lookup_mac(struct nnve_backend *b, const uint8_t mac[6], char *port, size_t cap)
{
    COUNT(b, linux_lookup_mac(b, mac, port, cap));
}

const struct nnve_backend_class nnve_backend_linux_class = {
    .name = "linux",
    .create = linux_create,
    .destroy = linux_destroy,
    .reconcile_begin = c_reconcile_begin,
    .reconcile_end = c_reconcile_end,
    .vn_add = c_vn_add,
    .vn_remove = c_vn_remove,
    .tsi_associate = c_tsi_associate,
    .tsi_activate = c_tsi_activate,
    .tsi_deactivate = c_tsi_deactivate,
    .tsi_deassociate = c_tsi_deassociate,
    .tsi_update = c_tsi_update,
    .lookup_mac = c_lookup_mac,
};
