/* tnvectl.c: the control tool of tnve-agent, and the libvirt hook's client.
 *
 * Every subcommand but `hook` goes through snv_ctl_tool_main().  `hook OPERATION DOMAIN`
 * reads the domain XML libvirt passes on stdin and calls the agent's "hook/prepare"
 * command, waiting (-t) for the association to complete; on refusal it prints the reason
 * to stderr and exits non-zero, which makes libvirt refuse to start the domain.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "snv-ctl.h"

#define DEFAULT_SOCKET "/run/splitnve/tnve-agent.ctl"
enum { HOOK_DEFAULT_TIMEOUT_S = 15 };

static const char help_text[] =
    "Usage: tnvectl [-s SOCKET] [--json] [-t SECONDS] COMMAND\n"
    "\n"
    "Inspects and drives tnve-agent through its control socket.\n"
    "\n"
    "Commands:\n"
    "  show domains          domains tracked from libvirt (state, desired TSI state, vNICs)\n"
    "  show tsis             one row per vNIC: domain, uuid, mac, vn_id, vn_name, desired\n"
    "                        state, state acknowledged by the nNVE, local tag, port, pending\n"
    "                        request, failures, last error (its VN's if refused), the VN\n"
    "                        it is leaving (previous_vn), addresses\n"
    "                        (with several nNVEs: the serving nNVE's state, served_by and\n"
    "                        the state at each nNVE under nnves)\n"
    "  show vns              VNs: users on this host, connected, tag\n"
    "  show session          the nNVE session (state, transport, nNVE address or, over\n"
    "                        L2, interface and nNVE MAC, identity, hold time, SYNC phase)\n"
    "                        and the libvirt connection; \"show status\" is the same\n"
    "  show counters         counters of every module\n"
    "  show nnves            one row per configured nNVE: name, role (active/standby),\n"
    "                        session state, SYNC phase, its uplink and the uplink's state\n"
    "                        (active/backup bond slave, up, down, absent), the bond, whether\n"
    "                        it is preferred (its uplink carries the traffic) or chosen by\n"
    "                        the operator, address, identity, sessions\n"
    "  resync                re-list libvirt domains and run a full SYNC with the nNVE\n"
    "                        (with several nNVEs: with each one whose session is up)\n"
    "  nnve activate NAME    dual-homed host: nNVE NAME (its session up) serves the\n"
    "                        active-standby VNs from now on (the failback, by hand); with\n"
    "                        uplinks configured, until the uplink carrying the traffic\n"
    "                        changes or NAME's session is lost\n"
    "  hook OPERATION DOMAIN [SUBOP [EXTRA]]\n"
    "                        for the libvirt hook: reads the domain XML on stdin; for\n"
    "                        OPERATION prepare (start) and migrate (incoming migration) asks\n"
    "                        the agent to associate every vNIC with the nNVE first, and fails\n"
    "                        (exit 1, the reason on stderr) if the nNVE refuses or does not\n"
    "                        answer in time; other operations succeed at once.  XML is\n"
    "                        limited to 60000 bytes.\n"
    "  help                  the agent's command list\n"
    "  version               the agent's version\n"
    "  log/set LEVEL         change the agent's log level (err, warn, info, debug)\n"
    "\n"
    "Options:\n"
    "  -s, --socket PATH     control socket (default " DEFAULT_SOCKET ")\n"
    "      --json            print JSON instead of tables\n"
    "  -t, --timeout SECS    how long to wait for the agent (hook: default 15)\n"
    "  -h, --help            this text\n"
    "      --version         print the version\n"
    "\n"
    "Exit status: 0 ok, 1 the command failed (e.g. the nNVE refused), 2 usage, 3 not found,\n"
    "4 agent unreachable, 5 timeout.\n";

static const struct snv_ctl_word_map words[] = {
    {"show domains", "domain/show"},
    {"show tsis", "tsi/show"},
    {"show vns", "vn/show"},
    {"show session", "session/show"},
    {"show status", "session/show"},
    {"show counters", "counters/show"},
    {"resync", "resync"},
    {"show nnves", "nnve/show"},
    {"nnve activate", "nnve/activate"},
    {NULL, NULL},
};

/* Reads all of stdin, at most max bytes.  Returns a NUL-terminated buffer or NULL. */
static char *read_stdin(size_t max, size_t *len_out, int *too_big)
{
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    *too_big = 0;
    if (!buf)
        return NULL;
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > max + 1) {
                *too_big = 1;
                free(buf);
                return NULL;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, stdin);
        len += n;
        if (n == 0)
            break;
    }
    if (len > max) {
        *too_big = 1;
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    *len_out = len;
    return buf;
}

