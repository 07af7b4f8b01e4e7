"""Each pipeline stage's code dependencies, derived from what its script imports.

A stage's code is its script (stages/X.py, found in the stage's `cmd`) and everything that script
imports, transitively, within this repository: stage-local modules (stages/common.py), pocketquant
modules and the `__init__.py` of every package on the way (importing pocketquant.a.b runs
pocketquant/__init__.py and pocketquant/a/__init__.py). Imports inside functions count (they run
when the stage takes that branch); imports under `if TYPE_CHECKING:` do not. Two kinds of
non-Python code follow from the imports:

- a compiled extension (pocketquant._quants) stands for its sources (kernels/, see setup.py);
- package data (pocketquant/data/*) counts when a module in the closure names the file in a string.

    python -m pocketquant.pipeline_deps            # check dvc.yaml: exit 1 listing what is missing
    python -m pocketquant.pipeline_deps --write    # rewrite the code deps of every stage in place

`--write` keeps dvc.yaml's comments and order and every data dependency (artifacts/, metrics/),
and replaces the code dependencies with exactly the closure. tests/pipeline/test_deps.py fails when
dvc.yaml misses one, so a stale output can never be called up to date because its code changed.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

PACKAGE = "pocketquant"
STAGES_DIR = "stages"
DATA_DIR = f"{PACKAGE}/data"
# Compiled extension modules -> the sources they are built from (setup.py's Extension list).
EXTENSION_SOURCES: dict[str, tuple[str, ...]] = {f"{PACKAGE}._quants": ("kernels",)}
# The locked environment: every stage's output may change with a library version (and the package
# manifest records them), so every stage depends on the lock (scripts/lock.sh, docs/pipeline.md).
ENVIRONMENT = ("requirements.lock",)
# Top-level paths whose files are code; any other dependency in dvc.yaml is data and is kept as is.
CODE_ROOTS = (PACKAGE, STAGES_DIR, "kernels", *ENVIRONMENT)
# Build leftovers DVC does not hash (.dvcignore): not part of a code directory.
IGNORED_SUFFIXES = (".pyc", ".so", ".c", ".html")
_SCRIPT = re.compile(r"\bpython3?\s+(\S+\.py)\b")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_runtime(node: ast.AST) -> Iterator[ast.AST]:
    """ast.walk, minus the bodies of `if TYPE_CHECKING:` (never executed)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for sub in child.orelse:
                yield sub
                yield from _walk_runtime(sub)
            continue
        yield child
        yield from _walk_runtime(child)


