#!/bin/bash
# Benchmark of nnve-daemon (run by scripts/run-bench.sh with SPLITNVE_BUILD/SPLITNVE_SRC):
# a private PKI (CA + 1,000 hypervisor identities), a daemon on loopback with the none
# backend and its state database in a temp dir, then bench/nnve-load: associate+activate
# throughput with 100 sessions up to 100,000 TSIs (RSS sampled every 10,000) and request
# latency at 5,000 requests/s; then 1,000 concurrent sessions on a fresh daemon.  Figures only.
# Runs twice: sync=full (fsync at every group commit: acknowledged = on disk even across a
# power loss) and sync=normal (acknowledged = survives kill -9); NNVE_BENCH_SYNC picks
# (empty: only the idle-memory run).
# Before each run, bench/floor measures this run's floors: fdatasync p99 of a 4 KiB write in
# the state directory's file system (back to back, and one due every 200 us: the latency
# phase's 5,000 requests/s committed one by one) and a bare TLS echo over loopback (one
# session's round trip p99, back to back; the round trip p99 at the latency phase's 5,000
# messages/s over its 100 sessions, each from its due time; round trips/s over as many
# sessions).  The latency goal's floor is 2 x fdatasync p99 + TLS round trip p99, both at
# 5,000/s (sync=full): what the disk and a server that does nothing cost at that pace, where
# the CPUs go idle between requests and are woken for each (on a virtual machine that costs
# more than back to back); the back-to-back figures are printed beside them.  The
# throughput's floor is the echo's rate.
# The idle memory per session comes from a third, fresh daemon: 1 session, then up to
# NNVE_BENCH_MAX_SESSIONS idle ones.  TABLE lines: see scripts/run-bench.sh.
# NNVE_BENCH_RT=PRIO runs all of it (floors, daemon, generator) at SCHED_FIFO priority PRIO:
# on a machine shared with busy neighbours the generator then sends on time ("sent late by"
# in the latency line) and the figures are the software's and the disk's, not the queue for
# a CPU.  Off by default (it needs CAP_SYS_NICE and takes CPU from the neighbours).
# A quick latency-only run (about 15 s): NNVE_BENCH_SYNC=full NNVE_BENCH_TSIS=20000
# NNVE_BENCH_MAX_SESSIONS=100; compare builds alternately, several runs each (one run's p99
# moves by 2x with the neighbours' load).  With sync=full the daemon does one fdatasync per
# group commit (of the WAL).  The latency run also prints what the daemon measured over the
# same window (nnvectl show latency): each request from its decoding to its answer, and the
# group commits.  What the client's p99 has above the first is the wait in the socket for
# the commit in progress, TLS both ways, and the generator's own delays on CPUs it shares.
# Each paced window (the two floors' and the latency phase's) is followed by the CPU time the
# host stole from this machine during it (bench/cpu-ticks.h): a window with much stolen time
# measured the neighbours, and a floor and a figure measured under different steal do not
# compare.
set -euo pipefail
: "${SPLITNVE_BUILD:?}" "${SPLITNVE_SRC:?}"
if [ -n "${NNVE_BENCH_RT:-}" ] && [ -z "${NNVE_BENCH_RT_ON:-}" ]; then
    NNVE_BENCH_RT_ON=1 exec chrt -f "$NNVE_BENCH_RT" bash "$0" "$@"
fi
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
rate=5000 # requests/s of the latency phase, and of the paced TLS echo that is its floor

"$SPLITNVE_SRC/scripts/gen-pki.sh" "$T/pki" nnve
"$SPLITNVE_BUILD/bench/nnve-load" --gen-certs "$T/pki" "$max_sessions"

# Prints the value of the TABLE line whose figure starts with $1 in file $2.
table_value() {
    awk -F'|' -v f="$1" '$1 == "TABLE" && index($2, f) == 1 { print $3 }' "$2"
}

run_mode() {
    local mode=$1 port='' load_opts
    {
        printf '[global]\nlisten = 127.0.0.1:0\nlog_level = warn\n'
        printf 'cert = %s\nkey = %s\nca = %s\n' "$T/pki/nnve.crt" "$T/pki/nnve.key" "$T/pki/ca.crt"
        printf 'state_dir = %s\ncontrol_socket = %s\nsync = %s\n' "$T/state-$mode" "$T/ctl-$mode" \
            "${mode/idle/full}"
        printf 'max_sessions = 2000\nmax_tsis_per_session = 100000\n'
        # every session comes from 127.0.0.1, all at once
        printf 'max_hello_pending = 2000\nmax_hello_pending_per_source = 2000\n'
        printf '[domain rack]\nports = *\ntags = 1-4094\n'
        for i in $(seq "$max_sessions"); do
            printf '[hypervisor bench%d]\nport = swp%d\nvns = 5000-5099\n' "$i" "$i"
        done
    } >"$T/n.conf"
    if [ "$mode" = idle ]; then
        load_opts=(--sessions 1 --tsis 1 --rate 0 --max-sessions "$max_sessions" --label idle)
    else
        mkdir -p "$T/state-$mode"
        "$SPLITNVE_BUILD/bench/floor" --fdatasync "$T/state-$mode" --rate "$rate" >"$T/floor-$mode"
        "$SPLITNVE_BUILD/bench/floor" --echo --pki "$T/pki" --sessions "$sessions" --rate "$rate" \
            >>"$T/floor-$mode"
        # the table shows the floors of the sync=full run (its goals)
        if [ "$mode" = full ]; then cat "$T/floor-$mode"; else sed "s/^TABLE|/($mode run) /" "$T/floor-$mode"; fi
        local fsync_p99 rtt_p99 echo floor_ms=0
        fsync_p99=$(table_value "fdatasync p99, 4 KiB write, $rate/s" "$T/floor-$mode")
        rtt_p99=$(table_value "loopback TLS round trip p99, $rate/s" "$T/floor-$mode")
        echo=$(table_value "bare TLS echo" "$T/floor-$mode")
        [ "$mode" = full ] && floor_ms=$(awk -v f="$fsync_p99" -v r="$rtt_p99" 'BEGIN { print 2 * f + r }')
        load_opts=(--sessions "$sessions" --tsis "$tsis" --rate "$rate" --max-sessions "$sessions"
            --label "sync=$mode" --latency-floor "$floor_ms" --echo-rate "$echo" --ctl "$T/ctl-$mode")
    fi
    "$SPLITNVE_BUILD/bin/nnve-daemon" -c "$T/n.conf" 2>"$T/daemon-$mode.log" &
    DPID=$!
    # log_level=warn hides the start-up line: ask the kernel for the port.
    for _ in $(seq 100); do
        port=$(ss -Hltnp 2>/dev/null | grep "pid=$DPID," | awk '{print $4}' | sed 's/.*://' | head -1 || true)
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "nnve bench: daemon did not start"; cat "$T/daemon-$mode.log"; exit 1; }
    echo "-- nnve-daemon sync=$mode on 127.0.0.1:$port, pid $DPID; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)${NNVE_BENCH_RT:+, SCHED_FIFO $NNVE_BENCH_RT}"
    "$SPLITNVE_BUILD/bench/nnve-load" --connect "127.0.0.1:$port" --pki "$T/pki" --pid "$DPID" \
        "${load_opts[@]}"
    kill -TERM "$DPID"
    wait "$DPID" || true
    DPID=
}

for mode in ${NNVE_BENCH_SYNC-full normal} idle; do
    run_mode "$mode"
done
