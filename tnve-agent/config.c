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
    cfg->hello_timeout_ms = 4000;
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

/* An [nnve NAME] section header: NAME as ini_cb takes it, and the header's line. */
struct nnve_header {
    char *name;
    unsigned line;
};

struct parse_state {
    struct tnve_config *cfg;
    char section[128];
    struct tnve_map_rule *rule;    /* the [map] section being read */
    struct tnve_config_nnve *nnve; /* the [nnve] section being read */
    int top_nnve_keys;             /* single-nNVE keys given at the top or in [agent] */
    char err[200];
    char agent_keys[4096];       /* "\nkey\n..." given at the top or in [agent]: one place */
    struct nnve_header *headers; /* every [nnve NAME] header, in file order */
    size_t n_headers;
    size_t cap_headers;
    int nomem;
};

/* An interface name key: a valid Linux name, or "" where `empty_ok` (the key unset). */
static int set_ifname(char *dst, size_t size, const char *v, int empty_ok)
{
    if (*v ? !snv_ifname_valid(v) : !empty_ok)
        return -EINVAL;
    return set_str(dst, size, v);
}

static void nnve_defaults(struct tnve_config_nnve *e)
{
    memset(e, 0, sizeof *e);
    e->transport = TNVE_TRANSPORT_TCP;
    e->nnve_port = SNCP_DEFAULT_PORT;
    e->l2_ethertype = SNCP_L2_DEFAULT_ETHERTYPE;
    static const uint8_t group[6] = SNCP_L2_DISCOVERY_MAC_INIT;
    memcpy(e->l2_discovery_mac, group, sizeof group);
}

/* The keys of one nNVE (top level or an [nnve NAME] section): 0, -EINVAL, or -ENOENT for
 * another key. */
static int nnve_key(struct tnve_config_nnve *e, const char *k, const char *v)
{
    if (!strcmp(k, "nnve_address"))
        return set_str(e->nnve_address, sizeof e->nnve_address, v);
    if (!strcmp(k, "transport"))
        return parse_transport(v, &e->transport);
    if (!strcmp(k, "l2_interface"))
        return set_ifname(e->l2_interface, sizeof e->l2_interface, v, 0);
    if (!strcmp(k, "nnve_mac")) {
        /* a unicast MAC: the nNVE's port address */
        if (sncp_mac_parse(v, e->nnve_mac) < 0 || (e->nnve_mac[0] & 1))
            return -EINVAL;
        e->nnve_mac_set = 1;
        return 0;
    }
    if (!strcmp(k, "l2_discovery_mac")) {
        /* a group address bridges forward: SOLICITs go to every nNVE listening on it */
        uint8_t mac[6];
        if (sncp_mac_parse(v, mac) < 0 || !sncp_l2_discovery_mac_valid(mac))
            return -EINVAL;
        memcpy(e->l2_discovery_mac, mac, sizeof mac);
        return 0;
    }
    if (!strcmp(k, "l2_vlan"))
        return parse_u16(v, 0, 4094, &e->l2_vlan);
    if (!strcmp(k, "l2_ethertype")) {
        /* EtherTypes start at 0x0600; the VLAN TPIDs (802.1Q, 802.1ad and the older
         * 0x9100 of QinQ switches) cannot carry the channel */
        uint16_t et;
        if (parse_u16(v, 0x0600, 0xffff, &et) < 0 || et == 0x8100 || et == 0x88a8 || et == 0x9100)
            return -EINVAL;
        e->l2_ethertype = et;
        return 0;
    }
    if (!strcmp(k, "nnve_name"))
        return set_str(e->nnve_name, sizeof e->nnve_name, v);
    if (!strcmp(k, "nnve_port")) {
        char *end;
        unsigned long p = strtoul(v, &end, 10);
        if (*end || p < 1 || p > 65535)
            return -EINVAL;
        e->nnve_port = (uint16_t)p;
        return 0;
    }
    if (!strcmp(k, "nnve_identity"))
        return set_str(e->nnve_identity, sizeof e->nnve_identity, v);
    return -ENOENT;
}

