#!/bin/bash
# A ToR pair: two nnve-daemons (tora the allocator, torb the follower) share the significance
# domain rack1 (tags 100-109: tora's half 100-104, torb's 105-109).  Hypervisors connect VNs
# on both: each VN gets one tag on both.  A partition (torb restarted with its peer pointing
# at a closed port, then frozen with kill -STOP) while new VNs connect on both sides: never
# two VNs on one tag across the two.  The heal converges and changes no tag of a VN with
# TSIs; kill -9 and restart of either changes no tag.  Attacks on the pair listener: a
# certificate with another identity (refused at the handshake), the peer's own identity
# with garbage, with another domain and with a HOLD of a tag bound to another VN (each
# closes the session, nothing changes).  Two switches configured with the same role (two
# allocators, two followers): both refuse the pair session, log it once, bind no new tag.
# A new VN at the follower waits for the allocator's grant instead of being answered BUSY
# (a bounded number of such requests per session: a hypervisor pipelining more gets BUSY).
source "$(dirname "$0")/nnve-lib.bash"
"$SPLITNVE_SRC/scripts/gen-pki.sh" "$T/pki" tora torb mallory

declare -A SPID=() CPORT=()
fail() {
    echo "FAIL: $*" >&2
    for s in tora torb; do
        echo "---- $s log (tail) ----" >&2
        tail -n 30 "$T/$s.log" >&2 2>/dev/null || true
    done
    exit 1
}

# conf SWITCH ROLE PAIRLINE: the config of one switch of the pair.
conf() {
    local sw=$1 role=$2 pairline=$3 peer_id=tora
    [ "$sw" = tora ] && peer_id=torb
    cat >"$T/$sw.conf" <<EOF
[global]
listen = 127.0.0.1:0
cert = $T/pki/$sw.crt
key = $T/pki/$sw.key
ca = $T/pki/ca.crt
node_id = $sw
state_dir = $T/$sw-state
control_socket = $T/$sw.ctl
dataplane_journal = $T/$sw.journal
hold_time = 60s
keepalive = 1s
[domain rack1]
ports = swp1, swp2
tags = 100-109
[hypervisor hv1]
port = swp1
vns = 5000-5010, 6000-6009
[hypervisor hv2]
port = swp2
vns = 5000-5010
[pair]
domain = rack1
role = $role
peer_identity = $peer_id
retry = 200ms
$pairline
EOF
}

# start SWITCH: starts it, waits until it listens; sets SPID[SWITCH], CPORT[SWITCH].
start() {
    local sw=$1 before i
    : >>"$T/$sw.log"
    before=$(grep -c 'daemon: started' "$T/$sw.log" || true)
    "$BIN/nnve-daemon" -c "$T/$sw.conf" 2>>"$T/$sw.log" &
    SPID[$sw]=$!
    CPIDS+=($!)
    for i in $(seq 100); do
        if [ "$(grep -c 'daemon: started' "$T/$sw.log" || true)" -gt "$before" ]; then
            CPORT[$sw]=$(grep 'daemon: started' "$T/$sw.log" | tail -1 | sed 's/.*port=\([0-9]*\).*/\1/')
            return 0
        fi
        kill -0 "${SPID[$sw]}" 2>/dev/null || fail "$sw exited at start-up"
        sleep 0.1
    done
    fail "$sw did not start"
}

stop() {
    local sw=$1 i rc=0
    kill -TERM "${SPID[$sw]}"
    for i in $(seq 150); do kill -0 "${SPID[$sw]}" 2>/dev/null || break; sleep 0.1; done
    wait "${SPID[$sw]}" || rc=$?
    [ "$rc" -eq 0 ] || fail "$sw exited with status $rc after SIGTERM"
}

kill9() {
    kill -9 "${SPID[$1]}"
    wait "${SPID[$1]}" 2>/dev/null || true
}

sctl() { local sw=$1; shift; "$BIN/nnvectl" -s "$T/$sw.ctl" --json "$@"; }
synced() { [ "$(sctl "$1" show pair | jq -r .synced)" = true ]; }
state_is() { [ "$(sctl "$1" show pair | jq -r .state)" = "$2" ]; }

