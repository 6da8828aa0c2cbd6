/* backend-none.c: the `none` dataplane backend: programs nothing, logs and records.
 *
 * Each operation is logged at info.  With a journal file configured it also behaves like an
 * idempotent backend would against a kernel: it rebuilds "what is installed" from its own
 * journal at start-up, appends a line only for an operation that changes something
 * ("add-vn port=swp1 tag=100 vn=5000", "activate-tsi port=... tsi=... addrs=..."), and at
 * reconcile_end removes what was installed but not declared.  Tests read the journal to
 * check that a restart re-adds nothing that was already there.  An operation whose journal
 * line cannot be written in full (e.g. the file system is full) fails with -errno and changes
 * nothing: the partial line is cut off and the entry is not recorded, as a kernel that
 * refused the change would leave it.
 */
#include "backend-provider.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hmap.h"
#include "snv-log.h"

/* An installed entry: key "vn port tag" or "tsi port tsi", value the rest of its line. */
struct entry {
    char *key;
    char *line; /* the full journal line that installed it (without the verb) */
    int state;  /* TSI: 1 associated, 2 activated; VN: 1 */
    int seen;   /* declared during the current reconcile */
};

struct none_backend {
    struct nnve_backend up;
    FILE *journal;
    char *fdb_file;
    struct nnve_hmap entries;
    int reconciling;
};

static struct none_backend *none_cast(struct nnve_backend *b)
{
    return (struct none_backend *)b;
}

static struct entry *entry_find(struct none_backend *nb, const char *key)
{
    struct nnve_hmap_iter it;
    uint32_t h = nnve_hash_string(key, 0);
    for (struct entry *e = nnve_hmap_first(&nb->entries, h, &it); e;
         e = nnve_hmap_next(&nb->entries, &it))
        if (!strcmp(e->key, key))
            return e;
    return NULL;
}

static void entry_free(struct entry *e)
{
    if (e) {
        free(e->key);
        free(e->line);
        free(e);
    }
}

static void entry_remove(struct none_backend *nb, struct entry *e)
{
    nnve_hmap_remove(&nb->entries, nnve_hash_string(e->key, 0), e);
    entry_free(e);
}

static int entry_set(struct none_backend *nb, const char *key, const char *line, int state)
{
    struct entry *e = entry_find(nb, key);
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e || !(e->key = strdup(key))) {
            entry_free(e);
            return -ENOMEM;
        }
        if (nnve_hmap_insert(&nb->entries, nnve_hash_string(key, 0), e)) {
            entry_free(e);
            return -ENOMEM;
        }
    }
    char *l = strdup(line);
    if (!l)
        return -ENOMEM;
    free(e->line);
    e->line = l;
    e->state = state;
    e->seen = 1;
    return 0;
}

/* Appends one line with a single write(2) (no stdio buffer that could keep a failed line
 * and write it later).  Returns 0, or -errno with the file as it was. */
static int journal(struct none_backend *nb, const char *verb, const char *rest)
{
    /* Peers drive these operations: the log line is rate-limited, the journal is not. */
    static struct snv_ratelimit rl = SNV_RATELIMIT_INIT(2000, 10000);
    static struct snv_ratelimit rl_err = SNV_RATELIMIT_INIT(1, 5);
    snv_log_rl(&rl, SNV_LOG_INFO, "backend", "none: %s %s", verb, rest);
    if (!nb->journal)
        return 0;
    char line[8192];
    int n = snprintf(line, sizeof line, "%s %s\n", verb, rest);
    if (n < 0 || (size_t)n >= sizeof line)
        return -ENAMETOOLONG;
    int fd = fileno(nb->journal);
    off_t end = lseek(fd, 0, SEEK_END);
    ssize_t w = write(fd, line, (size_t)n);
    if (w == n)
        return 0;
    int e = w < 0 ? errno : ENOSPC;
    if (end >= 0 && ftruncate(fd, end) < 0)
        e = errno;
    snv_log_rl(&rl_err, SNV_LOG_ERR, "backend", "none: cannot write the journal: %s (%s %s)",
               strerror(e), verb, rest);
    return -e;
}

/* Replays the journal's lines into the model of what is installed. */
static void replay(struct none_backend *nb, FILE *f)
{
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *rest = strchr(line, ' ');
        if (!rest)
            continue;
        *rest++ = '\0';
        /* key: the "port=.. tag=.." for VNs, "port=.. ... tsi=.." for TSIs */
        char key[512];
        if (!strcmp(line, "add-vn") || !strcmp(line, "remove-vn")) {
            snprintf(key, sizeof key, "vn %s", rest);
            struct entry *e = entry_find(nb, key);
            if (!strcmp(line, "add-vn"))
                entry_set(nb, key, rest, 1);
            else if (e)
                entry_remove(nb, e);
            continue;
        }
        char *port = strstr(rest, "port=");
        char *tsi = strstr(rest, "tsi=");
        if (!port || !tsi)
            continue;
        size_t plen = strcspn(port, " ");
        size_t tlen = strcspn(tsi, " ");
        snprintf(key, sizeof key, "tsi %.*s %.*s", (int)plen, port, (int)tlen, tsi);
        struct entry *e = entry_find(nb, key);
        if (!strcmp(line, "associate-tsi") || !strcmp(line, "deactivate-tsi"))
            entry_set(nb, key, rest, 1);
        else if (!strcmp(line, "activate-tsi"))
            entry_set(nb, key, rest, 2);
        else if (!strcmp(line, "update-tsi"))
            entry_set(nb, key, rest, e ? e->state : 1);
        else if (!strcmp(line, "deassociate-tsi") && e)
            entry_remove(nb, e);
    }
}

