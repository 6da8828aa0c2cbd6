#!/bin/bash
# Benchmark of nnve-daemon's write-ahead log under sustained churn (run by
# scripts/run-bench.sh with SPLITNVE_BUILD/SPLITNVE_SRC): a daemon with the none backend
# (sync = full), bench/nnve-load activating NNVE_WAL_TSIS TSIs over 50 sessions, then
# 3 s of toggles at 5,000/s and NNVE_WAL_SERIAL serial toggles.  The WAL and database file
# sizes are sampled every 100 ms; printed: the largest WAL seen, the sizes at the end and
# the daemon's checkpoint counters.  Figures only.
set -euo pipefail
: "${SPLITNVE_BUILD:?}" "${SPLITNVE_SRC:?}"
T=$(mktemp -d)
DPID=
SPID=
cleanup() {
    if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; fi
    if [ -n "$DPID" ]; then kill -TERM "$DPID" 2>/dev/null || true; wait "$DPID" 2>/dev/null || true; fi
    rm -rf "$T"
}
trap cleanup EXIT
sessions=50
tsis=${NNVE_WAL_TSIS:-50000}
serial=${NNVE_WAL_SERIAL:-20000}

"$SPLITNVE_SRC/scripts/gen-pki.sh" "$T/pki" nnve >/dev/null
"$SPLITNVE_BUILD/bench/nnve-load" --gen-certs "$T/pki" "$sessions"
{
    printf '[global]\nlisten = 127.0.0.1:0\nlog_level = warn\n'
    printf 'cert = %s\nkey = %s\nca = %s\n' "$T/pki/nnve.crt" "$T/pki/nnve.key" "$T/pki/ca.crt"
    printf 'state_dir = %s\ncontrol_socket = %s\nsync = full\n' "$T/state" "$T/ctl"
    # every session comes from 127.0.0.1, all at once
    printf 'max_hello_pending = 2000\nmax_hello_pending_per_source = 2000\n'
    printf 'max_tsis_per_session = 100000\n[domain rack]\nports = *\ntags = 1-4094\n'
    for i in $(seq "$sessions"); do
        printf '[hypervisor bench%d]\nport = swp%d\nvns = 5000-5099\n' "$i" "$i"
    done
} >"$T/n.conf"
mkdir -p "$T/state"
"$SPLITNVE_BUILD/bin/nnve-daemon" -c "$T/n.conf" 2>"$T/daemon.log" &
DPID=$!
port=
for _ in $(seq 100); do
    port=$(ss -Hltnp 2>/dev/null | grep "pid=$DPID," | awk '{print $4}' | sed 's/.*://' | head -1 || true)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "nnve-wal bench: daemon did not start"; cat "$T/daemon.log"; exit 1; }
(
    max=0
    while :; do
        w=$(stat -c %s "$T/state/nnve-daemon.db-wal" 2>/dev/null || echo 0)
        [ "$w" -gt "$max" ] && max=$w && echo "$max" >"$T/walmax"
        sleep 0.1
    done
) &
SPID=$!
"$SPLITNVE_BUILD/bench/nnve-load" --connect "127.0.0.1:$port" --pki "$T/pki" --pid "$DPID" \
    --sessions "$sessions" --tsis "$tsis" --rate 5000 --serial "$serial" --max-sessions "$sessions"
sleep 1.5 # one more checkpoint period
kill "$SPID"
wait "$SPID" 2>/dev/null || true
SPID=
echo "wal: largest $(cat "$T/walmax" 2>/dev/null || echo 0) bytes during the run;" \
    "at the end wal $(stat -c %s "$T/state/nnve-daemon.db-wal" 2>/dev/null || echo 0) bytes," \
    "db $(stat -c %s "$T/state/nnve-daemon.db") bytes"
"$SPLITNVE_BUILD/bin/nnvectl" -s "$T/ctl" show counters 2>/dev/null |
    grep -E 'store_(commits|checkpoint|wal|db)' || true
