"""Minimal safetensors reader/writer in numpy, for the independent PyTorch reference.

What it is for: tests/reference/ must load (and write) Hugging Face checkpoints without
sharing a line with the C loader or writer. This module knows the container only: the
8-byte little-endian header length, the JSON header (dtype, shape, data_offsets per tensor,
optional "__metadata__"), the byte buffer, and the sharded layout
(model.safetensors.index.json with a "weight_map"). Number formats that need decoding
(BF16, F8_E4M3, F8_E8M0) are turned into float64 by `to_float64`; the quantized Linear
layouts (FP8 blocks, NVFP4, MXFP4) live in quant.py.

A tensor is kept as `Tensor(dtype, shape, raw)`, where raw is a numpy array of the
*storage* type (BF16 as uint16, the 8-bit floats as uint8), so bytes survive round trips.
"""
import json
import os
from collections import namedtuple

import numpy as np

Tensor = namedtuple("Tensor", ["dtype", "shape", "raw"])

# safetensors dtype name -> numpy storage dtype (little-endian). The element size follows.
STORAGE = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F8_E4M3": np.dtype("u1"),
    "F8_E8M0": np.dtype("u1"),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "BOOL": np.dtype("u1"),
}

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


def _e4m3fn_table():
    """float64 value of each of the 256 E4M3FN codes (bias 7, no inf, S.1111.111 = NaN)."""
    vals = np.empty(256, dtype=np.float64)
    for b in range(256):
        s, e, m = b >> 7, (b >> 3) & 0xF, b & 7
        if e == 15 and m == 7:
            v = float("nan")
        elif e == 0:
            v = (m / 8.0) * 2.0 ** -6          # subnormal
        else:
            v = (1.0 + m / 8.0) * 2.0 ** (e - 7)
        vals[b] = -v if s else v
    return vals


E4M3_VALUES = _e4m3fn_table()


def e8m0_to_float64(raw):
    """E8M0 (MX shared scale): 2^(e-127); e = 255 is NaN."""
    e = raw.astype(np.float64)
    out = np.ldexp(1.0, raw.astype(np.int64) - 127).astype(np.float64)
    out[e == 255] = np.nan
    return out


def bf16_to_float64(raw):
    """BF16 is the top half of an IEEE float32: widen by shifting the 16 bits up."""
    return (raw.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def to_float64(t):
    """Decode a stored tensor of any supported dtype into a float64 numpy array."""
    dec = {
        "BF16": bf16_to_float64,
        "F8_E4M3": lambda r: E4M3_VALUES[r],
        "F8_E8M0": e8m0_to_float64,
    }.get(t.dtype, lambda r: r.astype(np.float64))
    return dec(t.raw).reshape(t.shape)


# ---------------------------------------------------------------- reading

def read_file(path):
    """Read one .safetensors file -> (dict name -> Tensor, metadata dict).

    Validates the header length, every dtype, and that each [begin, end) range lies in the
    buffer and matches prod(shape) * element size. Raises ValueError naming the file."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: shorter than the 8-byte header length")
    n = int.from_bytes(blob[:8], "little")
    if n > len(blob) - 8:
        raise ValueError(f"{path}: header length {n} exceeds file size {len(blob)}")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = memoryview(blob)[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, h in header.items():
        dt = h["dtype"]
        if dt not in STORAGE:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
        shape = tuple(int(d) for d in h["shape"])
        b, e = (int(x) for x in h["data_offsets"])
        want = int(np.prod(shape, dtype=np.int64)) * STORAGE[dt].itemsize
        if not (0 <= b <= e <= len(data)) or e - b != want:
            raise ValueError(f"{path}: tensor {name}: bad data_offsets {b},{e} "
                             f"(need {want} bytes, buffer {len(data)})")
        raw = np.frombuffer(data[b:e], dtype=STORAGE[dt]).reshape(shape)
        out[name] = Tensor(dt, shape, raw)
    return out, meta


def read_dir(model_dir, meta=None):
    """Read every tensor of a model directory: the sharded index if present, else
    model.safetensors, else all *.safetensors files. Returns dict name -> Tensor; the files'
    "__metadata__" entries are merged into `meta` when a dict is given."""
    meta = {} if meta is None else meta
    index_path = os.path.join(model_dir, INDEX_NAME)
    if os.path.exists(index_path):
        with open(index_path) as f:
            wmap = json.load(f)["weight_map"]
        shards = sorted(set(wmap.values()))
        tensors = {}
        for shard in shards:
            part, m = read_file(os.path.join(model_dir, shard))
            meta.update(m)
            for name, t in part.items():
                if wmap.get(name) != shard:
                    raise ValueError(f"{index_path}: {name} found in {shard} but mapped to "
                                     f"{wmap.get(name)}")
                tensors[name] = t
        missing = set(wmap) - set(tensors)
        if missing:
            raise ValueError(f"{index_path}: tensors missing from shards: {sorted(missing)[:5]}")
        return tensors
    single = os.path.join(model_dir, SINGLE_NAME)
    files = [single] if os.path.exists(single) else sorted(
        os.path.join(model_dir, f) for f in os.listdir(model_dir) if f.endswith(".safetensors"))
    if not files:
        raise ValueError(f"{model_dir}: no safetensors files")
    tensors = {}
    for p in files:
        part, m = read_file(p)
        meta.update(m)
        tensors.update(part)
    return tensors


# ---------------------------------------------------------------- writing

def make_tensor(dtype, array):
    """Wrap a numpy array already in the storage type of `dtype` (e.g. uint16 for BF16)."""
    raw = np.array(array, dtype=STORAGE[dtype], order="C")   # keeps 0-d (shape []) arrays
    return Tensor(dtype, tuple(raw.shape), raw)


def write_file(path, tensors, metadata=None):
    """Write dict name -> Tensor as one .safetensors file (names sorted, header padded with
    spaces to a multiple of 8 so the data section is aligned)."""
    header, offset, names = {}, 0, sorted(tensors)
    for name in names:
        t = tensors[name]
        nbytes = t.raw.nbytes
        header[name] = {"dtype": t.dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(hbytes).to_bytes(8, "little"))
        f.write(hbytes)
        for name in names:
            f.write(np.ascontiguousarray(tensors[name].raw).tobytes())


def write_dir(model_dir, tensors, shard_bytes=0, metadata=None):
    """Write a model's tensors: one model.safetensors when shard_bytes <= 0, else shards of
    at most ~shard_bytes (a tensor never split) named model-0000i-of-0000n.safetensors plus
    model.safetensors.index.json; every file carries {"format": "pt"} + metadata in its
    "__metadata__". Returns the list of files written."""
    os.makedirs(model_dir, exist_ok=True)
    meta = dict({"format": "pt"}, **(metadata or {}))
    if shard_bytes <= 0:
        write_file(os.path.join(model_dir, SINGLE_NAME), tensors, meta)
        return [SINGLE_NAME]
    groups, cur, cur_bytes = [], {}, 0
    for name in sorted(tensors):
        nb = tensors[name].raw.nbytes
        if cur and cur_bytes + nb > shard_bytes:
            groups.append(cur)
            cur, cur_bytes = {}, 0
        cur[name] = tensors[name]
        cur_bytes += nb
    if cur:
        groups.append(cur)
    files, wmap = [], {}
    for i, g in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        write_file(os.path.join(model_dir, fname), g, meta)
        files.append(fname)
        wmap.update({n: fname for n in g})
    total = sum(t.raw.nbytes for t in tensors.values())
    with open(os.path.join(model_dir, INDEX_NAME), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wmap}, f, indent=2,
                  sort_keys=True)
    return files + [INDEX_NAME]
