/* snv-ini.c: strict INI reading on top of inih (see snv-ini.h).
 *
 * The reader sees every physical line before inih does: it counts lines, refuses one that
 * does not fit inih's buffer, records section headers (refusing a repeated one), and joins
 * continuation lines (indented, after a key) to the pending value; inih sees only blank
 * lines in their place; it also tells the optional section callback about each header.
 * The handler wrapper holds each key's value back until the next line that is not a
 * continuation, then checks the key against the section's keys and calls the caller's
 * handler.
 */
#include "snv-ini.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum {
    SNV_INI_VALUE_MAX = 64 * 1024, /* a value with its continuation lines */
};

struct seen {
    char *name;
    unsigned line;
};

struct seen_list {
    struct seen *v;
    size_t n;
    size_t cap;
};

struct ini_parse {
    FILE *file;
    const char *text;
    snv_ini_handler *handler;
    snv_ini_section_handler *on_section;
    void *user;
    unsigned *user_line;
    char *err;
    size_t errlen;
    unsigned line;
    unsigned err_line; /* first error: ours, the handler's or -ENOMEM (line 0) */
    int stop;
    int nomem;
    int after_key; /* a key line was seen in this section: indented lines continue it */
    struct seen_list sections;
    struct seen_list keys; /* of the current section */
    /* the key whose value is being collected */
    char *section;
    char *key;
    char *value;
    size_t value_len;
    unsigned key_line;
};

static void fail(struct ini_parse *p, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct ini_parse *p, unsigned line, const char *fmt, ...)
{
    if (p->stop)
        return;
    p->stop = 1;
    p->err_line = line;
    if (p->err && p->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err, p->errlen, fmt, ap);
        va_end(ap);
    }
}

static void fail_nomem(struct ini_parse *p)
{
    p->nomem = 1;
    fail(p, 0, "out of memory");
}

static void seen_clear(struct seen_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].name);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static const struct seen *seen_find(const struct seen_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].name, name))
            return &l->v[i];
    return NULL;
}

static int seen_add(struct seen_list *l, const char *name, size_t len, unsigned line)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct seen *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    char *s = strndup(name, len);
    if (!s)
        return -ENOMEM;
    l->v[l->n++] = (struct seen){s, line};
    return 0;
}

static void pending_clear(struct ini_parse *p)
{
    free(p->section);
    free(p->key);
    free(p->value);
    p->section = p->key = p->value = NULL;
    p->value_len = 0;
}

/* Hands the collected key to the caller's handler. */
static void flush(struct ini_parse *p)
{
    if (!p->key)
        return;
    if (!p->stop) {
        const struct seen *k = seen_find(&p->keys, p->key);
        if (k) {
            fail(p, p->key_line, "key \"%s\" repeated%s%s%s (first at line %u)", p->key,
                 *p->section ? " in [" : "", p->section, *p->section ? "]" : "", k->line);
        } else if (seen_add(&p->keys, p->key, strlen(p->key), p->key_line)) {
            fail_nomem(p);
        } else {
            if (p->user_line)
                *p->user_line = p->key_line;
            if (!p->handler(p->user, p->section, p->key, p->value)) {
                p->stop = 1; /* the handler's reason is its own */
                p->err_line = p->key_line;
            }
        }
    }
    pending_clear(p);
}

static int append(struct ini_parse *p, const char *s)
{
    size_t n = strlen(s);
    if (p->value_len + 1 + n > SNV_INI_VALUE_MAX) {
        fail(p, p->line, "value of \"%s\" longer than %d bytes", p->key, SNV_INI_VALUE_MAX);
        return -1;
    }
    char *v = realloc(p->value, p->value_len + n + 2);
    if (!v) {
        fail_nomem(p);
        return -1;
    }
    p->value = v;
    if (p->value_len)
        p->value[p->value_len++] = ' ';
    memcpy(p->value + p->value_len, s, n + 1);
    p->value_len += n;
    return 0;
}

static int on_key(void *user, const char *section, const char *key, const char *value)
{
    struct ini_parse *p = user;
    if (p->stop)
        return 0;
    /* The reader has flushed the previous key; continuation lines never reach inih. */
    p->section = strdup(section);
    p->key = strdup(key);
    p->key_line = p->line;
    if (!p->section || !p->key || append(p, value ? value : "")) {
        if (!p->stop)
            fail_nomem(p);
        pending_clear(p);
        return 0;
    }
    return 1;
}

/* Collapses runs of blanks and trims, in place. */
static void normalize(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (isspace((unsigned char)*r)) {
            if (w != s && w[-1] != ' ')
                *w++ = ' ';
        } else {
            *w++ = *r;
        }
    }
    if (w != s && w[-1] == ' ')
        w--;
    *w = '\0';
}

