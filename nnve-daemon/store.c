/* store.c: persistence of nnve-daemon's state in SQLite (see store.h).
 *
 * Why SQLite: the state is a handful of small relations that must survive kill -9 and power
 * loss, be rewritten a row at a time at tens of thousands of changes per second, and be
 * inspectable by an operator (sqlite3 nnve-daemon.db).  SQLite in WAL mode with
 * synchronous=FULL fsyncs the WAL at each commit: a committed transaction survives a crash
 * of the process or the machine, and an uncommitted one vanishes whole (no torn records).
 * An fsync per change would cap the rate at the disk's fsync rate, so the daemon groups all
 * changes of one event-loop iteration into one transaction and commits it before sending
 * that iteration's responses: nothing acknowledged can be lost, and the cost of an fsync is
 * shared by every request that arrived together.  `sync = normal` in the config trades the
 * power-loss guarantee for speed (WAL without fsync per commit; still safe against kill -9).
 * The commit's sync runs on the loop's thread, which waits for it: what arrives meanwhile
 * waits in the sockets and forms the next group.  Syncing on a thread of its own instead
 * (the loop applying and writing the next group meanwhile, answers leaving once a sync begun
 * after their commit returned; synchronous=NORMAL plus an fdatasync of the log) was built and
 * measured at 5,000 requests/s on 2 CPUs shared with the load generator: the p50 went up by
 * 0.03-0.20 ms (the hand-off to that thread and back, twice a request), the p99 was no better
 * (median 0.83 ms against 0.67 over 11 alternating runs each) and the throughput the same.  A
 * request waits for the sync in progress when it came and for its own either way; only the
 * loop's work on the next group overlaps, and on a fast disk that work is small.
 * WAL checkpoints (copying the log into the database file, with its own fsync) mostly run off
 * the event loop: nnve_store_checkpoint() does them from a worker thread on a second, long-lived
 * connection (PASSIVE: never blocks the daemon's writes).  That connection reads the database
 * once when opened: a connection that has never read does not know the WAL exists, and a
 * checkpoint on it does nothing.  Under sustained churn the worker never catches the writer
 * (the log is only restarted when a checkpoint has copied every frame before the next write),
 * so the main connection also checkpoints, PASSIVE, right after a commit: with no transaction of
 * its own open that one completes, and the next write transaction restarts the log.  That
 * checkpoint blocks the loop (the copy, a sync of the log, of the database, and the restarted
 * log's header sync after it): every request that arrives meanwhile waits for it, so it runs
 * seldom and small: at the first commit after a worker checkpoint ended (only the frames
 * committed while the worker ran are left to copy) once the log holds WAL_RESTART_FRAMES
 * frames, and after any commit only if the worker has fallen WAL_CHECKPOINT_FRAMES behind.
 * A commit that leaves WAL_WORKER_FRAMES frames more than the last worker pass left asks for
 * the worker at once (nnve_store_checkpoint_wanted()): not at every commit of a long log,
 * since each pass syncs the log and the database while the loop's commits sync the log.
 * WAL_WORKER_FRAMES trades the worker's passes (each syncs the log and the database, and
 * competes for the disk and a CPU with the loop's commits) against the tail the loop copies:
 * at 5,000 toggles/s with sync=full, passes every 600 frames put the request p99 at about
 * 1.2 ms, every 2048 frames at about 0.6-0.8 ms (bench/nnve.sh); the worker runs at
 * SCHED_IDLE where the daemon may (server.c).
 * Where requests pause, the worker catches up on its own and the next write restarts the log
 * for free.
 * journal_size_limit is above the restart size: the log file is overwritten in place rather
 * than cut and regrown at each restart (a truncate on the loop, and syncs of a growing file
 * that must also write its size).
 *
 * A failed write poisons the open transaction: SQLite may have rolled it back already, and
 * the writes after it must not run in autocommit mode.  They are refused and the commit rolls
 * back (the caller then restores its memory from what is on disk, see state.c).
 *
 * Schema (version 3): hypervisor(identity, port); vap(domain, vn_key, vn_id, vn_name, tag);
 * vn_connection(identity, vn_key, vn_id, vn_name, implicit); tsi(tsi, identity, vn_key, state,
 * migrating, addrs); migrating holds flags (state.c: migrating, handover).  Version 1 lacked
 * vn_connection.implicit: opening such a store adds the column (its connections count as explicit,
 * which is what version 1 did with them).  vn_key is "id:5000" or "name:blue"; tsi is the 22-byte
 * TSI ID; addrs packs struct sncp_addr records (type, mac[6], ip[16]: 23 bytes each).
 * tag_hold(domain, vn_key, until_ms): a VAP nobody uses whose tag is in hold-down until
 * until_ms (wall clock, ms since the epoch, so the deadline survives a restart); its vap row
 * stays until the hold-down ends.  A database of an older build simply gains the table.
 * pair_tag(domain, tag, vn_key, vn_id, vn_name, mine, peer) (version 3): the tag table of a
 * domain shared with a ToR pair peer (pairtab.h); a version 2 store gains it, empty.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <sqlite3.h>
#include <uv.h>

#include "snv-log.h"

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_HV_PUT,
    ST_HV_DEL,
    ST_VAP_PUT,
    ST_VAP_DEL,
    ST_VC_PUT,
    ST_VC_DEL,
    ST_TSI_PUT,
    ST_TSI_DEL,
    ST_HOLD_PUT,
    ST_HOLD_DEL,
    ST_PAIR_PUT,
    ST_PAIR_DEL,
    ST_RESTART_MARK,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_HV_PUT] = "INSERT OR REPLACE INTO hypervisor(identity, port) VALUES (?1, ?2)",
    [ST_HV_DEL] = "DELETE FROM hypervisor WHERE identity = ?1",
    [ST_VAP_PUT] = "INSERT OR REPLACE INTO vap(domain, vn_key, vn_id, vn_name, tag) "
                   "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_VAP_DEL] = "DELETE FROM vap WHERE domain = ?1 AND vn_key = ?2",
    [ST_VC_PUT] = "INSERT OR REPLACE INTO vn_connection(identity, vn_key, vn_id, vn_name, "
                  "implicit) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_VC_DEL] = "DELETE FROM vn_connection WHERE identity = ?1 AND vn_key = ?2",
    [ST_TSI_PUT] = "INSERT OR REPLACE INTO tsi(tsi, identity, vn_key, state, migrating, addrs) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_TSI_DEL] = "DELETE FROM tsi WHERE tsi = ?1 AND identity = ?2",
    [ST_HOLD_PUT] = "INSERT OR REPLACE INTO tag_hold(domain, vn_key, until_ms) VALUES (?1, ?2, ?3)",
    [ST_HOLD_DEL] = "DELETE FROM tag_hold WHERE domain = ?1 AND vn_key = ?2",
    [ST_PAIR_PUT] = "INSERT OR REPLACE INTO pair_tag(domain, tag, vn_key, vn_id, vn_name, mine, "
                    "peer) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_PAIR_DEL] = "DELETE FROM pair_tag WHERE domain = ?1 AND tag = ?2",
    [ST_RESTART_MARK] = "UPDATE meta SET value = CAST(value AS INTEGER) + 1 "
                        "WHERE key = 'idle_log_restarts'",
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', '3');"
    "INSERT OR IGNORE INTO meta(key, value) VALUES ('idle_log_restarts', '0');"
    "CREATE TABLE IF NOT EXISTS hypervisor(identity TEXT PRIMARY KEY, port TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS vap(domain TEXT NOT NULL, vn_key TEXT NOT NULL, vn_id INTEGER,"
    " vn_name TEXT NOT NULL, tag INTEGER NOT NULL, PRIMARY KEY(domain, vn_key));"
    "CREATE TABLE IF NOT EXISTS vn_connection(identity TEXT NOT NULL, vn_key TEXT NOT NULL,"
    " vn_id INTEGER, vn_name TEXT NOT NULL, implicit INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY(identity, vn_key));"
    "CREATE TABLE IF NOT EXISTS tsi(tsi BLOB NOT NULL, identity TEXT NOT NULL,"
    " vn_key TEXT NOT NULL, state INTEGER NOT NULL, migrating INTEGER NOT NULL,"
    " addrs BLOB, PRIMARY KEY(tsi, identity)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS tag_hold(domain TEXT NOT NULL, vn_key TEXT NOT NULL,"
    " until_ms INTEGER NOT NULL, PRIMARY KEY(domain, vn_key));"
    "CREATE TABLE IF NOT EXISTS pair_tag(domain TEXT NOT NULL, tag INTEGER NOT NULL,"
    " vn_key TEXT NOT NULL, vn_id INTEGER, vn_name TEXT NOT NULL, mine INTEGER NOT NULL,"
    " peer INTEGER NOT NULL, PRIMARY KEY(domain, tag));";

struct nnve_store {
    sqlite3 *db;
    sqlite3 *ckpt_db; /* the checkpoint worker's connection */
    sqlite3_stmt *st[ST_COUNT];
    int in_txn;
    int txn_failed;  /* a write of the open transaction failed */
    int ckpt_rc;     /* of the last worker checkpoint (read after it is done) */
    int ckpt_wanted; /* the log has grown enough for the worker to checkpoint now */
    int ckpt_tail;   /* a worker checkpoint ended and no commit came since */
    int wal_frames;  /* frames in the log after the last commit */
    int ckpt_base;   /* frames in the log when the last worker checkpoint ended */
    int ckpt_whole;  /* the last worker checkpoint copied the whole log */
    int db_fd;       /* the database file, for the worker's sync (-1: none) */
    int wal_fd;      /* the log's file, held open as db_fd is (wal_preallocate()) */
    char *path;
    struct nnve_store_stats stats;
    struct snv_ratelimit rl;
};

