/* config.h: nnve-daemon's configuration file (INI, read with inih).
 *
 *   [global]           transport, listen, l2_interfaces, l2_ethertype, l2_discovery_mac,
 *                      cert, key, ca, node_id, state_dir, control_socket, backend,
 *                      dataplane_journal, fdb_file, hold_time, tag_hold_down, keepalive,
 *                      handshake_timeout, max_sessions, max_tsis_per_session,
 *                      max_addrs_per_tsi, max_vns_per_hypervisor, max_tags_per_hypervisor,
 *                      max_outstanding, max_write_queue, metrics_file, mappings_file,
 *                      metrics_interval,
 *                      audit_file, sync, log_level
 *   [domain NAME]      ports = swp1, swp2 (or *: every port not named elsewhere);
 *                      tags = 100-199, 300; reserved = 150
 *   [hypervisor ID]    port = swp1 | learn; vns = 5000, 5001-5010, blue;
 *                      max_vns, max_tsis, max_addrs_per_tsi, max_tags (override the globals)
 *   [vn NAME]          id = 5001
 *   [pair]             domain, role = allocator|follower, peer_identity, listen (allocator),
 *                      peer (follower), retry: the ToR pair peer sharing the domain's tags
 *   [linux]            bridge, vxlan_mode, vxlan_device, local_ip, vxlan_port, remote_vteps,
 *                      anti_spoofing (settings of the linux dataplane backend)
 *
 * Default deny: an identity without a [hypervisor] section, or a VN not in its list, is not
 * authorized.  The VN catalogue is the [vn] sections (name -> ID) plus the bare IDs that
 * `vns` lists grant; a name in `vns` must have a [vn] section.  Every error names the file and
 * line.  etc/nnve-daemon.conf documents it all.
 */
#ifndef NNVE_CONFIG_H
#define NNVE_CONFIG_H 1

#include <stddef.h>
#include <stdint.h>

#include "backend-linux.h"
#include "tagpool.h"

#define NNVE_DEFAULT_CONFIG "/etc/splitnve/nnve-daemon.conf"
#define NNVE_DEFAULT_CTL "/run/splitnve/nnve-daemon.ctl"
#define NNVE_DEFAULT_STATE_DIR "/var/lib/splitnve"

struct nnve_listen_addr {
    char addr[64]; /* numeric, without brackets */
    uint16_t port;
};

struct nnve_domain_cfg {
    char *name;
    char **ports;
    unsigned n_ports;
    int any_port; /* ports = * */
    struct nnve_tag_range *ranges;
    unsigned n_ranges;
    uint16_t *reserved;
    unsigned n_reserved;
    unsigned line;
};

/* One entry of a hypervisor's VN list: an ID range, or a name (name set; lo = hi = the ID
 * of its [vn] section, filled in at load). */
struct nnve_vn_ref {
    uint32_t lo, hi;
    char *name;
    unsigned line;
};

/* A hypervisor's limits: its own keys, else the [global] ones. */
struct nnve_hv_limits {
    unsigned vns;  /* VN connections */
    unsigned tsis; /* TSI instances */
    unsigned addrs_per_tsi;
    unsigned tags; /* tags it alone holds in its domain; 0: half the domain's pool */
};

struct nnve_hv_cfg {
    char *identity;
    char *port; /* NULL when learned */
    int learn;
    struct nnve_vn_ref *vns;
    unsigned n_vns;
    struct nnve_hv_limits limits; /* 0: the global value */
    unsigned line;
};

struct nnve_vn_cfg {
    char *name;
    uint32_t id;
    int has_id;
    unsigned line;
};

/* Transports sessions may arrive on (a set). */
enum nnve_transport {
    NNVE_TRANSPORT_TCP = 1, /* TLS over TCP on the listen addresses */
    NNVE_TRANSPORT_L2 = 2,  /* TLS over the Layer-2 channel on l2_interfaces */
};

enum nnve_sync_mode {
    NNVE_SYNC_FULL = 0,   /* fsync at every group commit (default) */
    NNVE_SYNC_NORMAL = 1, /* WAL without fsync per commit: survives a process crash only */
};

/* [pair] (PROTOCOL.md §17); line 0: no [pair] section. */
struct nnve_pair_cfg {
    char *domain;
    int role; /* enum nnve_pair_role: 0 allocator, 1 follower */
    int has_role;
    char *peer_identity;
    char listen_addr[64]; /* allocator: where the follower connects */
    uint16_t listen_port;
    int has_listen;
    char *peer_host; /* follower: the allocator's pair listener */
    uint16_t peer_port;
    uint32_t retry_ms; /* reconnect interval and RETRY_AFTER of a pending claim; 0: 1000 */
    unsigned line;
};

