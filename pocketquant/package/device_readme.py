"""The short README that travels inside the package: how to run the model on a phone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _metrics_lines(metrics: Mapping[str, Any] | None) -> list[str]:
    if not metrics:
        return []
    lines = ["", "## Measured (see manifest.json for everything recorded)", ""]
    for key in sorted(metrics):
        value = metrics[key]
        if isinstance(value, (int, float, str, bool)):
            lines.append(f"- {key}: {value}")
    return lines if len(lines) > 3 else []


def render_readme(
    *,
    model_name: str,
    scheme: str,
    gguf_name: str,
    gguf_size: int,
    gguf_sha256: str,
    num_ctx: int,
    ollama_name: str,
    metrics: Mapping[str, Any] | None,
) -> str:
    gib = gguf_size / 2**30
    lines = [
        f"# {model_name} ({scheme}) for your phone",
        "",
        "Files:",
        f"- `{gguf_name}`: the model ({gguf_size:,} bytes, {gib:.2f} GiB), sha256 `{gguf_sha256}`",
        "- `Modelfile`: for Ollama (chat template, stop tokens, context size)",
        "- `manifest.json`: sha256 and size of every file, how the model was made, its metrics",
        "",
        "Before copying, on a computer with pocketquant: `pocketquant verify PACKAGE.zip`.",
        f"After copying: `sha256sum {gguf_name}` must print the sha256 above.",
        "",
        "## Android, Termux + llama.cpp",
        "",
        "```sh",
        "pkg update && pkg install llama-cpp unzip",
        "termux-setup-storage                      # once, to see ~/storage/downloads",
        "mkdir -p ~/models && cd ~/models && unzip ~/storage/downloads/PACKAGE.zip",
        f"llama-cli -m {gguf_name} -c {num_ctx} -cnv      # chat in the terminal",
        f"llama-server -m {gguf_name} -c {num_ctx} --port 8080   # then open http://127.0.0.1:8080",
        "```",
        "",
        "llama.cpp reads the chat template from the GGUF itself.",
        "",
        "## Android, Termux + Ollama",
        "",
        "```sh",
        "pkg update && pkg install ollama unzip",
        "ollama serve &                            # leave it running",
        "mkdir -p ~/models && cd ~/models && unzip ~/storage/downloads/PACKAGE.zip",
        f"ollama create {ollama_name} -f Modelfile",
        f"ollama run {ollama_name}",
        "```",
        "",
        f"The same two Ollama commands work on a laptop. Memory needed: about {gib:.1f} GiB plus the",
        f"context ({num_ctx} tokens); close other apps on phones with little RAM.",
    ]
    lines += _metrics_lines(metrics)
    return "\n".join(lines) + "\n"
