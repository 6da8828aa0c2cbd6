/* tnve-dp-check: drives tnve-agent's Linux dataplane backend by hand, for the integration
 * tests (inside User-Mode Linux) and for operators checking a hypervisor's bridge set-up.
 *
 *   tnve-dp-check [-v] [-u UPLINK] [-b BRIDGE] COMMAND...
 *   tnve-dp-check [-v] [-u UPLINK] [-b BRIDGE] PORT VID
 *
 * Commands run in order on one backend instance (so repeated commands test idempotence):
 *   set PORT VID          port_set
 *   get PORT              port_get, prints the PVID (0: none)
 *   clear PORT VID        port_clear, the uplink loses VID too
 *   clear-keep PORT VID   port_clear while other vNICs of the VN remain (uplink keeps VID)
 * The short form PORT VID runs: set, get, set again, get, clear, get.
 * Each result is printed as one line "COMMAND ARGS... -> RESULT".  Exit status: 0 all
 * succeeded, 1 a command failed (the rest are skipped), 2 usage, 3 create() failed.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tnve-agent/dataplane-provider.h"
#include "snv-log.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: tnve-dp-check [-v] [-u UPLINK] [-b BRIDGE] COMMAND...\n"
               "       tnve-dp-check [-v] [-u UPLINK] [-b BRIDGE] PORT VID\n"
               "commands: set PORT VID | get PORT | clear PORT VID | clear-keep PORT VID\n");
}

static int parse_vid(const char *s, uint16_t *vid)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v > 65535)
        return -1;
    *vid = (uint16_t)v;
    return 0;
}

/* Ends the line a caller started with the command's words. */
static void print_result(int r)
{
    if (r < 0)
        printf(" -> error %d (%s)\n", r, strerror(-r));
    else
        printf(" -> ok\n");
    fflush(stdout);
}

/* Runs one command at argv[0]; returns how many words it used, or -1 on usage error, and
 * *failed = 1 when the backend returned an error. */
static int run_one(const struct tnve_dp_class *cls, struct tnve_dp *dp, int argc, char **argv,
                   int *failed)
{
    uint16_t vid;
    const char *cmd = argv[0];
    if (strcmp(cmd, "get") == 0) {
        if (argc < 2)
            return -1;
        int r = cls->port_get(dp, argv[1]);
        if (r < 0) {
            printf("get %s", argv[1]);
            print_result(r);
            *failed = 1;
        } else {
            printf("get %s -> pvid %d\n", argv[1], r);
            fflush(stdout);
        }
        return 2;
    }
    int is_set = strcmp(cmd, "set") == 0;
    int is_clear = strcmp(cmd, "clear") == 0;
    int is_keep = strcmp(cmd, "clear-keep") == 0;
    if (!is_set && !is_clear && !is_keep)
        return -1;
    if (argc < 3 || parse_vid(argv[2], &vid) < 0)
        return -1;
    int r = is_set ? cls->port_set(dp, argv[1], vid) : cls->port_clear(dp, argv[1], vid, is_keep);
    printf("%s %s %u", cmd, argv[1], vid);
    print_result(r);
    if (r < 0)
        *failed = 1;
    return 3;
}

int main(int argc, char **argv)
{
    struct tnve_dp_config cfg = {0};
    int opt;
    snv_log_open("tnve-dp-check", SNV_LOG_STDERR);
    while ((opt = getopt(argc, argv, "vu:b:h")) != -1) {
        switch (opt) {
        case 'v':
            snv_log_set_level(SNV_LOG_DEBUG);
            break;
        case 'u':
            cfg.uplink = optarg;
            break;
        case 'b':
            cfg.bridge = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    if (nargs < 1) {
        usage(stderr);
        return 2;
    }

    /* The short form expands into the standard sequence. */
    char *seq[20];
    const char *known[] = {"set", "get", "clear", "clear-keep"};
    int is_cmd = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(args[0], known[i]) == 0)
            is_cmd = 1;
    if (!is_cmd) {
        if (nargs != 2) {
            usage(stderr);
            return 2;
        }
        char *p = args[0], *v = args[1];
        char *expanded[] = {"set", p, v, "get", p, "set", p, v, "get", p, "clear", p, v, "get", p};
        nargs = (int)(sizeof expanded / sizeof expanded[0]);
        memcpy(seq, expanded, sizeof expanded);
        args = seq;
    }

    const struct tnve_dp_class *cls = &tnve_dp_linux_class;
    struct tnve_dp *dp = NULL;
    int r = cls->create(&cfg, &dp);
    printf("create uplink=%s bridge=%s", cfg.uplink != NULL ? cfg.uplink : "-",
           cfg.bridge != NULL ? cfg.bridge : "-");
    print_result(r);
    if (r < 0)
        return 3;

    int failed = 0;
    int status = 0;
    for (int i = 0; i < nargs && !failed;) {
        int used = run_one(cls, dp, nargs - i, args + i, &failed);
        if (used < 0) {
            fprintf(stderr, "tnve-dp-check: bad command at '%s'\n", args[i]);
            usage(stderr);
            status = 2;
            break;
        }
        i += used;
    }
    cls->destroy(dp);
    if (status != 0)
        return status;
    return failed ? 1 : 0;
}
