# tnve-lib.sh: shared helpers of the tnve-agent integration tests (sourced, not run).
# A private libvirtd (test driver, TESTBED.md recipe), a real nnve-daemon (none backend,
# with its dataplane journal) and tnve-agent over TLS on 127.0.0.1, all in one temp dir,
# started and stopped by PID.
#
# Needs: SPLITNVE_BUILD, SPLITNVE_SRC (set by scripts/run-tests.sh).

set -u
B=${SPLITNVE_BUILD:?SPLITNVE_BUILD not set}
S=${SPLITNVE_SRC:?SPLITNVE_SRC not set}
T=$(mktemp -d /tmp/tnve-it.XXXXXX)
URI="test+unix:///default?socket=$T/run/libvirt-sock"
LIBVIRTD_PID= NNVE_PID= AGENT_PID= KEEPER_PID= LISTEN_PID=
# More libvirtds (start_libvirtd_in), killed at exit; logs under $T shown by fail(); a
# test may define cleanup_more, run first at exit (stop its own processes there).
LIBVIRTD_PIDS=()
FAIL_LOGS=(agent.log nnve.log)

log() { echo "[$(date +%T.%3N)] $*"; }
fail() {
    log "FAIL: $*"
    for f in "${FAIL_LOGS[@]}"; do
        [ -f "$T/$f" ] && { echo "--- $f (tail)"; tail -n 40 "$T/$f"; }
    done
    [ -f "$T/journal" ] && { echo "--- journal (tail)"; tail -n 20 "$T/journal"; }
    exit 1
}

# Stops a daemon by PID; returns its exit status (SIGTERM, bounded wait, then SIGKILL).
stop_pid() {
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        return 99
    fi
    wait "$pid" 2>/dev/null
}

cleanup() {
    local rc=$? p
    declare -F cleanup_more >/dev/null && cleanup_more
    for p in "${LIBVIRTD_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    [ ${#LIBVIRTD_PIDS[@]} -gt 0 ] && sleep 0.1
    for p in "${LIBVIRTD_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    [ -n "$AGENT_PID" ] && stop_pid "$AGENT_PID"
    for p in "${SW_PID[@]}" "${SW_HOLD_PID[@]}"; do [ -n "$p" ] && stop_pid "$p"; done
    [ -n "$KEEPER_PID" ] && kill -KILL "$KEEPER_PID" 2>/dev/null
    [ -n "$NNVE_PID" ] && stop_pid "$NNVE_PID"
    [ -n "$LISTEN_PID" ] && stop_pid "$LISTEN_PID"
    if [ -n "$LIBVIRTD_PID" ]; then kill -TERM "$LIBVIRTD_PID" 2>/dev/null; sleep 0.1; kill -KILL "$LIBVIRTD_PID" 2>/dev/null; fi
    rm -rf "$T"
    exit $rc
}
trap cleanup EXIT
trap "exit 1" INT TERM HUP PIPE

# wait_for DESCRIPTION SECONDS CMD...: polls CMD every 50 ms until it succeeds.
wait_for() {
    local what=$1 secs=$2 deadline
    shift 2
    deadline=$(($(date +%s%N) / 1000000 + secs * 1000))
    while ! "$@" >/dev/null 2>&1; do
        [ $(($(date +%s%N) / 1000000)) -lt $deadline ] || fail "timed out waiting for: $what"
        sleep 0.05
    done
}

# libvirtd_setup DIR: a private libvirtd (test driver only) with its files in DIR, its
# socket DIR/run/libvirt-sock (URI test+unix:///default?socket=DIR/run/libvirt-sock); sets
# LAST_LIBVIRTD_PID.
libvirtd_setup() {
    local d=$1
    mkdir -p "$d/run" "$d/nodrivers"
    cat >"$d/libvirtd.conf" <<CONF
unix_sock_dir="$d/run"
unix_sock_rw_perms="0770"
auth_unix_rw="none"
auth_unix_ro="none"
log_outputs="3:file:$d/libvirtd.log"
CONF
    rm -f "$d/libvirtd.pid"
    LIBVIRT_DRIVER_DIR=$d/nodrivers /usr/sbin/libvirtd --daemon --config "$d/libvirtd.conf" \
        --pid-file "$d/libvirtd.pid" || fail "libvirtd did not start"
    wait_for "libvirtd socket" 10 test -S "$d/run/libvirt-sock"
    wait_for "libvirtd pid" 10 test -s "$d/libvirtd.pid"
    LAST_LIBVIRTD_PID=$(cat "$d/libvirtd.pid")
}

