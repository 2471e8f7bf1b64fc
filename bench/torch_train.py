"""PyTorch reference for ffem's training benchmark: MobileNetV3-Large features + GNAP head +
ArcFace classifier, 112x112, SGD Nesterov, channels-last, autocast (bf16 on the GPU).

    python3 bench/torch_train.py [--batch 256] [--steps 20] [--warmup 5] [--classes 2000] [--device cuda] [--no-amp]
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


class GNAP(nn.Module):
    """BN, per-position norm re-weighting (mean norm per image), average pool, linear, BN."""

    def __init__(self, c, d):
        super().__init__()
        self.bn_in = nn.BatchNorm2d(c, eps=2e-5)
        self.fc = nn.Linear(c, d, bias=False)
        self.bn_out = nn.BatchNorm1d(d, eps=2e-5)

    def forward(self, x):
        x = self.bn_in(x)
        norm = x.pow(2).sum(1, keepdim=True).sqrt()
        w = norm.mean((2, 3), keepdim=True) / (norm + 1e-6)
        x = (x * w).mean((2, 3))
        return self.bn_out(self.fc(x))


class ArcFace(nn.Module):
    def __init__(self, d, classes, m=0.5, s=64.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes, d))
        nn.init.xavier_uniform_(self.weight)
        self.m, self.s = m, s

    def forward(self, emb, labels):
        cos = F.linear(F.normalize(emb.float()), F.normalize(self.weight)).clamp(-1 + 1e-7, 1 - 1e-7)
        t = cos.gather(1, labels[:, None])
        sin = (1 - t * t).clamp_min(0).sqrt()
        phi = t * math.cos(self.m) - sin * math.sin(self.m)
        phi = torch.where(t > math.cos(math.pi - self.m), phi, t - math.sin(math.pi - self.m) * self.m)
        logits = (cos + F.one_hot(labels, cos.shape[1]) * (phi - t)) * self.s
        return F.cross_entropy(logits, labels)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--classes", type=int, default=2000)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-amp", action="store_true")
    a = p.parse_args()
    dev = torch.device(a.device)
    backbone = torchvision.models.mobilenet_v3_large().features
    model = nn.Sequential(backbone, GNAP(960, 512)).to(dev).to(memory_format=torch.channels_last)
    head = ArcFace(512, a.classes).to(dev)
    opt = torch.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=1e-3, momentum=0.9, nesterov=True)
    x = (torch.rand(a.batch, 3, 112, 112, device=dev) * 2 - 1).to(memory_format=torch.channels_last)
    y = torch.arange(a.batch, device=dev) % a.classes
    amp = not a.no_amp
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.bfloat16

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=dtype, enabled=amp):
            loss = head(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.time()
    for _ in range(a.steps):
        last = step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    s = time.time() - t
    print(f"torch training [{a.device} MobileNetV3-Large + GNAP, 112x112, batch {a.batch}, amp={'bf16' if amp else 'off'}, channels-last]: "
          f"{a.steps * a.batch / s:.1f} images/s ({a.steps} steps in {s:.2f} s, last loss {last:.3f}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
