/* test-tnve-dp-mux.c: Check suite for the dataplane mux of a dual-homed host
 * (tnve-agent/dp-mux.c): one tag per port whatever the legs (nNVEs) want, no change on the
 * port while any leg holds its tag, the preferred leg's tag on a mismatch, and what
 * reaches the backend.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tnve-agent/dp-mux.h"

/* A backend that records its calls, "set PORT VID" / "clear PORT VID IN_USE". */
static char calls[32][64];
static int n_calls;
static int fail_set;

static int rec_set(struct tnve_dp *dp, const char *ifname, uint16_t vid)
{
    (void)dp;
    if (fail_set)
        return -5;
    ck_assert_int_lt(n_calls, 32);
    snprintf(calls[n_calls++], sizeof calls[0], "set %s %u", ifname, vid);
    return 0;
}

static int rec_clear(struct tnve_dp *dp, const char *ifname, uint16_t vid, int in_use)
{
    (void)dp;
    ck_assert_int_lt(n_calls, 32);
    snprintf(calls[n_calls++], sizeof calls[0], "clear %s %u %d", ifname, vid, in_use);
    return 0;
}

static int rec_get(struct tnve_dp *dp, const char *ifname)
{
    (void)dp;
    (void)ifname;
    return 0;
}

static const struct tnve_dp_class rec_class = {
    .name = "recording", .port_set = rec_set, .port_clear = rec_clear, .port_get = rec_get};

/* rank: the leg named by `preferred` first, then configuration order */
static unsigned preferred;

static unsigned rank(void *aux, unsigned leg)
{
    (void)aux;
    return leg == preferred ? 0 : 1 + leg;
}

static struct tnve_dp_mux *mk(void)
{
    n_calls = 0;
    fail_set = 0;
    preferred = 0;
    static const char *const names[] = {"sw1", "sw2"};
    struct tnve_dp_mux *m = tnve_dp_mux_create(&rec_class, NULL, 2, names, rank, NULL);
    ck_assert_ptr_nonnull(m);
    return m;
}

static int set(struct tnve_dp_mux *m, unsigned leg, const char *port, uint16_t vid)
{
    return tnve_dp_mux_class.port_set(tnve_dp_mux_leg(m, leg), port, vid);
}

static int clear(struct tnve_dp_mux *m, unsigned leg, const char *port, uint16_t vid, int in_use)
{
    return tnve_dp_mux_class.port_clear(tnve_dp_mux_leg(m, leg), port, vid, in_use);
}

static long long counter(struct tnve_dp_mux *m, const char *key)
{
    json_t *o = tnve_dp_mux_json(m);
    long long v = json_integer_value(json_object_get(o, key));
    json_decref(o);
    return v;
}

START_TEST(test_same_tag_set_once)
{
    struct tnve_dp_mux *m = mk();
    ck_assert_int_eq(set(m, 0, "vnet0", 100), 0);
    ck_assert_int_eq(set(m, 1, "vnet0", 100), 0);
    ck_assert_int_eq(n_calls, 1);
    ck_assert_str_eq(calls[0], "set vnet0 100");
    /* either leg letting go changes nothing while the other holds it */
    ck_assert_int_eq(clear(m, 0, "vnet0", 100, 0), 0);
    ck_assert_int_eq(set(m, 0, "vnet0", 100), 0);
    ck_assert_int_eq(clear(m, 1, "vnet0", 100, 0), 0);
    ck_assert_int_eq(n_calls, 1);
    /* the last one clears, the uplink keeps the tag while another port carries it */
    ck_assert_int_eq(set(m, 1, "vnet1", 100), 0);
    ck_assert_int_eq(clear(m, 0, "vnet0", 100, 0), 0);
    ck_assert_int_eq(n_calls, 3);
    ck_assert_str_eq(calls[1], "set vnet1 100");
    ck_assert_str_eq(calls[2], "clear vnet0 100 1");
    ck_assert_int_eq(clear(m, 1, "vnet1", 100, 0), 0);
    ck_assert_str_eq(calls[3], "clear vnet1 100 0");
    ck_assert_int_eq(counter(m, "dp_ports"), 0);
    ck_assert_int_eq(counter(m, "tag_mismatches"), 0);
    tnve_dp_mux_destroy(m);
}
END_TEST

