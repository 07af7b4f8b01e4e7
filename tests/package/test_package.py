"""Package -> verify: integrity, determinism, damage detection, bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
from package_testlib import COMMIT, METRICS, PARAMS, build_kwargs

from pocketquant.errors import GGUFFormatError, PackageError
from pocketquant.package import build_package, verify_package
from pocketquant.package.modelfile import parse_modelfile

GGUF_MEMBER = "smollm2-135m-instruct-q4_1.gguf"
MEMBERS = [GGUF_MEMBER, "Modelfile", "README.md", "manifest.json"]


def _rewrite(
    src: Path, dst: Path, *, change: str | None = None, drop: str | None = None, add: str | None = None
) -> None:
    """Copy a package as a valid zip (correct CRCs) with one member's bytes altered, dropped or one added."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename == drop:
                continue
            data = zin.read(info)
            if info.filename == change:
                pos = len(data) // 2
                data = data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1 :]
            zout.writestr(info, data)
        if add:
            zout.writestr(add, b"surprise\n")


def _flip_raw(src: Path, dst: Path, member: str) -> None:
    """Flip one byte inside the member's stored/compressed data in the zip file itself."""
    shutil.copyfile(src, dst)
    with zipfile.ZipFile(dst) as zf:
        info = zf.getinfo(member)
    with open(dst, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
        pos = info.header_offset + 30 + name_len + extra_len + info.compress_size // 2
        f.seek(pos)
        byte = f.read(1)[0]
        f.seek(pos)
        f.write(bytes([byte ^ 0x01]))


@pytest.mark.slow
def test_package_verifies_and_generates(package_zip, capsys):
    pytest.importorskip("llama_cpp")
    result = verify_package(package_zip, progress=False)
    assert sorted(result.files) == sorted(m for m in MEMBERS if m != "manifest.json")
    assert result.n_generated > 0 and result.generated and result.generated.strip()
    # the prompt went through the ChatML template, including SmolLM2's default system prompt
    assert result.prompt is not None and result.prompt.startswith("<|im_start|>system\n")
    assert result.prompt.endswith("<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n")
    assert any("matches the chat template" in c for c in result.checks)

    from pocketquant.cli import main

    # the command wraps the same function (its model load is covered above)
    assert main(["verify", str(package_zip), "--no-load", "--quiet"]) == 0
    assert "3 files verified (model not loaded: --no-load)" in capsys.readouterr().out


def test_package_contents(package_zip, smollm2_gguf):
    with zipfile.ZipFile(package_zip) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == sorted(MEMBERS)
        for info in infos:
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644
            assert info.extra == b""
            want = zipfile.ZIP_STORED if info.filename.endswith(".gguf") else zipfile.ZIP_DEFLATED
            assert info.compress_type == want, info.filename
        manifest = json.loads(zf.read("manifest.json"))
        modelfile = parse_modelfile(zf.read("Modelfile").decode())
        readme = zf.read("README.md").decode()
        gguf_sha = hashlib.sha256(zf.read(GGUF_MEMBER)).hexdigest()

    assert gguf_sha == hashlib.sha256(smollm2_gguf.read_bytes()).hexdigest()
    assert manifest["files"][GGUF_MEMBER] == {"sha256": gguf_sha, "size": smollm2_gguf.stat().st_size}
    assert set(manifest["files"]) == {GGUF_MEMBER, "Modelfile", "README.md"}
    assert manifest["model"] == "SmolLM2-135M-Instruct" and manifest["scheme"] == "q4_1"
    assert manifest["params"] == PARAMS and manifest["metrics"] == METRICS
    assert manifest["git_commit"] == COMMIT
    assert set(manifest["tools"]) == {"pocketquant", "gguf", "llama-cpp-python", "python"}
    assert manifest["tools"]["gguf"]  # installed here, so recorded
    assert manifest["modelfile"]["template_family"] == "chatml"
    assert manifest["modelfile"]["template_kind"] == "chat" and manifest["modelfile"]["system"] == "turn"
    assert manifest["warnings"] == []
    assert manifest["package"] == package_zip.name == "smollm2.zip"
    assert manifest["ollama_model"] == "smollm2-135m-instruct-q4_1"
    assert manifest["measured"]["ppl"] == METRICS["ppl"] and manifest["measured"]["size_bytes"] == 98362432

    assert modelfile.from_ == f"./{GGUF_MEMBER}"
    assert modelfile.parameters["stop"] == ["<|im_start|>", "<|im_end|>"]
    assert modelfile.parameter("num_ctx") == "1024"
    assert "{{ .Content }}" in (modelfile.template or "")

    for needle in (
        "pkg install llama-cpp",
        f"llama-cli -m {GGUF_MEMBER} -c 1024 -cnv",
        "llama-server",
        "unzip ~/storage/downloads/smollm2.zip",
        "pocketquant verify smollm2.zip",
        "ollama create smollm2-135m-instruct-q4_1 -f Modelfile",
        "ollama run smollm2-135m-instruct-q4_1",
        "Chat format: ChatML (Qwen2/2.5, Qwen3, SmolLM2); a system prompt is a turn of its own.",
        "## Measured",
        "| perplexity | 27.500 |",
        "| KL divergence from the base model | mean 0.0123 |",
        gguf_sha,
    ):
        assert needle in readme
    assert "PACKAGE.zip" not in readme


def test_build_is_deterministic(package_zip, smollm2_gguf, tmp_path):
    again = build_package(smollm2_gguf, tmp_path / package_zip.name, **build_kwargs())
    assert again.read_bytes() == package_zip.read_bytes()
    # a different input changes the bytes (the test above can fail)
    other = build_package(
        smollm2_gguf, tmp_path / "other.zip", **build_kwargs(metrics={**METRICS, "ppl": 27.6})
    )
    assert other.read_bytes() != package_zip.read_bytes()


@pytest.mark.parametrize("member", MEMBERS)
@pytest.mark.parametrize("how", ["rezipped", "raw"])
def test_flipped_byte_is_caught_and_named(package_zip, tmp_path, member, how, capsys):
    bad = tmp_path / "bad.zip"
    if how == "rezipped":  # a valid zip whose member content changed: the manifest must catch it
        _rewrite(package_zip, bad, change=member)
    else:  # bit rot inside the zip file: the zip CRC (or the manifest) must catch it
        _flip_raw(package_zip, bad, member)
    with pytest.raises(PackageError, match=member.replace(".", r"\.")):
        verify_package(bad, progress=False)

    if member == "Modelfile" and how == "rezipped":
        from pocketquant.cli import main

        assert main(["verify", str(bad), "--quiet"]) == 2
        assert "Modelfile" in capsys.readouterr().err


@pytest.mark.parametrize("member", MEMBERS)
def test_missing_member_is_named(package_zip, tmp_path, member):
    bad = tmp_path / "bad.zip"
    _rewrite(package_zip, bad, drop=member)
    with pytest.raises(PackageError, match=rf"{member.replace('.', '.')}: .*missing|{member} is missing"):
        verify_package(bad, progress=False)


def test_unlisted_member_is_named(package_zip, tmp_path):
    bad = tmp_path / "bad.zip"
    _rewrite(package_zip, bad, add="extra.txt")
    with pytest.raises(PackageError, match=r"extra\.txt: in the zip but not listed"):
        verify_package(bad, progress=False)


def test_not_a_zip(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(PackageError, match="bad.zip: not a readable zip"):
        verify_package(bad, progress=False)


def test_bad_inputs_leave_no_output(smollm2_gguf, tmp_path):
    out = tmp_path / "out" / "pkg.zip"
    with pytest.raises(PackageError, match=r"metrics\.ppl"):
        build_package(smollm2_gguf, out, **build_kwargs(metrics={"ppl": float("nan")}))
    with pytest.raises(PackageError, match="num_ctx 100000 exceeds the context length"):
        build_package(smollm2_gguf, out, **build_kwargs(num_ctx=100000))
    with pytest.raises(PackageError, match="not found"):
        build_package(tmp_path / "nope.gguf", out, **build_kwargs())
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"NOTGGUF" * 10)
    with pytest.raises(GGUFFormatError, match="model.gguf: not a GGUF file"):
        build_package(not_gguf, out, **build_kwargs())
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_unknown_template_fails_or_falls_back(smollm2_gguf, tmp_path):
    pytest.importorskip("jinja2")
    alpaca = (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}### Instruction:\n"
        "{{ m['content'] }}\n\n{% else %}### Response:\n{{ m['content'] }}\n\n{% endif %}{% endfor %}"
        "### Response:\n"
    )
    out = tmp_path / "pkg.zip"
    with pytest.raises(
        PackageError, match="not a chat format pocketquant recognises .*--unknown-template raw"
    ):
        build_package(smollm2_gguf, out, **build_kwargs(chat_template=alpaca))
    assert not out.exists()

    build_package(smollm2_gguf, out, **build_kwargs(chat_template=alpaca, unknown_template="raw"))
    with zipfile.ZipFile(out) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        modelfile = parse_modelfile(zf.read("Modelfile").decode())
        readme = zf.read("README.md").decode()
    assert modelfile.template == "{{ .Prompt }}"
    assert manifest["modelfile"]["template_family"] is None
    assert manifest["modelfile"]["template_kind"] == "raw"
    assert any("not a chat format" in w for w in manifest["warnings"])
    assert "chat template was not recognised" in readme
    assert verify_package(out, load_model=False, progress=False).prompt == "Name three colors."


