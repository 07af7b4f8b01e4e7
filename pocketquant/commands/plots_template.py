"""`pocketquant plots-template [FILE]`: an HTML template that makes `dvc plots show/diff` work offline."""

from __future__ import annotations

import argparse

DEFAULT = ".dvc/plots/offline.html"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plots-template",
        help="write an HTML template with vega inlined, so `dvc plots` pages open offline",
        description=(
            "DVC's plot pages load vega from a CDN and stay blank offline. This writes a template with "
            "vega, vega-lite and vega-embed inlined (from the vl-convert-python package) that draws SVG. "
            "Use it with `dvc plots diff --html-template FILE`, or once for all with "
            "`dvc config plots.html_template plots/offline.html` (a path relative to .dvc/). "
            "`pocketquant compare --html` is the other offline page: table, error bars, Pareto fronts."
        ),
    )
    p.add_argument(
        "output", nargs="?", default=DEFAULT, metavar="FILE", help="template to write (default: %(default)s)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pocketquant.compare.dvc_template import write_offline_template

    path = write_offline_template(args.output)
    print(f"wrote {path} ({path.stat().st_size:,} bytes): dvc plots diff --html-template {path}")
    return 0
