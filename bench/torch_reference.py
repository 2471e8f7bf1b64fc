"""The PyTorch reference for ffem's CFP recipe (issue 11, part 4), run on the CPU.

The same network (torchvision's MobileNetV3-Small features with ReLU6 where torchvision has ReLU,
then GNAP to 512-d), the same data (CFP's 7,000 images aligned to the ArcFace template by the same
least-squares similarity and bilinear sampling as ffem_data::align; the 101 without landmarks
cropped from their box), the same augmentation (flip, colour jitter, cutout, box jitter for the
box crops; each with probability 0.5 per image), the same losses (L2-softmax s 30, then ArcFace
m 0.5 s 64 with the th/mm rule), optimisers (Adam 1e-3 with L2 decay 5e-4, then SGD Nesterov 0.01
momentum 0.9 decay 5e-4), schedules (linear warm-up from lr/100, cosine to 1e-5) and epochs
(30 + 20) as configs/cfp_step{1,2}.toml. Every 5 epochs the network is exported to ONNX and
scored on LFW by `ffem eval --onnx`, so crops and protocol are ffem's own.

What is PyTorch's and not ffem's, on purpose: torchvision's initialisation (Kaiming-normal fan-out
convolutions, PyTorch's default Kaiming-uniform for the GNAP linear; `--init pytorch` gives every
layer PyTorch's default, which is burn's and so ffem's), PyTorch's Adam epsilon (1e-8, ffem 1e-7),
its random streams, PIL's JPEG decoder, crops rounded to 8 bits. BatchNorm momentum is 0.1 as in
ffem and PyTorch's default, not torchvision's 0.01 (see relu6_backbone). That the training step
itself is ffem's (same weights and batch: same loss, gradients, optimiser steps, running
statistics) is checked by torch_parity.py.

    .venv-torch/bin/python bench/torch_reference.py --data ../shared/data --out runs/reference/torch \
        --ffem runs/reference/bin/ffem [--epochs1 30 --epochs2 20 --eval-every 5]
"""
import argparse
import csv
import json
import math
import os
import subprocess
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image, ImageOps
# ffem_model::heads::GnapHead in PyTorch, shared with the throughput benchmark beside this file.
from torch_train import GNAP

TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
SIZE = 112


def similarity(src, dst):
    """Least-squares p' = [a -b; b a] p + t, as ffem_data::align::Similarity::estimate."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    den = (s**2).sum()
    a = (s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1]).sum() / den
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / den
    return a, b, md[0] - (a * ms[0] - b * ms[1]), md[1] - (b * ms[0] + a * ms[1])


def bilinear(img, x, y):
    """ffem_data::imageops::sample: clamp to the border, bilinear; img HxWx3 float."""
    h, w = img.shape[:2]
    x, y = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def warp_aligned(img, landmarks):
    """ffem_data::align::warp_aligned: black outside the image."""
    a, b, tx, ty = similarity(np.asarray(landmarks, dtype=np.float64).reshape(5, 2), TEMPLATE)
    det = a * a + b * b
    ia, ib = a / det, -b / det
    itx, ity = -(ia * tx - ib * ty), -(ib * tx + ia * ty)
    oy, ox = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    x, y = ia * ox - ib * oy + itx, ib * ox + ia * oy + ity
    h, w = img.shape[:2]
    out = bilinear(img, x, y)
    out[(x < -0.5) | (y < -0.5) | (x > w - 0.5) | (y > h - 0.5)] = 0
    return out


def crop_resize(img, box):
    """ffem_data::imageops::crop_resize: sample centres of the box's grid, black outside."""
    h, w = img.shape[:2]
    sx, sy = (box[2] - box[0]) / SIZE, (box[3] - box[1]) / SIZE
    xs = box[0] + (np.arange(SIZE) + 0.5) * sx - 0.5
    ys = box[1] + (np.arange(SIZE) + 0.5) * sy - 0.5
    x, y = np.meshgrid(xs, ys)
    out = bilinear(img, x, y)
    out[(x < -0.5) | (y < -0.5) | (x > w - 0.5) | (y > h - 0.5)] = 0
    return out


