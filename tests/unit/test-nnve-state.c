/* test-nnve-state.c: nnve-daemon's state machines with injected time and a recording
 * backend: every transition row, VN connect/disconnect, tags, migration, limits, SYNC,
 * the hold timer, operator actions, port moves, and a backend that fails (the group is
 * undone from the store). */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../nnve-daemon/state.h"
#include "sncp-error.h"
#include "snv-log.h"

/* ---- recording backend ---- */

static char ops[65536];
static unsigned n_ops;
static const char *fail_verb; /* operations with this verb fail (-EIO), not recorded */

static int rec(const char *verb, const char *port, uint16_t tag, const struct nnve_vn *vn,
               const struct sncp_tsi_id *tsi, unsigned n_addrs)
{
    if (fail_verb && !strcmp(verb, fail_verb))
        return -EIO;
    char vbuf[80];
    size_t len = strlen(ops);
    snprintf(ops + len, sizeof ops - len, "%s %s %u %s %u %u;", verb, port, tag,
             nnve_vn_format(vn, vbuf, sizeof vbuf), tsi ? tsi->mac[5] : 0, n_addrs);
    n_ops++;
    return 0;
}

static int r_create(const struct nnve_backend_config *c, struct nnve_backend **out)
{
    (void)c;
    (void)out;
    return -ENOTSUP;
}
static void r_destroy(struct nnve_backend *b)
{
    (void)b;
}
static int r_rb(struct nnve_backend *b)
{
    (void)b;
    return rec("reconcile", "-", 0, &(struct nnve_vn){.name = "-"}, NULL, 0);
}
static int r_vn_add(struct nnve_backend *b, const char *port, uint16_t tag,
                    const struct nnve_vn *vn)
{
    (void)b;
    return rec("add-vn", port, tag, vn, NULL, 0);
}
static int r_vn_remove(struct nnve_backend *b, const char *port, uint16_t tag,
                       const struct nnve_vn *vn)
{
    (void)b;
    return rec("remove-vn", port, tag, vn, NULL, 0);
}
#define TSI_OP(fn, verb)                                                                           \
    static int fn(struct nnve_backend *b, const char *port, uint16_t tag,                          \
                  const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,                         \
                  const struct sncp_addr *addrs, unsigned n)                                       \
    {                                                                                              \
        (void)b;                                                                                   \
        (void)addrs;                                                                               \
        return rec(verb, port, tag, vn, tsi, n);                                                   \
    }
TSI_OP(r_assoc, "assoc")
TSI_OP(r_act, "act")
TSI_OP(r_deact, "deact")
TSI_OP(r_deassoc, "deassoc")
TSI_OP(r_update, "update")
static int r_lookup(struct nnve_backend *b, const uint8_t mac[6], char *port, size_t cap)
{
    (void)b;
    (void)mac;
    (void)port;
    (void)cap;
    return -ENOENT;
}

static const struct nnve_backend_class rec_class = {
    .name = "rec",
    .create = r_create,
    .destroy = r_destroy,
    .reconcile_begin = r_rb,
    .reconcile_end = r_rb,
    .vn_add = r_vn_add,
    .vn_remove = r_vn_remove,
    .tsi_associate = r_assoc,
    .tsi_activate = r_act,
    .tsi_deactivate = r_deact,
    .tsi_deassociate = r_deassoc,
    .tsi_update = r_update,
    .lookup_mac = r_lookup,
};
static struct nnve_backend rec_be = {.cls = &rec_class};

/* ---- fixture ---- */

static const char cfg_text[] = "[global]\ncert=a\nkey=b\nca=c\nhold_time=30s\n"
                               "tag_hold_down=60s\nmax_tsis_per_session=4\nmax_addrs_per_tsi=3\n"
                               "[domain d1]\nports=swp1,swp2\ntags=100-102\nreserved=101\n"
                               "[domain d2]\nports=swp3\ntags=200-299\n"
                               "[hypervisor hv1]\nport=swp1\nvns=5000-5010,blue,green\n"
                               "[hypervisor hv2]\nport=swp2\nvns=5000-5010\n"
                               "[hypervisor hv3]\nport=swp3\nvns=5000\n"
                               "[vn blue]\nid=6000\n";

static struct nnve_config *cfg;
static struct nnve_state *st;
static struct nnve_hv *hv1, *hv2, *hv3;
static int sess = 1;

