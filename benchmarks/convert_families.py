"""Benchmark (not a test): our converter vs llama.cpp's, per family, on a larger shape, same run.

For each family: its tiny checkpoint's config and tokenizer, grown to a 3B-like width (hidden 3072,
FFN 8192, 24 heads, vocabulary 128256 padded; `--layers` decoder layers, 2 by default so the
embedding dominates as in a real 3B model) with random BF16 weights written shard by shard (never
the whole model in memory). Both converters then write an F16 GGUF, each in a fresh process whose
peak RSS is read from the kernel (ru_maxrss of the process tree). Printed: wall seconds, peak RSS,
ratios ours/llama.cpp (targets: time <= 1, RSS around 1 GB), and whether the tensors agree.

    .venv/bin/python benchmarks/convert_families.py [--families qwen2,gemma3] [--layers 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from pocketquant.testing.gguf_compare import differences
from pocketquant.testing.tiny_models import TINY_FAMILIES, build_tiny_model

SHAPE = {
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_attention_heads": 24,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
}
# per family: what its architecture needs at this width
FAMILY_SHAPE = {
    "phi2": {"intermediate_size": 4 * 3072, "num_key_value_heads": 24},
    "qwen3": {"head_dim": 128},
    "gemma": {"head_dim": 128},
    "gemma2": {"head_dim": 128, "query_pre_attn_scalar": 128},
    "gemma3": {"head_dim": 128, "query_pre_attn_scalar": 128},
    "phi3": {"rope_scaling": None, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
}
SHARD_BYTES = 512 << 20


def grow_checkpoint(family: str, out: Path, layers: int, seed: int = 0) -> Path:
    """The family's tiny checkpoint with a large config and random BF16 weights of its shapes."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig

    from pocketquant.convert.expected import expected_tensors

    tiny = build_tiny_model(out.parent / f"{out.name}-tiny", family)
    shutil.copytree(tiny, out, ignore=shutil.ignore_patterns("*.safetensors"))
    shutil.rmtree(tiny)
    config = json.loads((out / "config.json").read_text())
    config.update(SHAPE, num_hidden_layers=layers, torch_dtype="bfloat16", dtype="bfloat16")
    config.update(FAMILY_SHAPE.get(family, {}))
    config.pop("layer_types", None)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    shapes, tied = expected_tensors(AutoConfig.from_pretrained(out))
    rng = np.random.default_rng(seed)
    shard: dict[str, torch.Tensor] = {}
    size, n, weight_map = 0, 0, {}

    def flush() -> None:
        nonlocal shard, size, n
        if shard:
            n += 1
            name = f"model-{n:05d}.safetensors"
            save_file(shard, out / name, metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, name))
            shard, size = {}, 0

    for name, shape in shapes.items():
        if name in tied:
            continue
        data = rng.standard_normal(shape, dtype=np.float32) * 0.02
        if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            data += 1.0
        shard[name] = torch.from_numpy(data).to(torch.bfloat16)
        size += shard[name].numel() * 2
        del data
        if size >= SHARD_BYTES:
            flush()
    flush()
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return out


def measured(cmd: list[str], env: dict | None = None) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes of the process tree) of one command, in a fresh wrapper."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t0 = time.perf_counter()\n"
        "rc = subprocess.run(sys.argv[1:]).returncode\n"
        "dt = time.perf_counter() - t0\n"
        "print(dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, env=env, check=False
    )
    last = proc.stdout.strip().splitlines()[-1].split()
    if last[2] != "0":
        raise RuntimeError(f"{cmd[:4]} failed:\n{proc.stderr[-2000:]}")
    return float(last[0]), int(last[1])


OURS = (
    "import sys\n"
    "from pocketquant.convert import convert_hf_to_gguf\n"
    "convert_hf_to_gguf(sys.argv[1], sys.argv[2], 'f16', progress=False)\n"
)
# llama.cpp's converter as the llamacpp backend runs it (one job; tiny vocabularies get the
# pre-tokenizer our converter reads from their structure)
LLAMACPP = (
    "import sys\n"
    "from pathlib import Path\n"
    "from pocketquant.convert.llamacpp import LlamaCppJob, fallback_pre_tokenizer, run_converter\n"
    "model, out = sys.argv[1:3]\n"
    "run_converter([LlamaCppJob(model, out, 'f16', None, fallback_pre_tokenizer(Path(model)))])\n"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default=",".join(k for k in TINY_FAMILIES if k != "llama-spm"))
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="work directory to keep (default: a temp dir)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="pq-convert-bench-"))
    columns = ("family", "GGUF GB", "ours s", "llama s", "ratio", "ours RSS", "llama RSS", "same")
    print(" ".join(f"{c:>10}" for c in columns))
    for family in args.families.split(","):
        model = grow_checkpoint(family, work / family, args.layers)
        ours, theirs = work / f"{family}-ours.gguf", work / f"{family}-llama.gguf"
        t_ours, rss_ours = measured([sys.executable, "-c", OURS, str(model), str(ours)])
        t_ll, rss_ll = measured([sys.executable, "-c", LLAMACPP, str(model), str(theirs)])
        diff = differences(ours, theirs, ignore=("general.name", "general.basename", "general.size_label"))
        print(
            f"{family:10} {ours.stat().st_size / 1e9:8.2f} {t_ours:7.1f} {t_ll:8.1f} {t_ours / t_ll:6.2f} "
            f"{rss_ours / 2**30:8.2f}G {rss_ll / 2**30:9.2f}G {'yes' if not diff else diff[:2]}",
            flush=True,
        )
        if args.keep is None:
            shutil.rmtree(model)
            ours.unlink()
            theirs.unlink()
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
