"""llama.cpp loads every family's GGUF, tokenizes like the HF tokenizer (probe texts and the
family's real chat template, special tokens parsed) and gives the next-token log-probs
transformers gives; evaluation's output head turns HF hidden states into HF logits; our
quantize of every family is byte-identical to llama.cpp's `llama_model_quantize`."""

from __future__ import annotations

import pytest
from family_cases import FAMILIES

from pocketquant.convert.check import SAMPLE_TEXTS, load_llama, logprob_agreement, tokenize_both
from pocketquant.quantize import quantize_gguf

PROMPT = (
    "The quick brown fox jumps over the lazy dog. Quantization maps floating-point weights to a few "
    "bits per weight. def quantize(x, bits=4): return 42"
)
CHAT = [
    {"role": "user", "content": "Hi there, 2+2?"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "Thanks!  And 3+3?"},
]
# Largest next-token log-prob difference allowed with F32 weights and an F32 KV cache. Measured:
# 1e-6..2e-4 for most families; Gemma's and Phi-2's GeLU is a float16 lookup table in llama.cpp
# (0.018, 0.013, 0.007 for Gemma 1/2/3; 0.004 for Phi-2).
LOGPROB_TOLERANCE = {"gemma": 0.05, "gemma2": 0.05, "gemma3": 0.05, "phi2": 0.02}
QUANT_TYPES = ("Q4_K_M", "Q3_K_M", "Q6_K", "Q8_0")


def _texts(model_dir) -> list[str]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    texts = list(SAMPLE_TEXTS)
    if tok.chat_template:
        texts.append(tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True))
    return texts


@pytest.mark.parametrize("family", FAMILIES)
def test_llama_cpp_tokenizes_and_predicts_like_transformers(family, family_dirs, our_ggufs, llama_cpp):
    from transformers import AutoTokenizer

    model_dir, gguf_path = family_dirs[family], our_ggufs[family, "f32"]
    llm = load_llama(gguf_path, n_ctx=256)
    texts = _texts(model_dir)
    mismatches = [(t, *tokenize_both(model_dir, llm, t)) for t in texts]
    mismatches = [m for m in mismatches if m[1] != m[2]]
    assert not mismatches, mismatches[:2]
    del llm
    ids = AutoTokenizer.from_pretrained(model_dir)(PROMPT)["input_ids"]
    assert len(ids) > 30
    agree = logprob_agreement(model_dir, gguf_path, ids, kv_f32=True)
    assert agree.top1_agreement == 1.0, agree
    assert agree.max_abs_diff < LOGPROB_TOLERANCE.get(family, 1e-3), agree


@pytest.mark.parametrize("family", FAMILIES)
def test_output_head_turns_hidden_states_into_logits(family, family_dirs):
    """Evaluation's output head (evaluate/output_head.py, the one definition of the lm_head bias,
    logit scaling and final soft-capping) turns the HF model's final hidden state into exactly the
    logits the HF model gives, with W_out (and its bias) read from the checkpoint as the reference
    reads it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pocketquant.evaluate.reference import BaseOutput

    model_dir = family_dirs[family]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([AutoTokenizer.from_pretrained(model_dir)(PROMPT)["input_ids"]])
    with torch.inference_mode():
        logits_hf = model(ids, use_cache=False).logits[0]
        hidden = model.get_decoder()(input_ids=ids, use_cache=False).last_hidden_state[0]  # after the norm
    out = BaseOutput(model_dir)
    assert torch.equal(out.logits(hidden), logits_hf), family
    assert out.head.is_identity == (family not in ("gemma2", "phi2", "granite")), out.head


@pytest.mark.parametrize("ftype", QUANT_TYPES)
@pytest.mark.parametrize("family", FAMILIES)
def test_quantize_equals_llama_model_quantize(family, ftype, our_ggufs, tmp_path, llama_cpp):
    from pocketquant.testing import llamacpp_ref

    src = our_ggufs[family, "f16"]
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "llama.gguf"
    quantize_gguf(src, ours, ftype, threads=2, progress=False)
    llamacpp_ref.llama_quantize(src, theirs, ftype, nthread=2)
    assert ours.read_bytes() == theirs.read_bytes(), f"{family} {ftype}: files differ"
    assert ours.stat().st_size < 0.7 * src.stat().st_size


def test_phi3_name_keeps_llama_cpp_whitespace_rules(family_dirs, tmp_path, llama_cpp):
    """llama.cpp strips the whitespace after Phi-3's special tokens (as Phi-3's HF tokenizer does)
    only when general.name contains 'phi3': a pipeline name like 'local' must not lose that."""
    from pocketquant.convert import convert_hf_to_gguf
    from pocketquant.gguf_file import GGUFFile

    model_dir = family_dirs["phi3"]
    out = convert_hf_to_gguf(model_dir, tmp_path / "local.gguf", "f32", name="local", progress=False)
    with GGUFFile(out) as f:
        assert f.get("general.name") == "local (phi3)"
    llm = load_llama(out, n_ctx=256)
    chat = _texts(model_dir)[-1]
    assert "<|end|>\n" in chat
    hf_ids, ll_ids = tokenize_both(model_dir, llm, chat)
    assert hf_ids == ll_ids
    plain = convert_hf_to_gguf(family_dirs["qwen2"], tmp_path / "q.gguf", "f32", name="local", progress=False)
    with GGUFFile(plain) as f:
        assert f.get("general.name") == "local"  # other families keep the name as given