static void setup(void)
{
    snv_log_set_level(SNV_LOG_ERR);
    char err[256];
    ops[0] = '\0';
    n_ops = 0;
    fail_verb = NULL;
    ck_assert_int_eq(nnve_config_parse_string(cfg_text, "t", &cfg, err, sizeof err), 0);
    ck_assert_int_eq(nnve_state_create(cfg, &rec_be, NULL, 0, &st, err, sizeof err), 0);
    ck_assert_int_eq(nnve_state_hv_up(st, "hv1", "swp1", 0, &hv1), 0);
    ck_assert_int_eq(nnve_state_hv_up(st, "hv2", "swp2", 0, &hv2), 0);
    ck_assert_int_eq(nnve_state_hv_up(st, "hv3", "swp3", 0, &hv3), 0);
    nnve_state_hv_set_session(hv1, &sess);
    nnve_state_hv_set_session(hv2, &sess);
    nnve_state_hv_set_session(hv3, &sess);
}

static void teardown(void)
{
    nnve_state_destroy(st);
    nnve_config_destroy(cfg);
}

static struct sncp_msg m;
static struct nnve_result res;

static struct sncp_msg *msg(enum sncp_msg_type type, uint32_t vn, int tsi)
{
    sncp_msg_init(&m, type, 1);
    if (vn) {
        m.vn_id = vn;
        sncp_msg_set(&m, SNCP_TLV_VN_ID);
    }
    if (tsi) {
        memset(m.tsi.uuid, tsi, 16);
        m.tsi.mac[0] = 0x52;
        m.tsi.mac[5] = (uint8_t)tsi;
        sncp_msg_set(&m, SNCP_TLV_TSI_ID);
    }
    return &m;
}

static void add_addr(struct sncp_msg *mm, uint8_t last)
{
    struct sncp_addr *a = &mm->addrs[mm->n_addrs++];
    memset(a, 0, sizeof *a);
    a->type = SNCP_ADDR_IPV4;
    a->ip[0] = 192;
    a->ip[1] = 0;
    a->ip[2] = 2;
    a->ip[3] = last;
}

static int req(struct nnve_hv *hv, struct sncp_msg *mm, uint64_t now)
{
    return nnve_state_request(st, hv, mm, now, &res);
}

static struct nnve_state_counters cnt(void)
{
    struct nnve_state_counters c;
    nnve_state_counters(st, &c);
    return c;
}

