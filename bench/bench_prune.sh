#!/usr/bin/env bash
# bench_prune — `demolish prune` on a checkpoint bigger than a machine would
# want to load (≥ 20 GB of bf16, made by `demolish init`): peak RSS (the
# acceptance bound is 1 GB, whatever the model size) and wall time, against
# `cp` of the same files (the floor for moving that many bytes). Each timed
# run starts with a cold page cache when the kernel lets us drop it.
#   usage: bench/bench_prune.sh [WORKDIR] [RUNS]   (default /work/bench-models/prune, 3 runs)
# Needs ~2.8x the model size free on WORKDIR's disk (model + pruned copy + cp copy, one at a time).
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/work/bench-models/prune}
RUNS=${2:-3}
BIN=$PWD/build/demolish
mkdir -p "$W"
M=$W/model-20g

# 18 MoE layers x 64 experts x 3 x 2048 x 1536 bf16 = 21.7 GB of experts, in 5 GB shards
cat > "$W/config.json" <<'EOF'
{"architectures": ["GlmMoeDsaForCausalLM"], "model_type": "glm_moe_dsa",
 "vocab_size": 32000, "hidden_size": 2048, "num_hidden_layers": 18, "num_nextn_predict_layers": 1,
 "intermediate_size": 4096, "moe_intermediate_size": 1536, "first_k_dense_replace": 1,
 "num_attention_heads": 16, "num_key_value_heads": 16,
 "q_lora_rank": 512, "kv_lora_rank": 256, "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64,
 "n_routed_experts": 64, "num_experts_per_tok": 8, "n_shared_experts": 1, "n_group": 1, "topk_group": 1,
 "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": true, "routed_scaling_factor": 2.5,
 "rms_norm_eps": 1e-05, "rope_parameters": {"rope_theta": 10000, "rope_type": "default"},
 "rope_interleave": true, "index_n_heads": 4, "index_head_dim": 64, "index_topk": 256,
 "indexer_rope_interleave": true, "max_position_embeddings": 4096, "tie_word_embeddings": false,
 "attention_bias": false, "hidden_act": "silu"}
EOF
[ -d "$M" ] || "$BIN" init --config "$W/config.json" --dtype bf16 --shard-mb 5000 --seed 7 "$M"
du -sh "$M"
size_gb=$(du -sb "$M" | awk '{printf "%.1f", $1 / 1e9}')

# a REAP plan keeping 48 of 64 experts per layer (MTP included), from a short calibration
printf '{"text": "def f(x):\\n    return x * 2\\n", "source": "code"}\n{"text": "The kernel frees pages.", "source": "prose"}\n' > "$W/calib.jsonl"
[ -f "$W/stats.st" ] || "$BIN" calibrate "$M" --data "$W/calib.jsonl" --no-imatrix --out "$W/stats.st"
"$BIN" plan "$W/stats.st" --keep 0.75 --out "$W/plan.json" -q

drop_caches() { sync; { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null && echo cold || echo warm; }
# run NAME CMD...: wall seconds and peak RSS (KiB) of CMD, appended to $W/times.txt
run() {
  local name=$1; shift
  local cache; cache=$(drop_caches)
  /usr/bin/time -f "%e %M" -o "$W/time.out" "$@" > /dev/null
  read -r secs rss < "$W/time.out"
  echo "$name $secs $rss $cache" | tee -a "$W/times.txt"
}
: > "$W/times.txt"
for ((r = 1; r <= RUNS; r++)); do
  rm -rf "$W/pruned" "$W/copy"
  run prune "$BIN" prune "$M" --plan "$W/plan.json" --out "$W/pruned" -q
  out_gb=$(du -sb "$W/pruned" | awk '{printf "%.1f", $1 / 1e9}')
  rm -rf "$W/pruned"
  run cp cp -r "$M" "$W/copy"
  rm -rf "$W/copy"
done
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
p_s=$(awk '$1 == "prune" {print $2}' "$W/times.txt" | median)
p_rss=$(awk '$1 == "prune" {print $3}' "$W/times.txt" | sort -n | tail -1)
c_s=$(awk '$1 == "cp" {print $2}' "$W/times.txt" | median)
echo "model ${size_gb} GB -> pruned ${out_gb} GB; prune median ${p_s} s (peak RSS $((p_rss / 1024)) MiB, max over runs);" \
     "cp of the whole model median ${c_s} s; prune/cp time $(awk -v a="$p_s" -v b="$c_s" 'BEGIN {printf "%.2f", a / b}')"
