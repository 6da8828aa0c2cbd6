#!/bin/bash
# test-tnve-qemu.sh: the real-QEMU tier of tnve-agent.  A private libvirtd with the QEMU
# driver runs TCG guests (the tiny guest of tests/qemu/make-guest.sh, direct kernel boot),
# the project's libvirt hook (etc/libvirt/hooks/qemu.d/splitnve, installed for the run only)
# asks the agent before every start, and a real nnve-daemon (TLS, none backend) authorizes
# hv1 for VN 5001 only.  Checked through `nnvectl --json show tsis`:
#   (a) a domain in VN 5001 starts; its TSI was associated at the nNVE when the hook let
#       libvirt go on (before QEMU ran), and is activated once the domain runs;
#   (b) a second vNIC hot-plugged -> a second TSI activated; unplugged -> once the guest has
#       answered (DEVICE_REMOVED) that TSI is gone, the first one stays;
#   (c) a domain in VN 6666 (not authorized): `virsh start` fails with the nNVE's reason in
#       libvirt's error, the domain is not running, no TSI of it is left at the nNVE, and
#       the agent does not go on asking for the refused VN;
#   (c2) a domain's start while the agent reads that domain for its "defined" event
#       (libvirtd holds the domain during the hook): the hook is answered, the start succeeds;
#   (d) destroy -> the TSI is gone; nnve-daemon exits 0 on SIGTERM;
#   (e) with the nNVE gone, `virsh start` fails (within the agent's hook_timeout + 15 s)
#       with the agent's reason in libvirt's error; the agent then exits 0 on SIGTERM.
# Needs root, libvirt-daemon-system, qemu-system-x86, busybox-static (tests/qemu/).
# The guest is cached in $SPLITNVE_QEMU_GUEST (default: build/qemu-guest in the repo).
# SPLITNVE_TEST_VERBOSE=1 prints the logs' tails also when the test passes.
set -u
B=${SPLITNVE_BUILD:?SPLITNVE_BUILD not set}
S=${SPLITNVE_SRC:?SPLITNVE_SRC not set}
GUEST_CACHE=${SPLITNVE_QEMU_GUEST:-$S/build/qemu-guest}
T=$(mktemp -d /tmp/tnve-qemu.XXXXXX)
chmod 0755 "$T" # the QEMU processes (user libvirt-qemu) open the kernel and consoles here
. "$S/tests/qemu/qemu-lib.bash"

T_START=$(qemu_now_ms)
NNVE_PID='' AGENT_PID=''
log() { qlog "$*"; }
elapsed() { echo "$(($(qemu_now_ms) - $1)) ms"; }

dump() {
    local f
    for f in agent.log nnve.log hook-calls.log events.log console-a.log console-b.log; do
        [ -s "$T/$f" ] && { echo "--- $f (tail)"; tail -n 40 "$T/$f"; }
    done
    [ -s "$T/libvirtd.log" ] && { echo "--- libvirtd.log (hook and errors)"; grep -E 'error|[Hh]ook' "$T/libvirtd.log" | tail -n 20; }
    [ -S "$T/nnve.ctl" ] && { echo "--- nnvectl show tsis"; "$B/bin/nnvectl" -s "$T/nnve.ctl" show tsis; }
    [ -S "$T/agent.ctl" ] && { echo "--- tnvectl show tsis"; "$B/bin/tnvectl" -s "$T/agent.ctl" show tsis; }
}

