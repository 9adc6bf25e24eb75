#!/usr/bin/python3
"""Compare two logits .npy files (engine vs reference) against named tolerances.

What it is for: the last step of tests/model/check_reference.sh. It checks that both files
have the same shape and only finite values, then reports max|d|, mean|d|, the fraction of
rows whose argmax agrees, and the worst position (row, column, both values). It passes iff
every given bound holds; the exit status is 0 on pass, 1 on fail, 2 on unreadable input.

  compare.py ENGINE.npy REF.npy [--tol MAX] [--mean-tol X] [--mean-tol-rel F] [--argmax-min A]
             [--name NAME]
At least one bound must be given; --mean-tol-rel F bounds mean|d| by F * RMS(reference).
"""
import argparse
import sys

import numpy as np


def load(path):
    a = np.load(path, allow_pickle=False)
    if a.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D [rows, vocab] array, got shape {a.shape}")
    return a.astype(np.float64)


def compare(a, b):
    """Statistics of a vs b (same shape): dict with max, mean, argmax agreement, worst."""
    d = np.abs(a - b)
    r, c = np.unravel_index(int(np.argmax(d)), d.shape)
    return {"max": float(d.max()), "mean": float(d.mean()),
            "argmax": float(np.mean(np.argmax(a, 1) == np.argmax(b, 1))),
            "worst": (int(r), int(c), float(a[r, c]), float(b[r, c])),
            "row_max": d.max(axis=1), "rms": float(np.sqrt(np.mean(b * b)))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("engine")
    ap.add_argument("ref")
    ap.add_argument("--tol", type=float, default=float("inf"), help="bound on max|d|")
    ap.add_argument("--mean-tol", type=float, help="bound on mean|d|")
    ap.add_argument("--mean-tol-rel", type=float,
                    help="bound on mean|d| as a fraction of the reference's RMS")
    ap.add_argument("--argmax-min", type=float, help="minimum fraction of rows with equal argmax")
    ap.add_argument("--name", default="")
    args = ap.parse_args(argv)
    name = args.name or f"{args.engine} vs {args.ref}"
    if args.tol == float("inf") and args.mean_tol is None and args.mean_tol_rel is None \
            and args.argmax_min is None:
        ap.error("give at least one bound")
    try:
        a, b = load(args.engine), load(args.ref)
    except (OSError, ValueError) as e:
        print(f"FAIL {name}: {e}")
        return 2
    if a.shape != b.shape:
        print(f"FAIL {name}: shape {a.shape} (engine) != {b.shape} (reference)")
        return 1
    bad = ~np.isfinite(a)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        print(f"FAIL {name}: {int(bad.sum())} non-finite engine values, first at [{r}, {c}]")
        return 1
    s = compare(a, b)
    ok = s["max"] <= args.tol
    ok &= args.mean_tol is None or s["mean"] <= args.mean_tol
    ok &= args.argmax_min is None or s["argmax"] >= args.argmax_min
    ok &= args.mean_tol_rel is None or s["mean"] <= args.mean_tol_rel * s["rms"]
    over = np.nonzero(s["row_max"] > args.tol)[0]
    first = f", first row over tol {int(over[0])}" if len(over) else ""
    r, c, va, vb = s["worst"]
    bounds = f"max tol {args.tol:g}" + (f", mean tol {args.mean_tol:g}" if args.mean_tol else "") \
        + (f", mean tol {args.mean_tol_rel:g}*rms" if args.mean_tol_rel else "") \
        + (f", argmax >= {args.argmax_min:g}" if args.argmax_min is not None else "")
    print(f"{'ok  ' if ok else 'FAIL'} {name}: shape {a.shape}, max|d| {s['max']:.3g}, "
          f"mean|d| {s['mean']:.3g}, ref rms {s['rms']:.3g}, argmax agree "
          f"{100 * s['argmax']:.1f}%, worst at [{r}, {c}] engine {va:.6g} ref {vb:.6g}, "
          f"rows over tol {len(over)}/{a.shape[0]}{first} ({bounds})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
