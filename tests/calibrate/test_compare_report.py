"""Report comparisons (issue 5 item 4): S vs S-imatrix and S vs S-from-nf4 in reports/summary.md
and across experiments with `python -m pocketquant.report --compare`."""

from __future__ import annotations

import json

import pytest

from pocketquant.errors import EvaluationError
from pocketquant.report import comparisons, main, write_comparison, write_report


def _metrics(variant: str, ppl: float, kld: float, top1: float, *, chunks: int = 8, gib: float = 0.1) -> dict:
    return {
        "variant": variant,
        "size": {"bytes": int(gib * 2**30), "gib": gib, "bpw": 5.0, "reduction_vs_bf16_pct": 60.0},
        "quality": {
            "ppl": ppl,
            "delta_ppl_pct": 100 * (ppl / 13.0 - 1),
            "kld_mean": kld,
            "kld_p99": 10 * kld,
            "top1_agreement_pct": top1,
            "engine": "llama.cpp",
            "n_ctx": 512,
            "chunks": chunks,
            "tokens_scored": 255 * chunks,
            "corpus": "default",
            "base_engine": "transformers",
        },
    }


PLAIN = _metrics("q4_k_m", 14.0, 0.050, 88.0)
IMAT = _metrics("q4_k_m-imatrix", 13.5, 0.040, 90.0)
NF4 = _metrics("q4_k_m-from-nf4", 14.5, 0.070, 86.5)


def _dvc_exp_show(*variants: dict) -> list:
    """The shape `dvc exp show --json` prints: the workspace, then the baseline commit with its
    experiments, each revision's metrics under data.metrics[path].data."""

    def rev(name, m):
        return {
            "rev": f"{name}-sha",
            "name": name,
            "data": {
                "rev": f"{name}-sha",
                "params": {"params.yaml": {"data": {"quant": {"name": m["variant"]}}}},
                "metrics": {
                    "metrics/base.json": {"data": {**PLAIN, "variant": "base-f16"}},
                    "metrics/variant.json": {"data": m},
                },
            },
            "error": None,
            "experiments": None,
        }

    return [
        {**rev("workspace", variants[-1]), "experiments": None},
        {
            **rev("main", PLAIN),
            "experiments": [
                {"revs": [rev(f"exp{i}", m)], "executor": None, "name": f"exp{i}"}
                for i, m in enumerate(variants)
            ],
        },
    ]


def test_pairs_and_differences():
    pairs = comparisons([PLAIN, IMAT, NF4, _metrics("q8_0", 13.1, 0.001, 99.0)])
    assert [(c["plain"], c["variant"]) for c in pairs] == [
        ("q4_k_m", "q4_k_m-from-nf4"),
        ("q4_k_m", "q4_k_m-imatrix"),
    ]
    im = next(c for c in pairs if c["variant"] == "q4_k_m-imatrix")
    assert im["delta_kld_mean"] == pytest.approx(-0.010)
    assert im["delta_kld_mean_pct"] == pytest.approx(-20.0)
    assert im["delta_ppl"] == pytest.approx(-0.5) and im["delta_ppl_pct"] == pytest.approx(-0.5 / 14 * 100)
    assert im["delta_top1_pts"] == pytest.approx(2.0)
    nf = next(c for c in pairs if c["variant"] == "q4_k_m-from-nf4")
    assert nf["delta_kld_mean"] == pytest.approx(0.020) and nf["delta_top1_pts"] == pytest.approx(-1.5)


def test_different_eval_settings_are_not_paired():
    assert comparisons([PLAIN, _metrics("q4_k_m-imatrix", 13.5, 0.04, 90.0, chunks=4)]) == []


def test_same_label_twice_with_other_numbers_is_refused():
    with pytest.raises(EvaluationError, match="two different metrics for variant 'q4_k_m'"):
        comparisons([PLAIN, _metrics("q4_k_m", 14.1, 0.05, 88.0), IMAT])


