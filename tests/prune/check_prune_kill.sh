#!/usr/bin/env bash
# check_prune_kill — `demolish prune` killed with SIGKILL at many points never
# leaves a wrong model at the output path. The model (~100 MB bf16, 13 input
# shards, 4 MoE layers x 64 experts, plus a 32 MB side file and 40 small ones so
# that copying side files takes a moment) is pruned to 48 experts per layer
# with a plan in the published format, and killed
#   * after increasing delays spanning a whole run (measured first), and
#   * on events seen in the partial directory: the first shard being written,
#     config.json written (side files being copied), the big side file being
#     copied, prune_plan.json written (just before the rename);
#   * with --force over an existing complete output, after delays and at the
#     moment the old output is moved aside.
# After every kill the output path must either not exist or be a complete,
# correct pruned model (prune_check.py). Leftovers may exist only beside it,
# hidden and named .<out>.partial-<pid> (the directory being written; its
# shards are model-*.safetensors.tmp-<pid> until finished) or
# .<out>.partial-<pid>.old-<pid> (an old output moved aside by --force, killed
# before it was deleted); nothing else may appear in the output's parent. A
# final normal run over the leftovers must succeed and pass the checker.
# usage: check_prune_kill.sh <demolish> <scratch-dir>
set -u
BIN=$1
TMP=$2
. "$(dirname "$0")/prune_lib.sh"
rm -rf "$TMP" && mkdir -p "$TMP/work"
SRC="$TMP/big"
OUT="$TMP/work/pruned"
PLAN="$TMP/plan.json"
N_TIMED=14

make_config "$TMP/big.json" '{"hidden_size": 256, "intermediate_size": 256, "moe_intermediate_size": 256,
  "n_routed_experts": 64, "q_lora_rank": 64}'
"$BIN" init "$SRC" --config "$TMP/big.json" --shard-mb 8 -q || { fail "init"; finish; }
$PY - "$SRC" "$PLAN" <<'EOF'
import json, os, random, sys
src, plan = sys.argv[1], sys.argv[2]
with open(os.path.join(src, "vocab.bin"), "wb") as f:   # a big side file
    f.write(bytes(range(256)) * (32 << 12))
for i in range(40):
    with open(os.path.join(src, f"extra_{i:02d}.txt"), "w") as f:
        f.write(f"side file {i}\n" * 200)
r = random.Random(7)
json.dump({str(l): {"kept": sorted(r.sample(range(64), 48)), "keep": 48} for l in (1, 2, 3, 4)}, open(plan, "w"))
EOF

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
check_out() {   # the output path: absent, or complete and correct
    [ -e "$OUT" ] || return 0
    $PY "$PRUNE_TESTS/prune_check.py" "$SRC" "$OUT" "$PLAN" >/dev/null 2>"$TMP/check.err" && return 0
    cat "$TMP/check.err" | head -5
    return 1
}
check_leftovers() {   # only hidden .pruned.partial-<pid>[.old-<pid>] beside the output
    local bad
    bad=$(ls -A "$TMP/work" | grep -Ev '^(pruned|\.pruned\.partial-[0-9]+(\.old-[0-9]+)?)$')
    [ -z "$bad" ] || { echo "     unexpected entries: $bad"; return 1; }
}
# phase PID RC: how far a killed run got, from what its partial directory holds
phase() {
    local p="$TMP/work/.pruned.partial-$1"
    if [ "$2" -eq 0 ]; then echo "done"
    elif [ -d "$p.old-$1" ]; then [ -e "$OUT" ] && echo "removing-old-output" || echo "between-renames"
    elif [ ! -d "$p" ]; then echo "startup-or-exit"
    elif [ -e "$p/prune_plan.json" ]; then echo "before-rename"
    elif [ -e "$p/config.json" ]; then echo "side-files"
    elif ls "$p" | grep -q '\.safetensors$'; then echo "shards-renamed"
    elif ls "$p" | grep -q 'tmp-'; then echo "writing-shards"
    else echo "empty-partial"
    fi
}
declare -A seen
kills=0 interrupted=0
# after_kill TAG PID RC: record the phase, check the output and the leftovers
after_kill() {
    local ph
    ph=$(phase "$2" "$3")
    seen[$ph]=$(( ${seen[$ph]:-0} + 1 ))
    kills=$((kills + 1))
    [ "$3" -ne 0 ] && [ "$ph" != done ] && interrupted=$((interrupted + 1))
    if check_out && check_leftovers; then
        echo "     $1: rc $3, phase $ph, output $([ -e "$OUT" ] && echo complete || echo absent)"
    else
        fail "$1: after the kill (phase $ph) the output path holds a wrong model or junk"
    fi
    # keep the disk small: drop old leftovers, keeping the last few for the final run
    ls -dt "$TMP/work"/.pruned.partial-* 2>/dev/null | tail -n +4 | xargs -r rm -rf
}
run_bg() { "$BIN" prune "$SRC" --plan "$PLAN" --out "$OUT" -q "$@" 2>/dev/null & }
spin_until() {   # spin_until PID PATH: until PATH exists or PID exits
    while kill -0 "$1" 2>/dev/null && [ ! -e "$2" ]; do :; done
}

