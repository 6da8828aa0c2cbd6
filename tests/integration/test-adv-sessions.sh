#!/bin/bash
# test-adv-sessions.sh: attacks on nnve-daemon's sessions and on the agent's trust in the
# switch, with real daemons and a PKI made at test time.  Each attack is performed, then
# checked to have failed, with nothing of another hypervisor changed:
#   1. TLS with a valid certificate, then never HELLO: closed at hello_timeout, counted;
#   2. more connections before HELLO than the caps, from one address and from several:
#      refused at accept (no TLS handshake), an established hypervisor keeps working;
#   3. a revoked certificate is refused at its handshake; SIGHUP with a CRL that revokes a
#      connected hypervisor cuts it off; a broken CRL at SIGHUP keeps the running one, at
#      start it is a configuration error;
#   4. tnve-agent over TCP without nnve_identity does not start; with a wrong one, or with a
#      CRL that revokes the switch, it refuses the switch.
# The caps and the deadline are configured small here; their defaults (10 s, 64, 8) are
# checked by the unit tests.
source "$(dirname "$0")/nnve-lib.bash"

counter() { ctl show counters | jq -r "$1"; }
hv_state() { ctl show sessions | jq -r --arg h "$1" '[.[] | select(.hypervisor == $h) | .state] | join(",")'; }
# raw_open NAME [SOURCE_IP]: a TCP connection to the daemon from SOURCE_IP (127.0.0.1) that
# never starts TLS, held by a helper process (bash cannot bind a source address) that writes
# "connected", then "eof" once the daemon closes it, to $T/raw-NAME.
declare -A RAW_PID=()
raw_open() {
    python3 -c '
import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
s.connect(("127.0.0.1", int(sys.argv[2])))
print("connected", flush=True)
while s.recv(4096):
    pass
print("eof", flush=True)
' "${2:-127.0.0.1}" "$PORT" >"$T/raw-$1" 2>&1 &
    RAW_PID[$1]=$!
    CPIDS+=($!)
    wait_for "raw connection $1" 5 grep -q connected "$T/raw-$1"
}
raw_closed() { wait_for "daemon closes raw connection $1" 5 grep -q eof "$T/raw-$1"; }
raw_open_still() { sleep 0.3; ! grep -q eof "$T/raw-$1"; }
raw_close() { kill "${RAW_PID[$1]}" 2>/dev/null || true; wait "${RAW_PID[$1]}" 2>/dev/null || true; }

# refused NAME EPOCH: NAME's HELLO never succeeds (the TLS 1.3 client may see its handshake
# end before the server refuses its certificate: the refusal then arrives as the close).
refused() {
    local out
    out=$(client "$1" --timeout 3000 <<<"hello node=$1 epoch=$2" 2>&1) || true
    ! echo "$out" | grep -q '"status":"success"' || fail "$1 served: $out"
    echo "$out" | grep -q '"type":"CLOSED"' || fail "$1 not closed: $out"
}

gen_crl() { "$SPLITNVE_SRC/scripts/gen-crl.sh" "$T/pki" "$@"; }
gen_crl "$T/crl.pem" hv9

write_conf "hello_timeout = 2s" "max_hello_pending = 4" "max_hello_pending_per_source = 2" \
    "crl = $T/crl.pem"
# hv3 on a configured port: port = learn is refused over TCP.
sed -i '/^\[hypervisor hv3\]/,/^\[/s/^port = learn$/port = swp3/' "$T/n.conf"
cat >>"$T/n.conf" <<EOF
[hypervisor hv9]
port = swp2
vns = 5000-5010
EOF
start_daemon

