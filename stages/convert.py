"""Stage convert: the HF checkpoint -> the base GGUF (params `convert.outtype`: f16, bf16 or f32;
`convert.backend`: native, or llamacpp for architectures without a native family)."""

from __future__ import annotations

import argparse

from common import load_params, run

from pocketquant.convert import convert_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="HF checkpoint directory (acquire's output)")
    ap.add_argument("--out", required=True, help="GGUF file to write")
    args = ap.parse_args()
    p = load_params()
    c = p["convert"]
    convert_model(
        args.model, args.out, c["outtype"], name=p["model"]["name"], backend=c.get("backend", "native")
    )


if __name__ == "__main__":
    run("convert", main)
