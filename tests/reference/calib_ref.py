#!/usr/bin/python3
"""calib_ref — independent float64 reference of `demolish calibrate` (REAP saliency and imatrix).

What it is for: the oracle of tests/calib/check_calib_reference.sh. It runs the calibration
documents through ref_model.py's float64 forward pass, observing it by monkeypatching
ref_model's `linear` (imatrix) and `moe_forward` (router scores, the model's real selection
and gates, every expert's ungated SwiGLU output), and accumulates what src/calib/calib.h and
shared/research/reap.md §1 define, for all three gates at once:

  per MoE layer l (MTP included) and routed expert j, over tokens x routed to j, weight w(x):
    count Σw, gate Σw·g, norm Σw·‖f_j‖, gnorm Σw·g·‖f_j‖, maxnorm max ‖f_j‖ (w = 0 skipped),
    soft Σ over ALL tokens of w·s_j/Σ_e s_e (s: unbiased sigmoid/softmax router scores);
  gate "model": the router's real selection (bias, group limits) and applied coefficient
    (normalized, routed_scaling_factor) — ref_model.moe_route;
  gate "cerebras": top-k of the RAW logits, g = softmax over all raw logits;
  gate "cerebras-renorm": that softmax renormalized over the top-k;
  imatrix per HF Linear weight name: Σ w·x_k² per input channel and Σ w over the rows the
    weight sees (expert weights: rows routed to the expert by the model), w = 0 rows skipped;
    the output heads are not run by calibration and have no entry.

Documents ("text" records of a .jsonl; "source"; an optional field of [start, end, weight]
byte ranges) are tokenized WITH special tokens by tokenizer_ref.py (not framed by
<|endoftext|>); a token takes the weight of the last range its bytes overlap (default 1);
every token within ±N tokens of a </think> token is multiplied by W once. The ids are cut
into windows of --ctx tokens, each a fresh sequence, and each window also runs the MTP head
(row i: hidden state i with token i+1, carrying token i+1's weight).

  calib_ref.py MODEL_DIR --data F.jsonl --ctx N [--weights-from FIELD]
               [--think-close-weight W --think-close-window N] [--name NAME]
               --check GATE=STATS.st ... [--check-nomtp GATE=STATS.st ...] [--check-noimat GATE=STATS.st]
  calib_ref.py --batch JOBS        one job (the arguments above) per line, models cached

Each check compares every accumulator and imatrix entry of the C stats file with the
reference: err = |c - r| / max(|r|, FLOOR_REL · max|r| of that column or tensor), bounded
by --tol; the metadata (tokens, weight_sum, router, gate_mode, runs, experts_per_layer,
model/data hashes) must match. A count that differs by a whole token weight is reported as a
top-k FLIP (f32 vs f64 near-tie) with the smallest margins seen, not as a tolerance miss.
--check-nomtp expects the MTP layer's rows zero and no MTP imatrix entries.
Exit status 0 iff every check passes.
"""
import argparse
import hashlib
import json
import os
import shlex
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_model as ref  # noqa: E402
import st_io  # noqa: E402
import tokenizer_ref  # noqa: E402

DT = torch.float64
GATES = ("model", "cerebras", "cerebras-renorm")
COLS = ("count", "gate", "norm", "gnorm", "soft", "maxnorm")
C_COUNT, C_GATE, C_NORM, C_GNORM, C_SOFT, C_MAX = range(6)
# Relative error bound of every accumulator and imatrix entry. The engine runs --precise
# (f32 activations, weights decoded exactly on both sides): what remains is f32 vs f64
# rounding propagated through <= 5 layers. Measured on the presets of
# check_calib_reference.sh: <= 5.2e-7 on the accumulators, <= 1.4e-6 on imatrix channel
# sums (Σ of squares doubles the relative error of x), so 1e-5 leaves ~7x headroom.
TOL_REL = 1e-5
# Floor of the relative error's denominator, as a fraction of the largest |ref| of the same
# accumulator column (per source) or imatrix tensor: only an entry tiny against its tensor
# (an expert touched once by a small gate, a channel that is almost always ~0) is judged
# against the tensor's scale, since its absolute f32 error follows the scale of the
# computation, not its own size. On the test data no entry needs it (the maximum errors are
# the same with a floor of 0).
FLOOR_REL = 1e-6
# Smallest router / group / raw-logit gap (absolute) or indexer gap (relative) below which
# a top-k decision is called a near tie in the report (f32 scores carry ~1e-7 relative).
NEAR_TIE = 1e-5


