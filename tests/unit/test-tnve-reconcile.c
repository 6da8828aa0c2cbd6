/* test-tnve-reconcile.c: Check suite for tnve-agent's reconciler (tnve-agent/reconcile.c)
 * with a fake transport and injected time: the SYNC sequence and its content, lifecycle
 * transitions, VN connect/disconnect, one request per TSI and no duplicate sends, retries
 * with bounded backoff, nNVE-initiated de-association and VN disconnect converging back,
 * tags kept across an agent restart, hook waits (success, refusal, timeout), migration
 * flags, address updates.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../tnve-agent/reconcile.h"
#include "sncp-error.h"
#include "sncp-msg.h"
#include "snv-log.h"

enum { MAX_SENT = 512 };

struct fake {
    struct sncp_msg sent[MAX_SENT];
    uint64_t cookie[MAX_SENT];
    int answered[MAX_SENT];
    int n;
    struct sncp_msg resp[64];
    uint8_t resp_req_type[64];
    int n_resp;
    int fail_send;
    int window; /* > 0: SNCP_E_BUSY with this many requests unanswered, as a full session */
    int wakes;
    int xid;
};

static struct fake F;
static struct sncp_msg RSP; /* scratch response */

static int64_t f_send(void *aux, struct sncp_msg *m, uint64_t cookie)
{
    (void)aux;
    if (F.fail_send)
        return SNCP_E_NOT_ESTABLISHED;
    int unanswered = 0;
    for (int i = 0; i < F.n; i++)
        unanswered += !F.answered[i];
    if (F.window && unanswered >= F.window)
        return SNCP_E_BUSY;
    ck_assert_int_lt(F.n, MAX_SENT);
    m->xid = (uint32_t)++F.xid;
    F.sent[F.n] = *m;
    F.cookie[F.n] = cookie;
    F.answered[F.n] = 0;
    F.n++;
    return m->xid;
}

static int f_respond(void *aux, const struct sncp_msg *req, struct sncp_msg *rsp)
{
    (void)aux;
    ck_assert_int_lt(F.n_resp, 64);
    F.resp[F.n_resp] = *rsp;
    F.resp_req_type[F.n_resp] = req->type;
    F.n_resp++;
    return 0;
}

static void f_wake(void *aux)
{
    (void)aux;
    F.wakes++;
}

static uint64_t acked_stamp;
static int acked_calls;

static void f_acked(void *aux, uint64_t stamp, enum sncp_tsi_state state)
{
    (void)state;
    (void)aux;
    acked_calls++;
    acked_stamp = stamp;
}

/* The VN this nNVE does not serve (a dual-homed host's standby), 0: every VN. */
static uint32_t unserved_vn;

static int f_serves(void *aux, const struct tnve_vn *vn)
{
    (void)aux;
    return !unserved_vn || vn->id != unserved_vn;
}

static uint64_t sent_stamp;
static int sent_calls;

static void f_sent(void *aux, uint64_t stamp)
{
    (void)aux;
    sent_calls++;
    sent_stamp = stamp;
}

static const struct tnve_rec_ops OPS = {f_send, f_respond, f_wake, NULL, f_acked, f_serves, f_sent};

/* A dataplane that records its calls, "set PORT VID" / "clear PORT VID IN_USE". */
static char dp_calls[16][64];
static int n_dp_calls;

static int rec_port_set(struct tnve_dp *dp, const char *ifname, uint16_t vid)
{
    (void)dp;
    ck_assert_int_lt(n_dp_calls, 16);
    snprintf(dp_calls[n_dp_calls++], sizeof dp_calls[0], "set %s %u", ifname, vid);
    return 0;
}

static int rec_port_clear(struct tnve_dp *dp, const char *ifname, uint16_t vid, int in_use)
{
    (void)dp;
    ck_assert_int_lt(n_dp_calls, 16);
    snprintf(dp_calls[n_dp_calls++], sizeof dp_calls[0], "clear %s %u %d", ifname, vid, in_use);
    return 0;
}

static const struct tnve_dp_class recording_dp_class = {
    .name = "recording", .port_set = rec_port_set, .port_clear = rec_port_clear};

/* When set, mk() uses the recording dataplane and this ports file. */
static const char *mk_dp_state_file;

static struct tnve_rec *mk(const char *state_file)
{
    memset(&F, 0, sizeof F);
    struct tnve_rec_config cfg = {
        .retry_min_ms = 100,
        .retry_max_ms = 1600,
        .state_file = state_file,
        .dp_state_file = mk_dp_state_file,
        .dp_class = mk_dp_state_file ? &recording_dp_class : &tnve_dp_none_class,
        .seed = 42,
    };
    static struct tnve_dp *dp;
    if (!dp) {
        struct tnve_dp_config dc = {NULL, NULL};
        ck_assert_int_eq(tnve_dp_none_class.create(&dc, &dp), 0);
    }
    cfg.dp = dp;
    struct tnve_rec *r = tnve_rec_create(&cfg, &OPS, NULL);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* A domain with n vNICs 52:54:00:00:<d>:<i>, each in VN vn_ids[i] (0 = no VN). */
static void mk_dom(struct tnve_domxml *x, int d, int n, const uint32_t *vn_ids)
{
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "dom%d", d);
    for (int i = 0; i < 16; i++)
        x->uuid[i] = (uint8_t)(0x10 + d + i);
    x->n_vnics = (unsigned)n;
    for (int i = 0; i < n; i++) {
        uint8_t mac[6] = {0x52, 0x54, 0, 0, (uint8_t)d, (uint8_t)i};
        memcpy(x->vnics[i].mac, mac, 6);
        snprintf(x->vnics[i].target, sizeof x->vnics[i].target, "vnet%d_%d", d, i);
        x->vnics[i].vn.id = vn_ids[i];
        if (vn_ids[i])
            snprintf(x->vnics[i].vn.name, sizeof x->vnics[i].vn.name, "vn%u", vn_ids[i]);
    }
}

/* Index of the first unanswered sent message of `type`, or -1. */
static int pending(uint8_t type)
{
    for (int i = 0; i < F.n; i++)
        if (!F.answered[i] && F.sent[i].type == type)
            return i;
    return -1;
}

static int count_type(uint8_t type)
{
    int c = 0;
    for (int i = 0; i < F.n; i++)
        if (F.sent[i].type == type)
            c++;
    return c;
}

static uint32_t answer_retry_after; /* > 0: answer() sends RETRY_AFTER */

static void answer(struct tnve_rec *r, int i, uint16_t status, uint16_t tag, int state,
                   uint64_t now)
{
    ck_assert_int_ge(i, 0);
    ck_assert(!F.answered[i]);
    F.answered[i] = 1;
    sncp_msg_init(&RSP, SNCP_MSG_RESPONSE, F.sent[i].xid);
    RSP.status = status;
    sncp_msg_set(&RSP, SNCP_TLV_STATUS);
    if (tag) {
        RSP.tags[0].vid = tag;
        RSP.tags[0].pcp = SNCP_PCP_NONE;
        RSP.n_tags = 1;
        sncp_msg_set(&RSP, SNCP_TLV_LOCAL_TAG);
    }
    if (state >= 0) {
        RSP.tsi_state = (uint8_t)state;
        sncp_msg_set(&RSP, SNCP_TLV_TSI_STATE);
    }
    if (status != SNCP_STATUS_SUCCESS) {
        snprintf(RSP.reason, sizeof RSP.reason, "test says %s", sncp_status_token(status));
        sncp_msg_set(&RSP, SNCP_TLV_REASON);
    }
    if (answer_retry_after) {
        RSP.retry_after_ms = answer_retry_after;
        sncp_msg_set(&RSP, SNCP_TLV_RETRY_AFTER);
    }
    tnve_rec_response(r, F.cookie[i], &RSP, 0, now);
}

static void answer_ok(struct tnve_rec *r, uint8_t type, uint16_t tag, int state, uint64_t now)
{
    answer(r, pending(type), SNCP_STATUS_SUCCESS, tag, state, now);
}

static const char *tsi_field(struct tnve_rec *r, int idx, const char *key, char *buf, size_t cap)
{
    json_t *a = tnve_rec_tsis_json(r);
    json_t *o = json_array_get(a, (size_t)idx);
    ck_assert_ptr_nonnull(o);
    json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        snprintf(buf, cap, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
    else
        snprintf(buf, cap, "null");
    json_decref(a);
    return buf;
}

static size_t n_tsis(struct tnve_rec *r)
{
    json_t *a = tnve_rec_tsis_json(r);
    size_t n = json_array_size(a);
    json_decref(a);
    return n;
}

/* Brings one running domain with one vNIC in VN 5000 to Activated with tag 100 at t=1000. */
static struct tnve_rec *steady(const char *state_file, struct tnve_domxml *x)
{
    struct tnve_rec *r = mk(state_file);
    uint32_t vns[] = {5000};
    mk_dom(x, 1, 1, vns);
    tnve_rec_session_up(r, 1000);
    ck_assert_int_eq(F.n, 0); /* no SYNC before the inventory is complete */
    tnve_rec_inventory_begin(r);
    ck_assert_int_eq(tnve_rec_domain_update(r, x, TNVE_EFFECT_ACTIVATE, 0, "running", 1000), 0);
    tnve_rec_inventory_end(r, 1000);
    ck_assert_int_eq(F.n, 1);
    ck_assert_int_eq(F.sent[0].type, SNCP_MSG_SYNC_BEGIN);
    tnve_rec_run(r, 1000);
    ck_assert_int_eq(F.n, 1); /* nothing before SYNC_BEGIN is answered */
    answer_ok(r, SNCP_MSG_SYNC_BEGIN, 0, -1, 1001);
    tnve_rec_run(r, 1001);
    ck_assert_int_eq(F.n, 2);
    ck_assert_int_eq(F.sent[1].type, SNCP_MSG_VN_CONNECT);
    ck_assert_uint_eq(F.sent[1].vn_id, 5000);
    ck_assert_str_eq(F.sent[1].vn_name, "vn5000");
    tnve_rec_run(r, 1002);
    ck_assert_int_eq(F.n, 2); /* TSI waits for its VN */
    answer_ok(r, SNCP_MSG_VN_CONNECT, 100, -1, 1003);
    tnve_rec_run(r, 1003);
    ck_assert_int_eq(F.n, 3);
    ck_assert_int_eq(F.sent[2].type, SNCP_MSG_TSI_ACTIVATE);
    ck_assert_uint_eq(F.sent[2].vn_id, 5000);
    ck_assert_int_eq(F.sent[2].n_preferred_tags, 1);
    ck_assert_uint_eq(F.sent[2].preferred_tags[0].vid, 100);
    ck_assert_int_eq(memcmp(F.sent[2].tsi.uuid, x->uuid, 16), 0);
    tnve_rec_run(r, 1004);
    ck_assert_int_eq(F.n, 3);
    answer_ok(r, SNCP_MSG_TSI_ACTIVATE, 100, SNCP_TSI_ACTIVATED, 1005);
    tnve_rec_run(r, 1005);
    ck_assert_int_eq(F.n, 4);
    ck_assert_int_eq(F.sent[3].type, SNCP_MSG_SYNC_END);
    answer_ok(r, SNCP_MSG_SYNC_END, 0, -1, 1006);
    tnve_rec_run(r, 1006);
    ck_assert_str_eq(tnve_rec_phase(r), "ready");
    char b[64];
    ck_assert_str_eq(tsi_field(r, 0, "acked", b, sizeof b), "activated");
    ck_assert_str_eq(tsi_field(r, 0, "tag", b, sizeof b), "100");
    return r;
}

static json_int_t counter(struct tnve_rec *r, const char *key)
{
    json_t *o = tnve_rec_counters_json(r);
    json_int_t v = json_integer_value(json_object_get(o, key));
    json_decref(o);
    return v;
}

/* More TSIs than the session takes at once: the SYNC goes on as responses free the window,
 * with no backoff, no retry and no timer while the window is full. */
START_TEST(test_sync_window_full)
{
    struct tnve_rec *r = mk(NULL);
    F.window = 3;
    uint32_t vns[] = {5000};
    struct tnve_domxml x;
    tnve_rec_session_up(r, 1000);
    tnve_rec_inventory_begin(r);
    for (int d = 1; d <= 8; d++) {
        mk_dom(&x, d, 1, vns);
        tnve_rec_domain_update(r, &x, TNVE_EFFECT_ACTIVATE, 0, "running", 1000);
    }
    tnve_rec_inventory_end(r, 1000);
    answer_ok(r, SNCP_MSG_SYNC_BEGIN, 0, -1, 1001);
    tnve_rec_run(r, 1001);
    answer_ok(r, SNCP_MSG_VN_CONNECT, 100, -1, 1002);
    ck_assert_uint_eq(tnve_rec_run(r, 1002), UINT64_MAX);
    ck_assert_int_eq(count_type(SNCP_MSG_TSI_ACTIVATE), 3);
    for (int done = 1; done <= 8; done++) {
        answer_ok(r, SNCP_MSG_TSI_ACTIVATE, 100, SNCP_TSI_ACTIVATED, 1002 + (uint64_t)done);
        uint64_t next = tnve_rec_run(r, 1002 + (uint64_t)done);
        int sent = done + 3 < 8 ? done + 3 : 8;
        ck_assert_int_eq(count_type(SNCP_MSG_TSI_ACTIVATE), sent);
        if (done < 8)
            ck_assert_uint_eq(next, UINT64_MAX);
    }
    ck_assert_int_eq(pending(SNCP_MSG_SYNC_END) >= 0, 1);
    answer_ok(r, SNCP_MSG_SYNC_END, 0, -1, 1020);
    tnve_rec_run(r, 1020);
    ck_assert_str_eq(tnve_rec_phase(r), "ready");
    ck_assert_int_eq(counter(r, "retries"), 0);
    ck_assert_int_eq(counter(r, "responses_failed"), 0);
    ck_assert_int_eq(counter(r, "sent_tsi_activate"), 8);
    tnve_rec_destroy(r);
}
END_TEST

START_TEST(test_sync_and_activate)
{
    struct tnve_domxml x;
    struct tnve_rec *r = steady(NULL, &x);
    /* Nothing more to do: repeated runs and identical updates send nothing. */
    int n = F.n;
    for (int i = 0; i < 5; i++) {
        tnve_rec_run(r, 2000 + (uint64_t)i * 1000);
        tnve_rec_domain_update(r, &x, TNVE_EFFECT_ACTIVATE, 0, "resumed", 2000);
        tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_NONE, 0, "suspended", 2000);
    }
    tnve_rec_run(r, 9000);
    ck_assert_int_eq(F.n, n);
    tnve_rec_destroy(r);
}
END_TEST

