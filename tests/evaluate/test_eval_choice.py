"""Multiple-choice accuracy by log-likelihood, on question files the tests write themselves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pocketquant.errors import EvaluationError
from pocketquant.evaluate.choice import choice_logprob, load_tasks, mc_accuracy

EASY = [
    ("What is the capital of France?", ["Paris", "a bicycle", "seventeen", "blue cheese"], 0),
    ("How many legs does a dog have?", ["three hundred", "four", "a window", "Tuesday"], 1),
    ("What color is the sky on a clear day?", ["green with stripes", "loud", "blue", "a potato"], 2),
    ("Which animal says meow?", ["a cow", "an airplane", "a carrot", "a cat"], 3),
]


def test_csv_with_header_mmlu_csv_and_jsonl_parse_alike(tmp_path):
    header = tmp_path / "h.csv"
    header.write_text(
        "question,A,B,C,D,answer\n" + "".join(f'"{q}",{",".join(c)},{"ABCD"[a]}\n' for q, c, a in EASY)
    )
    mmlu = tmp_path / "mmlu.csv"
    mmlu.write_text("".join(f'"{q}",{",".join(c)},{"ABCD"[a]}\n' for q, c, a in EASY))
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"question": q, "choices": c, "answer": a}) + "\n" for q, c, a in EASY)
    )
    parsed = [load_tasks(p) for p in (header, mmlu, jsonl)]
    assert parsed[0] == parsed[1] == parsed[2]
    assert parsed[0][1].choices == EASY[1][1] and parsed[0][3].answer == 3


def test_bad_rows_name_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps({"question": "q", "choices": ["a", "b"], "answer": "C"}) + "\n")
    with pytest.raises(EvaluationError, match=r"bad.jsonl:1: answer 'C'"):
        load_tasks(p)
    with pytest.raises(EvaluationError, match="not found: .*missing.csv"):
        load_tasks(tmp_path / "missing.csv")


@pytest.mark.slow
def test_choice_logprob_is_the_sum_over_the_continuation_tokens(smollm2_hf):
    lp, n = choice_logprob(smollm2_hf, "Question: What is the capital of France?\nAnswer:", "Paris")
    full = np.asarray(smollm2_hf.tokenize("Question: What is the capital of France?\nAnswer: Paris"))
    logits = smollm2_hf.logits(full, 0).astype(np.float64)
    logp = (
        logits
        - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
        - logits.max(1, keepdims=True)
    )
    direct = sum(logp[i - 1, full[i]] for i in range(len(full) - n, len(full)))
    assert n >= 1 and lp == pytest.approx(direct, abs=1e-3)


@pytest.mark.slow
def test_easy_questions_are_answered(smollm2_hf, tmp_path):
    p = tmp_path / "easy.jsonl"
    p.write_text("".join(json.dumps({"question": q, "choices": c, "answer": a}) + "\n" for q, c, a in EASY))
    r = mc_accuracy(smollm2_hf, load_tasks(p))
    assert r["n_questions"] == 4 and r["engine"] == "transformers"
    assert r["accuracy_pct"] >= 75.0
