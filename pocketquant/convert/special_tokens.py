"""Special tokens, add_bos/add_eos/add_sep, merges and chat template of a tokenizer, for GGUF.

gguf-py's `SpecialVocab` does this job; the one on PyPI (gguf 0.19.0) is older than the one the
pinned llama.cpp converter carries, which reads `tokenizer.json` differently in four ways that
change the GGUF: a ByteLevel post-processor means "adds neither BOS nor EOS" unless something else
says so; a TemplateProcessing's leading special token becomes the BOS/CLS token when
tokenizer_config.json names none; the post-processor wins over tokenizer_config.json's
`add_*_token`; and Lowercase / StripAccents normalizers are recorded. `SpecialTokens` keeps
gguf-py's class (config.json ids, merges.txt, writing) and reads tokenizer.json the new way.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import gguf

logger = logging.getLogger(__name__)


class SpecialTokens(gguf.SpecialVocab):
    normalizer_lowercase: bool | None = None
    normalizer_strip_accents: bool | None = None

    def add_to_gguf(self, gw: Any, quiet: bool = False) -> None:
        super().add_to_gguf(gw, quiet=quiet)
        if self.normalizer_lowercase is not None:
            gw.add_bool("tokenizer.ggml.normalizer.lowercase", self.normalizer_lowercase)
        if self.normalizer_strip_accents is not None:
            gw.add_bool("tokenizer.ggml.normalizer.strip_accents", self.normalizer_strip_accents)

    def _parse_normalizer(self, normalizer: dict[str, Any]) -> None:
        kind = normalizer.get("type")
        if kind == "Lowercase":
            self.normalizer_lowercase = True
        elif kind == "StripAccents":
            self.normalizer_strip_accents = True
        elif kind == "BertNormalizer":
            if "lowercase" in normalizer:
                self.normalizer_lowercase = normalizer["lowercase"]
            if "strip_accents" in normalizer:
                self.normalizer_strip_accents = normalizer["strip_accents"]
        elif kind == "Sequence":
            for child in normalizer.get("normalizers", []):
                self._parse_normalizer(child)

    def _try_load_from_tokenizer_json(self, path: Path) -> bool:
        tokenizer: dict[str, Any] | None = None
        added_tokens: list[dict[str, Any]] = []
        tokenizer_file = path / "tokenizer.json"
        if tokenizer_file.is_file():
            tokenizer = json.loads(tokenizer_file.read_text(encoding="utf-8"))
            if self.load_merges:
                self.merges = _merges(tokenizer)
            if normalizer := tokenizer.get("normalizer"):
                self._parse_normalizer(normalizer)
            added_tokens = tokenizer.get("added_tokens", [])
        config_file = path / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else None
        if tokenizer:
            self._read_post_processor(tokenizer, config)
        if not config:
            return True
        self._read_chat_template(path, config)
        for typ in self.special_token_types:
            add_entry = config.get(f"add_{typ}_token")
            if isinstance(add_entry, bool) and typ not in self.add_special_token:
                self.add_special_token[typ] = add_entry  # the post-processor, when it says, wins
            entry = config.get(f"{typ}_token")
            content = entry.get("content") if isinstance(entry, dict) else entry
            if isinstance(content, str):
                token_id = next((t.get("id") for t in added_tokens if t.get("content") == content), None)
                self._set_special_token(typ, token_id)
        return True

    def _read_chat_template(self, path: Path, config: dict[str, Any]) -> None:
        alternative: Any = None
        if (path / "chat_template.jinja").is_file():
            alternative = (path / "chat_template.jinja").read_text(encoding="utf-8")
            extra = sorted((path / "additional_chat_templates").glob("*.jinja"))
            if extra:
                alternative = [{"name": "default", "template": alternative}] + [
                    {"name": p.stem, "template": p.read_text(encoding="utf-8")} for p in extra
                ]
        elif (path / "chat_template.json").is_file():
            alternative = json.loads((path / "chat_template.json").read_text(encoding="utf-8")).get(
                "chat_template"
            )
        template = config.get("chat_template", alternative)
        if template is None or isinstance(template, str | list):
            self.chat_template = template

    def _read_post_processor(self, tokenizer: dict[str, Any], config: dict[str, Any] | None) -> None:
        """What the HF post-processor adds around a sequence: BOS, EOS, SEP (and which tokens)."""
        post = tokenizer.get("post_processor")
        if not post:
            return
        cfg = config or {}
        bos, cls, eos, sep = (cfg.get(f"{k}_token") for k in ("bos", "cls", "eos", "sep"))
        if not bos and cls and config:
            config["bos_token"] = bos = cls
        if not eos and sep and config:
            config["eos_token"] = eos = sep
        for proc in post.get("processors", [post]):
            kind = proc.get("type")
            if kind == "ByteLevel":
                self.add_special_token.setdefault("bos", False)
                self.add_special_token.setdefault("eos", False)
            elif kind == "RobertaProcessing":
                self.add_special_token.update(bos=True, eos=True, sep=True)
                if not cls and config:
                    config["cls_token"] = cls = proc.get("cls", [bos])[0]
                if not sep and config:
                    config["sep_token"] = sep = proc.get("sep", [eos])[0]
            elif kind == "TemplateProcessing":
                bos, cls, eos, sep = self._read_template(proc, config, bos, cls, eos, sep)

    def _read_template(
        self, proc: dict[str, Any], config: dict[str, Any] | None, bos: Any, cls: Any, eos: Any, sep: Any
    ) -> tuple[Any, Any, Any, Any]:
        """A TemplateProcessing: its leading/trailing special tokens of a single sequence and the
        separator(s) between the two sequences of a pair."""
        single, pair = proc.get("single", []), proc.get("pair", [])
        first = last = None
        if len(single) > 1:
            if first := single[0].get("SpecialToken", {}).get("id"):
                if not config:
                    bos = first
                elif first not in (bos, cls):
                    if not bos:
                        config["bos_token"] = bos = first
                    if not cls:
                        config["cls_token"] = cls = first
                self.add_special_token["bos"] = first in (bos, cls)
            if last := single[-1].get("SpecialToken", {}).get("id"):
                if not config:
                    eos = last
                elif last != eos:
                    # the trailing token becomes EOS; the configured one is kept as EOT (or EOM)
                    for fallback in ("eot", "eom"):
                        if fallback not in self.special_token_types:
                            self.special_token_types = (*tuple(self.special_token_types), fallback)
                            config[f"{fallback}_token"] = eos
                            break
                    config["eos_token"] = eos = last
                self.add_special_token["eos"] = last == eos
        if pair:
            start = 1 if first and pair[0].get("SpecialToken", {}).get("id") == first else 0
            stop = -1 if last and pair[-1].get("SpecialToken", {}).get("id") == last else None
            middle = pair[slice(start, stop)]
            if (
                middle
                and middle[0].get("Sequence", {}).get("id") == "A"
                and middle[-1].get("Sequence", {}).get("id") == "B"
                and (middle := middle[1:-1])
            ):
                add_sep = False
                if entry := middle[0].get("SpecialToken", {}).get("id"):
                    add_sep = entry in (sep, eos) and not last
                if len(middle) == 2 and (entry := middle[1].get("SpecialToken", {}).get("id")):
                    add_sep = add_sep or entry in (sep, eos)
                self.add_special_token["sep"] = add_sep
                if add_sep and not sep and config:
                    config["sep_token"] = eos
        return bos, cls, eos, sep


def _merges(tokenizer: dict[str, Any]) -> list[str]:
    """BPE merges as 'a b' strings (pairs of the transformers >= 4.45 format with a space inside a
    part get that space encoded as U+0120+, as llama.cpp does)."""
    merges = (tokenizer.get("model") or {}).get("merges")
    if not isinstance(merges, list) or not merges:
        return []
    if isinstance(merges[0], str):
        return merges
    if isinstance(merges[0], list) and len(merges[0]) == 2 and isinstance(merges[0][0], str):
        return [
            " ".join("".join(chr(ord(c) + 256) if c == " " else c for c in part) for part in pair)
            for pair in merges
        ]
    raise ValueError("unknown tokenizer merges format")
