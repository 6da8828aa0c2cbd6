/* ctl.c: tnve-agent's control-socket commands (see ctl.h). */
#include "ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domxml.h"
#include "dp-mux.h"
#include "sncp-error.h"
#include "snv-log.h"
#include "virt-loop.h"

static void cmd_domains(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    struct tnve_agent *a = aux;
    snv_ctl_reply_ok(req, tnve_rec_domains_json(a->homes[0].rec));
}

static const char *json_str(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

/* The key a TSI row is matched by across the nNVEs' reconcilers. */
static void tsi_key(json_t *row, char *buf, size_t cap)
{
    json_t *id = json_object_get(row, "vn_id");
    snprintf(buf, cap, "%s|%lld|%s", json_str(row, "tsi"),
             json_is_integer(id) ? (long long)json_integer_value(id) : -1LL,
             json_str(row, "vn_name"));
}

/* Several nNVEs: one row per TSI (the first nNVE's rows), its state at each nNVE under
 * "nnves", the nNVEs that hold it in "served_by", and the top-level state, tag, pending
 * and error of the nNVE that serves it (the active one first). */
static json_t *tsis_merged(struct tnve_agent *a)
{
    json_t *per[TNVE_MAX_NNVES], *index[TNVE_MAX_NNVES];
    for (unsigned i = 0; i < a->n_homes; i++) {
        per[i] = tnve_rec_tsis_json(a->homes[i].rec);
        index[i] = json_object();
        size_t k;
        json_t *row;
        json_array_foreach(per[i], k, row)
        {
            char key[200];
            tsi_key(row, key, sizeof key);
            json_object_set(index[i], key, row);
        }
    }
    json_t *out = json_array();
    size_t k;
    json_t *row;
    json_array_foreach(per[0], k, row)
    {
        char key[200];
        tsi_key(row, key, sizeof key);
        json_t *nnves = json_object(), *served = json_array();
        json_t *primary = NULL;
        for (unsigned n = 0; n < a->n_homes; n++) {
            unsigned i = n == 0 ? a->active : n <= a->active ? n - 1 : n;
            json_t *r = json_object_get(index[i], key);
            if (!r)
                continue;
            const char *name = a->homes[i].ncfg->name;
            json_t *o = json_object();
            const char *fields[] = {"desired", "acked", "tag", "pending", "error"};
            for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
                json_object_set(o, fields[f], json_object_get(r, fields[f]));
            json_object_set_new(nnves, name, o);
            if (strcmp(json_str(r, "acked"), "init"))
                json_array_append_new(served, json_string(name));
            if (!primary && strcmp(json_str(r, "desired"), "init"))
                primary = r;
        }
        json_t *o = json_deep_copy(row);
        if (primary) {
            const char *fields[] = {"desired", "acked", "tag", "pending", "error", "failures"};
            for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
                json_object_set(o, fields[f], json_object_get(primary, fields[f]));
        }
        json_object_set_new(o, "served_by", served);
        json_object_set_new(o, "nnves", nnves);
        json_array_append_new(out, o);
    }
    for (unsigned i = 0; i < a->n_homes; i++) {
        json_decref(per[i]);
        json_decref(index[i]);
    }
    return out;
}

static void cmd_tsis(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    struct tnve_agent *a = aux;
    snv_ctl_reply_ok(req, a->n_homes == 1 ? tnve_rec_tsis_json(a->homes[0].rec) : tsis_merged(a));
}

static void cmd_vns(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    struct tnve_agent *a = aux;
    if (a->n_homes == 1) {
        snv_ctl_reply_ok(req, tnve_rec_vns_json(a->homes[0].rec));
        return;
    }
    /* one row per VN and nNVE */
    json_t *out = json_array();
    for (unsigned i = 0; i < a->n_homes; i++) {
        json_t *rows = tnve_rec_vns_json(a->homes[i].rec);
        size_t k;
        json_t *row;
        json_array_foreach(rows, k, row)
        {
            json_t *o = json_object();
            json_object_set_new(o, "nnve", json_string(a->homes[i].ncfg->name));
            json_object_update(o, row);
            json_array_append_new(out, o);
        }
        json_decref(rows);
    }
    snv_ctl_reply_ok(req, out);
}

static json_t *home_session_json(struct tnve_agent *a, unsigned i)
{
    struct tnve_home *h = &a->homes[i];
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(h->ncfg->name));
    json_object_set_new(o, "role", json_string(i == a->active ? "active" : "standby"));
    json_t *n = tnve_nnve_json(h->nnve);
    json_object_update(o, n);
    json_decref(n);
    json_object_set_new(o, "sync", json_string(tnve_rec_phase(h->rec)));
    json_object_set_new(o, "activations", json_integer((json_int_t)h->activations));
    json_object_set_new(o, "uplink", json_string(h->ncfg->uplink[0] ? h->ncfg->uplink : "-"));
    json_object_set_new(o, "uplink_state",
                        json_string(h->ncfg->uplink[0]
                                        ? tnve_uplink_state_name(tnve_uplinks_state(a->uplinks, i))
                                        : "-"));
    const char *bond = tnve_uplinks_master(a->uplinks, i);
    json_object_set_new(o, "uplink_bond", json_string(*bond ? bond : "-"));
    json_object_set_new(o, "preferred", json_boolean(a->preferred == (int)i));
    json_object_set_new(o, "override", json_boolean(a->override == (int)i));
    return o;
}

