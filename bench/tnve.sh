#!/bin/bash
# bench/tnve.sh: tnve-agent event-to-acknowledged latency: from the moment the agent
# receives a libvirt event to the moment the nNVE's response that completes the change
# arrives (measured inside the agent, `tnvectl latency/show`).  A private libvirtd (test
# driver), a real nnve-daemon and the agent over TLS on 127.0.0.1.
#   1. one domain: TNVE_BENCH_CYCLES start/destroy cycles, one at a time (start = VN_CONNECT
#      + TSI_ACTIVATE, destroy = TSI_DEASSOCIATE; VN_DISCONNECT follows, not timed);
#      the same with another domain keeping the VN connected; then TNVE_BENCH_IDLE_CYCLES
#      (8) more of those, each start and stop 2.5 s after the last change (a quiet switch);
#   2. a start storm: TNVE_BENCH_STORM domains defined, then all started by one virsh.
# Prints p50/p90/p99/max in microseconds, starts and stops apart (`by_state`: the state the
# change reached), and for the single-domain cases what of it went to libvirt calls, to the
# domain reader thread's hand-off, to the agent itself (event to request written) and to
# the nNVE's round trips (and TABLE rows: figure, floor = the nNVE round trip p99, ratio);
# of the round trips, the time the agent's own loop was busy (a response that came then
# waited for it), and the nNVE's own share (nnvectl latency/show: decoded to answered, and
# its commits).  First, what the
# nNVE's disk gives a lone request: fdatasync of a 4 KiB write 80 ms after the last (on a
# virtual disk several times one that follows another).  Figures only: nothing fails on
# speed.
. "$SPLITNVE_SRC/tests/tools/tnve-lib.sh"
CYCLES=${TNVE_BENCH_CYCLES:-100}
STORM=${TNVE_BENCH_STORM:-1000}
IDLE_CYCLES=${TNVE_BENCH_IDLE_CYCLES:-8}

start_libvirtd
start_nnve
start_agent
session_ready() { tnvectl --json show session | jq -e '.state == "up" and .sync == "ready"'; }
wait_for "agent session up" 10 session_ready
virsh_c "destroy test; undefine test" >/dev/null 2>&1
wait_for "test domain gone" 10 sh -c "[ \"\$('$B/bin/nnvectl' -s '$T/nnve.ctl' --json show tsis | jq length)\" = 0 ]"

acked() { tnvectl --json show tsis | jq -e --arg t "$1" --arg s "$2" '[.[] | select(.tsi == $t and .acked == $s and .pending == "-")] | length == 1'; }
gone() { tnvectl --json show tsis | jq -e --arg t "$1" '[.[] | select(.tsi == $t and .acked != "init")] | length == 0'; }

# table LABEL JSON INSIDE: the TABLE rows of one latency/show answer (p99 in microseconds):
# the whole, the libvirt calls its events waited for, the agent's own share, and the nNVE's
# round trips (the floor the agent cannot go under: one per request on the path); INSIDE,
# the nNVE's own figures over the same window (nnvectl latency/show): its share of those.
table() {
    local label=$1 j=$2 total nnve
    total=$(jq -r '.p99_us // "-"' <<<"$j")
    nnve=$(jq -r '.nnve_rtt.p99_us // "-"' <<<"$j")
    echo "TABLE|tnve-agent libvirt event -> nNVE ack, $label, p99 (us)|$total|$nnve|$(awk -v a="$total" -v b="$nnve" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "-" }')"
    echo "TABLE|  starts alone (to activated), $label, p99 (us)|$(jq -r '.by_state.activated.p99_us // "-"' <<<"$j")|-|-"
    echo "TABLE|  stops alone (to init), $label, p99 (us)|$(jq -r '.by_state.init.p99_us // "-"' <<<"$j")|-|-"
    echo "TABLE|  of which libvirt calls on the path, $label, p99 (us)|$(jq -r '.libvirt.p99_us // 0' <<<"$j")|-|-"
    echo "TABLE|  of which the reader thread hand-off, $label, p99 (us)|$(jq -r '.reader_hop.p99_us // 0' <<<"$j")|-|-"
    echo "TABLE|  of which the agent's own, event to request sent, $label, p99 (us)|$(jq -r '.to_send.p99_us // "-"' <<<"$j")|-|-"
    echo "TABLE|  nNVE request round trip, $label, p99 (us)|$nnve|-|-"
    echo "TABLE|    of which the agent's loop busy, $label, p99 (us)|$(jq -r '.nnve_rtt.loop_busy.p99_us // 0' <<<"$j")|-|-"
    echo "TABLE|    of which inside nnve-daemon, decoded to answered, $label, p99 (us)|$(jq -r '.[] | select(.what == "request") | .p99_us // "-"' <<<"$3")|-|-"
    echo "TABLE|      of which its commits (log written and synced), $label, p99 (us)|$(jq -r '.[] | select(.what == "commit") | .p99_us // "-"' <<<"$3")|-|-"
}

# daemon_summary JSON: the nNVE's own figures (nnvectl latency/show) on one line
daemon_summary() {
    jq -r 'map("\(.what) p50=\(.p50_us) p99=\(.p99_us) n=\(.samples)") | "inside nnve-daemon: " + join(" | ")' <<<"$1"
}

# reset: both sides' latency figures start again
reset() {
    tnvectl latency/show reset >/dev/null
    nnvectl latency/show reset >/dev/null
}

