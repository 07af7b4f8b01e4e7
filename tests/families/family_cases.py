"""The families and cases the per-family tests run over, and their helpers (shared by the test
modules and conftest.py; a module of its own, as every test area has its own conftest)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pocketquant.testing.tiny_models import TINY_FAMILIES

FAMILIES = list(TINY_FAMILIES)
OUTTYPES = ("f32", "f16", "bf16")
# Checkpoints stored in other dtypes than float32, and a sharded one: (case, family, dtype, sharded,
# outtypes). Transforms run in llama.cpp's working dtype (F16 stays F16: Gemma's +1 norm shift
# rounds there), so these must match too.
INPUT_CASES = {
    "gemma2-f16-weights": ("gemma2", "float16", False, ("f32", "f16")),
    "qwen3-bf16-weights": ("qwen3", "bfloat16", False, ("bf16", "f16")),
    "llama-sharded": ("llama", "float32", True, ("f16",)),
}


# Descriptive metadata llama.cpp's converter derives from the model card and the directory name
# (gguf.Metadata heuristics: "Tiny Qwen2" from directory "qwen2", a parameter-count label). Ours
# writes general.name only: the name it is given (the pipeline passes model.name) or the one
# config.json records. Nothing in llama.cpp's runtime reads these (Phi-3's name check aside, see
# test_phi3_name_keeps_llama_cpp_whitespace_rules).
IGNORED_KVS = ("general.name", "general.basename", "general.size_label", "general.finetune")


def reshard(src: Path, dst: Path, n_shards: int = 2) -> Path:
    """Copy a one-file checkpoint as `n_shards` safetensors files with a model.safetensors.index.json."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors"))
    with safe_open(src / "model.safetensors", framework="pt") as f:
        names = sorted(f.keys())
        tensors = {n: f.get_tensor(n) for n in names}
    weight_map = {}
    for i in range(n_shards):
        shard = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[i::n_shards]}
        save_file(part, dst / shard, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in tensors.values())}}
    index["weight_map"] = dict(sorted(weight_map.items()))
    (dst / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return dst
