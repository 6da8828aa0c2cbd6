#!/bin/bash
# test-tnve-lifecycle.sh: tnve-agent against a private libvirtd (test driver) and a real
# nnve-daemon over TLS.  Domains are driven by virsh from another process; after every
# step the nNVE's state is checked through `nnvectl --json show tsis`.  Two VNs, one from a
# config rule (network default -> 5000/blue) and one from the domain metadata (5001/red);
# a vNIC without VN is left alone; the hook command refuses an unauthorized VN; the agent
# and nnve-daemon exit cleanly on SIGTERM.
. "$SPLITNVE_SRC/tests/tools/tnve-lib.sh"

ADDRESS_POLL=500ms
start_libvirtd
start_nnve
start_agent
wait_for "agent session up" 10 sh -c "'$B/bin/tnvectl' -s '$T/agent.ctl' --json show session | jq -e '.state == \"up\" and .sync == \"ready\"'"
log "agent up and in sync"
# someone able to write the state directory plants symlinks where the agent writes its
# tags and ports files: the next write replaces them, the files they point to stay intact
echo precious >"$T/victim-tags"
echo precious >"$T/victim-ports"
ln -sf "$T/victim-tags" "$T/astate/tnve-agent.tags"
ln -sf "$T/victim-ports" "$T/astate/tnve-agent.ports"
ln -sf "$T/victim-tags" "$T/astate/tnve-agent.tags.tmp" # a predictable temporary name
ln -sf "$T/victim-ports" "$T/astate/tnve-agent.ports.tmp"
# the test driver's own domain "test" sits in network default (VN 5000): take it away
TSI0=6695eb01-f6a4-8304-79aa-97f2502e193f/aa:bb:cc:dd:ee:ff
expect_state "$TSI0" activated
virsh_c "destroy test; undefine test" >/dev/null || fail "undefine test"
expect_state "$TSI0" absent

domain_xml 1 rule >"$T/vm1.xml"
domain_xml 2 meta-red >"$T/vm2.xml"
domain_xml 3 none >"$T/vm3.xml"
TSI1="$(uuid_of 1)/$(mac_of 1 1)"
TSI2="$(uuid_of 2)/$(mac_of 2 1)"
TSI3="$(uuid_of 3)/$(mac_of 3 1)"

virsh_c "define $T/vm1.xml; define $T/vm2.xml; define $T/vm3.xml" >/dev/null || fail "define"
wait_for "agent knows 3 new domains" 10 sh -c "'$B/bin/tnvectl' -s '$T/agent.ctl' --json show domains | jq -e '[.[] | select(.name | startswith(\"vm\"))] | length == 3'"
for t in "$TSI1" "$TSI2" "$TSI3"; do
    [ "$(nnve_state "$t")" = absent ] || fail "defined domain associated: $t"
done
log "define: nothing at the nNVE (associate_on_define=no)"

