#!/usr/bin/env bash
# Partial FC: training step throughput and peak memory against the number of identities, full
# classifier vs sample_rate 0.1 (MobileNetV3-Small + GNAP + ArcFace, 112x112, batch 64, SGD, CPU).
#   bash bench/partial_fc.sh [IDENTITIES...]   (default: 10000 100000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p ffem-train --example bench_train
[ $# -gt 0 ] || set -- 10000 100000 1000000
for c in "$@"; do
    for r in 1 0.1; do
        /usr/bin/time -f "peak RSS %M KiB" target/release/examples/bench_train --backbone small --head gnap \
            --image 112 --batch 64 --steps 3 --warmup 1 --classes "$c" --sample-rate "$r" 2>&1 \
            | tr '\n' ' ' | sed "s/^/identities $c, sample_rate $r: /"
        echo
    done
done
