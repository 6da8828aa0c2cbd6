/* ctl.c: tnve-agent's control-socket commands (see ctl.h). */
#include "ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domxml.h"
#include "sncp-error.h"
#include "snv-log.h"
#include "virt-loop.h"

static void cmd_domains(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    struct tnve_agent *a = aux;
    snv_ctl_reply_ok(req, tnve_rec_domains_json(a->rec));
}

static void cmd_tsis(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    struct tnve_agent *a = aux;
    snv_ctl_reply_ok(req, tnve_rec_tsis_json(a->rec));
}

static void cmd_vns(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    struct tnve_agent *a = aux;
    snv_ctl_reply_ok(req, tnve_rec_vns_json(a->rec));
}

static void cmd_session(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    struct tnve_agent *a = aux;
    json_t *o = tnve_nnve_json(a->nnve);
    json_object_set_new(o, "sync", json_string(tnve_rec_phase(a->rec)));
    json_t *lv = tnve_virt_json(a->virt);
    json_object_set(o, "libvirt", json_object_get(lv, "connected"));
    json_object_set(o, "libvirt_uri", json_object_get(lv, "uri"));
    json_decref(lv);
    snv_ctl_reply_ok(req, o);
}

static void cmd_counters(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    struct tnve_agent *a = aux;
    json_t *o = tnve_rec_counters_json(a->rec);
    json_t *lv = tnve_virt_json(a->virt);
    const char *k;
    json_t *val;
    json_object_foreach(lv, k, val)
    {
        char key[64];
        snprintf(key, sizeof key, "libvirt_%s", k);
        json_object_set(o, key, val);
    }
    json_decref(lv);
    json_t *nv = tnve_nnve_json(a->nnve);
    json_object_set(o, "nnve_connects", json_object_get(nv, "connects"));
    json_object_set(o, "nnve_sessions", json_object_get(nv, "sessions"));
    json_decref(nv);
    struct tnve_virt_loop_stats vs;
    tnve_virt_loop_get_stats(&vs);
    json_object_set_new(o, "evloop_watches", json_integer(vs.watches));
    json_object_set_new(o, "evloop_timeouts", json_integer(vs.timeouts));
    json_object_set_new(o, "evloop_dispatched", json_integer((json_int_t)vs.dispatched));
    json_object_set_new(o, "reloads", json_integer((json_int_t)a->reloads));
    snv_ctl_reply_ok(req, o);
}

static void cmd_resync(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    struct tnve_agent *a = aux;
    tnve_virt_resync(a->virt);
    int rc = tnve_rec_resync(a->rec, uv_now(a->loop));
    json_t *o = json_object();
    json_object_set_new(o, "libvirt", json_string("listing"));
    json_object_set_new(o, "nnve", json_string(rc == 0 ? "sync started" : "session not up"));
    snv_ctl_reply_ok(req, o);
}

static void cmd_latency(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    struct tnve_agent *a = aux;
    if (argc == 1 && strcmp(argv[0], "reset")) {
        snv_ctl_reply_error(req, SNV_CTL_USAGE, "usage: latency/show [reset]");
        return;
    }
    /* event-to-acknowledged at the top level; its parts in their own objects */
    json_t *o = tnve_lat_json(&a->lat_total);
    if (!o) {
        snv_ctl_reply_error(req, SNV_CTL_FAILED, "out of memory");
        return;
    }
    json_object_set_new(o, "libvirt", tnve_lat_json(&a->lat_libvirt));
    json_object_set_new(o, "reader_hop", tnve_lat_json(&a->lat_hop));
    json_object_set_new(o, "nnve_rtt", tnve_lat_json(&a->lat_nnve));
    if (argc == 1) {
        tnve_lat_reset(&a->lat_total);
        tnve_lat_reset(&a->lat_libvirt);
        tnve_lat_reset(&a->lat_hop);
        tnve_lat_reset(&a->lat_nnve);
    }
    snv_ctl_reply_ok(req, o);
}

