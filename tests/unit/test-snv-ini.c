/* test-snv-ini.c: Check suite for snv-ini's section notification: snv_ini_parse_sections()
 * calls back at every section header (one without keys too) with the header's line, in file
 * order between the keys, never for an indented line that continues a value, a repeated
 * header or one that does not close, and stops where the callback says so; the key handler
 * sees exactly what snv_ini_parse() gives it.
 */
#include "snv-ini.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the callbacks saw, one line each: "K section key=value @line" or
 * "S [section] @line line" (the second number: *line while the callback ran). */
struct trace {
    char log[2048];
    unsigned line;
    const char *stop_at; /* a section the section callback stops at */
};

static void trace_add(struct trace *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void trace_add(struct trace *t, const char *fmt, ...)
{
    size_t used = strlen(t->log);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->log + used, sizeof t->log - used, fmt, ap);
    va_end(ap);
}

static int on_key(void *user, const char *section, const char *key, const char *value)
{
    struct trace *t = user;
    ck_assert_ptr_nonnull(key);
    trace_add(t, "K %s %s=%s @%u\n", section, key, value, t->line);
    return 1;
}

static int on_section(void *user, const char *section, unsigned line)
{
    struct trace *t = user;
    trace_add(t, "S [%s] @%u %u\n", section, line, t->line);
    return !t->stop_at || strcmp(section, t->stop_at);
}

/* Parses text with the section callback; returns the parse result, t and err filled. */
static int parse(struct trace *t, const char *text, char *err, size_t errlen)
{
    memset(t->log, 0, sizeof t->log);
    return snv_ini_parse_sections(NULL, text, on_key, on_section, t, &t->line, err, errlen);
}

START_TEST(test_sections_in_order)
{
    struct trace t = {0};
    char err[128];
    const char *text = "top = 1\n"
                       "\n"
                       "[empty]\n"
                       "; a comment\n"
                       "[b]\n"
                       "k = v\n"
                       "  more\n"
                       "[ c  d ]\n"
                       "x=y\n"
                       "[last]\n";
    ck_assert_int_eq(parse(&t, text, err, sizeof err), 0);
    ck_assert_str_eq(t.log, "K  top=1 @1\n"
                            "S [empty] @3 3\n"
                            "S [b] @5 5\n"
                            "K b k=v more @6\n"
                            "S [ c  d ] @8 8\n"
                            "K  c  d  x=y @9\n"
                            "S [last] @10 10\n");

    /* without the callback the key handler sees the same */
    struct trace k = {0};
    ck_assert_int_eq(snv_ini_parse(NULL, text, on_key, &k, &k.line, err, sizeof err), 0);
    ck_assert_str_eq(k.log, "K  top=1 @1\n"
                            "K b k=v more @6\n"
                            "K  c  d  x=y @9\n");
}
END_TEST

START_TEST(test_not_a_section)
{
    struct trace t = {0};
    char err[128];
    /* an indented line after a key continues its value, even when it reads like a header */
    ck_assert_int_eq(parse(&t, "[a]\nk = v\n  [b]\n[c]\n", err, sizeof err), 0);
    ck_assert_str_eq(t.log, "S [a] @1 1\nK a k=v [b] @2\nS [c] @4 4\n");
    /* an indented header after no key is one */
    ck_assert_int_eq(parse(&t, "  [a]\n\t[b]\n", err, sizeof err), 0);
    ck_assert_str_eq(t.log, "S [a] @1 1\nS [b] @2 2\n");
    /* a header that does not close */
    ck_assert_int_eq(parse(&t, "[a]\n[b\n", err, sizeof err), 2);
    ck_assert_str_eq(err, "syntax error");
    ck_assert_str_eq(t.log, "S [a] @1 1\n");
    /* a repeated header: refused, no second call */
    ck_assert_int_eq(parse(&t, "[a]\n[b]\n[ a ]\n", err, sizeof err), 3);
    ck_assert_str_eq(err, "section [a] repeated (first at line 1)");
    ck_assert_str_eq(t.log, "S [a] @1 1\nS [b] @2 2\n");
}
END_TEST

START_TEST(test_stop)
{
    struct trace t = {.stop_at = "b"};
    char err[128];
    ck_assert_int_eq(parse(&t, "[a]\nk = 1\n\n[b]\nk = 2\n[c]\n", err, sizeof err), 4);
    ck_assert_str_eq(err, ""); /* the callee's reason is its own */
    ck_assert_str_eq(t.log, "S [a] @1 1\nK a k=1 @2\nS [b] @4 4\n");
}
END_TEST

START_TEST(test_file)
{
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    fputs("\xEF\xBB\xBF[first]\nk = v\n   w\n\n[second]\n", f);
    rewind(f);
    struct trace t = {0};
    char err[128];
    ck_assert_int_eq(
        snv_ini_parse_sections(f, NULL, on_key, on_section, &t, &t.line, err, sizeof err), 0);
    ck_assert_str_eq(t.log, "S [first] @1 1\nK first k=v w @2\nS [second] @5 5\n");
    fclose(f);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("snv-ini");
    TCase *tc = tcase_create("sections");
    tcase_add_test(tc, test_sections_in_order);
    tcase_add_test(tc, test_not_a_section);
    tcase_add_test(tc, test_stop);
    tcase_add_test(tc, test_file);
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
