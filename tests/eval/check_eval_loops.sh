#!/usr/bin/env bash
# check_eval_loops — `demolish eval loops / compare / report` end to end on a
# tiny random model (issue 5):
#   - determinism: the same command twice writes byte-identical run files;
#   - batching: --batch 1 and --batch 5 write the same lines in prompt order;
#   - resume: --n 5 then --n 16 into one file, and a file cut mid-line (a
#     killed run) then resumed, both give the bytes of one uninterrupted run;
#   - a run file from other options (seed, sampler, detector) or another
#     prompts file is refused and left untouched;
#   - the numbers printed by loops --json, compare --json and report --json
#     match eval_loops_ref.py, which recomputes every detector flag from the
#     token ids and every statistic with scipy (tolerance 1e-9);
#   - compare --n N equals the oracle on files cut to the first N prompts;
#   - compare warns when the runs had other token caps or detectors;
#   - generate accepts --guardrail / --hesitation-* and refuses a bad preset;
#   - report writes the markdown table and a well-formed SVG.
# usage: bash check_eval_loops.sh <demolish> <scratch-dir>
set -euo pipefail
BIN=$(realpath "$1")
S=$2
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
rm -rf "$S"
mkdir -p "$S"
export OMP_NUM_THREADS=1
fail() { echo "FAIL: $*" >&2; exit 1; }
dm() { "$BIN" "$@" -t 1 -q; }

dm init "$S/tiny" --preset tiny >/dev/null
$PY - "$S/prompts.jsonl" <<'EOF'
import json, sys
src = ["code", "prose", "reasoning"]
with open(sys.argv[1], "w") as f:
    for i in range(16):
        key = "text" if i == 3 else "prompt"
        pid = 1000 + i if i == 4 else f"p{i}"
        f.write(json.dumps({"id": pid, "source": src[i % 3], key: f"Prompt {i}: wait, let me think about item {i}."}) + "\n")
EOF

# A repetition penalty below 1 boosts repeated tokens, so a random model loops
# sometimes; a short min-cover lets the exact detector fire within 160 tokens.
COMMON=(--prompts "$S/prompts.jsonl" --max-tokens 160 --seed 7 --loop-min-cover 16 --rep-window 128)
A=(--sampler temp=0.5,repeat_penalty=0.2 "${COMMON[@]}")

dm eval loops "$S/tiny" "${A[@]}" --out "$S/a.jsonl" --json >"$S/a.json"
dm eval loops "$S/tiny" "${A[@]}" --out "$S/a2.jsonl" >/dev/null
cmp "$S/a.jsonl" "$S/a2.jsonl" || fail "same seed, different run files"
[ "$(wc -l <"$S/a.jsonl")" -eq 17 ] || fail "expected header + 16 lines"

# batching: rows are independent below the GEMM threshold (24 rows), so one
# sequence at a time and 5 together must give the same lines, in prompt order;
# the header records the batch, and a file from another batch is refused.
dm eval loops "$S/tiny" "${A[@]}" --batch 1 --out "$S/b1.jsonl" >/dev/null
dm eval loops "$S/tiny" "${A[@]}" --batch 5 --out "$S/b5.jsonl" >/dev/null
grep -q '"batch":1,' "$S/b1.jsonl" && grep -q '"batch":5,' "$S/b5.jsonl" || fail "batch not in the header"
cmp <(tail -n +2 "$S/b1.jsonl") <(tail -n +2 "$S/b5.jsonl") || fail "--batch 1 and --batch 5 generated different lines"
cmp <(tail -n +2 "$S/b1.jsonl") <(tail -n +2 "$S/a.jsonl") || fail "--batch 1 and the default batch differ"
set +e
"$BIN" eval loops "$S/tiny" "${A[@]}" --batch 4 --out "$S/b5.jsonl" -t 1 -q >/dev/null 2>"$S/err.txt"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "batch differ" "$S/err.txt" || fail "resume with another --batch: exit $rc: $(cat "$S/err.txt")"

# resume from a smaller --n
dm eval loops "$S/tiny" "${A[@]}" --n 5 --out "$S/r.jsonl" >/dev/null
[ "$(wc -l <"$S/r.jsonl")" -eq 6 ] || fail "--n 5 wrote $(wc -l <"$S/r.jsonl") lines"
dm eval loops "$S/tiny" "${A[@]}" --out "$S/r.jsonl" >/dev/null
cmp "$S/a.jsonl" "$S/r.jsonl" || fail "--n 5 then all differs from one run"

# resume a file cut in the middle of a line (as a kill during a write leaves it)
head -n 9 "$S/a.jsonl" >"$S/k.jsonl"
sed -n 10p "$S/a.jsonl" | head -c 40 >>"$S/k.jsonl"
dm eval loops "$S/tiny" "${A[@]}" --out "$S/k.jsonl" >/dev/null
cmp "$S/a.jsonl" "$S/k.jsonl" || fail "resume after a cut line differs from one run"