static void prepare_done(void *aux, int err, const char *reason)
{
    struct snv_ctl_req *req = aux;
    if (!err) {
        json_t *o = json_object();
        json_object_set_new(o, "result", json_string(reason ? reason : "associated"));
        snv_ctl_reply_ok(req, o);
        return;
    }
    snv_ctl_reply_error(req, err == SNCP_E_TIMEOUT ? SNV_CTL_TIMEOUT : SNV_CTL_FAILED, "%s",
                        reason ? reason : sncp_strerror(err));
}

static void cmd_hook(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    struct tnve_agent *a = aux;
    const char *op = argv[0], *domain = argv[1], *xml = argv[2];
    uint16_t flags;
    if (!strcmp(op, "prepare")) {
        flags = 0;
    } else if (!strcmp(op, "migrate")) {
        flags = SNCP_F_MIGRATION;
    } else {
        json_t *o = json_object();
        json_object_set_new(o, "result", json_string("nothing to do"));
        snv_ctl_reply_ok(req, o);
        return;
    }
    size_t len = strlen(xml);
    if (len > TNVE_HOOK_XML_MAX) {
        snv_ctl_reply_error(req, SNV_CTL_USAGE,
                            "domain XML of %zu bytes exceeds the hook "
                            "limit of %d bytes",
                            len, TNVE_HOOK_XML_MAX);
        return;
    }
    struct tnve_domxml *x = malloc(sizeof *x);
    if (!x) {
        snv_ctl_reply_error(req, SNV_CTL_FAILED, "out of memory");
        return;
    }
    char err[256];
    if (tnve_domxml_parse(xml, len, x, err, sizeof err) < 0) {
        snv_ctl_reply_error(req, SNV_CTL_USAGE, "domain %s: %s", domain, err);
        free(x);
        return;
    }
    if (strcmp(x->name, domain))
        SNV_WARN("ctl", "hook domain name differs from its XML arg=%s xml=%s", domain, x->name);
    tnve_domxml_resolve(x, a->cfg->rules, a->cfg->n_rules);
    uint64_t wait_ms = a->cfg->hook_timeout_ms;
    if (argc == 4) {
        /* the caller's own deadline, so that the reason reaches it before it gives up */
        char *end;
        unsigned long ms = strtoul(argv[3], &end, 10);
        if (*end || ms < 100) {
            snv_ctl_reply_error(req, SNV_CTL_USAGE, "bad wait time '%s' (ms)", argv[3]);
            free(x);
            return;
        }
        if (ms < wait_ms)
            wait_ms = ms;
    }
    uint64_t now = uv_now(a->loop);
    int rc = tnve_rec_prepare(a->rec, x, flags, now + wait_ms, prepare_done, req, now);
    free(x);
    if (rc < 0)
        snv_ctl_reply_error(req, SNV_CTL_FAILED, "cannot prepare domain %s: %s", domain,
                            sncp_strerror(rc));
}

int tnve_ctl_register(struct tnve_agent *a)
{
    static const struct {
        const char *name, *usage;
        int min, max;
        snv_ctl_handler *fn;
    } cmds[] = {
        {"domain/show", "domains tracked from libvirt", 0, 0, cmd_domains},
        {"tsi/show", "TSIs: domain, uuid, mac, VN, desired/acked state, tag", 0, 0, cmd_tsis},
        {"vn/show", "VNs: users, connected, tag", 0, 0, cmd_vns},
        {"session/show", "the nNVE session and the libvirt connection", 0, 0, cmd_session},
        {"counters/show", "counters", 0, 0, cmd_counters},
        {"resync", "re-list libvirt domains and resynchronise with the nNVE", 0, 0, cmd_resync},
        {"latency/show", "[reset]: event-to-acknowledged latency (then reset)", 0, 1, cmd_latency},
        {"hook/prepare", "OPERATION DOMAIN XML [WAIT_MS]: associate before libvirt starts DOMAIN",
         3, 4, cmd_hook},
    };
    snv_ctl_server_set_line_max(a->ctl, TNVE_CTL_LINE_MAX); /* hook/prepare's domain XML */
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        int rc = snv_ctl_register(a->ctl, cmds[i].name, cmds[i].usage, cmds[i].min, cmds[i].max,
                                  cmds[i].fn, a);
        if (rc < 0)
            return rc;
    }
    return 0;
}
