"""Model families the native converter handles, registered by their HF `architectures` names.

Adding a family is adding one module here (a `Family` subclass decorated with `@register`, imported
in `registry()`) and its tiny test model in pocketquant/testing/. Any other architecture converts
with llama.cpp's own converter (`convert.backend=llamacpp`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pocketquant.convert.errors import ConversionError
from pocketquant.convert.families.base import Family

_REGISTRY: dict[str, type[Family]] = {}


def register(cls: type[Family]) -> type[Family]:
    for arch in cls.architectures:
        if arch in _REGISTRY and _REGISTRY[arch] is not cls:
            raise RuntimeError(
                f"architecture {arch} registered twice ({_REGISTRY[arch].__name__}, {cls.__name__})"
            )
        _REGISTRY[arch] = cls
    return cls


def registry() -> dict[str, type[Family]]:
    """HF architecture name -> family class, for every native family."""
    # Each family module registers its classes when imported (here, on first use: they import this
    # package). Plain import statements, not importlib by name: pocketquant.pipeline_deps reads
    # imports statically, and every stage that converts must depend on every family module.
    from pocketquant.convert.families import (  # noqa: F401
        gemma,
        granite,
        llama,
        mistral,
        olmo2,
        phi2,
        phi3,
        qwen2,
        qwen3,
    )

    return dict(_REGISTRY)


def native_architectures() -> tuple[str, ...]:
    return tuple(sorted(registry()))


def architecture_of(hparams: dict[str, Any], model_dir: Path) -> str:
    archs = hparams.get("architectures") or []
    if not archs:
        raise ConversionError(
            f"{model_dir / 'config.json'}: no 'architectures' entry; cannot tell the model family"
        )
    return str(archs[0])


def family_for(hparams: dict[str, Any], model_dir: Path) -> type[Family]:
    """The family class of a checkpoint; an unknown architecture names itself and the way out."""
    arch = architecture_of(hparams, model_dir)
    families = registry()
    if arch not in families:
        raise ConversionError(
            f"{model_dir / 'config.json'}: architecture {arch} has no native converter "
            f"(native: {', '.join(sorted(families))}); set convert.backend=llamacpp "
            "(`pocketquant convert --backend llamacpp`) to use llama.cpp's own converter"
        )
    return families[arch]


__all__ = [
    "Family",
    "family_for",
    "native_architectures",
    "register",
    "registry",
]
