"""The GGUF metadata (KV pairs) of a conversion, collected before anything is written.

Key names and value types come from the `gguf` package: every `add_*` adder of gguf-py's
GGUFWriter that only records a KV (add_block_count, add_rope_freq_base, add_token_list, ...) is
borrowed as it is, so a family module calls the same adders llama.cpp's converter calls and gets
the same keys and types. Only the recording underneath is ours: values become
pocketquant.gguf_file.KV entries, written by our one GGUF writer (`gguf_file.create_gguf`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gguf
from gguf.constants import GGUFValueType

from pocketquant.gguf_file import KV

# GGUFWriter methods that touch tensors, files or writer state: not borrowed.
_NOT_METADATA = {
    "add_key_value",
    "add_tensor",
    "add_tensor_info",
    "add_shard_kv_data",
    "add_custom_alignment",
    "add_architecture",
}


def _element_type(values: Sequence[Any], sub_type: GGUFValueType | None) -> GGUFValueType:
    """gguf-py's array element type: explicit, else the type of the first item (bytes -> STRING)."""
    if sub_type is not None:
        return sub_type
    if isinstance(values, bytes):
        return GGUFValueType.UINT8
    first = GGUFValueType.get_type(values[0])
    if any(GGUFValueType.get_type(v) is not first for v in values[1:]):
        raise ValueError("all items of a GGUF array must have the same type")
    return first


def _as_text(value: str | bytes | bytearray) -> str:
    # surrogateescape: bytes that are not UTF-8 (SentencePiece byte pieces are) round-trip exactly
    return value if isinstance(value, str) else bytes(value).decode("utf-8", "surrogateescape")


class GGUFMetadata:
    """Ordered KV pairs for one GGUF file of architecture `arch` (a gguf.MODEL_ARCH_NAMES value)."""

    def __init__(self, arch: str) -> None:
        self.arch = arch
        self.kvs: dict[str, KV] = {}
        self.add_string(gguf.Keys.General.ARCHITECTURE, arch)

    def add_key_value(
        self, key: str, val: Any, vtype: GGUFValueType, sub_type: GGUFValueType | None = None
    ) -> None:
        """Record one KV; a key set again keeps its first position and takes the new value (as in
        gguf-py, whose converter relies on overwriting, e.g. add_bos_token set twice)."""
        if vtype == GGUFValueType.ARRAY:
            element = _element_type(val, sub_type)
            items = [_as_text(v) for v in val] if element == GGUFValueType.STRING else list(val)
            self.kvs[key] = KV(GGUFValueType.ARRAY, items, element)
        elif vtype == GGUFValueType.STRING:
            self.kvs[key] = KV(GGUFValueType.STRING, _as_text(val))
        elif vtype == GGUFValueType.BOOL:
            self.kvs[key] = KV(GGUFValueType.BOOL, bool(val))
        elif vtype in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
            self.kvs[key] = KV(vtype, float(val))
        else:
            self.kvs[key] = KV(vtype, int(val))

    # The primitive adders, with gguf-py's semantics (an empty string or array is not written).
    def add_uint32(self, key: str, val: int) -> None:
        self.add_key_value(key, val, GGUFValueType.UINT32)

    def add_int32(self, key: str, val: int) -> None:
        self.add_key_value(key, val, GGUFValueType.INT32)

    def add_float32(self, key: str, val: float) -> None:
        self.add_key_value(key, val, GGUFValueType.FLOAT32)

    def add_bool(self, key: str, val: bool) -> None:
        self.add_key_value(key, val, GGUFValueType.BOOL)

    def add_string(self, key: str, val: str) -> None:
        if val:
            self.add_key_value(key, val, GGUFValueType.STRING)

    def add_array(self, key: str, val: Sequence[Any]) -> None:
        if len(val):
            self.add_key_value(key, val, GGUFValueType.ARRAY)

    def get(self, key: str) -> Any:
        kv = self.kvs.get(key)
        return None if kv is None else kv.value


def _borrow_adders() -> None:
    """Give GGUFMetadata every named metadata adder of gguf.GGUFWriter (they only call the
    primitive adders above and read `self.arch`)."""
    for name, fn in vars(gguf.GGUFWriter).items():
        if name.startswith("add_") and name not in _NOT_METADATA and not hasattr(GGUFMetadata, name):
            setattr(GGUFMetadata, name, fn)


_borrow_adders()
