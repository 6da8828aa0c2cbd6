#!/bin/bash
# test-tnve-dual.sh: a dual-homed hypervisor (RFC 8394 Req-3, Req-4).  One tnve-agent with
# two [nnve] sections keeps a session to each of two independent nnve-daemons (sw1, sw2:
# none backend with a journal, the same VN catalogue and tag pool, each on a port held for
# the whole test), real TLS, a private libvirtd (test driver).  VN blue (5000, the config
# rule of network default) and green (5002, network green) are active-active; red (5001,
# from the domain metadata) is active-standby (the host's mode).
#  - start: active-active TSIs at both nNVEs with one tag, active-standby TSIs at sw1 only;
#  - kill -9 sw1: the active-standby TSIs move to sw2, the active-active ones stay untouched
#    there (no journal line about them);
#  - while sw1 is down: a hook is answered (a start is not refused for the pair's missing
#    switch), domains start and stop;
#  - sw1 comes back: it is resynchronised to exactly what libvirt says it serves, and sw2's
#    journal does not change (no failback);
#  - nnve activate sw1 moves the active-standby TSIs back by hand;
#  - the two nNVEs giving one VN two tags is reported (error log, counters);
#  - a hook both nNVEs would refuse is refused with the reason;
#  - the agent restarting while sw1 is down makes sw2 active once sw1's attempt failed.
. "$SPLITNVE_SRC/tests/tools/tnve-lib.sh"

FAIL_LOGS=(agent.log n1.log n2.log)
SW_GLOBAL="hold_time = 20s
tag_hold_down = 60s"
SW_SECTIONS="[domain d1]
ports = *
tags = 100-199

[hypervisor hv1]
port = p1
vns = blue, red, green, 5000-5999

[vn blue]
id = 5000
[vn red]
id = 5001
[vn green]
id = 5002"

# tag_at N TSI: the TSI's tag at switch N ("none" when not there).
tag_at() { swctl "$1" --json show tsis | jq -r --arg t "$2" '[.[] | select(.tsi == $t)][0].tag // "none"'; }
both_ready() {
    session | jq -e '(.nnves | length == 2) and all(.nnves[]; .state == "up" and .sync == "ready")'
}

"$S/scripts/gen-pki.sh" "$T/pki" nnve1 nnve2 hv1 >/dev/null 2>&1 || fail "gen-pki"
start_libvirtd
sw_start 1
sw_start 2

# the agent's memory of sw2's tags: green had 150 there (sw1 will give it its lowest free)
mkdir -p "$T/astate"
printf '5002 green 150\n' >"$T/astate/tnve-agent.sw2.tags"
# the test driver gives every domain one address: not learnt (the nNVE would see two TSIs
# of a VN claim it); a dead switch's held port accepts and never answers: an attempt gives
# up after connect_timeout
pair_agent_conf "mode = active-standby
address_poll_interval = 0
connect_timeout = 3s" "[map green-net]
network = green
vn_id = 5002
vn_name = green
mode = active-active" >"$T/agent.conf"
"$B/bin/tnve-agent" --check-config -c "$T/agent.conf" >"$T/check.out" 2>&1 || { cat "$T/check.out"; fail "check-config"; }
grep -q "nnve sw2" "$T/check.out" || fail "check-config does not list the nNVEs: $(cat "$T/check.out")"
# the single-nNVE keys and [nnve] sections do not mix: refused with the file and line
{ sed -n '1,/^\[nnve sw1\]/p' "$T/agent.conf" | sed '$d'; echo "nnve_identity = nnve1"; sed -n '/^\[nnve sw1\]/,$p' "$T/agent.conf"; } >"$T/bad.conf"
out=$("$B/bin/tnve-agent" --check-config -c "$T/bad.conf" 2>&1) && fail "mixed single-nNVE key and [nnve] sections accepted"
echo "$out" | grep -q "bad.conf:[0-9]*:.*single-nNVE" || fail "mixed config error lacks FILE:LINE: $out"
log "config: two [nnve] sections; mixing in single-nNVE keys is refused ($out)"

