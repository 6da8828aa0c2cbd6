# racks-lib.bash: the two-rack splitnve topology inside User-Mode Linux (sourced, not run).
#
# Used by tests/integration/test-racks.sh, bench/racks.sh and scripts/demo.sh (DATAPLANE=uml),
# always inside UML (tests/uml/uml-run.sh): it creates network namespaces and starts real
# daemons, so it must never run on a host directly.
#
#   rack 1: switch sw1 (nnve-daemon, `linux` backend, bridge br0, VXLAN vxlan0)
#           port swp1 <- plain access bridge (namespace acc1) <- hypervisors hv1a and hv1b
#   rack 2: switch sw2; port swp1 <- hv2a, port swp2 <- hv2b
#   underlay: sw1 u1 198.51.100.1/24 <-> sw2 u2 198.51.100.2/24 (VXLAN, UDP 4789)
#   management (SNCP over TLS): bridge mgmt in each switch namespace, 203.0.113.1/28 (sw1)
#           and 203.0.113.17/28 (sw2), one veth per hypervisor (m0)
#   layer-3 interfaces br0.100, br0.101 (sw1) and br0.200, br0.201 (sw2): the first tags of
#           each rack's pool (100-199, 200-299), where the backend adds neighbour entries
#
# Each hypervisor namespace has a VLAN-aware bridge br0 (vlan_default_pvid 0: a new vNIC port
# carries no VLAN until the agent gives it its tag) with the uplink up0, its own private
# libvirtd (test driver) and tnve-agent with dataplane = linux.  A VM is a namespace whose
# eth0 is the peer of the vNIC port vnetN on its hypervisor's bridge; the domain XML names
# vnetN as its interface's target and carries the VN in the splitnve metadata.
#
# The libvirt test driver reports 192.168.0.K for a domain's K-th interface, and the agent
# sends those addresses to the nNVE; so VM vmK has K-1 interfaces without a VN ahead of its
# vNIC and uses 192.168.0.K, which makes the associated addresses the real ones.
#
# Needs: RACKS_BIN (directory with nnve-daemon, nnvectl, tnve-agent, tnvectl), RACKS_PKI
# (ca.crt and NAME.crt/.key for nnve1 nnve2 hv1a hv1b hv2a hv2b, from scripts/gen-pki.sh).

R=${RACKS_DIR:-/run/racks}
RB=${RACKS_BIN:?RACKS_BIN not set}
RP=${RACKS_PKI:?RACKS_PKI not set}
RACKS_HVS="hv1a hv1b hv2a hv2b"
# VMs: name hypervisor vn_id vn_name
RACKS_VMS="vm1:hv1a:5000:blue vm2:hv1b:5000:blue vm3:hv1b:5001:red vm4:hv2a:5000:blue vm5:hv2b:5001:red"
declare -A RACKS_PID=()

racks_log() { echo "[$(date +%T.%3N)] $*"; }

# rack_of NODE: 1 or 2.  switch_of HV: sw1 or sw2.  mgmt_ip_of SWITCH.
rack_of() { case $1 in *1*) echo 1 ;; *) echo 2 ;; esac; }
switch_of() { echo "sw$(rack_of "$1")"; }
mgmt_ip_of() { [ "$1" = sw1 ] && echo 203.0.113.1 || echo 203.0.113.17; }
# vm_field VM N: field N (2 hypervisor, 3 vn_id, 4 vn_name) of the VM's entry.
vm_field() {
    local e
    for e in $RACKS_VMS; do
        [ "${e%%:*}" = "$1" ] && { echo "$e" | cut -d: -f"$2"; return 0; }
    done
    return 1
}
vm_num() { echo "${1#vm}"; }
vm_mac() { printf '52:54:00:00:00:%02x' "$(vm_num "$1")"; }
vm_ip() { echo "192.168.0.$(vm_num "$1")"; }
vm_uuid() { printf '00000000-0000-4000-8000-%012x' "$(vm_num "$1")"; }

