"""Tiny random-weight HF checkpoints (config.json + model.safetensors, no tokenizer) of many model
families, built from transformers' own config classes in well under a second each.

Tests of the layer-by-layer forward and of the output transforms use them: each family is set up
so that what distinguishes it is exercised (sliding windows shorter than the test sequences, a
strong final-logit soft-cap, Granite's multipliers, Phi-2's lm_head bias, tied and untied heads).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# hidden 64, 2-4 layers, 4 query / 2 kv heads of 16, vocabulary 256 unless a family needs otherwise.
_COMMON: dict[str, Any] = {
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "initializer_range": 0.2,  # logits of a few units: transforms (soft-capping) change them visibly
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}

FAMILIES: dict[str, dict[str, Any]] = {
    "llama": {"tie_word_embeddings": False},
    "mistral": {"sliding_window": 8, "tie_word_embeddings": False},
    "qwen2": {"tie_word_embeddings": True},  # q/k/v biases
    "qwen3": {"head_dim": 16, "tie_word_embeddings": True},  # q/k norms
    "gemma": {"head_dim": 16, "num_hidden_layers": 2},  # embedding scale sqrt(hidden), tied
    "gemma2": {
        "head_dim": 16,
        "sliding_window": 8,
        "final_logit_softcapping": 2.0,
        "attn_logit_softcapping": 20.0,
        "query_pre_attn_scalar": 16,
        "num_hidden_layers": 4,
    },
    "gemma3_text": {
        "head_dim": 16,
        "sliding_window": 8,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        "final_logit_softcapping": 2.0,
        "query_pre_attn_scalar": 16,
        "num_hidden_layers": 4,
    },
    "phi": {"partial_rotary_factor": 0.5, "num_key_value_heads": 4},  # parallel block, lm_head bias
    "phi3": {"tie_word_embeddings": False},  # fused qkv and gate_up
    "olmo2": {"tie_word_embeddings": False},  # post-norms, q/k norms
    "granite": {
        "embedding_multiplier": 12.0,
        "residual_multiplier": 0.22,
        "attention_multiplier": 0.0625,
        "logits_scaling": 8.0,
        "tie_word_embeddings": True,
    },
    "cohere": {"logit_scale": 0.5, "use_qk_norm": False},  # parallel block, logit scale, tied
}


def build_random_checkpoint(family: str, out_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """A random float32 checkpoint of `family` (a key of FAMILIES) in out_dir; returns out_dir."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out = Path(out_dir)
    config = AutoConfig.for_model(family, **{**_COMMON, **FAMILIES[family]})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                # Gemma/OLMo norms are zero- or one-initialized; random ones exercise them.
                p.copy_(torch.randn_like(p) * 0.3 + (0.0 if family.startswith("gemma") else 1.0))
            elif name.endswith(".bias"):
                p.copy_(torch.randn_like(p) * 0.1)
    model.save_pretrained(out, safe_serialization=True)
    return out
