#!/bin/bash
# test-tnve-model.sh: model-based random test of tnve-agent and nnve-daemon together.
#
# Random operations on TNVE_MODEL_DOMAINS domains (1-3 vNICs each, VNs named six ways over
# five VNs: ID and name, name only, ID only of a catalogued VN, another name only, an
# uncatalogued ID; the switch serves a name only from its [vn] catalogue): define, start, suspend, resume, destroy, shutdown, managed save,
# undefine (running domains too), `virsh metadata` VN changes (--live, --config, both), bursts
# of those with no pause between them, and restarts of the agent and of nnve-daemon (SIGTERM
# and kill -9, with operations while the daemon is down).  The model is the README's event table applied to libvirt's state as it
# is after each step: running or paused -> Activated, managed-saved -> Associated, anything
# else -> nothing; each vNIC in the VN its current definition names.  After every step the
# nNVE must converge to the model (`nnvectl show tsis`, `show vns`) and the none backend's
# journal may only hold what the step made necessary: lines of TSIs whose model entry
# changed (a moved TSI de-associated before it is re-associated), add-vn/remove-vn only for
# VNs that went from unused to used or back, and a VN's tag never changes nor goes to
# another VN (the tag hold-down outlives the run, restarts included).  In a step of several
# operations (a burst, or a restart with operations while down) the touched domains may go
# through intermediate states; nothing of the other domains may move.
#
# No process substitution: under load bash 5.2 can lose track of its child and wait for ever.
# Seeded: TNVE_MODEL_SEED (printed, with a replay line, on failure); TNVE_MODEL_OPS steps.
# `make check` runs it once, with the sanitizers (a new seed each run; `make soak` runs it long):
# run-tests: sanitizer stage
. "$SPLITNVE_SRC/tests/tools/tnve-lib.sh"

SEED=${TNVE_MODEL_SEED:-$(($(date +%s%N) / 1000 % 1000000))}
NDOM=${TNVE_MODEL_DOMAINS:-20}
NOPS=${TNVE_MODEL_OPS:-400}  # steps: about 530 operations
SETTLE=${TNVE_MODEL_SETTLE:-10}       # seconds to converge after an ordinary step
SETTLE_RESTART=${TNVE_MODEL_SETTLE_RESTART:-30}
RANDOM=$SEED
STEP=0 OP=
log "seed=$SEED domains=$NDOM steps=$NOPS"

die() {
    echo "--- step $STEP: $OP"
    fail "$* (seed=$SEED; replay: TNVE_MODEL_SEED=$SEED TNVE_MODEL_OPS=$NOPS TNVE_MODEL_DOMAINS=$NDOM)"
}

# ---- the VNs: metadata attributes of each form, and the key the nNVE shows it by ---------
FORM_ATTR=("vn-id='5000' vn-name='blue'" "vn-name='red'" "vn-id='5001'" "vn-name='green'"
    "vn-id='5002'" "vn-name='yellow'")
NFORMS=${#FORM_ATTR[@]}
# FK := the key of a VN as `nnvectl show` names it (its ID, else its name)
form_key() {
    case $1 in
    *vn-id=?5000*) FK=5000 ;; *vn-name=?red*) FK=5001 ;; *vn-id=?5001*) FK=5001 ;;
    *vn-name=?green*) FK=5004 ;; *vn-id=?5002*) FK=5002 ;; *vn-name=?yellow*) FK=5003 ;;
    *) FK="?" ;;
    esac
}

