/* lat.h: a series of latency samples (microseconds) with percentiles, for latency/show
 * and the benchmarks.  Keeps the first `cap` samples since the last reset and counts the
 * rest as dropped.  Not thread-safe: one thread records and reads.
 */
#ifndef TNVE_LAT_H
#define TNVE_LAT_H 1

#include <stdint.h>

#include <jansson.h>

struct tnve_lat {
    uint32_t *us;
    unsigned n, cap;
    uint64_t dropped;
};

/* Allocates room for `cap` samples.  Returns 0 or -ENOMEM (the series then records
 * nothing; tnve_lat_uninit() is still safe). */
int tnve_lat_init(struct tnve_lat *l, unsigned cap);
void tnve_lat_uninit(struct tnve_lat *l);
/* Records one sample of `ns` nanoseconds.  Accepts NULL. */
void tnve_lat_add_ns(struct tnve_lat *l, uint64_t ns);
void tnve_lat_reset(struct tnve_lat *l);
/* samples, p50_us, p90_us, p99_us, max_us (the latter when samples > 0), dropped.  New
 * reference, NULL on allocation failure. */
json_t *tnve_lat_json(const struct tnve_lat *l);

#endif
