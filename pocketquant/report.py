"""The report stage: metrics JSON files -> reports/summary.md (the seeds' two tables) and the plot
data `dvc plots` draws (size vs PPL, size vs KLD).

Table (a) size: variant, size GiB, bits per weight, reduction % vs the base model's BF16 size.
Table (b) quality: variant, PPL, ΔPPL % vs base, KLD mean / p99, top-1 agreement %, tokens/s.
Only the variants whose metrics files are given appear; rows sorted by size, largest first.

Comparisons (issue 5): a variant `S-imatrix` is compared with plain `S`, and `S-from-nf4` with the
direct GGUF `S`, when both were measured on the same evaluation setting (corpus, n_ctx, chunks).
One experiment's report holds a single variant, so `python -m pocketquant.report --compare` takes
the metrics of several experiments (metrics JSON files, or `dvc exp show --json` output) and writes
only the comparison tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pocketquant.atomic import atomic_path
from pocketquant.errors import EvaluationError
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
    pairs = comparisons(metrics)
    if pairs:
        lines += ["", *comparison_lines(pairs)]
    return "\n".join(lines) + "\n"


# Variant label suffixes the pipeline gives (stages/quantize.py): how a GGUF scheme was made.
COMPARED_SUFFIXES = {
    "-imatrix": "importance matrix vs plain",
    "-from-nf4": "NF4 -> GGUF chain vs direct GGUF",
}


def _setting(m: dict) -> tuple:
    q = m["quality"]
    return (q.get("corpus"), q["n_ctx"], q["chunks"])


def comparisons(metrics: list[dict]) -> list[dict]:
    """Pairs (plain S, S-imatrix) and (S, S-from-nf4) measured on the same evaluation setting, with
    the differences variant minus plain: KLD mean/p99, PPL (absolute and % of plain), top-1 points.
    Metrics without quality are ignored; the same label twice on one setting is an error."""
    by_key: dict[tuple, dict] = {}
    for m in metrics:
        if "quality" not in m:
            continue
        key = (m["variant"], _setting(m))
        if key in by_key and by_key[key] != m:
            raise EvaluationError(
                f"two different metrics for variant {m['variant']!r} on setting {_setting(m)}: "
                "compare one experiment per variant"
            )
        by_key[key] = m
    out = []
    for (label, setting), m in sorted(by_key.items(), key=lambda kv: (str(kv[0][1]), kv[0][0])):
        for suffix, kind in COMPARED_SUFFIXES.items():
            if not label.endswith(suffix) or (label[: -len(suffix)], setting) not in by_key:
                continue
            plain = by_key[(label[: -len(suffix)], setting)]
            q, p = m["quality"], plain["quality"]
            out.append(
                {
                    "kind": kind,
                    "plain": plain["variant"],
                    "variant": label,
                    "setting": {"corpus": setting[0], "n_ctx": setting[1], "chunks": setting[2]},
                    "tokens_scored": q.get("tokens_scored"),
                    "kld_mean": (p["kld_mean"], q["kld_mean"]),
                    "kld_p99": (p["kld_p99"], q["kld_p99"]),
                    "ppl": (p["ppl"], q["ppl"]),
                    "top1": (p["top1_agreement_pct"], q["top1_agreement_pct"]),
                    "delta_kld_mean": q["kld_mean"] - p["kld_mean"],
                    "delta_kld_mean_pct": 100.0 * (q["kld_mean"] / p["kld_mean"] - 1.0)
                    if p["kld_mean"]
                    else None,
                    "delta_kld_p99": q["kld_p99"] - p["kld_p99"],
                    "delta_ppl": q["ppl"] - p["ppl"],
                    "delta_ppl_pct": 100.0 * (q["ppl"] / p["ppl"] - 1.0),
                    "delta_top1_pts": q["top1_agreement_pct"] - p["top1_agreement_pct"],
                    "size_gib": (plain["size"]["gib"], m["size"]["gib"]),
                }
            )
    return out


def comparison_lines(pairs: list[dict]) -> list[str]:
    """Markdown: one table per comparison kind; negative ΔKLD/ΔPPL and positive Δtop-1 are better."""
    lines = ["## Comparisons", ""]
    for kind in COMPARED_SUFFIXES.values():
        rows = [c for c in pairs if c["kind"] == kind]
        if not rows:
            continue
        lines += [
            f"### {kind}",
            "",
            "Differences are variant minus plain on the same tokens (negative ΔKLD / ΔPPL and positive "
            "Δtop-1 mean the variant is closer to the base model).",
            "",
            "| plain | variant | eval setting | KLD mean | ΔKLD mean | ΔKLD p99 "
            "| PPL | ΔPPL | top-1 | Δtop-1 |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c in rows:
            st = c["setting"]
            lines.append(
                f"| {c['plain']} | {c['variant']} "
                f"| {st['corpus']}, n_ctx {st['n_ctx']}, {st['chunks']} chunks "
                f"| {c['kld_mean'][0]:.5f} → {c['kld_mean'][1]:.5f} "
                f"| {c['delta_kld_mean']:+.5f} ({_fmt(c['delta_kld_mean_pct'], '+.1f')}%) "
                f"| {c['delta_kld_p99']:+.4f} "
                f"| {c['ppl'][0]:.4f} → {c['ppl'][1]:.4f} "
                f"| {c['delta_ppl']:+.4f} ({c['delta_ppl_pct']:+.2f}%) "
                f"| {c['top1'][0]:.2f}% → {c['top1'][1]:.2f}% | {c['delta_top1_pts']:+.2f} pts |"
            )
        lines.append("")
    return lines[:-1] if lines[-1] == "" else lines


def _metrics_in(data: object, where: str) -> list[dict]:
    """Metrics dicts in a metrics file (one dict) or in `dvc exp show --json` output, where each
    revision's data.metrics maps a metrics path to {"data": {...}}; only variant metrics count
    (files whose data carries "variant" and "size"), the base model's rows are skipped."""
    if isinstance(data, dict) and "variant" in data and "size" in data:
        return [data]
    found: list[dict] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            mets = node.get("metrics")
            if isinstance(mets, dict):
                for key, entry in sorted(mets.items()):
                    d = entry.get("data") if isinstance(entry, dict) else None
                    if (
                        isinstance(d, dict)
                        and "variant" in d
                        and "size" in d
                        and Path(key).name != "base.json"
                    ):
                        found.append(d)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    if not found:
        raise EvaluationError(
            f"{where}: no pocketquant variant metrics in it (a metrics file or dvc exp show --json)"
        )
    return found


