#!/usr/bin/env bash
# check_heal_router — `demolish heal router` (Router-KD, issue 6) on tiny random models:
#   - gradient: step 0's loss and every trainable gate gradient against float64 PyTorch
#     autograd (tests/reference/kd_ref.py): uniform and non-uniform pruned students, the
#     MTP router in and out (--mtp-weight 0), temperature 1 and 2;
#   - only the gates change: every file of the healed directory is byte-identical to the
#     student's except model.safetensors, whose header is identical and whose tensors are
#     byte-identical except the mlp.gate.weight ones (which changed; their dtype kept);
#     with --mtp-weight 0 the MTP layer's gate is unchanged too; with --train-bias the
#     e_score_correction_bias tensors may change as well, nothing else;
#   - the held-out KL it reports before and after equals `eval kl` on the student and the
#     healed model (same cache windows), and healing lowered it;
#   - caches are reused (a second run does not rebuild them); bad input: a quantized
#     student, an existing --out without --force, a teacher of another vocabulary.
# usage: bash check_heal_router.sh <demolish> <scratch-dir>
set -euo pipefail
BIN=$(realpath "$1")
S=$2
HERE=$(cd "$(dirname "$0")" && pwd)
REF=$HERE/../reference
PY=/usr/bin/python3
rm -rf "$S"
mkdir -p "$S"
fail() { echo "FAIL: $*" >&2; exit 1; }
dm() { "$BIN" "$@" -q; }

$PY - "$S/kd.jsonl" "$S/held.jsonl" <<'EOF'
import random, sys
random.seed(5)
words = "the kernel frees pages when memory is low and the scheduler runs tasks on each cpu".split()
code = ["def f%d(x):\n    return x * %d\n" % (i, i) for i in range(40)]
def doc(i):
    if i % 2:
        return {"source": "code", "text": "".join(random.sample(code, 6))}
    return {"source": "prose", "text": " ".join(random.choice(words) for _ in range(60))}
import json
for path, n in ((sys.argv[1], 10), (sys.argv[2], 4)):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps(doc(i)) + "\n")
EOF

# teacher (f32, every feature on), calibration, a uniform and a non-uniform student
dm init "$S/t" --preset tiny --dtype f32 --seed 3 >/dev/null
dm calibrate "$S/t" --data "$S/kd.jsonl" --no-imatrix --out "$S/stats.st"
dm plan "$S/stats.st" --keep 0.75 --out "$S/u.plan.json" >/dev/null
dm prune "$S/t" --plan "$S/u.plan.json" --out "$S/su"
# water-filling needs a router without group limits: tiny with n_group 1 (and its per-layer counts)
$PY - "$S/t/config.json" "$S/g1.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(n_group=1, topk_group=1)
json.dump(c, open(sys.argv[2], "w"))
EOF
dm init "$S/tg" --config "$S/g1.json" --dtype f32 --seed 4 >/dev/null
dm calibrate "$S/tg" --data "$S/kd.jsonl" --no-imatrix --out "$S/stats-g.st"
total=$("$BIN" info "$S/tg" --json | $PY -c 'import json,sys; print(sum(json.load(sys.stdin)["experts_per_layer"]))')
dm plan "$S/stats-g.st" --non-uniform --budget-experts $((total * 3 / 4)) --out "$S/n.plan.json" >/dev/null
dm prune "$S/tg" --plan "$S/n.plan.json" --out "$S/sn"

COMMON=(--teacher "$S/t" --data "$S/kd.jsonl" --heldout "$S/held.jsonl" --ctx 24 --topk 16 --batch 4
        --cache "$S/kd.cache" --heldout-cache "$S/held.cache" --lr 1e-2)

