/* config.c: parsing and validation of nnve-daemon's INI configuration (see config.h).
 *
 * inih hands us (section, key, value) triples; a line-counting reader gives each one its line
 * number so every error message points at the offending line.  Cross-section checks (a port
 * in two domains, a hypervisor on a port no domain holds, overlapping ranges) run after the
 * whole file is read.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <net/if.h>
#include <sys/socket.h>

#include "backend-provider.h"
#include "sncp-error.h"
#include "sncp-l2.h"
#include "sncp-msg.h"
#include "snv-ini.h"
#include "snv-log.h"
#include "snv-netlink.h"

struct parser {
    struct nnve_config *cfg;
    const char *name;
    unsigned line;
    char *err;
    size_t errlen;
    int failed;
    /* reader state */
    FILE *file;
    const char *text;
};

static void perr(struct parser *p, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void perr(struct parser *p, unsigned line, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = 1;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line)
        snprintf(p->err, p->errlen, "%s:%u: %s", p->name, line, msg);
    else
        snprintf(p->err, p->errlen, "%s: %s", p->name, msg);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int nnve_config_parse_duration(const char *s, uint32_t *ms)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || *s == '-')
        return -EINVAL;
    unsigned long long mult;
    if (*end == '\0' || !strcmp(end, "s"))
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

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

static int set_str(char **dst, const char *v)
{
    char *d = strdup(v);
    if (!d)
        return -ENOMEM;
    free(*dst);
    *dst = d;
    return 0;
}

/* Calls fn(item) for each comma-separated non-empty item of v. */
static int for_each_item(struct parser *p, const char *v,
                         int (*fn)(struct parser *, char *, void *), void *aux)
{
    char *copy = strdup(v);
    if (!copy)
        return -ENOMEM;
    int ret = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *item = trim(tok);
        if (!*item)
            continue;
        ret = fn(p, item, aux);
        if (ret)
            break;
    }
    free(copy);
    return ret;
}

static int grow_array(void **arr, unsigned n, size_t elem)
{
    void *a = realloc(*arr, (n + 1) * elem);
    if (!a)
        return -ENOMEM;
    *arr = a;
    memset((char *)a + n * elem, 0, elem);
    return 0;
}

/* "ADDR:PORT" or "[ADDR]:PORT" (what `key` names in messages) into host and port.
 * Returns 0, or -EINVAL (reported). */
static int parse_hostport(struct parser *p, const char *key, const char *item, char *host,
                          size_t hostcap, uint16_t *port_out)
{
    const char *port_s;
    if (item[0] == '[') {
        const char *close = strchr(item, ']');
        if (!close || close[1] != ':' || (size_t)(close - item - 1) >= hostcap) {
            perr(p, p->line, "%s: bad address \"%s\" (use [ADDR]:PORT)", key, item);
            return -EINVAL;
        }
        memcpy(host, item + 1, (size_t)(close - item - 1));
        host[close - item - 1] = '\0';
        port_s = close + 2;
    } else {
        const char *colon = strrchr(item, ':');
        if (!colon || strchr(item, ':') != colon || colon == item ||
            (size_t)(colon - item) >= hostcap) {
            perr(p, p->line, "%s: bad address \"%s\" (use ADDR:PORT or [ADDR]:PORT)", key, item);
            return -EINVAL;
        }
        memcpy(host, item, (size_t)(colon - item));
        host[colon - item] = '\0';
        port_s = colon + 1;
    }
    unsigned long long port;
    if (parse_uint(port_s, 65535, &port)) {
        perr(p, p->line, "%s: bad port in \"%s\"", key, item);
        return -EINVAL;
    }
    *port_out = (uint16_t)port;
    return 0;
}

static int add_listen(struct parser *p, char *item, void *aux)
{
    (void)aux;
    struct nnve_config *cfg = p->cfg;
    char host[64];
    uint16_t port;
    if (parse_hostport(p, "listen", item, host, sizeof host, &port))
        return -EINVAL;
    if (grow_array((void **)&cfg->listen, cfg->n_listen, sizeof *cfg->listen))
        return -ENOMEM;
    struct nnve_listen_addr *l = &cfg->listen[cfg->n_listen++];
    snprintf(l->addr, sizeof l->addr, "%s", host);
    l->port = port;
    return 0;
}

static int add_transport(struct parser *p, char *item, void *aux)
{
    unsigned *set = aux;
    if (!strcmp(item, "tcp"))
        *set |= NNVE_TRANSPORT_TCP;
    else if (!strcmp(item, "l2"))
        *set |= NNVE_TRANSPORT_L2;
    else {
        perr(p, p->line, "transport: expected tcp, l2 or both (tcp, l2), got \"%s\"", item);
        return -EINVAL;
    }
    return 0;
}

static int add_l2_interface(struct parser *p, char *item, void *aux)
{
    (void)aux;
    struct nnve_config *cfg = p->cfg;
    if (!snv_ifname_valid(item) || strlen(item) > SNCP_MAX_PORT_LEN) {
        perr(p, p->line, "l2_interfaces: \"%s\" is not an interface name (at most %d bytes)", item,
             IF_NAMESIZE - 1);
        return -EINVAL;
    }
    for (unsigned i = 0; i < cfg->n_l2_interfaces; i++)
        if (!strcmp(cfg->l2_interfaces[i], item)) {
            perr(p, p->line, "l2_interfaces: %s is listed twice", item);
            return -EINVAL;
        }
    if (grow_array((void **)&cfg->l2_interfaces, cfg->n_l2_interfaces, sizeof *cfg->l2_interfaces))
        return -ENOMEM;
    cfg->l2_interfaces[cfg->n_l2_interfaces] = strdup(item);
    if (!cfg->l2_interfaces[cfg->n_l2_interfaces])
        return -ENOMEM;
    cfg->n_l2_interfaces++;
    return 0;
}

static void free_l2_interfaces(struct nnve_config *cfg)
{
    for (unsigned i = 0; i < cfg->n_l2_interfaces; i++)
        free(cfg->l2_interfaces[i]);
    free(cfg->l2_interfaces);
    cfg->l2_interfaces = NULL;
    cfg->n_l2_interfaces = 0;
}

