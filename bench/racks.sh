#!/bin/bash
# bench/racks.sh: inside User-Mode Linux, the time from `virsh start` of a VM to its first
# successful ping across the racks, in the two-rack topology of tests/uml/racks-lib.bash
# (nnve-daemon `linux` backend with VXLAN, tnve-agent `linux` dataplane, private libvirtds).
#
# vm4 (rack 2, VN blue) runs throughout; then RACKS_BENCH_CYCLES times: `virsh start vm1`
# (rack 1, VN blue, first of its VN on its hypervisor: VN_CONNECT + TSI_ACTIVATE, the switch
# programs VLAN, VXLAN map, FDB and filters, the agent the bridge), a ping from vm1 to vm4
# that sends every 10 ms until the first reply, then `virsh destroy vm1` and wait until the
# nNVE has forgotten it.  ARP caches are flushed before each start, as for a booting VM.
#
# Prints, in milliseconds, min/p50/max of: start -> first reply (everything, including
# virsh's own ~0.3 s in UML, where every exec costs 50-100 ms), virsh start's own duration,
# and the agent's event-to-acknowledged latency (tnvectl latency/show).  Figures only.
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=${SPLITNVE_SRC:-$(cd "$here/.." && pwd)}

if [ "${1:-}" = "--inside" ]; then
    . "$src/tests/uml/racks-lib.bash"
    trap 'racks_stop' EXIT
    cycles=${RACKS_BENCH_CYCLES:-10}
    now_ms() { echo $(($(date +%s%N) / 1000000)); }
    racks_start >/dev/null || { echo "racks bench: start-up failed"; exit 1; }
    for vm in vm1 vm4; do vm_xml "$vm" >"$R/$vm.xml"; done
    racks_virsh hv1a "define $R/vm1.xml" >/dev/null || exit 1
    racks_virsh hv2a "define $R/vm4.xml; start vm4" >/dev/null || exit 1
    racks_wait "vm4 activated" 20 agent_acked vm4 activated || exit 1
    gone() { [ "$(tsi_state sw1 vm1)" = "absent 0" ] && agent_acked vm1 init; }
    tnvectl_hv hv1a latency/show reset >/dev/null
    : >"$R/total" && : >"$R/virsh"
    for ((i = 0; i < cycles; i++)); do
        ip -n vm1 neigh flush all
        ip -n vm4 neigh flush all
        t0=$(now_ms)
        racks_virsh hv1a "start vm1" >/dev/null || { echo "racks bench: virsh start failed"; exit 1; }
        t1=$(now_ms)
        if ! ip netns exec vm1 ping -n -q -c 1 -i 0.01 -w 10 "$(vm_ip vm4)" >/dev/null 2>&1; then
            echo "racks bench: no reply within 10 s of the start"
            exit 1
        fi
        t2=$(now_ms)
        echo $((t2 - t0)) >>"$R/total"
        echo $((t1 - t0)) >>"$R/virsh"
        racks_virsh hv1a "destroy vm1" >/dev/null
        racks_wait "vm1 gone" 10 gone || exit 1
    done
    stats() { sort -n "$1" | awk '{ v[NR] = $1 } END { printf "min=%d p50=%d max=%d (n=%d)", v[1], v[int((NR + 1) / 2)], v[NR], NR }'; }
    echo "racks: virsh start -> first ping reply across racks, ms: $(stats "$R/total")"
    echo "racks: of which virsh start itself, ms:                  $(stats "$R/virsh")"
    echo "racks: tnve-agent event -> acknowledged (us): $(tnvectl_hv hv1a --json latency/show |
        jq -r '"samples=\(.samples) p50=\(.p50_us) p90=\(.p90_us) max=\(.max_us)"')"
    exit 0
fi

build=${SPLITNVE_BUILD:-$src/build}
. "$src/tests/uml/racks-host.bash"
bin=$(racks_host_bins "$build" "$src") || { echo "$bin"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
"$src/scripts/gen-pki.sh" "$tmp/pki" nnve1 nnve2 hv1a hv1b hv2a hv2b || exit 1
"$src/tests/uml/uml-run.sh" --mem 1G --timeout 300 --share "$tmp" \
    --env "RACKS_BIN=$bin" --env "RACKS_PKI=$tmp/pki" --env RACKS_BENCH_CYCLES \
    "$here/racks.sh" --inside
