#!/bin/bash
# Adversarial durability, the disk's syncs: with sync = full an answer may only leave once the
# commit it acknowledges is synced.  strace, attached to the running daemon, makes every
# fdatasync slow (DELAY_MS: a disk that takes long to make writes durable), then fail (EIO:
# a disk that lost them).  What must hold:
#  1. Slow syncs: hv1's VN_CONNECT is answered no sooner than DELAY_MS after its HELLO's
#     answer (its commit's sync came in between); hv2's HELLO, sent while that sync runs,
#     waits for a sync of its own (DELAY_MS from hv1's answer).  Nothing fails.
#  2. Failing syncs: a request is answered INTERNAL_ERROR, not success; the daemon enters
#     degraded mode and refuses even the retry while the syncs fail.
#  3. The syncs work again: the daemon leaves degraded mode by itself and the retry is
#     acknowledged; kill -9 and restart: every acknowledged VN connection is there, and the
#     request that failed left nothing behind before its retry.
source "$(dirname "$0")/nnve-lib.bash"
command -v strace >/dev/null || fail "strace is missing (make deps installs it)"

DELAY_MS=2000
SPID=
sync_cleanup() {
    local rc=$?
    set +e # (exit $rc) below must not end the script before cleanup runs
    if [ -n "$SPID" ]; then kill -INT "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; fi
    (exit $rc)
    cleanup
}
trap sync_cleanup EXIT

# trace_attach INJECTION: strace on every thread of the daemon, each fdatasync injected as
# told; returns once it is attached (<= 10 s).
trace_attach() {
    : >"$T/strace.err"
    strace -f -p "$DPID" -o "$T/strace.out" -e trace=fdatasync -e inject=fdatasync:"$1" \
        2>"$T/strace.err" &
    SPID=$!
    wait_for "strace attached" 10 grep -q 'attached' "$T/strace.err"
}
trace_detach() {
    kill -INT "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=
}
counter() { ctl show counters | jq -r --arg k "$1" '.[$k]'; }
# stamped NAME: runs $T/NAME.script as hypervisor NAME in the background; each line of its
# output is prefixed with the time it arrived (ms since the epoch): $T/NAME.out.
stamped() {
    (client "$1" --timeout 30000 <"$T/$1.script" 2>>"$T/client.log" |
        while IFS= read -r l; do printf '%s %s\n' "$((${EPOCHREALTIME/./} / 1000))" "$l"; done \
            >"$T/$1.out") &
    CPIDS+=($!)
}
# answer NAME REQUEST: "TIME STATUS" of the first answer to REQUEST (empty: none yet).
answer() {
    local l
    l=$(grep -F '"type":"RESPONSE"' "$T/$1.out" 2>/dev/null | grep -F "\"request\":\"$2\"" |
        head -1) || true
    [ -n "$l" ] && printf '%s %s\n' "${l%% *}" "$(jq -r .status <<<"${l#* }")"
}
answered() { [ -n "$(answer "$@")" ]; }
vns() { ctl show vns | jq -c '[.[].vn_id] | sort'; }

write_conf "sync = full"
start_daemon

# 1. Slow syncs.
trace_attach "delay_exit=${DELAY_MS}000"
printf 'hello node=hv1 epoch=1\nconnect vn=5000\nquit\n' >"$T/hv1.script"
printf 'hello node=hv2 epoch=1\nquit\n' >"$T/hv2.script"
stamped hv1
wait_for "hv1's HELLO answered" 20 answered hv1 HELLO
read -r h1 s <<<"$(answer hv1 HELLO)"
[ "$s" = success ] || fail "hv1's HELLO: $s"
sleep 0.5 # hv1's VN_CONNECT is in its sync now (it left with the HELLO's answer)
stamped hv2
wait_for "hv1's VN_CONNECT answered" 20 answered hv1 VN_CONNECT
wait_for "hv2's HELLO answered" 20 answered hv2 HELLO
read -r c1 s <<<"$(answer hv1 VN_CONNECT)"
[ "$s" = success ] || fail "hv1's VN_CONNECT: $s"
read -r h2 s <<<"$(answer hv2 HELLO)"
[ "$s" = success ] || fail "hv2's HELLO: $s"
[ $((c1 - h1)) -ge $((DELAY_MS * 9 / 10)) ] ||
    fail "VN_CONNECT answered $((c1 - h1)) ms after the HELLO: before its commit's sync returned"
d=$((h2 > c1 ? h2 - c1 : c1 - h2))
[ "$d" -ge $((DELAY_MS * 9 / 10)) ] ||
    fail "hv2's HELLO and hv1's VN_CONNECT answered $d ms apart: not after a sync each"
grep -q 'fdatasync(.*) *= 0 (DELAYED)' "$T/strace.out" || fail "no delayed sync seen: $(head "$T/strace.out")"
ok "slow syncs: answers wait for their sync (VN_CONNECT +$((c1 - h1)) ms after the HELLO, hv2's HELLO $d ms from it)"
trace_detach
wait "${CPIDS[@]}" 2>/dev/null || true
CPIDS=()

# 2. Failing syncs.
trace_attach "error=EIO"
printf 'hello node=hv1 epoch=1\nconnect vn=5001\nsleep 500\nconnect vn=5001\nquit\n' >"$T/hv1.script"
stamped hv1
two_connects() { [ "$(grep -cF '"request":"VN_CONNECT"' "$T/hv1.out")" -ge 2 ]; }
wait_for "hv1's VN_CONNECTs answered" 20 two_connects
statuses=$(grep -F '"request":"VN_CONNECT"' "$T/hv1.out" | cut -d' ' -f2- | jq -r .status |
    sort -u | paste -sd,)
[ "$statuses" = internal-error ] || fail "VN_CONNECT over failing syncs: $statuses"
[ "$(counter degraded)" = 1 ] || fail "not in degraded mode with failing syncs"
grep -q 'err state: entering degraded mode' "$T/daemon.log" || fail "no error line entering degraded mode"
grep -q 'fdatasync(.*) *= -1 EIO' "$T/strace.out" || fail "no failed sync seen: $(head "$T/strace.out")"
[ "$(vns)" = '[5000]' ] || fail "a VN answered INTERNAL_ERROR is in memory: $(vns)"
ok "failing syncs: INTERNAL_ERROR, the retry too; degraded mode; memory holds what was acknowledged"

# 3. The syncs work again.
trace_detach
wait "${CPIDS[@]}" 2>/dev/null || true
CPIDS=()
not_degraded() { [ "$(counter degraded)" = 0 ]; }
wait_for "leaving degraded mode" 20 not_degraded
grep -q 'info state: leaving degraded mode' "$T/daemon.log" || fail "no info line leaving degraded mode"
[ "$(vns)" = '[5000]' ] || fail "after recovery: $(vns)"
printf 'hello node=hv1 epoch=1\nconnect vn=5001\nquit\n' >"$T/hv1.script"
out=$(client hv1 --timeout 10000 <"$T/hv1.script")
[ "$(status_of "$out" VN_CONNECT)" = success ] || fail "retry after recovery: $out"
kill -9 "$DPID"
wait "$DPID" 2>/dev/null || true
DPID=
start_daemon
[ "$(vns)" = '[5000,5001]' ] || fail "after kill -9: $(vns), [5000,5001] expected"
stop_daemon
ok "syncs back: degraded mode left, the retry acknowledged; kill -9 keeps exactly what was acknowledged"
