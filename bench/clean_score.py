#!/usr/bin/env python3
"""Scores `ffem clean`'s flags against a study's known label flips, per source dataset.

    python3 bench/clean_score.py STUDY/data/noise.json CLEAN_REPORT.json [SOURCE ...]

SOURCE is a path fragment (e.g. /cfp/ /celeba/) that picks the images of one dataset of the
merged list; without one, all images are scored together. Needs only the standard library.
"""
import json
import sys


def main() -> None:
    noise_path, report_path, *sources = sys.argv[1:]
    flipped = set(json.load(open(noise_path))["flipped"])
    report = json.load(open(report_path))
    flagged = {s["path"] for s in report["suspects"]}
    clean_list = json.load(open(noise_path.replace("noise.json", "image_list.clean.json")))
    print("| images | flipped | flagged | caught | precision | recall |")
    print("|---|---|---|---|---|---|")
    for source in sources or [""]:
        images = {p for p in clean_list if source in p}
        f, g = flipped & images, flagged & images
        caught = len(f & g)
        precision = caught / len(g) if g else float("nan")
        recall = caught / len(f) if f else float("nan")
        name = source.strip("/") or "all"
        print(f"| {name}: {len(images)} | {len(f)} | {len(g)} | {caught} | {precision:.3f} | {recall:.3f} |")
    # The report lists suspects most suspicious first, so its top k is what a user who can review
    # only k images would check; k = the number flipped gives the break-even point (P = R).
    ranked = [s["path"] for s in report["suspects"]]
    print()
    print("| top k of the report's ranking | caught | precision | recall |")
    print("|---|---|---|---|")
    for k in sorted({500, 1000, len(flipped), 2 * len(flipped)}):
        if k > len(ranked):
            continue
        caught = sum(p in flipped for p in ranked[:k])
        print(f"| {k} | {caught} | {caught / k:.3f} | {caught / len(flipped):.3f} |")


if __name__ == "__main__":
    main()
