/* test-tnve-uplink.c: Check suite for tnve-agent/uplink.c: the choice of the active nNVE of
 * a dual-homed host (tnve_active_choose, a pure function of the uplinks' and sessions'
 * states and the operator's choice), the uplink state from what rtnetlink reports
 * (tnve_uplink_eval, bond master and slave messages parsed by tnve_nl_link_parse), and the
 * watcher itself on veth links in a private network namespace (skipped without root).
 */
#include <check.h>
#include <errno.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../tnve-agent/uplink.h"
#include "testutil.h"

/* ---- the choice ---- */

/* in[i] from a string per nNVE: uplink carrying (C) or not (c), session up (U) / down (u),
 * lost (L) / not (l); '-' for "no uplink configured" in the first position. */
static void set_in(struct tnve_active_in *in, const char *const *spec, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        in[i].carrying = spec[i][0] == 'C';
        in[i].up = spec[i][1] == 'U';
        in[i].lost = spec[i][2] == 'L';
    }
}

static unsigned choose(const char *a, const char *b, unsigned current, int override)
{
    struct tnve_active_in in[2];
    const char *spec[2] = {a, b};
    set_in(in, spec, 2);
    return tnve_active_choose(in, 2, current, override);
}

START_TEST(test_choose)
{
    /* the uplink carrying the traffic decides while its session is up */
    ck_assert_uint_eq(choose("cUl", "CUl", 0, -1), 1);
    ck_assert_uint_eq(choose("CUl", "cUl", 1, -1), 0);
    /* the preferred nNVE's session is down: failover to the one up, and it stays there
     * (no flapping) while the preferred one is down */
    ck_assert_uint_eq(choose("CuL", "cUl", 0, -1), 1);
    ck_assert_uint_eq(choose("CuL", "cUl", 1, -1), 1);
    /* ... and returns when it is up again (failback) */
    ck_assert_uint_eq(choose("CUl", "cUl", 1, -1), 0);
    /* the preferred one not up yet at start (never failed): the current one, if up, keeps it */
    ck_assert_uint_eq(choose("cUl", "Cul", 0, -1), 0);
    /* no uplink carries (both down, a bond without an active slave): nothing moves */
    ck_assert_uint_eq(choose("cUl", "cUl", 1, -1), 1);
    ck_assert_uint_eq(choose("cUl", "cUl", 0, -1), 0);
    /* ... unless the current one's session is gone */
    ck_assert_uint_eq(choose("cUl", "cuL", 1, -1), 0);
    /* no session up at all: the preferred one is where the next session will serve */
    ck_assert_uint_eq(choose("CuL", "cuL", 1, -1), 0);
    ck_assert_uint_eq(choose("cuL", "cuL", 1, -1), 1);
    /* the operator's choice wins while its session is up */
    ck_assert_uint_eq(choose("CUl", "cUl", 0, 1), 1);
    ck_assert_uint_eq(choose("CUl", "cuL", 1, 1), 0);
    /* without uplinks: today's rule (stay while up or not failed yet; no failback) */
    ck_assert_uint_eq(choose("-Ul", "-Ul", 1, -1), 1);
    ck_assert_uint_eq(choose("-ul", "-Ul", 0, -1), 0);
    ck_assert_uint_eq(choose("-uL", "-Ul", 0, -1), 1);
    ck_assert_uint_eq(choose("-Ul", "-Ul", 1, -1), 1);
    /* an out-of-range current or override is ignored */
    ck_assert_uint_eq(choose("cUl", "cUl", 7, 9), 0);
    struct tnve_active_in in[2];
    const char *spec[2] = {"cUl", "CUl"};
    set_in(in, spec, 2);
    ck_assert_int_eq(tnve_active_preferred(in, 2), 1);
    in[1].carrying = 0;
    ck_assert_int_eq(tnve_active_preferred(in, 2), -1);
}
END_TEST

/* ---- the uplink state ---- */

static struct tnve_nl_link mk(int ifindex, const char *name, unsigned flags, int carrier)
{
    struct tnve_nl_link l;
    memset(&l, 0, sizeof l);
    l.ifindex = ifindex;
    snprintf(l.name, sizeof l.name, "%s", name);
    l.flags = flags;
    l.carrier = carrier;
    l.operstate = -1;
    l.vlan_filtering = -1;
    l.bond_mode = -1;
    l.bond_active_slave = -1;
    l.bond_slave_state = -1;
    return l;
}

