"""Our HF -> GGUF converter: the shared core every family module plugs into.

Steps: read the config as transformers normalizes it (the same dict llama.cpp's converter reads),
pick the family by its `architectures` name, check that the checkpoint's tensors are exactly those
the config implies, collect the metadata (family hyperparameters + tokenizer), plan every output
tensor (GGUF name, shape, type), then stream: the header first, then each tensor read from the
safetensors files a range of rows at a time, transformed by the family and cast to its type.
Memory stays near one chunk; same input -> byte-identical output. Output types follow llama.cpp:
1-D tensors, norms and biases F32, every other weight the outtype (f32, f16 or bf16).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from pocketquant.convert.errors import ConversionError, one_line
from pocketquant.convert.expected import check_tensors_match_config
from pocketquant.convert.families import Family, family_for
from pocketquant.convert.families.llama import LlamaFamily, llama3_rope_factors, permute_qk
from pocketquant.convert.metadata import GGUFMetadata
from pocketquant.convert.source import CheckpointReader, SourceTensor, index_checkpoint
from pocketquant.gguf_file import GGMLType, TensorInfo, create_gguf
from pocketquant.models.checkpoint import validate_model_dir

OUTTYPES = {
    "f32": (GGMLType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (GGMLType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (GGMLType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
}
# Rows read per step when a tensor streams in pieces (64 MiB of float32 at most).
_CHUNK_BYTES = 64 << 20

__all__ = [
    "OUTTYPES",
    "convert_hf_to_gguf",
    "gguf_tensor_name",
    "llama3_rope_factors",
    "load_hparams",
    "permute_qk",
]


def load_hparams(model_dir: Path) -> tuple[dict[str, Any], Any]:
    """(config as a dict, transformers config object), the dict as llama.cpp's converter reads it:
    transformers' normalized config, defaults filled in. Every native family is a transformers
    architecture, so a config transformers refuses is a broken config.json."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
    except Exception as exc:  # transformers raises many types for a bad config
        raise ConversionError(
            f"{model_dir / 'config.json'}: transformers refuses it ({one_line(exc)})"
        ) from exc
    return config.to_dict(), config


def gguf_tensor_name(hf_name: str) -> str | None:
    """GGUF name of an HF Llama tensor; None for buffers llama.cpp drops (kept for the calibrate
    module, which names imatrix entries of Llama-family models)."""
    if hf_name.endswith(LlamaFamily.skipped_suffixes):
        return None
    name = _llama_name_map().get_name(key=hf_name, try_suffixes=(".weight", ".bias"))
    if name is None:
        raise ConversionError(f"tensor {hf_name!r} is not part of a Llama checkpoint (no GGUF name for it)")
    return name


@functools.cache
def _llama_name_map() -> gguf.TensorNameMap:
    return gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 1 << 9)


@dataclass
class PlannedTensor:
    """One tensor of the output file and how to produce its bytes."""

    name: str  # GGUF name
    shape: tuple[int, ...]  # HF (row-major) shape after the family's changes
    type: GGMLType
    source: SourceTensor | None  # None for generated tensors
    data: Any = None  # generated tensors: the values themselves (a torch tensor or numpy array)

    @property
    def info(self) -> TensorInfo:
        return TensorInfo(self.name, tuple(reversed(self.shape)), self.type)


