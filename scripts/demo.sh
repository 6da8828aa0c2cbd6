#!/bin/bash
# demo.sh: the whole splitnve system on one machine, driven by a VM lifecycle story.
#
#   scripts/demo.sh [--shell] [--keep] BUILD_DIR       (make demo / make demo-shell)
#
# Starts, as local processes under one temporary directory: a private libvirtd serving the
# built-in test driver (no KVM needed), nnve-daemon (the switch side, "none" dataplane
# backend) and tnve-agent (the hypervisor side), with TLS 1.3 between them on 127.0.0.1 and
# a throwaway PKI.  Then it runs a story with virsh: two tenants, "blue" (VN 5001, chosen
# per vNIC through the domain metadata) and "green" (VN 5002, chosen by an agent mapping
# rule on the bridge name); define, start, pause, resume, managed save, restore, destroy,
# undefine.  After each step it waits (bounded) until the switch's state matches what the
# step must produce, then prints what an operator would look at.  A step that does not
# converge ends the demo with a message naming it and exit status 1.
#
#   --shell   set everything up, define the demo domains (not started) and open an
#             interactive shell with virsh, nnvectl and tnvectl pointing at the sandbox;
#             everything is torn down when the shell exits.
#   --keep    keep the temporary directory (logs, configs) after the run.
#
# Environment: DATAPLANE=none (default: control plane only, "none" backends) or uml (two
# racks with real packets inside User-Mode Linux: tests/uml/racks-lib.bash, driven by virsh),
# DEMO_TIMEOUT=SECONDS (per-step convergence deadline, default 10),
# DEMO_TAG_HOLD_DOWN (nnve-daemon tag_hold_down for the demo, default 4s), DEMO_KEEP=1 (as
# --keep), LIBVIRTD (the libvirtd binary, default /usr/sbin/libvirtd).
# Exit status: 0 the story ran and everything stopped cleanly; 1 a step failed or a daemon
# did not stop cleanly; 2 usage or a missing prerequisite.
set -uo pipefail

prog=demo.sh
shell_mode=0
keep=${DEMO_KEEP:-0}
while [ $# -gt 0 ]; do
    case $1 in
    --shell) shell_mode=1; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    -*) echo "$prog: unknown option $1 (try --help)" >&2; exit 2 ;;
    *) break ;;
    esac
