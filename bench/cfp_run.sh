#!/usr/bin/env bash
# The real run of the training issue: step 1 (L2-softmax, Adam) then step 2 (ArcFace, SGD
# Nesterov) on CFP's 500 identities, then the insightface protocol on LFW's 6,000 pairs and
# CFP-FP. CPU only. Usage: bench/cfp_run.sh [OUT_DIR]   (default runs/cfp)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${FFEM_DATA:-../shared/data}"
OUT="${1:-runs/cfp}"
mkdir -p "$OUT"
cargo build --release -p ffem
# A private copy: rebuilding the workspace during the run must not change the binary under it.
cp target/release/ffem "$OUT/ffem"
FFEM="$OUT/ffem"
[ -f data/cfp/manifest.json ] || $FFEM pack --root "$DATA/cfp/Data/Images" --json "$DATA/cfp/image_list.json" --output data/cfp
start=$(date +%s)
$FFEM train --config configs/cfp_step1.toml --set "val_set=\"lfw:$DATA/lfw\"" --run-dir "$OUT/step1"
mid=$(date +%s)
$FFEM train --config configs/cfp_step2.toml --set "val_set=\"lfw:$DATA/lfw\"" --init "$OUT/step1/model" --run-dir "$OUT/step2"
end=$(date +%s)
echo "step 1: $((mid - start)) s, step 2: $((end - mid)) s"
$FFEM eval "$OUT/step2/model" --lfw "$DATA/lfw" --cfp-fp "$DATA/cfp" --roc "$OUT/roc.png" --json > "$OUT/eval.json"
$FFEM eval "$OUT/step2/model" --lfw "$DATA/lfw" --cfp-fp "$DATA/cfp"
