# racks-host.bash: host-side helpers for the two-rack topology (sourced, not run).

# racks_host_bins BUILD SRC: prints the directory of daemons and ctl tools that can run
# inside UML.  A plain or UBSan build is used as it is; for an ASan build (whose programs
# cannot map their shadow memory in UML) a UBSan-only build of the same sources is made in
# BUILD-ubsan (incremental; build/asan -> build/asan-ubsan).  Returns 1 with the reason on stdout when there is none.
racks_host_bins() {
    local build=$1 src=$2 b
    for b in nnve-daemon nnvectl tnve-agent tnvectl; do
        [ -x "$build/bin/$b" ] || { echo "FAIL: $build/bin/$b not built"; return 1; }
    done
    if ! grep -q -a __asan_init "$build/bin/nnve-daemon"; then
        echo "$build/bin"
        return 0
    fi
    local ub
    ub=$(cd "$build" && pwd -P)-ubsan
    echo "note: $build is an ASan build, which cannot run inside UML; using $ub (UBSan only)" >&2
    if ! make -C "$src" -j2 BUILD="$ub" SAN=ubsan bins >"$build/ubsan-bins.log" 2>&1; then
        echo "FAIL: cannot build the UBSan daemons (log: $build/ubsan-bins.log)"
        return 1
    fi
    echo "$ub/bin"
}
