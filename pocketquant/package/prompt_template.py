"""The Modelfile's prompt side for one GGUF: its TEMPLATE and stop tokens.

Three cases: a chat template of a known format (the derived Ollama template, the format's
end-of-turn stops), no chat template at all (a base model such as Phi-2: plain completion with
`{{ .Prompt }}`, stopping only at EOS), or an unrecognised chat template (refused, or with
unknown_template="raw" the same plain completion and a warning).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pocketquant.errors import PackageError
from pocketquant.package.chat_formats import CHAT_FORMATS
from pocketquant.package.chat_template import PINNED_DATE, SYSTEM_PLACEMENT_TEXT, derive_chat_format
from pocketquant.package.device_readme import PromptFormat
from pocketquant.package.ggufmeta import GGUFInfo

COMPLETION_TEMPLATE = "{{ .Prompt }}"  # Ollama's own default for models without a template


@dataclass(frozen=True)
class PromptTemplate:
    go_template: str
    stops: tuple[str, ...]  # before single_token_stops
    readme: PromptFormat
    family: str | None = None
    system: str | None = None  # where a system prompt goes (chat formats only)
    warnings: list[str] = field(default_factory=list)


def choose_prompt_template(
    jinja: str | None, info: GGUFInfo, *, unknown_template: Literal["error", "raw"], where: str
) -> PromptTemplate:
    eos = (info.eos_token,) if info.eos_token else ()
    if jinja is None:
        return PromptTemplate(COMPLETION_TEMPLATE, eos, PromptFormat("completion"))
    try:
        fmt = derive_chat_format(
            jinja, bos_token=info.bos_token, eos_token=info.eos_token, add_bos=info.add_bos
        )
    except PackageError as exc:
        if unknown_template != "raw":
            raise PackageError(
                f"{where}: {exc} (--unknown-template raw packages it without chat formatting)"
            ) from exc
        return PromptTemplate(
            COMPLETION_TEMPLATE,
            eos,
            PromptFormat("raw"),
            warnings=[
                f"raw TEMPLATE written: {exc}",
                "the Modelfile TEMPLATE passes the prompt through unformatted; chat quality may suffer",
            ],
        )
    title = next(spec.title for spec in CHAT_FORMATS if spec.name == fmt.family)
    warnings = []
    if "strftime_now" in jinja:
        warnings.append(
            f"the chat template prints today's date; the TEMPLATE carries {PINNED_DATE:%d %b %Y} instead, "
            "so the same model always gives the same package"
        )
    return PromptTemplate(
        fmt.go_template(),
        fmt.stops,
        PromptFormat("chat", title, SYSTEM_PLACEMENT_TEXT[fmt.system]),
        family=fmt.family,
        system=fmt.system,
        warnings=warnings,
    )


def check_stops(stops: Sequence[str]) -> None:
    """Stops given by the user: an empty one would end every answer before it starts (and
    `pocketquant verify` rejects it)."""
    if any(s == "" for s in stops):
        raise PackageError("stop: an empty stop string would end every answer at once (--stop '')")


def single_token_stops(stops: Sequence[str], info: GGUFInfo) -> tuple[list[str], list[str]]:
    """(kept, left out): a format's stop is kept if it is one special token of this model (or its
    EOS); a turn tag the vocabulary lacks (Zephyr's <|user|> in TinyLlama's) would be matched as
    several ordinary tokens, which `pocketquant verify` refuses. Without token types in the GGUF
    nothing can be told, so everything is kept."""
    if not info.special_tokens:
        return list(dict.fromkeys(stops)), []
    kept = [s for s in dict.fromkeys(stops) if s in info.special_tokens or s == info.eos_token]
    return kept, [s for s in dict.fromkeys(stops) if s not in kept]