# =============================================================== observation state

class Obs:
    """What the patched ops see: the HF name of every weight tensor (by identity), the row
    weights of the pass now running, the rows an expert runs on, and the sums."""

    def __init__(self):
        self.names = {}         # id(tensor) -> HF name
        self.keep = []          # the named tensors (ids stay valid)
        self.skip = set()       # ids of weights calibration never multiplies (output heads)
        self.w = None           # np [T] weights of the current pass's rows
        self.sub = None         # np row indices the current Linear sees (expert), None = all
        self.imat = None        # name -> [sum2 np, count]
        self.moe_hook = None    # callable(l, p, f, logits, scores, idx, gates)


OBS = Obs()
_orig_wlinear, _orig_wplain = ref.Weights.linear, ref.Weights.plain


def _named(t, name):
    OBS.names[id(t)] = name
    OBS.keep.append(t)
    return t


ref.Weights.linear = lambda self, prefix, shape: _named(_orig_wlinear(self, prefix, shape),
                                                        prefix + ".weight")
ref.Weights.plain = lambda self, name, shape: _named(_orig_wplain(self, name, shape), name)


def observe(name, x):
    """imatrix: Σ w·x² per column of x [rows, K] and Σ w, over the rows with w != 0."""
    if OBS.imat is None or name is None:
        return
    w = OBS.w if OBS.sub is None else OBS.w[OBS.sub]
    keep = w != 0
    xs, ws = x.detach().numpy()[keep], w[keep]
    ent = OBS.imat.setdefault(name, [np.zeros(x.shape[1]), 0.0])
    if ent[0].shape[0] != x.shape[1]:
        raise ValueError(f"{name}: seen with widths {ent[0].shape[0]} and {x.shape[1]}")
    ent[0] += (ws[:, None] * xs * xs).sum(0)
    ent[1] += float(ws.sum())


def obs_linear(x, w):
    """ref_model.linear with the input observed under the weight's HF name."""
    if id(w) not in OBS.skip:
        observe(OBS.names.get(id(w)), x)
    return x @ w.T


def obs_moe_forward(cfg, l, p, f):
    """ref_model.moe_forward, observed: the router input, the routed experts' inputs (rows
    routed to each expert only), the shared expert; then the saliency hook."""
    observe(OBS.names.get(id(p["router"])), f)
    logits = f @ p["router"].T
    scores = torch.sigmoid(logits) if cfg.scoring == "sigmoid" else torch.softmax(logits, -1)
    idx, gates = ref.moe_route(cfg, l, p, f)
    y = torch.zeros_like(f)
    for e in np.unique(idx):
        rows, slot = np.nonzero(idx == e)
        OBS.sub = rows
        out = ref.swiglu(f[torch.from_numpy(rows)], *p["experts"][e])
        OBS.sub = None
        y[torch.from_numpy(rows)] += gates[torch.from_numpy(rows), torch.from_numpy(slot)][:, None] * out
    if p["shared"] is not None:
        y = y + ref.swiglu(f, *p["shared"])
    if OBS.moe_hook:
        OBS.moe_hook(l, p, f, logits, scores, idx, gates)
    return y


ref.linear = obs_linear
ref.moe_forward = obs_moe_forward


def expert_norms(p, f):
    """‖f_j(x)‖ [T, E] for every expert on every row: SwiGLU before gating, unobserved."""
    out = []
    for g, u, d in p["experts"]:
        h = ref.silu(f @ g.T) * (f @ u.T)
        out.append(torch.linalg.norm(h @ d.T, dim=-1))
    return torch.stack(out, 1).numpy()


