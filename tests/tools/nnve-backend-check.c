/* nnve-backend-check: drives nnve-daemon's `linux` dataplane backend from a script, for the
 * integration tests (inside User-Mode Linux) and for operators checking a switch set-up.
 *
 *   nnve-backend-check [-v] [-b BRIDGE] [-m external|per-vni] [-x VXLAN_DEV] [-l LOCAL_IP]
 *                      [-r REMOTES|evpn|none] [-a on|mac|off] [-A] < SCRIPT
 *
 * -a sets anti_spoofing (default on: port locking and the nftables IP filter; mac: port
 * locking only); -A is -a off.  SCRIPT has one command per line, run in order
 * on one backend instance ('#' starts a comment):
 *   vn-add PORT TAG VNI               vn-remove PORT TAG VNI
 *   associate PORT TAG VNI TSI [ADDR...]     (likewise activate, deactivate, deassociate,
 *                                             update; TSI is "<uuid>/<mac>", ADDR a MAC,
 *                                             an IP or IP@MAC)
 *   lookup MAC                        reconcile-begin            reconcile-end
 * Each result is printed as "COMMAND ARGS... -> ok", "-> error N (text)" or, for lookup,
 * "-> PORT" / "-> none".  The last line is "ops=N errors=N".  Exit status: 0 every command
 * succeeded, 1 one failed (the others still run), 2 usage, 3 the backend did not open.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../nnve-daemon/backend-linux.h"
#include "snv-log.h"

enum { MAX_WORDS = 4 + SNCP_MAX_ADDRS + 1 };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nnve-backend-check [-v] [-b BRIDGE] [-m external|per-vni] [-x DEV]\n"
            "                          [-l LOCAL_IP] [-r REMOTES|evpn|none] [-a on|mac|off] [-A]\n"
            "                          < SCRIPT\n");
}

static int parse_u32(const char *s, uint32_t max, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v > max)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static void print_result(int r)
{
    if (r < 0)
        printf(" -> error %d (%s)\n", r, strerror(-r));
    else
        printf(" -> ok\n");
}

/* Runs one tokenized line.  Returns the backend's result, or 1 for a usage error. */
static int run_line(struct nnve_backend *b, char **w, int n)
{
    const struct nnve_backend_class *c = b->cls;
    const char *cmd = w[0];
    if (!strcmp(cmd, "reconcile-begin") && n == 1)
        return c->reconcile_begin(b);
    if (!strcmp(cmd, "reconcile-end") && n == 1)
        return c->reconcile_end(b);
    if (!strcmp(cmd, "lookup") && n == 2) {
        uint8_t mac[6];
        char port[64];
        if (sncp_mac_parse(w[1], mac) != 0)
            return 1;
        int r = c->lookup_mac(b, mac, port, sizeof port);
        if (r == -ENOENT)
            printf(" -> none\n");
        else if (r == 0)
            printf(" -> %s\n", port);
        return r == -ENOENT ? 0 : r;
    }
    if (n < 4)
        return 1;
    uint32_t tag, vni;
    if (parse_u32(w[2], 65535, &tag) < 0 || parse_u32(w[3], UINT32_MAX, &vni) < 0)
        return 1;
    struct nnve_vn vn = {.id = vni, .has_id = 1};
    if (!strcmp(cmd, "vn-add") && n == 4)
        return c->vn_add(b, w[1], (uint16_t)tag, &vn);
    if (!strcmp(cmd, "vn-remove") && n == 4)
        return c->vn_remove(b, w[1], (uint16_t)tag, &vn);
    if (n < 5)
        return 1;
    struct sncp_tsi_id tsi;
    struct sncp_addr addrs[SNCP_MAX_ADDRS];
    unsigned n_addrs = 0;
    if (sncp_tsi_id_parse(w[4], &tsi) != 0)
        return 1;
    for (int i = 5; i < n; i++) {
        if (n_addrs == SNCP_MAX_ADDRS || sncp_addr_parse(w[i], &addrs[n_addrs]) != 0)
            return 1;
        n_addrs++;
    }
    int (*fn)(struct nnve_backend *, const char *, uint16_t, const struct nnve_vn *,
              const struct sncp_tsi_id *, const struct sncp_addr *, unsigned) =
        !strcmp(cmd, "associate")     ? c->tsi_associate
        : !strcmp(cmd, "activate")    ? c->tsi_activate
        : !strcmp(cmd, "deactivate")  ? c->tsi_deactivate
        : !strcmp(cmd, "deassociate") ? c->tsi_deassociate
        : !strcmp(cmd, "update")      ? c->tsi_update
                                      : NULL;
    if (fn == NULL)
        return 1;
    return fn(b, w[1], (uint16_t)tag, &vn, &tsi, addrs, n_addrs);
}

int main(int argc, char **argv)
{
    struct nnve_linux_config cfg;
    nnve_linux_config_init(&cfg);
    snv_log_open("nnve-backend-check", SNV_LOG_STDERR);
    int opt;
    while ((opt = getopt(argc, argv, "vb:m:x:l:r:a:Ah")) != -1) {
        switch (opt) {
        case 'v':
            snv_log_set_level(SNV_LOG_DEBUG);
            break;
        case 'b':
            cfg.bridge = optarg;
            break;
        case 'm':
            if (nnve_linux_vxlan_mode_parse(optarg, &cfg.vxlan_mode) < 0) {
                usage(stderr);
                return 2;
            }
            break;
        case 'x':
            cfg.vxlan_device = optarg;
            break;
        case 'l':
            cfg.local_ip = optarg;
            break;
        case 'r':
            cfg.remote_vteps = optarg;
            break;
        case 'a':
            if (nnve_linux_anti_spoofing_parse(optarg, &cfg.anti_spoofing) < 0) {
                usage(stderr);
                return 2;
            }
            break;
        case 'A':
            cfg.anti_spoofing = NNVE_LINUX_ANTI_SPOOFING_OFF;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    /* Through the class entry point, as nnve-daemon opens it. */
    struct nnve_backend_config bc = {.linux_cfg = &cfg};
    struct nnve_backend *b = NULL;
    int r = nnve_backend_linux_class.create(&bc, &b);
    if (r < 0) {
        printf("create -> error %d (%s)\n", r, strerror(-r));
        return 3;
    }
    int failed = 0;
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *w[MAX_WORDS], *save = NULL;
        int n = 0;
        for (char *t = strtok_r(line, " \t", &save); t && n < MAX_WORDS;
             t = strtok_r(NULL, " \t", &save))
            w[n++] = t;
        if (n == 0)
            continue;
        for (int i = 0; i < n; i++)
            printf("%s%s", i ? " " : "", w[i]);
        r = run_line(b, w, n);
        if (r == 1) {
            printf(" -> usage error\n");
            failed = 1;
        } else if (!(strcmp(w[0], "lookup") == 0 && r == 0)) {
            print_result(r);
        }
        if (r < 0)
            failed = 1;
        fflush(stdout);
    }
    printf("ops=%llu errors=%llu\n", (unsigned long long)b->ops, (unsigned long long)b->errors);
    b->cls->destroy(b);
    return failed;
}