static int count_ops(const char *needle)
{
    int n = 0;
    for (const char *p = ops; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* ---- VN connect and tags ---- */

START_TEST(test_vn_connect_tags)
{
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_uint_eq(res.n_tags, 1);
    ck_assert_uint_eq(res.tags[0].vid, 100);
    ck_assert(res.has_vn && res.vn.id == 5000);
    ck_assert_int_eq(count_ops("add-vn swp1 100 5000"), 1);
    /* idempotent */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_uint_eq(res.tags[0].vid, 100);
    ck_assert_uint_eq(n_ops, 1);
    /* same VN, same domain, other hypervisor and port: same tag */
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_uint_eq(res.tags[0].vid, 100);
    ck_assert_int_eq(count_ops("add-vn swp2 100 5000"), 1);
    /* other domain: its own pool */
    ck_assert_int_eq(req(hv3, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_uint_eq(res.tags[0].vid, 200);
    /* preferred tag: a different one honoured for a new VN; 101 is reserved */
    struct sncp_msg *mm = msg(SNCP_MSG_VN_CONNECT, 5001, 0);
    mm->preferred_tags[0].vid = 101;
    mm->preferred_tags[1].vid = 102;
    mm->n_preferred_tags = 2;
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_uint_eq(res.tags[0].vid, 102);
    /* a preference for an existing VN does not move its tag */
    mm = msg(SNCP_MSG_VN_CONNECT, 5000, 0);
    mm->preferred_tags[0].vid = 102;
    mm->n_preferred_tags = 1;
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_uint_eq(res.tags[0].vid, 100);
    /* pool of d1 is {100, 102}: exhausted, nothing else disturbed */
    unsigned before = n_ops;
    struct nnve_state_counters c0 = cnt();
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5002, 0), 0), SNCP_E_TAG_POOL_EXHAUSTED);
    ck_assert_uint_eq(n_ops, before);
    struct nnve_state_counters c1 = cnt();
    ck_assert_uint_eq(c0.vaps, c1.vaps);
    ck_assert_uint_eq(c0.vn_connections, c1.vn_connections);
    ck_assert_uint_eq(nnve_state_hv_vns(hv1), 2);
}
END_TEST

START_TEST(test_vn_authorization_and_names)
{
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5011, 0), 0), SNCP_E_NOT_AUTHORIZED);
    ck_assert_int_eq(res.error_tlv, SNCP_TLV_VN_ID);
    ck_assert_int_eq(req(hv3, msg(SNCP_MSG_VN_CONNECT, 5001, 0), 0), SNCP_E_NOT_AUTHORIZED);
    /* by name, resolved to its ID through [vn blue] */
    struct sncp_msg *mm = msg(SNCP_MSG_VN_CONNECT, 0, 0);
    snprintf(mm->vn_name, sizeof mm->vn_name, "blue");
    sncp_msg_set(mm, SNCP_TLV_VN_NAME);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert(res.vn.has_id && res.vn.id == 6000);
    ck_assert_str_eq(res.vn.name, "blue");
    /* by ID 6000: the same VN (authorized through its name) */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 6000, 0), 0), 0);
    ck_assert_uint_eq(cnt().vn_connections, 1);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 6000, 0), 0), SNCP_E_NOT_AUTHORIZED);
    /* name and ID that disagree */
    mm = msg(SNCP_MSG_VN_CONNECT, 5000, 0);
    snprintf(mm->vn_name, sizeof mm->vn_name, "blue");
    sncp_msg_set(mm, SNCP_TLV_VN_NAME);
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_CONFLICT);
    ck_assert_int_eq(res.error_tlv, SNCP_TLV_VN_NAME);
    mm = msg(SNCP_MSG_VN_CONNECT, 6000, 0); /* [vn blue] has ID 6000 */
    snprintf(mm->vn_name, sizeof mm->vn_name, "red");
    sncp_msg_set(mm, SNCP_TLV_VN_NAME);
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_CONFLICT);
    /* a VN known only by name */
    mm = msg(SNCP_MSG_VN_CONNECT, 0, 0);
    snprintf(mm->vn_name, sizeof mm->vn_name, "green");
    sncp_msg_set(mm, SNCP_TLV_VN_NAME);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert(!res.vn.has_id);
    json_t *vns = nnve_state_show_vns(st);
    int found = 0;
    size_t i;
    json_t *o;
    json_array_foreach(vns, i, o)
    {
        if (json_is_null(json_object_get(o, "vn_id"))) {
            ck_assert_str_eq(json_string_value(json_object_get(o, "vn_name")), "green");
            found++;
        }
    }
    ck_assert_int_eq(found, 1);
    json_decref(vns);
    /* neither ID nor name */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 0, 0), 0), SNCP_E_MISSING_TLV);
}
END_TEST

START_TEST(test_vn_disconnect)
{
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_DISCONNECT, 5000, 0), 0), SNCP_E_NO_SUCH_VN);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 2), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_DISCONNECT, 5000, 0), 0), 0);
    /* the hypervisor's TSIs in the VN are de-associated, then the VN leaves the port */
    ck_assert_int_eq(count_ops("deassoc swp1 100 5000"), 2);
    ck_assert(strstr(ops, "remove-vn swp1 100 5000") > strstr(ops, "deassoc"));
    ck_assert_uint_eq(cnt().tsis_activated + cnt().tsis_associated, 0);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 0);
}
END_TEST

/* ---- the TSI transition table ---- */

START_TEST(test_transitions)
{
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    /* from Init: deactivate, deassociate, update -> NO_SUCH_TSI */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEACTIVATE, 0, 1), 0), SNCP_E_NO_SUCH_TSI);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 1), 0), SNCP_E_NO_SUCH_TSI);
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_UPDATE, 0, 1);
    mm->update_op = SNCP_UPDATE_ADD;
    sncp_msg_set(mm, SNCP_TLV_UPDATE_OP);
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_NO_SUCH_TSI);
    /* Init -> Associated */
    mm = msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1);
    add_addr(mm, 10);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ASSOCIATED);
    ck_assert_uint_eq(res.tags[0].vid, 100);
    ck_assert_int_eq(count_ops("assoc swp1 100 5000 1 1"), 1);
    /* Associated -> Associated (refresh, addresses replaced) */
    mm = msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1);
    add_addr(mm, 11);
    add_addr(mm, 12);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ASSOCIATED);
    ck_assert_int_eq(count_ops("assoc swp1 100 5000 1 2"), 1);
    unsigned before = n_ops;
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1), 0), 0); /* no addrs: kept */
    ck_assert_uint_eq(n_ops, before);
    /* Associated -> Activated */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1), 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ACTIVATED);
    ck_assert_int_eq(count_ops("act swp1 100 5000 1 2"), 1);
    /* Activated: associate -> INVALID_STATE, nothing changes */
    before = n_ops;
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1), 0), SNCP_E_INVALID_STATE);
    /* Activated -> Activated: SUCCESS, no change */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1), 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ACTIVATED);
    ck_assert_uint_eq(n_ops, before);
    ck_assert_uint_eq(cnt().tsis_activated, 1);
    /* Activated -> Associated */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEACTIVATE, 0, 1), 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ASSOCIATED);
    ck_assert_int_eq(count_ops("deact swp1"), 1);
    /* Associated: deactivate is SUCCESS, no change */
    before = n_ops;
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEACTIVATE, 0, 1), 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ASSOCIATED);
    ck_assert_uint_eq(n_ops, before);
    /* Associated -> Init */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 1), 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_INIT);
    ck_assert_int_eq(count_ops("deassoc swp1"), 1);
    ck_assert_uint_eq(cnt().tsis_associated, 0);
    /* Init -> Activated directly (Figure 6) */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 2), 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ACTIVATED);
    ck_assert_int_eq(count_ops("assoc swp1 100 5000 2"), 1);
    ck_assert_int_eq(count_ops("act swp1 100 5000 2"), 1);
    /* Activated -> Init */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 2), 0), 0);
    ck_assert_uint_eq(cnt().tsis_activated, 0);
    /* The VN stays connected */
    ck_assert_uint_eq(nnve_state_hv_vns(hv1), 1);
}
END_TEST

