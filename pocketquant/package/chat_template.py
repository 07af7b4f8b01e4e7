"""Turn a model's Jinja chat template (Hugging Face style) into an Ollama Go TEMPLATE.

Why probing instead of hand-written per-model templates: the format (ChatML, Gemma, Mistral, ...,
see chat_formats.py) fixes the turn markers and stop tokens, but details differ per model:
SmolLM2 and Qwen2.5 inject a default system prompt, Llama 3.1+ and Granite date theirs, Gemma 3
folds the system prompt into the first user turn, Mistral v0.3 into the last one, Gemma 2 refuses
it, Qwen3 writes <think> blocks. So we render the Jinja template on conversations of sentinel
strings, read off each role's prefix and suffix, the text before the first message, where the
system prompt lands, the generation prompt (with and without thinking) and how a final assistant
message is continued, build a Go template from those pieces, and accept it only if it renders a
set of check conversations byte for byte like the Jinja template does.

Ollama's side, as its template.Execute supplies it: .Messages ({Role, Content, Thinking}, same-role
neighbours merged), .Think/.IsThinkSet (the request's think flag); a conversation that ends with an
assistant message asks the model to continue that message (no closing suffix, no generation
prompt), which on the Jinja side is transformers' `continue_final_message`.

Not covered: tool calls and tool results, image content, a system message after the first one in
templates that fold it into a user turn, and message contents with leading/trailing whitespace in
templates that `trim` them (a Go template cannot trim).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pocketquant.errors import PackageError
from pocketquant.package.chat_formats import ChatFormatSpec, describe_formats, detect_format
from pocketquant.package.gotemplate import GoTemplate, go_string, ollama_values

Message = Mapping[str, str]
SystemPlacement = Literal["turn", "first_user", "last_user", "dropped", "refused"]

# Templates that print today's date (Granite 3.x, Llama 3.2 via strftime_now) see this one instead,
# so the same model always gives the same package (Llama 3.2's own fallback date).
PINNED_DATE = datetime(2024, 7, 26)
# Where a template refuses system messages (Gemma 1/2, Mistral v0.1), a system prompt goes where
# the later templates of the same families put it: before the first user message, then a blank line.
REFUSED_SYSTEM_SEPARATOR = "\n\n"

SYSTEM_PLACEMENT_TEXT: dict[str, str] = {
    "turn": "a turn of its own",
    "first_user": "folded into the first user turn, as the chat template does",
    "last_user": "folded into the last user turn, as the chat template does",
    "dropped": "ignored, as the chat template ignores it",
    "refused": (
        "folded into the first user turn (the chat template refuses system messages; this is "
        "where the later templates of the family put it)"
    ),
}

# Conversations the derived template must reproduce exactly (no leading/trailing whitespace in
# contents: Llama 3 and Gemma templates `trim` them, which Go templates cannot). One ends with an
# assistant message (continued), one carries the reasoning of an earlier answer (dropped by Qwen3).
CHECK_CONVERSATIONS: tuple[tuple[Message, ...], ...] = (
    ({"role": "user", "content": "Hello!"},),
    (
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "What is the capital of France?"},
    ),
    (
        {"role": "user", "content": "Write a haiku\nabout rain."},
        {"role": "assistant", "content": "Soft rain on the roof,\nthe gutters hum their old song."},
        {"role": "user", "content": 'Now one about "snow" & {{braces}}.'},
    ),
    (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "Two and two make four."},
        {"role": "user", "content": "And 3+3?"},
    ),
    (
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Say hello."},
        {"role": "assistant", "content": "Bonjour"},
    ),
)
# The same, rendered with the request's think flag set either way (enable_thinking in Jinja).
THINK_CHECKS: tuple[tuple[tuple[Message, ...], bool], ...] = tuple(
    (CHECK_CONVERSATIONS[i], think) for i in (0, 3) for think in (True, False)
)


@functools.lru_cache(maxsize=16)
def _compile(jinja_source: str):  # noqa: ANN202 - a jinja2.Template (jinja2 is imported lazily)
    """The template in the environment transformers renders chat templates in."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):  # noqa: ANN001
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = PINNED_DATE.strftime
    try:
        return env.from_string(jinja_source)
    except jinja2.TemplateError as exc:
        raise PackageError(f"chat template: Jinja error: {exc}") from exc


