/* nft-filter.c: the linux backend's IP anti-spoofing table (see nft-filter.h).
 *
 * The table is made and checked with libnftables, in nft's own language, and read back from
 * its JSON listing (parsed with jansson).  Elements are added and deleted over nfnetlink
 * directly (libmnl), as one batch (one transaction) per change: nft itself reads every
 * element of a set before deleting one, which makes a deactivation cost grow with the number
 * of TSIs on the switch.  A key is the concatenation nft builds for the rules' lookups: each
 * field in network order, padded to 4 bytes (iifname 16, vlan id 2+2, ether 6+2, then 4 or
 * 16 for the IP).
 */
#include "nft-filter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <nftables/libnftables.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "sncp-msg.h"
#include "snv-log.h"

#define MOD "backend"

static struct snv_ratelimit rl_err = SNV_RATELIMIT_INIT(20, 100);
#define OP_ERR(...) snv_log_rl(&rl_err, SNV_LOG_ERR, MOD, __VA_ARGS__)

struct nnve_nft {
    struct nft_ctx *ctx;
    struct mnl_socket *nl; /* NETLINK_NETFILTER, for the elements */
    uint32_t seq;
    char table[64];
    char *buf; /* batch */
    size_t cap;
};

/* Elements per batch: a TSI's change always fits in one; a large clean-up at start-up is
 * split (each batch is a transaction of its own). */
enum { BATCH_ELEMS = 512, ELEM_MSG_ROOM = 96 };

static const char *const set_names[] = {"macs", "src4", "src6"};

static int family_set(int family)
{
    return family == 0 ? 0 : family == AF_INET ? 1 : family == AF_INET6 ? 2 : -1;
}

int nnve_nft_table_text(char *buf, size_t cap, const char *table)
{
    int n =
        snprintf(buf, cap,
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
    if (n == 0 || n == sizeof e->port || strpbrk(e->port, "\"\\") || e->vid < 1 || e->vid > 4094 ||
        family_set(e->family) < 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)e->port[i] < 0x21 || (unsigned char)e->port[i] > 0x7e)
            return 0;
    return 1;
}

