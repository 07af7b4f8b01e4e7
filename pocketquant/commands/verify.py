"""`pocketquant verify PACKAGE.zip`: check a phone package before copying it to a device."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify",
        help="check a package zip: hashes, Modelfile, and a short generation in llama.cpp",
        description=(
            "Check every member of a package made by the package stage against manifest.json "
            "(sha256 and size), parse the Modelfile, load the GGUF in llama.cpp and generate a few "
            "tokens from a prompt rendered through the Modelfile's TEMPLATE. Exit 0 only if all holds."
        ),
    )
    p.add_argument("package", help="the package .zip")
    p.add_argument("--max-tokens", type=int, default=8, help="tokens to generate (default 8)")
    p.add_argument("--no-load", action="store_true", help="skip loading the model (integrity checks only)")
    p.add_argument(
        "--tmp-dir", default=None, help="where to extract the GGUF for loading (default: system temp)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-file lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pocketquant.package.verify import verify_package

    log = (lambda _m: None) if args.quiet else print
    log(f"verifying {args.package}")
    result = verify_package(
        args.package,
        load_model=not args.no_load,
        max_tokens=args.max_tokens,
        progress=not args.quiet,
        tmp_dir=args.tmp_dir,
        log=log,
    )
    skipped = " (model not loaded: --no-load)" if args.no_load else ""
    print(f"OK {result.package}: {len(result.files)} files verified{skipped}")
    return 0
