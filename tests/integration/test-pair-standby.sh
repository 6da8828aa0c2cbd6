#!/bin/bash
# test-pair-standby.sh: active-standby VNs follow the hypervisor's bond (RFC 8394 Req-3), with
# real packets.
#
# Inside User-Mode Linux, the topology of tests/uml/pair-lib.bash: a ToR pair sw1, sw2
# (nnve-daemon, `linux` backend, one [pair] domain) and two hypervisors hv1, hv2, each with an
# active-backup bond0 over e1 (to sw1) and e2 (to sw2), its private libvirtd and tnve-agent
# with two [nnve] sections, `mode = active-standby` and `uplink = e1` / `uplink = e2`.  VMs
# vm1 (hv1) and vm2 (hv2) of VN blue; vm1 pings vm2 every 20 ms (ping -D) during each phase.
#   0. the bonds are on e1: both agents' active nNVE is sw1 (show nnves: uplink states), the
#      TSIs are activated at sw1 only
#   a. kill -9 of sw1's nnve-daemon: the agents fail over to sw2 (cause=session), the pings
#      continue (sw1's kernel state stays); the daemon restarts: the agents return to sw1
#      (its uplink carries the traffic) and sw2 lets the TSIs go; `bridge monitor` on sw1
#      sees no VLAN or static FDB entry removed or added, sw1's kernel state is unchanged
#   b. sw1's host ports go down: the bonds fail over to e2, the agents move the VN to sw2
#      (cause=uplink), the pings come back
# Prints the replies lost in each phase and, for b, the time from the last reply before the
# links went down to the first one after (TABLE| lines, see scripts/run-bench.sh).
# Skips (77) when User-Mode Linux or its bonding module is missing.
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=${SPLITNVE_SRC:-$(cd "$here/../.." && pwd)}

