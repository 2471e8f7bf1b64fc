#!/usr/bin/env bash
# Issue 11, parts 1-3 on the CPU: OpenCV's SFace (an external ONNX model) scored with the LFW and
# CFP-FP protocols, then used as the teacher of a MobileNetV3-Small + GNAP student trained on the
# faces of ../shared/data other than LFW (CFP + CelebA, packed as one dataset with their labels
# kept apart), and a second student trained on CelebA alone so that CFP-FP is held out.
# Usage: bench/distill_run.sh [OUT_DIR]   (default runs/distill; steps whose output exists are
# skipped, so an interrupted run continues)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${FFEM_DATA:-../shared/data}"
OUT="${1:-runs/distill}"
EPOCHS="${EPOCHS:-20}"
mkdir -p "$OUT"
scripts/fetch-onnxruntime.sh
scripts/fetch-sface.sh
SFACE="${FFEM_SFACE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ffem/sface-2021dec-int8bq}/face_recognition_sface_2021dec_int8bq.onnx"
cargo build --release -p ffem --features onnxruntime
# A private copy: rebuilding the workspace during the run must not change the binary under it.
cp target/release/ffem "$OUT/ffem"
FFEM="$OUT/ffem"
# SFace as a model directory (it takes raw BGR pixels), which every command and the trainer take.
TEACHER="$OUT/sface"
[ -f "$TEACHER/external.json" ] || $FFEM import "$SFACE" --output "$TEACHER" \
    --onnx-channels bgr --onnx-mean 0 --onnx-std 1 --threshold 0.363

# Part 3's data: CFP + CelebA with their labels kept apart, and CelebA alone.
bash bench/pack_merged.sh "$FFEM"

# The teacher's embeddings of every training image (flip-summed), keyed by the merged list's paths.
[ -f "$OUT/teacher_sface.npy" ] || $FFEM embed "$TEACHER" data/cfp_celeba.image_list.json -o "$OUT/teacher_sface.npy" --strict

# Trains a student into $OUT/NAME (resuming an interrupted one; a finished one is kept).
student() {
    local dir="$OUT/$1"; shift
    [ -f "$dir/done" ] && return
    if [ -d "$dir/checkpoint" ]; then
        $FFEM train --resume "$dir"
    else
        $FFEM train --config configs/distill_sface.toml --run-dir "$dir" \
            --set "teacher=\"$OUT/teacher_sface.npy\"" --set "val_set=\"lfw:$DATA/lfw\"" \
            --set "epochs=$EPOCHS" "$@"
    fi
    touch "$dir/done"
}
# Part 2: the student of CFP + CelebA.
start=$(date +%s)
student student
mid=$(date +%s)
# Part 3's held-out CFP-FP: the student of CelebA alone (scored at the end only).
student student_celeba --set 'train_data="data/celeba_only"' --set 'val_set=""'
mid2=$(date +%s)
# The first student under-fits (mean cosine to the teacher 0.55 on its own training images): this
# one keeps a 7x7 final map (stem_stride = 1, 4x the MACs) and drops the colour jitter and cutout
# that the un-augmented teacher targets cannot follow.
student student_s1 --set stem_stride=1 --set color_jitter=false --set cutout=false \
    --set "epochs=${EPOCHS_S1:-20}"
end=$(date +%s)
echo "student (CFP + CelebA): $((mid - start)) s; student (CelebA): $((mid2 - mid)) s; student (stem stride 1): $((end - mid2)) s"
# The teacher inside the step, on the augmented crop the student sees (SFace in ONNX Runtime),
# against the precomputed teacher over the same number of epochs (6 and 12), and over 6 epochs
# without the colour jitter and cutout that precomputed targets cannot follow.
ONLINE=(--set 'teacher=""' --set "teacher_model=\"$TEACHER\"")
COMPARED=()
for e in ${ONLINE_EPOCHS:-6 12}; do
    t0=$(date +%s)
    student "student_online_${e}ep" "${ONLINE[@]}" --set "epochs=$e"
    t1=$(date +%s)
    student "student_short_${e}ep" --set "epochs=$e"
    t2=$(date +%s)
    echo "$e epochs: teacher inside the step $((t1 - t0)) s; precomputed $((t2 - t1)) s"
    COMPARED+=("student_online_${e}ep" "student_short_${e}ep")
done
student student_short_noaug_6ep --set epochs=6 --set color_jitter=false --set cutout=false
# Part 1: the teacher itself on the protocols.
[ -f "$OUT/teacher_eval.json" ] || $FFEM eval "${TEACHER[@]}" --lfw "$DATA/lfw" --cfp-fp "$DATA/cfp" --json > "$OUT/teacher_eval.json"
# Each student once (an existing eval.json is kept, as the teacher's is); one line each from it.
for s in student student_celeba student_s1 "${COMPARED[@]}" student_short_noaug_6ep; do
    if [ ! -f "$OUT/$s/eval.json" ]; then
        $FFEM eval "$OUT/$s/model" --lfw "$DATA/lfw" --cfp-fp "$DATA/cfp" --json > "$OUT/$s/eval.json.tmp"
        mv "$OUT/$s/eval.json.tmp" "$OUT/$s/eval.json"
    fi
    python3 - "$s" "$OUT/$s/eval.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
cells = ("{} {:.2f}% +- {:.2f} (AUC {:.4f})".format(k, 100 * r[k]["accuracy"], 100 * r[k]["std"], r[k]["auc"])
         for k in ("lfw", "cfp_fp"))
print(sys.argv[1], *cells)
PY
done
cat "$OUT/teacher_eval.json"
ls -l "$SFACE" "$OUT"/student*/model/weights.bpk
