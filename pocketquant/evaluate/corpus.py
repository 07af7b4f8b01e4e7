"""Evaluation corpora: the offline default, WikiText-2 raw, or any UTF-8 text file.

Text is prepared exactly as llama.cpp's `llama-perplexity -f FILE` does: the file's bytes as they
are, minus one trailing newline (common/arg.cpp pops it); tokenization then happens on the whole
text with BOS (see pocketquant.evaluate.chunks).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pocketquant.evaluate.errors import CorpusError

DEFAULT_CORPUS = "default"
WIKITEXT2 = "wikitext2"
# Where CI and developer machines keep WikiText-2 raw (relative to the repository's parent).
WIKITEXT2_SHARED = Path("..") / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"


@dataclass(frozen=True)
class Corpus:
    name: str  # "default", "wikitext2" or the file's name
    source: str  # where the text came from (path, package resource or HF dataset id)
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def _prepare(raw: bytes, where: str, *, lf: bool = False) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"corpus {where} is not UTF-8 text: {exc}") from exc
    if lf:
        text = text.replace("\r\n", "\n")
    # llama.cpp drops exactly one trailing newline of a prompt file.
    return text[:-1] if text.endswith("\n") else text


def read_text_file(path: str | Path, name: str | None = None, *, lf: bool = False) -> Corpus:
    """Any text file as a corpus; a missing or unreadable file is an EvaluationError naming it.
    `lf` turns CRLF line ends into LF first (WikiText-2, see load_corpus)."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus file not found: {path} (give an existing UTF-8 text file)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"cannot read corpus file {path}: {exc}") from exc
    return Corpus(name=name or path.name, source=str(path), text=_prepare(raw, str(path), lf=lf))


def default_corpus() -> Corpus:
    """The offline default: sections of the Python Language Reference (PSF License v2, see
    pocketquant/data/default_corpus.LICENSE.txt), about 33k SmolLM2 tokens = 60+ chunks of 512."""
    res = resources.files("pocketquant") / "data" / "default_corpus.txt"
    return Corpus(
        name=DEFAULT_CORPUS,
        source="pocketquant/data/default_corpus.txt",
        text=_prepare(res.read_bytes(), str(res)),
    )


def _wikitext2_local_candidates() -> list[Path]:
    """Without a path: ../shared/... beside the working directory, then beside this checkout."""
    return [Path.cwd() / WIKITEXT2_SHARED, Path(__file__).resolve().parents[2] / WIKITEXT2_SHARED]


def _wikitext2_from_hub() -> Corpus:
    try:
        import datasets  # optional: only when online and installed
    except ImportError as exc:
        raise CorpusError(
            "eval corpus wikitext2: no path given and the `datasets` package is not installed; "
            f"set the path to wiki.test.raw (e.g. {WIKITEXT2_SHARED})"
        ) from exc
    try:
        ds = datasets.load_dataset("wikitext", "wikitext-2-raw-v1", split="test")
    except Exception as exc:  # offline, hub down, ...: datasets raises many different types
        raise CorpusError(
            f"eval corpus wikitext2: could not download it with `datasets` ({type(exc).__name__}: {exc}); "
            f"offline, set the path to wiki.test.raw (e.g. {WIKITEXT2_SHARED})"
        ) from exc
    # The HF rows are the raw file's lines, each with its newline: joined they are wiki.test.raw.
    return Corpus(
        name=WIKITEXT2,
        source="hf:wikitext/wikitext-2-raw-v1/test",
        text=_prepare("".join(ds["text"]).encode("utf-8"), "wikitext2"),
    )


def load_corpus(name: str = DEFAULT_CORPUS, path: str | Path | None = None) -> Corpus:
    """The corpus selected by config: `default`, `wikitext2` (from `path`; without one from
    ../shared/data/wikitext-2-raw/wiki.test.raw when present, else via HF `datasets` when online),
    or any other name with `path` to a text file (a bare path as `name` works too).

    WikiText-2 raw is LF text (the HF dataset's rows, the files llama.cpp's published numbers use);
    a copy with CRLF line ends (ours in ../shared has them) is read with LF, so its numbers match:
    SmolLM2 F32, 20 x 512: PPL 26.93 with LF (the DESIGN.md reference, 26.91), 27.84 with CRLF."""
    if name == DEFAULT_CORPUS and path is None:
        return default_corpus()
    if name == WIKITEXT2:
        if path is not None:
            if not Path(path).is_file():
                raise CorpusError(
                    f"eval corpus wikitext2: file not found: {path} (the raw test split, wiki.test.raw)"
                )
            return read_text_file(path, name=WIKITEXT2, lf=True)
        for candidate in _wikitext2_local_candidates():
            if candidate.is_file():
                return read_text_file(candidate, name=WIKITEXT2, lf=True)
        return _wikitext2_from_hub()
    if path is not None:
        return read_text_file(path, name=name)
    if Path(name).suffix or "/" in name:
        return read_text_file(name)
    raise CorpusError(
        f"unknown eval corpus {name!r}: use 'default', 'wikitext2' (with a path or online) "
        "or a text file path"
    )
