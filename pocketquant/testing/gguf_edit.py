"""Copy a GGUF with some metadata changed (tests: the same weights under another chat template,
without a chat template like a base model, or with another add_bos_token)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from pocketquant.gguf_file import KV, GGUFFile, GGUFValueType, create_gguf


def bool_kv(value: bool) -> KV:
    return KV(GGUFValueType.BOOL, bool(value))


def copy_with_metadata(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    set_kv: Mapping[str, KV] | None = None,
    drop: Iterable[str] = (),
) -> Path:
    """Write dst: src's tensors byte for byte and its metadata with `drop` removed and `set_kv`
    set (replaced in place, or appended)."""
    drop = set(drop)
    with GGUFFile(src) as g:
        kvs = {k: v for k, v in g.kv.items() if k not in drop}
        kvs.update(set_kv or {})
        with create_gguf(dst, kvs, g.tensors) as w:
            for t in g.tensors:
                w.write(g.tensor_data(t))
    return Path(dst)
