# st_oracle.py — an independent, strict safetensors reader for
# test_st_roundtrip.c, written from the format description (not from our C
# code): for a checkpoint directory (model.safetensors, or shards through
# model.safetensors.index.json) it checks what the reference implementation
# requires of a file — header length a multiple of 8 padded with spaces,
# strict UTF-8 JSON object without duplicate keys, string metadata, known
# dtypes, offsets that tile the data section exactly from 0 to its end,
# element-size alignment — and that index.json's weight_map and total_size
# match the shards. It prints one line per tensor and per metadata entry
# (names hex-encoded, bytes hashed with FNV-1a 64), sorted; the C test
# compares them with its own. Errors go to stderr with exit status 1.
import json
import os
import struct
import sys

SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I64": 8,
         "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}


def fail(msg):
    print("st_oracle: " + msg, file=sys.stderr)
    sys.exit(1)


def no_dups(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        fail("duplicate key in " + repr(keys))
    return dict(pairs)


def fnv(b):
    h = 1469598103934665603
    for x in b:
        h = ((h ^ x) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def read_file(path, lines):
    b = open(path, "rb").read()
    (n,) = struct.unpack("<Q", b[:8])
    if n % 8 or 8 + n > len(b):
        fail(f"{path}: header length {n}")
    raw = b[8:8 + n]
    text = raw.decode("utf-8")
    if not text.rstrip(" ").endswith("}"):
        fail(f"{path}: header not padded with spaces only")
    hdr = json.loads(text, object_pairs_hook=no_dups)
    data = b[8 + n:]
    spans = []
    for name, e in hdr.items():
        if name == "__metadata__":
            for k, v in e.items():
                if not isinstance(v, str):
                    fail(f"{path}: metadata {k} not a string")
                lines.append(f"meta\t{os.path.basename(path)}\t{k.encode().hex()}\t{v.encode().hex()}")
            continue
        es = SIZES[e["dtype"]]
        b0, b1 = e["data_offsets"]
        numel = 1
        for d in e["shape"]:
            numel *= d
        if b1 - b0 != numel * es:
            fail(f"{path}: {name}: size")
        if (8 + n + b0) % es:
            fail(f"{path}: {name}: misaligned")
        spans.append((b0, b1))
        shape = ",".join(str(d) for d in e["shape"])
        lines.append(f"{name.encode().hex()}\t{e['dtype']}\t[{shape}]\t{fnv(data[b0:b1]):016x}")
    end = 0
    for b0, b1 in sorted(spans):
        if b0 != end:
            fail(f"{path}: hole or overlap at {b0}")
        end = b1
    if end != len(data):
        fail(f"{path}: data section has {len(data)} bytes, tensors cover {end}")
    return hdr


def main():
    d = sys.argv[1]
    lines = []
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        idx = json.load(open(index, encoding="utf-8"), object_pairs_hook=no_dups)
        total = 0
        for shard in sorted(set(idx["weight_map"].values())):
            hdr = read_file(os.path.join(d, shard), lines)
            for name, e in hdr.items():
                if name != "__metadata__":
                    if idx["weight_map"].get(name) != shard:
                        fail(f"index does not map {name} to {shard}")
                    total += e["data_offsets"][1] - e["data_offsets"][0]
        if idx["metadata"]["total_size"] != total:
            fail(f"total_size {idx['metadata']['total_size']} != {total}")
    else:
        read_file(os.path.join(d, "model.safetensors"), lines)
    for line in sorted(lines):
        print(line)


if __name__ == "__main__":
    main()
