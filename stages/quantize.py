"""Stage quantize: one scheme (params `quant`) -> the variant directory.

GGUF schemes: the base GGUF through our kernel -> <out>/<model>-<scheme>.gguf, weighted by the
calibrate stage's importance matrix when quant.imatrix=true; the scheme's name is its
llama-quantize type (q4_k_m -> Q4_K_M). With quant.source=nf4 the GGUF input is the NF4 chain
instead: the HF checkpoint quantized to NF4 (params `nf4`), dequantized and converted like the base.
nf4: the HF checkpoint through bitsandbytes (params `nf4`) -> <out> is a 4-bit HF checkpoint directory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import load_params, run, threads, variant_label

from pocketquant.atomic import atomic_path, scratch_dir
from pocketquant.errors import ConfigError

NF4_SCHEME = "nf4"  # conf/quant/nf4.yaml; every other scheme is a GGUF type


def nf4_chain_gguf(model: str, workdir: Path, *, nf4_settings: dict, outtype: str, name: str) -> Path:
    """HF checkpoint -> NF4 -> dequantized HF checkpoint -> GGUF (the papers' chain)."""
    from pocketquant.convert import convert_hf_to_gguf
    from pocketquant.nf4 import dequantize_nf4, quantize_nf4

    nf4 = quantize_nf4(model, workdir / "nf4", **nf4_settings)
    hf = dequantize_nf4(nf4, workdir / "hf")
    return convert_hf_to_gguf(hf, workdir / "nf4-chain.gguf", outtype=outtype, name=name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF checkpoint directory (acquire's output)")
    ap.add_argument("--gguf", required=True, help="base GGUF (convert's output)")
    ap.add_argument("--calib", required=True, help="the calibrate stage's output directory")
    ap.add_argument("--out", required=True, help="variant directory to write")
    args = ap.parse_args()
    p = load_params()
    q, name = p["quant"], p["model"]["name"]
    nf4_settings = {k: p["nf4"][k] for k in ("blocksize", "double_quant", "compute_dtype")}
    if q["name"] == NF4_SCHEME:
        from pocketquant.nf4 import quantize_nf4

        if q["source"] != "base" or q["imatrix"]:
            raise ConfigError("quant=nf4 takes quant.source=base and quant.imatrix=false")
        if q["threads"]:
            import torch

            torch.set_num_threads(int(q["threads"]))
        quantize_nf4(args.model, args.out, **nf4_settings)
        return
    if q["source"] not in ("base", "nf4"):
        raise ConfigError(f"quant.source={q['source']!r} is not one of: base, nf4")
    imatrix = Path(args.calib) / "imatrix.gguf" if q["imatrix"] else None
    if imatrix is not None and not imatrix.is_file():
        raise ConfigError(f"quant.imatrix=true but {imatrix} is missing: run the calibrate stage")
    from pocketquant.quantize import quantize_gguf

    out = Path(args.out)
    # Intermediate files of the NF4 chain live beside the output (same disk), named so DVC ignores them.
    with scratch_dir(out) as work:
        src = Path(args.gguf)
        if q["source"] == "nf4":
            src = nf4_chain_gguf(
                args.model, Path(work), nf4_settings=nf4_settings, outtype=p["convert"]["outtype"], name=name
            )
        with atomic_path(out, directory=True) as tmp:
            quantize_gguf(
                src,
                tmp / f"{name}-{variant_label(q)}.gguf",
                q["name"],  # the scheme is its llama-quantize type: q4_k_m -> Q4_K_M
                threads=threads(q["threads"]),
                imatrix=imatrix,
            )


if __name__ == "__main__":
    run("quantize", main)
