# codec_oracle.py — the independent oracle for test_codec_oracle.c: checks the
# C bf16 and f16 conversions dumped in DIR against PyTorch (bfloat16) and
# numpy (float16), both round to nearest even. Run with /usr/bin/python3
# (Debian's, which has torch and numpy). Exits 1 on any mismatch, printing the
# first ones. NaN inputs only need a NaN output (payloads differ by design).
import sys

import numpy as np
import torch


def report(what, inputs, ours, ref, bad):
    idx = np.flatnonzero(bad)
    for i in idx[:10]:
        print(f"FAIL {what}: input 0x{int(inputs[i]):08x} ours 0x{int(ours[i]):x} oracle 0x{int(ref[i]):x}")
    print(f"{what}: {idx.size} mismatches of {inputs.size}")
    return idx.size


def main():
    d = sys.argv[1]
    x = np.fromfile(d + "/in.u32", dtype=np.uint32)
    f = x.view(np.float32)
    nan_in = np.isnan(f)
    fails = 0

    ours = np.fromfile(d + "/bf16.u16", dtype=np.uint16)
    ref = torch.from_numpy(f.copy()).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    ours_nan = ((ours & 0x7F80) == 0x7F80) & ((ours & 0x7F) != 0)
    bad = np.where(nan_in, ~ours_nan, ours != ref)
    fails += report("f32->bf16", x, ours, ref, bad)

    ours = np.fromfile(d + "/f16.u16", dtype=np.uint16)
    with np.errstate(all="ignore"):
        ref = f.astype(np.float16).view(np.uint16)
    ours_nan = ((ours & 0x7C00) == 0x7C00) & ((ours & 0x3FF) != 0)
    bad = np.where(nan_in, ~ours_nan, ours != ref)
    fails += report("f32->f16", x, ours, ref, bad)

    codes = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    for name, ref_f in (
        ("f16->f32", codes.view(np.float16).astype(np.float32)),
        ("bf16->f32", torch.from_numpy(codes.view(np.int16)).view(torch.bfloat16).float().numpy()),
    ):
        ours = np.fromfile(d + "/" + name.split("-")[0] + "_dec.u32", dtype=np.uint32)
        ref = ref_f.view(np.uint32)
        bad = np.where(np.isnan(ref_f), ~np.isnan(ours.view(np.float32)), ours != ref)
        fails += report(name, codes, ours, ref, bad)

    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
