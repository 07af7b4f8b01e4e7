"""Jinja chat template -> Ollama TEMPLATE: the Go template must render chats exactly as the
model's Jinja template does (less a leading BOS, which the runtime's tokenizer adds)."""

from __future__ import annotations

import zipfile

import pytest

from pocketquant.errors import PackageError
from pocketquant.package.chat_template import (
    CHECK_CONVERSATIONS,
    derive_chat_format,
    render_go,
    render_jinja,
    render_jinja_runtime,
)
from pocketquant.package.modelfile import parse_modelfile

pytest.importorskip("jinja2")

EXTRA_CONVERSATIONS = [
    (
        {"role": "system", "content": "Réponds en français, s'il te plaît."},
        {"role": "user", "content": "Bonjour ! 😀"},
        {"role": "assistant", "content": "Bonjour !"},
        {"role": "user", "content": "Ça va ?"},
        {"role": "assistant", "content": "Oui."},
        {"role": "user", "content": "Code:\n```py\nprint('{{x}}')\n```"},
    ),
    (
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ),
]

# Written for these tests in the style of the families' published templates.
PLAIN_CHATML = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3_FIRST_TURN_BOS = (
    "{% for message in messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + "
    "message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
LLAMA3_DATED_SYSTEM = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = "01 Jan 2025" %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] | trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Knowledge cutoff: 2023-12\\nToday: " + date_string + "\\n\\n" }}
{{- system_message + "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'
        + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""
LLAMA3_TOKENS = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}


@pytest.fixture(scope="module")
def transformers_render(smollm2_gguf):
    """transformers' own chat-template rendering (what apply_chat_template(tokenize=False) returns)
    with the chat template stored in the embedded GGUF."""
    pytest.importorskip("transformers")
    from transformers.utils.chat_template_utils import render_jinja_template

    from pocketquant.gguf_file import GGUFFile

    with GGUFFile(smollm2_gguf) as g:
        source = g.get("tokenizer.chat_template")

    def render(messages):
        out, _ = render_jinja_template(
            conversations=[list(messages)],
            chat_template=source,
            add_generation_prompt=True,
            bos_token="<|im_start|>",
            eos_token="<|im_end|>",
        )
        return out[0]

    return render


def test_modelfile_template_matches_transformers_for_chatml(package_zip, transformers_render):
    with zipfile.ZipFile(package_zip) as zf:
        template = parse_modelfile(zf.read("Modelfile").decode()).template
    assert template is not None
    for messages in [*CHECK_CONVERSATIONS, *EXTRA_CONVERSATIONS]:
        expected = transformers_render(messages)
        assert render_go(template, messages) == expected
    # SmolLM2's default system prompt appears only when the chat has no system message
    no_system = render_go(template, [{"role": "user", "content": "hi"}])
    assert no_system.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    with_system = render_go(template, [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}])
    assert (
        with_system
        == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    ("source", "tokens", "family", "bos"),
    [
        (PLAIN_CHATML, {"bos_token": "<s>", "eos_token": "<|im_end|>"}, "chatml", False),
        (LLAMA3_FIRST_TURN_BOS, LLAMA3_TOKENS, "llama3", True),
        (LLAMA3_DATED_SYSTEM, LLAMA3_TOKENS, "llama3", True),
    ],
    ids=["plain-chatml", "llama3-first-turn-bos", "llama3-dated-system"],
)
def test_derived_template_reproduces_jinja(source, tokens, family, bos):
    fmt = derive_chat_format(source, **tokens)
    assert fmt.family == family and fmt.leading_bos is bos
    go = fmt.go_template()
    assert tokens["bos_token"] not in go  # llama.cpp / Ollama add BOS when tokenizing
    for messages in [*CHECK_CONVERSATIONS, *EXTRA_CONVERSATIONS[1:]]:
        jinja = render_jinja(source, messages, **tokens)
        assert render_go(go, messages) == render_jinja_runtime(source, messages, **tokens)
        assert jinja == (tokens["bos_token"] if bos else "") + render_go(go, messages)
    assert tokens["eos_token"] in fmt.stops


def test_llama3_dated_system_turn():
    fmt = derive_chat_format(LLAMA3_DATED_SYSTEM, **LLAMA3_TOKENS)
    out = render_go(fmt.go_template(), [{"role": "user", "content": "hi"}])
    assert out == (
        "<|start_header_id|>system<|end_header_id|>\n\n"
        "Knowledge cutoff: 2023-12\nToday: 01 Jan 2025\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert fmt.stops == ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


def test_irreproducible_template_is_refused():
    numbered = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }} #{{ loop.index }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(PackageError, match="chat template: .*differently"):
        derive_chat_format(numbered, bos_token="", eos_token="")


def test_jinja_errors_are_package_errors():
    with pytest.raises(PackageError, match="Jinja error: no system"):
        derive_chat_format(
            "<|im_start|><|im_end|>{{ raise_exception('no system') }}", bos_token="", eos_token=""
        )
