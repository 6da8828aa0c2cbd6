/* hmap.h: a compact open-addressing hash table of pointers for nnve-daemon.
 *
 * Each slot holds a caller-computed 32-bit hash and a pointer to the caller's object; the
 * table never looks inside objects, so equality is the caller's (iterate the entries that
 * share a hash and compare).  Several objects may share a hash and even a key (the TSI
 * table keeps every instance of one TSI_ID under one hash).  Linear probing with
 * backward-shift deletion: no tombstones, lookups stay short after churn.  16 bytes per
 * slot, load factor at most 3/4.
 */
#ifndef NNVE_HMAP_H
#define NNVE_HMAP_H 1

#include <stddef.h>
#include <stdint.h>

struct nnve_hmap_slot {
    void *ptr; /* NULL: empty */
    uint32_t hash;
};

struct nnve_hmap {
    struct nnve_hmap_slot *slots;
    size_t mask; /* capacity - 1; capacity is a power of two, 0 slots before first insert */
    size_t n;
};

/* Position of an iteration over the entries of one hash. */
struct nnve_hmap_iter {
    size_t pos;
    uint32_t hash;
};

void nnve_hmap_init(struct nnve_hmap *m);
/* Frees the slots (not the objects). */
void nnve_hmap_uninit(struct nnve_hmap *m);

/* Inserts ptr (non-NULL) under hash.  Returns 0 or -ENOMEM (table unchanged). */
int nnve_hmap_insert(struct nnve_hmap *m, uint32_t hash, void *ptr);
/* Removes the entry holding exactly ptr.  Returns 0 or -ENOENT. */
int nnve_hmap_remove(struct nnve_hmap *m, uint32_t hash, const void *ptr);

/* First / next object stored under hash; NULL at the end.  The table must not be modified
 * during an iteration except by removing the object just returned and restarting. */
void *nnve_hmap_first(const struct nnve_hmap *m, uint32_t hash, struct nnve_hmap_iter *it);
void *nnve_hmap_next(const struct nnve_hmap *m, struct nnve_hmap_iter *it);

/* Every object: for (size_t i = 0; (p = nnve_hmap_at(m, &i)) != NULL;) ...  Same rule. */
void *nnve_hmap_at(const struct nnve_hmap *m, size_t *pos);

static inline size_t nnve_hmap_count(const struct nnve_hmap *m)
{
    return m->n;
}

/* Hash helpers (FNV-1a with a final avalanche). */
uint32_t nnve_hash_bytes(const void *p, size_t len, uint32_t basis);
uint32_t nnve_hash_string(const char *s, uint32_t basis);

#endif
