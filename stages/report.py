"""Stage report: the run's metrics (base and variant) -> reports/summary.md (size, quality and speed
with llama.cpp's error bars), the rows `dvc plots` draws, and metrics/headline.json (the few numbers
`dvc exp show` lists). Across runs: `pocketquant compare`."""

from __future__ import annotations

import argparse

from common import load_params, run

from pocketquant.report import write_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", required=True, help="the base model's metrics JSON")
    ap.add_argument("--variant", required=True, help="the variant's metrics JSON")
    ap.add_argument("--summary", required=True, help="markdown summary to write")
    ap.add_argument("--plots", required=True, help="plot rows JSON to write")
    ap.add_argument("--headline", required=True, help="headline metrics JSON to write")
    args = ap.parse_args()
    write_report(
        args.base,
        args.variant,
        params=load_params(),
        summary_out=args.summary,
        plots_out=args.plots,
        headline_out=args.headline,
    )


if __name__ == "__main__":
    run("report", main)
