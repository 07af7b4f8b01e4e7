"""conf/ (Hydra) and params.yaml: the committed params are the composition of conf/, every option
of every group composes into a config the stages can use, and an unknown option lists the choices."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

hydra = pytest.importorskip("hydra")
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.errors import MissingConfigException  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
GROUPS = ("model", "quant", "eval", "package", "calib")
REQUIRED_SCHEMES = {"q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_k_s", "q3_k_m", "q2_k", "q4_0", "nf4"}


def composed(overrides: list[str] | None = None) -> dict:
    with initialize_config_dir(str(CONF), version_base=None):
        cfg = compose(config_name="config", overrides=overrides or [])
    OmegaConf.resolve(cfg)
    return OmegaConf.to_container(cfg)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_params_yaml_is_the_composition_of_conf() -> None:
    committed = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    assert committed == composed(), "params.yaml is stale: run `python stages/compose_params.py`"


def test_defaults_are_the_documented_ones() -> None:
    p = composed()
    assert p["model"]["name"] == "smollm2-135m"
    assert p["quant"]["name"] == "q4_k_m" and p["nf4"]["blocksize"] == 64
    assert p["eval"]["corpus"] == "default" and p["eval"]["n_ctx"] == 512
    assert p["convert"]["outtype"] == "f16"


def test_every_group_has_its_options() -> None:
    assert REQUIRED_SCHEMES <= set(options("quant"))
    assert {"smollm2-135m", "local", "llama-3.2-3b"} <= set(options("model"))
    for group in GROUPS:
        assert options(group), f"conf/{group}/ has no options"


@pytest.mark.parametrize(
    ("group", "option"), [(g, o) for g in GROUPS for o in options(g)], ids=lambda v: str(v)
)
def test_every_option_composes(group: str, option: str) -> None:
    p = composed([f"{group}={option}"])
    assert set(p) >= {*GROUPS, "convert", "nf4"}
    chosen = p[group]
    assert chosen["name"] == option, f"conf/{group}/{option}.yaml: name must equal the file name"
    # Each option of a group has the same keys, so a stage never meets a missing key.
    default = composed()[group]
    if group == "model":
        assert set(chosen) == set(default)
    else:
        assert set(chosen) == set(default), f"{group}={option} keys differ from the default's"


@pytest.mark.parametrize("option", options("quant"))
def test_quant_options_are_valid_schemes(option: str) -> None:
    """A scheme is its name: nf4, or a llama-quantize type (q4_k_m -> Q4_K_M); nothing else in
    conf/quant differs between schemes, so a scheme sweep changes one param."""
    q = composed([f"quant={option}"])["quant"]
    assert set(q) == {"name", "threads", "imatrix", "source"}
    assert q["imatrix"] is False and q["source"] == "base"
    if q["name"] != "nf4":
        from pocketquant.quantize import parse_ftype

        assert parse_ftype(q["name"]).name == q["name"].upper()


def test_nf4_settings_are_valid() -> None:
    from pocketquant.nf4 import BLOCKSIZES, COMPUTE_DTYPES

    n = composed()["nf4"]
    assert n["blocksize"] in BLOCKSIZES and n["compute_dtype"] in COMPUTE_DTYPES
    assert n["compute_dtype"] == "bfloat16" and isinstance(n["double_quant"], bool)


def test_unknown_scheme_lists_the_options() -> None:
    with pytest.raises(MissingConfigException) as info:
        composed(["quant=bogus"])
    message = str(info.value)
    assert "quant/bogus" in message and "Available options in 'quant'" in message
    for scheme in REQUIRED_SCHEMES:
        assert scheme in message


def test_stage_params_exist_in_params_yaml() -> None:
    """Every key a stage lists under `params:` is in params.yaml (else `dvc repro` fails)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name, stage in stages.items():
        for key in stage.get("params", []):
            node = params
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"stage {name}: params key {key} missing"
                node = node[part]


def test_eval_stages_alone_read_eval_params() -> None:
    """Only evaluation stages list eval.* (so an eval change never re-quantizes)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    readers = {n for n, s in stages.items() if any(str(k).startswith("eval") for k in s.get("params", []))}
    readers.discard("check_params")  # reads every key to validate it; its output never changes
    assert readers == {"reference", "evaluate_base", "evaluate"}
    for name in ("acquire", "convert", "quantize"):
        assert not any(str(k).startswith(("eval", "package")) for k in stages[name].get("params", []))
