"""Build the phone package: one deterministic zip with the GGUF, an Ollama Modelfile, a device
README and manifest.json (sha256 + size of every other member, provenance, metrics).

Determinism: the same inputs give the same bytes (DVC caches by content). Members are sorted,
timestamps are 1980-01-01, permissions 0644, no extra fields; the GGUF is STORED (it barely
compresses, and a phone can mmap it straight after unzip), text members are deflated. Nothing
reads the clock or the repository: the git commit is an argument.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import platform
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pocketquant import __version__
from pocketquant.atomic import atomic_path, refuse_overwriting_inputs
from pocketquant.errors import PackageError
from pocketquant.package.device_readme import render_readme
from pocketquant.package.ggufmeta import read_gguf_info
from pocketquant.package.measured import headline
from pocketquant.package.modelfile import render_modelfile
from pocketquant.package.prompt_template import check_stops, choose_prompt_template, single_token_stops

FORMAT = "pocketquant-package/1"
MANIFEST = "manifest.json"
MODELFILE = "Modelfile"
README = "README.md"
DIGEST_KEY = "manifest_sha256"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
CHUNK = 4 << 20
PROGRESS_MIN_BYTES = 16 << 20  # show a bar for files at least this big


# Ollama's num_ctx when none is asked for (capped at the model's own context length).
DEFAULT_NUM_CTX = 2048


def tool_versions() -> dict[str, str | None]:
    def dist(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "pocketquant": __version__,
        "gguf": dist("gguf"),
        "llama-cpp-python": dist("llama_cpp_python"),
        "python": platform.python_version(),
    }


def head_commit(repo_dir: str | os.PathLike[str] = ".") -> str | None:
    """`git rev-parse HEAD` of repo_dir (with "-dirty" if tracked files changed), or None outside
    git. For callers to pass as `git_commit`; build_package never reads the repository itself."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo_dir), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo_dir), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def slug(text: str) -> str:
    """A file/model name safe everywhere (Ollama model names, Android storage)."""
    s = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    if not s:
        raise PackageError(f"cannot make a file name from {text!r}")
    return s


def package_stem(model_name: str, scheme: str) -> str:
    """`<model>-<scheme>`: the Ollama model name, the GGUF member's and the package zip's stem."""
    return f"{slug(model_name)}-{slug(scheme)}"