# hv SWITCH NAME: runs a script from stdin as hypervisor NAME on SWITCH (BUSY retried).
hv() {
    "$CLIENT" --connect "127.0.0.1:${CPORT[$1]}" --cert "$T/pki/$2.crt" --key "$T/pki/$2.key" \
        --ca "$T/pki/ca.crt" --expect-peer "$1" --retry-busy 100 --timeout 10000
}

# tag_of SWITCH VN: the VN's tag at SWITCH ("" when it has none).
tag_of() { sctl "$1" show vns | jq -r --argjson v "$2" '.[] | select(.vn_id==$v) | .tag'; }

# connect SWITCH HV VN [TSI]: connects VN (activating TSI if given); prints the tag.
connect() {
    local out
    out=$( {
        echo "hello node=$2 epoch=1"
        echo "connect vn=$3"
        [ -z "${4:-}" ] || echo "activate tsi=$(tsi "$4") vn=$3"
    } | hv "$1" "$2") || fail "$2 on $1: client failed: $out"
    [ "$(echo "$out" | jq -r 'select(.type=="RESPONSE") | .status' | sort -u)" = success ] ||
        fail "$2 on $1: vn $3: $out"
    echo "$out" | jq -r 'select(.type=="RESPONSE" and .request=="VN_CONNECT") | .tags[0]'
}

