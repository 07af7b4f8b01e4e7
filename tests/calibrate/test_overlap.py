"""Calibration text never overlaps evaluation text (issue 5 item 3).

For the default corpus and WikiText-2, with every eval setting in conf/eval/*.yaml and the calib
setting of conf/calib/default.yaml, the character spans that the evaluation scores and that
calibration reads (cut with the chunking functions the stages use) are disjoint; a configuration
where they would meet is refused with CalibrationOverlapError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from pocketquant.calibrate import (
    CalibrationOverlapError,
    calib_char_span,
    calibration_text,
    check_calibration_disjoint,
    eval_char_span,
    eval_token_ids,
)
from pocketquant.errors import ImatrixError

pytest.importorskip("transformers")
pytestmark = pytest.mark.slow  # the embedded model's tokenizer comes from acquiring the model

CONF = Path(__file__).resolve().parents[2] / "conf"
EVAL_SETTINGS = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((CONF / "eval").glob("*.yaml"))}
CALIB = yaml.safe_load((CONF / "calib" / "default.yaml").read_text())


@pytest.fixture(scope="module")
def tokenizer(smollm2_hf_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_hf_dir)


@pytest.fixture(scope="module")
def hf_engine(smollm2_hf_dir):
    """The evaluation's transformers engine: its tokenize is what the reference stage chunks."""
    from pocketquant.evaluate.model import open_model

    with open_model(smollm2_hf_dir, threads=1, n_ctx=512) as model:
        yield model


def _corpus(kind: str, wikitext2_path):
    from pocketquant.evaluate.corpus import load_corpus

    return load_corpus("default", None) if kind == "default" else load_corpus("wikitext2", wikitext2_path)


@pytest.fixture(params=["default", "wikitext2"])
def corpus(request):
    wt2 = request.getfixturevalue("wikitext2_path") if request.param == "wikitext2" else None
    return _corpus(request.param, wt2)


def test_conf_has_the_settings_we_check():
    assert {"default", "smoke", "wikitext2"} <= set(EVAL_SETTINGS)
    assert 0 < CALIB["skip_fraction"] < 1 and CALIB["chunks"] >= 1


@pytest.mark.parametrize("setting", sorted(EVAL_SETTINGS))
def test_eval_and_calibration_spans_are_disjoint(setting, corpus, tokenizer, hf_engine):
    from pocketquant.evaluate.reference import chunk_ids, corpus_ids

    e = EVAL_SETTINGS[setting]
    # the span function's tokens are those the reference stage feeds its chunks
    want = corpus_ids(hf_engine, corpus, e["n_ctx"], e["chunks"])
    want = want[: chunk_ids(hf_engine, corpus, want, e["n_ctx"], e["chunks"]).n_chunks * e["n_ctx"]]
    got = eval_token_ids(tokenizer, corpus.text, n_ctx=e["n_ctx"], n_chunks=e["chunks"], name=corpus.name)
    np.testing.assert_array_equal(got, want)

    ev, ca = check_calibration_disjoint(
        tokenizer,
        eval_text=corpus.text,
        eval_n_ctx=e["n_ctx"],
        eval_chunks=e["chunks"],
        calib_text=corpus.text,
        skip_fraction=CALIB["skip_fraction"],
        calib_n_ctx=CALIB["n_ctx"],
        calib_chunks=CALIB["chunks"],
        name=corpus.name,
    )
    assert ev[0] == 0 < ev[1] <= ca[0] < ca[1] <= len(corpus.text)
    # the calibration span starts where the stage's slice starts (stages/calibrate.py)
    assert ca[0] == int(len(corpus.text) * CALIB["skip_fraction"])


def test_spans_cover_the_tokens_read(tokenizer):
    """The evaluation span ends exactly where its tokens end: decoding the scored tokens gives the
    span's text, and one chunk more reaches further."""
    from pocketquant.evaluate.corpus import load_corpus

    text = load_corpus("default", None).text
    ids = eval_token_ids(tokenizer, text, n_ctx=128, n_chunks=2, name="default")
    _, end = eval_char_span(tokenizer, text, n_ctx=128, n_chunks=2, name="default")
    adds_bos = tokenizer("a")["input_ids"] != tokenizer("a", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids[1:] if adds_bos else ids) == text[:end]
    assert eval_char_span(tokenizer, text, n_ctx=128, n_chunks=3, name="default")[1] > end
    start, stop = calib_char_span(tokenizer, text, skip_fraction=0.5, n_ctx=128, n_chunks=2, name="d")
    assert start == len(text) // 2 and stop > start
    assert calib_char_span(tokenizer, text, skip_fraction=0.5, n_ctx=128, n_chunks=3, name="d")[1] > stop


def test_overlap_is_refused(tokenizer, corpus):
    """Evaluating every chunk of a corpus reaches past the middle: calibration from the middle
    would read evaluated text."""
    with pytest.raises(CalibrationOverlapError, match=rf"{corpus.name}: the evaluation reads characters"):
        check_calibration_disjoint(
            tokenizer,
            eval_text=corpus.text,
            eval_n_ctx=512,
            eval_chunks=None,
            calib_text=corpus.text,
            skip_fraction=CALIB["skip_fraction"],
            calib_n_ctx=CALIB["n_ctx"],
            calib_chunks=CALIB["chunks"],
            name=corpus.name,
        )
    # no skip at all overlaps with any evaluation
    with pytest.raises(CalibrationOverlapError, match="skip_fraction=0.0"):
        check_calibration_disjoint(
            tokenizer,
            eval_text=corpus.text,
            eval_n_ctx=128,
            eval_chunks=1,
            calib_text=corpus.text,
            skip_fraction=0.0,
            calib_n_ctx=128,
            calib_chunks=1,
            name=corpus.name,
        )


def test_bad_skip_fraction_is_named():
    with pytest.raises(ImatrixError, match="calib.skip_fraction must be in"):
        calibration_text("abc", 1.0)
    assert calibration_text("abcd", 0.5) == (2, "cd")
