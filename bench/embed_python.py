"""The Python way to embed aligned faces with an ONNX face model, as a user of onnxruntime and
OpenCV writes it: decode and align (cv2.estimateAffinePartial2D to the ArcFace 112x112 template,
warpAffine) in a thread pool of one thread per core (OpenCV releases the GIL), then batches of 64
through one onnxruntime session (intra-op threads: one per core). Raw BGR pixels, as SFace takes
them. No flip. Writes the embeddings (.npy, list order) and prints images/s.

    python bench/embed_python.py MODEL.onnx LIST.json ROOT OUT.npy
"""
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import onnxruntime as ort

# insightface's arcface_dst for 112x112.
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def aligned(path, landmarks):
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"{path}: not a decodable image")
    src = np.array(landmarks, dtype=np.float32).reshape(5, 2)
    m, _ = cv2.estimateAffinePartial2D(src, TEMPLATE, method=cv2.LMEDS)
    crop = cv2.warpAffine(img, m, (112, 112), borderValue=0.0)
    return crop.transpose(2, 0, 1).astype(np.float32)


def main():
    model, list_path, root, out = sys.argv[1:5]
    entries = json.load(open(list_path))
    keys = list(entries)
    cores = os.cpu_count()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cores
    opts.log_severity_level = 3
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    start = time.perf_counter()
    rows = []
    with ThreadPoolExecutor(cores) as pool:
        for b in range(0, len(keys), 64):
            batch = keys[b : b + 64]
            crops = list(pool.map(lambda k: aligned(os.path.join(root, k), entries[k]["landmarks"]), batch))
            rows.append(session.run(None, {name: np.stack(crops)})[0])
    seconds = time.perf_counter() - start
    emb = np.concatenate(rows)
    np.save(out, emb)
    print(f"python onnxruntime {ort.__version__} + OpenCV {cv2.__version__}: {len(keys)} images in {seconds:.2f} s ({len(keys) / seconds:.1f} images/s)")


if __name__ == "__main__":
    main()