# start_libvirtd_in DIR: as libvirtd_setup, stopped at exit.
start_libvirtd_in() {
    libvirtd_setup "$1"
    LIBVIRTD_PIDS+=("$LAST_LIBVIRTD_PID")
}

start_libvirtd() {
    libvirtd_setup "$T"
    LIBVIRTD_PID=$LAST_LIBVIRTD_PID
    # The test driver forgets its domains when its last client leaves: a second client
    # keeps them while the agent restarts.  It waits for an event the test driver never
    # sends (watchdog), so that it takes no CPU when domains change.
    [ -n "$KEEPER_PID" ] && kill -KILL "$KEEPER_PID" 2>/dev/null
    virsh -q -c "$URI" event --event watchdog --loop >/dev/null 2>&1 &
    KEEPER_PID=$!
}

# nnve_conf_common: the [global] keys every test nnve-daemon shares (certificate nnve1,
# state_dir, control socket $T/nnve.ctl, backend none with its journal $T/journal); the
# caller adds the transport keys and the rest.
nnve_conf_common() {
    mkdir -p "$T/nstate"
    cat <<CONF
cert = $T/pki/nnve1.crt
key = $T/pki/nnve1.key
ca = $T/pki/ca.crt
state_dir = $T/nstate
control_socket = $T/nnve.ctl
backend = none
dataplane_journal = $T/journal
CONF
}

# hold_nnve_port: a listening socket on 127.0.0.1, port chosen by the kernel, kept by
# listen-socket for the whole test and passed to every nnve-daemon start (socket
# activation): a restarted daemon is at the same address and nothing else can take the
# port meanwhile.  Sets NNVE_PORT.
hold_nnve_port() {
    "$B/tests/tools/listen-socket" hold 127.0.0.1 "$T/nnve-listen.sock" >"$T/nnve-listen.port" 2>>"$T/nnve.log" &
    LISTEN_PID=$!
    wait_for "listen-socket holds a port" 10 test -s "$T/nnve-listen.port"
    NNVE_PORT=$(cat "$T/nnve-listen.port")
}

# start_nnve: nnve-daemon on the held port (see hold_nnve_port).
NNVE_PORT=
start_nnve() {
    [ -f "$T/pki/ca.crt" ] || "$S/scripts/gen-pki.sh" "$T/pki" nnve1 hv1 >/dev/null 2>&1 || fail "gen-pki"
    [ -n "$NNVE_PORT" ] || hold_nnve_port
    cat >"$T/nnve.conf" <<CONF
[global]
listen = 127.0.0.1:$NNVE_PORT
$(nnve_conf_common)
hold_time = ${HOLD_TIME:-20s}
tag_hold_down = 60s
sync = ${NNVE_SYNC:-full}

[domain d1]
ports = *
tags = 100-199

[hypervisor hv1]
port = p1
vns = blue, red, 5000-5999

[vn blue]
id = 5000
[vn red]
id = 5001
CONF
    local before
    before=$(cat "$T/nnve.log" 2>/dev/null | wc -l)
    # (listen-socket run execs the daemon: $! is its PID)
    "$B/tests/tools/listen-socket" run "$T/nnve-listen.sock" "$B/bin/nnve-daemon" -c "$T/nnve.conf" >>"$T/nnve.log" 2>&1 &
    NNVE_PID=$!
    wait_for "nnve control socket" 10 test -S "$T/nnve.ctl"
    wait_for "nnve-daemon listens on the passed socket" 10 sh -c \
        "tail -n +$((before + 1)) '$T/nnve.log' | grep -q 'listening addr=127.0.0.1 port=$NNVE_PORT socket=passed'"
}

# agent_conf_common NAME DIR URI [pair]: the keys every test agent shares (certificate and
# node_id NAME, state_dir and control socket under DIR, libvirt at URI, short retry and
# keepalive times); the caller adds the transport keys and any [map] sections.  With
# "pair" the nNVE identities are left to the [nnve] sections (agent_pair_conf).
agent_conf_common() {
    local name=$1 d=$2 uri=$3
    mkdir -p "$d/astate"
    cat <<CONF
libvirt_uri = $uri
cert = $T/pki/$name.crt
key = $T/pki/$name.key
ca = $T/pki/ca.crt
$([ "${4:-}" = pair ] || echo "nnve_identity = nnve1")
node_id = $name
state_dir = $d/astate
control_socket = $d/agent.ctl
retry_min = 100ms
retry_max = 1s
libvirt_keepalive = 2s
keepalive = 1s
hook_timeout = 3s
CONF
}

