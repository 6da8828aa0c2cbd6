/* test-nnve-state.c: nnve-daemon's state machines with injected time and a recording
 * backend: every transition row, VN connect/disconnect, tags, migration, limits, SYNC,
 * the hold timer, operator actions, port moves, and a backend that fails (the group is
 * undone from the store). */
#include <check.h>
#include <dirent.h>
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
                               "max_tags_per_hypervisor=2\n"
                               "[domain d1]\nports=swp1,swp2\ntags=100-102\nreserved=101\n"
                               "[domain d2]\nports=swp3\ntags=200-299\n"
                               "[hypervisor hv1]\nport=swp1\nvns=5000-5010,blue\n"
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

/* hv1 (swp1) and hv2 (swp2) up, with sessions. */
static void hvs_up(void)
{
    ck_assert_int_eq(nnve_state_hv_up(st, "hv1", "swp1", 0, &hv1), 0);
    ck_assert_int_eq(nnve_state_hv_up(st, "hv2", "swp2", 0, &hv2), 0);
    nnve_state_hv_set_session(hv1, &sess);
    nnve_state_hv_set_session(hv2, &sess);
}

/* Makes the temporary directory `dir` (a mkdtemp() template) with a store in it and
 * replaces the fixture's state by one on that store (no hypervisor up).  Returns the store. */
static struct nnve_store *open_store_dir(char *dir)
{
    char err[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    struct nnve_store *store;
    ck_assert_int_eq(nnve_store_open(dir, NNVE_SYNC_NORMAL, &store, err, sizeof err), 0);
    nnve_state_destroy(st);
    ck_assert_int_eq(nnve_state_create(cfg, &rec_be, store, 0, &st, err, sizeof err), 0);
    return store;
}

/* Ends the state (st = NULL), closes `store` and removes its directory `dir`. */
static void close_store_dir(struct nnve_store *store, const char *dir)
{
    nnve_state_destroy(st);
    st = NULL;
    nnve_store_close(store);
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
    ck_assert_int_eq(rmdir(dir), 0);
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
    /* a name the catalogue does not have: NO_SUCH_VN, alone or next to a granted ID */
    unsigned before = n_ops;
    mm = msg(SNCP_MSG_VN_CONNECT, 0, 0);
    snprintf(mm->vn_name, sizeof mm->vn_name, "green");
    sncp_msg_set(mm, SNCP_TLV_VN_NAME);
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_NO_SUCH_VN);
    ck_assert_int_eq(res.error_tlv, SNCP_TLV_VN_NAME);
    mm = msg(SNCP_MSG_VN_CONNECT, 5003, 0);
    snprintf(mm->vn_name, sizeof mm->vn_name, "green");
    sncp_msg_set(mm, SNCP_TLV_VN_NAME);
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_NO_SUCH_VN);
    ck_assert_uint_eq(n_ops, before);
    /* the VN a request resolves to is what is authorized, and what the VAP is keyed by:
     * hv2 is granted 5000-5010, not blue (6000): adding the name of its own VN does not
     * make 6000 its own, and ID 6000 with a made-up name is no new VN either */
    mm = msg(SNCP_MSG_VN_CONNECT, 6000, 0);
    snprintf(mm->vn_name, sizeof mm->vn_name, "blue");
    sncp_msg_set(mm, SNCP_TLV_VN_NAME);
    ck_assert_int_eq(req(hv2, mm, 0), SNCP_E_NOT_AUTHORIZED);
    mm = msg(SNCP_MSG_VN_CONNECT, 6000, 0);
    snprintf(mm->vn_name, sizeof mm->vn_name, "x5000");
    sncp_msg_set(mm, SNCP_TLV_VN_NAME);
    ck_assert_int_eq(req(hv2, mm, 0), SNCP_E_CONFLICT);
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 6000, 9);
    mm->flags = SNCP_F_IMPLICIT_CONNECT;
    ck_assert_int_eq(req(hv2, mm, 0), SNCP_E_NOT_AUTHORIZED);
    ck_assert_uint_eq(n_ops, before);
    ck_assert_uint_eq(nnve_state_hv_vns(hv2), 0);
    /* the response names the VN as the catalogue does */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 6000, 0), 0), 0);
    ck_assert_str_eq(res.vn.name, "blue");
    json_t *vns = nnve_state_show_vns(st);
    size_t i;
    json_t *o;
    json_array_foreach(vns, i, o) ck_assert(json_is_integer(json_object_get(o, "vn_id")));
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
    /* SYNC_END without SYNC_BEGIN: UNEXPECTED_MESSAGE, sweeps nothing */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_SYNC_END, 0, 0), 0), SNCP_E_UNEXPECTED_MESSAGE);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 1);
}
END_TEST

/* Failures about an existing instance carry its state (TSI_STATE); SYNC_END outside a
 * resync is UNEXPECTED_MESSAGE and changes nothing. */
START_TEST(test_error_detail)
{
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5001, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1), 0), 0);
    unsigned before = n_ops;
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1), 0), SNCP_E_INVALID_STATE);
    ck_assert_int_eq(res.has_tsi_state, 1);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ACTIVATED);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ASSOCIATE, 5001, 1), 0), SNCP_E_CONFLICT);
    ck_assert_int_eq(res.has_tsi_state, 1);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ACTIVATED);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEACTIVATE, 0, 1), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5001, 1), 0), SNCP_E_CONFLICT);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ASSOCIATED);
    /* no instance at this hypervisor: no TSI_STATE */
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1), 0), SNCP_E_CONFLICT);
    ck_assert_int_eq(res.has_tsi_state, 0);
    before = n_ops;
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_SYNC_END, 0, 0), 0), SNCP_E_UNEXPECTED_MESSAGE);
    ck_assert_ptr_nonnull(res.reason);
    ck_assert_uint_eq(n_ops, before);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 1);
    ck_assert_uint_eq(nnve_state_hv_vns(hv1), 2);
    /* inside a resync SYNC_END is accepted once */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_SYNC_BEGIN, 0, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_SYNC_END, 0, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_SYNC_END, 0, 0), 0), SNCP_E_UNEXPECTED_MESSAGE);
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
    /* a held hypervisor: changed all the same, nobody to tell */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5001, 3), 0), SNCP_E_NO_SUCH_VN);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5001, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5001, 3), 0), 0);
    nnve_state_hv_down(st, hv1, 0);
    char t3[SNCP_TSI_ID_STRLEN];
    msg(0, 0, 3);
    sncp_tsi_id_format(&m.tsi, t3, sizeof t3);
    ck_assert_int_eq(nnve_state_op_tsi(st, SNCP_MSG_TSI_DEACTIVATE, t3, NULL, 0, 0, notify, NULL),
                     0);
    ck_assert_int_eq(count_ops("deact swp1 102 5001 3"), 1);
    ck_assert_int_eq(nnve_state_op_vn_disconnect(st, "hv1", "5001", 0, notify, NULL), 0);
    ck_assert_uint_eq(nnve_state_hv_vns(hv1), 1);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 1);
    ck_assert_int_eq(count_ops("remove-vn swp1 102 5001"), 1);
    ck_assert_int_eq(n_sent, 3);
    ck_assert_uint_eq(nnve_state_hv_hold_until(hv1), 30000); /* the hold timer still runs */
    ck_assert_int_eq(nnve_state_hv_up(st, "hv1", "swp1", 1, &hv1), 0);
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

