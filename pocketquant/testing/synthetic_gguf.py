"""Random-weight Llama-shaped GGUF files, written streaming: test and benchmark inputs whose shapes
we choose (e.g. a Llama-3.2-3B stand-in) without downloading or holding a model in memory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pocketquant.gguf_file import KV, GGMLType, GGUFValueType, TensorInfo, create_gguf
from pocketquant.quantize.codec import fp32_to_bf16


@dataclass(frozen=True)
class LlamaShape:
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    n_vocab: int
    tied: bool = True
    head_dim: int | None = None
    n_ctx: int = 2048

    @property
    def n_embd_head(self) -> int:
        return self.head_dim or self.n_embd // self.n_head


LLAMA_3_2_3B = LlamaShape(
    n_layer=28, n_embd=3072, n_ff=8192, n_head=24, n_head_kv=8, n_vocab=128256, head_dim=128
)


def llama_tensors(s: LlamaShape, dtype: GGMLType) -> list[TensorInfo]:
    """The tensors convert_hf_to_gguf.py writes for a Llama, in its order (1-D norms in F32)."""
    f32 = GGMLType.F32
    q_dim, kv_dim = s.n_head * s.n_embd_head, s.n_head_kv * s.n_embd_head
    out = [TensorInfo("token_embd.weight", (s.n_embd, s.n_vocab), dtype)]
    for i in range(s.n_layer):
        b = f"blk.{i}."
        out += [
            TensorInfo(b + "attn_norm.weight", (s.n_embd,), f32),
            TensorInfo(b + "ffn_down.weight", (s.n_ff, s.n_embd), dtype),
            TensorInfo(b + "ffn_gate.weight", (s.n_embd, s.n_ff), dtype),
            TensorInfo(b + "ffn_up.weight", (s.n_embd, s.n_ff), dtype),
            TensorInfo(b + "ffn_norm.weight", (s.n_embd,), f32),
            TensorInfo(b + "attn_k.weight", (s.n_embd, kv_dim), dtype),
            TensorInfo(b + "attn_output.weight", (q_dim, s.n_embd), dtype),
            TensorInfo(b + "attn_q.weight", (s.n_embd, q_dim), dtype),
            TensorInfo(b + "attn_v.weight", (s.n_embd, kv_dim), dtype),
        ]
    out.append(TensorInfo("output_norm.weight", (s.n_embd,), f32))
    if not s.tied:
        out.append(TensorInfo("output.weight", (s.n_embd, s.n_vocab), dtype))
    return out


def llama_metadata(
    s: LlamaShape, name: str, file_type: int, extra: Mapping[str, KV] | None = None
) -> dict[str, KV]:
    u32, f32 = GGUFValueType.UINT32, GGUFValueType.FLOAT32
    kvs = {
        "general.architecture": KV.string("llama"),
        "general.name": KV.string(name),
        "llama.block_count": KV(u32, s.n_layer),
        "llama.context_length": KV(u32, s.n_ctx),
        "llama.embedding_length": KV(u32, s.n_embd),
        "llama.feed_forward_length": KV(u32, s.n_ff),
        "llama.attention.head_count": KV(u32, s.n_head),
        "llama.attention.head_count_kv": KV(u32, s.n_head_kv),
        "llama.rope.freq_base": KV(f32, 10000.0),
        "llama.attention.layer_norm_rms_epsilon": KV(f32, 1e-5),
        "llama.rope.dimension_count": KV(u32, s.n_embd_head),
        "llama.vocab_size": KV(u32, s.n_vocab),
        "general.file_type": KV(u32, file_type),
    }
    kvs.update(extra or {})
    return kvs


def write_random_llama(
    path: str | os.PathLike[str],
    shape: LlamaShape,
    *,
    dtype: GGMLType = GGMLType.F16,
    seed: int = 0,
    scale: float = 0.02,
    extra_kvs: Mapping[str, KV] | None = None,
    pool_size: int = 1 << 22,
) -> list[TensorInfo]:
    """Write a Llama GGUF with random weights, streaming (memory stays ~ a few MB + one slab).

    Values come from a pool of `pool_size` normals read at a different offset and stride per slab,
    so even multi-GB files are written at disk speed; norms are ones-ish.
    """
    if dtype not in (GGMLType.F32, GGMLType.F16, GGMLType.BF16):
        raise ValueError("random models are written as F32, F16 or BF16")
    rng = np.random.default_rng(seed)
    pool = (rng.standard_normal(pool_size * 2) * scale).astype(np.float32)
    tensors = llama_tensors(shape, dtype)
    file_type = {GGMLType.F32: 0, GGMLType.F16: 1, GGMLType.BF16: 32}[dtype]
    kvs = llama_metadata(shape, "random-llama", file_type, extra_kvs)
    slab = 1 << 21
    with create_gguf(path, kvs, tensors) as w:
        for t in tensors:
            n = t.n_elements
            if t.n_dims == 1:
                w.write((1.0 + pool[:n] * 10).astype(np.float32))
                continue
            done = 0
            while done < n:
                k = min(slab, n - done)
                start = int(rng.integers(0, pool_size))
                x = pool[start : start + k]
                if dtype == GGMLType.F32:
                    w.write(x)
                elif dtype == GGMLType.F16:
                    w.write(x.astype(np.float16))
                else:
                    w.write(fp32_to_bf16(x))
                done += k
    return tensors
