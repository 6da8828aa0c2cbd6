#!/bin/bash
# uml-run.sh: runs one script inside a User-Mode Linux kernel, for tests that need kernel
# networking the host kernel lacks (802.1Q, VLAN-aware bridges).
#
#   tests/uml/uml-run.sh [--mem 256M] [--timeout SECONDS] [--share DIR]... [--env NAME[=VALUE]]...
#                        [--disk FILE] SCRIPT [ARGS...]
#
# The UML root file system is the host's own root (hostfs, read-only), so host-built binaries
# run unchanged inside.  The init script mounts proc, sysfs, tmpfs on /run and /tmp, creates
# /run/netns, loads the modules 8021q bridge vxlan veth nf_tables, runs SCRIPT ARGS as root with the
# environment below, and powers off.  Output and exit status come back through a writable
# hostfs directory; this harness prints the output and exits with SCRIPT's status.
#
# Inside UML:
#   - /tmp and /run are fresh tmpfs: host paths below them are hidden unless given with
#     --share DIR, which mounts the host directory DIR read-write at the same path (done
#     automatically for SCRIPT's directory, SPLITNVE_SRC and SPLITNVE_BUILD when they lie
#     under /tmp or /run).
#   - UML_RESULTS names a read-write directory whose content is copied to the host directory
#     given in the environment variable UML_RUN_KEEP (if set) after the run.
#   - SCRIPT runs directly when executable, else with bash; stdin is /dev/null.
#   - --disk FILE: the host file FILE (e.g. an ext4 image) is the block device /dev/ubdb.
#     The guest caches its writes as any kernel does; they reach FILE when written back or
#     synced.
#   - /run/uml/power-cut [STATUS] ends the machine at once, as a power cut: it saves SCRIPT's
#     output so far and STATUS (default 0) as the result, then stops the kernel without a
#     sync or an unmount, so that what the guest's page cache held for --disk is lost and
#     FILE keeps only what had reached it.
#   - UML_RUN=1, PATH, HOME=/root, TERM=dumb, SPLITNVE_BUILD, SPLITNVE_SRC, ASAN_OPTIONS, UBSAN_OPTIONS,
#     LSAN_OPTIONS, CK_DEFAULT_TIMEOUT (when set here), and every --env NAME[=VALUE].
#
# Exit status: SCRIPT's status; 124 when --timeout expired; 125 when UML could not run the
# script (no kernel, boot failure, crash); 2 for a usage error.  Every failure of the harness
# itself is reported on stderr with the tail of the kernel console.
# The UML process group is always killed and the temporary directory always removed.
#
# Limits of the guest: about 2.5 s to boot to SCRIPT; each exec costs 50-100 ms; the user
# address space is 512 GiB, too small for ASan's shadow memory, so ASan-instrumented programs
# abort at start inside UML (plain and UBSan-only builds run fine).
set -u

prog="uml-run"
mem=256M
timeout_s=120
shares=()
envs=()
disk=

usage() {
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0" >&2
    exit 2
}
die() { # status message...
    local st=$1; shift
    echo "$prog: $*" >&2
    exit "$st"
}