def test_empty_stop_is_refused(smollm2_gguf, tmp_path, capsys):
    from pocketquant.cli import main

    out = tmp_path / "pkg.zip"
    with pytest.raises(PackageError, match="empty stop"):
        build_package(smollm2_gguf, out, **build_kwargs(stop=["<|im_end|>", ""]))
    argv = ["package", str(smollm2_gguf), str(out), "--model-name", "m", "--scheme", "q4_1", "--quiet"]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--stop", ""])
    assert exit_.value.code == 2
    assert "argument --stop: an empty stop string" in capsys.readouterr().err
    assert not out.exists()
    assert main([*argv, "--stop", "<|im_end|>"]) == 0
    with zipfile.ZipFile(out) as zf:
        assert parse_modelfile(zf.read("Modelfile").decode()).parameters["stop"] == ["<|im_end|>"]


@pytest.mark.slow
def test_template_that_disagrees_with_the_gguf_is_caught(package_zip, tmp_path):
    """A Modelfile edited consistently (manifest re-sealed) but with a TEMPLATE that drops
    SmolLM2's default system prompt: hashes pass, the template check must not."""
    pytest.importorskip("llama_cpp")
    from pocketquant.package.build import seal_manifest

    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(package_zip) as zin, zipfile.ZipFile(bad, "w") as zout:
        modelfile = zin.read("Modelfile").decode()
        start = modelfile.index('{{- if and (eq $i 0) (ne .Role "system") }}')
        modelfile = (modelfile[:start] + modelfile[modelfile.index("\n", start) + 1 :]).encode()
        manifest = json.loads(zin.read("manifest.json"))
        manifest["files"]["Modelfile"] = {
            "sha256": hashlib.sha256(modelfile).hexdigest(),
            "size": len(modelfile),
        }
        for info in zin.infolist():
            data = {"Modelfile": modelfile, "manifest.json": seal_manifest(manifest)}.get(info.filename)
            zout.writestr(info, data if data is not None else zin.read(info))
    assert verify_package(bad, load_model=False, progress=False).prompt  # integrity holds
    with pytest.raises(PackageError, match="Modelfile: TEMPLATE renders .* but the chat template in"):
        verify_package(bad, progress=False)


