#!/bin/bash
# test-tnve-migrate.sh: live migration for real (RFC 8394 §3.3, Req-13).  Two libvirtd
# instances with the QEMU driver (hosts A and B, tests/qemu/mig-lib.bash), a tnve-agent on
# each, one nnve-daemon (none backend) authorizing hva for VNs 5001 and 5002 and hvb for 5001
# only.  One TCG guest, vm1, with one vNIC, is migrated with `virsh migrate --live`:
#   (1) A -> B and (2) B -> A succeed, make-before-break: the destination's migrate hook
#       returned with the destination's instance Associated and migrating at the nNVE, before
#       libvirt started the destination QEMU; at every sample of `nnvectl show tsis` taken
#       during the migration at least one instance is Activated and never more than two
#       exist; at the end one instance, the destination's, Activated, with the same tag; a
#       second guest (vm2, paused) stays on A meanwhile: A keeps its VN connection when vm1
#       leaves it, B loses its own when vm1 (its last TSI in the VN) leaves B;
#   (3) `virsh domjobabort` during a slowed migration (--bandwidth 1);
#   (4) the destination's hook refuses (VN 5002 not authorized for hvb): virsh's error has the
#       nNVE's reason;
#   (5) the destination QEMU is killed during the transfer; (5b) at the switch-over, with the
#       source paused (and its agent restarted meanwhile: it must keep the guest Activated);
#   (6) the destination agent is killed during the transfer (the migration then completes and
#       the agent comes back); (6b) the same with the source agent; (6c) the destination agent
#       is killed and the migration aborted; (6d) the destination agent restarts while the
#       migration runs: its instance stays Associated until the switch-over;
#   (7) nnve-daemon is restarted during the transfer; (7b) the switch-over happens while
#       nnve-daemon is down, and the source's agent resynchronises first;
#   (8) a post-copy migration;
# after each: vm1 runs on exactly one host, its TSI is Activated there only, no instance, VN
# connection or tag is left anywhere, and each agent agrees (mig_converged), and at every
# sample at least one instance was Activated (while the nNVE answered).
# Needs root, libvirt-daemon-system, qemu-system-x86, busybox-static, jq, perl, unshare.
# SPLITNVE_TEST_VERBOSE=1 prints the logs' tails also when the test passes; SPLITNVE_MIG_KEEP=DIR
# keeps the logs (agents, nnve-daemon, hook calls, libvirt events, journal) in DIR.
set -u
B=${SPLITNVE_BUILD:?SPLITNVE_BUILD not set}
S=${SPLITNVE_SRC:?SPLITNVE_SRC not set}
T=$(mktemp -d /tmp/tnve-mig.XXXXXX)
chmod 0755 "$T"
. "$S/tests/qemu/mig-lib.bash"

T_START=$(qemu_now_ms)
log() { qlog "$*"; }
elapsed() { echo "$(($(qemu_now_ms) - $1)) ms"; }

dump() {
    local f
    for f in agent-A.log agent-B.log nnve.log hooks-A.log hooks-B.log events-A.log events-B.log journal; do
        [ -s "$T/$f" ] && { echo "--- $f (tail)"; tail -n 30 "$T/$f"; }
    done
    for f in A B; do
        [ -f "$T/h$f/log/libvirtd.log" ] &&
            { echo "--- libvirtd $f errors"; grep -E ' error ' "$T/h$f/log/libvirtd.log" | tail -n 10; }
    done
    [ -S "$T/nnve.ctl" ] && { echo "--- nnvectl show tsis"; nnvectl show tsis; nnvectl show vns; }
}

