"""The Go text/template subset used to render Ollama TEMPLATEs (expected outputs follow Go's semantics)."""

from __future__ import annotations

import pytest
from package_testlib import GO_CASES as CASES
from package_testlib import GO_DATA as DATA
from package_testlib import GO_ERROR_CASES

from pocketquant.package.gotemplate import GoTemplate, TemplateError, go_string, ollama_values


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_render(source, expected):
    assert GoTemplate(source).render(DATA) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        *GO_ERROR_CASES,
        # valid Go, but outside the subset Ollama chat templates need: refused by name
        ("{{ with .A }}x{{ end }}", "unsupported action"),
        ("{{ printf .A }}", 'function "printf" not defined'),
    ],
)
def test_errors_name_the_action(source, message):
    with pytest.raises(TemplateError, match=message):
        GoTemplate(source).render(DATA)


def test_go_string_round_trips():
    text = 'line1\nline2\t"quoted" \\ é <|im_end|>'
    assert GoTemplate("{{ " + go_string(text) + " }}").render({}) == text


def test_ollama_values_merge_like_ollama():
    values = ollama_values(
        [
            {"role": "system", "content": "a"},
            {"role": "user", "content": "u1"},
            {"role": "user", "content": "u2"},
            {"role": "system", "content": "b"},
        ]
    )
    assert values["System"] == "a\n\nb"
    assert values["Messages"] == [
        {"Role": "system", "Content": "a", "Thinking": ""},
        {"Role": "user", "Content": "u1\n\nu2", "Thinking": ""},
        {"Role": "system", "Content": "b", "Thinking": ""},
    ]
    assert (values["Think"], values["IsThinkSet"]) == (False, False)
    thinking = ollama_values([{"role": "assistant", "content": "A", "reasoning_content": "R"}], think=False)
    assert thinking["Messages"] == [{"Role": "assistant", "Content": "A", "Thinking": "R"}]
    assert (thinking["Think"], thinking["IsThinkSet"]) == (False, True)