/* The L2 keys of [global]; returns 1 when `key` is not one of them. */
static int l2_key(struct parser *p, const char *key, const char *value)
{
    struct nnve_config *cfg = p->cfg;
    if (!strcmp(key, "l2_interfaces")) {
        free_l2_interfaces(cfg);
        cfg->l2_line = p->line;
        int r = for_each_item(p, value, add_l2_interface, NULL);
        if (!r && !cfg->n_l2_interfaces) {
            perr(p, p->line, "l2_interfaces: expected interface names (swp1, swp2)");
            return -EINVAL;
        }
        return r;
    }
    if (!strcmp(key, "l2_ethertype")) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(value, &end, 0);
        /* Not a length (< 0x600), not a VLAN tag protocol identifier. */
        if (!isdigit((unsigned char)*value) || *end || errno || v < 0x600 || v > 0xffff ||
            v == 0x8100 || v == 0x88a8 || v == 0x9100) {
            perr(p, p->line,
                 "l2_ethertype: expected an EtherType 0x0600..0xffff other than a VLAN TPID "
                 "(e.g. 0x88B5), got \"%s\"",
                 value);
            return -EINVAL;
        }
        cfg->l2_ethertype = (uint16_t)v;
        return 0;
    }
    if (!strcmp(key, "l2_max_unauthenticated")) {
        unsigned long long v;
        if (parse_uint(value, 65535, &v) || v == 0) {
            perr(p, p->line, "l2_max_unauthenticated: expected a number 1..65535, got \"%s\"",
                 value);
            return -EINVAL;
        }
        cfg->l2_max_unauth = (unsigned)v;
        return 0;
    }
    if (!strcmp(key, "l2_discovery_mac")) {
        uint8_t mac[6];
        if (sncp_mac_parse(value, mac) || !sncp_l2_discovery_mac_valid(mac)) {
            perr(p, p->line,
                 "l2_discovery_mac: expected a group MAC address outside the reserved and "
                 "IP multicast ranges (e.g. 03:53:4e:43:50:01), got \"%s\"",
                 value);
            return -EINVAL;
        }
        memcpy(cfg->l2_discovery_mac, mac, 6);
        return 0;
    }
    return 1;
}

static int global_key(struct parser *p, const char *key, const char *value)
{
    struct nnve_config *cfg = p->cfg;
    static const struct {
        const char *key;
        size_t off;
    } strs[] = {
        {"cert", offsetof(struct nnve_config, cert)},
        {"key", offsetof(struct nnve_config, key)},
        {"ca", offsetof(struct nnve_config, ca)},
        {"crl", offsetof(struct nnve_config, crl)},
        {"node_id", offsetof(struct nnve_config, node_id)},
        {"state_dir", offsetof(struct nnve_config, state_dir)},
        {"control_socket", offsetof(struct nnve_config, control_socket)},
        {"backend", offsetof(struct nnve_config, backend)},
        {"dataplane_journal", offsetof(struct nnve_config, dataplane_journal)},
        {"fdb_file", offsetof(struct nnve_config, fdb_file)},
        {"metrics_file", offsetof(struct nnve_config, metrics_file)},
        {"mappings_file", offsetof(struct nnve_config, mappings_file)},
        {"audit_file", offsetof(struct nnve_config, audit_file)},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (!strcmp(key, strs[i].key))
            return set_str((char **)((char *)cfg + strs[i].off), value);

    static const struct {
        const char *key;
        size_t off;
        uint32_t min;
    } durs[] = {
        {"hold_time", offsetof(struct nnve_config, hold_time_ms), 0},
        {"tag_hold_down", offsetof(struct nnve_config, tag_hold_down_ms), 0},
        {"keepalive", offsetof(struct nnve_config, keepalive_ms), SNCP_MIN_KEEPALIVE_MS},
        {"handshake_timeout", offsetof(struct nnve_config, handshake_timeout_ms), 10},
        {"hello_timeout", offsetof(struct nnve_config, hello_timeout_ms), 10},
        {"metrics_interval", offsetof(struct nnve_config, metrics_interval_ms), 100},
    };
    for (size_t i = 0; i < sizeof durs / sizeof durs[0]; i++) {
        if (strcmp(key, durs[i].key))
            continue;
        uint32_t ms;
        if (nnve_config_parse_duration(value, &ms) || ms < durs[i].min) {
            perr(p, p->line, "%s: bad duration \"%s\" (e.g. 30s, 500ms, 2m)", key, value);
            return -EINVAL;
        }
        *(uint32_t *)((char *)cfg + durs[i].off) = ms;
        return 0;
    }

    static const struct {
        const char *key;
        size_t off;
        unsigned long long max;
    } nums[] = {
        {"max_sessions", offsetof(struct nnve_config, max_sessions), 1000000},
        {"max_hello_pending", offsetof(struct nnve_config, max_hello_pending), 1000000},
        {"max_hello_pending_per_source", offsetof(struct nnve_config, max_hello_pending_per_source),
         1000000},
        {"max_tsis_per_session", offsetof(struct nnve_config, max_tsis_per_session), 10000000},
        {"max_addrs_per_tsi", offsetof(struct nnve_config, max_addrs_per_tsi), SNCP_MAX_ADDRS},
        {"max_vns_per_hypervisor", offsetof(struct nnve_config, max_vns_per_hypervisor),
         SNCP_MAX_VN_ID + 1},
        {"max_tags_per_hypervisor", offsetof(struct nnve_config, max_tags_per_hypervisor), 4094},
        {"max_outstanding", offsetof(struct nnve_config, max_outstanding), 1000000},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        if (strcmp(key, nums[i].key))
            continue;
        unsigned long long v;
        if (parse_uint(value, nums[i].max, &v) || v == 0) {
            perr(p, p->line, "%s: expected a number 1..%llu, got \"%s\"", key, nums[i].max, value);
            return -EINVAL;
        }
        *(unsigned *)((char *)cfg + nums[i].off) = (unsigned)v;
        return 0;
    }

    if (!strcmp(key, "listen")) {
        cfg->n_listen = 0;
        cfg->listen_line = p->line;
        return for_each_item(p, value, add_listen, NULL);
    }
    if (!strcmp(key, "transport")) {
        unsigned set = 0;
        int r = for_each_item(p, value, add_transport, &set);
        if (!r && !set) {
            perr(p, p->line, "transport: expected tcp, l2 or both (tcp, l2)");
            return -EINVAL;
        }
        cfg->transports = set;
        return r;
    }
    int r = l2_key(p, key, value);
    if (r <= 0)
        return r;
    if (!strcmp(key, "max_write_queue")) {
        unsigned long long v;
        if (parse_uint(value, (unsigned long long)1 << 32, &v) || v < 65536) {
            perr(p, p->line, "max_write_queue: expected bytes >= 65536, got \"%s\"", value);
            return -EINVAL;
        }
        cfg->max_write_queue = (size_t)v;
        return 0;
    }
    if (!strcmp(key, "sync")) {
        if (!strcmp(value, "full"))
            cfg->sync = NNVE_SYNC_FULL;
        else if (!strcmp(value, "normal"))
            cfg->sync = NNVE_SYNC_NORMAL;
        else {
            perr(p, p->line, "sync: expected full or normal, got \"%s\"", value);
            return -EINVAL;
        }
        return 0;
    }
    if (!strcmp(key, "log_level")) {
        enum snv_log_level lvl;
        if (snv_log_level_parse(value, &lvl)) {
            perr(p, p->line, "log_level: expected err, warn, info or debug, got \"%s\"", value);
            return -EINVAL;
        }
        cfg->log_level = (int)lvl;
        return 0;
    }
    perr(p, p->line, "unknown key \"%s\" in [global]", key);
    return -EINVAL;
}

/* AF_INET or AF_INET6 for a numeric address; 0 otherwise. */
static int ip_family(const char *s, unsigned char ip[16])
{
    memset(ip, 0, 16);
    if (inet_pton(AF_INET, s, ip) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, s, ip) == 1)
        return AF_INET6;
    return 0;
}

