#!/usr/bin/env bash
# check_prune_nonuniform — non-uniform (water-filling) plans and plans in the
# published GLM-5.2 tool's format, on routers without group limits (n_group 1;
# no preset has one, so the configs are written here): every pruned model must
# pass the byte-exact checker (prune_check.py) and match the original under
# `logits --precise --mask-plan` to LOGIT_TOL (prune_lib.sh).
#   nu   (MTP layer)  bf16  --non-uniform --budget-experts 40: per-layer counts
#                     differ -> num_routed_experts_per_layer (layers + MTP, dense 0);
#   nu0  (no MTP)     fp8, sharded input (--shard-mb 0.1) -> sharded output
#                     + index.json; --min/--max-per-layer respected;
#   nu   nvfp4        --non-uniform --skip-mtp: the MTP layer is not pruned;
#   nu   mxfp4        a hand-written plan in the published format
#                     {"<layer>": {"kept": [...], "keep": k}} (no sidecar), one
#                     input file, --shard-mb 0.2 output sharding.
# usage: check_prune_nonuniform.sh <demolish> <scratch-dir>
set -u
BIN=$1
TMP=$2
. "$(dirname "$0")/prune_lib.sh"
rm -rf "$TMP" && mkdir -p "$TMP"
calib_data "$TMP/cal.jsonl"
make_config "$TMP/nu.json"
make_config "$TMP/nu0.json" '{"num_nextn_predict_layers": 0}'

# counts FILE.json: the plan's keep per layer, "l:k,l:k"
counts() { $PY -c "import json,sys; p=json.load(open(sys.argv[1])); print(','.join(f'{l}:{v[\"keep\"]}' for l, v in sorted(p.items(), key=lambda x: int(x[0]))))" "$1"; }

# --- with an MTP layer, bf16 -----------------------------------------------------
"$BIN" init "$TMP/nu" --config "$TMP/nu.json" --seed 11 -q || { fail "init nu"; finish; }
add_side_files "$TMP/nu"
"$BIN" calibrate "$TMP/nu" --data "$TMP/cal.jsonl" --out "$TMP/nu.st" --ctx 64 --max-tokens 256 -q || fail "calibrate nu"
"$BIN" plan "$TMP/nu.st" --non-uniform --budget-experts 40 --out "$TMP/nu40.json" -q >/dev/null || fail "plan nu"
c=$(counts "$TMP/nu40.json")
$PY -c "
import json; p = json.load(open('$TMP/nu40.json')); k = [v['keep'] for v in p.values()]
assert sorted(p, key=int) == ['1', '2', '3', '4'] and sum(k) == 40 and len(set(k)) > 1 and min(k) >= 4, k" \
    && ok "non-uniform plan: budget 40 met exactly, counts differ ($c)" || fail "non-uniform plan ($c)"
prune_ok "nu bf16 non-uniform" "$TMP/nu" "$TMP/nu40.json" "$TMP/nu-p" -- --shards 1 &&
    logits_match "nu bf16 non-uniform" "$TMP/nu" "$TMP/nu-p" "$TMP/nu40.json" 1
$PY -c "
import json; c = json.load(open('$TMP/nu-p/config.json')); l = c['num_routed_experts_per_layer']
assert len(l) == 5 and l[0] == 0 and c['n_routed_experts'] == max(l), c" \
    && ok "nu: num_routed_experts_per_layer has layers + MTP entries, dense 0" || fail "nu config list"
"$BIN" info "$TMP/nu-p" --json | $PY -c "
import json, sys; d = json.load(sys.stdin); p = json.load(open('$TMP/nu40.json'))
assert d['experts_per_layer'] == [0] + [p[str(l)]['keep'] for l in range(1, 5)], d['experts_per_layer']" \
    && ok "nu: the pruned model loads with the planned per-layer counts" || fail "nu: info"

cp -r "$TMP/nu" "$TMP/nu-compact"   # a compact config.json without the list: it is inserted
$PY -c "
import json; p = '$TMP/nu-compact/config.json'; c = json.load(open(p)); open(p, 'w').write(json.dumps(c, separators=(',', ':')))"
prune_ok "nu compact config, list inserted" "$TMP/nu-compact" "$TMP/nu40.json" "$TMP/nu-compact-p" --any-model

