/* test-file.c: Check suite for snv-file: a file replaced through snv_file_write_atomic()
 * never follows a symlink planted at its path (the victim it points to is untouched), a
 * failed write leaves the old file and no temporary, and a pidfile refuses a symlink.
 * The background writer: what is put is on disk when destroy returns, a content put while
 * a write is under way replaces the one still pending, contents are written in order, and
 * a failure is reported once by poll. */
#include "snv-file.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

/* ---- background writer ---- */

/* Every fsync of this program comes here (a definition in the program wins over the C
 * library's at link time): the content of each regular file synced is recorded, in order,
 * and while the gate is closed the syncing thread (the writer's) waits here, so that a test
 * puts contents while a write is under way without any timing. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_closed, gate_held;
enum { MAX_SYNCED = 1024 };
static char synced[MAX_SYNCED][16];
static int n_synced;

int fsync(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        char buf[sizeof synced[0]];
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
        pthread_mutex_lock(&gate_lock);
        if (n_synced < MAX_SYNCED)
            memcpy(synced[n_synced], buf, sizeof buf);
        n_synced++;
        gate_held += gate_closed;
        pthread_cond_broadcast(&gate_cond);
        while (gate_closed)
            pthread_cond_wait(&gate_cond, &gate_lock);
        pthread_mutex_unlock(&gate_lock);
    }
    return (int)syscall(SYS_fsync, fd);
}

static void gate_close(void)
{
    pthread_mutex_lock(&gate_lock);
    gate_closed = 1;
    gate_held = 0;
    pthread_mutex_unlock(&gate_lock);
}

/* Returns once the writer thread waits at the closed gate. */
static void gate_wait_held(void)
{
    pthread_mutex_lock(&gate_lock);
    while (!gate_held)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
}

