#!/bin/bash
# Socket activation (sd_listen_fds(3)): nnve-daemon uses a listening socket passed to it for
# the listen address the socket is bound to, so whoever passed it keeps the port across
# restarts (a client that connects while no daemon runs is served by the next one); a passed
# socket that matches no listen address is closed with a warning; sockets passed to another
# process (LISTEN_PID not ours) are not taken.  tests/tools/listen-socket holds the socket.
source "$(dirname "$0")/nnve-lib.bash"
HOLD=$SPLITNVE_BUILD/tests/tools/listen-socket

"$HOLD" hold 127.0.0.1 "$T/listen.sock" >"$T/held.port" 2>>"$T/daemon.log" &
CPIDS+=($!)
wait_for "listen-socket holds a port" 10 test -s "$T/held.port"
HELD=$(cat "$T/held.port")
write_conf
sed -i "s/^listen = .*/listen = 127.0.0.1:$HELD/" "$T/n.conf"

# The passed socket is the daemon's listener.
DAEMON_WRAP=("$HOLD" run "$T/listen.sock")
start_daemon
[ "$PORT" = "$HELD" ] || fail "daemon reports port $PORT, the passed socket is on $HELD"
grep -q "listening addr=127.0.0.1 port=$HELD socket=passed" "$T/daemon.log" || fail "passed socket not used"
out=$(client hv1 <<<"hello node=hv1 epoch=1")
[ "$(status_of "$out" HELLO)" = success ] || fail "HELLO on the passed socket"
ok "listens on the passed socket"

# Down: the port stays held, a client that connects now is served by the next daemon.
stop_daemon
printf 'hello node=hv1 epoch=2\nconnect vn=5000\n' >"$T/hv1.script"
bg_client hv1 "$T/waiting.out"
sleep 0.5
kill -0 "${CPIDS[-1]}" 2>/dev/null || fail "client gave up while the port was held: $(cat "$T/waiting.out")"
start_daemon
[ "$PORT" = "$HELD" ] || fail "restarted daemon on port $PORT, not the held $HELD"
wait_for "waiting client served" 15 sh -c "! kill -0 ${CPIDS[-1]} 2>/dev/null"
[ "$(status_of "$(cat "$T/waiting.out")" VN_CONNECT)" = success ] ||
    fail "client that connected between two daemons: $(cat "$T/waiting.out")"
ok "restart keeps the port; a connection made meanwhile is served by the new daemon"
stop_daemon

# A passed socket that matches no listen address: closed with a warning, own bind instead.
sed -i "s/^listen = .*/listen = 127.0.0.1:0/" "$T/n.conf"
start_daemon
[ "$PORT" != "$HELD" ] || fail "the unmatched passed socket was used"
grep -q 'closing a passed socket that matches no listen address fd=3' "$T/daemon.log" ||
    fail "unmatched passed socket not reported"
stop_daemon
ok "unmatched passed socket closed with a warning"

# Sockets passed to another process: not ours to take.  The port is held, so the daemon's
# own bind fails and it exits with status 3 (start-up failure).
sed -i "s/^listen = .*/listen = 127.0.0.1:$HELD/" "$T/n.conf"
rc=0
timeout 20 "$HOLD" run "$T/listen.sock" env LISTEN_PID=1 "$BIN/nnve-daemon" -c "$T/n.conf" \
    2>>"$T/daemon.log" || rc=$?
[ $rc = 3 ] || fail "daemon given another process's socket: exit $rc, expected 3"
grep -q "cannot listen on 127.0.0.1 port $HELD" "$T/daemon.log" || fail "bind failure not reported"
ok "LISTEN_PID of another process: socket not taken"
