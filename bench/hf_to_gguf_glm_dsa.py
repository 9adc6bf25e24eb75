#!/usr/bin/python3
"""hf_to_gguf_glm_dsa — convert a GLM-MoE-DSA model directory to a GGUF for llama.cpp.

What it is for: the project's speed bar is llama.cpp running the *same* weights as demolish.
This script turns a demolish / Hugging Face `GlmMoeDsaForCausalLM` directory (config.json,
bf16/f16/f32 safetensors, tokenizer.json) into a GGUF of llama.cpp's `glm-dsa` architecture,
which bench/run_llamacpp.sh then benchmarks with llama-bench. It is our own code; the only
llama.cpp piece it uses is the `gguf` Python package, imported at run time from a llama.cpp
checkout (PYTHONPATH=<llama.cpp>/gguf-py), never vendored.

    PYTHONPATH=$LLAMACPP_SRC/gguf-py /usr/bin/python3 bench/hf_to_gguf_glm_dsa.py MODEL_DIR OUT.gguf

Layout decisions (shapes are numpy [slow..fast]; ggml lists them reversed):
- Names come from gguf.TENSOR_NAMES (MODEL_TENSOR enums), keys from GGUFWriter's add_* methods.
- Weights keep their dtype (bf16 stays GGML BF16, no re-rounding). 1-D tensors (norms, biases),
  the router `mlp.gate.weight` and `indexer.weights_proj` are written F32, as llama.cpp's own
  converter does (the router and indexer weights run in f32 there).
- MLA: kv_b_proj [H*(nope+v), r] is viewed [H, nope+v, r] and split into attn_k_b = K part
  transposed per head, [H, r, nope] (ggml {nope, r, H}), and attn_v_b = V part [H, v, r]
  (ggml {r, v, H}); head_count_kv = 1, key_length = r + rope, value_length = r,
  key_length_mla = nope + rope, value_length_mla = v (llama.cpp runs the absorbed form).
- Routed experts are stacked per layer in expert order: [E, F, D] (gate, up), [E, D, F] (down).
- No RoPE permutation: glm-dsa ropes adjacent pairs (GPT-J style) in both MLA and the indexer,
  as GLM does; configs with rope_interleave/indexer_rope_interleave false are refused.
- The MTP layer (model.layers.L) is written as blk.L with nextn.* tensors and
  nextn_predict_layers (block_count = L + 1), unless --no-mtp. llama.cpp loads it only when
  MTP speculative decoding is asked for, so benchmarks do not touch it.
- indexer.types is always written (per trunk layer, True = "full"), derived from the config
  like HF (indexer_types, else index_topk_pattern, else index_topk_freq/offset): llama.cpp's
  own default without the key depends on context_length (all full below 1M).
- Tokenizer: "gpt2" BPE with pre-tokenizer "glm4" (the GLM-4.5 split regex), tokens padded to
  vocab_size with [PAD<i>] (UNUSED), specials as CONTROL, GLM special ids as llama.cpp's GLM
  converter sets them (bos [gMASK], eot <|user|>, eom <|observation|>, unk <|endoftext|>).

Refused (llama.cpp's glm-dsa cannot express them): per-layer expert counts that differ,
MoE layers that are not "all after a dense prefix", q_lora_rank null, no indexer, an
index_head_dim that is not a power of two >= 64, a "shared" indexer in layer 0,
group_limited_greedy routing, more than one MTP layer, non-pair-interleaved RoPE, and
quantized (fp8 / nvfp4 / mxfp4) checkpoints (init them with --dtype bf16).
--outtype f32 writes every tensor F32 (bf16 widened exactly): llama.cpp then computes in f32,
which is how its logits are compared with demolish's to ~1e-4 (bf16 GGUFs round activations).
YaRN: llama.cpp's glm-dsa ignores yarn_log_multiplier (mscale_all_dim), so instead of it the
converter writes rope.scaling.attn_factor and folds the rest of HF's softmax scale into the F32
q_a_layernorm weights (yarn_mapping); the logits then match HF/demolish.
Differences no GGUF key can remove (llama.cpp's glm-dsa graph): q_a/kv_a_layernorm use
rms_norm_eps instead of HF's 1e-6, the indexer k_norm LayerNorm uses eps 0 (glm-dsa never loads
layer_norm_epsilon) instead of 1e-6, and indexer top-k ties are broken by std::partial_sort
(HF/demolish: lower position). They only matter next to a routing or top-k near-tie.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("hf_to_gguf_glm_dsa: cannot import the gguf package; run with "
             "PYTHONPATH=<llama.cpp checkout>/gguf-py")

T = gguf.MODEL_TENSOR
ARCH = gguf.MODEL_ARCH.GLM_DSA


class ConvertError(Exception):
    """A problem with the input model: printed as one line, exit status 1."""


# ---------------------------------------------------------------- safetensors (mmap)

ST_DTYPES = {"BF16": np.dtype("<u2"), "F16": np.dtype("<f2"), "F32": np.dtype("<f4")}


class StTensor:
    """One checkpoint tensor: dtype name, shape, and where its bytes are (file, offset)."""
    def __init__(self, path, dtype, shape, begin, end):
        self.path, self.dtype, self.shape, self.begin, self.end = path, dtype, tuple(shape), begin, end


def st_read_header(path):
    """Parse one .safetensors header -> dict name -> StTensor. Checks the header length and
    that every tensor's byte range lies in the file and matches its shape and dtype."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ConvertError(f"{path}: shorter than the 8-byte header length")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise ConvertError(f"{path}: header length {n} exceeds the file size {size}")
        header = json.loads(f.read(n).decode("utf-8"))
    header.pop("__metadata__", None)
    base, out = 8 + n, {}
    for name, h in header.items():
        b, e = (int(x) for x in h["data_offsets"])
        dt = h["dtype"]
        if dt not in ST_DTYPES:
            raise ConvertError(f"{path}: tensor {name} has dtype {dt}; only BF16/F16/F32 checkpoints "
                               f"are supported (init the model with --dtype bf16)")
        want = int(np.prod(h["shape"], dtype=np.int64)) * ST_DTYPES[dt].itemsize
        if not (0 <= b <= e <= size - base) or e - b != want:
            raise ConvertError(f"{path}: tensor {name}: bad data_offsets [{b}, {e}) for {want} bytes")
        out[name] = StTensor(path, dt, h["shape"], base + b, base + e)
    return out


