#!/usr/bin/env bash
# Set up everything pocketquant needs on a fresh machine, into ./.venv (idempotent).
#   bash scripts/setup.sh
# torch is pinned to the CPU build that lies on this machine kind's disk; llama-cpp-python builds
# from source the first time (about 14 minutes on 2 cores) and comes from pip's wheel cache after.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip setuptools wheel Cython numpy
$PIP install -q "torch==2.13.0"
$PIP install -q "llama-cpp-python==0.3.36"
# Editable install compiles the Cython kernel in kernels/.
$PIP install -q --no-build-isolation -e ".[pipeline,runtime,dev]"
# llama.cpp's own HF -> GGUF converter (convert.backend=llamacpp; the oracle of the converter tests),
# extracted from the pinned llama-cpp-python sdist into .venv/share/pocketquant/llama.cpp-convert.
.venv/bin/python scripts/install_llamacpp_converter.py

# Debian tools the tests use for real peers: an OpenSSH server for the SSH-remote test (tests start
# it on 127.0.0.1 themselves) and Go, whose text/template engine checks our Ollama TEMPLATE renderer.
need_apt=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server openssh-client)
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null) \
            || echo "setup: could not install ${need_apt[*]}; tests that need them will be skipped" >&2
    else
        echo "setup: ${need_apt[*]} missing (needs root + apt-get); tests that need them will be skipped" >&2
    fi
fi
echo "setup: done ($(.venv/bin/python -c 'import pocketquant; print(pocketquant.__version__)'))"