enum {
    ADDR_REC = 23,
    WAL_WORKER_FRAMES = 2048,          /* ~8 MiB of pages: the worker is asked to checkpoint */
    WAL_RESTART_FRAMES = 8192,         /* ~32 MiB: the loop copies the tail after a worker pass */
    WAL_CHECKPOINT_FRAMES = 32768,     /* ~128 MiB: the loop checkpoints after any commit */
    WAL_SIZE_LIMIT = 40 * 1024 * 1024, /* journal_size_limit: restarted log cut to this */
};

static int wal_hook(void *aux, sqlite3 *db, const char *name, int frames);

/* Writes the log's file out to the size the worker keeps the log under (WAL_WORKER_FRAMES
 * frames), once, when the store opens: a commit that appends to the file also allocates its
 * blocks and changes its size, which the commit's sync then writes as well (on this
 * project's test machine, ext4: a lone sync 0.13 ms longer at the median, a quarter more).
 * A log restarted later is overwritten in place (journal_size_limit is above this size), so
 * only the first pass over a new file paid that.  SQLite reads a log up to its first frame
 * whose salt differs from the header's: zeros past the frames are never taken for frames,
 * and nothing below the file's current end is touched (a log left by a crash keeps its
 * frames).  Skipped unless the file system has four times the room to spare; a failed
 * write gives the room back.  The descriptor stays open until the store closes (as db_fd:
 * closing one would drop the process's locks on the file). */
