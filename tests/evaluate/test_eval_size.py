"""Size, bits per weight and reduction vs BF16 for GGUF files and HF / NF4 dirs."""

from __future__ import annotations

import pytest

from pocketquant.evaluate.errors import ModelLoadError
from pocketquant.evaluate.size import GIB, model_size

SMOLLM2_PARAMS = 134_515_008  # SmolLM2-135M, tied embeddings counted once


def test_gguf_size_of_the_embedded_q4_1(smollm2_gguf):
    s = model_size(smollm2_gguf)
    assert s["bytes"] == smollm2_gguf.stat().st_size
    assert s["gib"] == s["bytes"] / GIB
    assert s["n_params"] == SMOLLM2_PARAMS
    assert s["tensor_types"]["Q4_1"] == 210 and s["tensor_types"]["Q8_0"] == 1
    # Q4_1 is 20 bytes per 32 weights (5.0 bpw), the tied embedding Q8_0 34 per 32 (8.5 bpw).
    assert 5.0 < s["bpw_quantized"] < 8.5
    assert s["bpw"] == pytest.approx(8 * s["bytes"] / SMOLLM2_PARAMS)
    assert s["reduction_vs_bf16_pct"] == pytest.approx(100 * (1 - s["bytes"] / (2 * SMOLLM2_PARAMS)))


def test_gguf_f32_is_twice_the_bf16_size(smollm2_f32_gguf):
    s = model_size(smollm2_f32_gguf, base_n_params=SMOLLM2_PARAMS)
    assert s["tensor_types"] == {"F32": s["tensor_types"]["F32"]} and s["bpw_quantized"] is None
    assert 32.0 < s["bpw"] < 32.5  # 4 bytes per weight plus the header (vocabulary)
    assert -101.5 < s["reduction_vs_bf16_pct"] < -100.0


@pytest.mark.slow
def test_nf4_dir_counts_packed_weights_with_their_statistics(tmp_path):
    from pocketquant.nf4 import quantize_nf4
    from pocketquant.testing.tiny_models import build_tiny_llama

    base = build_tiny_llama(tmp_path / "tiny", hidden_size=256, intermediate_size=512)
    nf4 = quantize_nf4(base, tmp_path / "tiny-nf4")
    full, q = model_size(base), model_size(nf4, base_n_params=None)
    assert full["format"] == "hf" and q["format"] == "hf-bnb-4bit"
    assert q["n_params"] == full["n_params"]  # original shapes recovered from the quant states
    assert q["bytes"] == sum(p.stat().st_size for p in nf4.iterdir() if p.is_file())
    # 4 bits per code + an 8-bit absmax per 64 weights (+ double-quant statistics): 4.125 .. 4.5
    assert 4.1 < q["bpw_quantized"] < 4.5
    assert full["bpw"] > 32 and q["reduction_vs_bf16_pct"] > 50


def test_missing_or_corrupt_model_is_a_named_error(tmp_path):
    with pytest.raises(ModelLoadError, match="model not found: .*missing.gguf"):
        model_size(tmp_path / "missing.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 20)
    with pytest.raises(ModelLoadError, match="bad.gguf"):
        model_size(bad)
