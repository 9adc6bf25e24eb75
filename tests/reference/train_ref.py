#!/usr/bin/python3
"""Float64 PyTorch oracle of the C trainer: gradients and AdamW steps against its dump.

What it is for: the acceptance checks of issue 3 ("whole tiny model loss and all parameter
gradients against PyTorch autograd; a few AdamW steps match PyTorch's losses"). The C
trainer writes a dump (`demolish train ... --dump DIR`, format in
/work/notes/train_contract.md): init.safetensors, grads0.safetensors, step{s}_batch.npy,
losses.json. This program recomputes them from init.safetensors and the dumped batches with
train_model.py (losses, autograd) and train_optim.py (clip, AdamW, bias update), and
compares against the named tolerances below.

  train_ref.py grads DUMP [--mode M] [--config CFG]          step-0 loss components + grads0
  train_ref.py steps DUMP [--mode M] [--n N] [--config CFG]  every step's loss and lr
  train_ref.py check DUMP [--mode M] [--n N] [--config CFG]  both, in one process
  train_ref.py selfdump OUT --config CFG [--mode M] [--steps N] [--seed S] [--float32]
                                         [--data-raw FILE]   write a dump from this oracle
  train_ref.py selftest [--quick]                             train_selfcheck.py
--mode (dense | indexer-warmup | sparse) forces one mode for every step; without it each
step's mode comes from the config's stages. --config defaults to DUMP/train_config.json.
--data-raw FILE (uint32 LE token ids) also checks that every dumped window is a slice of it.
Exit status: 0 pass, 1 a comparison failed, 2 unusable input.

Tolerances: the C trainer computes in float32, this oracle in float64 from the same float32
weights, so the differences are float32 rounding of its forward and backward (relative
~6e-8 per op, growing through the layers and the reductions over tokens, vocab and
experts). They were measured by running this oracle itself in float32 (`selfdump
--float32`; train_selfcheck.py prints them on every run) on configs/train_tiny.json, and
each bound is set ~15-100x above that noise and below the effect of the smallest
deliberate error train_selfcheck.py injects:
  gradients  worst per-tensor error 1.1e-6 (dense) .. 1.4e-5 (sparse: the indexer's KL
             gradient is a difference of two near-equal distributions) -> GRAD_TOL 2e-4;
             smallest deliberate error seen: 9e-3 (balance loss on biased scores).
  losses     |d| <= 9e-7 at every step (about 1.5e-7 relative; L_idx ~1e-4 has absolute
             error ~3e-8) -> LOSS_REL 5e-6 + LOSS_ABS 1e-6; deliberate errors >= 1.7e-4.
  final      weights after the last step: 1.2e-3 of the largest update -> FINAL_TOL 5e-2;
             deliberate errors (decay, clipping, bias correction, bias update) >= 0.13.
A discrete decision (router top-k, group top-k, indexer top-k) decided differently by the
float32 code flips a whole term; the report's "decisions" line gives the smallest margins,
which tells such a flip (a margin near 1e-7) from a semantic error.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_model as R  # noqa: E402
import st_io  # noqa: E402
import train_model as TM  # noqa: E402
import train_optim as TO  # noqa: E402

# Per tensor: max|g_dump - g_ref| / scale <= GRAD_TOL, scale = max(max|g_ref| of the tensor,
# GRAD_FLOOR * the largest max|g_ref| in its group). The floor keeps a tensor whose gradient
# is nearly zero (an unselected expert: exactly 0) from being judged against nothing. Groups:
# indexer tensors (gradient from L_idx only, ~1e-3 of the rest at init) and all others.
GRAD_TOL = 2e-4
GRAD_FLOOR = 1e-3
NORM_TOL = 1e-4           # relative, global gradient L2 norm (it decides clipping)
# Loss values: |d| <= LOSS_ABS + LOSS_REL * |ref|. Step 0 starts from identical weights;
# later steps add the float32 drift of the weights, which stays far below the forward's own
# rounding for a few steps (measured), hence one bound for every step.
LOSS_REL = 5e-6
LOSS_ABS = 1e-6
# final.safetensors (weights after the last step), per tensor: max|w_dump - w_ref| <=
# FINAL_TOL * max|w_ref - w_init| (the tensor's total update). Adam's first steps are
# ~lr*g/(|g|+eps): an element whose gradient is near eps turns float32 gradient noise into
# update noise (measured 1.2e-3 of the largest update; 5e-3 with an adversarial init).
# A tensor the oracle leaves unchanged (frozen) must come back unchanged (FINAL_FROZEN).
FINAL_TOL = 5e-2
FINAL_FROZEN = 1e-6
LR_REL = 1e-6             # lr is a float64 formula; float32 printing allows ~6e-8
INIT_STD = 0.02           # selfdump init of 2-D weights
MAX_FAIL_LINES = 25
COMPONENTS = ("loss", "main", "mtp", "balance", "indexer")


# =============================================================== dump I/O

def read_st(path):
    """name -> float64 numpy array of one safetensors file."""
    tensors, _ = st_io.read_file(path)
    return {n: st_io.to_float64(t) for n, t in tensors.items()}


def read_losses(dump):
    with open(os.path.join(dump, "losses.json")) as f:
        rows = json.load(f)
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{dump}/losses.json: expected a non-empty list")
    return {int(r["step"]): r for r in rows}


def read_batch(dump, step, train):
    path = os.path.join(dump, f"step{step}_batch.npy")
    b = np.load(path, allow_pickle=False)
    want = (int(train["batch_seqs"]), int(train["seq_len"]) + 1)
    if b.dtype != np.int32 or b.shape != want:
        raise ValueError(f"{path}: {b.dtype} {b.shape}, expected int32 {want}")
    return b.astype(np.int64)


def write_f32(path, arrays):
    st_io.write_file(path, {n: st_io.make_tensor("F32", np.asarray(a, dtype=np.float32))
                            for n, a in arrays.items()})


def write_dump(out, init, grads0, batches, losses, final, config_path):
    """The dump format of train_contract.md (with final.safetensors and train_config.json,
    a copy of the config)."""
    os.makedirs(out, exist_ok=True)
    write_f32(os.path.join(out, "init.safetensors"), init)
    write_f32(os.path.join(out, "grads0.safetensors"), grads0)
    write_f32(os.path.join(out, "final.safetensors"), final)
    for s, b in enumerate(batches):
        np.save(os.path.join(out, f"step{s}_batch.npy"), np.asarray(b, dtype=np.int32))
    with open(os.path.join(out, "losses.json"), "w") as f:
        json.dump(losses, f, indent=1)
    with open(config_path) as f, open(os.path.join(out, "train_config.json"), "w") as g:
        g.write(f.read())


def check_windows(batches, data_path):
    """Every window must be a contiguous slice of the token file. Returns error strings."""
    tok = np.fromfile(data_path, dtype="<u4").astype(np.int64)
    errs = []
    for s, b in enumerate(batches):
        for i, w in enumerate(b):
            starts = np.nonzero(tok[:len(tok) - len(w) + 1] == w[0])[0]
            if not any(np.array_equal(tok[p:p + len(w)], w) for p in starts):
                errs.append(f"step {s} window {i} is not a slice of {data_path}")
    return errs


# =============================================================== comparisons

def rel_close(got, ref, rel, abs_=0.0):
    return abs(got - ref) <= abs_ + rel * abs(ref)


def compare_losses(step, got, ref, lr_ref=None):
    """Compare one losses.json row with the oracle's components (and lr). Returns the list
    of failure strings; prints one line."""
    fails, parts = [], []
    for k in COMPONENTS:
        if k not in got:
            fails.append(f"step {step}: losses.json has no {k!r}")
            continue
        d = abs(float(got[k]) - ref[k])
        parts.append(f"{k} {float(got[k]):.7g} (ref {ref[k]:.7g}, d {d:.2g})")
        if not rel_close(float(got[k]), ref[k], LOSS_REL, LOSS_ABS):
            fails.append(f"step {step}: {k} {float(got[k]):.9g} vs ref {ref[k]:.9g} "
                         f"(|d| {d:.3g} > {LOSS_ABS:g} + {LOSS_REL:g}*|ref|)")
    if lr_ref is not None:
        lr = float(got.get("lr", float("nan")))
        parts.append(f"lr {lr:.6g}")
        if not rel_close(lr, lr_ref, LR_REL):
            fails.append(f"step {step}: lr {lr:.9g} vs ref {lr_ref:.9g}")
    print(f"  step {step}: " + ", ".join(parts))
    return fails


def compare_final(got, ref, init):
    """Weights after the last step (final.safetensors) against the oracle's: every tensor
    of init, within FINAL_TOL of its total update. Returns the list of failure strings."""
    fails, rows = [], []
    for n in sorted(init):
        if n not in got or got[n].shape != ref[n].shape:
            fails.append(f"final.safetensors: {n} missing or of shape "
                         f"{got[n].shape if n in got else None}")
            continue
        upd = float(np.abs(ref[n] - init[n]).max())
        d = float(np.abs(got[n] - ref[n]).max())
        if upd == 0:
            ok = d <= FINAL_FROZEN * max(float(np.abs(init[n]).max()), 1e-30)
            rows.append((0.0 if ok else np.inf, n, d, 0.0))
        else:
            rows.append((d / upd, n, d, upd))
    rows.sort(reverse=True)
    print(f"  final weights: {len(rows)} tensors; rel err = max|d| / max|w_ref - w_init|, "
          f"tol {FINAL_TOL:g}; frozen ones must be unchanged; worst:")
    for e, n, d, upd in rows[:5]:
        print(f"    {e:9.2e}  {n}  (max|d| {d:.3g}, update {upd:.3g})")
    fails += [f"final {n}: rel err {e:.3g} > {FINAL_TOL:g} (max|d| {d:.3g}, update {upd:.3g})"
              if upd else f"final {n}: frozen tensor changed by {d:.3g}"
              for e, n, d, upd in rows if e > FINAL_TOL]
    return fails


def compare_grads(got, ref, verbose=False):
    """Per-tensor gradient comparison (see GRAD_TOL). got/ref: name -> float64 array.
    Returns the list of failure strings; prints the worst tensors."""
    fails = []
    missing = sorted(set(ref) - set(got))
    if missing:
        fails.append(f"grads0 lacks {len(missing)} trainable tensors, e.g. {missing[:3]}")
    zeros = []
    for n in sorted(set(got) - set(ref)):
        if np.any(got[n] != 0):
            fails.append(f"grads0 has {n}, which is not trainable in this mode, nonzero")
        else:
            zeros.append(n)
    if zeros:
        print(f"  note: grads0 has {len(zeros)} all-zero tensors not trainable in this mode "
              f"(tolerated), e.g. {zeros[0]}")
    gmax = {grp: max((float(np.abs(a).max()) for n, a in ref.items()
                      if a.size and TM.is_indexer(n) == grp), default=0.0)
            for grp in (False, True)}
    rows = []
    for n in sorted(set(ref) & set(got)):
        if got[n].shape != ref[n].shape:
            fails.append(f"{n}: shape {got[n].shape}, expected {ref[n].shape}")
            continue
        if not np.all(np.isfinite(got[n])):
            fails.append(f"{n}: non-finite gradient values")
            continue
        scale = max(float(np.abs(ref[n]).max()), GRAD_FLOOR * gmax[TM.is_indexer(n)], 1e-30)
        d = np.abs(got[n] - ref[n])
        rows.append((float(d.max()) / scale, n, float(d.max()), scale))
    rows.sort(reverse=True)
    shown = rows if verbose else rows[:8]
    print(f"  gradients: {len(rows)} tensors; rel err = max|d| / max(max|g_ref|, "
          f"{GRAD_FLOOR:g} * largest max|g_ref| of its group (indexer {gmax[True]:.3g}, "
          f"rest {gmax[False]:.3g})), tol {GRAD_TOL:g}; worst:")
    for e, n, d, sc in shown:
        print(f"    {e:9.2e}  {n}  (max|d| {d:.3g}, scale {sc:.3g})")
    for e, n, d, sc in rows:
        if e > GRAD_TOL:
            fails.append(f"{n}: gradient rel err {e:.3g} > {GRAD_TOL:g} (max|d| {d:.3g}, "
                         f"scale {sc:.3g})")
    common = sorted(set(ref) & set(got))
    nr = np.sqrt(sum(float((ref[n] ** 2).sum()) for n in common))
    ng = np.sqrt(sum(float((got[n] ** 2).sum()) for n in common))
    print(f"  global grad norm {ng:.9g} (ref {nr:.9g}, rel d {abs(ng - nr) / max(nr, 1e-30):.2g})")
    if not rel_close(ng, nr, NORM_TOL):
        fails.append(f"global gradient norm {ng:.9g} vs ref {nr:.9g} (rel tol {NORM_TOL:g})")
    return fails


# =============================================================== oracle runs

class Oracle:
    """The model, its leaves and optimizer state, advanced step by step."""

    def __init__(self, model_cfg, train, init, dtype=torch.float64):
        self.train = train
        self.leaves = TM.make_leaves(init, dtype)
        self.model = TM.TrainModel(model_cfg, self.leaves)
        self.opt = TO.AdamW(train)

    def loss_and_grads(self, batch, mode):
        """Forward + backward of one step. Returns (components, grads of the trainable
        tensors as float64 numpy, loads)."""
        TM.set_mode(self.leaves, mode)
        total, comps, acc = TM.step_loss(self.model, batch, mode, self.train)
        total.backward()
        grads = {n: (t.grad if t.grad is not None else torch.zeros_like(t)).double().numpy().copy()
                 for n, t in self.leaves.items() if TM.trainable(n, mode)}
        return comps, grads, acc.load

    def step(self, s, batch, mode):
        """Loss/grads of step s, then the update. Returns (components incl. lr, grads)."""
        comps, grads, loads = self.loss_and_grads(batch, mode)
        lr, norm = TO.optimizer_step(self.model, self.leaves, self.opt, self.train, mode, s,
                                     loads)
        comps.update(lr=lr, grad_norm=norm, mode=mode)
        return comps, grads


def modes_for(train, n, forced):
    return [forced or TM.stage_mode(train, s) for s in range(n)]


def run_check(dump, cfg_path, forced_mode, n_steps, do_grads, do_steps, data_raw, verbose):
    """grads and/or steps comparison of one dump. Returns the list of failures."""
    model_cfg, train = TM.load_train_config(cfg_path)
    losses = read_losses(dump)
    n = 1 if not do_steps else (n_steps or len(losses))
    missing = [s for s in range(n) if s not in losses]
    if missing:
        raise ValueError(f"{dump}/losses.json lacks steps {missing}")
    batches = [read_batch(dump, s, train) for s in range(n)]
    modes = modes_for(train, n, forced_mode)
    oracle = Oracle(model_cfg, train, read_st(os.path.join(dump, "init.safetensors")))
    fails = check_windows(batches, data_raw) if data_raw else []
    R.MARGINS.clear()
    for s in range(n):
        ref, grads = oracle.step(s, batches[s], modes[s])
        if s == 0:
            print(f"{dump}: step 0 ({modes[0]}), B={len(batches[0])}, T={train['seq_len']}")
            if do_grads:
                got = read_st(os.path.join(dump, "grads0.safetensors"))
                fails += compare_grads(got, grads, verbose)
            if do_steps:
                print(f"  losses over {n} steps ({', '.join(sorted(set(modes)))}):")
        fails += compare_losses(s, losses[s], ref, ref["lr"] if do_steps else None)
    print("  decisions: " + R.margins_text())
    final = os.path.join(dump, "final.safetensors")
    if do_steps and n == len(losses) and os.path.exists(final):
        ref = {k: t.detach().double().numpy() for k, t in oracle.leaves.items()}
        fails += compare_final(read_st(final), ref, read_st(os.path.join(dump, "init.safetensors")))
    elif do_steps:
        print("  (no final.safetensors compared: absent, or --n below the dumped steps)")
    return fails


def init_params(c, seed):
    """A training-style random init for Config c (selfdump only; the C trainer has its
    own): every 2-D weight N(0, INIT_STD^2), norm weights U(0.8, 1.2), k_norm bias
    N(0, 0.1^2), correction bias N(0, 0.02^2) (so it takes part in the selection)."""
    import make_model
    rng = np.random.default_rng(seed)
    names = make_model.build_tensors(c, "f32", seed)     # the HF layout and shapes
    out = {}
    for n in sorted(names):
        shape = names[n].shape
        if TM.is_bias(n):
            out[n] = rng.standard_normal(shape) * 0.02
        elif n.endswith("k_norm.bias"):
            out[n] = rng.standard_normal(shape) * 0.1
        elif len(shape) == 1:
            out[n] = rng.uniform(0.8, 1.2, shape)
        else:
            out[n] = rng.standard_normal(shape) * INIT_STD
    return {n: a.astype(np.float32).astype(np.float64) for n, a in out.items()}


def selfdump(out, cfg_path, forced_mode, n, seed, float32, data_raw):
    """Write a dump with this oracle (float64, or float32 to imitate the C trainer's
    rounding): init_params' random init, windows drawn from data_raw or random ids."""
    model_cfg, train = TM.load_train_config(cfg_path)
    c = TM.parse_config(model_cfg)
    init = init_params(c, seed)
    rng = np.random.default_rng(seed + 1)
    B, T = int(train["batch_seqs"]), int(train["seq_len"])
    tok = np.fromfile(data_raw, dtype="<u4").astype(np.int64) if data_raw \
        else rng.integers(0, c.vocab, 4096)
    batches = [np.stack([tok[p:p + T + 1] for p in rng.integers(0, len(tok) - T, B)])
               for _ in range(n)]
    dtype = torch.float32 if float32 else torch.float64
    saved_dt, R.DT = R.DT, dtype
    try:
        oracle = Oracle(model_cfg, train, init, dtype)
        rows, grads0 = [], None
        for s, mode in enumerate(modes_for(train, n, forced_mode)):
            comps, grads = oracle.step(s, batches[s], mode)
            grads0 = grads if s == 0 else grads0
            rows.append(dict({"step": s}, **{k: comps[k] for k in COMPONENTS + ("lr",)}))
        final = {k: t.detach().double().numpy() for k, t in oracle.leaves.items()}
    finally:
        R.DT = saved_dt
    write_dump(out, init, grads0, batches, rows, final, cfg_path)
    return rows


