#!/bin/bash
# test-l2-daemons.sh: tnve-agent and nnve-daemon speaking SNCP over the Layer-2 channel, in
# network namespaces on the host kernel (a plain bridge: VLAN tags pass through it).
#
#   sw:  nnve-daemon, transport = tcp, l2 on swp1 (192.0.2.1 for TCP)
#   br:  bridge br0, the access network: swp1 and hv1..hv3 each plug into one of its ports
#   hv1: tnve-agent, transport = l2, nNVE found by discovery (nnve_name = tor1); its eth0
#        does not exist yet when the agent starts
#   hv2: tnve-agent, transport = l2, nnve_mac configured, channel in VLAN 10
#   hv3: tnve-agent, transport = tcp to 192.0.2.1 (and, on its interface, the rogue L2 peer
#        and hv4, both sncp-client, and hv5, an agent looking for an nNVE named tor9)
#
# Each hypervisor has its own private libvirtd (test driver) and dataplane none.  Checked
# through nnvectl/tnvectl --json: both L2 hypervisors hold their own session on the one
# nNVE port swp1, told apart by MAC; virsh start activates each one's TSI with the same tag
# as the TCP hypervisor's (same VN, same port); destroy de-associates; an L2 peer with a
# certificate of another CA is refused and logged; an L2 interface going down and up, or
# deleted and created again, ends and re-establishes the session without losing the TSI, and
# so do the nNVE's interface going down and up and a restart of nnve-daemon; an unanswered discovery times out and is retried; every
# daemon exits 0 on SIGTERM (under ASan: without leaks).
. "$SPLITNVE_SRC/tests/tools/tnve-lib.sh"

command -v ip >/dev/null || fail "ip (iproute2) is required"
P=snl2$$
NS_SW=$P-sw NS_BR=$P-br NS_H1=$P-h1 NS_H2=$P-h2 NS_H3=$P-h3
NSS=("$NS_SW" "$NS_BR" "$NS_H1" "$NS_H2" "$NS_H3")
MAC_SW=02:00:5e:10:00:01
declare -A AGENT_PIDS=()
FAIL_LOGS=(nnve.log hv1/agent.log hv2/agent.log hv3/agent.log)

cleanup_more() {
    local h ns
    for h in "${!AGENT_PIDS[@]}"; do stop_pid "${AGENT_PIDS[$h]}"; done
    [ -n "$NNVE_PID" ] && stop_pid "$NNVE_PID"
    NNVE_PID=
    for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null; done
}

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# plug NS IFNAME BRPORT [MAC]: a veth pair from namespace NS (IFNAME, up) to the bridge.
plug() {
    local ns=$1 ifname=$2 brport=$3 mac=${4:-}
    ip link add "$P-x" type veth peer name "$P-y" || fail "veth"
    ip link set "$P-x" netns "$ns" || fail "veth to $ns"
    ip link set "$P-y" netns "$NS_BR" || fail "veth to $NS_BR"
    ip -n "$ns" link set "$P-x" name "$ifname" || fail "rename $ifname"
    ip -n "$NS_BR" link set "$P-y" name "$brport" || fail "rename $brport"
    [ -z "$mac" ] || ip -n "$ns" link set "$ifname" address "$mac" || fail "mac $mac"
    ip -n "$NS_BR" link set "$brport" master br0 up || fail "$brport into br0"
    ip -n "$ns" link set "$ifname" up || fail "$ifname up"
}

for ns in "${NSS[@]}"; do
    ip netns add "$ns" || fail "netns $ns"
    ip -n "$ns" link set lo up
done
ip -n "$NS_BR" link add br0 type bridge || fail "bridge"
ip -n "$NS_BR" link set br0 up
plug "$NS_SW" swp1 acc0 "$MAC_SW"
ip -n "$NS_SW" addr add 192.0.2.1/24 dev swp1 || fail "address of swp1"
plug "$NS_H2" eth0 acc2 02:00:5e:10:00:12
plug "$NS_H3" eth0 acc3 02:00:5e:10:00:13
ip -n "$NS_H3" addr add 192.0.2.3/24 dev eth0 || fail "address of hv3"
log "namespaces: ${NSS[*]}"

