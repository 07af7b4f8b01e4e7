"""The DVC pipeline end to end, with real DVC, Hydra, models and llama.cpp, in a temporary clone.

One clone and one DVC cache are shared by every test in this module (they run in file order, each
reusing what the previous built): the committed `eval=smoke` baseline run of conftest.py, which
test_reproducible.py uses too, so the whole module stays within a few minutes on 2 cores. The
clone runs the library installed in this interpreter's env.
"""

from __future__ import annotations

import filecmp
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import Baseline
from .dvcrepo import (
    STAGES,
    VENV_BIN,
    cached_outputs,
    clone,
    compose_params,
    dvc,
    exp_show,
    git,
    leftovers,
    md5,
    run,
)

pytestmark = pytest.mark.slow
pytest.importorskip("dvc")
pytest.importorskip("llama_cpp", reason="llama-cpp-python measures the GGUF variants")

EVAL_STAGES = {"reference", "evaluate_base", "evaluate", "package", "report"}
TIMINGS: dict[str, float] = {}
WIDTHS: dict[str, int] = {}  # characters of `dvc exp show` output lines, printed at the end


@dataclass
class Workspace:
    root: Path
    repo: Path  # the clone every test shares
    cache: Path  # its DVC cache
    remote: Path  # its default (local directory) remote

    def fresh_clone(self, name: str, *, shared_cache: bool = False) -> Path:
        """Another clone of the shared clone's HEAD, with its own empty cache unless shared_cache."""
        cache = self.cache if shared_cache else self.root / f"cache-{name}"
        return clone(self.repo, self.root / name, cache, self.remote)


@pytest.fixture(scope="module")
def ws(baseline: Baseline) -> Workspace:
    """The committed baseline run (conftest.py): these tests continue in its clone and cache."""
    yield Workspace(baseline.root, baseline.repo, baseline.cache, baseline.remote)
    print(f"\npipeline timings (s): {json.dumps({k: round(v, 1) for k, v in TIMINGS.items()})}")
    print(f"dvc exp show widths (characters): {json.dumps(WIDTHS)}")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_unknown_scheme_fails_with_hydra_options(ws: Workspace) -> None:
    before = (ws.repo / "params.yaml").read_bytes()
    r = dvc(ws.repo, "exp", "run", "-S", "quant=bogus", check=False, timeout=300)
    assert r.returncode != 0
    assert "Could not find 'quant/bogus'" in r.out and "Available options in 'quant'" in r.out, r.out
    for scheme in ("q4_k_m", "q8_0", "nf4", "q2_k"):
        assert scheme in r.out
    assert (ws.repo / "params.yaml").read_bytes() == before
    assert not r.ran


def test_fresh_clone_repro_builds_the_default_end_to_end(ws: Workspace, baseline: Baseline) -> None:
    r = baseline.run  # the fixture's `dvc repro` in a fresh clone, then committed
    TIMINGS["fresh_repro"] = r.seconds
    assert r.ran == set(STAGES), f"stages run: {sorted(r.ran)}\n{r.out[-3000:]}"
    ggufs = list((ws.repo / "artifacts" / "variant").glob("*.gguf"))
    assert [g.name for g in ggufs] == ["smollm2-135m-q4_k_m.gguf"]
    m = load(ws.repo / "metrics" / "variant.json")
    assert m["variant"] == "q4_k_m"
    assert m["size"]["bytes"] == ggufs[0].stat().st_size
    q = m["quality"]
    assert math.isfinite(q["ppl"]) and q["ppl"] > 1 and q["kld_mean"] >= 0
    base = load(ws.repo / "metrics" / "base.json")
    assert base["variant"] == "base-f16" and base["size"]["bytes"] > m["size"]["bytes"]
    assert list((ws.repo / "artifacts" / "package").glob("*.zip"))
    assert "q4_k_m" in (ws.repo / "reports" / "summary.md").read_text(encoding="utf-8")
    assert "up to date" in dvc(ws.repo, "status").out
    assert not leftovers(ws.repo / "artifacts")
    # the fixture committed the lock and the small outputs kept in git, as a user does
    assert git(ws.repo, "status", "--porcelain").out == ""


