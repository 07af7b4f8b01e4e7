"""`pocketquant compare`: one row per variant across experiments, revisions or metrics files, with
llama.cpp's error bars, paired comparisons on the same tokens, and an offline HTML page.

    runs (sources.py) -> rows (rows.py) -> Markdown / CSV (table.py), HTML + SVG (html.py, svg.py)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pocketquant.atomic import atomic_path
from pocketquant.compare.html import html_page
from pocketquant.compare.rows import Row, Run, rows_from_runs
from pocketquant.compare.sources import VARIANT_METRICS, collect_runs
from pocketquant.compare.table import csv_text, default_pairs, find_row, markdown
from pocketquant.errors import EvaluationError

__all__ = ["Comparison", "Row", "Run", "compare"]


@dataclass
class Comparison:
    rows: list[Row]
    pairs: list[tuple[Row, Row]]
    skipped: list[str]  # sources without results (queued, failed, no metrics), said plainly

    def markdown(self) -> str:
        return markdown(self.rows, self.pairs, self.skipped)

    def csv(self) -> str:
        return csv_text(self.rows)

    def html(self) -> str:
        return html_page(self.rows, self.pairs, self.skipped)

    def write_html(self, path: str | os.PathLike[str]) -> Path:
        with atomic_path(path) as tmp:
            tmp.write_text(self.html(), encoding="utf-8")
        return Path(path)


def compare(
    sources: list[str],
    *,
    repo: str | os.PathLike[str] = ".",
    include_base: bool = True,
    pairs: list[tuple[str, str]] | None = None,
) -> Comparison:
    """Rows of every run in `sources` (see sources.collect_runs; none = the workspace and every
    experiment of its baseline). `pairs`: (label, label) to compare on the same tokens, besides the
    plain/imatrix and plain/from-NF4 pairs found by themselves."""
    runs, skipped = collect_runs(sources, Path(repo))
    rows = rows_from_runs(runs, include_base=include_base)
    if not rows:
        why = f" ({'; '.join(skipped)})" if skipped else ""
        raise EvaluationError(f"nothing to compare: no run with {VARIANT_METRICS} found{why}")
    chosen = default_pairs(rows) + [(find_row(rows, a), find_row(rows, b)) for a, b in pairs or []]
    return Comparison(rows, chosen, skipped)
