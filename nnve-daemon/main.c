/* main.c: nnve-daemon, the switch-side (nNVE) control plane of splitnve (RFC 8394).
 * Flat: options, config, modules, run, tear down. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "backend-provider.h"
#include "config.h"
#include "ctl.h"
#include "pair.h"
#include "server.h"
#include "snv-file.h"
#include "snv-log.h"
#include "state.h"
#include "store.h"

static const char usage_text[] =
    "NAME\n"
    "    nnve-daemon - the switch-side (external NVE) control plane of splitnve\n"
    "\n"
    "SYNOPSIS\n"
    "    nnve-daemon [-c FILE] [-f | -d] [--pidfile FILE] [-s SOCKET] [-v] [--log-level LEVEL]\n"
    "                [--syslog] [--check-config] [-h] [--version]\n"
    "\n"
    "DESCRIPTION\n"
    "    nnve-daemon runs on a top-of-rack switch.  It accepts SNCP sessions (TLS 1.3 with\n"
    "    mutual certificate authentication) over TCP (default port 8394) and/or over the\n"
    "    Layer-2 channel on switch ports (EtherType 0x88B5; transport = tcp, l2) from the\n"
    "    tnve-agent of each hypervisor below it, authorizes each hypervisor identity (its "
    "certificate's name)\n"
    "    for ports and VNs from its configuration (default deny), runs the RFC 8394 state\n"
    "    machines (a VAP per significance domain and VN; a TSI instance per vNIC), allocates\n"
    "    a local VLAN tag per domain and VN, keeps its state in an SQLite database across\n"
    "    restarts, and hands every change to a dataplane backend.  After a session is lost,\n"
    "    the hypervisor's state is held for hold_time; a reconnecting agent re-synchronizes.\n"
    "    The control socket serves nnvectl(8).\n"
    "\n"
    "OPTIONS\n"
    "    -c, --config FILE     configuration file (default " NNVE_DEFAULT_CONFIG ")\n"
    "    -f, --foreground      stay in the foreground, log to stderr (the default)\n"
    "    -d, --daemon          detach and log to syslog\n"
    "        --pidfile FILE    write the process ID to FILE\n"
    "    -s, --socket SOCKET   control socket (overrides control_socket)\n"
    "    -v, --verbose         log level debug\n"
    "        --log-level LEVEL err, warn, info or debug (overrides log_level; default info)\n"
    "        --syslog          log to syslog instead of stderr\n"
    "        --check-config    read and validate the configuration, print a summary, exit\n"
    "    -h, --help            this text\n"
    "        --version         print the version\n"
    "\n"
    "SIGNALS\n"
    "    SIGTERM, SIGINT   orderly shutdown: sessions closed, state committed, everything\n"
    "                      freed (the hypervisors' state stays in the database)\n"
    "    SIGHUP            reload the configuration: authorization policy, limits, timers\n"
    "                      and tag pools, and the TLS certificate files and CRL; sessions\n"
    "                      stay up, except those whose identity is no longer authorized or\n"
    "                      whose certificate the CRL now revokes.  transport, listen,\n"
    "                      hello_timeout, max_hello_pending*, the l2_* keys, state_dir,\n"
    "                      backend, the [linux] section\n"
    "                      and control_socket need a restart (a changed transport, backend\n"
    "                      or [linux] section is logged and the running settings stay in\n"
    "                      force).\n"
    "\n"
    "FILES\n"
    "    " NNVE_DEFAULT_CONFIG "   configuration (INI; see the commented sample)\n"
    "    " NNVE_DEFAULT_STATE_DIR "/nnve-daemon.db   persistent state (state_dir)\n"
    "    " NNVE_DEFAULT_CTL "   control socket\n"
    "    metrics_file      Prometheus textfile for node_exporter, if configured\n"
    "    audit_file        audit lines (state changes, authentication), if configured\n"
    "\n"
    "EXIT STATUS\n"
    "    0 clean shutdown or valid configuration; 1 configuration error; 2 usage error;\n"
    "    3 start-up failure (TLS files, listen address, L2 socket permission, state\n"
    "    database, control socket);\n"
    "    4 the event loop did not close cleanly at shutdown.\n";

struct daemon_ctx {
    uv_loop_t loop;
    const char *config_path;
    struct nnve_config *cfg;
    struct sncp_tls_ctx *tls;
    struct nnve_backend *be;
    struct nnve_store *store;
    struct nnve_state *state;
    struct nnve_server *srv;
    struct nnve_pair *pair;
    struct snv_ctl_server *ctl;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t metrics;
    int metrics_on;
    int log_override;
    const char *socket_override;
    char vtep[64]; /* the local VTEP address (linux backend's local_ip), "" when none */
};

