"""Stage package: the GGUF variant + its metrics -> <out>/<model>-<scheme>.zip for the phone
(GGUF, Ollama Modelfile, manifest.json with sha256/size/provenance/metrics, device README).

An NF4 variant is a transformers/bitsandbytes checkpoint that phone runtimes (llama.cpp, Ollama)
cannot load, so for it the stage writes only NOT_PACKAGED.txt saying so.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import load_params, run, variant_label, variant_path

from pocketquant.atomic import atomic_path
from pocketquant.inputs import read_json_object
from pocketquant.package.build import build_package, slug
from pocketquant.provenance import build_provenance, commit_label


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", required=True, help="quantize's output directory")
    ap.add_argument("--metrics", required=True, help="the variant's metrics JSON (evaluate's output)")
    ap.add_argument("--out", required=True, help="package directory to write")
    args = ap.parse_args()
    p = load_params()
    model, scheme, pkg = p["model"]["name"], variant_label(p["quant"]), p["package"]
    variant = variant_path(Path(args.variant))
    # the commit of this stage's code, not HEAD (HEAD moves when dvc.lock is committed)
    provenance = build_provenance(__file__)
    with atomic_path(args.out, directory=True) as tmp:
        if variant.suffix != ".gguf":
            (tmp / "NOT_PACKAGED.txt").write_text(
                f"{model} {scheme} is a transformers/bitsandbytes checkpoint ({args.variant}); phone "
                "runtimes (llama.cpp, Ollama) load GGUF, so only GGUF schemes are packaged.\n",
                encoding="utf-8",
            )
            print(f"package: {scheme} is not a GGUF variant; nothing to package for a phone")
            return
        build_package(
            variant,
            tmp / f"{slug(model)}-{slug(scheme)}.zip",
            model_name=model,
            scheme=scheme,
            # the params this stage lists in dvc.yaml: the manifest records exactly what built it
            params={k: p[k] for k in ("model", "convert", "quant", "nf4", "package")},
            metrics=read_json_object(args.metrics, "metrics"),
            num_ctx=pkg["num_ctx"],
            extra_parameters={"temperature": pkg["temperature"]},
            unknown_template=pkg["unknown_template"],
            git_commit=commit_label(provenance["code"]),
            provenance=provenance,
        )


if __name__ == "__main__":
    run("package", main)
