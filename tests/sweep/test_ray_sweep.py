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
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from pipeline.dvcrepo import VENV_BIN, env, exp_show, git

from .conftest import Team, make_team

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")
pytest.importorskip("dvc")
pytest.importorskip("llama_cpp", reason="llama-cpp-python measures the GGUF variants")

SMALL_STORE = 80 << 20  # bytes; Ray's minimum is 75 MiB
SHARED = ("acquire", "convert", "calibrate", "reference", "evaluate_base")
TIMINGS: dict[str, float] = {}


@dataclass
class Lab:
    team: Team
    work: Path  # the workers' work_dir
    cluster: object  # ray.cluster_utils.Cluster
    workers: list  # its worker nodes (ray._private.node.Node)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    from ray.cluster_utils import Cluster

    root = tmp_path_factory.mktemp("sweep-ray")
    team = make_team(root)
    with pytest.MonkeyPatch.context() as mp:
        # Ray nodes (and the tasks they run) inherit this environment: offline, no usage stats.
        for key, value in env(RAY_USAGE_STATS_ENABLED="0").items():
            mp.setenv(key, value)
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 0, "include_dashboard": False, "object_store_memory": SMALL_STORE},
        )
        try:
            workers = [cluster.add_node(num_cpus=1, object_store_memory=SMALL_STORE) for _ in range(2)]
            cluster.wait_for_nodes()
            yield Lab(team, root / "work", cluster, workers)
        finally:
            cluster.shutdown()
            print(f"\nsweep timings (s): {json.dumps({k: round(v, 1) for k, v in TIMINGS.items()})}")


def start_sweep(lab: Lab, *args: str) -> subprocess.Popen:
    cmd = [
        str(VENV_BIN / "pocketquant"),
        "sweep",
        "--address",
        lab.cluster.address,
        "--work-dir",
        str(lab.work),
        "--no-shared-cache",
        *args,
    ]
    log = open(lab.team.root / f"driver-{time.monotonic_ns()}.log", "w+")  # noqa: SIM115 - closed by finish()
    return subprocess.Popen(
        cmd, cwd=lab.team.driver, env=env(), stdout=log, stderr=subprocess.STDOUT, text=True
    )


def finish(proc: subprocess.Popen, timeout: float = 1500) -> tuple[int, str]:
    try:
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc.stdout.seek(0)
    out = proc.stdout.read()
    proc.stdout.close()
    return code, out


def record_dir(lab: Lab, name: str) -> Path:
    return lab.team.driver / ".dvc" / "tmp" / "sweeps" / name


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def kill_node(lab: Lab, node_id: str) -> None:
    """The machine dies: its raylet, its Ray workers and everything they started, all SIGKILLed."""
    (node,) = [n for n in lab.workers if n.node_id == node_id]
    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    for proc in raylet.children(recursive=True):
        proc.kill()
    lab.cluster.remove_node(node, allow_graceful=False)
    lab.workers.remove(node)


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
    pipeline = yaml.safe_load(git(lab.team.driver, "show", f"{ref}:dvc.yaml").out)["stages"]
    uncached = {
        next(iter(o))
        for s in pipeline.values()
        for kind in ("outs", "metrics", "plots")
        for o in s.get(kind, [])
        if isinstance(o, dict) and next(iter(o.values())).get("cache") is False
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
    proc = start_sweep(
        lab, "-S", "quant=q4_k_m,q8_0,nf4", "-S", "eval=smoke", "--name", "s3", "--retries", "1"
    )
    status = record_dir(lab, "s3") / "status.json"
    victim, deadline = None, time.monotonic() + 1500
    while proc.poll() is None and time.monotonic() < deadline:
        if victim is None and status.exists():
            for row in read_json(status)["rows"]:
                # At the marker for `evaluate`, its quantize output has been pushed.
                if row["kind"] == "experiment" and row["state"] == "running" and row["stage"] == "evaluate":
                    victim = row
                    kill_node(lab, row["attempts"][-1]["node"])
                    break
        time.sleep(0.3)
    code, out = finish(proc, timeout=max(1, deadline - time.monotonic()))
    TIMINGS["sweep_3_with_kill"] = time.perf_counter() - t0
    assert victim is not None, f"no experiment was seen running `evaluate`:\n{out[-4000:]}"
    assert code == 0, out[-6000:]

    # dvc exp show in the driver's repo: all three, with metrics.
    exps = {e["name"]: e for e in exp_show(lab.team.driver)}
    assert {"s3-1", "s3-2", "s3-3"} <= set(exps), sorted(exps)
    sizes = {}
    for name, scheme in (("s3-1", "q4_k_m"), ("s3-2", "q8_0"), ("s3-3", "nf4")):
        m = exps[name]["metrics"]["metrics/variant.json"]
        assert m["variant"] == scheme and exps[name]["params"]["quant"]["name"] == scheme
        assert math.isfinite(m["quality"]["ppl"]) and m["quality"]["kld_mean"] >= 0
        sizes[scheme] = m["size"]["bytes"]
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

    # The killed experiment: attempt 1 failed on the dead node (its last error line says so),
    # attempt 2 on the surviving node restored the quantize output attempt 1 had pushed.
    killed = tasks[victim["name"]]
    assert [a["ok"] for a in killed["attempts"]] == [False, True], killed
    first, second = killed["attempts"]
    assert "died" in first["error"].lower() or "dead" in first["error"].lower(), first["error"]
    assert first["node"] != second["node"] and second["node"] == lab.workers[0].node_id
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

    # The DVC remote has every cached output of every experiment (what a teammate would pull).
    for name in ("s3-1", "s3-2", "s3-3"):
        outputs = cached_outputs_of(lab, name)
        assert {"artifacts/base/hf", "artifacts/variant", "artifacts/package"} <= set(outputs)
        missing = [path for path, md5 in outputs.items() if not remote_has(lab.team.remote, md5)]
        assert not missing, (name, missing)


def test_failing_stage_is_reported_with_its_error_line(lab: Lab) -> None:
    """A stage that fails is not retried: the experiment is reported failed with the stage's own
    error line, exit status 1, nothing recorded as an experiment; what others ran is restored."""
    t0 = time.perf_counter()
    proc = start_sweep(
        lab, "-S", "quant=q4_k_m", "-S", "eval=smoke", "-S", "quant.ftype=Q9_BOGUS", "--name", "bad"
    )
    code, out = finish(proc)
    TIMINGS["failing_sweep"] = time.perf_counter() - t0
    assert code == 1, out[-4000:]
    assert "stage quantize: error:" in out and "Q9_BOGUS" in out, out[-4000:]
    (task,) = read_json(record_dir(lab, "bad") / "record.json")["tasks"]
    assert task["state"] == "failed" and len(task["attempts"]) == 1
    assert task["error"].startswith("stage quantize: error:") and "Q9_BOGUS" in task["error"]
    assert task["attempts"][0]["ran"] == ["quantize"], task  # acquire, convert: from the run-cache
    assert "bad-1" not in {e["name"] for e in exp_show(lab.team.driver)}
    assert not list(lab.work.glob("clones/bad/*")), "the failed task's clone was left behind"
