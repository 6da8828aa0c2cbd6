#!/bin/bash
# bench/tnve-dual.sh: a dual-homed hypervisor's failover and resync times.  One tnve-agent
# with two [nnve] sections, two nnve-daemons (none backend) over TLS on 127.0.0.1, a
# private libvirtd (test driver).  TNVE_DUAL_AS domains with one vNIC in VN red
# (active-standby) and TNVE_DUAL_TSIS vNICs in VN blue (active-active, 10 per domain).
#   1. kill -9 the active nNVE (sw1); failover = from the kill to the first and to the last
#      active-standby TSI activated at sw2 (timestamps of sw2's audit log); the active-active
#      TSIs are served by sw2 throughout (failover 0; checked: sw2 logs no change for them);
#   2. sw1 restarts; resync = from its "session established" to its "sync: end" with the
#      agent (sw1's log), the TSIs it holds re-announced one by one, the active-standby
#      ones swept;
#   3. the active nNVE (sw2 now) goes silent (kill -STOP): failover = from the stop to the
#      last active-standby TSI activated at sw1; the agent notices after 3 x sw2's announced
#      keepalive (default 10 s; cause=dead-peer);
#   4. the agent restarts while the first nNVE (sw1, active) is frozen: from the agent's
#      start to its "active nNVE changed nnve=sw2" (hello_timeout, default 4 s).
#   0. (first) a new VN at the follower of a ToR pair: VN_CONNECT to SUCCESS, see below.
# The control plane's times: the dataplane keeps forwarding on the survivor meanwhile.
# Figures only: nothing fails on speed.  Also prints TABLE|figure|value|-|- lines.
. "$SPLITNVE_SRC/tests/tools/tnve-lib.sh"
N_AS=${TNVE_DUAL_AS:-100}
N_AA=${TNVE_DUAL_TSIS:-10000}
PER=10
N_DOM=$(((N_AA + PER - 1) / PER))
FAIL_LOGS=(agent.log n1.log n2.log)
SW_GLOBAL="hold_time = 60s
max_tsis_per_session = 100000"
SW_SECTIONS="[domain d1]
ports = *
tags = 100-199

[hypervisor hv1]
port = p1
vns = blue, red
max_tsis = 100000

[vn blue]
id = 5000
[vn red]
id = 5001"

count_at() { swctl "$1" --json show tsis | jq --arg v "$2" '[.[] | select(.state == "activated" and (.vn_id | tostring) == $v)] | length'; }
count_is() { [ "$(count_at "$1" "$2")" = "$3" ]; }
ms_of() { date -d "$1" +%s%3N; } # an ISO log timestamp in ms since the epoch
table() { echo "TABLE|$1|$2|-|-"; }
cleanup_more() { sw_thaw_all; }

"$S/scripts/gen-pki.sh" "$T/pki" nnve1 nnve2 nnve3 nnve4 hv1 hv2 >/dev/null 2>&1 || fail "gen-pki"

