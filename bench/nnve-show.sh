#!/bin/bash
# Benchmark of "nnvectl show tsis" on a large table (run by scripts/run-bench.sh): a daemon
# with 100,000 TSI instances (made by bench/nnve-load over 100 sessions, then held), the
# time of one page of 1,000 and of 10,000 rows, of the whole listing (100 pages, followed
# by nnvectl), and how long other control commands wait while the listing runs.  Figures
# only.
set -euo pipefail
: "${SPLITNVE_BUILD:?}" "${SPLITNVE_SRC:?}"
T=$(mktemp -d)
DPID=
cleanup() {
    if [ -n "$DPID" ]; then kill -TERM "$DPID" 2>/dev/null || true; wait "$DPID" 2>/dev/null || true; fi
    rm -rf "$T"
}
trap cleanup EXIT
tsis=${NNVE_BENCH_TSIS:-100000}
sessions=100
B=$SPLITNVE_BUILD/bin

"$SPLITNVE_SRC/scripts/gen-pki.sh" "$T/pki" nnve >/dev/null
"$SPLITNVE_BUILD/bench/nnve-load" --gen-certs "$T/pki" "$sessions" >/dev/null
{
    printf '[global]\nlisten = 127.0.0.1:0\nlog_level = warn\nhold_time = 1h\nsync = normal\n'
    printf 'cert = %s\nkey = %s\nca = %s\n' "$T/pki/nnve.crt" "$T/pki/nnve.key" "$T/pki/ca.crt"
    printf 'state_dir = %s\ncontrol_socket = %s\n' "$T/state" "$T/ctl"
    # every session comes from 127.0.0.1, all at once
    printf 'max_hello_pending = 2000\nmax_hello_pending_per_source = 2000\n'
    printf 'max_tsis_per_session = 100000\n[domain rack]\nports = *\ntags = 1-4094\n'
    for i in $(seq "$sessions"); do
        printf '[hypervisor bench%d]\nport = swp%d\nvns = 5000-5099\n' "$i" "$i"
    done
} >"$T/n.conf"
"$B/nnve-daemon" -c "$T/n.conf" 2>"$T/daemon.log" &
DPID=$!
for _ in $(seq 100); do
    port=$(grep -o 'daemon: started .* port=[0-9]*' "$T/daemon.log" | sed 's/.*port=//' || true)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "nnve-show bench: daemon did not start"; exit 1; }
"$SPLITNVE_BUILD/bench/nnve-load" --connect "127.0.0.1:$port" --pki "$T/pki" --pid "$DPID" \
    --sessions "$sessions" --tsis "$tsis" --rate 1000 --max-sessions "$sessions" >"$T/load.out"
echo "-- nnve-daemon with $tsis TSIs over $sessions hypervisors (held); $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
t=$(date +%s%N)
"$B/nnvectl" -s "$T/ctl" --json show tsis limit 1000 >"$T/p1.json"
echo "one page of 1,000 rows: $(ms "$t") ms, $(stat -c %s "$T/p1.json") bytes (nnvectl --json)"
next=$(jq -r .next "$T/p1.json")
t=$(date +%s%N)
"$B/nnvectl" -s "$T/ctl" --json show tsis limit 10000 after "$next" >"$T/p2.json"
echo "one page of 10,000 rows: $(ms "$t") ms, $(stat -c %s "$T/p2.json") bytes"
t=$(date +%s%N)
"$B/nnvectl" -s "$T/ctl" show tsis hypervisor bench7 >"$T/filtered.txt"
echo "filtered (hypervisor bench7, $(($(wc -l <"$T/filtered.txt") - 1)) rows, one page): $(ms "$t") ms"

"$B/nnvectl" -s "$T/ctl" --json -t 300 show tsis >"$T/all.json" &
lister=$!
t=$(date +%s%N)
worst=0 n=0
while kill -0 "$lister" 2>/dev/null; do
    s=$(date +%s%N)
    "$B/nnvectl" -s "$T/ctl" --json show counters >/dev/null
    d=$(ms "$s")
    [ "$d" -gt "$worst" ] && worst=$d
    n=$((n + 1))
done
wait "$lister"
echo "whole listing: $(jq length "$T/all.json") rows in $(ms "$t") ms (pages of 1,000 followed by nnvectl)"
echo "meanwhile: $n 'show counters' answered, slowest $worst ms"
kill -TERM "$DPID"
wait "$DPID" || true
DPID=
