#!/usr/bin/env bash
# check_reference_model — the committed reference model (models/reference)
# loads through the normal loader (every tensor validated by `info`), has the
# architecture issue 3 asks for, has learned something (held-out reasoning
# text: loss per token far below a random model's ln(vocab) ≈ 9.0; the model
# card measures 0.37 on the whole test split), and generates.
# usage: check_reference_model.sh <demolish> <scratch-dir>
set -u
BIN=$1
TMP=$2
M="$(cd "$(dirname "$0")/../.." && pwd)/models/reference"
PY=/usr/bin/python3
MAX_LOSS=1.0
fails=0
ok()   { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails+1)); }
rm -rf "$TMP" && mkdir -p "$TMP"
"$BIN" info "$M" --json > "$TMP/info.json" && ok "info validates every tensor" || fail "info $M"
$PY - "$M/config.json" <<'PYEOF' && ok "architecture: MLA, DSA index_topk < 512, >= 1 dense, >= 32 experts top >= 4, 1 shared, sigmoid + bias, 1 MTP" || fail "architecture"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["model_type"] == "glm_moe_dsa" and c["q_lora_rank"] and c["kv_lora_rank"], c
assert c["index_topk"] < 512 and c["first_k_dense_replace"] >= 1, c
assert c["n_routed_experts"] >= 32 and c["num_experts_per_tok"] >= 4 and c["n_shared_experts"] == 1, c
assert c["scoring_func"] == "sigmoid" and c["topk_method"] == "noaux_tc" and c["num_nextn_predict_layers"] == 1, c
PYEOF
"$BIN" corpus reasoning -n 20 --split test > "$TMP/reasoning.txt" || fail "corpus reasoning"
"$BIN" eval ppl "$M" --data "$TMP/reasoning.txt" --json -q > "$TMP/ppl.json" || fail "eval ppl"
$PY -c "
import json, sys; l = json.load(open('$TMP/ppl.json'))['total']['loss']
print(f'     held-out reasoning loss {l:.3f} nats/token (bound $MAX_LOSS)'); sys.exit(0 if l < $MAX_LOSS else 1)" \
    && ok "held-out loss below $MAX_LOSS" || fail "held-out loss"
out=$("$BIN" generate "$M" -p "def parse_args(" -n 24 --temp 0 -q 2>/dev/null)
[ "${#out}" -gt 20 ] && ok "generates: $(echo "$out" | head -1)" || fail "generate"
[ "$fails" -eq 0 ] || { echo "$(basename "$0"): $fails failure(s)"; exit 1; }
echo "$(basename "$0"): ok"