/* remote_vteps: "evpn", "none", or IPv4/IPv6 addresses separated by commas and/or blanks,
 * each once. */
static int check_remote_vteps(struct parser *p, const char *v)
{
    if (!strcmp(v, "evpn") || !strcmp(v, "none"))
        return 0;
    if (!*v) {
        perr(p, p->line, "remote_vteps: expected addresses, \"evpn\" or \"none\"");
        return -EINVAL;
    }
    unsigned char seen[64][17];
    unsigned n_seen = 0;
    const char *c = v;
    while (*c) {
        c += strspn(c, ", \t");
        size_t len = strcspn(c, ", \t");
        if (len == 0)
            break;
        char tok[INET6_ADDRSTRLEN + 1];
        unsigned char ip[16];
        int fam = 0;
        if (len < sizeof tok) {
            memcpy(tok, c, len);
            tok[len] = '\0';
            fam = ip_family(tok, ip);
        }
        if (!fam) {
            perr(p, p->line,
                 "remote_vteps: \"%.*s\" is not an IPv4 or IPv6 address (a list of "
                 "addresses, or \"evpn\" or \"none\" alone)",
                 (int)(len > 64 ? 64 : len), c);
            return -EINVAL;
        }
        for (unsigned i = 0; i < n_seen; i++)
            if (seen[i][16] == fam && !memcmp(seen[i], ip, 16)) {
                perr(p, p->line, "remote_vteps: %s is listed twice", tok);
                return -EINVAL;
            }
        if (n_seen == sizeof seen / sizeof seen[0]) {
            perr(p, p->line, "remote_vteps: more than %zu addresses", sizeof seen / sizeof seen[0]);
            return -EINVAL;
        }
        memcpy(seen[n_seen], ip, 16);
        seen[n_seen++][16] = (unsigned char)fam;
        c += len;
    }
    return 0;
}

static int linux_key(struct parser *p, const char *key, const char *value)
{
    struct nnve_config *cfg = p->cfg;
    if (!strcmp(key, "bridge") || !strcmp(key, "vxlan_device")) {
        if (!snv_ifname_valid(value)) {
            perr(p, p->line, "%s: \"%s\" is not a valid interface name (1..%d bytes)", key, value,
                 IF_NAMESIZE - 1);
            return -EINVAL;
        }
        return set_str(!strcmp(key, "bridge") ? &cfg->linux_bridge : &cfg->linux_vxlan_device,
                       value);
    }
    if (!strcmp(key, "vxlan_mode")) {
        cfg->linux_vxlan_mode_line = p->line;
        if (nnve_linux_vxlan_mode_parse(value, &cfg->linux_cfg.vxlan_mode)) {
            perr(p, p->line, "vxlan_mode: expected external or per-vni, got \"%s\"", value);
            return -EINVAL;
        }
        return 0;
    }
    if (!strcmp(key, "local_ip")) {
        unsigned char ip[16];
        if (!ip_family(value, ip)) {
            perr(p, p->line, "local_ip: \"%s\" is not an IPv4 or IPv6 address", value);
            return -EINVAL;
        }
        return set_str(&cfg->linux_local_ip, value);
    }
    if (!strcmp(key, "vxlan_port")) {
        unsigned long long v;
        if (parse_uint(value, 65535, &v) || v == 0) {
            perr(p, p->line, "vxlan_port: expected a UDP port 1..65535, got \"%s\"", value);
            return -EINVAL;
        }
        cfg->linux_cfg.vxlan_port = (uint16_t)v;
        return 0;
    }
    if (!strcmp(key, "remote_vteps")) {
        if (check_remote_vteps(p, value))
            return -EINVAL;
        cfg->linux_remote_vteps_line = p->line;
        return set_str(&cfg->linux_remote_vteps, value);
    }
    if (!strcmp(key, "anti_spoofing")) {
        if (nnve_linux_anti_spoofing_parse(value, &cfg->linux_cfg.anti_spoofing)) {
            perr(p, p->line, "anti_spoofing: expected on, mac or off, got \"%s\"", value);
            return -EINVAL;
        }
        return 0;
    }
    perr(p, p->line,
         "unknown key \"%s\" in [linux] (bridge, vxlan_mode, vxlan_device, local_ip, "
         "vxlan_port, remote_vteps, anti_spoofing)",
         key);
    return -EINVAL;
}

/* A port name is one word: "swp1 swp2" is two ports written without the comma, not a port. */
static int check_port_name(struct parser *p, const char *name)
{
    if (!*name) {
        perr(p, p->line, "empty port name");
        return -EINVAL;
    }
    if (strlen(name) > SNCP_MAX_PORT_LEN) {
        perr(p, p->line, "port name \"%s\" longer than %d bytes", name, SNCP_MAX_PORT_LEN);
        return -EINVAL;
    }
    if (name[strcspn(name, " \t")]) {
        perr(p, p->line, "port name \"%s\" contains white space (separate ports with commas)",
             name);
        return -EINVAL;
    }
    return 0;
}

