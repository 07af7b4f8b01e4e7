"""Tiny random checkpoints of every native model family, with real tokenizers, built offline in
about a second each.

Tests of every area use them instead of real models where the numbers do not matter but the
structure does. `build_tiny_model(dir, family)` makes one of TINY_FAMILIES: transformers' own config
class of the family, shrunk (hidden 256 so K-quants apply, 2 layers, a ~500-token vocabulary), the
family's tokenizer kind and special tokens (tiny_tokenizers.py) and its real chat template
(chat_templates/). `build_tiny_llama` is the small Llama most other areas use (hidden 64 by
default). Same arguments -> byte-identical directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pocketquant.atomic import atomic_path
from pocketquant.models.checkpoint import save_checkpoint
from pocketquant.testing.tiny_tokenizers import (
    BPE_STYLES,
    LLAMA3_SPECIAL_TOKENS,
    SPM_STYLES,
    TINY_CORPUS,
    build_bpe_tokenizer,
    build_spm_tokenizer,
)

__all__ = [
    "LLAMA3_CHAT_TEMPLATE",
    "LLAMA3_SPECIAL_TOKENS",
    "SPREAD_CONFIG",
    "TINY_CORPUS",
    "TINY_FAMILIES",
    "TinyFamily",
    "build_bpe_tokenizer",
    "build_spm_tokenizer",
    "build_tiny_gpt2",
    "build_tiny_llama",
    "build_tiny_model",
    "chat_template",
]

CHAT_TEMPLATES = Path(__file__).parent / "chat_templates"
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim"
    " + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def chat_template(name: str) -> str:
    """A real chat template from chat_templates/ (see its README for the sources)."""
    return (CHAT_TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")


@dataclass(frozen=True)
class TinyFamily:
    """How to build the tiny checkpoint of one family (or one variant of it)."""

    architecture: str  # HF architectures entry; the native converter's registry key
    config_class: str  # transformers config class
    model_class: str  # transformers model class
    tokenizer: tuple[Literal["bpe", "spm"], str]  # kind, style (tiny_tokenizers.py)
    chat_template: str | None  # chat_templates/<name>.jinja
    config: dict[str, Any] = field(default_factory=dict)  # beyond the common tiny shape
    vocab_padding: int = 0  # config vocab_size beyond the tokenizer's (Phi-3 pads to a multiple of 32)

    @property
    def pre(self) -> str | None:
        """llama.cpp pre-tokenizer name the tiny vocabulary mimics (BPE only)."""
        kind, style = self.tokenizer
        return BPE_STYLES[style].pre if kind == "bpe" else None


_LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}
# Phi-3.5-style LongRoPE: per-frequency factors (head_dim 64 -> 32 of each), short below 64 tokens
_LONGROPE = {
    "rope_type": "longrope",
    "short_factor": [1.0 + 0.05 * i for i in range(32)],
    "long_factor": [1.5 + 0.25 * i for i in range(32)],
}

TINY_FAMILIES: dict[str, TinyFamily] = {
    # Llama 3.2: byte-level BPE, llama3 RoPE scaling, tied embeddings
    "llama": TinyFamily(
        "LlamaForCausalLM", "LlamaConfig", "LlamaForCausalLM", ("bpe", "llama3"), "llama3.2",
        {"rope_scaling": _LLAMA3_ROPE, "tie_word_embeddings": True},
    ),
    # TinyLlama / Llama 2: SentencePiece, untied, no scaling
    "llama-spm": TinyFamily(
        "LlamaForCausalLM", "LlamaConfig", "LlamaForCausalLM", ("spm", "llama2"), "zephyr",
        {"tie_word_embeddings": False},
    ),
    "mistral": TinyFamily(
        "MistralForCausalLM", "MistralConfig", "MistralForCausalLM", ("spm", "mistral"), "mistral",
        {"tie_word_embeddings": False, "sliding_window": None, "rope_theta": 1000000.0},
    ),
    # Qwen2.5: qkv biases, tied
    "qwen2": TinyFamily(
        "Qwen2ForCausalLM", "Qwen2Config", "Qwen2ForCausalLM", ("bpe", "qwen2"), "qwen2.5",
        {"tie_word_embeddings": True, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6},
    ),
    # Qwen3: q/k norms, head_dim independent of hidden (8 x 64 = 512 > 256), untied
    "qwen3": TinyFamily(
        "Qwen3ForCausalLM", "Qwen3Config", "Qwen3ForCausalLM", ("bpe", "qwen3"), "qwen3",
        {"tie_word_embeddings": False, "num_attention_heads": 8, "head_dim": 64, "rope_theta": 1000000.0},
    ),
    # Gemma (2b): multi-query attention, norm + 1, GeLU
    "gemma": TinyFamily(
        "GemmaForCausalLM", "GemmaConfig", "GemmaForCausalLM", ("spm", "gemma"), "gemma2",
        {"num_key_value_heads": 1, "head_dim": 64, "hidden_activation": "gelu_pytorch_tanh"},
    ),
    # Gemma 2: soft-capping (attention and final logits), sliding window, pre/post norms
    "gemma2": TinyFamily(
        "Gemma2ForCausalLM", "Gemma2Config", "Gemma2ForCausalLM", ("spm", "gemma"), "gemma2",
        {"head_dim": 64, "query_pre_attn_scalar": 64, "attn_logit_softcapping": 50.0,
         "final_logit_softcapping": 30.0, "sliding_window": 4096},
    ),
    # Gemma 3 (1b): q/k norms, local/global RoPE bases, sliding window
    "gemma3": TinyFamily(
        "Gemma3ForCausalLM", "Gemma3TextConfig", "Gemma3ForCausalLM", ("spm", "gemma"), "gemma3",
        {"num_key_value_heads": 1, "head_dim": 64, "query_pre_attn_scalar": 64, "sliding_window": 512,
         "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0},
    ),
    # Phi-3.5-mini: fused qkv and gate_up, LongRoPE factors, added tokens, padded vocabulary
    "phi3": TinyFamily(
        "Phi3ForCausalLM", "Phi3Config", "Phi3ForCausalLM", ("spm", "phi3"), "phi3.5",
        {"tie_word_embeddings": False, "rope_scaling": _LONGROPE, "original_max_position_embeddings": 64,
         "sliding_window": 255},
        vocab_padding=10,
    ),
    # Phi-2: parallel attention/MLP block, LayerNorm with biases, partial rotary, lm_head bias
    "phi2": TinyFamily(
        "PhiForCausalLM", "PhiConfig", "PhiForCausalLM", ("bpe", "gpt2"), None,
        {"tie_word_embeddings": False, "intermediate_size": 1024, "num_key_value_heads": 4,
         "partial_rotary_factor": 0.5, "layer_norm_eps": 1e-5},
    ),
    # OLMo 2: q/k norms over all heads, norms after attention/MLP, cl100k-style vocabulary
    "olmo2": TinyFamily(
        "Olmo2ForCausalLM", "Olmo2Config", "Olmo2ForCausalLM", ("bpe", "dbrx"), "olmo2",
        {"tie_word_embeddings": False, "rope_theta": 500000.0},
    ),
    # Granite 3.3: embedding/attention/residual multipliers, logit scaling
    "granite": TinyFamily(
        "GraniteForCausalLM", "GraniteConfig", "GraniteForCausalLM", ("bpe", "smollm"), "granite3.3",
        {"tie_word_embeddings": True, "embedding_multiplier": 12.0, "attention_multiplier": 0.015625,
         "residual_multiplier": 0.22, "logits_scaling": 8.0, "rope_theta": 10000000.0},
    ),
}  # fmt: skip


# Overrides for tests that measure a distribution or need a varied greedy answer. The tiny Gemma 2/3
# checkpoints put nearly all probability on one token (entropy < 0.01 nats: their logits run into
# the soft-cap), where any two engines agree and Gemma 2's real soft-cap of 30 moves the KLD by 4e-4
# only. Smaller weights and a final soft-cap of 5 give ~5 nats of entropy and a soft-cap that decides
# the distribution (KL 0.2 without it); Gemma 3 then takes its optional soft-cap path too.
SPREAD_CONFIG: dict[str, dict[str, Any]] = {
    "gemma2": {"initializer_range": 0.05, "final_logit_softcapping": 5.0},
    "gemma3": {"initializer_range": 0.05, "final_logit_softcapping": 5.0},
}


def _tokenizer(tmp: Path, family: TinyFamily) -> Any:
    kind, style = family.tokenizer
    tok = build_bpe_tokenizer(tmp, style=style) if kind == "bpe" else build_spm_tokenizer(tmp, style=style)
    if family.chat_template:
        tok.chat_template = chat_template(family.chat_template)
    return tok


def _randomize(model: Any, seed: int) -> None:
    """Norm weights away from their neutral value and biases away from zero, so a wrong layout,
    shift or mapping changes the logits clearly."""
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                param.copy_(1.0 + 0.3 * torch.randn(param.shape, generator=gen))
            elif name.endswith(".bias"):
                param.copy_(0.1 * torch.randn(param.shape, generator=gen))


def _save(model: Any, tok: Any, tmp: Path, name: str, dtype: str, spm_add_bos: bool | None = None) -> None:
    import torch
    from transformers import GenerationConfig

    model = model.to(getattr(torch, dtype)).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, do_sample=False
    )
    model.config.name_or_path = name
    tok.name_or_path = name
    save_checkpoint(model, tok, tmp)
    _record_added_tokens(tmp, spm_add_bos)


def _record_added_tokens(out_dir: Path, add_bos: bool | None) -> None:
    """List the added tokens in tokenizer_config.json (`added_tokens_decoder`), and for
    SentencePiece tokenizers `add_bos_token`/`add_eos_token`, as the families' hub checkpoints do
    (transformers 5 keeps them in tokenizer.json only); llama.cpp's SentencePiece conversion reads
    them from there."""
    added = json.loads((out_dir / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]
    path = out_dir / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    keys = ("content", "lstrip", "normalized", "rstrip", "single_word", "special")
    config["added_tokens_decoder"] = {str(t["id"]): {k: t[k] for k in keys} for t in added}
    if add_bos is not None:
        config.update(add_bos_token=add_bos, add_eos_token=False)
    path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


FAMILY_TEMPLATE = "<the family's>"  # build_tiny_model's default chat template


def build_tiny_model(
    out_dir: str | os.PathLike[str],
    family: str,
    *,
    hidden_size: int = 256,
    intermediate_size: int = 512,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    seed: int = 0,
    dtype: str = "float32",
    chat_template: str | None = FAMILY_TEMPLATE,
    name: str | None = None,
    **config: Any,
) -> Path:
    """Write the tiny checkpoint of `family` (a key of TINY_FAMILIES) to `out_dir`.

    dtype: the weights' dtype on disk (float32, float16 or bfloat16). chat_template: the family's
    real one by default, another text, or None. name: recorded as the model's name (default
    tiny-FAMILY). config: overrides of the family's config values (e.g. tie_word_embeddings=False)."""
    import torch
    import transformers

    spec = TINY_FAMILIES[family]
    out_dir = Path(out_dir)
    with atomic_path(out_dir, directory=True) as tmp:
        tok = _tokenizer(tmp, spec)
        if chat_template != FAMILY_TEMPLATE:
            tok.chat_template = chat_template
        values: dict[str, Any] = {
            "vocab_size": len(tok) + spec.vocab_padding,
            "hidden_size": hidden_size,
            "intermediate_size": intermediate_size,
            "num_hidden_layers": num_hidden_layers,
            "num_attention_heads": num_attention_heads,
            "num_key_value_heads": num_key_value_heads,
            "max_position_embeddings": 256,
            "initializer_range": 0.15,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
            **spec.config,
            **config,
        }
        cfg = getattr(transformers, spec.config_class)(**values)
        cfg.architectures = [spec.architecture]
        torch.manual_seed(seed)
        model = getattr(transformers, spec.model_class)(cfg)
        _randomize(model, seed)
        kind, style = spec.tokenizer
        add_bos = SPM_STYLES[style].add_bos if kind == "spm" else None
        _save(model, tok, tmp, name or f"tiny-{family}", dtype, add_bos)
    return out_dir


