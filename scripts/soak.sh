#!/bin/bash
# soak.sh: the long run of the model-based random test (tests/integration/test-tnve-model.sh)
#   scripts/soak.sh BUILD_DIR
# SOAK_SEEDS (default "1 2 3 4") runs side by side, SOAK_OPS steps each (default 2500: 10,000
# operations in all); beside them the dual-homed agent's soak (test-tnve-dual.sh with
# SOAK_DUAL_OPS random steps, default 1000; log soak-dual.log).  Each run's log is
# BUILD_DIR/test-logs/soak-SEED.log; prints one line per run.  Then the migration soak
# (scripts/soak-migrate.sh, SOAK_MIGRATIONS, SOAK_MIG_SEED).  Exits non-zero if anything failed.
set -u
build=$(cd "${1:?usage: soak.sh BUILD_DIR}" && pwd)
top=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$build/test-logs"
# bash reads a script as it runs it: the runs use a copy, so the tree may change meanwhile
copy=$(mktemp /tmp/soak-model.XXXXXX) copy_mig=$(mktemp /tmp/soak-migrate.XXXXXX)
trap 'rm -f "$copy" "$copy_mig"' EXIT
cp "$top/tests/integration/test-tnve-model.sh" "$copy"
pids=() seeds=()
for seed in ${SOAK_SEEDS:-1 2 3 4}; do
    SPLITNVE_BUILD=$build SPLITNVE_SRC=$top TNVE_MODEL_SEED=$seed TNVE_MODEL_OPS=${SOAK_OPS:-2500} \
        bash "$copy" >"$build/test-logs/soak-$seed.log" 2>&1 &
    pids+=($!) seeds+=("$seed")
done
# the dual-homed agent: random VM lifecycle, switch kills and restarts (test-tnve-dual.sh)
dual_copy=$(mktemp /tmp/soak-dual.XXXXXX)
trap 'rm -f "$copy" "$copy_mig" "$dual_copy"' EXIT
cp "$top/tests/integration/test-tnve-dual.sh" "$dual_copy"
SPLITNVE_BUILD=$build SPLITNVE_SRC=$top TNVE_DUAL_SOAK_OPS=${SOAK_DUAL_OPS:-1000} \
    bash "$dual_copy" >"$build/test-logs/soak-dual.log" 2>&1 &
pids+=($!) seeds+=("dual")
rc=0
for i in "${!pids[@]}"; do
    if wait "${pids[$i]}"; then
        grep 'PASS' "$build/test-logs/soak-${seeds[$i]}.log" | tail -1
    else
        rc=1
        echo "FAIL seed=${seeds[$i]} (log: $build/test-logs/soak-${seeds[$i]}.log)"
        grep -E 'FAIL|--- step' "$build/test-logs/soak-${seeds[$i]}.log" | tail -2
    fi
done
# The migration stage (scripts/soak-migrate.sh): SOAK_MIGRATIONS (default 100) live
# migrations between two libvirtd hosts with a real QEMU guest and random failures; after
# the model runs (the machine has 2 cores); skipped when the machine cannot run QEMU guests.
cp "$top/scripts/soak-migrate.sh" "$copy_mig"
SPLITNVE_SRC=$top bash "$copy_mig" "$build"
mrc=$?
[ $mrc -eq 0 ] || [ $mrc -eq 77 ] || rc=1
exit $rc
