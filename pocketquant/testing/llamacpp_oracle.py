"""llama.cpp's own converter as the oracle of our converter's tests.

The converter installed by scripts/setup.sh (the `convert.backend=llamacpp` one) runs in ONE
subprocess for a whole batch of conversions, so torch and transformers are imported once.

One adjustment, for tiny test vocabularies only: llama.cpp names a BPE pre-tokenizer by hashing the
token ids of a probe text, which identifies real vocabularies (Qwen2's, Llama 3's, ...), never a
freshly trained 500-token one; its converter then stops. For a hash it does not know, the oracle is
told the pre-tokenizer name the tiny tokenizer was built to mimic (`pre` of the job). Every hash it
knows is left to it. Nothing else of the converter is changed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from pocketquant.convert.llamacpp import SCRIPT, converter_dir, converter_env

# Runs inside the converter's process (its gguf-py is first on sys.path there).
_RUNNER = r"""
import json, logging, sys
sys.argv = ["convert_hf_to_gguf.py"]
import convert_hf_to_gguf as cli
from conversion.base import TextModel

jobs = json.load(open(JOBS))
current = {}
_known = TextModel.get_vocab_base_pre

def _get_vocab_base_pre(self, tokenizer):
    try:
        return _known(self, tokenizer)
    except NotImplementedError:
        if not current.get("pre"):
            raise
        return current["pre"]

TextModel.get_vocab_base_pre = _get_vocab_base_pre
logging.disable(logging.WARNING)
for job in jobs:
    current.clear(); current.update(job)
    sys.argv = ["convert_hf_to_gguf.py", job["model_dir"], "--outfile", job["out"],
                "--outtype", job["outtype"]]
    cli.main()
"""


@dataclass(frozen=True)
class OracleJob:
    model_dir: str
    out: str
    outtype: str = "f32"
    pre: str | None = None  # pre-tokenizer name for a tiny BPE vocabulary llama.cpp cannot know


def oracle_convert(jobs: list[OracleJob], *, timeout: float = 900) -> list[Path]:
    """Convert every job with llama.cpp's converter (one process); returns the output paths."""
    directory = converter_dir()
    with tempfile.TemporaryDirectory(prefix="pq-oracle-") as tmp:
        jobs_file = Path(tmp) / "jobs.json"
        jobs_file.write_text(json.dumps([asdict(j) for j in jobs]))
        code = f"JOBS = {str(jobs_file)!r}\n" + _RUNNER
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=directory,
            env=converter_env(directory),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"llama.cpp's {SCRIPT} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return [Path(j.out) for j in jobs]
