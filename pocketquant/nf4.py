"""NF4 (4-bit NormalFloat, QLoRA) checkpoints through bitsandbytes on CPU, and back, one tensor at a time.

`quantize_nf4` writes what transformers writes for an HF checkpoint loaded with a BitsAndBytesConfig
(nf4, double quant, compute dtype) and saved with save_pretrained, byte for byte: every nn.Linear of
the model except the output head becomes packed uint8 (two 4-bit codes per byte) plus its quant
state (absmax, maps, JSON), the rest is stored in the compute dtype, and the directory reloads in
transformers. It gets there streaming: one tensor is read, quantized with bitsandbytes and written
before the next, so a 3B model never sits in memory (transformers holds the whole 4-bit model, and
maps the whole source checkpoint).

`dequantize_nf4` turns such a directory back into a full-precision checkpoint, tensor by tensor
too, which is how the NF4 -> GGUF chain gets an input for the converter.

`choose_cpu_kernels` picks, per 4-bit layer, which of bitsandbytes' CPU code paths runs it (see
there): its AVX512-BF16 kernel cannot run a layer narrower than the block size.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pocketquant.atomic import atomic_path
from pocketquant.errors import ConfigError
from pocketquant.models.checkpoint import normalize_checkpoint_files, validate_model_dir

COMPUTE_DTYPES = ("bfloat16", "float16", "float32")
# bitsandbytes' blockwise kernels accept these block sizes.
BLOCKSIZES = (64, 128, 256, 512, 1024, 2048, 4096)
DEFAULT_BLOCKSIZE = 64  # what bitsandbytes (and transformers, which does not expose it) uses
# Parts of a 4-bit weight's quant state in a saved checkpoint (QuantState.as_dict(packed=True)).
QUANT_STATE_JSON = "quant_state.bitsandbytes__nf4"
_QUANT_STATE_PARTS = (".absmax", ".quant_map", ".nested_", ".quant_state")
# Non-quantized tensors are converted and written in row slices of about this many bytes.
_SLICE_BYTES = 64 * 2**20
# bitsandbytes' packed AVX512-BF16 CPU layout: rows in groups of 32 (block_n), one absmax per
# (row, block) of in_features (see bitsandbytes.functional._convert_weight_packed_for_cpu).
_PACKED_BLOCK_N = 32


def _torch_dtype(name: str):  # noqa: ANN202
    import torch

    if name not in COMPUTE_DTYPES:
        raise ConfigError(f"compute_dtype={name!r} is not one of {', '.join(COMPUTE_DTYPES)}")
    return getattr(torch, name)


def _skeleton(config: Any) -> Any:
    """The model of `config` on the meta device (no memory): which modules are linears, the head."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.tie_weights()  # a tied lm_head is the embedding (transformers ties on load, not on meta)
    return model


def quantized_linears(model: Any) -> set[str]:
    """Weight names transformers' bitsandbytes integration turns 4-bit: every nn.Linear except the
    output head (lm_head stays in the compute dtype, as transformers' get_keys_to_not_convert says)."""
    import torch

    head = model.get_output_embeddings()
    return {
        f"{name}.weight"
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    }


def saved_tensor_names(model: Any) -> list[str]:
    """Names save_pretrained writes: the state dict without tied duplicates (a tied lm_head)."""
    seen: set[int] = set()
    names = []
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        names.append(name)
    names += [n for n, _ in model.named_buffers() if n in model.state_dict()]
    return names