# mismatched headers and prompts are refused, the file untouched
for bad in "--seed 8" "--sampler temp=0.6,repeat_penalty=0.2" "--loop-min-cover 20" "--max-tokens 100"; do
    set +e
    # shellcheck disable=SC2086
    "$BIN" eval loops "$S/tiny" "${A[@]}" $bad --out "$S/a2.jsonl" -t 1 -q >/dev/null 2>"$S/err.txt"
    rc=$?
    set -e
    [ $rc -eq 1 ] || fail "'$bad' on an existing run: exit $rc, want 1"
    grep -q "differ" "$S/err.txt" || fail "'$bad': message: $(cat "$S/err.txt")"
    cmp "$S/a.jsonl" "$S/a2.jsonl" || fail "'$bad' modified the run file"
done
sed 's/"p2"/"q2"/' "$S/prompts.jsonl" >"$S/prompts2.jsonl"
set +e
"$BIN" eval loops "$S/tiny" "${A[@]}" --prompts "$S/prompts2.jsonl" --out "$S/a2.jsonl" -t 1 -q >/dev/null 2>"$S/err.txt"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "prompts file" "$S/err.txt" || fail "other prompts accepted (exit $rc): $(cat "$S/err.txt")"

# B: the same prompts and seed with the strong guardrail and the hesitation
# penalty (paired with A); C: another seed (unpaired).
dm eval loops "$S/tiny" "${A[@]}" --guardrail strong --hesitation-penalty 2 --out "$S/b.jsonl" --json >"$S/b.json"
grep -q '"hesitation_ids":\[[0-9]' "$S/b.jsonl" || fail "no hesitation ids in b's header"
grep -q 'min_p=0.05,repeat_penalty=1.1,' "$S/b.jsonl" || fail "guardrail not in b's sampler spec"
C=(--sampler temp=0.5,repeat_penalty=0.2 --prompts "$S/prompts.jsonl" --max-tokens 160 --seed 99 --loop-min-cover 16 --rep-window 128)
dm eval loops "$S/tiny" "${C[@]}" --out "$S/c.jsonl" --json >"$S/c.json"

$PY "$HERE/eval_loops_ref.py" loops "$S/a.json" "$S/a.jsonl"
$PY "$HERE/eval_loops_ref.py" loops "$S/b.json" "$S/b.jsonl"
dm eval compare "$S/a.jsonl" "$S/b.jsonl" --json >"$S/ab.json"
$PY "$HERE/eval_loops_ref.py" compare "$S/ab.json" "$S/a.jsonl" "$S/b.jsonl"
dm eval compare "$S/a.jsonl" "$S/c.jsonl" --json >"$S/ac.json"
$PY "$HERE/eval_loops_ref.py" compare "$S/ac.json" "$S/a.jsonl" "$S/c.jsonl"
# --n 5: what the first 5 prompts alone say (the oracle reads files cut to them)
dm eval compare "$S/a.jsonl" "$S/b.jsonl" --n 5 --json >"$S/ab5.json"
head -n 6 "$S/a.jsonl" >"$S/a5.jsonl"
head -n 6 "$S/b.jsonl" >"$S/b5.jsonl"
$PY "$HERE/eval_loops_ref.py" compare "$S/ab5.json" "$S/a5.jsonl" "$S/b5.jsonl"
dm eval compare "$S/a.jsonl" "$S/b.jsonl" >"$S/ab.txt"
grep -q "sample size guidance" "$S/ab.txt" || fail "compare text lacks the guidance"

# runs under another token cap compare with a warning
dm eval loops "$S/tiny" --sampler temp=0.5 --prompts "$S/prompts.jsonl" --n 4 --max-tokens 100 --out "$S/d.jsonl" >/dev/null
dm eval compare "$S/a.jsonl" "$S/d.jsonl" --json >"$S/ad.json"
grep -q '"max_tokens differs' "$S/ad.json" || fail "no warning for different max_tokens"
grep -Eq '"warnings":[[:space:]]*\[\]' "$S/ab.json" || fail "warnings for comparable runs"

# generate takes the same sampler additions
dm generate "$S/tiny" -p "Hello" -n 4 --guardrail gentle --hesitation-penalty 2 --hesitation-words hmm,wait >/dev/null 2>&1 \
    || fail "generate with --guardrail / --hesitation-penalty failed"
if "$BIN" generate "$S/tiny" -p "Hello" -n 4 --guardrail loud -t 1 -q >/dev/null 2>&1; then fail "unknown guardrail accepted"; fi

dm eval report "$S/a.jsonl" "$S/b.jsonl" "$S/c.jsonl" --out "$S/report.md" --json >"$S/rep.json"
$PY "$HERE/eval_loops_ref.py" report "$S/rep.json" "$S/a.jsonl" "$S/b.jsonl" "$S/c.jsonl"
[ -s "$S/report.md" ] && [ -s "$S/report.svg" ] || fail "report files missing"
grep -q "^| a.jsonl | 16 |" "$S/report.md" || fail "report table lacks run a"
$PY -c "import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); \
assert r.tag.endswith('svg') and len(r.findall('{http://www.w3.org/2000/svg}rect')) >= 4" "$S/report.svg" \
    || fail "report.svg is not a chart"
echo "check_eval_loops: ok"
