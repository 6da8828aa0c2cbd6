/* snv-log.c: logging for the daemons and tools (see snv-log.h).
 *
 * A line goes either to stderr, as
 *     2026-11-22T03:06:05.123Z nnve-daemon[1234]: info session: text key=value
 * (UTC with milliseconds), or to syslog with the matching priority as "module: text".
 * The formatted text has control characters replaced by '?', so a peer-supplied string
 * cannot forge extra log lines.
 *
 * The module keeps its state in file-scope variables and is meant for a single-threaded
 * event loop.  A daemon batches its lines (snv_log_set_buffered()): at tens of thousands of
 * audited state changes per second a write(2) and a timestamp per line would cost more than
 * the changes themselves.  It is NOT async-signal-safe (it calls snprintf, gmtime_r, stdio and
 * syslog): never log from a signal handler; the daemons receive signals through
 * uv_signal_t and log from the loop.
 */
#include "snv-log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

enum {
    SNV_LOG_PROGRAM_MAX = 64,
    SNV_LOG_TEXT_MAX = 2048,
    SNV_LOG_LINE_MAX = SNV_LOG_TEXT_MAX + 256,
    SNV_LOG_BATCH = 4096, /* PIPE_BUF: a write of a batch stays whole */
};

/* Lines gathered for one file descriptor while batching. */
struct batch {
    size_t len;
    char data[SNV_LOG_BATCH];
};

static char log_program[SNV_LOG_PROGRAM_MAX];
static enum snv_log_dest log_dest = SNV_LOG_STDERR;
static enum snv_log_level log_level = SNV_LOG_INFO;
static int log_syslog_open;
static uint64_t audit_lines;
static int audit_fd = -1;
static int log_buffered;
static struct batch batch_stderr, batch_audit;
/* The part of a line's prefix that changes at most once a second: the date and time, and
 * "program[pid]: ".  snv_log_open() and a fork (in the child) reset it. */
static time_t prefix_secs = -1;
static char prefix_stamp[32], prefix_program[SNV_LOG_PROGRAM_MAX + 32];

static const char *const level_names[] = {
    [SNV_LOG_ERR] = "err",
    [SNV_LOG_WARN] = "warn",
    [SNV_LOG_INFO] = "info",
    [SNV_LOG_DEBUG] = "debug",
};

static const int level_priorities[] = {
    [SNV_LOG_ERR] = LOG_ERR,
    [SNV_LOG_WARN] = LOG_WARNING,
    [SNV_LOG_INFO] = LOG_INFO,
    [SNV_LOG_DEBUG] = LOG_DEBUG,
};

static void prefix_reset(void)
{
    prefix_secs = -1;
}

static const char *program_name(void)
{
    return log_program[0] ? log_program : program_invocation_short_name;
}

/* The program name is copied; syslog keeps a pointer to our static copy, which stays
 * valid until the next snv_log_open(), which reopens syslog first. */
void snv_log_open(const char *program, enum snv_log_dest dest)
{
    if (log_syslog_open) {
        closelog();
        log_syslog_open = 0;
    }
    if (program) {
        const char *slash = strrchr(program, '/');
        int n = snprintf(log_program, sizeof log_program, "%s", slash ? slash + 1 : program);
        if (n < 0)
            log_program[0] = '\0';
    }
    static int atfork_done;
    if (!atfork_done && pthread_atfork(NULL, NULL, prefix_reset) == 0)
        atfork_done = 1;
    prefix_reset(); /* the program name in the prefix may have changed */
    log_dest = dest == SNV_LOG_SYSLOG ? SNV_LOG_SYSLOG : SNV_LOG_STDERR;
    if (log_dest == SNV_LOG_SYSLOG) {
        openlog(program_name(), LOG_PID | LOG_NDELAY, LOG_DAEMON);
        log_syslog_open = 1;
    }
}

