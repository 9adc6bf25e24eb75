"""Checks of the training oracle itself (train_ref.py selftest); no C code needed.

What it is for: train_ref.py is the judge of the C trainer, so it is checked by other means:
  unit checks     lr schedule values; train_optim.AdamW == torch.optim.AdamW and clip ==
                  torch.nn.utils.clip_grad_norm_; the bias sign update; the indexer KL and
                  the balance loss on hand-computed cases.
  finite diffs    the autograd gradient of every mode equals central differences of the
                  loss the contract defines (L - L_idx for non-indexer tensors, L_idx for
                  indexer tensors: the detaching rules), for representative tensors of
                  every kind, skipping perturbations that flip a discrete selection.
  float32 noise   a dump written by this oracle in float32 (imitating the C trainer's
                  rounding) passes the float64 grads + steps checks in every mode; the
                  margin to the tolerances is printed.
  sensitivity     dumps from deliberately wrong oracles (train_model.MUT: a detached
                  gate, the balance loss on biased scores, ...), from wrong hyperparameters,
                  and a dump whose gradient file was tampered with must all FAIL.
Exit status 0 only if every check passes.
"""
import contextlib
import copy
import io
import json
import math
import os
import shutil
import tempfile

import numpy as np
import torch

import ref_model as R
import train_model as TM
import train_optim as TO
import train_ref as TR

CFG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "train_tiny.json")
EXACT = 1e-12          # float64 paths that differ only in operation order
FD_H = 1e-6            # central-difference step on weights of size ~0.02
FD_TOL = 1e-5          # |fd - autograd| <= FD_TOL * max(|g|, 1e-2 * max|g| of the tensor)
FD_ABS = 1e-8          #   + FD_ABS (float64 rounding of L ~ 8 over 2h: ~4e-10)
NOISE_STEPS = 4
MUT_STEPS = 3
FAILS = []

# Representative tensors for the finite differences (every kind of op and parameter).
FD_TENSORS = (
    "model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
    "model.layers.0.mlp.down_proj.weight", "model.layers.0.self_attn.q_a_layernorm.weight",
    "model.layers.0.self_attn.kv_a_proj_with_mqa.weight",
    "model.layers.1.self_attn.kv_b_proj.weight", "model.layers.1.mlp.gate.weight",
    "model.layers.2.self_attn.q_b_proj.weight", "model.layers.2.mlp.shared_experts.up_proj.weight",
    "model.layers.3.self_attn.o_proj.weight", "model.layers.3.mlp.gate.weight",
    "model.layers.3.self_attn.kv_a_layernorm.weight", "model.layers.4.mlp.gate.weight",
    "model.layers.4.eh_proj.weight", "model.layers.4.enorm.weight", "model.layers.4.hnorm.weight",
    "model.layers.4.shared_head.norm.weight", "model.layers.4.input_layernorm.weight",
    "model.layers.0.self_attn.indexer.wq_b.weight", "model.layers.0.self_attn.indexer.wk.weight",
    "model.layers.2.self_attn.indexer.k_norm.weight",
    "model.layers.2.self_attn.indexer.k_norm.bias",
    "model.layers.0.self_attn.indexer.weights_proj.weight",
    "model.layers.4.self_attn.indexer.weights_proj.weight",
    "model.layers.4.self_attn.indexer.wk.weight",
)

# Wrong oracles and wrong hyperparameters: (name, mode, MUT flags, train overrides).
MUTATIONS = (
    ("gates carry no gradient", "dense", {"gate_detach"}, {}),
    ("gate normalization constant", "dense", {"gate_norm_const"}, {}),
    ("balance loss on biased scores", "dense", {"bal_biased"}, {}),
    ("MTP input h detached", "dense", {"mtp_detach_h"}, {}),
    ("indexer inputs not detached", "sparse", {"idx_no_detach"}, {}),
    ("MTP layer dense in sparse mode", "sparse", {"sparse_mtp_dense"}, {}),
    ("warm-up does not freeze the model", "indexer-warmup", {"warmup_not_frozen"}, {}),
    ("indexer KL reversed, KL(q || p)", "indexer-warmup", {"kl_reverse"}, {}),
    ("balance P on unnormalized scores", "dense", {"bal_unnormalized"}, {}),
    ("no gradient clipping", "dense", {"no_clip"}, {}),
    ("weight decay on 1-D tensors", "dense", {"wd_1d"}, {}),
    ("warm-up lr off by one", "dense", {"warmup_off_by_one"}, {}),
    ("no Adam bias correction", "dense", {"no_bias_correction"}, {}),
    ("bias update sign flipped", "dense", {"bias_sign"}, {}),
    ("mtp_weight 0.3 -> 0.31", "dense", set(), {"mtp_weight": 0.31}),
    ("balance_alpha 0.01 -> 0.0105", "dense", set(), {"balance_alpha": 0.0105}),
    ("idx_weight 1 -> 1.05", "sparse", set(), {"idx_weight": 1.05}),
    ("beta2 0.95 -> 0.96", "dense", set(), {"beta2": 0.96}),
    ("weight_decay 0.1 -> 0.2", "dense", set(), {"weight_decay": 0.2}),
)
QUICK_MUTATIONS = ("gates carry no gradient", "indexer inputs not detached",
                   "warm-up does not freeze the model", "bias update sign flipped",
                   "balance_alpha 0.01 -> 0.0105")