static int add_port(struct parser *p, char *item, void *aux)
{
    struct nnve_domain_cfg *d = aux;
    if (!strcmp(item, "*")) {
        d->any_port = 1;
        return 0;
    }
    if (check_port_name(p, item))
        return -EINVAL;
    if (grow_array((void **)&d->ports, d->n_ports, sizeof *d->ports))
        return -ENOMEM;
    d->ports[d->n_ports] = strdup(item);
    if (!d->ports[d->n_ports])
        return -ENOMEM;
    d->n_ports++;
    return 0;
}

/* "A" or "A-B" with max; returns 0 or -EINVAL. */
static int parse_range(const char *item, unsigned long long max, unsigned long long *lo,
                       unsigned long long *hi)
{
    char buf[64];
    if (snprintf(buf, sizeof buf, "%s", item) >= (int)sizeof buf)
        return -EINVAL;
    char *dash = strchr(buf, '-');
    if (dash) {
        *dash = '\0';
        if (parse_uint(trim(buf), max, lo) || parse_uint(trim(dash + 1), max, hi) || *lo > *hi)
            return -EINVAL;
        return 0;
    }
    if (parse_uint(buf, max, lo))
        return -EINVAL;
    *hi = *lo;
    return 0;
}

static int add_tag_range(struct parser *p, char *item, void *aux)
{
    struct nnve_domain_cfg *d = aux;
    unsigned long long lo, hi;
    if (parse_range(item, SNCP_MAX_VID, &lo, &hi) || lo < SNCP_MIN_VID) {
        perr(p, p->line, "tags: bad range \"%s\" (VLAN IDs %d..%d)", item, SNCP_MIN_VID,
             SNCP_MAX_VID);
        return -EINVAL;
    }
    for (unsigned i = 0; i < d->n_ranges; i++)
        if (lo <= d->ranges[i].hi && d->ranges[i].lo <= hi) {
            perr(p, p->line, "tags: range \"%s\" overlaps another", item);
            return -EINVAL;
        }
    if (grow_array((void **)&d->ranges, d->n_ranges, sizeof *d->ranges))
        return -ENOMEM;
    d->ranges[d->n_ranges].lo = (uint16_t)lo;
    d->ranges[d->n_ranges].hi = (uint16_t)hi;
    d->n_ranges++;
    return 0;
}

static int add_reserved(struct parser *p, char *item, void *aux)
{
    struct nnve_domain_cfg *d = aux;
    unsigned long long lo, hi;
    if (parse_range(item, SNCP_MAX_VID, &lo, &hi) || lo < SNCP_MIN_VID) {
        perr(p, p->line, "reserved: bad value \"%s\"", item);
        return -EINVAL;
    }
    for (unsigned long long v = lo; v <= hi; v++) {
        if (grow_array((void **)&d->reserved, d->n_reserved, sizeof *d->reserved))
            return -ENOMEM;
        d->reserved[d->n_reserved++] = (uint16_t)v;
    }
    return 0;
}

static int add_vn_ref(struct parser *p, char *item, void *aux)
{
    struct nnve_hv_cfg *h = aux;
    if (grow_array((void **)&h->vns, h->n_vns, sizeof *h->vns))
        return -ENOMEM;
    struct nnve_vn_ref *r = &h->vns[h->n_vns];
    if (isdigit((unsigned char)item[0])) {
        unsigned long long lo, hi;
        if (parse_range(item, SNCP_MAX_VN_ID, &lo, &hi)) {
            perr(p, p->line, "vns: bad VN ID or range \"%s\" (0..%d)", item, SNCP_MAX_VN_ID);
            return -EINVAL;
        }
        r->lo = (uint32_t)lo;
        r->hi = (uint32_t)hi;
    } else {
        if (strlen(item) > SNCP_MAX_VN_NAME_LEN) {
            perr(p, p->line, "vns: VN name \"%s\" longer than %d bytes", item,
                 SNCP_MAX_VN_NAME_LEN);
            return -EINVAL;
        }
        r->name = strdup(item);
        if (!r->name)
            return -ENOMEM;
    }
    r->line = p->line;
    h->n_vns++;
    return 0;
}

/* The per-hypervisor limit keys.  Returns 0, or < 0 (reported). */
static int hv_limit_key(struct parser *p, struct nnve_hv_cfg *h, const char *key, const char *v)
{
    static const struct {
        const char *key;
        size_t off;
        unsigned long long max;
    } nums[] = {
        {"max_vns", offsetof(struct nnve_hv_limits, vns), SNCP_MAX_VN_ID + 1},
        {"max_tsis", offsetof(struct nnve_hv_limits, tsis), 10000000},
        {"max_addrs_per_tsi", offsetof(struct nnve_hv_limits, addrs_per_tsi), SNCP_MAX_ADDRS},
        {"max_tags", offsetof(struct nnve_hv_limits, tags), 4094},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        if (strcmp(key, nums[i].key))
            continue;
        unsigned long long n;
        if (parse_uint(v, nums[i].max, &n) || n == 0) {
            perr(p, p->line, "%s: expected a number 1..%llu, got \"%s\"", key, nums[i].max, v);
            return -EINVAL;
        }
        *(unsigned *)((char *)&h->limits + nums[i].off) = (unsigned)n;
        return 0;
    }
    perr(p, p->line,
         "unknown key \"%s\" in [hypervisor %s] (port, vns, max_vns, max_tsis, "
         "max_addrs_per_tsi, max_tags)",
         key, h->identity);
    return -EINVAL;
}

