"""Fuzz `pocketquant verify` with damaged packages, Info-ZIP `unzip` as the peer.

Every single-bit flip of every structural byte (local headers, central directory, end records) of
a real package, plus random byte values at random structural offsets (fixed seed), for the package
as the builder writes it and for the same package in ZIP64 form. For each mutated zip:
- verify never crashes: it exits 0, or 2 with one error line (never a traceback, never status 1);
- whatever verify accepts, `unzip` extracts exactly as it extracts the original (same names, bytes,
  file types, modes and times, exit status 0). So every flip that changes what unzip extracts, or
  makes `unzip` fail, is refused.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from pocketquant.cli import build_parser, main
from pocketquant.failures import run_reporting
from pocketquant.testing.hostile_inputs import structural_offsets

SEED = 20240612
RANDOM_CASES = 800  # random byte values, per package form


def _extract(zip_path: Path, dest: Path) -> tuple[int, dict[str, tuple]]:
    """unzip's exit status and what it extracted: {name: (type, mode, mtime, bytes)}."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir()
    p = subprocess.run(
        ["unzip", "-qq", "-o", str(zip_path), "-d", str(dest)], capture_output=True, timeout=60
    )
    files = {}
    for f in sorted(dest.rglob("*")):
        st = f.lstat()
        content = os.readlink(f) if f.is_symlink() else f.read_bytes() if f.is_file() else None
        files[str(f.relative_to(dest))] = (
            stat.S_IFMT(st.st_mode),
            stat.S_IMODE(st.st_mode),
            int(st.st_mtime),
            content,
        )
    return p.returncode, files


@pytest.fixture(scope="module")
def forms(pristine, tmp_path_factory) -> dict[str, Path]:
    """The pristine package, and the same package rebuilt in ZIP64 form (zipfile writes ZIP64
    records for anything above its limit, so a low limit gives every ZIP64 structure)."""
    from pocketquant.package import build_package

    root = tmp_path_factory.mktemp("zip-forms")
    plain = root / "plain.zip"
    shutil.copyfile(pristine.package, plain)
    z64 = root / "zip64.zip"
    limit = zipfile.ZIP64_LIMIT
    zipfile.ZIP64_LIMIT = 100
    try:
        build_package(
            pristine.gguf, z64, model_name="tiny", scheme="f32", params={}, num_ctx=256, progress=False
        )
    finally:
        zipfile.ZIP64_LIMIT = limit
    return {"plain": plain, "zip64": z64}


def _verifier(path: Path, capsys):  # noqa: ANN202
    """`pocketquant verify PATH --no-load --quiet` as main() runs it, with the command line parsed
    once (building the parser costs more than verifying a tiny package)."""
    args = build_parser().parse_args(["verify", str(path), "--no-load", "--quiet"])

    def verify() -> tuple[int, str]:
        status = run_reporting("pocketquant", lambda: args.func(args))
        return status, capsys.readouterr().err

    return verify


@pytest.mark.parametrize("form", ["plain", "zip64"])
def test_pristine_forms_verify_and_unzip(forms, form, capsys, tmp_path):
    status = main(["verify", str(forms[form]), "--no-load", "--quiet"])
    assert status == 0, capsys.readouterr().err
    if shutil.which("unzip"):
        assert _extract(forms[form], tmp_path / "x")[0] == 0
    if form == "zip64":
        data = forms[form].read_bytes()
        assert b"PK\x06\x06" in data and b"PK\x06\x07" in data  # ZIP64 end record and locator


@pytest.mark.parametrize("form", ["plain", "zip64"])
def test_structural_mutations(forms, form, capsys, tmp_path):
    if not shutil.which("unzip"):
        pytest.skip("Info-ZIP unzip is not installed (scripts/setup.sh installs it)")
    original = forms[form]
    work = tmp_path / "m.zip"
    shutil.copyfile(original, work)
    data = original.read_bytes()
    offsets = structural_offsets(original)
    reference = _extract(original, tmp_path / "ref")
    assert reference[0] == 0 and len(reference[1]) == 4

    rng = random.Random(f"{SEED}-{form}")
    cases = [(off, data[off] ^ (1 << bit)) for off in offsets for bit in range(8)]
    cases += [(off, v) for off, v in ((rng.choice(offsets), rng.randrange(256)) for _ in range(RANDOM_CASES))]
    cases = [(off, v) for off, v in cases if v != data[off]]

    verify = _verifier(work, capsys)
    crashed, accepted, lied = [], 0, []
    with open(work, "r+b") as f:
        for off, value in cases:
            f.seek(off)
            f.write(bytes([value]))
            f.flush()
            status, err = verify()
            errors = [line for line in err.splitlines() if line.startswith("pocketquant: error: ")]
            if status not in (0, 2) or "Traceback" in err or (status == 2 and len(errors) != 1):
                crashed.append((off, value, status, err[-300:]))
            elif status == 0:
                accepted += 1
                got = _extract(work, tmp_path / "got")
                if got != reference:
                    lied.append((off, value, got[0], sorted(set(got[1]) ^ set(reference[1]))))
            f.seek(off)
            f.write(bytes([data[off]]))
    refused = len(cases) - accepted - len(crashed)
    print(f"{form}: {len(cases)} mutations: {refused} refused, {accepted} accepted (unzip: identical)")
    assert len(cases) >= 3000
    assert crashed == [], crashed[:5]
    assert lied == [], lied[:5]
