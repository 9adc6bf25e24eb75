#!/usr/bin/python3
"""Write a complete random Hugging Face model directory for a config given as JSON.

What it is for: it gives the C loader checkpoints that the C writer did not produce, in
every weight format of contract.md (f32, bf16, f16, fp8 blocks, nvfp4, mxfp4, or "mixed":
a random format per Linear), single-file or sharded with model.safetensors.index.json.
The quantizers are quant.py's own numpy encoders. No tokenizer is written: the logits
comparison feeds token ids directly.

  make_model.py [--config full|alt|smooth|cfg.json] --dtype DTYPE --seed S [--shard-mb N] OUT_DIR

Random scales (chosen so every feature matters numerically): Linear weights N(0, 1/fan_in),
except tiny inputs to the eps-sensitive norms (TINY_RMS below), embeddings N(0, 2e-3^2)
(N(0, 4/D) when tied, so the logits stay O(1)), norms U(0.7, 1.3), k_norm bias N(0, 0.1^2),
router N(0, 1/D) and a
correction bias N(0, 0.15^2) (about the spread of the sigmoid scores, so it changes the
selection), eh_proj N(0, 1/(2D)).
"""
import argparse
import copy
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quant  # noqa: E402
import st_io  # noqa: E402
from ref_config import parse_config  # noqa: E402

DTYPES = ("f32", "bf16", "f16", "fp8", "nvfp4", "mxfp4", "mixed")
MIXED_LINEAR = ("f32", "bf16", "f16", "fp8", "nvfp4", "mxfp4")
MIXED_PLAIN = ("F32", "BF16", "F16")
BIAS_STD = 0.15
# Inputs of the eps-sensitive norms are made tiny so that every eps is visible in the logits:
# q_a_proj, the latent rows of kv_a_proj_with_mqa and indexer.wk give outputs of rms ~1.7e-3
# (mean square ~3e-6, between the latent/k_norm eps 1e-6 and a typical rms_norm_eps 1e-5),
# and an untied embedding of std 2e-3 does the same for the first input_layernorm and enorm.
TINY_RMS = 1.7e-3
TINY_EMBED = 2e-3

# Built-in configs (configs/*.json):
#   full.json   every feature on: MLA + YaRN (nested rope_parameters, attention_factor != 1),
#               DSA indexer with index_topk << T, shared-indexer layers, n_group > 1 routing
#               (noaux_tc), shared experts, a dense layer, per-layer expert counts, MTP.
#               Dims give FP8 several and partial 128-blocks (q_b out 192, dense width 160)
#               and make every K a multiple of 32. head_dim is a decoy (must be ignored).
#   alt.json    the other switches: DeepSeek-V3.2 (half-split indexer RoPE), legacy
#               rope_theta + rope_scaling YaRN, softmax scoring + group_limited_greedy, no
#               correction bias, norm_topk_prob false, 2 shared experts, explicit
#               mlp_layer_types overriding first_k_dense_replace, indexer_types derived from
#               index_topk_freq / index_skip_topk_offset, tied embeddings.
#   smooth.json DeepSeek-V3 without DSA, q_proj (no q LoRA), half-split main RoPE,
#               moe_layer_freq 2, every expert selected: no discrete decision anywhere, so a
#               bf16-activation fast path can be held to a tight tolerance.
CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def load_config(name_or_path):
    """A config by built-in name (full, alt, smooth) or by path."""
    path = os.path.join(CONFIG_DIR, name_or_path + ".json") \
        if os.path.sep not in name_or_path and not name_or_path.endswith(".json") else name_or_path
    with open(path) as f:
        return json.load(f)


FULL_CONFIG = load_config("full")

QUANT_CONFIG = {
    "fp8": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
            "weight_block_size": [128, 128]},
    "nvfp4": {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16},
    "mxfp4": {"quant_method": "mxfp4"},
}


