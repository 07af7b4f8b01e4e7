"""Checkpoints whose config and tensors disagree are refused before anything is written: exit
status 2, one line naming the tensor (or key) at fault, no output and no temp file left. Each of
these would otherwise give a GGUF llama.cpp cannot load."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from family_cases import reshard
from safetensors.torch import load_file, save_file

from pocketquant.cli import main as cli_main


def _mutate(src: Path, dst: Path, change) -> Path:  # noqa: ANN001 - change(tensors, config) edits in place
    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    config = json.loads((dst / "config.json").read_text())
    change(tensors, config)
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    return dst


def _drop_layer(t, c):
    for name in [n for n in t if n.startswith("model.layers.1.")]:
        del t[name]


def _set(name, make):  # noqa: ANN001, ANN202
    def change(t, c):
        t[name] = make(t[name])

    return change


BAD = {
    # case: (change, regex the one-line message must match)
    "missing-layer": (
        _drop_layer,
        r"'model\.layers\.1\.[a-z_.]+' \(layer 1 of num_hidden_layers=2\) is missing",
    ),
    "missing-tensor": (
        lambda t, c: t.pop("model.layers.0.mlp.up_proj.weight"),
        r"'model\.layers\.0\.mlp\.up_proj\.weight'.* is missing",
    ),
    "wrong-shape": (
        _set("model.layers.1.self_attn.k_proj.weight", lambda w: w[:64].contiguous()),
        r"'model\.layers\.1\.self_attn\.k_proj\.weight' has shape \[64, 256\], "
        r"but .*config\.json implies \[128, 256\]",
    ),
    "extra-dimension": (
        _set("model.layers.0.mlp.down_proj.weight", lambda w: w.unsqueeze(0).contiguous()),
        r"'model\.layers\.0\.mlp\.down_proj\.weight' has shape \[1, 256, 512\], but .* implies \[256, 512\]",
    ),
    "more-layers-in-config": (  # an older config without the per-layer list transformers checks
        lambda t, c: c.update(num_hidden_layers=3) or c.pop("layer_types"),
        r"'model\.layers\.2\.[a-z_.]+' \(layer 2 of num_hidden_layers=3\) is missing",
    ),
    "extra-layer-in-files": (
        lambda t, c: t.update({"model.layers.2.mlp.up_proj.weight": torch.zeros(512, 256)}),
        r"'model\.layers\.2\.mlp\.up_proj\.weight' belongs to layer 2, but .*num_hidden_layers=2",
    ),
    "2d-norm": (
        _set("model.layers.0.input_layernorm.weight", lambda w: w.reshape(1, -1).contiguous()),
        r"'model\.layers\.0\.input_layernorm\.weight' has shape \[1, 256\], but .* implies \[256\]",
    ),
    "5d-tensor": (
        _set("model.layers.1.mlp.gate_proj.weight", lambda w: w.reshape(2, 2, 2, 64, 256).contiguous()),
        r"'model\.layers\.1\.mlp\.gate_proj\.weight' has shape \[2, 2, 2, 64, 256\]",
    ),
    "unknown-tensor": (
        lambda t, c: t.update({"model.layers.0.self_attn.rogue.weight": torch.zeros(4, 4)}),
        r"'model\.layers\.0\.self_attn\.rogue\.weight' is not part of the model",
    ),
    "integer-weights": (
        _set("model.layers.0.self_attn.o_proj.weight", lambda w: w.to(torch.int8)),
        r"'model\.layers\.0\.self_attn\.o_proj\.weight' has dtype I8",
    ),
    "config-transformers-refuses": (
        lambda t, c: c.update(num_hidden_layers=3),
        r"config\.json: transformers refuses it \(.*num_hidden_layers.*layer_types",
    ),
    "nan": (
        _set("model.embed_tokens.weight", lambda w: w.index_fill(0, torch.tensor([7]), float("nan"))),
        r"'model\.embed_tokens\.weight' contains NaN or Inf",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_checkpoint_is_refused_naming_the_tensor(case, family_dirs, tmp_path, capsys):
    change, message = BAD[case]
    bad = _mutate(family_dirs["qwen2"], tmp_path / case, change)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert cli_main(["convert", str(bad), str(out_dir / "model.gguf")]) == 2
    # (a NaN is found while streaming, after the progress bar started: the error is the last line)
    lines = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("pocketquant: error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], lines
    assert re.search(message, errors[0]), errors[0]
    assert list(out_dir.iterdir()) == [], "an output or temp file was left behind"


def test_shards_and_index_must_agree(family_dirs, tmp_path, capsys):
    sharded = reshard(family_dirs["qwen2"], tmp_path / "sharded")
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    moved = "model.layers.0.mlp.up_proj.weight"
    index["weight_map"][moved] = next(
        f for f in set(index["weight_map"].values()) if f != index["weight_map"][moved]
    )
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    out = tmp_path / "x.gguf"
    assert cli_main(["convert", str(sharded), str(out)]) == 2
    assert f"tensor '{moved}' is listed for" in capsys.readouterr().err
    lost = tmp_path / "lost"
    shutil.copytree(family_dirs["qwen2"], lost)
    reshard(family_dirs["qwen2"], tmp_path / "lost-shards")
    (lost / "model.safetensors").unlink()
    shutil.copy(tmp_path / "lost-shards" / "model.safetensors.index.json", lost)
    shutil.copy(tmp_path / "lost-shards" / "model-00001-of-00002.safetensors", lost)
    assert cli_main(["convert", str(lost), str(out)]) == 2
    assert "model-00002-of-00002.safetensors" in capsys.readouterr().err and not out.exists()


def test_damaged_safetensors_files_are_refused(family_dirs, tmp_path, capsys):
    truncated = tmp_path / "truncated"
    shutil.copytree(family_dirs["gemma"], truncated)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[:-1000])
    out = tmp_path / "out.gguf"
    assert cli_main(["convert", str(truncated), str(out)]) == 2
    # caught by convert's preflight (pocketquant.checkpoint_check), before the converter reads
    assert re.search(
        r"model\.safetensors: tensor '[^']+': data ends at byte .* truncated", capsys.readouterr().err
    )
    (truncated / "model.safetensors").write_bytes(b"\xff" * 8 + data[8:200])
    assert cli_main(["convert", str(truncated), str(out)]) == 2
    assert re.search(r"model\.safetensors: .*not a safetensors file", capsys.readouterr().err)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["truncated"]