/* Reads what is left of `f` into buf (cap >= 1) and closes it. */
static void read_close(FILE *f, char *buf, size_t cap)
{
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static void read_file(const char *path, char *buf, size_t cap)
{
    read_close(fopen(path, "r"), buf, cap);
}

/* The ports file as the runs so far left it: its writer thread done with what they handed
 * over (the reconciler still alive, as a kill -9 would find it). */
static void read_ports(struct tnve_rec *r, const char *path, char *buf, size_t cap)
{
    tnve_rec_wait_files(r);
    read_file(path, buf, cap);
}

/* Call `call` of the recording dataplane cleared vnet1_0's tag 100 (uplink unused) and the
 * ports file no longer lists it. */
static void assert_vnet1_cleared(struct tnve_rec *r, const char *path, int call)
{
    char buf[512];
    ck_assert_str_eq(dp_calls[call], "clear vnet1_0 100 0");
    read_ports(r, path, buf, sizeof buf);
    ck_assert_ptr_null(strstr(buf, "vnet1_0"));
}

static void ports_file_done(const char *path, const char *dir)
{
    mk_dp_state_file = NULL;
    unlink(path);
    rmdir(dir);
}

/* Restarts onto a ports file holding vnet1_0 on tag 100, with the nNVE answering the first
 * TSI_ACTIVATE with `status`; returns after SYNC_END is answered. */
static struct tnve_rec *restart_failing_activate(const char *path, struct tnve_domxml *x,
                                                 uint16_t status)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "# ports\nvnet1_0 100\n");
    fclose(f);
    n_dp_calls = 0;
    struct tnve_rec *r = mk(NULL);
    uint32_t vns[] = {5000};
    mk_dom(x, 1, 1, vns);
    tnve_rec_session_up(r, 1000);
    tnve_rec_inventory_begin(r);
    tnve_rec_domain_update(r, x, TNVE_EFFECT_ACTIVATE, 0, "running", 1000);
    tnve_rec_inventory_end(r, 1000);
    answer_ok(r, SNCP_MSG_SYNC_BEGIN, 0, -1, 1001);
    tnve_rec_run(r, 1001);
    answer_ok(r, SNCP_MSG_VN_CONNECT, 100, -1, 1002);
    tnve_rec_run(r, 1002);
    answer(r, pending(SNCP_MSG_TSI_ACTIVATE), status, 0, -1, 1003);
    tnve_rec_run(r, 1003);
    answer_ok(r, SNCP_MSG_SYNC_END, 0, -1, 1004);
    tnve_rec_run(r, 1004);
    ck_assert_str_eq(tnve_rec_phase(r), "ready");
    return r;
}

/* A running VM whose activation is still being retried at the first SYNC_END keeps the
 * previous run's tag on its port: no clear, then no set once the retry succeeds with the
 * same tag.  A refusal ends that: the port is cleared. */
START_TEST(test_dataplane_pending_activation_keeps_port)
{
    char dir[] = "/tmp/tnve-rec-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[128], buf[512];
    snprintf(path, sizeof path, "%s/ports", dir);
    mk_dp_state_file = path;
    struct tnve_domxml x;

    struct tnve_rec *r = restart_failing_activate(path, &x, SNCP_STATUS_BUSY);
    ck_assert_int_eq(n_dp_calls, 0);
    read_ports(r, path, buf, sizeof buf);
    ck_assert_ptr_nonnull(strstr(buf, "\nvnet1_0 100\n"));
    tnve_rec_run(r, 60000);
    answer_ok(r, SNCP_MSG_TSI_ACTIVATE, 100, SNCP_TSI_ACTIVATED, 60001);
    tnve_rec_run(r, 60001);
    char b[64];
    ck_assert_str_eq(tsi_field(r, 0, "acked", b, sizeof b), "activated");
    ck_assert_int_eq(n_dp_calls, 0);
    read_ports(r, path, buf, sizeof buf);
    ck_assert_ptr_nonnull(strstr(buf, "\nvnet1_0 100\n"));
    tnve_rec_destroy(r);

    /* Busy at SYNC time, then refused: the kept port goes. */
    r = restart_failing_activate(path, &x, SNCP_STATUS_BUSY);
    ck_assert_int_eq(n_dp_calls, 0);
    tnve_rec_run(r, 60000);
    answer(r, pending(SNCP_MSG_TSI_ACTIVATE), SNCP_STATUS_NOT_AUTHORIZED, 0, -1, 60001);
    ck_assert_int_eq(n_dp_calls, 1);
    tnve_rec_run(r, 60002); /* the ports file is rewritten at the end of a run */
    assert_vnet1_cleared(r, path, 0);
    tnve_rec_destroy(r);
    ports_file_done(path, dir);
}
END_TEST

/* The ports file: what a run tagged survives it; after the next run's first SYNC, ports no
 * TSI set again are cleared (uplink too when unused), the others are not touched. */
START_TEST(test_dataplane_ports_across_restart)
{
    char dir[] = "/tmp/tnve-rec-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[128], buf[512];
    snprintf(path, sizeof path, "%s/ports", dir);
    mk_dp_state_file = path;
    n_dp_calls = 0;
    struct tnve_domxml x;
    struct tnve_rec *r = steady(NULL, &x);
    ck_assert_int_eq(n_dp_calls, 1);
    ck_assert_str_eq(dp_calls[0], "set vnet1_0 100");
    read_ports(r, path, buf, sizeof buf);
    ck_assert_ptr_nonnull(strstr(buf, "\nvnet1_0 100\n"));
    tnve_rec_destroy(r); /* an agent stop (or kill -9) leaves the dataplane as it is */
    ck_assert_int_eq(n_dp_calls, 1);

    /* The previous run also had vnet9 on tag 77 and vnet8 on tag 100 (VMs gone since). */
    FILE *f = fopen(path, "a");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "vnet9 77\nvnet8 100\nbad line\nvnet7 4095\n");
    fclose(f);
    n_dp_calls = 0;
    r = steady(NULL, &x);
    /* steady() answered SYNC_END last: the port still in use was set again, then the stale
     * ones were cleared; tag 100 stays on the uplink for vnet1_0. */
    ck_assert_int_eq(n_dp_calls, 3);
    ck_assert_str_eq(dp_calls[0], "set vnet1_0 100");
    int seen77 = 0, seen100 = 0;
    for (int i = 1; i < 3; i++) {
        seen77 += !strcmp(dp_calls[i], "clear vnet9 77 0");
        seen100 += !strcmp(dp_calls[i], "clear vnet8 100 1");
    }
    ck_assert_int_eq(seen77 + seen100, 2);
    read_ports(r, path, buf, sizeof buf);
    ck_assert_ptr_nonnull(strstr(buf, "\nvnet1_0 100\n"));
    ck_assert_ptr_null(strstr(buf, "vnet9"));
    ck_assert_ptr_null(strstr(buf, "vnet8"));
    /* De-Associate clears the port and the file. */
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_DEASSOCIATE, 0, "stopped", 3000);
    tnve_rec_run(r, 3000);
    answer_ok(r, SNCP_MSG_TSI_DEASSOCIATE, 0, SNCP_TSI_INIT, 3001);
    ck_assert_int_eq(n_dp_calls, 4);
    tnve_rec_run(r, 3002); /* the ports file is rewritten at the end of a run */
    assert_vnet1_cleared(r, path, 3);
    tnve_rec_destroy(r);
    ports_file_done(path, dir);
}
END_TEST

/* stderr (the log) goes to a temporary file until log_end(), which returns what was
 * written (static buffer). */
static FILE *log_file;
static int log_saved_fd = -1;

static void log_begin(void)
{
    fflush(stderr);
    log_file = tmpfile();
    ck_assert_ptr_nonnull(log_file);
    log_saved_fd = dup(STDERR_FILENO);
    ck_assert_int_ge(log_saved_fd, 0);
    ck_assert_int_ge(dup2(fileno(log_file), STDERR_FILENO), 0);
}

static const char *log_end(void)
{
    static char text[16384];
    fflush(stderr);
    ck_assert_int_ge(dup2(log_saved_fd, STDERR_FILENO), 0);
    close(log_saved_fd);
    rewind(log_file);
    read_close(log_file, text, sizeof text);
    return text;
}

static int count_str(const char *text, const char *what)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)) != NULL; p += strlen(what))
        n++;
    return n;
}