/* §9.2 "last TSI gone": an implicit VN connection ends with its hypervisor's last TSI in the
 * VN (de-associate, sync sweep, operator de-associate); an explicit one stays; VN_CONNECT
 * makes an implicit connection explicit; the mark survives a restart. */
static struct sncp_msg *implicit_msg(enum sncp_msg_type type, uint32_t vn, int tsi)
{
    struct sncp_msg *mm = msg(type, vn, tsi);
    mm->flags = SNCP_F_IMPLICIT_CONNECT;
    return mm;
}

static const char *vap_state(uint32_t vn)
{
    static char buf[32];
    snprintf(buf, sizeof buf, "none");
    json_t *vns = nnve_state_show_vns(st);
    for (size_t i = 0; i < json_array_size(vns); i++) {
        json_t *v = json_array_get(vns, i);
        if (json_integer_value(json_object_get(v, "vn_id")) == (json_int_t)vn)
            snprintf(buf, sizeof buf, "%s/%zu", json_string_value(json_object_get(v, "state")),
                     json_array_size(json_object_get(v, "hypervisors")));
    }
    json_decref(vns);
    return buf;
}

START_TEST(test_implicit_release)
{
    char dir[] = "/tmp/nnve-state-XXXXXX", err[256];
    struct nnve_store *store = open_store_dir(dir);
    hvs_up();

    /* two TSIs of hv1 in 5000 (implicit), hv2 also in 5000 (explicit) */
    ck_assert_int_eq(req(hv1, implicit_msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1), 0), 0);
    ck_assert(res.flags & SNCP_F_IMPLICIT_CONNECT);
    ck_assert_int_eq(req(hv1, implicit_msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 2), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 3), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 1), 0), 0);
    ck_assert_uint_eq(nnve_state_hv_vns(hv1), 1);
    ck_assert_int_eq(count_ops("remove-vn"), 0);
    /* the last one: hv1 leaves the VN; swp2 (hv2) keeps it */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 2), 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_INIT);
    ck_assert_uint_eq(nnve_state_hv_vns(hv1), 0);
    ck_assert_int_eq(count_ops("remove-vn swp1 100 5000"), 1);
    ck_assert_str_eq(vap_state(5000), "connected/1");
    ck_assert_uint_eq(cnt().vn_connections, 1);
    /* hv2's explicit connection outlives its TSI */
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 3), 0), 0);
    ck_assert_uint_eq(nnve_state_hv_vns(hv2), 1);
    ck_assert_int_eq(count_ops("remove-vn swp2"), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_DISCONNECT, 5000, 0), 0), 0);
    ck_assert_str_eq(vap_state(5000), "hold-down/0");

    /* implicit, then VN_CONNECT: explicit from then on */
    ck_assert_int_eq(req(hv1, implicit_msg(SNCP_MSG_TSI_ACTIVATE, 5001, 4), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5001, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 4), 0), 0);
    ck_assert_uint_eq(nnve_state_hv_vns(hv1), 1);

    /* a resync that does not confirm the TSI sweeps it, and its implicit connection */
    ck_assert_int_eq(req(hv2, implicit_msg(SNCP_MSG_TSI_ACTIVATE, 5000, 5), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_SYNC_BEGIN, 0, 0), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_SYNC_END, 0, 0), 0), 0);
    ck_assert_uint_eq(nnve_state_hv_vns(hv2), 0);
    ck_assert_str_eq(vap_state(5000), "hold-down/0");

    /* the mark is stored: after a restart the last TSI still takes the connection along */
    ck_assert_int_eq(req(hv2, implicit_msg(SNCP_MSG_TSI_ACTIVATE, 5000, 6), 0), 0);
    ck_assert_int_eq(req(hv2, implicit_msg(SNCP_MSG_TSI_ACTIVATE, 5000, 7), 0), 0);
    ck_assert_int_eq(nnve_state_commit(st, 0), 0);
    nnve_state_destroy(st);
    ck_assert_int_eq(nnve_state_create(cfg, &rec_be, store, 0, &st, err, sizeof err), 0);
    ck_assert_int_eq(nnve_state_hv_up(st, "hv2", "swp2", 0, &hv2), 0);
    nnve_state_hv_set_session(hv2, &sess);
    ck_assert_uint_eq(nnve_state_hv_vns(hv2), 1);
    ops[0] = '\0';
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 6), 0), 0);
    ck_assert_uint_eq(nnve_state_hv_vns(hv2), 1);
    /* operator de-associate of the last TSI of a held hypervisor: it is gone altogether */
    nnve_state_hv_down(st, hv2, 0);
    char t7[SNCP_TSI_ID_STRLEN];
    msg(0, 0, 7);
    sncp_tsi_id_format(&m.tsi, t7, sizeof t7);
    ck_assert_int_eq(nnve_state_op_tsi(st, SNCP_MSG_TSI_DEASSOCIATE, t7, NULL, 0, 0, notify, NULL),
                     0);
    ck_assert_int_eq(count_ops("remove-vn swp2"), 1);
    ck_assert_ptr_null(nnve_state_hv_find(st, "hv2"));
    ck_assert_int_eq(nnve_state_commit(st, 0), 0);
    /* hv1 (held since the restart) kept its explicit 5001 */
    ck_assert_uint_eq(nnve_state_hv_vns(nnve_state_hv_find(st, "hv1")), 1);

    close_store_dir(store, dir);
}
END_TEST

/* §9.3 guard order: VN ok, VN match, other instance, limits, addresses.  A repeated
 * ADDRESS counts once, against the limit and in the ownership of the address. */
static unsigned tsi_addr_count(const char *identity)
{
    json_t *tsis = nnve_state_show_tsis(st);
    unsigned n = 0;
    for (size_t i = 0; i < json_array_size(tsis); i++) {
        json_t *t = json_array_get(tsis, i);
        if (!strcmp(json_string_value(json_object_get(t, "hypervisor")), identity))
            n += (unsigned)json_array_size(json_object_get(t, "addresses"));
    }
    json_decref(tsis);
    return n;
}

static struct sncp_msg *update_msg(uint8_t op, int tsi)
{
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_UPDATE, 0, tsi);
    mm->update_op = op;
    sncp_msg_set(mm, SNCP_TLV_UPDATE_OP);
    return mm;
}