static int none_create(const struct nnve_backend_config *cfg, struct nnve_backend **out)
{
    struct none_backend *nb = calloc(1, sizeof *nb);
    if (!nb)
        return -ENOMEM;
    nb->up.cls = &nnve_backend_none_class;
    nnve_hmap_init(&nb->entries);
    if (cfg && cfg->fdb_file && !(nb->fdb_file = strdup(cfg->fdb_file))) {
        free(nb);
        return -ENOMEM;
    }
    if (cfg && cfg->journal) {
        FILE *old = fopen(cfg->journal, "r");
        if (old) {
            replay(nb, old);
            fclose(old);
        }
        /* Appended in place: O_NOFOLLOW refuses a symlink planted at the path. */
        int fd = open(cfg->journal, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
        nb->journal = fd >= 0 ? fdopen(fd, "a") : NULL;
        if (!nb->journal) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            SNV_ERR("backend", "none: cannot open journal file=%s: %s", cfg->journal, strerror(e));
            nb->up.cls->destroy(&nb->up);
            return -e;
        }
    }
    *out = &nb->up;
    return 0;
}

static void none_destroy(struct nnve_backend *b)
{
    struct none_backend *nb = none_cast(b);
    struct entry *e;
    for (size_t i = 0; (e = nnve_hmap_at(&nb->entries, &i)) != NULL;)
        entry_free(e);
    nnve_hmap_uninit(&nb->entries);
    if (nb->journal)
        fclose(nb->journal);
    free(nb->fdb_file);
    free(nb);
}

static int none_reconcile_begin(struct nnve_backend *b)
{
    struct none_backend *nb = none_cast(b);
    struct entry *e;
    for (size_t i = 0; (e = nnve_hmap_at(&nb->entries, &i)) != NULL;)
        e->seen = 0;
    nb->reconciling = 1;
    journal(nb, "reconcile-begin", ""); /* a marker: its loss changes nothing */
    return 0;
}

static int none_reconcile_end(struct nnve_backend *b)
{
    struct none_backend *nb = none_cast(b);
    /* TSIs first, then VNs, as a real backend would unwind them. */
    int ret = 0;
    for (int pass = 0; pass < 2; pass++) {
        const char *prefix = pass == 0 ? "tsi " : "vn ";
        struct entry *e;
        for (size_t i = 0; (e = nnve_hmap_at(&nb->entries, &i)) != NULL;) {
            if (e->seen || strncmp(e->key, prefix, strlen(prefix)))
                continue;
            int r = journal(nb, pass == 0 ? "deassociate-tsi" : "remove-vn", e->line);
            if (r) {
                ret = r; /* still installed: the next reconcile retries */
                continue;
            }
            entry_remove(nb, e);
            i = 0;
        }
    }
    nb->reconciling = 0;
    journal(nb, "reconcile-end", "");
    return ret;
}

static int vn_op(struct nnve_backend *b, int add, const char *port, uint16_t tag,
                 const struct nnve_vn *vn)
{
    struct none_backend *nb = none_cast(b);
    char vbuf[80], rest[256], key[300];
    snprintf(rest, sizeof rest, "port=%s tag=%u vn=%s", port, tag,
             nnve_vn_format(vn, vbuf, sizeof vbuf));
    if (!nb->journal)
        return journal(nb, add ? "add-vn" : "remove-vn", rest);
    snprintf(key, sizeof key, "vn %s", rest);
    struct entry *e = entry_find(nb, key);
    if (add) {
        if (e) {
            e->seen = 1;
            return 0;
        }
        int r = journal(nb, "add-vn", rest);
        return r ? r : entry_set(nb, key, rest, 1);
    }
    if (e) {
        int r = journal(nb, "remove-vn", rest);
        if (r)
            return r;
        entry_remove(nb, e);
    }
    return 0;
}

static int none_vn_add(struct nnve_backend *b, const char *port, uint16_t tag,
                       const struct nnve_vn *vn)
{
    return vn_op(b, 1, port, tag, vn);
}

static int none_vn_remove(struct nnve_backend *b, const char *port, uint16_t tag,
                          const struct nnve_vn *vn)
{
    return vn_op(b, 0, port, tag, vn);
}

enum tsi_verb { V_ASSOCIATE, V_ACTIVATE, V_DEACTIVATE, V_DEASSOCIATE, V_UPDATE };

