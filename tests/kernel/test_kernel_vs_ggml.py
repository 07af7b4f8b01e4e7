"""Differential test against llama.cpp itself: libggml's ggml_quantize_chunk via ctypes.

Random Gaussian, heavy-tailed (Student-t, Laplace) and outlier data, every type, with and without
an importance matrix, plus the F16/BF16 converters over a sweep of float32 bit patterns. Skips only
when llama-cpp-python is not installed (CI installs it).
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_data import conversion_values, edge_imatrix, edge_rows, random_sets

from pocketquant import quants
from pocketquant.testing import llamacpp_ref

pytestmark = pytest.mark.skipif(not llamacpp_ref.available(), reason="llama-cpp-python not installed")

BLOCK_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
SETS = random_sets(n_rows=24, width=4096)


@pytest.fixture(scope="module")
def ref():
    return llamacpp_ref.GGMLRef()


def _imatrix(width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # llama-imatrix values are mean squared activations: positive, heavy-tailed across columns
    return (rng.lognormal(0.0, 1.5, width) * 1e-2).astype(np.float32)


def _assert_same(got: np.ndarray, want: np.ndarray, label: str, row_bytes: int) -> None:
    assert got.shape == want.shape, label
    diff = np.flatnonzero(got.reshape(-1) != want.reshape(-1))
    assert diff.size == 0, (
        f"{label}: {diff.size} of {want.size} bytes differ, first at row {diff[0] // row_bytes}, "
        f"byte {diff[0] % row_bytes}"
    )


@pytest.mark.parametrize("with_imatrix", [False, True], ids=["ref", "imatrix"])
@pytest.mark.parametrize("qtype", BLOCK_TYPES)
def test_quantize_matches_ggml(ref, qtype, with_imatrix):
    t = quants.parse_qtype(qtype)
    compared = 0
    for i, (name, x) in enumerate(SETS.items()):
        qw = _imatrix(x.shape[1], i) if with_imatrix else None
        want = ref.quantize_chunk(int(t), x, qw)
        got = quants.quantize(x, t, imatrix=qw, threads=2)
        _assert_same(got, want, f"{qtype} {name} imatrix={with_imatrix}", want.shape[1])
        compared += want.size
    assert compared > 0


@pytest.mark.parametrize("qtype", ["F16", "BF16", "F32"])
def test_conversions_match_ggml(ref, qtype):
    t = quants.parse_qtype(qtype)
    x = conversion_values()
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 1 << 32, 1 << 18, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([x, bits.view(np.float32)]).reshape(1, -1)
    want = ref.quantize_chunk(int(t), x)
    got = quants.quantize(x, t)
    _assert_same(got, want, qtype, want.shape[1])


@pytest.mark.parametrize("with_imatrix", [False, True], ids=["ref", "imatrix"])
@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"])
def test_legacy_rows_with_odd_block_counts(ref, qtype, with_imatrix):
    # 13 blocks per row: not a multiple of the 8 blocks the kernel fits together
    t = quants.parse_qtype(qtype)
    x = random_sets(n_rows=16, width=32 * 13, seed=77)["laplace"]
    qw = _imatrix(x.shape[1], 3) if with_imatrix else None
    want = ref.quantize_chunk(int(t), x, qw)
    _assert_same(quants.quantize(x, t, imatrix=qw), want, f"{qtype} width 416", want.shape[1])


@pytest.mark.parametrize("qtype", BLOCK_TYPES)
def test_edge_rows_match_ggml(ref, qtype):
    # the golden edge cases again, against whatever llama.cpp is installed
    t = quants.parse_qtype(qtype)
    _, x = edge_rows()
    for qw in (None, edge_imatrix(), edge_imatrix(seed=3, with_zeros=True)):
        want = ref.quantize_chunk(int(t), x, qw)
        _assert_same(quants.quantize(x, t, imatrix=qw), want, f"{qtype} edge rows", want.shape[1])
