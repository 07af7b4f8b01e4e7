"""Cost of our PPL + KLD pass relative to llama.cpp's own forward time on the same tokens.

    .venv/bin/python benchmarks/eval_overhead.py [--model GGUF] [--corpus wikitext2] [--chunks 20]

Measured in one run: (a) llama.cpp's forward passes alone (llama_decode of every chunk, outputs at
the scored positions, as llama-perplexity does), (b) the full `evaluate_quality` call (tokenizer check,
the same forward passes, NLL, KL divergence from the top-k base reference, top-1 agreement).
Prints ratio = (b) / (a); the target is <= 1.3. (a) is measured before and after (b) and averaged,
because the machine is shared. The reference is computed with the same model (its values do not
matter for the cost; every scoring op still runs) unless --reference is given.
"""

from __future__ import annotations

import argparse
import time

from pocketquant.evaluate.corpus import load_corpus
from pocketquant.evaluate.llamacpp import LlamaCppModel
from pocketquant.evaluate.model import default_threads
from pocketquant.evaluate.quality import evaluate_quality
from pocketquant.evaluate.reference import compute_reference, load_reference


def forward_only(model: LlamaCppModel, chunks) -> float:
    t = time.perf_counter()
    for i in range(chunks.n_chunks):
        model.forward_only(chunks.tokens[i], chunks.first)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="GGUF to evaluate (default: the embedded SmolLM2 Q4_1)")
    ap.add_argument("--corpus", default="wikitext2", help="default | wikitext2 | a text file")
    ap.add_argument("--corpus-path", default=None)
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--top-k", type=int, default=64)
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--reference", help="existing base log-probs file (else computed with --model)")
    a = ap.parse_args()
    if a.model is None:
        from pocketquant.models import embedded_gguf_path

        a.model = embedded_gguf_path()
    corpus = load_corpus(a.corpus, a.corpus_path)
    with LlamaCppModel(a.model, n_ctx=a.n_ctx, threads=a.threads) as model:
        if a.reference:
            ref = load_reference(a.reference)
        else:
            ref = compute_reference(
                model, corpus, n_ctx=a.n_ctx, n_chunks=a.chunks, top_k=a.top_k, progress=False
            )
        chunks = ref.chunks()
        fwd1 = forward_only(model, chunks)
        t = time.perf_counter()
        q = evaluate_quality(model, corpus, ref, progress=False)
        full = time.perf_counter() - t
        fwd2 = forward_only(model, chunks)
    fwd = (fwd1 + fwd2) / 2
    print(
        f"model {a.model}, corpus {corpus.name}, {chunks.n_chunks} x {chunks.n_ctx} tokens, "
        f"{a.threads} threads, top-k {ref.meta['k']}"
    )
    print(f"llama.cpp forward only : {fwd:8.3f} s  (runs: {fwd1:.3f}, {fwd2:.3f})")
    print(f"PPL + KLD pass         : {full:8.3f} s  (PPL {q['ppl']:.4f}, KLD mean {q['kld_mean']:.6f})")
    print(f"ratio                  : {full / fwd:8.3f}  (target <= 1.3)")


if __name__ == "__main__":
    main()
