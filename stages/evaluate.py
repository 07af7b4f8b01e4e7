"""Stages evaluate and evaluate_base: size, perplexity, KL divergence against the base reference,
runtime and fixed-prompt generations of one model -> its metrics JSON (params `eval`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from common import load_params, run, threads, variant_label, variant_path

from pocketquant.evaluate.corpus import load_corpus
from pocketquant.evaluate.size import model_size
from pocketquant.evaluate.variant import evaluate_variant


def refuse_calibration_overlap(base: str, e: dict, c: dict) -> None:
    """A calibrated variant must not be scored on text its importance matrix saw (the numbers would
    flatter it): checked here, where both the eval and the calib settings are known."""
    from transformers import AutoTokenizer

    from pocketquant.calibrate import check_calibration_disjoint

    calib = load_corpus(c["corpus"], c["corpus_path"])
    check_calibration_disjoint(
        AutoTokenizer.from_pretrained(base),
        eval_text=load_corpus(e["corpus"], e["corpus_path"]).text,
        eval_n_ctx=e["n_ctx"],
        eval_chunks=e["chunks"],
        calib_text=calib.text,
        skip_fraction=c["skip_fraction"],
        calib_n_ctx=c["n_ctx"],
        calib_chunks=c["chunks"],
        name=calib.name,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", help="row name in the report (default: the variant's label from params quant)")
    ap.add_argument("--model", required=True, help="variant: quantize's output dir, or a GGUF file")
    ap.add_argument(
        "--base",
        required=True,
        help="base HF checkpoint dir (BF16 size; its output matrix gives the exact base logits)",
    )
    ap.add_argument(
        "--reference", required=True, help="base reference: hidden states (the reference stage's output)"
    )
    ap.add_argument("--metrics", required=True, help="metrics JSON to write")
    ap.add_argument("--generations", required=True, help="generated texts JSON to write")
    ap.add_argument("--tokens", required=True, help="per-token scores to write (NLL, KLD, same top-1)")
    ap.add_argument(
        "--unquantized",
        action="store_true",
        help="the model is the base itself (evaluate_base): the quant and calib params are not read, "
        "so a sweep over schemes shares this stage (default: a quantized variant)",
    )
    args = ap.parse_args()
    if args.unquantized and not args.name:
        ap.error("--unquantized needs --name (there is no scheme to name the row after)")
    p = load_params()
    e = p["eval"]
    model = Path(args.model)
    if not args.unquantized and p["quant"]["imatrix"]:
        refuse_calibration_overlap(args.base, e, p["calib"])
    evaluate_variant(
        variant_path(model) if model.is_dir() else model,
        name=args.name or variant_label(p["quant"]),
        corpus=load_corpus(e["corpus"], e["corpus_path"]),
        reference=args.reference,
        base=args.base,
        metrics_out=args.metrics,
        generations_out=args.generations,
        tokens_out=args.tokens,
        base_n_params=model_size(args.base)["n_params"],
        threads=threads(e["threads"]),
        max_resident_gb=e["max_resident_gb"],
        prompts=list(e["prompts"]),
        max_new_tokens=e["max_new_tokens"],
        mc_path=e["mc"]["path"],
        runtime=e["bench"]["enabled"],
        n_prompt=e["bench"]["prompt_tokens"],
        n_gen=e["bench"]["gen_tokens"],
    )


if __name__ == "__main__":
    run("evaluate", main)
