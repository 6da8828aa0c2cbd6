/* test-log.c: Check suite for snv-log: level names and parsing, the level filter, the stderr
 * line format, the token-bucket rate limiter with injected time, and the "suppressed=N"
 * suffix of snv_log_rl. */
#include "snv-log.h"

#include <check.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- stderr capture ---- */

struct capture {
    FILE *file;
    int saved_fd;
};

static void capture_begin(struct capture *c)
{
    fflush(stderr);
    c->file = tmpfile();
    ck_assert_ptr_nonnull(c->file);
    c->saved_fd = dup(STDERR_FILENO);
    ck_assert_int_ge(c->saved_fd, 0);
    ck_assert_int_ge(dup2(fileno(c->file), STDERR_FILENO), 0);
}

/* Restores stderr and returns what was written (caller frees). */
static char *capture_end(struct capture *c)
{
    fflush(stderr);
    ck_assert_int_ge(dup2(c->saved_fd, STDERR_FILENO), 0);
    close(c->saved_fd);
    fseek(c->file, 0, SEEK_END);
    long size = ftell(c->file);
    ck_assert_int_ge(size, 0);
    rewind(c->file);
    char *text = calloc(1, (size_t)size + 1);
    ck_assert_ptr_nonnull(text);
    size_t n = fread(text, 1, (size_t)size, c->file);
    ck_assert_uint_eq(n, (size_t)size);
    fclose(c->file);
    return text;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void assert_matches(const char *text, const char *pattern)
{
    regex_t re;
    ck_assert_int_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    ck_assert_msg(rc == 0, "\"%s\" does not match /%s/", text, pattern);
}

/* ---- levels ---- */

START_TEST(test_level_parse)
{
    enum snv_log_level level = SNV_LOG_DEBUG;

    ck_assert_int_eq(snv_log_level_parse("err", &level), 0);
    ck_assert_int_eq(level, SNV_LOG_ERR);
    ck_assert_int_eq(snv_log_level_parse("warning", &level), 0);
    ck_assert_int_eq(level, SNV_LOG_WARN);
    ck_assert_int_eq(snv_log_level_parse("warn", &level), 0);
    ck_assert_int_eq(level, SNV_LOG_WARN);
    ck_assert_int_eq(snv_log_level_parse("info", &level), 0);
    ck_assert_int_eq(level, SNV_LOG_INFO);
    ck_assert_int_eq(snv_log_level_parse("DEBUG", &level), 0);
    ck_assert_int_eq(level, SNV_LOG_DEBUG);
    ck_assert_int_eq(snv_log_level_parse("error", &level), 0);
    ck_assert_int_eq(level, SNV_LOG_ERR);

    level = SNV_LOG_INFO;
    ck_assert_int_eq(snv_log_level_parse("verbose", &level), -EINVAL);
    ck_assert_int_eq(snv_log_level_parse("", &level), -EINVAL);
    ck_assert_int_eq(snv_log_level_parse("info ", &level), -EINVAL);
    ck_assert_int_eq(snv_log_level_parse(NULL, &level), -EINVAL);
    ck_assert_int_eq(level, SNV_LOG_INFO);
}
END_TEST

START_TEST(test_level_names)
{
    ck_assert_str_eq(snv_log_level_name(SNV_LOG_ERR), "err");
    ck_assert_str_eq(snv_log_level_name(SNV_LOG_WARN), "warn");
    ck_assert_str_eq(snv_log_level_name(SNV_LOG_INFO), "info");
    ck_assert_str_eq(snv_log_level_name(SNV_LOG_DEBUG), "debug");
    ck_assert_str_eq(snv_log_level_name((enum snv_log_level)42), "unknown");
    for (int l = SNV_LOG_ERR; l <= SNV_LOG_DEBUG; l++) {
        enum snv_log_level back;
        ck_assert_int_eq(snv_log_level_parse(snv_log_level_name((enum snv_log_level)l), &back), 0);
        ck_assert_int_eq(back, l);
    }
    snv_log_set_level(SNV_LOG_DEBUG);
    ck_assert_int_eq(snv_log_get_level(), SNV_LOG_DEBUG);
    snv_log_set_level(SNV_LOG_ERR);
    ck_assert_int_eq(snv_log_get_level(), SNV_LOG_ERR);
}
END_TEST

/* ---- output ---- */

START_TEST(test_line_format)
{
    struct capture c;
    char pattern[256];

    snv_log_open("/usr/sbin/test-prog", SNV_LOG_STDERR);
    snv_log_set_level(SNV_LOG_INFO);
    capture_begin(&c);
    SNV_INFO("session", "activated tsi=%s tag=%u", "abc", 100u);
    char *text = capture_end(&c);

    snprintf(pattern, sizeof pattern,
             "^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]\\.[0-9]{3}Z "
             "test-prog\\[%ld\\]: info session: activated tsi=abc tag=100\n$",
             (long)getpid());
    assert_matches(text, pattern);
    free(text);
}
END_TEST

/* Audit lines: always written whatever the level, never throttled, one line each. */
START_TEST(test_audit_never_filtered_or_throttled)
{
    struct capture c;
    char pattern[256];

    snv_log_open("test-prog", SNV_LOG_STDERR);
    snv_log_set_level(SNV_LOG_ERR);
    uint64_t before = snv_audit_count();
    capture_begin(&c);
    for (int i = 0; i < 20000; i++)
        snv_audit("tsi", "activated tsi=t%d hypervisor=hv1", i);
    SNV_INFO("tsi", "filtered");
    char *text = capture_end(&c);
    ck_assert_int_eq(count_lines(text), 20000);
    ck_assert_uint_eq(snv_audit_count() - before, 20000);
    snprintf(pattern, sizeof pattern,
             "^[0-9T:.-]+Z test-prog\\[%ld\\]: audit tsi: activated tsi=t0 hypervisor=hv1\n",
             (long)getpid());
    assert_matches(text, pattern);
    ck_assert_ptr_nonnull(strstr(text, "audit tsi: activated tsi=t19999 hypervisor=hv1\n"));
    ck_assert_ptr_null(strstr(text, "suppressed"));
    ck_assert_str_eq(snv_log_level_name(SNV_LOG_AUDIT), "audit");
    free(text);
    snv_log_set_level(SNV_LOG_INFO);
}
END_TEST

/* The logger's clock: time() reads a coarse copy of it that may lag by a timer tick, so a
 * line logged just after a second began could look later than time() after it. */
static time_t realtime_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec;
}