virsh_c "start vm1; start vm2; start vm3" >/dev/null || fail "start"
expect_state "$TSI1" activated
TAG1=$(tag_of "$TSI1")
expect_state "$TSI2" activated
TAG2=$(tag_of "$TSI2")
wait_for "tags file rewritten" 10 sh -c "[ ! -L '$T/astate/tnve-agent.tags' ] && grep -q '^5001 red ' '$T/astate/tnve-agent.tags'"
# the ports file is written by a thread of the agent: it lists the vNIC ports of vm1 and vm2
wait_for "ports file rewritten" 10 sh -c "[ ! -L '$T/astate/tnve-agent.ports' ] && [ \$(grep -c ' $TAG1\$' '$T/astate/tnve-agent.ports') = 1 ] && [ \$(grep -c ' $TAG2\$' '$T/astate/tnve-agent.ports') = 1 ]"
[ "$(cat "$T/victim-tags")" = precious ] || fail "tags file written through a planted symlink"
[ "$(cat "$T/victim-ports")" = precious ] || fail "ports file written through a planted symlink"
log "planted symlinks at the tags and ports files replaced, not followed"
[ "$TAG1" != "$TAG2" ] || fail "two VNs got the same tag $TAG1"
nnvectl --json show tsis | jq -e --arg t "$TSI1" '.[] | select(.tsi == $t) | .vn_id == 5000 and .vn_name == "blue"' >/dev/null || fail "vm1 not in VN 5000/blue"
nnvectl --json show tsis | jq -e --arg t "$TSI2" '.[] | select(.tsi == $t) | .vn_id == 5001' >/dev/null || fail "vm2 not in VN 5001"
sleep 0.3
[ "$(nnve_state "$TSI3")" = absent ] || fail "vNIC without VN reached the nNVE"
grep -q "vnic has no VN, left alone domain=vm3" "$T/agent.log" || fail "no log line for the unmapped vNIC"
[ "$(grep -c 'vnic has no VN, left alone domain=vm3' "$T/agent.log")" = 1 ] || fail "unmapped vNIC logged more than once"
tnvectl --json show tsis | jq -e --arg t "$TSI1" --argjson tag "$TAG1" '.[] | select(.tsi == $t) | .acked == "activated" and .desired == "activated" and .tag == $tag and .domain == "vm1"' >/dev/null || fail "tnvectl show tsis disagrees"
log "start: vm1 activated tag=$TAG1 (rule), vm2 activated tag=$TAG2 (metadata), vm3 left alone"
# addresses from virDomainInterfaceAddresses reach the nNVE as TSI_UPDATE (the test driver
# reports one IPv4 address per interface)
wait_for "vm1 addresses at the nNVE" 10 sh -c "'$B/bin/nnvectl' -s '$T/nnve.ctl' --json show tsis | jq -e --arg t '$TSI1' '.[] | select(.tsi == \$t) | (.addresses | length) >= 1 and (.addresses[0] | endswith(\"@$(mac_of 1 1)\"))'"
log "addresses: $(nnvectl --json show tsis | jq -r --arg t "$TSI1" '.[] | select(.tsi == $t) | .addresses | join(",")')"

virsh_c "suspend vm1" >/dev/null || fail "suspend"
sleep 0.3
expect_state "$TSI1" activated
log "suspend: still activated"
virsh_c "resume vm1" >/dev/null || fail "resume"
expect_state "$TSI1" activated
[ "$(tag_of "$TSI1")" = "$TAG1" ] || fail "tag changed over suspend/resume"

virsh_c "managedsave vm2" >/dev/null || fail "managedsave vm2"
expect_state "$TSI2" associated
log "managedsave: vm2 deactivated, still associated"
virsh_c "start vm2" >/dev/null || fail "restore vm2"
expect_state "$TSI2" activated
log "restore: vm2 activated again"

virsh_c "destroy vm1" >/dev/null || fail "destroy"
expect_state "$TSI1" absent
wait_for "VN 5000 disconnected after its last TSI" 10 sh -c "'$B/bin/tnvectl' -s '$T/agent.ctl' --json show vns | jq -e '.[] | select(.vn_id == 5000) | .connected == false'"
grep -q "disconnected hypervisor=hv1 vn=5000\\|vn: disconnected.*vn=5000" "$T/nnve.log" || grep -q "VN_DISCONNECT vn=5000" "$T/agent.log" || fail "no VN_DISCONNECT for 5000"
log "destroy: vm1 de-associated"

virsh_c "start vm1" >/dev/null || fail "restart vm1"
expect_state "$TSI1" activated
virsh_c "destroy vm1; undefine vm1; destroy vm2; undefine vm2; destroy vm3; undefine vm3" >/dev/null || fail "undefine"
expect_state "$TSI1" absent
expect_state "$TSI2" absent
wait_for "agent forgot the domains" 10 sh -c "'$B/bin/tnvectl' -s '$T/agent.ctl' --json show domains | jq -e '[.[] | select(.name | startswith(\"vm\"))] | length == 0'"
log "undefine: nothing left"

