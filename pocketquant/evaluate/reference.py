"""The base model's reference distribution, computed once per corpus setting and saved compactly.

File format (`base_hidden_states.safetensors`, DVC-cached by the pipeline): safetensors with
  ids     int32   [n_chunks * n_ctx]               the corpus tokens (before BOS replacement)
  nll     float32 [n_chunks, n_scored]             base -log p(next token) at each scored position
  hidden  float32 [n_chunks, n_scored, d_model]    the base's final hidden states (after the final
                                                   norm) at each scored position
and one metadata entry "pocketquant" (JSON: n_ctx, chunks, add_bos, bos_id, n_vocab, hidden size,
engine, model, corpus name + sha256, the sha256 + shape of the base's output matrix, its soft-cap,
and `output_head` with the family's other output transforms when it has any).

The full-vocabulary base distribution is recomputed at evaluation time as the family's output head
applied to the stored hidden states (`BaseOutput`: W_out read from the base checkpoint in vocabulary
slices, see output_head.py for the transforms), so the KL divergence is exact (no top-k truncation)
while the file stays small: 20 chunks x 255 positions x 576 floats is 11.8 MB for SmolLM2, where
llama.cpp's uint16 log-prob file is 500 MB. The base logits come from the same function when the
reference is built and when it is used, so the stored NLL and the distribution recomputed later
agree. A single metadata key keeps the header byte-stable (safetensors writes metadata from a map).

The base model runs layer by layer (pocketquant.layerwise): one decoder layer's float32 weights in
memory at a time, every chunk pushed through it, the same bits as a whole-model forward.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from pocketquant.atomic import atomic_path
from pocketquant.errors import ConfigError, EvaluationError
from pocketquant.evaluate.chunks import Chunks, make_chunks, tokenize_for_chunks
from pocketquant.evaluate.corpus import Corpus
from pocketquant.evaluate.errors import ReferenceMismatchError
from pocketquant.evaluate.output_head import LM_HEAD_BIAS, OutputHead, output_head
from pocketquant.evaluate.scoring import score_rows
from pocketquant.layerwise.weights import CheckpointWeights

FORMAT = "pocketquant-base-hidden/2"
ENGINE = "transformers"  # the base runs in transformers' own modules (layer by layer)
# torch threads for the base forward pass when building the reference: fixed, so the stored hidden
# states are the same bytes on every machine size (CPU matmul rounding depends on the work split).
REFERENCE_THREADS = 2
# Float32 bytes of one vocabulary slice of W_out: 16 MiB is 1,365 rows of a 3072-wide model.
VOCAB_SLICE_BYTES = 16 * 2**20


class Tokenizes(Protocol):
    """What chunking needs of a model or tokenizer (LanguageModel and hf.HFTokenizer have it)."""

    add_bos: bool
    bos_id: int | None

    def tokenize(self, text: str, *, special: bool = False) -> list[int]: ...


class BaseOutput:
    """The base model's output head, with W_out (and lm_head's bias) read from its checkpoint one
    vocabulary slice at a time: the float32 full-vocabulary matrix (1.6 GB for Llama 3.2 3B) is never
    in memory, only one slice and the [n, n_vocab] logits being computed."""

    def __init__(self, base: str | Path, *, slice_bytes: int = VOCAB_SLICE_BYTES):
        self.base = Path(base)
        cfg_path = self.base / "config.json"
        if not cfg_path.is_file():
            raise EvaluationError(
                f"base checkpoint {base} has no config.json (an HF checkpoint dir is needed)"
            )
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
            self.weights = CheckpointWeights(self.base)
        except (ConfigError, json.JSONDecodeError, OSError) as exc:
            raise EvaluationError(f"base checkpoint {base}: {exc}") from exc
        self.head: OutputHead = output_head(config)
        name = self.head.weight_name(self.weights.entries)
        if name is None:
            raise EvaluationError(
                f"base checkpoint {base}: no output matrix (none of {list(self.head.weight_names)}) "
                f"in its safetensors"
            )
        self.weight_name = name
        self.bias_name = LM_HEAD_BIAS if self.head.bias else None
        if self.bias_name and self.bias_name not in self.weights:
            raise EvaluationError(f"base checkpoint {base}: the output head needs {self.bias_name!r}")
        self.shape = self.weights.entry(name).shape
        self.rows_per_slice = max(1, slice_bytes // (4 * self.shape[1]))

    @property
    def n_vocab(self) -> int:
        return int(self.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.shape[1])

    def slices(self) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor | None]]:
        """(start, stop, W[start:stop] float32, bias[start:stop] or None) over the vocabulary."""
        for start in range(0, self.n_vocab, self.rows_per_slice):
            stop = min(start + self.rows_per_slice, self.n_vocab)
            w = self.weights.read_rows(self.weight_name, start, stop, torch.float32)
            b = self.weights.read_rows(self.bias_name, start, stop, torch.float32) if self.bias_name else None
            yield start, stop, w, b

    def logits(self, hidden: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The base's exact logits float32 [n, n_vocab] of final hidden states [n, d]."""
        h = hidden if isinstance(hidden, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(hidden))
        h = h.to(torch.float32)
        out = torch.empty((h.shape[0], self.n_vocab), dtype=torch.float32)
        for start, stop, w, b in self.slices():
            out[:, start:stop] = self.head.apply(h, w, b)
        return out

    @cached_property
    def sha256(self) -> str:
        """sha256 of W_out as float32 [n_vocab, d] bytes (what the reference records)."""
        digest = hashlib.sha256()
        for _, _, w, _ in self.slices():
            digest.update(w.numpy().tobytes())
        return digest.hexdigest()

    def meta(self) -> dict:
        """What the reference records about the output head (checked again when it is used)."""
        out: dict = {
            "output_shape": [int(x) for x in self.shape],
            "output_sha256": self.sha256,
            "output_softcap": self.head.softcap,
        }
        if self.head.describe():  # only families with more than a soft-cap (keeps Llama's bytes)
            out["output_head"] = self.head.describe()
        return out


