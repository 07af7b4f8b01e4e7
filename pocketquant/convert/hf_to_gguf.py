"""Our HF -> GGUF converter for the Llama family (Llama 2/3/3.1/3.2, SmolLM/SmolLM2).

Follows llama.cpp's convert_hf_to_gguf.py for `LlamaForCausalLM` (see
../shared/reference/kquants.md §9): q/k rows permuted from HF's rotate-half layout to ggml's
interleaved RoPE pairs, GQA via head_count_kv, tied embeddings (no output.weight), the llama3
rope-frequency tensor first, 1-D tensors in F32. Tensors are read lazily from the safetensors
files at write time, so memory stays near one tensor. Same input -> byte-identical output.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from pocketquant.atomic import atomic_path
from pocketquant.convert.errors import ConversionError
from pocketquant.convert.vocab import load_vocab
from pocketquant.models.checkpoint import validate_model_dir, weight_files

OUTTYPES = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
}

_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$")
# Buffers some checkpoints carry that carry no information for llama.cpp.
_SKIPPED = re.compile(r"(rotary_emb\.inv_freq|\.masked_bias|\.attn\.bias)$")


def gguf_tensor_name(hf_name: str) -> str | None:
    """GGUF name of an HF Llama tensor; None for tensors llama.cpp does not use."""
    if _SKIPPED.search(hf_name):
        return None
    if hf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[hf_name]
    m = _LAYER_RE.match(hf_name)
    if m and m.group(2) in _LAYER_NAMES:
        return f"blk.{m.group(1)}.{_LAYER_NAMES[m.group(2)]}.{m.group(3)}"
    raise ConversionError(f"tensor {hf_name!r} is not part of a Llama checkpoint (no GGUF name for it)")


def permute_qk(w: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """HF rotate-half rows -> ggml interleaved pairs, per head (llama.cpp's LlamaModel.permute)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rope_settings(config: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """(rope_theta, scaling dict) from either config layout: transformers < 5 writes `rope_theta`
    and `rope_scaling`; transformers 5 writes both into `rope_parameters`."""
    scaling = dict(config.get("rope_scaling") or config.get("rope_parameters") or {})
    theta = config.get("rope_theta") or scaling.get("rope_theta") or 10000.0
    return float(theta), scaling


def llama3_rope_factors(config: dict[str, Any]) -> np.ndarray:
    """rope_freqs.weight: the divisor llama.cpp applies to each rotary frequency (llama3 scaling)."""
    base, scaling = rope_settings(config)
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    factor = scaling.get("factor", 8.0)
    low = scaling.get("low_freq_factor", 1.0)
    high = scaling.get("high_freq_factor", 4.0)
    old_ctx = scaling.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


class _LazyTensor:
    """Stands in for a numpy array in GGUFWriter until the data is written (keeps memory low)."""

    def __init__(self, load: Callable[[], np.ndarray], shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._load = load
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(shape)) * self.dtype.itemsize

    def tofile(self, fout: Any) -> None:
        data = self._load()
        assert data.shape == self.shape and data.dtype == self.dtype, (data.shape, data.dtype)
        data.tofile(fout)

    def byteswap(self, inplace: bool = False) -> _LazyTensor:  # only used for big-endian output
        raise NotImplementedError("big-endian GGUF output is not supported")


def _to_bf16_bytes(data: np.ndarray) -> np.ndarray:
    """float32 -> BF16 (round to nearest even, NaN quieted) as uint8 rows of 2*n bytes."""
    try:  # the project's kernel (multi-threaded); gguf-py's numpy version gives the same bytes
        from pocketquant.quants import quantize as kernel_quantize
    except ImportError:
        return gguf.quants.quantize(data, gguf.GGMLQuantizationType.BF16)
    return kernel_quantize(data, "BF16")


def _cast(data: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    if qtype == gguf.GGMLQuantizationType.F32:
        return data.astype(np.float32, copy=False)
    if qtype == gguf.GGMLQuantizationType.F16:
        return data.astype(np.float16)
    return _to_bf16_bytes(data)


def _iter_hf_tensors(model_dir: Path) -> Iterator[tuple[str, Callable[[], np.ndarray], tuple[int, ...]]]:
    """(name, loader returning float32 numpy, shape) for each tensor, in file and name order."""
    from safetensors import safe_open

    files = weight_files(model_dir)
    if files[0].suffix != ".safetensors":
        raise ConversionError(f"{model_dir}: only safetensors checkpoints can be converted (acquire first)")
    for path in files:
        with safe_open(path, framework="pt") as f:
            names = sorted(f.keys())
            shapes = {n: tuple(f.get_slice(n).get_shape()) for n in names}
        for name in names:

            def load(path: Path = path, name: str = name) -> np.ndarray:
                import torch

                with safe_open(path, framework="pt") as f:
                    return f.get_tensor(name).to(torch.float32).numpy()

            yield name, load, shapes[name]


def convert_hf_to_gguf(
    model_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    outtype: str = "f16",
    *,
    name: str | None = None,
    progress: bool = True,
) -> Path:
    """Convert the HF Llama checkpoint in `model_dir` to a GGUF file at `out_path`.

    outtype: 'f16' (default), 'bf16' or 'f32' for 2-D weights; norms and rope_freqs are F32.
    name: general.name (default: the name recorded in config.json, else the directory name)."""
    model_dir = Path(model_dir)
    out_path = Path(out_path)
    key = outtype.lower()
    if key not in OUTTYPES:
        raise ConversionError(f"unknown outtype {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    qtype, ftype = OUTTYPES[key]
    config = validate_model_dir(model_dir)
    hp = _hparams(model_dir, config)

    with atomic_path(out_path) as tmp:
        writer = gguf.GGUFWriter(path=None, arch="llama")
        _write_metadata(writer, config, hp, ftype, name or _model_name(config, model_dir))
        load_vocab(model_dir, hp["vocab_size"]).add_to_gguf(writer)
        _add_tensors(writer, model_dir, config, hp, qtype)
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file(progress=progress)
        writer.close()
    return out_path


def _model_name(config: dict[str, Any], model_dir: Path) -> str:
    """general.name: the model's own name when the checkpoint records one (not a machine path)."""
    recorded = config.get("_name_or_path") or config.get("_model_name_or_path") or ""
    if recorded and not recorded.startswith(("/", ".", "~")):
        return recorded.rstrip("/").split("/")[-1]
    return model_dir.name


def _hparams(model_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    try:
        n_head = int(config["num_attention_heads"])
        hp = {
            "n_layer": int(config["num_hidden_layers"]),
            "n_embd": int(config["hidden_size"]),
            "n_ff": int(config["intermediate_size"]),
            "n_head": n_head,
            "n_head_kv": int(config.get("num_key_value_heads") or n_head),
            "n_ctx": int(config["max_position_embeddings"]),
            "eps": float(config.get("rms_norm_eps", 1e-6)),
            "vocab_size": int(config["vocab_size"]),
        }
    except KeyError as exc:
        raise ConversionError(f"{model_dir / 'config.json'}: missing key {exc.args[0]!r}") from exc
    hp["head_dim"] = int(config.get("head_dim") or hp["n_embd"] // n_head)
    hp["rope_theta"], scaling = rope_settings(config)
    hp["rope_scaling"] = scaling
    hp["rope_type"] = scaling.get("rope_type") or scaling.get("type")
    if hp["rope_type"] not in (None, "default", "linear", "llama3"):
        raise ConversionError(
            f"{model_dir / 'config.json'}: rope_scaling type {hp['rope_type']!r} is not supported "
            "(supported: none, linear, llama3)"
        )
    return hp


def _write_metadata(
    writer: gguf.GGUFWriter, config: dict[str, Any], hp: dict[str, Any], ftype: int, name: str
) -> None:
    """KV pairs in llama.cpp's order (kquants.md §9.3)."""
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_block_count(hp["n_layer"])
    writer.add_context_length(hp["n_ctx"])
    writer.add_embedding_length(hp["n_embd"])
    writer.add_feed_forward_length(hp["n_ff"])
    writer.add_head_count(hp["n_head"])
    writer.add_head_count_kv(hp["n_head_kv"])
    if hp["rope_type"] == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(hp["rope_scaling"]["factor"]))
    writer.add_rope_freq_base(hp["rope_theta"])
    writer.add_layer_norm_rms_eps(hp["eps"])
    if config.get("head_dim"):
        writer.add_key_length(hp["head_dim"])
        writer.add_value_length(hp["head_dim"])
    writer.add_file_type(ftype)
    writer.add_vocab_size(hp["vocab_size"])
    writer.add_rope_dimension_count(hp["head_dim"])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _add_tensors(
    writer: gguf.GGUFWriter, model_dir: Path, config: dict[str, Any], hp: dict[str, Any], qtype
) -> None:
    if hp["rope_type"] == "llama3":  # generated first, like llama.cpp's generate_extra_tensors()
        writer.add_tensor("rope_freqs.weight", llama3_rope_factors(config))

    entries = []
    for hf_name, load, shape in _iter_hf_tensors(model_dir):
        gname = gguf_tensor_name(hf_name)
        if gname is not None:
            entries.append((gname, hf_name, load, shape))
    names = {e[0] for e in entries}
    for required in ("token_embd.weight", "output_norm.weight"):
        if required not in names:
            raise ConversionError(f"{model_dir}: tensor for {required} is missing from the checkpoint")
    if "output.weight" in names and config.get("tie_word_embeddings", False):
        # Tied: llama.cpp reuses token_embd; a duplicate lm_head would only waste space.
        entries = [e for e in entries if e[0] != "output.weight"]

    # Order: token_embd, then blocks by index, then output_norm/output (as llama.cpp's file has it).
    def order(entry: tuple) -> tuple:
        gname = entry[0]
        if gname.startswith("blk."):
            return (1, int(gname.split(".")[1]), entry[1])
        return (0 if gname == "token_embd.weight" else 2, 0, gname)

    for gname, hf_name, load, shape in sorted(entries, key=order):
        if not math.prod(shape):
            raise ConversionError(f"{model_dir}: tensor {hf_name!r} is empty")
        is_q = ".self_attn.q_proj." in hf_name
        is_k = ".self_attn.k_proj." in hf_name
        # 1-D tensors and norms stay F32 (llama.cpp does the same; they are tiny).
        t_type = gguf.GGMLQuantizationType.F32 if len(shape) == 1 else qtype

        def produce(load=load, is_q=is_q, is_k=is_k, t_type=t_type, hf_name=hf_name) -> np.ndarray:
            data = load()
            if not np.isfinite(data).all():
                raise ConversionError(f"{model_dir}: tensor {hf_name!r} contains NaN or Inf")
            if is_q:
                data = permute_qk(data, hp["n_head"], hp["n_head"])
            elif is_k:
                data = permute_qk(data, hp["n_head"], hp["n_head_kv"])
            return _cast(data, t_type)

        if t_type == gguf.GGMLQuantizationType.BF16:
            lazy = _LazyTensor(produce, (*shape[:-1], shape[-1] * 2), np.uint8)
            writer.add_tensor(gname, lazy, raw_shape=lazy.shape, raw_dtype=t_type)  # type: ignore[arg-type]
        else:
            dtype = np.float32 if t_type == gguf.GGMLQuantizationType.F32 else np.float16
            writer.add_tensor(gname, _LazyTensor(produce, shape, dtype))  # type: ignore[arg-type]