# --- without an MTP layer, fp8, sharded input --------------------------------------
"$BIN" init "$TMP/nu0" --config "$TMP/nu0.json" --seed 12 --dtype fp8 --shard-mb 0.1 -q || fail "init nu0"
"$BIN" calibrate "$TMP/nu0" --data "$TMP/cal.jsonl" --out "$TMP/nu0.st" --ctx 64 --max-tokens 256 -q || fail "calibrate nu0"
"$BIN" plan "$TMP/nu0.st" --non-uniform --budget-experts 30 --min-per-layer 6 --max-per-layer 12 -c ean \
    --out "$TMP/nu0.json" -q >/dev/null || fail "plan nu0"
c=$(counts "$TMP/nu0.json")
$PY -c "
import json; p = json.load(open('$TMP/nu0.json')); k = [v['keep'] for v in p.values()]
assert sorted(p, key=int) == ['1', '2', '3'] and sum(k) == 30 and min(k) >= 6 and max(k) <= 12 and len(set(k)) > 1, k" \
    && ok "nu0 plan: budget 30, 6 <= k <= 12, counts differ ($c)" || fail "nu0 plan ($c)"
prune_ok "nu0 fp8 sharded non-uniform" "$TMP/nu0" "$TMP/nu0.json" "$TMP/nu0-p" &&
    logits_match "nu0 fp8 sharded non-uniform" "$TMP/nu0" "$TMP/nu0-p" "$TMP/nu0.json" 0
n_out=$(ls "$TMP/nu0-p" | grep -c '^model-.*\.safetensors$')
[ "$n_out" -gt 1 ] && [ -f "$TMP/nu0-p/model.safetensors.index.json" ] \
    && ok "nu0: sharded output ($n_out shards) + index.json" || fail "nu0: output not sharded ($n_out)"
$PY -c "
import json; c = json.load(open('$TMP/nu0-p/config.json')); l = c['num_routed_experts_per_layer']
assert len(l) == 4 and l[0] == 0 and c['num_nextn_predict_layers'] == 0, c" \
    && ok "nu0: per-layer list has num_hidden_layers entries (no MTP)" || fail "nu0 config list"

# --- nvfp4, --skip-mtp ---------------------------------------------------------------
"$BIN" init "$TMP/nu-nv" --config "$TMP/nu.json" --seed 11 --dtype nvfp4 -q || fail "init nu nvfp4"
"$BIN" plan "$TMP/nu.st" --non-uniform --budget-experts 30 --skip-mtp --out "$TMP/nuskip.json" -q >/dev/null \
    || fail "plan --skip-mtp"
$PY -c "import json; p = json.load(open('$TMP/nuskip.json')); assert sorted(p, key=int) == ['1', '2', '3'], p" \
    && ok "--skip-mtp: the MTP layer is not in the plan" || fail "--skip-mtp plan"
prune_ok "nu nvfp4 skip-mtp" "$TMP/nu-nv" "$TMP/nuskip.json" "$TMP/nu-nv-p" --any-model &&
    logits_match "nu nvfp4 skip-mtp" "$TMP/nu-nv" "$TMP/nu-nv-p" "$TMP/nuskip.json" 1

# --- mxfp4, the published tool's plan format, output sharding from one input file ----
"$BIN" init "$TMP/nu-mx" --config "$TMP/nu.json" --seed 13 --dtype mxfp4 -q || fail "init nu mxfp4"
$PY - "$TMP/pub.json" <<'EOF'
import json, random, sys
r = random.Random(5)
keep = {1: 5, 2: 12, 3: 16, 4: 7}   # layer 3 keeps everything (a no-op entry), the MTP layer 7
json.dump({str(l): {"kept": sorted(r.sample(range(16), k)), "keep": k} for l, k in keep.items()}, open(sys.argv[1], "w"))
EOF
prune_ok "nu mxfp4 published-format plan" "$TMP/nu-mx" "$TMP/pub.json" "$TMP/nu-mx-p" --shard-mb 0.2 &&
    logits_match "nu mxfp4 published-format plan" "$TMP/nu-mx" "$TMP/nu-mx-p" "$TMP/pub.json" 1
[ -f "$TMP/nu-mx-p/model.safetensors.index.json" ] && ok "--shard-mb 0.2 shards a single-file input" \
    || fail "--shard-mb 0.2: no index.json"
[ ! -e "$TMP/nu-mx-p/prune_plan.json.meta" ] && ok "no sidecar for a plan without one" || fail "sidecar invented"

ls -a "$TMP" | grep -q partial && fail "a partial directory was left behind" || ok "no partial directory left"
finish
