"""Tiny real tokenizers, trained in-process in well under a second, in the styles of the families.

Byte-level BPE styles differ in what llama.cpp's pre-tokenizer must reproduce:
  llama3  Llama 3's split regex, in-vocabulary words kept whole (ignore_merges), BOS added
  dbrx    the same regex with merges replayed (cl100k vocabularies: OLMo 2)
  qwen2   Qwen2's regex (single digits), NFC normalizer, no BOS (Qwen2/2.5/3)
  smollm  single digits, then GPT-2's regex (SmolLM, Granite's StarCoder-style vocabulary)
  gpt2    GPT-2's regex only (Phi-2)
SentencePiece styles: llama2 (dummy prefix, <s>/</s>/<unk> = 1/2/0; Llama 2, TinyLlama), mistral
(llama2 plus [INST]-style control tokens), gemma (no dummy prefix, <pad>/<eos>/<bos>/<unk> =
0/1/2/3, turn tokens), phi3 (llama2 plus added <|user|>-style tokens after the pieces).

Each style names the llama.cpp pre-tokenizer it is built to mimic (`BPE_STYLES[style].pre`): a
fresh vocabulary is not in llama.cpp's table of known vocabulary hashes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketquant.convert.vocab import LLAMA3_PRETOKENIZER_REGEX, QWEN2_PRETOKENIZER_REGEX

# Training text: prose, code, numbers, whitespace, a little non-ASCII.
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

LLAMA3_SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]


@dataclass(frozen=True)
class BPEStyle:
    pre: str  # llama.cpp pre-tokenizer this style mimics
    specials: tuple[str, ...]  # special tokens, first ids in this order
    bos: str | None  # BOS token added in front of every sequence (None: no BOS added)
    eos: str
    split_regex: str | None = None  # Split(regex) + ByteLevel(use_regex=False)
    digits: bool = False  # Digits(individual) + ByteLevel(use_regex=True)
    ignore_merges: bool = False
    nfc: bool = False
    pad: str | None = None
    added: tuple[str, ...] = ()  # added tokens that are not special (e.g. Qwen3's <think>)
    bos_token: str | None = None  # BOS token known to the tokenizer but not added


BPE_STYLES: dict[str, BPEStyle] = {
    "llama3": BPEStyle(
        "llama-bpe", tuple(LLAMA3_SPECIAL_TOKENS), "<|begin_of_text|>", "<|eot_id|>",
        split_regex=LLAMA3_PRETOKENIZER_REGEX, ignore_merges=True,
    ),
    "dbrx": BPEStyle(
        "dbrx", ("<|endoftext|>", "<|pad|>", "<|user|>", "<|assistant|>", "<|system|>"),
        None, "<|endoftext|>", split_regex=LLAMA3_PRETOKENIZER_REGEX, pad="<|pad|>",
        bos_token="<|endoftext|>",
    ),
    "qwen2": BPEStyle(
        "qwen2", ("<|endoftext|>", "<|im_start|>", "<|im_end|>"), None, "<|im_end|>",
        split_regex=QWEN2_PRETOKENIZER_REGEX, nfc=True, pad="<|endoftext|>",
    ),
    "qwen3": BPEStyle(
        "qwen2", ("<|endoftext|>", "<|im_start|>", "<|im_end|>"), None, "<|im_end|>",
        split_regex=QWEN2_PRETOKENIZER_REGEX, nfc=True, pad="<|endoftext|>", added=("<think>", "</think>"),
    ),
    "smollm": BPEStyle(
        "smollm", ("<|end_of_text|>", "<|start_of_role|>", "<|end_of_role|>", "<|tool_call|>"),
        None, "<|end_of_text|>", digits=True, pad="<|end_of_text|>", bos_token="<|end_of_text|>",
    ),
    "gpt2": BPEStyle("gpt-2", ("<|endoftext|>",), None, "<|endoftext|>", bos_token="<|endoftext|>"),
}  # fmt: skip


def build_bpe_tokenizer(out_dir: Path, vocab_size: int = 512, style: str = "llama3") -> Any:
    """A byte-level BPE tokenizer of `style` (see BPE_STYLES), as a transformers fast tokenizer."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    st = BPE_STYLES[style]
    tok = Tokenizer(models.BPE(ignore_merges=st.ignore_merges))
    if st.nfc:
        tok.normalizer = normalizers.NFC()
    if st.split_regex:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(st.split_regex), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
            ]
        )
    elif st.digits:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(
            add_prefix_space=False, trim_offsets=True, use_regex=True
        )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(st.added),
        special_tokens=list(st.specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TINY_CORPUS.splitlines(keepends=True) * 4, trainer)
    if st.bos:
        bos_id = tok.token_to_id(st.bos)
        tok.post_processor = processors.Sequence(
            [
                processors.ByteLevel(trim_offsets=False),
                processors.TemplateProcessing(
                    single=f"{st.bos}:0 $A:0",
                    pair=f"{st.bos}:0 $A:0 {st.bos}:1 $B:1",
                    special_tokens=[(st.bos, bos_id)],
                ),
            ]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=st.bos or st.bos_token,
        eos_token=st.eos,
        pad_token=st.pad,
        model_max_length=8192,
        clean_up_tokenization_spaces=False,
    )
    if st.added:
        hf_tok.add_tokens(list(st.added), special_tokens=False)
    return hf_tok


