#!/bin/bash
# nnve-daemon's command line and operation: --help, --version, --check-config (with a
# line-numbered error), the commented sample config, IPv6 listening, SIGHUP reload (policy and
# pools, sessions kept unless their identity lost authorization), the Prometheus textfile,
# show latency and the latency histograms.
source "$(dirname "$0")/nnve-lib.bash"

"$BIN/nnve-daemon" --help | grep -q '^EXIT STATUS' || fail "--help"
"$BIN/nnve-daemon" --help | grep -q 'SIGHUP' || fail "--help signals"
"$BIN/nnve-daemon" --version | grep -q '^nnve-daemon ' || fail "--version"
rc=0; "$BIN/nnve-daemon" --bogus >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "bad option: exit $rc"
"$BIN/nnve-daemon" --check-config -c "$SPLITNVE_SRC/etc/nnve-daemon.conf" | grep -q OK || fail "sample config"
write_conf
"$BIN/nnve-daemon" --check-config -c "$T/n.conf" >/dev/null || fail "test config"
printf '[hypervisor hv5]\nport = swp9\n' >>"$T/n.conf"
rc=0; msg=$("$BIN/nnve-daemon" --check-config -c "$T/n.conf" 2>&1) || rc=$?
[ $rc -eq 1 ] || fail "bad config: exit $rc"
echo "$msg" | grep -q "n.conf:[0-9]*: \[hypervisor hv5\]: port swp9 is in no \[domain\]" || fail "error message: $msg"
write_conf
sed -i 's/^\[global\]$/[global]\nbackend = bogus/' "$T/n.conf"
rc=0; msg=$("$BIN/nnve-daemon" --check-config -c "$T/n.conf" 2>&1) || rc=$?
[ $rc -eq 1 ] || fail "unknown backend: exit $rc"
echo "$msg" | grep -q 'backend "bogus" is not a known dataplane backend' || fail "backend message: $msg"
ok "--help, --version, --check-config"

write_conf "listen = 127.0.0.1:0, [::1]:0" "metrics_file = $T/nnve.prom" "metrics_interval = 200ms"
start_daemon
cat >"$T/hv2.script" <<EOF
hello node=hv2 epoch=1
connect vn=5000
wait-close 20000
EOF
bg_client hv2 "$T/hv2.out"
cat >"$T/hv1.script" <<EOF
hello node=hv1 epoch=1
connect vn=5001
wait-request 20000
EOF
bg_client hv1 "$T/hv1.out"
wait_for "two sessions" 10 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show sessions | jq -e '[.[] | select(.state==\"established\")] | length == 2'"
wait_for "metrics file" 5 test -s "$T/nnve.prom"
grep -q '^nnve_sessions 2$' "$T/nnve.prom" || wait_for "metrics updated" 5 grep -q '^nnve_sessions 2$' "$T/nnve.prom"
grep -q '^# TYPE nnve_tsi_transitions_total counter' "$T/nnve.prom" || fail "metrics types"
wait_for "tags per domain metric" 5 grep -q '^nnve_tags_in_use{domain="rack1"} 2$' "$T/nnve.prom"
grep -q '^nnve_responses_sent_total{status="success"}' "$T/nnve.prom" || fail "status metric"
ok "Prometheus textfile"

# Latency: two HELLOs and two VN_CONNECTs answered, each committed first.
lat=$(ctl show latency | jq 'map({(.what): .}) | add')
echo "$lat" | jq -e '.request.samples >= 4 and .commit.samples >= 2
    and .request.p50_us <= .request.p99_us and .request.p99_us <= .request.max_us
    and .commit.p99_us <= .commit.max_us' >/dev/null || fail "show latency: $lat"
# the answers waited for their commits
echo "$lat" | jq -e '.request.max_us >= .commit.p50_us' >/dev/null || fail "request under commit: $lat"
wait_for "latency histograms in the metrics" 5 grep -q '^nnve_store_commit_seconds_count [1-9]' "$T/nnve.prom"
grep -q '^# TYPE nnve_request_seconds histogram$' "$T/nnve.prom" || fail "request histogram type"
inf=$(sed -n 's/^nnve_request_seconds_bucket{le="+Inf"} //p' "$T/nnve.prom")
count=$(sed -n 's/^nnve_request_seconds_count //p' "$T/nnve.prom")
[ -n "$inf" ] && [ "$inf" = "$count" ] || fail "+Inf bucket $inf against count $count"
# cumulative: each bucket holds at least the one before
sed -n 's/^nnve_store_commit_seconds_bucket{le="[^"]*"} //p' "$T/nnve.prom" |
    awk 'NR > 1 && $1 < prev { bad = 1 } { prev = $1 } END { exit bad || NR != 17 }' ||
    fail "commit histogram buckets: $(grep commit_seconds_bucket "$T/nnve.prom")"
ctl show latency reset >/dev/null
lat=$(ctl show latency | jq 'map({(.what): .}) | add')
echo "$lat" | jq -e '.request.samples == 0 and .commit.samples == 0' >/dev/null || fail "after reset: $lat"
rc=0; "$BIN/nnvectl" -s "$T/ctl" show latency bogus >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "show latency bogus: exit $rc"
ok "show latency and the latency histograms"

tag5001=$(ctl show vns | jq '.[] | select(.vn_id==5001) | .tag')
# Reload: hv2 loses its authorization, rack1's pool moves; hv1's session stays.
sed -i 's/^tags = 100-109/tags = 300-309/; s/^reserved = 105/reserved = 305/; /^\[hypervisor hv2\]/,/^vns/d' "$T/n.conf"
kill -HUP "$DPID"
wait_for "hv2 closed" 10 grep -q CLOSED "$T/hv2.out"
grep -q 'closing: identity no longer authorized hypervisor=hv2' "$T/daemon.log" || fail "reload close not logged"
s=$(ctl show sessions | jq -r '.[] | select(.state=="established") | .hypervisor')
[ "$s" = hv1 ] || fail "sessions after reload: $s"
kill -0 "${CPIDS[1]}" || fail "hv1 session dropped by the reload"
out=$(client hv1 <<EOF
hello node=hv1 epoch=2
connect vn=5001
connect vn=5002
EOF
)
tags=$(echo "$out" | jq -r 'select(.request=="VN_CONNECT") | .tags[0]' | tr '\n' ' ')
[ "$tags" = "$tag5001 300 " ] || fail "tags after reload (VN 5001 keeps $tag5001, new VNs from the new pool): $tags"
ok "SIGHUP reload"

# IPv6 listener
PORT6=$(grep 'listening addr=::1' "$T/daemon.log" | tail -1 | sed 's/.*port=\([0-9]*\).*/\1/')
out=$("$CLIENT" --connect "[::1]:$PORT6" --cert "$T/pki/hv1.crt" --key "$T/pki/hv1.key" \
    --ca "$T/pki/ca.crt" --expect-peer nnve <<<"hello node=hv1 epoch=3")
[ "$(status_of "$out" HELLO)" = success ] || fail "IPv6 listener"
ok "IPv6 listener"

stop_daemon
grep -q '^nnve_sessions 0$' "$T/nnve.prom" || fail "metrics not written at shutdown"
ok "clean shutdown"
