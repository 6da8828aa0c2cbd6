#!/bin/bash
# test-tnve-property.sh: random sequences of lifecycle operations (define, start, suspend,
# resume, destroy, managedsave, undefine) on many domains, in three bursts; the agent is
# killed (-9) before the second burst and restarted after it, so that burst's events are
# never seen.  After quiescence the nNVE's state must equal what libvirt's final state
# implies: running or paused -> Activated, managed-saved -> Associated, anything else (shut
# off, undefined) -> nothing.  Seeded (TNVE_PROPERTY_SEED) and bounded (TNVE_PROPERTY_OPS
# per burst, TNVE_PROPERTY_DOMAINS domains); the seed is printed for replay.
. "$SPLITNVE_SRC/tests/tools/tnve-lib.sh"

SEED=${TNVE_PROPERTY_SEED:-$(($(date +%s) % 100000))}
NDOM=${TNVE_PROPERTY_DOMAINS:-12}
NOPS=${TNVE_PROPERTY_OPS:-60}
RANDOM=$SEED
log "seed=$SEED domains=$NDOM ops/burst=$NOPS"

start_libvirtd
start_nnve
start_agent
session_ready() { tnvectl --json show session | jq -e '.state == "up" and .sync == "ready"'; }
wait_for "agent session up" 10 session_ready
virsh_c "destroy test; undefine test" >/dev/null 2>&1

for n in $(seq 1 "$NDOM"); do
    if [ $((n % 2)) = 0 ]; then domain_xml "$n" rule; else domain_xml "$n" meta-red; fi >"$T/vm$n.xml"
done

burst() {
    local cmds="" i n op
    for i in $(seq 1 "$NOPS"); do
        n=$((RANDOM % NDOM + 1))
        case $((RANDOM % 10)) in
        0 | 1) op="define $T/vm$n.xml" ;;
        2 | 3) op="start vm$n" ;;
        4) op="suspend vm$n" ;;
        5) op="resume vm$n" ;;
        6) op="destroy vm$n" ;;
        7) op="managedsave vm$n" ;;
        8) op="undefine vm$n" ;;
        9) op="undefine --managed-save vm$n" ;;
        esac
        cmds="$cmds$op; "
    done
    virsh -q -c "$URI" "$cmds" >/dev/null 2>&1 || true
}

burst
log "burst 1 done"
kill -KILL "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null; AGENT_PID=
rm -f "$T/agent.ctl"
burst
log "burst 2 done while the agent was down"
start_agent
burst
log "burst 3 done"

# What libvirt's final state implies, as sorted "tsi state" lines.
expected() {
    local n st
    for n in $(seq 1 "$NDOM"); do
        st=$(virsh -q -c "$URI" domstate --reason "vm$n" 2>/dev/null) || continue
        case "$st" in
        running* | paused*) echo "$(uuid_of "$n")/$(mac_of "$n" 1) activated" ;;
        "shut off (saved"*) echo "$(uuid_of "$n")/$(mac_of "$n" 1) associated" ;;
        esac
    done | sort
}
actual() {
    nnvectl --json show tsis | jq -r '.[] | "\(.tsi) \(.state)"' | sort
}
converged() { [ "$(expected)" = "$(actual)" ]; }
deadline=$(($(date +%s) + 20))
until converged; do
    if [ "$(date +%s)" -ge $deadline ]; then
        echo "--- expected"; expected; echo "--- actual"; actual
        echo "--- agent"; tnvectl show domains; tnvectl show tsis; grep -E "vm5\b|-000000000005" "$T/agent.log" | tail -30
        fail "no convergence (seed=$SEED)"
    fi
    sleep 0.2
done
log "converged: $(expected | grep -c activated) activated, $(expected | grep -c associated) associated (seed=$SEED)"
# and it stays converged: nothing left to send
sleep 0.5
converged || fail "state moved after convergence (seed=$SEED)"
[ "$(tnvectl --json show tsis | jq '[.[] | select(.pending != "-")] | length')" = 0 ] || fail "requests still pending"
stop_pid "$AGENT_PID"; rc=$?; AGENT_PID=
[ $rc = 0 ] || fail "agent exit status $rc after SIGTERM"
log "PASS"
