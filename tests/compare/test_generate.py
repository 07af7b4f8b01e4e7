"""Generations that generate: the default prompts, sent as a chat turn, give text on the real model;
sent bare, the instruction prompts end at once (the bug the committed results showed). Every
generation says why it stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pocketquant.evaluate.generate import cut_at_stop, generate_texts, stop_reason

REPO = Path(__file__).resolve().parents[2]


def test_stop_reasons_and_stop_strings():
    assert stop_reason(8, 8) == "max_tokens" and stop_reason(3, 8) == "eos"
    assert cut_at_stop("Paris.\nUser: next", ("\nUser:", "Paris")) == ("", "Paris")
    assert cut_at_stop("Paris.\nUser: next", ("\nUser:",)) == ("Paris.", "\nUser:")
    assert cut_at_stop("Paris.", ("\nUser:", "")) == ("Paris.", None)


@pytest.mark.slow
def test_default_prompts_generate_text_in_the_chat_template(smollm2_hf_dir):
    from pocketquant.evaluate.hf import TransformersModel

    prompts = yaml.safe_load((REPO / "conf" / "eval" / "default.yaml").read_text())["prompts"]
    model = TransformersModel(smollm2_hf_dir, threads=2)
    bare = generate_texts(model, prompts[1:], max_new_tokens=4)
    assert [(g["n_tokens"], g["stop_reason"], g["chat_template"]) for g in bare] == [(0, "eos", False)] * 2
    chat = generate_texts(
        model, prompts, max_new_tokens=6, chat_template_from=smollm2_hf_dir, stop=("\n\n\n",)
    )
    for g in chat:
        assert g["chat_template"] and g["n_tokens"] > 0 and g["completion"].strip(), g
        assert g["stop_reason"] in ("eos", "max_tokens") and (g["stop_reason"] == "max_tokens") == (
            g["n_tokens"] == 6
        )
    assert [g["prompt"] for g in chat] == prompts  # the user's prompt is recorded, not the template
    stopped = generate_texts(
        model, prompts[1:2], max_new_tokens=6, chat_template_from=smollm2_hf_dir, stop=(" ",)
    )
    assert (
        stopped[0]["stop_reason"] == "stop"
        and stopped[0]["stop_string"] == " "
        and " " not in stopped[0]["completion"]
    )
