"""Fixtures shared by several test areas. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def wikitext2_path() -> Path:
    """WikiText-2 raw test split from ../shared (present in CI); tests that need it skip without it."""
    path = SHARED_DATA / "wikitext-2-raw" / "wiki.test.raw"
    if not path.exists():
        pytest.skip(f"{path} not present (../shared is only on developer and CI machines)")
    return path


@pytest.fixture(scope="session")
def smollm2_hf_dir(tmp_path_factory) -> Path:
    """The embedded SmolLM2-135M-Instruct, acquired as a float32 HF checkpoint (30-60 s on 2 cores)."""
    from pocketquant.models import ModelSource, acquire_model

    return acquire_model(
        ModelSource.from_config(name="smollm2-135m"), tmp_path_factory.mktemp("smollm2") / "hf"
    )


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A tiny random Llama (2 layers, hidden 64, GQA 4/2 heads, llama3 rope scaling, tied embeddings,
    a 512-token byte-level BPE tokenizer with Llama 3's pre-tokenizer); built in about a second."""
    from pocketquant.testing.tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "hf")
