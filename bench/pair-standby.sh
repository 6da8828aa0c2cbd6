#!/bin/bash
# bench/pair-standby.sh: inside User-Mode Linux, what a dual-homed hypervisor's VM loses when
# its active-backup bond fails over between the two switches of a ToR pair
# (the topology of tests/uml/pair-lib.bash; the scenario of
# tests/integration/test-pair-standby.sh, phase b).
#
# vm1 (hv1) pings vm2 (hv2) every 20 ms (ping -D); after 1 s sw1's host ports go down, both
# bonds fail over to e2 (sw2).  Measured, for PAIR_BENCH_RUNS runs (default 3) of each:
#   - active-standby VNs with `uplink` set: the agents move the VN to sw2 when the bond's
#     active slave changes (the figure);
#   - active-active VNs: both switches hold the VN all along, so only the bond's own
#     failover and the switches' MAC moves cost anything (the floor).
# Figure: the time from the last reply before the links went down to the first reply after
# (p50 over the runs, ms), and the replies lost.  Figures only.
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=${SPLITNVE_SRC:-$(cd "$here/.." && pwd)}

if [ "${1:-}" = "--inside" ]; then
    mode=$PAIR_BENCH_MODE
    PAIR_MODE=$mode
    PAIR_UPLINKS="e1 e2"
    . "$src/tests/uml/racks-lib.bash"
    . "$src/tests/uml/pair-lib.bash"
    trap 'racks_stop' EXIT
    pair_start || exit 1
    pair_vms_start vm1 vm2 || exit 1
    racks_wait "activated at sw1" 30 tsis_in sw1 activated vm1 vm2 || exit 1
    vm_ping vm1 "$(vm_ip vm2)" 5 || exit 1
    ip netns exec vm1 ping -D -n -i 0.02 -w 60 "$(vm_ip vm2)" >"$R/ping" 2>&1 &
    pinger=$!
    sleep 1
    t0=$(date +%s.%N)
    ip -n sw1 link set swp1 down && ip -n sw1 link set swp2 down || exit 1
    racks_wait "activated at sw2" 20 tsis_in sw2 activated vm1 vm2 || exit 1
    t1=$(date +%s.%N)
    racks_wait "pings through sw2" 20 replied_after "$R/ping" "$t1" || exit 1
    sleep 1
    kill -INT "$pinger"
    wait "$pinger"
    read -r lost sent gap _ <<<"$(ping_stats "$R/ping" "$t0")"
    echo "RESULT $mode $gap $lost $sent"
    exit 0
fi

build=${SPLITNVE_BUILD:-$src/build}
command -v linux.uml >/dev/null || { echo "pair-standby bench: skipped (linux.uml missing)"; exit 0; }
. "$src/tests/uml/racks-host.bash"
bin=$(racks_host_bins "$build" "$src") || { echo "$bin"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
"$src/scripts/gen-pki.sh" "$tmp/pki" nnve1 nnve2 hv1 hv2 >/dev/null || exit 1
runs=${PAIR_BENCH_RUNS:-3}
for mode in active-active active-standby; do
    for ((i = 0; i < runs; i++)); do
        "$src/tests/uml/uml-run.sh" --mem 768M --timeout 150 --share "$tmp" \
            --env "RACKS_BIN=$bin" --env "RACKS_PKI=$tmp/pki" --env "PAIR_BENCH_MODE=$mode" \
            "$here/pair-standby.sh" --inside >"$tmp/out" 2>&1 ||
            { tail -n 20 "$tmp/out"; echo "pair-standby bench: $mode run failed"; exit 1; }
        grep '^RESULT ' "$tmp/out" | tee -a "$tmp/results"
    done
done
p50() { awk -v m="$1" -v f="$2" '$2 == m { print $f }' "$tmp/results" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
floor=$(p50 active-active 3)
value=$(p50 active-standby 3)
ratio=$(awk -v v="$value" -v f="$floor" 'BEGIN { if (f > 0) printf "%.2f", v / f; else print "-" }')
echo "pair-standby: last reply before -> first reply after the link went down, ms, p50 of $runs: active-standby $value, active-active (bond only) $floor"
echo "TABLE|active-standby failover (pings, link down) (ms)|$value|$floor|$ratio"
echo "TABLE|active-standby failover: replies lost, p50 (ping every 20 ms)|$(p50 active-standby 4)|$(p50 active-active 4)|-"
