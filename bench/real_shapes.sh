#!/usr/bin/env bash
# real_shapes — the engine on models with the REAL dimensions of GLM-5 and
# DeepSeek-V3 (hidden, heads, MLA ranks, indexer, vocab, routing groups,
# YaRN), cut to 2 layers + MTP and 16 experts so they fit this machine
# (bench only: ~8 GB each, minutes of CPU). Checks that:
#   - `demolish init --config` writes them and `demolish info` loads them;
#   - GLM-5 shape, context 2100 > index_topk 2048 (so the indexer really
#     selects): the last positions' logits from one batched prefill equal
#     those from prefill(2090) + token-by-token decode (max|Δ| printed);
#   - DeepSeek-V3 shape in FP8 with 128x128 block scales, YaRN and 8 routing
#     groups: the same prefill/decode agreement at context 300;
#   - generation runs, and prints its speed.
# usage: bench/real_shapes.sh [WORKDIR]   (default /work/bench-models/real)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/work/bench-models/real}
BIN=./build/demolish
PY=/usr/bin/python3
mkdir -p "$W"

cat > "$W/glm5-2l.json" <<'EOF'
{"architectures": ["GlmMoeDsaForCausalLM"], "model_type": "glm_moe_dsa",
 "vocab_size": 154880, "hidden_size": 6144, "num_hidden_layers": 2, "num_nextn_predict_layers": 1,
 "intermediate_size": 12288, "moe_intermediate_size": 2048, "first_k_dense_replace": 1,
 "num_attention_heads": 64, "num_key_value_heads": 64, "head_dim": 64,
 "q_lora_rank": 2048, "kv_lora_rank": 512, "qk_nope_head_dim": 192, "qk_rope_head_dim": 64, "v_head_dim": 256,
 "n_routed_experts": 16, "num_experts_per_tok": 8, "n_shared_experts": 1, "n_group": 1, "topk_group": 1,
 "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": true, "routed_scaling_factor": 2.5,
 "rms_norm_eps": 1e-05, "rope_parameters": {"rope_theta": 1000000, "rope_type": "default"},
 "rope_interleave": true, "index_n_heads": 32, "index_head_dim": 128, "index_topk": 2048,
 "indexer_rope_interleave": true, "max_position_embeddings": 202752, "tie_word_embeddings": false,
 "eos_token_id": [154820, 154827, 154829], "pad_token_id": 154820}
EOF
cat > "$W/dsv3-2l.json" <<'EOF'
{"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
 "vocab_size": 129280, "hidden_size": 7168, "num_hidden_layers": 2, "num_nextn_predict_layers": 1,
 "intermediate_size": 18432, "moe_intermediate_size": 2048, "first_k_dense_replace": 1,
 "num_attention_heads": 128, "num_key_value_heads": 128, "q_lora_rank": 1536, "kv_lora_rank": 512,
 "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
 "n_routed_experts": 16, "num_experts_per_tok": 8, "n_shared_experts": 1, "n_group": 8, "topk_group": 4,
 "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": true, "routed_scaling_factor": 2.5,
 "rms_norm_eps": 1e-06, "rope_theta": 10000, "rope_scaling": {"type": "yarn", "factor": 40,
 "original_max_position_embeddings": 4096, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
 "max_position_embeddings": 163840, "tie_word_embeddings": false, "bos_token_id": 0, "eos_token_id": 1}
EOF

# check NAME DTYPE T DECODE_FROM
check() {
  local name=$1 dtype=$2 T=$3 from=$4 dir="$W/$1-$2"
  [ -d "$dir" ] || { echo "== init $name ($dtype)"; /usr/bin/time -f "   init: %e s, peak RSS %M KiB" \
      "$BIN" init --config "$W/$name.json" --dtype "$dtype" --seed 1 --shard-mb 2048 "$dir"; }
  "$BIN" info "$dir" | sed 's/^/   /'
  local ids; ids=$($PY -c "import random; random.seed(5); print(','.join(str(random.randrange(1000)) for _ in range($T)))")
  local n=$((T - from))
  /usr/bin/time -f "   prefill $T: %e s, peak RSS %M KiB" "$BIN" logits "$dir" --ids "$ids" --last "$n" --out "$W/p.npy" -q
  /usr/bin/time -f "   prefill $from + decode $n: %e s, peak RSS %M KiB" \
      "$BIN" logits "$dir" --ids "$ids" --last "$n" --decode-from "$from" --out "$W/d.npy" -q
  $PY -c "
import numpy as np
p, d = np.load('$W/p.npy'), np.load('$W/d.npy')
print('   last $n positions: prefill vs decode max|d| %.3g (logit scale %.3g), argmax agree %d/%d' % (
      abs(p - d).max(), abs(p).max(), (p.argmax(1) == d.argmax(1)).sum(), len(p)))"
  "$BIN" generate "$dir" -p "def fib(" -n 8 --temp 0 --json 2>&1 >/dev/null | tail -1 | sed 's/^/   generate: /'
}

check glm5-2l bf16 2100 2090
check dsv3-2l fp8 300 290
