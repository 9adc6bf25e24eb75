#!/usr/bin/env bash
# check_prune_refuse — what `demolish prune`, `demolish plan` and `logits
# --mask-plan` must refuse: each refusal exits non-zero (1 for a bad plan,
# stats file or model; 2 for option errors), prints ONE line on stderr naming
# the problem (option errors may add the "(see: --help)" line), and leaves no
# output behind (no output directory, no hidden partial directory, no plan
# file). Plans are refused when they leave fewer than top-k experts, name
# unknown experts or layers or dense layers, leave routing groups uneven,
# repeat an id or a layer, are malformed, or come from another model's stats
# (sidecar hash; expert counts); a corrupt checkpoint is refused cleanly.
# usage: check_prune_refuse.sh <demolish> <scratch-dir>
set -u
BIN=$1
TMP=$2
. "$(dirname "$0")/prune_lib.sh"
rm -rf "$TMP" && mkdir -p "$TMP"
calib_data "$TMP/cal.jsonl"
OUT="$TMP/out"

# refuse TAG RC REGEX CMD...: CMD exits RC with one stderr line matching REGEX
# (case-insensitive) and leaves neither $OUT, a partial directory, nor $TMP/plan-out.json.
refuse() {
    local tag=$1 want=$2 re=$3; shift 3
    "$@" >"$TMP/stdout" 2>"$TMP/stderr"
    local rc=$? lines first
    lines=$(grep -c '' "$TMP/stderr"); first=$(head -n 1 "$TMP/stderr")
    local max_lines=1
    [ "$want" = 2 ] && max_lines=2
    if [ "$rc" -ne "$want" ]; then fail "$tag: exit $rc, expected $want ($first)"
    elif [ "$lines" -lt 1 ] || [ "$lines" -gt "$max_lines" ]; then fail "$tag: $lines lines on stderr: $(cat "$TMP/stderr")"
    elif ! grep -Eqi -- "$re" <<<"$first"; then fail "$tag: message '$first' does not match /$re/"
    elif [ -e "$OUT" ] || ls -a "$TMP" | grep -q partial || [ -e "$TMP/plan-out.json" ]; then fail "$tag: output left behind"
    else ok "$tag: $first"
    fi
    rm -rf "$OUT" "$TMP/plan-out.json" "$TMP"/.out.partial-*
}
# plan_file NAME 'python expression of the plan dict'
plan_file() { $PY -c "import json, sys; json.dump($2, open(sys.argv[1], 'w'))" "$TMP/$1"; }
# a plan as text, exactly as given (for duplicate keys and malformed JSON)
plan_text() { printf '%s' "$2" > "$TMP/$1"; }
prune() { "$BIN" prune "$1" --plan "$TMP/$2" --out "$OUT" -q "${@:3}"; }

"$BIN" init "$TMP/tiny" --preset tiny --seed 3 -q || { fail "init tiny"; finish; }     # 4 groups; 16/12/8 experts; MTP
make_config "$TMP/nu.json"; make_config "$TMP/nu0.json" '{"num_nextn_predict_layers": 0}'
make_config "$TMP/nu-rs.json" '{"routed_scaling_factor": 1.5}'; make_config "$TMP/nu8.json" '{"n_routed_experts": 8}'
"$BIN" init "$TMP/nu-rs" --config "$TMP/nu-rs.json" -q || fail "init nu-rs"             # nu's shapes, another config
"$BIN" init "$TMP/nu-fp8" --config "$TMP/nu.json" --dtype fp8 -q || fail "init nu fp8"   # nu in FP8
"$BIN" init "$TMP/nu8" --config "$TMP/nu8.json" -q || fail "init nu8"                   # 8 experts per layer
"$BIN" init "$TMP/nu" --config "$TMP/nu.json" -q || fail "init nu"                    # n_group 1, 16 experts, top-4
"$BIN" init "$TMP/nu0" --config "$TMP/nu0.json" -q || fail "init nu0"                 # ... without MTP
"$BIN" init "$TMP/v3" --preset tiny-v3 -q || fail "init tiny-v3"                       # 8 groups of 2
for m in tiny nu v3; do
    "$BIN" calibrate "$TMP/$m" --data "$TMP/cal.jsonl" --out "$TMP/$m.st" --ctx 32 --max-tokens 64 -q || fail "calibrate $m"
