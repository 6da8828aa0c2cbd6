#!/bin/bash
# bench/pair-uml.sh: failover of a ToR pair under active-active, measured with ping inside
# User-Mode Linux, in the topology of tests/uml/pair-lib.bash (sw1 and sw2 running
# nnve-daemon with the `linux` backend in one [pair] domain; hv1 and hv2 on active-backup
# bonds to both; tnve-agent active-active; a VXLAN peer outside the rack).
#
# vm1 (hv1) pings vm2 (hv2, same rack) and the VXLAN peer's host (across the fabric), each
# every 20 ms (`ping -D -i 0.02`), while PAIR_BENCH_CYCLES times (default 3) each of:
#   kill   kill -9 of the nnve-daemon of the switch the bonds use (then restarted; the next
#          cycle waits until the pair and the agents are back in sync)
#   link   that switch's host links (swp1, swp2) go down: the bonds fail over to the other
#          switch (then the links come back; the bonds stay where they are, so the next
#          cycle fails the other switch)
# From ping's own timestamps: the gap between the last reply before the failure and the
# first reply after it (the longest time between two consecutive replies from the event on),
# and the pings lost (echo requests with no reply; nothing else fails during a run).  The
# floor of a gap is the ping interval (20 ms).  Figures only.
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=${SPLITNVE_SRC:-$(cd "$here/.." && pwd)}

if [ "${1:-}" = "--inside" ]; then
    . "$src/tests/uml/racks-lib.bash"
    . "$src/tests/uml/pair-lib.bash"
    trap 'racks_stop' EXIT
    cycles=${PAIR_BENCH_CYCLES:-3}
    bail() { echo "pair-uml bench: $*"; tail -n 20 "$R"/sw?/nnve.log; exit 1; }
    pair_start >/dev/null || bail "start-up failed"
    pair_vms_start vm1 vm2 || bail "VMs not started"
    both() { activated_at sw1 vm1 vm2 && activated_at sw2 vm1 vm2; }
    racks_wait "VMs activated" 30 both || bail "VMs not activated"
    vm_ping vm1 "$(vm_ip vm2)" 5 && vm_ping vm1 "$REM_IP" 5 || bail "no ping before the first failure"
    # measure NAME EVENT_CMD...: pings to vm2 and to the VXLAN peer around EVENT_CMD; appends
    # "gap_ms lost" to $R/NAME.rack and $R/NAME.rem.
    measure() {
        local name=$1 t dst p1 p2
        shift
        ip netns exec vm1 ping -D -n -i 0.02 -c 250 -W 1 "$(vm_ip vm2)" >"$R/ping.rack" 2>&1 &
        p1=$!
        ip netns exec vm1 ping -D -n -i 0.02 -c 250 -W 1 "$REM_IP" >"$R/ping.rem" 2>&1 &
        p2=$!
        sleep 1.5
        t=$(date +%s.%N)
        "$@"
        wait "$p1" "$p2"
        # the longest time between two consecutive replies from just before the event on,
        # and the echo requests with no reply in the whole run (ping waited for the last ones)
        for dst in rack rem; do
            read -r lost _ gap _ <<<"$(ping_stats "$R/ping.$dst" "$t")"
            echo "$gap $lost" >>"$R/$name.$dst"
        done
    }
    active_switch() { [ "$(active_slave hv1)" = e2 ] && echo sw2 || echo sw1; }
    in_sync() { pair_up sw1 && pair_up sw2 && agent_ready hv1 && agent_ready hv2 && both; }
    links() { ip -n "$1" link set swp1 "$2" && ip -n "$1" link set swp2 "$2"; }
    failed_over() { [ "$(active_switch)" != "$1" ] && [ "$(active_slave hv2)" = "$(active_slave hv1)" ]; }
    for ((i = 0; i < cycles; i++)); do
        sw=$(active_switch)
        measure kill racks_kill "$sw" KILL
        racks_start_switch "$sw" >/dev/null || bail "$sw did not restart"
        racks_wait "pair and agents in sync" 60 in_sync || bail "no sync after the restart of $sw"
        measure link links "$sw" down
        racks_wait "bonds failed over" 10 failed_over "$sw" || bail "the bonds did not fail over from $sw"
        links "$sw" up
        racks_wait "slaves up" 10 both_slaves_up hv1 && racks_wait "slaves up" 10 both_slaves_up hv2 || bail "links not back"
    done
    stats() { # FILE COLUMN: min/p50/max
        cut -d' ' -f"$2" "$1" | sort -n | awk '{ v[NR] = $1 } END { printf "min=%s p50=%s max=%s (n=%d)", v[1], v[int((NR + 1) / 2)], v[NR], NR }'
    }
    p50() { cut -d' ' -f"$2" "$1" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
    maxof() { cut -d' ' -f"$2" "$1" | sort -n | tail -n 1; }
    for ev in kill link; do
        for dst in rack rem; do
            what="$([ "$ev" = kill ] && echo "kill -9 of the nnve-daemon" || echo "switch's host links down"), ping to $([ "$dst" = rack ] && echo "vm2 (same rack)" || echo "the VXLAN peer")"
            echo "pair-uml: $what: gap ms $(stats "$R/$ev.$dst" 1); lost $(stats "$R/$ev.$dst" 2)"
            g=$(p50 "$R/$ev.$dst" 1)
            echo "TABLE|UML pair, $ev, ping to $dst: gap p50 (ms)|$g|20|$(awk -v g="$g" 'BEGIN { printf "%.2f", g / 20 }')"
            echo "TABLE|UML pair, $ev, ping to $dst: lost pings, max of $cycles|$(maxof "$R/$ev.$dst" 2)|-|-"
        done
    done
    exit 0
fi

build=${SPLITNVE_BUILD:-$src/build}
. "$src/tests/uml/racks-host.bash"
racks_host_need_bonding
bin=$(racks_host_bins "$build" "$src") || { echo "$bin"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
"$src/scripts/gen-pki.sh" "$tmp/pki" nnve1 nnve2 hv1 hv2 >/dev/null || exit 1
"$src/tests/uml/uml-run.sh" --mem 768M --timeout 400 --share "$tmp" \
    --env "RACKS_BIN=$bin" --env "RACKS_PKI=$tmp/pki" --env PAIR_BENCH_CYCLES \
    "$here/pair-uml.sh" --inside
