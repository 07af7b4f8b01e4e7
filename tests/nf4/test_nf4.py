"""NF4 through bitsandbytes on CPU: quantize -> save -> reload -> generate; dequantize -> convert."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pocketquant.convert import convert_hf_to_gguf
from pocketquant.errors import ConfigError
from pocketquant.nf4 import (
    choose_cpu_kernels,
    cpu_has_packed_path,
    dequantize_nf4,
    nf4_blocksizes,
    packed_cpu_path_fits,
    quantize_nf4,
)
from pocketquant.testing.whole_model import transformers_dequantize_nf4, transformers_nf4

# bitsandbytes picks its CPU code path from the CPU; both are exercised where the CPU has both.
CPU_PATHS = [
    pytest.param("auto", id="auto"),  # AVX512-BF16: packed fused kernel where a layer fits
    pytest.param("generic", id="generic"),  # dequantize + matmul everywhere
]


def _require_path(cpu_path: str) -> None:
    if cpu_path == "auto" and not cpu_has_packed_path():
        pytest.skip(
            "this CPU has no AVX512-BF16: bitsandbytes' 'auto' is its generic path, tested as 'generic'"
        )


def _tensor_summary(model_dir: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    from safetensors import safe_open

    with safe_open(model_dir / "model.safetensors", framework="pt") as f:
        return {k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape())) for k in f.keys()}


def _generate(model_dir: Path, text: str, n: int = 6, *, cpu_path: str = "auto") -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, device_map="cpu").eval()
    choose_cpu_kernels(model, path=cpu_path, where=str(model_dir))
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


@pytest.fixture(scope="module")
def tiny_nf4_bs128(tiny_llama_dir: Path, tmp_path_factory) -> Path:
    return quantize_nf4(
        tiny_llama_dir, tmp_path_factory.mktemp("bs128") / "nf4", blocksize=128, double_quant=False
    )


@pytest.mark.parametrize("cpu_path", CPU_PATHS)
def test_nf4_blocksize_is_honored(tiny_nf4_bs128: Path, cpu_path: str):
    """Block size 128 on a 64-wide model: bitsandbytes' AVX512-BF16 kernel cannot hold those layers
    (it crashed mid-evaluation: shape '[64, 0]' is invalid); they run the generic path instead."""
    _require_path(cpu_path)
    out = tiny_nf4_bs128
    assert nf4_blocksizes(out) == {128}
    summary = _tensor_summary(out)
    absmax = summary["model.layers.0.mlp.up_proj.weight.absmax"]
    assert math.prod(absmax[1]) == 64 * 128 // 128  # one scale per 128 weights
    assert "model.layers.0.mlp.up_proj.weight.nested_absmax" not in summary
    assert len(_generate(out, "Numbers: 1 2 3", cpu_path=cpu_path)) == 6


def test_narrow_layers_are_named_and_moved_to_the_generic_path(tiny_nf4_bs128: Path, capsys):
    import bitsandbytes as bnb
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_nf4_bs128, device_map="cpu")
    narrow = choose_cpu_kernels(model, where="tiny")
    layers = {n: m for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    # in_features 64 < 128: q/k/v/o, gate, up; down_proj (128 wide) fits
    expected = sorted(n for n in layers if not n.endswith("down_proj"))
    assert sorted(narrow) == (expected if cpu_has_packed_path() else [])
    assert all(not layers[n].support_avx512bf16_for_cpu for n in expected)
    if narrow:
        assert "tiny: 12 NF4 layers (e.g. model.layers.0.self_attn.q_proj)" in capsys.readouterr().err
    choose_cpu_kernels(model, path="generic")
    assert not any(m.support_avx512bf16_for_cpu for m in layers.values())
    with pytest.raises(ConfigError, match="'fast' is not one of auto, generic"):
        choose_cpu_kernels(model, path="fast")


def test_packed_path_rule():
    assert packed_cpu_path_fits(64, 64, 64) and packed_cpu_path_fits(576, 1536, 128)
    assert not packed_cpu_path_fits(64, 64, 128)  # 0 blocks per row: the '[64, 0]' crash
    assert not packed_cpu_path_fits(576, 576, 128)  # SmolLM2 at 128: 4.5 blocks per row
    assert not packed_cpu_path_fits(48, 64, 64)  # rows not in groups of 32


@pytest.mark.parametrize(("blocksize", "double_quant"), [(64, True), (128, False)])
def test_streamed_nf4_writes_what_transformers_writes(
    tiny_llama_dir: Path, tmp_path: Path, blocksize, double_quant
):
    """Tensor by tensor, the same directory bytes as transformers' own bitsandbytes integration
    (whole model loaded 4-bit, then save_pretrained); and back: the same dequantized checkpoint."""
    ours = quantize_nf4(tiny_llama_dir, tmp_path / "ours", blocksize=blocksize, double_quant=double_quant)
    transformers_nf4(tiny_llama_dir, tmp_path / "theirs", blocksize=blocksize, double_quant=double_quant)
    names = sorted(p.name for p in ours.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "theirs").iterdir())
    for name in names:
        assert (ours / name).read_bytes() == (tmp_path / "theirs" / name).read_bytes(), name
    deq = dequantize_nf4(ours, tmp_path / "deq")
    transformers_dequantize_nf4(ours, tmp_path / "deq-theirs")
    for name in sorted(p.name for p in deq.iterdir()):
        assert (deq / name).read_bytes() == (tmp_path / "deq-theirs" / name).read_bytes(), name


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
