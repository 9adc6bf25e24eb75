#!/usr/bin/python3
"""prune_check — the independent oracle of `demolish prune` (acceptance point 1).

    prune_check.py SRC_DIR OUT_DIR PLAN.json [--shards N]

Reads both checkpoints with its own safetensors parser (8-byte little-endian
header length, JSON header, data_offsets relative to the end of the header;
every offset validated against the file size) and checks, from first
principles, what a pruned model must be:
  * for every planned layer L and every tensor of a kept expert E (whatever
    its suffix: weight, weight_scale_inv, weight_scale, weight_scale_2,
    weight_blocks, weight_scales, ...), the output tensor
    ...layers.L.mlp.experts.<rank of E among the kept ids>.<suffix> has the
    same dtype, shape and sha256 as the source tensor;
  * ...layers.L.mlp.gate.weight and ...gate.e_score_correction_bias are
    exactly the kept rows, in ascending original order;
  * every other tensor is byte-identical; the output holds no other tensor
    (no dropped expert);
  * config.json differs only in n_routed_experts (= the largest per-layer
    count) and num_routed_experts_per_layer (present iff the MoE layers'
    counts differ; length layers + MTP; 0 for dense layers); the comparison is
    type-strict (1.0 is not 1);
  * the other files are copied byte for byte, except MODEL_CARD.md (absent);
    prune_plan.json is written and keeps the same ids;
  * sharding: one model.safetensors, or shards + an index.json whose
    weight_map and total_size match the shards (--shards N: exactly N shards).
Exit 0 and one "ok" line, or exit 1 after printing every failure.
"""
import hashlib
import json
import os
import re
import struct
import sys

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I64": 8,
              "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
EXPERT_RE = re.compile(r"^(.*\blayers\.(\d+)\.mlp\.experts\.)(\d+)(\..+)$")
ROUTER_RE = re.compile(r"^.*\blayers\.(\d+)\.mlp\.gate\.(weight|e_score_correction_bias)$")
WEIGHT_FILE_RE = re.compile(r"^model(-\d{5}-of-\d{5})?\.safetensors$")

failures = []


def fail(msg):
    failures.append(msg)


class Tensor:
    def __init__(self, path, start, end, dtype, shape):
        self.path, self.start, self.end, self.dtype, self.shape = path, start, end, dtype, shape

    def data(self):
        with open(self.path, "rb") as f:
            f.seek(self.start)
            return f.read(self.end - self.start)

    def sha(self):
        return hashlib.sha256(self.data()).hexdigest()


def read_file_header(path):
    """name -> Tensor of one .safetensors file, its layout checked."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: shorter than 8 bytes")
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8:
            raise ValueError(f"{path}: header length {n} past the file's {size} bytes")
        header = json.loads(f.read(n))
    base = 8 + n
    out, spans = {}, []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        elems = 1
        for d in info["shape"]:
            elems *= d
        if info["dtype"] not in DTYPE_SIZE or e - b != elems * DTYPE_SIZE[info["dtype"]] or b < 0 or base + e > size:
            raise ValueError(f"{path}: tensor {name}: bad dtype/size/offsets {info}")
        spans.append((b, e, name))
        out[name] = Tensor(path, base + b, base + e, info["dtype"], list(info["shape"]))
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ValueError(f"{path}: tensors {n0} and {n1} overlap")
    return out, header.get("__metadata__")


def read_checkpoint(d):
    """(name -> Tensor, list of weight files, index dict or None)."""
    index_path = os.path.join(d, "model.safetensors.index.json")
    single = os.path.join(d, "model.safetensors")
    tensors, index = {}, None
    if os.path.exists(single):
        files = ["model.safetensors"]
    else:
        with open(index_path) as f:
            index = json.load(f)
        files = sorted(set(index["weight_map"].values()))
    for fn in files:
        t, _ = read_file_header(os.path.join(d, fn))
        for name, v in t.items():
            if name in tensors:
                raise ValueError(f"{d}: tensor {name} in two files")
            tensors[name] = v
    return tensors, files, index


def layer_counts(cfg):
    """Per-layer routed experts (MTP included), 0 for dense layers: the HF rule."""
    n_main = cfg["num_hidden_layers"]
    total = n_main + cfg.get("num_nextn_predict_layers", 0)
    first_dense = cfg.get("first_k_dense_replace", 0)
    freq = cfg.get("moe_layer_freq", 1)
    per = cfg.get("num_routed_experts_per_layer")
    counts = []
    for l in range(total):
        moe = l >= n_main or (l >= first_dense and l % freq == 0)
        counts.append(0 if not moe else per[l] if per is not None else cfg["n_routed_experts"])
    return counts


def strict_equal(a, b):
    """JSON equality that also requires the same types (1 is not 1.0, True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a.keys()) == list(b.keys()) and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b))
    return a == b


