# qemu-lib.bash: the real-QEMU test tier's host side (sourced, not run).
# A private libvirtd with only the QEMU driver (TCG guests, type='qemu'): its own socket,
# config and log under the test's temp dir $T.  What libvirt's QEMU driver keeps in system
# paths cannot be moved for a root daemon (/etc/libvirt/qemu for defined domains,
# /run/libvirt/qemu, /var/lib/libvirt/qemu, /var/log/libvirt/qemu, the capabilities cache in
# /var/cache/libvirt/qemu); the tier keeps to names of its own there (domains "splitnve-qt-*")
# and removes what it created.  Hooks are read from /etc/libvirt/hooks/qemu.d only: a hook
# installed there lives only for the run (see qemu_install_hook).  One run at a time on a
# machine (a lock), since one root libvirtd at a time can hold the QEMU driver.
#
# The caller sets T (a temp dir) and S (the source dir) before sourcing and calls
# qemu_cleanup from its EXIT trap.

QEMU_LIBVIRTD=/usr/sbin/libvirtd
QEMU_BIN=/usr/bin/qemu-system-x86_64
QEMU_DRIVER_SO=/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so
QEMU_HOOK_DIR=/etc/libvirt/hooks/qemu.d
QEMU_LOCK=/run/lock/splitnve-qemu-tier.lock
QEMU_URI="qemu:///system?socket=$T/run/libvirt-sock"
QEMU_LIBVIRTD_PID=
QEMU_VIRTLOGD_PID=
QEMU_EVENTS_PID=
QEMU_HOOK=
QEMU_HOOK_DIR_CREATED=
QEMU_DOMAINS=()

qlog() { echo "[$(date +%T.%3N)] $*"; }

# qemu_now_ms: wall clock in ms, for bounded polls and timings.
qemu_now_ms() { echo $(($(date +%s%N) / 1000000)); }