# =============================================================== documents

class Docs:
    """Token ids and per-token weights of every document (the ref tokenizer, special tokens on)."""

    def __init__(self, model_dir, path, wfield, close_w, close_n):
        tok = tokenizer_ref.RefTokenizer(os.path.join(model_dir, "tokenizer.json"))
        u2b = {v: k for k, v in tokenizer_ref.bytes_to_unicode().items()}
        tok_bytes = {i: bytes(u2b[ch] for ch in s) for s, i in tok.vocab.items()}
        with open(os.path.join(model_dir, "tokenizer.json"), encoding="utf-8") as f:
            for a in json.load(f).get("added_tokens") or []:
                tok_bytes[a["id"]] = a["content"].encode("utf-8")
        close = next((i for i, b in tok_bytes.items() if b == b"</think>"), None)
        with open(path, "rb") as f:
            self.hash = hashlib.sha256(f.read()).hexdigest()
        self.docs = []          # (source, ids, weights)
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                r = json.loads(line)
                if "text" not in r:
                    raise ValueError(f"{path}:{line_no}: the reference reads only \"text\" records")
                text = r["text"].encode("utf-8")
                ids = tok.encode(text, True)
                regions = (r.get(wfield) or []) if wfield else []
                w = self.weights(ids, tok_bytes, regions, close, close_w, close_n)
                self.docs.append((r.get("source", ""), ids, w))

    @staticmethod
    def weights(ids, tok_bytes, regions, close, close_w, close_n):
        w, at = np.ones(len(ids)), 0
        for i, t in enumerate(ids):
            end = at + len(tok_bytes[t])
            for s, e, rw in regions:        # the last range the token's bytes overlap wins
                if s < end and at < e:
                    w[i] = rw
            at = end
        if close_w != 1 and close is not None:
            near = np.zeros(len(ids), dtype=bool)
            for i in np.nonzero(np.asarray(ids) == close)[0]:
                near[max(0, i - close_n):i + close_n + 1] = True
            w[near] *= close_w               # once, however many </think> are near
        return w


# =============================================================== the reference run

class Expected:
    """Accumulators [gate][source] -> [rows, 6], imatrix, counters of one calibration."""

    def __init__(self, model):
        cfg = self.cfg = model.cfg
        n_layers = cfg.L + (1 if model.mtp is not None else 0)
        self.experts = [0] * n_layers
        for l, lp in enumerate(model.layers):
            self.experts[l] = cfg.experts[l] if lp["sparse"] else 0
        if model.mtp is not None and model.mtp["layer"]["sparse"]:
            self.experts[cfg.L] = cfg.experts[cfg.L]
        self.off = list(np.cumsum([0] + self.experts[:-1]))
        self.rows = sum(self.experts)
        self.acc = {g: {"all": np.zeros((self.rows, 6))} for g in GATES}
        self.imat = {}
        self.tokens, self.weight_sum, self.sources = 0, 0.0, ["all"]
        self.cur_sources = ["all"]

    def add(self, l, p, f, logits, scores, idx, gates):
        """Saliency of one MoE call: rows weighted by OBS.w."""
        K, E, o = self.cfg.top_k, self.experts[l], self.off[l]
        norms = expert_norms(p, f)
        lg, sc, gt = logits.numpy(), scores.numpy(), gates.numpy()
        for t in range(f.shape[0]):
            w = OBS.w[t]
            if w == 0:
                continue
            raw_top, order = ref.topk_lower_index(lg[t], K)
            if K < E:
                ref.note_margin("raw-logit", abs(lg[t][order[K - 1]] - lg[t][order[K]]))
            soft = np.exp(lg[t] - lg[t].max())
            soft /= soft.sum()
            events = {"model": [(idx[t, k], gt[t, k]) for k in range(K)],
                      "cerebras": [(e, soft[e]) for e in raw_top],
                      "cerebras-renorm": [(e, soft[e] / soft[raw_top].sum()) for e in raw_top]}
            for g in GATES:
                for s in self.cur_sources:
                    a = self.acc[g][s]
                    a[o:o + E, C_SOFT] += w * sc[t] / sc[t].sum()
                    for e, gv in events[g]:
                        n = norms[t, e]
                        a[o + e, :C_SOFT] += (w, w * gv, w * n, w * gv * n)
                        a[o + e, C_MAX] = max(a[o + e, C_MAX], n)

    def run(self, model, docs, ctx, mtp):
        OBS.imat, OBS.moe_hook = self.imat, self.add
        OBS.skip = {id(model.head)} | ({id(model.mtp["head"])} if model.mtp is not None else set())
        for source, ids, w in docs.docs:
            if source and source not in self.sources:
                self.sources.append(source)
                for g in GATES:
                    self.acc[g][source] = np.zeros((self.rows, 6))
            self.cur_sources = ["all"] + ([source] if source and source != "all" else [])
            for at in range(0, len(ids), ctx):
                win, ww = ids[at:at + ctx], w[at:at + ctx]
                OBS.w = ww
                logits, h = ref.forward(model, win)
                if mtp and model.mtp is not None and len(win) >= 2:
                    OBS.w = ww[1:]
                    ref.mtp_forward(model, win, h)
                self.tokens += len(win)
                self.weight_sum += float(ww.sum())
        OBS.imat, OBS.moe_hook = None, None


