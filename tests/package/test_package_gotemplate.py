"""The Go text/template subset used to render Ollama TEMPLATEs (expected outputs follow Go's semantics)."""

from __future__ import annotations

import pytest

from pocketquant.package.gotemplate import GoTemplate, TemplateError, go_string, ollama_values

DATA = {
    "A": "x",
    "E": "",
    "L": [1, 2, 3],
    "M": [{"Role": "user", "Content": "hi"}, {"Role": "assistant", "Content": "yo"}],
    "Z": [],
}

CASES = [
    ("{{ .A }}", "x"),
    ("a  {{- .A -}}  \n b", "axb"),
    ("a {{-3}}", "a -3"),  # no space after the dash: a number, not a trim marker
    ("{{ if .E }}y{{ else }}n{{ end }}", "n"),
    ("{{ if .E }}1{{ else if .Z }}2{{ else if .A }}3{{ else }}4{{ end }}", "3"),
    ("{{ range $i, $m := .M }}{{ $i }}={{ $m.Role }}/{{ .Content }};{{ end }}", "0=user/hi;1=assistant/yo;"),
    ("{{ range .Z }}x{{ else }}empty{{ end }}", "empty"),
    ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", "2"),
    ("{{ len (slice .L 1) }}|{{ index .L 0 }}|{{ .L | len }}", "2|1|3"),
    ('{{ eq .A "q" "x" }} {{ ne .A "x" }} {{ not .E }}', "true false true"),
    ('{{ and 1 0 }} {{ or 0 "" "z" }} {{ and .A .L }}', "0 z [1 2 3]"),
    ('{{ "a\\tb\\u00e9\\"" }}', 'a\tbé"'),
    ("{{ `raw\\n` }}", "raw\\n"),
    ("{{ .Missing }}", "<no value>"),
    ("{{/* a comment */}}ok", "ok"),
    ("{{ (index .M 1).Role }}", "assistant"),
    (
        "{{ range $i, $_ := .M }}{{ $last := eq (len (slice $.M $i)) 1 }}"
        "{{ if $last }}last={{ .Role }}{{ end }}{{ end }}",
        "last=assistant",
    ),
    ('{{ "}}" }}', "}}"),
]


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_render(source, expected):
    assert GoTemplate(source).render(DATA) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ if .A }}x", "missing {{end}}"),
        ("{{ with .A }}x{{ end }}", "unsupported action"),
        ("{{ printf .A }}", 'function "printf" not defined'),
        ("{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}", "undefined variable \\$y"),
        ("{{ .A", "unclosed action"),
        ("{{ end }}", "unexpected"),
        ('{{ "abc }}', "unclosed action"),
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
        {"Role": "system", "Content": "a"},
        {"Role": "user", "Content": "u1\n\nu2"},
        {"Role": "system", "Content": "b"},
    ]