struct nnve_config {
    char *path;
    unsigned transports; /* enum nnve_transport bits; default TCP */
    struct nnve_listen_addr *listen;
    unsigned n_listen;
    unsigned listen_line; /* 0: not set (default address) */
    char **l2_interfaces; /* the switch ports the L2 channel runs on */
    unsigned n_l2_interfaces;
    unsigned l2_line;
    uint16_t l2_ethertype;       /* default SNCP_L2_DEFAULT_ETHERTYPE */
    uint8_t l2_discovery_mac[6]; /* default 03:53:4e:43:50:01 */
    unsigned l2_max_unauth;      /* l2_max_unauthenticated: over all L2 interfaces; default 32 */
    char *cert, *key, *ca;
    char *crl; /* PEM CRL file checked at every handshake, NULL: none */
    char *node_id;
    char *state_dir;
    char *control_socket;
    char *backend;
    char *dataplane_journal;
    char *fdb_file;
    char *metrics_file;
    char *mappings_file; /* JSON mapping table for an external NVA, rewritten with metrics */
    char *audit_file;    /* audit lines also appended here (snv_audit_file_open) */
    uint32_t metrics_interval_ms;
    uint32_t hold_time_ms;
    uint32_t tag_hold_down_ms;
    uint32_t keepalive_ms;
    uint32_t handshake_timeout_ms;
    uint32_t hello_timeout_ms;             /* HELLO deadline after the TLS handshake */
    unsigned max_hello_pending;            /* TCP connections before HELLO, in all */
    unsigned max_hello_pending_per_source; /* ... from one address */
    unsigned max_sessions;
    unsigned max_tsis_per_session;
    unsigned max_addrs_per_tsi;
    unsigned max_vns_per_hypervisor;
    unsigned max_tags_per_hypervisor; /* 0: half of the domain's pool, rounded up */
    unsigned max_outstanding;
    size_t max_write_queue;
    enum nnve_sync_mode sync;
    int log_level; /* enum snv_log_level, or -1 when not set */

    struct nnve_domain_cfg *domains;
    unsigned n_domains;
    struct nnve_hv_cfg *hvs;
    unsigned n_hvs;
    struct nnve_vn_cfg *vns;
    unsigned n_vns;
    struct nnve_pair_cfg pair;

    /* [linux]: the linux backend's settings, defaults filled in.  Its strings point at the
     * linux_* fields below (owned by the config) or at constant defaults. */
    struct nnve_linux_config linux_cfg;
    char *linux_bridge, *linux_vxlan_device, *linux_local_ip, *linux_remote_vteps;
    unsigned linux_line; /* line of the first [linux] key; 0 when there is none */
    unsigned linux_vxlan_mode_line, linux_remote_vteps_line; /* 0 when unset */
};

/* Reads and validates `path`.  Returns 0 and *out (caller frees with nnve_config_destroy),
 * or SNCP_E_CONFIG / -errno with "FILE:LINE: reason" in err[0..errlen). */
int nnve_config_load(const char *path, struct nnve_config **out, char *err, size_t errlen);
/* The same from a string (tests); `name` is used in messages. */
int nnve_config_parse_string(const char *text, const char *name, struct nnve_config **out,
                             char *err, size_t errlen);
void nnve_config_destroy(struct nnve_config *cfg);

/* Whether the [linux] settings of a and b are the same.  Returns 1 or 0. */
int nnve_config_linux_equal(const struct nnve_config *a, const struct nnve_config *b);
/* Whether the [pair] settings of a and b are the same.  Returns 1 or 0. */
int nnve_config_pair_equal(const struct nnve_config *a, const struct nnve_config *b);
/* Swaps the [linux] settings of a and b (a reload keeps the running ones, which apply only
 * at start-up). */
void nnve_config_linux_swap(struct nnve_config *a, struct nnve_config *b);

/* Lookups.  NULL when absent. */
const struct nnve_hv_cfg *nnve_config_find_hv(const struct nnve_config *cfg, const char *identity);
const struct nnve_domain_cfg *nnve_config_port_domain(const struct nnve_config *cfg,
                                                      const char *port);
const struct nnve_vn_cfg *nnve_config_find_vn_name(const struct nnve_config *cfg, const char *name);
const struct nnve_vn_cfg *nnve_config_find_vn_id(const struct nnve_config *cfg, uint32_t id);

/* Whether the hypervisor may use the VN with this ID: an ID range of its `vns` holds it, or
 * a name of its `vns` whose [vn] section has this ID.  Returns 1 or 0. */
int nnve_config_vn_allowed(const struct nnve_hv_cfg *hv, uint32_t id);
/* The limits of hypervisor `hv` (may be NULL: the globals). */
struct nnve_hv_limits nnve_config_hv_limits(const struct nnve_config *cfg,
                                            const struct nnve_hv_cfg *hv);

/* "30s", "500ms", "2m", "1h", plain seconds -> ms.  Returns 0 or -EINVAL. */
int nnve_config_parse_duration(const char *s, uint32_t *ms);

#endif