# A stop received as it happens goes out at once, with no libvirt call on its path (the
# domain's state and XML are read after it, and settle it): a transient domain is gone
# after its stop; a stop and a start at once end activated.
early_stops() { tnvectl --json show counters | jq -r '.libvirt_early_stops // 0'; }
domain_xml 7 rule >"$T/vm7.xml"
TSI7="$(uuid_of 7)/$(mac_of 7 1)"
virsh_c "create $T/vm7.xml" >/dev/null || fail "create vm7 (transient)"
expect_state "$TSI7" activated
e0=$(early_stops)
tnvectl latency/show reset >/dev/null
virsh_c "destroy vm7" >/dev/null || fail "destroy vm7"
expect_state "$TSI7" absent
wait_for "agent forgot the transient vm7" 10 sh -c "'$B/bin/tnvectl' -s '$T/agent.ctl' --json show domains | jq -e '[.[] | select(.name == \"vm7\")] | length == 0'"
[ "$(early_stops)" = $((e0 + 1)) ] || fail "the stop of vm7 was not applied early (early_stops $e0 -> $(early_stops))"
tnvectl --json latency/show | jq -e '.by_state.init.samples == 1 and .libvirt.samples == 0' >/dev/null ||
    fail "a stop waited for libvirt: $(tnvectl --json latency/show | jq -c '{by_state, libvirt}')"
log "stop: de-associated before libvirt was asked; the transient domain is forgotten"
domain_xml 8 rule >"$T/vm8.xml"
TSI8="$(uuid_of 8)/$(mac_of 8 1)"
virsh_c "define $T/vm8.xml; start vm8" >/dev/null || fail "vm8"
expect_state "$TSI8" activated
virsh_c "destroy vm8; start vm8" >/dev/null || fail "destroy and start vm8"
wait_for "vm8 settled activated" 10 sh -c "'$B/bin/tnvectl' -s '$T/agent.ctl' --json show tsis | jq -e --arg t '$TSI8' '.[] | select(.tsi == \$t) | .acked == \"activated\" and .desired == \"activated\" and .pending == \"-\"'"
expect_state "$TSI8" activated
virsh_c "destroy vm8; undefine vm8" >/dev/null || fail "undefine vm8"
expect_state "$TSI8" absent
log "stop then start at once: activated"

# metadata set on a running domain with virsh metadata moves the vNIC to another VN
domain_xml 4 rule >"$T/vm4.xml"
TSI4="$(uuid_of 4)/$(mac_of 4 1)"
virsh_c "define $T/vm4.xml; start vm4" >/dev/null || fail "vm4"
expect_state "$TSI4" activated
if virsh_c "metadata vm4 --uri urn:splitnve:vn:1 --key splitnve --live --config --set \"<vnics><vnic mac='$(mac_of 4 1)' vn-id='5001' vn-name='red'/></vnics>\"" >/dev/null 2>&1; then
    wait_for "vm4 moved to VN 5001" 10 sh -c "'$B/bin/nnvectl' -s '$T/nnve.ctl' --json show tsis | jq -e --arg t '$TSI4' '.[] | select(.tsi == \$t) | .vn_id == 5001 and .state == \"activated\"'"
    log "virsh metadata: vm4 moved from VN 5000 to 5001"
else
    log "virsh metadata not supported by this driver: skipped"
fi

# hook: a domain in a VN the nNVE does not authorize is refused with the reason
domain_xml 5 rule | sed "s|<source network='default'/>|<source network='default'/>|" >"$T/vm5.xml"
sed -i "s|<os>|<metadata><splitnve:vnics xmlns:splitnve='urn:splitnve:vn:1'><splitnve:vnic mac='$(mac_of 5 1)' vn-id='7777'/></splitnve:vnics></metadata><os>|" "$T/vm5.xml"
if "$B/bin/tnvectl" -s "$T/agent.ctl" -t 5 hook prepare vm5 <"$T/vm5.xml" 2>"$T/hook.err"; then
    fail "hook accepted an unauthorized VN"
