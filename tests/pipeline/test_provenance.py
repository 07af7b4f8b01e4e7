"""pocketquant.provenance: the code commit survives commits that touch no code (dvc.lock, metrics),
the dirty flag sees only the stage's code, and build provenance holds nothing machine-specific."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pocketquant.provenance import (
    build_provenance,
    code_commit,
    commit_label,
    cpu_info,
    llama_cpp_build,
    measurement_provenance,
)

REPO = Path(__file__).resolve().parents[2]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def make_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "r"
    (repo / "pkg").mkdir(parents=True)
    git(tmp_path, "init", "-q", str(repo))
    git(repo, "config", "user.email", "t@pocketquant.invalid")
    git(repo, "config", "user.name", "t")
    (repo / "pkg" / "code.py").write_text("x = 1\n")
    (repo / "dvc.lock").write_text("a\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "code")
    return repo


def test_code_commit_is_the_last_commit_that_changed_the_code(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    code = git(repo, "rev-parse", "HEAD")
    (repo / "dvc.lock").write_text("b\n")
    git(repo, "commit", "-qam", "results only")
    assert code_commit(["pkg/code.py"], repo) == {"commit": code, "dirty": False}
    # results and params changing in the work tree are not code
    (repo / "dvc.lock").write_text("c\n")
    assert code_commit(["pkg/code.py"], repo)["dirty"] is False
    (repo / "pkg" / "code.py").write_text("x = 2\n")
    got = code_commit(["pkg/code.py"], repo)
    assert got == {"commit": code, "dirty": True} and commit_label(got) == f"{code}-dirty"
    # a new, untracked module in the closure is dirt too
    git(repo, "checkout", "-q", "--", "pkg/code.py")
    (repo / "pkg" / "new.py").write_text("")
    assert code_commit(["pkg"], repo)["dirty"] is True


def test_outside_git_records_no_commit(tmp_path: Path) -> None:
    assert code_commit(["x.py"], tmp_path) == {"commit": None, "dirty": None}
    assert commit_label({"commit": None, "dirty": None}) is None


def test_build_provenance_is_machine_independent_and_measurement_adds_the_machine() -> None:
    b = build_provenance(REPO / "stages" / "package.py")
    assert set(b) == {"pocketquant", "code", "libraries", "platform", "torch_isa"}
    assert b["torch_isa"] == "avx2"  # pocketquant.cpu_isa pins it on import
    assert len(b["code"]["commit"]) == 40
    libs = b["libraries"]
    assert libs["torch"] and libs["transformers"] and libs["gguf"] and libs["llama-cpp-python"]
    m = measurement_provenance(threads=3, script=REPO / "stages" / "evaluate.py")
    assert m["threads"] == 3 and m["cpu"]["logical_cpus"] >= 1
    assert {k: v for k, v in m.items() if k not in ("cpu", "threads", "code")} == {
        k: v for k, v in b.items() if k != "code"
    }


def test_llama_cpp_build_commit_is_found() -> None:
    build = llama_cpp_build()
    assert build is not None and build["ggml_commit"] and build["ggml_version"]


def test_cpu_info_reads_model_and_simd_flags() -> None:
    text = (
        "processor: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse4_2 avx2 fma avx512f avx512_bf16 amx_tile\n"
    )
    info = cpu_info(text)
    assert info["model"] == "Some CPU" and info["simd"] == "sse4_2,avx2,fma,avx512f,avx512_bf16,amx_tile"


def test_torch_isa_is_pinned_unless_native_is_asked_for() -> None:
    from pocketquant.cpu_isa import TORCH_ISA_ENV, pin_torch_isa

    env: dict[str, str] = {}
    assert pin_torch_isa(env) == "avx2" and env == TORCH_ISA_ENV
    env = {"ATEN_CPU_CAPABILITY": "avx512"}  # the user's choice wins
    assert pin_torch_isa(env) == "avx512" and env["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"
    env = {"POCKETQUANT_TORCH_ISA": "native"}
    assert pin_torch_isa(env) == "native" and "ATEN_CPU_CAPABILITY" not in env
    torch = __import__("pytest").importorskip("torch")
    assert torch.backends.cpu.get_cpu_capability() in ("AVX2", "DEFAULT")  # pinned in this process
