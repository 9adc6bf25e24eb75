#!/usr/bin/env bash
# heal_study — Router-KD (issue 6) on the reference model's REAP-pruned students
# (runs/reap/reap-25, reap-50; scripts/reap_results.sh or scripts/loops_study.sh
# make them): the GLM-5.2-504B report's setting (lr 5e-5, top-20 teacher, τ 1)
# and a stronger one (lr 1e-3), each for STEPS steps of 8 windows × 512 tokens
# of the train split, held-out KL on the first 32768 test predictions every 50
# steps (the best gates kept). Then `eval kl` of every student before and after
# on the REAP study's held-out cache (65536 test predictions, top-64), per
# source. Writes RUNS/<student>-<setting>/ (the healed models), RUNS/*.heal.json
# and RUNS/kl.json.
#   usage: scripts/heal_study.sh [RUNS_DIR]   (default runs/heal)
#   env: SETTINGS="strong paper", STEPS (200), THREADS
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./build/demolish
TEACHER=models/reference
REAP=${REAP:-runs/reap}
R=${1:-runs/heal}
STEPS=${STEPS:-200}
mkdir -p "$R"
declare -A LR=([paper]=5e-5 [strong]=1e-3)
students=()
for s in ${SETTINGS:-strong paper}; do
  for pct in 25 50; do
    out=$R/reap$pct-$s
    if [ ! -d "$out" ]; then
      "$BIN" heal router "$REAP/reap-$pct" --teacher "$TEACHER" --data data/corpus:train --max-tokens 262144 \
        --heldout data/corpus:test --heldout-max-tokens 32768 --cache "$R/kd-train.kl" --heldout-cache "$R/held.kl" \
        --steps "$STEPS" --batch 8 --lr "${LR[$s]}" --topk 20 --eval-every 50 --out "$out" ${THREADS:+-t $THREADS} \
        --json >"$out.heal.json"
    fi
    students+=("$out")
  done
done
# the REAP table's held-out set: 65536 test predictions, top-64 teacher cache (runs/reap/teacher.test.kl)
"$BIN" eval kl "$TEACHER" "$REAP/reap-25" "$REAP/reap-50" "${students[@]}" --data data/corpus:test \
  --max-tokens 65536 --cache "$REAP/teacher.test.kl" --json -q >"$R/kl.json"
echo "wrote $R/kl.json"
