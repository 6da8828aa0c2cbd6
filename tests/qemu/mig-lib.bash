# mig-lib.bash: the two-host test bed of live migration (sourced, not run).
#
# Host A and host B are each a libvirtd with the QEMU driver (TCG guests) in its own mount and
# UTS namespace: its own /etc/libvirt (config, domain definitions, the hook), /run/libvirt,
# /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt (the QEMU capabilities, kept between
# runs), its own hostname and host UUID, its own virtlogd.  Both share the host network
# namespace; migrations go over 127.0.0.1.  Each host has its own tnve-agent (identity hva /
# hvb, ports pa / pb of one significance domain, so a VN has one tag on both); both agents
# talk TLS to one nnve-daemon (backend none, its journal in $T/journal) that runs on a port
# held for the whole run (socket activation), so it can be restarted under them.  Each
# libvirtd runs the project's hook (etc/libvirt/hooks/qemu.d/splitnve) through a wrapper that
# logs every call to $T/hooks-H.log ("EPOCH argv" and "EPOCH argv rc=N").
#
# A child-subreaper holder (perl, prctl) adopts each host's daemonized libvirtd, virtlogd and
# QEMUs and reaps them at once: this machine's PID 1 reaps orphans about once a second, which
# would add 1-2 s to every stop and every migration.  The namespace ends with the holder.
#
# The caller sets B, S (build and source dirs) and T (a temp dir from mktemp, mode 0755)
# before sourcing, and calls mig_cleanup from its EXIT trap.  Everything is started and
# stopped by PID; all waits are bounded.  One run at a time per machine (mig_lock): the
# migration port ranges and the capability caches are per machine.

. "$S/tests/qemu/qemu-lib.bash"

MIG_LOCK=/run/lock/splitnve-qemu-mig.lock
MIG_GUEST_CACHE=${SPLITNVE_QEMU_GUEST:-$S/build/qemu-guest}
MIG_MEM=${SPLITNVE_MIG_MEM:-96}
MIG_HOLD_TIME=${MIG_HOLD_TIME:-30s}
declare -gA MIG_UUID=([A]=11111111-1111-4111-8111-11111111111a [B]=22222222-2222-4222-8222-22222222222b)
declare -gA MIG_HOSTNAME=([A]=mig-a.test [B]=mig-b.test)
declare -gA MIG_HV=([A]=hva [B]=hvb)
# Migration ports: above the kernel's ephemeral range (up to 60999 by default), where a
# test's own connections cannot take them, and in a slot of 64 picked by the PID, so two
# beds on one machine (a soak beside make check) seldom share one; libvirtd skips a port in
# use within its range anyway.
MIG_PORT_BASE=$((61000 + ($$ % 70) * 64))
declare -gA MIG_PORTS=([A]="$MIG_PORT_BASE $((MIG_PORT_BASE + 31))"
    [B]="$((MIG_PORT_BASE + 32)) $((MIG_PORT_BASE + 63))")
declare -gA MIG_AGENT_PID=() MIG_EVENTS_PID=()
MIG_NNVE_PID='' MIG_LISTEN_PID='' NNVE_PORT=''
MIG_DOMAINS=()
MIG_HOOK_TIMEOUT_S=${MIG_HOOK_TIMEOUT_S:-5}

mig_dir() { echo "$T/h$1"; }
mig_uri() { echo "qemu+unix:///system?socket=$T/h$1/run/libvirt-sock"; }
mig_virsh() { # HOST ARGS...
    local h=$1
    shift
    virsh -q -c "$(mig_uri "$h")" "$@"
}
nnvectl() { "$B/bin/nnvectl" -s "$T/nnve.ctl" "$@"; }
tnvectl_on() { # HOST ARGS...
    local h=$1
    shift
    "$B/bin/tnvectl" -s "$(mig_dir "$h")/agent.ctl" "$@"
}
mig_other() { [ "$1" = A ] && echo B || echo A; }

# mig_host_check: prints why the bed cannot run here and returns 1, else 0.
mig_host_check() {
    qemu_host_check || return 1
    local t
    for t in unshare perl nsenter; do
        command -v "$t" >/dev/null || { echo "missing $t"; return 1; }
    done
    unshare --mount --uts --propagation private true 2>/dev/null ||
        { echo "cannot create mount + UTS namespaces (unshare)"; return 1; }
    return 0
}

