# racks-host.bash: host-side helpers for the two-rack topology (sourced, not run).

# racks_host_bins BUILD SRC: prints the directory of daemons and ctl tools that can run
# inside UML (its ../tests/tools holds the test tools they need: virt-managedsave and
# sncp-client).  A plain or UBSan build is used as it is; for an ASan build (whose programs
# cannot map their shadow memory in UML) a UBSan-only build of the same sources is made in
# BUILD-ubsan (incremental; build/asan -> build/asan-ubsan).  Returns 1 with the reason on
# stdout when there is none.
racks_host_bins() {
    local build=$1 src=$2 b
    for b in bin/nnve-daemon bin/nnvectl bin/tnve-agent bin/tnvectl tests/tools/virt-managedsave \
        tests/tools/sncp-client; do
        [ -x "$build/$b" ] || { echo "FAIL: $build/$b not built"; return 1; }
    done
    if ! grep -q -a __asan_init "$build/bin/nnve-daemon"; then
        echo "$build/bin"
        return 0
    fi
    local ub
    ub=$(cd "$build" && pwd -P)-ubsan
    echo "note: $build is an ASan build, which cannot run inside UML; using $ub (UBSan only)" >&2
    if ! make -C "$src" -j2 BUILD="$ub" SAN=ubsan bins "$ub/tests/tools/virt-managedsave" \
        "$ub/tests/tools/sncp-client" >"$build/ubsan-bins.log" 2>&1; then
        echo "FAIL: cannot build the UBSan daemons (log: $build/ubsan-bins.log)"
        return 1
    fi
    echo "$ub/bin"
}

# racks_host_run SRC BUILD NAME SCRIPT MEM TIMEOUT PKI_NAME...: the host side of a UML
# racks test: the daemons that can run in UML (racks_host_bins), a test PKI with the named
# certificates, then `SCRIPT --inside` in UML with RACKS_BIN and RACKS_PKI set.  Prints
# "PASS: NAME" or the reason it failed; returns uml-run's status (1 when it did not run).
racks_host_run() {
    local src=$1 build=$2 name=$3 script=$4 mem=$5 limit=$6 bin tmp st
    shift 6
    command -v jq >/dev/null || { echo "FAIL: jq is not installed (scripts/install-deps.sh)"; return 1; }
    bin=$(racks_host_bins "$build" "$src") || { echo "$bin"; return 1; }
    tmp=$(mktemp -d) || return 1
    if ! "$src/scripts/gen-pki.sh" "$tmp/pki" "$@" >/dev/null; then
        echo "FAIL: gen-pki"
        rm -rf "$tmp"
        return 1
    fi
    "$src/tests/uml/uml-run.sh" --mem "$mem" --timeout "$limit" --share "$tmp" \
        --env "RACKS_BIN=$bin" --env "RACKS_PKI=$tmp/pki" "$script" --inside
    st=$?
    rm -rf "$tmp"
    case $st in
    0) echo "PASS: $name" ;;
    124 | 125) echo "FAIL: User-Mode Linux is unusable here (uml-run exit $st); the test does not skip" ;;
    *) echo "FAIL: $name (exit $st)" ;;
    esac
    return $st
}

# racks_host_need_bonding: exits 77 (skip) with the reason when User-Mode Linux or its bonding
# module (the pair tests' dual-homed hosts) is missing.
racks_host_need_bonding() {
    command -v linux.uml >/dev/null || { echo "SKIP: linux.uml missing (apt-get install user-mode-linux)"; exit 77; }
    [ -f "/usr/lib/uml/modules/$(ls /usr/lib/uml/modules 2>/dev/null | head -n 1)/kernel/drivers/net/bonding/bonding.ko" ] ||
        { echo "SKIP: no bonding.ko in /usr/lib/uml/modules"; exit 77; }
}
