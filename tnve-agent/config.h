/* config.h: tnve-agent's configuration (INI, parsed with inih).
 *
 * Keys live at the top of the file or in an [agent] section; each [map NAME] section is
 * one VN mapping rule.  See etc/tnve-agent.conf for the commented sample.  Durations
 * accept "500ms", "30s", "2m", "1h"; a plain number means seconds.
 */
#ifndef TNVE_CONFIG_H
#define TNVE_CONFIG_H 1

#include <stddef.h>
#include <stdint.h>

#include "sncp-l2.h"
#include "sncp-msg.h"
#include "vn.h"

enum { TNVE_CONFIG_STR = 256, TNVE_MAX_RULES = 256, TNVE_MAX_NNVES = 4 };

/* How the nNVEs of a dual-homed host serve a VN (RFC 8394 §4 Req-3, Req-4). */
enum tnve_mode {
    TNVE_MODE_UNSET = 0,       /* [map]: the host's mode */
    TNVE_MODE_ACTIVE_STANDBY,  /* one nNVE (the active one) holds the VN's TSIs */
    TNVE_MODE_ACTIVE_ACTIVE,   /* every nNVE holds them at the same time */
};

/* [map NAME]: a vNIC matches when every criterion given matches (network = the libvirt
 * network of a type='network' interface, portgroup = its source portgroup, bridge = the
 * source bridge (type='bridge') or the network's bridge as the live XML reports it).
 * Rules are tried in file order; the first match wins. */
struct tnve_map_rule {
    char name[64];
    char network[TNVE_CONFIG_STR];
    char portgroup[TNVE_CONFIG_STR];
    char bridge[64];
    struct tnve_vn vn;
    enum tnve_mode mode; /* the VN's mode; UNSET: the host's */
};

/* How the agent reaches the nNVE. */
enum tnve_transport {
    TNVE_TRANSPORT_TCP, /* TLS over TCP to nnve_address:nnve_port */
    TNVE_TRANSPORT_L2,  /* TLS over the SNCP Layer-2 channel on l2_interface */
};

/* One nNVE the agent keeps a session with: the single-nNVE keys at the top of the file,
 * or one [nnve NAME] section each (the same key names). */
struct tnve_config_nnve {
    char name[64];                         /* section name; "nnve" for the top-level keys */
    enum tnve_transport transport;
    char nnve_address[TNVE_CONFIG_STR];
    uint16_t nnve_port;
    char l2_interface[64];
    uint8_t nnve_mac[6];
    int nnve_mac_set;
    uint16_t l2_vlan;
    uint16_t l2_ethertype;
    uint8_t l2_discovery_mac[6];
    char nnve_name[SNCP_L2_MAX_NAME_LEN + 1];
    char nnve_identity[TNVE_CONFIG_STR];
    /* [nnve NAME] only: the hypervisor interface cabled to this nNVE's switch (e.g. a slave
     * of an active-backup bond); "" none.  Set for every [nnve] section or for none; when
     * set, active-standby VNs follow the uplink that carries the traffic. */
    char uplink[64];
};

