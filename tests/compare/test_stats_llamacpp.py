"""The uncertainties on a real model: the evaluation's PPL +/- error for the embedded SmolLM2 equals
llama-perplexity's computation done independently through llama-cpp-python's own API on the same
tokens, and the paired comparison tells Q2_K from Q8_0 but not Q8_0 from itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pocketquant.evaluate import stats

pytestmark = pytest.mark.slow
ll = pytest.importorskip("llama_cpp", reason="llama-cpp-python measures the GGUF variants")

N_CTX, CHUNKS = 128, 4


@pytest.fixture(scope="module")
def corpus():
    from pocketquant.evaluate.corpus import load_corpus

    return load_corpus()


@pytest.fixture(scope="module")
def reference(smollm2_hf_dir, corpus):
    """The base (transformers, float32) over CHUNKS chunks of N_CTX of the default corpus."""
    from pocketquant.evaluate.reference import compute_reference

    ref = compute_reference(smollm2_hf_dir, corpus, n_ctx=N_CTX, n_chunks=CHUNKS, threads=2, progress=False)
    return ref.with_output(smollm2_hf_dir)


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory):
    """F32 (llama.cpp's dequantization of the embedded Q4_1), then Q8_0 and Q2_K from it, all by
    llama.cpp's own llama_model_quantize."""
    from pocketquant.models import embedded_gguf_path

    d = tmp_path_factory.mktemp("stats-ggufs")

    def quantize(src, name: str, ftype: int) -> str:
        out = d / f"{name}.gguf"
        params = ll.llama_model_quantize_default_params()
        params.ftype = ftype
        params.allow_requantize = True
        params.nthread = 2
        assert ll.llama_model_quantize(str(src).encode(), str(out).encode(), params) == 0
        return str(out)

    f32 = quantize(embedded_gguf_path(), "f32", ll.LLAMA_FTYPE_ALL_F32)
    return {
        "f32": f32,
        "q8_0": quantize(f32, "q8_0", ll.LLAMA_FTYPE_MOSTLY_Q8_0),
        "q2_k": quantize(f32, "q2_k", ll.LLAMA_FTYPE_MOSTLY_Q2_K),
    }


def evaluate(path: str, corpus, reference) -> dict:  # noqa: ANN001
    from pocketquant.evaluate.llamacpp import LlamaCppModel
    from pocketquant.evaluate.quality import evaluate_quality

    with LlamaCppModel(path, n_ctx=N_CTX, threads=2) as model:
        return evaluate_quality(model, corpus, reference, progress=False)


def llama_perplexity(path: str, text: str) -> tuple[float, float, int]:
    """llama-perplexity's perplexity() over the first CHUNKS chunks, through llama_cpp.Llama:
    log_softmax per scored token as the C++ does it (float logits, double sum of expf), running
    double sums of nll and nll^2, then "Final estimate: PPL = ... +/- ...".

    flash_attn=True: llama-perplexity's default (flash attention "auto") turns it on for the CPU;
    llama_cpp.Llama's default turns it off, which moves SmolLM2's logits by up to 1.3."""
    llm = ll.Llama(
        path,
        n_ctx=N_CTX,
        n_batch=N_CTX,
        n_ubatch=N_CTX,
        logits_all=True,
        n_threads=2,
        verbose=False,
        flash_attn=True,
    )
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    add_bos = bool(ll.llama_vocab_get_add_bos(llm._model.vocab))
    first = N_CTX // 2
    nll = nll2 = 0.0
    count = 0
    for i in range(CHUNKS):
        chunk = list(tokens[i * N_CTX : (i + 1) * N_CTX])
        if add_bos:
            chunk[0] = llm.token_bos()
        llm.reset()
        llm.eval(chunk)
        logits = np.asarray(llm.scores[:N_CTX], dtype=np.float32)
        for j in range(first, N_CTX - 1):
            row = logits[j]
            max_logit = row.max()
            sum_exp = float(np.exp(row - max_logit, dtype=np.float32).astype(np.float64).sum())
            log_sum_exp = np.float32(math.log(sum_exp))
            v = float(max_logit + log_sum_exp - row[chunk[j + 1]])
            nll += v
            nll2 += v * v
            count += 1
    llm.close()
    nll2 /= count
    nll /= count
    ppl = math.exp(nll)
    return ppl, math.sqrt((nll2 - nll * nll) / (count - 1)) * ppl, count


def test_ppl_error_equals_llama_perplexity_on_the_same_tokens(ggufs, corpus, reference):
    q = evaluate(ggufs["q8_0"], corpus, reference)
    ppl, err, count = llama_perplexity(ggufs["q8_0"], corpus.text)
    assert q["tokens_scored"] == count == CHUNKS * (N_CTX - 1 - N_CTX // 2)
    assert q["ppl"] == pytest.approx(ppl, rel=1e-5)
    assert q["ppl_err"] == pytest.approx(err, rel=1e-4) and err > 0
    t = q["per_token"]
    assert t.n == count and stats.perplexity(t.nll).err == pytest.approx(err, rel=1e-4)


def test_paired_comparison_q2_k_vs_q8_0_and_q8_0_vs_itself(ggufs, corpus, reference):
    q8 = evaluate(ggufs["q8_0"], corpus, reference)["per_token"]
    q8_again = evaluate(ggufs["q8_0"], corpus, reference)["per_token"]
    q2 = evaluate(ggufs["q2_k"], corpus, reference)["per_token"]
    assert q2.tokens_sha256 == q8.tokens_sha256  # the same tokens: a paired comparison is valid

    same_nll = stats.paired_difference(q8_again.nll, q8.nll)
    same_kld = stats.paired_difference(q8_again.kld, q8.kld)
    assert not same_nll.significant and not same_kld.significant
    assert same_nll.verdict("q8_0", "q8_0", "perplexity").startswith("no significant difference")

    nll = stats.paired_difference(q2.nll, q8.nll)
    kld = stats.paired_difference(q2.kld, q8.kld)
    assert nll.significant and nll.mean > 0 and nll.low > 0
    assert kld.significant and kld.mean > 0 and kld.low > 0
    assert nll.verdict("q2_k", "q8_0", "perplexity") == (
        "q8_0 has a lower perplexity than q2_k (95% interval excludes 0)"
    )
