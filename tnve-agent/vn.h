/* vn.h: a VN as the agent names it, and its text form.
 *
 * A VN is given by its 24-bit VN ID and/or its name (RFC 8394 VN context).  What a vNIC
 * names is resolved by the nNVE to one catalogue entry (PROTOCOL.md §4.4), whose VN_ID and
 * VN_NAME it returns: until then two forms are the same VN only when they are equal; after,
 * a form designates the entry when every part it gives (ID, name) is the entry's.
 */
#ifndef TNVE_VN_H
#define TNVE_VN_H 1

#include <stddef.h>
#include <stdint.h>

#include "sncp-msg.h"

struct tnve_vn {
    uint32_t id;                         /* 0 = not given */
    char name[SNCP_MAX_VN_NAME_LEN + 1]; /* "" = not given */
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
/* 1 when a and b are the same form (same ID or none, same name or none), else 0. */
int tnve_vn_equal(const struct tnve_vn *a, const struct tnve_vn *b);
/* 1 when the form q designates the catalogue entry `entry` (as the nNVE returned it): q
 * gives an ID or a name, and each part q gives equals the entry's; else 0.  An ID and a
 * name of two different entries designate neither (the nNVE answers CONFLICT). */
int tnve_vn_designates(const struct tnve_vn *entry, const struct tnve_vn *q);

enum { TNVE_VN_STRLEN = 80 };

#endif
