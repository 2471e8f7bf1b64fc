#!/usr/bin/env bash
# Data-path interop and throughput against TensorFlow, on LFW (13,233 images), same cores.
#   bench/data_bench.sh            # makes .venv-tf (tensorflow-cpu from the registry) on first use
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${FFEM_DATA:-../shared/data}"
LFW="$DATA/lfw"
VENV=.venv-tf
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q tensorflow-cpu numpy; }
PY="$VENV/bin/python"
cargo build --release -q -p ffem -p ffem-data --example bench_pipeline
FFEM=target/release/ffem
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "== interop"
$FFEM pack --root "$LFW/lfw-deepfunneled" --json "$LFW/image_list.json" --output "$TMP/lfw" > /dev/null
$PY bench/tf_data.py interop "$TMP/lfw" "$LFW/image_list.json" "$LFW/lfw-deepfunneled"
$PY bench/tf_data.py write "$TMP/tf.tfrecord" "$LFW/image_list.json" "$LFW/lfw-deepfunneled" 500
$FFEM inspect "$TMP/tf.tfrecord"

echo "== pack throughput (LFW, 13,233 images)"
rm -rf "$TMP/lfw"
sync
ffem_out=$($FFEM pack --root "$LFW/lfw-deepfunneled" --json "$LFW/image_list.json" --output "$TMP/lfw")
echo "$ffem_out"
tf_out=$($PY bench/tf_data.py pack "$TMP/tf_pack.tfrecord" "$LFW/image_list.json" "$LFW/lfw-deepfunneled")
echo "$tf_out"
ffem_ips=$(echo "$ffem_out" | sed -n 's/.*(\([0-9.]*\) images\/s).*/\1/p')
tf_ips=$(echo "$tf_out" | sed -n 's/.* = \([0-9.]*\) images\/s.*/\1/p')
python3 -c "print(f'pack: ffem {float($ffem_ips):.0f} img/s vs TensorFlow {float($tf_ips):.0f} img/s = {float($ffem_ips)/float($tf_ips):.2f}x')"

echo "== pipeline throughput (decode + crop + augment + batch 64, 112x112)"
ffem_out=$(target/release/examples/bench_pipeline "$TMP/lfw" 150 64 "$(nproc)")
echo "$ffem_out"
tf_out=$($PY bench/tf_data.py pipeline "$TMP/lfw" 150)
echo "$tf_out"
ffem_ips=$(echo "$ffem_out" | sed -n 's/.* = \([0-9.]*\) images\/s.*/\1/p')
tf_ips=$(echo "$tf_out" | sed -n 's/.* = \([0-9.]*\) images\/s.*/\1/p')
python3 -c "print(f'pipeline: ffem {float($ffem_ips):.0f} img/s vs TensorFlow {float($tf_ips):.0f} img/s = {float($ffem_ips)/float($tf_ips):.2f}x')"