START_TEST(test_no_such_vn_and_implicit)
{
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1), 0), SNCP_E_NO_SUCH_VN);
    ck_assert_uint_eq(n_ops, 0);
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    mm->flags = SNCP_F_IMPLICIT_CONNECT;
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert(res.flags & SNCP_F_IMPLICIT_CONNECT);
    ck_assert_uint_eq(res.tags[0].vid, 100);
    ck_assert_int_eq(count_ops("add-vn swp1 100 5000"), 1);
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 2);
    mm->flags = SNCP_F_IMPLICIT_CONNECT;
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert(!(res.flags & SNCP_F_IMPLICIT_CONNECT)); /* already connected */
    /* not authorized beats implicit connect */
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5099, 3);
    mm->flags = SNCP_F_IMPLICIT_CONNECT;
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_NOT_AUTHORIZED);
}
END_TEST

START_TEST(test_conflicts_and_limits)
{
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5001, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1), 0), 0);
    /* same TSI in another VN */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5001, 1), 0), SNCP_E_CONFLICT);
    /* same TSI at another hypervisor without the migration flag */
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1), 0), SNCP_E_CONFLICT);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv2), 0);
    /* addresses per TSI (policy: 3) */
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 2);
    for (int i = 0; i < 4; i++)
        add_addr(mm, (uint8_t)i);
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_RESOURCE_LIMIT);
    ck_assert_int_eq(res.error_tlv, SNCP_TLV_ADDRESS);
    /* TSIs per hypervisor (policy: 4) */
    for (int i = 2; i <= 4; i++)
        ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ASSOCIATE, 5000, i), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 5), 0), SNCP_E_RESOURCE_LIMIT);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 4);
    /* other message types */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_HELLO, 0, 0), 0), SNCP_E_UNEXPECTED_MESSAGE);
}
END_TEST

START_TEST(test_update)
{
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    add_addr(mm, 1);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    mm = msg(SNCP_MSG_TSI_UPDATE, 0, 1);
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_MISSING_TLV);
    mm->update_op = SNCP_UPDATE_ADD;
    sncp_msg_set(mm, SNCP_TLV_UPDATE_OP);
    add_addr(mm, 2);
    add_addr(mm, 1);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ACTIVATED);
    ck_assert_int_eq(count_ops("update swp1 100 5000 1 2"), 1);
    mm->n_addrs = 0;
    add_addr(mm, 3);
    add_addr(mm, 4);
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_RESOURCE_LIMIT);
    mm->update_op = SNCP_UPDATE_REMOVE;
    mm->n_addrs = 0;
    add_addr(mm, 1);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_int_eq(count_ops("update swp1 100 5000 1 1"), 1);
    mm->update_op = SNCP_UPDATE_REPLACE;
    mm->n_addrs = 0;
    add_addr(mm, 7);
    add_addr(mm, 8);
    add_addr(mm, 9);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_int_eq(count_ops("update swp1 100 5000 1 3"), 1);
    mm->update_op = 9;
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_INVALID_VALUE);
    json_t *tsis = nnve_state_show_tsis(st);
    ck_assert_uint_eq(json_array_size(tsis), 1);
    json_t *o = json_array_get(tsis, 0);
    ck_assert_uint_eq(json_array_size(json_object_get(o, "addresses")), 3);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(o, "addresses"), 0)),
                     "192.0.2.7");
    ck_assert_str_eq(json_string_value(json_object_get(o, "state")), "activated");
    ck_assert_str_eq(json_string_value(json_object_get(o, "port")), "swp1");
    ck_assert_str_eq(json_string_value(json_object_get(o, "hypervisor")), "hv1");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "vn_id")), 5000);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "tag")), 100);
    ck_assert(json_is_false(json_object_get(o, "migrating")));
    json_decref(tsis);
}
END_TEST

