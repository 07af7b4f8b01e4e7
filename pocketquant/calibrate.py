"""Importance matrix from a transformers model, in llama.cpp's imatrix GGUF format.

What llama-imatrix records, per weight matrix of the decoder layers: for every input channel the
sum of squared activations entering the matmul, and how many rows (tokens) were seen. We get the
same numbers with forward pre-hooks on every nn.Linear while the calibration chunks (cut like
llama.cpp's: n_ctx tokens, BOS first when the model adds one) run through the full-precision model,
one decoder layer at a time (pocketquant.layerwise: one layer's float32 weights in memory).
The imatrix is per input column, so the q/k row permutation of the HF -> GGUF conversion does not
touch it; names map to GGUF tensor names with the converter's table.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pocketquant.atomic import atomic_path
from pocketquant.errors import ConfigError, ImatrixError, PocketquantError
from pocketquant.imatrix import save_imatrix
from pocketquant.process_usage import log_usage, return_freed_memory

if TYPE_CHECKING:
    from pocketquant.layerwise.forward import LayerwiseModel


@dataclass
class ActivationStats:
    sums: dict[str, np.ndarray]  # GGUF weight name -> float64 [in_features]: sum of x^2 per channel
    counts: dict[str, int]  # GGUF weight name -> rows (tokens) seen
    n_chunks: int
    chunk_size: int


def gguf_weight_name(module_name: str) -> str | None:
    """GGUF weight name of an nn.Linear in an HF Llama model ("model.layers.3.self_attn.q_proj" ->
    "blk.3.attn_q.weight", "lm_head" -> "output.weight"); None for modules llama.cpp lacks."""
    from pocketquant.convert.hf_to_gguf import gguf_tensor_name

    try:
        return gguf_tensor_name(module_name + ".weight")
    except PocketquantError:
        return None


def collect_activation_stats(
    model: LayerwiseModel,
    chunks: Iterable[np.ndarray] | np.ndarray,
    *,
    include_output: bool = False,
    progress: bool = True,
) -> ActivationStats:
    """Run each chunk (1-D token ids) through `model`, one decoder layer at a time, and sum the
    squared inputs of the layer's linears (forward pre-hooks, registered while the layer is in memory).

    Only decoder-layer matrices (blk.*) are recorded, as llama-imatrix does by default; with
    include_output also the untied lm_head (output.weight, llama-imatrix --process-output), whose
    input is the final hidden state. Per matrix, chunks are summed in order, as a whole-model forward
    per chunk would: the same float64 sums, bit for bit."""
    import torch

    chunk_list = [np.asarray(c, dtype=np.int64) for c in chunks]
    if not chunk_list:
        raise ImatrixError("no calibration chunks to run")
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def add(name: str, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).to(torch.float64)
        if name in sums:
            sums[name] += (x * x).sum(dim=0)
        else:
            sums[name] = (x * x).sum(dim=0)
        counts[name] = counts.get(name, 0) + x.shape[0]

    def hooks_for_layer(_index: int, layer: torch.nn.Module, prefix: str) -> list[Any]:
        handles = []
        for sub, module in layer.named_modules():
            name = gguf_weight_name(f"{prefix}.{sub}") if isinstance(module, torch.nn.Linear) else None
            if name is not None and name.startswith("blk."):
                handles.append(module.register_forward_pre_hook(lambda _m, args, n=name: add(n, args[0])))
        return handles

    if not any(
        isinstance(m, torch.nn.Linear) and (gguf_weight_name(n) or "").startswith("blk.")
        for n, m in model.model.named_modules()
    ):
        raise ImatrixError(
            f"{type(model.model).__name__}: no linear layers with GGUF names (not a Llama-family model?)"
        )
    finals = model.final_hidden(chunk_list, on_layer=hooks_for_layer, progress=progress, desc="calibrate")
    if include_output and not tied:
        for h in finals:
            add("output.weight", h)
    return ActivationStats(
        sums={k: v.numpy() for k, v in sorted(sums.items())},
        counts=dict(sorted(counts.items())),
        n_chunks=len(chunk_list),
        chunk_size=int(chunk_list[0].size),
    )


def write_imatrix(stats: ActivationStats, out_path: str | os.PathLike[str], *, dataset: str) -> Path:
    """Write the stats atomically in llama-imatrix's GGUF layout."""
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        save_imatrix(
            tmp,
            {k: v.astype(np.float32) for k, v in stats.sums.items()},
            {k: float(c) for k, c in stats.counts.items()},
            datasets=[dataset],
            chunk_count=stats.n_chunks,
            chunk_size=stats.chunk_size,
        )
    return out_path


