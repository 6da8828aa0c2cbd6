#!/bin/bash
# RFC 8394 state machines through the real daemon (PROTOCOL.md §9.2, §9.3): an implicit VN
# connection ends with its last TSI (the VN leaves the port), an explicit one stays; the
# guards run in the order §9.3 gives and a repeated address counts once; a migration
# source leaving before the destination activated hands the TSI over first; TSI_DEACTIVATE
# with ADDRESS withdraws only those addresses; nnvectl tsi update sends TSI_UPDATE; a store
# of schema 1 is upgraded.
source "$(dirname "$0")/nnve-lib.bash"
write_conf "max_addrs_per_tsi = 2"
start_daemon

# --- implicit connection released with its last TSI; explicit one kept ---
out=$(client hv1 <<EOF
hello node=hv1 epoch=1
associate tsi=$(tsi 01) vn=5000 addr=192.0.2.1 addr=192.0.2.2 addr=192.0.2.3
associate tsi=$(tsi 01) vn=5000 flags=implicit addr=192.0.2.1 addr=192.0.2.2 addr=192.0.2.3
activate tsi=$(tsi 01) vn=5000 flags=implicit addr=192.0.2.1 addr=192.0.2.1 addr=192.0.2.2
activate tsi=$(tsi 02) vn=5000 flags=implicit
connect vn=5001
activate tsi=$(tsi 03) vn=5001
deassociate tsi=$(tsi 01)
deassociate tsi=$(tsi 03)
EOF
)
echo "$out"
s() { status_of "$out" "$@"; }
[ "$(s TSI_ASSOCIATE 1)" = no-such-vn ] || fail "VN check before the address limit"
[ "$(s TSI_ASSOCIATE 2)" = resource-limit ] || fail "address limit with implicit connect"
[ "$(s TSI_ACTIVATE 1)" = success ] || fail "repeated address counted once"
[ "$(ctl show tsis | jq -r --arg t "$(tsi 01)" '.[] | select(.tsi==$t) | .addresses | length')" = "" ] ||
    fail "tsi 01 should be gone"
vns=$(ctl show vns)
echo "$vns" | jq -c '.[]'
[ "$(echo "$vns" | jq -r '.[] | select(.vn_id==5000) | "\(.state) \(.hypervisors | length)"')" = "connected 1" ] ||
    fail "5000 still used by tsi 02: $vns"
[ "$(echo "$vns" | jq -r '.[] | select(.vn_id==5001) | "\(.state) \(.hypervisors | length)"')" = "connected 1" ] ||
    fail "explicit 5001 kept without TSIs: $vns"
grep -q "remove-vn port=swp1 tag=100" "$T/journal" && fail "5000 left the port too early"
out=$(client hv1 <<EOF
hello node=hv1 epoch=2
deassociate tsi=$(tsi 02)
EOF
)
[ "$(status_of "$out" TSI_DEASSOCIATE)" = success ] || fail "deassociate tsi 02"
vns=$(ctl show vns)
[ "$(echo "$vns" | jq -r '.[] | select(.vn_id==5000) | "\(.state) \(.hypervisors | length)"')" = "hold-down 0" ] ||
    fail "implicit 5000 released with its last TSI: $vns"
grep -q "remove-vn port=swp1 tag=100 vn=5000" "$T/journal" || fail "journal: 5000 off swp1"
ok "implicit VN connection released with its last TSI, explicit kept"

# --- migration: the source leaves before the destination activated ---
out=$(client hv1 <<EOF
hello node=hv1 epoch=3
connect vn=5002
activate tsi=$(tsi 04) vn=5002
EOF
)
[ "$(status_of "$out" TSI_ACTIVATE)" = success ] || fail "source activate"
out=$(client hv2 <<EOF
hello node=hv2 epoch=1
connect vn=5002
associate tsi=$(tsi 04) vn=5002 flags=migration
EOF
)
[ "$(status_of "$out" TSI_ASSOCIATE)" = success ] || fail "destination associate"
out=$(client hv1 <<EOF
hello node=hv1 epoch=4
deassociate tsi=$(tsi 04) flags=migration,source
EOF
)
[ "$(status_of "$out" TSI_DEASSOCIATE)" = success ] || fail "source de-associate"
m=$(ctl show tsis | jq -c --arg t "$(tsi 04)" '[.[] | select(.tsi==$t)]')
[ "$(echo "$m" | jq -r '.[0].hypervisor, .[0].state, .[0].migrating, length' | tr '\n' ' ')" = \
  "hv2 activated false 1 " ] || fail "destination handed over: $m"
act=$(grep -n "^activate-tsi port=swp2 .*tsi=$(tsi 04)" "$T/journal" | head -1 | cut -d: -f1)
gone=$(grep -n "^deassociate-tsi port=swp1 .*tsi=$(tsi 04)" "$T/journal" | head -1 | cut -d: -f1)
[ -n "$act" ] && [ -n "$gone" ] && [ "$act" -lt "$gone" ] ||
    fail "journal: destination activated (line ${act:-none}) before the source left (line ${gone:-none})"
out=$(client hv2 <<EOF
hello node=hv2 epoch=2
activate tsi=$(tsi 04) vn=5002 flags=migration
EOF
)
[ "$(echo "$out" | jq -r 'select(.request=="TSI_ACTIVATE") | "\(.status) \(.tsi_state)"')" = "success activated" ] ||
    fail "late destination activate"
ok "migration handover before the source leaves"

