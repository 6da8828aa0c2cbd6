#!/bin/bash
# install.sh: installs a built tree; called by `make install`.
#
#   scripts/install.sh BUILD DESTDIR PREFIX VERSION
#
# Everything goes under DESTDIR (empty for a live install):
#   PREFIX/sbin             nnve-daemon, tnve-agent
#   PREFIX/bin              nnvectl, tnvectl (and any other program in BUILD/bin)
#   PREFIX/lib              libsplitnve.a, libsplitnve.so.VERSION (+ .so.1 and .so links),
#                           pkgconfig/splitnve.pc
#   PREFIX/include/splitnve splitnve.h and the public sncp-*.h / snv-*.h (not *-provider.h)
#   PREFIX/share/man/manN   doc/man/*.N
#   PREFIX/share/splitnve/examples   etc/*.conf, always
#   /etc/splitnve           etc/*.conf, only those not already there (never overwritten)
#   PREFIX/lib/systemd/system        etc/systemd/*.service (@SBINDIR@, @BINDIR@ substituted)
#   /etc/libvirt/hooks/qemu.d        etc/libvirt/hooks/qemu.d/* (mode 0755)
# Pieces missing from the source tree (man pages, configs, units, hook) are skipped.
set -euo pipefail

build=${1:?usage: install.sh BUILD DESTDIR PREFIX VERSION}
destdir=${2-}
prefix=${3:?usage: install.sh BUILD DESTDIR PREFIX VERSION}
version=${4:?usage: install.sh BUILD DESTDIR PREFIX VERSION}
top=$(cd "$(dirname "$0")/.." && pwd)
case $build in /*) ;; *) build=$top/$build ;; esac
case $prefix in /*) ;; *) echo "install.sh: PREFIX must be absolute: $prefix" >&2; exit 2 ;; esac
prefix=${prefix%/}
destdir=${destdir%/}

root=$destdir$prefix
bindir=$prefix/bin
sbindir=$prefix/sbin

put() { # MODE SRC DST
    install -D -m "$1" "$2" "$3"
    echo "installed $3"
}

substitute() { # SRC DST MODE: copy with the install paths filled in
    local tmp
    tmp=$(mktemp)
    sed -e "s|@SBINDIR@|$sbindir|g" -e "s|@BINDIR@|$bindir|g" -e "s|@PREFIX@|$prefix|g" \
        -e "s|@VERSION@|$version|g" "$1" >"$tmp"
    install -D -m "$3" "$tmp" "$2"
    rm -f "$tmp"
    echo "installed $2"
}

[ -f "$build/lib/libsplitnve.a" ] || { echo "install.sh: $build is not built (run make)" >&2; exit 1; }

# Programs.
for prog in "$build"/bin/*; do
    [ -f "$prog" ] && [ -x "$prog" ] || continue
    name=$(basename "$prog")
    case $name in
    nnve-daemon | tnve-agent) put 0755 "$prog" "$root/sbin/$name" ;;
    *) put 0755 "$prog" "$root/bin/$name" ;;
    esac
done

# Libraries: the real file carries the full version, the links the ABI and dev names.
put 0644 "$build/lib/libsplitnve.a" "$root/lib/libsplitnve.a"
if [ -f "$build/lib/libsplitnve.so.1" ]; then
    put 0755 "$build/lib/libsplitnve.so.1" "$root/lib/libsplitnve.so.$version"
    ln -sfn "libsplitnve.so.$version" "$root/lib/libsplitnve.so.1"
    echo "installed $root/lib/libsplitnve.so.1 -> libsplitnve.so.$version"
    ln -sfn libsplitnve.so.1 "$root/lib/libsplitnve.so"
    echo "installed $root/lib/libsplitnve.so -> libsplitnve.so.1"
fi

# Public headers.
for h in "$top"/lib/splitnve.h "$top"/lib/sncp-*.h "$top"/lib/snv-*.h; do
    [ -f "$h" ] || continue
    case $h in *-provider.h) continue ;; esac
    put 0644 "$h" "$root/include/splitnve/$(basename "$h")"
done

# pkg-config.
pc=$(mktemp)
cat >"$pc" <<EOF
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: splitnve
Description: SNCP, the Split-NVE control protocol of RFC 8394: codec, session, TLS, control socket
URL: https://github.com/splitnve/splitnve
Version: $version
Requires.private: libuv openssl jansson
Libs: -L\${libdir} -lsplitnve
Libs.private: -lm -lpthread
Cflags: -I\${includedir}/splitnve
EOF
install -D -m 0644 "$pc" "$root/lib/pkgconfig/splitnve.pc"
rm -f "$pc"
echo "installed $root/lib/pkgconfig/splitnve.pc"

# Manual pages.
for page in "$top"/doc/man/*.[1-8]; do
    [ -f "$page" ] || continue
    section=${page##*.}
    put 0644 "$page" "$root/share/man/man$section/$(basename "$page")"
done

# Sample configurations: always as examples; into /etc only where the operator has none.
for conf in "$top"/etc/*.conf; do
    [ -f "$conf" ] || continue
    name=$(basename "$conf")
    put 0644 "$conf" "$root/share/splitnve/examples/$name"
    if [ -e "$destdir/etc/splitnve/$name" ]; then
        echo "kept     $destdir/etc/splitnve/$name (exists; sample in $root/share/splitnve/examples)"
    else
        put 0644 "$conf" "$destdir/etc/splitnve/$name"
    fi
done

# systemd units.
for unit in "$top"/etc/systemd/*.service; do
    [ -f "$unit" ] || continue
    substitute "$unit" "$root/lib/systemd/system/$(basename "$unit")" 0644
done

# libvirt hook (libvirt runs every executable in qemu.d).
for hook in "$top"/etc/libvirt/hooks/qemu.d/*; do
    [ -f "$hook" ] || continue
    substitute "$hook" "$destdir/etc/libvirt/hooks/qemu.d/$(basename "$hook")" 0755
done

echo "splitnve $version installed: prefix $prefix${destdir:+, destdir $destdir}"
