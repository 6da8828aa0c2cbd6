/* test-hist.c: Check suite for the latency histogram (lib/snv-hist.c): percentiles within
 * the documented bound of the true ones, small values exact, the overflow bucket, an empty
 * histogram, and the Prometheus text (exact cumulative counts at the bounds, +Inf, sum).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "snv-hist.h"

static json_int_t field(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    ck_assert_ptr_nonnull(v);
    return json_integer_value(v);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

START_TEST(test_small_values_exact)
{
    struct snv_hist h;
    snv_hist_init(&h);
    for (uint64_t us = 0; us < 8; us++)
        snv_hist_add_us(&h, us);
    ck_assert_uint_eq(snv_hist_quantile_us(&h, 0.125), 0);
    ck_assert_uint_eq(snv_hist_quantile_us(&h, 0.5), 3);
    ck_assert_uint_eq(snv_hist_quantile_us(&h, 0.51), 4);
    ck_assert_uint_eq(snv_hist_quantile_us(&h, 1.0), 7);
    json_t *o = snv_hist_json(&h);
    ck_assert_int_eq(field(o, "samples"), 8);
    ck_assert_int_eq(field(o, "p50_us"), 3);
    ck_assert_int_eq(field(o, "max_us"), 7);
    ck_assert_int_eq(field(o, "mean_us"), 3); /* 28 / 8, rounded down */
    json_decref(o);
}
END_TEST

/* Against the sorted samples: the reported quantile is never below the true one and at
 * most an eighth above it (nor above the largest sample), over six decades of values. */
START_TEST(test_quantiles_bounded)
{
    enum { N = 20000 };
    static uint64_t v[N];
    struct snv_hist h;
    snv_hist_init(&h);
    uint64_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t us = (x >> 33) % (1u << (int)((x >> 20) % 23)); /* up to ~4 s, log-spread */
        v[i] = us;
        snv_hist_add_us(&h, us);
    }
    qsort(v, N, sizeof *v, cmp_u64);
    static const double qs[] = {0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        size_t rank = (size_t)(qs[i] * N + 0.999999); /* ceil */
        uint64_t truth = v[rank - 1], got = snv_hist_quantile_us(&h, qs[i]);
        ck_assert_uint_ge(got, truth);
        ck_assert_uint_le(got, truth + truth / 8);
        ck_assert_uint_le(got, v[N - 1]);
    }
    ck_assert_uint_eq(snv_hist_quantile_us(&h, 1.0), v[N - 1]);
    ck_assert_uint_eq(h.count, N);
}
END_TEST

START_TEST(test_empty_overflow_null)
{
    struct snv_hist h;
    snv_hist_init(&h);
    ck_assert_uint_eq(snv_hist_quantile_us(&h, 0.99), 0);
    json_t *o = snv_hist_json(&h);
    ck_assert_int_eq(field(o, "samples"), 0);
    ck_assert_ptr_null(json_object_get(o, "p99_us"));
    json_decref(o);
    snv_hist_add_us(&h, UINT64_C(1) << 40); /* 12 days: the last bucket, reported as is */
    snv_hist_add_us(&h, 100);
    ck_assert_uint_eq(snv_hist_quantile_us(&h, 1.0), UINT64_C(1) << 40);
    ck_assert_uint_eq(snv_hist_quantile_us(&h, 0.5), 103); /* bucket [96, 103] */
    snv_hist_add_us(NULL, 1);                              /* accepted */
}
END_TEST

START_TEST(test_prometheus)
{
    struct snv_hist h;
    snv_hist_init(&h);
    static const uint64_t us[] = {50, 51, 100, 10000000, 10000001};
    for (size_t i = 0; i < sizeof us / sizeof us[0]; i++)
        snv_hist_add_us(&h, us[i]);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    snv_hist_write_prom(&h, f, "x_seconds", "a test");
    fclose(f);
    ck_assert_ptr_nonnull(strstr(text, "# HELP x_seconds a test\n# TYPE x_seconds histogram\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nx_seconds_bucket{le=\"0.00005\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nx_seconds_bucket{le=\"0.0001\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nx_seconds_bucket{le=\"0.001\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nx_seconds_bucket{le=\"2.5\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nx_seconds_bucket{le=\"10\"} 4\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nx_seconds_bucket{le=\"+Inf\"} 5\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nx_seconds_sum 20.000202\nx_seconds_count 5\n"));
    /* the bounds are cumulative and in order: 16 of them, then +Inf */
    int buckets = 0;
    for (const char *p = text; (p = strstr(p, "x_seconds_bucket{")); p++)
        buckets++;
    ck_assert_int_eq(buckets, SNV_HIST_LE_COUNT + 1);
    free(text);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hist");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_small_values_exact);
    tcase_add_test(tc, test_quantiles_bounded);
    tcase_add_test(tc, test_empty_overflow_null);
    tcase_add_test(tc, test_prometheus);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