def load_rgb(path):
    return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"), dtype=np.float64)


def load_cfp(data, cache):
    """Aligned crops (uint8 N x 112 x 112 x 3), labels, and the box-only images kept whole."""
    entries = json.load(open(os.path.join(data, "cfp", "image_list.json")))
    root = os.path.join(data, "cfp", "Data", "Images")
    keys = sorted(entries)
    labels = np.array([entries[k]["label"] for k in keys], dtype=np.int64)
    boxed = {}
    if os.path.exists(cache):
        crops = np.load(cache)
    else:
        crops = np.zeros((len(keys), SIZE, SIZE, 3), dtype=np.uint8)
        t = time.time()
        for i, k in enumerate(keys):
            e = entries[k]
            img = load_rgb(os.path.join(root, k))
            if "landmarks" in e:
                crops[i] = np.clip(np.rint(warp_aligned(img, e["landmarks"])), 0, 255)
            if i % 1000 == 0:
                print(f"aligned {i}/{len(keys)} in {time.time() - t:.0f} s", flush=True)
        np.save(cache, crops)
    for i, k in enumerate(keys):
        e = entries[k]
        if "landmarks" not in e:
            img = load_rgb(os.path.join(root, k)).astype(np.float32)
            boxed[i] = (img, [float(e[c]) for c in ("x1", "y1", "x2", "y2")])
    return crops, labels, boxed


