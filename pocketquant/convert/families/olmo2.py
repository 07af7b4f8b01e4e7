"""OLMo 2 (and OLMo 3): `Olmo2ForCausalLM`, `Olmo3ForCausalLM`.

What differs from the shared defaults (llama.cpp's Olmo2Model): RMS norms after attention and
after the MLP instead of before (post_attention_norm, post_ffw_norm), RMS norms of q and k over all
heads (attn_q_norm, attn_k_norm), NEOX-style RoPE (no permutation); a config with a sliding window
(OLMo 3) also gets the per-layer sliding-window pattern.
"""

from __future__ import annotations

import gguf

from pocketquant.convert.families import register
from pocketquant.convert.families.base import Family
from pocketquant.convert.metadata import GGUFMetadata


@register
class Olmo2Family(Family):
    architectures = ("Olmo2ForCausalLM", "Olmo3ForCausalLM")
    gguf_arch = gguf.MODEL_ARCH.OLMO2
    label = "OLMo 2"

    def set_gguf_parameters(self, meta: GGUFMetadata) -> None:
        super().set_gguf_parameters(meta)
        if "sliding_window" in self.hparams:
            meta.add_sliding_window(self.hparams["sliding_window"])
            if "layer_types" in self.hparams:
                pattern = [t == "sliding_attention" for t in self.hparams["layer_types"]]
            else:  # OLMo 3's default: every fourth layer global
                pattern = [(i + 1) % 4 != 0 for i in range(self.hparams["num_hidden_layers"])]
            meta.add_sliding_window_pattern(pattern)