@dataclass(frozen=True)
class BaseReference:
    ids: np.ndarray
    nll: np.ndarray
    hidden: np.ndarray  # float32 [n_chunks, n_scored, d]
    meta: dict
    output: BaseOutput | None = field(default=None, compare=False, repr=False)

    @property
    def n_ctx(self) -> int:
        return int(self.meta["n_ctx"])

    @property
    def n_chunks(self) -> int:
        return int(self.meta["chunks"])

    def chunks(self) -> Chunks:
        return make_chunks(
            self.ids, self.n_ctx, self.n_chunks, add_bos=self.meta["add_bos"], bos_id=self.meta["bos_id"]
        )

    @property
    def ppl(self) -> float:
        return float(np.exp(self.nll.astype(np.float64).mean()))

    def with_output(self, base: str | Path | BaseOutput) -> BaseReference:
        """Attach the base's output head, checking it is the one the reference was built with."""
        out = base if isinstance(base, BaseOutput) else BaseOutput(base)
        want = {
            k: self.meta.get(k) for k in ("output_shape", "output_sha256", "output_softcap", "output_head")
        }
        got = out.meta()
        got.setdefault("output_head", None)
        if got != want:
            raise ReferenceMismatchError(
                f"base checkpoint {out.base} is not the model the base reference was computed with "
                f"(output matrix {got['output_shape']}, sha256 {got['output_sha256'][:12]}, "
                f"transform {got['output_softcap']}/{got['output_head']} vs {want['output_shape']}, "
                f"{str(want['output_sha256'])[:12]}, {want['output_softcap']}/{want['output_head']}): "
                "recompute the reference"
            )
        return BaseReference(self.ids, self.nll, self.hidden, self.meta, out)

    def chunk_logits(self, i: int, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """The base's exact full-vocabulary logits (float32) at chunk i's scored positions, or at
        positions start..stop of them (a block: the same numbers as those rows of the whole)."""
        if self.output is None:
            raise EvaluationError(
                "the base reference needs the base checkpoint's output head: pass base= (the base HF dir)"
            )
        return self.output.logits(self.hidden[i][start:stop])


def corpus_ids(model: Tokenizes, corpus: Corpus, n_ctx: int, n_chunks: int | None) -> np.ndarray:
    """The corpus tokens `model`'s tokenizer makes, as llama.cpp feeds them to chunking."""
    need = None if n_chunks is None else n_chunks * n_ctx
    return tokenize_for_chunks(model.tokenize, corpus.text, need)


def chunk_ids(model: Tokenizes, corpus: Corpus, ids: np.ndarray, n_ctx: int, n_chunks: int | None) -> Chunks:
    return make_chunks(
        ids,
        n_ctx,
        n_chunks,
        add_bos=model.add_bos,
        bos_id=model.bos_id,
        corpus_name=f"corpus {corpus.name!r} ({corpus.source})",
    )


def compute_reference(
    base: str | Path,
    corpus: Corpus,
    *,
    n_ctx: int = 512,
    n_chunks: int | None = 20,
    threads: int | None = None,
    progress: bool = True,
) -> BaseReference:
    """Run the base model (an HF checkpoint dir) over the corpus chunks, one decoder layer at a time,
    and keep its final hidden states at the scored positions and its NLL there.

    torch runs with a fixed thread count (REFERENCE_THREADS unless `threads` is given): CPU matmul
    results depend on how the work is split, and the file must be the same bytes on every re-run."""
    from pocketquant.evaluate.hf import HFTokenizer
    from pocketquant.layerwise.forward import LayerwiseModel

    base = Path(base)
    if not (base / "config.json").is_file():
        raise EvaluationError(
            f"the base reference needs the base as an HF checkpoint dir (config.json), not {base}"
        )
    torch.set_num_threads(threads or REFERENCE_THREADS)
    tok = HFTokenizer(base)
    out = BaseOutput(base)
    all_ids = corpus_ids(tok, corpus, n_ctx, n_chunks)
    ch = chunk_ids(tok, corpus, all_ids, n_ctx, n_chunks)
    try:
        model = LayerwiseModel(base)
    except ConfigError as exc:
        raise EvaluationError(f"base reference: {exc}") from exc
    finals = model.final_hidden(list(ch.tokens), progress=progress, desc="base hidden states (by layer)")
    nll = np.empty((ch.n_chunks, ch.n_scored), np.float32)
    hidden = np.empty((ch.n_chunks, ch.n_scored, out.hidden_size), np.float32)
    for i in range(ch.n_chunks):
        hidden[i] = finals[i][ch.first :][: ch.n_scored].numpy()
        finals[i] = None  # type: ignore[call-overload]
        rows, _ = score_rows(out.logits(hidden[i]).numpy(), ch.targets[i])
        nll[i] = rows.nll
    meta = {
        "format": FORMAT,
        "n_ctx": n_ctx,
        "chunks": ch.n_chunks,
        "first": ch.first,
        "add_bos": ch.add_bos,
        "bos_id": ch.bos_id,
        "n_vocab": out.n_vocab,
        "hidden_size": out.hidden_size,
        **out.meta(),
        "engine": ENGINE,
        "model": base.name,
        "corpus": corpus.name,
        "corpus_sha256": corpus.sha256,
        "tokens_scored": ch.n_tokens_scored,
    }
    return BaseReference(
        ids=all_ids[: ch.n_chunks * n_ctx].copy(), nll=nll, hidden=hidden, meta=meta, output=out
    )


def save_reference(ref: BaseReference, path: str | Path) -> Path:
    from safetensors.numpy import save_file

    tensors = {"ids": ref.ids.astype(np.int32), "nll": ref.nll, "hidden": ref.hidden}
    with atomic_path(path) as tmp:
        save_file(
            {k: np.ascontiguousarray(v) for k, v in tensors.items()},
            str(tmp),
            metadata={"pocketquant": json.dumps(ref.meta, sort_keys=True)},
        )
    return Path(path)


def load_reference(path: str | Path, base: str | Path | BaseOutput | None = None) -> BaseReference:
    """Read a reference file; with `base` (the base HF checkpoint dir) attach its output head."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"base reference file not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get("pocketquant", "{}"))
            arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError) as exc:
        raise EvaluationError(f"cannot read base reference {path}: {exc}") from exc
    missing = {"ids", "nll", "hidden"} - arrays.keys()
    if meta.get("format") != FORMAT or missing:
        raise EvaluationError(
            f"{path} is not a pocketquant base reference file ({FORMAT}); missing {missing}: recompute it"
        )
    ref = BaseReference(ids=arrays["ids"], nll=arrays["nll"], hidden=arrays["hidden"], meta=meta)
    return ref if base is None else ref.with_output(base)