static void wal_preallocate(struct nnve_store *s)
{
    char wal[4200];
    int page = 4096;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) > 0)
        page = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    snprintf(wal, sizeof wal, "%s-wal", s->path);
    s->wal_fd = open(wal, O_WRONLY | O_CLOEXEC);
    struct stat sb;
    struct statvfs fs;
    if (s->wal_fd < 0 || fstat(s->wal_fd, &sb) || fstatvfs(s->wal_fd, &fs))
        return;
    off_t want = 32 + (off_t)WAL_WORKER_FRAMES * (24 + page), off = sb.st_size;
    if (off >= want || (uint64_t)fs.f_bavail * fs.f_frsize < 4 * (uint64_t)want)
        return;
    static const char zeros[65536];
    int e = 0;
    while (off < want && !e) {
        size_t n = want - off < (off_t)sizeof zeros ? (size_t)(want - off) : sizeof zeros;
        ssize_t w = pwrite(s->wal_fd, zeros, n, off);
        if (w > 0)
            off += w;
        else
            e = w < 0 ? errno : ENOSPC;
    }
    if (!e && fdatasync(s->wal_fd))
        e = errno;
    if (e) {
        if (ftruncate(s->wal_fd, sb.st_size)) {
            /* the zeros stay: never read as frames, only room taken */
        }
        snv_log(SNV_LOG_INFO, "store", "log file not preallocated path=%s: %s", wal, strerror(e));
    }
}

/* Brings a version 1 or 2 store to version 3 (see the top): the schema text has already
 * created what is missing (pair_tag); version 1 also lacks vn_connection.implicit.  Returns
 * SQLITE_OK or the error (message in *emsg). */
static int schema_upgrade(sqlite3 *db, char **emsg)
{
    sqlite3_stmt *probe;
    if (sqlite3_prepare_v2(db, "SELECT implicit FROM vn_connection LIMIT 0", -1, &probe, NULL) !=
        SQLITE_OK) {
        SNV_INFO("store", "upgrading the stored state to schema 2 (implicit VN connections)");
        int rc = sqlite3_exec(db,
                              "BEGIN; ALTER TABLE vn_connection ADD COLUMN implicit INTEGER NOT "
                              "NULL DEFAULT 0; UPDATE meta SET value = '2' WHERE key = 'schema'; "
                              "COMMIT;",
                              NULL, NULL, emsg);
        if (rc != SQLITE_OK)
            return rc;
    } else {
        sqlite3_finalize(probe);
    }
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM meta WHERE key = 'schema' AND value = '2'", -1,
                           &probe, NULL) != SQLITE_OK)
        return SQLITE_ERROR;
    int old = sqlite3_step(probe) == SQLITE_ROW;
    sqlite3_finalize(probe);
    if (!old)
        return SQLITE_OK;
    SNV_INFO("store", "upgrading the stored state to schema 3 (ToR pair tag table)");
    return sqlite3_exec(db, "UPDATE meta SET value = '3' WHERE key = 'schema';", NULL, NULL, emsg);
}

