#!/usr/bin/env bash
# loops_study — the GLM-5.2-504B loop study (issue 5) reproduced on the
# reference model: the teacher (models/reference), its REAP-pruned versions
# (25 % and 50 % of the routed experts removed, uniform plans from the issue-4
# calibration) and, when present, their Router-KD-healed versions (issue 6,
# scripts/heal_study.sh), sampled on the held-out prompt set under four samplers:
#   raw         temp 0.6, top_p 0.95 (GLM's recommended thinking settings)
#   gentle      raw + min_p 0.05 + repetition penalty 1.05 (scope all)
#   strong      raw + min_p 0.05 + repetition penalty 1.10 (the report's guardrail)
#   hesitation  raw + hesitation-marker penalty λ = HES (default 3)
# Phase 1: every prompt (2100: code, prose, reasoning), token cap 320 — the loop
# rates. Phase 2: the 700 reasoning prompts again with a cap of 512, above the
# longest reference trace (432 tokens; 9 % exceed 320), so that EOS, runaway
# and </think> rates of reasoning are not cut by the cap.
# Every run uses the same prompts and seed, so model-vs-model and
# sampler-vs-raw comparisons are paired (McNemar) as well as unpaired (z).
# Writes RUNS/<model>-<sampler>.jsonl (resumable: rerun to continue), the
# compare reports RUNS/cmp-*.json, RUNS/report.md + report.svg and
# RUNS/study.json (summaries and comparisons); phase 2 the same under
# RUNS/reasoning/.
#   usage: scripts/loops_study.sh [RUNS_DIR]   (default runs/loops)
#   env: MODELS="teacher reap25 reap50 heal25 heal50" (those present by default),
#        SAMPLERS="raw gentle strong hesitation", PHASES="1 2",
#        HEAL25 / HEAL50 (healed model dirs), MAX_TOKENS, BATCH, HES
# Comparisons and the report cover the runs of this invocation's MODELS and SAMPLERS.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./build/demolish
TEACHER=models/reference
PROMPTS=models/reference/eval/prompts-heldout.jsonl
R=${1:-runs/loops}
REAP=${REAP:-runs/reap}
MAX_TOKENS=${MAX_TOKENS:-320}
BATCH=${BATCH:-64}
HES=${HES:-3}
SEED=1
PY=/usr/bin/python3
mkdir -p "$R/reasoning"

# ---- the pruned students (the same commands as scripts/reap_results.sh) ----
[ -d data/corpus ] || "$BIN" corpus build --out data/corpus
pruned() {   # PCT KEEP
  local dir=$REAP/reap-$1
  if [ ! -d "$dir" ]; then
    mkdir -p "$REAP"
    [ -f "$REAP/stats-all.st" ] || "$BIN" calibrate "$TEACHER" --data data/corpus:train --max-tokens 131072 \
      --gate model --no-imatrix --out "$REAP/stats-all.st" -q
    "$BIN" plan "$REAP/stats-all.st" --criterion reap --keep "$2" --out "$REAP/reap-$1.plan.json" -q >/dev/null
    "$BIN" prune "$TEACHER" --plan "$REAP/reap-$1.plan.json" --out "$dir" -q
  fi
}
pruned 25 0.75
pruned 50 0.5
declare -A MODEL=([teacher]=$TEACHER [reap25]=$REAP/reap-25 [reap50]=$REAP/reap-50
                  [heal25]=${HEAL25:-runs/heal/reap25-strong} [heal50]=${HEAL50:-runs/heal/reap50-strong})
if [ -z "${MODELS:-}" ]; then
  MODELS="teacher reap25 reap50"
  for h in heal25 heal50; do if [ -d "${MODEL[$h]}" ]; then MODELS="$MODELS $h"; fi; done
fi
read -r -a MODELS <<<"$MODELS"
declare -A SAMPLER=(
  [raw]="--sampler temp=0.6,top_p=0.95"
  [gentle]="--sampler temp=0.6,top_p=0.95 --guardrail gentle"
  [strong]="--sampler temp=0.6,top_p=0.95 --guardrail strong"
  [hesitation]="--sampler temp=0.6,top_p=0.95 --hesitation-penalty $HES"
)
read -r -a SAMPLERS <<<"${SAMPLERS:-raw gentle strong hesitation}"
$PY -c 'import json,sys
with open(sys.argv[2], "w") as f:
    for l in open(sys.argv[1]):
        if json.loads(l)["source"] == "reasoning":
            f.write(l)' "$PROMPTS" "$R/reasoning/prompts.jsonl"

run_phase() {   # DIR PROMPTS CAP
  local d=$1 prompts=$2 cap=$3
  for m in "${MODELS[@]}"; do
    for s in "${SAMPLERS[@]}"; do
      echo "== $d: $m / $s"
      # shellcheck disable=SC2086
      "$BIN" eval loops "${MODEL[$m]}" --prompts "$prompts" --max-tokens "$cap" --batch "$BATCH" --seed $SEED \
        ${SAMPLER[$s]} --out "$d/$m-$s.jsonl" --json -q >"$d/$m-$s.summary.json"
    done
  done
  # comparisons among every run present in the directory (earlier invocations' too)
  cmp() {   # A B
    [ -f "$d/$1.jsonl" ] && [ -f "$d/$2.jsonl" ] || return 0
    "$BIN" eval compare "$d/$1.jsonl" "$d/$2.jsonl" --json >"$d/cmp-$1--$2.json"
  }
  local all_s=(raw gentle strong hesitation) runs=()
  for s in "${all_s[@]}"; do
    for m in reap25 reap50 heal25 heal50; do cmp teacher-$s $m-$s; done
    cmp reap25-$s heal25-$s
    cmp reap50-$s heal50-$s
  done
  for m in teacher reap25 reap50 heal25 heal50; do
    for s in gentle strong hesitation; do cmp $m-raw $m-$s; done
    for s in "${all_s[@]}"; do if [ -f "$d/$m-$s.jsonl" ]; then runs+=("$d/$m-$s.jsonl"); fi; done
  done
  "$BIN" eval report "${runs[@]}" --out "$d/report.md" >/dev/null
  $PY - "$d" <<'PYEOF'
import glob, json, os, sys
r = sys.argv[1]
out = {"summaries": {}, "compare": {}}
for f in sorted(glob.glob(os.path.join(r, "*.summary.json"))):
    out["summaries"][os.path.basename(f)[:-len(".summary.json")]] = json.load(open(f))
for f in sorted(glob.glob(os.path.join(r, "cmp-*.json"))):
    out["compare"][os.path.basename(f)[4:-5]] = json.load(open(f))
json.dump(out, open(os.path.join(r, "study.json"), "w"), indent=1)
PYEOF
  echo "wrote $d/study.json, $d/report.md"
}
for p in ${PHASES:-1 2}; do
  case $p in
    1) run_phase "$R" "$PROMPTS" "$MAX_TOKENS" ;;
    2) run_phase "$R/reasoning" "$R/reasoning/prompts.jsonl" 512 ;;
  esac
done
