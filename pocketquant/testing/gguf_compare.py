"""Compare two GGUF files KV by KV and tensor by tensor (names, types, shapes, bytes).

Used to hold our converter to llama.cpp's: `differences(ours, theirs, ignore=...)` lists every
disagreement as one line (empty when the files agree). KVs are compared by serialized bytes, so a
value with the right number but the wrong GGUF type is a difference too. Key and tensor order
is not compared (llama.cpp's loader looks both up by name).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from pocketquant.gguf_file import KV, GGUFFile


def _show(kv: KV) -> str:
    value = kv.value
    if isinstance(value, list | tuple) or hasattr(value, "shape"):
        seq = list(value)
        head = ", ".join(repr(v) for v in seq[:4])
        element = kv.array_type.name if kv.array_type else "?"
        return f"{kv.type.name}[{element}] len {len(seq)} [{head}{', ...' if len(seq) > 4 else ''}]"
    text = repr(value)
    return f"{kv.type.name} {text[:120]}{'...' if len(text) > 120 else ''}"


def _first_difference(a: KV, b: KV) -> str:
    if a.type != b.type or a.array_type != b.array_type:
        return f"{_show(a)} != {_show(b)}"
    va, vb = list(a.value), list(b.value)
    if len(va) != len(vb):
        return f"length {len(va)} != {len(vb)}"
    for i, (x, y) in enumerate(zip(va, vb, strict=True)):
        if x != y and not (x != x and y != y):  # NaN == NaN here
            return f"first difference at [{i}]: {x!r} != {y!r}"
    return "same values, different bytes"


def differences(
    ours: str | os.PathLike[str], theirs: str | os.PathLike[str], *, ignore: Iterable[str] = ()
) -> list[str]:
    """Every KV and tensor on which the two files disagree. ignore: KV keys left out, each with a
    reason stated by the caller (a key ending in '*' ignores every key with that prefix)."""
    ignore = list(ignore)

    def ignored(key: str) -> bool:
        return any(key == k or (k.endswith("*") and key.startswith(k[:-1])) for k in ignore)

    out: list[str] = []
    with GGUFFile(ours) as a, GGUFFile(theirs) as b:
        for key in sorted(set(a.kv) | set(b.kv)):
            if ignored(key):
                continue
            if key not in b.kv:
                out.append(f"KV {key}: only in ours ({_show(a.kv[key])})")
            elif key not in a.kv:
                out.append(f"KV {key}: missing from ours (llama.cpp: {_show(b.kv[key])})")
            elif a.kv[key].serialize() != b.kv[key].serialize():
                kv_a, kv_b = a.kv[key], b.kv[key]
                detail = (
                    _first_difference(kv_a, kv_b)
                    if kv_a.type.name == "ARRAY" and kv_b.type.name == "ARRAY"
                    else f"{_show(kv_a)} != {_show(kv_b)}"
                )
                out.append(f"KV {key}: {detail}")
        ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
        for name in sorted(set(ta) | set(tb)):
            if name not in tb:
                out.append(f"tensor {name}: only in ours")
            elif name not in ta:
                out.append(f"tensor {name}: missing from ours")
            elif (ta[name].type, ta[name].shape) != (tb[name].type, tb[name].shape):
                out.append(
                    f"tensor {name}: {ta[name].type.name} {list(ta[name].shape)} != "
                    f"{tb[name].type.name} {list(tb[name].shape)}"
                )
            else:
                da, db = a.tensor_data(ta[name]), b.tensor_data(tb[name])
                if (da != db).any():
                    n = int((da != db).sum())
                    out.append(f"tensor {name}: {n} of {da.size} bytes differ")
    return out
