"""`pocketquant package IN.gguf OUT.zip`: the pipeline's package stage on its own."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "package",
        help="zip a GGUF with an Ollama Modelfile, manifest and device README for a phone",
        description=(
            "Write a deterministic zip: the GGUF, an Ollama Modelfile (TEMPLATE derived from the "
            "GGUF's chat template, stop tokens, num_ctx), manifest.json (sha256 and size of every "
            "file, provenance, metrics) and a README with the Termux/Ollama steps. Check it with "
            "`pocketquant verify OUT.zip`."
        ),
    )
    p.add_argument("input", metavar="IN.gguf", help="the GGUF model to package")
    p.add_argument("output", metavar="OUT.zip", help="the package to write (atomically)")
    p.add_argument("--model-name", required=True, help="model name recorded in the manifest and README")
    p.add_argument(
        "--scheme", required=True, help="quantization scheme recorded in the manifest (e.g. q4_k_m)"
    )
    p.add_argument("--metrics", metavar="FILE.json", help="metrics to record (a JSON object)")
    p.add_argument("--params", metavar="FILE.json", help="build parameters to record (a JSON object)")
    p.add_argument(
        "--num-ctx",
        type=int,
        default=None,
        help="Modelfile PARAMETER num_ctx (default: 2048, or the model's context length when shorter)",
    )
    p.add_argument("--chat-template", metavar="FILE", help="Jinja chat template (default: the GGUF's own)")
    p.add_argument(
        "--stop",
        action="append",
        type=_stop_text,
        metavar="TEXT",
        help="stop string, not empty (repeatable; default: the chat format's end-of-turn tokens and EOS)",
    )
    p.add_argument(
        "--unknown-template",
        choices=("error", "raw"),
        default="error",
        help=(
            "for a chat template of no known format: fail (default: error) or pass the prompt through "
            "(raw). A GGUF without any chat template (a base model) is packaged for plain completion."
        ),
    )
    p.add_argument(
        "--git-commit",
        metavar="SHA",
        help="commit to record; 'auto' reads HEAD of the current directory (default: none)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _stop_text(text: str) -> str:
    """argparse type for --stop: an empty stop would end every answer at once (exit 2, usage error)."""
    if text == "":
        raise argparse.ArgumentTypeError("an empty stop string would end every answer at once")
    return text


def _json_object(path: str | None, what: str) -> dict | None:
    from pocketquant.errors import PackageError
    from pocketquant.inputs import read_json_object

    return None if path is None else read_json_object(path, what, error=PackageError)


def run(args: argparse.Namespace) -> int:
    import os

    from pocketquant.atomic import refuse_overwriting_inputs
    from pocketquant.errors import PackageError
    from pocketquant.inputs import open_regular, read_input_text
    from pocketquant.package import build_package, head_commit

    os.close(open_regular(args.input, "GGUF file", PackageError))  # a FIFO is refused, not waited on
    refuse_overwriting_inputs(args.output, [args.input, args.metrics, args.params, args.chat_template])
    template = None
    if args.chat_template:
        template = read_input_text(args.chat_template, "chat template", error=PackageError)
    out = build_package(
        args.input,
        args.output,
        model_name=args.model_name,
        scheme=args.scheme,
        params=_json_object(args.params, "params") or {},
        metrics=_json_object(args.metrics, "metrics"),
        chat_template=template,
        num_ctx=args.num_ctx,
        stop=args.stop,
        git_commit=head_commit(".") if args.git_commit == "auto" else args.git_commit,
        unknown_template=args.unknown_template,
        progress=not args.quiet,
    )
    print(f"wrote {out} ({out.stat().st_size:,} bytes); check it with: pocketquant verify {out}")
    return 0