class Writer:
    """Collects tensors; stores each Linear in the chosen (or, for 'mixed', a random) format
    and every never-quantized tensor as a plain float of the model's dtype."""

    def __init__(self, dtype, rng):
        self.dtype, self.rng, self.t = dtype, rng, {}
        self.plain_dt = {"f32": "F32", "f16": "F16"}.get(dtype, "BF16")

    def _fmt(self, k):
        fmt = self.rng.choice(MIXED_LINEAR) if self.dtype == "mixed" else self.dtype
        return fmt if quant.fits(fmt, k) else "bf16"

    def linear(self, name, n, k, std=None):
        """std: scalar, or [n, 1] per output row; default 1/sqrt(k)."""
        w = self.rng.standard_normal((n, k)) * (k ** -0.5 if std is None else std)
        mx_dt = "F8_E8M0" if self.rng.random() < 0.5 else "U8"
        for suf, t in quant.quantize_linear(w, self._fmt(k), mx_dt).items():
            self.t[name + suf] = t

    def plain(self, name, arr, dt=None):
        dt = dt or (self.rng.choice(MIXED_PLAIN) if self.dtype == "mixed" else self.plain_dt)
        enc = {"F32": lambda a: a.astype(np.float32), "F16": lambda a: a.astype(np.float16),
               "BF16": quant.bf16_encode}[dt]
        self.t[name] = st_io.make_tensor(dt, enc(np.asarray(arr, dtype=np.float64)))

    def norm(self, name, n):
        self.plain(name, self.rng.uniform(0.7, 1.3, n))

    def gauss(self, name, shape, std):
        self.plain(name, self.rng.standard_normal(shape) * std)


def write_attention(wr, c, pre, with_indexer):
    D, H, r, qk = c.D, c.H, c.kv_lora, c.qk_head
    if c.q_lora:
        wr.linear(pre + "q_a_proj", c.q_lora, D, TINY_RMS * D ** -0.5)
        wr.norm(pre + "q_a_layernorm.weight", c.q_lora)
        wr.linear(pre + "q_b_proj", H * qk, c.q_lora)
    else:
        wr.linear(pre + "q_proj", H * qk, D)
    rows = np.r_[np.full(r, TINY_RMS), np.ones(c.rope)][:, None] * D ** -0.5
    wr.linear(pre + "kv_a_proj_with_mqa", r + c.rope, D, rows)   # latent rows tiny, k_pe not
    wr.norm(pre + "kv_a_layernorm.weight", r)
    wr.linear(pre + "kv_b_proj", H * (c.nope + c.v), r)
    wr.linear(pre + "o_proj", D, H * c.v)
    if with_indexer:
        ip = pre + "indexer."
        wr.linear(ip + "wq_b", c.IH * c.ID, c.q_lora)
        wr.linear(ip + "wk", c.ID, D, TINY_RMS * D ** -0.5)
        wr.norm(ip + "k_norm.weight", c.ID)
        wr.gauss(ip + "k_norm.bias", (c.ID,), 0.1)
        wr.gauss(ip + "weights_proj.weight", (c.IH, D), D ** -0.5)


def write_mlp(wr, c, pre, l, sparse):
    D = c.D
    if not sparse:
        for nm, n, k in (("gate_proj", c.inter, D), ("up_proj", c.inter, D),
                         ("down_proj", D, c.inter)):
            wr.linear(pre + nm, n, k)
        return
    E, I = c.experts[l], c.moe_inter
    wr.gauss(pre + "gate.weight", (E, D), D ** -0.5)
    if c.topk_method == "noaux_tc":     # the correction bias belongs to noaux_tc routing
        wr.plain(pre + "gate.e_score_correction_bias", wr.rng.standard_normal(E) * BIAS_STD,
                 "F32")
    groups = [f"experts.{e}." for e in range(E)]
    widths = [I] * E
    if c.n_shared:
        groups.append("shared_experts.")
        widths.append(I * c.n_shared)
    for g, w in zip(groups, widths):
        wr.linear(pre + g + "gate_proj", w, D)
        wr.linear(pre + g + "up_proj", w, D)
        wr.linear(pre + g + "down_proj", D, w)


