"""The base model's reference distribution, computed once per corpus setting and saved compactly.

File format (`base_logprobs.safetensors`, DVC-cached by the pipeline): safetensors with
  ids     int32   [n_chunks * n_ctx]               the corpus tokens (before BOS replacement)
  nll     float32 [n_chunks, n_scored]             base -log p(next token) at each scored position
  hidden  float32 [n_chunks, n_scored, d_model]    the base's final hidden states (after the final
                                                   norm) at each scored position
and one metadata entry "pocketquant" (JSON: n_ctx, chunks, add_bos, bos_id, n_vocab, hidden size,
engine, model, corpus name + sha256, and the sha256 + shape of the base's output matrix).

The full-vocabulary base distribution is recomputed at evaluation time as
log_softmax(hidden @ W_out^T) with W_out read from the base checkpoint (`base_output_matrix`), so
the KL divergence is exact (no top-k truncation) while the file stays small: 20 chunks x 255
positions x 576 floats is 11.8 MB for SmolLM2, where llama.cpp's uint16 log-prob file is 500 MB.
The base logits are computed by the same function (`base_logits`) when the reference is built and
when it is used, so the base NLL stored here and the distribution recomputed later agree.
A single metadata key keeps the header byte-stable (safetensors writes metadata from a hash map).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pocketquant.atomic import atomic_path
from pocketquant.errors import EvaluationError
from pocketquant.evaluate.chunks import Chunks, make_chunks, tokenize_for_chunks
from pocketquant.evaluate.corpus import Corpus
from pocketquant.evaluate.errors import ReferenceMismatchError
from pocketquant.evaluate.model import LanguageModel
from pocketquant.evaluate.scoring import score_rows

FORMAT = "pocketquant-base-hidden/2"
DEFAULT_TOP_K = 256  # kept for callers of the old top-k API; the reference is now exact
# torch threads for the base forward pass when building the reference: fixed, so the stored hidden
# states are the same bytes on every machine size (CPU matmul rounding depends on the work split).
REFERENCE_THREADS = 2


@dataclass(frozen=True)
class OutputMatrix:
    """The base's output projection (lm_head, or the tied token embedding), float32 [n_vocab, d]."""

    weight: torch.Tensor
    softcap: float | None = None  # final-logit soft-capping (Gemma 2); Llama has none

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.weight.contiguous().numpy().tobytes()).hexdigest()


def base_logits(hidden: np.ndarray, out: OutputMatrix) -> torch.Tensor:
    """Base logits float32 [n, n_vocab] = hidden @ W^T (+ softcap): one vectorized matmul."""
    logits = torch.from_numpy(np.ascontiguousarray(hidden, dtype=np.float32)) @ out.weight.T
    if out.softcap:
        logits = torch.tanh(logits / out.softcap) * out.softcap
    return logits


def _safetensors_files(base: Path) -> list[Path]:
    index = base / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [base / n for n in names]
    return sorted(base.glob("*.safetensors"))


def base_output_matrix(base: str | Path) -> OutputMatrix:
    """W_out of an HF checkpoint dir, read from its safetensors without loading the whole model."""
    from safetensors import safe_open

    base = Path(base)
    cfg_path = base / "config.json"
    if not cfg_path.is_file():
        raise EvaluationError(f"base checkpoint {base} has no config.json (an HF checkpoint dir is needed)")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    softcap = cfg.get("final_logit_softcapping") or cfg.get("text_config", {}).get("final_logit_softcapping")
    files = _safetensors_files(base)
    if not files:
        raise EvaluationError(f"base checkpoint {base} has no .safetensors weights")
    # Untied models have lm_head.weight; tied ones (SmolLM2) use the token embedding.
    wanted = ["lm_head.weight", "model.embed_tokens.weight", "model.language_model.embed_tokens.weight"]
    for name in wanted:
        for f in files:
            with safe_open(str(f), framework="pt") as st:
                if name in st.keys():  # noqa: SIM118 - safe_open has no __contains__
                    w = st.get_tensor(name).to(torch.float32).contiguous()
                    return OutputMatrix(w, softcap)
    raise EvaluationError(
        f"base checkpoint {base}: no output matrix (none of {wanted}) in {[f.name for f in files]}"
    )


