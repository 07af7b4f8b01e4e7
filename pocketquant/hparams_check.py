"""Model hyperparameters that llama.cpp would refuse, caught before any work is done.

quantize and package check a GGUF's metadata (`check_gguf_hparams`), convert checks the HF
config.json (`check_hf_config`). The rules are llama.cpp's own (src/llama-model.cpp load_hparams,
src/llama-model-loader.cpp): integer keys must have the type llama.cpp reads (UINT32, or a per-layer
array of INT32/UINT32), 1 <= block_count <= 512 (LLAMA_MAX_LAYERS), attention heads non-zero and
head_count_kv dividing head_count, the embedding split evenly over the heads, float values finite.
Every error is an HparamsError naming the file and the key.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from gguf.constants import GGUFValueType

from pocketquant.errors import HparamsError

MAX_LAYERS = 512  # LLAMA_MAX_LAYERS
MAX_EXPERTS = 1024  # LLAMA_MAX_EXPERTS
_LAYER = re.compile(r"^blk\.(\d+)\.")
# tensors that mean the model has attention, so zero heads cannot be right (Mamba-like models
# write head_count = 0 and have none of these)
_ATTENTION = re.compile(r"^blk\.\d+\.attn_(q|k|v|qkv)\.")
# archs whose n_rot must equal the head size (llama.cpp throws "invalid n_rot" otherwise)
_ROT_IS_HEAD = ("llama", "deci", "falcon", "llama-embed")


def _fail(source: str | os.PathLike[str], key: str, problem: str) -> HparamsError:
    return HparamsError(f"{source}: {key} {problem}")


# -- GGUF metadata ------------------------------------------------------------------------------


def _kv_int(kv: Any, key: str, source: str, *, per_layer: int | None = None) -> list[int] | None:
    """The value(s) of an integer KV as llama.cpp would read them: a UINT32 scalar, or (with
    per_layer = n_layer) an array of INT32/UINT32 of that length. None if absent."""
    if kv is None:
        return None
    if kv.type == GGUFValueType.ARRAY:
        if per_layer is None:
            raise _fail(source, key, "is an array; llama.cpp needs one UINT32")
        if kv.array_type not in (GGUFValueType.UINT32, GGUFValueType.INT32, GGUFValueType.BOOL):
            raise _fail(source, key, f"is an array of {kv.array_type.name}; llama.cpp needs UINT32 or INT32")
        if len(kv.value) != per_layer:
            raise _fail(source, key, f"has {len(kv.value)} entries; block_count says {per_layer} layers")
        return [int(v) for v in np.asarray(kv.value).tolist()]
    if kv.type != GGUFValueType.UINT32:
        shown = kv.value if not isinstance(kv.value, str) else repr(kv.value[:40])
        raise _fail(source, key, f"has type {kv.type.name} (value {shown}); llama.cpp needs UINT32")
    return [int(kv.value)]


def _check_finite_floats(kvs: Mapping[str, Any], prefix: str, source: str) -> None:
    for key, kv in kvs.items():
        if not key.startswith(prefix):
            continue
        if kv.type in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
            if not math.isfinite(kv.value):
                raise _fail(source, key, f"= {kv.value}: not a finite number")
        elif kv.type == GGUFValueType.ARRAY and kv.array_type in (
            GGUFValueType.FLOAT32,
            GGUFValueType.FLOAT64,
        ):
            if len(kv.value) and not np.isfinite(kv.value).all():
                raise _fail(source, key, "holds a value that is not a finite number")


def check_gguf_hparams(
    kvs: Mapping[str, Any], tensor_names: Iterable[str], source: str | os.PathLike[str]
) -> None:
    """HparamsError naming `source` and the key if llama.cpp would refuse this model's metadata.

    `kvs` maps keys to pocketquant.gguf_file.KV; `tensor_names` are the file's tensor names (the
    layers they hold must be exactly blk.0 .. blk.{block_count-1})."""
    source = str(source)
    names = list(tensor_names)
    arch_kv = kvs.get("general.architecture")
    if arch_kv is None:
        if names:
            raise _fail(source, "general.architecture", "is missing")
        return
    if arch_kv.type != GGUFValueType.STRING or not arch_kv.value:
        raise _fail(source, "general.architecture", f"must be a non-empty STRING, is {arch_kv.type.name}")
    arch = arch_kv.value
    if names:  # a vocabulary-only file has no model hparams llama.cpp would read
        _check_model_keys(kvs, names, arch, source)
    _check_finite_floats(kvs, f"{arch}.", source)


def _check_model_keys(kvs: Mapping[str, Any], names: list[str], arch: str, source: str) -> None:
    p = f"{arch}."
    key = p + "block_count"
    n_layer_v = _kv_int(kvs.get(key), key, source)
    if n_layer_v is None:
        raise _fail(source, key, "is missing")
    n_layer = n_layer_v[0]
    if not 1 <= n_layer <= MAX_LAYERS:
        raise _fail(source, key, f"= {n_layer}: llama.cpp needs 1 to {MAX_LAYERS} layers")
    layers = sorted({int(m.group(1)) for n in names if (m := _LAYER.match(n))})
    if layers and layers[-1] >= n_layer:
        raise _fail(source, key, f"= {n_layer}, but the file has tensors of layer {layers[-1]}")
    missing = sorted(set(range(n_layer)) - set(layers))
    if layers and missing:
        raise _fail(
            source,
            key,
            f"= {n_layer}, but the file has no tensors of layer {missing[0]} ({len(missing)} missing)",
        )

    for k in ("context_length", "embedding_length"):
        v = _kv_int(kvs.get(p + k), p + k, source)
        if v is None:
            raise _fail(source, p + k, "is missing")
        if v[0] < 1:
            raise _fail(source, p + k, f"= {v[0]}: must be at least 1")
    n_embd = _kv_int(kvs[p + "embedding_length"], p + "embedding_length", source)[0]  # type: ignore[index]

    for k in ("attention.key_length", "attention.value_length", "rope.dimension_count"):
        v = _kv_int(kvs.get(p + k), p + k, source)
        if v is not None and v[0] < 1:
            raise _fail(source, p + k, f"= {v[0]}: must be at least 1")
    _kv_int(kvs.get(p + "feed_forward_length"), p + "feed_forward_length", source, per_layer=n_layer)

    kh, kkv = p + "attention.head_count", p + "attention.head_count_kv"
    heads = _kv_int(kvs.get(kh), kh, source, per_layer=n_layer)
    heads_kv = _kv_int(kvs.get(kkv), kkv, source, per_layer=n_layer)
    has_attention = any(_ATTENTION.match(n) for n in names)
    if heads is None:
        if has_attention:
            raise _fail(source, kh, "is missing, but the model has attention tensors")
        return
    heads = heads * n_layer if len(heads) == 1 else heads
    heads_kv = heads if heads_kv is None else (heads_kv * n_layer if len(heads_kv) == 1 else heads_kv)
    for i, (h, h_kv) in enumerate(zip(heads, heads_kv, strict=True)):
        where = "" if len(set(heads)) == 1 and len(set(heads_kv)) == 1 else f" (layer {i})"
        if h == 0 and has_attention:
            raise _fail(source, kh, f"= 0{where}, but the model has attention tensors")
        if h < 0 or h_kv < 0:
            raise _fail(source, kh if h < 0 else kkv, f"= {min(h, h_kv)}{where}: must not be negative")
        if h_kv and h and (h_kv > h or h % h_kv):
            raise _fail(source, kkv, f"= {h_kv}{where} does not divide {kh} = {h}")
    h0 = max(heads)
    if h0 == 0:
        return
    key_len = _kv_int(kvs.get(p + "attention.key_length"), p + "attention.key_length", source)
    if key_len is None and n_embd % h0:
        raise _fail(source, kh, f"= {h0} does not divide {p}embedding_length = {n_embd}")
    head_dim = key_len[0] if key_len is not None else n_embd // h0
    rot = _kv_int(kvs.get(p + "rope.dimension_count"), p + "rope.dimension_count", source)
    if arch in _ROT_IS_HEAD and rot is not None and rot[0] != head_dim:
        raise _fail(source, p + "rope.dimension_count", f"= {rot[0]}, but the head size is {head_dim}")
    n_expert = _kv_int(kvs.get(p + "expert_count"), p + "expert_count", source)
    if n_expert is not None and n_expert[0] > MAX_EXPERTS:
        raise _fail(source, p + "expert_count", f"= {n_expert[0]}: llama.cpp allows at most {MAX_EXPERTS}")


# keys packaging and verify read, with the type llama.cpp reads them as
_TOKENIZER_KEYS = {
    "tokenizer.ggml.bos_token_id": GGUFValueType.UINT32,
    "tokenizer.ggml.eos_token_id": GGUFValueType.UINT32,
    "tokenizer.ggml.add_bos_token": GGUFValueType.BOOL,
    "tokenizer.chat_template": GGUFValueType.STRING,
}


def _utf8(value: str, key: str, source: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # the reader keeps bytes that are not UTF-8 as surrogates
        pos = len(value[: exc.start].encode("utf-8", "surrogateescape"))
        raise _fail(source, key, f"is not valid UTF-8 (byte {pos})") from None


def check_gguf_metadata(
    kvs: Mapping[str, Any], tensor_names: Iterable[str], source: str | os.PathLike[str]
) -> None:
    """check_gguf_hparams, and the tokenizer keys a package reads (special token ids, the chat
    template, the vocabulary) have llama.cpp's types and are valid UTF-8 where they are text."""
    source = str(source)
    check_gguf_hparams(kvs, tensor_names, source)
    arch_kv = kvs.get("general.architecture")
    if arch_kv is not None and arch_kv.type == GGUFValueType.STRING:
        ctx_key = f"{arch_kv.value}.context_length"
        _kv_int(kvs.get(ctx_key), ctx_key, source)
    for key, want in _TOKENIZER_KEYS.items():
        kv = kvs.get(key)
        if kv is not None and kv.type != want:
            raise _fail(source, key, f"has type {kv.type.name}; llama.cpp needs {want.name}")
    tokens_kv = kvs.get("tokenizer.ggml.tokens")
    tokens: list[str] = []
    if tokens_kv is not None:
        if tokens_kv.type != GGUFValueType.ARRAY or tokens_kv.array_type != GGUFValueType.STRING:
            raise _fail(source, "tokenizer.ggml.tokens", "must be an array of strings")
        tokens = tokens_kv.value
    template = kvs.get("tokenizer.chat_template")
    if template is not None:
        _utf8(template.value, "tokenizer.chat_template", source)
    for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
        kv = kvs.get(key)
        if kv is not None and kv.value < len(tokens):
            _utf8(tokens[kv.value], f"{key} (token {kv.value})", source)


