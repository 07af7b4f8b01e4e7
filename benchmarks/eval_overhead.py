"""Cost of our PPL + KLD pass relative to llama.cpp's own forward time on the same tokens.

    .venv/bin/python benchmarks/eval_overhead.py [--model GGUF] [--base HF_DIR] [--corpus wikitext2]
        [--chunks 20]

For every chunk, in turn (alternating which goes first): (a) llama.cpp's forward pass alone
(llama_decode with outputs at the scored positions, as llama-perplexity does), and (b) the same
forward pass plus our scoring of it
(the base's exact logits recomputed from the stored hidden states, `reference.chunk_logits`, then
`quality.score_chunk`: NLL, full-vocabulary KL divergence, top-1 agreement), i.e. what
`evaluate_quality` does per chunk. Interleaving keeps both under the same machine load; wall
and process CPU time (all threads) are both reported, and the scoring alone is timed too (the
machine is shared, so the scoring-alone ratio is the steadiest figure). Prints ratio = (b) / (a);
the target is <= 1.3.
Then one whole `evaluate_quality` call (adds the tokenizer check) is timed against (a).
The reference (base hidden states) is computed from --base (an HF checkpoint dir; default
artifacts/base/hf, else the embedded SmolLM2 acquired into a temp dir) unless --reference is given.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from tempfile import mkdtemp

from pocketquant.evaluate.corpus import load_corpus
from pocketquant.evaluate.language_model import default_threads
from pocketquant.evaluate.llamacpp import LlamaCppModel
from pocketquant.evaluate.quality import evaluate_quality, score_chunk
from pocketquant.evaluate.reference import load_reference
from pocketquant.evaluate.variant import build_reference


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="GGUF to evaluate (default: the embedded SmolLM2 Q4_1)")
    ap.add_argument("--corpus", default="wikitext2", help="default | wikitext2 | a text file")
    ap.add_argument("--corpus-path", default=None)
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--base", help="base HF checkpoint dir (default: artifacts/base/hf or acquired)")
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--reference", help="existing base reference file (else computed from --base)")
    a = ap.parse_args()
    if a.model is None:
        from pocketquant.models import embedded_gguf_path

        a.model = embedded_gguf_path()
    if a.base is None:
        a.base = Path("artifacts/base/hf")
        if not (a.base / "config.json").is_file():
            from pocketquant.models import ModelSource, acquire_model

            a.base = acquire_model(ModelSource.from_config(name="smollm2-135m"), Path(mkdtemp()) / "hf")
    import torch

    corpus = load_corpus(a.corpus, a.corpus_path)
    if a.reference:
        ref = load_reference(a.reference, a.base)
    else:
        ref = build_reference(
            a.base,
            corpus,
            Path(mkdtemp()) / "ref.safetensors",
            n_ctx=a.n_ctx,
            n_chunks=a.chunks,
            progress=True,
        )
        ref = ref.with_output(a.base)
    torch.set_num_threads(a.threads)
    with LlamaCppModel(a.model, n_ctx=a.n_ctx, threads=a.threads) as model:
        ch = ref.chunks()
        fwd = [0.0, 0.0]
        full = [0.0, 0.0]
        scoring = [0.0, 0.0]
        for i in range(ch.n_chunks):
            for step in ("fwd", "full") if i % 2 == 0 else ("full", "fwd"):  # alternate the order
                w0, c0 = _clock()
                if step == "fwd":
                    model.forward_only(ch.tokens[i], ch.first)
                    w1, c1 = _clock()
                    fwd[0] += w1 - w0
                    fwd[1] += c1 - c0
                    continue
                logits = model.logits(ch.tokens[i], ch.first)[: ch.n_scored]
                ws, cs = _clock()
                score_chunk(logits, ch.targets[i], ref.chunk_logits(i))
                w1, c1 = _clock()
                full[0] += w1 - w0
                full[1] += c1 - c0
                scoring[0] += w1 - ws
                scoring[1] += c1 - cs
        w0, _ = _clock()
        q = evaluate_quality(model, corpus, ref, progress=False)
        whole = time.perf_counter() - w0
    print(
        f"model {a.model}\ncorpus {corpus.name}, {ch.n_chunks} x {ch.n_ctx} tokens, {a.threads} threads, "
        f"exact full-vocabulary KLD (base hidden states from {a.base})"
    )
    print(f"llama.cpp forward only      : wall {fwd[0]:8.3f} s   cpu {fwd[1]:8.3f} s")
    print(f"forward + PPL/KLD scoring   : wall {full[0]:8.3f} s   cpu {full[1]:8.3f} s")
    print(
        f"ratio (interleaved chunks)  : wall {full[0] / fwd[0]:8.3f}     cpu {full[1] / fwd[1]:8.3f}"
        "   (target <= 1.3)"
    )
    print(
        f"scoring alone               : wall {scoring[0]:8.3f} s   cpu {scoring[1]:8.3f} s   "
        f"-> (forward + scoring) / forward: wall {1 + scoring[0] / fwd[0]:.3f}, "
        f"cpu {1 + scoring[1] / fwd[1]:.3f}"
    )
    print(f"whole evaluate_quality call : wall {whole:8.3f} s   ratio vs forward wall {whole / fwd[0]:.3f}")
    print(f"(PPL {q['ppl']:.4f}, KLD mean {q['kld_mean']:.6f}, same top-1 {q['top1_agreement_pct']:.2f}%)")


if __name__ == "__main__":
    main()
