/* cpu-ticks.h: what the machine's CPUs did during one measured window of a benchmark, from
 * the first line of /proc/stat: the time the hypervisor under this virtual machine gave
 * to others while it had work (steal: the neighbours' load, which no load average inside
 * the machine shows), the time idle CPUs waited for I/O, and the CPU time in all.  A
 * latency figure measured while several hundred milliseconds were stolen says more about
 * the neighbours than about the software; each window's figures are printed beside it.
 * Header-only: every benchmark program is one .c file. */
#ifndef SPLITNVE_BENCH_CPU_TICKS_H
#define SPLITNVE_BENCH_CPU_TICKS_H

#include <stdio.h>
#include <unistd.h>

struct cpu_ticks {
    unsigned long long steal, iowait, all; /* clock ticks since boot, all CPUs */
    int ok;                                /* read (0: no /proc/stat, or not this format) */
};

/* Reads the counters now into *t (t->ok 0 when they cannot be read). */
static inline void cpu_ticks_read(struct cpu_ticks *t)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "re");
    t->ok = f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                        &v[3], &v[4], &v[5], &v[6], &v[7]) == 8;
    if (f)
        fclose(f);
    /* user nice system idle iowait irq softirq steal */
    t->iowait = v[4];
    t->steal = v[7];
    t->all = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}

/* One measured window: its start is read once (the first cpu_window_start() after
 * cpu_window_init()), its end at cpu_window_end(). */
struct cpu_window {
    struct cpu_ticks start, end;
    int started;
};

static inline void cpu_window_init(struct cpu_window *w)
{
    *w = (struct cpu_window){0};
}

static inline void cpu_window_start(struct cpu_window *w)
{
    if (!w->started) {
        w->started = 1;
        cpu_ticks_read(&w->start);
    }
}

static inline void cpu_window_end(struct cpu_window *w)
{
    cpu_ticks_read(&w->end);
}

/* Prints, for window w: "  the machine meanwhile (WHAT): ...", and with table_row the line
 * TABLE|  CPU time stolen by the host meanwhile, WHAT (ms)|N|-|- .  Nothing when either
 * read failed or the window never started. */
static inline void cpu_window_print(const struct cpu_window *w, const char *what, int table_row)
{
    const struct cpu_ticks *a = &w->start, *b = &w->end;
    long hz = sysconf(_SC_CLK_TCK);
    if (!a->ok || !b->ok || hz <= 0 || b->all < a->all)
        return;
    double ms = 1000.0 / (double)hz;
    double steal = (double)(b->steal - a->steal) * ms,
           iowait = (double)(b->iowait - a->iowait) * ms;
    printf("  the machine meanwhile (%s): CPU time stolen by the host %.0f ms, idle waiting for "
           "I/O %.0f ms, of %.0f CPU-ms (%ld CPUs)\n",
           what, steal, iowait, (double)(b->all - a->all) * ms, sysconf(_SC_NPROCESSORS_ONLN));
    if (table_row)
        printf("TABLE|  CPU time stolen by the host meanwhile, %s (ms)|%.0f|-|-\n", what, steal);
}

#endif
