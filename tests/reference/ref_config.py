"""config.json -> a flat, validated description of a GLM-MoE-DSA / DeepSeek-V3(.2) model.

What it is for: ref_model.py needs every architectural switch resolved once (defaults,
the two RoPE config forms, YaRN frequencies, per-layer expert counts, per-layer MLP kind,
per-layer indexer kind). Each rule cites the Hugging Face code it follows (transformers
configuration_deepseek_v3 / _v32 / glm_moe_dsa and modeling_rope_utils) or the section of
/work/shared/research/arch.md and /work/notes/contract.md. `head_dim` in config.json is
ignored on purpose (arch.md §1.1, pitfall 7).
"""
import math
from dataclasses import dataclass, field

import numpy as np

# Per-model_type defaults for fields a config may omit (HF config classes' defaults).
MODEL_DEFAULTS = {
    "glm_moe_dsa": {"rms_norm_eps": 1e-5, "index_n_heads": 32, "index_head_dim": 128,
                    "index_topk": 2048, "indexer_rope_interleave": True,
                    "routed_scaling_factor": 2.5},
    "deepseek_v32": {"rms_norm_eps": 1e-6, "index_n_heads": 64, "index_head_dim": 128,
                     "index_topk": 2048, "indexer_rope_interleave": False,
                     "routed_scaling_factor": 2.5},
    "deepseek_v3": {"rms_norm_eps": 1e-6, "routed_scaling_factor": 2.5},
}
DSA_MODEL_TYPES = ("glm_moe_dsa", "deepseek_v32")


@dataclass
class Config:
    vocab: int
    D: int                      # hidden_size
    L: int                      # num_hidden_layers (main decoder layers)
    H: int                      # num_attention_heads
    q_lora: int                 # 0 = no q LoRA (q_proj)
    kv_lora: int
    nope: int
    rope: int
    v: int
    inter: int                  # dense MLP width
    moe_inter: int              # routed / shared expert width (per shared expert)
    n_shared: int
    experts: list               # E_l for l = 0..L+n_mtp-1 (0 for dense layers)
    top_k: int                  # num_experts_per_tok
    n_group: int
    topk_group: int
    norm_topk_prob: bool
    scaling: float              # routed_scaling_factor
    scoring: str                # sigmoid | softmax
    topk_method: str            # noaux_tc | group_limited_greedy | greedy
    eps: float                  # rms_norm_eps
    tie: bool
    inv_freq: np.ndarray        # [rope/2]
    attn_factor: float          # multiplies cos and sin (HF attention_factor)
    softmax_scale: float
    rope_interleave: bool
    dsa: bool
    index_topk: int
    IH: int
    ID: int
    indexer_interleave: bool
    indexer_types: list         # "full" / "shared" per main layer
    mlp_types: list             # "dense" / "sparse" per main layer
    n_mtp: int
    raw: dict = field(repr=False, default_factory=dict)

    @property
    def qk_head(self):
        return self.nope + self.rope


# ---------------------------------------------------------------- RoPE (modeling_rope_utils)

