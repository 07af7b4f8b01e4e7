"""What every stage script shares: params.yaml (the truth for `dvc repro`) and error reporting.

Stage scripts read params.yaml with yaml.safe_load, never through @hydra.main: DVC composes conf/
into params.yaml only in `dvc exp run`, and a Hydra entry point would ignore `-S` overrides.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pocketquant.failures import debug_requested, run_reporting
from pocketquant.inputs import refuse_special_files
from pocketquant.params_file import load_params_file
from pocketquant.params_trace import traced

PARAMS_FILE = Path("params.yaml")


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """params.yaml; a missing key is a ConfigError naming it (pocketquant.params_file). Reads are
    recorded for tests when tracing is on (pocketquant.params_trace)."""
    return traced(load_params_file(path))


def threads(n: int | None) -> int | None:
    """`threads: 0` in the config means all cores: the library's default (None)."""
    return int(n) if n else None


def variant_label(quant: dict[str, Any]) -> str:
    """The variant's name in files, metrics and reports: the scheme, plus how it was made when that
    differs from the plain one (q4_k_m-imatrix, q4_k_m-from-nf4), so experiments stay distinguishable."""
    label = str(quant["name"])
    if quant.get("imatrix"):
        label += "-imatrix"
    if quant.get("source", "base") != "base":
        label += f"-from-{quant['source']}"
    return label


def variant_path(variant_dir: Path) -> Path:
    """The quantize stage's output: the one .gguf inside it, or the dir itself (an NF4 checkpoint)."""
    ggufs = sorted(variant_dir.glob("*.gguf"))
    return ggufs[0] if ggufs else variant_dir


def peak_rss_mib() -> float:
    """Peak resident memory of this process and of the children it waited for (MiB; Linux reports
    ru_maxrss in KiB, macOS in bytes)."""
    scale = 1.0 / (1 << 20) if sys.platform == "darwin" else 1.0 / 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * scale


def feedback(stage: str, status: str, seconds: float) -> str:
    return f"stage {stage}: {status} in {seconds:.1f} s, peak RSS {peak_rss_mib():,.0f} MiB"


def run(stage: str, main: Callable[[], object]) -> None:
    """Run a stage and end with one line: its wall time and peak RSS. Any failure ends with the
    timing line and then one line naming the problem (exit status 2 for bad input; a traceback only
    with --debug or POCKETQUANT_DEBUG=1): see pocketquant.failures."""
    debug = debug_requested(sys.argv)
    sys.argv = [a for a in sys.argv if a != "--debug"]
    t0 = time.perf_counter()

    def body() -> None:
        try:
            refuse_special_files(sys.argv[1:])  # a FIFO given as an input must not hang the stage
            main()
        except BaseException:
            print(feedback(stage, "failed", time.perf_counter() - t0), file=sys.stderr, flush=True)
            raise

    code = run_reporting(f"stage {stage}", body, debug=debug)
    if code:
        sys.exit(code)
    print(feedback(stage, "done", time.perf_counter() - t0), file=sys.stderr)
