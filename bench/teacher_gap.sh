#!/usr/bin/env bash
# Issue 11, part 2: how closely 128-d distilled students reproduce SFace, on 1,000 training images
# (CFP + CelebA) and 1,000 LFW images (held out), each drawn with a fixed seed. SFace embeds the
# LFW sample (about 70 s on 2 cores); its training-image embeddings come from bench/distill_run.sh.
# Usage: bench/teacher_gap.sh STUDENT_MODEL_DIR...   (FFEM: an ffem built with --features
# onnxruntime, default runs/distill/ffem; OUT: default runs/gap; TEACHER_NPY as in distill_run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${FFEM_DATA:-../shared/data}"
OUT="${OUT:-runs/gap}"
FFEM="${FFEM:-runs/distill/ffem}"
TEACHER_NPY="${TEACHER_NPY:-runs/distill/teacher_sface.npy}"
SFACE="${FFEM_SFACE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ffem/sface-2021dec-int8bq}/face_recognition_sface_2021dec_int8bq.onnx"
[ $# -ge 1 ] || { sed -n 2,6p "$0" >&2; exit 2; }
[ -f "$TEACHER_NPY" ] || { echo "error: $TEACHER_NPY is missing: run bench/distill_run.sh first" >&2; exit 1; }
mkdir -p "$OUT"
LFW_ROOT="$DATA/lfw/lfw-deepfunneled"
python3 - "$DATA/lfw/image_list.json" data/cfp_celeba.image_list.json "$OUT" <<'PY'
import json, random, sys
lfw, train, out = sys.argv[1:]
for name, path in (("lfw1000", lfw), ("train1000", train)):
    entries = json.load(open(path))
    keys = random.Random(0).sample(sorted(entries), 1000)
    json.dump({k: entries[k] for k in keys}, open(f"{out}/{name}.json", "w"))
PY
[ -f "$OUT/sface/external.json" ] || "$FFEM" import "$SFACE" --output "$OUT/sface" \
    --onnx-channels bgr --onnx-mean 0 --onnx-std 1 --threshold 0.363
[ -f "$OUT/lfw_teacher.npy" ] || "$FFEM" embed "$OUT/sface" \
    "$OUT/lfw1000.json" --root "$LFW_ROOT" -o "$OUT/lfw_teacher.npy" --strict
pairs=()
for model in "$@"; do
    name=$(echo "$model" | tr / _)
    "$FFEM" embed "$model" "$OUT/train1000.json" --root / -o "$OUT/train_$name.npy" --strict
    "$FFEM" embed "$model" "$OUT/lfw1000.json" --root "$LFW_ROOT" -o "$OUT/lfw_$name.npy" --strict
    pairs+=("$OUT/train_$name.npy:$OUT/lfw_$name.npy")
done
python3 bench/teacher_gap.py "$TEACHER_NPY" "$OUT/lfw_teacher.npy" "${pairs[@]}"
