"""Router-KD oracle: the loss of `demolish heal router` and its gradient w.r.t. the router
gates, by float64 autograd, against the C dump of step 0 (--dump DIR).

What it is for: issue 6's acceptance ("gradient of the KL loss w.r.t. the gate weights
checked against PyTorch autograd on a tiny model"). The forward is train_model.py's
(sparse mode: attention over the indexer's top-k, the router's selection constant, its
gates carrying gradient); the loss is written here from the definition in
src/train/kd_loss.c's header, not from the C code:

  teacher at temperature tau over the k cached tokens plus an "other" bucket:
      p ~ exp(logp / tau) over k + 1 buckets (renormalized)
  student q = softmax(z / tau) over the vocabulary; its "other" = mass off the k tokens
  KL_row = sum_i p_i (log p_i - log q_i) + p_o (log p_o - log q_o)
  loss = tau^2 * (mean KL over main rows with a target
                  + mtp_weight * mean KL over MTP rows with a target)
  main row (b, i): the teacher position pos[b*T + i]; MTP row (b, i), predicting token
  i + 2: pos[b*T + i + 1]; -1 means no target.

usage: kd_ref.py STUDENT_DIR DUMP_DIR   (exit 1 on a mismatch)
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_model as R  # noqa: E402
import st_io  # noqa: E402
import train_model as TM  # noqa: E402

GATE_SUFFIX = ".mlp.gate.weight"
LOSS_REL = 2e-5    # f32 forward vs float64 (C logits are f32; rows agree to ~1e-6 relative)
GRAD_TOL = 2e-4    # max|d| / max|g_ref| per tensor, as train_ref.py's GRAD_TOL


def logits_of_window(model, ids):
    """Main logits [T, V] and MTP logits [T-1, V] (or None) of one window w[0..T]."""
    cfg, T = model.cfg, len(ids) - 1
    acc = TM.Acc()
    x = model.embed[torch.from_numpy(ids[:T])]
    cos, sin = R.rope_cos_sin(cfg, range(T))
    sel = None
    for l, lp in enumerate(model.layers):
        x, sel = TM.train_layer(cfg, l, lp, x, cos, sin, sel, "sparse", acc)
    h = R.rms_norm(x, model.norm, cfg.eps)
    main = R.linear(h, model.head)
    if model.mtp is None:
        return main, None
    m = model.mtp
    u = R.mtp_input(cfg, m, ids[1:T], h[:T - 1])
    cos, sin = R.rope_cos_sin(cfg, range(T - 1))
    u, _ = TM.train_layer(cfg, cfg.L, m["layer"], u, cos, sin, None, "sparse", acc)
    return main, R.linear(R.rms_norm(u, m["head_norm"], cfg.eps), m["head"])


def kl_row(z, ids, logp, other, tau):
    """KL(teacher buckets || student buckets) of one row, differentiable in z [V]."""
    a = torch.tensor(np.append(logp / tau, other / tau if np.isfinite(other) else -np.inf),
                     dtype=torch.float64)
    lp_t = a - torch.logsumexp(a, 0)
    lq = torch.log_softmax(z / tau, 0)
    idx = torch.from_numpy(ids.astype(np.int64))
    mask = torch.ones_like(lq, dtype=torch.bool)
    mask[idx] = False
    lq_b = torch.cat([lq[idx], torch.logsumexp(lq[mask], 0)[None]])
    p = lp_t.exp()
    keep = p > 0
    return (p[keep] * (lp_t[keep] - lq_b[keep])).sum()


def main(argv):
    student, dump = argv[1], argv[2]
    cfg = json.load(open(os.path.join(student, "config.json")))
    arrays = {n: st_io.to_float64(t) for n, t in st_io.read_dir(student).items()}
    info = json.load(open(os.path.join(dump, "kd_loss.json")))
    tau, mtp_w = float(info["tau"]), float(info["mtp_weight"])
    leaves = TM.make_leaves(arrays)
    n_layers = cfg["num_hidden_layers"]
    mtp_prefix = f"model.layers.{n_layers}."
    for n, t in leaves.items():
        t.requires_grad_(n.endswith(GATE_SUFFIX) and (mtp_w > 0 or not n.startswith(mtp_prefix)))
    model = TM.TrainModel(cfg, leaves)
    batch = np.load(os.path.join(dump, "kd_batch.npy")).astype(np.int64)
    pos = np.load(os.path.join(dump, "kd_pos.npy"))
    top = np.load(os.path.join(dump, "kd_top_id.npy"))
    logp = np.load(os.path.join(dump, "kd_logp.npy")).astype(np.float64)
    other = np.load(os.path.join(dump, "kd_other.npy")).astype(np.float64)
    B, T = batch.shape[0], batch.shape[1] - 1
    kl_main = kl_mtp = torch.zeros((), dtype=torch.float64)
    n_main = n_mtp = 0
    for b in range(B):
        if pos[b * T] < 0:
            continue   # padding windows: no target anywhere, no loss
        z, zm = logits_of_window(model, batch[b])
        for i in range(T):
            r = b * T + i
            if pos[r] >= 0:
                kl_main = kl_main + kl_row(z[i], top[r], logp[r], other[r], tau)
                n_main += 1
            if zm is not None and mtp_w > 0 and i + 1 < T and pos[r + 1] >= 0:
                kl_mtp = kl_mtp + kl_row(zm[i], top[r + 1], logp[r + 1], other[r + 1], tau)
                n_mtp += 1
    loss = tau * tau * (kl_main / n_main + (mtp_w * kl_mtp / n_mtp if n_mtp else 0))
    loss.backward()
    fails = []
    got_loss = float(info["loss"])
    print(f"  loss {got_loss:.9g} (ref {float(loss):.9g}); rows main {info['n_main']} (ref {n_main}), "
          f"mtp {info['n_mtp']} (ref {n_mtp})")
    if abs(got_loss - float(loss)) > LOSS_REL * abs(float(loss)):
        fails.append(f"loss {got_loss:.9g} vs ref {float(loss):.9g}")
    if int(info["n_main"]) != n_main or int(info["n_mtp"]) != (n_mtp if mtp_w > 0 else int(info["n_mtp"])):
        fails.append("row counts differ")
    got = {n: st_io.to_float64(t) for n, t in st_io.read_file(os.path.join(dump, "kd_grads.safetensors"))[0].items()}
    want = {n: t.grad.numpy() for n, t in leaves.items() if t.requires_grad}
    if set(got) != set(want):
        fails.append(f"trainable tensors: C {sorted(set(got) - set(want))} extra, "
                     f"{sorted(set(want) - set(got))} missing")
    worst = 0.0
    for n in sorted(set(got) & set(want)):
        scale = max(float(np.abs(want[n]).max()), 1e-30)
        e = float(np.abs(got[n].reshape(want[n].shape) - want[n]).max()) / scale
        worst = max(worst, e)
        print(f"    {e:9.2e}  {n}  (max|g_ref| {scale:.3g})")
        if e > GRAD_TOL or scale <= 1e-30:
            fails.append(f"{n}: gradient rel err {e:.3g} > {GRAD_TOL:g} (or a zero reference gradient)")
    print(f"  {len(want)} gate gradients, worst rel err {worst:.2e} (tol {GRAD_TOL:g})")
    for f in fails:
        print("FAIL: " + f)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