# mig_lock SECONDS: the machine-wide lock of the bed on fd 8 (children get 8>&-).
mig_lock() {
    mkdir -p "$(dirname "$MIG_LOCK")"
    exec 8>"$MIG_LOCK"
    flock -w "$1" 8 || return 1
    echo "$T" >"$T/mig-owner"
}

# mig_sweep_stale: with the lock held, every other /tmp/tnve-mig.* dir is a run killed before
# its cleanup: its processes (whose command line names that dir: daemons, QEMUs, holders) are
# killed and the dir removed.
mig_sweep_stale() {
    local d p
    for d in /tmp/tnve-mig.*; do
        [ "$d" != "$T" ] && [ -f "$d/mig-owner" ] || continue
        for p in $(grep -laF "$d/" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
            [ "$p" != $$ ] && qemu_kill "$p"
        done
        rm -rf "$d"
    done
    return 0
}

# mig_guest: the tiny guest (qemu_guest) in $T/kernel, $T/initrd.img.
mig_guest() { qemu_guest "$MIG_GUEST_CACHE"; }

# mig_pki: CA, nnve1, hva, hvb.
mig_pki() {
    "$S/scripts/gen-pki.sh" "$T/pki" nnve1 hva hvb >"$T/pki.log" 2>&1
}

# mig_nnve_conf: hva may join VNs 5001 and 5002, hvb only 5001 (a migration of a VM in 5002
# to B is refused by B's hook).
mig_nnve_conf() {
    qemu_nnve_global "$NNVE_PORT" "$MIG_HOLD_TIME"
    cat <<CONF

[domain rack1]
ports = pa, pb
tags = 100-199

[hypervisor hva]
port = pa
vns = 5001, 5002

[hypervisor hvb]
port = pb
vns = 5001
CONF
}

# mig_start_nnve: nnve-daemon on the held port (held on the first call).
mig_start_nnve() {
    if [ -z "$NNVE_PORT" ]; then
        "$B/tests/tools/listen-socket" hold 127.0.0.1 "$T/nnve-listen.sock" \
            >"$T/nnve-listen.port" 2>>"$T/nnve.log" 8>&- &
        MIG_LISTEN_PID=$!
        qemu_poll 10 test -s "$T/nnve-listen.port" || return 1
        NNVE_PORT=$(cat "$T/nnve-listen.port")
        mig_nnve_conf >"$T/nnve.conf"
    fi
    local before
    before=$(wc -l <"$T/nnve.log")
    rm -f "$T/nnve.ctl"
    "$B/tests/tools/listen-socket" run "$T/nnve-listen.sock" "$B/bin/nnve-daemon" -c "$T/nnve.conf" \
        >>"$T/nnve.log" 2>&1 8>&- &
    MIG_NNVE_PID=$!
    qemu_poll 20 test -S "$T/nnve.ctl" || return 1
    qemu_poll 20 sh -c "tail -n +$((before + 1)) '$T/nnve.log' | grep -q 'daemon: started'"
}

# mig_stop_nnve [SIGNAL]: stops nnve-daemon (qemu_stop_pid).
mig_stop_nnve() {
    local pid=$MIG_NNVE_PID
    MIG_NNVE_PID=''
    qemu_stop_pid "$pid" "${1:-TERM}"
}

mig_write_reaper() {
    cat >"$T/reaper.pl" <<'EOF'
# prctl(PR_SET_CHILD_SUBREAPER, 1): syscall 157 = prctl on x86_64; 36 = PR_SET_CHILD_SUBREAPER
syscall(157, 36, 1, 0, 0, 0) == 0 or die "prctl: $!\n";
for my $c (@ARGV) { system("/bin/sh", "-c", $c) == 0 or warn "failed: $c\n"; }
1 while wait() != -1;
EOF
}

# mig_write_hook HOST: the wrapper libvirtd of HOST runs for every QEMU hook call.
mig_write_hook() {
    local h=$1 D
    D=$(mig_dir "$h")
    mkdir -p "$D/etc/hooks/qemu.d"
    qemu_hook_wrapper "$T/hooks-$h.log" "$B/bin/tnvectl" "$D/agent.ctl" $((MIG_HOOK_TIMEOUT_S + 10)) \
        "if [ \"\$2\" = migrate ]; then '$B/bin/nnvectl' -s '$T/nnve.ctl' --json show tsis >'$T/at-migrate-$h.json' 2>&1; fi" \
        >"$D/etc/hooks/qemu.d/splitnve"
    chmod 0755 "$D/etc/hooks/qemu.d/splitnve"
}

# mig_start_host HOST: libvirtd + virtlogd of HOST in their namespaces (not waited for).
mig_start_host() {
    local h=$1 D caps pmin pmax
    D=$(mig_dir "$h")
    caps=$MIG_GUEST_CACHE/libvirt-cache-$h
    read -r pmin pmax <<<"${MIG_PORTS[$h]}"
    mkdir -p "$D"/{run,lib,log,etc/qemu/networks/autostart} "$caps"
    qemu_libvirtd_files "$D" "$D/etc/libvirtd.conf" <<CONF
host_uuid = "${MIG_UUID[$h]}"
log_filters = "1:qemu.qemu_migration 1:util.hook 3:qemu 3:util"
log_outputs = "1:file:/var/log/libvirt/libvirtd.log"
CONF
    # migration_address / migration_host must not be loopback (libvirtd refuses to start):
    # loopback is asked for on each migration (--migrateuri, --listen-address).
    cat >"$D/etc/qemu.conf" <<CONF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
migration_port_min = $pmin
migration_port_max = $pmax
CONF
    : >"$D/etc/virtlogd.conf"
    mig_write_hook "$h"
    printf '127.0.0.1 localhost\n127.0.0.1 %s %s\n' "${MIG_HOSTNAME[A]}" "${MIG_HOSTNAME[B]}" >"$D/hosts"
    : >"$T/hooks-$h.log"
    LIBVIRT_DRIVER_DIR=$D/drivers unshare --mount --uts --propagation private -- /bin/sh -c "
        set -e
        mkdir -p /etc/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
        mount --bind '$D/etc' /etc/libvirt
        mount --bind '$D/run' /run/libvirt
        mount --bind '$D/lib' /var/lib/libvirt
        mount --bind '$caps' /var/cache/libvirt
        mount --bind '$D/log' /var/log/libvirt
        mount --bind '$D/hosts' /etc/hosts
        hostname '${MIG_HOSTNAME[$h]}'
        exec perl '$T/reaper.pl' \
            'virtlogd --daemon --pid-file $D/virtlogd.pid' \
            'libvirtd --daemon --pid-file $D/libvirtd.pid'
    " </dev/null >"$D/holder.log" 2>&1 8>&- &
    echo $! >"$D/holder.pid"
}

# mig_wait_host HOST: the libvirtd of HOST answers (first capability probe ~5-8 s).
mig_wait_host() {
    local h=$1 D
    D=$(mig_dir "$h")
    qemu_poll 30 test -S "$D/run/libvirt-sock" || { cat "$D/holder.log"; return 1; }
    qemu_poll 30 mig_virsh "$h" uri || return 1
    mig_virsh "$h" domcapabilities --virttype qemu >/dev/null
}

# mig_record_events HOST: every libvirt event of HOST, timestamped, into $T/events-H.log.
mig_record_events() {
    local h=$1
    virsh -c "$(mig_uri "$h")" event --all --loop --timestamp >>"$T/events-$h.log" 2>&1 8>&- &
    MIG_EVENTS_PID[$h]=$!
}

# mig_start_agent HOST: tnve-agent of HOST (waits until its session is up and synced).
mig_start_agent() {
    local h=$1 D
    D=$(mig_dir "$h")
    {
        qemu_agent_conf "$(mig_uri "$h")" "$NNVE_PORT" "${MIG_HV[$h]}" "$D" "$MIG_HOOK_TIMEOUT_S"
        printf 'retry_min = 100ms\nretry_max = 1s\nkeepalive = 1s\nlibvirt_keepalive = 2s\n'
    } >"$D/agent.conf"
    rm -f "$D/agent.ctl"
    "$B/bin/tnve-agent" -c "$D/agent.conf" >>"$T/agent-$h.log" 2>&1 8>&- &
    MIG_AGENT_PID[$h]=$!
    qemu_poll 30 mig_agent_ready "$h"
}

mig_agent_ready() {
    tnvectl_on "$1" --json show session | jq -e '.state == "up" and .sync == "ready"'
}

# mig_stop_agent HOST [SIGNAL]: stops the agent of HOST (qemu_stop_pid).
mig_stop_agent() {
    local pid=${MIG_AGENT_PID[$1]:-}
    MIG_AGENT_PID[$1]=''
    qemu_stop_pid "$pid" "${2:-TERM}"
}

# mig_up: the whole bed: PKI, nnve-daemon, both hosts, both agents, event recorders.
mig_up() {
    mig_pki || { cat "$T/pki.log"; return 1; }
    mig_start_nnve || { qlog "nnve-daemon did not start"; return 1; }
    mig_write_reaper
    mig_start_host A
    mig_start_host B
    mig_wait_host A || { qlog "libvirtd A did not come up"; return 1; }
    mig_wait_host B || { qlog "libvirtd B did not come up"; return 1; }
    mig_record_events A
    mig_record_events B
    mig_start_agent A || { qlog "agent A did not connect"; return 1; }
    mig_start_agent B || { qlog "agent B did not connect"; return 1; }
}

# mig_domain_xml NAME UUID MAC VN: a TCG guest (qemu_domain_xml, 96 MiB) with one virtio
# vNIC in VN (the project's metadata).  The vNIC is a tap libvirt creates with a name of its
# own (vnetN): both hosts share one network namespace, so a fixed name would be taken by the
# source's tap when the destination QEMU starts.  The serial console appends to
# $T/console-NAME.log from both hosts, so the guest's output runs on across migrations.
mig_domain_xml() {
    QEMU_GUEST_MEM=$MIG_MEM qemu_domain_xml "$1" "$2" "$T/kernel" "$T/initrd.img" "$T/console-$1.log" \
        "<splitnve:vnics xmlns:splitnve='urn:splitnve:vn:1'><splitnve:vnic mac='$3' vn-id='$4'/></splitnve:vnics>" \
        "<interface type='ethernet'><mac address='$3'/><model type='virtio'/></interface>"
}

# mig_define_start HOST NAME UUID MAC VN: defines and starts the guest on HOST.
mig_define_start() {
    local h=$1 name=$2
    mig_domain_xml "$2" "$3" "$4" "$5" >"$T/$name.xml"
    MIG_DOMAINS+=("$name")
    mig_virsh "$h" define "$T/$name.xml" >/dev/null && mig_virsh "$h" start "$name" >/dev/null
}

# mig_wait_booted NAME [FROM]: the guest NAME printed GUEST-READY on its console after line
# FROM (0: since the file began; within 90 s), then MIG_SETTLE_S (3) seconds more.  A TCG
# guest moved in its first seconds now and then crashes at the switch-over (its memory
# comes over wrong: init segfaults and the kernel panics), so every move starts from a
# guest that has settled.
MIG_SETTLE_S=${MIG_SETTLE_S:-3}
mig_wait_booted() {
    qemu_poll 90 sh -c "tail -n +$((${2:-0} + 1)) '$T/console-$1.log' | grep -q GUEST-READY" || return 1
    sleep "$MIG_SETTLE_S"
}

# mig_state HOST NAME: libvirt's state of NAME on HOST ("running", "paused", "shut off"),
# empty when HOST does not know it.
mig_state() { mig_virsh "$1" domstate "$2" 2>/dev/null | head -n 1; }

# mig_where NAME: the host where NAME runs ("A", "B", "" for none, "AB" for both).
mig_where() {
    local h out=''
    for h in A B; do
        case "$(mig_state "$h" "$1")" in running | paused) out+=$h ;; esac
    done
    echo "$out"
}