START_TEST(test_guard_order)
{
    /* not connected beats too many addresses */
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1);
    for (uint8_t a = 1; a <= 4; a++)
        add_addr(mm, a);
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_NO_SUCH_VN);
    /* with IMPLICIT_CONNECT the limit refuses it, and no connection is left behind */
    mm->flags = SNCP_F_IMPLICIT_CONNECT;
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_RESOURCE_LIMIT);
    ck_assert_uint_eq(nnve_state_hv_vns(hv1), 0);
    ck_assert_uint_eq(n_ops, 0);
    /* 5 ADDRESS TLVs, 3 different: within max_addrs_per_tsi = 3, held once each */
    mm = implicit_msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    add_addr(mm, 1);
    add_addr(mm, 2);
    add_addr(mm, 1);
    add_addr(mm, 3);
    add_addr(mm, 2);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_uint_eq(tsi_addr_count("hv1"), 3);
    ck_assert_int_eq(count_ops("act swp1 100 5000 1 3"), 1);
    /* the same by TSI_UPDATE REPLACE */
    mm = update_msg(SNCP_UPDATE_REPLACE, 1);
    add_addr(mm, 4);
    add_addr(mm, 4);
    add_addr(mm, 1);
    add_addr(mm, 5);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_uint_eq(tsi_addr_count("hv1"), 3);
    /* removing a repeated address once frees it for another TSI */
    mm = update_msg(SNCP_UPDATE_REMOVE, 1);
    add_addr(mm, 4);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 2);
    add_addr(mm, 4);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    /* VN match beats the address limit: TSI 1 is in 5000 */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5001, 0), 0), 0);
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5001, 1);
    for (uint8_t a = 10; a <= 14; a++)
        add_addr(mm, a);
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_CONFLICT);
    ck_assert_uint_eq(res.error_tlv, SNCP_TLV_VN_ID);
    /* the other instance beats the TSI limit (hv2 full: 4 TSIs) */
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    for (int i = 20; i < 24; i++)
        ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_ASSOCIATE, 5000, i), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1), 0), SNCP_E_CONFLICT);
    ck_assert_uint_eq(res.error_tlv, SNCP_TLV_TSI_ID);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 24), 0), SNCP_E_RESOURCE_LIMIT);
    /* the limit beats an address held by another TSI */
    mm = msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 24);
    add_addr(mm, 1);
    ck_assert_int_eq(req(hv2, mm, 0), SNCP_E_RESOURCE_LIMIT);
    mm = msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 20);
    add_addr(mm, 1);
    ck_assert_int_eq(req(hv2, mm, 0), SNCP_E_CONFLICT);
    ck_assert_uint_eq(res.error_tlv, SNCP_TLV_ADDRESS);
}
END_TEST

/* Migration at the nNVE (§9.3): the source never leaves Activated before the destination
 * is (the nNVE activates the destination when the source leaves with MIGRATION_SOURCE), and
 * the instance that stays is declared again to the backend when the other goes. */
static const char *tsi_state_of(const char *identity, int tsi)
{
    static char buf[32];
    struct sncp_msg *mm = msg(0, 0, tsi);
    char tbuf[SNCP_TSI_ID_STRLEN];
    sncp_tsi_id_format(&mm->tsi, tbuf, sizeof tbuf);
    snprintf(buf, sizeof buf, "init");
    json_t *tsis = nnve_state_show_tsis(st);
    for (size_t i = 0; i < json_array_size(tsis); i++) {
        json_t *t = json_array_get(tsis, i);
        if (!strcmp(json_string_value(json_object_get(t, "hypervisor")), identity) &&
            !strcmp(json_string_value(json_object_get(t, "tsi")), tbuf))
            snprintf(buf, sizeof buf, "%s", json_string_value(json_object_get(t, "state")));
    }
    json_decref(tsis);
    return buf;
}

static struct sncp_msg *mig_msg(enum sncp_msg_type type, uint32_t vn, int tsi, int source)
{
    struct sncp_msg *mm = msg(type, vn, tsi);
    mm->flags = SNCP_F_MIGRATION | (source ? SNCP_F_MIGRATION_SOURCE : 0);
    return mm;
}

START_TEST(test_migration_rules)
{
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    /* the source de-associates before the destination activated: handed over first */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1), 0), 0);
    ck_assert_int_eq(req(hv2, mig_msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1, 0), 0), 0);
    ops[0] = '\0';
    ck_assert_int_eq(req(hv1, mig_msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 1, 1), 0), 0);
    ck_assert_str_eq(tsi_state_of("hv2", 1), "activated");
    ck_assert_str_eq(tsi_state_of("hv1", 1), "init");
    const char *act = strstr(ops, "act swp2 100 5000 1"), *gone = strstr(ops, "deassoc swp1");
    ck_assert(act && gone && act < gone);
    ck_assert_uint_eq(cnt().tsis_activated, 1);
    ck_assert_uint_eq(cnt().tsis_migrating, 0);
    /* the destination's own ACTIVATE (late) changes nothing; nor would an ASSOCIATE */
    ops[0] = '\0';
    ck_assert_int_eq(req(hv2, mig_msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1, 0), 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ACTIVATED);
    ck_assert_int_eq(req(hv2, mig_msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1, 0), 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ACTIVATED);
    ck_assert_str_eq(ops, "");
    /* once activated by its own request, row 6 holds again */
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1), 0), SNCP_E_INVALID_STATE);

    /* the source deactivates at switch-over (MIGRATION|MIGRATION_SOURCE): same handover */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 2), 0), 0);
    ck_assert_int_eq(req(hv2, mig_msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 2, 0), 0), 0);
    ck_assert_int_eq(req(hv1, mig_msg(SNCP_MSG_TSI_DEACTIVATE, 0, 2, 1), 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ASSOCIATED);
    ck_assert_str_eq(tsi_state_of("hv2", 2), "activated");
    /* without the migration flags a deactivate hands nothing over */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 3), 0), 0);
    ck_assert_int_eq(req(hv2, mig_msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 3, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEACTIVATE, 0, 3), 0), 0);
    ck_assert_str_eq(tsi_state_of("hv2", 3), "associated");
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 3), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 3), 0), 0);

    /* both Activated; the destination fails and leaves: the source is declared again */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 2), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 2), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 2), 0), 0);
    ck_assert_int_eq(req(hv2, mig_msg(SNCP_MSG_TSI_ACTIVATE, 5000, 2, 0), 0), 0);
    ops[0] = '\0';
    ck_assert_int_eq(req(hv2, mig_msg(SNCP_MSG_TSI_DEACTIVATE, 0, 2, 0), 0), 0);
    ck_assert_str_eq(ops, "deact swp2 100 5000 2 0;act swp1 100 5000 2 0;");
    ops[0] = '\0';
    ck_assert_int_eq(req(hv2, mig_msg(SNCP_MSG_TSI_ACTIVATE, 5000, 2, 0), 0), 0);
    ck_assert_int_eq(req(hv2, mig_msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 2, 0), 0), 0);
    ck_assert_str_eq(ops, "act swp2 100 5000 2 0;deassoc swp2 100 5000 2 0;act swp1 100 5000 2 0;");
    ck_assert_str_eq(tsi_state_of("hv1", 2), "activated");
    ck_assert_uint_eq(cnt().tsis_migrating, 0);
    /* the same when the destination's hold timer removes it */
    ck_assert_int_eq(req(hv2, mig_msg(SNCP_MSG_TSI_ACTIVATE, 5000, 2, 0), 0), 0);
    nnve_state_hv_down(st, hv2, 0);
    ops[0] = '\0';
    nnve_state_tick(st, 30000);
    ck_assert_ptr_nonnull(strstr(ops, "act swp1 100 5000 2 0;"));
    ck_assert_str_eq(tsi_state_of("hv1", 2), "activated");
}
END_TEST

