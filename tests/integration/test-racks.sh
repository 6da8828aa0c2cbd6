#!/bin/bash
# test-racks.sh: end to end with real packets, two racks, every daemon real, driven by virsh.
#
# Inside User-Mode Linux (the host kernel has no 802.1Q) this builds the topology of
# tests/uml/racks-lib.bash: two switch namespaces running nnve-daemon with the `linux`
# backend and a VXLAN underlay between them; four hypervisor namespaces running tnve-agent
# (dataplane linux) each with its own private libvirtd (test driver), two of them behind one
# switch port through a plain access bridge; five VM namespaces.  Then:
#   - start: VMs of one VN ping across the racks; a VM of another VN cannot reach them; two
#     VNs get different tags on the shared port; one VN gets one tag for both hypervisors
#   - managed save stops a VM's traffic, restore brings it back
#   - a VM sending with a source MAC or IP it was not associated with is dropped
#   - kill -9 and restart of nnve-daemon and tnve-agent: a continuous ping loses nothing,
#     `bridge monitor` / `nft monitor` see no entry removed or added, tags are unchanged
#   - an agent restarted after its VM was destroyed behind its back removes the stale tag
#   - destroy: no VLAN membership, FDB entry, neighbour entry, tunnel map or filter of the
#     VM remains on either side
# When UML cannot run, the test fails (it never skips).
#
# ASan programs cannot run inside UML: for an ASan build the daemons are rebuilt with UBSan
# only (make SAN=ubsan bins) next to it, in BUILD-ubsan.
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=${SPLITNVE_SRC:-$(cd "$here/../.." && pwd)}

