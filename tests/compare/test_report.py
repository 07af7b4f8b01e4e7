"""The report stage: summary with error bars, the flat headline `dvc exp show` lists, plot rows; the
metrics files it reads; every stage's closing line (wall time, peak RSS)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pocketquant.errors import EvaluationError
from pocketquant.evaluate.metrics import (
    build_metrics,
    read_metrics,
    read_token_scores,
    token_scores_path,
    write_json,
    write_token_scores,
)
from pocketquant.evaluate.stats import TokenScores
from pocketquant.report import HEADLINE_KEYS, write_report

from .test_compare import GIB, SCORES, metrics

REPO = Path(__file__).resolve().parents[2]
PARAMS = {"model": {"name": "smollm2-135m"}, "quant": {"name": "q4_k_m", "imatrix": True, "source": "base"}}


def test_metrics_json_is_deterministic_rounded_and_sorted(tmp_path):
    m = build_metrics(
        "q4_k_m", size={"bytes": 1, "gib": 0.0982}, quality={"ppl": 28.123456789, "kld_mean": 0.07123456}
    )
    a, b = write_json(tmp_path / "a.json", m), write_json(tmp_path / "b.json", m)
    assert a.read_bytes() == b.read_bytes()
    data = json.loads(a.read_text())
    assert list(data) == sorted(data) and data["quality"] == {"kld_mean": 0.0712346, "ppl": 28.1235}
    assert read_metrics(a)["variant"] == "q4_k_m"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(EvaluationError, match="bad.json"):
        read_metrics(bad)


def test_token_scores_file_round_trips_byte_identically(tmp_path):
    t = SCORES["q4_k_m"]
    path = token_scores_path(tmp_path / "metrics" / "variant.json")
    assert path.name == "variant.tokens.safetensors"
    write_token_scores(path, t, "q4_k_m")
    again = write_token_scores(tmp_path / "again.safetensors", t, "q4_k_m")
    assert path.read_bytes() == again.read_bytes()
    back, variant = read_token_scores(path.read_bytes(), str(path))
    assert variant == "q4_k_m" and back.tokens_sha256 == t.tokens_sha256
    assert np.array_equal(back.nll, t.nll) and np.array_equal(back.same_top1, t.same_top1)
    assert path.stat().st_size < 10 * t.n + 400  # ~9 bytes per token
    with pytest.raises(EvaluationError, match="not a pocketquant token-scores file"):
        from safetensors.numpy import save_file

        save_file({"x": np.zeros(2, np.float32)}, str(tmp_path / "other.safetensors"))
        read_token_scores((tmp_path / "other.safetensors").read_bytes(), "other.safetensors")
    with pytest.raises(EvaluationError, match="cannot read token scores junk"):
        read_token_scores(b"\x00" * 12, "junk")
    assert TokenScores(t.nll, t.kld, t.same_top1, "x").n == t.n


def write_run(d: Path) -> tuple[Path, Path]:
    base = write_json(d / "metrics" / "base.json", metrics("base-f16", GIB["base-f16"], SCORES["base-f16"]))
    variant = write_json(
        d / "metrics" / "variant.json",
        metrics("q4_k_m-imatrix", GIB["q4_k_m-imatrix"], SCORES["q4_k_m-imatrix"]),
    )
    return base, variant


def test_report_writes_summary_headline_and_plot_rows(tmp_path):
    base, variant = write_run(tmp_path)
    out = tmp_path / "reports"
    text = write_report(
        base,
        variant,
        params=PARAMS,
        summary_out=out / "summary.md",
        plots_out=out / "plots.json",
        headline_out=tmp_path / "metrics" / "headline.json",
    )
    assert (out / "summary.md").read_text() == text and text.startswith("# pocketquant summary")
    v = read_metrics(variant)["quality"]
    assert "| q4_k_m-imatrix | smollm2-135m | q4_k_m | imatrix | gguf |" in text
    assert (
        f"{v['ppl']:.3f} ± {v['ppl_err']:.3f}" in text and "| base-f16 |" in text and "Sources:" not in text
    )
    head = json.loads((tmp_path / "metrics" / "headline.json").read_text())
    assert list(head) == sorted(HEADLINE_KEYS) and all(isinstance(x, float) for x in head.values())
    assert head["ppl"] == pytest.approx(v["ppl"], rel=1e-3) and head["kld"] == pytest.approx(
        v["kld_mean"], rel=1e-3
    )
    assert len(json.dumps(head)) < 200
    rows = json.loads((out / "plots.json").read_text())
    assert [r["variant"] for r in rows] == ["q4_k_m-imatrix"]
    assert (
        rows[0]["ppl_err"] == pytest.approx(v["ppl_err"], rel=1e-5)
        and rows[0]["size_gib"] == GIB["q4_k_m-imatrix"]
    )


def run_stage(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / "report.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_stage_ends_with_wall_time_and_peak_rss(tmp_path):
    import yaml

    write_run(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    outs = ["--summary", "s.md", "--plots", "p.json", "--headline", "h.json"]
    p = run_stage(tmp_path, "--base", "metrics/base.json", "--variant", "metrics/variant.json", *outs)
    assert p.returncode == 0, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"stage report: done in \d+\.\d s, peak RSS [\d,]+ MiB", last), last
    assert 10 < int(last.rsplit(" ", 2)[1].replace(",", "")) < 4000
    # bad input: the timing line, then one line naming the file, status 2, nothing written
    p = run_stage(
        tmp_path,
        "--base",
        "metrics/missing.json",
        "--variant",
        "metrics/variant.json",
        "--summary",
        "s2.md",
        "--plots",
        "p2.json",
        "--headline",
        "h2.json",
    )
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert re.fullmatch(r"stage report: failed in \d+\.\d s, peak RSS [\d,]+ MiB", lines[-2])
    assert lines[-1].startswith("stage report: error:") and "missing.json" in lines[-1]
    assert not any((tmp_path / f).exists() for f in ("s2.md", "p2.json", "h2.json"))
