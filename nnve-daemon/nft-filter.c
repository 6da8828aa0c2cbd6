/* nft-filter.c: the linux backend's IP anti-spoofing table (see nft-filter.h).
 *
 * libnftables takes nft's own language: every change is one text buffer, which libnftables
 * sends as one netlink batch (one transaction).  Element lists are built here from validated
 * fields only (interface names without quotes, numeric VLANs, formatted MACs and IPs).
 * Reading back uses the JSON listing, parsed with jansson.
 */
#include "nft-filter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <nftables/libnftables.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sncp-msg.h"
#include "snv-log.h"

#define MOD "backend"

static struct snv_ratelimit rl_err = SNV_RATELIMIT_INIT(20, 100);
#define OP_ERR(...) snv_log_rl(&rl_err, SNV_LOG_ERR, MOD, __VA_ARGS__)

struct nnve_nft {
    struct nft_ctx *ctx;
    char table[64];
    char *buf; /* command text */
    size_t cap;
};

static const char *const set_names[] = {"macs", "src4", "src6"};

static int family_set(int family)
{
    return family == 0 ? 0 : family == AF_INET ? 1 : family == AF_INET6 ? 2 : -1;
}

int nnve_nft_table_text(char *buf, size_t cap, const char *table)
{
    int n = snprintf(
        buf, cap,
        "table bridge %s {\n"
        "  set macs { typeof iifname . vlan id . ether saddr; }\n"
        "  set src4 { typeof iifname . vlan id . ether saddr . ip saddr; }\n"
        "  set src6 { typeof iifname . vlan id . ether saddr . ip6 saddr; }\n"
        "  chain prerouting {\n"
        "    type filter hook prerouting priority filter; policy accept;\n"
        "    iifname . vlan id . ether saddr @macs jump guard\n"
        "  }\n"
        "  chain guard {\n"
        "    vlan type ip iifname . vlan id . ether saddr . ip saddr @src4 accept\n"
        "    vlan type arp iifname . vlan id . ether saddr . arp saddr ip @src4 accept\n"
        "    vlan type ip6 iifname . vlan id . ether saddr . ip6 saddr @src6 accept\n"
        "    vlan type ip ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept\n"
        "    vlan type arp arp saddr ip 0.0.0.0 accept\n"
        "    vlan type ip6 ip6 saddr :: icmpv6 type { nd-neighbor-solicit, "
        "mld2-listener-report } accept\n"
        "    vlan type ip6 ip6 saddr fe80::/10 icmpv6 type { nd-router-solicit, "
        "nd-neighbor-solicit, nd-neighbor-advert, mld2-listener-report } accept\n"
        "    vlan type { ip, arp, ip6 } counter drop\n"
        "  }\n"
        "}\n",
        table);
    return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

static int append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len >= cap)
        return -ENOSPC;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *len)
        return -ENOSPC;
    *len += (size_t)n;
    return 0;
}

static int elem_valid(const struct nnve_nft_elem *e)
{
    size_t n = strnlen(e->port, sizeof e->port);
    if (n == 0 || n == sizeof e->port || strpbrk(e->port, "\"\\") || e->vid < 1 ||
        e->vid > 4094 || family_set(e->family) < 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)e->port[i] < 0x21 || (unsigned char)e->port[i] > 0x7e)
            return 0;
    return 1;
}

int nnve_nft_elements_text(char *buf, size_t cap, size_t *len, const char *table, const char *verb,
                           const struct nnve_nft_elem *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!elem_valid(&e[i]))
            return -EINVAL;
    for (int s = 0; s < 3; s++) {
        int first = 1;
        for (size_t i = 0; i < n; i++) {
            if (family_set(e[i].family) != s)
                continue;
            int r = 0;
            if (first)
                r = append(buf, cap, len, "%s element bridge %s %s { ", verb, table, set_names[s]);
            char mac[SNCP_MAC_STRLEN];
            sncp_mac_format(e[i].mac, mac, sizeof mac);
            if (r == 0)
                r = append(buf, cap, len, "%s\"%s\" . %u . %s", first ? "" : ", ", e[i].port,
                           (unsigned)e[i].vid, mac);
            if (r == 0 && e[i].family != 0) {
                char ip[INET6_ADDRSTRLEN];
                inet_ntop(e[i].family, e[i].ip, ip, sizeof ip);
                r = append(buf, cap, len, " . %s", ip);
            }
            if (r < 0)
                return r;
            first = 0;
        }
        if (!first) {
            int r = append(buf, cap, len, " }\n");
            if (r < 0)
                return r;
        }
    }
    return 0;
}

