#!/bin/bash
# test-tnve-listing.sh: listing the domains never stops tnve-agent's loop.  libvirtd is
# frozen (SIGSTOP) and a listing is asked for (tnvectl resync): the listing is provably in
# progress (counters say so, and it cannot end while libvirtd is frozen), yet the agent
# answers its control socket and a start hook, whose domain the nNVE then holds as
# Associated.  Thawed, the listing ends and keeps every domain; the agent exits cleanly.
. "$SPLITNVE_SRC/tests/tools/tnve-lib.sh"

start_libvirtd
start_nnve
start_agent
session_ready() { tnvectl --json show session | jq -e '.state == "up" and .sync == "ready"'; }
wait_for "agent session up" 20 session_ready
for n in 1 2 3; do domain_xml "$n" rule >"$T/vm$n.xml"; done
virsh_c "destroy test; undefine test; define $T/vm1.xml; start vm1; define $T/vm2.xml" >/dev/null || fail "define"
expect_state "$(uuid_of 1)/$(mac_of 1 1)" activated
wait_for "vm2 tracked" 10 sh -c "[ \"\$('$B/bin/tnvectl' -s '$T/agent.ctl' --json show domains | jq length)\" = 2 ]"
counter() { tnvectl --json counters/show | jq -r ".libvirt_$1"; }
listings=$(counter listings)
[ "$(counter listing)" = false ] || fail "a listing is in progress before the test"

kill -STOP "$LIBVIRTD_PID"
thawed=0
cleanup_more() { [ "$thawed" = 1 ] || kill -CONT "$LIBVIRTD_PID" 2>/dev/null; }
# the agent answers while the listing waits for libvirtd (on the loop it would not)
out=$(tnvectl --json resync) || fail "resync not answered: $out"
jq -e ".libvirt == \"listing\"" <<<"$out" >/dev/null || fail "resync: $out"
[ "$(counter listing)" = true ] || fail "no listing in progress after resync"
log "listing in progress, libvirtd frozen"
domain_xml 3 rule >"$T/vm3.xml"
"$B/bin/tnvectl" -s "$T/agent.ctl" -t 20 hook prepare vm3 <"$T/vm3.xml" 2>"$T/hook.err" ||
    fail "hook not answered during a listing: $(cat "$T/hook.err")"
state_is "$(uuid_of 3)/$(mac_of 3 1)" associated || fail "vm3 not associated at the nNVE"
# still in progress: libvirtd is still frozen, so the hook was answered during the listing
[ "$(counter listing)" = true ] || fail "the listing ended while libvirtd was frozen"
[ "$(counter listings)" = "$listings" ] || fail "a listing completed while libvirtd was frozen"
log "hook answered and vm3 associated while the listing was in progress"

kill -CONT "$LIBVIRTD_PID"
thawed=1
listed() { [ "$(counter listing)" = false ] && [ "$(counter listings)" -gt "$listings" ]; }
wait_for "the listing to end" 30 listed
expect_state "$(uuid_of 1)/$(mac_of 1 1)" activated
tnvectl --json show domains | jq -e '[.[] | select(.name == "vm1" or .name == "vm2")] | length == 2' >/dev/null ||
    fail "a domain was lost by the listing"
log "listing ended, vm1 still activated, vm2 still tracked"
stop_pid "$AGENT_PID"
rc=$?
AGENT_PID=
[ $rc = 0 ] || fail "agent exit status $rc after SIGTERM"
log "PASS"