@dataclass(frozen=True)
class BaseReference:
    ids: np.ndarray
    nll: np.ndarray
    hidden: np.ndarray  # float32 [n_chunks, n_scored, d]
    meta: dict
    output: OutputMatrix | None = field(default=None, compare=False, repr=False)

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

    def with_output(self, base: str | Path | OutputMatrix) -> BaseReference:
        """Attach the base's output matrix, checking it is the one the reference was built with."""
        out = base if isinstance(base, OutputMatrix) else base_output_matrix(base)
        where = "the given output matrix" if isinstance(base, OutputMatrix) else f"base checkpoint {base}"
        shape = [int(x) for x in out.weight.shape]
        if shape != self.meta["output_shape"] or out.sha256 != self.meta["output_sha256"]:
            raise ReferenceMismatchError(
                f"{where} is not the model the base reference was computed with "
                f"(output matrix {shape}, sha256 {out.sha256[:12]} vs {self.meta['output_shape']}, "
                f"{self.meta['output_sha256'][:12]}): recompute the reference"
            )
        return BaseReference(self.ids, self.nll, self.hidden, self.meta, out)

    def chunk_logits(self, i: int) -> torch.Tensor:
        """The base's exact full-vocabulary logits at chunk i's scored positions (float32)."""
        if self.output is None:
            raise EvaluationError(
                "the base reference needs the base checkpoint's output matrix: pass base= (the base HF dir)"
            )
        return base_logits(self.hidden[i], self.output)


def corpus_ids(model: LanguageModel, corpus: Corpus, n_ctx: int, n_chunks: int | None) -> np.ndarray:
    """The corpus tokens `model`'s tokenizer makes, as llama.cpp feeds them to chunking."""
    need = None if n_chunks is None else n_chunks * n_ctx
    return tokenize_for_chunks(model.tokenize, corpus.text, need)


def chunk_ids(
    model: LanguageModel, corpus: Corpus, ids: np.ndarray, n_ctx: int, n_chunks: int | None
) -> Chunks:
    return make_chunks(
        ids,
        n_ctx,
        n_chunks,
        add_bos=model.add_bos,
        bos_id=model.bos_id,
        corpus_name=f"corpus {corpus.name!r} ({corpus.source})",
    )


def compute_reference(
    model: LanguageModel,
    corpus: Corpus,
    *,
    n_ctx: int = 512,
    n_chunks: int | None = 20,
    top_k: int | None = None,  # noqa: ARG001 - accepted for API compatibility; the reference is exact
    progress: bool = True,
) -> BaseReference:
    """Run the base model (transformers) over the corpus chunks and keep its final hidden states."""
    if not hasattr(model, "final_hidden"):
        raise EvaluationError(
            "the base reference needs the base as an HF checkpoint (transformers), "
            f"not {model.path} ({model.engine})"
        )
    out = model.output_matrix()
    all_ids = corpus_ids(model, corpus, n_ctx, n_chunks)
    ch = chunk_ids(model, corpus, all_ids, n_ctx, n_chunks)
    nll = np.empty((ch.n_chunks, ch.n_scored), np.float32)
    hidden = np.empty((ch.n_chunks, ch.n_scored, out.weight.shape[1]), np.float32)
    for i in tqdm(range(ch.n_chunks), desc=f"base hidden states ({model.engine})", disable=not progress):
        hidden[i] = model.final_hidden(ch.tokens[i], ch.first)[: ch.n_scored]
        rows, _ = score_rows(base_logits(hidden[i], out).numpy(), ch.targets[i])
        nll[i] = rows.nll
    meta = {
        "format": FORMAT,
        "n_ctx": n_ctx,
        "chunks": ch.n_chunks,
        "first": ch.first,
        "add_bos": ch.add_bos,
        "bos_id": ch.bos_id,
        "n_vocab": model.n_vocab,
        "hidden_size": int(out.weight.shape[1]),
        "output_shape": [int(x) for x in out.weight.shape],
        "output_sha256": out.sha256,
        "output_softcap": out.softcap,
        "engine": model.engine,
        "model": model.name,
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


def load_reference(path: str | Path, base: str | Path | OutputMatrix | None = None) -> BaseReference:
    """Read a reference file; with `base` (the base HF checkpoint dir) attach its output matrix."""
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
