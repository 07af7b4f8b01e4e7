"""`pocketquant compare` on runs made here: rows, error bars, notes, paired comparisons, CSV, the
offline HTML page, and reading runs from git revisions and experiment refs."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from pocketquant.cli import main as cli_main
from pocketquant.compare import compare
from pocketquant.compare.rows import Run, describe_label, rows_from_runs
from pocketquant.compare.svg import Point, nice_ticks, pareto_front
from pocketquant.compare.table import default_pairs, pair
from pocketquant.errors import EvaluationError
from pocketquant.evaluate.metrics import write_json, write_token_scores
from pocketquant.evaluate.stats import TokenScores, quality_stats

N = 1020
RNG = np.random.default_rng(11)
BASE_NLL = RNG.gamma(2.0, 1.3, N)
TOKENS_SHA = "ab" * 32


def scores(shift: float, noise: float, kld_scale: float, agree: float, seed: int) -> TokenScores:
    rng = np.random.default_rng(seed)
    nll = np.clip(BASE_NLL + shift + rng.normal(0, noise, N), 1e-4, None)
    return TokenScores(
        nll=nll.astype(np.float32),
        kld=rng.gamma(0.7, kld_scale, N).astype(np.float32),
        same_top1=rng.random(N) < agree,
        tokens_sha256=TOKENS_SHA,
    )


def metrics(
    label: str, gib: float, t: TokenScores | None, *, engine="llama.cpp", chunks=4, fmt="gguf"
) -> dict:
    m = {
        "variant": label,
        "size": {
            "bytes": int(gib * 2**30),
            "gib": gib,
            "bpw": 16 * gib / 0.2506,
            "reduction_vs_bf16_pct": 100 * (1 - gib / 0.2506),
            "format": fmt,
        },
        "speed": {
            "engine": engine,
            "threads": 2,
            "n_prompt": 512,
            "n_gen": 128,
            "pp_tokens_per_s": 200 / gib / 10,
            "tg_tokens_per_s": 4 / gib,
            "ttft_s": 2.5 * gib * 10,
            "peak_rss_mib": 900 + 1000 * gib,
        },
    }
    if t is not None:
        q = quality_stats(t.nll, t.kld, t.same_top1, BASE_NLL)
        m["quality"] = {
            **q,
            "engine": engine,
            "n_ctx": 512,
            "chunks": chunks,
            "tokens_scored": 255 * chunks,
            "corpus": "default",
            "base_engine": "transformers",
            "tokens_sha256": TOKENS_SHA if chunks == 4 else "cd" * 32,
        }
    return m


SCORES = {
    "q8_0": scores(0.003, 0.02, 0.002, 0.99, 1),
    "q4_k_m": scores(0.07, 0.2, 0.07, 0.89, 2),
    "q4_k_m-imatrix": scores(0.04, 0.15, 0.035, 0.92, 3),
    "nf4": scores(0.11, 0.25, 0.09, 0.86, 4),
    "q4_k_m-from-nf4": scores(0.10, 0.24, 0.085, 0.87, 5),
    "base-f16": scores(0.0, 0.001, 0.00001, 0.999, 6),
}
GIB = {
    "q8_0": 0.1349,
    "q4_k_m": 0.0982,
    "q4_k_m-imatrix": 0.0982,
    "nf4": 0.1123,
    "q4_k_m-from-nf4": 0.0982,
    "base-f16": 0.2513,
}
PARAMS = {
    "q8_0": {"name": "q8_0", "imatrix": False, "source": "base"},
    "q4_k_m": {"name": "q4_k_m", "imatrix": False, "source": "base"},
    "q4_k_m-imatrix": {"name": "q4_k_m", "imatrix": True, "source": "base"},
    "nf4": {"name": "nf4", "imatrix": False, "source": "base"},
    "q4_k_m-from-nf4": {"name": "q4_k_m", "imatrix": False, "source": "nf4"},
}


def sweep_runs() -> list[Run]:
    base = metrics("base-f16", GIB["base-f16"], SCORES["base-f16"])
    runs = []
    for label in PARAMS:
        engine = "transformers" if label == "nf4" else "llama.cpp"
        fmt = "nf4" if label == "nf4" else "gguf"
        runs.append(
            Run(
                f"exp-{label}",
                metrics(label, GIB[label], SCORES[label], engine=engine, fmt=fmt),
                base,
                {"model": {"name": "smollm2-135m"}, "quant": PARAMS[label]},
                SCORES[label],
                SCORES["base-f16"],
            )
        )
    return runs


def test_rows_one_per_variant_base_last_merged_sources():
    runs = sweep_runs()
    runs.append(Run("workspace", runs[-1].variant, runs[-1].base, runs[-1].params, runs[-1].tokens))
    rows = rows_from_runs(runs)
    assert [r.label for r in rows] == [
        "q8_0",
        "nf4",
        "q4_k_m",
        "q4_k_m-from-nf4",
        "q4_k_m-imatrix",
        "base-f16",
    ]
    chain = next(r for r in rows if r.label == "q4_k_m-from-nf4")
    assert chain.sources == ["exp-q4_k_m-from-nf4", "workspace"] and chain.made == "from nf4"
    assert next(r for r in rows if r.label == "q4_k_m-imatrix").made == "imatrix"
    base = rows[-1]
    assert base.is_base and len(base.sources) == 6 and base.made == "base"
    assert [r.label for r in rows_from_runs(runs, include_base=False)][-1] == "q4_k_m-imatrix"


def test_describe_label_without_params():
    assert describe_label("q4_k_m-imatrix-from-nf4") == ("q4_k_m", "imatrix, from nf4")
    assert describe_label("q8_0") == ("q8_0", "")
    assert describe_label("base-f16") == ("f16", "base")


def test_markdown_has_every_column_and_error_bars():
    c = compare_runs(sweep_runs())
    text = c.markdown()
    header = next(line for line in text.splitlines() if line.startswith("| variant"))
    for col in (
        "model",
        "scheme",
        "made",
        "size GB",
        "size GiB",
        "bits/weight",
        "vs BF16",
        "PPL",
        "ΔPPL",
        "KLD mean",
        "KLD p99",
        "same top-1",
        "MC acc",
        "pp tok/s",
        "gen tok/s",
        "TTFT s",
        "peak RSS MiB",
    ):
        assert f" {col} |" in header, col
    rows = [line for line in text.splitlines() if re.match(r"\| (q|nf4|base)", line)]
    assert len(rows) == 6
    q4 = next(r for r in rows if r.startswith("| q4_k_m |"))
    m = c.rows[2].metrics["quality"]
    assert (
        f"{m['ppl']:.3f} ± {m['ppl_err']:.3f}" in q4
        and f"{m['kld_mean']:.4f} ± {m['kld_mean_err']:.4f}" in q4
    )
    assert "| smollm2-135m | q4_k_m | plain | gguf |" in q4
    # NF4 runs in transformers, the GGUFs in llama.cpp: said plainly, not refused
    assert "Note: Speed was measured in different engines" in text and "transformers: nf4" in text


def compare_runs(runs):  # noqa: ANN001, ANN201 - a Comparison from given runs (no repo)
    from pocketquant.compare import Comparison

    rows = rows_from_runs(runs)
    return Comparison(rows, default_pairs(rows), [])


def test_paired_comparisons_of_how_it_was_made():
    c = compare_runs(sweep_runs())
    pairs = {(a.label, b.label) for a, b in c.pairs}
    assert pairs == {("q4_k_m-imatrix", "q4_k_m"), ("q4_k_m-from-nf4", "q4_k_m")}
    text = c.markdown()
    assert "## Paired comparisons (same tokens, 95% interval)" in text
    line = next(s for s in text.splitlines() if s.startswith("- **q4_k_m-imatrix vs q4_k_m**"))
    assert "q4_k_m-imatrix has a lower perplexity than q4_k_m" in line
    assert "q4_k_m-imatrix has a lower KL divergence than q4_k_m" in line
    rows = {r.label: r for r in c.rows}
    same = pair(rows["q8_0"], rows["q8_0"])
    assert not same.nll.significant and not same.kld.significant


def test_different_settings_are_said_plainly_and_not_paired():
    runs = sweep_runs()
    odd = runs[2]  # q4_k_m-imatrix measured on 8 chunks
    odd.variant = metrics("q4_k_m-imatrix", GIB["q4_k_m-imatrix"], SCORES["q4_k_m-imatrix"], chunks=8)
    odd.tokens = TokenScores(odd.tokens.nll, odd.tokens.kld, odd.tokens.same_top1, "cd" * 32)
    c = compare_runs(runs)
    text = c.markdown()
    assert "Note: Rows were measured on different evaluation settings" in text
    assert "chunks 8 (2040 tokens): q4_k_m-imatrix" in text
    assert ("q4_k_m-imatrix", "q4_k_m") not in {(a.label, b.label) for a, b in c.pairs}
    rows = {r.label: r for r in c.rows}
    assert pair(rows["q4_k_m-imatrix"], rows["q4_k_m"]) is None


def test_csv_has_numbers_and_errors_in_own_columns():
    c = compare_runs(sweep_runs())
    table = list(csv.DictReader(io.StringIO(c.csv())))
    assert len(table) == 6
    q8 = next(r for r in table if r["variant"] == "q8_0")
    m = c.rows[0].metrics
    assert float(q8["PPL"]) == pytest.approx(m["quality"]["ppl"]) and float(q8["PPL err"]) > 0
    assert float(q8["KLD mean err"]) > 0 and q8["corpus"] == "default" and q8["sources"] == "exp-q8_0"
    assert float(q8["size GB"]) == pytest.approx(m["size"]["bytes"] / 1e9)


class PageParser(HTMLParser):
    """Collects what a browser would fetch or run, the charts and the text inside each chart."""

    def __init__(self):
        super().__init__()
        self.external: list[str] = []
        self.scripts = 0
        self.svgs: dict[str, list[str]] = {}
        self.current: str | None = None
        self.tags: list[str] = []
        self.table_rows = 0
        self.front: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if a.get(key):
                self.external.append(a[key])
        if tag in ("link", "img", "iframe", "object", "embed"):
            self.external.append(tag)
        if tag == "svg":
            self.current = a.get("id")
            self.svgs[self.current] = []
            self.front[self.current] = []
        if tag == "g" and self.current and "front" in (a.get("class") or ""):
            self.front[self.current].append(a["data-label"])
        if tag == "tr" and a.get("class") in ("variant", "base"):
            self.table_rows += 1

    def handle_endtag(self, tag):  # noqa: ANN001
        if tag == "svg":
            self.current = None

    def handle_data(self, data):  # noqa: ANN001
        if self.current and data.strip():
            self.svgs[self.current].append(data.strip())


def check_page(text: str, labels: list[str]) -> PageParser:
    """The page loads nothing, runs nothing, and has the table and three charts with every label."""
    p = PageParser()
    p.feed(text)
    assert p.external == [] and p.scripts == 0 and "url(" not in text and "@import" not in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text
    assert set(p.svgs) == {"size-ppl", "size-kld", "speed-size"}
    assert p.table_rows == len(labels)
    for chart in ("size-ppl", "size-kld", "speed-size"):
        for label in labels:
            assert label in p.svgs[chart], (chart, label)
    return p


def test_html_page_is_offline_with_labelled_charts_and_pareto_front(tmp_path):
    c = compare_runs(sweep_runs())
    path = c.write_html(tmp_path / "out" / "compare.html")
    p = check_page(path.read_text(encoding="utf-8"), [r.label for r in c.rows])
    # lower-left is better: q4_k_m-imatrix (smallest, best of the smallest) and the base are on the front
    assert "q4_k_m-imatrix" in p.front["size-ppl"] and "base-f16" in p.front["size-ppl"]
    assert "q4_k_m" not in p.front["size-ppl"] and "nf4" not in p.front["size-kld"]
    assert "Pareto front" in p.svgs["size-ppl"] and p.front["speed-size"] == []
    assert path.read_bytes() == c.html().encode("utf-8")  # deterministic


def test_pareto_front_and_ticks():
    pts = [Point(1, 5, "a"), Point(2, 3, "b"), Point(3, 4, "c"), Point(3, 1, "d"), Point(1, 5, "a2")]
    assert [p.label for p in pareto_front(pts)] == ["a", "a2", "b", "d"]
    assert nice_ticks(0.093, 0.26) == pytest.approx([0.1, 0.15, 0.2, 0.25])
    assert nice_ticks(12.0, 12.0)[0] <= 12.0


# -- runs read from git: revisions, experiment refs, the workspace -------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def commit_run(repo: Path, label: str, message: str) -> str:
    run = next(r for r in sweep_runs() if r.variant["variant"] == label)
    write_json(repo / "metrics" / "variant.json", run.variant)
    write_token_scores(repo / "metrics" / "variant.tokens.safetensors", run.tokens, label)
    write_json(repo / "metrics" / "base.json", run.base)
    (repo / "params.yaml").write_text(json.dumps(run.params))  # JSON is YAML
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q")
    git(r, "config", "user.email", "t@example.invalid")
    git(r, "config", "user.name", "t")
    return r


def test_revisions_and_experiment_names_are_read_from_git(repo, tmp_path, capsys):
    first = commit_run(repo, "q4_k_m", "q4_k_m")
    commit_run(repo, "q4_k_m-imatrix", "imatrix")
    # An experiment ref as `dvc exp run` leaves it (refs/exps/<baseline>/<name>), on its own commit.
    exp = commit_run(repo, "q8_0", "exp")
    git(repo, "update-ref", f"refs/exps/{first[:2]}/{first[2:]}/brisk-hare", exp)
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    c = compare([first[:10], "HEAD", "brisk-hare", "workspace"], repo=repo)
    assert [r.label for r in c.rows] == ["q8_0", "q4_k_m", "q4_k_m-imatrix", "base-f16"]
    imat = next(r for r in c.rows if r.label == "q4_k_m-imatrix")
    assert imat.sources == ["HEAD", "workspace"] and imat.tokens is not None and imat.tokens.n == N
    assert [(a.label, b.label) for a, b in c.pairs] == [("q4_k_m-imatrix", "q4_k_m")]

    html = tmp_path / "page.html"
    assert (
        cli_main(
            ["compare", "--repo", str(repo), "HEAD", first, "--html", str(html), "--pair", "q4_k_m", "q4_k_m"]
        )
        == 0
    )
    out = capsys.readouterr()
    assert out.out.count("\n| q4_k_m") == 2 and f"wrote {html}" in out.err
    assert "- **q4_k_m vs q4_k_m**" in out.out and "no significant difference in perplexity" in out.out
    check_page(html.read_text(encoding="utf-8"), ["q4_k_m", "q4_k_m-imatrix", "base-f16"])

    assert cli_main(["compare", "--repo", str(repo), "--csv", "--no-base", "HEAD"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["variant"] for r in table] == ["q4_k_m-imatrix"]


def test_bad_sources_fail_with_one_line_naming_them(repo, tmp_path, capsys):
    commit_run(repo, "q4_k_m", "one")
    assert cli_main(["compare", "--repo", str(repo), "no-such-exp"]) == 2
    assert "'no-such-exp' is neither a file, an experiment nor a git revision" in capsys.readouterr().err
    junk = tmp_path / "junk.json"
    junk.write_text('{"hello": 1}')
    assert cli_main(["compare", str(junk), "--html", str(tmp_path / "x.html")]) == 2
    assert f"{junk}: no pocketquant variant metrics" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()
    assert cli_main(["compare", "--repo", str(repo), "HEAD", "--pair", "q4_k_m", "nope"]) == 2
    assert "--pair: no row named 'nope'" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(EvaluationError, match="nothing to compare: .*workspace: no metrics/variant.json"):
        compare(["workspace"], repo=empty)


def test_saved_dvc_exp_show_of_older_runs_says_what_differs(capsys):
    """`dvc exp show --json` saved from the imatrix study (docs/calibration.md): metrics written
    before errors and per-token scores were kept, measured on two corpora and two chunk counts.
    Every variant gets a row, the differences are stated, nothing is refused."""
    src = Path(__file__).parent / "data_dvc_exp_show.json"
    assert cli_main(["compare", str(src)]) == 0
    text = capsys.readouterr().out
    labels = {line.split(" | ")[0][2:] for line in text.splitlines() if line.startswith("| ")} - {"variant"}
    assert {"q4_k_m", "q4_k_m-imatrix", "q3_k_m", "q3_k_m-imatrix", "q4_k_m-from-nf4", "base-f16"} <= labels
    assert "Note: Rows were measured on different evaluation settings" in text
    assert "corpus wikitext2" in text and "corpus default" in text
    assert "no paired comparison (per-token scores missing or measured on different tokens)" in text
