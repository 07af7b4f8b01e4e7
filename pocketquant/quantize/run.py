"""Quantize a GGUF file the way llama-quantize does, streaming one tensor (slab of rows) at a time.

Memory stays bounded: each tensor is read (pread, into one reused buffer) and converted in slabs of
rows, and the output is written as we go. Reading instead of memory-mapping makes an input that is
truncated under us an error message rather than a SIGBUS.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pocketquant.atomic import refuse_overwriting_inputs
from pocketquant.errors import ImatrixError, QuantizationError
from pocketquant.gguf_file import KV, GGMLType, GGUFFile, GGUFWriter, TensorInfo, create_gguf, tensor_nbytes
from pocketquant.hparams_check import check_gguf_hparams
from pocketquant.imatrix import Imatrix, load_imatrix
from pocketquant.quantize import codec
from pocketquant.quantize.ftypes import TENSOR_TYPES, FType, is_quantized, parse_ftype, parse_tensor_type
from pocketquant.quantize.policy import (
    Category,
    ModelInfo,
    PolicyOptions,
    TypePolicy,
    category_of,
    tensor_order,
)

QUANTIZATION_VERSION = 2  # GGML_QNT_VERSION
SPLIT_KEYS = ("split.no", "split.count", "split.tensors.count")
SLAB_FLOATS = 1 << 21  # rows per step: at most 8 MiB of float32 (read buffer stays in cache)
# source types the kernel (and the F32/F16/BF16 bit conversions) can turn into float32
READABLE_TYPES = frozenset(TENSOR_TYPES.values())


@dataclass(frozen=True)
class QuantizeOptions:
    """llama-quantize's options (its command-line flags), defined once: quantize_gguf, the
    `pocketquant quantize` CLI and the llama.cpp reference in pocketquant.testing all take this."""

    pure: bool = False  # --pure: every quantizable tensor gets the ftype's default type
    leave_output_tensor: bool = False  # --leave-output-tensor: output.weight keeps its input type
    output_tensor_type: str | GGMLType | None = None  # --output-tensor-type
    token_embedding_type: str | GGMLType | None = None  # --token-embedding-type
    # --tensor-type: "REGEX=TYPE" strings or (regex, type) pairs; first match wins
    tensor_types: Sequence[str | tuple[str, str | GGMLType]] = ()
    allow_requantize: bool = False  # --allow-requantize: accept already quantized inputs

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def with_changes(self, **changes: object) -> QuantizeOptions:
        """A copy with some options changed; a TypeError names an unknown one."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            known = ", ".join(self.names())
            raise TypeError(f"unknown quantize option(s) {', '.join(unknown)}; known: {known}")
        return replace(self, **changes)  # type: ignore[arg-type]

    def parsed_types(self) -> tuple[GGMLType | None, GGMLType | None, tuple[tuple[str, GGMLType], ...]]:
        """(output tensor type, token embedding type, tensor-type overrides), checked: a bad type
        name is a QuantizationError naming the flag."""
        ott, tet = self.output_tensor_type, self.token_embedding_type
        return (
            parse_tensor_type(ott, "--output-tensor-type") if ott else None,
            parse_tensor_type(tet, "--token-embedding-type") if tet else None,
            tuple(_parse_override(o) for o in self.tensor_types),
        )


@dataclass(frozen=True)
class TensorPlan:
    name: str
    shape: tuple[int, ...]
    src_type: GGMLType
    dst_type: GGMLType
    src_nbytes: int
    dst_nbytes: int
    fallback: bool = False
    imatrix: bool = False  # importance weights used for this tensor

    @property
    def converted(self) -> bool:
        return self.src_type != self.dst_type


