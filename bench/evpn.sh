#!/bin/bash
# bench/evpn.sh: inside User-Mode Linux, with BGP EVPN between the racks (FRR 8.4 on each
# switch, nnve-daemon with remote_vteps = evpn; tests/uml/evpn-lib.bash): the time from
# `virsh start` of a VM on rack 1 until the remote switch (sw2) has its MAC route installed
# in its kernel, and from `virsh destroy` until sw2's kernel entry is withdrawn.
#
# vm1 (rack 1) and vm4 (rack 2) bring VN blue to both switches first (a switch imports the
# routes of the VNIs it has).  Then
# EVPN_BENCH_VMS VMs (default 10; 100 for the full figure), one after the other: start, wait
# until sw2 has the MAC, next; then the same for destroy.  The VMs are test-driver domains
# with one vNIC (a veth port on hv1a's bridge), VN blue, MAC-only (address_sources = none).
# Times are the timestamps of `bridge -timestamp monitor fdb` in sw1 and sw2 (one UML clock,
# taken when the monitor reads the event, so a loaded machine adds a few ms of noise either
# way) against the time taken just before the virsh call; they include virsh itself (~0.3 s
# in UML, where every exec costs 50-100 ms).  Prints min/p50/p99/max in ms of:
#   start -> sw1 static FDB entry (splitnve: libvirt event, agent, SNCP, nnve-daemon)
#   sw1 entry -> sw2 kernel entry (zebra, bgpd, BGP, remote zebra)
#   start -> sw2 kernel entry (the whole), and the same three for destroy.
# Figures only.
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=${SPLITNVE_SRC:-$(cd "$here/.." && pwd)}

if [ "${1:-}" = "--inside" ]; then
    . "$src/tests/uml/racks-lib.bash"
    . "$src/tests/uml/evpn-lib.bash"
    trap 'kill $MONS 2>/dev/null; racks_stop; frr_stop' EXIT
    n=${EVPN_BENCH_VMS:-10}
    MONS=
    bail() { echo "evpn bench: $*"; tail -n 5 "$R"/sw?/nnve.log "$R/hv1a/agent.log"; exit 1; }
    evpn_topology >/dev/null || bail "topology"
    evpn_linux_conf sw1 evpn
    evpn_linux_conf sw2 evpn
    racks_start_switch sw1 && racks_start_switch sw2 || bail "switches"
    mkdir -p "$R/hv1a"
    racks_start_libvirtd hv1a || bail "libvirtd"
    # MAC-only TSIs: the test driver would report one address for every VM
    racks_start_agent hv1a && racks_kill hv1a || bail "agent"
    sed -i 's/^address_sources = .*/address_sources = none/' "$R/hv1a/agent.conf"
    racks_start_agent hv1a || bail "agent"
    # sw2 needs VN blue (its VNI) to import the routes: vm4 on hv2a
    racks_start_libvirtd hv2a && racks_start_agent hv2a || bail "hv2a"
    frr_start sw1 >/dev/null 2>&1 && frr_start sw2 >/dev/null 2>&1 || bail "FRR"
    {
        for ((i = 1; i <= n; i++)); do
            echo "link add bvn$i type veth peer name bvp$i"
            echo "link set bvn$i master br0"
            echo "link set bvn$i up"
        done
    } >"$R/ports.batch"
    ip -n hv1a -batch "$R/ports.batch" || bail "ports"
    mac_of() { printf '52:54:00:be:%02x:%02x' $(($1 / 256)) $(($1 % 256)); }
    defs=""
    for ((i = 1; i <= n; i++)); do
        cat >"$R/b$i.xml" <<XML
<domain type='test'>
  <name>b$i</name>
  <uuid>$(printf '00000000-0000-4000-8000-be%010x' "$i")</uuid>
  <memory unit='KiB'>65536</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <metadata><splitnve:vnics xmlns:splitnve='urn:splitnve:vn:1'><splitnve:vnic mac='$(mac_of "$i")' vn-id='5000' vn-name='blue'/></splitnve:vnics></metadata>
  <devices><interface type='ethernet'><mac address='$(mac_of "$i")'/><target dev='bvn$i' managed='no'/></interface></devices>
