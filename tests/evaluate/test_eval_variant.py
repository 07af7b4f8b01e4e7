"""evaluate_variant end to end (the evaluate stage's call) and its bad-input behaviour: a named
EvaluationError and no metrics file."""

from __future__ import annotations

import json

import pytest

from pocketquant.errors import EvaluationError
from pocketquant.evaluate.corpus import Corpus
from pocketquant.evaluate.errors import (
    CorpusError,
    ModelLoadError,
    ReferenceMismatchError,
    TokenizerMismatchError,
)
from pocketquant.evaluate.reference import save_reference
from pocketquant.evaluate.variant import build_reference, evaluate_variant

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference_file(hf_reference, tmp_path_factory):
    return save_reference(hf_reference, tmp_path_factory.mktemp("ref") / "base_hidden_states.safetensors")


def test_evaluate_variant_writes_flat_metrics_and_generations(
    smollm2_hf_dir, default_corpus, reference_file, tmp_path
):
    mc = tmp_path / "mc.jsonl"
    mc.write_text(
        json.dumps(
            {"question": "What is the capital of France?", "choices": ["Paris", "Banana"], "answer": "A"}
        )
        + "\n"
    )
    m = evaluate_variant(
        smollm2_hf_dir,
        name="base",
        corpus=default_corpus,
        reference=reference_file,
        base=smollm2_hf_dir,
        metrics_out=tmp_path / "metrics" / "base.json",
        generations_out=tmp_path / "gen.json",
        threads=2,
        prompts=["What is the capital of France?"],  # a chat turn in the base's template
        max_new_tokens=8,
        mc_path=mc,
        n_prompt=64,
        n_gen=8,
        progress=False,
    )
    on_disk = json.loads((tmp_path / "metrics" / "base.json").read_text())
    assert set(on_disk) == {"variant", "size", "quality", "speed", "mc", "provenance", "process"}
    assert on_disk["variant"] == "base"
    # the evaluating process's own cost (issue 13): wall time since it started, peak RSS
    assert on_disk["process"]["wall_s"] > 0 and 100 < on_disk["process"]["peak_rss_mib"] < 16000
    assert on_disk["quality"]["kld_mean"] == pytest.approx(0.0, abs=1e-6)
    assert on_disk["quality"]["ppl"] == pytest.approx(m["quality"]["ppl"], rel=1e-5)
    assert on_disk["size"]["bpw"] > 32  # float32 checkpoint
    sp = on_disk["speed"]
    assert sp["engine"] == "transformers" and sp["threads"] == 2 and sp["n_prompt"] == 64 and sp["n_gen"] == 8
    assert sp["pp_tokens_per_s"] > 0 and sp["tg_tokens_per_s"] > 0 and sp["ttft_s"] > 0
    assert 100 < sp["peak_rss_mib"] < 8000 and sp["load_s"] > 0
    assert on_disk["mc"]["n_questions"] == 1
    gen = json.loads((tmp_path / "gen.json").read_text())
    g = gen["generations"][0]
    assert g["prompt"] == "What is the capital of France?" and g["chat_template"]
    assert 0 < g["n_tokens"] <= 8 and "Paris" in g["completion"] and g["stop_reason"] == "eos"


def _no_metrics(tmp_path) -> None:
    assert not (tmp_path / "m.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".m.json")]  # no temp leftovers


def test_corpus_shorter_than_one_chunk(smollm2_hf_dir, tmp_path):
    short = Corpus(name="short", source="test", text="Only a few words here.")
    with pytest.raises(CorpusError, match="fewer than one chunk of n_ctx=128"):
        build_reference(
            smollm2_hf_dir,
            short,
            tmp_path / "ref.safetensors",
            n_ctx=128,
            n_chunks=1,
            threads=2,
            progress=False,
        )
    assert not (tmp_path / "ref.safetensors").exists()


def test_variant_that_fails_to_load(default_corpus, reference_file, tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    with pytest.raises(ModelLoadError, match="broken.gguf"):
        evaluate_variant(
            bad,
            name="broken",
            corpus=default_corpus,
            reference=reference_file,
            metrics_out=tmp_path / "m.json",
            runtime=False,
            progress=False,
        )
    baddir = tmp_path / "broken-hf"
    baddir.mkdir()
    (baddir / "config.json").write_text('{"model_type": "llama"}')
    (baddir / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(EvaluationError, match="broken-hf"):
        evaluate_variant(
            baddir,
            name="broken",
            corpus=default_corpus,
            reference=reference_file,
            metrics_out=tmp_path / "m.json",
            runtime=False,
            progress=False,
        )
    _no_metrics(tmp_path)


def test_tokenizer_mismatch(tiny_llama_dir, default_corpus, reference_file, tmp_path):
    with pytest.raises(TokenizerMismatchError):
        evaluate_variant(
            tiny_llama_dir,
            name="tiny",
            corpus=default_corpus,
            reference=reference_file,
            metrics_out=tmp_path / "m.json",
            runtime=False,
            progress=False,
        )
    _no_metrics(tmp_path)


def test_reference_without_or_with_the_wrong_base_checkpoint(
    smollm2_hf_dir, tiny_llama_dir, default_corpus, reference_file, tmp_path
):
    """The stored hidden states need the very output matrix they were computed with."""
    kw = {"name": "x", "corpus": default_corpus, "reference": reference_file, "runtime": False}
    with pytest.raises(ReferenceMismatchError, match=f"base checkpoint {tiny_llama_dir}.*recompute"):
        evaluate_variant(smollm2_hf_dir, base=tiny_llama_dir, metrics_out=tmp_path / "m.json", **kw)
    with pytest.raises(EvaluationError, match="output head: pass base="):
        evaluate_variant(smollm2_hf_dir, metrics_out=tmp_path / "m.json", progress=False, **kw)
    _no_metrics(tmp_path)


def test_nf4_variant_in_transformers(tiny_llama_dir, default_corpus, tmp_path):
    """An NF4 dir (bitsandbytes on CPU) measured against its float32 base."""
    from pocketquant.nf4 import quantize_nf4

    nf4 = quantize_nf4(tiny_llama_dir, tmp_path / "nf4")
    ref = build_reference(
        tiny_llama_dir,
        default_corpus,
        tmp_path / "ref.safetensors",
        n_ctx=64,
        n_chunks=2,
        threads=2,
        progress=False,
    )
    m = evaluate_variant(
        nf4,
        name="nf4",
        corpus=default_corpus,
        reference=tmp_path / "ref.safetensors",
        base=tiny_llama_dir,
        metrics_out=tmp_path / "nf4.json",
        threads=2,
        prompts=["Hello"],
        max_new_tokens=4,
        runtime=False,  # transformers runtime is measured in the test above
        progress=False,
    )
    q = m["quality"]
    assert q["engine"] == "transformers" and q["tokens_scored"] == 2 * 31
    assert q["kld_mean"] > 0 and q["ppl_base"] == pytest.approx(ref.ppl)
    assert m["size"]["format"] == "hf-bnb-4bit" and "speed" not in m
    assert (tmp_path / "nf4.json").is_file()