static void gate_open(void)
{
    pthread_mutex_lock(&gate_lock);
    gate_closed = 0;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

static void bg_setup(void)
{
    setup();
    n_synced = 0;
    gate_closed = gate_held = 0;
}

/* A writer of `name` in the test directory (its path in `target`), mode 0644. */
static struct snv_file_bg *bg_in(char *target, size_t cap, const char *name)
{
    path_in(target, cap, name);
    struct snv_file_bg *bg = snv_file_bg_create(target, 0644);
    ck_assert_ptr_nonnull(bg);
    return bg;
}

static void bg_put_str(struct snv_file_bg *bg, const char *text)
{
    char *buf = strdup(text);
    ck_assert_ptr_nonnull(buf);
    snv_file_bg_put(bg, buf, strlen(buf));
}

/* What is put is on disk, with its mode, once destroy returns: no wait needed before. */
START_TEST(test_bg_written_by_destroy)
{
    char target[PATH_MAX];
    path_in(target, sizeof target, "ports");
    struct snv_file_bg *bg = snv_file_bg_create(target, 0640);
    ck_assert_ptr_nonnull(bg);
    bg_put_str(bg, "vnet1 100\n");
    snv_file_bg_destroy(bg);
    ck_assert_str_eq(get(target), "vnet1 100\n");
    struct stat st;
    ck_assert_int_eq(stat(target, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0640);
    ck_assert_int_eq(entries(), 1);
    ck_assert_int_eq(n_synced, 1);

    /* nothing put: nothing written */
    bg = bg_in(target, sizeof target, "never");
    snv_file_bg_destroy(bg);
    ck_assert_int_eq(access(target, F_OK), -1);
    snv_file_bg_destroy(NULL);
}
END_TEST

/* Contents put while a write is under way: the newest replaces the one still pending, and
 * poll says a write is under way until it ended. */
START_TEST(test_bg_latest_wins)
{
    char target[PATH_MAX];
    struct snv_file_bg *bg = bg_in(target, sizeof target, "ports");
    gate_close();
    bg_put_str(bg, "one\n");
    gate_wait_held(); /* "one" is being written */
    int err = 1;
    ck_assert_int_eq(snv_file_bg_poll(bg, &err), 1);
    ck_assert_int_eq(err, 0);
    bg_put_str(bg, "two\n");
    bg_put_str(bg, "three\n");
    ck_assert_int_eq(snv_file_bg_poll(bg, &err), 1);
    gate_open();
    snv_file_bg_wait(bg);
    ck_assert_int_eq(snv_file_bg_poll(bg, &err), 0);
    ck_assert_int_eq(err, 0);
    ck_assert_str_eq(get(target), "three\n");
    ck_assert_int_eq(n_synced, 2);
    ck_assert_str_eq(synced[0], "one\n");
    ck_assert_str_eq(synced[1], "three\n");
    snv_file_bg_destroy(bg);
    ck_assert_int_eq(n_synced, 2);
    ck_assert_int_eq(entries(), 1);
}
END_TEST

/* Many puts in a row: the last is what the file holds, and the contents written came in
 * the order they were put (an older one never after a newer one). */
START_TEST(test_bg_many_puts_in_order)
{
    char target[PATH_MAX];
    struct snv_file_bg *bg = bg_in(target, sizeof target, "ports");
    enum { PUTS = 1000 };
    for (int i = 1; i <= PUTS; i++) {
        char text[16];
        snprintf(text, sizeof text, "%d\n", i);
        bg_put_str(bg, text);
    }
    snv_file_bg_destroy(bg);
    char last[16];
    snprintf(last, sizeof last, "%d\n", PUTS);
    ck_assert_str_eq(get(target), last);
    ck_assert_int_ge(n_synced, 1);
    ck_assert_int_le(n_synced, PUTS);
    for (int i = 1; i < n_synced; i++)
        ck_assert_int_lt(atoi(synced[i - 1]), atoi(synced[i]));
    ck_assert_str_eq(synced[n_synced - 1], last);
    ck_assert_int_eq(entries(), 1);
}
END_TEST

/* A write that fails (its directory removed) is reported once by poll, with its errno; the
 * writer goes on with the next content. */
START_TEST(test_bg_failure_polled)
{
    char sub[PATH_MAX], target[PATH_MAX];
    path_in(sub, sizeof sub, "state");
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    struct snv_file_bg *bg = bg_in(target, sizeof target, "state/ports");
    ck_assert_int_eq(rmdir(sub), 0);
    bg_put_str(bg, "lost\n");
    snv_file_bg_wait(bg);
    int err = 0;
    ck_assert_int_eq(snv_file_bg_poll(bg, &err), 0);
    ck_assert_int_eq(err, -ENOENT);
    ck_assert_int_eq(snv_file_bg_poll(bg, &err), 0);
    ck_assert_int_eq(err, 0); /* reported once */

    ck_assert_int_eq(mkdir(sub, 0755), 0);
    bg_put_str(bg, "kept\n");
    snv_file_bg_wait(bg);
    ck_assert_int_eq(snv_file_bg_poll(bg, &err), 0);
    ck_assert_int_eq(err, 0);
    ck_assert_str_eq(get(target), "kept\n");
    snv_file_bg_destroy(bg);
}
END_TEST

/* snv_file_bg_write builds the content with a writer; a writer's failure puts nothing. */
START_TEST(test_bg_write_with_writer)
{
    char target[PATH_MAX];
    struct snv_file_bg *bg = bg_in(target, sizeof target, "tags");
    ck_assert_int_eq(snv_file_bg_write(bg, write_hello, "bg"), 0);
    snv_file_bg_wait(bg);
    ck_assert_str_eq(get(target), "hello bg\n");
    ck_assert_int_eq(snv_file_bg_write(bg, write_fail, NULL), -ENOSPC);
    snv_file_bg_destroy(bg);
    ck_assert_str_eq(get(target), "hello bg\n");
    ck_assert_int_eq(n_synced, 1);
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
    tc = tcase_create("background");
    tcase_add_checked_fixture(tc, bg_setup, teardown);
    tcase_add_test(tc, test_bg_written_by_destroy);
    tcase_add_test(tc, test_bg_latest_wins);
    tcase_add_test(tc, test_bg_many_puts_in_order);
    tcase_add_test(tc, test_bg_failure_polled);
    tcase_add_test(tc, test_bg_write_with_writer);
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
