"""Write and read Ollama Modelfiles (FROM, TEMPLATE, SYSTEM, PARAMETER, comments).

The reader follows Ollama's parser closely enough for what we write and what people commonly
edit: commands are case-insensitive, values are bare (to the end of the line), "quoted" or
\"\"\"triple-quoted\"\"\" (may span lines; no escapes inside, as in Ollama).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pocketquant.errors import PackageError

COMMANDS = {
    "from",
    "template",
    "system",
    "parameter",
    "license",
    "adapter",
    "message",
    "draft",
    "renderer",
    "parser",
    "requires",
}


@dataclass
class Modelfile:
    from_: str
    template: str | None = None
    system: str | None = None
    parameters: dict[str, list[str]] = field(default_factory=dict)

    def parameter(self, name: str) -> str | None:
        values = self.parameters.get(name)
        return values[-1] if values else None


def _quote(value: str, what: str) -> str:
    """Quote a single-line value the way Ollama reads it back unchanged."""
    if "\n" in value or "\r" in value or '"' in value:
        raise PackageError(f"Modelfile: {what} {value!r} cannot contain newlines or double quotes")
    return f'"{value}"'


def render_modelfile(
    *,
    gguf_name: str,
    template: str,
    stops: Sequence[str],
    num_ctx: int,
    extra_parameters: Mapping[str, str | int | float] | None = None,
    header: Sequence[str] = (),
) -> str:
    if '"""' in template:
        raise PackageError('Modelfile: the TEMPLATE cannot contain """')
    lines = [f"# {line}" for line in header]
    lines.append(f"FROM ./{gguf_name}")
    lines.append(f'TEMPLATE """{template}"""')
    for stop in stops:
        lines.append(f"PARAMETER stop {_quote(stop, 'stop')}")
    lines.append(f"PARAMETER num_ctx {int(num_ctx)}")
    for key in sorted(extra_parameters or {}):
        if not re.fullmatch(r"[A-Za-z0-9_]+", key):
            raise PackageError(f"Modelfile: bad parameter name {key!r}")
        value = extra_parameters[key]  # type: ignore[index]
        lines.append(f"PARAMETER {key} {_quote(str(value), key) if isinstance(value, str) else value}")
    return "\n".join(lines) + "\n"


def parse_modelfile(text: str, *, name: str = "Modelfile") -> Modelfile:
    """Parse a Modelfile; PackageError naming the file and line on anything malformed."""
    commands: list[tuple[str, str, int]] = []
    i, n, line = 0, len(text), 1

    def fail(msg: str) -> PackageError:
        return PackageError(f"{name}: line {line}: {msg}")

    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
            continue
        if c in " \t\r":
            i += 1
            continue
        if c == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        m = re.compile(r"[A-Za-z]+").match(text, i)
        if not m or m.end() >= n or text[m.end()] not in " \t":
            raise fail("expected a command followed by a value")
        cmd = m.group(0).lower()
        if cmd not in COMMANDS:
            raise fail(f"unknown command {m.group(0)!r}")
        i = m.end()
        if cmd == "parameter":
            while i < n and text[i] in " \t":
                i += 1
            pm = re.compile(r"[A-Za-z0-9_]+").match(text, i)
            if not pm or pm.end() >= n or text[pm.end()] not in " \t":
                raise fail("PARAMETER needs a name and a value")
            cmd = "param:" + pm.group(0)
            i = pm.end()
        while i < n and text[i] in " \t":
            i += 1
        start_line = line
        if text.startswith('"""', i):
            end = text.find('"""', i + 3)
            if end < 0:
                raise fail('unterminated """')
            value = text[i + 3 : end]
            line += value.count("\n")
            i = end + 3
        elif text.startswith('"', i):
            end = text.find('"', i + 1)
            if end < 0 or "\n" in text[i:end]:
                raise fail('unterminated "')
            value = text[i + 1 : end]
            i = end + 1
        else:
            end = text.find("\n", i)
            end = n if end < 0 else end
            value = text[i:end].strip()
            i = end
        rest_end = text.find("\n", i)
        rest = text[i : n if rest_end < 0 else rest_end]
        if rest.strip():
            raise fail(f"unexpected text after the value: {rest.strip()!r}")
        commands.append((cmd, value, start_line))

    froms = [v for c, v, _ in commands if c == "from"]
    if len(froms) != 1:
        raise PackageError(f"{name}: expected exactly one FROM line, found {len(froms)}")
    mf = Modelfile(from_=froms[0])
    for cmd, value, _ in commands:
        if cmd == "template":
            mf.template = value
        elif cmd == "system":
            mf.system = value
        elif cmd.startswith("param:"):
            mf.parameters.setdefault(cmd[len("param:") :], []).append(value)
    return mf
