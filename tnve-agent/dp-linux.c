/* dp-linux.c: the Linux bridge dataplane backend of tnve-agent.
 *
 * The hypervisor model is one VLAN-aware Linux bridge (vlan_filtering 1) holding the vNIC
 * ports (tap/veth) and the uplink toward the nNVE.  A vNIC port carries exactly one VLAN, its
 * VN's local tag, as untagged PVID: any other VLAN on it (the bridge's default VLAN 1, an
 * older tag) would let the VM see another VN, so port_set removes it.  The uplink carries
 * every tag in use, tagged.  All of it over rtnetlink (netlink.h); each call starts from a
 * fresh AF_BRIDGE link dump so that it acts on the kernel's state, not on a cache, and sends
 * nothing when the kernel already holds the wanted state.
 */
#include <errno.h>
#include <linux/if_bridge.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane-provider.h"
#include "netlink.h"
#include "snv-log.h"

#define MOD "dp-linux"

/* One interface of interest found in a bridge dump. */
struct dp_port {
    int found;
    struct tnve_nl_link link;
    struct tnve_nl_vlans vlans;
};

struct tnve_dp {
    struct snv_nl *nl;
    char uplink[IF_NAMESIZE]; /* "" for none */
    char bridge[IF_NAMESIZE]; /* "" for the vNIC port's own master */
    size_t txsize;
    unsigned char *tx; /* MNL_SOCKET_BUFFER_SIZE bytes for requests */
    /* Dump results, kept here so that no call allocates. */
    const char *want_port;
    struct dp_port port;
    struct dp_port up;
    struct dp_port br;
    struct tnve_nl_vlans scratch;
};

static int valid_ifname(const char *s)
{
    return s != NULL && s[0] != '\0' && strlen(s) < IF_NAMESIZE;
}

static const char *nz(const char *s)
{
    return s != NULL ? s : "-";
}

/* --- reading the kernel's state --------------------------------------------------------- */

struct getlink_result {
    struct tnve_nl_link *link;
    int got;
};

static int getlink_cb(const struct nlmsghdr *nlh, void *data)
{
    struct getlink_result *r = data;
    if (tnve_nl_link_parse(nlh, r->link, NULL) < 0)
        return -EPROTO;
    r->got = 1;
    return 0;
}

/* One link by name (or by ifindex when name is NULL), with its link info.  Returns 0, -ENODEV
 * when absent, or another -errno (logged). */
static int dp_getlink(struct tnve_dp *dp, const char *name, int ifindex, struct tnve_nl_link *link)
{
    struct nlmsghdr *req =
        tnve_nl_msg_getlink(dp->tx, dp->txsize, name, ifindex, RTEXT_FILTER_SKIP_STATS);
    if (req == NULL)
        return -EINVAL;
    struct getlink_result r = {.link = link};
    const char *reason;
    int err = snv_nl_request(dp->nl, req, getlink_cb, &r, &reason);
    if (err == -ENODEV || (err == 0 && !r.got))
        return -ENODEV;
    if (err < 0)
        SNV_ERR(MOD, "cannot read link ifname=%s ifindex=%d err=%s reason=%s", nz(name), ifindex,
                strerror(-err), nz(reason));
    return err;
}

static int dump_cb(const struct nlmsghdr *nlh, void *data)
{
    struct tnve_dp *dp = data;
    struct tnve_nl_link link;
    if (tnve_nl_link_parse(nlh, &link, &dp->scratch) < 0)
        return 0; /* not a link this backend can judge; it never acts on it */
    struct dp_port *slot = NULL;
    if (dp->want_port != NULL && strcmp(link.name, dp->want_port) == 0)
        slot = &dp->port;
    else if (dp->uplink[0] != '\0' && strcmp(link.name, dp->uplink) == 0)
        slot = &dp->up;
    else if (dp->bridge[0] != '\0' && strcmp(link.name, dp->bridge) == 0)
        slot = &dp->br;
    /* First entry wins: for a port the kernel reports the bridge's view (with the VLAN table)
     * first, then, for a NIC whose driver has its own bridge ops (SR-IOV), the driver's
     * "self" view without the bridge's VLANs. */
    if (slot == NULL || slot->found)
        return 0;
    slot->found = 1;
    slot->link = link;
    slot->vlans = dp->scratch;
    return 0;
}

