# prune_lib.sh — helpers shared by the prune script tests (sourced by
# tests/prune/check_prune_*.sh; not a test itself). Expects BIN and TMP set.
#
# LOGIT_TOL: the pruned model's `logits --precise` must match the original's
# with `--mask-plan` to this max abs difference. Both runs do the same f32
# arithmetic on the same bytes: the router's kept rows are the same values,
# the masked experts get score 0 / -inf exactly as if absent, top-k and the
# renormalization see the same set in the same order, and --precise keeps
# activations in f32 in every matmul. The only allowed difference is a BLAS
# summation order that depends on the router matrix's row count (E vs E'):
# a few f32 ulps on logits of magnitude ~1-10, i.e. ~1e-6. 1e-5 leaves room for
# that while a single token routed differently moves logits by ~1e-1 or more
# (MASK_EFFECT_MIN checks that the plan does change the unpruned model's
# output, so the comparison has power).
PY=/usr/bin/python3
PRUNE_TESTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOGIT_TOL=1e-5
MASK_EFFECT_MIN=1e-3
IDS=$(seq -s, 3 11 300)   # 28 token ids below every tiny vocab (320)
fails=0
ok()   { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails+1)); }
finish() {
    if [ "$fails" -ne 0 ]; then echo "$(basename "$0"): $fails failure(s)"; exit 1; fi
    echo "$(basename "$0"): ok"; exit 0
}

# make_config OUT.json '{overrides}': a tiny GLM-MoE-DSA config with a router
# WITHOUT group limits (n_group 1, so non-uniform plans are legal): 4 layers
# (layer 0 dense) + 1 MTP layer, 16 experts, top-4, shared expert.
make_config() {
    local ov=${2:-}
    [ -n "$ov" ] || ov='{}'
    $PY - "$1" "$ov" <<'EOF'
import json, sys
cfg = {"architectures": ["GlmMoeDsaForCausalLM"], "model_type": "glm_moe_dsa",
       "vocab_size": 384, "hidden_size": 64, "num_hidden_layers": 4, "num_nextn_predict_layers": 1,
       "intermediate_size": 96, "moe_intermediate_size": 32, "first_k_dense_replace": 1,
       "num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": 64, "kv_lora_rank": 32,
       "qk_nope_head_dim": 16, "qk_rope_head_dim": 16, "v_head_dim": 16,
       "n_routed_experts": 16, "num_experts_per_tok": 4, "n_shared_experts": 1,
       "n_group": 1, "topk_group": 1, "topk_method": "noaux_tc", "scoring_func": "sigmoid",
       "norm_topk_prob": True, "routed_scaling_factor": 2.5, "rms_norm_eps": 1e-05,
       "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
       "index_n_heads": 4, "index_head_dim": 32, "index_topk": 8, "indexer_rope_interleave": True,
       "max_position_embeddings": 512, "tie_word_embeddings": False}
cfg.update(json.loads(sys.argv[2]))
json.dump(cfg, open(sys.argv[1], "w"), indent=2)
EOF
}

# calib_data OUT.jsonl: a few short documents from two sources.
calib_data() {
    $PY - "$1" <<'EOF'
import json, random, sys
r = random.Random(3)
w = "the quick brown fox jumps over a lazy dog while experts route tokens through gates and norms".split()
with open(sys.argv[1], "w") as f:
    for i in range(10):
        f.write(json.dumps({"text": " ".join(r.choice(w) for _ in range(48)), "source": ["web", "code"][i % 2]}) + "\n")
EOF
}

# add_side_files DIR: a model card (must NOT be copied), a chat template, a
# nested directory (not copied), and float/large-int config values that a
# parse-and-print round trip would alter (1.0 -> 1, 2^64 -> 1.8e19).
add_side_files() {
    echo "# the unpruned model" > "$1/MODEL_CARD.md"
    printf '{%% for m in messages %%}{{ m.content }}{%% endfor %%}\n' > "$1/chat_template.jinja"
    mkdir -p "$1/extra" && echo x > "$1/extra/note.txt"
    $PY - "$1/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["initializer_range"] = 0.02
c["demolish_test_float"] = 1.0
c["demolish_test_bigint"] = 18446744073709551615
c["torch_dtype"] = "bfloat16"
json.dump(c, open(sys.argv[1], "w"), indent=2)
EOF
}

# prune_ok TAG SRC PLAN OUT [prune options] [-- checker options]: prunes and
# runs the byte-exact checker.
prune_ok() {
    local tag=$1 src=$2 plan=$3 out=$4; shift 4
    local popts=() copts=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do popts+=("$1"); shift; done
    [ $# -gt 0 ] && shift && copts=("$@")
    if ! "$BIN" prune "$src" --plan "$plan" --out "$out" -q "${popts[@]}"; then
        fail "$tag: prune failed"; return 1
    fi
    if $PY "$PRUNE_TESTS/prune_check.py" "$src" "$out" "$plan" "${copts[@]}"; then
        ok "$tag: byte-exact"
    else
        fail "$tag: byte-exact checker"; return 1
    fi
}

# logits_match TAG ORIG PRUNED PLAN MTP(0|1): pruned == original masked by the
# plan, main logits (and the MTP head's when MTP=1), to LOGIT_TOL.
logits_match() {
    local tag=$1 orig=$2 pruned=$3 plan=$4 mtp=$5 d="$TMP/logits-$1"
    mkdir -p "$d"
    local m1=() m2=() m3=()
    if [ "$mtp" = 1 ]; then m1=(--mtp-out "$d/masked_mtp.npy"); m2=(--mtp-out "$d/pruned_mtp.npy"); m3=(--mtp-out "$d/plain_mtp.npy"); fi
    "$BIN" logits "$orig" --precise --ids "$IDS" --out "$d/masked.npy" "${m1[@]}" --mask-plan "$plan" -q &&
    "$BIN" logits "$pruned" --precise --ids "$IDS" --out "$d/pruned.npy" "${m2[@]}" -q &&
    "$BIN" logits "$orig" --precise --ids "$IDS" --out "$d/plain.npy" "${m3[@]}" -q || { fail "$tag: logits runs"; return 1; }
    if $PY - "$d" "$mtp" "$LOGIT_TOL" "$MASK_EFFECT_MIN" "$tag" <<'EOF'
import numpy as np, sys
d, mtp, tol, effect, tag = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
bad = False
for head in ["", "_mtp"] if mtp else [""]:
    a, b, c = (np.load(f"{d}/{k}{head}.npy").astype(np.float64) for k in ("masked", "pruned", "plain"))
    diff, moved = np.abs(a - b).max(), np.abs(a - c).max()
    name = "mtp" if head else "main"
    print(f"     {tag} {name}: pruned vs masked max|diff| = {diff:.3g} (tol {tol:g}); "
          f"masking moved the original by {moved:.3g}")
    if a.shape != b.shape or not np.isfinite(a).all() or not diff <= tol:
        bad = True
    if not moved > effect:
        print(f"     {tag} {name}: the plan does not change the unpruned model's logits (> {effect:g}): no power")
        bad = True
sys.exit(1 if bad else 0)
EOF
    then ok "$tag: logits of the pruned model = masked original"; else fail "$tag: logits"; fi
}
