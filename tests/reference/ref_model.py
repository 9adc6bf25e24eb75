#!/usr/bin/python3
"""Independent float64 PyTorch reference of GlmMoeDsaForCausalLM / DeepseekV3(.2) + MTP.

What it is for: the acceptance oracle of the C engine. It loads a Hugging Face model
directory (config.json + safetensors, any of the weight formats of contract.md), runs the
whole sequence at once in the EXPANDED ("naive") MLA form with a causal AND DSA top-k mask,
and writes float32 logits [T, V] (and the MTP logits [T-1, V]) as .npy. It is written from
the HF semantics (transformers deepseek_v3 / deepseek_v32 / glm_moe_dsa modeling code as
restated in /work/shared/research/arch.md and /work/notes/contract.md), not from the C code.

  ref_model.py MODEL_DIR --ids 1,2,3 --out ref.npy [--mtp-out ref_mtp.npy]
  ref_model.py --batch JOBS            one job per line: MODEL_DIR IDS OUT [MTP_OUT]
  ref_model.py MODEL_DIR --self-check  internal consistency checks (see selfcheck.py)

Shape letters: T tokens, D hidden, H heads, V vocab, E experts, K top-k, r kv_lora.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quant  # noqa: E402
import st_io  # noqa: E402
from ref_config import parse_config  # noqa: E402

DT = torch.float64
LATENT_EPS = 1e-6      # q_a_layernorm / kv_a_layernorm: HF builds them with the default eps
KNORM_EPS = 1e-6       # indexer k_norm is nn.LayerNorm(eps=1e-6) (arch.md §3.2, pitfall 4)

# Optional activation rounding applied to every Linear input (used only to estimate the
# tolerance of the engine's bf16 fast path; None in normal runs).
ACT_ROUND = {"fn": None}
# Decision margins seen (indexer top-k, router top-k, group top-k): the smallest nonzero
# gap between the last kept and the first dropped candidate, and how many exact ties the
# lower-index rule decided. A mismatch against the engine next to a tiny nonzero gap is a
# rounding flip, not a semantic bug; exact ties (e.g. indexer scores that are exactly 0
# because every head's ReLU is 0) must be decided identically by the engine.
MARGINS = {}


def note_margin(kind, gap):
    m = MARGINS.setdefault(kind, {"min_gap": float("inf"), "ties": 0, "decisions": 0})
    m["decisions"] += 1
    if gap == 0:
        m["ties"] += 1
    else:
        m["min_gap"] = min(m["min_gap"], float(gap))


def margins_text():
    if not MARGINS:
        return "no top-k decision in this model"
    return ", ".join(f"{k}: {m['decisions']} cut decisions, {m['ties']} exact ties, smallest "
                     f"nonzero gap {m['min_gap']:.3g}" for k, m in sorted(MARGINS.items()))


# =============================================================== elementary ops

def round_bf16(x):
    """Round a tensor to bf16 (RNE via float32) and back to float64."""
    bits = quant.bf16_encode(x.detach().numpy())
    return torch.from_numpy(st_io.bf16_to_float64(bits))


def linear(x, w):
    """nn.Linear without bias: y = x W^T, W is [out, in]."""
    if ACT_ROUND["fn"] is not None:
        x = ACT_ROUND["fn"](x)
    return x @ w.T


def rms_norm(x, w, eps):
    """DeepseekV3RMSNorm: w * x / sqrt(mean(x^2) + eps)."""
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def layer_norm(x, w, b, eps):
    """nn.LayerNorm over the last dim (indexer k_norm)."""
    mu = x.mean(-1, keepdim=True)
    var = (x - mu).pow(2).mean(-1, keepdim=True)
    return (x - mu) * torch.rsqrt(var + eps) * w + b


def silu(x):
    return x * torch.sigmoid(x)


def swiglu(x, gate, up, down):
    """DeepseekV3MLP: down(silu(gate x) * up x)."""
    return linear(silu(linear(x, gate)) * linear(x, up), down)


def rope_cos_sin(cfg, pos):
    """HF RotaryEmbedding for the rope dims: angle = p * inv_freq, cos/sin scaled by
    attention_factor (YaRN; 1.0 otherwise). Returns cos, sin [T, rope/2]."""
    ang = torch.tensor(np.outer(np.asarray(pos, dtype=np.float64), cfg.inv_freq), dtype=DT)
    return torch.cos(ang) * cfg.attn_factor, torch.sin(ang) * cfg.attn_factor


def apply_rope(x, cos, sin, interleave):
    """Rotate the last dim of x [T, ..., R] by per-position angles (cos/sin [T, R/2]).
    interleave=True: pairs (x[2i], x[2i+1]) (HF apply_rotary_pos_emb_interleave, up to its
    output permutation, which leaves dot products unchanged; arch.md §2.4).
    interleave=False: pairs (x[i], x[i+R/2]) (HF apply_rotary_pos_emb / rotate_half)."""
    shape = (cos.shape[0],) + (1,) * (x.dim() - 2) + (cos.shape[1],)
    c, s = cos.reshape(shape), sin.reshape(shape)
    if interleave:
        x1, x2 = x[..., 0::2], x[..., 1::2]
        out = torch.empty_like(x)
        out[..., 0::2] = x1 * c - x2 * s
        out[..., 1::2] = x1 * s + x2 * c
        return out
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def topk_lower_index(scores, k):
    """Indices of the k largest entries of a 1-D float64 array; ties go to the LOWER index
    (contract.md). A stable ascending sort of -scores keeps equal values in index order."""
    order = np.argsort(-scores, kind="stable")
    return order[:k], order


# =============================================================== weights

class Weights:
    """All tensors of a model directory, dequantized to float64 torch on demand, with
    shape checks against the config and a record of which names were consumed."""

    def __init__(self, model_dir):
        self.meta = {}
        self.t = st_io.read_dir(model_dir, self.meta)
        self.used = set()
        self.formats = {}

    def has(self, name):
        return name in self.t

    def plain(self, name, shape):
        """A never-quantized tensor (norms, embeddings, gate, bias, eh_proj...)."""
        t = self.t.get(name)
        if t is None:
            raise KeyError(f"missing tensor {name}")
        if t.dtype not in ("F32", "F16", "BF16", "F64"):
            raise ValueError(f"{name}: dtype {t.dtype}, expected a float (never quantized)")
        self._check(name, t.shape, shape)
        self.used.add(name)
        return torch.from_numpy(st_io.to_float64(t))

    def linear(self, prefix, shape):
        """A Linear weight in any layout of contract.md, dequantized to [N, K]."""
        try:
            w, fmt = quant.load_linear(self.t, prefix)
        except KeyError:
            raise KeyError(f"missing Linear {prefix}") from None
        self._check(prefix + ".weight", w.shape, shape)
        for suf in (".weight", ".weight_scale_inv", ".weight_scale", ".weight_scale_2",
                    ".input_scale", ".weight_blocks", ".weight_scales"):
            if prefix + suf in self.t:
                self.used.add(prefix + suf)
        self.formats[fmt] = self.formats.get(fmt, 0) + 1
        return torch.from_numpy(w)

    @staticmethod
    def _check(name, got, want):
        if tuple(got) != tuple(want):
            raise ValueError(f"{name}: shape {tuple(got)}, config says {tuple(want)}")

    def unused(self):
        return sorted(set(self.t) - self.used)


def load_attention(cfg, W, pre, with_indexer):
    """self_attn.* of one layer (contract.md checkpoint layout; arch.md §2.2, §3.2)."""
    D, H, r, qk = cfg.D, cfg.H, cfg.kv_lora, cfg.qk_head
    p = {}
    if cfg.q_lora:
        p["q_a"] = W.linear(pre + "q_a_proj", (cfg.q_lora, D))
        p["q_a_norm"] = W.plain(pre + "q_a_layernorm.weight", (cfg.q_lora,))
        p["q_b"] = W.linear(pre + "q_b_proj", (H * qk, cfg.q_lora))
    else:
        p["q"] = W.linear(pre + "q_proj", (H * qk, D))
    p["kv_a"] = W.linear(pre + "kv_a_proj_with_mqa", (r + cfg.rope, D))
    p["kv_a_norm"] = W.plain(pre + "kv_a_layernorm.weight", (r,))
    p["kv_b"] = W.linear(pre + "kv_b_proj", (H * (cfg.nope + cfg.v), r))
    p["o"] = W.linear(pre + "o_proj", (D, H * cfg.v))
    if with_indexer:
        ip = pre + "indexer."
        p["wq_b"] = W.linear(ip + "wq_b", (cfg.IH * cfg.ID, cfg.q_lora))
        p["wk"] = W.linear(ip + "wk", (cfg.ID, D))
        p["k_norm_w"] = W.plain(ip + "k_norm.weight", (cfg.ID,))
        p["k_norm_b"] = W.plain(ip + "k_norm.bias", (cfg.ID,))
        p["wproj"] = W.plain(ip + "weights_proj.weight", (cfg.IH, D))
    return p


def load_mlp(cfg, W, pre, l, sparse):
    """mlp.*: dense SwiGLU, or MoE router + bias + experts + shared experts (arch.md §4.3)."""
    D = cfg.D
    if not sparse:
        return {"gate": W.linear(pre + "gate_proj", (cfg.inter, D)),
                "up": W.linear(pre + "up_proj", (cfg.inter, D)),
                "down": W.linear(pre + "down_proj", (D, cfg.inter))}
    E, I = cfg.experts[l], cfg.moe_inter
    p = {"router": W.plain(pre + "gate.weight", (E, D))}
    bname = pre + "gate.e_score_correction_bias"
    p["has_bias"] = W.has(bname)
    p["bias"] = W.plain(bname, (E,)) if p["has_bias"] else torch.zeros(E, dtype=DT)

    def expert(ep, width):
        return (W.linear(ep + "gate_proj", (width, D)), W.linear(ep + "up_proj", (width, D)),
                W.linear(ep + "down_proj", (D, width)))

    p["experts"] = [expert(f"{pre}experts.{e}.", I) for e in range(E)]
    p["shared"] = expert(pre + "shared_experts.", I * cfg.n_shared) if cfg.n_shared else None
    return p


def load_layer(cfg, W, l, with_indexer, sparse):
    pre = f"model.layers.{l}."
    return {"in_norm": W.plain(pre + "input_layernorm.weight", (cfg.D,)),
            "post_norm": W.plain(pre + "post_attention_layernorm.weight", (cfg.D,)),
            "attn": load_attention(cfg, W, pre + "self_attn.", with_indexer),
            "mlp": load_mlp(cfg, W, pre + "mlp.", l, sparse), "sparse": sparse,
            "full_indexer": with_indexer}


class Model:
    """Config + every weight as float64 torch tensors."""

    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = cfg = parse_config(json.load(f))
        W = self.W = Weights(model_dir)
        V, D = cfg.vocab, cfg.D
        self.embed = W.plain("model.embed_tokens.weight", (V, D))
        self.norm = W.plain("model.norm.weight", (D,))
        self.head = self.embed if cfg.tie else W.plain("lm_head.weight", (V, D))
        self.layers = [load_layer(cfg, W, l, cfg.dsa and cfg.indexer_types[l] == "full",
                                  cfg.mlp_types[l] == "sparse") for l in range(cfg.L)]
        self.mtp = self._load_mtp() if cfg.n_mtp else None

    def _load_mtp(self):
        """MTP layer at index L (contract.md): glue + a full decoder layer whose indexer is
        always its own; optional own embed_tokens / shared_head.head."""
        cfg, W, L, D = self.cfg, self.W, self.cfg.L, self.cfg.D
        pre = f"model.layers.{L}."
        sparse = W.has(pre + "mlp.gate.weight")
        m = {"layer": load_layer(cfg, W, L, cfg.dsa, sparse),
             "enorm": W.plain(pre + "enorm.weight", (D,)),
             "hnorm": W.plain(pre + "hnorm.weight", (D,)),
             "eh_proj": W.plain(pre + "eh_proj.weight", (D, 2 * D)),
             "head_norm": W.plain(pre + "shared_head.norm.weight", (D,))}
        hn, en = pre + "shared_head.head.weight", pre + "embed_tokens.weight"
        m["head"] = W.plain(hn, (cfg.vocab, D)) if W.has(hn) else self.head
        m["embed"] = W.plain(en, (cfg.vocab, D)) if W.has(en) else self.embed
        return m


# =============================================================== MLA + DSA attention

def mla_project(cfg, p, a, cos, sin):
    """Projections shared by both MLA forms (DeepseekV3Attention.forward; arch.md §2.3):
    cq = RMSNorm(q_a a) (fed to the indexer), q = q_b cq -> per head [nope | rope];
    kv = kv_a a -> c = RMSNorm(kv[:r]) and k_pe = kv[r:]; RoPE on q_pe and k_pe only."""
    T = a.shape[0]
    if cfg.q_lora:
        cq = rms_norm(linear(a, p["q_a"]), p["q_a_norm"], LATENT_EPS)
        q = linear(cq, p["q_b"])
    else:
        cq, q = None, linear(a, p["q"])
    q = q.view(T, cfg.H, cfg.qk_head)
    kv = linear(a, p["kv_a"])
    c = rms_norm(kv[:, :cfg.kv_lora], p["kv_a_norm"], LATENT_EPS)
    return {"cq": cq, "q_nope": q[..., :cfg.nope],
            "q_pe": apply_rope(q[..., cfg.nope:], cos, sin, cfg.rope_interleave),
            "c": c, "k_pe": apply_rope(kv[:, cfg.kv_lora:], cos, sin, cfg.rope_interleave)}


def mla_attend_expanded(cfg, p, pr, allowed):
    """Expanded MLA over the whole sequence (HF eager path): K = [W_UK c ; k_pe] and
    V = W_UV c per head, softmax(scale Q K^T + mask) V, heads concatenated, o_proj.
    allowed [T, T] bool = causal AND selected. Returns [T, D]."""
    T, H = pr["c"].shape[0], cfg.H
    kvx = linear(pr["c"], p["kv_b"]).view(T, H, cfg.nope + cfg.v)
    k = torch.cat([kvx[..., :cfg.nope], pr["k_pe"][:, None, :].expand(T, H, cfg.rope)], -1)
    q = torch.cat([pr["q_nope"], pr["q_pe"]], -1)
    scores = torch.einsum("shd,thd->hst", q, k) * cfg.softmax_scale
    scores = scores.masked_fill(~torch.from_numpy(allowed)[None], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    o = torch.einsum("hst,thd->shd", probs, kvx[..., cfg.nope:])
    return linear(o.reshape(T, H * cfg.v), p["o"])


def mla_attend_absorbed(cfg, p, q_nope, q_pe, c, k_pe, allowed):
    """Absorbed MLA for one query over a latent cache (arch.md §2.6):
    q~[h] = W_UK[h]^T q_nope[h]; score = scale (q~ . c_t + q_pe . k_pe_t);
    z[h] = sum_t p c_t; o[h] = W_UV[h] z[h]. c [Tk, r], k_pe [Tk, rope], allowed [Tk] bool."""
    wkv = p["kv_b"].view(cfg.H, cfg.nope + cfg.v, cfg.kv_lora)
    q_lat = torch.einsum("hd,hdr->hr", q_nope, wkv[:, :cfg.nope])
    scores = (q_lat @ c.T + q_pe @ k_pe.T) * cfg.softmax_scale          # [H, Tk]
    scores = scores.masked_fill(~torch.from_numpy(allowed)[None], float("-inf"))
    z = torch.softmax(scores, dim=-1) @ c                                 # [H, r]
    o = torch.einsum("hr,hdr->hd", z, wkv[:, cfg.nope:])
    return linear(o.reshape(1, cfg.H * cfg.v), p["o"])[0]


def indexer_keys(cfg, p, a, cos, sin):
    """kI = LayerNorm(wk a) with RoPE on its FIRST rope dims (Indexer.forward; arch.md §3.3)."""
    k = layer_norm(linear(a, p["wk"]), p["k_norm_w"], p["k_norm_b"], KNORM_EPS)
    return torch.cat([apply_rope(k[:, :cfg.rope], cos, sin, cfg.indexer_interleave),
                      k[:, cfg.rope:]], -1)


def indexer_queries(cfg, p, a, cq, cos, sin):
    """qI = wq_b cq per head, RoPE on the first rope dims; w = weights_proj(a) * IH^-0.5."""
    T = a.shape[0]
    q = linear(cq, p["wq_b"]).view(T, cfg.IH, cfg.ID)
    q = torch.cat([apply_rope(q[..., :cfg.rope], cos, sin, cfg.indexer_interleave),
                   q[..., cfg.rope:]], -1)
    return q, linear(a, p["wproj"]) * cfg.IH ** -0.5


def indexer_scores(cfg, qI, w, kI):
    """I(s,t) = sum_j w[s,j] ReLU(qI[s,j] . kI[t] * ID^-0.5)  -> [S, Tk] (no mask)."""
    dots = torch.relu(torch.einsum("sjd,td->sjt", qI, kI) * cfg.ID ** -0.5)
    return torch.einsum("sj,sjt->st", w, dots)


def select_topk(cfg, scores, q_pos):
    """DSA selection: for query at position q_pos (keys 0..Tk-1 at positions 0..Tk-1), keep
    the min(index_topk, q_pos+1) highest-scoring visible keys, ties to the lower position.
    scores [S, Tk] -> allowed [S, Tk] bool (causal AND selected)."""
    s = scores.numpy()
    allowed = np.zeros(s.shape, dtype=bool)
    for i, qp in enumerate(q_pos):
        row = np.where(np.arange(s.shape[1]) <= qp, s[i], -np.inf)
        k = min(cfg.index_topk, qp + 1)
        keep, order = topk_lower_index(row, k)
        allowed[i, keep] = True
        if k < qp + 1:
            note_margin("indexer", abs(row[order[k - 1]] - row[order[k]]) /
                        max(1e-30, abs(row[order[k - 1]])))
    return allowed


def causal_mask(q_pos, n_keys):
    return np.arange(n_keys)[None, :] <= np.asarray(q_pos)[:, None]


# =============================================================== MoE

def moe_route(cfg, l, p, f):
    """Router (DeepseekV3 TopkRouter/route_tokens_to_experts; arch.md §4.2; contract.md):
    s = sigmoid|softmax(W_g f); sel = s + bias; optional group limit (top-2 sum for
    noaux_tc, max for group_limited_greedy, none for greedy; dropped groups -> -inf);
    top num_experts_per_tok of sel (ties: lower index); w = s[idx], normalised, scaled.
    Returns idx [T, K] (int) and weights [T, K]."""
    logits = f @ p["router"].T                       # router input is never rounded
    s = torch.sigmoid(logits) if cfg.scoring == "sigmoid" else torch.softmax(logits, -1)
    sel = (s + p["bias"]).numpy().copy()
    E, G = cfg.experts[l], cfg.n_group
    idx = np.zeros((f.shape[0], cfg.top_k), dtype=np.int64)
    for t in range(f.shape[0]):
        row = sel[t]
        if G > 1 and cfg.topk_method != "greedy":
            grp = row.reshape(G, E // G)
            gs = np.sort(grp, axis=1)[:, ::-1]
            gscore = gs[:, :2].sum(1) if cfg.topk_method == "noaux_tc" else gs[:, 0]
            keep_g, gorder = topk_lower_index(gscore, cfg.topk_group)
            if cfg.topk_group < G:
                note_margin("group", abs(gscore[gorder[cfg.topk_group - 1]] -
                                         gscore[gorder[cfg.topk_group]]))
            gmask = np.zeros(G, dtype=bool)
            gmask[keep_g] = True
            row = np.where(np.repeat(gmask, E // G), row, -np.inf)
        keep, order = topk_lower_index(row, cfg.top_k)
        if cfg.top_k < E and np.isfinite(row[order[cfg.top_k]]):
            note_margin("router", abs(row[order[cfg.top_k - 1]] - row[order[cfg.top_k]]))
        idx[t] = keep
    w = torch.gather(s, 1, torch.from_numpy(idx))
    if cfg.norm_topk_prob:
        w = w / (w.sum(-1, keepdim=True) + 1e-20)
    return idx, w * cfg.scaling


def moe_forward(cfg, l, p, f):
    """y = sum_k w_k Expert_{idx_k}(f) + SharedExpert(f) (DeepseekV3MoE.forward)."""
    idx, w = moe_route(cfg, l, p, f)
    y = torch.zeros_like(f)
    for e in np.unique(idx):
        rows, slot = np.nonzero(idx == e)
        rows_t = torch.from_numpy(rows)
        gate = w[rows_t, torch.from_numpy(slot)][:, None]
        y[rows_t] += gate * swiglu(f[rows_t], *p["experts"][e])
    if p["shared"] is not None:
        y = y + swiglu(f, *p["shared"])
    return y


def ffn(cfg, l, lp, f):
    if lp["sparse"]:
        return moe_forward(cfg, l, lp["mlp"], f)
    m = lp["mlp"]
    return swiglu(f, m["gate"], m["up"], m["down"])


# =============================================================== whole-sequence forward

def layer_selection(cfg, lp, a, pr, cos, sin, prev):
    """The layer's allowed mask [T, T]: its own indexer's top-k (full layers), the most
    recent full layer's (shared layers; GlmMoeDsaAttention), or plain causal (no DSA)."""
    T = a.shape[0]
    if not cfg.dsa:
        return causal_mask(range(T), T)
    if not lp["full_indexer"]:
        return prev
    ap = lp["attn"]
    qI, w = indexer_queries(cfg, ap, a, pr["cq"], cos, sin)
    kI = indexer_keys(cfg, ap, a, cos, sin)
    return select_topk(cfg, indexer_scores(cfg, qI, w, kI), list(range(T)))


