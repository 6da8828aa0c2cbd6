/* backend-linux.h: the `linux` dataplane backend of nnve-daemon (see backend-provider.h).
 *
 * The switch model is the one Linux switch operating systems use: one VLAN-aware bridge
 * (vlan_filtering 1), the switch ports are its ports, and VXLAN carries each VN between
 * racks.  A VN on a port makes the port a tagged member of the VN's local tag; the tag is
 * mapped to the VN ID (the VNI) either on one `external` VXLAN device with vlan_tunnel on
 * (per-VLAN tunnel_info) or on one VXLAN device per VN ("vx-<VNI>", created on demand).
 * An Activated TSI gets static FDB entries (and neighbour entries on the VLAN's layer-3
 * interface when one exists) so that an EVPN speaker reading the kernel can advertise it.
 * Everything goes through rtnetlink with libmnl.
 *
 * The message builders and parsers below are exported for the unit tests, which check
 * them without a kernel.
 */
#ifndef NNVE_BACKEND_LINUX_H
#define NNVE_BACKEND_LINUX_H 1

#include <stddef.h>
#include <stdint.h>

#include "backend-provider.h"

struct nlmsghdr;

enum nnve_linux_vxlan_mode {
    /* One VXLAN device with `external` (collect metadata), vlan_tunnel on its bridge port,
     * and one tunnel_info (VLAN -> VNI) per VN.  The device must exist (operator set-up). */
    NNVE_LINUX_VXLAN_EXTERNAL = 0,
    /* One VXLAN device per VN named "vx-<VNI>", created on demand (local_ip, dstport,
     * learning off), enslaved to the bridge with the tag as its untagged PVID, and deleted
     * when the VN leaves the switch. */
    NNVE_LINUX_VXLAN_PER_VNI = 1,
};

/* What is accepted from a port carrying VNs. */
enum nnve_linux_anti_spoofing {
    /* Ports are left as found: any source passes. */
    NNVE_LINUX_ANTI_SPOOFING_OFF = 0,
    /* Default.  The ports carrying VNs are locked (IFLA_BRPORT_LOCKED), so that only source
     * MACs with a static FDB entry on (port, VLAN), i.e. those of Activated TSIs, are
     * accepted; and, in the daemon's nftables table (bridge family, "splitnve"), frames
     * from (port, VLAN) of an Activated TSI that has IP addresses pass only with one of its
     * source IPs (IPv4 source, ARP sender, IPv6 source incl. neighbour discovery). */
    NNVE_LINUX_ANTI_SPOOFING_ON = 1,
    /* Port locking only (source MACs); no nftables rules. */
    NNVE_LINUX_ANTI_SPOOFING_MAC = 2,
};

struct nnve_linux_config {
    const char *bridge; /* NULL or "": "br0" */
    enum nnve_linux_vxlan_mode vxlan_mode;
    const char *vxlan_device; /* external mode; NULL or "": "vxlan0" */
    const char *local_ip;     /* local VTEP address for per-VNI devices; NULL: none set */
    uint16_t vxlan_port;      /* UDP destination port of per-VNI devices; 0: 4789 */
    /* BUM traffic: "198.51.100.2, 198.51.100.3" (IPv4 and/or IPv6, separated by commas
     * and/or blanks) installs an all-zero-MAC flood entry per remote VTEP and VN (head-end
     * replication); "none", NULL or "" installs none (the operator's business); "evpn"
     * installs none and programs what an EVPN speaker reading the kernel (FRR 8.4's zebra)
     * needs: per-VNI devices only, with an IPv4 local_ip, bridge learning off and ARP/ND
     * suppression (neigh_suppress) on their bridge ports. */
    const char *remote_vteps;
    enum nnve_linux_anti_spoofing anti_spoofing;
    /* Directory of the daemon's state: the backend keeps there the remote VTEPs it installed
     * flood entries toward (file linux-remote-vteps), so that after a change of remote_vteps
     * it removes its own stale entries and no one else's.  NULL: nothing kept. */
    const char *state_dir;
};