int nnve_nft_elem_equal(const struct nnve_nft_elem *a, const struct nnve_nft_elem *b)
{
    size_t iplen = a->family == AF_INET ? 4 : a->family == AF_INET6 ? 16 : 0;
    return a->family == b->family && a->vid == b->vid && !memcmp(a->mac, b->mac, 6) &&
           !strncmp(a->port, b->port, sizeof a->port) && !memcmp(a->ip, b->ip, iplen);
}

/* ------------------------------------------------------------------- JSON listing --- */

static int elem_from_concat(const json_t *concat, int family, struct nnve_nft_elem *e)
{
    size_t want = family == 0 ? 3 : 4;
    if (!json_is_array(concat) || json_array_size(concat) != want)
        return -EINVAL;
    memset(e, 0, sizeof *e);
    e->family = family;
    const json_t *port = json_array_get(concat, 0), *vid = json_array_get(concat, 1),
                 *mac = json_array_get(concat, 2);
    if (!json_is_string(port) || !json_is_integer(vid) || !json_is_string(mac))
        return -EINVAL;
    const char *ps = json_string_value(port);
    json_int_t v = json_integer_value(vid);
    if (strlen(ps) == 0 || strlen(ps) >= sizeof e->port || v < 1 || v > 4094 ||
        sncp_mac_parse(json_string_value(mac), e->mac) != 0)
        return -EINVAL;
    memcpy(e->port, ps, strlen(ps) + 1);
    e->vid = (uint16_t)v;
    if (family != 0) {
        const json_t *ip = json_array_get(concat, 3);
        if (!json_is_string(ip) || inet_pton(family, json_string_value(ip), e->ip) != 1)
            return -EINVAL;
    }
    return 0;
}

int nnve_nft_parse_set_json(const char *json, struct nnve_nft_elem **out, size_t *n, size_t *cap)
{
    json_error_t jerr;
    json_t *root = json_loads(json, 0, &jerr);
    const json_t *items = root ? json_object_get(root, "nftables") : NULL;
    int ret = json_is_array(items) ? 0 : -EINVAL;
    for (size_t i = 0; ret == 0 && i < json_array_size(items); i++) {
        const json_t *set = json_object_get(json_array_get(items, i), "set");
        if (set == NULL)
            continue;
        const json_t *name = json_object_get(set, "name");
        int family = -1;
        for (int s = 0; s < 3 && json_is_string(name); s++)
            if (!strcmp(json_string_value(name), set_names[s]))
                family = s == 0 ? 0 : s == 1 ? AF_INET : AF_INET6;
        if (family < 0) {
            ret = -EINVAL;
            break;
        }
        const json_t *elems = json_object_get(set, "elem");
        if (elems != NULL && !json_is_array(elems)) {
            ret = -EINVAL;
            break;
        }
        for (size_t j = 0; j < json_array_size(elems); j++) {
            const json_t *el = json_array_get(elems, j);
            /* {"concat": [...]}, or {"elem": {"val": {"concat": [...]}, ...}} when the
             * element carries more (a counter, a comment) */
            const json_t *inner = json_object_get(el, "elem");
            const json_t *concat =
                json_object_get(inner ? json_object_get(inner, "val") : el, "concat");
            if (*n == *cap) {
                size_t nc = *cap ? *cap * 2 : 64;
                struct nnve_nft_elem *ne = realloc(*out, nc * sizeof *ne);
                if (ne == NULL) {
                    ret = -ENOMEM;
                    break;
                }
                *out = ne;
                *cap = nc;
            }
            if (elem_from_concat(concat, family, &(*out)[*n]) < 0) {
                ret = -EINVAL;
                break;
            }
            (*n)++;
        }
    }
    json_decref(root);
    return ret;
}

/* ---------------------------------------------------------------------- running --- */

/* Runs `cmd`; the listing (if any) goes to *output (valid until the next run).  Returns 0,
 * or -EIO with the error text in *error. */
static int run(struct nft_ctx *ctx, const char *cmd, const char **output, const char **error)
{
    int r = nft_run_cmd_from_buffer(ctx, cmd);
    const char *o = nft_ctx_get_output_buffer(ctx);
    const char *e = nft_ctx_get_error_buffer(ctx);
    if (output)
        *output = o ? o : "";
    if (error)
        *error = e ? e : "";
    return r == 0 ? 0 : -EIO;
}

/* The first line of nft's error text, for a log line. */
static const char *first_line(const char *s, char *buf, size_t cap)
{
    while (*s == '\n')
        s++;
    size_t n = strcspn(s, "\n");
    snprintf(buf, cap, "%.*s", (int)(n < cap ? n : cap - 1), s);
    return buf;
}

