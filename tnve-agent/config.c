/* config.c: parses tnve-agent.conf with inih (see config.h). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libvirt/libvirt.h>

#include "sncp-error.h"
#include "snv-ini.h"
#include "snv-netlink.h"

void tnve_config_defaults(struct tnve_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->libvirt_uri, sizeof cfg->libvirt_uri, "qemu:///system");
    cfg->transport = TNVE_TRANSPORT_TCP;
    cfg->nnve_port = SNCP_DEFAULT_PORT;
    cfg->l2_ethertype = SNCP_L2_DEFAULT_ETHERTYPE;
    static const uint8_t group[6] = SNCP_L2_DISCOVERY_MAC_INIT;
    memcpy(cfg->l2_discovery_mac, group, sizeof group);
    snprintf(cfg->dataplane, sizeof cfg->dataplane, "none");
    snprintf(cfg->state_dir, sizeof cfg->state_dir, "/var/lib/splitnve");
    snprintf(cfg->control_socket, sizeof cfg->control_socket, "/run/splitnve/tnve-agent.ctl");
    if (gethostname(cfg->node_id, sizeof cfg->node_id - 1) != 0 || !cfg->node_id[0])
        snprintf(cfg->node_id, sizeof cfg->node_id, "tnve-agent");
    cfg->hook_timeout_ms = 10000;
    cfg->keepalive_ms = 10000;
    cfg->libvirt_keepalive_s = 5;
    cfg->retry_min_ms = 500;
    cfg->retry_max_ms = 30000;
    cfg->connect_timeout_ms = 15000;
    cfg->request_timeout_ms = 10000;
    cfg->address_poll_ms = 30000;
    cfg->address_sources = (1u << VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE) |
                           (1u << VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP);
}

int tnve_config_parse_duration(const char *s, uint32_t *ms)
{
    if (!s || !*s)
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    unsigned long long mult;
    if (!*end || !strcmp(end, "s"))
        mult = 1000;
    else if (!strcmp(end, "ms"))
        mult = 1;
    else if (!strcmp(end, "m"))
        mult = 60000;
    else if (!strcmp(end, "h"))
        mult = 3600000;
    else
        return -EINVAL;
    if (v > UINT32_MAX / mult)
        return -EINVAL;
    *ms = (uint32_t)(v * mult);
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    if (!strcasecmp(s, "yes") || !strcasecmp(s, "true") || !strcasecmp(s, "on") ||
        !strcmp(s, "1")) {
        *out = 1;
        return 0;
    }
    if (!strcasecmp(s, "no") || !strcasecmp(s, "false") || !strcasecmp(s, "off") ||
        !strcmp(s, "0")) {
        *out = 0;
        return 0;
    }
    return -EINVAL;
}

static int set_str(char *dst, size_t cap, const char *v)
{
    int n = snprintf(dst, cap, "%s", v);
    return n < 0 || (size_t)n >= cap ? -EINVAL : 0;
}

/* A number in decimal or 0x-hex within [min, max]. */
static int parse_u16(const char *v, unsigned min, unsigned max, uint16_t *out)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 0);
    if (errno || end == v || *end || *v == '-' || n < min || n > max)
        return -EINVAL;
    *out = (uint16_t)n;
    return 0;
}

static int parse_transport(const char *v, enum tnve_transport *out)
{
    if (!strcmp(v, "tcp"))
        *out = TNVE_TRANSPORT_TCP;
    else if (!strcmp(v, "l2"))
        *out = TNVE_TRANSPORT_L2;
    else
        return -EINVAL;
    return 0;
}

static int parse_sources(const char *v, unsigned *out)
{
    char buf[128];
    if (set_str(buf, sizeof buf, v))
        return -EINVAL;
    unsigned set = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        if (!strcmp(tok, "lease"))
            set |= 1u << VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE;
        else if (!strcmp(tok, "agent"))
            set |= 1u << VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT;
        else if (!strcmp(tok, "arp"))
            set |= 1u << VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP;
        else if (strcmp(tok, "none"))
            return -EINVAL;
    }
    *out = set;
    return 0;
}

