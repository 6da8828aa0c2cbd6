/* tagpool.h: the local tag (802.1Q VLAN ID) pool of one significance domain.
 *
 * A pool is built from ranges and reserved values; every VID 1..4094 is in one of four
 * states: outside the pool, free, in use, or held.  A released tag is held for the domain's
 * hold-down before it can go to another VN, so a VN that comes back in time gets its old tag
 * again (nnve_tagpool_claim).  Allocation honours the first free preferred tag, else takes
 * the lowest free one; a bitmap keeps it O(4096/64).  Time is injected (ms, monotonic).
 */
#ifndef NNVE_TAGPOOL_H
#define NNVE_TAGPOOL_H 1

#include <stdint.h>

struct nnve_tagpool;

struct nnve_tag_range {
    uint16_t lo, hi; /* inclusive, SNCP_MIN_VID..SNCP_MAX_VID */
};

enum nnve_tag_state {
    NNVE_TAG_OUTSIDE = 0, /* not in a range, or reserved */
    NNVE_TAG_FREE = 1,
    NNVE_TAG_USED = 2,
    NNVE_TAG_HELD = 3, /* released, in hold-down */
};

/* Creates a pool of the VIDs in `ranges` minus `reserved`.  Returns NULL on allocation
 * failure or an invalid range (lo > hi or outside 1..4094).  Caller destroys. */
struct nnve_tagpool *nnve_tagpool_create(const struct nnve_tag_range *ranges, unsigned n_ranges,
                                         const uint16_t *reserved, unsigned n_reserved,
                                         uint32_t hold_down_ms);
void nnve_tagpool_destroy(struct nnve_tagpool *p);

/* Allocates a tag: the first of prefs[0..n_prefs) that is free (or held past its hold-down),
 * else the lowest free one.  Returns 0 and *tag, or SNCP_E_TAG_POOL_EXHAUSTED with the pool
 * unchanged. */
int nnve_tagpool_alloc(struct nnve_tagpool *p, const uint16_t *prefs, unsigned n_prefs,
                       uint64_t now, uint16_t *tag);

/* Takes a specific tag that is free or held (the VN that held it came back, or state loaded
 * from disk).  Returns 0, -EBUSY if in use, or SNCP_E_INVALID_VALUE if outside the pool. */
int nnve_tagpool_claim(struct nnve_tagpool *p, uint16_t tag, uint64_t now);

/* Releases a tag in use: it is held until now + hold-down.  Tags outside the pool or not in
 * use are ignored (a tag kept across a reload that shrank the pool). */
void nnve_tagpool_release(struct nnve_tagpool *p, uint16_t tag, uint64_t now);

enum nnve_tag_state nnve_tagpool_state(const struct nnve_tagpool *p, uint16_t tag, uint64_t now);

/* Counts: tags in the pool, in use, held (at now). */
unsigned nnve_tagpool_size(const struct nnve_tagpool *p);
unsigned nnve_tagpool_used(const struct nnve_tagpool *p);
unsigned nnve_tagpool_held(const struct nnve_tagpool *p, uint64_t now);

#endif
