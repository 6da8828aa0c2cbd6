/* test-file.c: Check suite for snv-file: a file replaced through snv_file_write_atomic()
 * never follows a symlink planted at its path (the victim it points to is untouched), a
 * failed write leaves the old file and no temporary, and a pidfile refuses a symlink. */
#include "snv-file.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

static char dir[PATH_MAX];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/test-file.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    testutil_rm_tree(dir);
}

static void path_in(char *out, size_t cap, const char *name)
{
    ck_assert_int_lt(snprintf(out, cap, "%s/%s", dir, name), (int)cap);
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* The whole content of `path` (static buffer). */
static const char *get(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int entries(void)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static int write_hello(FILE *f, void *aux)
{
    fprintf(f, "hello %s\n", (const char *)aux);
    return 0;
}

static int write_fail(FILE *f, void *aux)
{
    (void)aux;
    fputs("partial", f);
    return -ENOSPC;
}

START_TEST(test_write_creates_and_replaces)
{
    char target[PATH_MAX];
    path_in(target, sizeof target, "metrics.prom");
    ck_assert_int_eq(snv_file_write_atomic(target, 0640, write_hello, "one"), 0);
    ck_assert_str_eq(get(target), "hello one\n");
    struct stat st;
    ck_assert_int_eq(stat(target, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0640);
    ck_assert_int_eq(snv_file_write_atomic(target, 0640, write_hello, "two"), 0);
    ck_assert_str_eq(get(target), "hello two\n");
    ck_assert_int_eq(entries(), 1); /* no temporary left behind */
}
END_TEST

/* An attacker who can write the directory plants a symlink where the daemon writes, aimed
 * at a file the daemon may write to but the attacker may not. */
START_TEST(test_planted_symlink_not_followed)
{
    char target[PATH_MAX], victim[PATH_MAX];
    path_in(target, sizeof target, "tags");
    path_in(victim, sizeof victim, "victim");
    put(victim, "precious\n");
    ck_assert_int_eq(symlink(victim, target), 0);

    ck_assert_int_eq(snv_file_write_atomic(target, 0644, write_hello, "x"), 0);
    ck_assert_str_eq(get(victim), "precious\n");
    struct stat st;
    ck_assert_int_eq(lstat(target, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    ck_assert_str_eq(get(target), "hello x\n");
}
END_TEST

/* A dangling symlink (to a file the attacker hopes the daemon creates) is not followed. */
START_TEST(test_dangling_symlink_not_followed)
{
    char target[PATH_MAX], victim[PATH_MAX];
    path_in(target, sizeof target, "ports");
    path_in(victim, sizeof victim, "created-by-daemon");
    ck_assert_int_eq(symlink(victim, target), 0);
    ck_assert_int_eq(snv_file_write_atomic(target, 0644, write_hello, "y"), 0);
    ck_assert_int_eq(access(victim, F_OK), -1);
    ck_assert_str_eq(get(target), "hello y\n");
}
END_TEST

START_TEST(test_writer_failure_keeps_old)
{
    char target[PATH_MAX];
    path_in(target, sizeof target, "state");
    put(target, "old\n");
    ck_assert_int_eq(snv_file_write_atomic(target, 0644, write_fail, NULL), -ENOSPC);
    ck_assert_str_eq(get(target), "old\n");
    ck_assert_int_eq(entries(), 1);
}
END_TEST

START_TEST(test_missing_dir_fails)
{
    char target[PATH_MAX];
    path_in(target, sizeof target, "nodir/file");
    ck_assert_int_eq(snv_file_write_atomic(target, 0644, write_hello, "z"), -ENOENT);
    ck_assert_int_eq(snv_file_write_atomic("", 0644, write_hello, "z"), -EINVAL);
}
END_TEST

START_TEST(test_pidfile)
{
    char target[PATH_MAX], victim[PATH_MAX], expect[32];
    path_in(target, sizeof target, "daemon.pid");
    path_in(victim, sizeof victim, "victim");
    snprintf(expect, sizeof expect, "%ld\n", (long)getpid());
    ck_assert_int_eq(snv_file_write_pidfile(target), 0);
    ck_assert_str_eq(get(target), expect);

    ck_assert_int_eq(unlink(target), 0);
    put(victim, "precious\n");
    ck_assert_int_eq(symlink(victim, target), 0);
    ck_assert_int_eq(snv_file_write_pidfile(target), -ELOOP);
    ck_assert_str_eq(get(victim), "precious\n");
    struct stat st;
    ck_assert_int_eq(lstat(target, &st), 0);
    ck_assert(S_ISLNK(st.st_mode));
}
END_TEST

static Suite *file_suite(void)
{
    Suite *s = suite_create("file");
    TCase *tc = tcase_create("atomic");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_write_creates_and_replaces);
    tcase_add_test(tc, test_planted_symlink_not_followed);
    tcase_add_test(tc, test_dangling_symlink_not_followed);
    tcase_add_test(tc, test_writer_failure_keeps_old);
    tcase_add_test(tc, test_missing_dir_fails);
    tcase_add_test(tc, test_pidfile);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(file_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
