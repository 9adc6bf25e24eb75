"""Internal consistency checks of the reference that need no C code (ref_model.py --self-check).

What it is for: the reference is the oracle, so it must be checked by other means.
  unit checks   number-format codecs against hand-computed values and round trips; the
                safetensors container (single and sharded) round trip; RoPE conventions
                against the HF formulation (permute + rotate_half) and the relative-position
                property; YaRN against DeepSeek-V3's published numbers; config derivations
                (both RoPE forms, GLM-5.2 indexer_types, mlp kinds); top-k tie-break.
  model checks  on a model directory (the given one, else a make_model.py model with every
                feature on, in f32 and in a mixed-format sharded variant):
                - the ABSORBED latent-cache form, run token by token with a KV cache and an
                  incremental indexer-key cache (a second, independent code path), equals the
                  EXPANDED whole-sequence forward, for the logits and the MTP logits;
                - the forward of every prefix equals the full causal forward at its last row;
                - every feature is live: the DSA mask, the routing bias, the group limit,
                  YaRN's attention_factor and the shared-layer reuse each change the logits.
Exit status 0 only if every check passes; each check prints its measured error.
"""
import copy
import os
import shutil
import tempfile

import numpy as np
import torch

import make_model
import quant
import ref_config
import ref_model as R
import st_io

EXACT_TOL = 1e-9        # float64 paths that differ only in summation order
LIVE_MIN = 1e-3         # a switched feature must move some logit by at least this much
FAILS = []


def check(name, ok, detail=""):
    print(f"  [{'ok' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}")
    if not ok:
        FAILS.append(name)


def close(name, a, b, tol=EXACT_TOL):
    d = float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
    check(name, d <= tol, f"max|d| {d:.3g} (tol {tol:g})")


# =============================================================== unit checks

def check_codecs():
    print("codecs:")
    v = st_io.E4M3_VALUES
    known = {0x00: 0.0, 0x01: 2.0 ** -9, 0x07: 7 * 2.0 ** -9, 0x08: 2.0 ** -6, 0x38: 1.0,
             0x7e: 448.0, 0xb8: -1.0, 0xfe: -448.0, 0x3c: 1.5, 0x40: 2.0}
    check("e4m3 known codes", all(v[c] == x for c, x in known.items()))
    check("e4m3 NaN codes", bool(np.isnan(v[0x7f]) and np.isnan(v[0xff])
                                 and np.isnan(v).sum() == 2))
    codes = np.array([c for c in range(256) if not np.isnan(v[c]) and c != 0x80], dtype=np.uint8)
    check("e4m3 encode(decode(c)) == c", bool(np.all(quant.e4m3_encode(v[codes]) == codes)))
    check("e4m3 rounds to nearest", bool(quant.e4m3_encode(1.06) == 0x38
                                         and quant.e4m3_encode(1.07) == 0x39
                                         and quant.e4m3_encode(1000.0) == 0x7e))
    e2 = quant.E2M1_VALUES
    c2 = np.array([c for c in range(16) if c != 8], dtype=np.uint8)
    check("e2m1 encode(decode(c)) == c", bool(np.all(quant.e2m1_encode(e2[c2]) == c2)))
    check("e2m1 values", list(e2[:8]) == [0, .5, 1, 1.5, 2, 3, 4, 6] and e2[15] == -6)
    check("nibble order (even element = low nibble)",
          int(quant.pack_nibbles(np.array([1, 2], dtype=np.uint8))[0]) == 0x21)
    bf = quant.bf16_encode(np.array([1.0, 1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, -2.0]))
    check("bf16 encode (RNE)", list(bf) == [0x3f80, 0x3f80, 0x3f82, 0xc000], str(list(bf)))
    e8 = st_io.e8m0_to_float64(np.array([127, 0, 130, 255], dtype=np.uint8))
    check("e8m0 decode", e8[0] == 1.0 and e8[1] == 2.0 ** -127 and e8[2] == 8.0
          and np.isnan(e8[3]))


