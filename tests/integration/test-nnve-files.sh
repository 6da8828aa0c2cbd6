#!/bin/bash
# Files nnve-daemon writes in a directory others may write: an attacker plants symlinks at
# the metrics textfile and the pidfile, aimed at a file of theirs the daemon could write.
# The victim files must stay untouched; the metrics file becomes a regular file; a pidfile
# that is a symlink is refused.
source "$(dirname "$0")/nnve-lib.bash"

mkdir -m 1777 "$T/shared"
echo precious-metrics >"$T/victim-metrics"
echo precious-pid >"$T/victim-pid"
ln -s "$T/victim-metrics" "$T/shared/nnve.prom"
ln -s "$T/victim-pid" "$T/shared/nnve.pid"
ln -s "$T/victim-journal" "$T/journal" # dangling: the daemon must not create it

write_conf "metrics_file = $T/shared/nnve.prom" "metrics_interval = 200ms"
: >>"$T/daemon.log"
"$BIN/nnve-daemon" -c "$T/n.conf" --pidfile "$T/shared/nnve.pid" 2>>"$T/daemon.log" &
DPID=$!
sleep 1
if kill -0 "$DPID" 2>/dev/null; then
    fail "daemon started on a journal path that is a symlink"
fi
wait "$DPID" || true
DPID=
[ ! -e "$T/victim-journal" ] || fail "journal symlink followed"
grep -q "cannot open journal" "$T/daemon.log" || fail "journal refusal not logged"
rm "$T/journal"

"$BIN/nnve-daemon" -c "$T/n.conf" --pidfile "$T/shared/nnve.pid" 2>>"$T/daemon.log" &
DPID=$!
for i in $(seq 100); do
    grep -q 'daemon: started' "$T/daemon.log" && break
    kill -0 "$DPID" 2>/dev/null || fail "daemon exited at start-up"
    sleep 0.1
done
wait_for "metrics file replaced" 10 test ! -L "$T/shared/nnve.prom"
grep -q '^nnve_' "$T/shared/nnve.prom" || fail "metrics file content"
[ "$(cat "$T/victim-metrics")" = precious-metrics ] || fail "metrics symlink followed"
[ "$(cat "$T/victim-pid")" = precious-pid ] || fail "pidfile symlink followed"
[ -L "$T/shared/nnve.pid" ] || fail "pidfile symlink replaced"
grep -q "cannot write pidfile=$T/shared/nnve.pid: Too many levels of symbolic links" \
    "$T/daemon.log" || fail "pidfile refusal not logged"
# A symlink planted while the daemon runs is replaced at the next write, not followed; nor
# is one at a predictable temporary name.
rm "$T/shared/nnve.prom"
ln -s "$T/victim-metrics" "$T/shared/nnve.prom"
ln -s "$T/victim-metrics" "$T/shared/nnve.prom.tmp.$DPID"
ln -s "$T/victim-metrics" "$T/shared/nnve.prom.tmp"
wait_for "metrics file replaced again" 10 test ! -L "$T/shared/nnve.prom"
[ "$(cat "$T/victim-metrics")" = precious-metrics ] || fail "metrics symlink followed"
sleep 0.5 # more writes
[ "$(cat "$T/victim-metrics")" = precious-metrics ] || fail "metrics temporary symlink followed"
rm "$T/shared/nnve.prom.tmp.$DPID" "$T/shared/nnve.prom.tmp"
[ -z "$(ls "$T/shared" | grep -v '^nnve\.p')" ] || fail "temporary files left: $(ls "$T/shared")"
stop_daemon
ok "metrics file, pidfile and journal never follow a planted symlink"
