"""Where a result came from: the code's commit, the libraries, and (for measurements) the machine.

Two blocks, because they go to places with different reproducibility duties (docs/pipeline.md,
"What reproduces bit for bit"):

- `build_provenance` goes into the package manifest, which is a DVC-cached output whose hash is
  committed in dvc.lock. It must be the same bytes in every fresh clone of the same commit on the
  same platform, so it holds only what such clones share: pocketquant's version, the code commit,
  the locked library versions, Python and the platform (OS + architecture).
- `measurement_provenance` goes into metrics JSON (`cache: false`, in git): measured numbers are
  a fact about the machine that measured them, so it adds the CPU model, its SIMD features and the
  thread count. A fresh clone does not re-measure (the evaluation stages' inputs reproduce bit for
  bit, so DVC keeps the committed metrics), so these never change by themselves.

The code commit is not HEAD: a commit cannot record its own hash, and committing dvc.lock after a
run would make every later clone disagree with the package it built. It is the newest commit that
changed any file of the stage's code (its import closure, pocketquant.pipeline_deps), which every
clone of a later commit agrees on, plus `dirty: true` when one of those files differs from HEAD
(params.yaml, dvc.lock and metrics are not code and never make it dirty). In a `dvc exp run`
temporary workspace HEAD is the experiment's baseline commit, with full history, so the same holds.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pocketquant import __version__
from pocketquant.cpu_isa import SWITCH

# Libraries whose versions decide the bytes or the numbers pocketquant produces.
LIBRARIES = ("torch", "transformers", "bitsandbytes", "gguf", "llama-cpp-python", "numpy", "tokenizers")
# /proc/cpuinfo flags that decide which code paths bitsandbytes, torch and llama.cpp take.
SIMD_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)


def _git(repo: Path, *args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=60
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None


def code_commit(paths: Iterable[str], repo: str | os.PathLike[str] = ".") -> dict[str, Any]:
    """{"commit": newest commit that changed any of `paths`, "dirty": do they differ from HEAD}.
    Outside git: both None. In a shallow clone the history may be cut: "shallow": true says so."""
    repo = Path(repo)
    paths = sorted(set(paths))
    if _git(repo, "rev-parse", "--git-dir") is None:
        return {"commit": None, "dirty": None}
    commit = _git(repo, "log", "-1", "--format=%H", "--", *paths) or _git(repo, "rev-parse", "HEAD")
    status = _git(repo, "status", "--porcelain", "--untracked-files=all", "--", *paths)
    out: dict[str, Any] = {"commit": commit or None, "dirty": bool(status)}
    if _git(repo, "rev-parse", "--is-shallow-repository") == "true":
        out["shallow"] = True
    return out


def stage_code(script: str | os.PathLike[str], repo: str | os.PathLike[str] = ".") -> list[str]:
    """The files a stage script runs: its import closure within the repository."""
    from pocketquant.pipeline_deps import ImportGraph

    repo = Path(repo)
    rel = Path(script).resolve().relative_to(repo.resolve()).as_posix()
    return sorted(ImportGraph(repo).closure(rel))


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def llama_cpp_build() -> dict[str, str] | None:
    """The ggml build llama-cpp-python loads (commit and version from libggml-base), without
    importing llama_cpp. None when it is not installed."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    lib_dir = Path(next(iter(spec.submodule_search_locations))) / "lib"
    for name in ("libggml-base.so", "libggml-base.dylib", "ggml-base.dll"):
        if (lib_dir / name).is_file():
            try:
                lib = ctypes.CDLL(str(lib_dir / name))
            except OSError:
                return None
            out = {}
            for key, fn in (("ggml_commit", "ggml_commit"), ("ggml_version", "ggml_version")):
                f = getattr(lib, fn, None)
                if f is not None:
                    f.restype = ctypes.c_char_p
                    out[key] = f().decode("utf-8", "replace")
            return out
    return None


def library_versions() -> dict[str, Any]:
    versions: dict[str, Any] = {"python": platform.python_version()}
    versions.update({name: _dist_version(name) for name in LIBRARIES})
    versions["llama.cpp"] = llama_cpp_build()
    return versions


def cpu_info(cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU model, the SIMD features in SIMD_FLAGS it has (from /proc/cpuinfo on Linux), cores."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    model, flags = platform.processor() or None, set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return {
        "model": model,
        "simd": ",".join(f for f in SIMD_FLAGS if f in flags),
        "logical_cpus": os.cpu_count(),
    }


def script_code(script: str | os.PathLike[str] | None) -> dict[str, Any]:
    """code_commit of a stage script's import closure, in the git repository that holds it.
    {"commit": None, "dirty": None} for anything else (an interactive session, pytest, no git)."""
    none: dict[str, Any] = {"commit": None, "dirty": None}
    if not script or not Path(script).is_file():
        return none
    script = Path(script).resolve()
    top = _git(script.parent, "rev-parse", "--show-toplevel")
    if not top or not (Path(top) / "dvc.yaml").is_file():
        return none  # not a pocketquant checkout (e.g. pytest's own __main__.py)
    return code_commit(stage_code(script, top), top)


def torch_isa() -> str:
    """The instruction set torch was pinned to (pocketquant.cpu_isa), or "native"."""
    if os.environ.get(SWITCH, "").lower() == "native":
        return "native"
    return os.environ.get("ATEN_CPU_CAPABILITY", "native")


def build_provenance(script: str | os.PathLike[str] | None = None) -> dict:
    """What a built artifact records: identical in every clone of one commit on one platform.
    `script`: the stage script whose code commit to record (default: the running script)."""
    return {
        "pocketquant": __version__,
        "code": script_code(script if script is not None else sys.argv[0]),
        "libraries": library_versions(),
        "platform": f"{platform.system().lower()}-{platform.machine().lower()}",
        "torch_isa": torch_isa(),
    }


def measurement_provenance(threads: int | None = None, script: str | os.PathLike[str] | None = None) -> dict:
    """What a measurement records: build_provenance plus the machine and threads it ran with."""
    torch_isa = (
        os.environ.get("ATEN_CPU_CAPABILITY", "native") if os.environ.get(SWITCH) != "native" else "native"
    )
    return {**build_provenance(script), "cpu": {**cpu_info(), "torch_isa": torch_isa}, "threads": threads}


def commit_label(code: dict[str, Any]) -> str | None:
    """ "<commit>" or "<commit>-dirty" (the manifest's git_commit), None outside git."""
    if not code.get("commit"):
        return None
    return code["commit"] + ("-dirty" if code.get("dirty") else "")
