#!/usr/bin/env python3
"""Writes MODEL_DIR/MODEL_CARD.md (and routing.png, loss.png) from the measurements that
scripts/model_card.sh leaves in MODEL_DIR/eval/, the training log (MODEL_DIR/train_log.jsonl),
the recipe's wall times (MODEL_DIR.recipe.json), configs/reference.json and the corpus stats.
Every number in the card comes from those files. Run with /usr/bin/python3 (matplotlib optional)."""
import json
import math
import os
import statistics
import sys


def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def log_entries(path):
    rows = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    r = json.loads(line)
                    rows[r["step"]] = r          # a resumed run may repeat a step: keep the last
    except OSError:
        pass
    return [rows[k] for k in sorted(rows)]


def log_runs(path):
    """The training runs in the log, in order, as (first step, last step, seconds): a run's
    elapsed_s restarts from 0, so a decrease starts a new run (a resume)."""
    runs = []
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                r = json.loads(line)
                if not runs or r["elapsed_s"] < runs[-1][2]:
                    runs.append([r["step"], r["step"], r["elapsed_s"]])
                else:
                    runs[-1][1:] = [r["step"], r["elapsed_s"]]
    except OSError:
        pass
    return runs


def js_divergence(p, q):
    """Jensen-Shannon divergence in bits between two count vectors."""
    sp, sq = sum(p), sum(q)
    if sp == 0 or sq == 0:
        return float("nan")
    p = [x / sp for x in p]
    q = [x / sq for x in q]
    m = [(a + b) / 2 for a, b in zip(p, q)]

    def kl(a, b):
        return sum(x * math.log2(x / y) for x, y in zip(a, b) if x > 0)
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def fmt(x, d=4):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def plot_routing(routing, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sources = routing["sources"]
    layers = [i for i, row in enumerate(sources[0]["counts"]) if row]
    fig, axes = plt.subplots(len(layers), 1, figsize=(10, 1.1 * len(layers) + 1), squeeze=False)
    for ax, l in zip(axes[:, 0], layers):
        mat = []
        for s in sources:
            row = s["counts"][l]
            tot = sum(row) or 1
            mat.append([x / tot for x in row])
        ax.imshow(mat, aspect="auto", cmap="viridis")
        ax.set_yticks(range(len(sources)))
        ax.set_yticklabels([s["source"] for s in sources], fontsize=7)
        ax.set_xticks([])
        ax.set_ylabel(f"layer {l}", fontsize=7, rotation=0, labelpad=22)
    axes[-1, 0].set_xlabel("routed expert (share of the domain's selections in the layer)")
    fig.suptitle("Expert usage per domain and MoE layer (held-out test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_loss(entries, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.plot([e["step"] for e in entries], [e["main"] for e in entries], lw=0.8, label="next-token loss (train batch)")
    ax.plot([e["step"] for e in entries], [e["mtp"] for e in entries], lw=0.6, alpha=0.7, label="MTP loss")
    ax.set_xlabel("step")
    ax.set_ylabel("nats/token")
    ax.set_ylim(0, 10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main():
    m = sys.argv[1] if len(sys.argv) > 1 else "models/reference"
    e = os.path.join(m, "eval")
    cfg = load("configs/reference.json", {})
    info = load(os.path.join(e, "info.json"), {})
    ppl = load(os.path.join(e, "ppl_test.json"), {})
    ppl_dense = load(os.path.join(e, "ppl_test_dense.json"), {})
    reasoning = load(os.path.join(e, "reasoning.json"), {})
    routing = load(os.path.join(e, "routing_test.json"), {})
    scaling = load(os.path.join(e, "scaling.json"), {})
    corpus = load("data/corpus/stats.json", {})
    recipe = load(m.rstrip("/") + ".recipe.json", {})
    entries = log_entries(os.path.join(m, "train_log.jsonl"))
    tr = cfg.get("train", {})
    mc = cfg.get("model", {})
    B, T = tr.get("batch_seqs", 0), tr.get("seq_len", 0)
    steps = sum(s["steps"] for s in tr.get("stages", [])) or tr.get("steps", 0)
    out = []
    w = out.append
    w("# demolish reference model (GLM-MoE-DSA architecture, trained from scratch)\n")
    w("The project's own model of the GLM-5 architecture, trained in C by `demolish train` on text from "
      "Debian packages, so that every quality figure of this project (REAP vs frequency pruning, "
      "Router-KD, quantization KL, loop rates) is measured on a model whose experts carry knowledge. "
      "It is small (it has to train on 2 CPU cores in under 3 hours), and it is measured, not praised: "
      "every number below comes from files in `eval/` and `train_log.jsonl`.\n")
    w("## Architecture\n")
    w(f"`{mc.get('architectures', ['?'])[0]}` (`model_type {mc.get('model_type')}`), "
      f"{info.get('params', 0) / 1e6:.1f} M parameters ({info.get('params_active', 0) / 1e6:.1f} M active per "
      f"token; MTP layer not counted), bf16 weights.\n")
    w("| part | value |\n|---|---|")
    rows = [
        ("layers", f"{mc.get('num_hidden_layers')} ({mc.get('first_k_dense_replace')} dense, then MoE) + "
                   f"{mc.get('num_nextn_predict_layers')} MTP layer"),
        ("hidden / vocab", f"{mc.get('hidden_size')} / {mc.get('vocab_size')} (byte-level BPE, GLM special tokens)"),
        ("attention", f"MLA: {mc.get('num_attention_heads')} heads, q_lora {mc.get('q_lora_rank')}, kv_lora "
                      f"{mc.get('kv_lora_rank')}, nope/rope/v {mc.get('qk_nope_head_dim')}/{mc.get('qk_rope_head_dim')}/"
                      f"{mc.get('v_head_dim')}, interleaved RoPE θ={mc.get('rope_parameters', {}).get('rope_theta')}"),
        ("DSA indexer", f"{mc.get('index_n_heads')} heads × {mc.get('index_head_dim')}, top-k {mc.get('index_topk')} "
                        f"(training context {T})"),
        ("MoE", f"{mc.get('n_routed_experts')} routed experts of width {mc.get('moe_intermediate_size')}, top-"
                f"{mc.get('num_experts_per_tok')}, {mc.get('n_shared_experts')} shared; sigmoid routing with "
                f"correction bias (noaux_tc), normalized, × {mc.get('routed_scaling_factor')}"),
        ("dense MLP", f"width {mc.get('intermediate_size')}"),
    ]
    for k, v in rows:
        w(f"| {k} | {v} |")
    w("")
    w("## Recipe\n")
    w("```\nscripts/train_reference.sh      # = the three commands below, resumable\n"
      "demolish corpus build --out data/corpus\n"
      "demolish tokenizer train data/corpus --vocab 8192 --out models/reference/tokenizer.json\n"
      "demolish train --config configs/reference.json --data data/corpus --out models/reference\n```\n")
    if corpus:
        w("Corpus (deterministic 94/3/3 % split by document hash; tokens with this tokenizer, one "
          "`<|endoftext|>` per document):\n")
        w("| split | domain | documents | bytes |\n|---|---|---|---|")
        for split in ("train", "val", "test"):
            for dom, v in corpus.get("splits", {}).get(split, {}).items():
                if dom != "total":
                    w(f"| {split} | {dom} | {v.get('documents')} | {v.get('bytes')} |")
        w("")
    w(f"Training: {steps} optimizer steps of {B} windows × {T} tokens = **{steps * B * T / 1e6:.1f} M tokens** "
      f"seen (stages: " + ", ".join(f"{s['mode']} {s['steps']}" for s in tr.get("stages", [])) + "); AdamW "
      f"(β {tr.get('beta1')}/{tr.get('beta2')}, wd {tr.get('weight_decay')}), lr {tr.get('lr')} with "
      f"{tr.get('warmup')} warmup steps then cosine to {tr.get('min_lr_ratio')}×, clip {tr.get('clip')}, MTP loss "
      f"weight {tr.get('mtp_weight')}, sequence balance loss α {tr.get('balance_alpha')}, bias update "
      f"{tr.get('bias_update_rate')} (auxiliary-loss-free balancing), domain mix {tr.get('domains')}, seed "
      f"{tr.get('seed')}. The full config is `configs/reference.json`; the indexer follows DeepSeek-V3.2: "
      "dense training, then a warm-up where only the indexers learn (KL to the attention's head-averaged "
      "distribution), then sparse training over the indexer's top-k.\n")
    runs = log_runs(os.path.join(m, "train_log.jsonl"))
    if recipe:
        train_s = sum(r[2] for r in runs) if runs else recipe.get("train_s", 0)   # every run, resumes included
        total = recipe.get("corpus_s", 0) + recipe.get("tokenizer_s", 0) + train_s
        w(f"Wall time on this machine ({recipe.get('threads')} cores, Intel Xeon Sapphire Rapids VM): corpus "
          f"{recipe.get('corpus_s', 0):.1f} s, tokenizer {recipe.get('tokenizer_s', 0):.1f} s, training "
          f"{train_s / 3600:.2f} h; **total {total / 3600:.2f} h**.\n")
    if len(runs) > 1:
        w(f"Training ran in {len(runs)} runs (" + "; ".join(
            f"steps {a}-{b}: {t / 3600:.2f} h" for a, b, t in runs) + "): each resume restarts from the last "
          "checkpoint (every " + str(tr.get("checkpoint_every")) + " steps) with the same weights, optimizer "
          "state, data position and RNG, so steps logged twice have identical losses; the time of the "
          "repeated steps is counted.\n")
    if entries:
        tps = [e["tok_per_s"] for e in entries if e.get("tok_per_s")]
        by_stage = {}
        for en in entries:
            by_stage.setdefault(en["stage"], []).append(en["tok_per_s"])
        w("Throughput (median of the logged intervals): " + ", ".join(
            f"{k} {statistics.median(v):.0f} tok/s" for k, v in by_stage.items()) + ".\n")
        last = entries[-1]
        w(f"Last logged step {last['step']}: train-batch loss {last['main']:.3f} (MTP {last['mtp']:.3f}).\n")
        if plot_loss(entries, os.path.join(m, "loss.png")):
            w("![training loss](loss.png)\n")
    if scaling:
        w("Scaling: " + scaling.get("text", "") + "\n")

    w("## Held-out results (test split)\n")
    if ppl:
        w(f"Loss per token (nats) and bits per byte, windows of {ppl.get('ctx')} tokens; the DSA indexer keeps "
          f"{mc.get('index_topk')} keys per query, so positions past {mc.get('index_topk')} attend sparsely:\n")
        w("| domain | tokens | loss (sparse, as served) | loss (dense attention) | Δ | bits/byte |\n|---|---|---|---|---|---|")
        groups = dict(ppl.get("sources", {}))
        groups["all"] = ppl.get("total", {})
        for dom, v in groups.items():
            dv = (ppl_dense.get("sources", {}).get(dom) if dom != "all" else ppl_dense.get("total")) or {}
            d = v.get("loss", 0) - dv.get("loss", 0) if dv else None
            w(f"| {dom} | {v.get('tokens')} | {fmt(v.get('loss'))} | {fmt(dv.get('loss'))} | "
              f"{fmt(d, 5) if d is not None else 'n/a'} | {fmt(v.get('bits_per_byte'), 3)} |")
        w("")
    if reasoning:
        w(f"Reasoning (held-out problems from the test split, greedy, up to {reasoning.get('max_new', 768)} new "
          f"tokens): **exact match {100 * reasoning.get('exact_match', 0):.1f}%** of {reasoning.get('problems')} "
          f"(target ≥ 80%); completions that close `</think>`: {100 * reasoning.get('closed_think', 0):.1f}%.\n")
        if reasoning.get("exact_match", 0) < 0.8:
            w("Below the target. The model learned the trace's format (it closes `</think>` in "
              f"{100 * reasoning.get('closed_think', 0):.1f}% of completions and writes the column-by-column "
              "steps) but not to carry the question's operands into the trace: the reasoning sample below "
              "restates other numbers than the question's. Copying digits needs more training tokens than this "
              "recipe's 15 M (or a tokenizer that splits numbers into digits); that is the next recipe change.\n")
        kinds = reasoning.get("exact_match_by_kind", {})
        if kinds:
            w("| kind | exact match |\n|---|---|")
            for k, v in kinds.items():
                w(f"| {k} | {100 * v:.1f}% |")
            w("")
    if routing:
        srcs = routing["sources"]
        layers = [i for i, row in enumerate(srcs[0]["counts"]) if row]
        w("Expert load balance (max/mean load over the routed experts, all test tokens) and how differently "
          "the domains route (Jensen-Shannon divergence between two domains' expert-usage distributions, "
          "bits; 0 = identical, 1 = disjoint):\n")
        names = [s["source"] for s in srcs]
        pairs = [(i, j) for i in range(len(srcs)) for j in range(i + 1, len(srcs))]
        w("| layer | max/mean load | " + " | ".join(f"JS {names[i]}–{names[j]}" for i, j in pairs) + " |")
        w("|---|---|" + "---|" * len(pairs))
        for l in layers:
            tot = [sum(s["counts"][l][e] for s in srcs) for e in range(len(srcs[0]["counts"][l]))]
            mm = max(tot) / (sum(tot) / len(tot)) if sum(tot) else float("nan")
            js = [js_divergence(srcs[i]["counts"][l], srcs[j]["counts"][l]) for i, j in pairs]
            w(f"| {l} | {mm:.2f} | " + " | ".join(f"{x:.3f}" for x in js) + " |")
        w("")
        if plot_routing(routing, os.path.join(m, "routing.png")):
            w("![expert usage per domain](routing.png)\n")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    reap = load(os.path.join(e, "reap.json"), {})
    if reap.get("students"):
        from reap_table import table
        w("## Expert pruning (REAP and baselines)\n")
        w("`scripts/reap_results.sh`: calibrate on the train split (the model's true gate unless noted), "
          "plan per criterion, prune byte-exactly, then KL(this model ‖ pruned) on the test split. Uniform "
          "plans remove the same share from every MoE layer, the MTP layer included; non-uniform plans keep "
          "the same total by water-filling on saliency.\n")
        w(table(reap) + "\n")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    for title, name, cmd in (("Loop rate: teacher vs REAP-pruned, and sampler guardrails", "loops",
                              "scripts/loops_study.sh"),
                             ("Router-KD healing", "heal", "scripts/heal_study.sh")):
        notes = os.path.join(e, f"{name}_notes.md")
        study = load(os.path.join(e, f"{name}.json"), {})
        if not os.path.exists(notes) and not study:
            continue
        w(f"## {title}\n")
        w(f"Made by `{cmd}`; numbers in `eval/{name}.json`.\n")
        if os.path.exists(notes):
            w(open(notes, encoding="utf-8").read().strip() + "\n")
        if study.get("summaries"):
            from loops_tables import rates_table, source_table, compare_table, ordered
            w(rates_table(ordered(study["summaries"])) + "\n")
            w(source_table(ordered(study["summaries"]), "loop") + "\n")
            w(compare_table(study["compare"], "loop") + "\n")
            w(compare_table(study["compare"], "fail") + "\n")
        term = load(os.path.join(e, f"{name}_reasoning.json"), {})
        if term.get("summaries"):
            from loops_tables import termination_table, ordered
            w("Reasoning prompts only (700), token cap 512:\n")
            w(termination_table(ordered(term["summaries"])) + "\n")
        if study.get("summaries"):
            from loops_tables import plot
            if plot(study["summaries"], os.path.join(m, f"{name}.png")):
                w(f"![loop rate per model and sampler]({name}.png)\n")
    samples = os.path.join(e, "samples.txt")
    if os.path.exists(samples):
        w("## Samples\n")
        w("```\n" + open(samples, encoding="utf-8", errors="replace").read().strip() + "\n```\n")
    w("## Files\n")
    w("`config.json`, `model.safetensors` (bf16; `e_score_correction_bias` f32), `tokenizer.json`, "
      "`generation_config.json`, `tokenizer_config.json`, `train_log.jsonl` (every logged step: losses, lr, "
      "gradient norm, tokens/s, per-layer max/mean expert load), `eval/` (the measurements above), "
      "`loss.png`, `routing.png`. Regenerate the card with `scripts/model_card.sh`.\n")
    with open(os.path.join(m, "MODEL_CARD.md"), "w") as f:
        f.write("\n".join(out))
    print("wrote", os.path.join(m, "MODEL_CARD.md"))


if __name__ == "__main__":
    main()