@dataclass
class QuantizeReport:
    src: Path
    dst: Path | None
    ftype: str
    threads: int | None
    dry_run: bool
    tensors: list[TensorPlan]
    n_fallback: int
    file_bytes: int  # size of the output file (header, padding and data)
    n_elements: int
    imatrix: str | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def src_data_bytes(self) -> int:
        return sum(t.src_nbytes for t in self.tensors)

    @property
    def dst_data_bytes(self) -> int:
        return sum(t.dst_nbytes for t in self.tensors)

    @property
    def bpw(self) -> float:
        return 8.0 * self.dst_data_bytes / max(self.n_elements, 1)

    def type_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.dst_type.name] = out.get(t.dst_type.name, 0) + 1
        return out

    def table(self) -> str:
        """The per-tensor plan as a text table, and the totals."""
        rows = [("tensor", "shape", "type", "bytes")]
        for t in self.tensors:
            note = " (fallback)" if t.fallback else ""
            rows.append(
                (
                    printable_name(t.name),
                    "x".join(map(str, t.shape)),
                    f"{t.src_type.name} -> {t.dst_type.name}{note}",
                    f"{t.dst_nbytes:,}",
                )
            )
        w = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:<{w[2]}}  {r[3]:>{w[3]}}" for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        mix = ", ".join(f"{k}: {v}" for k, v in sorted(self.type_counts().items()))
        lines += [
            "",
            f"{self.ftype}: {len(self.tensors)} tensors ({mix})",
            f"tensor data {self.src_data_bytes:,} -> {self.dst_data_bytes:,} bytes "
            f"({self.bpw:.2f} bits/weight)",
            f"output file size {self.file_bytes:,} bytes ({self.file_bytes / 2**30:.3f} GiB)",
        ]
        if self.n_fallback:
            lines.append(
                f"{self.n_fallback} of {len(self.tensors)} tensors needed a fallback type (row length)"
            )
        return "\n".join(lines)


def printable_name(name: str) -> str:
    """A tensor name for a terminal: bytes that were not UTF-8 in the file (kept as surrogates by
    the reader) shown as \\xNN escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class _CountingSink:
    """A write-only file that only counts bytes (sizes the header for --dry-run)."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, b) -> int:
        n = memoryview(b).nbytes
        self.n += n
        return n

    def flush(self) -> None:
        pass


def _as_imatrix(imatrix: Imatrix | str | os.PathLike[str] | None) -> Imatrix | None:
    if imatrix is None or isinstance(imatrix, Imatrix):
        return imatrix
    return load_imatrix(imatrix)


def _truncate127(s: str) -> str:
    # llama-quantize copies these strings into char[128] overrides with strncpy(.., 127)
    return s.encode("utf-8", "surrogateescape")[:127].decode("utf-8", "surrogateescape")


def output_metadata(src: GGUFFile, ftype: FType, imatrix: Imatrix | None) -> dict[str, KV]:
    """Input KVs in input order; quantization_version and file_type re-set (so moved last); split
    keys dropped; with an imatrix, the quantize.imatrix.* keys llama-quantize adds."""
    kvs = dict(src.kv)

    def set_kv(key: str, kv: KV) -> None:  # gguf_set_val_*: remove, then append
        kvs.pop(key, None)
        kvs[key] = kv

    set_kv("general.quantization_version", KV.u32(QUANTIZATION_VERSION))
    set_kv("general.file_type", KV.u32(ftype.id))
    for k in SPLIT_KEYS:
        kvs.pop(k, None)
    if imatrix is not None:
        set_kv("quantize.imatrix.file", KV.string(_truncate127(imatrix.path or "")))
        if imatrix.datasets:
            set_kv("quantize.imatrix.dataset", KV.string(_truncate127(imatrix.datasets[0])))
        set_kv("quantize.imatrix.entries_count", KV.u32(len(imatrix.entries)))
        if imatrix.chunk_count > 0:
            set_kv("quantize.imatrix.chunks_count", KV.u32(imatrix.chunk_count))
    return kvs


def _imatrix_for(imatrix: Imatrix, t: TensorInfo, dst: GGMLType) -> np.ndarray | None:
    """Importance weights for tensor t, with llama-quantize's tolerance for token_embd and output
    (which llama-imatrix never records) and a named error for anything else missing or misfit."""
    n_mat = t.ne(2)
    cat = category_of(t.name)
    lenient = cat in (Category.TOKEN_EMBD, Category.OUTPUT)
    try:
        v = imatrix.for_tensor(t.name, t.ne(0), n_mat)
    except ImatrixError:
        if cat == Category.TOKEN_EMBD:
            return None  # llama-quantize ignores a misfit token_embd entry
        raise
    if v is None and not lenient and is_quantized(dst):
        raise ImatrixError(f"{imatrix.path or 'imatrix'}: no entry for tensor {t.name!r}")
    return v


