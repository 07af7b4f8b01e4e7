"""Our HF -> GGUF converter: file layout, metadata, determinism, and llama.cpp agreement."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from pocketquant.cli import main as cli_main
from pocketquant.convert import ConversionError, convert_hf_to_gguf
from pocketquant.convert.check import SAMPLE_TEXTS, load_llama, logprob_agreement, tokenize_both
from pocketquant.convert.hf_to_gguf import llama3_rope_factors, permute_qk
from pocketquant.errors import ConfigError

PROMPT = (
    "The quick brown fox jumps over the lazy dog. Quantization maps floating-point weights to a few "
    "bits per weight. def quantize(x, bits=4): return 42"
)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def _hf_tensor(model_dir: Path, name: str) -> np.ndarray:
    from safetensors.numpy import load_file

    return load_file(model_dir / "model.safetensors")[name]


def test_permute_qk_interleaves_rotate_half_rows():
    n_head, head_dim, cols = 3, 8, 5
    w = np.arange(n_head * head_dim * cols, dtype=np.float32).reshape(n_head * head_dim, cols)
    out = permute_qk(w, n_head)
    for h in range(n_head):
        for j in range(head_dim // 2):
            for a in range(2):  # new row 2j+a = old row a*hd/2 + j, inside each head
                np.testing.assert_array_equal(
                    out[h * head_dim + 2 * j + a], w[h * head_dim + a * head_dim // 2 + j]
                )


def test_llama3_rope_factors_match_transformers(tiny_llama_dir: Path):
    import torch
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = json.loads((tiny_llama_dir / "config.json").read_text())
    factors = llama3_rope_factors(config["rope_parameters"], head_dim=16).numpy()
    hf_config = AutoConfig.from_pretrained(tiny_llama_dir)
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](hf_config, torch.device("cpu"))
    plain = 1.0 / (10000.0 ** (torch.arange(0, 16, 2, dtype=torch.float32) / 16))  # unscaled, head_dim 16
    np.testing.assert_allclose(factors, (plain / scaled).numpy(), rtol=1e-5)
    assert (
        factors.min() == 1.0 and factors.max() == 8.0 and len(set(factors.tolist())) > 2
    )  # all three regimes


def test_tiny_gguf_layout_and_metadata(tiny_llama_dir: Path, tiny_gguf_f32: Path):
    reader = gguf.GGUFReader(tiny_gguf_f32)
    names = [t.name for t in reader.tensors]
    assert names[0] == "rope_freqs.weight"  # llama3 scaling: the extra tensor comes first
    assert "output.weight" not in names  # tied embeddings
    assert names[1] == "token_embd.weight" and names[-1] == "output_norm.weight"
    assert len(names) == 1 + 1 + 2 * 9 + 1
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "llama.attention.head_count") == 4
    assert _field(reader, "llama.attention.head_count_kv") == 2
    assert _field(reader, "llama.rope.dimension_count") == 16
    assert _field(reader, "general.file_type") == int(gguf.LlamaFileType.ALL_F32)
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == "llama-bpe"
    assert _field(reader, "tokenizer.ggml.add_bos_token") is True
    assert _field(reader, "tokenizer.ggml.add_eos_token") is False
    assert "<|start_header_id|>" in _field(reader, "tokenizer.chat_template")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    bos = _field(reader, "tokenizer.ggml.bos_token_id")
    assert tokens[bos] == "<|begin_of_text|>" and types[bos] == gguf.TokenType.CONTROL
    assert len(_field(reader, "tokenizer.ggml.merges")) > 100

    # Tensor data: K rows are the permuted HF rows (GQA: permuted with n_head_kv), norms verbatim.
    by_name = {t.name: t for t in reader.tensors}
    k_hf = _hf_tensor(tiny_llama_dir, "model.layers.1.self_attn.k_proj.weight")
    np.testing.assert_array_equal(by_name["blk.1.attn_k.weight"].data, permute_qk(k_hf, 4, 2))
    assert list(by_name["blk.1.attn_k.weight"].shape) == [64, 32]  # ggml ne order: (cols, rows)
    norm = _hf_tensor(tiny_llama_dir, "model.layers.0.input_layernorm.weight")
    np.testing.assert_array_equal(by_name["blk.0.attn_norm.weight"].data, norm)


def test_untied_model_writes_output_and_linear_rope(tiny_untied_dir: Path, tmp_path: Path):
    out = convert_hf_to_gguf(tiny_untied_dir, tmp_path / "untied.gguf", "f16")
    reader = gguf.GGUFReader(out)
    names = [t.name for t in reader.tensors]
    assert "output.weight" in names and "rope_freqs.weight" not in names
    assert _field(reader, "llama.rope.scaling.type") == "linear"
    assert _field(reader, "llama.rope.scaling.factor") == pytest.approx(2.0)


def test_outtypes_f16_bf16(tiny_llama_dir: Path, tiny_gguf_f32: Path, tmp_path: Path):
    f16 = convert_hf_to_gguf(tiny_llama_dir, tmp_path / "f16.gguf")  # default outtype
    bf16 = convert_hf_to_gguf(tiny_llama_dir, tmp_path / "bf16.gguf", "bf16")
    src = _hf_tensor(tiny_llama_dir, "model.layers.0.mlp.down_proj.weight")
    for path, qtype, ftype in (
        (f16, gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
        (bf16, gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    ):
        reader = gguf.GGUFReader(path)
        assert _field(reader, "general.file_type") == int(ftype)
        by_name = {t.name: t for t in reader.tensors}
        assert by_name["blk.0.ffn_down.weight"].tensor_type == qtype
        assert by_name["blk.0.ffn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
        assert by_name["rope_freqs.weight"].tensor_type == gguf.GGMLQuantizationType.F32
        restored = gguf.quants.dequantize(by_name["blk.0.ffn_down.weight"].data, qtype).reshape(src.shape)
        expected = (
            src.astype(np.float16).astype(np.float32)
            if qtype == gguf.GGMLQuantizationType.F16
            else (gguf.quants.dequantize(gguf.quants.quantize(src, qtype), qtype))
        )
        np.testing.assert_array_equal(restored, expected)
    assert f16.stat().st_size < 0.6 * tiny_gguf_f32.stat().st_size
    assert bf16.stat().st_size == f16.stat().st_size


def test_conversion_is_byte_identical(tiny_llama_dir: Path, tmp_path: Path):
    a = convert_hf_to_gguf(tiny_llama_dir, tmp_path / "a.gguf")
    b = convert_hf_to_gguf(tiny_llama_dir, tmp_path / "b.gguf")
    assert _sha(a) == _sha(b)


def test_bad_inputs_are_named(tmp_path: Path, tiny_llama_dir: Path):
    with pytest.raises(ConfigError, match="config.json is missing"):
        convert_hf_to_gguf(tmp_path, tmp_path / "x.gguf")
    with pytest.raises(ConversionError, match="unknown outtype 'q9'"):
        convert_hf_to_gguf(tiny_llama_dir, tmp_path / "x.gguf", "q9")
    # A checkpoint with a NaN: named tensor, and no half-written output.
    import shutil

    from safetensors.numpy import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama_dir, broken)
    tensors = load_file(broken / "model.safetensors")
    tensors["model.layers.1.mlp.up_proj.weight"][3, 4] = np.nan
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConversionError, match=r"model\.layers\.1\.mlp\.up_proj\.weight.*NaN"):
        convert_hf_to_gguf(broken, tmp_path / "broken.gguf")
    assert not list(tmp_path.glob("*broken.gguf*"))


def test_cli_convert(tiny_llama_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "cli.gguf"
    assert cli_main(["convert", str(tiny_llama_dir), str(out), "--outtype", "f32"]) == 0
    assert gguf.GGUFReader(out).fields["general.file_type"].contents() == int(gguf.LlamaFileType.ALL_F32)
    assert cli_main(["convert", str(tmp_path / "missing"), str(tmp_path / "y.gguf")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli_main(["convert", "--help"])
    assert exc.value.code == 0
    assert "--outtype" in capsys.readouterr().out


# ------------------------------------------------------------------ llama.cpp runtime agreement


def _special_text(model_dir: Path) -> str | None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if not tok.chat_template:
        return None
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there, 2+2?"}]
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _assert_same_tokens(model_dir: Path, gguf_path: Path) -> int:
    llm = load_llama(gguf_path, n_ctx=256)
    texts = list(SAMPLE_TEXTS)
    special = _special_text(model_dir)
    if special:
        texts.append(special)
    mismatches = []
    for text in texts:
        hf_ids, ll_ids = tokenize_both(model_dir, llm, text)
        if hf_ids != ll_ids:
            mismatches.append((text, hf_ids, ll_ids))
    assert not mismatches, mismatches
    return len(texts)


def test_llama_cpp_tokenizes_tiny_bpe_like_hf(llama_cpp, tiny_llama_dir: Path, tiny_gguf_f32: Path):
    assert _assert_same_tokens(tiny_llama_dir, tiny_gguf_f32) == len(SAMPLE_TEXTS) + 1


def test_llama_cpp_logprobs_match_tiny(llama_cpp, tiny_llama_dir: Path, tiny_gguf_f32: Path, tmp_path: Path):
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(tiny_llama_dir)(PROMPT)["input_ids"]
    assert len(ids) > 40
    # F32 weights and an F32 KV cache: only float reassociation is left (measured 1.6e-5).
    exact = logprob_agreement(tiny_llama_dir, tiny_gguf_f32, ids, kv_f32=True)
    assert exact.top1_agreement == 1.0 and exact.max_abs_diff < 1e-3, exact
    # llama.cpp's default F16 KV cache adds its own rounding (measured 0.007 here).
    f32 = logprob_agreement(tiny_llama_dir, tiny_gguf_f32, ids)
    assert f32.top1_agreement == 1.0 and f32.max_abs_diff < 0.05, f32
    f16 = logprob_agreement(tiny_llama_dir, convert_hf_to_gguf(tiny_llama_dir, tmp_path / "f16.gguf"), ids)
    assert f16.max_abs_diff < 0.05, f16
    print(f"tiny llama: F32+F32 KV {exact}, F32 {f32}, F16 {f16}")


def test_llama_cpp_untied_linear_rope(llama_cpp, tiny_untied_dir: Path, tmp_path: Path):
    from transformers import AutoTokenizer

    gguf_path = convert_hf_to_gguf(tiny_untied_dir, tmp_path / "untied.gguf", "f32")
    ids = AutoTokenizer.from_pretrained(tiny_untied_dir)(PROMPT)["input_ids"]
    res = logprob_agreement(tiny_untied_dir, gguf_path, ids, kv_f32=True)
    assert res.top1_agreement == 1.0 and res.max_abs_diff < 1e-3, res


def test_llama_cpp_sentencepiece_model(llama_cpp, tiny_spm_dir: Path, tmp_path: Path):
    from transformers import AutoTokenizer

    gguf_path = convert_hf_to_gguf(tiny_spm_dir, tmp_path / "spm.gguf", "f32")
    reader = gguf.GGUFReader(gguf_path)
    assert _field(reader, "tokenizer.ggml.model") == "llama"
    assert len(_field(reader, "tokenizer.ggml.scores")) == _field(reader, "llama.vocab_size")
    assert gguf.TokenType.BYTE in set(_field(reader, "tokenizer.ggml.token_type"))
    _assert_same_tokens(tiny_spm_dir, gguf_path)
    ids = AutoTokenizer.from_pretrained(tiny_spm_dir)(PROMPT)["input_ids"]
    res = logprob_agreement(tiny_spm_dir, gguf_path, ids, kv_f32=True)
    assert res.top1_agreement == 1.0 and res.max_abs_diff < 1e-3, res


@pytest.fixture(scope="module")
def smollm2_gguf_f32(smollm2_hf_dir: Path, tmp_path_factory) -> Path:
    return convert_hf_to_gguf(smollm2_hf_dir, tmp_path_factory.mktemp("smol") / "smollm2-f32.gguf", "f32")


@pytest.mark.slow
def test_smollm2_metadata(smollm2_gguf_f32: Path):
    reader = gguf.GGUFReader(smollm2_gguf_f32)
    assert _field(reader, "tokenizer.ggml.pre") == "smollm"
    assert "output.weight" not in {t.name for t in reader.tensors}
    assert _field(reader, "llama.attention.head_count_kv") == 3
    assert "<|im_start|>" in _field(reader, "tokenizer.chat_template")


@pytest.mark.slow
def test_smollm2_tokenization_matches_hf(llama_cpp, smollm2_hf_dir: Path, smollm2_gguf_f32: Path):
    _assert_same_tokens(smollm2_hf_dir, smollm2_gguf_f32)


@pytest.mark.slow
def test_smollm2_logprobs_match_transformers(llama_cpp, smollm2_hf_dir: Path, smollm2_gguf_f32: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_hf_dir)
    text = _special_text(smollm2_hf_dir) + "The capital of France is Paris. " + PROMPT
    ids = tok(text)["input_ids"]
    res = logprob_agreement(smollm2_hf_dir, smollm2_gguf_f32, ids)  # llama.cpp's default runtime
    exact = logprob_agreement(smollm2_hf_dir, smollm2_gguf_f32, ids, kv_f32=True)
    print(f"SmolLM2 F32: {res}; with F32 KV cache: {exact}")
    assert res.top1_agreement == 1.0 and res.max_abs_diff < 0.05, res
    assert exact.top1_agreement == 1.0 and exact.max_abs_diff < 0.01, exact


@pytest.mark.slow
def test_smollm2_f16_logprobs(llama_cpp, smollm2_hf_dir: Path, tmp_path: Path):
    from transformers import AutoTokenizer

    f16 = convert_hf_to_gguf(smollm2_hf_dir, tmp_path / "smollm2-f16.gguf")
    assert 270_000_000 < f16.stat().st_size < 272_000_000  # 134.5M params * 2 bytes + F32 norms + vocab
    ids = AutoTokenizer.from_pretrained(smollm2_hf_dir)(_special_text(smollm2_hf_dir) + PROMPT)["input_ids"]
    res = logprob_agreement(smollm2_hf_dir, f16, ids)
    print(f"SmolLM2 F16: {res}")
    assert res.top1_agreement >= 0.95 and res.max_abs_diff < 0.15, res  # measured 0.063


@pytest.mark.slow
def test_smollm2_reproduces_the_llama_cpp_converted_file(smollm2_gguf_f32: Path):
    """The package's GGUF was made by llama.cpp's converter (then Q4_1). Acquire (transformers
    dequantizes and un-permutes) + our converter must give back the same tensor values, and the
    same tokenizer metadata: vocabulary, merges, token types, special ids, pre-type, template."""
    from pocketquant.models import embedded_gguf_path

    ref = gguf.GGUFReader(embedded_gguf_path())
    ours = gguf.GGUFReader(smollm2_gguf_f32)
    # The package's file comes from an older llama.cpp converter, which also wrote
    # add_space_prefix=false for BPE vocabularies; the pinned one (our oracle) does not, and false
    # is llama.cpp's default for BPE anyway.
    older_converter_only = {"tokenizer.ggml.add_space_prefix"}
    for key in ref.fields:
        if key.startswith("tokenizer.") and key not in older_converter_only:
            assert _field(ours, key) == _field(ref, key), key
    ref_tensors = {t.name: t for t in ref.tensors}
    our_tensors = {t.name: t for t in ours.tensors}
    assert set(ref_tensors) == set(our_tensors)
    for name, t in ref_tensors.items():
        mine = np.asarray(our_tensors[name].data)
        restored = gguf.quants.dequantize(t.data, t.tensor_type).reshape(mine.shape)
        np.testing.assert_array_equal(restored, mine, err_msg=name)  # q/k permutation included


def test_unsupported_tokenizer_and_rope_are_named(tiny_llama_dir: Path, tmp_path: Path):
    import shutil

    odd_tok = tmp_path / "odd-tokenizer"
    shutil.copytree(tiny_llama_dir, odd_tok)
    tok_json = json.loads((odd_tok / "tokenizer.json").read_text())
    tok_json["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Punctuation", "behavior": "Isolated"},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        ],
    }
    (odd_tok / "tokenizer.json").write_text(json.dumps(tok_json))
    with pytest.raises(ConversionError, match=r"BPE pre-tokenizer not recognized.*Punctuation"):
        convert_hf_to_gguf(odd_tok, tmp_path / "odd.gguf")

    dynamic = tmp_path / "dynamic"
    shutil.copytree(tiny_llama_dir, dynamic)
    config = json.loads((dynamic / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "dynamic", "factor": 4.0, "rope_theta": 10000.0}
    (dynamic / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match=r"config\.json.*'dynamic'.*convert\.backend=llamacpp"):
        convert_hf_to_gguf(dynamic, tmp_path / "dynamic.gguf")
    assert not list(tmp_path.glob("*.gguf*"))