def quantize_nf4(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    blocksize: int = DEFAULT_BLOCKSIZE,
    double_quant: bool = True,
    compute_dtype: str = "bfloat16",
    *,
    progress: bool = True,
) -> Path:
    """Quantize the checkpoint in `model_dir` to NF4 and save the 4-bit model to `out_dir`.

    Linear layers of the decoder are 4-bit; embeddings, norms and lm_head stay in `compute_dtype`
    (bitsandbytes keeps lm_head unquantized, as transformers does by default)."""
    import bitsandbytes.functional as F
    import torch
    from tqdm import tqdm
    from transformers import AutoConfig, AutoTokenizer, BitsAndBytesConfig

    from pocketquant.layerwise.weights import CheckpointWeights
    from pocketquant.layerwise.writer import SafetensorsWriter
    from pocketquant.process_usage import log_usage, return_freed_memory

    return_freed_memory()
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
    config = AutoConfig.from_pretrained(model_dir)
    skeleton = _skeleton(config)
    quantized = quantized_linears(skeleton)
    names = saved_tensor_names(skeleton)
    weights = CheckpointWeights(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with atomic_path(out_dir, directory=True) as tmp:
        with SafetensorsWriter(tmp / "model.safetensors", metadata={"format": "pt"}) as out:
            for name in tqdm(names, desc="NF4", unit="tensor", disable=not progress, leave=False):
                if name in quantized:
                    packed, state = F.quantize_4bit(
                        weights.read(name).to(dtype),
                        blocksize=blocksize,
                        compress_statistics=double_quant,
                        quant_type="nf4",
                        quant_storage=torch.uint8,
                    )
                    out.write(name, packed)
                    for part, value in state.as_dict(packed=True).items():
                        out.write(f"{name}.{part}", value)
                else:
                    out.write_pieces(name, _converted_slices(weights, name, dtype))
        config.quantization_config = bnb_config
        config.dtype = dtype
        config.save_pretrained(tmp)
        _save_generation_config(model_dir, config, tmp)
        tokenizer.save_pretrained(tmp)
        normalize_checkpoint_files(tmp)
        record_blocksize(tmp / "config.json", blocksize)
    log_usage("quantize nf4")
    return out_dir


def _converted_slices(weights: Any, name: str, dtype: Any) -> Iterator[Any]:
    """A tensor of the checkpoint in `dtype`, a bounded row slice at a time (a 128k-token embedding
    in float32 is 1.6 GB)."""
    entry = weights.entry(name)
    if len(entry.shape) < 1 or entry.shape[0] == 0:
        yield weights.read(name).to(dtype)
        return
    rows = max(1, _SLICE_BYTES // max(1, entry.row_bytes))
    for start in range(0, entry.shape[0], rows):
        yield weights.read_rows(name, start, start + rows).to(dtype)


def _save_generation_config(model_dir: Path, config: Any, out: Path) -> None:
    """generation_config.json as save_pretrained writes it: the checkpoint's own, or one derived
    from the model config (transformers does the same when loading)."""
    from transformers import GenerationConfig

    if (model_dir / "generation_config.json").is_file():
        gen = GenerationConfig.from_pretrained(model_dir)
    else:
        gen = GenerationConfig.from_model_config(config)
    gen.save_pretrained(out)


def record_blocksize(config_path: str | os.PathLike[str], blocksize: int) -> None:
    """Keep the block size next to the other bnb settings in config.json (provenance)."""
    config_path = Path(config_path)
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.setdefault("quantization_config", {})["pocketquant_blocksize"] = blocksize
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _is_quant_state(name: str) -> bool:
    return any(part in name for part in _QUANT_STATE_PARTS)


def nf4_blocksizes(nf4_dir: str | os.PathLike[str]) -> set[int]:
    """Block sizes actually stored in an NF4 checkpoint's quant states (to check what was used)."""
    from pocketquant.layerwise.weights import CheckpointWeights

    weights = CheckpointWeights(nf4_dir)
    return {
        int(_quant_state_json(weights, name[: -len(QUANT_STATE_JSON) - 1])["blocksize"])
        for name in weights
        if name.endswith(QUANT_STATE_JSON)
    }


def _quant_state_json(weights: Any, weight_name: str) -> dict:
    raw = weights.read(f"{weight_name}.{QUANT_STATE_JSON}")
    return json.loads(bytes(raw.tolist()).decode("utf-8"))


def dequantize_nf4(
    nf4_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], dtype: str = "float32"
) -> Path:
    """Turn an NF4 checkpoint back into a full-precision HF checkpoint (for the NF4 -> GGUF chain),
    one tensor at a time: each 4-bit weight unpacked by bitsandbytes, every other tensor converted."""
    import bitsandbytes.functional as F
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from pocketquant.layerwise.weights import CheckpointWeights
    from pocketquant.layerwise.writer import SafetensorsWriter, TensorSpec

    nf4_dir, out_dir = Path(nf4_dir), Path(out_dir)
    config_dict = validate_model_dir(nf4_dir)
    qconf = config_dict.get("quantization_config") or {}
    if qconf.get("quant_method") != "bitsandbytes" or qconf.get("bnb_4bit_quant_type") != "nf4":
        raise ConfigError(
            f"{nf4_dir / 'config.json'}: not a bitsandbytes NF4 checkpoint (quantization_config)"
        )
    target = _torch_dtype(dtype)
    target_name = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}[target]
    weights = CheckpointWeights(nf4_dir)
    states = {n[: -len(QUANT_STATE_JSON) - 1] for n in weights if n.endswith(QUANT_STATE_JSON)}
    plain = [n for n in weights if not _is_quant_state(n)]
    # Every output shape is known before anything is written: a straight, single-pass file.
    layout = {
        n: TensorSpec(
            target_name,
            tuple(_quant_state_json(weights, n)["shape"]) if n in states else weights.entry(n).shape,
        )
        for n in plain
    }
    with atomic_path(out_dir, directory=True) as tmp:
        with SafetensorsWriter(tmp / "model.safetensors", metadata={"format": "pt"}, layout=layout) as out:
            for name in plain:
                if name in states:
                    parts = {k[len(name) + 1 :]: weights.read(k) for k in weights if k.startswith(f"{name}.")}
                    state = F.QuantState.from_dict(parts, device=torch.device("cpu"))
                    out.write(name, F.dequantize_4bit(weights.read(name), state).to(target))
                else:
                    out.write_pieces(name, _converted_slices(weights, name, target))
        config = AutoConfig.from_pretrained(nf4_dir)
        del config.quantization_config
        config.dtype = target
        config.save_pretrained(tmp)
        _save_generation_config(nf4_dir, config, tmp)
        AutoTokenizer.from_pretrained(nf4_dir).save_pretrained(tmp)
        normalize_checkpoint_files(tmp)
    return out_dir