def _calibration_ids(
    tokenizer: Any, text: str, *, n_ctx: int, n_chunks: int | None, name: str
) -> tuple[np.ndarray, Any]:
    """(text token ids the chunks are cut from, the chunks) for calibration_chunks/calib_char_span."""
    from pocketquant.evaluate.chunks import make_chunks, tokenize_for_chunks

    def tokenize(t: str) -> list[int]:
        return list(tokenizer(t, add_special_tokens=True)["input_ids"])

    need = None if n_chunks is None else n_chunks * n_ctx
    ids = tokenize_for_chunks(tokenize, text, need)
    bos_id = tokenizer.bos_token_id
    add_bos = bos_id is not None and len(ids) > 0 and int(ids[0]) == bos_id
    try:
        chunks = make_chunks(ids, n_ctx, n_chunks, add_bos=add_bos, bos_id=bos_id, corpus_name=name)
    except PocketquantError as exc:
        raise ImatrixError(f"calibration: {exc}") from exc
    return ids, chunks


def calibration_chunks(
    tokenizer: Any, text: str, *, n_ctx: int, n_chunks: int | None, name: str
) -> np.ndarray:
    """Token chunks as llama-imatrix cuts them: the text tokenized whole (BOS first if the model
    adds one), n_ctx tokens per chunk, each chunk's first token replaced by BOS."""
    return _calibration_ids(tokenizer, text, n_ctx=n_ctx, n_chunks=n_chunks, name=name)[1].tokens


