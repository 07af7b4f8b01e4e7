"""Stage calibrate: the importance matrix for `quant.imatrix=true` (llama.cpp's imatrix GGUF).

The base HF checkpoint runs over the calibration text of params `calib` in transformers; the mean
squared activation of every linear layer's input channels goes to <out>/imatrix.gguf. With
quant.imatrix=false nothing is computed and <out> holds only DISABLED.txt, whose bytes never
change, so the quantize stage that depends on <out> does not re-run for calib changes it ignores.
"""

from __future__ import annotations

import argparse

from common import load_params, run, threads

from pocketquant.atomic import atomic_path
from pocketquant.evaluate.corpus import load_corpus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="base HF checkpoint directory (acquire's output)")
    ap.add_argument("--out", required=True, help="directory to write (imatrix.gguf)")
    args = ap.parse_args()
    p = load_params()
    c = p["calib"]
    with atomic_path(args.out, directory=True) as tmp:
        if not p["quant"]["imatrix"]:
            (tmp / "DISABLED.txt").write_text(
                "quant.imatrix is false: no importance matrix\n", encoding="utf-8"
            )
            return
        from pocketquant.calibrate import calibrate

        corpus = load_corpus(c["corpus"], c["corpus_path"])
        # Evaluation reads its corpus from the start; calibration skips that part so the two never
        # share text when they use the same corpus (calib.skip_fraction).
        text = corpus.text[int(len(corpus.text) * c["skip_fraction"]) :]
        calibrate(
            args.model,
            tmp / "imatrix.gguf",
            text=text,
            dataset=f"{corpus.name}[{c['skip_fraction']}:]",
            n_ctx=c["n_ctx"],
            n_chunks=c["chunks"],
            threads=threads(c["threads"]),
        )


if __name__ == "__main__":
    run("calibrate", main)
