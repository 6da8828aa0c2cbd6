#!/bin/bash
# Benchmark: SNCP over the Layer-2 channel against SNCP over TCP, both over one veth pair
# between two network namespaces (run by scripts/run-bench.sh with SPLITNVE_BUILD and
# SPLITNVE_SRC; needs root).  nnve-daemon runs with transport = tcp, l2 on its end (swp1,
# 192.0.2.1), bench/nnve-load on the other end (up0, 192.0.2.2), once per transport with a
# fresh state database, printing for each:
#   throughput  TSI_ACTIVATE from Init (associate+activate), window 64 per session;
#   latency     deactivate/activate toggles at a fixed modest rate: p50/p99;
#   serial      the same, one request in flight on one session (window 1): p50/p99, req/s.
# sync = normal by default, so the figures are the transports' and not the disk's
# (NNVE_BENCH_SYNC=full to include the fsync).  Figures only; the goal is L2 within 2x of
# TCP.  The two alternate for NNVE_L2_BENCH_ROUNDS rounds (3), then a summary gives the
# median of each figure and the L2/TCP ratio (the tails move with the machine's load).
# Sizes: NNVE_L2_BENCH_SESSIONS (10), _TSIS (20000), _RATE (2000/s), _SERIAL (2000).
set -euo pipefail
: "${SPLITNVE_BUILD:?}" "${SPLITNVE_SRC:?}"
sessions=${NNVE_L2_BENCH_SESSIONS:-10}
tsis=${NNVE_L2_BENCH_TSIS:-20000}
rate=${NNVE_L2_BENCH_RATE:-2000}
serial=${NNVE_L2_BENCH_SERIAL:-2000}
sync=${NNVE_BENCH_SYNC:-normal}
rounds=${NNVE_L2_BENCH_ROUNDS:-3}

T=$(mktemp -d)
NS_N=l2bench-$$-n NS_H=l2bench-$$-h
DPID=
cleanup() {
    if [ -n "$DPID" ]; then kill -TERM "$DPID" 2>/dev/null || true; wait "$DPID" 2>/dev/null || true; fi
    ip netns del "$NS_N" 2>/dev/null || true
    ip netns del "$NS_H" 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT

ip netns add "$NS_N"
ip netns add "$NS_H"
ip link add swp1 netns "$NS_N" type veth peer name up0 netns "$NS_H"
ip -n "$NS_N" addr add 192.0.2.1/24 dev swp1
ip -n "$NS_H" addr add 192.0.2.2/24 dev up0
for ns in "$NS_N" "$NS_H"; do ip -n "$ns" link set lo up; done
ip -n "$NS_N" link set swp1 up
ip -n "$NS_H" link set up0 up

"$SPLITNVE_SRC/scripts/gen-pki.sh" "$T/pki" nnve
"$SPLITNVE_BUILD/bench/nnve-load" --gen-certs "$T/pki" "$sessions"

run() {
    local transport=$1
    {
        printf '[global]\ntransport = tcp, l2\nlisten = 192.0.2.1:8394\nl2_interfaces = swp1\n'
        printf 'log_level = warn\nsync = %s\n' "$sync"
        printf 'cert = %s\nkey = %s\nca = %s\n' "$T/pki/nnve.crt" "$T/pki/nnve.key" "$T/pki/ca.crt"
        printf 'state_dir = %s\ncontrol_socket = %s\n' "$T/state-$transport" "$T/ctl-$transport"
        printf 'max_tsis_per_session = 1000000\n'
        # the load generator opens every session at once, from one address
        printf 'max_hello_pending_per_source = %d\n' "$sessions"
        printf '[domain rack]\nports = swp1\ntags = 1-4094\n'
        for i in $(seq "$sessions"); do
            printf '[hypervisor bench%d]\nport = swp1\nvns = 5000-5099\n' "$i"
        done
    } >"$T/n.conf"
    ip netns exec "$NS_N" "$SPLITNVE_BUILD/bin/nnve-daemon" -c "$T/n.conf" 2>"$T/daemon-$transport.log" &
    DPID=$!
    local i
    for i in $(seq 100); do
        [ -S "$T/ctl-$transport" ] && break
        sleep 0.1
    done
    [ -S "$T/ctl-$transport" ] || { echo "l2 bench: daemon did not start"; cat "$T/daemon-$transport.log"; exit 1; }
    local target
    if [ "$transport" = tcp ]; then target=(--connect 192.0.2.1:8394); else target=(--l2 up0); fi
    echo "-- $transport over veth: nnve-daemon sync=$sync pid $DPID; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
    ip netns exec "$NS_H" "$SPLITNVE_BUILD/bench/nnve-load" "${target[@]}" --pki "$T/pki" --pid "$DPID" \
        --sessions "$sessions" --max-sessions "$sessions" --tsis "$tsis" --rate "$rate" --serial "$serial" |
        grep -v '^daemon pid\|^rss:' | tee -a "$T/figures-$transport"
    kill -TERM "$DPID"
    wait "$DPID" || true
    DPID=
    rm -rf "$T/state-$transport"
}

for r in $(seq "$rounds"); do
    run tcp
    run l2
done

# median FILE PATTERN FIELD: the median, over the lines matching PATTERN, of the number after
# FIELD's first occurrence on each (a latency line has a second p99, of the sends' lateness)
median() {
    grep "$2" "$1" | while IFS= read -r l; do
        grep -o "$3 [0-9.]*" <<<"$l" | head -n 1 | awk '{print $NF}'
    done | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}
echo "-- summary: medians of $rounds rounds, [L2/TCP]"
for fig in "throughput|activations/s|in [0-9.]* s:" "latency|p50 ms|p50" "latency|p99 ms|p99" \
    "serial|p50 ms|p50" "serial|p99 ms|p99" "serial|requests/s|max [0-9.]* ms,"; do
    IFS='|' read -r line name field <<<"$fig"
    tcp=$(median "$T/figures-tcp" "^$line" "$field")
    l2=$(median "$T/figures-l2" "^$line" "$field")
    printf '%-10s %-15s tcp %10s   l2 %10s   [%s]\n' "$line" "$name" "$tcp" "$l2" \
        "$(awk -v a="$l2" -v b="$tcp" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
done
