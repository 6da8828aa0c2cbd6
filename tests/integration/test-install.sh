#!/bin/bash
# test-install.sh: `make install` into a temporary DESTDIR, then checks the tree: programs,
# libraries and their links, headers that compile, a usable pkg-config file (a program is
# built and run against the installed library), man pages, sample configs (never
# overwritten on reinstall), systemd units with paths filled in (verified by systemd-analyze
# when it is available), and the libvirt hook.
set -u

: "${SPLITNVE_BUILD:?}" "${SPLITNVE_SRC:?}"
src=$SPLITNVE_SRC
build=$SPLITNVE_BUILD
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest
prefix=/usr
root=$dest$prefix
version=$(cat "$src/VERSION" 2>/dev/null || echo 0.0.0)

failures=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}
ok() { echo "ok: $*"; }

# A sanitizer build must be completed with the same flags (make install depends on `all`).
san=0
if nm -A "$build/lib/libsplitnve.a" 2>/dev/null | grep -q __asan_; then
    san=1
fi

run_install() {
    make -C "$src" --no-print-directory install BUILD="$build" SAN=$san DESTDIR="$dest" \
        PREFIX="$prefix" >"$tmp/install.log" 2>&1
}

if ! run_install; then
    cat "$tmp/install.log"
    echo "FAIL: make install"
    exit 1
fi
cat "$tmp/install.log"
# Whatever `make install` had to bring up to date must land in $build, nowhere else.
outside=$(grep -Eo ' -o [^ ]+' "$tmp/install.log" | awk '{print $2}' | grep -v "^$build/" || true)
if [ -n "$outside" ]; then
    fail "make install wrote outside $build: $outside"
else
    ok "make install used $build"
fi

