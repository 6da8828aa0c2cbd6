/* test-tnve-lat.c: Check suite for tnve-agent's latency series (tnve-agent/lat.c): the
 * percentiles latency/show reports, the cap on samples, reset, and an empty series.
 */
#include <check.h>
#include <stdlib.h>

#include "../../tnve-agent/lat.h"

static json_int_t field(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    ck_assert_ptr_nonnull(v);
    return json_integer_value(v);
}

START_TEST(test_percentiles)
{
    struct tnve_lat l;
    ck_assert_int_eq(tnve_lat_init(&l, 1000), 0);
    /* 100 samples, 1..100 ms, recorded out of order */
    for (int i = 100; i >= 1; i--)
        tnve_lat_add_ns(&l, (uint64_t)i * 1000000);
    json_t *o = tnve_lat_json(&l);
    ck_assert_int_eq(field(o, "samples"), 100);
    ck_assert_int_eq(field(o, "p50_us"), 50000);
    ck_assert_int_eq(field(o, "p90_us"), 90000);
    ck_assert_int_eq(field(o, "p99_us"), 99000);
    ck_assert_int_eq(field(o, "max_us"), 100000);
    ck_assert_int_eq(field(o, "dropped"), 0);
    json_decref(o);
    tnve_lat_uninit(&l);
}
END_TEST

START_TEST(test_cap_reset_empty)
{
    struct tnve_lat l;
    ck_assert_int_eq(tnve_lat_init(&l, 3), 0);
    json_t *o = tnve_lat_json(&l);
    ck_assert_int_eq(field(o, "samples"), 0);
    ck_assert_ptr_null(json_object_get(o, "p50_us"));
    json_decref(o);
    for (int i = 0; i < 5; i++)
        tnve_lat_add_ns(&l, 1500);          /* 1 us: sub-microsecond parts are dropped */
    tnve_lat_add_ns(&l, UINT64_C(1) << 62); /* too long for 32 bits of microseconds */
    o = tnve_lat_json(&l);
    ck_assert_int_eq(field(o, "samples"), 3);
    ck_assert_int_eq(field(o, "max_us"), 1);
    ck_assert_int_eq(field(o, "dropped"), 3);
    json_decref(o);
    tnve_lat_reset(&l);
    tnve_lat_add_ns(&l, UINT64_C(1) << 62);
    o = tnve_lat_json(&l);
    ck_assert_int_eq(field(o, "samples"), 1);
    ck_assert_int_eq(field(o, "max_us"), UINT32_MAX);
    ck_assert_int_eq(field(o, "dropped"), 0);
    json_decref(o);
    tnve_lat_add_ns(NULL, 1); /* accepted */
    tnve_lat_uninit(&l);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("tnve-lat");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_percentiles);
    tcase_add_test(tc, test_cap_reset_empty);
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
