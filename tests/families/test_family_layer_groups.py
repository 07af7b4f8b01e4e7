"""Layer-group evaluation (evaluate/layer_groups.py) per family: every architecture it allows gives
the whole model's llama.cpp logits bit for bit; the others are planned whole."""

from __future__ import annotations

import numpy as np
import pytest
from family_cases import FAMILIES

from pocketquant.evaluate.corpus import default_corpus
from pocketquant.evaluate.layer_groups import GROUPABLE_ARCHS, LayerGroupedLlamaCpp, plan_groups
from pocketquant.evaluate.llamacpp import LlamaCppModel
from pocketquant.gguf_file import GGUFFile

N_CTX = 128
# Gemma scales its input embeddings in the graph (a later group would scale a hidden state again)
# and Gemma 2/3 alternate sliding-window layers by index.
WHOLE_ONLY = {"gemma", "gemma2", "gemma3"}


@pytest.mark.parametrize("family", FAMILIES)
def test_layer_groups_give_the_whole_model_logits(family, our_ggufs, llama_cpp):
    path = our_ggufs[family, "f16"]
    with GGUFFile(path) as f:
        arch = f.get("general.architecture")
        groups = plan_groups(f, 1)  # the smallest budget: one layer per group
    if family in WHOLE_ONLY:
        assert arch not in GROUPABLE_ARCHS and groups is None
        return
    assert arch in GROUPABLE_ARCHS and groups is not None and len(groups) >= 2, (arch, groups)
    text = default_corpus().text[:8_000]
    with LlamaCppModel(path, n_ctx=N_CTX, threads=2) as whole:
        ids = whole.tokenize(text)
        seqs = [(np.asarray(ids[i * N_CTX : (i + 1) * N_CTX], np.int32), N_CTX // 2) for i in range(2)]
        want = [logits.copy() for logits in whole.logits_many(seqs)]
    with LayerGroupedLlamaCpp(path, groups, n_ctx=N_CTX, threads=2) as grouped:
        got = [logits.copy() for logits in grouped.logits_many(seqs)]
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w), f"{family} ({arch}): max |diff| {np.abs(g - w).max()}"
