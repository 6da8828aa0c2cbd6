#!/bin/bash
# test-adv-l2.sh: an attacker on the access network floods nnve-daemon's Layer-2 port with
# OPENs from random source MACs (proto/L2-TRANSPORT.md §6.2, §9), on the host kernel in
# namespaces this test creates:
#
#   [sw] nnve-daemon, transport = tcp, l2 on swp1, l2_max_unauthenticated = 4
#     swp1 --- veth --- [h] up0: hv1 (sncp-client over L2, a valid certificate) and the
#                                attacker (bench/l2-flood, random MACs on the same wire)
#
# 1. Plain flood (some OPENs with forged cookies): every OPEN is answered with a COOKIE or
#    dropped by the rate limits, and not one connection is created.
# 2. An attacker who sees the segment echoes the cookies: connections are created, never more
#    than 4 not yet authenticated at once (OPENs beyond are refused and counted), and they
#    go when their TLS handshake times out.
# 3. Meanwhile hv1's established session keeps working: its requests after the floods
#    succeed, and it is the only session the daemon shows.  Outside sanitizer builds the
#    daemon's RSS grows by less than 16 MiB over both floods.
source "$(dirname "$0")/nnve-lib.bash"

FLOOD=$SPLITNVE_BUILD/bench/l2-flood
[ -x "$FLOOD" ] || fail "$FLOOD not built"
P=adl2-$$
NS_SW=$P-sw NS_H=$P-h
MAC_SW=02:00:5e:10:00:01
trap 'rc=$?; ip netns del "$NS_SW" 2>/dev/null; ip netns del "$NS_H" 2>/dev/null; set +e; (exit $rc); cleanup' EXIT

ip netns add "$NS_SW"
ip netns add "$NS_H"
ip link add swp1 netns "$NS_SW" type veth peer name up0 netns "$NS_H"
ip -n "$NS_SW" link set swp1 address "$MAC_SW"
for ns in "$NS_SW" "$NS_H"; do ip -n "$ns" link set lo up; done
ip -n "$NS_SW" link set swp1 up
ip -n "$NS_H" link set up0 up

write_conf "transport = tcp, l2" "l2_interfaces = swp1" "l2_max_unauthenticated = 4" \
    "handshake_timeout = 2s" "sync = normal"
: >"$T/daemon.log"
ip netns exec "$NS_SW" "$BIN/nnve-daemon" -c "$T/n.conf" 2>>"$T/daemon.log" &
DPID=$!
wait_for "daemon start" 10 grep -q 'daemon: started' "$T/daemon.log"

counter() { ctl show counters | jq -r --arg k "$1" '.[$k].swp1'; }
rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$DPID/status"; }

# hv1: an established session that works before, during and after the floods (its script
# is read at start: the sleeps put its requests during the floods and after them; whenever
# they run, each must succeed).
cat >"$T/hv1.script" <<EOF
hello node=hv1 epoch=1
connect vn=5000
sleep 1500
connect vn=5001
sleep 10000
associate tsi=$(tsi 01) vn=5000
activate tsi=$(tsi 01) vn=5000
quit
EOF
ip netns exec "$NS_H" "$CLIENT" --l2 up0 --nnve-mac "$MAC_SW" --cert "$T/pki/hv1.crt" \
    --key "$T/pki/hv1.key" --ca "$T/pki/ca.crt" --expect-peer nnve --timeout 30000 \
    <"$T/hv1.script" >"$T/hv1.out" 2>"$T/hv1.err" &
HV1=$!
CPIDS+=($HV1)
session_up() { ctl show sessions | jq -e '[.[] | select(.hypervisor == "hv1")] | length == 1'; }
wait_for "hv1's L2 session" 15 session_up
rss0=$(rss)
cookies0=$(counter l2_cookies_sent_total)
[ "$cookies0" -ge 1 ] || fail "hv1's own OPEN was not answered with a cookie: $cookies0"
[ "$(counter l2_connections)" = 1 ] || fail "connections before the flood: $(counter l2_connections)"
ok "hv1 connected over L2 after a cookie round trip"

# ---- 1. plain flood: 3000 OPENs from random MACs, a fifth with forged cookies ------------
ip netns exec "$NS_H" "$FLOOD" --if up0 --dst "$MAC_SW" --count 3000 --rate 0 --seconds 10 \
    --bad-cookies 20 >"$T/flood1.out" || fail "l2-flood: $(cat "$T/flood1.out")"