def test_package_command_matches_the_library(package_zip, smollm2_gguf, tmp_path, capsys):
    from pocketquant.cli import main

    metrics, params = tmp_path / "metrics.json", tmp_path / "params.json"
    metrics.write_text(json.dumps(METRICS))
    params.write_text(json.dumps(PARAMS))
    out = tmp_path / package_zip.name  # the name is part of the README and manifest
    argv = [
        "package",
        str(smollm2_gguf),
        str(out),
        "--model-name",
        "SmolLM2-135M-Instruct",
        "--scheme",
        "q4_1",
    ]
    argv += ["--metrics", str(metrics), "--params", str(params), "--num-ctx", "1024", "--git-commit", COMMIT]
    assert main([*argv, "--quiet"]) == 0
    assert out.read_bytes() == package_zip.read_bytes()
    assert main(["verify", str(out), "--no-load", "--quiet"]) == 0

    metrics.write_text("[1, 2]")
    assert main([*argv, "--quiet"]) == 2
    assert "metrics must be a JSON object" in capsys.readouterr().err


def test_default_num_ctx_is_capped_at_the_models_context(tiny_llama_dir, smollm2_gguf, tmp_path):
    """No num_ctx asked for: 2048, or a short-context model's own length (packaged, not refused)."""
    from pocketquant.convert import convert_hf_to_gguf

    tiny = convert_hf_to_gguf(tiny_llama_dir, tmp_path / "tiny.gguf", "f32", name="tiny", progress=False)
    for gguf, expected in ((tiny, "256"), (smollm2_gguf, "2048")):
        out = build_package(gguf, tmp_path / f"{gguf.stem}.zip", **build_kwargs(num_ctx=None))
        with zipfile.ZipFile(out) as z:
            modelfile = parse_modelfile(z.read("Modelfile").decode())
        assert modelfile.parameter("num_ctx") == expected, gguf
