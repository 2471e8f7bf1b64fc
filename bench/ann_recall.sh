#!/usr/bin/env bash
# The service gallery's approximate (HNSW) search against its exact search: recall@10 and time
# per query, on random unit vectors (the hardest case: no clusters).
#   bash bench/ann_recall.sh [FACES=100000] [DIM=128]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p ffem-serve --example ann_recall -- "${1:-100000}" "${2:-128}"
