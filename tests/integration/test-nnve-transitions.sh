#!/bin/bash
# nnve-daemon over real TLS: every TSI transition (valid and invalid), VN connect with tags
# (shared per domain, preferred, implicit, by name), migration, address update; state checked
# through nnvectl --json.
source "$(dirname "$0")/nnve-lib.bash"
write_conf
start_daemon

out=$(client hv1 <<EOF
hello node=hv1 epoch=1
connect vn=5000
connect vn=5000
connect vn=5001 pref=107
deactivate tsi=$(tsi 01)
deassociate tsi=$(tsi 01)
update tsi=$(tsi 01) op=add addr=192.0.2.1
associate tsi=$(tsi 01) vn=5000 addr=192.0.2.1@52:54:00:00:00:01
associate tsi=$(tsi 01) vn=5000 addr=192.0.2.2@52:54:00:00:00:01
activate tsi=$(tsi 01) vn=5000
associate tsi=$(tsi 01) vn=5000
activate tsi=$(tsi 01) vn=5000
deactivate tsi=$(tsi 01)
deactivate tsi=$(tsi 01)
deassociate tsi=$(tsi 01)
deassociate tsi=$(tsi 01)
activate tsi=$(tsi 02) vn=5000 addr=192.0.2.20@52:54:00:00:00:02
activate tsi=$(tsi 02) vn=5001
associate tsi=$(tsi 03) vn=5002
activate tsi=$(tsi 03) vn=5002 flags=implicit addr=2001:db8::3
associate tsi=$(tsi 04) vn=5099 flags=implicit
connect name=blue
update tsi=$(tsi 02) op=add addr=192.0.2.21
update tsi=$(tsi 02) op=remove addr=192.0.2.20@52:54:00:00:00:02
activate tsi=$(tsi 05) vn=5000
EOF
)
echo "$out"
s() { status_of "$out" "$@"; }
[ "$(s HELLO)" = success ] || fail "hello"
[ "$(echo "$out" | jq -r 'select(.request=="HELLO") | .port')" = swp1 ] || fail "HELLO port"
[ "$(echo "$out" | jq -r 'select(.request=="HELLO") | .hold_time_ms')" = 30000 ] || fail "HELLO hold time"
[ "$(echo "$out" | jq -r 'select(.request=="VN_CONNECT") | .tags[0]' | head -3 | tr '\n' ' ')" = "100 100 107 " ] ||
    fail "VN_CONNECT tags (shared, idempotent, preferred)"
[ "$(s TSI_DEACTIVATE 1)" = no-such-tsi ] || fail "deactivate from Init"
[ "$(s TSI_DEASSOCIATE 1)" = no-such-tsi ] || fail "deassociate from Init"
[ "$(s TSI_UPDATE 1)" = no-such-tsi ] || fail "update from Init"
[ "$(s TSI_ASSOCIATE 1)" = success ] || fail "Init->Associated"
[ "$(s TSI_ASSOCIATE 2)" = success ] || fail "Associated->Associated"
[ "$(s TSI_ACTIVATE 1)" = success ] || fail "Associated->Activated"
[ "$(s TSI_ASSOCIATE 3)" = invalid-state ] || fail "associate on Activated"
[ "$(s TSI_ACTIVATE 2)" = success ] || fail "Activated->Activated"
[ "$(s TSI_DEACTIVATE 2)" = success ] || fail "Activated->Associated"
[ "$(s TSI_DEACTIVATE 3)" = success ] || fail "Associated deactivate"
[ "$(s TSI_DEASSOCIATE 2)" = success ] || fail "Associated->Init"
[ "$(s TSI_DEASSOCIATE 3)" = no-such-tsi ] || fail "deassociate twice"
[ "$(s TSI_ACTIVATE 3)" = success ] || fail "Init->Activated"
[ "$(s TSI_ACTIVATE 4)" = conflict ] || fail "same TSI in another VN"
[ "$(s TSI_ASSOCIATE 4)" = no-such-vn ] || fail "associate without connect"
[ "$(s TSI_ACTIVATE 5)" = success ] || fail "implicit connect"
[ "$(echo "$out" | jq -r 'select(.request=="TSI_ACTIVATE") | .flags // [] | join(",")' | sed -n 5p)" = implicit ] ||
    fail "IMPLICIT_CONNECT flag in the response"
