"""llama.cpp one group of layers at a time (evaluate/layer_groups.py, issue 13): the logits of a
whole-model run bit for bit, group files that hold what the plan says, and evaluate_variant's
numbers and generations unchanged when it scores that way."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pocketquant.evaluate.layer_groups import LayerGroupedLlamaCpp, plan_groups, write_group
from pocketquant.evaluate.llamacpp import LlamaCppModel
from pocketquant.evaluate.model import open_model
from pocketquant.evaluate.reference import save_reference
from pocketquant.evaluate.variant import evaluate_variant
from pocketquant.gguf_file import GGUFFile
from pocketquant.quantize import quantize_gguf


@pytest.fixture(scope="module")
def q4_k_m(smollm2_f32_gguf, tmp_path_factory):
    """A Q4_K_M variant of SmolLM2 (our kernel): the scheme the scale targets are set for."""
    out = tmp_path_factory.mktemp("q4km") / "q4_k_m.gguf"
    quantize_gguf(smollm2_f32_gguf, out, "q4_k_m", threads=2, progress=False)
    return out


def _sequences(model, corpus) -> list[tuple[np.ndarray, int]]:
    ids = model.tokenize(corpus.text[:40_000])
    chunks = [(np.asarray(ids[i * 256 : (i + 1) * 256], np.int32), 128) for i in range(3)]
    return [*chunks, (np.asarray(ids[:40], np.int32), 7)]  # and a short one, scored from 7


@pytest.mark.parametrize("gguf", ["q4_k_m", "smollm2_gguf"])
def test_grouped_logits_equal_the_whole_model_bit_for_bit(gguf, request, default_corpus):
    path = request.getfixturevalue(gguf)
    with GGUFFile(path) as f:
        groups = plan_groups(f, f.file_size // 3)
    assert groups is not None and len(groups) >= 3
    with LlamaCppModel(path, n_ctx=256, threads=2) as whole:
        seqs = _sequences(whole, default_corpus)
        want = [logits.copy() for logits in whole.logits_many(seqs)]
    with LayerGroupedLlamaCpp(path, groups, n_ctx=256, threads=2) as grouped:
        got = [logits.copy() for logits in grouped.logits_many(seqs)]
        assert grouped.tokenize(default_corpus.text[:500]) == whole_ids(path, default_corpus.text[:500])
    assert [g.shape for g in got] == [(256 - 128, want[0].shape[1])] * 3 + [(40 - 7, want[0].shape[1])]
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert np.array_equal(g, w), f"sequence {i}: max |diff| {np.abs(g - w).max()}"


def whole_ids(path, text):
    with LlamaCppModel(path, n_ctx=64, threads=1, vocab_only=True) as m:
        return m.tokenize(text)


def test_plan_covers_every_layer_once_within_the_budget(q4_k_m, tmp_path):
    with GGUFFile(q4_k_m) as f:
        n_layer = int(f.get("llama.block_count"))
        assert plan_groups(f, f.file_size) is None  # fits: evaluated whole
        budget = f.file_size // 2
        groups = plan_groups(f, budget)
        assert groups is not None
        assert groups[0][0] == 0 and groups[-1][1] == n_layer
        assert all(a < b for a, b in groups)
        assert all(b == a2 for (_, b), (a2, _) in zip(groups, groups[1:], strict=False))
        assert max(b - a for a, b in groups) > 1
        for g, (a, b) in enumerate(groups):
            path = write_group(f, a, b, tmp_path / f"g{g}.gguf")
            with GGUFFile(path) as part:
                names = {t.name for t in part.tensors}
                assert int(part.get("llama.block_count")) == b - a
                assert {f"blk.{i}.attn_q.weight" for i in range(b - a)} <= names
                assert f"blk.{b - a}.attn_q.weight" not in names
                assert "token_embd.weight" in names and "output_norm.weight" in names
                # SmolLM2 ties its output to the token embeddings: real in the first and last
                # groups, a zero stand-in (never read) in between
                embd = part.tensor("token_embd.weight")
                if 0 < a and b < n_layer:
                    assert embd.type != f.tensor("token_embd.weight").type
                    assert not part.read_tensor(embd).any()
                else:
                    assert np.array_equal(part.read_tensor(embd), f.read_tensor("token_embd.weight"))
                size = sum(t.nbytes for t in part.tensors)
                assert size <= budget or b - a == 1, f"group {a}..{b}: {size} bytes, budget {budget}"
                # a layer's bytes are copied as they are (no requantization)
                src, dst = f.tensor(f"blk.{a}.ffn_down.weight"), part.tensor("blk.0.ffn_down.weight")
                assert np.array_equal(f.read_tensor(src), part.read_tensor(dst))
            path.unlink()


@pytest.mark.parametrize(
    ("key", "value"),
    [("general.architecture", "gemma"), ("llama.block_count", None), ("llama.block_count", "thirty")],
)
def test_files_that_cannot_be_grouped_are_evaluated_whole(key, value, tmp_path, q4_k_m):
    """Gemma's graph rescales its input; a missing or non-integer layer count leaves nothing to plan
    (llama.cpp then refuses the file by name, as it would anyway)."""
    from pocketquant.gguf_file import KV, TensorInfo, create_gguf

    with GGUFFile(q4_k_m) as f:
        kvs = dict(f.kv)
        if value is None:
            del kvs[key]
        else:
            kvs[key] = KV.string(value)
        tensors = [TensorInfo(t.name, t.shape, t.type) for t in f.tensors]
        with create_gguf(tmp_path / "odd.gguf", kvs, tensors) as w:
            for t in f.tensors:
                w.write(f.read_tensor(t))
    with GGUFFile(tmp_path / "odd.gguf") as g:
        assert plan_groups(g, g.file_size // 4) is None


def test_open_model_groups_only_a_file_bigger_than_the_budget(q4_k_m):
    size = q4_k_m.stat().st_size
    with open_model(q4_k_m, threads=1, n_ctx=64, max_resident_bytes=size // 3) as m:
        assert isinstance(m, LayerGroupedLlamaCpp) and len(m.groups) >= 3
        with pytest.raises(Exception, match="does not generate"):
            m.start([1, 2, 3])
    with open_model(q4_k_m, threads=1, n_ctx=64, max_resident_bytes=size) as m:
        assert isinstance(m, LlamaCppModel)


def test_evaluate_variant_in_layer_groups_gives_the_whole_model_numbers(
    q4_k_m, smollm2_hf_dir, default_corpus, hf_reference, tmp_path
):
    """Same PPL/KLD/top-1 and per-token scores, same greedy generations (made by the runtime child),
    a speed block; the metrics say how the variant was run."""
    reference = save_reference(hf_reference, tmp_path / "ref.safetensors")
    runs = {}
    for how, gb in (("whole", None), ("grouped", q4_k_m.stat().st_size / 3 / 1e9)):
        out = tmp_path / how
        runs[how] = evaluate_variant(
            q4_k_m,
            name="q4_k_m",
            corpus=default_corpus,
            reference=reference,
            base=smollm2_hf_dir,
            metrics_out=out / "m.json",
            generations_out=out / "gen.json",
            tokens_out=out / "tokens.safetensors",
            threads=2,
            prompts=["What is the capital of France?", "Name a colour."],
            max_new_tokens=8,
            n_prompt=64,
            n_gen=4,
            progress=False,
            max_resident_gb=gb,
        )
    whole, grouped = runs["whole"]["quality"], runs["grouped"]["quality"]
    assert "layer_groups" not in whole and len(grouped.pop("layer_groups")) >= 3
    assert grouped == whole
    assert (tmp_path / "whole" / "tokens.safetensors").read_bytes() == (
        tmp_path / "grouped" / "tokens.safetensors"
    ).read_bytes()
    gens = [json.loads((tmp_path / how / "gen.json").read_text())["generations"] for how in runs]
    assert gens[0] == gens[1] and all(g["n_tokens"] > 0 for g in gens[0])
    sp = runs["grouped"]["speed"]
    assert sp["engine"] == "llama.cpp" and sp["n_prompt"] == 64 and sp["tg_tokens_per_s"] > 0
    assert "generations" not in sp


def test_grouped_evaluation_without_the_benchmark_still_generates(
    q4_k_m, smollm2_hf_dir, default_corpus, hf_reference, tmp_path
):
    """eval.bench.enabled=false: no speed block, and the child that generates skips the timings."""
    m = evaluate_variant(
        q4_k_m,
        name="q4_k_m",
        corpus=default_corpus,
        reference=hf_reference,
        base=smollm2_hf_dir,
        metrics_out=tmp_path / "m.json",
        generations_out=tmp_path / "gen.json",
        threads=2,
        prompts=["Name a colour."],
        max_new_tokens=4,
        runtime=False,
        progress=False,
        max_resident_gb=q4_k_m.stat().st_size / 3 / 1e9,
    )
    assert "speed" not in m and len(m["quality"]["layer_groups"]) >= 3
    (g,) = json.loads((tmp_path / "gen.json").read_text())["generations"]
    assert 0 < g["n_tokens"] <= 4 and g["completion"]
