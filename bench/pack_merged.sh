#!/usr/bin/env bash
# Packs the faces of ../shared/data other than LFW for issue 11's runs (bench/distill_run.sh,
# bench/merged_run.sh), skipping what exists:
#   data/cfp_celeba   CFP (500 identities, labels 0-499) + CelebA (299, labels 500-798), aligned,
#                     with the merged list beside it (data/cfp_celeba.image_list.json)
#   data/celeba_only  CelebA alone, keyed like the merged list (absolute paths), so that one
#                     teacher-embedding file serves both packs
# Usage: bench/pack_merged.sh FFEM_BINARY
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${FFEM_DATA:-../shared/data}"
FFEM="$1"
[ -f data/cfp_celeba/manifest.json ] || "$FFEM" pack \
    --json "$DATA/cfp/image_list.json" --root "$DATA/cfp/Data/Images" \
    --json "$DATA/celeba/image_list.json" --root "$DATA/celeba/aligned" \
    --align --output data/cfp_celeba
if [ ! -f data/celeba_only/manifest.json ]; then
    python3 - "$(cd "$DATA/celeba" && pwd -P)" <<'PY'
import json, sys
merged = json.load(open("data/cfp_celeba.image_list.json"))
celeba = {k: v for k, v in merged.items() if k.startswith(sys.argv[1] + "/")}
json.dump(celeba, open("data/celeba_only.image_list.json", "w"))
print(f"{len(celeba)} CelebA entries -> data/celeba_only.image_list.json")
PY
    "$FFEM" pack --json data/celeba_only.image_list.json --root / --align --output data/celeba_only
fi