/* [pair]: the ToR pair peer sharing one significance domain (PROTOCOL.md §17). */
static int pair_key(struct parser *p, const char *key, const char *v)
{
    struct nnve_pair_cfg *pc = &p->cfg->pair;
    if (!pc->line)
        pc->line = p->line;
    if (!strcmp(key, "domain"))
        return set_str(&pc->domain, v);
    if (!strcmp(key, "peer_identity")) {
        if (!*v || strlen(v) >= 256) {
            perr(p, p->line, "peer_identity: expected 1..255 bytes");
            return -EINVAL;
        }
        return set_str(&pc->peer_identity, v);
    }
    if (!strcmp(key, "role")) {
        if (!strcmp(v, "allocator"))
            pc->role = 0;
        else if (!strcmp(v, "follower"))
            pc->role = 1;
        else {
            perr(p, p->line, "role: expected allocator or follower, got \"%s\"", v);
            return -EINVAL;
        }
        pc->has_role = 1;
        return 0;
    }
    if (!strcmp(key, "listen")) {
        if (parse_hostport(p, key, v, pc->listen_addr, sizeof pc->listen_addr, &pc->listen_port))
            return -EINVAL;
        pc->has_listen = 1;
        return 0;
    }
    if (!strcmp(key, "peer")) {
        char host[256];
        if (parse_hostport(p, key, v, host, sizeof host, &pc->peer_port))
            return -EINVAL;
        if (pc->peer_port == 0) {
            perr(p, p->line, "peer: port 0");
            return -EINVAL;
        }
        return set_str(&pc->peer_host, host);
    }
    if (!strcmp(key, "retry")) {
        if (nnve_config_parse_duration(v, &pc->retry_ms) || pc->retry_ms < 10) {
            perr(p, p->line, "retry: bad duration \"%s\" (at least 10ms)", v);
            return -EINVAL;
        }
        return 0;
    }
    perr(p, p->line,
         "unknown key \"%s\" in [pair] (domain, role, peer_identity, listen, peer, retry)", key);
    return -EINVAL;
}

static int section_kind(const char *section, const char **name)
{
    static const char *kinds[] = {"domain", "hypervisor", "vn"};
    for (int k = 0; k < 3; k++) {
        size_t n = strlen(kinds[k]);
        if (!strncmp(section, kinds[k], n) && isspace((unsigned char)section[n])) {
            const char *s = section + n;
            while (isspace((unsigned char)*s))
                s++;
            *name = s;
            return k + 1;
        }
    }
    if (!strcmp(section, "linux"))
        return 4;
    if (!strcmp(section, "pair"))
        return 5;
    return !strcmp(section, "global") ? 0 : -1;
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
    struct parser *p = user;
    struct nnve_config *cfg = p->cfg;
    if (p->failed)
        return 0;
    const char *name = NULL;
    int kind = section_kind(section, &name);
    char vbuf[4096];
    if (snprintf(vbuf, sizeof vbuf, "%s", value ? value : "") >= (int)sizeof vbuf) {
        perr(p, p->line, "value too long");
        return 0;
    }
    char *v = trim(vbuf);
    int err = 0;
    if (kind < 0) {
        perr(p, p->line,
             "unknown section [%s] (expected global, linux, pair, domain NAME, hypervisor ID, "
             "vn NAME)",
             section);
        return 0;
    }
    if (kind > 0 && kind < 4 && (!name || !*name)) {
        perr(p, p->line, "section [%s] needs a name", section);
        return 0;
    }
    if (kind == 4 && !cfg->linux_line)
        cfg->linux_line = p->line;
    if (!key) /* section start (INI_CALL_HANDLER_ON_NEW_SECTION builds) */
        return 1;
    if (kind == 0) {
        err = global_key(p, key, v);
    } else if (kind == 5) {
        if (pair_key(p, key, v) < 0)
            return 0;
    } else if (kind == 4) {
        err = linux_key(p, key, v);
    } else if (kind == 1) {
        struct nnve_domain_cfg *d = NULL;
        for (unsigned i = 0; i < cfg->n_domains; i++)
            if (!strcmp(cfg->domains[i].name, name))
                d = &cfg->domains[i];
        if (!d) {
            if (grow_array((void **)&cfg->domains, cfg->n_domains, sizeof *cfg->domains))
                return 0;
            d = &cfg->domains[cfg->n_domains++];
            d->name = strdup(name);
            d->line = p->line;
            if (!d->name)
                err = -ENOMEM;
        }
        if (err)
            ;
        else if (!strcmp(key, "ports"))
            err = for_each_item(p, v, add_port, d);
        else if (!strcmp(key, "tags"))
            err = for_each_item(p, v, add_tag_range, d);
        else if (!strcmp(key, "reserved"))
            err = for_each_item(p, v, add_reserved, d);
        else {
            perr(p, p->line, "unknown key \"%s\" in [domain %s] (ports, tags, reserved)", key,
                 name);
            return 0;
        }
    } else if (kind == 2) {
        struct nnve_hv_cfg *h = NULL;
        for (unsigned i = 0; i < cfg->n_hvs; i++)
            if (!strcmp(cfg->hvs[i].identity, name))
                h = &cfg->hvs[i];
        if (!h) {
            if (grow_array((void **)&cfg->hvs, cfg->n_hvs, sizeof *cfg->hvs))
                return 0;
            h = &cfg->hvs[cfg->n_hvs++];
            h->identity = strdup(name);
            h->line = p->line;
            if (!h->identity)
                err = -ENOMEM;
        }
        if (err)
            ;
        else if (!strcmp(key, "port")) {
            if (!strcmp(v, "learn")) {
                h->learn = 1;
                free(h->port);
                h->port = NULL;
            } else if (check_port_name(p, v)) {
                return 0;
            } else {
                h->learn = 0;
                err = set_str(&h->port, v);
            }
        } else if (!strcmp(key, "vns"))
            err = for_each_item(p, v, add_vn_ref, h);
        else if (hv_limit_key(p, h, key, v) < 0)
            return 0;
    } else {
        if (strlen(name) > SNCP_MAX_VN_NAME_LEN) {
            perr(p, p->line, "VN name \"%s\" longer than %d bytes", name, SNCP_MAX_VN_NAME_LEN);
            return 0;
        }
        struct nnve_vn_cfg *vn = NULL;
        for (unsigned i = 0; i < cfg->n_vns; i++)
            if (!strcmp(cfg->vns[i].name, name))
                vn = &cfg->vns[i];
        if (!vn) {
            if (grow_array((void **)&cfg->vns, cfg->n_vns, sizeof *cfg->vns))
                return 0;
            vn = &cfg->vns[cfg->n_vns++];
            vn->name = strdup(name);
            vn->line = p->line;
            if (!vn->name)
                err = -ENOMEM;
        }
        if (err)
            ;
        else if (!strcmp(key, "id")) {
            unsigned long long id;
            if (parse_uint(v, SNCP_MAX_VN_ID, &id)) {
                perr(p, p->line, "id: expected a VN ID 0..%d, got \"%s\"", SNCP_MAX_VN_ID, v);
                return 0;
            }
            vn->id = (uint32_t)id;
            vn->has_id = 1;
        } else {
            perr(p, p->line, "unknown key \"%s\" in [vn %s] (id)", key, name);
            return 0;
        }
    }
    if (err == -ENOMEM)
        perr(p, p->line, "out of memory");
    return p->failed ? 0 : 1;
}