/* Dumps every bridge port with its VLANs and keeps `port`, the uplink and the bridge.
 * The compressed form keeps a long VLAN list on the uplink small.  0 or -errno (logged). */
static int dp_snapshot(struct tnve_dp *dp, const char *port)
{
    dp->want_port = port;
    memset(&dp->port, 0, sizeof dp->port);
    memset(&dp->up, 0, sizeof dp->up);
    memset(&dp->br, 0, sizeof dp->br);
    struct nlmsghdr *req =
        tnve_nl_msg_bridge_dump(dp->tx, dp->txsize, RTEXT_FILTER_BRVLAN_COMPRESSED);
    if (req == NULL)
        return -EINVAL;
    const char *reason;
    int err = snv_nl_dump(dp->nl, req, dump_cb, dp, &reason);
    if (err < 0)
        SNV_ERR(MOD, "cannot dump bridge ports port=%s err=%s reason=%s", nz(port), strerror(-err),
                nz(reason));
    return err;
}

/* Checks that `ifindex` is a bridge with VLAN filtering on.  `why` names the interface that
 * led here, for the log.  0, or -errno with the reason logged. */
static int check_vlan_bridge(struct tnve_dp *dp, int ifindex, const char *why)
{
    struct tnve_nl_link br;
    int err = dp_getlink(dp, NULL, ifindex, &br);
    if (err == -ENODEV) {
        SNV_ERR(MOD, "master of %s is gone ifindex=%d", why, ifindex);
        return -ENODEV;
    }
    if (err < 0)
        return err;
    if (strcmp(br.kind, "bridge") != 0) {
        SNV_ERR(MOD, "%s: master %s is not a Linux bridge kind=%s", why, br.name,
                br.kind[0] != '\0' ? br.kind : "-");
        return -EINVAL;
    }
    if (br.vlan_filtering < 0) {
        SNV_ERR(MOD,
                "%s: kernel reports no VLAN filtering for bridge %s (no 802.1Q/bridge VLAN "
                "support)",
                why, br.name);
        return -EOPNOTSUPP;
    }
    if (br.vlan_filtering == 0) {
        SNV_ERR(MOD,
                "%s: bridge %s has vlan_filtering off; set it with: ip link set %s type "
                "bridge vlan_filtering 1",
                why, br.name, br.name);
        return -EINVAL;
    }
    return 0;
}

/* --- changing it ------------------------------------------------------------------------ */

/* RTM_SETLINK/RTM_DELLINK of `n` VLANs on one port, split into bounded messages.  A VLAN
 * already absent on delete counts as removed.  0 or -errno (logged with port and VLAN). */
static int send_vlans(struct tnve_dp *dp, uint16_t type, const struct tnve_nl_link *link,
                      const struct bridge_vlan_info *vi, size_t n)
{
    const char *op = type == RTM_SETLINK ? "add" : "remove";
    for (size_t off = 0; off < n; off += TNVE_NL_VLANS_PER_MSG) {
        size_t k = n - off < TNVE_NL_VLANS_PER_MSG ? n - off : TNVE_NL_VLANS_PER_MSG;
        struct nlmsghdr *req =
            tnve_nl_msg_bridge_vlan(dp->tx, dp->txsize, type, link->ifindex, vi + off, k);
        if (req == NULL)
            return -EINVAL;
        const char *reason;
        int err = snv_nl_request(dp->nl, req, NULL, NULL, &reason);
        if (err == -ENOENT && type == RTM_DELLINK)
            err = 0;
        if (err < 0) {
            SNV_ERR(MOD, "cannot %s vlan port=%s vid=%u%s err=%s reason=%s", op, link->name,
                    vi[off].vid, k > 1 ? " (and more)" : "", strerror(-err), nz(reason));
            return err;
        }
    }
    return 0;
}

