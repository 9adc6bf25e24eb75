#!/usr/bin/env bash
# check_prune_exact — `demolish plan` + `demolish prune` on the group-limited
# presets, in several weight formats: every pruned model must pass the
# independent byte-exact checker (prune_check.py: kept experts' tensors of
# every dtype = the source's bytes of the original id, router rows sliced,
# everything else identical, config.json changed only in the expert counts,
# side files copied but not the model card, prune_plan.json written) and its
# `logits --precise` (main and MTP head) must equal the original's under
# `--mask-plan` to LOGIT_TOL (see prune_lib.sh for why that tolerance).
#   tiny (noaux_tc, 4 groups, per-layer expert counts 16/12/8, MTP):
#     bf16 uniform --keep 0.75 (per group; result non-uniform because the
#          layers differ) with side files and float config values;
#     fp8  --keep-n 8 -c frequency (result uniform: the per-layer list goes);
#     nvfp4 sharded input (--shard-mb 0.05) -> sharded output + index.json;
#   tiny-softmax (softmax scoring, group_limited_greedy, MoE every 2nd layer,
#     no MTP) bf16 --keep 0.5;
#   tiny-v32 (4 groups, default top-k method) mxfp4 --keep 0.5 -c ean.
# usage: check_prune_exact.sh <demolish> <scratch-dir>
set -u
BIN=$1
TMP=$2
. "$(dirname "$0")/prune_lib.sh"
rm -rf "$TMP" && mkdir -p "$TMP"
calib_data "$TMP/cal.jsonl"

# --- tiny, bf16: the reference model of this script --------------------------
"$BIN" init "$TMP/tiny" --preset tiny --seed 3 -q || { fail "init tiny"; finish; }
add_side_files "$TMP/tiny"
"$BIN" calibrate "$TMP/tiny" --data "$TMP/cal.jsonl" --out "$TMP/tiny.st" --ctx 64 --max-tokens 256 -q || fail "calibrate tiny"
"$BIN" plan "$TMP/tiny.st" --keep 0.75 --out "$TMP/p75.json" -q >/dev/null || fail "plan --keep 0.75"
prune_ok "tiny bf16 keep 0.75" "$TMP/tiny" "$TMP/p75.json" "$TMP/tiny-p75" -- --shards 1 &&
    logits_match "tiny bf16 keep 0.75" "$TMP/tiny" "$TMP/tiny-p75" "$TMP/p75.json" 1
$PY -c "
import json; c = json.load(open('$TMP/tiny-p75/config.json'))
assert c['num_routed_experts_per_layer'] == [0, 12, 8, 8, 8] and c['n_routed_experts'] == 12, c" \
    && ok "tiny keep 0.75: per-layer counts [0, 12, 8, 8, 8]" || fail "tiny keep 0.75 counts"
[ -f "$TMP/tiny-p75/prune_plan.json.meta" ] && ok "plan provenance copied" || fail "no prune_plan.json.meta"

# --- tiny, fp8 (same seed: same weights, quantized), plan from the bf16 stats --
"$BIN" init "$TMP/tiny-fp8" --preset tiny --seed 3 --dtype fp8 -q || fail "init tiny fp8"
"$BIN" plan "$TMP/tiny.st" --keep-n 8 -c frequency --out "$TMP/p8.json" -q >/dev/null || fail "plan --keep-n 8"
prune_ok "tiny fp8 keep-n 8" "$TMP/tiny-fp8" "$TMP/p8.json" "$TMP/tiny-fp8-p8" --any-model &&
    logits_match "tiny fp8 keep-n 8" "$TMP/tiny-fp8" "$TMP/tiny-fp8-p8" "$TMP/p8.json" 1
$PY -c "
import json; c = json.load(open('$TMP/tiny-fp8-p8/config.json'))
assert 'num_routed_experts_per_layer' not in c and c['n_routed_experts'] == 8, c" \
    && ok "tiny fp8 keep-n 8: uniform result, per-layer list removed" || fail "tiny fp8 config"
grep -aq 'experts\.[0-9]*\.up_proj\.weight_scale_inv' "$TMP/tiny-fp8-p8/model.safetensors" && ok "fp8 scale tensors present" || fail "fp8 scales missing"

