#!/bin/bash
# Runs every benchmark: each bench/*.sh script (which sets up what it needs, runs its
# program from BUILD/bench and prints its figures).  Figures only; nothing here passes
# or fails on speed.
#   scripts/run-bench.sh BUILD_DIR [NAME_FILTER]
set -u
build=${1:?usage: run-bench.sh BUILD_DIR [FILTER]}
filter=${2:-}
top=$(cd "$(dirname "$0")/.." && pwd)
export SPLITNVE_BUILD=$(cd "$top" && cd "$build" && pwd) SPLITNVE_SRC=$top
status=0
for b in "$top"/bench/*.sh; do
    [ -f "$b" ] || continue
    name=$(basename "$b" .sh)
    [ -n "$filter" ] && [[ "$name" != *"$filter"* ]] && continue
    echo "== bench $name"
    bash "$b" || { echo "bench $name: FAILED (exit $?)"; status=1; }
done
exit $status