done
"$BIN" plan "$TMP/tiny.st" --keep 0.75 --out "$TMP/tiny75.json" -q >/dev/null || fail "plan tiny"
"$BIN" plan "$TMP/nu.st" --keep-n 12 --out "$TMP/nu12.json" -q >/dev/null || fail "plan nu"

# --- plans the model cannot run -----------------------------------------------------
plan_file k3.json '{"1": {"kept": [0, 1, 2], "keep": 3}}'
refuse "fewer than top-k" 1 "keeps 3 experts in layer 1, fewer than the top-4" prune "$TMP/nu" k3.json
plan_file unk_e.json '{"2": {"kept": [0, 1, 2, 3, 16], "keep": 5}}'
refuse "unknown expert" 1 "keeps expert 16 of layer 2, which has 16 experts" prune "$TMP/nu" unk_e.json
plan_file unk_l.json '{"9": {"kept": [0, 1, 2, 3], "keep": 4}}'
refuse "unknown layer" 1 "names layer 9, .* has 5 layers" prune "$TMP/nu" unk_l.json
plan_file mtp.json '{"4": {"kept": [0, 1, 2, 3], "keep": 4}}'
refuse "MTP layer of a model without one" 1 "names layer 4, .* has 4 layers" prune "$TMP/nu0" mtp.json
plan_file dense.json '{"0": {"kept": [0, 1, 2, 3], "keep": 4}}'
refuse "dense layer" 1 "prunes layer 0, a dense layer" prune "$TMP/nu" dense.json
plan_file uneven.json '{"1": {"kept": [0, 1, 2, 4, 8, 9, 12, 13], "keep": 8}}'
refuse "uneven routing groups" 1 "keeps 3 experts in routing group 0" prune "$TMP/tiny" uneven.json
plan_file onepergroup.json '{"1": {"kept": [0, 4, 8, 12], "keep": 4}}'
refuse "noaux_tc: one expert per group" 1 "best two experts" prune "$TMP/tiny" onepergroup.json

# --- malformed plan files (named in the message) -----------------------------------------
plan_file dup.json '{"1": {"kept": [0, 1, 1, 2, 3], "keep": 5}}'
refuse "duplicate id" 1 "dup.json: layer 1 keeps expert 1 twice" prune "$TMP/nu" dup.json
plan_text twice.json '{"1": {"kept": [0, 1, 2, 3], "keep": 4}, "1": {"kept": [4, 5, 6, 7], "keep": 4}}'
refuse "layer given twice" 1 "twice.json: layer 1 is given twice" prune "$TMP/nu" twice.json
plan_text twice2.json '{"1": {"kept": [0, 1, 2, 3], "keep": 4}, "01": {"kept": [4, 5, 6, 7], "keep": 4}}'
refuse "layer given twice (\"1\" and \"01\")" 1 "layer 1 is given twice" prune "$TMP/nu" twice2.json
plan_file keepn.json '{"1": {"kept": [0, 1, 2, 3], "keep": 5}}'
refuse "keep != len(kept)" 1 "keepn.json: layer 1 needs \"kept\"" prune "$TMP/nu" keepn.json
plan_file empty.json '{"1": {"kept": [], "keep": 0}}'
refuse "a layer keeping nothing" 1 "empty.json: layer 1 keeps no experts" prune "$TMP/nu" empty.json
plan_file neg.json '{"1": {"kept": [0, 1, 2, -3], "keep": 4}}'
refuse "negative id" 1 "neg.json: layer 1: kept\[3\] is not an expert id" prune "$TMP/nu" neg.json
plan_file frac.json '{"1": {"kept": [0, 1, 2, 3.5], "keep": 4}}'
refuse "fractional id" 1 "frac.json: layer 1: kept\[3\] is not an expert id" prune "$TMP/nu" frac.json
plan_file key.json '{"layer1": {"kept": [0, 1, 2, 3], "keep": 4}}'
refuse "key not a layer index" 1 "key.json: key \"layer1\" is not a layer index" prune "$TMP/nu" key.json
plan_file key2.json '{" 1": {"kept": [0, 1, 2, 3], "keep": 4}}'
refuse "key with a space" 1 "key2.json: key \" 1\" is not a layer index" prune "$TMP/nu" key2.json
plan_text bad.json '{"1": {"kept": [0, 1, 2, 3], "keep": 4}'
refuse "not JSON" 1 "bad.json: not a JSON object" prune "$TMP/nu" bad.json
plan_file none.json '{}'
refuse "no layer" 1 "names no layer" prune "$TMP/nu" none.json
plan_file experts.json '{"1": {"kept": [0, 1, 2, 3], "keep": 4, "experts": 2}}'
refuse "\"experts\" below keep" 1 "experts.json: layer 1: \"experts\" is not an expert count" prune "$TMP/nu" experts.json
refuse "plan file missing" 1 "nosuch.json" prune "$TMP/nu" nosuch.json