void snv_log_set_level(enum snv_log_level level)
{
    if (level < SNV_LOG_ERR)
        level = SNV_LOG_ERR;
    if (level > SNV_LOG_DEBUG)
        level = SNV_LOG_DEBUG;
    log_level = level;
}

enum snv_log_level snv_log_get_level(void)
{
    return log_level;
}

int snv_log_level_parse(const char *s, enum snv_log_level *level)
{
    static const struct {
        const char *name;
        enum snv_log_level level;
    } names[] = {
        {"err", SNV_LOG_ERR},      {"error", SNV_LOG_ERR}, {"warn", SNV_LOG_WARN},
        {"warning", SNV_LOG_WARN}, {"info", SNV_LOG_INFO}, {"debug", SNV_LOG_DEBUG},
    };

    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(s, names[i].name) == 0) {
            if (level)
                *level = names[i].level;
            return 0;
        }
    }
    return -EINVAL;
}

const char *snv_log_level_name(enum snv_log_level level)
{
    if (level == SNV_LOG_AUDIT)
        return "audit";
    if (level < SNV_LOG_ERR || level > SNV_LOG_DEBUG)
        return "unknown";
    return level_names[level];
}

/* Replaces control characters, so that a peer-supplied string cannot forge lines. */
static void neutralise(char *p)
{
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f)
            *p = '?';
    }
}

/* Formats "text[ suffix]" into buf, marking truncation with "..." and neutralising control
 * characters. */
static void format_text(char *buf, size_t size, const char *suffix, const char *fmt, va_list ap)
{
    size_t suffix_len = suffix ? strlen(suffix) : 0;
    if (suffix_len >= size / 2)
        suffix_len = 0;
    size_t avail = size - suffix_len; /* room for the text and its NUL */

    int n = vsnprintf(buf, avail, fmt, ap);
    if (n < 0) {
        snprintf(buf, avail, "(log format error)");
        n = (int)strlen(buf);
    }
    size_t len = (size_t)n;
    if (len >= avail) {
        len = avail - 1;
        memcpy(buf + len - 3, "...", 4);
    }
    if (suffix_len)
        memcpy(buf + len, suffix, suffix_len + 1);
    neutralise(buf);
}

/* Copies the string s to p, stopping at end; returns the new end of the text. */
static char *append(char *p, const char *end, const char *s)
{
    size_t n = strlen(s);
    if (n > (size_t)(end - p))
        n = (size_t)(end - p);
    memcpy(p, s, n);
    return p + n;
}

/* Formats the stderr form of a line into `line` (cap >= 2), truncated to cap - 1 bytes
 * ending in a newline; returns its length.  No printf: a daemon writes tens of thousands
 * of audit lines a second. */
