/* snv-log.h: logging for the daemons and tools.
 *
 * One line per event, "LEVEL module: text key=value key=value", to stderr (with an ISO-8601
 * UTC timestamp) or to syslog.  Levels: err = something broke for someone; warn = it will
 * repair itself; info = a state change; debug = behind a switch.  Anything a peer can
 * trigger is logged through a rate limiter, which reports how many lines it suppressed.
 */
#ifndef SNV_LOG_H
#define SNV_LOG_H 1

#include <stdarg.h>
#include <stdint.h>

enum snv_log_level {
    SNV_LOG_AUDIT = -1, /* snv_audit(): not a filter level */
    SNV_LOG_ERR = 0,
    SNV_LOG_WARN = 1,
    SNV_LOG_INFO = 2,
    SNV_LOG_DEBUG = 3,
};

enum snv_log_dest {
    SNV_LOG_STDERR = 0,
    SNV_LOG_SYSLOG = 1,
};

/* Sets the program name and destination; may be called again (e.g. after daemonizing). */
void snv_log_open(const char *program, enum snv_log_dest dest);
void snv_log_set_level(enum snv_log_level level);
enum snv_log_level snv_log_get_level(void);
/* "err"/"error", "warn"/"warning", "info", "debug" -> 0 and *level; else -EINVAL. */
int snv_log_level_parse(const char *s, enum snv_log_level *level);
const char *snv_log_level_name(enum snv_log_level level);

void snv_log(enum snv_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void snv_vlog(enum snv_log_level level, const char *module, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define SNV_ERR(mod, ...) snv_log(SNV_LOG_ERR, mod, __VA_ARGS__)
#define SNV_WARN(mod, ...) snv_log(SNV_LOG_WARN, mod, __VA_ARGS__)
#define SNV_INFO(mod, ...) snv_log(SNV_LOG_INFO, mod, __VA_ARGS__)
#define SNV_DBG(mod, ...)                                                                          \
    do {                                                                                           \
        if (snv_log_get_level() >= SNV_LOG_DEBUG)                                                  \
            snv_log(SNV_LOG_DEBUG, mod, __VA_ARGS__);                                              \
    } while (0)

/* Batching, for a daemon's event loop: while on, the lines for stderr and the audit file are
 * gathered (up to 4 KiB, one pipe write's atomic size: lines never interleave with another
 * writer's) and written by snv_log_flush(), when the next line would not fit, or at once
 * after an error line.  The owner flushes before anything that depends on the lines having
 * been written leaves (e.g. before a response is sent) and before the loop blocks.  Turning
 * it off flushes.  syslog lines are never held. */
void snv_log_set_buffered(int on);
void snv_log_flush(void);

/* Audit (RFC 8394 section 10: state changes are logged).  A state change or an
 * authentication outcome, "audit module: text key=value ...": never rate-limited and never
 * filtered by the log level, at syslog priority NOTICE.  Its volume is bounded by the
 * changes peers are allowed to make (the configured limits), not by a throttle; repeated
 * errors of a peer stay on snv_log_rl(). */
void snv_audit(const char *module, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same with the text already built (no printf on hot paths); control characters in it
 * are replaced as in every line. */
void snv_audit_text(const char *module, const char *text);
/* Also appends every audit line (in the stderr format, whatever the destination) to
 * `path`, opened O_APPEND and refusing a symlink; NULL stops.  Called again (SIGHUP) it
 * reopens, so a rotated file is followed.  Returns 0, or -errno (the previous file, if
 * any, is kept). */
int snv_audit_file_open(const char *path);
/* Number of audit lines written since start (a counter for the daemons). */
uint64_t snv_audit_count(void);

/* Token bucket: `rate` lines per second, bursts of `burst`. */
struct snv_ratelimit {
    uint32_t rate;
    uint32_t burst;
    uint64_t tokens_milli; /* tokens * 1000 */
    uint64_t last_ms;
    uint64_t suppressed;
    int primed;
};
#define SNV_RATELIMIT_INIT(rate_, burst_)                                                          \
    {                                                                                              \
        .rate = (rate_), .burst = (burst_)                                                         \
    }

/* Returns 1 if a line may be logged at now_ms, else 0 (and counts it as suppressed). */
int snv_ratelimit_allow(struct snv_ratelimit *rl, uint64_t now_ms);

/* Logs through `rl` using the monotonic clock; the first line after suppression ends with
 * "suppressed=N". */
void snv_log_rl(struct snv_ratelimit *rl, enum snv_log_level level, const char *module,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The same through two limiters: `own` (one peer's share) first, then `all` (everyone's),
 * so one peer over its share cannot spend the lines of the others.  A line refused by
 * either counts as suppressed in `own` (a token `own` gave is given back when `all`
 * refuses), and the next line through `own` ends with "suppressed=N". */
void snv_log_rl2(struct snv_ratelimit *own, struct snv_ratelimit *all, enum snv_log_level level,
                 const char *module, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Milliseconds on the monotonic clock (for the daemons; state machines take `now`). */
uint64_t snv_now_ms(void);

#endif
