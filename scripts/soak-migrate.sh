#!/bin/bash
# soak-migrate.sh: live migrations back and forth between two libvirtd hosts with random
# failures injected (the bed of tests/qemu/mig-lib.bash: real QEMU/TCG guest, two agents,
# one nnve-daemon).
#   scripts/soak-migrate.sh BUILD_DIR
# SOAK_MIGRATIONS migrations (default 100), SOAK_MIG_SEED the random seed (default 1).  Each
# migration is, at random: a plain live migration (half of them), or one with a failure:
# domjobabort, the destination QEMU killed (during the transfer, or at the switch-over with the
# source already paused), the destination or the source agent killed (the
# migration completes; the agent restarts), the destination agent restarted while the
# migration runs, nnve-daemon restarted while it runs, or down at the switch-over, or a
# post-copy migration.  After each: the guest runs on exactly one host (the expected one),
# the switch matches libvirt on both hosts (mig_converged: one instance, Activated there, no
# other instance, VN connection or tag left, each agent agrees), and every sample of
# `nnvectl show tsis` taken while the nNVE answered had an Activated instance.  At the end
# the guest is destroyed: no instance and no tag in use may remain.  Prints one PASS or FAIL
# line with the figures; the log is BUILD_DIR/test-logs/soak-migrate.log.  Exit 77 when the
# machine cannot run QEMU guests under two libvirtds.
set -u
B=$(cd "${1:?usage: soak-migrate.sh BUILD_DIR}" && pwd)
S=${SPLITNVE_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
N=${SOAK_MIGRATIONS:-100}
SEED=${SOAK_MIG_SEED:-1}
mkdir -p "$B/test-logs"
LOG=$B/test-logs/soak-migrate.log
exec 3>&1 >"$LOG" 2>&1
T=$(mktemp -d /tmp/tnve-mig.XXXXXX)
chmod 0755 "$T"
. "$S/tests/qemu/mig-lib.bash"
MIG_HOOK_TIMEOUT_S=10

say() { echo "$*" >&3; qlog "$*"; }
cleanup() {
    local rc=$?
    trap - EXIT
    mig_sampler_stop
    if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
        for f in agent-A.log agent-B.log nnve.log; do
            [ -s "$T/$f" ] && { echo "--- $f (tail)"; tail -n 40 "$T/$f"; }
        done
    fi
    mig_cleanup
    rm -rf "$T"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ITER=0 KIND=-
fail() {
    qlog "FAIL at migration $ITER ($KIND): $*"
    say "FAIL soak-migrate seed=$SEED migration=$ITER/$N kind=$KIND: $* (log: $LOG)"
    exit 1
}

why=$(mig_host_check) || { say "SKIP soak-migrate: cannot run here: $why"; exit 77; }
mig_lock 600 || fail "another migration test run held $MIG_LOCK for 600 s"
mig_sweep_stale
mig_guest || fail "tests/qemu/make-guest.sh failed"
mig_up || fail "the two-host bed did not come up"
DOM=vm1 UUID=5e100000-0000-4000-8000-000000000001 MAC=52:54:00:10:00:01
TSI=$UUID/$MAC VM="$DOM/$UUID/$MAC/5001"
mig_define_start A "$DOM" "$UUID" "$MAC" 5001 || fail "define + start $DOM on A"
mig_wait_booted "$DOM" || fail "the guest did not boot"
why=$(mig_wait_converged 60 "$VM") || fail "after start: $why"
TAG=$(nnvectl --json show tsis | jq -r '.[0].tag')

RANDOM=$SEED
KINDS=(abort qemu-kill switchover-kill dst-agent-kill src-agent-kill dst-agent-restart nnve-restart
    nnve-down postcopy)
declare -A COUNT=()
T0=$(qemu_now_ms) SAMPLES=0 TWO_ACT=0 PLAIN_MS=()
for ITER in $(seq "$N"); do
    src=$(mig_where "$DOM")
    [ "$src" = A ] || [ "$src" = B ] || fail "$DOM runs on '$src'"
    dst=$(mig_other "$src")
    if [ $((RANDOM % 2)) = 0 ]; then KIND=plain; else KIND=${KINDS[$((RANDOM % ${#KINDS[@]}))]}; fi
    want=$dst
    mig_sampler_start "$T/samples"
    t0=$(qemu_now_ms)
    case $KIND in
    plain)
        mig_migrate "$src" "$dst" "$DOM" >"$T/migrate.out" 2>&1 || fail "migrate: $(cat "$T/migrate.out")"
        PLAIN_MS+=($(($(qemu_now_ms) - t0)))
        ;;
    postcopy)
        mig_start_slowed "$src" "$dst" "$DOM" --postcopy || fail "not under way"
        mig_virsh "$src" migrate-postcopy "$DOM" >/dev/null || fail "migrate-postcopy"
        mig_wait_migrate || fail "post-copy: $(cat "$T/migrate.out")"
        ;;
    switchover-kill)
        # the source paused for the switch-over, the destination QEMU stopped, then killed
        want=$src
        mark=$(mig_event_mark "$src")
        mig_start_slowed "$src" "$dst" "$DOM" || fail "not under way"
        kill -STOP "$(mig_qemu_pid "$dst" "$DOM")" || fail "stop the destination QEMU"
        mig_virsh "$src" migrate-setmaxdowntime "$DOM" 300000 >/dev/null || fail "migrate-setmaxdowntime"
        mig_wait_event "$src" "$mark" 30 "'$DOM': Suspended Migrated" ||
            fail "the source did not pause for the switch-over"
        kill -KILL "$(mig_qemu_pid "$dst" "$DOM")" || fail "kill the destination QEMU"
        mig_wait_migrate && fail "the migration succeeded: $(cat "$T/migrate.out")"
        mig_virsh "$src" migrate-setmaxdowntime "$DOM" 300 >/dev/null || fail "migrate-setmaxdowntime"
        ;;
    *)
        mig_start_slowed "$src" "$dst" "$DOM" || fail "not under way"
        sleep "0.$((RANDOM % 10))"
        case $KIND in
        abort)
            want=$src
            mig_virsh "$src" domjobabort "$DOM" >/dev/null || fail "domjobabort"
            ;;
        qemu-kill)
            want=$src
            kill -KILL "$(mig_qemu_pid "$dst" "$DOM")" || fail "kill the destination QEMU"
            ;;
        dst-agent-kill | src-agent-kill)
            h=$([ "$KIND" = dst-agent-kill ] && echo "$dst" || echo "$src")
            mig_stop_agent "$h" KILL
            mig_unthrottle "$src" "$DOM"
            mig_wait_migrate || fail "migrate: $(cat "$T/migrate.out")"
            mig_start_agent "$h" || fail "agent $h did not come back"
            ;;
        dst-agent-restart)
            mig_stop_agent "$dst" KILL
            mig_start_agent "$dst" || fail "agent $dst did not come back"
            ;;
        nnve-restart)
            mig_stop_nnve KILL
            mig_start_nnve || fail "nnve-daemon did not restart"
            ;;
        nnve-down)
            mig_stop_nnve KILL
            mig_unthrottle "$src" "$DOM"
            mig_wait_migrate || fail "migrate: $(cat "$T/migrate.out")"
            mig_start_nnve || fail "nnve-daemon did not restart"
            ;;
        esac
        if [ -n "$MIG_MPID" ]; then
            [ "$want" = "$dst" ] && mig_unthrottle "$src" "$DOM"
            if mig_wait_migrate; then
                [ "$want" = "$dst" ] || fail "the migration succeeded: $(cat "$T/migrate.out")"
            else
                [ "$want" = "$src" ] || fail "migrate: $(cat "$T/migrate.out")"
            fi
        fi
        ;;
    esac
    why=$(mig_wait_converged 60 "$VM") || fail "switch and libvirt differ: $why"
    [ "$(mig_where "$DOM")" = "$want" ] || fail "$DOM runs on '$(mig_where "$DOM")', want $want"
    mig_sampler_stop
    summary=$(mig_samples_ok "$T/samples" "$TSI") || fail "samples with no Activated instance or more than two: $summary"
    s=$(mig_samples "$T/samples" "$TSI")
    SAMPLES=$((SAMPLES + $(jq 'length' <<<"$s")))
    TWO_ACT=$((TWO_ACT + $(jq '[.[] | select(.act == 2)] | length' <<<"$s")))
    tag=$(nnvectl --json show tsis | jq -r '.[0].tag')
    [ "$tag" = "$TAG" ] || fail "the tag went from $TAG to $tag"
    COUNT[$KIND]=$((${COUNT[$KIND]:-0} + 1))
    qlog "migration $ITER/$N $KIND $src -> $dst: on $want after $(($(qemu_now_ms) - t0)) ms; $summary"