/* A state file in a directory still to be made: the test's directory (made), the missing
 * one, the file's path and the line a failed write of it logs. */
struct missing_dir {
    char dir[32], sub[128], path[160], line[256];
};

static void missing_dir_init(struct missing_dir *m, const char *file, const char *what)
{
    snprintf(m->dir, sizeof m->dir, "/tmp/tnve-rec-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(m->dir));
    snprintf(m->sub, sizeof m->sub, "%s/state", m->dir);
    snprintf(m->path, sizeof m->path, "%s/%s", m->sub, file);
    snprintf(m->line, sizeof m->line, "cannot write %s path=%s err=%s", what, m->path,
             strerror(ENOENT));
}

/* The ports file is written by a thread, which logs nothing: a failed write (its directory
 * is missing) is logged from the reconciler's own calls, once per failure, with the same
 * message as a synchronous write had; runs before its retry log nothing more; the retry
 * comes 1 s after, then 2 s after it fails again; once the directory is back the retry
 * writes the file with nothing changed, and the next change is written too. */
START_TEST(test_dataplane_ports_write_failure_logged)
{
    struct missing_dir m;
    missing_dir_init(&m, "ports", "ports file");
    const char *sub = m.sub, *path = m.path, *line = m.line;
    char buf[512];
    mk_dp_state_file = path;
    n_dp_calls = 0;
    struct tnve_domxml x;
    log_begin();
    struct tnve_rec *r = steady(NULL, &x);
    tnve_rec_wait_files(r);
    const char *text = log_end();
    ck_assert_int_eq(n_dp_calls, 1);
    /* the set of the port, and SYNC_END's sweep of the previous run's: one or two writes */
    ck_assert_int_ge(count_str(text, line), 1);
    ck_assert_int_le(count_str(text, line), 2);

    /* The failure was found by a run of steady() (the last at about 1006) or by the wait:
     * the retry comes 1 s after the run that found it. */
    log_begin();
    uint64_t next = tnve_rec_run(r, 1010);
    ck_assert_uint_ge(next, 2000);
    ck_assert_uint_le(next, 2010);
    for (uint64_t t = 1100; t < 2000; t += 100)
        tnve_rec_run(r, t);
    tnve_rec_wait_files(r);
    ck_assert_int_eq(count_str(log_end(), "cannot write"), 0);

    log_begin();
    tnve_rec_run(r, 2010); /* the retry, failing again: the next one 2 s after */
    tnve_rec_wait_files(r);
    ck_assert_int_eq(count_str(log_end(), line), 1);
    ck_assert_uint_eq(tnve_rec_run(r, 2010), 4010);

    ck_assert_int_eq(mkdir(sub, 0755), 0);
    log_begin();
    tnve_rec_run(r, 3000);
    tnve_rec_wait_files(r);
    ck_assert_int_eq(access(path, F_OK), -1); /* not before its time */
    tnve_rec_run(r, 4010);
    read_ports(r, path, buf, sizeof buf);
    ck_assert_ptr_nonnull(strstr(buf, "vnet1_0 100"));
    ck_assert_int_eq(count_str(log_end(), "cannot write"), 0);
    ck_assert_int_eq(n_dp_calls, 1);

    log_begin();
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_DEASSOCIATE, 0, "stopped", 7000);
    tnve_rec_run(r, 7000);
    answer_ok(r, SNCP_MSG_TSI_DEASSOCIATE, 0, SNCP_TSI_INIT, 7001);
    tnve_rec_run(r, 7002);
    tnve_rec_wait_files(r);
    ck_assert_int_eq(count_str(log_end(), "cannot write"), 0);
    ck_assert_int_eq(n_dp_calls, 2);
    read_ports(r, path, buf, sizeof buf);
    ck_assert_ptr_null(strstr(buf, "vnet1_0"));
    ck_assert_ptr_nonnull(strstr(buf, "# tnve-agent: vNIC ports"));
    tnve_rec_destroy(r);
    ports_file_done(path, sub);
    rmdir(m.dir);
}
END_TEST

START_TEST(test_lifecycle_and_disconnect)
{
    struct tnve_domxml x;
    struct tnve_rec *r = steady(NULL, &x);
    int n = F.n;
    /* managed save / pmsuspend: Deactivate, stays associated */
    acked_calls = sent_calls = 0;
    tnve_rec_set_stamp(r, 123456);
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_ASSOCIATE, 0, "pmsuspended", 2000);
    tnve_rec_set_stamp(r, 0);
    ck_assert_int_eq(sent_calls, 0);
    tnve_rec_run(r, 2000);
    ck_assert_int_eq(F.n, n + 1);
    ck_assert_int_eq(F.sent[n].type, SNCP_MSG_TSI_DEACTIVATE);
    ck_assert_int_eq(acked_calls, 0);
    ck_assert_int_eq(sent_calls, 1); /* the agent's own share: once, when it left */
    ck_assert_uint_eq(sent_stamp, 123456);
    answer_ok(r, SNCP_MSG_TSI_DEACTIVATE, 0, SNCP_TSI_ASSOCIATED, 2001);
    ck_assert_int_eq(acked_calls, 1); /* event-to-acknowledged latency probe */
    ck_assert_uint_eq(acked_stamp, 123456);
    tnve_rec_run(r, 2001);
    ck_assert_int_eq(F.n, n + 1);
    ck_assert_int_eq(sent_calls, 1);
    /* resume: Activate */
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_ACTIVATE, 0, "resumed", 2002);
    tnve_rec_run(r, 2002);
    ck_assert_int_eq(F.sent[n + 1].type, SNCP_MSG_TSI_ACTIVATE);
    answer_ok(r, SNCP_MSG_TSI_ACTIVATE, 100, SNCP_TSI_ACTIVATED, 2003);
    /* destroy: De-Associate, then the VN's last user is gone: VN_DISCONNECT */
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_DEASSOCIATE, 0, "stopped", 2004);
    tnve_rec_run(r, 2004);
    ck_assert_int_eq(F.sent[n + 2].type, SNCP_MSG_TSI_DEASSOCIATE);
    ck_assert_int_eq(F.n, n + 3); /* no VN_DISCONNECT while the TSI may still be held */
    answer_ok(r, SNCP_MSG_TSI_DEASSOCIATE, 0, SNCP_TSI_INIT, 2005);
    tnve_rec_run(r, 2005);
    ck_assert_int_eq(F.n, n + 4);
    ck_assert_int_eq(F.sent[n + 3].type, SNCP_MSG_VN_DISCONNECT);
    ck_assert_uint_eq(F.sent[n + 3].vn_id, 5000);
    answer_ok(r, SNCP_MSG_VN_DISCONNECT, 0, -1, 2006);
    tnve_rec_run(r, 2006);
    ck_assert_int_eq(F.n, n + 4);
    /* undefine: forgotten once nothing is left at the nNVE */
    tnve_rec_domain_remove(r, x.uuid, 0, 2007);
    tnve_rec_run(r, 2007);
    ck_assert_uint_eq(n_tsis(r), 0);
    ck_assert_int_eq(F.n, n + 4);
    tnve_rec_destroy(r);
}
END_TEST

/* The first vNIC of a VN: its request goes right behind the VN_CONNECT (one round trip,
 * PROTOCOL.md §3.3).  A refused connection makes the request fail NO_SUCH_VN; that is not
 * the TSI's failure: it waits for the VN, whose retry is not pipelined, and goes once the
 * VN is connected. */
START_TEST(test_first_tsi_follows_vn_connect)
{
    struct tnve_domxml x, y;
    struct tnve_rec *r = steady(NULL, &x);
    uint32_t vns[] = {6000};
    mk_dom(&y, 2, 1, vns);
    tnve_rec_domain_update(r, &y, TNVE_EFFECT_ACTIVATE, 0, "running", 2000);
    int n = F.n;
    tnve_rec_run(r, 2000);
    ck_assert_int_eq(F.n, n + 2);
    ck_assert_int_eq(F.sent[n].type, SNCP_MSG_VN_CONNECT);
    ck_assert_uint_eq(F.sent[n].vn_id, 6000);
    ck_assert_int_eq(F.sent[n + 1].type, SNCP_MSG_TSI_ACTIVATE);
    ck_assert_uint_eq(F.sent[n + 1].vn_id, 6000);
    ck_assert_int_eq(memcmp(F.sent[n + 1].tsi.uuid, y.uuid, 16), 0);
    answer(r, n, SNCP_STATUS_NOT_AUTHORIZED, 0, -1, 2001);
    answer(r, n + 1, SNCP_STATUS_NO_SUCH_VN, 0, -1, 2001);
    char b[64]; /* not the TSI's failure */
    ck_assert_str_eq(tsi_field(r, 1, "failures", b, sizeof b), "0");
    ck_assert_str_eq(tsi_field(r, 1, "acked", b, sizeof b), "init");
    /* the VN's retry goes alone; the TSI follows its success */
    for (uint64_t t = 2001; t < 4000 && F.n == n + 2; t += 50)
        tnve_rec_run(r, t);
    ck_assert_int_eq(F.n, n + 3);
    ck_assert_int_eq(F.sent[n + 2].type, SNCP_MSG_VN_CONNECT);
    answer(r, n + 2, SNCP_STATUS_SUCCESS, 102, -1, 4000);
    tnve_rec_run(r, 4000);
    ck_assert_int_eq(F.n, n + 4);
    ck_assert_int_eq(F.sent[n + 3].type, SNCP_MSG_TSI_ACTIVATE);
    answer(r, n + 3, SNCP_STATUS_SUCCESS, 102, SNCP_TSI_ACTIVATED, 4001);
    ck_assert_str_eq(tsi_field(r, 1, "acked", b, sizeof b), "activated");
    ck_assert_str_eq(tsi_field(r, 1, "tag", b, sizeof b), "102");
    /* a second vNIC in the connected VN: no VN_CONNECT */
    struct tnve_domxml z;
    mk_dom(&z, 3, 1, vns);
    tnve_rec_domain_update(r, &z, TNVE_EFFECT_ACTIVATE, 0, "running", 4002);
    tnve_rec_run(r, 4002);
    ck_assert_int_eq(F.n, n + 5);
    ck_assert_int_eq(F.sent[n + 4].type, SNCP_MSG_TSI_ACTIVATE);
    tnve_rec_destroy(r);
}
END_TEST

START_TEST(test_backoff_growth)
{
    struct tnve_domxml x;
    struct tnve_rec *r = steady(NULL, &x);
    int base_n = F.n;
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_ASSOCIATE, 0, "saved", 10000);
    uint64_t now = 10000;
    tnve_rec_run(r, now);
    ck_assert_int_eq(F.n, base_n + 1);
    uint64_t delays[8];
    for (int k = 0; k < 8; k++) {
        int idx = F.n - 1;
        ck_assert_int_eq(F.sent[idx].type, SNCP_MSG_TSI_DEACTIVATE);
        answer(r, idx, SNCP_STATUS_BUSY, 0, -1, now);
        /* no duplicate while waiting; exactly one resend when due */
        uint64_t t = now;
        while (F.n == idx + 1) {
            t += 5;
            ck_assert_uint_lt(t - now, 4000);
            tnve_rec_run(r, t);
        }
        ck_assert_int_eq(F.n, idx + 2);
        delays[k] = t - now;
        now = t;
    }
    for (int k = 0; k < 8; k++) {
        uint64_t base = 100u << k;
        if (base > 1600)
            base = 1600;
        ck_assert_uint_ge(delays[k], base * 75 / 100);
        ck_assert_uint_le(delays[k], base * 125 / 100 + 5 > 1605 ? 1605 : base * 125 / 100 + 5);
    }
    ck_assert_uint_le(delays[7], 1605);
    /* success resets the backoff */
    answer_ok(r, SNCP_MSG_TSI_DEACTIVATE, 0, SNCP_TSI_ASSOCIATED, now);
    tnve_rec_run(r, now);
    char b[64];
    ck_assert_str_eq(tsi_field(r, 0, "acked", b, sizeof b), "associated");
    ck_assert_str_eq(tsi_field(r, 0, "failures", b, sizeof b), "0");
    tnve_rec_destroy(r);
}
END_TEST

