#!/bin/bash
# Adversarial durability: the switch's disk fills up, or its dataplane refuses a change, while
# hypervisors keep sending requests.  Each attack, then what must hold:
#  1. The state directory (a 2 MiB tmpfs) is filled to 100 %; hv1 keeps activating TSIs:
#     requests fail with INTERNAL_ERROR, the daemon enters degraded mode (counter, error
#     line), and from then on nothing is acknowledged, not even the retry of a failed request
#     or another hypervisor's valid one.  Memory holds exactly the acknowledged changes.
#  2. Space comes back: the daemon leaves degraded mode by itself (info line), the retry is
#     acknowledged; kill -9 and restart: every acknowledged TSI is there, nothing else is.
#  3. The dataplane (the none backend's journal on a full tmpfs) refuses an operation: that
#     request is INTERNAL_ERROR and leaves no trace in nnvectl, the store or the journal;
#     hv2's TSIs are untouched; the retry is refused until the dataplane works again.
#  4. The disk fills again and the daemon is stopped while degraded: it exits cleanly, and
#     the restarted daemon has exactly the acknowledged TSIs.
# Needs root (tmpfs mounts, in a mount namespace of its own that vanishes with the test).
if [ -z "${NNVE_DURABLE_NS:-}" ]; then
    exec unshare -m --propagation private env NNVE_DURABLE_NS=1 bash "$0" "$@"
fi
source "$(dirname "$0")/nnve-lib.bash"

durable_cleanup() {
    local rc=$?
    set +e # (exit $rc) below must not end the script before cleanup runs
    if [ -n "$DPID" ]; then kill -9 "$DPID" 2>/dev/null || true; wait "$DPID" 2>/dev/null || true; fi
    DPID=
    release_reader
    umount -l "$T/state" 2>/dev/null || true
    umount -l "$T/jfs" 2>/dev/null || true
    (exit $rc)
    cleanup
}
trap durable_cleanup EXIT
# release_reader: ends the snapshot reader of part 1 (closing its input ends sqlite3).
release_reader() {
    [ -n "${RPID:-}" ] || return 0
    exec 7>&-
    wait "$RPID" 2>/dev/null || true
    RPID=
}

# fill DIR: writes until the file system is full (bounded: a small tmpfs).
fill() {
    dd if=/dev/zero of="$1/fill" bs=64k count=100 2>/dev/null || true
    local i
    for i in $(seq 64); do
        head -c 512 /dev/zero >>"$1/fill" 2>/dev/null || break
    done
    [ "$(df --output=avail "$1" | tail -1)" -eq 0 ] || fail "$1 not full: $(df "$1")"
}
statuses() { jq -r 'select(.type=="RESPONSE" and .request!="HELLO") | .status' <<<"$1"; }
counter() { ctl show counters | jq -r --arg k "$1" '.[$k]'; }
tsi_set() { ctl show tsis | jq -r '.[] | .hypervisor + " " + .tsi + " " + .state' | sort; }
tsi2() { printf '%s/52:54:00:00:01:%02x' "$U" "$1"; }
# TSIs of the floods: more requests (one commit each, a page or more) than the 2 MiB file
# system has pages, so one of them must need space the database files do not own yet.
FLOOD=600
tsin() { printf '%s/52:54:00:00:%02x:%02x' "$U" $(($1 / 256 + 2)) $(($1 % 256)); }

mkdir -p "$T/state" "$T/jfs"
mount -t tmpfs -o size=2m tmpfs "$T/state"
write_conf
start_daemon

# Acknowledged changes, one line each ("hv TSI state"), as the agents saw them.
: >"$T/acked"
out=$(client hv1 <<EOF
hello node=hv1 epoch=1
connect vn=5000
activate tsi=$(tsi 01) vn=5000 addr=192.0.2.1
activate tsi=$(tsi 02) vn=5000 addr=192.0.2.2
EOF
)
[ "$(statuses "$out" | sort -u)" = success ] || fail "setup: $out"
out=$(client hv2 <<EOF
hello node=hv2 epoch=1
activate tsi=$(tsi 03) vn=5001 addr=192.0.2.3 flags=implicit
EOF
)
[ "$(statuses "$out" | sort -u)" = success ] || fail "setup hv2: $out"
printf 'hv1 %s activated\nhv1 %s activated\nhv2 %s activated\n' "$(tsi 01)" "$(tsi 02)" \
    "$(tsi 03)" >>"$T/acked"
hv2_before=$(ctl show tsis | jq -c 'map(select(.hypervisor=="hv2"))')

