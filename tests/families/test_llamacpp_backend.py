"""`convert.backend`: llama.cpp's converter (installed by scripts/setup.sh) gives the same GGUF as
ours on every native family, converts an architecture we do not (GPT-2), and an unknown
architecture under the native backend is refused naming it and the backend to use."""

from __future__ import annotations

import pytest
from family_cases import FAMILIES, IGNORED_KVS

from pocketquant.cli import main as cli_main
from pocketquant.convert import ConversionError, convert_hf_to_gguf
from pocketquant.convert.llamacpp import (
    ENV_VAR,
    LlamaCppJob,
    convert_with_llamacpp,
    fallback_pre_tokenizer,
    run_converter,
)
from pocketquant.errors import PocketquantError
from pocketquant.gguf_file import GGUFFile
from pocketquant.testing.gguf_compare import differences
from pocketquant.testing.tiny_models import TINY_FAMILIES, build_tiny_gpt2


@pytest.fixture(scope="module")
def backend_ggufs(family_dirs, converter_installed, tmp_path_factory):
    """Every family through the llamacpp backend as it runs in production: a tiny vocabulary's
    pre-tokenizer is the one our converter reads from its structure (no hint from the builder)."""
    root = tmp_path_factory.mktemp("backend")
    jobs = [
        LlamaCppJob(
            str(family_dirs[f]), str(root / f"{f}.gguf"), "f16", None, fallback_pre_tokenizer(family_dirs[f])
        )
        for f in FAMILIES
    ]
    run_converter(jobs, timeout=900)
    return {f: root / f"{f}.gguf" for f in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_both_backends_give_the_same_gguf(family, family_dirs, backend_ggufs, our_ggufs):
    # our structural reading finds the pre-tokenizer the tiny BPE vocabulary mimics (None: SentencePiece)
    assert fallback_pre_tokenizer(family_dirs[family]) == TINY_FAMILIES[family].pre
    diff = differences(our_ggufs[family, "f16"], backend_ggufs[family], ignore=IGNORED_KVS)
    assert diff == [], "\n".join(diff)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return build_tiny_gpt2(tmp_path_factory.mktemp("gpt2") / "hf")


def test_unknown_architecture_native_names_it_and_the_backend(gpt2_dir, tmp_path, capsys):
    with pytest.raises(PocketquantError, match=r"GPT2LMHeadModel.*convert\.backend=llamacpp"):
        convert_hf_to_gguf(gpt2_dir, tmp_path / "x.gguf")
    assert cli_main(["convert", str(gpt2_dir), str(tmp_path / "y.gguf")]) == 2
    err = capsys.readouterr().err
    assert (
        "GPT2LMHeadModel" in err and "convert.backend=llamacpp" in err and len(err.strip().splitlines()) == 1
    )
    assert list(tmp_path.iterdir()) == []


def test_llamacpp_backend_converts_another_architecture(
    gpt2_dir, tmp_path, capsys, llama_cpp, converter_installed
):
    from transformers import AutoTokenizer

    from pocketquant.convert.check import SAMPLE_TEXTS, load_llama, logprob_agreement, tokenize_both

    out = tmp_path / "gpt2.gguf"
    assert cli_main(["convert", str(gpt2_dir), str(out), "--backend", "llamacpp", "--outtype", "f32"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt2.gguf"]  # no temp file left
    with GGUFFile(out) as f:
        assert f.get("general.architecture") == "gpt2" and f.get("tokenizer.ggml.pre") == "gpt-2"
    llm = load_llama(out)
    assert all(a == b for a, b in (tokenize_both(gpt2_dir, llm, t) for t in SAMPLE_TEXTS))
    ids = AutoTokenizer.from_pretrained(gpt2_dir)("The quick brown fox jumps over the lazy dog 123.")[
        "input_ids"
    ]
    agree = logprob_agreement(gpt2_dir, out, ids, llm=None, kv_f32=True)
    assert agree.top1_agreement == 1.0 and agree.max_abs_diff < 0.02, agree  # measured 0.007 (GeLU table)


def test_backend_failures_are_one_line_errors(
    gpt2_dir, family_dirs, tmp_path, monkeypatch, converter_installed
):
    with pytest.raises(ConversionError, match="unknown outtype 'q4'"):
        convert_with_llamacpp(gpt2_dir, tmp_path / "x.gguf", "q4")
    # llama.cpp's converter refusing a checkpoint: its last message, and no output left
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(
        '{"architectures": ["NoSuchModelForCausalLM"], "model_type": "nosuch"}'
    )
    (broken / "model.safetensors").write_bytes(b"")
    (broken / "tokenizer.json").write_text("{}")
    with pytest.raises(ConversionError, match=r"llama\.cpp's converter failed converting .*broken"):
        convert_with_llamacpp(broken, tmp_path / "broken.gguf")
    assert not list(tmp_path.glob("*.gguf*")) and not list(tmp_path.glob(".*tmp"))
    # not installed: says how to install it
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(ConversionError, match=r"not installed at .*nowhere.*scripts/setup\.sh"):
        convert_with_llamacpp(family_dirs["gemma"], tmp_path / "g.gguf")


def test_acquire_takes_any_architecture_for_the_llamacpp_backend(gpt2_dir, tmp_path):
    """The pipeline's acquire stage refuses an architecture without a native family unless
    convert.backend=llamacpp (stages/acquire.py passes any_architecture)."""
    from pocketquant.models import ModelSource, acquire_model

    source = ModelSource.from_config(path=gpt2_dir)
    with pytest.raises(
        PocketquantError, match=r"unsupported architecture GPT2LMHeadModel.*convert\.backend=llamacpp"
    ):
        acquire_model(source, tmp_path / "refused")
    out = acquire_model(source, tmp_path / "hf", any_architecture=True)
    assert (out / "model.safetensors").read_bytes() == (gpt2_dir / "model.safetensors").read_bytes()
    assert not (tmp_path / "refused").exists()
