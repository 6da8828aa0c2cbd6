#!/bin/bash
# test-pair-uml.sh: a ToR pair with dual-homed hypervisors, with real packets (RFC 8394 Req-3,
# Req-4; PROTOCOL.md section 17).
#
# Inside User-Mode Linux: two switch namespaces sw1 (allocator) and sw2 (follower), each
# running nnve-daemon with the `linux` backend, both in one [pair] domain rack1 (pair session
# over the underlay link, which also carries VXLAN between them).  Two hypervisors hv1, hv2,
# each with an active-backup bond0 over one link to each switch (e1 -> sw1, e2 -> sw2) as the
# uplink of its VLAN-aware bridge, a management link to each switch, its private libvirtd
# (test driver) and tnve-agent with two [nnve] sections, mode active-active.  VMs vm1 (hv1)
# and vm2 (hv2) of VN blue are namespaces behind vNIC ports.  Checks:
#   1. the VMs' TSIs are activated at both switches with one tag (show tsis, show pair),
#      vm1 pings vm2; vm2's ARP broadcast, flooded to sw2 through VXLAN, does not move its
#      FDB entry off swp2 on sw2 (the entries are sticky)
#   2. kill -9 of sw1's nnve-daemon under a continuous ping (lost replies reported; at most
#      the 3 in flight at the stop may be lost): sw2's kernel state (bridge VLANs, static FDB
#      entries, port flags, nftables) does not change, `bridge monitor` on sw2 sees no entry
#      removed or added
#   3. sw1's daemon restarts: the pair is up and synced again, the tags are unchanged, sw1's
#      kernel state is what it was before the kill, sw2's still has not changed
#   4. sw1's host links go down: both bonds fail over to sw2, pings continue (loss reported)
# Skips (77) when User-Mode Linux is missing.
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=${SPLITNVE_SRC:-$(cd "$here/../.." && pwd)}

