#!/usr/bin/env bash
# Export MODEL_DIR to ONNX, embed 256 LFW faces with ffem (no flip) saving the network inputs,
# run the ONNX file in onnxruntime on those inputs, compare, and time both runtimes.
#   bench/onnx_check.sh runs/cfp/step2/model
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="$1"
DATA="${FFEM_DATA:-../shared/data}"
VENV=.venv-tf
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import onnxruntime" 2>/dev/null || "$VENV/bin/pip" install -q onnxruntime numpy
cargo build --release -q -p ffem
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
python3 - "$DATA/lfw/image_list.json" "$TMP/list.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
json.dump(dict(list(d.items())[:256]), open(sys.argv[2], "w"))
PY
target/release/ffem export "$MODEL" --onnx "$TMP/model.onnx"
target/release/ffem embed "$MODEL" "$TMP/list.json" --root "$DATA/lfw/lfw-deepfunneled" --no-flip --output "$TMP/emb.npy" --save-crops "$TMP/crops.npy" > /dev/null
SIZE=$(python3 -c "import json; print(json.load(open('$MODEL/model.json'))['image_size'])")
"$VENV/bin/python" bench/onnx_check.py "$TMP/model.onnx" "$TMP/crops.npy" "$TMP/emb.npy" "$SIZE"
CFG=$(python3 -c "
import json; c = json.load(open('$MODEL/model.json')); b = c['backbone']
print('--backbone', b['variant'], '--head', c['head'], '--image', c['image_size'], '--minimalistic' if b['minimalistic'] else '')")
target/release/ffem bench-train --device cpu $CFG --batch 64 --steps 10 --warmup 2 --infer