/* ---- migration (make-before-break) ---- */

START_TEST(test_migration)
{
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1), 0), 0);
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    mm->flags = SNCP_F_MIGRATION;
    ck_assert_int_eq(req(hv2, mm, 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ACTIVATED);
    ck_assert_uint_eq(cnt().tsis_activated, 2);
    ck_assert_uint_eq(cnt().tsis_migrating, 2);
    ck_assert_int_eq(count_ops("act swp2 100 5000 1"), 1);
    /* both instances, told apart by hypervisor/port */
    json_t *tsis = nnve_state_show_tsis(st);
    ck_assert_uint_eq(json_array_size(tsis), 2);
    for (size_t i = 0; i < 2; i++)
        ck_assert(json_is_true(json_object_get(json_array_get(tsis, i), "migrating")));
    json_decref(tsis);
    /* the source de-associates: the destination is no longer migrating */
    mm = msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 1);
    mm->flags = SNCP_F_MIGRATION | SNCP_F_MIGRATION_SOURCE;
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_uint_eq(cnt().tsis_migrating, 0);
    ck_assert_uint_eq(cnt().tsis_activated, 1);
    ck_assert_int_eq(count_ops("deassoc swp1 100 5000 1"), 1);
    tsis = nnve_state_show_tsis(st);
    ck_assert_uint_eq(json_array_size(tsis), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(tsis, 0), "hypervisor")),
                     "hv2");
    json_decref(tsis);
    /* migration into another VN is a conflict */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5001, 0), 0), 0);
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5001, 1);
    mm->flags = SNCP_F_MIGRATION;
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_CONFLICT);
}
END_TEST

/* ---- SYNC ---- */

START_TEST(test_sync)
{
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5001, 0), 0), 0);
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    add_addr(mm, 1);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 2), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5001, 3), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5001, 0), 0), 0);
    ops[0] = '\0';
    n_ops = 0;
    fail_verb = NULL;
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_SYNC_BEGIN, 0, 0), 0), 0);
    /* re-announce VN 5000 (with its tag as preference) and TSI 1 as it was */
    mm = msg(SNCP_MSG_VN_CONNECT, 5000, 0);
    mm->preferred_tags[0].vid = 100;
    mm->n_preferred_tags = 1;
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    add_addr(mm, 1);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_uint_eq(n_ops, 0); /* re-announcing changes nothing, not even the dataplane */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_SYNC_END, 0, 0), 0), 0);
    /* swept: TSI 2 (not re-announced), TSI 3 and VN 5001 */
    ck_assert_int_eq(count_ops("deassoc swp1 100 5000 2"), 1);
    ck_assert_int_eq(count_ops("deassoc swp1 102 5001 3"), 1);
    ck_assert_int_eq(count_ops("remove-vn swp1 102 5001"), 1);
    ck_assert_int_eq(count_ops("1 1;"), 0); /* TSI 1 untouched */
    ck_assert_uint_eq(n_ops, 3);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 1);
    ck_assert_uint_eq(nnve_state_hv_vns(hv1), 1);
    ck_assert_uint_eq(cnt().sync_swept_tsis, 2);
    ck_assert_uint_eq(cnt().sync_swept_vns, 1);
    /* hv2's VN 5001 is another hypervisor's: untouched, VN keeps its tag */
    ck_assert_uint_eq(nnve_state_hv_vns(hv2), 1);
    /* SYNC_END without SYNC_BEGIN sweeps nothing */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_SYNC_END, 0, 0), 0), 0);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 1);
}
END_TEST

/* ---- hold timer and tag hold-down ---- */

