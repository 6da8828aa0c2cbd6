#!/bin/bash
# Adversarial: a hypervisor with a valid certificate tries to get more than its
# [hypervisor] section grants.  One attack per rule; each asserts the refusal status and
# that the victim's state (hv2: its sessions, TSIs, VNs and their dataplane entries) did not
# change.
#   1. reach into another tenant's VN by adding a VN_NAME it is granted, or a made-up name
#   2. act on another hypervisor's TSI (UPDATE, DEACTIVATE, DEASSOCIATE)
#   3. keep a VN, an identity or a port the operator took away by SIGHUP
#   4. exhaust the domain's tag pool, and its own TSI / address limits
#   5. pick its port by naming another hypervisor's MAC (port = learn over TCP)
#   6. a failed replacement HELLO must leave the identity's session and state as they are
source "$(dirname "$0")/nnve-lib.bash"
write_conf
# hv2 (the victim) also has VN 7000, a bare ID no one else is granted; hv3 sits on swp3;
# hv1 (the attacker) has its own TSI limits; hv9 learns its port.
sed -i 's/^vns = 5000-5010$/vns = 5000-5010, 7000/; s/^port = learn$/port = swp3/' "$T/n.conf"
sed -i '/^port = swp1$/a max_tsis = 3\nmax_addrs_per_tsi = 2' "$T/n.conf"
printf '[hypervisor hv9]\nport = learn\nvns = 5000\n' >>"$T/n.conf"
echo "52:54:00:aa:00:01 swp1" >>"$T/fdb"
start_daemon

# The victim: a session that stays, VN 7000 and 5000 with an activated TSI each.
cat >"$T/hv2.script" <<EOF
hello node=hv2 epoch=1
connect vn=7000
activate tsi=$(tsi 21) vn=7000 addr=192.0.2.21
connect vn=5000
activate tsi=$(tsi 22) vn=5000 addr=192.0.2.22
wait-close 60000
EOF
"$CLIENT" --connect "127.0.0.1:$PORT" --cert "$T/pki/hv2.crt" --key "$T/pki/hv2.key" \
    --ca "$T/pki/ca.crt" --expect-peer nnve --timeout 70000 <"$T/hv2.script" >"$T/hv2.out" \
    2>>"$T/client.log" &
CPIDS+=($!)
wait_for "victim's TSIs" 10 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show tsis | jq -e '[.[] | select(.hypervisor==\"hv2\")] | length == 2'"

# Everything of the victim that an attack could change.
victim() {
    ctl show sessions | jq -c '[.[] | select(.hypervisor=="hv2") | {state, port, peer, epoch}]'
    ctl show tsis | jq -c '[.[] | select(.hypervisor=="hv2")] | sort_by(.tsi)'
    ctl show vns | jq -c '[.[] | select(.hypervisors | index("hv2")) | {vn_id, vn_name, tag, hypervisors}] | sort_by(.vn_id)'
    grep -E 'port=swp2|vn=7000' "$T/journal" || true
}
V0=$(victim)
echo "$V0" | grep -q '"vn_id":7000' || fail "victim not set up: $V0"
unchanged() { [ "$(victim)" = "$V0" ] || fail "$1: the victim's state changed: $(diff <(echo "$V0") <(victim))"; }

# ---- 1. VN identity: authorized against the catalogue entry the request resolves to ----
# A name granted without a [vn] section used to resolve to nothing, so "that name plus any
# VN_ID" reached the VN of that ID (another tenant's): such a grant is a load error now.
sed 's/^vns = 5000-5010, blue$/vns = 5000-5010, blue, green/' "$T/n.conf" >"$T/bad.conf"
rc=0; msg=$("$BIN/nnve-daemon" --check-config -c "$T/bad.conf" 2>&1) || rc=$?
line=$(grep -n '^vns = 5000-5010, blue, green$' "$T/bad.conf" | cut -d: -f1)
[ $rc -ne 0 ] && echo "$msg" | grep -qF "$T/bad.conf:$line: [hypervisor hv1] vns: VN \"green\" has no [vn green] section" ||
    fail "name-only grant accepted: rc=$rc $msg"
