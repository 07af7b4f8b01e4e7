"""Deployment speed of one model in its engine: load time, prompt processing and generation
tokens/s, time to first token, peak RSS. Measured numbers (stored in metrics), not assertions.

Each measurement runs in a fresh Python process so that peak RSS is the model's own (not the
evaluating process's torch, the base model, ...), started with `python -m pocketquant.evaluate.runtime`.

- load_s: opening the model and creating its context (llama.cpp) / from_pretrained (transformers)
- prompt: the first `n_prompt` (512) tokens of the corpus, BOS first when the model adds one
- pp_tokens_per_s: n_prompt / time of the prompt's forward pass (best of `reps`, after a warm-up)
- ttft_s: prompt forward + picking the first token (same runs)
- tg_tokens_per_s: n_gen (128) tokens generated one at a time after the prompt, never stopping early
- peak_rss_mib: the process's maximum resident set size (VmHWM, pocketquant.process_usage)

The same child also generates greedy completions of given prompts (token ids in, token ids out)
when the evaluating process runs the model in layer groups and so cannot generate itself
(evaluate/layer_groups.py); `bench=False` then skips the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pocketquant.evaluate.errors import CorpusError, ModelLoadError
from pocketquant.evaluate.language_model import LanguageModel
from pocketquant.evaluate.model import open_model
from pocketquant.process_usage import peak_rss_bytes, return_freed_memory


def bench_in_process(
    path: str | Path,
    text: str,
    *,
    threads: int,
    n_prompt: int = 512,
    n_gen: int = 128,
    reps: int = 2,
    bench: bool = True,
    generate: list[list[int]] | None = None,
    max_new_tokens: int = 0,
) -> dict:
    t0 = time.perf_counter()
    model = open_model(path, threads=threads, n_ctx=n_prompt + n_gen)
    load_s = time.perf_counter() - t0
    with model:
        res = _timings(model, text, n_prompt=n_prompt, n_gen=n_gen, reps=reps) if bench else {}
        if bench:
            res.update(engine=model.engine, threads=threads, load_s=load_s)
        if generate:  # after the timings, which stay those of a model that did nothing else
            res["generations"] = [model.generate(ids, max_new_tokens) for ids in generate]
    # this child's own peak (VmHWM; ru_maxrss would start at the evaluating parent's RSS)
    res["peak_rss_mib"] = peak_rss_bytes() / 2**20
    return res


def _timings(model: LanguageModel, text: str, *, n_prompt: int, n_gen: int, reps: int) -> dict:
    ids = model.tokenize(text)[:n_prompt]
    if len(ids) < n_prompt:
        raise CorpusError(f"runtime benchmark needs a {n_prompt}-token prompt; the corpus gives {len(ids)}")
    model.start(ids[:16])  # warm-up: first-call allocations, thread pool start
    model.step(ids[16])
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        tok = model.start(ids)
        best = min(best, time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(n_gen):
        tok = model.step(tok)
    tg_s = time.perf_counter() - t
    return {
        "n_prompt": n_prompt,
        "pp_tokens_per_s": n_prompt / best,
        "ttft_s": best,
        "n_gen": n_gen,
        "tg_tokens_per_s": n_gen / tg_s,
    }


def measure_runtime(
    path: str | Path,
    text: str,
    *,
    threads: int,
    n_prompt: int = 512,
    n_gen: int = 128,
    reps: int = 2,
    timeout_s: float = 1800,
    bench: bool = True,
    generate: list[list[int]] | None = None,
    max_new_tokens: int = 0,
) -> dict:
    """Run `bench_in_process` in a child process and return its numbers (and with `generate`, the
    greedy continuations of those prompt token ids under "generations")."""
    with tempfile.TemporaryDirectory(prefix="pq-runtime-") as tmp:
        prompt, out = Path(tmp) / "prompt.txt", Path(tmp) / "out.json"
        prompt.write_text(text[: 64 * n_prompt], encoding="utf-8")  # plenty of characters for n_prompt
        extra = [] if bench else ["--no-bench"]
        if generate:
            gen = Path(tmp) / "generate.json"
            job = {"prompts": generate, "max_new_tokens": max_new_tokens}
            gen.write_text(json.dumps(job), encoding="utf-8")
            extra += ["--generate", str(gen)]
        cmd = [
            sys.executable,
            "-m",
            "pocketquant.evaluate.runtime",
            str(path),
            str(prompt),
            str(out),
            "--threads",
            str(threads),
            "--n-prompt",
            str(n_prompt),
            "--n-gen",
            str(n_gen),
            "--reps",
            str(reps),
            *extra,
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise ModelLoadError(f"runtime benchmark of {path} failed: {' | '.join(tail)}")
        return json.loads(out.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Benchmark one model's runtime (used in a child process).")
    p.add_argument("model")
    p.add_argument("prompt_file")
    p.add_argument("out_json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-prompt", type=int, default=512)
    p.add_argument("--n-gen", type=int, default=128)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--no-bench", action="store_true", help="skip the timings (generate only)")
    p.add_argument(
        "--generate", help='JSON {"prompts": [[token ids], ...], "max_new_tokens": N}: greedy continuations'
    )
    a = p.parse_args(argv)
    return_freed_memory()  # the child's peak RSS is what it really holds (pocketquant.process_usage)
    text = Path(a.prompt_file).read_text(encoding="utf-8")
    gen = json.loads(Path(a.generate).read_text(encoding="utf-8")) if a.generate else {}
    res = bench_in_process(
        a.model,
        text,
        threads=a.threads,
        n_prompt=a.n_prompt,
        n_gen=a.n_gen,
        reps=a.reps,
        bench=not a.no_bench,
        generate=gen.get("prompts"),
        max_new_tokens=gen.get("max_new_tokens", 0),
    )
    Path(a.out_json).write_text(json.dumps(res), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