# --- Req-8 for some addresses: TSI_DEACTIVATE with ADDRESS (§6.7) ---
out=$(client hv1 <<EOF
hello node=hv1 epoch=5
activate tsi=$(tsi 06) vn=5001 addr=192.0.2.61 addr=192.0.2.62@52:54:00:00:00:06
deactivate tsi=$(tsi 06) addr=192.0.2.61
EOF
)
echo "$out"
[ "$(echo "$out" | jq -r 'select(.request=="TSI_DEACTIVATE") | "\(.status) \(.tsi_state)"')" = "success activated" ] ||
    fail "partial deactivate keeps the state"
[ "$(ctl show tsis | jq -r --arg t "$(tsi 06)" '.[] | select(.tsi==$t) | "\(.state) \(.addresses | join(","))"')" = \
  "activated 192.0.2.62@52:54:00:00:00:06" ] || fail "only the listed address withdrawn"
tail -n 1 "$T/journal" | grep -q "^update-tsi port=swp1 tag=.* tsi=$(tsi 06) addrs=192.0.2.62@52:54:00:00:00:06$" ||
    fail "journal: the dataplane keeps the other address: $(tail -n 1 "$T/journal")"
ok "TSI_DEACTIVATE with ADDRESS withdraws only those addresses"

# --- nNVE-side address change (§9.3 row 24): nnvectl tsi update -> TSI_UPDATE ---
cat >"$T/hv2.script" <<EOF
hello node=hv2 epoch=3
connect vn=5003
activate tsi=$(tsi 07) vn=5003 addr=192.0.2.71
wait-request 20000
quit
EOF
bg_client hv2 "$T/hv2.out"
wait_for "TSI 07 activated" 10 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show tsis | jq -e '[.[] | select(.state==\"activated\" and .hypervisor==\"hv2\" and (.addresses | length) == 1)] | length > 0'"
t7() { ctl show tsis | jq -r --arg t "$(tsi 07)" '.[] | select(.tsi==$t) | .addresses | join(",")'; }
rc=0; ctl tsi update "$(tsi 07)" add 192.0.2.72 192.0.2.73 >/dev/null 2>&1 || rc=$?
[ $rc -eq 1 ] || fail "update beyond max_addrs_per_tsi: exit $rc"
[ "$(t7)" = 192.0.2.71 ] || fail "refused update changed the TSI: $(t7)"
rc=0; ctl tsi update "$(tsi 07)" frobnicate 192.0.2.72 >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "unknown operation: exit $rc"
ctl tsi update "$(tsi 07)" replace 192.0.2.72 >/dev/null || fail "tsi update replace"
[ "$(t7)" = 192.0.2.72 ] || fail "address replaced: $(t7)"
tail -n 1 "$T/journal" | grep -q "^update-tsi port=swp2 .*tsi=$(tsi 07) addrs=192.0.2.72$" ||
    fail "journal: dataplane follows: $(tail -n 1 "$T/journal")"
wait_for "client done" 10 sh -c "! kill -0 ${CPIDS[0]} 2>/dev/null"
req=$(jq -c 'select(.type=="REQUEST")' "$T/hv2.out")
[ "$(echo "$req" | jq -r '"\(.request) \(.update_op) \(.addresses | join(","))"')" = "TSI_UPDATE replace 192.0.2.72" ] ||
    fail "agent told: $req"
ok "nnvectl tsi update: checked, applied, agent told (TSI_UPDATE)"

stop_daemon
ok "clean shutdown"

# --- a store of schema 1 (no implicit mark) is upgraded; its connections stay explicit ---
rm -f "$T/state/nnve-daemon.db" "$T/state/nnve-daemon.db-wal" "$T/state/nnve-daemon.db-shm"
sqlite3 "$T/state/nnve-daemon.db" <<'EOF'
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema', '1');
CREATE TABLE hypervisor(identity TEXT PRIMARY KEY, port TEXT NOT NULL);
CREATE TABLE vap(domain TEXT NOT NULL, vn_key TEXT NOT NULL, vn_id INTEGER, vn_name TEXT NOT NULL,
 tag INTEGER NOT NULL, PRIMARY KEY(domain, vn_key));
CREATE TABLE vn_connection(identity TEXT NOT NULL, vn_key TEXT NOT NULL, vn_id INTEGER,
 vn_name TEXT NOT NULL, PRIMARY KEY(identity, vn_key));
CREATE TABLE tsi(tsi BLOB NOT NULL, identity TEXT NOT NULL, vn_key TEXT NOT NULL,
 state INTEGER NOT NULL, migrating INTEGER NOT NULL, addrs BLOB, PRIMARY KEY(tsi, identity))
 WITHOUT ROWID;
INSERT INTO hypervisor VALUES ('hv1', 'swp1');
INSERT INTO vap VALUES ('rack1', 'id:5004', 5004, '', 104);
INSERT INTO vn_connection VALUES ('hv1', 'id:5004', 5004, '');
EOF
: >"$T/daemon.log"
start_daemon
grep -q "upgrading the stored state to schema 2" "$T/daemon.log" || fail "upgrade not logged"
[ "$(sqlite3 "file:$T/state/nnve-daemon.db?mode=ro" "SELECT value FROM meta WHERE key='schema'")" = 3 ] ||
    fail "schema not upgraded"
out=$(client hv1 <<EOF
hello node=hv1 epoch=9
activate tsi=$(tsi 08) vn=5004 flags=implicit
deassociate tsi=$(tsi 08)
EOF
)
[ "$(status_of "$out" TSI_DEASSOCIATE)" = success ] || fail "TSI in the stored VN connection: $out"
[ "$(ctl show vns | jq -r '.[] | select(.vn_id==5004) | "\(.tag) \(.state)"')" = "104 connected" ] ||
    fail "stored (explicit) connection released: $(ctl show vns)"
stop_daemon
ok "schema 1 store upgraded, its connections explicit"