def load_plan(path):
    with open(path) as f:
        raw = json.load(f)
    return {int(k): sorted(v["kept"]) for k, v in raw.items() if v["keep"] > 0}


def check_tensors(src, out, plan):
    expected = {}   # output name -> (kind, source tensor or (router tensor, kept rows))
    for name, t in src.items():
        m = EXPERT_RE.match(name)
        if m and int(m.group(2)) in plan:
            kept = plan[int(m.group(2))]
            e = int(m.group(3))
            if e in kept:
                expected[m.group(1) + str(kept.index(e)) + m.group(4)] = ("expert", t)
            continue
        m = ROUTER_RE.match(name)
        if m and int(m.group(1)) in plan:
            expected[name] = ("rows", (t, plan[int(m.group(1))]))
            continue
        expected[name] = ("copy", t)
    for name in sorted(set(out) - set(expected)):
        fail(f"output tensor {name} should not exist (dropped expert or unknown)")
    for name in sorted(set(expected) - set(out)):
        fail(f"output tensor {name} is missing")
    counts = {"expert": 0, "rows": 0, "copy": 0}
    for name, (kind, what) in expected.items():
        if name not in out:
            continue
        o = out[name]
        counts[kind] += 1
        if kind == "rows":
            t, kept = what
            if o.dtype != t.dtype or o.shape != [len(kept)] + t.shape[1:]:
                fail(f"{name}: {o.dtype}{o.shape}, expected {t.dtype}{[len(kept)] + t.shape[1:]}")
                continue
            row = (t.end - t.start) // t.shape[0]
            d = t.data()
            want = b"".join(d[r * row:(r + 1) * row] for r in kept)
            if o.data() != want:
                fail(f"{name}: router rows are not exactly the kept rows {kept}")
        else:
            if o.dtype != what.dtype or o.shape != what.shape:
                fail(f"{name}: {o.dtype}{o.shape}, source {what.dtype}{what.shape}")
            elif o.sha() != what.sha():
                fail(f"{name}: sha256 differs from its source tensor")
    return counts


def check_config(src_dir, out_dir, plan):
    with open(os.path.join(src_dir, "config.json")) as f:
        sc = json.load(f)
    with open(os.path.join(out_dir, "config.json")) as f:
        oc = json.load(f)
    counts = layer_counts(sc)
    for l, kept in plan.items():
        if l >= len(counts) or counts[l] == 0:
            fail(f"plan names layer {l}, which is not a MoE layer of the source")
        else:
            counts[l] = len(kept)
    moe = [c for c in counts if c > 0]
    want_n = max(moe)
    if oc.get("n_routed_experts") != want_n or type(oc.get("n_routed_experts")) is not int:
        fail(f"config n_routed_experts = {oc.get('n_routed_experts')!r}, expected {want_n}")
    if len(set(moe)) > 1:
        if oc.get("num_routed_experts_per_layer") != counts:
            fail(f"config num_routed_experts_per_layer = {oc.get('num_routed_experts_per_layer')}, expected {counts}")
    elif "num_routed_experts_per_layer" in oc:
        fail("config has num_routed_experts_per_layer for a uniform result")
    rest_s = {k: v for k, v in sc.items() if k not in ("n_routed_experts", "num_routed_experts_per_layer")}
    rest_o = {k: v for k, v in oc.items() if k not in ("n_routed_experts", "num_routed_experts_per_layer")}
    if set(rest_s) != set(rest_o):
        fail(f"config keys changed: {sorted(set(rest_s) ^ set(rest_o))}")
    for k in rest_s:
        if k in rest_o and not strict_equal(rest_s[k], rest_o[k]):
            fail(f"config {k} changed: {rest_s[k]!r} -> {rest_o[k]!r}")
    if layer_counts(oc) != counts:
        fail(f"output config describes layer counts {layer_counts(oc)}, expected {counts}")


