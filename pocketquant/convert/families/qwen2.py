"""Qwen2 / Qwen2.5 (also the text model of Qwen2-Audio-style wrappers llama.cpp maps the same way).

What differs from the shared defaults (llama.cpp's Qwen2Model): nothing in the tensors (q/k/v carry
biases, which gguf-py's table maps to attn_q/k/v.bias; RoPE is NEOX-style, so no q/k permutation);
the vocabulary is byte-level BPE with Qwen2's pre-tokenizer ('qwen2'), or SentencePiece when the
checkpoint ships a tokenizer.model.
"""

from __future__ import annotations

import gguf

from pocketquant.convert import vocab
from pocketquant.convert.families import register
from pocketquant.convert.families.base import Family
from pocketquant.convert.metadata import GGUFMetadata


@register
class Qwen2Family(Family):
    architectures = ("Qwen2ForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.QWEN2
    label = "Qwen2 / Qwen2.5"

    def set_vocab(self, meta: GGUFMetadata) -> None:
        if (self.model_dir / "tokenizer.model").is_file():
            vocab.add_sentencepiece_vocab(meta, self.model_dir, self.hparams)
        else:
            vocab.add_gpt2_vocab(meta, self.model_dir, self.hparams)
