#!/usr/bin/env bash
# Refresh requirements.lock: resolve pyproject.toml's dependencies with every extra, plus
# requirements/lock.in (the local CPU torch wheel, the build tools), to exact versions with the
# sha256 of every file. Commit the result, then `bash scripts/setup.sh` installs exactly it.
#   bash scripts/lock.sh                       # keep what is pinned, add what is new
#   bash scripts/lock.sh --upgrade             # newest versions everywhere
#   bash scripts/lock.sh --upgrade-package ray # one package
# pip-compile runs from a throwaway venv (pip-tools is not a dependency of pocketquant). The lock
# is for this platform (Linux x86-64, CPython 3.11): markers are resolved here.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
PIP_TOOLS_VERSION=7.6.2
tools=$(mktemp -d "${TMPDIR:-/tmp}/pq-lock.XXXXXX")
trap 'rm -rf "$tools"' EXIT
"$PY" -m venv "$tools"
"$tools/bin/python" -m pip install -q "pip-tools==$PIP_TOOLS_VERSION"
find_links=()
[ -d /opt/wheels ] && find_links=(--find-links /opt/wheels)
"$tools/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras --all-extras \
    --no-emit-index-url --no-emit-find-links "${find_links[@]}" \
    --output-file requirements.lock "$@" pyproject.toml requirements/lock.in
echo "lock: wrote requirements.lock ($(grep -cE '^[A-Za-z0-9]' requirements.lock) packages)"