# --- stats of another model -----------------------------------------------------------------
# The stats' model hash covers config.json and the safetensors headers (not the weight
# values): a model with another config is told apart even when its shapes are the same.
refuse "plan from another model's stats (same shapes, other config)" 1 "nu12.json: made from the stats of another model" \
    prune "$TMP/nu-rs" nu12.json
refuse "plan from the stats of the model in another format" 1 "made from the stats of another model" \
    prune "$TMP/nu-fp8" nu12.json
"$BIN" prune "$TMP/nu-fp8" --plan "$TMP/nu12.json" --out "$OUT" --any-model -q \
    && $PY "$PRUNE_TESTS/prune_check.py" "$TMP/nu-fp8" "$OUT" "$TMP/nu12.json" >/dev/null \
    && ok "--any-model applies it (and the result is byte-exact)" || fail "--any-model"
rm -rf "$OUT"
refuse "plan for another model's expert counts (even with --any-model)" 1 \
    "nu12.json.*made for 16 experts in layer 1, .*nu8 has 8" prune "$TMP/nu8" nu12.json --any-model
refuse "logits --mask-plan with another model's plan" 1 "nu12.json: .*made for 16 experts in layer 1" \
    "$BIN" logits "$TMP/nu8" --ids 1,2,3 --out "$TMP/x.npy" --mask-plan "$TMP/nu12.json" -q
refuse "logits --mask-plan, uneven groups" 1 "uneven.json: .*routing group" \
    "$BIN" logits "$TMP/tiny" --ids 1,2,3 --out "$TMP/x.npy" --mask-plan "$TMP/uneven.json" -q

# --- the output and the checkpoint --------------------------------------------------------------
mkdir -p "$OUT" && echo keep > "$OUT/mine"
"$BIN" prune "$TMP/tiny" --plan "$TMP/tiny75.json" --out "$OUT" -q 2>"$TMP/stderr"
rc=$?
[ $rc -eq 1 ] && grep -q "already exists" "$TMP/stderr" && [ "$(cat "$OUT/mine")" = keep ] \
    && ok "an existing output is refused and left alone" || fail "existing output (rc $rc)"