START_TEST(test_eval)
{
    ck_assert_int_eq(tnve_uplink_eval(NULL, NULL, 0), TNVE_UPLINK_ABSENT);
    struct tnve_nl_link e1 = mk(5, "e1", IFF_UP, 1), e2 = mk(6, "e2", IFF_UP, 1);
    ck_assert_int_eq(tnve_uplink_eval(&e1, NULL, 0), TNVE_UPLINK_UP);
    e1.carrier = 0;
    ck_assert_int_eq(tnve_uplink_eval(&e1, NULL, 0), TNVE_UPLINK_DOWN);
    e1.carrier = 1;
    e1.flags = 0;
    ck_assert_int_eq(tnve_uplink_eval(&e1, NULL, 0), TNVE_UPLINK_DOWN);
    e1.flags = IFF_UP;
    /* no IFLA_CARRIER: the operational state decides */
    e1.carrier = -1;
    e1.operstate = 2; /* IF_OPER_DOWN */
    ck_assert_int_eq(tnve_uplink_eval(&e1, NULL, 0), TNVE_UPLINK_DOWN);
    e1.operstate = 6;
    ck_assert_int_eq(tnve_uplink_eval(&e1, NULL, 0), TNVE_UPLINK_UP);
    e1.carrier = 1;

    /* slaves of an active-backup bond: the bond's active slave carries */
    struct tnve_nl_link bond = mk(4, "bond0", IFF_UP, 1);
    snprintf(bond.kind, sizeof bond.kind, "bond");
    bond.bond_mode = 1;
    bond.bond_active_slave = 5;
    e1.master = e2.master = 4;
    snprintf(e1.slave_kind, sizeof e1.slave_kind, "bond");
    snprintf(e2.slave_kind, sizeof e2.slave_kind, "bond");
    ck_assert_int_eq(tnve_uplink_eval(&e1, &bond, 0), TNVE_UPLINK_ACTIVE);
    ck_assert_int_eq(tnve_uplink_eval(&e2, &bond, 0), TNVE_UPLINK_BACKUP);
    /* failover */
    bond.bond_active_slave = 6;
    ck_assert_int_eq(tnve_uplink_eval(&e1, &bond, 0), TNVE_UPLINK_BACKUP);
    ck_assert_int_eq(tnve_uplink_eval(&e2, &bond, 0), TNVE_UPLINK_ACTIVE);
    /* no active slave: none carries */
    bond.bond_active_slave = 0;
    ck_assert_int_eq(tnve_uplink_eval(&e1, &bond, 0), TNVE_UPLINK_BACKUP);
    ck_assert_int_eq(tnve_uplink_eval(&e2, &bond, 0), TNVE_UPLINK_BACKUP);
    /* the slave's own state, when its message is the newer one */
    bond.bond_active_slave = 5;
    e2.bond_slave_state = 0;
    e1.bond_slave_state = 1;
    ck_assert_int_eq(tnve_uplink_eval(&e2, &bond, 1), TNVE_UPLINK_ACTIVE);
    ck_assert_int_eq(tnve_uplink_eval(&e1, &bond, 1), TNVE_UPLINK_BACKUP);
    ck_assert_int_eq(tnve_uplink_eval(&e2, &bond, 0), TNVE_UPLINK_BACKUP);
    /* the bond not seen yet: the slave state */
    ck_assert_int_eq(tnve_uplink_eval(&e2, NULL, 1), TNVE_UPLINK_ACTIVE);
    ck_assert_int_eq(tnve_uplink_eval(&e1, NULL, 1), TNVE_UPLINK_BACKUP);
    /* a bond that is down carries nothing; a slave that is down neither */
    bond.flags = 0;
    ck_assert_int_eq(tnve_uplink_eval(&e1, &bond, 0), TNVE_UPLINK_DOWN);
    bond.flags = IFF_UP;
    e1.carrier = 0;
    ck_assert_int_eq(tnve_uplink_eval(&e1, &bond, 0), TNVE_UPLINK_DOWN);
    e1.carrier = 1;
    /* other bond modes (no active slave reported): every slave up carries */
    bond.bond_mode = 4;
    bond.bond_active_slave = -1;
    e1.bond_slave_state = -1;
    ck_assert_int_eq(tnve_uplink_eval(&e1, &bond, 0), TNVE_UPLINK_ACTIVE);
    /* a master that is not a bond (a bridge port): the link's own state */
    snprintf(bond.kind, sizeof bond.kind, "bridge");
    e1.slave_kind[0] = '\0';
    ck_assert_int_eq(tnve_uplink_eval(&e1, &bond, 0), TNVE_UPLINK_UP);
    ck_assert(tnve_uplink_carrying(TNVE_UPLINK_UP) && tnve_uplink_carrying(TNVE_UPLINK_ACTIVE));
    ck_assert(!tnve_uplink_carrying(TNVE_UPLINK_BACKUP) && !tnve_uplink_carrying(TNVE_UPLINK_DOWN));
    ck_assert(!tnve_uplink_carrying(TNVE_UPLINK_ABSENT) &&
              !tnve_uplink_carrying(TNVE_UPLINK_UNKNOWN));
    ck_assert_str_eq(tnve_uplink_state_name(TNVE_UPLINK_BACKUP), "backup");
}
END_TEST

