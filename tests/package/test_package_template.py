"""Jinja chat template -> Ollama TEMPLATE, for every chat format of the families we package: the
Go template (with Ollama's .Messages/.Think values) must render chats exactly as transformers
renders the model's real Jinja template (less a leading BOS, which the runtime's tokenizer adds).
The same renderings through Go's own text/template: test_package_go.py."""

from __future__ import annotations

import zipfile

import pytest
from chat_testlib import EXTRA_CONVERSATIONS, TEMPLATES, TemplateCase, transformers_runtime

from pocketquant.errors import PackageError
from pocketquant.package.chat_formats import CHAT_FORMATS
from pocketquant.package.chat_template import (
    CHECK_CONVERSATIONS,
    derive_chat_format,
    render_go,
    render_jinja,
    render_jinja_runtime,
)
from pocketquant.package.modelfile import parse_modelfile

pytest.importorskip("jinja2")
pytest.importorskip("transformers")

CASES = {case.file: case for case in TEMPLATES}
SYSTEM, USER, ANSWER, USER2 = (
    {"role": "system", "content": "S"},
    {"role": "user", "content": "U"},
    {"role": "assistant", "content": "A"},
    {"role": "user", "content": "U2"},
)


def _derive(case: TemplateCase, **kw):  # noqa: ANN003, ANN202
    return derive_chat_format(case.source, bos_token=case.bos, eos_token=case.eos, **kw)


def comparable_chats(case: TemplateCase) -> list[tuple[tuple, bool | None]]:
    """(conversation, think flag) pairs with a Jinja rendering to compare with."""
    chats = [(c, None) for c in [*CHECK_CONVERSATIONS, *EXTRA_CONVERSATIONS]]
    chats += [(c, think) for c in (CHECK_CONVERSATIONS[0], CHECK_CONVERSATIONS[3]) for think in (True, False)]
    if case.system == "refused":  # Jinja raises on a system message: nothing to compare with
        chats = [(c, t) for c, t in chats if all(m["role"] != "system" for m in c)]
    return chats


@pytest.mark.parametrize("case", TEMPLATES, ids=lambda c: c.id)
def test_every_format_renders_like_transformers(case, frozen_clock):
    fmt = _derive(case)
    assert (fmt.family, fmt.system, fmt.leading_bos) == (case.family, case.system, case.emits_bos)
    spec = next(s for s in CHAT_FORMATS if s.name == case.family)
    assert fmt.stops == tuple(dict.fromkeys([*spec.stops, case.eos]))  # end-of-turn tokens + EOS
    go = fmt.go_template()
    chats = comparable_chats(case)
    assert len(chats) >= 6
    for messages, think in chats:
        assert render_go(go, messages, think=think) == transformers_runtime(case, messages, think=think), (
            [m["role"] for m in messages],
            think,
        )


def test_system_prompt_goes_where_the_template_puts_it():
    go = {name: _derive(CASES[name]).go_template() for name in CASES}
    chat = [SYSTEM, USER, ANSWER, USER2]
    # Gemma 3: folded into the first user turn
    assert render_go(go["google-gemma-3-1b-it"], chat) == (
        "<start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n"
        "<start_of_turn>user\nU2<end_of_turn>\n<start_of_turn>model\n"
    )
    # Gemma 2 refuses system messages; the package puts the prompt where Gemma 3 does
    with pytest.raises(PackageError, match="System role not supported"):
        render_jinja(CASES["google-gemma-2-2b-it"].source, chat, bos_token="<bos>")
    assert render_go(go["google-gemma-2-2b-it"], chat) == render_go(go["google-gemma-3-1b-it"], chat)
    # Mistral v0.3 prepends it to the last user message, v0.2 to the first
    assert (
        render_go(go["mistralai-Mistral-7B-Instruct-v0.3"], chat)
        == "[INST] U[/INST] A</s>[INST] S\n\nU2[/INST]"
    )
    assert (
        render_go(go["mistralai-Mistral-7B-Instruct-v0.2"], chat)
        == " [INST] S\n\nU [/INST] A</s> [INST] U2 [/INST]"
    )
    # the first Phi-3 template ignores it
    assert (
        render_go(go["microsoft-Phi-3-mini-4k-instruct"], [SYSTEM, USER])
        == "<|user|>\nU<|end|>\n<|assistant|>\n"
    )
    # its own turn, and the template's default system prompt only without one
    granite = go["ibm-granite-granite-3.3-2B-Instruct"]
    assert render_go(granite, [SYSTEM, USER]).startswith(
        "<|start_of_role|>system<|end_of_role|>S<|end_of_text|>\n"
    )
    assert "Today's Date: July 26, 2024. You are Granite" in render_go(granite, [USER])