# no_shared_tag: across both switches, no tag carries two VNs (VAPs and pair tables).
no_shared_tag() {
    local bad
    bad=$( { sctl tora show vns; sctl torb show vns; } | jq -s '
        add | map(select(.domain=="rack1")) | group_by(.tag)
        | map(select((map(.vn_id) | unique | length) > 1))')
    [ "$bad" = "[]" ] || fail "a tag carries two VNs: $bad"
    bad=$( { sctl tora show pair; sctl torb show pair; } | jq -s '
        map(.rows[]) | group_by(.tag) | map(select((map(.vn_id) | unique | length) > 1))')
    [ "$bad" = "[]" ] || fail "the pair tables bind a tag to two VNs: $bad"
}

in_half() { [ "$2" -ge "${1%-*}" ] && [ "$2" -le "${1#*-}" ]; }

# ---- the pair comes up ---------------------------------------------------------------
conf tora allocator "listen = 127.0.0.1:0"
start tora
PAIRPORT=$(grep 'pair: started' "$T/tora.log" | tail -1 | sed 's/.*port=\([0-9]*\).*/\1/')
[ "$PAIRPORT" -gt 0 ] || fail "no pair port"
conf torb follower "peer = 127.0.0.1:$PAIRPORT"
start torb
wait_for "tora synced" 20 synced tora
wait_for "torb synced" 20 synced torb
[ "$(sctl tora show pair | jq -r .half)" = 100-104 ] || fail "tora's half"
[ "$(sctl torb show pair | jq -r .half)" = 105-109 ] || fail "torb's half"
grep -q 'pair: session up domain=rack1 role=follower peer=tora' "$T/torb.log" || fail "no session log"
ok "pair up: allocator tora 100-104, follower torb 105-109"

# ---- misconfigured roles: two allocators, then two followers ---------------------------
# Both switches would bind new tags from the same half (both halves are still empty here: a
# VN connected on each side would get tag 100 on both).  HELLO carries the role: the side
# that meets its own role refuses the session (CONFLICT), both log "pair: role conflict"
# once (not once per retry), and neither binds a new tag until the roles differ.
nconf() { grep -c 'pair: role conflict domain=rack1' "$T/$1.log" || true; }
conflict() { [ "$(sctl "$1" show pair | jq -r .role_conflict)" = true ]; }
refused() { sctl "$1" show pair | jq .counters.peer_refused; }
# try_connect SWITCH HV VN: the status of one VN_CONNECT (BUSY not retried).
try_connect() {
    local out
    out=$(printf 'hello node=%s epoch=1\nconnect vn=%s\n' "$2" "$3" |
        "$CLIENT" --connect "127.0.0.1:${CPORT[$1]}" --cert "$T/pki/$2.crt" --key "$T/pki/$2.key" \
            --ca "$T/pki/ca.crt" --expect-peer "$1" --timeout 10000) || true
    status_of "$out" VN_CONNECT
}
pair_port() { grep 'pair: started' "$T/$1.log" | tail -1 | sed 's/.*port=\([0-9]*\).*/\1/'; }
no_new_tags() {
    [ "$(try_connect tora hv1 5006)" = busy ] || fail "tora bound a new tag with the roles in conflict"
    [ "$(try_connect torb hv2 5007)" = busy ] || fail "torb bound a new tag with the roles in conflict"
    [ -z "$(tag_of tora 5006)" ] && [ -z "$(tag_of torb 5007)" ] || fail "a new VN got a tag"
    [ "$(sctl tora show pair | jq .rows_count)" = 0 ] && [ "$(sctl torb show pair | jq .rows_count)" = 0 ] ||
        fail "a pair table got a row"
    no_shared_tag
}
c0a=$(nconf tora) c0b=$(nconf torb)
stop torb
conf torb allocator "listen = 127.0.0.1:0
peer = 127.0.0.1:$PAIRPORT"
start torb
wait_for "tora sees a second allocator" 20 conflict tora
wait_for "torb sees a second allocator" 20 conflict torb
grep 'pair: role conflict' "$T/tora.log" | tail -1 |
    grep -q 'both switches of the pair are configured as allocator' || fail "tora's log line"
grep 'pair: role conflict' "$T/torb.log" | tail -1 |
    grep -q 'the peer refused our HELLO (conflict: both switches' || fail "torb's log line"
no_new_tags
[ "$(nconf tora)" = $((c0a + 1)) ] && [ "$(nconf torb)" = $((c0b + 1)) ] || fail "logged more than once"
ok "two allocators: both refuse the pair session and log it, no new tag bound"

stop torb
stop tora
c0a=$(nconf tora) c0b=$(nconf torb)
conf tora follower "listen = 127.0.0.1:0
peer = 127.0.0.1:1"
start tora
conf torb follower "peer = 127.0.0.1:$(pair_port tora)"
start torb
wait_for "tora sees a second follower" 20 conflict tora
wait_for "torb sees a second follower" 20 conflict torb
# torb reconnects every 200 ms: each HELLO is refused, the conflict is logged once per side
wait_for "torb's retries refused" 20 sh -c "[ \$('$BIN/nnvectl' -s '$T/tora.ctl' --json show pair | jq .counters.peer_refused) -ge 3 ]"
[ "$(refused torb)" -ge 3 ] || fail "torb did not count the refusals"
grep 'pair: role conflict' "$T/tora.log" | tail -1 |
    grep -q 'both switches of the pair are configured as follower' || fail "tora's log line"
no_new_tags
[ "$(nconf tora)" = $((c0a + 1)) ] && [ "$(nconf torb)" = $((c0b + 1)) ] ||
    fail "logged per retry: tora $(($(nconf tora) - c0a)), torb $(($(nconf torb) - c0b))"
ok "two followers: refused at each retry, logged once per side, no new tag bound"

stop torb
stop tora
conf tora allocator "listen = 127.0.0.1:0"
start tora
PAIRPORT=$(pair_port tora)
conf torb follower "peer = 127.0.0.1:$PAIRPORT"
start torb
wait_for "tora synced with the roles fixed" 20 synced tora
wait_for "torb synced with the roles fixed" 20 synced torb
conflict tora || conflict torb && fail "a role conflict is still shown"
ok "roles fixed: the pair session is up (new VNs get tags below)"

# ---- connected: one tag per VN on both ------------------------------------------------
t5000a=$(connect tora hv1 5000 01)
t5000b=$(connect torb hv1 5000 02)
# The follower claims vn 5001 first: its answer waits for the grant (no BUSY; a client
# that does not retry BUSY gets the tag).
deferred() { sctl torb show counters | jq -r ".pair_deferred_total.$1"; }
held0=$(deferred held) answered0=$(deferred answered)
[ "$(try_connect torb hv2 5001)" = success ] || fail "torb answered a new VN without its tag"
[ "$(deferred held)" = $((held0 + 1)) ] && [ "$(deferred answered)" = $((answered0 + 1)) ] ||
    fail "the new VN was not held for the grant: $(sctl torb show counters | jq -c .pair_deferred_total)"
[ "$(deferred busy)" = 0 ] || fail "a held request was answered BUSY"
t5001b=$(connect torb hv2 5001 03)
t5001a=$(connect tora hv2 5001 04)
[ "$t5000a" = "$t5000b" ] || fail "vn 5000: tora $t5000a, torb $t5000b"
[ "$t5001a" = "$t5001b" ] || fail "vn 5001: tora $t5001a, torb $t5001b"
[ "$t5000a" != "$t5001a" ] || fail "5000 and 5001 share tag $t5000a"
in_half 100-104 "$t5001b" || fail "a claim was granted outside the allocator's half: $t5001b"
[ "$(sctl torb show pair | jq '.counters.claims_granted')" -ge 1 ] || fail "no claim granted"
[ "$(sctl torb show counters | jq .pair_up)" = 1 ] ||
    fail "pair_up metric"
no_shared_tag
ok "connected: vn 5000 tag $t5000a, vn 5001 tag $t5001a on both"

# ---- partition: torb's peer is a closed port while new VNs connect on both sides -------
stop torb
conf torb follower "peer = 127.0.0.1:1"
start torb
wait_for "tora sees the partition" 20 state_is tora down
t5002a=$(connect tora hv1 5002 05)
t5003b=$(connect torb hv2 5003 06)
t5004a=$(connect tora hv1 5004 07) # the same new VN on both sides while apart
t5004b=$(connect torb hv2 5004 08)
in_half 100-104 "$t5002a" || fail "tora bound $t5002a outside its half"
in_half 105-109 "$t5003b" || fail "torb bound $t5003b outside its half"
in_half 105-109 "$t5004b" || fail "torb bound $t5004b outside its half"
[ "$(tag_of torb 5000)" = "$t5000a" ] || fail "torb lost vn 5000's tag"
[ "$(sctl torb show pair | jq '.counters.partition_binds')" -ge 2 ] || fail "partition binds"
no_shared_tag
ok "partition: tora bound $t5002a, $t5004a; torb bound $t5003b, $t5004b; no tag shared"

# ---- heal -----------------------------------------------------------------------------
stop torb
conf torb follower "peer = 127.0.0.1:$PAIRPORT"
start torb
wait_for "tora synced after the heal" 20 synced tora
wait_for "torb synced after the heal" 20 synced torb
for sw in tora torb; do
    [ "$(tag_of $sw 5000)" = "$t5000a" ] || fail "$sw: vn 5000 changed tag"
    [ "$(tag_of $sw 5001)" = "$t5001a" ] || fail "$sw: vn 5001 changed tag"
done
[ "$(tag_of tora 5002)" = "$t5002a" ] && [ "$(tag_of torb 5003)" = "$t5003b" ] &&
    [ "$(tag_of tora 5004)" = "$t5004a" ] && [ "$(tag_of torb 5004)" = "$t5004b" ] ||
    fail "a tag changed at the heal"
# Each side learnt the other's partition bindings: the VNs now connect with the same tag.
[ "$(connect torb hv1 5002)" = "$t5002a" ] || fail "torb: vn 5002 not on tora's tag"
[ "$(connect tora hv2 5003)" = "$t5003b" ] || fail "tora: vn 5003 not on torb's tag"
[ "$(sctl tora show pair | jq .splits)" = 1 ] || fail "the split of vn 5004 is not shown"
grep -q "pair: split vn=5004" "$T/tora.log" || fail "the split is not logged"
no_shared_tag
ok "heal: tables converged, no tag of a VN with TSIs changed, vn 5004 shown split"

# ---- a frozen peer (kill -STOP) is a partition too: keepalives tell ---------------------
kill -STOP "${SPID[torb]}"
wait_for "tora sees torb silent" 20 state_is tora down
t5005a=$(connect tora hv1 5005 09)
in_half 100-104 "$t5005a" || fail "tora bound $t5005a outside its half while torb was frozen"
kill -CONT "${SPID[torb]}"
wait_for "tora synced after SIGCONT" 20 synced tora
wait_for "torb synced after SIGCONT" 20 synced torb
[ "$(connect torb hv2 5005)" = "$t5005a" ] || fail "torb: vn 5005 not on tora's tag"
no_shared_tag
ok "kill -STOP: the allocator saw the silence, bound $t5005a from its half; converged"

# ---- kill -9 and restart: tags unchanged ----------------------------------------------
rows() { sctl "$1" show pair | jq -c '[.rows[] | {tag, vn_id, mine}]'; }
vns() { sctl "$1" show vns | jq -c 'map({vn_id, tag}) | sort_by(.vn_id)'; }
for sw in tora torb; do
    r0=$(rows $sw)
    v0=$(vns $sw)
    kill9 $sw
    start $sw
    [ "$(rows $sw)" = "$r0" ] || fail "$sw: pair table changed by kill -9: $r0 -> $(rows $sw)"
    [ "$(vns $sw)" = "$v0" ] || fail "$sw: VN tags changed by kill -9"
    if [ $sw = tora ]; then
        PAIRPORT=$(grep 'pair: started' "$T/tora.log" | tail -1 | sed 's/.*port=\([0-9]*\).*/\1/')
        conf torb follower "peer = 127.0.0.1:$PAIRPORT"
        stop torb
        start torb
    fi
    wait_for "$sw synced after kill -9" 20 synced $sw
done
[ "$(tag_of tora 5000)" = "$t5000a" ] && [ "$(tag_of torb 5000)" = "$t5000a" ] || fail "kill -9"
no_shared_tag
ok "kill -9 of either switch: tags and tables unchanged"

# ---- attacks on the pair listener -----------------------------------------------------
peer_client() {
    "$CLIENT" --connect "127.0.0.1:$PAIRPORT" --cert "$T/pki/$1.crt" --key "$T/pki/$1.key" \
        --ca "$T/pki/ca.crt" --expect-peer tora --timeout 5000
}
stop torb # the real follower would take its session back from the attacker's
table0=$(rows tora)
refused0=$(sctl tora show pair | jq .counters.peer_refused)
errors0=$(sctl tora show pair | jq .counters.peer_errors)
# A certificate of the same CA with another identity: refused in the handshake.
peer_client mallory <<EOF >"$T/mallory.out" 2>&1 || true
hello node=rack1 epoch=1
connect vn=5999 pref=$t5000a
EOF
grep -q '"status"' "$T/mallory.out" && fail "mallory got an answer: $(cat "$T/mallory.out")"
wait_for "mallory refused" 10 sh -c "[ \$('$BIN/nnvectl' -s '$T/tora.ctl' --json show pair | jq .counters.peer_refused) -gt $refused0 ]"
# The follower's own identity (a stolen key), with another domain: refused at HELLO.
out=$(peer_client torb <<EOF || true
hello node=rack9 epoch=1
EOF
)
[ "$(status_of "$out" HELLO)" = not-authorized ] || fail "HELLO of another domain: $out"
# ... with garbage after a good HELLO: the session is closed.
out=$(peer_client torb <<EOF || true
hello node=rack1 epoch=1
raw 01ff00000000000c00000007
wait-close 5000
EOF
)
echo "$out" | grep -q '"CLOSED"' || fail "garbage did not close the session: $out"
# ... claiming a tag tora binds to another VN: the session is closed.
out=$(peer_client torb <<EOF || true
hello node=rack1 epoch=1
connect vn=5999 pref=$t5000a
wait-close 5000
EOF
)
echo "$out" | grep -q '"CLOSED"' || fail "a conflicting HOLD did not close the session: $out"
[ "$(status_of "$out" VN_CONNECT)" = success ] && fail "conflicting HOLD accepted: $out"
[ "$(sctl tora show pair | jq .counters.peer_errors)" -ge $((errors0 + 2)) ] || fail "peer_errors"
[ "$(sctl tora show pair | jq .counters.conflicts)" -ge 1 ] || fail "conflicts not counted"
[ "$(rows tora)" = "$table0" ] || fail "an attack changed tora's table: $(rows tora)"
[ "$(tag_of tora 5000)" = "$t5000a" ] || fail "an attack changed vn 5000"
grep -q 'pair: peer error, closing the session domain=rack1' "$T/tora.log" || fail "no log line"
# The real follower comes back and everything is as before.
start torb
wait_for "torb back" 20 synced torb
wait_for "tora back" 20 synced tora
no_shared_tag
ok "attacks: other identity refused, bad domain refused, garbage and conflict closed, no change"

# ---- a hypervisor pipelining requests for many new VNs at the follower -----------------
# hv1 sends six VN_CONNECTs of new VNs in one write: four wait for their claims (the
# bound per session), two are answered BUSY at once; the session goes on, the held ones
# are answered (or freed with the session), hv2's VNs and the one-tag-per-VN rule are
# untouched.
vn5001=$(sctl torb show vns | jq -c '[.[] | select(.vn_id == 5001)]')
held0=$(deferred held) refused0=$(deferred refused)
raw=""
for i in 0 1 2 3 4 5; do raw="$raw$(printf '0103000000000014%08x000700040000%04x' $((100 + i)) $((6000 + i)))"; done
out=$(printf 'hello node=hv1 epoch=1\nraw %s\nconnect vn=5000\n' "$raw" |
    "$CLIENT" --connect "127.0.0.1:${CPORT[torb]}" --cert "$T/pki/hv1.crt" --key "$T/pki/hv1.key" \
        --ca "$T/pki/ca.crt" --expect-peer torb --timeout 10000) || fail "pipelining client: $out"
[ "$(echo "$out" | jq -c 'select(.type=="RAW") | .statuses')" = '{"busy":2}' ] ||
    fail "the requests over the bound were not answered BUSY at once: $out"
[ "$(status_of "$out" VN_CONNECT)" = success ] || fail "the session did not go on: $out"
[ "$(deferred held)" = $((held0 + 4)) ] && [ "$(deferred refused)" = $((refused0 + 2)) ] ||
    fail "bound per session: $(sctl torb show counters | jq -c .pair_deferred_total)"
wait_for "held requests answered" 10 sh -c "[ \"\$('$BIN/nnvectl' -s '$T/torb.ctl' --json show counters | jq .pair_deferred)\" = 0 ]"
c=$(sctl torb show counters | jq .pair_deferred_total)
[ "$(echo "$c" | jq '.held == .answered + .busy + .dropped')" = true ] ||
    fail "a held request was lost: $c"
[ "$(sctl torb show vns | jq -c '[.[] | select(.vn_id == 5001)]')" = "$vn5001" ] ||
    fail "hv1's requests changed vn 5001"
no_shared_tag
ok "pipelined new VNs: 4 held for their claims, 2 BUSY at once, none left, nothing else changed"

# ---- held requests when their session ends and when the switch stops ------------------
# The allocator frozen (its claims unanswered): requests held at torb when their
# hypervisor goes away, and when torb is stopped, are freed; torb exits cleanly (no leak).
kill -STOP "${SPID[tora]}"
raw=$(printf '0103000000000014%08x0007000400001776' 200)
printf 'hello node=hv1 epoch=1\nraw %s\n' "$raw" |
    "$CLIENT" --connect "127.0.0.1:${CPORT[torb]}" --cert "$T/pki/hv1.crt" --key "$T/pki/hv1.key" \
        --ca "$T/pki/ca.crt" --expect-peer torb --timeout 10000 >/dev/null || fail "client (close)"
raw=$(printf '0103000000000014%08x0007000400001777' 201)
printf 'hello node=hv1 epoch=1\nraw %s\nsleep 20000\n' "$raw" |
    "$CLIENT" --connect "127.0.0.1:${CPORT[torb]}" --cert "$T/pki/hv1.crt" --key "$T/pki/hv1.key" \
        --ca "$T/pki/ca.crt" --expect-peer torb --timeout 30000 >"$T/held.out" 2>&1 &
CPIDS+=($!)
wait_for "the request reached torb" 10 grep -q '"RAW"' "$T/held.out"
c=$(sctl torb show counters | jq '.pair_deferred_total + {now: .pair_deferred}')
echo "held at stop: $(echo "$c" | jq -c .)"
[ "$(echo "$c" | jq '.held == .answered + .busy + .dropped + .now')" = true ] ||
    fail "held requests unaccounted for: $c"
stop torb
kill -CONT "${SPID[tora]}"
stop tora
ok "held requests freed when their session ends and at stop"
