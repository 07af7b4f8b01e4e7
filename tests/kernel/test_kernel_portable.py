"""The portable (plain-C) SIMD path of kernels/pq_simd.h gives the same bytes as the SSE2 build.

On aarch64 the kernel compiles pq_simd.h's plain-C definitions of the SSE2 intrinsics instead of
<emmintrin.h>. Here, on x86-64, we check that path two ways:
- every intrinsic against the real SSE2 instruction on special values and random bit patterns
  (tests/kernel/simd_check.c, a small C program);
- the whole kernel: setup.py builds a copy with POCKETQUANT_PORTABLE_SIMD=1 in a temp dir, a
  subprocess quantizes the golden rows, random data, odd widths and non-finite rows with every
  type (with and without imatrix) and the F16/BF16 converters, and every byte must equal this
  process's normal (SSE2) build and, for the golden rows, the committed llama.cpp bytes.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from kernel_data import conversion_values, random_sets

from pocketquant import _quants, quants

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden" / "reference.npz"
BLOCK_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
ON_X86_64 = platform.machine().lower() in ("x86_64", "amd64")

pytestmark = pytest.mark.skipif(not ON_X86_64, reason="compares against SSE2, which needs x86-64")


def _compiler() -> str | None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) or shutil.which("cc")


def test_normal_build_uses_sse2():
    # on x86-64 the installed kernel must be the SSE2 build (the portable one is only for tests)
    assert _quants.SIMD_BACKEND == "sse2"


def test_portable_intrinsics_match_sse2(tmp_path):
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler")
    exe = tmp_path / "simd_check"
    subprocess.run(
        [cc, "-O2", "-ffp-contract=off", "-I", str(ROOT / "kernels"), str(HERE / "simd_check.c"),
         "-o", str(exe)],
        check=True, timeout=120,
    )  # fmt: skip
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    lines = [ln.rsplit(" ", 2) for ln in proc.stdout.splitlines()]
    bad = [f"{name}: {nbad} of {n}" for name, n, nbad in lines if int(nbad) != 0]
    assert proc.returncode == 0 and not bad, proc.stdout + proc.stderr
    # every intrinsic the kernel declares (lanes.pxi's extern block) is exercised
    declared = set(re.findall(r"^\s+\w+\*? _mm_(\w+)\(", (ROOT / "kernels" / "lanes.pxi").read_text(), re.M))
    checked = {name.split("(")[0] for name, _, _ in lines}
    checked |= {"loadu_ps", "storeu_ps", "loadu_si128", "storeu_si128"}  # every case goes through them
    assert declared and declared <= checked, f"not checked: {sorted(declared - checked)}"
    assert all(int(n) == 200000 for _, n, _ in lines)


def _inputs() -> dict[str, np.ndarray]:
    """Rows (name -> 2-D float32) and imatrices (name 'qw:...' -> 1-D float32) to compare."""
    with np.load(GOLDEN) as z:
        golden = {k: z[k] for k in ("x", "imatrix", "imatrix_zeros", "conv_x")}
    rng = np.random.default_rng(99)
    out = {"golden": golden["x"], "qw:golden": golden["imatrix"], "qw:golden_zeros": golden["imatrix_zeros"]}
    for name, x in random_sets(n_rows=6, width=4096, seed=4321).items():
        out[name] = x
    out["odd_416"] = random_sets(n_rows=8, width=32 * 13, seed=77)["laplace"]  # remainder blocks
    out["odd_768"] = random_sets(n_rows=8, width=256 * 3, seed=78)["student_t2"]
    # non-finite and extreme rows: unspecified bytes vs llama.cpp, but the two builds must agree
    nasty = rng.standard_normal((8, 1024)).astype(np.float32)
    nasty[0, ::17] = np.inf
    nasty[1, ::13] = -np.inf
    nasty[2, ::11] = np.nan
    with np.errstate(over="ignore"):
        nasty[3] *= np.float32(3e38)  # huge and overflowed (inf) values
    nasty[4] *= np.float32(1e-40)
    nasty[5, :512] = 0.0
    nasty[5, 512:] = -0.0
    nasty[6] = np.where(rng.random(1024) < 0.5, np.float32(1e30), np.float32(-1e-30))
    nasty[7] = rng.integers(0, 1 << 32, 1024, dtype=np.uint64).astype(np.uint32).view(np.float32)
    out["nasty"] = nasty
    bits = rng.integers(0, 1 << 32, 1 << 17, dtype=np.uint64).astype(np.uint32).view(np.float32)
    out["conv"] = np.concatenate([golden["conv_x"].reshape(-1), conversion_values(), bits]).reshape(1, -1)
    for w in (4096, 32 * 13, 256 * 3, 1024):
        out[f"qw:rand_{w}"] = (rng.lognormal(0.0, 1.5, w) * 1e-2).astype(np.float32)
    return out


def _cases(inputs: dict[str, np.ndarray]) -> list[tuple[str, str, str | None]]:
    """(input name, type, imatrix name or None) for every comparison."""
    cases: list[tuple[str, str, str | None]] = []
    for name, x in inputs.items():
        if name.startswith("qw:") or name == "conv":
            continue
        qws = ["qw:golden", "qw:golden_zeros"] if name == "golden" else [f"qw:rand_{x.shape[1]}"]
        for t in BLOCK_TYPES:
            if x.shape[1] % quants.block_info(t)[0]:
                continue  # 416 wide: legacy 32-blocks only
            cases += [(name, t, None)] + [(name, t, q) for q in qws]
    cases += [("conv", t, None) for t in ("F16", "BF16", "F32")]
    cases += [("nasty", t, None) for t in ("F16", "BF16")]
    return cases


# Run in the portable build's directory: quantize every case, save the bytes.
_CHILD = r"""
import sys
import numpy as np
from pocketquant import _quants, quants
assert _quants.__file__.startswith(sys.argv[1]), _quants.__file__
assert _quants.SIMD_BACKEND == "portable", _quants.SIMD_BACKEND
with np.load(sys.argv[2]) as z:
    data = {k: z[k] for k in z.files}