cleanup() {
    local rc=$?
    trap - EXIT
    trap '' PIPE # a reader gone from our stdout must not cut the cleanup short
    [ $rc -ne 0 ] || [ -n "${SPLITNVE_TEST_VERBOSE:-}" ] && dump
    [ -n "$AGENT_PID" ] && qemu_stop_pid "$AGENT_PID"
    qemu_cleanup
    [ -n "$NNVE_PID" ] && qemu_stop_pid "$NNVE_PID"
    rm -rf "$T"
    log "test-tnve-qemu: $([ $rc -eq 0 ] && echo passed || echo "FAILED (rc=$rc)") in $(elapsed "$T_START")"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { log "FAIL: $*"; exit 1; }
ok() { log "ok - $*"; }

# --- host ---------------------------------------------------------------------------------
why=$(qemu_host_check) || fail "cannot run here: $why"
qemu_lock 120 || fail "another real-QEMU test run held $QEMU_LOCK for 120 s"
qemu_sweep_stale
holder=$(qemu_driver_holder) &&
    fail "libvirtd pid $holder holds the QEMU driver (/run/libvirt/qemu/driver.pid): stop it first"
foreign=$(qemu_foreign_hooks)
[ -z "$foreign" ] || fail "libvirt would also run these QEMU hooks for the test's domains: $(echo $foreign)"

t0=$(qemu_now_ms)
qemu_guest "$GUEST_CACHE" || fail "tests/qemu/make-guest.sh $GUEST_CACHE failed"
log "guest kernel + initramfs ready in $(elapsed "$t0")"

# --- nnve-daemon: hv1 may use VN 5001, not 6666 ------------------------------------------
"$S/scripts/gen-pki.sh" "$T/pki" nnve1 hv1 >"$T/pki.log" 2>&1 || fail "gen-pki.sh: $(cat "$T/pki.log")"
{
    qemu_nnve_global 0
    printf '\n[domain rack1]\nports = p1\ntags = 100-199\n\n[hypervisor hv1]\nport = p1\nvns = 5001\n'
} >"$T/nnve.conf"
"$B/bin/nnve-daemon" -c "$T/nnve.conf" >>"$T/nnve.log" 2>&1 9>&- &
NNVE_PID=$!
qemu_note_pid nnve-daemon "$NNVE_PID"
qemu_poll 20 grep -q 'daemon: started' "$T/nnve.log" || fail "nnve-daemon did not start"
NNVE_PORT=$(grep 'daemon: started' "$T/nnve.log" | head -n 1 | sed -n 's/.* port=\([0-9]*\).*/\1/p')
[ -n "$NNVE_PORT" ] && [ "$NNVE_PORT" != 0 ] || fail "no port in the daemon's start line"
qemu_poll 20 test -S "$T/nnve.ctl" || fail "no nnve control socket"

# --- hook, virtlogd, libvirtd (hooks are found when libvirtd starts) ----------------------
# after a successful prepare (QEMU not started yet): what the nNVE holds at that moment;
# before the prepare of $DOM_C: 2 s with libvirtd holding the domain (case (c2))
DOM_C=splitnve-qt-$$-c
qemu_install_hook "$B/bin/tnvectl" "$T/agent.ctl" 30 \
    "'$B/bin/nnvectl' -s '$T/nnve.ctl' --json show tsis >'$T/at-prepare-'\"\$1\"'.json' 2>&1" \
    "case \"\$1 \$2\" in '$DOM_C prepare') sleep 2 ;; esac" ||
    fail "cannot install the hook wrapper into $QEMU_HOOK_DIR"
t0=$(qemu_now_ms)
qemu_start_virtlogd || fail "virtlogd did not start"
qemu_start_libvirtd || fail "the private libvirtd did not start"
virsh -q -c "$QEMU_URI" domcapabilities --virttype qemu >/dev/null || fail "QEMU capabilities"
log "libvirtd (QEMU driver) up in $(elapsed "$t0")"
qemu_record_events

# --- tnve-agent -----------------------------------------------------------------------------
HOOK_TIMEOUT_S=5
{
    qemu_agent_conf "$QEMU_URI" "$NNVE_PORT" hv1 "$T" "$HOOK_TIMEOUT_S"
    printf 'retry_min = 200ms\nretry_max = 2s\nkeepalive = 2s\n'
} >"$T/agent.conf"
"$B/bin/tnve-agent" -c "$T/agent.conf" >>"$T/agent.log" 2>&1 9>&- &
AGENT_PID=$!
qemu_note_pid tnve-agent "$AGENT_PID"
session_up() {
    "$B/bin/tnvectl" -s "$T/agent.ctl" --json show session |
        jq -e '.state == "up" and .sync == "ready"'
}
qemu_poll 30 session_up || fail "the agent's nNVE session did not come up"
ok "agent connected to libvirtd (QEMU) and to the nNVE"

nnve_tsis() { "$B/bin/nnvectl" -s "$T/nnve.ctl" --json show tsis; }
nnve_state() {
    nnve_tsis | jq -r --arg t "$1" '[.[] | select(.tsi == $t)][0].state // "absent"'
}
state_is() { [ "$(nnve_state "$1")" = "$2" ]; }
expect_state() { # TSI STATE SECONDS
    qemu_poll "$3" state_is "$1" "$2" || fail "TSI $1 at the nNVE: want $2, have $(nnve_state "$1")"
}

virsh_c() { virsh -q -c "$QEMU_URI" "$@"; }
meta() { # MAC=VN...: the splitnve metadata element naming each vNIC's VN
    local m out="<splitnve:vnics xmlns:splitnve='urn:splitnve:vn:1'>"
    for m in "$@"; do out+="<splitnve:vnic mac='${m%%=*}' vn-id='${m#*=}'/>"; done
    echo "$out</splitnve:vnics>"
}

DOM_A=splitnve-qt-$$-a UUID_A=5e000000-0000-4000-8000-00000000000a
MAC_A1=52:54:00:5e:0a:01 MAC_A2=52:54:00:5e:0a:02
TAP_A1=sqt$$a1 TAP_A2=sqt$$a2
DOM_B=splitnve-qt-$$-b UUID_B=5e000000-0000-4000-8000-00000000000b
MAC_B1=52:54:00:5e:0b:01 TAP_B1=sqt$$b1
TSI_A1=$UUID_A/$MAC_A1 TSI_A2=$UUID_A/$MAC_A2 TSI_B1=$UUID_B/$MAC_B1

# --- (a) start in VN 5001 ----------------------------------------------------------------------
qemu_domain_xml "$DOM_A" "$UUID_A" "$T/kernel" "$T/initrd.img" "$T/console-a.log" \
    "$(meta "$MAC_A1=5001" "$MAC_A2=5001")" "$(qemu_nic_xml "$MAC_A1" "$TAP_A1")" >"$T/a.xml"
qemu_define "$T/a.xml" || fail "define $DOM_A"
t0=$(qemu_now_ms)
virsh_c start "$DOM_A" >"$T/start-a.out" 2>&1 || fail "start $DOM_A: $(cat "$T/start-a.out")"
log "virsh start $DOM_A returned after $(elapsed "$t0")"
grep -q "$DOM_A prepare begin" "$T/hook-calls.log" 2>/dev/null ||
    fail "libvirtd did not run the hook for $DOM_A prepare"
at_prepare=$(jq -r --arg t "$TSI_A1" '[.[] | select(.tsi == $t)][0].state // "absent"' \
    "$T/at-prepare-$DOM_A.json" 2>/dev/null)
case "$at_prepare" in
associated | activated) ;;
*) fail "when the hook let libvirt go on, TSI $TSI_A1 was '$at_prepare' at the nNVE" ;;
esac
log "TSI $TSI_A1 was $at_prepare at the nNVE before QEMU started"
expect_state "$TSI_A1" activated 30
ok "(a) $DOM_A started through the hook; TSI $TSI_A1 activated at the nNVE"
qemu_poll 90 grep -q GUEST-READY "$T/console-a.log" || fail "guest $DOM_A did not boot"
log "guest $DOM_A booted $(elapsed "$t0") after start ($(grep -o 'GUEST-READY.*' "$T/console-a.log"))"

