#!/bin/bash
# make-guest.sh: builds the tiny guest of the real-QEMU test tier and caches it.
#   tests/qemu/make-guest.sh OUTDIR
# OUTDIR/kernel is the kernel of the distribution's current Debian linux-image-*-amd64
# package (fetched with `apt-get download`, unpacked with dpkg-deb; the ELF image taken out
# of the bzImage when it has a PVH entry, see below); OUTDIR/initrd.img is a
# gzip'ed newc initramfs holding busybox-static, the virtio-net modules of that same kernel
# (with their dependencies, in load order) and tests/qemu/guest-init as /init.  The guest
# boots to "GUEST-READY" on its serial console, brings every NIC up (also hot-plugged ones) and
# leaves PCI hot-unplug to the kernel's built-in ACPI/PCIe hot-plug drivers.
# A complete OUTDIR (same kernel version, same init script) is reused as it is; the kernel
# package stays in OUTDIR/dl.  Prints the two paths on success.  Needs root only to install
# busybox-static when it is missing.  Tools: apt-get, dpkg-deb, modinfo (kmod), readelf
# (binutils), xz, gzip, flock.
set -euo pipefail

out=${1:?usage: make-guest.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
exec 8>"$out/.lock"
flock -w 300 8 || { echo "make-guest: $out is locked by another build" >&2; exit 1; }

# The modules virtio-net needs on a PCI machine; their dependencies are added from modinfo.
want_modules="virtio_pci virtio_net"

say() { echo "make-guest: $*" >&2; }
die() { say "$*"; exit 1; }

# kernel_package: the linux-image-<version>-amd64 package linux-image-amd64 depends on.
kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1
}

pkg=$(kernel_package)
if [ -z "$pkg" ]; then
    say "apt lists know no linux-image-amd64; running apt-get update"
    apt-get update -qq >&2 || die "apt-get update failed"
    pkg=$(kernel_package)
fi
[ -n "$pkg" ] || die "no linux-image-*-amd64 package found by apt-cache"
kver=${pkg#linux-image-}

stamp="$kver $(sha256sum "$here/guest-init" | cut -d' ' -f1) $want_modules"
if [ -f "$out/kernel" ] && [ -f "$out/initrd.img" ] && [ -f "$out/stamp" ] &&
    [ "$(cat "$out/stamp")" = "$stamp" ]; then
    echo "$out/kernel"
    echo "$out/initrd.img"
    exit 0
fi

t0=$(date +%s.%N)
# is_static FILE: FILE is an ELF executable without a program interpreter.
is_static() {
    LC_ALL=C readelf -h "$1" >/dev/null 2>&1 &&
        ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'program interpreter'
}
busybox=/bin/busybox
if ! is_static "$busybox"; then
    say "installing busybox-static"
    [ "$(id -u)" = 0 ] || die "busybox-static is missing and this is not root"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        busybox-static >&2 || die "apt-get install busybox-static failed"
fi
is_static "$busybox" || die "$busybox is not a static binary (package busybox-static)"

mkdir -p "$out/dl"
debs=("$out/dl/${pkg}_"*.deb)
deb=${debs[0]}
if [ ! -f "$deb" ]; then
    say "downloading $pkg"
    rm -f "$out/dl/"linux-image-*.deb # an older kernel's package
    (cd "$out/dl" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) ||
        die "apt-get download $pkg failed"
    debs=("$out/dl/${pkg}_"*.deb)
    deb=${debs[0]}
    [ -f "$deb" ] || die "apt-get download left no ${pkg}_*.deb"
fi

work=$(mktemp -d "$out/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
# only the kernel image and the module tree are needed from the package
dpkg-deb --fsys-tarfile "$deb" |
    tar -x -C "$work" --wildcards './boot/vmlinuz-*' './boot/config-*' \
        "./lib/modules/$kver/kernel/*" ||
    die "cannot unpack $deb"
moddir=$work/lib/modules/$kver/kernel
[ -f "$work/boot/vmlinuz-$kver" ] || die "no vmlinuz-$kver in $deb"

# modules_in_order NAME...: NAME's dependencies first (depth first), each once.
declare -A seen=()
order=()
add_module() {
    local name=$1 f dep
    [ -n "${seen[$name]:-}" ] && return 0
    seen[$name]=1
    f=$(find "$moddir" -name "$name.ko" -o -name "$name.ko.xz" | head -n 1)
    [ -n "$f" ] || die "module $name not in $pkg (built in?)"
    for dep in $(modinfo -F depends "$f" | tr ',' ' '); do
        add_module "$dep"
    done
    order+=("$f")
}
config=$(cat "$work/boot/config-$kver")
for m in $want_modules; do
    sym=CONFIG_$(echo "$m" | tr '[:lower:]' '[:upper:]')
    case "$(sed -n "s/^$sym=//p" <<<"$config")" in
    y) ;;
    m) add_module "$m" ;;
    *) die "$pkg has no $sym" ;;
    esac
done
for sym in CONFIG_HOTPLUG_PCI_ACPI CONFIG_HOTPLUG_PCI_PCIE CONFIG_SERIAL_8250_CONSOLE \
    CONFIG_DEVTMPFS CONFIG_RD_GZIP; do
    grep -qx "$sym=y" <<<"$config" || die "$pkg lacks built-in $sym"
done

root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,run,tmp,lib/modules}
cp "$busybox" "$root/bin/busybox"
cp "$here/guest-init" "$root/init"
chmod 0755 "$root/init" "$root/bin/busybox"
: >"$root/lib/modules/load-order"
for f in "${order[@]}"; do
    b=$(basename "$f")
    case "$b" in
    *.xz) xz -dc "$f" >"$root/lib/modules/${b%.xz}"; b=${b%.xz} ;;
    *) cp "$f" "$root/lib/modules/$b" ;;
    esac
    echo "$b" >>"$root/lib/modules/load-order"
done
(cd "$root" && find . | LC_ALL=C sort | "$busybox" cpio -o -H newc 2>/dev/null) |
    gzip -9 >"$work/initrd.img"
# Under TCG, decompressing the xz bzImage takes ~10 s; the ELF vmlinux inside it boots
# directly through its PVH entry point (CONFIG_PVH) and skips that.  Fall back to the bzImage
# when the ELF has no PVH entry note (Xen note type 18, XEN_ELFNOTE_PHYS32_ENTRY).
kernel=$work/boot/vmlinuz-$kver
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$kernel" | head -n 1 | cut -d: -f1 || true)
if [ -n "$off" ]; then
    tail -c +$((off + 1)) "$kernel" | xz -dc >"$work/vmlinux" 2>/dev/null || true
    if LC_ALL=C readelf -n "$work/vmlinux" 2>/dev/null | grep -q 'Xen.*(0x00000012)'; then
        kernel=$work/vmlinux
    fi
fi
cp "$kernel" "$out/kernel.new"
mv "$work/initrd.img" "$out/initrd.img"
mv "$out/kernel.new" "$out/kernel"
echo "$stamp" >"$out/stamp"
t1=$(date +%s.%N)
say "built kernel $kver ($(basename "$kernel")) with modules: $(tr '\n' ' ' <"$root/lib/modules/load-order")in $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s"
echo "$out/kernel"
echo "$out/initrd.img"