def check(name, ok, detail=""):
    print(f"  [{'ok' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}")
    if not ok:
        FAILS.append(name)


# =============================================================== unit checks

def check_schedule():
    print("lr schedule:")
    tr = {"lr": 1.0, "warmup": 2, "steps": 6, "min_lr_ratio": 0.1}
    want = [0.5, 1.0, 1.0, 0.1 + 0.45 * (1 + math.cos(math.pi / 4)), 0.55,
            0.1 + 0.45 * (1 + math.cos(3 * math.pi / 4)), 0.1, 0.1]
    got = [TO.lr_at(tr, s) for s in range(8)]
    check("warmup (step+1)/warmup, cosine to lr*min_lr_ratio, flat after the horizon",
          np.allclose(got, want, rtol=0, atol=EXACT), str(np.round(got, 6).tolist()))


def check_adamw_and_clip():
    print("optimizer vs torch:")
    rng = np.random.default_rng(5)
    tr = {"beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1}
    ours = {"w": torch.tensor(rng.standard_normal((3, 4))),
            "b": torch.tensor(rng.standard_normal(4))}
    theirs = {k: v.clone().requires_grad_(True) for k, v in ours.items()}
    topt = torch.optim.AdamW([{"params": [theirs["w"]], "weight_decay": 0.1},
                              {"params": [theirs["b"]], "weight_decay": 0.0}],
                             lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    opt = TO.AdamW(tr)
    for step in range(3):
        grads = {k: torch.tensor(rng.standard_normal(v.shape)) * 3 for k, v in ours.items()}
        for k in ours:
            theirs[k].grad = grads[k].clone()
        lr = 1e-2 * (step + 1) / 3
        for grp in topt.param_groups:
            grp["lr"] = lr
        topt.step()
        for k in ours:
            opt.update(k, ours[k], grads[k], lr)
    d = max(float((ours[k] - theirs[k].detach()).abs().max()) for k in ours)
    check("AdamW (decoupled decay on >= 2-D only) == torch.optim.AdamW, 3 steps", d <= EXACT,
          f"max|d| {d:.2g}")
    g = {"a": torch.tensor(rng.standard_normal((5, 5))), "b": torch.tensor(rng.standard_normal(3))}
    tg = [v.clone().requires_grad_(True) for v in g.values()]
    for t, v in zip(tg, g.values()):
        t.grad = v.clone()
    tn = float(torch.nn.utils.clip_grad_norm_(tg, 1.0))
    norm = TO.clip_grads(g, 1.0)
    d = max(float((a - t.grad).abs().max()) for a, t in zip(g.values(), tg))
    check("clip == torch.nn.utils.clip_grad_norm_", abs(norm - tn) <= EXACT and d <= EXACT,
          f"norm {norm:.6g}, max|d| {d:.2g}")


class _FakeModel:
    def __init__(self, bias):
        self.p = {"has_bias": True, "bias": bias}

    def moe_layers(self):
        return [(1, self.p)]


def check_hand_cases():
    print("hand-computed cases:")
    fake = _FakeModel(torch.zeros(4, dtype=torch.float64))
    TO.bias_update(fake, {1: np.array([3, 1, 2, 2])}, 0.25)
    check("bias += rate * sign(mean - load), sign(0) = 0",
          fake.p["bias"].tolist() == [-0.25, 0.25, 0.0, 0.0], str(fake.p["bias"].tolist()))
    probs = torch.tensor([[[0.5, 0.5, 0.0]]], dtype=torch.float64)
    scores = torch.tensor([[0.0, math.log(3.0), 5.0]], dtype=torch.float64)
    allowed = np.array([[True, True, False]])
    kl = float(TM.indexer_kl(scores, probs, allowed)[0])
    check("indexer KL(p || softmax over the allowed set)", abs(kl - 0.5 * math.log(4 / 3)) <= EXACT,
          f"{kl:.12g} vs {0.5 * math.log(4 / 3):.12g}")
    cfg = TM.parse_config(TM.load_train_config(CFG)[0])
    E, K, n = cfg.experts[1], cfg.top_k, 8
    acc = TM.Acc()
    # a router whose scores are equal for every expert: P = 1/E; counts from the selection
    p = {"router": torch.zeros(E, cfg.D, dtype=torch.float64),
         "bias": torch.zeros(E, dtype=torch.float64), "experts": None, "shared": None}
    p["experts"] = [(torch.zeros(1, cfg.D, dtype=torch.float64),) * 2 +
                    (torch.zeros(cfg.D, 1, dtype=torch.float64),)] * E
    TM.moe_train(cfg, 1, p, torch.ones(n, cfg.D, dtype=torch.float64), acc)
    check("balance term = 1 for uniform scores (sum_e f_e = E)", abs(float(acc.bal) - 1.0) <= EXACT,
          f"{float(acc.bal):.12g}, loads {acc.load[1].tolist()}")
    check("ties in the router go to the lower expert index",
          acc.load[1].tolist() == [n] * K + [0] * (E - K))


# =============================================================== finite differences

def setup(seed=3):
    model_cfg, train = TM.load_train_config(CFG)
    c = TM.parse_config(model_cfg)
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, c.vocab, (int(train["batch_seqs"]), int(train["seq_len"]) + 1))
    return model_cfg, train, TR.init_params(c, seed), batch


def fd_value(oracle, batch, mode, name):
    """The loss whose derivative autograd gives for `name` (detaching rules), and the
    selection fingerprint."""
    with torch.no_grad():
        _, comps, acc = TM.step_loss(oracle.model, batch, mode, oracle.train)
    val = comps["indexer"] if TM.is_indexer(name) else comps["loss"] - comps["indexer"]
    return val, acc.sel


def check_fd(mode, per_tensor):
    print(f"finite differences ({mode}):")
    model_cfg, train, init, batch = setup()
    oracle = TR.Oracle(model_cfg, train, init)
    _, grads, _ = oracle.loss_and_grads(batch, mode)
    _, base_sel = fd_value(oracle, batch, mode, "")
    rng = np.random.default_rng(11)
    worst, n_done, n_flip = 0.0, 0, 0
    for name in FD_TENSORS:
        if name not in grads:
            continue
        g = grads[name]
        picks = [np.unravel_index(int(np.argmax(np.abs(g))), g.shape)]
        picks += [tuple(int(rng.integers(0, s)) for s in g.shape) for _ in range(per_tensor - 1)]
        leaf = oracle.leaves[name]
        for idx in picks:
            with torch.no_grad():
                orig = float(leaf[idx])
                leaf[idx] = orig + FD_H
                fp, sp = fd_value(oracle, batch, mode, name)
                leaf[idx] = orig - FD_H
                fm, sm = fd_value(oracle, batch, mode, name)
                leaf[idx] = orig
            if sp != base_sel or sm != base_sel:
                n_flip += 1
                continue
            fd = (fp - fm) / (2 * FD_H)
            scale = max(abs(g[idx]), 1e-2 * float(np.abs(g).max()))
            err = abs(fd - g[idx]) / (FD_TOL * scale + FD_ABS)
            worst, n_done = max(worst, err), n_done + 1
            if err > 1:
                check(f"{name}{list(idx)}", False, f"fd {fd:.9g} vs autograd {g[idx]:.9g}")
    check(f"{n_done} elements of {len(FD_TENSORS)} tensor kinds (trainable ones), "
          f"{n_flip} skipped (selection flip)", n_done > 0 and worst <= 1,
          f"worst |fd - g| / (tol {FD_TOL:g}*scale + {FD_ABS:g}) = {worst:.3g}")


# =============================================================== dumps

def quiet_check(dump, cfg, mode, n):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        fails = TR.run_check(dump, cfg, mode, n, True, True, None, False)
    return fails, buf.getvalue()


def write_cfg(tmp, overrides):
    with open(CFG) as f:
        doc = json.load(f)
    doc["train"].update(overrides)
    path = os.path.join(tmp, f"cfg_{len(os.listdir(tmp))}.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def dump_of(tmp, tag, mode, n, muts=(), overrides=None):
    d = os.path.join(tmp, tag)
    cfg = write_cfg(tmp, overrides or {})
    TM.MUT.clear()
    TM.MUT.update(muts)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            TR.selfdump(d, cfg, mode, n, 7, True, None)
    finally:
        TM.MUT.clear()
    return d


def worst_of(text, header):
    """Largest error printed in the table that follows `header` in run_check's output."""
    vals, inside = [], False
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            inside = line.strip().startswith(header)
        elif inside and line.startswith("    "):
            vals.append(float(line.split()[0]))
    return max(vals) if vals else 0.0


def check_noise(tmp):
    print("float32 dumps of this oracle pass (the C trainer's rounding, imitated):")
    dumps = {}
    for mode in TM.MODES:
        d = dump_of(tmp, f"clean_{mode}", mode, NOISE_STEPS)
        fails, text = quiet_check(d, CFG, mode, NOISE_STEPS)
        dumps[mode] = d
        check(f"{mode}: grads + {NOISE_STEPS} steps + final weights", not fails,
              f"worst gradient rel err {worst_of(text, 'gradients:'):.2g} "
              f"(tol {TR.GRAD_TOL:g}), final weights {worst_of(text, 'final weights:'):.2g} "
              f"(tol {TR.FINAL_TOL:g})" + (f"; {fails[0]}" if fails else ""))
    d = dump_of(tmp, "clean_staged", None, 6)
    fails, _ = quiet_check(d, CFG, None, 6)
    check("staged run (dense 2, indexer-warmup 2, sparse 2): 6 steps", not fails,
          fails[0] if fails else "")
    return dumps


def check_tampered(tmp, clean):
    print("tampered dumps fail:")
    src = clean["sparse"]
    path = os.path.join(src, "grads0.safetensors")
    g = TR.read_st(path)
    for what in ("one element off by 5x tol", "a tensor missing", "a frozen tensor nonzero"):
        d = os.path.join(tmp, "tamper")
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(src, d)
        h = copy.deepcopy(g)
        name = "model.layers.2.mlp.gate.weight"
        if what.startswith("one"):
            i = np.unravel_index(int(np.argmax(np.abs(h[name]))), h[name].shape)
            h[name][i] *= 1 + 5 * TR.GRAD_TOL
        elif what.startswith("a tensor"):
            del h[name]
        else:
            bn = "model.layers.2.mlp.gate.e_score_correction_bias"
            h[bn] = np.full(TR.read_st(os.path.join(src, "init.safetensors"))[bn].shape, 1e-3)
        TR.st_io.write_file(os.path.join(d, "grads0.safetensors"),
                            {n: TR.st_io.make_tensor("F32", a.astype(np.float32))
                             for n, a in h.items()})
        fails, _ = quiet_check(d, CFG, "sparse", 1)
        check(f"grads0 with {what}", bool(fails), fails[0] if fails else "passed")


def check_mutations(tmp, names):
    print("wrong oracles / hyperparameters are detected:")
    for name, mode, muts, over in MUTATIONS:
        if names is not None and name not in names:
            continue
        d = dump_of(tmp, "mut", mode, MUT_STEPS, muts, over)
        fails, _ = quiet_check(d, CFG, mode, MUT_STEPS)
        check(f"{name} ({mode})", bool(fails), f"{len(fails)} failures, e.g. {fails[0]}"
              if fails else "NOT detected")
        shutil.rmtree(d)


def main(quick=False):
    torch.set_num_threads(1)
    R.MARGINS.clear()
    check_schedule()
    check_adamw_and_clip()
    check_hand_cases()
    for mode in (("sparse",) if quick else TM.MODES):
        check_fd(mode, 1 if quick else 3)
    tmp = tempfile.mkdtemp(prefix="train_selfcheck_")
    try:
        clean = check_noise(tmp)
        check_tampered(tmp, clean)
        check_mutations(tmp, QUICK_MUTATIONS if quick else None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"train_selfcheck: {'FAIL: ' + ', '.join(FAILS) if FAILS else 'all checks passed'}")
    return 1 if FAILS else 0