struct parse_state {
    struct tnve_config *cfg;
    char section[128];
    struct tnve_map_rule *rule; /* the [map] section being read */
    char err[200];
    char agent_keys[4096]; /* "\nkey\n..." given at the top or in [agent]: one place */
};

/* An interface name key: a valid Linux name, or "" where `empty_ok` (the key unset). */
static int set_ifname(char *dst, size_t size, const char *v, int empty_ok)
{
    if (*v ? !snv_ifname_valid(v) : !empty_ok)
        return -EINVAL;
    return set_str(dst, size, v);
}

static int agent_key(struct tnve_config *c, const char *k, const char *v)
{
    uint32_t ms;
    if (!strcmp(k, "libvirt_uri"))
        return set_str(c->libvirt_uri, sizeof c->libvirt_uri, v);
    if (!strcmp(k, "nnve_address"))
        return set_str(c->nnve_address, sizeof c->nnve_address, v);
    if (!strcmp(k, "transport"))
        return parse_transport(v, &c->transport);
    if (!strcmp(k, "l2_interface"))
        return set_ifname(c->l2_interface, sizeof c->l2_interface, v, 0);
    if (!strcmp(k, "nnve_mac")) {
        /* a unicast MAC: the nNVE's port address */
        if (sncp_mac_parse(v, c->nnve_mac) < 0 || (c->nnve_mac[0] & 1))
            return -EINVAL;
        c->nnve_mac_set = 1;
        return 0;
    }
    if (!strcmp(k, "l2_discovery_mac")) {
        /* a group address bridges forward: SOLICITs go to every nNVE listening on it */
        uint8_t mac[6];
        if (sncp_mac_parse(v, mac) < 0 || !sncp_l2_discovery_mac_valid(mac))
            return -EINVAL;
        memcpy(c->l2_discovery_mac, mac, sizeof mac);
        return 0;
    }
    if (!strcmp(k, "l2_vlan"))
        return parse_u16(v, 0, 4094, &c->l2_vlan);
    if (!strcmp(k, "l2_ethertype")) {
        /* EtherTypes start at 0x0600; the VLAN TPIDs (802.1Q, 802.1ad and the older
         * 0x9100 of QinQ switches) cannot carry the channel */
        uint16_t et;
        if (parse_u16(v, 0x0600, 0xffff, &et) < 0 || et == 0x8100 || et == 0x88a8 ||
            et == 0x9100)
            return -EINVAL;
        c->l2_ethertype = et;
        return 0;
    }
    if (!strcmp(k, "nnve_name"))
        return set_str(c->nnve_name, sizeof c->nnve_name, v);
    if (!strcmp(k, "nnve_port")) {
        char *end;
        unsigned long p = strtoul(v, &end, 10);
        if (*end || p < 1 || p > 65535)
            return -EINVAL;
        c->nnve_port = (uint16_t)p;
        return 0;
    }
    if (!strcmp(k, "cert"))
        return set_str(c->cert, sizeof c->cert, v);
    if (!strcmp(k, "key"))
        return set_str(c->key, sizeof c->key, v);
    if (!strcmp(k, "ca"))
        return set_str(c->ca, sizeof c->ca, v);
    if (!strcmp(k, "nnve_identity"))
        return set_str(c->nnve_identity, sizeof c->nnve_identity, v);
    if (!strcmp(k, "crl"))
        return set_str(c->crl, sizeof c->crl, v);
    if (!strcmp(k, "node_id"))
        return *v ? set_str(c->node_id, sizeof c->node_id, v) : -EINVAL;
    if (!strcmp(k, "uplink"))
        return set_ifname(c->uplink, sizeof c->uplink, v, 1);
    if (!strcmp(k, "bridge"))
        return set_ifname(c->bridge, sizeof c->bridge, v, 1);
    if (!strcmp(k, "dataplane")) {
        if (strcmp(v, "none") && strcmp(v, "linux"))
            return -EINVAL;
        return set_str(c->dataplane, sizeof c->dataplane, v);
    }
    if (!strcmp(k, "state_dir"))
        return set_str(c->state_dir, sizeof c->state_dir, v);
    if (!strcmp(k, "control_socket"))
        return set_str(c->control_socket, sizeof c->control_socket, v);
    if (!strcmp(k, "associate_on_define"))
        return parse_bool(v, &c->associate_on_define);
    if (!strcmp(k, "address_sources"))
        return parse_sources(v, &c->address_sources);
    struct {
        const char *key;
        uint32_t *dst;
        uint32_t min;
    } durations[] = {
        {"hook_timeout", &c->hook_timeout_ms, 100},
        {"keepalive", &c->keepalive_ms, SNCP_MIN_KEEPALIVE_MS},
        {"retry_min", &c->retry_min_ms, 10},
        {"retry_max", &c->retry_max_ms, 10},
        {"request_timeout", &c->request_timeout_ms, 100},
        {"connect_timeout", &c->connect_timeout_ms, 100},
        {"address_poll_interval", &c->address_poll_ms, 0},
    };
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        if (strcmp(k, durations[i].key))
            continue;
        if (tnve_config_parse_duration(v, &ms) || ms < durations[i].min)
            return -EINVAL;
        *durations[i].dst = ms;
        return 0;
    }
    if (!strcmp(k, "libvirt_keepalive")) {
        if (tnve_config_parse_duration(v, &ms) || ms < 1000)
            return -EINVAL;
        c->libvirt_keepalive_s = ms / 1000;
        return 0;
    }
    return -ENOENT;
}

