#!/usr/bin/python3
"""compare_logits — how far two [T, V] float32 logits files (.npy) are apart.

What it is for: the cross-check between demolish and llama.cpp on the same weights
(`demolish logits ... --out a.npy` vs llama.cpp's logits of the same ids; see
bench/run_llamacpp.sh). Two independent implementations must agree up to their numeric
precision; this prints the numbers to judge that:
  max|d|, mean|d|, the logit scale (mean std per row), per-position argmax agreement,
  top-5 overlap, and the largest per-position softmax KL(a || b).
Exit status 1 if argmax agreement is below --min-agree (default 0: report only).

    /usr/bin/python3 bench/compare_logits.py a.npy b.npy [--per-position] [--min-agree 0.95]
"""
import argparse
import sys

import numpy as np


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def compare(a, b):
    """Dict of summary statistics for logits a, b of equal shape [T, V] (float64 math)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    d = np.abs(a - b)
    la, lb = log_softmax(a), log_softmax(b)
    kl = (np.exp(la) * (la - lb)).sum(axis=-1)
    top_a, top_b = np.argsort(-a, axis=-1)[:, :5], np.argsort(-b, axis=-1)[:, :5]
    overlap = np.array([len(set(x) & set(y)) / 5.0 for x, y in zip(top_a, top_b)])
    return dict(T=a.shape[0], V=a.shape[1], max_abs=d.max(), mean_abs=d.mean(),
                row_max_abs=d.max(axis=-1), scale=a.std(axis=-1).mean(),
                agree=(a.argmax(-1) == b.argmax(-1)), top5=overlap.mean(), kl=kl)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--per-position", action="store_true", help="one line per position")
    ap.add_argument("--min-agree", type=float, default=0.0, help="fail below this argmax agreement")
    args = ap.parse_args()
    a, b = np.load(args.a), np.load(args.b)
    if a.shape != b.shape:
        sys.exit(f"compare_logits: shapes differ: {a.shape} vs {b.shape}")
    s = compare(a, b)
    if args.per_position:
        for t in range(s["T"]):
            print(f"  pos {t:4d}: max|d| {s['row_max_abs'][t]:.4g}  argmax {'same' if s['agree'][t] else 'DIFF'}"
                  f"  KL {s['kl'][t]:.3g}")
    print(f"T={s['T']} V={s['V']}  max|d|={s['max_abs']:.4g}  mean|d|={s['mean_abs']:.4g}  "
          f"(logit std {s['scale']:.3g})  argmax agree {s['agree'].sum()}/{s['T']}  "
          f"top5 overlap {s['top5']:.3f}  KL max {s['kl'].max():.3g} mean {s['kl'].mean():.3g}")
    if s["agree"].mean() < args.min_agree:
        print(f"FAIL: argmax agreement {s['agree'].mean():.3f} < {args.min_agree}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