static int set_one(struct tnve_dp *dp, const struct tnve_nl_link *link, uint16_t vid,
                   uint16_t flags)
{
    struct bridge_vlan_info vi = {.flags = flags, .vid = vid};
    return send_vlans(dp, RTM_SETLINK, link, &vi, 1);
}

static int del_one(struct tnve_dp *dp, const struct tnve_nl_link *link, uint16_t vid)
{
    struct bridge_vlan_info vi = {.vid = vid};
    return send_vlans(dp, RTM_DELLINK, link, &vi, 1);
}

/* Removes from the port every VLAN but `keep`.  Uses the stack for one message's worth. */
static int remove_others(struct tnve_dp *dp, const struct dp_port *p, uint16_t keep)
{
    struct bridge_vlan_info batch[64];
    size_t n = 0;
    for (unsigned v = 1; v <= 4094; v++) {
        if (v == keep || !tnve_nl_vlans_has(&p->vlans, (uint16_t)v))
            continue;
        SNV_INFO(MOD, "removing vlan from vnic port port=%s vid=%u", p->link.name, v);
        batch[n++] = (struct bridge_vlan_info){.vid = (uint16_t)v};
        if (n == sizeof batch / sizeof batch[0]) {
            int err = send_vlans(dp, RTM_DELLINK, &p->link, batch, n);
            if (err < 0)
                return err;
            n = 0;
        }
    }
    return n > 0 ? send_vlans(dp, RTM_DELLINK, &p->link, batch, n) : 0;
}

/* After a snapshot: the port `ifname` is missing from the bridge dump.  -ENODEV when it does
 * not exist, -ENOTCONN when it exists outside any bridge. */
static int classify_missing(struct tnve_dp *dp, const char *ifname)
{
    struct tnve_nl_link link;
    int err = dp_getlink(dp, ifname, 0, &link);
    if (err < 0)
        return err;
    return -ENOTCONN;
}

/* The bridge a vNIC port must sit on, checked against the configuration.  0 or -errno. */
static int check_port_bridge(struct tnve_dp *dp, const char *ifname, uint16_t vid)
{
    const struct tnve_nl_link *pl = &dp->port.link;
    if (pl->master == pl->ifindex) {
        SNV_ERR(MOD, "vnic port is a bridge, not a bridge port port=%s vid=%u", ifname, vid);
        return -EINVAL;
    }
    if (pl->master <= 0) {
        SNV_ERR(MOD, "vnic port is not a bridge port port=%s vid=%u", ifname, vid);
        return -ENOTCONN;
    }
    if (dp->bridge[0] != '\0' && (!dp->br.found || dp->br.link.ifindex != pl->master)) {
        SNV_ERR(MOD, "vnic port is not on the configured bridge port=%s bridge=%s vid=%u", ifname,
                dp->bridge, vid);
        return -EXDEV;
    }
    if (dp->uplink[0] != '\0') {
        if (!dp->up.found) {
            SNV_ERR(MOD, "uplink is missing or not a bridge port uplink=%s port=%s vid=%u",
                    dp->uplink, ifname, vid);
            return -ENODEV;
        }
        if (dp->up.link.master != pl->master) {
            SNV_ERR(MOD,
                    "vnic port and uplink are on different bridges port=%s uplink=%s "
                    "vid=%u",
                    ifname, dp->uplink, vid);
            return -EXDEV;
        }
    }
    return check_vlan_bridge(dp, pl->master, ifname);
}

