#!/usr/bin/env bash
# Grouping quality and speed (issue 27): LFW's 13,233 faces (5,749 people) embedded with OpenCV's
# SFace, grouped by `ffem cluster` with its defaults (Chinese whispers, links at a quarter of the
# way from SFace's verification threshold 0.363 to 1) and with the density rule, scored against
# the true labels; then scikit-learn's DBSCAN, HDBSCAN and agglomerative clustering on the same
# embeddings, each over a parameter sweep (bench/cluster_reference.py).
#   bash bench/cluster_bench.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/cluster_bench}"
DATA="${FFEM_DATA:-../shared/data}"
mkdir -p "$OUT"
VENV=.venv-tf
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import sklearn" 2>/dev/null || "$VENV/bin/pip" install -q scikit-learn numpy
scripts/fetch-sface.sh >/dev/null
scripts/fetch-onnxruntime.sh >/dev/null
SFACE="${FFEM_SFACE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ffem/sface-2021dec-int8bq}/face_recognition_sface_2021dec_int8bq.onnx"
cargo build --release -q -p ffem --features onnxruntime
cp target/release/ffem "$OUT/ffem"
FFEM="$OUT/ffem"
[ -f "$OUT/sface/external.json" ] || $FFEM import "$SFACE" --output "$OUT/sface" \
    --onnx-channels bgr --onnx-mean 0 --onnx-std 1 --threshold 0.363 >/dev/null
[ -f "$OUT/lfw_sface.npy" ] || $FFEM embed "$OUT/sface" "$DATA/lfw/image_list.json" \
    --root "$DATA/lfw/lfw-deepfunneled" -o "$OUT/lfw_sface.npy" --strict
# What `ffem cluster MODEL ...` derives from the saved threshold, for the precomputed embeddings.
T=$(python3 -c "t = 0.363; print(round(t + 0.25 * (1 - t), 4))")
for alg in chinese-whispers density; do
    echo "== ffem cluster --algorithm $alg --threshold $T"
    $FFEM cluster --embeddings "$OUT/lfw_sface.npy" --threshold "$T" --algorithm "$alg" \
        -o "$OUT/people_$alg.json" --score
done
"$VENV/bin/python" bench/cluster_reference.py "$OUT/lfw_sface.npy" --json "$OUT/reference.json"