out = {}
for i, key in enumerate(data["cases"].tolist()):
    name, qtype, qw = key.split("|")
    out[str(i)] = quants.quantize(data[name], qtype, imatrix=data[qw] if qw else None, threads=1)
np.savez(sys.argv[3], **out)
print("portable cases:", len(out))
"""


@pytest.fixture(scope="module")
def portable_build(tmp_path_factory) -> Path:
    """A copy of the package built with POCKETQUANT_PORTABLE_SIMD=1 (about 30-60 s of compiling)."""
    if _compiler() is None:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("portable")
    # copy2 keeps mtimes: an up-to-date kernels/quants.c is reused, saving the Cython step
    shutil.copytree(ROOT / "kernels", d / "kernels", ignore=shutil.ignore_patterns("*.html"))
    skip = shutil.ignore_patterns("*.so", "__pycache__")  # the copy must import its own build
    shutil.copytree(ROOT / "pocketquant", d / "pocketquant", ignore=skip)
    for f in ("setup.py", "pyproject.toml"):
        shutil.copy2(ROOT / f, d / f)
    env = dict(os.environ, POCKETQUANT_PORTABLE_SIMD="1")
    env.pop("POCKETQUANT_NATIVE", None)
    proc = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=d, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "-DPQ_PORTABLE_SIMD=1" in proc.stdout, proc.stdout[-3000:]
    return d


@pytest.mark.slow
def test_portable_build_matches_sse2_build(portable_build, tmp_path):
    inputs = _inputs()
    cases = _cases(inputs)
    keys = [f"{n}|{t}|{q or ''}" for n, t, q in cases]
    np.savez(tmp_path / "in.npz", cases=np.array(keys), **inputs)
    env = dict(os.environ, PYTHONPATH=str(portable_build))
    args = [str(portable_build), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")]
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, *args],
        cwd=portable_build, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with np.load(GOLDEN) as z:
        golden = {k: z[k] for k in z.files}
    compared = 0
    golden_checked = 0
    mismatches = []
    with np.load(tmp_path / "out.npz") as got:
        for i, (name, qtype, qw) in enumerate(cases):
            want = quants.quantize(inputs[name], qtype, imatrix=inputs[qw] if qw else None, threads=1)
            portable = got[str(i)]
            compared += want.size
            if portable.shape != want.shape or not np.array_equal(portable, want):
                nbad = int(np.count_nonzero(portable != want)) if portable.shape == want.shape else -1
                mismatches.append(f"{name} {qtype} imatrix={qw}: {nbad} bytes differ")
            if name == "golden":
                variant = {None: "none", "qw:golden": "imatrix", "qw:golden_zeros": "imatrix_zeros"}[qw]
                assert np.array_equal(portable, golden[f"{qtype}/{variant}"]), f"{qtype}/{variant} vs golden"
                golden_checked += 1
    assert not mismatches, "\n".join(mismatches)
    assert golden_checked == 30 and len(cases) >= 150
    print(f"portable == sse2: {len(cases)} cases, {compared} bytes; {golden_checked} golden sets")
