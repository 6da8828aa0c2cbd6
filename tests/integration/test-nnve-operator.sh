#!/bin/bash
# Operator actions (RFC 8394 Req-6, Req-9) through nnvectl: the nNVE withdraws addresses,
# deactivates and de-associates TSIs and disconnects a hypervisor from a VN; the agent (the
# test client) receives each request and answers; nnvectl's exit codes.
source "$(dirname "$0")/nnve-lib.bash"
write_conf
start_daemon

cat >"$T/hv1.script" <<EOF
hello node=hv1 epoch=1
connect vn=5000
connect vn=5001
activate tsi=$(tsi 01) vn=5000 addr=192.0.2.1 addr=192.0.2.2
activate tsi=$(tsi 02) vn=5000 addr=192.0.2.3
wait-request 20000
wait-request 20000
wait-request 20000
wait-request 20000
quit
EOF
bg_client hv1 "$T/hv1.out"
wait_for "TSIs activated" 10 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show tsis | jq -e 'length == 2'"

rc=0; ctl tsi deactivate "$(tsi 01)" 192.0.2.1 || rc=$?
[ $rc -eq 0 ] || fail "tsi deactivate ADDRESS: exit $rc"
t1() { ctl show tsis | jq -c --arg t "$(tsi 01)" '.[] | select(.tsi==$t)'; }
[ "$(t1 | jq -r '.state + " " + (.addresses | join(","))')" = "activated 192.0.2.2" ] || fail "address withdrawn: $(t1)"
ok "withdraw one address"

ctl tsi deactivate "$(tsi 01)" >/dev/null || fail "tsi deactivate"
[ "$(t1 | jq -r .state)" = associated ] || fail "deactivated: $(t1)"
ok "deactivate"

ctl tsi deassociate "$(tsi 01)" >/dev/null || fail "tsi deassociate"
[ -z "$(t1)" ] || fail "still there: $(t1)"
ok "deassociate"

ctl vn disconnect hv1 5000 >/dev/null || fail "vn disconnect"
[ "$(ctl show tsis | jq length)" = 0 ] || fail "TSIs of the VN not de-associated"
[ "$(ctl show vns | jq '[.[] | select(.vn_id==5000 and .state=="connected")] | length')" = 0 ] || fail "VN still connected"
grep -q "remove-vn port=swp1 tag=100 vn=5000" "$T/journal" || fail "journal: VN removed from the port"
ok "vn disconnect"

wait_for "client done" 10 sh -c "! kill -0 ${CPIDS[0]} 2>/dev/null"
cat "$T/hv1.out"
reqs=$(jq -c 'select(.type=="REQUEST")' "$T/hv1.out")
[ "$(echo "$reqs" | jq -r .request | tr '\n' ' ')" = "TSI_DEACTIVATE TSI_DEACTIVATE TSI_DEASSOCIATE VN_DISCONNECT " ] ||
    fail "requests seen by the agent: $reqs"
[ "$(echo "$reqs" | head -1 | jq -r '.addresses | join(",")')" = 192.0.2.1 ] || fail "address list of Req-9"
[ "$(echo "$reqs" | tail -1 | jq -r .vn_id)" = 5000 ] || fail "VN_DISCONNECT VN"
ok "agent told of every action"

# Exit codes: unknown TSI 3, bad text 2; a held hypervisor (session lost) is changed all
# the same (exit 0).
rc=0; ctl tsi deassociate "$(tsi 01)" >/dev/null 2>&1 || rc=$?
[ $rc -eq 3 ] || fail "unknown TSI: exit $rc"
rc=0; ctl tsi deassociate not-a-tsi >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "bad TSI text: exit $rc"
rc=0; ctl vn disconnect hv7 5000 >/dev/null 2>&1 || rc=$?
[ $rc -eq 3 ] || fail "unknown hypervisor: exit $rc"
wait_for "hv1 held" 10 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show sessions | jq -e '.[] | select(.hypervisor==\"hv1\" and .state==\"held\")'"
rc=0; ctl vn disconnect hv1 5001 >/dev/null 2>&1 || rc=$?
[ $rc -eq 0 ] || fail "held hypervisor: exit $rc"
[ "$(ctl show vns | jq '[.[] | select(.vn_id==5001 and .state=="connected")] | length')" = 0 ] || fail "held hypervisor's VN not disconnected"
# (that was all it held: nothing left to hold, so it is gone)
[ -z "$(ctl show sessions | jq -r '.[] | select(.hypervisor=="hv1") | .state')" ] || fail "empty held hypervisor kept"
rc=0; "$BIN/nnvectl" -s "$T/nonexistent" show vns >/dev/null 2>&1 || rc=$?
[ $rc -eq 4 ] || fail "unreachable daemon: exit $rc"
ok "exit codes"

# Human tables by default.
"$BIN/nnvectl" -s "$T/ctl" show vns | grep -q '^VN_ID' || fail "table header"
"$BIN/nnvectl" --help | grep -q 'vn disconnect HYPERVISOR VN' || fail "nnvectl --help"
stop_daemon
ok "clean shutdown"
