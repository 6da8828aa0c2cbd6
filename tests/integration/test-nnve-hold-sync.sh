#!/bin/bash
# Session loss, hold timer and SYNC: state untouched while held (no dataplane change),
# re-announced state left alone by SYNC, the rest swept; after the hold expires the
# hypervisor's TSIs and VN connections are removed.  Checked through the none backend's
# journal and nnvectl.
source "$(dirname "$0")/nnve-lib.bash"
write_conf "hold_time = 2s"
start_daemon

out=$(client hv1 <<EOF
hello node=hv1 epoch=1
connect vn=5000
connect vn=5001
activate tsi=$(tsi 01) vn=5000 addr=192.0.2.1@52:54:00:00:00:01
activate tsi=$(tsi 02) vn=5000 addr=192.0.2.2@52:54:00:00:00:02
associate tsi=$(tsi 03) vn=5001
EOF
)
[ "$(echo "$out" | jq -r 'select(.type=="RESPONSE") | .status' | sort -u)" = success ] || fail "setup: $out"
# The session is gone (orderly close): held, nothing removed.
lines=$(wc -l <"$T/journal")
s=$(ctl show sessions | jq -c '.[] | select(.hypervisor=="hv1")')
[ "$(echo "$s" | jq -r .state)" = held ] || fail "not held: $s"
[ "$(ctl show tsis | jq length)" = 3 ] || fail "TSIs not kept during hold"
ok "held after session loss"

# Reconnect within the hold time and resync: only TSI 1 and VN 5000 are re-announced.
out=$(client hv1 <<EOF
hello node=hv1 epoch=2
sync-begin
connect vn=5000 pref=100
activate tsi=$(tsi 01) vn=5000 addr=192.0.2.1@52:54:00:00:00:01
sync-end
EOF
)
echo "$out"
[ "$(echo "$out" | jq -r 'select(.type=="RESPONSE") | .status' | sort -u)" = success ] || fail "resync: $out"
new=$(tail -n +$((lines + 1)) "$T/journal")
echo "$new"
[ "$(echo "$new" | grep -c .)" = 3 ] || fail "resync changed more than the sweep"
echo "$new" | grep -q "deassociate-tsi port=swp1 tag=100 vn=5000 tsi=$(tsi 02)" || fail "TSI 2 not swept"
echo "$new" | grep -q "deassociate-tsi port=swp1 tag=101 vn=5001 tsi=$(tsi 03)" || fail "TSI 3 not swept"
echo "$new" | grep -q "remove-vn port=swp1 tag=101 vn=5001" || fail "VN 5001 not swept"
[ "$(ctl show tsis | jq -r '.[].tsi')" = "$(tsi 01)" ] || fail "after sync: $(ctl show tsis)"
[ "$(ctl show counters | jq .sync_swept_tsis_total)" = 2 ] || fail "sweep counter"
ok "SYNC keeps what is re-announced, sweeps the rest"

# The agent dies (kill -9): the hold timer runs out and everything of hv1 goes.
cat >"$T/hv1.script" <<EOF
hello node=hv1 epoch=3
activate tsi=$(tsi 04) vn=5000
wait-close 30000
EOF
bg_client hv1 "$T/hv1.out"
wait_for "TSI 4" 10 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show tsis | jq -e 'length == 2'"
kill -9 "${CPIDS[0]}"
wait_for "session lost" 10 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show sessions | jq -e '.[] | select(.hypervisor==\"hv1\" and .state==\"held\")'"
[ "$(ctl show tsis | jq length)" = 2 ] || fail "TSIs removed before the hold expired"
wait_for "hold expiry" 10 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show tsis | jq -e 'length == 0'"
grep -q "deassociate-tsi port=swp1 tag=100 vn=5000 tsi=$(tsi 04)" "$T/journal" || fail "TSI 4 not removed"
grep -q "remove-vn port=swp1 tag=100 vn=5000" "$T/journal" || fail "VN 5000 not removed"
[ "$(ctl show sessions | jq length)" = 0 ] || fail "hypervisor still listed"
[ "$(ctl show counters | jq .hold_expired_total)" = 1 ] || fail "hold counter"
grep -q "hold timer expired, removing state hypervisor=hv1" "$T/daemon.log" || fail "expiry not logged"
# The VN's tag is in hold-down now.
[ "$(ctl show tags | jq '.[] | select(.domain=="rack1") | .held')" -ge 1 ] || fail "tag hold-down"
ok "hold expiry removes the hypervisor's state"

stop_daemon
ok "clean shutdown"
