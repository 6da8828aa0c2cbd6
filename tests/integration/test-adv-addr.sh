#!/bin/bash
# Adversarial: addresses are validated and owned.  Hypervisor hv2 holds a valid certificate
# and is authorized for the same VNs as hv1; it tries to take hv1's VM traffic by claiming
# its MAC / IP addresses in the same VN (ASSOCIATE, ACTIVATE, TSI_UPDATE add and replace, a
# TSI_ID of its own with the victim's MAC), sends addresses no host can have, and hv9 tries
# to become a third instance of a migrating TSI.  Each attack must fail with the right status
# while hv1's TSI stays as it was in `nnvectl show tsis`, in the `none` backend's journal,
# and across a restart; the legitimate cases (the same addresses in another VN, a real
# migration twin) still work.  Real daemon, real TLS with a PKI made here.
source "$(dirname "$0")/nnve-lib.bash"
write_conf
cat >>"$T/n.conf" <<EOF
[hypervisor hv9]
port = swp1
vns = 5000-5010
EOF
start_daemon

V=52:54:00:00:00:01      # the victim VM's vNIC
U2=9a9a9a9a-0000-4000-8000-00000000beef
tsi2() { echo "$U2/52:54:00:00:00:$1"; }

out=$(client hv1 <<EOF
hello node=hv1 epoch=1
activate tsi=$(tsi 01) vn=5000 flags=implicit addr=192.0.2.1@$V addr=2001:db8::1 addr=52:54:00:00:aa:01
EOF
)
[ "$(status_of "$out" TSI_ACTIVATE)" = success ] || fail "victim activation: $out"
victim() { ctl show tsis | jq -c --arg t "$(tsi 01)" '[.[] | select(.tsi==$t)]'; }
before=$(victim)
[ "$(echo "$before" | jq -r '.[0].hypervisor, .[0].port, .[0].state, (.[0].addresses | join(","))' | tr '\n' ' ')" = \
  "hv1 swp1 activated 192.0.2.1@$V,2001:db8::1,52:54:00:00:aa:01 " ] || fail "victim state: $before"
jlines=$(wc -l <"$T/journal")

# ---- hv2 claims the victim's addresses in the same VN ----
out=$(client hv2 <<EOF
hello node=hv2 epoch=1
activate tsi=$(tsi2 42) vn=5000 flags=implicit addr=192.0.2.1
associate tsi=$(tsi2 42) vn=5000 flags=implicit addr=2001:db8::1
activate tsi=$(tsi2 42) vn=5000 flags=implicit addr=$V
activate tsi=$(tsi2 42) vn=5000 flags=implicit addr=198.51.100.9@52:54:00:00:aa:01
activate tsi=$U2/$V vn=5000 flags=implicit
activate tsi=$(tsi2 42) vn=5000 flags=implicit addr=192.0.2.42
update tsi=$(tsi2 42) op=add addr=192.0.2.1
update tsi=$(tsi2 42) op=replace addr=192.0.2.1@$V
update tsi=$(tsi2 42) op=add addr=2001:db8::1@52:54:00:00:00:42
activate tsi=$(tsi2 42) vn=5000 addr=52:54:00:00:aa:01
activate tsi=$(tsi2 43) vn=5001 flags=implicit addr=192.0.2.1@$V addr=2001:db8::1
EOF
)
echo "$out"
# expect < lines "REQUEST N STATUS what": the N-th response to REQUEST in $out has STATUS.
expect() {
    local req n want what
    while read -r req n want what; do
        [ "$(status_of "$out" "$req" "$n")" = "$want" ] || fail "$what"
    done
}
expect <<EOF
HELLO 1 success hv2 hello
TSI_ACTIVATE 1 conflict hv2 took the victim's IPv4 address
TSI_ASSOCIATE 1 conflict hv2 took the victim's IPv6 address
TSI_ACTIVATE 2 conflict hv2 took the victim's MAC as an address
TSI_ACTIVATE 3 conflict hv2 took the victim's second MAC in an IP+MAC pair
TSI_ACTIVATE 4 conflict hv2 took the victim's MAC as its own TSI MAC
TSI_ACTIVATE 5 success hv2's own address refused
TSI_UPDATE 1 conflict UPDATE add took the victim's address
TSI_UPDATE 2 conflict UPDATE replace took the victim's address
TSI_UPDATE 3 conflict UPDATE add took the victim's IPv6 address (own MAC)
TSI_ACTIVATE 6 conflict refreshing ACTIVATE took the victim's MAC
TSI_ACTIVATE 7 success the same addresses in another VN must be allowed
EOF
[ "$(echo "$out" | jq -r 'select(.request=="TSI_ACTIVATE") | .error_tlv' | sed -n 4p)" = TSI_ID ] ||
    fail "TSI MAC conflict names TSI_ID"