static int hook_main(int argc, char **argv)
{
    static const struct option options[] = {
        {"socket", required_argument, NULL, 's'},
        {"timeout", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *socket_path = DEFAULT_SOCKET;
    double timeout_s = HOOK_DEFAULT_TIMEOUT_S;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "+s:t:jh", options, NULL)) != -1) {
        switch (opt) {
        case 's':
            socket_path = optarg;
            break;
        case 't': {
            char *end;
            timeout_s = strtod(optarg, &end);
            if (end == optarg || *end || !(timeout_s > 0) || timeout_s > 3600) {
                fprintf(stderr, "tnvectl: invalid timeout \"%s\"\n", optarg);
                return SNV_CTL_USAGE;
            }
            break;
        }
        case 'j':
            break;
        case 'h':
            fputs(help_text, stdout);
            return SNV_CTL_OK;
        default:
            return SNV_CTL_USAGE;
        }
    }
    /* argv[optind] is "hook" */
    if (argc - optind < 3) {
        fprintf(stderr, "tnvectl: usage: hook OPERATION DOMAIN [SUBOP [EXTRA]]\n");
        return SNV_CTL_USAGE;
    }
    const char *op = argv[optind + 1], *domain = argv[optind + 2];
    if (strcmp(op, "prepare") && strcmp(op, "migrate"))
        return SNV_CTL_OK; /* nothing to do for other operations; stdin is not needed */
    size_t len = 0;
    int too_big;
    char *xml = read_stdin(TNVE_HOOK_XML_MAX, &len, &too_big);
    if (!xml) {
        if (too_big)
            fprintf(stderr, "splitnve: domain %s: domain XML longer than %d bytes\n", domain,
                    TNVE_HOOK_XML_MAX);
        else
            fprintf(stderr, "splitnve: domain %s: cannot read the domain XML from stdin\n", domain);
        return SNV_CTL_FAILED;
    }
    /* The agent answers a little before our own deadline, with its reason. */
    int timeout_ms = (int)(timeout_s * 1000);
    int wait_ms = timeout_ms > 2000 ? timeout_ms - 1000 : timeout_ms / 2;
    char wait_text[32];
    snprintf(wait_text, sizeof wait_text, "%d", wait_ms < 100 ? 100 : wait_ms);
    const char *call[5] = {"hook/prepare", op, domain, xml, wait_text};
    json_t *result = NULL;
    char err[512];
    int status = snv_ctl_call(socket_path, 5, call, timeout_ms, &result, err, sizeof err);
    free(xml);
    if (status != SNV_CTL_OK) {
        const char *why = err;
        if (result && json_is_string(result))
            why = json_string_value(result);
        fprintf(stderr, "splitnve: domain %s not started: %s\n", domain,
                why && *why ? why : "tnve-agent failed");
        json_decref(result);
        return status == SNV_CTL_USAGE ? SNV_CTL_FAILED : status;
    }
    json_decref(result);
    return SNV_CTL_OK;
}

int main(int argc, char **argv)
{
    /* `hook` has its own argument handling (stdin, the libvirt argument list). */
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] != '-') {
            if (!strcmp(argv[i], "hook"))
                return hook_main(argc, argv);
            break;
        }
        if ((!strcmp(argv[i], "-s") || !strcmp(argv[i], "-t") || !strcmp(argv[i], "--socket") ||
             !strcmp(argv[i], "--timeout")) &&
            i + 1 < argc)
            i++;
    }
    return snv_ctl_tool_main(argc, argv, DEFAULT_SOCKET, words, help_text);
}
