"""Llama 2 / 3 / 3.1 / 3.2, SmolLM / SmolLM2, TinyLlama (and the base of Mistral and Granite).

What differs from the shared defaults (llama.cpp's LlamaModel):
- q/k rows are permuted from HF's rotate-half layout to ggml's interleaved RoPE pairs, per head
  (k with the KV-head count under GQA), biases included;
- llama3 RoPE scaling becomes a `rope_freqs.weight` tensor (a divisor per rotary frequency);
- SentencePiece when the checkpoint has tokenizer.model, else byte-level BPE; `add_prefix_space`
  of tokenizer_config.json is kept; vocab_size and the RoPE dimension count are written.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import gguf
import numpy as np

from pocketquant.convert import vocab
from pocketquant.convert.errors import ConversionError
from pocketquant.convert.families import register
from pocketquant.convert.families.base import Family
from pocketquant.convert.metadata import GGUFMetadata

if TYPE_CHECKING:
    import torch

# llama.cpp writes add_bos_token=false for vocabularies of this size (IBM Granite's small models).
_GRANITE_SMALL_VOCAB = 49152


def permute_qk(w: Any, n_head: int, n_head_kv: int | None = None) -> Any:
    """HF rotate-half rows -> ggml interleaved pairs, per head (numpy array or torch tensor)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(rope: dict[str, Any], head_dim: int) -> torch.Tensor:
    """rope_freqs.weight: the divisor llama.cpp applies to each rotary frequency (llama3 scaling).

    Computed with llama.cpp's operations and dtypes (float32 torch frequencies, each factor a
    float32 0-d result), so the bytes equal its converter's."""
    import torch

    base = rope.get("rope_theta", 10000.0)
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_ctx = rope.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    factors: list[Any] = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(factors, dtype=torch.float32)


@register
class LlamaFamily(Family):
    architectures = ("LlamaForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.LLAMA
    label = "Llama"
    permutes_qk = True  # Granite and Mistral inherit it

    @property
    def head_dim(self) -> int:
        head_dim = self.hparams.get("head_dim")
        return int(head_dim or self.hparams["hidden_size"] // self.hparams["num_attention_heads"])

    def set_gguf_parameters(self, meta: GGUFMetadata) -> None:
        super().set_gguf_parameters(meta)
        meta.add_vocab_size(self.hparams["vocab_size"])
        meta.add_rope_dimension_count(self.head_dim)

    def set_vocab(self, meta: GGUFMetadata) -> None:
        config_file = self.model_dir / "tokenizer_config.json"
        if config_file.is_file():
            add_prefix_space = vocab.read_json(config_file).get("add_prefix_space")
            if add_prefix_space is not None:
                meta.add_add_space_prefix(add_prefix_space)
        if (self.model_dir / "tokenizer.model").is_file():
            vocab.add_sentencepiece_vocab(meta, self.model_dir, self.hparams)
        elif _is_byte_level_bpe(self.model_dir):
            vocab.add_gpt2_vocab(meta, self.model_dir, self.hparams)
        else:
            raise ConversionError(
                f"{self.model_dir}: the tokenizer is neither SentencePiece (tokenizer.model) nor byte-level "
                "BPE (tokenizer.json); convert it with convert.backend=llamacpp"
            )
        if self.hparams.get("vocab_size", 32000) == _GRANITE_SMALL_VOCAB:
            meta.add_add_bos_token(False)

    def transform_is_rowwise(self, hf_name: str) -> bool:
        return not (self.permutes_qk and _is_q_or_k(hf_name))

    def transform(self, hf_name: str, data: np.ndarray) -> np.ndarray:
        if self.permutes_qk and _is_q_or_k(hf_name):
            n_head = self.find_hparam(["n_heads", "num_attention_heads"])
            n_kv = (
                n_head if ".q_proj." in hf_name else self.find_hparam(["n_kv_heads", "num_key_value_heads"])
            )
            return permute_qk(data, n_head, n_kv)
        return data

    def extra_tensors(self) -> Iterable[tuple[str, torch.Tensor]]:
        if self.global_rope.get("rope_type", "").lower() == "llama3":
            yield (
                gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight",
                llama3_rope_factors(self.global_rope, self.head_dim),
            )


def _is_q_or_k(hf_name: str) -> bool:
    return hf_name.endswith(("q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias"))


def _is_byte_level_bpe(model_dir) -> bool:  # noqa: ANN001
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        return False
    tok = vocab.read_json(path)
    model = tok.get("model") or {}
    return (
        model.get("type") == "BPE"
        and not model.get("byte_fallback", False)
        and ((tok.get("decoder") or {}).get("type") == "ByteLevel")
    )