[ "$(echo "$out" | jq -r 'select(.request=="TSI_ACTIVATE") | "\(.error_tlv) \(.reason)"' | head -1)" = \
  "ADDRESS address held by another TSI in this VN" ] || fail "conflict error TLV and reason"
ok "hv2 cannot claim hv1's MAC / IP addresses in VN 5000; may use them in VN 5001"

[ "$(victim)" = "$before" ] || fail "victim changed: $(victim)"
new=$(tail -n +$((jlines + 1)) "$T/journal")
echo "$new"
if echo "$new" | grep -v 'vn=5001' | grep -E "192\.0\.2\.1([,@ ]|$)|2001:db8::1([,@ ]|$)|$V|52:54:00:00:aa:01"; then
    fail "the dataplane got an entry with the victim's addresses in VN 5000"
fi
echo "$new" | grep -q "tsi=$(tsi 01)" && fail "the victim's dataplane entries were touched"
h2=$(ctl show tsis | jq -c '[.[] | select(.hypervisor=="hv2")] | sort_by(.tsi) | map("\(.tsi) \(.vn_id) \(.addresses | join(","))")')
[ "$h2" = "[\"$(tsi2 42) 5000 192.0.2.42\",\"$(tsi2 43) 5001 192.0.2.1@$V,2001:db8::1\"]" ] ||
    fail "hv2's TSIs: $h2"
grep -q "policy: address conflict refused hypervisor=hv2 tsi=$(tsi2 42) vn=5000 domain=rack1 address=192.0.2.1 owner=$(tsi 01)" "$T/daemon.log" ||
    fail "conflict not logged"
ok "victim unchanged in nnvectl and in the dataplane journal; refusal logged"

# ---- addresses no host can have ----
out=$(client hv2 <<EOF
hello node=hv2 epoch=2
activate tsi=$(tsi2 44) vn=5000 addr=224.0.0.251
activate tsi=$(tsi2 44) vn=5000 addr=239.1.2.3@52:54:00:00:00:44
activate tsi=$(tsi2 44) vn=5000 addr=255.255.255.255
activate tsi=$(tsi2 44) vn=5000 addr=127.0.0.1
activate tsi=$(tsi2 44) vn=5000 addr=0.0.0.0
activate tsi=$(tsi2 44) vn=5000 addr=::
activate tsi=$(tsi2 44) vn=5000 addr=::1
activate tsi=$(tsi2 44) vn=5000 addr=ff02::1
activate tsi=$(tsi2 44) vn=5000 addr=::ffff:127.0.0.1
activate tsi=$(tsi2 44) vn=5000 addr=01:00:5e:00:00:fb
activate tsi=$(tsi2 44) vn=5000 addr=192.0.2.44@ff:ff:ff:ff:ff:ff
activate tsi=$U2/ff:ff:ff:ff:ff:ff vn=5000
activate tsi=$U2/00:00:00:00:00:00 vn=5000
activate tsi=$U2/01:00:5e:00:00:01 vn=5000
update tsi=$(tsi2 42) op=add addr=ff05::2
update tsi=$(tsi2 42) op=replace addr=00:00:00:00:00:00
EOF
)
echo "$out"
sts=$(echo "$out" | jq -r 'select(.type=="RESPONSE" and .request!="HELLO") | .status' | sort -u)
[ "$sts" = invalid-value ] || fail "invalid addresses: statuses $sts"
[ "$(echo "$out" | jq -r 'select(.type=="RESPONSE" and .request!="HELLO") | .status' | wc -l)" = 16 ] ||
    fail "16 answers expected"
[ "$(echo "$out" | jq -r 'select(.request=="TSI_ACTIVATE") | "\(.error_tlv) \(.reason)"' | head -1)" = \
  "ADDRESS link-local multicast IPv4 address" ] || fail "invalid address error TLV and reason"
[ "$(echo "$out" | jq -r 'select(.request=="TSI_ACTIVATE") | .error_tlv' | sed -n 12p)" = TSI_ID ] ||
    fail "invalid TSI MAC names TSI_ID"
h2b=$(ctl show tsis | jq -c '[.[] | select(.hypervisor=="hv2")] | sort_by(.tsi) | map("\(.tsi) \(.vn_id) \(.addresses | join(","))")')
[ "$h2b" = "$h2" ] || fail "invalid addresses changed hv2's TSIs: $h2b"
grep -q "policy: invalid address refused hypervisor=hv2 tsi=$(tsi2 44) vn=5000 address=224.0.0.251" "$T/daemon.log" ||
    fail "invalid address not logged"