# ---- nnve-daemon: TCP and L2 at once -----------------------------------------------------
"$S/scripts/gen-pki.sh" --other-ca rogue "$T/pki" nnve1 hv1 hv2 hv3 hv4 hv5 >/dev/null 2>&1 || fail "gen-pki"
# The SNCP port: the daemon listens in its own network namespace, where nothing else can
# take it, and a restart finds it again.
NNVE_PORT=8394
cat >"$T/nnve.conf" <<CONF
[global]
transport = tcp, l2
listen = 192.0.2.1:$NNVE_PORT
l2_interfaces = swp1
node_id = tor1
$(nnve_conf_common)
hold_time = 30s
sync = normal

[domain rack1]
ports = swp1
tags = 100-199

[hypervisor hv1]
port = learn
vns = red, 5000-5999
[hypervisor hv2]
port = swp1
vns = red, 5000-5999
[hypervisor hv3]
port = swp1
vns = red, 5000-5999
[hypervisor hv4]
port = learn
vns = 5000-5999

[vn red]
id = 5001
CONF
in_ns "$NS_SW" "$B/bin/nnve-daemon" --check-config -c "$T/nnve.conf" >/dev/null || fail "nnve config: $(in_ns "$NS_SW" "$B/bin/nnve-daemon" --check-config -c "$T/nnve.conf" 2>&1)"
# (background processes are started with ip netns exec itself, which execs the program:
# $! is then the daemon's PID)
ip netns exec "$NS_SW" "$B/bin/nnve-daemon" -c "$T/nnve.conf" >>"$T/nnve.log" 2>&1 &
NNVE_PID=$!
wait_for "nnve control socket" 10 test -S "$T/nnve.ctl"
wait_for "nnve L2 channel on swp1" 10 grep -q "L2 channel open if=swp1" "$T/nnve.log"

# ---- agents ------------------------------------------------------------------------------
# start_hv N TRANSPORT-KEYS...: libvirtd and tnve-agent of hypervisor hvN in its namespace
# (HV_NS overrides it).
start_hv() {
    local n=$1 d=$T/hv$1 ns=${HV_NS:-$P-h$1}
    shift
    mkdir -p "$d"
    start_libvirtd_in "$d"
    {
        agent_conf_common "hv$n" "$d" "test+unix:///default?socket=$d/run/libvirt-sock"
        printf '%s\n' "connect_timeout = 3s" "$@"
    } >"$d/agent.conf"
    in_ns "$ns" "$B/bin/tnve-agent" --check-config -c "$d/agent.conf" >"$d/check.out" 2>&1 ||
        fail "hv$n config: $(cat "$d/check.out")"
    ip netns exec "$ns" "$B/bin/tnve-agent" -c "$d/agent.conf" >>"$d/agent.log" 2>&1 &
    AGENT_PIDS[hv$n]=$!
    wait_for "hv$n agent control socket" 10 test -S "$d/agent.ctl"
}
tctl() { local n=$1; shift; "$B/bin/tnvectl" -s "$T/hv$n/agent.ctl" "$@"; }
session_json() { tctl "$1" --json show status; }
session_up() { session_json "$1" | jq -e '.state == "up" and .sync == "ready"'; }
# has_line OUTPUT [jq options] EXPR: some JSON line of a sncp-client OUTPUT satisfies EXPR.
has_line() { local o=$1; shift; local e=${*: -1}; echo "$o" | jq -s -e "${@:1:$#-1}" "any(.[]; $e)" >/dev/null; }
virsh_hv() { local n=$1; shift; virsh -q -c "test+unix:///default?socket=$T/hv$n/run/libvirt-sock" "$@"; }

# configuration errors name the file (and the line, for a bad value); exit status 1
printf 'cert = /c\nkey = /k\nca = /ca\ntransport = l2\nl2_interface = eth0\nl2_vlan = 4095\n' >"$T/bad1.conf"
printf 'cert = /c\nkey = /k\nca = /ca\ntransport = l2\nnnve_address = 192.0.2.1\n' >"$T/bad2.conf"
msg=$("$B/bin/tnve-agent" --check-config -c "$T/bad1.conf" 2>&1); rc=$?
[ $rc = 1 ] && [ "$msg" = "tnve-agent: $T/bad1.conf:6: bad value for 'l2_vlan': '4095'" ] || fail "bad l2_vlan: rc=$rc $msg"
msg=$("$B/bin/tnve-agent" --check-config -c "$T/bad2.conf" 2>&1); rc=$?
[ $rc = 1 ] && echo "$msg" | grep -q "^tnve-agent: $T/bad2.conf: transport = l2 needs 'l2_interface' (or 'uplink')" || fail "l2 without interface: rc=$rc $msg"

