#!/usr/bin/env bash
# check_eval_kl — `demolish eval kl` against the float64 numpy oracle in
# tests/reference/kl_ref.py, which rebuilds the scored positions on its own
# (`demolish tokenizer encode` per document, framed <|endoftext|> doc
# <|endoftext|>, non-overlapping windows of --ctx predictions, --max-tokens
# cut), gets each window's f32 logits from `demolish logits --ids` for the
# teacher and every student, and recomputes per position the full KL, the
# top-k + "other" bucket KL, top-1 agreement and both NLLs; then every number
# of the --json report (mean KL ± SE, median/p90/p99/p99.9 by linear
# interpolation, max, top-1 agreement ± SE, both perplexities, their ratio and
# the SE of its log, overall and per source) and the cache file's contents
# (tokens, doc_start, top ids with ties to the lower id, log-probabilities,
# bucket mass) within the tolerances named and justified in kl_ref.py.
# Cases: --full with three students in one call (a random student, a pruned
# teacher, the teacher itself: KL ~ 0, top-1 100 %), --top-k 8 (top-k KL <=
# full KL at every position), two sources and a document without one, --ctx
# smaller than the documents (several windows each) and larger, --max-tokens
# cutting a document and a window short; the cache reused with TEACHER '-'
# gives identical results; refused with a clear error naming the cause: a
# cache of other data / another --ctx / --top-k / --full / --max-tokens /
# another teacher, TEACHER '-' without a cache, a student with another
# vocabulary, a corrupt cache (and a refused run leaves the cache as it was).
# usage: check_eval_kl.sh <demolish> <scratch-dir>
set -u
BIN=$1
TMP=$2
PY=/usr/bin/python3
REF=tests/reference/kl_ref.py
CTX=16          # smaller than the documents: several windows each
BIG_CTX=64      # larger than every document: one window each
TOPK=8          # small enough that the other bucket holds most of the mass
MAXTOK=60       # cuts the second document (and its window) short (the first has 47 predictions)
rm -rf "$TMP" && mkdir -p "$TMP"
fails=0
ok()   { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails+1)); }
kl()   { "$BIN" eval kl "$@" -q; }

# ---- models: teacher T, student S (another seed, same tokenizer), P (T pruned), W (vocab 512)
"$BIN" init --preset tiny --dtype f32 --seed 11 -q "$TMP/T" && "$BIN" init --preset tiny --dtype f32 --seed 12 -q "$TMP/S" \
  || { echo "FAIL init"; exit 1; }
$PY - "$TMP" <<'EOF'
import json, sys
tmp = sys.argv[1]
docs = [
    ("a", "code", "def parse_args(argv):\n    for a in argv:\n        if a.startswith('--'):\n            yield a\n"),
    ("b", "prose", "The kernel boots in stages. Each stage hands over to the next one."),
    ("c", "", "x = 1"),
    ("d", "code", "What is 12 + 34?\n<think>\n2+4=6\n</think>\n46"),
]
with open(tmp + "/data.jsonl", "w") as f:
    for i, s, t in docs:
        f.write(json.dumps({"id": i, "source": s, "text": t}) + "\n")
with open(tmp + "/other.jsonl", "w") as f:
    f.write(json.dumps({"id": "z", "source": "prose", "text": "Another text entirely."}) + "\n")
c = json.load(open(tmp + "/T/config.json"))
c["vocab_size"] = 512
json.dump(c, open(tmp + "/v512.json", "w"))
EOF
"$BIN" init --config "$TMP/v512.json" --dtype f32 --seed 11 -q "$TMP/W" || fail "init vocab-512 model"
"$BIN" calibrate "$TMP/T" --data "$TMP/data.jsonl" --ctx $CTX --out "$TMP/stats.st" -q \
  && "$BIN" plan "$TMP/stats.st" --keep 0.75 --out "$TMP/plan.json" -q >/dev/null \
  && "$BIN" prune "$TMP/T" --plan "$TMP/plan.json" --out "$TMP/P" -q \
  || { echo "FAIL calibrate/plan/prune"; exit 1; }
T=$TMP/T S=$TMP/S P=$TMP/P D=$TMP/data.jsonl

# ---- against the oracle
kl "$T" "$S" "$P" "$T" --data "$D" --full --ctx $CTX --cache "$TMP/full.st" --json > "$TMP/full.json" \
  && $PY $REF check "$BIN" "$TMP" "$TMP/full.json" "$D" "$T" "$S,$P,$T" $CTX 0 0 "$TMP/full.st" \
  && ok "--full, 3 students (random, pruned, itself), ctx $CTX: report and cache match the oracle" \
  || fail "--full against the oracle"
kl "$T" "$S" "$P" --data "$D" --top-k $TOPK --ctx $CTX --cache "$TMP/top.st" --json > "$TMP/top.json" \
  && $PY $REF check "$BIN" "$TMP" "$TMP/top.json" "$D" "$T" "$S,$P" $CTX $TOPK 0 "$TMP/top.st" \
  && ok "--top-k $TOPK: report and cache match the oracle, top-k KL <= full KL per position" \
  || fail "--top-k $TOPK against the oracle"
