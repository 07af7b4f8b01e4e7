"""`convert.backend=llamacpp`: llama.cpp's own converter, for architectures we do not convert natively.

scripts/setup.sh installs the converter of the llama.cpp version llama-cpp-python 0.3.36 pins
(convert_hf_to_gguf.py, its conversion/ package and its own gguf-py) from the sdist into
`<venv>/share/pocketquant/llama.cpp-convert/`; POCKETQUANT_LLAMACPP_CONVERTER points elsewhere.
It runs in a subprocess with that gguf-py first on the import path (it is a different `gguf` than
the one we import), writing to a temporary file that is renamed into place on success.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pocketquant.atomic import atomic_path
from pocketquant.convert.errors import ConversionError
from pocketquant.models.checkpoint import validate_model_dir

ENV_VAR = "POCKETQUANT_LLAMACPP_CONVERTER"
SCRIPT = "convert_hf_to_gguf.py"
OUTTYPES = ("f32", "f16", "bf16")


def default_converter_dir() -> Path:
    """Where scripts/setup.sh puts the converter: inside the active virtual environment."""
    return Path(sys.prefix) / "share" / "pocketquant" / "llama.cpp-convert"


def converter_dir() -> Path:
    """The installed converter's directory; a ConversionError saying how to install it if absent."""
    directory = Path(os.environ.get(ENV_VAR) or default_converter_dir())
    if not (directory / SCRIPT).is_file() or not (directory / "gguf-py" / "gguf").is_dir():
        raise ConversionError(
            f"llama.cpp's converter is not installed at {directory} (expected {SCRIPT}, conversion/ and "
            f"gguf-py/); run `bash scripts/setup.sh` or point {ENV_VAR} at a llama.cpp checkout"
        )
    return directory


def converter_env(directory: Path) -> dict[str, str]:
    """Environment of the converter process: its own gguf-py ahead of ours."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(directory / "gguf-py"), str(directory)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def convert_with_llamacpp(
    model_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    outtype: str = "f16",
    *,
    name: str | None = None,
) -> Path:
    """Convert `model_dir` with llama.cpp's converter (any architecture it supports)."""
    model_dir, out_path = Path(model_dir), Path(out_path)
    if outtype.lower() not in OUTTYPES:
        raise ConversionError(f"unknown outtype {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    validate_model_dir(model_dir, any_architecture=True)
    directory = converter_dir()
    with atomic_path(out_path) as tmp:
        cmd = [
            sys.executable,
            str(directory / SCRIPT),
            str(model_dir),
            "--outfile",
            str(tmp),
            "--outtype",
            outtype.lower(),
        ]
        if name:
            cmd += ["--model-name", name]
        proc = subprocess.run(cmd, env=converter_env(directory), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            reason = lines[-1] if lines else f"exit status {proc.returncode}"
            raise ConversionError(f"{model_dir}: llama.cpp's converter failed: {reason}")
    return out_path