# ---- daemons ------------------------------------------------------------------------------
NNVE_LOGS=0
# start_model_nnve: nnve-daemon on the port held for the whole test (hold_nnve_port: socket
# activation), so a restarted daemon is where the agent looks and nothing takes the port.
start_model_nnve() {
    [ -f "$T/pki/ca.crt" ] || "$S/scripts/gen-pki.sh" "$T/pki" nnve1 hv1 >/dev/null 2>&1 || fail "gen-pki"
    [ -n "${NNVE_PORT:-}" ] || hold_nnve_port
    cat >"$T/nnve.conf" <<CONF
[global]
listen = 127.0.0.1:$NNVE_PORT
$(nnve_conf_common)
hold_time = 60s
tag_hold_down = 1h
sync = full

[domain d1]
ports = *
tags = 100-199

[hypervisor hv1]
port = p1
vns = blue, red, green, yellow, 5000-5999

[vn blue]
id = 5000
[vn red]
id = 5001
[vn yellow]
id = 5003
[vn green]
id = 5004
CONF
    rm -f "$T/nnve.ctl"
    # (listen-socket run execs the daemon: $! is its PID)
    "$B/tests/tools/listen-socket" run "$T/nnve-listen.sock" "$B/bin/nnve-daemon" \
        -c "$T/nnve.conf" >>"$T/nnve.log" 2>&1 &
    NNVE_PID=$!
    NNVE_LOGS=$((NNVE_LOGS + 1))
    started() { [ "$(grep -c 'daemon: started' "$T/nnve.log")" -ge "$NNVE_LOGS" ]; }
    wait_for "nnve-daemon start" 20 started
    wait_for "nnve control socket" 10 test -S "$T/nnve.ctl"
}
# stop_proc PID SIG: SIGTERM must end it with status 0; SIGKILL just ends it.
stop_proc() {
    local pid=$1 sig=$2 rc=0
    if [ "$sig" = KILL ]; then
        kill -KILL "$pid"
        wait "$pid" 2>/dev/null
        return 0
    fi
    stop_pid "$pid" || rc=$?
    [ $rc = 0 ] || die "process $pid exit status $rc after SIGTERM"
}
restart_agent_begin() { stop_proc "$AGENT_PID" "$1"; AGENT_PID=; rm -f "$T/agent.ctl"; }
restart_nnve_begin() { stop_proc "$NNVE_PID" "$1"; NNVE_PID=; }

# ---- domains ------------------------------------------------------------------------------
declare -a NV LIVE CFG   # vNIC count; forms per (domain, vNIC) as "n.k"
declare -A LIVEF CFGF
domain_file() {
    local n=$1 k iface="" meta=""
    for k in $(seq 1 "${NV[$n]}"); do
        iface="$iface<interface type='bridge'><mac address='$(mac_of "$n" "$k")'/><source bridge='br-x'/></interface>"
        meta="$meta<splitnve:vnic mac='$(mac_of "$n" "$k")' ${FORM_ATTR[${CFGF[$n.$k]}]}/>"
    done
    cat >"$T/vm$n.xml" <<XML
<domain type='test'>
  <name>vm$n</name>
  <uuid>$(uuid_of "$n")</uuid>
  <memory unit='KiB'>65536</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <metadata><splitnve:vnics xmlns:splitnve='urn:splitnve:vn:1'>$meta</splitnve:vnics></metadata>
  <devices>$iface</devices>
</domain>
XML
}
# meta_of N WHICH(LIVEF|CFGF): the <vnics> element for virsh metadata --set
meta_of() {
    local n=$1 k out="<vnics>"
    local -n m=$2
    for k in $(seq 1 "${NV[$n]}"); do
        out="$out<vnic mac='$(mac_of "$n" "$k")' ${FORM_ATTR[${m[$n.$k]}]}/>"
    done
    echo "$out</vnics>"
}