/* ---- parsing what the kernel sends about bonds ---- */

static struct nlmsghdr *link_msg(char *buf, uint16_t type, int ifindex, const char *name,
                                 unsigned flags)
{
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
    ifm->ifi_index = ifindex;
    ifm->ifi_flags = flags;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    return nlh;
}

START_TEST(test_parse_bond)
{
    char buf[1024];
    struct tnve_nl_link l;
    /* the bond: mode active-backup, active slave 7 */
    struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, 4, "bond0", IFF_UP);
    mnl_attr_put_u8(nlh, IFLA_CARRIER, 1);
    mnl_attr_put_u8(nlh, IFLA_OPERSTATE, 6);
    struct nlattr *li = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bond");
    struct nlattr *d = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
    mnl_attr_put_u8(nlh, IFLA_BOND_MODE, 1);
    mnl_attr_put_u32(nlh, IFLA_BOND_ACTIVE_SLAVE, 7);
    mnl_attr_nest_end(nlh, d);
    mnl_attr_nest_end(nlh, li);
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &l, NULL), 0);
    ck_assert_str_eq(l.kind, "bond");
    ck_assert_int_eq(l.bond_mode, 1);
    ck_assert_int_eq(l.bond_active_slave, 7);
    ck_assert_int_eq(l.carrier, 1);
    ck_assert_int_eq(l.operstate, 6);
    ck_assert_uint_eq(l.flags & IFF_UP, IFF_UP);

    /* a bond without an active slave: the attribute is left out */
    nlh = link_msg(buf, RTM_NEWLINK, 4, "bond0", IFF_UP);
    li = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bond");
    d = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
    mnl_attr_put_u8(nlh, IFLA_BOND_MODE, 1);
    mnl_attr_nest_end(nlh, d);
    mnl_attr_nest_end(nlh, li);
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &l, NULL), 0);
    ck_assert_int_eq(l.bond_active_slave, 0);

    /* a slave: backup; a malformed state (u32 instead of u8) is ignored, not trusted */
    nlh = link_msg(buf, RTM_NEWLINK, 7, "e1", IFF_UP);
    mnl_attr_put_u32(nlh, IFLA_MASTER, 4);
    li = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_SLAVE_KIND, "bond");
    d = mnl_attr_nest_start(nlh, IFLA_INFO_SLAVE_DATA);
    mnl_attr_put_u8(nlh, IFLA_BOND_SLAVE_STATE, 1);
    mnl_attr_nest_end(nlh, d);
    mnl_attr_nest_end(nlh, li);
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &l, NULL), 0);
    ck_assert_int_eq(l.master, 4);
    ck_assert_str_eq(l.slave_kind, "bond");
    ck_assert_int_eq(l.bond_slave_state, 1);
    ck_assert_int_eq(l.bond_mode, -1);
    ck_assert_int_eq(l.carrier, -1);

    nlh = link_msg(buf, RTM_NEWLINK, 7, "e1", IFF_UP);
    li = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_SLAVE_KIND, "bond");
    d = mnl_attr_nest_start(nlh, IFLA_INFO_SLAVE_DATA);
    mnl_attr_put_u32(nlh, IFLA_BOND_SLAVE_STATE, 0);
    mnl_attr_nest_end(nlh, d);
    mnl_attr_nest_end(nlh, li);
    mnl_attr_put_u32(nlh, IFLA_CARRIER, 1); /* wrong size too */
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &l, NULL), 0);
    ck_assert_int_eq(l.bond_slave_state, -1);
    ck_assert_int_eq(l.carrier, -1);

    /* other types and truncated messages do not parse */
    nlh = link_msg(buf, RTM_NEWADDR, 7, "e1", 0);
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &l, NULL), -EINVAL);
    nlh = link_msg(buf, RTM_NEWLINK, 7, "e1", 0);
    nlh->nlmsg_len = mnl_nlmsg_size(sizeof(struct ifinfomsg)) - 1;
    ck_assert_int_eq(tnve_nl_link_parse(nlh, &l, NULL), -EINVAL);
}
END_TEST