# =============================================================== comparison

def model_hash(model_dir):
    """sha256 of config.json, each safetensors file's header (8-byte length + JSON), then the
    first min(64, nbytes) bytes of every tensor, tensors in name order over all files."""
    h = hashlib.sha256()
    with open(os.path.join(model_dir, "config.json"), "rb") as f:
        h.update(f.read())
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    samples = {}
    for name in files:
        with open(os.path.join(model_dir, name), "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little")
            header = f.read(n)
            h.update(head + header)
            for t, v in json.loads(header).items():
                if t == "__metadata__":
                    continue
                a, b = v["data_offsets"]
                f.seek(8 + n + a)
                samples[t] = f.read(min(64, b - a))
    for t in sorted(samples):
        h.update(samples[t])
    return h.hexdigest()


def rel_err(c, r, scale_axis=None):
    """max |c - r| / max(|r|, FLOOR_REL·max|r|) and where (flat index)."""
    floor = FLOOR_REL * np.abs(r).max(axis=scale_axis, keepdims=scale_axis is not None)
    den = np.maximum(np.abs(r), np.maximum(floor, 1e-300))
    e = np.abs(c - r) / den
    e[(c == r)] = 0
    i = int(np.argmax(e))
    return float(e.flat[i]), i


class Check:
    def __init__(self, label):
        self.label, self.fails, self.notes = label, [], []

    def fail(self, msg):
        self.fails.append(msg)


def check_meta(ck, meta, tensors, exp, gate, model_dir, data_hash):
    cfg = exp.cfg
    grouped = cfg.n_group > 1 and cfg.topk_method != "greedy"
    router = f"{cfg.top_k},{cfg.n_group if grouped else 1},{cfg.topk_group if grouped else 1},{cfg.L}"
    want = {"format": "demolish-calib", "version": "1", "gate_mode": gate, "runs": "1",
            "tokens": str(exp.tokens), "router": router, "data_hash": data_hash,
            "model_hash": model_hash(model_dir), "accumulators": ",".join(COLS)}
    for k, v in want.items():
        if meta.get(k) != v:
            ck.fail(f"metadata {k} = {meta.get(k)!r}, expected {v!r}")
    ws = float(meta.get("weight_sum", "nan"))
    if not abs(ws - exp.weight_sum) <= 1e-12 * max(1.0, abs(exp.weight_sum)):
        ck.fail(f"metadata weight_sum = {ws!r}, expected {exp.weight_sum!r}")
    epl = tensors.get("experts_per_layer")
    if epl is None or list(epl.raw.astype(int)) != exp.experts:
        ck.fail(f"experts_per_layer = {None if epl is None else list(epl.raw)}, expected {exp.experts}")
    return not ck.fails