static void set_defaults(struct nnve_config *cfg)
{
    cfg->hold_time_ms = 30000;
    cfg->tag_hold_down_ms = 60000;
    cfg->keepalive_ms = 10000;
    cfg->handshake_timeout_ms = 10000;
    cfg->hello_timeout_ms = 10000;
    cfg->max_hello_pending = 64;
    cfg->max_hello_pending_per_source = 8;
    cfg->metrics_interval_ms = 10000;
    cfg->max_sessions = 4096;
    cfg->max_tsis_per_session = 100000;
    cfg->max_addrs_per_tsi = SNCP_MAX_ADDRS;
    cfg->max_vns_per_hypervisor = 4094;
    cfg->max_tags_per_hypervisor = 0;
    cfg->max_outstanding = 1024;
    cfg->max_write_queue = 4u << 20;
    cfg->sync = NNVE_SYNC_FULL;
    cfg->log_level = -1;
    cfg->transports = NNVE_TRANSPORT_TCP;
    cfg->l2_ethertype = SNCP_L2_DEFAULT_ETHERTYPE;
    cfg->l2_max_unauth = 32;
    static const uint8_t group[6] = SNCP_L2_DISCOVERY_MAC_INIT;
    memcpy(cfg->l2_discovery_mac, group, 6);
    nnve_linux_config_init(&cfg->linux_cfg);
}

static void linux_cfg_point(struct nnve_config *cfg)
{
    struct nnve_linux_config dflt;
    nnve_linux_config_init(&dflt);
    struct nnve_linux_config *lc = &cfg->linux_cfg;
    lc->bridge = cfg->linux_bridge ? cfg->linux_bridge : dflt.bridge;
    lc->vxlan_device = cfg->linux_vxlan_device ? cfg->linux_vxlan_device : dflt.vxlan_device;
    lc->local_ip = cfg->linux_local_ip ? cfg->linux_local_ip : dflt.local_ip;
    lc->remote_vteps = cfg->linux_remote_vteps ? cfg->linux_remote_vteps : dflt.remote_vteps;
}

static int fill_defaults(struct nnve_config *cfg)
{
    linux_cfg_point(cfg);
    if (!cfg->state_dir && set_str(&cfg->state_dir, NNVE_DEFAULT_STATE_DIR))
        return -ENOMEM;
    if (!cfg->control_socket && set_str(&cfg->control_socket, NNVE_DEFAULT_CTL))
        return -ENOMEM;
    if (!cfg->backend && set_str(&cfg->backend, "none"))
        return -ENOMEM;
    if (!cfg->n_listen && (cfg->transports & NNVE_TRANSPORT_TCP)) {
        cfg->listen = calloc(1, sizeof *cfg->listen);
        if (!cfg->listen)
            return -ENOMEM;
        snprintf(cfg->listen[0].addr, sizeof cfg->listen[0].addr, "::");
        cfg->listen[0].port = SNCP_DEFAULT_PORT;
        cfg->n_listen = 1;
    }
    return 0;
}

/* remote_vteps = evpn: what an EVPN speaker reading the kernel (FRR 8.4's zebra, Debian 12)
 * can serve.  It maps a VNI only from a VXLAN device of its own (with the single `external`
 * device it reads VNI 0 and ignores every local MAC), and it advertises the device's IPv4
 * local address as the VTEP. */
static void validate_evpn(struct parser *p)
{
    struct nnve_config *cfg = p->cfg;
    const struct nnve_linux_config *lc = &cfg->linux_cfg;
    if (!cfg->linux_remote_vteps || strcmp(cfg->linux_remote_vteps, "evpn"))
        return;
    unsigned line = cfg->linux_remote_vteps_line;
    unsigned char ip[16];
    if (lc->vxlan_mode != NNVE_LINUX_VXLAN_PER_VNI)
        perr(p, cfg->linux_vxlan_mode_line ? cfg->linux_vxlan_mode_line : line,
             "remote_vteps = evpn needs vxlan_mode = per-vni (FRR 8.4 maps a VNI only from "
             "its own VXLAN device; on one external device it sees VNI 0)");
    else if (!cfg->linux_local_ip)
        perr(p, line,
             "remote_vteps = evpn needs local_ip (the VTEP address the EVPN speaker "
             "advertises)");
    else if (ip_family(cfg->linux_local_ip, ip) != AF_INET)
        perr(p, line,
             "remote_vteps = evpn needs an IPv4 local_ip (FRR 8.4 has IPv4 VTEPs only), got %s",
             cfg->linux_local_ip);
}