# 1. gradients vs PyTorch autograd
case_grad() {   # NAME STUDENT EXTRA...
    local name=$1 student=$2; shift 2
    dm heal router "$student" "${COMMON[@]}" --steps 1 --eval-every 0 --dump "$S/dump-$name" --out "$S/h-$name" "$@" >/dev/null
    echo "kd_ref $name:"
    $PY "$REF/kd_ref.py" "$student" "$S/dump-$name" || fail "$name: C Router-KD gradient differs from autograd"
}
case_grad uniform "$S/su"
case_grad tau2 "$S/su" --tau 2
case_grad nomtp "$S/su" --mtp-weight 0
dm heal router "$S/sn" --teacher "$S/tg" --data "$S/kd.jsonl" --ctx 24 --topk 16 --batch 4 --lr 1e-2 --steps 1 \
    --dump "$S/dump-nonuniform" --out "$S/h-nonuniform" >/dev/null
echo "kd_ref nonuniform:"
$PY "$REF/kd_ref.py" "$S/sn" "$S/dump-nonuniform" || fail "non-uniform: C Router-KD gradient differs from autograd"

# 2. a real heal: KL falls, matches eval kl, only the gates changed
dm heal router "$S/su" "${COMMON[@]}" --steps 12 --eval-every 4 --lr 1e-3 --out "$S/h" --json >"$S/h.json"
"$BIN" eval kl - "$S/su" "$S/h" --data "$S/held.jsonl" --cache "$S/held.cache" --json -q >"$S/kl.json"
$PY - "$S/h.json" "$S/kl.json" <<'EOF' || fail "heal's held-out KL disagrees with eval kl, or did not fall"
import json, sys
h, k = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
ev = h["heldout"]
before, kept = ev[0], [e for e in ev if e["step"] == h["kept_step"]][0]
kl = {s["model"].rstrip("/").split("/")[-1]: s["total"]["kl_mean"] for s in k["students"]}
print(f"  heal: before {before['kl']:.6f} kept {kept['kl']:.6f} (step {h['kept_step']}); "
      f"eval kl: student {kl['su']:.6f} healed {kl['h']:.6f}")
TOL = 1e-4   # relative: the training forward (f32) vs the inference forward (f32), same windows
assert abs(before["kl"] - kl["su"]) <= TOL * kl["su"], "before"
assert abs(kept["kl"] - kl["h"]) <= TOL * kl["h"], "after"
assert kept["kl"] < before["kl"], "healing did not lower the held-out KL"
for src in before["sources"]:
    print(f"    {src}: {before['sources'][src]:.6f} -> {kept['sources'][src]:.6f}")
EOF

only_changed() {   # STUDENT HEALED PATTERN [must-change PATTERN]
    $PY - "$@" <<'EOF'
import hashlib, json, os, re, struct, sys
a, b, allowed = sys.argv[1], sys.argv[2], re.compile(sys.argv[3])
must = re.compile(sys.argv[4]) if len(sys.argv) > 4 else None
fa = sorted(f for f in os.listdir(a) if not f.startswith("."))
fb = sorted(f for f in os.listdir(b) if not f.startswith(".") and f != "heal.json")
assert fa == fb, f"files differ: {fa} vs {fb}"
assert os.path.exists(os.path.join(b, "heal.json")), "no heal.json"
changed = []
for f in fa:
    da, db = open(os.path.join(a, f), "rb").read(), open(os.path.join(b, f), "rb").read()
    if not f.endswith(".safetensors"):
        assert da == db, f"{f} changed"
        continue
    n = struct.unpack("<Q", da[:8])[0]
    assert da[:8 + n] == db[:8 + n], f"{f}: header changed"
    for name, t in json.loads(da[8:8 + n]).items():
        if name == "__metadata__":
            continue
        s, e = t["data_offsets"]
        if da[8 + n + s:8 + n + e] != db[8 + n + s:8 + n + e]:
            assert allowed.search(name), f"{name} changed"
            changed.append(name)
    assert len(da) == len(db), f"{f}: size changed"
assert changed, "nothing changed"
if must:
    missing = [1 for _ in [0] if not any(must.search(c) for c in changed)]
    assert not missing, f"nothing matching {must.pattern} changed"
print(f"  {len(changed)} tensors changed, all matching {allowed.pattern}: {', '.join(sorted(changed))}")
EOF
}
only_changed "$S/su" "$S/h" '\.mlp\.gate\.weight$' || fail "a tensor other than a gate changed"
L=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["num_hidden_layers"])' "$S/su/config.json")
# without --heldout the last gates are kept (with it, the best evaluated ones: maybe step 0's)
dm heal router "$S/su" --teacher "$S/t" --data "$S/kd.jsonl" --ctx 24 --topk 16 --batch 4 --cache "$S/kd.cache" \
    --steps 2 --mtp-weight 0 --out "$S/h-nomtp2" >/dev/null
