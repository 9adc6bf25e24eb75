#!/usr/bin/env bash
# check_calib_reference.sh — acceptance test of `demolish calibrate` (REAP saliency under the
# three gates, soft frequency, max norm, the imatrix, per-source accumulators, token weights,
# windows, the MTP head) against the independent float64 reference tests/reference/calib_ref.py
# (built on ref_model.py; run under /usr/bin/python3).
#
# Run by CTest from the repo root:  bash tests/calib/check_calib_reference.sh <demolish> <scratch>
#
# For presets tiny (group routing, MTP, per-layer expert counts, dense first layer, DSA),
# tiny-v3 (DeepSeek-V3, 8 groups, MTP) and tiny-softmax (softmax scores, group_limited_greedy,
# no MTP) in f32 and bf16: `demolish calibrate --precise` with each gate (model, cerebras,
# cerebras-renorm), plus --no-mtp and --no-imatrix runs, on a .jsonl of 5 documents (4 over 2
# sources, 1 without), with overlapping weighted byte ranges (one of weight 0), two </think>
# tokens close enough for their windows to overlap, and --ctx small enough that every
# document spans several windows. calib_ref.py compares every accumulator, every imatrix
# entry and the metadata (tokens, weight_sum, router, gate, runs, hashes, experts per layer).
# Then `calibrate --merge` of the data's two halves against the one run, and a self-test of
# the flip detector on tampered stats.
#
# Tolerance (named in calib_ref.py): TOL_REL = 1e-5 relative, against max(|ref|, FLOOR_REL =
# 1e-6 of the largest |ref| of that column / imatrix tensor). --precise keeps activations in
# f32 and both sides decode the same weight bytes exactly, so only f32-vs-f64 rounding
# differs. A top-k decision that flips between f32 and f64 shows as a count that differs by a
# whole token weight; calib_ref.py reports it as a FLIP with the margins (and the test fails:
# pick another SEED or data rather than loosening the tolerance).
set -u
BIN=${1:?usage: check_calib_reference.sh <demolish> <scratch>}
SCR=${2:?usage: check_calib_reference.sh <demolish> <scratch>}
PY=/usr/bin/python3
REF=tests/reference
PRESETS="tiny tiny-v3 tiny-softmax"
DTYPES="f32 bf16"
GATES="model cerebras cerebras-renorm"
SEED=7
CTX=24
OPTS=(--ctx $CTX --weights-from w --think-close-weight 3 --think-close-window 2)

FAILS=0
fail() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }

[ -x "$BIN" ] || { echo "FAIL demolish binary '$BIN' is not executable"; exit 1; }
[ -f "$REF/calib_ref.py" ] || { echo "FAIL run from the repo root ($REF missing)"; exit 1; }
rm -rf "$SCR" && mkdir -p "$SCR" || exit 1
START=$SECONDS
DATA=$SCR/calib.jsonl
JOBS=$SCR/ref_jobs.txt
: > "$JOBS"

# Byte ranges of doc 1: [12, 40) weight 2.5 and [30, 52) weight 0 overlap (tokens in both take
# the later range's 0); doc 3 has two </think> 3 tokens apart (window 2: overlapping
# neighbourhoods, each token multiplied by 3 once).
cat > "$DATA" <<'EOF'
{"text": "def add(a, b):\n    return a + b\n\nprint(add(2, 3))  # five\nfor i in range(10):\n    total = add(total, i * i)\n", "source": "code", "w": [[12, 40, 2.5], [30, 52, 0.0]]}
{"text": "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs; how vexingly quick daft zebras jump!", "source": "prose"}
{"text": "<|user|>What is 7 times 6?<|assistant|><think>seven sixes: 6, 12, 18, 24, 30, 36, 42</think>so</think> The answer is 42.", "source": "prose", "w": null}
{"text": "int main(void) { int s = 0; for (int k = 0; k < 100; k++) s += k; return s == 4950 ? 0 : 1; } /* sum */", "source": "code", "w": [[0, 3, 1.75]]}
{"text": "a document without a source: lorem ipsum dolor sit amet, consectetur adipiscing elit."}
EOF

echo "== demolish calibrate (ctx $CTX)"
for p in $PRESETS; do
  for d in $DTYPES; do
    name=$p-$d dir=$SCR/$p-$d
    if ! "$BIN" init --preset "$p" --dtype "$d" --seed $SEED -q -t 1 "$dir" > "$SCR/$name.init.log" 2>&1; then
      fail "$name: demolish init exited non-zero:"; tail -n 5 "$SCR/$name.init.log"; continue
    fi
    checks=()
    run() {   # run TAG GATE FLAGS...: one calibrate run, its check queued as --check{,-nomtp,...}
      local tag=$1 gate=$2; shift 2
      local out=$SCR/$name.$tag.st
      if "$BIN" calibrate "$dir" --data "$DATA" --out "$out" --gate "$gate" --precise "${OPTS[@]}" "$@" \
           > "$SCR/$name.$tag.log" 2>&1; then
        checks+=("$CHECK" "$gate=$out")
      else
        fail "$name: demolish calibrate --gate $gate $* exited non-zero:"; tail -n 5 "$SCR/$name.$tag.log"
      fi
    }
    # -t 1 except the model gate (2 threads: the observers must not depend on threading);
    # OpenMP barriers crawl when the cores are busy with other work.
    for g in $GATES; do CHECK=--check run "$g" "$g" -t $([ "$g" = model ] && echo 2 || echo 1); done
    CHECK=--check-nomtp run nomtp model --no-mtp -t 1
    CHECK=--check-noimat run noimat cerebras --no-imatrix -t 1
    echo "$dir --name $name --data $DATA ${OPTS[*]} ${checks[*]}" >> "$JOBS"
  done
