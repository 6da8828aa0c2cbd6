#!/bin/bash
# bench/tnve-migrate.sh: what the switch sees of a live migration, against the migration's
# own timing.  The two-host bed of tests/qemu/mig-lib.bash (two libvirtds with the QEMU
# driver, an idle TCG guest of 96 MiB, a tnve-agent per host, one nnve-daemon with the none
# backend); TNVE_BENCH_MIGRATIONS live migrations (default 10), back and forth.  For each,
# from the start of `virsh migrate` (times of the nNVE's audit log lines, ms):
#   assoc    destination instance Associated (the destination's migrate hook)
#   act      destination instance Activated
#   deassoc  source instance removed
#   none     time with no Activated instance of the guest's TSI at the switch (goal: 0)
#   two      time with two Activated instances
#   virsh    `virsh migrate` wall time; paused: source SUSPENDED -> destination RESUMED
#            (libvirt events); downtime: libvirt's job statistics
# plus, from sampling `nnvectl show tsis` during each migration, the samples without an
# Activated instance.  Prints p50 / p99 / max per figure.  Figures only: nothing fails on
# speed; prints a line and exits 0 when the machine cannot run QEMU guests.
set -u
B=${SPLITNVE_BUILD:?SPLITNVE_BUILD not set}
S=${SPLITNVE_SRC:?SPLITNVE_SRC not set}
N=${TNVE_BENCH_MIGRATIONS:-10}
T=$(mktemp -d /tmp/tnve-mig.XXXXXX)
chmod 0755 "$T"
. "$S/tests/qemu/mig-lib.bash"
trap 'mig_sampler_stop; mig_cleanup; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
die() { echo "tnve-migrate: $*"; exit 1; }

why=$(mig_host_check) || { echo "tnve-migrate: skipped: cannot run here: $why"; exit 0; }
mig_lock 900 || die "another migration run held $MIG_LOCK for 900 s"
mig_sweep_stale
mig_guest || die "tests/qemu/make-guest.sh failed"
mig_up >"$T/up.log" 2>&1 || die "the two-host bed did not come up: $(cat "$T/up.log")"
DOM=vm1 UUID=5e100000-0000-4000-8000-000000000001 MAC=52:54:00:10:00:01
TSI=$UUID/$MAC VM="$DOM/$UUID/$MAC/5001"
mig_define_start A "$DOM" "$UUID" "$MAC" 5001 || die "define + start $DOM on A"
mig_wait_booted "$DOM" || die "the guest did not boot"
why=$(mig_wait_converged 60 "$VM") || die "after start: $why"

ms() { echo $(($(date -d "$1" +%s%N) / 1000000)); }
# first_after FILE EPOCH_MS REGEX: epoch ms of the first line of the nNVE log (ISO time first)
# matching REGEX at or after EPOCH_MS.
first_after() {
    local line t
    while IFS= read -r line; do
        t=$(ms "${line%% *}")
        [ "$t" -ge "$2" ] && { echo "$t"; return 0; }
    done < <(grep -E "$3" "$1")
    echo ""
}
# event_after HOST EPOCH_MS TEXT: epoch ms of the first libvirt event of HOST with TEXT.
event_after() {
    local line t
    while IFS= read -r line; do
        t=$(ms "$(cut -c1-23 <<<"$line")Z")
        [ "$t" -ge "$2" ] && { echo "$t"; return 0; }
    done < <(grep -F "for domain '$DOM': $3" "$T/events-$1.log")
    echo ""
}

declare -A V=()
add() { V[$1]+="$2 "; }
for i in $(seq "$N"); do
    src=$(mig_where "$DOM")
    dst=$(mig_other "$src")
    mig_sampler_start "$T/samples"
    t0=$(qemu_now_ms)
    mig_migrate "$src" "$dst" "$DOM" >"$T/migrate.out" 2>&1 || die "migrate: $(cat "$T/migrate.out")"
    t1=$(qemu_now_ms)
    why=$(mig_wait_converged 60 "$VM") || die "after migration $i: $why"
    mig_sampler_stop
    hd=${MIG_HV[$dst]} hs=${MIG_HV[$src]}
    a=$(first_after "$T/nnve.log" "$t0" "audit tsi: associated tsi=$TSI .*hypervisor=$hd ")
    c=$(first_after "$T/nnve.log" "$t0" "audit tsi: activated tsi=$TSI .*hypervisor=$hd ")
    d=$(first_after "$T/nnve.log" "$t0" "audit tsi: deassociated tsi=$TSI .*hypervisor=$hs ")
    [ -n "$a" ] && [ -n "$c" ] && [ -n "$d" ] || die "migration $i: audit lines missing"
    su=$(event_after "$src" "$t0" "Suspended Migrated")
    re=$(event_after "$dst" "$t0" "Resumed Migrated")
    add assoc $((a - t0))
    add act $((c - t0))
    add deassoc $((d - t0))
    add none $((c > d ? c - d : 0))
    add two $((d > c ? d - c : 0))
    add virsh $((t1 - t0))
    [ -n "$su" ] && [ -n "$re" ] && add paused $((re - su))
    add downtime "$(awk '/[^_]downtime:/ { v = $2 } END { print v }' "$T/events-$src.log")"
    add samples_none "$(mig_samples "$T/samples" "$TSI" | jq '[.[] | select(.up and .act < 1)] | length')"
done

stats() { # NAME: p50 p99 max of the values
    tr ' ' '\n' <<<"${V[$1]}" | grep -E '^[0-9]+$' | sort -n |
        awk -v n="$1" '{ a[NR] = $1 } END {
            if (!NR) { printf "  %-14s -\n", n; exit }
            i50 = int((NR + 1) / 2); i99 = int(NR * 0.99 + 0.999); if (i99 < 1) i99 = 1
            printf "  %-14s p50 %6d  p99 %6d  max %6d  (n=%d)\n", n, a[i50], a[i99], a[NR], NR }'
}
echo "tnve-migrate: $N live migrations of an idle ${MIG_MEM} MiB TCG guest between two libvirtds, ms from the start of virsh migrate:"
for k in assoc act deassoc virsh; do stats "$k"; done
echo "windows at the switch (ms): none = no Activated instance (goal 0), two = both Activated:"
for k in none two; do stats "$k"; done
echo "the migration itself (ms): paused = source SUSPENDED -> destination RESUMED, downtime = libvirt's job statistics:"
for k in paused downtime; do stats "$k"; done
echo "samples of nnvectl show tsis with no Activated instance, per migration:"
stats samples_none
