"""Every family's GGUF equals llama.cpp's converter output: KV by KV (type and bytes) and tensor by
tensor (name, type, shape, bytes), at f32, f16 and bf16, and for F16/BF16 weights and sharded
checkpoints. The only KVs left out are listed in IGNORED_KVS with the reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from family_cases import FAMILIES, IGNORED_KVS, INPUT_CASES, OUTTYPES

from pocketquant.convert.families import native_architectures, registry
from pocketquant.convert.pre_hashes import PRE_TOKENIZER_HASHES
from pocketquant.gguf_file import GGUFFile
from pocketquant.models.checkpoint import supported_architectures
from pocketquant.testing.gguf_compare import differences
from pocketquant.testing.tiny_models import TINY_FAMILIES


@pytest.mark.parametrize("outtype", OUTTYPES)
@pytest.mark.parametrize("family", FAMILIES)
def test_gguf_equals_llama_cpp_converter(family, outtype, our_ggufs, oracle_ggufs):
    diff = differences(our_ggufs[family, outtype], oracle_ggufs[family, outtype], ignore=IGNORED_KVS)
    assert diff == [], "\n".join(diff)
    with GGUFFile(our_ggufs[family, outtype]) as f:  # the comparison covered real content
        assert len(f.tensors) >= 2 * 7 and f.get("tokenizer.ggml.model") in ("gpt2", "llama")


@pytest.mark.parametrize("case", list(INPUT_CASES))
def test_f16_bf16_and_sharded_checkpoints_equal_llama_cpp(case, our_ggufs, oracle_ggufs, input_case_dirs):
    for outtype in INPUT_CASES[case][3]:
        diff = differences(our_ggufs[case, outtype], oracle_ggufs[case, outtype], ignore=IGNORED_KVS)
        assert diff == [], f"{case} {outtype}:\n" + "\n".join(diff)
    if INPUT_CASES[case][2]:
        assert len(list(input_case_dirs[case].glob("model-*.safetensors"))) == 2


def test_every_native_architecture_has_a_tiny_model_and_is_supported():
    archs = native_architectures()
    assert set(archs) == set(registry()) == set(supported_architectures())
    tiny = {spec.architecture for spec in TINY_FAMILIES.values()}
    # Olmo3 shares OLMo 2's module; everything else is built and compared above
    assert set(archs) - tiny == {"Olmo3ForCausalLM"}, set(archs) - tiny
    assert {"Qwen2ForCausalLM", "Gemma3ForCausalLM", "Phi3ForCausalLM", "GraniteForCausalLM"} <= set(archs)


def test_pre_tokenizer_table_is_llama_cpp_s(converter_installed: Path):
    """Our copy of llama.cpp's vocabulary-hash table equals the installed converter's (later
    entries of a hash win there, as in its chain of `if` statements)."""
    source = (converter_installed / "conversion" / "base.py").read_text(encoding="utf-8")
    body = source[source.index("def get_vocab_base_pre") : source.index("# Marker: End get_vocab_base_pre")]
    table: dict[str, str] = {}
    for digest, name in re.findall(
        r'if chkhsh == "([0-9a-f]{64})":\s*\n(?:\s*#.*\n)*\s*res = "([^"]+)"', body
    ):
        table[digest] = name
    assert len(table) > 80 and table == PRE_TOKENIZER_HASHES


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_checkpoints_are_byte_identical_on_rebuild(family, family_dirs, tmp_path):
    from pocketquant.testing.tiny_models import build_tiny_model

    again = build_tiny_model(tmp_path / family, family)
    first = family_dirs[family]
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in first.iterdir())
    for path in first.iterdir():
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name
