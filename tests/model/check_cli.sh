#!/usr/bin/env bash
# check_cli — the commands as a user runs them: init (presets, dtypes, shards),
# info (text and --json), generate (a fixed seed gives the same text twice, a
# different seed different text; --chat; --stop; greedy), logits --text, bench,
# and the usage errors (exit code 2).
# usage: check_cli.sh <demolish> <scratch-dir>
set -u
BIN=$1
TMP=$2
PY=/usr/bin/python3
rm -rf "$TMP" && mkdir -p "$TMP"
fails=0
ok()   { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails+1)); }

"$BIN" init --preset small --seed 5 -q "$TMP/small" && ok "init small" || fail "init small"
"$BIN" init --preset tiny --dtype nvfp4 --shard-mb 0.05 -q "$TMP/tiny-nvfp4" && ok "init tiny nvfp4 sharded" || fail "init nvfp4 sharded"
[ -f "$TMP/tiny-nvfp4/model.safetensors.index.json" ] && ok "sharded output has an index" || fail "no index.json for a sharded model"
"$BIN" init --preset tiny -q "$TMP/small" 2>/dev/null; [ $? -eq 1 ] && ok "init refuses to overwrite without --force" || fail "init overwrote"
ls -a "$TMP" | grep -q partial && fail "a partial directory was left behind" || ok "no partial directory left"

"$BIN" info "$TMP/small" | grep -q "GlmMoeDsaForCausalLM" && ok "info" || fail "info"
"$BIN" info "$TMP/tiny-nvfp4" --json | $PY -c "import json,sys; d=json.load(sys.stdin); assert d['experts_per_layer']==[0,16,12,8,12], d; assert d['bytes_by_dtype']['U8']>0" \
  && ok "info --json (per-layer experts, nvfp4 bytes)" || fail "info --json"

gen() { "$BIN" generate "$TMP/small" -q "$@" 2>/dev/null; }
a=$(gen -p "def parse_args(" -n 24 --temp 0.9 --seed 11)
b=$(gen -p "def parse_args(" -n 24 --temp 0.9 --seed 11)
c=$(gen -p "def parse_args(" -n 24 --temp 0.9 --seed 12)
[ -n "$a" ] && [ "$a" = "$b" ] && ok "same seed, same text" || fail "same seed gave different text"
[ "$a" != "$c" ] && ok "different seed, different text" || fail "different seeds gave the same text"
g1=$(gen -p "hello" -n 16 --temp 0); g2=$(gen -p "hello" -n 16 --temp 0 --seed 99)
[ "$g1" = "$g2" ] && ok "greedy ignores the seed" || fail "greedy depends on the seed"
# a stop string taken from the greedy output itself must cut the text right before it
stop=$(printf '%s' "$g1" | $PY -c "import sys; s=sys.stdin.read()[5:]; print(s[len(s)//2:len(s)//2+2], end='')")
g3=$(gen -p "hello" -n 16 --temp 0 --stop "$stop")
full="${g1}"
[ -n "$stop" ] && [ "${#g3}" -lt "${#full}" ] && [ "${full#"$g3"}" != "$full" ] && ok "--stop cuts the output" || fail "--stop: '$g3' vs '$full' (stop '$stop')"
"$BIN" generate "$TMP/small" -q --chat --system "be brief" -p "hi" -n 8 --json 2>"$TMP/gen.json" >/dev/null \
  && $PY -c "import json; d=json.loads(open('$TMP/gen.json').read().strip().splitlines()[-1]); assert d['prompt_tokens']>5 and d['generated_tokens']<=8" \
  && ok "generate --chat --json" || fail "generate --chat --json"

"$BIN" logits "$TMP/small" --text "def fib(n):" --out "$TMP/l.npy" -q \
  && $PY -c "import numpy as np; a=np.load('$TMP/l.npy'); assert a.ndim==2 and a.shape[1]==2048 and np.isfinite(a).all(), a.shape" \
  && ok "logits --text" || fail "logits --text"
"$BIN" bench "$TMP/small" -p 32 -n 8 -r 2 --json | $PY -c "import json,sys; d=json.load(sys.stdin); assert d['pp_tok_per_s']>0 and d['tg_tok_per_s']>0" \
  && ok "bench --json" || fail "bench --json"

usage() { "$BIN" "$@" >/dev/null 2>&1; [ $? -eq 2 ] && ok "usage error: $*" || fail "expected exit 2: $*"; }
usage frobnicate
usage generate "$TMP/small"
usage generate "$TMP/small" -p hi --temp hot
usage logits "$TMP/small" --ids 1,2
usage init --preset nope "$TMP/x"
usage init --preset tiny --dtype int3 "$TMP/x"
"$BIN" generate --help | grep -q -- "--min-p" && ok "generate --help" || fail "generate --help"

[ $fails -eq 0 ] && echo "check_cli: ok" || echo "check_cli: $fails failure(s)"
[ $fails -eq 0 ]