def test_second_repro_changes_nothing_quickly(ws: Workspace) -> None:
    lock = (ws.repo / "dvc.lock").read_bytes()
    r = dvc(ws.repo, "repro")
    TIMINGS["noop_repro"] = r.seconds
    assert not r.ran
    assert "Data and pipelines are up to date." in r.out
    assert (ws.repo / "dvc.lock").read_bytes() == lock
    assert r.seconds < 5, f"no-op `dvc repro` took {r.seconds:.1f} s"


def test_eval_only_change_reruns_only_evaluation(ws: Workspace) -> None:
    r = dvc(ws.repo, "exp", "run", "--temp", "-S", "eval.max_new_tokens=4", timeout=900)
    TIMINGS["eval_only_exp"] = r.seconds
    # package re-runs only if the variant's metrics changed (its manifest embeds them).
    assert (
        {"evaluate_base", "evaluate"}
        <= r.ran
        <= {"check_params", "evaluate_base", "evaluate", "package", "report"}
    ), r.out
    for stage in ("acquire", "convert", "calibrate", "quantize", "reference"):
        assert f"Stage '{stage}' didn't change" in r.out or f"Stage '{stage}' is cached" in r.out


def test_model_dir_without_config_fails_naming_it(ws: Workspace, tmp_path: Path) -> None:
    repo = ws.fresh_clone("bad-config", shared_cache=True)
    model = tmp_path / "not-a-model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"\0" * 16)
    compose_params(repo, "model=local", f"model.path={model}")
    r = dvc(repo, "repro", "acquire", check=False)
    assert r.returncode != 0
    assert "stage acquire: error:" in r.out and str(model) in r.out and "config.json is missing" in r.out, (
        r.out
    )
    assert not (repo / "artifacts" / "base" / "hf").exists()
    assert not leftovers(repo / "artifacts")


def test_unsupported_architecture_fails_naming_it(ws: Workspace, tmp_path: Path) -> None:
    repo = ws.fresh_clone("bad-arch", shared_cache=True)
    model = tmp_path / "gpt2"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"})
    )
    compose_params(repo, "model=local", f"model.path={model}")
    r = dvc(repo, "repro", "acquire", check=False)
    assert r.returncode != 0
    assert "unsupported architecture GPT2LMHeadModel" in r.out, r.out
    assert not (repo / "artifacts" / "base" / "hf").exists()
    assert not leftovers(repo / "artifacts")


def test_hub_id_offline_fails_saying_so(ws: Workspace) -> None:
    """The tests run with HF_HUB_OFFLINE=1: a hub id must fail in acquire, say why, point to model.path."""
    repo = ws.fresh_clone("hub-offline", shared_cache=True)
    compose_params(repo, "model=llama-3.2-3b")
    r = dvc(repo, "repro", "acquire", check=False)
    assert r.returncode != 0
    assert "stage acquire: error:" in r.out and "meta-llama/Llama-3.2-3B-Instruct" in r.out, r.out
    assert "offline" in r.out and "model.path" in r.out, r.out
    assert not (repo / "artifacts" / "base" / "hf").exists()
    assert not list((repo / "artifacts").rglob(".hf*")), "a partial download was left behind"
    assert not leftovers(repo / "artifacts")


