"""The `pocketquant` command. Each subcommand lives in pocketquant/commands/<name>.py and exposes
`register(subparsers)`; heavy imports stay inside the command functions so `--help` is fast."""

from __future__ import annotations

import argparse
import importlib
import sys

from pocketquant import __version__
from pocketquant.errors import PocketquantError

COMMAND_MODULES = [
    "pocketquant.commands.quantize",
    "pocketquant.commands.convert",
    "pocketquant.commands.verify",
    "pocketquant.commands.package",
    "pocketquant.commands.sweep",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pocketquant",
        description="Quantize causal LMs to GGUF / NF4, evaluate them, package them for devices.",
    )
    parser.add_argument("--version", action="version", version=f"pocketquant {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PocketquantError as exc:
        print(f"pocketquant: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pocketquant: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
