"""What every model family shares, and the hooks a family module overrides.

A family (one module in this package) turns an HF checkpoint of its architectures into what
llama.cpp expects: hyperparameters -> GGUF keys (`set_gguf_parameters`), the tokenizer
(`set_vocab`), tensor names (gguf-py's TensorNameMap for the GGUF architecture), tensor transforms
(`transform`) and generated tensors (`extra_tensors`). The defaults follow llama.cpp's converter
(`TextModel` in convert_hf_to_gguf.py's conversion/base.py); a family holds only what differs.

A family's output transform (lm_head bias, logit scaling, final soft-capping) is not declared
here: the GGUF carries it as the keys llama.cpp reads (`set_gguf_parameters`), and evaluation's
one definition of it for every architecture, native or not, is pocketquant/evaluate/output_head.py
(read from config.json). tests/families/test_family_floor.py checks the two agree per family.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gguf
import numpy as np

from pocketquant.convert import vocab
from pocketquant.convert.errors import ConversionError
from pocketquant.convert.metadata import GGUFMetadata

if TYPE_CHECKING:
    import torch

_MISSING = object()


class Family:
    """Base class of the family modules. Subclasses set `architectures`, `gguf_arch` and `label`."""

    architectures: ClassVar[tuple[str, ...]] = ()  # HF `architectures` names this family converts
    gguf_arch: ClassVar[gguf.MODEL_ARCH]
    label: ClassVar[str] = ""  # human name for messages and docs, e.g. "Qwen2 / Qwen2.5"
    # HF names llama.cpp drops before mapping (buffers that carry nothing for it)
    skipped_suffixes: ClassVar[tuple[str, ...]] = (
        ".attention.masked_bias",
        ".attention.bias",
        ".rotary_emb.inv_freq",
    )

    def __init__(self, model_dir: Path, hparams: dict[str, Any], ftype: gguf.LlamaFileType) -> None:
        self.model_dir = Path(model_dir)
        self.hparams = dict(hparams)
        if "text_config" in self.hparams:  # multimodal wrappers: the text model's keys at the top
            self.hparams = {**self.hparams, **self.hparams["text_config"]}
        self.ftype = ftype
        self.block_count = int(self.find_hparam(["n_layers", "num_hidden_layers", "n_layer", "num_layers"]))
        self.tensor_map = gguf.get_tensor_name_map(self.gguf_arch, self.block_count)
        self.rope_parameters = self._rope_parameters()

    @property
    def arch_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.gguf_arch]

    # -------------------------------------------------------------------------- hyperparameters

    def find_hparam(self, keys: Sequence[str], optional: bool = False) -> Any:
        """The value of the first of `keys` present in the config (None allowed as a value)."""
        for key in keys:
            if key in self.hparams:
                return self.hparams[key]
        if optional:
            return None
        raise ConversionError(
            f"{self.model_dir / 'config.json'}: missing key {keys[0]!r}"
            + (f" (or any of {', '.join(repr(k) for k in keys[1:])})" if len(keys) > 1 else "")
        )

    def _rope_parameters(self) -> dict[str, Any]:
        """RoPE settings in one dict whatever the config layout (transformers 5's `rope_parameters`
        or the older `rope_scaling` + top-level keys), as llama.cpp's converter collects them."""
        params = dict(self.hparams.get("rope_parameters", self.hparams.get("rope_scaling")) or {})
        theta = self.find_hparam(
            ["global_rope_theta", "rope_global_theta", "rope_theta_global", "rope_theta", "rotary_emb_base"],
            True,
        )
        local_theta = self.find_hparam(
            [
                "local_rope_theta",
                "rope_local_theta",
                "rope_theta_local",
                "swa_rope_theta",
                "rope_local_base_freq",
            ],
            True,
        )
        partial = self.find_hparam(["partial_rotary_factor", "rope_pct", "rope_percent"], True)
        orig_ctx = self.find_hparam(["original_max_position_embeddings"], True)
        if "full_attention" not in params and "sliding_attention" not in params:
            if local_theta is not None:
                params["sliding_attention"] = {"rope_theta": local_theta}
            if "rope_theta" not in params and theta is not None:
                params["rope_theta"] = theta
            if "rope_type" not in params and params.get("type") is not None:
                params["rope_type"] = params["type"]
            if "partial_rotary_factor" not in params and partial is not None:
                params["partial_rotary_factor"] = partial
            if "original_max_position_embeddings" not in params and orig_ctx is not None:
                params["original_max_position_embeddings"] = orig_ctx
        return params

    @property
    def global_rope(self) -> dict[str, Any]:
        """RoPE parameters of the full-attention layers."""
        return self.rope_parameters.get("full_attention", self.rope_parameters)

    def set_gguf_parameters(self, meta: GGUFMetadata) -> None:
        """The hyperparameters every decoder has (llama.cpp's TextModel.set_gguf_parameters)."""
        meta.add_block_count(self.block_count)
        for keys, adder in (
            (["max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length",
              "model_max_length"], meta.add_context_length),
            (["hidden_size", "n_embd", "dim"], meta.add_embedding_length),
            (["prefix_dense_intermediate_size", "dense_intermediate_size", "intermediate_size", "n_inner",
              "hidden_dim"], meta.add_feed_forward_length),
            (["num_attention_heads", "n_head", "n_heads"], meta.add_head_count),
            (["num_key_value_heads", "n_kv_heads"], meta.add_head_count_kv),
        ):  # fmt: skip
            value = self.find_hparam(keys, optional=True)
            if value is not None:
                adder(value)
        if self.hparams.get("is_causal") is False:
            meta.add_causal_attention(False)
        self._set_rope_scaling(meta)
        if (theta := self.global_rope.get("rope_theta")) is not None:
            meta.add_rope_freq_base(theta)
        if (local_theta := self.rope_parameters.get("sliding_attention", {}).get("rope_theta")) is not None:
            meta.add_rope_freq_base_swa(local_theta)
        if (rms_eps := self.find_hparam(["rms_norm_eps", "norm_eps"], optional=True)) is not None:
            meta.add_layer_norm_rms_eps(rms_eps)
        if (
            eps := self.find_hparam(["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"], True)
        ) is not None:
            meta.add_layer_norm_eps(eps)
        if (head_dim := self.hparams.get("head_dim")) is not None:
            meta.add_key_length(head_dim)
            meta.add_value_length(head_dim)
        meta.add_file_type(self.ftype)

    def _set_rope_scaling(self, meta: GGUFMetadata) -> None:
        rope = self.global_rope
        rope_type = rope.get("rope_type")
        if rope_type is None:
            return
        factor = rope.get("factor")
        if rope_type == "linear" and factor is not None:
            meta.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            meta.add_rope_scaling_factor(factor)
        elif rope_type == "yarn" and factor is not None:
            meta.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            meta.add_rope_scaling_factor(factor)
            if rope.get("original_max_position_embeddings") is None:
                raise ConversionError(
                    f"{self.model_dir / 'config.json'}: yarn RoPE scaling without "
                    "original_max_position_embeddings"
                )
            meta.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
            for key, adder in (
                ("extrapolation_factor", meta.add_rope_scaling_yarn_ext_factor),
                ("beta_fast", meta.add_rope_scaling_yarn_beta_fast),
                ("beta_slow", meta.add_rope_scaling_yarn_beta_slow),
            ):
                if rope.get(key) is not None:
                    adder(rope[key])
            if (attn := rope.get("attention_factor", rope.get("attn_factor"))) is not None:
                meta.add_rope_scaling_yarn_attn_factor(attn)
        elif rope_type in ("su", "longrope"):
            meta.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
        elif rope_type in ("default", "llama3"):
            pass  # llama3 scaling is the rope_freqs tensor (extra_tensors)
        else:
            raise ConversionError(
                f"{self.model_dir / 'config.json'}: RoPE scaling type {rope_type!r} is not supported by the "
                f"native {self.label} converter; convert with convert.backend=llamacpp"
            )

    def model_name(self, name: str) -> str:
        """general.name for the GGUF (some llama.cpp behaviour keys on it; see Phi-3)."""
        return name

    # -------------------------------------------------------------------------------- tokenizer

    def set_vocab(self, meta: GGUFMetadata) -> None:
        """Byte-level BPE (llama.cpp's default for a TextModel)."""
        vocab.add_gpt2_vocab(meta, self.model_dir, self.hparams)

    # ---------------------------------------------------------------------------------- tensors

    def skips(self, hf_name: str) -> bool:
        """Checkpoint tensors the GGUF leaves out."""
        return hf_name.endswith(self.skipped_suffixes)

    def gguf_name(self, hf_name: str) -> str:
        """GGUF name of an HF tensor (gguf-py's table for this architecture)."""
        name = self.tensor_map.get_name(key=hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ConversionError(
                f"{self.model_dir}: tensor {hf_name!r} has no GGUF name in a {self.label} model "
                f"(gguf architecture {self.arch_name!r})"
            )
        return name

    def kept_rows(self, hf_name: str, shape: tuple[int, ...]) -> int:
        """How many leading rows of the tensor go into the GGUF (all, except Gemma 3's embeddings)."""
        return shape[0] if shape else 1

    def transform_is_rowwise(self, hf_name: str) -> bool:
        """True when `transform` can run on any range of rows (so the tensor streams in chunks)."""
        return True

    def transform(self, hf_name: str, data: np.ndarray) -> np.ndarray:
        """Change a tensor's values for llama.cpp (q/k permutation, norm shift, ...); default: none."""
        return data

    def extra_tensors(self) -> Iterable[tuple[str, torch.Tensor]]:
        """Tensors llama.cpp needs that the checkpoint does not hold (rope_freqs, LongRoPE factors)."""
        return ()