static int mappings_write(FILE *f, void *aux)
{
    json_t *m = aux;
    return json_dumpf(m, f, JSON_INDENT(1)) < 0 || fputc('\n', f) == EOF ? -EIO : 0;
}

/* The metrics file and the NVE-to-NVE mapping table (mappings_file), when configured. */
static void write_metrics(struct daemon_ctx *d)
{
    int r = d->cfg->metrics_file ? nnve_server_write_metrics(d->srv, d->cfg->metrics_file) : 0;
    if (r < 0)
        SNV_WARN("metrics", "cannot write file=%s err=%s", d->cfg->metrics_file, sncp_strerror(r));
    if (!d->cfg->mappings_file)
        return;
    json_t *m = nnve_state_show_mappings(d->state, d->vtep);
    r = m ? snv_file_write_atomic(d->cfg->mappings_file, 0644, mappings_write, m) : -ENOMEM;
    json_decref(m);
    if (r < 0)
        SNV_WARN("metrics", "cannot write file=%s err=%s", d->cfg->mappings_file, sncp_strerror(r));
}

static void on_metrics(uv_timer_t *t)
{
    write_metrics(t->data);
}

static void on_stop(uv_signal_t *h, int signum)
{
    struct daemon_ctx *d = h->data;
    snv_audit("daemon", "shutting down signal=%s", strsignal(signum));
    write_metrics(d);
    uv_stop(&d->loop);
}

static void on_hup(uv_signal_t *h, int signum)
{
    (void)signum;
    struct daemon_ctx *d = h->data;
    struct nnve_config *ncfg;
    char err[512];
    if (nnve_config_load(d->config_path, &ncfg, err, sizeof err)) {
        SNV_ERR("daemon", "reload failed, keeping the running configuration: %s", err);
        return;
    }
    if (nnve_state_reconfigure(d->state, ncfg, uv_now(&d->loop))) {
        SNV_ERR("daemon", "reload failed: cannot rebuild the tag pools");
        nnve_config_destroy(ncfg);
        return;
    }
    /* The dataplane backend is opened once: its settings apply at the next start. */
    if (strcmp(ncfg->backend, d->cfg->backend))
        SNV_WARN("daemon", "backend changed from %s to %s: restart nnve-daemon to apply",
                 d->cfg->backend, ncfg->backend);
    if (!nnve_config_linux_equal(ncfg, d->cfg)) {
        if (!strcmp(d->cfg->backend, "linux"))
            SNV_WARN("daemon", "[linux] settings changed: restart nnve-daemon to apply them; "
                               "the running ones stay in force");
        nnve_config_linux_swap(ncfg, d->cfg);
    }
    if (!nnve_config_pair_equal(ncfg, d->cfg))
        SNV_WARN("daemon", "[pair] settings changed: restart nnve-daemon to apply them; "
                           "the running ones stay in force");
    nnve_server_reconfigure(d->srv, ncfg);
    /* The CRL is re-read with the other TLS files; sessions of peers it now revokes end. */
    if (sncp_tls_ctx_set_crl(d->tls, ncfg->crl, err, sizeof err))
        SNV_ERR("daemon", "TLS files not reloaded, keeping the running ones: %s", err);
    else
        nnve_server_tls_reloaded(d->srv);
    if (!d->log_override && ncfg->log_level >= 0)
        snv_log_set_level((enum snv_log_level)ncfg->log_level);
    /* Reopened at every reload, so that a rotated audit file is followed. */
    int ar = snv_audit_file_open(ncfg->audit_file);
    if (ar < 0)
        SNV_ERR("daemon", "cannot open audit_file=%s, keeping the previous one: %s",
                ncfg->audit_file, strerror(-ar));
    nnve_config_destroy(d->cfg);
    d->cfg = ncfg;
    snv_audit("daemon", "configuration reloaded file=%s hypervisors=%u domains=%u", d->config_path,
              ncfg->n_hvs, ncfg->n_domains);
}

static int daemonize(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid > 0)
        _exit(0);
    if (setsid() < 0)
        return -errno;
    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid > 0)
        _exit(0);
    if (chdir("/") < 0)
        return -errno;
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2)
            close(fd);
    }
    return 0;
}

static const char *transports_text(unsigned t)
{
    if (t == (NNVE_TRANSPORT_TCP | NNVE_TRANSPORT_L2))
        return "tcp,l2";
    return t == NNVE_TRANSPORT_L2 ? "l2" : "tcp";
}

static void on_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    SNV_ERR("daemon", "handle left open at shutdown type=%s active=%d",
            uv_handle_type_name(uv_handle_get_type(h)), uv_is_active(h));
}

static void on_signal_closed(uv_handle_t *h)
{
    (void)h;
}

