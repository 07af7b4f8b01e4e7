"""Corpus loading: the offline default, WikiText-2 from a path, any file, clear errors."""

from __future__ import annotations

import pytest

from pocketquant.errors import EvaluationError
from pocketquant.evaluate.corpus import default_corpus, load_corpus, read_text_file
from pocketquant.evaluate.errors import CorpusError


def test_default_corpus_is_offline_english_text():
    c = load_corpus()
    assert c.name == "default"
    assert len(c.text) > 100_000
    assert 'The "assert" statement' in c.text[:100]
    assert len(c.sha256) == 64 and c.sha256 == default_corpus().sha256


def test_text_file_drops_one_trailing_newline_like_llama_cpp(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b" = Title = \n\n body\n\n")
    c = read_text_file(p)
    assert c.text == " = Title = \n\n body\n"  # exactly one newline removed, rest as-is
    assert load_corpus("mine", p).name == "mine"
    assert load_corpus(str(p)).text == c.text


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "wiki.test.raw"
    with pytest.raises(CorpusError, match=str(missing)):
        load_corpus("wikitext2", missing)
    with pytest.raises(EvaluationError, match="corpus file not found: .*other.txt"):
        load_corpus("custom", tmp_path / "other.txt")


def test_unknown_corpus_name_lists_the_options():
    with pytest.raises(CorpusError, match="'default', 'wikitext2'"):
        load_corpus("wikitext-103")


def test_non_utf8_file_is_rejected(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("café".encode("latin-1"))
    with pytest.raises(CorpusError, match="latin1.txt is not UTF-8"):
        read_text_file(p)


def test_wikitext2_from_path(wikitext2_path):
    c = load_corpus("wikitext2", wikitext2_path)
    assert c.name == "wikitext2"
    assert "= Robert Boulter =" in c.text[:40]
    # What llama-perplexity reads from the LF file (CRLF of a Windows-style copy made LF), last "\n"
    # popped; any other text file is read as-is (test above).
    lf = wikitext2_path.read_bytes().replace(b"\r\n", b"\n")
    assert c.text.encode("utf-8") == lf[:-1] and "\r" not in c.text[:100000]


def test_wikitext2_without_path_uses_the_shared_copy(wikitext2_path, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the copy beside this checkout is still found
    assert load_corpus("wikitext2").sha256 == load_corpus("wikitext2", wikitext2_path).sha256


def test_wikitext2_without_path_offline_or_without_datasets_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("no datasets here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    monkeypatch.setattr("pocketquant.evaluate.corpus._wikitext2_local_candidates", lambda: [])
    with pytest.raises(CorpusError, match="wikitext2: .*wiki.test.raw"):
        load_corpus("wikitext2")