static void cmd_session(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    struct tnve_agent *a = aux;
    json_t *o = tnve_nnve_json(a->homes[0].nnve);
    json_object_set_new(o, "sync", json_string(tnve_rec_phase(a->homes[0].rec)));
    json_t *lv = tnve_virt_json(a->virt);
    json_object_set(o, "libvirt", json_object_get(lv, "connected"));
    json_object_set(o, "libvirt_uri", json_object_get(lv, "uri"));
    json_decref(lv);
    if (a->n_homes > 1) {
        json_t *arr = json_array();
        for (unsigned i = 0; i < a->n_homes; i++)
            json_array_append_new(arr, home_session_json(a, i));
        json_object_set_new(o, "nnves", arr);
        json_object_set_new(o, "active", json_string(tnve_agent_active_name(a)));
        json_object_set_new(o, "mode", json_string(tnve_mode_name(a->cfg->mode)));
    }
    snv_ctl_reply_ok(req, o);
}

static void cmd_nnves(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    struct tnve_agent *a = aux;
    json_t *arr = json_array();
    for (unsigned i = 0; i < a->n_homes; i++) {
        json_t *full = home_session_json(a, i), *o = json_object();
        const char *keys[] = {"name",         "role",        "state",       "sync",       "uplink",
                              "uplink_state", "uplink_bond", "preferred",   "override",   "nnve",
                              "identity",     "sessions",    "activations", "last_error", "cause"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            json_object_set(o, keys[k], json_object_get(full, keys[k]));
        json_decref(full);
        json_array_append_new(arr, o);
    }
    snv_ctl_reply_ok(req, arr);
}

static void cmd_counters(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    struct tnve_agent *a = aux;
    json_t *o = tnve_rec_counters_json(a->homes[0].rec);
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
    json_t *nv = tnve_nnve_json(a->homes[0].nnve);
    json_object_set(o, "nnve_connects", json_object_get(nv, "connects"));
    json_object_set(o, "nnve_sessions", json_object_get(nv, "sessions"));
    json_decref(nv);
    if (a->n_homes > 1) {
        json_object_set_new(o, "failovers", json_integer((json_int_t)a->failovers));
        json_object_set_new(o, "active_nnve", json_string(tnve_agent_active_name(a)));
        json_object_set_new(o, "vn_tag_mismatches", json_integer((json_int_t)a->vn_tag_mismatches));
        json_object_set_new(o, "vns_mismatched", json_integer(a->n_vn_mismatch));
        json_t *mx = tnve_dp_mux_json(a->mux);
        json_object_update(o, mx);
        json_decref(mx);
        if (a->uplinks) {
            json_t *ux = tnve_uplinks_json(a->uplinks);
            json_object_update(o, ux);
            json_decref(ux);
        }
        json_t *arr = json_array();
        for (unsigned i = 0; i < a->n_homes; i++) {
            json_t *c = json_object();
            json_object_set_new(c, "name", json_string(a->homes[i].ncfg->name));
            json_t *rc = tnve_rec_counters_json(a->homes[i].rec);
            json_object_update(c, rc);
            json_decref(rc);
            json_t *n = tnve_nnve_json(a->homes[i].nnve);
            json_object_set(c, "nnve_connects", json_object_get(n, "connects"));
            json_object_set(c, "nnve_sessions", json_object_get(n, "sessions"));
            json_decref(n);
            json_array_append_new(arr, c);
        }
        json_object_set_new(o, "nnves", arr);
    }
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
    unsigned started = 0;
    for (unsigned i = 0; i < a->n_homes; i++)
        if (tnve_rec_resync(a->homes[i].rec, uv_now(a->loop)) == 0)
            started++;
    json_t *o = json_object();
    json_object_set_new(o, "libvirt", json_string("listing"));
    json_object_set_new(o, "nnve",
                        json_string(started == a->n_homes ? "sync started"
                                    : started             ? "sync started where up"
                                                          : "session not up"));
    snv_ctl_reply_ok(req, o);
}

static void cmd_activate(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    struct tnve_agent *a = aux;
    int rc = tnve_agent_activate(a, argv[0]);
    if (rc == -ENOENT) {
        snv_ctl_reply_error(req, SNV_CTL_NOT_FOUND, "no nNVE named '%s'", argv[0]);
        return;
    }
    if (rc < 0) {
        snv_ctl_reply_error(req, SNV_CTL_FAILED, "nNVE %s: session not up", argv[0]);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "active", json_string(tnve_agent_active_name(a)));
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
    json_object_set_new(o, "to_send", tnve_lat_json(&a->lat_send));
    json_t *rtt = tnve_lat_json(&a->lat_nnve);
    if (rtt)
        json_object_set_new(rtt, "loop_busy", tnve_lat_json(&a->lat_nnve_busy));
    json_object_set_new(o, "nnve_rtt", rtt);
    json_t *by = json_object();
    for (int s = 0; by && s <= SNCP_TSI_ACTIVATED; s++)
        json_object_set_new(by, sncp_tsi_state_name((enum sncp_tsi_state)s),
                            tnve_lat_json(&a->lat_state[s]));
    json_object_set_new(o, "by_state", by);
    if (argc == 1) {
        for (int s = 0; s <= SNCP_TSI_ACTIVATED; s++)
            tnve_lat_reset(&a->lat_state[s]);
        tnve_lat_reset(&a->lat_total);
        tnve_lat_reset(&a->lat_libvirt);
        tnve_lat_reset(&a->lat_hop);
        tnve_lat_reset(&a->lat_nnve);
        tnve_lat_reset(&a->lat_nnve_busy);
        tnve_lat_reset(&a->lat_send);
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
    int rc = tnve_agent_prepare(a, x, flags, uv_now(a->loop) + wait_ms, prepare_done, req);
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
        {"nnve/show", "the configured nNVEs: role, session, SYNC phase", 0, 0, cmd_nnves},
        {"nnve/activate", "NAME: serve active-standby VNs by nNVE NAME (its session up)", 1, 1,
         cmd_activate},
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