START_TEST(test_mismatch_preferred_tag)
{
    struct tnve_dp_mux *m = mk();
    ck_assert_int_eq(set(m, 1, "vnet0", 150), 0);
    ck_assert_int_eq(set(m, 0, "vnet0", 102), 0);
    /* sw1 (preferred) wins: its tag replaces sw2's, never both */
    ck_assert_int_eq(n_calls, 3);
    ck_assert_str_eq(calls[0], "set vnet0 150");
    ck_assert_str_eq(calls[1], "set vnet0 102");
    ck_assert_str_eq(calls[2], "clear vnet0 150 0");
    ck_assert_int_eq(counter(m, "tag_mismatches"), 1);
    ck_assert_int_eq(counter(m, "dp_mismatched_ports"), 1);
    /* reported once per episode */
    ck_assert_int_eq(set(m, 0, "vnet0", 102), 0);
    ck_assert_int_eq(counter(m, "tag_mismatches"), 1);
    /* the preference moves to sw2: its tag goes on */
    preferred = 1;
    tnve_dp_mux_rerank(m, "uplink");
    ck_assert_int_eq(n_calls, 5);
    ck_assert_str_eq(calls[3], "set vnet0 150");
    ck_assert_str_eq(calls[4], "clear vnet0 102 0");
    /* sw2 lets go: sw1's tag, and the episode ends */
    ck_assert_int_eq(clear(m, 1, "vnet0", 150, 0), 0);
    ck_assert_str_eq(calls[5], "set vnet0 102");
    ck_assert_str_eq(calls[6], "clear vnet0 150 0");
    ck_assert_int_eq(counter(m, "dp_mismatched_ports"), 0);
    ck_assert_uint_eq(tnve_dp_mux_mismatches(m), 1);
    tnve_dp_mux_destroy(m);
}
END_TEST

START_TEST(test_failed_set_and_stale_ports)
{
    struct tnve_dp_mux *m = mk();
    fail_set = 1;
    ck_assert_int_lt(set(m, 0, "vnet0", 100), 0);
    ck_assert_int_eq(counter(m, "dp_ports"), 0); /* nothing recorded for a failed set */
    fail_set = 0;
    ck_assert_int_eq(set(m, 0, "vnet0", 100), 0);
    /* a port of the previous run that no leg holds: cleared on the backend */
    ck_assert_int_eq(clear(m, 1, "vnet9", 120, 0), 0);
    ck_assert_str_eq(calls[1], "clear vnet9 120 0");
    /* a stale tag the uplink still needs for a held port keeps the uplink */
    ck_assert_int_eq(clear(m, 1, "vnet8", 100, 0), 0);
    ck_assert_str_eq(calls[2], "clear vnet8 100 1");
    /* a leg clearing a port another leg holds on the same tag: nothing */
    ck_assert_int_eq(clear(m, 1, "vnet0", 100, 0), 0);
    ck_assert_int_eq(n_calls, 3);
    ck_assert_ptr_null(tnve_dp_mux_leg(m, 2));
    tnve_dp_mux_destroy(m);
    tnve_dp_mux_destroy(NULL);
}
END_TEST