static void validate(struct parser *p)
{
    struct nnve_config *cfg = p->cfg;
    if (!cfg->cert || !cfg->key || !cfg->ca)
        perr(p, 0, "[global] needs cert, key and ca (PEM files)");
    if (cfg->backend && !nnve_backend_class_find(cfg->backend))
        perr(p, 0, "[global] backend \"%s\" is not a known dataplane backend (none, linux)",
             cfg->backend);
    /* A per-VNI VXLAN device has one local address: every remote VTEP must be of its
     * family, or the kernel refuses the flood entries one VN at a time. */
    const struct nnve_linux_config *lc = &cfg->linux_cfg;
    validate_evpn(p);
    if (lc->vxlan_mode == NNVE_LINUX_VXLAN_PER_VNI && cfg->linux_local_ip &&
        cfg->linux_remote_vteps && strcmp(cfg->linux_remote_vteps, "evpn") &&
        strcmp(cfg->linux_remote_vteps, "none")) {
        unsigned char ip[16];
        int fam = ip_family(cfg->linux_local_ip, ip);
        char *copy = strdup(cfg->linux_remote_vteps);
        char *save = NULL;
        for (char *t = copy ? strtok_r(copy, ", \t", &save) : NULL; t;
             t = strtok_r(NULL, ", \t", &save))
            if (ip_family(t, ip) != fam) {
                perr(p, cfg->linux_line,
                     "[linux]: remote VTEP %s is not of the address family of local_ip %s", t,
                     cfg->linux_local_ip);
                break;
            }
        free(copy);
    }
    if (!(cfg->transports & NNVE_TRANSPORT_TCP) && cfg->listen_line)
        perr(p, cfg->listen_line, "listen is set but transport has no tcp");
    if ((cfg->transports & NNVE_TRANSPORT_L2) && !cfg->n_l2_interfaces)
        perr(p, 0,
             "[global] transport = l2 needs l2_interfaces (the switch ports the channel "
             "runs on)");
    if (!(cfg->transports & NNVE_TRANSPORT_L2) && cfg->n_l2_interfaces)
        perr(p, cfg->l2_line, "l2_interfaces is set but transport has no l2");
    for (unsigned i = 0; i < cfg->n_l2_interfaces; i++)
        if (!nnve_config_port_domain(cfg, cfg->l2_interfaces[i]))
            perr(p, cfg->l2_line,
                 "l2_interfaces: %s is in no [domain] (the interface a hypervisor's frames "
                 "arrive on is its port)",
                 cfg->l2_interfaces[i]);
    unsigned any = 0;
    for (unsigned i = 0; i < cfg->n_domains; i++) {
        struct nnve_domain_cfg *d = &cfg->domains[i];
        if (!d->n_ranges)
            perr(p, d->line, "[domain %s] has no tags", d->name);
        if (!d->n_ports && !d->any_port)
            perr(p, d->line, "[domain %s] has no ports", d->name);
        if (d->any_port && any++)
            perr(p, d->line, "[domain %s]: only one domain may have ports = *", d->name);
        for (unsigned j = 0; j < d->n_ports; j++)
            for (unsigned k = 0; k <= i; k++) {
                struct nnve_domain_cfg *o = &cfg->domains[k];
                for (unsigned l = 0; l < o->n_ports && (k < i || l < j); l++)
                    if (!strcmp(o->ports[l], d->ports[j]))
                        perr(p, d->line, "port %s is in [domain %s] and [domain %s]", d->ports[j],
                             o->name, d->name);
            }
        for (unsigned j = 0; j < d->n_reserved; j++) {
            int inside = 0;
            for (unsigned k = 0; k < d->n_ranges; k++)
                inside |= d->reserved[j] >= d->ranges[k].lo && d->reserved[j] <= d->ranges[k].hi;
            if (!inside)
                perr(p, d->line, "[domain %s]: reserved tag %u is not in its tags", d->name,
                     d->reserved[j]);
        }
    }
    for (unsigned i = 0; i < cfg->n_hvs; i++) {
        struct nnve_hv_cfg *h = &cfg->hvs[i];
        if (!h->port && !h->learn)
            perr(p, h->line, "[hypervisor %s] needs port = PORT or port = learn", h->identity);
        else if (h->port && !nnve_config_port_domain(cfg, h->port))
            perr(p, h->line, "[hypervisor %s]: port %s is in no [domain]", h->identity, h->port);
        /* The catalogue: a name a hypervisor is granted must be a [vn] (PROTOCOL.md §4.4:
         * an unknown name is NO_SUCH_VN, so a grant of one would be a grant of nothing). */
        for (unsigned j = 0; j < h->n_vns; j++) {
            struct nnve_vn_ref *r = &h->vns[j];
            const struct nnve_vn_cfg *vc = r->name ? nnve_config_find_vn_name(cfg, r->name) : NULL;
            if (r->name && !vc)
                perr(p, r->line, "[hypervisor %s] vns: VN \"%s\" has no [vn %s] section",
                     h->identity, r->name, r->name);
            else if (vc)
                r->lo = r->hi = vc->id; /* the grant is of the ID (checked below: it has one) */
        }
    }
    const struct nnve_pair_cfg *pc = &cfg->pair;
    if (pc->line) {
        const struct nnve_domain_cfg *pd = NULL;
        for (unsigned i = 0; pc->domain && i < cfg->n_domains; i++)
            if (!strcmp(cfg->domains[i].name, pc->domain))
                pd = &cfg->domains[i];
        if (!pc->domain || !pc->has_role || !pc->peer_identity)
            perr(p, pc->line, "[pair] needs domain, role and peer_identity");
        else if (!pd)
            perr(p, pc->line, "[pair] domain %s is not a [domain]", pc->domain);
        else if (pc->role == 0 && !pc->has_listen)
            perr(p, pc->line, "[pair] role = allocator needs listen = ADDR:PORT");
        else if (pc->role == 1 && !pc->peer_host)
            perr(p, pc->line, "[pair] role = follower needs peer = HOST:PORT");
    }
    for (unsigned i = 0; i < cfg->n_vns; i++) {
        if (!cfg->vns[i].has_id)
            perr(p, cfg->vns[i].line, "[vn %s] needs id = VN_ID", cfg->vns[i].name);
        for (unsigned j = 0; j < i; j++)
            if (cfg->vns[i].has_id && cfg->vns[j].has_id && cfg->vns[i].id == cfg->vns[j].id)
                perr(p, cfg->vns[i].line, "[vn %s] has the same id %" PRIu32 " as [vn %s]",
                     cfg->vns[i].name, cfg->vns[i].id, cfg->vns[j].name);
    }
}

static int parse(struct parser *p, struct nnve_config **out)
{
    struct nnve_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return -ENOMEM;
    set_defaults(cfg);
    p->cfg = cfg;
    if (set_str(&cfg->path, p->name)) {
        nnve_config_destroy(cfg);
        return -ENOMEM;
    }
    /* Long lines, repeated keys and repeated sections are refused there. */
    char ierr[256];
    int r = snv_ini_parse(p->file, p->text, handler, p, &p->line, ierr, sizeof ierr);
    if (r > 0 && !p->failed)
        perr(p, (unsigned)r, "%s", ierr[0] ? ierr : "syntax error");
    else if (r < 0 && !p->failed)
        perr(p, 0, "cannot parse: %s", strerror(-r));
    if (!p->failed && fill_defaults(cfg))
        perr(p, 0, "out of memory");
    if (!p->failed)
        validate(p);
    if (p->failed) {
        nnve_config_destroy(cfg);
        return SNCP_E_CONFIG;
    }
    *out = cfg;
    return 0;
}

int nnve_config_load(const char *path, struct nnve_config **out, char *err, size_t errlen)
{
    struct parser p = {.name = path, .err = err, .errlen = errlen};
    p.file = fopen(path, "r");
    if (!p.file) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    int r = parse(&p, out);
    fclose(p.file);
    return r;
}

