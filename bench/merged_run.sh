#!/usr/bin/env bash
# Issue 11, part 3 with labels: the CFP two-step recipe (configs/cfp_step{1,2}.toml: MobileNetV3-Small
# + GNAP at 112x112, L2-softmax with Adam, then ArcFace with SGD Nesterov) on CFP + CelebA (799
# identities, 13,275 images), and on CelebA alone (299 identities) so that CFP-FP is held out.
# LFW and CFP-FP with the insightface protocol at the end of each.
# Usage: bench/merged_run.sh [OUT_DIR]   (default runs/merged; EPOCHS1 / EPOCHS2 override the
# 30 + 20 epochs; a run whose eval.json exists is skipped)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${FFEM_DATA:-../shared/data}"
OUT="${1:-runs/merged}"
EPOCHS1="${EPOCHS1:-30}"
EPOCHS2="${EPOCHS2:-20}"
# The same features as the other issue-11 scripts, so that they share one build.
cargo build --release -p ffem --features onnxruntime
# A private copy: rebuilding the workspace during the run must not change the binary under it.
mkdir -p "$OUT/bin"
cp target/release/ffem "$OUT/bin/ffem"
FFEM="$OUT/bin/ffem"
bash bench/pack_merged.sh "$FFEM"

# Both steps on the pack $2 into $OUT/$1, LFW and CFP-FP scored once at the end.
two_step() {
    local dir="$OUT/$1" data="$2"
    [ -f "$dir/eval.json" ] && return
    local start mid end
    start=$(date +%s)
    "$FFEM" train --config configs/cfp_step1.toml --set "train_data=\"$data\"" --set 'val_set=""' \
        --set "epochs=$EPOCHS1" --run-dir "$dir/step1"
    mid=$(date +%s)
    "$FFEM" train --config configs/cfp_step2.toml --set "train_data=\"$data\"" --set 'val_set=""' \
        --set "epochs=$EPOCHS2" --init "$dir/step1/model" --run-dir "$dir/step2"
    end=$(date +%s)
    echo "{\"step1_s\": $((mid - start)), \"step2_s\": $((end - mid))}" > "$dir/time.json"
    "$FFEM" eval "$dir/step2/model" --lfw "$DATA/lfw" --cfp-fp "$DATA/cfp" --json > "$dir/eval.tmp"
    mv "$dir/eval.tmp" "$dir/eval.json"
    cat "$dir/time.json" "$dir/eval.json"
}
two_step cfp_celeba data/cfp_celeba

# Step 2 again from the same step 1, with SFace's embeddings as a second target (labels and
# teacher together: ArcFace + DISTILL_WEIGHT x (1 - cos), through a learned 512 -> 128 projection).
TEACHER_NPY="${TEACHER_NPY:-runs/distill/teacher_sface.npy}"
dir="$OUT/cfp_celeba_distill"
if [ ! -f "$dir/eval.json" ]; then
    [ -f "$TEACHER_NPY" ] || { echo "error: $TEACHER_NPY is missing: bench/distill_run.sh embeds the training images with SFace first" >&2; exit 1; }
    start=$(date +%s)
    "$FFEM" train --config configs/cfp_step2.toml --set 'train_data="data/cfp_celeba"' --set 'val_set=""' \
        --set "epochs=$EPOCHS2" --set "teacher=\"$TEACHER_NPY\"" --set "distill_weight=${DISTILL_WEIGHT:-10.0}" \
        --init "$OUT/cfp_celeba/step1/model" --run-dir "$dir/step2"
    echo "{\"step2_s\": $(($(date +%s) - start))}" > "$dir/time.json"
    "$FFEM" eval "$dir/step2/model" --lfw "$DATA/lfw" --cfp-fp "$DATA/cfp" --json > "$dir/eval.tmp"
    mv "$dir/eval.tmp" "$dir/eval.json"
    cat "$dir/time.json" "$dir/eval.json"
fi

two_step celeba data/celeba_only
