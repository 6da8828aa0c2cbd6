/* test-tnve-virt-loop.c: Check suite for libvirt's event loop on libuv
 * (tnve-agent/virt-loop.c): fd watches on pipes (one uv_poll per fd, merged events,
 * removal from inside a callback), timeouts (-1 / 0 / N ms), free callbacks never run
 * synchronously, clean loop close; and a real private libvirtd (test driver) whose events,
 * caused by a virsh in another process, arrive through the loop.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <uv.h>

#include "../../tnve-agent/virt-loop.h"

static int hits[8];
static int last_events[8];
static int freed[8];
static int self_remove_id;

static void handle_cb(int watch, int fd, int events, void *opaque)
{
    (void)watch;
    (void)fd;
    int i = (int)(intptr_t)opaque;
    hits[i]++;
    last_events[i] = events;
}

static void self_removing_cb(int watch, int fd, int events, void *opaque)
{
    handle_cb(watch, fd, events, opaque);
    tnve_virt_loop_remove_handle(self_remove_id);
}

static void free_cb(void *opaque)
{
    freed[(int)(intptr_t)opaque]++;
}

static void timeout_cb(int timer, void *opaque)
{
    (void)timer;
    hits[(int)(intptr_t)opaque]++;
}

static void finish(uv_loop_t *loop)
{
    tnve_virt_loop_uninit();
    uv_run(loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(loop), 0);
}

START_TEST(test_pipe_watches)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    ck_assert_int_eq(tnve_virt_loop_init(&loop), 0);
    int p[2];
    ck_assert_int_eq(pipe2(p, O_NONBLOCK), 0);
    int w1 =
        tnve_virt_loop_add_handle(p[0], VIR_EVENT_HANDLE_READABLE, handle_cb, (void *)0, free_cb);
    int w2 =
        tnve_virt_loop_add_handle(p[0], VIR_EVENT_HANDLE_READABLE, handle_cb, (void *)1, free_cb);
    int w3 = tnve_virt_loop_add_handle(p[1], 0, handle_cb, (void *)2, free_cb);
    ck_assert_int_gt(w1, 0);
    ck_assert_int_gt(w2, 0);
    ck_assert_int_ne(w1, w2);
    struct tnve_virt_loop_stats st;
    tnve_virt_loop_get_stats(&st);
    ck_assert_uint_eq(st.watches, 3);
    ck_assert_uint_eq(st.polls, 2); /* one poll per fd, never two on the same fd */

    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(hits[0] + hits[1] + hits[2], 0);
    ck_assert_int_eq(write(p[1], "x", 1), 1);
    uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_ge(hits[0], 1);
    ck_assert_int_ge(hits[1], 1);
    ck_assert_int_eq(last_events[0] & VIR_EVENT_HANDLE_READABLE, VIR_EVENT_HANDLE_READABLE);

    /* the write end becomes interesting only when asked for */
    tnve_virt_loop_update_handle(w3, VIR_EVENT_HANDLE_WRITABLE);
    uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_ge(hits[2], 1);
    tnve_virt_loop_update_handle(w3, 0);

    /* disabling one watch of a shared fd keeps the other */
    tnve_virt_loop_update_handle(w1, 0);
    int h0 = hits[0], h1 = hits[1];
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(hits[0], h0);
    ck_assert_int_gt(hits[1], h1);

    /* removal: the free callback runs later, from the loop */
    ck_assert_int_eq(tnve_virt_loop_remove_handle(w1), 0);
    ck_assert_int_eq(tnve_virt_loop_remove_handle(w1), -1);
    ck_assert_int_eq(freed[0], 0);
    tnve_virt_loop_get_stats(&st);
    ck_assert_uint_eq(st.polls, 2);
    ck_assert_uint_eq(st.pending, 1);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(freed[0], 1);
    ck_assert_int_eq(tnve_virt_loop_remove_handle(w2), 0);
    ck_assert_int_eq(freed[1], 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(freed[1], 1);
    tnve_virt_loop_get_stats(&st);
    ck_assert_uint_eq(st.polls, 1);

    /* the same fd registered again after its poll closed */
    int w4 =
        tnve_virt_loop_add_handle(p[0], VIR_EVENT_HANDLE_READABLE, handle_cb, (void *)3, free_cb);
    ck_assert_int_gt(w4, 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_ge(hits[3], 1);

    /* uninit closes what is left (w3, w4) and runs their free callbacks */
    finish(&loop);
    ck_assert_int_eq(freed[2], 1);
    ck_assert_int_eq(freed[3], 1);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(test_remove_inside_callback)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    tnve_virt_loop_init(&loop);
    int p[2];
    ck_assert_int_eq(pipe2(p, O_NONBLOCK), 0);
    self_remove_id = tnve_virt_loop_add_handle(p[0], VIR_EVENT_HANDLE_READABLE, self_removing_cb,
                                               (void *)0, free_cb);
    tnve_virt_loop_add_handle(p[0], VIR_EVENT_HANDLE_READABLE, handle_cb, (void *)1, free_cb);
    ck_assert_int_eq(write(p[1], "x", 1), 1);
    uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_eq(hits[0], 1);
    ck_assert_int_eq(freed[0], 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(freed[0], 1);
    ck_assert_int_eq(hits[0], 1);
    ck_assert_int_ge(hits[1], 1);
    finish(&loop);
    ck_assert_int_eq(freed[1], 1);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(test_timeouts)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    tnve_virt_loop_init(&loop);
    int t1 = tnve_virt_loop_add_timeout(10, timeout_cb, (void *)0, free_cb);
    int t2 = tnve_virt_loop_add_timeout(-1, timeout_cb, (void *)1, free_cb);
    int t3 = tnve_virt_loop_add_timeout(0, timeout_cb, (void *)2, free_cb);
    ck_assert_int_gt(t1, 0);
    /* period 0: once per loop iteration, without spinning inside one */
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(hits[2], 1);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(hits[2], 2);
    tnve_virt_loop_update_timeout(t3, -1);
    uint64_t start = uv_now(&loop);
    while (uv_now(&loop) - start < 55)
        uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_ge(hits[0], 3);
    ck_assert_int_le(hits[0], 6);
    ck_assert_int_eq(hits[1], 0);
    ck_assert_int_eq(hits[2], 2);
    /* enable the disabled one; disable the periodic one */
    tnve_virt_loop_update_timeout(t2, 5);
    tnve_virt_loop_update_timeout(t1, -1);
    int h0 = hits[0];
    start = uv_now(&loop);
    while (uv_now(&loop) - start < 30)
        uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_eq(hits[0], h0);
    ck_assert_int_ge(hits[1], 2);
    ck_assert_int_eq(tnve_virt_loop_remove_timeout(t1), 0);
    ck_assert_int_eq(tnve_virt_loop_remove_timeout(t1), -1);
    ck_assert_int_eq(freed[0], 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(freed[0], 1);
    finish(&loop);
    ck_assert_int_eq(freed[1], 1);
    ck_assert_int_eq(freed[2], 1);
}
END_TEST

/* ---- a real private libvirtd ---- */

static char tmpdir[64];
static pid_t libvirtd_pid;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static int run_wait(char *const argv[], const char *envvar)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 1);
        dup2(devnull, 2);
        if (envvar)
            putenv((char *)envvar);
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int start_libvirtd(char *uri, size_t cap)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tnve-vl-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    char path[256], conf[1024], env[300];
    snprintf(path, sizeof path, "%s/run", tmpdir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/nodrivers", tmpdir);
    mkdir(path, 0700);
    snprintf(conf, sizeof conf,
             "unix_sock_dir=\"%s/run\"\nunix_sock_rw_perms=\"0770\"\nauth_unix_rw=\"none\"\n"
             "auth_unix_ro=\"none\"\nlog_outputs=\"3:file:%s/libvirtd.log\"\n",
             tmpdir, tmpdir);
    snprintf(path, sizeof path, "%s/libvirtd.conf", tmpdir);
    write_file(path, conf);
    snprintf(env, sizeof env, "LIBVIRT_DRIVER_DIR=%s/nodrivers", tmpdir);
    char pidfile[256];
    snprintf(pidfile, sizeof pidfile, "%s/libvirtd.pid", tmpdir);
    char *argv[] = {"/usr/sbin/libvirtd", "--daemon", "--config", path,
                    "--pid-file",         pidfile,    NULL};
    if (run_wait(argv, env) != 0)
        return -1;
    snprintf(uri, cap, "test+unix:///default?socket=%s/run/libvirt-sock", tmpdir);
    for (int i = 0; i < 200; i++) {
        FILE *f = fopen(pidfile, "r");
        if (f) {
            int pid = 0;
            if (fscanf(f, "%d", &pid) == 1)
                libvirtd_pid = pid;
            fclose(f);
        }
        char sock[256];
        snprintf(sock, sizeof sock, "%s/run/libvirt-sock", tmpdir);
        if (libvirtd_pid > 0 && access(sock, F_OK) == 0)
            return 0;
        usleep(10000);
    }
    return -1;
}

static void stop_libvirtd(void)
{
    if (libvirtd_pid > 0)
        kill(libvirtd_pid, SIGTERM);
    for (int i = 0; i < 200 && libvirtd_pid > 0 && kill(libvirtd_pid, 0) == 0; i++)
        usleep(10000);
    char *argv[] = {"rm", "-rf", tmpdir, NULL};
    run_wait(argv, NULL);
}

static int lifecycle_seen[16];

static int lifecycle_cb(virConnectPtr c, virDomainPtr d, int event, int detail, void *opaque)
{
    (void)c;
    (void)d;
    (void)detail;
    (void)opaque;
    if (event >= 0 && event < 16)
        lifecycle_seen[event]++;
    return 0;
}

static void silent(void *ud, virErrorPtr e)
{
    (void)ud;
    (void)e;
}

/* A connection of another thread: synchronous calls, without the loop running. */
struct foreign {
    const char *uri;
    int opened, active;
};

static void foreign_main(void *arg)
{
    struct foreign *f = arg;
    virConnectPtr c = virConnectOpen(f->uri);
    if (!c)
        return;
    f->opened = 1;
    virDomainPtr d = virDomainLookupByName(c, "test");
    if (d) {
        f->active = virDomainIsActive(d);
        virDomainFree(d);
    }
    virConnectClose(c);
}

START_TEST(test_real_libvirtd)
{
    char uri[256];
    if (access("/usr/sbin/libvirtd", X_OK) != 0) {
        fprintf(stderr, "libvirtd not installed: skipping\n");
        return;
    }
    ck_assert_int_eq(start_libvirtd(uri, sizeof uri), 0);
    virSetErrorFunc(NULL, silent);
    uv_loop_t loop;
    uv_loop_init(&loop);
    tnve_virt_loop_init(&loop);
    virConnectPtr conn = virConnectOpen(uri);
    ck_assert_ptr_nonnull(conn);
    ck_assert_int_eq(virConnectSetKeepAlive(conn, 5, 3), 0);
    int id = virConnectDomainEventRegisterAny(conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                              VIR_DOMAIN_EVENT_CALLBACK(lifecycle_cb), NULL, NULL);
    ck_assert_int_ge(id, 0);
    struct tnve_virt_loop_stats st;
    tnve_virt_loop_get_stats(&st);
    ck_assert_uint_ge(st.watches, 1);
    /* virsh in another process; its events reach us through the libuv loop */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execlp("virsh", "virsh", "-c", uri, "suspend test; resume test; destroy test", NULL);
        _exit(127);
    }
    uint64_t start = uv_now(&loop);
    while ((lifecycle_seen[VIR_DOMAIN_EVENT_STOPPED] == 0) && uv_now(&loop) - start < 10000) {
        uv_run(&loop, UV_RUN_ONCE);
        uv_update_time(&loop);
    }
    int status;
    waitpid(pid, &status, 0);
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    ck_assert_int_eq(lifecycle_seen[VIR_DOMAIN_EVENT_SUSPENDED], 1);
    ck_assert_int_eq(lifecycle_seen[VIR_DOMAIN_EVENT_RESUMED], 1);
    ck_assert_int_eq(lifecycle_seen[VIR_DOMAIN_EVENT_STOPPED], 1);
    /* an API call answered through the same loop */
    virDomainPtr d = virDomainLookupByName(conn, "test");
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(virDomainIsActive(d), 0);
    virDomainFree(d);
    /* Another thread's connection gets no watch or timeout on the loop (they would be
     * libuv handles touched from two threads) and works without it. */
    tnve_virt_loop_get_stats(&st);
    struct foreign f = {.uri = uri, .active = -1};
    uv_thread_t th;
    ck_assert_int_eq(uv_thread_create(&th, foreign_main, &f), 0);
    ck_assert_int_eq(uv_thread_join(&th), 0);
    ck_assert_int_eq(f.opened, 1);
    ck_assert_int_eq(f.active, 0);
    struct tnve_virt_loop_stats st2;
    tnve_virt_loop_get_stats(&st2);
    ck_assert_uint_eq(st2.watches, st.watches);
    ck_assert_uint_eq(st2.timeouts, st.timeouts);
    ck_assert_uint_eq(st2.pending, st.pending);
    virConnectDomainEventDeregisterAny(conn, id);
    ck_assert_int_eq(virConnectClose(conn), 0);
    finish(&loop);
    stop_libvirtd();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("tnve-virt-loop");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_pipe_watches);
    tcase_add_test(tc, test_remove_inside_callback);
    tcase_add_test(tc, test_timeouts);
    tcase_add_test(tc, test_real_libvirtd);
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