fi
grep -q "not-authorized" "$T/hook.err" || fail "hook reason missing: $(cat "$T/hook.err")"
log "hook: refused ($(cat "$T/hook.err"))"
wait_for "the refused domain is forgotten" 5 sh -c "'$B/bin/tnvectl' -s '$T/agent.ctl' --json show domains | jq -e '[.[] | select(.name == \"vm5\")] | length == 0'"
domain_xml 6 meta-red >"$T/vm6.xml"
"$B/bin/tnvectl" -s "$T/agent.ctl" -t 5 hook prepare vm6 <"$T/vm6.xml" 2>"$T/hook.err" || fail "hook refused an authorized domain: $(cat "$T/hook.err")"
expect_state "$(uuid_of 6)/$(mac_of 6 1)" associated
log "hook: vm6 associated before start"
# hook: a domain XML far over 64 KiB (a long description full of characters JSON escapes,
# as many vNICs or big metadata make it) is passed whole
domain_xml 16 meta-red >"$T/vm16.xml"
{
    echo "<description>"
    yes '"""""""""""""""""""""""""""""""""""""""""""""""""\' | head -n 3000
    echo "</description>"
} >"$T/desc.txt"
awk -v f="$T/desc.txt" '/<os>/ { while ((getline l < f) > 0) print l } { print }' \
    "$T/vm16.xml" >"$T/vm16big.xml"
[ "$(stat -c %s "$T/vm16big.xml")" -gt 150000 ] || fail "vm16 XML not large"
"$B/bin/tnvectl" -s "$T/agent.ctl" -t 5 hook prepare vm16 <"$T/vm16big.xml" 2>"$T/hook.err" ||
    fail "hook refused a large domain XML: $(cat "$T/hook.err")"
expect_state "$(uuid_of 16)/$(mac_of 16 1)" associated
log "hook: vm16 with $(stat -c %s "$T/vm16big.xml") bytes of domain XML associated"
# the hook script itself, with a non-hook operation
SPLITNVE_TNVECTL="$B/bin/tnvectl" SPLITNVE_SOCKET="$T/agent.ctl" "$S/etc/libvirt/hooks/qemu.d/splitnve" vm6 started begin - </dev/null || fail "hook script, started"
SPLITNVE_TNVECTL="$B/bin/tnvectl" SPLITNVE_SOCKET="$T/agent.ctl" "$S/etc/libvirt/hooks/qemu.d/splitnve" vm6 prepare begin - <"$T/vm6.xml" || fail "hook script, prepare"

# SIGHUP re-reads the mapping rules: network default now maps to 5001/red
domain_xml 7 rule >"$T/vm7.xml"
TSI7="$(uuid_of 7)/$(mac_of 7 1)"
virsh_c "define $T/vm7.xml; start vm7" >/dev/null || fail "vm7"
expect_state "$TSI7" activated
sed -i 's/^vn_id = 5000$/vn_id = 5001/; s/^vn_name = blue$/vn_name = red/' "$T/agent.conf"
kill -HUP "$AGENT_PID"
wait_for "vm7 moved to VN 5001 after SIGHUP" 10 sh -c "'$B/bin/nnvectl' -s '$T/nnve.ctl' --json show tsis | jq -e --arg t '$TSI7' '.[] | select(.tsi == \$t) | .vn_id == 5001 and .state == \"activated\"'"
log "SIGHUP: mapping rules reloaded, vm7 moved to VN 5001"

tnvectl show counters >/dev/null || fail "show counters"
# latency/show: every nNVE round trip recorded has its loop-busy part, never more than it
tnvectl --json latency/show | jq -e '.nnve_rtt.samples > 0 and .nnve_rtt.loop_busy.samples == .nnve_rtt.samples and .nnve_rtt.loop_busy.max_us <= .nnve_rtt.max_us' >/dev/null || fail "latency/show: nnve_rtt.loop_busy missing or inconsistent"
# the agent's own share: a sample per change whose request left, less than the whole
tnvectl --json latency/show | jq -e '.to_send.samples > 0 and .to_send.p50_us <= .p50_us' >/dev/null || fail "latency/show: to_send missing or inconsistent"
# and by the state reached: starts and stops happened, and the split adds up to the whole
tnvectl --json latency/show | jq -e '.by_state.activated.samples > 0 and .by_state.init.samples > 0 and ([.by_state[].samples] | add) == .samples' >/dev/null || fail "latency/show: by_state missing or inconsistent"
stop_pid "$AGENT_PID"; rc=$?; AGENT_PID=
[ $rc = 0 ] || fail "agent exit status $rc after SIGTERM"
stop_pid "$NNVE_PID"; rc=$?; NNVE_PID=
[ $rc = 0 ] || fail "nnve-daemon exit status $rc after SIGTERM"
log "PASS"
