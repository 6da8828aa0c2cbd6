/* testutil.h: helpers shared by the unit test programs (header only: each program takes
 * what it uses).  Running a command, a private test PKI made by scripts/gen-pki.sh and
 * removed afterwards, and running a libuv loop until a condition holds.
 */
#ifndef SPLITNVE_TESTUTIL_H
#define SPLITNVE_TESTUTIL_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "sncp-tls.h"

/* Runs argv (argv[0] searched in PATH; argv ends with NULL).  Returns 0 if it exited with
 * status 0, -1 otherwise. */
static inline int testutil_run(const char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Runs a command given as its words; on failure says which and makes the calling function
 * return -1. */
#define TESTUTIL_RUN(...)                                                                          \
    do {                                                                                           \
        const char *const argv_[] = {__VA_ARGS__, NULL};                                           \
        if (testutil_run(argv_) < 0) {                                                             \
            fprintf(stderr, "failed: %s %s %s %s\n", argv_[0], argv_[1], argv_[2],                 \
                    argv_[3] ? argv_[3] : "");                                                     \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

static inline int testutil_rm_entry(const char *path, const struct stat *st, int flag,
                                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes dir and everything below it. */
static inline void testutil_rm_tree(const char *dir)
{
    nftw(dir, testutil_rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Makes the private directory "$TMPDIR/<name>-<pid>-<time>" (/tmp without TMPDIR; mkdir
 * fails if the name exists) in dir and runs gen_pki, the scripts/gen-pki.sh command line
 * that fills it (its OUTDIR argument is dir itself).  Returns 0, or -1 after saying why
 * and removing the directory. */
static inline int testutil_pki_create(char *dir, size_t len, const char *name,
                                      const char *const gen_pki[])
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, len, "%s/%s-%ld-%ld", tmp ? tmp : "/tmp", name, (long)getpid(), (long)time(NULL));
    if (mkdir(dir, 0700) < 0) {
        perror(dir);
        return -1;
    }
    if (testutil_run(gen_pki) < 0) {
        fprintf(stderr, "gen-pki.sh failed\n");
        testutil_rm_tree(dir);
        return -1;
    }
    return 0;
}

/* The TLS context of certificate name in the PKI in dir (name.crt, name.key, ca.crt).
 * Returns it, or NULL with the reason in err. */
static inline struct sncp_tls_ctx *testutil_tls_ctx(const char *dir, enum sncp_tls_role role,
                                                    const char *name, char *err, size_t errlen)
{
    char cert[512], key[512], ca[512];
    snprintf(cert, sizeof cert, "%s/%s.crt", dir, name);
    snprintf(key, sizeof key, "%s/%s.key", dir, name);
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    return sncp_tls_ctx_create(role, cert, key, ca, err, errlen);
}

static inline void testutil_on_tick(uv_timer_t *h)
{
    (void)h;
}

/* Runs loop until cond() or timeout_ms, with a 10 ms tick so that cond() is looked at even
 * when nothing else happens; the tick is closed before returning.  Returns cond(). */
static inline int testutil_run_until(uv_loop_t *loop, int (*cond)(void), uint64_t timeout_ms)
{
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, testutil_on_tick, 10, 10);
    uint64_t deadline = uv_now(loop) + timeout_ms;
    int ok;
    while (!(ok = cond()) && uv_now(loop) < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

/* A condition that never holds: testutil_run_until(loop, testutil_never, ms) runs the loop
 * for ms. */
static inline int testutil_never(void)
{
    return 0;
}

#endif
