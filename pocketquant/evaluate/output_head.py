"""How a model family turns its final hidden states (after the last norm) into logits.

The evaluation stores the base model's final hidden states and recomputes the exact base logits
from them, so it must apply the family's output transform exactly as transformers does:

  family                 transform (transformers' *ForCausalLM.forward)
  Llama, Mistral, Qwen,  logits = hidden @ W^T                      (W = lm_head, or the token
  Phi-3, OLMo 2                                                      embedding when tied)
  Phi-2                  logits = hidden @ W^T + b                  (lm_head has a bias)
  Granite                logits = (hidden @ W^T) / logits_scaling
  Cohere, Cohere 2       logits = (hidden @ W^T) * logit_scale
  Gemma 2, Gemma 3       logits = cap * tanh((hidden @ W^T) / cap)  (final_logit_softcapping)

`output_head(config)` reads that from an HF config dict (missing keys take the defaults of the
family's transformers config class, e.g. Gemma 2's softcap 30); `OutputHead.apply` computes it.

This is the one definition of a family's output transform: it serves every architecture the
reference can run (native families and those only the llamacpp backend converts, e.g. Cohere),
and it is bit-exact with transformers (Granite divides by logits_scaling; multiplying by its
inverse would round differently). The native converter does not repeat it: each family writes the
GGUF keys llama.cpp applies the same transform from (final_logit_softcapping, logit_scale, the
output.bias tensor), and tests/families/test_family_floor.py checks, per family, that llama.cpp
on our F32 GGUF agrees with the reference built through this head.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import torch

# Where the token embedding lives: *ForCausalLM checkpoints, and multimodal wrappers (Gemma 3).
EMBEDDING_NAMES = ("model.embed_tokens.weight", "model.language_model.embed_tokens.weight")
LM_HEAD = "lm_head.weight"
LM_HEAD_BIAS = "lm_head.bias"


@dataclass(frozen=True)
class OutputHead:
    """The output projection and transform of one model: logits = transform(hidden @ W^T + b)."""

    tied: bool  # W is the token embedding (tie_word_embeddings), else lm_head.weight
    bias: bool = False  # lm_head has a bias (Phi-2)
    logit_scale: float | None = None  # logits *= logit_scale (Cohere)
    logits_scaling: float | None = None  # logits /= logits_scaling (Granite)
    softcap: float | None = None  # cap * tanh(logits / cap) (Gemma 2/3 final_logit_softcapping)

    @property
    def is_identity(self) -> bool:
        """True when logits are plain hidden @ W^T (no bias, scale or soft-cap)."""
        return not self.bias and self.logit_scale is None and self.logits_scaling is None and not self.softcap

    @property
    def weight_names(self) -> tuple[str, ...]:
        """Checkpoint tensors that may hold W, in order of preference."""
        return EMBEDDING_NAMES if self.tied else (LM_HEAD,)

    def weight_name(self, available: Collection[str]) -> str | None:
        return next((n for n in self.weight_names if n in available), None)

    def apply(
        self, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits of `hidden` [n, d] for the vocabulary rows in `weight` [v, d] (and `bias` [v]).

        Each logit depends on its own row of W only, so a vocabulary slice of W gives the same
        numbers as the whole matrix; the ops are transformers' own (matmul, bias through
        F.linear as nn.Linear does, then scale, then soft-cap), in float32."""
        logits = hidden @ weight.T if bias is None else torch.nn.functional.linear(hidden, weight, bias)
        if self.logit_scale is not None:
            logits = logits * self.logit_scale
        if self.logits_scaling is not None:
            logits = logits / self.logits_scaling
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def describe(self) -> dict[str, Any]:
        """The non-identity parts, for metadata and messages ({} for a plain Llama head)."""
        out: dict[str, Any] = {}
        if self.bias:
            out["bias"] = True
        if self.logit_scale is not None:
            out["logit_scale"] = self.logit_scale
        if self.logits_scaling is not None:
            out["logits_scaling"] = self.logits_scaling
        return out


def _class_defaults(model_type: str | None) -> Any:
    """The family's transformers config with its defaults (None for a type transformers lacks)."""
    if not model_type:
        return None
    from transformers import AutoConfig

    try:
        return AutoConfig.for_model(model_type)
    except (KeyError, ValueError):
        return None


def output_head(config: dict[str, Any]) -> OutputHead:
    """The output head an HF config.json (as a dict) describes."""
    defaults = _class_defaults(config.get("model_type"))
    text = config.get("text_config") or config  # multimodal wrappers keep the LM's keys here
    text_defaults = defaults.get_text_config() if defaults is not None else None

    def key(name: str, where: dict[str, Any] = text) -> Any:
        if name in where:
            return where[name]
        source = text_defaults if where is text else defaults
        return getattr(source, name, None)

    tied = key("tie_word_embeddings", config)
    if tied is None:
        tied = key("tie_word_embeddings")
    arch = " ".join(config.get("architectures") or [])
    scale = key("logit_scale")
    scaling = key("logits_scaling")
    return OutputHead(
        tied=bool(tied),
        bias=config.get("model_type") == "phi" or "PhiForCausalLM" in arch.split(),
        logit_scale=float(scale) if scale is not None else None,
        logits_scaling=float(scaling) if scaling is not None else None,
        softcap=float(key("final_logit_softcapping") or 0) or None,
    )
