"""Checks that a converted GGUF behaves like its HF checkpoint, in llama.cpp (llama-cpp-python).

Used by the converter's tests and available to the pipeline as conversion metrics: tokenization
agreement on sample texts and next-token log-prob agreement over the whole vocabulary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Texts that exercise the pre-tokenizer: ASCII, unicode, code, numbers, whitespace runs, specials.
SAMPLE_TEXTS = [
    "Hello world! This is a test.",
    "The quick brown fox jumps over the lazy dog.",
    "café naïve Zürich Straße — ñandú «quotes» Ελληνικά русский 日本語 中文 한국어 🚀🙂",
    "def f(x):\n    return x ** 2  # square\n\nprint(f(12))\n",
    "Numbers: 0 7 42 123 1234 12345 3.14159 1,000,000 2024-11-23 1e-5",
    "Whitespace:   three  \t tab\t\ttabs\n\n\nlines    end   ",
    "   leading spaces and trailing   ",
    "It's we've they're I'll you'd HE'S",
    '<html><body class="x">{"a": [1, 2]}</body></html>',
    "",
    " ",
    "\n",
]


@dataclass
class LogprobAgreement:
    n_tokens: int
    max_abs_diff: float  # max over positions and the whole vocabulary
    mean_abs_diff: float
    top1_agreement: float  # fraction of positions with the same argmax


def load_llama(
    gguf_path: str | os.PathLike[str], n_ctx: int = 512, logits_all: bool = False, kv_f32: bool = False
) -> Any:
    """llama.cpp model. kv_f32: keep the KV cache in F32 instead of llama.cpp's default F16, which
    removes the runtime's own rounding (a faithful F32 conversion then matches to ~1e-5)."""
    from llama_cpp import Llama

    extra = {"type_k": 0, "type_v": 0} if kv_f32 else {}  # 0 = GGML_TYPE_F32
    return Llama(
        model_path=str(gguf_path),
        n_ctx=n_ctx,
        n_threads=min(2, os.cpu_count() or 1),
        n_batch=n_ctx,
        logits_all=logits_all,
        verbose=False,
        **extra,
    )


def tokenize_both(hf_dir: str | os.PathLike[str], llm: Any, text: str) -> tuple[list[int], list[int]]:
    """(HF ids, llama.cpp ids) for `text`, each adding BOS/EOS the way its tokenizer is configured
    and parsing special tokens in the text."""
    from transformers import AutoTokenizer

    tok = _tokenizer(Path(hf_dir), AutoTokenizer)
    hf_ids = tok(text, add_special_tokens=True)["input_ids"]
    ll_ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
    return list(hf_ids), list(ll_ids)


_TOKENIZERS: dict[Path, Any] = {}


def _tokenizer(hf_dir: Path, auto: Any) -> Any:
    if hf_dir not in _TOKENIZERS:
        _TOKENIZERS[hf_dir] = auto.from_pretrained(hf_dir)
    return _TOKENIZERS[hf_dir]


def logprob_agreement(
    hf_dir: str | os.PathLike[str],
    gguf_path: str | os.PathLike[str],
    token_ids: list[int],
    llm: Any = None,
    kv_f32: bool = False,
) -> LogprobAgreement:
    """Compare next-token log-probs of transformers (float32) and llama.cpp on `token_ids`."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([token_ids])).logits[0].float()
    hf_lp = torch.log_softmax(logits, dim=-1).numpy().astype(np.float64)
    del model

    llm = llm or load_llama(gguf_path, n_ctx=max(64, len(token_ids) + 8), logits_all=True, kv_f32=kv_f32)
    llm.reset()
    llm.eval(token_ids)
    scores = np.asarray(llm.scores[: len(token_ids)], dtype=np.float64)
    n_vocab = min(scores.shape[1], hf_lp.shape[1])
    ll_lp = scores[:, :n_vocab] - _logsumexp(scores[:, :n_vocab])
    diff = np.abs(ll_lp - hf_lp[:, :n_vocab])
    top1 = (ll_lp.argmax(axis=1) == hf_lp[:, :n_vocab].argmax(axis=1)).mean()
    return LogprobAgreement(len(token_ids), float(diff.max()), float(diff.mean()), float(top1))


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1, keepdims=True)
    return m + np.log(np.exp(x - m).sum(axis=1, keepdims=True))
