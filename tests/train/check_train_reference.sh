#!/usr/bin/env bash
# check_train_reference.sh — the C trainer against the float64 PyTorch oracle (issue 3 acceptance:
# whole tiny model loss and every parameter gradient vs autograd; a few AdamW steps match).
# Run by CTest from the repo root: bash tests/train/check_train_reference.sh <demolish> <scratch>.
# For each attention mode (dense, indexer-warmup, sparse) it runs `demolish train` for 4 steps on
# tests/reference/configs/train_tiny.json (every model feature on) reduced to that one stage, with
# --dump, and has tests/reference/train_ref.py compare the step-0 loss components and grads0, every
# step's losses and lr, and final.safetensors when the trainer writes it (tolerances and their
# reasons: train_ref.py). Then the config's own staged schedule (dense 2, indexer-warmup 2,
# sparse 2) for 6 steps. Dump format and semantics: /work/notes/train_contract.md.
set -u
BIN=${1:?usage: check_train_reference.sh DEMOLISH SCRATCH}
TMP=${2:?usage: check_train_reference.sh DEMOLISH SCRATCH}
PY=/usr/bin/python3
REF=tests/reference
CFG=$REF/configs/train_tiny.json
MODE_STEPS=4
rm -rf "$TMP" && mkdir -p "$TMP" || exit 1

if ! "$BIN" train --help >/dev/null 2>&1; then
    echo "FAIL: '$BIN train --help' fails: the trainer (src/train/) is not built into demolish"
    exit 1
fi

# 8192 seeded token ids (uint32 LE): random ids plus a repeated phrase every 64 tokens.
"$PY" - "$CFG" "$TMP/tokens.u32" <<'PYEOF' || exit 1
import json, sys
import numpy as np
V = json.load(open(sys.argv[1]))["model"]["vocab_size"]
rng = np.random.default_rng(20261124)
tok = rng.integers(0, V, 8192)
phrase = rng.integers(0, V, 12)
for p in range(0, len(tok) - 12, 64):
    tok[p:p + 12] = phrase
tok.astype("<u4").tofile(sys.argv[2])
PYEOF

# mode_config MODE STEPS OUT: train_tiny.json with one stage of MODE and a horizon of STEPS.
mode_config() {
    "$PY" - "$CFG" "$1" "$2" "$3" <<'PYEOF'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["train"]["stages"] = [{"mode": sys.argv[2], "steps": int(sys.argv[3])}]
doc["train"]["steps"] = int(sys.argv[3])
json.dump(doc, open(sys.argv[4], "w"), indent=1)
PYEOF
}

fails=0
# run_case TAG CONFIG STEPS [--mode MODE]
run_case() {
    local tag=$1 cfg=$2 steps=$3
    shift 3
    echo "== $tag: demolish train, $steps steps"
    if ! "$BIN" train --config "$cfg" --data-raw "$TMP/tokens.u32" --out "$TMP/out_$tag" \
            --steps "$steps" --dump "$TMP/dump_$tag" >"$TMP/train_$tag.log" 2>&1; then
        echo "FAIL: $tag: demolish train failed:"; tail -5 "$TMP/train_$tag.log"
        fails=$((fails + 1)); return
    fi
    if ! "$PY" "$REF/train_ref.py" check "$TMP/dump_$tag" --config "$cfg" --n "$steps" \
            --data-raw "$TMP/tokens.u32" "$@"; then
        echo "FAIL: $tag: oracle comparison"
        fails=$((fails + 1))
    fi
}

for mode in dense indexer-warmup sparse; do
    mode_config "$mode" "$MODE_STEPS" "$TMP/train_$mode.json" || exit 1
    run_case "$mode" "$TMP/train_$mode.json" "$MODE_STEPS" --mode "$mode"
done
run_case staged "$CFG" 6

if [ "$fails" -ne 0 ]; then
    echo "check_train_reference: FAIL ($fails of 4 runs)"
    exit 1
fi
echo "check_train_reference: ok"
