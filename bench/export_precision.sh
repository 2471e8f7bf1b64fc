#!/usr/bin/env bash
# Deployment precisions (issue 26): OpenCV's SFace and an ffem model, each exported in fp32,
# fp16 and int8 (`ffem export --precision`; int8 calibrated on 256 CelebA faces, none of them in
# LFW), imported back (`ffem import` reads the convention the export recorded), scored on LFW
# (10-fold, flip TTA) and timed embedding 2000 LFW faces (`ffem embed`, no flip, landmarks from
# the list: decode + align + network), all in ONNX Runtime on this machine's cores.
#   bash bench/export_precision.sh FFEM_MODEL_DIR [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="$1"
OUT="${2:-runs/export_precision}"
DATA="${FFEM_DATA:-../shared/data}"
mkdir -p "$OUT"
scripts/fetch-sface.sh >/dev/null
scripts/fetch-onnxruntime.sh >/dev/null
SFACE="${FFEM_SFACE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ffem/sface-2021dec-int8bq}/face_recognition_sface_2021dec_int8bq.onnx"
cargo build --release -q -p ffem --features onnxruntime
cp target/release/ffem "$OUT/ffem"
FFEM="$OUT/ffem"
rm -rf "$OUT/sface" && $FFEM import "$SFACE" --output "$OUT/sface" --onnx-channels bgr --onnx-mean 0 --onnx-std 1 >/dev/null
python3 - "$DATA/lfw/image_list.json" "$OUT/lfw2000.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
json.dump({k: d[k] for k in sorted(d)[:2000]}, open(sys.argv[2], "w"))
PY
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf '| model | precision | file MiB | LFW accuracy | AUC | embed images/s (2000 faces) |\n|---|---|---|---|---|---|\n' > "$OUT/table.md"
for pair in "sface:$OUT/sface" "ffem:$MODEL"; do
    name="${pair%%:*}"; dir="${pair#*:}"
    for p in fp32 fp16 int8; do
        file="$OUT/${name}_$p.onnx"; imported="$OUT/${name}_$p"
        calib=()
        [ "$p" = int8 ] && calib=(--calibrate "$DATA/celeba/image_list.json" --root "$DATA/celeba/aligned")
        $FFEM export "$dir" --onnx "$file" --precision "$p" "${calib[@]}"
        rm -rf "$imported" && $FFEM import "$file" --output "$imported" >/dev/null
        $FFEM eval "$imported" --lfw "$DATA/lfw" --json --engine onnxruntime > "$OUT/${name}_$p.json" 2>/dev/null
        rate=$($FFEM embed "$imported" "$OUT/lfw2000.json" --root "$DATA/lfw/lfw-deepfunneled" --no-flip \
            --engine onnxruntime -o "$OUT/${name}_$p.npy" | sed -n 's/.*(\([0-9.]*\) images\/s).*/\1/p')
        python3 - "$OUT/${name}_$p.json" "$file" "$name" "$p" "$rate" >> "$OUT/table.md" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))
mib = os.path.getsize(sys.argv[2]) / 2**20
print(f"| {sys.argv[3]} | {sys.argv[4]} | {mib:.1f} | {100 * r['accuracy']:.2f}% ± {100 * r['std']:.2f} | {r['auc']:.4f} | {sys.argv[5]} |")
PY
        tail -1 "$OUT/table.md"
    done
done
cat "$OUT/table.md"
