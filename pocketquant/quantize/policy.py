"""Which type each tensor gets: llama-quantize's rules (src/llama-quant.cpp) for our ftypes.

The order of evaluation matters and is kept: the tensors are visited in llama.cpp's sorted order
(`tensor_order`) and the attn_v / ffn_down counters advance as in `llama_tensor_get_type_impl`, so
"layer i" means the same thing here as there. Rules only reachable from ftypes we do not offer (IQ*,
TQ*, MXFP4, Q2_K_S) are left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from pocketquant.errors import QuantizationError
from pocketquant.gguf_file import GGMLType, GGUFFile, TensorInfo, type_size
from pocketquant.quantize.ftypes import FType

_T = GGMLType
_BLK_RE = re.compile(rb"blk\.\s*([+-]?\d+)\.?")


def _layer_of(name: str) -> int:
    """sscanf(name, "blk.%d.", &layer): the number after "blk." or -1 (assignment happens before
    the trailing '.' is matched, so "blk.7x" gives 7 as in C)."""
    m = _BLK_RE.match(name.encode("utf-8", "surrogateescape"))
    return int(m.group(1)) if m else -1


def order_key(name: str) -> tuple[int, bytes]:
    """weight_name_comparer: by layer number (non-block tensors first), then byte-wise by name."""
    return (_layer_of(name), name.encode("utf-8", "surrogateescape"))


def tensor_order(tensors: Iterable[TensorInfo]) -> list[TensorInfo]:
    """The order llama-quantize writes tensors in (its weights_map is a std::map with this key)."""
    return sorted(tensors, key=lambda t: order_key(t.name))


class Category(Enum):
    TOKEN_EMBD = "token_embd"
    ATTENTION_Q = "attn_q"
    ATTENTION_V = "attn_v"
    ATTENTION_K = "attn_k"
    ATTENTION_QKV = "attn_qkv"
    ATTENTION_KV_B = "attn_kv_b"
    ATTENTION_OUTPUT = "attn_output"
    FFN_UP = "ffn_up"
    FFN_GATE = "ffn_gate"
    FFN_DOWN = "ffn_down"
    OUTPUT = "output"
    OTHER = "other"


_ATTN_V_LIKE = (Category.ATTENTION_V, Category.ATTENTION_QKV, Category.ATTENTION_KV_B)


def category_of(name: str) -> Category:
    """tensor_get_category: broad roles by substring, first match wins (order matters)."""
    if name == "output.weight":
        return Category.OUTPUT
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return Category.TOKEN_EMBD
    for needle, cat in (
        ("attn_qkv.weight", Category.ATTENTION_QKV),
        ("attn_kv_b.weight", Category.ATTENTION_KV_B),
        ("attn_v.weight", Category.ATTENTION_V),
        ("attn_k.weight", Category.ATTENTION_K),
        ("attn_q.weight", Category.ATTENTION_Q),
        ("attn_output.weight", Category.ATTENTION_OUTPUT),
        ("ffn_up", Category.FFN_UP),
        ("ffn_gate", Category.FFN_GATE),
        ("ffn_down", Category.FFN_DOWN),
    ):
        if needle in name:
            return cat
    return Category.OTHER


# tensor_allows_quantization: substrings that keep a tensor in its input type (the arch-independent
# ones; the GLM5-next list is irrelevant to the models we build)
_NEVER_QUANTIZED = (
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
)


def allows_quantization(t: TensorInfo, *, quantize_output_tensor: bool = True) -> bool:
    if t.n_dims < 2 or not t.name.endswith("weight"):
        return False
    if not quantize_output_tensor and t.name == "output.weight":
        return False
    if t.name in ("position_embd.weight", "token_types.weight"):
        return False
    return not any(s in t.name for s in _NEVER_QUANTIZED)


@dataclass(frozen=True)
class ModelInfo:
    """The hyperparameters the policy looks at, read from the GGUF metadata."""

    arch: str
    n_layer: int
    n_head: int
    n_head_kv: int
    n_expert: int = 0

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv if self.n_head_kv else 0

    @property
    def is_70b(self) -> bool:
        # llama.cpp's LLM_TYPE_70B for llama: 80 layers with grouped-query attention
        return self.arch == "llama" and self.n_layer == 80 and self.n_head != self.n_head_kv

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> ModelInfo:
        arch = f.get("general.architecture")
        if not isinstance(arch, str) or not arch:
            raise QuantizationError(f"{f.path}: missing KV 'general.architecture'")

        def first(key: str, default: int | None = None) -> int:
            v = f.get(key)
            if v is None:
                if default is None:
                    raise QuantizationError(f"{f.path}: missing KV {key!r} (needed for the type policy)")
                return default
            if isinstance(v, str) or isinstance(v, list):
                raise QuantizationError(f"{f.path}: KV {key!r} is not a number")
            try:
                return int(v[0]) if hasattr(v, "__len__") else int(v)  # per-layer arrays: layer 0
            except (IndexError, TypeError, ValueError):
                raise QuantizationError(f"{f.path}: KV {key!r} is not a number") from None

        n_head = first(f"{arch}.attention.head_count", 0)
        return cls(
            arch=arch,
            n_layer=first(f"{arch}.block_count"),
            n_head=n_head,
            n_head_kv=first(f"{arch}.attention.head_count_kv", n_head),
            n_expert=first(f"{arch}.expert_count", 0),
        )


@dataclass(frozen=True)
class PolicyOptions:
    ftype: FType
    pure: bool = False
    quantize_output_tensor: bool = True
    output_tensor_type: GGMLType | None = None
    token_embedding_type: GGMLType | None = None
    tensor_types: Sequence[tuple[str, GGMLType]] = ()  # (regex, type), first match wins
    has_imatrix: bool = False


@dataclass
class TypeChoice:
    type: GGMLType
    allows_quantization: bool
    fallback: bool = False  # the shape forced a different type


def _use_more_bits(i: int, n: int) -> bool:
    # C semantics: the modulo is only reached with i >= n/8, so it is never negative
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _is_quantized(t: GGMLType) -> bool:
    return t not in (_T.F32, _T.F16, _T.BF16, _T.F64, _T.I8, _T.I16, _T.I32, _T.I64)


@dataclass
class TypePolicy:
    """Stateful like llama.cpp's quantize_state_impl: call `choose` once per tensor, in order."""

    model: ModelInfo
    opts: PolicyOptions
    names: Sequence[str]
    n_fallback: int = 0
    _patterns: list[tuple[re.Pattern[str], GGMLType]] = field(default_factory=list)

    def __post_init__(self) -> None:
        cats = [category_of(n) for n in self.names]
        self.n_attention_wv = sum(c in _ATTN_V_LIKE for c in cats)
        self.has_tied_embeddings = Category.OUTPUT not in cats
        self.n_ffn = self.model.n_layer
        self.i_attention_wv = self.i_ffn_down = self.i_ffn_gate = self.i_ffn_up = 0
        for pattern, qtype in self.opts.tensor_types:
            try:
                self._patterns.append((re.compile(pattern), qtype))
            except re.error as exc:
                raise QuantizationError(f"--tensor-type: bad regular expression {pattern!r}: {exc}") from None

    def choose(self, t: TensorInfo) -> TypeChoice:
        """llama_tensor_get_type for one tensor (advances the layer counters)."""
        o = self.opts
        if not allows_quantization(t, quantize_output_tensor=o.quantize_output_tensor):
            return TypeChoice(t.type, False)
        cat = category_of(t.name)
        if o.token_embedding_type is not None and cat == Category.TOKEN_EMBD:
            named = t.name == "per_layer_token_embd.weight" and any(
                p.search(t.name) for p, _ in self._patterns
            )
            if not named:
                return TypeChoice(o.token_embedding_type, True)
        if o.output_tensor_type is not None and cat == Category.OUTPUT:
            return TypeChoice(o.output_tensor_type, True)

        new = o.ftype.default
        if not _is_quantized(new):
            return TypeChoice(new, True)
        manual = False
        for pattern, qtype in self._patterns:
            if pattern.search(t.name):
                new, manual = qtype, True
                break
        if not manual and not o.pure:
            new = self._mix(t, new, cat)
        target = new
        new = self._fallback(t, new)
        return TypeChoice(new, True, fallback=new != target)

    def _layer(self, counter: int, t: TensorInfo) -> int:
        if self.model.n_expert > 1:
            # expert tensors are not consecutive: take the layer from the name
            i = _layer_of(t.name)
            if not _BLK_RE.match(t.name.encode("utf-8", "surrogateescape")):
                raise QuantizationError(f"failed to determine the layer of tensor {t.name!r}")
            if not 0 <= i < self.n_ffn:
                raise QuantizationError(f"bad layer {i} for tensor {t.name!r}; must be in [0, {self.n_ffn})")
            return i
        return counter

    def _mix(self, t: TensorInfo, new: GGMLType, cat: Category) -> GGMLType:
        """llama_tensor_get_type_impl, for the ftypes in FTYPES."""
        m, ft = self.model, self.opts.ftype.name
        falcon = m.arch == "falcon"
        if cat == Category.OUTPUT or (self.has_tied_embeddings and cat == Category.TOKEN_EMBD):
            if self.opts.output_tensor_type is not None:
                return self.opts.output_tensor_type
            if falcon or t.ne(0) % type_size(new)[0]:
                return _T.Q8_0
            return new if new == _T.Q8_0 else _T.Q6_K
        if cat == Category.TOKEN_EMBD:
            return new
        if cat in _ATTN_V_LIKE:
            i, n = self.i_attention_wv, self.n_attention_wv
            if ft == "Q2_K":
                new = _T.Q4_K if m.n_gqa >= 4 else _T.Q3_K
            elif ft == "Q3_K_M":
                new = _T.Q5_K if i < 2 else _T.Q4_K
            elif ft == "Q3_K_L":
                new = _T.Q5_K
            elif ft in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
                new = _T.Q6_K
            elif ft == "Q4_K_S" and i < 4:
                new = _T.Q5_K
            if m.is_70b and new in (_T.Q3_K, _T.Q4_K):
                new = _T.Q5_K  # 8 heads share attn_v: more bits are nearly free
            if m.n_expert == 8:
                new = _T.Q8_0
            self.i_attention_wv += 1
        elif cat == Category.ATTENTION_K:
            if m.n_expert == 8:
                new = _T.Q8_0
        elif cat == Category.FFN_DOWN:
            i, n = self._layer(self.i_ffn_down, t), self.n_ffn
            if ft == "Q2_K":
                new = _T.Q3_K
            elif ft == "Q3_K_M":
                if i < n // 16:
                    new = _T.Q5_K
                else:
                    new = _T.Q4_K if not falcon or _use_more_bits(i, n) else _T.Q3_K
            elif ft == "Q3_K_L":
                new = _T.Q4_K if falcon else _T.Q5_K
            elif ft == "Q4_K_M":
                if falcon:
                    new = _T.Q6_K if i < n // 16 else _T.Q5_K if _use_more_bits(i, n) else _T.Q4_K
                elif _use_more_bits(i, n):
                    new = _T.Q6_K
            elif ft == "Q5_K_M" and _use_more_bits(i, n):
                new = _T.Q6_K
            elif ft == "Q4_K_S" and not falcon and i < n // 8:
                new = _T.Q5_K
            elif ft in ("Q4_0", "Q5_0") and self.opts.has_imatrix and i < n // 8:
                # only with an imatrix, so that without one the result never changes
                new = _T.Q4_1 if ft == "Q4_0" else _T.Q5_1
            self.i_ffn_down += 1
        elif cat == Category.ATTENTION_OUTPUT:
            if not falcon:
                if m.n_expert == 8:
                    if ft in ("Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M"):
                        new = _T.Q5_K
                elif ft == "Q2_K":
                    new = _T.Q3_K
                elif ft == "Q3_K_M":
                    new = _T.Q4_K
                elif ft == "Q3_K_L":
                    new = _T.Q5_K
            elif ft == "Q3_K_L":
                new = _T.Q4_K
        elif cat == Category.FFN_GATE:
            self._layer(self.i_ffn_gate, t)
            self.i_ffn_gate += 1
        elif cat == Category.FFN_UP:
            self._layer(self.i_ffn_up, t)
            self.i_ffn_up += 1
        return new

    def _fallback(self, t: TensorInfo, target: GGMLType) -> GGMLType:
        """tensor_type_fallback: a row length the block size does not divide needs another type."""
        ncols, blck = t.ne(0), type_size(target)[0]
        if ncols % blck == 0:
            return target
        self.n_fallback += 1
        fallback = {
            _T.Q2_K: _T.Q4_0,
            _T.Q3_K: _T.Q4_0,
            _T.Q4_K: _T.Q5_0,
            _T.Q5_K: _T.Q5_1,
            _T.Q6_K: _T.Q8_0,
        }.get(target)
        if fallback is None:
            if blck > 32:
                raise QuantizationError(f"no tensor type fallback is defined for type {target.name}")
            fallback = target
        if ncols % type_size(fallback)[0]:
            return _T.F16  # even a 32-block type does not fit: rare, llama.cpp also goes to F16
        return fallback
