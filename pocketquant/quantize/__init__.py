"""File-level quantization of GGUF models: llama-quantize's type mixes on our kernel."""

import os

# The kernel runs on OpenMP; libgomp's default spin-waiting makes it several times slower when the
# CPU is oversubscribed (other jobs, llama.cpp threads), and passive waiting costs nothing when it
# is not. libgomp reads this once, when the kernel is first loaded (lazily, after this import);
# an explicit OMP_WAIT_POLICY from the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# (imports below on purpose: the environment must be set before anything can load the kernel)

from pocketquant.quantize.ftypes import FTYPES, TENSOR_TYPES, FType, parse_ftype  # noqa: E402
from pocketquant.quantize.run import (  # noqa: E402
    QuantizeReport,
    TensorPlan,
    plan_quantization,
    quantize_gguf,
)

__all__ = [
    "FTYPES",
    "TENSOR_TYPES",
    "FType",
    "QuantizeReport",
    "TensorPlan",
    "parse_ftype",
    "plan_quantization",
    "quantize_gguf",
]