def build_tiny_llama(
    out_dir: str | os.PathLike[str],
    *,
    tokenizer: Literal["bpe", "spm"] = "bpe",
    rope_scaling: Literal["llama3", "linear"] | None = "llama3",
    tie_word_embeddings: bool = True,
    hidden_size: int = 64,
    intermediate_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    seed: int = 0,
    dtype: str = "float32",
) -> Path:
    """The small Llama of most other areas' tests (hidden 64, GQA 4/2, llama3 RoPE scaling):
    byte-level BPE with Llama 3's pre-tokenizer and a short Llama 3 chat template, or a Llama 2
    style SentencePiece tokenizer without one."""
    if tokenizer not in ("bpe", "spm"):
        raise ValueError(f"tokenizer must be 'bpe' or 'spm', not {tokenizer!r}")
    scaling = {"llama3": _LLAMA3_ROPE, "linear": {"rope_type": "linear", "factor": 2.0}, None: None}[
        rope_scaling
    ]
    return build_tiny_model(
        out_dir,
        "llama" if tokenizer == "bpe" else "llama-spm",
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        seed=seed,
        dtype=dtype,
        chat_template=LLAMA3_CHAT_TEMPLATE if tokenizer == "bpe" else None,
        name="tiny-llama",
        rope_scaling=scaling,
        tie_word_embeddings=tie_word_embeddings,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
    )


def build_tiny_gpt2(out_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """A tiny GPT2LMHeadModel: an architecture llama.cpp's converter handles and ours does not
    (the `convert.backend=llamacpp` case), with a GPT-2 style byte-level BPE tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    out_dir = Path(out_dir)
    with atomic_path(out_dir, directory=True) as tmp:
        tok = build_bpe_tokenizer(tmp, style="gpt2")
        config = GPT2Config(
            vocab_size=len(tok),
            n_embd=256,
            n_layer=2,
            n_head=4,
            n_positions=256,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            initializer_range=0.15,
        )
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
        _randomize(model, seed)
        _save(model, tok, tmp, "tiny-gpt2", "float32")
        # GPT-2's hub config.json carries n_ctx (llama.cpp's converter reads it); transformers 5 drops it
        path = tmp / "config.json"
        config_json = json.loads(path.read_text(encoding="utf-8"))
        config_json["n_ctx"] = config.n_positions
        path.write_text(json.dumps(config_json, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out_dir