def flip_report(ck, a, r, exp, src):
    """Counts that differ by whole token weights while every layer's total routed weight
    agrees: a routing event moved to another expert, i.e. a top-k decision came out
    differently in f32 and f64. Returns whether any did."""
    exact = 1e-9 * max(1.0, np.abs(r[:, C_COUNT]).max())
    bad = np.nonzero(np.abs(a[:, C_COUNT] - r[:, C_COUNT]) > exact)[0]
    layers = [(l, exp.off[l], exp.experts[l]) for l in range(len(exp.experts)) if exp.experts[l]]
    if not len(bad) or any(abs(a[o:o + E, C_COUNT].sum() - r[o:o + E, C_COUNT].sum()) > exact
                           for _, o, E in layers):
        return False
    for row in bad[:4]:
        l, o, _ = max(x for x in layers if x[1] <= row)
        ck.fail(f"top-k FLIP in source {src}, layer {l} expert {row - o}: count "
                f"{a[row, C_COUNT]:.6g} vs reference {r[row, C_COUNT]:.6g}: a routing decision came "
                f"out differently in f32 and f64 (margins above); pick another seed or data "
                f"instead of loosening the tolerance")
    return True


def check_stats(ck, path, exp, gate, model_dir, data_hash, mtp, imatrix, tol):
    tensors, meta = st_io.read_file(path)
    same_tokens = check_meta(ck, meta, tensors, exp, gate, model_dir, data_hash)
    L_mtp = exp.cfg.L if len(exp.experts) > exp.cfg.L else None
    worst, any_flip = {c: 0.0 for c in COLS}, False
    for src in exp.sources:
        t = tensors.get("acc." + src)
        if t is None or t.raw.shape != (exp.rows, 6):
            ck.fail(f"acc.{src}: missing or shape {None if t is None else t.raw.shape}, "
                    f"expected {(exp.rows, 6)}")
            continue
        a, r = t.raw.astype(np.float64), exp.acc[gate][src].copy()
        if not mtp and L_mtp is not None and exp.experts[L_mtp]:
            o, E = exp.off[L_mtp], exp.experts[L_mtp]
            if np.any(a[o:o + E] != 0):
                ck.fail(f"acc.{src}: --no-mtp but the MTP layer's rows are not zero")
            r[o:o + E] = 0
        flipped = same_tokens and flip_report(ck, a, r, exp, src)
        any_flip |= flipped
        for ci, c in enumerate(COLS):
            e, i = rel_err(a[:, ci], r[:, ci])
            worst[c] = max(worst[c], e)
            if not e <= tol and not flipped:
                ck.fail(f"acc.{src} {c}: rel err {e:.3g} > {tol:g} at row {i}: "
                        f"{a[i, ci]:.10g} vs reference {r[i, ci]:.10g}")
    extra = sorted(n[4:] for n in tensors if n.startswith("acc.") and n[4:] not in exp.sources)
    if extra:
        ck.fail(f"sources not in the reference: {extra}")
    want = {n: v for n, v in exp.imat.items()
            if imatrix and (mtp or L_mtp is None or not n.startswith(f"model.layers.{L_mtp}."))}
    got = {n[len("imatrix."):-len(".in_sum2")] for n in tensors
           if n.startswith("imatrix.") and n.endswith(".in_sum2")}
    if got != set(want):
        ck.fail(f"imatrix entries differ: only in C {sorted(got - set(want))[:4]}, "
                f"only in the reference {sorted(set(want) - got)[:4]}")
    wi, wc, wname = 0.0, 0.0, ""
    for n in sorted(got & set(want)):
        s2, cnt = tensors[f"imatrix.{n}.in_sum2"].raw, tensors[f"imatrix.{n}.counts"].raw
        rs2, rcnt = want[n]
        if s2.shape != rs2.shape or cnt.shape != (1,):
            ck.fail(f"imatrix {n}: shapes {s2.shape}/{cnt.shape}, expected {rs2.shape}/(1,)")
            continue
        e, i = rel_err(s2, rs2)
        ec = abs(cnt[0] - rcnt) / max(abs(rcnt), 1e-300) if cnt[0] != rcnt else 0.0
        if e > wi:
            wi, wname = e, n
        wc = max(wc, ec)
        if not e <= tol and not any_flip:
            ck.fail(f"imatrix {n} in_sum2[{i}]: rel err {e:.3g} > {tol:g}: {s2[i]:.10g} vs "
                    f"reference {rs2[i]:.10g}")
        if not ec <= tol and not any_flip:
            ck.fail(f"imatrix {n} counts: {cnt[0]!r} vs reference {rcnt!r}")
    ck.notes.append(" ".join(f"{c} {worst[c]:.2g}" for c in COLS) +
                    f" | imatrix {len(got)} tensors: in_sum2 {wi:.2g}"
                    f"{' (' + wname + ')' if wi > 0 else ''}, counts {wc:.2g}")


