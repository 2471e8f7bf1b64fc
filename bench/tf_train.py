"""TensorFlow baseline for CPU training and inference throughput: the seed's step-1 model
(Keras MobileNetV3Large minimalistic at 112x112, dropout, flatten, dense 512, BN, L2-normalise x30,
dense num_identity=2000, Adam), batch 64, random data.

    python bench/tf_train.py [--batch 64] [--steps 10] [--warmup 2] [--classes 2000]
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def build(classes):
    inp = tf.keras.Input((112, 112, 3))
    base = tf.keras.applications.MobileNetV3Large(input_shape=(112, 112, 3), include_top=False, weights=None,
                                                  minimalistic=True, include_preprocessing=False)
    x = base(inp)
    x = tf.keras.layers.Dropout(0.2)(x)
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense(512)(x)
    emb = tf.keras.layers.BatchNormalization()(x)
    embedder = tf.keras.Model(inp, emb)
    z = tf.keras.layers.Lambda(lambda e: 30.0 * tf.math.l2_normalize(e, axis=1))(emb)
    out = tf.keras.layers.Dense(classes)(z)
    model = tf.keras.Model(inp, out)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-4),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, embedder


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--classes", type=int, default=2000)
    a = p.parse_args()
    model, embedder = build(a.classes)
    x = np.random.uniform(-1, 1, (a.batch, 112, 112, 3)).astype(np.float32)
    y = np.arange(a.batch) % a.classes
    for _ in range(a.warmup):
        model.train_on_batch(x, y)
    t = time.time()
    for _ in range(a.steps):
        loss = model.train_on_batch(x, y)
    s = time.time() - t
    print(f"tensorflow training [cpu Keras MobileNetV3Large minimalistic + flatten head, 112x112, batch {a.batch}, Adam]: "
          f"{a.steps * a.batch / s:.1f} images/s ({a.steps} steps in {s:.2f} s, tf {tf.__version__}, {model.count_params()} params)")
    f = tf.function(lambda v: embedder(v, training=False))
    for _ in range(a.warmup):
        f(x)
    t = time.time()
    for _ in range(a.steps):
        f(x).numpy()
    s = time.time() - t
    print(f"tensorflow inference [same embedder, batch {a.batch}]: {a.steps * a.batch / s:.1f} images/s")


if __name__ == "__main__":
    main()
