#!/bin/bash
# test-pair-uml.sh: a ToR pair with dual-homed hypervisors, with real packets (RFC 8394 Req-3,
# Req-4; PROTOCOL.md section 17).
#
# Inside User-Mode Linux, the topology of tests/uml/pair-lib.bash: two switch namespaces sw1
# (allocator) and sw2 (follower), each running nnve-daemon with the `linux` backend, both in
# one [pair] domain rack1 (pair session over the underlay, which also carries VXLAN between
# them and to a plain VXLAN peer `rem` outside the rack, a host of VN blue).  Two hypervisors
# hv1, hv2, each with an active-backup bond0 over one link to each switch (e1 -> sw1, e2 ->
# sw2) as the uplink of its VLAN-aware bridge, a management link to each switch, its private
# libvirtd (test driver) and tnve-agent with two [nnve] sections, mode active-active.  VMs
# vm1 (hv1) and vm2 (hv2) of VN blue are namespaces behind vNIC ports.  Checks:
#   1. the VMs' TSIs are activated at both switches with one tag (show tsis, show pair),
#      vm1 pings vm2 and, across the VXLAN fabric, the peer outside the rack; vm2's ARP
#      broadcast, flooded to sw2 through VXLAN, does not move its FDB entry off swp2 on sw2
#      (the entries are sticky)
#   2. kill -9 of sw1's nnve-daemon under continuous pings to vm2 and to the VXLAN peer (lost
#      replies reported; at most the 3 in flight at the stop may be lost): sw2's kernel
#      state (bridge VLANs, static FDB entries, port flags, nftables) does not change,
#      `bridge monitor` on sw2 sees no entry removed or added
#   3. sw1's daemon restarts: the pair is up and synced again, the tags are unchanged, sw1's
#      kernel state is what it was before the kill, sw2's still has not changed
#   4. sw1's host links go down: both bonds fail over to sw2, pings to vm2 and to the VXLAN
#      peer continue (loss reported), the peer now reaches vm1 through sw2's VTEP
# Skips (77) when User-Mode Linux is missing.
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=${SPLITNVE_SRC:-$(cd "$here/../.." && pwd)}