# qemu_poll SECONDS CMD...: runs CMD every 0.1 s until it succeeds (0) or SECONDS pass (1).
qemu_poll() {
    local secs=$1 deadline
    shift
    deadline=$(($(qemu_now_ms) + secs * 1000))
    until "$@" >/dev/null 2>&1; do
        [ "$(qemu_now_ms)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# qemu_host_check: prints why the tier cannot run here and returns 1, else returns 0.
qemu_host_check() {
    local f
    [ "$(id -u)" = 0 ] || { echo "needs root (libvirtd with the QEMU driver)"; return 1; }
    for f in "$QEMU_LIBVIRTD" /usr/sbin/virtlogd "$QEMU_BIN" "$QEMU_DRIVER_SO"; do
        [ -e "$f" ] || { echo "missing $f (packages libvirt-daemon-system qemu-system-x86)"; return 1; }
    done
    command -v virsh >/dev/null || { echo "missing virsh (libvirt-clients)"; return 1; }
    command -v jq >/dev/null || { echo "missing jq"; return 1; }
    return 0
}

# qemu_libvirtd_files DIR CONF: what a private libvirtd with only the QEMU driver needs:
# DIR/drivers (for LIBVIRT_DRIVER_DIR) holding the QEMU driver alone (no network driver that
# would autostart the host's default network), and its config CONF: a Unix socket for root
# only, no authentication, then the lines on stdin.
qemu_libvirtd_files() {
    mkdir -p "$1/drivers" || return 1
    ln -sf "$QEMU_DRIVER_SO" "$1/drivers/" || return 1
    {
        echo 'unix_sock_group = "root"'
        echo 'unix_sock_rw_perms = "0700"'
        echo 'auth_unix_rw = "none"'
        echo 'auth_unix_ro = "none"'
        cat
    } >"$2"
}

# qemu_guest CACHE: the tiny guest (tests/qemu/make-guest.sh, cached in CACHE) copied to
# $T/kernel and $T/initrd.img.
qemu_guest() {
    local g
    mapfile -t g < <("$S/tests/qemu/make-guest.sh" "$1")
    [ "${#g[@]}" -eq 2 ] || return 1
    cp "${g[0]}" "$T/kernel" && cp "${g[1]}" "$T/initrd.img"
}

# qemu_stop_pid PID [SIGNAL]: sends SIGNAL (default TERM) to a child, waits (<= 20 s: ASan
# builds free slowly), then SIGKILL (returns 99); else returns the child's exit status (also
# when it had died before).
qemu_stop_pid() {
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -"${2:-TERM}" "$pid" 2>/dev/null
    for i in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null && { wait "$pid" 2>/dev/null; return 99; }
    wait "$pid" 2>/dev/null
}

# qemu_nnve_global PORT: the [global] section of an nnve-daemon under $T listening on
# 127.0.0.1:PORT (0: a port of its own, see its "daemon: started" line), PKI in $T/pki
# (nnve1), state in $T/nstate, control socket $T/nnve.ctl, none backend journaling to
# $T/journal, hold_time HOLD (default 30s).
qemu_nnve_global() {
    mkdir -p "$T/nstate"
    cat <<CONF
[global]
listen = 127.0.0.1:$1
cert = $T/pki/nnve1.crt
key = $T/pki/nnve1.key
ca = $T/pki/ca.crt
node_id = tor1
state_dir = $T/nstate
control_socket = $T/nnve.ctl
backend = none
dataplane_journal = $T/journal
hold_time = ${2:-30s}
CONF
}

# qemu_agent_conf URI PORT HV DIR HOOK_TIMEOUT_S: the keys a tnve-agent of this tier has in
# common: libvirt at URI, the nNVE nnve1 at 127.0.0.1:PORT, identity HV ($T/pki/HV.*), state
# and control socket in DIR (astate, agent.ctl), the none dataplane.
qemu_agent_conf() {
    mkdir -p "$4/astate"
    cat <<CONF
libvirt_uri = $1
nnve_address = 127.0.0.1
nnve_port = $2
cert = $T/pki/$3.crt
key = $T/pki/$3.key
ca = $T/pki/ca.crt
nnve_identity = nnve1
node_id = $3
dataplane = none
state_dir = $4/astate
control_socket = $4/agent.ctl
hook_timeout = ${5}s
address_poll_interval = 0
CONF
}

# qemu_lock SECONDS: waits (bounded) for the machine-wide lock of the tier; fd 9 holds it
# (start long-lived children with 9>&- so that the lock dies with the test).
qemu_lock() {
    mkdir -p "$(dirname "$QEMU_LOCK")"
    exec 9>"$QEMU_LOCK"
    flock -w "$1" 9 || return 1
    : >>"$T/pids"
}

# qemu_alive PID: PID runs (exists and is not a zombie).
qemu_alive() {
    local st
    st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) && [ -n "$st" ] && [ "$st" != Z ]
}

qemu_gone() { ! qemu_alive "$1"; }

# qemu_kill PID: SIGKILL, then waits (<= 5 s) until it is gone.
qemu_kill() {
    local i
    kill -KILL "$1" 2>/dev/null || return 0
    for i in $(seq 50); do
        qemu_alive "$1" || return 0
        sleep 0.1
    done
}

# qemu_driver_holder: PID of a live libvirtd holding the QEMU driver, if any.
qemu_driver_holder() {
    local pid
    pid=$(cat /run/libvirt/qemu/driver.pid 2>/dev/null) || return 1
    [ -n "$pid" ] && qemu_alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = libvirtd ] &&
        echo "$pid"
}

