"""TensorFlow baselines and interop checks for ffem's data path.

    python bench/tf_data.py interop  RECORDS_DIR IMAGE_LIST ROOT   # TF reads every record ffem wrote
    python bench/tf_data.py write    OUT.tfrecord IMAGE_LIST ROOT N  # TF writes N records in the seed schema
    python bench/tf_data.py pack     OUT.tfrecord IMAGE_LIST ROOT     # TFRecordWriter packing, images/s
    python bench/tf_data.py pipeline RECORDS_DIR BATCHES              # tf.data pipeline, images/s

Run with the venv that bench/data_bench.sh makes (TensorFlow from the registry).
"""
import glob
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

SCHEMA = {
    "jpeg": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "x1": tf.io.FixedLenFeature([], tf.int64),
    "y1": tf.io.FixedLenFeature([], tf.int64),
    "x2": tf.io.FixedLenFeature([], tf.int64),
    "y2": tf.io.FixedLenFeature([], tf.int64),
}


def shards(d):
    if os.path.isfile(d):
        return [d]
    m = json.load(open(os.path.join(d, "manifest.json")))
    return [os.path.join(d, s["file"]) for s in m["shards"]]


def interop(records, image_list, root):
    m = json.load(open(os.path.join(records, "manifest.json")))
    label_map = {int(a): int(b) for a, b in m["label_map"]}
    entries = json.load(open(image_list))
    skipped = {s["key"] for s in m["skipped"]}
    expected = [k for k in entries if k not in skipped]
    schema = dict(SCHEMA, path=tf.io.FixedLenFeature([], tf.string), landmarks=tf.io.VarLenFeature(tf.float32))
    n = bad = 0
    for raw in tf.data.TFRecordDataset(shards(records)):
        ex = tf.io.parse_single_example(raw, schema)
        key = expected[n]
        e = entries[key]
        ok = ex["path"].numpy().decode() == key
        ok &= int(ex["label"]) == label_map[e["label"]]
        h, w = [int(v) for v in tf.image.extract_jpeg_shape(ex["jpeg"])[:2]]
        limits = {"x1": w, "y1": h, "x2": w, "y2": h}
        ok &= [int(ex[k]) for k in ("x1", "y1", "x2", "y2")] == [round(min(max(0, e[k]), limits[k])) for k in ("x1", "y1", "x2", "y2")]
        ok &= ex["jpeg"].numpy() == open(os.path.join(root, key), "rb").read()
        if "landmarks" in e:
            ok &= all(abs(a - b) < 1e-3 for a, b in zip(tf.sparse.to_dense(ex["landmarks"]).numpy(), e["landmarks"]))
        bad += not ok
        n += 1
    print(f"TensorFlow {tf.__version__} read {n} records written by ffem pack ({len(expected)} expected): {bad} mismatches in path, label, box, landmarks or JPEG bytes")
    return 0 if (bad == 0 and n == len(expected)) else 1


def write(out, image_list, root, count):
    entries = json.load(open(image_list))
    with tf.io.TFRecordWriter(out) as w:
        for i, (key, e) in enumerate(entries.items()):
            if i >= count:
                break
            feats = {
                "jpeg": tf.train.Feature(bytes_list=tf.train.BytesList(value=[open(os.path.join(root, key), "rb").read()])),
                **{k: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(e[k]) if k != "label" else e["label"]])) for k in ("label", "x1", "y1", "x2", "y2")},
            }
            w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    print(f"TensorFlow wrote {min(count, len(entries))} records to {out}")


def pack(out, image_list, root):
    entries = json.load(open(image_list))
    keys = list(entries)
    paths = [os.path.join(root, k) for k in keys]
    t = time.time()
    # Same work as ffem pack: read, decode (validates), serialise, write; decode in parallel.
    ds = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda p: (tf.io.read_file(p), tf.shape(tf.io.decode_jpeg(tf.io.read_file(p), channels=3))),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    n = 0
    with tf.io.TFRecordWriter(out) as w:
        for (data, _shape), key in zip(ds, keys):
            e = entries[key]
            feats = {
                "jpeg": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data.numpy()])),
                **{k: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(e[k])])) for k in ("label", "x1", "y1", "x2", "y2")},
            }
            w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
            n += 1
    s = time.time() - t
    print(f"tensorflow pack: {n} images in {s:.2f} s = {n / s:.1f} images/s")


def pipeline(records, batches, batch=64):
    size = 112

    def parse(raw):
        ex = tf.io.parse_single_example(raw, SCHEMA)
        img = tf.cast(tf.io.decode_jpeg(ex["jpeg"], channels=3), tf.float32)
        h = tf.cast(tf.shape(img)[0], tf.float32)
        w = tf.cast(tf.shape(img)[1], tf.float32)
        box = tf.cast(tf.stack([ex["y1"], ex["x1"], ex["y2"], ex["x2"]]), tf.float32)
        # The seed's jitter: half the time each coordinate moves by U(-10%, +10%) of its value.
        jitter = box * tf.random.uniform([4], -0.1, 0.1)
        box = tf.where(tf.random.uniform([]) < 0.5, box + jitter, box)
        box = tf.clip_by_value(box / tf.stack([h, w, h, w]), 0.0, 1.0)
        img = tf.image.crop_and_resize(img[None], box[None], [0], [size, size])[0]
        img = tf.where(tf.random.uniform([]) < 0.5, tf.image.flip_left_right(img), img)

        def color(x):
            x = tf.image.random_hue(x / 255.0, 0.1)
            x = tf.image.random_brightness(x, 0.1)
            x = tf.image.random_contrast(x, 0.9, 1.1)
            return tf.clip_by_value(x, 0.0, 1.0) * 255.0

        img = tf.cond(tf.random.uniform([]) < 0.5, lambda: color(img), lambda: img)

        def cutout(x):
            s = tf.random.uniform([], 0, 39, tf.int32)
            cy = tf.random.uniform([], 0, size, tf.int32)
            cx = tf.random.uniform([], 0, size, tf.int32)
            yy, xx = tf.meshgrid(tf.range(size), tf.range(size), indexing="ij")
            inside = (tf.abs(yy - cy) * 2 < s) & (tf.abs(xx - cx) * 2 < s)
            fill = tf.random.uniform([3], 0, 255)
            return tf.where(inside[..., None], fill, x)

        img = tf.cond(tf.random.uniform([]) < 0.5, lambda: cutout(img), lambda: img)
        img = (img / 255.0 - 0.5) / 0.5
        return tf.transpose(img, [2, 0, 1]), ex["label"]

    ds = (tf.data.TFRecordDataset(shards(records)).repeat().shuffle(1024)
          .map(parse, num_parallel_calls=tf.data.AUTOTUNE).batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    it = iter(ds)
    next(it)
    t = time.time()
    for _ in range(batches):
        next(it)
    s = time.time() - t
    n = batches * batch
    print(f"tensorflow pipeline: {n} images in {s:.2f} s = {n / s:.1f} images/s (tf.data AUTOTUNE, batch {batch})")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "interop":
        sys.exit(interop(*sys.argv[2:5]))
    elif cmd == "write":
        write(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif cmd == "pack":
        pack(*sys.argv[2:5])
    elif cmd == "pipeline":
        pipeline(sys.argv[2], int(sys.argv[3]))
