"""Reproducible by construction, end to end with real DVC, git, models and llama.cpp (eval=smoke).

The committed baseline run of conftest.py (a clone ran `dvc repro` and committed dvc.lock + metrics,
as the lead does) is pushed to a shared local remote with the run-cache. Then:
- a fresh clone with an empty cache recomputes every stage whose inputs reproduce and ends with
  `git status --porcelain` empty: dvc.lock, metrics and the package zip byte-identical;
- a second environment (its own venv: the locked distributions, pocketquant from its own clone)
  in another clone runs `dvc repro --pull` against the shared remote and runs no stage;
- every params key a stage script reads is listed under that stage's `params:`;
- a bad config fails in check_params, before DVC removes any output.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pocketquant.params_trace import covered_by
from pocketquant.pipeline_deps import stage_script

from .conftest import Baseline
from .dvcrepo import REPO, cached_outputs, clone, dvc, git, md5, run

pytestmark = pytest.mark.slow
pytest.importorskip("dvc")
pytest.importorskip("llama_cpp", reason="llama-cpp-python measures the GGUF variants")

# Stages a fresh clone of a committed run recomputes: their outputs are DVC-cached (not in git),
# their inputs reproduce bit for bit. The evaluation stages' outputs (metrics, generations,
# summary) are in git and their inputs unchanged, so DVC keeps them.
RECOMPUTED = {"check_params", "acquire", "convert", "calibrate", "quantize", "reference", "package"}


@dataclass
class Committed:
    root: Path
    repo: Path  # a clone of the committed baseline run (conftest.py), outputs checked out, pushed
    remote: Path  # the shared remote it pushed to, with the run-cache
    trace: Path  # params keys read by each stage script in the baseline run


@pytest.fixture(scope="module")
def committed(baseline: Baseline) -> Committed:
    root = baseline.root / "repro"
    root.mkdir()
    # the baseline commit, its outputs linked from the baseline's cache (nothing recomputed)
    repo = clone(baseline.repo, root / "a", baseline.cache, root / "remote")
    assert git(repo, "rev-parse", "HEAD").out == git(baseline.repo, "rev-parse", baseline.tag).out
    dvc(repo, "checkout")
    assert "up to date" in dvc(repo, "status").out
    dvc(repo, "push", "--run-cache")
    return Committed(root, repo, root / "remote", baseline.trace)


def test_a_stage_reads_only_the_params_it_lists(committed: Committed) -> None:
    stages = yaml.safe_load((committed.repo / "dvc.yaml").read_text())["stages"]
    records = [json.loads(p.read_text()) for p in sorted(committed.trace.glob("*.json"))]
    matched = set()
    for rec in records:
        argv = rec["argv"]
        # the stage whose cmd runs this script with these (uninterpolated) arguments
        (name,) = [
            n
            for n, s in stages.items()
            if stage_script(s["cmd"]) == argv[0]
            and all(a in s["cmd"].split() for a in argv[1:] if "/" in a or a.startswith("--"))
        ]
        matched.add(name)
        listed = [str(k) for k in stages[name].get("params", [])]
        unlisted = [k for k in rec["reads"] if not covered_by(k, listed)]
        assert not unlisted, f"stage {name} reads params it does not list in dvc.yaml: {unlisted}"
    readers = {
        n
        for n, s in stages.items()
        if "load_params(" in (committed.repo / stage_script(s["cmd"])).read_text()
    }
    assert matched == readers, f"no trace from {readers - matched}"


def test_fresh_clone_reproduces_dvc_lock_metrics_and_package(committed: Committed) -> None:
    fresh = clone(
        committed.repo, committed.root / "fresh", committed.root / "cache-fresh", committed.root / "none"
    )
    r = dvc(fresh, "repro", timeout=1500)
    assert r.ran == RECOMPUTED, f"ran {sorted(r.ran)}"
    config = json.loads((fresh / "artifacts/base/hf/config.json").read_text())
    assert "transformers_version" not in config and "dtype" in config
    status = git(fresh, "status", "--porcelain").out
    assert status == "", f"a fresh clone's `dvc repro` changed tracked files:\n{status}"
    assert "up to date" in dvc(fresh, "status").out
    for src in cached_outputs(committed.repo):  # the package zip among them
        assert md5(fresh / src.relative_to(committed.repo)) == md5(src), src
    manifest = json.loads(
        subprocess.run(
            ["unzip", "-p", str(next((fresh / "artifacts/package").glob("*.zip"))), "manifest.json"],
            capture_output=True,
            check=True,
        ).stdout
    )
    code = manifest["provenance"]["code"]
    assert code["dirty"] is False and manifest["git_commit"] == code["commit"]
    # the commit of the package stage's code, which both clones agree on; not HEAD ("results")
    assert code["commit"] != git(fresh, "rev-parse", "HEAD").out.strip()

    # Re-measuring on the same machine: quality numbers identical, speed figures are the machine's.
    old = json.loads((fresh / "metrics/variant.json").read_text())
    dvc(fresh, "repro", "-f", "-s", "evaluate", timeout=900)
    new = json.loads((fresh / "metrics/variant.json").read_text())
    assert new["quality"] == old["quality"] and new["size"] == old["size"]
    assert new["provenance"]["code"] == old["provenance"]["code"]
    git(fresh, "checkout", "--", ".")


def locked_venv(root: Path, code: Path) -> Path:
    """A second venv: the locked third-party distributions (those setup.sh installed with
    --require-hashes, shared read-only through a .pth, not re-downloaded) and pocketquant from
    the clone `code`, not the editable install of this checkout. Its kernel is the one built from
    the same kernels/ sources here (compiling it again takes ~45 s; tests/kernel checks its bytes)."""
    venv = root / "venv-b"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "pocketquant-clone.pth").write_text(f"{code}\n{sysconfig.get_paths()['purelib']}\n")
    for so in (REPO / "pocketquant").glob("_quants*.so"):
        shutil.copy2(so, code / "pocketquant" / so.name)
    return venv


def test_second_environment_pulls_and_runs_no_stage(committed: Committed) -> None:
    other = clone(committed.repo, committed.root / "b", committed.root / "cache-b", committed.remote)
    venv = locked_venv(committed.root, other)
    py = str(venv / "bin" / "python")
    probe = "import pocketquant, json; from pocketquant.envlock import lock_drift; " + (
        "d = lock_drift('requirements.lock'); print(json.dumps([pocketquant.__file__, d.missing, d.wrong]))"
    )
    where, missing, wrong = json.loads(run(other, py, "-c", probe).out.strip().splitlines()[-1])
    assert Path(where).is_relative_to(other), where
    assert not missing and not wrong, (missing, wrong)
    path = f"{venv / 'bin'}:/usr/bin:/bin"  # stage commands run `python`: venv B's
    r = run(other, py, "-m", "dvc", "repro", "--pull", timeout=900, PATH=path)
    assert not r.ran, f"ran {sorted(r.ran)}\n{r.out[-3000:]}"
    assert git(other, "status", "--porcelain").out == ""
    for src in cached_outputs(committed.repo):
        assert md5(other / src.relative_to(committed.repo)) == md5(src), src


@pytest.mark.parametrize(
    ("override", "message"),
    [("model=local", "model=local needs model.path"), ("+quant.bogus=1", "unknown key quant.bogus")],
)
def test_bad_config_fails_before_any_output_is_removed(
    committed: Committed, override: str, message: str
) -> None:
    repo = committed.repo
    before = {p: md5(p) for p in cached_outputs(repo)}
    r = dvc(repo, "exp", "run", "-S", override, check=False, timeout=600)
    try:
        assert r.returncode != 0
        assert "stage check_params: error:" in r.out and message in r.out, r.out[-3000:]
        assert r.ran == {"check_params"}, sorted(r.ran)
        assert {p: md5(p) for p in before if p.exists()} == before, "an output was changed"
        assert all(p.exists() for p in before), f"removed: {[p for p in before if not p.exists()]}"
    finally:
        git(repo, "checkout", "--", "params.yaml")
        dvc(repo, "checkout", "--quiet")
    assert "up to date" in dvc(repo, "status").out
