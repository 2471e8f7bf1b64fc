"""TensorFlow end to end, as `ffem embed --no-flip` does it: read the JPEG files of an
image_list.json, decode, crop each face box and resize it to 112x112 (crop_and_resize, bilinear),
scale to (x/255 - 0.5) / 0.5, and embed in batches of 64 with the seed's step-1 embedder (Keras
MobileNetV3Large minimalistic, dropout, flatten, dense 512, BN; random weights: throughput only).
tf.data decodes in parallel (AUTOTUNE) while the model runs, as ffem's pipeline does.

    python bench/tf_embed.py IMAGE_LIST.json ROOT [--limit N]
"""
import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from tf_train import build  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("list")
    p.add_argument("root")
    p.add_argument("--limit", type=int, default=0)
    a = p.parse_args()
    entries = list(json.load(open(a.list)).items())
    if a.limit:
        entries = entries[: a.limit]
    paths = [os.path.join(a.root, k.split("#")[0]) for k, _ in entries]
    boxes = [[e["y1"], e["x1"], e["y2"], e["x2"]] for _, e in entries]

    def load(path, box):
        img = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        size = tf.cast(tf.shape(img)[:2], tf.float32)
        norm = tf.stack([box[0] / size[0], box[1] / size[1], box[2] / size[0], box[3] / size[1]])
        crop = tf.image.crop_and_resize(tf.cast(img, tf.float32)[None], norm[None], [0], [112, 112])[0]
        return (crop / 255.0 - 0.5) / 0.5

    ds = tf.data.Dataset.from_tensor_slices((paths, tf.constant(boxes, tf.float32)))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(64).prefetch(tf.data.AUTOTUNE)
    _, embedder = build(2000)
    f = tf.function(lambda v: embedder(v, training=False))
    f(tf.zeros([64, 112, 112, 3]))  # trace once, outside the timing
    t = time.time()
    n = 0
    for batch in ds:
        n += int(f(batch).shape[0])
    s = time.time() - t
    print(f"tensorflow embed end to end [{n} images, decode + crop + step-1 embedder, batch 64]: {n / s:.1f} images/s ({s:.2f} s)")


if __name__ == "__main__":
    main()
