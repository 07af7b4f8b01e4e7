"""Importance matrix collection in transformers (issue 5 item 1) on a tiny random Llama."""

from __future__ import annotations

import numpy as np
import pytest

from pocketquant.errors import ImatrixError
from pocketquant.imatrix import load_imatrix

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TEXT = "\n".join(
    f"Line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13} times." for i in range(200)
)
N_CTX = 64


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_llama_dir)


@pytest.fixture(scope="module")
def imatrix_file(tiny_llama_dir, tmp_path_factory):
    from pocketquant.calibrate import calibrate

    out = tmp_path_factory.mktemp("imatrix") / "tiny.imatrix.gguf"
    stats = calibrate(
        tiny_llama_dir, out, text=TEXT, dataset="unit-text", n_ctx=N_CTX, n_chunks=3, progress=False
    )
    return out, stats


def test_name_mapping():
    from pocketquant.calibrate import gguf_weight_name

    assert gguf_weight_name("model.layers.7.self_attn.q_proj") == "blk.7.attn_q.weight"
    assert gguf_weight_name("model.layers.0.self_attn.o_proj") == "blk.0.attn_output.weight"
    assert gguf_weight_name("model.layers.12.mlp.down_proj") == "blk.12.ffn_down.weight"
    assert gguf_weight_name("lm_head") == "output.weight"
    assert gguf_weight_name("model.layers.0.vision_proj") is None


def test_sums_are_squared_inputs_of_each_matrix(tiny, tiny_llama_dir):
    """Compare with an independent computation from the whole model's hidden states: the input of
    q/k/v in layer L is input_layernorm(hidden_states[L])."""
    from pocketquant.calibrate import calibration_chunks, collect_activation_stats
    from pocketquant.layerwise.forward import LayerwiseModel

    model, tok = tiny
    chunks = calibration_chunks(tok, TEXT, n_ctx=N_CTX, n_chunks=2, name="unit-text")
    assert chunks.shape == (2, N_CTX)
    stats = collect_activation_stats(LayerwiseModel(tiny_llama_dir), chunks, progress=False)

    n_layers = model.config.num_hidden_layers
    expected_names = {
        f"blk.{i}.{w}.weight"
        for i in range(n_layers)
        for w in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
    }
    assert set(stats.sums) == expected_names
    assert all(c == 2 * N_CTX for c in stats.counts.values())
    assert stats.sums["blk.0.ffn_down.weight"].shape == (model.config.intermediate_size,)

    with torch.inference_mode():
        want = {i: torch.zeros(model.config.hidden_size, dtype=torch.float64) for i in range(n_layers)}
        for ids in chunks:
            out = model(
                input_ids=torch.from_numpy(ids.astype(np.int64)).reshape(1, -1), output_hidden_states=True
            )
            for i in range(n_layers):
                x = (
                    model.model.layers[i]
                    .input_layernorm(out.hidden_states[i])
                    .reshape(-1, model.config.hidden_size)
                )
                want[i] += (x.double() ** 2).sum(0)
    for i in range(n_layers):
        for w in ("attn_q", "attn_k", "attn_v"):
            np.testing.assert_allclose(stats.sums[f"blk.{i}.{w}.weight"], want[i].numpy(), rtol=1e-6)
    # later layers see different activations: the hooks are per module, not shared
    assert not np.allclose(stats.sums["blk.0.attn_q.weight"], stats.sums["blk.1.attn_q.weight"])


def test_written_imatrix_round_trips(imatrix_file):
    path, stats = imatrix_file
    im = load_imatrix(path)
    assert set(im.entries) == set(stats.sums)
    assert im.datasets == ["unit-text"] and im.chunk_count == 3 and im.chunk_size == N_CTX
    for name, sums in stats.sums.items():
        want = (sums.astype(np.float32) / np.float32(stats.counts[name])).astype(np.float32)
        np.testing.assert_array_equal(im.values(name), want)


def test_imatrix_fits_the_converted_gguf_and_feeds_the_quantizer(imatrix_file, tiny_llama_dir, tmp_path):
    """Every entry names a GGUF tensor of our converter's output with ne0 = entry length, every
    decoder matrix has an entry, and the kernel's quantizer takes the file (`--imatrix`)."""
    from pocketquant.convert import convert_hf_to_gguf
    from pocketquant.gguf_file import GGUFFile
    from pocketquant.quantize import quantize_gguf

    path, stats = imatrix_file
    gguf = convert_hf_to_gguf(tiny_llama_dir, tmp_path / "tiny-f32.gguf", "f32", progress=False)
    with GGUFFile(gguf) as g:
        shapes = {t.name: t.shape for t in g.tensors}
    matrices = {n for n, s in shapes.items() if n.startswith("blk.") and len(s) == 2}
    assert set(stats.sums) == matrices
    for name, sums in stats.sums.items():
        assert shapes[name][0] == sums.size, name

    report = quantize_gguf(gguf, tmp_path / "tiny-q4_k_m.gguf", "q4_k_m", imatrix=path, progress=False)
    assert {p.name for p in report.tensors if p.imatrix} == set(stats.sums)
    with GGUFFile(tmp_path / "tiny-q4_k_m.gguf") as q:
        assert q.get("quantize.imatrix.entries_count") == len(stats.sums)
        assert q.get("quantize.imatrix.dataset") == "unit-text"
        assert q.get("quantize.imatrix.chunks_count") == 3


