"""Optimizer side of /work/notes/train_contract.md: lr schedule, global-norm clipping,
AdamW (torch.optim.AdamW semantics, written out so that frozen parameters and the
per-parameter step count are explicit), and the sign update of e_score_correction_bias.

What it is for: train_ref.py's `steps` check replays the C trainer's optimizer steps in
float64 from the dumped initial weights; train_selfcheck.py holds this module against
torch.optim.AdamW and torch.nn.utils.clip_grad_norm_.
"""
import math

import numpy as np
import torch

import train_model as TM

CLIP_EPS = 1e-6        # contract: g *= clip / (norm + 1e-6)


def lr_at(train, step):
    """lr of 0-based step: linear warmup lr_max*(step+1)/warmup for step < warmup, then
    cosine from lr_max to lr_max*min_lr_ratio, progress = (step-warmup)/max(1, steps-warmup).
    `steps` is the config's train.steps (the schedule's horizon, Decisions)."""
    lr_max, warm, steps = float(train["lr"]), int(train["warmup"]), int(train["steps"])
    if step < warm:
        num = step if "warmup_off_by_one" in TM.MUT else step + 1
        return lr_max * num / warm
    lr_min = lr_max * float(train["min_lr_ratio"])
    progress = min(1.0, (step - warm) / max(1, steps - warm))
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * progress))


def global_norm(grads):
    """L2 norm over every tensor of a name -> tensor dict."""
    return math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads.values()))


def clip_grads(grads, clip):
    """In place: if the global norm exceeds clip (> 0), scale every gradient by
    clip / (norm + 1e-6). Returns the norm before clipping."""
    norm = global_norm(grads)
    if clip > 0 and norm > clip and "no_clip" not in TM.MUT:
        for g in grads.values():
            g.mul_(clip / (norm + CLIP_EPS))
    return norm


class AdamW:
    """Per-parameter state {m, v, t}; t counts the updates of that parameter only, so a
    parameter frozen during a stage keeps its state unchanged (train_contract.md)."""

    def __init__(self, train):
        self.b1, self.b2 = float(train["beta1"]), float(train["beta2"])
        self.eps, self.wd = float(train["eps"]), float(train["weight_decay"])
        self.state = {}

    def update(self, name, p, g, lr):
        """One AdamW update of tensor p (in place) with gradient g at learning rate lr:
        decoupled decay p *= 1 - lr*wd (tensors with >= 2 dims only), then Adam with bias
        correction and eps added to sqrt(v_hat)."""
        st = self.state.setdefault(name, {"m": torch.zeros_like(p), "v": torch.zeros_like(p),
                                          "t": 0})
        st["t"] += 1
        wd = self.wd if (p.dim() >= 2 or "wd_1d" in TM.MUT) else 0.0
        p.mul_(1.0 - lr * wd)
        st["m"].mul_(self.b1).add_(g, alpha=1.0 - self.b1)
        st["v"].mul_(self.b2).addcmul_(g, g, value=1.0 - self.b2)
        if "no_bias_correction" in TM.MUT:
            bc1 = bc2 = 1.0
        else:
            bc1, bc2 = 1.0 - self.b1 ** st["t"], 1.0 - self.b2 ** st["t"]
        p.sub_(lr * (st["m"] / bc1) / ((st["v"] / bc2).sqrt() + self.eps))


def bias_update(model, loads, rate):
    """After the optimizer step, per MoE layer: b[e] += rate * sign(mean_e(load) - load[e])
    (sign(0) = 0), load = (token, slot) assignments of the step's batch."""
    sign = -1.0 if "bias_sign" in TM.MUT else 1.0
    for l, p in model.moe_layers():
        if not p["has_bias"] or l not in loads:
            continue
        load = np.asarray(loads[l], dtype=np.float64)
        delta = sign * rate * np.sign(load.mean() - load)
        with torch.no_grad():
            p["bias"].add_(torch.from_numpy(delta).to(p["bias"].dtype))


def optimizer_step(model, leaves, opt, train, mode, step, loads):
    """Apply step `step` after backward: clip the trainable gradients, AdamW on each
    trainable tensor, then the bias update (not in indexer-warmup, where the rest of the
    model is frozen; Decisions). Returns (lr, gradient norm before clipping)."""
    lr = lr_at(train, step)
    grads = {n: (t.grad if t.grad is not None else torch.zeros_like(t))
             for n, t in leaves.items() if TM.trainable(n, mode)}
    norm = clip_grads(grads, float(train["clip"]))
    with torch.no_grad():
        for n, g in grads.items():
            opt.update(n, leaves[n], g, lr)
    if mode != "indexer-warmup":
        bias_update(model, loads, float(train["bias_update_rate"]))
    return lr, norm