START_TEST(test_hold_timer)
{
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5001, 0), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_ACTIVATE, 5001, 2), 0), 0);
    unsigned before = n_ops;
    nnve_state_hv_down(st, hv1, 1000);
    nnve_state_hv_down(st, hv2, 1000);
    ck_assert_uint_eq(nnve_state_hv_hold_until(hv1), 31000);
    ck_assert_uint_eq(nnve_state_tick(st, 30999), 31000);
    ck_assert_uint_eq(n_ops, before); /* nothing touched while held */
    ck_assert_uint_eq(cnt().hypervisors_held, 2);
    /* hv2 comes back within hold: its state stays */
    ck_assert_int_eq(nnve_state_hv_up(st, "hv2", "swp2", 20000, &hv2), 0);
    ck_assert_uint_eq(nnve_state_hv_hold_until(hv2), 0);
    nnve_state_tick(st, 31000);
    ck_assert_ptr_null(nnve_state_hv_find(st, "hv1"));
    ck_assert_int_eq(count_ops("deassoc swp1 100 5000 1"), 1);
    ck_assert_int_eq(count_ops("remove-vn swp1 100 5000"), 1);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv2), 1);
    ck_assert_uint_eq(cnt().hold_expired, 1);
    /* VN 5000's tag 100 is in hold-down: a new VN may not take it */
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5003, 0), 40000), SNCP_E_TAG_POOL_EXHAUSTED);
    /* ... but VN 5000 itself gets it back */
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 40000), 0);
    ck_assert_uint_eq(res.tags[0].vid, 100);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_DISCONNECT, 5000, 0), 50000), 0);
    /* after the hold-down (60 s from 50 s) another VN may have it */
    nnve_state_tick(st, 109999);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5003, 0), 109999),
                     SNCP_E_TAG_POOL_EXHAUSTED);
    nnve_state_tick(st, 110000);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5003, 0), 110000), 0);
    ck_assert_uint_eq(res.tags[0].vid, 100);
    json_t *tags = nnve_state_show_tags(st, 110000);
    ck_assert_uint_eq(json_array_size(tags), 2);
    json_decref(tags);
}
END_TEST

/* ---- operator actions ---- */

static struct sncp_msg sent[8];
static struct nnve_hv *sent_to[8];
static int n_sent;

static void notify(void *aux, struct nnve_hv *hv, struct sncp_msg *mm)
{
    (void)aux;
    ck_assert_int_lt(n_sent, 8);
    sent_to[n_sent] = hv;
    sent[n_sent++] = *mm;
}

START_TEST(test_operator)
{
    n_sent = 0;
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    add_addr(mm, 1);
    add_addr(mm, 2);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 2), 0), 0);
    char t1[SNCP_TSI_ID_STRLEN];
    msg(0, 0, 1);
    sncp_tsi_id_format(&m.tsi, t1, sizeof t1);

    /* withdraw one address (Req-9) */
    const char *a1[] = {"192.0.2.1"};
    ck_assert_int_eq(nnve_state_op_tsi(st, SNCP_MSG_TSI_DEACTIVATE, t1, a1, 1, 0, notify, NULL), 1);
    ck_assert_int_eq(sent[0].type, SNCP_MSG_TSI_DEACTIVATE);
    ck_assert_uint_eq(sent[0].n_addrs, 1);
    ck_assert_ptr_eq(sent_to[0], hv1);
    ck_assert_uint_eq(cnt().tsis_activated, 2);
    ck_assert_int_eq(count_ops("update swp1 100 5000 1 1"), 1);
    /* deactivate */
    ck_assert_int_eq(nnve_state_op_tsi(st, SNCP_MSG_TSI_DEACTIVATE, t1, NULL, 0, 0, notify, NULL),
                     1);
    ck_assert_uint_eq(cnt().tsis_activated, 1);
    ck_assert_uint_eq(sent[1].n_addrs, 0);
    /* deassociate */
    ck_assert_int_eq(nnve_state_op_tsi(st, SNCP_MSG_TSI_DEASSOCIATE, t1, NULL, 0, 0, notify, NULL),
                     1);
    ck_assert_int_eq(sent[2].type, SNCP_MSG_TSI_DEASSOCIATE);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 1);
    ck_assert_int_eq(nnve_state_op_tsi(st, SNCP_MSG_TSI_DEASSOCIATE, t1, NULL, 0, 0, notify, NULL),
                     -ENOENT);
    ck_assert_int_eq(
        nnve_state_op_tsi(st, SNCP_MSG_TSI_DEASSOCIATE, "junk", NULL, 0, 0, notify, NULL),
        SNCP_E_INVALID_VALUE);
    /* VN disconnect (Req-6) */
    ck_assert_int_eq(nnve_state_op_vn_disconnect(st, "hv1", "5001", 0, notify, NULL), -ENOENT);
    ck_assert_int_eq(nnve_state_op_vn_disconnect(st, "nobody", "5000", 0, notify, NULL), -ENOENT);
    nnve_state_hv_set_session(hv1, NULL);
    ck_assert_int_eq(nnve_state_op_vn_disconnect(st, "hv1", "5000", 0, notify, NULL), -ENOTCONN);
    ck_assert_uint_eq(nnve_state_hv_vns(hv1), 1);
    nnve_state_hv_set_session(hv1, &sess);
    ck_assert_int_eq(nnve_state_op_vn_disconnect(st, "hv1", "5000", 0, notify, NULL), 1);
    ck_assert_int_eq(sent[3].type, SNCP_MSG_VN_DISCONNECT);
    ck_assert_uint_eq(sent[3].vn_id, 5000);
    ck_assert_uint_eq(nnve_state_hv_vns(hv1), 0);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 0);
    ck_assert_int_eq(count_ops("remove-vn swp1 100 5000"), 1);
    ck_assert_int_eq(n_sent, 4);
}
END_TEST