def test_qwen3_thinking_as_the_template_does(frozen_clock):
    case = CASES["Qwen-Qwen3-0.6B"]
    go = _derive(case).go_template()
    assert render_go(go, [USER]).endswith("<|im_start|>assistant\n")
    assert render_go(go, [USER], think=True).endswith("<|im_start|>assistant\n")
    assert render_go(go, [USER], think=False).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # the reasoning of earlier answers is dropped; a continued answer shows its own
    history = [USER, {**ANSWER, "reasoning_content": "R"}, USER2]
    assert "R" not in render_go(go, history).replace("U2", "")
    continued = [USER, {**ANSWER, "reasoning_content": "R"}]
    assert render_go(go, continued).endswith("<|im_start|>assistant\n<think>\nR\n</think>\n\nA")
    assert render_go(go, continued) == transformers_runtime(case, continued)


def test_bos_stays_in_the_template_when_the_tokenizer_does_not_add_it():
    case = CASES["mistralai-Mistral-7B-Instruct-v0.3"]
    fmt = _derive(case, add_bos=False)
    out = render_go(fmt.go_template(), [USER])
    assert out == "<s>[INST] U[/INST]"
    assert out == render_jinja_runtime(case.source, [USER], bos_token="<s>", eos_token="</s>", add_bos=False)
    assert render_go(_derive(case).go_template(), [USER]) == "[INST] U[/INST]"


# Written for these tests in the style of the families' published templates.
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


def test_llama3_dated_system_turn():
    fmt = derive_chat_format(LLAMA3_DATED_SYSTEM, **LLAMA3_TOKENS)
    out = render_go(fmt.go_template(), [{"role": "user", "content": "hi"}])
    assert out == (
        "<|start_header_id|>system<|end_header_id|>\n\n"
        "Knowledge cutoff: 2023-12\nToday: 01 Jan 2025\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert fmt.stops == ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


def test_modelfile_template_matches_transformers_for_chatml(package_zip):
    """The package built from the embedded SmolLM2 GGUF (its own chat template)."""
    with zipfile.ZipFile(package_zip) as zf:
        template = parse_modelfile(zf.read("Modelfile").decode()).template
    assert template is not None
    case = CASES["HuggingFaceTB-SmolLM2-135M-Instruct"]
    for messages, think in comparable_chats(case):
        assert render_go(template, messages, think=think) == transformers_runtime(case, messages, think=think)
    # SmolLM2's default system prompt appears only when the chat has no system message
    no_system = render_go(template, [{"role": "user", "content": "hi"}])
    assert no_system.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    with_system = render_go(template, [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}])
    assert (
        with_system
        == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_irreproducible_template_is_refused():
    numbered = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }} #{{ loop.index }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(PackageError, match="chat template: .*differently"):
        derive_chat_format(numbered, bos_token="", eos_token="")


def test_unknown_template_names_what_was_not_recognised():
    alpaca = (
        "{% for m in messages %}{% if m['role'] == 'user' %}### Instruction:\n{{ m['content'] }}\n\n"
        "{% else %}### Response:\n{{ m['content'] }}\n\n{% endif %}{% endfor %}### Response:\n"
    )
    with pytest.raises(PackageError) as err:
        derive_chat_format(alpaca, bos_token="<s>", eos_token="</s>")
    message = str(err.value)
    assert "not a chat format pocketquant recognises" in message and "### Instruction" in message
    for spec in CHAT_FORMATS:
        assert spec.title in message


def test_jinja_errors_are_package_errors():
    with pytest.raises(PackageError, match="Jinja error: no system"):
        derive_chat_format(
            "<|im_start|><|im_end|>{{ raise_exception('no system') }}", bos_token="", eos_token=""
        )