def test_failing_stage_keeps_earlier_outputs_and_writes_nothing_half(ws: Workspace) -> None:
    repo = ws.fresh_clone("bad-ftype", shared_cache=True)
    dvc(repo, "checkout")  # the baseline's outputs, linked from the shared cache
    lock_md5 = {p: md5(p) for p in cached_outputs(repo) if "variant" not in p.parts}
    compose_params(repo, "quant.name=q9_bogus")
    r = dvc(repo, "repro", check=False)
    assert r.returncode != 0
    assert "stage quantize: error:" in r.out and "q9_bogus" in r.out, r.out
    assert r.ran == {"check_params", "quantize"}
    # Upstream outputs (and the cache they link to) are untouched; the failed output is absent.
    assert {p: md5(p) for p in lock_md5} == lock_md5
    assert not (repo / "artifacts" / "variant").exists()
    assert not leftovers(repo / "artifacts")
    # Back to the committed params: the variant comes back from the run-cache, nothing recomputes
    # (check_params re-checks the params: its persisted marker has no run-cache entry).
    git(repo, "checkout", "--", "params.yaml")
    r = dvc(repo, "repro")
    assert r.ran <= {"check_params"}, r.out
    assert "up to date" in dvc(repo, "status").out


def test_push_then_pull_in_a_fresh_clone_restores_every_byte(ws: Workspace) -> None:
    r = dvc(ws.repo, "push", "--run-cache")
    TIMINGS["push_local"] = r.seconds
    pulled = ws.fresh_clone("pulled")
    r = dvc(pulled, "pull")
    TIMINGS["pull_local"] = r.seconds
    outputs = cached_outputs(ws.repo)
    assert len(outputs) >= 5
    for src in outputs:
        dst = pulled / src.relative_to(ws.repo)
        assert filecmp.cmp(src, dst, shallow=False), f"{dst} differs from {src}"
    assert "up to date" in dvc(pulled, "status").out

    # A clone that never pulled: `dvc repro --pull` fetches what it needs and recomputes nothing.
    other = ws.fresh_clone("repro-pull")
    r = dvc(other, "repro", "--pull")
    assert not r.ran, r.out
    for src in outputs:
        assert filecmp.cmp(src, other / src.relative_to(ws.repo), shallow=False)


def test_ssh_remote_push_pull(ws: Workspace, sshd) -> None:  # noqa: ANN001 (fixture object)
    remote_dir = ws.root / "ssh-remote"
    url = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{remote_dir}"
    ssh_env = {"HOME": str(sshd.home)}  # known_hosts with the server's host key lives there

    def add_remote(repo: Path) -> None:
        dvc(repo, "remote", "add", "--local", "ssh", url)
        dvc(repo, "remote", "modify", "--local", "ssh", "keyfile", str(sshd.client_key))

    add_remote(ws.repo)
    t0 = time.perf_counter()
    dvc(ws.repo, "push", "-r", "ssh", "quantize", **ssh_env)
    TIMINGS["push_ssh_variant"] = time.perf_counter() - t0
    assert any((remote_dir / "files" / "md5").rglob("*")), "nothing arrived on the SSH remote"
    repo = ws.fresh_clone("ssh-pulled")
    add_remote(repo)
    dvc(repo, "pull", "-r", "ssh", "quantize", **ssh_env)
    variant = ws.repo / "artifacts" / "variant"
    for src in sorted(variant.rglob("*.gguf")):
        assert filecmp.cmp(src, repo / src.relative_to(ws.repo), shallow=False)
    status = dvc(repo, "status", "quantize").out
    assert "changed outs" not in status and "deleted" not in status.replace("deleted:", "")


