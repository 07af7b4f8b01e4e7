"""Pin the instruction set torch computes with, so its float results are the same on every x86-64 CPU.

torch's CPU kernels are chosen at run time from the CPU's instruction set: ATen's vectorized
kernels, MKL's GEMM and oneDNN each take an AVX-512 path where the CPU has one, and those paths
round differently from the AVX2 ones. Measured: the reference stage's hidden states (eval=default)
on an AVX512-BF16 AMD EPYC differ from those of the machine that committed dvc.lock; with the three
switches below set to AVX2 they are byte-identical to it, so a fresh clone keeps every evaluation
result instead of re-measuring. AVX2 is what every x86-64 machine this project runs on has (a CPU
without it falls back to its best path: the switches are upper limits). Other CPUs ignore them.

`pin_torch_isa` runs when pocketquant is imported (pocketquant/__init__.py), before any stage
imports torch; the variables are read when torch first computes. A value already in the
environment wins: POCKETQUANT_TORCH_ISA=native leaves torch to pick its fastest path.
"""

from __future__ import annotations

import os

# torch's three run-time dispatchers and the AVX2 setting of each
TORCH_ISA_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen vectorized kernels (default, avx2, avx512)
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # MKL GEMM and friends
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN primitives
}
SWITCH = "POCKETQUANT_TORCH_ISA"


def pin_torch_isa(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """Set TORCH_ISA_ENV defaults unless POCKETQUANT_TORCH_ISA=native; return the ISA in effect
    ("avx2", "native", or what the user set ATEN_CPU_CAPABILITY to)."""
    if environ.get(SWITCH, "avx2").lower() == "native":
        return "native"
    for key, value in TORCH_ISA_ENV.items():
        environ.setdefault(key, value)
    return environ["ATEN_CPU_CAPABILITY"]
