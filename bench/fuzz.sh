#!/usr/bin/env bash
# The parsers' fuzz test (crates/ffem-data/tests/fuzz.rs) with many more inputs than `cargo test`
# uses: TFRecord + Example, RecordIO .rec and .idx, image_list.json, insightface .bin, NPY.
# Inputs that panic, hang or over-allocate are saved under the system temp dir and named in the
# failure; copy them to crates/ffem-data/tests/fixtures/fuzz/ as regression fixtures.
#   bash bench/fuzz.sh [ITERATIONS=100000]
set -euo pipefail
cd "$(dirname "$0")/.."
FFEM_FUZZ_ITERATIONS="${1:-100000}" cargo test --release -p ffem-data --test fuzz -- --nocapture --test-threads 2 2>&1 \
    | grep -E 'inputs|test result|panicked|saved as'
