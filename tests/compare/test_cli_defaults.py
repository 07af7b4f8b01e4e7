"""No hidden defaults: every option of every `pocketquant` subcommand and every stage script that has
a default value says what it is in --help."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import pytest

from pocketquant.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
FLAGS = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._StoreConstAction,
    argparse._CountAction,
    argparse._HelpAction,
    argparse._VersionAction,
)


def hidden_defaults(parser: argparse.ArgumentParser, where: str) -> list[str]:
    """Options (and optional positionals) with a default that their help text does not show."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += hidden_defaults(sub, f"{where} {name}")
            continue
        if isinstance(action, FLAGS) or action.required or action.default is argparse.SUPPRESS:
            continue
        optional_positional = not action.option_strings and action.nargs in ("?", "*")
        if action.option_strings and action.default is None and action.nargs not in ("?", "*"):
            continue  # absent means "not given" (e.g. --imatrix FILE): nothing is assumed
        if action.option_strings or optional_positional:
            text = (action.help or "") % {"default": action.default, "prog": parser.prog}
            if "default" not in text:
                found.append(f"{where}: {action.option_strings or action.dest} (default {action.default!r})")
    return found


def test_every_pocketquant_subcommand_shows_its_defaults():
    parser = build_parser()
    assert hidden_defaults(parser, "pocketquant") == []
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"quantize", "convert", "verify", "package", "compare"} <= set(subcommands)
    for sub in subcommands.values():
        sub.format_help()  # renders (a bad %-format in a help string would raise here)


class Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


STAGES = sorted(p.stem for p in (REPO / "stages").glob("*.py") if p.stem != "common")


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_script_shows_its_defaults(stage, monkeypatch):
    """Each stage's main() builds its parser; catch it at parse_args and walk it."""
    monkeypatch.syspath_prepend(str(REPO / "stages"))

    def capture(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        raise Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    module = importlib.import_module(stage)
    try:
        with pytest.raises(Captured) as caught:
            module.main()
    finally:
        sys.modules.pop(stage, None)
    assert hidden_defaults(caught.value.parser, f"stages/{stage}.py") == []


def test_the_walk_finds_a_hidden_default():
    p = argparse.ArgumentParser(prog="x")
    p.add_argument("--threads", type=int, default=4, help="worker threads")
    p.add_argument("--shown", type=int, default=4, help="shown (default: %(default)s)")
    p.add_argument("--flag", action="store_true", help="a flag")
    p.add_argument("inputs", nargs="*", default=["a"], help="inputs")
    assert hidden_defaults(p, "x") == ["x: ['--threads'] (default 4)", "x: inputs (default ['a'])"]
