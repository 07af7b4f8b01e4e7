"""What every stage script shares: params.yaml (the truth for `dvc repro`) and error reporting.

Stage scripts read params.yaml with yaml.safe_load, never through @hydra.main: DVC composes conf/
into params.yaml only in `dvc exp run`, and a Hydra entry point would ignore `-S` overrides.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pocketquant.errors import PocketquantError
from pocketquant.params_trace import traced

PARAMS_FILE = Path("params.yaml")


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return traced(yaml.safe_load(f))  # records the keys read, for tests (pocketquant.params_trace)


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


def run(stage: str, main: Callable[[], object]) -> None:
    """Run a stage; a PocketquantError (bad input) is one line naming the problem and exit status 2."""
    try:
        main()
    except PocketquantError as exc:
        print(f"stage {stage}: error: {exc}", file=sys.stderr)
        sys.exit(2)