static struct nft_ctx *ctx_new(unsigned flags)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (ctx == NULL)
        return NULL;
    if (nft_ctx_buffer_output(ctx) || nft_ctx_buffer_error(ctx)) {
        nft_ctx_free(ctx);
        return NULL;
    }
    nft_ctx_output_set_flags(ctx, flags);
    return ctx;
}

/* Lists table `table` without its elements and counters, as nft prints it.  Returns 0 with
 * a copy in *text (caller frees), -ENOENT when absent, or -EIO. */
static int list_terse(struct nft_ctx *ctx, const char *table, char **text, const char **error)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "list table bridge %s", table);
    const char *out;
    nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_TERSE | NFT_CTX_OUTPUT_STATELESS);
    int r = run(ctx, cmd, &out, error);
    nft_ctx_output_set_flags(ctx, 0);
    if (r < 0)
        return strstr(*error, "No such file or directory") ? -ENOENT : r;
    /* the header names the table: compare the rest */
    const char *body = strchr(out, '{');
    *text = strdup(body ? body : out);
    return *text ? 0 : -ENOMEM;
}

int nnve_nft_remove_table(const char *table)
{
    table = table ? table : NNVE_NFT_TABLE;
    struct nft_ctx *ctx = ctx_new(0);
    if (ctx == NULL) {
        SNV_ERR(MOD, "linux: nftables: cannot open libnftables");
        return -ENOMEM;
    }
    char cmd[128], line[256];
    const char *err;
    snprintf(cmd, sizeof cmd, "list table bridge %s", table);
    int r = run(ctx, cmd, NULL, &err);
    if (r < 0) {
        nft_ctx_free(ctx);
        return 0; /* absent, or no nf_tables at all: nothing of ours to remove */
    }
    snprintf(cmd, sizeof cmd, "delete table bridge %s", table);
    r = run(ctx, cmd, NULL, &err);
    if (r < 0)
        SNV_ERR(MOD, "linux: nftables: cannot delete table bridge %s: %s", table,
                first_line(err, line, sizeof line));
    else
        SNV_INFO(MOD, "linux: nftables: table bridge %s deleted (anti_spoofing does not filter "
                      "IPs)",
                 table);
    nft_ctx_free(ctx);
    return r;
}

int nnve_nft_create(const char *table, struct nnve_nft **out)
{
    *out = NULL;
    table = table ? table : NNVE_NFT_TABLE;
    struct nnve_nft *nft = calloc(1, sizeof *nft);
    if (nft == NULL)
        return -ENOMEM;
    if (snprintf(nft->table, sizeof nft->table, "%s", table) >= (int)sizeof nft->table ||
        strlen(table) + sizeof "_chk" > sizeof nft->table || strpbrk(table, " \t\"\\{};")) {
        SNV_ERR(MOD, "linux: nftables: invalid table name %s", table);
        free(nft);
        return -EINVAL;
    }
    nft->ctx = ctx_new(0);
    nft->cap = 65536;
    nft->buf = malloc(nft->cap);
    if (nft->ctx == NULL || nft->buf == NULL) {
        SNV_ERR(MOD, "linux: nftables: cannot open libnftables");
        nnve_nft_destroy(nft);
        return -ENOMEM;
    }
    /* What the table must be: nft's own listing of a scratch table made from the
     * definition, compared with the listing of ours. */
    char chk[80], def[2048], line[256];
    snprintf(chk, sizeof chk, "%s_chk", table);
    const char *err = "";
    char *want = NULL, *have = NULL;
    int r = nnve_nft_table_text(def, sizeof def, chk);
    if (r >= 0) {
        char del[128];
        snprintf(del, sizeof del, "delete table bridge %s\n", chk);
        r = run(nft->ctx, def, NULL, &err);
        if (r < 0) {
            SNV_ERR(MOD,
                    "linux: nftables: cannot create a bridge-family table (is nf_tables "
                    "loaded? anti_spoofing = mac works without it): %s",
                    first_line(err, line, sizeof line));
            r = -ENOTSUP;
        } else {
            r = list_terse(nft->ctx, chk, &want, &err);
            (void)run(nft->ctx, del, NULL, NULL);
        }
    }
    if (r == 0) {
        r = list_terse(nft->ctx, table, &have, &err);
        if (r == 0 && !strcmp(want, have)) {
            SNV_INFO(MOD, "linux: nftables: table bridge %s is in place", table);
        } else if (r == 0 || r == -ENOENT) {
            size_t len = 0;
            if (r == 0)
                (void)append(nft->buf, nft->cap, &len, "delete table bridge %s\n", table);
            int n = nnve_nft_table_text(nft->buf + len, nft->cap - len, table);
            int had = r == 0;
            r = n < 0 ? n : run(nft->ctx, nft->buf, NULL, &err);
            if (r < 0)
                SNV_ERR(MOD, "linux: nftables: cannot create table bridge %s: %s", table,
                        first_line(err, line, sizeof line));
            else if (had)
                SNV_WARN(MOD, "linux: nftables: table bridge %s differed from ours, created "
                              "again",
                         table);
            else
                SNV_INFO(MOD, "linux: nftables: table bridge %s created", table);
        } else {
            SNV_ERR(MOD, "linux: nftables: cannot read table bridge %s: %s", table,
                    first_line(err, line, sizeof line));
        }
    }
    free(want);
    free(have);
    if (r < 0) {
        nnve_nft_destroy(nft);
        return r;
    }
    *out = nft;
    return 0;
}