START_TEST(test_line_time_is_utc_now)
{
    struct capture c;

    snv_log_open("t", SNV_LOG_STDERR);
    time_t before = realtime_now();
    capture_begin(&c);
    SNV_ERR("m", "x");
    char *text = capture_end(&c);
    time_t after = realtime_now();

    struct tm tm;
    memset(&tm, 0, sizeof tm);
    char *end = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    ck_assert_ptr_nonnull(end);
    time_t logged = timegm(&tm);
    ck_assert_int_ge(logged, before);
    ck_assert_int_le(logged, after);
    free(text);
}
END_TEST

START_TEST(test_level_filter)
{
    struct capture c;
    int evaluated = 0;

    snv_log_open("t", SNV_LOG_STDERR);
    snv_log_set_level(SNV_LOG_WARN);
    capture_begin(&c);
    SNV_INFO("m", "hidden info");
    SNV_DBG("m", "hidden debug %d", ++evaluated);
    SNV_WARN("m", "shown warn");
    SNV_ERR("m", "shown err");
    char *text = capture_end(&c);

    ck_assert_int_eq(evaluated, 0); /* SNV_DBG does not evaluate its arguments */
    ck_assert_int_eq(count_lines(text), 2);
    ck_assert_ptr_null(strstr(text, "hidden"));
    ck_assert_ptr_nonnull(strstr(text, ": warn m: shown warn\n"));
    ck_assert_ptr_nonnull(strstr(text, ": err m: shown err\n"));
    free(text);

    snv_log_set_level(SNV_LOG_DEBUG);
    capture_begin(&c);
    SNV_DBG("m", "now shown %d", ++evaluated);
    text = capture_end(&c);
    ck_assert_int_eq(evaluated, 1);
    ck_assert_ptr_nonnull(strstr(text, ": debug m: now shown 1\n"));
    free(text);
}
END_TEST

