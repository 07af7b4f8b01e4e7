"""The straightforward whole-model computations that the layer-by-layer code replaced.

Tests use them as oracles: the streamed base reference and the streamed calibration must give the
same bits as a fully loaded float32 transformers model doing the work in one forward per chunk
(which is what pocketquant did before streaming, and what does not fit in memory for a 3B model).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np


def load_float32(model_dir: str | os.PathLike[str]) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, device_map="cpu").eval()


def final_hidden_states(model: Any, sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
    """`model.base_model(input_ids)` per sequence: final hidden states (after the last norm)."""
    import torch

    out = []
    with torch.inference_mode():
        for s in sequences:
            ids = torch.from_numpy(np.asarray(s, dtype=np.int64))[None]
            out.append(model.base_model(input_ids=ids, use_cache=False).last_hidden_state[0].numpy().copy())
    return out


def activation_sums(model: Any, chunks: Sequence[np.ndarray], *, include_output: bool = False):  # noqa: ANN201
    """pocketquant.calibrate's statistics computed with hooks on the whole model, one full forward
    per chunk (the pre-streaming implementation) -> calibrate.ActivationStats."""
    import torch

    from pocketquant.calibrate import ActivationStats, gguf_weight_name

    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook_for(name: str):  # noqa: ANN202
        def hook(_module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).to(torch.float64)
            sums[name] = sums[name] + (x * x).sum(dim=0) if name in sums else (x * x).sum(dim=0)
            counts[name] = counts.get(name, 0) + x.shape[0]

        return hook

    handles = []
    for module_name, module in model.named_modules():
        name = gguf_weight_name(module_name) if isinstance(module, torch.nn.Linear) else None
        if name is not None and (
            name.startswith("blk.") or (include_output and name == "output.weight" and not tied)
        ):
            handles.append(module.register_forward_pre_hook(hook_for(name)))
    try:
        with torch.inference_mode():
            for ids in chunks:
                model(
                    input_ids=torch.from_numpy(np.asarray(ids, dtype=np.int64)).reshape(1, -1),
                    use_cache=False,
                )
    finally:
        for h in handles:
            h.remove()
    return ActivationStats(
        sums={k: v.numpy() for k, v in sorted(sums.items())},
        counts=dict(sorted(counts.items())),
        n_chunks=len(chunks),
        chunk_size=int(np.asarray(chunks[0]).size),
    )


def transformers_nf4(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    blocksize: int = 64,
    double_quant: bool = True,
    compute_dtype: str = "bfloat16",
) -> None:
    """NF4 the way transformers does it (from_pretrained with a BitsAndBytesConfig, then
    save_pretrained): the whole 4-bit model in memory. pocketquant.nf4 streams it instead and must
    write the same bytes."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as F
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from pocketquant.models.checkpoint import save_checkpoint
    from pocketquant.nf4 import record_blocksize

    dtype = getattr(torch, compute_dtype)
    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_storage=torch.uint8,
    )
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, quantization_config=config, dtype=dtype, device_map="cpu"
    )
    if blocksize != 64:  # transformers has no block size setting: quantize again from the source
        with safe_open(os.path.join(model_dir, "model.safetensors"), framework="pt") as f:
            for name, module in model.named_modules():
                if isinstance(module, bnb.nn.Linear4bit):
                    w = module.weight
                    packed, state = F.quantize_4bit(
                        f.get_tensor(f"{name}.weight").to(dtype),
                        blocksize=blocksize,
                        compress_statistics=w.compress_statistics,
                        quant_type=w.quant_type,
                        quant_storage=w.quant_storage,
                    )
                    w.data, w.quant_state, w.blocksize = packed, state, blocksize
    save_checkpoint(model, AutoTokenizer.from_pretrained(model_dir), out_dir)
    record_blocksize(os.path.join(out_dir, "config.json"), blocksize)


def transformers_dequantize_nf4(nf4_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> None:
    """An NF4 checkpoint loaded whole in transformers, each 4-bit weight unpacked by bitsandbytes into
    a float32 model, saved with save_pretrained (the pre-streaming implementation of the NF4 chain)."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as F
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from pocketquant.models.checkpoint import save_checkpoint

    quantized = AutoModelForCausalLM.from_pretrained(nf4_dir, device_map="cpu")
    state = {}
    for name, module in quantized.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            w = module.weight
            state[f"{name}.weight"] = F.dequantize_4bit(w.data, w.quant_state).to(torch.float32)
            if module.bias is not None:
                state[f"{name}.bias"] = module.bias.detach().to(torch.float32)
    quant_parts = (".absmax", ".quant_map", ".nested_", ".quant_state")
    for name, tensor in quantized.state_dict().items():
        if name not in state and not any(p in name for p in quant_parts):
            state[name] = tensor.to(torch.float32)
    config = AutoConfig.from_pretrained(nf4_dir)
    del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(state, strict=False)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config = quantized.generation_config
    save_checkpoint(model, AutoTokenizer.from_pretrained(nf4_dir), out_dir)


def whole_model_reference(model_dir: str | os.PathLike[str], corpus: Any, *, n_ctx: int, n_chunks: int):  # noqa: ANN201
    """The base reference as pocketquant built it before streaming: the whole float32 model in
    transformers, one forward per chunk, the whole float32 output matrix for the NLL
    -> reference.BaseReference (same format and metadata)."""
    import hashlib

    import torch

    from pocketquant.evaluate.hf import TransformersModel
    from pocketquant.evaluate.reference import FORMAT, BaseReference, chunk_ids, corpus_ids
    from pocketquant.evaluate.scoring import score_rows

    model = TransformersModel(model_dir, threads=2)
    cfg = model.model.config
    softcap = getattr(cfg, "final_logit_softcapping", None)
    w = model.model.get_output_embeddings().weight.detach().float().contiguous()
    ids = corpus_ids(model, corpus, n_ctx, n_chunks)
    ch = chunk_ids(model, corpus, ids, n_ctx, n_chunks)
    hidden = np.stack(
        [h[ch.first :][: ch.n_scored] for h in final_hidden_states(model.model, list(ch.tokens))]
    )
    nll = np.empty((ch.n_chunks, ch.n_scored), np.float32)
    for i in range(ch.n_chunks):
        logits = torch.from_numpy(np.ascontiguousarray(hidden[i])) @ w.T
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        nll[i] = score_rows(logits.numpy(), ch.targets[i])[0].nll
    meta = {
        "format": FORMAT,
        "n_ctx": n_ctx,
        "chunks": ch.n_chunks,
        "first": ch.first,
        "add_bos": ch.add_bos,
        "bos_id": ch.bos_id,
        "n_vocab": model.n_vocab,
        "hidden_size": int(w.shape[1]),
        "output_shape": [int(x) for x in w.shape],
        "output_sha256": hashlib.sha256(w.numpy().tobytes()).hexdigest(),
        "output_softcap": softcap,
        "engine": model.engine,
        "model": model.name,
        "corpus": corpus.name,
        "corpus_sha256": corpus.sha256,
        "tokens_scored": ch.n_tokens_scored,
    }
    return BaseReference(ids=ids[: ch.n_chunks * n_ctx].copy(), nll=nll, hidden=hidden, meta=meta)
