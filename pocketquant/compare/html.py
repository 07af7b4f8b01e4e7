"""One self-contained HTML page: the comparison table, notes, paired comparisons and three charts
(size vs PPL, size vs KLD, tokens/s vs size) as inline SVG. No script, font, stylesheet or image is
loaded from anywhere: the page opens the same offline."""

from __future__ import annotations

from html import escape

from pocketquant.compare.rows import Row
from pocketquant.compare.svg import Point, scatter_svg
from pocketquant.compare.table import COLUMNS, notes, pairing_lines, setting_text

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 12px 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; white-space: nowrap; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.base td { color: #666; font-style: italic; }
.chart { display: block; margin: 16px 0; max-width: 100%; height: auto; }
.chart text { font: 11px sans-serif; fill: #333; }
.chart text.title { font: bold 14px sans-serif; }
.chart text.axis { font: 12px sans-serif; }
.scroll { overflow-x: auto; }
.note { background: #fff6dd; padding: 6px 10px; border-left: 4px solid #e0b000; }
"""


def _tooltip(r: Row) -> str:
    parts = [r.label, f"{r.size_gib:.3f} GiB", f"{r.size['bpw']:.2f} bpw"]
    if r.ppl is not None:
        parts.append(f"PPL {r.ppl.value:.3f} ± {r.ppl.err:.3f}")
    if r.kld is not None:
        parts.append(f"KLD {r.kld.value:.4f} ± {r.kld.err:.4f}")
    if r.speed.get("tg_tokens_per_s") is not None:
        parts.append(f"gen {r.speed['tg_tokens_per_s']:.1f} tok/s")
    return ", ".join(parts)


def charts(rows: list[Row]) -> list[str]:
    measured = [r for r in rows if r.quality is not None]
    ppl = [
        Point(r.size_gib, r.ppl.value, r.label, r.ppl.err, hollow=r.is_base, tooltip=_tooltip(r))
        for r in measured
    ]
    kld = [
        Point(r.size_gib, r.kld.value, r.label, r.kld.err, hollow=r.is_base, tooltip=_tooltip(r))
        for r in measured
    ]
    speed = [
        Point(r.size_gib, float(r.speed[key]), r.label, series=series, hollow=r.is_base, tooltip=_tooltip(r))
        for r in rows
        for key, series in (("tg_tokens_per_s", "generation"), ("pp_tokens_per_s", "prompt"))
        if r.speed.get(key) is not None
    ]
    return [
        scatter_svg(
            ppl,
            title="Size vs perplexity",
            x_label="size (GiB)",
            y_label="perplexity (± std. error)",
            pareto=True,
            chart_id="size-ppl",
        ),
        scatter_svg(
            kld,
            title="Size vs KL divergence from the base model",
            x_label="size (GiB)",
            y_label="mean KLD (± std. error)",
            pareto=True,
            chart_id="size-kld",
        ),
        scatter_svg(
            speed,
            title="Tokens per second vs size",
            x_label="size (GiB)",
            y_label="tokens/s",
            pareto=False,
            chart_id="speed-size",
        ),
    ]


def _table(rows: list[Row]) -> list[str]:
    out = [
        '<div class="scroll"><table id="variants">',
        "<thead><tr>" + "".join(f"<th>{escape(c.title)}</th>" for c in COLUMNS) + "</tr></thead>",
        "<tbody>",
    ]
    for r in rows:
        cells = "".join(
            f'<td class="{"txt" if c.align == "left" else "num"}">{escape(c.markdown(r))}</td>'
            for c in COLUMNS
        )
        out.append(f'<tr class="{"base" if r.is_base else "variant"}">{cells}</tr>')
    out += ["</tbody>", "</table></div>"]
    return out


def _inline_markdown(text: str) -> str:
    """The pairing lines' **bold** and leading "- " as HTML."""
    text = escape(text.removeprefix("- "))
    parts = text.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def html_page(rows: list[Row], pairs: list, skipped: list[str]) -> str:  # noqa: ANN001
    settings = {r.setting for r in rows if r.quality is not None}
    head = (
        f"Quality on {escape(setting_text(next(iter(settings))))}. " if len(settings) == 1 else ""
    ) + "± is llama.cpp's standard error; ΔPPL is against the base model."
    body = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<title>pocketquant compare</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        "<h1>pocketquant compare</h1>",
        f"<p>{head}</p>",
        *_table(rows),
    ]
    body += [f'<p class="note">{escape(n)}</p>' for n in notes(rows)]
    if pairs:
        body += ["<h2>Paired comparisons (same tokens, 95% interval)</h2>", "<ul>"]
        body += [f"<li>{_inline_markdown(line)}</li>" for line in pairing_lines(pairs)]
        body += ["</ul>"]
    body += [
        "<h2>Charts</h2>",
        "<p>Lower-left is better in the first two: the Pareto front joins the variants that no other "
        "variant beats on both size and quality. Hover a point for its numbers.</p>",
        *charts(rows),
        "<h2>Sources</h2>",
        "<ul>",
        *(f"<li>{escape(r.label)}: {escape(', '.join(r.sources))}</li>" for r in rows),
        "</ul>",
    ]
    if skipped:
        body += ["<h2>Skipped</h2>", "<ul>", *(f"<li>{escape(s)}</li>" for s in skipped), "</ul>"]
    body += ["</body>", "</html>", ""]
    return "\n".join(body)
