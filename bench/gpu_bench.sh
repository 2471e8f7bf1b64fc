#!/usr/bin/env bash
# GPU training throughput on the device machine: ffem (burn, vulkan) vs PyTorch on the same network
# (MobileNetV3-Large + GNAP + ArcFace over 2000 identities, 112x112, batch 256, SGD Nesterov).
# Prepare here (the device machine has no Rust toolchain):
#   cargo build --release -p ffem --features vulkan
#   mkdir -p .gpu && strip -o .gpu/ffem target/release/ffem && gzip -9 .gpu/ffem
#   (the Vulkan loader .deb in .gl/, as the device README says)
# then on the device:  bash bench/gpu_bench.sh      (carry .gl and .gpu)
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" / 2>/dev/null; done
ldconfig 2>/dev/null
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
gunzip -c .gpu/ffem.gz > /tmp/ffem && chmod +x /tmp/ffem
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
run() { echo "+ $*"; "$@" 2>&1 | grep -v "^\s*$" | tail -4; }
NET="--device vulkan --backbone large --head gnap --loss arcface --batch 256 --classes 2000 --steps ${STEPS:-8} --warmup 3"
run timeout 150 /tmp/ffem bench-train $NET --precision f32
run timeout 120 /tmp/ffem bench-train $NET --precision f16
run timeout 60 /tmp/ffem bench-train $NET --infer
run timeout 45 python3 bench/torch_train.py --batch 256 --steps 20 --warmup 5
run timeout 45 python3 bench/torch_train.py --batch 256 --steps 20 --warmup 5 --no-amp
