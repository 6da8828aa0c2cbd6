/* lat.c: latency sample series (see lat.h). */
#include "lat.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int tnve_lat_init(struct tnve_lat *l, unsigned cap)
{
    memset(l, 0, sizeof *l);
    l->us = calloc(cap, sizeof *l->us);
    if (!l->us)
        return -ENOMEM;
    l->cap = cap;
    return 0;
}

void tnve_lat_uninit(struct tnve_lat *l)
{
    free(l->us);
    memset(l, 0, sizeof *l);
}

void tnve_lat_add_ns(struct tnve_lat *l, uint64_t ns)
{
    if (!l || !l->us)
        return;
    if (l->n >= l->cap) {
        l->dropped++;
        return;
    }
    uint64_t us = ns / 1000;
    l->us[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

void tnve_lat_reset(struct tnve_lat *l)
{
    l->n = 0;
    l->dropped = 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

json_t *tnve_lat_json(const struct tnve_lat *l)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    unsigned n = l->n;
    json_object_set_new(o, "samples", json_integer(n));
    uint32_t *v = n ? malloc(n * sizeof *v) : NULL;
    if (v) {
        memcpy(v, l->us, n * sizeof *v);
        qsort(v, n, sizeof *v, cmp_u32);
        json_object_set_new(o, "p50_us", json_integer(v[(n - 1) * 50 / 100]));
        json_object_set_new(o, "p90_us", json_integer(v[(n - 1) * 90 / 100]));
        json_object_set_new(o, "p99_us", json_integer(v[(n - 1) * 99 / 100]));
        json_object_set_new(o, "max_us", json_integer(v[n - 1]));
        free(v);
    }
    json_object_set_new(o, "dropped", json_integer((json_int_t)l->dropped));
    return o;
}
