"""`pocketquant convert MODEL_DIR OUT.gguf [--outtype f16|bf16|f32]`: HF Llama checkpoint -> GGUF."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an HF Llama-family checkpoint to GGUF (like llama.cpp's convert_hf_to_gguf.py)",
        description=(
            "Convert a Hugging Face Llama-family checkpoint (Llama 2/3/3.1/3.2, SmolLM) to a GGUF file "
            "that llama.cpp loads, with the tokenizer and chat template."
        ),
    )
    parser.add_argument(
        "model_dir", metavar="MODEL_DIR", help="HF checkpoint directory (config.json, safetensors)"
    )
    parser.add_argument("out", metavar="OUT.gguf", help="output GGUF file (written atomically)")
    parser.add_argument(
        "--outtype",
        choices=["f16", "bf16", "f32"],
        default="f16",
        help="type of 2-D weights (norms stay F32); default: f16",
    )
    parser.add_argument(
        "--name", default=None, help="general.name (default: from config.json, else the directory name)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pocketquant.checkpoint_check import preflight_convert
    from pocketquant.convert import convert_hf_to_gguf

    preflight_convert(args.model_dir, args.out)  # bad files and hparams: one named error, first
    out = convert_hf_to_gguf(args.model_dir, args.out, args.outtype, name=args.name)
    print(out)
    return 0
