/* agent.c: wires the agent's modules together on one loop (see agent.h). */
#include "agent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "ctl.h"
#include "sncp-error.h"
#include "snv-log.h"

/* ---------------------------------------------------------------- reconciler plumbing */

static void run_rec(struct tnve_agent *a);

static void timer_cb(uv_timer_t *t)
{
    run_rec(t->data);
}

static void run_rec(struct tnve_agent *a)
{
    if (a->destroying)
        return;
    uint64_t now = uv_now(a->loop);
    uint64_t next = tnve_rec_run(a->rec, now);
    if (a->virt)
        tnve_virt_kick(a->virt);
    uv_timer_stop(&a->timer);
    if (next != UINT64_MAX)
        uv_timer_start(&a->timer, timer_cb, next > now ? next - now : 1, 0);
}

static void wake_cb(uv_idle_t *h)
{
    struct tnve_agent *a = h->data;
    uv_idle_stop(h);
    run_rec(a);
}

static void op_wake(void *aux)
{
    struct tnve_agent *a = aux;
    if (!a->destroying)
        uv_idle_start(&a->wake, wake_cb);
}

static int64_t op_send(void *aux, struct sncp_msg *msg, uint64_t cookie)
{
    struct tnve_agent *a = aux;
    if (!a->nnve)
        return SNCP_E_NOT_ESTABLISHED;
    int64_t x = tnve_nnve_send(a->nnve, msg, cookie);
    if (x > 0) {
        unsigned slot = (unsigned)(cookie % TNVE_AGENT_RTT_SLOTS);
        a->rtt[slot].cookie = cookie;
        a->rtt[slot].sent_ns = uv_hrtime();
    }
    return x;
}

static int op_respond(void *aux, const struct sncp_msg *req, struct sncp_msg *rsp)
{
    struct tnve_agent *a = aux;
    return a->nnve ? tnve_nnve_respond(a->nnve, req, rsp) : SNCP_E_NOT_ESTABLISHED;
}

static void op_refresh(void *aux, const uint8_t uuid[16])
{
    struct tnve_agent *a = aux;
    if (a->virt)
        tnve_virt_refresh_domain(a->virt, uuid);
}

static void op_acked(void *aux, uint64_t stamp)
{
    struct tnve_agent *a = aux;
    uint64_t now = uv_hrtime();
    if (now >= stamp)
        tnve_lat_add_ns(&a->lat_total, now - stamp);
}

static void nnve_up(void *aux)
{
    struct tnve_agent *a = aux;
    tnve_rec_set_peer_caps(a->rec, tnve_nnve_peer_caps(a->nnve));
    tnve_rec_session_up(a->rec, uv_now(a->loop));
}

static void nnve_down(void *aux)
{
    struct tnve_agent *a = aux;
    tnve_rec_session_down(a->rec, uv_now(a->loop));
}

static void nnve_request(void *aux, const struct sncp_msg *req)
{
    struct tnve_agent *a = aux;
    tnve_rec_request(a->rec, req, uv_now(a->loop));
}

static void nnve_response(void *aux, uint64_t cookie, const struct sncp_msg *rsp, int err)
{
    struct tnve_agent *a = aux;
    unsigned slot = (unsigned)(cookie % TNVE_AGENT_RTT_SLOTS);
    if (a->rtt[slot].cookie == cookie && !err) {
        tnve_lat_add_ns(&a->lat_nnve, uv_hrtime() - a->rtt[slot].sent_ns);
        a->rtt[slot].cookie = 0;
    }
    tnve_rec_response(a->rec, cookie, rsp, err, uv_now(a->loop));
}

/* ---------------------------------------------------------------- create / destroy */

