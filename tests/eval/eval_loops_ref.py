"""eval_loops_ref — the oracle for tests/eval/check_eval_loops.sh: recomputes
from `demolish eval loops` run files (JSON lines), independently of the C
code, (1) every generation's detector flags from its token ids (the
definitions in src/eval/loop_detect.c's top comment), (2) the counts, Wilson
95% intervals, length quantiles and distinct-4 means, and (3) what
`eval compare` reports (Newcombe interval, pooled z-test, McNemar, minimum n)
with scipy, and checks them against the JSON the commands printed.

usage: eval_loops_ref.py loops SUMMARY.json RUN.jsonl
       eval_loops_ref.py compare COMPARE.json A.jsonl B.jsonl
       eval_loops_ref.py report REPORT.json RUN.jsonl...
Exits non-zero and prints every mismatch. Run with /usr/bin/python3."""
import json
import math
import sys

import numpy as np
from scipy import stats

TOL = 1e-9          # both sides compute in double; only summation order differs
Z95 = stats.norm.isf(0.025)
METRICS = ["loop", "loop_exact", "loop_rep", "runaway", "fail", "eos", "think_closed", "think_restart"]
fails = 0


def check(cond, msg):
    global fails
    if not cond:
        fails += 1
        print("FAIL:", msg)


def close(a, b, what):
    check(abs(a - b) <= TOL * max(1.0, abs(b)), f"{what}: got {a!r}, want {b!r} (diff {abs(a - b):.3g})")


def read_run(path):
    with open(path) as f:
        lines = [json.loads(l) for l in f if l.endswith("\n")]
    return lines[0], lines[1:]


def measure(h, r):
    """Flags of one record from its tokens, per loop_detect.c's definitions."""
    d, ids = h["detector"], r["tokens"]
    n = len(ids)
    m = {"len": n, "eos": r["eos"], "runaway": r["cap"] and not r["eos"]}
    m["loop_exact"], m["period"] = False, 0
    for p in range(1, min(d["max_period"], n - 1) + 1):
        j = n - 1
        while j >= p and ids[j] == ids[j - p]:
            j -= 1
        cover = (n - 1 - j) + p
        if cover >= d["min_repeats"] * p and cover >= d["min_cover"]:
            m["loop_exact"], m["period"] = True, p
            break
    grams = lambda t: [tuple(t[i:i + 4]) for i in range(len(t) - 3)]
    m["loop_rep"], m["d4"] = False, None
    if n >= 4:
        g = grams(ids)
        m["d4"] = len(set(g)) / len(g)
        w = min(n, d["rep_window"])
        gw = grams(ids[n - w:])
        rep4 = 1 - len(set(gw)) / len(gw)
        m["loop_rep"] = w >= d["rep_min_len"] and rep4 > d["rep4_max"]
    m["loop"] = m["loop_exact"] or m["loop_rep"]
    m["fail"] = m["loop"] or m["runaway"]
    op, cl = h["think_ids"]
    m["think"] = cl >= 0
    if m["think"]:
        closes = sum(1 for t in ids if t == cl)
        reopen, seen = 0, 0
        for t in ids:
            if t == cl:
                seen += 1
            elif t == op and seen:
                reopen += 1
        m["think_closed"] = closes > 0
        m["think_restart"] = max(reopen, closes - 1) > 0
    return m


def wilson(k, n):
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = Z95 * Z95
    c = (p + z2 / (2 * n)) / (1 + z2 / n)
    h = Z95 / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, c - h), min(1.0, c + h)


def counts(ms):
    c = {"n": len(ms)}
    for name in METRICS:
        key = name
        pool = [m for m in ms if m["think"]] if name.startswith("think") else ms
        c[name] = (sum(1 for m in pool if m[key]), len(pool))
    d4 = [m["d4"] for m in ms if m["d4"] is not None]
    c["distinct4_mean"] = float(np.mean(d4)) if d4 else 0.0
    lens = [m["len"] for m in ms]
    c["len_median"] = float(np.quantile(lens, 0.5)) if lens else 0.0
    c["len_p90"] = float(np.quantile(lens, 0.9)) if lens else 0.0
    c["tokens"] = sum(lens)
    return c


def check_counts(got, want, what):
    check(got["n"] == want["n"], f"{what}: n {got['n']} vs {want['n']}")
    for name in METRICS:
        k, n = want[name]
        g = got[name]
        check(g["k"] == k and g["n"] == n, f"{what}.{name}: {g['k']}/{g['n']}, want {k}/{n}")
        lo, hi = wilson(k, n)
        close(g["lo"], lo, f"{what}.{name}.lo")
        close(g["hi"], hi, f"{what}.{name}.hi")
    for key in ("distinct4_mean", "len_median", "len_p90", "tokens"):
        close(got[key], want[key], f"{what}.{key}")


