/* vn.h: a VN as the agent names it, and its text form.
 *
 * A VN is given by its 24-bit VN ID and/or its name (RFC 8394 VN context).  Two VNs are
 * the same when both have an ID and the IDs are equal, else when their names are equal.
 */
#ifndef TNVE_VN_H
#define TNVE_VN_H 1

#include <stddef.h>
#include <stdint.h>

#include "sncp-msg.h"

struct tnve_vn {
    uint32_t id;                          /* 0 = not given */
    char name[SNCP_MAX_VN_NAME_LEN + 1];  /* "" = not given */
};

/* An all-digit string is an ID (1..SNCP_MAX_VN_ID), anything else a name (1..64 bytes).
 * Returns 0 or -EINVAL. */
int tnve_vn_parse(const char *s, struct tnve_vn *vn);
/* Sets the ID from decimal text (1..SNCP_MAX_VN_ID) or the name (1..64 bytes): 0/-EINVAL. */
int tnve_vn_set_id(struct tnve_vn *vn, const char *s);
int tnve_vn_set_name(struct tnve_vn *vn, const char *s);
/* "5000", "blue", "5000/blue" or "-" into buf; returns snprintf's length. */
int tnve_vn_format(const struct tnve_vn *vn, char *buf, size_t cap);
int tnve_vn_is_set(const struct tnve_vn *vn);
int tnve_vn_equal(const struct tnve_vn *a, const struct tnve_vn *b);

enum { TNVE_VN_STRLEN = 80 };

#endif
