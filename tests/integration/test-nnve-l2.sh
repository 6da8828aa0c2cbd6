#!/bin/bash
# nnve-daemon over the Layer-2 channel, on the host kernel in namespaces this test creates:
#
#   [sw] nnve-daemon: transport = tcp, l2; l2_interfaces = swp1, swp2, swp3
#     swp1 --- [br] bridge "access network" --- [h1] up0 (bench1), [h2] up0 (bench2, bench3)
#     swp2 --- [h3] up0 (bench1 again: a port move)
#     swp3 missing at start, created, deleted and created again
#
# Two hypervisors behind one bridge share swp1 with sessions of their own (told apart by
# source MAC), the port is learned from the interface (port = learn) or must match the
# configured one (bench3: refused), discovery and a configured nNVE MAC both work, a tagged
# hypervisor's VLAN is shown, a hypervisor showing up on swp2 takes its TSIs along, a
# session survives its link going down and up, twenty sessions from one MAC are told apart,
# a TCP session runs alongside, interfaces coming and going never stop the daemon, and
# SIGTERM ends it cleanly (ASan build: no leaks).  bench/nnve-load is the L2 SNCP client.
source "$(dirname "$0")/nnve-lib.bash"

LOAD=$SPLITNVE_BUILD/bench/nnve-load
[ -x "$LOAD" ] || fail "$LOAD not built"
P=nl2-$$
NS_SW=$P-sw NS_BR=$P-br NS_H1=$P-h1 NS_H2=$P-h2 NS_H3=$P-h3
LPIDS=()

l2_cleanup() {
    for p in "${LPIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for ns in $NS_SW $NS_BR $NS_H1 $NS_H2 $NS_H3; do ip netns del "$ns" 2>/dev/null || true; done
}
# Ours first, then nnve-lib's (which reads the exit status from $?).
trap 'rc=$?; l2_cleanup; set +e; (exit $rc); cleanup' EXIT

for ns in $NS_SW $NS_BR $NS_H1 $NS_H2 $NS_H3; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$NS_BR" link add br0 type bridge
ip -n "$NS_BR" link set br0 up
# link NS_A IF_A NS_B IF_B: a veth pair, both ends up
link() {
    ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
    ip -n "$1" link set "$2" up
    ip -n "$3" link set "$4" up
}
link "$NS_SW" swp1 "$NS_BR" p-sw
link "$NS_H1" up0 "$NS_BR" p-h1
link "$NS_H2" up0 "$NS_BR" p-h2
link "$NS_SW" swp2 "$NS_H3" up0
for p in p-sw p-h1 p-h2; do ip -n "$NS_BR" link set "$p" master br0; done

"$LOAD" --gen-certs "$T/pki" 24
write_conf "transport = tcp, l2" "l2_interfaces = swp1, swp2, swp3" "sync = normal"
cat >>"$T/n.conf" <<EOF
[hypervisor bench1]
port = learn
vns = 5000-5099
[hypervisor bench2]
port = learn
vns = 5000-5099
[hypervisor bench3]
port = swp2
vns = 5000-5099
[hypervisor bench4]
port = swp1
vns = 5000-5099
EOF
for i in $(seq 5 24); do printf '[hypervisor bench%d]\nport = learn\nvns = 5000-5099\n' "$i"; done >>"$T/n.conf"
"$BIN/nnve-daemon" --check-config -c "$T/n.conf" | grep -q "transport tcp,l2, 1 listen address(es), 3 L2 interface" ||
    fail "--check-config summary"

# Without CAP_NET_RAW the start fails with a clear message (exit status 3).
mkdir "$T/nobody"
chmod a+rx "$T" "$T/pki"
chmod a+r "$T/pki/nnve.key" "$T/pki/nnve.crt" "$T/pki/ca.crt"
chown 65534 "$T/nobody"
sed -e "s|^state_dir = .*|state_dir = $T/nobody/state|" -e "s|^control_socket = .*|control_socket = $T/nobody/ctl|" \
    -e '/^dataplane_journal/d' -e '/^fdb_file/d' "$T/n.conf" >"$T/nobody/n.conf"
rc=0
ip netns exec "$NS_SW" setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
    "$BIN/nnve-daemon" -c "$T/nobody/n.conf" 2>"$T/nobody/log" || rc=$?
[ "$rc" = 3 ] || fail "without CAP_NET_RAW: exit status $rc, want 3: $(cat "$T/nobody/log")"
grep -q 'cannot open L2 interface swp1: Operation not permitted (needs CAP_NET_RAW)' "$T/nobody/log" ||
    fail "without CAP_NET_RAW: $(cat "$T/nobody/log")"
