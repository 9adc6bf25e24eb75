"""Training losses of /work/notes/train_contract.md as a float64 autograd graph.

What it is for: the oracle of the C trainer (src/train/). It builds the model of ref_model.py
from a flat dict of parameter tensors (HF names; leaf tensors with requires_grad), runs the
forward pass of one training step over B windows of T+1 token ids in one of the three
attention modes, and returns the total loss L = L_main + mtp_weight*L_mtp +
balance_alpha*L_bal + L_idx as a differentiable scalar, its components, and the per-layer
expert loads (for the e_score_correction_bias update in train_optim.py).
It reuses ref_model.py's ops (RMSNorm, MLA projections, RoPE/YaRN, indexer, SwiGLU, router
selection, MTP input) and adds only what training needs: attention that also returns its
probabilities, a router whose gates carry gradient while the selection stays constant,
the sequence-wise balance loss and the indexer KL loss with the contract's detaching.
Written from the contracts and the HF / DeepSeek-V3(.2) semantics, never from src/train/.

Shape letters: T tokens of a window, B windows, D hidden, H heads, E experts, K top-k.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_model as R  # noqa: E402
from ref_config import parse_config  # noqa: E402

MODES = ("dense", "indexer-warmup", "sparse")
TRAIN_KEYS = ("seq_len", "batch_seqs", "steps", "lr", "min_lr_ratio", "warmup", "weight_decay",
              "beta1", "beta2", "eps", "clip", "mtp_weight", "balance_alpha",
              "bias_update_rate", "idx_weight", "seed", "stages")
INDEXER_TAG = ".self_attn.indexer."
BIAS_SUFFIX = ".mlp.gate.e_score_correction_bias"
GATE_EPS = 1e-20       # contract: w /= sum(w) + 1e-20

# Deliberate deviations from the contract, switched on only by train_selfcheck.py to prove
# that the comparison detects each kind of mistake. Empty in every real run.
MUT = set()


# =============================================================== config

def load_train_config(path):
    """Read a training config {"model": HF config.json object, "train": {...}} and return
    (model dict, train dict). Every key of TRAIN_KEYS is required except "steps" (default:
    the sum of the stages' steps); others are ignored."""
    with open(path) as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict) \
            or not isinstance(doc.get("train"), dict):
        raise ValueError(f"{path}: expected an object with \"model\" and \"train\" objects")
    tr = dict(doc["train"])
    if "steps" not in tr and isinstance(tr.get("stages"), list):
        # the schedule horizon defaults to the whole staged run (Decisions)
        tr["steps"] = sum(int(s.get("steps", 0)) for s in tr["stages"] if isinstance(s, dict))
    missing = [k for k in TRAIN_KEYS if k not in tr]
    if missing:
        raise ValueError(f"{path}: train: missing {', '.join(missing)}")
    stages = tr["stages"]
    if not isinstance(stages, list) or not stages or any(
            not isinstance(s, dict) or s.get("mode") not in MODES or int(s.get("steps", 0)) <= 0
            for s in stages):
        raise ValueError(f"{path}: train.stages must be a non-empty list of "
                         f"{{\"mode\": {'|'.join(MODES)}, \"steps\": N > 0}}")
    if int(tr["seq_len"]) < 2 or int(tr["batch_seqs"]) < 1:
        raise ValueError(f"{path}: train: seq_len must be >= 2 and batch_seqs >= 1")
    parse_config(doc["model"])          # validates the model part early
    return doc["model"], tr


def stage_mode(train, step):
    """Mode of 0-based global step `step`: stages are consumed in order; past their end
    the last stage's mode continues (train_contract.md, Decisions)."""
    end = 0
    for s in train["stages"]:
        end += int(s["steps"])
        if step < end:
            return s["mode"]
    return train["stages"][-1]["mode"]


# =============================================================== parameters

def is_indexer(name):
    return INDEXER_TAG in name


def is_bias(name):
    return name.endswith(BIAS_SUFFIX)


def trainable(name, mode):
    """Which tensors the optimizer updates in a mode (train_contract.md + Decisions):
    the routing bias never; dense: all but the indexer; indexer-warmup: only the indexer;
    sparse: all."""
    if is_bias(name):
        return False
    if "warmup_not_frozen" in MUT and mode == "indexer-warmup":
        return True
    return {"dense": not is_indexer(name), "indexer-warmup": is_indexer(name),
            "sparse": True}[mode]


