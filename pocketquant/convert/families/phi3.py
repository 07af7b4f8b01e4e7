"""Phi-3 / Phi-3.5 (mini) and Phi-4-mini: `Phi3ForCausalLM`.

What differs from the shared defaults (llama.cpp's Phi3MiniModel):
- attention and MLP inputs are fused in the checkpoint (qkv_proj, gate_up_proj) and stay fused in
  the GGUF (attn_qkv; ffn_up holds gate and up, which llama.cpp splits at run time);
- LongRoPE (Phi-3.5, Phi-4-mini): the per-frequency factors become two tensors,
  rope_factors_long/short, and the attention scaling factor a key;
- partial rotary (Phi-4-mini: 75 %) sets the RoPE dimension count; the sliding window is written
  (0 when the config has none, which is how llama.cpp tells Phi-4 apart);
- its own SentencePiece vocabulary rules (added tokens are control tokens only when marked special);
  a GPT2Tokenizer (Phi-4-mini) is byte-level BPE.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import gguf

from pocketquant.convert import vocab
from pocketquant.convert.errors import ConversionError
from pocketquant.convert.families import register
from pocketquant.convert.families.base import Family
from pocketquant.convert.metadata import GGUFMetadata

if TYPE_CHECKING:
    import torch


@register
class Phi3Family(Family):
    architectures = ("Phi3ForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.PHI3
    label = "Phi-3"

    @property
    def rope_dims(self) -> int:
        n_embd = self.find_hparam(["hidden_size", "n_embd"])
        n_head = self.find_hparam(["num_attention_heads", "n_head"])
        return int(self.rope_parameters.get("partial_rotary_factor", 1.0) * n_embd) // n_head

    @property
    def original_context(self) -> int:
        if "original_max_position_embeddings" not in self.rope_parameters:
            raise ConversionError(
                f"{self.model_dir / 'config.json'}: missing key 'original_max_position_embeddings'"
            )
        return self.rope_parameters["original_max_position_embeddings"]

    def set_gguf_parameters(self, meta: GGUFMetadata) -> None:
        max_pos = self.find_hparam(["n_positions", "max_position_embeddings"])
        meta.add_context_length(max_pos)
        meta.add_rope_scaling_orig_ctx_len(self.original_context)
        meta.add_embedding_length(self.find_hparam(["hidden_size", "n_embd"]))
        meta.add_feed_forward_length(self.find_hparam(["intermediate_size"]))
        meta.add_block_count(self.block_count)
        meta.add_head_count(self.find_hparam(["num_attention_heads", "n_head"]))
        meta.add_head_count_kv(self.find_hparam(["num_key_value_heads", "n_head_kv"]))
        meta.add_layer_norm_rms_eps(self.find_hparam(["rms_norm_eps"]))
        meta.add_rope_dimension_count(self.rope_dims)
        meta.add_rope_freq_base(self.global_rope["rope_theta"])
        meta.add_file_type(self.ftype)
        meta.add_sliding_window(self.hparams.get("sliding_window") or 0)
        if self._long_factors() is not None:
            meta.add_rope_scaling_attn_factors(self._attn_factor(max_pos))

    def _long_factors(self) -> tuple[list[float], list[float]] | None:
        long, short = self.rope_parameters.get("long_factor"), self.rope_parameters.get("short_factor")
        if not long:
            return None
        cfg = self.model_dir / "config.json"
        if short is None:
            raise ConversionError(f"{cfg}: LongRoPE long_factor without short_factor")
        if len(long) != len(short) or len(long) != self.rope_dims / 2:
            raise ConversionError(
                f"{cfg}: LongRoPE factors must have {self.rope_dims // 2} entries each "
                f"(long_factor {len(long)}, short_factor {len(short)})"
            )
        return long, short

    def _attn_factor(self, max_pos: int) -> float:
        """LongRoPE's attention scaling (llama.cpp's formula for 'longrope' / 'su', and 'yarn')."""
        scale = max_pos / self.original_context
        kind = str(self.rope_parameters.get("rope_type", "")).lower()
        if kind in ("su", "longrope"):
            return math.sqrt(1 + math.log(scale) / math.log(self.original_context)) if scale > 1.0 else 1.0
        if kind == "yarn":
            return 0.1 * math.log(scale) + 1.0 if scale > 1.0 else 1.0
        raise ConversionError(
            f"{self.model_dir / 'config.json'}: RoPE scaling type {kind!r} with long_factor"
        )

    def extra_tensors(self) -> Iterable[tuple[str, torch.Tensor]]:
        import torch

        factors = self._long_factors()
        if factors is None:
            return
        long, short = factors
        yield (
            gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FACTORS_LONG] + ".weight",
            torch.tensor(long, dtype=torch.float32),
        )
        yield (
            gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FACTORS_SHORT] + ".weight",
            torch.tensor(short, dtype=torch.float32),
        )

    def model_name(self, name: str) -> str:
        """llama.cpp makes Phi-3's special tokens swallow the whitespace after them, as Phi-3's HF
        tokenizer does (`rstrip`), only when general.name contains 'phi3' or 'phi-3'; a name
        without it (e.g. 'local') would tokenize every chat prompt differently."""
        tok_file = self.model_dir / "tokenizer.json"
        added = vocab.read_json(tok_file).get("added_tokens", []) if tok_file.is_file() else []
        lowered = name.lower()
        if any(t.get("rstrip") for t in added) and "phi3" not in lowered and "phi-3" not in lowered:
            return f"{name} (phi3)"
        return name

    def set_vocab(self, meta: GGUFMetadata) -> None:
        config_file = self.model_dir / "tokenizer_config.json"
        config = vocab.read_json(config_file) if config_file.is_file() else {}
        if config.get("tokenizer_class") == "GPT2Tokenizer":  # Phi-4-mini
            vocab.add_gpt2_vocab(meta, self.model_dir, self.hparams)
            return
        tokens, scores, types = vocab.sentencepiece_pieces(self.model_dir, self.hparams.get("vocab_size"))
        added: list[tuple[int, str, bool | None]] = []
        if (self.model_dir / "added_tokens.json").is_file():
            added += [(i, t, None) for t, i in vocab.read_json(self.model_dir / "added_tokens.json").items()]
        added += [
            (int(i), d["content"], bool(d.get("special")))
            for i, d in (config.get("added_tokens_decoder") or {}).items()
        ]
        if (self.model_dir / "tokenizer.json").is_file():
            tok_json = vocab.read_json(self.model_dir / "tokenizer.json")
            added += [
                (int(d["id"]), d["content"], bool(d.get("special"))) for d in tok_json.get("added_tokens", [])
            ]
        for token_id, text, special in added:
            if token_id >= len(tokens):
                raise ConversionError(
                    f"{self.model_dir}: added token {text!r} has id {token_id} >= vocab_size"
                )
            tokens[token_id] = text.encode("utf-8")
            scores[token_id] = -1000.0
            types[token_id] = vocab.CONTROL if special else vocab.USER_DEFINED
        vocab.add_spm_vocab(meta, tokens, scores, types, self.model_dir)
