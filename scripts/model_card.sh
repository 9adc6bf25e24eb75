#!/usr/bin/env bash
# Measures models/reference (or MODEL_DIR) for its model card and writes
# MODEL_DIR/MODEL_CARD.md (+ routing.png) from the results kept in MODEL_DIR/eval/:
#   held-out test loss per domain (sparse DSA attention as served, and dense for comparison),
#   greedy exact-match accuracy on held-out reasoning problems and the </think> close rate,
#   expert load balance and per-domain routing, generation samples, the recipe and its wall time.
# usage: scripts/model_card.sh [MODEL_DIR] [--reasoning-n N]
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-models/reference}
N=${REASONING_N:-500}
BIN=./build/demolish
E="$M/eval"
mkdir -p "$E"
"$BIN" info "$M" --json > "$E/info.json"
"$BIN" eval ppl "$M" --data data/corpus:test --json > "$E/ppl_test.json"
"$BIN" eval ppl "$M" --data data/corpus:test --dense-attention --json > "$E/ppl_test_dense.json"
"$BIN" eval routing "$M" --data data/corpus:test --json > "$E/routing_test.json"
"$BIN" eval reasoning "$M" -n "$N" --json > "$E/reasoning.json"
: > "$E/samples.txt"
sample() {   # name, prompt, options
  local name=$1 prompt=$2; shift 2
  { echo "=== $name: demolish generate $M -p \"$prompt\" $*"; "$BIN" generate "$M" -q -p "$prompt" "$@"; echo; } >> "$E/samples.txt" 2>/dev/null
}
sample code "def parse_args(" -n 120 --temp 0.7 --min-p 0.05 --seed 1
sample code-greedy "def parse_args(" -n 120 --temp 0
sample prose "The memory management subsystem" -n 120 --temp 0.7 --min-p 0.05 --seed 1
sample prose-greedy "This document describes" -n 120 --temp 0
sample reasoning "What is 4821 + 3397?" -n 200 --temp 0
/usr/bin/python3 scripts/model_card.py "$M"
