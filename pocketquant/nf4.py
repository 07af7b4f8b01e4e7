"""NF4 (4-bit NormalFloat, QLoRA) checkpoints through bitsandbytes on CPU, and back.

`quantize_nf4` loads an HF checkpoint with a BitsAndBytesConfig (nf4, double quant, compute
dtype) and saves the 4-bit model with save_pretrained: the linear weights are stored as packed
uint8 (two 4-bit codes per byte) plus absmax statistics, and the directory reloads in
transformers. `dequantize_nf4` turns such a directory back into a full-precision checkpoint, which
is how the NF4 -> GGUF chain gets an input for the converter.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pocketquant.atomic import atomic_path
from pocketquant.errors import ConfigError
from pocketquant.models.checkpoint import save_checkpoint, validate_model_dir, weight_files

COMPUTE_DTYPES = ("bfloat16", "float16", "float32")
# bitsandbytes' blockwise kernels accept these block sizes.
BLOCKSIZES = (64, 128, 256, 512, 1024, 2048, 4096)
DEFAULT_BLOCKSIZE = 64  # what bitsandbytes (and transformers, which does not expose it) uses


def _torch_dtype(name: str):  # noqa: ANN202
    import torch

    if name not in COMPUTE_DTYPES:
        raise ConfigError(f"compute_dtype={name!r} is not one of {', '.join(COMPUTE_DTYPES)}")
    return getattr(torch, name)


def quantize_nf4(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    blocksize: int = DEFAULT_BLOCKSIZE,
    double_quant: bool = True,
    compute_dtype: str = "bfloat16",
) -> Path:
    """Quantize the Llama checkpoint in `model_dir` to NF4 and save the 4-bit model to `out_dir`.

    Linear layers of the decoder are 4-bit; embeddings, norms and lm_head stay in `compute_dtype`
    (bitsandbytes keeps lm_head unquantized, as transformers does by default)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    validate_model_dir(model_dir)
    if blocksize not in BLOCKSIZES:
        raise ConfigError(f"NF4 blocksize={blocksize} is not one of {', '.join(map(str, BLOCKSIZES))}")
    dtype = _torch_dtype(compute_dtype)
    bnb_config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_storage=torch.uint8,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, quantization_config=bnb_config, dtype=dtype, device_map="cpu"
    )
    if blocksize != DEFAULT_BLOCKSIZE:
        _requantize_blocksize(model, model_dir, blocksize, dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with atomic_path(out_dir, directory=True) as tmp:
        save_checkpoint(model, tokenizer, tmp)
        _record_blocksize(tmp / "config.json", blocksize)
    return out_dir


def _requantize_blocksize(model: Any, model_dir: Path, blocksize: int, dtype: Any) -> None:
    """transformers' BitsAndBytesConfig has no block size (bitsandbytes' default 64 is used):
    quantize each 4-bit weight again from the original checkpoint with ours.

    The quant_state records the block size, so save_pretrained/from_pretrained carry it."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as F

    originals = _tensor_reader(model_dir)
    for name, module in model.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            w = module.weight
            full = originals(f"{name}.weight").to(dtype)
            packed, state = F.quantize_4bit(
                full,
                blocksize=blocksize,
                compress_statistics=w.compress_statistics,
                quant_type=w.quant_type,
                quant_storage=w.quant_storage,
            )
            w.data = packed
            w.quant_state = state
            w.blocksize = blocksize


def _tensor_reader(model_dir: Path):  # noqa: ANN202 - returns name -> torch tensor
    from safetensors import safe_open

    index = {}
    for path in weight_files(model_dir):
        with safe_open(path, framework="pt") as f:
            index.update({name: path for name in f.keys()})

    def read(name: str):  # noqa: ANN202
        if name not in index:
            raise ConfigError(f"{model_dir}: tensor {name!r} not found in the checkpoint")
        with safe_open(index[name], framework="pt") as f:
            return f.get_tensor(name)

    return read


def _record_blocksize(config_path: Path, blocksize: int) -> None:
    """Keep the block size next to the other bnb settings in config.json (provenance)."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.setdefault("quantization_config", {})["pocketquant_blocksize"] = blocksize
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _is_quant_state(name: str) -> bool:
    return any(part in name for part in (".absmax", ".quant_map", ".nested_", ".quant_state"))


def nf4_blocksizes(nf4_dir: str | os.PathLike[str]) -> set[int]:
    """Block sizes actually stored in an NF4 checkpoint's quant states (to check what was used)."""
    from safetensors import safe_open

    sizes: set[int] = set()
    for path in sorted(Path(nf4_dir).glob("*.safetensors")):
        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                if name.endswith("quant_state.bitsandbytes__nf4"):
                    state = json.loads(bytes(f.get_tensor(name).tolist()).decode("utf-8"))
                    sizes.add(int(state["blocksize"]))
    return sizes


def dequantize_nf4(
    nf4_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], dtype: str = "float32"
) -> Path:
    """Turn an NF4 checkpoint back into a full-precision HF checkpoint (for the NF4 -> GGUF chain)."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as F
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    nf4_dir, out_dir = Path(nf4_dir), Path(out_dir)
    config = validate_model_dir(nf4_dir)
    qconf = config.get("quantization_config") or {}
    if qconf.get("quant_method") != "bitsandbytes" or qconf.get("bnb_4bit_quant_type") != "nf4":
        raise ConfigError(
            f"{nf4_dir / 'config.json'}: not a bitsandbytes NF4 checkpoint (quantization_config)"
        )
    target = _torch_dtype(dtype)
    quantized = AutoModelForCausalLM.from_pretrained(nf4_dir, device_map="cpu")
    # Unpack every 4-bit weight with bitsandbytes and load the result into a plain model of the
    # same config (transformers' own dequantize() leaves a model it cannot save again).
    state = {}
    for name, module in quantized.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            w = module.weight
            state[f"{name}.weight"] = F.dequantize_4bit(w.data, w.quant_state).to(target)
            if module.bias is not None:
                state[f"{name}.bias"] = module.bias.detach().to(target)
    for name, tensor in quantized.state_dict().items():
        if name not in state and not _is_quant_state(name):
            state[name] = tensor.to(target)
    config = AutoConfig.from_pretrained(nf4_dir)
    del config.quantization_config
    config.dtype = target
    model = AutoModelForCausalLM.from_config(config, dtype=target)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (config.tie_word_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        raise ConfigError(f"{nf4_dir}: cannot rebuild the model (missing {missing}, unexpected {unexpected})")
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config = quantized.generation_config
    tokenizer = AutoTokenizer.from_pretrained(nf4_dir)
    with atomic_path(out_dir, directory=True) as tmp:
        save_checkpoint(model, tokenizer, tmp)
    return out_dir
