"""pocketquant.quants: the contract other areas rely on, dequantization against gguf-py's NumPy
decoders, bad-input errors, and identical bytes at any thread count."""

from __future__ import annotations

import multiprocessing

import gguf
import numpy as np
import pytest
from gguf.constants import GGML_QUANT_SIZES

from pocketquant import quants
from pocketquant.errors import PocketquantError
from pocketquant.quants import QType

BLOCK_TYPES = [QType.Q8_0, QType.Q4_0, QType.Q4_1, QType.Q5_0, QType.Q5_1,
               QType.Q2_K, QType.Q3_K, QType.Q4_K, QType.Q5_K, QType.Q6_K]  # fmt: skip
ALL_TYPES = BLOCK_TYPES + [QType.F32, QType.F16, QType.BF16]


def _data(rows: int = 12, width: int = 1024, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, width)).astype(np.float32)
    x[rng.random(x.shape) < 0.003] *= 20
    return x


def test_quantizable_set_and_block_info_agree_with_gguf():
    assert quants.QUANTIZABLE == frozenset(ALL_TYPES)
    for t in ALL_TYPES:
        assert quants.block_info(t) == GGML_QUANT_SIZES[t]
        blck, size = GGML_QUANT_SIZES[t]
        assert quants.row_nbytes(t, 4096) == 4096 // blck * size


@pytest.mark.parametrize("spelling", ["q4_k", "Q4_K", " q4_K ", 12, QType.Q4_K, np.int32(12)])
def test_type_spellings(spelling):
    assert quants.parse_qtype(spelling) is QType.Q4_K


@pytest.mark.parametrize("qtype", BLOCK_TYPES, ids=lambda t: t.name)
def test_dequantize_matches_gguf_numpy(qtype):
    x = _data()
    q = quants.quantize(x, qtype)
    ours = quants.dequantize(q, qtype, x.shape[1])
    theirs = gguf.quants.dequantize(q, qtype)
    assert ours.shape == theirs.shape == x.shape
    assert ours.dtype == np.float32
    # same float32 operations as gguf-py (and ggml's dequantize_row_*): bit-identical floats
    np.testing.assert_array_equal(ours, theirs)
    # and the round trip is a faithful approximation of the input
    rel = np.linalg.norm(ours - x) / np.linalg.norm(x)
    assert rel < {QType.Q2_K: 0.45, QType.Q3_K: 0.25}.get(qtype, 0.15), rel


@pytest.mark.parametrize("qtype", [QType.F16, QType.BF16, QType.F32], ids=lambda t: t.name)
def test_conversion_round_trip(qtype):
    x = _data(4, 256)
    q = quants.quantize(x, qtype)
    back = quants.dequantize(q, qtype, x.shape[1])
    if qtype == QType.F16:
        np.testing.assert_array_equal(q.view(np.float16), x.astype(np.float16))
        np.testing.assert_array_equal(back, x.astype(np.float16).astype(np.float32))
    elif qtype == QType.BF16:
        np.testing.assert_array_equal(back, gguf.quants.dequantize(q, qtype))
    else:
        np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_identical_bytes_at_any_thread_count(qtype):
    x = _data(rows=37, width=512, seed=11)
    qw = np.random.default_rng(1).random(512).astype(np.float32) + 0.1
    outs = [quants.quantize(x, qtype, imatrix=qw, threads=n) for n in (1, 2, 3)]
    assert all(np.array_equal(outs[0], o) for o in outs[1:])
    deq = [quants.dequantize(outs[0], qtype, 512, threads=n) for n in (1, 3)]
    assert np.array_equal(deq[0], deq[1])