static void on_header(struct ini_parse *p, const char *start)
{
    const char *end = strchr(start + 1, ']');
    if (!end)
        return; /* inih reports the syntax error */
    char *name = strndup(start + 1, (size_t)(end - start - 1));
    if (!name) {
        fail_nomem(p);
        return;
    }
    normalize(name);
    const struct seen *s = seen_find(&p->sections, name);
    if (s)
        fail(p, p->line, "section [%s] repeated (first at line %u)", name, s->line);
    else if (seen_add(&p->sections, name, strlen(name), p->line))
        fail_nomem(p);
    free(name);
    seen_clear(&p->keys);
    p->after_key = 0;
    if (!p->stop && p->on_section) {
        /* as written, which is what the handler gets (up to inih's length) */
        char *raw = strndup(start + 1, (size_t)(end - start - 1));
        if (!raw) {
            fail_nomem(p);
            return;
        }
        if (p->user_line)
            *p->user_line = p->line;
        if (!p->on_section(p->user, raw, p->line)) {
            p->stop = 1; /* the callee's reason is its own */
            p->err_line = p->line;
        }
        free(raw);
    }
}

/* Reads one physical line into str (at most num - 1 bytes); NULL at the end or to stop. */
static char *read_line(struct ini_parse *p, char *str, int num, int *more)
{
    size_t n;
    if (p->file) {
        if (!fgets(str, num, p->file))
            return NULL;
        n = strlen(str);
        int c = n && str[n - 1] != '\n' ? getc(p->file) : EOF;
        if (c != EOF)
            ungetc(c, p->file);
        *more = c != EOF;
    } else {
        if (!*p->text)
            return NULL;
        const char *nl = strchr(p->text, '\n');
        n = nl ? (size_t)(nl - p->text + 1) : strlen(p->text);
        if (n > (size_t)num - 1)
            n = (size_t)num - 1;
        memcpy(str, p->text, n);
        str[n] = '\0';
        p->text += n;
        *more = n && str[n - 1] != '\n' && *p->text;
    }
    return str;
}

static char *reader(char *str, int num, void *stream)
{
    struct ini_parse *p = stream;
    int more = 0;
    if (p->stop || num < 2 || !read_line(p, str, num, &more))
        return NULL;
    p->line++;
    if (more) {
        flush(p);
        fail(p, p->line, "line longer than %d bytes", num - 2);
        return NULL;
    }
    char *s = str;
    if (p->line == 1 && !strncmp(s, "\xEF\xBB\xBF", 3))
        s += 3;
    int indented = *s == ' ' || *s == '\t';
    while (isspace((unsigned char)*s))
        s++;
    if (!*s || *s == ';' || *s == '#')
        return str; /* blank or comment */
    if (indented && p->after_key && p->key) {
        /* A continuation: joined to the pending value; inih sees a blank line. */
        for (char *c = s + 1; *c; c++) /* an inline comment, as inih strips one */
            if (*c == ';' && isspace((unsigned char)c[-1])) {
                *c = '\0';
                break;
            }
        char *e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1]))
            *--e = '\0';
        if (append(p, s))
            return NULL;
        str[0] = '\n';
        str[1] = '\0';
        return str;
    }
    flush(p);
    if (p->stop)
        return NULL;
    if (*s == '[')
        on_header(p, s);
    else
        p->after_key = 1;
    return p->stop ? NULL : str;
}

int snv_ini_parse(FILE *file, const char *text, snv_ini_handler *handler, void *user,
                  unsigned *line, char *err, size_t errlen)
{
    return snv_ini_parse_sections(file, text, handler, NULL, user, line, err, errlen);
}

int snv_ini_parse_sections(FILE *file, const char *text, snv_ini_handler *handler,
                           snv_ini_section_handler *on_section, void *user, unsigned *line,
                           char *err, size_t errlen)
{
    struct ini_parse p = {
        .file = file,
        .text = text ? text : "",
        .handler = handler,
        .on_section = on_section,
        .user = user,
        .user_line = line,
        .err = err,
        .errlen = errlen,
    };
    if (err && errlen)
        err[0] = '\0';
    int r = ini_parse_stream(reader, &p, on_key, &p);
    flush(&p);
    /* inih goes on after a syntax error: it comes first if its line does. */
    if (r != 0 && !p.nomem && (!p.stop || (r > 0 && (unsigned)r < p.err_line))) {
        p.err_line = r > 0 ? (unsigned)r : 0;
        if (err && errlen)
            snprintf(err, errlen, "%s", r > 0 ? "syntax error" : "cannot parse");
        p.stop = 1;
    }
    pending_clear(&p);
    seen_clear(&p.sections);
    seen_clear(&p.keys);
    if (p.nomem)
        return -ENOMEM;
    if (!p.stop)
        return 0;
    return p.err_line ? (int)p.err_line : -EINVAL;
}