ok "unspecified, loopback, multicast, broadcast addresses and MACs refused (INVALID_VALUE)"

# ---- one hypervisor's flood of refusals does not hide another's ----
# hv2 sends 40 more refused requests (its own log share is 5 lines/s, bursts of 20); hv9's
# refusal below must still be logged.
flood=$(for i in $(seq 40); do echo "activate tsi=$(tsi2 44) vn=5000 addr=127.0.0.1"; done)
client hv2 >/dev/null <<EOF
hello node=hv2 epoch=3
$flood
EOF
[ "$(grep -c "policy: invalid address refused hypervisor=hv2 tsi=$(tsi2 44) vn=5000 address=127.0.0.1 " "$T/daemon.log")" -lt 40 ] ||
    fail "hv2's flood was not rate limited"

# ---- a real migration twin works; a third instance does not ----
jlines=$(wc -l <"$T/journal")
out=$(client hv2 <<EOF
hello node=hv2 epoch=4
associate tsi=$(tsi 01) vn=5000 flags=migration addr=192.0.2.1@$V addr=2001:db8::1 addr=52:54:00:00:aa:01
EOF
)
[ "$(status_of "$out" TSI_ASSOCIATE)" = success ] || fail "migration destination refused: $out"
out=$(client hv9 <<EOF
hello node=hv9 epoch=1
associate tsi=$(tsi 01) vn=5000 flags=migration,implicit
activate tsi=$(tsi 01) vn=5000 flags=migration,implicit addr=192.0.2.1@$V
EOF
)
echo "$out"
[ "$(status_of "$out" TSI_ASSOCIATE)" = conflict ] || fail "third instance allowed"
[ "$(status_of "$out" TSI_ACTIVATE)" = conflict ] || fail "third instance allowed (activate)"
[ "$(ctl show tsis | jq '[.[] | select(.hypervisor=="hv9")] | length')" = 0 ] || fail "hv9 got a TSI"
[ "$(ctl show vns | jq '[.[] | select(.hypervisors | index("hv9"))] | length')" = 0 ] ||
    fail "hv9's failed request left an implicit VN connection"
grep -q "policy: third TSI instance refused hypervisor=hv9 tsi=$(tsi 01) vn=5000 instances=2" "$T/daemon.log" ||
    fail "third instance not logged"
out=$(client hv2 <<EOF
hello node=hv2 epoch=5
activate tsi=$(tsi 01) vn=5000 flags=migration
EOF
)
[ "$(status_of "$out" TSI_ACTIVATE)" = success ] || fail "migration switch-over: $out"
out=$(client hv1 <<EOF
hello node=hv1 epoch=2
deassociate tsi=$(tsi 01) flags=migration,source
associate tsi=$(tsi 07) vn=5000 flags=implicit addr=192.0.2.1
EOF
)
[ "$(status_of "$out" TSI_DEASSOCIATE)" = success ] || fail "source de-associate"
[ "$(status_of "$out" TSI_ASSOCIATE)" = conflict ] || fail "the migrated TSI's address was free"
m=$(victim)
[ "$(echo "$m" | jq -r '.[0].hypervisor, .[0].port, .[0].migrating, length' | tr '\n' ' ')" = "hv2 swp2 false 1 " ] ||
    fail "after migration: $m"
tail -n +$((jlines + 1)) "$T/journal" | grep -q "activate-tsi port=swp2 tag=100 vn=5000 tsi=$(tsi 01) addrs=192.0.2.1@$V" ||
    fail "journal: destination activated with the victim's addresses"
ok "migration twin shares its addresses; a third instance is CONFLICT"

# ---- ownership survives a restart ----
stop_daemon
start_daemon
out=$(client hv1 <<EOF
hello node=hv1 epoch=3
activate tsi=$(tsi 07) vn=5000 flags=implicit addr=2001:db8::1
activate tsi=$(tsi 07) vn=5000 flags=implicit addr=192.0.2.7
EOF
)
[ "$(status_of "$out" TSI_ACTIVATE 1)" = conflict ] || fail "after restart: address free again"
[ "$(status_of "$out" TSI_ACTIVATE 2)" = success ] || fail "after restart: own address refused"
[ "$(victim)" = "$m" ] || fail "victim changed across the restart: $(victim)"
ok "ownership restored from the store"

stop_daemon
ok "clean shutdown"
