#!/bin/bash
# Benchmark of nnve-daemon (run by scripts/run-bench.sh with SPLITNVE_BUILD/SPLITNVE_SRC):
# a private PKI (CA + 1,000 hypervisor identities), a daemon on loopback with the none
# backend and its state database in a temp dir, then bench/nnve-load: associate+activate
# throughput with 100 sessions up to 100,000 TSIs (RSS sampled every 10,000), request latency
# at 5,000 requests/s, and 1,000 concurrent sessions.  Figures only.
# Runs twice: sync=full (fsync at every group commit: acknowledged = on disk even across a
# power loss) and sync=normal (acknowledged = survives kill -9); NNVE_BENCH_SYNC picks one.
set -euo pipefail
: "${SPLITNVE_BUILD:?}" "${SPLITNVE_SRC:?}"
T=$(mktemp -d)
DPID=
cleanup() {
    if [ -n "$DPID" ]; then kill -TERM "$DPID" 2>/dev/null || true; wait "$DPID" 2>/dev/null || true; fi
    rm -rf "$T"
}
trap cleanup EXIT
ulimit -n 8192 2>/dev/null || true
sessions=${NNVE_BENCH_SESSIONS:-100}
tsis=${NNVE_BENCH_TSIS:-100000}
max_sessions=${NNVE_BENCH_MAX_SESSIONS:-1000}

"$SPLITNVE_SRC/scripts/gen-pki.sh" "$T/pki" nnve
"$SPLITNVE_BUILD/bench/nnve-load" --gen-certs "$T/pki" "$max_sessions"

run_mode() {
    local mode=$1 port=
    {
        printf '[global]\nlisten = 127.0.0.1:0\nlog_level = warn\n'
        printf 'cert = %s\nkey = %s\nca = %s\n' "$T/pki/nnve.crt" "$T/pki/nnve.key" "$T/pki/ca.crt"
        printf 'state_dir = %s\ncontrol_socket = %s\nsync = %s\n' "$T/state-$mode" "$T/ctl-$mode" "$mode"
        printf 'max_sessions = 2000\nmax_tsis_per_session = 100000\n'
        # every session comes from 127.0.0.1, all at once
        printf 'max_hello_pending = 2000\nmax_hello_pending_per_source = 2000\n'
        printf '[domain rack]\nports = *\ntags = 1-4094\n'
        for i in $(seq "$max_sessions"); do
            printf '[hypervisor bench%d]\nport = swp%d\nvns = 5000-5099\n' "$i" "$i"
        done
    } >"$T/n.conf"
    "$SPLITNVE_BUILD/bin/nnve-daemon" -c "$T/n.conf" 2>"$T/daemon-$mode.log" &
    DPID=$!
    # log_level=warn hides the start-up line: ask the kernel for the port.
    for _ in $(seq 100); do
        port=$(ss -Hltnp 2>/dev/null | grep "pid=$DPID," | awk '{print $4}' | sed 's/.*://' | head -1 || true)
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "nnve bench: daemon did not start"; cat "$T/daemon-$mode.log"; exit 1; }
    echo "-- nnve-daemon sync=$mode on 127.0.0.1:$port, pid $DPID; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
    "$SPLITNVE_BUILD/bench/nnve-load" --connect "127.0.0.1:$port" --pki "$T/pki" --pid "$DPID" \
        --sessions "$sessions" --tsis "$tsis" --rate 5000 --max-sessions "$max_sessions"
    kill -TERM "$DPID"
    wait "$DPID" || true
    DPID=
}

for mode in ${NNVE_BENCH_SYNC:-full normal}; do
    run_mode "$mode"
done
