#!/bin/bash
# test-pair-partition.sh: a ToR pair cut apart while VMs of new VNs start on both sides, then
# healed, with real packets (RFC 8394 Req-3, Req-4; PROTOCOL.md sections 17.4-17.6).
#
# Inside User-Mode Linux, the topology of tests/uml/pair-lib.bash (sw1 allocator, sw2
# follower, hypervisors hv1 and hv2 on active-backup bonds to both, tnve-agent active-active,
# a VXLAN peer outside the rack).  The pair session crosses the underlay bridge; the
# partition drops its TCP port there and nothing else (VXLAN and management still pass).
#   1. VN blue (vm1 on hv1, vm2 on hv2) runs before the partition: one tag on both switches
#   2. partition: both switches lose the pair session; blue keeps its tag and its pings
#   3. VMs of the new VNs red (vm3 hv1, vm4 hv2) and green (vm5 hv1, vm6 hv2) start: each
#      switch binds them from its own half only (sw1 100-149, sw2 150-199); never one tag
#      for two VNs anywhere in the domain (both switches' pair tables, VAPs, TSIs, kernel
#      tunnel maps, the hypervisors' vNIC ports; a tunnel map added by hand on sw2 with
#      sw1's tag of red shows that the check catches a collision); the agents apply the
#      active nNVE's (sw1's) tag, so red and green ping through sw1, and stay isolated
#   4. heal: the pair session comes back; both tables hold the same rows with mirrored marks,
#      red and green are counted as splits (two tags each, as section 17.6 says), no tag in
#      use changed (TSIs, vNIC ports; `bridge monitor` on both switches and hypervisors sees
#      no VLAN or static FDB entry removed or added by the heal), each switch's TSIs, VAPs, pair rows
#      and kernel maps equal what the libvirtds run; pings in every VN and to the VXLAN peer
#   5. a VN started after the heal (white, vm7) gets one tag on both, from the allocator
#   6. sw1's host ports go down, the management sessions stay up: the bonds fail over to e2,
#      and the agents (`uplink = e1` / `uplink = e2` in their [nnve] sections) put sw2's
#      tags on the vNIC ports of red and green (logged as `retag vn=... tag X -> Y
#      cause=uplink`); pings in red, green, blue and to the VXLAN
#      peer go through sw2; still one VN per tag everywhere
# Skips (77) when User-Mode Linux or its bonding module is missing.
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=${SPLITNVE_SRC:-$(cd "$here/../.." && pwd)}