def check_files(src_dir, out_dir, out_files, index, n_shards):
    side = []
    for n in sorted(os.listdir(src_dir)):
        p = os.path.join(src_dir, n)
        if n.startswith(".") or not os.path.isfile(p) or WEIGHT_FILE_RE.match(n) or n.endswith(".safetensors"):
            continue
        if n in ("model.safetensors.index.json", "config.json", "MODEL_CARD.md") or n.startswith("prune_plan.json"):
            continue
        side.append(n)
        q = os.path.join(out_dir, n)
        if not os.path.isfile(q):
            fail(f"side file {n} not copied")
        elif open(p, "rb").read() != open(q, "rb").read():
            fail(f"side file {n} differs from the source")
    if os.path.exists(os.path.join(out_dir, "MODEL_CARD.md")):
        fail("MODEL_CARD.md (the unpruned model's card) was copied")
    allowed = set(side) | set(out_files) | {"config.json", "prune_plan.json", "prune_plan.json.meta"}
    if index is not None:
        allowed.add("model.safetensors.index.json")
    for n in sorted(os.listdir(out_dir)):
        if n not in allowed:
            fail(f"unexpected file in the output: {n}")
    if n_shards is not None and len(out_files) != n_shards:
        fail(f"{len(out_files)} weight files, expected {n_shards}")
    if len(out_files) > 1 and index is None:
        fail("several shards but no model.safetensors.index.json")
    return side


def check_index(out_dir, out, index):
    if index is None:
        return
    total = sum(t.end - t.start for t in out.values())
    if index.get("metadata", {}).get("total_size") != total:
        fail(f"index total_size {index.get('metadata', {}).get('total_size')} != {total} tensor bytes")
    wm = index["weight_map"]
    if set(wm) != set(out):
        fail("index weight_map names differ from the shards' tensors")
    for name, fn in wm.items():
        if name in out and os.path.basename(out[name].path) != fn:
            fail(f"index puts {name} in {fn}, it is in {os.path.basename(out[name].path)}")
    n = len(set(wm.values()))
    for fn in set(wm.values()):
        if not re.match(r"^model-\d{5}-of-%05d\.safetensors$" % n, fn):
            fail(f"shard name {fn} does not say 'of {n}'")


def main(argv):
    if len(argv) not in (4, 6):
        print(__doc__, file=sys.stderr)
        return 2
    src_dir, out_dir, plan_path = argv[1:4]
    n_shards = int(argv[5]) if len(argv) == 6 and argv[4] == "--shards" else None
    plan = load_plan(plan_path)
    try:
        src, _, _ = read_checkpoint(src_dir)
        out, out_files, index = read_checkpoint(out_dir)
    except (OSError, ValueError, KeyError) as e:
        print(f"prune_check: FAIL: {e}", file=sys.stderr)
        return 1
    counts = check_tensors(src, out, plan)
    check_config(src_dir, out_dir, plan)
    side = check_files(src_dir, out_dir, out_files, index, n_shards)
    check_index(out_dir, out, index)
    pp = os.path.join(out_dir, "prune_plan.json")
    if not os.path.isfile(pp):
        fail("prune_plan.json not written")
    elif load_plan(pp) != plan:
        fail("prune_plan.json keeps other experts than the plan applied")
    if failures:
        for f in failures:
            print(f"prune_check: FAIL: {out_dir}: {f}", file=sys.stderr)
        return 1
    print(f"prune_check: ok: {out_dir}: {counts['expert']} expert tensors renumbered, {counts['rows']} router "
          f"tensors sliced, {counts['copy']} copied, {len(out_files)} weight file(s), {len(side)} side file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
