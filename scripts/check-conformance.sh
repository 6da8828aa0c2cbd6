#!/bin/bash
# check-conformance.sh: checks proto/CONFORMANCE.md against the tree.
#
#   scripts/check-conformance.sh [SRCDIR]
#
# For every row of the matrix (a table row whose first cell is an ID such as R-1, L-2a,
# F6-10): each "§N" or "§N.M" of the PROTOCOL.md column must be a heading of
# proto/PROTOCOL.md (a range "§A..§B" checks both ends); each `file:function` or `file` of the
# Code column must exist (the function defined in the file); each test of the Tests column
# must exist: `tests/unit/F.c:name` is a START_TEST registered with tcase_add_test,
# `tests/integration/F.sh:name` is a script that reports ok "name...", a bare `file` exists.
# Rows with status "pending" name work not merged yet: their missing names are listed but
# fail only with SNCP_CONFORMANCE_STRICT=1 (a pending row whose names all exist is reported
# so that it can become "ok").  Any other status fails on any missing name.
# Exit status: 0 all good, 1 a check failed, 2 usage.
set -u
src=${1:-$(cd "$(dirname "$0")/.." && pwd)}
matrix=$src/proto/CONFORMANCE.md
spec=$src/proto/PROTOCOL.md
strict=${SNCP_CONFORMANCE_STRICT:-0}
[ -r "$matrix" ] && [ -r "$spec" ] || { echo "check-conformance: no $matrix or $spec" >&2; exit 2; }

failures=0 rows=0 pending=0

# missing_code REF: prints why REF (file or file:function) does not exist, or nothing.
missing_code() {
    local file=${1%%:*} fn=
    [[ $1 == *:* ]] && fn=${1#*:}
    [ -f "$src/$file" ] || { echo "no file $file"; return; }
    [ -z "$fn" ] && return
    grep -Eq "(^|[^A-Za-z0-9_])$fn\(" "$src/$file" || echo "no function $fn in $file"
}

# missing_test REF: prints why the test REF does not exist, or nothing.
missing_test() {
    local file=${1%%:*} name=
    [[ $1 == *:* ]] && name=${1#*:}
    [ -f "$src/$file" ] || { echo "no test file $file"; return; }
    [ -z "$name" ] && return
    case $file in
    *.c)
        grep -Eq "^START_TEST\($name\)" "$src/$file" || { echo "no START_TEST($name) in $file"; return; }
        grep -Eq "tcase_add_(loop_)?test[a-z_]*\([^,]*, *$name[,)]" "$src/$file" ||
            echo "$name is not registered with tcase_add_test in $file"
        ;;
    *.sh)
        grep -Fq "ok \"$name" "$src/$file" || echo "no test \"$name\" (ok line) in $file" ;;
    *) echo "$file: tests are .c or .sh files" ;;
    esac
}

# missing_section TOKEN: TOKEN is like §6.5 or §6.5..§6.8; prints what heading is missing.
missing_section() {
    local t n
    for t in ${1//../ }; do
        n=${t#§}
        [ -n "$n" ] || continue
        grep -Eq "^#{2,3} ${n//./\\.}[. ]" "$spec" || echo "no section §$n in PROTOCOL.md"
    done
}

while IFS= read -r line; do
    [[ $line == \|* ]] || continue
    IFS='|' read -r _ id item sect code tests status _ <<<"$line"
    id=$(echo "$id" | xargs)
    [[ $id =~ ^[A-Z][A-Z0-9]*-[0-9]+[a-z]?$ ]] || continue
    status=$(echo "$status" | xargs)
    rows=$((rows + 1))
    case $status in
    ok | pending | "not supported" | "not adopted") ;;
    *) echo "FAIL $id: unknown status \"$status\""; failures=$((failures + 1)); continue ;;
    esac
    problems=()
    while IFS= read -r s; do
        [ -n "$s" ] || continue
        while IFS= read -r p; do [ -n "$p" ] && problems+=("$p"); done < <(missing_section "$s")
    done < <(grep -oE '§[0-9]+(\.[0-9]+)?(\.\.§[0-9]+(\.[0-9]+)?)?' <<<"$sect")
    while IFS= read -r r; do
        [ -n "$r" ] || continue
        p=$(missing_code "${r//\`/}"); [ -n "$p" ] && problems+=("$p")
    done < <(grep -oE '`[^`]+`' <<<"$code")
    while IFS= read -r r; do
        [ -n "$r" ] || continue
        p=$(missing_test "${r//\`/}"); [ -n "$p" ] && problems+=("$p")
    done < <(grep -oE '`[^`]+`' <<<"$tests")
    if [ "$status" = ok ] && ! grep -q '`' <<<"$tests"; then
        problems+=("status ok but no test named")
    fi
    if [ "$status" = pending ]; then
        pending=$((pending + 1))
        if [ ${#problems[@]} = 0 ]; then
            echo "note $id: pending, but everything it names exists: mark it ok"
        elif [ "$strict" = 1 ]; then
            for p in "${problems[@]}"; do echo "FAIL $id (pending, strict): $p"; done
            failures=$((failures + 1))
        else
            for p in "${problems[@]}"; do echo "pending $id: $p"; done
        fi
        continue
    fi
    if [ ${#problems[@]} -gt 0 ]; then
        for p in "${problems[@]}"; do echo "FAIL $id: $p"; done
        failures=$((failures + 1))
    fi
done <"$matrix"

[ "$rows" -gt 0 ] || { echo "check-conformance: no rows in $matrix" >&2; exit 1; }
echo "check-conformance: $rows rows, $pending pending, $failures failing (strict=$strict)"
[ "$failures" = 0 ]