# --- (b) hot-plug and unplug a second vNIC ----------------------------------------------------
qemu_nic_xml "$MAC_A2" "$TAP_A2" >"$T/nic-a2.xml"
t0=$(qemu_now_ms)
virsh_c attach-device "$DOM_A" "$T/nic-a2.xml" --live >"$T/attach.out" 2>&1 ||
    fail "attach-device: $(cat "$T/attach.out")"
expect_state "$TSI_A2" activated 30
ok "(b) hot-plugged vNIC: TSI $TSI_A2 activated at the nNVE after $(elapsed "$t0")"
qemu_poll 30 grep -q "GUEST-NIC-ADDED eth1 $MAC_A2" "$T/console-a.log" ||
    fail "the guest did not see the hot-plugged NIC"

t0=$(qemu_now_ms)
virsh_c detach-device "$DOM_A" "$T/nic-a2.xml" --live >"$T/detach.out" 2>&1 ||
    fail "detach-device: $(cat "$T/detach.out")"
qemu_poll 30 grep -q "device-removed.*'$DOM_A'" "$T/events.log" ||
    fail "no DEVICE_REMOVED for $DOM_A: the guest did not answer the unplug"
qemu_poll 10 grep -q 'GUEST-NIC-REMOVED eth1' "$T/console-a.log" || fail "the guest still has eth1"
log "unplug completed (guest answered, DEVICE_REMOVED) after $(elapsed "$t0")"
expect_state "$TSI_A2" absent 30
state_is "$TSI_A1" activated || fail "TSI $TSI_A1 lost with the unplug of the other vNIC"
ok "(b) unplugged vNIC: TSI $TSI_A2 gone at the nNVE after $(elapsed "$t0"); $TSI_A1 stays"

