"""kl_ref — a float64 numpy oracle for `demolish eval kl` (used by tests/eval/check_eval_kl.sh).

It rebuilds, independently of src/eval/kl.c, the positions eval kl scores: every jsonl
document tokenized with `demolish tokenizer encode` (special tokens recognized) and framed
<|endoftext|> doc <|endoftext|>; each framed document cut into non-overlapping windows of
--ctx predictions, window k feeding ids [k*ctx, k*ctx + T) as a fresh sequence and predicting
the next id of each; --max-tokens stopping after that many predictions. For every window it
asks `demolish logits --ids` (the fast path, as eval kl's evaluator uses: no --precise) for the
teacher's and each student's f32 logits, and computes in float64, per position:
  full KL(teacher || student) = sum_i p_i (log p_i - log q_i) over p_i > 0;
  top-k KL: the same over the teacher's k most likely tokens (larger logit, then lower id)
    plus one "other" bucket holding the rest of each model's mass;
  top-1 agreement (first maximum of each model's logits); both models' -log p of the next id.
Then the summaries the JSON report holds: mean KL, its standard error (sample std, n-1, over
sqrt n), quantiles by linear interpolation between order statistics (numpy 'linear': value at
index q*(n-1)), max, top-1 agreement and its SE sqrt(f(1-f)/(n-1)), both perplexities, their
ratio and the SE of its log (sample SE of per-position nll differences), overall and per source.

Tolerances (why they are what they are): both sides see bitwise the same f32 logits, so the only
differences are (a) the cache stores the teacher's log-probabilities as f32, a relative error of
at most 2^-24 on each; summed against p that moves a KL by at most 2^-24 * sum p|log p| (the
teacher's entropy, <= ln V ~ 6 nats here), ~4e-7 nats; the per-position KL kept for quantiles is
an f32 as well (2^-24 relative of a value ~1); (b) summation order (~1e-15). Hence KL_ATOL;
perplexities move by the same relative amount (PPL_RTOL); standard errors are differences of
such sums (SE_RTOL + SE_ATOL). Counts (predictions, top-1 agreements) must match exactly.

usage: kl_ref.py check  BIN SCRATCH REPORT.json DATA.jsonl TEACHER STUDENT[,STUDENT...] CTX TOP_K MAX_TOKENS [CACHE]
       kl_ref.py same   A.json B.json STUDENT    (that student's results identical in both)
"""
import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

KL_ATOL = 1e-6       # nats, absolute: f32 cache log-probs (<= 2^-24 * entropy ~ 4e-7) + f32 quantile values
PPL_RTOL = 1e-6      # relative, perplexities and their ratio: 2^-24 * |log p| of the cached target token
SE_RTOL = 1e-4       # relative, standard errors (of mean KL and of the log ppl ratio)
SE_ATOL = 1e-6       # absolute, for the teacher-vs-itself case where the SE is rounding noise
LP_RTOL = 2.0 ** -23  # cached f32 log-probabilities vs float64: one f32 rounding (+ lse order)
LP_ATOL = 1e-9
QUANTILES = {"median": 0.5, "p90": 0.9, "p99": 0.99, "p99.9": 0.999}


class Engine:
    """Runs demolish; keeps every window's logits on disk so several checks share them."""

    def __init__(self, bin_, scratch):
        self.bin = bin_
        self.dir = os.path.join(scratch, "logits")
        os.makedirs(self.dir, exist_ok=True)

    def encode(self, model, text):
        out = subprocess.run([self.bin, "tokenizer", "encode", model, "--text", text], check=True,
                             capture_output=True, text=True)
        return [int(x) for x in out.stdout.strip().split(",") if x]

    def logits(self, model, ids):
        key = hashlib.sha1((os.path.abspath(model) + ":" + ",".join(map(str, ids))).encode()).hexdigest()
        path = os.path.join(self.dir, key + ".npy")
        if not os.path.exists(path):
            subprocess.run([self.bin, "logits", model, "--ids", ",".join(map(str, ids)), "--out", path, "-q"],
                           check=True)
        x = np.load(path)
        assert x.dtype == np.float32 and x.shape[0] == len(ids), (x.dtype, x.shape)
        return x


def eos_id(model):
    tok = json.load(open(os.path.join(model, "tokenizer.json")))
    return next(a["id"] for a in tok["added_tokens"] if a["content"] == "<|endoftext|>")


