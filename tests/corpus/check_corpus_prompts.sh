#!/usr/bin/env bash
# check_corpus_prompts — `demolish corpus prompts` on small corpora written
# here (train/val/test .jsonl as `corpus build` writes them, with UTF-8, CRLF
# and whitespace-only lines): N prompts per source; every prompt's id names
# its test document and byte range and the text is exactly those bytes;
# code/prose windows start at a non-empty line start, end with "\n", lie in
# [min, max] bytes, are not whitespace-only; reasoning prompts are the test
# document up to and including the first "\n<think>\n"; ids and texts unique;
# no text from train/val; sources mixed from the first lines; no overlap when
# the summary reports none; same options -> identical bytes, another seed ->
# other bytes; --force / overwrite refusal; the corpus never written; too few
# windows or problems -> exit 1 naming the source; bad records and a missing
# test split -> exit 1 naming the file; usage errors -> exit 2; --json and -q.
# usage: check_corpus_prompts.sh <demolish> <scratch-dir>
set -u
BIN=$1
TMP=$2
PY=/usr/bin/python3
rm -rf "$TMP" && mkdir -p "$TMP"
fails=0
ok()   { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails+1)); }

# ---- the corpora: c (roomy) and c2 (one short prose document) ----
$PY - "$TMP" <<'EOF' || { echo "FAIL writing the corpora"; exit 1; }
import json, os, random, sys
tmp = sys.argv[1]
r = random.Random(1)
words = "alpha beta gamma delta kernel buffer résumé naïve 数据 λx queue lock page frame".split()
def code_doc(n_lines, crlf=False):
    out = []
    for i in range(n_lines):
        k = r.randrange(10)
        if k == 0: line = ""
        elif k == 1: line = "    " * r.randrange(1, 3)          # whitespace-only
        elif k == 2: line = "def f_%d(%s):" % (i, ", ".join(r.sample(words, 2)))
        else: line = "    " * r.randrange(0, 3) + " ".join(r.choice(words) for _ in range(r.randrange(1, 9)))
        out.append(line)
    nl = "\r\n" if crlf else "\n"
    return nl.join(out) + nl
def prose_doc(n_par):
    pars = []
    for p in range(n_par):
        pars.append("\n".join(" ".join(r.choice(words) for _ in range(r.randrange(4, 14)))
                              for _ in range(r.randrange(1, 6))))
    return "Title %d\n=====\n\n" % r.randrange(1000) + "\n\n".join(pars) + "\n"
def reasoning_doc(i):
    a, b = r.randrange(10, 999), r.randrange(10, 999)
    return "What is %d + %d?\n<think>\nstep %d: add\n</think>\n%d" % (a, b, i, a + b)
def write(path, recs):
    with open(path, "w") as f:
        for rid, src, text in recs:
            f.write(json.dumps({"id": rid, "source": src, "text": text}, ensure_ascii=False) + "\n")
test = [("code/pkg/m%d.py" % i, "code", code_doc(120, crlf=(i == 2))) for i in range(5)]
test.append(("code/blank.py", "code", "   \n\t\n" * 200))             # gives no window at all
test += [("prose/doc%d.rst" % i, "prose", prose_doc(25)) for i in range(4)]
test += [("reasoning/7/%d" % i, "reasoning", reasoning_doc(i)) for i in range(60)]
r.shuffle(test)
train = [("code/train%d.py" % i, "code", "TRAINONLY = %d\n" % i * 40) for i in range(3)]
train += [("prose/train.rst", "prose", "TRAINONLY prose\n" * 50),
          ("reasoning/7/900", "reasoning", "TRAINONLY What is 1 + 1?\n<think>\nx\n</think>\n2")]
val = [("prose/val.rst", "prose", "TRAINONLY val prose\n" * 50)]
for name, recs in (("c", test), ("c2", None)):
    os.makedirs(f"{tmp}/{name}")
    if recs is None:   # c2: the same, but a single short prose document
        recs = [t for t in test if t[1] != "prose"] + [("prose/short.rst", "prose", prose_doc(3))]
    write(f"{tmp}/{name}/test.jsonl", recs)
    write(f"{tmp}/{name}/train.jsonl", train)
    write(f"{tmp}/{name}/val.jsonl", val)