static void vn_key(const struct nnve_vn *vn, char *buf, size_t cap)
{
    if (vn->has_id)
        snprintf(buf, cap, "id:%u", (unsigned)vn->id);
    else
        snprintf(buf, cap, "name:%s", vn->name);
}

int nnve_store_open(const char *dir, enum nnve_sync_mode sync, struct nnve_store **out, char *err,
                    size_t errlen)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/nnve-daemon.db", dir) >= (int)sizeof path) {
        snprintf(err, errlen, "state_dir too long");
        return -ENAMETOOLONG;
    }
    struct nnve_store *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->rl = (struct snv_ratelimit)SNV_RATELIMIT_INIT(1, 5);
    s->db_fd = s->wal_fd = -1;
    s->path = strdup(path);
    if (!s->path) {
        free(s);
        return -ENOMEM;
    }
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
        nnve_store_close(s);
        return SNCP_E_INTERNAL;
    }
    char *emsg = NULL;
    char pragmas[256];
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA busy_timeout=1000; "
             "PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit=%d;",
             sync == NNVE_SYNC_FULL ? "FULL" : "NORMAL", (int)WAL_SIZE_LIMIT);
    if (sqlite3_exec(s->db, pragmas, NULL, NULL, &emsg) != SQLITE_OK ||
        sqlite3_exec(s->db, schema, NULL, NULL, &emsg) != SQLITE_OK ||
        schema_upgrade(s->db, &emsg) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, emsg ? emsg : sqlite3_errmsg(s->db));
        sqlite3_free(emsg);
        nnve_store_close(s);
        return SNCP_E_INTERNAL;
    }
    sqlite3_wal_hook(s->db, wal_hook, s);
    /* The worker's connection reads once so that it has the WAL open (see above); it never
     * waits for a lock (busy_timeout 0): a checkpoint that would is simply partial. */
    if (sqlite3_open_v2(path, &s->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(s->ckpt_db, "PRAGMA busy_timeout=0; SELECT count(*) FROM meta;", NULL, NULL,
                     &emsg) != SQLITE_OK) {
        snprintf(err, errlen, "%s: checkpoint connection: %s", path,
                 emsg         ? emsg
                 : s->ckpt_db ? sqlite3_errmsg(s->ckpt_db)
                              : "cannot open");
        sqlite3_free(emsg);
        nnve_store_close(s);
        return SNCP_E_INTERNAL;
    }
    /* Closed only after both connections (closing a descriptor of the file drops the
     * process's POSIX locks on it, SQLite's included). */
    s->db_fd = open(path, O_RDONLY | O_CLOEXEC);
    wal_preallocate(s);
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
                               NULL) != SQLITE_OK) {
            snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(s->db));
            nnve_store_close(s);
            return SNCP_E_INTERNAL;
        }
    }
    *out = s;
    return 0;
}

void nnve_store_close(struct nnve_store *s)
{
    if (!s)
        return;
    if (s->in_txn)
        nnve_store_commit(s);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close(s->ckpt_db);
    sqlite3_close(s->db);
    if (s->db_fd >= 0)
        close(s->db_fd);
    if (s->wal_fd >= 0)
        close(s->wal_fd);
    free(s->path);
    free(s);
}

static int fail(struct nnve_store *s, const char *what)
{
    s->stats.errors++;
    snv_log_rl(&s->rl, SNV_LOG_ERR, "store", "%s failed: %s", what, sqlite3_errmsg(s->db));
    return SNCP_E_INTERNAL;
}

static int step(struct nnve_store *s, enum stmt_id id)
{
    sqlite3_stmt *st = s->st[id];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        if (s->in_txn)
            s->txn_failed = 1;
        return fail(s, stmt_sql[id]);
    }
    return 0;
}

/* Opens the group transaction on the first write; refuses writes once one has failed. */
static int begin(struct nnve_store *s)
{
    if (s->in_txn) {
        if (!s->txn_failed)
            return 0;
        s->stats.errors++;
        return SNCP_E_INTERNAL;
    }
    int r = step(s, ST_BEGIN);
    if (!r) {
        s->in_txn = 1;
        s->txn_failed = 0;
    }
    return r;
}

static int write_stmt(struct nnve_store *s, enum stmt_id id)
{
    s->stats.writes++;
    return step(s, id);
}

void nnve_store_rollback(struct nnve_store *s)
{
    if (!s || !s->in_txn)
        return;
    s->in_txn = 0;
    s->txn_failed = 0;
    /* SQLite may have rolled back on its own already (e.g. SQLITE_FULL). */
    if (!sqlite3_get_autocommit(s->db))
        step(s, ST_ROLLBACK);
}