def imported_names(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """Absolute names a module imports: `import a.b` -> a.b; `from a import b` -> a and a.b (b may
    be a submodule); relative imports resolved against `module`."""
    for node in _walk_runtime(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                anchor = parts if is_package else parts[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            for alias in node.names:
                if alias.name != "*":
                    yield f"{base}.{alias.name}"


def string_literals(tree: ast.Module) -> set[str]:
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


class ImportGraph:
    """Resolves module names to files of one repository and follows imports between them."""

    def __init__(self, repo: str | Path) -> None:
        self.repo = Path(repo)
        self._trees: dict[Path, ast.Module] = {}

    def tree(self, path: Path) -> ast.Module:
        if path not in self._trees:
            self._trees[path] = ast.parse((self.repo / path).read_bytes(), filename=str(path))
        return self._trees[path]

    def module_file(self, name: str, script_dir: PurePosixPath) -> PurePosixPath | None:
        """The repository file of module `name` (None: third-party, stdlib, or compiled)."""
        parts = name.split(".")
        if parts[0] == PACKAGE:
            base = PurePosixPath(*parts)
        elif len(parts) == 1 and (self.repo / script_dir / f"{name}.py").is_file():
            base = script_dir / name  # a script's sibling module (stages/common.py)
        else:
            return None
        for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
            if (self.repo / candidate).is_file():
                return candidate
        return None

    def closure(self, script: str | PurePosixPath) -> set[str]:
        """Every repository file the script runs or reads by import (posix paths, repo-relative)."""
        script = PurePosixPath(script)
        script_dir = script.parent
        seen: set[PurePosixPath] = set()
        extensions: set[str] = set()
        todo: list[tuple[PurePosixPath, str]] = [(script, "__main__")]
        while todo:
            path, module = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            is_package = path.name == "__init__.py"
            for name in imported_names(self.tree(Path(path)), module, is_package):
                if name in EXTENSION_SOURCES:
                    extensions.add(name)
                parts = name.split(".")
                # importing a.b.c runs a/__init__.py and a/b/__init__.py first
                for i in range(1, len(parts) + 1):
                    prefix = ".".join(parts[:i])
                    f = self.module_file(prefix, script_dir)
                    if f is not None and f not in seen:
                        todo.append((f, prefix))
        files = {str(p) for p in seen}
        for ext in sorted(extensions):
            files.update(EXTENSION_SOURCES[ext])
        literals = set().union(*(string_literals(self.tree(Path(p))) for p in seen))
        data = self.repo / DATA_DIR
        for f in sorted(data.iterdir()) if data.is_dir() else []:
            if f.is_file() and any(s == f.name or s.endswith("/" + f.name) for s in literals):
                files.add(f"{DATA_DIR}/{f.name}")
        return files


def stage_script(cmd: str | list[str]) -> str | None:
    """The stage script a dvc.yaml `cmd` runs (`python stages/X.py ...`), or None."""
    text = " ".join(cmd) if isinstance(cmd, list) else cmd
    m = _SCRIPT.search(text)
    return m.group(1) if m else None


def is_code(path: str) -> bool:
    return PurePosixPath(path).parts[0] in CODE_ROOTS


def covered(path: str, deps: Iterable[str]) -> bool:
    """Is `path` one of `deps` or inside a directory among them?"""
    p = PurePosixPath(path)
    return any(p == PurePosixPath(d) or PurePosixPath(d) in p.parents for d in deps)


def dep_path(entry: object) -> str:
    """A dvc.yaml deps entry: a string, or a one-key mapping {path: options}."""
    return next(iter(entry)) if isinstance(entry, dict) else str(entry)


def _source_files(directory: Path) -> set[str]:
    """Files DVC hashes in a code directory (build leftovers are in .dvcignore)."""
    return {
        p.as_posix()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in IGNORED_SUFFIXES
    }


def collapse(repo: Path, files: set[str]) -> list[str]:
    """Replace the files of a subpackage by its directory when the closure holds all of them (the
    same dependency, one line instead of many; pocketquant/ itself is never collapsed)."""
    out = set(files)
    for init in sorted(f for f in files if f.endswith("/__init__.py") and f.count("/") >= 2):
        d = init.rsplit("/", 1)[0]
        members = {str(PurePosixPath(p).relative_to(repo)) for p in _source_files(repo / d)}
        if members <= files:
            out = (out - members) | {d}
    return sorted(out)


def code_deps(repo: str | Path, stages: dict) -> dict[str, list[str]]:
    """{stage: sorted code dependency paths} for every stage of a dvc.yaml `stages:` mapping."""
    repo = Path(repo)
    graph = ImportGraph(repo)
    out = {}
    for name, stage in stages.items():
        script = stage_script(stage.get("cmd", ""))
        if script is not None:
            files = collapse(repo, graph.closure(script)) + list(ENVIRONMENT)
            out[name] = sorted(files, key=lambda p: (p != script, p))
    return out


def missing_deps(repo: str | Path, dvc_yaml: str | Path | None = None) -> dict[str, list[str]]:
    """{stage: code paths its script imports that its dvc.yaml deps do not cover}."""
    import yaml

    dvc_yaml = Path(dvc_yaml) if dvc_yaml else Path(repo) / "dvc.yaml"
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    missing = {}
    for name, needed in code_deps(repo, stages).items():
        declared = [dep_path(d) for d in stages[name].get("deps", [])]
        lacking = [p for p in needed if not covered(p, declared)]
        if lacking:
            missing[name] = lacking
    return missing


def write_deps(repo: str | Path, dvc_yaml: str | Path | None = None) -> bool:
    """Rewrite every stage's code deps as its import closure (data deps and comments stay).
    Returns whether the file changed."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedSeq

    dvc_yaml = Path(dvc_yaml) if dvc_yaml else Path(repo) / "dvc.yaml"
    ry = YAML()
    ry.preserve_quotes = True
    ry.width = 4096
    ry.indent(mapping=2, sequence=4, offset=2)
    before = dvc_yaml.read_text(encoding="utf-8")
    doc = ry.load(before)
    for name, needed in code_deps(repo, doc["stages"]).items():
        old = doc["stages"][name].get("deps") or CommentedSeq()
        data = [d for d in old if not is_code(dep_path(d))]
        new = CommentedSeq([*needed, *data])
        # keep an end-of-line comment on an entry that survives
        for i, entry in enumerate(new):
            if entry in old:
                j = list(old).index(entry)
                if j in old.ca.items:
                    new.ca.items[i] = old.ca.items[j]
        doc["stages"][name]["deps"] = new
    import io

    buf = io.StringIO()
    ry.dump(doc, buf)
    after = buf.getvalue()
    if after != before:
        dvc_yaml.write_text(after, encoding="utf-8")
    return after != before


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--repo", type=Path, default=Path("."), help="repository root (holds dvc.yaml)")
    ap.add_argument("--write", action="store_true", help="rewrite the code deps in dvc.yaml in place")
    args = ap.parse_args(argv)
    if args.write:
        changed = write_deps(args.repo)
        print(f"pipeline_deps: {'rewrote' if changed else 'unchanged:'} {args.repo / 'dvc.yaml'}")
        return 0
    missing = missing_deps(args.repo)
    for stage, paths in missing.items():
        print(f"dvc.yaml: stage {stage} misses code deps: {', '.join(paths)}", file=sys.stderr)
    if missing:
        print("run `python -m pocketquant.pipeline_deps --write` to regenerate them", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
