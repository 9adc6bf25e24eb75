#!/usr/bin/env bash
# run_llamacpp.sh — llama.cpp's speed on the same weights as demolish (the project's speed bar).
#
# Converts a GLM-MoE-DSA model directory (bf16 safetensors, as `demolish init` writes them) to a
# GGUF of llama.cpp's glm-dsa architecture with bench/hf_to_gguf_glm_dsa.py — only when the GGUF
# is missing or older than the model's files or the converter — then runs llama-bench on it:
# prefill of PROMPT tokens (pp512) and decode of GEN tokens (tg128), REPS repetitions each,
# once per thread count in THREADS. Run `demolish bench` on the same directory for our side.
#
# usage:
#   LLAMACPP_BUILD=/work/llamacpp-build bench/run_llamacpp.sh MODEL_DIR [extra llama-bench args]
# environment:
#   LLAMACPP_BUILD   llama.cpp build directory holding bin/llama-bench (required)
#   LLAMACPP_SRC     llama.cpp source tree, for its gguf-py package (default: the source
#                    directory recorded in $LLAMACPP_BUILD/CMakeCache.txt)
#   GGUF             the GGUF to write/use (default: MODEL_DIR without its trailing / + ".gguf")
#   THREADS          comma-separated thread counts (default "2,1")
#   PROMPT GEN REPS  llama-bench -p / -n / -r (default 512 128 5)
#   PYTHON           a python3 with numpy (default /usr/bin/python3)
# Timings on a shared machine are indicative only; rerun on an idle one for numbers to quote.
#
# Building llama.cpp beside the project (outside /work/main; nothing of it is ever committed).
# Any recent tree with the glm-dsa architecture (src/models/glm-dsa.cpp) works:
#   mkdir -p /work/llamacpp-src
#   git --git-dir=/work/.mirror/unslothai+llama.cpp/repo archive HEAD | tar -x -C /work/llamacpp-src
#       (that mirror lacks a few large test files; exclude them with ':(exclude)PATH' pathspecs,
#        or use a normal `git clone`)
#   cmake -S /work/llamacpp-src -B /work/llamacpp-build -DCMAKE_BUILD_TYPE=Release \
#         -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF \
#         -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF
#   cmake --build /work/llamacpp-build --target llama-bench llama-simple -j2    # ~8 min, 2 cores
# GGML_NATIVE=ON compiles ggml-cpu with -march=native, so on this Sapphire Rapids it uses
# AVX-512 and the AVX512_BF16 dot product (bf16 weights x bf16-rounded activations).
set -euo pipefail

die() { echo "run_llamacpp.sh: $*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: LLAMACPP_BUILD=DIR $0 MODEL_DIR [extra llama-bench args]"
MODEL_DIR=${1%/}
shift
[ -f "$MODEL_DIR/config.json" ] || die "$MODEL_DIR: no config.json"
[ -n "${LLAMACPP_BUILD:-}" ] || die "set LLAMACPP_BUILD to a llama.cpp build directory"
BENCH_BIN=$LLAMACPP_BUILD/bin/llama-bench
[ -x "$BENCH_BIN" ] || die "$BENCH_BIN not found (build the llama-bench target)"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONVERTER=$HERE/hf_to_gguf_glm_dsa.py
PYTHON=${PYTHON:-/usr/bin/python3}
GGUF=${GGUF:-$MODEL_DIR.gguf}
THREADS=${THREADS:-2,1}
PROMPT=${PROMPT:-512}
GEN=${GEN:-128}
REPS=${REPS:-5}

if [ -z "${LLAMACPP_SRC:-}" ]; then
    LLAMACPP_SRC=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$LLAMACPP_BUILD/CMakeCache.txt" 2>/dev/null || true)
fi
[ -d "${LLAMACPP_SRC:-}/gguf-py/gguf" ] || die "set LLAMACPP_SRC to the llama.cpp source tree (needs gguf-py/)"

# The GGUF is stale when any input is newer: the weights, config, tokenizer, or the converter.
needs_convert() {
    [ -f "$GGUF" ] || return 0
    local f
    for f in "$MODEL_DIR"/*.safetensors "$MODEL_DIR"/*.json "$CONVERTER"; do
        [ -e "$f" ] && [ "$f" -nt "$GGUF" ] && return 0
    done
    return 1
}

if needs_convert; then
    echo "== converting $MODEL_DIR -> $GGUF"
    start=$(date +%s)
    PYTHONPATH=$LLAMACPP_SRC/gguf-py "$PYTHON" "$CONVERTER" "$MODEL_DIR" "$GGUF"
    echo "   conversion took $(( $(date +%s) - start )) s"
else
    echo "== using $GGUF (up to date)"
fi

echo "== llama-bench: $GGUF, threads $THREADS, -p $PROMPT -n $GEN -r $REPS"
echo "   cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores online;" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$BENCH_BIN" -m "$GGUF" -t "$THREADS" -p "$PROMPT" -n "$GEN" -r "$REPS" "$@"