# hv2: an established hypervisor whose one session lives through every attack below; in
# attack 2 it answers an operator's request and makes one of its own while the attacker
# holds every slot before HELLO.
cat >"$T/hv2.script" <<EOF
hello node=hv2 epoch=1
connect vn=5001
connect vn=5009
activate tsi=$(tsi 21) vn=5001 addr=192.0.2.21
wait-request 120000
connect vn=5002
wait-close 120000
EOF
bg_client hv2 "$T/hv2.out"
HV2_PID=${CPIDS[-1]}
wait_for "hv2 established" 10 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show sessions | jq -e '.[] | select(.hypervisor==\"hv2\" and .state==\"established\")'"
hv2_tsis() { ctl show tsis | jq -c '[.[] | select(.hypervisor=="hv2")] | map({tsi, state, vn_id})'; }
wait_for "hv2's TSI" 10 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show tsis | jq -e 'length == 1'"
hv2_before=$(hv2_tsis)
hv2_peer=$(ctl show sessions | jq -r '.[] | select(.hypervisor=="hv2") | .peer')
# hv2_same N: hv2 still has its first session and its state is as before attack N.
hv2_same() {
    [ "$(ctl show sessions | jq -r '.[] | select(.hypervisor=="hv2") | "\(.state) \(.peer)"')" = "established $hv2_peer" ] ||
        fail "hv2's session did not survive attack $1: $(ctl show sessions | jq -c .)"
    [ "$(hv2_tsis)" = "$hv2_before" ] || fail "hv2's TSIs changed by attack $1: $(hv2_tsis)"
}

# ---- 1. TLS, then no HELLO -------------------------------------------------------------
# The attacker keeps the session busy (KEEPALIVEs and requests, which are allowed or
# answered before HELLO) for most of the deadline, then waits: activity does not extend it.
ka="raw 01 02 0000 0000000c 00000000"
t0=$SECONDS
out=$(client hv1 --timeout 20000 <<EOF
$ka
sleep 400
$ka
sleep 400
$ka
sleep 400
$ka
wait-close 15000
EOF
) || fail "session without HELLO not closed by the daemon: $out"
[ $((SECONDS - t0)) -lt 10 ] || fail "session without HELLO outlived hello_timeout = 2s by far"
echo "$out" | jq -s -e 'any(.[]; .type == "CONNECTED" and .peer == "nnve")' >/dev/null || fail "no TLS session: $out"
[ "$(echo "$out" | jq -s '[.[] | select(.type == "RESPONSE" and .status == "unexpected-message")] | length')" = 4 ] ||
    fail "requests before HELLO not answered: $out"
wait_for "HELLO timeout counted" 5 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show counters | jq -e '.hello_timeouts_total == 1'"
grep -q "closed hypervisor=hv1 peer=127.0.0.1:[0-9]* reason=timeout detail=HELLO not completed within 2000 ms after the TLS handshake" "$T/daemon.log" ||
    fail "HELLO timeout not logged"
[ "$(hv_state hv1)" = "" ] || fail "hv1 left a session row: $(hv_state hv1)"
hv2_same 1
ok "attack 1: TLS without HELLO closed at hello_timeout, counted and logged"

# ---- 2. connections before HELLO beyond the caps -----------------------------------------
raw_open a1
raw_open a2
wait_for "two pending" 5 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show counters | jq -e '.hello_pending == 2'"
raw_open a3
raw_open a4
raw_closed a3
raw_closed a4
raw_open_still a1 || fail "a connection within the caps was closed"
[ "$(counter '.connections_refused_total.max_hello_pending_per_source')" = 2 ] ||
    fail "per-source refusals not counted: $(ctl show counters | jq -c .connections_refused_total)"
