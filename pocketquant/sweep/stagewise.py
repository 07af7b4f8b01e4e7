"""Reproduce stages one at a time in a DVC repository and push each one as soon as it is done.

    python -m pocketquant.sweep.stagewise acquire convert quantize ...    # run inside the clone

A sweep task runs this in its clone before `dvc exp run`: every stage is reproduced with `--pull`
semantics (restored from the run-cache and the remote when anyone already ran it) and, when it
changed, pushed with its run-cache entry right away. A worker killed in the middle of an
experiment therefore loses only the stage it was running; a retry (or a teammate) restores the
finished ones instead of recomputing them. `dvc exp run` afterwards finds every stage up to date
and only records the experiment.

It uses DVC's Python API (`Repo.reproduce`, `Repo.push`) in one process: one `dvc` command per
stage would cost seconds of start-up each. DVC's own log lines ("Running stage 'x'", "Stage 'x' is
cached") are printed as the `dvc` command prints them; the lines starting with MARK tell the sweep
task which stage is current.
"""

from __future__ import annotations

import argparse
import sys

MARK = "pocketquant-sweep:"


def reproduce_and_push(stages: list[str], *, push: bool, remote: str | None) -> int:
    from dvc.exceptions import DvcException  # importing dvc sets up its log output, as for `dvc`
    from dvc.repo import Repo

    for name in stages:
        print(f"{MARK} stage {name}", flush=True)
        try:
            # A fresh Repo per stage: each reproduce/push sees the lock file the previous one wrote.
            with Repo(".") as repo:
                changed = repo.reproduce(name, single_item=True, pull=True)
                if push and changed:
                    repo.push(targets=[name], run_cache=True, remote=remote)
                    # `cache: false` outputs (metrics) are in the run-cache entry but `dvc push`
                    # skips them; without them another machine cannot restore the stage.
                    uncached = [
                        o.hash_info for s in changed for o in s.outs if not o.use_cache and o.hash_info
                    ]
                    if uncached:
                        repo.cloud.push(uncached, remote=remote)
                    print(f"{MARK} pushed {name}", flush=True)
        except DvcException as exc:
            causes = [str(exc)]
            cause = exc.__cause__
            while cause is not None:
                causes.append(str(cause))
                cause = cause.__cause__
            print(f"ERROR: {': '.join(c for c in causes if c)}", flush=True)
            return 1
    print(f"{MARK} done", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pocketquant.sweep.stagewise", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "stages", nargs="+", help="stage names, in an order where every stage follows its upstream"
    )
    ap.add_argument("--no-push", action="store_true", help="do not push (default: push each changed stage)")
    ap.add_argument(
        "--remote", default=None, help="DVC remote to push to (default: the repository's default)"
    )
    args = ap.parse_args(argv)
    return reproduce_and_push(args.stages, push=not args.no_push, remote=args.remote)


if __name__ == "__main__":
    sys.exit(main())
