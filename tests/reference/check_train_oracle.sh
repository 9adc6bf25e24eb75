#!/usr/bin/env bash
# check_train_oracle.sh — the training oracle's own checks (no engine needed).
# Run by CTest from the repo root: bash tests/reference/check_train_oracle.sh <demolish> <scratch>
# (both arguments unused). It runs train_ref.py selftest --quick: lr schedule, AdamW and clipping
# against torch.optim / torch.nn.utils, hand-computed bias update, KL and balance cases, autograd
# against finite differences (sparse mode), float32 dumps of the oracle passing the float64 checks
# in every mode, and tampered or deliberately wrong dumps failing. The full set (finite differences
# in every mode, all 19 wrong oracles): /usr/bin/python3 tests/reference/train_ref.py selftest
set -u
exec /usr/bin/python3 tests/reference/train_ref.py selftest --quick
