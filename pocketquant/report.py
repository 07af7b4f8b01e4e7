"""The report stage: metrics JSON files -> reports/summary.md (the seeds' two tables) and the plot
data `dvc plots` draws (size vs PPL, size vs KLD).

Table (a) size: variant, size GiB, bits per weight, reduction % vs the base model's BF16 size.
Table (b) quality: variant, PPL, ΔPPL % vs base, KLD mean / p99, top-1 agreement %, tokens/s.
Only the variants whose metrics files are given appear; rows sorted by size, largest first.
"""

from __future__ import annotations

import argparse
import os
import sys

from pocketquant.atomic import atomic_path
from pocketquant.evaluate.metrics import read_metrics, write_json

PathLike = str | os.PathLike[str]


def _fmt(value: object, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _rows(metrics: list[dict]) -> list[dict]:
    return sorted(metrics, key=lambda m: (-m["size"]["bytes"], m["variant"]))


def summary_markdown(metrics: list[dict]) -> str:
    rows = _rows(metrics)
    lines = [
        "# pocketquant summary",
        "",
        "## Size",
        "",
        "| variant | size (GiB) | bits/weight | reduction vs BF16 |",
        "|---|---:|---:|---:|",
    ]
    for m in rows:
        s = m["size"]
        lines.append(
            f"| {m['variant']} | {s['gib']:.3f} | {s['bpw']:.2f} | {s['reduction_vs_bf16_pct']:.2f}% |"
        )
    lines += ["", "## Quality", ""]
    quality = [m for m in rows if "quality" in m]
    if quality:
        q0 = quality[0]["quality"]
        lines += [
            f"Perplexity on corpus `{q0.get('corpus', '?')}`, n_ctx {q0['n_ctx']}, {q0['chunks']} chunks "
            f"({q0['tokens_scored']} tokens scored); KL divergence against the base model's distribution "
            f"(engine {q0.get('base_engine', '?')}). Each row's engine is the one it was measured in.",
            "",
            "| variant | engine | PPL | ΔPPL | KLD mean | KLD p99 | same top-1 | pp tok/s | gen tok/s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for m in quality:
            q, sp = m["quality"], m.get("speed", {})
            lines.append(
                f"| {m['variant']} | {q['engine']} | {q['ppl']:.4f} | {q['delta_ppl_pct']:+.2f}% "
                f"| {q['kld_mean']:.5f} | {q['kld_p99']:.4f} | {q['top1_agreement_pct']:.2f}% "
                f"| {_fmt(sp.get('pp_tokens_per_s'), '.1f')} | {_fmt(sp.get('tg_tokens_per_s'), '.1f')} |"
            )
    else:
        lines.append("No quality metrics yet.")
    mc = [m for m in rows if "mc" in m]
    if mc:
        lines += ["", "## Multiple choice", "", "| variant | accuracy | questions |", "|---|---:|---:|"]
        lines += [
            f"| {m['variant']} | {m['mc']['accuracy_pct']:.2f}% | {m['mc']['n_questions']} |" for m in mc
        ]
    return "\n".join(lines) + "\n"


def plot_rows(metrics: list[dict]) -> list[dict]:
    """One row per variant for `dvc plots` (x: size_gib; y: ppl or kld_mean)."""
    out = []
    for m in _rows(metrics):
        q = m.get("quality", {})
        out.append(
            {
                "variant": m["variant"],
                "size_gib": m["size"]["gib"],
                "bpw": m["size"]["bpw"],
                "ppl": q.get("ppl"),
                "delta_ppl_pct": q.get("delta_ppl_pct"),
                "kld_mean": q.get("kld_mean"),
                "kld_p99": q.get("kld_p99"),
                "top1_agreement_pct": q.get("top1_agreement_pct"),
            }
        )
    return out


def write_report(
    metrics_files: list[PathLike], summary_out: PathLike, plots_out: PathLike | None = None
) -> str:
    """Read metrics files (all must exist and parse), write summary.md and the plot rows JSON."""
    metrics = [read_metrics(p) for p in metrics_files]
    text = summary_markdown(metrics)
    if plots_out is not None:
        write_json(plots_out, plot_rows(metrics))
    with atomic_path(summary_out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Write reports/summary.md and plot data from metrics JSON files.")
    p.add_argument("metrics", nargs="+", help="metrics JSON files, one per variant")
    p.add_argument("--summary", default="reports/summary.md")
    p.add_argument("--plots", default="reports/plots/size_quality.json")
    a = p.parse_args(argv)
    from pocketquant.errors import PocketquantError

    try:
        write_report(a.metrics, a.summary, a.plots)
    except PocketquantError as exc:
        print(f"pocketquant.report: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