# mig_migrate SRC DST NAME [VIRSH-MIGRATE-ARGS...]: live migration SRC -> DST over loopback.
mig_migrate() {
    local src=$1 dst=$2 name=$3
    shift 3
    virsh -c "$(mig_uri "$src")" migrate --live "$name" "$(mig_uri "$dst")" \
        --migrateuri tcp://127.0.0.1 --listen-address 127.0.0.1 "$@" 8>&-
}

# mig_qemu_pid HOST NAME: the PID of NAME's QEMU on HOST (libvirt's PID file), if it runs.
mig_qemu_pid() {
    local p
    p=$(cat "$(mig_dir "$1")/run/qemu/$2.pid" 2>/dev/null) || return 1
    [ -n "$p" ] && qemu_alive "$p" && echo "$p"
}

# mig_wait_event HOST MARK SECONDS TEXT: a line holding TEXT (fixed string) appears in HOST's
# event log after line MARK, within SECONDS.  libvirt delivers events to the recording client
# asynchronously: an event can arrive after the state change it reports is visible to an API
# call, so a check for one polls.
mig_wait_event() {
    qemu_poll "$3" sh -c 'tail -n +"$(($2 + 1))" "$1" | grep -qF -- "$3"' sh "$T/events-$1.log" "$2" "$4"
}

