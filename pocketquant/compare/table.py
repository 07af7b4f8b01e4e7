"""The comparison table (Markdown or CSV), the notes on what is not comparable, and the paired
comparisons that say whether a difference is real."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass

from pocketquant.compare.rows import Row
from pocketquant.evaluate.stats import PairedDifference, paired_difference


def _num(value: float | None, spec: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _pm(e, spec: str, err_spec: str | None = None) -> str:  # noqa: ANN001 - Estimate | None
    if e is None:
        return "–"
    if math.isnan(e.err):
        return format(e.value, spec)
    return f"{format(e.value, spec)} ± {format(e.err, err_spec or spec)}"


@dataclass(frozen=True)
class Column:
    title: str
    markdown: Callable[[Row], str]
    csv: Callable[[Row], object]  # plain values for spreadsheets (errors in their own columns)
    align: str = "right"


def _eval_tag(r: Row) -> str:
    """Where the quality numbers come from, short: corpus chunks×n_ctx."""
    corpus, n_ctx, chunks, _ = r.setting
    return "–" if n_ctx is None else f"{corpus} {chunks}×{n_ctx}"


def _mc(r: Row) -> str:
    return "–" if r.mc is None else f"{r.mc['accuracy_pct']:.1f}% ({r.mc['n_questions']})"


def _est(getter: Callable[[Row], object], part: str) -> Callable[[Row], object]:
    def value(r: Row) -> object:
        e = getter(r)
        return None if e is None else getattr(e, part)

    return value


COLUMNS = [
    Column("variant", lambda r: r.label, lambda r: r.label, "left"),
    Column("model", lambda r: r.model or "–", lambda r: r.model, "left"),
    Column("scheme", lambda r: r.scheme, lambda r: r.scheme, "left"),
    Column("made", lambda r: r.made or "plain", lambda r: r.made or "plain", "left"),
    Column("format", lambda r: str(r.size.get("format", "–")), lambda r: r.size.get("format"), "left"),
    Column("eval", lambda r: _eval_tag(r), lambda r: _eval_tag(r), "left"),
    Column("size GB", lambda r: f"{r.size_gb:.3f}", lambda r: r.size_gb),
    Column("size GiB", lambda r: f"{r.size_gib:.3f}", lambda r: r.size_gib),
    Column("bits/weight", lambda r: f"{r.size['bpw']:.2f}", lambda r: r.size["bpw"]),
    Column(
        "vs BF16",
        lambda r: f"{-r.size['reduction_vs_bf16_pct']:+.1f}%",
        lambda r: -r.size["reduction_vs_bf16_pct"],
    ),
    Column("PPL", lambda r: _pm(r.ppl, ".3f"), _est(lambda r: r.ppl, "value")),
    Column(
        "ΔPPL",
        lambda r: _pm(r.delta_ppl_pct, "+.2f", ".2f") + ("%" if r.quality else ""),
        _est(lambda r: r.delta_ppl_pct, "value"),
    ),
    Column("KLD mean", lambda r: _pm(r.kld, ".4f"), _est(lambda r: r.kld, "value")),
    Column("KLD p99", lambda r: _num(r.kld_p99, ".3f"), lambda r: r.kld_p99),
    Column(
        "same top-1",
        lambda r: _pm(r.top1_pct, ".1f") + ("%" if r.quality else ""),
        _est(lambda r: r.top1_pct, "value"),
    ),
    Column("MC acc", _mc, lambda r: None if r.mc is None else r.mc["accuracy_pct"]),
    Column(
        "pp tok/s",
        lambda r: _num(r.speed.get("pp_tokens_per_s"), ".1f"),
        lambda r: r.speed.get("pp_tokens_per_s"),
    ),
    Column(
        "gen tok/s",
        lambda r: _num(r.speed.get("tg_tokens_per_s"), ".1f"),
        lambda r: r.speed.get("tg_tokens_per_s"),
    ),
    Column("TTFT s", lambda r: _num(r.speed.get("ttft_s"), ".3f"), lambda r: r.speed.get("ttft_s")),
    Column(
        "peak RSS MiB",
        lambda r: _num(r.speed.get("peak_rss_mib"), ".0f"),
        lambda r: r.speed.get("peak_rss_mib"),
    ),
]

# CSV carries each error in a column of its own, after the column it belongs to.
CSV_ERRORS = {
    "PPL": ("PPL err", _est(lambda r: r.ppl, "err")),
    "ΔPPL": ("ΔPPL err", _est(lambda r: r.delta_ppl_pct, "err")),
    "KLD mean": ("KLD mean err", _est(lambda r: r.kld, "err")),
    "same top-1": ("same top-1 err", _est(lambda r: r.top1_pct, "err")),
}


def markdown_table(rows: list[Row]) -> list[str]:
    head = "| " + " | ".join(c.title for c in COLUMNS) + " |"
    rule = "|" + "|".join("---" if c.align == "left" else "---:" for c in COLUMNS) + "|"
    body = ["| " + " | ".join(c.markdown(r) for c in COLUMNS) + " |" for r in rows]
    return [head, rule, *body]


def csv_text(rows: list[Row]) -> str:
    """One line per row; numbers unformatted, errors in their own columns, sources last."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = []
    for c in COLUMNS:
        header.append(c.title)
        if c.title in CSV_ERRORS:
            header.append(CSV_ERRORS[c.title][0])
    w.writerow([*header, "corpus", "n_ctx", "chunks", "tokens scored", "engine", "sources"])
    for r in rows:
        values: list[object] = []
        for c in COLUMNS:
            values.append(c.csv(r))
            if c.title in CSV_ERRORS:
                values.append(CSV_ERRORS[c.title][1](r))
        corpus, n_ctx, chunks, tokens = r.setting
        engine = (r.quality or {}).get("engine")
        w.writerow(
            ["" if v is None else v for v in [*values, corpus, n_ctx, chunks, tokens, engine]]
            + [" ".join(r.sources)]
        )
    return buf.getvalue()