START_TEST(test_control_chars_neutralised)
{
    struct capture c;

    snv_log_open("t", SNV_LOG_STDERR);
    capture_begin(&c);
    SNV_WARN("m", "name=%s", "evil\nfake line\r\x1b[0m");
    char *text = capture_end(&c);

    ck_assert_int_eq(count_lines(text), 1);
    ck_assert_ptr_nonnull(strstr(text, "name=evil?fake line??[0m\n"));
    free(text);
}
END_TEST

START_TEST(test_long_line_truncated)
{
    struct capture c;
    size_t n = 10000;
    char *big = malloc(n + 1);
    ck_assert_ptr_nonnull(big);
    memset(big, 'a', n);
    big[n] = '\0';

    snv_log_open("t", SNV_LOG_STDERR);
    capture_begin(&c);
    SNV_WARN("m", "big=%s", big);
    char *text = capture_end(&c);

    ck_assert_int_eq(count_lines(text), 1);
    ck_assert_uint_lt(strlen(text), 4096);
    ck_assert_ptr_nonnull(strstr(text, "aaa...\n"));
    free(text);
    free(big);
}
END_TEST

/* ---- rate limiter ---- */

START_TEST(test_rl_burst)
{
    struct snv_ratelimit rl = SNV_RATELIMIT_INIT(1, 3);
    uint64_t t = 5000;

    ck_assert_int_eq(snv_ratelimit_allow(&rl, t), 1);
    ck_assert_int_eq(snv_ratelimit_allow(&rl, t), 1);
    ck_assert_int_eq(snv_ratelimit_allow(&rl, t), 1);
    ck_assert_int_eq(snv_ratelimit_allow(&rl, t), 0);
    ck_assert_int_eq(snv_ratelimit_allow(&rl, t), 0);
    ck_assert_uint_eq(rl.suppressed, 2);
}
END_TEST

START_TEST(test_rl_refill)
{
    struct snv_ratelimit rl = SNV_RATELIMIT_INIT(2, 2); /* one token per 500 ms */
    uint64_t t = 1000;

    ck_assert_int_eq(snv_ratelimit_allow(&rl, t), 1);
    ck_assert_int_eq(snv_ratelimit_allow(&rl, t), 1);
    ck_assert_int_eq(snv_ratelimit_allow(&rl, t), 0);
    ck_assert_int_eq(snv_ratelimit_allow(&rl, t + 499), 0);
    ck_assert_int_eq(snv_ratelimit_allow(&rl, t + 500), 1);
    ck_assert_int_eq(snv_ratelimit_allow(&rl, t + 500), 0);
    ck_assert_uint_eq(rl.suppressed, 3);

    /* A long quiet period refills only up to the burst. */
    t += 3600 * 1000;
    ck_assert_int_eq(snv_ratelimit_allow(&rl, t), 1);
    ck_assert_int_eq(snv_ratelimit_allow(&rl, t), 1);
    ck_assert_int_eq(snv_ratelimit_allow(&rl, t), 0);

    /* A clock that goes backwards refills nothing. */
    ck_assert_int_eq(snv_ratelimit_allow(&rl, t - 100000), 0);

    /* A sustained rate: 2 per second over 10 seconds, one call every 100 ms. */
    int allowed = 0;
    t += 1000000;
    for (int i = 0; i < 100; i++)
        allowed += snv_ratelimit_allow(&rl, t + (uint64_t)i * 100);
    ck_assert_int_ge(allowed, 20);
    ck_assert_int_le(allowed, 22);
}
END_TEST

