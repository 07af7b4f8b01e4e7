"""The file types `pocketquant quantize` accepts, as llama.cpp's `llama_ftype` defines them."""

from __future__ import annotations

from dataclasses import dataclass

from pocketquant.errors import QuantizationError
from pocketquant.gguf_file import GGMLType


@dataclass(frozen=True)
class FType:
    name: str  # llama-quantize's spelling, e.g. "Q4_K_M"
    id: int  # llama_ftype value, written as general.file_type
    default: GGMLType  # llama_ftype_get_default_type

    @property
    def is_float(self) -> bool:
        return self.default in FLOAT_TYPES


FLOAT_TYPES = frozenset({GGMLType.F32, GGMLType.F16, GGMLType.BF16})

_T = GGMLType
FTYPES: dict[str, FType] = {
    f.name: f
    for f in (
        FType("F32", 0, _T.F32),
        FType("F16", 1, _T.F16),
        FType("BF16", 32, _T.BF16),
        FType("Q8_0", 7, _T.Q8_0),
        FType("Q4_0", 2, _T.Q4_0),
        FType("Q4_1", 3, _T.Q4_1),
        FType("Q5_0", 8, _T.Q5_0),
        FType("Q5_1", 9, _T.Q5_1),
        FType("Q2_K", 10, _T.Q2_K),
        FType("Q3_K_S", 11, _T.Q3_K),
        FType("Q3_K_M", 12, _T.Q3_K),
        FType("Q3_K_L", 13, _T.Q3_K),
        FType("Q4_K_S", 14, _T.Q4_K),
        FType("Q4_K_M", 15, _T.Q4_K),
        FType("Q5_K_S", 16, _T.Q5_K),
        FType("Q5_K_M", 17, _T.Q5_K),
        FType("Q6_K", 18, _T.Q6_K),
    )
}
# llama-quantize's aliases
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}

# tensor types we can produce (for --output-tensor-type, --token-embedding-type, --tensor-type)
TENSOR_TYPES: dict[str, GGMLType] = {
    t.name: t
    for t in (
        _T.F32,
        _T.F16,
        _T.BF16,
        _T.Q8_0,
        _T.Q4_0,
        _T.Q4_1,
        _T.Q5_0,
        _T.Q5_1,
        _T.Q2_K,
        _T.Q3_K,
        _T.Q4_K,
        _T.Q5_K,
        _T.Q6_K,
    )
}

# ggml_is_quantized is false only for these
UNQUANTIZED_TYPES = frozenset({_T.F32, _T.F16, _T.BF16, _T.F64, _T.I8, _T.I16, _T.I32, _T.I64})


def parse_ftype(name: str) -> FType:
    """An FType from its name in any case; QuantizationError listing the valid names otherwise."""
    key = name.strip().upper()
    key = ALIASES.get(key, key)
    if key not in FTYPES:
        raise QuantizationError(f"unknown quantization type {name!r}; valid types: {', '.join(FTYPES)}")
    return FTYPES[key]


def parse_tensor_type(name: str | GGMLType, what: str = "tensor type") -> GGMLType:
    """A producible ggml tensor type from its name in any case."""
    if isinstance(name, GGMLType):
        if name not in TENSOR_TYPES.values():
            raise QuantizationError(f"{what}: cannot produce {name.name}; valid: {', '.join(TENSOR_TYPES)}")
        return name
    key = name.strip().upper()
    if key not in TENSOR_TYPES:
        raise QuantizationError(f"{what}: unknown tensor type {name!r}; valid: {', '.join(TENSOR_TYPES)}")
    return TENSOR_TYPES[key]


def is_quantized(t: GGMLType) -> bool:
    return t not in UNQUANTIZED_TYPES
