#!/bin/bash
# test-tnve-faults.sh: tnve-agent converges back after faults: kill -9 and restart of the
# agent (nothing changes at the nNVE within the hold time: its none-backend journal stays
# as it was, same tags), nNVE-initiated TSI de-association and VN disconnect, libvirtd
# killed and restarted (the agent reconnects and follows libvirt's new state), and
# nnve-daemon killed and restarted (the agent reconnects and re-synchronises).
. "$SPLITNVE_SRC/tests/tools/tnve-lib.sh"

start_libvirtd
start_nnve
start_agent
session_ready() { tnvectl --json show session | jq -e '.state == "up" and .sync == "ready"'; }
wait_for "agent session up" 10 session_ready
TSI0=6695eb01-f6a4-8304-79aa-97f2502e193f/aa:bb:cc:dd:ee:ff
expect_state "$TSI0" activated
virsh_c "destroy test; undefine test" >/dev/null || fail "undefine test"
expect_state "$TSI0" absent

domain_xml 1 rule >"$T/vm1.xml"
domain_xml 2 meta-red >"$T/vm2.xml"
TSI1="$(uuid_of 1)/$(mac_of 1 1)"
TSI2="$(uuid_of 2)/$(mac_of 2 1)"
virsh_c "define $T/vm1.xml; define $T/vm2.xml; start vm1; start vm2" >/dev/null || fail "start"
expect_state "$TSI1" activated
expect_state "$TSI2" activated
TAG1=$(tag_of "$TSI1")
TAG2=$(tag_of "$TSI2")
log "steady: vm1 tag=$TAG1 vm2 tag=$TAG2"

# ---- agent kill -9 and restart: nothing changes at the switch
before=$(journal_changes)
kill -KILL "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null; AGENT_PID=
rm -f "$T/agent.ctl"
start_agent
wait_for "agent back in sync" 10 session_ready
sleep 0.5
after=$(journal_changes)
[ "$before" = "$after" ] || { cat "$T/journal"; grep -E "rec: (request|response)" "$T/agent.log" | tail -20; fail "dataplane changed across an agent restart ($before -> $after journal lines)"; }
[ "$(nnve_state "$TSI1")" = activated ] && [ "$(tag_of "$TSI1")" = "$TAG1" ] || fail "vm1 changed"
[ "$(nnve_state "$TSI2")" = activated ] && [ "$(tag_of "$TSI2")" = "$TAG2" ] || fail "vm2 changed"
grep -q "swept_tsis=0 swept_vns=0" "$T/nnve.log" || fail "SYNC swept something"
log "agent kill -9 + restart: no change at the nNVE (journal $before lines), tags kept"

# ---- nNVE-initiated de-associate and VN disconnect converge back
nnvectl tsi deassociate "$TSI1" >/dev/null || fail "nnvectl tsi deassociate"
grep -q . /dev/null
expect_state "$TSI1" activated 10
grep -q "nNVE TSI_DEASSOCIATE tsi=$TSI1" "$T/agent.log" || fail "agent did not see the de-association"
log "nNVE de-associated vm1: converged back"
nnvectl vn disconnect hv1 5001 >/dev/null || fail "nnvectl vn disconnect"
wait_for "agent saw the VN disconnect" 5 grep -q "nNVE disconnected vn=5001" "$T/agent.log"
expect_state "$TSI2" activated 10
[ "$(tag_of "$TSI2")" = "$TAG2" ] || fail "vm2 tag changed after VN reconnect"
log "nNVE disconnected VN 5001: converged back"

# ---- libvirtd killed and restarted (the test driver comes back with only its default domain)
kill -TERM "$LIBVIRTD_PID"
for i in $(seq 1 100); do kill -0 "$LIBVIRTD_PID" 2>/dev/null || break; sleep 0.05; done
wait_for "agent saw libvirtd go" 10 grep -q "libvirt connection lost" "$T/agent.log"
rm -f "$T/run/libvirt-sock"
start_libvirtd
expect_state "$TSI0" activated 15
expect_state "$TSI1" absent
expect_state "$TSI2" absent
log "libvirtd restart: agent reconnected, followed libvirt (vm1/vm2 gone, test back)"
virsh_c "define $T/vm1.xml; start vm1" >/dev/null || fail "vm1 after libvirtd restart"
expect_state "$TSI1" activated
log "events flow again after the libvirt reconnect"

# ---- nnve-daemon killed and restarted
TAG1=$(tag_of "$TSI1")
stop_pid "$NNVE_PID"; NNVE_PID=
rm -f "$T/nnve.ctl"
# The port stays held (listen-socket) while no nnve-daemon runs: connections wait in the backlog.
(exec 3<>"/dev/tcp/127.0.0.1/$NNVE_PORT") 2>/dev/null || fail "port $NNVE_PORT not kept while nnve-daemon is down"
wait_for "agent saw the session go" 10 sh -c "'$B/bin/tnvectl' -s '$T/agent.ctl' --json show session | jq -e '.state != \"up\"'"
start_nnve
wait_for "agent back in sync with the new nnve-daemon" 15 session_ready
expect_state "$TSI1" activated
expect_state "$TSI0" activated
[ "$(tag_of "$TSI1")" = "$TAG1" ] || fail "tag of vm1 changed over an nnve-daemon restart"
log "nnve-daemon restart: re-synchronised, tags kept"

stop_pid "$AGENT_PID"; rc=$?; AGENT_PID=
[ $rc = 0 ] || fail "agent exit status $rc after SIGTERM"
log "PASS"