sleep 0.3
cookies=$(($(counter l2_cookies_sent_total) - cookies0))
limited=$(counter l2_open_rate_limited_total)
failures=$(counter l2_cookie_failures_total)
[ "$cookies" -gt 0 ] || fail "no COOKIE answers: $(cat "$T/flood1.out")"
[ "$failures" -gt 0 ] || fail "forged cookies not counted"
[ "$failures" -le 3000 ] || fail "cookie failures $failures of 3000 OPENs"
[ $((cookies + limited)) -le 3000 ] || fail "answers $cookies + dropped $limited of 3000 OPENs"
[ "$(counter l2_connections)" = 1 ] || fail "a connection was created for the flood: $(counter l2_connections)"
[ "$(counter l2_unauthenticated_peak)" = 1 ] || fail "unauthenticated peak $(counter l2_unauthenticated_peak)"
grep -q 'OPEN_ACK 0,' "$T/flood1.out" || fail "the flood got OPEN_ACKs: $(cat "$T/flood1.out")"
ok "plain flood: $(cat "$T/flood1.out" | cut -c1-60)...; $cookies cookies, $limited rate-limited, $failures forged, no connection"

# ---- 2. the attacker echoes the cookies ------------------------------------------------------
ip netns exec "$NS_H" "$FLOOD" --if up0 --dst "$MAC_SW" --count 2000 --rate 2000 --seconds 10 \
    --echo-cookies >"$T/flood2.out" || fail "l2-flood: $(cat "$T/flood2.out")"
conns=$(counter l2_connections)
peak=$(counter l2_unauthenticated_peak)
refused=$(counter l2_unauthenticated_refused_total)
[ "$peak" = 4 ] || fail "unauthenticated peak $peak, want the cap 4: $(cat "$T/flood2.out")"
[ "$refused" -gt 0 ] || fail "no OPEN refused at the cap: $(cat "$T/flood2.out")"
[ "$conns" -le 5 ] || fail "$conns connections with a cap of 4 unauthenticated"
grep -q 'OPEN_ACK [1-9]' "$T/flood2.out" || fail "echoed cookies made no connection: $(cat "$T/flood2.out")"
ctl show sessions | jq -e '[.[] | select(.hypervisor != "hv1")] | length == 0' >/dev/null ||
    fail "sessions besides hv1's: $(ctl show sessions)"
ok "echoed cookies: at most 4 unauthenticated connections, $refused OPENs refused at the cap"
gone() { [ "$(counter l2_unauthenticated)" = 0 ]; }
wait_for "the attacker's connections to time out" 15 gone
ok "the attacker's connections end with their TLS handshake timeout"

# ---- 3. hv1 still works ----------------------------------------------------------------------
for i in $(seq 300); do kill -0 "$HV1" 2>/dev/null || break; sleep 0.1; done
rc=0
wait "$HV1" || rc=$?
[ "$rc" = 0 ] || fail "hv1's client: exit $rc: $(cat "$T/hv1.out" "$T/hv1.err")"
out=$(cat "$T/hv1.out")
[ "$(status_of "$out" VN_CONNECT 2)" = success ] || fail "hv1 VN_CONNECT after the flood: $out"
[ "$(status_of "$out" TSI_ASSOCIATE)" = success ] || fail "hv1 associate after the floods: $out"
[ "$(status_of "$out" TSI_ACTIVATE)" = success ] || fail "hv1 activate after the floods: $out"
[ "$(ctl show tsis | jq '[.[] | select(.hypervisor == "hv1" and .state == "activated")] | length')" = 1 ] ||
    fail "hv1's TSI: $(ctl show tsis)"
ok "hv1's session answered during and after the floods"

rss1=$(rss)
if grep -qa AddressSanitizer "$BIN/nnve-daemon"; then
    ok "daemon RSS ${rss0} KiB -> ${rss1} KiB (not checked under ASan)"
else
    [ $((rss1 - rss0)) -lt 16384 ] || fail "daemon RSS grew from $rss0 to $rss1 KiB"
    ok "daemon RSS ${rss0} KiB -> ${rss1} KiB"
fi
stop_daemon
ok "SIGTERM: exit 0"
