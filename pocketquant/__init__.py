"""pocketquant: quantize causal LMs to GGUF and NF4, measure what was lost, package for the phone."""

import os

# Our kernel and llama.cpp's CPU backend both run on OpenMP (libgomp), which reads OMP_WAIT_POLICY
# once, when the first OpenMP library loads. Its default spin-waiting makes both several times
# slower when the CPU is oversubscribed (a 2-core machine running a kernel and llama.cpp threads);
# passive waiting costs nothing when it is not. Every entry point imports this package first, and
# an explicit OMP_WAIT_POLICY from the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# torch computes with AVX2 on every x86-64 CPU, so its outputs (the base reference, calibration,
# NF4) are the same bytes on every machine (pocketquant/cpu_isa.py; POCKETQUANT_TORCH_ISA=native).
from pocketquant.cpu_isa import pin_torch_isa  # noqa: E402

pin_torch_isa()

__version__ = "0.1.0"