# ---------------------------------------------------------------------------- inside UML ---
if [ "${1:-}" = "--inside" ]; then
    PAIR_VMS="vm1:hv1:5000:blue vm2:hv2:5000:blue vm3:hv1:5001:red vm4:hv2:5001:red
              vm5:hv1:5002:green vm6:hv2:5002:green vm7:hv1:5003:white"
    PAIR_VNS="blue:5000 red:5001 green:5002 white:5003"
    . "$src/tests/uml/racks-lib.bash"
    # each [nnve] section names the bond slave cabled to its switch (e1 -> sw1, e2 -> sw2)
    PAIR_UPLINKS="e1 e2"
    . "$src/tests/uml/pair-lib.bash"
    racks_test_init 30 "$R/sw?/nnve.log" "$R/hv?/agent.log"
    trap 'racks_stop' EXIT

    # partition on|off: drops (or passes again) the pair session's TCP port on the underlay
    # bridge, both directions; VXLAN and everything else still pass.
    partition() {
        if [ "$1" = on ]; then
            printf '%s\n' 'table bridge partition {' ' chain cut {' \
                '  type filter hook forward priority 0; policy accept;' \
                '  tcp dport 8395 counter drop' '  tcp sport 8395 counter drop' ' }' '}' >"$R/partition.nft"
            ip netns exec ul nft -f "$R/partition.nft"
        else
            ip netns exec ul nft delete table bridge partition
        fi
    }
    vn_of() { vm_field "$1" 3; }
    tag_at() { local s; s=$(tsi_state "$1" "$2"); echo "${s#* }"; }
    port_tag() { # VM: the PVID of its vNIC port on its hypervisor (0: none)
        bridge -n "$(vm_field "$1" 2)" -j vlan show dev "vnet$(vm_num "$1")" 2>/dev/null |
            jq -r '[ .[0].vlans[]? | select(.flags // [] | any(. == "PVID")) | .vlan ][0] // 0'
    }
    # bindings: every (tag, VNI) the domain uses, one "WHERE TAG VNI" line each: both
    # switches' pair tables, VAPs, TSIs and kernel tunnel maps, and the hypervisors' vNIC
    # ports (the VM's VN).
    kernel_map() { # SW: "TAG VNI" lines of vxlan0's tunnel map
        bridge -n "$1" -j vlan tunnelshow | jq -r '.[] | select(.ifname == "vxlan0") | .tunnels[]
            | if .vlanEnd then range(0; .vlanEnd - .vlan + 1) as $i | "\(.vlan + $i) \(.tunid + $i)"
              else "\(.vlan) \(.tunid)" end'
    }
    bindings() {
        local sw hv port t
        for sw in sw1 sw2; do
            nnvectl_sw "$sw" --json show pair | jq -r --arg w "$sw/pair" '.rows[] | "\($w) \(.tag) \(.vn_id)"'
            nnvectl_sw "$sw" --json show vns | jq -r --arg w "$sw/vap" '.[] | "\($w) \(.tag) \(.vn_id)"'
            nnvectl_sw "$sw" --json show tsis | jq -r --arg w "$sw/tsi" '.[] | "\($w) \(.tag) \(.vn_id)"'
            kernel_map "$sw" | sed "s|^|$sw/kernel |"
        done
        pvids | while read -r hv port t; do
            [ -n "${VN_OF_PORT[$port]:-}" ] && echo "$hv/$port $t ${VN_OF_PORT[$port]}"
        done
    }
    # pvids: "HV PORT PVID" of every bridge port with a PVID on both hypervisors.
    pvids() {
        local hv
        for hv in hv1 hv2; do
            bridge -n "$hv" -j vlan show | jq -r --arg h "$hv" '.[] | .ifname as $i | .vlans[]
                | select(.flags // [] | any(. == "PVID")) | "\($h) \($i) \(.vlan)"'
        done
    }
    declare -A VN_OF_PORT=()
    for e in $RACKS_VMS; do VN_OF_PORT[vnet$(vm_num "${e%%:*}")]=$(vn_of "${e%%:*}"); done
    # one_vn_per_tag FILE: no tag with two VNIs among the lines of FILE; the collisions are
    # printed otherwise.
    one_vn_per_tag() {
        awk '{ if (($2 in vni) && vni[$2] != $3) { bad[$2] = 1 } else vni[$2] = $3; seen[$2] = seen[$2] " " $1 "=" $3 }
             END { n = 0; for (t in bad) { print "   tag " t " has two VNs:" seen[t]; n++ } exit n > 0 }' "$1"
    }
    check_one_vn_per_tag() { # WHEN
        bindings >"$R/bindings"
        [ "$(wc -l <"$R/bindings")" -ge 8 ] || fail "$1: too few bindings read: $(cat "$R/bindings")"
        one_vn_per_tag "$R/bindings" && ok "$1: one VN per tag across both switches' tables, VAPs, TSIs, kernel maps and the vNIC ports ($(wc -l <"$R/bindings") bindings)" ||
            fail "$1: a tag carries two VNs"
    }
    # table SW: the pair table as "TAG VN MINE PEER" lines; mirrored: the same rows with the
    # marks swapped (what the other side should hold).
    table() { nnvectl_sw "$1" --json show pair | jq -r '.rows[] | "\(.tag) \(.vn_id) \(.mine) \(.peer)"' | sort; }
    mirrored() { table "$1" | awk '{ print $1, $2, $4, $3 }'; }
    tables_agree() { [ "$(table sw1)" = "$(mirrored sw2)" ] && [ -n "$(table sw1)" ]; }
    # snapshot: per VM, its tag at sw1 and sw2 and its vNIC port's tag (0: none), from one
    # listing of each switch and hypervisor.
    snapshot() {
        local sw
        {
            for sw in sw1 sw2; do
                nnvectl_sw "$sw" --json show tsis | jq -r --arg s "$sw" '.[] | "\($s) \(.tsi | .[-17:]) \(.tag)"'
            done
            pvids | sed 's/^hv[0-9]* /port /'
            echo vms $RACKS_VMS
        } 2>/dev/null | awk '
        $1 == "vms" { for (i = 2; i <= NF; i++) { split($i, f, ":"); vms[++n] = f[1] }; next }
        $1 == "port" { port[$2] = $3; next }
        { tag[$1 " " $2] = $3 }
        END { for (i = 1; i <= n; i++) { k = substr(vms[i], 3) + 0; m = sprintf("52:54:00:00:00:%02x", k)
                  print vms[i], tag["sw1 " m] + 0, tag["sw2 " m] + 0, port["vnet" k] + 0 } }'
    }
    in_half() { # TAG SW
        local lo hi
        IFS=- read -r lo hi <<<"$(nnvectl_sw "$2" --json show pair | jq -r .half)"
        [ "$1" -ge "$lo" ] && [ "$1" -le "$hi" ]
    }
    # libvirt_view: what the libvirtds run, "HV MAC VNI" lines; switch_view SW: the
    # activated TSIs at SW in the same form.
    libvirt_view() {
        local hv vm
        for hv in hv1 hv2; do
            for vm in $(racks_virsh "$hv" "list --name"); do
                # (the test driver's own domain `test` has no vNIC of a VN)
                vm_field "$vm" 2 >/dev/null && echo "$hv $(vm_mac "$vm") $(vn_of "$vm")"
            done
        done | sort
    }
    switch_view() {
        nnvectl_sw "$1" --json show tsis | jq -r '.[] | select(.state == "activated")
            | "\(.hypervisor) \(.tsi | capture("(?<m>([0-9a-f]{2}:){5}[0-9a-f]{2})$").m) \(.vn_id)"' | sort
    }
    activated_both() { activated_at sw1 "$@" && activated_at sw2 "$@"; }
    mismatched() { tnvectl_hv "$1" --json show counters | jq -r '[.. | objects | .vns_mismatched? // empty][0]'; }

    step "topology, the switch pair, hypervisors; VN blue before the partition"
    pair_start || die "start-up"
    for e in $RACKS_VMS; do vm_xml "${e%%:*}" >"$R/${e%%:*}.xml"; done
    racks_virsh hv1 "define $R/vm1.xml; define $R/vm3.xml; define $R/vm5.xml; define $R/vm7.xml; start vm1" >/dev/null || die "virsh hv1"
    racks_virsh hv2 "define $R/vm2.xml; define $R/vm4.xml; define $R/vm6.xml; start vm2" >/dev/null || die "virsh hv2"
    racks_wait "blue activated at both" 30 activated_both vm1 vm2 ||
        die "blue not activated at both switches"
    blue=$(tag_at sw1 vm1)
    if [ "$(tag_at sw2 vm2)" = "$blue" ] && in_half "$blue" sw1; then
        ok "blue has tag $blue on both switches (sw1's half)"
    else
        fail "blue's tags: sw1 $blue, sw2 $(tag_at sw2 vm2)"
        grep -H ' pair: ' "$R/sw1/nnve.log" "$R/sw2/nnve.log" | head -n 40
    fi
    vm_ping vm1 "$(vm_ip vm2)" 5 && ok "blue: vm1 -> vm2" || fail "blue: vm1 cannot reach vm2"

    step "2. partition: the pair session's port is dropped on the underlay"
    partition on || die "cannot install the partition"
    racks_wait "sw2 without its pair session" 30 pair_down sw2 || fail "sw2 still has its pair session"
    racks_wait "sw1 without its pair session" 30 pair_down sw1 || fail "sw1 still has its pair session"
    grep -q 'pair: session down .*allocating from our half' "$R/sw2/nnve.log" && ok "sw2 logged: session down, allocating from its half" ||
        fail "sw2 did not log the partition"
    [ "$(nnvectl_sw sw1 --json show pair | jq -r .half) $(nnvectl_sw sw2 --json show pair | jq -r .half)" = "100-149 150-199" ] ||
        fail "halves: $(nnvectl_sw sw1 --json show pair | jq -r .half) $(nnvectl_sw sw2 --json show pair | jq -r .half)"
    vm_ping vm1 "$(vm_ip vm2)" 3 && ok "blue keeps working during the partition" || fail "blue broken by the partition"
    [ "$(tag_at sw1 vm1) $(tag_at sw2 vm2)" = "$blue $blue" ] || fail "blue's tag moved: $(tag_at sw1 vm1) $(tag_at sw2 vm2)"

    step "3. VMs of new VNs red and green start on both hypervisors during the partition"
    racks_virsh hv1 "start vm3; start vm5" >/dev/null || fail "virsh start on hv1"
    racks_virsh hv2 "start vm4; start vm6" >/dev/null || fail "virsh start on hv2"
    racks_wait "red and green at sw1" 30 activated_at sw1 vm3 vm4 vm5 vm6 || fail "not activated at sw1: $(switch_view sw1)"
    racks_wait "red and green at sw2" 30 activated_at sw2 vm3 vm4 vm5 vm6 || fail "not activated at sw2: $(switch_view sw2)"
    pair_down sw2 || fail "the pair session came back during the partition"
    # the follower's attempts behind the partition end at their deadline (a connect left to
    # the kernel's SYN retries would delay the heal by up to half a minute)
    grep -q 'pair: attempt abandoned' "$R/sw2/nnve.log" && ok "sw2 abandons its attempts behind the partition and retries" ||
        fail "sw2 never abandoned a connection attempt behind the partition"
    for vm in vm3 vm5; do
        t1=$(tag_at sw1 "$vm") t2=$(tag_at sw2 "$vm")
        in_half "$t1" sw1 && in_half "$t2" sw2 && ok "$(vm_field "$vm" 4): tag $t1 at sw1 (its half), $t2 at sw2 (its half)" ||
            fail "$(vm_field "$vm" 4): tag $t1 at sw1, $t2 at sw2: not each from its own half"
        [ "$(tag_at sw1 "vm$((${vm#vm} + 1))")" = "$t1" ] && [ "$(tag_at sw2 "vm$((${vm#vm} + 1))")" = "$t2" ] ||
            fail "the VN's two VMs differ in tag on one switch"
    done
    for sw in sw1 sw2; do
        pb=$(nnvectl_sw "$sw" --json show pair | jq -r .counters.partition_binds)
        [ "${pb:-0}" -ge 2 ] && ok "$sw: $pb bindings made without the peer (partition_binds)" || fail "$sw partition_binds: $pb"
    done
    check_one_vn_per_tag "during the partition"
    # control: a tunnel map of sw1's red tag to another VNI on sw2 is a collision
    red1=$(tag_at sw1 vm3)
    if kernel_map sw2 | grep -q "^$red1 "; then
        fail "control: sw2 already maps tag $red1"
    else
        bridge -n sw2 vlan add dev vxlan0 vid "$red1" && bridge -n sw2 vlan add dev vxlan0 vid "$red1" tunnel_info id 5999 ||
            fail "control: cannot add the tunnel map"
        bindings >"$R/bindings.control"
        out=$(one_vn_per_tag "$R/bindings.control") && fail "control: the check missed tag $red1 -> 5999 on sw2" ||
            ok "control: the check catches a tag with two VNs:$(tr -s ' ' <<<"$out")"
        bridge -n sw2 vlan del dev vxlan0 vid "$red1" || fail "control: cannot remove the tunnel map"
    fi
    for e in "vm3 vm4" "vm5 vm6"; do
        read -r a b <<<"$e"
        [ "$(port_tag "$a") $(port_tag "$b")" = "$(tag_at sw1 "$a") $(tag_at sw1 "$b")" ] &&
            ok "$(vm_field "$a" 4): the vNIC ports carry sw1's tag (the active nNVE's)" ||
            fail "$(vm_field "$a" 4): vNIC ports $(port_tag "$a") $(port_tag "$b"), sw1's tag $(tag_at sw1 "$a")"
        vm_ping "$a" "$(vm_ip "$b")" 5 && ok "$(vm_field "$a" 4): $a (hv1) -> $b (hv2) through sw1 during the partition" ||
            fail "$(vm_field "$a" 4): $a cannot reach $b during the partition"
    done
    vm_ping vm3 "$(vm_ip vm6)" && fail "red vm3 reached green vm6" || ok "red and green stay apart"
    for hv in hv1 hv2; do
        [ "$(mismatched "$hv")" = 2 ] && ok "$hv reports red and green with two tags (vns_mismatched 2)" ||
            fail "$hv vns_mismatched: $(mismatched "$hv")"
    done
    before=$(snapshot)

    step "4. heal: the pair session comes back"
    for n in sw1 sw2 hv1 hv2; do
        bridge -n "$n" monitor vlan fdb >"$R/mon.$n" 2>&1 &
        eval "mon_$n=\$!"
    done
    partition off || fail "cannot remove the partition"
    t0=$(date +%s%N)
    racks_wait "pair synced at sw2" 90 pair_up sw2 || fail "the pair session did not come back"
    racks_wait "pair synced at sw1" 30 pair_up sw1 || fail "sw1 not synced"
    racks_log "healed $((($(date +%s%N) - t0) / 1000000)) ms after the partition ended"
    racks_wait "tables agree" 30 tables_agree ||
        fail "the pair tables differ: sw1 [$(table sw1 | tr '\n' ';')], sw2 mirrored [$(mirrored sw2 | tr '\n' ';')]"
    tables_agree && ok "both tables hold the same $(table sw1 | wc -l) rows, marks mirrored: $(table sw1 | tr '\n' ';')"
    for sw in sw1 sw2; do
        sp=$(nnvectl_sw "$sw" --json show pair | jq -r .splits)
        [ "$sp" = 2 ] && ok "$sw counts red and green as splits" || fail "$sw splits: $sp"
    done
    grep -q 'pair: split vn=' "$R/sw1/nnve.log" && grep -q 'pair: split vn=' "$R/sw2/nnve.log" &&
        ok "both switches logged the splits" || fail "no split logged"
    sleep 1
    after=$(snapshot)
    [ "$after" = "$before" ] && ok "no tag in use changed (TSIs at both switches, vNIC ports): $(tr '\n' ';' <<<"$after")" ||
        fail "tags changed: [$(tr '\n' ';' <<<"$before")] -> [$(tr '\n' ';' <<<"$after")]"
    check_one_vn_per_tag "after the heal"
    # control: the monitors do see a change
    bridge -n sw2 fdb add 02:00:00:00:00:aa dev swp1 vlan 1 master static &&
        bridge -n sw2 fdb del 02:00:00:00:00:aa dev swp1 vlan 1 master || fail "control fdb change"
    sleep 0.5
    for n in sw1 sw2 hv1 hv2; do
        eval "kill \$mon_$n; wait \$mon_$n" 2>/dev/null
    done
    grep -q 02:00:00:00:00:aa "$R/mon.sw2" || fail "the monitor missed the control change"
    for n in sw1 sw2 hv1 hv2; do
        monitor_changes "$R/mon.$n" >"$R/mon.$n.changes"
        [ -s "$R/mon.$n.changes" ] && { sed 's/^/   monitor| /' "$R/mon.$n.changes" | head; fail "$n: bridge entries changed by the heal"; } ||
            ok "$n: no VLAN or static FDB entry removed or added by the heal (bridge monitor)"
    done
    lv=$(libvirt_view)
    for sw in sw1 sw2; do
        [ "$(switch_view "$sw")" = "$lv" ] && ok "$sw: the activated TSIs are what the libvirtds run ($(wc -l <<<"$lv"))" ||
            fail "$sw TSIs [$(switch_view "$sw" | tr '\n' ';')], libvirt [$(tr '\n' ';' <<<"$lv")]"
        vaps=$(nnvectl_sw "$sw" --json show vns | jq -r '.[] | select(.state == "connected") | "\(.tag) \(.vn_id)"' | sort)
        [ "$(cut -d' ' -f2 <<<"$vaps" | sort -u)" = "$(cut -d' ' -f3 <<<"$lv" | sort -u)" ] &&
            ok "$sw: VAPs of exactly the running VNs" || fail "$sw VAPs [$vaps], running VNs [$(cut -d' ' -f3 <<<"$lv" | sort -u | tr '\n' ' ')]"
        mine=$(table "$sw" | awk '$3 == "true" { print $1, $2 }')
        [ "$mine" = "$vaps" ] && ok "$sw: its pair rows (mine) are its VAPs" || fail "$sw rows held [$mine], VAPs [$vaps]"
        km=$(kernel_map "$sw" | sort)
        [ "$km" = "$vaps" ] && ok "$sw: its kernel tunnel map is its VAPs" || fail "$sw kernel map [$km], VAPs [$vaps]"
    done
    for hv in hv1 hv2; do
        acked=$(tnvectl_hv "$hv" --json show tsis | jq -r '.[] | select(.acked == "activated") | .mac' | sort -u)
        [ "$acked" = "$(awk -v h="$hv" '$1 == h { print $2 }' <<<"$lv")" ] && ok "$hv: its agent has exactly the running VMs activated" ||
            fail "$hv agent activated [$acked], libvirt [$lv]"
    done
    for e in "vm1 vm2" "vm3 vm4" "vm5 vm6"; do
        read -r a b <<<"$e"
        vm_ping "$a" "$(vm_ip "$b")" 3 && ok "$(vm_field "$a" 4): $a -> $b after the heal" || fail "$(vm_field "$a" 4): $a cannot reach $b after the heal"
    done
    vm_ping vm1 "$REM_IP" 5 && ok "blue: vm1 -> the VXLAN peer outside the rack" || fail "vm1 cannot reach the VXLAN peer"

    step "5. a VN started after the heal gets one tag, from the allocator"
    racks_virsh hv1 "start vm7" >/dev/null || fail "virsh start vm7"
    racks_wait "white at both" 30 activated_both vm7 || fail "vm7 not activated at both"
    w1=$(tag_at sw1 vm7) w2=$(tag_at sw2 vm7)
    [ "$w1" = "$w2" ] && in_half "$w1" sw1 && [ "$(port_tag vm7)" = "$w1" ] && ok "white: tag $w1 on both switches and vm7's port" ||
        fail "white: sw1 $w1, sw2 $w2, port $(port_tag vm7)"
    racks_wait "tables agree" 10 tables_agree || fail "the pair tables differ after white"
    check_one_vn_per_tag "after white"

    step "6. sw1's host ports go down: the bonds fail over to e2, the split VNs follow"
    for hv in hv1 hv2; do
        [ "$(tnvectl_hv "$hv" --json show nnves | jq -r '[.[] | .uplink] | join(" ")')" = "e1 e2" ] &&
            ok "$hv: show nnves lists the uplinks e1 (sw1) and e2 (sw2)" || fail "$hv: uplinks $(tnvectl_hv "$hv" --json show nnves | jq -c '[.[] | .uplink]')"
    done
    red2=$(tag_at sw2 vm3) green2=$(tag_at sw2 vm5)
    ip netns exec vm3 ping -n -i 0.05 -w 60 "$(vm_ip vm4)" >"$R/ping.red" 2>&1 &
    pinger=$!
    sleep 1
    ip -n sw1 link set swp1 down && ip -n sw1 link set swp2 down || fail "cannot take sw1's host ports down"
    on_e2() { [ "$(active_slave hv1) $(active_slave hv2)" = "e2 e2" ]; }
    racks_wait "bonds on e2" 20 on_e2 || fail "the bonds did not fail over: $(active_slave hv1) $(active_slave hv2)"
    split_on_sw2() {
        [ "$(port_tag vm3) $(port_tag vm4) $(port_tag vm5) $(port_tag vm6)" = "$red2 $(tag_at sw2 vm4) $green2 $(tag_at sw2 vm6)" ]
    }
    racks_wait "split VNs on sw2's tags" 20 split_on_sw2 &&
        ok "red and green: the vNIC ports carry sw2's tags ($red2, $green2)" ||
        fail "vNIC ports red $(port_tag vm3)/$(port_tag vm4), green $(port_tag vm5)/$(port_tag vm6); sw2's tags $red2, $green2"
    [ "$(port_tag vm1) $(port_tag vm2) $(port_tag vm7)" = "$blue $blue $w1" ] &&
        ok "blue and white keep their one tag on the vNIC ports" ||
        fail "blue/white ports $(port_tag vm1) $(port_tag vm2) $(port_tag vm7)"
    retags=0
    for vm in vm3 vm4 vm5 vm6; do
        hv=$(vm_field "$vm" 2)
        grep -q "retag vn=$(vn_of "$vm")/$(vm_field "$vm" 4) port=vnet$(vm_num "$vm") tag $(tag_at sw1 "$vm") -> $(tag_at sw2 "$vm") cause=uplink" "$R/$hv/agent.log" &&
            retags=$((retags + 1)) || fail "$hv: no retag logged for $vm"
    done
    [ "$retags" = 4 ] && ok "the agents logged the 4 retags (retag vn=... tag X -> Y cause=uplink)"
    for e in "vm3 vm4" "vm5 vm6" "vm1 vm2"; do
        read -r a b <<<"$e"
        vm_ping "$a" "$(vm_ip "$b")" 5 && ok "$(vm_field "$a" 4): $a -> $b through sw2" || fail "$(vm_field "$a" 4): $a cannot reach $b through sw2"
    done
    vm_ping vm1 "$REM_IP" 5 && ok "blue: vm1 -> the VXLAN peer through sw2" || fail "vm1 cannot reach the VXLAN peer through sw2"
    vm_ping vm3 "$(vm_ip vm6)" && fail "red vm3 reached green vm6 through sw2" || ok "red and green stay apart on sw2"
    kill -INT "$pinger" 2>/dev/null
    wait "$pinger" 2>/dev/null
    read -r sent got <<<"$(awk '/packets transmitted/ { print $1, $4 }' "$R/ping.red")"
    echo "red vm3 -> vm4 (every 50 ms) across the bond failover: $((${sent:-0} - ${got:-0})) of ${sent:-0} replies lost"
    echo "TABLE|split VN across a bond failover after a heal: replies lost (ping every 50 ms)|$((${sent:-0} - ${got:-0}))|-|-"
    check_one_vn_per_tag "after the bond failover"

    racks_finish hv1 hv2 sw1 sw2
fi

# ------------------------------------------------------------------------------ on the host ---
build=${SPLITNVE_BUILD:-$src/build}
. "$src/tests/uml/racks-host.bash"
racks_host_need_bonding
racks_host_run "$src" "$build" pair-partition "$here/test-pair-partition.sh" 768M 300 nnve1 nnve2 hv1 hv2
