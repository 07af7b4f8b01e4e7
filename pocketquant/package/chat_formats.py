"""The chat formats pocketquant packages for Ollama: one table per format.

A table says how to recognise the format in a model's Jinja chat template, where one turn ends and
the next begins, and which tokens end a turn (the Modelfile's `stop` parameters). Everything else
(role prefixes and suffixes, default system prompts, where the system prompt goes, thinking
blocks) is read off the model's own template by `chat_template.derive_chat_format`, so variants of
a format (Qwen2.5's default system prompt, Gemma 3's system folded into the first user turn,
Mistral v0.3's system prepended to the last user turn) need no table of their own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatFormatSpec:
    name: str
    title: str  # what users know it as (README, errors)
    markers: tuple[str, ...]  # all occur in the Jinja source of a template of this format
    # The text between two messages is cut into the first one's suffix and the next one's prefix
    # before the first turn start in it, or else after the last turn end in it.
    turn_starts: tuple[str, ...]
    turn_ends: tuple[str, ...]
    stops: tuple[str, ...]  # tokens that end or start a turn: generation stops there (plus EOS)


CHAT_FORMATS: tuple[ChatFormatSpec, ...] = (
    ChatFormatSpec(
        name="chatml",
        title="ChatML (Qwen2/2.5, Qwen3, SmolLM2)",
        markers=("<|im_start|>", "<|im_end|>"),
        turn_starts=("<|im_start|>",),
        turn_ends=(),
        stops=("<|im_start|>", "<|im_end|>"),
    ),
    ChatFormatSpec(
        name="llama3",
        title="Llama 3 headers (Llama 3/3.1/3.2/3.3)",
        markers=("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        turn_starts=("<|start_header_id|>",),
        turn_ends=(),
        stops=("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    ),
    ChatFormatSpec(
        name="gemma",
        title="Gemma turns (Gemma 1/2/3)",
        markers=("<start_of_turn>", "<end_of_turn>"),
        turn_starts=("<start_of_turn>",),
        turn_ends=(),
        stops=("<start_of_turn>", "<end_of_turn>"),
    ),
    ChatFormatSpec(
        name="phi3",
        title="Phi-3 (Phi-3/3.5, Phi-4-mini)",
        markers=("<|end|>", "<|assistant|>"),
        turn_starts=("<|system|>", "<|user|>", "<|assistant|>"),
        turn_ends=(),
        stops=("<|end|>", "<|system|>", "<|user|>", "<|assistant|>"),
    ),
    ChatFormatSpec(
        name="granite",
        title="Granite 3.x roles",
        markers=("<|start_of_role|>", "<|end_of_role|>"),
        turn_starts=("<|start_of_role|>",),
        turn_ends=(),
        stops=("<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>"),
    ),
    # after phi3: Phi-3 templates carry these tags too, plus <|end|>
    ChatFormatSpec(
        name="zephyr",
        title="Zephyr role tags (TinyLlama-Chat, OLMo 2, Tulu)",
        markers=("<|user|>", "<|assistant|>"),
        turn_starts=("<|system|>", "<|user|>", "<|assistant|>"),
        turn_ends=(),
        stops=("<|system|>", "<|user|>", "<|assistant|>"),
    ),
    ChatFormatSpec(
        name="mistral",
        title="[INST] (Mistral 7B v0.1-v0.3, Mistral Nemo, Llama 2 chat)",
        markers=("[INST]", "[/INST]"),
        turn_starts=("[INST]",),
        turn_ends=("[/INST]",),  # the assistant turn has no start marker of its own
        stops=("[INST]", "[/INST]"),
    ),
)


def detect_format(jinja_source: str) -> ChatFormatSpec | None:
    """The first format whose markers all occur in the template source, or None."""
    for spec in CHAT_FORMATS:
        if all(marker in jinja_source for marker in spec.markers):
            return spec
    return None


def describe_formats() -> str:
    """'ChatML (...) [<|im_start|> <|im_end|>]; ...' for messages naming what we recognise."""
    return "; ".join(f"{spec.title} [{' '.join(spec.markers)}]" for spec in CHAT_FORMATS)
