"""Mistral 7B (v0.1 - v0.3) and other `MistralForCausalLM` checkpoints.

llama.cpp converts them exactly as Llama (its LlamaModel registers MistralForCausalLM; GGUF
architecture 'llama'): q/k permutation, SentencePiece vocabulary (v0.3's [INST]-style control
tokens included). The sliding window of v0.1 is not written: llama.cpp's Llama graph has none, as
its converter has none to write. Checkpoints in Mistral's own format (params.json, tekken.json
without tokenizer.json) are not HF checkpoints: use convert.backend=llamacpp.
"""

from __future__ import annotations

from pocketquant.convert.families import register
from pocketquant.convert.families.llama import LlamaFamily


@register
class MistralFamily(LlamaFamily):
    architectures = ("MistralForCausalLM",)
    label = "Mistral"
