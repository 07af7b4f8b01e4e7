"""NF4 through bitsandbytes on CPU: quantize -> save -> reload -> generate; dequantize -> convert."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pocketquant.convert import convert_hf_to_gguf
from pocketquant.errors import ConfigError
from pocketquant.nf4 import dequantize_nf4, nf4_blocksizes, quantize_nf4


def _tensor_summary(model_dir: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    from safetensors import safe_open

    with safe_open(model_dir / "model.safetensors", framework="pt") as f:
        return {k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape())) for k in f.keys()}


def _generate(model_dir: Path, text: str, n: int = 6) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, device_map="cpu").eval()
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, do_sample=False)
    return out[0, ids.shape[1] :].tolist()


@pytest.fixture(scope="module")
def tiny_nf4_dir(tiny_llama_dir: Path, tmp_path_factory) -> Path:
    return quantize_nf4(tiny_llama_dir, tmp_path_factory.mktemp("nf4") / "tiny-nf4")


def test_tiny_nf4_is_really_4bit(tiny_llama_dir: Path, tiny_nf4_dir: Path):
    src = _tensor_summary(tiny_llama_dir)
    out = _tensor_summary(tiny_nf4_dir)
    config = json.loads((tiny_nf4_dir / "config.json").read_text())
    q = config["quantization_config"]
    assert q["quant_method"] == "bitsandbytes" and q["bnb_4bit_quant_type"] == "nf4"
    assert q["load_in_4bit"] is True and q["bnb_4bit_use_double_quant"] is True
    assert q["bnb_4bit_compute_dtype"] == "bfloat16"
    for name, (_, shape) in src.items():
        if name.endswith("_proj.weight"):
            dtype, packed = out[name]
            assert dtype == "U8" and math.prod(packed) * 2 == math.prod(shape), name  # 2 codes per byte
            assert name + ".nested_absmax" in out  # double quant: the absmax are quantized too
            assert name + ".quant_state.bitsandbytes__nf4" in out
    assert nf4_blocksizes(tiny_nf4_dir) == {64}


def test_tiny_nf4_reloads_and_generates(tiny_nf4_dir: Path):
    import bitsandbytes as bnb
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_nf4_dir, device_map="cpu")
    assert isinstance(model.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    first = _generate(tiny_nf4_dir, "The quick brown fox")
    assert len(first) == 6 and first == _generate(tiny_nf4_dir, "The quick brown fox")


def test_nf4_is_deterministic(tiny_llama_dir: Path, tiny_nf4_dir: Path, tmp_path: Path):
    again = quantize_nf4(tiny_llama_dir, tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (tiny_nf4_dir / "model.safetensors").read_bytes()


def test_nf4_blocksize_is_honored(tiny_llama_dir: Path, tmp_path: Path):
    out = quantize_nf4(tiny_llama_dir, tmp_path / "bs128", blocksize=128, double_quant=False)
    assert nf4_blocksizes(out) == {128}
    summary = _tensor_summary(out)
    absmax = summary["model.layers.0.mlp.up_proj.weight.absmax"]
    assert math.prod(absmax[1]) == 64 * 128 // 128  # one scale per 128 weights
    assert "model.layers.0.mlp.up_proj.weight.nested_absmax" not in summary
    assert len(_generate(out, "Numbers: 1 2 3")) == 6


def test_nf4_bad_settings(tiny_llama_dir: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="blocksize=100"):
        quantize_nf4(tiny_llama_dir, tmp_path / "x", blocksize=100)
    with pytest.raises(ConfigError, match="compute_dtype='int8'"):
        quantize_nf4(tiny_llama_dir, tmp_path / "x", compute_dtype="int8")
    with pytest.raises(ConfigError, match="not a bitsandbytes NF4 checkpoint"):
        dequantize_nf4(tiny_llama_dir, tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_dequantize_then_convert(tiny_llama_dir: Path, tiny_nf4_dir: Path, tmp_path: Path):
    import gguf
    import numpy as np
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM

    full = dequantize_nf4(tiny_nf4_dir, tmp_path / "deq")
    summary = _tensor_summary(full)
    assert {d for d, _ in summary.values()} == {"F32"}
    assert "quantization_config" not in json.loads((full / "config.json").read_text())
    # The dequantized weights are the NF4 approximation of the originals: close, not equal.
    a = load_file(tiny_llama_dir / "model.safetensors")["model.layers.0.mlp.up_proj.weight"]
    b = load_file(full / "model.safetensors")["model.layers.0.mlp.up_proj.weight"]
    rel = np.abs(a - b).mean() / np.abs(a).mean()
    assert 0.01 < rel < 0.2, rel
    # Same function as the 4-bit model: logits of the 4-bit and dequantized models agree.
    ids = torch.tensor([[1, 50, 60, 70, 80]])
    with torch.no_grad():
        q_logits = AutoModelForCausalLM.from_pretrained(tiny_nf4_dir, device_map="cpu")(ids).logits.float()
        d_logits = AutoModelForCausalLM.from_pretrained(full)(ids).logits
    assert torch.allclose(q_logits, d_logits, atol=0.15), (q_logits - d_logits).abs().max()
    gguf_path = convert_hf_to_gguf(full, tmp_path / "chain.gguf", "f16")
    assert gguf.GGUFReader(gguf_path).fields["general.architecture"].contents() == "llama"


SMOL_PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def smollm2_nf4_dir(smollm2_hf_dir: Path, tmp_path_factory) -> Path:
    return quantize_nf4(smollm2_hf_dir, tmp_path_factory.mktemp("smol-nf4") / "nf4")


@pytest.mark.slow
def test_smollm2_nf4_roundtrip(smollm2_hf_dir: Path, smollm2_nf4_dir: Path):
    from transformers import AutoTokenizer

    size = (smollm2_nf4_dir / "model.safetensors").stat().st_size
    src_size = (smollm2_hf_dir / "model.safetensors").stat().st_size
    # 4-bit linear layers + bf16 embeddings (49152 x 576, tied) instead of float32 everything.
    assert size < 0.25 * src_size, (size, src_size)
    print(f"SmolLM2 NF4 safetensors: {size} bytes (F32 source {src_size})")
    tokens = _generate(smollm2_nf4_dir, SMOL_PROMPT)
    assert "Paris" in AutoTokenizer.from_pretrained(smollm2_nf4_dir).decode(tokens)


@pytest.mark.slow
def test_smollm2_nf4_to_gguf_chain(smollm2_nf4_dir: Path, tmp_path: Path):
    """The seeds' chain: NF4 -> dequantize -> our converter -> llama.cpp still answers."""
    llama_cpp = pytest.importorskip("llama_cpp")
    full = dequantize_nf4(smollm2_nf4_dir, tmp_path / "deq")
    gguf_path = convert_hf_to_gguf(full, tmp_path / "chain-f16.gguf", "f16")
    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=128, n_threads=2, verbose=False)
    out = llm(SMOL_PROMPT, max_tokens=8, temperature=0.0)["choices"][0]["text"]
    assert "Paris" in out, out