def run_counts(path):
    h, recs = read_run(path)
    ms = []
    for r in recs:
        m = measure(h, r)
        for key in ("loop", "loop_exact", "loop_rep", "runaway", "period"):
            check(r[key] == m[key], f"{path} prompt {r['i']}: stored {key} {r[key]} but the tokens give {m[key]}")
        m["source"], m["i"], m["id"] = r["source"], r["i"], r["id"]
        ms.append(m)
    total = counts(ms)
    sources = {}
    for s in dict.fromkeys(m["source"] for m in ms if m["source"]):
        sources[s] = counts([m for m in ms if m["source"] == s])
    return h, ms, total, sources


def check_run_json(got, path):
    _, _, total, sources = run_counts(path)
    check_counts(got["total"], total, path + " total")
    check(set(got["sources"]) == set(sources), f"{path}: sources {sorted(got['sources'])} vs {sorted(sources)}")
    for s in sources:
        if s in got["sources"]:
            check_counts(got["sources"][s], sources[s], f"{path} {s}")


def ztest(k1, n1, k2, n2):
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1)
    l2, u2 = wilson(k2, n2)
    d = p2 - p1
    lo = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    hi = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    pb = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pb * (1 - pb) * (1 / n1 + 1 / n2))
    z = d / se if se > 0 else 0.0
    p = 2 * stats.norm.sf(abs(z)) if se > 0 else 1.0
    return dict(p1=p1, p2=p2, diff=d, diff_lo=lo, diff_hi=hi, z=z, p=p)


def check_compare(got, pa, pb):
    ha, ma, ta, sa = run_counts(pa)
    hb, mb, tb, sb = run_counts(pb)
    paired = ha["seed"] == hb["seed"]
    byi = {m["i"]: m for m in mb}
    for name in METRICS:
        k1, n1 = ta[name]
        k2, n2 = tb[name]
        if n1 == 0 or n2 == 0:
            check(name not in got["total"], f"compare: {name} has no generations but is reported")
            continue
        g = got["total"][name]
        for key, v in ztest(k1, n1, k2, n2).items():
            close(g[key], v, f"compare total.{name}.{key}")
        if not paired:
            check("mcnemar" not in g, f"compare {name}: McNemar on unpaired runs")
            continue
        b = c = pairs = 0
        for m in ma:
            o = byi.get(m["i"])
            if not o or o["id"] != m["id"]:
                continue
            pairs += 1
            if name.startswith("think") and not (m["think"] and o["think"]):
                continue
            b += m[name] and not o[name]
            c += (not m[name]) and o[name]
        mc = g.get("mcnemar")
        check(mc is not None, f"compare {name}: no McNemar on paired runs")
        if mc is None:
            continue
        check((mc["pairs"], mc["b"], mc["c"]) == (pairs, b, c), f"compare {name}: pairs/b/c {mc} vs {(pairs, b, c)}")
        if b + c < 25:
            p = stats.binomtest(min(b, c), b + c, 0.5).pvalue if b + c else 1.0
        else:
            p = stats.chi2.sf((b - c) ** 2 / (b + c), 1)
        close(mc["p"], min(1.0, p), f"compare {name}.mcnemar.p")
    for name in ("loop", "fail"):
        p1, p2 = ta[name][0] / ta["n"], tb[name][0] / tb["n"]
        g = got["min_n"][name]
        for a, b, basis in ((p1, p2, "observed"), (p1, 2 * p1, "doubling of A"), (p2 / 2, p2, "halving of B")):
            if 0 < a < 1 and 0 < b < 1 and a != b:
                za, zb = stats.norm.isf(0.025), stats.norm.isf(0.2)
                pbar = (a + b) / 2
                s = za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(a * (1 - a) + b * (1 - b))
                want = math.ceil(s * s / (a - b) ** 2)
                check(g["n_per_arm"] == want and g["basis"] == basis,
                      f"min_n {name}: {g['n_per_arm']} ({g.get('basis')}) vs {want} ({basis})")
                break
        else:
            check(g["n_per_arm"] is None, f"min_n {name}: {g['n_per_arm']} for rates {p1}, {p2}")
    for s in sa:
        if s in sb:
            k1, n1 = sa[s]["fail"]
            k2, n2 = sb[s]["fail"]
            for key, v in ztest(k1, n1, k2, n2).items():
                close(got["sources"][s]["fail"][key], v, f"compare {s}.fail.{key}")


def main():
    mode, out = sys.argv[1], json.load(open(sys.argv[2]))
    paths = sys.argv[3:]
    if mode == "loops":
        check_run_json(out, paths[0])
    elif mode == "compare":
        check_compare(out, paths[0], paths[1])
    elif mode == "report":
        check(len(out["runs"]) == len(paths), "report: run count")
        for r, p in zip(out["runs"], paths):
            check_run_json(r, p)
    print(f"eval_loops_ref {mode}: {'ok' if not fails else str(fails) + ' mismatch(es)'}")
    sys.exit(1 if fails else 0)


main()
