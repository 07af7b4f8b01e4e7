"""`pocketquant compare [SOURCE ...]`: the variants of a sweep side by side, with error bars."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="one table (and an offline HTML page) of every variant across experiments",
        description=(
            "One row per variant: model, scheme, how it was made, size (GB, GiB, bits/weight, vs BF16), "
            "PPL ± error, ΔPPL vs base, KLD mean ± error and p99, same top-1 %, multiple-choice accuracy, "
            "prompt and generation tokens/s, time to first token, peak RSS. Rows measured on different "
            "corpora or settings are shown with a note saying so. Variants made from the same scheme "
            "(plain vs imatrix, plain vs from-NF4) and --pair choices are compared on the same tokens."
        ),
    )
    p.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="experiment names, git revisions, 'workspace', metrics JSON files or saved "
        "`dvc exp show --json` output (default: none given = the workspace and every experiment of "
        "its baseline, from `dvc exp show --json`)",
    )
    p.add_argument(
        "--repo",
        default=".",
        help="the pipeline's git/DVC repository (default: %(default)s, the current directory)",
    )
    p.add_argument("--csv", action="store_true", help="print CSV instead of Markdown (default: Markdown)")
    p.add_argument(
        "--html",
        metavar="FILE",
        default=None,
        help="also write the offline HTML page to FILE (default: none written)",
    )
    p.add_argument(
        "--no-base",
        dest="include_base",
        action="store_false",
        help="leave out the base model's row (default: it is shown)",
    )
    p.add_argument(
        "--pair",
        nargs=2,
        action="append",
        metavar=("A", "B"),
        default=[],
        help="also compare variants A and B on the same tokens (repeatable; by label, e.g. q4_k_m q8_0; "
        "default: only the plain/imatrix and plain/from-NF4 pairs)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pocketquant.atomic import refuse_directory_output
    from pocketquant.compare import compare

    if args.html:  # refused before any work, like every other output
        refuse_directory_output(Path(args.html))
    result = compare(args.sources, repo=args.repo, include_base=args.include_base, pairs=args.pair)
    print(result.csv() if args.csv else result.markdown(), end="", flush=True)
    if args.html:
        print(f"wrote {result.write_html(args.html)}", file=sys.stderr)  # stdout stays the table
    return 0
