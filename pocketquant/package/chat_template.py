"""Turn a model's Jinja chat template (Hugging Face style) into an Ollama Go TEMPLATE.

Why probing instead of hand-written per-model templates: the family (ChatML, Llama 3) fixes the
turn structure and stop tokens, but details differ per model (SmolLM2 injects a default system
prompt, Llama 3.1+ prefixes the system turn with a knowledge-cutoff date). So we render the Jinja
template on sentinel conversations, cut the output at the family's turn-start marker into
per-role prefixes and suffixes, build a Go template from them, and accept it only if it renders
a set of check conversations byte for byte like the Jinja template does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pocketquant.errors import PackageError
from pocketquant.package.gotemplate import GoTemplate, go_string, ollama_values

Message = Mapping[str, str]


@dataclass(frozen=True)
class Family:
    name: str
    markers: tuple[str, ...]  # all must occur in the Jinja source
    turn_start: str  # every turn begins with this
    stops: tuple[str, ...]


FAMILIES = (
    Family("chatml", ("<|im_start|>", "<|im_end|>"), "<|im_start|>", ("<|im_start|>", "<|im_end|>")),
    Family(
        "llama3",
        ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        "<|start_header_id|>",
        ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    ),
)

ROLES = ("system", "user", "assistant")

# Conversations the derived template must reproduce exactly (no leading/trailing whitespace in
# contents: Llama 3 templates `trim` them, which Go templates cannot).
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
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ),
)


def detect_family(jinja_source: str) -> Family | None:
    for family in FAMILIES:
        if all(marker in jinja_source for marker in family.markers):
            return family
    return None


def render_jinja(
    jinja_source: str,
    messages: Sequence[Message],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    """Render like transformers' apply_chat_template(tokenize=False), minus `strftime_now`
    (templates fall back to their fixed default date, so packages stay deterministic)."""
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
    try:
        return env.from_string(jinja_source).render(
            messages=[dict(m) for m in messages],
            tools=None,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
        )
    except jinja2.TemplateError as exc:
        raise PackageError(f"chat template: Jinja error: {exc}") from exc


@dataclass(frozen=True)
class ChatFormat:
    """The pieces of a chat format, as the Jinja template renders them."""

    family: str
    leading_bos: bool  # the Jinja output starts with bos_token (the runtime adds BOS instead)
    default_system: str  # emitted when the conversation does not start with a system message
    prefix: Mapping[str, str]
    suffix: Mapping[str, str]
    generation_prompt: str
    stops: tuple[str, ...]

    def go_template(self) -> str:
        """The Ollama TEMPLATE. Literal text sits in Go string literals so that the layout
        newlines can be trimmed with `{{-` without touching the model's own whitespace."""
        lines = ["{{- range $i, $_ := .Messages }}", "{{- $last := eq (len (slice $.Messages $i)) 1 }}"]
        if self.default_system:
            lines.append(
                f'{{{{- if and (eq $i 0) (ne .Role "system") }}}}{_lit(self.default_system)}{{{{ end }}}}'
            )
        for n, role in enumerate(ROLES):
            keyword = "if" if n == 0 else "else if"
            pre, suf = _lit(self.prefix[role]), _lit(self.suffix[role])
            if role == "assistant" and suf:
                # a trailing assistant message is left open so the model continues it
                suf = f"{{{{ if not $last }}}}{suf}{{{{ end }}}}"
            body = f"{pre}{{{{ .Content }}}}{suf}"
            lines.append(f'{{{{- {keyword} eq .Role "{role}" }}}}{body}')
        lines.append("{{- end }}")
        if self.generation_prompt:
            lines.append(
                f'{{{{- if and $last (ne .Role "assistant") }}}}{_lit(self.generation_prompt)}{{{{ end }}}}'
            )
        lines.append("{{- end }}")
        return "\n".join(lines)


def _lit(text: str) -> str:
    """A Go action printing `text` literally (nothing for empty text)."""
    return f"{{{{ {go_string(text)} }}}}" if text else ""


_SENTINEL = {
    "system": "PQSYSTEMq7x",
    "user": "PQUSERk3v",
    "assistant": "PQASSISTANTm2w",
    "user2": "PQUSERTWOz9d",
}


def _cut(gap: str, marker: str, what: str) -> tuple[str, str]:
    """Split the text between two contents into (suffix of the first, prefix of the second)."""
    at = gap.find(marker)
    if at < 0:
        raise PackageError(f"chat template: no {marker!r} between turns ({what}); cannot derive a template")
    return gap[:at], gap[at:]


_BOS_SENTINEL = "PQBOSb8r"


def starts_with_bos(jinja_source: str, messages: Sequence[Message], **tokens: str) -> bool:
    """Whether the template emits bos_token first (found with a sentinel BOS: SmolLM2's BOS is
    the same text as its turn marker, so the real token cannot tell)."""
    probe = render_jinja(jinja_source, messages, **{**tokens, "bos_token": _BOS_SENTINEL})
    return probe.startswith(_BOS_SENTINEL)


