#!/usr/bin/env bash
# loops_study — the GLM-5.2-504B loop study (issue 5) reproduced on the
# reference model: the teacher (models/reference) and its REAP-pruned
# versions (25 % and 50 % of the routed experts removed, uniform plans from
# the issue-4 calibration) sampled on the held-out prompt set, n = all
# prompts (2100), under four samplers:
#   raw         temp 0.6, top_p 0.95 (GLM's recommended thinking settings)
#   gentle      raw + min_p 0.05 + repetition penalty 1.05 (scope all)
#   strong      raw + min_p 0.05 + repetition penalty 1.10 (the report's guardrail)
#   hesitation  raw + hesitation-marker penalty λ = HES (default 3)
# Every run uses the same prompts and seed, so pruned-vs-teacher and
# guardrail-vs-raw comparisons are paired (McNemar) as well as unpaired (z).
# Writes RUNS/<model>-<sampler>.jsonl (resumable: rerun to continue), the
# compare reports RUNS/cmp-*.json, RUNS/report.md + report.svg, and
# RUNS/study.json (every summary and comparison, for the write-up).
#   usage: scripts/loops_study.sh [RUNS_DIR]   (default runs/loops)
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
mkdir -p "$R"

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
declare -A MODEL=([teacher]=$TEACHER [reap25]=$REAP/reap-25 [reap50]=$REAP/reap-50)
declare -A SAMPLER=(
  [raw]="--sampler temp=0.6,top_p=0.95"
  [gentle]="--sampler temp=0.6,top_p=0.95 --guardrail gentle"
  [strong]="--sampler temp=0.6,top_p=0.95 --guardrail strong"
  [hesitation]="--sampler temp=0.6,top_p=0.95 --hesitation-penalty $HES"
)
MODELS=(teacher reap25 reap50)
SAMPLERS=(raw gentle strong hesitation)

# ---- generation ----
for m in "${MODELS[@]}"; do
  for s in "${SAMPLERS[@]}"; do
    echo "== $m / $s"
    # shellcheck disable=SC2086
    "$BIN" eval loops "${MODEL[$m]}" --prompts "$PROMPTS" --max-tokens "$MAX_TOKENS" --batch "$BATCH" --seed $SEED \
      ${SAMPLER[$s]} --out "$R/$m-$s.jsonl" --json -q >"$R/$m-$s.summary.json"
  done
done

# ---- comparisons: pruned vs teacher per sampler, guardrails vs raw per model ----
cmp() {   # A B
  "$BIN" eval compare "$R/$1.jsonl" "$R/$2.jsonl" --json >"$R/cmp-$1--$2.json"
}
for s in "${SAMPLERS[@]}"; do
  cmp teacher-$s reap25-$s
  cmp teacher-$s reap50-$s
done
for m in "${MODELS[@]}"; do
  for s in gentle strong hesitation; do cmp $m-raw $m-$s; done
done
runs=()
for m in "${MODELS[@]}"; do for s in "${SAMPLERS[@]}"; do runs+=("$R/$m-$s.jsonl"); done; done
"$BIN" eval report "${runs[@]}" --out "$R/report.md" >/dev/null

$PY - "$R" <<'EOF'
import glob, json, os, sys
r = sys.argv[1]
out = {"summaries": {}, "compare": {}}
for f in sorted(glob.glob(os.path.join(r, "*.summary.json"))):
    out["summaries"][os.path.basename(f)[:-len(".summary.json")]] = json.load(open(f))
for f in sorted(glob.glob(os.path.join(r, "cmp-*.json"))):
    out["compare"][os.path.basename(f)[4:-5]] = json.load(open(f))
json.dump(out, open(os.path.join(r, "study.json"), "w"), indent=1)
EOF
echo "wrote $R/study.json, $R/report.md"
