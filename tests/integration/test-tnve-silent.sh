#!/bin/bash
# test-tnve-silent.sh: a silent nNVE of a dual-homed hypervisor (RFC 8394 §3.2 and Req-4:
# failure detection).  Two nnve-daemons (sw1, sw2: none backend with a journal, keepalive
# 1 s), one tnve-agent with connect_timeout 600 s and hello_timeout 1 s, a private libvirtd
# (test driver); VN blue (5000) is active-active, red (5001) active-standby.  An attempt on
# a silent nNVE can only give up through hello_timeout (connect_timeout never fires here,
# and the session's own 10 s TLS default lies beyond every bounded wait below):
#  1. the agent starts while sw1 (the first, preferred nNVE) is frozen (kill -STOP: TCP
#     accepted by the kernel, no TLS): red goes to sw2; show nnves reports sw1 failed,
#     cause hello-timeout; after kill -CONT sw1 resynchronises (blue only), sw2's journal
#     is unchanged (nothing removed and re-added there);
#  3. (run second) the established active session goes silent (kill -STOP sw2): the agent
#     declares it dead after 3 x sw2's keepalive (cause dead-peer), red goes to sw1;
#     kill -CONT: sw2 resynchronises, sw1's journal unchanged;
#  2. (run last) the active session drops (kill -9 sw1) and every reconnection lands on its
#     held port, which accepts and never answers: red goes to sw2, sw1 is reported failed
#     with cause hello-timeout; sw1 restarts: resynchronised, sw2's journal unchanged.
# The failover times are logged (no timed assertion; bench/tnve-dual.sh has the figure).
. "$SPLITNVE_SRC/tests/tools/tnve-lib.sh"

FAIL_LOGS=(agent.log n1.log n2.log)
SW_GLOBAL="hold_time = 20s
keepalive = 1s"
SW_SECTIONS="[domain d1]
ports = *
tags = 100-199

[hypervisor hv1]
port = p1
vns = blue, red

[vn blue]
id = 5000
[vn red]
id = 5001"
cleanup_more() { sw_thaw_all; }

both_ready() { nnve_ready sw1 && nnve_ready sw2; }
# failed_with NAME CAUSE...: show nnves reports NAME not up, its last failure one of CAUSEs
failed_with() {
    local n=$1
    shift
    tnvectl --json show nnves | jq -e --arg n "$n" --arg c "$*" \
        '.[] | select(.name == $n) | .state != "up" and .role == "standby" and (.cause as $x | $c | split(" ") | index($x) != null)'
}
now_ms() { date +%s%3N; }
# journal_mark N / journal_same N WHAT: the journal of swN, less reconcile lines, unchanged
journal_mark() { grep -v '^reconcile-' "$T/n$1/journal" >"$T/j$1.mark"; }
journal_same() {
    grep -v '^reconcile-' "$T/n$1/journal" | cmp -s "$T/j$1.mark" - ||
        fail "$2: sw$1's journal changed: $(grep -v '^reconcile-' "$T/n$1/journal" | diff "$T/j$1.mark" -)"
}

"$S/scripts/gen-pki.sh" "$T/pki" nnve1 nnve2 hv1 >/dev/null 2>&1 || fail "gen-pki"
start_libvirtd
sw_start 1
sw_start 2
pair_agent_conf "mode = active-standby
address_poll_interval = 0
connect_timeout = 600s
hello_timeout = 1s" >"$T/agent.conf"
# hello_timeout's validation: FILE:LINE for a value below the minimum
sed 's/^hello_timeout = 1s/hello_timeout = 10ms/' "$T/agent.conf" >"$T/bad.conf"
line=$(grep -n '^hello_timeout' "$T/bad.conf" | cut -d: -f1)
bad=$("$B/bin/tnve-agent" --check-config -c "$T/bad.conf" 2>&1) && fail "hello_timeout = 10ms accepted"
echo "$bad" | grep -q "bad.conf:$line:.*hello_timeout" || fail "hello_timeout error lacks FILE:LINE: $bad"
out=$("$B/bin/tnve-agent" --check-config -c "$T/agent.conf" 2>&1) || fail "check-config: $out"
echo "$out" | grep -q "connect_timeout=600000ms hello_timeout=1000ms" || fail "check-config does not show hello_timeout: $out"
"$B/bin/tnve-agent" --help 2>&1 | grep -q "hello_timeout" || fail "--help does not list hello_timeout"
log "config: hello_timeout = 10ms refused ($bad), 1s accepted"