EOF
sum_before=$(cat "$TMP"/c/*.jsonl | sha256sum)

P() { "$BIN" corpus prompts "$@"; }
ARGS=(--per-source 40 --min-bytes 60 --max-bytes 240 --seed 3)

P "$TMP/c" --out "$TMP/p1.jsonl" "${ARGS[@]}" 2>"$TMP/err.txt" && ok "corpus prompts runs" \
  || fail "corpus prompts: $(cat "$TMP/err.txt")"
grep -q "wrote 120 prompts" "$TMP/err.txt" && grep -q "code 40 (mean" "$TMP/err.txt" \
  && ok "one-line summary on stderr" || fail "summary: $(cat "$TMP/err.txt")"

# the oracle: every prompt re-derived from the test split (bytes, not characters)
check() {   # check FILE CORPUS N MIN MAX
$PY - "$@" <<'EOF'
import json, sys
path, corpus, n, lo, hi = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
docs = {}
for line in open(corpus + "/test.jsonl", encoding="utf-8"):
    d = json.loads(line)
    docs[d["id"]] = (d["source"], d["text"].encode())
other = b"".join(json.loads(l)["text"].encode() for s in ("train", "val") for l in open(f"{corpus}/{s}.jsonl"))
recs = [json.loads(l) for l in open(path, encoding="utf-8")]
bad = []
def need(cond, what, rec):
    if not cond:
        bad.append("%s: %s" % (what, rec["id"]))
count = {}
for rec in recs:
    need(set(rec) == {"id", "source", "prompt"}, "keys", rec)
    src, p = rec["source"], rec["prompt"].encode()
    count[src] = count.get(src, 0) + 1
    docid, rng = rec["id"].rsplit("@", 1)
    start, ln = map(int, rng.split("+"))
    need(docid in docs and docs[docid][0] == src, "id names a test document of its source", rec)
    if docid not in docs:
        continue
    text = docs[docid][1]
    need(text[start:start + ln] == p and len(p) == ln, "text is the named bytes of the test document", rec)
    need(b"TRAINONLY" not in p, "no train/val text", rec)
    if src == "reasoning":
        need(start == 0 and p.endswith(b"\n<think>\n"), "reasoning prompt ends with <think>\\n", rec)
        need(text.index(b"\n<think>\n") + 9 == ln, "reasoning prompt = question + \\n<think>\\n", rec)
    else:
        need(start == 0 or text[start - 1:start] == b"\n", "starts at a line start", rec)
        need(p.endswith(b"\n"), "ends with a newline", rec)
        need(lo <= ln <= hi, "length in [%d, %d] (got %d)" % (lo, hi, ln), rec)
        need(p.strip() != b"", "not whitespace-only", rec)
        need(not p.startswith(b"\n") and not p.startswith(b"\r\n"), "first line not empty", rec)
        p.decode("utf-8")
want = {"code": n, "prose": n, "reasoning": n}
if count != want:
    bad.append("counts %s, want %s" % (count, want))
ids = [r["id"] for r in recs]
texts = [r["prompt"] for r in recs]
if len(set(ids)) != len(ids): bad.append("duplicate ids")
if len(set(texts)) != len(texts): bad.append("duplicate prompt texts")
head = {r["source"] for r in recs[:30]}
if head != set(want): bad.append("first 30 lines hold only %s" % sorted(head))
for b in bad[:10]:
    print("  " + b)
sys.exit(1 if bad else 0)
EOF
}
check "$TMP/p1.jsonl" "$TMP/c" 40 60 240 && ok "prompts re-derived from the test split (40/source, 60..240 B)" \
  || fail "prompt contents"

# windows never overlap when the summary says so
P "$TMP/c" --out "$TMP/p3.jsonl" --per-source 10 --min-bytes 60 --max-bytes 240 --json -q > "$TMP/sum.json" \
  2>"$TMP/err.txt"
[ ! -s "$TMP/err.txt" ] && ok "-q: nothing on stderr" || fail "-q printed: $(cat "$TMP/err.txt")"
$PY - "$TMP/sum.json" "$TMP/p3.jsonl" <<'EOF' && ok "--json summary; no overlap when it reports none" || fail "--json / overlap"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["prompts"] == 30 and s["per_source"] == 10, s
spans = {}
for l in open(sys.argv[2]):
    r = json.loads(l)
    docid, rng = r["id"].rsplit("@", 1)
    a, n = map(int, rng.split("+"))
    spans.setdefault((r["source"], docid), []).append((a, a + n))
for src in ("code", "prose", "reasoning"):
    v = s["sources"][src]
    assert v["prompts"] == 10 and v["documents_used"] >= 1 and v["mean_bytes"] > 0, (src, v)
    if v["overlapping"] == 0 and src != "reasoning":
        for (sr, d), sp in spans.items():
            if sr != src: continue
            sp.sort()
            assert all(sp[i][1] <= sp[i + 1][0] for i in range(len(sp) - 1)), (d, sp)
assert s["sources"]["code"]["test_documents"] == 6 and s["sources"]["reasoning"]["test_documents"] == 60
EOF

# determinism, seeds, overwriting
P "$TMP/c" --out "$TMP/p2.jsonl" "${ARGS[@]}" -q && cmp -s "$TMP/p1.jsonl" "$TMP/p2.jsonl" \
  && ok "same options: identical bytes" || fail "two runs differ"
P "$TMP/c" --out "$TMP/p4.jsonl" --per-source 40 --min-bytes 60 --max-bytes 240 --seed 4 -q \
  && ! cmp -s "$TMP/p1.jsonl" "$TMP/p4.jsonl" && check "$TMP/p4.jsonl" "$TMP/c" 40 60 240 \
  && ok "another seed: other prompts, still valid" || fail "--seed 4"
P "$TMP/c" --out "$TMP/p2.jsonl" --per-source 5 -q 2>"$TMP/err.txt"; rc=$?
[ $rc -eq 1 ] && grep -q "already exists" "$TMP/err.txt" && cmp -s "$TMP/p1.jsonl" "$TMP/p2.jsonl" \
  && ok "refuses to overwrite without --force" || fail "overwrite (rc $rc)"
P "$TMP/c" --out "$TMP/p2.jsonl" "${ARGS[@]}" --seed 4 --force -q && cmp -s "$TMP/p2.jsonl" "$TMP/p4.jsonl" \
  && ok "--force replaces" || fail "--force"
P "$TMP/c" --out "$TMP/c/test.jsonl" --per-source 5 --force -q 2>"$TMP/err.txt"; rc=$?
[ $rc -eq 1 ] && grep -q "corpus" "$TMP/err.txt" && ok "will not write over the corpus's test.jsonl" \
  || fail "--out test.jsonl (rc $rc)"
[ "$(cat "$TMP"/c/*.jsonl | sha256sum)" = "$sum_before" ] && ok "corpus files unchanged" || fail "corpus modified"
ls "$TMP" | grep -q "tmp-" && fail "temporary file left behind" || ok "no temporary files left"

# a source that is short names itself, and nothing is written
short() {   # short NAME CORPUS WANT-SOURCE ARGS...
    local name=$1 corpus=$2 src=$3; shift 3
    P "$corpus" --out "$TMP/short.jsonl" "$@" -q 2>"$TMP/err.txt"; local rc=$?
    [ $rc -eq 1 ] && grep -q "$src: only" "$TMP/err.txt" && [ ! -e "$TMP/short.jsonl" ] \
      && ok "$name: exit 1 naming $src ($(sed 's/.*: only/only/' "$TMP/err.txt" | cut -c1-60)...)" \
      || fail "$name (rc $rc): $(cat "$TMP/err.txt")"
}
short "too few reasoning documents" "$TMP/c" reasoning --per-source 61 --min-bytes 60 --max-bytes 240
short "too few code windows" "$TMP/c" code --per-source 5000
short "too few prose windows" "$TMP/c2" prose --per-source 40 --min-bytes 60 --max-bytes 240
P "$TMP/c2" --out "$TMP/c2p.jsonl" --per-source 4 --min-bytes 60 --max-bytes 240 -q \
  && check "$TMP/c2p.jsonl" "$TMP/c2" 4 60 240 && ok "the short corpus at a smaller N" || fail "c2 at N=4"

# bad inputs: exit 1, the message names the file
badcase() {   # badcase NAME DIR GREP
    P "$2" --out "$TMP/bad.jsonl" -q 2>"$TMP/err.txt"; local rc=$?
    [ $rc -eq 1 ] && grep -q "$3" "$TMP/err.txt" && [ "$(wc -l < "$TMP/err.txt")" -eq 1 ] && [ ! -e "$TMP/bad.jsonl" ] \
      && ok "$1: exit 1, one line naming the file" || fail "$1 (rc $rc): $(cat "$TMP/err.txt")"
}
mkdir -p "$TMP/empty" "$TMP/nosrc" "$TMP/nothink" "$TMP/badsrc"
badcase "no test.jsonl" "$TMP/empty" "empty/test.jsonl"
printf '{"id":"code/a.py","text":"x = 1\\n"}\n' > "$TMP/nosrc/test.jsonl"
badcase "record without source" "$TMP/nosrc" "nosrc/test.jsonl.*source"
printf '{"id":"code/a.py","source":"poetry","text":"x = 1\\n"}\n' > "$TMP/badsrc/test.jsonl"
badcase "unknown source" "$TMP/badsrc" "badsrc/test.jsonl.*poetry"
printf '{"id":"reasoning/0/1","source":"reasoning","text":"What is 1 + 1?\\n2"}\n' > "$TMP/nothink/test.jsonl"
badcase "reasoning document without <think>" "$TMP/nothink" "nothink/test.jsonl.*reasoning/0/1"

usage() { "$BIN" "$@" >/dev/null 2>&1; [ $? -eq 2 ] && ok "usage error: $*" || fail "expected exit 2: $*"; }
usage corpus prompts "$TMP/c"
usage corpus prompts --out "$TMP/u.jsonl"
usage corpus prompts "$TMP/c" --out "$TMP/u.jsonl" --per-source 0
usage corpus prompts "$TMP/c" --out "$TMP/u.jsonl" --min-bytes 300 --max-bytes 100
"$BIN" corpus prompts --help | grep -q "per-source" && "$BIN" corpus --help | grep -q "prompts" \
  && ok "--help" || fail "--help"

[ $fails -eq 0 ] && echo "check_corpus_prompts: ok" || echo "check_corpus_prompts: $fails failure(s)"
[ $fails -eq 0 ]
