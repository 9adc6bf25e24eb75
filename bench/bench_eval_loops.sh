#!/usr/bin/env bash
# bench_eval_loops — generation throughput of `demolish eval loops` (issue 5):
# generated tokens per second with one sequence at a time (--batch 1) and with
# several batch sizes, interleaved round by round so machine drift hits every
# setting alike; prints the median of the rounds per setting and a JSON line.
# The work is the same in every setting: the first N prompts of the held-out
# set, seed 1, the study's sampler, max-tokens M.
#   usage: bench/bench_eval_loops.sh [MODEL] [N] [ROUNDS] [BATCHES...]
#          (default models/reference, 256 prompts, 3 rounds, batches 1 8 32 64)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/reference}
N=${2:-256}
ROUNDS=${3:-3}
shift $(($# < 3 ? $# : 3))
BATCHES=("$@")
[ ${#BATCHES[@]} -gt 0 ] || BATCHES=(1 8 32 64)
BIN=$PWD/build/demolish
PROMPTS=models/reference/eval/prompts-heldout.jsonl
M=320
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

declare -A tps
for r in $(seq 1 "$ROUNDS"); do
    for b in "${BATCHES[@]}"; do
        "$BIN" eval loops "$MODEL" --prompts "$PROMPTS" --n "$N" --max-tokens $M --sampler temp=0.6,top_p=0.95 \
            --seed 1 --batch "$b" --out "$TMP/run-$b-$r.jsonl" --json -q >"$TMP/out-$b-$r.json"
        t=$(/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.1f %d %.2f" % (d["tokens_per_s"], d["generated_tokens"], d["seconds"]))' "$TMP/out-$b-$r.json")
        echo "round $r batch $b: $t (tok/s, tokens, s)"
        tps[$b]="${tps[$b]:-} ${t%% *}"
    done
done
json="{\"model\": \"$MODEL\", \"prompts\": $N, \"max_tokens\": $M, \"rounds\": $ROUNDS, \"median_tok_s\": {"
sep=""
for b in "${BATCHES[@]}"; do
    med=$(printf '%s\n' ${tps[$b]} | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
    echo "batch $b: median $med tok/s over$(printf ' %s' ${tps[$b]})"
    json="$json$sep\"$b\": $med"
    sep=", "
done
echo "$json}}"