static int dp_linux_port_set(struct tnve_dp *dp, const char *ifname, uint16_t vid)
{
    if (!valid_ifname(ifname) || vid < 1 || vid > 4094) {
        SNV_ERR(MOD, "invalid port_set port=%s vid=%u", nz(ifname), vid);
        return -EINVAL;
    }
    if (strcmp(ifname, dp->uplink) == 0) {
        SNV_ERR(MOD, "refusing to make the uplink a vnic port port=%s vid=%u", ifname, vid);
        return -EINVAL;
    }
    int err = dp_snapshot(dp, ifname);
    if (err < 0)
        return err;
    if (!dp->port.found) {
        err = classify_missing(dp, ifname);
        if (err == -ENODEV)
            SNV_ERR(MOD, "vnic port does not exist port=%s vid=%u", ifname, vid);
        else if (err == -ENOTCONN)
            SNV_ERR(MOD, "vnic port is not a bridge port port=%s vid=%u", ifname, vid);
        return err;
    }
    err = check_port_bridge(dp, ifname, vid);
    if (err < 0)
        return err;

    /* The uplink first: when the VM's port opens, its tag already reaches the nNVE. */
    if (dp->uplink[0] != '\0') {
        const struct dp_port *up = &dp->up;
        if (!tnve_nl_vlans_has(&up->vlans, vid) || tnve_nl_vlans_untagged(&up->vlans, vid) ||
            up->vlans.pvid == vid) {
            if (tnve_nl_vlans_has(&up->vlans, vid))
                SNV_WARN(MOD, "uplink had the vlan untagged; making it tagged uplink=%s vid=%u",
                         dp->uplink, vid);
            err = set_one(dp, &up->link, vid, 0);
            if (err < 0)
                return err;
            SNV_INFO(MOD, "uplink carries vlan tagged uplink=%s vid=%u", dp->uplink, vid);
        }
    }

    /* Other VLANs go before the new PVID comes: the VM never sees two VNs at once. */
    const struct dp_port *p = &dp->port;
    int others = p->vlans.count - (tnve_nl_vlans_has(&p->vlans, vid) ? 1 : 0);
    if (others > 0) {
        err = remove_others(dp, p, vid);
        if (err < 0)
            return err;
    }
    if (p->vlans.pvid != vid || !tnve_nl_vlans_untagged(&p->vlans, vid)) {
        err = set_one(dp, &p->link, vid, BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED);
        if (err < 0)
            return err;
        SNV_INFO(MOD, "vnic port set port=%s vid=%u pvid=untagged old_pvid=%u", ifname, vid,
                 p->vlans.pvid);
    } else if (others == 0) {
        SNV_DBG(MOD, "vnic port already set port=%s vid=%u", ifname, vid);
    }
    return 0;
}

static int dp_linux_port_clear(struct tnve_dp *dp, const char *ifname, uint16_t vid,
                               int uplink_in_use)
{
    if (!valid_ifname(ifname) || vid < 1 || vid > 4094) {
        SNV_ERR(MOD, "invalid port_clear port=%s vid=%u", nz(ifname), vid);
        return -EINVAL;
    }
    if (strcmp(ifname, dp->uplink) == 0) {
        SNV_ERR(MOD, "refusing to clear the uplink as a vnic port port=%s vid=%u", ifname, vid);
        return -EINVAL;
    }
    int err = dp_snapshot(dp, ifname);
    if (err < 0)
        return err;
    if (dp->port.found && dp->port.link.master == dp->port.link.ifindex) {
        SNV_ERR(MOD, "vnic port is a bridge, not a bridge port port=%s vid=%u", ifname, vid);
        return -EINVAL;
    }
    if (dp->port.found && tnve_nl_vlans_has(&dp->port.vlans, vid)) {
        err = del_one(dp, &dp->port.link, vid);
        if (err < 0)
            return err;
        SNV_INFO(MOD, "vnic port cleared port=%s vid=%u", ifname, vid);
    } else {
        SNV_DBG(MOD, "vnic port has no such vlan port=%s vid=%u present=%d", ifname, vid,
                dp->port.found);
    }
    if (dp->uplink[0] != '\0' && !uplink_in_use && dp->up.found &&
        tnve_nl_vlans_has(&dp->up.vlans, vid)) {
        err = del_one(dp, &dp->up.link, vid);
        if (err < 0)
            return err;
        SNV_INFO(MOD, "uplink no longer carries vlan uplink=%s vid=%u", dp->uplink, vid);
    }
    return 0;
}

static int dp_linux_port_get(struct tnve_dp *dp, const char *ifname)
{
    if (!valid_ifname(ifname))
        return -EINVAL;
    int err = dp_snapshot(dp, ifname);
    if (err < 0)
        return err;
    if (dp->port.found)
        return dp->port.vlans.pvid;
    err = classify_missing(dp, ifname);
    return err == -ENOTCONN ? 0 : err;
}

