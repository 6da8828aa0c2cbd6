#!/bin/bash
# Persistence: after SIGTERM and after kill -9 in the middle of a burst of requests, the
# restarted daemon has the same VNs with the same tags and every acknowledged TSI; the none
# backend's journal shows that the restart removed and re-added nothing that was correct.
source "$(dirname "$0")/nnve-lib.bash"
write_conf
start_daemon

out=$(client hv1 <<EOF
hello node=hv1 epoch=1
connect vn=5000 pref=103
connect vn=5001
activate tsi=$(tsi 01) vn=5000 addr=192.0.2.1@52:54:00:00:00:01
activate tsi=$(tsi 02) vn=5000 addr=2001:db8::2
associate tsi=$(tsi 03) vn=5001
EOF
)
client hv2 >/dev/null <<EOF
hello node=hv2 epoch=1
connect vn=5001
activate tsi=$(tsi 04) vn=5001
EOF
[ "$(echo "$out" | jq -r 'select(.type=="RESPONSE") | .status' | sort -u)" = success ] || fail "setup"
vns_before=$(ctl show vns | jq -c 'map({vn_id, tag, domain}) | sort_by(.vn_id)')
tsis_before=$(ctl show tsis | jq -c 'map({tsi, state, tag, hypervisor, addresses}) | sort_by(.tsi, .hypervisor)')
echo "$vns_before"

stop_daemon
lines=$(wc -l <"$T/journal")
start_daemon
[ "$(ctl show vns | jq -c 'map({vn_id, tag, domain}) | sort_by(.vn_id)')" = "$vns_before" ] || fail "VNs/tags changed"
[ "$(ctl show tsis | jq -c 'map({tsi, state, tag, hypervisor, addresses}) | sort_by(.tsi, .hypervisor)')" = "$tsis_before" ] ||
    fail "TSIs changed: $(ctl show tsis)"
[ "$(ctl show sessions | jq -r '[.[].state] | unique | join(",")')" = held ] || fail "restored hypervisors not held"
new=$(tail -n +$((lines + 1)) "$T/journal")
echo "$new"
[ "$(echo "$new" | tr '\n' ' ')" = "reconcile-begin  reconcile-end  " ] || fail "restart touched the dataplane"
ok "restart after SIGTERM: same tags, same TSIs, dataplane untouched"

# The agent reconnects and re-announces with its tags as preferences: nothing changes.
lines=$(wc -l <"$T/journal")
out=$(client hv1 <<EOF
hello node=hv1 epoch=2
sync-begin
connect vn=5000 pref=103
connect vn=5001 pref=100
activate tsi=$(tsi 01) vn=5000 addr=192.0.2.1@52:54:00:00:00:01
activate tsi=$(tsi 02) vn=5000 addr=2001:db8::2
associate tsi=$(tsi 03) vn=5001
sync-end
EOF
)
[ "$(echo "$out" | jq -r 'select(.request=="VN_CONNECT") | .tags[0]' | tr '\n' ' ')" = "103 100 " ] || fail "tags after restart: $out"
[ "$(wc -l <"$T/journal")" = "$lines" ] || fail "resync after restart changed the dataplane"
ok "resync after restart is a no-op"

# kill -9 in the middle of a burst: every acknowledged change survives.
{
    echo "hello node=hv1 epoch=3"
    for i in $(seq 10 99); do
        echo "activate tsi=$(tsi "$i") vn=5000 addr=192.0.2.$i"
    done
} >"$T/hv1.script"
bg_client hv1 "$T/burst.out"
wait_for "burst under way" 20 sh -c "[ \$(grep -c '\"TSI_ACTIVATE\".*success' '$T/burst.out') -ge 20 ]"
kill -9 "$DPID"
wait "$DPID" 2>/dev/null || true
DPID=
acked=$(jq -r 'select(.request=="TSI_ACTIVATE" and .status=="success") | .xid' "$T/burst.out" | wc -l)
echo "acknowledged before kill -9: $acked"
wait_for "client saw the close" 10 sh -c "grep -q CLOSED '$T/burst.out'"
lines=$(wc -l <"$T/journal")
start_daemon
tsis=$(ctl show tsis)
for i in $(seq 10 $((10 + acked - 1))); do
    [ "$(echo "$tsis" | jq -r --arg t "$(tsi "$i")" '.[] | select(.tsi==$t) | .state + " " + (.tag|tostring)')" = "activated 103" ] ||
        fail "acknowledged TSI $i lost after kill -9"
done
[ "$(ctl show vns | jq -c 'map({vn_id, tag, domain}) | sort_by(.vn_id)')" = "$vns_before" ] || fail "tags changed after kill -9"
new=$(tail -n +$((lines + 1)) "$T/journal")
if echo "$new" | grep -E 'add-vn|remove-vn'; then fail "VN removed or re-added"; fi
for i in $(seq 10 $((10 + acked - 1))); do
    if echo "$new" | grep -q "tsi=$(tsi "$i")"; then fail "acknowledged TSI $i touched by the restart"; fi
done
ok "kill -9 mid-burst: $acked acknowledged TSIs kept, nothing re-added"

stop_daemon
ok "clean shutdown"
