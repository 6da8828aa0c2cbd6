/* ctl.c: control-socket commands of nnve-daemon (see ctl.h). */
#include "ctl.h"

#include "pair.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ctl_ctx {
    struct nnve_state *state;
    struct nnve_server *srv;
    uv_loop_t *loop;
    char vtep[64]; /* local VTEP address for mapping/show, "" when none */
};

static struct ctl_ctx ctx_storage;

static void cmd_sessions(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    struct ctl_ctx *c = aux;
    snv_ctl_reply_ok(req, nnve_server_show_sessions(c->srv));
}

static void cmd_vns(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    struct ctl_ctx *c = aux;
    snv_ctl_reply_ok(req, nnve_state_show_vns(c->state));
}

#define TSI_SHOW_USAGE                                                                             \
    "[hypervisor H] [vn VN] [port P] [state associated|activated] [limit 1..10000] "               \
    "[after CURSOR]"

/* One page per request (see nnve_state_show_tsis_page), so a large table never stalls the
 * loop nor makes a reply larger than a client takes; nnvectl asks for the pages in turn. */
static void show_paged(struct snv_ctl_req *req, int argc, const char *const argv[],
                       struct ctl_ctx *c, const char *cmd, int mappings)
{
    struct nnve_tsi_filter f = NNVE_TSI_FILTER_INIT;
    for (int i = 0; i < argc; i += 2) {
        int r = i + 1 < argc ? nnve_state_tsi_filter_set(&f, argv[i], argv[i + 1]) : -ENOENT;
        if (r == -EINVAL) {
            snv_ctl_reply_error(req, SNV_CTL_USAGE, "bad value for %s: \"%s\"", argv[i],
                                argv[i + 1]);
            return;
        }
        if (r < 0) {
            snv_ctl_reply_error(req, SNV_CTL_USAGE, "usage: %s " TSI_SHOW_USAGE, cmd);
            return;
        }
    }
    json_t *page = mappings ? nnve_state_show_mappings_page(c->state, &f, c->vtep)
                            : nnve_state_show_tsis_page(c->state, &f);
    if (!page) {
        snv_ctl_reply_error(req, SNV_CTL_FAILED, "out of memory");
        return;
    }
    snv_ctl_reply_ok(req, page);
}

static void cmd_tsis(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    show_paged(req, argc, argv, aux, "tsi/show", 0);
}

static void cmd_mappings(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    show_paged(req, argc, argv, aux, "mapping/show", 1);
}

static void cmd_tags(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    struct ctl_ctx *c = aux;
    snv_ctl_reply_ok(req, nnve_state_show_tags(c->state, uv_now(c->loop)));
}

static void cmd_pair(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    struct ctl_ctx *c = aux;
    struct nnve_pair *p = nnve_server_pair(c->srv);
    if (!p) {
        snv_ctl_reply_error(req, SNV_CTL_FAILED, "no [pair] configured");
        return;
    }
    json_t *o = nnve_pair_show(p);
    if (!o) {
        snv_ctl_reply_error(req, SNV_CTL_FAILED, "out of memory");
        return;
    }
    snv_ctl_reply_ok(req, o);
}

static void cmd_counters(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    (void)argc;
    (void)argv;
    struct ctl_ctx *c = aux;
    snv_ctl_reply_ok(req, nnve_server_show_counters(c->srv));
}

static void cmd_latency(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    struct ctl_ctx *c = aux;
    if (argc == 1 && strcmp(argv[0], "reset")) {
        snv_ctl_reply_error(req, SNV_CTL_USAGE, "usage: latency/show [reset]");
        return;
    }
    json_t *o = nnve_server_show_latency(c->srv, argc == 1);
    if (!o) {
        snv_ctl_reply_error(req, SNV_CTL_FAILED, "out of memory");
        return;
    }
    snv_ctl_reply_ok(req, o);
}

static void cmd_vn_disconnect(struct snv_ctl_req *req, int argc, const char *const argv[],
                              void *aux)
{
    (void)argc;
    struct ctl_ctx *c = aux;
    nnve_server_op_vn_disconnect(c->srv, req, argv[0], argv[1]);
}

static void cmd_tsi_deactivate(struct snv_ctl_req *req, int argc, const char *const argv[],
                               void *aux)
{
    struct ctl_ctx *c = aux;
    nnve_server_op_tsi(c->srv, req, SNCP_MSG_TSI_DEACTIVATE, argv[0], argv + 1, argc - 1);
}

static void cmd_tsi_deassociate(struct snv_ctl_req *req, int argc, const char *const argv[],
                                void *aux)
{
    (void)argc;
    struct ctl_ctx *c = aux;
    nnve_server_op_tsi(c->srv, req, SNCP_MSG_TSI_DEASSOCIATE, argv[0], NULL, 0);
}

static void cmd_tsi_update(struct snv_ctl_req *req, int argc, const char *const argv[], void *aux)
{
    struct ctl_ctx *c = aux;
    nnve_server_op_tsi_update(c->srv, req, argv[0], argv[1], argv + 2, argc - 2);
}

int nnve_ctl_register(struct snv_ctl_server *ctl, struct nnve_state *state, struct nnve_server *srv,
                      uv_loop_t *loop)
{
    struct ctl_ctx *c = &ctx_storage;
    c->state = state;
    c->srv = srv;
    c->loop = loop;
    static const struct {
        const char *cmd, *usage;
        int min, max;
        snv_ctl_handler *fn;
    } cmds[] = {
        {"session/show", "", 0, 0, cmd_sessions},
        {"vn/show", "", 0, 0, cmd_vns},
        {"tsi/show", TSI_SHOW_USAGE, 0, 12, cmd_tsis},
        {"mapping/show", TSI_SHOW_USAGE, 0, 12, cmd_mappings},
        {"tag/show", "", 0, 0, cmd_tags},
        {"pair/show", "", 0, 0, cmd_pair},
        {"counters/show", "", 0, 0, cmd_counters},
        {"latency/show", "[reset]", 0, 1, cmd_latency},
        {"vn/disconnect", "HYPERVISOR VN", 2, 2, cmd_vn_disconnect},
        {"tsi/deactivate", "TSI [ADDRESS...]", 1, 1 + 64, cmd_tsi_deactivate},
        {"tsi/deassociate", "TSI", 1, 1, cmd_tsi_deassociate},
        {"tsi/update", "TSI add|remove|replace [ADDRESS...]", 2, 2 + 64, cmd_tsi_update},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        int r = snv_ctl_register(ctl, cmds[i].cmd, cmds[i].usage, cmds[i].min, cmds[i].max,
                                 cmds[i].fn, c);
        if (r < 0)
            return r;
    }
    return 0;
}

void nnve_ctl_set_vtep(const char *addr)
{
    snprintf(ctx_storage.vtep, sizeof ctx_storage.vtep, "%s", addr ? addr : "");
}
