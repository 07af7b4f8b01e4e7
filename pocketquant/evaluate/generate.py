"""Fixed prompts -> greedy completions per variant (the seeds' qualitative side-by-side test).

Greedy decoding in the variant's own engine is deterministic for a given build and thread count.

Prompts are formatted as one user turn in the base model's chat template when it has one (one
formatting for every variant, so all engines see the same text). An instruction-tuned model given
a bare instruction ("Explain in one sentence why the sky is blue.") takes it for a finished turn and
answers with its end-of-turn token at once: SmolLM2-Instruct's F16 GGUF gave 0 tokens for two of the
three default prompts that way. Every generation records why it stopped: "eos" (an end-of-generation
token), "stop" (one of the stop strings appeared; the completion is cut before it) or "max_tokens".
"""

from __future__ import annotations

import os
from pathlib import Path

from pocketquant.evaluate.language_model import LanguageModel
from pocketquant.process_usage import trim_freed_memory

STOP_EOS = "eos"
STOP_STRING = "stop"
STOP_MAX_TOKENS = "max_tokens"


def chat_prompts(prompts: list[str], tokenizer_dir: str | os.PathLike[str]) -> list[str]:
    """Each prompt as a single user turn in the chat template of the HF tokenizer in `tokenizer_dir`."""
    from transformers import AutoTokenizer

    return _user_turns(AutoTokenizer.from_pretrained(Path(tokenizer_dir)), prompts)


def _user_turns(tok, prompts: list[str]) -> list[str]:  # noqa: ANN001 - a transformers tokenizer
    return [
        tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]


def stop_reason(n_tokens: int, max_new_tokens: int) -> str:
    """LanguageModel.generate stops at an end-of-generation token or after max_new_tokens."""
    return STOP_MAX_TOKENS if n_tokens >= max_new_tokens else STOP_EOS


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, str | None]:
    """The text before the earliest stop string, and that string (None when none occurs)."""
    hits = [(text.find(s), s) for s in stop if s and s in text]
    if not hits:
        return text, None
    at, s = min(hits)
    return text[:at], s


def format_prompts(
    prompts: list[str], chat_template_from: str | os.PathLike[str] | None
) -> tuple[bool, list[str]]:
    """Whether the chat template applies, and the text each prompt is sent as.

    The tokenizer is loaded once and let go at once: a 128,256-token one costs about 250 MB while
    loaded, and the evaluate stage calls this before it loads the model."""
    if chat_template_from is None or not prompts:
        return False, list(prompts)
    import gc

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(Path(chat_template_from))
    templated = bool(getattr(tok, "chat_template", None))
    texts = _user_turns(tok, prompts) if templated else list(prompts)
    del tok
    gc.collect()
    trim_freed_memory()
    return templated, texts


def generation_records(
    model: LanguageModel,
    prompts: list[str],
    new_ids: list[list[int]],
    *,
    max_new_tokens: int,
    templated: bool,
    stop: tuple[str, ...] = (),
) -> list[dict]:
    """One record per prompt from the token ids generated for it (`model` detokenizes)."""
    out = []
    for prompt, new in zip(prompts, new_ids, strict=True):
        completion, hit = cut_at_stop(model.detokenize(new), stop)
        record = {
            "prompt": prompt,
            "completion": completion,
            "n_tokens": len(new),
            "stop_reason": STOP_STRING if hit else stop_reason(len(new), max_new_tokens),
            "chat_template": templated,
        }
        if hit:
            record["stop_string"] = hit
        out.append(record)
    return out


def generate_texts(
    model: LanguageModel,
    prompts: list[str],
    *,
    max_new_tokens: int = 64,
    chat_template_from: str | os.PathLike[str] | None = None,
    stop: tuple[str, ...] = (),
) -> list[dict]:
    """Greedy completion of each prompt. `chat_template_from`: an HF tokenizer dir (the base model)
    whose chat template, when it has one, wraps each prompt; None sends the prompts as they are."""
    templated, texts = format_prompts(prompts, chat_template_from)
    new_ids = [model.generate(model.tokenize(text, special=True), max_new_tokens) for text in texts]
    return generation_records(
        model, prompts, new_ids, max_new_tokens=max_new_tokens, templated=templated, stop=stop
    )
