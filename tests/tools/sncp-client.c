/* sncp-client.c: a scripted SNCP client (the tNVE side) for integration tests.
 *
 *   sncp-client --connect HOST:PORT --cert FILE --key FILE --ca FILE [--expect-peer NAME]
 *               [--timeout MS] [--dump FILE] < script
 *   sncp-client --l2 IFNAME [--nnve-mac MAC] [--vlan VID] [--ethertype N] --cert ... < script
 *
 * --retry-busy N repeats a request answered BUSY with RETRY_AFTER, after that many ms, up
 * to N times; only its last response is printed (a switch of a ToR pair answers BUSY while
 * it agrees a VN's tag with its peer).
 * --dump FILE writes every message received, as the bytes arrived, one "hex: ..." line each.
 * --l2 runs the session over the SNCP Layer-2 channel on interface IFNAME (needs
 * CAP_NET_RAW) to the nNVE at MAC, or, without --nnve-mac, to the first nNVE that answers
 * discovery; --timeout then also bounds discovery and the channel's open.
 * Reads one command per line from stdin and runs them in order; each request waits for its
 * response.  Every response and every request from the nNVE is printed as one JSON line:
 *   {"type":"RESPONSE","request":"TSI_ACTIVATE","xid":3,"status":"success","tags":[100],
 *    "tsi_state":"activated","vn_id":5000,...}
 *   {"type":"REQUEST","request":"VN_DISCONNECT","xid":1,"vn_id":5000}   (answered SUCCESS)
 *   (a TSI_UPDATE also shows "update_op":"add"|"remove"|"replace")
 * Commands:
 *   hello node=hv1 epoch=1 [uplink=MAC]... [version=MIN-MAX] [keepalive=MS] [caps=N]
 *   connect|disconnect vn=ID [name=NAME] [pref=TAG]...
 *   associate|activate tsi=UUID/MAC vn=ID [name=NAME] [addr=ADDR]... [pref=TAG]...
 *                      [flags=migration,source,implicit]
 *   deactivate|deassociate tsi=UUID/MAC [addr=ADDR]... [flags=...]
 *   update tsi=UUID/MAC op=add|remove|replace [addr=ADDR]...
 *   sync-begin | sync-end
 *   raw HEX            plaintext bytes straight into TLS (malformed input); then prints
 *                      {"type":"RAW","statuses":{...}} with the statuses answered to them
 *   wait-request [MS]  wait for a request from the nNVE (printed when it arrives)
 *   wait-close [MS]    wait until the nNVE closes the session
 *   sleep MS | quit
 * The first line is {"type":"CONNECTED","peer":IDENTITY,"via":TRANSPORT_PEER} once TLS is
 * up ("via": "IP:PORT", or "IFNAME/MAC[/vlanN]" over L2).
 * Exit status: 0 when the script ran to its end, 1 on a timeout or an unexpected close,
 * 2 on usage errors.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>

#include "sncp-conn-l2.h"
#include "sncp-conn.h"
#include "sncp-msg.h"
#include "sncp-session.h"
#include "sncp-tls.h"
#include "snv-log.h"

enum wait_kind { W_NONE, W_RESPONSE, W_REQUEST, W_CLOSE, W_SLEEP, W_RETRY };

static uv_loop_t *loop;
static struct sncp_conn *conn;
static struct sncp_l2_port *port; /* --l2 */
static uv_timer_t timer;
static char **lines;
static size_t n_lines, cur;
static enum wait_kind waiting;
static int closed, exit_code = 0, requests_seen, requests_consumed;
static uint32_t timeout_ms = 5000;
static int raw_pending;
static FILE *dump; /* --dump: every message received, as "hex: ..." lines */
static uint64_t raw_status_before[SNCP_STATUS_COUNT_];
static unsigned retry_busy, busy_left; /* --retry-busy */
static struct sncp_msg last_req;       /* the request of the command waiting for its answer */

