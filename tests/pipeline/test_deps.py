"""dvc.yaml's code dependencies are each stage's import closure (pocketquant.pipeline_deps): a stage
whose code changed can never be called up to date. Seconds; no DVC run."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from pocketquant.pipeline_deps import ImportGraph, code_deps, missing_deps, stage_script, write_deps

REPO = Path(__file__).resolve().parents[2]


def test_dvc_yaml_lists_every_module_each_stage_imports() -> None:
    missing = missing_deps(REPO)
    assert not missing, (
        "dvc.yaml misses code deps (run `python -m pocketquant.pipeline_deps --write`):\n"
        + "\n".join(f"  {stage}: {', '.join(paths)}" for stage, paths in missing.items())
    )


def test_dvc_yaml_deps_are_exactly_the_generated_ones(tmp_path: Path) -> None:
    """--write on the committed dvc.yaml changes nothing: no hand-kept extra code deps either."""
    copy = tmp_path / "dvc.yaml"
    copy.write_bytes((REPO / "dvc.yaml").read_bytes())
    assert not write_deps(REPO, copy), "dvc.yaml is stale: `python -m pocketquant.pipeline_deps --write`"


def test_every_stage_runs_a_script_whose_closure_is_found() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    deps = code_deps(REPO, stages)
    assert set(deps) == set(stages), f"stages without a `python stages/X.py` cmd: {set(stages) - set(deps)}"
    for name, paths in deps.items():
        assert paths[0] == stage_script(stages[name]["cmd"])
        assert "stages/common.py" in paths and "pocketquant/__init__.py" in paths
    # what the issue found missing by hand
    assert "pocketquant/gguf_file.py" in deps["package"]
    assert "pocketquant/evaluate/metrics.py" in deps["report"]
    assert {"pocketquant/evaluate/chunks.py", "pocketquant/evaluate/corpus.py"} <= set(deps["calibrate"])
    assert "kernels" in deps["quantize"] and "pocketquant/data/default_corpus.txt" in deps["reference"]


def test_removing_one_import_from_dvc_yaml_is_caught(tmp_path: Path) -> None:
    stages_yaml = (REPO / "dvc.yaml").read_text(encoding="utf-8")
    doc = yaml.safe_load(stages_yaml)
    doc["stages"]["package"]["deps"].remove("pocketquant/gguf_file.py")
    broken = tmp_path / "dvc.yaml"
    broken.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    assert missing_deps(REPO, broken) == {"package": ["pocketquant/gguf_file.py"]}
    # --write puts it back
    write_deps(REPO, broken)
    assert missing_deps(REPO, broken) == {}
    assert "pocketquant/gguf_file.py" in yaml.safe_load(broken.read_text())["stages"]["package"]["deps"]


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_closure_rules(tmp_path: Path) -> None:
    """Lazy and relative imports count, TYPE_CHECKING imports do not, parent packages' __init__
    run, the compiled kernel stands for kernels/, named package data counts."""
    write(
        tmp_path,
        {
            "stages/s.py": """
                from common import helper
                def main():
                    from pocketquant.a import f  # lazy: still a dependency
            """,
            "stages/common.py": "import yaml\nimport pocketquant.errors\n",
            "pocketquant/__init__.py": "",
            "pocketquant/errors.py": "",
            "pocketquant/unused.py": "",
            "pocketquant/a/__init__.py": "",
            "pocketquant/a/f.py": """
                from typing import TYPE_CHECKING
                from ..b import g
                from . import h
                if TYPE_CHECKING:
                    from pocketquant.unused import X
                CORPUS = "corpus.txt"
            """,
            "pocketquant/a/h.py": "from pocketquant import _quants\n",
            "pocketquant/b.py": "g = 1\n",
            "pocketquant/data/corpus.txt": "text",
            "pocketquant/data/other.txt": "text",
            "kernels/quants.pyx": "",
        },
    )
    got = ImportGraph(tmp_path).closure("stages/s.py")
    assert got == {
        "stages/s.py",
        "stages/common.py",
        "pocketquant/__init__.py",
        "pocketquant/errors.py",
        "pocketquant/a/__init__.py",
        "pocketquant/a/f.py",
        "pocketquant/a/h.py",
        "pocketquant/b.py",
        "kernels",
        "pocketquant/data/corpus.txt",
    }
    stages = {"s": {"cmd": "python stages/s.py --out x", "deps": ["artifacts/in"]}}
    # pocketquant/a is wholly imported: one directory dependency
    assert code_deps(tmp_path, stages)["s"][:3] == ["stages/s.py", "kernels", "pocketquant/__init__.py"]
    assert "pocketquant/a" in code_deps(tmp_path, stages)["s"]