def setting_text(setting: tuple) -> str:
    corpus, n_ctx, chunks, tokens = setting
    if n_ctx is None:
        return "no quality measured"
    return f"corpus {corpus}, n_ctx {n_ctx}, chunks {chunks} ({tokens} tokens)"


def notes(rows: list[Row]) -> list[str]:
    """Plain statements of what differs between rows and so is not comparable (never a refusal)."""
    out = []
    settings: dict[tuple, list[str]] = {}
    for r in rows:
        if r.quality is not None:
            settings.setdefault(r.setting, []).append(r.label)
    if len(settings) > 1:
        out.append(
            "Rows were measured on different evaluation settings; PPL and KLD compare only within one: "
            + "; ".join(f"{setting_text(s)}: {', '.join(labels)}" for s, labels in settings.items())
            + "."
        )
    engines: dict[str, list[str]] = {}
    for r in rows:
        if r.speed:
            engines.setdefault(str(r.speed.get("engine")), []).append(r.label)
    if len(engines) > 1:
        out.append(
            "Speed was measured in different engines (tokens/s compare only within one): "
            + "; ".join(f"{e}: {', '.join(labels)}" for e, labels in engines.items())
            + "."
        )
    bench = {(r.speed.get("threads"), r.speed.get("n_prompt"), r.speed.get("n_gen")) for r in rows if r.speed}
    if len(bench) > 1:
        out.append(
            "Speed was measured with different settings (threads, prompt tokens, generated tokens): "
            + ", ".join(str(b) for b in sorted(bench, key=str))
            + "."
        )
    models = {r.model for r in rows if r.model}
    if len(models) > 1:
        out.append(f"Rows come from different models: {', '.join(sorted(models))}.")
    return out


@dataclass(frozen=True)
class Pairing:
    a: Row
    b: Row
    nll: PairedDifference  # mean NLL of a minus b (= ln PPL(a)/PPL(b))
    kld: PairedDifference  # mean KLD of a minus b

    def lines(self) -> list[str]:
        a, b = self.a.label, self.b.label
        return [
            f"- **{a} vs {b}** ({self.nll.n} tokens): Δ mean NLL {self.nll.mean:+.5f} "
            f"[{self.nll.low:+.5f}, {self.nll.high:+.5f}] (PPL ratio {math.exp(self.nll.mean):.4f}): "
            f"{self.nll.verdict(a, b, 'perplexity')}; Δ mean KLD {self.kld.mean:+.5f} "
            f"[{self.kld.low:+.5f}, {self.kld.high:+.5f}]: {self.kld.verdict(a, b, 'KL divergence')}."
        ]


def pair(a: Row, b: Row) -> Pairing | None:
    """Paired comparison on the same tokens, or None when either has no per-token scores or they
    were scored on different tokens."""
    if a.tokens is None or b.tokens is None or a.tokens.tokens_sha256 != b.tokens.tokens_sha256:
        return None
    return Pairing(
        a, b, paired_difference(a.tokens.nll, b.tokens.nll), paired_difference(a.tokens.kld, b.tokens.kld)
    )


def default_pairs(rows: list[Row]) -> list[tuple[Row, Row]]:
    """How-it-was-made pairs: S with S-imatrix, S with S-from-nf4 (same model, same tokens)."""
    out = []
    for r in rows:
        if r.is_base or not r.made:
            continue
        for plain in rows:
            if (
                not plain.is_base
                and not plain.made
                and plain.scheme == r.scheme
                and plain.model == r.model
                and plain.setting == r.setting
            ):
                out.append((r, plain))
    return out


def find_row(rows: list[Row], label: str) -> Row:
    from pocketquant.errors import EvaluationError

    hits = [r for r in rows if r.label == label]
    if not hits:
        raise EvaluationError(f"--pair: no row named {label!r} (rows: {', '.join(r.label for r in rows)})")
    return hits[0]


def pairing_lines(pairs: list[tuple[Row, Row]]) -> list[str]:
    out: list[str] = []
    for a, b in pairs:
        p = pair(a, b)
        if p is None:
            out.append(
                f"- **{a.label} vs {b.label}**: no paired comparison (per-token scores missing or "
                "measured on different tokens)."
            )
        else:
            out += p.lines()
    return out


def markdown(
    rows: list[Row],
    pairs: list[tuple[Row, Row]],
    skipped: list[str],
    *,
    title: str = "pocketquant compare",
    show_sources: bool = True,
) -> str:
    lines = [f"# {title}", ""]
    settings = {r.setting for r in rows if r.quality is not None}
    if len(settings) == 1:
        q = next(r.quality for r in rows if r.quality is not None)
        lines += [
            f"Quality on {setting_text(next(iter(settings)))}; KLD against the base model "
            f"({q.get('base_engine', '?')}). ± is llama.cpp's standard error. ΔPPL is vs the base.",
            "",
        ]
    lines += markdown_table(rows)
    note = notes(rows)
    if note:
        lines += ["", *(f"Note: {n}" for n in note)]
    if pairs:
        lines += ["", "## Paired comparisons (same tokens, 95% interval)", "", *pairing_lines(pairs)]
    if show_sources:
        lines += ["", "Sources: " + "; ".join(f"{r.label}: {', '.join(r.sources)}" for r in rows)]
    if skipped:
        lines += ["", *(f"Skipped: {s}" for s in skipped)]
    return "\n".join(lines) + "\n"
