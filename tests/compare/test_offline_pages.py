"""The offline pages in a real headless browser (Debian's chromium, when installed): the
`pocketquant compare --html` page and a `dvc plots` page rendered through the offline template show
their charts and every variant's label with no network."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .test_compare import check_page, compare_runs, sweep_runs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def dump_dom(page: Path) -> str:
    """The DOM after scripts ran (chromium --dump-dom; no network needed or used)."""
    if CHROMIUM is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    p = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def test_offline_dvc_plots_template_renders_labelled_svg(tmp_path):
    pytest.importorskip("vl_convert", reason="vl-convert-python bundles vega for the offline template")
    from dvc_render import VegaRenderer, render_html

    from pocketquant.compare.dvc_template import write_offline_template

    template = write_offline_template(tmp_path / "offline.html")
    text = template.read_text(encoding="utf-8")
    assert "{plot_divs}" in text and "{scripts}" not in text and "cdn.jsdelivr" not in text
    rows = [
        {"variant": v, "size_gib": s, "ppl": p, "rev": v}
        for v, s, p in (("q4_k_m", 0.098, 14.0), ("q8_0", 0.135, 13.1), ("nf4", 0.107, 15.2))
    ]
    spec = {
        "template": str(Path(__file__).resolve().parents[2] / ".dvc" / "plots" / "labelled_scatter.json"),
        "x": "size_gib",
        "y": "ppl",
        "title": "Size vs perplexity",
        "x_label": "size",
        "y_label": "PPL",
    }
    page = render_html(
        [VegaRenderer(rows, "size_vs_ppl", **spec)],
        tmp_path / "plots" / "index.html",
        html_template=str(template),
    )
    html = Path(page).read_text(encoding="utf-8")
    assert "<script src=" not in html  # DVC's CDN tags stayed out
    dom = dump_dom(Path(page))
    assert dom.count("<svg") >= 1
    for label in ("q4_k_m", "q8_0", "nf4", "Size vs perplexity"):
        assert f">{label}</text>" in dom, label


def test_compare_page_in_a_browser(tmp_path):
    c = compare_runs(sweep_runs())
    page = c.write_html(tmp_path / "compare.html")
    check_page(page.read_text(encoding="utf-8"), [r.label for r in c.rows])
    dom = dump_dom(page)
    assert dom.count("<svg") == 3 and dom.count('<tr class="variant">') == 5
    for r in c.rows:
        assert f">{r.label}</text>" in dom
