"""llama.cpp-style chunking: BOS replaces each chunk's first token, second half scored."""

from __future__ import annotations

import numpy as np
import pytest

from pocketquant.evaluate.chunks import make_chunks, tokenize_for_chunks
from pocketquant.evaluate.errors import CorpusError


def test_chunks_replace_first_token_with_bos_and_score_second_half():
    ids = np.arange(100, 100 + 3 * 8 + 5, dtype=np.int32)  # 3 full chunks of 8 + a partial one
    ch = make_chunks(ids, 8, None, add_bos=True, bos_id=1)
    assert ch.n_chunks == 3  # the partial chunk is dropped (n_tokens / n_ctx)
    assert ch.tokens[:, 0].tolist() == [1, 1, 1]
    assert ch.tokens[1, 1:].tolist() == list(range(109, 116))
    assert ch.first == 4 and ch.n_scored == 3  # logits at positions 4, 5, 6 predict tokens 5, 6, 7
    assert ch.targets[2].tolist() == [121, 122, 123]
    assert ch.n_tokens_scored == 9


def test_no_bos_when_the_model_does_not_add_one_and_chunks_are_clamped():
    ids = np.arange(40, dtype=np.int32)
    ch = make_chunks(ids, 16, 5, add_bos=False, bos_id=1)
    assert ch.n_chunks == 2
    assert ch.tokens[1, 0] == 16


def test_corpus_shorter_than_one_chunk_is_a_named_error():
    with pytest.raises(CorpusError, match="'tiny'.* 7 tokens, fewer than one chunk of n_ctx=8"):
        make_chunks(np.arange(7), 8, 1, add_bos=True, bos_id=1, corpus_name="corpus 'tiny'")


def test_prefix_tokenization_gives_the_whole_texts_first_tokens():
    text = "\n".join(f"line {i} " + "word " * (i % 7) for i in range(3000))
    calls = []

    def tokenize(t: str) -> list[int]:
        calls.append(len(t))
        return [1] + [hash(w) % 1000 for w in t.split(" ")]

    full = tokenize(text)
    got = tokenize_for_chunks(tokenize, text, 500)
    assert got.tolist() == full[:500]
    assert min(calls[1:]) < len(text)  # only a prefix was tokenized
    assert tokenize_for_chunks(tokenize, text, None).tolist() == full