/* ---- the watcher on real links ---- */

struct watch_ctx {
    uv_loop_t loop;
    struct tnve_uplinks *u;
    unsigned calls;
};

static void watch_cb(void *aux)
{
    ((struct watch_ctx *)aux)->calls++;
}

/* Moves the test into a network namespace of its own; 0 (and a word why) when it cannot. */
static int private_netns(const char *test)
{
    if (geteuid() == 0 && unshare(CLONE_NEWNET) == 0)
        return 1;
    fprintf(stderr, "%s skipped: needs root (unshare CLONE_NEWNET)\n", test);
    return 0;
}

/* A loop and a watcher of the n names on it. */
static void watch_start(struct watch_ctx *w, const char *const *names, unsigned n)
{
    memset(w, 0, sizeof *w);
    uv_loop_init(&w->loop);
    ck_assert_int_eq(tnve_uplinks_create(&w->loop, names, n, watch_cb, w, &w->u), 0);
}

/* Destroys the watcher; every handle closes and the loop with them. */
static void watch_stop(struct watch_ctx *w)
{
    tnve_uplinks_destroy(w->u);
    ck_assert_int_eq(uv_run(&w->loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&w->loop), 0);
}

/* Runs the loop until uplink i is in state want (at most ~5 s).  1 when it is. */
static int wait_state(struct watch_ctx *w, unsigned i, enum tnve_uplink_state want)
{
    for (int k = 0; k < 500; k++) {
        if (tnve_uplinks_state(w->u, i) == want)
            return 1;
        uv_run(&w->loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    fprintf(stderr, "uplink %u: state %s, want %s\n", i,
            tnve_uplink_state_name(tnve_uplinks_state(w->u, i)), tnve_uplink_state_name(want));
    return tnve_uplinks_state(w->u, i) == want;
}

static int ip_links(int step)
{
    switch (step) {
    case 0:
        TESTUTIL_RUN("ip", "link", "add", "up1", "type", "veth", "peer", "name", "sw1");
        break;
    case 1:
        TESTUTIL_RUN("ip", "link", "set", "sw1", "up");
        TESTUTIL_RUN("ip", "link", "set", "up1", "up");
        break;
    case 2:
        TESTUTIL_RUN("ip", "link", "set", "sw1", "down");
        break;
    case 3:
        TESTUTIL_RUN("ip", "link", "set", "up1", "name", "other");
        break;
    case 4:
        TESTUTIL_RUN("ip", "link", "set", "other", "name", "up1");
        break;
    case 5:
        TESTUTIL_RUN("ip", "link", "del", "up1");
        break;
    default:
        break;
    }
    return 0;
}

START_TEST(test_watch_veth)
{
    if (!private_netns("test_watch_veth"))
        return;
    struct watch_ctx w;
    const char *names[] = {"up1", "", "lo"};
    watch_start(&w, names, 3);
    /* a name that does not exist yet, one not watched, one that exists and is up */
    ck_assert(wait_state(&w, 0, TNVE_UPLINK_ABSENT));
    ck_assert_int_eq(tnve_uplinks_state(w.u, 1), TNVE_UPLINK_UNKNOWN);
    ck_assert_int_eq(tnve_uplinks_state(w.u, 9), TNVE_UPLINK_UNKNOWN);
    ck_assert_int_eq(ip_links(0), 0); /* it appears, down */
    ck_assert(wait_state(&w, 0, TNVE_UPLINK_DOWN));
    unsigned calls = w.calls;
    ck_assert_int_eq(ip_links(1), 0); /* up with a carrier */
    ck_assert(wait_state(&w, 0, TNVE_UPLINK_UP));
    ck_assert_uint_gt(w.calls, calls);
    ck_assert_int_eq(ip_links(2), 0); /* the far end goes down: no carrier */
    ck_assert(wait_state(&w, 0, TNVE_UPLINK_DOWN));
    ck_assert_int_eq(ip_links(3), 0); /* renamed away */
    ck_assert(wait_state(&w, 0, TNVE_UPLINK_ABSENT));
    ck_assert_int_eq(ip_links(4), 0); /* and back */
    ck_assert(wait_state(&w, 0, TNVE_UPLINK_DOWN));
    ck_assert_int_eq(ip_links(5), 0); /* removed */
    ck_assert(wait_state(&w, 0, TNVE_UPLINK_ABSENT));
    json_t *j = tnve_uplinks_json(w.u);
    ck_assert_int_ge(json_integer_value(json_object_get(j, "uplink_dumps")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "uplink_bad_messages")), 0);
    json_decref(j);
    watch_stop(&w);
}
END_TEST

/* Notifications the kernel could not queue (ENOBUFS): the watcher dumps the links again, and
 * so sees a link whose notification was dropped. */
static int many_links(const char *dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/links.batch", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    for (int i = 0; i < 60; i++)
        fprintf(f, "link add x%d type veth peer name y%d\n", i, i);
    fclose(f);
    TESTUTIL_RUN("ip", "-batch", path);
    TESTUTIL_RUN("ip", "link", "add", "up1", "type", "veth", "peer", "name", "sw1");
    return 0;
}

START_TEST(test_watch_overrun)
{
    if (!private_netns("test_watch_overrun"))
        return;
    char dir[] = "/tmp/tnve-uplink-test.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    struct watch_ctx w;
    const char *names[] = {"up1"};
    watch_start(&w, names, 1);
    ck_assert(wait_state(&w, 0, TNVE_UPLINK_ABSENT));
    ck_assert_int_eq(tnve_uplinks_set_rcvbuf(w.u, 1), 0);
    /* nothing reads while 120 links and then up1 appear: the queue overflows */
    ck_assert_int_eq(many_links(dir), 0);
    ck_assert(wait_state(&w, 0, TNVE_UPLINK_DOWN));
    json_t *j = tnve_uplinks_json(w.u);
    ck_assert_int_ge(json_integer_value(json_object_get(j, "uplink_overruns")), 1);
    ck_assert_int_ge(json_integer_value(json_object_get(j, "uplink_dumps")), 2);
    json_decref(j);
    watch_stop(&w);
    char path[256];
    snprintf(path, sizeof path, "%s/links.batch", dir);
    unlink(path);
    rmdir(dir);
}
END_TEST

/* A link whose messages pass a page (many altnames): neither its dump entry nor its
 * notifications may be cut off and lost. */
static int big_link(const char *dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/big.batch", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "link add up1 type veth peer name sw1\n");
    for (int i = 0; i < 40; i++)
        fprintf(f, "link property add dev up1 altname a%02d%0124d\n", i, 0);
    fclose(f);
    TESTUTIL_RUN("ip", "-batch", path);
    unlink(path);
    return 0;
}

START_TEST(test_watch_big_message)
{
    if (!private_netns("test_watch_big_message"))
        return;
    char dir[] = "/tmp/tnve-uplink-test.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(big_link(dir), 0);
    struct watch_ctx w;
    const char *names[] = {"up1"};
    watch_start(&w, names, 1);
    ck_assert(wait_state(&w, 0, TNVE_UPLINK_DOWN)); /* from the dump */
    ck_assert_int_eq(ip_links(1), 0);
    ck_assert(wait_state(&w, 0, TNVE_UPLINK_UP)); /* from a notification */
    watch_stop(&w);
    rmdir(dir);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("tnve-uplink");
    TCase *tc = tcase_create("uplink");
    tcase_add_test(tc, test_choose);
    tcase_add_test(tc, test_eval);
    tcase_add_test(tc, test_parse_bond);
    tcase_add_test(tc, test_watch_veth);
    tcase_add_test(tc, test_watch_overrun);
    tcase_add_test(tc, test_watch_big_message);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