[ "$(s TSI_ASSOCIATE 5)" = not-authorized ] || fail "VN not allowed"
[ "$(s VN_CONNECT 4)" = success ] || fail "connect by name"
[ "$(echo "$out" | jq -r 'select(.request=="VN_CONNECT") | .vn_id' | sed -n 4p)" = 6000 ] || fail "name resolved to its VN ID"
[ "$(s TSI_UPDATE 2)" = success ] && [ "$(s TSI_UPDATE 3)" = success ] || fail "update add/remove"
ok "transition table over SNCP"

tsis=$(ctl show tsis)
echo "$tsis" | jq -c '.[]'
[ "$(echo "$tsis" | jq length)" = 3 ] || fail "3 TSIs expected"
t2=$(echo "$tsis" | jq -c --arg t "$(tsi 02)" '.[] | select(.tsi==$t)')
[ "$(echo "$t2" | jq -r '.state, .tag, .port, .hypervisor, .vn_id, .migrating' | tr '\n' ' ')" = \
  "activated 100 swp1 hv1 5000 false " ] || fail "tsi 02 fields: $t2"
[ "$(echo "$t2" | jq -r '.addresses | join(",")')" = 192.0.2.21 ] || fail "tsi 02 addresses: $t2"
[ "$(echo "$t2" | jq -r 'has("vn_name")')" = true ] || fail "vn_name field"
vns=$(ctl show vns)
[ "$(echo "$vns" | jq -r '.[] | select(.vn_id==5000) | "\(.tag) \(.tsis) \(.domain)"')" = "100 2 rack1" ] || fail "vn 5000: $vns"
[ "$(echo "$vns" | jq -r '.[] | select(.vn_id==6000) | .vn_name')" = blue ] || fail "vn blue"
ok "nnvectl show tsis/vns"

# Migration (make-before-break) from hv1 to hv2 (same domain: same tag), then the source leaves.
out=$(client hv2 <<EOF
hello node=hv2 epoch=1
connect vn=5000
activate tsi=$(tsi 02) vn=5000
activate tsi=$(tsi 02) vn=5000 flags=migration
EOF
)
echo "$out"
[ "$(status_of "$out" TSI_ACTIVATE 1)" = conflict ] || fail "active elsewhere without migration flag"
[ "$(status_of "$out" TSI_ACTIVATE 2)" = success ] || fail "migration destination"
[ "$(echo "$out" | jq -r 'select(.request=="VN_CONNECT") | .tags[0]')" = 100 ] || fail "same tag in the domain"
[ "$(ctl show tsis | jq --arg t "$(tsi 02)" '[.[] | select(.tsi==$t and .migrating)] | length')" = 2 ] ||
    fail "both instances migrating"
out=$(client hv1 <<EOF
hello node=hv1 epoch=2
deassociate tsi=$(tsi 02) flags=migration,source
EOF
)
[ "$(status_of "$out" TSI_DEASSOCIATE)" = success ] || fail "source de-associate"
m=$(ctl show tsis | jq -c --arg t "$(tsi 02)" '[.[] | select(.tsi==$t)]')
[ "$(echo "$m" | jq -r '.[0].hypervisor, .[0].port, .[0].migrating, length' | tr '\n' ' ')" = "hv2 swp2 false 1 " ] ||
    fail "after migration: $m"
grep -q "activate-tsi port=swp2 tag=100 vn=5000 tsi=$(tsi 02)" "$T/journal" || fail "journal: destination activated"
ok "migration"

stop_daemon
ok "clean shutdown"