# summary JSON: one latency/show answer on one line (microseconds)
summary() {
    jq -r '"samples=\(.samples) p50_us=\(.p50_us) p90_us=\(.p90_us) p99_us=\(.p99_us) max_us=\(.max_us) | libvirt p50=\(.libvirt.p50_us) p99=\(.libvirt.p99_us) n=\(.libvirt.samples) | hop p50=\(.reader_hop.p50_us) p99=\(.reader_hop.p99_us) | to_send p50=\(.to_send.p50_us) p99=\(.to_send.p99_us) | nnve_rtt p50=\(.nnve_rtt.p50_us) p99=\(.nnve_rtt.p99_us) n=\(.nnve_rtt.samples) loop_busy p50=\(.nnve_rtt.loop_busy.p50_us) p99=\(.nnve_rtt.loop_busy.p99_us) | starts p50=\(.by_state.activated.p50_us) p99=\(.by_state.activated.p99_us) | stops p50=\(.by_state.init.p50_us) p99=\(.by_state.init.p99_us)"' <<<"$1"
}

# What the nNVE's disk gives a lone request: one 4 KiB write and fdatasync every 80 ms, as
# the single-domain cycles below make them, in the daemon's state directory.
"$SPLITNVE_BUILD/bench/floor" --fdatasync "$T/nstate" --count 100 --gap-ms 80

# The cycles' commands go to one virsh that stays connected, its input a FIFO: a virsh
# started for each command would load, connect and tear down on these two CPUs while the
# measured exchange runs (on a rack, the switch is another machine than the hypervisor).
mkfifo "$T/vsh.in"
virsh -q -c "$URI" <"$T/vsh.in" >"$T/vsh.out" 2>&1 &
VSH_PID=$!
FAIL_LOGS+=(vsh.out) # its errors, should a cycle not converge
exec 7>"$T/vsh.in"
vsh() { echo "$*" >&7; }

# cycles N [GAP]: N start/destroy cycles of vm1, one at a time, each start and destroy
# GAP seconds after the last change (default none); then $single and $inside hold both
# sides' latency figures over them (reset before).
cycles() {
    reset
    for _ in $(seq 1 "$1"); do
        [ -n "${2:-}" ] && sleep "$2"
        vsh "start vm1"
        sleep 0.05 # let the measured exchange run without the poller competing for the CPU
        wait_for "vm1 activated" 10 acked "$TSI1" activated
        [ -n "${2:-}" ] && sleep "$2"
        vsh "destroy vm1"
        sleep 0.05
        wait_for "vm1 gone" 10 gone "$TSI1"
    done
    single=$(tnvectl --json latency/show reset)
    inside=$(nnvectl --json latency/show reset)
}

domain_xml 1 rule >"$T/vm1.xml"
TSI1="$(uuid_of 1)/$(mac_of 1 1)"
virsh_c "define $T/vm1.xml" >/dev/null
cycles "$CYCLES"
table "one domain, first of its VN" "$single" "$inside"
echo "tnve single domain, first of its VN ($CYCLES start + $CYCLES destroy):" \
    "$(summary "$single")"
daemon_summary "$inside"

# the same with another domain keeping the VN connected (no VN_CONNECT / VN_DISCONNECT)
domain_xml 0 rule >"$T/vm0.xml"
virsh_c "define $T/vm0.xml; start vm0" >/dev/null
wait_for "vm0 activated" 10 acked "$(uuid_of 0)/$(mac_of 0 1)" activated
cycles "$CYCLES"
table "one domain, VN connected" "$single" "$inside"
echo "tnve single domain, VN already connected ($CYCLES start + $CYCLES destroy):" \
    "$(summary "$single")"
daemon_summary "$inside"

# The same after an idle spell: each start and stop 2.5 s after the last change, as on a
# quiet switch (the nNVE has folded its log into its database by then).  Few samples:
# p50 and max.
cycles "$IDLE_CYCLES" 2.5
exec 7>&- # virsh reads its end and leaves
wait "$VSH_PID" || { cat "$T/vsh.out"; fail "the cycles' virsh failed"; }
echo "TABLE|tnve-agent libvirt event -> nNVE ack, one domain after 2.5 s idle, p50 (us)|$(jq -r '.p50_us // "-"' <<<"$single")|-|-"
echo "TABLE|  the same, max of $((2 * IDLE_CYCLES)) (us)|$(jq -r '.max_us // "-"' <<<"$single")|-|-"
echo "TABLE|  of which the nNVE's commits, p50 (us)|$(jq -r '.[] | select(.what == "commit") | .p50_us // "-"' <<<"$inside")|-|-"
echo "tnve single domain after 2.5 s idle ($IDLE_CYCLES start + $IDLE_CYCLES destroy):" \
    "$(summary "$single")"
daemon_summary "$inside"

# start storm
cmds=""
for n in $(seq 2 $((STORM + 1))); do
    domain_xml "$n" rule >"$T/vm$n.xml"
    cmds="${cmds}define $T/vm$n.xml; "
done
virsh -q -c "$URI" "$cmds" >/dev/null 2>&1
wait_for "agent saw $STORM definitions" 60 sh -c "[ \"\$('$B/bin/tnvectl' -s '$T/agent.ctl' --json show domains | jq length)\" -ge $((STORM + 2)) ]"
cmds=""
for n in $(seq 2 $((STORM + 1))); do cmds="${cmds}start vm$n; "; done
tnvectl latency/show reset >/dev/null
t0=$(date +%s%N)
virsh -q -c "$URI" "$cmds" >/dev/null 2>&1
t1=$(date +%s%N)
all_active() { [ "$(nnvectl --json show tsis | jq '[.[] | select(.state == "activated")] | length')" -ge $((STORM + 1)) ]; }
wait_for "$STORM domains activated" 120 all_active
t2=$(date +%s%N)
storm=$(tnvectl --json latency/show)
echo "tnve start storm ($STORM domains):" \
    "$(summary "$storm")" \
    "virsh_ms=$(((t1 - t0) / 1000000)) all_acked_ms=$(((t2 - t0) / 1000000))"