def rgb_to_hsv(x):
    """x: (N, 3, H, W) in 0..255; hue in [0, 1), saturation, value (0..255), as ffem's."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    mx, _ = x.max(1)
    mn, _ = x.min(1)
    d = mx - mn
    safe = torch.where(d > 0, d, torch.ones_like(d))
    h = torch.where(mx == r, (g - b) / safe, torch.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(d > 0, h / 6, torch.zeros_like(h))
    h = torch.where(h < 0, h + 1, h)
    s = torch.where(mx > 0, d / torch.where(mx > 0, mx, torch.ones_like(mx)), torch.zeros_like(mx))
    return h, s, mx


def hsv_to_rgb(h, s, v):
    h6 = h * 6
    i = torch.floor(h6)
    f = h6 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    r = torch.stack([v, q, p, p, t, v])
    g = torch.stack([t, v, v, q, p, p])
    b = torch.stack([p, p, t, v, v, q])
    pick = lambda c: torch.gather(c, 0, i[None]).squeeze(0)  # noqa: E731
    return torch.stack([pick(r), pick(g), pick(b)], 1)


def augment(x, gen, p=0.5):
    """ffem_data::pipeline::preprocess_image after the crop: flip, colour, cutout, each with p."""
    n = x.shape[0]
    coins = torch.rand(n, 3, generator=gen) < p
    x[coins[:, 0]] = x[coins[:, 0]].flip(-1)
    idx = coins[:, 1].nonzero().flatten()
    if len(idx):
        sub = x[idx]
        hue = (torch.rand(len(idx), generator=gen) * 0.2 - 0.1)[:, None, None]
        bright = (torch.rand(len(idx), generator=gen) * 0.2 - 0.1)[:, None, None, None] * 255
        contrast = (torch.rand(len(idx), generator=gen) * 0.2 + 0.9)[:, None, None, None]
        h, s, v = rgb_to_hsv(sub)
        h = h + hue
        h = torch.where(h < 0, h + 1, torch.where(h >= 1, h - 1, h))
        sub = (hsv_to_rgb(h, s, v) + bright).clamp(0, 255)
        mean = sub.mean((2, 3), keepdim=True)
        x[idx] = ((sub - mean) * contrast + mean).clamp(0, 255)
    for i in coins[:, 2].nonzero().flatten().tolist():
        side = int(torch.randint(0, 39, (1,), generator=gen))
        cx, cy = (int(v) for v in torch.randint(0, SIZE, (2,), generator=gen))
        fill = torch.rand(3, generator=gen) * 255
        x0, x1 = max(cx - side // 2, 0), min(cx + (side + 1) // 2, SIZE)
        y0, y1 = max(cy - side // 2, 0), min(cy + (side + 1) // 2, SIZE)
        x[i, :, y0:y1, x0:x1] = fill[:, None, None]
    return x


def batch_images(idx, crops, boxed, gen, p=0.5):
    x = torch.from_numpy(crops[idx]).permute(0, 3, 1, 2).float()
    for j, i in enumerate(idx.tolist()):
        if i in boxed:  # no landmarks: the box, jittered by U(-10%, 10%) of each coordinate
            img, box = boxed[i]
            if float(torch.rand(1, generator=gen)) < p:
                jit = [c + (float(torch.rand(1, generator=gen)) * 0.2 - 0.1) * c for c in box]
                if jit[2] - jit[0] >= 1 and jit[3] - jit[1] >= 1:
                    box = jit
            x[j] = torch.from_numpy(crop_resize(img, box)).permute(2, 0, 1).float()
    return (augment(x, gen, p) / 255 - 0.5) / 0.5


def relu6_backbone(init):
    """torchvision's MobileNetV3-Small features, ReLU6 where it has ReLU (not inside squeeze-excite).
    init "torchvision": its Kaiming-normal fan-out convolutions; "pytorch": each layer's own
    default (Kaiming-uniform, bound 1/sqrt(fan_in)), which is also burn's and so ffem's."""
    features = torchvision.models.mobilenet_v3_small().features
    if init == "pytorch":
        for m in features.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.reset_parameters()
    se = torchvision.ops.SqueezeExcitation
    for parent in features.modules():
        if isinstance(parent, se):
            continue
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, name, nn.ReLU6(inplace=True))
    # torchvision's 0.01 suits ImageNet's 600 epochs; after a few hundred steps its running
    # variances still carry much of their initial 1, which in a fresh network is orders of magnitude
    # above the real variance of the deeper layers, so evaluation embeds every face alike.
    for m in features.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return features


class Net(nn.Module):
    def __init__(self, init, dim=512):
        super().__init__()
        self.backbone = relu6_backbone(init)
        self.head = GNAP(576, dim)

    def forward(self, x):
        return self.head(self.backbone(x))


class Classifier(nn.Module):
    """Identity weights, Xavier-uniform as ffem's; L2-softmax has a bias, ArcFace none."""

    def __init__(self, dim, classes, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes, dim))
        nn.init.xavier_uniform_(self.weight)
        self.bias = nn.Parameter(torch.zeros(classes)) if bias else None

    def l2softmax(self, emb, scale):
        return F.linear(F.normalize(emb) * scale, self.weight, self.bias)

    def arcface(self, emb, labels, m, s):
        cos = F.linear(F.normalize(emb), F.normalize(self.weight)).clamp(-1, 1)
        sin = (1 - cos * cos).clamp_min(0).sqrt()
        phi = cos * math.cos(m) - sin * math.sin(m)
        phi = torch.where(cos > math.cos(math.pi - m), phi, cos - math.sin(math.pi - m) * m)
        onehot = F.one_hot(labels, cos.shape[1]).bool()
        return s * torch.where(onehot, phi, cos), s * cos


def lr_at(step, lr, warmup, total, min_lr):
    """ffem_train::schedule: linear warm-up from lr/100, then cosine to min_lr."""
    if step < warmup:
        start = lr / 100
        return start + (lr - start) * step / warmup
    t = min((step - warmup) / max(total - warmup, 1), 1.0)
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * t))