def plan_quantization(
    src: GGUFFile,
    ftype: FType,
    *,
    imatrix: Imatrix | None = None,
    options: QuantizeOptions = QuantizeOptions(),
) -> tuple[list[TensorInfo], list[TensorPlan], dict[str, np.ndarray], int]:
    """Tensors in output order, the plan per tensor, imatrix weights per tensor, fallback count."""
    tensors = tensor_order(src.tensors)
    ott, tet, overrides = options.parsed_types()
    opts = PolicyOptions(
        ftype=ftype,
        pure=options.pure,
        quantize_output_tensor=not options.leave_output_tensor,
        output_tensor_type=ott,
        token_embedding_type=tet,
        tensor_types=overrides,
        has_imatrix=imatrix is not None,
    )
    allow_requantize = options.allow_requantize
    policy = TypePolicy(ModelInfo.from_gguf(src), opts, [t.name for t in tensors])
    plans: list[TensorPlan] = []
    weights: dict[str, np.ndarray] = {}
    for t in tensors:
        if t.n_elements == 0:
            raise QuantizationError(
                f"{src.path}: tensor {t.name!r} has no elements (shape {list(t.shape)}); "
                "llama.cpp cannot use an empty tensor"
            )
        choice = policy.choose(t)
        dst = choice.type
        used = False
        if dst != t.type:
            if t.type not in READABLE_TYPES:
                raise QuantizationError(
                    f"{src.path}: tensor {t.name!r} has type {t.type.name}, which pocketquant cannot "
                    f"convert to {dst.name} (readable: {', '.join(TENSOR_TYPES)})"
                )
            if is_quantized(t.type) and not allow_requantize:
                raise QuantizationError(
                    f"{src.path}: tensor {t.name!r} is already quantized ({t.type.name}); "
                    "requantizing loses quality, pass --allow-requantize to do it anyway"
                )
            if t.ne(3) != 1:
                raise QuantizationError(f"{src.path}: tensor {t.name!r} has 4 dimensions; cannot quantize it")
            if imatrix is not None:
                w = _imatrix_for(imatrix, t, dst)
                if w is not None and is_quantized(dst):
                    weights[t.name] = w
                    used = True
        plans.append(
            TensorPlan(
                t.name, t.shape, t.type, dst, t.nbytes, tensor_nbytes(t.shape, dst), choice.fallback, used
            )
        )
    return tensors, plans, weights, policy.n_fallback


def _check_finite(x: np.ndarray, name: str, path: Path, first_row: int) -> None:
    if codec.count_nonfinite(x):
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))[0] + first_row
        raise QuantizationError(f"{path}: tensor {name!r} contains NaN or Inf (first in row {bad})")


