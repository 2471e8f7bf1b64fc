"""Cross-check `ffem eval --embeddings` against the reference computation our users run:
insightface's verification protocol (scikit-learn KFold, numpy argmax over np.arange(0, 4, 0.01))
and facenet's VAL@FAR (scipy's linear spline over np.arange(0, 4, 0.001)), re-implemented here
in numpy from their published algorithm, on random embeddings of several sizes.

    python bench/check_verification.py path/to/ffem
"""
import json
import subprocess
import sys
import tempfile

import numpy as np
from scipy import interpolate
from sklearn.model_selection import KFold


def roc_accuracy(dist, issame, folds=10):
    thresholds = np.arange(0, 4, 0.01)
    acc, best = [], []
    for train, test in KFold(n_splits=folds, shuffle=False).split(np.arange(len(dist))):
        train_acc = [np.mean((dist[train] < t) == issame[train]) for t in thresholds]
        i = int(np.argmax(train_acc))
        best.append(thresholds[i])
        acc.append(np.mean((dist[test] < thresholds[i]) == issame[test]))
    return np.mean(acc), np.std(acc), best


def val_far(dist, issame, far_target=1e-3, folds=10):
    thresholds = np.arange(0, 4, 0.001)
    vals, fars = [], []
    for train, test in KFold(n_splits=folds, shuffle=False).split(np.arange(len(dist))):
        def far_of(t, idx):
            pred = dist[idx] < t
            return np.sum(pred & ~issame[idx]) / max(np.sum(~issame[idx]), 1)
        far_train = np.array([far_of(t, train) for t in thresholds])
        if np.max(far_train) >= far_target:
            # facenet / insightface call interpolate.interp1d(far_train, thresholds, kind='slinear').
            # Current scipy refuses the repeated FAR values ("Expect x to not have duplicates");
            # what interp1d built before that check was this linear B-spline over the stably
            # sorted points, evaluated here directly.
            order = np.argsort(far_train, kind="mergesort")
            x, y = far_train[order], thresholds[order]
            t = interpolate.BSpline(np.r_[x[0], x, x[-1]], y, 1)(far_target)
        else:
            t = 0.0
        pred = dist[test] < t
        vals.append(np.sum(pred & issame[test]) / max(np.sum(issame[test]), 1))
        fars.append(np.sum(pred & ~issame[test]) / max(np.sum(~issame[test]), 1))
    return np.mean(vals), np.std(vals), np.mean(fars)


def main():
    ffem = sys.argv[1]
    rng = np.random.default_rng(0)
    worst = 0.0
    for n, dim, sep in [(6000, 128, 0.25), (7000, 512, 0.12), (1203, 64, 0.3), (600, 16, 0.3), (6000, 32, 0.6)]:
        issame = rng.random(n) < 0.5
        a = rng.normal(size=(n, dim)).astype(np.float32)
        b = (a * np.where(issame, sep, 0.0)[:, None] + rng.normal(size=(n, dim))).astype(np.float32)
        emb = np.empty((2 * n, dim), np.float32)
        emb[0::2], emb[1::2] = a, b
        na = a / np.linalg.norm(a, axis=1, keepdims=True)
        nb = b / np.linalg.norm(b, axis=1, keepdims=True)
        dist = np.sum(np.square(na - nb), 1)
        acc, std, best = roc_accuracy(dist, issame)
        val, val_std, far = val_far(dist, issame)
        with tempfile.TemporaryDirectory() as d:
            np.save(f"{d}/e.npy", emb)
            open(f"{d}/s.txt", "w").write("\n".join("1" if s else "0" for s in issame))
            out = json.loads(subprocess.check_output([ffem, "eval", "--embeddings", f"{d}/e.npy", "--issame", f"{d}/s.txt", "--json"]))
        diffs = {
            "accuracy": abs(out["accuracy"] - acc), "std": abs(out["std"] - std),
            "thresholds": max(abs(x - y) for x, y in zip(out["thresholds"], best)),
            "val": abs(out["val"] - val), "val_std": abs(out["val_std"] - val_std), "far": abs(out["far"] - far),
        }
        worst = max(worst, max(diffs.values()))
        print(f"n={n} dim={dim}: accuracy {out['accuracy']:.6f} (reference {acc:.6f}), VAL {out['val']:.6f} (reference {val:.6f}), "
              f"largest difference {max(diffs.values()):.2e} in {max(diffs, key=diffs.get)}")
    print(f"largest difference over all cases: {worst:.2e}")
    sys.exit(0 if worst < 1e-9 else 1)


if __name__ == "__main__":
    main()