def read_compare_sources(paths: list[PathLike]) -> list[dict]:
    """Every variant's metrics from the given files, duplicates (same dict twice) dropped."""
    out: list[dict] = []
    for p in paths:
        try:
            data = json.loads(Path(p).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise EvaluationError(f"cannot read {p}: {exc}") from exc
        for m in _metrics_in(data, str(p)):
            if "quality" in m and not all(k in m["quality"] for k in ("kld_mean", "kld_p99", "ppl", "n_ctx")):
                raise EvaluationError(f"{p}: metrics of {m['variant']!r} lack quality keys")
            if m not in out:
                out.append(m)
    return out


def write_comparison(sources: list[PathLike], out: PathLike) -> str:
    """Comparison tables of the variants in `sources` -> markdown at `out` (atomically).
    EvaluationError when no pair (plain, -imatrix / -from-nf4) is found."""
    metrics = read_compare_sources(sources)
    pairs = comparisons(metrics)
    if not pairs:
        labels = sorted({m["variant"] for m in metrics})
        raise EvaluationError(
            f"no comparable pair among variants {labels}: "
            "need S with S-imatrix or S-from-nf4 on one eval setting"
        )
    text = "\n".join(["# pocketquant comparison", "", *comparison_lines(pairs)]) + "\n"
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return text


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
    p = argparse.ArgumentParser(
        description="Write reports/summary.md and plot data from metrics JSON files; with --compare, "
        "the imatrix / NF4-chain comparison tables across experiments."
    )
    p.add_argument(
        "metrics",
        nargs="+",
        help="metrics JSON files, one per variant (with --compare also `dvc exp show --json` output)",
    )
    p.add_argument("--summary", default="reports/summary.md")
    p.add_argument("--plots", default="reports/plots/size_quality.json")
    p.add_argument(
        "--compare",
        metavar="OUT.md",
        default=None,
        help="write only the comparison tables (S vs S-imatrix, S vs S-from-nf4) to OUT.md and print them",
    )
    a = p.parse_args(argv)
    from pocketquant.errors import PocketquantError

    try:
        if a.compare:
            print(write_comparison(a.metrics, a.compare), end="")
        else:
            write_report(a.metrics, a.summary, a.plots)
    except PocketquantError as exc:
        print(f"pocketquant.report: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
