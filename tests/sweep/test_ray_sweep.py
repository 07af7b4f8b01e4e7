"""`pocketquant sweep` end to end on a real multi-node Ray cluster on this machine.

A head node (no CPUs for tasks) and two worker nodes of one CPU each (ray.cluster_utils.Cluster:
separate raylets, as `ray start --head` + `ray start --address` would give), a bare git remote and
a local-directory DVC remote. The driver is the `pocketquant` command in a clone, connected with
--address. Every task uses its own clone and DVC cache (--no-shared-cache), so whatever it did not
compute came from the DVC remote. Tests run in file order and share the cluster and remotes.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pipeline.dvcrepo import exp_show, git

from pocketquant.sweep.pipeline import load_pipeline
from pocketquant.testing.sweep_lab import Team, kill_node, make_team, ray_cluster, sweep_command, tool_env

from .conftest import REPO

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")
pytest.importorskip("dvc")
pytest.importorskip("llama_cpp", reason="llama-cpp-python measures the GGUF variants")

SHARED = ("acquire", "convert", "calibrate", "reference", "evaluate_base")
TIMINGS: dict[str, float] = {}


@dataclass
class Lab:
    team: Team
    work: Path  # the workers' work_dir
    cluster: Any  # ray.cluster_utils.Cluster


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("sweep-ray")
    team = make_team(root, REPO)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in tool_env().items():  # Ray nodes and their tasks inherit this environment
            mp.setenv(key, value)
        with ray_cluster(workers=2) as cluster:
            yield Lab(team, root / "work", cluster)
    print(f"\nsweep timings (s): {json.dumps({k: round(v, 1) for k, v in TIMINGS.items()})}")


@contextmanager
def sweeping(lab: Lab, *args: str, cluster: bool = True) -> Iterator[Driver]:
    """The driver running in the background (on the lab's cluster, or with none given: a local
    cluster of its own); killed if the test ends before it does."""
    log = lab.team.root / f"driver-{time.monotonic_ns()}.log"
    with open(log, "w") as f:
        cmd = sweep_command(lab.cluster if cluster else None, lab.work, *args)
        proc = subprocess.Popen(cmd, cwd=lab.team.driver, env=tool_env(), stdout=f, stderr=subprocess.STDOUT)
    try:
        yield Driver(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@dataclass
class Driver:
    proc: subprocess.Popen
    log: Path

    def finish(self, timeout: float = 1500) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            code = -1
        return code, self.log.read_text(encoding="utf-8", errors="replace")


def record_dir(lab: Lab, name: str) -> Path:
    return lab.team.driver / ".dvc" / "tmp" / "sweeps" / name


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def remote_has(remote: Path, md5: str) -> bool:
    """Whether the DVC remote holds an object, and for a directory every file in it."""
    path = remote / "files" / "md5" / md5[:2] / md5[2:]
    if not path.exists():
        return False
    if md5.endswith(".dir"):
        return all(remote_has(remote, entry["md5"]) for entry in json.loads(path.read_text()))
    return True


def cached_outputs_of(lab: Lab, exp_name: str) -> dict[str, str]:
    """path -> md5 of every DVC-cached output in the experiment's dvc.lock (from its git ref)."""
    ref = next(
        line.split()[1]
        for line in git(
            lab.team.driver, "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"
        ).out.splitlines()
        if line.endswith(f"/{exp_name}")
    )
    lock = yaml.safe_load(git(lab.team.driver, "show", f"{ref}:dvc.lock").out)
    uncached = {
        out for stage in load_pipeline(lab.team.driver / "dvc.yaml").stages for out in stage.uncached_outs
    }
    return {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
        if out["path"] not in uncached
    }