class ParamSource:
    """Stands in for ref_model.Weights: hands out the given (leaf) tensors by HF name with
    the same shape checks, and records which names were used."""

    def __init__(self, leaves):
        self.t, self.used = leaves, set()

    def has(self, name):
        return name in self.t

    def plain(self, name, shape):
        if name not in self.t:
            raise KeyError(f"missing tensor {name}")
        if tuple(self.t[name].shape) != tuple(shape):
            raise ValueError(f"{name}: shape {tuple(self.t[name].shape)}, config says "
                             f"{tuple(shape)}")
        self.used.add(name)
        return self.t[name]

    def linear(self, prefix, shape):
        return self.plain(prefix + ".weight", shape)

    def unused(self):
        return sorted(set(self.t) - self.used)


class TrainModel(R.Model):
    """ref_model.Model built from leaf tensors instead of a model directory (same layout,
    same sharing: the MTP layer uses model.embed_tokens / lm_head unless it has its own)."""

    def __init__(self, cfg_dict, leaves):  # pylint: disable=super-init-not-called
        self.cfg = cfg = parse_config(cfg_dict)
        W = self.W = ParamSource(leaves)
        V, D = cfg.vocab, cfg.D
        self.embed = W.plain("model.embed_tokens.weight", (V, D))
        self.norm = W.plain("model.norm.weight", (D,))
        self.head = self.embed if cfg.tie else W.plain("lm_head.weight", (V, D))
        self.layers = [R.load_layer(cfg, W, l, cfg.dsa and cfg.indexer_types[l] == "full",
                                    cfg.mlp_types[l] == "sparse") for l in range(cfg.L)]
        self.mtp = self._load_mtp() if cfg.n_mtp else None
        extra = W.unused()
        if extra:
            raise ValueError(f"{len(extra)} tensors not part of the model, e.g. {extra[:3]}")

    def moe_layers(self):
        """[(layer index, mlp dict)] of every MoE layer, the MTP layer last."""
        out = [(l, lp["mlp"]) for l, lp in enumerate(self.layers) if lp["sparse"]]
        if self.mtp is not None and self.mtp["layer"]["sparse"]:
            out.append((self.cfg.L, self.mtp["layer"]["mlp"]))
        return out


def make_leaves(arrays, dtype=torch.float64):
    """name -> numpy array  =>  name -> leaf tensor (no gradient yet; see set_mode)."""
    return {n: torch.tensor(np.asarray(a), dtype=dtype) for n, a in arrays.items()}


def set_mode(leaves, mode):
    """Let exactly the tensors trainable in `mode` collect gradients."""
    for n, t in leaves.items():
        t.requires_grad_(trainable(n, mode))
        t.grad = None


# =============================================================== training forward

class Acc:
    """Sums over the windows of one step (turned into means by step_loss)."""

    def __init__(self):
        self.ce_main = self.ce_mtp = self.bal = self.kl = 0.0
        self.n_main = self.n_mtp = self.n_kl = 0
        self.load = {}            # layer -> np.int64 [E]: (token, slot) assignments
        self.sel = []             # every discrete decision (router idx, attention masks)