int nnve_store_clear(struct nnve_store *s)
{
    if (!s)
        return 0;
    if (begin(s))
        return SNCP_E_INTERNAL;
    char *emsg = NULL;
    if (sqlite3_exec(s->db,
                     "DELETE FROM tsi; DELETE FROM vn_connection; DELETE FROM tag_hold; "
                     "DELETE FROM vap; DELETE FROM hypervisor;",
                     NULL, NULL, &emsg) != SQLITE_OK) {
        s->txn_failed = 1;
        s->stats.errors++;
        snv_log_rl(&s->rl, SNV_LOG_ERR, "store", "clearing the tables failed: %s",
                   emsg ? emsg : sqlite3_errmsg(s->db));
        sqlite3_free(emsg);
        return SNCP_E_INTERNAL;
    }
    return 0;
}

int nnve_store_dirty(const struct nnve_store *s)
{
    return s && s->in_txn;
}

int nnve_store_commit(struct nnve_store *s)
{
    if (!s || !s->in_txn)
        return 0;
    if (s->txn_failed || sqlite3_get_autocommit(s->db)) {
        if (!s->txn_failed)
            fail(s, "transaction (rolled back by SQLite)");
        nnve_store_rollback(s);
        return SNCP_E_INTERNAL;
    }
    uint64_t t0 = uv_hrtime(); /* the clock of the server's request histogram */
    int r = step(s, ST_COMMIT);
    snv_hist_add_us(&s->stats.commit_us, (uv_hrtime() - t0) / 1000);
    if (r) {
        nnve_store_rollback(s);
        return SNCP_E_INTERNAL;
    }
    s->in_txn = 0;
    s->stats.commits++;
    return 0;
}

const struct nnve_store_stats *nnve_store_stats(const struct nnve_store *s)
{
    return &s->stats;
}

void nnve_store_reset_latency(struct nnve_store *s)
{
    snv_hist_init(&s->stats.commit_us);
}

int nnve_store_hv_put(struct nnve_store *s, const char *identity, const char *port)
{
    if (!s)
        return 0;
    if (begin(s))
        return SNCP_E_INTERNAL;
    sqlite3_bind_text(s->st[ST_HV_PUT], 1, identity, -1, SQLITE_STATIC);
    sqlite3_bind_text(s->st[ST_HV_PUT], 2, port, -1, SQLITE_STATIC);
    return write_stmt(s, ST_HV_PUT);
}

int nnve_store_hv_del(struct nnve_store *s, const char *identity)
{
    if (!s)
        return 0;
    if (begin(s))
        return SNCP_E_INTERNAL;
    sqlite3_bind_text(s->st[ST_HV_DEL], 1, identity, -1, SQLITE_STATIC);
    return write_stmt(s, ST_HV_DEL);
}

static void bind_vn(sqlite3_stmt *st, int col_key, char *key, size_t keycap,
                    const struct nnve_vn *vn, int col_id)
{
    vn_key(vn, key, keycap);
    sqlite3_bind_text(st, col_key, key, -1, SQLITE_STATIC);
    if (col_id) {
        if (vn->has_id)
            sqlite3_bind_int64(st, col_id, vn->id);
        else
            sqlite3_bind_null(st, col_id);
        sqlite3_bind_text(st, col_id + 1, vn->name, -1, SQLITE_STATIC);
    }
}

/* One row keyed by (owner, VN): a domain's VAP or a hypervisor's VN connection.  Puts bind
 * the VN's ID and name (and, when tag >= 0, the VAP's tag or the connection's implicit
 * mark); deletes bind the key alone. */
static int write_vn_row(struct nnve_store *s, enum stmt_id id, const char *owner,
                        const struct nnve_vn *vn, int put, int tag)
{
    if (!s)
        return 0;
    if (begin(s))
        return SNCP_E_INTERNAL;
    char key[96];
    sqlite3_stmt *st = s->st[id];
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    bind_vn(st, 2, key, sizeof key, vn, put ? 3 : 0);
    if (tag >= 0)
        sqlite3_bind_int(st, 5, tag);
    return write_stmt(s, id);
}

int nnve_store_vap_put(struct nnve_store *s, const char *domain, const struct nnve_vn *vn,
                       uint16_t tag)
{
    return write_vn_row(s, ST_VAP_PUT, domain, vn, 1, tag);
}

