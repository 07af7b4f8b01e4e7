"""Shared values for the package tests (a module of its own: conftest is not importable)."""

from __future__ import annotations

METRICS = {"ppl": 27.5, "kld_mean": 0.0123, "same_top_p": 0.93, "size_bytes": 98362432, "engine": "llama.cpp"}
PARAMS = {"quant": {"scheme": "q4_1"}, "package": {"num_ctx": 1024}}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def build_kwargs(**overrides):  # noqa: ANN003, ANN201
    kwargs = dict(
        model_name="SmolLM2-135M-Instruct",
        scheme="q4_1",
        params=PARAMS,
        metrics=METRICS,
        num_ctx=1024,
        git_commit=COMMIT,
        progress=False,
    )
    kwargs.update(overrides)
    return kwargs


GO_DATA = {
    "A": "x",
    "E": "",
    "L": [1, 2, 3],
    "M": [{"Role": "user", "Content": "hi"}, {"Role": "assistant", "Content": "yo"}],
    "Z": [],
}

# (template, expected output per Go text/template semantics)
GO_CASES = [
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

# (template, message): errors in Go's text/template as well as in ours
GO_ERROR_CASES = [
    ("{{ if .A }}x", "missing {{end}}"),
    ("{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}", "undefined variable \\$y"),
    ("{{ .A", "unclosed action"),
    ("{{ end }}", "unexpected"),
    ('{{ "abc }}', "unclosed action"),
]