# ---- 1. the state directory fills up -------------------------------------------------
# A reader holds a snapshot of the store through part 1, so SQLite cannot restart its log
# at the start of the file after a checkpoint: every commit needs new blocks, as on a disk
# that is really full.  (Without it, the commit that leaves degraded mode may fit in blocks
# the log already owns, and then the retry below is rightly acknowledged.)
RPID=
mkfifo "$T/reader.in"
sqlite3 "file:$T/state/nnve-daemon.db?mode=ro" <"$T/reader.in" >"$T/reader.out" 2>&1 &
RPID=$!
exec 7>"$T/reader.in"
echo "BEGIN; SELECT 'snapshot', count(*) FROM tsi;" >&7
wait_for "a reader holding a snapshot" 10 grep -q '^snapshot|3$' "$T/reader.out"
fill "$T/state"
{
    echo "hello node=hv1 epoch=2"
    for i in $(seq 0 $((FLOOD - 1))); do echo "activate tsi=$(tsin "$i") vn=5000"; done
} | client hv1 --timeout 60000 >"$T/full.out" || true
mapfile -t st < <(statuses "$(cat "$T/full.out")")
[ "${#st[@]}" -eq "$FLOOD" ] || fail "expected $FLOOD answers, got ${#st[@]}"
first_fail=
for i in "${!st[@]}"; do
    case "${st[$i]}" in
    success)
        [ -z "$first_fail" ] || fail "TSI $i acknowledged after a failure, disk still full"
        echo "hv1 $(tsin "$i") activated" >>"$T/acked"
        ;;
    internal-error) [ -n "$first_fail" ] || first_fail=$i ;;
    *) fail "TSI $i: unexpected status ${st[$i]}" ;;
    esac
done
[ -n "$first_fail" ] || fail "no request failed on a full disk"
echo "first failure at request $first_fail (those before it fit in space the files owned)"
[ "$(counter degraded)" = 1 ] || fail "degraded counter not set"
[ "$(counter degraded_entered_total)" -ge 1 ] || fail "degraded_entered_total"
grep -q 'err state: entering degraded mode' "$T/daemon.log" || fail "no error line entering degraded mode"
ok "full disk: requests fail with INTERNAL_ERROR from request $first_fail on, degraded mode entered"

# The retry, and another hypervisor's valid request, are refused while the disk is full.
sleep 1.5 # at least one attempt to leave degraded mode has run (and failed)
out=$(client hv1 <<EOF
hello node=hv1 epoch=3
activate tsi=$(tsin "$first_fail") vn=5000
EOF
)
[ "$(statuses "$out")" = internal-error ] || fail "retry acknowledged on a full disk: $out"
out=$(client hv2 <<EOF
hello node=hv2 epoch=2
deassociate tsi=$(tsi 03)
EOF
)
[ "$(statuses "$out")" = internal-error ] || fail "hv2's request acknowledged on a full disk: $out"
[ "$(counter degraded)" = 1 ] || fail "left degraded mode with a full disk"
# Memory holds exactly what was acknowledged (the failed group was undone).
[ "$(tsi_set)" = "$(sort "$T/acked")" ] || fail "state differs from the acknowledged list: $(tsi_set)"
ok "full disk: retries refused, memory = acknowledged changes"

# ---- 2. space comes back; then kill -9 --------------------------------------------------
release_reader
rm -f "$T/state/fill"
wait_for "leaving degraded mode" 20 grep -q 'info state: leaving degraded mode' "$T/daemon.log"
[ "$(counter degraded)" = 0 ] || fail "still degraded"
out=$(client hv1 <<EOF
hello node=hv1 epoch=4
activate tsi=$(tsin "$first_fail") vn=5000
EOF
)
[ "$(statuses "$out")" = success ] || fail "retry after the disk freed: $out"
echo "hv1 $(tsin "$first_fail") activated" >>"$T/acked"
before_kill=$(tsi_set)
[ "$before_kill" = "$(sort "$T/acked")" ] || fail "state before kill -9 differs from the acknowledged list"
kill -9 "$DPID"
wait "$DPID" 2>/dev/null || true
DPID=
start_daemon
[ "$(tsi_set)" = "$before_kill" ] ||
    fail "after kill -9: $(tsi_set) != acknowledged $(sort "$T/acked" | tr '\n' ' ')"
[ "$(ctl show tsis | jq -c 'map(select(.hypervisor=="hv2"))')" = "$hv2_before" ] || fail "hv2 changed"
ok "after freeing space and kill -9: every acknowledged TSI there, nothing else ($(wc -l <"$T/acked") TSIs)"

