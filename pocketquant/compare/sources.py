"""Where runs come from: the workspace, every experiment of its baseline (`dvc exp show --json`),
git revisions and experiment names, or metrics files given by hand.

A run's files are read from git at its revision (`git show REV:metrics/variant.json`): the evaluate
stage keeps the metrics and the per-token scores in git (`cache: false`), so any experiment or
commit can be compared without checking it out or pulling from a DVC remote.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from pocketquant.compare.rows import Run
from pocketquant.errors import EvaluationError
from pocketquant.evaluate.metrics import read_token_scores, token_scores_path
from pocketquant.inputs import refuse_special_files

# The pipeline's layout (dvc.yaml: evaluate and evaluate_base write these).
VARIANT_METRICS = "metrics/variant.json"
BASE_METRICS = "metrics/base.json"
PARAMS = "params.yaml"
WORKSPACE = "workspace"


def _is_metrics(data: object) -> bool:
    return isinstance(data, dict) and "variant" in data and "size" in data


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, check=False)


def git_root(path: Path) -> Path:
    p = _git(path, "rev-parse", "--show-toplevel")
    if p.returncode != 0:
        raise EvaluationError(f"{path} is not inside a git repository: {p.stderr.decode().strip()}")
    return Path(p.stdout.decode().strip())


class RevisionFiles:
    """Files of one revision: the working tree for "workspace", else `git show REV:PATH`."""

    def __init__(self, repo: Path, rev: str):
        self.repo, self.rev = repo, rev

    def read(self, path: str) -> bytes | None:
        if self.rev == WORKSPACE:
            f = self.repo / path
            return f.read_bytes() if f.is_file() else None
        p = _git(self.repo, "show", f"{self.rev}:{path}")
        return p.stdout if p.returncode == 0 else None


def _json(data: bytes | None, where: str) -> dict | None:
    if data is None:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvaluationError(f"cannot read {where}: {exc}") from exc


def run_at(repo: Path, rev: str, source: str, params: dict | None = None) -> Run | None:
    """The run whose results are committed at `rev` (or lie in the workspace); None without metrics."""
    files = RevisionFiles(repo, rev)
    at = f"{source} ({rev[:7]})" if rev != WORKSPACE else source
    variant = _json(files.read(VARIANT_METRICS), f"{VARIANT_METRICS} of {at}")
    if not _is_metrics(variant):
        return None
    base = _json(files.read(BASE_METRICS), f"{BASE_METRICS} of {at}")
    if params is None:
        raw = files.read(PARAMS)
        params = yaml.safe_load(raw) if raw else None
    tokens = _tokens(files, VARIANT_METRICS, at)
    base_tokens = _tokens(files, BASE_METRICS, at)
    return Run(source, variant, base if _is_metrics(base) else None, params, tokens, base_tokens)


def _tokens(files: RevisionFiles, metrics_path: str, at: str):  # noqa: ANN202 - TokenScores | None
    path = token_scores_path(metrics_path).as_posix()
    data = files.read(path)
    return None if data is None else read_token_scores(data, f"{path} of {at}")[0]


def dvc_exp_show(repo: Path) -> list:
    """`dvc exp show --json` of the repository (local experiments only: no fetch)."""
    p = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--json", "--no-fetch"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    out = p.stdout
    if p.returncode != 0 or "[" not in out:
        raise EvaluationError(f"dvc exp show failed in {repo}: {(p.stderr or out).strip()[-500:]}")
    return json.loads(out[out.index("[") :])


def _params_of(state: dict) -> dict | None:
    params = ((state.get("data") or {}).get("params") or {}).get(PARAMS) or {}
    return params.get("data")


def runs_from_exp_show(data: list, repo: Path | None) -> tuple[list[Run], list[str]]:
    """Runs of every revision in `dvc exp show --json` output (the workspace, each baseline and its
    experiments). With `repo`, each revision's files are read from git; without it (a saved JSON
    file), only metrics the JSON itself carries can be used."""
    runs: list[Run] = []
    skipped: list[str] = []

    def add(state: dict, name: str) -> None:
        rev = state.get("rev") or ""
        if state.get("error"):
            skipped.append(f"{name}: {state['error'].get('msg', 'error')}")
            return
        run = None
        if repo is not None:
            run = run_at(repo, rev, name, _params_of(state))
        else:
            metrics = ((state.get("data") or {}).get("metrics")) or {}
            found = {k: (v or {}).get("data") for k, v in metrics.items()}
            variant = found.get(VARIANT_METRICS)
            if _is_metrics(variant):
                base = found.get(BASE_METRICS)
                run = Run(name, variant, base if _is_metrics(base) else None, _params_of(state))
        if run is None:
            skipped.append(f"{name}: no {VARIANT_METRICS}")
        else:
            runs.append(run)

    for baseline in data:
        rev = baseline.get("rev", "")
        add(baseline, WORKSPACE if rev == WORKSPACE else (baseline.get("name") or rev[:7]))
        for exp in baseline.get("experiments") or []:
            state = (exp.get("executor") or {}).get("state")
            name = exp.get("name") or "?"
            if state in ("queued", "running", "failed"):
                skipped.append(f"{name}: {state}")
                continue
            for rev_state in exp.get("revs") or []:
                add(rev_state, rev_state.get("name") or name)
    return runs, skipped


def resolve_revision(repo: Path, name: str) -> str:
    """A commit for `name`: an experiment name (refs/exps/.../NAME), a branch, tag or commit."""
    refs = _git(repo, "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps")
    for line in refs.stdout.decode().splitlines():
        sha, ref = line.split(" ", 1)
        if ref.rsplit("/", 1)[-1] == name:
            return sha
    p = _git(repo, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
    if p.returncode != 0:
        raise EvaluationError(f"{name!r} is neither a file, an experiment nor a git revision in {repo}")
    return p.stdout.decode().strip()


def runs_from_file(path: Path) -> tuple[list[Run], list[str]]:
    """A metrics JSON (one run, its per-token scores beside it when present), or saved
    `dvc exp show --json` output."""
    data = _json(path.read_bytes(), str(path))
    if _is_metrics(data):
        tok = token_scores_path(path)
        tokens = read_token_scores(tok.read_bytes(), str(tok))[0] if tok.is_file() else None
        return [Run(str(path), data, tokens=tokens)], []
    if isinstance(data, list):
        runs, skipped = runs_from_exp_show(data, None)
        if runs:
            return runs, skipped
    raise EvaluationError(
        f"{path}: no pocketquant variant metrics in it (a metrics file or dvc exp show --json)"
    )


def collect_runs(sources: list[str], repo: Path) -> tuple[list[Run], list[str]]:
    """Runs of the given sources (files, experiment names, revisions, "workspace"); with none, the
    workspace and every experiment of its baseline."""
    refuse_special_files(sources)  # a FIFO named as a metrics file must not hang us
    if not sources:
        root = git_root(repo)
        return runs_from_exp_show(dvc_exp_show(root), root)
    runs: list[Run] = []
    skipped: list[str] = []
    for s in sources:
        path = Path(s)
        if path.is_file():
            r, sk = runs_from_file(path)
        else:
            root = git_root(repo)
            rev = WORKSPACE if s == WORKSPACE else resolve_revision(root, s)
            run = run_at(root, rev, s)
            r, sk = ([run], []) if run else ([], [f"{s}: no {VARIANT_METRICS}"])
        runs += r
        skipped += sk
    return runs, skipped
