"""GGUF v3 files: a strict, memory-mapped reader and a streaming writer.

The reader checks everything llama.cpp's `gguf_init_from_file` checks (magic, version, KV types,
string and array lengths, duplicate keys and names, tensor shapes and types, offsets, alignment) and
also that every tensor's data lies inside the file, and raises GGUFFormatError naming the file and
the fault. The `gguf` package's reader is lax about broken files, so we only borrow its constants.
It reads with pread, not through a memory map: a file truncated by another process while we read it
is then an error message, where a mapping would die of SIGBUS. Only `tensor_data` maps the file.

The writer emits the header, KVs and tensor table first (offsets follow from the declared shapes and
types), then takes tensor data in order, in as many pieces as the caller likes, zero-padding each
tensor to the alignment: the layout `gguf_write_to_file` and llama-quantize produce.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from pocketquant.atomic import atomic_path
from pocketquant.errors import GGUFFormatError
from pocketquant.inputs import open_regular, pread_exact

GGMLType = GGMLQuantizationType
MAGIC = b"GGUF"
VERSION = 3
DEFAULT_ALIGNMENT = 32  # GGUF_DEFAULT_ALIGNMENT
ALIGNMENT_KEY = "general.alignment"
MAX_NAME = 64  # GGML_MAX_NAME: names live in char[64] including the NUL
MAX_DIMS = 4  # GGML_MAX_DIMS

# fixed-size value types: numpy little-endian dtype per GGUF value type
_NP_DTYPE: dict[GGUFValueType, np.dtype] = {
    GGUFValueType.UINT8: np.dtype("<u1"),
    GGUFValueType.INT8: np.dtype("<i1"),
    GGUFValueType.UINT16: np.dtype("<u2"),
    GGUFValueType.INT16: np.dtype("<i2"),
    GGUFValueType.UINT32: np.dtype("<u4"),
    GGUFValueType.INT32: np.dtype("<i4"),
    GGUFValueType.FLOAT32: np.dtype("<f4"),
    GGUFValueType.BOOL: np.dtype("<u1"),
    GGUFValueType.UINT64: np.dtype("<u8"),
    GGUFValueType.INT64: np.dtype("<i8"),
    GGUFValueType.FLOAT64: np.dtype("<f8"),
}
_STRUCT_FMT: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}
_INT_RANGE: dict[GGUFValueType, tuple[int, int]] = {
    t: (int(np.iinfo(d).min), int(np.iinfo(d).max)) for t, d in _NP_DTYPE.items() if d.kind in "iu"
}


def _encode_str(s: str) -> bytes:
    # surrogateescape: strings that were not valid UTF-8 in an input file round-trip byte for byte
    return s.encode("utf-8", "surrogateescape")


def _decode_str(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def type_size(t: GGMLType) -> tuple[int, int]:
    """(block size in elements, bytes per block) of a ggml type: the one table of them all
    (gguf's GGML_QUANT_SIZES); the kernel's own copy is checked against it in tests/kernel."""
    return GGML_QUANT_SIZES[GGMLType(t)]


def value_size(t: GGUFValueType) -> int:
    """Bytes of one fixed-size GGUF metadata value (ValueError for STRING and ARRAY)."""
    try:
        return _NP_DTYPE[GGUFValueType(t)].itemsize
    except KeyError:
        raise ValueError(f"GGUF value type {GGUFValueType(t).name} has no fixed size") from None


def ggml_type_from_name(name: str) -> GGMLType:
    """A ggml type from its name in any case ("q4_k" -> Q4_K); ValueError if unknown."""
    try:
        return GGMLType[name.upper()]
    except KeyError:
        raise ValueError(f"unknown ggml type {name!r}") from None


def n_dims_of(shape: Sequence[int]) -> int:
    """ggml_n_dims: the number of dimensions with trailing 1s dropped (at least 1)."""
    n = len(shape)
    while n > 1 and shape[n - 1] == 1:
        n -= 1
    return max(n, 1)


def tensor_nbytes(shape: Sequence[int], t: GGMLType) -> int:
    blck, size = type_size(t)
    n = 1
    for d in shape:
        n *= d
    return n // blck * size


def pad_to(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


@dataclass(frozen=True)
class KV:
    """One metadata value. `value` is a Python scalar/str, or for arrays a numpy array (numbers)
    or a list of str. `raw` holds the serialized value as read from a file, so copying a KV
    reproduces it byte for byte."""

    type: GGUFValueType
    value: Any
    array_type: GGUFValueType | None = None
    raw: bytes | None = None

    @staticmethod
    def u32(v: int) -> KV:
        return KV(GGUFValueType.UINT32, int(v))

    @staticmethod
    def string(v: str) -> KV:
        return KV(GGUFValueType.STRING, v)

    @staticmethod
    def strings(v: Iterable[str]) -> KV:
        return KV(GGUFValueType.ARRAY, list(v), GGUFValueType.STRING)

    def serialize(self) -> bytes:
        """The value part as written after the key and type tag (type tag included)."""
        head = struct.pack("<I", int(self.type))
        if self.raw is not None:
            return head + self.raw
        if self.type == GGUFValueType.ARRAY:
            at = self.array_type
            if at is None or at == GGUFValueType.ARRAY:
                raise ValueError("array KV needs a non-array element type")
            items = self.value
            parts = [struct.pack("<IQ", int(at), len(items))]
            if at == GGUFValueType.STRING:
                for s in items:
                    b = _encode_str(s)
                    parts.append(struct.pack("<Q", len(b)) + b)
            else:
                arr = np.asarray(items)
                if _NP_DTYPE[at].kind in "iu" and arr.size:
                    lo, hi = _INT_RANGE[at]
                    if arr.min() < lo or arr.max() > hi:
                        raise ValueError(f"array values out of range for {at.name}")
                parts.append(arr.astype(_NP_DTYPE[at]).tobytes())
            return head + b"".join(parts)
        if self.type == GGUFValueType.STRING:
            b = _encode_str(self.value)
            return head + struct.pack("<Q", len(b)) + b
        if self.type in _INT_RANGE:
            lo, hi = _INT_RANGE[self.type]
            if not lo <= int(self.value) <= hi:
                raise ValueError(f"value {self.value} out of range for {self.type.name}")
        return head + struct.pack(_STRUCT_FMT[self.type], self.value)


@dataclass(frozen=True)
class TensorInfo:
    """A tensor table entry. `shape` is in ggml order: shape[0] is the row length (ne0)."""

    name: str
    shape: tuple[int, ...]
    type: GGMLType
    offset: int = 0  # relative to the start of the data section

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.shape, self.type)

    @property
    def n_dims(self) -> int:
        return n_dims_of(self.shape)

    @property
    def n_per_row(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def n_rows(self) -> int:
        return self.n_elements // self.n_per_row if self.n_per_row else 0

    def ne(self, i: int) -> int:
        return self.shape[i] if i < len(self.shape) else 1


class _Cursor:
    """Bounds-checked little-endian reads of the header, raising named errors. The bytes are read
    from the file on demand (the header's size is only known once it is parsed)."""

    def __init__(self, fd: int, size: int, path: Path):
        self.fd = fd
        self.buf = bytearray()
        self.pos = 0
        self.path = path
        self.size = size

    def _fill(self, end: int) -> None:
        have = len(self.buf)
        if end <= have:
            return
        want = min(self.size, max(end, 2 * have, 1 << 16))
        more = bytearray(want - have)
        try:
            got = pread_exact(self.fd, memoryview(more), have)
        except OSError as exc:
            raise self.fail(f"cannot read: {exc.strerror or exc}") from None
        if have + got < end:
            raise self.fail(
                f"truncated while reading: the file is now {have + got} bytes, it was {self.size} "
                "(changed by another process?)"
            )
        self.buf += more[:got]

    def fail(self, what: str) -> GGUFFormatError:
        return GGUFFormatError(f"{self.path}: {what}")

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(
                f"truncated file: {what} needs {n} bytes at offset {self.pos}, "
                f"but the file is only {self.size} bytes"
            )
        self._fill(self.pos + n)

    def unpack(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += n
        return v

    def take(self, n: int, what: str) -> bytes:
        self.need(n, what)
        b = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return b

    def string(self, what: str) -> str:
        n = self.unpack("<Q", f"{what} length")
        if n > self.size - self.pos:
            raise self.fail(
                f"corrupt {what}: length {n} at offset {self.pos - 8} runs past the end of the file "
                f"({self.size} bytes)"
            )
        return _decode_str(self.take(n, what))


def _value_type(code: int, cur: _Cursor, what: str, *, in_array: bool = False) -> GGUFValueType:
    try:
        t = GGUFValueType(code)
    except ValueError:
        raise cur.fail(f"corrupt header: {what} has invalid value type {code}") from None
    if in_array and t == GGUFValueType.ARRAY:
        raise cur.fail(f"corrupt header: {what} is a nested array (not allowed in GGUF)")
    return t


def _read_kv_value(cur: _Cursor, key: str) -> KV:
    what = f"KV {key!r}"
    t = _value_type(cur.unpack("<I", f"type of {what}"), cur, what)
    start = cur.pos
    if t == GGUFValueType.ARRAY:
        at = _value_type(cur.unpack("<I", f"array type of {what}"), cur, what, in_array=True)
        n = cur.unpack("<Q", f"array length of {what}")
        if at == GGUFValueType.STRING:
            if n > (cur.size - cur.pos) // 8:
                raise cur.fail(f"corrupt header: {what} claims {n} strings, more than the file can hold")
            value: Any = [cur.string(f"string {i} of {what}") for i in range(n)]
        else:
            dt = _NP_DTYPE[at]
            if n > (cur.size - cur.pos) // dt.itemsize:
                raise cur.fail(
                    f"corrupt header: {what} claims {n} {at.name} values, more than the rest of the file"
                )
            value = np.frombuffer(cur.take(n * dt.itemsize, what), dtype=dt).copy()
            if at == GGUFValueType.BOOL:
                value = value.astype(bool)
        return KV(t, value, at, bytes(cur.buf[start : cur.pos]))
    if t == GGUFValueType.STRING:
        value = cur.string(f"value of {what}")
    else:
        value = cur.unpack(_STRUCT_FMT[t], f"value of {what}")
    return KV(t, value, None, bytes(cur.buf[start : cur.pos]))


class GGUFFile:
    """A GGUF file opened read-only through mmap and validated. Use as a context manager.

    Attributes: path, version, kv (dict in file order), tensors (list in file order), alignment,
    data_offset (absolute start of the data section), file_size.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._mm: mmap.mmap | None = None
        self._fd: int | None = open_regular(self.path, "GGUF file", GGUFFormatError)
        try:
            self.file_size = os.fstat(self._fd).st_size
            if self.file_size < 4:
                raise GGUFFormatError(
                    f"{self.path}: not a GGUF file (only {self.file_size} bytes, no 'GGUF' magic)"
                )
            self._parse()
        except BaseException:
            self.close()
            raise

    # -- parsing -------------------------------------------------------------------------------
    def _parse(self) -> None:
        assert self._fd is not None
        cur = _Cursor(self._fd, self.file_size, self.path)
        magic = cur.take(4, "magic")
        if magic != MAGIC:
            raise cur.fail(f"not a GGUF file (starts with {magic!r}, expected b'GGUF')")
        self.version = cur.unpack("<I", "version")
        if self.version & 0xFFFF == 0 and self.version:
            raise cur.fail(f"corrupt header: version {self.version:#x} looks byte-swapped (big-endian GGUF)")
        if self.version not in (2, 3):
            raise cur.fail(f"corrupt header: unsupported GGUF version {self.version} (expected 3)")
        n_tensors = cur.unpack("<Q", "tensor count")
        n_kv = cur.unpack("<Q", "KV count")
        # every KV needs >= 13 bytes (key length, type, 1-byte value), every tensor info >= 24
        if n_kv > self.file_size // 13:
            raise cur.fail(
                f"truncated or corrupt header: {n_kv} KVs cannot fit in a {self.file_size}-byte file"
            )
        if n_tensors > self.file_size // 24:
            raise cur.fail(
                f"truncated or corrupt header: {n_tensors} tensors cannot fit in a {self.file_size}-byte file"
            )

        self.kv: dict[str, KV] = {}
        for i in range(n_kv):
            key = cur.string(f"key of KV {i}")
            if not key:
                raise cur.fail(f"corrupt header: key of KV {i} is empty")
            if key in self.kv:
                raise cur.fail(f"corrupt header: duplicate key {key!r}")
            self.kv[key] = _read_kv_value(cur, key)

        self.alignment = DEFAULT_ALIGNMENT
        if ALIGNMENT_KEY in self.kv:
            a = self.kv[ALIGNMENT_KEY]
            if a.type != GGUFValueType.UINT32:
                raise cur.fail(f"corrupt header: {ALIGNMENT_KEY} must be UINT32, is {a.type.name}")
            if a.value == 0 or a.value & (a.value - 1):
                raise cur.fail(f"corrupt header: {ALIGNMENT_KEY} = {a.value} is not a power of 2")
            self.alignment = int(a.value)

        self.tensors: list[TensorInfo] = []
        names: set[str] = set()
        for i in range(n_tensors):
            name = cur.string(f"name of tensor {i}")
            what = f"tensor {i} ({name!r})"
            if len(_encode_str(name)) >= MAX_NAME:
                raise cur.fail(f"corrupt tensor table: name of tensor {i} is {len(name)} bytes (max 63)")
            if name in names:
                raise cur.fail(f"corrupt tensor table: duplicate tensor name {name!r}")
            names.add(name)
            n_dims = cur.unpack("<I", f"dimension count of {what}")
            if n_dims > MAX_DIMS:
                raise cur.fail(f"corrupt tensor table: {what} has {n_dims} dimensions (max {MAX_DIMS})")
            shape = tuple(cur.unpack("<Q", f"shape of {what}") for _ in range(n_dims))
            n_el = 1
            for d in shape:
                if d >= 1 << 63:
                    raise cur.fail(f"corrupt tensor table: {what} has a negative dimension {d - (1 << 64)}")
                n_el *= d
            if n_el >= 1 << 63:
                raise cur.fail(f"corrupt tensor table: {what} shape {list(shape)} overflows int64")
            code = cur.unpack("<I", f"type of {what}")
            try:
                gtype = GGMLType(code)
                blck, _ = type_size(gtype)
            except (ValueError, KeyError):
                raise cur.fail(f"corrupt tensor table: {what} has invalid ggml type {code}") from None
            if (shape[0] if shape else 1) % blck:
                raise cur.fail(
                    f"corrupt tensor table: {what} of type {gtype.name} has {shape[0]} elements per row, "
                    f"not a multiple of its block size {blck}"
                )
            offset = cur.unpack("<Q", f"data offset of {what}")
            self.tensors.append(TensorInfo(name, shape, gtype, offset))

        self.data_offset = pad_to(cur.pos, self.alignment)
        if self.tensors and self.data_offset > self.file_size:
            raise cur.fail(
                f"truncated file: data section would start at byte {self.data_offset}, "
                f"but the file is only {self.file_size} bytes"
            )
        # llama.cpp requires the tensors to be packed in table order, each padded to the alignment
        expected = 0
        for t in self.tensors:
            if t.offset != expected:
                raise cur.fail(
                    f"corrupt tensor table: tensor {t.name!r} has data offset {t.offset}, expected {expected}"
                    + (
                        f" (not a multiple of the alignment {self.alignment})"
                        if t.offset % self.alignment
                        else ""
                    )
                )
            end = self.data_offset + t.offset + t.nbytes
            if end > self.file_size:
                raise cur.fail(
                    f"tensor data past end of file: tensor {t.name!r} ends at byte {end}, "
                    f"but the file is only {self.file_size} bytes (truncated?)"
                )
            expected += pad_to(t.nbytes, self.alignment)
        self._by_name = {t.name: t for t in self.tensors}

    # -- access --------------------------------------------------------------------------------
    def tensor(self, name: str) -> TensorInfo:
        try:
            return self._by_name[name]
        except KeyError:
            raise GGUFFormatError(f"{self.path}: no tensor named {name!r}") from None

    def read_tensor(
        self, t: TensorInfo | str, start: int = 0, stop: int | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """The raw bytes of tensor `t` (or its byte range [start, stop)) read into a uint8 array
        (`out`'s first bytes when given, to reuse a buffer). GGUFFormatError naming the tensor if
        the file is shorter now than when it was opened."""
        if isinstance(t, str):
            t = self.tensor(t)
        assert self._fd is not None, "file is closed"
        stop = t.nbytes if stop is None else stop
        n = stop - start
        buf = np.empty(n, dtype=np.uint8) if out is None else out[:n]
        try:
            got = pread_exact(self._fd, memoryview(buf), self.data_offset + t.offset + start)
        except OSError as exc:
            raise GGUFFormatError(
                f"{self.path}: cannot read tensor {t.name!r}: {exc.strerror or exc}"
            ) from None
        if got < n:
            size = os.fstat(self._fd).st_size
            raise GGUFFormatError(
                f"{self.path}: truncated while reading tensor {t.name!r}: the file is now {size} bytes, "
                f"it was {self.file_size} (changed by another process?)"
            )
        return buf

    def tensor_data(self, t: TensorInfo | str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The raw bytes of tensor `t` (or its byte range [start, stop)) as a read-only uint8 view of
        a memory map (no copy; the map dies of SIGBUS if the file is truncated: prefer read_tensor
        where that can happen)."""
        if isinstance(t, str):
            t = self.tensor(t)
        assert self._fd is not None, "file is closed"
        if self._mm is None:
            if os.fstat(self._fd).st_size < self.file_size:
                raise GGUFFormatError(f"{self.path}: the file was truncated after it was opened")
            self._mm = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ)
        stop = t.nbytes if stop is None else stop
        base = self.data_offset + t.offset
        return np.frombuffer(self._mm, dtype=np.uint8, count=stop - start, offset=base + start)

    def release(self, t: TensorInfo, start: int = 0, stop: int | None = None) -> None:
        """Tell the kernel we are done with these mapped pages, so a big model never sits in our RSS."""
        if self._mm is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        stop = t.nbytes if stop is None else stop
        a = self.data_offset + t.offset + start
        b = self.data_offset + t.offset + stop
        a -= a % mmap.PAGESIZE
        if b > a:
            with contextlib.suppress(OSError, ValueError):
                self._mm.madvise(mmap.MADV_DONTNEED, a, b - a)

    def get(self, key: str, default: Any = None) -> Any:
        kv = self.kv.get(key)
        return default if kv is None else kv.value

    def close(self) -> None:
        if self._mm is not None:
            with contextlib.suppress(BufferError):  # views still alive: the GC unmaps later
                self._mm.close()
            self._mm = None
        if getattr(self, "_fd", None) is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kv_alignment(kvs: Mapping[str, KV]) -> int:
    kv = kvs.get(ALIGNMENT_KEY)
    if kv is None:
        return DEFAULT_ALIGNMENT
    if kv.type != GGUFValueType.UINT32 or kv.value == 0 or kv.value & (kv.value - 1):
        raise ValueError(f"{ALIGNMENT_KEY} must be a UINT32 power of 2")
    return int(kv.value)


class GGUFWriter:
    """Streams a GGUF file: the whole header on construction, then tensor data in table order.

    `write(data)` appends bytes to the current tensor (any number of calls per tensor); when a
    tensor is complete it is zero-padded and the next one begins. `finish()` checks all arrived.
    """

    def __init__(self, fout: IO[bytes], kvs: Mapping[str, KV], tensors: Sequence[TensorInfo]):
        self.f = fout
        self.alignment = _kv_alignment(kvs)
        self.tensors: list[TensorInfo] = []
        offset = 0
        for t in tensors:
            if len(_encode_str(t.name)) >= MAX_NAME:
                raise ValueError(f"tensor name {t.name!r} is longer than {MAX_NAME - 1} bytes")
            self.tensors.append(TensorInfo(t.name, tuple(int(d) for d in t.shape), GGMLType(t.type), offset))
            offset += pad_to(self.tensors[-1].nbytes, self.alignment)
        self.data_size = offset
        parts = [MAGIC, struct.pack("<IQQ", VERSION, len(self.tensors), len(kvs))]
        for key, kv in kvs.items():
            k = _encode_str(key)
            parts.append(struct.pack("<Q", len(k)) + k + kv.serialize())
        for t in self.tensors:
            name = _encode_str(t.name)
            nd = t.n_dims
            parts.append(struct.pack("<Q", len(name)) + name)
            ne = (*t.shape, 1, 1, 1, 1)[:nd]  # a 0-d tensor is written as [1], as ggml does
            parts.append(struct.pack(f"<I{nd}QIQ", nd, *ne, int(t.type), t.offset))
        header = b"".join(parts)
        self.header_size = pad_to(len(header), self.alignment)
        self.f.write(header + bytes(self.header_size - len(header)))
        self._i = 0  # index of the tensor being written
        self._done = 0  # bytes of it written so far

    @property
    def file_size(self) -> int:
        return self.header_size + self.data_size

    @property
    def current(self) -> TensorInfo | None:
        return self.tensors[self._i] if self._i < len(self.tensors) else None

    def write(self, data: Any) -> None:
        mv = memoryview(data).cast("B")
        t = self.current
        if t is None:
            raise ValueError("all tensors are already written")
        if self._done + mv.nbytes > t.nbytes:
            raise ValueError(
                f"tensor {t.name!r}: got {self._done + mv.nbytes} bytes, expected {t.nbytes} ({t.type.name})"
            )
        self.f.write(mv)
        self._done += mv.nbytes
        while t is not None and self._done == t.nbytes:
            self.f.write(bytes(pad_to(t.nbytes, self.alignment) - t.nbytes))
            self._i += 1
            self._done = 0
            t = self.current

    def finish(self) -> None:
        if self._i < len(self.tensors):
            t = self.tensors[self._i]
            raise ValueError(f"tensor {t.name!r} incomplete: {self._done} of {t.nbytes} bytes written")
        self.f.flush()


@contextlib.contextmanager
def create_gguf(
    target: str | os.PathLike[str], kvs: Mapping[str, KV], tensors: Sequence[TensorInfo]
) -> Iterator[GGUFWriter]:
    """Write a GGUF atomically: a temp file beside `target`, renamed when the block completes."""
    with atomic_path(target) as tmp, open(tmp, "wb", buffering=1 << 20) as f:
        w = GGUFWriter(f, kvs, tensors)
        yield w
        w.finish()
