"""The few GGUF metadata values packaging needs (chat template, special tokens, context length)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pocketquant.gguf_file import GGUFFile
from pocketquant.hparams_check import check_gguf_metadata


@dataclass(frozen=True)
class GGUFInfo:
    architecture: str
    chat_template: str | None
    bos_token: str
    eos_token: str
    context_length: int | None
    add_bos: bool = True  # tokenizer.ggml.add_bos_token (absent: the runtime adds BOS)
    special_tokens: frozenset[str] = frozenset()  # see special_token_texts


def read_gguf_info(path: str | Path) -> GGUFInfo:
    """Read metadata with our strict reader (GGUFFormatError naming the file if it is no GGUF)."""
    with GGUFFile(path) as g:
        check_gguf_metadata(g.kv, [t.name for t in g.tensors], g.path)  # llama.cpp's types, named
        arch = str(g.get("general.architecture", "unknown"))
        tokens = g.get("tokenizer.ggml.tokens") or []

        def token_text(key: str) -> str:
            token_id = g.get(key)
            return (
                str(tokens[int(token_id)])
                if token_id is not None and 0 <= int(token_id) < len(tokens)
                else ""
            )

        ctx = g.get(f"{arch}.context_length")
        return GGUFInfo(
            architecture=arch,
            chat_template=g.get("tokenizer.chat_template"),
            bos_token=token_text("tokenizer.ggml.bos_token_id"),
            eos_token=token_text("tokenizer.ggml.eos_token_id"),
            context_length=int(ctx) if ctx is not None else None,
            add_bos=bool(g.get("tokenizer.ggml.add_bos_token", True)),
            special_tokens=special_token_texts(g),
        )


# gguf's TokenType CONTROL and USER_DEFINED: tokens matched whole when special text is parsed
SPECIAL_TOKEN_TYPES = (3, 4)


def special_token_texts(g: GGUFFile) -> frozenset[str]:
    """The texts of the vocabulary's control and user-defined tokens: each tokenizes as one token
    (llama.cpp with parse_special), so they can be Modelfile stops. Empty without token types."""
    tokens = g.get("tokenizer.ggml.tokens") or []
    types = np.asarray(g.get("tokenizer.ggml.token_type", []))
    if len(types) != len(tokens):
        return frozenset()
    return frozenset(str(tokens[i]) for i in np.flatnonzero(np.isin(types, SPECIAL_TOKEN_TYPES)))