void tnve_config_single_nnve(const struct tnve_config *c, struct tnve_config_nnve *e)
{
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "nnve");
    e->transport = c->transport;
    memcpy(e->nnve_address, c->nnve_address, sizeof e->nnve_address);
    e->nnve_port = c->nnve_port;
    memcpy(e->l2_interface, c->l2_interface, sizeof e->l2_interface);
    memcpy(e->nnve_mac, c->nnve_mac, 6);
    e->nnve_mac_set = c->nnve_mac_set;
    e->l2_vlan = c->l2_vlan;
    e->l2_ethertype = c->l2_ethertype;
    memcpy(e->l2_discovery_mac, c->l2_discovery_mac, 6);
    memcpy(e->nnve_name, c->nnve_name, sizeof e->nnve_name);
    memcpy(e->nnve_identity, c->nnve_identity, sizeof e->nnve_identity);
}

/* A top-level nNVE key: parsed on the single-nNVE entry, stored in the top-level fields. */
static int top_nnve_key(struct tnve_config *c, const char *k, const char *v)
{
    struct tnve_config_nnve e;
    tnve_config_single_nnve(c, &e);
    int rc = nnve_key(&e, k, v);
    if (rc < 0)
        return rc;
    c->transport = e.transport;
    memcpy(c->nnve_address, e.nnve_address, sizeof c->nnve_address);
    c->nnve_port = e.nnve_port;
    memcpy(c->l2_interface, e.l2_interface, sizeof c->l2_interface);
    memcpy(c->nnve_mac, e.nnve_mac, 6);
    c->nnve_mac_set = e.nnve_mac_set;
    c->l2_vlan = e.l2_vlan;
    c->l2_ethertype = e.l2_ethertype;
    memcpy(c->l2_discovery_mac, e.l2_discovery_mac, 6);
    memcpy(c->nnve_name, e.nnve_name, sizeof c->nnve_name);
    memcpy(c->nnve_identity, e.nnve_identity, sizeof c->nnve_identity);
    return 0;
}

static int parse_mode(const char *v, enum tnve_mode *out)
{
    if (!strcmp(v, "active-standby"))
        *out = TNVE_MODE_ACTIVE_STANDBY;
    else if (!strcmp(v, "active-active"))
        *out = TNVE_MODE_ACTIVE_ACTIVE;
    else
        return -EINVAL;
    return 0;
}

const char *tnve_mode_name(enum tnve_mode m)
{
    return m == TNVE_MODE_ACTIVE_ACTIVE ? "active-active" : "active-standby";
}

enum tnve_mode tnve_config_vn_mode(const struct tnve_config *cfg, const struct tnve_vn *vn)
{
    for (unsigned i = 0; i < cfg->n_rules; i++) {
        const struct tnve_map_rule *r = &cfg->rules[i];
        if (r->mode != TNVE_MODE_UNSET &&
            (tnve_vn_equal(&r->vn, vn) || tnve_vn_designates(vn, &r->vn) ||
             tnve_vn_designates(&r->vn, vn)))
            return r->mode;
    }
    return cfg->mode == TNVE_MODE_ACTIVE_ACTIVE ? TNVE_MODE_ACTIVE_ACTIVE
                                                : TNVE_MODE_ACTIVE_STANDBY;
}