# racks_topology: every namespace, link and bridge, in one ip batch per namespace.
racks_topology() {
    # new namespaces inherit disable_ipv6: no autoconfiguration chatter in the monitors
    sysctl -qw net.core.devconf_inherit_init_net=1 net.ipv6.conf.all.disable_ipv6=1 \
        net.ipv6.conf.default.disable_ipv6=1 || return 1
    local b=$R/topo.batch hv n mports ports
    mkdir -p "$R" || return 1
    {
        for n in sw1 sw2 acc1 $RACKS_HVS; do echo "netns add $n"; done
        echo "link add u1 netns sw1 type veth peer name u2 netns sw2"
        echo "link add swp1 netns sw1 type veth peer name a0 netns acc1"
        echo "link add up0 netns hv1a type veth peer name a1 netns acc1"
        echo "link add up0 netns hv1b type veth peer name a2 netns acc1"
        echo "link add swp1 netns sw2 type veth peer name up0 netns hv2a"
        echo "link add swp2 netns sw2 type veth peer name up0 netns hv2b"
        for hv in $RACKS_HVS; do
            echo "link add m0 netns $hv type veth peer name m-$hv netns $(switch_of "$hv")"
        done
        racks_vm_links
    } >"$b"
    ip -batch "$b" || return 1
    local s
    for s in 1 2; do
        mports="" ports=swp1
        for hv in $RACKS_HVS; do
            [ "$(switch_of "$hv")" = "sw$s" ] && mports+=" m-$hv"
        done
        [ "$s" = 2 ] && ports="swp1 swp2"
        {
            racks_switch_batch "sw$s" "$mports" "$ports"
            # layer-3 interfaces (no address) of the rack's first two tags: the backend
            # installs neighbour entries of Activated TSIs there, for an EVPN speaker
            for n in 0 1; do
                echo "link add link br0 name br0.$((s * 100 + n)) type vlan id $((s * 100 + n))"
                echo "link set br0.$((s * 100 + n)) up"
            done
        } >"$b"
        ip -n "sw$s" -batch "$b" || return 1
    done
    {
        echo "link add acc type bridge"
        for n in a0 a1 a2; do echo "link set $n master acc"; echo "link set $n up"; done
        echo "link set acc up"
    } >"$b"
    ip -n acc1 -batch "$b" || return 1
    local i=2
    for hv in $RACKS_HVS; do
        s=$(rack_of "$hv")
        {
            echo "link set lo up"
            echo "link add br0 type bridge vlan_filtering 1 vlan_default_pvid 0"
            echo "link set up0 master br0"
            echo "link set up0 up"
            echo "addr add 203.0.113.$(( (s - 1) * 16 + i ))/28 dev m0"
            echo "link set m0 up"
            racks_hv_vnets "$hv"
            echo "link set br0 up"
        } >"$b"
        ip -n "$hv" -batch "$b" || return 1
        i=$((i + 1))
    done
    racks_vms_up
}

