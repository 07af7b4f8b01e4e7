"""Install llama.cpp's HF -> GGUF converter (the `convert.backend=llamacpp` backend and the oracle
of the converter tests) from the pinned llama-cpp-python sdist, into the virtual environment.

    python scripts/install_llamacpp_converter.py [--dest DIR]

Downloads the sdist once (cached in ~/.cache/pocketquant/, or taken from
$POCKETQUANT_LLAMACPP_SDIST), checks its sha256, and extracts only what the converter needs:
convert_hf_to_gguf.py, conversion/, gguf-py/ and the license. Idempotent: an installation of the
same sdist is left alone. (`pip download` of the sdist would try to build it, hence the direct URL.)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

VERSION = "0.3.36"
URL = (
    "https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/"
    f"llama_cpp_python-{VERSION}.tar.gz"
)
SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
ROOT = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
WANTED = ("convert_hf_to_gguf.py", "LICENSE", "conversion/", "gguf-py/gguf/", "gguf-py/LICENSE")
STAMP = ".installed-from"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sdist() -> Path:
    """The verified sdist: $POCKETQUANT_LLAMACPP_SDIST, the cached copy, or a fresh download."""
    local = os.environ.get("POCKETQUANT_LLAMACPP_SDIST")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pocketquant" / Path(URL).name
    for candidate in [Path(local)] if local else [cache]:
        if candidate.is_file() and sha256_of(candidate) == SHA256:
            return candidate
    if local:
        sys.exit(f"install_llamacpp_converter: {local} is not the llama-cpp-python {VERSION} sdist (sha256)")
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".sdist.", suffix=".tmp")
    os.close(fd)
    try:
        print(f"install_llamacpp_converter: downloading {URL}", file=sys.stderr)
        with urllib.request.urlopen(URL, timeout=120) as resp, open(tmp, "wb") as out:
            shutil.copyfileobj(resp, out)
        if sha256_of(Path(tmp)) != SHA256:
            sys.exit(f"install_llamacpp_converter: downloaded file does not have sha256 {SHA256}")
        os.replace(tmp, cache)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return cache


def install(dest: Path) -> None:
    if (dest / STAMP).is_file() and (dest / STAMP).read_text().strip() == SHA256:
        return
    archive = sdist()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                rel = member.name[len(ROOT) :] if member.name.startswith(ROOT) else None
                if (
                    rel
                    and member.isfile()
                    and any(rel == w or (w.endswith("/") and rel.startswith(w)) for w in WANTED)
                ):
                    target = tmp / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(target, "wb") as out:  # type: ignore[union-attr]
                        shutil.copyfileobj(src, out)
        if not (tmp / "convert_hf_to_gguf.py").is_file():
            sys.exit(f"install_llamacpp_converter: {archive} has no {ROOT}convert_hf_to_gguf.py")
        (tmp / STAMP).write_text(SHA256 + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"install_llamacpp_converter: llama.cpp converter {VERSION} in {dest}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(sys.prefix) / "share" / "pocketquant" / "llama.cpp-convert"
    ap.add_argument("--dest", type=Path, default=default, help=f"install directory (default: {default})")
    install(ap.parse_args().dest)


if __name__ == "__main__":
    main()
