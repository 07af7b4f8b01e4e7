"""Shared values for the package tests (a module of its own: conftest is not importable)."""

from __future__ import annotations

METRICS = {"ppl": 27.5, "kld_mean": 0.0123, "same_top_p": 0.93, "size_bytes": 98362432, "engine": "llama.cpp"}
PARAMS = {"quant": {"scheme": "q4_1"}, "package": {"num_ctx": 1024}}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def build_kwargs(**overrides):  # noqa: ANN003, ANN201
    kwargs = dict(
        model_name="SmolLM2-135M-Instruct",
        scheme="q4_1",
        params=PARAMS,
        metrics=METRICS,
        num_ctx=1024,
        git_commit=COMMIT,
        progress=False,
    )
    kwargs.update(overrides)
    return kwargs