# =============================================================== jobs

def job_parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--data", required=True)
    ap.add_argument("--ctx", type=int, required=True)
    ap.add_argument("--weights-from")
    ap.add_argument("--think-close-weight", type=float, default=1.0)
    ap.add_argument("--think-close-window", type=int, default=4)
    ap.add_argument("--name")
    ap.add_argument("--tol", type=float, default=TOL_REL)
    ap.add_argument("--check", action="append", default=[], help="GATE=STATS (MTP run)")
    ap.add_argument("--check-nomtp", action="append", default=[], help="GATE=STATS (--no-mtp)")
    ap.add_argument("--check-noimat", action="append", default=[], help="GATE=STATS (--no-imatrix)")
    return ap


def run_job(argv, cache):
    a = job_parser().parse_args(argv)
    name = a.name or a.model_dir
    model = cache.get(a.model_dir) or ref.Model(a.model_dir)
    cache[a.model_dir] = model
    ref.MARGINS.clear()
    docs = Docs(a.model_dir, a.data, a.weights_from, a.think_close_weight, a.think_close_window)
    exp = Expected(model)
    with torch.no_grad():
        exp.run(model, docs, a.ctx, True)
    print(f"   {name}: {len(docs.docs)} documents, {exp.tokens} tokens, weight sum "
          f"{exp.weight_sum:g}; margins: {ref.margins_text()}")
    near = [k for k, m in ref.MARGINS.items() if m["min_gap"] < NEAR_TIE]
    if near:
        print(f"   {name}: note: near ties in {near} (a flip would show as a count mismatch)")
    failed = 0
    for kind, items in (("mtp", a.check), ("nomtp", a.check_nomtp), ("noimat", a.check_noimat)):
        for item in items:
            gate, _, path = item.partition("=")
            if gate not in GATES:
                raise ValueError(f"--check {item}: unknown gate")
            ck = Check(f"{name} gate={gate}{'' if kind == 'mtp' else ' --no-' + kind[2:]}")
            try:
                check_stats(ck, path, exp, gate, a.model_dir, docs.hash, kind != "nomtp",
                            kind != "noimat", a.tol)
            except (ValueError, KeyError, OSError) as e:
                ck.fail(f"{path}: {e}")
            print(f"{'ok  ' if not ck.fails else 'FAIL'} {ck.label}: max rel err "
                  f"{' '.join(ck.notes) or '-'}")
            for msg in ck.fails[:12]:
                print(f"     {msg}")
            failed += bool(ck.fails)
    return failed


def main(argv=None):
    torch.set_num_threads(1)
    argv = sys.argv[1:] if argv is None else argv
    cache = {}
    try:
        if argv[:1] == ["--batch"]:
            with open(argv[1]) as f:
                jobs = [shlex.split(line) for line in f if line.strip()]
        else:
            jobs = [argv]
        failed = sum(run_job(j, cache) for j in jobs)
    except (ValueError, KeyError, OSError, IndexError) as e:
        print(f"calib_ref: error: {e}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
