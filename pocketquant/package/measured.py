"""The variant's headline numbers, read from whatever metrics JSON the package stage is given.

The evaluate stage writes nested metrics (size.bytes, quality.ppl, speed.tg_tokens_per_s, ...);
other callers pass flat files (ppl, size_bytes, ...), and error bars may sit next to a value
(`ppl_stderr`) or inside it ({"value": ..., "stderr": ...}). Every key is looked up defensively:
what is missing is left out, never guessed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# headline name -> where it may be found (dotted paths into the metrics; first hit wins)
CANDIDATES: dict[str, tuple[str, ...]] = {
    "size_bytes": ("size.bytes", "size_bytes", "bytes"),
    "size_gib": ("size.gib", "size_gib", "gib"),
    "bits_per_weight": ("size.bpw", "bpw", "bits_per_weight"),
    "reduction_vs_bf16_pct": ("size.reduction_vs_bf16_pct", "reduction_vs_bf16_pct", "reduction_pct"),
    "ppl": ("quality.ppl", "ppl"),
    "ppl_base": ("quality.ppl_base", "ppl_base"),
    "delta_ppl_pct": ("quality.delta_ppl_pct", "delta_ppl_pct"),
    "kld_mean": ("quality.kld_mean", "kld_mean", "kld"),
    "kld_p99": ("quality.kld_p99", "kld_p99"),
    "same_top1_pct": (
        "quality.top1_agreement_pct",
        "quality.same_top1_pct",
        "top1_agreement_pct",
        "same_top1_pct",
        "top1_pct",
    ),
    "prompt_tokens_per_s": ("speed.pp_tokens_per_s", "pp_tokens_per_s", "prompt_tokens_per_s"),
    "gen_tokens_per_s": ("speed.tg_tokens_per_s", "tg_tokens_per_s", "gen_tokens_per_s"),
    "threads": ("speed.threads", "threads"),
    "engine": ("quality.engine", "engine"),
    "corpus": ("quality.corpus", "corpus"),
    "n_ctx": ("quality.n_ctx", "n_ctx"),
    "tokens_scored": ("quality.tokens_scored", "tokens_scored"),
}
TEXT_FIELDS = ("engine", "corpus")  # all other headline values are numbers
ERROR_SUFFIXES = ("_stderr", "_se", "_err", "_error")
ERROR_KEYS = ("stderr", "se", "err", "error")
VALUE_KEYS = ("value", "mean")


def _get(metrics: Mapping[str, Any], path: str) -> Any:
    value: Any = metrics
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def headline(metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """{name: value} and {name + "_stderr": error} for every headline number present."""
    out: dict[str, Any] = {}
    for name, paths in CANDIDATES.items():
        for path in paths:
            raw = _get(metrics or {}, path)
            error = None
            if isinstance(raw, Mapping):  # {"value": 13.9, "stderr": 0.4}
                error = next((e for k in ERROR_KEYS if (e := _number(raw.get(k))) is not None), None)
                raw = next((raw[k] for k in VALUE_KEYS if k in raw), None)
            value = (raw if isinstance(raw, str) and raw else None) if name in TEXT_FIELDS else _number(raw)
            if value is None:
                continue
            out[name] = value
            if error is None:
                error = next(
                    (
                        e
                        for suffix in ERROR_SUFFIXES
                        if (e := _number(_get(metrics or {}, path + suffix))) is not None
                    ),
                    None,
                )
            if error is not None and name not in TEXT_FIELDS:
                out[name + "_stderr"] = error
            break
    if "size_gib" not in out and isinstance(out.get("size_bytes"), int):
        out["size_gib"] = out["size_bytes"] / 2**30
    return out