/* --- lifetime --------------------------------------------------------------------------- */

static void dp_linux_destroy(struct tnve_dp *dp)
{
    if (dp == NULL)
        return;
    snv_nl_destroy(dp->nl);
    free(dp->tx);
    free(dp);
}

/* create(): the uplink (when configured) must be a port of a VLAN-filtering bridge, and the
 * configured bridge (when given) must be that bridge. */
static int check_config(struct tnve_dp *dp)
{
    int master = 0;
    if (dp->uplink[0] != '\0') {
        struct tnve_nl_link up;
        int err = dp_getlink(dp, dp->uplink, 0, &up);
        if (err == -ENODEV)
            SNV_ERR(MOD, "uplink does not exist uplink=%s", dp->uplink);
        if (err < 0)
            return err;
        if (up.master <= 0) {
            SNV_ERR(MOD, "uplink is not a bridge port uplink=%s", dp->uplink);
            return -ENOTCONN;
        }
        err = check_vlan_bridge(dp, up.master, dp->uplink);
        if (err < 0)
            return err;
        master = up.master;
    }
    if (dp->bridge[0] != '\0') {
        struct tnve_nl_link br;
        int err = dp_getlink(dp, dp->bridge, 0, &br);
        if (err == -ENODEV)
            SNV_ERR(MOD, "bridge does not exist bridge=%s", dp->bridge);
        if (err < 0)
            return err;
        if (master != 0 && br.ifindex != master) {
            SNV_ERR(MOD, "uplink is not a port of the configured bridge uplink=%s bridge=%s",
                    dp->uplink, dp->bridge);
            return -EXDEV;
        }
        err = check_vlan_bridge(dp, br.ifindex, dp->bridge);
        if (err < 0)
            return err;
    }
    return 0;
}

static int dp_linux_create(const struct tnve_dp_config *cfg, struct tnve_dp **out)
{
    *out = NULL;
    const char *uplink = cfg != NULL && cfg->uplink != NULL ? cfg->uplink : "";
    const char *bridge = cfg != NULL && cfg->bridge != NULL ? cfg->bridge : "";
    if ((uplink[0] != '\0' && !valid_ifname(uplink)) ||
        (bridge[0] != '\0' && !valid_ifname(bridge))) {
        SNV_ERR(MOD, "invalid interface name uplink=%s bridge=%s", uplink, bridge);
        return -EINVAL;
    }
    struct tnve_dp *dp = calloc(1, sizeof *dp);
    if (dp == NULL)
        return -ENOMEM;
    memcpy(dp->uplink, uplink, strlen(uplink) + 1);
    memcpy(dp->bridge, bridge, strlen(bridge) + 1);
    long pagesz = MNL_SOCKET_BUFFER_SIZE;
    dp->txsize = pagesz > TNVE_NL_MSG_MIN ? (size_t)pagesz : TNVE_NL_MSG_MIN;
    dp->tx = malloc(dp->txsize);
    if (dp->tx == NULL) {
        dp_linux_destroy(dp);
        return -ENOMEM;
    }
    int err = snv_nl_create(&dp->nl);
    if (err < 0) {
        SNV_ERR(MOD, "cannot open rtnetlink socket err=%s", strerror(-err));
        dp_linux_destroy(dp);
        return err;
    }
    err = check_config(dp);
    if (err < 0) {
        dp_linux_destroy(dp);
        return err;
    }
    SNV_INFO(MOD, "dataplane ready uplink=%s bridge=%s", uplink[0] != '\0' ? uplink : "-",
             bridge[0] != '\0' ? bridge : "-");
    *out = dp;
    return 0;
}

const struct tnve_dp_class tnve_dp_linux_class = {
    .name = "linux",
    .create = dp_linux_create,
    .destroy = dp_linux_destroy,
    .port_set = dp_linux_port_set,
    .port_clear = dp_linux_port_clear,
    .port_get = dp_linux_port_get,
};
