"""The two calls the pipeline's evaluate stage makes.

build_reference: the base model over the corpus once, layer by layer -> base reference file (its
final hidden states, DVC-cached); evaluate_variant recomputes the exact base distribution from it
with the base checkpoint's output head (`base=`), one vocabulary slice of W_out at a time.
evaluate_variant: size, PPL + KLD against the reference, runtime, fixed-prompt generations and
(optionally) multiple-choice accuracy -> one metrics JSON (+ generations JSON, + the process's wall
time and peak RSS under "process"). Everything is
computed before anything is written, and each file is written atomically: a failure at any step
leaves no metrics file.
"""

from __future__ import annotations

import os

from pocketquant.evaluate.choice import load_tasks, mc_accuracy
from pocketquant.evaluate.corpus import Corpus
from pocketquant.evaluate.generate import format_prompts, generation_records
from pocketquant.evaluate.language_model import default_threads
from pocketquant.evaluate.layer_groups import LayerGroupedLlamaCpp
from pocketquant.evaluate.metrics import build_metrics, write_json, write_token_scores
from pocketquant.evaluate.model import open_model
from pocketquant.evaluate.quality import evaluate_quality
from pocketquant.evaluate.reference import BaseReference, compute_reference, load_reference, save_reference
from pocketquant.evaluate.runtime import measure_runtime
from pocketquant.evaluate.size import model_size
from pocketquant.process_usage import log_usage, return_freed_memory

PathLike = str | os.PathLike[str]


def build_reference(
    base: PathLike,
    corpus: Corpus,
    out: PathLike,
    *,
    n_ctx: int = 512,
    n_chunks: int | None = 20,
    threads: int | None = None,
    progress: bool = True,
) -> BaseReference:
    """Base model (HF checkpoint dir) -> reference file at `out` (hidden states, see reference.py),
    streaming the base layer by layer; logs the wall time and peak RSS of the process."""
    return_freed_memory()
    ref = compute_reference(base, corpus, n_ctx=n_ctx, n_chunks=n_chunks, threads=threads, progress=progress)
    save_reference(ref, out)
    log_usage("reference")
    return ref


def evaluate_variant(
    variant: PathLike,
    *,
    name: str,
    corpus: Corpus,
    reference: BaseReference | PathLike,
    metrics_out: PathLike,
    base: PathLike | None = None,
    generations_out: PathLike | None = None,
    tokens_out: PathLike | None = None,
    base_n_params: int | None = None,
    threads: int | None = None,
    prompts: list[str] | None = None,
    max_new_tokens: int = 64,
    mc_path: PathLike | None = None,
    runtime: bool = True,
    n_prompt: int = 512,
    n_gen: int = 128,
    progress: bool = True,
    max_resident_gb: float | None = None,
) -> dict:
    """Measure one variant (GGUF file -> llama.cpp, HF/NF4 dir -> transformers) and write its metrics.

    `base`: the base HF checkpoint dir the reference was built from (its output matrix turns the
    stored hidden states back into exact logits); optional when `reference` already carries it; its
    chat template formats the generation prompts. `tokens_out`: the per-token scores file.
    `max_resident_gb`: a GGUF bigger than this is scored one group of layers at a time
    (evaluate/layer_groups.py), its generations made by the runtime child."""
    threads = threads or default_threads()
    return_freed_memory()  # blocks of logits come and go: keep RSS to what is in use
    ref = reference if isinstance(reference, BaseReference) else load_reference(reference)
    if base is not None:
        ref = ref.with_output(base)
    size = model_size(variant, base_n_params)
    max_bytes = None if max_resident_gb is None else int(max_resident_gb * 1e9)
    speed = None
    # Before the model is loaded: the base's tokenizer is big too (250 MB at a 128k vocabulary).
    templated, texts = format_prompts(prompts or [], base)
    with open_model(variant, threads=threads, n_ctx=ref.n_ctx, max_resident_bytes=max_bytes) as model:
        quality = evaluate_quality(model, corpus, ref, progress=progress)
        per_token = quality.pop("per_token")
        mc = mc_accuracy(model, load_tasks(mc_path)) if mc_path else None
        prompt_ids = [model.tokenize(text, special=True) for text in texts]
        grouped = isinstance(model, LayerGroupedLlamaCpp)
        if not grouped:
            new_ids = [model.generate(ids, max_new_tokens) for ids in prompt_ids]
        else:
            # No layer group generates: the deployment child, which loads the whole file anyway,
            # generates too (this process holds the tokenizer alone meanwhile).
            quality["layer_groups"] = [list(g) for g in model.groups]
            child = (
                measure_runtime(
                    variant,
                    corpus.text,
                    threads=threads,
                    n_prompt=n_prompt,
                    n_gen=n_gen,
                    bench=runtime,
                    generate=prompt_ids,
                    max_new_tokens=max_new_tokens,
                )  # fmt: skip
                if runtime or prompt_ids
                else {}
            )
            new_ids = child.pop("generations", [])
            speed = child if runtime else None
        generations = generation_records(
            model, prompts or [], new_ids, max_new_tokens=max_new_tokens, templated=templated
        )
    if runtime and not grouped:  # after the model is freed: the child's RSS is the machine's too
        speed = measure_runtime(variant, corpus.text, threads=threads, n_prompt=n_prompt, n_gen=n_gen)
    metrics = build_metrics(name, size=size, quality=quality, speed=speed, mc=mc)
    # This process's own wall time and peak RSS (the llama.cpp runtime child's are in `speed`).
    metrics["process"] = log_usage(f"evaluate {name}")
    if generations_out is not None:
        write_json(
            generations_out,
            {
                "variant": name,
                "engine": quality["engine"],
                "max_new_tokens": max_new_tokens,
                "generations": generations,
            },
        )
    if tokens_out is not None:
        write_token_scores(tokens_out, per_token, name)
    write_json(metrics_out, metrics)
    return metrics