rm -rf "$OUT"
# corrupt checkpoints (hand-edited safetensors headers; the plan has no sidecar, so no model load first)
corrupt() {   # corrupt SRC DST 'python: edit header dict h'
    rm -rf "$2" && cp -r "$1" "$2"
    $PY - "$2/model.safetensors" "$3" <<'EOF'
import json, struct, sys
p = sys.argv[1]
b = open(p, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
exec(sys.argv[2])
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
EOF
}
plan_file nu_pub.json '{"1": {"kept": [0, 2, 4, 6, 8, 10], "keep": 6}}'
corrupt "$TMP/nu" "$TMP/bad-id" 'k = "model.layers.1.mlp.experts.3.up_proj.weight"; h[k.replace("experts.3", "experts.x3")] = h.pop(k)'
refuse "unreadable expert id in the checkpoint" 1 "experts.x3.up_proj.weight.*cannot read its expert id" \
    prune "$TMP/bad-id" nu_pub.json
corrupt "$TMP/nu" "$TMP/bad-router" 'h["model.layers.1.mlp.gate.weight"]["dtype"] = "F8_E4M3"; h["model.layers.1.mlp.gate.weight"]["shape"][1] *= 2'
refuse "router tensor that is not plain float" 1 "router tensor 'model.layers.1.mlp.gate.weight' is F8_E4M3" \
    prune "$TMP/bad-router" nu_pub.json
corrupt "$TMP/nu" "$TMP/bad-rows" 'h["model.layers.1.mlp.gate.e_score_correction_bias"]["dtype"] = "BF16"; h["model.layers.1.mlp.gate.e_score_correction_bias"]["shape"] = [32]'
refuse "router tensor with the wrong row count" 1 "has 32 rows, the layer has 16 experts" prune "$TMP/bad-rows" nu_pub.json

# --- demolish plan ------------------------------------------------------------------------------
P=(plan "$TMP/tiny.st" --out "$TMP/plan-out.json" -q)
refuse "plan: below the router's floor" 1 "layer 1: keeping 4 of 16 experts leaves fewer than the router needs \(8" \
    "$BIN" "${P[@]}" --keep 0.25
refuse "plan: tiny-v3 (groups of 2, noaux_tc) cannot lose any expert" 1 "fewer than the router needs \(16" \
    "$BIN" plan "$TMP/v3.st" --keep 0.5 --out "$TMP/plan-out.json" -q
refuse "plan: non-uniform with group-limited routing" 1 "n_group = 1" "$BIN" "${P[@]}" --non-uniform --budget-experts 40
N=(plan "$TMP/nu.st" --out "$TMP/plan-out.json" -q --non-uniform)
refuse "plan: budget below the floors" 1 "budget of 10 experts is below the layers' floors \(16\)" "$BIN" "${N[@]}" --budget-experts 10
refuse "plan: budget above the layers' capacity" 1 "budget of 65 experts exceeds" "$BIN" "${N[@]}" --budget-experts 65
refuse "plan: budget above the --max-per-layer capacity" 1 "budget of 50 experts exceeds" "$BIN" "${N[@]}" --budget-experts 50 --max-per-layer 12
refuse "plan: --max-per-layer below top-k" 1 "at most 3 experts per layer is below the floor of 4" "$BIN" "${N[@]}" --budget-experts 20 --max-per-layer 3
refuse "plan: unknown --source" 1 "no source 'nosuch'" "$BIN" "${P[@]}" --keep 0.75 --source nosuch
echo "not stats" > "$TMP/bad.st"
refuse "plan: not a stats file" 1 "bad.st" "$BIN" plan "$TMP/bad.st" --keep 0.75 --out "$TMP/plan-out.json" -q
refuse "plan: stats file missing" 1 "nosuch.st" "$BIN" plan "$TMP/nosuch.st" --keep 0.75 --out "$TMP/plan-out.json" -q
refuse "plan: no --out" 2 "need --out" "$BIN" plan "$TMP/tiny.st" --keep 0.75
refuse "plan: unknown criterion" 2 "unknown criterion 'bogus'" "$BIN" "${P[@]}" --keep 0.75 -c bogus
refuse "plan: --keep 1.5" 2 "give --keep F \(0 < F < 1\)" "$BIN" "${P[@]}" --keep 1.5
refuse "plan: --keep 0" 2 "give --keep F" "$BIN" "${P[@]}" --keep 0
refuse "plan: --keep and --keep-n" 2 "give --keep F" "$BIN" "${P[@]}" --keep 0.5 --keep-n 8
refuse "plan: nothing to keep" 2 "give --keep F" "$BIN" "${P[@]}"
refuse "plan: --non-uniform without a budget" 2 "budget-experts" "$BIN" "${P[@]}" --non-uniform
refuse "plan: --budget-experts without --non-uniform" 2 "give --keep F" "$BIN" "${P[@]}" --budget-experts 30
refuse "plan: --non-uniform with --keep" 2 "give --keep F" "$BIN" "${P[@]}" --non-uniform --budget-experts 30 --keep 0.5
refuse "plan: --min above --max" 2 "min-per-layer / --max-per-layer" "$BIN" "${N[@]}" --budget-experts 30 --min-per-layer 9 --max-per-layer 8
refuse "plan: negative --min" 2 "min-per-layer" "$BIN" "${N[@]}" --budget-experts 30 --min-per-layer -1
refuse "plan: unknown option" 2 "unknown option '--bogus'" "$BIN" "${P[@]}" --keep 0.5 --bogus
refuse "plan: --keep-n not a number" 2 "keep-n" "$BIN" "${P[@]}" --keep-n many
refuse "plan: no stats file" 2 "missing argument" "$BIN" plan --keep 0.5 --out "$TMP/plan-out.json"
refuse "prune: no --plan" 2 "need --plan FILE and --out DIR" "$BIN" prune "$TMP/nu" --out "$OUT"
refuse "prune: no --out" 2 "need --plan FILE and --out DIR" "$BIN" prune "$TMP/nu" --plan "$TMP/nu12.json"
finish
