#!/bin/bash
# test-evpn.sh: across racks with BGP EVPN (remote_vteps = evpn), proven with FRR.
#
# Inside User-Mode Linux: the two racks of tests/uml/racks-lib.bash (two switches running
# nnve-daemon with the linux backend in per-VNI mode, four hypervisors with tnve-agent and
# private libvirtds, five VMs driven by virsh), and on each switch FRR 8.4 (zebra + bgpd,
# eBGP l2vpn evpn, advertise-all-vni; tests/uml/evpn-lib.bash).  No remote VTEP is
# configured once EVPN runs.  Checks:
#   - a switch started with a static remote VTEP list and restarted with `evpn` keeps no
#     head-end flood entry of its own; its vx-VNI ports get learning off, neigh_suppress on
#   - type-3 routes per VNI and type-2 MAC and MAC+IP routes per Activated TSI reach the
#     remote switch (`show bgp l2vpn evpn route json`), whose zebra installs them; VMs ping
#     across racks, the other VN stays isolated; `nnvectl show mappings` names the VTEP
#   - ARP suppression: with the remote VM answering no ARP, a local VM still resolves it (the
#     local switch answers from the neighbour entry zebra installed)
#   - kill -9 of nnve-daemon: no route withdrawn; its restart changes no kernel entry of a VM
#     on either switch (bridge and neighbour monitors)
#   - destroy: the routes are withdrawn, the remote switch's entries go
#   - a VM moved to the other rack (its TSI activated there, then destroyed at the old one):
#     the new route carries a higher MAC mobility sequence number, traffic follows
# Skips (77) when User-Mode Linux or FRR is missing.
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=${SPLITNVE_SRC:-$(cd "$here/../.." && pwd)}