# A hypervisor from the same address is refused too while the attacker holds the slots:
# before any TLS byte (the daemon's handshake failure counter does not move).
hs0=$(counter .tls_handshake_failures_total)
out=$(client hv1 --timeout 3000 <<<"hello node=hv1 epoch=1" 2>&1) && fail "connection beyond the cap served: $out"
echo "$out" | grep -q CONNECTED && fail "TLS handshake done beyond the cap: $out"
[ "$(counter .tls_handshake_failures_total)" = "$hs0" ] || fail "a refused connection reached TLS"
# Other addresses fill the global cap (4): two more from 127.0.0.2, then 127.0.0.3 is refused.
raw_open b1 127.0.0.2
raw_open b2 127.0.0.2
wait_for "four pending" 5 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show counters | jq -e '.hello_pending == 4'"
raw_open c1 127.0.0.3
raw_closed c1
[ "$(counter '.connections_refused_total.max_hello_pending')" = 1 ] || fail "global cap refusal not counted"
grep -q "refused connection: too many connections before HELLO peer=127.0.0.3" "$T/daemon.log" ||
    fail "global cap refusal not logged"
grep -q "refused connection: too many connections before HELLO from this address peer=127.0.0.1" "$T/daemon.log" ||
    fail "per-source refusal not logged"
# The established hypervisor is not counted against the caps and keeps working: it answers
# an operator's request and makes one of its own.
ctl vn disconnect hv2 5009 >"$T/op.out" || fail "operator request to hv2 failed: $(cat "$T/op.out")"
wait_for "hv2's request during attack 2" 5 sh -c "[ \$(grep -c '\"request\":\"VN_CONNECT\".*\"status\":\"success\"' '$T/hv2.out') = 3 ]"
hv2_same 2
for r in a1 a2 a3 a4 b1 b2 c1; do raw_close $r; done
wait_for "slots freed" 5 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show counters | jq -e '.hello_pending == 0'"
ok "attack 2: connections before HELLO beyond the caps refused at accept; hv2 unaffected"

# Half-open TCP connections also end at handshake_timeout, freeing their slots; the
# HELLO deadline is of the session after TLS, checked above.

# ---- 3. revocation -----------------------------------------------------------------------
hs0=$(counter .tls_handshake_failures_total)
refused hv9 1
wait_for "revoked refusal counted" 5 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show counters | jq -e '.tls_handshake_failures_total > $hs0'"
grep -q "TLS handshake failed peer=127.0.0.1:[0-9]* err=tls-handshake-failed detail=TLS handshake failed: certificate verify failed: certificate revoked" "$T/daemon.log" ||
    fail "revoked certificate not logged: $(grep 'handshake' "$T/daemon.log" | tail -3)"
[ "$(grep -c "certificate revoked" "$T/daemon.log")" = 1 ] ||
    fail "one refused handshake logged more than once"
[ "$(hv_state hv9)" = "" ] || fail "revoked hv9 has a session"
# hv3 is connected; a new CRL revokes it: SIGHUP cuts it off, hv2 stays.
cat >"$T/hv3.script" <<EOF
hello node=hv3 epoch=1 uplink=52:54:00:aa:00:03
connect vn=5000
wait-close 60000
EOF
bg_client hv3 "$T/hv3.out"
HV3_PID=${CPIDS[-1]}
wait_for "hv3 established" 10 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show sessions | jq -e '.[] | select(.hypervisor==\"hv3\" and .state==\"established\")'"
gen_crl "$T/crl.pem" hv9 hv3
kill -HUP "$DPID"
wait "$HV3_PID" || fail "hv3's session not closed by the CRL: $(cat "$T/hv3.out")"
grep -q "closing: certificate revoked hypervisor=hv3 peer=127.0.0.1:[0-9]* detail=the peer's certificate (serial [0-9A-F]*) is revoked" "$T/daemon.log" ||
    fail "revocation close not logged"
[ "$(counter .sessions_revoked_total)" = 1 ] || fail "revocation close not counted"
[ "$(hv_state hv3)" = held ] || fail "hv3 not held after revocation: $(hv_state hv3)"
hv2_same 3
refused hv3 2
# A CRL that cannot be read at SIGHUP: error logged, the running one stays in force.
mv "$T/crl.pem" "$T/crl.saved"
echo "not a CRL" >"$T/crl.pem"
kill -HUP "$DPID"
wait_for "bad CRL logged" 5 grep -q "TLS files not reloaded, keeping the running ones: cannot load CRL file $T/crl.pem" "$T/daemon.log"
refused hv3 3
hv2_same 3
mv "$T/crl.saved" "$T/crl.pem"
ok "attack 3: revoked certificate refused; SIGHUP with a new CRL cut the revoked peer off"

