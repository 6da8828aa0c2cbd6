#!/bin/bash
# nnvectl show mappings: the NVE-to-NVE mapping table (per TSI instance its VN, VNI, MACs, IPs,
# local VTEP address and state), its filters, and the same table exported to mappings_file
# for an external NVA; a TSI deactivated or de-associated changes both.
source "$(dirname "$0")/nnve-lib.bash"
write_conf "mappings_file = $T/mappings.json" "metrics_interval = 100ms" "sync = normal"
start_daemon

A=52:54:00:00:00:01 B=52:54:00:00:00:02 C=52:54:00:00:0c:01
out=$(client hv1 <<EOF
hello node=hv1 epoch=1
connect vn=5000
connect name=blue
activate tsi=$U/$A vn=5000 addr=192.0.2.1@$A addr=2001:db8::1 addr=52:54:00:00:aa:01
associate tsi=$U/$B vn=5000 addr=192.0.2.2
activate tsi=$U/$C vn=6000 name=blue addr=198.51.100.7@$C
EOF
)
[ "$(echo "$out" | jq -r 'select(.type=="RESPONSE") | .status' | sort -u)" = success ] ||
    fail "set-up refused: $out"

m=$(ctl show mappings)
[ "$(echo "$m" | jq length)" = 3 ] || fail "rows: $m"
row() { echo "$m" | jq -c --arg t "$U/$1" '.[] | select(.tsi == $t) | del(.tsi)'; }
[ "$(row $A)" = '{"vn_id":5000,"vn_name":null,"vni":5000,"macs":["52:54:00:00:00:01","52:54:00:00:aa:01"],"ips":["192.0.2.1","2001:db8::1"],"vtep":null,"state":"activated","hypervisor":"hv1"}' ] ||
    fail "row of A: $(row $A)"
[ "$(row $B)" = '{"vn_id":5000,"vn_name":null,"vni":5000,"macs":["52:54:00:00:00:02"],"ips":["192.0.2.2"],"vtep":null,"state":"associated","hypervisor":"hv1"}' ] ||
    fail "row of B: $(row $B)"
[ "$(row $C | jq -c '[.vn_id, .vn_name, .vni, .macs, .ips, .state]')" = '[6000,"blue",6000,["52:54:00:00:0c:01"],["198.51.100.7"],"activated"]' ] ||
    fail "row of C: $(row $C)"
ok "show mappings: VN, VNI, MACs, IPs, state per TSI"

[ "$(ctl show mappings state activated | jq -r '[.[].tsi] | sort | join(" ")')" = "$U/$A $U/$C" ] ||
    fail "state filter"
[ "$(ctl show mappings vn blue | jq -r '.[].tsi')" = "$U/$C" ] || fail "vn filter"
"$BIN/nnvectl" -s "$T/ctl" show mappings | grep -q "52:54:00:00:aa:01" || fail "table output"
"$BIN/nnvectl" -s "$T/ctl" show mappings bogus x >/dev/null 2>&1 && fail "bad filter accepted"
ok "filters and the table view"

# the export: the same rows, rewritten with the metrics
same_file() { [ "$(jq -S -c 'sort_by(.tsi)' "$T/mappings.json")" = "$(ctl show mappings | jq -S -c 'sort_by(.tsi)')" ]; }
wait_for "mappings_file" 5 same_file
printf 'hello node=hv1 epoch=1\ndeactivate tsi=%s\ndeassociate tsi=%s\n' "$U/$A" "$U/$B" |
    client hv1 >/dev/null
[ "$(ctl show mappings | jq -r --arg t "$U/$A" '.[] | select(.tsi == $t) | .state')" = associated ] ||
    fail "A not associated"
wait_for "mappings_file after the changes" 5 same_file
[ "$(jq -r --arg t "$U/$B" '[.[] | select(.tsi == $t)] | length' "$T/mappings.json")" = 0 ] ||
    fail "B still exported"
ok "mappings_file follows the table (deactivate, deassociate)"
stop_daemon
jq -e 'length == 2' "$T/mappings.json" >/dev/null || fail "final export: $(cat "$T/mappings.json")"
ok "written at shutdown"