# ---- 1. the agent starts while sw1 is frozen
TSI0=6695eb01-f6a4-8304-79aa-97f2502e193f/aa:bb:cc:dd:ee:ff # domain "test": blue
domain_xml 2 meta-red >"$T/vm2.xml"
TSI2="$(uuid_of 2)/$(mac_of 2 1)"
virsh_c "define $T/vm2.xml; start vm2" >/dev/null || fail "start vm2"
kill -STOP "${SW_PID[1]}"
t0=$(now_ms)
"$B/bin/tnve-agent" -c "$T/agent.conf" >>"$T/agent.log" 2>&1 &
AGENT_PID=$!
wait_for "agent control socket" 10 test -S "$T/agent.ctl"
expect_at 2 "$TSI2" activated 8
t1=$(now_ms)
[ "$(session | jq -r .active)" = sw2 ] || fail "sw2 not active: $(session | jq -c .)"
wait_for "sw1 reported failed (hello-timeout): $(tnvectl --json show nnves | jq -c '.[0]')" 8 failed_with sw1 hello-timeout
tnvectl show nnves | grep -q "hello-timeout" || fail "show nnves does not name the cause: $(tnvectl show nnves)"
grep -q "\(connect timed out\|connection failed\) address=127.0.0.1 port=${SW_PORT[1]} err=.* cause=hello-timeout nnve=sw1" "$T/agent.log" ||
    fail "no log line naming sw1 and cause=hello-timeout"
expect_at 2 "$TSI0" activated
sleep 0.5
journal_mark 2
log "case 1: agent started with sw1 frozen: red at sw2 after $((t1 - t0)) ms, sw1 failed (hello-timeout)"
kill -CONT "${SW_PID[1]}"
wait_for "sw1 up and in sync after kill -CONT" 20 nnve_ready sw1
want1="$TSI0 activated"
wait_for "sw1 holds blue only (now: $(tsis_at 1 | tr '\n' ' '))" 15 sh -c "[ \"\$('$B/bin/nnvectl' -s '$T/n1/ctl' --json show tsis | jq -r '.[] | \"\\(.tsi) \\(.state)\"' | sort)\" = '$want1' ]"
sleep 1
journal_same 2 "sw1 returned"
[ "$(session | jq -r .active)" = sw2 ] || fail "the active nNVE failed back on its own"
log "case 1: sw1 thawed: resynchronised (blue only), sw2's journal unchanged"

# ---- 3. the established active session goes silent
kill -STOP "${SW_PID[2]}"
t0=$(now_ms)
expect_at 1 "$TSI2" activated 15
t1=$(now_ms)
[ "$(session | jq -r .active)" = sw1 ] || fail "sw1 not active"
grep -q "session lost peer=.* cause=dead-peer nnve=sw2" "$T/agent.log" || fail "no session lost line with cause=dead-peer nnve=sw2"
wait_for "sw2 reported failed" 8 failed_with sw2 dead-peer hello-timeout
sleep 0.5
journal_mark 1
log "case 3: sw2 frozen while active: red at sw1 after $((t1 - t0)) ms (dead peer, 3 x 1 s keepalive)"
kill -CONT "${SW_PID[2]}"
wait_for "sw2 up and in sync after kill -CONT" 20 nnve_ready sw2
wait_for "sw2 holds blue only (now: $(tsis_at 2 | tr '\n' ' '))" 15 sh -c "[ \"\$('$B/bin/nnvectl' -s '$T/n2/ctl' --json show tsis | jq -r '.[] | \"\\(.tsi) \\(.state)\"' | sort)\" = '$want1' ]"
sleep 1
journal_same 1 "sw2 returned"
log "case 3: sw2 thawed: resynchronised (red swept there), sw1's journal unchanged"

# ---- 2. the active session drops; reconnections land on a silent listener
sw_kill 1
t0=$(now_ms)
expect_at 2 "$TSI2" activated 15
t1=$(now_ms)
wait_for "sw1 reported failed (hello-timeout)" 8 failed_with sw1 hello-timeout
sleep 0.5
journal_mark 2
log "case 2: sw1 killed, its held port silent: red at sw2 after $((t1 - t0)) ms, sw1 failed (hello-timeout)"
sw_start 1
wait_for "sw1 up and in sync after its restart" 20 nnve_ready sw1
wait_for "sw1 holds blue only (now: $(tsis_at 1 | tr '\n' ' '))" 15 sh -c "[ \"\$('$B/bin/nnvectl' -s '$T/n1/ctl' --json show tsis | jq -r '.[] | \"\\(.tsi) \\(.state)\"' | sort)\" = '$want1' ]"
sleep 1
journal_same 2 "sw1 restarted"
both_ready >/dev/null || fail "not both up at the end"
log "case 2: sw1 restarted: resynchronised, sw2's journal unchanged"

stop_pid "$AGENT_PID" || fail "agent did not exit cleanly"
AGENT_PID=
log "PASS"
