/* vn.c: VN identifiers and their text form (see vn.h). */
#include "vn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tnve_vn_set_id(struct tnve_vn *vn, const char *s)
{
    if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 8)
        return -EINVAL;
    unsigned long v = strtoul(s, NULL, 10);
    if (v < 1 || v > SNCP_MAX_VN_ID)
        return -EINVAL;
    vn->id = (uint32_t)v;
    return 0;
}

int tnve_vn_set_name(struct tnve_vn *vn, const char *s)
{
    if (!s || !*s)
        return -EINVAL;
    int n = snprintf(vn->name, sizeof vn->name, "%s", s);
    if (n < 0 || (size_t)n >= sizeof vn->name) {
        vn->name[0] = '\0';
        return -EINVAL;
    }
    return 0;
}

int tnve_vn_parse(const char *s, struct tnve_vn *vn)
{
    memset(vn, 0, sizeof *vn);
    if (!s || !*s)
        return -EINVAL;
    if (strspn(s, "0123456789") == strlen(s))
        return tnve_vn_set_id(vn, s);
    return tnve_vn_set_name(vn, s);
}

int tnve_vn_format(const struct tnve_vn *vn, char *buf, size_t cap)
{
    if (vn->id && vn->name[0])
        return snprintf(buf, cap, "%u/%s", vn->id, vn->name);
    if (vn->id)
        return snprintf(buf, cap, "%u", vn->id);
    if (vn->name[0])
        return snprintf(buf, cap, "%s", vn->name);
    return snprintf(buf, cap, "-");
}

int tnve_vn_is_set(const struct tnve_vn *vn)
{
    return vn->id != 0 || vn->name[0] != '\0';
}

int tnve_vn_equal(const struct tnve_vn *a, const struct tnve_vn *b)
{
    return a->id == b->id && strcmp(a->name, b->name) == 0;
}

int tnve_vn_designates(const struct tnve_vn *entry, const struct tnve_vn *q)
{
    if (!tnve_vn_is_set(q))
        return 0;
    if (q->id && q->id != entry->id)
        return 0;
    return !q->name[0] || strcmp(q->name, entry->name) == 0;
}
