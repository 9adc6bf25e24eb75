#!/usr/bin/env bash
# check_bad_input — what a user sees when a model directory is broken: for each
# corruption `demolish info` (which loads and validates every tensor) must exit
# with code 1 (not a crash, not success) and print ONE line naming the file and
# the tensor or field at fault. The library-level cases are in tests/formats/.
# usage: check_bad_input.sh <demolish> <scratch-dir>
set -u
BIN=$1
TMP=$2
PY=/usr/bin/python3
rm -rf "$TMP" && mkdir -p "$TMP"
"$BIN" init --preset tiny --seed 3 -q "$TMP/good" || { echo "FAIL: init"; exit 1; }
"$BIN" info "$TMP/good" >/dev/null || { echo "FAIL: the good model does not load"; exit 1; }

# mutate NAME PYTHON-CODE: copies the good model to $TMP/NAME and runs the code
# with `st` (path of model.safetensors) and `cfg` (path of config.json) set.
mutate() {
  rm -rf "$TMP/$1"; cp -r "$TMP/good" "$TMP/$1"
  $PY - "$TMP/$1/model.safetensors" "$TMP/$1/config.json" <<EOF
import json, struct, sys
st, cfg = sys.argv[1], sys.argv[2]
def read():
    b = open(st, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    return json.loads(b[8:8+n]), b[8+n:]
def write(h, data):
    hb = json.dumps(h).encode(); hb += b' ' * ((8 - len(hb) % 8) % 8)
    open(st, 'wb').write(struct.pack('<Q', len(hb)) + hb + data)
$2
EOF
}

fails=0
# expect NAME EXPECTED-SUBSTRING...: runs info, checks exit code 1 and the message
expect() {
  local name=$1; shift
  local out rc
  out=$("$BIN" info "$TMP/$name" 2>&1 >/dev/null); rc=$?
  local lines; lines=$(printf '%s\n' "$out" | grep -c .)
  local ok=1
  [ "$rc" -eq 1 ] || ok=0
  [ "$lines" -eq 1 ] || ok=0
  for s in "$@"; do printf '%s' "$out" | grep -qF -- "$s" || ok=0; done
  if [ $ok = 1 ]; then echo "ok   $name: $out"; else echo "FAIL $name (exit $rc, $lines lines; want: $*): $out"; fails=$((fails+1)); fi
}

T=model.layers.1.self_attn.kv_b_proj.weight
mutate truncated "import os; os.truncate(st, os.path.getsize(st) - 1000)"
expect truncated model.safetensors "lm_head.weight"
mutate header_beyond "b = bytearray(open(st,'rb').read()); b[0:8] = struct.pack('<Q', len(b) + 100); open(st,'wb').write(b)"
expect header_beyond model.safetensors header
mutate overlap "h, d = read(); h['$T']['data_offsets'] = h['model.norm.weight']['data_offsets'][:1] + [h['model.norm.weight']['data_offsets'][0] + h['$T']['data_offsets'][1] - h['$T']['data_offsets'][0]]; write(h, d)"
expect overlap model.safetensors overlap
mutate out_of_range "h, d = read(); h['$T']['data_offsets'] = [len(d) - 8, len(d) + 4088]; write(h, d)"
expect out_of_range model.safetensors "$T"
mutate unknown_dtype "h, d = read(); h['$T']['dtype'] = 'F7'; write(h, d)"
expect unknown_dtype model.safetensors "$T" F7
mutate shape_mismatch "h, d = read(); h['$T']['shape'][0] += 1; write(h, d)"
expect shape_mismatch model.safetensors "$T"
mutate missing_tensor "h, d = read(); del h['$T']; write(h, d)"
expect missing_tensor "missing_tensor" "$T"
mutate wrong_shape "h, d = read(); e = h['$T']; e['shape'] = [e['shape'][1], e['shape'][0]]; write(h, d)"
expect wrong_shape model.safetensors "$T" shape
mutate nan_config "import re; s = re.sub(r'\"rms_norm_eps\":\\s*[^,}]+', '\"rms_norm_eps\": NaN', open(cfg).read()); assert 'NaN' in s; open(cfg, 'w').write(s)"
expect nan_config config.json rms_norm_eps
mutate unknown_type "c = json.load(open(cfg)); c['model_type'] = 'mixtral'; json.dump(c, open(cfg, 'w'))"
expect unknown_type config.json model_type mixtral
mutate bad_scoring "c = json.load(open(cfg)); c['scoring_func'] = 'relu'; json.dump(c, open(cfg, 'w'))"
expect bad_scoring config.json scoring_func
mutate no_config "import os; os.remove(cfg)"
expect no_config config.json
mutate fp8_no_scale "h, d = read(); e = h['$T']; e['dtype'] = 'F8_E4M3'; n = e['shape'][0] * e['shape'][1]; e['data_offsets'] = [e['data_offsets'][0], e['data_offsets'][0] + n]; write(h, d)"
expect fp8_no_scale model.safetensors "$T" weight_scale_inv

# the input was never modified
cmp -s "$TMP/good/model.safetensors" "$TMP/truncated/model.safetensors" && { echo "FAIL: mutation did nothing"; fails=$((fails+1)); }
"$BIN" info "$TMP/good" >/dev/null || { echo "FAIL: the good model no longer loads"; fails=$((fails+1)); }
[ $fails -eq 0 ] && echo "check_bad_input: ok" || echo "check_bad_input: $fails failure(s)"
[ $fails -eq 0 ]
