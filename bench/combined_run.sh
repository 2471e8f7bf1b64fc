#!/usr/bin/env bash
# Issue 11, part 2: labels and teacher together from the first step. The CFP two-step recipe
# (configs/cfp_step{1,2}.toml) on CFP + CelebA with SFace's precomputed embeddings as a second
# target in both steps (classification loss + DISTILL_WEIGHT x (1 - cos), through a learned
# 512 -> 128 projection), on a student of width WIDTH. LFW every 5 epochs, LFW and CFP-FP at the end.
# Usage: bench/combined_run.sh [OUT_DIR]   (default runs/combined; WIDTH (1.5), DISTILL_WEIGHT (10),
# EPOCHS1 / EPOCHS2 (30 / 20), SEED (0); a run whose eval.json exists is skipped)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${FFEM_DATA:-../shared/data}"
OUT="${1:-runs/combined}"
WIDTH="${WIDTH:-1.5}"
WEIGHT="${DISTILL_WEIGHT:-10.0}"
EPOCHS1="${EPOCHS1:-30}"
EPOCHS2="${EPOCHS2:-20}"
SEED="${SEED:-0}"
TEACHER_NPY="${TEACHER_NPY:-runs/distill/teacher_sface.npy}"
if [ ! -x "$OUT/bin/ffem" ]; then
    cargo build --release -p ffem --features onnxruntime
    # A private copy: rebuilding the workspace during the run must not change the binary under it.
    mkdir -p "$OUT/bin"
    cp target/release/ffem "$OUT/bin/ffem"
fi
FFEM="$OUT/bin/ffem"
bash bench/pack_merged.sh "$FFEM"
[ -f "$TEACHER_NPY" ] || { echo "error: $TEACHER_NPY is missing: bench/distill_run.sh embeds the training images with SFace first" >&2; exit 1; }

dir="$OUT/w${WIDTH}_d${WEIGHT}_s${SEED}"
[ -f "$dir/eval.json" ] && { cat "$dir/eval.json"; exit 0; }
# One epoch of CFP + CelebA is 207 steps of 64 (the last partial batch is dropped): LFW about every
# 5 epochs, and on the final weights at the end of each step.
common=(--set 'train_data="data/cfp_celeba"' --set "width=$WIDTH" --set "teacher=\"$TEACHER_NPY\""
    --set "distill_weight=$WEIGHT" --set "seed=$SEED" --set "val_set=\"lfw:$DATA/lfw\""
    --set 'eval_every=1040')
start=$(date +%s)
"$FFEM" train --config configs/cfp_step1.toml "${common[@]}" --set "epochs=$EPOCHS1" --run-dir "$dir/step1"
mid=$(date +%s)
"$FFEM" train --config configs/cfp_step2.toml "${common[@]}" --set "epochs=$EPOCHS2" \
    --init "$dir/step1/model" --run-dir "$dir/step2"
end=$(date +%s)
echo "{\"step1_s\": $((mid - start)), \"step2_s\": $((end - mid))}" > "$dir/time.json"
"$FFEM" eval "$dir/step2/model" --lfw "$DATA/lfw" --cfp-fp "$DATA/cfp" --json > "$dir/eval.tmp"
mv "$dir/eval.tmp" "$dir/eval.json"
cat "$dir/time.json" "$dir/eval.json"