"$B/bin/tnve-agent" -c "$T/agent.conf" >>"$T/agent.log" 2>&1 &
AGENT_PID=$!
wait_for "agent control socket" 10 test -S "$T/agent.ctl"
wait_for "both sessions up and in sync" 15 both_ready
[ "$(session | jq -r .active)" = sw1 ] || fail "active nNVE is not the first configured: $(session | jq -c .)"
tnvectl show nnves | grep -q "sw2.*standby" || fail "show nnves: $(tnvectl show nnves)"
log "agent: a session to sw1 (active) and sw2 (standby)"

# the test driver's domain "test" is in network default: blue, active-active
TSI0=6695eb01-f6a4-8304-79aa-97f2502e193f/aa:bb:cc:dd:ee:ff
expect_at 1 "$TSI0" activated
expect_at 2 "$TSI0" activated
domain_xml 1 rule >"$T/vm1.xml"
domain_xml 2 meta-red >"$T/vm2.xml"
domain_xml 3 meta-red >"$T/vm3.xml"
domain_xml 4 rule >"$T/vm4.xml"
TSI1="$(uuid_of 1)/$(mac_of 1 1)"
TSI2="$(uuid_of 2)/$(mac_of 2 1)"
TSI3="$(uuid_of 3)/$(mac_of 3 1)"
TSI4="$(uuid_of 4)/$(mac_of 4 1)"
virsh_c "define $T/vm1.xml; define $T/vm2.xml; start vm1; start vm2" >/dev/null || fail "start vm1 vm2"
expect_at 1 "$TSI1" activated
expect_at 2 "$TSI1" activated
expect_at 1 "$TSI2" activated
BLUE=$(tag_at 1 "$TSI1")
RED=$(tag_at 1 "$TSI2")
[ "$(tag_at 2 "$TSI1")" = "$BLUE" ] || fail "blue has tag $BLUE at sw1 but $(tag_at 2 "$TSI1") at sw2"
[ "$(tag_at 2 "$TSI0")" = "$BLUE" ] || fail "domain test's tag differs at sw2"
sleep 0.5
[ "$(state_at 2 "$TSI2")" = absent ] || fail "active-standby TSI at the standby sw2"
tnvectl --json show tsis | jq -e --arg t "$TSI2" '.[] | select(.tsi == $t) | .served_by == ["sw1"] and .acked == "activated"' >/dev/null ||
    fail "show tsis: vm2 not served by sw1 alone: $(tnvectl --json show tsis | jq -c --arg t "$TSI2" '.[] | select(.tsi == $t)')"
tnvectl --json show tsis | jq -e --arg t "$TSI1" '.[] | select(.tsi == $t) | (.served_by | sort) == ["sw1","sw2"] and .nnves.sw2.acked == "activated"' >/dev/null ||
    fail "show tsis: vm1 not served by both"
log "start: blue (active-active, tag $BLUE) at both nNVEs, red (active-standby, tag $RED) at sw1 only"

# ---- sw1 dies
cp "$T/n2/journal" "$T/j2.before"
sw_kill 1
expect_at 2 "$TSI2" activated 15
[ "$(session | jq -r .active)" = sw2 ] || fail "sw2 did not become active"
[ "$(tag_at 2 "$TSI2")" = "$RED" ] || fail "red got tag $(tag_at 2 "$TSI2") at sw2, $RED at sw1"
tnvectl --json show counters | jq -e '.failovers == 1' >/dev/null || fail "failovers counter: $(tnvectl --json show counters | jq -c '{failovers}')"
grep -q "active nNVE changed nnve=sw2 was=sw1 cause=session why=\"session lost\"" "$T/agent.log" || fail "no log line for the failover"
size=$(stat -c %s "$T/j2.before")
cmp -n "$size" "$T/j2.before" "$T/n2/journal" || fail "sw2's journal was rewritten"
tail -c +$((size + 1)) "$T/n2/journal" >"$T/j2.new"
if grep -v '^reconcile-' "$T/j2.new" | grep -E "$TSI0|$TSI1|tag=$BLUE( |$)"; then
    fail "the failover touched active-active state at the survivor"
