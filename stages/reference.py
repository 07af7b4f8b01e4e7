"""Stage reference: the base model's log-probs over the eval corpus, computed once per corpus setting
(params eval.corpus, eval.corpus_path, eval.n_ctx, eval.chunks) and reused by every variant."""

from __future__ import annotations

import argparse

from common import load_params, run, threads

from pocketquant.evaluate.corpus import load_corpus
from pocketquant.evaluate.variant import build_reference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="base model: HF checkpoint directory")
    ap.add_argument("--out", required=True, help="base log-probs file to write (.safetensors)")
    args = ap.parse_args()
    e = load_params()["eval"]
    corpus = load_corpus(e["corpus"], e["corpus_path"])
    build_reference(
        args.model, corpus, args.out, n_ctx=e["n_ctx"], n_chunks=e["chunks"], threads=threads(e["threads"])
    )


if __name__ == "__main__":
    run("reference", main)
