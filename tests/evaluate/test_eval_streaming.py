"""The base reference and the exact KLD stream (issue 13): the model one decoder layer at a time,
the output matrix one vocabulary slice at a time, the KL in row blocks, with the same bits as the
whole-model computations they replace; the family output transforms (issue 9) on the way."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pocketquant.evaluate.output_head import OutputHead, output_head
from pocketquant.evaluate.reference import BaseOutput, compute_reference, save_reference
from pocketquant.evaluate.scoring import KL_BLOCK_ROWS, kl_full, row_blocks
from pocketquant.layerwise.forward import LayerwiseModel
from pocketquant.layerwise.weights import CheckpointWeights
from pocketquant.testing.random_checkpoints import FAMILIES, build_random_checkpoint
from pocketquant.testing.whole_model import final_hidden_states, load_float32, whole_model_reference

# Families whose head is not a plain hidden @ W^T: without the transform the logits must differ.
TRANSFORMED = {"gemma2", "gemma3_text", "phi", "granite", "cohere"}


@pytest.fixture(scope="module")
def sequences() -> list[np.ndarray]:
    """Two sequences longer than the families' 8-token sliding windows, of different lengths."""
    rng = np.random.default_rng(0)
    return [rng.integers(3, 256, size=40), rng.integers(3, 256, size=27)]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_layerwise_forward_and_output_head_equal_transformers(family, sequences, tmp_path):
    """Per family: streamed final hidden states == the whole model's, and the output head applied
    to them == transformers' own logits (soft-capping, logit scales, lm_head bias, tied or not)."""
    d = build_random_checkpoint(family, tmp_path / family)
    torch.set_num_threads(1)
    whole = load_float32(d)
    streamed = LayerwiseModel(d).final_hidden(sequences, progress=False)
    want = final_hidden_states(whole, sequences)
    head = output_head(json.loads((d / "config.json").read_text()))
    out = BaseOutput(d)
    assert out.head == head and out.shape == tuple(whole.get_output_embeddings().weight.shape)
    for s, h, w in zip(sequences, streamed, want, strict=True):
        assert torch.equal(h, torch.from_numpy(w)), family
        with torch.inference_mode():
            logits = whole(input_ids=torch.from_numpy(s)[None], use_cache=False).logits[0]
        assert torch.equal(out.logits(h), logits), family
        plain = h @ CheckpointWeights(d).read(out.weight_name, torch.float32).T
        assert torch.equal(plain, logits) == (family not in TRANSFORMED), family


def test_output_heads_from_configs():
    """config.json keys, and the family defaults transformers fills in when a key is missing."""
    assert output_head({"model_type": "llama", "tie_word_embeddings": True}) == OutputHead(tied=True)
    assert output_head({"model_type": "llama"}) == OutputHead(tied=False)
    assert output_head({"model_type": "gemma2"}) == OutputHead(tied=True, softcap=30.0)
    assert output_head({"model_type": "gemma2", "final_logit_softcapping": None}).softcap is None
    gemma3 = {"model_type": "gemma3", "text_config": {"final_logit_softcapping": 5.0}}
    assert output_head(gemma3).softcap == 5.0 and output_head(gemma3).tied
    assert output_head({"model_type": "granite", "logits_scaling": 16.0}).logits_scaling == 16.0
    assert output_head({"model_type": "cohere"}) == OutputHead(tied=True, logit_scale=0.0625)
    phi = output_head({"model_type": "phi", "architectures": ["PhiForCausalLM"]})
    assert phi == OutputHead(tied=False, bias=True) and phi.weight_names == ("lm_head.weight",)
    assert OutputHead(tied=True).describe() == {}  # a Llama reference's metadata is unchanged