struct tnve_config {
    char libvirt_uri[TNVE_CONFIG_STR];     /* default qemu:///system */
    enum tnve_transport transport;         /* default tcp */
    char nnve_address[TNVE_CONFIG_STR];    /* required for tcp */
    uint16_t nnve_port;                    /* default 8394 */
    char l2_interface[64];                 /* l2: the channel's interface; "" = uplink */
    uint8_t nnve_mac[6];                   /* l2: the nNVE's MAC when nnve_mac_set */
    int nnve_mac_set;                      /* 0: find the nNVE by discovery */
    uint16_t l2_vlan;                      /* l2: VLAN ID of the channel; 0 = untagged */
    uint16_t l2_ethertype;                 /* l2: default 0x88B5 */
    uint8_t l2_discovery_mac[6];           /* l2: SOLICIT group, default 03:53:4e:43:50:01 */
    char nnve_name[SNCP_L2_MAX_NAME_LEN + 1]; /* l2: only ADVERTISEs of this name; "" any */
    char cert[TNVE_CONFIG_STR], key[TNVE_CONFIG_STR], ca[TNVE_CONFIG_STR]; /* required */
    char nnve_identity[TNVE_CONFIG_STR];   /* expected nNVE certificate identity (required) */
    char crl[TNVE_CONFIG_STR];             /* PEM CRL checked at every handshake; "" none */
    char node_id[SNCP_MAX_NODE_ID_LEN + 1];/* default: the host name */
    char uplink[64];                       /* "" = none */
    char bridge[64];                       /* dataplane bridge; "" = the port's master */
    char dataplane[32];                    /* "none" (default) or "linux" */
    char state_dir[TNVE_CONFIG_STR];       /* default /var/lib/splitnve */
    char control_socket[TNVE_CONFIG_STR];  /* default /run/splitnve/tnve-agent.ctl */
    int associate_on_define;               /* default 0 */
    uint32_t hook_timeout_ms;              /* default 10 s */
    uint32_t keepalive_ms;                 /* SNCP keepalive, default 10 s */
    uint32_t libvirt_keepalive_s;          /* default 5 (count 3) */
    uint32_t retry_min_ms, retry_max_ms;   /* default 500 ms, 30 s */
    uint32_t connect_timeout_ms;           /* connection attempt until TLS up, default 15 s */
    uint32_t hello_timeout_ms;             /* TLS handshake, then HELLO answer: default 4 s */
    uint32_t request_timeout_ms;           /* default 10 s */
    uint32_t address_poll_ms;              /* default 30 s; 0 disables */
    unsigned address_sources;              /* bit set of 1 << VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_* */
    enum tnve_mode mode;                   /* the host's mode, default active-standby */
    /* The nNVEs in preference order: the [nnve NAME] sections, else one entry from the
     * top-level keys above (filled by tnve_config_load). */
    unsigned n_nnves;
    struct tnve_config_nnve nnves[TNVE_MAX_NNVES];
    unsigned n_rules;
    struct tnve_map_rule rules[TNVE_MAX_RULES];
};

/* Fills *cfg with the defaults. */
void tnve_config_defaults(struct tnve_config *cfg);

/* Parses `path` over the defaults.  Returns 0, or -errno when the file cannot be read, or
 * SNCP_E_CONFIG with "file:line: reason" in err[0..errlen). */
int tnve_config_load(const char *path, struct tnve_config *cfg, char *err, size_t errlen);

/* Checks what a running agent needs (cert/key/CA; nnve_address for tcp, an interface for
 * l2) and keys that do not fit the transport.  0 or SNCP_E_CONFIG with the reason in err. */
int tnve_config_validate(const struct tnve_config *cfg, char *err, size_t errlen);

/* The interface the L2 channel runs on: l2_interface, else uplink ("" when neither). */
const char *tnve_config_l2_interface(const struct tnve_config *cfg);

/* The same for one nNVE of the list. */
const char *tnve_config_nnve_l2_interface(const struct tnve_config *cfg,
                                          const struct tnve_config_nnve *e);

/* The single-nNVE entry the top-level keys make (name "nnve"). */
void tnve_config_single_nnve(const struct tnve_config *cfg, struct tnve_config_nnve *e);

/* "active-standby" / "active-active". */
const char *tnve_mode_name(enum tnve_mode m);

/* The mode of VN `vn` (a vNIC's form or the nNVE's catalogue entry): the mode of the first
 * [map] section with a mode whose VN names the same VN (equal forms, or one designating
 * the other), else the host's. */
enum tnve_mode tnve_config_vn_mode(const struct tnve_config *cfg, const struct tnve_vn *vn);

/* "tcp" / "l2". */
const char *tnve_transport_name(enum tnve_transport t);

/* "500ms", "30s", "2m", "1h", "7" (seconds) -> milliseconds.  0 or -EINVAL. */
int tnve_config_parse_duration(const char *s, uint32_t *ms);

#endif
