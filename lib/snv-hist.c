/* snv-hist.c: log-linear latency histogram (see snv-hist.h). */
#include "snv-hist.h"

#include <inttypes.h>
#include <string.h>

const uint32_t SNV_HIST_LE[SNV_HIST_LE_COUNT] = {
    50,    100,   250,    500,    1000,   2500,    5000,    10000,
    25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 10000000,
};

void snv_hist_init(struct snv_hist *h)
{
    memset(h, 0, sizeof *h);
}

/* Values below 8 have a bucket each; above, the doubling [2^e, 2^(e+1)) is split by the
 * three bits after the leading one. */
static unsigned bucket_of(uint64_t us)
{
    if (us < SNV_HIST_SUB)
        return (unsigned)us;
    unsigned e = 63u - (unsigned)__builtin_clzll(us);
    if (e >= 32)
        return SNV_HIST_BUCKETS - 1;
    return (e - 2) * SNV_HIST_SUB + (unsigned)((us >> (e - 3)) & (SNV_HIST_SUB - 1));
}

/* The largest value bucket i holds. */
static uint64_t bucket_top(unsigned i)
{
    if (i < SNV_HIST_SUB)
        return i;
    unsigned e = i / SNV_HIST_SUB + 2, sub = i % SNV_HIST_SUB;
    return ((uint64_t)(SNV_HIST_SUB + sub + 1) << (e - 3)) - 1;
}

void snv_hist_add_us(struct snv_hist *h, uint64_t us)
{
    if (!h)
        return;
    h->bucket[bucket_of(us)]++;
    for (unsigned i = 0; i < SNV_HIST_LE_COUNT; i++)
        if (us <= SNV_HIST_LE[i]) {
            h->le[i]++;
            break;
        }
    h->count++;
    h->sum_us += us;
    if (us > h->max_us)
        h->max_us = us;
}

uint64_t snv_hist_quantile_us(const struct snv_hist *h, double q)
{
    if (!h->count)
        return 0;
    /* the rank of the sample at quantile q, 1-based: the ceiling of q * count */
    double r = q * (double)h->count;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r)
        rank++;
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < SNV_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t top = i == SNV_HIST_BUCKETS - 1 ? h->max_us : bucket_top(i);
            return top < h->max_us ? top : h->max_us;
        }
    }
    return h->max_us;
}

json_t *snv_hist_json(const struct snv_hist *h)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "samples", json_integer((json_int_t)h->count));
    if (!h->count)
        return o;
    static const struct {
        const char *key;
        double q;
    } qs[] = {{"p50_us", 0.50}, {"p90_us", 0.90}, {"p99_us", 0.99}, {"p999_us", 0.999}};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        json_object_set_new(o, qs[i].key,
                            json_integer((json_int_t)snv_hist_quantile_us(h, qs[i].q)));
    json_object_set_new(o, "max_us", json_integer((json_int_t)h->max_us));
    json_object_set_new(o, "mean_us", json_integer((json_int_t)(h->sum_us / h->count)));
    return o;
}

/* Microseconds as seconds, without trailing zeros ("0.00005", "2.5", "10"). */
static void seconds_text(uint64_t us, char *buf, size_t len)
{
    snprintf(buf, len, "%" PRIu64 ".%06" PRIu64, us / 1000000, us % 1000000);
    char *end = buf + strlen(buf);
    while (end[-1] == '0')
        *--end = '\0';
    if (end[-1] == '.')
        end[-1] = '\0';
}

void snv_hist_write_prom(const struct snv_hist *h, FILE *f, const char *name, const char *help)
{
    char le[32];
    uint64_t below = 0;
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (unsigned i = 0; i < SNV_HIST_LE_COUNT; i++) {
        below += h->le[i];
        seconds_text(SNV_HIST_LE[i], le, sizeof le);
        fprintf(f, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name, le, below);
    }
    fprintf(f, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, h->count);
    seconds_text(h->sum_us, le, sizeof le);
    fprintf(f, "%s_sum %s\n%s_count %" PRIu64 "\n", name, le, name, h->count);
}
