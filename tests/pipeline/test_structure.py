"""One table of GGUF type ids and block sizes (the gguf package's), which the compiled kernel's own
copy must match; docs free of paths from one machine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from gguf.constants import GGML_QUANT_SIZES

from pocketquant.gguf_file import type_size

REPO = Path(__file__).resolve().parents[2]


def test_kernel_block_table_matches_the_gguf_constants() -> None:
    quants = pytest.importorskip("pocketquant.quants")
    from pocketquant import _quants

    for t in quants.QUANTIZABLE:
        assert tuple(_quants.BLOCK_INFO[int(t)]) == GGML_QUANT_SIZES[t] == type_size(t), t.name
        assert quants.block_info(t) == GGML_QUANT_SIZES[t]


def test_no_python_module_keeps_its_own_block_size_table() -> None:
    """(256, 210) is Q6_K's (block, bytes), (32, 34) Q8_0's: a literal copy means a second table."""
    signature = re.compile(r"\(\s*256\s*,\s*210\s*\)|\(\s*32\s*,\s*34\s*\)")
    offenders = [
        str(p.relative_to(REPO))
        for p in sorted((REPO / "pocketquant").rglob("*.py"))
        if signature.search(p.read_text())
    ]
    assert offenders == [], f"block sizes belong to gguf_file.type_size: {offenders}"


def test_docs_hold_no_machine_specific_paths() -> None:
    machine = re.compile(r"(?<![\w.])/(?:work|root|home|tmp/sdist|opt/wheels)/")
    found = [
        f"{p.relative_to(REPO)}:{i}"
        for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if machine.search(line)
    ]
    assert found == [], found