void nnve_nft_destroy(struct nnve_nft *nft)
{
    if (nft == NULL)
        return;
    if (nft->ctx)
        nft_ctx_free(nft->ctx);
    free(nft->buf);
    free(nft);
}

/* Builds the commands for add/del into nft->buf, growing it.  Returns 0 or < 0. */
static int build(struct nnve_nft *nft, const struct nnve_nft_elem *add, size_t n_add,
                 const struct nnve_nft_elem *del, size_t n_del)
{
    for (;;) {
        size_t len = 0;
        nft->buf[0] = '\0';
        int r = nnve_nft_elements_text(nft->buf, nft->cap, &len, nft->table, "add", add, n_add);
        if (r == 0)
            r = nnve_nft_elements_text(nft->buf, nft->cap, &len, nft->table, "delete", del,
                                       n_del);
        if (r != -ENOSPC)
            return r;
        char *nb = realloc(nft->buf, nft->cap * 2);
        if (nb == NULL)
            return -ENOMEM;
        nft->buf = nb;
        nft->cap *= 2;
    }
}

int nnve_nft_apply(struct nnve_nft *nft, const struct nnve_nft_elem *add, size_t n_add,
                   const struct nnve_nft_elem *del, size_t n_del)
{
    if (n_add == 0 && n_del == 0)
        return 0;
    char line[256];
    const char *err = "";
    int r = build(nft, add, n_add, del, n_del);
    if (r == -EINVAL) {
        OP_ERR("linux: nftables: an element has a port name or VLAN nft cannot take");
        return r;
    }
    if (r == 0)
        r = run(nft->ctx, nft->buf, NULL, &err);
    if (r == 0)
        return 0;
    if (r == -EIO && n_del > 0 && strstr(err, "No such file or directory")) {
        /* some element to delete is gone already: apply the rest one at a time */
        r = n_add ? build(nft, add, n_add, NULL, 0) : 0;
        if (r == 0 && n_add)
            r = run(nft->ctx, nft->buf, NULL, &err);
        for (size_t i = 0; r == 0 && i < n_del; i++) {
            r = build(nft, NULL, 0, &del[i], 1);
            if (r == 0)
                r = run(nft->ctx, nft->buf, NULL, &err);
            if (r == -EIO && strstr(err, "No such file or directory"))
                r = 0;
        }
        if (r == 0)
            return 0;
    }
    OP_ERR("linux: nftables: cannot change the elements of table bridge %s (add=%zu "
           "delete=%zu): %s",
           nft->table, n_add, n_del, r == -EIO ? first_line(err, line, sizeof line) : strerror(-r));
    return r;
}

int nnve_nft_read(struct nnve_nft *nft, struct nnve_nft_elem **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    char line[256];
    nft_ctx_output_set_flags(nft->ctx, NFT_CTX_OUTPUT_JSON);
    int r = 0;
    for (int s = 0; s < 3 && r == 0; s++) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "list set bridge %s %s", nft->table, set_names[s]);
        const char *o, *err;
        r = run(nft->ctx, cmd, &o, &err);
        if (r < 0) {
            OP_ERR("linux: nftables: cannot list set %s of table bridge %s: %s", set_names[s],
                   nft->table, first_line(err, line, sizeof line));
            break;
        }
        r = nnve_nft_parse_set_json(o, out, n, &cap);
        if (r < 0)
            OP_ERR("linux: nftables: cannot parse set %s of table bridge %s: %s", set_names[s],
                   nft->table, strerror(-r));
    }
    nft_ctx_output_set_flags(nft->ctx, 0);
    if (r < 0) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return r;
}
