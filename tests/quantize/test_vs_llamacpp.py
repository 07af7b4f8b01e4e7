"""Our quantize against llama.cpp's own `llama_model_quantize` (in-process, nthread=2), whole files
compared byte for byte: tensor types, order, data, metadata and padding.

SmolLM2-135M: 576-wide rows, so most K-types fall back (Q5_0/Q5_1/Q8_0/Q4_0) and ffn_down keeps the
K-type; the tiny random Llama has 256-multiple rows, 8 layers, GQA 4 and an untied output, so the
K-mixes apply unchanged; the odd one has 160/200-wide rows (F16 fallback)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qhelpers import gguf_diff, tensor_types

from pocketquant.quantize import FTYPES, quantize_gguf

ALL_TYPES = list(FTYPES)
QUANT_TYPES = [t for t in ALL_TYPES if not FTYPES[t].is_float]


def both(src: Path, tmp_path: Path, ftype: str, llama_ref, *, threads: int = 2, **opts) -> tuple[Path, Path]:
    ours, theirs = tmp_path / f"ours-{ftype}.gguf", tmp_path / f"llama-{ftype}.gguf"
    quantize_gguf(src, ours, ftype, threads=threads, progress=False, **opts)
    ref_opts = dict(opts)
    if "tensor_types" in ref_opts:
        ref_opts["tensor_types"] = [tuple(s.split("=", 1)) for s in ref_opts["tensor_types"]]
    llama_ref.llama_quantize(src, theirs, ftype, nthread=2, **ref_opts)
    return ours, theirs


@pytest.mark.slow
def test_smollm2_f32_conversion_matches_llama_cpp(smollm2_q41, smollm2_f32, tmp_path, llama_ref):
    """Dequantizing the package's Q4_1 (and its Q8_0 token_embd) to F32: same file as llama.cpp's."""
    theirs = tmp_path / "llama-f32.gguf"
    llama_ref.llama_quantize(smollm2_q41, theirs, "F32", nthread=2, allow_requantize=True)
    assert gguf_diff(smollm2_f32, theirs) is None
    assert set(tensor_types(smollm2_f32).values()) == {"F32"}


@pytest.mark.slow
def test_smollm2_f16_conversion_matches_llama_cpp(smollm2_q41, smollm2_f16, tmp_path, llama_ref):
    theirs = tmp_path / "llama-f16.gguf"
    llama_ref.llama_quantize(smollm2_q41, theirs, "F16", nthread=2, allow_requantize=True)
    assert gguf_diff(smollm2_f16, theirs) is None
    types = tensor_types(smollm2_f16)
    assert types["blk.0.attn_q.weight"] == "F16" and types["blk.0.attn_norm.weight"] == "F32"


@pytest.mark.slow
@pytest.mark.parametrize("ftype", ALL_TYPES)
def test_smollm2_every_type_matches_llama_cpp(ftype, smollm2_f32, tmp_path, llama_ref):
    ours, theirs = both(smollm2_f32, tmp_path, ftype, llama_ref)
    assert gguf_diff(ours, theirs) is None


@pytest.mark.slow
@pytest.mark.parametrize("ftype", ["Q4_K_M"])
def test_smollm2_from_f16_matches_llama_cpp(ftype, smollm2_f16, tmp_path, llama_ref):
    ours, theirs = both(smollm2_f16, tmp_path, ftype, llama_ref)
    assert gguf_diff(ours, theirs) is None


@pytest.mark.parametrize("ftype", ALL_TYPES)
def test_tiny_llama_every_type_matches_llama_cpp(ftype, tiny_f32, tmp_path, llama_ref):
    ours, theirs = both(tiny_f32, tmp_path, ftype, llama_ref)
    assert gguf_diff(ours, theirs) is None


@pytest.mark.parametrize("ftype", ["Q4_K_M", "Q3_K_L", "Q5_K_S", "Q2_K", "BF16"])
def test_tiny_llama_from_f16_matches_llama_cpp(ftype, tiny_f16, tmp_path, llama_ref):
    ours, theirs = both(tiny_f16, tmp_path, ftype, llama_ref)
    assert gguf_diff(ours, theirs) is None


@pytest.mark.parametrize("ftype", ["Q4_K_M", "Q2_K", "Q3_K_S", "Q5_K_M", "Q6_K", "Q8_0", "Q4_1"])
def test_odd_row_lengths_match_llama_cpp(ftype, odd_f32, tmp_path, llama_ref):
    ours, theirs = both(odd_f32, tmp_path, ftype, llama_ref)
    assert gguf_diff(ours, theirs) is None
    assert tensor_types(ours)["blk.0.ffn_down.weight"] == "F16"  # 200 % 32 != 0


OPTIONS = {
    "pure": {"pure": True},
    "leave_output": {"leave_output_tensor": True},
    "output_type": {"output_tensor_type": "q8_0"},
    "embedding_type": {"token_embedding_type": "q4_0"},
    "tensor_types": {"tensor_types": ["attn_q=q8_0", "FFN_(UP|GATE)=q5_1", "blk\\.3\\.=q2_k"]},
    "all": {
        "leave_output_tensor": True,
        "token_embedding_type": "Q6_K",
        "tensor_types": ["attn_v=f16"],
        "pure": True,
    },
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_options_match_llama_cpp(name, tiny_f32, tmp_path, llama_ref):
    ftype = "Q3_K_M" if name != "pure" else "Q4_K_M"
    ours, theirs = both(tiny_f32, tmp_path, ftype, llama_ref, **OPTIONS[name])
    assert gguf_diff(ours, theirs) is None


def test_same_output_at_any_thread_count(tiny_f32, tmp_path):
    for ftype in ("Q4_K_M", "Q2_K"):
        outs = []
        for threads in (1, 2, 3):
            out = tmp_path / f"{ftype}-{threads}.gguf"
            quantize_gguf(tiny_f32, out, ftype, threads=threads, progress=False)
            outs.append(out.read_bytes())
        assert outs[0] == outs[1] == outs[2], ftype


@pytest.mark.slow
def test_smollm2_q4_k_m_deterministic_across_threads(smollm2_f32, tmp_path):
    a, b = tmp_path / "t1.gguf", tmp_path / "t2.gguf"
    quantize_gguf(smollm2_f32, a, "Q4_K_M", threads=1, progress=False)
    quantize_gguf(smollm2_f32, b, "Q4_K_M", threads=2, progress=False)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("ftype", ["Q4_K_M", "Q8_0"])
def test_output_loads_and_generates_in_llama_cpp(ftype, smollm2_f32, tmp_path, llama_ref):
    """Our file loads in llama.cpp, generates text, and predicts the F32 model's next tokens."""
    import llama_cpp

    out = tmp_path / f"smollm2-{ftype}.gguf"
    quantize_gguf(smollm2_f32, out, ftype, threads=2, progress=False)
    text = (
        "The quick brown fox jumps over the lazy dog. Paris is the capital of France, and Berlin is "
        "the capital of Germany. Water boils at one hundred degrees Celsius at sea level."
    )

    def next_tokens(path: Path) -> tuple[np.ndarray, str]:
        llm = llama_cpp.Llama(str(path), n_ctx=256, n_threads=2, logits_all=True, verbose=False, seed=0)
        toks = llm.tokenize(text.encode(), add_bos=True)
        llm.eval(toks)
        argmax = np.asarray(llm.scores[: len(toks)]).argmax(axis=1)
        llm.reset()
        gen = llm("The capital of France is", max_tokens=12, temperature=0.0)["choices"][0]["text"]
        llm.close()
        return argmax, gen

    ref, _ = next_tokens(smollm2_f32)
    got, gen = next_tokens(out)
    assert len(gen.strip()) > 0
    agreement = float((ref == got).mean())
    assert agreement >= (0.85 if ftype == "Q8_0" else 0.6), agreement  # random tokens: ~0
