"""Number-format encoders/decoders and the quantized Linear layouts of contract.md, in numpy.

What it is for: make_model.py quantizes random float weights into the checkpoint formats,
and ref_model.py decodes whatever a checkpoint holds back into float64. Both directions are
written from the format definitions (contract.md "Quantized weights";
/work/shared/research/quant.md), independent of the C codecs.

Linear weight layouts (W is [N, K] = [out, in]):
  dense  : X.weight in F32 / F16 / BF16
  fp8    : X.weight F8_E4M3 [N, K] + X.weight_scale_inv F32 [ceil(N/128), ceil(K/128)]
  nvfp4  : X.weight U8 [N, K/2] + X.weight_scale F8_E4M3 [N, K/16] + X.weight_scale_2 F32 []
           (+ optional X.input_scale F32 [], ignored)
  mxfp4  : X.weight_blocks U8 [N, K/32, 16] + X.weight_scales U8|F8_E8M0 [N, K/32]
Packed E2M1 bytes: element 2j in the LOW nibble, element 2j+1 in the HIGH nibble.
"""
import numpy as np

from st_io import E4M3_VALUES, Tensor, bf16_to_float64, make_tensor, to_float64

FP8_BLOCK = 128
NVFP4_BLOCK = 16
MXFP4_BLOCK = 32
E4M3_MAX = 448.0
E2M1_MAX = 6.0

# E2M1 codes 0..7 = 0, .5, 1, 1.5, 2, 3, 4, 6; codes 8..15 are the negatives.
E2M1_POS = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
E2M1_VALUES = np.concatenate([E2M1_POS, -E2M1_POS])

# Finite non-negative E4M3FN values, codes 0x00..0x7e (monotonic in the code).
E4M3_POS = E4M3_VALUES[:127]


# ---------------------------------------------------------------- scalar codecs

def _nearest_code(a, table):
    """Index of the nearest entry of ascending `table` for each a >= 0 (saturating at the
    top); an exact midpoint goes to the even index (round half to even)."""
    hi = np.clip(np.searchsorted(table, a, side="left"), 0, len(table) - 1)
    lo = np.clip(hi - 1, 0, len(table) - 1)
    dlo, dhi = a - table[lo], table[hi] - a
    pick_lo = (dlo < dhi) | ((dlo == dhi) & (lo % 2 == 0))
    return np.where(pick_lo, lo, hi)


def e4m3_encode(x):
    """float -> E4M3FN code (uint8), round to nearest, saturate at +-448."""
    x = np.asarray(x, dtype=np.float64)
    a = np.minimum(np.abs(x), E4M3_MAX)
    code = _nearest_code(a, E4M3_POS).astype(np.uint8)
    return code | (np.signbit(x) & (code != 0)).astype(np.uint8) << 7


def e2m1_encode(x):
    """float -> E2M1 code 0..15, round to nearest, saturate at +-6."""
    x = np.asarray(x, dtype=np.float64)
    a = np.minimum(np.abs(x), E2M1_MAX)
    code = _nearest_code(a, E2M1_POS).astype(np.uint8)
    return code | ((np.signbit(x) & (code != 0)).astype(np.uint8) << 3)


