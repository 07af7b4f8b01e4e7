"""The `pocketquant` command. Each subcommand lives in pocketquant/commands/<name>.py and exposes
`register(subparsers)`; heavy imports stay inside the command functions so `--help` is fast.

Failures end as one line naming the file, tensor or key and exit status 2 (pocketquant.failures);
`--debug` (before or after the command name) also prints the traceback."""

from __future__ import annotations

import argparse
import importlib
import sys

from pocketquant import __version__
from pocketquant.failures import debug_requested, run_reporting

COMMAND_MODULES = [
    "pocketquant.commands.quantize",
    "pocketquant.commands.convert",
    "pocketquant.commands.verify",
    "pocketquant.commands.package",
    "pocketquant.commands.compare",
    "pocketquant.commands.plots_template",
    "pocketquant.commands.sweep",
]
DEBUG_HELP = "on failure, also print the Python traceback (default: one line)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pocketquant",
        description="Quantize causal LMs to GGUF / NF4, evaluate them, package them for devices.",
    )
    parser.add_argument("--version", action="version", version=f"pocketquant {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    for command in sub.choices.values():
        # SUPPRESS: `pocketquant --debug quantize ...` is not undone by the subcommand's default
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = bool(args.debug) or debug_requested()
    return run_reporting("pocketquant", lambda: args.func(args), debug=debug)


if __name__ == "__main__":
    sys.exit(main())
