"""Tokenizer metadata for GGUF: byte-level BPE ('gpt2') and SentencePiece ('llama') vocabularies.

llama.cpp re-implements the tokenizer from these keys, so they decide whether llama.cpp and the HF
tokenizer produce the same ids. The token lists follow llama.cpp's converter (get_vocab_base,
_create_vocab_sentencepiece); special ids, add_bos/add_eos, merges and the chat template come from
gguf-py's SpecialVocab, read as the pinned converter's copy of it reads them (special_tokens.py).
The BPE pre-tokenizer name (`tokenizer.ggml.pre`) selects llama.cpp's splitting regex: a tokenizer
llama.cpp knows is identified as its converter does (hash of the ids of a probe text); any other
one from the structure of its pre-tokenizer.
"""

from __future__ import annotations

import json
from hashlib import sha256
from pathlib import Path
from typing import Any

import gguf

from pocketquant.convert.errors import ConversionError, one_line
from pocketquant.convert.metadata import GGUFMetadata
from pocketquant.convert.pre_hashes import PRE_TOKENIZER_HASHES
from pocketquant.convert.special_tokens import SpecialTokens

# The pre-tokenizer regexes of the tokenizer.json files, as llama.cpp's pre-types implement them.
# Llama 3 (llama.cpp 'llama-bpe'; also cl100k-style vocabularies, 'dbrx', that replay merges):
LLAMA3_PRETOKENIZER_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen2 / Qwen2.5 / Qwen3 (llama.cpp 'qwen2'): single digits.
QWEN2_PRETOKENIZER_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Probe text of llama.cpp's get_vocab_base_pre(); the sha256 of str(ids) identifies a known vocabulary.
CHKTXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ "  # noqa: E501
    "🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "  # noqa: E501
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, "
    "'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)

# SentencePiece piece types, as llama.cpp's converter numbers them (gguf.TokenType values).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = (
    int(gguf.TokenType.NORMAL),
    int(gguf.TokenType.UNKNOWN),
    int(gguf.TokenType.CONTROL),
    int(gguf.TokenType.USER_DEFINED),
    int(gguf.TokenType.UNUSED),
    int(gguf.TokenType.BYTE),
)
_SPACE = "\u2581"  # SentencePiece's visible space


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{path}: not valid JSON ({exc})") from exc


def looks_special(token: str | bytes) -> bool:
    """Added tokens some models forget to mark special but llama.cpp treats as control tokens."""
    text = token.decode("utf-8") if isinstance(token, bytes) else token
    return (
        text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (text.startswith("<|") and text.endswith("|>"))
        or (text.startswith("<｜") and text.endswith("｜>"))
        or (text.startswith("<unused") and text.endswith(">"))
    )


def load_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except Exception as exc:  # transformers raises many types for a broken tokenizer
        raise ConversionError(f"{model_dir}: cannot load the tokenizer ({one_line(exc)})") from exc


def add_special_vocab(meta: GGUFMetadata, model_dir: Path, **kwargs: Any) -> SpecialTokens:
    """Special ids, add_bos/add_eos, merges and chat template into `meta` (see special_tokens.py)."""
    try:
        special = SpecialTokens(model_dir, **kwargs)
    except ValueError as exc:
        raise ConversionError(f"{model_dir}: bad special-token settings ({exc})") from exc
    special.add_to_gguf(meta, quiet=True)
    return special


# ---------------------------------------------------------------------------- byte-level BPE


def add_gpt2_vocab(meta: GGUFMetadata, model_dir: Path, hparams: dict[str, Any]) -> None:
    """A byte-level BPE vocabulary with its pre-tokenizer, merges and special tokens."""
    tokens, toktypes, pre = bpe_vocab(model_dir, hparams)
    meta.add_tokenizer_model("gpt2")
    meta.add_tokenizer_pre(pre)
    meta.add_token_list(tokens)
    meta.add_token_types(toktypes)
    special = add_special_vocab(meta, model_dir, load_merges=True)
    if not special.merges:
        raise ConversionError(f"{model_dir / 'tokenizer.json'}: the BPE model has no merges")


