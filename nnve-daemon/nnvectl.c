/* nnvectl.c: the control tool of nnve-daemon. */
#include <stdlib.h>

#include "config.h"
#include "snv-ctl.h"

static const char help[] =
    "Usage: nnvectl [-s SOCKET] [--json] [-t SECONDS] COMMAND [ARGS...]\n"
    "\n"
    "Shows and changes the state of nnve-daemon, the switch side of splitnve (RFC 8394).\n"
    "\n"
    "Commands:\n"
    "  show sessions                 SNCP sessions (transport tcp or l2; L2: interface,\n"
    "                                peer_mac, vlan), and hypervisors held after losing theirs\n"
    "  show vns                      VNs per domain: vn_id, vn_name, domain, tag, tsis\n"
    "  show tsis [hypervisor H] [vn VN] [port P] [state associated|activated]\n"
    "                                TSI instances: tsi, vn_id, vn_name, port, hypervisor,\n"
    "                                state, tag, addresses, migrating; only those matching\n"
    "                                the filters.  Fetched in pages of 1,000; with\n"
    "                                [limit N] [after CURSOR], one page and its next cursor\n"
    "  show mappings [hypervisor H] [vn VN] [port P] [state associated|activated]\n"
    "                                the NVE-to-NVE mapping table: per TSI instance its\n"
    "                                vn_id, vn_name, vni, macs, ips, local vtep, state\n"
    "  show tags                     local tag pools per domain (size, used, held, free)\n"
    "  show counters                 counters (messages, statuses, sessions, TSIs, drops)\n"
    "  show latency [reset]          how long hypervisors' requests took inside the daemon\n"
    "                                (request: from decoding to the answer written, which\n"
    "                                waits for the group commit) and the group commits\n"
    "                                (commit: the log written and synced): samples, p50,\n"
    "                                p90, p99, p99.9, max and mean in microseconds, since\n"
    "                                the start or the last reset; reset empties them after\n"
    "                                showing (the metrics file has both as histograms)\n"
    "  show pair                     the ToR pair sharing a domain: peer, state, role, the\n"
    "                                half this switch allocates from, the shared tag table\n"
    "  vn disconnect HYPERVISOR VN   disconnect a hypervisor from a VN (VN ID or name); its\n"
    "                                TSIs in the VN are de-associated; the agent is told\n"
    "  tsi deactivate TSI [ADDRESS...]\n"
    "                                deactivate a TSI, or withdraw only these addresses\n"
    "  tsi deassociate TSI           de-associate a TSI (all its instances)\n"
    "  tsi update TSI add|remove|replace [ADDRESS...]\n"
    "                                change a TSI's addresses here; the agent is told\n"
    "  help | version | log set LEVEL | log get\n"
    "\n"
    "TSI is \"<uuid>/<mac>\"; ADDRESS is a MAC, an IPv4 or IPv6 address, or IP@MAC.\n"
    "\n"
    "Options:\n"
    "  -s, --socket SOCKET   control socket (default " NNVE_DEFAULT_CTL ")\n"
    "      --json            print JSON (arrays of objects) instead of tables\n"
    "  -t, --timeout SECONDS how long to wait for the daemon\n"
    "  -h, --help            this text\n"
    "\n"
    "Exit status: 0 success, 1 the command failed (e.g. the agent did not confirm), 2 usage,\n"
    "3 no such object, 4 daemon unreachable, 5 timeout.\n";

int main(int argc, char **argv)
{
    static const struct snv_ctl_word_map words[] = {
        {"show sessions", "session/show"},
        {"show vns", "vn/show"},
        {"show tsis", "tsi/show"},
        {"show mappings", "mapping/show"},
        {"show tags", "tag/show"},
        {"show counters", "counters/show"},
        {"show latency", "latency/show"},
        {"show pair", "pair/show"},
        {"vn disconnect", "vn/disconnect"},
        {"tsi deactivate", "tsi/deactivate"},
        {"tsi deassociate", "tsi/deassociate"},
        {"tsi update", "tsi/update"},
        {"log set", "log/set"},
        {"log get", "log/get"},
        {NULL, NULL},
    };
    return snv_ctl_tool_main(argc, argv, NNVE_DEFAULT_CTL, words, help);
}
