"""`convert.backend=llamacpp`: llama.cpp's own converter, for architectures we do not convert natively.

scripts/setup.sh installs the converter of the llama.cpp version llama-cpp-python 0.3.36 pins
(convert_hf_to_gguf.py, its conversion/ package and its own gguf-py) from the sdist into
`<venv>/share/pocketquant/llama.cpp-convert/`; POCKETQUANT_LLAMACPP_CONVERTER points elsewhere.
It runs in a subprocess with that gguf-py first on the import path (a different `gguf` than the one
we import), one process for a whole batch of conversions.

One addition to the converter: llama.cpp names a byte-level BPE pre-tokenizer by hashing the token
ids of a probe text, which only recognizes vocabularies in its table. For a hash it does not know,
its converter stops; here it is given the pre-tokenizer our own converter reads from the
tokenizer's structure (a job's `pre`), when there is one. Every hash it knows is left to it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from pocketquant.atomic import atomic_path
from pocketquant.convert.errors import ConversionError
from pocketquant.models.checkpoint import validate_model_dir

ENV_VAR = "POCKETQUANT_LLAMACPP_CONVERTER"
SCRIPT = "convert_hf_to_gguf.py"
OUTTYPES = ("f32", "f16", "bf16")

# Runs inside the converter's process (its directory and gguf-py first on sys.path).
_RUNNER = r"""
import json, logging, sys
sys.argv = ["convert_hf_to_gguf.py"]
import convert_hf_to_gguf as cli
from conversion.base import TextModel

current = {}
_known_pre = TextModel.get_vocab_base_pre

def _get_vocab_base_pre(self, tokenizer):
    try:
        return _known_pre(self, tokenizer)
    except NotImplementedError:
        if not current.get("pre"):
            raise
        return current["pre"]

TextModel.get_vocab_base_pre = _get_vocab_base_pre
logging.disable(logging.WARNING)
for job in json.load(open(JOBS)):
    current.clear()
    current.update(job)
    sys.argv = ["convert_hf_to_gguf.py", job["model_dir"], "--outfile", job["out"],
                "--outtype", job["outtype"]]
    if job.get("name"):
        sys.argv += ["--model-name", job["name"]]
    print("converting", job["model_dir"], file=sys.stderr, flush=True)
    cli.main()
"""


@dataclass(frozen=True)
class LlamaCppJob:
    """One conversion by llama.cpp's converter."""

    model_dir: str
    out: str
    outtype: str = "f16"
    name: str | None = None  # general.name (--model-name)
    pre: str | None = None  # BPE pre-tokenizer to use when llama.cpp does not know the vocabulary


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


def run_converter(jobs: list[LlamaCppJob], *, timeout: float | None = None) -> None:
    """Run every job with llama.cpp's converter in one process; outputs go straight to job.out.
    A failure raises ConversionError with the converter's last message."""
    directory = converter_dir()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(directory / "gguf-py"), str(directory)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    with tempfile.TemporaryDirectory(prefix="pq-llamacpp-") as tmp:
        jobs_file = Path(tmp) / "jobs.json"
        jobs_file.write_text(json.dumps([asdict(j) for j in jobs]))
        proc = subprocess.run(
            [sys.executable, "-c", f"JOBS = {str(jobs_file)!r}\n{_RUNNER}"],
            cwd=directory,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        current = next((ln for ln in reversed(lines) if ln.startswith("converting ")), "")
        reason = lines[-1] if lines else f"exit status {proc.returncode}"
        raise ConversionError(f"llama.cpp's converter failed{' ' + current if current else ''}: {reason}")


def fallback_pre_tokenizer(model_dir: Path) -> str | None:
    """Our reading of a byte-level BPE tokenizer's pre-tokenizer (None for other tokenizers or
    structures we do not recognize either)."""
    from pocketquant.convert.vocab import pre_tokenizer_from_structure, read_json

    path = model_dir / "tokenizer.json"
    if not path.is_file():
        return None
    try:
        return pre_tokenizer_from_structure(read_json(path), model_dir)
    except ConversionError:
        return None


def convert_with_llamacpp(
    model_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    outtype: str = "f16",
    *,
    name: str | None = None,
) -> Path:
    """Convert `model_dir` (any architecture llama.cpp supports) to a GGUF at `out_path`, atomically."""
    model_dir, out_path = Path(model_dir), Path(out_path)
    if outtype.lower() not in OUTTYPES:
        raise ConversionError(f"unknown outtype {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    validate_model_dir(model_dir, any_architecture=True)
    with atomic_path(out_path) as tmp:
        job = LlamaCppJob(str(model_dir), str(tmp), outtype.lower(), name, fallback_pre_tokenizer(model_dir))
        run_converter([job])
    return out_path
