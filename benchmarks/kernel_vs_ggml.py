"""Kernel speed vs llama.cpp's reference quantizer (not a test).

    .venv/bin/python benchmarks/kernel_vs_ggml.py [--rows 128] [--width 4096] [--repeat 3] [--threads 1]

For each type, with and without an importance matrix: ns per weight of pocketquant's kernel and of
libggml's ggml_quantize_chunk (llama-cpp-python's build, called through ctypes) on the same data in
the same run, the ratio ours/ggml (<= 1.0 means we are at least as fast), and whether the bytes
are identical. Best of --repeat runs, interleaved, to damp noise from other processes; with one
thread the clock is the calling thread's CPU time (both run there), so other busy processes on a
shared machine do not distort the ratio.
ggml_quantize_chunk is single-threaded; with --threads N our kernel uses N threads while ggml's
chunk is split over N Python threads (ctypes releases the GIL), as llama-quantize splits rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pocketquant import quants
from pocketquant.testing import llamacpp_ref

TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16"]


def _data(rows: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((rows, width)) * 0.02).astype(np.float16).astype(np.float32)
    x[rng.random(x.shape) < 0.001] *= 10
    qw = (rng.lognormal(0.0, 1.5, width) * 1e-2).astype(np.float32)
    return x, qw


def _ggml(ref, t: int, x: np.ndarray, qw, threads: int) -> np.ndarray:
    if threads == 1:
        return ref.quantize_chunk(t, x, qw)
    parts = np.array_split(x, threads)
    with ThreadPoolExecutor(threads) as ex:
        outs = list(ex.map(lambda p: ref.quantize_chunk(t, p, qw), parts))
    return np.concatenate(outs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--types", nargs="*", default=TYPES)
    args = ap.parse_args(argv)
    if not llamacpp_ref.available():
        print("llama-cpp-python is not installed: nothing to compare against", file=sys.stderr)
        return 1
    ref = llamacpp_ref.GGMLRef()
    x, qw = _data(args.rows, args.width)
    n = x.size
    clock_name = "thread CPU time" if args.threads == 1 else "wall time"
    print(
        f"{n} weights ({args.rows} x {args.width}), threads={args.threads}, "
        f"best of {args.repeat}, {clock_name}"
    )
    print(f"{'type':6s} {'imatrix':8s} {'ours ns/w':>10s} {'ggml ns/w':>10s} {'ratio':>7s}  bytes")
    worst = 0.0
    for name in args.types:
        t = quants.parse_qtype(name)
        for use_qw in (False, True):
            if use_qw and t in (quants.QType.F16, quants.QType.BF16):
                continue
            w = qw if use_qw else None
            best_ours = best_ref = float("inf")
            clock = time.thread_time if args.threads == 1 else time.perf_counter
            for _ in range(args.repeat):
                t0 = clock()
                ours = quants.quantize(x, t, imatrix=w, threads=args.threads)
                t1 = clock()
                theirs = _ggml(ref, int(t), x, w, args.threads)
                t2 = clock()
                best_ours = min(best_ours, t1 - t0)
                best_ref = min(best_ref, t2 - t1)
            same = "identical" if np.array_equal(ours, theirs) else "DIFFERENT"
            ratio = best_ours / best_ref
            worst = max(worst, ratio)
            print(
                f"{t.name:6s} {'yes' if use_qw else 'no':8s} {1e9 * best_ours / n:10.2f} "
                f"{1e9 * best_ref / n:10.2f} {ratio:7.2f}  {same}"
            )
    print(f"worst ratio ours/ggml: {worst:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
