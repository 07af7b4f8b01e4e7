"""Write params.yaml from conf/ exactly as `dvc exp run` does (DVC's own Hydra composition).

    python stages/compose_params.py                  # the defaults: what is committed
    python stages/compose_params.py quant=q8_0 eval=smoke

Run it after editing conf/, then commit params.yaml (a test checks they agree). `dvc exp run`
recomposes params.yaml itself; `dvc repro` uses it as it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dvc.utils.hydra import compose_and_dump

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, as after `dvc exp run -S`")
    ap.add_argument("--repo", type=Path, default=REPO, help="repository root (default: this checkout)")
    args = ap.parse_args()
    repo = args.repo.resolve()
    compose_and_dump(repo / "params.yaml", str(repo / "conf"), None, "config", str(repo), args.overrides)


if __name__ == "__main__":
    main()
