"""The base model's reference distribution, computed once per corpus setting and saved compactly.

File format (`base_logprobs.safetensors`, DVC-cached by the pipeline): safetensors with
  ids           int32   [n_chunks * n_ctx]        the corpus tokens (before BOS replacement)
  nll           float32 [n_chunks, n_scored]      base -log p(next token) at each scored position
  topk_ids      int32   [n_chunks, n_scored, k]   base's k most likely tokens, most likely first
  topk_logprobs float32 [n_chunks, n_scored, k]   their log-probs
  rest_logprob  float32 [n_chunks, n_scored]      log of the mass of all other tokens
and one metadata entry "pocketquant" (JSON: n_ctx, chunks, k, add_bos, bos_id, n_vocab, engine,
model, corpus name + sha256). 20 chunks x 255 positions x k=256 is 10.4 MB, where llama.cpp's
full uint16 log-prob file is 500 MB for a 49k vocab. The KL divergence computed from it is a lower
bound of the full-vocabulary value (see pocketquant.evaluate.scoring; measured error in
docs/evaluation.md: top-256 keeps 88% of the mean KLD of Q4_1 vs F32 SmolLM2, top-64 78%).
A single metadata key keeps the header byte-stable
(safetensors writes metadata from a hash map).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pocketquant.atomic import atomic_path
from pocketquant.errors import EvaluationError
from pocketquant.evaluate.chunks import Chunks, make_chunks, tokenize_for_chunks
from pocketquant.evaluate.corpus import Corpus
from pocketquant.evaluate.model import LanguageModel
from pocketquant.evaluate.scoring import TopK, score_rows, top_k_summary

FORMAT = "pocketquant-base-logprobs/1"
DEFAULT_TOP_K = 256


@dataclass(frozen=True)
class BaseReference:
    ids: np.ndarray
    nll: np.ndarray
    topk: TopK  # arrays shaped [n_chunks, n_scored, ...]
    meta: dict

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

    def chunk_topk(self, i: int) -> TopK:
        return TopK(
            ids=self.topk.ids[i], logprobs=self.topk.logprobs[i], rest_logprob=self.topk.rest_logprob[i]
        )


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
    top_k: int = DEFAULT_TOP_K,
    progress: bool = True,
) -> BaseReference:
    """Run the base model over the corpus chunks and keep its compact distribution."""
    top_k = min(top_k, model.n_vocab)
    all_ids = corpus_ids(model, corpus, n_ctx, n_chunks)
    ch = chunk_ids(model, corpus, all_ids, n_ctx, n_chunks)
    shape = (ch.n_chunks, ch.n_scored)
    nll = np.empty(shape, np.float32)
    ids = np.empty((*shape, top_k), np.int32)
    lps = np.empty((*shape, top_k), np.float32)
    rest = np.empty(shape, np.float32)
    for i in tqdm(range(ch.n_chunks), desc=f"base log-probs ({model.engine})", disable=not progress):
        logits = model.logits(ch.tokens[i], ch.first)[: ch.n_scored]
        rows, lse = score_rows(logits, ch.targets[i])
        tk = top_k_summary(logits, top_k, lse)
        nll[i], ids[i], lps[i], rest[i] = rows.nll, tk.ids, tk.logprobs, tk.rest_logprob
    meta = {
        "format": FORMAT,
        "n_ctx": n_ctx,
        "chunks": ch.n_chunks,
        "first": ch.first,
        "k": top_k,
        "add_bos": ch.add_bos,
        "bos_id": ch.bos_id,
        "n_vocab": model.n_vocab,
        "engine": model.engine,
        "model": model.name,
        "corpus": corpus.name,
        "corpus_sha256": corpus.sha256,
        "tokens_scored": ch.n_tokens_scored,
    }
    return BaseReference(
        ids=all_ids[: ch.n_chunks * n_ctx].copy(), nll=nll, topk=TopK(ids, lps, rest), meta=meta
    )


def save_reference(ref: BaseReference, path: str | Path) -> Path:
    from safetensors.numpy import save_file

    tensors = {
        "ids": ref.ids.astype(np.int32),
        "nll": ref.nll,
        "topk_ids": ref.topk.ids,
        "topk_logprobs": ref.topk.logprobs,
        "rest_logprob": ref.topk.rest_logprob,
    }
    with atomic_path(path) as tmp:
        save_file(
            {k: np.ascontiguousarray(v) for k, v in tensors.items()},
            str(tmp),
            metadata={"pocketquant": json.dumps(ref.meta, sort_keys=True)},
        )
    return Path(path)


def load_reference(path: str | Path) -> BaseReference:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"base log-probs file not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get("pocketquant", "{}"))
            arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError) as exc:
        raise EvaluationError(f"cannot read base log-probs {path}: {exc}") from exc
    missing = {"ids", "nll", "topk_ids", "topk_logprobs", "rest_logprob"} - arrays.keys()
    if meta.get("format") != FORMAT or missing:
        raise EvaluationError(
            f"{path} is not a pocketquant base log-probs file ({FORMAT}); missing {missing}"
        )
    return BaseReference(
        ids=arrays["ids"],
        nll=arrays["nll"],
        topk=TopK(arrays["topk_ids"], arrays["topk_logprobs"], arrays["rest_logprob"]),
        meta=meta,
    )
