"""Interrupted runs and hostile environments, with real processes: SIGTERM and SIGHUP during
quantize remove the temp file; a SIGKILLed run's temp is swept by the next run of the same target;
an input truncated while quantize reads it is an error message (not SIGBUS); a file-size limit
(a disk that fills up) and a zip bomb handed to verify end in one line, bounded memory, no debris."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pocketquant.atomic import atomic_path
from pocketquant.failures import Terminated, run_reporting
from pocketquant.gguf_file import GGMLType
from pocketquant.testing.hostile_inputs import deflate_bomb
from pocketquant.testing.synthetic_gguf import LlamaShape, write_random_llama

REPO = Path(__file__).resolve().parents[2]
# about 60 MB of F16: quantize to Q4_K_M on one thread takes a second or more, time to interrupt it
MEDIUM = LlamaShape(n_layer=2, n_embd=1024, n_ff=2816, n_head=8, n_head_kv=8, n_vocab=4096)


@pytest.fixture(scope="module")
def medium_gguf(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("medium") / "medium.gguf"
    write_random_llama(path, MEDIUM, dtype=GGMLType.F16)
    path.chmod(0o444)
    return path


def _temps(d: Path, target: str = "out.gguf") -> list[Path]:
    return sorted(d.glob(f".{target}.pocketquant-*.tmp"))


def _start_quantize(src: Path, out: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "pocketquant.cli",
        "quantize",
        str(src),
        str(out),
        "q4_k_m",
        "--threads",
        "1",
    ]
    return subprocess.Popen(
        cmd, cwd=out.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def _wait_for_data(p: subprocess.Popen, out_dir: Path, min_bytes: int = 1 << 20) -> Path:
    """Wait until the run is writing tensor data into its temp file; return the temp."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        temps = _temps(out_dir)
        if temps and temps[0].stat().st_size >= min_bytes:
            return temps[0]
        if p.poll() is not None:
            pytest.fail(f"quantize ended before it could be interrupted: {p.communicate()}")
        time.sleep(0.005)
    p.kill()
    pytest.fail("quantize never started writing")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_removes_the_temp_file(medium_gguf: Path, tmp_path: Path, sig: signal.Signals):
    out = tmp_path / "out.gguf"
    p = _start_quantize(medium_gguf, out)
    _wait_for_data(p, tmp_path)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, err
    assert f"terminated by {sig.name}" in err and "Traceback" not in err
    assert sorted(tmp_path.iterdir()) == [], "no output and no temp file after the signal"


def test_sigkill_leftover_is_swept_by_the_next_run(medium_gguf: Path, pristine, tmp_path: Path):
    out = tmp_path / "out.gguf"
    p = _start_quantize(medium_gguf, out)
    temp = _wait_for_data(p, tmp_path)
    p.kill()
    p.wait(timeout=60)
    assert temp.exists(), "SIGKILL cannot clean up: the temp file stays"
    other = tmp_path / ".out.gguf.not-ours.tmp"  # a look-alike of another naming: never touched
    other.write_bytes(b"x")
    live = tmp_path / f".out.gguf.pocketquant-{temp.name.split('-')[1]}-{os.getpid()}-livetest.tmp"
    live.write_bytes(b"a live process's temp")  # our own pid: alive, so not swept

    p2 = _start_quantize(pristine.gguf, out)  # the same target, a small input: quick
    _, err = p2.communicate(timeout=300)
    assert p2.returncode == 0, err
    assert not temp.exists(), "the next run of the same target sweeps the dead run's temp"
    assert other.exists() and live.exists() and out.exists()


def test_input_truncated_while_quantizing(medium_gguf: Path, tmp_path: Path):
    src = tmp_path / "in.gguf"
    src.write_bytes(medium_gguf.read_bytes())
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    p = _start_quantize(src, out_dir / "out.gguf")
    _wait_for_data(p, out_dir)
    os.truncate(src, 1 << 20)  # what another process (or a full disk on a copy) can do
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2, err  # not 135 (SIGBUS)
    lines = [line for line in err.splitlines() if line.startswith("pocketquant: error:")]
    assert len(lines) == 1 and "in.gguf" in lines[0] and "truncated while reading tensor" in lines[0], err
    assert sorted(out_dir.iterdir()) == []


def test_sigterm_in_process_unwinds_atomic_outputs(tmp_path: Path):
    """The mechanism itself: the handler raises Terminated, atomic_path removes its temp."""

    def body() -> None:
        with atomic_path(tmp_path / "new" / "x.bin") as tmp:
            tmp.write_bytes(b"partial")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the signal arrives before this ends
        raise AssertionError("not reached")

    status = run_reporting("test", body)
    assert status == 128 + signal.SIGTERM
    assert sorted(tmp_path.iterdir()) == []  # temp and the created directory are gone
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    assert issubclass(Terminated, BaseException) and not issubclass(Terminated, Exception)


@contextlib.contextmanager
def _file_size_limit(limit: int):  # noqa: ANN202
    """Lower RLIMIT_FSIZE for this process: writes past `limit` fail with EFBIG (Python ignores
    SIGXFSZ), as writes to a disk that fills up fail."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.mark.parametrize("command", ["quantize", "convert", "package"])
def test_file_size_limit_is_one_line_and_no_debris(command: str, pristine, tmp_path: Path, capsys):
    """A write that fails part-way (EFBIG here; ENOSPC in the table's tmpfs rows where mounting is
    allowed) is one line naming the output, and neither the temp file nor the directory created
    for the output is left (runs anywhere, root or not)."""
    from pocketquant.cli import main

    out_dir = tmp_path / "out"
    args = {
        "quantize": ["quantize", pristine.gguf, out_dir / "o.gguf", "q8_0"],
        "convert": ["convert", pristine.hf, out_dir / "o.gguf", "--outtype", "f32"],
        "package": ["package", pristine.gguf, out_dir / "o.zip", "--model-name", "t", "--scheme", "f32",
                    "--num-ctx", "256", "--quiet"],
    }[command]  # fmt: skip
    capsys.readouterr()
    with _file_size_limit(64 << 10):
        status = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("pocketquant: error:")]
    assert status == 2 and len(lines) == 1, err
    assert "out/o." in lines[0] and "File too large" in lines[0], lines[0]
    assert not out_dir.exists(), "the directory created for the output is removed too"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from /proc")
def test_zip_bomb_manifest_keeps_memory_small(tmp_path: Path):
    """A ~400 KB zip whose manifest inflates to 400 MB while its headers claim 1,000 bytes:
    verify inflates as a stream with the declared size as a cap, so memory stays flat."""
    bomb = tmp_path / "bomb.zip"
    size = deflate_bomb(bomb, "manifest.json", 400 << 20, declared=1000)
    assert size < 1 << 20
    code = (
        "import sys\n"
        "from pocketquant.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        # VmHWM: this process's own peak (ru_maxrss can include what the parent had at fork)
        "hwm = [line for line in open('/proc/self/status') if line.startswith('VmHWM')][0].split()[1]\n"
        "print('peak_kb', hwm, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, "verify", str(bomb), "--no-load", "--quiet"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert p.returncode == 2 and "manifest.json" in p.stderr, p.stderr
    peak_mb = int(p.stderr.split("peak_kb")[1].split()[0]) / 1024
    assert peak_mb < 150, f"verify peaked at {peak_mb:.0f} MB on a zip bomb"
