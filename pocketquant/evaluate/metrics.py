"""Metrics JSON files: one per variant, shaped for `dvc metrics show/diff` and `dvc exp show`.

    {"variant": "q4_k_m", "size": {...}, "quality": {...}, "speed": {...}, "mc": {...}}

Floats are rounded to 6 significant digits (stable diffs, no float noise), keys sorted, written
atomically so a failed evaluation leaves no metrics file.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from pocketquant.atomic import atomic_path
from pocketquant.errors import EvaluationError
from pocketquant.provenance import measurement_provenance


def _round(value: object) -> object:
    if isinstance(value, float):
        return value if not math.isfinite(value) or value == 0 else float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_round(v) for v in value]
    return value


def write_json(path: str | os.PathLike[str], data: object) -> Path:
    """Deterministic JSON (sorted keys, rounded floats, trailing newline), written atomically."""
    text = json.dumps(_round(data), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def build_metrics(
    variant: str,
    *,
    size: dict,
    quality: dict | None = None,
    speed: dict | None = None,
    mc: dict | None = None,
) -> dict:
    out: dict[str, object] = {"variant": variant, "size": size}
    for key, block in (("quality", quality), ("speed", speed), ("mc", mc)):
        if block is not None:
            out[key] = block
    # code commit, libraries, CPU and threads these numbers were measured with (docs/pipeline.md)
    out["provenance"] = measurement_provenance(threads=(speed or {}).get("threads"))
    return out


def read_metrics(path: str | os.PathLike[str]) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EvaluationError(f"cannot read metrics file {path}: {exc}") from exc
    if not isinstance(data, dict) or "variant" not in data or "size" not in data:
        raise EvaluationError(f"{path} is not a pocketquant metrics file (needs 'variant' and 'size')")
    return data
