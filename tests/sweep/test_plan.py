"""Planning a sweep, in seconds: -S expansion as `dvc exp run --queue` does it, composition, the
stages all points share, the pipeline order against DVC's own graph, settings and --help."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from pocketquant.errors import ConfigError
from pocketquant.sweep.config import SweepConfig, load_config
from pocketquant.sweep.pipeline import load_pipeline
from pocketquant.sweep.points import expand
from pocketquant.sweep.task import OutputWatcher

pytest.importorskip("dvc")
pytest.importorskip("hydra")

REPO = Path(__file__).resolve().parents[2]
HYDRA = {"enabled": True}


def composed_by_dvc(tmp_path: Path, *overrides: str) -> dict:
    """params.yaml as stages/compose_params.py (DVC's compose_and_dump) writes it for these overrides."""
    out = tmp_path / "repo"
    out.mkdir(exist_ok=True)
    for name in ("conf",):
        subprocess.run(["cp", "-r", str(REPO / name), str(out)], check=True)
    subprocess.run(
        [sys.executable, str(REPO / "stages" / "compose_params.py"), "--repo", str(out), *overrides],
        check=True,
    )
    return yaml.safe_load((out / "params.yaml").read_text(encoding="utf-8"))


def test_comma_sweep_expands_to_one_composed_point_per_scheme(tmp_path: Path) -> None:
    points = expand(["quant=q4_k_m,q8_0,nf4", "eval=smoke"], REPO, HYDRA)
    assert [p.set_params for p in points] == [
        ["quant=q4_k_m", "eval=smoke"],
        ["quant=q8_0", "eval=smoke"],
        ["quant=nf4", "eval=smoke"],
    ]
    assert [p.index for p in points] == [1, 2, 3]
    for point, scheme in zip(points, ("q4_k_m", "q8_0", "nf4"), strict=True):
        assert point.params() == composed_by_dvc(tmp_path, f"quant={scheme}", "eval=smoke")
    assert points[2].params()["quant"]["name"] == "nf4"


def test_two_sweeps_give_their_product_in_dvc_order() -> None:
    points = expand(["quant=q4_k_m,q8_0", "eval.chunks=1,2"], REPO, HYDRA)
    assert [p.set_params for p in points] == [
        ["quant=q4_k_m", "eval.chunks=1"],
        ["quant=q4_k_m", "eval.chunks=2"],
        ["quant=q8_0", "eval.chunks=1"],
        ["quant=q8_0", "eval.chunks=2"],
    ]
    assert [p.params()["eval"]["chunks"] for p in points] == [1, 2, 1, 2]


def test_no_sweep_is_one_point_with_the_defaults() -> None:
    (point,) = expand([], REPO, HYDRA)
    assert point.set_params == [] and point.label == "(defaults)"
    assert point.params() == yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def test_unknown_option_fails_naming_it_with_the_choices() -> None:
    with pytest.raises(ConfigError) as err:
        expand(["quant=q4_k_m,bogus"], REPO, HYDRA)
    assert "Could not find 'quant/bogus'" in str(err.value) and "q8_0" in str(err.value)


def test_glob_sweeps_are_refused_like_dvc_refuses_them() -> None:
    with pytest.raises(ConfigError, match="Glob override"):
        expand(["quant=glob(*)"], REPO, HYDRA)


@pytest.mark.parametrize(
    ("overrides", "shared"),
    [
        # check_params (meta: same_output_for_any_params) is shared whatever the points' params
        (
            ["quant=q4_k_m,q8_0,nf4", "eval=smoke"],
            ["check_params", "acquire", "convert", "calibrate", "reference", "evaluate_base"],
        ),
        (["eval.chunks=1,2"], ["check_params", "acquire", "convert", "calibrate", "quantize"]),
        (
            ["quant.imatrix=true,false"],
            ["check_params", "acquire", "convert", "reference", "evaluate_base"],
        ),
        (["convert.outtype=f16,bf16"], ["check_params", "acquire", "calibrate", "reference"]),
        (["model.revision=a,b"], ["check_params"]),
        (["quant=q8_0"], []),
    ],
)
def test_shared_stages_are_those_every_point_computes_identically(
    overrides: list[str], shared: list[str]
) -> None:
    pipeline = load_pipeline(REPO / "dvc.yaml")
    assert pipeline.shared_stages(expand(overrides, REPO, HYDRA)) == shared


def test_stage_order_follows_dvcs_own_graph() -> None:
    from dvc.repo import Repo

    order = load_pipeline(REPO / "dvc.yaml").names
    with Repo(str(REPO)) as repo:
        graph = repo.index.graph  # an edge goes from a stage to a stage it depends on
        names = {s.addressing for s in graph.nodes}
        edges = [(a.addressing, b.addressing) for a, b in graph.edges]
    assert set(order) == names
    assert edges, "DVC sees no dependencies between stages"
    for stage, upstream in edges:
        assert order.index(upstream) < order.index(stage), f"{upstream} must run before {stage}"


def write_pipeline(tmp_path: Path, stages: dict) -> Path:
    path = tmp_path / "dvc.yaml"
    path.write_text(yaml.safe_dump({"stages": stages}), encoding="utf-8")
    return path


def test_command_interpolation_and_file_params_make_a_stage_differ(tmp_path: Path) -> None:
    pipeline = load_pipeline(
        write_pipeline(
            tmp_path,
            {
                "b": {"cmd": "run b --n ${quant.name}", "deps": ["out/a/x.bin"], "outs": ["out/b"]},
                "a": {
                    "cmd": "run a",
                    "params": [{"other.yaml": ["k"]}],
                    "outs": [{"out/a": {"cache": False}}],
                },
            },
        )
    )
    assert pipeline.names == ["a", "b"]  # b reads a file inside a's output dir
    assert pipeline.stage("a").uncached_outs == ("out/a",)
    points = expand(["quant=q4_k_m,q8_0"], REPO, HYDRA)
    assert pipeline.shared_stages(points) == ["a"]  # only b's command changes with quant.name


def test_a_cycle_and_foreach_are_errors_naming_the_file(tmp_path: Path) -> None:
    cyclic = write_pipeline(
        tmp_path,
        {
            "a": {"cmd": "a", "deps": ["b.out"], "outs": ["a.out"]},
            "b": {"cmd": "b", "deps": ["a.out"], "outs": ["b.out"]},
        },
    )
    with pytest.raises(ConfigError, match="cycle") as err:
        load_pipeline(cyclic)
    assert str(cyclic) in str(err.value)
    foreach = write_pipeline(tmp_path, {"a": {"foreach": [1, 2], "do": {"cmd": "a ${item}"}}})
    with pytest.raises(ConfigError, match="foreach"):
        load_pipeline(foreach)


def test_committed_settings_file_states_the_built_in_defaults() -> None:
    """conf/sweep.yaml and --help say the same thing; a changed default must change both."""
    committed = yaml.safe_load((REPO / "conf" / "sweep.yaml").read_text(encoding="utf-8"))
    assert committed == {f.name: getattr(SweepConfig(), f.name) for f in fields(SweepConfig)}
    assert load_config(REPO) == SweepConfig()


def test_sweep_settings_are_not_part_of_the_pipeline_params() -> None:
    assert "sweep" not in yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    defaults = yaml.safe_load((REPO / "conf" / "config.yaml").read_text(encoding="utf-8"))["defaults"]
    assert not any(isinstance(d, dict) and "sweep" in d or d == "sweep" for d in defaults)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("retries: -1\n", "retries must be >= 0"),
        ("cpus_per_task: two\n", "cpus_per_task: 'two' is not a valid value"),
        ("shared_cache: 1\n", "shared_cache: 1 is not a valid value"),
        ("adress: auto\n", "unknown sweep setting(s): adress"),
        ("object_store_mb: 10\n", "object_store_mb must be >= 75"),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_bad_settings_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_flags_override_the_file() -> None:
    config = load_config(REPO).with_overrides({"address": "auto", "retries": 0, "name": None}, "flags")
    assert (config.address, config.retries, config.name) == ("auto", 0, None)


def test_help_shows_every_default() -> None:
    from pocketquant.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["sweep"]
    defaults = SweepConfig()
    checked = 0
    for action in sub._actions:
        if action.dest == "help":
            continue
        assert "default" in (action.help or ""), f"{action.option_strings}: --help shows no default"
        if action.dest in {f.name for f in fields(SweepConfig)}:
            value = getattr(defaults, action.dest)
            assert f"default: {'none' if value is None else value}" in action.help, action.help
            checked += 1
    assert checked == len(fields(SweepConfig))
    out = subprocess.run(
        [sys.executable, "-m", "pocketquant.cli", "sweep", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "conf/sweep.yaml" in out and "--cpus-per-task" in out


def test_watcher_prefers_the_stages_own_error_line() -> None:
    events: list[dict] = []
    w = OutputWatcher(events.append)
    for line in [
        "pocketquant-sweep: stage acquire",
        "Pulling data for stage: 'acquire'",
        "pocketquant-sweep: stage quantize",
        "Running stage 'quantize':",
        "stage quantize: error: unknown ftype Q9_BOGUS",
        "ERROR: failed to reproduce 'quantize': failed to run: python stages/quantize.py, exited with 2",
    ]:
        w.feed(line + "\n")
    assert w.ran == ["quantize"] and w.restored == ["acquire"]
    assert w.last_error("fallback") == "stage quantize: error: unknown ftype Q9_BOGUS"
    assert [e["stage"] for e in events] == ["acquire", "quantize"]
    w2 = OutputWatcher(events.append)
    w2.feed("Pulling data for stage: 'acquire'\n")
    w2.feed("Unable to pull data for stage: 'acquire'\n")
    w2.feed("Running stage 'acquire':\n")
    assert w2.ran == ["acquire"] and w2.restored == []  # a failed pull then ran it
    assert w2.last_error("git clone ... exited with 128") == "Running stage 'acquire':"
