#!/bin/bash
# nnvectl show tsis on a table larger than a page: the daemon answers each page as its own
# request (bounded, the loop serves other commands in between), nnvectl follows the pages
# so its output still lists everything; filters (hypervisor, VN, port, state); one page
# with limit/after; bad arguments refused.
source "$(dirname "$0")/nnve-lib.bash"
write_conf "max_tsis_per_session = 10000" "sync = normal"
start_daemon

N=2600
{
    echo "hello node=hv1 epoch=1"
    for vn in 5000 5001; do echo "connect vn=$vn"; done
    for i in $(seq $N); do
        op=associate
        [ $((i % 4)) -eq 0 ] && op=activate
        printf '%s tsi=%s/52:54:00:02:%02x:%02x vn=%d\n' "$op" "$U" $((i / 256)) $((i % 256)) \
            $((5000 + i % 2))
    done
    echo "quit"
} >"$T/hv1.script"
client hv1 --timeout 120000 <"$T/hv1.script" >"$T/hv1.out" 2>/dev/null
[ "$(jq -r 'select(.type=="RESPONSE") | .status' "$T/hv1.out" | sort -u)" = success ] ||
    fail "setup refused: $(jq -c 'select(.status != "success")' "$T/hv1.out" | head -2)"
# and one TSI of hv2, for the hypervisor and port filters
printf 'hello node=hv2 epoch=1\nconnect vn=5000\nactivate tsi=%s/52:54:00:0f:00:01 vn=5000\n' "$U" |
    client hv2 >/dev/null

# Everything, through three pages; other commands answered while nnvectl pages.
(for _ in 1 2 3; do ctl show tsis >/dev/null || exit 1; done) &
pager=$!
for _ in $(seq 20); do ctl show sessions >/dev/null || fail "show sessions while paging"; done
wait $pager || fail "paged listing failed under concurrent commands"
all=$(ctl show tsis)
[ "$(echo "$all" | jq 'length')" -eq $((N + 1)) ] || fail "listing: $(echo "$all" | jq length) rows"
[ "$(echo "$all" | jq '[.[].tsi] | unique | length')" -eq $((N + 1)) ] || fail "duplicates"
[ "$("$BIN/nnvectl" -s "$T/ctl" show tsis | grep -c "52:54:00:02:")" -eq $N ] || fail "table"
ok "show tsis lists all $((N + 1)) TSIs over pages"

# One page: bounded, with the cursor of the next.
p1=$(ctl show tsis limit 1000)
[ "$(echo "$p1" | jq '.items | length')" -eq 1000 ] || fail "page 1: $(echo "$p1" | head -c 200)"
next=$(echo "$p1" | jq -r .next)
p2=$(ctl show tsis limit 1000 after "$next")
[ "$(echo "$p2" | jq '.items | length')" -eq 1000 ] || fail "page 2"
[ "$(echo "$p2" | jq -r '.items[0].tsi')" = "$(echo "$all" | jq -r '.[1000].tsi')" ] ||
    fail "page 2 does not continue page 1"
p3=$(ctl show tsis limit 1000 after "$(echo "$p2" | jq -r .next)")
[ "$(echo "$p3" | jq '.items | length')" -eq $((N + 1 - 2000)) ] || fail "page 3"
[ "$(echo "$p3" | jq -r .next)" = null ] || fail "page 3 is not the last"
[ "$("$BIN/nnvectl" -s "$T/ctl" show tsis limit 10 2>"$T/err" | grep -c "52:54:00:")" -eq 10 ] ||
    fail "table page"
grep -q 'more: add "after ' "$T/err" || fail "no cursor for the next page: $(cat "$T/err")"
ok "one page with limit, the next with after"

[ "$(ctl show tsis hypervisor hv2 | jq -r '.[].tsi')" = "$U/52:54:00:0f:00:01" ] || fail "hypervisor"
[ "$(ctl show tsis port swp2 | jq -r '.[].hypervisor' | sort -u)" = hv2 ] || fail "port"
[ "$(ctl show tsis hypervisor hv1 | jq length)" -eq $N ] || fail "hypervisor hv1"
[ "$(ctl show tsis vn 5001 | jq '[.[] | select(.vn_id == 5001)] | length')" -eq $((N / 2)) ] ||
    fail "vn 5001: $(ctl show tsis vn 5001 | jq length)"
[ "$(ctl show tsis state activated hypervisor hv1 | jq 'length')" -eq $((N / 4)) ] ||
    fail "state activated"
[ "$(ctl show tsis state activated hypervisor hv1 vn 5000 |
    jq '[.[] | select(.state == "activated" and .vn_id == 5000)] | length')" -eq $((N / 4)) ] ||
    fail "combined filters"
ok "filters: hypervisor, port, vn, state"

for bad in "limit 0" "limit 10001" "state init" "colour red" "after nothing" "hypervisor"; do
    rc=0
    # shellcheck disable=SC2086
    "$BIN/nnvectl" -s "$T/ctl" show tsis $bad >/dev/null 2>"$T/err" || rc=$?
    [ $rc -eq 2 ] || fail "show tsis $bad: exit $rc"
done
ok "bad arguments refused"
stop_daemon
