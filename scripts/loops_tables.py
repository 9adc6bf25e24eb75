#!/usr/bin/env python3
"""loops_tables — markdown tables of the loop study (scripts/loops_study.sh's study.json):
rates with Wilson 95% intervals per model and sampler (overall and per source), and the
comparisons (difference with Newcombe's interval, two-proportion z and p, McNemar's paired p).
Standard library only.  usage: loops_tables.py STUDY.json [STUDY2.json ...]"""
import json
import sys

METRICS = ("loop", "fail", "runaway", "eos")


MODEL_ORDER = ("teacher", "reap25", "heal25", "reap50", "heal50")
SAMPLER_ORDER = ("raw", "gentle", "strong", "hesitation")


def order(name):
    """Sort key of a run name "<model>-<sampler>": models, then samplers, in study order."""
    m, _, s = name.partition("-")
    return (MODEL_ORDER.index(m) if m in MODEL_ORDER else 99, SAMPLER_ORDER.index(s) if s in SAMPLER_ORDER else 99,
            name)


def ordered(d):
    return {k: d[k] for k in sorted(d, key=order)}


def cell(r):
    return f"{100 * r['rate']:.1f} [{100 * r['lo']:.1f}, {100 * r['hi']:.1f}]"


def pval(p):
    return f"{p:.2g}" if p >= 1e-4 else "<1e-4"


def rates_table(summaries):
    out = ["| model / sampler | n | loop % | fail % | runaway % | EOS % | distinct-4 | median len |",
           "|---|---|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        t = s["total"]
        out.append(f"| {name} | {t['n']} | " + " | ".join(cell(t[m]) for m in METRICS) +
                   f" | {t['distinct4_mean']:.3f} | {t['len_median']:.0f} |")
    return "\n".join(out)


def termination_table(summaries):
    """EOS, runaway, </think> closed and restarted, per run (the reasoning-only phase)."""
    out = ["| model / sampler | n | EOS % | runaway % | </think> closed % | think restart % | loop % | median len |",
           "|---|---|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        t = s["total"]
        out.append(f"| {name} | {t['n']} | " + " | ".join(cell(t[m]) for m in
                                                        ("eos", "runaway", "think_closed", "think_restart", "loop")) +
                   f" | {t['len_median']:.0f} |")
    return "\n".join(out)


def source_table(summaries, metric):
    srcs = sorted({k for s in summaries.values() for k in s["sources"]})
    out = [f"| model / sampler | " + " | ".join(f"{x} {metric} %" for x in srcs) + " |",
           "|---|" + "---|" * len(srcs)]
    for name, s in summaries.items():
        out.append(f"| {name} | " + " | ".join(cell(s["sources"][x][metric]) if x in s["sources"] else "-"
                                              for x in srcs) + " |")
    return "\n".join(out)


def compare_table(compare, metric):
    out = [f"| A → B | {metric} A % | {metric} B % | B − A (pts) [95% CI] | z | p | McNemar p |",
           "|---|---|---|---|---|---|---|"]
    for name, c in compare.items():
        r = c["total"][metric]
        mc = r.get("mcnemar")
        out.append(f"| {name.replace('--', ' → ')} | {100 * r['p1']:.1f} | {100 * r['p2']:.1f} | "
                   f"{100 * r['diff']:+.1f} [{100 * r['diff_lo']:+.1f}, {100 * r['diff_hi']:+.1f}] | "
                   f"{r['z']:+.2f} | {pval(r['p'])} | {pval(mc['p']) if mc else '-'} |")
    return "\n".join(out)


def main(paths):
    for path in paths:
        d = json.load(open(path))
        print(f"### {path}\n")
        print(rates_table(ordered(d["summaries"])) + "\n")
        print(source_table(ordered(d["summaries"]), "loop") + "\n")
        print(compare_table(d["compare"], "loop") + "\n")
        print(compare_table(d["compare"], "fail") + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])


def plot(summaries, path, title="loop rate (%), Wilson 95% intervals"):
    """Grouped bars: the loop rate of every model (groups) under every sampler (bars), with
    interval whiskers. Needs matplotlib (Debian python3-matplotlib); returns False without it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    models = [m for m in MODEL_ORDER if any(k.startswith(m + "-") for k in summaries)]
    samplers = [s for s in SAMPLER_ORDER if any(k.endswith("-" + s) for k in summaries)]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(models), 3.4))
    w = 0.8 / max(len(samplers), 1)
    for j, s in enumerate(samplers):
        xs, ys, lo, hi = [], [], [], []
        for i, m in enumerate(models):
            r = summaries.get(f"{m}-{s}")
            if not r:
                continue
            t = r["total"]["loop"]
            xs.append(i + (j - (len(samplers) - 1) / 2) * w)
            ys.append(100 * t["rate"])
            lo.append(100 * (t["rate"] - t["lo"]))
            hi.append(100 * (t["hi"] - t["rate"]))
        ax.bar(xs, ys, w, yerr=[lo, hi], capsize=2, label=s)
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels(models)
    ax.set_ylabel("loop %")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=len(samplers))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