static size_t format_line(char *line, size_t cap, enum snv_log_level level, const char *module,
                          const char *text)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != prefix_secs) {
        struct tm tm;
        time_t secs = ts.tv_sec;
        if (!gmtime_r(&secs, &tm) ||
            strftime(prefix_stamp, sizeof prefix_stamp, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
            snprintf(prefix_stamp, sizeof prefix_stamp, "1970-01-01T00:00:00");
        snprintf(prefix_program, sizeof prefix_program, "%s[%ld]: ", program_name(),
                 (long)getpid());
        prefix_secs = ts.tv_sec;
    }
    long ms = ts.tv_nsec / 1000000;
    char frac[7] = {
        '.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z', ' ',
        '\0'};
    char *p = line, *end = line + cap - 2; /* room for the newline and the NUL */
    p = append(p, end, prefix_stamp);
    p = append(p, end, frac);
    p = append(p, end, prefix_program);
    p = append(p, end, snv_log_level_name(level));
    p = append(p, end, " ");
    p = append(p, end, module ? module : "-");
    p = append(p, end, ": ");
    p = append(p, end, text);
    *p++ = '\n';
    *p = '\0';
    return (size_t)(p - line);
}

/* Writes what b holds to fd, in one write(2) (not retried: a log that cannot be written
 * must not stop the daemon). */
static void batch_flush(struct batch *b, int fd)
{
    if (b->len && fd >= 0 && write(fd, b->data, b->len) < 0) {
        /* dropped */
    }
    b->len = 0;
}

/* Appends a line to b, writing b first when the line does not fit; a line longer than a
 * batch goes out alone. */
static void batch_add(struct batch *b, int fd, const char *line, size_t len)
{
    if (b->len + len > sizeof b->data)
        batch_flush(b, fd);
    if (len > sizeof b->data) {
        if (write(fd, line, len) < 0) {
            /* dropped */
        }
        return;
    }
    memcpy(b->data + b->len, line, len);
    b->len += len;
}

void snv_log_flush(void)
{
    if (!batch_stderr.len && !batch_audit.len)
        return;
    batch_flush(&batch_stderr, STDERR_FILENO);
    batch_flush(&batch_audit, audit_fd);
}

void snv_log_set_buffered(int on)
{
    if (!on)
        snv_log_flush();
    log_buffered = on;
}

static void write_stderr(enum snv_log_level level, const char *module, const char *text)
{
    char line[SNV_LOG_LINE_MAX];
    size_t len = format_line(line, sizeof line, level, module, text);
    if (!len)
        return;
    if (log_buffered) {
        batch_add(&batch_stderr, STDERR_FILENO, line, len);
        return;
    }
    /* stderr is unbuffered: one fwrite is one write(2), so concurrent writers of the same
     * file do not interleave inside a line. */
    if (fwrite(line, 1, len, stderr) != len)
        clearerr(stderr);
}

/* Writes a formatted, neutralised text to its destinations. */
static void emit(enum snv_log_level level, const char *module, const char *text)
{
    if (level == SNV_LOG_AUDIT && audit_fd >= 0) {
        char line[SNV_LOG_LINE_MAX];
        size_t len = format_line(line, sizeof line, level, module, text);
        /* one write(2) per line or batch: O_APPEND keeps concurrent lines whole */
        if (len && log_buffered)
            batch_add(&batch_audit, audit_fd, line, len);
        else if (len && write(audit_fd, line, len) < 0) {
            /* not retried: the line still reaches the log below */
        }
    }
    if (log_dest == SNV_LOG_SYSLOG && level == SNV_LOG_AUDIT)
        syslog(LOG_NOTICE, "audit %s: %s", module ? module : "-", text);
    else if (log_dest == SNV_LOG_SYSLOG)
        syslog(level_priorities[level], "%s: %s", module ? module : "-", text);
    else
        write_stderr(level, module, text);
    if (level == SNV_LOG_ERR && log_buffered)
        snv_log_flush(); /* an error is seen at once, after what led to it */
}

static void vlog_suffix(enum snv_log_level level, const char *module, const char *suffix,
                        const char *fmt, va_list ap)
{
    char text[SNV_LOG_TEXT_MAX];

    if (level < SNV_LOG_AUDIT)
        level = SNV_LOG_ERR;
    if (level > SNV_LOG_DEBUG)
        level = SNV_LOG_DEBUG;
    int saved_errno = errno;
    format_text(text, sizeof text, suffix, fmt, ap);
    emit(level, module, text);
    errno = saved_errno;
}

void snv_audit_text(const char *module, const char *text)
{
    char buf[SNV_LOG_TEXT_MAX];
    size_t len = strlen(text);

    audit_lines++;
    int saved_errno = errno;
    if (len >= sizeof buf) {
        len = sizeof buf - 1;
        memcpy(buf, text, len - 3);
        memcpy(buf + len - 3, "...", 3);
    } else {
        memcpy(buf, text, len);
    }
    buf[len] = '\0';
    neutralise(buf);
    emit(SNV_LOG_AUDIT, module, buf);
    errno = saved_errno;
}

void snv_vlog(enum snv_log_level level, const char *module, const char *fmt, va_list ap)
{
    if (level > log_level)
        return;
    vlog_suffix(level, module, NULL, fmt, ap);
}

void snv_log(enum snv_log_level level, const char *module, const char *fmt, ...)
{
    va_list ap;

    if (level > log_level)
        return;
    va_start(ap, fmt);
    vlog_suffix(level, module, NULL, fmt, ap);
    va_end(ap);
}

void snv_audit(const char *module, const char *fmt, ...)
{
    va_list ap;

    audit_lines++;
    va_start(ap, fmt);
    vlog_suffix(SNV_LOG_AUDIT, module, NULL, fmt, ap);
    va_end(ap);
}

int snv_audit_file_open(const char *path)
{
    int fd = -1;
    if (path) {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
        if (fd < 0)
            return -errno;
    }
    batch_flush(&batch_audit, audit_fd); /* the lines so far go to the file they were for */
    if (audit_fd >= 0)
        close(audit_fd);
    audit_fd = fd;
    return 0;
}

uint64_t snv_audit_count(void)
{
    return audit_lines;
}

/* Tokens are kept in thousandths, so `rate` lines per second is `rate` milli-tokens per
 * millisecond.  A burst of 0 is treated as 1.  Time that goes backwards refills nothing. */
int snv_ratelimit_allow(struct snv_ratelimit *rl, uint64_t now_ms)
{
    uint64_t cap = (uint64_t)(rl->burst ? rl->burst : 1) * 1000;

    if (!rl->primed) {
        rl->primed = 1;
        rl->tokens_milli = cap;
        rl->last_ms = now_ms;
    } else if (now_ms > rl->last_ms) {
        uint64_t elapsed = now_ms - rl->last_ms;
        uint64_t room = rl->tokens_milli < cap ? cap - rl->tokens_milli : 0;
        if (rl->rate && elapsed >= (room + rl->rate - 1) / rl->rate)
            rl->tokens_milli = cap;
        else
            rl->tokens_milli += elapsed * rl->rate;
        rl->last_ms = now_ms;
    }
    if (rl->tokens_milli > cap)
        rl->tokens_milli = cap;
    if (rl->tokens_milli >= 1000) {
        rl->tokens_milli -= 1000;
        return 1;
    }
    rl->suppressed++;
    return 0;
}

/* Logs a line `rl` allowed, ending with "suppressed=N" when rl suppressed lines before. */
static void vlog_rl(struct snv_ratelimit *rl, enum snv_log_level level, const char *module,
                    const char *fmt, va_list ap)
{
    char suffix[40];

    suffix[0] = '\0';
    if (rl->suppressed) {
        snprintf(suffix, sizeof suffix, " suppressed=%llu", (unsigned long long)rl->suppressed);
        rl->suppressed = 0;
    }
    vlog_suffix(level, module, suffix, fmt, ap);
}

void snv_log_rl(struct snv_ratelimit *rl, enum snv_log_level level, const char *module,
                const char *fmt, ...)
{
    va_list ap;

    /* A line filtered by level neither spends a token nor counts as suppressed. */
    if (level > log_level)
        return;
    if (!snv_ratelimit_allow(rl, snv_now_ms()))
        return;
    va_start(ap, fmt);
    vlog_rl(rl, level, module, fmt, ap);
    va_end(ap);
}

void snv_log_rl2(struct snv_ratelimit *own, struct snv_ratelimit *all, enum snv_log_level level,
                 const char *module, const char *fmt, ...)
{
    va_list ap;
    uint64_t now = snv_now_ms();

    if (level > log_level)
        return;
    if (!snv_ratelimit_allow(own, now))
        return;
    if (!snv_ratelimit_allow(all, now)) {
        all->suppressed--; /* counted where the line belongs */
        own->suppressed++;
        own->tokens_milli += 1000;
        return;
    }
    va_start(ap, fmt);
    vlog_rl(own, level, module, fmt, ap);
    va_end(ap);
}

uint64_t snv_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