# =============================================================== CLI

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", choices=("grads", "steps", "check", "selfdump", "selftest"))
    ap.add_argument("dump", nargs="?", help="dump directory (selfdump: output directory)")
    ap.add_argument("--config")
    ap.add_argument("--mode", choices=TM.MODES)
    ap.add_argument("--n", type=int, default=0, help="steps to compare (default: all)")
    ap.add_argument("--steps", type=int, default=4, help="selfdump: steps to run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--float32", action="store_true", help="selfdump in float32")
    ap.add_argument("--data-raw")
    ap.add_argument("--quick", action="store_true", help="selftest: the CI subset")
    ap.add_argument("--verbose", action="store_true", help="print every tensor's error")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.cmd == "selftest":
        import train_selfcheck
        return train_selfcheck.main(args.quick)
    if not args.dump:
        ap.error("DUMP directory required")
    cfg = args.config or os.path.join(args.dump, "train_config.json")
    try:
        if args.cmd == "selfdump":
            rows = selfdump(args.dump, cfg, args.mode, args.steps, args.seed, args.float32,
                            args.data_raw)
            print(f"train_ref: wrote {args.dump}: " +
                  ", ".join(f"step {r['step']} loss {r['loss']:.6f}" for r in rows))
            return 0
        fails = run_check(args.dump, cfg, args.mode, args.n, args.cmd != "steps",
                          args.cmd != "grads", args.data_raw, args.verbose)
    except (ValueError, KeyError, OSError) as e:
        print(f"train_ref: error: {e}", file=sys.stderr)
        return 2
    for f in fails[:MAX_FAIL_LINES]:
        print(f"  FAIL {f}")
    if len(fails) > MAX_FAIL_LINES:
        print(f"  ... and {len(fails) - MAX_FAIL_LINES} more failures")
    print(f"train_ref {args.cmd}: {'FAIL' if fails else 'ok'} ({len(fails)} failures)")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
