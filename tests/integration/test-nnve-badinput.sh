#!/bin/bash
# Bad input over live sessions: malformed messages are answered with a status and the session
# stays; a TCP peer that never starts TLS is dropped after handshake_timeout; a peer that
# floods requests and never reads is cut off; all counted and logged, and the daemon keeps
# serving other hypervisors throughout.
source "$(dirname "$0")/nnve-lib.bash"
write_conf "handshake_timeout = 1s" "keepalive = 1s" "max_write_queue = 65536"
start_daemon

# Malformed messages inside a live session (each framed correctly, so the stream survives).
out=$(client hv1 <<EOF
hello node=hv1 epoch=1
connect vn=5000
raw 01030000 00000010 00000063 0007 0000
raw 01030000 00000018 00000064 8063 0000 0007 0004 00001388
raw 01030000 00000014 00000065 0007 0010 00001388
raw 01630000 0000000c 00000066
raw 01060000 0000000c 00000067
connect vn=5000
EOF
)
echo "$out"
raws=$(echo "$out" | jq -c 'select(.type=="RAW") | .statuses')
echo "$raws"
[ "$(echo "$raws" | sed -n 1p | jq -r 'keys[0]')" != null ] || fail "VN_ID of length 0 not answered"
[ "$(echo "$raws" | sed -n 2p | jq -r 'keys[0]')" = unknown-critical-tlv ] || fail "unknown critical TLV"
[ "$(echo "$raws" | sed -n 3p | jq -r 'keys[0]')" = malformed ] || fail "TLV length that lies"
[ "$(echo "$raws" | sed -n 5p | jq -r 'keys[0]')" = missing-tlv ] || fail "TSI_ACTIVATE without TLVs"
[ "$(status_of "$out" VN_CONNECT 2)" = success ] || fail "session not usable after malformed input"
[ "$(ctl show counters | jq .malformed_total)" -ge 3 ] || fail "malformed not counted"
ok "malformed input answered, session kept"

# Half-open: a TCP connection that never sends a ClientHello.
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
t0=$SECONDS
timeout 10 cat <&3 >/dev/null || true
exec 3<&-
[ $((SECONDS - t0)) -le 5 ] || fail "half-open connection not dropped in time"
wait_for "half-open counted" 5 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show counters | jq -e '.tls_handshake_failures_total >= 1'"
ok "half-open TLS dropped after handshake_timeout"

# A peer that floods requests and never reads its responses.
cat >"$T/flood.py" <<'EOF'
import socket, ssl, struct, sys, time
d, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_verify_locations(d + "/ca.crt")
ctx.load_cert_chain(d + "/hv2.crt", d + "/hv2.key")
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="nnve")
def msg(t, xid, tlvs):
    body = b"".join(struct.pack(">HH", k, len(v)) + v for k, v in tlvs)
    return struct.pack(">BBHII", 1, t, 0, 12 + len(body), xid) + body
s.sendall(msg(1, 1, [(1, b"\x01\x01"), (3, b"flood"), (4, struct.pack(">Q", 1))]))
s.settimeout(20)
one = msg(3, 2, [(7, struct.pack(">I", 5000))])
batch = one * 500
t0 = time.time()
try:
    while time.time() - t0 < 20:
        s.sendall(batch)
except Exception as e:
    print("flood stopped:", type(e).__name__)
EOF
python3 "$T/flood.py" "$T/pki" "$PORT" >"$T/flood.out" 2>&1 &
CPIDS+=($!)
sleep 1
# Meanwhile another hypervisor is served.
out=$(client hv1 <<EOF
hello node=hv1 epoch=2
connect vn=5001
activate tsi=$(tsi 01) vn=5001
EOF
)
[ "$(status_of "$out" TSI_ACTIVATE)" = success ] || fail "daemon not serving others during a flood"
wait_for "flooder cut off" 20 grep -q 'hypervisor=hv2.*reason=' "$T/daemon.log"
grep 'hypervisor=hv2' "$T/daemon.log" | grep -E 'closed|not reading' | tail -2
[ "$(ctl show counters | jq .sessions_closed_error_total)" -ge 1 ] || fail "flooder close not counted"
ok "peer that never reads is closed with a logged reason"
kill "${CPIDS[-1]}" 2>/dev/null || true

out=$(client hv1 <<EOF
hello node=hv1 epoch=3
connect vn=5001
EOF
)
[ "$(status_of "$out" VN_CONNECT)" = success ] || fail "daemon not serving after the flood"
stop_daemon
ok "clean shutdown"
