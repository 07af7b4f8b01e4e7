"""Deterministic test inputs for the kernel tests and tests/kernel/make_golden.py.

edge_rows(): one 512-wide row (two 256 super-blocks, sixteen 32-blocks) per edge case, chosen to
hit the corners of the reference algorithms: zero and constant blocks, signed zeros, spikes,
tiny (fp16-underflow) and large scales, exact ties, alternating signs and ramps.
"""

from __future__ import annotations

import numpy as np

WIDTH = 512


def _row(values) -> np.ndarray:
    r = np.asarray(values, dtype=np.float32).reshape(-1)
    assert r.size == WIDTH
    return r


def edge_rows() -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(20251123)
    g = rng.standard_normal(WIDTH).astype(np.float32)
    cases: dict[str, np.ndarray] = {}
    cases["zeros"] = np.zeros(WIDTH)
    cases["neg_zeros"] = np.full(WIDTH, -0.0)
    signed = np.zeros(WIDTH)
    signed[1::2] = -0.0
    cases["mixed_signed_zeros"] = signed
    neg_first = np.zeros(WIDTH)
    neg_first[::3] = -0.0
    neg_first[::7] = 1e-3
    cases["zeros_then_small"] = neg_first
    cases["const_pos"] = np.full(WIDTH, 1.0)
    cases["const_neg"] = np.full(WIDTH, -0.5)
    cases["const_tiny"] = np.full(WIDTH, 3e-8)
    spike = np.zeros(WIDTH)
    spike[[5, 40, 300, 511]] = [5.0, -7.0, 1e3, 0.25]
    cases["spikes_in_zeros"] = spike
    spike2 = g * 0.01
    spike2[[0, 77, 256, 400]] = [-30.0, 30.0, 12.0, -12.0]
    cases["spikes_in_noise"] = spike2
    cases["scale_1e-9"] = g * 1e-9
    cases["scale_1e-6"] = g * 1e-6
    cases["scale_1e-5"] = g * 1e-5
    cases["scale_1e3"] = g * 1e3
    cases["scale_6e4"] = g * 2e4  # near the fp16 range limit
    cases["scale_1e18"] = g * 1e18  # squares overflow float32: inf/NaN inside the fits
    cases["scale_1e-20"] = g * 1e-20
    cases["subnormal_1e-40"] = g * 1e-40
    cases["near_float_max"] = np.where(np.arange(WIDTH) % 5 == 0, 3e38, -3e38)
    cases["ties_halves"] = rng.integers(-16, 17, WIDTH) / 2.0
    cases["ties_quarters"] = rng.integers(-8, 9, WIDTH) / 4.0
    cases["ties_small_int"] = rng.integers(-4, 4, WIDTH).astype(np.float64)
    cases["alternating"] = np.where(np.arange(WIDTH) % 2 == 0, 1.0, -1.0)
    cases["alternating_scaled"] = np.where(np.arange(WIDTH) % 2 == 0, 3.0, -1.0)
    cases["ramp"] = np.linspace(-1.0, 1.0, WIDTH)
    cases["ramp_pos"] = np.linspace(0.0, 2.0, WIDTH)
    cases["ramp_block"] = np.tile(np.arange(32, dtype=np.float64), WIDTH // 32) - 15.5
    cases["all_pos"] = np.abs(g) + 0.1
    cases["all_neg"] = -np.abs(g) - 0.1
    mixed = g.copy()
    mixed[:256] *= 1e-4  # first super-block tiny, second normal: scale disparity
    cases["scale_disparity"] = mixed
    sub = g.copy()
    sub[32:64] = 0.0
    sub[100:116] = 0.0
    sub[300:332] = 4.0
    cases["zero_and_const_subblocks"] = sub
    cases["fp16_rounded"] = g.astype(np.float16).astype(np.float32)
    cases["bf16_rounded"] = (g.view(np.uint32) & 0xFFFF0000).view(np.float32)
    cases["max_first_occurrence"] = np.tile(np.array([2.0, -2.0, 1.0, -1.0] * 8), WIDTH // 32)
    cases["neg_max_first"] = np.tile(np.array([-2.0, 2.0, 0.5, -0.5] * 8), WIDTH // 32)
    for i in range(4):
        cases[f"gauss_{i}"] = rng.standard_normal(WIDTH)
    cases["student_t3"] = rng.standard_t(3, WIDTH)
    cases["laplace"] = rng.laplace(0.0, 1.0, WIDTH)
    names = list(cases)
    return names, np.stack([_row(cases[k]) for k in names])


def edge_imatrix(seed: int = 7, with_zeros: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    qw = (rng.random(WIDTH) * 4.0 + 0.01).astype(np.float32)
    qw[::37] *= 50.0  # a few dominant columns
    if with_zeros:
        qw[3::41] = 0.0
    return qw


def conversion_values() -> np.ndarray:
    """float32 values for the F16/BF16 converters: specials plus a strided sweep of bit patterns."""
    specials = np.array(
        [
            0x00000000,
            0x80000000,
            0x7F800000,
            0xFF800000,
            0x7FC00000,
            0xFFC00000,
            0x7F800001,
            0xFF812345,
            0x7FBFFFFF,
            0x00000001,
            0x807FFFFF,
            0x33000000,
            0x33000001,
            0xB3000000,
            0x33800000,
            0x387FFFFF,
            0x38800000,
            0x477FEFFF,
            0x477FF000,
            0x477FE000,
            0xC77FF000,
            0x3F808000,
            0x3F818000,
            0x3F800FFF,
            0x3F801000,
            0x3F803000,
            0x7F7FFFFF,
            0xFF7FFFFF,
            0x00800000,
            0x3F7FFFFF,
        ],
        dtype=np.uint32,
    )
    sweep = (np.arange(1 << 16, dtype=np.uint64) * 65521 + 12345) % (1 << 32)
    return np.concatenate([specials, sweep.astype(np.uint32)]).view(np.float32)


def random_sets(n_rows: int = 32, width: int = 4096, seed: int = 1234) -> dict[str, np.ndarray]:
    """Gaussian, heavy-tailed (Student-t, Laplace) and outlier data for the differential test."""
    rng = np.random.default_rng(seed)
    gauss = rng.standard_normal((n_rows, width))
    outl = rng.standard_normal((n_rows, width)) * 0.02
    mask = rng.random((n_rows, width)) < 0.002
    outl[mask] *= rng.choice([-40.0, 40.0, 200.0], size=int(mask.sum()))
    sets = {
        "gaussian": gauss,
        "gaussian_fp16": gauss.astype(np.float16),
        "student_t2": rng.standard_t(2, (n_rows, width)) * 0.05,
        "laplace": rng.laplace(0.0, 0.03, (n_rows, width)),
        "outliers": outl,
    }
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sets.items()}
