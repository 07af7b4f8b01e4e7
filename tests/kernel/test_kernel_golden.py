"""Our kernel reproduces the committed llama.cpp reference bytes (tests/kernel/golden/).

The golden file was written by make_golden.py from libggml's ggml_quantize_chunk; this test needs
no llama.cpp. Rows cover the edge cases of kernel_data.edge_rows plus random rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pocketquant import quants

GOLDEN = Path(__file__).resolve().parent / "golden" / "reference.npz"
BLOCK_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as z:
        return {k: z[k] for k in z.files}


def _explain(name: str, got: np.ndarray, want: np.ndarray, rows: np.ndarray) -> str:
    bad = np.argwhere(got != want)
    r, c = bad[0]
    return (
        f"{name}: {len(bad)} of {want.size} bytes differ; first at row {r} ({rows[r]}), byte {c}: "
        f"got {got[r, c]:#04x}, want {want[r, c]:#04x}"
    )


@pytest.mark.parametrize("variant", ["none", "imatrix", "imatrix_zeros"])
@pytest.mark.parametrize("qtype", BLOCK_TYPES)
def test_block_types_match_reference(golden, qtype, variant):
    x = golden["x"]
    want = golden[f"{qtype}/{variant}"]
    qw = None if variant == "none" else golden[variant]
    got = quants.quantize(x, qtype, imatrix=qw, threads=2)
    assert got.shape == want.shape
    if not np.array_equal(got, want):
        pytest.fail(_explain(f"{qtype}/{variant}", got, want, golden["row_names"]))


@pytest.mark.parametrize("qtype", ["F16", "BF16"])
def test_conversions_match_reference(golden, qtype):
    x = golden["conv_x"]
    want = golden[f"{qtype}/conv"].reshape(-1)
    got = quants.quantize(x, qtype).reshape(-1)
    bad = np.flatnonzero(got.view(np.uint16) != want.view(np.uint16))
    assert bad.size == 0, (
        f"{qtype}: {bad.size} values differ; first input bits {x.view(np.uint32)[bad[0]]:#010x}: "
        f"got {got.view(np.uint16)[bad[0]]:#06x}, want {want.view(np.uint16)[bad[0]]:#06x}"
    )


def test_golden_covers_the_edge_cases(golden):
    names = set(golden["row_names"].tolist())
    for case in ["zeros", "neg_zeros", "mixed_signed_zeros", "const_pos", "spikes_in_zeros",
                 "scale_1e-9", "scale_1e-6", "scale_1e3", "ties_halves", "alternating", "ramp"]:  # fmt: skip
        assert case in names
    # the all-zero Q4_0 block stores d = -0.0 (0x8000): a signed-zero corner the kernel must keep
    row = list(golden["row_names"]).index("zeros")
    assert golden["Q4_0/none"][row, :2].tolist() == [0x00, 0x80]