grep -q 'retrying' "$T/nobody/log" && fail "without CAP_NET_RAW: a retry was promised: $(cat "$T/nobody/log")"
ok "without CAP_NET_RAW: exit status 3, needs CAP_NET_RAW"

# The daemon in its namespace; the control socket is a path, reachable from here.
: >"$T/daemon.log"
ip netns exec "$NS_SW" "$BIN/nnve-daemon" -c "$T/n.conf" 2>>"$T/daemon.log" &
DPID=$!
wait_for "daemon start" 10 grep -q 'daemon: started' "$T/daemon.log"
PORT=$(grep 'daemon: started' "$T/daemon.log" | sed 's/.*port=\([0-9]*\).*/\1/')
grep -q 'L2 channel open if=swp1 mac=' "$T/daemon.log" || fail "swp1 not opened"
grep -q 'L2 interface unavailable, retrying every 1000 ms if=swp3 err=No such device' "$T/daemon.log" ||
    fail "missing swp3 not reported"
ok "start: tcp and l2, a missing interface is retried"

# load NAME NETNS ARGS...: nnve-load in the background, output in $T/NAME.out
load() {
    local name=$1 ns=$2; shift 2
    ip netns exec "$ns" "$LOAD" --pki "$T/pki" --pid "$DPID" --rate 0 --serial 20 \
        --tsis 10 --sessions 1 --max-sessions 1 "$@" >"$T/$name.out" 2>&1 &
    LPIDS+=($!)
    eval "LPID_$name=$!"
}
# finished NAME: waits (<= 30 s) for the load and returns its exit status
finished() {
    local pid
    eval "pid=\$LPID_$1"
    local i
    for i in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && fail "nnve-load $1 did not finish"
    local rc=0
    wait "$pid" || rc=$?
    return $rc
}
# holding NAME: waits (<= 30 s) until the load NAME has its sessions up and holds them
holding() {
    local i
    for i in $(seq 300); do
        grep -q '^hold:' "$T/$1.out" && return 0
        sleep 0.1
    done
    fail "nnve-load $1 did not get its sessions up: $(cat "$T/$1.out")"
}
session() { ctl show sessions | jq -c --arg h "$1" '.[] | select(.hypervisor==$h)'; }

# Two hypervisors behind the bridge: bench1 by discovery, bench2 with the nNVE's MAC and
# tagged frames (VLAN 10).
SWP1_MAC=$(ip -n "$NS_SW" -br link show swp1 | awk '{print $3}')
load h1 "$NS_H1" --l2 up0 --first 1 --hold 8000
load h2 "$NS_H2" --l2 up0 --first 2 --hold 8000 --nnve-mac "$SWP1_MAC" --vlan 10
holding h1
holding h2
H1_MAC=$(ip -n "$NS_H1" -br link show up0 | awk '{print $3}')
H2_MAC=$(ip -n "$NS_H2" -br link show up0 | awk '{print $3}')
s1=$(session bench1)
s2=$(session bench2)
[ "$(echo "$s1" | jq -r '[.state, .transport, .port, .interface, .peer_mac, .vlan] | join(" ")')" = \
    "established l2 swp1 swp1 $H1_MAC 0" ] || fail "bench1 session: $s1"
[ "$(echo "$s2" | jq -r '[.state, .transport, .port, .interface, .peer_mac, .vlan] | join(" ")')" = \
    "established l2 swp1 swp1 $H2_MAC 10" ] || fail "bench2 session: $s2"
[ "$(ctl show tsis | jq '[.[] | select(.port=="swp1" and .state=="activated")] | length')" = 20 ] ||
    fail "TSIs of bench1 and bench2 not activated on swp1: $(ctl show tsis)"
ok "two hypervisors share swp1 (discovery; configured MAC + VLAN 10): own sessions, TSIs activated"
finished h1 || fail "bench1 load failed: $(cat "$T/h1.out")"
finished h2 || fail "bench2 load failed: $(cat "$T/h2.out")"
grep -q "serial: 20 requests" "$T/h1.out" || fail "bench1 serial phase: $(cat "$T/h1.out")"

# A configured port that disagrees with the interface: refused, logged.
load h3bad "$NS_H2" --l2 up0 --first 3
finished h3bad && fail "bench3 on swp1 was accepted although configured on swp2"
grep -q 'refused: frames arrive on another port than configured hypervisor=bench3 .*interface=swp1 port=swp2' \
    "$T/daemon.log" || fail "refusal not logged"
