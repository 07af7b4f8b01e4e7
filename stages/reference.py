"""Stage reference: the base model's final hidden states over the eval corpus (from which evaluation
recomputes its exact logits), computed once per corpus setting (params eval.corpus, eval.corpus_path,
eval.n_ctx, eval.chunks) with a fixed torch thread count (same bytes on every run), reused by every
variant. The base runs one decoder layer at a time (one layer's float32 weights in memory)."""

from __future__ import annotations

import argparse

from common import load_params, run

from pocketquant.evaluate.corpus import load_corpus
from pocketquant.evaluate.variant import build_reference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="base model: HF checkpoint directory")
    ap.add_argument("--out", required=True, help="base reference file to write (.safetensors)")
    args = ap.parse_args()
    e = load_params()["eval"]
    corpus = load_corpus(e["corpus"], e["corpus_path"])
    build_reference(args.model, corpus, args.out, n_ctx=e["n_ctx"], n_chunks=e["chunks"])


if __name__ == "__main__":
    run("reference", main)
