"""`pocketquant quantize IN.gguf OUT.gguf TYPE`: a drop-in for llama.cpp's llama-quantize."""

from __future__ import annotations

import argparse

# kept in sync with pocketquant.quantize.ftypes (not imported here so --help stays fast)
TYPES_HELP = (
    "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, "
    "Q5_K_S, Q5_K_M, Q6_K (any case; Q3_K, Q4_K, Q5_K mean the _M mixes)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quantize",
        help="quantize a GGUF model (llama-quantize compatible)",
        description=(
            "Quantize a GGUF model with llama-quantize's per-tensor type rules on pocketquant's kernel. "
            "The output has the same tensor types and bytes as llama.cpp's llama-quantize writes."
        ),
    )
    p.add_argument(
        "input", metavar="IN.gguf", help="input GGUF (F32/F16/BF16, or quantized with --allow-requantize)"
    )
    p.add_argument(
        "output", metavar="OUT.gguf", help="output GGUF (written to a temp name, renamed at the end)"
    )
    p.add_argument("type", metavar="TYPE", help=f"file type: {TYPES_HELP}")
    p.add_argument(
        "--threads", type=int, default=None, metavar="N", help="worker threads (default: all cores)"
    )
    p.add_argument("--imatrix", metavar="FILE", help="importance matrix (llama-imatrix GGUF or legacy .dat)")
    p.add_argument("--pure", action="store_true", help="every quantizable tensor gets TYPE's default type")
    p.add_argument("--leave-output-tensor", action="store_true", help="keep output.weight in its input type")
    p.add_argument("--output-tensor-type", metavar="T", help="type for output.weight (e.g. q8_0)")
    p.add_argument("--token-embedding-type", metavar="T", help="type for token_embd.weight")
    p.add_argument(
        "--tensor-type",
        action="append",
        default=[],
        metavar="REGEX=T",
        help="type for tensors whose name matches REGEX (first match wins; repeatable; "
        "default: none, TYPE's rules decide)",
    )
    p.add_argument(
        "--allow-requantize", action="store_true", help="allow input tensors that are already quantized"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the per-tensor plan and the final size; write nothing"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pocketquant.quantize import QuantizeOptions, quantize_gguf

    # the flags are named like QuantizeOptions' fields (--tensor-type is repeatable: tensor_types)
    given = {**vars(args), "tensor_types": args.tensor_type}
    options = QuantizeOptions(**{name: given[name] for name in QuantizeOptions.names()})
    report = quantize_gguf(
        args.input,
        args.output,
        args.type,
        threads=args.threads,
        imatrix=args.imatrix,
        options=options,
        dry_run=args.dry_run,
    )
    if args.dry_run:
        print(report.table())
        print("dry run: nothing written")
    else:
        mix = ", ".join(f"{k}: {v}" for k, v in sorted(report.type_counts().items()))
        print(
            f"wrote {args.output}: {report.ftype}, {report.file_bytes:,} bytes "
            f"({report.bpw:.2f} bits/weight; {mix}) in {report.seconds:.1f} s"
        )
        if report.n_fallback:
            print(f"{report.n_fallback} of {len(report.tensors)} tensors needed a fallback type (row length)")
    return 0