/* Req-8 for some addresses (§6.7): TSI_DEACTIVATE with ADDRESS withdraws only those
 * addresses (their entries go, the set shrinks, the address is free again), the state
 * stays. */
START_TEST(test_deactivate_addresses)
{
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    add_addr(mm, 1);
    add_addr(mm, 2);
    add_addr(mm, 3);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ops[0] = '\0';
    mm = msg(SNCP_MSG_TSI_DEACTIVATE, 0, 1);
    add_addr(mm, 2);
    add_addr(mm, 9); /* not held: ignored */
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ACTIVATED);
    ck_assert_str_eq(tsi_state_of("hv1", 1), "activated");
    ck_assert_uint_eq(tsi_addr_count("hv1"), 2);
    ck_assert_str_eq(ops, "update swp1 100 5000 1 2;");
    ck_assert_uint_eq(cnt().tsis_activated, 1);
    /* repeated: nothing left to withdraw, nothing changes */
    ops[0] = '\0';
    mm = msg(SNCP_MSG_TSI_DEACTIVATE, 0, 1);
    add_addr(mm, 2);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_str_eq(ops, "");
    /* the withdrawn address is free for another TSI of the VN */
    mm = msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 2);
    add_addr(mm, 2);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    /* in Associated the same (no forwarding entries to remove, the set shrinks) */
    mm = msg(SNCP_MSG_TSI_DEACTIVATE, 0, 2);
    add_addr(mm, 2);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ASSOCIATED);
    ck_assert_uint_eq(tsi_addr_count("hv1"), 2);
    /* without ADDRESS the whole TSI deactivates */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEACTIVATE, 0, 1), 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ASSOCIATED);
    ck_assert_uint_eq(cnt().tsis_activated, 0);
}
END_TEST

/* nNVE-side address change (§9.3 row 24): checked like a TSI_UPDATE from the tNVE before
 * anything changes, applied to the dataplane, sent to the agent as TSI_UPDATE. */
START_TEST(test_operator_update)
{
    n_sent = 0;
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    add_addr(mm, 1);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 2);
    add_addr(mm, 2);
    ck_assert_int_eq(req(hv2, mm, 0), 0);
    char t1[SNCP_TSI_ID_STRLEN];
    msg(0, 0, 1);
    sncp_tsi_id_format(&m.tsi, t1, sizeof t1);
    ops[0] = '\0';
    const char *reason = NULL;
    const char *held[] = {"192.0.2.2"}, *many[] = {"192.0.2.3", "192.0.2.4", "192.0.2.5"},
               *one[] = {"192.0.2.3"};
    ck_assert_int_eq(nnve_state_op_tsi_update(st, t1, "add", held, 1, notify, NULL, &reason),
                     SNCP_E_CONFLICT);
    ck_assert_ptr_nonnull(reason);
    ck_assert_int_eq(nnve_state_op_tsi_update(st, t1, "add", many, 3, notify, NULL, &reason),
                     SNCP_E_RESOURCE_LIMIT);
    ck_assert_int_eq(nnve_state_op_tsi_update(st, t1, "swap", one, 1, notify, NULL, &reason),
                     SNCP_E_INVALID_VALUE);
    ck_assert_int_eq(nnve_state_op_tsi_update(st, "junk", "add", one, 1, notify, NULL, &reason),
                     SNCP_E_INVALID_VALUE);
    ck_assert_str_eq(ops, "");
    ck_assert_int_eq(n_sent, 0);
    ck_assert_int_eq(nnve_state_op_tsi_update(st, t1, "replace", one, 1, notify, NULL, &reason), 1);
    ck_assert_str_eq(ops, "update swp1 100 5000 1 1;");
    ck_assert_int_eq(sent[0].type, SNCP_MSG_TSI_UPDATE);
    ck_assert_int_eq(sent[0].update_op, SNCP_UPDATE_REPLACE);
    ck_assert_uint_eq(sent[0].n_addrs, 1);
    ck_assert_ptr_eq(sent_to[0], hv1);
    /* the old address is free, the new one held */
    mm = msg(SNCP_MSG_TSI_UPDATE, 0, 2);
    mm->update_op = SNCP_UPDATE_ADD;
    sncp_msg_set(mm, SNCP_TLV_UPDATE_OP);
    add_addr(mm, 1);
    ck_assert_int_eq(req(hv2, mm, 0), 0);
    add_addr(mm, 3);
    ck_assert_int_eq(req(hv2, mm, 0), SNCP_E_CONFLICT);
    /* a held hypervisor: changed, nobody told */
    nnve_state_hv_down(st, hv1, 0);
    ck_assert_int_eq(nnve_state_op_tsi_update(st, t1, "remove", one, 1, notify, NULL, &reason), 0);
    ck_assert_uint_eq(tsi_addr_count("hv1"), 0);
    ck_assert_int_eq(n_sent, 1);
}
END_TEST

/* The handover exception (a destination activated by the nNVE answers TSI_ASSOCIATE with
 * SUCCESS until its own TSI_ACTIVATE) survives a restart, and so does its end. */
static void restart_with(struct nnve_store *store, const char *identity, const char *port,
                         struct nnve_hv **hv)
{
    char err[256];
    ck_assert_int_eq(nnve_state_commit(st, 0), 0);
    nnve_state_destroy(st);
    ck_assert_int_eq(nnve_state_create(cfg, &rec_be, store, 0, &st, err, sizeof err), 0);
    ck_assert_int_eq(nnve_state_hv_up(st, identity, port, 0, hv), 0);
    nnve_state_hv_set_session(*hv, &sess);
}

