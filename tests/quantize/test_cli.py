"""`pocketquant quantize` from the command line: bad input exits 2 naming the file and the fault and
leaves no output (nor temp file) behind; --dry-run writes nothing; TYPE in any case."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qhelpers import broken_gguf_cases, good_gguf_bytes, leftovers, tensor_types

from pocketquant.cli import main
from pocketquant.gguf_file import GGUFFile


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["quantize", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_refused(capsys, out_dir: Path, args: list, *fragments: str) -> str:
    out = out_dir / "out.gguf"
    rc, _, err = run_cli(capsys, *args[:1], out, *args[1:])
    assert rc == 2, err
    for f in fragments:
        assert f in err, (f, err)
    assert not out.exists(), "no output may be left after a failure"
    assert leftovers(out_dir) == [], "no temp file may be left after a failure"
    return err


def test_broken_inputs_exit_2_and_leave_nothing(tmp_path: Path, capsys):
    good = good_gguf_bytes(tmp_path)
    for case, (data, message) in broken_gguf_cases(good).items():
        bad = tmp_path / f"{case}.gguf"
        bad.write_bytes(data)
        out_dir = tmp_path / f"out-{case}"
        out_dir.mkdir()
        assert_refused(capsys, out_dir, [bad, "q8_0"], str(bad), message)


def test_truncated_model_exits_2(tiny_f32: Path, tmp_path: Path, capsys):
    bad = tmp_path / "half.gguf"
    bad.write_bytes(tiny_f32.read_bytes()[: tiny_f32.stat().st_size // 2])
    assert_refused(capsys, tmp_path, [bad, "Q4_K_M"], str(bad), "tensor data past end of file", "truncated")


def test_nan_names_the_tensor_and_leaves_nothing(tiny_f32: Path, tmp_path: Path, capsys):
    """The NaN sits in a tensor written late, so the failure happens mid-stream."""
    bad = tmp_path / "nan.gguf"
    data = bytearray(tiny_f32.read_bytes())
    with GGUFFile(tiny_f32) as f:
        t = f.tensor("blk.6.ffn_up.weight")
        pos = f.data_offset + t.offset + 4 * 1000
    data[pos : pos + 4] = np.float32(np.nan).tobytes()
    bad.write_bytes(bytes(data))
    err = assert_refused(capsys, tmp_path, [bad, "q4_k_m"], "'blk.6.ffn_up.weight'", "NaN or Inf", str(bad))
    assert "row 3" in err  # element 1000 of rows of 256


def test_inf_in_a_copied_norm_is_refused(tiny_f32: Path, tmp_path: Path, capsys):
    bad = tmp_path / "inf.gguf"
    data = bytearray(tiny_f32.read_bytes())
    with GGUFFile(tiny_f32) as f:
        t = f.tensor("blk.3.attn_norm.weight")
        pos = f.data_offset + t.offset + 8
    data[pos : pos + 4] = np.float32(-np.inf).tobytes()
    bad.write_bytes(bytes(data))
    assert_refused(capsys, tmp_path, [bad, "q8_0"], "'blk.3.attn_norm.weight'", "NaN or Inf")


def test_unknown_type_lists_the_valid_ones(tiny_f32: Path, tmp_path: Path, capsys):
    err = assert_refused(capsys, tmp_path, [tiny_f32, "Q4_K_X"], "unknown quantization type 'Q4_K_X'")
    assert "Q4_K_M" in err and "Q6_K" in err and "BF16" in err


def test_bad_tensor_type_options(tiny_f32: Path, tmp_path: Path, capsys):
    assert_refused(capsys, tmp_path, [tiny_f32, "q4_k_m", "--tensor-type", "attn_q"], "REGEX=TYPE")
    assert_refused(
        capsys, tmp_path, [tiny_f32, "q4_k_m", "--output-tensor-type", "q9_9"], "unknown tensor type"
    )
    assert_refused(capsys, tmp_path, [tiny_f32, "q4_k_m", "--threads", "0"], "--threads")


def test_quantized_input_needs_allow_requantize(tiny_f32: Path, tmp_path: Path, capsys):
    q8 = tmp_path / "q8.gguf"
    rc, _, err = run_cli(capsys, tiny_f32, q8, "q8_0", "--threads", "2")
    assert rc == 0, err
    err = assert_refused(capsys, tmp_path, [q8, "q4_k_m"], str(q8), "already quantized", "--allow-requantize")
    rc, _, err = run_cli(capsys, q8, tmp_path / "q4.gguf", "q4_k_m", "--allow-requantize")
    assert rc == 0, err
    assert set(tensor_types(tmp_path / "q4.gguf").values()) == {"F32", "Q4_K", "Q6_K"}


def test_dry_run_prints_the_plan_and_writes_nothing(tiny_f32: Path, tmp_path: Path, capsys):
    out = tmp_path / "never.gguf"
    rc, stdout, err = run_cli(capsys, tiny_f32, out, "q4_k_m", "--dry-run")
    assert rc == 0, err
    assert not out.exists() and leftovers(tmp_path) == []
    lines = stdout.splitlines()
    assert lines[0].split() == ["tensor", "shape", "type", "bytes"]
    row = next(line for line in lines if line.startswith("blk.0.ffn_down.weight"))
    assert row.split()[1:5] == ["256x256", "F32", "->", "Q6_K"] and row.split()[-1] == f"{256 * 210:,}"
    size_line = next(line for line in lines if line.startswith("output file size"))
    real = tmp_path / "real.gguf"
    assert run_cli(capsys, tiny_f32, real, "Q4_K_M")[0] == 0
    assert f"{real.stat().st_size:,} bytes" in size_line  # the predicted size is exact


def test_help_lists_every_type():
    from pocketquant.commands.quantize import TYPES_HELP
    from pocketquant.quantize import FTYPES

    listed = TYPES_HELP.split(" (")[0].split(", ")
    assert listed == list(FTYPES)


def test_console_entry_point_exit_status(tmp_path: Path):
    bad = tmp_path / "not.gguf"
    bad.write_text("plain text\n")
    cmd = [sys.executable, "-m", "pocketquant.cli", "quantize", str(bad), str(tmp_path / "o.gguf"), "q4_0"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and str(bad) in p.stderr and "not a GGUF file" in p.stderr
    h = subprocess.run([*cmd[:4], "--help"], capture_output=True, text=True, timeout=120)
    assert h.returncode == 0 and "--allow-requantize" in h.stdout and "--tensor-type" in h.stdout


@pytest.mark.parametrize("spelling", ["q8_0", "Q8_0", "q8_0 "])
def test_type_in_any_case(tiny_f16: Path, tmp_path: Path, capsys, spelling: str):
    out = tmp_path / "o.gguf"
    rc, _, err = run_cli(capsys, tiny_f16, out, spelling, "--threads", "1")
    assert rc == 0, err
    types = tensor_types(out)
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["output_norm.weight"] == "F32"