start_hv 1 "transport = l2" "l2_interface = eth0" "nnve_name = tor1"
start_hv 2 "transport = l2" "l2_interface = eth0" "nnve_mac = $MAC_SW" "l2_vlan = 10"
start_hv 3 "nnve_address = 192.0.2.1" "nnve_port = $NNVE_PORT"
grep -q "transport=l2 l2_interface=eth0 nnve_mac=(discovery)" "$T/hv1/check.out" || fail "hv1 --check-config: $(cat "$T/hv1/check.out")"
grep -q "nnve_mac=$MAC_SW" "$T/hv2/check.out" || fail "hv2 --check-config: $(cat "$T/hv2/check.out")"

# hv1's interface does not exist yet: the agent keeps retrying and says why.
wait_for "hv1 logs the missing interface" 10 grep -q "connect failed transport=l2 if=eth0 nnve_mac=discovery err=interface eth0 does not exist" "$T/hv1/agent.log"
session_json 1 | jq -e '.state != "up" and .transport == "l2" and (.last_error | test("eth0 does not exist"))' >/dev/null ||
    fail "hv1 status without its interface: $(session_json 1)"
kill -0 "${AGENT_PIDS[hv1]}" || fail "hv1 agent exited without its interface"
plug "$NS_H1" eth0 acc1 02:00:5e:10:00:11
log "hv1: agent waited for eth0, now plugged"

for n in 1 2 3; do wait_for "hv$n session up" 20 session_up "$n"; done
log "three sessions up"

# tnvectl: the transport, the interface and the nNVE MAC (found by discovery on hv1).
session_json 1 | jq -e --arg m "$MAC_SW" '.transport == "l2" and .interface == "eth0" and .nnve_mac == $m and .discovery == true and .nnve == "eth0/" + $m and .identity == "nnve1" and .port == "swp1"' >/dev/null ||
    fail "hv1 status: $(session_json 1)"
session_json 2 | jq -e --arg m "$MAC_SW" '.transport == "l2" and .nnve_mac == $m and .discovery == false and .vlan == 10 and .nnve == "eth0/" + $m + "/vlan10" and .l2_frames_in > 0' >/dev/null ||
    fail "hv2 status: $(session_json 2)"
session_json 3 | jq -e --arg a "192.0.2.1:$NNVE_PORT" '.transport == "tcp" and .nnve == $a and (has("nnve_mac") | not)' >/dev/null ||
    fail "hv3 status: $(session_json 3)"
tctl 1 show status | grep -q "^transport: l2" || fail "tnvectl show status (table) lacks the transport"
grep -q "session up transport=l2 peer=eth0/$MAC_SW identity=nnve1" "$T/hv1/agent.log" || fail "hv1 session-up log line"
grep -q "session up transport=tcp" "$T/hv3/agent.log" || fail "hv3 session-up log line"

# nnvectl: two L2 sessions on the one port swp1, told apart by MAC, and the TCP one.
sessions() { nnvectl --json show sessions; }
srow() { sessions | jq -e --arg h "$1" ".[] | select(.hypervisor == \$h and .state == \"established\") | $2"; }
srow hv1 '.transport == "l2" and .port == "swp1" and .interface == "swp1" and .peer_mac == "02:00:5e:10:00:11" and .vlan == 0' >/dev/null || fail "hv1 session at the nNVE: $(sessions)"
srow hv2 '.transport == "l2" and .port == "swp1" and .interface == "swp1" and .peer_mac == "02:00:5e:10:00:12" and .vlan == 10' >/dev/null || fail "hv2 session at the nNVE: $(sessions)"
srow hv3 '.transport == "tcp" and .port == "swp1"' >/dev/null || fail "hv3 session at the nNVE: $(sessions)"
log "nnve: hv1 and hv2 share port swp1 over L2 (own sessions), hv3 on TCP"

# ---- lifecycle: same VN on the same port -> same tag ---------------------------------------
for n in 1 2 3; do
    domain_xml "$n" meta-red >"$T/vm$n.xml"
    virsh_hv "$n" "define $T/vm$n.xml; start vm$n" >/dev/null || fail "start vm$n on hv$n"
