"""The few GGUF metadata values packaging needs (chat template, special tokens, context length),
read with our strict reader and checked first: metadata llama.cpp would refuse is an error naming
the file and the key, before anything is packaged or loaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf.constants import GGUFValueType

from pocketquant.errors import HparamsError
from pocketquant.gguf_file import GGUFFile
from pocketquant.hparams_check import check_gguf_hparams

TOKENS = "tokenizer.ggml.tokens"
CHAT_TEMPLATE = "tokenizer.chat_template"
BOS_ID = "tokenizer.ggml.bos_token_id"
EOS_ID = "tokenizer.ggml.eos_token_id"


@dataclass(frozen=True)
class GGUFInfo:
    architecture: str
    chat_template: str | None
    bos_token: str
    eos_token: str
    context_length: int | None


def _kv(g: GGUFFile, key: str, want: GGUFValueType, element: GGUFValueType | None = None) -> Any:
    """The value of `key` if present; HparamsError naming it if it has another type than llama.cpp
    reads (a STRING with bytes that are not UTF-8 counts as the wrong type)."""
    kv = g.kv.get(key)
    if kv is None:
        return None
    if kv.type != want or (element is not None and kv.array_type != element):
        got = kv.type.name + (f" of {kv.array_type.name}" if kv.array_type is not None else "")
        need = want.name + (f" of {element.name}" if element is not None else "")
        raise HparamsError(f"{g.path}: {key} has type {got}; llama.cpp needs {need}")
    if want == GGUFValueType.STRING:
        try:
            kv.value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raw = kv.value.encode("utf-8", "surrogateescape")
            pos = len(kv.value[: exc.start].encode("utf-8", "surrogateescape"))
            raise HparamsError(f"{g.path}: {key} is not valid UTF-8 (byte {pos} of {len(raw)})") from None
    return kv.value


def read_gguf_info(path: str | Path) -> GGUFInfo:
    """Read metadata with our strict reader (GGUFFormatError naming the file if it is no GGUF,
    HparamsError naming the key if llama.cpp would refuse its metadata)."""
    with GGUFFile(path) as g:
        check_gguf_hparams(g.kv, [t.name for t in g.tensors], g.path)
        arch = _kv(g, "general.architecture", GGUFValueType.STRING) or "unknown"
        tokens = _kv(g, TOKENS, GGUFValueType.ARRAY, GGUFValueType.STRING) or []

        def token_text(key: str) -> str:
            token_id = _kv(g, key, GGUFValueType.UINT32)
            text = str(tokens[token_id]) if token_id is not None and token_id < len(tokens) else ""
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise HparamsError(f"{g.path}: {key} = {token_id} names a token that is not UTF-8") from None
            return text

        ctx = _kv(g, f"{arch}.context_length", GGUFValueType.UINT32)
        return GGUFInfo(
            architecture=arch,
            chat_template=_kv(g, CHAT_TEMPLATE, GGUFValueType.STRING),
            bos_token=token_text(BOS_ID),
            eos_token=token_text(EOS_ID),
            context_length=int(ctx) if ctx is not None else None,
        )
