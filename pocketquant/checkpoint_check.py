"""File-level checks of an HF checkpoint directory, run before `convert` reads it.

Every file convert will open must be a regular, readable file of the right form: the JSON files
parse, every safetensors header is well formed and its tensors exactly tile the data that follows
(no truncation, no overlap, known dtypes), and config.json's hyperparameters pass
pocketquant.hparams_check. Each failure is one ConfigError naming the file (and the tensor or key).
Whether the tensors are the ones the model family needs, with the shapes its config implies, is the
converter's own check (pocketquant/convert/).
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

from pocketquant.atomic import refuse_overwriting_inputs
from pocketquant.errors import ConfigError
from pocketquant.hparams_check import check_hf_config
from pocketquant.inputs import open_regular, pread_exact, read_input_text

JSON_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "model.safetensors.index.json",
)
# bytes per element of each safetensors dtype (the format's own list)
SAFETENSORS_DTYPES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
MAX_HEADER = 100_000_000  # the safetensors library's own limit
MAX_JSON_BYTES = 256 << 20


def _json_file(path: Path) -> Any:
    text = read_input_text(path, "JSON file", max_bytes=MAX_JSON_BYTES, error=ConfigError)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def check_safetensors(path: str | os.PathLike[str]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (dtype, shape)} of a safetensors file whose header and layout are sound;
    ConfigError naming the file (and tensor) otherwise."""
    path = Path(path)
    fd = open_regular(path, "safetensors file", ConfigError)
    try:
        size = os.fstat(fd).st_size
        if size < 8:
            raise ConfigError(f"{path}: not a safetensors file ({size} bytes; the header length alone is 8)")
        head = bytearray(8)
        pread_exact(fd, memoryview(head), 0)
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or n > size - 8:
            raise ConfigError(
                f"{path}: corrupt safetensors header: it declares {n:,} header bytes, but the file has "
                f"{size - 8:,} after the length (truncated or not a safetensors file?)"
            )
        raw = bytearray(n)
        got = pread_exact(fd, memoryview(raw), 8)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if got != n:
        raise ConfigError(f"{path}: the file shrank while it was being read")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ConfigError(f"{path}: corrupt safetensors header: not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ConfigError(f"{path}: corrupt safetensors header: not a JSON object")
    data_size = size - 8 - n
    spans: list[tuple[int, int, str]] = []
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise ConfigError(f"{path}: corrupt safetensors header: __metadata__ is not a string map")
            continue
        where = f"{path}: tensor {name!r}"
        if not isinstance(info, dict):
            raise ConfigError(f"{where}: corrupt header entry")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPES:
            raise ConfigError(f"{where}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise ConfigError(f"{where}: corrupt shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_count(o) for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise ConfigError(f"{where}: corrupt data_offsets {offsets!r}")
        nbytes = math.prod(shape) * SAFETENSORS_DTYPES[dtype]
        span = offsets[1] - offsets[0]
        if span != nbytes:
            raise ConfigError(
                f"{where}: {dtype} {shape} needs {nbytes:,} bytes, its data_offsets span {span:,}"
            )
        if offsets[1] > data_size:
            raise ConfigError(
                f"{where}: data ends at byte {offsets[1]:,} of a {data_size:,}-byte data section "
                "(the file is truncated)"
            )
        spans.append((offsets[0], offsets[1], name))
        tensors[name] = (dtype, tuple(shape))
    end, previous = 0, None
    for begin, stop, name in sorted(spans):
        if begin != end:
            gap = f"starts {begin - end} bytes after the previous tensor's end"
            how = f"overlaps tensor {previous!r}" if begin < end else gap
            raise ConfigError(f"{path}: tensor {name!r}: its data {how}")
        end, previous = stop, name
    if end != data_size:
        raise ConfigError(f"{path}: {data_size - end:,} bytes after the last tensor's data")
    return tensors


def check_checkpoint_files(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Check every file of `model_dir` that convert reads; return config.json's contents."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ConfigError(f"model directory {model_dir} does not exist (or is not a directory)")
    config_path = model_dir / "config.json"
    if not os.path.lexists(config_path):
        raise ConfigError(f"{model_dir} is not a Hugging Face model directory: config.json is missing")
    parsed = {name: _json_file(model_dir / name) for name in JSON_FILES if os.path.lexists(model_dir / name)}
    config = parsed["config.json"]
    if not isinstance(config, dict):
        raise ConfigError(f"{config_path}: config.json is not a JSON object")
    check_hf_config(config, config_path)
    spm = model_dir / "tokenizer.model"
    if os.path.lexists(spm):
        fd = open_regular(spm, "tokenizer model", ConfigError)
        empty = os.fstat(fd).st_size == 0
        os.close(fd)
        if empty:
            raise ConfigError(f"{spm}: empty file (a SentencePiece model was expected)")
    for st in sorted(model_dir.glob("*.safetensors")):
        check_safetensors(st)
    index = parsed.get("model.safetensors.index.json")
    if isinstance(index, dict) and isinstance(index.get("weight_map"), dict):
        for shard in sorted(set(map(str, index["weight_map"].values()))):
            if not (model_dir / shard).is_file():
                raise ConfigError(
                    f"{model_dir / 'model.safetensors.index.json'}: names {shard}, which is missing"
                )
    return config


def preflight_convert(model_dir: str | os.PathLike[str], out: str | os.PathLike[str]) -> dict[str, Any]:
    """What `pocketquant convert` checks before the converter starts: the checkpoint's files and
    hyperparameters, and that the output is not one of them."""
    config = check_checkpoint_files(model_dir)
    model_dir = Path(model_dir)
    refuse_overwriting_inputs(out, [model_dir, *sorted(model_dir.iterdir())])
    return config