def render_jinja(
    jinja_source: str,
    messages: Sequence[Message],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    think: bool | None = None,
) -> str:
    """Render like transformers' apply_chat_template(tokenize=False), with strftime_now pinned to
    PINNED_DATE and think passed as enable_thinking when set."""
    import jinja2

    extra = {} if think is None else {"enable_thinking": think}
    try:
        return _compile(jinja_source).render(
            messages=[dict(m) for m in messages],
            tools=None,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
            **extra,
        )
    except jinja2.TemplateError as exc:
        raise PackageError(f"chat template: Jinja error: {exc}") from exc


_BOS_SENTINEL = "PQBOSb8r"
_CONTINUE_TAG = "PQCONTINUEc4n"


def starts_with_bos(jinja_source: str, messages: Sequence[Message], **tokens: str) -> bool:
    """Whether the template emits bos_token first (found with a sentinel BOS: SmolLM2's BOS is
    the same text as its turn marker, so the real token cannot tell)."""
    probe = render_jinja(jinja_source, messages, **{**tokens, "bos_token": _BOS_SENTINEL})
    return probe.startswith(_BOS_SENTINEL)


def render_jinja_runtime(
    jinja_source: str,
    messages: Sequence[Message],
    *,
    bos_token: str,
    eos_token: str,
    think: bool | None = None,
    add_bos: bool = True,
) -> str:
    """The Jinja rendering of an Ollama request as the runtime must see it: with the generation
    prompt after a final user message, or cut right after a final assistant message (continued,
    like transformers' continue_final_message); without a leading BOS when the tokenizer adds BOS
    itself (add_bos, the GGUF's tokenizer.ggml.add_bos_token)."""
    tokens = {"bos_token": bos_token, "eos_token": eos_token}
    if messages and messages[-1]["role"] == "assistant":
        tagged = [*messages[:-1], {**messages[-1], "content": messages[-1]["content"] + _CONTINUE_TAG}]
        text = render_jinja(jinja_source, tagged, add_generation_prompt=False, think=think, **tokens)
        at = text.rfind(_CONTINUE_TAG)
        if at < 0:
            raise PackageError("chat template: a final assistant message does not appear in the rendering")
        text = text[:at]
    else:
        text = render_jinja(jinja_source, messages, think=think, **tokens)
    if add_bos and bos_token and starts_with_bos(jinja_source, messages, think=think, eos_token=eos_token):
        text = text[len(bos_token) :]
    return text


