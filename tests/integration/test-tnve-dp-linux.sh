#!/bin/bash
# test-tnve-dp-linux.sh: tnve-agent's Linux dataplane backend against a real VLAN-aware bridge.
#
# The host kernel has no 802.1Q, so the test boots User-Mode Linux (tests/uml/uml-run.sh) and
# runs itself inside with --inside: a vlan_filtering bridge br0 with veth "vNIC" ports and a
# veth uplink, a plain bridge br1, and tnve-dp-check (create/port_set/port_get/port_clear)
# checked against `bridge -j vlan show` after every step.  When UML cannot run, the test
# fails (it never skips).
#
# ASan binaries cannot run inside UML (its 512 GiB user address space has no room for ASan's
# shadow), so for an ASan build the tool is rebuilt here from the same sources with UBSan only.
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=${SPLITNVE_SRC:-$(cd "$here/../.." && pwd)}

# ---------------------------------------------------------------------------- inside UML ---
if [ "${1:-}" = "--inside" ]; then
    dpc=${DP_CHECK:?DP_CHECK not set}
    fails=0
    step() { echo "== $*"; }
    fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
    die() { echo "FAIL: $*"; exit 1; }

    # vl DEV: the VLANs of DEV as "VID=FLAGS" sorted, FLAGS P (PVID) U (untagged) or T.
    # (Every exec costs 50-100 ms inside UML: one bridge and one jq, nothing else.)
    vl() {
        bridge -j vlan show dev "$1" 2>/dev/null | jq -r --arg d "$1" '
            [ .[] | select(.ifname == $d) | .vlans[]
              | (.flags // []) as $f
              | (if .vlanEnd then range(.vlan; .vlanEnd + 1) else .vlan end) as $v
              | { v: $v,
                  s: ("\($v)=" + (if ($f | any(. == "PVID")) then "P" else "" end)
                      + (if ($f | any(. == "Egress Untagged")) then "U" else "T" end)) } ]
            | sort_by(.v) | map(.s) | join(" ")'
    }
    expect_vl() { # DEV EXPECTED WHAT
        local got
        got=$(vl "$1")
        [ "$got" = "$2" ] && echo "ok: $1 vlans [$got]" || fail "$3: $1 vlans [$got], want [$2]"
    }
    has_vl() { # DEV ENTRY WHAT  (ENTRY like 10=T)
        local got
        got=$(vl "$1")
        [[ " $got " == *" $2 "* ]] && echo "ok: $1 has $2" || fail "$3: $1 vlans [$got] lack $2"
    }
    lacks_vid() { # DEV VID WHAT
        local got
        got=$(vl "$1")
        [[ " $got " != *" $2="* ]] && echo "ok: $1 lacks vid $2" ||
            fail "$3: $1 vlans [$got] still hold vid $2"
    }
    out=/tmp/dpc.out err=/tmp/dpc.err
    # show PREFIX FILE: prints FILE with PREFIX on each line, without forking.
    show() {
        local line
        while IFS= read -r line; do echo "$1$line"; done <"$2"
    }
    # run_dpc STATUS ARGS...: runs tnve-dp-check, wants exit STATUS.
    run_dpc() {
        local want=$1
        shift
        "$dpc" "$@" >"$out" 2>"$err"
        local st=$?
        show "   out| " "$out"
        show "   log| " "$err"
        [ "$st" = "$want" ] || fail "tnve-dp-check $*: exit $st, want $want"
    }
    # file_has FILE TEXT: FILE contains TEXT (read without forking).
    file_has() {
        local text=
        IFS= read -r -d '' text <"$1"
        [[ $text == *"$2"* ]]
    }
    log_has() { file_has "$err" "$1" && echo "ok: log has '$1'" || fail "$2: no '$1' in the log"; }
    out_has() { file_has "$out" "$1" && echo "ok: output has '$1'" || fail "$2: no '$1' in the output"; }

    step "topology"
    ip link add br0 type bridge vlan_filtering 1 || die "no vlan_filtering bridge in UML"
    ip link add br1 type bridge vlan_filtering 0 || die "cannot create br1"
    for p in up0:up0p vnic0:vm0 vnic1:vm1 vnic2:vm2 up1:up1p loose:loosep; do
        ip link add "${p%%:*}" type veth peer name "${p##*:}" || die "veth $p"
    done
    for d in up0 vnic0 vnic1; do ip link set "$d" master br0 || die "enslave $d"; done
    for d in up1 vnic2; do ip link set "$d" master br1 || die "enslave $d"; done
    for d in br0 br1 up0 up0p vnic0 vm0 vnic1 vm1 vnic2 vm2 up1 up1p loose loosep; do
        ip link set "$d" up
    done
    expect_vl vnic0 "1=PU" "default VLAN before the agent"

    step "create() refuses what cannot work"
    run_dpc 3 -u up1 get vnic2
    log_has "vlan_filtering off" "uplink on a non-filtering bridge"
    log_has "br1" "the reason names the bridge"
    run_dpc 3 -u nosuch0 get vnic0
    log_has "uplink does not exist uplink=nosuch0" "missing uplink"
    run_dpc 3 -u loose get vnic0
    log_has "uplink is not a bridge port uplink=loose" "uplink outside any bridge"
    run_dpc 3 -u up0 -b br1 get vnic0
    log_has "not a port of the configured bridge" "uplink on another bridge than configured"
    run_dpc 3 -b br1 get vnic0
    log_has "vlan_filtering off" "configured bridge without filtering"
    run_dpc 0 -u up0 -b br0 get vnic0
    out_has "get vnic0 -> pvid 1" "port_get of the default PVID"

    step "port_set: the vNIC gets vid 10 as its only, untagged PVID; the uplink carries it tagged"
    run_dpc 0 -u up0 set vnic0 10
    expect_vl vnic0 "10=PU" "port_set 10"
    has_vl up0 "10=T" "uplink after port_set 10"
    has_vl up0 "1=PU" "uplink keeps its own VLANs"
    expect_vl vnic1 "1=PU" "another port is untouched"

    step "idempotence: the same port_set again changes nothing and sends no change"
    bridge monitor link vlan >/tmp/mon.idem 2>&1 &
    mon=$!
    sleep 0.3
    run_dpc 0 -v -u up0 set vnic0 10 set vnic0 10 get vnic0
    sleep 0.3
    kill "$mon" 2>/dev/null
    wait "$mon" 2>/dev/null
    if file_has "$err" "info dp-linux: vnic port set" || file_has "$err" "info dp-linux: uplink" ||
        file_has "$err" "info dp-linux: removing"; then
        fail "a repeated port_set changed something"
    else
        echo "ok: no change logged"
    fi
    log_has "already set port=vnic0 vid=10" "the backend saw nothing to do"
    [ -s /tmp/mon.idem ] && { show "   monitor| " /tmp/mon.idem; fail "kernel notified changes for a repeated port_set"; } ||
        echo "ok: no kernel notification"
    expect_vl vnic0 "10=PU" "after repeated port_set"

    step "port_set with another VID moves the PVID (monitor sees it: the check above can fail)"
    bridge monitor link vlan >/tmp/mon.move 2>&1 &
    mon=$!
    sleep 0.3
    run_dpc 0 -u up0 set vnic0 20
    sleep 0.3
    kill "$mon" 2>/dev/null
    wait "$mon" 2>/dev/null
    [ -s /tmp/mon.move ] && { show "   monitor| " /tmp/mon.move; echo "ok: monitor saw the move"; } || fail "bridge monitor saw no change for a real move"
    expect_vl vnic0 "20=PU" "moved to 20"
    has_vl up0 "20=T" "uplink carries 20"
    has_vl up0 "10=T" "uplink keeps 10 until cleared"

    step "VLANs set by others on the vNIC port go (the VM must see one VN only)"
    bridge vlan add dev vnic0 vid 99 || die "bridge vlan add 99"
    bridge vlan add dev vnic0 vid 100 untagged || die "bridge vlan add 100"
    run_dpc 0 -u up0 set vnic0 20
    expect_vl vnic0 "20=PU" "extra VLANs removed"
    log_has "removing vlan from vnic port port=vnic0 vid=99" "removal logged"

    step "a second vNIC of the same VN; port_clear keeps the uplink while in use"
    run_dpc 0 -u up0 set vnic1 20
    expect_vl vnic1 "20=PU" "vnic1 on 20"
    run_dpc 0 -u up0 clear-keep vnic0 20
    expect_vl vnic0 "" "port_clear empties vnic0"
    has_vl up0 "20=T" "uplink keeps 20 while vnic1 uses it"
    run_dpc 0 -u up0 clear vnic1 20
    expect_vl vnic1 "" "port_clear empties vnic1"
    lacks_vid up0 20 "uplink loses 20 with its last user"
    run_dpc 0 -u up0 clear vnic0 10
    lacks_vid up0 10 "uplink loses 10"
    has_vl up0 "1=PU" "uplink's own VLAN stays"

    step "port_clear of what is absent succeeds"
    run_dpc 0 -u up0 clear vnic1 20 clear nosuch0 20 clear loose 20
    out_has "clear nosuch0 20 -> ok" "clear of a missing port"

    step "port_get"
    run_dpc 0 -u up0 set vnic0 30 get vnic0 get vm0
    out_has "get vnic0 -> pvid 30" "port_get after set"
    out_has "get vm0 -> pvid 0" "port_get of a non-bridge port"
    run_dpc 1 -u up0 get nosuch0
    out_has "get nosuch0 -> error -19" "port_get of a missing port"

    step "errors name the interface and the VLAN"
    run_dpc 1 -u up0 set nosuch0 31
    log_has "vnic port does not exist port=nosuch0 vid=31" "missing port"
    run_dpc 1 -u up0 set vm0 32
    log_has "vnic port is not a bridge port port=vm0 vid=32" "port outside a bridge"
    run_dpc 1 -u up0 set vnic2 33
    log_has "different bridges port=vnic2 uplink=up0 vid=33" "port on another bridge"
    run_dpc 1 set vnic2 34
    log_has "vnic2: bridge br1 has vlan_filtering off" "port's bridge without filtering"
    run_dpc 1 -u up0 set up0 35
    log_has "refusing to make the uplink a vnic port port=up0 vid=35" "uplink as vNIC port"
    run_dpc 1 -u up0 set br0 36
    log_has "vnic port is a bridge, not a bridge port port=br0 vid=36" "bridge as vNIC port"
    run_dpc 1 -u up0 clear br0 1
    log_has "vnic port is a bridge, not a bridge port port=br0 vid=1" "port_clear of the bridge"
    expect_vl br0 "1=PU" "the bridge's own VLAN is untouched"
    run_dpc 1 -u up0 clear up0 1
    log_has "refusing to clear the uplink as a vnic port port=up0 vid=1" "port_clear of the uplink"
    has_vl up0 "1=PU" "the uplink's own VLAN is untouched"
    run_dpc 1 -u up0 set vnic0 4095
    log_has "invalid port_set port=vnic0 vid=4095" "vid out of range"
    expect_vl vnic0 "30=PU" "failed calls changed nothing"

    step "an uplink that had the VID untagged gets it tagged"
    bridge vlan add dev up0 vid 40 untagged || die "bridge vlan add 40"
    run_dpc 0 -u up0 set vnic0 40
    has_vl up0 "40=T" "uplink 40 tagged"
    log_has "uplink had the vlan untagged" "warning logged"

    step "no uplink configured: only the port is programmed"
    run_dpc 0 set vnic1 41
    expect_vl vnic1 "41=PU" "port without uplink"
    lacks_vid up0 41 "uplink untouched without -u"

    step "a configured bridge: its ports work, ports of other bridges are refused"
    run_dpc 0 -u up0 -b br0 set vnic1 42 get vnic1 clear vnic1 42
    out_has "get vnic1 -> pvid 42" "port_set with a configured bridge"
    expect_vl vnic1 "" "cleared again"
    run_dpc 1 -b br0 set vnic2 43
    log_has "not on the configured bridge port=vnic2 bridge=br0 vid=43" "port on another bridge"

    step "a long VLAN list on the uplink (1000 in a range, 900 single) still parses"
    {
        echo "vlan add dev up0 vid 1000-1999"
        for v in $(seq 2100 2 3898); do echo "vlan add dev up0 vid $v"; done
    } >/tmp/batch
    bridge -batch /tmp/batch || die "bridge -batch"
    run_dpc 0 -u up0 set vnic0 3000 get vnic0 set vnic0 3001 get vnic0 clear-keep vnic0 3001
    out_has "get vnic0 -> pvid 3000" "get with a long uplink list"
    has_vl up0 "3001=T" "uplink gained 3001"
    expect_vl vnic0 "" "cleared"

    step "short form (set, get, set, get, clear, get)"
    run_dpc 0 -u up0 vnic1 50
    out_has "get vnic1 -> pvid 50" "short form get"
    out_has "get vnic1 -> pvid 0" "short form get after clear"
    expect_vl vnic1 "" "short form leaves nothing"

    if [ "$fails" -ne 0 ]; then
        echo "inside UML: $fails check(s) failed"
        exit 1
    fi
    echo "inside UML: all checks passed"
    exit 0
fi

# ------------------------------------------------------------------------------ on the host ---
build=${SPLITNVE_BUILD:-$src/build}
tool=$build/tests/tools/tnve-dp-check
[ -x "$tool" ] || { echo "FAIL: $tool not built"; exit 1; }
command -v jq >/dev/null || { echo "FAIL: jq is not installed (scripts/install-deps.sh)"; exit 1; }

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

if grep -q -a __asan_init "$tool"; then
    echo "note: $tool is an ASan build, which cannot run inside UML; using a UBSan build of it"
    # shellcheck disable=SC2046
    if ! ${CC:-cc} -std=c11 -D_GNU_SOURCE -O1 -g -fsanitize=undefined -fno-sanitize-recover=all \
        -I"$src/lib" $(pkg-config --cflags libmnl) -o "$tmp/tnve-dp-check" \
        "$src/tests/tools/tnve-dp-check.c" "$src/tnve-agent/dp-linux.c" \
        "$src/tnve-agent/netlink.c" "$src/lib/snv-log.c" "$src/lib/snv-netlink.c" $(pkg-config --libs libmnl); then
        echo "FAIL: cannot build the UBSan variant of tnve-dp-check"
        exit 1
    fi
    tool=$tmp/tnve-dp-check
fi

"$src/tests/uml/uml-run.sh" --timeout 240 --share "$tmp" --env "DP_CHECK=$tool" \
    "$here/test-tnve-dp-linux.sh" --inside
st=$?
case $st in
0) echo "PASS: tnve-dp-linux" ;;
124 | 125) echo "FAIL: User-Mode Linux is unusable here (uml-run exit $st); this test does not skip" ;;
*) echo "FAIL: tnve-dp-linux (exit $st)" ;;
esac
exit "$st"