def score_lfw(net, path, args):
    """Exports the network to ONNX and runs `ffem eval --onnx` on LFW: accuracy, std, AUC."""
    net.eval()
    with torch.no_grad():
        torch.onnx.export(
            net, torch.zeros(1, 3, SIZE, SIZE), path, dynamo=False,
            input_names=["input"], output_names=["embedding"], dynamic_axes={"input": {0: "n"}},
        )
    net.train()
    cmd = [args.ffem, "eval", "--onnx", path, "--lfw", os.path.join(args.data, "lfw"),
           "--onnx-channels", "rgb", "--onnx-mean", "127.5", "--onnx-std", "127.5", "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def epoch_order(n, buffer, gen):
    """A full permutation (buffer 0), or the order a shuffle buffer of that size draws records in
    from the file's order, as ffem's pipeline and tf.data do: to test what a buffer smaller than
    an identity-sorted dataset costs."""
    if buffer <= 0:
        return torch.randperm(n, generator=gen)
    held, out = list(range(min(buffer, n))), []
    for rec in range(len(held), n):
        j = int(torch.randint(0, len(held), (1,), generator=gen))
        out.append(held[j])
        held[j] = rec
    return torch.tensor(out + [held[i] for i in torch.randperm(len(held), generator=gen).tolist()])


def run_step(name, net, clf, opt, epochs, warmup, lr, loss_fn, data, args, log, log_file, gen, epoch0):
    crops, labels, boxed = data
    n = len(labels)
    per_epoch = n // args.batch
    total = epochs * per_epoch
    step = 0
    for epoch in range(epochs):
        order = epoch_order(n, args.shuffle_buffer, gen)
        t, loss_sum, correct = time.time(), 0.0, 0
        for b in range(per_epoch):
            idx = order[b * args.batch:(b + 1) * args.batch]
            x = batch_images(idx.numpy(), crops, boxed, gen).contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(labels[idx.numpy()])
            for g in opt.param_groups:
                g["lr"] = lr_at(step, lr, warmup, total, args.min_lr)
            logits, plain = loss_fn(clf, net(x), y)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item()
            correct += int((plain.argmax(1) == y).sum())
        row = {"step": name, "epoch": epoch0 + epoch + 1, "loss": loss_sum / per_epoch,
               "train_accuracy": correct / (per_epoch * args.batch),
               "images_per_s": per_epoch * args.batch / (time.time() - t), "lfw": "", "lfw_std": ""}
        if (epoch + 1) % args.eval_every == 0 or epoch + 1 == epochs:
            r = score_lfw(net, os.path.join(args.out, f"{name}_epoch{epoch + 1}.onnx"), args)
            row["lfw"], row["lfw_std"] = r["accuracy"], r["std"]
        log.writerow(row)
        log_file.flush()
        print(row, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", default="runs/reference/torch")
    ap.add_argument("--ffem", default="runs/reference/bin/ffem")
    ap.add_argument("--epochs1", type=int, default=30)
    ap.add_argument("--epochs2", type=int, default=20)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--min-lr", type=float, default=1e-5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", choices=["torchvision", "pytorch"], default="torchvision")
    ap.add_argument("--shuffle-buffer", type=int, default=0, help="0: a full permutation per epoch")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    data = load_cfp(args.data, os.path.join(args.out, "cfp_aligned.npy"))
    classes = int(data[1].max()) + 1
    net = Net(args.init).to(memory_format=torch.channels_last)
    start = time.time()
    with open(os.path.join(args.out, "metrics.csv"), "w", newline="") as f:
        log = csv.DictWriter(f, ["step", "epoch", "loss", "train_accuracy", "images_per_s", "lfw", "lfw_std"])
        log.writeheader()
        clf = Classifier(512, classes, bias=True)
        opt = torch.optim.Adam(list(net.parameters()) + list(clf.parameters()), lr=1e-3, weight_decay=5e-4)
        run_step("step1", net, clf, opt, args.epochs1, 100, 1e-3,
                 lambda c, e, y: (c.l2softmax(e, 30.0),) * 2, data, args, log, f, gen, 0)
        mid = time.time()
        clf = Classifier(512, classes, bias=False)
        opt = torch.optim.SGD(list(net.parameters()) + list(clf.parameters()), lr=0.01, momentum=0.9,
                              nesterov=True, weight_decay=5e-4)
        run_step("step2", net, clf, opt, args.epochs2, 50, 0.01,
                 lambda c, e, y: c.arcface(e, y, 0.5, 64.0), data, args, log, f, gen, args.epochs1)
    end = time.time()
    json.dump({"step1_s": round(mid - start), "step2_s": round(end - mid), "torch": torch.__version__,
               "threads": args.threads, "init": args.init, "shuffle_buffer": args.shuffle_buffer}, open(os.path.join(args.out, "time.json"), "w"))


if __name__ == "__main__":
    main()