def decoder_layer(cfg, l, lp, x, cos, sin, prev_sel):
    """Pre-norm block (GlmMoeDsaDecoderLayer.forward): x += o_proj(attn(RMSNorm(x)));
    x += FFN(RMSNorm(x)). Returns (x, selection mask used)."""
    a = rms_norm(x, lp["in_norm"], cfg.eps)
    pr = mla_project(cfg, lp["attn"], a, cos, sin)
    sel = layer_selection(cfg, lp, a, pr, cos, sin, prev_sel)
    x = x + mla_attend_expanded(cfg, lp["attn"], pr, sel)
    return x + ffn(cfg, l, lp, rms_norm(x, lp["post_norm"], cfg.eps)), sel


def forward(model, ids):
    """Main model over ids -> (logits [T, V], h [T, D] after model.norm)."""
    cfg = model.cfg
    x = model.embed[torch.tensor(ids)]
    cos, sin = rope_cos_sin(cfg, range(len(ids)))
    sel = None
    for l, lp in enumerate(model.layers):
        x, sel = decoder_layer(cfg, l, lp, x, cos, sin, sel)
    h = rms_norm(x, model.norm, cfg.eps)
    return linear(h, model.head), h


def mtp_input(cfg, m, next_ids, h):
    """u = eh_proj([enorm(E[t_{i+1}]) ; hnorm(h_i)]) (embedding first; arch.md §1.3)."""
    e = rms_norm(m["embed"][torch.tensor(next_ids)], m["enorm"], cfg.eps)
    return linear(torch.cat([e, rms_norm(h, m["hnorm"], cfg.eps)], -1), m["eh_proj"])


