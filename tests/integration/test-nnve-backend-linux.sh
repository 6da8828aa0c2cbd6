#!/bin/bash
# test-nnve-backend-linux.sh: nnve-daemon's `linux` dataplane backend against a real
# VLAN-aware bridge with VXLAN.
#
# The host kernel has no 802.1Q, so the test boots User-Mode Linux (tests/uml/uml-run.sh) and
# runs itself inside with --inside: bridge br0 (vlan_filtering 1) with veth switch ports
# swp1..swp3 whose peers sit in namespaces ns1/ns2 (802.1Q devices on VLAN 100 there), and
# an `external` VXLAN device vxlan0 with vlan_tunnel on.  nnve-backend-check drives the
# backend one command at a time (through a pair of FIFOs, so that the kernel is checked with
# `bridge -j ...` between commands of one backend instance), then again as a "restart" to
# check reconcile.  Then the per-VNI VXLAN mode, and two "racks" (switch namespaces joined by
# an underlay link, each programmed by its own backend instance) where VMs of one VN behind
# different local tags ping each other over VXLAN in both modes, with their ports locked,
# and a VM of another VN stays unreachable.  IP anti-spoofing (the nftables table
# `bridge splitnve`): a namespace sending with a wrong source IP from its own MAC is dropped
# while the right source passes, and nothing is left after deassociate.  Last, nnve-daemon
# itself with backend = linux: --check-config on [linux], the settings reaching the backend,
# and SIGHUP with a changed [linux] section asking for a restart.  When UML cannot run, the test fails (it never
# skips).
#
# ASan binaries cannot run inside UML (its 512 GiB user address space has no room for ASan's
# shadow), so for an ASan build the tool is rebuilt here from the same sources with UBSan only,
# and the daemons come from a UBSan-only build (tests/uml/racks-host.bash).
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=${SPLITNVE_SRC:-$(cd "$here/../.." && pwd)}