static void run_next(void);
static void arm(enum wait_kind w, uint32_t ms);

static void print_json(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s) {
        puts(s);
        fflush(stdout);
        free(s);
    }
    json_decref(o);
}

static void finish(int code)
{
    if (code)
        exit_code = code;
    cur = n_lines;
    waiting = W_NONE;
    uv_timer_stop(&timer);
    if (conn && !closed)
        sncp_conn_close(conn);
    else if (!uv_is_closing((uv_handle_t *)&timer))
        uv_close((uv_handle_t *)&timer, NULL);
}

static void msg_fields(json_t *o, const struct sncp_msg *m)
{
    char buf[128];
    if (sncp_msg_has(m, SNCP_TLV_VN_ID))
        json_object_set_new(o, "vn_id", json_integer(m->vn_id));
    if (sncp_msg_has(m, SNCP_TLV_VN_NAME))
        json_object_set_new(o, "vn_name", json_string(m->vn_name));
    if (sncp_msg_has(m, SNCP_TLV_TSI_ID)) {
        sncp_tsi_id_format(&m->tsi, buf, sizeof buf);
        json_object_set_new(o, "tsi", json_string(buf));
    }
    if (m->n_tags) {
        json_t *a = json_array();
        for (unsigned i = 0; i < m->n_tags; i++)
            json_array_append_new(a, json_integer(m->tags[i].vid));
        json_object_set_new(o, "tags", a);
    }
    if (m->n_addrs) {
        json_t *a = json_array();
        for (unsigned i = 0; i < m->n_addrs; i++) {
            sncp_addr_format(&m->addrs[i], buf, sizeof buf);
            json_array_append_new(a, json_string(buf));
        }
        json_object_set_new(o, "addresses", a);
    }
    if (sncp_msg_has(m, SNCP_TLV_UPDATE_OP))
        json_object_set_new(o, "update_op",
                            json_string(m->update_op == SNCP_UPDATE_ADD       ? "add"
                                        : m->update_op == SNCP_UPDATE_REMOVE  ? "remove"
                                        : m->update_op == SNCP_UPDATE_REPLACE ? "replace"
                                                                              : "unknown"));
    if (sncp_msg_has(m, SNCP_TLV_TSI_STATE))
        json_object_set_new(o, "tsi_state", json_string(sncp_tsi_state_name(m->tsi_state)));
    if (sncp_msg_has(m, SNCP_TLV_PORT))
        json_object_set_new(o, "port", json_string(m->port));
    if (sncp_msg_has(m, SNCP_TLV_HOLD_TIME))
        json_object_set_new(o, "hold_time_ms", json_integer(m->hold_time_ms));
    if (sncp_msg_has(m, SNCP_TLV_KEEPALIVE))
        json_object_set_new(o, "keepalive_ms", json_integer(m->keepalive_ms));
    if (sncp_msg_has(m, SNCP_TLV_VERSION_RANGE)) {
        json_object_set_new(o, "version", json_integer(m->version_max));
        json_object_set_new(o, "version_min", json_integer(m->version_min));
    }
    if (sncp_msg_has(m, SNCP_TLV_CAPABILITIES))
        json_object_set_new(o, "capabilities", json_integer(m->capabilities));
    if (sncp_msg_has(m, SNCP_TLV_NODE_ID))
        json_object_set_new(o, "node_id", json_string(m->node_id));
    if (sncp_msg_has(m, SNCP_TLV_REASON))
        json_object_set_new(o, "reason", json_string(m->reason));
    if (sncp_msg_has(m, SNCP_TLV_ERROR_TLV))
        json_object_set_new(o, "error_tlv", json_string(sncp_tlv_name(m->error_tlv)));
    if (m->flags) {
        json_t *a = json_array();
        if (m->flags & SNCP_F_MIGRATION)
            json_array_append_new(a, json_string("migration"));
        if (m->flags & SNCP_F_MIGRATION_SOURCE)
            json_array_append_new(a, json_string("source"));
        if (m->flags & SNCP_F_IMPLICIT_CONNECT)
            json_array_append_new(a, json_string("implicit"));
        json_object_set_new(o, "flags", a);
    }
}