def st_read_dir(model_dir):
    """All tensors of a model directory: model.safetensors.index.json shards if present,
    else every *.safetensors file. Returns dict name -> StTensor."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
    if not files:
        raise ConvertError(f"{model_dir}: no safetensors files")
    tensors = {}
    for fname in files:
        tensors.update(st_read_header(os.path.join(model_dir, fname)))
    return tensors


_maps = {}


def st_load(t):
    """The tensor's data as a read-only numpy array of its storage type (BF16 as uint16)."""
    if t.path not in _maps:
        _maps[t.path] = np.memmap(t.path, dtype=np.uint8, mode="r")
    return _maps[t.path][t.begin:t.end].view(ST_DTYPES[t.dtype]).reshape(t.shape)


# ---------------------------------------------------------------- dtype rules

# --outtype f32 sets this: every tensor F32 (bf16 widened exactly), for precision checks.
ALL_F32 = {"on": False}


def out_type(src_dtype, want_f32):
    """(numpy dtype, GGML raw type or None) a tensor is written as: F32 when want_f32 (or
    --outtype f32), else its own dtype (BF16 kept as raw uint16 with GGML type BF16)."""
    if want_f32 or ALL_F32["on"] or src_dtype == "F32":
        return np.dtype("<f4"), None
    if src_dtype == "F16":
        return np.dtype("<f2"), None
    return np.dtype("<u2"), gguf.GGMLQuantizationType.BF16


def convert(raw, src_dtype, want_f32):
    """Convert a storage array to what out_type() promised (bf16 -> f32 is exact)."""
    want_f32 = want_f32 or ALL_F32["on"]
    if not want_f32:
        return np.ascontiguousarray(raw)
    if src_dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32)


# ---------------------------------------------------------------- the tensor plan

