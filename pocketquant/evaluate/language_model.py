"""The interface every evaluation engine implements (llama.cpp for GGUF files, transformers for HF
checkpoints and NF4 dirs). Evaluation code only sees `LanguageModel`; `model.open_model` picks the
engine. The engines import this module and nothing imports them back, so there is no import cycle.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np


class LanguageModel(abc.ABC):
    engine: str  # "llama.cpp" or "transformers"
    path: Path
    n_vocab: int
    add_bos: bool  # whether tokenize() puts BOS first (llama.cpp: the vocab's add_bos flag)
    bos_id: int | None
    eos_ids: frozenset[int]
    threads: int

    @abc.abstractmethod
    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """Token ids of `text`, BOS first when add_bos; `special` parses "<|...|>" as special tokens
        (llama.cpp's perplexity does not, a chat-formatted prompt needs it)."""

    @abc.abstractmethod
    def detokenize(self, ids: list[int]) -> str: ...

    @abc.abstractmethod
    def logits(self, tokens: np.ndarray, first: int) -> np.ndarray:
        """Run `tokens` (one sequence, fresh context) and return float32 logits [len - first, n_vocab]
        for positions first .. len-1. The array may be reused by the next call: use it before then."""

    def logits_many(self, seqs: Iterable[tuple[np.ndarray, int]]) -> Iterator[np.ndarray]:
        """logits(tokens, first) of each sequence in order. An engine that runs the model in parts
        (evaluate/layer_groups.py) passes every sequence through one part before the next."""
        for tokens, first in seqs:
            yield self.logits(tokens, first)

    @abc.abstractmethod
    def start(self, prompt_ids: list[int]) -> int:
        """Fresh context: process the prompt and return the greedy next token."""

    @abc.abstractmethod
    def step(self, token: int) -> int:
        """Append `token` to the context and return the greedy next token."""

    def generate(self, prompt_ids: list[int], max_new_tokens: int, *, stop_at_eos: bool = True) -> list[int]:
        """Greedy continuation (deterministic), stopping at an end-of-generation token."""
        out: list[int] = []
        tok = self.start(prompt_ids)
        while len(out) < max_new_tokens and not (stop_at_eos and tok in self.eos_ids):
            out.append(tok)
            if len(out) < max_new_tokens:
                tok = self.step(tok)
        return out

    def close(self) -> None:  # noqa: B027 - engines free native memory here when they hold any
        pass

    def __enter__(self) -> LanguageModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self.path.name


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
