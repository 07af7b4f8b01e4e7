"""IBM Granite 3.x (dense): `GraniteForCausalLM`.

A Llama (q/k permutation, same tensors) with four multipliers llama.cpp reads as keys:
embedding_multiplier (embedding scale), attention_multiplier (attention scale instead of
1/sqrt(head_dim)), residual_multiplier (residual scale) and logits_scaling (logits divided by it).
head_dim is ignored, as llama.cpp's converter does. Output transform (evaluate/output_head.py):
logits / logits_scaling.
"""

from __future__ import annotations

import gguf

from pocketquant.convert.families import register
from pocketquant.convert.families.llama import LlamaFamily
from pocketquant.convert.metadata import GGUFMetadata


@register
class GraniteFamily(LlamaFamily):
    architectures = ("GraniteForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.GRANITE
    label = "Granite"

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - Family's signature
        super().__init__(*args, **kwargs)
        self.hparams.pop("head_dim", None)

    def set_gguf_parameters(self, meta: GGUFMetadata) -> None:
        super().set_gguf_parameters(meta)
        hp = self.hparams
        for key, adder in (
            ("attention_multiplier", meta.add_attention_scale),
            ("embedding_multiplier", meta.add_embedding_scale),
            ("residual_multiplier", meta.add_residual_scale),
            ("logits_scaling", meta.add_logit_scale),
        ):
            if hp.get(key):
                adder(hp[key])
