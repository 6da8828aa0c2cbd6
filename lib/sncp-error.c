/* sncp-error.c: text, tokens and wire-status mapping for the project's error codes.
 *
 * The tables come from SNCP_STATUS_MAP / SNCP_LOCAL_ERROR_MAP in sncp-error.h, so a code
 * added there gets its text and token here without further edits.  System errors (-errno)
 * are described by the C library (strerrordesc_np / strerrorname_np: thread-safe, static).
 */
#include "sncp-error.h"

#include <stdio.h>
#include <string.h>

struct err_entry {
    const char *token;
    const char *text;
};

static const struct err_entry status_table[] = {
#define SNCP_XX_ENTRY(name, n, token, text) [n] = {token, text},
    SNCP_STATUS_MAP(SNCP_XX_ENTRY)
#undef SNCP_XX_ENTRY
};

static const struct err_entry local_table[] = {
#define SNCP_XX_ENTRY(name, n, token, text) [(n) - SNCP_ERR_LOCAL] = {token, text},
    SNCP_LOCAL_ERROR_MAP(SNCP_XX_ENTRY)
#undef SNCP_XX_ENTRY
};

#define N_STATUS (sizeof status_table / sizeof status_table[0])
#define N_LOCAL (sizeof local_table / sizeof local_table[0])

/* Entry for an SNCP_E_* code, or NULL when err is not one this build knows. */
static const struct err_entry *sncp_entry(int err)
{
    if (err > -SNCP_ERR_BASE) {
        return NULL;
    }
    long n = -(long)err - SNCP_ERR_BASE;
    if (n >= 0 && (unsigned long)n < N_STATUS && status_table[n].token) {
        return &status_table[n];
    }
    if (n >= SNCP_ERR_LOCAL && (unsigned long)(n - SNCP_ERR_LOCAL) < N_LOCAL &&
        local_table[n - SNCP_ERR_LOCAL].token) {
        return &local_table[n - SNCP_ERR_LOCAL];
    }
    return NULL;
}

const char *sncp_strerror(int err)
{
    if (err == 0) {
        return status_table[0].text;
    }
    const struct err_entry *e = sncp_entry(err);
    if (e) {
        return e->text;
    }
    if (err < 0 && err > -SNCP_ERR_BASE) {
        const char *s = strerrordesc_np(-err);
        if (s) {
            return s;
        }
    }
    return "unknown error";
}

const char *sncp_error_token(int err)
{
    static _Thread_local char buf[32];

    if (err == 0) {
        return status_table[0].token;
    }
    const struct err_entry *e = sncp_entry(err);
    if (e) {
        return e->token;
    }
    if (err < 0 && err > -SNCP_ERR_BASE) {
        const char *s = strerrorname_np(-err);
        if (s) {
            return s;
        }
        snprintf(buf, sizeof buf, "errno-%d", -err);
        return buf;
    }
    snprintf(buf, sizeof buf, "error-%d", err);
    return buf;
}

uint16_t sncp_status_from_error(int err)
{
    if (err == 0) {
        return SNCP_STATUS_SUCCESS;
    }
    if (err <= -SNCP_ERR_BASE) {
        long n = -(long)err - SNCP_ERR_BASE;
        if (n > 0 && (unsigned long)n < N_STATUS && status_table[n].token) {
            return (uint16_t)n;
        }
    }
    return SNCP_STATUS_INTERNAL;
}

int sncp_error_from_status(uint16_t status)
{
    if (status == SNCP_STATUS_SUCCESS) {
        return 0;
    }
    return -(SNCP_ERR_BASE + (int)status);
}

const char *sncp_status_token(uint16_t status)
{
    static _Thread_local char buf[24];

    if (status < N_STATUS && status_table[status].token) {
        return status_table[status].token;
    }
    snprintf(buf, sizeof buf, "status-%u", (unsigned)status);
    return buf;
}

const char *sncp_status_text(uint16_t status)
{
    if (status < N_STATUS && status_table[status].text) {
        return status_table[status].text;
    }
    return "unknown status";
}