def bf16_encode(x):
    """float -> BF16 bits (uint16), round to nearest even via float32."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def pack_nibbles(codes):
    """[..., 2M] codes 0..15 -> [..., M] bytes: even element low nibble, odd element high."""
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def unpack_nibbles(packed):
    """[..., M] bytes -> [..., 2M] codes (inverse of pack_nibbles)."""
    out = np.empty(packed.shape[:-1] + (packed.shape[-1] * 2,), dtype=np.uint8)
    out[..., 0::2] = packed & 0xF
    out[..., 1::2] = packed >> 4
    return out


# ---------------------------------------------------------------- dequantize (reading)

def _expand_blocks(s, n, k, bn, bk):
    """Broadcast a per-block scale grid [ceil(n/bn), ceil(k/bk)] to [n, k]."""
    return np.repeat(np.repeat(s, bn, axis=0), bk, axis=1)[:n, :k]


def dequant_fp8(w, scale_inv):
    """FP8 DeepSeek blocks: W[i][j] = e4m3(q[i][j]) * S[i//128][j//128]."""
    n, k = w.shape
    s = to_float64(scale_inv)
    if s.shape != (-(-n // FP8_BLOCK), -(-k // FP8_BLOCK)):
        raise ValueError(f"fp8 scale shape {s.shape} does not fit weight {w.shape}")
    return E4M3_VALUES[w.raw] * _expand_blocks(s, n, k, FP8_BLOCK, FP8_BLOCK)


def dequant_nvfp4(w, scale, scale_2):
    """NVFP4 (ModelOpt): W = e2m1(q) * e4m3(s[i][j//16]) * scale_2."""
    n, half = w.shape
    k = half * 2
    s = to_float64(scale)
    if s.shape != (n, k // NVFP4_BLOCK):
        raise ValueError(f"nvfp4 scale shape {s.shape} does not fit weight [{n}, {k}]")
    s2 = float(to_float64(scale_2).reshape(-1)[0])
    vals = E2M1_VALUES[unpack_nibbles(w.raw)]
    return vals * np.repeat(s, NVFP4_BLOCK, axis=1) * s2


def dequant_mxfp4(blocks, scales):
    """MXFP4: W = e2m1(q) * 2^(e-127), blocks [N, K/32, 16], scales [N, K/32]."""
    n, nb, _ = blocks.shape
    e = scales.raw.astype(np.int64)
    if e.shape != (n, nb):
        raise ValueError(f"mxfp4 scales shape {e.shape} does not fit blocks {blocks.shape}")
    vals = E2M1_VALUES[unpack_nibbles(blocks.raw)]        # [N, K/32, 32]
    return (vals * np.ldexp(1.0, e - 127)[..., None]).reshape(n, nb * MXFP4_BLOCK)


def load_linear(tensors, prefix):
    """Dequantize the Linear weight `prefix`.weight (in whatever layout the checkpoint uses)
    to a float64 [N, K] array. Returns (array, format name). Raises KeyError if absent."""
    get = tensors.get
    if get(prefix + ".weight_blocks") is not None:
        return dequant_mxfp4(tensors[prefix + ".weight_blocks"],
                             tensors[prefix + ".weight_scales"]), "mxfp4"
    w = tensors[prefix + ".weight"]
    if get(prefix + ".weight_scale_inv") is not None:
        return dequant_fp8(w, tensors[prefix + ".weight_scale_inv"]), "fp8"
    if get(prefix + ".weight_scale_2") is not None:
        return dequant_nvfp4(w, tensors[prefix + ".weight_scale"],
                             tensors[prefix + ".weight_scale_2"]), "nvfp4"
    if w.dtype not in ("F32", "F16", "BF16", "F64"):
        raise ValueError(f"{prefix}.weight: dtype {w.dtype} without scale tensors")
    return to_float64(w), w.dtype.lower()


# ---------------------------------------------------------------- quantize (writing)

def quant_dense(w, dtype):
    """float [N, K] -> {'.weight': Tensor} in F32 / F16 / BF16."""
    enc = {"f32": ("F32", lambda a: a.astype(np.float32)),
           "f16": ("F16", lambda a: a.astype(np.float16)),
           "bf16": ("BF16", bf16_encode)}[dtype]
    return {".weight": make_tensor(enc[0], enc[1](w))}


def quant_fp8(w):
    """float [N, K] -> FP8 e4m3 + per-128x128-block F32 scale = block amax / 448."""
    n, k = w.shape
    bn, bk = -(-n // FP8_BLOCK), -(-k // FP8_BLOCK)
    pad = np.zeros((bn * FP8_BLOCK, bk * FP8_BLOCK))
    pad[:n, :k] = w
    amax = np.abs(pad.reshape(bn, FP8_BLOCK, bk, FP8_BLOCK)).max(axis=(1, 3))
    scale = np.where(amax > 0, amax / E4M3_MAX, 1.0).astype(np.float32)
    q = e4m3_encode(w / _expand_blocks(scale.astype(np.float64), n, k, FP8_BLOCK, FP8_BLOCK))
    return {".weight": make_tensor("F8_E4M3", q),
            ".weight_scale_inv": make_tensor("F32", scale)}


def quant_nvfp4(w, with_input_scale=True):
    """float [N, K] (K % 16 == 0) -> NVFP4: scale_2 = amax/(6*448), block scale =
    e4m3(block amax / (6*scale_2)), codes = e2m1(w / (e4m3 scale * scale_2))."""
    n, k = w.shape
    amax = float(np.abs(w).max())
    s2 = np.float32(amax / (E2M1_MAX * E4M3_MAX) if amax > 0 else 1.0)
    blk = w.reshape(n, k // NVFP4_BLOCK, NVFP4_BLOCK)
    bscale = e4m3_encode(np.abs(blk).max(axis=2) / (E2M1_MAX * float(s2)))
    step = E4M3_VALUES[bscale] * float(s2)                    # [N, K/16]
    safe = np.where(step > 0, step, 1.0)[..., None]
    codes = np.where(step[..., None] > 0, e2m1_encode(blk / safe), 0).reshape(n, k)
    out = {".weight": make_tensor("U8", pack_nibbles(codes.astype(np.uint8))),
           ".weight_scale": make_tensor("F8_E4M3", bscale),
           ".weight_scale_2": make_tensor("F32", np.array(s2, dtype=np.float32))}
    if with_input_scale:   # present in ModelOpt checkpoints; the engine must ignore it
        out[".input_scale"] = make_tensor("F32", np.array(0.0123, dtype=np.float32))
    return out


def quant_mxfp4(w, scale_dtype="U8"):
    """float [N, K] (K % 32 == 0) -> MXFP4: shared exponent e = floor(log2(block amax)) - 2,
    stored as e + 127; codes = e2m1(w / 2^e)."""
    n, k = w.shape
    blk = w.reshape(n, k // MXFP4_BLOCK, MXFP4_BLOCK)
    amax = np.abs(blk).max(axis=2)
    e = np.where(amax > 0, np.floor(np.log2(np.where(amax > 0, amax, 1.0))) - 2, -127)
    e = np.clip(e, -127, 127).astype(np.int64)
    codes = e2m1_encode(blk / np.ldexp(1.0, e)[..., None])
    return {".weight_blocks": make_tensor("U8", pack_nibbles(codes).reshape(n, k // 32, 16)),
            ".weight_scales": make_tensor(scale_dtype, (e + 127).astype(np.uint8))}


def quantize_linear(w, fmt, mx_scale_dtype="U8"):
    """Quantize float [N, K] into format fmt; returns dict suffix -> Tensor."""
    if fmt in ("f32", "f16", "bf16"):
        return quant_dense(w, fmt)
    if fmt == "fp8":
        return quant_fp8(w)
    if fmt == "nvfp4":
        return quant_nvfp4(w)
    if fmt == "mxfp4":
        return quant_mxfp4(w, mx_scale_dtype)
    raise ValueError(f"unknown format {fmt}")


def fits(fmt, k):
    """Whether a Linear with K inputs can be stored in fmt (block size divides K)."""
    return {"nvfp4": k % NVFP4_BLOCK == 0, "mxfp4": k % MXFP4_BLOCK == 0}.get(fmt, True)


__all__ = ["Tensor", "bf16_to_float64", "load_linear", "quantize_linear", "fits",
           "e4m3_encode", "e2m1_encode", "bf16_encode", "pack_nibbles", "unpack_nibbles"]
