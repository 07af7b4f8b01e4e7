"""The real chat templates the package tests check against, and transformers' rendering of them
(the oracle the derived Ollama templates must equal).

tests/package/data/templates/ holds public chat templates: the Qwen2.5, Qwen3, Gemma 2, Phi-3.5,
Llama 3.1/3.2, Granite 3.3 and Mistral Nemo ones from llama.cpp's models/templates, the others as
their models' tokenizer_config.json carry them (for the older ones, as first published).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TEMPLATE_DIR = Path(__file__).with_name("data") / "templates"


@dataclass(frozen=True)
class TemplateCase:
    file: str
    bos: str
    eos: str
    family: str
    system: str  # where the derived template must put a system prompt
    emits_bos: bool  # the Jinja output starts with bos_token (the runtime's tokenizer adds it)

    @property
    def source(self) -> str:
        return (TEMPLATE_DIR / f"{self.file}.jinja").read_text(encoding="utf-8")

    @property
    def id(self) -> str:
        return self.file


TEMPLATES = [
    TemplateCase(
        "HuggingFaceTB-SmolLM2-135M-Instruct", "<|im_start|>", "<|im_end|>", "chatml", "turn", False
    ),
    TemplateCase("Qwen-Qwen2-0.5B-Instruct", "", "<|im_end|>", "chatml", "turn", False),
    TemplateCase("Qwen-Qwen2.5-7B-Instruct", "", "<|im_end|>", "chatml", "turn", False),
    TemplateCase("Qwen-Qwen3-0.6B", "", "<|im_end|>", "chatml", "turn", False),
    TemplateCase("google-gemma-2b-it", "<bos>", "<eos>", "gemma", "refused", True),
    TemplateCase("google-gemma-2-2b-it", "<bos>", "<eos>", "gemma", "refused", True),
    TemplateCase("google-gemma-3-1b-it", "<bos>", "<eos>", "gemma", "first_user", True),
    TemplateCase("microsoft-Phi-3-mini-4k-instruct", "<s>", "<|endoftext|>", "phi3", "dropped", True),
    TemplateCase("microsoft-Phi-3.5-mini-instruct", "<s>", "<|endoftext|>", "phi3", "turn", False),
    TemplateCase("microsoft-Phi-4-mini-instruct", "<|endoftext|>", "<|endoftext|>", "phi3", "turn", False),
    TemplateCase(
        "meta-llama-Llama-3.1-8B-Instruct", "<|begin_of_text|>", "<|eot_id|>", "llama3", "turn", True
    ),
    TemplateCase(
        "meta-llama-Llama-3.2-3B-Instruct", "<|begin_of_text|>", "<|eot_id|>", "llama3", "turn", True
    ),
    TemplateCase("mistralai-Mistral-7B-Instruct-v0.1", "<s>", "</s>", "mistral", "refused", True),
    TemplateCase("mistralai-Mistral-7B-Instruct-v0.2", "<s>", "</s>", "mistral", "first_user", True),
    TemplateCase("mistralai-Mistral-7B-Instruct-v0.3", "<s>", "</s>", "mistral", "last_user", True),
    TemplateCase("mistralai-Mistral-Nemo-Instruct-2407", "<s>", "</s>", "mistral", "last_user", True),
    TemplateCase("meta-llama-Llama-2-7b-chat-hf", "<s>", "</s>", "mistral", "first_user", True),
    TemplateCase("TinyLlama-TinyLlama-1.1B-Chat-v1.0", "<s>", "</s>", "zephyr", "turn", False),
    TemplateCase("allenai-OLMo-2-1124-7B-Instruct", "<|endoftext|>", "<|endoftext|>", "zephyr", "turn", True),
    TemplateCase(
        "ibm-granite-granite-3.3-2B-Instruct", "<|end_of_text|>", "<|end_of_text|>", "granite", "turn", False
    ),
]

# More conversations than the ones derivation checks itself with.
EXTRA_CONVERSATIONS = [
    (
        {"role": "system", "content": "Réponds en français, s'il te plaît."},
        {"role": "user", "content": "Bonjour ! 😀"},
        {"role": "assistant", "content": "Bonjour !"},
        {"role": "user", "content": "Ça va ?"},
        {"role": "assistant", "content": "Oui."},
        {"role": "user", "content": "Code:\n```py\nprint('{{x}}')\n```"},
    ),
    (
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ),
    (
        {"role": "user", "content": "Think first."},
        {"role": "assistant", "content": "Done.", "reasoning_content": "Let me see."},
    ),
]


def transformers_runtime(case: TemplateCase, messages, *, think=None):  # noqa: ANN001, ANN201
    """What transformers' apply_chat_template(tokenize=False) renders for an Ollama request: the
    generation prompt after a final user message, a final assistant message continued
    (continue_final_message), less the leading BOS the runtime's tokenizer adds. Call with the
    clock frozen (frozen_clock fixture): Llama 3.2 and Granite print today's date."""
    from transformers.utils.chat_template_utils import render_jinja_template

    continued = messages[-1]["role"] == "assistant"
    kwargs = {} if think is None else {"enable_thinking": think}
    out, _ = render_jinja_template(
        conversations=[[dict(m) for m in messages]],
        chat_template=case.source,
        add_generation_prompt=not continued,
        continue_final_message=continued,
        bos_token=case.bos,
        eos_token=case.eos,
        **kwargs,
    )
    text = out[0]
    if case.emits_bos:
        assert text.startswith(case.bos), (case.file, text[:40])
        text = text[len(case.bos) :]
    return text
