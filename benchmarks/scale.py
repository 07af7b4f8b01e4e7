"""Benchmark (not a test): the whole pipeline on Llama-3.2-3B- and Llama-3.1-8B-shaped checkpoints,
per-stage wall time and peak RSS next to the memory targets of issue 13.

For each shape: a random-weight bf16 checkpoint with the real shapes and a 128,256-token tokenizer is
written (pocketquant.testing.llama_checkpoints, sharded safetensors, streamed), the repository is
cloned into a scratch directory, and the pipeline runs there with DVC as a user would:

    dvc exp run -S model=local -S model.path=CKPT acquire     (then the source copy is deleted)
    dvc exp run -S model=local -S model.path=CKPT             (default eval, q4_k_m)
    dvc exp run -S model=local -S model.path=CKPT -S quant=nf4   (3B only; --nf4 to choose)

Every stage process (and the runtime child of the evaluate stages) is watched from outside
every 0.1 s: wall time, peak RSS (the kernel's high-water mark VmHWM, exact) and the largest
anonymous part (RssAnon, sampled; the rest of RSS is pages of mapped files such as a GGUF that
llama.cpp maps). The stages' own lines ("pocketquant <stage>: wall ..., peak RSS ...") are collected
from DVC's output as a cross-check. Targets: every stage <= 3 GB on the 3B shape and <= 4 GB on the 8B
shape (GB = 1e9 bytes), except the llama.cpp runtime children (the deployment benchmark, which holds
the whole GGUF it measures: the F16 base's, and an 8B Q4_K_M's 4.6 GB).

The scratch directory is deleted at the end (--keep to keep it). Needs about 26 GB of free disk for
3B and 55 GB for 8B; it checks `free` memory and disk first. On a shared machine run it niced:

    nice -n 19 .venv/bin/python benchmarks/scale.py --shapes 3b,8b [--workdir DIR] [--json OUT]

The stage scripts come from the clone (the committed HEAD); the library is the one installed in the
interpreter's environment (the editable install): commit first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pocketquant.testing.llama_checkpoints import SHAPES, LlamaCheckpointShape, build_random_llama_checkpoint

REPO = Path(__file__).resolve().parents[1]
TARGET_BYTES = {"3b": 3e9, "8b": 4e9, "smoke": 3e9}
# The llama.cpp runtime children of the evaluate stages are the deployment benchmark (load time,
# prompt and generation speed, the generations of a layer-grouped evaluation): llama.cpp holds the
# whole GGUF there, as on the phone; the evaluate stages themselves score the model one group of
# layers at a time (eval.max_resident_gb) and are held to the target.
DEPLOYMENT = "runtime child"
POLL_S = 0.1
SELF_REPORT = re.compile(r"pocketquant (?P<what>[^:]+): wall (?P<wall>[\d.]+) s, peak RSS (?P<rss>\d+) MiB")


@dataclass
class ProcStats:
    label: str
    start: float
    end: float
    peak_rss: int = 0  # bytes (VmHWM)
    peak_anon: int = 0  # bytes (max sampled RssAnon)

    @property
    def wall_s(self) -> float:
        return self.end - self.start


@dataclass
class Watcher:
    """Samples every stage process below a root process until stopped."""

    root: int
    stats: dict[int, ProcStats] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    @staticmethod
    def _status(pid: int) -> dict[str, int]:
        out = {}
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "RssAnon"):
                    out[key] = int(value.split()[0]) * 1024
        return out

    def _label(self, proc: psutil.Process) -> str | None:
        cmd = proc.cmdline()
        script = next((Path(a).stem for a in cmd if a.startswith("stages/") and a.endswith(".py")), None)
        if script == "evaluate":
            return "evaluate_base" if any(a.startswith("base-") for a in cmd) else "evaluate"
        if script:
            return script
        if "pocketquant.evaluate.runtime" in cmd:
            parent = proc.parent()
            while parent is not None and parent.pid != self.root:
                label = self.stats.get(parent.pid)
                if label:
                    return f"{label.label} / runtime child"
                parent = parent.parent()
            return "runtime child"
        return None

    def run(self) -> None:
        try:
            root = psutil.Process(self.root)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            now = time.time()
            try:
                children = root.children(recursive=True)
            except psutil.NoSuchProcess:
                break
            for proc in children:
                try:
                    if proc.pid not in self.stats:
                        label = self._label(proc)
                        if label is None:
                            continue
                        self.stats[proc.pid] = ProcStats(label, proc.create_time(), now)
                    s = self.stats[proc.pid]
                    st = self._status(proc.pid)
                    s.end = now
                    s.peak_rss = max(s.peak_rss, st.get("VmHWM", 0))
                    s.peak_anon = max(s.peak_anon, st.get("RssAnon", 0))
                except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError, ProcessLookupError):
                    continue
            time.sleep(POLL_S)

    def stop(self) -> None:
        self._stop.set()


def run_watched(
    cmd: list[str], cwd: Path, env: dict[str, str], log: Path
) -> tuple[list[ProcStats], float, str]:
    """Run `cmd` (a dvc exp run), watching its stage processes; (stats, wall s, output)."""
    t0 = time.time()
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        watcher = Watcher(proc.pid)
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        rc = proc.wait()
        watcher.stop()
        thread.join()
    text = log.read_text(encoding="utf-8", errors="replace")
    if rc != 0:
        tail = "\n".join(text.splitlines()[-25:])
        raise SystemExit(f"{' '.join(cmd)} failed (exit {rc}); last lines of {log}:\n{tail}")
    return sorted(watcher.stats.values(), key=lambda s: s.start), time.time() - t0, text


def preflight(shape: LlamaCheckpointShape, workdir: Path, *, nf4: bool, force: bool) -> None:
    bf16 = 2 * shape.n_params
    need_disk = 2.3 * bf16 + (0.8 * bf16 if nf4 else 0)  # source + acquired copy, then + F16 GGUF + Q4_K_M
    free_disk = shutil.disk_usage(workdir).free
    avail = psutil.virtual_memory().available
    print(
        f"{shape.name}: {shape.n_params / 1e9:.2f}B params, bf16 {bf16 / 1e9:.1f} GB; disk free "
        f"{free_disk / 1e9:.0f} GB (needs ~{need_disk / 1e9:.0f}), memory available {avail / 1e9:.1f} GB",
        flush=True,
    )
    if not force and (free_disk < need_disk or avail < TARGET_BYTES["8b"] + 4e9):
        raise SystemExit(
            f"{shape.name}: not enough free disk or memory for this run (use --force to try anyway)"
        )


def bench_shape(key: str, workdir: Path, *, nf4: bool, keep_source: bool) -> dict:
    shape = SHAPES[key]
    src, clone, log = workdir / f"src-{key}", workdir / f"repo-{key}", workdir / f"dvc-{key}.log"
    t0 = time.time()
    build_random_llama_checkpoint(src, shape)
    build_s = time.time() - t0
    print(f"{shape.name}: random checkpoint written in {build_s:.0f} s", flush=True)
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    base = ["dvc", "exp", "run", "-S", "model=local", "-S", f"model.path={src}"]
    runs: list[tuple[str, list[str]]] = [("acquire", [*base, "acquire"]), ("q4_k_m", base)]
    if nf4:
        runs.append(("nf4", [*base, "-S", "quant=nf4"]))
    results: dict = {"shape": shape.name, "n_params": shape.n_params, "build_s": build_s, "runs": {}}
    for name, cmd in runs:
        print(f"{shape.name}: {' '.join(cmd[:3])} ... {name}", flush=True)
        stats, wall, text = run_watched(cmd, clone, env, log)
        results["runs"][name] = {
            "wall_s": wall,
            "stages": [s.__dict__ | {"wall_s": s.wall_s} for s in stats],
            "self_reported": [m.groupdict() for m in SELF_REPORT.finditer(text)],
        }
        if name == "acquire" and not keep_source:
            shutil.rmtree(src)  # acquire copied it; the params still name it, so it never re-runs
    return results


def table(key: str, results: dict) -> str:
    target = TARGET_BYTES[key]
    lines = [
        f"\n{results['shape']} ({results['n_params'] / 1e9:.2f}B params), "
        f"target {target / 1e9:.0f} GB per stage",
        f"| run | stage | wall | peak RSS | of it anonymous | target {target / 1e9:.0f} GB |",
        "|---|---|---|---|---|---|",
    ]
    for run, r in results["runs"].items():
        for s in r["stages"]:
            verdict = "met" if s["peak_rss"] <= target else "MISSED"
            if verdict == "MISSED" and s["label"].endswith(DEPLOYMENT):
                verdict = "deployment: llama.cpp holds the whole GGUF"
            lines.append(
                f"| {run} | {s['label']} | {s['wall_s']:.0f} s | {s['peak_rss'] / 1e9:.2f} GB | "
                f"{s['peak_anon'] / 1e9:.2f} GB | {verdict} |"
            )
        lines.append(f"| {run} | (whole `dvc exp run`) | {r['wall_s'] / 60:.1f} min | | | |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument(
        "--shapes", default="3b,8b", help="comma-separated: 3b, 8b (smoke: a tiny check of this script)"
    )
    ap.add_argument("--nf4", default="3b", help="shapes that also run quant=nf4 (comma-separated, or 'none')")
    ap.add_argument(
        "--workdir", default=None, help="scratch directory (default: a new one in the system temp dir)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--keep-source", action="store_true", help="keep the source checkpoint after acquire")
    ap.add_argument("--force", action="store_true", help="run even if free disk or memory look short")
    ap.add_argument("--json", default=None, help="also write the measurements to this JSON file")
    args = ap.parse_args()
    keys = [k.strip() for k in args.shapes.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SHAPES]
    if unknown:
        raise SystemExit(f"--shapes: unknown {unknown}; choose from {sorted(SHAPES)}")
    nf4 = {k.strip() for k in args.nf4.split(",")}
    if subprocess.run(
        ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip():
        print("warning: the working tree has uncommitted changes; the clone runs the committed stage scripts")
    all_results = {}
    for key in keys:
        workdir = Path(tempfile.mkdtemp(prefix=f"pq-scale-{key}-", dir=args.workdir))
        try:
            preflight(SHAPES[key], workdir, nf4=key in nf4, force=args.force)
            all_results[key] = bench_shape(key, workdir, nf4=key in nf4, keep_source=args.keep_source)
            print(table(key, all_results[key]), flush=True)
        finally:
            if args.keep:
                print(f"kept {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=2) + "\n", encoding="utf-8")
    if len(all_results) > 1:  # all tables together at the end
        for key, r in all_results.items():
            print(table(key, r))


if __name__ == "__main__":
    main()