def convert_hf_to_gguf(
    model_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    outtype: str = "f16",
    *,
    name: str | None = None,
    progress: bool = True,
) -> Path:
    """Convert the HF checkpoint in `model_dir` (a native family) to a GGUF file at `out_path`.

    outtype: 'f16' (default), 'bf16' or 'f32' for the weights; norms, biases and generated tensors
    are F32. name: general.name (default: the name recorded in config.json, else the directory)."""
    model_dir, out_path = Path(model_dir), Path(out_path)
    key = outtype.lower()
    if key not in OUTTYPES:
        raise ConversionError(f"unknown outtype {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    qtype, ftype = OUTTYPES[key]
    raw_config = validate_model_dir(model_dir)
    family_cls = family_for(raw_config, model_dir)
    hparams, config = load_hparams(model_dir)
    family = family_cls(model_dir, hparams, ftype)
    tensors = index_checkpoint(model_dir)
    check_tensors_match_config(model_dir, config, tensors, ignored=family.skipped_suffixes)

    meta = GGUFMetadata(family.arch_name)
    meta.add_type(gguf.GGUFType.MODEL)
    meta.add_name(family.model_name(name or _model_name(raw_config, model_dir)))
    family.set_gguf_parameters(meta)
    meta.add_quantization_version(gguf.GGML_QUANT_VERSION)
    family.set_vocab(meta)

    plan = plan_tensors(family, tensors, qtype)
    with create_gguf(out_path, meta.kvs, [p.info for p in plan]) as writer, CheckpointReader() as reader:
        for planned in _progress(plan, progress, out_path.name):
            for piece in produce(family, reader, planned):
                writer.write(piece)
    return out_path


def _model_name(raw_config: dict[str, Any], model_dir: Path) -> str:
    """general.name: the model's own name when config.json records one (not a machine path)."""
    recorded = raw_config.get("_name_or_path") or raw_config.get("_model_name_or_path") or ""
    if recorded and not str(recorded).startswith(("/", ".", "~")):
        return str(recorded).rstrip("/").split("/")[-1]
    return model_dir.name


def output_type(gguf_name: str, n_dims: int, qtype: GGMLType) -> GGMLType:
    """llama.cpp's converter: 1-D tensors, norms and anything not a `.weight` stay F32."""
    if n_dims <= 1 or gguf_name.endswith("_norm.weight") or not gguf_name.endswith(".weight"):
        return GGMLType.F32
    return qtype


def plan_tensors(family: Family, tensors: dict[str, SourceTensor], qtype: GGMLType) -> list[PlannedTensor]:
    """Every output tensor in file order: generated ones first (as llama.cpp writes them), then
    token_embd, the blocks by index, and the rest (output_norm, output)."""
    plan = [
        PlannedTensor(gname, tuple(data.shape), output_type(gname, len(data.shape), qtype), None, data)
        for gname, data in family.extra_tensors()
    ]
    mapped = []
    for hf_name, t in tensors.items():
        if family.skips(hf_name):
            continue
        gname = family.gguf_name(hf_name)
        rows = family.kept_rows(hf_name, t.shape)
        shape = (rows, *t.shape[1:]) if t.shape else t.shape
        if not all(shape):
            raise ConversionError(f"{t.file}: tensor {hf_name!r} is empty (shape {list(t.shape)})")
        mapped.append(PlannedTensor(gname, shape, output_type(gname, len(shape), qtype), t))

    def order(p: PlannedTensor) -> tuple:
        if p.name.startswith("blk."):
            return (1, int(p.name.split(".")[1]), p.source.name if p.source else p.name)
        return (0 if p.name == "token_embd.weight" else 2, 0, p.name)

    seen: dict[str, str] = {}
    for p in mapped:
        if p.name in seen:
            raise ConversionError(
                f"{family.model_dir}: tensors {seen[p.name]!r} and {p.source.name!r} both map to {p.name}"
            )
        seen[p.name] = p.source.name if p.source else p.name
    return plan + sorted(mapped, key=order)


def produce(family: Family, reader: CheckpointReader, p: PlannedTensor) -> Iterator[np.ndarray]:
    """The bytes of one output tensor, in pieces of whole rows."""
    if p.source is None:
        yield _cast(np.asarray(p.data), p.type)
        return
    t = p.source
    rows = p.shape[0] if p.shape else 1
    step = rows
    if family.transform_is_rowwise(t.name) and len(t.shape) > 1:
        step = max(1, _CHUNK_BYTES // (4 * t.row_elements))
    scratch: dict[str, np.ndarray] = {}
    for start in range(0, rows, step):
        data = reader.read(t, start, min(rows, start + step))
        yield _cast(family.transform(t.name, data), p.type, scratch)


def _cast(data: np.ndarray, qtype: GGMLType, scratch: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Working-dtype data -> the bytes of `qtype` (gguf-py's conversions: numpy casts, BF16 by
    round-to-nearest-even). scratch: reusable output buffers (the caller writes each piece before
    asking for the next)."""
    target = {GGMLType.F32: np.dtype(np.float32), GGMLType.F16: np.dtype(np.float16)}.get(qtype)
    if target is None:
        return _to_bf16(np.ascontiguousarray(data, dtype=np.float32))
    if data.dtype == target:
        return np.ascontiguousarray(data)
    if scratch is None:
        return np.ascontiguousarray(data, dtype=target)
    buf = scratch.get(target.name)
    if buf is None or buf.size < data.size:
        buf = scratch[target.name] = np.empty(data.size, dtype=target)
    out = buf[: data.size].reshape(data.shape)
    try:  # torch's cast is multi-threaded and gives numpy's bytes (IEEE round to nearest even)
        import torch

        torch.from_numpy(out).copy_(torch.from_numpy(np.ascontiguousarray(data)))
    except ImportError:
        np.copyto(out, data, casting="same_kind")
    return out


def _to_bf16(data: np.ndarray) -> np.ndarray:
    """float32 -> BF16 (round to nearest even, NaN quieted): the project's kernel, multi-threaded;
    gguf-py's numpy version gives the same bytes."""
    try:
        from pocketquant.quants import quantize as kernel_quantize
    except ImportError:
        return gguf.quants.quantize(data, gguf.GGMLQuantizationType.BF16)
    flat = data.reshape(-1, data.shape[-1]) if data.ndim > 1 else data.reshape(1, -1)
    return kernel_quantize(flat, "BF16")


def _progress(plan: list[PlannedTensor], enabled: bool, label: str) -> Iterator[PlannedTensor]:
    if not enabled:
        yield from plan
        return
    from tqdm import tqdm

    total = sum(p.info.nbytes for p in plan)
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"convert {label}") as bar:
        for p in plan:
            yield p
            bar.update(p.info.nbytes)