start_agent() {
    {
        agent_conf_common hv1 "$T" "$URI"
        cat <<CONF
nnve_address = 127.0.0.1
nnve_port = $NNVE_PORT
associate_on_define = ${ASSOCIATE_ON_DEFINE:-no}
address_poll_interval = ${ADDRESS_POLL:-0}

[map default-net]
network = default
vn_id = 5000
vn_name = blue
CONF
    } >"$T/agent.conf"
    "$B/bin/tnve-agent" -c "$T/agent.conf" >>"$T/agent.log" 2>&1 &
    AGENT_PID=$!
    wait_for "agent control socket" 10 test -S "$T/agent.ctl"
}

# A pair of switches (dual-homing tests): nnve-daemon swN with certificate nnveN, the none
# backend with its journal $T/nN/journal, control socket $T/nN/ctl, log $T/nN.log, on a
# port held for the whole test (SW_PORT[N]; a restart is at the same address).  The caller
# gives the rest of [global] in SW_GLOBAL and the other sections in SW_SECTIONS.  Stopped
# at exit.
declare -A SW_PID=() SW_HOLD_PID=() SW_PORT=()
SW_GLOBAL= SW_SECTIONS=
sw_hold_port() {
    local n=$1
    mkdir -p "$T/n$n/state"
    "$B/tests/tools/listen-socket" hold 127.0.0.1 "$T/n$n/listen.sock" >"$T/n$n/port" 2>>"$T/n$n.log" &
    SW_HOLD_PID[$n]=$!
    wait_for "listen-socket of sw$n" 10 test -s "$T/n$n/port"
    SW_PORT[$n]=$(cat "$T/n$n/port")
}
sw_start() {
    local n=$1 before
    [ -n "${SW_PORT[$n]:-}" ] || sw_hold_port "$n"
    cat >"$T/n$n/nnve.conf" <<CONF
[global]
listen = 127.0.0.1:${SW_PORT[$n]}
cert = $T/pki/nnve$n.crt
key = $T/pki/nnve$n.key
ca = $T/pki/ca.crt
state_dir = $T/n$n/state
control_socket = $T/n$n/ctl
backend = none
dataplane_journal = $T/n$n/journal
sync = full
$SW_GLOBAL

$SW_SECTIONS
CONF
    before=$(wc -l <"$T/n$n.log" 2>/dev/null || echo 0)
    "$B/tests/tools/listen-socket" run "$T/n$n/listen.sock" "$B/bin/nnve-daemon" -c "$T/n$n/nnve.conf" >>"$T/n$n.log" 2>&1 &
    SW_PID[$n]=$!
    wait_for "sw$n listens on the passed socket" 30 sh -c \
        "tail -n +$((before + 1)) '$T/n$n.log' | grep -q 'listening addr=127.0.0.1 port=${SW_PORT[$n]} socket=passed'"
}
# sw_kill N: kill -9 of swN (its port stays held).
sw_kill() {
    {
        kill -KILL "${SW_PID[$1]}"
        wait "${SW_PID[$1]}"
    } 2>/dev/null
    SW_PID[$1]=
}
swctl() {
    local n=$1
    shift
    "$B/bin/nnvectl" -s "$T/n$n/ctl" "$@"
}
# agent_pair_conf N1 N2: the [nnve swN] sections of an agent of the pair.
agent_pair_conf() {
    local n
    for n in "$@"; do
        printf '[nnve sw%s]\nnnve_address = 127.0.0.1\nnnve_port = %s\nnnve_identity = nnve%s\n\n' \
            "$n" "${SW_PORT[$n]}" "$n"
    done
}

