"""Qwen3 (dense: 0.6B to 32B).

Differs from Qwen2 (llama.cpp's Qwen3Model): per-head RMS norms of q and k (attn_q_norm,
attn_k_norm), no qkv biases, and head_dim set independently of hidden_size (written as
key_length/value_length by the shared defaults). Reranker checkpoints (Qwen3-Reranker) are not
converted natively.
"""

from __future__ import annotations

import gguf

from pocketquant.convert.errors import ConversionError
from pocketquant.convert.families import register
from pocketquant.convert.families.qwen2 import Qwen2Family


@register
class Qwen3Family(Qwen2Family):
    architectures = ("Qwen3ForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.QWEN3
    label = "Qwen3"

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - Family's signature
        super().__init__(*args, **kwargs)
        hints = " ".join(str(x) for x in (self.model_dir.name, self.hparams.get("_name_or_path", ""))).lower()
        if "reranker" in hints:
            raise ConversionError(
                f"{self.model_dir}: Qwen3 reranker checkpoints are not converted natively; "
                "use convert.backend=llamacpp"
            )