def write_layer(wr, c, l, with_indexer, sparse):
    pre = f"model.layers.{l}."
    wr.norm(pre + "input_layernorm.weight", c.D)
    wr.norm(pre + "post_attention_layernorm.weight", c.D)
    write_attention(wr, c, pre + "self_attn.", with_indexer)
    write_mlp(wr, c, pre + "mlp.", l, sparse)


def build_tensors(c, dtype, seed, mtp_own_head=False):
    """All tensors of a random model for Config c. mtp_own_head also writes the optional
    model.layers.L.shared_head.head.weight and .embed_tokens.weight."""
    wr = Writer(dtype, np.random.default_rng(seed))
    V, D = c.vocab, c.D
    # tied: the embedding is also the head, so keep the logits O(1) (std ~2)
    wr.gauss("model.embed_tokens.weight", (V, D), 2 * D ** -0.5 if c.tie else TINY_EMBED)
    wr.norm("model.norm.weight", D)
    if not c.tie:
        wr.gauss("lm_head.weight", (V, D), D ** -0.5)
    for l in range(c.L):
        write_layer(wr, c, l, c.dsa and c.indexer_types[l] == "full", c.mlp_types[l] == "sparse")
    for j in range(c.n_mtp):       # only the first MTP layer is used; all are written
        L = c.L + j
        pre = f"model.layers.{L}."
        write_layer(wr, c, L, c.dsa, True)
        for nm in ("enorm.weight", "hnorm.weight", "shared_head.norm.weight"):
            wr.norm(pre + nm, D)
        wr.gauss(pre + "eh_proj.weight", (D, 2 * D), (2 * D) ** -0.5)
        if mtp_own_head:
            wr.gauss(pre + "shared_head.head.weight", (V, D), D ** -0.5)
            wr.gauss(pre + "embed_tokens.weight", (V, D), TINY_EMBED)
    return wr.t


def write_model(out_dir, cfg_dict, dtype, seed, shard_mb=0.0, mtp_own_head=False):
    """Write config.json, generation_config.json and the safetensors. Returns file list."""
    cfg_dict = copy.deepcopy(cfg_dict)
    c = parse_config(cfg_dict)
    tensors = build_tensors(c, dtype, seed, mtp_own_head)
    if dtype in QUANT_CONFIG:
        cfg_dict["quantization_config"] = QUANT_CONFIG[dtype]
    os.makedirs(out_dir, exist_ok=True)
    files = st_io.write_dir(out_dir, tensors, int(shard_mb * (1 << 20)),
                            {"writer": "make_model.py", "dtype": dtype, "seed": seed})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg_dict, f, indent=2)
    gen = {"bos_token_id": cfg_dict.get("bos_token_id"),
           "eos_token_id": cfg_dict.get("eos_token_id"), "do_sample": False}
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
    return files + ["config.json", "generation_config.json"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--config", default="full",
                    help="built-in config name (full, alt, smooth) or a config.json path")
    ap.add_argument("--dtype", choices=DTYPES, default="f32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard-mb", type=float, default=0.0,
                    help="shard size in MiB (0: single model.safetensors)")
    ap.add_argument("--mtp-own-head", action="store_true",
                    help="also write the MTP layer's optional shared_head.head / embed_tokens")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
        files = write_model(args.out_dir, cfg, args.dtype, args.seed, args.shard_mb,
                            args.mtp_own_head)
    except (ValueError, KeyError, OSError) as e:
        print(f"make_model: error: {e}", file=sys.stderr)
        return 1
    print(f"make_model: wrote {args.out_dir} ({args.dtype}, seed {args.seed}): "
          f"{', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
