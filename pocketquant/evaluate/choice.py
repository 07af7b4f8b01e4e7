"""Multiple-choice accuracy (MMLU-style) by the log-likelihood of each choice.

Input: JSONL rows {"question": str, "choices": [str, ...], "answer": int | "A".."Z"}, or CSV with a
header `question, <one column per choice...>, answer` (or a `choices` column holding a JSON list),
or MMLU's own header-less CSV (question, A, B, C, D, answer letter).

Each choice is scored as llama.cpp's multiple-choice scorer does: tokenize `context + " " + choice`,
skip the tokens shared with the context, sum the log-probs of the rest. `accuracy` picks the choice
with the best mean log-prob per token (llama.cpp), `accuracy_sum` the best total.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pocketquant.errors import EvaluationError
from pocketquant.evaluate.language_model import LanguageModel
from pocketquant.evaluate.scoring import score_rows


@dataclass(frozen=True)
class Task:
    question: str
    choices: list[str]
    answer: int


def _answer_index(value: object, n: int, where: str) -> int:
    s = str(value).strip()
    idx = (
        ord(s.upper()) - ord("A")
        if len(s) == 1 and s.isalpha()
        else int(s)
        if s.lstrip("-").isdigit()
        else -1
    )
    if not 0 <= idx < n:
        raise EvaluationError(f"{where}: answer {value!r} is not a choice letter/index among {n} choices")
    return idx


def load_tasks(path: str | os.PathLike[str]) -> list[Task]:
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"multiple-choice file not found: {path}")
    tasks: list[Task] = []
    if path.suffix in (".jsonl", ".json"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                row = json.loads(line)
                q, choices = str(row["question"]), [str(c) for c in row["choices"]]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise EvaluationError(f"{where}: expected {{question, choices, answer}}: {exc}") from exc
            tasks.append(Task(q, choices, _answer_index(row.get("answer"), len(choices), where)))
    else:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        header = [h.strip().lower() for h in rows[0]] if rows else []
        if "question" in header and "answer" in header:
            qi, ai = header.index("question"), header.index("answer")
            body, start = rows[1:], 2
        else:  # MMLU: question, choices..., answer
            qi, ai, body, start = 0, -1, rows, 1
        for n, row in enumerate(body, start):
            where = f"{path}:{n}"
            if "choices" in header:
                choices = [str(c) for c in json.loads(row[header.index("choices")])]
            else:
                ai_abs = ai % len(row)
                choices = [c for j, c in enumerate(row) if j not in (qi, ai_abs)]
            if len(choices) < 2:
                raise EvaluationError(f"{where}: fewer than two choices")
            tasks.append(Task(row[qi], choices, _answer_index(row[ai], len(choices), where)))
    if not tasks:
        raise EvaluationError(f"multiple-choice file {path} holds no questions")
    return tasks


def choice_sequence(model: LanguageModel, context: str, choice: str) -> tuple[np.ndarray, int]:
    """The tokens of context + choice, and where the choice's own tokens start."""
    ctx_ids = model.tokenize(context)
    full = np.asarray(model.tokenize(context + " " + choice), dtype=np.int32)
    common = 0
    while common < min(len(ctx_ids), len(full)) and ctx_ids[common] == full[common]:
        common += 1
    return full, max(common, 1)  # the first token is never predicted


def choice_logprob(model: LanguageModel, context: str, choice: str) -> tuple[float, int]:
    """Sum of log-probs of the choice's tokens after the context, and how many tokens that is."""
    full, common = choice_sequence(model, context, choice)
    return _choice_score(full, common, model.logits(full, common - 1))


def _choice_score(full: np.ndarray, common: int, rows: np.ndarray) -> tuple[float, int]:
    scores, _ = score_rows(rows[: len(full) - common], full[common:])
    return -float(scores.nll.sum()), len(full) - common


def mc_accuracy(model: LanguageModel, tasks: list[Task]) -> dict:
    """Each choice scored by the sum (and the mean) of its tokens' log-probs after the question;
    every (question, choice) sequence goes through one logits_many pass."""
    seqs = [choice_sequence(model, f"Question: {t.question}\nAnswer:", c) for t in tasks for c in t.choices]
    passes = model.logits_many((full, common - 1) for full, common in seqs)
    logprobs = [_choice_score(full, common, rows) for (full, common), rows in zip(seqs, passes, strict=True)]
    correct = correct_sum = 0
    at = 0
    for t in tasks:
        scored = logprobs[at : at + len(t.choices)]
        at += len(t.choices)
        correct += int(np.argmax([lp / n for lp, n in scored]) == t.answer)
        correct_sum += int(np.argmax([lp for lp, _ in scored]) == t.answer)
    return {
        "accuracy_pct": 100.0 * correct / len(tasks),
        "accuracy_sum_pct": 100.0 * correct_sum / len(tasks),
        "n_questions": len(tasks),
        "engine": model.engine,
    }