def calibrate(
    model_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    text: str,
    dataset: str,
    n_ctx: int = 512,
    n_chunks: int | None = None,
    include_output: bool = False,
    threads: int | None = None,
    progress: bool = True,
) -> ActivationStats:
    """Calibrate the HF checkpoint in model_dir on `text` and write the imatrix to out_path.
    `dataset` names the text in the imatrix (imatrix.datasets) and in errors."""
    import torch
    from transformers import AutoTokenizer

    from pocketquant.layerwise.forward import LayerwiseModel

    if threads:
        torch.set_num_threads(threads)
    return_freed_memory()
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ImatrixError(f"{model_dir}: not an HF checkpoint (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    chunks = calibration_chunks(tokenizer, text, n_ctx=n_ctx, n_chunks=n_chunks, name=dataset)
    try:
        model = LayerwiseModel(model_dir)
    except ConfigError as exc:
        raise ImatrixError(f"calibration: {exc}") from exc
    stats = collect_activation_stats(model, chunks, include_output=include_output, progress=progress)
    write_imatrix(stats, out_path, dataset=dataset)
    log_usage("calibrate")
    return stats


# --- Calibration text vs evaluation text -------------------------------------------------------
# The evaluation (reference/evaluate stages) reads its corpus from the start: the first
# eval.chunks * eval.n_ctx tokens. Calibration takes the same corpus from skip_fraction of its
# characters on. The functions below turn both into character spans of the corpus text, with the
# chunking functions the stages use, so an overlap is found before any model runs.

_OFFSET_MARGIN_TOKENS = 64


class CalibrationOverlapError(ImatrixError):
    """Calibration would read text the evaluation scores (results would flatter the imatrix)."""


def calibration_text(text: str, skip_fraction: float) -> tuple[int, str]:
    """(first character, text) that calibration reads of a corpus: everything from skip_fraction."""
    if not 0.0 <= skip_fraction < 1.0:
        raise ImatrixError(f"calib.skip_fraction must be in [0, 1), got {skip_fraction}")
    start = int(len(text) * skip_fraction)
    return start, text[start:]


def _char_end(tokenizer: Any, text: str, ids: np.ndarray, *, split_special: bool, where: str) -> int:
    """Characters of `text` that its first len(ids) text tokens (no BOS) cover, checking that the
    offset tokenization gives the same ids as the chunking did."""
    n = len(ids)
    if n == 0:
        return 0
    limit = (n + _OFFSET_MARGIN_TOKENS) * 6
    while True:
        part = text[: min(limit, len(text))]
        enc = tokenizer(
            part, add_special_tokens=False, split_special_tokens=split_special, return_offsets_mapping=True
        )
        if len(enc["input_ids"]) >= n + _OFFSET_MARGIN_TOKENS or limit >= len(text):
            break
        limit *= 2
    got = np.asarray(enc["input_ids"][:n], dtype=np.int64)
    if got.size < n or not np.array_equal(got, np.asarray(ids, dtype=np.int64)):
        raise ImatrixError(f"{where}: cannot map tokens to characters (tokenizer offsets disagree)")
    return int(enc["offset_mapping"][n - 1][1])


def _bos_info(tokenizer: Any) -> tuple[int | None, bool]:
    # The same test the transformers engine of the evaluation makes (pocketquant.evaluate.hf).
    bos = tokenizer.bos_token_id
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    return bos, bool(bos is not None and with_special[:1] == [bos] != plain[:1])


def eval_token_ids(tokenizer: Any, text: str, *, n_ctx: int, n_chunks: int | None, name: str) -> np.ndarray:
    """The token ids the evaluation's chunks hold (flattened, BOS first when the model adds one),
    cut with pocketquant.evaluate.chunks as the reference stage cuts them."""
    from pocketquant.evaluate.chunks import make_chunks, tokenize_for_chunks

    bos, add_bos = _bos_info(tokenizer)

    def tokenize(t: str) -> list[int]:
        ids = tokenizer(t, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        return [bos, *ids] if add_bos else list(ids)

    need = None if n_chunks is None else n_chunks * n_ctx
    ids = tokenize_for_chunks(tokenize, text, need)
    ch = make_chunks(ids, n_ctx, n_chunks, add_bos=add_bos, bos_id=bos, corpus_name=name)
    return ids[: ch.n_chunks * n_ctx]


def eval_char_span(
    tokenizer: Any, text: str, *, n_ctx: int, n_chunks: int | None, name: str = "corpus"
) -> tuple[int, int]:
    """[start, end) characters of `text` that the evaluation reads (all of its chunks' tokens)."""
    ids = eval_token_ids(tokenizer, text, n_ctx=n_ctx, n_chunks=n_chunks, name=name)
    _, add_bos = _bos_info(tokenizer)
    body = ids[1:] if add_bos else ids
    return 0, _char_end(tokenizer, text, body, split_special=True, where=f"{name} (evaluation)")


def calib_char_span(
    tokenizer: Any, text: str, *, skip_fraction: float, n_ctx: int, n_chunks: int | None, name: str = "corpus"
) -> tuple[int, int]:
    """[start, end) characters of the corpus `text` that calibration reads, chunked by
    calibration_chunks exactly as calibrate() does."""
    start, part = calibration_text(text, skip_fraction)
    ids, chunks = _calibration_ids(tokenizer, part, n_ctx=n_ctx, n_chunks=n_chunks, name=name)
    ids = ids[: chunks.n_chunks * n_ctx]
    if chunks.add_bos:
        ids = ids[1:]
    end = _char_end(tokenizer, part, ids, split_special=False, where=f"{name} (calibration)")
    return start, start + end


def check_calibration_disjoint(
    tokenizer: Any,
    *,
    eval_text: str,
    eval_n_ctx: int,
    eval_chunks: int | None,
    calib_text: str,
    skip_fraction: float,
    calib_n_ctx: int,
    calib_chunks: int | None,
    name: str = "corpus",
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Character spans (evaluation, calibration); CalibrationOverlapError when both read the same
    corpus and the spans meet. Different corpora never overlap here (spans are of their own text)."""
    ev = eval_char_span(tokenizer, eval_text, n_ctx=eval_n_ctx, n_chunks=eval_chunks, name=name)
    ca = calib_char_span(
        tokenizer,
        calib_text,
        skip_fraction=skip_fraction,
        n_ctx=calib_n_ctx,
        n_chunks=calib_chunks,
        name=name,
    )
    if eval_text == calib_text and ev[1] > ca[0]:
        raise CalibrationOverlapError(
            f"{name}: the evaluation reads characters {ev[0]}..{ev[1]} and calibration starts at "
            f"character {ca[0]} (calib.skip_fraction={skip_fraction}): calibration would see evaluated "
            "text; raise calib.skip_fraction or lower eval.chunks"
        )
    return ev, ca
