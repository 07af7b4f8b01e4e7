"""Check a package before it goes to a device: the zip itself as every unzip tool will see it
(pocketquant.package.ziparchive), every member against the manifest (sha256, size), the manifest
against its own digest, the Modelfile, and that llama.cpp loads the GGUF and generates from a
prompt rendered through the Modelfile's TEMPLATE."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pocketquant.atomic import scratch_dir
from pocketquant.errors import OutputError, PackageError, os_reason
from pocketquant.inputs import open_regular
from pocketquant.package.build import DIGEST_KEY, FORMAT, MANIFEST, MODELFILE, canonical_json
from pocketquant.package.chat_template import render_go, render_jinja_runtime
from pocketquant.package.gotemplate import TemplateError
from pocketquant.package.modelfile import Modelfile, parse_modelfile
from pocketquant.package.ziparchive import ZipReader, open_zip

PROMPT = ({"role": "user", "content": "Name three colors."},)
# text members are read whole, so their size is capped (a zip bomb must not fill memory)
MANIFEST_MAX_BYTES = 1 << 20
TEXT_MAX_BYTES = 16 << 20
PROGRESS_MIN_BYTES = 16 << 20


@dataclass
class VerifyResult:
    package: Path
    files: dict[str, int] = field(default_factory=dict)  # member -> size, all hash-checked
    prompt: str | None = None
    generated: str | None = None
    n_generated: int = 0
    checks: list[str] = field(default_factory=list)


def _read_manifest(zr: ZipReader, pkg: Path) -> dict[str, Any]:
    m = zr.member(MANIFEST)
    if m is None:
        raise PackageError(f"{pkg}: {MANIFEST} is missing")
    raw = zr.read_all(m, limit=MANIFEST_MAX_BYTES)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PackageError(f"{pkg}: {MANIFEST} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PackageError(f"{pkg}: {MANIFEST} is not a {FORMAT} manifest")
    try:
        canonical = canonical_json(manifest)
    except ValueError as exc:
        raise PackageError(f"{pkg}: {MANIFEST} holds values JSON should not: {exc}") from exc
    if canonical != raw:
        raise PackageError(f"{pkg}: {MANIFEST} was modified (not in the form pocketquant writes)")
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    if manifest.get(DIGEST_KEY) != hashlib.sha256(canonical_json(body)).hexdigest():
        raise PackageError(f"{pkg}: {MANIFEST} was modified (its {DIGEST_KEY} does not match its content)")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("size"), int)
        for v in files.values()
    ):
        raise PackageError(f"{pkg}: {MANIFEST} has no valid 'files' table")
    return manifest


def _copy_member(
    zr: ZipReader, name: str, pkg: Path, extract_to: Path | None, progress: bool
) -> tuple[str, int]:
    """sha256 and length of a member's bytes, written to extract_to/name too when given."""
    from tqdm import tqdm

    m = zr.member(name)
    assert m is not None
    h = hashlib.sha256()
    sink = None
    limit = None if name.endswith(".gguf") else TEXT_MAX_BYTES
    try:
        if extract_to is not None:
            sink = open(extract_to / name, "wb")  # noqa: SIM115 - closed below
        with tqdm(
            total=m.size,
            desc=f"sha256 {name}",
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=not progress or m.size < PROGRESS_MIN_BYTES,
            leave=False,
            mininterval=0.5,
        ) as bar:
            for chunk in zr.read(m, limit=limit):
                h.update(chunk)
                bar.update(len(chunk))
                if sink is not None:
                    sink.write(chunk)
        if sink is not None:
            sink.close()
    except OSError as exc:
        where = extract_to.parent if extract_to is not None else pkg  # the --tmp-dir, not our scratch
        raise OutputError(f"{where}: cannot extract {name} there to load it: {os_reason(exc)}") from exc
    finally:
        if sink is not None and not sink.closed:
            sink.close()
    return h.hexdigest(), m.size