def bpe_vocab(model_dir: Path, hparams: dict[str, Any]) -> tuple[list[str], list[int], str]:
    """(tokens, token types, pre-tokenizer name), one entry per id below the config's vocab_size."""
    tokenizer = load_tokenizer(model_dir)
    vocab = tokenizer.get_vocab()
    vocab_size = int(hparams.get("vocab_size") or len(vocab))
    if max(vocab.values()) >= vocab_size:
        raise ConversionError(
            f"{model_dir}: tokenizer has token id {max(vocab.values())} >= vocab_size {vocab_size} "
            "of config.json"
        )
    pre = bpe_pre_tokenizer(model_dir, tokenizer)
    reverse = {i: t for t, i in vocab.items()}
    added_vocab = tokenizer.get_added_vocab()
    added_decoder = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    toktypes: list[int] = []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            toktypes.append(UNUSED)
            continue
        token = reverse[i]
        if token in added_vocab:
            # llama.cpp expects added tokens pre-normalized, so unnormalized ones go through the tokenizer
            if not added_decoder[i].normalized:
                token = tokenizer.decode(tokenizer.encode(token, add_special_tokens=False))
            if added_decoder[i].special or looks_special(token):
                toktypes.append(CONTROL)
            else:
                token = token.replace(_SPACE, " ")  # pre-normalize user-defined spaces
                toktypes.append(USER_DEFINED)
        else:
            toktypes.append(NORMAL)
        tokens.append(token)
    return tokens, toktypes, pre


def _walk(node: Any):  # noqa: ANN202 - yields the dict nodes of a tokenizers component tree
    if isinstance(node, dict):
        yield node
        for child in node.get("pretokenizers") or ():
            yield from _walk(child)


def bpe_pre_tokenizer(model_dir: Path, tokenizer: Any) -> str:
    """llama.cpp's pre-tokenizer name for a byte-level BPE tokenizer."""
    chkhsh = sha256(str(tokenizer.encode(CHKTXT)).encode()).hexdigest()
    if chkhsh in PRE_TOKENIZER_HASHES:
        return PRE_TOKENIZER_HASHES[chkhsh]
    tok_json = read_json(model_dir / "tokenizer.json") if (model_dir / "tokenizer.json").is_file() else {}
    return pre_tokenizer_from_structure(tok_json, model_dir, chkhsh)


def pre_tokenizer_from_structure(tok_json: dict[str, Any], model_dir: Path, chkhsh: str = "") -> str:
    """A vocabulary llama.cpp does not know: name the llama.cpp pre-type whose splitting rules are
    the tokenizer's own (the regex of its Split step, digit handling, merge replay)."""
    nodes = [n for n in _walk(tok_json.get("pre_tokenizer")) if n.get("type") != "Sequence"]
    kinds = [n.get("type") for n in nodes]
    ignore_merges = bool((tok_json.get("model") or {}).get("ignore_merges", False))
    if kinds == ["Split", "ByteLevel"] and not nodes[1].get("use_regex", True):
        pattern = (nodes[0].get("pattern") or {}).get("Regex")
        if pattern == LLAMA3_PRETOKENIZER_REGEX:
            # the same regex: Llama 3 keeps in-vocabulary words whole, cl100k ('dbrx') replays merges
            return "llama-bpe" if ignore_merges else "dbrx"
        if pattern == QWEN2_PRETOKENIZER_REGEX and not ignore_merges:
            return "qwen2"
    if (
        kinds == ["Digits", "ByteLevel"]
        and nodes[0].get("individual_digits")
        and nodes[1].get("use_regex", True)
    ):
        return "smollm"  # GPT-2 regex after single-digit splitting (also llama.cpp's refact/starcoder)
    if kinds == ["ByteLevel"] and nodes[0].get("use_regex", True):
        return "gpt-2"
    raise ConversionError(
        f"{model_dir / 'tokenizer.json'}: BPE pre-tokenizer not recognized (probe hash {chkhsh}, "
        f"components {kinds}); supported: llama-bpe (Llama 3), dbrx, qwen2, smollm, gpt-2 and every "
        "vocabulary llama.cpp's converter knows; for others use convert.backend=llamacpp"
    )