def load_nf4_model(
    nf4_dir: str | os.PathLike[str], *, cpu_path: str | None = None, choose_kernels: bool = True
) -> Any:
    """An NF4 checkpoint as a transformers model on CPU, ready to run (bitsandbytes' CPU kernels
    chosen per layer, see choose_cpu_kernels, unless choose_kernels=False).

    The tensors are read into memory of their own (plain reads) and handed to transformers as a
    state dict, instead of from_pretrained's memory map: bitsandbytes' AVX512-BF16 path repacks each
    4-bit weight on its first forward, and a mapped file keeps every original page resident beside
    the repacked copy (a 3B NF4 evaluation held 4.1 GB instead of 2.5)."""
    import torch  # noqa: F401 - transformers needs it imported first on some versions
    from transformers import AutoConfig, GenerationConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    from pocketquant.layerwise.weights import CheckpointWeights

    nf4_dir = Path(nf4_dir)
    config = AutoConfig.from_pretrained(nf4_dir)
    model_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    weights = CheckpointWeights(nf4_dir)
    state = {name: weights.read(name) for name in weights}
    model = model_class.from_pretrained(None, config=config, state_dict=state, dtype="auto", device_map="cpu")
    del state
    if (nf4_dir / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(nf4_dir)
    model.eval()
    if choose_kernels:
        choose_cpu_kernels(model, path=cpu_path, where=str(nf4_dir))
    return model


# --- bitsandbytes' CPU code paths -------------------------------------------------------------


def warm_up_cpu_kernels(model: Any) -> None:
    """Run `model` once on two tokens so that bitsandbytes repacks its 4-bit weights now.

    Its AVX512-BF16 path repacks each weight on the weight's first forward and dequantizes it whole
    on the way (100 MB of f32 for an 8192 x 3072 weight), memory glibc then keeps. Done here, with
    that memory handed back after each layer, the transient never stacks on a 512-token chunk's
    activations and logits: a Llama-3.2-3B-shaped NF4 model peaked at 3.00 GB on its first chunk,
    2.91 GB after this. No state survives a forward pass (no cache): the logits are unchanged."""
    import torch

    from pocketquant.process_usage import trim_freed_memory

    linears = [m for m in model.modules() if type(m).__name__ == "Linear4bit"]
    hooks = [m.register_forward_hook(lambda *_: trim_freed_memory()) for m in linears]
    try:
        with torch.inference_mode():
            model(input_ids=torch.zeros((1, 2), dtype=torch.long), use_cache=False, logits_to_keep=1)
    finally:
        for h in hooks:
            h.remove()
        trim_freed_memory()


CPU_PATHS = ("auto", "generic")


def packed_cpu_path_fits(out_features: int, in_features: int, blocksize: int) -> bool:
    """Whether bitsandbytes' AVX512-BF16 kernel can repack a [out, in] 4-bit weight: rows in groups
    of 32 and a whole number of blocks per row. A 64-wide layer with block size 128 has 0 blocks
    per row and crashes there (`shape '[64, 0]' is invalid`); 576 with 128 has 4.5."""
    return out_features % _PACKED_BLOCK_N == 0 and in_features % blocksize == 0 and in_features % 2 == 0


def cpu_has_packed_path() -> bool:
    """Whether this CPU (AVX512-BF16) makes bitsandbytes repack 4-bit weights for its fused kernel."""
    from bitsandbytes.functional import has_avx512bf16

    return bool(has_avx512bf16())


def choose_cpu_kernels(model: Any, *, path: str | None = None, where: str = "model") -> list[str]:
    """Pick bitsandbytes' CPU code path per 4-bit layer of a loaded model; returns the layers that run
    the generic path although the CPU has the packed one.

    bitsandbytes decides per process from the CPU (AVX512-BF16: repack each weight for a fused
    bf16 kernel on its first forward; otherwise dequantize + matmul), with no switch of its own. The
    packed path cannot hold a layer whose width is not a whole number of blocks: instead of
    bitsandbytes' crash mid-evaluation, such layers run the generic path, said on stderr once.
    `path` (or POCKETQUANT_BNB_CPU_PATH): "auto" (the CPU decides per layer, as above) or "generic"
    (every layer on the generic path, as on a CPU without AVX512-BF16; tests run both)."""
    import bitsandbytes as bnb

    path = path or os.environ.get("POCKETQUANT_BNB_CPU_PATH", "auto")
    if path not in CPU_PATHS:
        raise ConfigError(f"bitsandbytes CPU path {path!r} is not one of {', '.join(CPU_PATHS)}")
    narrow = []
    for name, module in model.named_modules():
        if not isinstance(module, bnb.nn.Linear4bit):
            continue
        state = module.weight.quant_state
        out_f, in_f = (int(s) for s in state.shape)
        fits = packed_cpu_path_fits(out_f, in_f, int(state.blocksize))
        if path == "generic" or not fits:
            module.support_avx512bf16_for_cpu = False
            if not fits and cpu_has_packed_path():
                narrow.append(name)
    if narrow:
        print(
            f"pocketquant: {where}: {len(narrow)} NF4 layers (e.g. {narrow[0]}) are not a whole number "
            f"of blocks wide; bitsandbytes' AVX512-BF16 kernel cannot run them, they use its generic "
            "CPU path (same results as on a CPU without AVX512-BF16)",
            file=sys.stderr,
        )
    return narrow