int nnve_store_vap_del(struct nnve_store *s, const char *domain, const struct nnve_vn *vn)
{
    return write_vn_row(s, ST_VAP_DEL, domain, vn, 0, -1);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int nnve_store_vap_hold_put(struct nnve_store *s, const char *domain, const struct nnve_vn *vn,
                            uint32_t hold_ms)
{
    if (!s)
        return 0;
    if (begin(s))
        return SNCP_E_INTERNAL;
    char key[96];
    sqlite3_stmt *st = s->st[ST_HOLD_PUT];
    sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
    bind_vn(st, 2, key, sizeof key, vn, 0);
    sqlite3_bind_int64(st, 3, wall_ms() + hold_ms);
    return write_stmt(s, ST_HOLD_PUT);
}

int nnve_store_vap_hold_del(struct nnve_store *s, const char *domain, const struct nnve_vn *vn)
{
    return write_vn_row(s, ST_HOLD_DEL, domain, vn, 0, -1);
}

int nnve_store_vn_connection_put(struct nnve_store *s, const char *identity,
                                 const struct nnve_vn *vn, int implicit)
{
    return write_vn_row(s, ST_VC_PUT, identity, vn, 1, !!implicit);
}

int nnve_store_vn_connection_del(struct nnve_store *s, const char *identity,
                                 const struct nnve_vn *vn)
{
    return write_vn_row(s, ST_VC_DEL, identity, vn, 0, -1);
}

static void tsi_blob(const struct sncp_tsi_id *tsi, uint8_t out[22])
{
    memcpy(out, tsi->uuid, 16);
    memcpy(out + 16, tsi->mac, 6);
}

int nnve_store_tsi_put(struct nnve_store *s, const char *identity, const struct nnve_vn *vn,
                       const struct sncp_tsi_id *tsi, uint8_t state, uint8_t migrating,
                       const struct sncp_addr *addrs, unsigned n_addrs)
{
    if (!s)
        return 0;
    if (begin(s))
        return SNCP_E_INTERNAL;
    uint8_t id[22], packed[SNCP_MAX_ADDRS * ADDR_REC];
    char key[96];
    if (n_addrs > SNCP_MAX_ADDRS)
        n_addrs = SNCP_MAX_ADDRS;
    for (unsigned i = 0; i < n_addrs; i++) {
        uint8_t *p = packed + i * ADDR_REC;
        p[0] = addrs[i].type;
        memcpy(p + 1, addrs[i].mac, 6);
        memcpy(p + 7, addrs[i].ip, 16);
    }
    tsi_blob(tsi, id);
    sqlite3_stmt *st = s->st[ST_TSI_PUT];
    sqlite3_bind_blob(st, 1, id, sizeof id, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, identity, -1, SQLITE_STATIC);
    bind_vn(st, 3, key, sizeof key, vn, 0);
    sqlite3_bind_int(st, 4, state);
    sqlite3_bind_int(st, 5, migrating);
    sqlite3_bind_blob(st, 6, packed, (int)(n_addrs * ADDR_REC), SQLITE_STATIC);
    return write_stmt(s, ST_TSI_PUT);
}

int nnve_store_tsi_del(struct nnve_store *s, const char *identity, const struct sncp_tsi_id *tsi)
{
    if (!s)
        return 0;
    if (begin(s))
        return SNCP_E_INTERNAL;
    uint8_t id[22];
    tsi_blob(tsi, id);
    sqlite3_stmt *st = s->st[ST_TSI_DEL];
    sqlite3_bind_blob(st, 1, id, sizeof id, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, identity, -1, SQLITE_STATIC);
    return write_stmt(s, ST_TSI_DEL);
}

static const char *col_text(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? (const char *)t : "";
}

static void col_vn(sqlite3_stmt *st, int col_id, struct nnve_vn *vn)
{
    memset(vn, 0, sizeof *vn);
    if (sqlite3_column_type(st, col_id) != SQLITE_NULL) {
        vn->has_id = 1;
        vn->id = (uint32_t)sqlite3_column_int64(st, col_id);
    }
    snprintf(vn->name, sizeof vn->name, "%s", col_text(st, col_id + 1));
}

int nnve_store_load(struct nnve_store *s, const struct nnve_store_loader *l, void *aux)
{
    static const char *const queries[] = {
        "SELECT identity, port FROM hypervisor ORDER BY identity",
        "SELECT domain, vn_id, vn_name, tag FROM vap ORDER BY domain, vn_key",
        "SELECT v.domain, v.vn_id, v.vn_name, h.until_ms FROM tag_hold h JOIN vap v ON "
        "v.domain = h.domain AND v.vn_key = h.vn_key ORDER BY v.domain, v.vn_key",
        "SELECT identity, vn_id, vn_name, implicit FROM vn_connection "
        "ORDER BY identity, vn_key",
        "SELECT t.identity, c.vn_id, c.vn_name, t.tsi, t.state, t.migrating, t.addrs "
        "FROM tsi t JOIN vn_connection c ON c.identity = t.identity AND c.vn_key = t.vn_key "
        "ORDER BY t.identity, t.tsi",
    };
    int ret = 0;
    int64_t now_wall = wall_ms();
    for (int q = 0; q < 5 && !ret; q++) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(s->db, queries[q], -1, &st, NULL) != SQLITE_OK)
            return fail(s, queries[q]);
        int rc;
        while (!ret && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            struct nnve_vn vn;
            if (q == 0) {
                ret = l->hv(aux, col_text(st, 0), col_text(st, 1));
            } else if (q == 1) {
                col_vn(st, 1, &vn);
                ret = l->vap(aux, col_text(st, 0), &vn, (uint16_t)sqlite3_column_int(st, 3));
            } else if (q == 2) {
                int64_t left = sqlite3_column_int64(st, 3) - now_wall;
                col_vn(st, 1, &vn);
                if (l->vap_hold)
                    ret = l->vap_hold(aux, col_text(st, 0), &vn,
                                      left <= 0           ? 0
                                      : left > UINT32_MAX ? UINT32_MAX
                                                          : (uint32_t)left);
            } else if (q == 3) {
                col_vn(st, 1, &vn);
                ret = l->vn_connection(aux, col_text(st, 0), &vn, sqlite3_column_int(st, 3));
            } else {
                col_vn(st, 1, &vn);
                struct sncp_tsi_id id;
                struct sncp_addr addrs[SNCP_MAX_ADDRS];
                if (sqlite3_column_bytes(st, 3) != 22)
                    continue;
                const uint8_t *b = sqlite3_column_blob(st, 3);
                memcpy(id.uuid, b, 16);
                memcpy(id.mac, b + 16, 6);
                int alen = sqlite3_column_bytes(st, 6);
                const uint8_t *a = sqlite3_column_blob(st, 6);
                unsigned n = a ? (unsigned)alen / ADDR_REC : 0;
                if (n > SNCP_MAX_ADDRS)
                    n = SNCP_MAX_ADDRS;
                for (unsigned i = 0; i < n; i++) {
                    const uint8_t *p = a + i * ADDR_REC;
                    addrs[i].type = p[0];
                    memcpy(addrs[i].mac, p + 1, 6);
                    memcpy(addrs[i].ip, p + 7, 16);
                }
                ret = l->tsi(aux, col_text(st, 0), &vn, &id, (uint8_t)sqlite3_column_int(st, 4),
                             (uint8_t)sqlite3_column_int(st, 5), addrs, n);
            }
        }
        if (!ret && rc != SQLITE_DONE)
            ret = fail(s, queries[q]);
        sqlite3_finalize(st);
    }
    return ret;
}

