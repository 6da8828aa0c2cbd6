/* vec-compare.c: compares a test vector with messages a daemon really sent.
 *
 *   vec-compare VECTOR CAPTURE [select]     compare
 *   vec-compare --format HEX                print sncp_msg_format() of one message
 *
 * VECTOR is a file of proto/vectors/valid/; CAPTURE holds one "hex: ..." line per message
 * received (sncp-client --dump).  The captured message compared is the first one of the
 * vector's type (for a RESPONSE: with the vector's REQUEST_TYPE and STATUS).  Both are
 * decoded and compared field by field in sncp_msg_format() order: the same fields, in the
 * same order and number, with the same values except for the fields whose value depends on
 * the run (xid, names, identifiers, addresses, tag numbers, timers, reason texts), which are
 * compared by presence only.  Prints each difference; exit status 0 equal, 1 different or
 * no such message captured, 2 usage or unreadable input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sncp-msg.h"

enum { MAX_BYTES = SNCP_MAX_MSG_LEN, MAX_FIELDS = 300, MAX_TEXT = 65536 };

/* Fields compared by presence only. */
static const char *const masked[] = {
    "xid",     "node_id",      "session_epoch",  "keepalive_ms", "uplink_mac",    "vn_id",
    "vn_name", "tsi",          "addr",           "local_tag",    "preferred_tag", "reason",
    "port",    "hold_time_ms", "retry_after_ms", NULL,
};

static int is_masked(const char *key, size_t len)
{
    for (int i = 0; masked[i]; i++)
        if (strlen(masked[i]) == len && !strncmp(masked[i], key, len))
            return 1;
    return 0;
}

static int unhex(const char *h, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = 0;
    for (; h[0] && h[0] != '\n'; h += 2) {
        unsigned v;
        if (!h[1] || n >= cap || sscanf(h, "%2x", &v) != 1)
            return -1;
        out[n++] = (uint8_t)v;
    }
    *len = n;
    return 0;
}

/* Splits formatted text into fields (quoted strings keep their spaces). */
static int split(char *text, char **field, int max)
{
    int n = 0;
    char *p = text;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        if (n == max)
            return -1;
        field[n++] = p;
        int quoted = 0;
        for (; *p && (quoted || *p != ' '); p++) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == '"')
                quoted = !quoted;
        }
        if (*p)
            *p++ = '\0';
    }
    return n;
}

static int decode_text(const uint8_t *b, size_t len, struct sncp_msg *m, char *text)
{
    uint16_t bad = 0;
    if (sncp_msg_decode(b, len, m, &bad) < 0)
        return -1;
    sncp_msg_format(m, text, MAX_TEXT);
    return 0;
}

static int compare(char *vec_text, char *real_text)
{
    static char *vf[MAX_FIELDS], *rf[MAX_FIELDS];
    int nv = split(vec_text, vf, MAX_FIELDS), nr = split(real_text, rf, MAX_FIELDS);
    if (nv < 0 || nr < 0)
        return 1;
    int diff = 0;
    for (int i = 0; i < nv || i < nr; i++) {
        const char *v = i < nv ? vf[i] : "(none)", *r = i < nr ? rf[i] : "(none)";
        const char *ve = strchr(v, '='), *re = strchr(r, '=');
        size_t vk = ve ? (size_t)(ve - v) : strlen(v), rk = re ? (size_t)(re - r) : strlen(r);
        if (vk != rk || strncmp(v, r, vk)) {
            printf("field %d: vector %s, daemon %s\n", i, v, r);
            diff = 1;
            continue;
        }
        if (!is_masked(v, vk) && strcmp(v, r)) {
            printf("field %d: vector %s, daemon %s\n", i, v, r);
            diff = 1;
        }
    }
    return diff;
}

int main(int argc, char **argv)
{
    static uint8_t buf[MAX_BYTES];
    static char vtext[MAX_TEXT], rtext[MAX_TEXT], line[2 * MAX_BYTES + 64];
    static struct sncp_msg vm, rm;
    size_t len = 0;
    if (argc == 3 && !strcmp(argv[1], "--format")) {
        if (unhex(argv[2], buf, sizeof buf, &len) < 0 || decode_text(buf, len, &vm, vtext) < 0)
            return 2;
        puts(vtext);
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: vec-compare VECTOR CAPTURE | --format HEX\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    static char hex[2 * MAX_BYTES + 1];
    size_t hl = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "hex: ", 5))
            continue;
        size_t l = strcspn(line + 5, "\r\n");
        if (hl + l >= sizeof hex)
            break;
        memcpy(hex + hl, line + 5, l);
        hl += l;
    }
    fclose(f);
    hex[hl] = '\0';
    if (unhex(hex, buf, sizeof buf, &len) < 0 || decode_text(buf, len, &vm, vtext) < 0) {
        fprintf(stderr, "%s: vector does not decode\n", argv[1]);
        return 2;
    }
    f = fopen(argv[2], "r");
    if (!f) {
        perror(argv[2]);
        return 2;
    }
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, "hex: ", 5) || unhex(line + 5, buf, sizeof buf, &len) < 0 ||
            decode_text(buf, len, &rm, rtext) < 0 || rm.type != vm.type)
            continue;
        if (vm.type == SNCP_MSG_RESPONSE &&
            (rm.status != vm.status || rm.request_type != vm.request_type))
            continue;
        found = 1;
    }
    fclose(f);
    if (!found) {
        printf("%s: the daemon sent no %s like it\n", argv[1], sncp_msg_type_name(vm.type));
        return 1;
    }
    printf("vector: %s\ndaemon: %s\n", vtext, rtext);
    return compare(vtext, rtext);
}
