#!/bin/bash
# Benchmark of a ToR pair (run by scripts/run-bench.sh): two nnve-daemons sharing the domain
# rack (tags 1-4094).  Figures: VN connects per second on the allocator and on the follower
# (each new VN there is a claim to the allocator; the request waits for the grant, or is
# answered BUSY and retried by the client after RETRY_AFTER beyond the wait's bounds), then how long the pair takes to resynchronise its table
# (session up to "synchronised" on both) after a restart of the follower and after a
# kill -9 of the allocator.  Figures only.
set -euo pipefail
: "${SPLITNVE_BUILD:?}" "${SPLITNVE_SRC:?}"
T=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
n=${PAIR_BENCH_VNS:-1000}
B=$SPLITNVE_BUILD/bin
"$SPLITNVE_SRC/scripts/gen-pki.sh" "$T/pki" tora torb hv1 >/dev/null

conf() { # SWITCH ROLE PAIRLINE
    local peer=tora
    [ "$1" = tora ] && peer=torb
    cat >"$T/$1.conf" <<EOF
[global]
listen = 127.0.0.1:0
log_level = info
cert = $T/pki/$1.crt
key = $T/pki/$1.key
ca = $T/pki/ca.crt
state_dir = $T/$1-state
control_socket = $T/$1.ctl
hold_time = 1h
max_vns_per_hypervisor = 4094
max_tags_per_hypervisor = 4094
[domain rack]
ports = swp1
tags = 1-4094
[hypervisor hv1]
port = swp1
vns = 10000-19999
[pair]
domain = rack
role = $2
peer_identity = $peer
retry = 100ms
$3
EOF
}
declare -A PID=() PORT=()
start() {
    local before
    : >>"$T/$1.log"
    before=$(grep -c 'daemon: started' "$T/$1.log" || true)
    "$B/nnve-daemon" -c "$T/$1.conf" 2>>"$T/$1.log" &
    PID[$1]=$!
    PIDS+=($!)
    for _ in $(seq 200); do
        if [ "$(grep -c 'daemon: started' "$T/$1.log" || true)" -gt "$before" ]; then
            PORT[$1]=$(grep 'daemon: started' "$T/$1.log" | tail -1 | sed 's/.*port=\([0-9]*\).*/\1/')
            return 0
        fi
        sleep 0.05
    done
    echo "pair bench: $1 did not start"
    exit 1
}
synced() { [ "$("$B/nnvectl" -s "$T/$1.ctl" --json show pair | jq -r .synced)" = true ]; }
wait_synced() {
    for _ in $(seq 600); do synced "$1" && return 0; sleep 0.05; done
    echo "pair bench: $1 not synchronised"
    exit 1
}
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
connect_many() { # SWITCH FIRST_VN COUNT
    {
        echo "hello node=hv1 epoch=1"
        for i in $(seq "$2" $(($2 + $3 - 1))); do echo "connect vn=$i"; done
    } | "$SPLITNVE_BUILD/tests/tools/sncp-client" --connect "127.0.0.1:${PORT[$1]}" \
        --cert "$T/pki/hv1.crt" --key "$T/pki/hv1.key" --ca "$T/pki/ca.crt" --expect-peer "$1" \
        --retry-busy 1000 --timeout 30000 >"$T/client.out"
    [ "$(grep -c '"status":"success"' "$T/client.out")" -eq $(($3 + 1)) ] ||
        { echo "pair bench: connects failed on $1"; exit 1; }
}

conf tora allocator "listen = 127.0.0.1:0"
start tora
pport=$(grep 'pair: started' "$T/tora.log" | tail -1 | sed 's/.*port=\([0-9]*\).*/\1/')
conf torb follower "peer = 127.0.0.1:$pport"
start torb
wait_synced tora
wait_synced torb
echo "-- ToR pair, domain of 4094 tags; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
t=$(date +%s%N)
connect_many tora 10000 "$n"
d=$(ms "$t")
echo "allocator: $n new VNs in $d ms ($((n * 1000 / (d ? d : 1))) per s)"
t=$(date +%s%N)
connect_many torb 12000 "$n"
d=$(ms "$t")
echo "follower: $n new VNs (each a claim) in $d ms ($((n * 1000 / (d ? d : 1))) per s)"
t=$(date +%s%N)
connect_many torb 10000 "$n"
d=$(ms "$t")
echo "follower: $n VNs the allocator bound (held rows, no claim) in $d ms"
rows=$("$B/nnvectl" -s "$T/tora.ctl" --json show pair | jq .rows_count)

kill -TERM "${PID[torb]}"
wait "${PID[torb]}" || true
t=$(date +%s%N)
start torb
wait_synced torb
wait_synced tora
echo "follower restarted: start to both synchronised with $rows rows: $(ms "$t") ms"
kill -9 "${PID[tora]}"
wait "${PID[tora]}" 2>/dev/null || true
t=$(date +%s%N)
start tora
pport=$(grep 'pair: started' "$T/tora.log" | tail -1 | sed 's/.*port=\([0-9]*\).*/\1/')
conf torb follower "peer = 127.0.0.1:$pport"
kill -TERM "${PID[torb]}"
wait "${PID[torb]}" || true
start torb
wait_synced torb
wait_synced tora
echo "allocator kill -9, both restarted: start to both synchronised with $rows rows: $(ms "$t") ms"
