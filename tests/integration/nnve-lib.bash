# nnve-lib.bash: shared setup for the nnve-daemon integration tests (sourced, not run).
# Gives a temp dir $T with a test PKI (CA; nnve, hv1, hv2, hv3, hv9 certificates; "rogue"
# from an unrelated CA; "stale" expired), a config writer, daemon start/stop by PID with bounded waits, the scripted
# SNCP client and nnvectl wrappers.  Everything is cleaned up on exit.
set -euo pipefail

: "${SPLITNVE_BUILD:?set SPLITNVE_BUILD}" "${SPLITNVE_SRC:?set SPLITNVE_SRC}"
BIN=$SPLITNVE_BUILD/bin
CLIENT=$SPLITNVE_BUILD/tests/tools/sncp-client
T=$(mktemp -d)
DPID=
CPIDS=()
U=4d5e6f70-1111-2222-3333-444455556666

cleanup() {
    local rc=$?
    for p in "${CPIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    if [ -n "$DPID" ] && kill -0 "$DPID" 2>/dev/null; then kill -9 "$DPID" 2>/dev/null || true; fi
    if [ $rc -ne 0 ]; then
        echo "---- daemon log (tail) ----"; tail -n 40 "$T/daemon.log" 2>/dev/null || true
    fi
    rm -rf "$T"
    exit $rc
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

"$SPLITNVE_SRC/scripts/gen-pki.sh" --other-ca rogue --expired stale "$T/pki" nnve hv1 hv2 hv3 hv9

# write_conf [extra global lines...]: the config with three hypervisors and two domains;
# an extra line "KEY = VALUE" replaces the default of KEY (a key may appear only once);
# further sections may be appended to $T/n.conf afterwards.
write_conf() {
    local d l
    {
        echo "[global]"
        for d in "listen = 127.0.0.1:0" "cert = $T/pki/nnve.crt" "key = $T/pki/nnve.key" \
            "ca = $T/pki/ca.crt" "node_id = tor1" "state_dir = $T/state" \
            "control_socket = $T/ctl" "dataplane_journal = $T/journal" "fdb_file = $T/fdb" \
            "hold_time = 30s"; do
            for l in "$@"; do [ "${l%% =*}" != "${d%% =*}" ] || continue 2; done
            echo "$d"
        done
        for l in "$@"; do echo "$l"; done
        echo "[domain rack1]"
        echo "ports = swp1, swp2"
        echo "tags = 100-109"
        echo "reserved = 105"
        echo "[domain rack2]"
        echo "ports = swp3"
        echo "tags = 200-299"
        echo "[hypervisor hv1]"
        echo "port = swp1"
        echo "vns = 5000-5010, blue"
        echo "[hypervisor hv2]"
        echo "port = swp2"
        echo "vns = 5000-5010"
        echo "[hypervisor hv3]"
        echo "port = learn"
        echo "vns = 5000"
        echo "[vn blue]"
        echo "id = 6000"
    } >"$T/n.conf"
    echo "52:54:00:aa:00:03 swp3" >"$T/fdb"
}

# start_daemon: starts nnve-daemon, waits (<= 10 s) until it listens; sets DPID and PORT.
# DAEMON_WRAP (array): a command that execs the daemon (e.g. listen-socket run SOCK).
DAEMON_WRAP=()
start_daemon() {
    : >>"$T/daemon.log"
    local before
    before=$(grep -c 'daemon: started' "$T/daemon.log" || true)
    ${DAEMON_WRAP[@]+"${DAEMON_WRAP[@]}"} "$BIN/nnve-daemon" -c "$T/n.conf" 2>>"$T/daemon.log" &
    DPID=$!
    local i
    for i in $(seq 100); do
        if [ "$(grep -c 'daemon: started' "$T/daemon.log" || true)" -gt "$before" ]; then
            PORT=$(grep 'daemon: started' "$T/daemon.log" | tail -1 | sed 's/.*port=\([0-9]*\).*/\1/')
            return 0
        fi
        kill -0 "$DPID" 2>/dev/null || fail "daemon exited at start-up"
        sleep 0.1
    done
    fail "daemon did not start"
}

# stop_daemon: SIGTERM, waits (<= 15 s), requires exit status 0 (ASan: no leaks).
stop_daemon() {
    kill -TERM "$DPID"
    local i
    for i in $(seq 150); do
        kill -0 "$DPID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$DPID" 2>/dev/null && fail "daemon did not stop on SIGTERM"
    local rc=0
    wait "$DPID" || rc=$?
    DPID=
    [ "$rc" -eq 0 ] || fail "daemon exited with status $rc after SIGTERM"
}

# client NAME [sncp-client options]: runs a script from stdin as hypervisor NAME.
client() {
    local name=$1; shift
    "$CLIENT" --connect "127.0.0.1:$PORT" --cert "$T/pki/$name.crt" --key "$T/pki/$name.key" \
        --ca "$T/pki/ca.crt" --expect-peer nnve "$@"
}

# bg_client NAME OUTFILE: like client, in the background (stdin from $T/NAME.script).
bg_client() {
    local name=$1 out=$2
    "$CLIENT" --connect "127.0.0.1:$PORT" --cert "$T/pki/$name.crt" --key "$T/pki/$name.key" \
        --ca "$T/pki/ca.crt" --expect-peer nnve --timeout 20000 \
        <"$T/$name.script" >"$out" 2>>"$T/client.log" &
    CPIDS+=($!)
}

ctl() { "$BIN/nnvectl" -s "$T/ctl" --json "$@"; }

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds.
wait_for() {
    local what=$1 secs=$2; shift 2
    local i
    for i in $(seq $((secs * 10))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    fail "timed out waiting for: $what"
}

# status_of OUTPUT REQUEST [N]: status of the N-th (default 1st) response to REQUEST.
status_of() {
    echo "$1" | jq -r --arg r "$2" 'select(.type=="RESPONSE" and .request==$r) | .status' |
        sed -n "${3:-1}p"
}

tsi() { echo "$U/52:54:00:00:00:$1"; }