def get_mscale(scale, mscale=1.0):
    """YaRN magnitude factor (HF yarn_get_mscale / get_mscale)."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def rope_params(cfg):
    """Resolve the two config forms: nested rope_parameters (new HF) wins; else top-level
    rope_theta + rope_scaling ({"type"|"rope_type": ...}). Returns (theta, type, params)."""
    rp = cfg.get("rope_parameters")
    if isinstance(rp, dict) and rp:
        params = dict(rp)
        theta = params.get("rope_theta", cfg.get("rope_theta", 10000.0))
    else:
        params = dict(cfg.get("rope_scaling") or {})
        theta = cfg.get("rope_theta", 10000.0)
    rtype = params.get("rope_type", params.get("type", "default")) or "default"
    return float(theta), rtype, params


def default_inv_freq(theta, dim):
    """inv_freq[i] = theta^(-2i/dim) (HF _compute_default_rope_parameters)."""
    return 1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)


def yarn_inv_freq(theta, dim, params, max_pos):
    """HF _compute_yarn_parameters: blend interpolated (/factor) and extrapolated frequencies
    with a linear ramp between the correction dims of beta_fast and beta_slow, computed
    against original_max_position_embeddings. Returns (inv_freq, attention_factor)."""
    orig = params.get("original_max_position_embeddings") or max_pos
    factor = params.get("factor")
    if factor is None:
        factor = max_pos / orig
    factor = float(factor)
    af = params.get("attention_factor")
    ms, ms_all = params.get("mscale"), params.get("mscale_all_dim")
    if af is None:
        af = get_mscale(factor, ms) / get_mscale(factor, ms_all) if (ms and ms_all) \
            else get_mscale(factor)
    beta_fast = params.get("beta_fast") or 32
    beta_slow = params.get("beta_slow") or 1

    def corr_dim(n_rot):
        return dim * math.log(orig / (n_rot * 2 * math.pi)) / (2 * math.log(theta))

    low, high = corr_dim(beta_fast), corr_dim(beta_slow)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001                      # HF: prevent a zero-width ramp
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    pos_freqs = theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    extrap = 1.0 - ramp                    # HF inv_freq_extrapolation_factor
    inv = (1.0 / (factor * pos_freqs)) * (1.0 - extrap) + (1.0 / pos_freqs) * extrap
    return inv, float(af)


def resolve_rope(cfg, rope_dim, qk_head):
    """(inv_freq, attention_factor, softmax_scale). Softmax scale follows DeepseekV3Attention:
    qk_head^-0.5, times get_mscale(factor, mscale_all_dim)^2 when YaRN sets mscale_all_dim."""
    theta, rtype, params = rope_params(cfg)
    scale = qk_head ** -0.5
    if rtype == "default":
        return default_inv_freq(theta, rope_dim), 1.0, scale
    if rtype != "yarn":
        raise ValueError(f"config.json: rope type {rtype!r} not supported (default, yarn)")
    inv, af = yarn_inv_freq(theta, rope_dim, params, cfg.get("max_position_embeddings", 4096))
    ms_all = params.get("mscale_all_dim", 0)
    if ms_all:
        factor = params.get("factor") or 1.0
        scale *= get_mscale(float(factor), ms_all) ** 2
    return inv, af, scale


# ---------------------------------------------------------------- per-layer kinds

def indexer_types(cfg, n_layers):
    """HF GlmMoeDsaConfig.__post_init__: explicit indexer_types, else index_topk_pattern
    ('F'/'S'), else layer i full iff max(i - offset + 1, 0) % freq == 0 (freq 1, offset 2)."""
    it = cfg.get("indexer_types")
    if it is None:
        pat = cfg.get("index_topk_pattern")
        if pat is not None:
            it = [{"F": "full", "S": "shared"}[c] for c in pat] if isinstance(pat, str) \
                else list(pat)
        else:
            freq = max(int(cfg.get("index_topk_freq", 1) or 1), 1)
            off = int(cfg.get("index_skip_topk_offset", 2))
            it = ["full" if max(i - off + 1, 0) % freq == 0 else "shared"
                  for i in range(n_layers)]
    it = list(it)[:n_layers]
    if len(it) != n_layers or any(x not in ("full", "shared") for x in it):
        raise ValueError(f"config.json: bad indexer_types {it}")
    if it and it[0] != "full":
        raise ValueError("config.json: layer 0 is 'shared' but no earlier full indexer exists")
    return it


def mlp_types(cfg, n_layers):
    """mlp_layer_types if given ("dense"/"sparse"); else DeepseekV3 rule: MoE iff
    n_routed_experts and l >= first_k_dense_replace and l % moe_layer_freq == 0."""
    mt = cfg.get("mlp_layer_types")
    if mt:
        alias = {"dense": "dense", "sparse": "sparse", "moe": "sparse"}
        out = [alias[x] for x in list(mt)[:n_layers]]
        if len(out) != n_layers:
            raise ValueError(f"config.json: mlp_layer_types has {len(mt)} entries, need {n_layers}")
        return out
    fk = int(cfg.get("first_k_dense_replace", 0) or 0)
    freq = int(cfg.get("moe_layer_freq", 1) or 1)
    moe = bool(cfg.get("n_routed_experts"))
    return ["sparse" if moe and l >= fk and l % freq == 0 else "dense" for l in range(n_layers)]


def experts_per_layer(cfg, n_total, kinds):
    """E_l = num_routed_experts_per_layer[l] when present (length L + n_mtp), else
    n_routed_experts; 0 for dense layers. kinds covers the main layers; MTP layers are MoE."""
    per = cfg.get("num_routed_experts_per_layer")
    base = int(cfg.get("n_routed_experts") or 0)
    if per is not None and len(per) < n_total:
        raise ValueError(f"config.json: num_routed_experts_per_layer has {len(per)} entries, "
                         f"need {n_total}")
    out = []
    for l in range(n_total):
        sparse = l >= len(kinds) or kinds[l] == "sparse"
        out.append((int(per[l]) if per is not None else base) if sparse else 0)
    return out


# ---------------------------------------------------------------- top level

def parse_config(cfg):
    """Validate and flatten a config.json dict into a Config (raises ValueError)."""
    mt = cfg.get("model_type", "")
    dflt = MODEL_DEFAULTS.get(mt, {})

    def get(key, default=None):
        v = cfg.get(key)
        return dflt.get(key, default) if v is None else v

    if get("hidden_act", "silu") != "silu":
        raise ValueError(f"config.json: hidden_act {cfg.get('hidden_act')} not supported")
    if cfg.get("attention_bias") or cfg.get("mlp_bias"):
        raise ValueError("config.json: attention_bias / mlp_bias not supported")
    L = int(cfg["num_hidden_layers"])
    n_mtp = int(get("num_nextn_predict_layers", 0) or 0)
    nope, rope = int(cfg["qk_nope_head_dim"]), int(cfg["qk_rope_head_dim"])
    v = int(cfg["v_head_dim"])
    inv, af, scale = resolve_rope(cfg, rope, nope + rope)
    kinds = mlp_types(cfg, L)
    dsa = mt in DSA_MODEL_TYPES or any(k in cfg for k in ("index_topk", "index_n_heads"))
    c = Config(
        vocab=int(cfg["vocab_size"]), D=int(cfg["hidden_size"]), L=L,
        H=int(cfg["num_attention_heads"]), q_lora=int(cfg.get("q_lora_rank") or 0),
        kv_lora=int(cfg["kv_lora_rank"]), nope=nope, rope=rope, v=v,
        inter=int(get("intermediate_size", 0)), moe_inter=int(get("moe_intermediate_size", 0)),
        n_shared=int(get("n_shared_experts", 0) or 0),
        experts=experts_per_layer(cfg, L + n_mtp, kinds),
        top_k=int(get("num_experts_per_tok", 0) or 0),
        n_group=int(get("n_group", 1) or 1), topk_group=int(get("topk_group", 1) or 1),
        norm_topk_prob=bool(get("norm_topk_prob", True)),
        scaling=float(get("routed_scaling_factor", 1.0)),
        scoring=get("scoring_func", "sigmoid"), topk_method=get("topk_method", "noaux_tc"),
        eps=float(get("rms_norm_eps", 1e-6)), tie=bool(get("tie_word_embeddings", False)),
        inv_freq=inv, attn_factor=af, softmax_scale=scale,
        rope_interleave=bool(get("rope_interleave", True)),
        dsa=dsa, index_topk=int(get("index_topk", 0) or 0),
        IH=int(get("index_n_heads", 0) or 0), ID=int(get("index_head_dim", 0) or 0),
        indexer_interleave=bool(get("indexer_rope_interleave", False)),
        indexer_types=indexer_types(cfg, L) if dsa else ["full"] * L,
        mlp_types=kinds, n_mtp=n_mtp, raw=cfg)
    validate(c)
    return c


def validate(c):
    """Cross-field checks that the forward pass relies on."""
    if c.scoring not in ("sigmoid", "softmax"):
        raise ValueError(f"config.json: scoring_func {c.scoring!r} not supported")
    if c.topk_method not in ("noaux_tc", "group_limited_greedy", "greedy"):
        raise ValueError(f"config.json: topk_method {c.topk_method!r} not supported")
    if c.rope % 2:
        raise ValueError("config.json: qk_rope_head_dim must be even")
    for l, e in enumerate(c.experts):
        if e and (e % c.n_group or c.top_k > e):
            raise ValueError(f"config.json: layer {l}: {e} experts vs n_group {c.n_group}, "
                             f"top_k {c.top_k}")
    if c.dsa and (c.q_lora == 0 or c.ID < c.rope or c.IH <= 0 or c.index_topk <= 0):
        raise ValueError("config.json: DSA indexer needs q_lora_rank, index_head_dim >= "
                         "qk_rope_head_dim, index_n_heads > 0, index_topk > 0")


if __name__ == "__main__":
    # `ref_config.py MODEL_DIR`: print "vocab n_mtp dsa index_topk" for shell scripts.
    import json
    import os
    import sys
    with open(os.path.join(sys.argv[1], "config.json")) as f:
        c = parse_config(json.load(f))
    print(c.vocab, c.n_mtp, int(c.dsa), c.index_topk)
