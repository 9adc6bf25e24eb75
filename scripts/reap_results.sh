#!/usr/bin/env bash
# reap_results — the pruning study on the reference model (issue 4): held-out
# KL to the unpruned teacher after removing 25 % and 50 % of the routed
# experts of every MoE layer (the MTP layer included), for
#   criteria     reap, frequency, ean, soft-frequency, random (3 seeds)       uniform plans
#   budgets      reap uniform vs reap non-uniform (water-filling) at the same total
#   calibration  all domains vs code only vs prose only (per-domain KL: the cost of calibrating narrow)
#   gates        the model's true gate vs the Cerebras softmax gate (with and without renorm)
# Calibration: the first CAL_TOKENS tokens of the train split; held-out: the
# first EVAL_TOKENS predictions of the test split (per source in the report).
# Writes RUNS/results.json (every `eval kl --json` report; copied to
# models/reference/eval/reap.json for the model card) and RUNS/results.md (a table).
#   usage: scripts/reap_results.sh [RUNS_DIR]   (default runs/reap)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./build/demolish
MODEL=models/reference
R=${1:-runs/reap}
CAL_TOKENS=${CAL_TOKENS:-131072}
EVAL_TOKENS=${EVAL_TOKENS:-65536}
PY=/usr/bin/python3
mkdir -p "$R"
[ -d data/corpus ] || "$BIN" corpus build --out data/corpus

# ---- calibration runs ----
calib() {   # NAME GATE [SOURCE]
  local out=$R/stats-$1.st
  [ -f "$out" ] && return 0
  "$BIN" calibrate "$MODEL" --data data/corpus:train --max-tokens "$CAL_TOKENS" --gate "$2" --no-imatrix \
    ${3:+--source "$3"} --out "$out" -q
}
calib all model
calib cerebras cerebras
calib cerebras-renorm cerebras-renorm
calib code model code
calib prose model prose

# ---- plans and pruned models ----
students=()
prune_one() {   # NAME STATS PLAN-ARGS...
  local name=$1 stats=$2; shift 2
  if [ ! -d "$R/$name" ]; then
    "$BIN" plan "$R/stats-$stats.st" "$@" --out "$R/$name.plan.json" -q > /dev/null
    "$BIN" prune "$MODEL" --plan "$R/$name.plan.json" --out "$R/$name" -q
  fi
  students+=("$R/$name")
}
total=$("$BIN" info "$MODEL" --json | $PY -c 'import json,sys; print(sum(json.load(sys.stdin)["experts_per_layer"]))')
for keep in 0.75 0.5; do
  pct=$($PY -c "print(round(100 * (1 - $keep)))")
  for c in reap frequency ean soft-frequency; do
    prune_one "$c-$pct" all --criterion "$c" --keep "$keep"
  done
  for seed in 1 2 3; do
    prune_one "random$seed-$pct" all --criterion random --seed "$seed" --keep "$keep"
  done
  budget=$($PY -c "print(round($keep * $total))")
  prune_one "reap-nu-$pct" all --criterion reap --non-uniform --budget-experts "$budget"
  prune_one "reap-code-$pct" code --criterion reap --keep "$keep"
  prune_one "reap-prose-$pct" prose --criterion reap --keep "$keep"
  prune_one "reap-cerebras-$pct" cerebras --criterion reap --keep "$keep"
  prune_one "reap-cerebras-renorm-$pct" cerebras-renorm --criterion reap --keep "$keep"
done

# ---- KL to the teacher on held-out text ----
"$BIN" eval kl "$MODEL" "${students[@]}" --data data/corpus:test --max-tokens "$EVAL_TOKENS" \
  --cache "$R/teacher.test.kl" --json > "$R/results.json"
cp "$R/results.json" "$MODEL/eval/reap.json"   # the model card's pruning section reads it
$PY scripts/reap_table.py "$R/results.json" | tee "$R/results.md"
