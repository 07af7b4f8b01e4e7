"""An HTML template for `dvc plots show/diff` that works offline.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so it is blank without a network.
A template (`--html-template FILE`, or `dvc config plots.html_template`) without DVC's `{scripts}`
placeholder keeps those tags out; this one inlines the three libraries instead, as bundled by the
PyPI package vl-convert-python (`vl_convert.javascript_bundle()`), and makes vega-embed draw SVG
(text in the page: variant labels a reader can search and copy) without its action menu.
"""

from __future__ import annotations

import os
from pathlib import Path

from pocketquant.atomic import atomic_path
from pocketquant.errors import PocketquantError

# Wraps vegaEmbed (set on window by the bundle) so DVC's own per-plot calls draw SVG.
SVG_DEFAULTS = (
    "(function () { const embed = window.vegaEmbed;"
    " window.vegaEmbed = (el, spec, opts) => embed(el, spec, Object.assign({renderer: 'svg', actions: false},"
    " opts || {})); })();"
)

PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{{refresh_tag}}
<title>DVC plots (offline)</title>
<script>{bundle}</script>
<script>{svg_defaults}</script>
<style>table {{ border-spacing: 15px; }} body {{ font-family: sans-serif; }}</style>
</head>
<body>
{{plot_divs}}
</body>
</html>
"""


def vega_bundle() -> str:
    try:
        import vl_convert
    except ImportError as exc:
        raise PocketquantError(
            "an offline dvc plots template needs vl-convert-python (pip install vl-convert-python)"
        ) from exc
    return vl_convert.javascript_bundle()


def offline_template() -> str:
    """DVC's placeholders {refresh_tag} and {plot_divs}; no {scripts} (the CDN tags)."""
    bundle = vega_bundle().replace("</script", "<\\/script")  # cannot end the inline tag early
    return PAGE.format(bundle=bundle, svg_defaults=SVG_DEFAULTS)


def write_offline_template(path: str | os.PathLike[str]) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(offline_template(), encoding="utf-8")
    return Path(path)