static void on_timeout(uv_timer_t *t)
{
    (void)t;
    if (waiting == W_SLEEP) {
        waiting = W_NONE;
        run_next();
        return;
    }
    if (waiting == W_RETRY) {
        struct sncp_msg m = last_req;
        if (!conn || sncp_conn_send(conn, &m, 1) < 0) {
            finish(1);
            return;
        }
        arm(W_RESPONSE, timeout_ms);
        return;
    }
    print_json(json_pack("{s:s, s:s}", "type", "TIMEOUT", "command",
                         cur > 0 && cur <= n_lines ? lines[cur - 1] : ""));
    finish(1);
}

static void arm(enum wait_kind w, uint32_t ms)
{
    waiting = w;
    uv_timer_start(&timer, on_timeout, ms, 0);
}

static void dump_frame(void *ctx, const uint8_t *msg, size_t len)
{
    (void)ctx;
    fputs("hex: ", dump);
    for (size_t i = 0; i < len; i++)
        fprintf(dump, "%02x", msg[i]);
    fputc('\n', dump);
    fflush(dump);
}

static void on_connected(struct sncp_conn *c, const char *peer)
{
    if (dump)
        sncp_session_set_tap(sncp_conn_session(c), dump_frame, NULL);
    print_json(json_pack("{s:s, s:s, s:s}", "type", "CONNECTED", "peer", peer, "via",
                         sncp_conn_peer_name(c)));
    uv_timer_stop(&timer);
    waiting = W_NONE;
    run_next();
}

static void on_request(struct sncp_conn *c, const struct sncp_msg *req)
{
    json_t *o = json_pack("{s:s, s:s, s:i}", "type", "REQUEST", "request",
                          sncp_msg_type_name(req->type), "xid", (int)req->xid);
    msg_fields(o, req);
    print_json(o);
    struct sncp_msg rsp;
    sncp_msg_init(&rsp, SNCP_MSG_RESPONSE, req->xid);
    sncp_conn_respond(c, req, &rsp);
    requests_seen++;
    if (waiting == W_REQUEST) {
        requests_consumed++;
        uv_timer_stop(&timer);
        waiting = W_NONE;
        run_next();
    }
}

static void on_response(struct sncp_conn *c, uint64_t cookie, const struct sncp_msg *rsp, int err)
{
    if (rsp && cookie == 1 && waiting == W_RESPONSE && busy_left &&
        rsp->status == SNCP_STATUS_BUSY && sncp_msg_has(rsp, SNCP_TLV_RETRY_AFTER)) {
        busy_left--;
        arm(W_RETRY, rsp->retry_after_ms < 60000 ? rsp->retry_after_ms : 60000);
        return;
    }
    if (!rsp) {
        print_json(json_pack("{s:s, s:s}", "type", "ERROR", "error", sncp_error_token(err)));
    } else {
        json_t *o = json_pack("{s:s, s:s, s:i, s:s}", "type", "RESPONSE", "request",
                              sncp_msg_type_name(rsp->request_type), "xid", (int)rsp->xid, "status",
                              sncp_status_token(rsp->status));
        msg_fields(o, rsp);
        print_json(o);
    }
    if (raw_pending) {
        raw_pending = 0;
        const struct sncp_session_stats *ss = sncp_session_stats(sncp_conn_session(c));
        json_t *st = json_object();
        for (unsigned i = 0; i < SNCP_STATUS_COUNT_; i++) {
            uint64_t d = ss->status_in[i] - raw_status_before[i];
            if (rsp && i == rsp->status)
                d--; /* the flush request's own answer */
            if (d)
                json_object_set_new(st, sncp_status_token((uint16_t)i),
                                    json_integer((json_int_t)d));
        }
        print_json(json_pack("{s:s, s:o}", "type", "RAW", "statuses", st));
    }
    if (waiting == W_RESPONSE) {
        uv_timer_stop(&timer);
        waiting = W_NONE;
        run_next();
    }
}

