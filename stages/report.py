"""Stage report: metrics JSON files -> reports/summary.md (size and quality tables) and the rows
that `dvc plots` draws (size vs PPL, size vs KLD)."""

from __future__ import annotations

import argparse

from common import run

from pocketquant.report import write_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("metrics", nargs="+", help="metrics JSON files, one per variant")
    ap.add_argument("--summary", required=True, help="markdown summary to write")
    ap.add_argument("--plots", required=True, help="plot rows JSON to write")
    args = ap.parse_args()
    write_report(args.metrics, args.summary, args.plots)


if __name__ == "__main__":
    run("report", main)
