/* store.h: nnve-daemon's persistent state (SQLite).
 *
 * What survives a restart: each hypervisor's port, each VAP's tag (per domain and VN), each
 * hypervisor's VN connections (explicit or implicit) and its TSI instances (state, addresses,
 * migrating flag). Writes join one open transaction; nnve_store_commit() makes them durable
 * together (group commit: the daemon commits once per event-loop iteration, before that iteration's
 * responses are sent, so an acknowledged change is on disk).
 */
#ifndef NNVE_STORE_H
#define NNVE_STORE_H 1

#include <stdint.h>

#include "backend-provider.h"
#include "config.h"
#include "sncp-msg.h"
#include "snv-hist.h"

struct nnve_store;

/* Called by nnve_store_load() for each record, in this order: hypervisors, VAPs, tag
 * hold-downs (optional), VN connections, TSIs.  A non-zero return stops the load and is
 * returned. */
struct nnve_store_loader {
    int (*hv)(void *aux, const char *identity, const char *port);
    int (*vap)(void *aux, const char *domain, const struct nnve_vn *vn, uint16_t tag);
    int (*vn_connection)(void *aux, const char *identity, const struct nnve_vn *vn, int implicit);
    int (*tsi)(void *aux, const char *identity, const struct nnve_vn *vn,
               const struct sncp_tsi_id *tsi, uint8_t state, uint8_t migrating,
               const struct sncp_addr *addrs, unsigned n_addrs);
    /* A loaded VAP's tag is in hold-down for hold_ms more (0: it ended while stopped). */
    int (*vap_hold)(void *aux, const char *domain, const struct nnve_vn *vn, uint32_t hold_ms);
};

/* Opens (creating if needed) DIR/nnve-daemon.db.  Returns 0 and *out, or < 0 with the
 * reason in err.  Caller destroys. */
int nnve_store_open(const char *dir, enum nnve_sync_mode sync, struct nnve_store **out, char *err,
                    size_t errlen);
/* Commits what is pending and closes.  Accepts NULL. */
void nnve_store_close(struct nnve_store *s);

int nnve_store_load(struct nnve_store *s, const struct nnve_store_loader *l, void *aux);

/* Record changes; each joins the open transaction (opened on demand).  Return 0 or
 * SNCP_E_INTERNAL (logged). */
int nnve_store_hv_put(struct nnve_store *s, const char *identity, const char *port);
int nnve_store_hv_del(struct nnve_store *s, const char *identity);
int nnve_store_vap_put(struct nnve_store *s, const char *domain, const struct nnve_vn *vn,
                       uint16_t tag);
int nnve_store_vap_del(struct nnve_store *s, const char *domain, const struct nnve_vn *vn);
/* The VAP of vn in domain is unused and its tag held for hold_ms (stored as a wall-clock
 * deadline); _del: used again, or gone. */
int nnve_store_vap_hold_put(struct nnve_store *s, const char *domain, const struct nnve_vn *vn,
                            uint32_t hold_ms);
int nnve_store_vap_hold_del(struct nnve_store *s, const char *domain, const struct nnve_vn *vn);
/* implicit: the connection was made by a TSI request with IMPLICIT_CONNECT (PROTOCOL.md
 * §9.2) and ends with the hypervisor's last TSI in the VN. */
int nnve_store_vn_connection_put(struct nnve_store *s, const char *identity,
                                 const struct nnve_vn *vn, int implicit);
int nnve_store_vn_connection_del(struct nnve_store *s, const char *identity,
                                 const struct nnve_vn *vn);
int nnve_store_tsi_put(struct nnve_store *s, const char *identity, const struct nnve_vn *vn,
                       const struct sncp_tsi_id *tsi, uint8_t state, uint8_t migrating,
                       const struct sncp_addr *addrs, unsigned n_addrs);
int nnve_store_tsi_del(struct nnve_store *s, const char *identity, const struct sncp_tsi_id *tsi);

/* The tag table of a domain shared with a ToR pair peer (pairtab.h): one row per bound
 * tag.  _load calls fn for each row of `domain` (a non-zero return stops it and is
 * returned); it reads what is committed and in the open transaction. */
int nnve_store_pair_put(struct nnve_store *s, const char *domain, uint16_t tag,
                        const struct nnve_vn *vn, int mine, int peer);
int nnve_store_pair_del(struct nnve_store *s, const char *domain, uint16_t tag);
int nnve_store_pair_load(struct nnve_store *s, const char *domain,
                         int (*fn)(void *aux, uint16_t tag, const struct nnve_vn *vn, int mine,
                                   int peer),
                         void *aux);

/* Whether a transaction is open (changes not yet durable). */
int nnve_store_dirty(const struct nnve_store *s);
/* Commits the open transaction, if any.  Returns 0 or SNCP_E_INTERNAL: a write of the
 * transaction or the commit failed, and the whole transaction is rolled back (logged). */
int nnve_store_commit(struct nnve_store *s);
/* Rolls back the open transaction, if any (what is on disk stays as last committed). */
void nnve_store_rollback(struct nnve_store *s);
/* Deletes every record, in the open transaction (to rewrite them all before one commit).
 * Returns 0 or SNCP_E_INTERNAL (logged). */
int nnve_store_clear(struct nnve_store *s);

/* Copies the write-ahead log into the database file: a PASSIVE checkpoint on the store's
 * second connection.  Meant for one worker thread at a time while the event loop keeps using
 * the store; blocks on disk I/O.  Returns 0 or SNCP_E_INTERNAL.  Call
 * nnve_store_checkpoint_done() on the loop's thread once it has returned (counts it). */
int nnve_store_checkpoint(struct nnve_store *s);
void nnve_store_checkpoint_done(struct nnve_store *s);
/* 1 once, after a commit that left the write-ahead log long enough that a worker
 * checkpoint should start now rather than at its next period; 0 otherwise (or NULL). */
int nnve_store_checkpoint_wanted(struct nnve_store *s);
/* After a worker checkpoint that copied the whole log, with no transaction open: restarts
 * the log now, in a small transaction of its own (two syncs with sync = full), so that the
 * next commit does not (see store.c).  Otherwise does nothing.  Returns 0, or
 * SNCP_E_INTERNAL when that write failed (logged; nothing of the state is lost). */
int nnve_store_restart_log(struct nnve_store *s);

struct nnve_store_stats {
    uint64_t commits, writes, errors;
    uint64_t checkpoints, checkpoint_failures; /* by the worker and by the loop */
    uint64_t idle_log_restarts;                /* nnve_store_restart_log() */
    /* How long each group commit held the loop: the log's writes, its sync, and a
     * checkpoint when the commit runs one (failed commits included). */
    struct snv_hist commit_us;
};
const struct nnve_store_stats *nnve_store_stats(const struct nnve_store *s);
/* Empties the commit histogram (the counters stay). */
void nnve_store_reset_latency(struct nnve_store *s);
/* Current sizes of the database file and of its write-ahead log (0 when absent). */
void nnve_store_sizes(const struct nnve_store *s, uint64_t *db_bytes, uint64_t *wal_bytes);

#endif