/* A failure with RETRY_AFTER is retried after it (not after the backoff from retry_min),
 * within [10 ms, retry_max]: a ToR pair's follower asks for a short wait while it agrees a
 * tag (PROTOCOL.md §17.3). */
START_TEST(test_retry_after_honoured)
{
    struct tnve_domxml x;
    struct tnve_rec *r = steady(NULL, &x);
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_ASSOCIATE, 0, "saved", 10000);
    uint64_t now = 10000;
    tnve_rec_run(r, now);
    static const uint32_t given[] = {20, 3, 100000, 20};
    static const uint64_t want[] = {20, 10, 1600, 20};
    for (int k = 0; k < 4; k++) {
        int idx = F.n - 1;
        ck_assert_int_eq(F.sent[idx].type, SNCP_MSG_TSI_DEACTIVATE);
        answer_retry_after = given[k];
        answer(r, idx, SNCP_STATUS_BUSY, 0, -1, now);
        answer_retry_after = 0;
        uint64_t t = now;
        while (F.n == idx + 1) {
            t++;
            ck_assert_uint_lt(t - now, 4000);
            tnve_rec_run(r, t);
        }
        ck_assert_uint_eq(t - now, want[k]);
        now = t;
    }
    tnve_rec_destroy(r);
}
END_TEST

START_TEST(test_resync_content)
{
    struct tnve_domxml x, y;
    struct tnve_rec *r = steady(NULL, &x);
    /* a second domain in VN 6000 (Associated only) and one vNIC without VN */
    uint32_t vns[] = {6000, 0};
    mk_dom(&y, 2, 2, vns);
    tnve_rec_domain_update(r, &y, TNVE_EFFECT_ASSOCIATE, 0, "pmsuspended", 2000);
    tnve_rec_run(r, 2000);
    answer_ok(r, SNCP_MSG_VN_CONNECT, 200, -1, 2001);
    tnve_rec_run(r, 2001);
    answer_ok(r, SNCP_MSG_TSI_ASSOCIATE, 200, SNCP_TSI_ASSOCIATED, 2002);
    tnve_rec_run(r, 2002);
    ck_assert_uint_eq(n_tsis(r), 2);
    /* session lost; meanwhile dom1 was destroyed; then the session comes back */
    tnve_rec_session_down(r, 3000);
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_DEASSOCIATE, 0, "stopped", 3001);
    tnve_rec_run(r, 3001);
    int n = F.n;
    tnve_rec_run(r, 3002);
    ck_assert_int_eq(F.n, n); /* nothing while down */
    tnve_rec_session_up(r, 4000);
    ck_assert_int_eq(F.sent[n].type, SNCP_MSG_SYNC_BEGIN);
    answer_ok(r, SNCP_MSG_SYNC_BEGIN, 0, -1, 4001);
    tnve_rec_run(r, 4001);
    /* only VN 6000 is re-announced, with its last tag */
    ck_assert_int_eq(F.n, n + 2);
    ck_assert_int_eq(F.sent[n + 1].type, SNCP_MSG_VN_CONNECT);
    ck_assert_uint_eq(F.sent[n + 1].vn_id, 6000);
    ck_assert_uint_eq(F.sent[n + 1].preferred_tags[0].vid, 200);
    answer_ok(r, SNCP_MSG_VN_CONNECT, 200, -1, 4002);
    tnve_rec_run(r, 4002);
    ck_assert_int_eq(F.n, n + 3);
    ck_assert_int_eq(F.sent[n + 2].type, SNCP_MSG_TSI_ASSOCIATE);
    ck_assert_uint_eq(F.sent[n + 2].preferred_tags[0].vid, 200);
    answer_ok(r, SNCP_MSG_TSI_ASSOCIATE, 200, SNCP_TSI_ASSOCIATED, 4003);
    tnve_rec_run(r, 4003);
    ck_assert_int_eq(F.n, n + 4);
    ck_assert_int_eq(F.sent[n + 3].type, SNCP_MSG_SYNC_END);
    ck_assert_int_eq(count_type(SNCP_MSG_TSI_DEASSOCIATE), 0); /* the sweep does it */
    answer_ok(r, SNCP_MSG_SYNC_END, 0, -1, 4004);
    tnve_rec_run(r, 4004);
    /* dom1's TSI was swept (acked Init) and VN 5000 too */
    char b[64];
    ck_assert_uint_eq(n_tsis(r), 2);
    ck_assert_str_eq(tsi_field(r, 0, "acked", b, sizeof b), "init");
    ck_assert_str_eq(tsi_field(r, 1, "acked", b, sizeof b), "associated");
    tnve_rec_run(r, 5000);
    ck_assert_int_eq(F.n, n + 4);
    tnve_rec_destroy(r);
}
END_TEST

START_TEST(test_sync_invalid_state)
{
    struct tnve_domxml x;
    struct tnve_rec *r = steady(NULL, &x);
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_ASSOCIATE, 0, "saved", 2000);
    tnve_rec_run(r, 2000);
    answer_ok(r, SNCP_MSG_TSI_DEACTIVATE, 0, SNCP_TSI_ASSOCIATED, 2001);
    tnve_rec_session_down(r, 3000);
    tnve_rec_session_up(r, 3001);
    answer_ok(r, SNCP_MSG_SYNC_BEGIN, 0, -1, 3002);
    tnve_rec_run(r, 3002);
    answer_ok(r, SNCP_MSG_VN_CONNECT, 100, -1, 3003);
    tnve_rec_run(r, 3003);
    int i = pending(SNCP_MSG_TSI_ASSOCIATE);
    answer(r, i, SNCP_STATUS_INVALID_STATE, 0, SNCP_TSI_ACTIVATED, 3004);
    tnve_rec_run(r, 3004);
    ck_assert_int_ge(pending(SNCP_MSG_TSI_DEACTIVATE), 0);
    ck_assert_int_lt(pending(SNCP_MSG_SYNC_END), 0);
    answer_ok(r, SNCP_MSG_TSI_DEACTIVATE, 0, SNCP_TSI_ASSOCIATED, 3005);
    tnve_rec_run(r, 3005);
    answer_ok(r, SNCP_MSG_SYNC_END, 0, -1, 3006);
    tnve_rec_run(r, 3006);
    char b[64];
    ck_assert_str_eq(tsi_field(r, 0, "acked", b, sizeof b), "associated");
    tnve_rec_destroy(r);
}
END_TEST

static void peer_req(struct tnve_rec *r, uint8_t type, const struct tnve_domxml *x, uint32_t vn,
                     uint64_t now)
{
    struct sncp_msg m;
    sncp_msg_init(&m, type, 77);
    if (x) {
        memcpy(m.tsi.uuid, x->uuid, 16);
        memcpy(m.tsi.mac, x->vnics[0].mac, 6);
        sncp_msg_set(&m, SNCP_TLV_TSI_ID);
    }
    if (vn) {
        m.vn_id = vn;
        sncp_msg_set(&m, SNCP_TLV_VN_ID);
    }
    tnve_rec_request(r, &m, now);
}

START_TEST(test_peer_deassociate_converges)
{
    struct tnve_domxml x;
    struct tnve_rec *r = steady(NULL, &x);
    int n = F.n;
    peer_req(r, SNCP_MSG_TSI_DEASSOCIATE, &x, 0, 5000);
    ck_assert_int_eq(F.n_resp, 1);
    ck_assert_uint_eq(F.resp[0].status, SNCP_STATUS_SUCCESS);
    char b[64];
    ck_assert_str_eq(tsi_field(r, 0, "acked", b, sizeof b), "init");
    tnve_rec_run(r, 5000);
    ck_assert_int_eq(F.n, n); /* backoff first */
    uint64_t t = 5000;
    while (F.n == n) {
        t += 10;
        ck_assert_uint_lt(t, 7000);
        tnve_rec_run(r, t);
    }
    ck_assert_uint_ge(t - 5000, 75);
    ck_assert_int_eq(F.sent[n].type, SNCP_MSG_TSI_ACTIVATE);
    answer_ok(r, SNCP_MSG_TSI_ACTIVATE, 100, SNCP_TSI_ACTIVATED, t);
    ck_assert_str_eq(tsi_field(r, 0, "acked", b, sizeof b), "activated");
    /* unknown TSI: NO_SUCH_TSI */
    struct tnve_domxml other;
    uint32_t vns[] = {5000};
    mk_dom(&other, 9, 1, vns);
    peer_req(r, SNCP_MSG_TSI_DEACTIVATE, &other, 0, t);
    ck_assert_uint_eq(F.resp[1].status, SNCP_STATUS_NO_SUCH_TSI);
    /* a request a tNVE never accepts */
    peer_req(r, SNCP_MSG_VN_CONNECT, NULL, 5000, t);
    ck_assert_uint_eq(F.resp[2].status, SNCP_STATUS_UNEXPECTED_MESSAGE);
    tnve_rec_destroy(r);
}
END_TEST

START_TEST(test_peer_vn_disconnect_converges)
{
    struct tnve_domxml x;
    struct tnve_rec *r = steady(NULL, &x);
    int n = F.n;
    peer_req(r, SNCP_MSG_VN_DISCONNECT, NULL, 5000, 5000);
    ck_assert_uint_eq(F.resp[0].status, SNCP_STATUS_SUCCESS);
    char b[64];
    ck_assert_str_eq(tsi_field(r, 0, "acked", b, sizeof b), "init");
    uint64_t t = 5000;
    while (F.n == n) {
        t += 10;
        ck_assert_uint_lt(t, 7000);
        tnve_rec_run(r, t);
    }
    ck_assert_int_eq(F.sent[n].type, SNCP_MSG_VN_CONNECT);
    ck_assert_uint_eq(F.sent[n].preferred_tags[0].vid, 100);
    answer_ok(r, SNCP_MSG_VN_CONNECT, 100, -1, t);
    tnve_rec_run(r, t);
    ck_assert_int_eq(F.sent[n + 1].type, SNCP_MSG_TSI_ACTIVATE);
    answer_ok(r, SNCP_MSG_TSI_ACTIVATE, 100, SNCP_TSI_ACTIVATED, t);
    tnve_rec_run(r, t + 10000);
    ck_assert_int_eq(F.n, n + 2);
    tnve_rec_destroy(r);
}
END_TEST

START_TEST(test_tags_persist)
{
    char dir[] = "/tmp/tnve-rec-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/tags", dir);
    struct tnve_domxml x;
    struct tnve_rec *r = steady(path, &x);
    tnve_rec_destroy(r);
    /* a restarted agent prefers the same tag */
    r = mk(path);
    tnve_rec_inventory_begin(r);
    tnve_rec_domain_update(r, &x, TNVE_EFFECT_ACTIVATE, 0, "running", 1);
    tnve_rec_inventory_end(r, 1);
    tnve_rec_session_up(r, 2);
    answer_ok(r, SNCP_MSG_SYNC_BEGIN, 0, -1, 3);
    tnve_rec_run(r, 3);
    int i = pending(SNCP_MSG_VN_CONNECT);
    ck_assert_int_ge(i, 0);
    ck_assert_int_eq(F.sent[i].n_preferred_tags, 1);
    ck_assert_uint_eq(F.sent[i].preferred_tags[0].vid, 100);
    tnve_rec_destroy(r);
    unlink(path);
    rmdir(dir);
}
END_TEST

