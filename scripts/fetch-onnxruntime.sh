#!/usr/bin/env bash
# Downloads the ONNX Runtime shared library that ffem's optional `onnxruntime` inference engine
# loads at run time (`--features onnxruntime`, `--engine onnxruntime`): libonnxruntime.so from the
# PyPI wheel onnxruntime 1.31.1 (CPU build; manylinux_2_28 x86-64). It goes into a cache outside
# the repository:
#   $FFEM_ORT_DIR, else ${XDG_CACHE_HOME:-~/.cache}/ffem/onnxruntime-1.31.1
# and ffem finds it there (or through $ORT_DYLIB_PATH). Nothing of the package is committed.
# Needs python3 with pip (it uses pip's registry settings).
set -euo pipefail

version=1.31.1
lib=libonnxruntime.so.$version
want=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
dest="${FFEM_ORT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ffem/onnxruntime-$version}"

if [ -f "$dest/$lib" ] && [ "$(sha256sum "$dest/$lib" | cut -d' ' -f1)" = "$want" ]; then
    echo "ONNX Runtime already in $dest"; exit 0
fi
[ "$(uname -m)" = x86_64 ] || { echo "error: this script fetches the x86-64 Linux build; on $(uname -m) set ORT_DYLIB_PATH to a libonnxruntime of version >= 1.22" >&2; exit 1; }
command -v python3 >/dev/null || { echo "error: python3 with pip is needed to download onnxruntime from PyPI" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "downloading onnxruntime==$version from PyPI"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 "onnxruntime==$version" -d "$tmp/dl"
python3 -m zipfile -e "$tmp"/dl/*.whl "$tmp/x"
src="$tmp/x/onnxruntime/capi/$lib"
[ -f "$src" ] || { echo "error: $lib not found in the wheel" >&2; exit 1; }
got="$(sha256sum "$src" | cut -d' ' -f1)"
[ "$got" = "$want" ] || { echo "error: $lib has sha256 $got, expected $want" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
stage="$dest.partial.$$"
rm -rf "$stage"; mkdir -p "$stage"
cp "$src" "$stage/$lib"
# Swap in the complete directory in one rename so a half-written cache is never seen.
rm -rf "$dest.old.$$"; [ -d "$dest" ] && mv "$dest" "$dest.old.$$"
mv "$stage" "$dest"; rm -rf "$dest.old.$$"
echo "ONNX Runtime in $dest"
