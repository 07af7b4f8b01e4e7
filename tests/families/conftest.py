"""Fixtures of the per-family tests: the tiny checkpoint of every family, built once per session,
converted once by us and once by llama.cpp's own converter (the oracle; one process for all)."""

from __future__ import annotations

from pathlib import Path

import pytest
from family_cases import FAMILIES, INPUT_CASES, OUTTYPES, reshard

from pocketquant.testing.tiny_models import TINY_FAMILIES, build_tiny_model


@pytest.fixture(scope="session")
def llama_cpp():
    """The llama.cpp runtime; CI always has it (skip only where it is truly not installed)."""
    return pytest.importorskip("llama_cpp")


@pytest.fixture(scope="session")
def converter_installed() -> Path:
    """llama.cpp's converter as scripts/setup.sh installs it (the oracle)."""
    from pocketquant.convert.errors import ConversionError
    from pocketquant.convert.llamacpp import converter_dir

    try:
        return converter_dir()
    except ConversionError as exc:
        pytest.fail(f"{exc} (scripts/setup.sh installs it; CI runs setup first)")


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory) -> dict[str, Path]:
    """family -> its tiny HF checkpoint (float32 weights)."""
    root = tmp_path_factory.mktemp("families")
    return {family: build_tiny_model(root / family, family) for family in FAMILIES}


@pytest.fixture(scope="session")
def input_case_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    dirs = {}
    for case, (family, dtype, sharded, _) in INPUT_CASES.items():
        path = build_tiny_model(root / (case + "-one"), family, dtype=dtype, seed=3)
        dirs[case] = reshard(path, root / case) if sharded else path
    return dirs


@pytest.fixture(scope="session")
def oracle_ggufs(
    family_dirs, input_case_dirs, converter_installed, tmp_path_factory
) -> dict[tuple[str, str], Path]:
    """(family or input case, outtype) -> llama.cpp's conversion, all in one converter process.
    A tiny vocabulary is not in llama.cpp's hash table of known vocabularies: the converter is told
    the pre-tokenizer the tiny tokenizer was built to mimic (TinyFamily.pre)."""
    from pocketquant.convert.llamacpp import LlamaCppJob, run_converter

    root = tmp_path_factory.mktemp("oracle")
    jobs, out = [], {}
    cases = [(f, family_dirs[f], f, OUTTYPES) for f in FAMILIES]
    cases += [(c, input_case_dirs[c], INPUT_CASES[c][0], INPUT_CASES[c][3]) for c in INPUT_CASES]
    for case, model_dir, family, outtypes in cases:
        for outtype in outtypes:
            out[case, outtype] = root / f"{case}-{outtype}.gguf"
            pre = TINY_FAMILIES[family].pre
            jobs.append(LlamaCppJob(str(model_dir), str(out[case, outtype]), outtype, None, pre))
    run_converter(jobs, timeout=1200)
    return out


@pytest.fixture(scope="session")
def our_ggufs(family_dirs, input_case_dirs, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """(family or input case, outtype) -> our conversion."""
    from pocketquant.convert import convert_hf_to_gguf

    root = tmp_path_factory.mktemp("ours")
    out = {}
    for family in FAMILIES:
        for outtype in OUTTYPES:
            out[family, outtype] = convert_hf_to_gguf(
                family_dirs[family], root / f"{family}-{outtype}.gguf", outtype, progress=False
            )
    for case, (_, _, _, outtypes) in INPUT_CASES.items():
        for outtype in outtypes:
            out[case, outtype] = convert_hf_to_gguf(
                input_case_dirs[case], root / f"{case}-{outtype}.gguf", outtype, progress=False
            )
    return out
