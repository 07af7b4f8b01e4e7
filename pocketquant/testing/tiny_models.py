"""Tiny random Llama checkpoints with real tokenizers, built offline in about a second.

Tests of every area use them instead of a real model where the numbers do not matter but the
structure does: GQA, tied or untied embeddings, llama3 rope scaling, a byte-level BPE tokenizer
with Llama-3's pre-tokenizer, or a SentencePiece (Llama-2 style) tokenizer. Same arguments ->
byte-identical directory.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Literal

from pocketquant.atomic import atomic_path
from pocketquant.convert.vocab import LLAMA3_PRETOKENIZER_REGEX
from pocketquant.models.checkpoint import save_checkpoint

LLAMA3_SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim"
    " + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Training text for the tiny tokenizers: prose, code, numbers, whitespace, a little non-ASCII.
TINY_CORPUS = """\
The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away into the forest.
Quantization maps floating-point weights to a few bits per weight, with a scale for each block.
A model that fits in the pocket answers questions on the phone, without a network connection.
It's the models' job: they're small, we've measured them, I'll check, you'd agree, he'd said so.
def quantize(x, bits=4):
    scale = max(abs(v) for v in x) / (2 ** (bits - 1) - 1)
    return [round(v / scale) for v in x], scale

for i in range(10):
    print(i, i * i, 3.14159 * i)
if __name__ == "__main__":
    main()
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024 65536 3.5 2.25 1e-5 1,000,000 2024-11-23 12:30.
Whitespace:   three spaces,\ttab,\t\ttwo tabs,
new lines

and an empty line.
Unicode: café, naïve, Zürich, Straße, ñandú, Ελληνικά, русский текст,
日本語のテキスト, 中文, 한국어, emoji 🚀🙂.
Mathematics: α + β = γ, ∑ x² ≤ ∞, √2 ≈ 1.414, π ≈ 3.14159, e^(iπ) + 1 = 0.
HTML <div class="box">text</div> and JSON {"key": [1, 2, 3], "ok": true, "name": "pocket"}.
Shell: ls -la /tmp && echo "done" | grep -v error > out.txt 2>&1
The end of the corpus is near. Short words: a an the of to in on at by for with from up down.
"""


def build_bpe_tokenizer(out_dir: Path, vocab_size: int = 512):
    """A byte-level BPE tokenizer with Llama 3's pre-tokenizer and special tokens, saved to out_dir."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    # ignore_merges=True like Llama 3 (and llama.cpp's llama-bpe): a word already in the vocab is
    # one token, without replaying merges.
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PRETOKENIZER_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=LLAMA3_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TINY_CORPUS.splitlines(keepends=True) * 4, trainer)
    bos = LLAMA3_SPECIAL_TOKENS[0]
    bos_id = tok.token_to_id(bos)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, bos_id)]
            ),
        ]
    )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token="<|eot_id|>",
        model_max_length=8192,
        clean_up_tokenization_spaces=False,
    )
    hf_tok.chat_template = LLAMA3_CHAT_TEMPLATE
    return hf_tok


def build_spm_tokenizer(work_dir: Path, vocab_size: int = 400):
    """A Llama-2 style SentencePiece BPE tokenizer (byte fallback, dummy prefix), trained in-process."""
    import sentencepiece as spm
    from tokenizers import normalizers
    from transformers import LlamaTokenizer, PreTrainedTokenizerFast

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TINY_CORPUS.splitlines() * 4),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    (work_dir / "tokenizer.model").write_bytes(model.getvalue())
    # transformers converts tokenizer.model to a fast tokenizer (needs protobuf) ...
    backend = LlamaTokenizer.from_pretrained(work_dir, add_bos_token=True, legacy=False).backend_tokenizer
    # ... whose Metaspace(prepend_scheme='first') skips the dummy prefix when the text starts with a
    # space, unlike sentencepiece (and llama.cpp). Llama 2's own tokenizer.json prepends always:
    space = "\u2581"
    backend.normalizer = normalizers.Sequence([normalizers.Prepend(space), normalizers.Replace(" ", space)])
    backend.pre_tokenizer = None
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )


def build_tiny_llama(
    out_dir: str | os.PathLike[str],
    *,
    tokenizer: Literal["bpe", "spm"] = "bpe",
    rope_scaling: Literal["llama3", "linear"] | None = "llama3",
    tie_word_embeddings: bool = True,
    hidden_size: int = 64,
    intermediate_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    seed: int = 0,
    dtype: str = "float32",
) -> Path:
    """Write a tiny random LlamaForCausalLM (GQA, optional llama3 rope scaling) to `out_dir`.

    Weights are drawn with a large std and norm weights are perturbed away from 1, so wrong
    tensor layouts (q/k permutation, norm mapping) change the logits clearly."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    with atomic_path(out_dir, directory=True) as tmp:
        if tokenizer == "bpe":
            tok = build_bpe_tokenizer(tmp)
        elif tokenizer == "spm":
            tok = build_spm_tokenizer(tmp)
        else:
            raise ValueError(f"tokenizer must be 'bpe' or 'spm', not {tokenizer!r}")
        scaling = None
        if rope_scaling == "llama3":
            scaling = {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            }
        elif rope_scaling == "linear":
            scaling = {"rope_type": "linear", "factor": 2.0}
        config = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            num_key_value_heads=num_key_value_heads,
            max_position_embeddings=256,
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            rope_scaling=scaling,
            tie_word_embeddings=tie_word_embeddings,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            initializer_range=0.15,
            dtype=dtype,
        )
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        with torch.no_grad():
            gen = torch.Generator().manual_seed(seed + 1)
            for name, param in model.named_parameters():
                if name.endswith("norm.weight"):
                    param.copy_(1.0 + 0.3 * torch.randn(param.shape, generator=gen))
        model = model.to(getattr(torch, dtype)).eval()
        model.generation_config = GenerationConfig(
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, do_sample=False
        )
        model.config.name_or_path = "tiny-llama"
        tok.name_or_path = "tiny-llama"
        save_checkpoint(model, tok, tmp)
    return out_dir