# Per-layer tensors copied one to one: HF name after "model.layers.{l}." ->
# (MODEL_TENSOR, GGUF suffix, written as F32).
LAYER_TABLE = {
    "input_layernorm.weight":                    (T.ATTN_NORM, "weight", True),
    "post_attention_layernorm.weight":           (T.FFN_NORM, "weight", True),
    "self_attn.q_a_proj.weight":                 (T.ATTN_Q_A, "weight", False),
    "self_attn.q_a_layernorm.weight":            (T.ATTN_Q_A_NORM, "weight", True),
    "self_attn.q_b_proj.weight":                 (T.ATTN_Q_B, "weight", False),
    "self_attn.kv_a_proj_with_mqa.weight":       (T.ATTN_KV_A_MQA, "weight", False),
    "self_attn.kv_a_layernorm.weight":           (T.ATTN_KV_A_NORM, "weight", True),
    "self_attn.o_proj.weight":                   (T.ATTN_OUT, "weight", False),
    "self_attn.indexer.wq_b.weight":             (T.INDEXER_ATTN_Q_B, "weight", False),
    "self_attn.indexer.wk.weight":               (T.INDEXER_ATTN_K, "weight", False),
    "self_attn.indexer.k_norm.weight":           (T.INDEXER_K_NORM, "weight", True),
    "self_attn.indexer.k_norm.bias":             (T.INDEXER_K_NORM, "bias", True),
    "self_attn.indexer.weights_proj.weight":     (T.INDEXER_PROJ, "weight", True),
    "mlp.gate_proj.weight":                      (T.FFN_GATE, "weight", False),
    "mlp.up_proj.weight":                        (T.FFN_UP, "weight", False),
    "mlp.down_proj.weight":                      (T.FFN_DOWN, "weight", False),
    "mlp.gate.weight":                           (T.FFN_GATE_INP, "weight", True),
    "mlp.gate.e_score_correction_bias":          (T.FFN_EXP_PROBS_B, "bias", True),
    "mlp.shared_experts.gate_proj.weight":       (T.FFN_GATE_SHEXP, "weight", False),
    "mlp.shared_experts.up_proj.weight":         (T.FFN_UP_SHEXP, "weight", False),
    "mlp.shared_experts.down_proj.weight":       (T.FFN_DOWN_SHEXP, "weight", False),
    # MTP glue, only in layer L
    "eh_proj.weight":                            (T.NEXTN_EH_PROJ, "weight", False),
    "enorm.weight":                              (T.NEXTN_ENORM, "weight", True),
    "hnorm.weight":                              (T.NEXTN_HNORM, "weight", True),
    "shared_head.norm.weight":                   (T.NEXTN_SHARED_HEAD_NORM, "weight", True),
    "shared_head.head.weight":                   (T.NEXTN_SHARED_HEAD_HEAD, "weight", False),
    "embed_tokens.weight":                       (T.NEXTN_EMBED_TOKENS, "weight", False),
}

GLOBAL_TABLE = {
    "model.embed_tokens.weight": (T.TOKEN_EMBD, False),
    "model.norm.weight":         (T.OUTPUT_NORM, True),
    "lm_head.weight":            (T.OUTPUT, False),
}

EXPERT_PROJ = [("gate_proj", T.FFN_GATE_EXP), ("up_proj", T.FFN_UP_EXP), ("down_proj", T.FFN_DOWN_EXP)]


class Entry:
    """One GGUF tensor to write: name, numpy shape and dtype, GGML raw type, and a function
    producing its data (called once, while writing)."""
    def __init__(self, name, shape, dtype, raw_type, make):
        self.name, self.shape, self.dtype, self.raw_type, self.make = name, tuple(shape), dtype, raw_type, make

    @property
    def nbytes(self):
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def gguf_name(tensor, bid, suffix):
    return gguf.TENSOR_NAMES[tensor].format(bid=bid) + "." + suffix


def plan_copy(name, t, want_f32, scale=1.0):
    """Entry copying checkpoint tensor t (with the dtype rule) under GGUF name `name`;
    an F32 tensor may be multiplied by `scale` (the YaRN fold, see yarn_mapping)."""
    dtype, raw = out_type(t.dtype, want_f32)
    if scale != 1.0:
        assert raw is None and dtype == np.float32, name
        return Entry(name, t.shape, dtype, raw,
                     lambda: convert(st_load(t), t.dtype, want_f32) * np.float32(scale))
    return Entry(name, t.shape, dtype, raw, lambda: convert(st_load(t), t.dtype, want_f32))


