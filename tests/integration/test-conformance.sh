#!/bin/bash
# proto/CONFORMANCE.md names only sections, code and tests that exist
# (scripts/check-conformance.sh), and the check fails on a row naming a test, a function or
# a section that does not exist, and on pending rows only when strict.
set -euo pipefail
: "${SPLITNVE_SRC:?set SPLITNVE_SRC}"
CHECK=$SPLITNVE_SRC/scripts/check-conformance.sh
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

SNCP_CONFORMANCE_STRICT=1 "$CHECK" "$SPLITNVE_SRC" || fail "the conformance matrix names something that does not exist"
ok "every row of the matrix names existing sections, code and tests"

# A copy of the tree whose matrix we can break.
mkdir "$T/src" "$T/src/proto"
for d in lib nnve-daemon tnve-agent tests; do ln -s "$SPLITNVE_SRC/$d" "$T/src/$d"; done
cp "$SPLITNVE_SRC/proto/PROTOCOL.md" "$T/src/proto/"
m=$SPLITNVE_SRC/proto/CONFORMANCE.md
breaks=(
    "s/test_transitions\`/test_no_such_test\`/"
    "s/test-nnve-operator.sh:deactivate\`/test-nnve-operator.sh:no such ok line\`/"
    "s/state.c:req_tsi_update\`/state.c:req_no_such_function\`/"
    "s/| §6.9, §9.3 |/| §6.99 |/"
    "s/| ok |\$/| okay |/"
)
for b in "${breaks[@]}"; do
    sed "$b" "$m" >"$T/src/proto/CONFORMANCE.md"
    cmp -s "$m" "$T/src/proto/CONFORMANCE.md" && fail "break '$b' changed nothing"
    if "$CHECK" "$T/src" >"$T/out" 2>&1; then
        cat "$T/out"
        fail "a matrix broken by '$b' passed the check"
    fi
    grep -q '^FAIL' "$T/out" || fail "no FAIL line for '$b'"
done
ok "a row naming a missing test, ok line, function or section, or a bad status, fails"

# A pending row with a missing test passes, and fails when strict.
sed 's/test_transitions` | ok |$/test_no_such_test` | pending |/' "$m" >"$T/src/proto/CONFORMANCE.md"
grep -q 'test_no_such_test` | pending |' "$T/src/proto/CONFORMANCE.md" || fail "no pending row made"
"$CHECK" "$T/src" >"$T/out" 2>&1 || { cat "$T/out"; fail "a pending row failed without strict"; }
grep -q '^pending .*test_no_such_test' "$T/out" || fail "pending row not listed"
SNCP_CONFORMANCE_STRICT=1 "$CHECK" "$T/src" >"$T/out" 2>&1 && fail "a pending row with a missing test passed in strict mode"
ok "pending rows fail only with SNCP_CONFORMANCE_STRICT=1"
