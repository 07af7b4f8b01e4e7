"""Writing and reading Ollama Modelfiles."""

from __future__ import annotations

import pytest

from pocketquant.errors import PackageError
from pocketquant.package.modelfile import parse_modelfile, render_modelfile


def test_round_trip():
    template = '{{- range .Messages }}\n{{ "<|im_start|>" }}{{ .Role }}\n{{ .Content }}{{ end }}'
    text = render_modelfile(
        gguf_name="m-q4_k_m.gguf",
        template=template,
        stops=["<|im_start|>", "<|im_end|>"],
        num_ctx=2048,
        extra_parameters={"temperature": 0.2, "num_predict": 128},
        header=["made by a test"],
    )
    assert text.startswith("# made by a test\nFROM ./m-q4_k_m.gguf\n")
    mf = parse_modelfile(text)
    assert mf.from_ == "./m-q4_k_m.gguf"
    assert mf.template == template
    assert mf.parameters == {
        "stop": ["<|im_start|>", "<|im_end|>"],
        "num_ctx": ["2048"],
        "num_predict": ["128"],
        "temperature": ["0.2"],
    }


def test_parses_hand_written_forms():
    mf = parse_modelfile(
        'from ./a.gguf\n\n# comment\nSYSTEM "be nice"\nparameter stop <eot>\nTEMPLATE {{ .Prompt }}\n'
    )
    assert (mf.from_, mf.system, mf.template, mf.parameter("stop")) == (
        "./a.gguf",
        "be nice",
        "{{ .Prompt }}",
        "<eot>",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM ./a.gguf\nTEMPLTE x\n", "Modelfile: line 2: unknown command 'TEMPLTE'"),
        ('FROM ./a.gguf\nTEMPLATE """abc\n', 'line 2: unterminated """'),
        ("TEMPLATE x\n", "expected exactly one FROM line, found 0"),
        ('FROM ./a.gguf\nSYSTEM "x" y\n', "line 2: unexpected text after the value"),
    ],
)
def test_errors_name_file_and_line(text, message):
    with pytest.raises(PackageError, match=message):
        parse_modelfile(text)


def test_refuses_values_ollama_cannot_read_back():
    with pytest.raises(PackageError, match="stop"):
        render_modelfile(gguf_name="a.gguf", template="x", stops=['a"b'], num_ctx=8)
    with pytest.raises(PackageError, match='"""'):
        render_modelfile(gguf_name="a.gguf", template='x"""y', stops=[], num_ctx=8)