@dataclass(frozen=True)
class ChatFormat:
    """The pieces of a chat format, as the model's Jinja template renders them."""

    family: str
    leading_bos: bool  # the Jinja output starts with bos_token (left to the tokenizer, or kept)
    lead: str  # before the first message, when that is not a system message (a default system turn)
    prefix: Mapping[str, str]
    suffix: Mapping[str, str]
    generation_prompt: str
    stops: tuple[str, ...]
    system: SystemPlacement = "turn"
    lead_with_system: str = ""  # before a first system message folded into a user turn
    fold_open: str = ""  # a folded system prompt is written as fold_open + system + fold_sep
    fold_sep: str = ""
    think_generation_prompt: Mapping[bool, str] = field(default_factory=dict)  # by .Think, if it matters
    prefill_thinking: tuple[str, str] | None = None  # around .Thinking when an answer is continued

    def go_template(self) -> str:
        """The Ollama TEMPLATE: per message, the lead before the first one, the role's prefix,
        content and suffix; after the last one, the generation prompt. Literal text sits in Go
        string literals so that the layout newlines can be trimmed with `{{-` without touching the
        model's own whitespace."""
        lines = ["{{- range $i, $_ := .Messages }}", "{{- $last := eq (len (slice $.Messages $i)) 1 }}"]
        lines += self._lead()
        for n, (role, body) in enumerate(self._turns()):
            lines.append(f'{{{{- {"if" if n == 0 else "else if"} eq .Role "{role}" }}}}{body}')
        lines.append("{{- end }}")
        generation = self._generation_prompt()
        if generation:
            lines.append(f'{{{{- if and $last (ne .Role "assistant") }}}}{generation}{{{{ end }}}}')
        lines.append("{{- end }}")
        return "\n".join(lines)

    def _lead(self) -> list[str]:
        if self.system == "turn":  # a first system message is a turn with its own prefix
            if not self.lead:
                return []
            return [f'{{{{- if and (eq $i 0) (ne .Role "system") }}}}{_lit(self.lead)}{{{{ end }}}}']
        if self.lead == self.lead_with_system:
            return [f"{{{{- if eq $i 0 }}}}{_lit(self.lead)}{{{{ end }}}}"] if self.lead else []
        return [
            f'{{{{- if eq $i 0 }}}}{{{{ if eq .Role "system" }}}}{_lit(self.lead_with_system)}'
            f"{{{{ else }}}}{_lit(self.lead)}{{{{ end }}}}{{{{ end }}}}"
        ]

    def _turns(self) -> list[tuple[str, str]]:
        """(role, Go text) per role; a role without a branch (system where it is folded or
        dropped) renders nothing where it stands."""
        turns = []
        if self.system == "turn":
            turns.append(
                ("system", f"{_lit(self.prefix['system'])}{{{{ .Content }}}}{_lit(self.suffix['system'])}")
            )
        fold = ""
        if self.system in ("first_user", "last_user", "refused"):
            first = "(index $.Messages 0)"
            when = "$last" if self.system == "last_user" else "(eq $i 1)"
            fold = (
                f'{{{{ if and {when} (eq {first}.Role "system") }}}}{_lit(self.fold_open)}'
                f"{{{{ {first}.Content }}}}{_lit(self.fold_sep)}{{{{ end }}}}"
            )
        turns.append(
            ("user", f"{_lit(self.prefix['user'])}{fold}{{{{ .Content }}}}{_lit(self.suffix['user'])}")
        )
        prefill = ""
        if self.prefill_thinking is not None:  # Qwen3 writes a continued answer's reasoning first
            open_, close = self.prefill_thinking
            prefill = f"{{{{ if $last }}}}{_lit(open_)}{{{{ .Thinking }}}}{_lit(close)}{{{{ end }}}}"
        closing = _lit(self.suffix["assistant"])
        if closing:  # a final assistant message is left open so the model continues it
            closing = f"{{{{ if not $last }}}}{closing}{{{{ end }}}}"
        turns.append(("assistant", f"{_lit(self.prefix['assistant'])}{prefill}{{{{ .Content }}}}{closing}"))
        return turns

    def _generation_prompt(self) -> str:
        default = _lit(self.generation_prompt)
        if not self.think_generation_prompt:
            return default
        on, off = (_lit(self.think_generation_prompt[b]) for b in (True, False))
        if on == default:  # Qwen3: thinks unless told not to
            return f"{{{{ if and $.IsThinkSet (not $.Think) }}}}{off}{{{{ else }}}}{default}{{{{ end }}}}"
        if off == default:
            return f"{{{{ if and $.IsThinkSet $.Think }}}}{on}{{{{ else }}}}{default}{{{{ end }}}}"
        return (
            f"{{{{ if $.IsThinkSet }}}}{{{{ if $.Think }}}}{on}{{{{ else }}}}{off}{{{{ end }}}}"
            f"{{{{ else }}}}{default}{{{{ end }}}}"
        )


def _lit(text: str) -> str:
    """A Go action printing `text` literally (nothing for empty text)."""
    return f"{{{{ {go_string(text)} }}}}" if text else ""


_S = {
    "system": "PQSYSTEMq7x",
    "user": "PQUSERk3v",
    "assistant": "PQASSISTANTm2w",
    "user2": "PQUSERTWOz9d",
    "thinking": "PQTHINKINGr5t",
}


def _locate(text: str, keys: Sequence[str], what: str) -> list[tuple[int, int]]:
    """(start, end) of each sentinel, which must appear in this order."""
    spans: list[tuple[int, int]] = []
    for key in keys:
        at = text.find(_S[key], spans[-1][1] if spans else 0)
        if at < 0:
            raise PackageError(
                f"chat template: the {key} message does not appear in order in the rendering ({what})"
            )
        spans.append((at, at + len(_S[key])))
    return spans


def _cut(gap: str, spec: ChatFormatSpec, what: str) -> tuple[str, str]:
    """Split the text between two messages into (suffix of the first, prefix of the second):
    before the first turn start in it, or else after the last turn end."""
    starts = [at for at in (gap.find(m) for m in spec.turn_starts) if at >= 0]
    if starts:
        return gap[: min(starts)], gap[min(starts) :]
    ends = [at + len(m) for m in spec.turn_ends if (at := gap.rfind(m)) >= 0]
    if ends:
        return gap[: max(ends)], gap[max(ends) :]
    markers = " or ".join(repr(m) for m in (*spec.turn_starts, *spec.turn_ends))
    raise PackageError(f"chat template: no {markers} between turns ({what}); cannot derive a template")


def _without_prefix(text: str, prefix: str, message: str) -> str:
    if not text.startswith(prefix):
        raise PackageError(f"chat template: {message}")
    return text[len(prefix) :]


def _without_suffix(text: str, suffix: str, message: str) -> str:
    if not text.endswith(suffix):
        raise PackageError(f"chat template: {message}")
    return text[: len(text) - len(suffix)]


