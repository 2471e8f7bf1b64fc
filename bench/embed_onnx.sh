#!/usr/bin/env bash
# Embedding throughput of an imported ONNX face model, end to end (decode, align, network): `ffem
# embed` (ONNX Runtime engine, and tract, the default build's) against the same model in Python
# onnxruntime + OpenCV alignment (bench/embed_python.py), on the same LFW photos with their
# landmarks, the same cores, no flip. Also prints how far apart the two sets of embeddings are.
#   bash bench/embed_onnx.sh [N_IMAGES]     (default 2000; the model: OpenCV's SFace)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2000}"
DATA="${FFEM_DATA:-../shared/data}"
VENV=.venv-tf
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import onnxruntime, cv2" 2>/dev/null || "$VENV/bin/pip" install -q onnxruntime opencv-python-headless numpy
scripts/fetch-sface.sh >/dev/null
scripts/fetch-onnxruntime.sh >/dev/null
SFACE="${FFEM_SFACE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ffem/sface-2021dec-int8bq}/face_recognition_sface_2021dec_int8bq.onnx"
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
python3 - "$DATA/lfw/image_list.json" "$TMP/list.json" "$N" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
keys = sorted(d)[: int(sys.argv[3])]
json.dump({k: d[k] for k in keys}, open(sys.argv[2], "w"))
PY
ROOT="$DATA/lfw/lfw-deepfunneled"
# Two builds, each copied aside: the default (tract) and --features onnxruntime.
cargo build --release -q -p ffem
cp target/release/ffem "$TMP/ffem-default"
cargo build --release -q -p ffem --features onnxruntime
cp target/release/ffem "$TMP/ffem-ort"
"$TMP/ffem-ort" import "$SFACE" --output "$TMP/sface" --onnx-channels bgr --onnx-mean 0 --onnx-std 1 >/dev/null
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
# The same graph both sides run: the imported copy (batch relaxed, the unused inputs dropped).
"$VENV/bin/python" bench/embed_python.py "$TMP/sface/model.onnx" "$TMP/list.json" "$ROOT" "$TMP/python.npy"
"$TMP/ffem-ort" embed "$TMP/sface" "$TMP/list.json" --root "$ROOT" --no-flip -o "$TMP/ort.npy" --engine onnxruntime
"$TMP/ffem-default" embed "$TMP/sface" "$TMP/list.json" --root "$ROOT" --no-flip -o "$TMP/tract.npy"
"$VENV/bin/python" - "$TMP" <<'PY'
import sys
import numpy as np
d = sys.argv[1]
unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
py = unit(np.load(f"{d}/python.npy"))
for name in ("ort", "tract"):
    cos = (py * unit(np.load(f"{d}/{name}.npy"))).sum(1)
    print(f"ffem ({name}) vs python, cosine of each image's two embeddings: mean {cos.mean():.4f}, min {cos.min():.4f}")
PY
