# pair-lib.bash: a ToR pair with dual-homed hypervisors inside User-Mode Linux (sourced after
# racks-lib.bash, never on a host).
#
#   switches sw1 (allocator) and sw2 (follower): nnve-daemon, `linux` backend, one [pair]
#           domain rack1 (ports swp1 -> hv1, swp2 -> hv2, tags 100-199: sw1's half 100-149,
#           sw2's 150-199); the pair session runs from sw2 to 198.51.100.1:8395
#   underlay: bridge ul in namespace ul, sw1 u1 198.51.100.1, sw2 u2 198.51.100.2 and the
#           remote VTEP rem u3 198.51.100.3 (VXLAN and the pair session both cross it)
#   hypervisors hv1, hv2: active-backup bond0 over e1 (-> sw1) and e2 (-> sw2) as the uplink
#           of the VLAN-aware br0, management links m1 (-> sw1) and m2 (-> sw2), a private
#           libvirtd, tnve-agent with two [nnve] sections: `mode = PAIR_MODE` (default
#           active-active) and, when PAIR_UPLINKS names two links ("e1 e2"), `uplink = e1`
#           in [nnve sw1] and `uplink = e2` in [nnve sw2] (VNs follow the bond's active link)
#   rem:    a plain VXLAN peer outside the rack: vxlan device vx0 (VNI 5000, flood entries
#           toward both switches, learning) with REM_IP/REM_MAC, i.e. a host of VN blue
#           behind another VTEP; both switches list it in remote_vteps
#   VMs:    RACKS_VMS (vmK:hvN:vn_id:vn_name), namespaces behind vnetK on their hypervisor;
#           PAIR_VNS lists every VN the switches know ("name:id ...")
#
# Used by tests/integration/test-pair-uml.sh, test-pair-partition.sh, test-pair-standby.sh,
# bench/pair-uml.sh and bench/pair-standby.sh.

RACKS_HVS="hv1 hv2"
RACKS_VMS=${PAIR_VMS:-"vm1:hv1:5000:blue vm2:hv2:5000:blue"}
PAIR_VNS=${PAIR_VNS:-"blue:5000"}
PAIR_MODE=${PAIR_MODE:-active-active}
PAIR_UPLINKS=${PAIR_UPLINKS:-}
REM_IP=192.168.0.250
REM_MAC=52:54:00:00:00:fa

# pair_topology: namespaces, links, bridges and bonds (see the head of this file).
pair_topology() {
    sysctl -qw net.core.devconf_inherit_init_net=1 net.ipv6.conf.all.disable_ipv6=1 \
        net.ipv6.conf.default.disable_ipv6=1 || return 1
    modprobe -d /run/uml-modules bonding max_bonds=0 || return 1
    local b=$R/topo.batch s h n
    mkdir -p "$R" || return 1
    {
        for n in sw1 sw2 hv1 hv2 ul rem; do echo "netns add $n"; done
        for s in 1 2 3; do
            echo "link add u$s netns $([ "$s" = 3 ] && echo rem || echo "sw$s") type veth peer name ul$s netns ul"
        done
        for s in 1 2; do
            for h in 1 2; do
                echo "link add swp$h netns sw$s type veth peer name e$s netns hv$h"
                echo "link add m-hv$h netns sw$s type veth peer name m$s netns hv$h"
            done
        done
        racks_vm_links
    } >"$b"
    ip -batch "$b" || return 1
    {
        echo "link add ul type bridge"
        for s in 1 2 3; do echo "link set ul$s master ul"; echo "link set ul$s up"; done
        echo "link set ul up"
    } >"$b"
    ip -n ul -batch "$b" || return 1
    for s in 1 2; do
        racks_switch_batch "sw$s" "m-hv1 m-hv2" "swp1 swp2" >"$b"
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
            racks_hv_vnets "hv$h"
            echo "link set br0 up"
        } >"$b"
        ip -n "hv$h" -batch "$b" || return 1
    done
    {
        echo "link set lo up"
        echo "addr add 198.51.100.3/24 dev u3"
        echo "link set u3 up"
        echo "link add vx0 type vxlan id 5000 local 198.51.100.3 dstport 4789"
        echo "link set vx0 address $REM_MAC"
        echo "addr add $REM_IP/24 dev vx0"
        echo "link set vx0 up"
    } >"$b"
    ip -n rem -batch "$b" || return 1
    bridge -n rem fdb append 00:00:00:00:00:00 dev vx0 dst 198.51.100.1 &&
        bridge -n rem fdb append 00:00:00:00:00:00 dev vx0 dst 198.51.100.2 || return 1
    racks_vms_up
}

# pair_confs: both switches' and both agents' configurations (PAIR_MODE, PAIR_UPLINKS).
pair_confs() {
    local s h e vns="" up
    read -r -a up <<<"$PAIR_UPLINKS"
    for e in $PAIR_VNS; do vns+="${vns:+, }${e%%:*}"; done
    for s in 1 2; do
        mkdir -p "$R/sw$s/state"
        {
            racks_switch_conf_head "sw$s" "198.51.100.$((3 - s)), 198.51.100.3"
            printf '[domain rack1]\nports = swp1, swp2\ntags = 100-199\n'
            for e in $PAIR_VNS; do printf '\n[vn %s]\nid = %s\n' "${e%%:*}" "${e#*:}"; done
            for h in 1 2; do printf '\n[hypervisor hv%s]\nport = swp%s\nvns = %s\n' "$h" "$h" "$vns"; done
            printf '\n[pair]\ndomain = rack1\nrole = %s\npeer_identity = nnve%s\nretry = 200ms\n' \
                "$([ "$s" = 1 ] && echo allocator || echo follower)" "$((3 - s))"
            [ "$s" = 1 ] && echo "listen = 198.51.100.1:8395" || echo "peer = 198.51.100.1:8395"
        } >"$R/sw$s/nnve.conf"
    done
    for h in 1 2; do
        mkdir -p "$R/hv$h/state"
        {
            racks_agent_conf_head "hv$h" bond0
            printf 'connect_timeout = 3s\nmode = %s\n' "$PAIR_MODE"
            for s in 1 2; do
                printf '\n[nnve sw%s]\nnnve_address = %s\nnnve_port = 8394\nnnve_identity = nnve%s\n' \
                    "$s" "$(mgmt_ip_of "sw$s")" "$s"
                if [ -n "${up[s - 1]:-}" ]; then printf 'uplink = %s\n' "${up[s - 1]}"; fi
            done
        } >"$R/hv$h/agent.conf"
    done
}