ok "bench3 (port = swp2) arriving on swp1: refused with a clear log line"

# bench1 shows up on swp2: its session and TSIs move there.
load h3 "$NS_H3" --l2 up0 --first 1 --hold 5000
holding h3
grep -q 'port changed hypervisor=bench1 old_port=swp1 port=swp2' "$T/daemon.log" || fail "no port move"
[ "$(session bench1 | jq -r '.interface + " " + .port')" = "swp2 swp2" ] || fail "bench1 not on swp2"
[ "$(ctl show tsis | jq '[.[] | select(.hypervisor=="bench1" and .port=="swp2")] | length')" = 10 ] ||
    fail "bench1's TSIs did not move: $(ctl show tsis)"
ok "bench1 reappearing on swp2: port changed, TSIs moved"

# swp2 down for two seconds (the socket stays; frames sent meanwhile are lost and sent
# again): the session lives on and closes in order.
ip -n "$NS_SW" link set swp2 down
sleep 2
ip -n "$NS_SW" link set swp2 up
[ "$(session bench1 | jq -r '.state + " " + .interface')" = "established swp2" ] ||
    fail "bench1's session did not survive swp2 down/up: $(session bench1)"
# ... and the port reads again: the peer's keepalive probes arrive within a few seconds.
rx() { ctl show counters | jq -r '.l2_frames_received_total.swp2'; }
rx_after_up=$(rx)
rx_moves() { [ "$(rx)" -gt "$rx_after_up" ]; }
wait_for "frames on swp2 after it came back up" 5 rx_moves
finished h3 || fail "bench1 on swp2 after down/up: $(cat "$T/h3.out")"
ok "swp2 down and up again: the session survives"

# TCP alongside.
load tcp "$NS_SW" --connect "127.0.0.1:$PORT" --first 4 --hold 3000
holding tcp
[ "$(session bench4 | jq -r '.transport + " " + .port')" = "tcp swp1" ] || fail "bench4 TCP session"
finished tcp || fail "TCP load: $(cat "$T/tcp.out")"
ok "a TCP session alongside"

# A reload cannot change the transports: said in the log, the running set stays (swp3 is
# still watched below).
sed -i 's/^l2_interfaces = .*/l2_interfaces = swp1, swp2/' "$T/n.conf"
kill -HUP "$DPID"
wait_for "reload warning" 10 grep -q 'l2_\* changes take effect at the next restart' "$T/daemon.log"
ok "SIGHUP with other l2_interfaces: logged, the running ones stay"

# swp3 appears, goes away, comes back; the daemon stays.
opens() { ctl show counters | jq -r '.l2_interface_opens_total.swp3'; }
link "$NS_SW" swp3 "$NS_H3" up3
wait_for "swp3 opened" 10 grep -q 'L2 channel open if=swp3' "$T/daemon.log"
[ "$(opens)" = 1 ] || fail "swp3 opens: $(opens)"
# Twenty sessions from one MAC address (told apart by connection id), found by twenty
# discoveries at once (swp3's domain has tags for twenty VNs).
load many "$NS_H3" --l2 up3 --first 5 --sessions 20 --max-sessions 20 --tsis 200
finished many || fail "20 sessions from one MAC: $(cat "$T/many.out")"
grep -q "throughput: 20 sessions, 200 TSI_ACTIVATE" "$T/many.out" || fail "20 sessions: $(cat "$T/many.out")"
[ "$(ctl show tsis | jq '[.[] | select(.port=="swp3")] | length')" = 200 ] ||
    fail "TSIs of the 20 sessions on swp3: $(ctl show tsis | jq -c '[.[] | .port] | group_by(.) | map([.[0], length])')"
ok "20 sessions from one MAC on swp3"
ip -n "$NS_SW" link del swp3
wait_for "swp3 gone" 10 grep -q 'L2 interface lost if=swp3 reason=gone or replaced' "$T/daemon.log"
[ "$(ctl show counters | jq -r '.l2_interface_up.swp3')" = 0 ] || fail "swp3 still up"
link "$NS_SW" swp3 "$NS_H3" up3
opened_twice() { [ "$(opens)" = 2 ]; }
wait_for "swp3 reopened" 10 opened_twice
kill -0 "$DPID" || fail "daemon died"
ok "swp3 created late, deleted and created again: opened each time, daemon alive"

stop_daemon
grep -q 'daemon: stopped' "$T/daemon.log" || fail "no clean stop"
ok "SIGTERM: clean stop"
