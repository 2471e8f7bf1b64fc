#!/usr/bin/env bash
# Load test of `ffem serve` on the loopback: CLIENTS concurrent clients post LFW photos to
# /v1/embed for DURATION seconds (faces detected and aligned by the service); reports throughput,
# p50 / p99 latency and errors, against bare `ffem embed` on the same photos and cores (same
# model, same detection, flip TTA in both).
#   bash bench/serve_load.sh [CLIENTS=4] [DURATION=20] [PHOTOS=300]
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS="${1:-4}"; DURATION="${2:-20}"; PHOTOS="${3:-300}"
DATA="${FFEM_DATA:-../shared/data}"
scripts/fetch-mtcnn.sh > /dev/null
cargo build --release -q -p ffem -p ffem-train --example bench_train
TMP="$(mktemp -d)"; SERVER=""
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$TMP"' EXIT

# The network of the demo's size class: MobileNetV3-Small + GNAP, 112x112, 512-d (untrained:
# speed does not depend on the weights).
target/release/examples/bench_train --backbone small --head gnap --save-model "$TMP/model" > /dev/null
python3 - "$DATA/lfw/lfw-deepfunneled" "$TMP/photos" "$PHOTOS" <<'PY'
import os, shutil, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(dst)
people = sorted(os.listdir(src))
files = [os.path.join(src, p, f) for p in people for f in sorted(os.listdir(os.path.join(src, p)))]
for i, f in enumerate(files[:: max(1, len(files) // n)][:n]):
    shutil.copy(f, os.path.join(dst, f"{i:05d}.jpg"))
PY

echo "== bare ffem embed (detect + align + embed, flip TTA) on $PHOTOS photos"
BARE=$(target/release/ffem embed "$TMP/model" "$TMP/photos" -o "$TMP/e.npy" 2> /dev/null | grep -o '([0-9.]* images/s)' | tr -d '()' | cut -d' ' -f1)
echo "ffem embed: $BARE images/s"

target/release/ffem serve "$TMP/model" --gallery "$TMP/g.redb" --addr 127.0.0.1:0 2> "$TMP/serve.log" &
SERVER=$!
for _ in $(seq 100); do grep -q 'http://' "$TMP/serve.log" && break; sleep 0.1; done
ADDR=$(grep -o 'http://[0-9.:]*' "$TMP/serve.log" | head -1)
echo "== $CLIENTS clients for $DURATION s against $ADDR/v1/embed"
python3 - "$ADDR" "$TMP/photos" "$CLIENTS" "$DURATION" "$BARE" <<'PY'
import http.client, os, sys, threading, time, urllib.parse
addr, photos, clients, duration, bare = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
host = urllib.parse.urlparse(addr)
files = [open(os.path.join(photos, f), "rb").read() for f in sorted(os.listdir(photos))]
latencies, errors, lock = [], [], threading.Lock()
stop = time.time() + duration
def client(k):
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
    i = k
    while time.time() < stop:
        body = (b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"f.jpg\"\r\n\r\n"
                + files[i % len(files)] + b"\r\n--b--\r\n")
        t = time.time()
        try:
            conn.request("POST", "/v1/embed", body, {"Content-Type": "multipart/form-data; boundary=b"})
            r = conn.getresponse(); r.read()
            ok = r.status == 200 or (r.status == 422 and False)
            with lock:
                (latencies if r.status == 200 else errors).append(time.time() - t if r.status == 200 else r.status)
        except Exception as e:
            with lock: errors.append(str(e))
            conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        i += clients
threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
start = time.time()
for t in threads: t.start()
for t in threads: t.join()
elapsed = time.time() - start
latencies.sort()
q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")
rate = len(latencies) / elapsed
print(f"served {len(latencies)} requests in {elapsed:.1f} s: {rate:.1f} images/s, p50 {q(0.5):.0f} ms, "
      f"p99 {q(0.99):.0f} ms, errors {len(errors)} {sorted(set(map(str, errors)))[:3]}")
print(f"throughput vs bare ffem embed: {rate / bare:.2f}x")
PY