START_TEST(test_rl_huge_gap_no_overflow)
{
    struct snv_ratelimit rl = SNV_RATELIMIT_INIT(1000000, 5);

    ck_assert_int_eq(snv_ratelimit_allow(&rl, 0), 1);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(snv_ratelimit_allow(&rl, 0), 1);
    ck_assert_int_eq(snv_ratelimit_allow(&rl, 0), 0);
    uint64_t far = UINT64_MAX - 1;
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(snv_ratelimit_allow(&rl, far), 1);
    ck_assert_int_eq(snv_ratelimit_allow(&rl, far), 0);
}
END_TEST

START_TEST(test_rl_zero_burst_means_one)
{
    struct snv_ratelimit rl = SNV_RATELIMIT_INIT(1, 0);

    ck_assert_int_eq(snv_ratelimit_allow(&rl, 100), 1);
    ck_assert_int_eq(snv_ratelimit_allow(&rl, 100), 0);
    ck_assert_int_eq(snv_ratelimit_allow(&rl, 1100), 1);
}
END_TEST

START_TEST(test_log_rl_suppressed_suffix)
{
    struct snv_ratelimit rl = SNV_RATELIMIT_INIT(1, 2);
    struct capture c;

    snv_log_open("t", SNV_LOG_STDERR);
    snv_log_set_level(SNV_LOG_INFO);
    capture_begin(&c);
    for (int i = 0; i < 5; i++)
        snv_log_rl(&rl, SNV_LOG_WARN, "peer", "bad frame n=%d", i);
    /* Time is injected through the bucket: pretend a second of tokens came back. */
    rl.tokens_milli = 1000;
    snv_log_rl(&rl, SNV_LOG_WARN, "peer", "bad frame n=%d", 5);
    rl.tokens_milli = 1000;
    snv_log_rl(&rl, SNV_LOG_WARN, "peer", "bad frame n=%d", 6);
    /* Filtered by level: neither logged nor counted. */
    snv_log_rl(&rl, SNV_LOG_DEBUG, "peer", "debug n=%d", 7);
    char *text = capture_end(&c);

    ck_assert_int_eq(count_lines(text), 4);
    ck_assert_ptr_nonnull(strstr(text, "warn peer: bad frame n=0\n"));
    ck_assert_ptr_nonnull(strstr(text, "warn peer: bad frame n=1\n"));
    ck_assert_ptr_null(strstr(text, "n=2"));
    ck_assert_ptr_null(strstr(text, "n=4"));
    ck_assert_ptr_nonnull(strstr(text, "warn peer: bad frame n=5 suppressed=3\n"));
    ck_assert_ptr_nonnull(strstr(text, "warn peer: bad frame n=6\n"));
    ck_assert_uint_eq(rl.suppressed, 0);
    free(text);
}
END_TEST

/* One peer flooding spends its own share only: another peer's line still gets through the
 * shared limiter, and what the shared limiter refuses is counted for the peer it belonged
 * to (its own token given back). */
