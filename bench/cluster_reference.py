"""scikit-learn's clusterings of the same embeddings `ffem cluster --embeddings` groups, each with
a parameter sweep, scored like ffem scores (pairwise and BCubed F1; noise points count as groups
of one). Prints one line per run and the best of each algorithm; `--json OUT` saves them.

    python bench/cluster_reference.py E.npy [--json OUT]
"""
import csv
import json
import sys
import time
from collections import Counter

import numpy as np
from sklearn.cluster import DBSCAN, HDBSCAN, AgglomerativeClustering


def scores(pred, truth):
    pred = np.array(pred)
    noise = pred < 0
    pred = pred.copy()
    pred[noise] = pred.max() + 1 + np.arange(noise.sum())
    cells = Counter(zip(pred.tolist(), truth.tolist()))
    by_pred = Counter(pred.tolist())
    by_true = Counter(truth.tolist())
    pairs = lambda c: sum(v * (v - 1) // 2 for v in c.values())
    together, pp, tp = pairs(cells), pairs(by_pred), pairs(by_true)
    p = together / pp if pp else 1.0
    r = together / tp if tp else 1.0
    pw = 2 * p * r / (p + r) if p + r else 0.0
    bp = np.mean([cells[(a, b)] / by_pred[a] for a, b in zip(pred.tolist(), truth.tolist())])
    br = np.mean([cells[(a, b)] / by_true[b] for a, b in zip(pred.tolist(), truth.tolist())])
    bf = 2 * bp * br / (bp + br) if bp + br else 0.0
    return pw, bf, len(set(pred.tolist()) - set(pred[noise].tolist()))


def main():
    npy = sys.argv[1]
    x = np.load(npy).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with open(npy[:-4] + ".csv") as f:
        labels = [row["label"] for row in csv.DictReader(f)]
    ids = {l: i for i, l in enumerate(dict.fromkeys(labels))}
    truth = np.array([ids[l] for l in labels])
    print(f"{len(x)} embeddings of {len(ids)} identities, {x.shape[1]}-d")
    runs = []

    def run(name, param, make):
        t = time.perf_counter()
        pred = make().fit_predict(x)
        s = time.perf_counter() - t
        pw, bf, k = scores(pred, truth)
        runs.append(dict(algorithm=name, param=param, pairwise_f1=pw, bcubed_f1=bf, clusters=k, seconds=s))
        print(f"{name:14s} {param:28s} pairwise F1 {pw:.4f}  BCubed F1 {bf:.4f}  clusters {k:6d}  {s:7.2f} s", flush=True)

    for eps in (0.3, 0.35, 0.4, 0.45, 0.5):
        for ms in (2, 3):
            run("DBSCAN", f"eps={eps} min_samples={ms}", lambda: DBSCAN(eps=eps, min_samples=ms, metric="cosine"))
    for mcs in (2, 3, 5):
        run("HDBSCAN", f"min_cluster_size={mcs}", lambda: HDBSCAN(min_cluster_size=mcs))
    for d in (0.4, 0.5, 0.6, 0.7):
        run("agglomerative", f"average, cosine, t={d}", lambda: AgglomerativeClustering(
            n_clusters=None, distance_threshold=d, linkage="average", metric="cosine"))
    for name in ("DBSCAN", "HDBSCAN", "agglomerative"):
        best = max((r for r in runs if r["algorithm"] == name), key=lambda r: r["bcubed_f1"])
        print(f"best {name}: {best['param']}: BCubed F1 {best['bcubed_f1']:.4f}, pairwise F1 {best['pairwise_f1']:.4f}, {best['clusters']} clusters, {best['seconds']:.2f} s")
    if "--json" in sys.argv:
        json.dump(runs, open(sys.argv[sys.argv.index("--json") + 1], "w"), indent=1)


if __name__ == "__main__":
    main()