# The pair's state, seen by the tests of a dual-homed agent: state_at N TSI, the TSI's state
# at swN ("absent" when not there); expect_at N TSI STATE [SECONDS]; tsis_at N, the sorted
# "tsi state" lines of swN; session, the agent's show session; nnve_ready NAME, its session
# to NAME up and in sync.
state_at() { swctl "$1" --json show tsis | jq -r --arg t "$2" '[.[] | select(.tsi == $t)][0].state // "absent"'; }
state_at_is() { [ "$(state_at "$1" "$2")" = "$3" ]; }
expect_at() { wait_for "tsi $2 -> $3 at sw$1 (now: $(state_at "$1" "$2"))" "${4:-15}" state_at_is "$1" "$2" "$3"; }
tsis_at() { swctl "$1" --json show tsis | jq -r '.[] | "\(.tsi) \(.state)"' | sort; }
session() { tnvectl --json show session; }
nnve_ready() { session | jq -e --arg n "$1" '.nnves[] | select(.name == $n) | .state == "up" and .sync == "ready"'; }
# sw_thaw_all: kill -CONT every switch (a frozen one is thawed at exit so that its stop by
# PID works: call it from cleanup_more).
sw_thaw_all() {
    local p
    for p in "${SW_PID[@]}"; do [ -n "$p" ] && kill -CONT "$p" 2>/dev/null; done
}

# pair_agent_conf KEYS [SECTIONS]: the config of agent hv1 of the pair sw1, sw2: the common
# keys, KEYS, the two [nnve] sections, network default as VN blue (5000, active-active),
# then SECTIONS.
pair_agent_conf() {
    agent_conf_common hv1 "$T" "$URI" pair
    cat <<CONF
$1

$(agent_pair_conf 1 2)
[map default-net]
network = default
vn_id = 5000
vn_name = blue
mode = active-active
CONF
    [ -z "${2:-}" ] || printf '\n%s\n' "$2"
}

# virsh_c ARGS: one virsh command line against the test's libvirtd.  `managedsave DOMAIN`
# goes through tests/tools/virt-managedsave: virsh's job watcher can miss the end of a save.
virsh_c() {
    if [[ "$*" =~ ^managedsave\ ([^ \;]+)$ ]]; then
        "$B/tests/tools/virt-managedsave" "$URI" "${BASH_REMATCH[1]}"
    else
        virsh -q -c "$URI" "$@"
    fi
}
nnvectl() { "$B/bin/nnvectl" -s "$T/nnve.ctl" "$@"; }
tnvectl() { "$B/bin/tnvectl" -s "$T/agent.ctl" "$@"; }

# uuid_of N / mac_of N K: deterministic identifiers of test domain vmN.
uuid_of() { printf '00000000-0000-4000-8000-%012x' "$1"; }
mac_of() { printf '52:54:00:%02x:%02x:%02x' $(($1 / 256)) $(($1 % 256)) "$2"; }

# domain_xml N MODE: vmN with one vNIC; MODE rule = network default (VN via config rule),
# meta-red = bridge br-x with <metadata> naming VN 5001/red, none = no VN at all.
domain_xml() {
    local n=$1 mode=$2 meta="" iface
    case $mode in
    rule) iface="<interface type='network'><mac address='$(mac_of "$n" 1)'/><source network='default'/></interface>" ;;
    meta-red)
        meta="<metadata><splitnve:vnics xmlns:splitnve='urn:splitnve:vn:1'><splitnve:vnic mac='$(mac_of "$n" 1)' vn-id='5001' vn-name='red'/></splitnve:vnics></metadata>"
        iface="<interface type='bridge'><mac address='$(mac_of "$n" 1)'/><source bridge='br-x'/></interface>" ;;
    none) iface="<interface type='bridge'><mac address='$(mac_of "$n" 1)'/><source bridge='br-y'/></interface>" ;;
    esac
    cat <<XML
<domain type='test'>
  <name>vm$n</name>
  <uuid>$(uuid_of "$n")</uuid>
  <memory unit='KiB'>65536</memory>
  <os><type arch='x86_64'>hvm</type></os>
  $meta
  <devices>$iface</devices>
</domain>
XML
}

# The nNVE's state of one TSI: "activated", "associated", or "absent"; tag_of: its tag.
nnve_state() {
    nnvectl --json show tsis | jq -r --arg t "$1" '[.[] | select(.tsi == $t)][0].state // "absent"'
}
tag_of() {
    nnvectl --json show tsis | jq -r --arg t "$1" '[.[] | select(.tsi == $t)][0].tag // "none"'
}
# expect_state TSI STATE [SECONDS]: polls the nNVE until the TSI is in STATE.
state_is() { [ "$(nnve_state "$1")" = "$2" ]; }
expect_state() {
    wait_for "tsi $1 -> $2 at the nNVE (now: $(nnve_state "$1"))" "${3:-10}" state_is "$1" "$2"
}
# Journal lines that change the dataplane (everything but reconcile markers).
journal_changes() { grep -cv '^reconcile-' "$T/journal" 2>/dev/null || true; }