@dataclass(frozen=True)
class SPMStyle:
    ids: tuple[int, int, int, int]  # unk, bos, eos, pad (-1: none)
    pieces: tuple[str, str, str, str]  # their texts
    dummy_prefix: bool
    control: tuple[str, ...] = ()  # control pieces inside the SentencePiece model (Mistral v0.3)
    user_defined: tuple[str, ...] = ()  # user-defined pieces inside the model (Gemma's turn tokens)
    added_special: tuple[str, ...] = ()  # tokens added after the pieces by transformers (Phi-3)
    add_bos: bool = True
    # special tokens that swallow the whitespace after them (Phi-3's chat tokens and </s>)
    rstrip: tuple[str, ...] = ()


SPM_STYLES: dict[str, SPMStyle] = {
    "llama2": SPMStyle((0, 1, 2, -1), ("<unk>", "<s>", "</s>", "<pad>"), True),
    "mistral": SPMStyle(
        (0, 1, 2, -1), ("<unk>", "<s>", "</s>", "<pad>"), True,
        control=("[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                 "[TOOL_RESULTS]", "[/TOOL_RESULTS]"),
    ),
    "gemma": SPMStyle(
        (3, 2, 1, 0), ("<unk>", "<bos>", "<eos>", "<pad>"), False,
        user_defined=("<start_of_turn>", "<end_of_turn>"),
    ),
    "phi3": SPMStyle(
        (0, 1, 2, -1), ("<unk>", "<s>", "</s>", "<pad>"), True,
        added_special=("<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|system|>", "<|end|>",
                       "<|user|>"),
        add_bos=False,
        rstrip=("</s>", "<|assistant|>", "<|placeholder1|>", "<|system|>", "<|end|>", "<|user|>"),
    ),
}  # fmt: skip


def build_spm_tokenizer(work_dir: Path, vocab_size: int = 400, style: str = "llama2") -> Any:
    """A SentencePiece BPE tokenizer (byte fallback) of `style`, trained in-process; writes
    work_dir/tokenizer.model and returns the matching transformers fast tokenizer."""
    import sentencepiece as spm
    from tokenizers import AddedToken, normalizers, processors
    from transformers import LlamaTokenizer, PreTrainedTokenizerFast

    st = SPM_STYLES[style]
    unk_id, bos_id, eos_id, pad_id = st.ids
    unk, bos, eos, pad = st.pieces
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
        add_dummy_prefix=st.dummy_prefix,
        unk_id=unk_id,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        unk_piece=unk,
        bos_piece=bos,
        eos_piece=eos,
        pad_piece=pad,
        control_symbols=list(st.control),
        user_defined_symbols=list(st.user_defined),
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    (work_dir / "tokenizer.model").write_bytes(model.getvalue())
    # transformers converts tokenizer.model to a fast tokenizer (needs protobuf) ...
    backend = LlamaTokenizer.from_pretrained(
        work_dir, add_bos_token=st.add_bos, legacy=False, bos_token=bos, eos_token=eos, unk_token=unk
    ).backend_tokenizer
    # ... whose Metaspace(prepend_scheme='first') skips the dummy prefix when the text starts with a
    # space, unlike sentencepiece (and llama.cpp). Llama 2's own tokenizer.json prepends always;
    # Gemma's only maps spaces:
    space = "\u2581"
    steps = [normalizers.Prepend(space)] if st.dummy_prefix else []
    backend.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", space)])
    backend.pre_tokenizer = None
    if st.add_bos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, bos_id)]
        )
    else:
        backend.post_processor = None
    specials = [*st.control, *st.user_defined]
    if specials:
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        unk_token=unk,
        pad_token=pad if pad_id >= 0 else None,
        clean_up_tokenization_spaces=False,
    )
    if st.added_special:
        hf_tok.add_special_tokens(
            {
                "additional_special_tokens": [
                    AddedToken(t, rstrip=t in st.rstrip, special=True, normalized=False)
                    for t in st.added_special
                ]
            }
        )
    if eos in st.rstrip:
        hf_tok.backend_tokenizer.add_special_tokens(
            [AddedToken(eos, rstrip=True, special=True, normalized=False)]
        )
    return hf_tok
