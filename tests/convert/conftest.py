"""Fixtures of the converter tests: tiny checkpoint variants and their GGUF conversions."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocketquant.convert import convert_hf_to_gguf
from pocketquant.testing.tiny_models import build_tiny_llama


@pytest.fixture(scope="session")
def llama_cpp():
    """The llama.cpp runtime; CI always has it (skip only where it is truly not installed)."""
    return pytest.importorskip("llama_cpp")


@pytest.fixture(scope="session")
def tiny_spm_dir(tmp_path_factory) -> Path:
    """Tiny Llama-2 style model: SentencePiece tokenizer, untied lm_head, no rope scaling, MHA."""
    return build_tiny_llama(
        tmp_path_factory.mktemp("tiny-spm") / "model",
        tokenizer="spm",
        rope_scaling=None,
        tie_word_embeddings=False,
        num_key_value_heads=4,
    )


@pytest.fixture(scope="session")
def tiny_untied_dir(tmp_path_factory) -> Path:
    """Tiny Llama-3-8B style model: BPE, untied lm_head, linear rope scaling, GQA."""
    return build_tiny_llama(
        tmp_path_factory.mktemp("tiny-untied") / "model",
        tie_word_embeddings=False,
        rope_scaling="linear",
        seed=7,
    )


@pytest.fixture(scope="session")
def tiny_gguf_f32(tiny_llama_dir: Path, tmp_path_factory) -> Path:
    return convert_hf_to_gguf(tiny_llama_dir, tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf", "f32")