# -- HF config.json -----------------------------------------------------------------------------

# integer hyperparameters common to the HF causal-LM families, and their smallest valid value
HF_INT_KEYS = {
    "num_hidden_layers": 1,
    "hidden_size": 1,
    "intermediate_size": 1,
    "num_attention_heads": 1,
    "num_key_value_heads": 1,
    "head_dim": 1,
    "max_position_embeddings": 1,
    "vocab_size": 1,
}
HF_FLOAT_KEYS = ("rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "rope_theta")


def _hf_int(config: Mapping[str, Any], key: str, shown: str, where: str, least: int) -> int | None:
    v = config.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        kind = "a string" if isinstance(v, str) else f"a {type(v).__name__}"
        raise _fail(where, shown, f"is {kind} ({v!r}); it must be an integer")
    if v < least:
        raise _fail(where, shown, f"= {v}: must be at least {least}")
    return v


def check_hf_config(config: Mapping[str, Any], path: str | os.PathLike[str], *, prefix: str = "") -> None:
    """HparamsError naming config.json (`path`) and the key if its hyperparameters are ones no
    converter can turn into a model llama.cpp loads. Keys a family does not use may be absent;
    a nested `text_config` (multimodal checkpoints) is checked the same way."""
    where = str(path)

    def key(k: str) -> str:
        return prefix + k

    vals = {k: _hf_int(config, k, key(k), where, least) for k, least in HF_INT_KEYS.items()}
    n_layer = vals["num_hidden_layers"]
    if n_layer is not None and n_layer > MAX_LAYERS:
        raise _fail(
            where, key("num_hidden_layers"), f"= {n_layer}: llama.cpp allows at most {MAX_LAYERS} layers"
        )
    heads, heads_kv, hidden = vals["num_attention_heads"], vals["num_key_value_heads"], vals["hidden_size"]
    if heads is not None and heads_kv is not None and (heads_kv > heads or heads % heads_kv):
        raise _fail(
            where, key("num_key_value_heads"), f"= {heads_kv} does not divide num_attention_heads = {heads}"
        )
    if heads is not None and hidden is not None and vals["head_dim"] is None and hidden % heads:
        raise _fail(where, key("num_attention_heads"), f"= {heads} does not divide hidden_size = {hidden}")
    for k in HF_FLOAT_KEYS:
        v = config.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _fail(where, key(k), f"is {type(v).__name__} ({v!r}); it must be a number")
        if not math.isfinite(v) or v <= 0:
            raise _fail(where, key(k), f"= {v}: must be a finite positive number")
    text = config.get("text_config")
    if isinstance(text, Mapping):
        check_hf_config(text, path, prefix=prefix + "text_config.")