# ---- 0. new VNs at a ToR pair's follower: sw3 (allocator) and sw4 (follower) share domain
# d2; a second agent hv2 (its own libvirtd, retry times at their defaults) is dual-homed
# to them.  Each of TNVE_DUAL_NEW_VNS VMs, started one at a time, brings a new VN: the
# follower claims its tag from the allocator first.  Figure: from the agent's first
# VN_CONNECT of the VN to its last SUCCESS (the follower's; the agent's log).
N_NEW=${TNVE_DUAL_NEW_VNS:-20}
pair_sections() { # ROLE PEER_IDENTITY PAIR_LINE
    printf '[domain d2]\nports = *\ntags = 100-199\n\n[hypervisor hv2]\nport = p2\nvns = 6000-6999\n\n'
    printf '[pair]\ndomain = d2\nrole = %s\npeer_identity = %s\n%s\n' "$1" "$2" "$3"
}
SW_SECTIONS=$(pair_sections allocator nnve4 "listen = 127.0.0.1:0") sw_start 3
pport=$(grep 'pair: started' "$T/n3.log" | tail -1 | sed 's/.*port=\([0-9]*\).*/\1/')
SW_SECTIONS=$(pair_sections follower nnve3 "peer = 127.0.0.1:$pport") sw_start 4
pair_synced() { [ "$(swctl "$1" --json show pair | jq -r .synced)" = true ]; }
wait_for "pair sw3-sw4 synchronised" 30 pair_synced 4
start_libvirtd_in "$T/hv2"
URI2="test+unix:///default?socket=$T/hv2/run/libvirt-sock"
{
    agent_conf_common hv2 "$T/hv2" "$URI2" pair | sed '/^retry_m/d'
    printf 'mode = active-active\naddress_poll_interval = 0\n\n'
    agent_pair_conf 3 4
} >"$T/hv2/agent.conf"
"$B/bin/tnve-agent" -c "$T/hv2/agent.conf" --log-level info >>"$T/hv2/agent.log" 2>&1 &
AGENT2_PID=$!
hv2_ready() {
    "$B/bin/tnvectl" -s "$T/hv2/agent.ctl" --json show session |
        jq -e '(.nnves | length == 2) and all(.nnves[]; .state == "up" and .sync == "ready")'
}
wait_for "hv2 sessions" 30 hv2_ready
vn_at() { swctl "$1" --json show vns | jq -e --argjson v "$2" 'any(.[]; .vn_id == $v)'; }
for i in $(seq 1 "$N_NEW"); do
    v=$((6000 + i))
    cat >"$T/hv2/p$i.xml" <<XML
<domain type='test'><name>pvm$i</name><uuid>$(uuid_of $((5000 + i)))</uuid><memory unit='KiB'>65536</memory>
<os><type arch='x86_64'>hvm</type></os>
<metadata><splitnve:vnics xmlns:splitnve='urn:splitnve:vn:1'><splitnve:vnic mac='$(mac_of $((5000 + i)) 1)' vn-id='$v'/></splitnve:vnics></metadata>
<devices><interface type='bridge'><mac address='$(mac_of $((5000 + i)) 1)'/><source bridge='br-p'/></interface></devices></domain>
XML
    virsh -q -c "$URI2" "define $T/hv2/p$i.xml; start pvm$i" >/dev/null 2>&1 || fail "pvm$i"
    wait_for "vn $v at sw4" 30 vn_at 4 "$v"
    wait_for "vn $v at sw3" 30 vn_at 3 "$v"
done
sleep 0.5 # the last log lines
# at LOG PATTERN: the ms timestamp of the first line matching PATTERN (0: none)
at() { local l; l=$(grep -m1 -- "$2" "$1" | awk '{print $1}'); [ -n "$l" ] && ms_of "$l" || echo 0; }
median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
waits=() steps_a=() steps_b=() steps_c=() steps_d=()
for i in $(seq 1 "$N_NEW"); do
    v=$((6000 + i))
    req=$(at "$T/hv2/agent.log" "request VN_CONNECT vn=$v[^0-9]")
    ok=$(grep "response VN_CONNECT vn=$v[^0-9].*status=success" "$T/hv2/agent.log" | tail -n 1 | awk '{print $1}')
    [ "$req" != 0 ] && [ -n "$ok" ] || fail "no VN_CONNECT lines of vn $v in hv2's log"
    ok=$(ms_of "$ok")
    waits+=($((ok - req)))
    # where it goes: the allocator grants, the follower stores the grant, connects the VN
    granted=$(at "$T/n3.log" "pair: granted domain=d2 vn=$v[^0-9]")
    stored=$(at "$T/n4.log" "pair: claim granted domain=d2 vn=$v[^0-9]")
    conn=$(at "$T/n4.log" "vn: connected hypervisor=hv2 vn=$v[^0-9]")
    steps_a+=($((granted - req))) steps_b+=($((stored - granted)))
    steps_c+=($((conn - stored))) steps_d+=($((ok - conn)))
