"""The short README that travels inside the package: what the model is, what was measured, and
how to run it on a phone, with the package's real file and model names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class PromptFormat:
    """How the Modelfile formats prompts, in words for the README."""

    kind: Literal["chat", "completion", "raw"]
    title: str | None = None  # the chat format's name
    system: str | None = None  # where a system prompt goes


def _num(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def _with_error(h: Mapping[str, Any], key: str, digits: int, unit: str = "") -> str:
    text = _num(h[key], digits) + unit
    if key + "_stderr" in h:
        text += f" ± {_num(h[key + '_stderr'], digits)}{unit}"
    return text


def measured_lines(h: Mapping[str, Any], scheme: str) -> list[str]:
    """The README's "Measured" section from headline() numbers; only what was measured."""
    rows: list[tuple[str, str]] = []
    if "size_bytes" in h:
        rows.append(
            ("size", f"{h['size_bytes']:,} bytes ({h['size_gib']:.3f} GiB, {h['size_bytes'] / 1e9:.3f} GB)")
        )
    if "bits_per_weight" in h:
        rows.append(("bits per weight", _num(h["bits_per_weight"], 2)))
    if "reduction_vs_bf16_pct" in h:
        rows.append(("smaller than BF16 by", _num(h["reduction_vs_bf16_pct"], 1) + "%"))
    if "ppl" in h:
        text = _with_error(h, "ppl", 3)
        base = [f"base {_num(h['ppl_base'], 3)}"] if "ppl_base" in h else []
        if "delta_ppl_pct" in h:
            base.append(f"{h['delta_ppl_pct']:+.2f}%")
        rows.append(("perplexity", text + (f" ({', '.join(base)})" if base else "")))
    if "kld_mean" in h:
        text = "mean " + _with_error(h, "kld_mean", 4)
        if "kld_p99" in h:
            text += f", p99 {_num(h['kld_p99'], 4)}"
        rows.append(("KL divergence from the base model", text))
    if "same_top1_pct" in h:
        rows.append(("same top-1 token as the base model", _with_error(h, "same_top1_pct", 1, "%")))
    speed = [
        f"{label} {_num(h[key], 1)} tokens/s"
        for key, label in (("prompt_tokens_per_s", "prompt"), ("gen_tokens_per_s", "generation"))
        if key in h
    ]
    if speed:
        threads = f", {h['threads']} threads" if "threads" in h else ""
        rows.append(("speed on the machine that built it", ", ".join(speed) + threads))
    if not rows:
        return ["", "## Measured", "", "No measurements were given to the package step (see manifest.json)."]
    lines = ["", "## Measured", "", f"What pocketquant measured for this variant ({scheme}):", ""]
    lines += ["| metric | value |", "|---|---|", *(f"| {label} | {value} |" for label, value in rows)]
    how = []
    if "engine" in h:
        how.append(f"with {h['engine']}")
    if "corpus" in h:
        how.append(f"on the {h['corpus']} corpus")
    if "n_ctx" in h:
        how.append(f"n_ctx {h['n_ctx']}")
    if "tokens_scored" in h:
        how.append(f"{h['tokens_scored']:,} tokens scored")
    if how:
        lines += ["", "Quality measured " + ", ".join(how) + "."]
    lines += ["Everything recorded (with the settings it was measured with) is in manifest.json."]
    return lines


def render_readme(
    *,
    model_name: str,
    scheme: str,
    package_name: str,
    gguf_name: str,
    gguf_size: int,
    gguf_sha256: str,
    num_ctx: int,
    ollama_name: str,
    prompt_format: PromptFormat,
    measured: Mapping[str, Any],
) -> str:
    gib = gguf_size / 2**30
    lines = [
        f"# {model_name} ({scheme}) for your phone",
        "",
        f"`{package_name}` holds:",
        f"- `{gguf_name}`: the model ({gguf_size:,} bytes, {gib:.2f} GiB), sha256 `{gguf_sha256}`",
        "- `Modelfile`: for Ollama (prompt template, stop tokens, context size)",
        "- `manifest.json`: sha256 and size of every file, how the model was made, its metrics",
        "",
    ]
    if prompt_format.kind == "chat":
        lines += [
            f"Chat format: {prompt_format.title}; a system prompt is {prompt_format.system}.",
        ]
    elif prompt_format.kind == "completion":
        lines += [
            "**This is a base model without a chat format**: it continues text, it does not follow",
            "a conversation. The Modelfile passes your prompt through unchanged (`{{ .Prompt }}`)",
            "and stops only at the end-of-text token; write the beginning of the text you want.",
        ]
    else:
        lines += [
            "**The model's chat template was not recognised**: the Modelfile passes your prompt",
            "through unformatted (`{{ .Prompt }}`), so chat quality may suffer (see manifest.json).",
        ]
    run_cli = (
        f"llama-cli -m {gguf_name} -c {num_ctx} -cnv      # chat in the terminal"
        if prompt_format.kind == "chat"
        else f'llama-cli -m {gguf_name} -c {num_ctx} -no-cnv -n 128 -p "Once upon a time"'
    )
    run_ollama = (
        f"ollama run {ollama_name}"
        if prompt_format.kind == "chat"
        else f'ollama run {ollama_name} "Once upon a time"'
    )
    lines += [
        "",
        f"Before copying, on a computer with pocketquant: `pocketquant verify {package_name}`.",
        f"After copying: `sha256sum {gguf_name}` must print the sha256 above.",
        "",
        "## Android, Termux + llama.cpp",
        "",
        "```sh",
        "pkg update && pkg install llama-cpp unzip",
        "termux-setup-storage                      # once, to see ~/storage/downloads",
        f"mkdir -p ~/models && cd ~/models && unzip ~/storage/downloads/{package_name}",
        run_cli,
        f"llama-server -m {gguf_name} -c {num_ctx} --port 8080   # then open http://127.0.0.1:8080",
        "```",
        "",
        "llama.cpp reads the chat template (if any) from the GGUF itself.",
        "",
        "## Android, Termux + Ollama",
        "",
        "```sh",
        "pkg update && pkg install ollama unzip",
        "ollama serve &                            # leave it running",
        f"mkdir -p ~/models && cd ~/models && unzip ~/storage/downloads/{package_name}",
        f"ollama create {ollama_name} -f Modelfile",
        run_ollama,
        "```",
        "",
        f"The same two Ollama commands work on a laptop. Memory needed: about {gib:.1f} GiB plus the",
        f"context ({num_ctx} tokens); close other apps on phones with little RAM.",
    ]
    lines += measured_lines(measured, scheme)
    return "\n".join(lines) + "\n"