# racks_switch_batch SWITCH MGMT_PORTS BRIDGE_PORTS: the ip batch that sets up a switch
# namespace whose links exist: underlay address on uN, the VLAN-aware br0 with the external
# vxlan0 (vlan_tunnel) and BRIDGE_PORTS, the management bridge with MGMT_PORTS.
racks_switch_batch() {
    local s=${1#sw} n
    echo "link set lo up"
    echo "addr add 198.51.100.$s/24 dev u$s"
    echo "link set u$s up"
    echo "link add br0 type bridge vlan_filtering 1"
    echo "link add vxlan0 type vxlan dstport 4789 external"
    echo "link set vxlan0 master br0"
    echo "link set dev vxlan0 type bridge_slave vlan_tunnel on"
    echo "link add mgmt type bridge"
    echo "addr add $(mgmt_ip_of "$1")/28 dev mgmt"
    echo "link set mgmt up"
    for n in $2; do
        echo "link set $n master mgmt"
        echo "link set $n up"
    done
    for n in $3; do
        echo "link set $n master br0"
        echo "link set $n up"
    done
    echo "link set vxlan0 up"
    echo "link set br0 up"
}

# racks_vm_links: the ip batch lines (in the initial namespace) that create every VM's
# namespace and its veth pair vnetK (in its hypervisor) - eth0 (in the VM).
racks_vm_links() {
    local e vm
    for e in $RACKS_VMS; do
        vm=${e%%:*}
        echo "netns add $vm"
        echo "link add vnet$(vm_num "$vm") netns $(vm_field "$vm" 2) type veth peer name eth0 netns $vm"
    done
}

# racks_hv_vnets HV: the ip batch lines (in HV) that put HV's vNIC ports on its br0.
racks_hv_vnets() {
    local e vm
    for e in $RACKS_VMS; do
        vm=${e%%:*}
        [ "$(vm_field "$vm" 2)" = "$1" ] || continue
        echo "link set vnet$(vm_num "$vm") master br0"
        echo "link set vnet$(vm_num "$vm") up"
    done
}

# racks_vms_up: every VM namespace of RACKS_VMS (its eth0 exists) gets its MAC and address.
racks_vms_up() {
    local e vm b=$R/topo.batch
    for e in $RACKS_VMS; do
        vm=${e%%:*}
        {
            echo "link set lo up"
            echo "link set eth0 address $(vm_mac "$vm")"
            echo "addr add $(vm_ip "$vm")/24 dev eth0"
            echo "link set eth0 up"
        } >"$b"
        ip -n "$vm" -batch "$b" || return 1
    done
}

# racks_wait DESCRIPTION SECONDS CMD...: polls CMD every 50 ms until it succeeds; 1 on
# timeout (with the description on stdout).
racks_wait() {
    local what=$1 secs=$2 deadline
    shift 2
    deadline=$(($(date +%s%N) / 1000000 + secs * 1000))
    while ! "$@" >/dev/null 2>&1; do
        if [ $(($(date +%s%N) / 1000000)) -ge $deadline ]; then
            echo "timed out after ${secs}s waiting for: $what"
            return 1
        fi
        sleep 0.05
    done
}

# racks_switch_conf_head SWITCH REMOTE_VTEPS: the [global] and [linux] sections of the
# switch's nnve-daemon configuration.
racks_switch_conf_head() {
    local sw=$1 s=${1#sw}
    cat <<CONF
[global]
listen = $(mgmt_ip_of "$sw"):8394
cert = $RP/nnve$s.crt
key = $RP/nnve$s.key
ca = $RP/ca.crt
node_id = nnve$s
state_dir = $R/$sw/state
control_socket = $R/$sw/ctl
backend = linux
sync = normal
hold_time = 30s
keepalive = 1s
log_level = info

[linux]
bridge = br0
vxlan_mode = external
vxlan_device = vxlan0
remote_vteps = $2
anti_spoofing = on

CONF
}

# racks_write_switch_conf SWITCH: nnve-daemon's configuration for sw1 or sw2.
racks_write_switch_conf() {
    local sw=$1 s=${1#sw} hv
    mkdir -p "$R/$sw/state"
    {
        racks_switch_conf_head "$sw" "198.51.100.$((3 - s))"
        cat <<CONF
[domain rack$s]
ports = swp1, swp2
tags = $((s * 100))-$((s * 100 + 99))

[vn blue]
id = 5000
[vn red]
id = 5001
CONF
        for hv in $RACKS_HVS; do
            [ "$(switch_of "$hv")" = "$sw" ] || continue
            printf '\n[hypervisor %s]\nport = %s\nvns = blue, red\n' "$hv" \
                "$(case $hv in hv2b) echo swp2 ;; *) echo swp1 ;; esac)"
        done
    } >"$R/$sw/nnve.conf"
}

# racks_start_switch SWITCH: starts nnve-daemon in the switch namespace; waits for its
# control socket.
racks_start_switch() {
    local sw=$1
    [ -f "$R/$sw/nnve.conf" ] || racks_write_switch_conf "$sw"
    rm -f "$R/$sw/ctl"
    ip netns exec "$sw" "$RB/nnve-daemon" -c "$R/$sw/nnve.conf" >>"$R/$sw/nnve.log" 2>&1 &
    RACKS_PID[$sw]=$!
    racks_wait "nnve-daemon control socket in $sw" 15 test -S "$R/$sw/ctl"
}

# racks_start_libvirtd HV: the hypervisor's private libvirtd (test driver) and a client that
# keeps its domains while the agent restarts.
racks_start_libvirtd() {
    local hv=$1 d=$R/$1
    mkdir -p "$d/run" "$d/nodrivers"
    cat >"$d/libvirtd.conf" <<CONF
unix_sock_dir="$d/run"
unix_sock_rw_perms="0770"
auth_unix_rw="none"
auth_unix_ro="none"
log_outputs="3:file:$d/libvirtd.log"
CONF
    LIBVIRT_DRIVER_DIR=$d/nodrivers ip netns exec "$hv" /usr/sbin/libvirtd --daemon \
        --config "$d/libvirtd.conf" --pid-file "$d/libvirtd.pid" || return 1
    racks_wait "libvirtd of $hv" 15 test -S "$d/run/libvirt-sock" || return 1
    racks_wait "libvirtd pid of $hv" 5 test -s "$d/libvirtd.pid" || return 1
    RACKS_PID[lv-$hv]=$(cat "$d/libvirtd.pid")
    virsh -q -c "$(racks_uri "$hv")" event --all --loop >/dev/null 2>&1 &
    RACKS_PID[keep-$hv]=$!
}

racks_uri() { echo "test+unix:///default?socket=$R/$1/run/libvirt-sock"; }

# racks_agent_conf_head HV UPLINK: the settings of HV's tnve-agent configuration other
# than its nNVEs (dataplane linux on br0 with UPLINK).
racks_agent_conf_head() {
    cat <<CONF
libvirt_uri = $(racks_uri "$1")
cert = $RP/$1.crt
key = $RP/$1.key
ca = $RP/ca.crt
node_id = $1
uplink = $2
dataplane = linux
bridge = br0
state_dir = $R/$1/state
control_socket = $R/$1/ctl
retry_min = 100ms
retry_max = 1s
keepalive = 1s
libvirt_keepalive = 2s
address_poll_interval = 1s
address_sources = lease
CONF
}

# racks_start_agent HV: tnve-agent in the hypervisor namespace (dataplane linux on br0/up0).
racks_start_agent() {
    local hv=$1 d=$R/$1 sw
    sw=$(switch_of "$hv")
    mkdir -p "$d/state"
    [ -f "$d/agent.conf" ] || {
        racks_agent_conf_head "$hv" up0
        printf 'nnve_address = %s\nnnve_port = 8394\nnnve_identity = nnve%s\n' \
            "$(mgmt_ip_of "$sw")" "${sw#sw}"
    } >"$d/agent.conf"
    rm -f "$d/ctl"
    ip netns exec "$hv" "$RB/tnve-agent" -c "$d/agent.conf" >>"$d/agent.log" 2>&1 &
    RACKS_PID[$hv]=$!
    racks_wait "tnve-agent control socket in $hv" 15 test -S "$d/ctl"
}

# racks_start: the topology and every daemon.  0, or 1 with the reason printed.
racks_start() {
    racks_topology || { echo "topology set-up failed"; return 1; }
    racks_log "topology ready"
    local sw hv
    for sw in sw1 sw2; do racks_start_switch "$sw" || return 1; done
    racks_log "switches ready"
    for hv in $RACKS_HVS; do
        racks_start_libvirtd "$hv" || return 1
        racks_start_agent "$hv" || return 1
    done
}

# racks_kill NAME [SIGNAL]: signals a process started here (default TERM) and waits for it
# (bounded); returns its exit status, 99 if it had to be killed.
racks_kill() {
    local name=$1 sig=${2:-TERM} pid=${RACKS_PID[$1]:-} i
    [ -n "$pid" ] || return 0
    unset "RACKS_PID[$name]"
    # a job killed by SIGKILL would be reported by bash ("Killed"): not for an intended kill
    [ "$sig" = KILL ] && disown "$pid" 2>/dev/null
    kill "-$sig" "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        disown "$pid" 2>/dev/null
        kill -KILL "$pid" 2>/dev/null
        return 99
    fi
    [ "$sig" = KILL ] && return 0
    wait "$pid" 2>/dev/null
}

# racks_stop: stops every daemon (agents first, then libvirtds, then switches).
racks_stop() {
    local n
    for n in $RACKS_HVS; do racks_kill "$n"; done
    for n in "${!RACKS_PID[@]}"; do
        case $n in keep-*) racks_kill "$n" KILL ;; esac
    done
    for n in "${!RACKS_PID[@]}"; do
        case $n in lv-*) racks_kill "$n" ;; esac
    done
    for n in sw1 sw2; do racks_kill "$n"; done
}

# racks_test_init LINES LOG...: the checks of a test inside UML: `fails` (their count), step,
# ok, fail, die (fail, logs, exit 1) and dump_logs (the last LINES lines of each LOG that
# exists; a LOG may be a quoted glob, expanded when the logs are dumped).
racks_test_init() {
    fails=0
    RACKS_TEST_LOG_LINES=$1
    shift
    RACKS_TEST_LOGS="$*"
    step() { racks_log "== $*"; }
    ok() { echo "ok: $*"; }
    fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
    die() {
        echo "FAIL: $*"
        dump_logs
        exit 1
    }
    dump_logs() {
        local f
        for f in $RACKS_TEST_LOGS; do
            [ -f "$f" ] && { echo "--- $f (tail)"; tail -n "$RACKS_TEST_LOG_LINES" "$f"; }
        done
    }
}

# racks_finish NAME...: the end of a test inside UML (counterpart of racks_host_run): stops
# each NAME with SIGTERM in order (each must exit 0), then exits 0 when the test's `fails`
# is 0, else calls dump_logs and exits 1 (see racks_test_init).
racks_finish() {
    local n st
    step "daemons stop cleanly"
    for n in "$@"; do
        racks_kill "$n"
        st=$?
        [ "$st" = 0 ] && ok "$n exit 0" || fail "$n exit $st after SIGTERM"
    done
    if [ "$fails" -ne 0 ]; then
        dump_logs
        echo "inside UML: $fails check(s) failed"
        exit 1
    fi
    echo "inside UML: all checks passed"
    exit 0
}

# vm_xml VM: the domain XML of a VM (see the head of this file for the filler interfaces).
vm_xml() {
    local vm=$1 k i fill=""
    k=$(vm_num "$vm")
    for ((i = 1; i < k; i++)); do
        fill+="<interface type='user'><mac address='52:54:00:ff:$(printf %02x "$k"):$(printf %02x "$i")'/></interface>"
    done
    cat <<XML
<domain type='test'>
  <name>$vm</name>
  <uuid>$(vm_uuid "$vm")</uuid>
  <memory unit='KiB'>65536</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <metadata><splitnve:vnics xmlns:splitnve='urn:splitnve:vn:1'><splitnve:vnic mac='$(vm_mac "$vm")' vn-id='$(vm_field "$vm" 3)' vn-name='$(vm_field "$vm" 4)'/></splitnve:vnics></metadata>
  <devices>$fill<interface type='ethernet'><mac address='$(vm_mac "$vm")'/><target dev='vnet$k' managed='no'/></interface></devices>
</domain>
XML
}

# racks_virsh HV COMMANDS: one virsh call (each costs ~0.3 s in UML) against HV's libvirtd.
# A call still running after RACKS_VIRSH_LIMIT seconds (default 60) is killed and fails with
# 124, after the stacks of virsh, HV's libvirtd and agent and their logs' tails are printed on
# stderr: a hang shows where it is instead of running into the whole test's time limit.
racks_virsh() {
    local hv=$1 out pid rc i limit=${RACKS_VIRSH_LIMIT:-60}
    shift
    out=$(mktemp "$R/virsh.XXXXXX")
    if [[ "$*" =~ ^managedsave\ ([^ \;]+)$ ]]; then
        # virsh's job watcher can miss the end of the save (see tests/tools/virt-managedsave.c)
        "$RB/../tests/tools/virt-managedsave" "$(racks_uri "$hv")" "${BASH_REMATCH[1]}" >"$out" &
    else
        virsh -q -c "$(racks_uri "$hv")" "$*" >"$out" &
    fi
    pid=$!
    for ((i = 0; i < limit * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        racks_log "virsh '$*' on $hv still running after ${limit} s: stacks and logs follow" >&2
        racks_stacks "virsh" "$pid" "libvirtd of $hv" "${RACKS_PID[lv-$hv]:-}" \
            "tnve-agent of $hv" "${RACKS_PID[$hv]:-}" >&2
        tail -n 40 "$R/$hv/libvirtd.log" "$R/$hv/agent.log" >&2 2>/dev/null
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        rm -f "$out"
        return 124
    fi
    wait "$pid"
    rc=$?
    cat "$out"
    rm -f "$out"
    return $rc
}

# racks_stacks NAME PID ...: every thread's stack of each process (gdb when it is installed,
# else the kernel's wait channel per thread).
racks_stacks() {
    local name pid t
    while [ $# -ge 2 ]; do
        name=$1 pid=$2
        shift 2
        [ -n "$pid" ] && [ -d "/proc/$pid" ] || continue
        echo "--- $name (pid $pid)"
        if command -v gdb >/dev/null; then
            timeout 30 gdb -q -n -batch -p "$pid" -ex "thread apply all bt" 2>&1 | grep -v '^\[' | head -n 200
        else
            for t in /proc/"$pid"/task/*; do echo "${t##*/} $(cat "$t/wchan" 2>/dev/null) $(cat "$t/comm")"; done
        fi
    done
}

nnvectl_sw() { local sw=$1; shift; "$RB/nnvectl" -s "$R/$sw/ctl" "$@"; }
tnvectl_hv() { local hv=$1; shift; "$RB/tnvectl" -s "$R/$hv/ctl" "$@"; }

# vm_ping VM DST [TRIES]: one echo (1 s wait) from the VM, up to TRIES times (default 1).
vm_ping() {
    local i
    for ((i = 0; i < ${3:-1}; i++)); do
        ip netns exec "$1" ping -n -q -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0
    done
    return 1
}

# tsi_state SW VM: the TSI's state at the nNVE ("absent" when none) and its tag, "STATE TAG".
tsi_state() {
    nnvectl_sw "$1" --json show tsis 2>/dev/null | jq -r --arg m "$(vm_mac "$2")" '
        [ .[] | select(.tsi | endswith($m)) ][0] // {} | "\(.state // "absent") \(.tag // 0)"'
}
# agent_acked VM STATE: the VM's TSI is acknowledged in STATE by its agent.
agent_acked() {
    local hv
    hv=$(vm_field "$1" 2)
    [ "$(tnvectl_hv "$hv" --json show tsis 2>/dev/null | jq -r --arg m "$(vm_mac "$1")" \
        '[ .[] | select(.mac == $m) ][0].acked // "absent"')" = "$2" ]
}
