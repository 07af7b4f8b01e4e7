"""Tokenizer metadata for GGUF: byte-level BPE ('gpt2') and SentencePiece ('llama') vocabularies.

llama.cpp re-implements the tokenizer from these keys, so they decide whether llama.cpp and the
HF tokenizer produce the same ids. For BPE the pre-tokenizer name (`tokenizer.ggml.pre`) selects
llama.cpp's splitting regex; we identify it the way llama.cpp's converter does (hash of the ids of
a probe text) and, for tokenizers not in its table, from the pre-tokenizer's structure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import gguf

from pocketquant.convert.errors import ConversionError

# Llama 3's pre-tokenizer regex (tokenizer.json of meta-llama/Meta-Llama-3-8B); llama.cpp's
# 'llama-bpe' pre-type implements the same split.
LLAMA3_PRETOKENIZER_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Probe text of llama.cpp's convert_hf_to_gguf.py get_vocab_base_pre(); the sha256 of str(ids)
# identifies a known pre-tokenizer.
CHKTXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ "  # noqa: E501
    "🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "  # noqa: E501
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, "
    "'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
KNOWN_PRE_HASHES = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Llama 3
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM/SmolLM2
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
}


@dataclass
class Vocab:
    """Everything the GGUF tokenizer section needs."""

    model: str  # 'gpt2' (byte-level BPE) or 'llama' (SentencePiece)
    pre: str
    tokens: list[str | bytes]
    token_types: list[int]
    scores: list[float] | None = None
    merges: list[str] = field(default_factory=list)
    special_ids: dict[str, int] = field(default_factory=dict)  # bos/eos/unk/pad -> id
    add_bos: bool = False
    add_eos: bool = False
    chat_template: str | None = None
    # BPE: False, as llama.cpp's converter writes for Llama 3 / SmolLM2; SentencePiece: leave
    # llama.cpp's default (a dummy prefix space, like sentencepiece's add_dummy_prefix).
    add_space_prefix: bool | None = None

    def add_to_gguf(self, writer: gguf.GGUFWriter) -> None:
        writer.add_tokenizer_model(self.model)
        writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        if self.scores is not None:
            writer.add_token_scores(self.scores)
        writer.add_token_types(self.token_types)
        if self.merges:
            writer.add_token_merges(self.merges)
        adders = {
            "bos": writer.add_bos_token_id,
            "eos": writer.add_eos_token_id,
            "unk": writer.add_unk_token_id,
            "pad": writer.add_pad_token_id,
        }
        for kind in ("bos", "eos", "unk", "pad"):
            if kind in self.special_ids:
                adders[kind](self.special_ids[kind])
        if self.add_space_prefix is not None:
            writer.add_add_space_prefix(self.add_space_prefix)
        writer.add_add_bos_token(self.add_bos)
        writer.add_add_eos_token(self.add_eos)
        if self.chat_template:
            writer.add_chat_template(self.chat_template)


def load_vocab(model_dir: Path, vocab_size: int) -> Vocab:
    """Read the tokenizer of `model_dir` (tokenizer.json and/or tokenizer.model)."""
    from transformers import AutoTokenizer

    tok_json = _read_tokenizer_json(model_dir)
    is_byte_level = tok_json is not None and _has_byte_level(tok_json)
    if not is_byte_level and not (model_dir / "tokenizer.model").is_file():
        raise ConversionError(
            f"{model_dir}: tokenizer is neither byte-level BPE (tokenizer.json with a ByteLevel "
            "pre-tokenizer) nor SentencePiece (tokenizer.model)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except Exception as exc:  # transformers raises many types for a broken tokenizer
        raise ConversionError(f"{model_dir}: cannot load the tokenizer ({exc})") from exc
    if is_byte_level:
        vocab = _bpe_vocab(model_dir, tokenizer, tok_json, vocab_size)
    else:
        vocab = _spm_vocab(model_dir, tokenizer, vocab_size)
    vocab.special_ids = _special_ids(model_dir, tokenizer)
    vocab.add_bos, vocab.add_eos = _adds_special(tokenizer)
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    vocab.chat_template = template or None
    return vocab


def _read_tokenizer_json(model_dir: Path) -> dict[str, Any] | None:
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{path}: not valid JSON ({exc})") from exc


def _walk(node: Any):  # noqa: ANN202 - yields dict nodes of a tokenizers component tree
    if isinstance(node, dict):
        yield node
        for child in node.get("pretokenizers") or node.get("processors") or node.get("decoders") or ():
            yield from _walk(child)


def _has_byte_level(tok_json: dict[str, Any]) -> bool:
    return any(n.get("type") == "ByteLevel" for n in _walk(tok_json.get("pre_tokenizer")))


def detect_bpe_pre(tokenizer: Any, tok_json: dict[str, Any]) -> str:
    """llama.cpp pre-tokenizer name for a byte-level BPE tokenizer."""
    chkhsh = sha256(str(tokenizer.encode(CHKTXT)).encode()).hexdigest()
    if chkhsh in KNOWN_PRE_HASHES:
        return KNOWN_PRE_HASHES[chkhsh]
    # Not a known vocabulary: identify the splitting rules themselves.
    nodes = list(_walk(tok_json.get("pre_tokenizer")))
    kinds = [n.get("type") for n in nodes if n.get("type") != "Sequence"]
    byte_level = [n for n in nodes if n.get("type") == "ByteLevel"]
    splits = [n for n in nodes if n.get("type") == "Split"]
    if kinds == ["Split", "ByteLevel"] and not byte_level[0].get("use_regex", True):
        pattern = splits[0].get("pattern", {}).get("Regex")
        if pattern == LLAMA3_PRETOKENIZER_REGEX:
            return "llama-bpe"
    if kinds == ["Digits", "ByteLevel"] and byte_level[0].get("use_regex", True):
        digits = next(n for n in nodes if n.get("type") == "Digits")
        if digits.get("individual_digits"):
            return "smollm"
    if kinds == ["ByteLevel"] and byte_level[0].get("use_regex", True):
        return "gpt-2"
    raise ConversionError(
        f"BPE pre-tokenizer not recognized (probe hash {chkhsh}, components {kinds}); "
        "supported: llama-bpe (Llama 3), smollm (SmolLM/SmolLM2), gpt-2"
    )


def _looks_special(token: str) -> bool:
    return (token.startswith("<|") and token.endswith("|>")) or token in ("<pad>", "<mask>")


def _bpe_vocab(model_dir: Path, tokenizer: Any, tok_json: dict[str, Any], vocab_size: int) -> Vocab:
    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise ConversionError(
            f"{model_dir}: tokenizer has token id {max(vocab.values())} >= config vocab_size {vocab_size}"
        )
    reverse = {i: t for t, i in vocab.items()}
    added = tokenizer.added_tokens_decoder  # id -> AddedToken
    tokens: list[str | bytes] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = reverse[i]
        if i in added:
            if added[i].special or _looks_special(token):
                types.append(gguf.TokenType.CONTROL)
            else:
                token = token.replace("\u2581", " ")  # pre-normalized user-defined spaces
                types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    raw_merges = tok_json.get("model", {}).get("merges") or []
    merges = [m if isinstance(m, str) else " ".join(m) for m in raw_merges]
    if not merges:
        raise ConversionError(f"{model_dir / 'tokenizer.json'}: BPE model has no merges")
    pre = detect_bpe_pre(tokenizer, tok_json)
    return Vocab("gpt2", pre, tokens, types, merges=merges, add_space_prefix=False)


def _spm_vocab(model_dir: Path, tokenizer: Any, vocab_size: int) -> Vocab:
    from sentencepiece import SentencePieceProcessor

    sp = SentencePieceProcessor()
    sp.LoadFromFile(str(model_dir / "tokenizer.model"))
    tokens: list[str | bytes] = [f"[PAD{i}]".encode() for i in range(vocab_size)]
    scores = [-10000.0] * vocab_size
    types = [int(gguf.TokenType.UNUSED)] * vocab_size
    for i in range(min(sp.vocab_size(), vocab_size)):
        kind = gguf.TokenType.NORMAL
        if sp.IsUnknown(i):
            kind = gguf.TokenType.UNKNOWN
        elif sp.IsControl(i):
            kind = gguf.TokenType.CONTROL
        elif sp.IsUnused(i):
            kind = gguf.TokenType.UNUSED
        elif sp.IsByte(i):
            kind = gguf.TokenType.BYTE
        tokens[i] = sp.IdToPiece(i).encode("utf-8")
        scores[i] = sp.GetScore(i)
        types[i] = int(kind)
    for i, added in sorted(tokenizer.added_tokens_decoder.items()):
        if i >= vocab_size:
            raise ConversionError(
                f"{model_dir}: added token {added.content!r} id {i} >= vocab_size {vocab_size}"
            )
        if i < sp.vocab_size() and tokens[i] == added.content.encode("utf-8"):
            continue  # a SentencePiece control token (<s>, </s>, <unk>) re-declared by transformers
        special = added.special or _looks_special(added.content)
        text = added.content if special else added.content.replace("\u2581", " ")
        tokens[i] = text.encode("utf-8")
        scores[i] = -1000.0
        types[i] = int(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
    return Vocab("llama", "default", tokens, types, scores=scores)


def _special_ids(model_dir: Path, tokenizer: Any) -> dict[str, int]:
    ids: dict[str, int] = {}
    vocab = tokenizer.get_vocab()
    for kind in ("bos", "eos", "unk", "pad"):
        value = getattr(tokenizer, f"{kind}_token_id", None)
        token = getattr(tokenizer, f"{kind}_token", None)
        if not isinstance(value, int) and isinstance(token, str):
            value = vocab.get(token)  # e.g. an unk token the BPE model itself does not use
        if isinstance(value, int):
            ids[kind] = value
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    for kind in ("bos", "eos"):
        value = config.get(f"{kind}_token_id")
        if kind not in ids and isinstance(value, int):
            ids[kind] = value
    return ids


def _adds_special(tokenizer: Any) -> tuple[bool, bool]:
    """Whether the HF tokenizer adds BOS / EOS on its own (tokenizer_config or post-processor)."""
    plain = tokenizer.encode("a", add_special_tokens=False)
    full = tokenizer.encode("a", add_special_tokens=True)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    add_bos = bos is not None and len(full) > len(plain) and full[0] == bos
    add_eos = eos is not None and len(full) > len(plain) and full[-1] == eos
    return add_bos, add_eos
