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
    tnve_dp_mux_rerank(m);
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

static Suite *suite(void)
{
    Suite *s = suite_create("tnve-dp-mux");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_same_tag_set_once);
    tcase_add_test(tc, test_mismatch_preferred_tag);
    tcase_add_test(tc, test_failed_set_and_stale_ports);
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