def attend(cfg, p, pr, allowed):
    """Expanded MLA exactly as ref_model.mla_attend_expanded, also returning the attention
    probabilities [H, S, Tk] (the indexer loss's target). allowed [S, Tk] bool."""
    T, H = pr["c"].shape[0], cfg.H
    kvx = R.linear(pr["c"], p["kv_b"]).view(T, H, cfg.nope + cfg.v)
    k = torch.cat([kvx[..., :cfg.nope], pr["k_pe"][:, None, :].expand(T, H, cfg.rope)], -1)
    q = torch.cat([pr["q_nope"], pr["q_pe"]], -1)
    scores = torch.einsum("shd,thd->hst", q, k) * cfg.softmax_scale
    scores = scores.masked_fill(~torch.from_numpy(allowed)[None], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    o = torch.einsum("hst,thd->shd", probs, kvx[..., cfg.nope:])
    return R.linear(o.reshape(T, H * cfg.v), p["o"]), probs


def indexer_logits(cfg, p, a, cq, cos, sin):
    """I(s,t) [T, T] (no mask) from the layer's normed input a and q latent cq, both
    DETACHED (train_contract.md: only indexer parameters get gradient from L_idx)."""
    if "idx_no_detach" not in MUT:
        a, cq = a.detach(), cq.detach()
    qI, w = R.indexer_queries(cfg, p, a, cq, cos, sin)
    return R.indexer_scores(cfg, qI, w, R.indexer_keys(cfg, p, a, cos, sin))


def indexer_kl(scores, probs, allowed):
    """KL_s = sum_t p (log p - log q) over the allowed keys of each query [S]: p = mean over
    heads of the attention probabilities (a constant target), renormalized over the
    allowed set; q = softmax of the indexer logits over the same set. p = 0 terms are 0."""
    m = torch.from_numpy(allowed)
    p = torch.where(m, probs.detach().mean(0), torch.zeros((), dtype=probs.dtype))
    p = p / p.sum(-1, keepdim=True)
    logq = torch.log_softmax(scores.masked_fill(~m, float("-inf")), dim=-1)
    pos = m & (p > 0)
    one, zero = torch.ones((), dtype=p.dtype), torch.zeros((), dtype=p.dtype)
    logp = torch.log(torch.where(pos, p, one))
    logq = torch.where(pos, logq, zero)
    if "kl_reverse" in MUT:
        return torch.where(pos, logq.exp() * (logq - logp), zero).sum(-1)
    return torch.where(pos, p * (logp - logq), zero).sum(-1)


def router_gates(cfg, s, idx):
    """Applied gates [T, K] = s[idx] / (sum_k s[idx_k] + 1e-20) * routed_scaling_factor
    (normalization only with norm_topk_prob); gradient flows into s, idx is constant."""
    w = torch.gather(s, 1, torch.from_numpy(idx))
    if "gate_detach" in MUT:
        w = w.detach()
    if cfg.norm_topk_prob:
        den = w.sum(-1, keepdim=True) + GATE_EPS
        w = w / (den.detach() if "gate_norm_const" in MUT else den)
    return w * cfg.scaling


def moe_train(cfg, l, p, f, acc):
    """MoE FFN of one window with gradient-carrying gates. Adds the layer's expert loads to
    acc.load and its sequence-wise balance term sum_e f[e] P[e] to acc.bal."""
    E, K, n = cfg.experts[l], cfg.top_k, f.shape[0]
    logits = f @ p["router"].T
    s = torch.sigmoid(logits) if cfg.scoring == "sigmoid" else torch.softmax(logits, -1)
    # selection exactly as inference (biased, grouped, ties to the lower index), constant
    idx, _ = R.moe_route(cfg, l, {"router": p["router"].detach(), "bias": p["bias"]},
                         f.detach())
    w = router_gates(cfg, s, idx)
    y = torch.zeros_like(f)
    for e in np.unique(idx):
        rows, slot = np.nonzero(idx == e)
        rows_t = torch.from_numpy(rows)
        gate = w[rows_t, torch.from_numpy(slot)][:, None]
        y = y.index_add(0, rows_t, gate * R.swiglu(f[rows_t], *p["experts"][e]))
    if p["shared"] is not None:
        y = y + R.swiglu(f, *p["shared"])
    counts = np.bincount(idx.ravel(), minlength=E)
    acc.sel.append(idx.tobytes())
    acc.load[l] = acc.load.get(l, 0) + counts
    sb = s + p["bias"] if "bal_biased" in MUT else s
    P = sb.mean(0) if "bal_unnormalized" in MUT else (sb / sb.sum(-1, keepdim=True)).mean(0)
    acc.bal = acc.bal + (torch.from_numpy(counts * (E / (K * n))).to(s.dtype) * P).sum()
    return y


def train_layer(cfg, l, lp, x, cos, sin, prev_sel, mode, acc):
    """One pre-norm decoder layer in a training mode. dense: causal attention, no indexer;
    indexer-warmup: causal attention + L_idx over all t <= s; sparse: causal AND top-k
    (shared layers reuse prev_sel) + L_idx over the selected set. Returns (x, selection)."""
    T = x.shape[0]
    a = R.rms_norm(x, lp["in_norm"], cfg.eps)
    ap = lp["attn"]
    pr = R.mla_project(cfg, ap, a, cos, sin)
    own = cfg.dsa and lp["full_indexer"] and mode != "dense"
    scores = indexer_logits(cfg, ap, a, pr["cq"], cos, sin) if own else None
    sparse = mode == "sparse" and cfg.dsa and not ("sparse_mtp_dense" in MUT and l == cfg.L)
    if sparse:
        allowed = R.select_topk(cfg, scores.detach(), list(range(T))) if own else prev_sel
    else:
        allowed = R.causal_mask(range(T), T)
    out, probs = attend(cfg, ap, pr, allowed)
    acc.sel.append(allowed.tobytes())
    if own:
        kl = indexer_kl(scores, probs, allowed)
        acc.kl, acc.n_kl = acc.kl + kl.sum(), acc.n_kl + T
    x = x + out
    f = R.rms_norm(x, lp["post_norm"], cfg.eps)
    if lp["sparse"]:
        return x + moe_train(cfg, l, lp["mlp"], f, acc), allowed
    m = lp["mlp"]
    return x + R.swiglu(f, m["gate"], m["up"], m["down"]), allowed


def window_forward(model, ids, mode, acc):
    """Main model and MTP layer over one window w[0..T] (inputs w[0..T-1]); adds the summed
    cross-entropies and counts to acc."""
    cfg, T = model.cfg, len(ids) - 1
    x = model.embed[torch.from_numpy(ids[:T])]
    cos, sin = R.rope_cos_sin(cfg, range(T))
    sel = None
    for l, lp in enumerate(model.layers):
        x, sel = train_layer(cfg, l, lp, x, cos, sin, sel, mode, acc)
    h = R.rms_norm(x, model.norm, cfg.eps)
    tgt = torch.from_numpy(ids[1:])
    acc.ce_main = acc.ce_main + F.cross_entropy(R.linear(h, model.head), tgt, reduction="sum")
    acc.n_main += T
    if model.mtp is None:
        return
    m = model.mtp
    hm = h[:T - 1].detach() if "mtp_detach_h" in MUT else h[:T - 1]
    u = R.mtp_input(cfg, m, ids[1:T], hm)          # row i: enorm(E[w[i+1]]), hnorm(h_i)
    cos, sin = R.rope_cos_sin(cfg, range(T - 1))
    u, _ = train_layer(cfg, cfg.L, m["layer"], u, cos, sin, None, mode, acc)
    logits = R.linear(R.rms_norm(u, m["head_norm"], cfg.eps), m["head"])
    acc.ce_mtp = acc.ce_mtp + F.cross_entropy(logits, torch.from_numpy(ids[2:]),
                                              reduction="sum")
    acc.n_mtp += T - 1


def step_loss(model, batch, mode, train):
    """Total loss of one step over batch int [B, T+1] in `mode`.
    Returns (L as a differentiable scalar, components dict of floats, Acc: .load is
    layer -> int [E] over the whole batch, .sel the discrete decisions).
    Components: main = L_main, mtp = L_mtp, balance = L_bal (unweighted), indexer = L_idx
    (idx_weight included, as in the contract's definition), loss = L."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    if mode != "dense" and not model.cfg.dsa:
        raise ValueError(f"mode {mode} needs a DSA indexer in the model")
    acc = Acc()
    batch = np.asarray(batch, dtype=np.int64)
    for ids in batch:
        window_forward(model, ids, mode, acc)
    B = batch.shape[0]
    zero = torch.zeros((), dtype=model.embed.dtype)
    l_main = acc.ce_main / acc.n_main
    l_mtp = acc.ce_mtp / acc.n_mtp if acc.n_mtp else zero
    l_bal = acc.bal / B if model.moe_layers() else zero
    l_idx = float(train["idx_weight"]) * acc.kl / acc.n_kl if acc.n_kl else zero
    total = (l_main + float(train["mtp_weight"]) * l_mtp +
             float(train["balance_alpha"]) * l_bal + l_idx)
    comps = {"loss": total, "main": l_main, "mtp": l_mtp, "balance": l_bal, "indexer": l_idx}
    return total, {k: float(v) for k, v in comps.items()}, acc
