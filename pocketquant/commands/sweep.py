"""`pocketquant sweep -S 'quant=q4_k_m,q8_0,nf4' -S eval=smoke`: experiments fanned out on Ray."""

from __future__ import annotations

import argparse

from pocketquant.sweep.config import CONFIG_FILE, SweepConfig

_DEFAULTS = SweepConfig()


def _default(key: str) -> str:
    value = getattr(_DEFAULTS, key)
    return f"default: {'none' if value is None else value}"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run a `dvc exp run -S` sweep as Ray tasks, each in its own clone, results via the remotes",
        description=(
            "Expand -S overrides exactly as `dvc exp run --queue` does (comma sweeps: one experiment per "
            "combination) and run each experiment as a task on a Ray cluster, in its own clone of the "
            "committed revision (taken from the git remote), sharing the DVC remote and its run-cache. "
            "Stages every experiment shares (acquire, convert, ...) run once, first, and the experiments "
            "restore them. Each task pushes its outputs stage by stage, records its experiment with "
            "`dvc exp run` and pushes it with `dvc exp push`; the driver pulls each one back "
            "(`dvc exp show` lists them). A task whose worker dies is retried; a failing stage is "
            f"reported with its last error line. Defaults below are built in; {CONFIG_FILE} in the "
            "repository overrides them, flags override both. Exit status 0 when every experiment is "
            "done, 1 when any failed, 2 for bad settings. See docs/sweeps.md."
        ),
    )
    p.add_argument(
        "-S",
        "--set-param",
        dest="set_params",
        action="append",
        default=[],
        metavar="[FILE:]KEY=VALUE",
        help="override, as for `dvc exp run -S` (repeatable; 'a,b,c' sweeps; default: none)",
    )
    p.add_argument(
        "--address",
        help=f"Ray cluster: auto, HOST:6379, ray://HOST:10001 ({_default('address')}: a new local cluster)",
    )
    p.add_argument(
        "--cpus-per-task",
        type=float,
        help=f"Ray CPUs per experiment, also its OMP_NUM_THREADS ({_default('cpus_per_task')})",
    )
    p.add_argument(
        "--local-cpus", type=int, help=f"CPUs of the local cluster ({_default('local_cpus')}: all)"
    )
    p.add_argument(
        "--object-store-mb",
        type=int,
        help=f"object store of the local cluster in MiB ({_default('object_store_mb')})",
    )
    p.add_argument(
        "--git-remote",
        help=f"git remote workers clone from and push experiments to ({_default('git_remote')})",
    )
    p.add_argument(
        "--dvc-remote",
        help=f"DVC remote all tasks share ({_default('dvc_remote')}: the repository's default)",
    )
    p.add_argument(
        "--work-dir", help=f"on each worker node: clones and the node's DVC cache ({_default('work_dir')})"
    )
    p.add_argument(
        "--shared-cache",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"one DVC cache per node for all its tasks, else one per clone ({_default('shared_cache')})",
    )
    p.add_argument(
        "--retries", type=int, help=f"re-runs of an experiment whose worker died ({_default('retries')})"
    )
    p.add_argument(
        "--upstream",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"run the stages all experiments share once, first ({_default('upstream')})",
    )
    p.add_argument(
        "--pull-outputs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"also pull the experiments' DVC outputs, not only git refs ({_default('pull_outputs')})",
    )
    p.add_argument(
        "--keep-clones",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"keep each task's clone on its worker ({_default('keep_clones')})",
    )
    p.add_argument(
        "--name", help=f"experiment names NAME-1, NAME-2, ... ({_default('name')}: sweep-<random>)"
    )
    p.add_argument("--config", help=f"settings file (default: REPO/{CONFIG_FILE} when present)")
    p.add_argument(
        "-C", "--repo", default=".", help="the pipeline's repository (default: the current directory)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console

    from pocketquant.sweep.config import load_config
    from pocketquant.sweep.driver import run_sweep
    from pocketquant.sweep.source import git

    repo = Path(git(Path(args.repo), "rev-parse", "--show-toplevel"))
    config = load_config(repo, Path(args.config) if args.config else None)
    flags = {
        key: getattr(args, key)
        for key in (
            "address",
            "cpus_per_task",
            "local_cpus",
            "object_store_mb",
            "git_remote",
            "dvc_remote",
            "work_dir",
            "shared_cache",
            "retries",
            "upstream",
            "pull_outputs",
            "keep_clones",
            "name",
        )
    }
    config = config.with_overrides(flags, "command line")
    console = Console()
    outcome = run_sweep(repo, args.set_params, config, console)
    done = len(outcome.experiments) - len(outcome.failed)
    console.print(
        f"sweep {outcome.sweep}: {done} of {len(outcome.experiments)} experiment(s) done"
        + (f", {len(outcome.failed)} failed" if outcome.failed else "")
        + f"; stage runs {outcome.stage_runs}; record {outcome.record_dir / 'record.json'}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if done:
        console.print("compare them: dvc exp show", markup=False, highlight=False, soft_wrap=True)
    return 1 if outcome.failed else 0
