#!/usr/bin/env bash
# compare_speed — demolish vs llama.cpp on the same weights, interleaved.
#
# The machine this runs on is a VM whose memory bandwidth drifts by 20-30%
# over minutes, so the two engines are run in alternation, ROUNDS times,
# each round being one `demolish bench` and one `llama-bench` (each with
# REPS repetitions of pp PROMPT and tg GEN); the report gives the median over
# rounds of each engine's per-round median, and the per-round ratios.
#
# usage: LLAMACPP_BUILD=/work/llamacpp-build bench/compare_speed.sh MODEL_DIR
#   (the GGUF is made by bench/run_llamacpp.sh / bench/hf_to_gguf_glm_dsa.py;
#    see bench/run_llamacpp.sh for building llama.cpp beside the project)
# environment: THREADS (2), PROMPT (512), GEN (128), REPS (3), ROUNDS (5),
#              DEMOLISH (./build/demolish), GGUF (MODEL_DIR.gguf)
set -euo pipefail
MODEL=${1:?usage: compare_speed.sh MODEL_DIR}
MODEL=${MODEL%/}
THREADS=${THREADS:-2}; PROMPT=${PROMPT:-512}; GEN=${GEN:-128}; REPS=${REPS:-3}; ROUNDS=${ROUNDS:-5}
DEMOLISH=${DEMOLISH:-./build/demolish}
GGUF=${GGUF:-$MODEL.gguf}
LB=${LLAMACPP_BUILD:?set LLAMACPP_BUILD}/bin/llama-bench
[ -f "$GGUF" ] || { echo "no $GGUF: run bench/run_llamacpp.sh $MODEL first" >&2; exit 1; }
PY=/usr/bin/python3
out=$(mktemp -d)
for r in $(seq 1 "$ROUNDS"); do
  "$DEMOLISH" bench "$MODEL" -t "$THREADS" -p "$PROMPT" -n "$GEN" -r "$REPS" --json > "$out/d$r.json"
  /usr/bin/time -f '%M' -o "$out/lrss$r" "$LB" -m "$GGUF" -t "$THREADS" -p "$PROMPT" -n "$GEN" -r "$REPS" -o json > "$out/l$r.json" 2>/dev/null
  echo "round $r done" >&2
done
$PY - "$out" "$ROUNDS" "$PROMPT" "$GEN" "$THREADS" <<'EOF'
import json, statistics, sys
d, rounds, pp, tg, th = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
dp, dt, lp, lt, drss, lrss = [], [], [], [], [], []
for r in range(1, rounds + 1):
    a = json.load(open(f"{d}/d{r}.json"))
    dp.append(a["pp_tok_per_s"]); dt.append(a["tg_tok_per_s"]); drss.append(a["peak_rss_bytes"] / 2**20)
    for t in json.load(open(f"{d}/l{r}.json")):
        (lp if t["n_prompt"] > 0 else lt).append(t["avg_ts"])
    lrss.append(int(open(f"{d}/lrss{r}").read().split()[-1]) / 1024)
med = statistics.median
print(f"threads {th}, {rounds} interleaved rounds; median over rounds (min-max)")
print(f"| engine | pp{pp} tok/s | tg{tg} tok/s | peak RSS MiB |")
print("|---|---|---|---|")
print(f"| demolish | {med(dp):.1f} ({min(dp):.1f}-{max(dp):.1f}) | {med(dt):.2f} ({min(dt):.2f}-{max(dt):.2f}) | {med(drss):.0f} |")
print(f"| llama.cpp | {med(lp):.1f} ({min(lp):.1f}-{max(lp):.1f}) | {med(lt):.2f} ({min(lt):.2f}-{max(lt):.2f}) | {med(lrss):.0f} |")
print(f"per-round ratio demolish/llama.cpp: pp {med([a/b for a,b in zip(dp,lp)]):.2f}x, tg {med([a/b for a,b in zip(dt,lt)]):.2f}x")
EOF
rm -rf "$out"