def test_three_schemes_on_two_workers_survive_a_killed_worker(lab: Lab) -> None:
    """The issue's sweep: all three experiments end in `dvc exp show` with metrics, the shared
    stages ran once in total, and a worker killed mid-experiment loses nothing: its experiment is
    reported failed on that node, retried on the other, and restores the stage it had finished."""
    t0 = time.perf_counter()
    status = record_dir(lab, "s3") / "status.json"
    victim, deadline = None, time.monotonic() + 1500
    args = ("-S", "quant=q4_k_m,q8_0,nf4", "-S", "eval=smoke", "--name", "s3", "--retries", "1")
    with sweeping(lab, *args) as driver:
        while driver.proc.poll() is None and time.monotonic() < deadline:
            if victim is None and status.exists():
                for row in read_json(status)["rows"]:
                    # At the marker for `evaluate`, its quantize output has been pushed.
                    if (
                        row["kind"] == "experiment"
                        and row["state"] == "running"
                        and row["stage"] == "evaluate"
                    ):
                        victim = row
                        kill_node(lab.cluster, row["attempts"][-1]["node"])
                        break
            time.sleep(0.3)
        code, out = driver.finish(timeout=deadline - time.monotonic())
    TIMINGS["sweep_3_with_kill"] = time.perf_counter() - t0
    assert victim is not None, f"no experiment was seen running `evaluate`:\n{out[-4000:]}"
    assert code == 0, out[-6000:]

    # dvc exp show in the driver's repo: all three, with metrics.
    exps = {e["name"]: e for e in exp_show(lab.team.driver)}
    assert {"s3-1", "s3-2", "s3-3"} <= set(exps), sorted(exps)
    sizes = {}
    for name, scheme in (("s3-1", "q4_k_m"), ("s3-2", "q8_0"), ("s3-3", "nf4")):
        m = exps[name]["metrics"]["metrics/headline.json"]
        assert exps[name]["params"]["quant"]["name"] == scheme
        assert math.isfinite(m["ppl"]) and m["kld"] >= 0
        sizes[scheme] = m["gib"]
    assert sizes["q8_0"] > sizes["q4_k_m"]

    # The shared stages ran once in total (the upstream task), by the record and by the logs.
    record = read_json(record_dir(lab, "s3") / "record.json")
    for stage in SHARED:
        assert record["stage_runs"].get(stage) == 1, record["stage_runs"]
    logs = {p.name: p.read_text() for p in record_dir(lab, "s3").glob("*.log")}
    for stage in SHARED:
        ran_in = [name for name, text in logs.items() if f"Running stage '{stage}'" in text]
        assert ran_in == ["s3-upstream.1.log"], (stage, ran_in)
    tasks = {t["name"]: t for t in record["tasks"]}
    for name in ("s3-1", "s3-2", "s3-3"):
        final = tasks[name]["attempts"][-1]
        assert final["ok"] and "quantize" in final["ran"] + final["restored"]
        assert not set(SHARED) & set(final["ran"]), final
        assert {"acquire", "convert", "reference"} <= set(final["restored"]), final  # pulled from the remote
        assert "evaluate_base" in final["unchanged"], final  # the upstream's result, handed on

    # The killed experiment: attempt 1 failed on the dead node (its last error line says so),
    # attempt 2 on the surviving node restored the quantize output attempt 1 had pushed.
    killed = tasks[victim["name"]]
    assert [a["ok"] for a in killed["attempts"]] == [False, True], killed
    first, second = killed["attempts"]
    assert "died" in first["error"].lower() or "dead" in first["error"].lower(), first["error"]
    (survivor,) = lab.cluster.worker_nodes
    assert first["node"] != second["node"] and second["node"] == survivor.node_id
    assert "quantize" in second["restored"] and "quantize" not in second["ran"], second
    others = [tasks[n] for n in ("s3-1", "s3-2", "s3-3") if n != victim["name"]]
    assert all(len(t["attempts"]) == 1 for t in others)
    used = {a["node"] for t in tasks.values() for a in t["attempts"]}
    assert len(used) == 2, used  # both worker nodes took tasks
    shown = [
        line
        for line in out.splitlines()
        if f"] {victim['name']} [" in line or line.startswith(f"[sweep] {victim['name']} ")
    ]
    assert any(": retrying (" in line for line in shown), shown  # the driver showed the retry

    assert not list((lab.work / "clones" / "s3").iterdir()), (
        "clones left behind (the retry removes the dead one's)"
    )

    # The DVC remote has every cached output of every experiment (what a teammate would pull).
    for name in ("s3-1", "s3-2", "s3-3"):
        outputs = cached_outputs_of(lab, name)
        assert {"artifacts/base/hf", "artifacts/variant", "artifacts/package"} <= set(outputs)
        missing = [path for path, md5 in outputs.items() if not remote_has(lab.team.remote, md5)]
        assert not missing, (name, missing)


def test_failing_stage_on_a_local_cluster_is_reported_with_its_error_line(lab: Lab) -> None:
    """No --address: the driver starts a local Ray cluster of its own (one CPU here). A stage that
    fails is not retried: the experiment is reported failed with the stage's own error line, exit
    status 1, no experiment recorded. The node's shared DVC cache (the default) is used, and what
    the first sweep pushed is restored through the run-cache, not recomputed."""
    t0 = time.perf_counter()
    args = ("-S", "quant=q4_k_m", "-S", "eval=smoke", "-S", "quant.name=q9_bogus", "--name", "bad")
    with sweeping(lab, *args, "--shared-cache", "--local-cpus", "1", cluster=False) as d:
        code, out = d.finish()
    TIMINGS["failing_sweep_local_cluster"] = time.perf_counter() - t0
    assert code == 1, out[-4000:]
    assert "stage quantize: error:" in out and "q9_bogus" in out, out[-4000:]
    (task,) = read_json(record_dir(lab, "bad") / "record.json")["tasks"]
    assert task["state"] == "failed" and len(task["attempts"]) == 1
    assert task["error"].startswith("stage quantize: error:") and "q9_bogus" in task["error"]
    attempt = task["attempts"][0]
    # check_params re-checks this point's own params (a constant marker: nothing downstream moves)
    assert attempt["ran"] == ["check_params", "quantize"], attempt
    assert {"acquire", "convert", "reference"} <= set(attempt["restored"]), attempt
    assert attempt["node"] not in {n.node_id for n in lab.cluster.list_all_nodes()}  # its own cluster
    assert any((lab.work / "cache" / "files" / "md5").iterdir()), "the node's shared cache is empty"
    assert "bad-1" not in {e["name"] for e in exp_show(lab.team.driver)}
    assert not list(lab.work.glob("clones/bad/*")), "the failed task's clone was left behind"
