"""Benchmark (not a test): streaming quantization of a Llama-3.2-3B-shaped model stays under 2 GB RSS.

Builds a random-weight F16 GGUF with Llama-3.2-3B's shapes (28 layers, hidden 3072, ffn 8192, 24/8
heads of 128, vocab 128256, tied embeddings; about 6.4 GB, written streaming), quantizes it to
Q4_K_M with `pocketquant quantize` in a child process, and reports the child's peak RSS (target
< 2 GB) and wall time, and checks that the output's tensor data size is what the type rules give:
Q6_K token_embd, Q6_K attn_v/ffn_down on the 14 use_more_bits layers, Q4_K elsewhere, F32 norms
(about 2.0e9 bytes). The files are deleted at the end.

    nice .venv/bin/python benchmarks/quantize_3b_memory.py [--workdir /tmp] [--threads 2] [--keep]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pocketquant.gguf_file import GGMLType, GGUFFile, tensor_nbytes
from pocketquant.testing.synthetic_gguf import LLAMA_3_2_3B, write_random_llama

LIMIT = 2 * 10**9


def expected_q4_k_m_bytes() -> int:
    """Tensor data of Llama-3.2-3B at Q4_K_M from the rules, written out by hand."""
    n_embd, n_ff, kv, vocab, n_layer = 3072, 8192, 8 * 128, 128256, 28
    more_bits = [i for i in range(n_layer) if i < 3 or i >= 24 or (i - 3) % 3 == 2]

    def q(n: int, t: GGMLType) -> int:
        return tensor_nbytes((n,), t)

    total = q(n_embd * vocab, GGMLType.Q6_K) + (2 * n_layer + 1) * n_embd * 4
    total += n_layer * (2 * q(n_embd * n_embd, GGMLType.Q4_K) + q(n_embd * kv, GGMLType.Q4_K))
    total += n_layer * 2 * q(n_embd * n_ff, GGMLType.Q4_K)
    for i in range(n_layer):
        t = GGMLType.Q6_K if i in more_bits else GGMLType.Q4_K
        total += q(n_embd * kv, t) + q(n_ff * n_embd, t)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None, help="where the ~8.5 GB of scratch files go")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--keep", action="store_true", help="keep the files (default: delete them)")
    args = ap.parse_args()

    d = Path(tempfile.mkdtemp(prefix="pq-3b-", dir=args.workdir))
    try:
        src, dst = d / "llama-3.2-3b-random-f16.gguf", d / "llama-3.2-3b-random-q4_k_m.gguf"
        t0 = time.perf_counter()
        write_random_llama(src, LLAMA_3_2_3B, dtype=GGMLType.F16, seed=0)
        print(f"built {src.name}: {src.stat().st_size:,} bytes in {time.perf_counter() - t0:.0f} s")

        cmd = [sys.executable, "-m", "pocketquant.cli", "quantize", str(src), str(dst), "Q4_K_M"]
        cmd += ["--threads", str(args.threads)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: KiB

        with GGUFFile(dst) as f:
            data = sum(t.nbytes for t in f.tensors)
            mix: dict[str, int] = {}
            for t in f.tensors:
                mix[t.type.name] = mix.get(t.type.name, 0) + 1
            file_size = f.file_size
        want = expected_q4_k_m_bytes()
        print(f"quantize Q4_K_M, {args.threads} threads: {wall:.0f} s wall")
        print(f"peak RSS of the quantize process: {peak / 1e9:.3f} GB ({peak / 2**30:.3f} GiB); limit 2 GB")
        print(f"output: {file_size:,} bytes; tensor data {data:,} bytes ({data / 2**30:.3f} GiB); mix {mix}")
        verdict = "OK" if data == want else "MISMATCH"
        print(f"tensor data predicted by the type rules: {want:,} bytes -> {verdict}")
        ok = peak < LIMIT and data == want
        print("PASS" if ok else "FAIL")
        if not ok:
            sys.exit(1)
    finally:
        if args.keep:
            print(f"kept {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
