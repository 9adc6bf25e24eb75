#!/usr/bin/env bash
# check_eval_ppl — `demolish eval ppl` against a float64 oracle in numpy: for
# each document the oracle gets the ids from `demolish tokenizer encode`,
# frames them <|endoftext|> … <|endoftext|>, cuts non-overlapping windows of
# --ctx predictions, asks `demolish logits --ids` for each window's logits and
# computes the loss with log-softmax in float64. Loss per source and overall,
# token and byte counts, perplexity and bits per byte must agree within
# LOSS_RTOL (both sides see the same f32 logits; only the summation order
# differs). Also: a plain .txt file, a corpus directory (default split val,
# DIR:split), --max-tokens, and that `eval reasoning` runs.
# usage: check_eval_ppl.sh <demolish> <scratch-dir>
set -u
BIN=$1
TMP=$2
PY=/usr/bin/python3
LOSS_RTOL=1e-9
CTX=16
rm -rf "$TMP" && mkdir -p "$TMP"
fails=0
ok()   { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails+1)); }

"$BIN" init --preset tiny --dtype f32 --seed 4 -q "$TMP/m" || { echo "FAIL init"; exit 1; }
$PY - "$TMP/data.jsonl" <<'EOF'
import json, sys
docs = [
    ("a", "code", "def parse_args(argv):\n    for a in argv:\n        if a.startswith('--'):\n            yield a\n"),
    ("b", "prose", "The kernel boots in stages. Each stage hands over to the next one, and the last starts init."),
    ("c", "code", "x = 1"),
    ("d", "reasoning", "What is 12 + 34?\n<think>\ncol 1: 2+4+0=6, write 6, carry 0\n</think>\n46"),
]
with open(sys.argv[1], "w") as f:
    for i, s, t in docs:
        f.write(json.dumps({"id": i, "source": s, "text": t}) + "\n")
EOF
"$BIN" eval ppl "$TMP/m" --data "$TMP/data.jsonl" --ctx $CTX --json -q > "$TMP/eval.json" \
  && ok "eval ppl --json runs" || fail "eval ppl --json"

$PY - "$BIN" "$TMP" $CTX $LOSS_RTOL <<'EOF' && ok "loss, ppl, bits/byte per source match the float64 oracle" || fail "oracle comparison"
import json, math, subprocess, sys
import numpy as np
bin_, tmp, ctx, rtol = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
model = tmp + "/m"
tok = json.load(open(model + "/tokenizer.json"))
eos = next(a["id"] for a in tok["added_tokens"] if a["content"] == "<|endoftext|>")

def encode(text):
    out = subprocess.run([bin_, "tokenizer", "encode", model, "--text", text], check=True, capture_output=True, text=True)
    return [int(x) for x in out.stdout.strip().split(",") if x]

def window_nll(inputs, targets):
    subprocess.run([bin_, "logits", model, "--ids", ",".join(map(str, inputs)), "--out", tmp + "/w.npy", "-q"], check=True)
    x = np.load(tmp + "/w.npy").astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(x - m).sum(axis=1))
    return float((lse - x[np.arange(len(targets)), targets]).sum())

acc = {}
for line in open(tmp + "/data.jsonl"):
    d = json.loads(line)
    ids = [eos] + encode(d["text"]) + [eos]
    nll, n = 0.0, 0
    for start in range(0, len(ids) - 1, ctx):
        w = ids[start:start + ctx + 1]
        nll += window_nll(w[:-1], w[1:])
        n += len(w) - 1
    a = acc.setdefault(d["source"], [0.0, 0, 0])
    a[0] += nll; a[1] += n; a[2] += len(d["text"].encode())