# ---------------------------------------------------------------------------- inside UML ---
if [ "${1:-}" = "--inside" ]; then
    . "$src/tests/uml/racks-lib.bash"
    . "$src/tests/uml/pair-lib.bash"
    racks_test_init 25 "$R/sw?/nnve.log" "$R/hv?/agent.log"
    trap 'racks_stop' EXIT

    # ping_window start NAME DST: a continuous ping vm1 -> DST (every 50 ms, at most 90 s).
    # ping_window stop NAME WHAT [MAXLOST]: stops it and reports the lost replies; fails when
    # fewer than 20 were sent, none answered, or more than MAXLOST (when given) were lost
    # (the few in flight at the stop count as lost).
    declare -A PINGER=()
    ping_window() {
        if [ "$1" = start ]; then
            ip netns exec vm1 ping -n -i 0.05 -w 90 "$3" >"$R/ping.$2" 2>&1 &
            PINGER[$2]=$!
            return 0
        fi
        local sent got
        kill -INT "${PINGER[$2]}" 2>/dev/null
        wait "${PINGER[$2]}" 2>/dev/null
        read -r sent got <<<"$(awk '/packets transmitted/ { print $1, $4 }' "$R/ping.$2")"
        if [ -n "${sent:-}" ] && [ "$sent" -ge 20 ] && [ "${got:-0}" -gt 0 ] &&
            [ $((sent - got)) -le "${4:-$sent}" ]; then
            ok "continuous ping across $3: $((sent - got)) of $sent lost"
        else
            fail "continuous ping across $3: ${got:-?} of ${sent:-?} answered"
            tail -n 3 "$R/ping.$2"
        fi
    }
    # rem_fdb: the VXLAN peer's entry of vm1's MAC; rem_via VTEP: it points at VTEP.
    rem_fdb() { bridge -n rem fdb show dev vx0 | grep "^$(vm_mac vm1) "; }
    rem_via() { rem_fdb | grep -q " dst $1 "; }

    step "topology, the switch pair, hypervisors, VMs"
    pair_start || die "start-up"
    pair_vms_start vm1 vm2 || die "VMs"

    step "1. both TSIs activated at both switches with one tag; pings"
    racks_wait "sw1 activated" 30 activated_at sw1 vm1 vm2 || die "not activated at sw1"
    racks_wait "sw2 activated" 30 activated_at sw2 vm1 vm2 || die "not activated at sw2"
    tags_before="$(tsi_state sw1 vm1) $(tsi_state sw1 vm2) $(tsi_state sw2 vm1) $(tsi_state sw2 vm2)"
    read -r _ t1 _ t2 _ t3 _ t4 <<<"$tags_before"
    [ "$t1" = "$t2" ] && [ "$t1" = "$t3" ] && [ "$t1" = "$t4" ] && [ "$t1" -ge 100 ] &&
        ok "blue has tag $t1 at sw1 and sw2 for vm1 and vm2" || fail "tags differ: $tags_before"
    for sw in sw1 sw2; do
        pt=$(nnvectl_sw "$sw" --json show pair | jq -c '[.rows[] | select(.vn_id == 5000) | .tag]')
        [ "$pt" = "[$t1]" ] && ok "$sw show pair: blue -> $t1" || fail "$sw show pair table: $pt ($(nnvectl_sw "$sw" --json show pair | jq -c .))"
    done
    for hv in hv1 hv2; do
        a=$(active_slave "$hv")
        [ "$a" = e1 ] || fail "$hv bond0 active slave is '$a', not e1 (sw1)"
    done
    vm_ping vm1 "$(vm_ip vm2)" 5 && ok "vm1 (hv1) -> vm2 (hv2) through sw1" || fail "vm1 cannot reach vm2"
    vm_ping vm1 "$REM_IP" 5 && ok "vm1 -> $REM_IP (VN blue behind the VXLAN peer 198.51.100.3) through sw1" ||
        fail "vm1 cannot reach the VXLAN peer"
    rem_via 198.51.100.1 && ok "the VXLAN peer reaches vm1 through sw1's VTEP" || fail "the VXLAN peer: $(rem_fdb)"
    # vm2's ARP broadcast reaches sw2 through VXLAN (sw1 floods it): sw2 learns vm2's MAC on
    # vxlan0, which must not move the TSI's entry away from swp2
    ip -n vm2 neigh flush dev eth0
    vm_ping vm2 "$(vm_ip vm1)" 3 || fail "vm2 cannot reach vm1"
    sleep 0.5
    for sw in sw1 sw2; do
        e=$(bridge -n "$sw" fdb show | grep "^$(vm_mac vm2) .*vlan $t1 .*static")
        [[ $e == *" dev swp2 "*sticky* ]] && ok "$sw: vm2's entry stays on swp2 after its ARP broadcast ($e)" ||
            fail "$sw: vm2's entry after its ARP broadcast: '$e'"
    done

    step "2. kill -9 of nnve-daemon on sw1 under a continuous ping"
    pair_kstate sw1 >"$R/k.sw1.before"
    pair_kstate sw2 >"$R/k.sw2.before"
    bridge -n sw2 monitor vlan fdb >"$R/mon.sw2" 2>&1 &
    mon2=$!
    bridge -n sw1 monitor vlan fdb >"$R/mon.sw1" 2>&1 &
    mon1=$!
    ping_window start kill "$(vm_ip vm2)"
    ping_window start kill-rem "$REM_IP"
    sleep 1
    racks_kill sw1 KILL
    sleep 3
    pair_kstate sw2 >"$R/k.sw2.killed"
    diff "$R/k.sw2.before" "$R/k.sw2.killed" >"$R/k.diff" && ok "sw2 kernel state unchanged 3 s after the kill" ||
        { sed 's/^/   diff| /' "$R/k.diff" | head -n 20; fail "sw2 kernel state changed after sw1's kill"; }
    ping_window stop kill "the kill" 3
    ping_window stop kill-rem "the kill, to the VXLAN peer" 3
    vm_ping vm1 "$(vm_ip vm2)" 3 && ok "vm1 -> vm2 while sw1's daemon is down" || fail "no ping while sw1's daemon is down"
    vm_ping vm1 "$REM_IP" 3 && ok "vm1 -> the VXLAN peer while sw1's daemon is down" ||
        fail "no ping to the VXLAN peer while sw1's daemon is down"

    step "3. sw1's daemon restarts: the pair converges, nothing moves"
    ping_window start restart "$(vm_ip vm2)"
    racks_start_switch sw1 || die "sw1 restart"
    racks_wait "pair session up again" 30 pair_up sw2 || fail "the pair session did not come back"
    racks_wait "sw1 pair synced" 10 pair_up sw1 || fail "sw1 not synced"
    racks_wait "hv1 sessions" 30 agent_ready hv1 || fail "hv1 did not resynchronise with sw1"
    racks_wait "hv2 sessions" 30 agent_ready hv2 || fail "hv2 did not resynchronise with sw1"
    racks_wait "sw1 activated again" 30 activated_at sw1 vm1 vm2 || fail "not activated at sw1 after the restart"
    sleep 2
    tags_after="$(tsi_state sw1 vm1) $(tsi_state sw1 vm2) $(tsi_state sw2 vm1) $(tsi_state sw2 vm2)"
    [ "$tags_after" = "$tags_before" ] && ok "TSI states and tags unchanged: $tags_after" ||
        fail "tags changed: $tags_before -> $tags_after"
    # control: the monitors do see a change
    bridge -n sw2 fdb add 02:00:00:00:00:aa dev swp1 vlan 1 master static &&
        bridge -n sw2 fdb del 02:00:00:00:00:aa dev swp1 vlan 1 master || fail "control fdb change"
    sleep 0.5
    ping_window stop restart "the restart" 3
    kill "$mon1" "$mon2" 2>/dev/null
    wait "$mon1" "$mon2" 2>/dev/null
    grep -q 02:00:00:00:00:aa "$R/mon.sw2" || fail "the monitor missed the control change"
    for sw in sw2 sw1; do
        monitor_changes "$R/mon.$sw" >"$R/mon.$sw.changes"
        [ -s "$R/mon.$sw.changes" ] && { sed 's/^/   monitor| /' "$R/mon.$sw.changes" | head -n 20; fail "$sw: VLAN or static FDB entries changed across the kill and restart"; } ||
            ok "$sw: no VLAN or static FDB entry removed or added across the kill and restart (bridge monitor)"
    done
    for sw in sw1 sw2; do
        pair_kstate "$sw" >"$R/k.$sw.after"
        diff "$R/k.$sw.before" "$R/k.$sw.after" >"$R/k.diff" && ok "$sw kernel state after the restart = before the kill" ||
            { sed 's/^/   diff| /' "$R/k.diff" | head -n 20; fail "$sw kernel state differs after the restart"; }
    done
    grep -F "nnve-daemon[${RACKS_PID[sw1]}]" "$R/sw1/nnve.log" | grep -E "linux: .*(added|removed|mapped|locked|created|deleted)" &&
        fail "the restarted daemon changed the dataplane" || ok "the restarted daemon logged no dataplane change"

    step "4. sw1's host links go down: the bonds fail over to sw2"
    ping_window start failover "$(vm_ip vm2)"
    ping_window start failover-rem "$REM_IP"
    sleep 1
    ip -n sw1 link set swp1 down && ip -n sw1 link set swp2 down || fail "links down"
    failed_over() { [ "$(active_slave "$1")" = e2 ]; }
    racks_wait "hv1 on e2" 10 failed_over hv1 || fail "hv1's bond did not fail over"
    racks_wait "hv2 on e2" 10 failed_over hv2 || fail "hv2's bond did not fail over"
    sleep 3
    ping_window stop failover "the failover"
    vm_ping vm1 "$(vm_ip vm2)" 3 && ok "vm1 -> vm2 through sw2" || fail "no ping through sw2"
    ping_window stop failover-rem "the failover, to the VXLAN peer"
    rem_via 198.51.100.2 && ok "the VXLAN peer now reaches vm1 through sw2's VTEP" || fail "the VXLAN peer after the failover: $(rem_fdb)"

    racks_finish hv1 hv2 sw1 sw2
fi

# ------------------------------------------------------------------------------ on the host ---
build=${SPLITNVE_BUILD:-$src/build}
. "$src/tests/uml/racks-host.bash"
racks_host_need_bonding
racks_host_run "$src" "$build" pair-uml "$here/test-pair-uml.sh" 768M 240 nnve1 nnve2 hv1 hv2