static void on_closed(struct sncp_conn *c, int err)
{
    (void)c;
    closed = 1;
    conn = NULL;
    sncp_l2_port_destroy(port); /* frees itself once the connection is gone */
    port = NULL;
    print_json(json_pack("{s:s, s:s}", "type", "CLOSED", "reason",
                         err ? sncp_error_token(err) : "orderly"));
    if (waiting == W_CLOSE) {
        waiting = W_NONE;
        uv_timer_stop(&timer);
    } else if (cur < n_lines || waiting != W_NONE) {
        exit_code = 1;
    }
    cur = n_lines;
    waiting = W_NONE;
    uv_timer_stop(&timer);
    if (!uv_is_closing((uv_handle_t *)&timer))
        uv_close((uv_handle_t *)&timer, NULL);
}

/* ---- command parsing ---- */

static int parse_flags(const char *v, uint16_t *flags)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", v);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "migration"))
            *flags |= SNCP_F_MIGRATION;
        else if (!strcmp(t, "source"))
            *flags |= SNCP_F_MIGRATION_SOURCE;
        else if (!strcmp(t, "implicit"))
            *flags |= SNCP_F_IMPLICIT_CONNECT;
        else
            return -1;
    }
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void send_raw(const char *hex)
{
    static uint8_t buf[65536];
    size_t n = 0;
    for (const char *p = hex; *p && n < sizeof buf;) {
        if (*p == ' ') {
            p++;
            continue;
        }
        int hi = hexval(p[0]), lo = p[1] ? hexval(p[1]) : -1;
        if (hi < 0 || lo < 0) {
            fprintf(stderr, "sncp-client: bad hex in raw\n");
            finish(2);
            return;
        }
        buf[n++] = (uint8_t)(hi * 16 + lo);
        p += 2;
    }
    struct sncp_session *s = sncp_conn_session(conn);
    memcpy(raw_status_before, sncp_session_stats(s)->status_in, sizeof raw_status_before);
    sncp_tls_write((struct sncp_tls *)sncp_session_tls(s), buf, n);
    /* A harmless request pushes the bytes out behind it and tells when all is answered
     * (the session answers in order). */
    struct sncp_msg m;
    sncp_msg_init(&m, SNCP_MSG_VN_DISCONNECT, 0);
    m.vn_id = 0xFFFFFF;
    sncp_msg_set(&m, SNCP_TLV_VN_ID);
    raw_pending = 1;
    if (sncp_conn_send(conn, &m, 0) < 0) {
        finish(1);
        return;
    }
    arm(W_RESPONSE, timeout_ms);
}

