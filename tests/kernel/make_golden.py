"""Regenerate tests/kernel/golden/reference.npz with the REAL llama.cpp reference quantizer.

    .venv/bin/python tests/kernel/make_golden.py

Calls libggml's ggml_quantize_chunk (from llama-cpp-python, through pocketquant.llamacpp_ref) on
the edge-case rows and a few random rows of kernel_data.py, for every type with and without an
importance matrix, and stores inputs and reference bytes. test_kernel_golden.py checks that our
kernel reproduces them; it needs neither llama.cpp nor network.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kernel_data import conversion_values, edge_imatrix, edge_rows  # noqa: E402

from pocketquant.testing.llamacpp_ref import GGMLRef  # noqa: E402

# ggml type ids of the block types, and the conversions
BLOCK_TYPES = {"Q8_0": 8, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7,
               "Q2_K": 10, "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14}  # fmt: skip
CONVERSIONS = {"F16": 1, "BF16": 30}
OUT = Path(__file__).resolve().parent / "golden" / "reference.npz"


def _llama_cpp_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama_cpp_python")
    except PackageNotFoundError:
        return "unknown"


def main() -> None:
    ref = GGMLRef()
    names, x = edge_rows()
    rng = np.random.default_rng(99)
    rand = rng.standard_normal((6, x.shape[1])).astype(np.float32)
    rand[3] *= 0.02
    rand[4] = rng.standard_t(3, x.shape[1]) * 0.1
    rand[5] = rng.laplace(0, 1, x.shape[1])
    names = names + [f"random_{i}" for i in range(rand.shape[0])]
    x = np.concatenate([x, rand]).astype(np.float32)
    qw = edge_imatrix()
    qw0 = edge_imatrix(seed=8, with_zeros=True)
    conv = conversion_values()
    arrays: dict[str, np.ndarray] = {
        "x": x,
        "row_names": np.array(names),
        "imatrix": qw,
        "imatrix_zeros": qw0,
        "conv_x": conv,
        "source": np.array(f"ggml_quantize_chunk, llama-cpp-python {_llama_cpp_version()}"),
    }
    for name, t in BLOCK_TYPES.items():
        arrays[f"{name}/none"] = ref.quantize_chunk(t, x)
        arrays[f"{name}/imatrix"] = ref.quantize_chunk(t, x, qw)
        arrays[f"{name}/imatrix_zeros"] = ref.quantize_chunk(t, x, qw0)
    for name, t in CONVERSIONS.items():
        arrays[f"{name}/conv"] = ref.quantize_chunk(t, conv.reshape(1, -1))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    total = sum(v.nbytes for k, v in arrays.items() if "/" in k)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes on disk, {total} reference bytes, {len(names)} rows)")


if __name__ == "__main__":
    main()
