"""File-level quantization of GGUF models: llama-quantize's type mixes on our kernel."""

from pocketquant.quantize.ftypes import FTYPES, TENSOR_TYPES, FType, parse_ftype
from pocketquant.quantize.run import (
    QuantizeOptions,
    QuantizeReport,
    TensorPlan,
    plan_quantization,
    quantize_gguf,
)

__all__ = [
    "FTYPES",
    "TENSOR_TYPES",
    "FType",
    "QuantizeOptions",
    "QuantizeReport",
    "TensorPlan",
    "parse_ftype",
    "plan_quantization",
    "quantize_gguf",
]