static void run_command(char *line)
{
    char *argv[80];
    int argc = 0;
    char *save = NULL;
    for (char *t = strtok_r(line, " \t", &save); t && argc < 80; t = strtok_r(NULL, " \t", &save))
        argv[argc++] = t;
    if (!argc || argv[0][0] == '#') {
        run_next();
        return;
    }
    const char *cmd = argv[0];
    if (!strcmp(cmd, "quit")) {
        finish(0);
        return;
    }
    if (!strcmp(cmd, "sleep")) {
        arm(W_SLEEP, argc > 1 ? (uint32_t)atoi(argv[1]) : 100);
        return;
    }
    if (!strcmp(cmd, "wait-request")) {
        if (requests_seen > requests_consumed) {
            requests_consumed++;
            run_next();
            return;
        }
        arm(W_REQUEST, argc > 1 ? (uint32_t)atoi(argv[1]) : timeout_ms);
        return;
    }
    if (!strcmp(cmd, "wait-close")) {
        if (closed)
            return;
        arm(W_CLOSE, argc > 1 ? (uint32_t)atoi(argv[1]) : timeout_ms);
        return;
    }
    if (!conn) {
        finish(1);
        return;
    }
    if (!strcmp(cmd, "raw")) {
        char hex[65536] = "";
        size_t off = 0;
        for (int i = 1; i < argc && off < sizeof hex; i++)
            off += (size_t)snprintf(hex + off, sizeof hex - off, "%s", argv[i]);
        send_raw(hex);
        return;
    }
    static const struct {
        const char *name;
        enum sncp_msg_type type;
    } types[] = {
        {"hello", SNCP_MSG_HELLO},
        {"connect", SNCP_MSG_VN_CONNECT},
        {"disconnect", SNCP_MSG_VN_DISCONNECT},
        {"associate", SNCP_MSG_TSI_ASSOCIATE},
        {"activate", SNCP_MSG_TSI_ACTIVATE},
        {"deactivate", SNCP_MSG_TSI_DEACTIVATE},
        {"deassociate", SNCP_MSG_TSI_DEASSOCIATE},
        {"update", SNCP_MSG_TSI_UPDATE},
        {"sync-begin", SNCP_MSG_SYNC_BEGIN},
        {"sync-end", SNCP_MSG_SYNC_END},
    };
    int type = -1;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(cmd, types[i].name))
            type = types[i].type;
    if (type < 0) {
        fprintf(stderr, "sncp-client: unknown command \"%s\"\n", cmd);
        finish(2);
        return;
    }
    static struct sncp_msg m;
    sncp_msg_init(&m, (enum sncp_msg_type)type, 0);
    if (type == SNCP_MSG_HELLO) {
        m.version_min = m.version_max = SNCP_VERSION;
        sncp_msg_set(&m, SNCP_TLV_VERSION_RANGE);
        snprintf(m.node_id, sizeof m.node_id, "sncp-client");
        sncp_msg_set(&m, SNCP_TLV_NODE_ID);
        m.session_epoch = 1;
        sncp_msg_set(&m, SNCP_TLV_SESSION_EPOCH);
        m.capabilities = SNCP_CAPS_IMPLEMENTED;
        sncp_msg_set(&m, SNCP_TLV_CAPABILITIES);
    }
    for (int i = 1; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) {
            fprintf(stderr, "sncp-client: expected key=value, got \"%s\"\n", argv[i]);
            finish(2);
            return;
        }
        *eq = '\0';
        const char *k = argv[i], *v = eq + 1;
        int bad = 0;
        if (!strcmp(k, "node")) {
            snprintf(m.node_id, sizeof m.node_id, "%s", v);
        } else if (!strcmp(k, "epoch")) {
            m.session_epoch = strtoull(v, NULL, 10);
        } else if (!strcmp(k, "caps")) {
            m.capabilities = (uint32_t)strtoul(v, NULL, 0);
        } else if (!strcmp(k, "keepalive")) {
            m.keepalive_ms = (uint32_t)atoi(v);
            sncp_msg_set(&m, SNCP_TLV_KEEPALIVE);
        } else if (!strcmp(k, "version")) {
            unsigned lo, hi;
            bad = sscanf(v, "%u-%u", &lo, &hi) != 2;
            m.version_min = (uint8_t)lo;
            m.version_max = (uint8_t)hi;
        } else if (!strcmp(k, "uplink")) {
            bad = m.n_uplink_macs >= SNCP_MAX_UPLINK_MACS ||
                  sncp_mac_parse(v, m.uplink_macs[m.n_uplink_macs]);
            if (!bad) {
                m.n_uplink_macs++;
            }
        } else if (!strcmp(k, "vn")) {
            m.vn_id = (uint32_t)strtoul(v, NULL, 10);
            sncp_msg_set(&m, SNCP_TLV_VN_ID);
        } else if (!strcmp(k, "name")) {
            snprintf(m.vn_name, sizeof m.vn_name, "%s", v);
            sncp_msg_set(&m, SNCP_TLV_VN_NAME);
        } else if (!strcmp(k, "pref")) {
            bad = m.n_preferred_tags >= SNCP_MAX_TAGS;
            if (!bad) {
                m.preferred_tags[m.n_preferred_tags].vid = (uint16_t)atoi(v);
                m.preferred_tags[m.n_preferred_tags++].pcp = SNCP_PCP_NONE;
            }
        } else if (!strcmp(k, "tsi")) {
            bad = sncp_tsi_id_parse(v, &m.tsi);
            sncp_msg_set(&m, SNCP_TLV_TSI_ID);
        } else if (!strcmp(k, "addr")) {
            bad = m.n_addrs >= SNCP_MAX_ADDRS || sncp_addr_parse(v, &m.addrs[m.n_addrs]);
            if (!bad)
                m.n_addrs++;
        } else if (!strcmp(k, "flags")) {
            bad = parse_flags(v, &m.flags);
        } else if (!strcmp(k, "op")) {
            m.update_op = !strcmp(v, "add")       ? SNCP_UPDATE_ADD
                          : !strcmp(v, "remove")  ? SNCP_UPDATE_REMOVE
                          : !strcmp(v, "replace") ? SNCP_UPDATE_REPLACE
                                                  : (uint8_t)atoi(v);
            sncp_msg_set(&m, SNCP_TLV_UPDATE_OP);
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "sncp-client: bad argument %s=%s\n", k, v);
            finish(2);
            return;
        }
    }
    last_req = m;
    busy_left = retry_busy;
    int64_t r = sncp_conn_send(conn, &m, 1);
    if (r < 0) {
        print_json(json_pack("{s:s, s:s}", "type", "ERROR", "error", sncp_error_token((int)r)));
        finish(1);
        return;
    }
    arm(W_RESPONSE, timeout_ms);
}