def read_docs(path):
    return [json.loads(line) for line in open(path) if line.strip()]


def frame(engine, model, docs):
    eos = eos_id(model)
    return [[eos] + engine.encode(model, d["text"]) + [eos] for d in docs]


def windows(framed, ctx, max_tokens):
    """[(doc, start, T)]: eval kl's windows, in order, stopping after max_tokens predictions."""
    out, done = [], 0
    for d, ids in enumerate(framed):
        for start in range(0, len(ids) - 1, ctx):
            T = min(ctx, len(ids) - 1 - start)
            if max_tokens and done + T > max_tokens:
                T = max_tokens - done
            if T <= 0:
                return out
            out.append((d, start, T))
            done += T
    return out


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


def top_ids(x, k):
    """The k highest logits' ids per row, best first, ties to the lower id (a stable sort)."""
    return np.argsort(-x.astype(np.float64), axis=-1, kind="stable")[:, :k]


def bucket_kl(lp, lq, ids):
    """KL over (teacher's top ids, the rest as one bucket), rows in float64."""
    rows = np.arange(lp.shape[0])[:, None]
    p_top, q_top = np.exp(lp[rows, ids]), np.exp(lq[rows, ids])
    kl = (p_top * (lp[rows, ids] - lq[rows, ids])).sum(axis=1)
    mask = np.ones(lp.shape, bool)
    mask[rows, ids] = False
    p_o = np.where(mask, np.exp(lp), 0).sum(axis=1)
    q_o = np.where(mask, np.exp(lq), 0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl += np.where(p_o > 0, p_o * (np.log(p_o) - np.log(np.maximum(q_o, 1e-300))), 0)
    return kl


def score(engine, teacher, student, framed, wins, top_k):
    """Per-position float64 arrays over the windows: full and bucket KL, agreement, nlls, doc."""
    cols = {k: [] for k in ("kl_full", "kl_top", "agree", "nll_t", "nll_s", "doc", "top_ids", "lp_t")}
    for d, start, T in wins:
        ids = framed[d][start:start + T]
        tgt = np.array(framed[d][start + 1:start + T + 1])
        xt, xs = engine.logits(teacher, ids), engine.logits(student, ids)
        lp, lq = log_softmax(xt), log_softmax(xs)
        r = np.arange(T)
        p = np.exp(lp)
        cols["kl_full"].append(np.where(p > 0, p * (lp - lq), 0).sum(axis=1))
        k = top_k if top_k else 1
        tid = top_ids(xt, k)
        cols["kl_top"].append(bucket_kl(lp, lq, tid))
        cols["agree"].append(np.argmax(xt, axis=1) == np.argmax(xs, axis=1))
        cols["nll_t"].append(-lp[r, tgt])
        cols["nll_s"].append(-lq[r, tgt])
        cols["doc"].append(np.full(T, d))
        cols["top_ids"].append(tid)
        cols["lp_t"].append(lp)
    return {k: np.concatenate(v) for k, v in cols.items()}


def summary(kl, agree, nll_t, nll_s):
    n = len(kl)
    d = nll_s - nll_t
    f = agree.mean()
    return {
        "predictions": n,
        "kl_mean": kl.mean(),
        "kl_mean_se": kl.std(ddof=1) / math.sqrt(n) if n > 1 else 0.0,
        "kl_max": kl.max(),
        "top1_agreement": f,
        "top1_agreement_se": math.sqrt(f * (1 - f) / (n - 1)) if n > 1 else 0.0,
        "ppl_teacher": math.exp(nll_t.mean()),
        "ppl_student": math.exp(nll_s.mean()),
        "ppl_ratio": math.exp(d.mean()),
        "ln_ppl_ratio_se": d.std(ddof=1) / math.sqrt(n) if n > 1 else 0.0,
    }


def tolerance(key):
    """(atol, rtol) of a summary value."""
    if key in ("predictions",):
        return 0, 0
    if key.startswith("kl_mean_se") or key == "ln_ppl_ratio_se":
        return SE_ATOL, SE_RTOL
    if key.startswith("kl") or key in QUANTILES:
        return KL_ATOL, 0
    if key.startswith("ppl"):
        return 0, PPL_RTOL
    return 0, 1e-12   # top-1 agreement and its SE: exact counts


class Checker:
    def __init__(self, what):
        self.what, self.bad, self.n = what, 0, 0
        self.worst = (0.0, "")   # largest |d| / tolerance seen

    def close(self, name, got, want, atol, rtol):
        self.n += 1
        tol = atol + rtol * abs(want)
        if tol > 0 and abs(got - want) / tol > self.worst[0]:
            self.worst = (abs(got - want) / tol, name)
        if not (abs(got - want) <= tol):
            print(f"  {self.what} {name}: demolish {got!r}, oracle {want!r} (|d| {abs(got - want):.3g}, "
                  f"tolerance {atol + rtol * abs(want):.3g})")
            self.bad += 1

    def true(self, name, cond, detail=""):
        self.n += 1
        if not cond:
            print(f"  {self.what} {name}: {detail}")
            self.bad += 1


def check_sum(ck, where, got, want):
    for key, v in want.items():
        atol, rtol = tolerance(key)
        ck.close(f"{where}.{key}", got[key], v, atol, rtol)


def check_cache(ck, cache, framed, ref, top_k, ctx, n_pos, sources):
    """The cache file's contents against the oracle: framing, ids, log-probs, bucket mass."""
    t, meta = st_io.read_file(cache)
    flat = np.concatenate([np.array(f, np.int64) for f in framed]) if framed else np.zeros(0, np.int64)
    starts = np.cumsum([0] + [len(f) for f in framed])
    n_docs = len(t["doc_start"].raw) - 1
    ck.true("cache tokens", np.array_equal(t["tokens"].raw, flat[:starts[n_docs]]),
            "tokens differ from `tokenizer encode` framed <|endoftext|> doc <|endoftext|>")
    ck.true("cache doc_start", np.array_equal(t["doc_start"].raw, starts[:n_docs + 1]), str(t["doc_start"].raw))
    ck.true("cache metadata", int(meta["ctx"]) == ctx and int(meta["top_k"]) == top_k and
            int(meta["n_pos"]) == n_pos and json.loads(meta["sources"]) == sources, str(meta))
    ck.true("cache doc_group", list(t["doc_group"].raw) == [sources.index(s) if s else -1 for s in
                                                           ref["sources"][:n_docs]], str(t["doc_group"].raw))
    lp = ref["lp_t"]
    rows = np.arange(n_pos)
    tlp = t["target_logp"].raw.astype(np.float64)
    want_t = -ref["nll_t"]
    ck.true("cache target_logp", np.all(np.abs(tlp - want_t) <= LP_RTOL * np.abs(want_t) + LP_ATOL),
            f"max |d| {np.abs(tlp - want_t).max():.3g}")
    if top_k == 0:
        got = t["logp"].raw.astype(np.float64)
        ck.true("cache logp (full)", np.all(np.abs(got - lp) <= LP_RTOL * np.abs(lp) + LP_ATOL),
                f"max |d| {np.abs(got - lp).max():.3g}")
        return
    ids = t["top_id"].raw
    ck.true("cache top_id (ties to the lower id, best first)", np.array_equal(ids, ref["top_ids"]),
            f"{int((ids != ref['top_ids']).any(axis=1).sum())} rows differ")
    want = lp[rows[:, None], ref["top_ids"]]
    got = t["logp"].raw.astype(np.float64)
    ck.true("cache logp (top-k)", np.all(np.abs(got - want) <= LP_RTOL * np.abs(want) + LP_ATOL),
            f"max |d| {np.abs(got - want).max():.3g}")
    mask = np.ones(lp.shape, bool)
    mask[rows[:, None], ref["top_ids"]] = False
    other = np.log(np.where(mask, np.exp(lp), 0).sum(axis=1))
    go = t["other_logp"].raw.astype(np.float64)
    ck.true("cache other_logp", np.all(np.abs(go - other) <= LP_RTOL * np.abs(other) + LP_ATOL),
            f"max |d| {np.abs(go - other).max():.3g}")


def cmd_check(argv):
    bin_, scratch, report, data, teacher, students, ctx, top_k, max_tokens = argv[:9]
    cache = argv[9] if len(argv) > 9 else None
    ctx, top_k, max_tokens = int(ctx), int(top_k), int(max_tokens)
    students = students.split(",")
    engine = Engine(bin_, scratch)
    docs = read_docs(data)
    framed = frame(engine, teacher, docs)
    wins = windows(framed, ctx, max_tokens)
    n_pos = sum(T for _, _, T in wins)
    total_preds = sum(len(f) - 1 for f in framed)
    got = json.load(open(report))
    ck = Checker(os.path.basename(report))
    ck.true("header", got["ctx"] == ctx and got["top_k"] == top_k and got["predictions"] == n_pos and
            got["truncated"] == (n_pos < total_preds) and len(got["students"]) == len(students),
            f"ctx {got['ctx']} top_k {got['top_k']} predictions {got['predictions']} truncated {got['truncated']}"
            f" (want {ctx} {top_k} {n_pos} {n_pos < total_preds})")
    sources = []
    for d in docs:
        if d.get("source") and d["source"] not in sources:
            sources.append(d["source"])
    for si, student in enumerate(students):
        ref = score(engine, teacher, student, framed, wins, top_k)
        ref["sources"] = [d.get("source", "") for d in docs]
        g = got["students"][si]
        name = os.path.basename(student)
        kl = ref["kl_top"] if top_k else ref["kl_full"]
        if top_k:   # the theory: coarse-graining can only lose divergence (log-sum inequality)
            excess = ref["kl_top"] - ref["kl_full"]
            ck.true(f"{name}: top-{top_k} KL <= full KL at every position", np.all(excess <= 1e-12),
                    f"max excess {excess.max():.3g}")
        check_sum(ck, f"{name}.total", g["total"], summary(kl, ref["agree"], ref["nll_t"], ref["nll_s"]))
        for q, v in QUANTILES.items():   # numpy 'linear' = the value at index q*(n-1), interpolated
            ck.close(f"{name}.quantile {q}", g["kl_quantiles"][q], float(np.quantile(kl, v, method="linear")),
                     KL_ATOL, 0)
        want_src = {}
        for s in sources:
            m = np.array([docs[d].get("source", "") == s for d in ref["doc"]], bool)
            if m.any():
                want_src[s] = summary(kl[m], ref["agree"][m], ref["nll_t"][m], ref["nll_s"][m])
        ck.true(f"{name}: sources", sorted(g["sources"]) == sorted(want_src),
                f"{sorted(g['sources'])} vs {sorted(want_src)}")
        for s, w in want_src.items():
            if s in g["sources"]:
                check_sum(ck, f"{name}.{s}", g["sources"][s], w)
        if os.path.abspath(student) == os.path.abspath(teacher):   # a model against itself
            ck.true(f"{name} (itself): KL ~ 0", abs(g["total"]["kl_mean"]) <= KL_ATOL and
                    abs(g["total"]["kl_max"]) <= KL_ATOL and abs(g["kl_quantiles"]["p99.9"]) <= KL_ATOL,
                    f"mean {g['total']['kl_mean']:.3g} max {g['total']['kl_max']:.3g}")
            ck.true(f"{name} (itself): top-1 100%", g["total"]["top1_agreement"] == 1.0,
                    str(g["total"]["top1_agreement"]))
            ck.close(f"{name} (itself): ppl ratio", g["total"]["ppl_ratio"], 1.0, 0, PPL_RTOL)
        if cache and si == 0:
            check_cache(ck, cache, framed, ref, top_k, ctx, n_pos, sources)
        print(f"  {name}: {n_pos} predictions in {len(wins)} windows, KL {g['total']['kl_mean']:.6f} "
              f"(oracle {kl.mean():.6f}, full {ref['kl_full'].mean():.6f}), top-1 {g['total']['top1_agreement']:.3f}, "
              f"ppl ratio {g['total']['ppl_ratio']:.5f}")
    print(f"  {ck.n} comparisons, {ck.bad} failed; closest to its tolerance: {ck.worst[1]} at "
          f"{ck.worst[0]:.2g} x tolerance")
    return 1 if ck.bad else 0


def cmd_same(argv):
    a, b, student = json.load(open(argv[0])), json.load(open(argv[1])), argv[2]
    pick = lambda r: next(s for s in r["students"] if s["model"] == student)
    sa, sb = pick(a), pick(b)
    sa.pop("model"), sb.pop("model")
    if sa != sb:
        print(f"  {student}: results differ:\n{json.dumps(sa)}\n{json.dumps(sb)}")
        return 1
    return 0


if __name__ == "__main__":
    cmds = {"check": cmd_check, "same": cmd_same}
    sys.exit(cmds[sys.argv[1]](sys.argv[2:]))