def plan_kv_b(l, t, hp):
    """attn_k_b [H, r, nope] (K rows transposed per head) and attn_v_b [H, v, r] from
    kv_b_proj [H*(nope+v), r] (per head: nope K rows, then v V rows)."""
    H, nope, v, r = hp["H"], hp["nope"], hp["v"], hp["r"]
    if t.shape != (H * (nope + v), r):
        raise ConvertError(f"layer {l}: kv_b_proj has shape {list(t.shape)}, expected [{H * (nope + v)}, {r}]")
    dtype, raw = out_type(t.dtype, False)

    def heads():
        return convert(st_load(t), t.dtype, False).reshape(H, nope + v, r)
    return [Entry(gguf_name(T.ATTN_K_B, l, "weight"), (H, r, nope), dtype, raw,
                  lambda: np.ascontiguousarray(heads()[:, :nope, :].transpose(0, 2, 1))),
            Entry(gguf_name(T.ATTN_V_B, l, "weight"), (H, v, r), dtype, raw,
                  lambda: np.ascontiguousarray(heads()[:, nope:, :]))]


def plan_experts(l, tensors, n_expert, used):
    """The three stacked routed-expert tensors of layer l ([E, F, D] / [E, D, F])."""
    out = []
    for proj, tensor in EXPERT_PROJ:
        names = [f"model.layers.{l}.mlp.experts.{e}.{proj}.weight" for e in range(n_expert)]
        missing = [n for n in names if n not in tensors]
        if missing:
            raise ConvertError(f"layer {l}: missing {missing[0]} (and {len(missing) - 1} more)")
        parts = [tensors[n] for n in names]
        if len({(p.dtype, p.shape) for p in parts}) != 1:
            raise ConvertError(f"layer {l}: the experts' {proj} tensors differ in dtype or shape")
        used.update(names)
        dtype, raw = out_type(parts[0].dtype, False)
        out.append(Entry(gguf_name(tensor, l, "weight"), (n_expert,) + parts[0].shape, dtype, raw,
                         lambda parts=parts: np.stack([convert(st_load(p), p.dtype, False) for p in parts])))
    return out


def plan_layer(l, tensors, hp, used):
    """Every entry of layer l (trunk or MTP), in a fixed order."""
    prefix = f"model.layers.{l}."
    out = []
    for suffix, (tensor, gsuffix, want_f32) in LAYER_TABLE.items():
        name = prefix + suffix
        if name in tensors:
            scale = hp["q_a_norm_scale"] if tensor == T.ATTN_Q_A_NORM else 1.0
            out.append(plan_copy(gguf_name(tensor, l, gsuffix), tensors[name], want_f32, scale))
            used.add(name)
    kv_b = prefix + "self_attn.kv_b_proj.weight"
    if kv_b not in tensors:
        raise ConvertError(f"layer {l}: no {kv_b}")
    out += plan_kv_b(l, tensors[kv_b], hp)
    used.add(kv_b)
    if prefix + "mlp.gate.weight" in tensors:
        out += plan_experts(l, tensors, hp["E"], used)
    return out


def plan_tensors(tensors, hp, with_mtp):
    """The whole GGUF tensor list. Fails on any checkpoint tensor no rule consumed (a layout
    this converter does not know, e.g. q_proj without q_lora)."""
    used, out = set(), []
    for name, (tensor, want_f32) in GLOBAL_TABLE.items():
        if name in tensors:
            out.append(plan_copy(gguf.TENSOR_NAMES[tensor] + ".weight", tensors[name], want_f32))
            used.add(name)
    n_blocks = hp["L"] + (1 if with_mtp else 0)
    for l in range(n_blocks):
        out += plan_layer(l, tensors, hp, used)
    skipped = {n for n in tensors if not with_mtp and n.startswith(f"model.layers.{hp['L']}.")}
    left = sorted(set(tensors) - used - skipped)
    if left:
        raise ConvertError(f"{len(left)} checkpoint tensors have no GGUF mapping, e.g. {left[0]}")
    return out


