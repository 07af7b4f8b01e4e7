"""docs/phone.md uses the file and model names the package stage produces for the default run."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import yaml

from pocketquant.package.build import package_stem, slug

ROOT = Path(__file__).resolve().parents[2]


def _default_stem() -> str:
    """What stages/package.py names the default run's package: <model.name>-<variant label>."""
    spec = importlib.util.spec_from_file_location("stage_common", ROOT / "stages" / "common.py")
    assert spec is not None and spec.loader is not None
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    model, scheme = params["model"]["name"], common.variant_label(params["quant"])
    stem = f"{slug(model)}-{slug(scheme)}"  # the zip's stem in stages/package.py
    assert stem == package_stem(model, scheme)  # the GGUF's and the Ollama model's (build_package)
    return stem


def test_phone_doc_names_are_the_default_packages():
    stem = _default_stem()
    doc = (ROOT / "docs" / "phone.md").read_text(encoding="utf-8")
    for needle in (
        f"artifacts/package/{stem}.zip",
        f"unzip ~/storage/downloads/{stem}.zip",
        f"llama-cli -m {stem}.gguf",
        f"FROM ./{stem}.gguf",
        f"ollama create {stem} -f Modelfile",
        f"ollama run {stem}\n",
    ):
        assert needle in doc, needle
    # no other name for the default package anywhere (the "without the pipeline" example aside)
    example = "mymodel-q4_k_m"
    assert set(re.findall(r"[\w.-]+\.zip", doc)) <= {f"{stem}.zip", f"{example}.zip"}
    assert set(re.findall(r"[\w.-]+\.gguf", doc)) <= {
        f"{stem}.gguf",
        f"{example}.gguf",
        "model-q4_k_m.gguf",
        "variant.gguf",
    }
    assert set(re.findall(r"ollama (?:create|run) ([\w.:-]+)", doc)) <= {stem, example}


def test_readme_names_the_default_package():
    stem = _default_stem()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"pocketquant verify artifacts/package/{stem}.zip" in readme
    assert f"ollama create {stem} -f Modelfile" in readme
    assert "PACKAGE.zip" not in readme