static int make_dirs(const char *path)
{
    char buf[TNVE_CONFIG_STR];
    int n = snprintf(buf, sizeof buf, "%s", path);
    if (n < 0 || (size_t)n >= sizeof buf)
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static void handle_closed(uv_handle_t *h)
{
    struct tnve_agent *a = h->data;
    if (--a->handles_open > 0)
        return;
    free(a->config_path);
    free(a->cfg);
    tnve_lat_uninit(&a->lat_total);
    tnve_lat_uninit(&a->lat_libvirt);
    tnve_lat_uninit(&a->lat_hop);
    tnve_lat_uninit(&a->lat_nnve);
    free(a);
}

int tnve_agent_create(uv_loop_t *loop, struct tnve_config *cfg, const char *config_path,
                      struct tnve_agent **out, char *err, size_t errlen)
{
    struct tnve_agent *a = calloc(1, sizeof *a);
    if (!a) {
        free(cfg);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    a->loop = loop;
    a->cfg = cfg;
    a->config_path = config_path ? strdup(config_path) : NULL;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    a->epoch = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    uv_idle_init(loop, &a->wake);
    uv_timer_init(loop, &a->timer);
    a->wake.data = a->timer.data = a;
    a->handles_open = 2;
    *out = a;

    int rc = make_dirs(cfg->state_dir);
    if (rc < 0) {
        snprintf(err, errlen, "state_dir %s: %s", cfg->state_dir, strerror(-rc));
        return rc;
    }
    snprintf(a->state_file, sizeof a->state_file, "%s/tnve-agent.tags", cfg->state_dir);
    snprintf(a->dp_state_file, sizeof a->dp_state_file, "%s/tnve-agent.ports", cfg->state_dir);

    a->dp_class = tnve_dp_class_find(cfg->dataplane);
    if (!a->dp_class) {
        snprintf(err, errlen, "unknown dataplane '%s'", cfg->dataplane);
        return SNCP_E_CONFIG;
    }
    struct tnve_dp_config dpc = {cfg->uplink, cfg->bridge[0] ? cfg->bridge : NULL};
    rc = a->dp_class->create(&dpc, &a->dp);
    if (rc < 0) {
        snprintf(err, errlen, "dataplane %s: %s", cfg->dataplane, sncp_strerror(rc));
        a->dp = NULL;
        return rc;
    }

    struct tnve_rec_config rc_cfg = {
        .retry_min_ms = cfg->retry_min_ms,
        .retry_max_ms = cfg->retry_max_ms,
        .associate_on_define = cfg->associate_on_define,
        .state_file = a->state_file,
        .dp_state_file = a->dp_state_file,
        .dp_class = a->dp_class,
        .dp = a->dp,
        .seed = (uint32_t)a->epoch | 1,
        .prepare_hold_ms = cfg->hook_timeout_ms * 6,
    };
    static const struct tnve_rec_ops ops = {op_send, op_respond, op_wake, op_refresh, op_acked};
    /* figures only: a series that cannot be allocated records nothing */
    tnve_lat_init(&a->lat_total, TNVE_AGENT_LATENCY_MAX);
    tnve_lat_init(&a->lat_libvirt, TNVE_AGENT_LATENCY_MAX);
    tnve_lat_init(&a->lat_hop, TNVE_AGENT_LATENCY_MAX);
    tnve_lat_init(&a->lat_nnve, TNVE_AGENT_LATENCY_MAX);
    a->rec = tnve_rec_create(&rc_cfg, &ops, a);
    if (!a->rec) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }

    char sockdir[TNVE_CONFIG_STR];
    snprintf(sockdir, sizeof sockdir, "%s", cfg->control_socket);
    char *slash = strrchr(sockdir, '/');
    if (slash && slash != sockdir) {
        *slash = '\0';
        rc = make_dirs(sockdir);
        if (rc < 0) {
            snprintf(err, errlen, "control socket directory %s: %s", sockdir, strerror(-rc));
            return rc;
        }
    }
    rc = snv_ctl_server_create(loop, cfg->control_socket, &a->ctl);
    if (rc < 0) {
        snprintf(err, errlen, "control socket %s: %s", cfg->control_socket, strerror(-rc));
        a->ctl = NULL;
        return rc;
    }
    rc = tnve_ctl_register(a);
    if (rc < 0) {
        snprintf(err, errlen, "control commands: %s", strerror(-rc));
        return rc;
    }

    int l2 = cfg->transport == TNVE_TRANSPORT_L2;
    struct tnve_nnve_config nc = {
        .address = cfg->nnve_address,
        .port = cfg->nnve_port,
        .l2_interface = l2 ? tnve_config_l2_interface(cfg) : NULL,
        .nnve_mac = l2 && cfg->nnve_mac_set ? cfg->nnve_mac : NULL,
        .l2_discovery_mac = cfg->l2_discovery_mac,
        .l2_vlan = cfg->l2_vlan,
        .l2_ethertype = cfg->l2_ethertype,
        .nnve_name = cfg->nnve_name,
        .connect_timeout_ms = cfg->connect_timeout_ms,
        .cert = cfg->cert,
        .key = cfg->key,
        .ca = cfg->ca,
        .crl = cfg->crl,
        .identity = cfg->nnve_identity,
        .node_id = cfg->node_id,
        .uplink = cfg->uplink,
        .keepalive_ms = cfg->keepalive_ms,
        .request_timeout_ms = cfg->request_timeout_ms,
        .retry_min_ms = cfg->retry_min_ms,
        .retry_max_ms = cfg->retry_max_ms,
        .epoch = a->epoch,
    };
    static const struct tnve_nnve_cbs ncbs = {nnve_up, nnve_down, nnve_request, nnve_response};
    rc = tnve_nnve_create(loop, &nc, &ncbs, a, &a->nnve, err, errlen);
    if (rc < 0) {
        a->nnve = NULL;
        return rc;
    }

    struct tnve_virt_config vc = {
        .uri = cfg->libvirt_uri,
        .keepalive_s = cfg->libvirt_keepalive_s,
        .retry_min_ms = cfg->retry_min_ms,
        .retry_max_ms = cfg->retry_max_ms,
        .address_poll_ms = cfg->address_poll_ms,
        .address_sources = cfg->address_sources,
        .rules = cfg->rules,
        .n_rules = cfg->n_rules,
        .lat_libvirt = &a->lat_libvirt,
        .lat_hop = &a->lat_hop,
    };
    rc = tnve_virt_create(loop, &vc, a->rec, &a->virt);
    if (rc < 0) {
        a->virt = NULL;
        snprintf(err, errlen, "libvirt: %s", strerror(-rc));
        return rc;
    }
    char nnve[300];
    if (l2) {
        char mac[SNCP_MAC_STRLEN] = "discovery";
        if (cfg->nnve_mac_set)
            sncp_mac_format(cfg->nnve_mac, mac, sizeof mac);
        snprintf(nnve, sizeof nnve, "%s/%s", tnve_config_l2_interface(cfg), mac);
    } else {
        snprintf(nnve, sizeof nnve, "%s:%u", cfg->nnve_address, cfg->nnve_port);
    }
    SNV_INFO("agent",
             "started node_id=%s transport=%s nnve=%s libvirt=%s dataplane=%s "
             "epoch=%llu",
             cfg->node_id, tnve_transport_name(cfg->transport), nnve, cfg->libvirt_uri,
             cfg->dataplane, (unsigned long long)a->epoch);
    return 0;
}

void tnve_agent_destroy(struct tnve_agent *a)
{
    if (!a || a->destroying)
        return;
    a->destroying = 1;
    SNV_INFO("agent", "shutting down");
    tnve_virt_destroy(a->virt);
    a->virt = NULL;
    tnve_nnve_destroy(a->nnve);
    a->nnve = NULL;
    tnve_rec_destroy(a->rec); /* answers pending hook requests before the ctl server goes */
    a->rec = NULL;
    snv_ctl_server_destroy(a->ctl);
    a->ctl = NULL;
    if (a->dp_class && a->dp)
        a->dp_class->destroy(a->dp);
    a->dp = NULL;
    uv_close((uv_handle_t *)&a->wake, handle_closed);
    uv_close((uv_handle_t *)&a->timer, handle_closed);
}

int tnve_agent_reload(struct tnve_agent *a)
{
    if (!a->config_path) {
        SNV_INFO("agent", "reload: no config file");
        return 0;
    }
    struct tnve_config *c = malloc(sizeof *c);
    if (!c)
        return -ENOMEM;
    tnve_config_defaults(c);
    char err[512];
    int rc = tnve_config_load(a->config_path, c, err, sizeof err);
    if (rc < 0) {
        SNV_ERR("agent", "reload failed, keeping the old configuration: %s", err);
        free(c);
        return rc;
    }
    a->reloads++;
    const struct tnve_config *o = a->cfg;
    int transport_changed =
        c->transport != o->transport || strcmp(c->l2_interface, o->l2_interface) ||
        c->nnve_mac_set != o->nnve_mac_set || memcmp(c->nnve_mac, o->nnve_mac, 6) ||
        c->l2_vlan != o->l2_vlan || c->l2_ethertype != o->l2_ethertype ||
        memcmp(c->l2_discovery_mac, o->l2_discovery_mac, 6) || strcmp(c->nnve_name, o->nnve_name) ||
        c->connect_timeout_ms != o->connect_timeout_ms;
    if (transport_changed || strcmp(c->libvirt_uri, a->cfg->libvirt_uri) ||
        strcmp(c->nnve_address, a->cfg->nnve_address) || c->nnve_port != a->cfg->nnve_port ||
        strcmp(c->control_socket, a->cfg->control_socket) ||
        strcmp(c->dataplane, a->cfg->dataplane) || strcmp(c->state_dir, a->cfg->state_dir))
        SNV_WARN("agent", "reload: changed connection, socket, dataplane or state_dir keys "
                          "take effect after a restart");
    /* The rules array moves into the live config; virt keeps a pointer to it. */
    memcpy(a->cfg->rules, c->rules, sizeof c->rules);
    a->cfg->n_rules = c->n_rules;
    a->cfg->associate_on_define = c->associate_on_define;
    if (tnve_nnve_reload(a->nnve, c->crl, err, sizeof err) < 0)
        SNV_ERR("agent", "reload: TLS files not reloaded, keeping the running ones: %s", err);
    else
        memcpy(a->cfg->crl, c->crl, sizeof c->crl);
    free(c);
    tnve_rec_set_policy(a->rec, a->cfg->associate_on_define, uv_now(a->loop));
    tnve_virt_set_rules(a->virt, a->cfg->rules, a->cfg->n_rules);
    SNV_INFO("agent", "configuration reloaded rules=%u associate_on_define=%d", a->cfg->n_rules,
             a->cfg->associate_on_define);
    return 0;
}