done
med=$(median "${waits[@]}")
echo "new VN at the follower ($N_NEW VNs, one at a time): VN_CONNECT->last SUCCESS ms:" \
    "median=$med all=${waits[*]}" \
    "(follower: $(swctl 4 --json show counters | jq -c '.pair_deferred_total // {}'))"
echo "  medians, ms: agent request->allocator granted $(median "${steps_a[@]}")," \
    "->follower stored the grant $(median "${steps_b[@]}"), ->follower connected the VN" \
    "$(median "${steps_c[@]}"), ->agent got SUCCESS $(median "${steps_d[@]}")"
table "new VN at the follower, connect → SUCCESS (ms)" "$med"
stop_pid "$AGENT2_PID"
sw_kill 3
sw_kill 4

start_libvirtd
sw_start 1
sw_start 2
pair_agent_conf "request_timeout = 30s
address_poll_interval = 0
mode = active-standby" >"$T/agent.conf"
"$B/bin/tnve-agent" -c "$T/agent.conf" --log-level warn >>"$T/agent.log" 2>&1 &
AGENT_PID=$!
wait_for "agent control socket" 10 test -S "$T/agent.ctl"
wait_for "sw1 ready" 30 nnve_ready sw1
wait_for "sw2 ready" 30 nnve_ready sw2
virsh_c "destroy test; undefine test" >/dev/null 2>&1

# the domains: N_AS in red (metadata), N_DOM with PER vNICs in blue (network default)
cmds=""
for n in $(seq 1 "$N_AS"); do
    domain_xml "$n" meta-red >"$T/r$n.xml"
    cmds="${cmds}define $T/r$n.xml; start vm$n; "
done
for d in $(seq 1 "$N_DOM"); do
    n=$((1000 + d))
    ifs=""
    for k in $(seq 1 "$PER"); do
        ifs="$ifs<interface type='network'><mac address='$(mac_of "$n" "$k")'/><source network='default'/></interface>"
    done
    cat >"$T/b$d.xml" <<XML
<domain type='test'><name>bvm$d</name><uuid>$(uuid_of "$n")</uuid><memory unit='KiB'>65536</memory>
<os><type arch='x86_64'>hvm</type></os><devices>$ifs</devices></domain>
XML
    cmds="${cmds}define $T/b$d.xml; start bvm$d; "
done
t0=$(date +%s%N)
virsh -q -c "$URI" "$cmds" >/dev/null 2>&1 || fail "defining the domains"
wait_for "$N_AS red TSIs at sw1" 900 count_is 1 5001 "$N_AS"
wait_for "$((N_DOM * PER)) blue TSIs at sw1" 900 count_is 1 5000 $((N_DOM * PER))
wait_for "$((N_DOM * PER)) blue TSIs at sw2" 900 count_is 2 5000 $((N_DOM * PER))
t1=$(date +%s%N)
echo "setup: $N_AS active-standby + $((N_DOM * PER)) active-active TSIs at both nNVEs in $(((t1 - t0) / 1000000)) ms"

# ---- 1. failover
lines2=$(wc -l <"$T/n2.log")
j2=$(wc -l <"$T/n2/journal")
t_kill=$(date +%s%3N)
sw_kill 1
wait_for "$N_AS red TSIs at sw2" 300 count_is 2 5001 "$N_AS"
tail -n +$((lines2 + 1)) "$T/n2.log" | grep 'audit tsi: activated' | grep 'vn=5001' | awk '{print $1}' >"$T/as-times"
first=$(ms_of "$(head -n 1 "$T/as-times")")
last=$(ms_of "$(tail -n 1 "$T/as-times")")
detect=$(grep -m1 'active nNVE changed' "$T/agent.log" | awk '{print $1}')
aa_changed=$(tail -n +$((j2 + 1)) "$T/n2/journal" | grep -v '^reconcile-' | grep -c 'vn=5000' || true)
echo "failover active-standby ($N_AS TSIs): kill->first_activated_ms=$((first - t_kill)) kill->all_activated_ms=$((last - t_kill))" \
    "kill->agent_switched_ms=$(($(ms_of "$detect") - t_kill))"