int nnve_nft_elem_key(const struct nnve_nft_elem *e, uint8_t key[NNVE_NFT_KEY_MAX])
{
    if (!elem_valid(e))
        return -EINVAL;
    memset(key, 0, NNVE_NFT_KEY_MAX);
    memcpy(key, e->port, strnlen(e->port, sizeof e->port)); /* ifname: 16 bytes */
    uint16_t vid = htons(e->vid);
    memcpy(key + 16, &vid, 2);   /* vlan id: 2 bytes, padded to 4 */
    memcpy(key + 20, e->mac, 6); /* ether: 6 bytes, padded to 8 */
    if (e->family == AF_INET) {
        memcpy(key + 28, e->ip, 4);
        return 32;
    }
    if (e->family == AF_INET6) {
        memcpy(key + 28, e->ip, 16);
        return 44;
    }
    return 28;
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
        SNV_INFO(MOD,
                 "linux: nftables: table bridge %s deleted (anti_spoofing does not filter "
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
    nft->nl = mnl_socket_open(NETLINK_NETFILTER);
    int one = 1;
    struct timeval tv = {.tv_sec = 5};
    if (nft->nl == NULL || mnl_socket_bind(nft->nl, 0, MNL_SOCKET_AUTOPID) < 0 ||
        mnl_socket_setsockopt(nft->nl, NETLINK_CAP_ACK, &one, sizeof one) < 0 ||
        setsockopt(mnl_socket_get_fd(nft->nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) {
        int e = errno;
        SNV_ERR(MOD, "linux: nftables: cannot open a netfilter netlink socket: %s", strerror(e));
        nnve_nft_destroy(nft);
        return -e;
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
                SNV_WARN(MOD,
                         "linux: nftables: table bridge %s differed from ours, created "
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
    if (nft->nl)
        mnl_socket_close(nft->nl);
    free(nft->buf);
    free(nft);
}

static struct nlmsghdr *batch_msg(struct nnve_nft *nft, char *at, uint16_t type, uint16_t flags,
                                  uint8_t family, uint16_t res_id)
{
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(at);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | flags;
    nlh->nlmsg_seq = ++nft->seq;
    struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(nlh, sizeof *nfg);
    nfg->nfgen_family = family;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = htons(res_id);
    return nlh;
}

/* Sends one batch adding add[0..n_add) and deleting del[0..n_del), and reads the kernel's
 * answer to each message.  Returns 0, the first error (-ENOENT when a deleted element was
 * absent), or a local -errno. */
static int batch(struct nnve_nft *nft, const struct nnve_nft_elem *add, size_t n_add,
                 const struct nnve_nft_elem *del, size_t n_del)
{
    size_t need = (n_add + n_del) * ELEM_MSG_ROOM + 8 * 256;
    if (need > nft->cap) {
        char *nb = realloc(nft->buf, need);
        if (nb == NULL)
            return -ENOMEM;
        nft->buf = nb;
        nft->cap = need;
    }
    /* attribute padding is left unwritten by some libmnl versions: no stray bytes out */
    memset(nft->buf, 0, need);
    size_t off = 0;
    struct nlmsghdr *nlh =
        batch_msg(nft, nft->buf, NFNL_MSG_BATCH_BEGIN, 0, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
    off += nlh->nlmsg_len;
    unsigned n_msgs = 0;
    for (int op = 0; op < 2; op++) {
        const struct nnve_nft_elem *v = op == 0 ? add : del;
        size_t n = op == 0 ? n_add : n_del;
        for (int set = 0; set < 3; set++) {
            struct nlmsghdr *m = NULL;
            struct nlattr *list = NULL;
            for (size_t i = 0; i < n; i++) {
                if (family_set(v[i].family) != set)
                    continue;
                uint8_t key[NNVE_NFT_KEY_MAX];
                int klen = nnve_nft_elem_key(&v[i], key);
                if (klen < 0)
                    return klen;
                if (m == NULL) {
                    m = batch_msg(nft, nft->buf + off,
                                  (NFNL_SUBSYS_NFTABLES << 8) |
                                      (op == 0 ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM),
                                  NLM_F_ACK | (op == 0 ? NLM_F_CREATE : 0), NFPROTO_BRIDGE, 0);
                    mnl_attr_put_strz(m, NFTA_SET_ELEM_LIST_TABLE, nft->table);
                    mnl_attr_put_strz(m, NFTA_SET_ELEM_LIST_SET, set_names[set]);
                    list = mnl_attr_nest_start(m, NFTA_SET_ELEM_LIST_ELEMENTS);
                }
                struct nlattr *el = mnl_attr_nest_start(m, NFTA_LIST_ELEM);
                struct nlattr *k = mnl_attr_nest_start(m, NFTA_SET_ELEM_KEY);
                mnl_attr_put(m, NFTA_DATA_VALUE, (size_t)klen, key);
                mnl_attr_nest_end(m, k);
                mnl_attr_nest_end(m, el);
            }
            if (m != NULL) {
                mnl_attr_nest_end(m, list);
                off += m->nlmsg_len;
                n_msgs++;
            }
        }
    }
    nlh = batch_msg(nft, nft->buf + off, NFNL_MSG_BATCH_END, 0, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
    off += nlh->nlmsg_len;
    if (mnl_socket_sendto(nft->nl, nft->buf, off) < 0)
        return -errno;
    /* The kernel runs the batch within sendmsg(): its answers (one per message, errors
     * first-class) are queued by now. */
    int ret = 0;
    unsigned answered = 0;
    char rx[8192] __attribute__((aligned(NLMSG_ALIGNTO)));
    while (answered < n_msgs) {
        ssize_t len = recv(mnl_socket_get_fd(nft->nl), rx, sizeof rx, 0);
        if (len < 0)
            return ret ? ret : -errno;
        int left = (int)len;
        for (const struct nlmsghdr *h = (const struct nlmsghdr *)rx; mnl_nlmsg_ok(h, left);
             h = mnl_nlmsg_next(h, &left)) {
            if (h->nlmsg_type != NLMSG_ERROR ||
                mnl_nlmsg_get_payload_len(h) < sizeof(struct nlmsgerr))
                continue;
            const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
            answered++;
            if (e->error != 0 && ret == 0)
                ret = e->error;
        }
    }
    return ret;
}

int nnve_nft_apply(struct nnve_nft *nft, const struct nnve_nft_elem *add, size_t n_add,
                   const struct nnve_nft_elem *del, size_t n_del)
{
    if (n_add > BATCH_ELEMS || n_del > BATCH_ELEMS) {
        size_t a = n_add > BATCH_ELEMS ? BATCH_ELEMS : n_add;
        size_t d = n_del > BATCH_ELEMS ? BATCH_ELEMS : n_del;
        int r = nnve_nft_apply(nft, add, a, del, d);
        int r2 = nnve_nft_apply(nft, n_add ? add + a : NULL, n_add - a, n_del ? del + d : NULL,
                                n_del - d);
        return r < 0 ? r : r2;
    }
    if (n_add == 0 && n_del == 0)
        return 0;
    int r = batch(nft, add, n_add, del, n_del);
    if (r == -ENOENT && n_del > 0) {
        /* some element to delete is gone already: apply the rest one at a time */
        r = n_add ? batch(nft, add, n_add, NULL, 0) : 0;
        for (size_t i = 0; r == 0 && i < n_del; i++) {
            r = batch(nft, NULL, 0, &del[i], 1);
            if (r == -ENOENT)
                r = 0;
        }
    }
    if (r < 0)
        OP_ERR("linux: nftables: cannot change the elements of table bridge %s (add=%zu "
               "delete=%zu): %s",
               nft->table, n_add, n_del, strerror(-r));
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
