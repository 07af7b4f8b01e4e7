"""Metrics JSON files: one per variant, shaped for `dvc metrics show/diff` and `dvc exp show`.

    {"variant": "q4_k_m", "size": {...}, "quality": {...}, "speed": {...}, "mc": {...}}

Floats are rounded to 6 significant digits (stable diffs, no float noise), keys sorted, written
atomically so a failed evaluation leaves no metrics file.

Beside each metrics JSON the evaluate stage keeps the per-token scores (`*.tokens.safetensors`:
float32 NLL and KLD, uint8 same-top-1, about 9 bytes per scored token, 46 KB for 20 chunks of 512).
They are git-tracked (`cache: false`) like the metrics, so `pocketquant compare` reads them for any
experiment or commit with `git show REV:PATH`, without a DVC pull; two variants scored on the same
tokens (same `tokens_sha256`) are then compared token by token (pocketquant.evaluate.stats).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from pocketquant.atomic import atomic_path
from pocketquant.errors import EvaluationError
from pocketquant.evaluate.stats import TokenScores
from pocketquant.provenance import measurement_provenance

TOKENS_FORMAT = "pocketquant-token-scores-1"


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


def token_scores_path(metrics_path: str | os.PathLike[str]) -> Path:
    """Where the per-token scores of a metrics file live: metrics/variant.json ->
    metrics/variant.tokens.safetensors (the evaluate stage writes both)."""
    p = Path(metrics_path)
    return p.with_name(p.stem + ".tokens.safetensors")


def write_token_scores(path: str | os.PathLike[str], scores: TokenScores, variant: str) -> Path:
    """Per-token scores as safetensors (one metadata key: the same bytes on every run), atomically."""
    from safetensors.numpy import save_file

    meta = {"format": TOKENS_FORMAT, "variant": variant, "tokens_sha256": scores.tokens_sha256}
    arrays = {
        "nll": np.ascontiguousarray(scores.nll, dtype=np.float32),
        "kld": np.ascontiguousarray(scores.kld, dtype=np.float32),
        "same_top1": np.ascontiguousarray(scores.same_top1, dtype=np.uint8),
    }
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata={"pocketquant": json.dumps(meta, sort_keys=True)})
    return Path(path)


def read_token_scores(data: bytes, where: str) -> tuple[TokenScores, str]:
    """(scores, variant) from the bytes of a token-scores file (read from disk or `git show`)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        arrays = load(data)
        meta = json.loads(_safetensors_metadata(data).get("pocketquant", "{}"))
    except (SafetensorError, ValueError, KeyError) as exc:
        raise EvaluationError(f"cannot read token scores {where}: {exc}") from exc
    if meta.get("format") != TOKENS_FORMAT or not {"nll", "kld", "same_top1"} <= arrays.keys():
        raise EvaluationError(f"{where} is not a pocketquant token-scores file ({TOKENS_FORMAT})")
    n = {a.size for a in arrays.values()}
    if len(n) != 1:
        raise EvaluationError(f"{where}: per-token arrays differ in length {sorted(n)}")
    scores = TokenScores(
        nll=arrays["nll"],
        kld=arrays["kld"],
        same_top1=arrays["same_top1"].astype(bool),
        tokens_sha256=str(meta["tokens_sha256"]),
    )
    return scores, str(meta.get("variant", "?"))


def _safetensors_metadata(data: bytes) -> dict:
    """The __metadata__ of a safetensors buffer (8-byte little-endian header length, JSON header)."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n].decode("utf-8")).get("__metadata__") or {}
