"""The streaming building blocks: a safetensors reader that reads single tensors or rows, a writer
that writes tensor by tensor the same bytes as safetensors' own save_file, the process usage line,
and an evaluation package without import cycles."""

from __future__ import annotations

import ast
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pocketquant.errors import ConfigError
from pocketquant.layerwise.weights import CheckpointWeights
from pocketquant.layerwise.writer import SafetensorsWriter, TensorSpec, spec_of

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "b.weight": torch.randn(5, 3, generator=g).to(torch.bfloat16),
        "a.weight": torch.randn(7, 4, generator=g),
        "a.packed": torch.arange(12, dtype=torch.uint8).reshape(12, 1),
        "c.half": torch.randn(3, generator=g).to(torch.float16),
        "d.count": torch.tensor([3, 1], dtype=torch.int64),
        "e.code": torch.arange(4, dtype=torch.int32),
        "f.scalar": torch.tensor(2.5, dtype=torch.float64),
        "g.empty": torch.zeros(0, 4),
        "h.flag": torch.tensor([True, False]),
    }


def test_writer_bytes_equal_safetensors_save_file(tensors, tmp_path):
    save_file(tensors, tmp_path / "ref.safetensors", metadata={"format": "pt"})
    want = (tmp_path / "ref.safetensors").read_bytes()
    with SafetensorsWriter(tmp_path / "spill.safetensors", metadata={"format": "pt"}) as w:
        for name in reversed(list(tensors)):  # any order in, safetensors' order out
            w.write(name, tensors[name])
    layout = {n: spec_of(t) for n, t in tensors.items()}
    with SafetensorsWriter(tmp_path / "layout.safetensors", metadata={"format": "pt"}, layout=layout) as w:
        for name, t in tensors.items():
            if name == "a.weight":  # in row slices, as a converted embedding is written
                w.write_pieces(name, [t[:2], t[2:5], t[5:]])
            else:
                w.write(name, t)
    assert (tmp_path / "spill.safetensors").read_bytes() == want
    assert (tmp_path / "layout.safetensors").read_bytes() == want
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # no scratch files left
        "layout.safetensors",
        "ref.safetensors",
        "spill.safetensors",
    ]


def test_writer_refuses_what_does_not_fit_its_layout(tensors, tmp_path):
    layout = {"x": TensorSpec("F32", (2, 3))}
    with pytest.raises(ValueError, match="tensor 'x' is .*layout says"):
        with SafetensorsWriter(tmp_path / "x.safetensors", layout=layout) as w:
            w.write("x", torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"tensors \['x'\] of the layout were never written"):
        with SafetensorsWriter(tmp_path / "y.safetensors", layout=layout):
            pass
    with pytest.raises(ValueError, match="written twice"):
        with SafetensorsWriter(tmp_path / "z.safetensors") as w:
            w.write("x", torch.zeros(1))
            w.write("x", torch.zeros(1))
    assert not list(tmp_path.glob("*.spill"))


def test_reader_reads_tensors_rows_and_row_sets(tensors, tmp_path):
    save_file(tensors, tmp_path / "model.safetensors")
    w = CheckpointWeights(tmp_path)
    for name, t in tensors.items():
        assert torch.equal(w.read(name), t), name
    a = tensors["a.weight"]
    assert torch.equal(w.read_rows("a.weight", 2, 5), a[2:5])
    assert torch.equal(w.read_rows("a.weight", 5, 100), a[5:])  # clipped at the end
    assert torch.equal(w.read_row_set("a.weight", np.array([6, 0, 6])), a[[6, 0, 6]])
    b = w.read_rows("b.weight", 1, 3, torch.float32)
    assert b.dtype == torch.float32 and torch.equal(b, tensors["b.weight"][1:3].float())  # bf16 -> f32 exact
    assert "a.weight" in w and "nope" not in w and list(w) == sorted(tensors)
    with pytest.raises(ConfigError, match="tensor 'nope' not found"):
        w.read("nope")
    with pytest.raises(ConfigError, match="row 7 is outside tensor 'a.weight'"):
        w.read_row_set("a.weight", np.array([7]))


def test_reader_names_a_broken_checkpoint(tensors, tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    save_file(tensors, good / "model.safetensors")
    data = (good / "model.safetensors").read_bytes()
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "model.safetensors").write_bytes(data[:-8])
    with pytest.raises(ConfigError, match=r"cut/model.safetensors: tensor '.*' lies past the end"):
        CheckpointWeights(cut)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "model.safetensors").write_bytes(struct.pack("<Q", 4) + b"{{{{")
    with pytest.raises(ConfigError, match="junk/model.safetensors: cannot read the safetensors header"):
        CheckpointWeights(junk)
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "gone.safetensors"}})
    )
    with pytest.raises(ConfigError, match="gone.safetensors: listed in the checkpoint's index but missing"):
        CheckpointWeights(shards)
    with pytest.raises(ConfigError, match="no .safetensors weights"):
        CheckpointWeights(tmp_path)


def test_process_usage_is_this_process_only():
    import subprocess
    import sys

    from pocketquant.process_usage import process_usage

    ballast = bytearray(300 * 2**20)  # the parent holds 300 MiB
    ballast[::4096] = b"x" * len(ballast[::4096])
    assert process_usage()["peak_rss_mib"] > 300
    child = subprocess.run(
        [sys.executable, "-c", "from pocketquant.process_usage import log_usage; log_usage('child')"],
        capture_output=True,
        text=True,
        check=True,
    )
    line = child.stderr.strip().splitlines()[-1]
    assert line.startswith("pocketquant child: wall ") and line.endswith(" MiB")
    assert float(line.split("peak RSS ")[1].split()[0]) < 300  # not the parent's (ru_maxrss would be)


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """pocketquant modules `module` imports anywhere in its file (function-level imports too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        out |= {n for n in names if n in known and n != module}
    return out


def test_no_import_cycles_in_evaluation_streaming_calibration_nf4():
    """evaluate/model <-> hf/llamacpp and hf <-> reference were cycles (issue 10 item 7)."""
    files = {}
    for path in (REPO / "pocketquant").rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        files[name] = path
    graph = {m: _imports(p, m, set(files)) for m, p in files.items()}
    mine = [m for m in files if m.startswith(("pocketquant.evaluate", "pocketquant.layerwise"))]
    mine += ["pocketquant.calibrate", "pocketquant.nf4", "pocketquant.process_usage"]

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        return False

    cycles = sorted(m for m in mine if reaches(m, m))
    assert not cycles, f"modules on an import cycle: {cycles}"
    assert "pocketquant.evaluate.model" not in graph["pocketquant.evaluate.hf"]
    assert not any(m.startswith("pocketquant.testing") for p in mine for m in graph[p])


def test_freed_blocks_go_back_to_the_os_on_glibc():
    import platform

    from pocketquant.process_usage import return_freed_memory

    if platform.libc_ver()[0] != "glibc":
        pytest.skip(f"not glibc ({platform.libc_ver()}): nothing to tune")
    assert return_freed_memory() is True
