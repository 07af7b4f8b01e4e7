"""Full-size Llama-shaped HF checkpoints with random bfloat16 weights, built offline and streamed to
disk (benchmarks/scale.py measures the pipeline's memory and time on them).

Shapes are Llama 3.2 3B and Llama 3.1 8B (layers, widths, heads, 128,256-token vocabulary, tied or
untied head, llama3 rope scaling). The tokenizer is the tiny byte-level BPE of tiny_models (Llama 3's
pre-tokenizer and special tokens, a chat template) with unreachable filler tokens appended up to the
real vocabulary size, so every vocabulary-sized tensor (embedding, output matrix, logits) has its
real size. Weights are written one tensor at a time into 5 GB safetensors shards with an index, as
the hub's checkpoints are; nothing larger than one tensor is ever in memory. Same arguments ->
byte-identical directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pocketquant.atomic import atomic_path


@dataclass(frozen=True)
class LlamaCheckpointShape:
    name: str
    n_layer: int
    hidden: int
    ffn: int
    n_head: int
    n_kv_head: int
    vocab: int
    tied: bool
    rope_theta: float
    rope_factor: float

    @property
    def n_params(self) -> int:
        kv = self.n_kv_head * (self.hidden // self.n_head)
        per_layer = (
            2 * self.hidden * self.hidden
            + 2 * self.hidden * kv
            + 3 * self.hidden * self.ffn
            + 2 * self.hidden
        )
        embed = self.vocab * self.hidden
        return self.n_layer * per_layer + embed * (1 if self.tied else 2) + self.hidden


LLAMA_3_2_3B = LlamaCheckpointShape("llama-3.2-3b-shape", 28, 3072, 8192, 24, 8, 128256, True, 500000.0, 32.0)
LLAMA_3_1_8B = LlamaCheckpointShape(
    "llama-3.1-8b-shape", 32, 4096, 14336, 32, 8, 128256, False, 500000.0, 8.0
)
# A few-second stand-in with the same structure, to check a harness end to end.
SMOKE = LlamaCheckpointShape("llama-smoke-shape", 2, 256, 512, 4, 2, 8192, True, 500000.0, 32.0)
SHAPES = {"3b": LLAMA_3_2_3B, "8b": LLAMA_3_1_8B, "smoke": SMOKE}
SHARD_BYTES = 5 * 10**9  # like the hub's max_shard_size="5GB"
WEIGHT_STD = 0.02  # Llama's initializer_range


def build_sized_tokenizer(work_dir: Path, n_vocab: int):  # noqa: ANN201 - PreTrainedTokenizerFast
    """tiny_models' Llama-3-style BPE tokenizer, its vocabulary padded to exactly n_vocab tokens with
    filler tokens no merge produces (the corpus tokenizes as with the tiny vocabulary)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from pocketquant.testing.tiny_models import LLAMA3_CHAT_TEMPLATE, build_bpe_tokenizer

    small = build_bpe_tokenizer(work_dir)
    spec = json.loads(small.backend_tokenizer.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    n_special = sum(1 for t in spec["added_tokens"] if t["id"] not in vocab.values())
    i = 0
    while len(vocab) + n_special < n_vocab:
        vocab[f"\u0120pqfill{i:06d}"] = len(vocab)  # "Ġpqfill000000": a word no corpus has
        i += 1
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        bos_token=small.bos_token,
        eos_token=small.eos_token,
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = LLAMA3_CHAT_TEMPLATE
    if len(tok) != n_vocab:
        raise ValueError(f"padded tokenizer has {len(tok)} tokens, wanted {n_vocab}")
    return tok


def _config(shape: LlamaCheckpointShape, bos: int, eos: int):  # noqa: ANN202 - LlamaConfig
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.ffn,
        num_hidden_layers=shape.n_layer,
        num_attention_heads=shape.n_head,
        num_key_value_heads=shape.n_kv_head,
        head_dim=shape.hidden // shape.n_head,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        rope_theta=shape.rope_theta,
        rope_scaling={
            "rope_type": "llama3",
            "factor": shape.rope_factor,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        tie_word_embeddings=shape.tied,
        bos_token_id=bos,
        eos_token_id=eos,
        dtype="bfloat16",
        architectures=["LlamaForCausalLM"],
    )


def build_random_llama_checkpoint(
    out_dir: str | os.PathLike[str], shape: LlamaCheckpointShape, *, seed: int = 0, progress: bool = True
) -> Path:
    """Write a random-weight bf16 LlamaForCausalLM of `shape` (sharded safetensors + tokenizer)."""
    import torch
    from accelerate import init_empty_weights
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, GenerationConfig

    from pocketquant.layerwise.writer import SafetensorsWriter, TensorSpec
    from pocketquant.models.checkpoint import normalize_checkpoint_files

    out_dir = Path(out_dir)
    with atomic_path(out_dir, directory=True) as tmp:
        tok = build_sized_tokenizer(tmp, shape.vocab)
        config = _config(shape, tok.bos_token_id, tok.convert_tokens_to_ids("<|eot_id|>"))
        with init_empty_weights():
            skeleton = AutoModelForCausalLM.from_config(config)
        if shape.tied:
            skeleton.tie_weights()
        params = {n: tuple(p.shape) for n, p in skeleton.named_parameters()}  # tied head listed once
        order = {n: i for i, n in enumerate(params)}
        shards: list[list[str]] = [[]]
        size = 0
        for name, dims in params.items():
            nbytes = 2 * int(torch.Size(dims).numel())
            if shards[-1] and size + nbytes > SHARD_BYTES:
                shards.append([])
                size = 0
            shards[-1].append(name)
            size += nbytes
        weight_map, total = {}, 0
        bar = tqdm(total=len(params), desc=f"random {shape.name}", unit="tensor", disable=not progress)
        for k, names in enumerate(shards):
            file = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
            layout = {n: TensorSpec("BF16", params[n]) for n in names}
            with SafetensorsWriter(tmp / file, metadata={"format": "pt"}, layout=layout) as w:
                for n in names:
                    w.write_pieces(
                        n,
                        _random_rows(
                            params[n], seed=seed * 1_000_003 + order[n], norm=n.endswith("norm.weight")
                        ),
                    )
                    weight_map[n] = file
                    total += 2 * int(torch.Size(params[n]).numel())
                    bar.update()
        bar.close()
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (tmp / "model.safetensors.index.json").write_text(
            json.dumps(index, indent=2) + "\n", encoding="utf-8"
        )
        config.save_pretrained(tmp)
        GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id).save_pretrained(
            tmp
        )
        tok.save_pretrained(tmp)
        normalize_checkpoint_files(tmp)
    return out_dir


def _random_rows(dims: tuple[int, ...], *, seed: int, norm: bool, rows: int = 4096):  # noqa: ANN202
    """A bf16 tensor in row blocks: N(0, WEIGHT_STD) weights, or ones for a norm (1-D, one block)."""
    import torch

    if norm or len(dims) == 1:
        yield torch.ones(dims, dtype=torch.bfloat16)
        return
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, dims[0], rows):
        n = min(rows, dims[0] - start)
        yield (torch.randn((n, *dims[1:]), generator=gen) * WEIGHT_STD).to(torch.bfloat16)
