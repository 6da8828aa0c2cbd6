#!/bin/bash
# bench/tnve-restart.sh: tnve-agent restart with many TSIs.  A private libvirtd (test
# driver) with TNVE_BENCH_DOMAINS running domains of TNVE_BENCH_VNICS vNICs each, a real
# nnve-daemon (none backend, sync=full) and the agent over TLS on 127.0.0.1.  Once every
# TSI is Activated the agent is stopped and started again; measured: from the new agent's
# start to its SYNC_END acknowledged (wall clock of the agent's log line), and the
# dataplane changes that restart made on either side (nNVE backend journal lines, agent
# dataplane log lines): the goal is none.  Figures only: nothing fails on speed.
. "$SPLITNVE_SRC/tests/tools/tnve-lib.sh"
DOMS=${TNVE_BENCH_DOMAINS:-2000}
VNICS=${TNVE_BENCH_VNICS:-5}
TSIS=$((DOMS * VNICS))

start_libvirtd
start_nnve

# vmN with VNICS vNICs on network default (VN blue by the agent's rule)
big_xml() {
    local n=$1 k ifs=""
    for k in $(seq 1 "$VNICS"); do
        ifs="$ifs<interface type='network'><mac address='$(mac_of "$n" "$k")'/><source network='default'/></interface>"
    done
    printf "<domain type='test'><name>vm%d</name><uuid>%s</uuid><memory unit='KiB'>65536</memory><os><type arch='x86_64'>hvm</type></os><devices>%s</devices></domain>\n" \
        "$n" "$(uuid_of "$n")" "$ifs"
}
mkdir -p "$T/xml"
cmds=""
for n in $(seq 1 "$DOMS"); do
    big_xml "$n" >"$T/xml/vm$n.xml"
    cmds="${cmds}define $T/xml/vm$n.xml; start vm$n; "
done
virsh -q -c "$URI" "$cmds" >/dev/null 2>&1 || fail "defining $DOMS domains"

start_agent
all_active() { [ "$(nnvectl --json show tsis | jq '[.[] | select(.state == "activated")] | length')" -ge "$TSIS" ]; }
wait_for "$TSIS TSIs activated" 600 all_active
session_ready() { tnvectl --json show session | jq -e '.state == "up" and .sync == "ready"'; }
wait_for "agent in sync" 60 session_ready

stop_pid "$AGENT_PID" || fail "agent did not stop"
AGENT_PID=
ports_before=$(grep -v '^#' "$T/astate/tnve-agent.ports" | sort -u)
journal_before=$(journal_changes)
log_before=$(wc -l <"$T/agent.log")
t0=$(date +%s%3N)
start_agent
synced() { tail -n +$((log_before + 1)) "$T/agent.log" | grep -q 'response SYNC_END status=success'; }
wait_for "SYNC_END after the restart" 300 synced
wait_for "agent in sync" 60 session_ready
line=$(tail -n +$((log_before + 1)) "$T/agent.log" | grep -m1 'response SYNC_END status=success')
t1=$(date -d "$(cut -d' ' -f1 <<<"$line")" +%s%3N)
after=$(tail -n +$((log_before + 1)) "$T/agent.log")
# agent side: a tag set on a port that the previous run had not left with that tag, and
# every tag cleared (the none backend logs each call; a new process has no memory of the
# ports, so a call that sets what is in place is not a change)
agent_dp=$(sed -n 's/.* dp: port pvid set port=\([^ ]*\) tag=\([0-9]*\) .*/\1 \2/p' <<<"$after" |
    sort -u | comm -23 - <(echo "$ports_before") | grep -c . || true)
agent_dp=$((agent_dp + $(grep -c ' dp: port pvid cleared ' <<<"$after" || true)))
nnve_dp=$(($(journal_changes) - journal_before))
sent=$(tnvectl --json counters/show | jq -c '.reconciler.sent // .sent // {}' 2>/dev/null)
# phases, from the agent's log: libvirt connected, inventory complete (listed and applied),
# SYNC_BEGIN sent
ts_of() { date -d "$(grep -m1 -- "$1" <<<"$after" | cut -d' ' -f1)" +%s%3N; }
t_conn=$(ts_of 'connected to libvirt') t_inv=$(ts_of 'domain inventory complete')
t_sync=$(ts_of 'request SYNC_BEGIN')
echo "tnve restart phases ms: exec+connect=$((t_conn - t0)) listing=$((t_inv - t_conn))" \
    "sync_begin=$((t_sync - t_inv)) sync=$((t1 - t_sync))"
echo "tnve restart ($TSIS TSIs, $DOMS domains): start -> SYNC_END acked ms=$((t1 - t0))" \
    "nnve_dataplane_changes=$nnve_dp agent_dataplane_changes=$agent_dp"
echo "TABLE|tnve-agent restart, $TSIS TSIs / $DOMS domains: start -> SYNC_END acked (ms)|$((t1 - t0))|-|-"
echo "TABLE|tnve-agent restart: dataplane changes, nNVE + agent|$((nnve_dp + agent_dp))|-|-"
# the listing after the (re)connect runs off the loop, which applies it a slice per pass:
# the longest pass is how long the loop waited for it (the rest of its time other events
# and the control socket are served)
hold=$(tnvectl --json counters/show | jq -r '.libvirt_listing_hold_max_us')
echo "tnve listing of $DOMS domains: the loop held for at most us=$hold at a time"
echo "TABLE|tnve-agent listing $DOMS domains after a libvirt connect: longest loop hold (us)|$hold|-|-"