static int tsi_op(struct nnve_backend *b, enum tsi_verb verb, const char *port, uint16_t tag,
                  const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,
                  const struct sncp_addr *addrs, unsigned n_addrs)
{
    static const char *const verbs[] = {"associate-tsi", "activate-tsi", "deactivate-tsi",
                                        "deassociate-tsi", "update-tsi"};
    struct none_backend *nb = none_cast(b);
    /* Without a journal the line is only for the info log: do not build it for nothing. */
    if (!nb->journal && snv_log_get_level() < SNV_LOG_INFO)
        return 0;
    char vbuf[80], tbuf[SNCP_TSI_ID_STRLEN], rest[6144], key[512];
    sncp_tsi_id_format(tsi, tbuf, sizeof tbuf);
    int n = snprintf(rest, sizeof rest, "port=%s tag=%u vn=%s tsi=%s addrs=", port, tag,
                     nnve_vn_format(vn, vbuf, sizeof vbuf), tbuf);
    for (unsigned i = 0; i < n_addrs && n > 0 && (size_t)n < sizeof rest; i++) {
        char abuf[SNCP_ADDR_STRLEN];
        sncp_addr_format(&addrs[i], abuf, sizeof abuf);
        n += snprintf(rest + n, sizeof rest - (size_t)n, "%s%s", i ? "," : "", abuf);
    }
    if (!nb->journal)
        return journal(nb, verbs[verb], rest);
    snprintf(key, sizeof key, "tsi port=%s tsi=%s", port, tbuf);
    struct entry *e = entry_find(nb, key);
    int want = verb == V_ACTIVATE ? 2 : verb == V_UPDATE ? (e ? e->state : 1) : 1;
    if (verb == V_DEASSOCIATE) {
        if (e) {
            int r = journal(nb, verbs[verb], rest);
            if (r)
                return r;
            entry_remove(nb, e);
        }
        return 0;
    }
    if (e && e->state == want && !strcmp(e->line, rest)) {
        e->seen = 1;
        return 0;
    }
    int r = journal(nb, verbs[verb], rest);
    return r ? r : entry_set(nb, key, rest, want);
}

static int none_tsi_associate(struct nnve_backend *b, const char *port, uint16_t tag,
                              const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,
                              const struct sncp_addr *addrs, unsigned n_addrs)
{
    return tsi_op(b, V_ASSOCIATE, port, tag, vn, tsi, addrs, n_addrs);
}

static int none_tsi_activate(struct nnve_backend *b, const char *port, uint16_t tag,
                             const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,
                             const struct sncp_addr *addrs, unsigned n_addrs)
{
    return tsi_op(b, V_ACTIVATE, port, tag, vn, tsi, addrs, n_addrs);
}

static int none_tsi_deactivate(struct nnve_backend *b, const char *port, uint16_t tag,
                               const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,
                               const struct sncp_addr *addrs, unsigned n_addrs)
{
    return tsi_op(b, V_DEACTIVATE, port, tag, vn, tsi, addrs, n_addrs);
}

static int none_tsi_deassociate(struct nnve_backend *b, const char *port, uint16_t tag,
                                const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,
                                const struct sncp_addr *addrs, unsigned n_addrs)
{
    return tsi_op(b, V_DEASSOCIATE, port, tag, vn, tsi, addrs, n_addrs);
}

static int none_tsi_update(struct nnve_backend *b, const char *port, uint16_t tag,
                           const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,
                           const struct sncp_addr *addrs, unsigned n_addrs)
{
    return tsi_op(b, V_UPDATE, port, tag, vn, tsi, addrs, n_addrs);
}

static int none_lookup_mac(struct nnve_backend *b, const uint8_t mac[6], char *port, size_t cap)
{
    struct none_backend *nb = none_cast(b);
    if (!nb->fdb_file)
        return -ENOENT;
    FILE *f = fopen(nb->fdb_file, "r");
    if (!f)
        return -errno;
    char line[256];
    int ret = -ENOENT;
    while (ret == -ENOENT && fgets(line, sizeof line, f)) {
        char mac_s[32], port_s[SNCP_MAX_PORT_LEN + 1];
        uint8_t m[6];
        if (sscanf(line, "%31s %64s", mac_s, port_s) == 2 && !sncp_mac_parse(mac_s, m) &&
            !memcmp(m, mac, 6))
            ret = snprintf(port, cap, "%s", port_s) < (int)cap ? 0 : -ENAMETOOLONG;
    }
    fclose(f);
    return ret;
}

const struct nnve_backend_class nnve_backend_none_class = {
    .name = "none",
    .create = none_create,
    .destroy = none_destroy,
    .reconcile_begin = none_reconcile_begin,
    .reconcile_end = none_reconcile_end,
    .vn_add = none_vn_add,
    .vn_remove = none_vn_remove,
    .tsi_associate = none_tsi_associate,
    .tsi_activate = none_tsi_activate,
    .tsi_deactivate = none_tsi_deactivate,
    .tsi_deassociate = none_tsi_deassociate,
    .tsi_update = none_tsi_update,
    .lookup_mac = none_lookup_mac,
};
