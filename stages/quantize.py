"""Stage quantize: one scheme (params `quant`) -> the variant directory.

GGUF schemes: the base GGUF through our kernel -> <out>/<model>-<scheme>.gguf.
nf4: the HF checkpoint through bitsandbytes -> <out> is a 4-bit HF checkpoint directory.
"""

from __future__ import annotations

import argparse

from common import load_params, run, threads

from pocketquant.atomic import atomic_path
from pocketquant.errors import ConfigError


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="HF checkpoint directory (acquire's output)")
    ap.add_argument("--gguf", required=True, help="base GGUF (convert's output)")
    ap.add_argument("--out", required=True, help="variant directory to write")
    args = ap.parse_args()
    p = load_params()
    q = p["quant"]
    if q["family"] == "gguf":
        from pocketquant.quantize import quantize_gguf

        if q.get("imatrix"):
            raise ConfigError("quant.imatrix=true needs the calibrate stage, which this pipeline lacks yet")
        with atomic_path(args.out, directory=True) as tmp:
            quantize_gguf(
                args.gguf,
                tmp / f"{p['model']['name']}-{q['name']}.gguf",
                q["ftype"],
                threads=threads(q["threads"]),
            )
    elif q["family"] == "nf4":
        from pocketquant.nf4 import quantize_nf4

        if q["threads"]:
            import torch

            torch.set_num_threads(int(q["threads"]))
        quantize_nf4(
            args.model,
            args.out,
            blocksize=q["blocksize"],
            double_quant=q["double_quant"],
            compute_dtype=q["compute_dtype"],
        )
    else:
        raise ConfigError(f"quant.family={q['family']!r} is not one of: gguf, nf4")


if __name__ == "__main__":
    run("quantize", main)
