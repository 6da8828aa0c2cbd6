/* dp-none.c: the `none` dataplane backend and the backend registry.
 *
 * `none` changes nothing on the host: it logs what a real backend would do and remembers
 * it, so port_get() answers consistently (tests and hosts whose bridge is managed by
 * something else use it).
 */
#include "dataplane-provider.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snv-log.h"

enum { DP_NONE_MAX_PORTS = 4096 };

struct dp_none_port {
    char ifname[64];
    uint16_t vid;
};

struct tnve_dp {
    char uplink[64];
    unsigned n_ports;
    struct dp_none_port *ports;
};

static int none_create(const struct tnve_dp_config *cfg, struct tnve_dp **out)
{
    struct tnve_dp *dp = calloc(1, sizeof *dp);
    if (!dp)
        return -ENOMEM;
    dp->ports = calloc(DP_NONE_MAX_PORTS, sizeof *dp->ports);
    if (!dp->ports) {
        free(dp);
        return -ENOMEM;
    }
    snprintf(dp->uplink, sizeof dp->uplink, "%s", cfg && cfg->uplink ? cfg->uplink : "");
    SNV_INFO("dp", "backend none: tags are logged, not applied uplink=%s",
             dp->uplink[0] ? dp->uplink : "-");
    *out = dp;
    return 0;
}

static void none_destroy(struct tnve_dp *dp)
{
    if (!dp)
        return;
    free(dp->ports);
    free(dp);
}

static struct dp_none_port *port_find(struct tnve_dp *dp, const char *ifname)
{
    for (unsigned i = 0; i < dp->n_ports; i++)
        if (!strcmp(dp->ports[i].ifname, ifname))
            return &dp->ports[i];
    return NULL;
}

static int none_port_set(struct tnve_dp *dp, const char *ifname, uint16_t vid)
{
    if (!ifname || !*ifname || strlen(ifname) >= sizeof dp->ports[0].ifname)
        return -EINVAL;
    struct dp_none_port *p = port_find(dp, ifname);
    if (!p) {
        if (dp->n_ports >= DP_NONE_MAX_PORTS)
            return -ENOSPC;
        p = &dp->ports[dp->n_ports++];
        snprintf(p->ifname, sizeof p->ifname, "%s", ifname);
    }
    if (p->vid == vid)
        return 0;
    p->vid = vid;
    SNV_INFO("dp", "port pvid set port=%s tag=%u uplink=%s (none backend)", ifname, vid,
             dp->uplink[0] ? dp->uplink : "-");
    return 0;
}

static int none_port_clear(struct tnve_dp *dp, const char *ifname, uint16_t vid,
                           int uplink_in_use)
{
    struct dp_none_port *p = ifname ? port_find(dp, ifname) : NULL;
    if (!p || p->vid != vid)
        return 0;
    SNV_INFO("dp", "port pvid cleared port=%s tag=%u uplink_keeps=%d (none backend)", ifname,
             vid, uplink_in_use ? 1 : 0);
    *p = dp->ports[--dp->n_ports];
    return 0;
}

static int none_port_get(struct tnve_dp *dp, const char *ifname)
{
    struct dp_none_port *p = ifname ? port_find(dp, ifname) : NULL;
    return p ? p->vid : 0;
}

const struct tnve_dp_class tnve_dp_none_class = {
    .name = "none",
    .create = none_create,
    .destroy = none_destroy,
    .port_set = none_port_set,
    .port_clear = none_port_clear,
    .port_get = none_port_get,
};

const struct tnve_dp_class *tnve_dp_class_find(const char *name)
{
    if (!name || !strcmp(name, "none"))
        return &tnve_dp_none_class;
    if (!strcmp(name, "linux"))
        return &tnve_dp_linux_class;
    return NULL;
}