# ---------------------------------------------------------------- config -> hyperparameters

def indexer_full_layers(cfg, L):
    """Per trunk layer, True if its indexer is "full" (computes its own top-k), per HF:
    indexer_types, else index_topk_pattern ('F'/'S'), else layer i is full iff
    max(i - index_skip_topk_offset + 1, 0) % index_topk_freq == 0 (defaults 1 and 2)."""
    types = cfg.get("indexer_types")
    if types is not None:
        if len(types) < L or any(t not in ("full", "shared") for t in types[:L]):
            raise ConvertError(f"config.json: indexer_types must list 'full'/'shared' for {L} layers")
        return [t == "full" for t in types[:L]]
    pattern = cfg.get("index_topk_pattern")
    if pattern:
        if len(pattern) != L or set(pattern) - {"F", "S"}:
            raise ConvertError(f"config.json: index_topk_pattern must be {L} letters F/S")
        return [c == "F" for c in pattern]
    freq, off = cfg.get("index_topk_freq", 1), cfg.get("index_skip_topk_offset", 2)
    return [max(i - off + 1, 0) % freq == 0 for i in range(L)]


def rope_params(cfg):
    """(rope_theta, yarn dict or None) from rope_parameters (nested) or rope_theta/rope_scaling."""
    rp = cfg.get("rope_parameters") or {}
    theta = rp.get("rope_theta", cfg.get("rope_theta", 10000.0))
    scaling = rp if rp.get("rope_type") == "yarn" else (cfg.get("rope_scaling") or {})
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind not in (None, "default", "yarn"):
        raise ConvertError(f"config.json: rope type {kind!r} is not supported")
    if kind != "yarn":
        return float(theta), None
    yarn = dict(scaling)                       # HF _compute_yarn_parameters defaults
    max_pos = cfg.get("max_position_embeddings", 4096)
    yarn["original_max_position_embeddings"] = scaling.get("original_max_position_embeddings") or max_pos
    yarn["factor"] = float(scaling.get("factor") or max_pos / yarn["original_max_position_embeddings"])
    yarn["beta_fast"] = float(scaling.get("beta_fast") or 32.0)
    yarn["beta_slow"] = float(scaling.get("beta_slow") or 1.0)
    if not scaling.get("truncate", True):
        raise ConvertError("config.json: YaRN with truncate=false is not supported by llama.cpp")
    return float(theta), yarn


def get_mscale(factor, m=1.0):
    """HF yarn_get_mscale: 1 + 0.1 m ln(factor) for factor > 1, else 1."""
    return 1.0 if factor <= 1 else 0.1 * m * math.log(factor) + 1.0


def yarn_mapping(yarn):
    """(attn_factor A0 for the rope.scaling.attn_factor key, scale c folded into every
    q_a_layernorm weight) that make llama.cpp's glm-dsa reproduce HF YaRN exactly.

    HF (DeepseekV3 / GlmMoeDsa): cos and sin carry AF = attention_factor, else
    get_mscale(f, mscale)/get_mscale(f, mscale_all_dim) when both are set, else get_mscale(f);
    the softmax scale is qk_head^-0.5 * S with S = get_mscale(f, mscale_all_dim)^2 (1 if unset).
    llama.cpp glm-dsa (it never reads yarn_log_multiplier): rope magnitude A0*g and softmax
    scale qk_head^-0.5 * (A0*g)^2, with g = get_mscale(f) (llama-context.cpp yarn_attn_factor,
    ggml rope_yarn, glm-dsa.cpp kq_scale). So A0 = AF/g matches the magnitude (MLA and indexer
    rope alike), and the remaining S/AF^2 is folded into q_a_layernorm: it scales the MLA
    query (all of q_nope and q_pe), hence every score, and the indexer query, which only
    scales the indexer scores by a positive constant (ReLU is homogeneous) so top-k is
    unchanged."""
    f = float(yarn["factor"])
    ms, ms_all = yarn.get("mscale"), yarn.get("mscale_all_dim")
    af = yarn.get("attention_factor")
    if af is None:
        af = get_mscale(f, ms) / get_mscale(f, ms_all) if (ms and ms_all) else get_mscale(f)
    s = get_mscale(f, ms_all) ** 2 if ms_all else 1.0
    return af / get_mscale(f), s / (af * af)


