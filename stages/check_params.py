"""Stage check_params: refuse a bad configuration (unknown or missing key in params.yaml, a model
source without its path or hub id) before any other stage runs, so nothing is deleted by DVC for a
run that could never succeed. Every other stage descends from this one (acquire depends on its
output, whose bytes never change, so a passing check re-runs nothing downstream)."""

from __future__ import annotations

import argparse
from pathlib import Path

from common import load_params, run

from pocketquant.atomic import atomic_path
from pocketquant.errors import ConfigError
from pocketquant.params_check import check_params

CONF = Path(__file__).resolve().parents[1] / "conf"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="marker file to write when the params pass")
    args = ap.parse_args()
    try:
        check_params(load_params(), CONF)
    except ConfigError as exc:
        raise ConfigError(
            f"{exc} (no output was touched; after a failed `dvc exp run`, `git checkout params.yaml` "
            "restores the committed params)"
        ) from exc
    with atomic_path(args.out) as tmp:
        tmp.write_text("params.yaml passed pocketquant.params_check\n", encoding="utf-8")


if __name__ == "__main__":
    run("check_params", main)
