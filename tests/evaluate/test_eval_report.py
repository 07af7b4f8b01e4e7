"""Metrics JSON shape, deterministic writing, summary tables and plot rows."""

from __future__ import annotations

import json

import pytest

from pocketquant.errors import EvaluationError
from pocketquant.evaluate.metrics import build_metrics, read_metrics, write_json
from pocketquant.report import main as report_main
from pocketquant.report import write_report


def _size(gib: float, bpw: float, red: float) -> dict:
    return {"bytes": int(gib * 2**30), "gib": gib, "bpw": bpw, "reduction_vs_bf16_pct": red}


def _quality(ppl: float, dppl: float, kld: float) -> dict:
    return {
        "ppl": ppl,
        "delta_ppl_pct": dppl,
        "kld_mean": kld,
        "kld_p99": 10 * kld,
        "top1_agreement_pct": 91.5,
        "engine": "llama.cpp",
        "n_ctx": 512,
        "chunks": 20,
        "tokens_scored": 5100,
        "corpus": "wikitext2",
        "base_engine": "transformers",
    }


def test_metrics_json_is_deterministic_rounded_and_sorted(tmp_path):
    m = build_metrics(
        "q4_k_m", size=_size(0.0982, 6.23, 61.0), quality=_quality(28.123456789, 4.5, 0.0712345678)
    )
    a, b = write_json(tmp_path / "a.json", m), write_json(tmp_path / "b.json", m)
    assert a.read_bytes() == b.read_bytes()
    data = json.loads(a.read_text())
    assert list(data) == sorted(data)
    assert data["quality"]["ppl"] == 28.1235 and data["quality"]["kld_mean"] == 0.0712346
    assert read_metrics(a)["variant"] == "q4_k_m"


def test_summary_has_both_tables_for_the_variants_present(tmp_path):
    files = []
    for name, gib, ppl, kld in [
        ("q4_k_m", 0.0982, 28.1, 0.07),
        ("base", 0.2515, 26.9, 0.0),
        ("q8_0", 0.135, 27.1, 0.004),
    ]:
        m = build_metrics(
            name,
            size=_size(gib, 16 * gib / 0.2515, 100 * (1 - gib / 0.2515)),
            quality=_quality(ppl, 100 * (ppl / 26.9 - 1), kld),
            speed={"pp_tokens_per_s": 900.0, "tg_tokens_per_s": 55.5},
        )
        files.append(write_json(tmp_path / f"{name}.json", m))
    text = write_report(files, tmp_path / "reports" / "summary.md", tmp_path / "reports" / "plots.json")
    assert (tmp_path / "reports" / "summary.md").read_text() == text
    size_table = text.split("## Size")[1].split("## Quality")[0]
    assert size_table.index("| base |") < size_table.index("| q8_0 |") < size_table.index("| q4_k_m |")
    assert "| q4_k_m | 0.098 | 6.25 | 60.95% |" in size_table
    assert "| q4_k_m | llama.cpp | 28.1000 | +4.46% | 0.07000 | 0.7000 | 91.50% | 900.0 | 55.5 |" in text
    assert "n_ctx 512, 20 chunks (5100 tokens scored)" in text
    rows = json.loads((tmp_path / "reports" / "plots.json").read_text())
    assert [r["variant"] for r in rows] == ["base", "q8_0", "q4_k_m"]
    assert {"size_gib", "ppl", "kld_mean"} <= rows[0].keys()


def test_report_of_a_broken_metrics_file_fails_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(EvaluationError, match="bad.json"):
        write_report([bad], tmp_path / "summary.md")
    assert (
        report_main([str(bad), "--summary", str(tmp_path / "s.md"), "--plots", str(tmp_path / "p.json")]) == 2
    )
    assert "bad.json" in capsys.readouterr().err
    assert not (tmp_path / "summary.md").exists() and not (tmp_path / "s.md").exists()
    assert not (tmp_path / "p.json").exists()
