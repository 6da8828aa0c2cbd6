#!/bin/bash
# Audit (RFC 8394 section 10): every state change and every authentication outcome reaches
# the log as an "audit" line, even with log_level = err and in bursts a rate limiter would
# have cut; only peer errors stay throttled.
source "$(dirname "$0")/nnve-lib.bash"
write_conf "log_level = err" "audit_file = $T/audit.log"
start_daemon
grep -q 'audit daemon: started ' "$T/audit.log" || fail "start not in the audit file"

# An identity the CA signed but the configuration does not know: refused, audited with the
# peer's address.
client hv9 <<<"hello node=hv9 epoch=1" >/dev/null || true
grep -q 'audit session: refused: identity not authorized hypervisor=hv9 peer=127\.0\.0\.1' \
    "$T/daemon.log" || fail "refusal not audited"

# hv1 makes 3*N changes in one burst.
N=200
{
    echo "hello node=hv1 epoch=1"
    echo "connect vn=5000"
    for i in $(seq $N); do
        printf 'associate tsi=%s/52:54:00:01:%02x:%02x vn=5000\n' "$U" $((i / 256)) $((i % 256))
        printf 'activate tsi=%s/52:54:00:01:%02x:%02x vn=5000 addr=192.0.2.%d\n' "$U" \
            $((i / 256)) $((i % 256)) $((i % 250 + 1))
    done
    for i in $(seq $N); do
        printf 'deassociate tsi=%s/52:54:00:01:%02x:%02x\n' "$U" $((i / 256)) $((i % 256))
    done
    echo "wait-request 30000"
    echo "quit"
} >"$T/hv1.script"
client hv1 --timeout 60000 <"$T/hv1.script" >"$T/hv1.out" &
CPIDS+=($!)
wait_for "the burst answered" 60 sh -c "[ \$(grep -c 'audit tsi: deassociated' '$T/daemon.log') -eq $N ]"
# An operator action (the agent is told, and answers).
"$BIN/nnvectl" -s "$T/ctl" vn disconnect hv1 5000 >/dev/null
wait "${CPIDS[-1]}" || fail "client failed: $(tail -3 "$T/hv1.out")"
out=$(cat "$T/hv1.out")
[ "$(echo "$out" | jq -r 'select(.type=="RESPONSE") | .status' | sort -u)" = success ] ||
    fail "requests refused: $(echo "$out" | jq -c 'select(.status != "success")' | head -3)"
grep -q 'audit session: established hypervisor=hv1 peer=127\.0\.0\.1' "$T/daemon.log" ||
    fail "session not audited"
grep -q 'audit vn: connected hypervisor=hv1 vn=5000' "$T/daemon.log" || fail "VN connect not audited"
grep -q 'audit vap: created domain=rack1 vn=5000' "$T/daemon.log" || fail "VAP not audited"
for what in associated activated deassociated; do
    n=$(grep -c "audit tsi: $what tsi=$U/52:54:00:01:" "$T/daemon.log" || true)
    [ "$n" -eq $N ] || fail "$what: $n audit lines for $N changes"
done
wait_for "session close audited" 10 grep -q 'audit session: closed hypervisor=hv1' "$T/daemon.log"
grep -q 'audit operator: vn disconnect hypervisor=hv1 vn=5000' "$T/daemon.log" ||
    fail "operator action not audited"
grep -q 'audit vn: disconnected hypervisor=hv1 vn=5000 .*reason=operator' "$T/daemon.log" ||
    fail "VN disconnect not audited"
grep -q 'suppressed=' "$T/daemon.log" && fail "an audit line was throttled"
grep -v ' audit ' "$T/daemon.log" | grep -q ' info ' && fail "info lines at log_level err"
# The audit file holds exactly the audit lines of the log; after a rotation and SIGHUP the
# daemon writes to the new file.
[ "$(grep -c ' audit ' "$T/daemon.log")" -eq "$(wc -l <"$T/audit.log")" ] ||
    fail "audit file: $(wc -l <"$T/audit.log") lines, log: $(grep -c ' audit ' "$T/daemon.log")"
grep -q "audit tsi: activated tsi=$U/52:54:00:01:00:01 " "$T/audit.log" || fail "audit file content"
mv "$T/audit.log" "$T/audit.log.1"
kill -HUP "$DPID"
wait_for "audit file reopened" 10 grep -q 'audit daemon: configuration reloaded' "$T/audit.log"
stop_daemon
grep -q 'audit daemon: stopped' "$T/audit.log" || fail "stop not in the audit file"
grep -q 'audit daemon: configuration reloaded' "$T/audit.log.1" && fail "reload in the rotated file"
# A symlink planted at the audit file path is refused, not followed.
rm "$T/audit.log"
ln -s "$T/victim" "$T/audit.log"
rc=0
"$BIN/nnve-daemon" -c "$T/n.conf" 2>>"$T/daemon.log" || rc=$?
[ $rc -eq 3 ] || fail "daemon started with a symlink as audit_file (exit $rc)"
[ ! -e "$T/victim" ] || fail "audit file symlink followed"
ok "state changes and authentication outcomes audited at log_level err, none throttled"
ok "audit_file: the same lines, reopened on SIGHUP, symlink refused"
