#!/usr/bin/python3
"""PyTorch-CPU float32 training loop of the demolish model: the bar `demolish train` is held to.

What it is for: issue 3's bench ("training tokens/s of `demolish train` vs a PyTorch-CPU loop
of the same model, batch and thread count"). It trains the model of a training config
(/work/notes/train_contract.md: {"model": HF config.json, "train": {...}}) with the
trainer's semantics (MLA + YaRN, DSA indexer + its KL loss in indexer-warmup / sparse
mode, sigmoid group-limited routing with gradient through the gates, shared expert, dense
layers, MTP, sequence-wise balance loss, AdamW + clipping + warmup/cosine lr, bias update)
written the way fast PyTorch code is: every op batched over [B, T], attention as batched
matmuls, MoE tokens grouped per expert with one argsort and index_select / index_add (a
Python loop over experts, never over tokens), torch.optim.AdamW(foreach=True).
It reports tokens/s = B*T / step time, median over timed steps after warm-up steps, run
with the process settings of TUNED_ENV below (malloc thresholds, OMP_WAIT_POLICY=PASSIVE)
unless --no-env-tuning.

  bench_train_torch.py [--config CFG] [--threads N] [--mode M] [--steps 5] [--warmup 2]
                       [--batch B] [--seq-len T] [--json] [--no-env-tuning]
  bench_train_torch.py --verify     same model as tests/reference/train_model.py (float64,
                                    configs/train_tiny.json: every mode's loss components and
                                    every gradient the oracle trains)
--config defaults to configs/reference.json (the model `demolish train` trains).
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
from ref_config import parse_config  # noqa: E402

LATENT_EPS, KNORM_EPS = 1e-6, 1e-6
INIT_STD = 0.02


def rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope(x, cos, sin, interleave):
    """x [..., T, R] rotated by cos/sin [T, R/2] (pairs (2i, 2i+1) or (i, i+R/2)); the
    interleaved output order differs from HF by a permutation, which dot products ignore."""
    if interleave:
        x1, x2 = x[..., 0::2], x[..., 1::2]
    else:
        x1, x2 = x.chunk(2, -1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


def swiglu(x, g, u, d):
    return (F.silu(x @ g.T) * (x @ u.T)) @ d.T


class Model:
    """Parameters (HF names) and the batched training forward."""

    def __init__(self, cfg_dict, dtype=torch.float32, seed=0, init=None):
        self.c = c = parse_config(cfg_dict)
        if c.scoring != "sigmoid" or c.topk_method != "noaux_tc" or not c.q_lora or c.tie:
            raise ValueError("bench model: sigmoid noaux_tc routing, q_lora_rank and untied "
                             "embeddings only (the GLM-DSA training configs)")
        self.dtype = dtype
        self.p = {}
        gen = torch.Generator().manual_seed(seed)
        for name, shape in self.shapes():
            if init is not None:
                t = torch.tensor(init[name], dtype=dtype)
            elif name.endswith("e_score_correction_bias") or name.endswith("k_norm.bias"):
                t = torch.zeros(shape, dtype=dtype)
            elif len(shape) == 1:
                t = torch.ones(shape, dtype=dtype)
            else:
                t = torch.randn(shape, generator=gen, dtype=dtype) * INIT_STD
            t.requires_grad_(not name.endswith("e_score_correction_bias"))
            self.p[name] = t

    def shapes(self):
        """(HF name, shape) of every tensor (contract.md checkpoint layout)."""
        c = self.c
        D, H, V = c.D, c.H, c.vocab
        out = [("model.embed_tokens.weight", (V, D)), ("model.norm.weight", (D,))]
        if not c.tie:
            out.append(("lm_head.weight", (V, D)))
        for l in range(c.L + min(c.n_mtp, 1)):
            pre = f"model.layers.{l}."
            mtp = l == c.L
            out += [(pre + "input_layernorm.weight", (D,)),
                    (pre + "post_attention_layernorm.weight", (D,))]
            a = pre + "self_attn."
            out += [(a + "q_a_proj.weight", (c.q_lora, D)),
                    (a + "q_a_layernorm.weight", (c.q_lora,)),
                    (a + "q_b_proj.weight", (H * c.qk_head, c.q_lora)),
                    (a + "kv_a_proj_with_mqa.weight", (c.kv_lora + c.rope, D)),
                    (a + "kv_a_layernorm.weight", (c.kv_lora,)),
                    (a + "kv_b_proj.weight", (H * (c.nope + c.v), c.kv_lora)),
                    (a + "o_proj.weight", (D, H * c.v))]
            if c.dsa and (mtp or c.indexer_types[l] == "full"):
                i = a + "indexer."
                out += [(i + "wq_b.weight", (c.IH * c.ID, c.q_lora)), (i + "wk.weight", (c.ID, D)),
                        (i + "k_norm.weight", (c.ID,)), (i + "k_norm.bias", (c.ID,)),
                        (i + "weights_proj.weight", (c.IH, D))]
            m = pre + "mlp."
            if mtp or c.mlp_types[l] == "sparse":
                E, I = c.experts[l], c.moe_inter
                out += [(m + "gate.weight", (E, D)), (m + "gate.e_score_correction_bias", (E,))]
                for e in range(E):
                    out += [(f"{m}experts.{e}.{k}_proj.weight", s)
                            for k, s in (("gate", (I, D)), ("up", (I, D)), ("down", (D, I)))]
                if c.n_shared:
                    S = I * c.n_shared
                    out += [(f"{m}shared_experts.{k}_proj.weight", s)
                            for k, s in (("gate", (S, D)), ("up", (S, D)), ("down", (D, S)))]
            else:
                out += [(m + k + "_proj.weight", s) for k, s in
                        (("gate", (c.inter, D)), ("up", (c.inter, D)), ("down", (D, c.inter)))]
            if mtp:
                out += [(pre + "enorm.weight", (D,)), (pre + "hnorm.weight", (D,)),
                        (pre + "eh_proj.weight", (D, 2 * D)),
                        (pre + "shared_head.norm.weight", (D,))]
        return out

    # ------------------------------------------------------------ layers

    def rope_tables(self, T):
        c = self.c
        ang = torch.arange(T, dtype=torch.float64)[:, None] * torch.tensor(c.inv_freq)[None]
        return ((torch.cos(ang) * c.attn_factor).to(self.dtype),
                (torch.sin(ang) * c.attn_factor).to(self.dtype))

    def indexer(self, pre, a, cq, cos, sin):
        """I [B, T, T] from detached a / cq (only the indexer learns from L_idx)."""
        c, p = self.c, self.p
        B, T, _ = a.shape
        a, cq = a.detach(), cq.detach()
        q = (cq @ p[pre + "wq_b.weight"].T).view(B, T, c.IH, c.ID)
        q = torch.cat([rope(q[..., :c.rope], cos[:, None], sin[:, None], c.indexer_interleave),
                       q[..., c.rope:]], -1)
        k = F.layer_norm(a @ p[pre + "wk.weight"].T, (c.ID,), p[pre + "k_norm.weight"],
                         p[pre + "k_norm.bias"], KNORM_EPS)
        k = torch.cat([rope(k[..., :c.rope], cos, sin, c.indexer_interleave), k[..., c.rope:]], -1)
        w = (a @ p[pre + "weights_proj.weight"].T) * c.IH ** -0.5                 # [B, T, IH]
        dots = torch.relu(torch.einsum("bthd,bsd->bhts", q, k) * c.ID ** -0.5)
        return torch.einsum("bth,bhts->bts", w, dots)

    def attention(self, pre, a, cos, sin, causal, mode, prev_sel, own_indexer, st):
        c, p = self.c, self.p
        B, T, _ = a.shape
        H = c.H
        cq = rms(a @ p[pre + "q_a_proj.weight"].T, p[pre + "q_a_layernorm.weight"], LATENT_EPS)
        # the softmax scale is folded into q (cheaper than scaling [B, H, T, T])
        q = (cq @ (p[pre + "q_b_proj.weight"] * c.softmax_scale).T)
        q = q.view(B, T, H, c.qk_head).transpose(1, 2)
        q = torch.cat([q[..., :c.nope], rope(q[..., c.nope:], cos, sin, c.rope_interleave)], -1)
        kv = a @ p[pre + "kv_a_proj_with_mqa.weight"].T
        lat = rms(kv[..., :c.kv_lora], p[pre + "kv_a_layernorm.weight"], LATENT_EPS)
        k_pe = rope(kv[..., c.kv_lora:], cos, sin, c.rope_interleave)             # [B, T, R]
        kvx = (lat @ p[pre + "kv_b_proj.weight"].T).view(B, T, H, c.nope + c.v).transpose(1, 2)
        k = torch.cat([kvx[..., :c.nope], k_pe[:, None].expand(B, H, T, c.rope)], -1)
        scores = q @ k.transpose(-1, -2)                                          # [B, H, T, T]
        I = self.indexer(pre + "indexer.", a, cq, cos, sin) if own_indexer else None
        allowed = causal
        if mode == "sparse" and c.dsa:
            if own_indexer:
                k = min(c.index_topk, T)
                # stable descending sort: ties (e.g. all heads' ReLU = 0) to the lower position
                top = torch.sort(I.detach().masked_fill(~causal, float("-inf")), dim=-1,
                                 descending=True, stable=True).indices[..., :k]
                sel = torch.zeros(B, T, T, dtype=torch.bool).scatter_(-1, top, True)
                allowed = sel & causal
            else:
                allowed = prev_sel
        mask = allowed if allowed.dim() == 3 else allowed.expand(B, T, T)
        # an additive -inf bias [B, 1, T, T]: one pass over the scores instead of two
        bias = torch.zeros(mask.shape, dtype=scores.dtype).masked_fill_(~mask, float("-inf"))
        probs = torch.softmax(scores + bias[:, None], -1)
        o = (probs @ kvx[..., c.nope:]).transpose(1, 2).reshape(B, T, H * c.v)
        if own_indexer:
            pt = probs.detach().mean(1).masked_fill(~mask, 0.0)
            pt = pt / pt.sum(-1, keepdim=True)
            logq = torch.log_softmax(I.masked_fill(~mask, float("-inf")), -1)
            ok = mask & (pt > 0)
            kl = torch.where(ok, pt * (torch.log(torch.where(ok, pt, torch.ones_like(pt))) -
                                        torch.where(ok, logq, torch.zeros_like(logq))), 0.0)
            st["kl"] = st["kl"] + kl.sum()
            st["n_kl"] += B * T
        return o @ p[pre + "o_proj.weight"].T, mask

    def moe(self, l, pre, f, st):
        """Routed experts grouped by expert (argsort + index_select/index_add) + shared."""
        c, p = self.c, self.p
        B, T, D = f.shape
        x = f.reshape(B * T, D)
        E, K, G = c.experts[l], c.top_k, c.n_group
        s = torch.sigmoid(x @ p[pre + "gate.weight"].T)
        with torch.no_grad():
            sel = s + p[pre + "gate.e_score_correction_bias"]
            if G > 1:
                gs = sel.view(-1, G, E // G).topk(2, -1).values.sum(-1)
                gkeep = torch.zeros_like(gs, dtype=torch.bool).scatter_(
                    -1, gs.topk(c.topk_group, -1).indices, True)
                sel = sel.masked_fill(~gkeep.repeat_interleave(E // G, -1), float("-inf"))
            idx = sel.topk(K, -1).indices                                       # [N, K]
        w = s.gather(1, idx)
        w = w / (w.sum(-1, keepdim=True) + 1e-20) * c.scaling
        flat = idx.reshape(-1)
        order = torch.argsort(flat)
        counts = torch.bincount(flat, minlength=E)
        rows = order // K
        # one gather of the (token, slot) rows sorted by expert, split per expert (its
        # backward is one cat), one scatter-add back: no [N, D] temporaries per expert
        xs = x.index_select(0, rows).split(counts.tolist())
        ys = []
        for e, xe in enumerate(xs):
            if xe.shape[0]:
                ep = f"{pre}experts.{e}."
                ys.append(swiglu(xe, p[ep + "gate_proj.weight"], p[ep + "up_proj.weight"],
                                 p[ep + "down_proj.weight"]))
        y = torch.cat(ys) * w.reshape(-1)[order][:, None]
        out = torch.zeros_like(x).index_add_(0, rows, y)
        if c.n_shared:
            sp = pre + "shared_experts."
            out = out + swiglu(x, p[sp + "gate_proj.weight"], p[sp + "up_proj.weight"],
                               p[sp + "down_proj.weight"])
        per_seq = torch.zeros(B, E, dtype=s.dtype).scatter_add_(
            1, idx.view(B, T * K), torch.ones(B, T * K, dtype=s.dtype))
        P = (s / s.sum(-1, keepdim=True)).view(B, T, E).mean(1)
        st["bal"] = st["bal"] + (per_seq * (E / (K * T)) * P).sum(-1).mean()
        st["load"][l] = counts
        return out.view(B, T, D)

    def layer(self, l, x, cos, sin, causal, mode, prev_sel, st):
        c, p = self.c, self.p
        pre = f"model.layers.{l}."
        own = c.dsa and mode != "dense" and (l == c.L or c.indexer_types[l] == "full")
        a = rms(x, p[pre + "input_layernorm.weight"], c.eps)
        att, sel = self.attention(pre + "self_attn.", a, cos, sin, causal, mode, prev_sel, own, st)
        x = x + att
        f = rms(x, p[pre + "post_attention_layernorm.weight"], c.eps)
        if l == c.L or c.mlp_types[l] == "sparse":
            return x + self.moe(l, pre + "mlp.", f, st), sel
        m = pre + "mlp."
        return x + swiglu(f, p[m + "gate_proj.weight"], p[m + "up_proj.weight"],
                          p[m + "down_proj.weight"]), sel

    def loss(self, ids, mode, tr):
        """ids int64 [B, T+1] -> (L, components dict, loads)."""
        c, p = self.c, self.p
        T = ids.shape[1] - 1
        head = p["model.embed_tokens.weight"] if c.tie else p["lm_head.weight"]
        st = {"kl": 0.0, "n_kl": 0, "bal": 0.0, "load": {}}
        cos, sin = self.rope_tables(T)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        x = p["model.embed_tokens.weight"][ids[:, :T]]
        sel = causal
        for l in range(c.L):
            x, sel = self.layer(l, x, cos, sin, causal, mode, sel, st)
        h = rms(x, p["model.norm.weight"], c.eps)
        main = F.cross_entropy((h @ head.T).view(-1, c.vocab), ids[:, 1:].reshape(-1))
        mtp = torch.zeros((), dtype=self.dtype)
        if c.n_mtp:
            L = c.L
            pre = f"model.layers.{L}."
            e = rms(p["model.embed_tokens.weight"][ids[:, 1:T]], p[pre + "enorm.weight"], c.eps)
            u = torch.cat([e, rms(h[:, :T - 1], p[pre + "hnorm.weight"], c.eps)], -1)
            u = u @ p[pre + "eh_proj.weight"].T
            u, _ = self.layer(L, u, cos[:T - 1], sin[:T - 1], causal[:T - 1, :T - 1], mode,
                              None, st)
            lg = rms(u, p[pre + "shared_head.norm.weight"], c.eps) @ head.T
            mtp = F.cross_entropy(lg.view(-1, c.vocab), ids[:, 2:].reshape(-1))
        idx = tr["idx_weight"] * st["kl"] / st["n_kl"] if st["n_kl"] else torch.zeros(())
        total = main + tr["mtp_weight"] * mtp + tr["balance_alpha"] * st["bal"] + idx
        comps = {"loss": total, "main": main, "mtp": mtp, "balance": st["bal"], "indexer": idx}
        return total, {k: float(v) for k, v in comps.items()}, st["load"]


# ================================================================ training loop

def lr_at(tr, step):
    if step < tr["warmup"]:
        return tr["lr"] * (step + 1) / tr["warmup"]
    lo = tr["lr"] * tr["min_lr_ratio"]
    prog = min(1.0, (step - tr["warmup"]) / max(1, tr["steps"] - tr["warmup"]))
    return lo + 0.5 * (tr["lr"] - lo) * (1 + math.cos(math.pi * prog))


class Trainer:
    def __init__(self, model, tr, mode):
        self.m, self.tr, self.mode = model, tr, mode
        names = [n for n in model.p if self.trainable(n)]
        groups = [{"params": [model.p[n] for n in names if model.p[n].dim() >= 2],
                   "weight_decay": tr["weight_decay"]},
                  {"params": [model.p[n] for n in names if model.p[n].dim() < 2],
                   "weight_decay": 0.0}]
        self.params = [model.p[n] for n in names]
        self.opt = torch.optim.AdamW(groups, lr=tr["lr"], betas=(tr["beta1"], tr["beta2"]),
                                     eps=tr["eps"], foreach=True)
        for n, t in model.p.items():
            t.requires_grad_(n in set(names))

    def trainable(self, n):
        if n.endswith("e_score_correction_bias"):
            return False
        idx = ".self_attn.indexer." in n
        return {"dense": not idx, "indexer-warmup": idx, "sparse": True}[self.mode]

    def step(self, s, ids):
        total, comps, loads = self.m.loss(ids, self.mode, self.tr)
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        if self.tr["clip"] > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.tr["clip"])
        for g in self.opt.param_groups:
            g["lr"] = lr_at(self.tr, s)
        self.opt.step()
        if self.mode != "indexer-warmup":
            with torch.no_grad():
                for l, load in loads.items():
                    b = self.m.p[f"model.layers.{l}.mlp.gate.e_score_correction_bias"]
                    load = load.to(b.dtype)
                    b.add_(self.tr["bias_update_rate"] * torch.sign(load.mean() - load))
        return comps


def bench(args):
    with open(args.config) as f:
        doc = json.load(f)
    tr = dict(doc["train"])
    tr.setdefault("steps", sum(int(s["steps"]) for s in tr["stages"]))
    B = args.batch or int(tr["batch_seqs"])
    T = args.seq_len or int(tr["seq_len"])
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Model(doc["model"], seed=1)
    mode = args.mode or tr["stages"][0]["mode"]
    trainer = Trainer(model, tr, mode)
    rng = np.random.default_rng(0)
    vocab = model.c.vocab
    times, comps = [], None
    load0 = os.getloadavg()[0]
    for s in range(args.warmup + args.steps):
        ids = torch.from_numpy(rng.integers(0, vocab, (B, T + 1)))
        t0 = time.perf_counter()
        comps = trainer.step(s, ids)
        dt = time.perf_counter() - t0
        if s >= args.warmup:
            times.append(dt)
    med = statistics.median(times)
    n_par = sum(t.numel() for t in model.p.values())
    res = {"engine": f"pytorch {torch.__version__} cpu float32", "config": args.config,
           "mode": mode, "threads": args.threads, "batch": B, "seq_len": T,
           "params": n_par, "steps_timed": len(times), "step_s_median": med,
           "step_s_min": min(times), "step_s_max": max(times),
           "tokens_per_s": B * T / med, "tokens_per_s_best": B * T / min(times),
           "last_loss": comps["loss"],
           "env": {k: os.environ.get(k) for k in TUNED_ENV},
           "loadavg_1min_start_end": [load0, os.getloadavg()[0]]}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"bench_train_torch: {res['engine']}, {args.config} ({n_par / 1e6:.2f} M params), "
              f"mode {mode}, B={B} T={T}, {args.threads} threads: {res['tokens_per_s']:.1f} tok/s "
              f"(step median {med:.3f} s, min {min(times):.3f}, max {max(times):.3f}; "
              f"{len(times)} timed after {args.warmup} warm-up; loss {comps['loss']:.4f}; "
              f"load average {load0:.2f} -> {os.getloadavg()[0]:.2f})")


def verify():
    """This model == the oracle's (float64, train_tiny.json, shared init and batch): the loss
    components and every gradient the oracle trains in each mode."""
    import train_model as TM
    import train_ref as TR
    cfg = os.path.join(ROOT, "tests", "reference", "configs", "train_tiny.json")
    model_cfg, tr = TM.load_train_config(cfg)
    init = TR.init_params(TM.parse_config(model_cfg), 3)
    rng = np.random.default_rng(3)
    ids = rng.integers(0, model_cfg["vocab_size"], (tr["batch_seqs"], tr["seq_len"] + 1))
    worst = 0.0
    for mode in TM.MODES:
        ours = Model(model_cfg, torch.float64, init=init)
        total, a, _ = ours.loss(torch.from_numpy(ids), mode, tr)
        total.backward()
        oracle = TR.Oracle(model_cfg, tr, init)
        b, grads, _ = oracle.loss_and_grads(ids, mode)
        d = max(abs(a[k] - b[k]) for k in a)
        dg = max(float(np.abs(ours.p[n].grad.numpy() - g).max()) /
                 max(float(np.abs(g).max()), 1e-30)
                 if ours.p[n].grad is not None else float(np.abs(g).max() > 0)
                 for n, g in grads.items())
        worst = max(worst, d, dg)
        print(f"  {mode}: " + ", ".join(f"{k} {a[k]:.9g} (oracle {b[k]:.9g})" for k in a) +
              f"; {len(grads)} gradients, max rel d {dg:.2g}")
    ok = worst <= 1e-9
    print(f"bench_train_torch --verify: {'ok' if ok else 'FAIL'} (max|d| {worst:.2g}; "
          f"tolerance 1e-9)")
    return 0 if ok else 1


# Runtime settings a careful PyTorch-CPU user makes, applied by re-executing this script
# (both are read at process start):
# - glibc returns every freed block above the mmap threshold to the kernel, so each step's
#   large temporaries come back as fresh pages (a page fault per 4 KiB, costly under KVM);
#   keeping them in the heap (what jemalloc/tcmalloc preloads do; neither is installed)
#   gave ~5% per step.
# - torch's OpenMP threads spin while OpenBLAS's own pthreads run the matmuls; on 2 cores
#   the spinning starves them: 2 threads took 6.6 s/step against 3.1 s with 1 thread.
#   OMP_WAIT_POLICY=PASSIVE: 2.8 s/step (configs/reference.json, B=8, T=512).
TUNED_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "4294967296",
             "MALLOC_TOP_PAD_": "536870912", "OMP_WAIT_POLICY": "PASSIVE"}


def main():
    if "--no-env-tuning" not in sys.argv and any(k not in os.environ for k in TUNED_ENV):
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, **TUNED_ENV))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "reference.json"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", choices=("dense", "indexer-warmup", "sparse"))
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--seq-len", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--verify", action="store_true")
    ap.add_argument("--no-env-tuning", action="store_true",
                    help="run without TUNED_ENV (malloc thresholds, OMP_WAIT_POLICY)")
    args = ap.parse_args()
    if args.verify:
        return verify()
    bench(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
