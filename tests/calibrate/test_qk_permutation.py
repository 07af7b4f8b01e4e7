"""The q/k row permutation of the converter does not touch the imatrix (issue 5 item 2), and an
imatrix calibrated on another model is refused by the quantizer (item 5).

The imatrix is per input column; the converter permutes q/k *rows* (HF rotate-half -> ggml
interleaved pairs). So the entries for attn_q/attn_k must be the sums over the un-permuted HF
modules' inputs, and quantizing our converted GGUF with them must give the same bytes as
quantizing the permuted HF weight rows with the same weights in the kernel directly."""

from __future__ import annotations

import numpy as np
import pytest

from pocketquant.errors import ImatrixError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

TEXT = "\n".join(f"Row {i}: a calibration sentence with numbers {i * 11 % 17} and words." for i in range(300))
N_CTX = 64


@pytest.fixture(scope="module")
def wide_llama_dir(tmp_path_factory):
    """Rows of 256 so attn_q/attn_k get real k-quants (the 64-wide tiny model falls back)."""
    from pocketquant.testing.tiny_models import build_tiny_llama

    return build_tiny_llama(
        tmp_path_factory.mktemp("wide-llama") / "hf", hidden_size=256, intermediate_size=256, seed=1
    )


def _hf_input_sums(model_dir, chunks):
    """Sums of squared inputs and row counts of every layer's q_proj/k_proj, from our own hooks
    on the HF modules (un-permuted)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    sums: dict[str, torch.Tensor] = {}
    rows: dict[str, int] = {}
    handles = []
    for i, layer in enumerate(model.model.layers):
        for proj, gname in ((layer.self_attn.q_proj, "attn_q"), (layer.self_attn.k_proj, "attn_k")):
            key = f"blk.{i}.{gname}.weight"

            def pre(_m, args, key=key):
                x = args[0].reshape(-1, args[0].shape[-1]).double()
                sums[key] = sums.get(key, 0) + (x * x).sum(0)
                rows[key] = rows.get(key, 0) + x.shape[0]

            handles.append(proj.register_forward_pre_hook(pre))
    with torch.inference_mode():
        for ids in chunks:
            model(input_ids=torch.from_numpy(np.asarray(ids, dtype=np.int64)).reshape(1, -1))
    for h in handles:
        h.remove()
    return model, sums, rows


@pytest.mark.parametrize("which", ["tiny_llama_dir", "wide_llama_dir"])
def test_qk_imatrix_is_unpermuted_and_quantizes_like_the_permuted_rows(which, request, tmp_path):
    from transformers import AutoTokenizer

    from pocketquant.calibrate import calibrate, calibration_chunks
    from pocketquant.convert import convert_hf_to_gguf
    from pocketquant.convert.hf_to_gguf import permute_qk
    from pocketquant.gguf_file import GGUFFile
    from pocketquant.imatrix import load_imatrix
    from pocketquant.quantize import quantize_gguf
    from pocketquant.quants import quantize

    model_dir = request.getfixturevalue(which)
    im_path = tmp_path / "im.gguf"
    calibrate(model_dir, im_path, text=TEXT, dataset="perm-text", n_ctx=N_CTX, n_chunks=2, progress=False)
    im = load_imatrix(im_path)

    chunks = calibration_chunks(
        AutoTokenizer.from_pretrained(model_dir), TEXT, n_ctx=N_CTX, n_chunks=2, name="t"
    )
    model, sums, rows = _hf_input_sums(model_dir, chunks)
    cfg = model.config
    assert len(sums) == 2 * cfg.num_hidden_layers
    for key, s in sums.items():
        want = (s.numpy().astype(np.float32) / np.float32(rows[key])).astype(np.float32)
        np.testing.assert_allclose(im.values(key), want, rtol=2e-6, err_msg=key)

    gguf = convert_hf_to_gguf(model_dir, tmp_path / "f32.gguf", "f32", progress=False)
    out = tmp_path / "q4_k_m.gguf"
    report = quantize_gguf(gguf, out, "q4_k_m", imatrix=im, progress=False)
    plans = {p.name: p for p in report.tensors}
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    with GGUFFile(out) as q:
        for i, layer in enumerate(model.model.layers):
            for proj, gname, heads in (
                (layer.self_attn.q_proj, "attn_q", (n_head, n_head)),
                (layer.self_attn.k_proj, "attn_k", (n_head, n_kv)),
            ):
                name = f"blk.{i}.{gname}.weight"
                plan = plans[name]
                assert plan.imatrix, name
                w = proj.weight.detach().numpy()
                permuted = permute_qk(w, *heads)
                assert not np.array_equal(permuted, w)  # the permutation is not a no-op here
                direct = quantize(permuted, plan.dst_type.name, imatrix=im.values(name))
                got = q.tensor_data(name)
                assert np.array_equal(got.reshape(-1), direct.reshape(-1)), (name, plan.dst_type.name)
                # un-permuted rows would give other bytes: the test can tell the layouts apart
                other = quantize(w, plan.dst_type.name, imatrix=im.values(name))
                assert not np.array_equal(got.reshape(-1), other.reshape(-1)), name
    if which == "wide_llama_dir":
        assert plans["blk.0.attn_q.weight"].dst_type.name in ("Q4_K", "Q5_K", "Q6_K")


def test_imatrix_of_another_model_is_refused_and_nothing_written(tiny_llama_dir, wide_llama_dir, tmp_path):
    """The 64-wide tiny model's imatrix on the 256-wide model's GGUF: lengths do not fit."""
    from pocketquant.calibrate import calibrate
    from pocketquant.cli import main
    from pocketquant.convert import convert_hf_to_gguf
    from pocketquant.quantize import quantize_gguf

    im = tmp_path / "tiny.imatrix.gguf"
    calibrate(tiny_llama_dir, im, text=TEXT, dataset="t", n_ctx=N_CTX, n_chunks=1, progress=False)
    gguf = convert_hf_to_gguf(wide_llama_dir, tmp_path / "wide-f32.gguf", "f32", progress=False)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "wide-q4_k_m.gguf"
    with pytest.raises(
        ImatrixError, match=r"entry 'blk\.\d+\.\w+\.weight' has \d+ values, but the tensor needs"
    ):
        quantize_gguf(gguf, out, "q4_k_m", imatrix=im, progress=False)
    assert list(out_dir.iterdir()) == []
    assert main(["quantize", str(gguf), str(out), "q4_k_m", "--imatrix", str(im)]) == 2
    assert list(out_dir.iterdir()) == []
