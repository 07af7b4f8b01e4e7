"""Phi-2 (and Phi-1.5): `PhiForCausalLM`.

What differs from the shared defaults (llama.cpp's Phi2Model): one LayerNorm (with bias) feeds
attention and MLP in parallel; every linear layer, the norms and lm_head have biases (gguf-py's
table maps them, output.bias included); RoPE covers only `partial_rotary_factor` of each head;
separate q/k/v projections; no BOS is added. llama.cpp takes the MLP width as 4 x hidden_size,
so a checkpoint with another intermediate_size is refused (llama.cpp could not load it).
Output transform (evaluate/output_head.py): lm_head's bias.
"""

from __future__ import annotations

import gguf

from pocketquant.convert.errors import ConversionError
from pocketquant.convert.families import register
from pocketquant.convert.families.base import Family
from pocketquant.convert.metadata import GGUFMetadata


@register
class Phi2Family(Family):
    architectures = ("PhiForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.PHI2
    label = "Phi-2"

    def set_gguf_parameters(self, meta: GGUFMetadata) -> None:
        if "partial_rotary_factor" not in self.rope_parameters:
            raise ConversionError(f"{self.model_dir / 'config.json'}: missing key 'partial_rotary_factor'")
        rot_pct = self.rope_parameters["partial_rotary_factor"]
        n_embd = self.find_hparam(["hidden_size", "n_embd"])
        n_head = self.find_hparam(["num_attention_heads", "n_head"])
        n_ff = self.hparams.get("intermediate_size", 4 * n_embd)
        if n_ff != 4 * n_embd:
            raise ConversionError(
                f"{self.model_dir / 'config.json'}: intermediate_size {n_ff} is not 4 x hidden_size "
                f"{n_embd}; llama.cpp's Phi-2 graph assumes it"
            )
        meta.add_context_length(self.find_hparam(["n_positions", "max_position_embeddings"]))
        meta.add_embedding_length(n_embd)
        meta.add_feed_forward_length(4 * n_embd)
        meta.add_block_count(self.block_count)
        meta.add_head_count(n_head)
        meta.add_head_count_kv(n_head)
        meta.add_layer_norm_eps(self.find_hparam(["layer_norm_epsilon", "layer_norm_eps"]))
        meta.add_rope_dimension_count(int(rot_pct * n_embd) // n_head)
        meta.add_file_type(self.ftype)
        meta.add_add_bos_token(False)
