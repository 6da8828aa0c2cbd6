#!/bin/bash
# Runs every test of one build: the Check unit suites, then the integration tests.
#   scripts/run-tests.sh [--plain-stage] BUILD_DIR [NAME_FILTER]
# Each test's output goes to BUILD_DIR/test-logs/NAME.log and is printed when it fails.
# A test that exits 77 is skipped (its last line says why); a skip is listed, never a pass.
# --plain-stage leaves out the tests that `make check` runs once, in its sanitizer stage:
# those that boot User-Mode Linux (inside UML that is a UBSan build, as ASan cannot run
# there), and the long whole-system tests that carry the line "# run-tests: sanitizer stage"
# (the demo, the model-based random test): run twice they would take the time of a dozen
# others, and the sanitizer build finds all that the plain one would, and more.
# Ends with the line "N passed, N failed, N skipped" and exits non-zero if anything failed.
set -u
usage() { sed -n '2,11s/^# \{0,1\}//p' "$0"; }
case ${1:-} in
-h | --help) usage; exit 0 ;;
-*) [ "$1" = --plain-stage ] || { echo "run-tests.sh: unknown option $1" >&2; usage >&2; exit 2; } ;;
esac
plain_stage=
[ "${1:-}" = --plain-stage ] && { plain_stage=1; shift; }
build=${1:?usage: run-tests.sh [--plain-stage] BUILD_DIR [FILTER]}
filter=${2:-}
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$top" && cd "$build" 2>/dev/null && pwd) ||
    { echo "run-tests.sh: ${1}: no such build directory (make builds build/)" >&2; exit 2; }
logs=$build/test-logs
mkdir -p "$logs"
export SPLITNVE_BUILD=$build SPLITNVE_SRC=$top CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-60}

pass=0 fail=0 skip=0 failed=() skipped=() reasons=()
run() { # name cmd...
    local name=$1 st; shift
    [ -n "$filter" ] && [[ "$name" != *"$filter"* ]] && return 0
    local t0=$SECONDS
    timeout 900 "$@" >"$logs/$name.log" 2>&1
    st=$?
    if [ $st -eq 0 ]; then
        pass=$((pass + 1)); printf 'PASS %-40s %3ds\n' "$name" $((SECONDS - t0))
    elif [ $st -eq 77 ]; then
        skip=$((skip + 1)); skipped+=("$name")
        printf 'SKIP %-40s %3ds  %s\n' "$name" $((SECONDS - t0)) "$(tail -n 1 "$logs/$name.log")"
    else
        fail=$((fail + 1)); failed+=("$name"); printf 'FAIL %-40s %3ds\n' "$name" $((SECONDS - t0))
        tail -n 60 "$logs/$name.log" | sed 's/^/    | /'
        # the test's own first failure line (scripts: "FAIL: ...", Check: "file:line:F:..."),
        # repeated in the summary so that it survives a reader who sees only the last lines
        reasons+=("$name: $(grep -m 1 -E 'FAIL:|:[FE]:' "$logs/$name.log" | cut -c 1-300)")
    fi
}

for t in "$build"/tests/test-*; do
    [ -x "$t" ] || continue
    run "$(basename "$t")" "$t"
done
for t in "$top"/tests/integration/test-*.sh; do
    [ -f "$t" ] || continue
    if [ -n "$plain_stage" ]; then
        later=
        if grep -q 'tests/uml/uml-run.sh\|racks_host_run' "$t"; then
            later='boots User-Mode Linux: runs in the sanitizer stage'
        elif grep -qx '# run-tests: sanitizer stage' "$t"; then
            later='long whole-system test: runs once, in the sanitizer stage'
        fi
        if [ -n "$later" ]; then
            [ -n "$filter" ] && [[ "$(basename "$t")" != *"$filter"* ]] && continue
            printf 'LATER %-39s %s\n' "$(basename "$t")" "$later"
            continue
        fi
    fi
    run "$(basename "$t")" bash "$t"
done

echo "run-tests ($build): ${pass} passed, ${fail} failed, ${skip} skipped${skipped:+ (${skipped[*]})}"
[ "$fail" -eq 0 ] || {
    printf '  %s\n' "${reasons[@]}"
    echo "failed: ${failed[*]} (logs: $logs)"
    exit 1
}