def test_summary_states_the_improvement(tmp_path):
    files = []
    for m in (PLAIN, IMAT, NF4):
        p = tmp_path / f"{m['variant']}.json"
        p.write_text(json.dumps(m))
        files.append(p)
    text = write_report(files, tmp_path / "summary.md")
    assert "## Comparisons" in text and "### importance matrix vs plain" in text
    assert (
        "| q4_k_m | q4_k_m-imatrix | default, n_ctx 512, 8 chunks | 0.05000 → 0.04000 | -0.01000 (-20.0%)"
        in text
    )
    assert "| 14.0000 → 13.5000 | -0.5000 (-3.57%) | 88.00% → 90.00% | +2.00 pts |" in text
    assert "### NF4 -> GGUF chain vs direct GGUF" in text and "+0.02000 (+40.0%)" in text
    # one variant alone: no comparison section (the pipeline's one-experiment report)
    assert "Comparisons" not in write_report(files[:1], tmp_path / "one.md")


def test_compare_cli_reads_dvc_exp_show_and_metrics_files(tmp_path, capsys):
    show = tmp_path / "exp_show.json"
    show.write_text(json.dumps(_dvc_exp_show(IMAT, NF4)))
    out = tmp_path / "cmp.md"
    assert main([str(show), "--compare", str(out)]) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out
    assert "q4_k_m-imatrix" in text and "q4_k_m-from-nf4" in text and "base-f16" not in text
    # a metrics file works the same; the result does not depend on how the numbers came
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(PLAIN))
    imat = tmp_path / "imat.json"
    imat.write_text(json.dumps(IMAT))
    out2 = tmp_path / "cmp2.md"
    assert main([str(plain), str(imat), "--compare", str(out2)]) == 0
    assert "-0.01000 (-20.0%)" in out2.read_text() and "from-nf4" not in out2.read_text()


def test_compare_without_pairs_or_with_bad_input_fails_and_writes_nothing(tmp_path, capsys):
    lone = tmp_path / "lone.json"
    lone.write_text(json.dumps(PLAIN))
    out = tmp_path / "cmp.md"
    assert main([str(lone), "--compare", str(out)]) == 2
    assert "no comparable pair among variants ['q4_k_m']" in capsys.readouterr().err
    junk = tmp_path / "junk.json"
    junk.write_text(json.dumps({"hello": [1, 2]}))
    assert main([str(junk), str(lone), "--compare", str(out)]) == 2
    assert f"{junk}: no pocketquant variant metrics" in capsys.readouterr().err
    with pytest.raises(EvaluationError, match="cannot read"):
        write_comparison([tmp_path / "missing.json"], out)
    assert not out.exists() and sorted(tmp_path.iterdir()) == sorted([lone, junk])


def test_real_dvc_exp_show_output(tmp_path):
    """`dvc exp show --json` of the measurement in docs/calibration.md (trimmed of deps/outs and most
    params): every imatrix/NF4 pair is found, the base rows and the baseline's 4-chunk q4_k_m are not
    paired, and the figures are those of the metrics."""
    from pathlib import Path

    from pocketquant.report import read_compare_sources

    src = Path(__file__).parent / "data" / "dvc_exp_show.json"
    labels = sorted({m["variant"] for m in read_compare_sources([src])})
    assert "base-f16" not in labels and {"q4_k_m", "q4_k_m-imatrix", "q3_k_m-imatrix"} <= set(labels)
    text = write_comparison([src], tmp_path / "cmp.md")
    rows = [line for line in text.splitlines() if line.startswith("| q")]
    assert len(rows) == 4, rows
    assert any(
        r.startswith("| q4_k_m | q4_k_m-imatrix | default, n_ctx 512, 8 chunks | 0.05063 → 0.02693")
        for r in rows
    )
    assert any(r.startswith("| q4_k_m | q4_k_m-imatrix | wikitext2, n_ctx 512, 8 chunks") for r in rows)
    assert any(r.startswith("| q4_k_m | q4_k_m-from-nf4 |") for r in rows)
