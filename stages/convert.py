"""Stage convert: the HF checkpoint -> the base GGUF (params `convert.outtype`: f16, bf16 or f32)."""

from __future__ import annotations

import argparse

from common import load_params, run

from pocketquant.checkpoint_check import preflight_convert
from pocketquant.convert import convert_hf_to_gguf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="HF checkpoint directory (acquire's output)")
    ap.add_argument("--out", required=True, help="GGUF file to write")
    args = ap.parse_args()
    p = load_params()
    preflight_convert(args.model, args.out)
    convert_hf_to_gguf(args.model, args.out, outtype=p["convert"]["outtype"], name=p["model"]["name"])


if __name__ == "__main__":
    run("convert", main)