echo "failover active-active ($((N_DOM * PER)) TSIs): 0 ms (already served by sw2; sw2 journal lines about them since the kill: $aa_changed)"
table "failover active-standby first TSI (ms)" $((first - t_kill))
table "failover active-standby all $N_AS TSIs (ms)" $((last - t_kill))
table "failover active-active (ms; TSIs changed at survivor: $aa_changed)" 0

# ---- 2. resync of the returning nNVE
lines1=$(wc -l <"$T/n1.log")
t_start=$(date +%s%3N)
sw_start 1
wait_for "sw1 resynchronised" 900 nnve_ready sw1
t_ready=$(date +%s%3N)
est=$(tail -n +$((lines1 + 1)) "$T/n1.log" | grep -m1 'session: established hypervisor=hv1' | awk '{print $1}')
endl=$(tail -n +$((lines1 + 1)) "$T/n1.log" | grep -m1 'sync: end hypervisor=hv1')
[ -n "$est" ] && [ -n "$endl" ] || fail "no session or SYNC lines in sw1's log"
resync=$(($(ms_of "$(echo "$endl" | awk '{print $1}')") - $(ms_of "$est")))
echo "resync of the returning nNVE ($(count_at 1 5000) TSIs kept): established->sync_end_ms=$resync" \
    "restart->agent_ready_ms=$((t_ready - t_start)) ($(echo "$endl" | grep -o 'tsis=[0-9]* vns=[0-9]* swept_tsis=[0-9]*'))"
table "resync of a returning nNVE, $((N_DOM * PER)) TSIs (ms)" "$resync"

# ---- 3. the active nNVE goes silent
t_stop=$(date +%s%3N)
kill -STOP "${SW_PID[2]}"
wait_for "$N_AS red TSIs at sw1" 300 count_is 1 5001 "$N_AS"
t_moved=$(date +%s%3N)
detect=$(grep 'session lost .*cause=dead-peer nnve=sw2' "$T/agent.log" | tail -n 1 | awk '{print $1}')
[ -n "$detect" ] || fail "no dead-peer line for sw2"
echo "failover from a silent active nNVE ($N_AS TSIs): stop->dead_peer_ms=$(($(ms_of "$detect") - t_stop))" \
    "stop->all_activated_ms=$((t_moved - t_stop))"
table "active-standby failover, silent nNVE, established session (ms)" $((t_moved - t_stop))
kill -CONT "${SW_PID[2]}"
wait_for "sw2 resynchronised" 900 nnve_ready sw2

# ---- 4. the agent starts while the first nNVE is silent
stop_pid "$AGENT_PID" || fail "agent did not exit cleanly"
AGENT_PID=
kill -STOP "${SW_PID[1]}"
lines=$(wc -l <"$T/agent.log")
t_start=$(date +%s%3N)
"$B/bin/tnve-agent" -c "$T/agent.conf" --log-level warn >>"$T/agent.log" 2>&1 &
AGENT_PID=$!
wait_for "the agent's failover to sw2" 120 sh -c "tail -n +$((lines + 1)) '$T/agent.log' | grep -q 'active nNVE changed nnve=sw2'"
sw=$(tail -n +$((lines + 1)) "$T/agent.log" | grep -m1 'active nNVE changed nnve=sw2' | awk '{print $1}')
echo "failover at agent start, first nNVE silent: start->switched_ms=$(($(ms_of "$sw") - t_start))"
table "active-standby failover, silent nNVE (ms)" $(($(ms_of "$sw") - t_start))
kill -CONT "${SW_PID[1]}"