out=$(client hv1 <<EOF
hello node=hv1 epoch=1
connect vn=7000 name=blue
connect vn=7000 name=tenant-b
connect vn=7000
associate tsi=$(tsi 11) vn=7000 name=blue flags=implicit
activate tsi=$(tsi 12) vn=7000 name=x flags=implicit
connect name=nosuch
EOF
)
echo "$out"
[ "$(status_of "$out" VN_CONNECT 1)" = conflict ] || fail "granted name + foreign ID: $(status_of "$out" VN_CONNECT 1)"
[ "$(status_of "$out" VN_CONNECT 2)" = no-such-vn ] || fail "made-up name + foreign ID: $(status_of "$out" VN_CONNECT 2)"
[ "$(status_of "$out" VN_CONNECT 3)" = not-authorized ] || fail "foreign ID"
[ "$(status_of "$out" TSI_ASSOCIATE)" = conflict ] || fail "TSI into a foreign VN via a granted name"
[ "$(status_of "$out" TSI_ACTIVATE)" = no-such-vn ] || fail "TSI into a foreign VN via a made-up name"
[ "$(status_of "$out" VN_CONNECT 4)" = no-such-vn ] || fail "unknown VN_NAME alone"
[ "$(ctl show tsis | jq '[.[] | select(.hypervisor=="hv1")] | length')" = 0 ] || fail "attacker got a TSI"
grep -q 'policy: refused: VN not authorized hypervisor=hv1 vn=7000 request=VN_CONNECT' "$T/daemon.log" || fail "refusal not logged"
grep -q 'policy: refused: VN not in the catalogue hypervisor=hv1 vn_id=7000 vn_name="tenant-b" request=VN_CONNECT status=no-such-vn' "$T/daemon.log" || fail "unknown name refusal not logged"
unchanged "VN reach-in"
ok "1. no VN beyond the grant, whatever name is added"

# ---- 2. another hypervisor's TSI, through the same TSI_ID ----
out=$(client hv1 <<EOF
hello node=hv1 epoch=1
update tsi=$(tsi 21) op=replace addr=192.0.2.99
deactivate tsi=$(tsi 21)
deactivate tsi=$(tsi 21) addr=192.0.2.21
deassociate tsi=$(tsi 22)
activate tsi=$(tsi 21) vn=7000
activate tsi=$(tsi 22) vn=5000 flags=implicit
EOF
)
echo "$out"
[ "$(status_of "$out" TSI_UPDATE)" = no-such-tsi ] || fail "update of a foreign TSI"
[ "$(status_of "$out" TSI_DEACTIVATE 1)" = no-such-tsi ] || fail "deactivate of a foreign TSI"
[ "$(status_of "$out" TSI_DEACTIVATE 2)" = no-such-tsi ] || fail "address withdrawal from a foreign TSI"
[ "$(status_of "$out" TSI_DEASSOCIATE)" = no-such-tsi ] || fail "deassociate of a foreign TSI"
[ "$(status_of "$out" TSI_ACTIVATE 1)" = not-authorized ] || fail "claiming a foreign TSI in a foreign VN"
[ "$(status_of "$out" TSI_ACTIVATE 2)" = conflict ] || fail "claiming a foreign TSI in a granted VN"
unchanged "foreign TSI"
ok "2. no action on another hypervisor's TSI"