int nnve_store_pair_put(struct nnve_store *s, const char *domain, uint16_t tag,
                        const struct nnve_vn *vn, int mine, int peer)
{
    if (!s)
        return 0;
    if (begin(s))
        return SNCP_E_INTERNAL;
    char key[96];
    sqlite3_stmt *st = s->st[ST_PAIR_PUT];
    sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, tag);
    bind_vn(st, 3, key, sizeof key, vn, 4);
    sqlite3_bind_int(st, 6, !!mine);
    sqlite3_bind_int(st, 7, !!peer);
    return write_stmt(s, ST_PAIR_PUT);
}

int nnve_store_pair_del(struct nnve_store *s, const char *domain, uint16_t tag)
{
    if (!s)
        return 0;
    if (begin(s))
        return SNCP_E_INTERNAL;
    sqlite3_bind_text(s->st[ST_PAIR_DEL], 1, domain, -1, SQLITE_STATIC);
    sqlite3_bind_int(s->st[ST_PAIR_DEL], 2, tag);
    return write_stmt(s, ST_PAIR_DEL);
}

int nnve_store_pair_load(struct nnve_store *s, const char *domain,
                         int (*fn)(void *aux, uint16_t tag, const struct nnve_vn *vn, int mine,
                                   int peer),
                         void *aux)
{
    static const char q[] =
        "SELECT tag, vn_id, vn_name, mine, peer FROM pair_tag WHERE domain = ?1 ORDER BY tag";
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, q, -1, &st, NULL) != SQLITE_OK)
        return fail(s, q);
    sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
    int rc, ret = 0;
    while (!ret && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct nnve_vn vn;
        col_vn(st, 1, &vn);
        int tag = sqlite3_column_int(st, 0);
        if (tag < SNCP_MIN_VID || tag > SNCP_MAX_VID)
            continue;
        ret = fn(aux, (uint16_t)tag, &vn, sqlite3_column_int(st, 3), sqlite3_column_int(st, 4));
    }
    if (!ret && rc != SQLITE_DONE)
        ret = fail(s, q);
    sqlite3_finalize(st);
    return ret;
}

