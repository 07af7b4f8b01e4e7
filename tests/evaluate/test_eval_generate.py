"""Fixed prompts -> greedy completions; chat formatting shared by all engines."""

from __future__ import annotations

import pytest

from pocketquant.evaluate.generate import chat_prompts, generate_texts

pytestmark = pytest.mark.slow


def test_chat_prompts_use_the_base_template_and_parse_as_special_tokens(smollm2_hf_dir, smollm2_hf):
    (p,) = chat_prompts(["What is 2+2?"], smollm2_hf_dir)
    assert "<|im_start|>user\nWhat is 2+2?<|im_end|>" in p and p.endswith("<|im_start|>assistant\n")
    special = smollm2_hf.tokenize(p, special=True)
    literal = smollm2_hf.tokenize(p)
    assert special.count(1) >= 2  # <|im_start|> is one token when parsed as special...
    assert 1 not in literal  # ...and plain text in perplexity mode (llama.cpp parse_special=false)


def test_generate_texts_is_greedy_and_repeatable(smollm2_hf):
    a = generate_texts(smollm2_hf, ["The capital of France is", "1, 2, 3, 4,"], max_new_tokens=6)
    b = generate_texts(smollm2_hf, ["The capital of France is", "1, 2, 3, 4,"], max_new_tokens=6)
    assert a == b
    assert [g["prompt"] for g in a] == ["The capital of France is", "1, 2, 3, 4,"]
    assert all(0 < g["n_tokens"] <= 6 for g in a)
    assert "5" in a[1]["completion"]