# ---------------------------------------------------------------------------- inside UML ---
if [ "${1:-}" = "--inside" ]; then
    . "$src/tests/uml/racks-lib.bash"
    racks_test_init 25 "$R/sw?/nnve.log" "$R/hv*/agent.log"
    expect() { # WHAT GOT WANT
        [ "$2" = "$3" ] && ok "$1 [$2]" || fail "$1: [$2], want [$3]"
    }
    trap 'racks_stop' EXIT

    # vlans NS: every bridge port's VLANs in NS, "PORT:VID=FLAGS ..." (P PVID, U untagged, T).
    vlans() {
        bridge -n "$1" -j vlan show 2>/dev/null | jq -r '
            [ .[] | .ifname as $i | .vlans[]
              | (.flags // []) as $f
              | (if .vlanEnd then range(.vlan; .vlanEnd + 1) else .vlan end) as $v
              | "\($i):\($v)=" + (if ($f | any(. == "PVID")) then "P" else "" end)
                + (if ($f | any(. == "Egress Untagged")) then "U" else "T" end) ]
            | join(" ")'
    }
    # port_vlans NS PORT: the VLANs of one port from a vlans() text in $V.
    port_vlans() {
        local e out=""
        for e in $V; do
            [[ $e == "$1:"* ]] && out+="${out:+ }${e#*:}"
        done
        echo "$out"
    }
    # sw_state SW: one text with the tunnel map, static FDB entries and locked ports of SW.
    sw_state() {
        {
            bridge -n "$1" -j vlan tunnelshow | jq -r '[ .[] | select(.ifname == "vxlan0") | .tunnels[]
                | if .vlanEnd then range(0; .vlanEnd - .vlan + 1) as $i | "map:\(.vlan + $i)=\(.tunid + $i)"
                  else "map:\(.vlan)=\(.tunid)" end ] | join(" ")'
            bridge -n "$1" -j fdb show br br0 | jq -r '[ .[] | select(.state == "static")
                | "fdb:\(.ifname)/\(.vlan // 0)/\(.mac)" ] | sort | join(" ")'
        } 2>/dev/null | tr '\n' ' '
    }
    # neighs SW: the neighbour entries of VM MACs in SW, "DEV/IP/MAC ..." sorted (the
    # kernel's own IPv6 multicast entries on the layer-3 interfaces left out).
    neighs() {
        ip -n "$1" -j neigh show nud noarp 2>/dev/null | jq -r '[ .[] | select((.dev | startswith("br0.")) and (.lladdr // "" | startswith("52:54:00:")))
            | "\(.dev)/\(.dst)/\(.lladdr)" ] | sort | join(" ")'
    }
    # nft_rules SW: the daemon's nftables table of SW, one line ("" when there is none).
    nft_rules() { ip netns exec "$1" nft list table bridge splitnve 2>/dev/null | tr -s ' \n\t' ' '; }
    tag_of() { local s; s=$(tsi_state "$1" "$2"); echo "${s#* }"; }
    all_activated() { # SW VM...: the nNVE of SW and the VMs' agents see them activated
        local sw=$1 vm out
        shift
        out=$(nnvectl_sw "$sw" --json show tsis 2>/dev/null) || return 1
        for vm in "$@"; do
            [ "$(jq -r --arg m "$(vm_mac "$vm")" '[ .[] | select(.tsi | endswith($m)) ][0].state // ""' <<<"$out")" = activated ] || return 1
            agent_acked "$vm" activated || return 1
        done
    }
    addresses_known() { # SW VM: the nNVE holds the VM's test-driver address
        nnvectl_sw "$1" --json show tsis | jq -e --arg m "$(vm_mac "$2")" --arg ip "$(vm_ip "$2")" \
            '[ .[] | select(.tsi | endswith($m)) ][0].addresses // [] | map(tostring) | any(startswith($ip))'
    }
    agent_ready() { # HV: the agent's session has finished its SYNC
        [ "$(tnvectl_hv "$1" --json show counters | jq -r '.. | objects | .phase? // empty' | head -n 1)" = ready ]
    }

    step "topology and daemons: 2 switches, 4 hypervisors (2 behind one port), 5 VMs"
    racks_start || die "start-up"
    ok "all daemons up"

    step "define and start the VMs with virsh"
    for vm in vm1 vm2 vm3 vm4 vm5; do vm_xml "$vm" >"$R/$vm.xml"; done
    racks_virsh hv1a "define $R/vm1.xml; start vm1" >/dev/null || die "virsh vm1"
    racks_virsh hv1b "define $R/vm2.xml; define $R/vm3.xml; start vm2; start vm3" >/dev/null || die "virsh hv1b"
    racks_virsh hv2a "define $R/vm4.xml; start vm4" >/dev/null || die "virsh vm4"
    racks_virsh hv2b "define $R/vm5.xml; start vm5" >/dev/null || die "virsh vm5"
    racks_wait "rack 1 activated" 20 all_activated sw1 vm1 vm2 vm3 || die "rack 1 VMs not activated"
    racks_wait "rack 2 activated" 20 all_activated sw2 vm4 vm5 || die "rack 2 VMs not activated"
    ok "every TSI activated at the nNVEs and acknowledged by the agents"

    step "tags: one VN one tag behind the shared port, two VNs two tags, per-rack pools"
    blue1=$(tag_of sw1 vm1) red1=$(tag_of sw1 vm3) blue2=$(tag_of sw2 vm4) red2=$(tag_of sw2 vm5)
    expect "vm2 (hv1b) has vm1's (hv1a) blue tag" "$(tag_of sw1 vm2)" "$blue1"
    [ "$blue1" != "$red1" ] && ok "blue $blue1 and red $red1 differ on swp1" || fail "blue and red share tag $blue1"
    [[ $blue1 =~ ^10[01]$ && $red1 =~ ^10[01]$ && $blue2 =~ ^20[01]$ && $red2 =~ ^20[01]$ ]] &&
        ok "tags from each rack's pool (rack1 $blue1/$red1, rack2 $blue2/$red2)" ||
        fail "tags outside the pools: $blue1 $red1 $blue2 $red2"

    step "hypervisor bridges: vNIC port = its tag untagged PVID only; uplink tagged"
    V=$(vlans hv1a)
    expect "hv1a vnet1" "$(port_vlans vnet1)" "$blue1=PU"
    expect "hv1a up0" "$(port_vlans up0)" "$blue1=T"
    V=$(vlans hv1b)
    expect "hv1b vnet2" "$(port_vlans vnet2)" "$blue1=PU"
    expect "hv1b vnet3" "$(port_vlans vnet3)" "$red1=PU"
    expect "hv1b up0" "$(port_vlans up0)" "$(printf '%s\n' "$blue1=T" "$red1=T" | sort -t= -n | tr '\n' ' ' | sed 's/ $//')"
    V=$(vlans hv2a)
    expect "hv2a vnet4" "$(port_vlans vnet4)" "$blue2=PU"
    V=$(vlans sw1)
    expect "sw1 swp1" "$(port_vlans swp1)" "1=PU $(printf '%s\n' "$blue1=T" "$red1=T" | sort -t= -n | tr '\n' ' ' | sed 's/ $//')"
    st1=$(sw_state sw1)
    [[ $st1 == *"map:$blue1=5000"* && $st1 == *"map:$red1=5001"* ]] && ok "sw1 maps $blue1->5000 $red1->5001" ||
        fail "sw1 tunnel map: $st1"
    [[ $st1 == *"fdb:swp1/$blue1/$(vm_mac vm1)"* && $st1 == *"fdb:swp1/$red1/$(vm_mac vm3)"* ]] &&
        ok "sw1 static FDB entries for vm1 and vm3" || fail "sw1 static FDB: $st1"

    expect "sw1 neighbour entries" "$(neighs sw1)" "$(printf '%s\n' "br0.$blue1/$(vm_ip vm1)/$(vm_mac vm1)" \
        "br0.$blue1/$(vm_ip vm2)/$(vm_mac vm2)" "br0.$red1/$(vm_ip vm3)/$(vm_mac vm3)" | sort | tr '\n' ' ' | sed 's/ $//')"

    step "pings: one VN across racks and across hypervisors; none between VNs"
    vm_ping vm1 "$(vm_ip vm4)" 5 && ok "vm1 (rack1, blue $blue1) -> vm4 (rack2, blue $blue2)" || fail "vm1 cannot reach vm4"
    vm_ping vm2 "$(vm_ip vm1)" 3 && ok "vm2 (hv1b) -> vm1 (hv1a), one port" || fail "vm2 cannot reach vm1"
    vm_ping vm3 "$(vm_ip vm5)" 5 && ok "vm3 -> vm5 (red across racks)" || fail "vm3 cannot reach vm5"
    vm_ping vm3 "$(vm_ip vm1)" && fail "vm3 (red) reached vm1 (blue)" || ok "vm3 (red) cannot reach vm1 (blue)"
    vm_ping vm5 "$(vm_ip vm4)" && fail "vm5 (red) reached vm4 (blue)" || ok "vm5 (red) cannot reach vm4 (blue)"

    step "managed save stops vm4's traffic; restore brings it back"
    racks_virsh hv2a "managedsave vm4" >/dev/null || fail "virsh managedsave vm4"
    racks_wait "vm4 associated" 10 agent_acked vm4 associated || fail "vm4 not deactivated"
    expect "vm4 at sw2 after managed save" "$(tsi_state sw2 vm4)" "associated $blue2"
    V=$(vlans hv2a)
    expect "hv2a vnet4 after managed save" "$(port_vlans vnet4)" ""
    [[ $(sw_state sw2) != *"$(vm_mac vm4)"* ]] && ok "sw2 has no FDB entry of vm4" || fail "sw2 kept vm4's FDB entry: $(sw_state sw2)"
    vm_ping vm1 "$(vm_ip vm4)" && fail "vm4 answered while saved" || ok "no traffic to the saved vm4"
    racks_virsh hv2a "start vm4" >/dev/null || fail "virsh start vm4 (restore)"
    racks_wait "vm4 activated again" 10 all_activated sw2 vm4 || fail "vm4 not activated after restore"
    expect "vm4's tag after restore" "$(tag_of sw2 vm4)" "$blue2"
    vm_ping vm1 "$(vm_ip vm4)" 5 && ok "vm1 -> vm4 after restore" || fail "no traffic after restore"

    step "anti-spoofing: a source MAC that was not associated is dropped"
    ip -n vm1 link set eth0 address 52:54:00:00:00:99
    ip -n vm4 neigh flush dev eth0
    vm_ping vm1 "$(vm_ip vm4)" 2 && fail "spoofed source MAC passed" || ok "spoofed source MAC dropped"
    ip -n vm1 link set eth0 address "$(vm_mac vm1)"
    ip -n vm4 neigh flush dev eth0
    vm_ping vm1 "$(vm_ip vm4)" 3 && ok "the associated MAC passes again" || fail "no ping with the associated MAC"

    step "anti-spoofing: a source IP that was not associated is dropped"
    if grep -q -s "nft_ctx_new" "$src"/nnve-daemon/*.c; then
        racks_wait "vm1's address at sw1" 10 addresses_known sw1 vm1 || fail "sw1 never got vm1's address"
        rules=$(nft_rules sw1)
        [[ $rules == *"$(vm_ip vm1)"* ]] && ok "sw1 filters vm1's source IP" || fail "sw1 nftables rules lack vm1's address: [$rules]"
        ip -n vm1 addr add 192.168.0.99/24 dev eth0 && ip -n vm1 addr del "$(vm_ip vm1)/24" dev eth0
        ip -n vm4 neigh flush dev eth0
        vm_ping vm1 "$(vm_ip vm4)" 2 && fail "spoofed source IP 192.168.0.99 passed" || ok "spoofed source IP dropped"
        ip -n vm1 addr add "$(vm_ip vm1)/24" dev eth0 && ip -n vm1 addr del 192.168.0.99/24 dev eth0
        ip -n vm4 neigh flush dev eth0
        vm_ping vm1 "$(vm_ip vm4)" 3 && ok "the associated IP passes again" || fail "no ping with the associated IP"
    else
        echo "note: nnve-daemon's linux backend has no IP filter in this tree; IP step not run"
    fi

    step "kill -9 and restart of nnve-daemon (sw1) and tnve-agent (hv1a) under a continuous ping"
    tags_before="$(tag_of sw1 vm1) $(tag_of sw1 vm2) $(tag_of sw1 vm3) $(tag_of sw2 vm4)"
    bridge -n sw1 monitor vlan fdb >"$R/mon.sw1" 2>&1 &
    mon1=$!
    bridge -n hv1a monitor vlan fdb >"$R/mon.hv1a" 2>&1 &
    mon2=$!
    ip netns exec sw1 nft monitor >"$R/mon.nft" 2>&1 &
    mon3=$!
    ip -n sw1 monitor neigh >"$R/mon.neigh" 2>&1 &
    mon4=$!
    ip netns exec vm1 ping -n -i 0.1 -w 60 "$(vm_ip vm4)" >"$R/ping.out" 2>&1 &
    pinger=$!
    sleep 0.5
    racks_kill sw1 KILL
    racks_kill hv1a KILL
    racks_start_switch sw1 || fail "nnve-daemon did not restart"
    racks_start_agent hv1a || fail "tnve-agent did not restart"
    racks_wait "hv1a synced" 20 agent_ready hv1a || fail "hv1a agent not ready after restart"
    racks_wait "hv1b synced" 20 agent_ready hv1b || fail "hv1b agent not ready after restart"
    racks_wait "rack 1 activated after restart" 20 all_activated sw1 vm1 vm2 vm3 || fail "rack 1 not activated after restart"
    sleep 1
    # Positive control: the monitors do report a static FDB entry and a VLAN added/removed.
    bridge -n sw1 fdb add 02:00:00:00:00:aa dev swp1 vlan 1 master static &&
        bridge -n sw1 fdb del 02:00:00:00:00:aa dev swp1 vlan 1 master &&
        bridge -n hv1a vlan add dev up0 vid 3999 && bridge -n hv1a vlan del dev up0 vid 3999 ||
        fail "control changes for the monitors"
    sleep 0.3
    kill -INT "$pinger"
    wait "$pinger"
    kill "$mon1" "$mon2" "$mon3" "$mon4" 2>/dev/null
    wait "$mon1" "$mon2" "$mon3" "$mon4" 2>/dev/null
    # (a here-string, not process substitution: UML's /dev has no /dev/fd)
    read -r sent got <<<"$(awk '/packets transmitted/ { print $1, $4 }' "$R/ping.out")"
    [ -n "${sent:-}" ] && [ "$sent" -ge 20 ] && [ $((sent - got)) -le 1 ] &&
        ok "continuous ping: $got of $sent answered (the one in flight at the stop may be lost)" ||
        { fail "continuous ping lost packets across the restart: ${got:-?} of ${sent:-?}"; tail -n 3 "$R/ping.out"; }
    expect "tags after the restart" "$(tag_of sw1 vm1) $(tag_of sw1 vm2) $(tag_of sw1 vm3) $(tag_of sw2 vm4)" "$tags_before"
    # Learned FDB entries come and go with the traffic (and age out); VLAN, static FDB and
    # nftables events are the daemons' work and must not happen.
    # (VLAN state lines "state forwarding mcast_router 1" come from the kernel's multicast
    # router timers, not from a request.)
    grep -h -v -E '^$|^(Deleted )?([0-9a-f]{2}:){5}[0-9a-f]{2} dev |^ +state forwarding' \
        "$R/mon.sw1" "$R/mon.hv1a" >"$R/mon.counted"
    grep -h -E '^(Deleted )?([0-9a-f]{2}:){5}[0-9a-f]{2} dev .*(static|permanent)' "$R/mon.sw1" "$R/mon.hv1a" >>"$R/mon.counted"
    grep -h -E 'bridge splitnve( |$)' "$R/mon.nft" >>"$R/mon.counted"
    grep -h -E ' dev br0\..*lladdr 52:54:00:' "$R/mon.neigh" >>"$R/mon.counted"
    controls=$(grep -c -E '02:00:00:00:00:aa|3999' "$R/mon.counted")
    [ "$controls" -ge 3 ] && ok "monitors saw the control changes ($controls events)" ||
        fail "monitors missed the control changes: $(cat "$R/mon.sw1" "$R/mon.hv1a")"
    grep -v -E '02:00:00:00:00:aa|3999' "$R/mon.counted" >"$R/mon.changes"
    mv "$R/mon.changes" "$R/mon.counted"
    [ -s "$R/mon.counted" ] && { sed 's/^/   monitor| /' "$R/mon.counted" | head -n 20; fail "kernel entries changed across the restart"; } ||
        ok "no VLAN, static FDB, neighbour or nftables change during the restart"
    # only the restarted processes' lines count (the log line names the process ID)
    changed=0
    for f in "sw1/nnve.log:nnve-daemon[${RACKS_PID[sw1]}]" "hv1a/agent.log:tnve-agent[${RACKS_PID[hv1a]}]"; do
        grep -qF "${f#*:}" "$R/${f%%:*}" || fail "no log line of the restarted ${f#*:}"
        grep -F "${f#*:}" "$R/${f%%:*}" | grep -E "linux: .*(added|removed|mapped|locked|created|deleted)|vnic port (set|cleared)|uplink (carries|no longer)|stale vnic" && changed=1
    done
    [ "$changed" = 0 ] && ok "no dataplane change logged after the restart" || fail "the restarted daemons changed the dataplane"

    step "agent restarted after its VM was destroyed behind its back: the stale tag goes"
    racks_kill hv2a KILL
    racks_virsh hv2a "destroy vm4" >/dev/null || fail "virsh destroy vm4"
    V=$(vlans hv2a)
    expect "hv2a vnet4 still tagged while the agent is down" "$(port_vlans vnet4)" "$blue2=PU"
    racks_start_agent hv2a || fail "tnve-agent hv2a did not restart"
    racks_wait "hv2a synced" 20 agent_ready hv2a || fail "hv2a not ready"
    racks_wait "vm4 gone at sw2" 10 test "$(tsi_state sw2 vm4)" = "absent 0" || fail "vm4 still at sw2: $(tsi_state sw2 vm4)"
    sleep 0.3
    V=$(vlans hv2a)
    expect "hv2a vnet4 after the restart" "$(port_vlans vnet4)" ""
    expect "hv2a up0 after the restart" "$(port_vlans up0)" ""

    step "destroy: nothing of the VM remains on either side"
    racks_virsh hv1b "destroy vm3" >/dev/null || fail "virsh destroy vm3"
    racks_wait "vm3 gone at sw1" 10 test "$(tsi_state sw1 vm3)" = "absent 0" || fail "vm3 still at sw1: $(tsi_state sw1 vm3)"
    racks_wait "vm3 init at hv1b" 10 agent_acked vm3 init || fail "hv1b did not see vm3 de-associated"
    V=$(vlans hv1b)
    expect "hv1b vnet3" "$(port_vlans vnet3)" ""
    expect "hv1b up0 keeps blue only" "$(port_vlans up0)" "$blue1=T"
    V=$(vlans sw1)
    expect "sw1 swp1 keeps blue only" "$(port_vlans swp1)" "1=PU $blue1=T"
    st1=$(sw_state sw1)
    [[ $st1 != *"map:$red1="* && $st1 != *"$(vm_mac vm3)"* ]] && ok "sw1: no tunnel map or FDB entry of vm3 [$st1]" ||
        fail "sw1 kept vm3's state: $st1"
    rules=$(nft_rules sw1)
    [[ $rules != *"$(vm_ip vm3)"* && $rules != *"$(vm_mac vm3)"* ]] && ok "sw1: no filter of vm3" || fail "sw1 kept a filter of vm3: $rules"
    [[ $(neighs sw1) != *"$(vm_mac vm3)"* ]] && ok "sw1: no neighbour entry of vm3" || fail "sw1 kept vm3's neighbour entry: $(neighs sw1)"
    vm_ping vm3 "$(vm_ip vm5)" && fail "destroyed vm3 still reaches vm5" || ok "vm3's port carries nothing"

    step "destroy every VM: both sides back to empty"
    racks_virsh hv1a "destroy vm1" >/dev/null
    racks_virsh hv1b "destroy vm2" >/dev/null
    racks_virsh hv2b "destroy vm5" >/dev/null
    for sw in sw1 sw2; do
        racks_wait "no TSI at $sw" 10 test "$(nnvectl_sw "$sw" --json show tsis | jq length)" = 0 ||
            fail "$sw still has TSIs"
    done
    sleep 0.3
    for ns in hv1a hv1b hv2a hv2b; do
        expect "$ns bridge VLANs" "$(vlans "$ns")" ""
    done
    V=$(vlans sw1)
    expect "sw1 swp1" "$(port_vlans swp1)" "1=PU"
    V=$(vlans sw2)
    expect "sw2 swp1 swp2" "$(port_vlans swp1) $(port_vlans swp2)" "1=PU 1=PU"
    for sw in sw1 sw2; do
        expect "$sw tunnel map and static FDB" "$(sw_state "$sw" | tr -s ' ' | sed 's/^ //; s/ $//')" ""
        expect "$sw neighbour entries" "$(neighs "$sw")" ""
        rules=$(nft_rules "$sw")
        [[ $rules != *192.168.0.* && $rules != *52:54:00:00:00:* ]] && ok "$sw: no TSI filter left" || fail "$sw filters left: $rules"
    done

    racks_finish hv1a hv1b hv2a hv2b sw1 sw2
fi

# ------------------------------------------------------------------------------ on the host ---
build=${SPLITNVE_BUILD:-$src/build}
. "$src/tests/uml/racks-host.bash"
racks_host_run "$src" "$build" racks "$here/test-racks.sh" 1G 400 nnve1 nnve2 hv1a hv1b hv2a hv2b