# ---------------------------------------------------------------------------- inside UML ---
if [ "${1:-}" = "--inside" ]; then
    PAIR_MODE=active-standby
    PAIR_UPLINKS="e1 e2"
    . "$src/tests/uml/racks-lib.bash"
    . "$src/tests/uml/pair-lib.bash"
    racks_test_init 30 "$R/sw?/nnve.log" "$R/hv?/agent.log"
    trap 'racks_stop' EXIT

    active_is() { # HV NNVE: the agent's active nNVE
        [ "$(tnvectl_hv "$1" --json show nnves 2>/dev/null | jq -r '.[] | select(.role == "active") | .name')" = "$2" ]
    }
    uplinks_are() { # HV STATE1 STATE2: the uplink states of sw1 and sw2 in show nnves
        [ "$(tnvectl_hv "$1" --json show nnves 2>/dev/null | jq -r '[.[] | .uplink_state] | join(" ")')" = "$2 $3" ]
    }
    all_hvs() { # CMD ARGS...: CMD HV ARGS... for hv1 and hv2
        local f=$1
        shift
        "$f" hv1 "$@" && "$f" hv2 "$@"
    }
    now() { date +%s.%N; }
    ping_start() { # NAME
        ip netns exec vm1 ping -D -n -i 0.02 -w 100 "$(vm_ip vm2)" >"$R/ping.$1" 2>&1 &
        PINGER=$!
    }
    ping_stop() {
        kill -INT "$PINGER" 2>/dev/null
        wait "$PINGER" 2>/dev/null
    }

    step "topology, the switch pair, hypervisors, VMs"
    pair_start || die "start-up"
    pair_vms_start vm1 vm2 || die "VMs"

    step "0. the bonds are on e1: the VN is at sw1 only"
    for hv in hv1 hv2; do
        [ "$(active_slave "$hv")" = e1 ] || die "$hv bond0 active slave is '$(active_slave "$hv")', not e1"
    done
    racks_wait "uplink states" 20 all_hvs uplinks_are active backup &&
        ok "show nnves: uplink e1 active, e2 backup on both hypervisors" ||
        fail "show nnves uplink states: $(tnvectl_hv hv1 --json show nnves | jq -c '[.[] | {name, role, uplink, uplink_state, uplink_bond, preferred}]')"
    all_hvs active_is sw1 && ok "both agents: sw1 (uplink e1 active) is the active nNVE" || fail "active nNVE is not sw1"
    racks_wait "sw1 activated" 30 tsis_in sw1 activated vm1 vm2 || die "not activated at sw1"
    tsis_in sw2 absent vm1 vm2 && ok "active-standby: no TSI at sw2" || fail "TSIs at sw2: $(tsi_state sw2 vm1) $(tsi_state sw2 vm2)"
    tags_before="$(tsi_state sw1 vm1) $(tsi_state sw1 vm2)"
    vm_ping vm1 "$(vm_ip vm2)" 5 && ok "vm1 -> vm2 through sw1" || fail "vm1 cannot reach vm2"
    tnvectl_hv hv1 show nnves

    step "a. kill -9 of sw1's nnve-daemon (the bonds' switch), then its restart"
    pair_kstate sw1 >"$R/k.sw1.before"
    bridge -n sw1 monitor vlan fdb >"$R/mon.sw1" 2>&1 &
    mon1=$!
    ping_start kill
    sleep 1
    racks_kill sw1 KILL
    racks_wait "agents on sw2" 30 all_hvs active_is sw2 || fail "the agents did not fail over to sw2"
    racks_wait "sw2 activated" 30 tsis_in sw2 activated vm1 vm2 || fail "not activated at sw2 after the kill"
    grep -q 'active nNVE changed nnve=sw2 was=sw1 cause=session why="session lost"' "$R/hv1/agent.log" &&
        ok "hv1 logged the failover to sw2 (cause=session)" || fail "no failover log line on hv1"
    pair_kstate sw1 >"$R/k.sw1.killed"
    diff "$R/k.sw1.before" "$R/k.sw1.killed" >"$R/k.diff" && ok "sw1's kernel state stays while its daemon is down" ||
        { sed 's/^/   diff| /' "$R/k.diff" | head -n 20; fail "sw1's kernel state changed after the kill"; }
    racks_start_switch sw1 || die "sw1 restart"
    racks_wait "pair session up again" 30 pair_up sw2 || fail "the pair session did not come back"
    racks_wait "agents back on sw1" 30 all_hvs active_is sw1 || fail "the agents did not return to sw1"
    racks_wait "hv1 sessions" 30 agent_ready hv1 || fail "hv1 did not resynchronise with sw1"
    racks_wait "hv2 sessions" 30 agent_ready hv2 || fail "hv2 did not resynchronise with sw1"
    racks_wait "sw2 lets the TSIs go" 30 tsis_in sw2 absent vm1 vm2 || fail "TSIs still at sw2: $(tsi_state sw2 vm1) $(tsi_state sw2 vm2)"
    tsis_in sw1 activated vm1 vm2 && ok "TSIs activated at sw1 after the restart" || fail "not activated at sw1 after the restart"
    grep -q 'active nNVE changed nnve=sw1 was=sw2 cause=session' "$R/hv1/agent.log" &&
        ok "hv1 logged the return to sw1 (cause=session)" || fail "no log line for the return to sw1"
    tags_after="$(tsi_state sw1 vm1) $(tsi_state sw1 vm2)"
    [ "$tags_after" = "$tags_before" ] && ok "sw1 TSI states and tags unchanged: $tags_after" ||
        fail "sw1 TSIs changed: $tags_before -> $tags_after"
    sleep 1
    # control: the monitor does see a change
    bridge -n sw1 fdb add 02:00:00:00:00:aa dev swp1 vlan 1 master static &&
        bridge -n sw1 fdb del 02:00:00:00:00:aa dev swp1 vlan 1 master || fail "control fdb change"
    sleep 0.5
    ping_stop
    kill "$mon1" 2>/dev/null
    wait "$mon1" 2>/dev/null
    grep -q 02:00:00:00:00:aa "$R/mon.sw1" || fail "the monitor missed the control change"
    monitor_changes "$R/mon.sw1" >"$R/mon.sw1.changes"
    [ -s "$R/mon.sw1.changes" ] && { sed 's/^/   monitor| /' "$R/mon.sw1.changes" | head -n 20; fail "sw1: VLAN or static FDB entries changed across the kill and restart"; } ||
        ok "sw1: no VLAN or static FDB entry removed or added across the kill and restart (bridge monitor)"
    pair_kstate sw1 >"$R/k.sw1.after"
    diff "$R/k.sw1.before" "$R/k.sw1.after" >"$R/k.diff" && ok "sw1 kernel state after the restart = before the kill" ||
        { sed 's/^/   diff| /' "$R/k.diff" | head -n 20; fail "sw1 kernel state differs after the restart"; }
    read -r lost_a sent_a _ maxgap_a <<<"$(ping_stats "$R/ping.kill" 0)"
    echo "kill -9 and restart of sw1's daemon: $lost_a of $sent_a replies lost, longest gap ${maxgap_a} ms"
    # the few in flight when the ping stops count as lost; the traffic itself never stopped
    [ "$sent_a" -ge 50 ] && [ "$lost_a" -le 10 ] && ok "pings flowed across the kill and restart" ||
        fail "pings across the kill and restart: $lost_a of $sent_a lost"
    vm_ping vm1 "$(vm_ip vm2)" 3 && ok "vm1 -> vm2 after the restart" || fail "no ping after the restart"

    step "b. sw1's host ports go down: the bonds fail over to e2, the VN follows"
    ping_start down
    sleep 1
    t0=$(now)
    ip -n sw1 link set swp1 down && ip -n sw1 link set swp2 down || fail "links down"
    on_e2() { [ "$(active_slave "$1")" = e2 ]; }
    racks_wait "bonds on e2" 10 all_hvs on_e2 || fail "the bonds did not fail over"
    racks_wait "agents on sw2" 20 all_hvs active_is sw2 || fail "the agents did not move the VN to sw2"
    racks_wait "sw2 activated" 20 tsis_in sw2 activated vm1 vm2 || fail "not activated at sw2 after the failover"
    t1=$(now)
    racks_wait "pings through sw2" 20 replied_after "$R/ping.down" "$t1" || fail "no reply through sw2 after the failover"
    racks_wait "sw1 lets the TSIs go" 20 tsis_in sw1 absent vm1 vm2 || fail "TSIs still at sw1: $(tsi_state sw1 vm1) $(tsi_state sw1 vm2)"
    # make-before-break: each TSI is activated at sw2 before it is de-associated at sw1
    for vm in vm1 vm2; do
        m=$(vm_mac "$vm")
        act=$(grep "audit tsi: activated tsi=.*/$m" "$R/sw2/nnve.log" | tail -n 1 | cut -d' ' -f1)
        deas=$(grep "audit tsi: deassociated tsi=.*/$m" "$R/sw1/nnve.log" | tail -n 1 | cut -d' ' -f1)
        [ -n "$act" ] && [ -n "$deas" ] && ! [[ "$deas" < "$act" ]] &&
            ok "$vm: activated at sw2 ($act), then de-associated at sw1 ($deas)" ||
            fail "$vm: activated at sw2 '$act', de-associated at sw1 '$deas'"
    done
    sleep 1
    ping_stop
    grep -q 'active nNVE changed nnve=sw2 was=sw1 cause=uplink' "$R/hv1/agent.log" &&
        ok "hv1 logged the move to sw2 (cause=uplink)" || fail "no cause=uplink log line on hv1"
    racks_wait "uplink states" 5 all_hvs uplinks_are down active &&
        ok "show nnves: uplink e1 down, e2 active on both hypervisors" || fail "uplink states after the failover"
    read -r lost_b sent_b gap_b _ <<<"$(ping_stats "$R/ping.down" "$t0")"
    [ "$gap_b" -ge 0 ] && ok "pings came back after the links went down" || fail "pings did not come back"
    echo "link down: $lost_b of $sent_b replies lost; last reply before to first reply after: ${gap_b} ms"
    echo "TABLE|active-standby failover (pings, link down) (ms)|$gap_b|-|-"
    echo "TABLE|active-standby failover, link down: replies lost (ping every 20 ms)|$lost_b|-|-"
    echo "TABLE|active-standby, kill -9 and restart of the bonds' nNVE: replies lost (ping every 20 ms)|$lost_a|-|-"

    racks_finish hv1 hv2 sw1 sw2
fi

# ------------------------------------------------------------------------------ on the host ---
build=${SPLITNVE_BUILD:-$src/build}
. "$src/tests/uml/racks-host.bash"
racks_host_need_bonding
racks_host_run "$src" "$build" pair-standby "$here/test-pair-standby.sh" 768M 180 nnve1 nnve2 hv1 hv2