Render = Callable[..., str]  # (messages, think=None) -> the runtime's rendering


def _msg(role: str, key: str | None = None, **extra: str) -> dict[str, str]:
    """A message whose content is the sentinel of `key` (default: its role)."""
    return {"role": role, "content": _S[key or role], **extra}


_PLAIN = [_msg("user"), _msg("assistant"), _msg("user", "user2")]


@dataclass(frozen=True)
class _Turns:
    """What a user, assistant, user conversation shows."""

    text: str
    first_user: int  # where the first user message starts in text
    answer_end: int  # where the assistant message ends in text
    lead: str
    prefix: dict[str, str]
    suffix: dict[str, str]
    generation_prompt: str


def _probe_turns(render: Render, spec: ChatFormatSpec) -> _Turns:
    """Role prefixes and suffixes, the lead before the first message, the generation prompt."""
    text = render(_PLAIN)
    (u0, u1), (a0, a1), (v0, v1) = _locate(text, ["user", "assistant", "user2"], "user, assistant, user")
    suffix_user, prefix_assistant = _cut(text[u1:a0], spec, "user -> assistant")
    suffix_assistant, prefix_user = _cut(text[a1:v0], spec, "assistant -> user")
    lead = _without_suffix(text[:u0], prefix_user, "the first user turn renders differently from later ones")
    generation = _without_prefix(
        text[v1:], suffix_user, "the last user turn ends differently from earlier ones"
    )
    return _Turns(
        text,
        u0,
        a1,
        lead,
        {"user": prefix_user, "assistant": prefix_assistant, "system": ""},
        {"user": suffix_user, "assistant": suffix_assistant, "system": ""},
        generation,
    )


def _probe_system(render: Render, spec: ChatFormatSpec, t: _Turns) -> dict[str, Any]:
    """Where a system message goes: ChatFormat fields (system, lead_with_system, fold_*, and the
    system prefix/suffix for a turn of its own)."""
    try:
        text = render([_msg("system"), *_PLAIN])
    except PackageError:  # Gemma 1/2, Mistral v0.1
        return {"system": "refused", "lead_with_system": t.lead, "fold_sep": REFUSED_SYSTEM_SEPARATOR}
    if _S["system"] not in text:  # the first Phi-3 template
        if text != t.text:
            raise PackageError("chat template: a system message it ignores still changes the rendering")
        return {"system": "dropped", "lead_with_system": t.lead}
    at = text.index(_S["system"])
    if at > text.index(_S["user"]):  # Mistral v0.3: inside the last user turn
        (_, a1), (s0, s1), (v0, _) = _locate(
            text, ["assistant", "system", "user2"], "system folded into a later user turn"
        )
        if text[:a1] != t.text[: t.answer_end]:
            raise PackageError("chat template: a system message changes the turns before it")
        fold_open = _without_prefix(
            text[a1:s0],
            t.suffix["assistant"] + t.prefix["user"],
            "the system message is folded into a user turn in a way pocketquant cannot reproduce",
        )
        return {
            "system": "last_user",
            "lead_with_system": t.lead,
            "fold_open": fold_open,
            "fold_sep": text[s1:v0],
        }
    (_, s1), (u0, _) = _locate(text, ["system", "user"], "system, user")
    if text[u0:] != t.text[t.first_user :]:
        raise PackageError("chat template: a system message changes turns after the first user message")
    gap, before = text[s1:u0], text[:at]
    try:
        system_suffix, after = _cut(gap, spec, "system -> user")
    except PackageError:
        system_suffix, after = "", None
    if after == t.prefix["user"]:  # a turn of its own
        return {
            "system": "turn",
            "prefix": {**t.prefix, "system": before},
            "suffix": {**t.suffix, "system": system_suffix},
        }
    inside = before.find(t.prefix["user"])  # Gemma 3, Mistral v0.2: inside the first user turn
    if inside < 0:
        raise PackageError("chat template: cannot find the first user turn around the system message")
    return {
        "system": "first_user",
        "lead_with_system": before[:inside],
        "fold_open": before[inside + len(t.prefix["user"]) :],
        "fold_sep": gap,
    }