# ---- 3. SIGHUP withdraws at once: a VN (hv1 loses blue), an identity (hv3), a port ----
cat >"$T/hv1.script" <<EOF
hello node=hv1 epoch=1
connect vn=6000
activate tsi=$(tsi 13) vn=6000 addr=192.0.2.13
activate tsi=$(tsi 14) vn=5001 flags=implicit
wait-request 20000
wait-close 20000
EOF
bg_client hv1 "$T/hv1.out"
cat >"$T/hv3.script" <<EOF
hello node=hv3 epoch=1
activate tsi=$(tsi 31) vn=5000 flags=implicit
wait-request 20000
wait-close 20000
EOF
bg_client hv3 "$T/hv3.out"
wait_for "hv1 and hv3 set up" 10 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show tsis | jq -e 'length == 5'"
V0=$(victim)
sed -i 's/^vns = 5000-5010, blue$/vns = 5000-5010/' "$T/n.conf"
sed -i '/^\[hypervisor hv3\]$/,/^vns/d' "$T/n.conf"
grep -q 'hv3' "$T/n.conf" && fail "config edit"
kill -HUP "$DPID"
wait_for "blue withdrawn from hv1" 10 grep -q 'VN_DISCONNECT.*"vn_id":6000' "$T/hv1.out"
wait_for "hv3 told and closed" 10 grep -q CLOSED "$T/hv3.out"
grep -q '"request":"VN_DISCONNECT"' "$T/hv3.out" || fail "hv3 not told: $(cat "$T/hv3.out")"
t=$(ctl show tsis)
[ "$(echo "$t" | jq -c '[.[] | select(.hypervisor=="hv1") | .vn_id]')" = '[5001]' ] || fail "hv1 kept blue, or lost 5001: $t"
[ "$(echo "$t" | jq '[.[] | select(.hypervisor=="hv3")] | length')" = 0 ] || fail "hv3 kept its TSI"
grep -q "deassociate-tsi port=swp1 tag=[0-9]* vn=6000 tsi=$(tsi 13)" "$T/journal" || fail "blue's TSI not removed from the dataplane"
grep -q "policy: withdrawn hypervisor=hv1 vn=6000.* reason=vn-withdrawn" "$T/daemon.log" || fail "withdrawal not logged"
grep -q "policy: withdrawn hypervisor=hv3 .*reason=identity-withdrawn" "$T/daemon.log" || fail "identity withdrawal not logged"
unchanged "SIGHUP withdrawal"
# asking for it again is refused
out=$(client hv1 <<EOF
hello node=hv1 epoch=2
connect vn=6000
update tsi=$(tsi 13) op=add addr=192.0.2.14
EOF
)
[ "$(status_of "$out" VN_CONNECT)" = not-authorized ] || fail "withdrawn VN re-connected"
[ "$(status_of "$out" TSI_UPDATE)" = no-such-tsi ] || fail "withdrawn TSI updated"
# hv1's port is moved to swp2 by the operator: everything withdrawn, session closed
cat >"$T/hv1.script" <<EOF
hello node=hv1 epoch=3
activate tsi=$(tsi 15) vn=5002 flags=implicit
wait-request 20000
wait-close 20000
EOF
bg_client hv1 "$T/hv1b.out"
wait_for "hv1 TSI 15" 10 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show tsis | jq -e '[.[] | select(.hypervisor==\"hv1\")] | length == 2'"
V0=$(victim)
sed -i 's/^port = swp1$/port = swp2/' "$T/n.conf"
kill -HUP "$DPID"
wait_for "hv1 closed after its port moved" 10 grep -q CLOSED "$T/hv1b.out"
grep -q '"request":"VN_DISCONNECT"' "$T/hv1b.out" || fail "hv1 not told of the port withdrawal"
[ "$(ctl show tsis | jq '[.[] | select(.hypervisor=="hv1")] | length')" = 0 ] || fail "hv1 kept TSIs on its old port"
grep -q "policy: withdrawn hypervisor=hv1 .*port=swp1 .*reason=port-withdrawn" "$T/daemon.log" || fail "port withdrawal not logged"
unchanged "port withdrawal"
sed -i '/^\[hypervisor hv1\]$/{n;s/^port = swp2$/port = swp1/}' "$T/n.conf"
grep -A1 '^\[hypervisor hv1\]' "$T/n.conf" | grep -q 'port = swp1' || fail "config edit back"
kill -HUP "$DPID"
wait_for "reload" 10 sh -c "[ \$(grep -c 'configuration reloaded' '$T/daemon.log') -ge 3 ]"
ok "3. SIGHUP withdraws a VN, an identity and a port at once, agents told"