def test_sweep_three_schemes_in_the_queue(ws: Workspace) -> None:
    # The table of this sweep alone: an earlier test's experiment (eval.max_new_tokens=4) would add
    # its param as a column of `dvc exp show --only-changed`.
    dvc(ws.repo, "exp", "remove", "--all-commits")
    t0 = time.perf_counter()
    r = dvc(ws.repo, "exp", "run", "-S", "quant=q4_k_m,q8_0,nf4", "--queue")
    queued = re.findall(r"Queued experiment '([\w-]+)'", r.out)
    assert len(queued) == 3, r.out
    dvc(ws.repo, "queue", "start", "-j", "1")
    deadline = time.monotonic() + 1200
    while True:
        status = dvc(ws.repo, "queue", "status").out
        if not any(word in status for word in ("Queued", "Running")):
            break
        assert time.monotonic() < deadline, status
        time.sleep(5)
    TIMINGS["sweep_3"] = time.perf_counter() - t0
    assert status.count("Success") == 3, status

    exps = {e["params"]["quant"]["name"]: e for e in exp_show(ws.repo) if e["name"] in queued}
    assert set(exps) == {"q4_k_m", "q8_0", "nf4"}, sorted(exps)
    sizes = {}
    for scheme in ("q4_k_m", "q8_0", "nf4"):
        # the one DVC metrics file: the flat headline (details stay in metrics/variant.json, in git)
        assert set(exps[scheme]["metrics"]) == {"metrics/headline.json"}
        m = exps[scheme]["metrics"]["metrics/headline.json"]
        sizes[scheme] = m["gib"]
        assert math.isfinite(m["ppl"]) and m["ppl_err"] > 0 and m["kld"] >= 0
    assert sizes["q8_0"] > sizes["q4_k_m"]
    baseline = load(ws.repo / "metrics" / "headline.json")
    same = ("gib", "ppl", "ppl_err", "kld", "top1_pct")  # not tok_s: a timing
    assert {k: exps["q4_k_m"]["metrics"]["metrics/headline.json"][k] for k in same} == {
        k: baseline[k] for k in same
    }

    # acquire and convert ran in none of the three (their outputs came from the cache).
    for name in queued:
        log = dvc(ws.repo, "queue", "logs", name).out
        assert "Stage 'acquire' didn't change" in log, log[-3000:]
        assert "Running stage 'acquire'" not in log and "Running stage 'convert'" not in log, log[-3000:]
    table = dvc(ws.repo, "exp", "show", "--no-pager", "--md").out
    assert all(s in table for s in ("q4_k_m", "q8_0", "nf4"))
    # How wide `dvc exp show --only-changed` is for this scheme sweep (issue 11: it was 3,176).
    for name, extra in (("only_changed", ()), ("only_changed_no_deps", ("--drop", ".*/.*"))):
        out = dvc(ws.repo, "exp", "show", "--no-pager", "--only-changed", *extra, COLUMNS="1000").out
        WIDTHS[name] = max(len(line.rstrip()) for line in out.splitlines())
        header = next(line for line in out.splitlines() if "Experiment" in line)
        assert " ppl_err " in header and "kld_p99" not in header  # the headline keys, not every metric
    # 3,176 before headline.json; 140 / 214 measured once a scheme is one param (quant.name)
    assert WIDTHS["only_changed_no_deps"] < 160 and WIDTHS["only_changed"] < 260, WIDTHS

    # Comparing: metrics diff between two experiments, plots overlaid across all three.
    by_scheme = {scheme: e["name"] for scheme, e in exps.items()}
    out = dvc(ws.repo, "metrics", "diff", by_scheme["q4_k_m"], by_scheme["q8_0"], "--json").out
    diff = json.loads(out[out.index("{") :])["metrics/headline.json"]
    assert diff["gib"]["old"] == sizes["q4_k_m"] and diff["gib"]["new"] == sizes["q8_0"]
    out = dvc(ws.repo, "plots", "diff", *queued, "--json").out
    plots = json.loads(out[out.index("{") :])["data"]
    assert set(plots) == {"size_vs_ppl", "size_vs_kld"}  # no chart of the variant string as a number
    for name in ("size_vs_ppl", "size_vs_kld"):
        assert set(queued) <= set(plots[name][0]["revisions"]), plots[name][0]["revisions"]
        content = plots[name][0]["content"]
        assert {"variant"} <= {t["field"] for t in content["encoding"]["tooltip"]}  # tooltips name it
        assert {v["variant"] for v in content["data"]["values"]} == {"q4_k_m", "q8_0", "nf4"}


def gguf_keys(path: Path) -> set[str]:
    from gguf import GGUFReader

    return set(GGUFReader(path).fields)