done
echo "   ($((SECONDS - START)) s)"

echo "== reference (float64) and comparisons"
$PY "$REF/calib_ref.py" --batch "$JOBS"
rc=$?
[ $rc -eq 0 ] || fail "calib_ref.py: $([ $rc -eq 1 ] && echo "some comparisons failed" || echo "error $rc")"

# `calibrate --merge`: the data split in two runs, merged, equals the one run over all of it
# (sums within MERGE_REL_TOL: the same non-negative terms in another association; maxnorm,
# tokens exactly; runs 2).
MERGE_REL_TOL=1e-12
echo "== calibrate --merge"
if [ -f "$SCR/tiny-f32.model.st" ]; then
  head -n 2 "$DATA" > "$SCR/part1.jsonl"; tail -n +3 "$DATA" > "$SCR/part2.jsonl"
  ok=1
  for i in 1 2; do
    "$BIN" calibrate "$SCR/tiny-f32" --data "$SCR/part$i.jsonl" --out "$SCR/part$i.st" --precise -t 1 "${OPTS[@]}" \
      > "$SCR/part$i.log" 2>&1 || { fail "calibrate part $i:"; tail -n 5 "$SCR/part$i.log"; ok=0; }
  done
  if [ $ok = 1 ] && "$BIN" calibrate --merge "$SCR/part1.st" "$SCR/part2.st" --out "$SCR/merged.st" \
       > "$SCR/merge.log" 2>&1; then
    $PY - "$SCR/merged.st" "$SCR/tiny-f32.model.st" $MERGE_REL_TOL <<'PYEOF' || fail "calibrate --merge"
import sys
sys.path.insert(0, "tests/reference")
import numpy as np
import st_io
(m, mm), (o, om), tol = st_io.read_file(sys.argv[1]), st_io.read_file(sys.argv[2]), float(sys.argv[3])
bad = []
if sorted(m) != sorted(o):
    bad.append(f"tensors differ: {sorted(set(m) ^ set(o))[:4]}")
if mm["runs"] != "2" or mm["tokens"] != om["tokens"] or mm["model_hash"] != om["model_hash"]:
    bad.append(f"metadata runs {mm['runs']} tokens {mm['tokens']}/{om['tokens']}")
worst = 0.0
for n in sorted(set(m) & set(o)):
    a, b = m[n].raw.astype(np.float64), o[n].raw.astype(np.float64)
    if n.startswith("acc."):
        if np.any(a[:, 5] != b[:, 5]):
            bad.append(f"{n}: maxnorm differs")
        a, b = a[:, :5], b[:, :5]
    d = np.abs(a - b) / np.maximum(np.abs(b), 1e-300)
    d[a == b] = 0
    worst = max(worst, float(d.max(initial=0)))
if worst > tol:
    bad.append(f"max rel diff {worst:.3g} > {tol:g}")
for b in bad:
    print("     " + b)
print(f"{'ok  ' if not bad else 'FAIL'} merged halves vs one run: max rel diff {worst:.3g}")
sys.exit(1 if bad else 0)
PYEOF
  else
    [ $ok = 1 ] && { fail "calibrate --merge exited non-zero:"; tail -n 5 "$SCR/merge.log"; }
  fi
fi

# The flip detector itself: move one routing event's weight to the next expert of the same
# layer (what an f32/f64 top-k flip does) in a copy of tiny-f32's stats: it must be reported
# as a FLIP; changing one count alone must be reported as an accumulator error, not a flip.
echo "== flip detector"
if [ -f "$SCR/tiny-f32.model.st" ]; then
  $PY - "$SCR/tiny-f32.model.st" "$SCR" <<'PYEOF'
import sys
sys.path.insert(0, "tests/reference")
import numpy as np
import st_io
t, meta = st_io.read_file(sys.argv[1])
a = t["acc.all"].raw.copy()
i = int(np.argmax(a[:8, 0]))            # rows 0..15: the first MoE layer of preset tiny
for mode, d in (("flip", {i: -1.0, i + 1: 1.0}), ("weight", {i: 0.5})):
    b = a.copy()
    for row, x in d.items():
        b[row, 0] += x
    tt = dict(t)
    tt["acc.all"] = st_io.make_tensor("F64", b)
    st_io.write_file(f"{sys.argv[2]}/tamper-{mode}.st", tt, meta)
PYEOF
  base="$SCR/tiny-f32 --data $DATA ${OPTS[*]}"
  printf '%s\n' "$base --name tamper-flip --check model=$SCR/tamper-flip.st" \
                "$base --name tamper-weight --check model=$SCR/tamper-weight.st" > "$SCR/tamper_jobs.txt"
  $PY "$REF/calib_ref.py" --batch "$SCR/tamper_jobs.txt" > "$SCR/tamper.log" 2>&1
  if grep -q "^FAIL tamper-flip" "$SCR/tamper.log" && grep -q "top-k FLIP" "$SCR/tamper.log" &&
     grep -q "^FAIL tamper-weight" "$SCR/tamper.log" &&
     ! grep -A12 "^FAIL tamper-weight" "$SCR/tamper.log" | grep -q "FLIP"; then
    echo "ok   a moved routing event is reported as a top-k FLIP, a changed count as an error"
  else
    fail "the flip detector did not classify the tampered stats:"; cat "$SCR/tamper.log"
  fi
else
  fail "no tiny-f32 stats to tamper with"
fi

echo "== $([ $FAILS -eq 0 ] && echo PASS || echo "FAILED: $FAILS failures") ($((SECONDS - START)) s)"
[ $FAILS -eq 0 ]
