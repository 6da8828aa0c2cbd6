/* snv-hist.h: a latency histogram that lives as long as a daemon: constant memory, O(1) to
 * record, percentiles at any time, and the exact cumulative counts a Prometheus histogram
 * needs.
 *
 * Values are microseconds.  Below 8 µs each value has its bucket; above, each doubling is
 * split into 8 buckets, so a percentile is reported as its bucket's upper bound: never
 * below the true value, at most 12.5 % above it (and never above the largest value
 * recorded).  Values past 2^32 µs (71 minutes) count in the last bucket.  The Prometheus
 * bounds (SNV_HIST_LE) are counted exactly, apart from the buckets.  Not thread-safe: one
 * thread records and reads.
 */
#ifndef SNV_HIST_H
#define SNV_HIST_H 1

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

enum {
    SNV_HIST_SUB = 8,                     /* buckets per doubling */
    SNV_HIST_BUCKETS = SNV_HIST_SUB * 30, /* up to 2^32 µs */
    SNV_HIST_LE_COUNT = 16,               /* Prometheus bounds, +Inf apart */
};

/* The Prometheus bucket bounds, in microseconds: 50 µs to 10 s. */
extern const uint32_t SNV_HIST_LE[SNV_HIST_LE_COUNT];

struct snv_hist {
    uint64_t bucket[SNV_HIST_BUCKETS];
    uint64_t le[SNV_HIST_LE_COUNT]; /* samples <= SNV_HIST_LE[i] (not cumulative) */
    uint64_t count, sum_us, max_us;
};

void snv_hist_init(struct snv_hist *h);
/* Records one sample of `us` microseconds.  Accepts NULL. */
void snv_hist_add_us(struct snv_hist *h, uint64_t us);
/* The q-quantile (0 < q <= 1) in microseconds, as described above; 0 when empty. */
uint64_t snv_hist_quantile_us(const struct snv_hist *h, double q);
/* {samples, p50_us, p90_us, p99_us, p999_us, max_us, mean_us} (only samples when empty).
 * New reference, NULL on allocation failure. */
json_t *snv_hist_json(const struct snv_hist *h);
/* Writes the histogram `name` (e.g. "nnve_store_commit_seconds") in the Prometheus text
 * format: HELP, TYPE, the cumulative _bucket lines with +Inf, _sum and _count. */
void snv_hist_write_prom(const struct snv_hist *h, FILE *f, const char *name, const char *help);

#endif
