#!/usr/bin/env bash
# CPU training and inference throughput, ffem vs TensorFlow, on the seed's step-1 model
# (MobileNetV3-Large minimalistic + flatten head, 112x112, batch 64, 2000 identities, Adam).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-tf
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q tensorflow-cpu numpy; }
cargo build --release -q -p ffem-model --example bench_train
B=target/release/examples/bench_train
ffem_train=$($B --device cpu --backbone large --minimalistic --head flatten --loss l2softmax --optimizer adam --batch 64 --classes 2000 --steps ${STEPS:-8} --warmup 2)
echo "$ffem_train"
ffem_infer=$($B --device cpu --backbone large --minimalistic --head flatten --batch 64 --steps ${STEPS:-8} --warmup 2 --infer)
echo "$ffem_infer"
tf=$("$VENV/bin/python" bench/tf_train.py --batch 64 --steps ${STEPS:-8} --warmup 2)
echo "$tf"
python3 - "$ffem_train" "$ffem_infer" "$tf" <<'PY'
import re, sys
f = lambda s: float(re.search(r"\]: ([0-9.]+) images/s", s).group(1))
ft, fi, tfo = sys.argv[1], sys.argv[2], sys.argv[3].splitlines()
print(f"training: ffem {f(ft):.1f} img/s vs TensorFlow {f(tfo[0]):.1f} img/s = {f(ft)/f(tfo[0]):.2f}x")
print(f"inference: ffem {f(fi):.1f} img/s vs TensorFlow {f(tfo[1]):.1f} img/s = {f(fi)/f(tfo[1]):.2f}x")
PY