def mtp_forward(model, ids, h):
    """MTP rows i = 0..T-2 at RoPE positions i, attending over MTP-layer keys 0..i with the
    layer's own indexer; logits_i = head(shared_head.norm(u_i)) predicts t_{i+2}."""
    cfg, m = model.cfg, model.mtp
    n = len(ids) - 1
    u = mtp_input(cfg, m, ids[1:], h[:n])
    cos, sin = rope_cos_sin(cfg, range(n))
    u, _ = decoder_layer(cfg, cfg.L, m["layer"], u, cos, sin, None)
    return linear(rms_norm(u, m["head_norm"], cfg.eps), m["head"])


def run(model, ids, want_mtp):
    """(logits [T, V], mtp logits [T-1, V] or None) as float64 tensors."""
    logits, h = forward(model, ids)
    mtp = None
    if want_mtp:
        if model.mtp is None:
            raise ValueError("--mtp-out given but the config has no num_nextn_predict_layers")
        if len(ids) < 2:
            raise ValueError("--mtp-out needs at least 2 ids")
        mtp = mtp_forward(model, ids, h)
    return logits, mtp


# =============================================================== CLI

def parse_ids(text, vocab):
    ids = [int(x) for x in text.replace(" ", "").split(",") if x]
    if not ids or any(i < 0 or i >= vocab for i in ids):
        raise ValueError(f"--ids must be a non-empty list of token ids in [0, {vocab})")
    return ids


