"""The transformers engine's lazily computed logits (hf.HeadLogits): the rows scoring asks for, in
blocks, are the rows of the whole matrix bit for bit, so scoring never holds the 131 MB
[255, 128256] float32 matrix of a 128k vocabulary."""

from __future__ import annotations

import numpy as np

from pocketquant.evaluate.hf import HeadLogits
from pocketquant.evaluate.quality import SCORE_BLOCK_ROWS
from pocketquant.evaluate.scoring import row_blocks


def test_row_blocks_of_the_lazy_logits_are_the_whole_matrix_bit_for_bit(smollm2_hf, default_corpus):
    ids = np.asarray(smollm2_hf.tokenize(default_corpus.text[:6000])[:256], np.int32)
    (lazy,) = smollm2_hf.logits_many([(ids, 1)])
    assert isinstance(lazy, HeadLogits) and lazy.shape == (255, smollm2_hf.n_vocab)
    whole = np.asarray(lazy)
    assert whole.dtype == np.float32 and whole.shape == lazy.shape
    assert np.array_equal(whole, smollm2_hf.logits(ids, 1))  # the eager call: same numbers
    scored = lazy[:254]  # evaluate_quality's [: n_scored], still lazy
    assert isinstance(scored, HeadLogits)
    for start, stop in row_blocks(254, SCORE_BLOCK_ROWS):
        block = np.asarray(scored[start:stop])
        assert np.array_equal(block, whole[start:stop]), (start, stop)
