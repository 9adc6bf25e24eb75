#!/usr/bin/env python3
"""Markdown table of a pruning study (scripts/reap_results.sh): one row per pruned model of
`demolish eval kl --json`, named <criterion>[-variant]-<percent removed>. Used for
bench/RESULTS.md and, through scripts/model_card.py, the reference model's card.
usage: reap_table.py results.json"""
import json
import os
import sys

VARIANTS = {  # name part -> (calibration data, gate)
    "code": ("code only", "model"), "prose": ("prose only", "model"),
    "cerebras": ("all", "Cerebras softmax"), "cerebras-renorm": ("all", "Cerebras softmax + renorm"),
    "nu": ("all", "model"),
}


def describe(name):
    """(removed %, criterion, plan, calibration, gate) from a student directory name."""
    base, pct = name.rsplit("-", 1)
    crit, _, var = base.partition("-") if not base.startswith("soft-frequency") else ("soft-frequency", "", "")
    if crit.startswith("random"):
        crit = f"random (seed {crit[6:]})"
    cal, gate = VARIANTS.get(var, ("all", "model"))
    plan = "non-uniform" if var == "nu" else "uniform"
    return int(pct), crit, plan, cal, gate


def table(r):
    srcs = sorted({s for st in r["students"] for s in st["sources"]})
    lines = [f"Held-out: `{r['data']}`, {r['predictions']} predictions, windows of {r['ctx']}; teacher cached as "
             f"top-{r['top_k']} + other (KL is a lower bound of the full KL). Mean KL ± standard error (nats).", "",
             "| removed | criterion | plan | calibration | gate | mean KL | p99 | top-1 agree | ppl ratio | "
             + " | ".join(f"KL {s}" for s in srcs) + " |",
             "|---" * (9 + len(srcs)) + "|"]
    rows = []
    for st in r["students"]:
        pct, crit, plan, cal, gate = describe(os.path.basename(st["model"].rstrip("/")))
        t, q = st["total"], st["kl_quantiles"]
        cells = [f"{pct} %", crit, plan, cal, gate, f"{t['kl_mean']:.4f} ± {t['kl_mean_se']:.4f}", f"{q['p99']:.3f}",
                 f"{100 * t['top1_agreement']:.2f} %", f"{t['ppl_ratio']:.4f}"]
        cells += [f"{st['sources'][s]['kl_mean']:.4f}" if s in st["sources"] else "n/a" for s in srcs]
        rows.append((pct, "| " + " | ".join(cells) + " |"))
    lines += [row for _, row in sorted(rows, key=lambda x: x[0])]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(json.load(open(sys.argv[1]))))
