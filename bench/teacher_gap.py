"""How closely distilled students reproduce their teacher, on training images and on held-out ones.

For each student, the mean cosine between its embedding and the teacher's embedding of the same
image (both flip-summed, aligned 112x112), over a sample of the training list and a sample of
LFW (never trained on). A student that matches the teacher on both is limited by nothing; a low
training figure is under-fitting; a training figure well above the LFW one is a generalisation
gap. Standard library only (reads float32 .npy and the CSV index `ffem embed` writes).

Usage: bench/teacher_gap.py TEACHER_TRAIN.npy TEACHER_LFW.npy STUDENT_TRAIN.npy:STUDENT_LFW.npy...
"""

import ast
import csv
import math
import struct
import sys


def read_npy(path):
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            sys.exit(f"{path}: not an .npy file")
        major = f.read(2)[0]
        (header_len,) = struct.unpack("<H" if major == 1 else "<I", f.read(2 if major == 1 else 4))
        header = ast.literal_eval(f.read(header_len).decode("latin1"))
        if header["descr"] != "<f4" or header["fortran_order"]:
            sys.exit(f"{path}: expected little-endian float32 in C order, found {header}")
        rows, dim = header["shape"]
        values = struct.unpack(f"<{rows * dim}f", f.read(4 * rows * dim))
    return [values[r * dim:(r + 1) * dim] for r in range(rows)]


def load(npy):
    """Unit-length embeddings keyed by the path in the index beside the .npy."""
    rows = read_npy(npy)
    with open(npy[:-4] + ".csv") as f:
        keys = [r[1] for r in csv.reader(f) if r and r[0] != "row"]
    if len(keys) != len(rows):
        sys.exit(f"{npy}: {len(rows)} rows but {len(keys)} index entries")
    out = {}
    for k, v in zip(keys, rows):
        n = math.sqrt(sum(x * x for x in v))
        out[k] = [x / n for x in v]
    return out


def mean_cosine(student, teacher, what):
    missing = [k for k in student if k not in teacher]
    if missing:
        sys.exit(f"{what}: `{missing[0]}` has no teacher embedding ({len(missing)} missing)")
    cos = sorted(sum(a * b for a, b in zip(student[k], teacher[k])) for k in student)
    return sum(cos) / len(cos), cos[len(cos) // 10]


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    teacher_train, teacher_lfw = load(sys.argv[1]), load(sys.argv[2])
    print("| student | images | mean cosine to the teacher, training images | 10th percentile | mean cosine, LFW (held out) | 10th percentile |")
    print("|---|---|---|---|---|---|")
    for pair in sys.argv[3:]:
        train_npy, lfw_npy = pair.split(":")
        train = load(train_npy)
        tm, tp = mean_cosine(train, teacher_train, train_npy)
        lm, lp = mean_cosine(load(lfw_npy), teacher_lfw, lfw_npy)
        print(f"| {train_npy} | {len(train)} | {tm:.3f} | {tp:.3f} | {lm:.3f} | {lp:.3f} |")


if __name__ == "__main__":
    main()
