"""Base reference file (final hidden states): compact, byte-stable, exact (the base logits it gives
back are the model's own), consistent with a plain perplexity run; the variant-vs-reference checks
(tokenizer, corpus, base checkpoint) that guard the KL divergence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pocketquant.evaluate.corpus import Corpus
from pocketquant.evaluate.errors import ReferenceMismatchError, TokenizerMismatchError
from pocketquant.evaluate.quality import evaluate_quality, perplexity
from pocketquant.evaluate.reference import load_reference, save_reference

pytestmark = pytest.mark.slow


def test_reference_roundtrip_is_byte_stable_and_compact(hf_reference, tmp_path):
    a = save_reference(hf_reference, tmp_path / "a.safetensors")
    b = save_reference(hf_reference, tmp_path / "b.safetensors")
    assert a.read_bytes() == b.read_bytes()
    # 2 chunks x 63 positions x 576 float32 hidden values, plus NLL, ids and a small header
    assert a.stat().st_size < 2 * 63 * 576 * 4 + 2 * 128 * 4 + 2 * 63 * 4 + 4096
    ref = load_reference(a)
    assert ref.meta == hf_reference.meta
    assert ref.meta["n_ctx"] == 128 and ref.meta["chunks"] == 2 and ref.meta["tokens_scored"] == 126
    assert ref.meta["engine"] == "transformers" and ref.meta["add_bos"] is False  # SmolLM2 adds no BOS
    assert ref.meta["output_shape"] == [49152, 576] and len(ref.meta["output_sha256"]) == 64
    np.testing.assert_array_equal(ref.hidden, hf_reference.hidden)
    assert ref.ppl == pytest.approx(hf_reference.ppl, rel=1e-7)


def test_stored_reference_gives_back_the_exact_base_logits(
    smollm2_hf, smollm2_hf_dir, hf_reference, tmp_path
):
    """The output head applied to the stored hidden states, W_out read from the checkpoint's
    safetensors one vocabulary slice at a time = the whole model's own logits, bit for bit."""
    ref = load_reference(save_reference(hf_reference, tmp_path / "r.safetensors"), smollm2_hf_dir)
    assert ref.output.rows_per_slice < ref.output.n_vocab  # really sliced (49152 rows)
    ch = ref.chunks()
    for i in range(ch.n_chunks):
        direct = smollm2_hf.logits(ch.tokens[i], ch.first)[: ch.n_scored]
        np.testing.assert_array_equal(ref.chunk_logits(i).numpy(), direct)


def test_recomputing_the_reference_gives_the_same_bytes(
    smollm2_hf_dir, default_corpus, hf_reference, tmp_path
):
    from pocketquant.evaluate.reference import compute_reference

    again = compute_reference(smollm2_hf_dir, default_corpus, n_ctx=128, n_chunks=2, progress=False)
    a = save_reference(hf_reference, tmp_path / "a.safetensors")
    b = save_reference(again, tmp_path / "b.safetensors")
    assert a.read_bytes() == b.read_bytes()  # DVC caches it: same inputs, same bytes


def test_reference_ppl_equals_a_plain_perplexity_run(smollm2_hf, default_corpus, hf_reference):
    r = perplexity(smollm2_hf, default_corpus, n_ctx=128, n_chunks=2, progress=False)
    assert r["ppl"] == pytest.approx(hf_reference.ppl, rel=1e-5)
    assert (r["engine"], r["n_ctx"], r["chunks"], r["tokens_scored"]) == ("transformers", 128, 2, 126)
    assert 3 < r["ppl"] < 200  # a real language model on English text


def test_the_base_against_its_own_reference_has_zero_divergence(smollm2_hf, default_corpus, hf_reference):
    q = evaluate_quality(smollm2_hf, default_corpus, hf_reference, progress=False)
    assert q["kld_mean"] == pytest.approx(0.0, abs=1e-9) and q["kld_max"] < 1e-8 and q["kld_exact"]
    assert q["top1_agreement_pct"] == 100.0
    assert q["delta_ppl_pct"] == pytest.approx(0.0, abs=1e-4)
    assert q["tokens_scored"] == 126 and q["base_engine"] == "transformers"


def test_a_variant_with_another_vocabulary_is_a_tokenizer_mismatch(
    tiny_llama_dir, default_corpus, hf_reference
):
    from pocketquant.evaluate.hf import TransformersModel

    tiny = TransformersModel(tiny_llama_dir, threads=1)
    with pytest.raises(TokenizerMismatchError, match="vocabulary of 512, the base 49152"):
        evaluate_quality(tiny, default_corpus, hf_reference, progress=False)


def test_different_token_ids_are_a_tokenizer_mismatch(smollm2_hf, default_corpus, hf_reference):
    ids = hf_reference.ids.copy()
    ids[77] += 1
    tampered = dataclasses.replace(hf_reference, ids=ids)
    with pytest.raises(TokenizerMismatchError, match="first difference at token 77"):
        evaluate_quality(smollm2_hf, default_corpus, tampered, progress=False)


def test_a_reference_from_another_corpus_is_refused(smollm2_hf, default_corpus, hf_reference):
    other = Corpus(name="other", source="test", text=default_corpus.text + " more")
    with pytest.raises(ReferenceMismatchError, match="recompute"):
        evaluate_quality(smollm2_hf, other, hf_reference, progress=False)
