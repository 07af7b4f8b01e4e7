"""A transformers causal LM run one decoder layer at a time, its weights read from disk per layer.

The model is built by transformers itself on the meta device (parameters without memory; buffers
such as rotary frequencies and Gemma's embedding scale are real), so every family transformers
supports runs its own code: Llama, Mistral, Qwen 2/3, Gemma 1/2/3 (sliding windows, embedding
scale), Phi-2 (parallel block), Phi-3, OLMo 2, Granite (multipliers), ...

`final_hidden(sequences)` does, for a batch of token sequences:
  1. the embeddings of just the tokens the sequences use (rows read from the checkpoint);
  2. a capture pass per sequence through the model's own forward with every decoder layer replaced
     by a recorder: what the model hands layer i (attention mask, rotary embeddings, positions,
     per-layer sliding-window masks) is kept, nothing is computed;
  3. for each layer in turn: its weights read (float32), every sequence pushed through it, weights
     freed;
  4. a tail pass through the model's own forward whose last layer returns the streamed hidden
     states, so the final norm (and anything else the family does after its layers) is its own.
Each sequence runs with the shapes and ops of a whole-model forward, so the results are the same
bits as `model.base_model(input_ids)` on a fully loaded float32 model.

Peak memory: one layer's float32 weights + the hidden states of all sequences (20 chunks of 512 x
3072 floats is 126 MB) + one sequence's activations inside a layer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pocketquant.errors import ConfigError
from pocketquant.layerwise.weights import CheckpointWeights

# Called with (layer index, the materialized layer, its dotted name in the model) before any sequence
# runs through it; returns hook handles to remove afterwards (calibration's activation hooks).
LayerHook = Callable[[int, torch.nn.Module, str], list[Any]]


class _StopForward(Exception):
    """Raised by the last recorder: the capture pass has what it needs."""


class _Recorder(torch.nn.Module):
    """Stands in for decoder layer `index`: records the arguments the model passes to it."""

    def __init__(self, index: int, calls: list[Any], *, last: bool, replace: torch.Tensor | None = None):
        super().__init__()
        self.index, self.calls, self.last, self.replace = index, calls, last, replace

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.replace is not None:  # tail pass: hand the streamed states to the model's own tail
            return self.replace if self.last else hidden_states
        self.calls[self.index] = (hidden_states if self.index == 0 else None, args, kwargs)
        if self.last:
            raise _StopForward
        return hidden_states


def _set_parameter(module: torch.nn.Module, dotted: str, value: torch.Tensor) -> None:
    owner, _, leaf = dotted.rpartition(".")
    target = module.get_submodule(owner) if owner else module
    setattr(target, leaf, torch.nn.Parameter(value, requires_grad=False))


class LayerwiseModel:
    """An HF checkpoint directory as a float32 transformers model whose weights stay on disk."""

    def __init__(self, model_dir: str | os.PathLike[str]):
        import transformers
        from accelerate import init_empty_weights

        self.model_dir = Path(model_dir)
        transformers.logging.set_verbosity_error()
        try:
            self.config = transformers.AutoConfig.from_pretrained(self.model_dir)
            # Parameters on meta (no memory), buffers real: rotary inv_freq, embed_scale, ...
            with init_empty_weights(include_buffers=False):
                self.model = transformers.AutoModelForCausalLM.from_config(self.config, dtype=torch.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"transformers cannot build the model of {self.model_dir}: {exc}") from exc
        self.model.eval()
        self.weights = CheckpointWeights(self.model_dir)
        names = {id(m): n for n, m in self.model.named_modules()}
        self.base = self.model.base_model
        self.base_name = names[id(self.base)]
        layers = getattr(self.base, "layers", None)
        if not isinstance(layers, torch.nn.ModuleList):
            raise ConfigError(
                f"{self.model_dir}: {type(self.base).__name__} has no `layers` list of decoder layers"
            )
        self.layers = layers
        self.embedding = self.model.get_input_embeddings()
        self.embedding_name = names[id(self.embedding)]

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def layer_name(self, i: int) -> str:
        return f"{self.base_name}.layers.{i}"

    # -- weights ---------------------------------------------------------------------------------
    def materialize(self, module: torch.nn.Module, prefix: str) -> None:
        """Read `module`'s parameters (float32) from the checkpoint."""
        for name, _ in list(module.named_parameters()):
            _set_parameter(module, name, self.weights.read(f"{prefix}.{name}", torch.float32))

    @staticmethod
    def release(module: torch.nn.Module) -> None:
        """Put `module`'s parameters back on the meta device (frees their memory)."""
        for name, p in list(module.named_parameters()):
            _set_parameter(module, name, torch.empty(p.shape, dtype=p.dtype, device="meta"))

    def _tail_parameters(self) -> list[tuple[str, torch.nn.Module]]:
        """(name, module) of the base model's own modules that hold parameters outside the decoder
        layers and the embedding: the final norm (Phi-2: final_layernorm with a bias)."""
        out = []
        for name, child in self.base.named_children():
            if child is self.layers or child is self.embedding:
                continue
            if any(True for _ in child.parameters()):
                out.append((f"{self.base_name}.{name}", child))
        return out

    # -- forward ---------------------------------------------------------------------------------
    def _embed(self, sequences: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """inputs_embeds [1, T, d] per sequence through the family's own embedding module, with
        only the rows the sequences use read from the checkpoint."""
        flat = np.concatenate([np.asarray(s, dtype=np.int64).ravel() for s in sequences])
        used, local = np.unique(flat, return_inverse=True)
        rows = self.weights.read_row_set(f"{self.embedding_name}.weight", used, torch.float32)
        emb = self.embedding
        padding_idx, meta_weight = getattr(emb, "padding_idx", None), emb.weight
        _set_parameter(emb, "weight", rows)
        emb.padding_idx = None  # it indexes the full vocabulary; only gradients use it
        try:
            out, at = [], 0
            for s in sequences:
                n = np.asarray(s).size
                ids = torch.from_numpy(local[at : at + n].astype(np.int64)).reshape(1, n)
                out.append(emb(ids))
                at += n
        finally:
            emb.padding_idx, emb.weight = padding_idx, meta_weight
        return out

    def _with_recorders(self, calls: list[Any], replace: torch.Tensor | None = None) -> torch.nn.ModuleList:
        n = self.n_layers
        return torch.nn.ModuleList([_Recorder(i, calls, last=i == n - 1, replace=replace) for i in range(n)])

    def _run_base(self, stand_in: torch.nn.ModuleList, inputs_embeds: torch.Tensor) -> Any:
        real = self.base.layers
        self.base.layers = stand_in
        try:
            return self.base(inputs_embeds=inputs_embeds, use_cache=False)
        finally:
            self.base.layers = real

    def final_hidden(
        self,
        sequences: Sequence[np.ndarray],
        *,
        on_layer: LayerHook | None = None,
        progress: bool = True,
        desc: str = "layers",
    ) -> list[torch.Tensor]:
        """Final hidden states (after the last norm) float32 [T, d] of each token sequence."""
        if not len(sequences):
            return []
        with torch.inference_mode():
            embeds = self._embed(sequences)
            calls: list[list[Any]] = []
            hidden: list[torch.Tensor] = []
            for e in embeds:
                rec: list[Any] = [None] * self.n_layers
                try:
                    self._run_base(self._with_recorders(rec), e)
                except _StopForward:
                    pass
                if rec[-1] is None or rec[0] is None:
                    raise ConfigError(
                        f"{self.model_dir}: {type(self.base).__name__}.forward did not call all "
                        f"{self.n_layers} decoder layers in order"
                    )
                hidden.append(rec[0][0])
                calls.append(rec)
            del embeds
            for i in tqdm(range(self.n_layers), desc=desc, unit="layer", disable=not progress, leave=False):
                layer, name = self.layers[i], self.layer_name(i)
                self.materialize(layer, name)
                handles = on_layer(i, layer, name) if on_layer else []
                try:
                    for s, rec in enumerate(calls):
                        _, args, kwargs = rec[i]
                        hidden[s] = layer(hidden[s], *args, **kwargs)
                finally:
                    for h in handles:
                        h.remove()
                    self.release(layer)
            tail = self._tail_parameters()
            for name, module in tail:
                self.materialize(module, name)
            try:
                finals = []
                for s, h in enumerate(hidden):
                    zeros = torch.zeros_like(h)  # only its shape and dtype matter to masks and rotary
                    out = self._run_base(self._with_recorders([None] * self.n_layers, replace=h), zeros)
                    finals.append(out.last_hidden_state[0])
                    hidden[s] = None  # type: ignore[call-overload]
            finally:
                for _, module in tail:
                    self.release(module)
        return finals
