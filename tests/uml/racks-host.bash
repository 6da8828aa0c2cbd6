# racks-host.bash: host-side helpers for the two-rack topology (sourced, not run).

# racks_host_bins BUILD SRC: prints the directory of daemons and ctl tools that can run
# inside UML (its ../tests/tools holds the test tools they need).  A plain or UBSan build is
# used as it is; for an ASan build (whose programs cannot map their shadow memory in UML) a
# UBSan-only build of the same sources is made in BUILD-ubsan (incremental; build/asan ->
# build/asan-ubsan).  Returns 1 with the reason on stdout when there is none.
racks_host_bins() {
    local build=$1 src=$2 b
    for b in bin/nnve-daemon bin/nnvectl bin/tnve-agent bin/tnvectl tests/tools/virt-managedsave; do
        [ -x "$build/$b" ] || { echo "FAIL: $build/$b not built"; return 1; }
    done
    if ! grep -q -a __asan_init "$build/bin/nnve-daemon"; then
        echo "$build/bin"
        return 0
    fi
    local ub
    ub=$(cd "$build" && pwd -P)-ubsan
    echo "note: $build is an ASan build, which cannot run inside UML; using $ub (UBSan only)" >&2
    if ! make -C "$src" -j2 BUILD="$ub" SAN=ubsan bins "$ub/tests/tools/virt-managedsave" >"$build/ubsan-bins.log" 2>&1; then
        echo "FAIL: cannot build the UBSan daemons (log: $build/ubsan-bins.log)"
        return 1
    fi
    echo "$ub/bin"
}
