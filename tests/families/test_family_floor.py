"""Cross-engine floor per family (issue 9): our F32 GGUF evaluated in llama.cpp against the
transformers base reference, both through the production evaluation path (compute_reference ->
the family's output head -> evaluate_quality), so what llama.cpp applies from the GGUF's keys
(Gemma 2/3's final soft-cap, Granite's logit scale, Phi-2's output.bias) and what the reference
applies from config.json (pocketquant/evaluate/output_head.py) must agree."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from family_cases import FAMILIES

from pocketquant.evaluate.corpus import Corpus, default_corpus
from pocketquant.evaluate.model import open_model
from pocketquant.evaluate.quality import evaluate_quality
from pocketquant.evaluate.reference import BaseReference, compute_reference
from pocketquant.testing.tiny_models import SPREAD_CONFIG, build_tiny_model

# The floor issue 9 sets: an F32 conversion run by llama.cpp is the base model up to float rounding.
MAX_MEAN_KLD = 1e-3
MIN_SAME_TOP1_PCT = 95.0
# Short: 4 chunks of 128 (the tiny models know 256 positions), 252 scored tokens per family.
N_CTX, N_CHUNKS = 128, 4
TRANSFORMED = {"gemma2", "gemma3", "phi2", "granite"}


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    """The head of the offline default corpus (prose and code; every tokenizer kind covers it)."""
    full = default_corpus()
    return Corpus(name="default-head", source=full.source, text=full.text[:12_000])


def _entropy_and_plain_head_kld(ref: BaseReference) -> tuple[float, float]:
    """Mean entropy of the base distribution, and KL(base || the same logits without the output
    transform): what the floor would measure if one engine left the transform out."""
    out = ref.output
    plain = dataclasses.replace(out.head, bias=False, logit_scale=None, logits_scaling=None, softcap=None)
    entropy = kld = 0.0
    for i in range(ref.n_chunks):
        p = torch.log_softmax(ref.chunk_logits(i), dim=-1)
        hidden = torch.from_numpy(ref.hidden[i])
        q = torch.log_softmax(torch.cat([plain.apply(hidden, w) for _, _, w, _ in out.slices()], 1), dim=-1)
        entropy += float(-(p.exp() * p).sum(-1).mean()) / ref.n_chunks
        kld += float((p.exp() * (p - q)).sum(-1).mean()) / ref.n_chunks
    return entropy, kld


@pytest.mark.parametrize("family", FAMILIES)
def test_f32_gguf_in_llama_cpp_meets_the_floor_against_the_transformers_reference(
    family, family_dirs, our_ggufs, corpus, llama_cpp, tmp_path
):
    from pocketquant.convert import convert_hf_to_gguf

    model_dir, gguf_path = family_dirs[family], our_ggufs[family, "f32"]
    if family in SPREAD_CONFIG:  # Gemma 2/3: a distribution the soft-cap decides (see SPREAD_CONFIG)
        model_dir = build_tiny_model(tmp_path / family, family, **SPREAD_CONFIG[family])
        gguf_path = convert_hf_to_gguf(model_dir, tmp_path / f"{family}.gguf", "f32", progress=False)
    ref = compute_reference(model_dir, corpus, n_ctx=N_CTX, n_chunks=N_CHUNKS, progress=False)
    model = open_model(gguf_path, n_ctx=N_CTX, threads=2)
    try:
        q = evaluate_quality(model, corpus, ref, progress=False)
    finally:
        model.close()
    entropy, plain_kld = _entropy_and_plain_head_kld(ref)
    figures = (
        f"{family}: mean KLD {q['kld_mean']:.2e}, same top-1 {q['top1_agreement_pct']:.1f}%, "
        f"base entropy {entropy:.2f} nats, KLD without the output transform {plain_kld:.2e}"
    )
    print(figures)
    assert q["tokens_scored"] == N_CHUNKS * (N_CTX // 2 - 1), figures  # llama.cpp's scored half
    assert q["kld_mean"] < MAX_MEAN_KLD, figures
    assert q["top1_agreement_pct"] > MIN_SAME_TOP1_PCT, figures
    assert entropy > 1.0, figures  # a one-hot base would agree with anything
    # The transform is exercised: leaving it out (in either engine) would miss the floor.
    assert (plain_kld > MAX_MEAN_KLD) == (family in TRANSFORMED), figures