def test_sharded_checkpoint_streams_across_files(sequences, tmp_path):
    from transformers import AutoModelForCausalLM

    d = build_random_checkpoint("llama", tmp_path / "one")
    sharded = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(d).save_pretrained(sharded, max_shard_size="60KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    assert len(list(sharded.glob("*.safetensors"))) > 2
    a = LayerwiseModel(d).final_hidden(sequences, progress=False)
    b = LayerwiseModel(sharded).final_hidden(sequences, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert BaseOutput(d).sha256 == BaseOutput(sharded).sha256


@pytest.fixture(scope="module")
def default_setting_reference(smollm2_hf_dir, default_corpus):
    """The pipeline's default evaluation setting (n_ctx 512, 4 chunks) on the embedded SmolLM2."""
    return compute_reference(smollm2_hf_dir, default_corpus, n_ctx=512, n_chunks=4, progress=False)


@pytest.mark.slow
def test_streamed_reference_is_byte_identical_to_the_whole_model_reference(
    smollm2_hf_dir, default_corpus, default_setting_reference, tmp_path
):
    """The reference file built layer by layer is the very file the whole-model code wrote before."""
    streamed = save_reference(default_setting_reference, tmp_path / "streamed.safetensors")
    whole = save_reference(
        whole_model_reference(smollm2_hf_dir, default_corpus, n_ctx=512, n_chunks=4),
        tmp_path / "whole.safetensors",
    )
    assert streamed.read_bytes() == whole.read_bytes()


def test_kl_row_blocks():
    assert row_blocks(1) == [(0, 1)]
    assert row_blocks(255, 32)[-2:] == [(192, 224), (224, 255)] and len(row_blocks(255, 32)) == 8
    assert row_blocks(70, 32) == [(0, 32), (32, 70)]  # a 6-row remainder joins the last block
    for n in (1, 5, KL_BLOCK_ROWS, KL_BLOCK_ROWS + 1, 63, 255, 257):
        blocks = row_blocks(n)
        assert blocks[0][0] == 0 and blocks[-1][1] == n
        assert all(a < b for a, b in blocks) and all(
            b1 == a2 for (_, b1), (a2, _) in zip(blocks, blocks[1:], strict=False)
        )
        assert all(min(n, KL_BLOCK_ROWS // 2) <= b - a < 2 * KL_BLOCK_ROWS for a, b in blocks)


@pytest.mark.slow
def test_sliced_output_and_blocked_scoring_give_the_same_numbers(
    smollm2_hf_dir, default_setting_reference, smollm2_llama_q41
):
    """Q4_1 (llama.cpp) vs the SmolLM2 reference: base logits from W_out in slices of a few
    thousand rows, for blocks of positions, and NLL/KL/top-1 per block equal the whole-matrix,
    whole-chunk computation the evaluation did before streaming."""
    from pocketquant.evaluate.quality import score_chunk
    from pocketquant.evaluate.scoring import score_rows

    whole_w = CheckpointWeights(smollm2_hf_dir).read("model.embed_tokens.weight", torch.float32)
    small = BaseOutput(smollm2_hf_dir, slice_bytes=8 * 2**20)  # 14 slices of 3,640 rows
    ref = default_setting_reference.with_output(small)
    ch = ref.chunks()
    assert small.rows_per_slice < 4000
    assert ch.n_scored == 255  # several score and KL blocks per chunk
    i = 0
    base = torch.from_numpy(ref.hidden[i]) @ whole_w.T
    assert torch.equal(ref.chunk_logits(i), base)
    var = smollm2_llama_q41.logits(ch.tokens[i], ch.first)[: ch.n_scored].copy()
    P, Q = torch.log_softmax(base.double(), dim=1), torch.log_softmax(torch.from_numpy(var).double(), dim=1)
    whole_kl = torch.clamp((P.exp() * (P - Q)).sum(dim=1), min=0.0).numpy()
    rows, _ = score_rows(var, ch.targets[i])
    np.testing.assert_array_equal(kl_full(base, var), whole_kl)
    nll, kld, same = score_chunk(var, ch.targets[i], lambda a, b: ref.chunk_logits(i, a, b))
    np.testing.assert_array_equal(nll, rows.nll)
    np.testing.assert_array_equal(kld, whole_kl)
    np.testing.assert_array_equal(same, rows.top1 == base.argmax(dim=1).numpy())
