"""Fixtures of the hostile-input tests: pristine tiny inputs for every command (a tiny Llama
checkpoint, its F32 GGUF, a package of it), built once, and a per-test sandbox that copies them,
runs a command in-process (or as a subprocess) and can mount a full or read-only disk."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from hostile_sandbox import Sandbox


@dataclass(frozen=True)
class Pristine:
    hf: Path  # tiny Llama checkpoint directory
    gguf: Path  # its F32 GGUF (with tokenizer and chat template)
    package: Path  # a package of that GGUF


@pytest.fixture(scope="session")
def pristine(tiny_llama_dir: Path, tmp_path_factory) -> Pristine:
    from pocketquant.convert import convert_hf_to_gguf
    from pocketquant.package import build_package

    root = tmp_path_factory.mktemp("hostile-pristine")
    hf = root / "hf"
    shutil.copytree(tiny_llama_dir, hf)
    gguf = convert_hf_to_gguf(hf, root / "tiny.gguf", "f32", name="tiny", progress=False)
    package = build_package(
        gguf, root / "tiny.zip", model_name="tiny", scheme="f32", params={}, num_ctx=256, progress=False
    )
    for p in (gguf, package):
        p.chmod(0o444)  # tests copy them; nothing may write here
    return Pristine(hf, gguf, package)


@pytest.fixture
def sandbox(pristine: Pristine, tmp_path: Path, monkeypatch, capsys) -> Sandbox:
    sb = Sandbox(tmp_path / "sb", pristine, monkeypatch, capsys)
    yield sb
    sb.unmount_all()
