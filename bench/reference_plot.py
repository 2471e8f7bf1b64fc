"""Draws ffem's and the PyTorch reference's LFW accuracy per epoch in one PNG and writes the
side-by-side table, from what bench/reference_run.sh left in OUT (default runs/reference):

    OUT/ffem/step{1,2}/metrics.csv   ffem's trainer (val_accuracy at each evaluation step)
    OUT/ffem/time.json               ffem's wall time per step
    OUT/torch/metrics.csv            bench/torch_reference.py (lfw per evaluated epoch)
    OUT/torch/time.json
    OUT/ffem_before/...              optional: an earlier ffem run laid out like OUT/ffem, drawn
                                     beside it (the run before the shuffle fix that the comparison found)

    .venv-torch/bin/python bench/reference_plot.py [OUT]  ->  OUT/curves.png, OUT/table.md
"""
import csv
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STEPS_PER_EPOCH = 7000 // 64  # CFP's 7,000 images, batch 64, the last short batch dropped


def ffem_curve(out, name="ffem"):
    """(epoch, LFW accuracy) at each evaluation of both steps, (epoch, mean training loss) per
    epoch, and the mean training images/s."""
    points, losses, rates, epoch0 = [], [], [], 0
    for step in ("step1", "step2"):
        path = os.path.join(out, name, step, "metrics.csv")
        last, per_epoch = 0, {}
        for row in csv.DictReader(open(path)):
            last = int(row["step"])
            rates.append(float(row["images_per_sec"]))
            per_epoch.setdefault(int(row["epoch"]), []).append(float(row["loss"]))
            if row["val_accuracy"]:
                points.append((epoch0 + last / STEPS_PER_EPOCH, float(row["val_accuracy"])))
        losses += [(epoch0 + e + 1, sum(v) / len(v)) for e, v in sorted(per_epoch.items())]
        epoch0 += round(last / STEPS_PER_EPOCH)
    return points, losses, sum(rates) / len(rates)


def torch_curve(out):
    points, losses, rates = [], [], []
    for row in csv.DictReader(open(os.path.join(out, "torch", "metrics.csv"))):
        rates.append(float(row["images_per_s"]))
        losses.append((int(row["epoch"]), float(row["loss"])))
        if row["lfw"]:
            points.append((int(row["epoch"]), float(row["lfw"]), float(row["lfw_std"])))
    return points, losses, sum(rates) / len(rates)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "runs/reference"
    f_points, f_losses, f_rate = ffem_curve(out)
    t_points, t_losses, t_rate = torch_curve(out)
    f_time = json.load(open(os.path.join(out, "ffem", "time.json")))
    t_time = json.load(open(os.path.join(out, "torch", "time.json")))
    ffem_eval = json.load(open(os.path.join(out, "ffem", "eval.json")))

    fig, (ax, lx) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    ffem_label, torch_label = "ffem (burn + ffem kernels, CPU)", f"PyTorch {t_time['torch']} reference (CPU)"
    ax.plot([p[0] for p in f_points], [100 * p[1] for p in f_points], "o-", label=ffem_label)
    ax.plot([p[0] for p in t_points], [100 * p[1] for p in t_points], "s--", label=torch_label)
    before = os.path.join(out, "ffem_before")
    if os.path.isdir(before):
        b_points, b_losses, _ = ffem_curve(out, "ffem_before")
        before_label = "ffem before (a 4,096-record shuffle buffer over the identity-ordered pack)"
        ax.plot([p[0] for p in b_points], [100 * p[1] for p in b_points], "^:", color="grey", label=before_label)
        lx.semilogy([p[0] for p in b_losses], [p[1] for p in b_losses], ":", color="grey", label=before_label)
    ax.set_ylabel("LFW accuracy, 10-fold (%)")
    ax.set_title("LFW accuracy")
    # Step 2's ArcFace loss is on another scale than step 1's L2-softmax: a log axis shows both.
    lx.semilogy([p[0] for p in f_losses], [p[1] for p in f_losses], "-", label=ffem_label)
    lx.semilogy([p[0] for p in t_losses], [p[1] for p in t_losses], "--", label=torch_label)
    lx.set_ylabel("mean training loss of the epoch")
    lx.set_title("training loss")
    for a in (ax, lx):
        a.axvline(30, color="grey", lw=0.8, ls=":")
        a.set_xlabel("epoch (CFP, 7,000 images): L2-softmax 1-30, ArcFace 31-50")
        a.grid(alpha=0.3)
        a.legend(fontsize=7, loc="lower right" if a is ax else "upper right")
    fig.suptitle("MobileNetV3-Small + GNAP on CFP, the same recipe in ffem and PyTorch")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "curves.png"))

    f_final, t_final = f_points[-1][1], t_points[-1]
    rows = [
        "| | ffem | PyTorch reference |",
        "|---|---|---|",
        f"| LFW accuracy, final (10-fold) | {100 * ffem_eval['accuracy']:.2f}% ± {100 * ffem_eval['std']:.2f} "
        f"| {100 * t_final[1]:.2f}% ± {100 * t_final[2]:.2f} |",
        f"| LFW accuracy, best evaluation | {100 * max(p[1] for p in f_points):.2f}% "
        f"| {100 * max(p[1] for p in t_points):.2f}% |",
        f"| wall time, step 1 + step 2 (with evaluations) | {f_time['step1_s'] / 60:.1f} + {f_time['step2_s'] / 60:.1f} min "
        f"| {t_time['step1_s'] / 60:.1f} + {t_time['step2_s'] / 60:.1f} min |",
        f"| mean training images/s | {f_rate:.0f} | {t_rate:.0f} |",
    ]
    table = "\n".join(rows) + f"\n\nffem's last in-training evaluation: {100 * f_final:.2f}%\n"
    if os.path.isdir(before):
        table += (f"ffem before the shuffle fix: last evaluation {100 * b_points[-1][1]:.2f}%, "
                  f"best {100 * max(p[1] for p in b_points):.2f}%\n")
    open(os.path.join(out, "table.md"), "w").write(table)
    print(table)


if __name__ == "__main__":
    main()