# Programs: the daemons in sbin, the ctl tools in bin.
for prog in "$build"/bin/*; do
    [ -f "$prog" ] || continue
    name=$(basename "$prog")
    case $name in
    nnve-daemon | tnve-agent) want=$root/sbin/$name ;;
    *) want=$root/bin/$name ;;
    esac
    if [ -x "$want" ] && [ -f "$want" ] && cmp -s "$prog" "$want"; then
        ok "program $want"
    else
        fail "program $name not installed as $want"
    fi
done

# Libraries.
[ -f "$root/lib/libsplitnve.a" ] && ok "static library" || fail "libsplitnve.a missing"
so=$root/lib/libsplitnve.so.$version
if [ -f "$so" ] && [ ! -L "$so" ]; then
    ok "shared library $so"
    if command -v readelf >/dev/null; then
        soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
        [ "$soname" = libsplitnve.so.1 ] && ok "soname $soname" || fail "soname is '$soname'"
    fi
else
    fail "shared library $so missing or not a regular file"
fi
for link in libsplitnve.so.1 libsplitnve.so; do
    if [ -L "$root/lib/$link" ] && [ "$(readlink -f "$root/lib/$link")" = "$(readlink -f "$so")" ]; then
        ok "link $link -> $(readlink "$root/lib/$link")"
    else
        fail "link $root/lib/$link missing or not resolving to $so"
    fi
done

# Headers: the public set, no provider headers, and they compile together.
inc=$root/include/splitnve
for h in "$src"/lib/sncp-*.h "$src"/lib/snv-*.h "$src"/lib/splitnve.h; do
    [ -f "$h" ] || continue
    name=$(basename "$h")
    case $name in
    *-provider.h)
        [ -e "$inc/$name" ] && fail "internal header $name installed" || ok "internal $name not installed" ;;
    *)
        cmp -s "$h" "$inc/$name" && ok "header $name" || fail "header $name not installed" ;;
    esac
done
{
    for h in "$inc"/*.h; do
        [ -f "$h" ] && echo "#include <$(basename "$h")>"
    done
    echo "int main(void) { return 0; }"
} >"$tmp/all-headers.c"
# shellcheck disable=SC2046
if cc -std=gnu11 -Wall -Wextra -Werror -fsyntax-only -I"$inc" \
    $(pkg-config --cflags libuv openssl jansson) "$tmp/all-headers.c" 2>"$tmp/cc.log"; then
    ok "installed headers compile ($(grep -c include "$tmp/all-headers.c") headers)"
else
    cat "$tmp/cc.log"
    fail "installed headers do not compile"
fi

# pkg-config: the installed file points into the tree, and a program links and runs.
pcdir=$root/lib/pkgconfig
if [ -f "$pcdir/splitnve.pc" ]; then
    flags=$(PKG_CONFIG_PATH=$pcdir PKG_CONFIG_SYSROOT_DIR=$dest pkg-config --cflags --libs splitnve 2>&1)
    pcver=$(PKG_CONFIG_PATH=$pcdir pkg-config --modversion splitnve 2>&1)
    if [[ " $flags " == *" -I$inc "* && " $flags " == *" -L$root/lib "* && " $flags " == *" -lsplitnve "* ]] &&
        [ "$pcver" = "$version" ]; then
        ok "pkg-config splitnve: $flags (version $pcver)"
    else
        fail "pkg-config splitnve gave '$flags' version '$pcver'"
    fi
    cat >"$tmp/use.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include <snv-log.h>
int main(void)
{
    enum snv_log_level l;
    if (snv_log_level_parse("warning", &l) != 0 || strcmp(snv_log_level_name(l), "warn") != 0)
        return 1;
    puts("linked");
    return 0;
}
EOF
    ccmd=(cc)
    # shellcheck disable=SC2054
    [ $san = 1 ] && ccmd=(clang -fsanitize=address,undefined)
    # shellcheck disable=SC2086
    if "${ccmd[@]}" -o "$tmp/use" "$tmp/use.c" $flags -Wl,-rpath,"$root/lib" 2>"$tmp/cc.log" &&
        [ "$("$tmp/use")" = linked ]; then
        ok "program built with pkg-config runs against the installed library"
    else
        cat "$tmp/cc.log"
        fail "cannot build and run a program against the installed library"
    fi
else
    fail "splitnve.pc missing"
fi

# Manual pages.
for page in "$src"/doc/man/*.[1-8]; do
    [ -f "$page" ] || continue
    name=$(basename "$page")
    [ -f "$root/share/man/man${name##*.}/$name" ] && ok "man page $name" || fail "man page $name missing"
done

# Sample configs: examples always; /etc only if absent, and never overwritten.
confs=("$src"/etc/*.conf)
for conf in "${confs[@]}"; do
    [ -f "$conf" ] || continue
    name=$(basename "$conf")
    cmp -s "$conf" "$root/share/splitnve/examples/$name" && ok "example $name" || fail "example $name missing"
    cmp -s "$conf" "$dest/etc/splitnve/$name" && ok "config /etc/splitnve/$name" ||
        fail "config /etc/splitnve/$name missing"
    echo "# edited by the operator" >>"$dest/etc/splitnve/$name"
done

# systemd units.
for unit in "$src"/etc/systemd/*.service; do
    [ -f "$unit" ] || continue
    name=$(basename "$unit")
    inst=$root/lib/systemd/system/$name
    if [ ! -f "$inst" ]; then
        fail "unit $name missing"
        continue
    fi
    if grep -q '@[A-Z]*@' "$inst"; then
        fail "unit $name has unsubstituted placeholders: $(grep -o '@[A-Z]*@' "$inst" | sort -u | tr '\n' ' ')"
    elif ! grep -q "^ExecStart=$prefix/sbin/" "$inst"; then
        fail "unit $name: ExecStart does not use $prefix/sbin"
    else
        ok "unit $name ($(grep '^ExecStart=' "$inst"))"
    fi
done
if command -v systemd-analyze >/dev/null; then
    # Verify copies whose ExecStart points into the DESTDIR tree (the programs must exist for
    # verify; a tree without built daemons gets placeholders).  Any note is a failure:
    # verify exits 0 on unknown keys.
    mkdir -p "$tmp/verify"
    nunits=0
    for u in "$root"/lib/systemd/system/*.service; do
        [ -f "$u" ] || continue
        sed -e "s|=$prefix/sbin/|=$root/sbin/|g" -e "s|=$prefix/bin/|=$root/bin/|g" "$u" \
            >"$tmp/verify/$(basename "$u")"
        for exe in $(sed -n 's/^Exec[A-Za-z]*=[-@+!:]*\([^ ]*\).*/\1/p' "$tmp/verify/$(basename "$u")"); do
            case $exe in "$dest"/*) [ -e "$exe" ] || install -D -m 0755 /bin/true "$exe" ;; esac
        done
        nunits=$((nunits + 1))
    done
    if [ "$nunits" -gt 0 ]; then
        systemd-analyze verify --man=no "$tmp"/verify/*.service >"$tmp/verify.log" 2>&1
        rc=$?
        if [ $rc -eq 0 ] && ! grep -q "$tmp/verify" "$tmp/verify.log"; then
            ok "systemd-analyze verify ($nunits units)"
        else
            cat "$tmp/verify.log"
            fail "systemd-analyze verify (exit $rc)"
        fi
    fi
else
    echo "skip: systemd-analyze not available"
fi

# libvirt hook.
for hook in "$src"/etc/libvirt/hooks/qemu.d/*; do
    [ -f "$hook" ] || continue
    name=$(basename "$hook")
    inst=$dest/etc/libvirt/hooks/qemu.d/$name
    if [ -f "$inst" ] && [ -x "$inst" ]; then
        ok "libvirt hook $name"
    else
        fail "libvirt hook $name missing or not executable"
    fi
done

# Nothing outside DESTDIR's expected top-level directories.
extra=$(find "$dest" -mindepth 1 -maxdepth 1 ! -name usr ! -name etc)
[ -z "$extra" ] && ok "nothing outside usr/ and etc/" || fail "unexpected files: $extra"

# A second install keeps the operator's configs (the script alone: the tree is built).
if "$src/scripts/install.sh" "$build" "$dest" "$prefix" "$version" >"$tmp/install.log" 2>&1; then
    for conf in "${confs[@]}"; do
        [ -f "$conf" ] || continue
        name=$(basename "$conf")
        if tail -n 1 "$dest/etc/splitnve/$name" | grep -q '^# edited by the operator$'; then
            ok "reinstall kept /etc/splitnve/$name"
        else
            fail "reinstall overwrote /etc/splitnve/$name"
        fi
    done
else
    cat "$tmp/install.log"
    fail "second install"
fi

if [ "$failures" -ne 0 ]; then
    echo "test-install: $failures failure(s)"
    exit 1
fi
echo "test-install: all checks passed"
