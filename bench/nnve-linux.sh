#!/bin/bash
# Benchmark of nnve-daemon's linux dataplane backend (run by scripts/run-bench.sh with
# SPLITNVE_BUILD/SPLITNVE_SRC).  The host kernel has no VLAN-aware bridge, so the run happens
# inside User-Mode Linux (tests/uml/uml-run.sh): a bridge br0 (vlan_filtering 1) with an
# external VXLAN device and NNVE_LINUX_BENCH_PORTS veth switch ports (default 10), one
# hypervisor session per port (its own VN), and bench/nnve-load driving associate+activate
# of NNVE_LINUX_BENCH_TSIS TSIs (default 10,000; each with a MAC and an IPv4 address) over
# TLS on loopback, then deactivate/activate toggles for 3 s at NNVE_LINUX_BENCH_RATE
# requests/s (default 500).  Three daemons in the same UML, one after the other: the linux
# backend with anti_spoofing on (FDB entries, port locking and the nftables IP filter),
# with anti_spoofing mac (no nftables), and the none backend (the control plane alone).
# Activations per second include the netlink (and nftables) work; the kernel state is
# counted after each run.  sync = normal (state on a tmpfs inside UML).  Figures only.
#
# Needs a plain (or UBSan) build: ASan programs cannot run inside UML.
set -u

# ---------------------------------------------------------------------------- inside UML ---
if [ "${1:-}" = "--inside" ]; then
    B=$SPLITNVE_BUILD W=$NNVE_BENCH_DIR
    ports=$NNVE_LINUX_BENCH_PORTS tsis=$NNVE_LINUX_BENCH_TSIS rate=$NNVE_LINUX_BENCH_RATE
    ip link set lo up
    sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    switch_up() { # every run starts from an empty switch
        ip link add br0 type bridge vlan_filtering 1 || { echo "no vlan_filtering bridge"; return 1; }
        ip link add vxlan0 type vxlan dstport 4789 external && ip link set vxlan0 master br0 &&
            bridge link set dev vxlan0 vlan_tunnel on && ip link set vxlan0 up &&
            ip link set br0 up || { echo "vxlan0 set-up failed"; return 1; }
        for i in $(seq "$ports"); do
            ip link add "swp$i" type veth peer name "h$i" && ip link set "swp$i" master br0 &&
                ip link set "swp$i" up && ip link set "h$i" up ||
                { echo "swp$i set-up failed"; return 1; }
        done
    }
    switch_down() {
        for i in $(seq "$ports"); do ip link del "swp$i" 2>/dev/null; done
        ip link del vxlan0 2>/dev/null
        ip link del br0 2>/dev/null
        nft delete table bridge splitnve 2>/dev/null
    }
    run() { # NAME BACKEND ANTI_SPOOFING
        local name=$1 dir=/tmp/$1
        mkdir -p "$dir"
        switch_up || return 1
        {
            printf '[global]\nlisten = 127.0.0.1:8394\nlog_level = warn\nsync = normal\n'
            printf 'cert = %s\nkey = %s\nca = %s\n' "$W/pki/nnve.crt" "$W/pki/nnve.key" "$W/pki/ca.crt"
            printf 'state_dir = %s/state\ncontrol_socket = %s/ctl\nbackend = %s\n' "$dir" "$dir" "$2"
            printf 'max_tsis_per_session = 1000000\n'
            printf 'max_hello_pending = 4096\nmax_hello_pending_per_source = 4096\n'
            printf '[linux]\nbridge = br0\nvxlan_device = vxlan0\nanti_spoofing = %s\n' "$3"
            printf '[domain rack]\nports = *\ntags = 100-3999\n'
            for i in $(seq "$ports"); do
                printf '[hypervisor bench%d]\nport = swp%d\nvns = 5000-5099\n' "$i" "$i"
            done
        } >"$dir/n.conf"
        "$B/bin/nnve-daemon" -c "$dir/n.conf" 2>"$dir/daemon.log" &
        local pid=$! up=0
        for _ in $(seq 100); do
            "$B/bin/nnvectl" -s "$dir/ctl" version >/dev/null 2>&1 && { up=1; break; }
            sleep 0.1
        done
        if [ "$up" != 1 ]; then
            echo "nnve-linux bench: daemon ($name) did not start"
            cat "$dir/daemon.log"
            kill -TERM "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            switch_down
            return 1
        fi
        echo "-- $name: backend=$2 anti_spoofing=$3, $ports ports/sessions, $tsis TSIs"
        "$B/bench/nnve-load" --connect 127.0.0.1:8394 --pki "$W/pki" --pid "$pid" \
            --sessions "$ports" --tsis "$tsis" --rate "$rate" --max-sessions "$ports" 2>&1 |
            grep -Ev '^rss:'
        local nel
        nel=$(nft -j list table bridge splitnve 2>/dev/null |
            jq '[.nftables[] | select(.set) | (.set.elem // []) | length] | add // 0')
        echo "   kernel after the run: $(bridge fdb show br br0 | grep -c ' static') static FDB" \
            "entries, $(bridge -d link show | grep -c 'locked on') locked ports, ${nel:-0}" \
            "nftables elements"
        grep -E ' (err|warn) ' "$dir/daemon.log" | head -5 | sed 's/^/   daemon log| /'
        kill -TERM "$pid"
        wait "$pid"
        switch_down
    }
    run linux-on linux on
    run linux-mac linux mac
    run none none on
    exit 0
fi

# ------------------------------------------------------------------------------ on the host ---
: "${SPLITNVE_BUILD:?}" "${SPLITNVE_SRC:?}"
if grep -q -a __asan_init "$SPLITNVE_BUILD/bin/nnve-daemon" 2>/dev/null; then
    echo "nnve-linux bench: $SPLITNVE_BUILD is an ASan build, which cannot run inside UML: skipped"
    exit 0
fi
for p in nnve-daemon nnvectl; do
    [ -x "$SPLITNVE_BUILD/bin/$p" ] || { echo "nnve-linux bench: $p not built"; exit 1; }
done
[ -x "$SPLITNVE_BUILD/bench/nnve-load" ] || { echo "nnve-linux bench: nnve-load not built"; exit 1; }
ports=${NNVE_LINUX_BENCH_PORTS:-10}
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
"$SPLITNVE_SRC/scripts/gen-pki.sh" "$T/pki" nnve >/dev/null || exit 1
"$SPLITNVE_BUILD/bench/nnve-load" --gen-certs "$T/pki" "$ports" || exit 1
"$SPLITNVE_SRC/tests/uml/uml-run.sh" --mem 1G --timeout 900 --share "$T" \
    --env "NNVE_BENCH_DIR=$T" --env "NNVE_LINUX_BENCH_PORTS=$ports" \
    --env "NNVE_LINUX_BENCH_TSIS=${NNVE_LINUX_BENCH_TSIS:-10000}" \
    --env "NNVE_LINUX_BENCH_RATE=${NNVE_LINUX_BENCH_RATE:-500}" \
    "$SPLITNVE_SRC/bench/nnve-linux.sh" --inside
