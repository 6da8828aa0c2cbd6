#!/bin/bash
# Benchmark: an established hypervisor session over the Layer-2 channel while an attacker
# floods nnve-daemon's port with OPENs from random source MACs (run by scripts/run-bench.sh
# with SPLITNVE_BUILD and SPLITNVE_SRC; needs root).  An access network (a bridge in its own
# namespace) joins nnve-daemon (transport = l2) on swp1, the hypervisor's up0 with
# bench/nnve-load (one session, identity bench1) and the attacker's atk0 with bench/l2-flood
# (random MACs; the bridge learns them, so the answers go back to the attacker's port only).
# Three runs of the same load, each with a fresh state database:
#   quiet   no flood;
#   flood   l2-flood at NNVE_FLOOD_RATE OPENs/s (20000), a fifth with forged cookies;
#   echo    l2-flood at NNVE_FLOOD_ECHO_RATE (5000) that also returns every cookie it sees
#           (an attacker who sees the segment), so connections are created up to
#           l2_max_unauthenticated (default 32).
# The flood starts once the session is up and lasts until the load is done.  For each run:
# the load's figures (throughput, latency p50/p99, serial p50/p99 and requests/s), the
# daemon's VmRSS before, at most during and after, and the L2 counters.  Figures only.
# Sizes: NNVE_FLOOD_TSIS (5000), _RATE_REQ (1000/s), _SERIAL (3000).
set -euo pipefail
: "${SPLITNVE_BUILD:?}" "${SPLITNVE_SRC:?}"
flood_rate=${NNVE_FLOOD_RATE:-20000}
echo_rate=${NNVE_FLOOD_ECHO_RATE:-5000}
tsis=${NNVE_FLOOD_TSIS:-5000}
rate=${NNVE_FLOOD_RATE_REQ:-1000}
serial=${NNVE_FLOOD_SERIAL:-3000}
MAC_N=02:00:5e:10:00:01

T=$(mktemp -d)
NS_N=l2flood-$$-n NS_H=l2flood-$$-h NS_A=l2flood-$$-a NS_B=l2flood-$$-b
DPID= FPID= SPID=
stop() { if [ -n "$1" ]; then kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; fi; }
cleanup() {
    stop "$FPID"
    stop "$SPID"
    stop "$DPID"
    for ns in "$NS_N" "$NS_H" "$NS_A" "$NS_B"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT

for ns in "$NS_N" "$NS_H" "$NS_A" "$NS_B"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip -n "$NS_B" link add br0 type bridge
ip -n "$NS_B" link set br0 up
# plug NS IF PORT: a veth pair from IF in NS to PORT of br0
plug() {
    ip link add "$2" netns "$1" type veth peer name "$3" netns "$NS_B"
    ip -n "$NS_B" link set "$3" master br0 up
    ip -n "$1" link set "$2" up
}
plug "$NS_N" swp1 p-sw
plug "$NS_H" up0 p-hv
plug "$NS_A" atk0 p-atk
ip -n "$NS_N" link set swp1 address "$MAC_N"

"$SPLITNVE_SRC/scripts/gen-pki.sh" "$T/pki" nnve >/dev/null
"$SPLITNVE_BUILD/bench/nnve-load" --gen-certs "$T/pki" 1 >/dev/null

rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$DPID/status"; }
counters() {
    "$SPLITNVE_BUILD/bin/nnvectl" -s "$T/ctl-$1" --json show counters |
        jq -r '"counters: cookies sent \(.l2_cookies_sent_total.swp1), cookie failures \(.l2_cookie_failures_total.swp1), rate-limited \(.l2_open_rate_limited_total.swp1), refused at the cap \(.l2_unauthenticated_refused_total.swp1), unauthenticated at most \(.l2_unauthenticated_peak.swp1), connections now \(.l2_connections.swp1), kernel drops \(.l2_rx_dropped_total.swp1)"'
}

run() {
    local name=$1
    {
        printf '[global]\ntransport = l2\nl2_interfaces = swp1\nlog_level = warn\nsync = normal\n'
        printf 'cert = %s\nkey = %s\nca = %s\n' "$T/pki/nnve.crt" "$T/pki/nnve.key" "$T/pki/ca.crt"
        printf 'state_dir = %s\ncontrol_socket = %s\n' "$T/state-$name" "$T/ctl-$name"
        printf 'max_tsis_per_session = 1000000\n'
        printf '[domain rack]\nports = swp1\ntags = 1-4094\n'
        printf '[hypervisor bench1]\nport = swp1\nvns = 5000-5099\n'
    } >"$T/n.conf"
    ip netns exec "$NS_N" "$SPLITNVE_BUILD/bin/nnve-daemon" -c "$T/n.conf" 2>"$T/daemon-$name.log" &
    DPID=$!
    local i
    for i in $(seq 100); do
        [ -S "$T/ctl-$name" ] && break
        sleep 0.1
    done
    [ -S "$T/ctl-$name" ] || { echo "l2-flood bench: daemon did not start"; cat "$T/daemon-$name.log"; exit 1; }
    local rss0
    rss0=$(rss)
    (while :; do rss >>"$T/rss-$name"; sleep 0.2; done) &
    SPID=$!
    echo "-- $name: nnve-daemon pid $DPID; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
    ip netns exec "$NS_H" "$SPLITNVE_BUILD/bench/nnve-load" --l2 up0 --nnve-mac "$MAC_N" \
        --pki "$T/pki" --pid "$DPID" --sessions 1 --max-sessions 1 --tsis "$tsis" \
        --rate "$rate" --serial "$serial" >"$T/load-$name.out" 2>&1 &
    local lpid=$!
    if [ "$name" != quiet ]; then
        for i in $(seq 100); do
            [ "$(ip netns exec "$NS_N" "$SPLITNVE_BUILD/bin/nnvectl" -s "$T/ctl-$name" --json show sessions | jq length)" = 1 ] && break
            sleep 0.05
        done
        local args=(--rate "$flood_rate" --bad-cookies 20)
        [ "$name" = echo ] && args=(--rate "$echo_rate" --echo-cookies)
        ip netns exec "$NS_A" "$SPLITNVE_BUILD/bench/l2-flood" --if atk0 --dst "$MAC_N" \
            --count 10000000 --seconds 120 "${args[@]}" >"$T/flood-$name.out" &
        FPID=$!
    fi
    wait "$lpid" || echo "l2-flood bench: nnve-load exited $?"
    if [ -n "$FPID" ]; then
        kill -INT "$FPID" 2>/dev/null || true
        stop "$FPID"
        FPID=
    fi
    sleep 0.5
    stop "$SPID"
    SPID=
    grep -v '^daemon pid\|^rss:\|^l2 (load' "$T/load-$name.out" | sed 's/^/   /'
    [ -s "$T/flood-$name.out" ] && sed 's/^/   /' "$T/flood-$name.out"
    echo "   rss: before $rss0 KiB, at most $(sort -n "$T/rss-$name" | tail -1) KiB during, after $(rss) KiB"
    echo "   $(counters "$name")"
    stop "$DPID"
    DPID=
    rm -rf "$T/state-$name"
}

run quiet
run flood
run echo
