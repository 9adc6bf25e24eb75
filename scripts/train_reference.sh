#!/usr/bin/env bash
# The reference model's whole recipe, from Debian packages to a measured model:
#   corpus build (Python stdlib, kernel docs, synthetic reasoning) → byte-level BPE
#   tokenizer → training (dense stage, indexer warm-up, sparse stage; configs/reference.json)
#   → the model card's measurements (scripts/model_card.sh).
# Resumable: run it again after an interruption and training continues from
# models/reference.ckpt. Wall time of each phase goes to models/reference.recipe.json.
# usage: scripts/train_reference.sh [--fresh]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./build/demolish
OUT=models/reference
[ -x "$BIN" ] || bash scripts/build.sh Release
if [ "${1:-}" = --fresh ]; then rm -rf "$OUT.ckpt" "$OUT.log.jsonl" "$OUT.recipe.json"; fi
t0=$(date +%s.%N)
"$BIN" corpus build --out data/corpus --force
t1=$(date +%s.%N)
[ -f "$OUT/tokenizer.json" ] || "$BIN" tokenizer train data/corpus --vocab 8192 --out "$OUT/tokenizer.json"
t2=$(date +%s.%N)
resume=""
[ -d "$OUT.ckpt" ] && resume=--resume
"$BIN" train --config configs/reference.json --data data/corpus --tokenizer "$OUT/tokenizer.json" --out "$OUT" $resume
t3=$(date +%s.%N)
/usr/bin/python3 - "$OUT.recipe.json" "$t0" "$t1" "$t2" "$t3" "$resume" <<'PY'
import json, os, sys
path, t0, t1, t2, t3, resume = sys.argv[1], *map(float, sys.argv[2:6]), sys.argv[6]
prev = json.load(open(path)) if os.path.exists(path) and resume else {}
rec = {"corpus_s": t1 - t0, "tokenizer_s": t2 - t1,
       "train_s": prev.get("train_s", 0) + (t3 - t2) if resume else t3 - t2,
       "threads": os.cpu_count()}
json.dump(rec, open(path, "w"), indent=1)
print("recipe wall time:", rec)
PY