def render_jinja_runtime(
    jinja_source: str, messages: Sequence[Message], *, bos_token: str, eos_token: str
) -> str:
    """The Jinja rendering as the runtime must see it: without a leading BOS, which llama.cpp's
    and Ollama's tokenizers add themselves."""
    text = render_jinja(jinja_source, messages, bos_token=bos_token, eos_token=eos_token)
    if starts_with_bos(jinja_source, messages, bos_token=bos_token, eos_token=eos_token):
        text = text[len(bos_token) :]
    return text


def derive_chat_format(jinja_source: str, *, bos_token: str, eos_token: str) -> ChatFormat:
    """Derive a ChatFormat by rendering sentinel conversations; PackageError if the template is of
    no known family or the derived Go template does not reproduce it."""
    family = detect_family(jinja_source)
    if family is None:
        names = ", ".join(f"{f.name} ({' '.join(f.markers)})" for f in FAMILIES)
        raise PackageError(f"chat template: unknown family; supported: {names}")
    s = _SENTINEL
    kw = {"bos_token": bos_token, "eos_token": eos_token}
    convo = [
        {"role": "system", "content": s["system"]},
        {"role": "user", "content": s["user"]},
        {"role": "assistant", "content": s["assistant"]},
        {"role": "user", "content": s["user2"]},
    ]
    full = render_jinja(jinja_source, convo, add_generation_prompt=True, **kw)
    no_gen = render_jinja(jinja_source, convo, add_generation_prompt=False, **kw)
    leading_bos = starts_with_bos(jinja_source, convo, **kw)
    if leading_bos:
        full, no_gen = full[len(bos_token) :], no_gen[len(bos_token) :]
    positions = []
    for key in ("system", "user", "assistant", "user2"):
        at = full.find(s[key])
        if at < 0 or (positions and at < positions[-1][1]):
            raise PackageError(f"chat template: the {key} message does not appear in order in the rendering")
        positions.append((at, at + len(s[key])))
    marker = family.turn_start
    prefix: dict[str, str] = {}
    suffix: dict[str, str] = {}
    if full.find(marker) != 0:
        raise PackageError(f"chat template: rendering does not start with {marker!r} (after BOS)")
    prefix["system"] = full[: positions[0][0]]
    suffix["system"], prefix["user"] = _cut(full[positions[0][1] : positions[1][0]], marker, "system->user")
    suffix["user"], prefix["assistant"] = _cut(
        full[positions[1][1] : positions[2][0]], marker, "user->assistant"
    )
    suffix["assistant"], user2_prefix = _cut(
        full[positions[2][1] : positions[3][0]], marker, "assistant->user"
    )
    if user2_prefix != prefix["user"]:
        raise PackageError("chat template: the user turn renders differently at different positions")
    tail = full[positions[3][1] :]
    tail_no_gen = no_gen[positions[3][1] :] if no_gen[: positions[3][1]] == full[: positions[3][1]] else None
    if tail_no_gen is None or not tail.startswith(tail_no_gen):
        raise PackageError("chat template: add_generation_prompt does not only append a generation prompt")
    if tail_no_gen != suffix["user"]:
        raise PackageError("chat template: the last user turn ends differently from earlier ones")
    generation_prompt = tail[len(tail_no_gen) :]
    # what a conversation without a system message gets instead (SmolLM2's default system prompt,
    # Llama 3.1's dated empty system turn, or nothing)
    only_user = render_jinja(
        jinja_source, [{"role": "user", "content": s["user"]}], add_generation_prompt=True, **kw
    )
    if leading_bos:
        only_user = only_user[len(bos_token) :]
    default_system = only_user[: only_user.find(s["user"])]
    if not default_system.endswith(prefix["user"]):
        raise PackageError("chat template: the first user turn renders differently from later ones")
    default_system = default_system[: len(default_system) - len(prefix["user"])]
    stops = tuple(dict.fromkeys([*family.stops, *([eos_token] if eos_token else [])]))
    fmt = ChatFormat(family.name, leading_bos, default_system, prefix, suffix, generation_prompt, stops)
    check_go_template(fmt.go_template(), jinja_source, bos_token=bos_token, eos_token=eos_token)
    return fmt


def render_go(go_source: str, messages: Sequence[Message]) -> str:
    """Render an Ollama TEMPLATE for a chat the way Ollama does (chat mode if it uses .Messages,
    else the legacy .System/.Prompt mode)."""
    template = GoTemplate(go_source)
    values = ollama_values(messages)
    if template.uses("Messages"):
        return template.render(values)
    prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return template.render({"System": values["System"], "Prompt": prompt, "Response": ""})


def check_go_template(go_source: str, jinja_source: str, *, bos_token: str, eos_token: str) -> None:
    """PackageError unless the Go template renders every check conversation like the Jinja one
    (Jinja's leading BOS aside: the runtime's tokenizer adds BOS)."""
    for messages in CHECK_CONVERSATIONS:
        expected = render_jinja_runtime(jinja_source, messages, bos_token=bos_token, eos_token=eos_token)
        got = render_go(go_source, messages)
        if got != expected:
            at = next(
                (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                min(len(got), len(expected)),
            )
            roles = ",".join(m["role"] for m in messages)
            raise PackageError(
                f"chat template: derived Ollama template differs from the Jinja template for a "
                f"{roles} chat at character {at}: {got[at : at + 40]!r} vs {expected[at : at + 40]!r}"
            )