# ---------------------------------------------------------------------------- inside UML ---
if [ "${1:-}" = "--inside" ]; then
    . "$src/tests/uml/racks-lib.bash"
    RACKS_HVS="hv1 hv2"
    RACKS_VMS="vm1:hv1:5000:blue vm2:hv2:5000:blue"
    fails=0
    step() { racks_log "== $*"; }
    ok() { echo "ok: $*"; }
    fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
    dump_logs() {
        local f
        for f in "$R"/sw?/nnve.log "$R"/hv?/agent.log; do
            [ -f "$f" ] && { echo "--- $f (tail)"; tail -n 25 "$f"; }
        done
    }
    die() {
        echo "FAIL: $*"
        dump_logs
        exit 1
    }
    trap 'racks_stop' EXIT

    # pair_topology: namespaces, links, bridges and bonds (see the head of this file).
    pair_topology() {
        sysctl -qw net.core.devconf_inherit_init_net=1 net.ipv6.conf.all.disable_ipv6=1 \
            net.ipv6.conf.default.disable_ipv6=1 || return 1
        modprobe -d /run/uml-modules bonding max_bonds=0 || return 1
        local b=$R/topo.batch s h n
        mkdir -p "$R" || return 1
        {
            for n in sw1 sw2 hv1 hv2 vm1 vm2; do echo "netns add $n"; done
            echo "link add u1 netns sw1 type veth peer name u2 netns sw2"
            for s in 1 2; do
                for h in 1 2; do
                    echo "link add swp$h netns sw$s type veth peer name e$s netns hv$h"
                    echo "link add m-hv$h netns sw$s type veth peer name m$s netns hv$h"
                done
            done
            echo "link add vnet1 netns hv1 type veth peer name eth0 netns vm1"
            echo "link add vnet2 netns hv2 type veth peer name eth0 netns vm2"
        } >"$b"
        ip -batch "$b" || return 1
        for s in 1 2; do
            {
                echo "link set lo up"
                echo "addr add 198.51.100.$s/24 dev u$s"
                echo "link set u$s up"
                echo "link add br0 type bridge vlan_filtering 1"
                echo "link add vxlan0 type vxlan dstport 4789 external"
                echo "link set vxlan0 master br0"
                echo "link set dev vxlan0 type bridge_slave vlan_tunnel on"
                echo "link add mgmt type bridge"
                echo "addr add $(mgmt_ip_of "sw$s")/28 dev mgmt"
                echo "link set mgmt up"
                for h in 1 2; do
                    echo "link set m-hv$h master mgmt"
                    echo "link set m-hv$h up"
                    echo "link set swp$h master br0"
                    echo "link set swp$h up"
                done
                echo "link set vxlan0 up"
                echo "link set br0 up"
            } >"$b"
            ip -n "sw$s" -batch "$b" || return 1
        done
        for h in 1 2; do
            {
                echo "link set lo up"
                echo "link add bond0 type bond mode active-backup miimon 100"
                echo "link set e1 master bond0"
                echo "link set e2 master bond0"
                echo "link add br0 type bridge vlan_filtering 1 vlan_default_pvid 0"
                echo "link set bond0 master br0"
                echo "link set bond0 up"
                echo "addr add 203.0.113.$((1 + h))/28 dev m1"
                echo "addr add 203.0.113.$((17 + h))/28 dev m2"
                echo "link set m1 up"
                echo "link set m2 up"
                echo "link set vnet$h master br0"
                echo "link set vnet$h up"
                echo "link set br0 up"
            } >"$b"
            ip -n "hv$h" -batch "$b" || return 1
        done
        for n in vm1 vm2; do
            {
                echo "link set lo up"
                echo "link set eth0 address $(vm_mac "$n")"
                echo "addr add $(vm_ip "$n")/24 dev eth0"
                echo "link set eth0 up"
            } >"$b"
            ip -n "$n" -batch "$b" || return 1
        done
    }

    # pair_confs: both switches' and both agents' configurations.
    pair_confs() {
        local s h
        for s in 1 2; do
            mkdir -p "$R/sw$s/state"
            cat >"$R/sw$s/nnve.conf" <<CONF
[global]
listen = $(mgmt_ip_of "sw$s"):8394
cert = $RP/nnve$s.crt
key = $RP/nnve$s.key
ca = $RP/ca.crt
node_id = nnve$s
state_dir = $R/sw$s/state
control_socket = $R/sw$s/ctl
backend = linux
sync = normal
hold_time = 30s
keepalive = 1s
log_level = info

[linux]
bridge = br0
vxlan_mode = external
vxlan_device = vxlan0
remote_vteps = 198.51.100.$((3 - s))
anti_spoofing = on

[domain rack1]
ports = swp1, swp2
tags = 100-199

[vn blue]
id = 5000

[hypervisor hv1]
port = swp1
vns = blue

[hypervisor hv2]
port = swp2
vns = blue

[pair]
domain = rack1
role = $([ "$s" = 1 ] && echo allocator || echo follower)
peer_identity = nnve$((3 - s))
retry = 200ms
$([ "$s" = 1 ] && echo "listen = 198.51.100.1:8395" || echo "peer = 198.51.100.1:8395")
CONF
        done
        for h in 1 2; do
            mkdir -p "$R/hv$h/state"
            cat >"$R/hv$h/agent.conf" <<CONF
libvirt_uri = $(racks_uri "hv$h")
cert = $RP/hv$h.crt
key = $RP/hv$h.key
ca = $RP/ca.crt
node_id = hv$h
uplink = bond0
dataplane = linux
bridge = br0
state_dir = $R/hv$h/state
control_socket = $R/hv$h/ctl
retry_min = 100ms
retry_max = 1s
keepalive = 1s
libvirt_keepalive = 2s
address_poll_interval = 1s
address_sources = lease
connect_timeout = 3s
mode = active-active

[nnve sw1]
nnve_address = 203.0.113.1
nnve_port = 8394
nnve_identity = nnve1

[nnve sw2]
nnve_address = 203.0.113.17
nnve_port = 8394
nnve_identity = nnve2
CONF
        done
    }

    pair_up() { # SW: the pair session is up and synced
        [ "$(nnvectl_sw "$1" --json show pair 2>/dev/null | jq -r '"\(.state) \(.synced)"')" = "up true" ]
    }
    activated_at() { # SW VM...
        local sw=$1 vm
        shift
        for vm in "$@"; do
            [ "$(tsi_state "$sw" "$vm" | cut -d' ' -f1)" = activated ] || return 1
        done
    }
    agent_ready() { # HV: both sessions up and in sync
        tnvectl_hv "$1" --json show session 2>/dev/null |
            jq -e '(.nnves | length == 2) and all(.nnves[]; .state == "up" and .sync == "ready")' >/dev/null
    }
    # kstate SW: the switch's kernel state that the daemon owns (learned FDB entries come
    # and go with the traffic and are left out).
    kstate() {
        bridge -n "$1" vlan show
        bridge -n "$1" fdb show | grep -E ' (static|permanent)' | sort
        bridge -n "$1" -d link show | sed -E 's/ state [a-z]+//'
        ip netns exec "$1" nft list ruleset
    }
    # monitor_changes FILE: the daemon-made events of a `bridge monitor vlan fdb` output.
    monitor_changes() {
        { grep -v -E '^$|^(Deleted )?([0-9a-f]{2}:){5}[0-9a-f]{2} dev |^ +state forwarding' "$1"
          grep -E '^(Deleted )?([0-9a-f]{2}:){5}[0-9a-f]{2} dev .*(static|permanent)' "$1"; } |
            grep -v -E '02:00:00:00:00:aa|3999'
    }
    # ping_window start NAME: a continuous ping vm1 -> vm2 (every 50 ms, at most 90 s).
    # ping_window stop NAME WHAT [MAXLOST]: stops it and reports the lost replies; fails when
    # fewer than 20 were sent, none answered, or more than MAXLOST (when given) were lost
    # (the few in flight at the stop count as lost).
    ping_window() {
        if [ "$1" = start ]; then
            ip netns exec vm1 ping -n -i 0.05 -w 90 "$(vm_ip vm2)" >"$R/ping.$2" 2>&1 &
            PINGER=$!
            return 0
        fi
        local sent got
        kill -INT "$PINGER" 2>/dev/null
        wait "$PINGER" 2>/dev/null
        read -r sent got <<<"$(awk '/packets transmitted/ { print $1, $4 }' "$R/ping.$2")"
        if [ -n "${sent:-}" ] && [ "$sent" -ge 20 ] && [ "${got:-0}" -gt 0 ] &&
            [ $((sent - got)) -le "${4:-$sent}" ]; then
            ok "continuous ping across $3: $((sent - got)) of $sent lost"
        else
            fail "continuous ping across $3: ${got:-?} of ${sent:-?} answered"
            tail -n 3 "$R/ping.$2"
        fi
    }

    step "topology, the switch pair, hypervisors, VMs"
    pair_topology || die "topology"
    pair_confs
    racks_start_switch sw1 || die "sw1"
    racks_start_switch sw2 || die "sw2"
    racks_wait "pair session up" 30 pair_up sw2 || die "the pair session did not come up"
    for hv in hv1 hv2; do racks_start_libvirtd "$hv" || die "libvirtd $hv"; done
    for hv in hv1 hv2; do racks_start_agent "$hv" || die "agent $hv"; done
    racks_wait "hv1 sessions" 30 agent_ready hv1 || die "hv1 has not both sessions"
    racks_wait "hv2 sessions" 30 agent_ready hv2 || die "hv2 has not both sessions"
    vm_xml vm1 >"$R/vm1.xml"
    vm_xml vm2 >"$R/vm2.xml"
    racks_virsh hv1 "define $R/vm1.xml; start vm1" >/dev/null || die "virsh vm1"
    racks_virsh hv2 "define $R/vm2.xml; start vm2" >/dev/null || die "virsh vm2"

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
        a=$(ip netns exec "$hv" cat /proc/net/bonding/bond0 | awk '/Currently Active Slave/ { print $4 }')
        [ "$a" = e1 ] || fail "$hv bond0 active slave is '$a', not e1 (sw1)"
    done
    vm_ping vm1 "$(vm_ip vm2)" 5 && ok "vm1 (hv1) -> vm2 (hv2) through sw1" || fail "vm1 cannot reach vm2"
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
    kstate sw1 >"$R/k.sw1.before"
    kstate sw2 >"$R/k.sw2.before"
    bridge -n sw2 monitor vlan fdb >"$R/mon.sw2" 2>&1 &
    mon2=$!
    bridge -n sw1 monitor vlan fdb >"$R/mon.sw1" 2>&1 &
    mon1=$!
    ping_window start kill
    sleep 1
    racks_kill sw1 KILL
    sleep 3
    kstate sw2 >"$R/k.sw2.killed"
    diff "$R/k.sw2.before" "$R/k.sw2.killed" >"$R/k.diff" && ok "sw2 kernel state unchanged 3 s after the kill" ||
        { sed 's/^/   diff| /' "$R/k.diff" | head -n 20; fail "sw2 kernel state changed after sw1's kill"; }
    ping_window stop kill "the kill" 3
    vm_ping vm1 "$(vm_ip vm2)" 3 && ok "vm1 -> vm2 while sw1's daemon is down" || fail "no ping while sw1's daemon is down"

    step "3. sw1's daemon restarts: the pair converges, nothing moves"
    ping_window start restart
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
        kstate "$sw" >"$R/k.$sw.after"
        diff "$R/k.$sw.before" "$R/k.$sw.after" >"$R/k.diff" && ok "$sw kernel state after the restart = before the kill" ||
            { sed 's/^/   diff| /' "$R/k.diff" | head -n 20; fail "$sw kernel state differs after the restart"; }
    done
    grep -F "nnve-daemon[${RACKS_PID[sw1]}]" "$R/sw1/nnve.log" | grep -E "linux: .*(added|removed|mapped|locked|created|deleted)" &&
        fail "the restarted daemon changed the dataplane" || ok "the restarted daemon logged no dataplane change"

    step "4. sw1's host links go down: the bonds fail over to sw2"
    ping_window start failover
    sleep 1
    ip -n sw1 link set swp1 down && ip -n sw1 link set swp2 down || fail "links down"
    failed_over() { ip netns exec "$1" cat /proc/net/bonding/bond0 | grep -q "Currently Active Slave: e2"; }
    racks_wait "hv1 on e2" 10 failed_over hv1 || fail "hv1's bond did not fail over"
    racks_wait "hv2 on e2" 10 failed_over hv2 || fail "hv2's bond did not fail over"
    sleep 3
    ping_window stop failover "the failover"
    vm_ping vm1 "$(vm_ip vm2)" 3 && ok "vm1 -> vm2 through sw2" || fail "no ping through sw2"

    step "daemons stop cleanly"
    for n in hv1 hv2 sw1 sw2; do
        racks_kill "$n"
        st=$?
        [ "$st" = 0 ] || fail "$n exit $st after SIGTERM"
    done
    if [ "$fails" -ne 0 ]; then
        dump_logs
        echo "inside UML: $fails check(s) failed"
        exit 1
    fi
    echo "inside UML: all checks passed"
    exit 0
fi

# ------------------------------------------------------------------------------ on the host ---
build=${SPLITNVE_BUILD:-$src/build}
command -v linux.uml >/dev/null || { echo "SKIP: linux.uml missing (apt-get install user-mode-linux)"; exit 77; }
[ -f "/usr/lib/uml/modules/$(ls /usr/lib/uml/modules 2>/dev/null | head -n 1)/kernel/drivers/net/bonding/bonding.ko" ] ||
    { echo "SKIP: no bonding.ko in /usr/lib/uml/modules"; exit 77; }
. "$src/tests/uml/racks-host.bash"
racks_host_run "$src" "$build" pair-uml "$here/test-pair-uml.sh" 768M 240 nnve1 nnve2 hv1 hv2
