#!/bin/bash
# Runs every test of one build: the Check unit suites, then the integration tests.
#   scripts/run-tests.sh BUILD_DIR [NAME_FILTER]
# Each test's output goes to BUILD_DIR/test-logs/NAME.log and is printed when it fails.
# Ends with the line "N passed, N failed[, N skipped]" and exits non-zero if anything failed
# (a test exiting 77 is skipped: the machine cannot run it).
set -u
build=${1:?usage: run-tests.sh BUILD_DIR [FILTER]}
filter=${2:-}
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$top" && cd "$build" && pwd)
logs=$build/test-logs
mkdir -p "$logs"
export SPLITNVE_BUILD=$build SPLITNVE_SRC=$top CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-60}

pass=0 fail=0 skip=0 failed=()
run() { # name cmd...
    local name=$1; shift
    [ -n "$filter" ] && [[ "$name" != *"$filter"* ]] && return 0
    local t0=$SECONDS
    local rc=0
    timeout 900 "$@" >"$logs/$name.log" 2>&1 || rc=$?
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1)); printf 'PASS %-40s %3ds\n' "$name" $((SECONDS - t0))
    elif [ $rc -eq 77 ]; then # the machine cannot run it (the test says why)
        skip=$((skip + 1)); printf 'SKIP %-40s %3ds  %s\n' "$name" $((SECONDS - t0)) \
            "$(grep -m 1 'SKIP' "$logs/$name.log")"
    else
        fail=$((fail + 1)); failed+=("$name"); printf 'FAIL %-40s %3ds\n' "$name" $((SECONDS - t0))
        tail -n 60 "$logs/$name.log" | sed 's/^/    | /'
    fi
}

for t in "$build"/tests/test-*; do
    [ -x "$t" ] || continue
    run "$(basename "$t")" "$t"
done
for t in "$top"/tests/integration/test-*.sh; do
    [ -f "$t" ] || continue
    run "$(basename "$t")" bash "$t"
done

echo "run-tests ($build): ${pass} passed, ${fail} failed$([ "$skip" -eq 0 ] || echo ", $skip skipped")"
[ "$fail" -eq 0 ] || { echo "failed: ${failed[*]}"; exit 1; }