def check_quant_roundtrip():
    print("quantized Linear layouts:")
    rng = np.random.default_rng(7)
    w = rng.standard_normal((200, 288)) * 0.1          # partial 128-blocks on both axes
    w[:16, :32] = 0.0                                   # an all-zero block
    t = {}
    for fmt in ("fp8", "nvfp4", "mxfp4", "bf16", "f16", "f32"):
        for suf, x in quant.quantize_linear(w, fmt, "F8_E8M0").items():
            t[fmt + suf] = x
        d, got = quant.load_linear(t, fmt)
        err = np.abs(d - w)
        # E4M3 has 3 mantissa bits (rel. step 2^-3, half-step 2^-4 of the block scale's
        # range); E2M1 steps are up to 2 at magnitude 6 relative to the block amax.
        bound = {"fp8": 2 ** -4 * np.abs(w).max(), "nvfp4": np.abs(w).max() / 6 * 1.2,
                 "mxfp4": np.abs(w).max() / 4 * 1.01, "bf16": 2 ** -8 * np.abs(w).max(),
                 "f16": 1e-3 * np.abs(w).max(), "f32": 1e-7}[fmt]
        check(f"{fmt} dequant(quant(W)) within format error ({got})",
              d.shape == w.shape and err.max() <= bound and np.all(d[:16, :32] == 0),
              f"max err {err.max():.3g} (bound {bound:.3g})")
    fp8 = quant.quantize_linear(w, "fp8")
    check("fp8 scale grid is ceil(N/128) x ceil(K/128)",
          fp8[".weight_scale_inv"].shape == (2, 3))
    nv = quant.quantize_linear(w, "nvfp4")
    check("nvfp4 shapes", nv[".weight"].shape == (200, 144) and
          nv[".weight_scale"].shape == (200, 18) and nv[".weight_scale_2"].shape == ())
    mx = quant.quantize_linear(w, "mxfp4")
    check("mxfp4 shapes", mx[".weight_blocks"].shape == (200, 9, 16) and
          mx[".weight_scales"].shape == (200, 9))
    # hand-built NVFP4 row: codes 1..15,0 with block scale 2.0 and scale_2 0.5 -> e2m1 * 1.0
    codes = np.array(list(range(1, 16)) + [0], dtype=np.uint8)[None]
    hand = {"x.weight": st_io.make_tensor("U8", quant.pack_nibbles(codes)),
            "x.weight_scale": st_io.make_tensor("F8_E4M3", quant.e4m3_encode(np.array([[2.0]]))),
            "x.weight_scale_2": st_io.make_tensor("F32", np.array(0.5, dtype=np.float32))}
    d, _ = quant.load_linear(hand, "x")
    check("nvfp4 hand-built row", np.array_equal(d[0], quant.E2M1_VALUES[codes[0]]))


def check_safetensors():
    print("safetensors container:")
    rng = np.random.default_rng(3)
    t = {"a.weight": st_io.make_tensor("BF16", rng.integers(0, 65535, (5, 3)).astype(np.uint16)),
         "b": st_io.make_tensor("F32", rng.standard_normal((7,)).astype(np.float32)),
         "c": st_io.make_tensor("F8_E4M3", rng.integers(0, 255, (4, 4)).astype(np.uint8)),
         "d": st_io.make_tensor("I64", np.arange(3)),
         "e": st_io.make_tensor("F32", np.array(2.5, dtype=np.float32)),
         "f": st_io.make_tensor("F64", rng.standard_normal((2, 2))),
         "g": st_io.make_tensor("I32", np.arange(5, dtype=np.int32)),
         "h": st_io.make_tensor("F16", np.ones(3, dtype=np.float16)),
         "i": st_io.make_tensor("F8_E8M0", np.array([127, 128], dtype=np.uint8))}
    tmp = tempfile.mkdtemp(prefix="st_io_")
    try:
        for shard in (0, 64):
            d = os.path.join(tmp, f"s{shard}")
            files = st_io.write_dir(d, t, shard)
            back = st_io.read_dir(d)
            same = set(back) == set(t) and all(
                back[n].dtype == t[n].dtype and back[n].shape == t[n].shape and
                back[n].raw.tobytes() == t[n].raw.tobytes() for n in t)
            check(f"round trip ({len(files)} files)", same)
            with open(os.path.join(d, files[0]), "rb") as f:
                n = int.from_bytes(f.read(8), "little")
            check("header padded to 8 bytes", n % 8 == 0)
        check("scalar shape []",
              back["e"].shape == () and float(st_io.to_float64(back["e"])) == 2.5)
    finally:
        shutil.rmtree(tmp)