/* The tag file is written on the loop: a failed write (its directory is missing) is logged,
 * and written again with nothing changed at its retry (shared with the ports file, see
 * test_dataplane_ports_write_failure_logged for the delays): not before, and then whole. */
START_TEST(test_tags_write_retried)
{
    struct missing_dir m;
    missing_dir_init(&m, "tags", "tag file");
    char buf[512];
    struct tnve_domxml x;
    log_begin();
    struct tnve_rec *r = steady(m.path, &x);
    ck_assert_int_ge(count_str(log_end(), m.line), 1);
    uint64_t retry = tnve_rec_run(r, 1010);
    ck_assert_uint_gt(retry, 1010);
    ck_assert_uint_le(retry, 1010 + 30000);
    ck_assert_int_eq(mkdir(m.sub, 0755), 0);
    log_begin();
    tnve_rec_run(r, retry - 1);
    ck_assert_int_eq(access(m.path, F_OK), -1);
    tnve_rec_run(r, retry);
    ck_assert_int_eq(count_str(log_end(), "cannot write"), 0);
    read_file(m.path, buf, sizeof buf);
    ck_assert_ptr_nonnull(strstr(buf, " 100\n"));
    tnve_rec_destroy(r);
    unlink(m.path);
    rmdir(m.sub);
    rmdir(m.dir);
}
END_TEST

struct hook_result {
    int called, err;
    char reason[700];
};

static void hook_cb(void *aux, int err, const char *reason)
{
    struct hook_result *h = aux;
    h->called++;
    h->err = err;
    snprintf(h->reason, sizeof h->reason, "%s", reason ? reason : "");
}

static int vn_served(struct tnve_rec *r, uint32_t id)
{
    json_t *a = tnve_rec_vns_json(r);
    size_t i;
    json_t *o;
    int served = -1;
    json_array_foreach(a, i, o)
    {
        if (json_integer_value(json_object_get(o, "vn_id")) == id)
            served = json_is_true(json_object_get(o, "served"));
    }
    json_decref(a);
    return served;
}

/* A dual-homed host's standby nNVE: a VN it does not serve gets nothing sent and does not
 * hold a hook up; when it is served (failover) its TSIs are associated and activated at
 * once; when it no longer is (failback), they are de-associated, and the VN's other TSIs
 * and the served VN are not touched. */
START_TEST(test_serves_failover)
{
    struct tnve_domxml x, y;
    struct tnve_rec *r = steady(NULL, &x);
    unserved_vn = 5001;
    uint32_t vns[] = {5001};
    mk_dom(&y, 2, 1, vns);
    struct hook_result h = {0};
    ck_assert_int_eq(tnve_rec_prepare(r, &y, 0, 12000, hook_cb, &h, 2000), 0);
    ck_assert_int_eq(h.called, 1); /* nothing to wait for here */
    ck_assert_int_eq(h.err, 0);
    tnve_rec_domain_update(r, &y, TNVE_EFFECT_ACTIVATE, 0, "running", 2001);
    int n = F.n;
    tnve_rec_run(r, 2002);
    tnve_rec_run(r, 9000);
    ck_assert_int_eq(F.n, n);
    ck_assert_int_eq(vn_served(r, 5001), 0);
    char b[64];
    ck_assert_str_eq(tsi_field(r, 1, "desired", b, sizeof b), "init");

    /* failover: served now */
    unserved_vn = 0;
    tnve_rec_serve_changed(r, 9001);
    tnve_rec_run(r, 9001);
    ck_assert_int_eq(vn_served(r, 5001), 1);
    ck_assert_int_eq(F.n, n + 2); /* the activation follows the VN_CONNECT at once */
    ck_assert_int_eq(F.sent[n].type, SNCP_MSG_VN_CONNECT);
    ck_assert_uint_eq(F.sent[n].vn_id, 5001);
    ck_assert_int_eq(F.sent[n + 1].type, SNCP_MSG_TSI_ACTIVATE);
    /* make-before-break: served, but not settled while its activation is not acknowledged */
    const struct tnve_vn q5001 = {.id = 5001}, q7777 = {.id = 7777};
    ck_assert_int_eq(tnve_rec_vn_served(r, &q5001), 1);
    ck_assert_int_eq(tnve_rec_vn_settled(r, &q5001), 0);
    answer_ok(r, SNCP_MSG_VN_CONNECT, 101, -1, 9002);
    tnve_rec_run(r, 9002);
    ck_assert_int_eq(F.n, n + 2);
    int i = pending(SNCP_MSG_TSI_ACTIVATE);
    ck_assert_int_ge(i, 0);
    ck_assert_uint_eq(F.sent[i].vn_id, 5001);
    ck_assert_uint_eq(F.sent[i].flags & SNCP_F_MIGRATION, 0);
    ck_assert_int_eq(tnve_rec_vn_settled(r, &q5001), 0);
    answer_ok(r, SNCP_MSG_TSI_ACTIVATE, 101, SNCP_TSI_ACTIVATED, 9003);
    tnve_rec_run(r, 9003);
    ck_assert_str_eq(tsi_field(r, 1, "acked", b, sizeof b), "activated");
    ck_assert_int_eq(tnve_rec_vn_settled(r, &q5001), 1);
    ck_assert_int_eq(tnve_rec_vn_served(r, &q7777), 0);
    ck_assert_int_eq(tnve_rec_vn_settled(r, &q7777), 0);

    /* a hook for another domain in the served VN waits for its association; withdrawn,
     * its callback never runs and the domain is no longer busy */
    struct tnve_domxml z;
    mk_dom(&z, 3, 1, vns);
    struct hook_result h2 = {0};
    ck_assert_int_eq(tnve_rec_prepare(r, &z, 0, 12000, hook_cb, &h2, 9004), 0);
    ck_assert_int_eq(h2.called, 0);
    ck_assert_int_eq(tnve_rec_domain_busy(r, z.uuid), 1);
    ck_assert_uint_eq(tnve_rec_prepare_cancel(r, &h2, 0), 1);
    ck_assert_int_eq(tnve_rec_domain_busy(r, z.uuid), 0);
    tnve_rec_domain_remove(r, z.uuid, 0, 9005);

    /* failback: no longer served, de-associated; VN 5000's TSI untouched */
    unserved_vn = 5001;
    tnve_rec_serve_changed(r, 9006);
    int before = F.n;
    for (uint64_t t = 9006; t < 9100; t++) {
        tnve_rec_run(r, t);
        for (int k = before; k < F.n; k++) {
            if (F.answered[k])
                continue;
            ck_assert_uint_ne(F.sent[k].vn_id, 5000);
            int st = F.sent[k].type == SNCP_MSG_TSI_DEACTIVATE    ? SNCP_TSI_ASSOCIATED
                     : F.sent[k].type == SNCP_MSG_TSI_DEASSOCIATE ? SNCP_TSI_INIT
                                                                  : -1;
            answer(r, k, SNCP_STATUS_SUCCESS, 0, st, t);
        }
    }
    ck_assert_int_ge(count_type(SNCP_MSG_TSI_DEASSOCIATE), 1);
    ck_assert_str_eq(tsi_field(r, 0, "acked", b, sizeof b), "activated");
    ck_assert_int_eq(tnve_rec_vn_served(r, &q5001), 0);
    ck_assert_int_eq(tnve_rec_vn_settled(r, &q5001), 0);
    /* a session down: nothing is settled until the SYNC after it */
    const struct tnve_vn q5000 = {.id = 5000};
    ck_assert_int_eq(tnve_rec_vn_settled(r, &q5000), 1);
    tnve_rec_session_down(r, 9100);
    ck_assert_int_eq(tnve_rec_vn_settled(r, &q5000), 0);
    unserved_vn = 0;
    tnve_rec_destroy(r);
}
END_TEST

START_TEST(test_hook_prepare)
{
    struct tnve_domxml x, y;
    struct tnve_rec *r = steady(NULL, &x);
    uint32_t vns[] = {7000};
    mk_dom(&y, 3, 1, vns);
    struct hook_result h = {0};
    ck_assert_int_eq(tnve_rec_prepare(r, &y, 0, 12000, hook_cb, &h, 2000), 0);
    ck_assert_int_eq(h.called, 0);
    ck_assert_int_eq(tnve_rec_domain_busy(r, y.uuid), 1);
    tnve_rec_run(r, 2000);
    answer_ok(r, SNCP_MSG_VN_CONNECT, 300, -1, 2001);
    tnve_rec_run(r, 2001);
    ck_assert_int_eq(F.sent[pending(SNCP_MSG_TSI_ASSOCIATE)].type, SNCP_MSG_TSI_ASSOCIATE);
    ck_assert_int_eq(h.called, 0);
    answer_ok(r, SNCP_MSG_TSI_ASSOCIATE, 300, SNCP_TSI_ASSOCIATED, 2002);
    ck_assert_int_eq(h.called, 1);
    ck_assert_int_eq(h.err, 0);
    ck_assert_int_eq(tnve_rec_domain_busy(r, y.uuid), 0);

    /* refused: the VN is not authorized */
    struct tnve_domxml z;
    uint32_t vz[] = {8000};
    mk_dom(&z, 4, 1, vz);
    struct hook_result h2 = {0};
    ck_assert_int_eq(tnve_rec_prepare(r, &z, 0, 12000, hook_cb, &h2, 3000), 0);
    tnve_rec_run(r, 3000);
    answer(r, pending(SNCP_MSG_VN_CONNECT), SNCP_STATUS_NOT_AUTHORIZED, 0, -1, 3001);
    /* the association sent right behind it finds no VN */
    answer(r, pending(SNCP_MSG_TSI_ASSOCIATE), SNCP_STATUS_NO_SUCH_VN, 0, -1, 3001);
    ck_assert_int_eq(h2.called, 1);
    ck_assert_int_eq(h2.err, SNCP_E_NOT_AUTHORIZED);
    ck_assert_ptr_nonnull(strstr(h2.reason, "8000"));
    ck_assert_ptr_nonnull(strstr(h2.reason, "not-authorized"));
    /* libvirt will not start it: the hook's association is undone, nothing is retried */
    int sent = F.n;
    for (uint64_t t = 3002; t < 20000; t += 250)
        tnve_rec_run(r, t);
    ck_assert_int_eq(F.n, sent);
    ck_assert_int_eq(tnve_rec_domain_known(r, z.uuid), 0);

    /* no answer at all: timeout at the deadline */
    struct tnve_domxml w;
    uint32_t vw[] = {7000};
    mk_dom(&w, 5, 1, vw);
    struct hook_result h3 = {0};
    ck_assert_int_eq(tnve_rec_prepare(r, &w, SNCP_F_MIGRATION, 5000, hook_cb, &h3, 4000), 0);
    uint64_t next = tnve_rec_run(r, 4000);
    int i = pending(SNCP_MSG_TSI_ASSOCIATE);
    ck_assert_int_ge(i, 0);
    ck_assert_uint_eq(F.sent[i].flags & SNCP_F_MIGRATION, SNCP_F_MIGRATION);
    ck_assert_uint_le(next, 5000);
    tnve_rec_run(r, 4999);
    ck_assert_int_eq(h3.called, 0);
    tnve_rec_run(r, 5000);
    ck_assert_int_eq(h3.called, 1);
    ck_assert_int_eq(h3.err, SNCP_E_TIMEOUT);

    /* a domain without VN vNICs has nothing to wait for */
    struct tnve_domxml v;
    uint32_t vv[] = {0};
    mk_dom(&v, 6, 1, vv);
    struct hook_result h4 = {0};
    ck_assert_int_eq(tnve_rec_prepare(r, &v, 0, 9000, hook_cb, &h4, 6000), 0);
    ck_assert_int_eq(h4.called, 1);
    ck_assert_int_eq(h4.err, 0);

    /* destroy answers a waiter still pending */
    struct hook_result h5 = {0};
    ck_assert_int_eq(tnve_rec_prepare(r, &w, 0, 99000, hook_cb, &h5, 7000), 0);
    tnve_rec_destroy(r);
    ck_assert_int_eq(h5.called, 1);
    ck_assert_int_eq(h5.err, SNCP_E_CLOSED);
}
END_TEST