def _probe_thinking(render: Render, t: _Turns) -> dict[str, Any]:
    """Qwen3-style thinking: the generation prompt by think flag (enable_thinking), and the
    reasoning block written before a continued answer."""
    fields: dict[str, Any] = {}
    by_think = {think: render([_msg("user")], think=think) for think in (None, True, False)}
    if len(set(by_think.values())) > 1:
        fields["think_generation_prompt"] = {
            think: _without_prefix(
                by_think[think].split(_S["user"], 1)[1],
                t.suffix["user"],
                "the generation prompt with thinking set does not follow the user turn",
            )
            for think in (True, False)
        }
    opening = t.suffix["user"] + t.prefix["assistant"]
    continued = render([_msg("user"), _msg("assistant")])
    (_, c1), (c0, _) = _locate(continued, ["user", "assistant"], "a continued answer")
    extra = _without_prefix(
        continued[c1:c0], opening, "a final assistant message is rendered differently from earlier ones"
    )
    if extra:
        reasoned = render([_msg("user"), _msg("assistant", reasoning_content=_S["thinking"])])
        (_, r1), (h0, h1), (r0, _) = _locate(
            reasoned, ["user", "thinking", "assistant"], "a continued answer"
        )
        around = (
            _without_prefix(reasoned[r1:h0], opening, "a continued answer's reasoning cannot be reproduced"),
            reasoned[h1:r0],
        )
        if "".join(around) != extra:
            raise PackageError(
                "chat template: a final assistant message adds text pocketquant cannot reproduce"
            )
        fields["prefill_thinking"] = around
    return fields


def derive_chat_format(
    jinja_source: str, *, bos_token: str, eos_token: str, add_bos: bool = True
) -> ChatFormat:
    """Derive a ChatFormat by rendering sentinel conversations; PackageError if the template is of
    no known format or the derived Go template does not reproduce it."""
    spec = detect_format(jinja_source)
    if spec is None:
        head = " ".join(jinja_source.split())[:80]
        raise PackageError(
            f"chat template: not a chat format pocketquant recognises (the template starts {head!r}); "
            f"recognised: {describe_formats()}"
        )

    def render(messages: Sequence[Message], think: bool | None = None) -> str:
        return render_jinja_runtime(
            jinja_source, messages, bos_token=bos_token, eos_token=eos_token, think=think, add_bos=add_bos
        )

    turns = _probe_turns(render, spec)
    fields: dict[str, Any] = {
        "family": spec.name,
        "leading_bos": starts_with_bos(jinja_source, _PLAIN, eos_token=eos_token),
        "lead": turns.lead,
        "prefix": turns.prefix,
        "suffix": turns.suffix,
        "generation_prompt": turns.generation_prompt,
        "stops": tuple(dict.fromkeys([*spec.stops, *([eos_token] if eos_token else [])])),
    }
    fields.update(_probe_system(render, spec, turns))
    fields.update(_probe_thinking(render, turns))
    fmt = ChatFormat(**fields)
    check_go_template(fmt, jinja_source, bos_token=bos_token, eos_token=eos_token, add_bos=add_bos)
    return fmt


def render_go(go_source: str, messages: Sequence[Message], *, think: bool | None = None) -> str:
    """Render an Ollama TEMPLATE for a chat the way Ollama does (chat mode if it uses .Messages,
    else the legacy .System/.Prompt mode)."""
    template = GoTemplate(go_source)
    values = ollama_values(messages, think=think)
    if template.uses("Messages"):
        return template.render(values)
    prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return template.render({"System": values["System"], "Prompt": prompt, "Response": ""})


def check_cases(fmt: ChatFormat) -> list[tuple[tuple[Message, ...], bool | None]]:
    """(conversation, think flag) pairs the derived template is checked on. A system message
    has no Jinja rendering to compare with where the template refuses it."""
    cases = [(c, None) for c in CHECK_CONVERSATIONS] + list(THINK_CHECKS)
    if fmt.system == "refused":
        cases = [(c, t) for c, t in cases if all(m["role"] != "system" for m in c)]
    return cases


def check_go_template(
    fmt: ChatFormat, jinja_source: str, *, bos_token: str, eos_token: str, add_bos: bool = True
) -> None:
    """PackageError unless the Go template renders every check conversation like the Jinja one
    (Jinja's leading BOS aside where the runtime's tokenizer adds BOS)."""
    go_source = fmt.go_template()
    for messages, think in check_cases(fmt):
        expected = render_jinja_runtime(
            jinja_source, messages, bos_token=bos_token, eos_token=eos_token, think=think, add_bos=add_bos
        )
        got = render_go(go_source, messages, think=think)
        if got != expected:
            at = next(
                (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                min(len(got), len(expected)),
            )
            roles = ",".join(m["role"] for m in messages)
            raise PackageError(
                f"chat template: derived Ollama template differs from the Jinja template for a "
                f"{roles} chat (think={think}) at character {at}: {got[at : at + 40]!r} vs "
                f"{expected[at : at + 40]!r}"
            )