only_changed "$S/su" "$S/h-nomtp2" "^model\\.layers\\.[0-$((L - 1))]\\.mlp\\.gate\\.weight\$" ||
    fail "--mtp-weight 0 changed the MTP router or another tensor"
dm heal router "$S/su" --teacher "$S/t" --data "$S/kd.jsonl" --ctx 24 --topk 16 --batch 4 --cache "$S/kd.cache" \
    --steps 4 --train-bias --bias-rate 0.05 --out "$S/hb" >/dev/null
only_changed "$S/su" "$S/hb" '\.mlp\.gate\.(weight|e_score_correction_bias)$' 'e_score_correction_bias' ||
    fail "--train-bias changed something else (or no bias)"

# 3. bf16 student keeps its dtype (the header check above covers dtype); caches reused
dm init "$S/tb" --preset tiny --dtype bf16 --seed 3 >/dev/null
dm prune "$S/tb" --plan "$S/u.plan.json" --any-model --out "$S/sb"
"$BIN" heal router "$S/sb" --teacher "$S/tb" --data "$S/kd.jsonl" --ctx 24 --topk 16 --batch 4 --steps 3 \
    --cache "$S/kdb.cache" --out "$S/hb16" 2>"$S/first.txt" >/dev/null
grep -q "cached in" "$S/first.txt" || fail "the first run did not write the cache: $(cat "$S/first.txt")"
"$BIN" heal router "$S/sb" --teacher "$S/tb" --data "$S/kd.jsonl" --ctx 24 --topk 16 --batch 4 --steps 3 \
    --cache "$S/kdb.cache" --out "$S/hb16" --force 2>"$S/second.txt" >/dev/null
grep -q "cached in" "$S/second.txt" && fail "the second run rebuilt the cache"
only_changed "$S/sb" "$S/hb16" '\.mlp\.gate\.weight$' || fail "bf16: a tensor other than a gate changed"

# 4. bad input: exit 1, a message, no output
expect_fail() {   # WHAT PATTERN ARGS...
    local what=$1 pat=$2; shift 2
    set +e
    "$BIN" heal router "$@" -q >/dev/null 2>"$S/err.txt"
    local rc=$?
    set -e
    [ $rc -eq 1 ] || fail "$what: exit $rc, want 1 ($(cat "$S/err.txt"))"
    grep -q "$pat" "$S/err.txt" || fail "$what: message: $(cat "$S/err.txt")"
}
dm init "$S/t8" --preset tiny --dtype fp8 --seed 3 >/dev/null
dm prune "$S/t8" --plan "$S/u.plan.json" --any-model --out "$S/s8"
expect_fail "fp8 student" "heal before quantizing" "$S/s8" --teacher "$S/t8" --data "$S/kd.jsonl" --ctx 24 --out "$S/x8"
[ ! -e "$S/x8" ] || fail "a failed heal left its output"
expect_fail "existing --out" "exists" "$S/su" "${COMMON[@]}" --steps 1 --out "$S/h"
$PY -c 'import json,sys; c=json.load(open(sys.argv[1])); c["vocab_size"]=448; json.dump(c, open(sys.argv[2], "w"))' \
    "$S/t/config.json" "$S/v448.json"
dm init "$S/tv" --config "$S/v448.json" --dtype bf16 --seed 3 >/dev/null
expect_fail "other vocabulary" "vocabulary\|tokenizer\|other data" "$S/su" --teacher "$S/tv" --data "$S/kd.jsonl" \
    --ctx 24 --out "$S/xv"
echo "check_heal_router: ok"
