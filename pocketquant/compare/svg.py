"""Scatter charts as inline SVG, drawn here (no chart library, nothing loaded from anywhere): every
point labelled with its variant, error bars, a tooltip (<title>) per point, and the Pareto front
(the variants that no other variant beats on both axes) marked and joined."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 720, 420
LEFT, RIGHT, TOP, BOTTOM = 72, 150, 40, 56  # margins; the right one leaves room for labels
CHAR_W, LINE_H = 6.6, 13.0  # label metrics of the 11px sans-serif used, for overlap avoidance
SERIES_COLORS = ("#1f5fa8", "#c2571a", "#2e8b57", "#8a3ea8")


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    y_err: float | None = None
    series: str = ""  # points of one series share a colour and marker
    hollow: bool = False  # the base model: a reference point, not a candidate
    tooltip: str = ""


def pareto_front(points: list[Point]) -> list[Point]:
    """Points no other point beats with x <= and y <= (one of them strictly): smaller and better."""
    front = []
    for p in points:
        dominated = any(q is not p and q.x <= p.x and q.y <= p.y and (q.x < p.x or q.y < p.y) for q in points)
        if not dominated:
            front.append(p)
    return sorted(front, key=lambda p: (p.x, p.y))


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if span / (m * mag) <= n)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _fmt_tick(v: float) -> str:
    return f"{v:.6g}"


def _domain(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or (abs(hi) * 0.1 or 1.0)
    return lo - pad, hi + pad


def scatter_svg(
    points: list[Point],
    *,
    title: str,
    x_label: str,
    y_label: str,
    pareto: bool,
    chart_id: str,
) -> str:
    """One chart. With `pareto`, lower x and lower y are both better and the front is marked."""
    if not points:
        return f'<svg id="{chart_id}" role="img"><title>{escape(title)}: nothing to plot</title></svg>'
    xs = [p.x for p in points]
    ys = [v for p in points for v in (p.y - (p.y_err or 0), p.y + (p.y_err or 0))]
    x0, x1 = _domain(xs)
    y0, y1 = _domain(ys)
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return TOP + (1 - (y - y0) / (y1 - y0)) * ph

    out = [
        f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text class="title" x="{LEFT}" y="22">{escape(title)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>',
    ]
    for t in nice_ticks(x0, x1):
        X = sx(t)
        out.append(f'<line x1="{X:.1f}" y1="{TOP}" x2="{X:.1f}" y2="{TOP + ph}" stroke="#eee"/>')
        out.append(
            f'<text class="tick" x="{X:.1f}" y="{TOP + ph + 16}" text-anchor="middle">{_fmt_tick(t)}</text>'
        )
    for t in nice_ticks(y0, y1):
        Y = sy(t)
        out.append(f'<line x1="{LEFT}" y1="{Y:.1f}" x2="{LEFT + pw}" y2="{Y:.1f}" stroke="#eee"/>')
        out.append(
            f'<text class="tick" x="{LEFT - 6}" y="{Y + 4:.1f}" text-anchor="end">{_fmt_tick(t)}</text>'
        )
    out.append(
        f'<text class="axis" x="{LEFT + pw / 2:.1f}" y="{HEIGHT - 14}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    out.append(
        f'<text class="axis" transform="translate(16 {TOP + ph / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    front = pareto_front(points) if pareto else []
    if len(front) > 1:
        path = " ".join(f"{'M' if i == 0 else 'L'}{sx(p.x):.1f},{sy(p.y):.1f}" for i, p in enumerate(front))
        out.append(f'<path class="pareto" d="{path}" fill="none" stroke="#d33" stroke-dasharray="5 3"/>')
    series = sorted({p.series for p in points})
    color = {s: SERIES_COLORS[i % len(SERIES_COLORS)] for i, s in enumerate(series)}
    placed: list[tuple[float, float, float, float]] = []
    for p in sorted(points, key=lambda p: (p.x, p.y, p.label)):
        X, Y = sx(p.x), sy(p.y)
        c = color[p.series]
        on_front = p in front
        tip = p.tooltip or f"{p.label}: x {p.x:.4g}, y {p.y:.4g}"
        out.append(f'<g class="point{" front" if on_front else ""}" data-label="{escape(p.label)}">')
        out.append(f"<title>{escape(tip)}</title>")
        if p.y_err and math.isfinite(p.y_err):
            ya, yb = sy(p.y - p.y_err), sy(p.y + p.y_err)
            out.append(
                f'<line class="errbar" x1="{X:.1f}" y1="{ya:.1f}" x2="{X:.1f}" y2="{yb:.1f}" stroke="{c}"/>'
            )
            for yy in (ya, yb):
                out.append(
                    f'<line x1="{X - 4:.1f}" y1="{yy:.1f}" x2="{X + 4:.1f}" y2="{yy:.1f}" stroke="{c}"/>'
                )
        fill = "white" if p.hollow else c
        ring = ' stroke-width="2.5"' if on_front else ""
        out.append(
            f'<circle cx="{X:.1f}" cy="{Y:.1f}" r="{5 if on_front else 4}" fill="{fill}" stroke="{c}"{ring}/>'
        )
        lx, ly = _label_position(X, Y, p.label, placed)
        out.append(f'<text class="label" x="{lx:.1f}" y="{ly:.1f}">{escape(p.label)}</text>')
        out.append("</g>")
    legend_y = TOP + 4
    lx = LEFT + pw + 12
    if len(series) > 1 or series != [""]:
        for s in series:
            legend_y += 16
            out.append(f'<circle cx="{lx + 5}" cy="{legend_y - 4}" r="4" fill="{color[s]}"/>')
            out.append(f'<text class="legend" x="{lx + 14}" y="{legend_y}">{escape(s)}</text>')
    if pareto:
        legend_y += 18
        out.append(
            f'<line x1="{lx}" y1="{legend_y - 4}" x2="{lx + 12}" y2="{legend_y - 4}" stroke="#d33" '
            'stroke-dasharray="5 3"/>'
        )
        out.append(f'<text class="legend" x="{lx + 16}" y="{legend_y}">Pareto front</text>')
    if any(p.hollow for p in points):
        legend_y += 16
        out.append(f'<circle cx="{lx + 5}" cy="{legend_y - 4}" r="4" fill="white" stroke="#555"/>')
        out.append(f'<text class="legend" x="{lx + 14}" y="{legend_y}">base model</text>')
    out.append("</svg>")
    return "\n".join(out)


def _label_position(
    x: float, y: float, label: str, placed: list[tuple[float, float, float, float]]
) -> tuple[float, float]:
    """Right of the point, moved down (then up) in line steps until it overlaps no earlier label."""
    w = CHAR_W * len(label)
    for dy in (4, 4 + LINE_H, 4 - LINE_H, 4 + 2 * LINE_H, 4 - 2 * LINE_H, 4 + 3 * LINE_H, 4 - 3 * LINE_H):
        box = (x + 7, y + dy - LINE_H + 3, x + 7 + w, y + dy + 3)
        if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
            placed.append(box)
            return box[0], y + dy
    placed.append((x + 7, y + 1, x + 7 + w, y + 4 + LINE_H))
    return x + 7, y + 4