# --- config.json edited in place whatever its layout: compact, the per-layer list first
cp -r "$TMP/tiny" "$TMP/tiny-compact"
$PY -c "
import json; p = '$TMP/tiny-compact/config.json'; c = json.load(open(p))
l = c.pop('num_routed_experts_per_layer'); c = dict([('num_routed_experts_per_layer', l)] + list(c.items()))
open(p, 'w').write(json.dumps(c, separators=(',', ':')))"
prune_ok "tiny compact config, list first, removed" "$TMP/tiny-compact" "$TMP/p8.json" "$TMP/tiny-compact-p8" --any-model
prune_ok "tiny compact config, list first, replaced" "$TMP/tiny-compact" "$TMP/p75.json" "$TMP/tiny-compact-p75" --any-model

# --- tiny, nvfp4, sharded in and out -------------------------------------------
"$BIN" init "$TMP/tiny-nv" --preset tiny --seed 3 --dtype nvfp4 --shard-mb 0.05 -q || fail "init tiny nvfp4 sharded"
n_in=$(ls "$TMP/tiny-nv" | grep -c '^model-.*\.safetensors$')
[ "$n_in" -gt 2 ] && ok "nvfp4 input has $n_in shards" || fail "nvfp4 input not sharded ($n_in)"
prune_ok "tiny nvfp4 sharded keep 0.75" "$TMP/tiny-nv" "$TMP/p75.json" "$TMP/tiny-nv-p75" --any-model &&
    logits_match "tiny nvfp4 sharded keep 0.75" "$TMP/tiny-nv" "$TMP/tiny-nv-p75" "$TMP/p75.json" 1
n_out=$(ls "$TMP/tiny-nv-p75" | grep -c '^model-.*\.safetensors$')
[ "$n_out" -gt 1 ] && [ -f "$TMP/tiny-nv-p75/model.safetensors.index.json" ] \
    && ok "nvfp4: sharded output ($n_out shards) with index.json" || fail "nvfp4 output not sharded ($n_out)"
cat "$TMP/tiny-nv-p75"/model-*.safetensors | grep -aq 'experts\.[0-9]*\.up_proj\.weight_scale_2' \
    && ok "nvfp4 weight_scale_2 tensors present" || fail "nvfp4 weight_scale_2 missing"

# --- tiny-softmax: softmax router (pruning renormalizes over the survivors) ----
"$BIN" init "$TMP/soft" --preset tiny-softmax --seed 5 -q || fail "init tiny-softmax"
"$BIN" calibrate "$TMP/soft" --data "$TMP/cal.jsonl" --out "$TMP/soft.st" --ctx 64 --max-tokens 256 -q || fail "calibrate tiny-softmax"
"$BIN" plan "$TMP/soft.st" --keep 0.5 --out "$TMP/soft.json" -q >/dev/null || fail "plan tiny-softmax"
prune_ok "tiny-softmax keep 0.5" "$TMP/soft" "$TMP/soft.json" "$TMP/soft-p" &&
    logits_match "tiny-softmax keep 0.5" "$TMP/soft" "$TMP/soft-p" "$TMP/soft.json" 0

# --- tiny-v32, mxfp4 ------------------------------------------------------------
"$BIN" init "$TMP/v32" --preset tiny-v32 --seed 6 --dtype mxfp4 -q || fail "init tiny-v32 mxfp4"
"$BIN" calibrate "$TMP/v32" --data "$TMP/cal.jsonl" --out "$TMP/v32.st" --ctx 64 --max-tokens 256 -q || fail "calibrate tiny-v32"
"$BIN" plan "$TMP/v32.st" --keep 0.5 -c ean --out "$TMP/v32.json" -q >/dev/null || fail "plan tiny-v32"
prune_ok "tiny-v32 mxfp4 keep 0.5" "$TMP/v32" "$TMP/v32.json" "$TMP/v32-p" &&
    logits_match "tiny-v32 mxfp4 keep 0.5" "$TMP/v32" "$TMP/v32-p" "$TMP/v32.json" 1
grep -aq 'experts\.[0-9]*\.up_proj\.weight_blocks' "$TMP/v32-p/model.safetensors" && ok "mxfp4 weight_blocks present" || fail "mxfp4 blocks missing"

ls -a "$TMP" | grep -q partial && fail "a partial directory was left behind" || ok "no partial directory left"
finish