def test_imatrix_experiment_calibrates_and_feeds_the_kernel(ws: Workspace) -> None:
    r = dvc(
        ws.repo, "exp", "run", "-S", "quant.imatrix=true", "-S", "calib.chunks=1", "-S", "calib.n_ctx=128"
    )
    TIMINGS["imatrix_exp"] = r.seconds
    assert {"calibrate", "quantize", "evaluate"} <= r.ran and not r.ran & {"acquire", "convert", "reference"}
    imatrix = ws.repo / "artifacts" / "calib" / "imatrix.gguf"
    assert "imatrix.chunk_count" in gguf_keys(imatrix) or any(
        k.startswith("imatrix.") for k in gguf_keys(imatrix)
    )
    (variant,) = (ws.repo / "artifacts" / "variant").glob("*.gguf")
    assert variant.name == "smollm2-135m-q4_k_m-imatrix.gguf"
    assert any(k.startswith("quantize.imatrix.") for k in gguf_keys(variant))
    assert load(ws.repo / "metrics" / "variant.json")["variant"] == "q4_k_m-imatrix"


def test_nf4_chain_experiment_quantizes_from_the_nf4_checkpoint(ws: Workspace) -> None:
    r = dvc(ws.repo, "exp", "run", "-S", "quant.source=nf4", "-S", "quant.imatrix=false")
    TIMINGS["nf4_chain_exp"] = r.seconds
    assert "quantize" in r.ran and not r.ran & {"acquire", "convert", "reference", "calibrate"}, r.out
    (variant,) = (ws.repo / "artifacts" / "variant").glob("*.gguf")
    assert variant.name == "smollm2-135m-q4_k_m-from-nf4.gguf"
    m = load(ws.repo / "metrics" / "variant.json")
    assert m["variant"] == "q4_k_m-from-nf4" and math.isfinite(m["quality"]["ppl"])


def test_compare_prints_every_variant_with_error_bars_and_an_offline_page(ws: Workspace) -> None:
    """Issue 11's done-when: after the sweep (q4_k_m, q8_0, nf4), the imatrix and the NF4-chain
    experiments, `pocketquant compare` (no arguments: the workspace and every experiment) prints one
    row per variant with error bars, and --html writes one page that loads nothing."""
    page = ws.root / "compare.html"
    r = run(ws.repo, str(VENV_BIN / "pocketquant"), "compare", "--html", str(page))
    TIMINGS["compare"] = r.seconds
    rows = {line.split(" | ")[0][2:]: line for line in r.out.splitlines() if line.startswith("| ")}
    variants = {"q4_k_m", "q8_0", "nf4", "q4_k_m-imatrix", "q4_k_m-from-nf4"}
    assert variants | {"base-f16"} <= set(rows), r.out
    for label in variants:
        assert rows[label].count(" ± ") >= 3, rows[label]  # PPL, ΔPPL, KLD, same top-1 with errors
    assert "| q4_k_m | smollm2-135m | q4_k_m | imatrix |" not in r.out
    assert "| q4_k_m-imatrix | smollm2-135m | q4_k_m | imatrix |" in r.out
    assert "- **q4_k_m-imatrix vs q4_k_m**" in r.out and "- **q4_k_m-from-nf4 vs q4_k_m**" in r.out
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html and not re.search(r"(src|href)=", html) and "https://" not in html
    charts = re.findall(r'<svg id="([\w-]+)"(.*?)</svg>', html, re.S)
    assert [c[0] for c in charts] == ["size-ppl", "size-kld", "speed-size"]
    for name, body in charts:
        for label in variants:
            assert f">{label}</text>" in body, (name, label)
    assert html.count('class="point front"') >= 2 and "Pareto front" in html

    # dvc plots, offline: the template inlines vega, DVC leaves out its CDN script tags.
    template = ws.root / "offline.html"
    run(ws.repo, str(VENV_BIN / "pocketquant"), "plots-template", str(template))
    out_dir = ws.root / "dvc-plots"
    dvc(ws.repo, "plots", "diff", "HEAD", "--html-template", str(template), "-o", str(out_dir))
    index = (out_dir / "index.html").read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in index and "<script src=" not in index and "q4_k_m-from-nf4" in index