START_TEST(test_log_rl2_one_peer_cannot_silence_another)
{
    struct snv_ratelimit all = SNV_RATELIMIT_INIT(1, 4);
    struct snv_ratelimit a = SNV_RATELIMIT_INIT(1, 2), b = SNV_RATELIMIT_INIT(1, 2);
    struct snv_ratelimit c1 = SNV_RATELIMIT_INIT(1, 2), c2 = SNV_RATELIMIT_INIT(1, 2);
    struct capture c;

    snv_log_open("t", SNV_LOG_STDERR);
    snv_log_set_level(SNV_LOG_INFO);
    capture_begin(&c);
    for (int i = 0; i < 50; i++)
        snv_log_rl2(&a, &all, SNV_LOG_WARN, "policy", "refused hypervisor=a n=%d", i);
    snv_log_rl2(&b, &all, SNV_LOG_WARN, "policy", "refused hypervisor=b n=%d", 0);
    /* the shared budget (4) is now spent by a (2), b (1) and c1 (1) */
    snv_log_rl2(&c1, &all, SNV_LOG_WARN, "policy", "refused hypervisor=c1 n=%d", 0);
    snv_log_rl2(&c2, &all, SNV_LOG_WARN, "policy", "refused hypervisor=c2 n=%d", 0);
    /* Filtered by level: neither logged nor counted. */
    snv_log_rl2(&c2, &all, SNV_LOG_DEBUG, "policy", "debug n=%d", 1);
    char *text = capture_end(&c);

    ck_assert_int_eq(count_lines(text), 4);
    ck_assert_ptr_nonnull(strstr(text, "hypervisor=a n=1\n"));
    ck_assert_ptr_null(strstr(text, "hypervisor=a n=2"));
    ck_assert_ptr_nonnull(strstr(text, "hypervisor=b n=0\n"));
    ck_assert_ptr_nonnull(strstr(text, "hypervisor=c1 n=0\n"));
    ck_assert_ptr_null(strstr(text, "hypervisor=c2"));
    ck_assert_uint_eq(a.suppressed, 48);
    ck_assert_uint_eq(all.suppressed, 0);
    ck_assert_uint_eq(c2.suppressed, 1);
    ck_assert_uint_eq(c2.tokens_milli, 2000); /* given back */

    /* c2's next line, once the shared budget is back, says what it lost. */
    all.tokens_milli = 1000;
    capture_begin(&c);
    snv_log_rl2(&c2, &all, SNV_LOG_WARN, "policy", "refused hypervisor=c2 n=%d", 2);
    free(text);
    text = capture_end(&c);
    ck_assert_ptr_nonnull(strstr(text, "warn policy: refused hypervisor=c2 n=2 suppressed=1\n"));
    free(text);
}
END_TEST

START_TEST(test_now_ms_monotonic)
{
    uint64_t a = snv_now_ms();
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 30 * 1000000};
    nanosleep(&ts, NULL);
    uint64_t b = snv_now_ms();

    ck_assert_uint_ge(b, a + 29);
    ck_assert_uint_lt(b, a + 5000);
    struct timespec mono;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    uint64_t ref = (uint64_t)mono.tv_sec * 1000 + (uint64_t)mono.tv_nsec / 1000000;
    ck_assert_uint_le(b, ref);
    ck_assert_uint_ge(b + 1000, ref);
}
END_TEST

static Suite *log_suite(void)
{
    Suite *s = suite_create("snv-log");
    TCase *tc = tcase_create("levels");
    tcase_add_test(tc, test_level_parse);
    tcase_add_test(tc, test_level_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("output");
    tcase_add_test(tc, test_line_format);
    tcase_add_test(tc, test_line_time_is_utc_now);
    tcase_add_test(tc, test_level_filter);
    tcase_add_test(tc, test_control_chars_neutralised);
    tcase_add_test(tc, test_long_line_truncated);
    tcase_add_test(tc, test_audit_never_filtered_or_throttled);
    suite_add_tcase(s, tc);

    tc = tcase_create("ratelimit");
    tcase_add_test(tc, test_rl_burst);
    tcase_add_test(tc, test_rl_refill);
    tcase_add_test(tc, test_rl_huge_gap_no_overflow);
    tcase_add_test(tc, test_rl_zero_burst_means_one);
    tcase_add_test(tc, test_log_rl_suppressed_suffix);
    tcase_add_test(tc, test_log_rl2_one_peer_cannot_silence_another);
    tcase_add_test(tc, test_now_ms_monotonic);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(log_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