def dense_prefix(tensors, L):
    """Number of leading trunk layers without a router; fails unless every later layer is MoE
    (llama.cpp's glm-dsa knows only leading_dense_block_count)."""
    moe = [f"model.layers.{l}.mlp.gate.weight" in tensors for l in range(L)]
    k = moe.index(True) if True in moe else L
    if not all(moe[k:]):
        raise ConvertError("the dense/MoE layer pattern is not 'dense prefix, then MoE'; llama.cpp's "
                           "glm-dsa cannot express it")
    return k


def hyperparams(cfg, tensors):
    """Validated sizes for the tensor plan and the metadata keys."""
    need = ["hidden_size", "num_hidden_layers", "num_attention_heads", "kv_lora_rank",
            "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "vocab_size"]
    missing = [k for k in need if cfg.get(k) is None]
    if missing:
        raise ConvertError(f"config.json: missing {missing}")
    if not cfg.get("q_lora_rank"):
        raise ConvertError("config.json: q_lora_rank is null; glm-dsa needs q_a/q_b projections")
    if not cfg.get("index_n_heads") or not cfg.get("index_head_dim"):
        raise ConvertError("config.json: no DSA indexer (index_n_heads/index_head_dim); glm-dsa needs one")
    ID = cfg["index_head_dim"]
    if ID < 64 or ID & (ID - 1):
        # llama-kv-cache.cpp build_input_k_rot: one Hadamard block of the largest power of two
        # dividing the head size, multiplied straight onto the [ID, ...] indexer q and k
        raise ConvertError(f"config.json: index_head_dim {ID} must be a power of two >= 64 for "
                           f"llama.cpp's indexer Hadamard rotation")
    if not cfg.get("rope_interleave", True) or not cfg.get("indexer_rope_interleave", False):
        raise ConvertError("config.json: glm-dsa ropes adjacent pairs; rope_interleave and "
                           "indexer_rope_interleave must both be true")
    if cfg.get("tie_word_embeddings") and "lm_head.weight" in tensors:
        raise ConvertError("config.json: tie_word_embeddings is true but lm_head.weight exists")
    L = cfg["num_hidden_layers"]
    E = cfg.get("n_routed_experts") or 0
    k = dense_prefix(tensors, L)
    per_layer = cfg.get("num_routed_experts_per_layer")
    if per_layer and any(per_layer[l] != E for l in range(k, len(per_layer))):
        raise ConvertError("config.json: num_routed_experts_per_layer varies; llama.cpp needs one expert count")
    if k != cfg.get("first_k_dense_replace", 0):
        raise ConvertError(f"checkpoint has {k} leading dense layers, config.json first_k_dense_replace "
                           f"says {cfg.get('first_k_dense_replace', 0)}")
    yarn = rope_params(cfg)[1]
    full = indexer_full_layers(cfg, L)
    if not full[0]:
        raise ConvertError("layer 0's indexer is 'shared'; llama.cpp needs a full layer first")
    for l in range(L):
        if full[l] and f"model.layers.{l}.self_attn.indexer.wq_b.weight" not in tensors:
            raise ConvertError(f"layer {l} is a full indexer layer but has no indexer weights")
    return dict(L=L, D=cfg["hidden_size"], H=cfg["num_attention_heads"], r=cfg["kv_lora_rank"],
                nope=cfg["qk_nope_head_dim"], rope=cfg["qk_rope_head_dim"], v=cfg["v_head_dim"],
                E=E, dense=k, indexer_full=full, q_a_norm_scale=yarn_mapping(yarn)[1] if yarn else 1.0)


# ---------------------------------------------------------------- metadata

GATING = {"sigmoid": gguf.ExpertGatingFuncType.SIGMOID, "softmax": gguf.ExpertGatingFuncType.SOFTMAX}


def write_model_keys(w, cfg, hp, n_mtp, name):
    """Every glm-dsa hyperparameter key (types as llama.cpp's loader checks them)."""
    w.add_name(name)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if ALL_F32["on"] else gguf.LlamaFileType.MOSTLY_BF16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_block_count(hp["L"] + n_mtp)
    w.add_context_length(cfg.get("max_position_embeddings", 4096))
    w.add_embedding_length(hp["D"])
    w.add_feed_forward_length(cfg.get("intermediate_size", 0))
    w.add_head_count(hp["H"])
    w.add_head_count_kv(1)                                # absorbed MLA is MQA over the latent
    w.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-6))
    w.add_vocab_size(cfg["vocab_size"])
    w.add_leading_dense_block_count(hp["dense"])
    w.add_q_lora_rank(cfg["q_lora_rank"])
    w.add_kv_lora_rank(hp["r"])
    w.add_key_length(hp["r"] + hp["rope"])
    w.add_value_length(hp["r"])
    w.add_key_length_mla(hp["nope"] + hp["rope"])
    w.add_value_length_mla(hp["v"])
    w.add_rope_dimension_count(hp["rope"])
    theta, yarn = rope_params(cfg)
    w.add_rope_freq_base(theta)
    if yarn:
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(yarn["factor"])
        w.add_rope_scaling_orig_ctx_len(yarn["original_max_position_embeddings"])
        w.add_rope_scaling_yarn_beta_fast(yarn["beta_fast"])
        w.add_rope_scaling_yarn_beta_slow(yarn["beta_slow"])
        w.add_rope_scaling_attn_factors(yarn_mapping(yarn)[0])
    if hp["E"]:
        scoring = cfg.get("scoring_func", "sigmoid")
        if scoring not in GATING:
            raise ConvertError(f"config.json: scoring_func {scoring!r} is not supported")
        w.add_expert_count(hp["E"])
        w.add_expert_used_count(cfg["num_experts_per_tok"])
        w.add_expert_shared_count(cfg.get("n_shared_experts") or 0)
        w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])
        w.add_expert_gating_func(GATING[scoring])
        w.add_expert_weights_scale(cfg.get("routed_scaling_factor", 1.0))
        if cfg.get("norm_topk_prob"):
            w.add_expert_weights_norm(True)
        groups = cfg.get("n_group") or 1
        if groups > 1 and cfg.get("topk_method", "noaux_tc") != "noaux_tc":
            raise ConvertError("config.json: llama.cpp scores groups by their top-2 sum (noaux_tc) only")
        w.add_expert_group_count(groups)
        w.add_expert_group_used_count(cfg.get("topk_group") or 1)
    if n_mtp:
        w.add_nextn_predict_layers(n_mtp)
    w.add_indexer_head_count(cfg["index_n_heads"])
    w.add_indexer_key_length(cfg["index_head_dim"])
    w.add_indexer_top_k(cfg["index_topk"])
    w.add_indexer_types(hp["indexer_full"])


