#!/usr/bin/env bash
# check_selftest.sh — the PyTorch reference's own consistency checks (no engine needed).
# Run by CTest from the repo root: bash tests/reference/check_selftest.sh <demolish> <scratch>
# (both arguments unused). It runs ref_model.py --self-check: codec, container, RoPE/YaRN and
# config unit checks, then on four make_model.py checkpoints (full f32, full mixed-format
# sharded, alt mixed-format, smooth bf16): absorbed cached decode == expanded prefill, every
# prefix == the full causal forward, every tensor used, and every feature changes the logits.
set -u
exec /usr/bin/python3 tests/reference/ref_model.py --self-check