START_TEST(test_port_move)
{
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1), 0), 0);
    nnve_state_hv_down(st, hv1, 0);
    ops[0] = '\0';
    /* same domain: moved with its tag */
    ck_assert_int_eq(nnve_state_hv_up(st, "hv1", "swp2", 10, &hv1), 0);
    ck_assert_str_eq(nnve_state_hv_port(hv1), "swp2");
    ck_assert_int_eq(count_ops("add-vn swp2 100 5000"), 1);
    ck_assert_int_eq(count_ops("remove-vn swp1 100 5000"), 1);
    ck_assert_int_eq(count_ops("act swp2 100 5000 1"), 1);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 1);
    /* another domain: state dropped (the agent's SYNC re-creates it) */
    ck_assert_int_eq(nnve_state_hv_up(st, "hv1", "swp3", 20, &hv1), 0);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 0);
    /* a port in no domain is refused */
    struct nnve_hv *x;
    ck_assert_int_eq(nnve_state_hv_up(st, "hv9", "swp99", 0, &x), SNCP_E_NOT_AUTHORIZED);
}
END_TEST

START_TEST(test_reconfigure)
{
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    struct nnve_config *c2;
    char err[256];
    const char *t2 = "[global]\ncert=a\nkey=b\nca=c\n"
                     "[domain d1]\nports=swp1,swp2\ntags=300-301\n"
                     "[domain d2]\nports=swp3\ntags=200-299\n"
                     "[hypervisor hv1]\nport=swp1\nvns=5000-5010\n";
    ck_assert_int_eq(nnve_config_parse_string(t2, "t2", &c2, err, sizeof err), 0);
    ck_assert_int_eq(nnve_state_reconfigure(st, c2, 0), 0);
    /* VN 5000 keeps tag 100 (outside the new pool); new VNs come from the new pool */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_uint_eq(res.tags[0].vid, 100);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5001, 0), 0), 0);
    ck_assert_uint_eq(res.tags[0].vid, 300);
    /* hv2 lost its policy: default deny */
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5001, 0), 0), SNCP_E_NOT_AUTHORIZED);
    nnve_config_destroy(cfg);
    cfg = c2;
}
END_TEST

/* ---- failures ---- */

/* A dataplane operation fails: the request is INTERNAL_ERROR, so is every later request of
 * the same group, and committing the group rebuilds memory and dataplane from the store:
 * nothing of the group remains, nothing before it is lost, and the daemon is not degraded
 * (the store is fine). */
