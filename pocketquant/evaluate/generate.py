"""Fixed prompts -> greedy completions per variant (the seeds' qualitative side-by-side test).

Greedy decoding in the variant's own engine is deterministic for a given build and thread count.
Prompts are used as given; `chat_prompts` wraps them in the base model's chat template first (one
formatting for every variant, so all engines see the same text).
"""

from __future__ import annotations

import os
from pathlib import Path

from pocketquant.evaluate.language_model import LanguageModel


def chat_prompts(prompts: list[str], tokenizer_dir: str | os.PathLike[str]) -> list[str]:
    """Each prompt as a single user turn in the chat template of the HF tokenizer in `tokenizer_dir`."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(Path(tokenizer_dir))
    return [
        tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]


def generate_texts(model: LanguageModel, prompts: list[str], *, max_new_tokens: int = 64) -> list[dict]:
    out = []
    for prompt in prompts:
        ids = model.tokenize(prompt, special=True)
        new = model.generate(ids, max_new_tokens)
        out.append({"prompt": prompt, "completion": model.detokenize(new), "n_tokens": len(new)})
    return out