cleanup() {
    local rc=$?
    trap - EXIT
    trap '' PIPE
    mig_sampler_stop
    [ $rc -ne 0 ] && [ $rc -ne 77 ] || [ -n "${SPLITNVE_TEST_VERBOSE:-}" ] && dump
    mig_cleanup
    if [ -n "${SPLITNVE_MIG_KEEP:-}" ]; then
        mkdir -p "$SPLITNVE_MIG_KEEP" && cp "$T"/*.log "$T/journal" "$SPLITNVE_MIG_KEEP/" 2>/dev/null
    fi
    rm -rf "$T"
    log "test-tnve-migrate: $([ $rc -eq 0 ] && echo passed || echo "ended (rc=$rc)") in $(elapsed "$T_START")"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { log "FAIL: $*"; exit 1; }
ok() { log "ok - $*"; }

why=$(mig_host_check) || { log "SKIP: cannot run here: $why"; exit 77; }
mig_lock 300 || fail "another migration test run held $MIG_LOCK for 300 s"
mig_sweep_stale
t0=$(qemu_now_ms)
mig_guest || fail "tests/qemu/make-guest.sh $MIG_GUEST_CACHE failed"
mig_up || fail "the two-host bed did not come up"
log "two hosts, two agents, one nnve-daemon up in $(elapsed "$t0")"

DOM=vm1 UUID=5e100000-0000-4000-8000-000000000001 MAC=52:54:00:10:00:01
TSI=$UUID/$MAC
VM="$DOM/$UUID/$MAC/5001"
mig_define_start A "$DOM" "$UUID" "$MAC" 5001 || fail "define + start $DOM on A"
mig_wait_booted "$DOM" || fail "the guest did not boot"
why=$(mig_wait_converged 30 "$VM") || fail "after start on A: $why"
TAG=$(nnvectl --json show tsis | jq -r --arg t "$TSI" '.[] | select(.tsi == $t) | .tag')
log "$DOM runs on A, TSI activated at hva with tag $TAG, after $(elapsed "$t0")"

# check_samples FILE WHAT: mig_samples_ok, or fail.
check_samples() {
    local out
    out=$(mig_samples_ok "$1" "$TSI") || fail "$2: samples with no Activated instance or more than two: $out"
    log "$2: $out"
}

OTHERS=() # specs of other guests of the bed (mig_converged)
converged() { # WHAT WHERE
    local why
    why=$(mig_wait_converged 60 "$VM" "${OTHERS[@]}") || fail "$1: $why"
    [ "$(mig_where "$DOM")" = "$2" ] || fail "$1: $DOM runs on '$(mig_where "$DOM")', want $2"
}

# --- (1), (2) successful live migrations ---------------------------------------------------
live() { # SRC DST
    local src=$1 dst=$2 hook at n
    rm -f "$T/at-migrate-$dst.json"
    : >"$T/hooks-$dst.log"
    mig_sampler_start "$T/samples"
    t0=$(qemu_now_ms)
    mig_migrate "$src" "$dst" "$DOM" >"$T/migrate.out" 2>&1 || fail "migrate $src -> $dst: $(cat "$T/migrate.out")"
    log "virsh migrate $src -> $dst took $(elapsed "$t0")"
    converged "$src -> $dst" "$dst"
    mig_sampler_stop
    check_samples "$T/samples" "$src -> $dst"
    # the migrate hook (successful) came before libvirt started QEMU (hook "start")
    hook=$(awk '{ $1 = ""; print }' "$T/hooks-$dst.log" | tr '\n' ';')
    case "$hook" in
    *" $DOM migrate begin - rc=0;"*" $DOM start begin -;"*) ;;
    *) fail "hooks at $dst: want migrate (rc=0) before start, have: $hook" ;;
    esac
    at=$(jq -c --arg t "$TSI" '[.[] | select(.tsi == $t) | [.hypervisor, .state, .migrating]] | sort' \
        "$T/at-migrate-$dst.json" 2>/dev/null)
    [ "$at" = "[[\"hva\",\"$([ "$src" = A ] && echo activated || echo associated)\",true],[\"hvb\",\"$([ "$src" = B ] && echo activated || echo associated)\",true]]" ] ||
        fail "when the migrate hook at $dst returned, the nNVE had $at"
    n=$(nnvectl --json show tsis | jq -r --arg t "$TSI" '.[] | select(.tsi == $t) | .tag')
    [ "$n" = "$TAG" ] || fail "$src -> $dst: the tag went from $TAG to $n"
    ok "($3) live migration $src -> $dst: destination associated (migrating) before its QEMU ran, >= 1 Activated throughout, one instance left, tag $TAG"
}
# vn_hypervisors: the hypervisors connected to VN 5001 at the nNVE, sorted, comma-separated.
vn_hypervisors() {
    nnvectl --json show vns | jq -r '[.[] | select(.vn_id == 5001 and .state == "connected") | .hypervisors[]] | sort | join(",")'
}
# A second guest in VN 5001 stays on A (started paused: no CPU): when vm1 leaves A, A's VN
# connection must stay (not its last TSI); when vm1 leaves B, B's must go (its last).
UUID2=5e100000-0000-4000-8000-000000000002 MAC2=52:54:00:10:00:02
mig_domain_xml vm2 "$UUID2" "$MAC2" 5001 >"$T/vm2.xml"
MIG_DOMAINS+=(vm2)
mig_virsh A define "$T/vm2.xml" >/dev/null && mig_virsh A start --paused vm2 >/dev/null ||
    fail "define + start --paused vm2 on A"
OTHERS=("vm2/$UUID2/$MAC2/5001")
converged "vm2 started on A" A
live A B 1
[ "$(vn_hypervisors)" = "hva,hvb" ] || fail "after A -> B with vm2 on A, VN 5001 is connected at: $(vn_hypervisors)"
live B A 2
[ "$(vn_hypervisors)" = "hva" ] || fail "after B -> A, VN 5001 is connected at: $(vn_hypervisors)"
mig_virsh A destroy vm2 >/dev/null || fail "destroy vm2"
OTHERS=()
converged "vm2 destroyed" A
ok "the source's VN connection stays while it has another TSI in the VN, and goes with its last"

# slowed SRC DST [ARGS...]: a migration at 1 MiB/s under way (mig_start_slowed), sampled.
slowed() {
    local src=$1 dst=$2
    shift 2
    [ "$(mig_where "$DOM")" = "$src" ] || fail "$DOM runs on '$(mig_where "$DOM")', not on $src"
    mig_sampler_start "$T/samples"
    mig_start_slowed "$src" "$dst" "$DOM" "$@" || fail "the migration $src -> $dst never got under way"
}
migrate_rc() { mig_wait_migrate; }
unthrottle() { mig_unthrottle "$1" "$DOM"; }

# --- (3) domjobabort --------------------------------------------------------------------------
slowed A B
mig_virsh A domjobabort "$DOM" >/dev/null || fail "domjobabort"
migrate_rc && fail "the aborted migration succeeded"
log "aborted: $(head -n 1 "$T/migrate.out")"
converged "abort" A
mig_sampler_stop
check_samples "$T/samples" "abort"
ok "(3) domjobabort: $DOM on A only, its TSI Activated at hva only, nothing left of hvb"

# --- (4) the destination's hook refuses ----------------------------------------------------------
meta5002="<vnics><vnic mac='$MAC' vn-id='5002'/></vnics>"
mig_virsh A metadata "$DOM" --uri urn:splitnve:vn:1 --key splitnve --live --config --set "$meta5002" ||
    fail "virsh metadata (VN 5002)"
VM="$DOM/$UUID/$MAC/5002"
why=$(mig_wait_converged 30 "$VM") || fail "VN change to 5002: $why"
mig_sampler_start "$T/samples"
mig_migrate A B "$DOM" >"$T/migrate.out" 2>&1 && fail "the migration to B succeeded although hvb may not join VN 5002"
log "refused: $(tr '\n' ' ' <"$T/migrate.out")"
grep -Eqi 'not[- ]authori[sz]ed' "$T/migrate.out" || fail "virsh's error lacks the nNVE's reason: $(cat "$T/migrate.out")"
converged "refused" A
mig_sampler_stop
check_samples "$T/samples" "refused"
mig_virsh A metadata "$DOM" --uri urn:splitnve:vn:1 --key splitnve --live --config \
    --set "<vnics><vnic mac='$MAC' vn-id='5001'/></vnics>" || fail "virsh metadata (VN 5001)"
VM="$DOM/$UUID/$MAC/5001"
converged "back to VN 5001" A
ok "(4) destination hook refused (VN 5002 not authorized for hvb): reason in virsh's error, $DOM stays on A"

# --- (5) the destination QEMU is killed -------------------------------------------------------------
slowed A B
kill -KILL "$(mig_qemu_pid B "$DOM")" || fail "kill the destination QEMU"
migrate_rc && fail "the migration succeeded without its destination QEMU"
log "destination QEMU killed: $(head -n 1 "$T/migrate.out")"
converged "destination QEMU killed" A
mig_sampler_stop
check_samples "$T/samples" "destination QEMU killed"
ok "(5) destination QEMU killed: $DOM on A only, nothing left of hvb"

# --- (5b) the destination QEMU dies at the switch-over, the source already paused ------------------
# The destination QEMU is stopped (SIGSTOP) during the transfer and the downtime limit raised:
# the source pauses for the switch-over and waits.  Meanwhile the source agent restarts: it
# finds the guest paused for a migration, as the source (an outgoing job), and keeps it
# Activated.  Then the destination QEMU is killed: the source resumes (RESUMED/UNPAUSED).
mark=$(mig_event_mark A)
slowed A B
kill -STOP "$(mig_qemu_pid B "$DOM")" || fail "stop the destination QEMU"
mig_virsh A migrate-setmaxdowntime "$DOM" 300000 >/dev/null || fail "migrate-setmaxdowntime"
mig_wait_event A "$mark" 30 "'$DOM': Suspended Migrated" ||
    fail "the source did not pause for the switch-over"
mig_stop_agent A KILL
mig_start_agent A || fail "agent A did not come back"
log "A's state of $DOM at the switch-over: $(mig_virsh A domstate "$DOM" --reason 2>&1)"
sleep 1
inst=$(nnvectl --json show tsis | jq -c --arg t "$TSI" '[.[] | select(.tsi == $t) | [.hypervisor, .state, .migrating]] | sort')
[ "$inst" = '[["hva","activated",true],["hvb","associated",true]]' ] ||
    fail "with the source paused at the switch-over, after A's agent restarted, the nNVE has $inst"
kill -KILL "$(mig_qemu_pid B "$DOM")" || fail "kill the destination QEMU"
migrate_rc && fail "the migration succeeded without its destination QEMU"
mig_virsh A migrate-setmaxdowntime "$DOM" 300 >/dev/null || fail "migrate-setmaxdowntime"
converged "destination QEMU killed at the switch-over" A
# Resumed Unpaused when QEMU resumed the source itself on the failed switch-over, Resumed
# Migrated when libvirt restored the source's pre-migration state first (reason
# migration-canceled): which one wins is a race inside libvirtd; either is the source running.
mig_wait_event A "$mark" 10 "'$DOM': Resumed " ||
    fail "no Resumed event on A after the failed switch-over"
log "A's event: $(tail -n +"$((mark + 1))" "$T/events-A.log" | grep -F -m1 "'$DOM': Resumed ")"
mig_sampler_stop
check_samples "$T/samples" "destination QEMU killed at the switch-over"
ok "(5b) destination QEMU killed at the switch-over (source paused, its agent restarted): $DOM resumed on A, Activated at hva only"

# --- (6) the destination agent is killed -------------------------------------------------------------
slowed A B
mig_stop_agent B KILL
unthrottle A
migrate_rc || fail "the migration failed with the destination agent killed: $(cat "$T/migrate.out")"
log "migration A -> B completed with B's agent dead; restarting it"
mig_start_agent B || fail "agent B did not come back"
converged "destination agent killed" B
mig_sampler_stop
check_samples "$T/samples" "destination agent killed"
ok "(6) destination agent killed: the migration completed, $DOM on B only, Activated at hvb only"

# --- (6b) the source agent is killed; the migration completes while it is down -----------------------
slowed B A
mig_stop_agent B KILL
unthrottle B
migrate_rc || fail "the migration failed with the source agent killed: $(cat "$T/migrate.out")"
mig_start_agent B || fail "agent B did not come back"
converged "source agent killed" A
mig_sampler_stop
check_samples "$T/samples" "source agent killed"
ok "(6b) source agent killed: the migration completed, $DOM on A only, B's instance swept"

# --- (6c) the destination agent is killed, then the migration is aborted ---------------------------
slowed A B
mig_stop_agent B KILL
mig_virsh A domjobabort "$DOM" >/dev/null || fail "domjobabort"
migrate_rc && fail "the aborted migration succeeded"
mig_start_agent B || fail "agent B did not come back"
converged "destination agent killed, migration aborted" A
mig_sampler_stop
check_samples "$T/samples" "destination agent killed, migration aborted"
ok "(6c) destination agent killed, migration aborted: $DOM on A only, B's instance swept"

# --- (6d) the destination agent restarts while the migration runs ---------------------------------
# The restarted agent finds the incoming domain by listing (paused, incoming migration): it
# must hold it Associated for the migration, not activate it while the guest runs at A.
slowed A B
mig_stop_agent B KILL
mig_start_agent B || fail "agent B did not come back"
log "B's state of $DOM during the migration: $(mig_virsh B domstate "$DOM" --reason 2>&1)"
sleep 1
inst=$(nnvectl --json show tsis | jq -c --arg t "$TSI" '[.[] | select(.tsi == $t) | [.hypervisor, .state, .migrating]] | sort')
[ "$inst" = '[["hva","activated",true],["hvb","associated",true]]' ] ||
    fail "with the migration under way, after B's agent restarted, the nNVE has $inst"
unthrottle A
migrate_rc || fail "the migration failed after B's agent restarted: $(cat "$T/migrate.out")"
converged "destination agent restarted" B
mig_sampler_stop
check_samples "$T/samples" "destination agent restarted"
ok "(6d) destination agent restarted during the migration: B's instance stayed Associated until the switch-over, $DOM on B only"

# --- (7) nnve-daemon restarted -------------------------------------------------------------------------
slowed B A
mig_stop_nnve KILL
mig_start_nnve || fail "nnve-daemon did not restart"
unthrottle B
migrate_rc || fail "the migration failed across an nnve-daemon restart: $(cat "$T/migrate.out")"
converged "nnve-daemon restarted" A
mig_sampler_stop
check_samples "$T/samples" "nnve-daemon restarted"
ok "(7) nnve-daemon restarted during the migration: $DOM on A only, Activated at hva only"

# --- (7b) the switch-over happens while nnve-daemon is down ------------------------------------------------
# When the nNVE is back, the source's agent resynchronises first (the destination's is held
# with SIGSTOP): it must tell the leave as a migration source's, so that the nNVE activates
# the destination's instance before it removes the source's; a sweep at SYNC_END would leave
# none Activated until the destination re-announced its own.
slowed A B
mig_stop_nnve KILL
unthrottle A
migrate_rc || fail "the migration failed with nnve-daemon down: $(cat "$T/migrate.out")"
kill -STOP "${MIG_AGENT_PID[B]}" || fail "stop agent B"
mig_start_nnve || { kill -CONT "${MIG_AGENT_PID[B]}"; fail "nnve-daemon did not restart"; }
qemu_poll 30 mig_agent_ready A >/dev/null
inst=$(nnvectl --json show tsis | jq -c --arg t "$TSI" '[.[] | select(.tsi == $t) | [.hypervisor, .state]] | sort')
kill -CONT "${MIG_AGENT_PID[B]}" || fail "continue agent B"
[ "$inst" = '[["hvb","activated"]]' ] ||
    fail "after the source's agent resynchronised (the destination's held), the nNVE has $inst"
converged "switch-over with nnve-daemon down" B
mig_sampler_stop
check_samples "$T/samples" "switch-over with nnve-daemon down"
ok "(7b) switch-over while nnve-daemon was down: $DOM on B only, Activated at hvb only"

# --- (8) post-copy -------------------------------------------------------------------------------------------
slowed B A --postcopy
mig_virsh B migrate-postcopy "$DOM" >/dev/null || fail "migrate-postcopy"
migrate_rc || fail "the post-copy migration failed: $(cat "$T/migrate.out")"
mig_wait_event A 0 10 "for domain '$DOM': Resumed Post-copy" || fail "no Resumed Post-copy on A: not post-copy"
converged "post-copy" A
mig_sampler_stop
check_samples "$T/samples" "post-copy"
ok "(8) post-copy migration B -> A: $DOM on A only, Activated at hva only"

# --- the end: destroy; nothing left; clean exits ---------------------------------------------------------
mig_virsh A destroy "$DOM" >/dev/null || fail "destroy"
qemu_poll 30 sh -c "[ \"\$('$B/bin/nnvectl' -s '$T/nnve.ctl' --json show tsis | jq length)\" = 0 ]" ||
    fail "TSIs left after destroy: $(nnvectl --json show tsis)"
rc=0
for h in A B; do
    mig_stop_agent "$h" || rc=$?
    [ "$rc" -eq 0 ] || fail "agent $h exited with $rc on SIGTERM"
done
mig_stop_nnve || rc=$?
[ "$rc" -eq 0 ] || fail "nnve-daemon exited with $rc on SIGTERM"
ok "destroy: no TSI left; agents and nnve-daemon exited cleanly"
