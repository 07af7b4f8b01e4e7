"""Cross-check our Go-template interpreter against Go's own text/template (what Ollama runs).

Needs a Go toolchain (Debian: `apt-get install golang-go`); without one these tests skip. The
program is tests/package/gotmpl_render.go: standard library only, run with `go run`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from package_testlib import GO_CASES, GO_DATA, GO_ERROR_CASES

from pocketquant.package.chat_template import CHECK_CONVERSATIONS, derive_chat_format
from pocketquant.package.gotemplate import GoTemplate, TemplateError, ollama_values
from pocketquant.package.modelfile import parse_modelfile

GO_PROGRAM = Path(__file__).with_name("gotmpl_render.go")


@pytest.fixture(scope="module")
def go_render(tmp_path_factory):
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain (apt-get install golang-go) to cross-check templates with")
    env = {**os.environ, "GOCACHE": str(tmp_path_factory.mktemp("gocache")), "GO111MODULE": "off"}

    def render(cases: list[tuple[str, dict]]) -> list[dict]:
        payload = json.dumps([{"template": t, "data": d} for t, d in cases])
        proc = subprocess.run(
            [go, "run", str(GO_PROGRAM)], input=payload, capture_output=True, text=True, env=env, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    return render


def _ours(template: str, data: dict) -> dict:
    try:
        return {"out": GoTemplate(template).render(data)}
    except TemplateError as exc:
        return {"out": "", "err": str(exc)}


def test_interpreter_agrees_with_go(go_render):
    cases = [(t, GO_DATA) for t, _ in GO_CASES] + [(t, GO_DATA) for t, _ in GO_ERROR_CASES]
    for (template, data), theirs in zip(cases, go_render(cases), strict=True):
        ours = _ours(template, data)
        assert bool(ours.get("err")) == bool(theirs.get("err")), (template, ours, theirs)
        assert ours["out"] == theirs["out"], template


def test_packaged_and_derived_templates_render_like_go(go_render, package_zip):
    from chat_testlib import EXTRA_CONVERSATIONS

    with zipfile.ZipFile(package_zip) as zf:
        template = parse_modelfile(zf.read("Modelfile").decode()).template
    cases = [(template, ollama_values(messages)) for messages in [*CHECK_CONVERSATIONS, *EXTRA_CONVERSATIONS]]
    for (template, data), theirs in zip(cases, go_render(cases), strict=True):
        assert "err" not in theirs, theirs
        assert GoTemplate(template).render(data) == theirs["out"]


def test_every_format_renders_like_jinja_in_go(go_render, frozen_clock):
    """Each chat format's derived TEMPLATE, run by Go's own text/template with the values Ollama
    passes (.Messages, .Think, .IsThinkSet), renders what transformers renders from the model's
    real Jinja template."""
    from chat_testlib import TEMPLATES, transformers_runtime
    from test_package_template import comparable_chats

    cases, expected = [], []
    for case in TEMPLATES:
        go = derive_chat_format(case.source, bos_token=case.bos, eos_token=case.eos).go_template()
        for messages, think in comparable_chats(case):
            cases.append((go, ollama_values(messages, think=think)))
            expected.append((case.file, transformers_runtime(case, messages, think=think)))
    assert len(cases) > 150
    for (template, data), theirs, (name, want) in zip(cases, go_render(cases), expected, strict=True):
        assert "err" not in theirs, (name, theirs)
        assert theirs["out"] == want, name
        assert GoTemplate(template).render(data) == want, name