done
TSI1="$(uuid_of 1)/$(mac_of 1 1)" TSI2="$(uuid_of 2)/$(mac_of 2 1)" TSI3="$(uuid_of 3)/$(mac_of 3 1)"
for t in "$TSI1" "$TSI2" "$TSI3"; do expect_state "$t" activated 15; done
TAG=$(tag_of "$TSI1")
[ "$TAG" != none ] || fail "no tag for vm1"
[ "$(tag_of "$TSI2")" = "$TAG" ] || fail "hv2's TSI got tag $(tag_of "$TSI2"), hv1's $TAG"
[ "$(tag_of "$TSI3")" = "$TAG" ] || fail "hv3's TSI got tag $(tag_of "$TSI3"), hv1's $TAG"
nnvectl --json show tsis | jq -e --arg t "$TSI1" '.[] | select(.tsi == $t) | .hypervisor == "hv1" and .port == "swp1" and .vn_id == 5001' >/dev/null || fail "vm1 at the nNVE: $(nnvectl --json show tsis)"
nnvectl --json show vns | jq -e --argjson tag "$TAG" '.[] | select(.vn_id == 5001) | .tag == $tag and .state == "connected" and (.hypervisors | sort) == ["hv1", "hv2", "hv3"]' >/dev/null ||
    fail "VAP of VN 5001: $(nnvectl --json show vns)"
for n in 1 2 3; do
    t="$(uuid_of "$n")/$(mac_of "$n" 1)"
    wait_for "hv$n shows tag $TAG" 10 sh -c "'$B/bin/tnvectl' -s '$T/hv$n/agent.ctl' --json show tsis | jq -e --arg t '$t' '.[] | select(.tsi == \$t) | .acked == \"activated\" and .tag == $TAG'"
done
log "start: vm1 (hv1, L2), vm2 (hv2, L2), vm3 (hv3, TCP) activated on swp1, all tag $TAG"

# ---- a peer with a certificate of another CA, over L2 --------------------------------------
n0=$(nnvectl --json show counters | jq '.tls_handshake_failures_total')
out=$(in_ns "$NS_H3" "$B/tests/tools/sncp-client" --l2 eth0 --cert "$T/pki/rogue.crt" --key "$T/pki/rogue.key" \
    --ca "$T/pki/ca.crt" --expect-peer nnve1 --timeout 5000 <<<"hello node=rogue epoch=1" 2>"$T/rogue.err")
echo "$out"
# (TLS 1.3: the client finishes its side before the nNVE rejects its certificate)
! has_line "$out" '.type == "RESPONSE"' || fail "rogue L2 peer got a HELLO answered"
has_line "$out" '.type == "CLOSED" and .reason == "tls-error"' || fail "rogue L2 peer not closed by TLS"
! grep -q "Sanitizer" "$T/rogue.err" || fail "sncp-client: $(cat "$T/rogue.err")"
wait_for "handshake failure counted" 5 sh -c "'$B/bin/nnvectl' -s '$T/nnve.ctl' --json show counters | jq -e '.tls_handshake_failures_total > $n0'"
grep -q "TLS handshake failed peer=swp1/02:00:5e:10:00:13" "$T/nnve.log" || fail "rogue refusal not logged with its L2 peer"
srow hv1 '.transport == "l2"' >/dev/null || fail "hv1 lost its session to the rogue peer"
srow hv2 '.transport == "l2"' >/dev/null || fail "hv2 lost its session to the rogue peer"
log "rogue certificate over L2 refused: $(grep -m1 'TLS handshake failed peer=swp1' "$T/nnve.log" | sed 's/.*server: //')"

# the same tool with a good certificate (hv4) from the same host: HELLO and VN_CONNECT work
# over L2 next to hv3's TCP session, and get the VN's tag on that port
out=$(in_ns "$NS_H3" "$B/tests/tools/sncp-client" --l2 eth0 --nnve-mac "$MAC_SW" --cert "$T/pki/hv4.crt" --key "$T/pki/hv4.key" \
    --ca "$T/pki/ca.crt" --expect-peer nnve1 --timeout 5000 2>>"$T/rogue.err" <<EOF
hello node=hv4 epoch=1
connect vn=5001
EOF
) || fail "sncp-client over L2 with a good certificate: $out"
echo "$out"
has_line "$out" --arg m "$MAC_SW" '.type == "CONNECTED" and .via == "eth0/" + $m' || fail "sncp-client L2 peer: $out"
has_line "$out" '.type == "RESPONSE" and .request == "HELLO" and .status == "success" and .port == "swp1"' || fail "sncp-client L2 HELLO: $out"
has_line "$out" --argjson tag "$TAG" '.type == "RESPONSE" and .request == "VN_CONNECT" and .status == "success" and .tags == [$tag]' || fail "sncp-client L2 VN_CONNECT: $out"
srow hv3 '.transport == "tcp"' >/dev/null || fail "hv3's TCP session disturbed by the L2 client: $(sessions)"
log "sncp-client over L2 (hv4, configured nNVE MAC): HELLO on port swp1, VN 5001 tag $TAG"

