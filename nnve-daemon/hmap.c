/* hmap.c: open-addressing pointer hash table (see hmap.h). */
#include "hmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void nnve_hmap_init(struct nnve_hmap *m)
{
    m->slots = NULL;
    m->mask = 0;
    m->n = 0;
}

void nnve_hmap_uninit(struct nnve_hmap *m)
{
    free(m->slots);
    nnve_hmap_init(m);
}

static void place(struct nnve_hmap_slot *slots, size_t mask, uint32_t hash, void *ptr)
{
    size_t i = hash & mask;
    while (slots[i].ptr)
        i = (i + 1) & mask;
    slots[i].ptr = ptr;
    slots[i].hash = hash;
}

static int grow(struct nnve_hmap *m)
{
    size_t cap = m->slots ? (m->mask + 1) * 2 : 16;
    struct nnve_hmap_slot *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -ENOMEM;
    if (m->slots) {
        for (size_t i = 0; i <= m->mask; i++)
            if (m->slots[i].ptr)
                place(slots, cap - 1, m->slots[i].hash, m->slots[i].ptr);
        free(m->slots);
    }
    m->slots = slots;
    m->mask = cap - 1;
    return 0;
}

int nnve_hmap_insert(struct nnve_hmap *m, uint32_t hash, void *ptr)
{
    if (!m->slots || (m->n + 1) * 4 > (m->mask + 1) * 3) {
        int err = grow(m);
        if (err)
            return err;
    }
    place(m->slots, m->mask, hash, ptr);
    m->n++;
    return 0;
}

int nnve_hmap_remove(struct nnve_hmap *m, uint32_t hash, const void *ptr)
{
    if (!m->slots)
        return -ENOENT;
    size_t i = hash & m->mask;
    while (m->slots[i].ptr != ptr) {
        if (!m->slots[i].ptr)
            return -ENOENT;
        i = (i + 1) & m->mask;
    }
    /* Backward shift: move later entries of the probe run into the hole when their home
     * slot does not lie cyclically in (hole, j]. */
    size_t hole = i;
    size_t j = i;
    for (;;) {
        j = (j + 1) & m->mask;
        if (!m->slots[j].ptr)
            break;
        size_t home = m->slots[j].hash & m->mask;
        int between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!between) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole].ptr = NULL;
    m->slots[hole].hash = 0;
    m->n--;
    return 0;
}

void *nnve_hmap_first(const struct nnve_hmap *m, uint32_t hash, struct nnve_hmap_iter *it)
{
    it->hash = hash;
    if (!m->slots) {
        it->pos = 0;
        return NULL;
    }
    it->pos = (hash & m->mask);
    for (;;) {
        const struct nnve_hmap_slot *s = &m->slots[it->pos];
        if (!s->ptr)
            return NULL;
        if (s->hash == hash)
            return s->ptr;
        it->pos = (it->pos + 1) & m->mask;
    }
}

void *nnve_hmap_next(const struct nnve_hmap *m, struct nnve_hmap_iter *it)
{
    if (!m->slots)
        return NULL;
    for (;;) {
        it->pos = (it->pos + 1) & m->mask;
        const struct nnve_hmap_slot *s = &m->slots[it->pos];
        if (!s->ptr)
            return NULL;
        if (s->hash == it->hash)
            return s->ptr;
    }
}

void *nnve_hmap_at(const struct nnve_hmap *m, size_t *pos)
{
    if (!m->slots)
        return NULL;
    while (*pos <= m->mask) {
        void *p = m->slots[(*pos)++].ptr;
        if (p)
            return p;
    }
    return NULL;
}

uint32_t nnve_hash_bytes(const void *p, size_t len, uint32_t basis)
{
    const uint8_t *b = p;
    uint32_t h = 2166136261u ^ basis;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 16777619u;
    }
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

uint32_t nnve_hash_string(const char *s, uint32_t basis)
{
    return nnve_hash_bytes(s, strlen(s), basis);
}
