#!/bin/bash
# Runs every benchmark: each bench/*.sh script (which sets up what it needs, runs its
# program from BUILD/bench and prints its figures).  Figures only; nothing here passes
# or fails on speed.
#   scripts/run-bench.sh BUILD_DIR [NAME_FILTER]
#
# Summary table.  Any bench script (or a program it runs) may print lines
#     TABLE|figure|value|floor|ratio
# figure: what is measured, with its unit in parentheses, e.g.
#         "nnve-daemon request p99 at 5000/s, sync=full (ms)";
# value:  a number;
# floor:  the physical floor (or ceiling) the value is judged against, measured in the same
#         run, in the same unit; "-" when there is none;
# ratio:  value / floor (2 decimals); "-" when there is no floor.
# No "|" inside a field.  The lines are shown where they occur and collected: at the end this
# prints one table of all of them (in the order printed) and the machine's load during the
# run: load averages at the start and at the end, the number of CPUs, and the CPU time the
# hypervisor under this machine gave to others meanwhile (steal, from /proc/stat: the
# neighbours' load, which the load averages inside do not show).  The latency benchmarks
# also print the steal of each measured window beside its figures (bench/cpu-ticks.h).
set -u
build=${1:?usage: run-bench.sh BUILD_DIR [FILTER]}
filter=${2:-}
top=$(cd "$(dirname "$0")/.." && pwd)
export SPLITNVE_BUILD=$(cd "$top" && cd "$build" && pwd) SPLITNVE_SRC=$top
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# CPU ticks of /proc/stat's first line: "STEAL ALL" (all CPUs, since boot)
cpu_ticks() { awk '$1 == "cpu" { print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat; }
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
ticks_start=$(cpu_ticks)
status=0
for b in "$top"/bench/*.sh; do
    [ -f "$b" ] || continue
    name=$(basename "$b" .sh)
    [ -n "$filter" ] && [[ "$name" != *"$filter"* ]] && continue
    echo "== bench $name"
    set -o pipefail
    bash "$b" 2>&1 | tee -a "$out" ||
        { echo "bench $name: FAILED (exit $?)"; status=1; }
    set +o pipefail
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
ticks_end=$(cpu_ticks)
echo
echo "== summary"
awk -F'|' '
    { fig[NR] = $2; val[NR] = $3; flo[NR] = $4; rat[NR] = $5
      if (length($2) > w) w = length($2) }
    END {
        if (w < 6) w = 6
        printf "%-" w "s  %12s  %12s  %6s\n", "figure", "value", "floor", "ratio"
        for (i = 1; i <= NR; i++)
            printf "%-" w "s  %12s  %12s  %6s\n", fig[i], val[i], flo[i], rat[i]
    }' <(grep '^TABLE|' "$out")
echo "load average (1/5/15 min): $load_start at the start, $load_end at the end; $(nproc) CPUs"
awk -v a="$ticks_start" -v b="$ticks_end" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    if (y[2] > x[2] && hz > 0)
        printf "CPU time stolen by the host during the run: %.1f s of %.1f CPU-s (%.1f %%)\n",
            (y[1] - x[1]) / hz, (y[2] - x[2]) / hz, 100 * (y[1] - x[1]) / (y[2] - x[2]) }'
exit $status