# ---- hv1's interface goes down and comes back ----------------------------------------------
c0=$(session_json 1 | jq .sessions)
ip -n "$NS_H1" link set eth0 down
wait_for "hv1 notices its interface down" 10 grep -q "l2 interface lost if=eth0 err=interface eth0 is down" "$T/hv1/agent.log"
wait_for "hv1 session down" 5 sh -c "'$B/bin/tnvectl' -s '$T/hv1/agent.ctl' --json show status | jq -e '.state != \"up\"'"
wait_for "hv1 retries on the down interface" 10 grep -q "connect failed transport=l2 if=eth0 nnve_mac=discovery err=interface eth0 is down" "$T/hv1/agent.log"
kill -0 "${AGENT_PIDS[hv1]}" || fail "hv1 agent exited when its interface went down"
ip -n "$NS_H1" link set eth0 up
wait_for "hv1 session up again" 20 sh -c "'$B/bin/tnvectl' -s '$T/hv1/agent.ctl' --json show status | jq -e '.state == \"up\" and .sync == \"ready\" and .sessions > $c0'"
expect_state "$TSI1" activated 15
[ "$(tag_of "$TSI1")" = "$TAG" ] || fail "vm1's tag changed over the interface flap"
srow hv1 '.transport == "l2" and .port == "swp1"' >/dev/null || fail "hv1 session after the flap: $(sessions)"
log "hv1: eth0 down -> session closed at once, up -> new session, vm1 still activated, tag $TAG"

# ---- hv2's interface is deleted and created again (a new ifindex) --------------------------
c0=$(session_json 2 | jq .sessions)
n0=$(wc -l <"$T/hv2/agent.log")
ip -n "$NS_H2" link del eth0 || fail "delete hv2's eth0"
plug "$NS_H2" eth0 acc2 02:00:5e:10:00:12
# (a deleted veth goes down first: the agent may see that before the deletion)
wait_for "hv2 notices its interface replaced" 10 sh -c "tail -n +$((n0 + 1)) '$T/hv2/agent.log' | grep -q 'l2 interface lost if=eth0 err=interface eth0 \(was re-created\|does not exist\|is down\)'"
wait_for "hv2 session up again" 20 sh -c "'$B/bin/tnvectl' -s '$T/hv2/agent.ctl' --json show status | jq -e '.state == \"up\" and .sync == \"ready\" and .sessions > $c0'"
expect_state "$TSI2" activated 15
[ "$(tag_of "$TSI2")" = "$TAG" ] || fail "vm2's tag changed over the new interface"
srow hv2 '.transport == "l2" and .port == "swp1" and .vlan == 10' >/dev/null || fail "hv2 session on the new interface: $(sessions)"
log "hv2: eth0 re-created -> $(grep -o 'l2 interface lost if=eth0 err=[^,]*' "$T/hv2/agent.log" | tail -1), new session, vm2 still activated"

# ---- the nNVE's interface goes down and up: the L2 hypervisors come back -------------------
declare -A C0=()
for n in 1 2; do C0[$n]=$(session_json "$n" | jq .sessions); done
ip -n "$NS_SW" link set swp1 down
wait_for "hv1 session lost with swp1 down" 15 sh -c "'$B/bin/tnvectl' -s '$T/hv1/agent.ctl' --json show status | jq -e '.state != \"up\"'"
ip -n "$NS_SW" link set swp1 up
for n in 1 2; do
    wait_for "hv$n session back after swp1 came up" 20 sh -c "'$B/bin/tnvectl' -s '$T/hv$n/agent.ctl' --json show status | jq -e '.state == \"up\" and .sync == \"ready\" and .sessions > ${C0[$n]}'"