def hf_rope_interleave(x, cos, sin):
    """HF apply_rotary_pos_emb_interleave: permute to [evens | odds], then rotate_half with
    cos/sin = cat(freqs, freqs). The output is in permuted order."""
    xp = torch.cat([x[..., 0::2], x[..., 1::2]], -1)
    c, s = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
    half = x.shape[-1] // 2
    rot = torch.cat([-xp[..., half:], xp[..., :half]], -1)
    return xp * c + rot * s


def check_rope():
    print("RoPE / YaRN:")
    cfg = ref_config.parse_config(dict(make_model.FULL_CONFIG, rope_parameters={
        "rope_type": "default", "rope_theta": 10000.0}))
    T, R_ = 12, cfg.rope
    cos, sin = R.rope_cos_sin(cfg, range(T))
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(T, R_, generator=g, dtype=R.DT), torch.randn(T, R_, generator=g, dtype=R.DT)
    mine = R.apply_rope(q, cos, sin, True) @ R.apply_rope(k, cos, sin, True).T
    hf = hf_rope_interleave(q, cos, sin) @ hf_rope_interleave(k, cos, sin).T
    close("interleaved RoPE dot products == HF permuted form", mine, hf)
    # relative position: <rope(q,p), rope(k,t)> is unchanged when both shift by the same offset
    for il in (True, False):
        q1 = R.apply_rope(q[:1].expand(T, R_), cos, sin, il)
        k1 = R.apply_rope(k[:1].expand(T, R_), cos, sin, il)
        dots = torch.stack([q1[i + 2] @ k1[i] for i in range(T - 2)])
        close(f"relative-position property ({'interleaved' if il else 'half-split'})",
              dots, dots[0].expand_as(dots))
    x = torch.zeros(1, R_, dtype=R.DT)
    x[0, 0], x[0, 1] = 1.0, 0.0
    c1, s1 = R.rope_cos_sin(cfg, [1])
    half = R.apply_rope(x, c1, s1, False)
    close("half-split pairs (x[i], x[i+R/2])", [half[0, 0].item(), half[0, R_ // 2].item()],
          [c1[0, 0].item(), s1[0, 0].item()])
    ds = {"rope_theta": 10000, "max_position_embeddings": 163840, "rope_scaling": {
        "type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
        "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}}
    inv, af, scale = ref_config.resolve_rope(ds, 64, 192)
    base = ref_config.default_inv_freq(10000.0, 64)
    check("DeepSeek-V3 YaRN ramp low=10 high=23",
          np.allclose(inv[:11], base[:11]) and np.allclose(inv[23:], base[23:] / 40)
          and not np.allclose(inv[11], base[11]) and not np.allclose(inv[22], base[22] / 40))
    check("DeepSeek-V3 attention_factor 1, scale 192^-0.5*1.3689^2",
          af == 1.0 and abs(scale - 192 ** -0.5 * (1 + 0.1 * np.log(40)) ** 2) < 1e-12,
          f"af {af}, scale {scale:.6f}")


def check_config():
    print("config parsing:")
    a = dict(make_model.FULL_CONFIG)
    b = dict(a)
    rp = dict(b.pop("rope_parameters"))
    b["rope_theta"] = rp.pop("rope_theta")
    rp["type"] = rp.pop("rope_type")
    b["rope_scaling"] = rp
    ca, cb = ref_config.parse_config(a), ref_config.parse_config(b)
    check("rope_parameters == rope_theta + rope_scaling",
          np.array_equal(ca.inv_freq, cb.inv_freq) and ca.attn_factor == cb.attn_factor
          and ca.softmax_scale == cb.softmax_scale and ca.attn_factor != 1.0)
    glm52 = {"num_hidden_layers": 78, "index_topk_freq": 4, "index_skip_topk_offset": 3}
    it = ref_config.indexer_types(glm52, 78)
    full = [i for i, x in enumerate(it) if x == "full"]
    check("GLM-5.2 indexer_types (freq 4, offset 3)",
          len(full) == 21 and full[:5] == [0, 1, 2, 6, 10] and full[-1] == 74)
    check("indexer_types default all full", ref_config.indexer_types({}, 5) == ["full"] * 5)
    check("index_topk_pattern", ref_config.indexer_types({"index_topk_pattern": "FSSF"}, 4)
          == ["full", "shared", "shared", "full"])
    mt = ref_config.mlp_types({"n_routed_experts": 4, "first_k_dense_replace": 1,
                               "moe_layer_freq": 2}, 5)
    # DeepseekV3 rule: MoE iff l >= first_k_dense_replace and l % moe_layer_freq == 0
    check("first_k_dense_replace + moe_layer_freq", mt == ["dense", "dense", "sparse",
                                                           "dense", "sparse"], str(mt))
    check("per-layer expert counts", ca.experts == [0, 8, 12, 16, 16, 8], str(ca.experts))
    check("head_dim ignored", ca.qk_head == 48)
    keep, _ = R.topk_lower_index(np.array([1.0, 3.0, 3.0, 2.0, 3.0, -np.inf]), 2)
    check("top-k ties -> lower index", list(keep) == [1, 2], str(list(keep)))


# =============================================================== decode (absorbed) path

class LayerCache:
    """Per-layer decode cache: latent c_t, rotated k_pe_t, rotated indexer key kI_t."""

    def __init__(self):
        self.c, self.k_pe, self.kI = [], [], []


def decode_layer(cfg, l, lp, x, pos, cache, prev_allowed):
    """One token through one layer with the absorbed MLA over the cache. Returns x and the
    allowed row over keys 0..pos."""
    cos, sin = R.rope_cos_sin(cfg, [pos])
    a = R.rms_norm(x, lp["in_norm"], cfg.eps)
    ap = lp["attn"]
    pr = R.mla_project(cfg, ap, a, cos, sin)
    cache.c.append(pr["c"][0])
    cache.k_pe.append(pr["k_pe"][0])
    if not cfg.dsa:
        allowed = np.ones(pos + 1, dtype=bool)
    elif lp["full_indexer"]:
        cache.kI.append(R.indexer_keys(cfg, ap, a, cos, sin)[0])
        qI, w = R.indexer_queries(cfg, ap, a, pr["cq"], cos, sin)
        allowed = R.select_topk(cfg, R.indexer_scores(cfg, qI, w, torch.stack(cache.kI)),
                                [pos])[0]
    else:
        allowed = prev_allowed
    o = R.mla_attend_absorbed(cfg, ap, pr["q_nope"][0], pr["q_pe"][0], torch.stack(cache.c),
                              torch.stack(cache.k_pe), allowed)
    x = x + o[None]
    return x + R.ffn(cfg, l, lp, R.rms_norm(x, lp["post_norm"], cfg.eps)), allowed


def forward_decode(model, ids):
    """Token-by-token decode with caches; returns (logits [T, V], mtp [T-1, V] or None)."""
    cfg = model.cfg
    caches = [LayerCache() for _ in model.layers]
    logits, hs = [], []
    for pos, tok in enumerate(ids):
        x = model.embed[torch.tensor([tok])]
        allowed = None
        for l, lp in enumerate(model.layers):
            x, allowed = decode_layer(cfg, l, lp, x, pos, caches[l], allowed)
        h = R.rms_norm(x, model.norm, cfg.eps)
        hs.append(h)
        logits.append(R.linear(h, model.head)[0])
    mtp = None
    if model.mtp is not None:
        m, cache, rows = model.mtp, LayerCache(), []
        for i in range(len(ids) - 1):
            u = R.mtp_input(cfg, m, [ids[i + 1]], hs[i])
            u, _ = decode_layer(cfg, cfg.L, m["layer"], u, i, cache, None)
            rows.append(R.linear(R.rms_norm(u, m["head_norm"], cfg.eps), m["head"])[0])
        mtp = torch.stack(rows)
    return torch.stack(logits), mtp


# =============================================================== model checks

def default_ids(vocab, n=40, seed=11):
    return [int(x) for x in np.random.default_rng(seed).integers(0, vocab, n)]


def check_decode_and_prefix(model, ids):
    full, mtp = R.run(model, ids, model.mtp is not None)
    dec, dmtp = forward_decode(model, ids)
    close("absorbed cached decode == expanded prefill (logits)", dec, full)
    if mtp is not None:
        close("absorbed cached decode == expanded prefill (MTP)", dmtp, mtp)
    worst, worst_m = 0.0, 0.0
    for n in range(1, len(ids) + 1):
        lg, mt = R.run(model, ids[:n], model.mtp is not None and n >= 2)
        worst = max(worst, float((lg[-1] - full[n - 1]).abs().max()))
        if mt is not None:
            worst_m = max(worst_m, float((mt[-1] - mtp[n - 2]).abs().max()))
    check("prefix forward == full causal forward (last rows)", worst <= EXACT_TOL,
          f"max|d| {worst:.3g}")
    if mtp is not None:
        check("prefix forward == full forward (MTP last rows)", worst_m <= EXACT_TOL,
              f"max|d| {worst_m:.3g}")
    return full, mtp


def switched(model, ids, base, base_mtp, name, mutate, required=True):
    """Run with a feature switched off by mutate(model) and require a visible change
    (required=False: only report it, for choices a model's random scales may not expose)."""
    m2 = copy.copy(model)
    m2.cfg = copy.copy(model.cfg)
    m2.layers = [dict(lp, mlp=dict(lp["mlp"]), attn=dict(lp["attn"])) for lp in model.layers]
    if model.mtp is not None:
        m2.mtp = dict(model.mtp)
        lp = model.mtp["layer"]
        m2.mtp["layer"] = dict(lp, mlp=dict(lp["mlp"]), attn=dict(lp["attn"]))
    saved = (R.LATENT_EPS, R.KNORM_EPS)
    try:
        if mutate(m2) is False:
            print(f"  [--] {name}: not present in this model")
            return
        lg, mt = R.run(m2, ids, model.mtp is not None)
    finally:
        R.LATENT_EPS, R.KNORM_EPS = saved
    d = float((lg - base).abs().max())
    if mt is not None:
        d = max(d, float((mt - base_mtp).abs().max()))
    if d < LIVE_MIN and not required:
        print(f"  [weak] {name}: max|d| {d:.3g} when switched off (not visible in this model)")
        return
    check(f"feature is live: {name}", d >= LIVE_MIN, f"max|d| {d:.3g} when switched off")


def make_model_scales(model):
    """Whether the checkpoint came from make_model.py (its metadata tag)."""
    return model.W.meta.get("writer") == "make_model.py"


def check_live(model, ids, base, base_mtp):
    cfg = model.cfg
    T = len(ids)

    def no_dsa(m):
        if not cfg.dsa or cfg.index_topk >= T:
            return False
        m.cfg.index_topk = 1 << 30

    def no_bias(m):
        lps = [lp for l, lp in enumerate(m.layers) if lp["sparse"] and lp["mlp"]["has_bias"]
               and cfg.top_k < cfg.experts[l]]
        if not lps:
            return False
        for lp in lps:
            lp["mlp"]["bias"] = torch.zeros_like(lp["mlp"]["bias"])

    def no_groups(m):
        if cfg.n_group <= 1 or cfg.topk_method == "greedy":
            return False
        m.cfg.topk_method = "greedy"

    def no_attn_factor(m):
        if cfg.attn_factor == 1.0:
            return False
        m.cfg.attn_factor = 1.0

    def no_sharing(m):
        # give every shared layer its own copy of the previous full layer's indexer weights
        if not cfg.dsa or all(t == "full" for t in cfg.indexer_types) or cfg.index_topk >= T:
            return False
        last = None
        for lp in m.layers:
            if lp["full_indexer"]:
                last = lp["attn"]
            else:
                for k in ("wq_b", "wk", "k_norm_w", "k_norm_b", "wproj"):
                    lp["attn"][k] = last[k]
                lp["full_indexer"] = True

    def flip_indexer_rope(m):
        if not cfg.dsa or cfg.index_topk >= T:
            return False
        m.cfg.indexer_interleave = not cfg.indexer_interleave

    def flip_rope(m):
        m.cfg.rope_interleave = not cfg.rope_interleave

    def latent_eps(m):
        R.LATENT_EPS = cfg.eps if cfg.eps != R.LATENT_EPS else 1e-5

    def knorm_eps(m):
        if not cfg.dsa:
            return False
        R.KNORM_EPS = 1e-5

    def model_eps(m):
        m.cfg.eps = 1e-6 if cfg.eps != 1e-6 else 1e-5

    # the eps choices are only visible when a norm's input is tiny (make_model.py does that;
    # other writers' random scales may not), so they are reported but not required
    for name, fn, required in (
            ("DSA top-k mask", no_dsa, True), ("routing correction bias", no_bias, True),
            ("group-limited routing", no_groups, True),
            ("YaRN attention_factor", no_attn_factor, True),
            ("shared-indexer reuse", no_sharing, True),
            ("indexer RoPE convention", flip_indexer_rope, True),
            ("main RoPE convention", flip_rope, True),
            ("q_a/kv_a_layernorm eps 1e-6", latent_eps, make_model_scales(model)),
            ("indexer k_norm eps 1e-6", knorm_eps, make_model_scales(model)),
            ("rms_norm_eps of the layer norms", model_eps, make_model_scales(model))):
        switched(model, ids, base, base_mtp, name, fn, required)


def check_model(model_dir, ids_text=None):
    print(f"model {model_dir}:")
    model = R.Model(model_dir)
    cfg = model.cfg
    ids = R.parse_ids(ids_text, cfg.vocab) if ids_text else default_ids(cfg.vocab)
    print(f"  T={len(ids)} L={cfg.L} dsa={cfg.dsa} index_topk={cfg.index_topk} "
          f"indexer_types={cfg.indexer_types if cfg.dsa else '-'} mlp={cfg.mlp_types} "
          f"experts={cfg.experts} n_group={cfg.n_group} mtp={cfg.n_mtp} "
          f"formats={model.W.formats}")
    check("every tensor in the checkpoint is used", not model.W.unused(),
          str(model.W.unused()[:4]))
    R.MARGINS.clear()
    base, base_mtp = check_decode_and_prefix(model, ids)
    print("  margins: " + R.margins_text())
    check_live(model, ids, base, base_mtp)


def main(model_dir=None, ids_text=None):
    torch.set_num_threads(1)
    check_codecs()
    check_quant_roundtrip()
    check_safetensors()
    check_rope()
    check_config()
    if model_dir:
        check_model(model_dir, ids_text)
    else:
        tmp = tempfile.mkdtemp(prefix="ref_selfcheck_")
        try:
            for name, dtype, shard, own_head in (("full", "f32", 0, False),
                                                 ("full", "mixed", 0.25, True),
                                                 ("alt", "mixed", 0, True),
                                                 ("smooth", "bf16", 0, False)):
                d = os.path.join(tmp, f"{name}-{dtype}")
                make_model.write_model(d, make_model.load_config(name), dtype, 1 + len(FAILS),
                                       shard_mb=shard, mtp_own_head=own_head)
                check_model(d, ids_text)
        finally:
            shutil.rmtree(tmp)
    print(f"self-check: {'FAILED: ' + ', '.join(FAILS) if FAILS else 'all checks passed'}")
    return 1 if FAILS else 0


if __name__ == "__main__":
    import sys
    sys.exit(main(*sys.argv[1:3]))