# ------------------------------------------------------------------------------ SentencePiece


def sentencepiece_pieces(
    model_dir: Path, vocab_size: int | None
) -> tuple[list[bytes], list[float], list[int]]:
    """(pieces, scores, types) of tokenizer.model, padded to `vocab_size` with [PADi] entries."""
    from sentencepiece import SentencePieceProcessor

    path = model_dir / "tokenizer.model"
    if not path.is_file():
        raise ConversionError(f"{model_dir}: tokenizer.model (SentencePiece) is missing")
    sp = SentencePieceProcessor()
    try:
        sp.LoadFromFile(str(path))
    except (OSError, RuntimeError) as exc:
        raise ConversionError(f"{path}: not a SentencePiece model ({exc})") from exc
    size = vocab_size or sp.vocab_size()
    tokens = [f"[PAD{i}]".encode() for i in range(size)]
    scores = [-10000.0] * size
    types = [UNUSED] * size
    for i in range(min(sp.vocab_size(), size)):
        kind = NORMAL
        if sp.IsUnknown(i):
            kind = UNKNOWN
        elif sp.IsControl(i):
            kind = CONTROL
        elif sp.IsUnused(i):
            kind = UNUSED
        elif sp.IsByte(i):
            kind = BYTE
        tokens[i] = sp.IdToPiece(i).encode("utf-8")
        scores[i] = sp.GetScore(i)
        types[i] = kind
    return tokens, scores, types


def spm_vocab(model_dir: Path, vocab_size: int | None) -> tuple[list[bytes], list[float], list[int]]:
    """llama.cpp's SentencePiece vocabulary: the pieces, then added_tokens.json and the
    tokenizer_config.json's added_tokens_decoder on top (control when special or special-looking)."""
    tokens, scores, types = sentencepiece_pieces(model_dir, vocab_size)
    size = len(tokens)
    added_file = model_dir / "added_tokens.json"
    if added_file.is_file():
        for text, token_id in read_json(added_file).items():
            if token_id < size:
                tokens[token_id] = text.encode("utf-8")
                scores[token_id] = -1000.0
                types[token_id] = USER_DEFINED
    config_file = model_dir / "tokenizer_config.json"
    if config_file.is_file():
        for key, data in (read_json(config_file).get("added_tokens_decoder") or {}).items():
            token_id, text = int(key), data["content"]
            if token_id >= size:
                continue
            if data.get("special") or looks_special(text):
                types[token_id] = CONTROL
            else:
                text = text.replace(_SPACE, " ")
                types[token_id] = USER_DEFINED
            scores[token_id] = -1000.0
            tokens[token_id] = text.encode("utf-8")
    return tokens, scores, types


def add_spm_vocab(
    meta: GGUFMetadata, tokens: list[bytes], scores: list[float], types: list[int], model_dir: Path
) -> None:
    meta.add_tokenizer_model("llama")
    meta.add_tokenizer_pre("default")
    meta.add_token_list(tokens)
    meta.add_token_scores(scores)
    meta.add_token_types(types)
    add_special_vocab(meta, model_dir, n_vocab=len(tokens))


def add_sentencepiece_vocab(meta: GGUFMetadata, model_dir: Path, hparams: dict[str, Any]) -> None:
    """The SentencePiece vocabulary of `model_dir` (llama.cpp's _set_vocab_sentencepiece)."""
    add_spm_vocab(meta, *spm_vocab(model_dir, hparams.get("vocab_size")), model_dir)