# --- (c) VN 6666 is not authorized: the start is refused ----------------------------------------
qemu_domain_xml "$DOM_B" "$UUID_B" "$T/kernel" "$T/initrd.img" "$T/console-b.log" \
    "$(meta "$MAC_B1=6666")" "$(qemu_nic_xml "$MAC_B1" "$TAP_B1")" >"$T/b.xml"
qemu_define "$T/b.xml" || fail "define $DOM_B"
t0=$(qemu_now_ms)
if virsh_c start "$DOM_B" >"$T/start-b.out" 2>&1; then
    fail "virsh start $DOM_B succeeded although VN 6666 is not authorized"
fi
log "virsh start $DOM_B failed after $(elapsed "$t0"): $(tr '\n' ' ' <"$T/start-b.out")"
grep -q "$DOM_B prepare begin" "$T/hook-calls.log" || fail "the hook did not run for $DOM_B"
grep -Eqi 'not[- ]authori[sz]ed' "$T/start-b.out" ||
    fail "libvirt's error does not carry the nNVE's reason (not authorized)"
[ "$(virsh_c domstate "$DOM_B" 2>/dev/null)" = "shut off" ] || fail "$DOM_B is not shut off"
! ip link show "$TAP_B1" >/dev/null 2>&1 || fail "tap $TAP_B1 of the refused domain is left"
expect_state "$TSI_B1" absent 10
# The start did not happen: the agent must not keep asking for the refused VN (its retries
# would also associate a shut-off domain the moment the VN got authorized).
refusals() { "$B/bin/nnvectl" -s "$T/nnve.ctl" --json show counters | jq -e '.not_authorized_total'; }
sleep 1
n1=$(refusals) || fail "no not_authorized_total counter at the nNVE"
sleep 3
n2=$(refusals)
state_is "$TSI_B1" absent || fail "TSI $TSI_B1 appeared at the nNVE after the refused start"
[ "$n2" = "$n1" ] || fail "the agent still asks for VN 6666 after the refused start" \
    "(nNVE refusals $n1 -> $n2 in 3 s; agent: $("$B/bin/tnvectl" -s "$T/agent.ctl" --json show tsis |
        jq -c --arg m "$MAC_B1" '[.[] | select(.mac == $m) | {desired, acked, failures, error}]'))"
state_is "$TSI_A1" activated || fail "TSI $TSI_A1 changed with the refused start of $DOM_B"
ok "(c) refused start: virsh shows the nNVE's reason; no TSI of $DOM_B at the nNVE"

# --- (c2) an event of a domain read while libvirtd runs that domain's start hook ----------------
# The agent is stopped while $DOM_C is defined, and continued once libvirtd runs the hook of
# its start (libvirtd holds the domain until the hook returns; the hook waits 2 s before it
# asks the agent): the agent reads the domain for the queued "defined" event while the
# domain is held.  That read must not keep the agent from answering the hook, or the start
# fails when the hook gives up.
UUID_C=5e000000-0000-4000-8000-00000000000c MAC_C1=52:54:00:5e:0c:01 TAP_C1=sqt$$c1
TSI_C1=$UUID_C/$MAC_C1
qemu_domain_xml "$DOM_C" "$UUID_C" "$T/kernel" "$T/initrd.img" "$T/console-c.log" \
    "$(meta "$MAC_C1=5001")" "$(qemu_nic_xml "$MAC_C1" "$TAP_C1")" >"$T/c.xml"