def _check_members(
    zr: ZipReader, pkg: Path, manifest: dict[str, Any], extract_to: Path | None, progress: bool
) -> dict[str, int]:
    """Hash every member against the manifest; collect all problems, each naming its file."""
    files: dict[str, dict[str, Any]] = manifest["files"]
    problems: list[str] = list(zr.problems)
    names = [m.name for m in zr.members]
    for name in sorted(set(names) - set(files) - {MANIFEST}):
        problems.append(f"{name}: in the zip but not listed in {MANIFEST}")
    for name in sorted(set(files) - set(names)):
        problems.append(f"{name}: listed in {MANIFEST} but missing from the zip")
    checked: dict[str, int] = {}
    for m in sorted(zr.members, key=lambda m: m.name):
        name = m.name
        if name not in files or name == MANIFEST:
            continue
        want = files[name]
        if m.size != want["size"]:
            problems.append(f"{name}: size {m.size} bytes, manifest says {want['size']}")
            continue
        gguf_dir = extract_to if name.endswith(".gguf") else None
        try:
            digest, size = _copy_member(zr, name, pkg, gguf_dir, progress)
        except PackageError as exc:
            problems.append(f"{name}: corrupt in the zip ({str(exc).removeprefix(f'{pkg}: ')})")
            continue
        if digest != want["sha256"]:
            problems.append(f"{name}: sha256 {digest} does not match the manifest's {want['sha256']}")
            continue
        checked[name] = size
    if problems:
        raise PackageError(f"{pkg} failed verification: " + "; ".join(problems))
    return checked


def _check_modelfile(zr: ZipReader, pkg: Path, manifest: dict[str, Any]) -> tuple[Modelfile, str]:
    m = zr.member(MODELFILE)
    if MODELFILE not in manifest["files"] or m is None:
        raise PackageError(f"{pkg}: {MODELFILE} is not listed in {MANIFEST}")
    try:
        mf = parse_modelfile(zr.read_all(m, limit=TEXT_MAX_BYTES).decode("utf-8"), name=MODELFILE)
    except UnicodeDecodeError as exc:
        raise PackageError(f"{pkg}: {MODELFILE} is not UTF-8") from exc
    target = mf.from_[2:] if mf.from_.startswith("./") else mf.from_
    if target not in manifest["files"] or not target.endswith(".gguf"):
        raise PackageError(f"{pkg}: {MODELFILE}: FROM {mf.from_} is not a GGUF file of the package")
    if mf.template is None:
        raise PackageError(f"{pkg}: {MODELFILE} has no TEMPLATE")
    num_ctx = mf.parameter("num_ctx")
    if num_ctx is None or not num_ctx.isdigit() or int(num_ctx) < 1:
        raise PackageError(f"{pkg}: {MODELFILE}: PARAMETER num_ctx missing or not a positive integer")
    return mf, target


def _render_prompt(mf: Modelfile, pkg: Path) -> str:
    assert mf.template is not None
    messages = ([{"role": "system", "content": mf.system}] if mf.system else []) + list(PROMPT)
    try:
        return render_go(mf.template, messages)
    except TemplateError as exc:
        raise PackageError(f"{pkg}: {MODELFILE}: TEMPLATE does not render: {exc}") from exc


