#!/usr/bin/env bash
# The newcomer's command (README.md): installs dependencies, builds, and runs
# the main job: make a small random GLM-MoE-DSA model, show what it is, and
# generate from it. (Later issues replace the random model with the trained
# reference model and the prune-and-measure pipeline.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh Release
mkdir -p models
[ -d models/small ] || ./build/demolish init --preset small --seed 1 models/small
./build/demolish info models/small
./build/demolish generate models/small -p "def fib(" -n 48 --temp 0.7 --min-p 0.05 --repeat-penalty 1.05
