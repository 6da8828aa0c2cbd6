#!/bin/bash
# test-nnve-powercut.sh: with sync = full, what nnve-daemon acknowledged survives a power cut
# of its machine, not only the death of its process.
#
# A kill -9 leaves the kernel's page cache behind, so it cannot tell a commit that reached the
# disk from one the kernel only held: this test cuts the power instead.  The daemon runs in
# User-Mode Linux with its state directory on an ext4 file system of its own block device
# (a file of the host, tests/uml/uml-run.sh --disk).  A hypervisor activates TSIS TSIs, one
# request at a time; once CUT_AFTER of them are acknowledged, the guest records the answers
# and its kernel stops at once (uml-run's power-cut: no sync, no unmount, so the guest's
# cached writes are lost and the disk keeps what had reached it).  A second boot of the same
# disk (ext4 replays its journal) starts the daemon again: every TSI acknowledged before the
# cut must be there, activated, and the database must pass SQLite's integrity check.
# PC_SYNC=normal runs it with sync = normal, to see that the test can fail: every TSI
# acknowledged before the cut is then missing (all 274 of 274 when this was written).
#
# The UML guest runs plain or UBSan-only builds (tests/uml/racks-host.bash); the test fails
# when UML cannot run (it never skips).
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=${SPLITNVE_SRC:-$(cd "$here/../.." && pwd)}
TSIS=2000
CUT_AFTER=150
U=5e100000-0000-4000-8000-0000000000aa
tsi() { printf '%s/52:54:00:00:%02x:%02x' "$U" $(($1 / 256)) $(($1 % 256)); }

# ---------------------------------------------------------------------------- inside UML ---
if [ "${1:-}" = "--inside" ]; then
    : "${PC_BIN:?}" "${PC_T:?}"
    die() { echo "FAIL: $*"; [ -f /tmp/d.log ] && tail -n 20 /tmp/d.log; exit 1; }
    mkdir -p /tmp/s && mount /dev/ubdb /tmp/s || die "cannot mount the state disk"
    "$PC_BIN/nnve-daemon" -c "$PC_T/n.conf" 2>/tmp/d.log &
    dpid=$!
    port=
    for _ in $(seq 200); do
        port=$(sed -n 's/.*daemon: started .* port=\([0-9]*\) .*/\1/p' /tmp/d.log | head -1)
        [ -n "$port" ] && break
        kill -0 "$dpid" 2>/dev/null || die "the daemon exited at start"
        sleep 0.05
    done
    [ -n "$port" ] || die "the daemon did not start"
    if [ "$2" = cut ]; then
        {
            echo "hello node=hv1 epoch=1"
            echo "connect vn=5000"
            for i in $(seq "$TSIS"); do echo "activate tsi=$(tsi "$i") vn=5000"; done
            echo "quit"
        } >/tmp/hv1.script
        "$PC_BIN/../tests/tools/sncp-client" --connect "127.0.0.1:$port" \
            --cert "$PC_T/pki/hv1.crt" --key "$PC_T/pki/hv1.key" --ca "$PC_T/pki/ca.crt" \
            --expect-peer nnve --timeout 20000 </tmp/hv1.script >/tmp/acks 2>/tmp/client.log &
        for _ in $(seq 600); do
            [ "$(grep -c '"request":"TSI_ACTIVATE".*"status":"success"' /tmp/acks)" -ge "$CUT_AFTER" ] &&
                break
            sleep 0.05
        done
        # the answers so far, then the power cut at once (the daemon is still answering)
        grep '"type":"RESPONSE"' /tmp/acks | sed 's/^/ACK /'
        /run/uml/power-cut 0
        die "still running after the power cut"
    fi
    # check: the daemon reloaded the state from the disk
    echo "TSIS $("$PC_BIN/nnvectl" -s /tmp/ctl --json show tsis | jq -c .)"
    kill -TERM "$dpid"
    wait "$dpid" || die "the daemon exited with status $? after SIGTERM"
    echo "INTEGRITY $(sqlite3 /tmp/s/state/nnve-daemon.db 'PRAGMA integrity_check;')"
    umount /tmp/s
    exit 0
fi

# ------------------------------------------------------------------------------ the host ---
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok - $*"; }
: "${SPLITNVE_BUILD:?set SPLITNVE_BUILD}"
for c in jq sqlite3 mkfs.ext4; do
    command -v "$c" >/dev/null || fail "$c is not installed (scripts/install-deps.sh)"
done
# shellcheck source=tests/uml/racks-host.bash
source "$src/tests/uml/racks-host.bash"
bin=$(racks_host_bins "$SPLITNVE_BUILD" "$src") || fail "$bin"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$src/scripts/gen-pki.sh" "$T/pki" nnve hv1 >/dev/null || fail "gen-pki"
truncate -s 64M "$T/disk.img" && mkfs.ext4 -q -F "$T/disk.img" || fail "mkfs.ext4"
cat >"$T/n.conf" <<EOF
[global]
listen = 127.0.0.1:0
cert = $T/pki/nnve.crt
key = $T/pki/nnve.key
ca = $T/pki/ca.crt
state_dir = /tmp/s/state
control_socket = /tmp/ctl
dataplane_journal = /tmp/journal
sync = ${PC_SYNC:-full}
[domain rack1]
ports = swp1
tags = 100-199
[hypervisor hv1]
port = swp1
vns = 5000
EOF
uml() { # PHASE
    "$src/tests/uml/uml-run.sh" --mem 256M --timeout 120 --share "$T" --disk "$T/disk.img" \
        --env "PC_BIN=$bin" --env "PC_T=$T" "$here/test-nnve-powercut.sh" --inside "$1"
}
uml cut >"$T/cut.out" 2>"$T/cut.err" || { cat "$T/cut.out" "$T/cut.err"; fail "the first boot failed"; }
acked=$(sed -n 's/^ACK //p' "$T/cut.out" |
    jq -r 'select(.request == "TSI_ACTIVATE" and .status == "success") | .xid' | sort -n)
n_acked=$(grep -c . <<<"$acked")
[ "$n_acked" -ge "$CUT_AFTER" ] || { cat "$T/cut.out"; fail "only $n_acked TSIs acknowledged before the cut"; }
ok "power cut after $n_acked acknowledged activations (of $TSIS sent one at a time)"

uml check >"$T/check.out" 2>"$T/check.err" || { cat "$T/check.out" "$T/check.err"; fail "the second boot failed"; }
grep -q '^INTEGRITY ok$' "$T/check.out" || { cat "$T/check.out"; fail "integrity check of the database"; }
stored=$(sed -n 's/^TSIS //p' "$T/check.out" | jq -r '.[] | select(.state == "activated") | .tsi')
missing=0 first=
for x in $acked; do
    t=$(tsi $((x - 2))) # xid 1 is the HELLO, 2 the VN_CONNECT
    if ! grep -qxF "$t" <<<"$stored"; then
        missing=$((missing + 1))
        [ -n "$first" ] || first=$t
    fi
done
[ "$missing" = 0 ] || fail "$missing of $n_acked acknowledged TSIs lost in the power cut (first: $first)"
ok "after the power cut: all $n_acked acknowledged TSIs activated ($(grep -c . <<<"$stored") stored), database intact"