def _run_model(
    gguf: Path,
    mf: Modelfile,
    prompt: str,
    pkg: Path,
    member: str,
    max_tokens: int,
    result: VerifyResult,
    log: Callable[[str], None],
    *,
    derived_from_gguf: bool,
) -> None:
    try:
        import llama_cpp
    except ImportError as exc:
        raise PackageError(
            "llama-cpp-python is not installed: cannot load the GGUF (use --no-load to skip)"
        ) from exc
    from pocketquant.package.ggufmeta import read_gguf_info

    info = read_gguf_info(gguf)
    n_ctx = min(int(mf.parameter("num_ctx") or 512), 1024)
    try:
        llm = llama_cpp.Llama(
            model_path=str(gguf),
            n_ctx=n_ctx,
            n_threads=max(1, min(4, os.cpu_count() or 1)),
            seed=0,
            verbose=False,
        )
    except Exception as exc:  # llama-cpp-python raises ValueError on load failure
        raise PackageError(f"{pkg}: {member}: llama.cpp cannot load it: {exc}") from exc
    try:
        result.checks.append(f"llama.cpp loaded {member}")
        # a TEMPLATE derived from the GGUF's chat template must render what that template renders
        if derived_from_gguf and info.chat_template is not None:
            messages = ([{"role": "system", "content": mf.system}] if mf.system else []) + list(PROMPT)
            expected = render_jinja_runtime(
                info.chat_template,
                messages,
                bos_token=info.bos_token,
                eos_token=info.eos_token,
                add_bos=info.add_bos,
            )
            if expected != prompt:
                raise PackageError(
                    f"{pkg}: {MODELFILE}: TEMPLATE renders {prompt!r} but the chat template in {member} "
                    f"renders {expected!r}"
                )
            result.checks.append(f"{MODELFILE} TEMPLATE matches the chat template in {member}")
        for stop in mf.parameters.get("stop", []):
            ids = llm.tokenize(stop.encode(), add_bos=False, special=True)
            if len(ids) != 1:
                raise PackageError(f"{pkg}: {MODELFILE}: stop {stop!r} is not a single token of {member}")
        tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        if len(tokens) + max_tokens > n_ctx:
            raise PackageError(f"{pkg}: the verification prompt does not fit num_ctx {n_ctx}")
        out: list[int] = []
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        for tok in llm.generate(tokens, temp=0.0, top_k=1, reset=True):
            # end-of-generation tokens (EOS, <|im_end|>, <|eot_id|>...) end the answer
            if llama_cpp.llama_vocab_is_eog(vocab, tok) or len(out) >= max_tokens:
                break
            out.append(tok)
        text = llm.detokenize(out).decode("utf-8", errors="replace")
        if not out or not text.strip():
            raise PackageError(f"{pkg}: {member}: generated no text for the Modelfile's prompt")
        result.n_generated, result.generated = len(out), text
        result.checks.append(f"generated {len(out)} tokens: {text!r}")
        log(f"  generated {len(out)} tokens: {text!r}")
    finally:
        llm.close()


def verify_package(
    package: str | os.PathLike[str],
    *,
    load_model: bool = True,
    max_tokens: int = 8,
    progress: bool = True,
    tmp_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> VerifyResult:
    """Verify a package; PackageError naming the file at fault on the first failing stage
    (integrity problems are all listed together)."""
    pkg = Path(package)
    if max_tokens < 1:
        raise PackageError(f"max_tokens must be at least 1, got {max_tokens}")
    result = VerifyResult(pkg)
    fd = open_regular(pkg, "package", PackageError)
    try:
        zr = open_zip(fd, pkg)
        manifest = _read_manifest(zr, pkg)
        result.checks.append(f"{MANIFEST} intact")
        with contextlib.ExitStack() as stack:
            workdir = None
            if load_model:
                # beside a fixed name in the temp dir: a killed run's leftovers are swept next time
                base = Path(tmp_dir) if tmp_dir is not None else Path(tempfile.gettempdir())
                if not base.is_dir():
                    raise OutputError(f"{base}: --tmp-dir is not a directory")
                workdir = stack.enter_context(scratch_dir(base / "pocketquant-verify"))
            result.files = _check_members(zr, pkg, manifest, workdir, progress)
            for name, size in result.files.items():
                log(f"  ok {name} ({size:,} bytes, sha256 matches)")
            result.checks.append(f"{len(result.files)} files match {MANIFEST}")
            mf, member = _check_modelfile(zr, pkg, manifest)
            result.prompt = _render_prompt(mf, pkg)
            result.checks.append(f"{MODELFILE} FROM ./{member}, TEMPLATE renders")
            log(
                f"  ok {MODELFILE}: FROM ./{member}, TEMPLATE renders a {len(result.prompt)}-character prompt"
            )
            if workdir is not None:
                info = manifest.get("modelfile") or {}
                derived = info.get("template_source") == "gguf" and info.get("template_family") is not None
                _run_model(
                    workdir / member,
                    mf,
                    result.prompt,
                    pkg,
                    member,
                    max_tokens,
                    result,
                    log,
                    derived_from_gguf=derived,
                )
    finally:
        os.close(fd)
    return result