</domain>
XML
        defs+="define $R/b$i.xml; "
    done
    racks_virsh hv1a "$defs" >/dev/null || bail "define"
    # the first VMs bring the VN to each rack (and the type-3 routes): not measured
    vm_xml vm1 >"$R/vm1.xml"
    vm_xml vm4 >"$R/vm4.xml"
    racks_virsh hv1a "define $R/vm1.xml; start vm1" >/dev/null || bail "vm1"
    racks_virsh hv2a "define $R/vm4.xml; start vm4" >/dev/null || bail "vm4"
    racks_wait "EVPN up" 90 her sw2 5000 198.51.100.1 >/dev/null || bail "no EVPN session"
    racks_wait "vm1 at sw2" 30 remote_mac sw2 5000 "$(vm_mac vm1)" 198.51.100.1 || bail "vm1 not at sw2"
    for s in sw1 sw2; do
        ip netns exec "$s" bridge -timestamp monitor fdb >"$R/mon.$s" 2>&1 &
        MONS="$MONS $!"
    done
    sleep 0.5
    sod() { date +%H:%M:%S.%N | awk -F: '{ printf "%.6f\n", $1 * 3600 + $2 * 60 + $3 }'; }
    : >"$R/t.start" && : >"$R/t.destroy"
    for op in start destroy; do
        for ((i = 1; i <= n; i++)); do
            m=$(mac_of "$i")
            echo "$m $(sod)" >>"$R/t.$op"
            racks_virsh hv1a "$op b$i" >/dev/null || bail "virsh $op b$i"
            if [ "$op" = start ]; then
                racks_wait "b$i at sw2" 30 remote_mac sw2 5000 "$m" 198.51.100.1 >/dev/null || bail "b$i not at sw2"
            else
                racks_wait "b$i gone at sw2" 30 no_mac sw2 5000 "$m" >/dev/null || bail "b$i not withdrawn at sw2"
            fi
        done
    done
    sleep 0.5
    kill $MONS 2>/dev/null
    MONS=
    # "Timestamp: Sat Dec  5 03:26:20 2026 442208 usec" precedes each event: first ADD / DEL
    # per MAC ("ADD|DEL MAC SECONDS-OF-DAY")
    events() {
        awk '/^Timestamp:/ { split($5, t, ":"); ts = t[1] * 3600 + t[2] * 60 + t[3] + $7 / 1e6; next }
             /^Deleted 52:54:00:be/ { k = "DEL " $2; if (!(k in s)) { s[k] = 1; printf "%s %.6f\n", k, ts }; next }
             /^52:54:00:be/ { k = "ADD " $1; if (!(k in s)) { s[k] = 1; printf "%s %.6f\n", k, ts } }' "$1"
    }
    events "$R/mon.sw1" >"$R/ev.sw1"
    events "$R/mon.sw2" >"$R/ev.sw2"
    # lat OP T0FILE FROM TO: per MAC, TO's event minus FROM's ("t0": the virsh call)
    lat() {
        awk -v op="$1" -v from="$3" -v to="$4" '
            FILENAME == ARGV[1] { t0[$1] = $2; next }
            FILENAME == ARGV[2] { if ($1 == op) a[$2] = $3; next }
            $1 == op { b[$2] = $3 }
            END { for (m in t0) {
                    f = from == "t0" ? t0[m] : a[m]; t = to == "sw1" ? a[m] : b[m]
                    if (f != "" && t != "") printf "%.1f\n", (t - f) * 1000 } }' \
            "$2" "$R/ev.sw1" "$R/ev.sw2"
    }
    stats() {
        sort -n | awk '{ v[NR] = $1 } END { if (!NR) { print "no samples"; exit }
            i99 = int(NR * 0.99 + 0.999); if (i99 < 1) i99 = 1
            printf "min=%.0f p50=%.0f p99=%.0f max=%.0f (n=%d)", v[1], v[int((NR + 1) / 2)], v[i99], v[NR], NR }'
    }
    echo "evpn: virsh start -> sw1 static FDB entry, ms:        $(lat ADD "$R/t.start" t0 sw1 | stats)"
    echo "evpn: sw1 FDB entry -> sw2 kernel MAC entry, ms:      $(lat ADD "$R/t.start" sw1 sw2 | stats)"
    echo "evpn: virsh start -> sw2 kernel MAC entry, ms:        $(lat ADD "$R/t.start" t0 sw2 | stats)"
    echo "evpn: virsh destroy -> sw1 FDB entry removed, ms:     $(lat DEL "$R/t.destroy" t0 sw1 | stats)"
    echo "evpn: sw1 removal -> sw2 kernel entry withdrawn, ms:  $(lat DEL "$R/t.destroy" sw1 sw2 | stats)"
    echo "evpn: virsh destroy -> sw2 kernel entry withdrawn, ms: $(lat DEL "$R/t.destroy" t0 sw2 | stats)"
    exit 0
fi

build=${SPLITNVE_BUILD:-$src/build}
command -v linux.uml >/dev/null || { echo "evpn bench: skipped (no linux.uml)"; exit 0; }
[ -x /usr/lib/frr/zebra ] || { echo "evpn bench: skipped (no FRR)"; exit 0; }
. "$src/tests/uml/racks-host.bash"
bin=$(racks_host_bins "$build" "$src") || { echo "$bin"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
"$src/scripts/gen-pki.sh" "$tmp/pki" nnve1 nnve2 hv1a hv1b hv2a hv2b >/dev/null || exit 1
"$src/tests/uml/uml-run.sh" --mem 1G --timeout 1200 --share "$tmp" \
    --env "RACKS_BIN=$bin" --env "RACKS_PKI=$tmp/pki" --env EVPN_BENCH_VMS \
    "$here/evpn.sh" --inside
