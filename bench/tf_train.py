"""TensorFlow baseline for CPU training and inference throughput on random data, batch 64:

- `--model step1` (default): the seed's step-1 model (Keras MobileNetV3Large minimalistic at
  112x112, dropout, flatten, dense 512, BN, L2-normalise x30, dense num_identity=2000, Adam);
- `--model small_gnap`: Keras MobileNetV3Small (full: squeeze-excite, hard-swish) + GNAP (BN,
  norm re-weighting, average pool, dense 512 without bias, BN) + ArcFace (m 0.5, s 64) over 2000
  identities, SGD momentum 0.9 Nesterov, as ffem's `--backbone small --head gnap --loss arcface`.

    python bench/tf_train.py [--model step1|small_gnap] [--batch 64] [--steps 10] [--warmup 2] [--classes 2000]
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


class ArcFace(tf.keras.layers.Layer):
    """Additive angular margin logits with the th / mm fallback, as ffem's and insightface's."""

    def __init__(self, classes, m=0.5, s=64.0, **kw):
        super().__init__(**kw)
        self.classes, self.m, self.s = classes, m, s

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[0][-1], self.classes), initializer="glorot_uniform", name="w")

    def call(self, inputs):
        emb, label = inputs
        cos = tf.matmul(tf.math.l2_normalize(emb, axis=1), tf.math.l2_normalize(self.w, axis=0))
        cos = tf.clip_by_value(cos, -1.0 + 1e-7, 1.0 - 1e-7)
        sin = tf.sqrt(1.0 - cos * cos)
        phi = cos * np.cos(self.m) - sin * np.sin(self.m)
        phi = tf.where(cos > np.cos(np.pi - self.m), phi, cos - np.sin(np.pi - self.m) * self.m)
        onehot = tf.one_hot(tf.cast(tf.reshape(label, [-1]), tf.int32), self.classes)
        return self.s * (onehot * phi + (1.0 - onehot) * cos)


def gnap(x):
    x = tf.keras.layers.BatchNormalization(epsilon=2e-5)(x)

    def reweight_and_pool(f):
        norm = tf.sqrt(tf.reduce_sum(tf.square(f), axis=-1, keepdims=True))
        mean_norm = tf.reduce_mean(norm, axis=[1, 2], keepdims=True)
        return tf.reduce_mean(f * (mean_norm / (norm + 1e-6)), axis=[1, 2])

    x = tf.keras.layers.Lambda(reweight_and_pool)(x)
    x = tf.keras.layers.Dense(512, use_bias=False)(x)
    return tf.keras.layers.BatchNormalization(epsilon=2e-5)(x)


def build_small_gnap(classes):
    inp = tf.keras.Input((112, 112, 3))
    label = tf.keras.Input((1,), dtype=tf.int32)
    base = tf.keras.applications.MobileNetV3Small(input_shape=(112, 112, 3), include_top=False, weights=None,
                                                  minimalistic=False, include_preprocessing=False)
    emb = gnap(base(inp))
    embedder = tf.keras.Model(inp, emb)
    logits = ArcFace(classes)([emb, label])
    model = tf.keras.Model([inp, label], logits)
    model.compile(optimizer=tf.keras.optimizers.SGD(1e-3, momentum=0.9, nesterov=True),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, embedder


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--classes", type=int, default=2000)
    p.add_argument("--model", choices=["step1", "small_gnap"], default="step1")
    a = p.parse_args()
    x = np.random.uniform(-1, 1, (a.batch, 112, 112, 3)).astype(np.float32)
    y = np.arange(a.batch) % a.classes
    if a.model == "step1":
        model, embedder = build(a.classes)
        name = "Keras MobileNetV3Large minimalistic + flatten head, 112x112, batch {}, Adam".format(a.batch)
        inputs = x
    else:
        model, embedder = build_small_gnap(a.classes)
        name = "Keras MobileNetV3Small + GNAP + ArcFace, 112x112, batch {}, SGD".format(a.batch)
        inputs = [x, y.reshape(-1, 1)]
    for _ in range(a.warmup):
        model.train_on_batch(inputs, y)
    t = time.time()
    for _ in range(a.steps):
        loss = model.train_on_batch(inputs, y)
    s = time.time() - t
    print(f"tensorflow training [cpu {name}]: "
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
