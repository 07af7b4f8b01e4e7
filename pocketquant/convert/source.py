"""The tensors of an HF checkpoint, indexed without loading them and read in row ranges.

Handles one `model.safetensors`, or shards listed by `model.safetensors.index.json` (the index and
the shards must agree). Data is read lazily, a range of rows at a time, so converting a model needs
memory for one chunk, not one model. Reading follows llama.cpp's converter: F16 stays F16, F32
stays F32, BF16 (and any other float type) becomes F32; transforms run in that working dtype.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketquant.convert.errors import ConversionError

if TYPE_CHECKING:
    import torch

# safetensors dtype names we accept (floating point weights); anything else is refused by name.
FLOAT_DTYPES = ("F32", "F16", "BF16")


@dataclass(frozen=True)
class SourceTensor:
    """One tensor of the checkpoint: its file, HF shape (row-major, PyTorch order) and dtype."""

    name: str
    file: Path
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype name: F32, F16, BF16, ...

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def row_elements(self) -> int:
        return math.prod(self.shape[1:]) if len(self.shape) > 1 else 1


def safetensors_files(model_dir: Path) -> list[Path]:
    """The checkpoint's safetensors files: the shards named by the index when there is one."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConversionError(f"{index}: not a safetensors index ({exc})") from exc
        if not isinstance(weight_map, dict) or not weight_map:
            raise ConversionError(f"{index}: 'weight_map' is empty or not an object")
        files = sorted({model_dir / str(f) for f in weight_map.values()})
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ConversionError(f"{index}: shard file(s) missing: {', '.join(missing)}")
        return files
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ConversionError(f"{model_dir}: no *.safetensors weights (only safetensors checkpoints convert)")
    return files


def index_checkpoint(model_dir: Path) -> dict[str, SourceTensor]:
    """name -> SourceTensor for every tensor of the checkpoint, from the safetensors headers only."""
    from safetensors import safe_open

    tensors: dict[str, SourceTensor] = {}
    for path in safetensors_files(model_dir):
        try:
            with safe_open(path, framework="pt") as f:
                for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                    sl = f.get_slice(name)
                    if name in tensors:
                        raise ConversionError(f"{path}: tensor {name!r} is also in {tensors[name].file.name}")
                    tensors[name] = SourceTensor(name, path, tuple(sl.get_shape()), sl.get_dtype())
        except ConversionError:
            raise
        except Exception as exc:  # safetensors raises its own types for a damaged header
            raise ConversionError(f"{path}: not a readable safetensors file ({exc})") from exc
    _check_index_agrees(model_dir, tensors)
    for t in tensors.values():
        if t.dtype not in FLOAT_DTYPES:
            raise ConversionError(
                f"{t.file}: tensor {t.name!r} has dtype {t.dtype}; only {', '.join(FLOAT_DTYPES)} "
                "checkpoints convert (dequantize a quantized checkpoint first)"
            )
    return tensors


def _check_index_agrees(model_dir: Path, tensors: dict[str, SourceTensor]) -> None:
    index = model_dir / "model.safetensors.index.json"
    if not index.is_file():
        return
    weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    for name, file in sorted(weight_map.items()):
        if name not in tensors:
            raise ConversionError(f"{index}: tensor {name!r} is listed for {file} but is not in it")
        if tensors[name].file.name != file:
            raise ConversionError(
                f"{index}: tensor {name!r} is listed for {file} but is in {tensors[name].file.name}"
            )
    extra = sorted(set(tensors) - set(weight_map))
    if extra:
        raise ConversionError(f"{index}: tensor {extra[0]!r} is in the shards but not in the index")


def working_dtype(t: torch.Tensor) -> torch.Tensor:
    """llama.cpp's converter keeps F16 and F32 and turns every other dtype into F32."""
    import torch

    return t if t.dtype in (torch.float16, torch.float32) else t.to(torch.float32)


class CheckpointReader:
    """Open safetensors files for the duration of a conversion; reads row ranges of tensors."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._handles: dict[Path, Any] = {}

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _handle(self, path: Path) -> Any:
        if path not in self._handles:
            from safetensors import safe_open

            self._handles[path] = self._stack.enter_context(safe_open(path, framework="pt"))
        return self._handles[path]

    def read(self, t: SourceTensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Rows [start, stop) of `t` (the whole tensor by default) in the working dtype."""
        handle = self._handle(t.file)
        if start == 0 and (stop is None or stop >= t.rows):
            data = handle.get_tensor(t.name)
        else:
            data = handle.get_slice(t.name)[start:stop]
        return working_dtype(data)