# ---- 4. limits: the tag pool of rack1 (9 tags) and hv1's TSI / address limits ----
V0=$(victim)
script="hello node=hv1 epoch=4"
for v in 5001 5002 5003 5004 5005 5006 5007 5008; do script+=$'\n'"connect vn=$v"; done
out=$(client hv1 <<<"$script")
echo "$out"
n_ok=$(echo "$out" | jq -r 'select(.request=="VN_CONNECT") | .status' | grep -c '^success$' || true)
n_lim=$(echo "$out" | jq -r 'select(.request=="VN_CONNECT") | .status' | grep -c '^resource-limit$' || true)
# rack1: 9 tags, 5000 is shared with hv2 and 7000 is hv2's: hv1 may hold 5 alone
[ "$n_ok" = 5 ] && [ "$n_lim" = 3 ] || fail "tag share: $n_ok connected, $n_lim refused"
grep -q 'policy: refused: limit reached hypervisor=hv1 limit=max_tags value=5' "$T/daemon.log" || fail "limit refusal not logged"
unchanged "tag pool"
# the pool still serves hv2 (this session replaces the victim's: its state stays)
out=$(client hv2 <<EOF
hello node=hv2 epoch=1
connect vn=5009
disconnect vn=5009
EOF
)
[ "$(status_of "$out" VN_CONNECT)" = success ] || fail "hv1 exhausted the pool for hv2"
out=$(client hv1 <<EOF
hello node=hv1 epoch=5
activate tsi=$(tsi 16) vn=5000 flags=implicit addr=192.0.2.16 addr=192.0.2.17 addr=192.0.2.18
activate tsi=$(tsi 16) vn=5000 flags=implicit addr=192.0.2.16 addr=192.0.2.17
update tsi=$(tsi 16) op=add addr=192.0.2.18
activate tsi=$(tsi 17) vn=5000
activate tsi=$(tsi 18) vn=5000
activate tsi=$(tsi 19) vn=5000
EOF
)
echo "$out"
[ "$(status_of "$out" TSI_ACTIVATE 1)" = resource-limit ] || fail "3 addresses with max_addrs_per_tsi = 2"
[ "$(status_of "$out" TSI_ACTIVATE 2)" = success ] || fail "2 addresses"
[ "$(status_of "$out" TSI_UPDATE)" = resource-limit ] || fail "update beyond max_addrs_per_tsi"
[ "$(status_of "$out" TSI_ACTIVATE 5)" = resource-limit ] || fail "4th TSI with max_tsis = 3"
ok "4. per-hypervisor limits: tag share, TSIs, addresses (RESOURCE_LIMIT, logged)"

# ---- 5. port = learn: hv9 names hv1's uplink MAC ----
before=$(ctl show tsis)
out=$(client hv9 <<EOF || true
hello node=hv9 epoch=1 uplink=52:54:00:aa:00:01
connect vn=5000
EOF
)
echo "$out"
[ "$(status_of "$out" HELLO)" = not-authorized ] || fail "port learned from a MAC the peer named"
[ -z "$(status_of "$out" VN_CONNECT)" ] || fail "request answered after a refused HELLO"
[ "$(ctl show sessions | jq '[.[] | select(.hypervisor=="hv9")] | length')" = 0 ] || fail "hv9 has a session"
[ "$(ctl show tsis)" = "$before" ] || fail "TSIs changed"
ok "5. port = learn over TCP refused (no port from a named MAC)"

# ---- 6. a replacement HELLO that fails leaves the identity's session and state alone ----
cat >"$T/hv2.script" <<EOF
hello node=hv2 epoch=7
wait-close 30000
EOF
bg_client hv2 "$T/hv2b.out"
wait_for "victim session" 10 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show sessions | jq -e '.[] | select(.hypervisor==\"hv2\" and .state==\"established\" and .epoch==7)'"
V0=$(victim)
out=$(client hv2 <<EOF || true
hello node=hv2 epoch=8 version=2-3
EOF
)
[ "$(status_of "$out" HELLO)" = unsupported-version ] || fail "bad replacement HELLO"
# (the refusal was answered: a replacement would have happened before it)
grep -q CLOSED "$T/hv2b.out" && fail "a refused HELLO closed the identity's session"
unchanged "failed replacement HELLO"
ok "6. a failed replacement HELLO changes nothing"

# ---- 3b. a restart applies the configuration to the stored state as a reload does ----
[ "$(ctl show tsis | jq '[.[] | select(.hypervisor=="hv2" and .vn_id==7000)] | length')" = 1 ] || fail "hv2's TSI in 7000 before the restart"
stop_daemon
sed -i 's/^vns = 5000-5010, 7000$/vns = 5000-5010/' "$T/n.conf"
start_daemon
t=$(ctl show tsis)
[ "$(echo "$t" | jq '[.[] | select(.vn_id==7000)] | length')" = 0 ] || fail "stored TSI of a VN no longer granted kept: $t"
[ "$(echo "$t" | jq '[.[] | select(.hypervisor=="hv2" and .vn_id==5000)] | length')" = 1 ] || fail "hv2's granted TSI lost at restart: $t"
grep -q "policy: withdrawn hypervisor=hv2 vn=7000 .*reason=vn-withdrawn" "$T/daemon.log" || fail "restart withdrawal not logged"
ok "3b. a restart withdraws stored state the configuration no longer grants"

stop_daemon
ok "clean shutdown"
