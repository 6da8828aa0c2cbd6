/* test-nnve-tagpool.c: the per-domain local tag allocator, with injected time. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include "../../nnve-daemon/tagpool.h"
#include "sncp-error.h"

static struct nnve_tagpool *pool_100_104(void)
{
    static const struct nnve_tag_range r[] = {{100, 104}, {300, 300}};
    static const uint16_t reserved[] = {102};
    return nnve_tagpool_create(r, 2, reserved, 1, 60000);
}

START_TEST(test_lowest_first_and_reserved)
{
    struct nnve_tagpool *p = pool_100_104();
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(nnve_tagpool_size(p), 5);
    uint16_t tag;
    uint16_t expect[] = {100, 101, 103, 104, 300};
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(nnve_tagpool_alloc(p, NULL, 0, 0, &tag), 0);
        ck_assert_uint_eq(tag, expect[i]);
    }
    ck_assert_int_eq(nnve_tagpool_state(p, 102, 0), NNVE_TAG_OUTSIDE);
    ck_assert_int_eq(nnve_tagpool_state(p, 99, 0), NNVE_TAG_OUTSIDE);
    ck_assert_uint_eq(nnve_tagpool_used(p), 5);
    nnve_tagpool_destroy(p);
}
END_TEST

START_TEST(test_preferred)
{
    struct nnve_tagpool *p = pool_100_104();
    uint16_t tag;
    uint16_t prefs[] = {102, 104}; /* reserved one skipped, next preference honoured */
    ck_assert_int_eq(nnve_tagpool_alloc(p, prefs, 2, 0, &tag), 0);
    ck_assert_uint_eq(tag, 104);
    /* 104 now used: preference not free -> lowest free */
    ck_assert_int_eq(nnve_tagpool_alloc(p, prefs + 1, 1, 0, &tag), 0);
    ck_assert_uint_eq(tag, 100);
    uint16_t outside = 4000;
    ck_assert_int_eq(nnve_tagpool_alloc(p, &outside, 1, 0, &tag), 0);
    ck_assert_uint_eq(tag, 101);
    nnve_tagpool_destroy(p);
}
END_TEST

START_TEST(test_exhaustion_no_side_effect)
{
    struct nnve_tagpool *p = pool_100_104();
    uint16_t tag;
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(nnve_tagpool_alloc(p, NULL, 0, 0, &tag), 0);
    tag = 7;
    ck_assert_int_eq(nnve_tagpool_alloc(p, NULL, 0, 0, &tag), SNCP_E_TAG_POOL_EXHAUSTED);
    ck_assert_uint_eq(tag, 7);
    ck_assert_uint_eq(nnve_tagpool_used(p), 5);
    nnve_tagpool_destroy(p);
}
END_TEST

START_TEST(test_hold_down)
{
    static const struct nnve_tag_range r[] = {{10, 11}};
    struct nnve_tagpool *p = nnve_tagpool_create(r, 1, NULL, 0, 60000);
    uint16_t a, b, c;
    ck_assert_int_eq(nnve_tagpool_alloc(p, NULL, 0, 1000, &a), 0);
    ck_assert_int_eq(nnve_tagpool_alloc(p, NULL, 0, 1000, &b), 0);
    ck_assert_uint_eq(a, 10);
    nnve_tagpool_release(p, a, 2000);
    ck_assert_int_eq(nnve_tagpool_state(p, a, 2000), NNVE_TAG_HELD);
    ck_assert_uint_eq(nnve_tagpool_held(p, 2000), 1);
    /* held: not given to anyone, even when asked for by preference */
    ck_assert_int_eq(nnve_tagpool_alloc(p, &a, 1, 61999, &c), SNCP_E_TAG_POOL_EXHAUSTED);
    /* ... but the VN that held it may claim it back */
    ck_assert_int_eq(nnve_tagpool_claim(p, a, 30000), 0);
    ck_assert_int_eq(nnve_tagpool_state(p, a, 30000), NNVE_TAG_USED);
    ck_assert_int_eq(nnve_tagpool_claim(p, a, 30000), -EBUSY);
    nnve_tagpool_release(p, a, 40000);
    ck_assert_int_eq(nnve_tagpool_alloc(p, NULL, 0, 99999, &c), SNCP_E_TAG_POOL_EXHAUSTED);
    ck_assert_int_eq(nnve_tagpool_state(p, a, 100000), NNVE_TAG_FREE);
    ck_assert_int_eq(nnve_tagpool_alloc(p, NULL, 0, 100000, &c), 0);
    ck_assert_uint_eq(c, a);
    nnve_tagpool_destroy(p);
}
END_TEST