static int agent_key(struct tnve_config *c, const char *k, const char *v)
{
    uint32_t ms;
    if (!strcmp(k, "libvirt_uri"))
        return set_str(c->libvirt_uri, sizeof c->libvirt_uri, v);
    if (!strcmp(k, "mode"))
        return parse_mode(v, &c->mode);
    if (!strcmp(k, "cert"))
        return set_str(c->cert, sizeof c->cert, v);
    if (!strcmp(k, "key"))
        return set_str(c->key, sizeof c->key, v);
    if (!strcmp(k, "ca"))
        return set_str(c->ca, sizeof c->ca, v);
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
        {"hello_timeout", &c->hello_timeout_ms, 100},
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
    if (!strcmp(k, "mode"))
        return parse_mode(v, &r->mode);
    return -ENOENT;
}

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
    struct parse_state *st = user;
    struct tnve_config *c = st->cfg;
    if (strcmp(section, st->section)) {
        snprintf(st->section, sizeof st->section, "%s", section);
        st->rule = NULL;
        st->nnve = NULL;
        if (!strncmp(section, "nnve ", 5)) {
            const char *nn = section + 5;
            while (*nn == ' ')
                nn++;
            if (st->top_nnve_keys) {
                snprintf(st->err, sizeof st->err,
                         "[%s] after single-nNVE keys (nnve_address, nnve_identity, ...): "
                         "give every nNVE its own [nnve NAME] section",
                         section);
                return 0;
            }
            if (c->n_nnves >= TNVE_MAX_NNVES) {
                snprintf(st->err, sizeof st->err, "too many [nnve] sections (max %d)",
                         TNVE_MAX_NNVES);
                return 0;
            }
            st->nnve = &c->nnves[c->n_nnves++];
            nnve_defaults(st->nnve);
            if (set_str(st->nnve->name, sizeof st->nnve->name, nn) || !*nn || strchr(nn, ' ')) {
                snprintf(st->err, sizeof st->err, "bad nNVE name [%s]", section);
                return 0;
            }
            for (unsigned i = 0; i + 1 < c->n_nnves; i++) {
                if (!strcmp(c->nnves[i].name, nn)) {
                    snprintf(st->err, sizeof st->err, "[nnve %s] given twice", nn);
                    return 0;
                }
            }
        } else if (!strncmp(section, "map ", 4)) {
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
    if (st->nnve && !strcmp(name, "uplink")) {
        if (set_ifname(st->nnve->uplink, sizeof st->nnve->uplink, value, 0) < 0) {
            snprintf(st->err, sizeof st->err, "bad interface name for 'uplink': '%s'", value);
            return 0;
        }
        for (unsigned i = 0; i + 1 < c->n_nnves; i++) {
            if (!strcmp(c->nnves[i].uplink, value)) {
                snprintf(st->err, sizeof st->err,
                         "uplink %s given to [nnve %s] and [nnve %s]: each nNVE has its own "
                         "link",
                         value, c->nnves[i].name, st->nnve->name);
                return 0;
            }
        }
        return 1;
    }
    if (st->nnve) {
        int r = nnve_key(st->nnve, name, value);
        if (r == -ENOENT)
            snprintf(st->err, sizeof st->err, "unknown key '%s' in [nnve %s]", name,
                     st->nnve->name);
        else if (r < 0)
            snprintf(st->err, sizeof st->err, "bad value for '%s': '%s'", name, value);
        return r == 0;
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
    int r = st->rule ? rule_key(st->rule, name, value) : top_nnve_key(c, name, value);
    if (!st->rule && r != -ENOENT) {
        if (c->n_nnves) {
            snprintf(st->err, sizeof st->err,
                     "'%s' is a single-nNVE key: with [nnve NAME] sections it belongs in one",
                     name);
            return 0;
        }
        st->top_nnve_keys++;
    } else if (!st->rule) {
        r = agent_key(c, name, value);
    }
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

static int validate_nnve(const struct tnve_config *cfg, const struct tnve_config_nnve *e, int multi,
                         char *err, size_t errlen);

/* Records each [nnve NAME] header with its line: inih calls back for keys only, so a section
 * without keys never reaches ini_cb and would otherwise vanish without a word. */
static int section_cb(void *user, const char *section, unsigned line)
{
    struct parse_state *st = user;
    if (strncmp(section, "nnve ", 5))
        return 1;
    if (st->n_headers == st->cap_headers) {
        size_t cap = st->cap_headers ? st->cap_headers * 2 : 8;
        struct nnve_header *v = realloc(st->headers, cap * sizeof *v);
        if (!v) {
            st->nomem = 1;
            return 0;
        }
        st->headers = v;
        st->cap_headers = cap;
    }
    const char *name = section + 5 + strspn(section + 5, " ");
    char *copy = strdup(name);
    if (!copy) {
        st->nomem = 1;
        return 0;
    }
    st->headers[st->n_headers++] = (struct nnve_header){copy, line};
    return 1;
}

static void parse_state_uninit(struct parse_state *st)
{
    for (size_t i = 0; i < st->n_headers; i++)
        free(st->headers[i].name);
    free(st->headers);
    st->headers = NULL;
    st->n_headers = st->cap_headers = 0;
}

/* The [nnve NAME] sections seen while parsing (after the parse filled cfg): each must have
 * given its nNVE the keys it needs.  Returns 0, or SNCP_E_CONFIG with "PATH:LINE: ..." (the
 * section's header line) in err. */
static int check_nnve_sections(const struct parse_state *st, const char *path,
                               const struct tnve_config *cfg, char *err, size_t errlen)
{
    for (size_t h = 0; h < st->n_headers; h++) {
        const char *name = st->headers[h].name;
        unsigned line = st->headers[h].line;
        const struct tnve_config_nnve *e = NULL;
        for (unsigned i = 0; i < cfg->n_nnves && !e; i++)
            if (!strcmp(cfg->nnves[i].name, name))
                e = &cfg->nnves[i];
        char why[400];
        if (!e) {
            snprintf(err, errlen,
                     "%s:%u: [nnve %s] has no keys: an nNVE needs nnve_identity, and "
                     "nnve_address (transport = tcp) or l2_interface (transport = l2)",
                     path, line, name);
            return SNCP_E_CONFIG;
        }
        if (validate_nnve(cfg, e, 1, why, sizeof why) < 0) {
            snprintf(err, errlen, "%s:%u: %s", path, line, why);
            return SNCP_E_CONFIG;
        }
    }
    return 0;
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
    int line = snv_ini_parse_sections(f, NULL, ini_cb, section_cb, &st, NULL, ierr, sizeof ierr);
    fclose(f);
    if (st.nomem)
        line = -ENOMEM;
    int rc = line == 0 ? check_nnve_sections(&st, path, cfg, err, errlen) : 0;
    parse_state_uninit(&st);
    if (rc < 0)
        return rc;
    if (line < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(-line));
        return line;
    }
    if (line != 0) {
        snprintf(err, errlen, "%s:%d: %s", path, line,
                 st.err[0] ? st.err
                 : ierr[0] ? ierr
                           : "syntax error");
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
    for (unsigned i = 0; i < cfg->n_rules; i++) {
        for (unsigned j = 0; j < i; j++) {
            const struct tnve_map_rule *a = &cfg->rules[j], *b = &cfg->rules[i];
            if (a->mode && b->mode && a->mode != b->mode &&
                (tnve_vn_equal(&a->vn, &b->vn) || tnve_vn_designates(&a->vn, &b->vn) ||
                 tnve_vn_designates(&b->vn, &a->vn))) {
                snprintf(err, errlen, "%s: [map %s] and [map %s] give one VN two modes", path,
                         a->name, b->name);
                return SNCP_E_CONFIG;
            }
        }
    }
    for (unsigned i = 0; i < cfg->n_nnves; i++) {
        if (!cfg->nnves[i].uplink[0] != !cfg->nnves[0].uplink[0]) {
            const struct tnve_config_nnve *with =
                cfg->nnves[i].uplink[0] ? &cfg->nnves[i] : &cfg->nnves[0];
            const struct tnve_config_nnve *without =
                with == &cfg->nnves[0] ? &cfg->nnves[i] : &cfg->nnves[0];
            snprintf(err, errlen,
                     "%s: [nnve %s] has no 'uplink' but [nnve %s] has one: give every nNVE its "
                     "uplink, or none",
                     path, without->name, with->name);
            return SNCP_E_CONFIG;
        }
    }
    if (!cfg->n_nnves) {
        tnve_config_single_nnve(cfg, &cfg->nnves[0]);
        cfg->n_nnves = 1;
    }
    return 0;
}

const char *tnve_transport_name(enum tnve_transport t)
{
    return t == TNVE_TRANSPORT_L2 ? "l2" : "tcp";
}

const char *tnve_config_nnve_l2_interface(const struct tnve_config *cfg,
                                          const struct tnve_config_nnve *e)
{
    return e->l2_interface[0] ? e->l2_interface : cfg->uplink;
}

const char *tnve_config_l2_interface(const struct tnve_config *cfg)
{
    return cfg->l2_interface[0] ? cfg->l2_interface : cfg->uplink;
}

/* The transport and identity keys of one nNVE.  0 or SNCP_E_CONFIG with err. */
static int validate_nnve(const struct tnve_config *cfg, const struct tnve_config_nnve *e, int multi,
                         char *err, size_t errlen)
{
    char where[96] = "";
    if (multi)
        snprintf(where, sizeof where, "[nnve %s]: ", e->name);
    if (e->transport == TNVE_TRANSPORT_TCP) {
        if (!e->nnve_address[0]) {
            snprintf(err, errlen,
                     "%sconfiguration key 'nnve_address' is required with "
                     "transport = tcp",
                     where);
            return SNCP_E_CONFIG;
        }
        /* L2 keys in a TCP configuration are a mistake worth stopping for: the operator
         * meant one transport and wrote the keys of the other. */
        const char *l2_key = e->l2_interface[0] ? "l2_interface"
                             : e->nnve_mac_set  ? "nnve_mac"
                             : e->l2_vlan       ? "l2_vlan"
                             : e->nnve_name[0]  ? "nnve_name"
                                                : NULL;
        if (l2_key) {
            snprintf(err, errlen, "%s'%s' needs transport = l2 (transport is tcp)", where, l2_key);
            return SNCP_E_CONFIG;
        }
    } else if (!e->l2_interface[0] && !cfg->uplink[0]) {
        snprintf(err, errlen, "%stransport = l2 needs 'l2_interface' (or 'uplink')", where);
        return SNCP_E_CONFIG;
    } else if (e->nnve_address[0]) {
        snprintf(err, errlen,
                 "%s'nnve_address' needs transport = tcp (transport is l2; use "
                 "nnve_mac, or leave it out for discovery)",
                 where);
        return SNCP_E_CONFIG;
    }
    /* Every hypervisor holds a certificate from the same CA: only the certificate identity
     * tells the nNVE apart, over TCP (an address can be redirected) as over L2 (any host on
     * the segment can answer the discovery or take the nNVE's MAC). */
    if (!e->nnve_identity[0]) {
        snprintf(err, errlen,
                 "%sconfiguration key 'nnve_identity' is required (the switch certificate's "
                 "name): without it any certificate of the CA, another hypervisor's "
                 "included, is accepted as the nNVE",
                 where);
        return SNCP_E_CONFIG;
    }
    return 0;
}

int tnve_config_validate(const struct tnve_config *cfg, char *err, size_t errlen)
{
    const char *missing = !cfg->cert[0] ? "cert" : !cfg->key[0] ? "key" : !cfg->ca[0] ? "ca" : NULL;
    if (missing) {
        snprintf(err, errlen, "configuration key '%s' is required", missing);
        return SNCP_E_CONFIG;
    }
    if (!cfg->n_nnves) {
        struct tnve_config_nnve e;
        tnve_config_single_nnve(cfg, &e);
        return validate_nnve(cfg, &e, 0, err, errlen);
    }
    for (unsigned i = 0; i < cfg->n_nnves; i++) {
        int rc = validate_nnve(cfg, &cfg->nnves[i], cfg->n_nnves > 1, err, errlen);
        if (rc < 0)
            return rc;
        for (unsigned j = 0; j < i; j++) {
            if (!strcmp(cfg->nnves[j].nnve_identity, cfg->nnves[i].nnve_identity)) {
                snprintf(err, errlen,
                         "[nnve %s] and [nnve %s] have the same nnve_identity: each switch "
                         "of a pair has its own certificate",
                         cfg->nnves[j].name, cfg->nnves[i].name);
                return SNCP_E_CONFIG;
            }
        }
    }
    return 0;
}