while [ $# -gt 0 ]; do
    case $1 in
    --mem) [ $# -ge 2 ] || usage; mem=$2; shift 2 ;;
    --mem=*) mem=${1#--mem=}; shift ;;
    --timeout) [ $# -ge 2 ] || usage; timeout_s=$2; shift 2 ;;
    --timeout=*) timeout_s=${1#--timeout=}; shift ;;
    --share) [ $# -ge 2 ] || usage; shares+=("$2"); shift 2 ;;
    --share=*) shares+=("${1#--share=}"); shift ;;
    --env) [ $# -ge 2 ] || usage; envs+=("$2"); shift 2 ;;
    --env=*) envs+=("${1#--env=}"); shift ;;
    --disk) [ $# -ge 2 ] || usage; disk=$2; shift 2 ;;
    --disk=*) disk=${1#--disk=}; shift ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -*) echo "$prog: unknown option $1" >&2; usage ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || usage
[[ $mem =~ ^[0-9]+[KMG]?$ ]] || die 2 "bad --mem '$mem' (e.g. 256M)"
[[ $timeout_s =~ ^[0-9]+$ ]] && [ "$timeout_s" -gt 0 ] || die 2 "bad --timeout '$timeout_s'"
if [ -n "$disk" ]; then
    [ -f "$disk" ] && [ -w "$disk" ] || die 2 "--disk $disk: not a writable file"
    disk=$(cd "$(dirname "$disk")" && pwd -P)/$(basename "$disk")
    [[ $disk != *[,=\ ]* ]] || die 2 "--disk $disk: the path may not hold a comma, '=' or a space"
fi

script=$1
shift
case $script in
/*) ;;
*) script=$(pwd)/$script ;;
esac
[ -f "$script" ] || die 2 "no such script: $script"
[ -r "$script" ] || die 2 "script not readable: $script"

uml=$(command -v linux.uml || command -v linux || true)
[ -n "$uml" ] && [ -x "$uml" ] ||
    die 125 "linux.uml not found: install the Debian package user-mode-linux"
kver=$("$uml" --version 2>/dev/null | head -n 1)
moddir=/usr/lib/uml/modules
[ -n "$kver" ] && [ -d "$moddir/$kver" ] ||
    die 125 "UML kernel version '$kver' has no module directory $moddir/$kver (package mismatch?)"

# Paths under /tmp or /run would be hidden inside UML: SCRIPT's directory and the
# SPLITNVE_SRC / SPLITNVE_BUILD trees (a checkout in a temporary directory) are shared
# automatically.
for p in "$(dirname "$script")" "${SPLITNVE_SRC:-}" "${SPLITNVE_BUILD:-}"; do
    case $p in
    /tmp/*|/run/*) shares+=("$p") ;;
    esac
done
resolved=()
for d in "${shares[@]+"${shares[@]}"}"; do
    [ -d "$d" ] || die 2 "--share $d: not a directory"
    resolved+=("$(cd "$d" && pwd -P)")
done
# Parents before children; a directory inside another shared one needs no mount of its own.
shares=()
while IFS= read -r d; do
    [ -n "$d" ] || continue
    covered=0
    for s in "${shares[@]+"${shares[@]}"}"; do
        case $d/ in "$s"/*) covered=1 ;; esac
    done
    [ "$covered" = 1 ] || shares+=("$d")
done < <(printf '%s\n' "${resolved[@]+"${resolved[@]}"}" | sort -u)

work=$(mktemp -d) || die 125 "mktemp failed"
uml_pid=
cleanup() {
    if [ -n "$uml_pid" ]; then
        # UML runs each guest process as a host process of its own group.
        kill -KILL -- "-$uml_pid" 2>/dev/null
        kill -KILL "$uml_pid" 2>/dev/null
        wait "$uml_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$work/results" "$work/umldir" || die 125 "cannot create $work"

# The environment of SCRIPT, as bash assignments sourced by the init script.
{
    printf 'export PATH=%q\n' "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    printf 'export HOME=/root TERM=dumb\n'
    for v in SPLITNVE_BUILD SPLITNVE_SRC ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS CK_DEFAULT_TIMEOUT; do
        [ -n "${!v+x}" ] && printf 'export %s=%q\n' "$v" "${!v}"
    done
    for e in "${envs[@]+"${envs[@]}"}"; do
        name=${e%%=*}
        [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die 2 "--env: bad name in '$e'"
        if [[ $e == *=* ]]; then
            printf 'export %s=%q\n' "$name" "${e#*=}"
        elif [ -n "${!name+x}" ]; then
            printf 'export %s=%q\n' "$name" "${!name}"
        fi
    done
} >"$work/env.sh"

# The command, the directories to share and the working directory, as bash assignments.
{
    printf 'cmd=(%q' "$script"
    for a in "$@"; do printf ' %q' "$a"; done
    printf ')\n'
    printf 'shares=('
    for d in "${shares[@]+"${shares[@]}"}"; do printf ' %q' "$d"; done
    printf ')\n'
    printf 'workdir=%q\n' "$(pwd -P)"
} >"$work/cmd.sh"

# PID 1 inside UML.  It sees the host root read-only; $work is mounted again at /run/uml
# because /tmp is about to be hidden by a tmpfs.
cat >"$work/init" <<EOF
#!/bin/bash
host_work=$(printf %q "$work")
kver=$(printf %q "$kver")
EOF
cat >>"$work/init" <<'EOF'
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
t_init=$(date +%s.%N)
fail() {
    echo "uml-init: $*" >&2
    echo "uml-init: $*" >>/run/uml/results/output 2>/dev/null
    echo 125 >/run/uml/results/status 2>/dev/null
    poweroff -f
    echo o >/proc/sysrq-trigger
    exit 1
}
mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t tmpfs -o mode=0755 tmpfs /run || fail "mount /run"
mkdir -p /run/uml /run/netns /run/lock /run/uml-modules/lib || fail "mkdir /run"
mount -t hostfs -o "$host_work" hostfs /run/uml || fail "mount hostfs $host_work"
echo "$t_init" >/run/uml/results/t_init
mount -t tmpfs -o mode=1777 tmpfs /tmp || fail "mount /tmp"
[ "$(uname -r)" = "$kver" ] || fail "kernel $(uname -r) is not the expected $kver"
ln -s /usr/lib/uml/modules /run/uml-modules/lib/modules
for m in 8021q bridge vxlan veth nf_tables; do
    modprobe -d /run/uml-modules "$m" || fail "modprobe $m failed"
done
. /run/uml/cmd.sh
for d in "${shares[@]}"; do
    mkdir -p "$d" 2>/dev/null
    mount -t hostfs -o "$d" hostfs "$d" || fail "--share $d: mount failed (its parent must exist or be under /tmp or /run)"
done
ip link set lo up
export UML_RESULTS=/run/uml/results/keep UML_RUN=1
mkdir -p "$UML_RESULTS"
[ -r "${cmd[0]}" ] || fail "script ${cmd[0]} is not visible inside UML (host /tmp and /run are hidden: use --share)"
cd "$workdir" 2>/dev/null || cd /
date +%s.%N >/run/uml/results/t_script
(
    . /run/uml/env.sh
    if [ -x "${cmd[0]}" ]; then
        exec "${cmd[@]}" </dev/null
    fi
    exec bash "${cmd[@]}" </dev/null
) >/run/uml/results/output 2>&1
st=$?
date +%s.%N >/run/uml/results/t_end
sync
echo "$st" >/run/uml/results/status
sync
poweroff -f >/dev/null 2>&1
echo o >/proc/sysrq-trigger
EOF
chmod 0755 "$work/init"
# The power cut: SCRIPT's output and the status reach the host first (fsync of those two
# files only: a global sync would write the disk's cached blocks too), then the kernel
# stops as a reset does (sysrq b: no sync, no unmount; with noreboot UML exits).
cat >"$work/power-cut" <<'EOF'
#!/bin/bash
st=${1:-0}
sync /run/uml/results/output 2>/dev/null
echo "$st" >/run/uml/results/status.new && sync /run/uml/results/status.new &&
    mv /run/uml/results/status.new /run/uml/results/status && sync /run/uml/results/status
echo 1 >/proc/sys/kernel/sysrq
echo b >/proc/sysrq-trigger
sleep 10
EOF
chmod 0755 "$work/power-cut"

t0=$(date +%s.%N)
# Own session and process group (setsid does not fork here: a background job of a script is
# not a group leader), so that cleanup can kill every host process of this UML.
setsid "$uml" mem="$mem" rootfstype=hostfs rootflags=/ ro ${disk:+ubd1=$disk} \
    con0=null,fd:1 con=null ssl=null quiet noreboot panic=1 \
    umid="uml-run-$$" uml_dir="$work/umldir" init="$work/init" \
    </dev/null >"$work/console.log" 2>&1 &
uml_pid=$!

# alive: the UML kernel process exists and is not a zombie waiting to be reaped.
alive() {
    local _pid _comm st
    read -r _pid _comm st _ 2>/dev/null <"/proc/$uml_pid/stat" || return 1
    [ "$st" != Z ]
}
deadline=$((SECONDS + timeout_s))
timed_out=0
while alive && [ ! -s "$work/results/status" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        timed_out=1
        break
    fi
    sleep 0.05
done
# The status file is written last; give UML a moment to power off before cleanup kills it.
for _ in $(seq 1 40); do
    alive || break
    sleep 0.05
done
t1=$(date +%s.%N)

console_tail() {
    echo "$prog: last lines of the UML console:" >&2
    tail -n 25 "$work/console.log" | sed 's/^/    console| /' >&2
}

[ -f "$work/results/output" ] && cat "$work/results/output"
if [ -n "${UML_RUN_KEEP:-}" ] && [ -d "$work/results/keep" ]; then
    mkdir -p "$UML_RUN_KEEP" && cp -a "$work/results/keep/." "$UML_RUN_KEEP/"
fi
if [ -f "$work/results/t_script" ] && [ -f "$work/results/t_init" ]; then
    awk -v p="$prog" -v a="$t0" -v i="$(cat "$work/results/t_init")" \
        -v s="$(cat "$work/results/t_script")" -v b="$t1" 'BEGIN {
        printf "%s: boot %.2f s (kernel to init %.2f s, mounts and modules %.2f s), total %.2f s\n",
               p, s - a, i - a, s - i, b - a }' >&2
fi

if [ "$timed_out" = 1 ]; then
    echo "$prog: timed out after ${timeout_s}s running $script inside UML" >&2
    console_tail
    exit 124
fi
if [ ! -s "$work/results/status" ]; then
    if [ -f "$work/results/t_script" ]; then
        echo "$prog: UML stopped while running $script (kernel crash or out of memory?)" >&2
    else
        echo "$prog: UML failed to boot or to start $script" >&2
    fi
    console_tail
    exit 125
fi
st=$(cat "$work/results/status")
[[ $st =~ ^[0-9]+$ ]] || die 125 "bad status '$st' from UML"
if [ "$st" = 125 ] && [ ! -f "$work/results/t_script" ]; then
    console_tail
fi
exit "$st"