# ---- the model: what the nNVE must hold, from libvirt's state ------------------------------
declare -A EXP          # tsi -> "key state"
declare -A TAG_OF       # VN key -> its tag, once seen
declare -A VN_OF_TAG    # tag -> VN key
# model_domain N: re-reads vmN from libvirt and replaces its entries in EXP.
model_domain() {
    local n=$1 out st="" state="" line mac attrs key
    local uuid
    uuid=$(uuid_of "$n")
    for line in "${!EXP[@]}"; do [[ $line == "$uuid"/* ]] && unset "EXP[$line]"; done
    out=$(virsh -q -c "$URI" "domstate --reason vm$n; dumpxml vm$n" 2>/dev/null) || return 0
    st=$(head -n 1 <<<"$out")
    case "$st" in
    running* | paused*) state=activated ;;
    "shut off (saved"*) state=associated ;;
    *) return 0 ;;
    esac
    local re='^<splitnve:vnic mac=.([0-9a-f:]+). (.*)>$'
    while IFS= read -r line; do
        [[ $line =~ $re ]] || continue
        mac=${BASH_REMATCH[1]}
        attrs=${BASH_REMATCH[2]}
        form_key "$attrs"
        EXP[$uuid/$mac]="$FK $state"
    done <<<"$(grep -o '<splitnve:vnic [^>]*>' <<<"$out")"
}
model_all() { local n; for n in $(seq 1 "$NDOM"); do model_domain "$n"; done; }
expected_tsis() { local t; for t in "${!EXP[@]}"; do echo "$t ${EXP[$t]}"; done | sort; }
expected_vns() { local t; for t in "${!EXP[@]}"; do echo "${EXP[$t]% *}"; done | sort -u; }

ACT_TSIS= ACT_VNS=
read_actual() {
    ACT_TSIS=$(nnvectl --json show tsis 2>/dev/null |
        jq -r '.[] | "\(.tsi) \(.vn_id // .vn_name) \(.state) \(.tag)"' | sort) || return 1
    ACT_VNS=$(nnvectl --json show vns 2>/dev/null |
        jq -r '.[] | select(.state == "connected") | "\(.vn_id // .vn_name) \(.tag)"' | sort) || return 1
}
EXP_TSIS= EXP_VNS=
converged() {
    read_actual || return 1
    [ "$(cut -d' ' -f1-3 <<<"$ACT_TSIS")" = "$EXP_TSIS" ] &&
        [ "$(cut -d' ' -f1 <<<"$ACT_VNS")" = "$EXP_VNS" ]
}
agent_quiet() {
    tnvectl --json show tsis 2>/dev/null | jq -e 'all(.[]; .pending == "-")' >/dev/null
}

# ---- one step's journal lines must be necessary -------------------------------------------
JLINES=0
declare -A PREV_EXP
snapshot() {
    PREV_EXP=()
    local t
    for t in "${!EXP[@]}"; do PREV_EXP[$t]=${EXP[$t]}; done
    JLINES=$(wc -l <"$T/journal" 2>/dev/null || echo 0)
}
vn_used() { # VN_KEY ARRAY_NAME
    local -n a=$2
    local t
    for t in "${!a[@]}"; do [ "${a[$t]% *}" = "$1" ] && return 0; done
    return 1
}
touched() { # TSI: whether its domain is one this step touched
    local n
    for n in "${TOUCHED[@]}"; do [[ $1 == "$(uuid_of "$n")"/* ]] && return 0; done
    return 1
}
# VN_KEY: used (before or after this step) by a domain the step did not touch
used_by_untouched() {
    local t
    for t in "${!EXP[@]}"; do [ "${EXP[$t]% *}" = "$1" ] && ! touched "$t" && return 0; done
    return 1
}
journal_key() { # vn=5000/blue -> 5000, vn=green -> green
    local v=${1#vn=}
    case $v in [0-9]*) echo "${v%%/*}" ;; *) echo "$v" ;; esac
}
check_journal() {
    local line verb tsi vn w idx=0
    declare -A seen_deassoc=()
    while IFS= read -r line; do
        idx=$((idx + 1))
        verb=${line%% *}
        case $verb in reconcile-begin | reconcile-end) continue ;; esac
        tsi="" vn=""
        for w in $line; do
            case $w in tsi=*) tsi=${w#tsi=} ;; vn=*) vn=$(journal_key "$w") ;; esac
        done
        case $verb in
        add-vn | remove-vn)
            local before=0 after=0
            vn_used "$vn" PREV_EXP && before=1
            vn_used "$vn" EXP && after=1
            if [ "$MULTI" = 1 ]; then
                ! used_by_untouched "$vn" ||
                    die "journal line for a VN other domains kept using: $line"
            else
                [ $before != $after ] ||
                    die "unnecessary journal line: $line (VN $vn used before=$before after=$after)"
            fi
            ;;
        *-tsi)
            [ "${PREV_EXP[$tsi]:-}" != "${EXP[$tsi]:-}" ] || { [ "$MULTI" = 1 ] && touched "$tsi"; } ||
                die "unnecessary journal line: $line (model unchanged: ${EXP[$tsi]:-none})"
            if [ "$verb" = deassociate-tsi ]; then
                seen_deassoc[$tsi]=1
            elif [ "$MULTI" = 0 ] && [ -n "${PREV_EXP[$tsi]:-}" ] && [ -n "${EXP[$tsi]:-}" ] &&
                [ "${PREV_EXP[$tsi]% *}" != "${EXP[$tsi]% *}" ] && [ -z "${seen_deassoc[$tsi]:-}" ]; then
                die "moved TSI $tsi entered its new VN before leaving the old: $line"
            fi
            ;;
        esac
    done <<<"$(tail -n +"$((JLINES + 1))" "$T/journal" 2>/dev/null)"
}
# tags: one per VN, the same for the whole run, never another VN's, every TSI with its VN's
check_tags() {
    local key tag tsi st
    while read -r key tag; do
        [ -n "$key" ] || continue
        [ -z "${TAG_OF[$key]:-}" ] || [ "${TAG_OF[$key]}" = "$tag" ] ||
            die "VN $key changed tag: ${TAG_OF[$key]} -> $tag"
        [ -z "${VN_OF_TAG[$tag]:-}" ] || [ "${VN_OF_TAG[$tag]}" = "$key" ] ||
            die "tag $tag went from VN ${VN_OF_TAG[$tag]} to VN $key within its hold-down"
        TAG_OF[$key]=$tag
        VN_OF_TAG[$tag]=$key
    done <<<"$ACT_VNS"
    while read -r tsi key st tag; do
        [ -n "$tsi" ] || continue
        [ "$tag" = "${TAG_OF[$key]}" ] || die "TSI $tsi has tag $tag, its VN $key has ${TAG_OF[$key]}"
    done <<<"$ACT_TSIS"
}
# tnvectl lists each vNIC and each VN once, with nothing left pending
check_agent_show() {
    local dup
    dup=$(tnvectl --json show tsis | jq -r '.[].tsi' | sort | uniq -d)
    [ -z "$dup" ] || die "tnvectl show tsis lists a vNIC twice: $dup"
    dup=$(tnvectl --json show vns | jq -r '.[] | "\(.vn_id // .vn_name)"' | sort | uniq -d)
    [ -z "$dup" ] || die "tnvectl show vns lists a VN twice: $dup"
    tnvectl --json show tsis | jq -e 'all(.[]; has("desired") and has("acked") and has("error"))' >/dev/null ||
        die "tnvectl show tsis lacks desired/acked/error"
}

settle() { # SECONDS
    local deadline=$(($(date +%s%N) / 1000000 + $1 * 1000))
    EXP_TSIS=$(expected_tsis)
    EXP_VNS=$(expected_vns)
    sleep 0.02
    until converged; do
        if [ $(($(date +%s%N) / 1000000)) -ge $deadline ]; then
            echo "--- expected tsis"; expected_tsis
            echo "--- actual tsis"; echo "$ACT_TSIS"
            echo "--- expected vns"; expected_vns
            echo "--- actual vns"; echo "$ACT_VNS"
            echo "--- agent"; tnvectl show session; tnvectl show tsis; tnvectl show vns
            die "no convergence within $1 s"
        fi
        sleep 0.05
    done
    # what is converged at the nNVE is settled at the agent too (nothing more to send)
    [ $((STEP % 10)) != 0 ] || wait_for "agent idle (seed=$SEED step=$STEP)" 10 agent_quiet
}

# ---- operations ---------------------------------------------------------------------------
R=0
rnd() { R=$((RANDOM % $1)); }
TOUCHED=()
lifecycle_op() { # one random libvirt operation; sets OP and TOUCHED
    local n k f flags
    rnd "$NDOM"; n=$((R + 1))
    TOUCHED+=("$n")
    rnd 100
    if [ $R -lt 8 ]; then
        domain_file "$n"; OP="define $T/vm$n.xml"
    elif [ $R -lt 22 ]; then OP="start vm$n"
    elif [ $R -lt 28 ]; then OP="suspend vm$n"
    elif [ $R -lt 34 ]; then OP="resume vm$n"
    elif [ $R -lt 40 ]; then OP="destroy vm$n"
    elif [ $R -lt 43 ]; then OP="shutdown vm$n"
    elif [ $R -lt 50 ]; then OP="managedsave vm$n"
    elif [ $R -lt 54 ]; then OP="undefine vm$n"
    elif [ $R -lt 57 ]; then OP="undefine --managed-save vm$n"
    else
        rnd "${NV[$n]}"; k=$((R + 1))
        rnd "$NFORMS"; f=$R
        rnd 3
        case $R in
        0) flags=--live; LIVEF[$n.$k]=$f ;;
        1) flags=--config; CFGF[$n.$k]=$f ;;
        2) flags="--live --config"; LIVEF[$n.$k]=$f; CFGF[$n.$k]=$f ;;
        esac
        if [ "$flags" = --config ]; then
            OP="metadata vm$n --uri urn:splitnve:vn:1 --key splitnve --set \"$(meta_of "$n" CFGF)\" --config"
        else
            OP="metadata vm$n --uri urn:splitnve:vn:1 --key splitnve --set \"$(meta_of "$n" LIVEF)\" $flags"
        fi
    fi
    virsh_c "$OP" >/dev/null 2>&1 || true
    NOPS_DONE=$((NOPS_DONE + 1))
    # the shadow of libvirt's two definitions (only used to write whole metadata sets)
    case $OP in
    destroy* | shutdown* | managedsave* | start*)
        for k in $(seq 1 "${NV[$n]}"); do LIVEF[$n.$k]=${CFGF[$n.$k]}; done ;;
    esac
}

# ---- run ----------------------------------------------------------------------------------
start_libvirtd
start_model_nnve
ADDRESS_POLL=0 start_agent
session_ready() { tnvectl --json show session | jq -e '.state == "up" and .sync == "ready"'; }
wait_for "agent session up" 10 session_ready
virsh_c "destroy test; undefine test" >/dev/null 2>&1

for n in $(seq 1 "$NDOM"); do
    rnd 3; NV[$n]=$((R + 1))
    for k in $(seq 1 "${NV[$n]}"); do rnd "$NFORMS"; CFGF[$n.$k]=$R; LIVEF[$n.$k]=$R; done
    domain_file "$n"
done
# every domain defined, about half of them running
cmds=""
for n in $(seq 1 "$NDOM"); do
    cmds="${cmds}define $T/vm$n.xml; "
    rnd 2; [ $R = 0 ] && cmds="${cmds}start vm$n; "
done
virsh -q -c "$URI" "$cmds" >/dev/null || fail "initial domains"
model_all
settle "$SETTLE_RESTART"
check_tags
log "initial: $(expected_tsis | grep -c activated) activated, $(expected_vns | grep -c .) VNs"

declare -A COUNT=()
NOPS_DONE=0 # operations: libvirt operations (each one of a burst) and restarts
t0=$SECONDS
for STEP in $(seq 1 "$NOPS"); do
    snapshot
    TOUCHED=()
    limit=$SETTLE
    MULTI=1
    rnd 100
    if [ $R -lt 5 ]; then
        rnd 8
        OP="burst of $((R + 3))"
        for _ in $(seq 1 $((R + 3))); do lifecycle_op; done
        OP="burst of ${#TOUCHED[@]} operations"
        COUNT[burst]=$((${COUNT[burst]:-0} + 1))
    elif [ $R -lt 9 ]; then
        rnd 4
        who=$([ $R -lt 2 ] && echo agent || echo nnve)
        sig=$([ $((R % 2)) = 0 ] && echo TERM || echo KILL)
        "restart_${who}_begin" "$sig"
        NOPS_DONE=$((NOPS_DONE + 1))
        rnd 4
        OP="restart $who SIG$sig with $R operations while down"
        for _ in $(seq 1 "$R"); do lifecycle_op; done
        OP="restart $who SIG$sig (${#TOUCHED[@]} operations while down)"
        if [ "$who" = agent ]; then start_agent; else start_model_nnve; fi
        COUNT[restart-$who-$sig]=$((${COUNT[restart-$who-$sig]:-0} + 1))
        limit=$SETTLE_RESTART
    else
        MULTI=0
        lifecycle_op
        set -- $OP
        COUNT[$1]=$((${COUNT[$1]:-0} + 1))
    fi
    for n in "${TOUCHED[@]}"; do model_domain "$n"; done
    settle "$limit"
    check_journal
    check_tags
    [ $((STEP % 25)) = 0 ] && check_agent_show
    [ $((STEP % ${TNVE_MODEL_LOG_EVERY:-100})) = 0 ] && log "step $STEP: $(expected_tsis | grep -c activated) activated, $(expected_tsis | grep -c associated) associated, $(expected_vns | grep -c .) VNs"
done
check_agent_show
# libvirt's truth as a whole (not just the touched domains) still matches
model_all
settle "$SETTLE"
stop_pid "$AGENT_PID"; rc=$?; AGENT_PID=
[ $rc = 0 ] || die "agent exit status $rc after SIGTERM"
ops=""
for k in $(printf '%s\n' "${!COUNT[@]}" | sort); do ops="$ops $k=${COUNT[$k]}"; done
log "PASS seed=$SEED steps=$NOPS operations=$NOPS_DONE domains=$NDOM in $((SECONDS - t0)) s; steps:$ops"