# ---- 4. the agent authenticates the switch over TCP ---------------------------------------
agent_conf() {
    cat <<EOF
libvirt_uri = test:///default
nnve_address = 127.0.0.1
nnve_port = $PORT
cert = $T/pki/hv1.crt
key = $T/pki/hv1.key
ca = $T/pki/ca.crt
state_dir = $T/astate
control_socket = $T/agent.ctl
retry_min = 100ms
retry_max = 500ms
EOF
    for l in "$@"; do echo "$l"; done
}
mkdir -p "$T/astate"
agent_conf >"$T/a0.conf"
msg=$("$BIN/tnve-agent" --check-config -c "$T/a0.conf" 2>&1) && fail "agent without nnve_identity accepted: $msg"
echo "$msg" | grep -q "'nnve_identity' is required" || fail "missing nnve_identity not explained: $msg"
# run_agent NAME CONF EXPECTED-LOG: starts an agent (pid in APID) that must never get to
# HELLO; stop_agent: SIGTERM, exit status 0 (ASan build: no leaks).
run_agent() {
    local name=$1 conf=$2 expect=$3
    local est0
    est0=$(counter .sessions_established_total)
    "$BIN/tnve-agent" -c "$conf" >"$T/$name.log" 2>&1 &
    APID=$!
    CPIDS+=($APID)
    wait_for "$name: $expect" 10 grep -q "$expect" "$T/$name.log"
    [ "$(counter .sessions_established_total)" = "$est0" ] || fail "$name: HELLO reached the daemon"
    [ "$(hv_state hv1)" = "" ] || fail "$name: hv1 has a session"
}
stop_agent() {
    kill -TERM "$APID"
    local rc=0
    wait "$APID" || rc=$?
    [ "$rc" = 0 ] || { tail -n 30 "$T"/*.log >&2; fail "agent exited with status $rc after SIGTERM"; }
}
agent_conf "nnve_identity = tor9" >"$T/a1.conf"
run_agent wrong-id "$T/a1.conf" "peer identity 'nnve' does not match expected 'tor9'"
stop_agent
# The right name, but a CRL that revokes the switch's certificate.
gen_crl "$T/agent-crl.pem" nnve
agent_conf "nnve_identity = nnve" "crl = $T/agent-crl.pem" >"$T/a2.conf"
run_agent revoked-sw "$T/a2.conf" "certificate revoked"
# SIGHUP with a CRL that no longer names the switch: the agent connects.
gen_crl "$T/agent-crl.pem"
kill -HUP "$APID"
wait_for "agent up after CRL reload" 10 sh -c "'$BIN/nnvectl' -s '$T/ctl' --json show sessions | jq -e '.[] | select(.hypervisor==\"hv1\" and .state==\"established\")'"
# ... and SIGHUP with one that names it again ends the session from the agent's side.
gen_crl "$T/agent-crl.pem" nnve
kill -HUP "$APID"
wait_for "agent closes the revoked switch" 10 grep -q "closing the session: the nNVE's certificate is revoked" "$T/revoked-sw.log"
stop_agent
hv2_same 4
ok "attack 4: the agent refuses a switch without the configured identity or with a revoked certificate"

# ---- start-up: a CRL that cannot be read is a configuration error -------------------------
kill "$HV2_PID" 2>/dev/null || true
stop_daemon
rm -f "$T/crl.pem"
"$BIN/nnve-daemon" -c "$T/n.conf" 2>"$T/start.log" && fail "daemon started without its CRL"
grep -q "TLS: cannot load CRL file $T/crl.pem" "$T/start.log" || fail "missing CRL not explained: $(cat "$T/start.log")"
ok "a missing CRL stops the daemon at start"
