#!/usr/bin/env bash
# check_corpus_cli — the corpus and tokenizer commands as a user runs them, on
# small source trees made here: corpus build (twice with the same seed:
# identical bytes; refuses to overwrite without --force; a missing source
# directory is exit 1 naming it), every record valid JSON with a known
# source; corpus reasoning (held-out problems whose printed answers the
# Python evaluation of the question confirms); tokenizer train (the GLM
# special tokens in order after the learned ones, token counts for every
# split and domain, a tokenizer that round-trips the corpus through
# `tokenizer encode` + the Python reference tokenizer); usage errors (exit 2).
# usage: check_corpus_cli.sh <demolish> <scratch-dir>
set -u
BIN=$1
TMP=$2
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$TMP" && mkdir -p "$TMP"
fails=0
ok()   { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails+1)); }

mkdir -p "$TMP/py/email" "$TMP/doc/admin-guide"
printf 'import os\n\ndef main(argv):\n    """Entry point."""\n    return len(argv)\n' > "$TMP/py/tool.py"
printf 'class Message:\n    def get(self, key, default=None):\n        return self.headers.get(key, default)\n' > "$TMP/py/email/message.py"
printf 'Kernel parameters\n=================\n\nThe kernel parses parameters from the command line.\n' | gzip -9n > "$TMP/doc/admin-guide/params.rst.gz"
printf 'Index\n=====\n\nWelcome to the documentation.\n' > "$TMP/doc/index.rst"

build() { "$BIN" corpus build --code-dir "$TMP/py" --prose-dir "$TMP/doc" --reasoning-docs 300 -q "$@"; }
build --out "$TMP/c1" --seed 5 && build --out "$TMP/c2" --seed 5 && ok "corpus build" || fail "corpus build"
same=1
for f in train.jsonl val.jsonl test.jsonl stats.json; do cmp -s "$TMP/c1/$f" "$TMP/c2/$f" || same=0; done
[ $same -eq 1 ] && ok "same seed, identical bytes" || fail "same seed gave different files"
$PY - "$TMP/c1" <<'EOF' && ok "records are JSON with id/source/text; stats.json agrees" || fail "records / stats.json"
import json, sys
d = sys.argv[1]
stats = json.load(open(d + "/stats.json"))
for split in ("train", "val", "test"):
    n = {}
    for line in open(f"{d}/{split}.jsonl"):
        r = json.loads(line)
        assert set(r) == {"id", "source", "text"}, r
        n[r["source"]] = n.get(r["source"], 0) + 1
    for src in ("code", "prose", "reasoning"):
        assert stats["splits"][split][src]["documents"] == n.get(src, 0), (split, src, n)
texts = [json.loads(l)["text"] for s in ("train", "val", "test") for l in open(f"{d}/{s}.jsonl")]
assert any(t.startswith("Kernel parameters") for t in texts), "the .rst.gz document is missing"
EOF
build --out "$TMP/c1" 2>"$TMP/err.txt"; rc=$?
[ $rc -eq 1 ] && grep -q "already exists" "$TMP/err.txt" && ok "refuses to overwrite without --force" || fail "overwrite (rc $rc)"
build --out "$TMP/c1" --seed 5 --force && ok "--force replaces" || fail "--force"
"$BIN" corpus build --out "$TMP/c3" --code-dir "$TMP/nope" -q 2>"$TMP/err.txt"; rc=$?
[ $rc -eq 1 ] && grep -q "nope" "$TMP/err.txt" && [ ! -e "$TMP/c3" ] && ok "missing source: exit 1, nothing written" \
  || fail "missing source (rc $rc): $(cat "$TMP/err.txt")"

"$BIN" corpus reasoning -n 40 --prompts > "$TMP/problems.tsv" && $PY - "$TMP/problems.tsv" <<'EOF' \
  && ok "corpus reasoning: answers agree with Python's evaluation" || fail "corpus reasoning answers"
import re, sys
for line in open(sys.argv[1]):
    q, a = line.rstrip("\n").split("\t")
    x, y = map(int, re.findall(r"\d+", q))
    if "larger" in q: want = max(x, y)
    elif "smaller" in q: want = min(x, y)
    elif "+" in q or "gets" in q: want = x + y
    elif " - " in q or "gives away" in q: want = x - y
    else: want = x * y
    assert str(want) == a, (q, a, want)
EOF

"$BIN" tokenizer train "$TMP/c1" --vocab 400 --out "$TMP/tok.json" --stats "$TMP/tokstats.json" -q > "$TMP/counts.txt" \
  && ok "tokenizer train" || fail "tokenizer train"
grep -q "reasoning" "$TMP/counts.txt" && ok "token counts printed per split and domain" || fail "no token counts"
$PY - "$TMP/tok.json" "$TMP/tokstats.json" <<'EOF' && ok "special tokens, vocab size, counts JSON" || fail "tokenizer.json layout"
import json, sys
t = json.load(open(sys.argv[1]))
want = ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
        "<|assistant|>", "<|observation|>", "<think>", "</think>"]
added = sorted(t["added_tokens"], key=lambda a: a["id"])
assert [a["content"] for a in added] == want and all(a["special"] for a in added)
n_vocab = len(t["model"]["vocab"])
assert [a["id"] for a in added] == list(range(n_vocab, n_vocab + len(want)))
assert n_vocab + len(want) <= 400
s = json.load(open(sys.argv[2]))
assert s["splits"]["train"]["reasoning"]["tokens"] > s["splits"]["train"]["reasoning"]["documents"]
EOF
# the trained tokenizer through the independent Python tokenizer: same ids on corpus texts
$PY - "$BIN" "$TMP" "$HERE/../reference/tokenizer_ref.py" <<'EOF' && ok "trained tokenizer: ids equal the Python reference" || fail "tokenizer vs reference"
import json, subprocess, sys
bin_, tmp, ref = sys.argv[1:4]
texts = [json.loads(l)["text"] for l in open(tmp + "/c1/val.jsonl")][:20]
texts += ["What is 4827 + 395?\n<think>\ncol 1: 7+5+0=12\n</think>\n5222"]
with open(tmp + "/cases.txt", "w") as f:
    for t in texts:
        f.write("1 " + t.encode().hex() + "\n")
ref_out = subprocess.run(["/usr/bin/python3", ref, tmp + "/tok.json", tmp + "/cases.txt"], check=True,
                         capture_output=True, text=True).stdout.splitlines()
for t, r in zip(texts, ref_out):
    got = subprocess.run([bin_, "tokenizer", "encode", tmp + "/tok.json", "--text", t], check=True,
                         capture_output=True, text=True).stdout.strip().replace(",", " ")
    assert got == r.strip(), (t[:40], got[:80], r[:80])
EOF

usage() { "$BIN" "$@" >/dev/null 2>&1; [ $? -eq 2 ] && ok "usage error: $*" || fail "expected exit 2: $*"; }
usage corpus
usage corpus frobnicate
usage corpus build
usage corpus build --out "$TMP/x" --reasoning-docs -1
usage tokenizer train "$TMP/c1"
usage tokenizer encode "$TMP/tok.json"
usage eval ppl
"$BIN" corpus --help | grep -q "build" && ok "corpus --help" || fail "corpus --help"

[ $fails -eq 0 ] && echo "check_corpus_cli: ok" || echo "check_corpus_cli: $fails failure(s)"
[ $fails -eq 0 ]