def _slab_rows(t: TensorInfo) -> int:
    return max(1, SLAB_FLOATS // max(t.ne(0), 1))


def _slab_buffer(tensors: Sequence[TensorInfo]) -> np.ndarray:
    """One read buffer for every slab of every tensor (no allocation per slab)."""
    need = 0
    for t in tensors:
        if t.n_rows:
            need = max(need, min(_slab_rows(t), t.n_rows) * (t.nbytes // t.n_rows))
    return np.empty(need, dtype=np.uint8)


def _stream_tensor(
    src: GGUFFile,
    t: TensorInfo,
    plan: TensorPlan,
    w: GGUFWriter | None,
    imatrix: np.ndarray | None,
    threads: int | None,
    bar: tqdm,
    buf: np.ndarray,
) -> None:
    """Read tensor t slab by slab (pread: a file truncated under us is an error, not SIGBUS), check
    that its values are finite, convert it as planned and write it to w (w None: a dry run, which
    checks only)."""
    n_per_row = t.ne(0)
    rows_total = t.n_rows
    row_bytes = t.nbytes // rows_total if rows_total else 0
    rows_per_expert = t.ne(1)
    slab = _slab_rows(t)
    convert = plan.converted
    check = convert or t.type in (GGMLType.F32, GGMLType.F16, GGMLType.BF16)
    if w is None and not check:
        bar.update(t.nbytes)
        return
    r = 0
    while r < rows_total:
        # slabs never straddle two experts, so each has one importance vector
        n = min(slab, rows_total - r, rows_per_expert - r % rows_per_expert)
        a, b = r * row_bytes, (r + n) * row_bytes
        raw = src.read_tensor(t, a, b, out=buf)
        if check:
            x = codec.to_float32(raw, t.type, n_per_row, threads)
            _check_finite(x, t.name, src.path, r)
        if w is not None and convert:
            iw = None
            if imatrix is not None:
                e = r // rows_per_expert
                iw = imatrix[e * n_per_row : (e + 1) * n_per_row]
            out = codec.from_float32(x, plan.dst_type, iw, threads)
            w.write(out)
            del out
        elif w is not None:
            w.write(raw)
        del raw
        if check:
            del x
        bar.update(b - a)
        r += n
    if rows_total == 0 and w is not None:
        w.write(b"")


def quantize_gguf(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str] | None,
    ftype: str,
    *,
    threads: int | None = None,
    imatrix: Imatrix | str | os.PathLike[str] | None = None,
    options: QuantizeOptions = QuantizeOptions(),
    dry_run: bool = False,
    progress: bool = True,
    **option_changes: object,
) -> QuantizeReport:
    """Quantize GGUF `src` to `dst` with llama-quantize's ftype `ftype` (e.g. "q4_k_m").

    options: llama-quantize's options (QuantizeOptions); keyword arguments named like its fields
    (pure=True, tensor_types=[...]) change them. Regexes of tensor_types are lower-cased as
    llama-quantize does. Returns the plan and sizes; with dry_run nothing is written.
    """
    options = options.with_changes(**option_changes) if option_changes else options
    t0 = time.perf_counter()
    ft = parse_ftype(ftype)
    if threads is not None and threads < 1:
        raise QuantizationError(f"--threads must be at least 1, got {threads}")
    options.parsed_types()  # bad type names fail before any file is opened
    src_path = Path(src)
    if not dry_run and dst is not None:
        refuse_overwriting_inputs(dst, [src_path, None if isinstance(imatrix, Imatrix) else imatrix])
    im = _as_imatrix(imatrix)
    with GGUFFile(src_path) as f:
        check_gguf_hparams(f.kv, [t.name for t in f.tensors], f.path)
        tensors, plans, weights, n_fallback = plan_quantization(
            f,
            ft,
            imatrix=im,
            options=options,
        )
        kvs = output_metadata(f, ft, im)
        out_tensors = [TensorInfo(p.name, p.shape, p.dst_type) for p in plans]
        report = QuantizeReport(
            src=src_path,
            dst=None if dry_run or dst is None else Path(dst),
            ftype=ft.name,
            threads=threads,
            dry_run=dry_run,
            tensors=plans,
            n_fallback=n_fallback,
            file_bytes=GGUFWriter(_CountingSink(), kvs, out_tensors).file_size,
            n_elements=sum(t.n_elements for t in tensors),
            imatrix=im.path if im else None,
        )
        if dst is None and not dry_run:
            raise QuantizationError("no output path given")
        total = sum(t.nbytes for t in tensors)
        buf = _slab_buffer(tensors)
        bar = tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc=f"{'check' if dry_run else 'quantize'} {ft.name}",
            disable=not progress,
            mininterval=0.5,
        )
        with contextlib.ExitStack() as stack:
            stack.enter_context(bar)
            # a dry run reads and checks every value too: it fails where the real run would
            w = None if dry_run else stack.enter_context(create_gguf(dst, kvs, out_tensors))
            for t, p in zip(tensors, plans, strict=True):
                bar.set_postfix_str(printable_name(t.name), refresh=False)
                _stream_tensor(f, t, p, w, weights.get(t.name), threads, bar, buf)
    report.seconds = time.perf_counter() - t0
    return report


def _parse_override(o: str | tuple[str, str | GGMLType]) -> tuple[str, GGMLType]:
    if isinstance(o, str):
        pattern, sep, tname = o.partition("=")
        if not sep or not pattern or not tname:
            raise QuantizationError(f"--tensor-type: expected REGEX=TYPE, got {o!r}")
    else:
        pattern, tname = o
    return pattern.lower(), parse_tensor_type(tname, f"--tensor-type {pattern}")