START_TEST(test_backend_failure_undone)
{
    char dir[] = "/tmp/nnve-state-XXXXXX", path[128], err[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    struct nnve_store *store;
    nnve_state_destroy(st);
    ck_assert_int_eq(nnve_store_open(dir, NNVE_SYNC_NORMAL, &store, err, sizeof err), 0);
    ck_assert_int_eq(nnve_state_create(cfg, &rec_be, store, 0, &st, err, sizeof err), 0);
    ck_assert_int_eq(nnve_state_hv_up(st, "hv1", "swp1", 0, &hv1), 0);
    ck_assert_int_eq(nnve_state_hv_up(st, "hv2", "swp2", 0, &hv2), 0);
    nnve_state_hv_set_session(hv1, &sess);
    nnve_state_hv_set_session(hv2, &sess);
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    mm->flags |= SNCP_F_IMPLICIT_CONNECT;
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_int_eq(nnve_state_commit(st, 0), 0);

    for (int round = 0; round < 2; round++) {
        ops[0] = '\0';
        /* round 0: a new TSI whose associate fails; round 1: a deassociate that fails */
        fail_verb = round == 0 ? "assoc" : "deassoc";
        mm =
            round == 0 ? msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 2) : msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 1);
        ck_assert_int_eq(req(hv1, mm, 10), SNCP_E_INTERNAL);
        ck_assert_ptr_nonnull(res.reason);
        ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5001, 0), 10), SNCP_E_INTERNAL);
        ck_assert_int_eq(nnve_state_commit(st, 10), SNCP_E_INTERNAL);
        ck_assert(!nnve_state_degraded(st));
        hv1 = nnve_state_hv_find(st, "hv1");
        hv2 = nnve_state_hv_find(st, "hv2");
        ck_assert_ptr_eq(nnve_state_hv_session(hv1), &sess);
        ck_assert_uint_eq(nnve_state_hv_hold_until(hv1), 0);
        ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 1);
        ck_assert_uint_eq(nnve_state_hv_vns(hv2), 0);
        ck_assert_uint_eq(cnt().tsis_activated, 1);
        ck_assert_uint_eq(cnt().tsis_associated, 0);
        ck_assert_uint_eq(cnt().reverts, (uint64_t)round + 1);
        /* the dataplane was declared again (TSI 1 activated) and reconciled; the refused
         * VN_CONNECT never reached it */
        ck_assert_int_eq(count_ops("act swp1 100 5000 1"), 1);
        ck_assert_int_eq(count_ops("reconcile"), 2);
        const char *end = "reconcile - 0 - 0 0;";
        ck_assert_str_eq(ops + strlen(ops) - strlen(end), end);
        ck_assert_int_eq(count_ops("5001"), 0);
    }
    /* the store holds TSI 1 only; the retry succeeds once the dataplane works */
    fail_verb = NULL;
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 2), 20), 0);
    ck_assert_int_eq(nnve_state_commit(st, 20), 0);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 2);
    ck_assert_uint_ge(cnt().backend_errors, 2);

    /* The dataplane also fails while it is declared again (TSI 1 is activated): degraded
     * until a full replay of the dataplane succeeds. */
    fail_verb = "act";
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 2), 30), SNCP_E_INTERNAL);
    ck_assert_int_eq(nnve_state_commit(st, 30), SNCP_E_INTERNAL);
    ck_assert(nnve_state_degraded(st));
    hv1 = nnve_state_hv_find(st, "hv1");
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEACTIVATE, 0, 1), 40), SNCP_E_INTERNAL);
    ck_assert_int_ne(nnve_state_recover(st, 50), 0);
    ck_assert(nnve_state_degraded(st));
    fail_verb = NULL;
    ops[0] = '\0';
    ck_assert_int_eq(nnve_state_recover(st, 60), 0);
    ck_assert(!nnve_state_degraded(st));
    ck_assert_uint_eq(cnt().degraded, 0);
    ck_assert_uint_eq(cnt().degraded_entered, 1);
    ck_assert_int_eq(count_ops("reconcile"), 2);
    ck_assert_int_eq(count_ops("act swp1 100 5000 1"), 1);
    ck_assert_int_eq(count_ops("assoc swp1 100 5000 2"), 1);
    ck_assert_int_eq(count_ops("add-vn swp1 100 5000"), 1);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 2), 70), 0);
    ck_assert_int_eq(nnve_state_commit(st, 70), 0);
    ck_assert_uint_eq(cnt().tsis_activated, 2);

    nnve_state_destroy(st);
    nnve_store_close(store);
    ck_assert_int_eq(nnve_state_create(cfg, NULL, NULL, 0, &st, err, sizeof err), 0);
    const char *const files[] = {"nnve-daemon.db", "nnve-daemon.db-wal", "nnve-daemon.db-shm"};
    for (unsigned i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nnve-state");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_vn_connect_tags);
    tcase_add_test(tc, test_vn_authorization_and_names);
    tcase_add_test(tc, test_vn_disconnect);
    tcase_add_test(tc, test_transitions);
    tcase_add_test(tc, test_no_such_vn_and_implicit);
    tcase_add_test(tc, test_conflicts_and_limits);
    tcase_add_test(tc, test_update);
    tcase_add_test(tc, test_migration);
    tcase_add_test(tc, test_sync);
    tcase_add_test(tc, test_hold_timer);
    tcase_add_test(tc, test_operator);
    tcase_add_test(tc, test_port_move);
    tcase_add_test(tc, test_reconfigure);
    tcase_add_test(tc, test_backend_failure_undone);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