/* Fills *cfg with the defaults: br0, external, vxlan0, no local IP, 4789, none, on. */
void nnve_linux_config_init(struct nnve_linux_config *cfg);

/* "on" / "mac" / "off" -> 0 and *as; else -EINVAL. */
int nnve_linux_anti_spoofing_parse(const char *s, enum nnve_linux_anti_spoofing *as);
/* The configuration word of `as`. */
const char *nnve_linux_anti_spoofing_name(enum nnve_linux_anti_spoofing as);

/* "external" / "per-vni" -> 0 and *mode; else -EINVAL. */
int nnve_linux_vxlan_mode_parse(const char *s, enum nnve_linux_vxlan_mode *mode);

/* Opens the backend on the running kernel.  Checks that the bridge exists with
 * vlan_filtering on and, in external mode, that the VXLAN device is a port of it; parses
 * local_ip and remote_vteps.  Returns 0 and *out (close with nnve_backend_close()), or
 * -ENODEV / -EINVAL / -errno with a logged reason.  `cfg` may be NULL (defaults); its
 * strings are copied. */
int nnve_backend_linux_create(const struct nnve_linux_config *cfg, struct nnve_backend **out);

extern const struct nnve_backend_class nnve_backend_linux_class;

/* ---- message builders and parsers (pure; exported for the unit tests) ----
 * Each builder writes one rtnetlink request into buf[0..size) and returns its header, or
 * NULL when `size` is below NNVE_LINUX_MSG_MIN or an argument is out of range.  None sets
 * NLM_F_ACK or a sequence number (the sender does). */
enum { NNVE_LINUX_MSG_MIN = 512 };

/* RTM_SETLINK (add/update) or RTM_DELLINK (remove), family AF_BRIDGE, on bridge port
 * `ifindex`: IFLA_AF_SPEC with IFLA_BRIDGE_VLAN_INFO {vlan_flags, vid} and, when vni is
 * non-zero, IFLA_BRIDGE_VLAN_TUNNEL_INFO {TUNNEL_ID vni, TUNNEL_VID vid}.  vid 1..4094,
 * vni 0..0xffffff. */
struct nlmsghdr *nnve_linux_msg_vlan(void *buf, size_t size, uint16_t type, int ifindex,
                                     uint16_t vid, uint16_t vlan_flags, uint32_t vni);

/* RTM_NEWNEIGH (NLM_F_CREATE|NLM_F_REPLACE) or RTM_DELNEIGH of a static bridge FDB entry:
 * AF_BRIDGE, port `ifindex`, NTF_MASTER (a NEWNEIGH with `sticky` also NTF_STICKY),
 * NUD_NOARP, NDA_LLADDR mac, NDA_VLAN vid. */
struct nlmsghdr *nnve_linux_msg_fdb(void *buf, size_t size, uint16_t type, int ifindex,
                                    const uint8_t mac[6], uint16_t vid, int sticky);

/* RTM_NEWNEIGH (NLM_F_CREATE|NLM_F_APPEND) or RTM_DELNEIGH of a VXLAN flood entry on
 * device `ifindex`: AF_BRIDGE, NTF_SELF, NUD_PERMANENT|NUD_NOARP, NDA_LLADDR all-zero,
 * NDA_DST remote (4 bytes for AF_INET, 16 for AF_INET6) and, when src_vni is non-zero
 * (external devices), NDA_SRC_VNI. */
struct nlmsghdr *nnve_linux_msg_flood(void *buf, size_t size, uint16_t type, int ifindex,
                                      int family, const uint8_t *remote, uint32_t src_vni);

/* RTM_SETLINK, family AF_BRIDGE, of port `ifindex`: IFLA_PROTINFO (nested) with
 * IFLA_BRPORT_LOCKED = locked. */
