"""Stage acquire: the model source in params `model` -> a full-precision HF checkpoint directory.
With `convert.backend=llamacpp` any architecture is accepted (llama.cpp's converter decides)."""

from __future__ import annotations

import argparse

from common import load_params, run

from pocketquant.models import ModelSource, acquire_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="HF checkpoint directory to write")
    args = ap.parse_args()
    params = load_params()
    m = params["model"]
    source = ModelSource.from_config(name=m["name"], path=m["path"], hf_id=m["hf_id"], revision=m["revision"])
    acquire_model(source, args.out, any_architecture=params["convert"].get("backend") == "llamacpp")


if __name__ == "__main__":
    run("acquire", main)
