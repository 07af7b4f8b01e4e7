"""Acquired checkpoints carry no incidental bytes: no library version, no loader flags (a library
upgrade must not change artifacts/base/hf and with it every hash downstream)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pocketquant.models import ModelSource, acquire_model
from pocketquant.models.checkpoint import INCIDENTAL_KEYS, drop_incidental_keys


def test_local_acquire_drops_the_transformers_version(tiny_llama_dir: Path, tmp_path: Path) -> None:
    # a user's checkpoint, as transformers' save_pretrained writes it (with its version)
    user_dir = tmp_path / "user"
    shutil.copytree(tiny_llama_dir, user_dir)
    for name in ("config.json", "generation_config.json"):
        data = json.loads((user_dir / name).read_text())
        (user_dir / name).write_text(json.dumps({**data, "transformers_version": "4.99.0"}, indent=2))
    source = json.loads((user_dir / "config.json").read_text())
    out = acquire_model(ModelSource.from_config(path=user_dir), tmp_path / "hf")
    for name, keys in INCIDENTAL_KEYS.items():
        if (out / name).is_file():
            data = json.loads((out / name).read_text())
            assert not set(keys) & set(data), f"{name} keeps {set(keys) & set(data)}"
    config = json.loads((out / "config.json").read_text())
    assert config == {k: v for k, v in source.items() if k != "transformers_version"}


def test_drop_incidental_keys_keeps_everything_else(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"b": 1, "transformers_version": "9.9", "a": [1]}')
    (tmp_path / "tokenizer_config.json").write_text('{"is_local": true, "local_files_only": true, "x": "y"}')
    drop_incidental_keys(tmp_path)
    assert (tmp_path / "config.json").read_text() == '{\n  "a": [\n    1\n  ],\n  "b": 1\n}\n'
    assert json.loads((tmp_path / "tokenizer_config.json").read_text()) == {"x": "y"}