START_TEST(test_fresh_before_expired_held)
{
    static const struct nnve_tag_range r[] = {{10, 12}};
    struct nnve_tagpool *p = nnve_tagpool_create(r, 1, NULL, 0, 10);
    uint16_t a;
    ck_assert_int_eq(nnve_tagpool_alloc(p, NULL, 0, 0, &a), 0);
    nnve_tagpool_release(p, a, 0);
    /* hold over, but a never-used tag goes first */
    ck_assert_int_eq(nnve_tagpool_alloc(p, NULL, 0, 100, &a), 0);
    ck_assert_uint_eq(a, 11);
    nnve_tagpool_destroy(p);
}
END_TEST

START_TEST(test_claim_and_bad_ranges)
{
    static const struct nnve_tag_range bad[] = {{0, 5}};
    static const struct nnve_tag_range bad2[] = {{20, 10}};
    static const struct nnve_tag_range bad3[] = {{4000, 4095}};
    ck_assert_ptr_null(nnve_tagpool_create(bad, 1, NULL, 0, 0));
    ck_assert_ptr_null(nnve_tagpool_create(bad2, 1, NULL, 0, 0));
    ck_assert_ptr_null(nnve_tagpool_create(bad3, 1, NULL, 0, 0));
    struct nnve_tagpool *p = pool_100_104();
    ck_assert_int_eq(nnve_tagpool_claim(p, 102, 0), SNCP_E_INVALID_VALUE);
    ck_assert_int_eq(nnve_tagpool_claim(p, 4095, 0), SNCP_E_INVALID_VALUE);
    ck_assert_int_eq(nnve_tagpool_claim(p, 103, 0), 0);
    uint16_t tag, pref = 103;
    ck_assert_int_eq(nnve_tagpool_alloc(p, &pref, 1, 0, &tag), 0);
    ck_assert_uint_eq(tag, 100);
    nnve_tagpool_release(p, 4000, 0); /* ignored */
    nnve_tagpool_release(p, 101, 0);  /* not in use: ignored */
    ck_assert_int_eq(nnve_tagpool_state(p, 101, 0), NNVE_TAG_FREE);
    nnve_tagpool_destroy(p);
    nnve_tagpool_destroy(NULL);
}
END_TEST

START_TEST(test_full_range)
{
    static const struct nnve_tag_range r[] = {{1, 4094}};
    struct nnve_tagpool *p = nnve_tagpool_create(r, 1, NULL, 0, 0);
    uint16_t tag;
    for (int i = 1; i <= 4094; i++) {
        ck_assert_int_eq(nnve_tagpool_alloc(p, NULL, 0, 0, &tag), 0);
        ck_assert_uint_eq(tag, i);
    }
    ck_assert_int_eq(nnve_tagpool_alloc(p, NULL, 0, 0, &tag), SNCP_E_TAG_POOL_EXHAUSTED);
    nnve_tagpool_destroy(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nnve-tagpool");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_lowest_first_and_reserved);
    tcase_add_test(tc, test_preferred);
    tcase_add_test(tc, test_exhaustion_no_side_effect);
    tcase_add_test(tc, test_hold_down);
    tcase_add_test(tc, test_fresh_before_expired_held);
    tcase_add_test(tc, test_claim_and_bad_ranges);
    tcase_add_test(tc, test_full_range);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