# ---------------------------------------------------------------------------- inside UML ---
if [ "${1:-}" = "--inside" ]; then
    . "$src/tests/uml/racks-lib.bash"
    . "$src/tests/uml/evpn-lib.bash"
    racks_test_init 15 "$R/sw?/nnve.log" "/run/frr/sw?/zebra.log" "/run/frr/sw?/bgpd.log"
    trap 'racks_stop; frr_stop' EXIT
    all_activated() { # SW VM...
        local sw=$1 vm out
        shift
        out=$(nnvectl_sw "$sw" --json show tsis 2>/dev/null) || return 1
        for vm in "$@"; do
            [ "$(jq -r --arg m "$(vm_mac "$vm")" '[ .[] | select(.tsi | endswith($m)) ][0].state // ""' <<<"$out")" = activated ] || return 1
        done
    }
    flood_entries() { bridge -n "$1" fdb show | grep '^00:00:00:00:00:00 ' | grep -c " dev vx-"; }
    evpn_port() { # SW DEV: "learning neigh_suppress" of the bridge port
        bridge -n "$1" -j -d link show dev "$2" | jq -r '.[0] | "\(.learning) \(.neigh_suppress)"'
    }
    tag_of() { local s; s=$(tsi_state "$1" "$2"); echo "${s#* }"; }
    M1=$(vm_mac vm1) M3=$(vm_mac vm3) M4=$(vm_mac vm4)

    step "topology, switches (sw1 with a static remote VTEP list, sw2 evpn), hypervisors, VMs"
    evpn_topology || die "topology"
    racks_log "topology ready"
    evpn_linux_conf sw1 "198.51.100.2, 198.51.100.9"
    evpn_linux_conf sw2 evpn
    racks_start_switch sw1 || die "sw1"
    racks_start_switch sw2 || die "sw2"
    racks_log "switches ready"
    evpn_start_hvs || die "hypervisors"
    racks_log "hypervisors ready"
    for vm in vm1 vm2 vm3 vm4 vm5; do vm_xml "$vm" >"$R/$vm.xml"; done
    # one virsh per hypervisor, side by side
    racks_virsh hv1a "define $R/vm1.xml; start vm1" >/dev/null &
    v1=$!
    racks_virsh hv1b "define $R/vm2.xml; define $R/vm3.xml; start vm2; start vm3" >/dev/null &
    v2=$!
    racks_virsh hv2a "define $R/vm4.xml; start vm4" >/dev/null &
    v3=$!
    racks_virsh hv2b "define $R/vm5.xml; start vm5" >/dev/null || die "virsh vm5"
    wait $v1 && wait $v2 && wait $v3 || die "virsh start"
    racks_wait "rack 1 activated" 30 all_activated sw1 vm1 vm2 vm3 || die "rack 1 VMs not activated"
    racks_wait "rack 2 activated" 30 all_activated sw2 vm4 vm5 || die "rack 2 VMs not activated"
    ok "every TSI activated"
    [ "$(flood_entries sw1)" = 4 ] && her sw1 5000 198.51.100.9 &&
        ok "sw1 (static list): flood entries toward 198.51.100.2 and .9 on vx-5000 and vx-5001" ||
        fail "sw1 flood entries: $(bridge -n sw1 fdb show | grep '^00:00')"
    [ "$(flood_entries sw2)" = 0 ] && ok "sw2 (evpn): no flood entry of its own" || fail "sw2 has flood entries"
    [ "$(evpn_port sw2 vx-5000)" = "false true" ] && ok "sw2 vx-5000: learning off, neigh_suppress on" ||
        fail "sw2 vx-5000 port flags: $(evpn_port sw2 vx-5000)"

    step "sw1 restarted with remote_vteps = evpn: none of its head-end entries stays"
    evpn_linux_conf sw1 evpn
    racks_kill sw1 || fail "sw1 exit status after SIGTERM"
    racks_start_switch sw1 || die "sw1 restart"
    racks_wait "sw1 reconciled" 20 grep -q "nnve-daemon\[${RACKS_PID[sw1]}\].*reconcile ends" "$R/sw1/nnve.log" ||
        fail "no reconcile of sw1"
    racks_wait "rack 1 activated again" 30 all_activated sw1 vm1 vm2 vm3 || die "rack 1 after the restart"
    [ "$(flood_entries sw1)" = 0 ] && ok "sw1: the flood entries of the old list are gone" ||
        fail "sw1 kept flood entries: $(bridge -n sw1 fdb show | grep '^00:00')"
    [ "$(evpn_port sw1 vx-5000) $(evpn_port sw1 vx-5001)" = "false true false true" ] &&
        ok "sw1 vx-5000, vx-5001: learning off, neigh_suppress on" || fail "sw1 port flags"

    step "FRR on both switches: EVPN routes and remote entries, no static VTEP anywhere"
    t0=$(date +%s.%N)
    frr_start sw1 || die "FRR sw1"
    frr_start sw2 || die "FRR sw2"
    racks_wait "head-end entries from EVPN" 90 her sw2 5000 198.51.100.1 ||
        { vt sw1 'show bgp summary'; die "no EVPN session"; }
    racks_wait "sw1 head-end entries" 20 her sw1 5001 198.51.100.2 || fail "sw1 has no HER entry for VNI 5001"
    racks_log "EVPN up $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s after FRR start"
    for vm in vm1 vm2 vm3; do
        m=$(vm_mac "$vm")
        racks_wait "sw2: MAC+IP route of $vm" 20 has_route sw2 "[2]:[0]:[48]:[$m]:[32]:[$(vm_ip "$vm")]" ||
            fail "sw2 has no MAC+IP route of $vm"
    done
    routes=$(evpn_routes sw2)
    for vm in vm1 vm2 vm3; do
        grep -qF "\"[2]:[0]:[48]:[$(vm_mac "$vm")]\"" <<<"$routes" || fail "sw2 has no MAC route of $vm"
    done
    [ "$(grep -oF '"[3]:[0]:[32]:[198.51.100.1]"' <<<"$routes" | wc -l)" -ge 2 ] &&
        ok "sw2 has sw1's type-3 routes (both VNIs) and type-2 MAC and MAC+IP routes of vm1, vm2, vm3" ||
        fail "sw2 lacks sw1's type-3 routes"
    blue2=$(tag_of sw2 vm4)
    racks_wait "sw2 kernel: vm1 behind sw1" 10 remote_mac sw2 5000 "$M1" 198.51.100.1 &&
        has_neigh sw2 "br0.$blue2" "$(vm_ip vm1)" "$M1" &&
        ok "sw2 kernel: vm1's MAC on vx-5000 toward 198.51.100.1 and its neighbour on br0.$blue2 (zebra's)" ||
        fail "sw2 kernel lacks vm1's remote entries: $(bridge -n sw2 fdb show dev vx-5000 | grep "$M1")"
    mp=$(nnvectl_sw sw1 --json show mappings | jq -c --arg m "$M1" '.[] | select(.tsi | endswith($m)) | [.vni, .vtep, .ips, .state]')
    [ "$mp" = '[5000,"198.51.100.1",["192.168.0.1"],"activated"]' ] && ok "sw1 show mappings: vm1 $mp" ||
        fail "sw1 mapping of vm1: $mp"

    step "traffic across racks over EVPN; the other VN isolated"
    vm_ping vm1 "$(vm_ip vm4)" 5 && ok "vm1 -> vm4 (blue, rack 1 -> rack 2)" || fail "vm1 cannot reach vm4"
    vm_ping vm3 "$(vm_ip vm5)" 5 && ok "vm3 -> vm5 (red)" || fail "vm3 cannot reach vm5"
    vm_ping vm3 "$(vm_ip vm4)" && fail "vm3 (red) reached vm4 (blue)" || ok "vm3 (red) cannot reach vm4 (blue)"

    step "ARP suppression: vm4 answers no ARP; sw1 answers vm1's request for it"
    # sw1 answers from the neighbour entry zebra installs for vm4's MAC+IP route, which
    # comes once sw2 has vm4's address: wait for it rather than race it
    blue1=$(tag_of sw1 vm1)
    racks_wait "sw1: vm4's neighbour entry (zebra's)" 20 has_neigh sw1 "br0.$blue1" "$(vm_ip vm4)" "$M4" ||
        fail "sw1 has no neighbour entry of vm4: $(ip -n sw1 neigh show dev "br0.$blue1" nud all)"
    ip netns exec vm4 sysctl -qw net.ipv4.conf.all.arp_ignore=8 net.ipv4.conf.eth0.arp_ignore=8
    # control: without suppression on sw1's vx-5000 port nobody answers
    bridge -n sw1 link set dev vx-5000 neigh_suppress off
    ip -n vm1 neigh flush dev eth0
    vm_ping vm1 "$(vm_ip vm4)" 2 && fail "control: vm4 answered ARP without suppression" ||
        ok "control: without neigh_suppress vm1 cannot resolve vm4"
    bridge -n sw1 link set dev vx-5000 neigh_suppress on
    ip -n vm1 neigh flush dev eth0
    ip -n vm4 neigh flush dev eth0
    vm_ping vm1 "$(vm_ip vm4)" 5 && ip -n vm1 neigh show "$(vm_ip vm4)" | grep -q "$M4" &&
        ok "vm1 resolved vm4 ($M4) and reached it while vm4 answers no ARP" ||
        fail "vm1 could not resolve vm4: $(ip -n vm1 neigh show)"
    ip netns exec vm4 sysctl -qw net.ipv4.conf.all.arp_ignore=0 net.ipv4.conf.eth0.arp_ignore=0

    step "kill -9 of nnve-daemon on sw1: no route withdrawn, its restart changes nothing"
    for s in sw1 sw2; do
        bridge -n "$s" monitor fdb >"$R/mon.fdb.$s" 2>&1 &
        eval "monf_$s=\$!"
        ip -n "$s" monitor neigh >"$R/mon.neigh.$s" 2>&1 &
        eval "monn_$s=\$!"
    done
    sleep 0.5
    racks_kill sw1 KILL
    sleep 2
    routes=$(evpn_routes sw2)
    for vm in vm1 vm2 vm3; do
        grep -qF "\"[2]:[0]:[48]:[$(vm_mac "$vm")]:[32]:[$(vm_ip "$vm")]" <<<"$routes" ||
            fail "sw2 lost $vm's route while sw1's daemon was down"
    done
    ok "sw2 kept the routes of vm1, vm2, vm3 for 2 s without sw1's daemon"
    racks_start_switch sw1 || die "sw1 restart after kill -9"
    racks_wait "sw1 reconciled" 20 grep -q "nnve-daemon\[${RACKS_PID[sw1]}\].*reconcile ends" "$R/sw1/nnve.log" ||
        fail "no reconcile after kill -9"
    racks_wait "rack 1 activated" 30 all_activated sw1 vm1 vm2 vm3 || fail "rack 1 not activated after kill -9"
    sleep 2
    # control: the monitors do see a change
    bridge -n sw1 fdb add 02:00:00:00:00:aa dev swp1 vlan 1 master static &&
        bridge -n sw1 fdb del 02:00:00:00:00:aa dev swp1 vlan 1 master || fail "control fdb change"
    sleep 0.5
    kill "$monf_sw1" "$monn_sw1" "$monf_sw2" "$monn_sw2" 2>/dev/null
    wait "$monf_sw1" "$monn_sw1" "$monf_sw2" "$monn_sw2" 2>/dev/null
    grep -q 02:00:00:00:00:aa "$R/mon.fdb.sw1" || fail "the monitor missed the control change"
    grep -h -E '52:54:00:00:00:0[1-5]' "$R"/mon.* >"$R/mon.vm"
    [ -s "$R/mon.vm" ] && { sed 's/^/   monitor| /' "$R/mon.vm" | head; fail "VM entries changed across the kill -9 and restart"; } ||
        ok "no FDB or neighbour entry of a VM changed on sw1 or sw2 (bridge/ip monitor)"
    grep -F "nnve-daemon[${RACKS_PID[sw1]}]" "$R/sw1/nnve.log" | grep -E "linux: .*(added|removed|mapped|locked|created|deleted|set for evpn)" &&
        fail "the restarted daemon changed the dataplane" || ok "the restarted daemon logged no dataplane change"

    step "destroy vm3: its routes are withdrawn, sw2's entries go"
    racks_virsh hv1b "destroy vm3" >/dev/null || fail "virsh destroy vm3"
    no_route_of() { ! evpn_routes "$1" | grep -qF "$2"; }
    racks_wait "vm3's routes withdrawn at sw2" 20 no_route_of sw2 "$M3" && ok "sw2: no route of vm3" ||
        fail "sw2 keeps vm3's routes"
    racks_wait "sw2 kernel without vm3" 10 no_mac sw2 5001 "$M3" &&
        ! ip -n sw2 neigh show nud all | grep -q "$M3" && ok "sw2 kernel: no FDB or neighbour entry of vm3" ||
        fail "sw2 kernel keeps vm3: $(bridge -n sw2 fdb show | grep "$M3")"

    step "vm1 moves to rack 2 (activated at sw2, then destroyed at sw1): mobility, traffic follows"
    ip link add vnet1 netns hv2a type veth peer name eth1 netns vm1 || die "veth for the move"
    ip -n hv2a link set vnet1 master br0 && ip -n hv2a link set vnet1 up
    ip -n vm1 addr del "$(vm_ip vm1)/24" dev eth0 && ip -n vm1 link set eth0 down
    ip -n vm1 link set eth1 address "$M1" && ip -n vm1 addr add "$(vm_ip vm1)/24" dev eth1 &&
        ip -n vm1 link set eth1 up || die "vm1's new NIC"
    racks_virsh hv2a "define $R/vm1.xml; start vm1" >/dev/null || fail "virsh start vm1 on hv2a"
    racks_wait "vm1 activated at sw2" 30 all_activated sw2 vm1 || fail "vm1 not activated at sw2"
    mm() { # SW: the MAC mobility sequence numbers in SW's EVPN routes for vm1's MAC
        evpn_routes "$1" | jq -r --arg k "[2]:[0]:[48]:[$M1]" '.. | objects | .[$k]? // empty | .. | objects | .extendedCommunity?.string? // empty' |
            grep -o 'MM:[0-9]*' | sort -u | tr '\n' ' '
    }
    has_mm() { [[ $(mm "$1") =~ MM:[1-9] ]]; }
    racks_wait "sw1: vm1's route with a mobility sequence number" 20 has_mm sw1
    seq_now=$(mm sw1)
    [[ $seq_now =~ MM:[1-9] ]] && ok "sw1 has sw2's route for vm1 with MAC mobility ($seq_now)" ||
        fail "no higher MAC mobility sequence number on sw1: [$seq_now]"
    racks_virsh hv1a "destroy vm1" >/dev/null || fail "virsh destroy vm1 on hv1a"
    racks_wait "vm1 gone at sw1" 20 test "$(tsi_state sw1 vm1)" = "absent 0" || fail "vm1 still at sw1"
    racks_wait "sw1 kernel: vm1 behind sw2" 20 remote_mac sw1 5000 "$M1" 198.51.100.2 &&
        ok "sw1 kernel: vm1's MAC on vx-5000 toward 198.51.100.2" ||
        fail "sw1 kernel: $(bridge -n sw1 fdb show | grep "$M1")"
    ip -n vm2 neigh flush dev eth0
    vm_ping vm2 "$(vm_ip vm1)" 5 && ok "vm2 (rack 1) -> vm1 (now rack 2)" || fail "vm2 cannot reach the moved vm1"
    vm_ping vm4 "$(vm_ip vm1)" 3 && ok "vm4 (rack 2) -> vm1 (same rack now)" || fail "vm4 cannot reach the moved vm1"

    racks_finish hv1a hv1b hv2a hv2b sw1 sw2
fi

# ------------------------------------------------------------------------------ on the host ---
build=${SPLITNVE_BUILD:-$src/build}
uml=$(command -v linux.uml || true)
[ -n "$uml" ] || { echo "SKIP: linux.uml missing (apt-get install user-mode-linux)"; exit 77; }
[ -x /usr/lib/frr/zebra ] && [ -x /usr/lib/frr/bgpd ] ||
    { echo "SKIP: FRR missing (apt-get install frr; scripts/install-deps.sh)"; exit 77; }
. "$src/tests/uml/racks-host.bash"
racks_host_run "$src" "$build" evpn "$here/test-evpn.sh" 1G 400 nnve1 nnve2 hv1a hv1b hv2a hv2b
