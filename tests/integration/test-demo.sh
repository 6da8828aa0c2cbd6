#!/bin/bash
# test-demo.sh: `make demo` as a test.
#
# Runs scripts/demo.sh against $SPLITNVE_BUILD non-interactively and checks that it exits 0,
# that every step of the story converged and that the key state changes appear in its output
# (tags allocated, TSIs activated / deactivated / de-associated, tags held then reclaimed),
# and that nothing it started is left running.  Then checks the failure paths: a step that
# cannot converge (a tag hold-down longer than the step deadline) must end the demo with
# status 1 and a message naming the step.  Last, DATAPLANE=uml (two racks inside User-Mode
# Linux) must exit 0 with a cross-rack ping that reaches and a cross-VN ping that is blocked.
# `make check` runs it once, with the sanitizers (`make demo` runs the plain build):
# run-tests: sanitizer stage
set -u

src=${SPLITNVE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${SPLITNVE_BUILD:-$src/build}
demo=$src/scripts/demo.sh

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TMPDIR=$tmp

fails=0
fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}
expect_line() { # FILE REGEX WHAT
    grep -Eq -- "$2" "$1" || fail "demo output lacks $3 (/$2/)"
}

# show_tail_if_failed FILE N BEFORE: the last N lines of the run's output FILE when a check
# failed since the failure count was BEFORE (the output goes with the temp dir; a run can
# exit 0 and still lack its final line).
show_tail_if_failed() {
    [ "$fails" -gt "$3" ] || return 0
    echo "---- last $2 lines of $(basename "$1") ----"
    tail -n "$2" "$1"
}

# leftovers DIR: processes whose command line names the demo's sandbox directory.
leftovers() {
    local p
    for p in /proc/[0-9]*; do
        tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$1" && echo "${p#/proc/}"
    done
}

# ---- the story ---------------------------------------------------------------------------
t0=$SECONDS
before=$fails
timeout 300 bash "$demo" "$build" </dev/null >"$tmp/demo.out" 2>&1
rc=$?
echo "demo: exit $rc after $((SECONDS - t0)) s"
[ "$rc" -eq 0 ] || fail "scripts/demo.sh exited with status $rc"

out=$tmp/demo.out
steps=$(grep -c 'converged in [0-9]* ms' "$out")
[ "$steps" -eq 12 ] || fail "expected 12 converged steps, saw $steps"
expect_line "$out" 'demo finished: every step converged, everything stopped' "the final line"
expect_line "$out" 'session: established hypervisor=hv1 ' "the TLS session of hv1"
expect_line "$out" 'vap: created domain=rack1 vn=5001 tag=[0-9]+' "a tag allocated for VN 5001"
expect_line "$out" 'vap: created domain=rack1 vn=5002 tag=[0-9]+' "a tag allocated for VN 5002"
expect_line "$out" 'tsi: activated tsi=0b1e0000-0000-4000-8000-000000000001/52:54:00:b1:00:01 vn=5001' \
    "blue-web activated in VN 5001 (metadata mapping)"
expect_line "$out" 'tsi: activated tsi=06ee0000-0000-4000-8000-000000000003/52:54:00:9e:00:01 vn=5002' \
    "green-app activated in VN 5002 (bridge rule mapping)"
expect_line "$out" 'tsi: deactivated tsi=06ee0000-0000-4000-8000-000000000003/' \
    "green-app deactivated by the managed save"
expect_line "$out" 'converged in [0-9]+ ms: .*green-app=associated' "green-app associated after the save"
expect_line "$out" 'operator: tsi deactivate tsi=0b1e0000-0000-4000-8000-000000000002/' \
    "the operator's deactivation of blue-db"
expect_line "$out" 'tsi: deassociated tsi=0b1e0000-0000-4000-8000-000000000001/' "blue-web de-associated"
expect_line "$out" 'vap: released domain=rack1 vn=5001 tag=[0-9]+ hold_down_ms=' "VN 5001's tag held down"
expect_line "$out" 'tags-in-use=0 tags-held=2' "two tags in hold-down"
expect_line "$out" 'rack1 +100-199 +100 +0 +0 +100' "the pool whole again after the hold-down"
# the live migration chapter, unless this machine cannot run it (it then says why)
if ! grep -Eq '^  skipped[:( ]' "$out"; then
    expect_line "$out" 'tsi: migration-complete tsi=5e100000-0000-4000-8000-0000000000aa/' \
        "the live migration's completion at the switch (chapter 13)"
fi
if grep -q 'FAILED' "$out"; then
    fail "the demo printed a failure"
    grep -A8 'FAILED' "$out" | head -20
fi
sandbox=$(sed -n 's/^  sandbox  *//p' "$out" | head -n 1)
if [ -z "$sandbox" ]; then
    fail "the demo did not name its sandbox"
else
    [ ! -e "$sandbox" ] || fail "the sandbox $sandbox was not removed"
    left=$(leftovers "$sandbox")
    [ -z "$left" ] || fail "processes left running from $sandbox: $left"
fi
show_tail_if_failed "$out" 60 "$before"

# ---- a step that cannot converge ---------------------------------------------------------
before=$fails
DEMO_TAG_HOLD_DOWN=1h DEMO_TIMEOUT=2 timeout 300 bash "$demo" "$build" </dev/null \
    >"$tmp/stuck.out" 2>&1
rc=$?
[ "$rc" -eq 1 ] || fail "a demo whose step cannot converge exited $rc, not 1"
expect_line "$tmp/stuck.out" 'FAILED: step "tag hold-down expiry" did not converge within 2 s' \
    "the name of the step that did not converge"
expect_line "$tmp/stuck.out" '^ +expected: .*vn5001=absent' "the expected state"
expect_line "$tmp/stuck.out" '^ +seen: .*vn5001=hold-down' "the state seen"
sandbox=$(sed -n 's/^  sandbox  *//p' "$tmp/stuck.out" | head -n 1)
if [ -n "$sandbox" ]; then
    [ ! -e "$sandbox" ] || fail "the failed demo left its sandbox $sandbox"
    left=$(leftovers "$sandbox")
    [ -z "$left" ] || fail "the failed demo left processes running: $left"
fi
show_tail_if_failed "$tmp/stuck.out" 40 "$before"

# ---- DATAPLANE=uml: the same control plane with real packets inside User-Mode Linux ---------
before=$fails
DATAPLANE=uml timeout 300 bash "$demo" "$build" </dev/null >"$tmp/uml.out" 2>&1
rc=$?
[ "$rc" -eq 0 ] || fail "DATAPLANE=uml exited $rc"
expect_line "$tmp/uml.out" 'vm1 \(blue\) -> vm4 \(blue\): reaches  \[as expected\]' "the cross-rack ping"
expect_line "$tmp/uml.out" 'vm3 \(red\) -> vm1 \(blue\): blocked  \[as expected\]' "VN isolation"
expect_line "$tmp/uml.out" 'demo complete' "the clean end"
grep -q UNEXPECTED "$tmp/uml.out" && fail "a DATAPLANE=uml step went wrong"
show_tail_if_failed "$tmp/uml.out" 40 "$before"

if [ "$fails" -ne 0 ]; then
    echo "test-demo: $fails failure(s)"
    exit 1
fi
echo "test-demo: ok"