int nnve_config_parse_string(const char *text, const char *name, struct nnve_config **out,
                             char *err, size_t errlen)
{
    struct parser p = {.name = name, .err = err, .errlen = errlen, .text = text};
    return parse(&p, out);
}

void nnve_config_destroy(struct nnve_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->path);
    free(cfg->listen);
    free(cfg->cert);
    free(cfg->key);
    free(cfg->ca);
    free(cfg->crl);
    free(cfg->node_id);
    free(cfg->state_dir);
    free(cfg->control_socket);
    free(cfg->backend);
    free(cfg->dataplane_journal);
    free(cfg->fdb_file);
    free(cfg->metrics_file);
    free(cfg->mappings_file);
    free(cfg->audit_file);
    free(cfg->pair.domain);
    free(cfg->pair.peer_identity);
    free(cfg->pair.peer_host);
    free(cfg->linux_bridge);
    free(cfg->linux_vxlan_device);
    free(cfg->linux_local_ip);
    free(cfg->linux_remote_vteps);
    free_l2_interfaces(cfg);
    for (unsigned i = 0; i < cfg->n_domains; i++) {
        struct nnve_domain_cfg *d = &cfg->domains[i];
        free(d->name);
        for (unsigned j = 0; j < d->n_ports; j++)
            free(d->ports[j]);
        free(d->ports);
        free(d->ranges);
        free(d->reserved);
    }
    free(cfg->domains);
    for (unsigned i = 0; i < cfg->n_hvs; i++) {
        struct nnve_hv_cfg *h = &cfg->hvs[i];
        free(h->identity);
        free(h->port);
        for (unsigned j = 0; j < h->n_vns; j++)
            free(h->vns[j].name);
        free(h->vns);
    }
    free(cfg->hvs);
    for (unsigned i = 0; i < cfg->n_vns; i++)
        free(cfg->vns[i].name);
    free(cfg->vns);
    free(cfg);
}

static int str_same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

int nnve_config_pair_equal(const struct nnve_config *a, const struct nnve_config *b)
{
    const struct nnve_pair_cfg *x = &a->pair, *y = &b->pair;
    return !x->line == !y->line && str_same(x->domain, y->domain) && x->role == y->role &&
           str_same(x->peer_identity, y->peer_identity) && str_same(x->peer_host, y->peer_host) &&
           x->peer_port == y->peer_port && !strcmp(x->listen_addr, y->listen_addr) &&
           x->listen_port == y->listen_port && x->retry_ms == y->retry_ms;
}

int nnve_config_linux_equal(const struct nnve_config *a, const struct nnve_config *b)
{
    const struct nnve_linux_config *x = &a->linux_cfg, *y = &b->linux_cfg;
    return str_same(x->bridge, y->bridge) && x->vxlan_mode == y->vxlan_mode &&
           str_same(x->vxlan_device, y->vxlan_device) && str_same(x->local_ip, y->local_ip) &&
           x->vxlan_port == y->vxlan_port && str_same(x->remote_vteps, y->remote_vteps) &&
           x->anti_spoofing == y->anti_spoofing;
}

void nnve_config_linux_swap(struct nnve_config *a, struct nnve_config *b)
{
#define SWAP(field)                                                                                \
    do {                                                                                           \
        __typeof__(a->field) t_ = a->field;                                                        \
        a->field = b->field;                                                                       \
        b->field = t_;                                                                             \
    } while (0)
    SWAP(linux_cfg);
    SWAP(linux_bridge);
    SWAP(linux_vxlan_device);
    SWAP(linux_local_ip);
    SWAP(linux_remote_vteps);
    SWAP(linux_line);
    SWAP(linux_vxlan_mode_line);
    SWAP(linux_remote_vteps_line);
#undef SWAP
}

const struct nnve_hv_cfg *nnve_config_find_hv(const struct nnve_config *cfg, const char *identity)
{
    for (unsigned i = 0; i < cfg->n_hvs; i++)
        if (!strcmp(cfg->hvs[i].identity, identity))
            return &cfg->hvs[i];
    return NULL;
}

const struct nnve_domain_cfg *nnve_config_port_domain(const struct nnve_config *cfg,
                                                      const char *port)
{
    const struct nnve_domain_cfg *any = NULL;
    for (unsigned i = 0; i < cfg->n_domains; i++) {
        for (unsigned j = 0; j < cfg->domains[i].n_ports; j++)
            if (!strcmp(cfg->domains[i].ports[j], port))
                return &cfg->domains[i];
        if (cfg->domains[i].any_port)
            any = &cfg->domains[i];
    }
    return any;
}

const struct nnve_vn_cfg *nnve_config_find_vn_name(const struct nnve_config *cfg, const char *name)
{
    for (unsigned i = 0; i < cfg->n_vns; i++)
        if (!strcmp(cfg->vns[i].name, name))
            return &cfg->vns[i];
    return NULL;
}

const struct nnve_vn_cfg *nnve_config_find_vn_id(const struct nnve_config *cfg, uint32_t id)
{
    for (unsigned i = 0; i < cfg->n_vns; i++)
        if (cfg->vns[i].has_id && cfg->vns[i].id == id)
            return &cfg->vns[i];
    return NULL;
}

int nnve_config_vn_allowed(const struct nnve_hv_cfg *hv, uint32_t id)
{
    for (unsigned i = 0; i < hv->n_vns; i++) {
        const struct nnve_vn_ref *r = &hv->vns[i];
        if (id >= r->lo && id <= r->hi)
            return 1;
    }
    return 0;
}

struct nnve_hv_limits nnve_config_hv_limits(const struct nnve_config *cfg,
                                            const struct nnve_hv_cfg *hv)
{
    struct nnve_hv_limits l = {
        .vns = cfg->max_vns_per_hypervisor,
        .tsis = cfg->max_tsis_per_session,
        .addrs_per_tsi = cfg->max_addrs_per_tsi,
        .tags = cfg->max_tags_per_hypervisor,
    };
    if (hv && hv->limits.vns)
        l.vns = hv->limits.vns;
    if (hv && hv->limits.tsis)
        l.tsis = hv->limits.tsis;
    if (hv && hv->limits.addrs_per_tsi)
        l.addrs_per_tsi = hv->limits.addrs_per_tsi;
    if (hv && hv->limits.tags)
        l.tags = hv->limits.tags;
    return l;
}
