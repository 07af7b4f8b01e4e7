#!/usr/bin/env bash
# Set up everything pocketquant needs on a fresh machine, into ./.venv (idempotent).
#   bash scripts/setup.sh
# Installs exactly requirements.lock (every package pinned, every file hash-checked; refresh it with
# scripts/lock.sh), then pocketquant itself in editable mode (this compiles the Cython kernel).
# torch is the CPU build that lies on this machine kind's disk (/opt/wheels); llama-cpp-python
# builds from its pinned sdist the first time (about 14 minutes on 2 cores) and comes from pip's
# wheel cache after (a warm run takes about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip)
find_links=()
[ -d /opt/wheels ] && find_links=(--find-links /opt/wheels)
if ! ls /opt/wheels/torch-2.13.0+cpu-*.whl >/dev/null 2>&1 && ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    echo "setup: the locked torch is the local CPU wheel torch-2.13.0+cpu (expected in /opt/wheels);" \
        "put it there or into PIP_FIND_LINKS" >&2
fi
# --require-hashes: every file pip installs must match the lock; a changed or substituted upload fails.
"${PIP[@]}" install -q --require-hashes "${find_links[@]}" -r requirements.lock
# The lock already holds every dependency: --no-deps, and the kernel builds with the locked Cython.
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .
# Exactly the lock: nothing missing, nothing at another version, nothing extra (extras are removed).
.venv/bin/python -m pocketquant.envlock requirements.lock --remove-extra
# llama.cpp's own HF -> GGUF converter (convert.backend=llamacpp; the oracle of the converter tests),
# extracted from the pinned llama-cpp-python sdist into .venv/share/pocketquant/llama.cpp-convert.
.venv/bin/python scripts/install_llamacpp_converter.py

# Debian tools the tests use for real peers: an OpenSSH server for the SSH-remote test (tests start
# it on 127.0.0.1 themselves), Go, whose text/template engine checks our Ollama TEMPLATE renderer,
# Info-ZIP unzip, which the verify fuzz compares against, and Chromium, which opens the offline
# comparison and plots pages headless.
need_apt=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server openssh-client)
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
command -v unzip >/dev/null 2>&1 || need_apt+=(unzip)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null) \
            || echo "setup: could not install ${need_apt[*]}; tests that need them will be skipped" >&2
    else
        echo "setup: ${need_apt[*]} missing (needs root + apt-get); tests that need them will be skipped" >&2
    fi
fi
echo "setup: done ($(.venv/bin/python -c 'import pocketquant; print(pocketquant.__version__)'))"
