#!/bin/bash
# libFuzzer driver.
#   scripts/fuzz.sh replay          run every target over its seed corpus and kept crashes
#   scripts/fuzz.sh run SECONDS     fuzz each target for SECONDS; new crashes are kept in
#                                   tests/fuzz/crashes/TARGET/ for replay by make check
# Seeds: tests/fuzz/corpus/TARGET/ (generated from proto/vectors by the target's own
# -seed_from_vectors mode where it has one, or written by its -write_seeds=DIR mode) and
# tests/fuzz/crashes/TARGET/.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:?usage: fuzz.sh replay|run SECONDS}
secs=${2:-300}
cd "$top"
status=0
for bin in build/fuzz/fuzz-*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin" | sed 's/^fuzz-//')
    corpus=tests/fuzz/corpus/$name
    crashes=tests/fuzz/crashes/$name
    mkdir -p "$corpus" "$crashes"
    work=build/fuzz/work-$name
    mkdir -p "$work"
    case $mode in
    replay)
        inputs=$(find "$corpus" "$crashes" -type f | wc -l)
        if [ "$inputs" -eq 0 ]; then echo "fuzz replay $name: no inputs"; continue; fi
        if "$bin" -runs=0 "$corpus" "$crashes" >"$work/replay.log" 2>&1 &&
           find "$crashes" -type f -exec "$bin" {} + >>"$work/replay.log" 2>&1; then
            echo "fuzz replay $name: $inputs inputs ok"
        else
            echo "fuzz replay $name: FAILED"; tail -n 40 "$work/replay.log"; status=1
        fi
        ;;
    run)
        echo "fuzzing $name for ${secs}s"
        if ! "$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$crashes/" \
             "$work" "$corpus" >"$work/run.log" 2>&1; then
            echo "fuzz $name: crash kept in $crashes"; status=1
        fi
        grep -E 'stat::number_of_executed_units|stat::peak_rss' "$work/run.log" | sed "s/^/  $name /" || true
        ;;
    esac
done
exit $status