START_TEST(test_handover_stored)
{
    char dir[] = "/tmp/nnve-state-XXXXXX";
    struct nnve_store *store = open_store_dir(dir);
    hvs_up();
    ck_assert_int_eq(req(hv1, implicit_msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1), 0), 0);
    struct sncp_msg *mm = mig_msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1, 0);
    mm->flags |= SNCP_F_IMPLICIT_CONNECT;
    ck_assert_int_eq(req(hv2, mm, 0), 0);
    ck_assert_int_eq(req(hv1, mig_msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 1, 1), 0), 0);
    restart_with(store, "hv2", "swp2", &hv2);
    ck_assert_str_eq(tsi_state_of("hv2", 1), "activated");
    ck_assert_uint_eq(cnt().tsis_migrating, 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1), 0), 0);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ACTIVATED);
    ck_assert_int_eq(req(hv2, mig_msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1, 0), 0), 0);
    restart_with(store, "hv2", "swp2", &hv2);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1), 0), SNCP_E_INVALID_STATE);
    close_store_dir(store, dir);
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
    /* another domain (§6.9): the tags do not move; the VN connections end, and once the
     * session is bound the agent is sent VN_DISCONNECT for each, then connects again and
     * gets the new domain's tag */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5001, 0), 0), 0);
    nnve_state_hv_down(st, hv1, 10);
    ops[0] = '\0';
    n_sent = 0;
    ck_assert_int_eq(nnve_state_hv_up(st, "hv1", "swp3", 20, &hv1), 0);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 0);
    ck_assert_uint_eq(nnve_state_hv_vns(hv1), 0);
    ck_assert_int_eq(count_ops("remove-vn swp2 100 5000"), 1);
    ck_assert_int_eq(count_ops("deassoc swp2 100 5000 1"), 1);
    nnve_state_hv_set_session(hv1, &sess);
    ck_assert_uint_eq(nnve_state_hv_moved_notify(st, hv1, notify, NULL), 2);
    ck_assert_int_eq(n_sent, 2);
    ck_assert_int_eq(sent[0].type, SNCP_MSG_VN_DISCONNECT);
    ck_assert_ptr_eq(sent_to[0], hv1);
    ck_assert_uint_eq(sent[0].vn_id + sent[1].vn_id, 5000 + 5001);
    ck_assert_uint_eq(nnve_state_hv_moved_notify(st, hv1, notify, NULL), 0); /* once */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_uint_eq(res.tags[0].vid, 200);
    /* a move back that nobody is told about (no session yet) frees its list */
    nnve_state_hv_down(st, hv1, 30);
    ck_assert_int_eq(nnve_state_hv_up(st, "hv1", "swp1", 40, &hv1), 0);
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
                     "max_tags_per_hypervisor=2\n"
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

/* ---- addresses: validity and ownership ---- */

START_TEST(test_addr_check)
{
    static const char *const good[] = {
        "192.0.2.1",        "10.0.0.1",    "255.255.255.254",
        "240.0.0.1",        "2001:db8::1", "fe80::1",
        "::ffff:192.0.2.1", "::2",         "192.0.2.9@02:00:00:00:00:01"};
    static const char *const bad[] = {"0.0.0.0",
                                      "0.1.2.3",
                                      "127.0.0.1",
                                      "127.255.0.9",
                                      "224.0.0.251",
                                      "239.255.255.250",
                                      "255.255.255.255",
                                      "::",
                                      "::1",
                                      "ff02::1",
                                      "ff05::1:3",
                                      "::ffff:127.0.0.1",
                                      "::ffff:255.255.255.255",
                                      "00:00:00:00:00:00",
                                      "01:00:5e:00:00:fb",
                                      "ff:ff:ff:ff:ff:ff",
                                      "33:33:00:00:00:01",
                                      "192.0.2.1@01:00:5e:00:00:01",
                                      "192.0.2.1@00:00:00:00:00:00",
                                      "ff02::2@52:54:00:00:00:01",
                                      "2001:db8::1@ff:ff:ff:ff:ff:ff"};
    struct sncp_addr a;
    const char *why;
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        ck_assert_int_eq(sncp_addr_parse(good[i], &a), 0);
        why = NULL;
        ck_assert_msg(sncp_addr_check(&a, &why) == 0, "%s refused: %s", good[i], why);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_int_eq(sncp_addr_parse(bad[i], &a), 0);
        why = NULL;
        ck_assert_msg(sncp_addr_check(&a, &why) == SNCP_E_INVALID_VALUE, "%s accepted", bad[i]);
        ck_assert_ptr_nonnull(why);
    }
    ck_assert_int_eq(sncp_addr_parse("224.0.0.1", &a), 0);
    sncp_addr_check(&a, &why);
    ck_assert_str_eq(why, "link-local multicast IPv4 address");
    ck_assert_int_eq(sncp_addr_parse("ff02::1", &a), 0);
    sncp_addr_check(&a, &why);
    ck_assert_str_eq(why, "link-local multicast IPv6 address");
    a.type = 9;
    ck_assert_int_eq(sncp_addr_check(&a, &why), SNCP_E_INVALID_VALUE);
    const uint8_t uni[6] = {0x52, 0x54, 0, 0, 0, 1}, local[6] = {0x02, 0, 0, 0, 0, 1};
    ck_assert_int_eq(sncp_mac_check(uni, &why), 0);
    ck_assert_int_eq(sncp_mac_check(local, &why), 0);
}
END_TEST

static void add_text_addr(struct sncp_msg *mm, const char *text)
{
    ck_assert_int_eq(sncp_addr_parse(text, &mm->addrs[mm->n_addrs++]), 0);
}

static struct sncp_msg *update(int tsi, uint8_t op, const char *text)
{
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_UPDATE, 0, tsi);
    mm->update_op = op;
    sncp_msg_set(mm, SNCP_TLV_UPDATE_OP);
    if (text)
        add_text_addr(mm, text);
    return mm;
}

START_TEST(test_addr_invalid_refused)
{
    /* an invalid address in ASSOCIATE: nothing happens, not even the implicit connect */
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    mm->flags = SNCP_F_IMPLICIT_CONNECT;
    add_text_addr(mm, "192.0.2.1");
    add_text_addr(mm, "224.0.0.251");
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_INVALID_VALUE);
    ck_assert_int_eq(res.error_tlv, SNCP_TLV_ADDRESS);
    ck_assert_ptr_nonnull(res.reason);
    ck_assert_uint_eq(nnve_state_hv_vns(hv1), 0);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 0);
    ck_assert_uint_eq(n_ops, 0);
    /* a multicast / zero TSI MAC */
    mm = msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1);
    mm->flags = SNCP_F_IMPLICIT_CONNECT;
    mm->tsi.mac[0] = 0x01;
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_INVALID_VALUE);
    ck_assert_int_eq(res.error_tlv, SNCP_TLV_TSI_ID);
    memset(mm->tsi.mac, 0, 6);
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_INVALID_VALUE);
    ck_assert_uint_eq(n_ops, 0);
    /* UPDATE ADD / REPLACE with one: unchanged; REMOVE of it is harmless */
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    mm->flags = SNCP_F_IMPLICIT_CONNECT;
    add_text_addr(mm, "192.0.2.1");
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_int_eq(req(hv1, update(1, SNCP_UPDATE_ADD, "ff:ff:ff:ff:ff:ff"), 0),
                     SNCP_E_INVALID_VALUE);
    ck_assert_int_eq(req(hv1, update(1, SNCP_UPDATE_REPLACE, "::1"), 0), SNCP_E_INVALID_VALUE);
    ck_assert_int_eq(req(hv1, update(1, SNCP_UPDATE_REPLACE, "255.255.255.255"), 0),
                     SNCP_E_INVALID_VALUE);
    ck_assert_int_eq(req(hv1, update(1, SNCP_UPDATE_REMOVE, "0.0.0.0"), 0), 0);
    ck_assert_int_eq(count_ops("update"), 0);
    json_t *tsis = nnve_state_show_tsis(st);
    json_t *addrs = json_object_get(json_array_get(tsis, 0), "addresses");
    ck_assert_uint_eq(json_array_size(addrs), 1);
    ck_assert_str_eq(json_string_value(json_array_get(addrs, 0)), "192.0.2.1");
    json_decref(tsis);
}
END_TEST

