"""Gemma (1), Gemma 2 and Gemma 3 (text: Gemma3ForCausalLM, e.g. gemma-3-1b-it).

What differs from the shared defaults (llama.cpp's GemmaModel, Gemma2Model, Gemma3Model):
- RMSNorm weights are stored as w with the model multiplying by (1 + w): llama.cpp's norms
  multiply by the weight, so every `*norm.weight` is shifted by +1 (in the working dtype);
- the token embedding is scaled by sqrt(hidden) at run time (llama.cpp does it; nothing to store);
- SentencePiece vocabulary without a dummy prefix (add_space_prefix = false);
- Gemma 1/2 write their own short list of hyperparameters (no RoPE base: llama.cpp's default);
  Gemma 2 adds attention and final-logit soft-capping and the sliding window; Gemma 3 the global
  RoPE base, the sliding window and its final soft-capping when the config has one;
- Gemma 1/2 drop an lm_head.weight (tied in every release; some quantizers add a copy);
- Gemma 1 records CodeGemma's fill-in-the-middle and end-of-turn ids, as llama.cpp does.
Output transform (evaluate/output_head.py): final-logit soft-capping (Gemma 2, and Gemma 3 when
set); the GGUF records it as final_logit_softcapping.
"""

from __future__ import annotations

import json

import gguf
import numpy as np

from pocketquant.convert import vocab
from pocketquant.convert.families import register
from pocketquant.convert.families.base import Family
from pocketquant.convert.metadata import GGUFMetadata
from pocketquant.convert.special_tokens import SpecialTokens

# CodeGemma's FIM and end-of-turn token ids (llama.cpp writes them for every Gemma 1 model).
_CODEGEMMA_IDS = {"prefix": 67, "suffix": 69, "middle": 68, "fsep": 70, "eot": 107}


class _GemmaNorms(Family):
    """The +1 shift of Gemma's (1 + w) RMSNorm weights."""

    def transform(self, hf_name: str, data: np.ndarray) -> np.ndarray:
        return data + 1 if hf_name.endswith("norm.weight") else data


class _Gemma12(_GemmaNorms):
    """Gemma 1 and 2 share their hyperparameter list and drop lm_head."""

    def skips(self, hf_name: str) -> bool:
        return hf_name == "lm_head.weight" or super().skips(hf_name)

    def set_gguf_parameters(self, meta: GGUFMetadata) -> None:
        hp = self.hparams
        meta.add_context_length(hp["max_position_embeddings"])
        meta.add_embedding_length(hp["hidden_size"])
        meta.add_block_count(self.block_count)
        meta.add_feed_forward_length(hp["intermediate_size"])
        meta.add_head_count(hp["num_attention_heads"])
        meta.add_head_count_kv(
            hp["num_key_value_heads"] if "num_key_value_heads" in hp else hp["num_attention_heads"]
        )
        meta.add_layer_norm_rms_eps(hp["rms_norm_eps"])
        meta.add_key_length(hp["head_dim"])
        meta.add_value_length(hp["head_dim"])
        meta.add_file_type(self.ftype)


@register
class GemmaFamily(_Gemma12):
    architectures = ("GemmaForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.GEMMA
    label = "Gemma"

    def set_vocab(self, meta: GGUFMetadata) -> None:
        vocab.add_sentencepiece_vocab(meta, self.model_dir, self.hparams)
        fim = SpecialTokens(self.model_dir, load_merges=False, special_token_types=list(_CODEGEMMA_IDS))
        for kind, token_id in _CODEGEMMA_IDS.items():
            if hasattr(meta, f"add_{kind}_token_id"):  # gguf-py has keys for eot only: the rest is dropped
                fim._set_special_token(kind, token_id)
        fim.chat_template = None  # already written with the vocabulary
        fim.add_to_gguf(meta, quiet=True)
        meta.add_add_space_prefix(False)


@register
class Gemma2Family(_Gemma12):
    architectures = ("Gemma2ForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.GEMMA2
    label = "Gemma 2"

    def set_vocab(self, meta: GGUFMetadata) -> None:
        vocab.add_sentencepiece_vocab(meta, self.model_dir, self.hparams)
        meta.add_add_space_prefix(False)

    def set_gguf_parameters(self, meta: GGUFMetadata) -> None:
        super().set_gguf_parameters(meta)
        meta.add_attn_logit_softcapping(self.hparams["attn_logit_softcapping"])
        meta.add_final_logit_softcapping(self.hparams["final_logit_softcapping"])
        meta.add_sliding_window(self.hparams["sliding_window"])


@register
class Gemma3Family(_GemmaNorms):
    architectures = ("Gemma3ForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.GEMMA3
    label = "Gemma 3"

    def set_vocab(self, meta: GGUFMetadata) -> None:
        if (self.model_dir / "tokenizer.model").is_file():
            vocab.add_sentencepiece_vocab(meta, self.model_dir, self.hparams)
            meta.add_add_space_prefix(False)
        else:
            vocab.add_gpt2_vocab(meta, self.model_dir, self.hparams)

    def set_gguf_parameters(self, meta: GGUFMetadata) -> None:
        super().set_gguf_parameters(meta)
        hp = self.hparams
        # defaults for keys some Gemma 3 configs leave out (llama.cpp's values)
        meta.add_context_length(hp.get("max_position_embeddings", 131072))
        meta.add_head_count(hp.get("num_attention_heads", 8))
        meta.add_layer_norm_rms_eps(hp.get("rms_norm_eps", 1e-6))
        meta.add_key_length(hp.get("head_dim", 256))
        meta.add_value_length(hp.get("head_dim", 256))
        meta.add_rope_freq_base(self.global_rope.get("rope_theta", 1_000_000.0))  # global layers
        if cap := hp.get("final_logit_softcapping"):
            meta.add_final_logit_softcapping(cap)
        if hp.get("sliding_window_pattern") != 1:
            meta.add_sliding_window(hp["sliding_window"])
        meta.add_head_count_kv(hp.get("num_key_value_heads", 4))

    def kept_rows(self, hf_name: str, shape: tuple[int, ...]) -> int:
        """The embedding keeps only the rows of tokens the vocabulary has (no out-of-vocabulary rows)."""
        if "embed_tokens.weight" not in hf_name:
            return super().kept_rows(hf_name, shape)
        if (self.model_dir / "tokenizer.model").is_file():
            n_vocab = len(vocab.spm_vocab(self.model_dir, self.hparams.get("vocab_size"))[0])
        else:
            tok = json.loads((self.model_dir / "tokenizer.json").read_text(encoding="utf-8"))
            n_vocab = len(tok["model"]["vocab"]) + len(tok["added_tokens"])
        return min(shape[0], n_vocab)
