#!/usr/bin/env bash
# CPU training and inference throughput, ffem vs TensorFlow, in one run on the same cores:
#   1. the seed's step-1 model (MobileNetV3-Large minimalistic + flatten head, L2-softmax, Adam)
#      and MobileNetV3-Small + GNAP + ArcFace (SGD Nesterov), 112x112, batch 64, 2000 identities:
#      training and bare-network inference images/s;
#   2. `ffem embed --no-flip` end to end (read, decode, crop, embed) on LFW photos against the same
#      job in tf.data + Keras (bench/tf_embed.py), step-1 network;
#   inference and embedding both with burn (ffem's kernels, the default) and with the optional
#   ONNX Runtime engine (`--features onnxruntime`; the library from scripts/fetch-onnxruntime.sh);
#   3. the per-layer forward / forward+backward table of the step-1 backbone, with burn's own
#      operations ("before") and with ffem's CPU kernels ("after").
# The machine is shared and noisy: every measurement is repeated ROUNDS times, interleaved
# (ffem, TensorFlow, ffem, ...), and the medians are compared.
# Usage: bench/cpu_train_bench.sh   (ROUNDS=3 STEPS=10 EMBED_IMAGES=5000; FFEM_DATA for the faces)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="$(cd "${FFEM_DATA:-../shared/data}" && pwd)"
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-10}
EMBED_IMAGES=${EMBED_IMAGES:-5000}
VENV=.venv-tf
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q tensorflow-cpu numpy; }
scripts/fetch-onnxruntime.sh > /dev/null
cargo build --release -q -p ffem-train --example bench_train --features onnxruntime
cargo build --release -q -p ffem --features onnxruntime
B=target/release/examples/bench_train
FFEM=target/release/ffem
PY="$VENV/bin/python"
STEP1=(--device cpu --backbone large --minimalistic --head flatten --batch 64)
SMALL=(--device cpu --backbone small --head gnap --batch 64)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
LOG="$TMP/log"

# A subset of LFW's list for the end-to-end runs, and an untrained step-1 model for ffem embed.
"$PY" - "$DATA/lfw/image_list.json" "$TMP/lfw.json" "$EMBED_IMAGES" <<'PY'
import json, sys
entries = list(json.load(open(sys.argv[1])).items())[: int(sys.argv[3])]
json.dump(dict(entries), open(sys.argv[2], "w"))
PY
$B "${STEP1[@]}" --save-model "$TMP/step1_model" > /dev/null

for round in $(seq "$ROUNDS"); do
    echo "== round $round of $ROUNDS"
    $B "${STEP1[@]}" --loss l2softmax --optimizer adam --classes 2000 --steps "$STEPS" --warmup 2 | sed 's/^/step1 /' | tee -a "$LOG"
    $B "${STEP1[@]}" --steps "$STEPS" --warmup 2 --infer | sed 's/^/step1 /' | tee -a "$LOG"
    $B "${SMALL[@]}" --loss arcface --optimizer sgd --classes 2000 --steps "$STEPS" --warmup 2 | sed 's/^/small /' | tee -a "$LOG"
    $B "${SMALL[@]}" --steps "$STEPS" --warmup 2 --infer | sed 's/^/small /' | tee -a "$LOG"
    $B "${STEP1[@]}" --steps "$STEPS" --warmup 2 --infer --engine onnxruntime | sed 's/^/step1-ort /' | tee -a "$LOG"
    $B "${SMALL[@]}" --steps "$STEPS" --warmup 2 --infer --engine onnxruntime | sed 's/^/small-ort /' | tee -a "$LOG"
    "$PY" bench/tf_train.py --model step1 --steps "$STEPS" --warmup 2 2>/dev/null | grep '^tensorflow' | sed 's/^/step1 /' | tee -a "$LOG"
    "$PY" bench/tf_train.py --model small_gnap --steps "$STEPS" --warmup 2 2>/dev/null | grep '^tensorflow' | sed 's/^/small /' | tee -a "$LOG"
    # The rate ffem embed reports covers reading, decoding, cropping and the network, as
    # tf_embed.py's does (both leave out process start, model loading and graph building).
    for engine in burn onnxruntime; do
        key=embed; [ "$engine" = onnxruntime ] && key=embed-ort
        rate=$($FFEM embed "$TMP/step1_model" "$TMP/lfw.json" --root "$DATA/lfw/lfw-deepfunneled" --no-flip --output "$TMP/e.npy" --engine $engine 2> /dev/null | grep -o '[0-9.]* images/s')
        echo "$key ffem embed end to end [$EMBED_IMAGES images, step-1 network, $engine]: $rate" | tee -a "$LOG"
    done
    PYTHONPATH=bench "$PY" bench/tf_embed.py "$TMP/lfw.json" "$DATA/lfw/lfw-deepfunneled" 2>/dev/null | grep '^tensorflow' | sed 's/^/embed /' | tee -a "$LOG"
done

echo
echo "== medians of $ROUNDS rounds (ratio = ffem / TensorFlow)"
python3 - "$LOG" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"([\w-]+) (ffem|tensorflow) (training|inference|embed)\b.*?: ([0-9.]+) images/s", line)
    if m:
        rows.setdefault((m[1], m[3], m[2]), []).append(float(m[4]))
step1, small = "seed's step-1 model (Large minimalistic + flatten)", "MobileNetV3-Small + GNAP + ArcFace"
table = [
    ("training", step1, "step1", "step1"), ("training", small, "small", "small"),
    ("inference", step1, "step1", "step1"), ("inference", small, "small", "small"),
    ("inference", step1 + ", onnxruntime", "step1-ort", "step1"), ("inference", small + ", onnxruntime", "small-ort", "small"),
    ("embed", "ffem embed end to end, LFW photos", "embed", "embed"), ("embed", "ffem embed end to end, onnxruntime", "embed-ort", "embed"),
]
for kind, name, fkey, tkey in table:
    f, t = rows.get((fkey, kind, "ffem")), rows.get((tkey, kind, "tensorflow"))
    if f and t:
        fm, tm = statistics.median(f), statistics.median(t)
        print(f"{kind:<9} {name:<58} ffem {fm:8.1f} img/s  TensorFlow {tm:8.1f} img/s  = {fm / tm:.2f}x")
PY

echo
echo "== per-layer profile of the step-1 backbone, batch 64: burn's operations (before)"
$B "${STEP1[@]}" --steps 3 --profile --burn-ops
echo
echo "== the same with ffem's CPU kernels (after)"
$B "${STEP1[@]}" --steps 3 --profile