int main(int argc, char **argv)
{
    enum { OPT_PIDFILE = 256, OPT_LOG_LEVEL, OPT_SYSLOG, OPT_CHECK, OPT_VERSION };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"foreground", no_argument, NULL, 'f'},
        {"daemon", no_argument, NULL, 'd'},
        {"pidfile", required_argument, NULL, OPT_PIDFILE},
        {"socket", required_argument, NULL, 's'},
        {"verbose", no_argument, NULL, 'v'},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"syslog", no_argument, NULL, OPT_SYSLOG},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    struct daemon_ctx d;
    memset(&d, 0, sizeof d);
    d.config_path = NNVE_DEFAULT_CONFIG;
    const char *pidfile = NULL;
    int detach = 0, use_syslog = 0, check = 0, opt;
    enum snv_log_level level = SNV_LOG_INFO;
    while ((opt = getopt_long(argc, argv, "c:fds:vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            d.config_path = optarg;
            break;
        case 'f':
            detach = 0;
            break;
        case 'd':
            detach = 1;
            break;
        case OPT_PIDFILE:
            pidfile = optarg;
            break;
        case 's':
            d.socket_override = optarg;
            break;
        case 'v':
            level = SNV_LOG_DEBUG;
            d.log_override = 1;
            break;
        case OPT_LOG_LEVEL:
            if (snv_log_level_parse(optarg, &level)) {
                fprintf(stderr, "nnve-daemon: unknown log level \"%s\"\n", optarg);
                return 2;
            }
            d.log_override = 1;
            break;
        case OPT_SYSLOG:
            use_syslog = 1;
            break;
        case OPT_CHECK:
            check = 1;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case OPT_VERSION:
            printf("nnve-daemon %s\n", SPLITNVE_VERSION);
            return 0;
        default:
            fprintf(stderr, "Try 'nnve-daemon --help'.\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "nnve-daemon: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }

    char err[512];
    if (nnve_config_load(d.config_path, &d.cfg, err, sizeof err)) {
        fprintf(stderr, "nnve-daemon: %s\n", err);
        return 1;
    }
    if (check) {
        printf("%s: OK: transport %s, %u listen address(es), %u L2 interface(s), %u domain(s), "
               "%u hypervisor(s), %u VN(s), backend %s\n",
               d.config_path, transports_text(d.cfg->transports), d.cfg->n_listen,
               d.cfg->n_l2_interfaces, d.cfg->n_domains, d.cfg->n_hvs, d.cfg->n_vns,
               d.cfg->backend);
        const struct nnve_linux_config *lc = &d.cfg->linux_cfg;
        if (!strcmp(d.cfg->backend, "linux"))
            printf("linux: bridge=%s vxlan_mode=%s vxlan_device=%s local_ip=%s vxlan_port=%u "
                   "remote_vteps=%s anti_spoofing=%s\n",
                   lc->bridge, lc->vxlan_mode == NNVE_LINUX_VXLAN_PER_VNI ? "per-vni" : "external",
                   lc->vxlan_device, lc->local_ip ? lc->local_ip : "none", lc->vxlan_port,
                   lc->remote_vteps, nnve_linux_anti_spoofing_name(lc->anti_spoofing));
        nnve_config_destroy(d.cfg);
        return 0;
    }
    snv_log_open("nnve-daemon", use_syslog || detach ? SNV_LOG_SYSLOG : SNV_LOG_STDERR);
    if (!d.log_override && d.cfg->log_level >= 0)
        level = (enum snv_log_level)d.cfg->log_level;
    snv_log_set_level(level);
    if (detach && daemonize() < 0) {
        SNV_ERR("daemon", "cannot detach: %s", strerror(errno));
        nnve_config_destroy(d.cfg);
        return 3;
    }
    int pr = pidfile ? snv_file_write_pidfile(pidfile) : 0;
    if (pr < 0)
        SNV_WARN("daemon", "cannot write pidfile=%s: %s", pidfile, strerror(-pr));
    int ar = d.cfg->audit_file ? snv_audit_file_open(d.cfg->audit_file) : 0;
    if (ar < 0) {
        SNV_ERR("daemon", "cannot open audit_file=%s: %s", d.cfg->audit_file, strerror(-ar));
        if (pidfile && pr == 0)
            unlink(pidfile);
        nnve_config_destroy(d.cfg);
        return 3;
    }

    int status = 3;
    uv_loop_init(&d.loop);
    if (mkdir(d.cfg->state_dir, 0750) < 0 && errno != EEXIST) {
        SNV_ERR("daemon", "cannot create state_dir=%s: %s", d.cfg->state_dir, strerror(errno));
        goto out;
    }
    d.tls =
        sncp_tls_ctx_create(SNCP_TLS_SERVER, d.cfg->cert, d.cfg->key, d.cfg->ca, err, sizeof err);
    if (!d.tls || (d.cfg->crl && sncp_tls_ctx_set_crl(d.tls, d.cfg->crl, err, sizeof err))) {
        SNV_ERR("daemon", "TLS: %s", err);
        goto out;
    }
    struct nnve_linux_config lc = d.cfg->linux_cfg;
    lc.state_dir = d.cfg->state_dir;
    struct nnve_backend_config bc = {
        .journal = d.cfg->dataplane_journal, .fdb_file = d.cfg->fdb_file, .linux_cfg = &lc};
    int r = nnve_backend_open(d.cfg->backend, &bc, &d.be);
    if (r < 0) {
        SNV_ERR("daemon", "cannot open backend=%s: %s", d.cfg->backend, sncp_strerror(r));
        goto out;
    }
    if (nnve_store_open(d.cfg->state_dir, d.cfg->sync, &d.store, err, sizeof err)) {
        SNV_ERR("daemon", "state database: %s", err);
        goto out;
    }
    if (nnve_state_create(d.cfg, d.be, d.store, uv_now(&d.loop), &d.state, err, sizeof err)) {
        SNV_ERR("daemon", "state: %s", err);
        goto out;
    }
    nnve_store_commit(d.store);
    if (nnve_server_create(&d.loop, d.cfg, d.tls, d.state, d.store, d.be, &d.srv, err,
                           sizeof err)) {
        SNV_ERR("daemon", "%s", err);
        goto out;
    }
    if (nnve_pair_create(&d.loop, d.cfg, d.state, d.store, &d.pair, err, sizeof err)) {
        SNV_ERR("daemon", "%s", err);
        goto out;
    }
    nnve_server_set_pair(d.srv, d.pair);
    const char *sock = d.socket_override ? d.socket_override : d.cfg->control_socket;
    r = snv_ctl_server_create(&d.loop, sock, &d.ctl);
    if (r < 0 || nnve_ctl_register(d.ctl, d.state, d.srv, &d.loop) < 0) {
        SNV_ERR("daemon", "control socket %s: %s", sock, sncp_strerror(r));
        goto out;
    }
    /* [linux] changes only with a restart: the address the mappings report stays right */
    if (!strcmp(d.cfg->backend, "linux") && d.cfg->linux_cfg.local_ip)
        snprintf(d.vtep, sizeof d.vtep, "%s", d.cfg->linux_cfg.local_ip);
    nnve_ctl_set_vtep(d.vtep);
    uv_signal_init(&d.loop, &d.sigterm);
    uv_signal_init(&d.loop, &d.sigint);
    uv_signal_init(&d.loop, &d.sighup);
    d.sigterm.data = d.sigint.data = d.sighup.data = &d;
    uv_signal_start(&d.sigterm, on_stop, SIGTERM);
    uv_signal_start(&d.sigint, on_stop, SIGINT);
    uv_signal_start(&d.sighup, on_hup, SIGHUP);
    uv_timer_init(&d.loop, &d.metrics);
    d.metrics.data = &d;
    uv_timer_start(&d.metrics, on_metrics, d.cfg->metrics_interval_ms, d.cfg->metrics_interval_ms);
    d.metrics_on = 1;
    write_metrics(&d);
    snv_audit("daemon", "started version=%s config=%s transport=%s port=%u backend=%s",
              SPLITNVE_VERSION, d.config_path, transports_text(d.cfg->transports),
              nnve_server_port(d.srv), d.cfg->backend);

    uv_run(&d.loop, UV_RUN_DEFAULT);
    status = 0;

out:
    nnve_server_shutdown(d.srv);
    snv_ctl_server_destroy(d.ctl);
    if (d.metrics_on) {
        uv_timer_stop(&d.metrics);
        uv_close((uv_handle_t *)&d.metrics, on_signal_closed);
        uv_close((uv_handle_t *)&d.sigterm, on_signal_closed);
        uv_close((uv_handle_t *)&d.sigint, on_signal_closed);
        uv_close((uv_handle_t *)&d.sighup, on_signal_closed);
    }
    uv_run(&d.loop, UV_RUN_DEFAULT); /* sessions close, handles finish */
    nnve_store_commit(d.store);
    nnve_server_destroy(d.srv);
    nnve_pair_destroy(d.pair);
    nnve_state_destroy(d.state);
    nnve_store_close(d.store);
    nnve_backend_close(d.be);
    sncp_tls_ctx_destroy(d.tls);
    if (uv_loop_close(&d.loop) != 0) {
        uv_walk(&d.loop, on_walk, NULL);
        SNV_ERR("daemon", "event loop did not close cleanly");
        status = 4;
    }
    if (pidfile && pr == 0) /* never remove what another wrote */
        unlink(pidfile);
    if (!status)
        snv_audit("daemon", "stopped");
    snv_audit_file_open(NULL);
    nnve_config_destroy(d.cfg);
    return status;
}