# --- one full run: correct, and how long it takes ---------------------------------------
t0=$(now_ms)
"$BIN" prune "$SRC" --plan "$PLAN" --out "$OUT" -q || fail "full run"
T=$(( $(now_ms) - t0 ))
check_out && ok "full run (${T} ms) is byte-exact" || fail "full run not byte-exact"
rm -rf "$OUT"

# --- timed kills, fresh output -------------------------------------------------------------
for k in $(seq 0 $((N_TIMED - 1))); do
    delay_ms=$(( T * (2 * k + 1) * 12 / (20 * N_TIMED) ))   # spans 0 .. 1.2 T
    run_bg; pid=$!
    sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
    kill -9 "$pid" 2>/dev/null; { wait "$pid"; } 2>/dev/null; rc=$?
    after_kill "kill after ${delay_ms} ms" "$pid" "$rc"
    rm -rf "$OUT"
done

# --- kills on events ------------------------------------------------------------------------
for ev in 'model-00001-of-*.tmp-*' config.json vocab.bin prune_plan.json; do
    run_bg; pid=$!
    p="$TMP/work/.pruned.partial-$pid"
    if [ "$ev" = 'model-00001-of-*.tmp-*' ]; then
        while kill -0 "$pid" 2>/dev/null && ! compgen -G "$p/$ev" >/dev/null; do :; done
    else
        spin_until "$pid" "$p/$ev"
    fi
    kill -9 "$pid" 2>/dev/null; { wait "$pid"; } 2>/dev/null; rc=$?
    after_kill "kill when $ev appears" "$pid" "$rc"
    rm -rf "$OUT"
done

# --- --force over a complete output ------------------------------------------------------------
"$BIN" prune "$SRC" --plan "$PLAN" --out "$OUT" -q || fail "run before the --force series"
for k in $(seq 0 5); do
    delay_ms=$(( T * (2 * k + 1) * 12 / (20 * 6) ))
    run_bg --force; pid=$!
    if [ "$k" -eq 5 ]; then   # the old output moved aside, the new one not yet in place
        spin_until "$pid" "$TMP/work/.pruned.partial-$pid.old-$pid"
    else
        sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
    fi
    kill -9 "$pid" 2>/dev/null; { wait "$pid"; } 2>/dev/null; rc=$?
    after_kill "--force, kill $([ "$k" -eq 5 ] && echo "when the old output is moved aside" || echo "after ${delay_ms} ms")" "$pid" "$rc"
    [ -e "$OUT" ] || "$BIN" prune "$SRC" --plan "$PLAN" --out "$OUT" -q || fail "re-create the output"
done

summary=""
for ph in "${!seen[@]}"; do summary="$summary $ph:${seen[$ph]}"; done
echo "     $kills kills, $interrupted interrupted a run; phases reached:$summary"
[ "$interrupted" -ge 3 ] && ok "$interrupted of $kills kills interrupted a run" \
    || fail "only $interrupted kills interrupted a run: the test did not test much"
[ "${seen[side-files]:-0}" -gt 0 ] && ok "a kill landed while side files were copied" \
    || echo "     note: no kill landed while side files were copied"

# --- a final normal run over the leftovers ----------------------------------------------------------
left=$(ls -A "$TMP/work" | grep -c partial)
if [ -e "$OUT" ]; then "$BIN" prune "$SRC" --plan "$PLAN" --out "$OUT" --force -q; else "$BIN" prune "$SRC" --plan "$PLAN" --out "$OUT" -q; fi \
    && check_out && check_leftovers && ok "a final run over $left leftover(s) succeeds and is byte-exact" \
    || fail "final run over the leftovers"
[ "$fails" -eq 0 ] && rm -rf "$TMP"
finish