# Pre-tokenizer regexes llama.cpp implements natively -> its tokenizer.ggml.pre id.
PRE_TOKENIZERS = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "glm4",
}

# GLM special tokens -> the llama.cpp special id they fill (as llama.cpp's GLM converter does).
GLM_SPECIALS = {"[gMASK]": "bos", "<|user|>": "eot", "<|endoftext|>": "unk", "<|observation|>": "eom"}


def tokenizer_pre(tok):
    """tokenizer.ggml.pre id for tokenizer.json's Split regex (error if llama.cpp lacks it)."""
    pts = tok.get("pre_tokenizer") or {}
    for p in pts.get("pretokenizers", [pts]):
        regex = (p.get("pattern") or {}).get("Regex")
        if p.get("type") == "Split" and regex:
            if regex in PRE_TOKENIZERS:
                return PRE_TOKENIZERS[regex]
            raise ConvertError("tokenizer.json: unknown pre-tokenizer regex; use --tokenizer-pre")
    raise ConvertError("tokenizer.json: no Split pre-tokenizer; use --tokenizer-pre")


def write_tokenizer_keys(w, model_dir, cfg, pre):
    """tokenizer.ggml.*: byte-level BPE tokens padded to vocab_size, types, merges, special ids."""
    with open(os.path.join(model_dir, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    if (tok.get("model") or {}).get("type") != "BPE":
        raise ConvertError("tokenizer.json: only BPE tokenizers are supported")
    V = cfg["vocab_size"]
    tokens = [f"[PAD{i}]" for i in range(V)]
    types = [gguf.TokenType.UNUSED] * V
    for text, i in tok["model"]["vocab"].items():
        tokens[i], types[i] = text, gguf.TokenType.NORMAL
    ids = {}
    for a in tok.get("added_tokens", []):
        if a["id"] >= V:
            raise ConvertError(f"tokenizer.json: token id {a['id']} >= vocab_size {V}")
        tokens[a["id"]] = a["content"]
        types[a["id"]] = gguf.TokenType.CONTROL if a.get("special") else gguf.TokenType.USER_DEFINED
        ids[a["content"]] = a["id"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"].get("merges", [])]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre or tokenizer_pre(tok))
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    setters = {"bos": w.add_bos_token_id, "eot": w.add_eot_token_id, "unk": w.add_unk_token_id,
               "eom": w.add_eom_token_id}
    for content, which in GLM_SPECIALS.items():
        if content in ids:
            setters[which](ids[content])
    eos = cfg.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) else eos
    if eos is not None:
        w.add_eos_token_id(eos)
    if cfg.get("pad_token_id") is not None:
        w.add_pad_token_id(cfg["pad_token_id"])


# ---------------------------------------------------------------- main

def convert_model(model_dir, out_path, with_mtp=True, pre=None, name=None):
    """Write OUT.gguf (via OUT.gguf.tmp, renamed when complete). Returns the entry count."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    tensors = st_read_dir(model_dir)
    hp = hyperparams(cfg, tensors)
    n_mtp = cfg.get("num_nextn_predict_layers") or 0
    if n_mtp > 1:
        raise ConvertError("config.json: llama.cpp's glm-dsa supports one MTP layer")
    if n_mtp and not any(n.startswith(f"model.layers.{hp['L']}.") for n in tensors):
        n_mtp = 0
    n_mtp = n_mtp if with_mtp else 0
    entries = plan_tensors(tensors, hp, n_mtp > 0)

    tmp = out_path + ".tmp"
    w = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[ARCH])
    write_model_keys(w, cfg, hp, n_mtp, name or os.path.basename(os.path.normpath(model_dir)))
    write_tokenizer_keys(w, model_dir, cfg, pre)
    for e in entries:
        w.add_tensor_info(e.name, e.shape, e.dtype, e.nbytes, raw_dtype=e.raw_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for e in entries:
        data = e.make()
        if data.shape != e.shape or data.dtype != e.dtype:
            raise AssertionError(f"{e.name}: made {data.shape} {data.dtype}, planned {e.shape} {e.dtype}")
        w.write_tensor_data(data)
    w.close()
    os.replace(tmp, out_path)
    return len(entries)


def main():
    ap = argparse.ArgumentParser(description="Convert a GLM-MoE-DSA safetensors directory to a llama.cpp "
                                             "glm-dsa GGUF (bf16 kept bf16).")
    ap.add_argument("model_dir")
    ap.add_argument("out_gguf")
    ap.add_argument("--no-mtp", action="store_true", help="leave out the MTP (nextn) layer")
    ap.add_argument("--tokenizer-pre", help="force tokenizer.ggml.pre (default: from tokenizer.json's regex)")
    ap.add_argument("--name", help="general.name (default: the directory name)")
    ap.add_argument("--outtype", choices=["keep", "f32"], default="keep",
                    help="keep: weights keep their dtype (default); f32: everything F32, for "
                         "precision cross-checks")
    a = ap.parse_args()
    ALL_F32["on"] = a.outtype == "f32"
    try:
        n = convert_model(a.model_dir, a.out_gguf, not a.no_mtp, a.tokenizer_pre, a.name)
    except (ConvertError, OSError, KeyError, ValueError) as e:
        sys.exit(f"hf_to_gguf_glm_dsa: {a.model_dir}: {e}")
    print(f"wrote {a.out_gguf}: {n} tensors, {os.path.getsize(a.out_gguf) / 1e9:.3f} GB")


if __name__ == "__main__":
    main()