def test_leading_dimensions_and_flat_buffers():
    x = _data(6, 512).reshape(2, 3, 512)
    q = quants.quantize(x, "q6_k")
    assert q.shape == (2, 3, quants.row_nbytes("q6_k", 512))
    assert np.array_equal(q.reshape(6, -1), quants.quantize(x.reshape(6, 512), "q6_k"))
    assert quants.dequantize(q, "q6_k", 512).shape == (2, 3, 512)
    assert quants.dequantize(q.reshape(-1), "q6_k", 512).shape == (6, 512)
    # typed views of raw tensor data keep their rows
    h = x.reshape(6, 512).astype(np.float16)
    np.testing.assert_array_equal(quants.dequantize(h[:1], "f16", 512), h[:1].astype(np.float32))
    # non-contiguous and float64 input are converted, same bytes
    xt = np.asfortranarray(x.reshape(6, 512)).astype(np.float64)
    assert np.array_equal(quants.quantize(xt, "q4_0"), quants.quantize(x.reshape(6, 512), "q4_0"))


def test_imatrix_changes_result_and_is_ignored_for_q8_0():
    x = _data(4, 512)
    qw = np.linspace(0.01, 10, 512, dtype=np.float32)
    assert not np.array_equal(quants.quantize(x, "q4_k", imatrix=qw), quants.quantize(x, "q4_k"))
    assert np.array_equal(quants.quantize(x, "q8_0", imatrix=qw), quants.quantize(x, "q8_0"))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: quants.quantize(np.zeros((2, 100), np.float32), "q4_0"),
            "100 is not a multiple of the Q4_0 block",
        ),
        (
            lambda: quants.quantize(np.zeros((2, 512), np.float32), "q4_k", imatrix=np.ones(256)),
            r"imatrix.*\(512,\)",
        ),
        (lambda: quants.quantize(np.zeros((2, 512), np.float32), "iq2_xxs"), "IQ2_XXS is not supported"),
        (lambda: quants.quantize(np.zeros((2, 512), np.float32), "q9_k"), "unknown tensor type 'q9_k'"),
        (lambda: quants.quantize(np.zeros((2, 512), np.int32), "q8_0"), "floating-point"),
        (lambda: quants.dequantize(np.zeros(100, np.uint8), "q8_0", 32), "not a whole number of Q8_0 rows"),
        (lambda: quants.quantize(np.zeros((2, 512), np.float32), "q8_0", threads=0), "threads"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(call, match):
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert isinstance(err.value, PocketquantError)


def test_count_nonfinite():
    x = np.zeros(300_001, np.float32)
    assert quants.count_nonfinite(x) == 0
    x[[0, 17, 200_000, 300_000]] = [np.nan, np.inf, -np.inf, np.nan]
    x[5] = np.finfo(np.float32).max
    assert quants.count_nonfinite(x, threads=2) == 4
    assert quants.count_nonfinite(x.reshape(1, -1)[:, ::3]) == int((~np.isfinite(x[::3])).sum())
    h = np.array([1.0, np.inf, np.nan, 65504.0], dtype=np.float16)
    assert quants.count_nonfinite(h) == 2


def _child_quantize(x, conn):
    conn.send(quants.quantize(x, "q4_k", threads=2).tobytes())


def test_forked_child_does_not_hang_after_parent_used_threads():
    # libgomp is not fork-safe; the kernel must fall back to one thread in a forked child
    x = _data(8, 512)
    want = quants.quantize(x, "q4_k", threads=2).tobytes()
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_child_quantize, args=(x, child))
    p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
        pytest.fail("kernel hung in a forked child")
    assert p.exitcode == 0
    assert parent.recv() == want


@pytest.mark.parametrize("qtype", ["q4_k", "q6_k", "q4_1", "f16"])
def test_row_chunks_concatenate_to_the_same_bytes(qtype):
    # callers may stream a big tensor through the kernel a few rows at a time
    x = _data(rows=29, width=512, seed=4)
    qw = np.random.default_rng(2).random(512).astype(np.float32) + 0.5
    whole = quants.quantize(x, qtype, imatrix=qw)
    parts = [quants.quantize(x[a : a + 5], qtype, imatrix=qw) for a in range(0, 29, 5)]
    assert np.array_equal(np.concatenate(parts), whole)