fi
grep -q "$TSI2" "$T/j2.new" || fail "sw2's journal does not show vm2 arriving"
for t in "$TSI0" "$TSI1"; do [ "$(state_at 2 "$t")" = activated ] || fail "$t left sw2"; done
log "kill -9 sw1: red moved to sw2 (tag $RED); blue untouched at sw2 ($(grep -vc '^reconcile-' "$T/j2.new") journal lines, none about blue)"

# ---- life goes on while sw1 is down
out=$(tnvectl -t 10 hook prepare vm4 <"$T/vm4.xml" 2>&1) || fail "hook refused while one nNVE of the pair is down: $out"
out=$(grep -o "hook answered domain=vm4 .*" "$T/agent.log") || fail "no log line for the hook's answer"
echo "$out" | grep -q "sw2 sw1 (down)\|sw1 (down) sw2" || fail "hook answer does not say sw1 is down: $out"
expect_at 2 "$TSI4" associated 5
virsh_c "define $T/vm4.xml; start vm4; destroy vm1; define $T/vm3.xml; start vm3" >/dev/null || fail "lifecycle while sw1 is down"
expect_at 2 "$TSI4" activated
expect_at 2 "$TSI3" activated
expect_at 2 "$TSI1" absent
log "sw1 down: hook answered ($out), vm4 and vm3 started, vm1 stopped: all at sw2"

# ---- sw1 returns
sleep 0.5
cp "$T/n2/journal" "$T/j2.mid"
sw_start 1
wait_for "sw1 session up and in sync again" 20 nnve_ready sw1
# sw1 holds exactly the active-active TSIs of running domains (test, vm4)
want1=$(printf '%s activated\n' "$TSI0" "$TSI4" | sort)
wait_for "sw1 resynchronised (now: $(tsis_at 1 | tr '\n' ' '))" 15 sh -c "[ \"\$(\"$B/bin/nnvectl\" -s '$T/n1/ctl' --json show tsis | jq -r '.[] | \"\\(.tsi) \\(.state)\"' | sort)\" = '$want1' ]"
want2=$(printf '%s activated\n' "$TSI0" "$TSI2" "$TSI3" "$TSI4" | sort)
[ "$(tsis_at 2)" = "$want2" ] || fail "sw2 holds $(tsis_at 2 | tr '\n' ' '), want $want2"
[ "$(tag_at 1 "$TSI4")" = "$BLUE" ] || fail "blue's tag changed at sw1 after its restart"
sleep 1
cmp "$T/j2.mid" "$T/n2/journal" || fail "sw2's journal changed when sw1 returned: $(diff "$T/j2.mid" "$T/n2/journal")"
[ "$(session | jq -r .active)" = sw2 ] || fail "active nNVE failed back on its own"
log "sw1 back: resynchronised to libvirt's state, sw2's journal unchanged, sw2 stays active"

# ---- failback by hand
tnvectl nnve activate sw1 >/dev/null || fail "nnve activate sw1"
expect_at 1 "$TSI2" activated
expect_at 1 "$TSI3" activated
expect_at 2 "$TSI2" absent
expect_at 2 "$TSI3" absent
[ "$(tag_at 1 "$TSI2")" = "$RED" ] || fail "red's tag at sw1 changed: $(tag_at 1 "$TSI2")"
out=$(tnvectl nnve activate sw9 2>&1) && fail "unknown nNVE activated"
log "nnve activate sw1: red moved back to sw1; unknown name refused ($out)"