def test_too_short_text_is_a_named_error_and_writes_nothing(tiny_llama_dir, tmp_path):
    from pocketquant.calibrate import calibrate

    out = tmp_path / "x.imatrix.gguf"
    with pytest.raises(ImatrixError, match="short-text.*fewer than one chunk"):
        calibrate(tiny_llama_dir, out, text="too short", dataset="short-text", n_ctx=N_CTX, progress=False)
    assert not out.exists()
    with pytest.raises(ImatrixError, match="no config.json"):
        calibrate(tmp_path, out, text=TEXT, dataset="x", n_ctx=N_CTX, progress=False)


@pytest.mark.slow
def test_calibrates_the_embedded_model(smollm2_hf_dir, tmp_path):
    """SmolLM2-135M on one 128-token chunk of the offline default corpus: one entry per decoder
    matrix (30 layers x 7), every channel seen, lengths as the GGUF tensors' ne0."""
    from pocketquant.calibrate import calibrate
    from pocketquant.evaluate.corpus import default_corpus

    corpus = default_corpus()
    out = tmp_path / "smollm2.imatrix.gguf"
    stats = calibrate(
        smollm2_hf_dir, out, text=corpus.text, dataset=corpus.name, n_ctx=128, n_chunks=1, progress=False
    )
    assert len(stats.sums) == 30 * 7
    assert set(stats.counts.values()) == {128}
    assert stats.sums["blk.0.attn_q.weight"].size == 576 and stats.sums["blk.29.ffn_down.weight"].size == 1536
    assert all(np.isfinite(s).all() and (s > 0).all() for s in stats.sums.values())
    assert set(load_imatrix(out).entries) == set(stats.sums)


def test_streamed_stats_equal_whole_model_hooks_with_the_untied_output(tmp_path):
    """Layer by layer, with --process-output on an untied head: the same float64 sums as hooks on
    the whole model (the pre-streaming implementation), including output.weight."""
    from pocketquant.calibrate import collect_activation_stats
    from pocketquant.layerwise.forward import LayerwiseModel
    from pocketquant.testing.random_checkpoints import build_random_checkpoint
    from pocketquant.testing.whole_model import activation_sums, load_float32

    d = build_random_checkpoint("llama", tmp_path / "untied")  # tie_word_embeddings false
    chunks = np.random.default_rng(1).integers(3, 256, size=(3, 32))
    got = collect_activation_stats(LayerwiseModel(d), chunks, include_output=True, progress=False)
    want = activation_sums(load_float32(d), list(chunks), include_output=True)
    assert "output.weight" in got.sums and got.counts == want.counts
    assert set(got.sums) == set(want.sums)
    for name, sums in want.sums.items():
        np.testing.assert_array_equal(got.sums[name], sums, err_msg=name)


@pytest.mark.slow
def test_imatrix_of_the_embedded_model_is_byte_identical_to_whole_model_hooks(smollm2_hf_dir, tmp_path):
    """SmolLM2 on two 512-token chunks of the default calibration text: calibrate() (streamed) writes
    the same imatrix bytes as hooks on the whole float32 model."""
    from transformers import AutoTokenizer

    from pocketquant.calibrate import calibrate, calibration_chunks, write_imatrix
    from pocketquant.evaluate.corpus import default_corpus
    from pocketquant.testing.whole_model import activation_sums, load_float32

    text = default_corpus().text
    text = text[len(text) // 2 :]  # calib.skip_fraction 0.5, as the stage does
    calibrate(smollm2_hf_dir, tmp_path / "streamed.gguf", text=text, dataset="d", n_ctx=512, n_chunks=2)
    chunks = calibration_chunks(
        AutoTokenizer.from_pretrained(smollm2_hf_dir), text, n_ctx=512, n_chunks=2, name="d"
    )
    write_imatrix(
        activation_sums(load_float32(smollm2_hf_dir), list(chunks)), tmp_path / "whole.gguf", dataset="d"
    )
    assert (tmp_path / "streamed.gguf").read_bytes() == (tmp_path / "whole.gguf").read_bytes()