static void run_next(void)
{
    while (cur < n_lines && waiting == W_NONE && !closed) {
        char *line = lines[cur++];
        run_command(line);
        return;
    }
    if (cur >= n_lines && waiting == W_NONE && !closed)
        finish(0);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"connect", required_argument, NULL, 'C'},
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},
        {"ca", required_argument, NULL, 'a'},
        {"expect-peer", required_argument, NULL, 'e'},
        {"timeout", required_argument, NULL, 't'},
        {"l2", required_argument, NULL, 'L'},
        {"nnve-mac", required_argument, NULL, 'M'},
        {"vlan", required_argument, NULL, 'V'},
        {"ethertype", required_argument, NULL, 'E'},
        {"dump", required_argument, NULL, 'D'},
        {"retry-busy", required_argument, NULL, 'R'},
        {NULL, 0, NULL, 0},
    };
    const char *target = NULL, *cert = NULL, *key = NULL, *ca = NULL, *peer = NULL;
    const char *l2_if = NULL;
    uint8_t nnve_mac[6];
    int have_mac = 0;
    unsigned long vlan = 0, ethertype = 0;
    char *end;
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'C':
            target = optarg;
            break;
        case 'c':
            cert = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'a':
            ca = optarg;
            break;
        case 'e':
            peer = optarg;
            break;
        case 't':
            timeout_ms = (uint32_t)atoi(optarg);
            break;
        case 'R':
            retry_busy = (unsigned)atoi(optarg);
            break;
        case 'D':
            dump = fopen(optarg, "w");
            if (!dump) {
                fprintf(stderr, "sncp-client: cannot write %s\n", optarg);
                return 2;
            }
            break;
        case 'L':
            l2_if = optarg;
            break;
        case 'M':
            if (sncp_mac_parse(optarg, nnve_mac) != 0) {
                fprintf(stderr, "sncp-client: bad MAC \"%s\"\n", optarg);
                return 2;
            }
            have_mac = 1;
            break;
        case 'V':
            vlan = strtoul(optarg, &end, 0);
            if (*end || vlan > 4094) {
                fprintf(stderr, "sncp-client: bad VLAN \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'E':
            ethertype = strtoul(optarg, &end, 0);
            if (*end || ethertype < 0x0600 || ethertype > 0xffff) {
                fprintf(stderr, "sncp-client: bad EtherType \"%s\"\n", optarg);
                return 2;
            }
            break;
        default:
            return 2;
        }
    }
    if (!(target || l2_if) || (target && l2_if) || !cert || !key || !ca) {
        fprintf(stderr, "usage: sncp-client --connect HOST:PORT | --l2 IFNAME [--nnve-mac MAC] "
                        "[--vlan VID] [--ethertype N]\n"
                        "       --cert F --key F --ca F [--expect-peer NAME] [--timeout MS] "
                        "< script\n");
        return 2;
    }
    snv_log_open("sncp-client", SNV_LOG_STDERR);
    snv_log_set_level(SNV_LOG_WARN);
    char line[70000];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        char **nl = realloc(lines, (n_lines + 1) * sizeof *lines);
        if (!nl)
            return 2;
        lines = nl;
        lines[n_lines++] = strdup(line);
    }
    char host[128] = "";
    uint16_t tcp_port = 0;
    char *h = host;
    if (target) {
        snprintf(host, sizeof host, "%s", target);
        char *colon = strrchr(host, ':');
        if (!colon)
            return 2;
        *colon = '\0';
        tcp_port = (uint16_t)atoi(colon + 1);
        if (h[0] == '[') {
            h++;
            h[strlen(h) - 1] = '\0';
        }
    }
    char err[256];
    struct sncp_tls_ctx *tls = sncp_tls_ctx_create(SNCP_TLS_CLIENT, cert, key, ca, err, sizeof err);
    if (!tls) {
        fprintf(stderr, "sncp-client: %s\n", err);
        return 2;
    }
    loop = uv_default_loop();
    uv_timer_init(loop, &timer);
    struct sncp_conn_config cc;
    memset(&cc, 0, sizeof cc);
    cc.session.role = SNCP_TLS_CLIENT;
    cc.session.tls = tls;
    cc.session.expected_peer = peer;
    cc.session.handshake_timeout_ms = timeout_ms;
    static const struct sncp_conn_cbs cbs = {on_connected, on_request, on_response, on_closed};
    int r;
    if (l2_if) {
        struct sncp_l2_port_config pcfg = {
            .ifname = l2_if,
            .ethertype = (uint16_t)ethertype,
            .node_name = "sncp-client",
            .vlan = (uint16_t)vlan,
        };
        r = sncp_l2_port_create(loop, &pcfg, NULL, NULL, NULL, &port);
        if (r < 0) {
            fprintf(stderr, "sncp-client: interface %s: %s\n", l2_if, sncp_strerror(r));
            port = NULL;
        } else {
            r = sncp_conn_connect_l2(port, have_mac ? nnve_mac : NULL, &cc, &cbs, NULL, &conn);
            if (r < 0) {
                fprintf(stderr, "sncp-client: connect over %s: %s\n", l2_if, sncp_strerror(r));
                sncp_l2_port_destroy(port);
                port = NULL;
            }
        }
    } else {
        r = sncp_conn_connect(loop, h, tcp_port, &cc, &cbs, NULL, &conn);
        if (r < 0)
            fprintf(stderr, "sncp-client: connect: %s\n", sncp_strerror(r));
    }
    if (r < 0) {
        uv_close((uv_handle_t *)&timer, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        uv_loop_close(loop);
        sncp_tls_ctx_destroy(tls);
        for (size_t i = 0; i < n_lines; i++)
            free(lines[i]);
        free(lines);
        return 1;
    }
    arm(W_RESPONSE, timeout_ms);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    sncp_tls_ctx_destroy(tls);
    for (size_t i = 0; i < n_lines; i++)
        free(lines[i]);
    free(lines);
    if (dump)
        fclose(dump);
    return exit_code;
}