START_TEST(test_addr_ownership)
{
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    add_text_addr(mm, "192.0.2.1@52:00:00:00:00:01");
    add_text_addr(mm, "2001:db8::1");
    add_text_addr(mm, "52:00:00:00:aa:01");
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ops[0] = '\0';
    n_ops = 0;
    /* hv2 claims TSI 1's IP, IPv6, extra MAC, and TSI MAC: each refused, nothing done */
    static const char *const stolen[] = {"192.0.2.1", "2001:db8::1", "52:00:00:00:aa:01",
                                         "198.51.100.7@52:00:00:00:00:01"};
    for (size_t i = 0; i < sizeof stolen / sizeof *stolen; i++) {
        mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 2);
        mm->flags = SNCP_F_IMPLICIT_CONNECT;
        add_text_addr(mm, "198.51.100.2");
        add_text_addr(mm, stolen[i]);
        ck_assert_int_eq(req(hv2, mm, 0), SNCP_E_CONFLICT);
        ck_assert_int_eq(res.error_tlv, SNCP_TLV_ADDRESS);
    }
    /* a TSI_ID (another VM) with TSI 1's MAC, at hv2 and at hv1 itself */
    mm = msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 2);
    mm->flags = SNCP_F_IMPLICIT_CONNECT;
    mm->tsi.mac[5] = 1;
    ck_assert_int_eq(req(hv2, mm, 0), SNCP_E_CONFLICT);
    ck_assert_int_eq(res.error_tlv, SNCP_TLV_TSI_ID);
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_CONFLICT);
    ck_assert_uint_eq(nnve_state_hv_vns(hv2), 0);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv2), 0);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 1);
    ck_assert_uint_eq(n_ops, 0);
    /* the same addresses in another VN, or another significance domain: allowed */
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5001, 0), 0), 0);
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5001, 2);
    add_text_addr(mm, "192.0.2.1@52:00:00:00:00:01");
    ck_assert_int_eq(req(hv2, mm, 0), 0);
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 3);
    mm->flags = SNCP_F_IMPLICIT_CONNECT;
    add_text_addr(mm, "192.0.2.1@52:00:00:00:00:01");
    ck_assert_int_eq(req(hv3, mm, 0), 0);
    /* UPDATE ADD / REPLACE and a refreshing ACTIVATE that claim it: refused, unchanged */
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 4), 0), 0);
    ops[0] = '\0';
    ck_assert_int_eq(req(hv2, update(4, SNCP_UPDATE_ADD, "2001:db8::1"), 0), SNCP_E_CONFLICT);
    ck_assert_int_eq(req(hv2, update(4, SNCP_UPDATE_REPLACE, "192.0.2.1"), 0), SNCP_E_CONFLICT);
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 4);
    add_text_addr(mm, "52:00:00:00:aa:01");
    ck_assert_int_eq(req(hv2, mm, 0), SNCP_E_CONFLICT);
    ck_assert_int_eq(count_ops("update"), 0);
    /* the owner may re-declare its own addresses in any form */
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    add_text_addr(mm, "192.0.2.1");
    add_text_addr(mm, "52:00:00:00:00:01");
    add_text_addr(mm, "2001:db8::1@52:00:00:00:aa:01");
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    /* released by UPDATE REMOVE: the address may move (the MAC 52:..:aa:01 is still held) */
    ck_assert_int_eq(req(hv1, update(1, SNCP_UPDATE_REMOVE, "192.0.2.1"), 0), 0);
    ck_assert_int_eq(req(hv2, update(4, SNCP_UPDATE_ADD, "192.0.2.1"), 0), 0);
    ck_assert_int_eq(req(hv1, update(1, SNCP_UPDATE_ADD, "192.0.2.1"), 0), SNCP_E_CONFLICT);
    ck_assert_int_eq(req(hv2, update(4, SNCP_UPDATE_ADD, "52:00:00:00:aa:01"), 0), SNCP_E_CONFLICT);
    /* withdrawn by the operator */
    char t1[SNCP_TSI_ID_STRLEN];
    msg(0, 0, 1);
    sncp_tsi_id_format(&m.tsi, t1, sizeof t1);
    const char *w[] = {"2001:db8::1@52:00:00:00:aa:01"};
    n_sent = 0;
    ck_assert_int_eq(nnve_state_op_tsi(st, SNCP_MSG_TSI_DEACTIVATE, t1, w, 1, 0, notify, NULL), 1);
    ck_assert_int_eq(req(hv2, update(4, SNCP_UPDATE_ADD, "52:00:00:00:aa:01"), 0), 0);
    /* released by DEASSOCIATE: TSI 1's own MAC becomes free */
    mm = msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 2);
    mm->tsi.mac[5] = 1;
    ck_assert_int_eq(req(hv2, mm, 0), SNCP_E_CONFLICT);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 1), 0), 0);
    mm = msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 2);
    mm->tsi.mac[5] = 1;
    ck_assert_int_eq(req(hv2, mm, 0), 0);
    /* released by VN disconnect and the hold timer */
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_DISCONNECT, 5000, 0), 0), 0);
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    add_text_addr(mm, "192.0.2.1@52:00:00:00:aa:01");
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    nnve_state_hv_down(st, hv1, 0);
    nnve_state_tick(st, 31000);
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 5);
    mm->flags = SNCP_F_IMPLICIT_CONNECT;
    add_text_addr(mm, "192.0.2.1@52:00:00:00:aa:01");
    ck_assert_int_eq(req(hv2, mm, 0), 0);
}
END_TEST

START_TEST(test_addr_migration_twin)
{
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    add_text_addr(mm, "192.0.2.1@52:00:00:00:00:01");
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    /* the destination declares the same (and more) addresses: its own TSI */
    mm = msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1);
    mm->flags = SNCP_F_MIGRATION;
    add_text_addr(mm, "192.0.2.1@52:00:00:00:00:01");
    add_text_addr(mm, "2001:db8::1");
    ck_assert_int_eq(req(hv2, mm, 0), 0);
    ck_assert_uint_eq(cnt().tsis_migrating, 2);
    /* a third instance, even with the flag, from another domain: CONFLICT, nothing done */
    ops[0] = '\0';
    n_ops = 0;
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    mm->flags = SNCP_F_MIGRATION | SNCP_F_IMPLICIT_CONNECT;
    ck_assert_int_eq(req(hv3, mm, 0), SNCP_E_CONFLICT);
    ck_assert_int_eq(res.error_tlv, SNCP_TLV_TSI_ID);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv3), 0);
    ck_assert_uint_eq(nnve_state_hv_vns(hv3), 0);
    ck_assert_uint_eq(n_ops, 0);
    /* another TSI cannot take the twin's addresses */
    mm = msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 2);
    add_text_addr(mm, "2001:db8::1");
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_CONFLICT);
    /* switch-over: the source leaves; the destination keeps everything it declared */
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1), 0), 0);
    mm = msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 1);
    mm->flags = SNCP_F_MIGRATION | SNCP_F_MIGRATION_SOURCE;
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_uint_eq(cnt().tsis_migrating, 0);
    mm = msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 2);
    add_text_addr(mm, "192.0.2.1");
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_CONFLICT);
    /* a new migration is possible again (two instances at most, not two ever) */
    mm = msg(SNCP_MSG_TSI_ASSOCIATE, 5000, 1);
    mm->flags = SNCP_F_MIGRATION | SNCP_F_IMPLICIT_CONNECT;
    ck_assert_int_eq(req(hv3, mm, 0), 0);
}
END_TEST

