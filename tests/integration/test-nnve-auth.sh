#!/bin/bash
# Authentication and authorization: unknown identity, certificate from another CA or expired,
# VN not allowed, requests before HELLO, bad version, second HELLO, port = learn over TCP,
# session replace.
source "$(dirname "$0")/nnve-lib.bash"
write_conf
start_daemon

# hv9 has a valid certificate but no [hypervisor] section: default deny at HELLO, closed.
out=$(client hv9 <<EOF || true
hello node=hv9 epoch=1
connect vn=5000
EOF
)
echo "$out"
[ "$(status_of "$out" HELLO)" = not-authorized ] || fail "unknown identity not refused"
echo "$out" | grep -q '"type":"CLOSED"' || fail "session of an unknown identity not closed"
grep -q 'refused: identity not authorized hypervisor=hv9' "$T/daemon.log" || fail "refusal not logged with identity"
ok "unknown identity refused and logged"

# A certificate from an unrelated CA: no TLS session at all.
out=$("$CLIENT" --connect "127.0.0.1:$PORT" --cert "$T/pki/rogue.crt" --key "$T/pki/rogue.key" \
    --ca "$T/pki/ca.crt" --expect-peer nnve <<<"hello node=x epoch=1" 2>/dev/null || true)
echo "$out"
# (TLS 1.3: the client may finish its side before the server rejects its certificate)
[ -z "$(status_of "$out" HELLO)" ] || fail "rogue certificate got a HELLO answered"
wait_for "handshake failure counted" 5 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show counters | jq -e '.tls_handshake_failures_total >= 1'"
grep -q 'TLS handshake failed' "$T/daemon.log" || fail "handshake failure not logged"
[ "$(grep -c 'tls-handshake-failed' "$T/daemon.log")" = 1 ] ||
    fail "one handshake failure, not one log line: $(grep tls-handshake-failed "$T/daemon.log")"
ok "certificate of another CA refused"

n0=$(ctl show counters | jq .tls_handshake_failures_total)
out=$("$CLIENT" --connect "127.0.0.1:$PORT" --cert "$T/pki/stale.crt" --key "$T/pki/stale.key" \
    --ca "$T/pki/ca.crt" --expect-peer nnve <<<"hello node=x epoch=1" 2>/dev/null || true)
[ -z "$(status_of "$out" HELLO)" ] || fail "expired certificate got a HELLO answered"
wait_for "expired certificate counted" 5 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show counters | jq -e '.tls_handshake_failures_total > $n0'"
ok "expired certificate refused"

# Requests before HELLO, a version we do not speak, a second HELLO, VN not allowed.
out=$(client hv1 <<EOF
connect vn=5000
hello node=hv1 epoch=1
hello node=hv1 epoch=1
connect vn=5011
connect vn=5010
EOF
)
echo "$out"
[ "$(status_of "$out" VN_CONNECT 1)" = unexpected-message ] || fail "request before HELLO"
[ "$(status_of "$out" HELLO 1)" = success ] || fail "HELLO after a refused request"
[ "$(status_of "$out" HELLO 2)" = unexpected-message ] || fail "second HELLO"
[ "$(status_of "$out" VN_CONNECT 2)" = not-authorized ] || fail "VN outside the policy"
[ "$(status_of "$out" VN_CONNECT 3)" = success ] || fail "VN inside the policy"
out=$(client hv2 <<EOF || true
hello node=hv2 epoch=1 version=2-3
EOF
)
[ "$(status_of "$out" HELLO)" = unsupported-version ] || fail "version negotiation"
ok "HELLO rules and VN policy"

# hv3 has port = learn.  Over TCP nothing ties the connection to a switch port: the
# UPLINK_MAC is the peer's word (any MAC in the forwarding table, another hypervisor's too),
# so learning is refused, even with a MAC the table knows (it is learned over L2 only).
out=$(client hv3 <<EOF || true
hello node=hv3 epoch=1 uplink=52:54:00:aa:00:99 uplink=52:54:00:aa:00:03
connect vn=5000
EOF
)
echo "$out"
[ "$(status_of "$out" HELLO)" = not-authorized ] || fail "port learned over TCP from a MAC the peer named"
echo "$out" | grep -q '"type":"CLOSED"' || fail "session with an unconfirmed port not closed"
[ "$(ctl show sessions | jq '[.[] | select(.hypervisor=="hv3")] | length')" = 0 ] || fail "hv3 has a session"
grep -q 'refused: port = learn cannot be confirmed over TCP hypervisor=hv3' "$T/daemon.log" || fail "learn refusal not logged"
ok "port = learn refused over TCP"

# A new session of the same identity replaces the old one.
cat >"$T/hv2.script" <<EOF
hello node=hv2 epoch=1
connect vn=5003
wait-close 15000
EOF
bg_client hv2 "$T/old.out"
wait_for "first hv2 session" 10 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show sessions | jq -e '.[] | select(.hypervisor==\"hv2\" and .state==\"established\")'"
out=$(client hv2 <<EOF
hello node=hv2 epoch=2
connect vn=5003
EOF
)
[ "$(status_of "$out" VN_CONNECT)" = success ] || fail "new session"
wait_for "old session closed" 10 grep -q CLOSED "$T/old.out"
grep -q 'replaced by a new session hypervisor=hv2' "$T/daemon.log" || fail "replacement not logged"
ok "session replaced"

n=$(ctl show counters | jq '.hello_refused_total')
[ "$n" -ge 3 ] || fail "hello_refused_total=$n"
stop_daemon
ok "clean shutdown"