# pair_start: topology, switches (pair session up), libvirtds and agents (both sessions up).
# 0, or 1 with the reason printed.
pair_start() {
    local n
    pair_topology || { echo "topology set-up failed"; return 1; }
    pair_confs
    racks_start_switch sw1 && racks_start_switch sw2 || return 1
    racks_wait "pair session up" 30 pair_up sw2 || return 1
    for n in hv1 hv2; do racks_start_libvirtd "$n" || return 1; done
    for n in hv1 hv2; do racks_start_agent "$n" || return 1; done
    for n in hv1 hv2; do racks_wait "$n sessions" 30 agent_ready "$n" || return 1; done
}

# pair_vms_start VM...: defines and starts each VM on its hypervisor.  0, or 1 with the
# reason printed.
pair_vms_start() {
    local vm hv
    for vm in "$@"; do
        hv=$(vm_field "$vm" 2)
        vm_xml "$vm" >"$R/$vm.xml"
        racks_virsh "$hv" "define $R/$vm.xml; start $vm" >/dev/null || { echo "virsh $vm"; return 1; }
    done
}

pair_up() { # SW: the pair session is up and synced
    [ "$(nnvectl_sw "$1" --json show pair 2>/dev/null | jq -r '"\(.state) \(.synced)"')" = "up true" ]
}
pair_down() { # SW: the switch has no pair session
    [ "$(nnvectl_sw "$1" --json show pair 2>/dev/null | jq -r .state)" != up ]
}
# tsis_in SW STATE VM...: each VM's TSI is in STATE at the switch ("absent": none).
tsis_in() {
    local sw=$1 want=$2 vm
    shift 2
    for vm in "$@"; do
        [ "$(tsi_state "$sw" "$vm" | cut -d' ' -f1)" = "$want" ] || return 1
    done
}
activated_at() { # SW VM...
    local sw=$1
    shift
    tsis_in "$sw" activated "$@"
}
agent_ready() { # HV: both sessions up and in sync
    tnvectl_hv "$1" --json show session 2>/dev/null |
        jq -e '(.nnves | length == 2) and all(.nnves[]; .state == "up" and .sync == "ready")' >/dev/null
}
# active_slave HV: the bond's active slave (e1: toward sw1, e2: toward sw2, or "None").
active_slave() {
    ip netns exec "$1" cat /proc/net/bonding/bond0 | awk '/Currently Active Slave/ { print $4 }'
}
# both_slaves_up HV: both slaves of HV's bond have their link (after a link came back).
both_slaves_up() {
    [ "$(ip netns exec "$1" cat /proc/net/bonding/bond0 | grep -c 'MII Status: up')" = 3 ]
}
# monitor_changes FILE: the daemon-made events of a `bridge monitor vlan fdb` output (learned
# entries come and go with the traffic; the tests' control changes, MAC 02:00:00:00:00:aa,
# are left out too).
monitor_changes() {
    { grep -v -E '^$|^(Deleted )?([0-9a-f]{2}:){5}[0-9a-f]{2} dev |^ +state forwarding' "$1"
      grep -E '^(Deleted )?([0-9a-f]{2}:){5}[0-9a-f]{2} dev .*(static|permanent)' "$1"; } |
        grep -v -E '02:00:00:00:00:aa'
}
# pair_kstate SW: the switch's kernel state that its daemon owns (learned FDB entries come
# and go with the traffic and are left out).
pair_kstate() {
    bridge -n "$1" vlan show
    bridge -n "$1" fdb show | grep -E ' (static|permanent)' | sort
    bridge -n "$1" -d link show | sed -E 's/ state [a-z]+//'
    ip netns exec "$1" nft list ruleset
}
# ping_stats FILE T0: of a `ping -D` output, "LOST SENT GAP_MS MAXGAP_MS": replies lost, echo
# requests sent, the longest time between two consecutive replies of which the second came
# after T0 (seconds since the epoch, as ping -D prints them; for a failure at T0: from the
# last reply before it to the first reply after it; -1 when no reply came after T0), and the
# longest time between two consecutive replies over the whole run.
ping_stats() {
    awk -v t0="$2" '
        /bytes from/ {
            t = substr($1, 2, length($1) - 2) + 0
            if (prev && t - prev > maxgap) maxgap = t - prev
            if (prev && t > t0 && t - prev > gap) gap = t - prev
            if (t > t0) after = 1
            prev = t
        }
        /packets transmitted/ { sent = $1; got = $4 }
        END {
            printf "%d %d %d %d\n", sent - got, sent, after ? int(gap * 1000 + 0.5) : -1,
                int(maxgap * 1000 + 0.5)
        }' "$1"
}
# replied_after FILE T0: a `ping -D` output holds a reply stamped after T0.
replied_after() {
    awk -v t0="$2" '/bytes from/ { if (substr($1, 2, length($1) - 2) + 0 > t0) f = 1 } END { exit !f }' "$1"
}