def plain_json(value: Any, where: str) -> Any:
    """Convert mappings/sequences (e.g. OmegaConf containers) to plain JSON values; PackageError
    naming the key for anything JSON cannot hold (objects, NaN, infinities)."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PackageError(f"{where}: {value} is not representable in JSON")
        return value
    if isinstance(value, Mapping):
        return {str(k): plain_json(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return plain_json(value.item(), where)
    raise PackageError(f"{where}: {type(value).__name__} value {value!r} is not JSON")


def canonical_json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n").encode()


def seal_manifest(manifest: dict[str, Any]) -> bytes:
    """Serialize with a digest of itself, so a corrupted manifest is told from a corrupted file."""
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    return canonical_json({**body, DIGEST_KEY: hashlib.sha256(canonical_json(body)).hexdigest()})


def iter_chunks(f: BinaryIO, total: int, desc: str, progress: bool) -> Iterator[bytes]:
    """Read f in chunks, with a byte progress bar on stderr for big files."""
    from tqdm import tqdm

    with tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not progress or total < PROGRESS_MIN_BYTES,
        file=sys.stderr,
        leave=False,
        mininterval=0.5,
    ) as bar:
        while chunk := f.read(CHUNK):
            bar.update(len(chunk))
            yield chunk


def sha256_file(path: Path, *, progress: bool = True) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter_chunks(f, path.stat().st_size, f"sha256 {path.name}", progress):
            h.update(chunk)
    return h.hexdigest()


def _zipinfo(name: str, compress_type: int, size: int | None = None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = compress_type
    info.create_system = 3  # Unix, so external_attr carries the mode on every OS
    info.external_attr = 0o100644 << 16
    if size is not None:
        info.file_size = size  # decides zip64 up front (only for files > ~2 GiB)
    return info


def build_package(
    gguf_path: str | os.PathLike[str],
    out_zip: str | os.PathLike[str],
    *,
    model_name: str,
    scheme: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    chat_template: str | None = None,
    num_ctx: int | None = None,
    stop: Sequence[str] | None = None,
    extra_parameters: Mapping[str, str | int | float] | None = None,
    git_commit: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    unknown_template: Literal["error", "raw"] = "error",
    gguf_name: str | None = None,
    progress: bool = True,
) -> Path:
    """Write the package zip to out_zip (atomically) and return its path.

    chat_template: Jinja chat template; default: the GGUF's tokenizer.chat_template. Without one
      (a base model) the Modelfile does plain completion: `{{ .Prompt }}`, stop at EOS.
    num_ctx: Modelfile PARAMETER num_ctx; default: min(DEFAULT_NUM_CTX, the model's context length).
    stop: Modelfile stop strings; default: the chat format's end-of-turn tokens that are single
      special tokens of the model, plus its EOS token.
    unknown_template: for a chat template of no known format, "error" raises PackageError and
      "raw" writes a `{{ .Prompt }}` TEMPLATE and records a warning in the manifest.
    """
    gguf_path, out_zip = Path(gguf_path), Path(out_zip)
    if not gguf_path.is_file():
        raise PackageError(f"{gguf_path}: GGUF file not found")
    refuse_overwriting_inputs(out_zip, [gguf_path])  # same path, symlink, hard link or ..
    if num_ctx is not None and num_ctx < 1:
        raise PackageError(f"num_ctx must be positive, got {num_ctx}")
    if stop is not None:
        check_stops(stop)
    info = read_gguf_info(gguf_path)
    if num_ctx is None:  # a short-context model still packages with the default
        num_ctx = min(DEFAULT_NUM_CTX, info.context_length or DEFAULT_NUM_CTX)
    if info.context_length is not None and num_ctx > info.context_length:
        raise PackageError(
            f"num_ctx {num_ctx} exceeds the context length {info.context_length} of {gguf_path}"
        )
    ollama_name = package_stem(model_name, scheme)
    gguf_member = gguf_name or f"{ollama_name}.gguf"
    if (
        not gguf_member.endswith(".gguf")
        or "/" in gguf_member
        or gguf_member in (MANIFEST, MODELFILE, README)
    ):
        raise PackageError(f"bad GGUF member name {gguf_member!r} (a plain name ending in .gguf)")

    template_source = "argument" if chat_template is not None else "gguf"
    jinja = chat_template if chat_template is not None else info.chat_template
    where = f"{gguf_path} ({template_source} chat template)"
    prompt = choose_prompt_template(jinja, info, unknown_template=unknown_template, where=where)
    if jinja is None:
        template_source = "none"
    warnings = list(prompt.warnings)
    if stop is not None:
        stops, left_out = list(dict.fromkeys(stop)), []
    else:
        stops, left_out = single_token_stops(prompt.stops, info)

    modelfile = render_modelfile(
        gguf_name=gguf_member,
        template=prompt.go_template,
        stops=stops,
        num_ctx=num_ctx,
        extra_parameters=extra_parameters,
        header=(
            f"Ollama Modelfile for {model_name} ({scheme}), written by pocketquant {__version__}.",
            f"ollama create {ollama_name} -f Modelfile",
        ),
    ).encode()
    gguf_size = gguf_path.stat().st_size
    gguf_sha = sha256_file(gguf_path, progress=progress)
    metrics = plain_json(metrics, "metrics") if metrics is not None else None
    measured = headline(metrics)
    readme = render_readme(
        model_name=model_name,
        scheme=scheme,
        package_name=out_zip.name,
        gguf_name=gguf_member,
        gguf_size=gguf_size,
        gguf_sha256=gguf_sha,
        num_ctx=num_ctx,
        ollama_name=ollama_name,
        prompt_format=prompt.readme,
        measured=measured,
    ).encode()
    texts = {MODELFILE: modelfile, README: readme}
    files = {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for name, data in texts.items()
    }
    files[gguf_member] = {"sha256": gguf_sha, "size": gguf_size}
    manifest = {
        "format": FORMAT,
        "model": model_name,
        "scheme": scheme,
        "package": out_zip.name,
        "ollama_model": ollama_name,
        "gguf": gguf_member,
        "files": dict(sorted(files.items())),
        "modelfile": {
            "num_ctx": num_ctx,
            "stop": stops,
            "stops_left_out": left_out,
            "template_kind": prompt.readme.kind,
            "template_family": prompt.family,
            "template_source": template_source,
            "system": prompt.system,
        },
        "params": plain_json(params, "params"),
        "metrics": metrics,
        "measured": measured,
        "tools": tool_versions(),
        "git_commit": git_commit,
        # pocketquant.provenance.build_provenance: the same in every clone of one commit
        "provenance": plain_json(provenance, "provenance") if provenance is not None else None,
        "warnings": warnings,
    }
    texts[MANIFEST] = seal_manifest(manifest)

    with atomic_path(out_zip) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for name in sorted([*texts, gguf_member]):
            if name in texts:
                zf.writestr(_zipinfo(name, zipfile.ZIP_DEFLATED), texts[name], compresslevel=9)
                continue
            h = hashlib.sha256()
            with (
                open(gguf_path, "rb") as src,
                zf.open(_zipinfo(name, zipfile.ZIP_STORED, gguf_size), "w") as dst,
            ):
                for chunk in iter_chunks(src, gguf_size, f"zip {name}", progress):
                    h.update(chunk)
                    dst.write(chunk)
            if h.hexdigest() != gguf_sha:
                raise PackageError(f"{gguf_path}: file changed while it was being packaged")
    return out_zip
