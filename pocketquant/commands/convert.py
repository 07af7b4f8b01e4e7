"""`pocketquant convert MODEL_DIR OUT.gguf [--outtype f16|bf16|f32] [--backend native|llamacpp]`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from pocketquant.convert.backend import BACKENDS, DEFAULT_BACKEND

    parser = subparsers.add_parser(
        "convert",
        help="convert an HF checkpoint to GGUF (native families, or llama.cpp's converter for any other)",
        description=(
            "Convert a Hugging Face checkpoint to a GGUF file that llama.cpp loads, with the tokenizer and "
            "chat template. The native converter handles Llama (2/3/3.x, SmolLM, TinyLlama), Mistral, "
            "Qwen2/2.5, Qwen3, Gemma 1/2/3, Phi-2, Phi-3/3.5/4-mini, OLMo 2 and Granite, with the same "
            "tensors and metadata as llama.cpp's own converter; --backend llamacpp runs that converter "
            "(installed by scripts/setup.sh) for any other architecture."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "model_dir", metavar="MODEL_DIR", help="HF checkpoint directory (config.json, safetensors, tokenizer)"
    )
    parser.add_argument("out", metavar="OUT.gguf", help="output GGUF file (written atomically)")
    parser.add_argument(
        "--outtype",
        choices=["f16", "bf16", "f32"],
        default="f16",
        help="type of 2-D weights (norms stay F32; default: %(default)s)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=DEFAULT_BACKEND,
        help="native (ours, for the families in docs/models.md) or llamacpp (llama.cpp's own converter, "
        "any architecture it knows; default: %(default)s)",
    )
    parser.add_argument(
        "--name", default=None, help="general.name (default: from config.json, else the directory name)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pocketquant.convert import convert_model

    out = convert_model(args.model_dir, args.out, args.outtype, name=args.name, backend=args.backend)
    print(out)
    return 0