START_TEST(test_migration_flags)
{
    struct tnve_domxml x;
    struct tnve_rec *r = steady(NULL, &x);
    int n = F.n;
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_DEASSOCIATE,
                           SNCP_F_MIGRATION | SNCP_F_MIGRATION_SOURCE, "stopped/migrated", 3000);
    tnve_rec_run(r, 3000);
    ck_assert_int_eq(F.sent[n].type, SNCP_MSG_TSI_DEASSOCIATE);
    ck_assert_uint_eq(F.sent[n].flags, SNCP_F_MIGRATION | SNCP_F_MIGRATION_SOURCE);
    answer_ok(r, SNCP_MSG_TSI_DEASSOCIATE, 0, SNCP_TSI_INIT, 3001);
    tnve_rec_run(r, 3001);
    answer_ok(r, SNCP_MSG_VN_DISCONNECT, 0, -1, 3002);
    /* incoming: Associate with MIGRATION, then Activate with MIGRATION */
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_ASSOCIATE, SNCP_F_MIGRATION, "started/migrated",
                           4000);
    tnve_rec_run(r, 4000);
    answer_ok(r, SNCP_MSG_VN_CONNECT, 100, -1, 4001);
    tnve_rec_run(r, 4001);
    int i = pending(SNCP_MSG_TSI_ASSOCIATE);
    ck_assert_uint_eq(F.sent[i].flags, SNCP_F_MIGRATION);
    answer_ok(r, SNCP_MSG_TSI_ASSOCIATE, 100, SNCP_TSI_ASSOCIATED, 4002);
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_ACTIVATE, SNCP_F_MIGRATION, "resumed/migrated",
                           4003);
    tnve_rec_run(r, 4003);
    i = pending(SNCP_MSG_TSI_ACTIVATE);
    ck_assert_uint_eq(F.sent[i].flags, SNCP_F_MIGRATION);
    answer_ok(r, SNCP_MSG_TSI_ACTIVATE, 100, SNCP_TSI_ACTIVATED, 4004);
    /* a later plain transition carries no migration flag */
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_ASSOCIATE, 0, "saved", 4005);
    tnve_rec_run(r, 4005);
    i = pending(SNCP_MSG_TSI_DEACTIVATE);
    ck_assert_uint_eq(F.sent[i].flags, 0);
    tnve_rec_destroy(r);
}
END_TEST

/* The destination of a migration under way: a SYNC (nNVE restarted, session lost) re-announces
 * its Associated TSI with MIGRATION, since the source's instance still exists (without the
 * flag the nNVE would refuse it, CONFLICT); once the guest resumed here, no more. */
/* steady(), then the domain migrates away (t=3000) and comes back: its TSI is Associated
 * for the incoming migration (cause `why`) at t=4002. */
static struct tnve_rec *incoming_associated(struct tnve_domxml *x, const char *why)
{
    struct tnve_rec *r = steady(NULL, x);
    tnve_rec_domain_effect(r, x->uuid, TNVE_EFFECT_DEASSOCIATE,
                           SNCP_F_MIGRATION | SNCP_F_MIGRATION_SOURCE, "stopped/migrated", 3000);
    tnve_rec_run(r, 3000);
    answer_ok(r, SNCP_MSG_TSI_DEASSOCIATE, 0, SNCP_TSI_INIT, 3001);
    tnve_rec_run(r, 3001);
    answer_ok(r, SNCP_MSG_VN_DISCONNECT, 0, -1, 3002);
    tnve_rec_domain_effect(r, x->uuid, TNVE_EFFECT_ASSOCIATE, SNCP_F_MIGRATION, why, 4000);
    tnve_rec_run(r, 4000);
    answer_ok(r, SNCP_MSG_VN_CONNECT, 100, -1, 4001);
    tnve_rec_run(r, 4001);
    int i = pending(SNCP_MSG_TSI_ASSOCIATE);
    ck_assert_int_ge(i, 0);
    ck_assert_uint_eq(F.sent[i].flags, SNCP_F_MIGRATION);
    answer_ok(r, SNCP_MSG_TSI_ASSOCIATE, 100, SNCP_TSI_ASSOCIATED, 4002);
    return r;
}

START_TEST(test_migration_incoming_resync)
{
    struct tnve_domxml x;
    struct tnve_rec *r = incoming_associated(&x, "incoming-migration");
    /* an event that changes nothing keeps the mark */
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_NONE, 0, "suspended", 4003);
    for (int round = 0; round < 2; round++) {
        uint64_t t = 5000 + (uint64_t)round * 1000;
        tnve_rec_session_down(r, t);
        tnve_rec_session_up(r, t + 1);
        tnve_rec_run(r, t + 1);
        answer_ok(r, SNCP_MSG_SYNC_BEGIN, 0, -1, t + 2);
        tnve_rec_run(r, t + 2);
        answer_ok(r, SNCP_MSG_VN_CONNECT, 100, -1, t + 3);
        tnve_rec_run(r, t + 3);
        int i = pending(round ? SNCP_MSG_TSI_ACTIVATE : SNCP_MSG_TSI_ASSOCIATE);
        ck_assert_int_ge(i, 0);
        ck_assert_uint_eq(F.sent[i].flags, round ? 0 : SNCP_F_MIGRATION);
        answer(r, i, SNCP_STATUS_SUCCESS, 100, round ? SNCP_TSI_ACTIVATED : SNCP_TSI_ASSOCIATED,
               t + 4);
        tnve_rec_run(r, t + 4);
        answer_ok(r, SNCP_MSG_SYNC_END, 0, -1, t + 5);
        tnve_rec_run(r, t + 5);
        ck_assert_str_eq(tnve_rec_phase(r), "ready");
        if (!round) {
            tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_ACTIVATE, SNCP_F_MIGRATION,
                                   "resumed/migrated", t + 6);
            tnve_rec_run(r, t + 6);
            i = pending(SNCP_MSG_TSI_ACTIVATE);
            ck_assert_uint_eq(F.sent[i].flags, SNCP_F_MIGRATION);
            answer_ok(r, SNCP_MSG_TSI_ACTIVATE, 100, SNCP_TSI_ACTIVATED, t + 7);
        }
    }
    tnve_rec_destroy(r);
}
END_TEST

/* A failed incoming migration (libvirt: STOPPED/FAILED at the destination, the domain then
 * gone): the destination's TSI_DEASSOCIATE carries MIGRATION without MIGRATION_SOURCE; a
 * later stop of a domain that runs here carries no flag. */
START_TEST(test_migration_incoming_failed)
{
    struct tnve_domxml x;
    struct tnve_rec *r = incoming_associated(&x, "started/migrated");
    tnve_rec_domain_remove(r, x.uuid, 0, 4003);
    tnve_rec_run(r, 4003);
    int i = pending(SNCP_MSG_TSI_DEASSOCIATE);
    ck_assert_int_ge(i, 0);
    ck_assert_uint_eq(F.sent[i].flags, SNCP_F_MIGRATION);
    answer_ok(r, SNCP_MSG_TSI_DEASSOCIATE, 0, SNCP_TSI_INIT, 4004);
    tnve_rec_run(r, 4004);
    answer_ok(r, SNCP_MSG_VN_DISCONNECT, 0, -1, 4005);
    /* the same domain started and stopped here: no flag */
    ck_assert_int_eq(tnve_rec_domain_update(r, &x, TNVE_EFFECT_ACTIVATE, 0, "started", 5000), 0);
    tnve_rec_run(r, 5000);
    answer_ok(r, SNCP_MSG_VN_CONNECT, 100, -1, 5001);
    tnve_rec_run(r, 5001);
    answer_ok(r, SNCP_MSG_TSI_ACTIVATE, 100, SNCP_TSI_ACTIVATED, 5002);
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_DEASSOCIATE, 0, "stopped", 5003);
    tnve_rec_run(r, 5003);
    i = pending(SNCP_MSG_TSI_DEASSOCIATE);
    ck_assert_int_ge(i, 0);
    ck_assert_uint_eq(F.sent[i].flags, 0);
    tnve_rec_destroy(r);
}
END_TEST

START_TEST(test_addresses_and_vnics)
{
    struct tnve_domxml x;
    struct tnve_rec *r = steady(NULL, &x);
    int n = F.n;
    struct sncp_addr a[2];
    ck_assert_int_eq(sncp_addr_parse("192.0.2.7@52:54:00:00:01:00", &a[0]), 0);
    ck_assert_int_eq(sncp_addr_parse("2001:db8::7@52:54:00:00:01:00", &a[1]), 0);
    ck_assert_int_eq(tnve_rec_set_addresses(r, x.uuid, x.vnics[0].mac, a, 2, 3000), 1);
    ck_assert_int_eq(tnve_rec_set_addresses(r, x.uuid, x.vnics[0].mac, a, 2, 3000), 0);
    tnve_rec_run(r, 3000);
    ck_assert_int_eq(F.n, n + 1);
    ck_assert_int_eq(F.sent[n].type, SNCP_MSG_TSI_UPDATE);
    ck_assert_uint_eq(F.sent[n].update_op, SNCP_UPDATE_REPLACE);
    ck_assert_uint_eq(F.sent[n].n_addrs, 2);
    answer_ok(r, SNCP_MSG_TSI_UPDATE, 0, SNCP_TSI_ACTIVATED, 3001);
    tnve_rec_run(r, 3001);
    ck_assert_int_eq(F.n, n + 1);
    /* reversed order is the same set */
    struct sncp_addr b[2] = {a[1], a[0]};
    ck_assert_int_eq(tnve_rec_set_addresses(r, x.uuid, x.vnics[0].mac, b, 2, 3002), 0);
    /* hot-plug a second vNIC (VN 5000) and unplug the first */
    struct tnve_domxml y = x;
    uint8_t mac2[6] = {0x52, 0x54, 0, 0, 1, 9};
    memcpy(y.vnics[0].mac, mac2, 6);
    tnve_rec_domain_update(r, &y, TNVE_EFFECT_NONE, 0, "device-added", 4000);
    tnve_rec_run(r, 4000);
    ck_assert_int_ge(pending(SNCP_MSG_TSI_DEASSOCIATE), 0);
    ck_assert_int_ge(pending(SNCP_MSG_TSI_ACTIVATE), 0);
    ck_assert_int_lt(pending(SNCP_MSG_VN_DISCONNECT), 0);
    answer_ok(r, SNCP_MSG_TSI_DEASSOCIATE, 0, SNCP_TSI_INIT, 4001);
    answer_ok(r, SNCP_MSG_TSI_ACTIVATE, 100, SNCP_TSI_ACTIVATED, 4001);
    tnve_rec_run(r, 4001);
    ck_assert_uint_eq(n_tsis(r), 1);
    ck_assert_int_lt(pending(SNCP_MSG_VN_DISCONNECT), 0);
    tnve_rec_destroy(r);
}
END_TEST