kl "$T" "$S" --data "$D" --top-k $TOPK --ctx $BIG_CTX --max-tokens $MAXTOK --json > "$TMP/cut.json" \
  && $PY $REF check "$BIN" "$TMP" "$TMP/cut.json" "$D" "$T" "$S" $BIG_CTX $TOPK $MAXTOK \
  && ok "--max-tokens $MAXTOK with --ctx $BIG_CTX: exactly $MAXTOK predictions, truncated, matches the oracle" \
  || fail "--max-tokens / large ctx against the oracle"
$PY -c "
import json; a, b = json.load(open('$TMP/full.json')), json.load(open('$TMP/top.json'))
for i in range(2):   # the bucket can only lower the divergence (log-sum inequality)
    fa, ta = a['students'][i], b['students'][i]
    assert ta['total']['kl_mean'] <= fa['total']['kl_mean'] and ta['total']['kl_max'] <= fa['total']['kl_max'] + 1e-6, (fa, ta)
    assert ta['total']['ppl_ratio'] == fa['total']['ppl_ratio'] and ta['total']['top1_agreement'] == fa['total']['top1_agreement']
" && ok "top-k and full agree on ppl and top-1; top-k mean and max KL are lower" || fail "top-k vs full reports"

# ---- the cache read back
kl - "$S" "$P" --data "$D" --cache "$TMP/top.st" --json > "$TMP/top2.json" \
  && $PY $REF same "$TMP/top.json" "$TMP/top2.json" "$S" && $PY $REF same "$TMP/top.json" "$TMP/top2.json" "$P" \
  && ok "TEACHER '-' with the --top-k cache: identical results" || fail "top-k cache reuse"
kl - "$P" --data "$D" --cache "$TMP/full.st" --ctx $CTX --full --json > "$TMP/full2.json" \
  && $PY $REF same "$TMP/full.json" "$TMP/full2.json" "$P" \
  && ok "TEACHER '-' with the --full cache (matching --ctx/--full given): identical results" || fail "full cache reuse"
kl "$T" "$S" --data "$D" --cache "$TMP/full.st" --json > "$TMP/full3.json" \
  && $PY $REF same "$TMP/full.json" "$TMP/full3.json" "$S" \
  && ok "the teacher named with an existing cache: checked and reused" || fail "cache reuse with the teacher named"

# ---- refusals: exit 1 and a message naming the cause
sum_before=$(md5sum < "$TMP/full.st")
refuse() {   # refuse DESCRIPTION PATTERN ARGS...
    local what=$1 pat=$2; shift 2
    kl "$@" > /dev/null 2> "$TMP/err.txt"; local rc=$?
    if [ $rc -eq 1 ] && grep -q -- "$pat" "$TMP/err.txt" && [ "$(wc -l < "$TMP/err.txt")" -eq 1 ]; then
        ok "refused: $what"
    else
        fail "$what (rc $rc): $(cat "$TMP/err.txt")"
    fi
}
refuse "a cache of other data" "full.st) was made from other data" - "$S" --data "$TMP/other.jsonl" --cache "$TMP/full.st"
refuse "a cache of another --ctx" "full.st: the cache has windows of $CTX predictions, not --ctx 8" \
    - "$S" --data "$D" --cache "$TMP/full.st" --ctx 8
refuse "a full cache asked for --top-k" "full.st: the cache holds full distributions, not --top-k 8" \
    - "$S" --data "$D" --cache "$TMP/full.st" --top-k 8
refuse "a top-k cache asked for --full" "top.st: the cache holds the top $TOPK tokens, not --full" \
    - "$S" --data "$D" --cache "$TMP/top.st" --full
refuse "a cache of another --max-tokens" "another --max-tokens" - "$S" --data "$D" --cache "$TMP/full.st" --max-tokens 10
refuse "a cache of another teacher (same architecture, other weights)" "full.st: the cache was made by another teacher than $S" \
    "$S" "$P" --data "$D" --cache "$TMP/full.st"
refuse "a cache of another teacher (the pruned one)" "full.st: the cache was made by another teacher than $P" \
    "$P" "$S" --data "$D" --cache "$TMP/full.st"
refuse "TEACHER '-' without --cache" "TEACHER '-' needs an existing --cache" - "$S" --data "$D"
refuse "TEACHER '-' with a missing cache" "missing.st: no such cache file" - "$S" --data "$D" --cache "$TMP/missing.st"
refuse "a student with another vocabulary" "vocabulary (512) differs from the teacher's (384)" \
    "$T" "$TMP/W" --data "$D" --ctx $CTX --full
refuse "a student with another vocabulary, from the cache" "vocabulary (512) differs" - "$TMP/W" --data "$D" \
    --cache "$TMP/top.st"
head -c 3000 "$TMP/full.st" > "$TMP/bad.st"
refuse "a truncated cache file" "bad.st" - "$S" --data "$D" --cache "$TMP/bad.st"
[ "$(md5sum < "$TMP/full.st")" = "$sum_before" ] && ok "refused runs leave the cache file untouched" \
  || fail "a refused run changed the cache file"
"$BIN" eval kl "$T" "$S" --data "$D" --full --top-k 4 -q >/dev/null 2>&1; [ $? -eq 2 ] \
  && ok "--full with --top-k: usage error" || fail "--full with --top-k"
"$BIN" eval kl --help | grep -q -- "--cache" && ok "eval kl --help" || fail "eval kl --help"

[ $fails -eq 0 ] && echo "check_eval_kl: ok" || echo "check_eval_kl: $fails failure(s)"
[ $fails -eq 0 ]
