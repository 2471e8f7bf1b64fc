#!/usr/bin/env python3
"""Side by side: each variant's first-set accuracy in two studies (clean and noisy labels).

    python3 bench/ablation_compare.py runs/ablation runs/ablation-noise0.2

Reads STUDY/variants/*/result.json (written by `ffem ablate`); standard library only.
"""
import json
import pathlib
import sys


def results(study: str) -> dict:
    out = {}
    for path in sorted(pathlib.Path(study, "variants").glob("*/result.json")):
        r = json.loads(path.read_text())
        out[r["name"]] = r
    return out


def main() -> None:
    clean_dir, noisy_dir = sys.argv[1:3]
    clean, noisy = results(clean_dir), results(noisy_dir)
    order = list(clean) + [n for n in noisy if n not in clean]
    # Keep the study file's order when both report it: result.json has no index, so sort by
    # the report's table order instead when available.
    report = pathlib.Path(clean_dir, "report.md")
    if report.exists():
        listed = [line.split("|")[1].strip() for line in report.read_text().splitlines()
                  if line.startswith("| ") and not line.startswith("| variant")]
        order = [n for n in listed if n in clean or n in noisy] + [n for n in order if n not in listed]
    set_name = next(iter(clean.values()))["sets"][0]["set"]
    print(f"| variant | {set_name} clean | {set_name} 20% noise | change | TAR@1e-3 clean / noisy |")
    print("|---|---|---|---|---|")
    for name in order:
        c, n = clean.get(name), noisy.get(name)
        fmt = lambda r: f"{r['sets'][0]['accuracy'] * 100:.2f}% ± {r['sets'][0]['std'] * 100:.2f}" if r else "-"
        tar = lambda r: f"{r['sets'][0]['tar_at_far_1e3'] * 100:.2f}%" if r and r["sets"][0]["tar_at_far_1e3"] is not None else "-"
        change = (f"{(n['sets'][0]['accuracy'] - c['sets'][0]['accuracy']) * 100:+.2f}"
                  if c and n else "-")
        print(f"| {name} | {fmt(c)} | {fmt(n)} | {change} | {tar(c)} / {tar(n)} |")


if __name__ == "__main__":
    main()