# qemu_foreign_hooks: executables in the hook dir that are not this tier's: libvirt would run
# them for this test's domains too.
qemu_foreign_hooks() {
    local f
    [ -x /etc/libvirt/hooks/qemu ] && echo /etc/libvirt/hooks/qemu
    for f in "$QEMU_HOOK_DIR"/*; do
        [ -f "$f" ] && [ -x "$f" ] || continue
        case "$(basename "$f")" in splitnve-qemu-tier.*) continue ;; esac
        echo "$f"
    done
}

# qemu_note_pid NAME PID: records a process of this run in $T/pids, so that a later run can
# end it by PID should this one be killed before its cleanup.
qemu_note_pid() { echo "$1 $2" >>"$T/pids"; }

# qemu_sweep_stale: call holding the lock.  Whatever another run of the tier left behind is
# then stale (a run records itself in its $T/pids only once it holds the lock): it was killed
# before its cleanup.  Ends its processes (by the PIDs it recorded, if they still run from
# its dir) and its guests' QEMUs (by libvirt's PID files), removes its hook wrappers, domain
# definitions, logs, tap devices and run dir.
qemu_sweep_stale() {
    local d f pid name dev stale=()
    for d in /tmp/tnve-qemu.* /tmp/splitnve-qemu-smoke.*; do
        [ "$d" != "$T" ] && [ -f "$d/pids" ] || continue
        while read -r name pid; do
            [ -n "$pid" ] || continue
            if [ "$name" = virtlogd ]; then
                # the one that run started: still the system's virtlogd, by its PID file
                if [ "$(cat /run/virtlogd.pid 2>/dev/null)" = "$pid" ] &&
                    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = virtlogd ]; then
                    kill -TERM "$pid" 2>/dev/null
                    qemu_poll 5 qemu_gone "$pid" || qemu_kill "$pid"
                fi
            elif grep -qaF "$d/" "/proc/$pid/cmdline" 2>/dev/null; then
                qemu_kill "$pid"
            fi
        done <"$d/pids"
        stale+=("$d")
    done
    for f in /run/libvirt/qemu/splitnve-qt-*.pid; do
        [ -f "$f" ] || continue
        name=$(basename "$f" .pid)
        pid=$(cat "$f" 2>/dev/null || true)
        [ -n "$pid" ] && grep -qaF "guest=$name," "/proc/$pid/cmdline" 2>/dev/null &&
            qemu_kill "$pid"
        rm -f "$f" "/run/libvirt/qemu/$name.xml"
    done
    rm -f "$QEMU_HOOK_DIR"/splitnve-qemu-tier.*
    for d in "${stale[@]}"; do
        [ -f "$d/hook-dir-created" ] && rmdir "$QEMU_HOOK_DIR" 2>/dev/null
    done
    for f in /etc/libvirt/qemu/splitnve-qt-*.xml; do
        [ -f "$f" ] || continue
        rm -f "$f" "/var/log/libvirt/qemu/$(basename "$f" .xml).log"
    done
    for dev in $(ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' |
        grep -E '^sqt?[0-9]+[ab][0-9]?$'); do
        ip link del "$dev" 2>/dev/null
    done
    [ ${#stale[@]} -eq 0 ] || rm -rf "${stale[@]}"
    return 0
}

# qemu_hook_env TNVECTL SOCKET TIMEOUT: the shell lines of a hook wrapper that give the
# project's hook what libvirtd's scrubbed environment lacks: tnvectl's path, the agent's
# socket, the hook timeout, and the sanitizer options of this run.
qemu_hook_env() {
    local v
    for v in ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS; do
        [ -n "${!v:-}" ] && echo "export $v='${!v}'"
    done
    echo "export SPLITNVE_TNVECTL='$1' SPLITNVE_SOCKET='$2' SPLITNVE_HOOK_TIMEOUT='$3'"
}

# qemu_hook_wrapper LOG TNVECTL SOCKET TIMEOUT ON_SUCCESS [BEFORE]: a hook wrapper (shell
# script on stdout) that runs the project's hook (etc/libvirt/hooks/qemu.d/splitnve) with
# tnvectl and the agent's socket of this run (libvirtd runs hooks with a scrubbed environment,
# so they are written into the wrapper), logs each call to LOG ("EPOCH argv", then
# "EPOCH argv rc=N") and keeps the hook's exit status.  The shell snippet BEFORE runs before
# the hook, ON_SUCCESS after it returned 0 (both see libvirt's arguments: $1 the domain,
# $2 the operation).  Inert once $T is gone.
qemu_hook_wrapper() {
    local log=$1 tnvectl=$2 sock=$3 timeout=$4 on_ok=$5 before=${6:-:}
    echo "#!/bin/sh"
    echo "# splitnve real-QEMU test tier: the project's libvirt hook for one test run."
    echo "# run-dir: $T"
    echo "[ -d '$T' ] || exit 0"
    echo "echo \"\$(date +%s.%N) \$*\" >>'$log'"
    qemu_hook_env "$tnvectl" "$sock" "$timeout"
    echo "$before"
    echo "/bin/sh '$S/etc/libvirt/hooks/qemu.d/splitnve' \"\$@\""
    echo "rc=\$?"
    echo "if [ \$rc = 0 ]; then"
    echo "    $on_ok"
    echo "fi"
    echo "echo \"\$(date +%s.%N) \$* rc=\$rc\" >>'$log'"
    echo "exit \$rc"
}

# qemu_install_hook TNVECTL SOCKET TIMEOUT [AFTER_PREPARE [BEFORE]]: installs a wrapper
# (qemu_hook_wrapper, calls logged to $T/hook-calls.log) into the system hook dir; after a
# successful "prepare" it runs the shell snippet AFTER_PREPARE (the domain name in $1): what
# held while libvirt had not yet started QEMU.  Never replaces an existing file; removed by
# qemu_cleanup.
qemu_install_hook() {
    local tnvectl=$1 sock=$2 timeout=$3 after=${4:-:} before=${5:-:} name
    if [ ! -d "$QEMU_HOOK_DIR" ]; then
        mkdir -p "$QEMU_HOOK_DIR" || return 1
        QEMU_HOOK_DIR_CREATED=1
        : >"$T/hook-dir-created"
    fi
    name=$QEMU_HOOK_DIR/splitnve-qemu-tier.$$
    [ -e "$name" ] && { echo "hook $name exists already"; return 1; }
    qemu_hook_wrapper "$T/hook-calls.log" "$tnvectl" "$sock" "$timeout" \
        "if [ \"\$2\" = prepare ]; then $after; fi" "$before" >"$name.tmp.$$" || return 1
    chmod 0755 "$name.tmp.$$"
    mv -n "$name.tmp.$$" "$name"
    rm -f "$name.tmp.$$"
    QEMU_HOOK=$name
}

# qemu_start_virtlogd: libvirtd's QEMU driver logs through the system virtlogd
# (/run/libvirt/virtlogd-sock): reuses a running one, else starts one (exits by itself after
# 5 idle minutes should this run be killed) and stops it in qemu_cleanup.
qemu_start_virtlogd() {
    local pid
    pid=$(cat /run/virtlogd.pid 2>/dev/null || true)
    if [ -n "$pid" ] && qemu_alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = virtlogd ]; then
        return 0
    fi
    /usr/sbin/virtlogd --daemon --timeout 300 9>&- || return 1
    qemu_poll 10 test -S /run/libvirt/virtlogd-sock || return 1
    QEMU_VIRTLOGD_PID=$(cat /run/virtlogd.pid 2>/dev/null || true)
    [ -n "$QEMU_VIRTLOGD_PID" ] && qemu_note_pid virtlogd "$QEMU_VIRTLOGD_PID"
    return 0
}

# qemu_start_libvirtd: the private libvirtd (QEMU driver only: no network driver that would
# autostart the host's default network), socket in $T/run.  Waits until it answers.
qemu_start_libvirtd() {
    mkdir -p "$T/run"
    qemu_libvirtd_files "$T" "$T/libvirtd.conf" <<CONF
unix_sock_dir = "$T/run"
log_level = 3
log_filters = "1:util.hook"
log_outputs = "1:file:$T/libvirtd.log"
CONF
    # libvirt checks /dev/kvm as the QEMU user (libvirt-qemu) but probes QEMU with
    # CAP_DAC_OVERRIDE: where /dev/kvm is root-only (0600), the probe finds KVM, the check
    # does not, every capabilities lookup calls the cache outdated ("KVM was enabled when
    # probing ..., but it is not available now") and probes QEMU again (~4 s each, ~11
    # lookups for one define).  The daemon gets its own mount namespace where /dev/kvm is
    # the same device with the usual 0660 root:kvm; the host's node is not touched.
    local runuser=libvirt-qemu started=''
    if [ -c /dev/kvm ] && id "$runuser" >/dev/null 2>&1 &&
        ! setpriv --reuid="$runuser" --regid="$(id -g "$runuser")" --init-groups \
            test -r /dev/kvm -a -w /dev/kvm 2>/dev/null &&
        mknod -m 0660 "$T/kvm" c "$((0x$(stat -c %t /dev/kvm)))" "$((0x$(stat -c %T /dev/kvm)))" &&
        chgrp "$(id -g "$runuser")" "$T/kvm"; then
        if LIBVIRT_DRIVER_DIR=$T/drivers unshare --mount --propagation private -- \
            sh -c 'mount --bind "$0" /dev/kvm && exec "$@"' "$T/kvm" \
            "$QEMU_LIBVIRTD" --daemon --config "$T/libvirtd.conf" --pid-file "$T/libvirtd.pid" \
            9>&- 2>>"$T/unshare.log"; then
            started=1
        else
            qlog "no mount namespace for libvirtd ($(cat "$T/unshare.log")): QEMU probes will repeat"
        fi
    fi
    if [ -z "$started" ]; then
        LIBVIRT_DRIVER_DIR=$T/drivers "$QEMU_LIBVIRTD" --daemon --config "$T/libvirtd.conf" \
            --pid-file "$T/libvirtd.pid" 9>&- || return 1
    fi
    qemu_poll 20 test -s "$T/libvirtd.pid" || return 1
    QEMU_LIBVIRTD_PID=$(cat "$T/libvirtd.pid")
    qemu_note_pid libvirtd "$QEMU_LIBVIRTD_PID"
    qemu_poll 20 test -S "$T/run/libvirt-sock" || return 1
    qemu_poll 20 virsh -c "$QEMU_URI" uri
}

# qemu_record_events: every libvirt event of the private libvirtd, with timestamps, into
# $T/events.log (diagnostics and device-removed checks).
qemu_record_events() {
    virsh -c "$QEMU_URI" event --all --loop --timestamp >"$T/events.log" 2>&1 9>&- &
    QEMU_EVENTS_PID=$!
    qemu_note_pid virsh-event "$QEMU_EVENTS_PID"
}

# qemu_domain_xml NAME UUID KERNEL INITRD CONSOLE METADATA IFACE_XML...: a TCG guest booting
# KERNEL/INITRD directly (QEMU_GUEST_MEM MiB, default 160), serial console appended to the
# file CONSOLE, the given interfaces.
qemu_domain_xml() {
    local name=$1 uuid=$2 kernel=$3 initrd=$4 console=$5 meta=$6
    shift 6
    cat <<XML
<domain type='qemu'>
  <name>$name</name>
  <uuid>$uuid</uuid>
  <description>run-dir: $T</description>
  <metadata>$meta</metadata>
  <memory unit='MiB'>${QEMU_GUEST_MEM:-160}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$kernel</kernel>
    <initrd>$initrd</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$QEMU_BIN</emulator>
    $*
    <serial type='file'>
      <source path='$console' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
XML
}

# qemu_nic_xml MAC TAP: a virtio vNIC on a tap device TAP that libvirt creates (no bridge).
qemu_nic_xml() {
    echo "<interface type='ethernet'><mac address='$1'/><target dev='$2' managed='yes'/><model type='virtio'/></interface>"
}

# qemu_define FILE: defines a domain and remembers it for qemu_cleanup.
qemu_define() {
    local name
    name=$(sed -n 's/^ *<name>\(.*\)<\/name>/\1/p' "$1" | head -n 1)
    QEMU_DOMAINS+=("$name")
    virsh -q -c "$QEMU_URI" define "$1" >/dev/null
}

# qemu_cleanup: destroys and undefines this run's domains, stops the daemons it started,
# removes the hook wrapper and the domain logs.  Safe to call more than once.
qemu_cleanup() {
    local d i
    trap '' PIPE # a reader gone from our stdout must not cut the cleanup short
    if [ -n "$QEMU_LIBVIRTD_PID" ] && qemu_alive "$QEMU_LIBVIRTD_PID"; then
        for d in "${QEMU_DOMAINS[@]}"; do
            timeout 20 virsh -q -c "$QEMU_URI" destroy "$d" >/dev/null 2>&1
            timeout 20 virsh -q -c "$QEMU_URI" undefine "$d" >/dev/null 2>&1
        done
    fi
    [ -n "$QEMU_EVENTS_PID" ] && kill "$QEMU_EVENTS_PID" 2>/dev/null
    if [ -n "$QEMU_LIBVIRTD_PID" ]; then
        kill -TERM "$QEMU_LIBVIRTD_PID" 2>/dev/null
        for i in $(seq 100); do
            qemu_alive "$QEMU_LIBVIRTD_PID" || break
            sleep 0.1
        done
        qemu_kill "$QEMU_LIBVIRTD_PID"
    fi
    # a domain libvirtd could not stop (it was killed first): its QEMU by PID file
    for d in "${QEMU_DOMAINS[@]}"; do
        i=$(cat "/run/libvirt/qemu/$d.pid" 2>/dev/null || true)
        if [ -n "$i" ] && grep -qaF "guest=$d," "/proc/$i/cmdline" 2>/dev/null; then
            qemu_kill "$i"
        fi
        rm -f "/etc/libvirt/qemu/$d.xml" "/run/libvirt/qemu/$d.pid" "/run/libvirt/qemu/$d.xml" \
            "/var/log/libvirt/qemu/$d.log"
    done
    if [ -n "$QEMU_VIRTLOGD_PID" ] && [ "$(cat "/proc/$QEMU_VIRTLOGD_PID/comm" 2>/dev/null)" = virtlogd ]; then
        kill -TERM "$QEMU_VIRTLOGD_PID" 2>/dev/null
    fi
    [ -n "$QEMU_HOOK" ] && rm -f "$QEMU_HOOK"
    [ -n "$QEMU_HOOK_DIR_CREATED" ] && rmdir "$QEMU_HOOK_DIR" 2>/dev/null
    QEMU_LIBVIRTD_PID='' QEMU_VIRTLOGD_PID='' QEMU_EVENTS_PID='' QEMU_HOOK='' QEMU_HOOK_DIR_CREATED=''
    QEMU_DOMAINS=()
}