static int rule_key(struct tnve_map_rule *r, const char *k, const char *v)
{
    if (!strcmp(k, "network"))
        return set_str(r->network, sizeof r->network, v);
    if (!strcmp(k, "portgroup"))
        return set_str(r->portgroup, sizeof r->portgroup, v);
    if (!strcmp(k, "bridge"))
        return set_str(r->bridge, sizeof r->bridge, v);
    if (!strcmp(k, "vn_id"))
        return tnve_vn_set_id(&r->vn, v);
    if (!strcmp(k, "vn_name"))
        return tnve_vn_set_name(&r->vn, v);
    return -ENOENT;
}

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
    struct parse_state *st = user;
    struct tnve_config *c = st->cfg;
    if (strcmp(section, st->section)) {
        snprintf(st->section, sizeof st->section, "%s", section);
        st->rule = NULL;
        if (!strncmp(section, "map ", 4)) {
            const char *rn = section + 4;
            while (*rn == ' ')
                rn++;
            if (c->n_rules >= TNVE_MAX_RULES) {
                snprintf(st->err, sizeof st->err, "too many [map] sections (max %d)",
                         TNVE_MAX_RULES);
                return 0;
            }
            st->rule = &c->rules[c->n_rules++];
            memset(st->rule, 0, sizeof *st->rule);
            if (set_str(st->rule->name, sizeof st->rule->name, rn) || !*rn) {
                snprintf(st->err, sizeof st->err, "bad map name [%s]", section);
                return 0;
            }
        } else if (*section && strcmp(section, "agent")) {
            snprintf(st->err, sizeof st->err, "unknown section [%s]", section);
            return 0;
        }
    }
    if (!st->rule) {
        /* snv_ini_parse refuses a key twice in one section; the top of the file and
         * [agent] are one section under two names. */
        size_t used = strlen(st->agent_keys), n = strlen(name);
        char key[128];
        snprintf(key, sizeof key, "\n%s\n", name);
        if (strstr(st->agent_keys, key)) {
            snprintf(st->err, sizeof st->err, "key \"%s\" repeated (at the top and in [agent])",
                     name);
            return 0;
        }
        if (used + n + 2 < sizeof st->agent_keys)
            snprintf(st->agent_keys + used, sizeof st->agent_keys - used, "%s%s\n",
                     used ? "" : "\n", name);
    }
    int r = st->rule ? rule_key(st->rule, name, value) : agent_key(c, name, value);
    if (r == -ENOENT) {
        snprintf(st->err, sizeof st->err, "unknown key '%s'", name);
        return 0;
    }
    if (r < 0) {
        snprintf(st->err, sizeof st->err, "bad value for '%s': '%s'", name, value);
        return 0;
    }
    return 1;
}