def do_job(model_dir, ids_text, out, mtp_out, cache):
    """Load (cached per directory) and write the npy outputs for one job."""
    model = cache.get(model_dir) or Model(model_dir)
    cache[model_dir] = model
    ids = parse_ids(ids_text, model.cfg.vocab)
    logits, mtp = run(model, ids, bool(mtp_out))
    np.save(out, logits.numpy().astype(np.float32))
    if mtp_out:
        np.save(mtp_out, mtp.numpy().astype(np.float32))
    extra = model.W.unused()
    if extra:
        print(f"ref_model: {model_dir}: warning: {len(extra)} tensors not used by the "
              f"reference, e.g. {extra[:3]}", file=sys.stderr)


def run_batch(path, cache, margins):
    """Run every job of a batch file; a failing job is reported and the others still run.
    Returns the number of failed jobs (0 = all written)."""
    failed = 0
    with open(path) as f:
        jobs = [line.split() for line in f if line.split()]
    for parts in jobs:
        MARGINS.clear()
        try:
            do_job(parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else None, cache)
        except (ValueError, KeyError, OSError, IndexError) as e:
            print(f"ref_model: error: {parts[0]}: {e}", file=sys.stderr)
            failed += 1
            continue
        if margins:
            print(f"ref_model: {parts[0]}: margins: {margins_text()}", file=sys.stderr)
    return 1 if failed else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", nargs="?")
    ap.add_argument("--ids")
    ap.add_argument("--out")
    ap.add_argument("--mtp-out")
    ap.add_argument("--batch", help="file of jobs: MODEL_DIR IDS OUT [MTP_OUT] per line")
    ap.add_argument("--self-check", action="store_true")
    ap.add_argument("--act-bf16", action="store_true",
                    help="round every Linear input to bf16 (tolerance studies only)")
    ap.add_argument("--margins", action="store_true", help="print the smallest top-k margins")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.act_bf16:
        ACT_ROUND["fn"] = round_bf16
    try:
        if args.self_check:
            import selfcheck
            return selfcheck.main(args.model_dir, args.ids)
        cache = {}
        if args.batch:
            return run_batch(args.batch, cache, args.margins)
        else:
            if not (args.model_dir and args.ids and args.out):
                ap.error("MODEL_DIR, --ids and --out are required")
            do_job(args.model_dir, args.ids, args.out, args.mtp_out, cache)
    except (ValueError, KeyError, OSError) as e:
        print(f"ref_model: error: {e}", file=sys.stderr)
        return 1
    if args.margins:
        print("ref_model: margins: " + margins_text(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