# ---- 3. the dataplane refuses an operation ----------------------------------------------
stop_daemon
mount -t tmpfs -o size=256k tmpfs "$T/jfs"
cp "$T/journal" "$T/jfs/journal"
sed -i "s|^dataplane_journal = .*|dataplane_journal = $T/jfs/journal|" "$T/n.conf"
start_daemon
fill "$T/jfs"
{
    echo "hello node=hv1 epoch=5"
    for k in $(seq 0 99); do echo "activate tsi=$(tsi2 "$k") vn=5000 addr=198.51.100.$((k + 1))"; done
} | client hv1 --timeout 20000 >"$T/be.out" || true
mapfile -t st < <(statuses "$(cat "$T/be.out")")
bad=
bad_k=
for k in "${!st[@]}"; do
    case "${st[$k]}" in
    success) echo "hv1 $(tsi2 "$k") activated" >>"$T/acked" ;;
    internal-error)
        bad=$(tsi2 "$k")
        bad_k=$k
        break
        ;;
    *) fail "unexpected status ${st[$k]}" ;;
    esac
done
[ -n "$bad" ] || fail "no dataplane failure with the journal's file system full"
echo "dataplane failure at $bad"
ctl show tsis | jq -e --arg t "$bad" 'map(select(.tsi==$t)) | length == 0' >/dev/null ||
    fail "failed TSI in nnvectl"
if grep -q "tsi=$bad" "$T/jfs/journal"; then fail "failed TSI in the journal"; fi
n=$(sqlite3 "file:$T/state/nnve-daemon.db?mode=ro" \
    "SELECT count(*) FROM tsi WHERE hex(tsi) = '$(echo "$U" | tr -d - | tr a-f A-F)52540000$(printf '01%02X' "$bad_k")'")
[ "$n" = 0 ] || fail "failed TSI in the store"
n=$(sqlite3 "file:$T/state/nnve-daemon.db?mode=ro" "SELECT count(*) FROM tsi")
[ "$n" = "$(wc -l <"$T/acked")" ] || fail "store holds $n TSIs, $(wc -l <"$T/acked") acknowledged"
[ "$(counter state_reverts_total)" -ge 1 ] || fail "no revert counted"
[ "$(counter degraded)" = 0 ] || fail "a dataplane failure with a working store left the daemon degraded"
[ "$(ctl show tsis | jq -c 'map(select(.hypervisor=="hv2"))')" = "$hv2_before" ] || fail "hv2 changed"
[ "$(tsi_set)" = "$(sort "$T/acked")" ] || fail "state differs from the acknowledged list"
out=$(client hv1 <<EOF
hello node=hv1 epoch=6
activate tsi=$bad vn=5000
EOF
)
[ "$(statuses "$out")" = internal-error ] || fail "retry acknowledged while the dataplane fails: $out"
rm -f "$T/jfs/fill"
out=$(client hv1 <<EOF
hello node=hv1 epoch=7
activate tsi=$bad vn=5000
EOF
)
[ "$(statuses "$out")" = success ] || fail "retry once the dataplane works: $out"
echo "hv1 $bad activated" >>"$T/acked"
grep -q "activate-tsi .*tsi=$bad" "$T/jfs/journal" || fail "retried TSI not in the journal"
ok "dataplane failure: failed TSI nowhere (nnvectl, store, journal), retry refused, then accepted"

# ---- 4. shut down while degraded --------------------------------------------------------
fill "$T/state"
# Writes that fit in space the database files already own (the WAL restarts at its start
# after a checkpoint) are stored and acknowledged; the first that needs more fails.
{
    echo "hello node=hv2 epoch=3"
    for i in $(seq $FLOOD $((2 * FLOOD - 1))); do echo "activate tsi=$(tsin "$i") vn=5001"; done
} | client hv2 --timeout 60000 >"$T/full2.out" || true
mapfile -t st < <(statuses "$(cat "$T/full2.out")")
failed=
for k in "${!st[@]}"; do
    case "${st[$k]}" in
    success)
        [ -z "$failed" ] || fail "acknowledged after a failure on a full disk"
        echo "hv2 $(tsin $((FLOOD + k))) activated" >>"$T/acked"
        ;;
    internal-error) failed=1 ;;
    *) fail "unexpected status ${st[$k]}" ;;
    esac
done
[ -n "$failed" ] || fail "no request failed on a full disk"
echo "full disk again: $(grep -c success <<<"$(statuses "$(cat "$T/full2.out")")") stored in owned space before a failure"
[ "$(counter degraded)" = 1 ] || fail "not degraded"
stop_daemon # exit status 0: with the sanitizers, nothing leaked on the failure paths
rm -f "$T/state/fill"
start_daemon
[ "$(tsi_set)" = "$(sort "$T/acked")" ] ||
    fail "after a degraded shutdown: $(diff <(tsi_set) <(sort "$T/acked"))"
ok "shutdown while degraded: clean exit, restart has exactly the acknowledged TSIs"

stop_daemon
ok "clean shutdown"
