/* test-error.c: Check suite for the error table (lib/sncp-error.c): every code has its own
 * text and token, wire statuses and errors map onto each other, errno values are described.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sncp-error.h"

static const int all_errors[] = {
#define XX(name, n, token, text) SNCP_E_##name,
    SNCP_STATUS_MAP(XX) SNCP_LOCAL_ERROR_MAP(XX)
#undef XX
};
static const char *const all_tokens[] = {
#define XX(name, n, token, text) token,
    SNCP_STATUS_MAP(XX) SNCP_LOCAL_ERROR_MAP(XX)
#undef XX
};
#define N_ERRORS (sizeof all_errors / sizeof all_errors[0])

START_TEST(test_distinct_text_and_tokens)
{
    for (size_t i = 0; i < N_ERRORS; i++) {
        const char *text = sncp_strerror(all_errors[i]);
        const char *token = sncp_error_token(all_errors[i]);
        ck_assert_ptr_nonnull(text);
        ck_assert_ptr_nonnull(token);
        ck_assert_uint_gt(strlen(text), 0);
        ck_assert_str_eq(token, all_tokens[i]);
        ck_assert_ptr_null(strchr(token, ' '));
        ck_assert_str_ne(text, "unknown error");
        for (size_t k = 0; k < i; k++) {
            ck_assert_int_ne(all_errors[i], all_errors[k]);
            ck_assert_str_ne(text, sncp_strerror(all_errors[k]));
            ck_assert_str_ne(token, sncp_error_token(all_errors[k]));
        }
    }
    ck_assert_str_eq(sncp_strerror(0), "success");
    ck_assert_str_eq(sncp_error_token(0), "success");
    ck_assert_str_eq(sncp_strerror(SNCP_E_TAG_POOL_EXHAUSTED), "local tag pool exhausted");
    ck_assert_str_eq(sncp_error_token(SNCP_E_TAG_POOL_EXHAUSTED), "tag-pool-exhausted");
    ck_assert_int_eq(SNCP_E_MALFORMED, -(SNCP_ERR_BASE + 1));
    ck_assert_int_eq(SNCP_E_TLS, -(SNCP_ERR_BASE + SNCP_ERR_LOCAL));
}
END_TEST

START_TEST(test_errno)
{
    ck_assert_str_eq(sncp_strerror(-ECONNREFUSED), strerror(ECONNREFUSED));
    ck_assert_str_eq(sncp_error_token(-ECONNREFUSED), "ECONNREFUSED");
    ck_assert_str_eq(sncp_error_token(-ENOBUFS), "ENOBUFS");
    ck_assert_str_eq(sncp_strerror(-ENOMEM), strerror(ENOMEM));
    /* Numbers no table knows still get a usable text and token. */
    ck_assert_str_eq(sncp_error_token(-4000), "errno-4000");
    ck_assert_str_eq(sncp_strerror(-4000), "unknown error");
    ck_assert_str_eq(sncp_strerror(-(SNCP_ERR_BASE + 200)), "unknown error");
    ck_assert_str_eq(sncp_error_token(-(SNCP_ERR_BASE + 200)), "error--4296");
    ck_assert_str_eq(sncp_strerror(5), "unknown error");
    ck_assert_str_eq(sncp_error_token(5), "error-5");
}
END_TEST

START_TEST(test_status_mapping)
{
    for (unsigned s = 0; s < SNCP_STATUS_COUNT_; s++) {
        int err = sncp_error_from_status((uint16_t)s);
        ck_assert_int_eq(err, s == 0 ? 0 : -(int)(SNCP_ERR_BASE + s));
        ck_assert_uint_eq(sncp_status_from_error(err), s);
        ck_assert_str_eq(sncp_status_token((uint16_t)s), sncp_error_token(err));
        ck_assert_str_eq(sncp_status_text((uint16_t)s), sncp_strerror(err));
    }
    ck_assert_int_eq(sncp_error_from_status(SNCP_STATUS_NO_SUCH_VN), SNCP_E_NO_SUCH_VN);
    ck_assert_uint_eq(sncp_status_from_error(SNCP_E_CONFLICT), SNCP_STATUS_CONFLICT);
    /* Unknown wire codes: a generic failure that still carries the code. */
    ck_assert_int_eq(sncp_error_from_status(999), -(SNCP_ERR_BASE + 999));
    ck_assert_int_lt(sncp_error_from_status(0xFFFF), 0);
    ck_assert_str_eq(sncp_status_token(999), "status-999");
    ck_assert_str_eq(sncp_status_text(999), "unknown status");
    ck_assert_str_eq(sncp_status_token(SNCP_STATUS_COUNT_), "status-16");
    /* Errors that never go on the wire become INTERNAL. */
    ck_assert_uint_eq(sncp_status_from_error(-ECONNRESET), SNCP_STATUS_INTERNAL);
    ck_assert_uint_eq(sncp_status_from_error(SNCP_E_TLS), SNCP_STATUS_INTERNAL);
    ck_assert_uint_eq(sncp_status_from_error(SNCP_E_CLOSED), SNCP_STATUS_INTERNAL);
    ck_assert_uint_eq(sncp_status_from_error(-(SNCP_ERR_BASE + 999)), SNCP_STATUS_INTERNAL);
    ck_assert_uint_eq(sncp_status_from_error(7), SNCP_STATUS_INTERNAL);
}
END_TEST

static Suite *error_suite(void)
{
    Suite *s = suite_create("sncp-error");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, test_distinct_text_and_tokens);
    tcase_add_test(tc, test_errno);
    tcase_add_test(tc, test_status_mapping);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(error_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