tot = [sum(a[i] for a in acc.values()) for i in range(3)]
got = json.load(open(tmp + "/eval.json"))
bad = 0
def cmp(name, g, want):
    global bad
    nll, n, nb = want
    exp = {"tokens": n, "bytes": nb, "loss": nll / n, "ppl": math.exp(nll / n), "bits_per_byte": nll / math.log(2) / nb}
    for k, v in exp.items():
        if isinstance(v, int):
            ok = g[k] == v
        else:
            ok = abs(g[k] - v) <= rtol * abs(v)
        if not ok:
            print(f"  {name}.{k}: demolish {g[k]!r}, oracle {v!r} (rel {abs(g[k]-v)/max(abs(v),1e-300):.3g})")
            bad += 1
for s, a in acc.items():
    cmp(s, got["sources"][s], a)
cmp("total", got["total"], tot)
assert got["ctx"] == ctx and got["total"]["documents"] == 4 and not got["truncated"]
print(f"  total loss {got['total']['loss']:.6f} nats over {tot[1]} tokens (oracle {tot[0]/tot[1]:.6f})")
sys.exit(1 if bad else 0)
EOF

printf 'The kernel boots in stages.\nEach stage hands over to the next one.\n' > "$TMP/plain.txt"
"$BIN" eval ppl "$TMP/m" --data "$TMP/plain.txt" --ctx $CTX --json -q > "$TMP/plain.json" \
  && $PY -c "import json; d=json.load(open('$TMP/plain.json')); assert d['total']['documents']==1 and d['total']['bytes']==67 and d['sources']=={}, d" \
  && ok "plain .txt is one document without a source" || fail "plain .txt"
"$BIN" eval ppl "$TMP/m" --data "$TMP/data.jsonl" --ctx $CTX --max-tokens 20 --json -q > "$TMP/max.json" \
  && $PY -c "import json; d=json.load(open('$TMP/max.json')); assert d['total']['tokens']==20 and d['truncated'], d" \
  && ok "--max-tokens stops at exactly N predictions" || fail "--max-tokens"

mkdir -p "$TMP/corpus"
for s in train val test; do cp "$TMP/data.jsonl" "$TMP/corpus/$s.jsonl"; done
head -1 "$TMP/data.jsonl" > "$TMP/corpus/val.jsonl"
"$BIN" eval ppl "$TMP/m" --data "$TMP/corpus" --ctx $CTX --json -q > "$TMP/c1.json" \
  && $PY -c "import json; d=json.load(open('$TMP/c1.json')); assert d['total']['documents']==1, d" \
  && ok "a corpus directory means its val split" || fail "corpus directory default split"
"$BIN" eval ppl "$TMP/m" --data "$TMP/corpus:test" --ctx $CTX --json -q > "$TMP/c2.json" \
  && cmp -s <($PY -c "import json; print(json.load(open('$TMP/c2.json'))['total'])") \
            <($PY -c "import json; print(json.load(open('$TMP/eval.json'))['total'])") \
  && ok "DIR:test reads test.jsonl" || fail "DIR:split"
"$BIN" eval ppl "$TMP/m" --data "$TMP/missing.jsonl" -q 2>"$TMP/err.txt"; rc=$?
[ $rc -eq 1 ] && grep -q "missing.jsonl" "$TMP/err.txt" && ok "missing data: exit 1 naming the file" || fail "missing data (rc $rc)"
"$BIN" eval ppl "$TMP/m" >/dev/null 2>&1; [ $? -eq 2 ] && ok "no --data: usage error" || fail "no --data"
"$BIN" eval ppl --help | grep -q -- "--max-tokens" && ok "eval ppl --help" || fail "eval ppl --help"
# reasoning accuracy runs end to end (a random model gets nothing right)
"$BIN" eval reasoning "$TMP/m" -n 3 --max-new 6 --json -q > "$TMP/reason.json" \
  && $PY -c "import json; d=json.load(open('$TMP/reason.json')); assert d['problems']==3 and 0<=d['exact_match']<=1 and d['mean_generated_tokens']<=6, d" \
  && ok "eval reasoning --json" || fail "eval reasoning"

[ $fails -eq 0 ] && echo "check_eval_ppl: ok" || echo "check_eval_ppl: $fails failure(s)"
[ $fails -eq 0 ]
