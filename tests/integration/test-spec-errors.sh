#!/bin/bash
# Error detail through the real daemon (PROTOCOL.md §6.1, §6.5, §6.11, §7.2, §8.3): HELLO
# checks authorization before the version; UNSUPPORTED_VERSION carries the nNVE's
# VERSION_RANGE and ends the session; a HELLO that does not decode is answered MALFORMED
# and ends the session; SYNC_END without SYNC_BEGIN is UNEXPECTED_MESSAGE and sweeps
# nothing; INVALID_STATE and CONFLICT carry the instance's TSI_STATE; the HELLO response
# advertises the capabilities splitnve implements (0xB).
source "$(dirname "$0")/nnve-lib.bash"
write_conf
start_daemon

# hv9 (valid certificate, not a configured hypervisor) offering a version we do not speak:
# authorization is checked first.
out=$(client hv9 <<EOF || true
hello node=hv9 epoch=1 version=2-3
EOF
)
echo "$out"
[ "$(status_of "$out" HELLO)" = not-authorized ] || fail "authorization is not checked before the version"
echo "$out" | grep -q '"type":"CLOSED"' || fail "refused HELLO did not end the session"
ok "HELLO: authorization before version"

out=$(client hv2 <<EOF || true
hello node=hv2 epoch=1 version=2-3
EOF
)
echo "$out"
rsp=$(echo "$out" | jq -c 'select(.type=="RESPONSE" and .request=="HELLO")')
[ "$(echo "$rsp" | jq -r .status)" = unsupported-version ] || fail "version refused"
[ "$(echo "$rsp" | jq -r '"\(.version_min)-\(.version)"')" = 1-1 ] ||
    fail "UNSUPPORTED_VERSION without the nNVE's VERSION_RANGE: $rsp"
echo "$out" | grep -q '"type":"CLOSED"' || fail "UNSUPPORTED_VERSION did not end the session"
ok "UNSUPPORTED_VERSION carries VERSION_RANGE 1-1 and ends the session"

# A HELLO whose VERSION_RANGE is 1 byte long.
out=$(client hv2 <<EOF || true
raw 0101000000000011000000010001000101
wait-close 3000
EOF
)
echo "$out"
[ "$(status_of "$out" HELLO)" = malformed ] || fail "malformed HELLO not answered MALFORMED"
echo "$out" | grep -q '"type":"CLOSED"' || fail "malformed HELLO did not end the session"
[ "$(ctl show sessions | jq '[.[] | select(.hypervisor=="hv2")] | length')" = 0 ] || fail "hv2 still has a session"
ok "malformed HELLO answered and the session ended"

out=$(client hv1 <<EOF
hello node=hv1 epoch=1
connect vn=5000
connect vn=5001
activate tsi=$(tsi 01) vn=5000
sync-end
associate tsi=$(tsi 01) vn=5000
activate tsi=$(tsi 01) vn=5001
deactivate tsi=$(tsi 01)
activate tsi=$(tsi 01) vn=5001
EOF
)
echo "$out"
[ "$(echo "$out" | jq -r 'select(.request=="HELLO") | .capabilities')" = 11 ] || fail "HELLO capabilities are not 0xB"
[ "$(echo "$out" | jq -r 'select(.request=="VN_CONNECT") | .tags | length' | sort -u)" = 1 ] ||
    fail "more than one LOCAL_TAG for a VN"
ok "HELLO response advertises capabilities 0xB (no MULTI_TAG); one tag per VN"
[ "$(status_of "$out" SYNC_END)" = unexpected-message ] || fail "SYNC_END without SYNC_BEGIN"
[ "$(ctl show tsis | jq 'length')" = 1 ] || fail "SYNC_END outside a resync swept something"
[ "$(status_of "$out" TSI_ASSOCIATE)" = invalid-state ] || fail "associate on Activated"
[ "$(echo "$out" | jq -r 'select(.request=="TSI_ASSOCIATE") | .tsi_state')" = activated ] ||
    fail "INVALID_STATE without TSI_STATE"
[ "$(status_of "$out" TSI_ACTIVATE 2)" = conflict ] || fail "TSI in another VN"
[ "$(echo "$out" | jq -r 'select(.request=="TSI_ACTIVATE") | .tsi_state' | sed -n 2p)" = activated ] ||
    fail "CONFLICT without TSI_STATE (activated)"
[ "$(echo "$out" | jq -r 'select(.request=="TSI_ACTIVATE") | .tsi_state' | sed -n 3p)" = associated ] ||
    fail "CONFLICT without TSI_STATE (associated)"
ok "SYNC_END outside a resync; INVALID_STATE and CONFLICT carry TSI_STATE"

stop_daemon
ok "clean shutdown"
