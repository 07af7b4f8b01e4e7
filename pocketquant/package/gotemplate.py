"""A small interpreter for the subset of Go's text/template that Ollama chat templates use.

Why: `pocketquant verify` must render a prompt through the Modelfile's TEMPLATE exactly as Ollama
would, and there is no Go toolchain on the machines that verify packages. Supported: text, trim
markers (`{{-`, `-}}`), comments, `if`/`else if`/`else`/`end`, `range` (with `$i, $v :=`),
variables (`:=`, `=`), fields (`.A.B`, `$x.A`, `$.A`, `(pipe).A`), pipes (`|`), string/raw
string/number/bool/nil literals and the builtins eq ne lt le gt ge and or not len slice index
print, plus Ollama's `json`. Anything else is a TemplateError naming the offending action.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_WS = " \t\r\n"


class TemplateError(ValueError):
    """The template is outside the supported subset, malformed, or failed while executing."""


# ----------------------------------------------------------------------------------------- lexing


@dataclass
class _Tok:
    kind: str  # str, raw, num, var, field, ident, kw, op
    value: Any
    text: str


_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)")
_FIELD = re.compile(r"(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.")
_VAR = re.compile(r"\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"'}


def _unquote_go(body: str, where: str) -> str:
    """Decode the inside of a Go interpreted string literal ("...")."""
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1 : i + 2]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[nxt]
            digits = body[i + 2 : i + 2 + width]
            if len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise TemplateError(f"bad \\{nxt} escape in string literal in {where}")
            out.append(chr(int(digits, 16)))
            i += 2 + width
        elif nxt and nxt in "01234567":
            digits = body[i + 1 : i + 4]
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise TemplateError(f"unknown escape \\{nxt} in string literal in {where}")
    return "".join(out)


def _lex_action(src: str, where: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i = 0
    while i < len(src):
        c = src[i]
        if c in _WS:
            i += 1
            continue
        if src.startswith(":=", i):
            toks.append(_Tok("op", ":=", ":="))
            i += 2
            continue
        if c in "=|(),":
            toks.append(_Tok("op", c, c))
            i += 1
            continue
        if c == '"':
            j = i + 1
            while j < len(src) and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            if j >= len(src):
                raise TemplateError(f"unterminated string literal in {where}")
            toks.append(_Tok("str", _unquote_go(src[i + 1 : j], where), src[i : j + 1]))
            i = j + 1
            continue
        if c == "`":
            j = src.find("`", i + 1)
            if j < 0:
                raise TemplateError(f"unterminated raw string in {where}")
            toks.append(_Tok("str", src[i + 1 : j], src[i : j + 1]))
            i = j + 1
            continue
        if c == "$":
            m = _VAR.match(src, i)
            assert m is not None
            name, *fields = m.group(0).split(".")
            toks.append(_Tok("var", (name, tuple(fields)), m.group(0)))
            i = m.end()
            continue
        if c == ".":
            m = _FIELD.match(src, i)
            assert m is not None
            fields = tuple(f for f in m.group(0).split(".") if f)
            toks.append(_Tok("field", fields, m.group(0)))
            i = m.end()
            continue
        m = _NUMBER.match(src, i)
        if m and (c.isdigit() or (c in "+-" and i + 1 < len(src) and src[i + 1].isdigit())):
            text = m.group(0)
            value: Any = int(text, 0) if re.fullmatch(r"[+-]?(0[xX][0-9a-fA-F]+|\d+)", text) else float(text)
            toks.append(_Tok("num", value, text))
            i = m.end()
            continue
        m = _IDENT.match(src, i)
        if m:
            word = m.group(0)
            kind = "kw" if word in _KEYWORDS else "ident"
            toks.append(_Tok(kind, word, word))
            i = m.end()
            continue
        raise TemplateError(f"unexpected character {c!r} in {where}")
    return toks


def _split(template: str) -> list[tuple[str, str]]:
    """Split into ("text", s) and ("action", s) items, applying trim markers."""
    items: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    while True:
        start = template.find("{{", pos)
        text = template[pos:] if start < 0 else template[pos:start]
        if trim_next:
            text = text.lstrip(_WS)
        if start < 0:
            if text:
                items.append(("text", text))
            return items
        inner_start = start + 2
        if template.startswith("- ", inner_start) or (
            template.startswith("-", inner_start) and template[inner_start + 1 : inner_start + 2] in _WS
        ):
            text = text.rstrip(_WS)
            inner_start += 1
        if text:
            items.append(("text", text))
        # find the closing braces, skipping over string literals
        j = inner_start
        while j < len(template):
            if template[j] in '"`':
                quote = template[j]
                j += 1
                while j < len(template) and template[j] != quote:
                    j += 2 if (quote == '"' and template[j] == "\\") else 1
                j += 1
                continue
            if template.startswith("}}", j):
                break
            j += 1
        else:
            raise TemplateError(f"unclosed action starting at offset {start}")
        inner = template[inner_start:j]
        trim_next = False
        if inner.endswith(" -") or (len(inner) >= 2 and inner[-1] == "-" and inner[-2] in _WS):
            inner = inner[:-1]
            trim_next = True
        items.append(("action", inner))
        pos = j + 2


# ---------------------------------------------------------------------------------------- parsing


@dataclass
class _Pipe:
    decl: tuple[str, ...]  # variable names declared (:=) or assigned (=)
    is_assign: bool
    cmds: list[list[Any]]  # each command: operand nodes
    where: str


@dataclass
class _Node:
    kind: str  # text, action, if, range
    text: str = ""
    pipe: _Pipe | None = None
    body: list[_Node] = field(default_factory=list)
    else_body: list[_Node] = field(default_factory=list)


class _Parser:
    def __init__(self, items: list[tuple[str, str]]):
        self.items = items
        self.pos = 0

    def parse(self) -> list[_Node]:
        nodes, stop = self._list()
        if stop is not None:
            raise TemplateError(f"unexpected {{{{{stop[1].strip()}}}}}")
        return nodes

    def _list(self) -> tuple[list[_Node], tuple[str, str] | None]:
        """Parse nodes until an `else`/`end` action (returned) or the end of input (None)."""
        nodes: list[_Node] = []
        while self.pos < len(self.items):
            kind, src = self.items[self.pos]
            self.pos += 1
            if kind == "text":
                nodes.append(_Node("text", text=src))
                continue
            stripped = src.strip()
            if stripped.startswith("/*"):
                if not stripped.endswith("*/"):
                    raise TemplateError(f"unterminated comment {{{{{src}}}}}")
                continue
            where = f"{{{{{stripped}}}}}"
            toks = _lex_action(src, where)
            if not toks:
                raise TemplateError(f"empty action {where}")
            head = toks[0]
            if head.kind == "kw":
                if head.value in ("end", "else"):
                    return nodes, (head.value, src)
                if head.value == "if":
                    nodes.append(self._if(toks[1:], where))
                elif head.value == "range":
                    nodes.append(self._range(toks[1:], where))
                else:
                    raise TemplateError(f"unsupported action {where} (only if/range/else/end)")
                continue
            nodes.append(_Node("action", pipe=_parse_pipe(toks, where)))
        return nodes, None

    def _if(self, toks: list[_Tok], where: str) -> _Node:
        node = _Node("if", pipe=_parse_pipe(toks, where))
        node.body, stop = self._list()
        if stop is None:
            raise TemplateError(f"missing {{{{end}}}} for {where}")
        if stop[0] == "else":
            rest = _lex_action(stop[1], where)[1:]
            if rest and rest[0].kind == "kw" and rest[0].value == "if":
                # `else if` nests an if that shares our `end`
                node.else_body = [self._if(rest[1:], f"{{{{{stop[1].strip()}}}}}")]
                return node
            if rest:
                raise TemplateError(f"unexpected tokens after else in {{{{{stop[1].strip()}}}}}")
            node.else_body, stop2 = self._list()
            if stop2 is None or stop2[0] != "end":
                raise TemplateError(f"missing {{{{end}}}} for {where}")
        return node

    def _range(self, toks: list[_Tok], where: str) -> _Node:
        node = _Node("range", pipe=_parse_pipe(toks, where))
        node.body, stop = self._list()
        if stop is None:
            raise TemplateError(f"missing {{{{end}}}} for {where}")
        if stop[0] == "else":
            node.else_body, stop2 = self._list()
            if stop2 is None or stop2[0] != "end":
                raise TemplateError(f"missing {{{{end}}}} for {where}")
        return node


def _parse_pipe(toks: list[_Tok], where: str) -> _Pipe:
    decl: list[str] = []
    is_assign = False
    # declarations: $a := ... / $a, $b := ... / $a = ...
    for n_vars in (2, 1):
        span = 2 * n_vars - 1
        if len(toks) > span and toks[span].kind == "op" and toks[span].value in (":=", "="):
            cand = toks[:span]
            names = [t for t in cand[::2] if t.kind == "var" and not t.value[1]]
            commas = [t for t in cand[1::2] if t.kind == "op" and t.value == ","]
            if len(names) == n_vars and len(commas) == n_vars - 1:
                decl = [t.value[0] for t in names]
                is_assign = toks[span].value == "="
                toks = toks[span + 1 :]
                break
    pos = 0

    def operand() -> Any:
        nonlocal pos
        if pos >= len(toks):
            raise TemplateError(f"missing operand in {where}")
        t = toks[pos]
        pos += 1
        if t.kind == "op" and t.value == "(":
            inner = pipe_until(")")
            node: Any = ("pipe", inner)
            # (pipe).Field chains
            if pos < len(toks) and toks[pos].kind == "field" and toks[pos].value:
                node = ("chain", node, toks[pos].value)
                pos += 1
            return node
        if t.kind == "str":
            return ("lit", t.value)
        if t.kind == "num":
            return ("lit", t.value)
        if t.kind == "var":
            return ("var", t.value[0], t.value[1])
        if t.kind == "field":
            return ("field", t.value)
        if t.kind == "ident":
            if t.value == "true":
                return ("lit", True)
            if t.value == "false":
                return ("lit", False)
            if t.value == "nil":
                return ("lit", None)
            return ("func", t.value)
        raise TemplateError(f"unexpected {t.text!r} in {where}")

    def command(stop: str | None) -> list[Any]:
        args: list[Any] = []
        while pos < len(toks) and not (toks[pos].kind == "op" and toks[pos].value in ("|", stop)):
            args.append(operand())
        if not args:
            raise TemplateError(f"empty command in {where}")
        return args

    def pipe_until(stop: str | None) -> _Pipe:
        nonlocal pos
        cmds = [command(stop)]
        while pos < len(toks) and toks[pos].kind == "op" and toks[pos].value == "|":
            pos += 1
            cmds.append(command(stop))
        if stop is not None:
            if pos >= len(toks) or toks[pos].value != stop:
                raise TemplateError(f"missing {stop!r} in {where}")
            pos += 1
        return _Pipe((), False, cmds, where)

    body = pipe_until(None)
    if pos != len(toks):
        raise TemplateError(f"unexpected {toks[pos].text!r} in {where}")
    return _Pipe(tuple(decl), is_assign, body.cmds, where)


# -------------------------------------------------------------------------------------- execution

_MISSING = object()


def truth(value: Any) -> bool:
    """Go's template truthiness: zero values and empty collections are false."""
    if value is None or value is _MISSING:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, (str, bytes, Sequence, Mapping)):
        return len(value) > 0
    return True