struct nlmsghdr *nnve_linux_msg_port_locked(void *buf, size_t size, int ifindex, int locked);

/* RTM_SETLINK, family AF_BRIDGE, of port `ifindex`: IFLA_PROTINFO (nested) with
 * IFLA_BRPORT_LEARNING = learning and IFLA_BRPORT_NEIGH_SUPPRESS = neigh_suppress (the
 * bridge port of a per-VNI device under EVPN: learning off, ARP/ND suppression on). */
struct nlmsghdr *nnve_linux_msg_port_evpn(void *buf, size_t size, int ifindex, int learning,
                                          int neigh_suppress);

/* RTM_NEWLINK (NLM_F_CREATE|NLM_F_EXCL) of VXLAN device `name` with VNI `vni`, local
 * address (family AF_INET/AF_INET6, or 0 for none), UDP port `port`, learning off,
 * IFLA_MASTER `master` and up. */
struct nlmsghdr *nnve_linux_msg_vxlan_new(void *buf, size_t size, const char *name, uint32_t vni,
                                          int family, const uint8_t *local, uint16_t port,
                                          int master);

/* The originator (NDA_PROTOCOL) of the neighbour entries this backend installs: it tells
 * them from an operator's or an EVPN speaker's entries ("proto 201" in `ip neigh`). */
enum { NNVE_LINUX_NEIGH_PROTO = 201 };

/* RTM_NEWNEIGH (NLM_F_CREATE|NLM_F_REPLACE, NDA_PROTOCOL NNVE_LINUX_NEIGH_PROTO) or
 * RTM_DELNEIGH of a NUD_NOARP neighbour entry ip -> mac on device `ifindex` (family AF_INET
 * or AF_INET6). */
struct nlmsghdr *nnve_linux_msg_neigh(void *buf, size_t size, uint16_t type, int ifindex,
                                      int family, const uint8_t *ip, const uint8_t mac[6]);

/* One entry of an AF_BRIDGE RTM_NEWNEIGH dump (bridge FDB or VXLAN FDB). */
struct nnve_linux_fdb {
    int ifindex;    /* ndm_ifindex: the port or the VXLAN device */
    int master;     /* NDA_MASTER, 0 when absent */
    uint16_t state; /* ndm_state */
    uint8_t flags;  /* ndm_flags */
    uint16_t vid;   /* NDA_VLAN, 0 when absent */
    uint8_t mac[6]; /* NDA_LLADDR */
    int dst_family; /* NDA_DST: AF_INET, AF_INET6, or 0 when absent */
    uint8_t dst[16];
    uint32_t src_vni; /* NDA_SRC_VNI, 0 when absent */
    uint32_t updated; /* NDA_CACHEINFO ndm_updated (clock ticks since the last update),
                       * UINT32_MAX when absent */
};

/* Parses an AF_BRIDGE RTM_NEWNEIGH message.  Returns 0, or -EINVAL when it is not one or
 * lacks a valid NDA_LLADDR. */
int nnve_linux_fdb_parse(const struct nlmsghdr *nlh, struct nnve_linux_fdb *out);

/* What an AF_BRIDGE RTM_NEWLINK message (dumped with RTEXT_FILTER_BRVLAN) says of a port. */
struct nnve_linux_port {
    int ifindex;
    int master; /* IFLA_MASTER */
    char name[16];
    int locked;    /* IFLA_PROTINFO/IFLA_BRPORT_LOCKED, -1 when not reported */
    uint16_t pvid; /* 0: none */
    uint64_t member[64];
    uint64_t untagged[64];
    uint32_t *vni_of_vid; /* when non-NULL (4096 entries), filled from the tunnel info */
};

/* Parses it into *port (vni_of_vid set by the caller or NULL).  Returns 0, or -EINVAL. */
int nnve_linux_port_parse(const struct nlmsghdr *nlh, struct nnve_linux_port *port);

#endif