# ---------------------------------------------------------------------------- inside UML ---
if [ "${1:-}" = "--inside" ]; then
    tool=${BACKEND_CHECK:?BACKEND_CHECK not set}
    fails=0
    step() { echo "== $*"; }
    fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
    die() { echo "FAIL: $*"; exit 1; }
    ok() { echo "ok: $*"; }

    T1=11111111-1111-1111-1111-111111111111/02:00:00:00:00:01
    T2=22222222-2222-2222-2222-222222222222/02:00:00:00:00:02
    M1=02:00:00:00:00:01 M2=02:00:00:00:00:02

    # ---- driver: one nnve-backend-check process fed line by line ----
    log=/tmp/drv.log
    drv_pid=
    drv_start() { # ARGS...
        rm -f /tmp/drv.in /tmp/drv.out
        mkfifo /tmp/drv.in /tmp/drv.out || die "mkfifo"
        : >"$log"
        logpos=0
        "$tool" "$@" </tmp/drv.in >/tmp/drv.out 2>>"$log" &
        drv_pid=$!
        exec 3>/tmp/drv.in 4</tmp/drv.out
    }
    drv_stop() {
        exec 3>&-
        local line
        while IFS= read -r -t 10 line <&4; do echo "   drv| $line"; done
        exec 4<&-
        wait "$drv_pid"
        drv_status=$?
        drv_pid=
        showlog
    }
    logpos=0
    showlog() { # prints the driver's log lines not shown yet
        local n=0 line
        while IFS= read -r line; do
            n=$((n + 1))
            [ "$n" -gt "$logpos" ] && echo "   log| ${line#*: }"
        done <"$log"
        logpos=$n
    }
    # drv WANT COMMAND...: WANT is ok, error or a literal result (lookup)
    drv() {
        local want=$1
        shift
        echo "$*" >&3
        local line=
        if ! IFS= read -r -t 10 line <&4; then
            fail "driver: no answer to '$*'"
            return
        fi
        echo "   drv| $line"
        showlog
        case $want in
        ok) [[ $line == *" -> ok" ]] || fail "'$*' -> ${line##* -> }, want ok" ;;
        error) [[ $line == *" -> error "* ]] || fail "'$*' -> ${line##* -> }, want an error" ;;
        *) [[ $line == *" -> $want" ]] || fail "'$*' -> ${line##* -> }, want $want" ;;
        esac
    }
    log_has() { grep -qF -- "$1" "$log" && ok "log has '$1'" || fail "$2: no '$1' in the log"; }
    log_count() { # TEXT N WHAT
        local n
        n=$(grep -cF -- "$1" "$log")
        [ "$n" = "$2" ] && ok "log has '$1' $2 time(s)" || fail "$3: '$1' $n time(s) in the log, want $2"
    }

    # ---- kernel state ----
    vl() { # DEV: "VID=FLAGS ..." (P PVID, U untagged, T tagged)
        bridge -j vlan show dev "$1" 2>/dev/null | jq -r --arg d "$1" '
            [ .[] | select(.ifname == $d) | .vlans[]
              | (.flags // []) as $f
              | (if .vlanEnd then range(.vlan; .vlanEnd + 1) else .vlan end) as $v
              | { v: $v,
                  s: ("\($v)=" + (if ($f | any(. == "PVID")) then "P" else "" end)
                      + (if ($f | any(. == "Egress Untagged")) then "U" else "T" end)) } ]
            | sort_by(.v) | map(.s) | join(" ")'
    }
    tun() { # tunnel map of vxlan0: "VID=VNI ..."
        bridge -j vlan tunnelshow 2>/dev/null | jq -r '
            [ .[] | select(.ifname == "vxlan0") | .tunnels[]
              | if .vlanEnd then range(0; .vlanEnd - .vlan + 1) as $i | "\(.vlan + $i)=\(.tunid + $i)"
                else "\(.vlan)=\(.tunid)" end ] | join(" ")'
    }
    statics() { # static bridge FDB entries: "PORT/VID/MAC ..."
        bridge -j fdb show br br0 2>/dev/null | jq -r '
            [ .[] | select(.state == "static") | "\(.ifname)/\(.vlan // 0)/\(.mac)" ] | sort | join(" ")'
    }
    floods() { # DEV: flood entries "DST/SRC_VNI ..."
        bridge -j fdb show dev "$1" 2>/dev/null | jq -r '
            [ .[] | select(.mac == "00:00:00:00:00:00") | "\(.dst)/\(.src_vni // 0)" ] | sort | join(" ")'
    }
    neighs() { # neighbour entries on the VLAN 100 interface: "IP/MAC/STATE ..."
        ip -j neigh show dev br0.100 nud all 2>/dev/null | jq -r '
            [ .[] | "\(.dst)/\(.lladdr)/\(.state | join(","))" ] | sort | join(" ")'
    }
    locked() { bridge -j -d link show dev "$1" 2>/dev/null | jq -r '.[0].locked // false'; }
    nftel() { # elements of the anti-spoofing table: "SET:PORT/VID/MAC[/IP] ..."
        nft -j list table bridge splitnve 2>/dev/null | jq -r '
            [ .nftables[] | select(.set) | .set as $s | ($s.elem // [])[]
              | "\($s.name):" + (.concat | map(tostring) | join("/")) ] | sort | join(" ")'
    }
    drops() { # packets dropped by the anti-spoofing table
        nft -j list chain bridge splitnve guard 2>/dev/null | jq -r '
            [ .nftables[] | select(.rule) | .rule.expr[] | select(.counter) | .counter.packets ] | add // 0'
    }
    expect() { # WHAT GOT WANT
        [ "$2" = "$3" ] && ok "$1 [$2]" || fail "$1: [$2], want [$3]"
    }
    # Everything the backend could have changed, in one text (learned entries left out).
    dump() {
        {
            bridge -j vlan show
            echo
            bridge -j vlan tunnelshow
            echo
            bridge -j fdb show | jq -c '[ .[] | select(.state != "") ] | sort_by(.ifname, .mac, .vlan)'
            bridge -j -d link show | jq -c '[ .[] | {ifname, locked} ]'
            ip -j neigh show nud noarp
            nft -s list table bridge splitnve
        } 2>&1
    }
    pingable() { # NS DST
        ip netns exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1
    }

    step "topology"
    # no IPv6 autoconfiguration traffic: the monitors below must see only the backend's work
    sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip link add br0 type bridge vlan_filtering 1 || die "no vlan_filtering bridge in UML"
    ip link add vxlan0 type vxlan dstport 4789 external || die "no external vxlan device"
    ip link add loose type veth peer name loosep || die "veth loose"
    for i in 1 2 3; do
        ip link add "swp$i" type veth peer name "h$i" || die "veth swp$i"
        ip link set "swp$i" master br0 || die "enslave swp$i"
        ip link set "swp$i" up
    done
    ip link set vxlan0 master br0 || die "enslave vxlan0"
    bridge link set dev vxlan0 vlan_tunnel on || die "vlan_tunnel on"
    ip link set vxlan0 up && ip link set br0 up && ip link set h3 up
    # the VLAN 100 layer-3 interface (SVI) where IP+MAC pairs get neighbour entries
    ip link add link br0 name br0.100 type vlan id 100 && ip link set br0.100 up ||
        die "br0.100"
    for i in 1 2; do
        ip netns add "ns$i" || die "netns ns$i"
        ip link set "h$i" netns "ns$i" || die "move h$i"
        ip netns exec "ns$i" sh -c "
            sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
            ip link set h$i address 02:00:00:00:00:0$i &&
            ip link add link h$i name h$i.100 type vlan id 100 &&
            ip addr add 192.0.2.$i/24 dev h$i.100 &&
            ip link set lo up && ip link set h$i up && ip link set h$i.100 up" ||
            die "namespace ns$i set-up"
    done

    step "create() refuses a bridge without VLAN filtering and a missing VXLAN device"
    ip link add brx type bridge vlan_filtering 0
    "$tool" -b brx </dev/null >/tmp/c.out 2>/tmp/c.err
    [ $? = 3 ] && grep -q "vlan_filtering off bridge=brx" /tmp/c.err && ok "brx refused" ||
        fail "create on a non-filtering bridge: $(cat /tmp/c.out /tmp/c.err)"
    "$tool" -x nosuchvx </dev/null >/tmp/c.out 2>/tmp/c.err
    [ $? = 3 ] && grep -q "dev=nosuchvx" /tmp/c.err && ok "missing vxlan device refused" ||
        fail "create with a missing vxlan device: $(cat /tmp/c.out /tmp/c.err)"
    ip link del brx

    step "vn_add: tagged membership, tunnel map, flood entries, port locked"
    drv_start -r 198.51.100.2,198.51.100.3
    drv ok vn-add swp1 100 5000
    expect "swp1 vlans" "$(vl swp1)" "1=PU 100=T"
    expect "vxlan0 vlans" "$(vl vxlan0)" "1=PU 100=T"
    expect "tunnel map" "$(tun)" "100=5000"
    expect "flood entries" "$(floods vxlan0)" "198.51.100.2/5000 198.51.100.3/5000"
    expect "swp1 locked" "$(locked swp1)" "true"
    expect "swp2 not locked" "$(locked swp2)" "false"
    drv ok vn-add swp1 100 5000
    log_count "vlan added port=swp1" 1 "a repeated vn_add changed something"

    step "ports locked, nothing activated: no traffic"
    drv ok vn-add swp2 100 5000
    expect "tunnel map kept" "$(tun)" "100=5000"
    pingable ns1 192.0.2.2 && fail "ping passed locked ports without activated TSIs" ||
        ok "no ping before activation"

    step "tsi activate: static FDB entries; traffic flows"
    drv ok associate swp1 100 5000 $T1 192.0.2.1@$M1
    expect "associate installs nothing" "$(statics)" ""
    drv ok activate swp1 100 5000 $T1 192.0.2.1@$M1
    drv ok activate swp2 100 5000 $T2 $M2 192.0.2.2
    expect "static entries" "$(statics)" "swp1/100/$M1 swp2/100/$M2"
    expect "neighbour entries" "$(neighs)" "192.0.2.1/$M1/NOARP 192.0.2.2/$M2/NOARP"
    pingable ns1 192.0.2.2 && ok "ping ns1 -> ns2 on VLAN 100" || fail "no ping between activated TSIs"
    drv swp1 lookup $M1
    drv none lookup 02:00:00:00:00:99

    step "port learning: the port a MAC was last seen on; never a VXLAN device"
    bridge fdb add 02:00:00:00:00:aa dev vxlan0 vlan 100 master static || fail "fdb on vxlan0"
    drv none lookup 02:00:00:00:00:aa
    # (swp3 carries VLAN 1 only, swp2 VLANs 1 and 100)
    bridge fdb add 02:00:00:00:00:bb dev swp3 vlan 1 master static &&
        bridge fdb add 02:00:00:00:00:cc dev swp2 vlan 100 master static || fail "fdb add"
    sleep 0.2 # the forwarding table ages in clock ticks (10 ms)
    bridge fdb add 02:00:00:00:00:bb dev swp2 vlan 100 master static &&
        bridge fdb add 02:00:00:00:00:cc dev swp3 vlan 1 master static || fail "fdb add"
    drv swp2 lookup 02:00:00:00:00:bb
    drv swp3 lookup 02:00:00:00:00:cc
    for m in aa bb cc; do bridge fdb show | grep "^02:00:00:00:00:$m " | while read -r _ _ dev _ vid _; do
        bridge fdb del 02:00:00:00:00:$m dev "$dev" vlan "$vid" master; done; done
    expect "test entries gone" "$(bridge fdb show | grep -cE '^02:00:00:00:00:(aa|bb|cc) ')" 0

    step "anti-spoofing: a foreign source MAC is dropped"
    ip netns exec ns1 ip link set h1.100 address 02:00:00:00:00:99
    ip netns exec ns2 ip neigh flush dev h2.100
    pingable ns1 192.0.2.2 && fail "spoofed source MAC passed swp1" || ok "spoofed MAC dropped"
    ip netns exec ns1 ip link set h1.100 address $M1
    ip netns exec ns2 ip neigh flush dev h2.100
    pingable ns1 192.0.2.2 && ok "ping again with the associated MAC" || fail "no ping after restoring the MAC"

    step "IP anti-spoofing: a wrong source IP from the associated MAC is dropped"
    expect "ip filter elements" "$(nftel)" "macs:swp1/100/$M1 macs:swp2/100/$M2 src4:swp1/100/$M1/192.0.2.1 src4:swp2/100/$M2/192.0.2.2"
    d0=$(drops)
    ip netns exec ns1 ip addr add 192.0.2.9/24 dev h1.100
    ip netns exec ns1 ping -c 1 -W 1 -I 192.0.2.9 192.0.2.2 >/dev/null 2>&1 &&
        fail "a spoofed source IP passed swp1" || ok "spoofed source IP dropped"
    d1=$(drops)
    [ "$d1" -gt "$d0" ] && ok "the nftables guard chain counted drops ($d0 -> $d1)" ||
        fail "no drop counted by the guard chain ($d0 -> $d1)"
    ip netns exec ns1 ip addr del 192.0.2.9/24 dev h1.100
    ip netns exec ns1 ip neigh flush dev h1.100
    ip netns exec ns2 ip neigh flush dev h2.100
    pingable ns1 192.0.2.2 && ok "the associated source IP passes (ARP and IPv4)" ||
        fail "no ping from the associated IP"

    step "IP anti-spoofing, IPv6: a wrong source address is dropped, neighbour discovery works"
    for i in 1 2; do
        ip netns exec "ns$i" sh -c "sysctl -qw net.ipv6.conf.h$i/100.disable_ipv6=0 &&
            ip addr add 2001:db8::$i/64 dev h$i.100 nodad" || fail "IPv6 on ns$i"
    done
    drv ok update swp1 100 5000 $T1 192.0.2.1@$M1 2001:db8::1@$M1
    drv ok update swp2 100 5000 $T2 $M2 192.0.2.2 2001:db8::2
    # IPv6 is off on br0.100: no IPv6 neighbour entries there, and no error either
    expect "no IPv6 neighbour entries" "$(neighs)" "192.0.2.1/$M1/NOARP 192.0.2.2/$M2/NOARP"
    expect "ip filter elements" "$(nftel)" "macs:swp1/100/$M1 macs:swp2/100/$M2 src4:swp1/100/$M1/192.0.2.1 src4:swp2/100/$M2/192.0.2.2 src6:swp1/100/$M1/2001:db8::1 src6:swp2/100/$M2/2001:db8::2"
    ip netns exec ns1 ping -6 -c 1 -W 2 2001:db8::2 >/dev/null 2>&1 &&
        ok "IPv6 ping from the associated address (neighbour discovery passes)" ||
        fail "no IPv6 ping from the associated address"
    ip netns exec ns1 ip addr add 2001:db8::9/64 dev h1.100 nodad
    d0=$(drops)
    ip netns exec ns1 ping -6 -c 1 -W 1 -I 2001:db8::9 2001:db8::2 >/dev/null 2>&1 &&
        fail "a spoofed IPv6 source passed swp1" || ok "spoofed IPv6 source dropped"
    d1=$(drops)
    [ "$d1" -gt "$d0" ] && ok "IPv6 drops counted ($d0 -> $d1)" || fail "no IPv6 drop counted ($d0 -> $d1)"
    for i in 1 2; do
        ip netns exec "ns$i" sysctl -qw "net.ipv6.conf.h$i/100.disable_ipv6=1"
    done
    drv ok update swp1 100 5000 $T1 192.0.2.1@$M1
    drv ok update swp2 100 5000 $T2 $M2 192.0.2.2
    expect "IPv6 elements withdrawn by update" "$(nftel)" "macs:swp1/100/$M1 macs:swp2/100/$M2 src4:swp1/100/$M1/192.0.2.1 src4:swp2/100/$M2/192.0.2.2"

    step "no REPLACE across TSIs; a migration twin takes the entry and gives it back"
    T3=33333333-3333-3333-3333-333333333333/02:00:00:00:00:03
    drv error activate swp2 100 5000 $T3 $M1 192.0.2.1@02:00:00:00:00:03
    expect "another TSI's FDB entry stays on its port" "$(statics)" \
        "swp1/100/$M1 swp2/100/$M2 swp2/100/02:00:00:00:00:03"
    expect "another TSI's neighbour entry stays" "$(neighs)" "192.0.2.1/$M1/NOARP 192.0.2.2/$M2/NOARP"
    log_has "static fdb entry refused, held by another tsi port=swp2 vlan=100 mac=$M1 tsi=$T3" "fdb"
    log_has "neighbour entry refused, held by another tsi port=swp2 vlan=100 ip=192.0.2.1 tsi=$T3" "neigh"
    expect "no anti-spoofing permit for another TSI's MAC or IP" "$(nftel)" \
        "macs:swp1/100/$M1 macs:swp2/100/$M2 src4:swp1/100/$M1/192.0.2.1 src4:swp2/100/$M2/192.0.2.2"
    drv ok deassociate swp2 100 5000 $T3
    expect "the refused TSI left nothing" "$(statics)" "swp1/100/$M1 swp2/100/$M2"
    drv ok activate swp2 100 5000 $T1 192.0.2.1@$M1
    expect "twin: the entry follows the latest activation" "$(statics)" "swp2/100/$M1 swp2/100/$M2"
    drv ok deassociate swp2 100 5000 $T1
    expect "twin gone: the entry is back at the source" "$(statics)" "swp1/100/$M1 swp2/100/$M2"
    expect "twin gone: the neighbour entry stays" "$(neighs)" "192.0.2.1/$M1/NOARP 192.0.2.2/$M2/NOARP"

    step "tsi update: the difference only; deactivate removes exactly what activate installed"
    drv ok update swp1 100 5000 $T1 192.0.2.1@$M1 02:00:00:00:00:11
    expect "after update" "$(statics)" "swp1/100/$M1 swp1/100/02:00:00:00:00:11 swp2/100/$M2"
    # twice: at activation, and when the twin above gave it back
    log_count "static fdb entry added port=swp1 vlan=100 mac=$M1" 2 "update re-added an entry"
    drv ok update swp1 100 5000 $T1 192.0.2.1@$M1
    expect "after update back" "$(statics)" "swp1/100/$M1 swp2/100/$M2"
    bridge fdb add 02:00:00:00:00:55 dev swp1 vlan 1 master static
    drv ok deactivate swp1 100 5000 $T1 192.0.2.1@$M1
    expect "after deactivate" "$(statics)" "swp1/1/02:00:00:00:00:55 swp2/100/$M2"
    expect "neighbours after deactivate" "$(neighs)" "192.0.2.2/$M2/NOARP"
    expect "ip filter after deactivate" "$(nftel)" "macs:swp2/100/$M2 src4:swp2/100/$M2/192.0.2.2"
    pingable ns1 192.0.2.2 && fail "ping passed after deactivate" || ok "no ping after deactivate"
    drv ok deactivate swp1 100 5000 $T1 192.0.2.1@$M1
    drv ok deassociate swp1 100 5000 $T1
    drv ok deassociate swp1 100 5000 $T1
    bridge fdb del 02:00:00:00:00:55 dev swp1 vlan 1 master

    step "errors name the interface, VLAN and VN"
    drv error vn-add nosuch0 100 5000
    log_has "port does not exist port=nosuch0 vlan=100" "missing port"
    drv error vn-add loose 100 5000
    log_has "not a port of the bridge port=loose bridge=br0 vlan=100" "port outside the bridge"
    drv error vn-add swp3 100 5001
    log_has "vlan already carries another vn port=swp3 vlan=100 vn=5001 vni=5000" "tag conflict"
    drv error vn-add swp3 4095 5000
    log_has "invalid vn_add port=swp3 vlan=4095" "vid out of range"
    expect "swp3 untouched" "$(vl swp3)" "1=PU"

    step "vn_remove: the map stays while a port carries the tag; the last port removes it"
    drv ok deassociate swp2 100 5000 $T2
    expect "neighbours after deassociate" "$(neighs)" ""
    expect "ip filter after deassociate" "$(nftel)" ""
    drv ok vn-remove swp1 100 5000
    expect "swp1 vlans" "$(vl swp1)" "1=PU"
    expect "swp1 unlocked" "$(locked swp1)" "false"
    expect "tunnel map kept for swp2" "$(tun)" "100=5000"
    drv ok vn-remove swp2 100 5000
    expect "tunnel map removed" "$(tun)" ""
    expect "vxlan0 left VLAN 100" "$(vl vxlan0)" "1=PU"
    expect "flood entries removed" "$(floods vxlan0)" ""
    drv ok vn-remove swp2 100 5000

    step "a port the operator had locked stays locked"
    bridge link set dev swp3 locked on
    drv ok vn-add swp3 300 5300
    drv ok vn-remove swp3 300 5300
    expect "swp3 still locked" "$(locked swp3)" "true"
    bridge link set dev swp3 locked off
    drv_stop
    [ "$drv_status" = 1 ] && ok "driver exit 1 (some commands failed on purpose)" ||
        fail "driver exit $drv_status, want 1"

    step "restart: a first run installs the declared state"
    declare_state() {
        drv ok vn-add swp1 100 5000
        drv ok vn-add swp2 100 5000
        drv ok activate swp1 100 5000 $T1 192.0.2.1@$M1
        drv ok activate swp2 100 5000 $T2 192.0.2.2@$M2
    }
    drv_start -r 198.51.100.2
    drv ok reconcile-begin
    declare_state
    drv ok reconcile-end
    drv_stop
    expect "driver exit" "$drv_status" 0
    before=$(dump)
    expect "static entries" "$(statics)" "swp1/100/$M1 swp2/100/$M2"
    expect "neighbour entries" "$(neighs)" "192.0.2.1/$M1/NOARP 192.0.2.2/$M2/NOARP"

    step "restart with the same declared state changes nothing"
    bridge monitor link vlan fdb >/tmp/mon 2>&1 &
    mon=$!
    ip monitor neigh >/tmp/mon.neigh 2>&1 &
    mon2=$!
    sleep 0.3
    drv_start -v -r 198.51.100.2
    drv ok reconcile-begin
    declare_state
    drv ok reconcile-end
    drv_stop
    sleep 0.3
    kill "$mon" "$mon2" 2>/dev/null
    wait "$mon" "$mon2" 2>/dev/null
    cat /tmp/mon.neigh >>/tmp/mon
    after=$(dump)
    [ "$before" = "$after" ] && ok "dumps identical" ||
        { fail "kernel state changed"; diff <(echo "$before") <(echo "$after") | head -20; }
    # Link events also come from the kernel's own timers (carrier, multicast router ports):
    # shown, but only VLAN and FDB events count; that nothing was requested is checked below.
    grep "state forwarding" /tmp/mon | sed 's/^/   monitor (link, not counted)| /'
    grep -v "state forwarding" /tmp/mon >/tmp/mon.counted
    [ -s /tmp/mon.counted ] && { sed 's/^/   monitor| /' /tmp/mon.counted; fail "the kernel notified VLAN/FDB changes"; } ||
        ok "no VLAN or FDB notification"
    grep -E "(entry|vlan) (added|removed)|mapped|locked|device (created|deleted)|request|ip filter|splitnve (created|deleted|differed)" "$log" && fail "the restart logged changes" ||
        ok "no change logged"
    pingable ns1 192.0.2.2 && ok "ping after restart" || fail "no ping after restart"

    step "restart with one entry missing and one stale: only those change"
    bridge fdb del $M2 dev swp2 vlan 100 master || fail "bridge fdb del"
    bridge fdb add 02:00:00:00:00:77 dev swp1 vlan 100 master static || fail "bridge fdb add stale"
    bridge fdb add 02:00:00:00:00:88 dev swp1 vlan 1 master static || fail "bridge fdb add foreign"
    nft delete element bridge splitnve src4 "{ \"swp2\" . 100 . $M2 . 192.0.2.2 }" || fail "nft delete element"
    nft add element bridge splitnve src4 '{ "swp1" . 100 . 02:00:00:00:00:77 . 192.0.2.77 }' || fail "nft add stale element"
    drv_start -r 198.51.100.3
    drv ok reconcile-begin
    declare_state
    drv ok reconcile-end
    drv_stop
    log_count "entry added" 2 "reconcile added more than the missing entries"
    log_has "static fdb entry added port=swp2 vlan=100 mac=$M2" "missing entry re-added"
    log_has "flood entry added dev=vxlan0 vni=5000 remote=198.51.100.3" "new remote VTEP"
    log_count "entry removed" 2 "reconcile removed more than the stale entries"
    log_has "static fdb entry removed port=swp1 vlan=100 mac=02:00:00:00:00:77" "stale entry removed"
    log_has "stale flood entry removed" "old remote VTEP removed"
    expect "static entries" "$(statics)" "swp1/1/02:00:00:00:00:88 swp1/100/$M1 swp2/100/$M2"
    expect "flood entries" "$(floods vxlan0)" "198.51.100.3/5000"
    log_has "ip filter set port=swp2 vlan=100" "missing ip filter element re-added"
    log_has "stale ip filter elements removed count=1" "stale ip filter element removed"
    expect "ip filter elements" "$(nftel)" "macs:swp1/100/$M1 macs:swp2/100/$M2 src4:swp1/100/$M1/192.0.2.1 src4:swp2/100/$M2/192.0.2.2"
    bridge fdb del 02:00:00:00:00:88 dev swp1 vlan 1 master

    step "a TSI not declared after a restart is removed at reconcile_end"
    # an operator's neighbour entry for the stale MAC is not ours: it stays
    ip neigh add 192.0.2.66 lladdr $M2 dev br0.100 nud noarp || fail "ip neigh add"
    drv_start -r 198.51.100.3
    drv ok reconcile-begin
    drv ok vn-add swp1 100 5000
    drv ok vn-add swp2 100 5000
    drv ok activate swp1 100 5000 $T1 192.0.2.1@$M1
    drv ok reconcile-end
    log_has "static fdb entry removed port=swp2 vlan=100 mac=$M2" "undeclared TSI removed"
    expect "static entries" "$(statics)" "swp1/100/$M1"
    log_has "neighbour entry removed dev=br0.100 vlan=100 ip=192.0.2.2 mac=$M2 tsi=stale" "undeclared neighbour removed"
    expect "neighbour entries" "$(neighs)" "192.0.2.1/$M1/NOARP 192.0.2.66/$M2/NOARP"
    ip neigh del 192.0.2.66 dev br0.100
    drv_stop

    step "a TSI whose IP changed while the daemon was down: the old neighbour entry goes"
    drv_start -r 198.51.100.3
    drv ok reconcile-begin
    drv ok vn-add swp1 100 5000
    drv ok activate swp1 100 5000 $T1 192.0.2.5@$M1
    drv ok reconcile-end
    log_has "neighbour entry removed dev=br0.100 vlan=100 ip=192.0.2.1 mac=$M1 tsi=stale" "old IP removed"
    expect "neighbour entries" "$(neighs)" "192.0.2.5/$M1/NOARP"
    expect "ip filter elements" "$(nftel)" "macs:swp1/100/$M1 src4:swp1/100/$M1/192.0.2.5"
    log_count "static fdb entry" 0 "the FDB entry of the unchanged MAC was touched"
    drv ok deassociate swp1 100 5000 $T1
    drv ok vn-remove swp1 100 5000
    drv_stop
    expect "tunnel map after cleanup" "$(tun)" ""
    expect "static entries after cleanup" "$(statics)" ""
    expect "neighbour entries after cleanup" "$(neighs)" ""
    expect "ip filter elements after cleanup" "$(nftel)" ""

    step "a tunnel map already in the kernel: same VNI accepted, another VNI refused"
    bridge vlan add dev vxlan0 vid 400 && bridge vlan add dev vxlan0 vid 400 tunnel_info id 5400 ||
        die "bridge vlan tunnel_info"
    drv_start -A
    drv ok vn-add swp1 400 5400
    expect "tunnel map" "$(tun)" "400=5400"
    drv ok vn-remove swp1 400 5400
    drv_stop
    bridge vlan add dev vxlan0 vid 400 && bridge vlan add dev vxlan0 vid 400 tunnel_info id 5400 ||
        die "bridge vlan tunnel_info"
    drv_start -A
    drv error vn-add swp1 400 5401
    log_has "vlan already mapped to another vni dev=vxlan0 vlan=400 vni=5401 mapped=5400" "map conflict"
    expect "swp1 left as it was" "$(vl swp1)" "1=PU"
    expect "anti-spoofing off: swp1 not locked" "$(locked swp1)" "false"
    nft list table bridge splitnve >/dev/null 2>&1 && fail "anti-spoofing off left the nftables table" ||
        ok "anti-spoofing off: the nftables table is gone"
    drv_stop
    expect "tunnel map untouched" "$(tun)" "400=5400"
    bridge vlan del dev vxlan0 vid 400

    step "nnve-daemon with backend = linux: the [linux] section reaches the backend; SIGHUP"
    D=${NNVE_BIN:?NNVE_BIN not set} P=${NNVE_PKI:?NNVE_PKI not set}
    mkdir -p /tmp/nd
    daemon_conf() { # ANTI_SPOOFING VXLAN_MODE
        printf '[global]\nlisten = 127.0.0.1:8394\ncert = %s\nkey = %s\nca = %s\n' \
            "$P/nnve.crt" "$P/nnve.key" "$P/ca.crt"
        printf 'state_dir = /tmp/nd/state\ncontrol_socket = /tmp/nd/ctl\nbackend = linux\n'
        printf '[linux]\nbridge = br0\nvxlan_mode = %s\nremote_vteps = 198.51.100.9\n' "$2"
        printf 'anti_spoofing = %s\n' "$1"
    }
    daemon_conf mac bogus >/tmp/nd/bad.conf
    "$D/nnve-daemon" --check-config -c /tmp/nd/bad.conf >/tmp/nd/check.out 2>&1
    [ $? = 1 ] && grep -q "/tmp/nd/bad.conf:11: vxlan_mode: expected external or per-vni" /tmp/nd/check.out &&
        ok "--check-config names the bad [linux] line" || fail "--check-config: $(cat /tmp/nd/check.out)"
    daemon_conf mac external >/tmp/nd/n.conf
    "$D/nnve-daemon" --check-config -c /tmp/nd/n.conf | grep -q "anti_spoofing=mac" &&
        ok "--check-config shows the [linux] settings" || fail "--check-config of a good file"
    "$D/nnve-daemon" -c /tmp/nd/n.conf 2>/tmp/nd/log &
    dpid=$!
    for _ in $(seq 50); do
        "$D/nnvectl" -s /tmp/nd/ctl version >/dev/null 2>&1 && break
        sleep 0.1
    done
    grep -q "linux: opened bridge=br0 vxlan=external dev=vxlan0 remotes=1 anti_spoofing=mac" /tmp/nd/log &&
        ok "the daemon opened the linux backend with its [linux] settings" ||
        fail "no 'linux: opened' line with the settings: $(cat /tmp/nd/log)"
    nft list table bridge splitnve >/dev/null 2>&1 && fail "anti_spoofing = mac made an nftables table" ||
        ok "anti_spoofing = mac: no nftables table"
    daemon_conf on external >/tmp/nd/n.conf
    hups() { grep -c "\[linux\] settings changed: restart nnve-daemon to apply them" /tmp/nd/log; }
    for want in 1 2; do # the running settings stay: the second reload still differs
        kill -HUP "$dpid"
        for _ in $(seq 50); do [ "$(hups)" = "$want" ] && break; sleep 0.1; done
        expect "SIGHUP $want: restart needed logged" "$(hups)" "$want"
    done
    nft list table bridge splitnve >/dev/null 2>&1 && fail "a reload applied anti_spoofing = on" ||
        ok "the reload did not apply the [linux] change"
    kill -TERM "$dpid"
    wait "$dpid"
    expect "daemon exit status" "$?" 0

    step "per-VNI mode: vx-<VNI> created with the tag as untagged PVID, deleted with the VN"
    ip link del vxlan0 # it owns UDP port 4789 as an external device
    drv_start -m per-vni -l 198.51.100.1 -r 198.51.100.2
    drv ok vn-add swp1 200 6000
    expect "vx-6000 vlans" "$(vl vx-6000)" "200=PU"
    expect "vx-6000 flood" "$(floods vx-6000)" "198.51.100.2/0"
    ip -d -j link show vx-6000 | jq -e '.[0].linkinfo.info_data | .id == 6000 and .port == 4789 and .learning == false and .local == "198.51.100.1"' >/dev/null &&
        ok "vx-6000 parameters" || fail "vx-6000 parameters: $(ip -d -j link show vx-6000)"
    drv ok vn-add swp2 200 6000
    drv ok vn-remove swp1 200 6000
    ip link show vx-6000 >/dev/null 2>&1 && ok "vx-6000 kept for swp2" || fail "vx-6000 deleted too early"
    drv ok vn-remove swp2 200 6000
    ip link show vx-6000 >/dev/null 2>&1 && fail "vx-6000 still exists" || ok "vx-6000 deleted"
    drv_stop
    expect "driver exit" "$drv_status" 0

    step "two racks: one VN behind different local tags crosses VXLAN; another VN does not"
    # switch namespaces sw1/sw2 (bridge, vxlan0, swp1, swp3) joined by an underlay link;
    # vm1 behind sw1 on tag 100 and vm2 behind sw2 on tag 200 are in VN 5000; vm3 behind
    # sw2 on tag 300 is in VN 6000 with an address of the same subnet.
    ip link add u1 type veth peer name u2 || die "underlay veth"
    for s in 1 2; do
        ip netns add "sw$s" && ip link set "u$s" netns "sw$s" || die "sw$s"
        ip -n "sw$s" addr add "198.51.100.$s/24" dev "u$s" && ip -n "sw$s" link set "u$s" up &&
            ip -n "sw$s" link set lo up &&
            ip -n "sw$s" link add br0 type bridge vlan_filtering 1 &&
            ip -n "sw$s" link add vxlan0 type vxlan dstport 4789 external &&
            ip -n "sw$s" link set vxlan0 master br0 &&
            bridge -n "sw$s" link set dev vxlan0 vlan_tunnel on &&
            ip -n "sw$s" link set vxlan0 up && ip -n "sw$s" link set br0 up || die "sw$s bridge"
    done
    vm_add() { # VM SWITCH PORT TAG N
        ip netns add "$1" && ip -n "$2" link add "$3" type veth peer name eth0 netns "$1" &&
            ip -n "$2" link set "$3" master br0 && ip -n "$2" link set "$3" up &&
            ip netns exec "$1" sh -c "
                sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
                ip link set eth0 address 02:00:00:00:01:0$5 &&
                ip link add link eth0 name eth0.$4 type vlan id $4 &&
                ip addr add 192.0.2.1$5/24 dev eth0.$4 &&
                ip link set eth0 up && ip link set eth0.$4 up" || die "vm $1"
    }
    vm_add vm1 sw1 swp1 100 1
    vm_add vm2 sw2 swp1 200 2
    vm_add vm3 sw2 swp3 300 3
    TV1=aaaaaaaa-0000-0000-0000-000000000001/02:00:00:00:01:01
    TV2=aaaaaaaa-0000-0000-0000-000000000002/02:00:00:00:01:02
    TV3=aaaaaaaa-0000-0000-0000-000000000003/02:00:00:00:01:03
    rack() { # SWITCH ARGS... < SCRIPT: runs the tool in the switch's namespace
        local sw=$1
        shift
        ip netns exec "$sw" "$tool" "$@" >/tmp/rack.out 2>/tmp/rack.err
        local st=$?
        sed 's/^/   rack| /' /tmp/rack.out
        [ "$st" = 0 ] || { sed 's/^/   rack log| /' /tmp/rack.err; fail "tool in $sw: exit $st"; }
    }
    rack sw1 -r 198.51.100.2 <<X
vn-add swp1 100 5000
activate swp1 100 5000 $TV1 192.0.2.11@02:00:00:00:01:01
X
    rack sw2 -r 198.51.100.1 <<X
vn-add swp1 200 5000
vn-add swp3 300 6000
activate swp1 200 5000 $TV2 192.0.2.12@02:00:00:00:01:02
activate swp3 300 6000 $TV3 192.0.2.13@02:00:00:00:01:03
X
    pingable vm1 192.0.2.12 && ok "external vxlan: vm1 (tag 100) reaches vm2 (tag 200) in VN 5000" ||
        fail "external vxlan: no ping between the racks"
    pingable vm1 192.0.2.13 && fail "vm1 reached vm3 in another VN" || ok "VN 6000 not reachable from VN 5000"

    step "two racks, per-VNI vxlan devices"
    for s in 1 2; do ip -n "sw$s" link del vxlan0 || fail "del vxlan0 in sw$s"; done
    rack sw1 -m per-vni -l 198.51.100.1 -r 198.51.100.2 <<X
vn-add swp1 100 5000
activate swp1 100 5000 $TV1 192.0.2.11@02:00:00:00:01:01
X
    rack sw2 -m per-vni -l 198.51.100.2 -r 198.51.100.1 <<X
vn-add swp1 200 5000
vn-add swp3 300 6000
activate swp1 200 5000 $TV2 192.0.2.12@02:00:00:00:01:02
X
    ip netns exec vm1 ip neigh flush all
    pingable vm1 192.0.2.12 && ok "per-vni vxlan: vm1 reaches vm2" || fail "per-vni vxlan: no ping between the racks"
    pingable vm1 192.0.2.13 && fail "vm1 reached vm3 in another VN" || ok "VN 6000 not reachable from VN 5000"

    if [ "$fails" -ne 0 ]; then
        echo "inside UML: $fails check(s) failed"
        exit 1
    fi
    echo "inside UML: all checks passed"
    exit 0
fi

# ------------------------------------------------------------------------------ on the host ---
build=${SPLITNVE_BUILD:-$src/build}
tool=$build/tests/tools/nnve-backend-check
[ -x "$tool" ] || { echo "FAIL: $tool not built"; exit 1; }
command -v jq >/dev/null || { echo "FAIL: jq is not installed (scripts/install-deps.sh)"; exit 1; }

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

if grep -q -a __asan_init "$tool"; then
    echo "note: $tool is an ASan build, which cannot run inside UML; using a UBSan build of it"
    # shellcheck disable=SC2046
    if ! ${CC:-cc} -std=c11 -D_GNU_SOURCE -O1 -g -fsanitize=undefined -fno-sanitize-recover=all \
        -I"$src/lib" $(pkg-config --cflags libmnl jansson libnftables) -o "$tmp/nnve-backend-check" \
        "$src/tests/tools/nnve-backend-check.c" "$src/nnve-daemon/backend-linux.c" \
        "$src/nnve-daemon/backend.c" "$src/nnve-daemon/backend-none.c" \
        "$src/nnve-daemon/nft-filter.c" \
        "$src/nnve-daemon/hmap.c" "$src/lib/snv-log.c" "$src/lib/snv-netlink.c" "$src/lib/sncp-msg.c" \
        "$src/lib/snv-file.c" \
        "$src/lib/sncp-error.c" $(pkg-config --libs libmnl jansson libnftables); then
        echo "FAIL: cannot build the UBSan variant of nnve-backend-check"
        exit 1
    fi
    tool=$tmp/nnve-backend-check
fi

# the daemons (a UBSan build of them for an ASan build) and a PKI for the daemon step
. "$src/tests/uml/racks-host.bash"
bins=$(racks_host_bins "$build" "$src") || { echo "$bins"; exit 1; }
"$src/scripts/gen-pki.sh" "$tmp/pki" nnve >/dev/null || { echo "FAIL: gen-pki.sh"; exit 1; }

"$src/tests/uml/uml-run.sh" --timeout 300 --share "$tmp" --env "BACKEND_CHECK=$tool" \
    --env "NNVE_BIN=$bins" --env "NNVE_PKI=$tmp/pki" \
    "$here/test-nnve-backend-linux.sh" --inside
st=$?
case $st in
0) echo "PASS: nnve-backend-linux" ;;
124 | 125) echo "FAIL: User-Mode Linux is unusable here (uml-run exit $st); this test does not skip" ;;
*) echo "FAIL: nnve-backend-linux (exit $st)" ;;
esac
exit "$st"
