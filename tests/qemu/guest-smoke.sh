#!/bin/bash
# guest-smoke.sh: the real-QEMU tier without splitnve: a private libvirtd (QEMU driver, TCG)
# boots the tiny guest, hot-plugs a second virtio NIC and unplugs it again (the guest answers:
# DEVICE_REMOVED), then destroys it.  Prints the timings.  Tells whether this machine can run
# tests/integration/test-tnve-qemu.sh at all; exit 0 = it can.
#   tests/qemu/guest-smoke.sh [GUEST_CACHE_DIR]   (default: build/qemu-guest in the repo)
set -u
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
guest=${1:-${SPLITNVE_QEMU_GUEST:-$src/build/qemu-guest}}
T=$(mktemp -d /tmp/splitnve-qemu-smoke.XXXXXX)
chmod 0755 "$T" # the QEMU process (user libvirt-qemu) opens the kernel and console here
. "$here/qemu-lib.bash"

cleanup() {
    local rc=$?
    trap '' PIPE
    qemu_cleanup
    if [ $rc -ne 0 ]; then
        echo "--- console"; cat "$T/console.log" 2>/dev/null
        echo "--- events"; cat "$T/events.log" 2>/dev/null
        echo "--- libvirtd.log (tail)"; tail -n 20 "$T/libvirtd.log" 2>/dev/null
    fi
    rm -rf "$T"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { qlog "FAIL: $*"; exit 1; }

why=$(qemu_host_check) || fail "$why"
qemu_lock 150 || fail "another real-QEMU test run holds $QEMU_LOCK"
qemu_sweep_stale
holder=$(qemu_driver_holder) && fail "libvirtd pid $holder holds the QEMU driver already"

t0=$(qemu_now_ms)
mapfile -t files < <("$here/make-guest.sh" "$guest") || fail "make-guest.sh"
[ "${#files[@]}" -eq 2 ] || fail "make-guest.sh printed no kernel/initrd"
cp "${files[0]}" "$T/kernel" && cp "${files[1]}" "$T/initrd.img" || fail "copy guest"
qlog "guest ready in $(($(qemu_now_ms) - t0)) ms"

t0=$(qemu_now_ms)
qemu_start_virtlogd || fail "virtlogd"
qemu_start_libvirtd || fail "libvirtd did not come up"
virsh -q -c "$QEMU_URI" domcapabilities --virttype qemu >/dev/null || fail "QEMU capabilities"
qlog "libvirtd up, QEMU probed in $(($(qemu_now_ms) - t0)) ms"
qemu_record_events

name=splitnve-qt-smoke-$$
qemu_domain_xml "$name" "$(cat /proc/sys/kernel/random/uuid)" "$T/kernel" "$T/initrd.img" \
    "$T/console.log" "" "$(qemu_nic_xml 52:54:00:5e:00:01 "sq$$a")" >"$T/dom.xml"
qemu_define "$T/dom.xml" || fail "define"
t0=$(qemu_now_ms)
virsh -q -c "$QEMU_URI" start "$name" >/dev/null || fail "start"
t1=$(qemu_now_ms)
qemu_poll 60 grep -q GUEST-READY "$T/console.log" || fail "guest did not boot"
qlog "started in $((t1 - t0)) ms, GUEST-READY after $(($(qemu_now_ms) - t0)) ms" \
    "($(grep -o 'GUEST-READY.*' "$T/console.log"))"

qemu_nic_xml 52:54:00:5e:00:02 "sq$$b" >"$T/nic2.xml"
t0=$(qemu_now_ms)
virsh -q -c "$QEMU_URI" attach-device "$name" "$T/nic2.xml" --live >/dev/null || fail "attach"
qemu_poll 30 grep -q 'GUEST-NIC-ADDED eth1 52:54:00:5e:00:02' "$T/console.log" ||
    fail "guest did not see the hot-plugged NIC"
qlog "hot-plug seen by the guest after $(($(qemu_now_ms) - t0)) ms"

t0=$(qemu_now_ms)
virsh -q -c "$QEMU_URI" detach-device "$name" "$T/nic2.xml" --live >/dev/null || fail "detach"
qemu_poll 30 grep -q "device-removed.*'$name'" "$T/events.log" || fail "no DEVICE_REMOVED"
qemu_poll 10 grep -q 'GUEST-NIC-REMOVED eth1' "$T/console.log" || fail "guest kept eth1"
virsh -q -c "$QEMU_URI" domiflist "$name" | grep -q 52:54:00:5e:00:02 && fail "NIC still listed"
qlog "unplug completed (DEVICE_REMOVED) after $(($(qemu_now_ms) - t0)) ms"

t0=$(qemu_now_ms)
virsh -q -c "$QEMU_URI" destroy "$name" >/dev/null || fail "destroy"
qlog "destroyed in $(($(qemu_now_ms) - t0)) ms"
ip link show "sq$$a" >/dev/null 2>&1 && fail "tap sq$$a left behind"
qlog "smoke test passed"