done
if [ $# -ne 1 ]; then
    echo "usage: $prog [--shell] [--keep] BUILD_DIR" >&2
    exit 2
fi

top=$(cd "$(dirname "$0")/.." && pwd)
case $1 in
/*) build=$1 ;;
*) build=$top/$1 ;;
esac
bin=$build/bin
step_timeout=${DEMO_TIMEOUT:-10}
tag_hold_down=${DEMO_TAG_HOLD_DOWN:-4s}

# ---- DATAPLANE=uml: two racks with real packets inside User-Mode Linux ----------------------

# uml_story: runs inside UML (tests/uml/uml-run.sh) on the topology of
# tests/uml/racks-lib.bash; prints what an operator would look at after each step.
uml_story() {
    . "$top/tests/uml/racks-lib.bash"
    trap 'racks_stop' EXIT
    local failed=0 vm hv
    h() { printf '\n==== %s ====\n' "$*"; }
    show() { # NODE COMMAND...: prints the command as run on NODE and its output, indented
        local node=$1
        shift
        printf '\n-- [%s] %s\n' "$node" "$*"
        case $1 in
        nnvectl | tnvectl) "$RB/$1" -s "$R/$node/ctl" "${@:2}" ;;
        *) ip netns exec "$node" "$@" ;;
        esac 2>&1 | sed 's/^/   /'
    }
    check_ping() { # FROM TO WANT(reaches|blocked)
        local got=blocked tries=3
        [ "$3" = blocked ] && tries=1
        vm_ping "$1" "$(vm_ip "$2")" "$tries" && got=reaches
        printf '   ping %s (%s) -> %s (%s): %s' "$1" "$(vm_field "$1" 4)" "$2" "$(vm_field "$2" 4)" "$got"
        if [ "$got" = "$3" ]; then echo "  [as expected]"; else echo "  [UNEXPECTED: want $3]"; failed=1; fi
    }
    converge() { # WHAT CMD...
        racks_wait "$@" >/dev/null || { echo "demo: step did not converge: $1"; failed=1; return 1; }
    }
    all_acked() { # STATE VM...
        local st=$1 v
        shift
        for v in "$@"; do agent_acked "$v" "$st" || return 1; done
    }

    h "Topology"
    sed -n '/^#   rack 1/,/^#           and 203/p' "$top/tests/uml/racks-lib.bash" | sed 's/^#/ /'
    racks_start >/dev/null || { echo "demo: start-up failed"; return 1; }
    echo "   2 nnve-daemons (backend linux), 4 tnve-agents (dataplane linux), 4 private libvirtds: up"

    h "virsh define + start: vm1 hv1a blue, vm2 hv1b blue, vm3 hv1b red, vm4 hv2a blue, vm5 hv2b red"
    for vm in vm1 vm2 vm3 vm4 vm5; do vm_xml "$vm" >"$R/$vm.xml"; done
    for hv in $RACKS_HVS; do
        local cmds=""
        for vm in vm1 vm2 vm3 vm4 vm5; do
            [ "$(vm_field "$vm" 2)" = "$hv" ] && cmds+="define $R/$vm.xml; start $vm; "
        done
        echo "   virsh -c $(racks_uri "$hv") \"$cmds\""
        racks_virsh "$hv" "$cmds" >/dev/null || failed=1
    done
    converge "every VM activated" 20 all_acked activated vm1 vm2 vm3 vm4 vm5
    show "sw1" nnvectl show tsis
    show "sw1" nnvectl show vns
    show "sw2" nnvectl show tsis
    show "hv1b" tnvectl show tsis
    show "hv1b" bridge vlan show
    show "sw1" bridge vlan show
    show "sw1" bridge vlan tunnelshow
    show "sw1" bridge fdb show br br0 state static
    if ip netns exec sw1 nft list table bridge splitnve >/dev/null 2>&1; then
        show "sw1" nft list table bridge splitnve
    fi

    h "Traffic: one VN crosses the racks over VXLAN, VNs stay apart"
    check_ping vm1 vm4 reaches
    check_ping vm2 vm1 reaches
    check_ping vm3 vm5 reaches
    check_ping vm3 vm1 blocked
    check_ping vm5 vm4 blocked

    h "virsh managedsave vm4: its TSI goes back to Associated, its traffic stops"
    racks_virsh hv2a "managedsave vm4" >/dev/null || failed=1
    converge "vm4 associated" 10 agent_acked vm4 associated
    show "hv2a" tnvectl show tsis
    check_ping vm1 vm4 blocked
    h "virsh start vm4 (restore): Activated again, same tag, traffic flows"
    racks_virsh hv2a "start vm4" >/dev/null || failed=1
    converge "vm4 activated" 10 agent_acked vm4 activated
    show "sw2" nnvectl show tsis
    check_ping vm1 vm4 reaches

    h "virsh destroy every VM: nothing is left on the switches or the hypervisors"
    for hv in $RACKS_HVS; do
        local cmds=""
        for vm in vm1 vm2 vm3 vm4 vm5; do
            [ "$(vm_field "$vm" 2)" = "$hv" ] && cmds+="destroy $vm; "
        done
        racks_virsh "$hv" "$cmds" >/dev/null || failed=1
    done
    converge "every VM de-associated" 15 all_acked init vm1 vm2 vm3 vm4 vm5
    show "sw1" nnvectl show tsis
    show "sw1" bridge vlan show
    show "sw1" bridge vlan tunnelshow
    show "hv1b" bridge vlan show

    h "Stopping the daemons"
    for n in hv1a hv1b hv2a hv2b sw1 sw2; do
        racks_kill "$n" || { echo "   $n did not exit cleanly"; failed=1; }
    done
    racks_stop
    [ "$failed" = 0 ] && echo "   all stopped; demo complete" || echo "demo: some steps failed (see above)"
    return "$failed"
}

case ${DATAPLANE:-none} in
none) ;;
uml)
    if [ "${DEMO_UML_INSIDE:-}" = 1 ]; then
        uml_story
        exit $?
    fi
    for t in jq openssl virsh /usr/sbin/libvirtd; do
        command -v "$t" >/dev/null 2>&1 || { echo "$prog: missing $t: run 'make demo' (installs the packages)" >&2; exit 2; }
    done
    . "$top/tests/uml/racks-host.bash"
    ubin=$(racks_host_bins "$build" "$top") || { echo "$prog: $ubin" >&2; exit 2; }
    udir=$(mktemp -d "${TMPDIR:-/tmp}/splitnve-demo-uml.XXXXXX") || exit 2
    trap 'rm -rf "$udir"' EXIT
    "$top/scripts/gen-pki.sh" "$udir/pki" nnve1 nnve2 hv1a hv1b hv2a hv2b || exit 2
    echo "$prog: booting User-Mode Linux with two racks (about a minute)..."
    "$top/tests/uml/uml-run.sh" --mem 1G --timeout 240 --share "$udir" \
        --env "RACKS_BIN=$ubin" --env "RACKS_PKI=$udir/pki" --env DATAPLANE=uml \
        --env DEMO_UML_INSIDE=1 "$top/scripts/demo.sh" "$build"
    st=$?
    case $st in
    0) ;;
    124 | 125) echo "$prog: User-Mode Linux could not run the demo (uml-run exit $st)" >&2; st=1 ;;
    *) st=1 ;;
    esac
    exit "$st"
    ;;
*)
    echo "$prog: unknown DATAPLANE=${DATAPLANE} (this version supports: none, uml)" >&2
    exit 2
    ;;
esac

# ---- output ---------------------------------------------------------------------------

if [ -t 1 ]; then
    c_head=$'\e[1;34m' c_note=$'\e[2m' c_ok=$'\e[1;32m' c_bad=$'\e[1;31m' c_cmd=$'\e[1m'
    c_off=$'\e[0m'
else
    c_head='' c_note='' c_ok='' c_bad='' c_cmd='' c_off=''
fi

say() { printf '%s\n' "$*"; }
heading() {
    printf '\n%s==== %s ====%s\n' "$c_head" "$1" "$c_off"
    shift
    local line
    for line in "$@"; do
        printf '  %s\n' "$line"
    done
}
sub() { printf '\n%s-- %s%s\n' "$c_cmd" "$*" "$c_off"; }
note() { printf '%s%s%s\n' "$c_note" "$*" "$c_off"; }
die() {
    printf '\n%s%s: %s%s\n' "$c_bad" "$prog" "$*" "$c_off" >&2
    exit 1
}

# ---- prerequisites --------------------------------------------------------------------

libvirtd_bin=${LIBVIRTD:-/usr/sbin/libvirtd}
missing=()
for t in virsh jq openssl; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
[ -x "$libvirtd_bin" ] || missing+=("$libvirtd_bin")
for b in nnve-daemon nnvectl tnve-agent tnvectl; do
    [ -x "$bin/$b" ] || missing+=("$bin/$b")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "$prog: missing: ${missing[*]}" >&2
    echo "$prog: run 'make demo' (installs the packages and builds) or build into $build" >&2
    exit 2
fi

# ---- sandbox and teardown -------------------------------------------------------------

dir=$(mktemp -d "${TMPDIR:-/tmp}/splitnve-demo.XXXXXX") || exit 2
uri="test+unix:///default?socket=$dir/run/libvirt-sock"
nnve_ctl=$dir/run/nnve-daemon.ctl
tnve_ctl=$dir/run/tnve-agent.ctl
nnve_log=$dir/log/nnve-daemon.log
tnve_log=$dir/log/tnve-agent.log
libvirtd_log=$dir/log/libvirtd.log
journal=$dir/nnve-state/dataplane.journal
libvirtd_pid='' nnve_pid='' tnve_pid=''
teardown_failed=0
torn_down=0

# stop_pid NAME PID: SIGTERM, wait up to 10 s, then SIGKILL.  A process that needed SIGKILL
# or exited non-zero (e.g. a leak report under ASan) marks the teardown as failed.
stop_pid() {
    local name=$1 pid=$2 i rc
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || {
        wait "$pid" 2>/dev/null
        rc=$?
        if [ "$rc" -ne 0 ]; then
            note "$name (pid $pid) had already exited with status $rc"
            teardown_failed=1
        fi
        return 0
    }
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        note "$name (pid $pid) did not stop within 10 s of SIGTERM: killing it"
        kill -KILL "$pid" 2>/dev/null
        teardown_failed=1
    fi
    wait "$pid" 2>/dev/null
    rc=$?
    if [ "$rc" -ne 0 ]; then
        note "$name (pid $pid) exited with status $rc at shutdown"
        teardown_failed=1
    fi
}

teardown() {
    [ "$torn_down" = 0 ] || return 0
    torn_down=1
    # Agent first (it holds the libvirt connection), then the switch, then libvirtd.
    stop_pid tnve-agent "$tnve_pid"
    tnve_pid=''
    stop_pid nnve-daemon "$nnve_pid"
    nnve_pid=''
    stop_pid libvirtd "$libvirtd_pid"
    libvirtd_pid=''
    if [ "$teardown_failed" = 1 ]; then
        show_log_tail "nnve-daemon" "$nnve_log" 15
        show_log_tail "tnve-agent" "$tnve_log" 15
    fi
    if [ "$keep" = 1 ]; then
        note "kept $dir"
    else
        rm -rf "$dir"
    fi
}

# on_exit [RC]: RC, when given, is the status the script exits with (an EXIT trap that runs
# other commands first passes the status it was entered with).
on_exit() {
    local rc=$?
    [ $# -eq 0 ] || rc=$1
    trap - EXIT INT TERM
    teardown
    [ "$teardown_failed" = 0 ] || [ "$rc" -ne 0 ] || rc=1
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_log_tail() { # NAME FILE LINES
    [ -s "$2" ] || return 0
    printf '\n%s-- last %s lines of %s (%s)%s\n' "$c_cmd" "$3" "$1" "$2" "$c_off" >&2
    tail -n "$3" "$2" | sed 's/^/   /' >&2
}

# fail MESSAGE...: a step did not converge or a component failed.
fail() {
    printf '\n%s%s: FAILED: %s%s\n' "$c_bad" "$prog" "$1" "$c_off" >&2
    shift
    local line
    for line in "$@"; do
        printf '  %s\n' "$line" >&2
    done
    show_log_tail "nnve-daemon" "$nnve_log" 25
    show_log_tail "tnve-agent" "$tnve_log" 25
    [ "$keep" = 1 ] || note "(rerun with --keep, or DEMO_KEEP=1 make demo, to keep the sandbox's logs and configs)" >&2
    exit 1
}

# wait_until DESCRIPTION SECONDS CMD...: polls CMD every 50 ms until it succeeds; fails
# after SECONDS (DESCRIPTION documents the call).
wait_until() {
    local secs=$2 deadline
    shift 2
    deadline=$((SECONDS + secs))
    while ! "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.05
    done
    return 0
}

alive() { # NAME PID: fails the demo if the process died
    kill -0 "$2" 2>/dev/null || fail "$1 (pid $2) exited during start-up" "see its log below"
}

mkdir -p "$dir/run" "$dir/log" "$dir/pki" "$dir/nodrivers" "$dir/nnve-state" \
    "$dir/tnve-state" "$dir/domains" "$dir/bin" || exit 2

# ---- throwaway PKI ----------------------------------------------------------------------

"$top/scripts/gen-pki.sh" "$dir/pki" nnve1 hv1 || fail "scripts/gen-pki.sh failed"

# ---- private libvirtd (test driver only) ----------------------------------------------

cat >"$dir/libvirtd.conf" <<CONF
unix_sock_dir="$dir/run"
unix_sock_rw_perms="0770"
auth_unix_rw="none"
auth_unix_ro="none"
log_outputs="3:file:$libvirtd_log"
CONF
# An empty driver directory keeps only the built-in test driver: no system users, no KVM.
LIBVIRT_DRIVER_DIR=$dir/nodrivers "$libvirtd_bin" --config "$dir/libvirtd.conf" \
    --pid-file "$dir/run/libvirtd.pid" >"$dir/log/libvirtd.out" 2>&1 &
libvirtd_pid=$!
wait_until "libvirtd socket" 10 test -S "$dir/run/libvirt-sock" ||
    fail "the private libvirtd did not create $dir/run/libvirt-sock within 10 s" \
        "$(cat "$dir/log/libvirtd.out" 2>/dev/null)"
alive libvirtd "$libvirtd_pid"

# ---- nnve-daemon ----------------------------------------------------------------------

write_nnve_conf() {
    cat >"$dir/nnve-daemon.conf" <<CONF
# nnve-daemon configuration written by the demo (see README.md, "Configuration").
# Port 0: the kernel picks a free port, which the daemon's start line reports.
[global]
listen = 127.0.0.1:0
cert = $dir/pki/nnve1.crt
key = $dir/pki/nnve1.key
ca = $dir/pki/ca.crt
node_id = nnve1
state_dir = $dir/nnve-state
control_socket = $nnve_ctl
backend = none
dataplane_journal = $journal
hold_time = 30s
tag_hold_down = $tag_hold_down
log_level = info

# One significance domain: the switch port the demo hypervisor is cabled to.
[domain rack1]
ports = swp1
tags = 100-199

# The demo hypervisor: its identity is its certificate's name (DNS SAN "hv1").
[hypervisor hv1]
port = swp1
vns = blue, green

[vn blue]
id = 5001

[vn green]
id = 5002
CONF
}

nnvectl() { "$bin/nnvectl" -s "$nnve_ctl" "$@"; }
tnvectl() { "$bin/tnvectl" -s "$tnve_ctl" "$@"; }

write_nnve_conf
"$bin/nnve-daemon" -f -c "$dir/nnve-daemon.conf" >"$nnve_log" 2>&1 &
nnve_pid=$!
wait_until "nnve-daemon control socket" 10 nnvectl show sessions ||
    fail "nnve-daemon did not answer on its control socket $nnve_ctl within 10 s"
wait_until "nnve-daemon start line" 10 grep -q 'daemon: started' "$nnve_log" ||
    fail "nnve-daemon logged no start line within 10 s"
nnve_port=$(grep -m1 'daemon: started' "$nnve_log" | sed -n 's/.* port=\([0-9]*\).*/\1/p')
[ -n "$nnve_port" ] && [ "$nnve_port" != 0 ] || fail "no port in nnve-daemon's start line"
alive nnve-daemon "$nnve_pid"

# ---- tnve-agent -----------------------------------------------------------------------

cat >"$dir/tnve-agent.conf" <<CONF
# tnve-agent configuration written by the demo (see README.md, "Configuration").
libvirt_uri = $uri
nnve_address = 127.0.0.1
nnve_port = $nnve_port
nnve_identity = nnve1
cert = $dir/pki/hv1.crt
key = $dir/pki/hv1.key
ca = $dir/pki/ca.crt
node_id = hv1
dataplane = none
state_dir = $dir/tnve-state
control_socket = $tnve_ctl

# Tenant green: every vNIC plugged into bridge br-green is in VN 5002 ("green").
# (Tenant blue's vNICs name their VN in the domain metadata instead.)
[map green]
bridge = br-green
vn_id = 5002
vn_name = green
CONF

"$bin/tnve-agent" -f -c "$dir/tnve-agent.conf" >"$tnve_log" 2>&1 &
tnve_pid=$!
wait_until "tnve-agent control socket" 10 tnvectl show session ||
    { alive tnve-agent "$tnve_pid"; fail "tnve-agent did not answer on $tnve_ctl within 10 s"; }

session_up() {
    nnvectl --json show sessions | jq -e 'map(select(.hypervisor == "hv1")) | length == 1' \
        >/dev/null
}
wait_until "SNCP session" "$step_timeout" session_up || {
    alive tnve-agent "$tnve_pid"
    fail "no SNCP session from hv1 at nnve-daemon after ${step_timeout} s" \
        "nnvectl show sessions: $(nnvectl show sessions 2>&1)" \
        "tnvectl show session: $(tnvectl show session 2>&1)"
}

# ---- the demo domains -----------------------------------------------------------------

# name uuid mac bridge tenant
domains=(
    "blue-web  0b1e0000-0000-4000-8000-000000000001 52:54:00:b1:00:01 br-tenants blue"
    "blue-db   0b1e0000-0000-4000-8000-000000000002 52:54:00:b1:00:02 br-tenants blue"
    "green-app 06ee0000-0000-4000-8000-000000000003 52:54:00:9e:00:01 br-green   green"
)
names_json='{}'
for d in "${domains[@]}"; do
    read -r name uuid mac bridge tenant <<<"$d"
    cat >"$dir/domains/$name.xml" <<XML
<domain type='test'>
  <name>$name</name>
  <uuid>$uuid</uuid>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
  <devices>
    <interface type='bridge'>
      <mac address='$mac'/>
      <source bridge='$bridge'/>
    </interface>
  </devices>
</domain>
XML
    names_json=$(jq -c --arg m "$mac" --arg n "$name" '. + {($m): $n}' <<<"$names_json")
done

virsh_run() { # shows and runs one virsh command line (several commands separated by ;)
    printf '%s$ virsh %s%s\n' "$c_cmd" "$*" "$c_off"
    local out
    if [[ "$*" =~ ^managedsave\ ([^ \;]+)$ ]]; then
        # the same API call as virsh's, whose job watcher can miss the end of the save
        out=$("$build/tests/tools/virt-managedsave" "$uri" "${BASH_REMATCH[1]}" 2>&1)
    else
        out=$(virsh -c "$uri" -q "$@" 2>&1)
    fi
    if [ $? -ne 0 ]; then
        printf '%s\n' "$out" | sed 's/^/  /'
        fail "virsh $* failed"
    fi
    [ -z "$out" ] || printf '%s\n' "$out" | sed '/^$/d; s/^/  /'
}

# ---- state of the switch, as the operator sees it --------------------------------------

# check: one look at both daemons (three nnvectl calls, one tnvectl call, one jq) that
# prints four lines:
#   sig=blue-web=activated blue-db=absent green-app=associated vn5001=connected
#       vn5002=absent tags-in-use=1 tags-held=0      (on one line: what steps compare)
#   settled=true|false       every TSI at the agent has its desired state acknowledged
#   tags={"5001":100}        each VN's tag at the switch
#   problems=...             broken tag rules: a TSI whose tag is not its VN's tag, or a
#                            VN whose tag changed while its VAP existed ("" when none)
check_prog='
def tsi_state($mac): [.tsis[] | select((.tsi | ascii_downcase | split("/") | last) == $mac)]
    | if length == 0 then "absent" elif length == 1 then .[0].state
      else "duplicated(\(length))" end;
def vn_state($id): [.vns[] | select(.vn_id == $id)]
    | if length == 0 then "absent" else .[0].state end;
. as $s
| ($s.vns | map({key: "\(.vn_id)", value: .tag}) | from_entries) as $tags
| "sig=" + ([ ($names | to_entries[] | .key as $mac | "\(.value)=\($s | tsi_state($mac))"),
    "vn5001=\(vn_state(5001))", "vn5002=\(vn_state(5002))",
    "tags-in-use=\([.tags[].used] | add // 0)", "tags-held=\([.tags[].held] | add // 0)" ]
    | join(" ")),
  "settled=\(all(.agent[]; .desired == .acked))",
  "tags=\($tags | tojson)",
  "problems=" + ([ (.tsis[] | select(.tag != $tags["\(.vn_id)"])
        | "TSI \(.tsi) has tag \(.tag), its VN \(.vn_id) has \($tags["\(.vn_id)"])"),
      ($tags | to_entries[] | select($prev[.key] != null and $prev[.key] != .value)
        | "VN \(.key) changed tag from \($prev[.key]) to \(.value) while its VAP existed") ]
    | join("; "))'
vn_tags='{}'
check() {
    local tsis vns tags agent
    tsis=$(nnvectl --json show tsis) && vns=$(nnvectl --json show vns) &&
        tags=$(nnvectl --json show tags) && agent=$(tnvectl --json show tsis) || return 1
    jq -rn --argjson tsis "$tsis" --argjson vns "$vns" --argjson tags "$tags" \
        --argjson agent "$agent" --argjson names "$names_json" --argjson prev "$vn_tags" \
        '{tsis: $tsis, vns: $vns, tags: $tags, agent: $agent} | '"$check_prog"
}

now_ms() { date +%s%3N; }

# converge STEP EXPECTED: waits until the switch's signature equals EXPECTED, the tag rules
# hold and the agent has nothing left to do, at most $step_timeout seconds.
converge() {
    local step=$1 expected=$2 t0 deadline out seen='' settled='' problems='' tags=''
    t0=$(now_ms)
    deadline=$((SECONDS + step_timeout))
    while :; do
        if out=$(check 2>/dev/null); then
            seen=$(sed -n 's/^sig=//p' <<<"$out")
            settled=$(sed -n 's/^settled=//p' <<<"$out")
            tags=$(sed -n 's/^tags=//p' <<<"$out")
            problems=$(sed -n 's/^problems=//p' <<<"$out")
            if [ "$seen" = "$expected" ] && [ -z "$problems" ] && [ "$settled" = true ]; then
                break
            fi
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            kill -0 "$nnve_pid" 2>/dev/null || seen="$seen (nnve-daemon is not running)"
            kill -0 "$tnve_pid" 2>/dev/null || seen="$seen (tnve-agent is not running)"
            fail "step \"$step\" did not converge within ${step_timeout} s" \
                "expected: $expected" \
                "seen:     ${seen:-(no answer from nnvectl/tnvectl)}" \
                ${problems:+"tags:     $problems"} \
                "agent:    $(if [ "$settled" = true ]; then
                    echo "every TSI acknowledged as desired"
                else
                    echo "TSIs not acknowledged as desired:"
                    tnvectl show tsis 2>&1
                fi)"
        fi
        sleep 0.05
    done
    vn_tags=$tags
    printf '%s   converged in %d ms: %s%s\n' "$c_ok" $(($(now_ms) - t0)) "$seen" "$c_off"
}

