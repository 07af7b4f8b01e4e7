"""Fixtures of the evaluation tests: the embedded SmolLM2 GGUF (Q4_1), its F32 GGUF made by
llama.cpp itself, and the same weights in transformers. Opened once per session (2 shared cores)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    from pocketquant.models import embedded_gguf_path

    return embedded_gguf_path()


@pytest.fixture(scope="session")
def llama_cpp_module():
    return pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")


@pytest.fixture(scope="session")
def smollm2_f32_gguf(tmp_path_factory, smollm2_gguf, llama_cpp_module) -> Path:
    """llama.cpp's own F32 dequantization of the embedded Q4_1 file (what DESIGN.md's 26.91 used)."""
    ll = llama_cpp_module
    out = tmp_path_factory.mktemp("smollm2-f32") / "smollm2-f32.gguf"
    params = ll.llama_model_quantize_default_params()
    params.ftype = ll.LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    params.nthread = 2
    rc = ll.llama_model_quantize(str(smollm2_gguf).encode(), str(out).encode(), params)
    assert rc == 0 and out.is_file()
    return out


@pytest.fixture(scope="session")
def smollm2_llama_q41(smollm2_gguf, llama_cpp_module):
    from pocketquant.evaluate.llamacpp import LlamaCppModel

    with LlamaCppModel(smollm2_gguf, n_ctx=512, threads=2) as model:
        yield model


@pytest.fixture(scope="session")
def smollm2_llama_f32(smollm2_f32_gguf):
    from pocketquant.evaluate.llamacpp import LlamaCppModel

    with LlamaCppModel(smollm2_f32_gguf, n_ctx=512, threads=2) as model:
        yield model


@pytest.fixture(scope="session")
def smollm2_hf(smollm2_hf_dir):
    """The same weights (Q4_1 dequantized to float32 by acquire) in transformers."""
    from pocketquant.evaluate.hf import TransformersModel

    return TransformersModel(smollm2_hf_dir, threads=2)


@pytest.fixture(scope="session")
def default_corpus():
    from pocketquant.evaluate.corpus import load_corpus

    return load_corpus()


@pytest.fixture(scope="session")
def hf_reference(smollm2_hf_dir, default_corpus):
    """SmolLM2's base reference (final hidden states, streamed layer by layer): default corpus,
    n_ctx 128, 2 chunks."""
    from pocketquant.evaluate.reference import compute_reference

    return compute_reference(smollm2_hf_dir, default_corpus, n_ctx=128, n_chunks=2, progress=False)