done
KIND=end
mig_virsh "$(mig_where "$DOM")" destroy "$DOM" >/dev/null || fail "destroy"
qemu_poll 30 sh -c "[ \"\$('$B/bin/nnvectl' -s '$T/nnve.ctl' --json show tsis | jq length)\" = 0 ]" ||
    fail "TSI instances left: $(nnvectl --json show tsis)"
used=$(nnvectl --json show tags | jq '[.[].used] | add')
[ "$used" = 0 ] || fail "$used tags still in use: $(nnvectl --json show tags)"
vns=$(nnvectl --json show vns | jq -c '[.[] | select(.state == "connected")]')
[ "$vns" = "[]" ] || fail "VN connections left: $vns"
for h in A B; do
    mig_stop_agent "$h" || fail "agent $h exited with $? on SIGTERM"
done
mig_stop_nnve || fail "nnve-daemon exited with $? on SIGTERM"
kinds=''
for k in plain "${KINDS[@]}"; do kinds+=" $k=${COUNT[$k]:-0}"; done
p50=$(printf '%s\n' "${PLAIN_MS[@]}" | sort -n | awk '{ a[NR] = $1 } END { print NR ? a[int((NR + 1) / 2)] : "-" }')
say "PASS soak-migrate seed=$SEED migrations=$N in $((($(qemu_now_ms) - T0) / 1000)) s:$kinds;" \
    "plain migration p50 ${p50} ms; $SAMPLES samples of the switch, none without an Activated" \
    "instance, $TWO_ACT with two; at the end 0 instances, 0 tags in use, 0 VN connections," \
    "switch == libvirt after every migration"