# agent_domain_is NAME REGEX: the agent's view of the domain's state (its last event, e.g.
# "suspended") matches REGEX.
agent_domain_is() {
    tnvectl --json show domains |
        jq -e --arg n "$1" --arg re "$2" 'any(.[]; .name == $n and (.state | test($re)))' \
            >/dev/null
}
agent_has_no_demo_domains() {
    tnvectl --json show domains |
        jq -e 'map(select(.name | test("^(blue|green)-"))) | length == 0' >/dev/null
}
ST_PAUSED='^(suspended|paused)'

# ---- what the operator looks at after each step ---------------------------------------

declare -A log_mark=()
log_mark[nnve]=0 log_mark[tnve]=0 log_mark[journal]=0

# new_lines KEY FILE: writes the lines of FILE added since the previous call to
# $dir/new-lines (run it in the main shell: it keeps its position in log_mark).
new_lines() {
    local key=$1 file=$2 n=0
    : >"$dir/new-lines"
    [ -f "$file" ] || return 0
    n=$(wc -l <"$file")
    if [ "$n" -gt "${log_mark[$key]}" ]; then
        tail -n +"$((log_mark[$key] + 1))" "$file" | head -n "$((n - log_mark[$key]))" \
            >"$dir/new-lines"
    fi
    log_mark[$key]=$n
}

