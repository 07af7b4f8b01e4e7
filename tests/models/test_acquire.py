"""Stage acquire: embedded GGUF -> float32 HF checkpoint, local directories, hub ids offline."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pocketquant.errors import ConfigError
from pocketquant.models import ModelSource, acquire_model, embedded_gguf_path
from pocketquant.testing.tiny_models import build_tiny_llama


def _digests(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()
    }


def _greedy(model_dir: Path, prompt_ids: list[int], n: int = 8) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False)
    return out[0, len(prompt_ids) :].tolist()


def test_embedded_gguf_is_found_in_the_package():
    path = embedded_gguf_path("smollm2-135m")
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "site-packages" in str(path) or "dist-packages" in str(path)


@pytest.mark.slow
def test_embedded_acquire_loads_and_generates(smollm2_hf_dir: Path):
    from safetensors import safe_open
    from transformers import AutoTokenizer

    names = {p.name for p in smollm2_hf_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= names
    with safe_open(smollm2_hf_dir / "model.safetensors", framework="pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        n_params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    assert dtypes == {"F32"}
    assert 130e6 < n_params < 140e6  # SmolLM2-135M, tied embeddings stored once
    config = json.loads((smollm2_hf_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["num_key_value_heads"] == 3 and config["num_attention_heads"] == 9

    tok = AutoTokenizer.from_pretrained(smollm2_hf_dir)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    prompt = tok(text)["input_ids"]
    first = _greedy(smollm2_hf_dir, prompt)
    assert first == _greedy(smollm2_hf_dir, prompt)  # greedy decoding is deterministic
    text = tok.decode(first, skip_special_tokens=True)
    assert "Paris" in text, text  # a dequantized model that still answers sensibly


@pytest.mark.slow
def test_embedded_tokenizer_matches_smollm2_rules(smollm2_hf_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_hf_dir)
    # SmolLM2 splits every digit (its 'smollm' pre-tokenizer); special tokens are single ids.
    assert len(tok.encode("12345", add_special_tokens=False)) == 5
    assert tok.encode("<|im_start|>", add_special_tokens=False) == [tok.convert_tokens_to_ids("<|im_start|>")]
    assert tok.encode("hi", add_special_tokens=True) == tok.encode("hi", add_special_tokens=False)  # no BOS


@pytest.mark.slow
def test_embedded_acquire_is_byte_identical_on_rerun(smollm2_hf_dir: Path, tmp_path: Path):
    again = acquire_model(ModelSource.from_config(name="smollm2-135m"), tmp_path / "again")
    assert _digests(again) == _digests(smollm2_hf_dir)


def test_tiny_builder_is_deterministic(tmp_path: Path, tiny_llama_dir: Path):
    again = build_tiny_llama(tmp_path / "tiny")
    assert _digests(again) == _digests(tiny_llama_dir)


def test_local_acquire_copies_and_loads(tiny_llama_dir: Path, tmp_path: Path):
    from transformers import AutoTokenizer

    out = acquire_model(ModelSource.from_config(path=tiny_llama_dir), tmp_path / "acquired")
    assert _digests(out) == _digests(tiny_llama_dir)
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok("The quick brown fox")["input_ids"]
    assert ids[0] == tok.bos_token_id
    gen = _greedy(out, ids, n=5)
    assert len(gen) == 5 and gen == _greedy(out, ids, n=5)


def test_local_acquire_without_config_names_the_problem(tmp_path: Path):
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"not-a-model.*config\.json is missing"):
        acquire_model(ModelSource.from_config(path=bad), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp leftovers


def test_local_acquire_missing_directory(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        acquire_model(ModelSource.from_config(path=tmp_path / "nowhere"), tmp_path / "out")


def test_local_acquire_unsupported_architecture(tmp_path: Path):
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100)).save_pretrained(gpt2)
    with pytest.raises(ConfigError, match=r"gpt2.*unsupported architecture GPT2LMHeadModel"):
        acquire_model(ModelSource.from_config(path=gpt2), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_model_source_rules():
    assert ModelSource.from_config() == ModelSource("embedded", "smollm2-135m")
    assert ModelSource.from_config(name="smollm2-135m", path="/x").kind == "path"
    with pytest.raises(ConfigError, match="both set"):
        ModelSource.from_config(path="/x", hf_id="a/b")
    with pytest.raises(ConfigError, match="unknown embedded model 'nope'.*model.path"):
        ModelSource.from_config(name="nope")


_HUB_SCRIPT = """
import sys
from pocketquant.errors import ConfigError
from pocketquant.models import ModelSource, acquire_model
try:
    acquire_model(ModelSource.from_config(hf_id="meta-llama/Llama-3.2-3B-Instruct"), sys.argv[1])
except ConfigError as exc:
    print(exc)
    sys.exit(3)
"""


@pytest.mark.parametrize(
    "env",
    [
        {"HF_HUB_OFFLINE": "1"},  # explicit offline mode
        {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"},  # the network just fails
    ],
    ids=["offline-mode", "connection-refused"],
)
def test_hub_id_offline_gives_a_helpful_error(tmp_path: Path, env: dict[str, str]):
    full_env = {
        **os.environ,
        **env,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_ETAG_TIMEOUT": "3",
        "HF_HUB_DOWNLOAD_TIMEOUT": "3",
    }
    proc = subprocess.run(
        [sys.executable, "-c", _HUB_SCRIPT, str(tmp_path / "out")],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    message = proc.stdout
    assert "cannot reach the Hugging Face hub" in message
    assert "meta-llama/Llama-3.2-3B-Instruct" in message
    assert "model.path=" in message
    assert not (tmp_path / "out").exists()