# mig_wait_transfer HOST NAME MARK SECONDS: the source's QEMU sends RAM: a migration-iteration
# event of NAME on HOST after line MARK of its event log.
mig_wait_transfer() { mig_wait_event "$1" "$3" "$4" "'migration-iteration' for domain '$2'"; }

mig_event_mark() { wc -l <"$T/events-$1.log"; }

# mig_cleanup: destroys the guests, stops agents, daemons and hosts by PID.  Safe to repeat.
mig_cleanup() {
    local h D p i f
    trap '' PIPE
    for h in A B; do
        D=$(mig_dir "$h")
        [ -d "$D" ] || continue
        mig_stop_agent "$h"
        [ -n "${MIG_EVENTS_PID[$h]:-}" ] && kill "${MIG_EVENTS_PID[$h]}" 2>/dev/null
        MIG_EVENTS_PID[$h]=''
        for f in "$D"/run/qemu/*.pid; do
            [ -f "$f" ] || continue
            p=$(cat "$f" 2>/dev/null)
            [ -n "$p" ] && grep -qaF "$T/" "/proc/$p/cmdline" 2>/dev/null && kill -KILL "$p" 2>/dev/null
        done
        for f in libvirtd virtlogd; do
            p=$(cat "$D/$f.pid" 2>/dev/null)
            [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$f" ] && kill -TERM "$p" 2>/dev/null
        done
    done
    for h in A B; do
        D=$(mig_dir "$h")
        p=$(cat "$D/holder.pid" 2>/dev/null) || continue
        for i in $(seq 100); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$p" 2>/dev/null; then
            for i in $(cat "/proc/$p/task/$p/children" 2>/dev/null); do kill -KILL "$i" 2>/dev/null; done
            kill -KILL "$p" 2>/dev/null
        fi
        wait "$p" 2>/dev/null
        rm -f "$D/holder.pid"
    done
    mig_stop_nnve
    [ -n "$MIG_LISTEN_PID" ] && kill "$MIG_LISTEN_PID" 2>/dev/null
    MIG_LISTEN_PID=''
    return 0
}

# ---- the switch's view, sampled and checked -------------------------------------------------

# mig_sampler_start FILE: samples `nnvectl --json show tsis` as fast as it answers into FILE,
# one line per sample: "EPOCH_NS JSON" ("EPOCH_NS down" while the nNVE does not answer), until
# mig_sampler_stop (or 300 s).
MIG_SAMPLER_PID=''
mig_sampler_start() {
    local f=$1
    : >"$f"
    rm -f "$T/sampler.stop"
    (
        end=$(($(date +%s) + 300))
        while [ ! -e "$T/sampler.stop" ] && [ "$(date +%s)" -lt "$end" ]; do
            t=$(date +%s%N)
            if s=$("$B/bin/nnvectl" -s "$T/nnve.ctl" -t 2 --json show tsis 2>/dev/null); then
                echo "$t $(tr -d '\n' <<<"$s")"
            else
                echo "$t down"
                sleep 0.02
            fi
        done
    ) >>"$f" 8>&- &
    MIG_SAMPLER_PID=$!
}
mig_sampler_stop() {
    [ -n "$MIG_SAMPLER_PID" ] || return 0
    : >"$T/sampler.stop"
    wait "$MIG_SAMPLER_PID" 2>/dev/null
    MIG_SAMPLER_PID=''
}

# mig_samples FILE TSI: the samples as one JSON array, per sample {t: epoch ms, up: bool,
# act: instances Activated, n: instances, hvs: [[hypervisor, state, tag, migrating]...]}.
mig_samples() {
    sed -e 's/^\([0-9]*\) down$/{"t":\1,"s":null}/' -e 's/^\([0-9]*\) \([[{].*\)$/{"t":\1,"s":\2}/' "$1" |
        jq -c -s --arg t "$2" 'map({t: (.t / 1000000 | floor), up: (.s != null),
            hvs: [(.s // [])[] | select(.tsi == $t) | [.hypervisor, .state, .tag, .migrating]]}
            | .act = ([.hvs[] | select(.[1] == "activated")] | length) | .n = (.hvs | length))'
}

# mig_converged SPEC...: 0 when the switch matches libvirt on both hosts, else 1 with the
# difference on stdout.  SPEC is NAME/UUID/MAC/VN for each guest of the bed: it must run on
# exactly one host, its TSI have one instance, at that host's hypervisor, Activated, not
# migrating, in VN; no other TSI instance at the nNVE; each connected VN connection of the
# nNVE exactly the hypervisors with a TSI in it; as many tags used as connected VNs; on each
# agent every TSI acknowledged as desired, nothing beyond Init on the host where the guest
# does not run, and a VN connected only with users; the dataplane (the none backend's
# journal) holds exactly the nNVE's VN connections and TSI instances.
mig_converged() {
    local spec name uuid mac vn where hv tsis vns tags h want=0 out
    tsis=$(nnvectl --json show tsis 2>&1) || { echo "nnvectl: $tsis"; return 1; }
    vns=$(nnvectl --json show vns 2>&1) || { echo "nnvectl: $vns"; return 1; }
    tags=$(nnvectl --json show tags 2>&1) || { echo "nnvectl: $tags"; return 1; }
    for spec in "$@"; do
        IFS=/ read -r name uuid mac vn <<<"$spec"
        where=$(mig_where "$name")
        [ "${#where}" = 1 ] || { echo "$name runs on '${where:-no host}'"; return 1; }
        hv=${MIG_HV[$where]}
        out=$(jq -c --arg t "$uuid/$mac" '[.[] | select(.tsi == $t) | [.hypervisor, .state, .vn_id, .migrating]]' <<<"$tsis")
        [ "$out" = "[[\"$hv\",\"activated\",$vn,false]]" ] ||
            { echo "$name runs on $where ($hv) in VN $vn; the nNVE has $out"; return 1; }
        want=$((want + 1))
        for h in A B; do
            out=$(tnvectl_on "$h" --json show tsis 2>&1) || { echo "tnvectl $h: $out"; return 1; }
            out=$(jq -c --arg m "$mac" --arg u "$uuid" \
                '[.[] | select(.mac == $m and .uuid == $u) | [.desired, .acked]]' <<<"$out")
            if [ "$h" = "$where" ]; then
                [ "$out" = '[["activated","activated"]]' ] || { echo "agent $h: $name $out"; return 1; }
            else
                case "$out" in '[]' | '[["init","init"]]') ;; *) echo "agent $h: $name $out"; return 1 ;; esac
            fi
        done
    done
    out=$(jq 'length' <<<"$tsis")
    [ "$out" = "$want" ] || { echo "the nNVE has $out TSI instances, want $want: $(jq -c . <<<"$tsis")"; return 1; }
    out=$(jq -c --argjson t "$tsis" '[.[] | select(.state == "connected") | . as $v |
            {vn: .vn_id, hvs: (.hypervisors | sort), tsis: .tsis,
             want: ([$t[] | select(.vn_id == $v.vn_id) | .hypervisor] | unique),
             n: ([$t[] | select(.vn_id == $v.vn_id)] | length)} | select(.hvs != .want or .tsis != .n)]' <<<"$vns")
    [ "$out" = "[]" ] || { echo "VN connections differ from the TSIs: $out"; return 1; }
    out=$(jq -n --argjson v "$vns" --argjson g "$tags" \
        '[$g[] | .domain as $d | {domain: $d, used, want: ([$v[] | select(.domain == $d and .state == "connected")] | length)} | select(.used != .want)]')
    [ "$out" = "[]" ] || { echo "tags used differ from the connected VNs: $out"; return 1; }
    out=$(diff <(mig_switch_state "$tsis" "$vns") <(mig_journal_state))
    [ -z "$out" ] || { echo "the dataplane (journal) differs from the nNVE's state: $(echo $out)"; return 1; }
    for h in A B; do
        out=$(tnvectl_on "$h" --json show vns 2>&1) || { echo "tnvectl $h: $out"; return 1; }
        out=$(jq -c '[.[] | select(.connected and .users == 0)]' <<<"$out")
        [ "$out" = "[]" ] || { echo "agent $h keeps VN connections without users: $out"; return 1; }
        out=$(tnvectl_on "$h" --json show tsis)
        out=$(jq -c '[.[] | select(.desired != .acked)]' <<<"$out")
        [ "$out" = "[]" ] || { echo "agent $h has TSIs not acknowledged as desired: $out"; return 1; }
    done
    return 0
}

# mig_journal_state: what the none backend has installed, replayed from its journal as the
# backend itself does: "vn PORT TAG VN" and "tsi PORT TSI STATE" lines, sorted.
mig_journal_state() {
    awk '{ k = ""; p = ""; t = ""; v = ""; x = ""
           for (i = 2; i <= NF; i++) {
               if ($i ~ /^port=/) p = substr($i, 6); else if ($i ~ /^tag=/) t = substr($i, 5)
               else if ($i ~ /^vn=/) v = substr($i, 4); else if ($i ~ /^tsi=/) x = substr($i, 5)
           }
           if ($1 == "add-vn") vn[p " " t " " v] = 1
           else if ($1 == "remove-vn") delete vn[p " " t " " v]
           else if ($1 == "associate-tsi" || $1 == "deactivate-tsi") ts[p " " x] = "associated"
           else if ($1 == "activate-tsi") ts[p " " x] = "activated"
           else if ($1 == "deassociate-tsi") delete ts[p " " x] }
         END { for (k in vn) print "vn " k; for (k in ts) print "tsi " k " " ts[k] }' \
        "$T/journal" 2>/dev/null | sort
}

# mig_switch_state TSIS_JSON VNS_JSON: the same lines from the nNVE's own view (nnvectl).
mig_switch_state() {
    {
        jq -r '.[] | "tsi \(.port) \(.tsi) \(.state)"' <<<"$1"
        jq -r '.[] | select(.state == "connected") | .tag as $t | .vn_id as $v |
            .hypervisors[] | "vn \(if . == "hva" then "pa" else "pb" end) \($t) \($v)"' <<<"$2"
    } | sort
}

# mig_wait_converged SECONDS SPEC...: polls mig_converged; on timeout prints the last
# difference and returns 1.
mig_wait_converged() {
    local secs=$1 deadline why
    shift
    deadline=$(($(qemu_now_ms) + secs * 1000))
    while :; do
        why=$(mig_converged "$@") && return 0
        [ "$(qemu_now_ms)" -lt "$deadline" ] || { echo "$why"; return 1; }
        sleep 0.2
    done
}

# mig_samples_ok FILE TSI: 0 when every sample taken while the nNVE answered has at least one
# Activated instance of TSI and at most two instances, with the counts on stdout; else 1 with
# the first bad samples on stdout.
mig_samples_ok() {
    local s bad
    s=$(mig_samples "$1" "$2")
    bad=$(jq -c '[.[] | select(.up and (.act < 1 or .n > 2))] | .[0:3]' <<<"$s")
    [ "$bad" = "[]" ] || { echo "$bad"; return 1; }
    jq -r '"\(length) samples (\([.[] | select(.up | not)] | length) with the nNVE down), \([.[] | select(.act == 2)] | length) with two Activated, \([.[] | select(.n == 2)] | length) with two instances"' <<<"$s"
}

# mig_start_slowed SRC DST NAME [VIRSH-MIGRATE-ARGS...]: starts a migration at 1 MiB/s in the
# background (its PID in MIG_MPID, its output in $T/migrate.out) and waits (<= 60 s) until
# the source sends RAM and the destination QEMU runs.  Returns 1 if that does not happen.
MIG_MPID=''
mig_start_slowed() {
    local src=$1 dst=$2 name=$3 mark
    shift 3
    mark=$(mig_event_mark "$src")
    mig_migrate "$src" "$dst" "$name" --bandwidth 1 "$@" >"$T/migrate.out" 2>&1 &
    MIG_MPID=$!
    mig_wait_transfer "$src" "$name" "$mark" 60 && qemu_poll 20 mig_qemu_pid "$dst" "$name"
}

# mig_wait_migrate: waits for the migration mig_start_slowed started; returns virsh's status.
mig_wait_migrate() {
    local rc=0
    wait "$MIG_MPID" || rc=$?
    MIG_MPID=''
    return $rc
}

# mig_unthrottle HOST NAME: the migration of NAME from HOST at full speed again.
mig_unthrottle() { mig_virsh "$1" migrate-setspeed "$2" --bandwidth 8796093022207 >/dev/null 2>&1; }