# Log lines are "TIME PROG[PID]: LEVEL module: text"; show time (HH:MM:SS.mmm), level
# when not info or audit (state changes), and the text; leave out debug lines, and the "none" backend's info lines
# (its journal is shown instead).
format_log() {
    sed -n -E '/\]: debug /d
        /\]: info backend: none: /d
        s/^[0-9-]+T([0-9:.]+)Z [^ ]+\]: (info|audit) /  \1  /p
        t
        s/^[0-9-]+T([0-9:.]+)Z [^ ]+\]: (warn|err) /  \1  \2: /p
        t
        /^[0-9-]+T/d
        s/^/  /p'
}

# indent: prints its input indented, or "(none)" when it is empty.
indent() {
    local text
    text=$(cat)
    if [ -n "$text" ]; then
        printf '%s\n' "$text" | sed 's/^/  /'
    else
        note "  (none)"
    fi
}

show_state() { # [tags]
    sub "nnvectl show vns          (the switch: one VAP per VN, its local tag)"
    nnvectl show vns | indent
    sub "nnvectl show tsis         (the switch: one instance per vNIC)"
    nnvectl show tsis | indent
    if [ "${1:-}" = tags ]; then
        sub "nnvectl show tags         (the tag pool of each significance domain)"
        nnvectl show tags | indent
    fi
    sub "tnvectl show tsis         (the hypervisor agent: desired vs acknowledged;"
    say "                             some columns: domain, mac, vn, desired, acked, tag, pending)"
    tnvectl --json show tsis | jq -r '
        def pad($w): . + (" " * ($w - length) // "");
        if length == 0 then empty else
            ([["DOMAIN", "MAC", "VN", "DESIRED", "ACKED", "TAG", "PENDING"]] +
             map([.domain, .mac, "\(.vn_id // "-")/\(.vn_name // "-")", .desired, .acked,
                  (if .tag == 0 then "-" else .tag end), .pending] | map(tostring))) as $rows
            | ($rows | transpose | map(map(length) | max)) as $w
            | $rows[] | [range(0; length) as $i | .[$i] | pad($w[$i])] | join("  ")
            | sub(" +$"; "")
        end' | indent
    local lines
    new_lines nnve "$nnve_log"
    lines=$(format_log <"$dir/new-lines")
    if [ -n "$lines" ]; then
        sub "nnve-daemon log (new lines)"
        printf '%s\n' "$lines"
    fi
    new_lines tnve "$tnve_log"
    lines=$(format_log <"$dir/new-lines")
    if [ -n "$lines" ]; then
        sub "tnve-agent log (new lines)"
        printf '%s\n' "$lines"
    fi
    new_lines journal "$journal"
    if [ -s "$dir/new-lines" ]; then
        sub "switch dataplane: what the \"none\" backend would program (its journal)"
        sed 's/^/  /' "$dir/new-lines"
    fi
}

# Absent expectations are spelled out once here.
S_NONE="blue-web=absent blue-db=absent green-app=absent"

# ---- set-up summary --------------------------------------------------------------------

heading "splitnve demo: a hypervisor (tnve-agent) and its top-of-rack switch (nnve-daemon)" \
    "sandbox     $dir" \
    "libvirt     $uri   (private libvirtd, test driver)" \
    "switch      nnve-daemon pid $nnve_pid, SNCP over TLS 1.3 on 127.0.0.1:$nnve_port," \
    "            identity nnve1, port swp1 in significance domain rack1, tags 100-199," \
    "            tag hold-down $tag_hold_down, dataplane backend \"none\" (records only)" \
    "hypervisor  tnve-agent pid $tnve_pid, identity hv1 (from its certificate)" \
    "tenants     blue  = VN 5001, per vNIC in the domain metadata (urn:splitnve:vn:1)" \
    "            green = VN 5002, by the agent's [map green] rule on bridge br-green"
sub "nnvectl show sessions"
nnvectl show sessions | sed 's/^/  /'
show_state

define_domains() {
    local d name uuid mac bridge tenant
    for d in "${domains[@]}"; do
        read -r name uuid mac bridge tenant <<<"$d"
        virsh_run define "$dir/domains/$name.xml"
        if [ "$tenant" = blue ]; then
            virsh_run metadata "$name" --uri urn:splitnve:vn:1 --key splitnve --config \
                --set "<vnics><vnic mac='$mac' vn-id='5001' vn-name='blue'/></vnics>"
        fi
    done
}

# ---- interactive mode -----------------------------------------------------------------

if [ "$shell_mode" = 1 ]; then
    heading "Defining the demo domains (not started)" \
        "blue-web and blue-db get VN 5001 through 'virsh metadata'; green-app is on br-green."
    define_domains
    for t in nnvectl:"$nnve_ctl" tnvectl:"$tnve_ctl"; do
        cat >"$dir/bin/${t%%:*}" <<WRAP
#!/bin/sh
exec "$bin/${t%%:*}" -s "${t#*:}" "\$@"
WRAP
        chmod +x "$dir/bin/${t%%:*}"
    done
    cat >"$dir/bashrc" <<RC
[ -f ~/.bashrc ] && . ~/.bashrc
export LIBVIRT_DEFAULT_URI='$uri'
export PATH='$dir/bin:$bin':\$PATH
PS1='(splitnve-demo) \\\$ '
RC
    heading "Interactive sandbox (exit the shell to tear everything down)" \
        "virsh list --all                     the demo domains (LIBVIRT_DEFAULT_URI is set)" \
        "virsh start blue-web                 start a VM: its vNIC is associated + activated" \
        "virsh suspend|resume blue-web        pause keeps the association (RFC 8394 2.4)" \
        "virsh managedsave green-app          deactivate (stays associated)" \
        "virsh destroy blue-web               de-associate; last vNIC of a VN: disconnect" \
        "nnvectl show sessions|vns|tsis|tags|counters      the switch (add --json)" \
        "nnvectl tsi deactivate|deassociate TSI            operator actions at the switch," \
        "   e.g. TSI = 0b1e0000-0000-4000-8000-000000000001/52:54:00:b1:00:01 (blue-web)" \
        "nnvectl vn disconnect hv1 5001                    (the agent converges back)" \
        "tnvectl show domains|tsis|session|counters        the hypervisor agent" \
        "logs: $dir/log/   configs: $dir/*.conf"
    echo
    # Ctrl-C belongs to the interactive shell: here it must not end the sandbox.
    trap : INT
    bash --rcfile "$dir/bashrc" -i
    trap 'exit 130' INT
    echo
    note "tearing down the sandbox"
    exit 0
fi

# ---- the story ------------------------------------------------------------------------

heading "1. Define three VMs" \
    "virsh define only writes a configuration: nothing runs yet, so nothing is associated" \
    "at the switch (RFC 8394 2.1; the agent can associate ahead of start with" \
    "associate_on_define = yes).  blue-web and blue-db name their VN in the domain" \
    "metadata with 'virsh metadata'; green-app's VN comes from the agent's [map] rule."
define_domains
converge "define" "$S_NONE vn5001=absent vn5002=absent tags-in-use=0 tags-held=0"
show_state

heading "2. Start blue-web" \
    "A VM starts: its vNIC (a TSI) must be associated and activated at the External NVE." \
    "The agent connects VN 5001 (VN_CONNECT, RFC 8394 Req-5); the switch creates a VAP for" \
    "(rack1, VN 5001) and allocates a local VLAN tag; then TSI_ACTIVATE takes the TSI from" \
    "Init to Activated in one step (Figure 6)."
virsh_run start blue-web
converge "start blue-web" \
    "blue-web=activated blue-db=absent green-app=absent vn5001=connected vn5002=absent tags-in-use=1 tags-held=0"
show_state

heading "3. Start blue-db and green-app" \
    "blue-db joins VN 5001, already connected: it gets the same tag as blue-web (one tag per" \
    "VN and significance domain).  green-app is tenant green: VN 5002 gets its own tag."
virsh_run "start blue-db; start green-app"
converge "start blue-db and green-app" \
    "blue-web=activated blue-db=activated green-app=activated vn5001=connected vn5002=connected tags-in-use=2 tags-held=0"
show_state

heading "4. Pause blue-web" \
    "A paused VM keeps its association and activation (RFC 8394 2.4): nothing is sent."
virsh_run suspend blue-web
wait_until "agent saw the pause" "$step_timeout" agent_domain_is blue-web "$ST_PAUSED" ||
    fail "step \"pause blue-web\": the agent does not show blue-web as paused" \
        "$(tnvectl show domains 2>&1)"
converge "pause blue-web" \
    "blue-web=activated blue-db=activated green-app=activated vn5001=connected vn5002=connected tags-in-use=2 tags-held=0"
show_state

heading "5. Resume blue-web" \
    "Resuming a paused VM: the TSI is still Activated, TSI_ACTIVATE is idempotent."
virsh_run resume blue-web
converge "resume blue-web" \
    "blue-web=activated blue-db=activated green-app=activated vn5001=connected vn5002=connected tags-in-use=2 tags-held=0"
show_state

heading "6. Managed save of green-app" \
    "The VM is saved to disk and stops running: TSI_DEACTIVATE.  The TSI goes back to" \
    "Associated (Figure 6): forwarding entries are removed, the reservation and the VN's" \
    "tag stay, so the VM can come back quickly."
virsh_run managedsave green-app
converge "managed save green-app" \
    "blue-web=activated blue-db=activated green-app=associated vn5001=connected vn5002=connected tags-in-use=2 tags-held=0"
show_state

heading "7. Restore green-app (virsh start after a managed save)" \
    "The VM runs again: TSI_ACTIVATE, Associated -> Activated, same tag as before."
virsh_run start green-app
converge "restore green-app" \
    "blue-web=activated blue-db=activated green-app=activated vn5001=connected vn5002=connected tags-in-use=2 tags-held=0"
show_state

heading "8. The switch operator deactivates blue-db" \
    "The External NVE can act on its own (RFC 8394 Req-6, Req-9): 'nnvectl tsi deactivate'" \
    "moves the TSI to Associated at the switch and tells the agent (TSI_DEACTIVATE from the" \
    "nNVE).  The agent acknowledges, but libvirt still runs the VM: after a short backoff it" \
    "converges back and activates the TSI again."
blue_db_tsi=0b1e0000-0000-4000-8000-000000000002/52:54:00:b1:00:02
printf '%s$ nnvectl tsi deactivate %s%s\n' "$c_cmd" "$blue_db_tsi" "$c_off"
nnvectl tsi deactivate "$blue_db_tsi" | indent ||
    fail "step \"operator deactivate\": nnvectl tsi deactivate failed"
converge "operator deactivate, agent converges back" \
    "blue-web=activated blue-db=activated green-app=activated vn5001=connected vn5002=connected tags-in-use=2 tags-held=0"
show_state

heading "9. Destroy blue-web" \
    "The VM stops: TSI_DEASSOCIATE, back to Init (the instance is removed).  VN 5001 still" \
    "has blue-db on this hypervisor, so it stays connected with its tag."
virsh_run destroy blue-web
converge "destroy blue-web" \
    "blue-web=absent blue-db=activated green-app=activated vn5001=connected vn5002=connected tags-in-use=2 tags-held=0"
show_state

heading "10. Destroy blue-db and green-app" \
    "The last TSI of each VN goes: the agent disconnects the VN (VN_DISCONNECT).  The VAP" \
    "ends and its tag enters the hold-down ($tag_hold_down here): reserved for that VN, so a" \
    "VM that comes back soon gets the same tag, and no other VN can take it yet."
virsh_run "destroy blue-db; destroy green-app"
converge "destroy blue-db and green-app" \
    "$S_NONE vn5001=hold-down vn5002=hold-down tags-in-use=0 tags-held=2"
show_state tags

heading "11. Tag hold-down expires" \
    "After tag_hold_down the two tags return to the pool of domain rack1."
converge "tag hold-down expiry" \
    "$S_NONE vn5001=absent vn5002=absent tags-in-use=0 tags-held=0"
show_state tags

heading "12. Undefine the VMs" \
    "The configurations are removed; the agent forgets the domains and makes sure nothing" \
    "is left at the switch."
virsh_run "undefine blue-web; undefine blue-db; undefine green-app --managed-save"
converge "undefine" "$S_NONE vn5001=absent vn5002=absent tags-in-use=0 tags-held=0"
wait_until "agent forgot the domains" "$step_timeout" agent_has_no_demo_domains ||
    fail "step \"undefine\": the agent still tracks demo domains after ${step_timeout} s" \
        "$(tnvectl show domains 2>&1)"
show_state

sub "nnvectl show counters"
nnvectl show counters | sed 's/^/  /'

heading "Stopping everything" "tnve-agent, nnve-daemon and libvirtd get SIGTERM."
teardown
if [ "$teardown_failed" = 1 ]; then
    die "a daemon did not stop cleanly (see above)"
fi

# What the two hosts say when the migration chapter fails (its files go with it): the
# migration's output, the guest's state on each host, and the last lines of its QEMU log,
# libvirtd's errors, the agents' warnings, the destination's hook calls, the lifecycle
# events on both hosts and the guest's serial console.
mig_explain() {
    local h D
    say "  virsh migrate: $(tr '\n' ' ' <"$T/migrate.out" 2>/dev/null)"
    for h in A B; do
        D=$(mig_dir "$h")
        say "  host $h: mover is $(mig_virsh "$h" domstate mover --reason 2>&1 | head -n 1)"
        tail -n 5 "$D/log/qemu/mover.log" 2>/dev/null | sed "s/^/  $h qemu: /"
        grep -E ': (error|warning) : ' "$D/log/libvirtd.log" 2>/dev/null | tail -n 5 | sed "s/^/  $h libvirtd: /"
        grep -E ' (warn|err) ' "$T/agent-$h.log" 2>/dev/null | tail -n 5 | sed "s/^/  $h agent: /"
    done
    tail -n 5 "$T/hooks-B.log" 2>/dev/null | sed 's/^/  B hook: /'
    for h in A B; do
        grep -hE "^[0-9]{4}-.*'lifecycle' for domain 'mover'" "$T/events-$h.log" 2>/dev/null |
            tail -n 4 | sed "s/^/  $h event: /"
    done
    # a guest that stops on its own right after the switch-over (panic=-1 reboots it, and
    # on_reboot=destroy stops it) says why on its serial console, shared by both hosts: from
    # its kernel's first complaint, else its last lines
    mig_panic_lines | sed 's/^/  guest console: /'
}

# mig_panic_lines: the guest's serial console (shared by both hosts) since its last start
# (line mover_console of the file), from its kernel's first complaint on (30 lines), else
# its last 5 lines.
mover_console=0
mig_panic_lines() {
    local n
    tail -n +"$((mover_console + 1))" "$T/console-mover.log" 2>/dev/null >"$T/console.now"
    n=$(grep -n -m1 -E 'BUG|WARNING|Oops|Kernel panic|general protection|RIP:|segfault' "$T/console.now" | cut -d: -f1)
    if [ -n "$n" ]; then sed -n "$n,$((n + 29))p" "$T/console.now"; else tail -n 5 "$T/console.now"; fi
}

# mig_settle: mover (just started on A) has booted and settled (mig_wait_booted), and the
# switch holds its TSI activated at hva.
mig_settle() {
    local why
    mig_wait_booted mover "$mover_console" ||
        { say "  mover did not boot on host A within 90 s"; mig_panic_lines | sed 's/^/  guest console: /'; return 1; }
    why=$(mig_wait_converged 60 "mover/$MOVER_UUID/$MOVER_MAC/5001") ||
        { say "  after the start on A: $why"; return 1; }
}

# mig_move: moves mover from A to B (virsh migrate, slowed until the switch shows the
# destination's instance, so that the demo can show it) and waits until everything agrees.
# Returns 0 once mover runs on B and the switch and both agents agree, 2 when the guest's
# kernel panicked during the move (it then runs nowhere), 1 on any other failure.
mig_move() {
    local pid i rc=0 deadline why='' where
    : >"$T/hooks-B.log"
    ev_mark_a=$(mig_event_mark A) ev_mark_b=$(mig_event_mark B)
    sub "before: nnvectl show tsis   (mover runs on A: one instance, at hva)"
    nnvectl show tsis | indent
    printf '%s$ virsh -c HOST-A migrate --live mover HOST-B --bandwidth 30 ...%s\n' "$c_cmd" "$c_off"
    mig_migrate A B mover --bandwidth 30 >"$T/migrate.out" 2>&1 &
    pid=$!
    for i in $(seq 300); do
        [ "$(nnvectl --json show tsis | jq 'length')" = 2 ] && break
        sleep 0.05
    done
    sub "during: nnvectl show tsis   (B associated with MIGRATION before its QEMU runs; A still forwards)"
    nnvectl show tsis | indent
    mig_unthrottle A mover
    wait "$pid" || rc=1
    # Then either everything agrees with mover on B, or the guest stopped on its own (a
    # kernel panic on its console; the move may then have failed too).
    deadline=$((SECONDS + 60))
    while [ "$SECONDS" -lt "$deadline" ]; do
        where=$(mig_where mover)
        # the guest runs nowhere and its kernel panicked since its last start
        [ -z "$where" ] && tail -n +"$((mover_console + 1))" "$T/console-mover.log" |
            grep -q 'Kernel panic' && return 2
        if [ "$rc" = 0 ]; then
            if [ "$where" = B ]; then
                why=$(mig_converged "mover/$MOVER_UUID/$MOVER_MAC/5001") && return 0
            else
                why="mover runs on '${where:-no host}' after the move"
            fi
        elif [ -n "$where" ]; then
            return 1
        fi
        sleep 0.2
    done
    [ -n "$why" ] && say "  after the move, for 60 s: $why"
    return 1
}


# ---- chapter 13: live migration between two hosts with real QEMU guests -----------------
# Its own sandbox: tests/qemu/mig-lib.bash (two libvirtds with the QEMU driver, each in its
# own mount + UTS namespace, a tnve-agent on each, one nnve-daemon); skipped with the reason
# when this machine cannot run QEMU guests under two libvirtds, or with DEMO_MIGRATION=0.
migration_chapter() {
    local why mark MOVER_UUID=5e100000-0000-4000-8000-0000000000aa MOVER_MAC=52:54:00:10:00:aa
    local ev_mark_a ev_mark_b
    B=$build S=$top # mig-lib.bash's build and source dirs, and T its sandbox (globals: the
                    # EXIT trap cleans up with them)
    heading "13. Live migration: one VM moves from host A to host B" \
        "Two libvirtd hosts (real QEMU, TCG), a tnve-agent on each, one switch.  The" \
        "destination's libvirt hook associates the VM's TSI with the MIGRATION flag before its" \
        "QEMU starts: the switch then holds two instances of the TSI (make-before-break, RFC" \
        "8394 3.3); at the switch-over B activates, A de-associates, one instance remains."
    if [ "${DEMO_MIGRATION:-1}" = 0 ]; then
        note "  skipped (DEMO_MIGRATION=0)"
        return 0
    fi
    T=$(mktemp -d /tmp/tnve-mig.XXXXXX) || return 1
    chmod 0755 "$T"
    . "$top/tests/qemu/mig-lib.bash"
    if ! why=$(mig_host_check); then
        note "  skipped: this machine cannot run it: $why"
        rm -rf "$T"
        return 0
    fi
    if ! mig_lock 120; then
        note "  skipped: another migration run holds $MIG_LOCK"
        rm -rf "$T"
        return 0
    fi
    mig_sweep_stale
    trap 'mig_rc=$?; mig_sampler_stop; mig_cleanup; rm -rf "$T"; on_exit "$mig_rc"' EXIT
    mig_guest >"$T/guest.log" 2>&1 || { cat "$T/guest.log"; return 1; }
    mig_up >"$T/up.log" 2>&1 || { cat "$T/up.log"; return 1; }
    say "  host A: libvirtd $(mig_uri A)"
    say "  host B: libvirtd $(mig_uri B)"
    mig_define_start A mover "$MOVER_UUID" "$MOVER_MAC" 5001 || return 1
    mig_settle || return 1
    mark=$(wc -l <"$T/nnve.log")
    mig_move
    case $? in
    0) ;;
    2)
        # The guest's own kernel stopped it during the move: the switch and both agents must
        # have let go of everything; then the chapter starts it again and moves it once more.
        say "  the guest's kernel panicked during the move, so libvirt stopped it (a fault inside"
        say "  the TCG guest, not of the switch or the agents); its console:"
        mig_panic_lines | sed 's/^/  guest console: /'
        why=$(mig_wait_converged 60) ||
            { say "  then the switch did not let go of it: $why"; mig_explain; return 1; }
        say "  the switch and both agents released it (no instance, VN connection or tag left);"
        say "  starting it again on host A and moving it once more"
        mover_console=$(wc -l <"$T/console-mover.log")
        mig_virsh A start mover >/dev/null && mig_settle || return 1
        mark=$(wc -l <"$T/nnve.log")
        mig_move || { mig_explain; return 1; }
        ;;
    *)
        mig_explain
        return 1
        ;;
    esac
    sub "after: nnvectl show tsis    (mover runs on B: one instance, at hvb, same tag)"
    nnvectl show tsis | indent
    sub "the switch's audit log of the move"
    tail -n +"$((mark + 1))" "$T/nnve.log" | grep -E 'audit (tsi|vn): ' | format_log
    sub "libvirt's hook calls on B and events on both hosts"
    sed -E 's/^[0-9.]+ //' "$T/hooks-B.log" | grep -v 'rc=' | sed 's/^/  B hook  /'
    tail -n +"$((ev_mark_a + 1))" "$T/events-A.log" | grep -hE "^[0-9]{4}-.*'lifecycle'" | sed -E "s/^[0-9-]+ ([0-9:.]+)\+0000: event 'lifecycle' for domain 'mover': /  A \1  /" | tail -n 2
    tail -n +"$((ev_mark_b + 1))" "$T/events-B.log" | grep -hE "^[0-9]{4}-.*'lifecycle'" | sed -E "s/^[0-9-]+ ([0-9:.]+)\+0000: event 'lifecycle' for domain 'mover': /  B \1  /"
    mig_virsh B destroy mover >/dev/null
    mig_sampler_stop
    mig_cleanup
    rm -rf "$T"
    trap on_exit EXIT
}
migration_chapter || die "the migration chapter failed"
printf '\n%sdemo finished: every step converged, everything stopped (%d s).%s\n' "$c_ok" \
    "$SECONDS" "$c_off"