int tnve_config_load(const char *path, struct tnve_config *cfg, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    struct parse_state st = {.cfg = cfg};
    st.section[0] = '\0';
    /* Long lines, repeated keys and repeated sections are refused there. */
    char ierr[256];
    int line = snv_ini_parse(f, NULL, ini_cb, &st, NULL, ierr, sizeof ierr);
    fclose(f);
    if (line < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(-line));
        return line;
    }
    if (line != 0) {
        snprintf(err, errlen, "%s:%d: %s", path, line,
                 st.err[0] ? st.err : ierr[0] ? ierr : "syntax error");
        return SNCP_E_CONFIG;
    }
    for (unsigned i = 0; i < cfg->n_rules; i++) {
        const struct tnve_map_rule *r = &cfg->rules[i];
        if (!tnve_vn_is_set(&r->vn)) {
            snprintf(err, errlen, "%s: [map %s]: vn_id or vn_name required", path, r->name);
            return SNCP_E_CONFIG;
        }
        if (!r->network[0] && !r->portgroup[0] && !r->bridge[0]) {
            snprintf(err, errlen, "%s: [map %s]: network, portgroup or bridge required", path,
                     r->name);
            return SNCP_E_CONFIG;
        }
    }
    if (cfg->retry_max_ms < cfg->retry_min_ms) {
        snprintf(err, errlen, "%s: retry_max is below retry_min", path);
        return SNCP_E_CONFIG;
    }
    return 0;
}

const char *tnve_transport_name(enum tnve_transport t)
{
    return t == TNVE_TRANSPORT_L2 ? "l2" : "tcp";
}

const char *tnve_config_l2_interface(const struct tnve_config *cfg)
{
    return cfg->l2_interface[0] ? cfg->l2_interface : cfg->uplink;
}

int tnve_config_validate(const struct tnve_config *cfg, char *err, size_t errlen)
{
    const char *missing = !cfg->cert[0] ? "cert" : !cfg->key[0] ? "key" : !cfg->ca[0] ? "ca" : NULL;
    if (missing) {
        snprintf(err, errlen, "configuration key '%s' is required", missing);
        return SNCP_E_CONFIG;
    }
    if (cfg->transport == TNVE_TRANSPORT_TCP) {
        if (!cfg->nnve_address[0]) {
            snprintf(err, errlen,
                     "configuration key 'nnve_address' is required with "
                     "transport = tcp");
            return SNCP_E_CONFIG;
        }
        /* L2 keys in a TCP configuration are a mistake worth stopping for: the operator
         * meant one transport and wrote the keys of the other. */
        const char *l2_key = cfg->l2_interface[0] ? "l2_interface"
                             : cfg->nnve_mac_set  ? "nnve_mac"
                             : cfg->l2_vlan       ? "l2_vlan"
                             : cfg->nnve_name[0]  ? "nnve_name"
                                                  : NULL;
        if (l2_key) {
            snprintf(err, errlen, "'%s' needs transport = l2 (transport is tcp)", l2_key);
            return SNCP_E_CONFIG;
        }
    } else if (!tnve_config_l2_interface(cfg)[0]) {
        snprintf(err, errlen, "transport = l2 needs 'l2_interface' (or 'uplink')");
        return SNCP_E_CONFIG;
    } else if (cfg->nnve_address[0]) {
        snprintf(err, errlen,
                 "'nnve_address' needs transport = tcp (transport is l2; use "
                 "nnve_mac, or leave it out for discovery)");
        return SNCP_E_CONFIG;
    }
    /* Every hypervisor holds a certificate from the same CA: only the certificate identity
     * tells the nNVE apart, over TCP (an address can be redirected) as over L2 (any host on
     * the segment can answer the discovery or take the nNVE's MAC). */
    if (!cfg->nnve_identity[0]) {
        snprintf(err, errlen,
                 "configuration key 'nnve_identity' is required (the switch certificate's "
                 "name): without it any certificate of the CA, another hypervisor's "
                 "included, is accepted as the nNVE");
        return SNCP_E_CONFIG;
    }
    return 0;
}
