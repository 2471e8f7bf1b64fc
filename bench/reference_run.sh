#!/usr/bin/env bash
# ffem against the PyTorch reference on one recipe (issue 11, part 4): MobileNetV3-Small + GNAP,
# CFP's 500 identities aligned to 112x112, step 1 L2-softmax (s 30, Adam 1e-3, 30 epochs), step 2
# ArcFace (m 0.5, s 64, SGD Nesterov 0.01, 20 epochs), cosine schedules, LFW every 5 epochs with
# the same protocol (the PyTorch model is exported to ONNX and scored by `ffem eval --onnx`).
# CPU only; about an hour and a quarter on 2 cores. Writes runs/reference/{ffem,ffem_before,torch}/
# and runs/reference/curves.png + table.md.
#   bash bench/reference_run.sh [ffem|before|torch|plot|all]     (default all)
# SEED=N (default 0) runs ffem and PyTorch with that seed into ffem_seedN/ and torch_seedN/
# (seed 0 keeps the plain names), to size the spread between seeds of each side.
# FFEM_INIT=torchvision (default burn) and TORCH_INIT=pytorch (default torchvision) swap each side's
# convolution initialisation; the run directory then ends in _tvinit / _ptinit.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${FFEM_DATA:-../shared/data}"
OUT=runs/reference
STAGE="${1:-all}"
SEED="${SEED:-0}"
SUFFIX=""
[[ "$SEED" == 0 ]] || SUFFIX="_seed$SEED"
FFEM_INIT="${FFEM_INIT:-burn}"
TORCH_INIT="${TORCH_INIT:-torchvision}"
FFEM_SUFFIX="$SUFFIX"
[[ "$FFEM_INIT" == burn ]] || FFEM_SUFFIX="${SUFFIX}_tvinit"
TORCH_SUFFIX="$SUFFIX"
[[ "$TORCH_INIT" == torchvision ]] || TORCH_SUFFIX="${SUFFIX}_ptinit"
mkdir -p "$OUT"
if [[ "$STAGE" != plot ]]; then
    cargo build --release -p ffem --features onnxruntime
    # A private copy (renamed into place: a stage still running keeps the binary it started with),
    # so that rebuilding the workspace during the run does not change the binary under it.
    mkdir -p "$OUT/bin"
    cp target/release/ffem "$OUT/bin/ffem.tmp" && mv "$OUT/bin/ffem.tmp" "$OUT/bin/ffem"
    [ -f data/cfp/manifest.json ] || "$OUT/bin/ffem" pack --root "$DATA/cfp/Data/Images" --json "$DATA/cfp/image_list.json" --output data/cfp
fi
FFEM="$OUT/bin/ffem"
# ffem's two steps into $OUT/$1, LFW every 5 epochs; further arguments go to both steps.
ffem_two_step() {
    local dir="$OUT/$1"; shift
    local start mid end
    start=$(date +%s)
    "$FFEM" train --config configs/cfp_step1.toml --set "val_set=\"lfw:$DATA/lfw\"" --set eval_every=545 \
        "$@" --run-dir "$dir/step1"
    mid=$(date +%s)
    "$FFEM" train --config configs/cfp_step2.toml --set "val_set=\"lfw:$DATA/lfw\"" --set eval_every=545 \
        --set scale=64.0 "$@" --init "$dir/step1/model" --run-dir "$dir/step2"
    end=$(date +%s)
    echo "{\"step1_s\": $((mid - start)), \"step2_s\": $((end - mid))}" > "$dir/time.json"
    "$FFEM" eval "$dir/step2/model" --lfw "$DATA/lfw" --json > "$dir/eval.json"
}
if [[ "$STAGE" == all || "$STAGE" == ffem ]]; then
    ffem_two_step "ffem$FFEM_SUFFIX" --set "seed=$SEED" --set "conv_init=\"$FFEM_INIT\""
fi
# What ffem did before the comparison: a 4,096-record shuffle buffer (burn's initialisation, as now).
if [[ "$STAGE" == all || "$STAGE" == before ]]; then
    ffem_two_step ffem_before --set shuffle_buffer=4096
fi
if [[ "$STAGE" == all || "$STAGE" == torch ]]; then
    bash scripts/fetch-onnxruntime.sh
    VENV=.venv-torch
    [ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q torch torchvision numpy onnx pillow matplotlib; }
    "$VENV/bin/python" bench/torch_reference.py --data "$DATA" --out "$OUT/torch$TORCH_SUFFIX" --ffem "$FFEM" \
        --seed "$SEED" --init "$TORCH_INIT"
fi
if [[ "$STAGE" == all || "$STAGE" == plot ]]; then
    .venv-torch/bin/python bench/reference_plot.py "$OUT"
fi
