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
# The pinger (every 10 ms, neighbour resolution every 10 ms) runs from before the start: a
# pinger started after virsh returns measures its own exec (50-100 ms and more in UML, also
# printed) rather than the network.  The reply time is ping's own timestamp (-D).
# Prints, in milliseconds, min/p50/max of: start -> first reply (everything, including
# virsh's own 0.3-1 s in UML), virsh start's own duration, the part after virsh returned
# (negative: the path works before virsh has returned), and when (after virsh returned)
# the agent logged the start event, the activation acknowledged and the vNIC port tagged;
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
    # The VM resolves its neighbour every 10 ms (not every second) so that the pinger, started
    # before `virsh start`, sees the path as soon as it works; without that, and with a pinger
    # started after virsh returns, the figure measures ARP retries and an exec in UML.
    ip netns exec vm1 sysctl -qw net.ipv4.neigh.eth0.retrans_time_ms=10 \
        net.ipv4.neigh.eth0.mcast_solicit=200 net.ipv4.neigh.eth0.ucast_solicit=200 || exit 1
    : >"$R/total" && : >"$R/virsh" && : >"$R/after" && : >"$R/event" && : >"$R/acked" && : >"$R/dp" && : >"$R/exec"
    log_ts() { # FILE PATTERN AFTER_LINE: ms timestamp of the first line matching past AFTER_LINE
        local l
        l=$(tail -n +"$(($3 + 1))" "$1" | grep -m1 -- "$2") || return 1
        date -d "$(cut -d' ' -f1 <<<"$l")" +%s%3N
    }
    alog=$R/hv1a/agent.log
    for ((i = 0; i < cycles; i++)); do
        ip -n vm1 neigh flush all
        ip -n vm4 neigh flush all
        ip netns exec vm1 ping -D -n -i 0.01 -w 20 -c 1 "$(vm_ip vm4)" >"$R/ping.out" 2>&1 &
        pinger=$!
        sleep 0.3 # the pinger is running (an exec takes 50-100 ms here)
        lines=$(wc -l <"$alog")
        t0=$(now_ms)
        racks_virsh hv1a "start vm1" >/dev/null || { echo "racks bench: virsh start failed"; exit 1; }
        t1=$(now_ms)
        wait "$pinger" || { echo "racks bench: no reply within 20 s of the start"; exit 1; }
        reply=$(sed -n 's/^\[\([0-9]*\)\.\([0-9]\{3\}\).* bytes from .*/\1\2/p' "$R/ping.out" | head -1)
        [ -n "$reply" ] || { echo "racks bench: no reply line: $(cat "$R/ping.out")"; exit 1; }
        echo $((reply - t0)) >>"$R/total"
        echo $((t1 - t0)) >>"$R/virsh"
        echo $((reply - t1)) >>"$R/after"
        # where the part after virsh goes: the agent's event, its acknowledgement, its port tag
        ev=$(log_ts "$alog" "event started/booted domain=vm1" "$lines") && echo $((ev - t1)) >>"$R/event"
        ak=$(log_ts "$alog" "acked=activated" "$lines") && echo $((ak - t1)) >>"$R/acked"
        dp=$(log_ts "$alog" "vnic port set port=vnet1 " "$lines") && echo $((dp - t1)) >>"$R/dp"
        racks_virsh hv1a "destroy vm1" >/dev/null
        # what a command started after virsh returned costs by itself here (the old way of
        # measuring started the pinger then)
        e0=$(now_ms)
        ip netns exec vm1 true
        echo $(($(now_ms) - e0)) >>"$R/exec"
        racks_wait "vm1 gone" 10 gone || exit 1
    done
    stats() { sort -n "$1" | awk '{ v[NR] = $1 } END { printf "min=%d p50=%d max=%d (n=%d)", v[1], v[int((NR + 1) / 2)], v[NR], NR }'; }
    p50() { sort -n "$1" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
    echo "racks: virsh start -> first ping reply across racks, ms: $(stats "$R/total")"
    echo "racks: of which virsh start itself, ms:                  $(stats "$R/virsh")"
    echo "racks: after virsh start returned, ms:                   $(stats "$R/after")"
    echo "racks:   agent got the start event (after virsh), ms:    $(stats "$R/event")"
    echo "racks:   agent got the activation acked (after virsh), ms: $(stats "$R/acked")"
    echo "racks:   agent tagged the vNIC port (after virsh), ms:   $(stats "$R/dp")"
    echo "racks: one \`ip netns exec VM true\` in UML, ms:            $(stats "$R/exec")"
    echo "racks: tnve-agent event -> acknowledged (us): $(tnvectl_hv hv1a --json latency/show |
        jq -r '"samples=\(.samples) p50=\(.p50_us) p90=\(.p90_us) max=\(.max_us) nnve_rtt_p50=\(.nnve_rtt.p50_us)"')"
    echo "TABLE|UML: virsh start -> first cross-rack ping, p50 (ms)|$(p50 "$R/total")|-|-"
    echo "TABLE|UML: of which after virsh start returned, p50 (ms)|$(p50 "$R/after")|-|-"
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