START_TEST(test_vn_change)
{
    struct tnve_domxml x;
    struct tnve_rec *r = steady(NULL, &x);
    struct tnve_domxml y = x;
    y.vnics[0].vn.id = 6000;
    snprintf(y.vnics[0].vn.name, sizeof y.vnics[0].vn.name, "vn6000");
    tnve_rec_domain_update(r, &y, TNVE_EFFECT_NONE, 0, "metadata-change", 3000);
    tnve_rec_run(r, 3000);
    /* old instance first: no ACTIVATE in the new VN until it is gone */
    ck_assert_int_ge(pending(SNCP_MSG_TSI_DEASSOCIATE), 0);
    int c = pending(SNCP_MSG_VN_CONNECT);
    ck_assert_int_ge(c, 0);
    ck_assert_uint_eq(F.sent[c].vn_id, 6000);
    answer_ok(r, SNCP_MSG_VN_CONNECT, 600, -1, 3001);
    tnve_rec_run(r, 3001);
    ck_assert_int_lt(pending(SNCP_MSG_TSI_ACTIVATE), 0);
    answer_ok(r, SNCP_MSG_TSI_DEASSOCIATE, 0, SNCP_TSI_INIT, 3002);
    tnve_rec_run(r, 3002);
    int a = pending(SNCP_MSG_TSI_ACTIVATE);
    ck_assert_int_ge(a, 0);
    ck_assert_uint_eq(F.sent[a].vn_id, 6000);
    ck_assert_int_ge(pending(SNCP_MSG_VN_DISCONNECT), 0);
    tnve_rec_destroy(r);
}
END_TEST

/* The guest migrates away (or, the second time, stops) while the session is down.  The SYNC
 * after it de-associates the migrated instance as a migration source before SYNC_END, so
 * that the nNVE activates the destination's first; the stopped one is left to the sweep. */
START_TEST(test_migration_source_during_outage)
{
    for (int migrated = 1; migrated >= 0; migrated--) {
        struct tnve_domxml x;
        struct tnve_rec *r = steady(NULL, &x);
        const uint16_t f = migrated ? SNCP_F_MIGRATION | SNCP_F_MIGRATION_SOURCE : 0;
        tnve_rec_session_down(r, 2000);
        tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_DEASSOCIATE, f,
                               migrated ? "stopped/migrated" : "stopped/destroyed", 2100);
        tnve_rec_domain_remove(r, x.uuid, 0, 2200);
        tnve_rec_run(r, 2200);
        int base = F.n;
        tnve_rec_session_up(r, 3000);
        ck_assert_int_eq(pending(SNCP_MSG_SYNC_BEGIN), base);
        answer_ok(r, SNCP_MSG_SYNC_BEGIN, 0, -1, 3001);
        tnve_rec_run(r, 3001);
        int d = pending(SNCP_MSG_TSI_DEASSOCIATE);
        if (migrated) {
            ck_assert_int_gt(d, base);
            ck_assert_uint_eq(F.sent[d].flags, f);
            ck_assert_int_lt(pending(SNCP_MSG_SYNC_END), 0); /* the leave goes first */
            answer_ok(r, SNCP_MSG_TSI_DEASSOCIATE, 0, SNCP_TSI_INIT, 3002);
            tnve_rec_run(r, 3002);
        } else {
            ck_assert_int_lt(d, 0);
        }
        ck_assert_int_gt(pending(SNCP_MSG_SYNC_END), base);
        answer_ok(r, SNCP_MSG_SYNC_END, 0, -1, 3003);
        tnve_rec_run(r, 3003);
        ck_assert_str_eq(tnve_rec_phase(r), "ready");
        ck_assert_uint_eq(n_tsis(r), 0);
        tnve_rec_destroy(r);
    }
}
END_TEST

/* The VN of a running vNIC changes while the session is down: the SYNC after it
 * de-associates the old instance, then activates the new one, then ends. */
START_TEST(test_vn_change_during_outage)
{
    struct tnve_domxml x;
    struct tnve_rec *r = steady(NULL, &x);
    tnve_rec_session_down(r, 2000);
    struct tnve_domxml y = x;
    y.vnics[0].vn.id = 6000;
    snprintf(y.vnics[0].vn.name, sizeof y.vnics[0].vn.name, "vn6000");
    tnve_rec_domain_update(r, &y, TNVE_EFFECT_NONE, 0, "metadata-change", 2500);
    int base = F.n;
    tnve_rec_session_up(r, 3000);
    answer_ok(r, SNCP_MSG_SYNC_BEGIN, 0, -1, 3001);
    tnve_rec_run(r, 3001);
    int d = pending(SNCP_MSG_TSI_DEASSOCIATE);
    ck_assert_int_gt(d, base);
    answer_ok(r, SNCP_MSG_VN_CONNECT, 600, -1, 3002);
    tnve_rec_run(r, 3002);
    ck_assert_int_lt(pending(SNCP_MSG_TSI_ACTIVATE), 0); /* the old instance goes first */
    ck_assert_int_lt(pending(SNCP_MSG_SYNC_END), 0);
    answer_ok(r, SNCP_MSG_TSI_DEASSOCIATE, 0, SNCP_TSI_INIT, 3003);
    tnve_rec_run(r, 3003);
    int a = pending(SNCP_MSG_TSI_ACTIVATE);
    ck_assert_int_gt(a, d);
    ck_assert_uint_eq(F.sent[a].vn_id, 6000);
    answer_ok(r, SNCP_MSG_TSI_ACTIVATE, 600, SNCP_TSI_ACTIVATED, 3004);
    tnve_rec_run(r, 3004);
    answer_ok(r, SNCP_MSG_SYNC_END, 0, -1, 3005);
    tnve_rec_run(r, 3005);
    ck_assert_str_eq(tnve_rec_phase(r), "ready");
    ck_assert_uint_eq(n_tsis(r), 1); /* one row per vNIC */
    char b[64];
    ck_assert_str_eq(tsi_field(r, 0, "vn_id", b, sizeof b), "6000");
    ck_assert_str_eq(tsi_field(r, 0, "acked", b, sizeof b), "activated");
    tnve_rec_destroy(r);
}
END_TEST

/* Answers the pending VN_CONNECT as an nNVE that resolved it to the entry id/name. */
static void answer_connect(struct tnve_rec *r, uint16_t tag, uint32_t id, const char *name,
                           uint64_t now)
{
    int i = pending(SNCP_MSG_VN_CONNECT);
    ck_assert_int_ge(i, 0);
    F.answered[i] = 1;
    sncp_msg_init(&RSP, SNCP_MSG_RESPONSE, F.sent[i].xid);
    RSP.status = SNCP_STATUS_SUCCESS;
    sncp_msg_set(&RSP, SNCP_TLV_STATUS);
    RSP.tags[0].vid = tag;
    RSP.n_tags = 1;
    sncp_msg_set(&RSP, SNCP_TLV_LOCAL_TAG);
    RSP.vn_id = id;
    sncp_msg_set(&RSP, SNCP_TLV_VN_ID);
    snprintf(RSP.vn_name, sizeof RSP.vn_name, "%s", name);
    sncp_msg_set(&RSP, SNCP_TLV_VN_NAME);
    tnve_rec_response(r, F.cookie[i], &RSP, 0, now);
}

/* One VN named by name on one vNIC and by ID on another is one VN (PROTOCOL.md 4.4): one
 * row in show vns, and the last user of one form does not disconnect it. */
START_TEST(test_vn_forms_one_vn)
{
    struct tnve_rec *r = mk(NULL);
    uint32_t none[] = {0};
    struct tnve_domxml a, b;
    mk_dom(&a, 1, 1, none);
    mk_dom(&b, 2, 1, none);
    snprintf(a.vnics[0].vn.name, sizeof a.vnics[0].vn.name, "blue");
    b.vnics[0].vn.id = 5000;
    tnve_rec_inventory_begin(r);
    tnve_rec_domain_update(r, &a, TNVE_EFFECT_ACTIVATE, 0, "running", 1000);
    tnve_rec_domain_update(r, &b, TNVE_EFFECT_ACTIVATE, 0, "running", 1000);
    tnve_rec_inventory_end(r, 1000);
    tnve_rec_session_up(r, 1000);
    answer_ok(r, SNCP_MSG_SYNC_BEGIN, 0, -1, 1001);
    tnve_rec_run(r, 1001);
    ck_assert_int_eq(count_type(SNCP_MSG_VN_CONNECT), 2); /* two forms, not resolved yet */
    answer_connect(r, 100, 5000, "blue", 1002);
    answer_connect(r, 100, 5000, "blue", 1003);
    tnve_rec_run(r, 1003);
    json_t *vns = tnve_rec_vns_json(r);
    ck_assert_uint_eq(json_array_size(vns), 1);
    json_decref(vns);
    while (pending(SNCP_MSG_TSI_ACTIVATE) >= 0)
        answer_ok(r, SNCP_MSG_TSI_ACTIVATE, 100, SNCP_TSI_ACTIVATED, 1004);
    tnve_rec_run(r, 1004);
    answer_ok(r, SNCP_MSG_SYNC_END, 0, -1, 1005);
    tnve_rec_run(r, 1005);
    /* the name-only domain goes: its TSI leaves, the VN stays for the other */
    tnve_rec_domain_remove(r, a.uuid, 0, 2000);
    tnve_rec_run(r, 2000);
    answer_ok(r, SNCP_MSG_TSI_DEASSOCIATE, 0, SNCP_TSI_INIT, 2001);
    tnve_rec_run(r, 2001);
    ck_assert_int_eq(count_type(SNCP_MSG_VN_DISCONNECT), 0);
    /* a third vNIC naming it by name joins the connected VN: no new VN_CONNECT */
    struct tnve_domxml c;
    mk_dom(&c, 3, 1, none);
    snprintf(c.vnics[0].vn.name, sizeof c.vnics[0].vn.name, "blue");
    int connects = count_type(SNCP_MSG_VN_CONNECT);
    tnve_rec_domain_update(r, &c, TNVE_EFFECT_ACTIVATE, 0, "running", 3000);
    tnve_rec_run(r, 3000);
    ck_assert_int_eq(count_type(SNCP_MSG_VN_CONNECT), connects);
    int i = pending(SNCP_MSG_TSI_ACTIVATE);
    ck_assert_int_ge(i, 0);
    ck_assert_uint_eq(F.sent[i].vn_id, 5000);
    tnve_rec_destroy(r);
}
END_TEST

START_TEST(test_send_failure_retries)
{
    struct tnve_domxml x;
    struct tnve_rec *r = steady(NULL, &x);
    int n = F.n;
    F.fail_send = 1;
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_ASSOCIATE, 0, "saved", 3000);
    tnve_rec_run(r, 3000);
    ck_assert_int_eq(F.n, n);
    F.fail_send = 0;
    tnve_rec_run(r, 3001);
    ck_assert_int_eq(F.n, n); /* backs off */
    tnve_rec_run(r, 3200);
    ck_assert_int_eq(F.n, n + 1);
    /* timeout of an outstanding request: retried after backoff */
    tnve_rec_response(r, F.cookie[n], NULL, SNCP_E_TIMEOUT, 3300);
    F.answered[n] = 1;
    tnve_rec_run(r, 3301);
    ck_assert_int_eq(F.n, n + 1);
    tnve_rec_run(r, 3600);
    ck_assert_int_eq(F.n, n + 2);
    tnve_rec_destroy(r);
}
END_TEST

