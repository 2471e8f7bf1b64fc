"""Runs an exported ffem model in onnxruntime on the crops ffem embedded, compares embeddings,
and times onnxruntime against ffem's own CPU inference on the same batch size.

    bench/onnx_check.sh MODEL_DIR     (makes the inputs with `ffem embed --save-crops`, then runs this)
    python bench/onnx_check.py model.onnx crops.npy ffem_emb.npy IMAGE_SIZE
"""
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    onnx_path, crops_path, emb_path, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    crops = np.load(crops_path).reshape(-1, 3, size, size).astype(np.float32)
    ref = np.load(emb_path)
    opts = ort.SessionOptions()
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    out = np.concatenate([sess.run(["embedding"], {"data": crops[i:i + 64]})[0] for i in range(0, len(crops), 64)])
    out = out / np.linalg.norm(out, axis=1, keepdims=True)
    diff = np.abs(out - ref).max()
    print(f"onnxruntime {ort.__version__} vs ffem on {len(crops)} crops: max |difference| after normalisation = {diff:.2e}")
    batch = crops[:64] if len(crops) >= 64 else np.repeat(crops, 64 // len(crops) + 1, 0)[:64]
    sess.run(["embedding"], {"data": batch})
    t = time.time()
    reps = 10
    for _ in range(reps):
        sess.run(["embedding"], {"data": batch})
    s = time.time() - t
    print(f"onnxruntime inference: {reps * 64 / s:.1f} images/s (batch 64, {ort.get_device()}, {opts.intra_op_num_threads or 'default'} threads)")
    sys.exit(0 if diff <= 1e-4 else 1)


if __name__ == "__main__":
    main()
