#!/usr/bin/env bash
# bench_train — training throughput of `demolish train` on the reference model's
# config (configs/reference.json, batch 8 x 512 tokens) against the PyTorch-CPU
# loop of the same model (bench/bench_train_torch.py), with 1 and 2 threads, in
# the dense and sparse stages; rounds interleaved so that both sides see the
# same machine. tokens/s = batch tokens / step time, median over the timed steps
# of a run (demolish: its log's per-interval rates after the first interval).
# The 1- vs 2-thread ratio is the reference recipe's parallel scaling.
#   usage: bench/bench_train.sh [ROUNDS] [STEPS]   (default 3 rounds, 12 steps)
# Writes bench/train_results.json and prints a summary; run on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
STEPS=${2:-12}
BIN=$PWD/build/demolish
PY=/usr/bin/python3
W=$(mktemp -d /tmp/bench_train.XXXXXX)
trap 'rm -rf "$W"' EXIT
[ -d data/corpus ] || "$BIN" corpus build --out data/corpus
for mode in dense sparse; do   # the reference config with one stage of this mode
  $PY - "$mode" "$STEPS" "$W/$mode.json" <<'PY'
import json, sys
c = json.load(open("configs/reference.json"))
c["train"]["stages"] = [{"mode": sys.argv[1], "steps": int(sys.argv[2])}]
c["train"]["log_every"] = 2
c["train"]["warmup"] = 2
c["train"]["checkpoint_every"] = 1000000
json.dump(c, open(sys.argv[3], "w"))
PY
done
RES=$W/rows.jsonl
: > "$RES"
for ((r = 1; r <= ROUNDS; r++)); do
  for mode in dense sparse; do
    for t in 2 1; do
      rm -rf "$W/out" "$W/out.ckpt" "$W/out.log.jsonl"
      OMP_WAIT_POLICY=passive "$BIN" train --config "$W/$mode.json" --data data/corpus \
        --tokenizer models/reference/tokenizer.json --out "$W/out" -t "$t" -q
      $PY - "$W/out.log.jsonl" "$mode" "$t" >> "$RES" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
tps = [r["tok_per_s"] for r in rows if r["step"] > 2 and r.get("tok_per_s")]
print(json.dumps({"impl": "demolish", "mode": sys.argv[2], "threads": int(sys.argv[3]), "tok_per_s": statistics.median(tps)}))
PY
      $PY bench/bench_train_torch.py --mode "$mode" --threads "$t" --steps "$STEPS" --warmup 2 --json \
        | $PY -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(json.dumps({'impl':'torch','mode':'$mode','threads':$t,'tok_per_s':d['tokens_per_s']}))" >> "$RES"
      tail -2 "$RES"
    done
  done
done
$PY - "$RES" bench/train_results.json <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
out = {}
for r in rows:
    out.setdefault(f"{r['impl']} {r['mode']} {r['threads']}t", []).append(r["tok_per_s"])
summary = {k: {"median": statistics.median(v), "runs": v} for k, v in sorted(out.items())}
json.dump(summary, open(sys.argv[2], "w"), indent=1)
for k, v in summary.items():
    print(f"{k:24} median {v['median']:7.0f} tok/s  runs " + " ".join(f"{x:.0f}" for x in v["runs"]))
for mode in ("dense", "sparse"):
    d1, d2 = summary.get(f"demolish {mode} 1t"), summary.get(f"demolish {mode} 2t")
    t2 = summary.get(f"torch {mode} 2t")
    if d1 and d2:
        print(f"{mode}: demolish 2 threads / 1 thread = {d2['median'] / d1['median']:.2f}x", end="")
        print(f"; demolish / torch at 2 threads = {d2['median'] / t2['median']:.2f}x" if t2 else "")
PY