START_TEST(test_inventory_sweeps_domains)
{
    struct tnve_domxml x;
    struct tnve_rec *r = steady(NULL, &x);
    int n = F.n;
    /* libvirt restarted and the domain is gone from the new listing */
    tnve_rec_inventory_begin(r);
    tnve_rec_inventory_end(r, 3000);
    tnve_rec_run(r, 3000);
    ck_assert_int_eq(F.sent[n].type, SNCP_MSG_TSI_DEASSOCIATE);
    answer_ok(r, SNCP_MSG_TSI_DEASSOCIATE, 0, SNCP_TSI_INIT, 3001);
    tnve_rec_run(r, 3001);
    answer_ok(r, SNCP_MSG_VN_DISCONNECT, 0, -1, 3002);
    tnve_rec_run(r, 3002);
    ck_assert_uint_eq(n_tsis(r), 0);
    json_t *d = tnve_rec_domains_json(r);
    ck_assert_uint_eq(json_array_size(d), 0);
    json_decref(d);
    tnve_rec_destroy(r);
}
END_TEST

/* VN_DISCONNECT from the nNVE for a VN this hypervisor does not have: NO_SUCH_VN, and
 * nothing of ours changes or is sent. */
START_TEST(test_peer_vn_disconnect_unknown)
{
    struct tnve_domxml x;
    struct tnve_rec *r = steady(NULL, &x);
    int n = F.n;
    peer_req(r, SNCP_MSG_VN_DISCONNECT, NULL, 6001, 5000);
    ck_assert_int_eq(F.n_resp, 1);
    ck_assert_uint_eq(F.resp[0].status, SNCP_STATUS_NO_SUCH_VN);
    char b[64];
    ck_assert_str_eq(tsi_field(r, 0, "acked", b, sizeof b), "activated");
    tnve_rec_run(r, 9000);
    ck_assert_int_eq(F.n, n);
    tnve_rec_destroy(r);
}
END_TEST

/* An nNVE that advertised no capability gets no SYNC_BEGIN / SYNC_END, no TSI_UPDATE (the
 * addresses ride on a repeated TSI_ACTIVATE) and no migration flag. */
START_TEST(test_peer_caps_none)
{
    struct tnve_rec *r = mk(NULL);
    struct tnve_domxml x;
    uint32_t vns[] = {5000};
    mk_dom(&x, 1, 1, vns);
    tnve_rec_set_peer_caps(r, 0);
    tnve_rec_inventory_begin(r);
    tnve_rec_domain_update(r, &x, TNVE_EFFECT_ACTIVATE, 0, "running", 1000);
    tnve_rec_inventory_end(r, 1000);
    tnve_rec_session_up(r, 1000);
    tnve_rec_run(r, 1000);
    ck_assert_int_eq(F.n, 1);
    ck_assert_int_eq(F.sent[0].type, SNCP_MSG_VN_CONNECT);
    answer_ok(r, SNCP_MSG_VN_CONNECT, 100, -1, 1001);
    tnve_rec_run(r, 1001);
    answer_ok(r, SNCP_MSG_TSI_ACTIVATE, 100, SNCP_TSI_ACTIVATED, 1002);
    tnve_rec_run(r, 1002);
    ck_assert_str_eq(tnve_rec_phase(r), "ready");
    ck_assert_int_eq(count_type(SNCP_MSG_SYNC_BEGIN), 0);
    ck_assert_int_eq(count_type(SNCP_MSG_SYNC_END), 0);
    int n = F.n;
    struct sncp_addr a;
    ck_assert_int_eq(sncp_addr_parse("192.0.2.7@52:54:00:00:01:00", &a), 0);
    ck_assert_int_eq(tnve_rec_set_addresses(r, x.uuid, x.vnics[0].mac, &a, 1, 2000), 1);
    tnve_rec_run(r, 2000);
    ck_assert_int_eq(F.n, n + 1);
    ck_assert_int_eq(F.sent[n].type, SNCP_MSG_TSI_ACTIVATE);
    ck_assert_uint_eq(F.sent[n].n_addrs, 1);
    answer_ok(r, SNCP_MSG_TSI_ACTIVATE, 100, SNCP_TSI_ACTIVATED, 2001);
    tnve_rec_run(r, 2001);
    ck_assert_int_eq(F.n, n + 1); /* the addresses count as acknowledged */
    ck_assert_int_eq(count_type(SNCP_MSG_TSI_UPDATE), 0);
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_DEASSOCIATE,
                           SNCP_F_MIGRATION | SNCP_F_MIGRATION_SOURCE, "stopped/migrated", 3000);
    tnve_rec_run(r, 3000);
    int i = pending(SNCP_MSG_TSI_DEASSOCIATE);
    ck_assert_int_ge(i, 0);
    ck_assert_uint_eq(F.sent[i].flags, 0);
    tnve_rec_destroy(r);
}
END_TEST

/* ---- the vectors of messages the agent sends ---- */

/* Format of a vector file's message (its "hex:" lines decoded). */
static void vector_text(const char *name, char *text, size_t cap)
{
    char path[512], line[256], hex[4096] = "";
    snprintf(path, sizeof path, "%s/proto/vectors/valid/%s.vec", SRCDIR, name);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s", path);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "hex: ", 5))
            strncat(hex, line + 5, strcspn(line + 5, "\r\n"));
    fclose(f);
    static uint8_t b[2048];
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
        b[i] = (uint8_t)v;
    }
    static struct sncp_msg m;
    uint16_t bad;
    ck_assert_int_eq(sncp_msg_decode(b, n, &m, &bad), 0);
    sncp_msg_format(&m, text, cap);
}

/* Format of a message as it goes on the wire (encoded, then decoded). */
static void sent_text(const struct sncp_msg *sent, char *text, size_t cap)
{
    static uint8_t b[SNCP_MAX_MSG_LEN];
    static struct sncp_msg m;
    int n = sncp_msg_encode(sent, b, sizeof b);
    ck_assert_int_gt(n, 0);
    uint16_t bad;
    ck_assert_int_eq(sncp_msg_decode(b, (size_t)n, &m, &bad), 0);
    sncp_msg_format(&m, text, cap);
}

/* The same fields in the same order; values compared except run-dependent ones. */
static void assert_like_vector(const char *vector, const struct sncp_msg *sent)
{
    static const char *const masked[] = {
        "xid",     "node_id", "session_epoch", "keepalive_ms",  "vn_id",
        "vn_name", "tsi",     "addr",          "preferred_tag", NULL};
    char vt[2048], st[2048];
    vector_text(vector, vt, sizeof vt);
    sent_text(sent, st, sizeof st);
    char *vs = NULL, *ss = NULL;
    char *v = strtok_r(vt, " ", &vs), *w = strtok_r(st, " ", &ss);
    for (; v || w; v = strtok_r(NULL, " ", &vs), w = strtok_r(NULL, " ", &ss)) {
        ck_assert_msg(v && w, "%s: field count differs (agent sends %s)", vector, st);
        size_t k = strcspn(v, "=");
        ck_assert_msg(strcspn(w, "=") == k && !strncmp(v, w, k), "%s: field %s, agent %s", vector,
                      v, w);
        int mask = 0;
        for (int i = 0; masked[i]; i++)
            mask |= strlen(masked[i]) == k && !strncmp(masked[i], v, k);
        ck_assert_msg(mask || !strcmp(v, w), "%s: %s, agent %s", vector, v, w);
    }
}

/* What the reconciler sends is what the vectors of those messages show. */
START_TEST(test_vectors_as_sent)
{
    struct tnve_domxml x;
    struct tnve_rec *r = steady(NULL, &x);
    assert_like_vector("14-sync-begin", &F.sent[0]);
    assert_like_vector("15-sync-end", &F.sent[3]);
    int n = F.n;
    struct sncp_addr a;
    ck_assert_int_eq(sncp_addr_parse("02:00:00:00:00:ff", &a), 0);
    ck_assert_int_eq(tnve_rec_set_addresses(r, x.uuid, x.vnics[0].mac, &a, 1, 3000), 1);
    tnve_rec_run(r, 3000);
    ck_assert_int_eq(F.sent[n].type, SNCP_MSG_TSI_UPDATE);
    assert_like_vector("12-tsi-update-replace", &F.sent[n]);
    answer_ok(r, SNCP_MSG_TSI_UPDATE, 0, SNCP_TSI_ACTIVATED, 3001);
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_DEASSOCIATE,
                           SNCP_F_MIGRATION | SNCP_F_MIGRATION_SOURCE, "stopped/migrated", 3002);
    tnve_rec_run(r, 3002);
    int i = pending(SNCP_MSG_TSI_DEASSOCIATE);
    ck_assert_int_ge(i, 0);
    assert_like_vector("10-tsi-deassociate", &F.sent[i]);
    answer_ok(r, SNCP_MSG_TSI_DEASSOCIATE, 0, SNCP_TSI_INIT, 3003);
    tnve_rec_run(r, 3003);
    answer_ok(r, SNCP_MSG_VN_DISCONNECT, 0, -1, 3004);
    tnve_rec_domain_effect(r, x.uuid, TNVE_EFFECT_ACTIVATE, 0, "started", 3005);
    tnve_rec_run(r, 3005);
    i = pending(SNCP_MSG_VN_CONNECT);
    ck_assert_int_ge(i, 0);
    assert_like_vector("04-vn-connect", &F.sent[i]);
    tnve_rec_destroy(r);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("tnve-reconcile");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_sync_and_activate);
    tcase_add_test(tc, test_sync_window_full);
    tcase_add_test(tc, test_lifecycle_and_disconnect);
    tcase_add_test(tc, test_first_tsi_follows_vn_connect);
    tcase_add_test(tc, test_backoff_growth);
    tcase_add_test(tc, test_retry_after_honoured);
    tcase_add_test(tc, test_resync_content);
    tcase_add_test(tc, test_sync_invalid_state);
    tcase_add_test(tc, test_peer_deassociate_converges);
    tcase_add_test(tc, test_peer_vn_disconnect_converges);
    tcase_add_test(tc, test_peer_vn_disconnect_unknown);
    tcase_add_test(tc, test_peer_caps_none);
    tcase_add_test(tc, test_vectors_as_sent);
    tcase_add_test(tc, test_tags_persist);
    tcase_add_test(tc, test_tags_write_retried);
    tcase_add_test(tc, test_hook_prepare);
    tcase_add_test(tc, test_migration_flags);
    tcase_add_test(tc, test_migration_incoming_resync);
    tcase_add_test(tc, test_migration_incoming_failed);
    tcase_add_test(tc, test_migration_source_during_outage);
    tcase_add_test(tc, test_addresses_and_vnics);
    tcase_add_test(tc, test_vn_change);
    tcase_add_test(tc, test_vn_change_during_outage);
    tcase_add_test(tc, test_vn_forms_one_vn);
    tcase_add_test(tc, test_send_failure_retries);
    tcase_add_test(tc, test_inventory_sweeps_domains);
    tcase_add_test(tc, test_dataplane_ports_across_restart);
    tcase_add_test(tc, test_dataplane_pending_activation_keeps_port);
    tcase_add_test(tc, test_dataplane_ports_write_failure_logged);
    tcase_add_test(tc, test_serves_failover);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    snv_log_set_level(SNV_LOG_WARN);
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