# ---- the two nNVEs give green two tags: reported, counted
cat >"$T/vm5.xml" <<XML
<domain type='test'>
  <name>vm5</name>
  <uuid>$(uuid_of 5)</uuid>
  <memory unit='KiB'>65536</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices><interface type='network'><mac address='$(mac_of 5 1)'/><source network='green'/><target dev='vm5p1'/></interface></devices>
</domain>
XML
TSI5="$(uuid_of 5)/$(mac_of 5 1)"
virsh_c "define $T/vm5.xml; start vm5" >/dev/null || fail "start vm5"
expect_at 1 "$TSI5" activated
expect_at 2 "$TSI5" activated
G1=$(tag_at 1 "$TSI5")
G2=$(tag_at 2 "$TSI5")
[ "$G2" = 150 ] && [ "$G1" != 150 ] || fail "green: tags $G1/$G2, the test wanted two different ones"
wait_for "mismatch counted" 5 sh -c "'$B/bin/tnvectl' -s '$T/agent.ctl' --json show counters | jq -e '.vn_tag_mismatches == 1 and .vns_mismatched == 1'"
grep -q "err agent: tag mismatch between nNVEs vn=5002/green tags=sw1=$G1,sw2=$G2: .*active=sw1" "$T/agent.log" ||
    fail "no error line for green's tag mismatch"
tnvectl --json show tsis | jq -e --arg t "$TSI5" --argjson g "$G1" '.[] | select(.tsi == $t) | .tag == $g' >/dev/null ||
    fail "show tsis: vm5 not shown with the active nNVE's tag $G1"
[ "$(grep -c 'tag mismatch between nNVEs vn=5002' "$T/agent.log")" = 1 ] || fail "the mismatch was logged more than once"
log "green: tag $G1 at sw1, $G2 at sw2: error logged once, counted, the active nNVE's tag used"

# a start both nNVEs refuse (a VN hv1 may not use) is refused, with the nNVE's reason
sed -e 's/vm2/vm6/; s/000000000002/000000000006/' -e "s/vn-id='5001' vn-name='red'/vn-id='4000'/" \
    -e "s/$(mac_of 2 1)/$(mac_of 6 1)/g" "$T/vm2.xml" >"$T/vm6.xml"
out=$(tnvectl -t 10 hook prepare vm6 <"$T/vm6.xml" 2>&1) && fail "hook for an unauthorized VN accepted"
echo "$out" | grep -q "nNVE sw1: .*NOT_AUTHORIZED\|nNVE sw1: .*not authorized" || fail "refusal without the nNVE's reason: $out"
sleep 0.3
[ "$(state_at 2 "$(uuid_of 6)/$(mac_of 6 1)")" = absent ] || fail "refused domain left at sw2"
log "hook for VN 4000 refused: $out"

# ---- the agent restarts while sw1 is down: sw1's first attempt fails, sw2 takes over
stop_pid "$AGENT_PID" || fail "agent did not exit cleanly"
AGENT_PID=
sw_kill 1
[ -s "$T/astate/tnve-agent.sw2.tags" ] || fail "no tags file for sw2"
"$B/bin/tnve-agent" -c "$T/agent.conf" >>"$T/agent.log" 2>&1 &
AGENT_PID=$!
wait_for "agent control socket" 10 test -S "$T/agent.ctl"
wait_for "sw2 active after sw1's first attempt failed" 20 sh -c "'$B/bin/tnvectl' -s '$T/agent.ctl' --json show session | jq -e '.active == \"sw2\"'"
expect_at 2 "$TSI2" activated
expect_at 2 "$TSI3" activated
[ "$(tag_at 2 "$TSI4")" = "$BLUE" ] || fail "blue's tag at sw2 changed across the agent restart"
grep -q "active nNVE changed nnve=sw2 was=sw1 cause=session why=\"connection attempt failed\"" "$T/agent.log" || fail "no failover log line"
log "agent restarted with sw1 down: sw2 active once sw1's attempt timed out, red there"

