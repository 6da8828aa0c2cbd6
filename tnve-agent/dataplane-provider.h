/* dataplane-provider.h: how tnve-agent applies local tags on the hypervisor.
 *
 * A backend owns the hypervisor side of the wire between a vNIC and the nNVE: the vNIC's
 * bridge port carries the VN's local tag as its untagged PVID, and the uplink carries the
 * tag tagged (RFC 8394 §3.1).  Backends are idempotent: applying what is already there
 * changes nothing, removing what is absent succeeds.  Ports the agent never touched are
 * never touched by a backend.
 */
#ifndef TNVE_DATAPLANE_PROVIDER_H
#define TNVE_DATAPLANE_PROVIDER_H 1

#include <stdint.h>

struct tnve_dp;

struct tnve_dp_config {
    const char *uplink;  /* the interface toward the nNVE, e.g. "eno1"; NULL/"" for none */
    const char *bridge;  /* the VLAN-aware bridge holding vNIC ports and the uplink; NULL: the
                          * vNIC port's current master */
};

struct tnve_dp_class {
    const char *name; /* "none", "linux" */

    /* Opens the backend.  Returns 0 and *out, or a negative error with a logged reason. */
    int (*create)(const struct tnve_dp_config *cfg, struct tnve_dp **out);
    void (*destroy)(struct tnve_dp *dp);

    /* The vNIC port `ifname` gets `vid` as its only untagged PVID (any other VLAN the agent
     * set on it is removed) and the uplink becomes a tagged member of `vid`.  0 or < 0. */
    int (*port_set)(struct tnve_dp *dp, const char *ifname, uint16_t vid);

    /* Removes `vid` from port `ifname`.  The uplink keeps `vid` while `uplink_in_use` is
     * non-zero (other vNICs of the VN remain), else loses it too.  A port that no longer
     * exists is success.  0 or < 0. */
    int (*port_clear)(struct tnve_dp *dp, const char *ifname, uint16_t vid, int uplink_in_use);

    /* The VLAN the port currently has as PVID (set by anyone), 0 when none, or < 0. */
    int (*port_get)(struct tnve_dp *dp, const char *ifname);
};

extern const struct tnve_dp_class tnve_dp_none_class;
extern const struct tnve_dp_class tnve_dp_linux_class;

/* Finds a backend by name; NULL if unknown. */
const struct tnve_dp_class *tnve_dp_class_find(const char *name);

#endif