/* The choice of the port's tag: the lowest-ranked leg that holds the port. */
START_TEST(test_choose)
{
    /* a split VN: sw1 binds 120, sw2 150; the bond's switch ranks first */
    uint16_t want[3] = {120, 150, 0};
    unsigned r_sw1[3] = {0, 2, 3}, r_sw2[3] = {1, 0, 3};
    ck_assert_int_eq(tnve_dp_mux_choose(want, r_sw1, 3), 0);
    ck_assert_int_eq(tnve_dp_mux_choose(want, r_sw2, 3), 1);
    /* a leg that does not hold the port is never chosen, whatever its rank */
    unsigned r_leg3[3] = {2, 1, 0};
    ck_assert_int_eq(tnve_dp_mux_choose(want, r_leg3, 3), 1);
    /* equal ranks: configuration order */
    unsigned r_eq[3] = {5, 5, 5};
    ck_assert_int_eq(tnve_dp_mux_choose(want, r_eq, 3), 0);
    /* nobody holds it */
    uint16_t none[3] = {0, 0, 0};
    ck_assert_int_eq(tnve_dp_mux_choose(none, r_sw1, 3), -1);
    ck_assert_int_eq(tnve_dp_mux_choose(want, r_sw1, 0), -1);
}
END_TEST

/* The VN's name in the retag log line: what the agent's callback says for leg and tag. */
static unsigned named_leg;
static uint16_t named_tag;

static void vn_name(void *aux, unsigned leg, uint16_t tag, char *buf, size_t cap)
{
    (void)aux;
    named_leg = leg;
    named_tag = tag;
    snprintf(buf, cap, "red");
}

/* A VN split across the pair follows the preference back and forth; a VN with one tag at
 * both nNVEs never moves. */
START_TEST(test_split_follows_rerank)
{
    struct tnve_dp_mux *m = mk();
    tnve_dp_mux_set_vn_name(m, vn_name);
    ck_assert_int_eq(set(m, 0, "vnet3", 120), 0); /* red: sw1's tag */
    ck_assert_int_eq(set(m, 1, "vnet3", 150), 0); /* red: sw2's tag */
    ck_assert_int_eq(set(m, 0, "vnet1", 100), 0); /* blue: one tag */
    ck_assert_int_eq(set(m, 1, "vnet1", 100), 0);
    ck_assert_int_eq(n_calls, 2);
    ck_assert_str_eq(calls[0], "set vnet3 120");
    ck_assert_str_eq(calls[1], "set vnet1 100");
    /* the bond fails over to sw2 */
    preferred = 1;
    tnve_dp_mux_rerank(m, "uplink");
    ck_assert_int_eq(n_calls, 4);
    ck_assert_str_eq(calls[2], "set vnet3 150");
    ck_assert_str_eq(calls[3], "clear vnet3 120 0");
    ck_assert_uint_eq(named_leg, 1);
    ck_assert_uint_eq(named_tag, 150);
    /* a rerank with no change in preference changes nothing */
    tnve_dp_mux_rerank(m, "session");
    ck_assert_int_eq(n_calls, 4);
    /* and back to sw1 */
    preferred = 0;
    tnve_dp_mux_rerank(m, "uplink");
    ck_assert_int_eq(n_calls, 6);
    ck_assert_str_eq(calls[4], "set vnet3 120");
    ck_assert_str_eq(calls[5], "clear vnet3 150 0");
    ck_assert_uint_eq(named_leg, 0);
    /* a failed set leaves the port on its tag, and the next rerank tries again */
    preferred = 1;
    fail_set = 1;
    tnve_dp_mux_rerank(m, "uplink");
    ck_assert_int_eq(n_calls, 6);
    ck_assert_int_eq(counter(m, "dp_mux_errors"), 1);
    fail_set = 0;
    tnve_dp_mux_rerank(m, "uplink");
    ck_assert_int_eq(n_calls, 8);
    ck_assert_str_eq(calls[6], "set vnet3 150");
    ck_assert_int_eq(counter(m, "tag_mismatches"), 1);
    tnve_dp_mux_destroy(m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("tnve-dp-mux");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_same_tag_set_once);
    tcase_add_test(tc, test_mismatch_preferred_tag);
    tcase_add_test(tc, test_failed_set_and_stale_ports);
    tcase_add_test(tc, test_choose);
    tcase_add_test(tc, test_split_follows_rerank);
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
