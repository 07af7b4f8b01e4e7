"""The report stage: one run's metrics (the base and the variant) -> reports/summary.md, the plot rows
`dvc plots` draws, and the small flat headline metrics file `dvc exp show` lists.

The summary uses the same rows and columns as `pocketquant compare` (pocketquant/compare), which is
what compares the variants of many runs; this stage sees one run only.

The headline file is the only DVC `metrics:` file of the pipeline, so `dvc exp show` stays narrow:
a handful of short numeric keys (HEADLINE_KEYS). Everything else stays in metrics/*.json (plain
git-tracked outputs) and is what `pocketquant compare` reads.
"""

from __future__ import annotations

import os

from pocketquant.atomic import atomic_path
from pocketquant.compare.rows import Row, Run, rows_from_runs
from pocketquant.compare.table import markdown
from pocketquant.evaluate.metrics import read_metrics, write_json
from pocketquant.evaluate.stats import Z95, PairedDifference

PathLike = str | os.PathLike[str]

# Headline keys (short: they are `dvc exp show` column titles) -> how each is read from a Row.
HEADLINE_KEYS = {
    "gib": lambda r: r.size_gib,
    "ppl": lambda r: r.ppl and r.ppl.value,
    "ppl_err": lambda r: r.ppl and r.ppl.err,
    "dppl_pct": lambda r: r.delta_ppl_pct and r.delta_ppl_pct.value,
    "kld": lambda r: r.kld and r.kld.value,
    "top1_pct": lambda r: r.top1_pct and r.top1_pct.value,
    "tok_s": lambda r: r.speed.get("tg_tokens_per_s"),
}
HEADLINE_DIGITS = 4  # significant digits: enough to tell variants apart, narrow columns


def _round(value: float | None) -> float | None:
    if value is None:
        return None
    return float(f"{value:.{HEADLINE_DIGITS}g}")


def headline(row: Row) -> dict:
    """The flat headline of one variant (keys of HEADLINE_KEYS whose value was measured)."""
    out = {}
    for key, get in HEADLINE_KEYS.items():
        value = get(row)
        if value is not None:
            out[key] = _round(float(value))
    return out


def versus_base(variant: Row, base: Row | None) -> str | None:
    """Whether the variant's perplexity differs from the base model's on the same tokens: from
    ln(PPL ratio) +/- its paired error (llama.cpp's), with a 95% interval."""
    q = variant.quality or {}
    if base is None or "ln_ppl_ratio_err" not in q:
        return None
    m, e = float(q["ln_ppl_ratio"]), float(q["ln_ppl_ratio_err"])
    d = PairedDifference(m, e, m - Z95 * e, m + Z95 * e, int(q["tokens_scored"]))
    return (
        f"{variant.label} vs the base model ({q['tokens_scored']} tokens, paired): ln(PPL ratio) "
        f"{m:+.5f} [{d.low:+.5f}, {d.high:+.5f}]: {d.verdict(variant.label, 'the base model', 'perplexity')}."
    )


def plot_rows(rows: list[Row]) -> list[dict]:
    """One row per variant for `dvc plots` (x: size_gib; y: ppl or kld_mean; labels: variant)."""
    out = []
    for r in rows:
        out.append(
            {
                "variant": r.label,
                "size_gib": r.size_gib,
                "bpw": r.size["bpw"],
                "ppl": r.ppl and r.ppl.value,
                "ppl_err": r.ppl and r.ppl.err,
                "kld_mean": r.kld and r.kld.value,
                "kld_err": r.kld and r.kld.err,
                "top1_agreement_pct": r.top1_pct and r.top1_pct.value,
                "tg_tokens_per_s": r.speed.get("tg_tokens_per_s"),
            }
        )
    return out


def write_report(
    base: PathLike,
    variant: PathLike,
    *,
    params: dict | None,
    summary_out: PathLike,
    plots_out: PathLike,
    headline_out: PathLike,
) -> str:
    """Read the run's two metrics files (both must exist and parse) and write the three outputs."""
    run = Run("this run", read_metrics(variant), read_metrics(base), params)
    rows = rows_from_runs([run])
    variant_row = next(r for r in rows if not r.is_base)
    text = markdown(rows, [], [], title="pocketquant summary", show_sources=False)
    verdict = versus_base(variant_row, next((r for r in rows if r.is_base), None))
    if verdict:
        text += f"\n{verdict}\n"
    write_json(plots_out, plot_rows([variant_row]))
    write_json(headline_out, headline(variant_row))
    with atomic_path(summary_out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return text