done
expect_state "$TSI1" activated 15
expect_state "$TSI2" activated 15
srow hv1 '.transport == "l2" and .port == "swp1"' >/dev/null && srow hv2 '.transport == "l2" and .vlan == 10' >/dev/null ||
    fail "L2 sessions after the swp1 flap: $(sessions)"
log "swp1 down and up at the nNVE: hv1 and hv2 re-established their L2 sessions"

# ---- nnve-daemon restarts: every agent comes back on its own transport, tags kept ----------
for n in 1 2 3; do C0[$n]=$(session_json "$n" | jq .sessions); done
stop_pid "$NNVE_PID"; rc=$?; NNVE_PID=
[ $rc = 0 ] || fail "nnve-daemon exit status $rc after SIGTERM"
ip netns exec "$NS_SW" "$B/bin/nnve-daemon" -c "$T/nnve.conf" >>"$T/nnve.log" 2>&1 &
NNVE_PID=$!
for n in 1 2 3; do
    wait_for "hv$n session back after the nNVE restart" 20 sh -c "'$B/bin/tnvectl' -s '$T/hv$n/agent.ctl' --json show status | jq -e '.state == \"up\" and .sync == \"ready\" and .sessions > ${C0[$n]}'"
done
for t in "$TSI1" "$TSI2" "$TSI3"; do
    expect_state "$t" activated 15
    [ "$(tag_of "$t")" = "$TAG" ] || fail "tag of $t changed over the nNVE restart"
done
srow hv1 '.transport == "l2"' >/dev/null && srow hv2 '.transport == "l2" and .vlan == 10' >/dev/null &&
    srow hv3 '.transport == "tcp"' >/dev/null || fail "sessions after the nNVE restart: $(sessions)"
log "nnve-daemon restart: hv1, hv2 (L2) and hv3 (TCP) back, TSIs activated, tag $TAG"

# ---- destroy: de-associated, the others keep the VN ----------------------------------------
virsh_hv 1 "destroy vm1" >/dev/null || fail "destroy vm1"
expect_state "$TSI1" absent 15
wait_for "hv1 leaves VN 5001" 10 sh -c "'$B/bin/nnvectl' -s '$T/nnve.ctl' --json show vns | jq -e '.[] | select(.vn_id == 5001) | (.hypervisors | index(\"hv1\") == null and index(\"hv2\") != null)'"
[ "$(nnve_state "$TSI2")" = activated ] || fail "vm2 disturbed by vm1's destroy"
[ "$(tag_of "$TSI2")" = "$TAG" ] || fail "vm2's tag changed"
virsh_hv 2 "suspend vm2" >/dev/null || fail "suspend vm2"
virsh_hv 2 "destroy vm2" >/dev/null || fail "destroy vm2"
expect_state "$TSI2" absent 15
log "destroy: vm1 and vm2 de-associated over L2, vm3 still activated"

# ---- discovery that nobody answers: nnve_name names another nNVE ---------------------------
HV_NS=$NS_H3 start_hv 5 "transport = l2" "l2_interface = eth0" "nnve_name = tor9"
FAIL_LOGS+=(hv5/agent.log)
wait_for "hv5 gives up an unanswered discovery" 10 grep -q "connect timed out transport=l2 if=eth0 nnve_mac=discovery err=no session within 3000 ms (no nNVE answered the discovery)" "$T/hv5/agent.log"
wait_for "hv5 retries" 10 sh -c "'$B/bin/tnvectl' -s '$T/hv5/agent.ctl' --json show status | jq -e '.state != \"up\" and .connects >= 2 and (.last_error | test(\"no nNVE answered\"))'"
! grep -q "hypervisor=hv5\|node_id=hv5" "$T/nnve.log" || fail "hv5 reached an nNVE of another name"
log "hv5: nnve_name = tor9 ignores tor1's answers; the attempt times out and is retried"

# ---- clean exits (hv5 while it discovers) --------------------------------------------------
for h in hv5 hv1 hv2 hv3; do
    stop_pid "${AGENT_PIDS[$h]}"; rc=$?
    unset "AGENT_PIDS[$h]"
    [ $rc = 0 ] || fail "$h agent exit status $rc after SIGTERM"
done
stop_pid "$NNVE_PID"; rc=$?; NNVE_PID=
[ $rc = 0 ] || fail "nnve-daemon exit status $rc after SIGTERM"
log "PASS"