kill -STOP "$AGENT_PID" || fail "cannot stop the agent"
qemu_define "$T/c.xml" || { kill -CONT "$AGENT_PID"; fail "define $DOM_C"; }
t0=$(qemu_now_ms)
virsh_c start "$DOM_C" >"$T/start-c.out" 2>&1 &
start_c=$!
qemu_poll 60 grep -q "$DOM_C prepare begin" "$T/hook-calls.log"
held=$?
kill -CONT "$AGENT_PID"
[ "$held" -eq 0 ] || fail "libvirtd did not run the hook for $DOM_C prepare"
wait "$start_c" || fail "start $DOM_C while the agent read it: $(cat "$T/start-c.out")"
log "virsh start $DOM_C returned after $(elapsed "$t0")"
grep -q "event defined domain=$DOM_C" "$T/agent.log" || fail "the agent saw no defined event of $DOM_C"
expect_state "$TSI_C1" activated 30
state_is "$TSI_A1" activated || fail "TSI $TSI_A1 changed with the start of $DOM_C"
virsh_c destroy "$DOM_C" >/dev/null || fail "destroy $DOM_C"
expect_state "$TSI_C1" absent 30
virsh_c undefine "$DOM_C" >/dev/null || fail "undefine $DOM_C"
ok "(c2) $DOM_C started while the agent read it for its defined event"

# --- (d) destroy --------------------------------------------------------------------------------
t0=$(qemu_now_ms)
virsh_c destroy "$DOM_A" >/dev/null || fail "destroy $DOM_A"
expect_state "$TSI_A1" absent 30
ok "(d) destroy: TSI $TSI_A1 gone at the nNVE after $(elapsed "$t0")"
[ "$(nnve_tsis | jq 'length')" = 0 ] || fail "TSIs left at the nNVE: $(nnve_tsis)"
virsh_c undefine "$DOM_B" >/dev/null || fail "undefine $DOM_B"

rc=0
qemu_stop_pid "$NNVE_PID" || rc=$?
NNVE_PID=''
[ "$rc" -eq 0 ] || fail "nnve-daemon exited with status $rc on SIGTERM"

# --- (e) the nNVE is unreachable: the start is refused once hook_timeout has passed ----------
qemu_poll 20 sh -c "! '$B/bin/tnvectl' -s '$T/agent.ctl' --json show session | jq -e '.state == \"up\"'" ||
    fail "the agent did not notice that the nNVE went away"
t0=$(qemu_now_ms)
if virsh_c start "$DOM_A" >"$T/start-a2.out" 2>&1; then
    fail "virsh start $DOM_A succeeded without an nNVE"
fi
took=$(($(qemu_now_ms) - t0))
log "virsh start $DOM_A failed after $took ms: $(tr '\n' ' ' <"$T/start-a2.out")"
grep -q "splitnve: domain $DOM_A not started: ." "$T/start-a2.out" ||
    fail "libvirt's error does not carry the agent's reason"
[ "$took" -le $((HOOK_TIMEOUT_S * 1000 + 15000)) ] ||
    fail "the refusal took $took ms, hook_timeout is ${HOOK_TIMEOUT_S}s"
[ "$(virsh_c domstate "$DOM_A" 2>/dev/null)" = "shut off" ] || fail "$DOM_A is not shut off"
ok "(e) nNVE unreachable: start refused after $took ms (hook_timeout ${HOOK_TIMEOUT_S}s)"
virsh_c undefine "$DOM_A" >/dev/null || fail "undefine $DOM_A"

qemu_stop_pid "$AGENT_PID" || rc=$?
AGENT_PID=''
[ "$rc" -eq 0 ] || fail "tnve-agent exited with status $rc on SIGTERM"
ok "agent and nnve-daemon exited cleanly"