# ---- soak (scripts/soak.sh: TNVE_DUAL_SOAK_OPS random steps): VM starts and stops, kill -9
# and restart of either switch, moves of the active role; at the end both switches hold
# exactly what libvirt's running domains need: the active-active TSIs at both, the
# active-standby ones at the active nNVE.
OPS=${TNVE_DUAL_SOAK_OPS:-0}
if [ "$OPS" -gt 0 ]; then
    RANDOM=${TNVE_DUAL_SOAK_SEED:-1}
    sw_start 1
    wait_for "both sessions up" 30 both_ready
    soak_vm() { echo $((10 + $1)); }
    cmds=""
    for k in $(seq 0 9); do
        n=$(soak_vm "$k")
        if [ $((k % 2)) = 0 ]; then domain_xml "$n" rule; else domain_xml "$n" meta-red; fi >"$T/vm$n.xml"
        cmds="${cmds}define $T/vm$n.xml; "
    done
    virsh_c "$cmds" >/dev/null || fail "soak: define"
    down=""
    for step in $(seq 1 "$OPS"); do
        r=$((RANDOM % 10))
        if [ $r -le 4 ]; then
            n=$(soak_vm $((RANDOM % 10)))
            if virsh_c domstate "vm$n" | grep -q running; then op="destroy vm$n"; else op="start vm$n"; fi
            virsh_c "$op" >/dev/null 2>&1 || fail "soak step $step: $op"
        elif [ $r -le 6 ] && [ -z "$down" ]; then
            down=$((1 + RANDOM % 2))
            op="kill -9 sw$down"
            sw_kill "$down"
        elif [ $r -le 8 ] && [ -n "$down" ]; then
            op="restart sw$down"
            sw_start "$down"
            down=""
        elif [ -z "$down" ] && both_ready >/dev/null 2>&1; then
            op="activate the standby"
            other=$(session | jq -r '[.nnves[] | select(.role == "standby")][0].name')
            tnvectl nnve activate "$other" >/dev/null 2>&1 || op="$op (refused: not up)"
        else
            op="-"
        fi
        echo "--- step $step: $op" | tee -a "$T/soak.log"
        sleep 0.$((RANDOM % 3))
    done
    [ -n "$down" ] && sw_start "$down"
    wait_for "both sessions up and in sync after the soak" 60 both_ready
    # what libvirt says: the TSI of every running domain, by mode
    soak_want() { # N: the sorted "tsi activated" lines switch N must hold
        local n=$1 active d mode
        active=$(session | jq -r .active)
        for d in $(virsh_c list --name); do
            case $d in
            test) echo "$TSI0 aa" ;;
            vm*) n2=${d#vm}
                 case $n2 in 2 | 3) mode=as ;; 4 | 5) mode=aa ;; *) mode=$([ $((n2 % 2)) = 0 ] && echo aa || echo as) ;; esac
                 echo "$(uuid_of "$n2")/$(mac_of "$n2" 1) $mode" ;;
            esac
        done | while read -r t m; do
            [ "$m" = aa ] || [ "sw$n" = "$active" ] && echo "$t activated"
        done | sort
    }
    soak_ok() { [ "$(tsis_at 1)" = "$(soak_want 1)" ] && [ "$(tsis_at 2)" = "$(soak_want 2)" ]; }
    wait_for "both switches equal to libvirt after $OPS soak steps" 60 soak_ok ||
        fail "soak: sw1 $(tsis_at 1 | tr '\n' ' ') / want $(soak_want 1 | tr '\n' ' ')"
    ! grep "tag mismatch between nNVEs vn=500[01]" "$T/agent.log" || fail "soak: blue or red got two tags"
    log "soak: $OPS steps ($(grep -c 'kill -9' "$T/soak.log") switch kills), both switches equal to libvirt's running domains"
fi

stop_pid "$AGENT_PID" || fail "agent did not exit cleanly"
AGENT_PID=
log "PASS"