START_TEST(test_addr_restored)
{
    char dir[] = "/tmp/nnve-state-XXXXXX", err[256];
    struct nnve_store *store = open_store_dir(dir);
    ck_assert_int_eq(nnve_state_hv_up(st, "hv1", "swp1", 0, &hv1), 0);
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    mm->flags = SNCP_F_IMPLICIT_CONNECT;
    add_text_addr(mm, "192.0.2.1@52:00:00:00:00:01");
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_int_eq(nnve_store_commit(store), 0);
    nnve_state_destroy(st);
    /* restart: the loaded TSI owns its addresses again */
    ck_assert_int_eq(nnve_state_create(cfg, &rec_be, store, 0, &st, err, sizeof err), 0);
    ck_assert_int_eq(nnve_state_hv_up(st, "hv2", "swp2", 0, &hv2), 0);
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 2);
    mm->flags = SNCP_F_IMPLICIT_CONNECT;
    add_text_addr(mm, "192.0.2.1");
    ck_assert_int_eq(req(hv2, mm, 0), SNCP_E_CONFLICT);
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 2);
    mm->flags = SNCP_F_IMPLICIT_CONNECT;
    mm->tsi.mac[5] = 1;
    ck_assert_int_eq(req(hv2, mm, 0), SNCP_E_CONFLICT);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv2), 0);
    close_store_dir(store, dir);
}
END_TEST

/* Replaces the fixture's config and state with `text` (hv1..hv3 up with sessions). */
static void reload_fixture(const char *text)
{
    char err[256];
    nnve_state_destroy(st);
    nnve_config_destroy(cfg);
    ops[0] = '\0';
    n_ops = 0;
    ck_assert_msg(nnve_config_parse_string(text, "t", &cfg, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(nnve_state_create(cfg, &rec_be, NULL, 0, &st, err, sizeof err), 0);
    hvs_up();
}

/* SIGHUP: the fixture's domains and blue, with `hvs` as the [hypervisor] sections. */
static void reconfigure_hvs(const char *hvs)
{
    char text[1024], err[256];
    snprintf(text, sizeof text,
             "[global]\ncert=a\nkey=b\nca=c\nmax_tags_per_hypervisor=2\n"
             "[domain d1]\nports=swp1,swp2\ntags=100-102\nreserved=101\n"
             "[domain d2]\nports=swp3\ntags=200-299\n[vn blue]\nid=6000\n%s",
             hvs);
    struct nnve_config *c2;
    ck_assert_msg(nnve_config_parse_string(text, "t2", &c2, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(nnve_state_reconfigure(st, c2, 0), 0);
    nnve_config_destroy(cfg);
    cfg = c2;
}

/* Every TSI request is authorized against the VN its instance is in. */
START_TEST(test_tsi_authorization)
{
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_ACTIVATE, 6000, 1); /* blue, hv1 only */
    mm->flags = SNCP_F_IMPLICIT_CONNECT;
    add_addr(mm, 1);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    /* hv2 cannot touch hv1's instance: it is keyed by (TSI_ID, identity) */
    mm = msg(SNCP_MSG_TSI_UPDATE, 6000, 1);
    mm->update_op = SNCP_UPDATE_ADD;
    sncp_msg_set(mm, SNCP_TLV_UPDATE_OP);
    add_addr(mm, 2);
    ck_assert_int_eq(req(hv2, mm, 0), SNCP_E_NO_SUCH_TSI);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_DEACTIVATE, 6000, 1), 0), SNCP_E_NO_SUCH_TSI);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_DEASSOCIATE, 6000, 1), 0), SNCP_E_NO_SUCH_TSI);
    ck_assert_uint_eq(cnt().tsis_activated, 1);
    /* the grant goes away (the reload's enforcement not run yet): UPDATE is refused, a VN
     * named in the request does not matter; DEACTIVATE and DEASSOCIATE only take away */
    reconfigure_hvs("[hypervisor hv1]\nport=swp1\nvns=5000-5010\n"
                    "[hypervisor hv2]\nport=swp2\nvns=5000-5010\n"
                    "[hypervisor hv3]\nport=swp3\nvns=5000\n");
    unsigned before = n_ops;
    mm = msg(SNCP_MSG_TSI_UPDATE, 5000, 1);
    mm->update_op = SNCP_UPDATE_REPLACE;
    sncp_msg_set(mm, SNCP_TLV_UPDATE_OP);
    add_addr(mm, 9);
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_NOT_AUTHORIZED);
    ck_assert_int_eq(res.tsi_state, SNCP_TSI_ACTIVATED);
    ck_assert_uint_eq(n_ops, before);
    /* re-activating it is refused too (its VN is resolved and authorized) */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 6000, 1), 0), SNCP_E_NOT_AUTHORIZED);
    /* another VN: not connected is checked first (§9.3), then the VN match */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1), 0), SNCP_E_NO_SUCH_VN);
    ck_assert_int_eq(req(hv1, implicit_msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1), 0), SNCP_E_CONFLICT);
    ck_assert_uint_eq(nnve_state_hv_vns(hv1), 1); /* no implicit connection left behind */
    ck_assert_uint_eq(n_ops, before);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEACTIVATE, 0, 1), 0), 0);
    ck_assert_int_eq(count_ops("deact swp1 100 6000 1"), 1);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_DEASSOCIATE, 0, 1), 0), 0);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 0);
}
END_TEST

/* A reload withdraws at once what it no longer grants (VN, identity, port), as operator
 * disconnects, and touches nothing else. */
