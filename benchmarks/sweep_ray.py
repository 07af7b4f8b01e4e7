"""Benchmark (not a test): the same `pocketquant sweep` on 1 vs 2 Ray worker nodes, same run.

For each worker count: a fresh bare git remote, driver clone and empty DVC remote, a local Ray
cluster (a head with no task CPUs + N worker nodes of one CPU each: separate raylets), then
`pocketquant sweep -S quant=... -S eval=...` with every task in its own clone and DVC cache. Prints
the wall time of each sweep, the speed-up of 2 workers over 1, how often each stage ran, and the
load average before and after each sweep (the machine may be shared: read the ratio with it).

    .venv/bin/python benchmarks/sweep_ray.py [--schemes q4_k_m,q8_0,nf4] [--eval smoke] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from pocketquant.testing.sweep_lab import make_team, ray_cluster, sweep_command, tool_env

REPO = Path(__file__).resolve().parents[1]


def one_sweep(workers: int, schemes: str, eval_option: str, scratch: Path) -> dict:
    root = scratch / f"workers-{workers}"
    root.mkdir()
    team = make_team(root, REPO)
    os.environ.update(tool_env())  # the Ray nodes inherit it
    with ray_cluster(workers=workers) as cluster:
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        cmd = sweep_command(cluster, root / "work", "-S", f"quant={schemes}", "-S", f"eval={eval_option}")
        p = subprocess.run(
            [*cmd, "--name", "bench"], cwd=team.driver, env=tool_env(), capture_output=True, text=True
        )
        wall = time.perf_counter() - t0
        load_after = os.getloadavg()
    if p.returncode != 0:
        raise SystemExit(
            f"sweep on {workers} worker(s) failed ({p.returncode}):\n{p.stdout[-3000:]}{p.stderr}"
        )
    record = json.loads((team.driver / ".dvc/tmp/sweeps/bench/record.json").read_text(encoding="utf-8"))
    return {
        "workers": workers,
        "wall_s": round(wall, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "stage_runs": record["stage_runs"],
        "task_seconds": {t["name"]: t["attempts"][-1]["seconds"] for t in record["tasks"]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schemes", default="q4_k_m,q8_0,nf4", help="the quant sweep (default q4_k_m,q8_0,nf4)")
    ap.add_argument("--eval", default="smoke", help="eval option (default smoke)")
    ap.add_argument("--workers", default="1,2", help="worker node counts to compare (default 1,2)")
    ap.add_argument("--json", type=Path, help="also write the results here (default: none)")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    results = []
    with tempfile.TemporaryDirectory(prefix="pq-sweep-bench-") as scratch:
        for n in (int(x) for x in args.workers.split(",")):
            r = one_sweep(n, args.schemes, args.eval, Path(scratch))
            results.append(r)
            print(
                f"{n} worker node(s): {r['wall_s']:.1f} s  (load {r['load_before']} -> {r['load_after']}); "
                f"stage runs {r['stage_runs']}; per task {r['task_seconds']}",
                flush=True,
            )
    if len(results) >= 2:
        base = min(results, key=lambda r: r["workers"])  # speed-ups are against the fewest workers
        for r in sorted(results, key=lambda r: r["workers"])[1:]:
            print(
                f"{r['workers']} vs {base['workers']} worker node(s): wall time ratio "
                f"{r['wall_s'] / base['wall_s']:.2f} (speed-up {base['wall_s'] / r['wall_s']:.2f}x)"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