def _fmt(value: Any) -> str:
    if value is None or value is _MISSING:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_fmt(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


def _field(value: Any, name: str, where: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(name)  # Ollama runs with missingkey=zero
    if value is None:
        raise TemplateError(f"nil pointer evaluating .{name} in {where}")
    if hasattr(value, name):
        return getattr(value, name)
    raise TemplateError(f"can't evaluate field {name} in {where}")


def _eq(where: str, a: Any, *others: Any) -> bool:
    if not others:
        raise TemplateError(f"missing argument for comparison in {where}")
    return any(a == b for b in others)


def _cmp(op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def run(where: str, a: Any, b: Any) -> bool:
        try:
            return op(a, b)
        except TypeError as exc:
            raise TemplateError(f"incompatible types for comparison in {where}") from exc

    return run


def _slice(where: str, value: Any, *idx: int) -> Any:
    if len(idx) > 2:
        raise TemplateError(f"slice with 3 indices is unsupported in {where}")
    lo = idx[0] if idx else 0
    hi = idx[1] if len(idx) > 1 else len(value)
    if not 0 <= lo <= hi <= len(value):
        raise TemplateError(f"slice index out of range in {where}")
    return value[lo:hi]


def _index(where: str, value: Any, *keys: Any) -> Any:
    for key in keys:
        try:
            value = value[key]
        except (IndexError, KeyError, TypeError) as exc:
            raise TemplateError(f"error calling index: {exc} in {where}") from exc
    return value


def _len(where: str, value: Any) -> int:
    try:
        return len(value)
    except TypeError as exc:
        raise TemplateError(f"len of {type(value).__name__} in {where}") from exc


_FUNCS: dict[str, Callable[..., Any]] = {
    "eq": _eq,
    "ne": lambda where, a, b: a != b,
    "lt": _cmp(lambda a, b: a < b),
    "le": _cmp(lambda a, b: a <= b),
    "gt": _cmp(lambda a, b: a > b),
    "ge": _cmp(lambda a, b: a >= b),
    "not": lambda where, a: not truth(a),
    "len": _len,
    "slice": _slice,
    "index": _index,
    "print": lambda where, *a: "".join(_fmt(x) for x in a),
    "json": lambda where, a: json.dumps(a, separators=(",", ":"), ensure_ascii=False),
}


class _Exec:
    def __init__(self, data: Any):
        self.vars: list[tuple[str, Any]] = [("$", data)]
        self.out: list[str] = []

    def lookup(self, name: str, where: str) -> Any:
        for n, v in reversed(self.vars):
            if n == name:
                return v
        raise TemplateError(f"undefined variable {name} in {where}")

    def run(self, nodes: list[_Node], dot: Any) -> None:
        for node in nodes:
            if node.kind == "text":
                self.out.append(node.text)
            elif node.kind == "action":
                assert node.pipe is not None
                value = self.pipe(node.pipe, dot)
                if not node.pipe.decl:
                    self.out.append(_fmt(value))
            elif node.kind == "if":
                assert node.pipe is not None
                mark = len(self.vars)
                cond = self.pipe(node.pipe, dot)
                self.run(node.body if truth(cond) else node.else_body, dot)
                del self.vars[mark:]
            elif node.kind == "range":
                self.range(node, dot)

    def range(self, node: _Node, dot: Any) -> None:
        assert node.pipe is not None
        pipe = node.pipe
        mark = len(self.vars)
        value = self.pipe(_Pipe((), False, pipe.cmds, pipe.where), dot)
        if isinstance(value, Mapping):
            pairs = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, (list, tuple)):
            pairs = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            pairs = [(i, i) for i in range(value)]
        elif value is None:
            pairs = []
        else:
            raise TemplateError(f"range can't iterate over {type(value).__name__} in {pipe.where}")
        if not pairs:
            self.run(node.else_body, dot)
            return
        for key, elem in pairs:
            inner = len(self.vars)
            if len(pipe.decl) == 1:
                self.vars.append((pipe.decl[0], elem))
            elif len(pipe.decl) == 2:
                self.vars.extend([(pipe.decl[0], key), (pipe.decl[1], elem)])
            self.run(node.body, elem)
            del self.vars[inner:]
        del self.vars[mark:]

    def pipe(self, pipe: _Pipe, dot: Any) -> Any:
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self.command(cmd, dot, value, pipe.where)
        if pipe.decl:
            if len(pipe.decl) != 1:
                raise TemplateError(f"too many declarations in {pipe.where}")
            name = pipe.decl[0]
            if pipe.is_assign:
                for i in range(len(self.vars) - 1, -1, -1):
                    if self.vars[i][0] == name:
                        self.vars[i] = (name, value)
                        break
                else:
                    raise TemplateError(f"undefined variable {name} in {pipe.where}")
            else:
                self.vars.append((name, value))
        return value

    def command(self, args: list[Any], dot: Any, piped: Any, where: str) -> Any:
        head = args[0]
        if head[0] == "func":
            name = head[1]
            if name in ("and", "or"):
                # Go 1.18+: short-circuit, return the deciding argument
                operands = args[1:] + ([("lit", piped)] if piped is not _MISSING else [])
                if not operands:
                    raise TemplateError(f"{name} needs arguments in {where}")
                value = None
                for op in operands:
                    value = self.operand(op, dot, where)
                    if truth(value) != (name == "and"):
                        return value
                return value
            fn = _FUNCS.get(name)
            if fn is None:
                raise TemplateError(f'function "{name}" not defined in {where}')
            values = [self.operand(a, dot, where) for a in args[1:]]
            if piped is not _MISSING:
                values.append(piped)
            try:
                return fn(where, *values)
            except TypeError as exc:
                raise TemplateError(f"wrong number of arguments for {name} in {where}") from exc
        if len(args) > 1 or piped is not _MISSING:
            raise TemplateError(f"can't give arguments to a non-function in {where}")
        return self.operand(head, dot, where)

    def operand(self, node: Any, dot: Any, where: str) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "field":
            value = dot
            for name in node[1]:
                value = _field(value, name, where)
            return value
        if kind == "var":
            value = self.lookup(node[1], where)
            for name in node[2]:
                value = _field(value, name, where)
            return value
        if kind == "pipe":
            return self.pipe(node[1], dot)
        if kind == "chain":
            value = self.operand(node[1], dot, where)
            for name in node[2]:
                value = _field(value, name, where)
            return value
        if kind == "func":
            return self.command([node], dot, _MISSING, where)
        raise TemplateError(f"bad operand in {where}")


class GoTemplate:
    """A parsed template; `render(data)` executes it against dicts (fields are dict keys)."""

    def __init__(self, source: str):
        self.source = source
        self._nodes = _Parser(_split(source)).parse()

    def render(self, data: Mapping[str, Any]) -> str:
        ex = _Exec(data)
        ex.run(self._nodes, data)
        return "".join(ex.out)

    def uses(self, name: str) -> bool:
        """Whether the template mentions field `name` (Ollama picks chat vs legacy mode this way)."""
        return re.search(r"\.\s*" + re.escape(name) + r"\b", self.source) is not None


def go_string(text: str) -> str:
    """Quote `text` as a Go interpreted string literal (JSON escapes are a subset of Go's)."""
    return json.dumps(text, ensure_ascii=False)


def ollama_values(messages: Sequence[Mapping[str, str]], *, think: bool | None = None) -> dict[str, Any]:
    """The values Ollama passes to a chat template (template.Execute): consecutive same-role
    messages merged, all system contents joined as .System, .Messages as {Role, Content, Thinking}
    objects (a message's `reasoning_content` is what Ollama keeps as Thinking), and the request's
    think flag as .Think / .IsThinkSet."""
    collated: list[dict[str, Any]] = []
    system: list[str] = []
    for msg in messages:
        role, content = msg["role"], msg["content"]
        if role == "system":
            system.append(content)
        if collated and collated[-1]["Role"] == role and role != "tool":
            collated[-1]["Content"] += "\n\n" + content
        else:
            collated.append({"Role": role, "Content": content, "Thinking": msg.get("reasoning_content", "")})
    return {
        "System": "\n\n".join(system),
        "Messages": collated,
        "Tools": None,
        "Response": "",
        "Think": bool(think),
        "IsThinkSet": think is not None,
    }
