"""check_params (the first stage): every option of every conf/ group passes; an unknown or missing
key, or a model source without its path, is refused naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pocketquant.errors import ConfigError
from pocketquant.params_check import check_params

from .test_config import GROUPS, composed, options

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"


@pytest.mark.parametrize(
    "overrides",
    [[f"{g}={o}"] for g in GROUPS for o in options(g) if (g, o) not in (("model", "local"), ("model", "hub"))]
    + [["model=local", "model.path=/data/m"], ["model=hub", "model.hf_id=org/m"]],
    ids=str,
)
def test_every_option_passes(overrides: list[str]) -> None:
    check_params(composed(overrides), CONF)


def test_committed_params_pass() -> None:
    check_params(yaml.safe_load((REPO / "params.yaml").read_text()), CONF)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["model"].update(name="local"), "model=local needs model.path"),
        (lambda p: p["model"].update(name="hub"), "model=hub needs model.hf_id"),
        (lambda p: p["quant"].update(bogus=1), "unknown key quant.bogus"),
        (lambda p: p["eval"]["bench"].update(x=1), "unknown key eval.bench.x"),
        (lambda p: p["eval"].pop("chunks"), "missing key eval.chunks"),
        (lambda p: p.update(extra={}), "unknown key extra"),
        (lambda p: p["model"].update(name="nope"), "unknown embedded model 'nope'"),
    ],
)
def test_bad_params_are_refused_naming_the_key(change, message: str) -> None:  # noqa: ANN001
    params = copy.deepcopy(composed())
    change(params)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        check_params(params, CONF)
