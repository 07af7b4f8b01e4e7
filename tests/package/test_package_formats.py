"""Packages of GGUFs whose own chat template is of another format, or that have none (a base model
such as Phi-2): built, then checked by `pocketquant verify` with llama.cpp loading the model (the
embedded SmolLM2 weights with the template swapped in the GGUF metadata)."""

from __future__ import annotations

import json
import zipfile

import pytest
from chat_testlib import TEMPLATES
from package_testlib import build_kwargs

from pocketquant.gguf_file import KV
from pocketquant.package import build_package, verify_package
from pocketquant.package.chat_formats import CHAT_FORMATS
from pocketquant.package.chat_template import render_jinja_runtime
from pocketquant.package.modelfile import parse_modelfile
from pocketquant.package.verify import PROMPT
from pocketquant.testing.gguf_edit import copy_with_metadata

CASES = {case.file: case for case in TEMPLATES}
# evaluate's nested layout (metrics/variant.json), with error bars as `<key>_stderr`
VARIANT_METRICS = {
    "quality": {"ppl": 13.9498, "ppl_stderr": 0.4123, "ppl_base": 12.9968, "delta_ppl_pct": 7.33302,
                "kld_mean": 0.05354, "kld_p99": 0.225687, "top1_agreement_pct": 88.9216,
                "engine": "llama.cpp", "corpus": "default", "n_ctx": 512, "tokens_scored": 1020},
    "size": {"bytes": 105453984, "gib": 0.0982117, "bpw": 6.27166, "reduction_vs_bf16_pct": 60.8021},
    "speed": {"pp_tokens_per_s": 217.871, "tg_tokens_per_s": 36.0953, "threads": 2},
    "variant": "q4_k_m",
}  # fmt: skip


def _read(zip_path):  # noqa: ANN001, ANN202
    with zipfile.ZipFile(zip_path) as zf:
        return (
            json.loads(zf.read("manifest.json")),
            parse_modelfile(zf.read("Modelfile").decode()),
            zf.read("README.md").decode(),
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("template", "stops", "left_out"),
    [
        ("google-gemma-3-1b-it", ["<|im_end|>"], ["<start_of_turn>", "<end_of_turn>"]),
        ("mistralai-Mistral-7B-Instruct-v0.3", ["<|im_end|>"], ["[INST]", "[/INST]"]),
        ("Qwen-Qwen3-0.6B", ["<|im_start|>", "<|im_end|>"], []),
    ],
)
def test_other_chat_formats_package_and_verify(smollm2_gguf, tmp_path, template, stops, left_out):
    pytest.importorskip("llama_cpp")
    case = CASES[template]
    gguf = copy_with_metadata(
        smollm2_gguf, tmp_path / "m.gguf", set_kv={"tokenizer.chat_template": KV.string(case.source)}
    )
    out = build_package(gguf, tmp_path / "m-q4_k_m.zip", **build_kwargs(model_name="m", scheme="q4_k_m"))
    manifest, modelfile, readme = _read(out)
    assert manifest["modelfile"]["template_family"] == case.family
    assert manifest["modelfile"]["system"] == case.system
    # only end-of-turn tokens that are single tokens of this vocabulary (SmolLM2's) are stops
    assert modelfile.parameters["stop"] == stops
    assert manifest["modelfile"]["stops_left_out"] == left_out
    result = verify_package(out, progress=False)  # loads the GGUF, checks TEMPLATE against it, generates
    assert any("matches the chat template" in c for c in result.checks)
    # SmolLM2's GGUF says add_bos_token=false: a template's own BOS stays in the prompt
    assert result.prompt == render_jinja_runtime(
        case.source, PROMPT, bos_token="<|im_start|>", eos_token="<|im_end|>", add_bos=False
    )
    assert result.n_generated > 0
    title = next(spec.title for spec in CHAT_FORMATS if spec.name == case.family)
    assert f"Chat format: {title}; a system prompt is " in readme


@pytest.mark.slow
def test_base_model_without_chat_template_is_packaged(smollm2_gguf, tmp_path):
    pytest.importorskip("llama_cpp")
    gguf = copy_with_metadata(smollm2_gguf, tmp_path / "base.gguf", drop=["tokenizer.chat_template"])
    out = build_package(
        gguf,
        tmp_path / "phi-2-q4_k_m.zip",
        **build_kwargs(model_name="phi-2", scheme="q4_k_m", metrics=VARIANT_METRICS),
    )
    manifest, modelfile, readme = _read(out)
    assert modelfile.template == "{{ .Prompt }}"
    assert modelfile.parameters["stop"] == ["<|im_end|>"]  # the EOS token only
    assert manifest["modelfile"]["template_kind"] == "completion"
    assert manifest["modelfile"]["template_source"] == "none" and manifest["warnings"] == []
    assert "**This is a base model without a chat format**" in readme
    assert 'llama-cli -m phi-2-q4_k_m.gguf -c 1024 -no-cnv -n 128 -p "Once upon a time"' in readme
    assert 'ollama run phi-2-q4_k_m "Once upon a time"' in readme
    # the real measurements, with their error bars
    for row in (
        "| size | 105,453,984 bytes (0.098 GiB, 0.105 GB) |",
        "| bits per weight | 6.27 |",
        "| smaller than BF16 by | 60.8% |",
        "| perplexity | 13.950 ± 0.412 (base 12.997, +7.33%) |",
        "| KL divergence from the base model | mean 0.0535, p99 0.2257 |",
        "| same top-1 token as the base model | 88.9% |",
        "| speed on the machine that built it | prompt 217.9 tokens/s, generation 36.1 tokens/s, 2 threads |",
        "Quality measured with llama.cpp, on the default corpus, n_ctx 512, 1,020 tokens scored.",
    ):
        assert row in readme
    assert manifest["measured"]["ppl_stderr"] == 0.4123
    result = verify_package(out, progress=False)
    assert result.prompt == "Name three colors." and result.n_generated > 0
