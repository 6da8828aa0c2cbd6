#!/bin/bash
# The vectors of proto/vectors/valid/ for messages the nNVE sends are what nnve-daemon really
# sends: a scripted hypervisor captures every message the daemon sends it (sncp-client
# --dump), and vec-compare checks each vector against the captured message of the same
# kind, field by field (run-dependent values such as xid, names, identifiers, addresses,
# tags, timers and reason texts by presence only).  Vectors of messages only a tNVE sends
# are not covered here.
source "$(dirname "$0")/nnve-lib.bash"
VEC=$SPLITNVE_SRC/proto/vectors/valid
CMP=$SPLITNVE_BUILD/tests/tools/vec-compare
write_conf
start_daemon

cat >"$T/hv1.script" <<EOF
associate tsi=$(tsi 09) vn=5000
hello node=hv1 epoch=1
connect vn=5000
associate tsi=$(tsi 02) vn=5099
associate tsi=$(tsi 03) vn=5002
activate tsi=$(tsi 04) name=blue flags=implicit
activate tsi=$(tsi 01) vn=5000 addr=192.0.2.10
associate tsi=$(tsi 01) vn=5000
raw 010500000000001c000000650007000400001388000c00040000ff00
raw 010500000000001200000063000700020001
raw 0105000000000014000000640007000400001388
wait-request 20000
wait-request 20000
quit
EOF
"$CLIENT" --connect "127.0.0.1:$PORT" --cert "$T/pki/hv1.crt" --key "$T/pki/hv1.key" \
    --ca "$T/pki/ca.crt" --expect-peer nnve --timeout 20000 --dump "$T/hv1.dump" \
    <"$T/hv1.script" >"$T/hv1.out" 2>>"$T/client.log" &
CPIDS+=($!)
wait_for "TSI 01 activated" 10 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show tsis | jq -e 'map(select(.tsi==\"$(tsi 01)\")) | length == 1'"

client hv2 --dump "$T/hv2.dump" >"$T/hv2.out" <<EOF
hello node=hv2 epoch=1
connect vn=5000
associate tsi=$(tsi 01) vn=5000
EOF
client hv2 --dump "$T/hv2v.dump" >"$T/hv2v.out" <<EOF || true
hello node=hv2 epoch=1 version=2-3
EOF

ctl tsi deactivate "$(tsi 01)" 192.0.2.10 >/dev/null || fail "tsi deactivate ADDRESS"
ctl vn disconnect hv1 5000 >/dev/null || fail "vn disconnect"
wait_for "client done" 10 sh -c "! kill -0 ${CPIDS[0]} 2>/dev/null"
cat "$T/hv1.out" "$T/hv2.out" "$T/hv2v.out"
cat "$T/hv1.dump" "$T/hv2.dump" "$T/hv2v.dump" >"$T/all.dump"

bad=0
for v in 06-vn-disconnect 09-tsi-deactivate 16-response-hello 17-response-tsi-activate \
    19-response-status-malformed 20-response-status-unsupported-version \
    22-response-status-not-authorized 23-response-status-no-such-vn \
    25-response-status-invalid-state 30-response-status-missing-tlv \
    31-response-status-invalid-value 32-response-status-conflict \
    33-response-status-unexpected-message; do
    if "$CMP" "$VEC/$v.vec" "$T/all.dump"; then
        ok "vector $v is what the daemon sends"
    else
        echo "FAIL: vector $v differs from what the daemon sends" >&2
        bad=1
    fi
done
[ $bad = 0 ] || fail "vectors differ from the daemon's output"
stop_daemon
ok "clean shutdown"
