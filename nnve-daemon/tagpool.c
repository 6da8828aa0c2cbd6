/* tagpool.c: per-domain local tag allocator (see tagpool.h).
 *
 * Two bitmaps over VID 0..4095: `avail` (in the pool and not in use; held tags stay set) and
 * `used`.  A held tag is available once now >= its release time + hold-down; allocation
 * first looks for a never-held free tag so hold-downs are honoured whenever possible.
 */
#include "tagpool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sncp-error.h"
#include "sncp-msg.h"

enum { NVID = 4096, NWORDS = NVID / 64 };

struct nnve_tagpool {
    uint64_t in_pool[NWORDS];
    uint64_t used[NWORDS];
    uint64_t held[NWORDS];
    uint64_t held_until[NVID];
    uint32_t hold_down_ms;
    unsigned size, n_used;
};

static int bit(const uint64_t *map, unsigned v)
{
    return (map[v / 64] >> (v % 64)) & 1;
}

static void set_bit(uint64_t *map, unsigned v, int on)
{
    if (on)
        map[v / 64] |= UINT64_C(1) << (v % 64);
    else
        map[v / 64] &= ~(UINT64_C(1) << (v % 64));
}

struct nnve_tagpool *nnve_tagpool_create(const struct nnve_tag_range *ranges, unsigned n_ranges,
                                         const uint16_t *reserved, unsigned n_reserved,
                                         uint32_t hold_down_ms)
{
    struct nnve_tagpool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->hold_down_ms = hold_down_ms;
    for (unsigned i = 0; i < n_ranges; i++) {
        if (ranges[i].lo < SNCP_MIN_VID || ranges[i].hi > SNCP_MAX_VID ||
            ranges[i].lo > ranges[i].hi) {
            free(p);
            return NULL;
        }
        for (unsigned v = ranges[i].lo; v <= ranges[i].hi; v++)
            set_bit(p->in_pool, v, 1);
    }
    for (unsigned i = 0; i < n_reserved; i++)
        if (reserved[i] < NVID)
            set_bit(p->in_pool, reserved[i], 0);
    for (unsigned v = 0; v < NVID; v++)
        p->size += bit(p->in_pool, v);
    return p;
}

void nnve_tagpool_destroy(struct nnve_tagpool *p)
{
    free(p);
}

static int is_available(const struct nnve_tagpool *p, unsigned v, uint64_t now)
{
    if (v >= NVID || !bit(p->in_pool, v) || bit(p->used, v))
        return 0;
    return !bit(p->held, v) || now >= p->held_until[v];
}

static void take(struct nnve_tagpool *p, unsigned v)
{
    set_bit(p->used, v, 1);
    set_bit(p->held, v, 0);
    p->n_used++;
}

int nnve_tagpool_alloc(struct nnve_tagpool *p, const uint16_t *prefs, unsigned n_prefs,
                       uint64_t now, uint16_t *tag)
{
    for (unsigned i = 0; i < n_prefs; i++) {
        if (is_available(p, prefs[i], now)) {
            take(p, prefs[i]);
            *tag = prefs[i];
            return 0;
        }
    }
    /* Never-held free tags first, then held ones whose hold-down is over. */
    for (unsigned w = 0; w < NWORDS; w++) {
        uint64_t free_bits = p->in_pool[w] & ~p->used[w] & ~p->held[w];
        if (free_bits) {
            unsigned v = w * 64 + (unsigned)__builtin_ctzll(free_bits);
            take(p, v);
            *tag = (uint16_t)v;
            return 0;
        }
    }
    for (unsigned w = 0; w < NWORDS; w++) {
        uint64_t held_bits = p->in_pool[w] & ~p->used[w] & p->held[w];
        while (held_bits) {
            unsigned v = w * 64 + (unsigned)__builtin_ctzll(held_bits);
            if (now >= p->held_until[v]) {
                take(p, v);
                *tag = (uint16_t)v;
                return 0;
            }
            held_bits &= held_bits - 1;
        }
    }
    return SNCP_E_TAG_POOL_EXHAUSTED;
}

int nnve_tagpool_claim(struct nnve_tagpool *p, uint16_t tag, uint64_t now)
{
    (void)now;
    if (tag >= NVID || !bit(p->in_pool, tag))
        return SNCP_E_INVALID_VALUE;
    if (bit(p->used, tag))
        return -EBUSY;
    take(p, tag);
    return 0;
}

void nnve_tagpool_release(struct nnve_tagpool *p, uint16_t tag, uint64_t now)
{
    if (tag >= NVID || !bit(p->in_pool, tag) || !bit(p->used, tag))
        return;
    set_bit(p->used, tag, 0);
    set_bit(p->held, tag, 1);
    p->held_until[tag] = now + p->hold_down_ms;
    p->n_used--;
}

enum nnve_tag_state nnve_tagpool_state(const struct nnve_tagpool *p, uint16_t tag, uint64_t now)
{
    if (tag >= NVID || !bit(p->in_pool, tag))
        return NNVE_TAG_OUTSIDE;
    if (bit(p->used, tag))
        return NNVE_TAG_USED;
    if (bit(p->held, tag) && now < p->held_until[tag])
        return NNVE_TAG_HELD;
    return NNVE_TAG_FREE;
}

unsigned nnve_tagpool_size(const struct nnve_tagpool *p)
{
    return p->size;
}

unsigned nnve_tagpool_used(const struct nnve_tagpool *p)
{
    return p->n_used;
}

unsigned nnve_tagpool_held(const struct nnve_tagpool *p, uint64_t now)
{
    unsigned n = 0;
    for (unsigned v = 0; v < NVID; v++)
        if (nnve_tagpool_state(p, (uint16_t)v, now) == NNVE_TAG_HELD)
            n++;
    return n;
}
