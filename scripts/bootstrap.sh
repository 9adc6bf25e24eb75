#!/usr/bin/env bash
# The newcomer's command (README.md): installs dependencies, builds, and runs
# the main job on the bundled reference model (models/reference): REAP
# calibration on its training text, a plan that removes 25 % of the routed
# experts of every MoE layer (the MTP layer included), the byte-exact prune,
# and the pruned model's KL to the original on held-out text, then a sample
# from the pruned model. Outputs go to runs/main/ (rerunning reuses them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh Release
B=./build/demolish
M=models/reference
R=runs/main
mkdir -p "$R"
[ -f data/corpus/test.jsonl ] || "$B" corpus build --out data/corpus   # from Debian packages, ~1 min
"$B" info "$M"
[ -f "$R/stats.st" ] || "$B" calibrate "$M" --data data/corpus:train --max-tokens 65536 --out "$R/stats.st"
"$B" plan "$R/stats.st" --criterion reap --keep 0.75 --out "$R/plan-reap25.json"
"$B" prune "$M" --plan "$R/plan-reap25.json" --out "$R/reference-reap25" --force
"$B" eval kl "$M" "$R/reference-reap25" --data data/corpus:test --max-tokens 32768 --cache "$R/teacher-test.kl"
"$B" generate "$R/reference-reap25" -p "def parse_args(" -n 64 --temp 0.7 --min-p 0.05 --seed 1