/* After each commit on the main connection: checkpoint there, so that the next write
 * transaction restarts the log, at the first commit after a worker checkpoint once the log
 * holds WAL_RESTART_FRAMES (only the frames committed while the worker ran are left to copy),
 * or after any commit once the worker has fallen WAL_CHECKPOINT_FRAMES behind. */
static int wal_hook(void *aux, sqlite3 *db, const char *name, int frames)
{
    struct nnve_store *s = aux;
    int tail = s->ckpt_tail;
    s->ckpt_tail = 0;
    s->wal_frames = frames;
    if (frames < s->ckpt_base) /* the log restarted */
        s->ckpt_base = 0;
    if (frames - s->ckpt_base >= WAL_WORKER_FRAMES)
        s->ckpt_wanted = 1;
    if (frames < WAL_CHECKPOINT_FRAMES && !(tail && frames >= WAL_RESTART_FRAMES))
        return SQLITE_OK;
    int rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    if (rc == SQLITE_OK) {
        s->stats.checkpoints++;
    } else if (rc != SQLITE_BUSY) { /* busy: the worker is checkpointing */
        s->stats.checkpoint_failures++;
        snv_log_rl(&s->rl, SNV_LOG_ERR, "store", "checkpoint failed: %s", sqlite3_errmsg(db));
    }
    return SQLITE_OK;
}

int nnve_store_checkpoint(struct nnve_store *s)
{
    int log = -1, copied = 0;
    int rc = sqlite3_wal_checkpoint_v2(s->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
    /* SQLITE_BUSY: another checkpoint runs, or a lock was held: partial, not a failure. */
    s->ckpt_rc = rc == SQLITE_OK || rc == SQLITE_BUSY ? 0 : rc;
    s->ckpt_whole = rc == SQLITE_OK && log > 0 && copied == log;
    /* SQLite syncs the database only after a checkpoint that reached the end of the log,
     * which under churn leaves it to the loop's: that sync would write back every page the
     * worker copied since.  Here, off the loop, they go now (the loop's sync then only
     * writes the tail).  Nothing depends on it for durability: the log keeps the frames.
     * Writing them back in 64 KiB chunks without this flush (tried) shortened the loop's
     * worst commits at 20,000 TSIs but left the flush to the loop's checkpoint, whose
     * commits then stalled for 30-68 ms at 100,000 TSIs (bench/nnve.sh). */
    if (s->ckpt_rc == 0 && copied > 0 && s->db_fd >= 0)
        fdatasync(s->db_fd);
    return s->ckpt_rc ? SNCP_E_INTERNAL : 0;
}

int nnve_store_checkpoint_wanted(struct nnve_store *s)
{
    int wanted = s && s->ckpt_wanted;
    if (s)
        s->ckpt_wanted = 0;
    return wanted;
}

void nnve_store_checkpoint_done(struct nnve_store *s)
{
    s->ckpt_tail = 1;
    s->ckpt_base = s->wal_frames;
    if (s->ckpt_rc) {
        s->stats.checkpoint_failures++;
        snv_log_rl(&s->rl, SNV_LOG_ERR, "store", "checkpoint failed: %s",
                   sqlite3_errstr(s->ckpt_rc));
    } else {
        s->stats.checkpoints++;
    }
}

static uint64_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) ? 0 : (uint64_t)sb.st_size;
}

void nnve_store_sizes(const struct nnve_store *s, uint64_t *db_bytes, uint64_t *wal_bytes)
{
    char wal[4200];
    *db_bytes = file_size(s->path);
    snprintf(wal, sizeof wal, "%s-wal", s->path);
    *wal_bytes = file_size(wal);
}

/* A write transaction that begins after a checkpoint copied the whole log restarts the log:
 * SQLite writes the log's header again and, with synchronous=FULL, syncs it before the
 * transaction's frames (so that a crash cannot pair the old header with new frames), then
 * syncs those: two syncs.  After an idle spell's checkpoint, that pair would fall on the
 * first request that comes, a lone one (a VM started on a quiet switch): its answer would
 * wait for both.  Here, right after such a checkpoint, the loop pays them while nothing
 * waits: one row of meta (a counter, idle_log_restarts) is rewritten in a transaction of
 * its own, which restarts the log; the next request's commit then appends to it and syncs
 * once.  Not a group commit: it leaves the commit counters and histogram alone. */
int nnve_store_restart_log(struct nnve_store *s)
{
    if (!s->ckpt_whole || s->in_txn || s->txn_failed)
        return 0;
    s->ckpt_whole = 0;
    if (step(s, ST_RESTART_MARK))
        return SNCP_E_INTERNAL;
    s->stats.idle_log_restarts++;
    return 0;
}
