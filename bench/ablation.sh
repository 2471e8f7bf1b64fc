#!/usr/bin/env bash
# The loss study in docs/ablation: every variant of configs/ablation.toml on CFP + CelebA -> LFW,
# with clean labels and with 20% flipped, then `ffem clean` on the noisy list scored against the
# flips, then the reports and charts copied into docs/ablation/. CPU only; about 50 minutes per
# study on 2 cores. Rerunning resumes (finished variants are kept).
#   bash bench/ablation.sh [CLEAN_MODEL_VARIANT]   (default: l2softmax)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${FFEM_DATA:-../shared/data}"
VARIANT="${1:-l2softmax}"
cargo build --release -p ffem
mkdir -p runs
# A private copy: rebuilding the workspace during the study must not change the binary under it.
cp target/release/ffem runs/ffem-ablation
F=runs/ffem-ablation
$F ablate --config configs/ablation.toml --data "$DATA"
$F ablate --config configs/ablation.toml --data "$DATA" --label-noise 0.2
NOISY=runs/ablation-noise0.2
# The same flips as the study's (same list, same seed), found by a model trained on the noisy list.
$F clean "$NOISY/variants/$VARIANT/model" --list "$NOISY/data/image_list.clean.json" \
    --inject-label-noise 0.2 --seed 0 --output "$NOISY/cleaned.json" | tee "$NOISY/clean.txt"
python3 bench/clean_score.py "$NOISY/data/noise.json" "$NOISY/cleaned.report.json" /cfp/ /celeba/ "" \
    | tee "$NOISY/clean_score.md"
for d in clean:runs/ablation noise20:$NOISY; do
    mkdir -p "docs/ablation/${d%%:*}"
    cp "${d#*:}"/report.md "${d#*:}"/roc.png "${d#*:}"/curves.png "docs/ablation/${d%%:*}/"
done
python3 bench/ablation_compare.py runs/ablation "$NOISY" | tee docs/ablation/compare.md
cp "$NOISY/clean_score.md" docs/ablation/clean_noise20.md
