"""One batch through the PyTorch reference's network and loss, written out so that
`cargo run --release -p ffem-train --example torch_parity DIR` can put the same weights into
ffem's network and compare (issue 11, part 4: is ffem's training step the reference's?).

Writes DIR/manifest.json (parameter names and shapes in `parameters()` order, then the
classifier's), params.bin (their values), input.bin (the batch, N x 3 x 112 x 112, -1..1),
labels.bin (int64), and for each loss ("l2softmax": s 30 with bias, Adam (--adam-lr, 1e-3) decay 5e-4;
"arcface": m 0.5 s 64, SGD Nesterov (--sgd-lr, 0.01) momentum 0.9 decay 5e-4): the loss and the gradients of
the first forward (grads_LOSS.bin), the loss after each of STEPS optimiser steps on the same batch,
the parameters after them (after_LOSS.bin) and the batch's embeddings in inference mode with the
running statistics those forwards left (eval_LOSS.bin), and those statistics (stats_LOSS.bin:
every BatchNorm's running mean and variance, in `named_buffers()` order). All f32 little-endian, no header.

    .venv-torch/bin/python bench/torch_parity.py --out runs/parity
"""
import argparse
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from torch_reference import Classifier, Net


def flat(tensors):
    return np.concatenate([t.detach().reshape(-1).numpy().astype(np.float32) for t in tensors])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/parity")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--classes", type=int, default=500)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    # The recipe's rates by default. ArcFace at s 64 with SGD 0.01 is chaotic from the second step
    # (PyTorch against itself with the weights perturbed by 1e-6 ends 5 steps ~25% apart), so
    # a smaller --sgd-lr is what checks the momentum arithmetic itself.
    ap.add_argument("--adam-lr", type=float, default=1e-3)
    ap.add_argument("--sgd-lr", type=float, default=0.01)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count())
    net = Net("torchvision")
    clf = {
        "l2softmax": Classifier(512, args.classes, bias=True),
        "arcface": Classifier(512, args.classes, bias=False),
    }
    x = torch.rand(args.batch, 3, 112, 112) * 2 - 1
    y = torch.randint(0, args.classes, (args.batch,))
    named = list(net.named_parameters())
    start = {n: p.detach().clone() for n, p in named}
    manifest = {
        "batch": args.batch,
        "classes": args.classes,
        "steps": args.steps,
        "adam_lr": args.adam_lr,
        "sgd_lr": args.sgd_lr,
        "net": [{"name": n, "shape": list(p.shape)} for n, p in named],
        "stats": [{"name": n, "shape": list(b.shape)} for n, b in net.named_buffers() if "running" in n],
        "losses": {},
    }
    flat([p for _, p in named]).tofile(os.path.join(args.out, "params.bin"))
    x.numpy().astype(np.float32).tofile(os.path.join(args.out, "input.bin"))
    y.numpy().astype(np.int64).tofile(os.path.join(args.out, "labels.bin"))
    for name, c in clf.items():
        with torch.no_grad():
            for n, p in named:
                p.copy_(start[n])
        # Fresh BN running statistics too: they do not enter a training-mode forward, but keep
        # both sides' starting points identical.
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
        params = [p for _, p in named] + [c.weight] + ([c.bias] if c.bias is not None else [])
        flat(params[len(named):]).tofile(os.path.join(args.out, f"classifier_{name}.bin"))
        if name == "l2softmax":
            opt = torch.optim.Adam(params, lr=args.adam_lr, weight_decay=5e-4)
            loss_fn = lambda e: F.cross_entropy(c.l2softmax(e, 30.0), y)  # noqa: E731
        else:
            opt = torch.optim.SGD(params, lr=args.sgd_lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
            loss_fn = lambda e: F.cross_entropy(c.arcface(e, y, 0.5, 64.0)[0], y)  # noqa: E731
        net.train()
        losses = []
        for step in range(args.steps + 1):
            loss = loss_fn(net(x))
            losses.append(loss.item())
            if step == 0 or step < args.steps:
                opt.zero_grad(set_to_none=True)
                loss.backward()
            if step == 0:
                flat([p.grad for p in params]).tofile(os.path.join(args.out, f"grads_{name}.bin"))
            if step == args.steps:
                break
            opt.step()
        flat(params).tofile(os.path.join(args.out, f"after_{name}.bin"))
        stats = [b for n, b in net.named_buffers() if "running" in n]
        flat(stats).tofile(os.path.join(args.out, f"stats_{name}.bin"))
        # Inference with the running statistics the steps left (the forwards above, in training
        # mode, updated them STEPS + 1 times).
        net.eval()
        with torch.no_grad():
            flat([net(x)]).tofile(os.path.join(args.out, f"eval_{name}.bin"))
            h, layers = x, []
            for layer in net.backbone:
                h = layer(h)
                layers.append(h)
            flat(layers).tofile(os.path.join(args.out, f"eval_layers_{name}.bin"))
        net.train()
        manifest["losses"][name] = {
            "losses": losses,
            "classifier": [list(p.shape) for p in params[len(named):]],
        }
        print(name, "losses", [round(v, 5) for v in losses], flush=True)
    json.dump(manifest, open(os.path.join(args.out, "manifest.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
