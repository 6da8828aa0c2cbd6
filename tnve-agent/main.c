/* main.c: tnve-agent's main(): options, config, loop, signals, tear-down. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <uv.h>

#include "agent.h"
#include "config.h"
#include "sncp-error.h"
#include "snv-file.h"
#include "snv-log.h"
#include "virt-loop.h"

#define DEFAULT_CONFIG "/etc/splitnve/tnve-agent.conf"

static const char usage_text[] =
    "Usage: tnve-agent [OPTIONS]\n"
    "\n"
    "The splitnve hypervisor agent (the tNVE of RFC 8394).  It watches libvirt, knows every\n"
    "vNIC of every domain and the VN it belongs to, and keeps the nNVE (nnve-daemon on the\n"
    "top-of-rack switch) in line with what libvirt says over SNCP (TLS 1.3, mutual\n"
    "certificates): VN_CONNECT, TSI_ASSOCIATE / ACTIVATE / DEACTIVATE / DEASSOCIATE,\n"
    "address updates, and a full SYNC after every reconnect.  The libvirt hook\n"
    "(/etc/libvirt/hooks/qemu.d/splitnve) asks it, through tnvectl, to associate a domain's\n"
    "vNICs before the domain starts.\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE     configuration file (default " DEFAULT_CONFIG ")\n"
    "  -f, --foreground      stay in the foreground (the default)\n"
    "  -d, --daemon          detach from the terminal, run in the background and log\n"
    "                        to syslog\n"
    "      --pidfile FILE    write the process id to FILE (removed at exit)\n"
    "  -s, --socket PATH     control socket (overrides control_socket; default\n"
    "                        /run/splitnve/tnve-agent.ctl)\n"
    "  -v, --verbose         debug logging (same as --log-level debug)\n"
    "      --log-level LVL   err, warn, info (default) or debug\n"
    "      --syslog          log to syslog instead of stderr\n"
    "      --check-config    parse the configuration, print a summary, exit 0 if valid\n"
    "      --version         print the version and exit\n"
    "  -h, --help            this text\n"
    "\n"
    "Configuration (INI; every key optional unless marked):\n"
    "  libvirt_uri           libvirt connection URI (qemu:///system)\n"
    "  transport             tcp (default) or l2: TLS over TCP, or over the SNCP Layer-2\n"
    "                        channel on an interface (EtherType 0x88B5)\n"
    "  nnve_address          tcp: nNVE host name or address (required)\n"
    "  nnve_port             tcp: nNVE TCP port (8394)\n"
    "  l2_interface          l2: the interface towards the nNVE (default: uplink)\n"
    "  nnve_mac              l2: the nNVE's MAC address (default: found by discovery)\n"
    "  l2_vlan               l2: VLAN ID the channel runs in (0: untagged, default)\n"
    "  l2_ethertype          l2: the channel's EtherType (0x88B5)\n"
    "  l2_discovery_mac      l2: group address of discovery (03:53:4e:43:50:01)\n"
    "  nnve_name             l2: accept only the nNVE advertising this name (any)\n"
    "  connect_timeout       limit of one connection attempt up to the accepted HELLO (15s)\n"
    "  hello_timeout         once TCP is up: limit of the TLS handshake, then of the HELLO\n"
    "                        answer; a silent nNVE fails over after it (4s)\n"
    "  cert, key, ca         PEM files: our certificate, its key, the CA (required)\n"
    "  nnve_identity         the nNVE certificate identity to insist on (required)\n"
    "  crl                   PEM file of CRLs checked at every handshake (re-read on\n"
    "                        SIGHUP; a revoked nNVE certificate ends the session)\n"
    "  node_id               NODE_ID sent in HELLO (the host name)\n"
    "  uplink                uplink interface: its MAC goes into HELLO; the dataplane\n"
    "                        carries tags on it\n"
    "  bridge                VLAN-aware bridge for the linux dataplane (the port's master)\n"
    "  dataplane             none (log only, default) or linux\n"
    "  state_dir             where the last known tags are kept (/var/lib/splitnve)\n"
    "  control_socket        control socket path\n"
    "  associate_on_define   associate defined, shut-off domains ahead of start (no)\n"
    "  hook_timeout          how long the hook waits for the nNVE (10s)\n"
    "  keepalive             SNCP keepalive interval (10s)\n"
    "  libvirt_keepalive     libvirt keepalive interval, 3 misses allowed (5s)\n"
    "  retry_min, retry_max  backoff bounds for every retry (500ms, 30s)\n"
    "  request_timeout       SNCP request timeout (10s)\n"
    "  address_poll_interval how often running domains' IP addresses are read (30s; 0 off)\n"
    "  address_sources       lease, arp, agent (comma separated; lease,arp)\n"
    "  [map NAME]            a VN mapping rule: network = / portgroup = / bridge = (all\n"
    "                        given must match) and vn_id = and/or vn_name =; mode =\n"
    "                        gives the VN's mode on a dual-homed host\n"
    "Dual-homed host (a pair of top-of-rack switches, RFC 8394 Req-3/Req-4):\n"
    "  [nnve NAME]           one section per nNVE, in preference order, instead of the\n"
    "                        single-nNVE keys: transport, nnve_address, nnve_port,\n"
    "                        l2_interface, nnve_mac, l2_vlan, l2_ethertype,\n"
    "                        l2_discovery_mac, nnve_name, nnve_identity (required)\n"
    "                        and uplink: the interface cabled to that switch (e.g. a\n"
    "                        slave of an active-backup bond); in every section or none\n"
    "  mode                  active-standby (default: the active nNVE, the first one\n"
    "                        up, serves the VN; the next takes over when its session\n"
    "                        fails; no automatic failback) or active-active (every nNVE\n"
    "                        serves it); per VN with mode = in its [map] section.  With\n"
    "                        uplink set, the active nNVE is the one whose uplink carries\n"
    "                        the traffic (the bond's active slave, or the link that is\n"
    "                        up) while its session is up, with failback\n"
    "Durations take ms, s, m, h suffixes; a plain number is seconds.\n"
    "\n"
    "VN of a vNIC: the domain <metadata> element in namespace urn:splitnve:vn:1, e.g.\n"
    "  virsh metadata DOM --uri urn:splitnve:vn:1 --key splitnve --config --live \\\n"
    "    --set '<vnics><vnic mac=\"52:54:00:00:00:01\" vn-id=\"5000\" vn-name=\"blue\"/></vnics>'\n"
    "else the first matching [map] rule; a vNIC with neither is left alone.\n"
    "\n"
    "Signals: SIGTERM/SIGINT shut down cleanly (the nNVE keeps the state for its hold time);\n"
    "SIGHUP re-reads the mapping rules, associate_on_define and the TLS files.\n"
    "Inspect with tnvectl(8): tnvectl show domains|tsis|session|counters, tnvectl resync.\n";

struct main_state {
    struct tnve_agent *agent;
    uv_signal_t sig_term, sig_int, sig_hup;
    int stopping;
};

static void stop_all(struct main_state *m)
{
    if (m->stopping)
        return;
    m->stopping = 1;
    tnve_agent_destroy(m->agent);
    m->agent = NULL;
    uv_close((uv_handle_t *)&m->sig_term, NULL);
    uv_close((uv_handle_t *)&m->sig_int, NULL);
    uv_close((uv_handle_t *)&m->sig_hup, NULL);
    tnve_virt_loop_uninit();
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct main_state *m = h->data;
    if (signum == SIGHUP) {
        SNV_INFO("main", "SIGHUP: reloading");
        if (m->agent)
            tnve_agent_reload(m->agent);
        return;
    }
    SNV_INFO("main", "signal %s: shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    stop_all(m);
}

int main(int argc, char **argv)
{
    enum { OPT_PIDFILE = 256, OPT_LOGLEVEL, OPT_SYSLOG, OPT_CHECK, OPT_VERSION };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"foreground", no_argument, NULL, 'f'},
        {"daemon", no_argument, NULL, 'd'},
        {"pidfile", required_argument, NULL, OPT_PIDFILE},
        {"socket", required_argument, NULL, 's'},
        {"verbose", no_argument, NULL, 'v'},
        {"log-level", required_argument, NULL, OPT_LOGLEVEL},
        {"syslog", no_argument, NULL, OPT_SYSLOG},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = DEFAULT_CONFIG, *pidfile = NULL, *socket_path = NULL;
    int daemonize = 0, use_syslog = 0, check_only = 0, config_given = 0;
    enum snv_log_level level = SNV_LOG_INFO;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:fds:vh", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            config_given = 1;
            break;
        case 'f':
            daemonize = 0;
            break;
        case 'd':
            daemonize = 1;
            break;
        case OPT_PIDFILE:
            pidfile = optarg;
            break;
        case 's':
            socket_path = optarg;
            break;
        case 'v':
            level = SNV_LOG_DEBUG;
            break;
        case OPT_LOGLEVEL:
            if (snv_log_level_parse(optarg, &level) < 0) {
                fprintf(stderr, "tnve-agent: invalid log level '%s'\n", optarg);
                return 2;
            }
            break;
        case OPT_SYSLOG:
            use_syslog = 1;
            break;
        case OPT_CHECK:
            check_only = 1;
            break;
        case OPT_VERSION:
            printf("tnve-agent %s\n", SPLITNVE_VERSION);
            return 0;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        default:
            fprintf(stderr, "tnve-agent: try --help\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tnve-agent: unexpected argument '%s' (try --help)\n", argv[optind]);
        return 2;
    }
    snv_log_open("tnve-agent", use_syslog ? SNV_LOG_SYSLOG : SNV_LOG_STDERR);
    snv_log_set_level(level);

    struct tnve_config *cfg = malloc(sizeof *cfg);
    if (!cfg) {
        fprintf(stderr, "tnve-agent: out of memory\n");
        return 1;
    }
    tnve_config_defaults(cfg);
    char err[512];
    int rc = tnve_config_load(config_path, cfg, err, sizeof err);
    if (rc == -ENOENT && !config_given) {
        rc = 0; /* no default file: command line and defaults only */
        config_path = NULL;
    }
    if (rc == 0 && socket_path) {
        int n = snprintf(cfg->control_socket, sizeof cfg->control_socket, "%s", socket_path);
        if (n < 0 || (size_t)n >= sizeof cfg->control_socket) {
            snprintf(err, sizeof err, "socket path too long");
            rc = -ENAMETOOLONG;
        }
    }
    int invalid = 0; /* keys that do not fit together: name the file they came from */
    if (rc == 0 && tnve_config_validate(cfg, err, sizeof err) < 0) {
        invalid = 1;
        rc = SNCP_E_CONFIG;
    }
    if (rc < 0) {
        if (invalid)
            fprintf(stderr, "tnve-agent: %s: %s\n", config_path ? config_path : "(defaults)", err);
        else
            fprintf(stderr, "tnve-agent: %s\n", err);
        free(cfg);
        return 1;
    }
    if (check_only) {
        printf("configuration OK: %s\n", config_path ? config_path : "(defaults)");
        const struct tnve_config_nnve *list = cfg->nnves;
        struct tnve_config_nnve single;
        unsigned n_nnves = cfg->n_nnves;
        if (!n_nnves) {
            tnve_config_single_nnve(cfg, &single);
            list = &single;
            n_nnves = 1;
        }
        for (unsigned i = 0; i < n_nnves; i++) {
            const struct tnve_config_nnve *e = &list[i];
            if (n_nnves > 1)
                printf("  [nnve %s] identity=%s preference=%u uplink=%s\n", e->name,
                       e->nnve_identity, i, e->uplink[0] ? e->uplink : "-");
            if (e->transport == TNVE_TRANSPORT_L2) {
                char mac[SNCP_MAC_STRLEN] = "(discovery)", group[SNCP_MAC_STRLEN];
                if (e->nnve_mac_set)
                    sncp_mac_format(e->nnve_mac, mac, sizeof mac);
                sncp_mac_format(e->l2_discovery_mac, group, sizeof group);
                printf("  transport=l2 l2_interface=%s nnve_mac=%s l2_vlan=%u "
                       "l2_ethertype=0x%04x\n",
                       tnve_config_nnve_l2_interface(cfg, e), mac, e->l2_vlan, e->l2_ethertype);
                printf("  l2_discovery_mac=%s nnve_name=%s\n", group,
                       e->nnve_name[0] ? e->nnve_name : "(any)");
            } else {
                printf("  transport=tcp nnve=%s:%u\n", e->nnve_address, e->nnve_port);
            }
        }
        if (n_nnves > 1)
            printf("  mode=%s (per VN: [map] mode)\n", tnve_mode_name(cfg->mode));
        printf("  libvirt_uri=%s identity=%s node_id=%s connect_timeout=%ums hello_timeout=%ums\n",
               cfg->libvirt_uri, cfg->nnve_identity[0] ? cfg->nnve_identity : "(any)", cfg->node_id,
               cfg->connect_timeout_ms, cfg->hello_timeout_ms);
        printf("  dataplane=%s uplink=%s state_dir=%s control_socket=%s\n", cfg->dataplane,
               cfg->uplink[0] ? cfg->uplink : "-", cfg->state_dir, cfg->control_socket);
        printf("  associate_on_define=%s hook_timeout=%ums retry=%u..%ums rules=%u\n",
               cfg->associate_on_define ? "yes" : "no", cfg->hook_timeout_ms, cfg->retry_min_ms,
               cfg->retry_max_ms, cfg->n_rules);
        for (unsigned i = 0; i < cfg->n_rules; i++) {
            char vn[TNVE_VN_STRLEN];
            tnve_vn_format(&cfg->rules[i].vn, vn, sizeof vn);
            printf("  [map %s] network=%s portgroup=%s bridge=%s -> vn %s%s%s\n",
                   cfg->rules[i].name, cfg->rules[i].network[0] ? cfg->rules[i].network : "*",
                   cfg->rules[i].portgroup[0] ? cfg->rules[i].portgroup : "*",
                   cfg->rules[i].bridge[0] ? cfg->rules[i].bridge : "*", vn,
                   cfg->rules[i].mode ? " mode=" : "",
                   cfg->rules[i].mode ? tnve_mode_name(cfg->rules[i].mode) : "");
        }
        free(cfg);
        return 0;
    }
    if (daemonize && daemon(0, 0) != 0) {
        fprintf(stderr, "tnve-agent: cannot daemonize: %s\n", strerror(errno));
        free(cfg);
        return 1;
    }
    /* stderr is /dev/null once detached: keep the log lines. */
    if (daemonize)
        snv_log_open("tnve-agent", SNV_LOG_SYSLOG);
    int pr = pidfile ? snv_file_write_pidfile(pidfile) : 0;
    if (pr < 0)
        SNV_WARN("main", "cannot write pidfile path=%s err=%s", pidfile, strerror(-pr));
    signal(SIGPIPE, SIG_IGN);
    xmlInitParser();

    uv_loop_t loop;
    uv_loop_init(&loop);
    tnve_virt_loop_init(&loop);
    struct main_state m;
    memset(&m, 0, sizeof m);
    uv_signal_init(&loop, &m.sig_term);
    uv_signal_init(&loop, &m.sig_int);
    uv_signal_init(&loop, &m.sig_hup);
    m.sig_term.data = m.sig_int.data = m.sig_hup.data = &m;
    uv_signal_start(&m.sig_term, on_signal, SIGTERM);
    uv_signal_start(&m.sig_int, on_signal, SIGINT);
    uv_signal_start(&m.sig_hup, on_signal, SIGHUP);

    int status = 0;
    rc = tnve_agent_create(&loop, cfg, config_path, &m.agent, err, sizeof err);
    if (rc < 0) {
        SNV_ERR("main", "cannot start: %s", err);
        status = 1;
        stop_all(&m);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    int close_rc = uv_loop_close(&loop);
    if (close_rc != 0) {
        SNV_ERR("main", "event loop did not close cleanly: %s", uv_strerror(close_rc));
        status = 1;
    }
    xmlCleanupParser();
    if (pidfile && pr == 0) /* never remove what another wrote */
        unlink(pidfile);
    SNV_INFO("main", "exit status=%d", status);
    return status;
}