START_TEST(test_withdraw_on_reload)
{
    n_sent = 0;
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv3, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 6000, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 6000, 2), 0), 0);
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 3), 0), 0);
    ck_assert_int_eq(req(hv3, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 4), 0), 0);
    struct nnve_hv *hv4;
    ck_assert_int_eq(nnve_state_hv_up(st, "hv4", "swp2", 0, &hv4), 0); /* held, no config */
    nnve_state_hv_down(st, hv4, 0);
    /* hv1 loses blue; hv2 is moved to swp1 by the operator; hv3 is gone */
    reconfigure_hvs("[hypervisor hv1]\nport=swp1\nvns=5000-5010\n"
                    "[hypervisor hv2]\nport=swp1\nvns=5000-5010\n");
    ops[0] = '\0';
    ck_assert_int_eq(nnve_state_enforce(st, 5, notify, NULL), 3);
    ck_assert_int_eq(n_sent, 3);
    for (int i = 0; i < n_sent; i++) {
        ck_assert_int_eq(sent[i].type, SNCP_MSG_VN_DISCONNECT);
        if (sent_to[i] == hv1)
            ck_assert(sent[i].vn_id == 6000 && !strcmp(sent[i].vn_name, "blue"));
        else
            ck_assert(sent[i].vn_id == 5000 && (sent_to[i] == hv2 || sent_to[i] == hv3));
    }
    ck_assert_int_eq(count_ops("deassoc swp1 102 6000 2"), 1);
    ck_assert_int_eq(count_ops("deassoc swp2 100 5000 3"), 1);
    ck_assert_int_eq(count_ops("deassoc swp3 200 5000 4"), 1);
    ck_assert_int_eq(count_ops("remove-vn swp1 102 6000"), 1);
    ck_assert_int_eq(count_ops("remove-vn swp2 100 5000"), 1);
    /* hv1 keeps what it is still granted, untouched */
    ck_assert_int_eq(count_ops("swp1 100 5000"), 0);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 1);
    ck_assert_uint_eq(nnve_state_hv_vns(hv1), 1);
    ck_assert_uint_eq(nnve_state_hv_vns(hv2), 0);
    ck_assert_uint_eq(nnve_state_hv_vns(hv3), 0);
    ck_assert_ptr_null(nnve_state_hv_find(st, "hv4")); /* held without state: gone */
    /* a second run changes nothing */
    ck_assert_int_eq(nnve_state_enforce(st, 6, notify, NULL), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 6000, 0), 0), SNCP_E_NOT_AUTHORIZED);
}
END_TEST

/* A reload that moves a port to another domain: its VNs are withdrawn, new ones take their
 * tags from the new domain. */
START_TEST(test_port_changes_domain)
{
    n_sent = 0;
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv3, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_uint_eq(res.tags[0].vid, 200);
    char err[256];
    struct nnve_config *c2;
    ck_assert_int_eq(nnve_config_parse_string("[global]\ncert=a\nkey=b\nca=c\n"
                                              "[domain d1]\nports=swp1,swp2,swp3\ntags=100-109\n"
                                              "[domain d2]\nports=swp4\ntags=200-299\n"
                                              "[hypervisor hv1]\nport=swp1\nvns=5000-5010\n"
                                              "[hypervisor hv3]\nport=swp3\nvns=5000\n",
                                              "t2", &c2, err, sizeof err),
                     0);
    ck_assert_int_eq(nnve_state_reconfigure(st, c2, 0), 0);
    nnve_config_destroy(cfg);
    cfg = c2;
    ck_assert_int_eq(nnve_state_enforce(st, 0, notify, NULL), 1);
    ck_assert_ptr_eq(sent_to[0], hv3);
    ck_assert_uint_eq(nnve_state_hv_vns(hv1), 1);
    ck_assert_int_eq(req(hv3, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_uint_eq(res.tags[0].vid, 100); /* d1's VAP of 5000, shared with hv1 */
    ck_assert_int_eq(nnve_state_enforce(st, 0, notify, NULL), 0);
}
END_TEST

/* Per-hypervisor limits: VN connections, tags held alone in a domain, TSIs, addresses. */
START_TEST(test_hv_limits)
{
    reload_fixture("[global]\ncert=a\nkey=b\nca=c\n"
                   "[domain d1]\nports=swp1,swp2\ntags=100-103\n"
                   "[hypervisor hv1]\nport=swp1\nvns=5000-5010\n"
                   "max_vns=3\nmax_tsis=2\nmax_addrs_per_tsi=1\n"
                   "[hypervisor hv2]\nport=swp2\nvns=5000-5010\n");
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5001, 0), 0), 0);
    /* the pool has 4 tags: hv1 may hold 2 alone */
    unsigned before = n_ops;
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5002, 0), 0), SNCP_E_RESOURCE_LIMIT);
    ck_assert_ptr_nonnull(strstr(res.reason, "tag share"));
    struct sncp_msg *mm = msg(SNCP_MSG_TSI_ASSOCIATE, 5002, 1);
    mm->flags = SNCP_F_IMPLICIT_CONNECT;
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_RESOURCE_LIMIT);
    ck_assert_uint_eq(n_ops, before);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 0);
    /* a shared VN costs the pool nothing: hv1 may take one more */
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5000, 0), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5002, 0), 0), 0);
    /* max_vns = 3 */
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_VN_CONNECT, 5003, 0), 0), SNCP_E_RESOURCE_LIMIT);
    ck_assert_ptr_nonnull(strstr(res.reason, "VN connection limit"));
    /* the others still get a tag */
    ck_assert_int_eq(req(hv2, msg(SNCP_MSG_VN_CONNECT, 5004, 0), 0), 0);
    /* TSIs and addresses */
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    add_addr(mm, 1);
    add_addr(mm, 2);
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_RESOURCE_LIMIT);
    ck_assert_int_eq(res.error_tlv, SNCP_TLV_ADDRESS);
    mm = msg(SNCP_MSG_TSI_ACTIVATE, 5000, 1);
    add_addr(mm, 1);
    ck_assert_int_eq(req(hv1, mm, 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 2), 0), 0);
    ck_assert_int_eq(req(hv1, msg(SNCP_MSG_TSI_ACTIVATE, 5000, 3), 0), SNCP_E_RESOURCE_LIMIT);
    mm = msg(SNCP_MSG_TSI_UPDATE, 0, 1);
    mm->update_op = SNCP_UPDATE_ADD;
    sncp_msg_set(mm, SNCP_TLV_UPDATE_OP);
    add_addr(mm, 2);
    ck_assert_int_eq(req(hv1, mm, 0), SNCP_E_RESOURCE_LIMIT);
    /* hv2 has the global limits */
    for (int i = 4; i < 8; i++)
        ck_assert_int_eq(req(hv2, msg(SNCP_MSG_TSI_ACTIVATE, 5000, i), 0), 0);
    ck_assert_uint_eq(nnve_state_hv_tsis(hv1), 2);
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
    hvs_up();
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
    tcase_add_test(tc, test_error_detail);
    tcase_add_test(tc, test_hold_timer);
    tcase_add_test(tc, test_operator);
    tcase_add_test(tc, test_implicit_release);
    tcase_add_test(tc, test_guard_order);
    tcase_add_test(tc, test_migration_rules);
    tcase_add_test(tc, test_handover_stored);
    tcase_add_test(tc, test_deactivate_addresses);
    tcase_add_test(tc, test_operator_update);
    tcase_add_test(tc, test_port_move);
    tcase_add_test(tc, test_reconfigure);
    tcase_add_test(tc, test_addr_check);
    tcase_add_test(tc, test_addr_invalid_refused);
    tcase_add_test(tc, test_addr_ownership);
    tcase_add_test(tc, test_addr_migration_twin);
    tcase_add_test(tc, test_addr_restored);
    tcase_add_test(tc, test_tsi_authorization);
    tcase_add_test(tc, test_withdraw_on_reload);
    tcase_add_test(tc, test_hv_limits);
    tcase_add_test(tc, test_port_changes_domain);
    tcase_add_test(tc, test_backend_failure_undone);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
