"""params.yaml for the stage scripts: a missing or unreadable file, bad YAML or a missing key is a
ConfigError naming the file and the key (dotted), not a KeyError traceback."""

from __future__ import annotations

import os
from typing import Any

import yaml

from pocketquant.errors import ConfigError
from pocketquant.inputs import read_input_text


class Params(dict):
    """A dict whose missing keys raise ConfigError naming `<file>: key a.b.c`."""

    def __init__(self, data: dict[str, Any], source: str, prefix: str = "") -> None:
        super().__init__(
            (k, Params(v, source, f"{prefix}{k}.") if isinstance(v, dict) else v) for k, v in data.items()
        )
        self._source = source
        self._prefix = prefix

    def __missing__(self, key: str) -> Any:
        raise ConfigError(f"{self._source}: missing key '{self._prefix}{key}'")


def load_params_file(path: str | os.PathLike[str]) -> Params:
    text = read_input_text(path, "parameters file", error=ConfigError)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of parameter groups, got {type(data).__name__}")
    return Params(data, str(path))
