# evpn-lib.bash: the two-rack topology of racks-lib.bash with BGP EVPN between the switches
# (sourced inside User-Mode Linux, after racks-lib.bash; never on a host).
#
# Each switch runs nnve-daemon with the linux backend in per-VNI mode (`vx-VNI` devices,
# local_ip = its underlay address 198.51.100.N) and FRR (zebra + bgpd, Debian 12's 8.4) in its
# namespace with its own pathspace (-N swN), eBGP ipv4 + l2vpn evpn over the underlay link
# (AS 6500N), advertise-all-vni.  No remote VTEP is configured anywhere.  The external vxlan0
# of racks-lib is deleted (per-VNI devices bind the same UDP port).
#
# Used by tests/integration/test-evpn.sh and bench/evpn.sh.

# evpn_linux_conf SWITCH REMOTE_VTEPS: writes the switch's configuration (racks-lib) with
# per-VNI devices and remote_vteps = REMOTE_VTEPS.
evpn_linux_conf() {
    local sw=$1 s=${1#sw}
    racks_write_switch_conf "$sw"
    sed -i -e "s/^vxlan_mode = .*/vxlan_mode = per-vni\nlocal_ip = 198.51.100.$s/" \
        -e '/^vxlan_device = /d' -e "s/^remote_vteps = .*/remote_vteps = $2/" "$R/$sw/nnve.conf"
}

# evpn_topology: racks-lib's topology without the external VXLAN devices.
evpn_topology() {
    racks_topology || return 1
    ip -n sw1 link del vxlan0 && ip -n sw2 link del vxlan0
}

# evpn_start_hvs: every hypervisor's libvirtd (side by side: each takes seconds in UML) and
# agent.
evpn_start_hvs() {
    local hv p
    for hv in $RACKS_HVS; do
        (racks_start_libvirtd "$hv" >"$R/lv-$hv.out" 2>&1 &&
            echo "${RACKS_PID[lv-$hv]} ${RACKS_PID[keep-$hv]}" >"$R/lv-$hv.pids") &
        p+=" $!"
    done
    wait $p
    for hv in $RACKS_HVS; do
        [ -s "$R/lv-$hv.pids" ] || { cat "$R/lv-$hv.out"; return 1; }
        read -r "RACKS_PID[lv-$hv]" "RACKS_PID[keep-$hv]" <"$R/lv-$hv.pids"
    done
    for hv in $RACKS_HVS; do racks_start_agent "$hv" || return 1; done
}

# vt SWITCH CMD...: vtysh commands in the switch's FRR instance.
vt() {
    local s=$1 a=() c
    shift
    for c in "$@"; do a+=(-c "$c"); done
    ip netns exec "$s" vtysh -N "$s" "${a[@]}" 2>/dev/null
}

# frr_start SWITCH: zebra and bgpd in the switch namespace (pathspace SWITCH).
frr_start() {
    local sw=$1 s=${1#sw} o
    o=$((3 - s))
    # the host's /etc/frr and /var/tmp are read-only inside UML (hostfs root)
    mountpoint -q /etc/frr || mount -t tmpfs tmpfs /etc/frr || return 1
    mountpoint -q /var/tmp || mount -t tmpfs -o mode=1777 tmpfs /var/tmp || return 1
    mkdir -p "/etc/frr/$sw" "/run/frr/$sw" || return 1
    touch "/etc/frr/$sw/vtysh.conf"
    printf 'hostname %s\nlog file /run/frr/%s/zebra.log informational\n' "$sw" "$sw" \
        >"/etc/frr/$sw/zebra.conf"
    cat >"/etc/frr/$sw/bgpd.conf" <<CONF
hostname $sw
log file /run/frr/$sw/bgpd.log informational
router bgp 6500$s
 bgp router-id 198.51.100.$s
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 timers bgp 3 9
 neighbor 198.51.100.$o remote-as 6500$o
 neighbor 198.51.100.$o timers connect 1
 neighbor 198.51.100.$o advertisement-interval 0
 address-family l2vpn evpn
  neighbor 198.51.100.$o activate
  advertise-all-vni
 exit-address-family
CONF
    chown -R frr:frr /etc/frr /run/frr || return 1
    ip netns exec "$sw" /usr/lib/frr/zebra -N "$sw" -d -f "/etc/frr/$sw/zebra.conf" \
        -i "/run/frr/$sw/zebra.pid" 2>&1 | grep -v 'Disabling MPLS'
    ip netns exec "$sw" /usr/lib/frr/bgpd -N "$sw" -d -f "/etc/frr/$sw/bgpd.conf" \
        -i "/run/frr/$sw/bgpd.pid" || return 1
}

# frr_stop: stops every FRR daemon started by frr_start (by PID).
frr_stop() {
    local f
    for f in /run/frr/sw*/bgpd.pid /run/frr/sw*/zebra.pid; do
        [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null
    done
    return 0
}

# her SWITCH VNI REMOTE: the switch has a head-end replication entry of VNI toward REMOTE.
her() { bridge -n "$1" fdb show dev "vx-$2" | grep -q "^00:00:00:00:00:00 dst $3 "; }
# remote_mac SWITCH VNI MAC REMOTE: the switch's kernel has MAC behind REMOTE (zebra's entry).
remote_mac() { bridge -n "$1" fdb show dev "vx-$2" | grep -q "^$3 dst $4 .*extern_learn"; }
# no_mac SWITCH VNI MAC: no entry of MAC on the switch's vx-VNI device.
no_mac() { ! bridge -n "$1" fdb show dev "vx-$2" | grep -q "^$3 "; }
# evpn_routes SWITCH: the BGP EVPN table of the switch (JSON).
evpn_routes() { vt "$1" 'show bgp l2vpn evpn route json'; }
# has_route SWITCH TEXT: the switch's EVPN table has a route whose key contains TEXT.
has_route() { evpn_routes "$1" | grep -qF "\"$2"; }
# has_neigh SW DEV IP MAC: SW's neighbour entry IP -> MAC on DEV, installed by zebra.
has_neigh() { ip -n "$1" neigh show dev "$2" nud all | grep -q "^$3 .*$4 extern_learn"; }
