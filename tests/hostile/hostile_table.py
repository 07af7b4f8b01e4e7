"""THE TABLE of hostile inputs: one row per bad input or failing environment, for every command.

Each row builds its input in a sandbox (`make` returns the command line: `pocketquant ARGS`, or a
stage script `stages/X.py ARGS`) and says what must happen: the exit status, fragments (regular
expressions) of the one error line, and, for the few rows that succeed, what they print. The test
(test_table.py) also checks that no traceback was printed and that nothing was left behind: the
sandbox holds exactly what it held before the command ran.

README's bad-input paragraph is backed by these rows; `readme` names the guarantee a row backs.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hostile_sandbox import Sandbox

from pocketquant.gguf_file import GGMLType, TensorInfo
from pocketquant.testing.hostile_inputs import (
    add_safetensor,
    add_tensor,
    deflate_bomb,
    drop_safetensor,
    edit_config,
    f32,
    patch_tensor_type,
    poison_tensor,
    raw_string,
    rename_tensor,
    reshape_safetensor,
    retype_tensor,
    rewrite_gguf,
    safetensors_header,
    set_local_compressed_size,
    set_member_mode,
    string,
    u32,
    write_safetensors,
)

REPO_DIR = str(Path(__file__).resolve().parents[2])  # this repository (a real git work tree)


@dataclass(frozen=True)
class Row:
    id: str
    make: Callable[[Sandbox], list]
    says: tuple[str, ...] = ()  # regexes the error line (status 2) or stdout (status 0) must match
    status: int = 2
    subprocess: bool = False  # run as a separate process (a bug there could hang or kill pytest)
    outputs: tuple[str, ...] = ()  # sandbox paths a successful row may create
    xfail: str | None = None
    readme: str = ""  # the README guarantee this row backs


# -- building a command line: any argument may be a builder, called with the sandbox -----------


def _resolve(sb: Sandbox, args: tuple) -> list:
    return [a(sb) if callable(a) else a for a in args]


def cmd(*args: object, setup: Callable[[Sandbox], object] | None = None) -> Callable[[Sandbox], list]:
    """A row's `make`: run `setup`, then resolve every argument (builders get the sandbox)."""

    def make(sb: Sandbox) -> list:
        if setup is not None:
            setup(sb)
        return _resolve(sb, args)

    return make


def quantize(src: object, out: object = "out.gguf", *extra: object, setup=None) -> Callable:  # noqa: ANN001
    return cmd("quantize", src, out, "q8_0", "--threads", "1", *extra, setup=setup)


def convert(model: object, out: object = "out.gguf", setup=None) -> Callable:  # noqa: ANN001
    return cmd("convert", model, out, "--outtype", "f16", setup=setup)


def package(src: object, out: object = "out.zip", *extra: object, setup=None) -> Callable:  # noqa: ANN001
    args = ("--model-name", "tiny", "--scheme", "f32", "--num-ctx", "256", "--quiet")
    return cmd("package", src, out, *args, *extra, setup=setup)


def verify(pkg: object, *extra: object, setup=None) -> Callable:  # noqa: ANN001
    return cmd("verify", pkg, "--quiet", *(extra or ("--no-load",)), setup=setup)


def stage(script: str, *args: object, setup=None) -> Callable:  # noqa: ANN001
    return cmd(f"stages/{script}.py", *args, setup=setup)


# -- input builders ---------------------------------------------------------------------------


def gguf(sb: Sandbox) -> Path:
    return sb.gguf()


def hf(sb: Sandbox) -> Path:
    return sb.hf()


def pkg(sb: Sandbox) -> Path:
    return sb.package()


def path(name: str) -> Callable[[Sandbox], Path]:
    return lambda sb: sb.path(name)


def text(name: str, data: bytes | str) -> Callable[[Sandbox], Path]:
    return lambda sb: sb.write(name, data)


def fifo(name: str) -> Callable[[Sandbox], Path]:
    return lambda sb: sb.fifo(name)


def directory(name: str) -> Callable[[Sandbox], Path]:
    def make(sb: Sandbox) -> Path:
        sb.path(name).mkdir(parents=True)
        return sb.path(name)

    return make


def in_readonly_dir(name: str) -> Callable[[Sandbox], Path]:
    return lambda sb: sb.readonly_dir() / name


def in_full_disk(name: str = "") -> Callable[[Sandbox], Path]:
    return lambda sb: sb.full_disk() / name if name else sb.full_disk()


def gguf_kvs(**kvs: object) -> Callable[[Sandbox], Path]:
    """The tiny GGUF with KVs replaced (None: removed); keys spelled with __ for dots."""
    keys = {k.replace("__", "."): v for k, v in kvs.items()}
    return lambda sb: rewrite_gguf(sb.pristine.gguf, sb.path("in.gguf"), kvs=keys)  # type: ignore[arg-type]


def gguf_tensors(edit: Callable) -> Callable[[Sandbox], Path]:
    return lambda sb: rewrite_gguf(sb.pristine.gguf, sb.path("in.gguf"), tensors=edit)


def damaged(
    copy: Callable[[Sandbox], Path], damage: Callable[[Path], object], part: str = ""
) -> Callable[[Sandbox], Path]:
    """A fresh copy of a pristine input (`part`: one file inside it) damaged by `damage(path)`."""

    def make(sb: Sandbox) -> Path:
        p = copy(sb)
        damage(p / part if part else p)
        return p

    return make


def gguf_damaged(damage: Callable[[Path], object]) -> Callable[[Sandbox], Path]:
    return damaged(gguf, damage)


def misfit_imatrix(sb: Sandbox) -> Path:
    """An imatrix whose entry for blk.0.attn_k.weight has 10 values (the tensor's rows have 64)."""
    from pocketquant.imatrix import save_imatrix

    name = "blk.0.attn_k.weight"
    save_imatrix(sb.path("im.gguf"), {name: np.ones(10, np.float32)}, {name: 1.0})
    return sb.path("im.gguf")


def hf_config(**changes: object) -> Callable[[Sandbox], Path]:
    def make(sb: Sandbox) -> Path:
        model = sb.hf()
        edit_config(model, **changes)
        return model

    return make


def hf_file(name: str, damage: Callable[[Path], object]) -> Callable[[Sandbox], Path]:
    return damaged(hf, damage, name)


def hf_weights(damage: Callable[[Path], object]) -> Callable[[Sandbox], Path]:
    return hf_file("model.safetensors", damage)


def pkg_damaged(damage: Callable[[Path], object]) -> Callable[[Sandbox], Path]:
    return damaged(pkg, damage)


def hard_link(name: str, to: str) -> Callable[[Sandbox], Path]:
    def make(sb: Sandbox) -> Path:
        os.link(sb.path(to), sb.path(name))
        return sb.path(name)

    return make


def symlink(name: str, to: str) -> Callable[[Sandbox], Path]:
    def make(sb: Sandbox) -> Path:
        sb.path(name).symlink_to(to)
        return sb.path(name)

    return make


def params(**groups: object) -> Callable[[Sandbox], Path]:
    return lambda sb: sb.params(**groups)


# -- damage -----------------------------------------------------------------------------------


def truncate_to(keep: int) -> Callable[[Path], None]:
    def damage(p: Path) -> None:
        with open(p, "r+b") as f:
            f.truncate(keep)

    return damage


def overwrite(data: bytes | str) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(data.encode() if isinstance(data, str) else data)


def unreadable(p: Path) -> None:
    """No read permission (root reads anything, so for root the row is skipped)."""
    if os.geteuid() == 0:
        pytest.skip("root can read a file without read permission")
    p.chmod(0)


def replace_with_fifo(p: Path) -> None:
    p.unlink()
    os.mkfifo(p)


def replace_with_dir(p: Path) -> None:
    p.unlink()
    p.mkdir()


def corrupt_safetensors_header(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[8:20] = b"{not json at"
    p.write_bytes(bytes(data))


def overlapping_safetensors(p: Path) -> None:
    header, body = safetensors_header(p)
    header["model.norm.weight"]["data_offsets"] = [0, 256]
    write_safetensors(p, header, body[:-256])


def unknown_dtype(p: Path) -> None:
    header, body = safetensors_header(p)
    header["model.norm.weight"]["dtype"] = "F128"
    write_safetensors(p, header, body)


def reshaped(name: str, shape: list[int]) -> Callable[[Path], None]:
    return lambda p: reshape_safetensor(p, f"model.layers.0.{name}.weight", shape)


def append(data: bytes) -> Callable[[Path], None]:
    def damage(p: Path) -> None:
        with open(p, "ab") as f:
            f.write(data)

    return damage


def prepend(p: Path) -> None:
    p.write_bytes(b"MZ" + bytes(62) + p.read_bytes())


def archive_comment(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[-2:] = struct.pack("<H", 5)
    p.write_bytes(bytes(data) + b"hello")


def bomb(inflated_mib: int, declared: int | None = None) -> Callable[[Sandbox], Path]:
    def make(sb: Sandbox) -> Path:
        deflate_bomb(sb.path("bomb.zip"), "manifest.json", inflated_mib << 20, declared=declared)
        return sb.path("bomb.zip")

    return make


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def stale_temps(sb: Sandbox) -> None:
    """A temp of out.gguf left by a SIGKILLed run (its process is gone), and a look-alike of
    another naming that must survive."""
    from pocketquant.atomic import _host_tag

    sb.write(f".out.gguf.pocketquant-{_host_tag()}-{_dead_pid()}-abcd1234.tmp", b"x" * 1000)
    sb.write(".out.gguf.someoneelse.tmp", b"not ours")


# -- the table --------------------------------------------------------------------------------

NOT_WRITABLE = r"(Read-only file system|Permission denied)"
FULL = "no space left on device"
INF, NAN = float("inf"), float("nan")
Q_PROJ = "model.layers.0.self_attn.q_proj.weight"

TABLE: list[Row] = [
    # quantize: metadata llama.cpp would refuse
    Row("quantize-block_count-inf", quantize(gguf_kvs(llama__block_count=f32(INF))),
        ("in.gguf", "llama.block_count", "FLOAT32"), readme="metadata"),
    Row("quantize-dry-run-block_count-inf",
        quantize(gguf_kvs(llama__block_count=f32(INF)), "o.gguf", "--dry-run"),
        ("in.gguf", "llama.block_count", "FLOAT32"), readme="metadata"),
    Row("quantize-block_count-0", quantize(gguf_kvs(llama__block_count=u32(0))),
        ("in.gguf", "llama.block_count", "= 0"), readme="metadata"),
    Row("quantize-block_count-huge", quantize(gguf_kvs(llama__block_count=u32(2**31))),
        ("llama.block_count", "2147483648", "1 to 512"), readme="metadata"),
    Row("quantize-block_count-more-than-layers", quantize(gguf_kvs(llama__block_count=u32(3))),
        ("llama.block_count", "no tensors of layer 2"), readme="metadata"),
    Row("quantize-head_count-0", quantize(gguf_kvs(llama__attention__head_count=u32(0))),
        ("llama.attention.head_count", "= 0"), readme="metadata"),
    Row("quantize-head_count_kv-not-dividing", quantize(gguf_kvs(llama__attention__head_count_kv=u32(3))),
        ("llama.attention.head_count_kv", "= 3 does not divide"), readme="metadata"),
    Row("quantize-head_count-not-dividing-embedding",
        quantize(gguf_kvs(llama__attention__head_count=u32(3), llama__attention__head_count_kv=u32(3),
                          llama__attention__key_length=None, llama__attention__value_length=None)),
        ("llama.attention.head_count", "does not divide llama.embedding_length = 64"), readme="metadata"),
    Row("quantize-rope-freq-nan", quantize(gguf_kvs(llama__rope__freq_base=f32(NAN))),
        ("llama.rope.freq_base", "not a finite number"), readme="metadata"),
    Row("quantize-architecture-not-a-string", quantize(gguf_kvs(general__architecture=u32(1))),
        ("general.architecture",), readme="metadata"),
    # quantize: tensors
    Row("quantize-zero-row-tensor",
        quantize(gguf_tensors(add_tensor(TensorInfo("blk.0.extra.weight", (64, 0), GGMLType.F32)))),
        ("blk.0.extra.weight", "no elements"), readme="tensor"),
    Row("quantize-f64-weights", quantize(gguf_tensors(retype_tensor("blk.1.ffn_up.weight", GGMLType.F64))),
        ("in.gguf", "'blk.1.ffn_up.weight'", "F64"), readme="tensor"),
    Row("quantize-i32-weights", quantize(gguf_tensors(retype_tensor("blk.0.attn_q.weight", GGMLType.I32))),
        ("in.gguf", "'blk.0.attn_q.weight'", "I32"), readme="tensor"),
    Row("quantize-nan-weights", quantize(gguf_tensors(poison_tensor("blk.1.ffn_down.weight"))),
        ("in.gguf", "'blk.1.ffn_down.weight'", "NaN or Inf"), readme="nan"),
    Row("quantize-nan-weights-into-new-dirs",
        quantize(gguf_tensors(poison_tensor("blk.1.ffn_down.weight")), "new/deeper/out.gguf"),
        ("'blk.1.ffn_down.weight'", "NaN or Inf"), readme="dirs"),
    Row("quantize-dry-run-nan-weights",
        quantize(gguf_tensors(poison_tensor("output_norm.weight", -INF)), "o.gguf", "--dry-run"),
        ("'output_norm.weight'", "NaN or Inf"), readme="nan"),
    Row("quantize-dry-run-non-utf8-tensor-name",
        quantize(gguf_tensors(rename_tensor("blk.0.ffn_up.weight", "blk.0.ffn_up\udcff.weight")), "o",
                 "--dry-run"),
        (r"blk\.0\.ffn_up\\xff\.weight", "dry run: nothing written"), status=0, readme="names"),
    # quantize: files
    Row("quantize-output-is-input", quantize(gguf, "in.gguf"),
        ("in.gguf", "overwrite the input"), readme="same"),
    Row("quantize-output-symlink-to-input", quantize(gguf, symlink("ln.gguf", "in.gguf")),
        ("ln.gguf", "overwrite the input"), readme="same"),
    Row("quantize-output-hard-link-to-input", quantize(gguf, hard_link("hl.gguf", "in.gguf")),
        ("hl.gguf", "overwrite the input", "hard link"), readme="same"),
    Row("quantize-output-via-dotdot", quantize(gguf, "sub/../in.gguf", setup=directory("sub")),
        ("overwrite the input",), readme="same"),
    Row("quantize-output-is-a-directory", quantize(gguf, directory("d.gguf")),
        ("d.gguf", "is a directory"), readme="output"),
    Row("quantize-output-parent-is-a-file", quantize(gguf, "f/out.gguf", setup=text("f", "")),
        ("f/out.gguf", "not a directory"), readme="output"),
    Row("quantize-output-read-only-dir", quantize(gguf, in_readonly_dir("out.gguf")),
        ("ro/out.gguf", NOT_WRITABLE), readme="output"),
    Row("quantize-output-disk-full", quantize(gguf, in_full_disk("out.gguf")),
        ("full/out.gguf", FULL), readme="output"),
    Row("quantize-input-fifo", quantize(fifo("in.gguf")),
        ("in.gguf", "FIFO"), subprocess=True, readme="fifo"),
    Row("quantize-input-directory", quantize(directory("in.gguf")), ("in.gguf", "directory"), readme="input"),
    Row("quantize-input-missing", quantize(path("nope.gguf")), ("nope.gguf", "no such file"), readme="input"),
    Row("quantize-input-unreadable", quantize(gguf_damaged(unreadable)),
        ("in.gguf", "Permission denied"), readme="input"),
    Row("quantize-input-empty", quantize(text("in.gguf", b"")),
        ("in.gguf", "not a GGUF file"), readme="input"),
    Row("quantize-input-truncated",
        quantize(lambda sb: sb.write("in.gguf", sb.pristine.gguf.read_bytes()[:300_000])),
        ("in.gguf", "truncated"), readme="gguf"),
    Row("quantize-corrupt-tensor-table",
        quantize(gguf_damaged(lambda p: patch_tensor_type(p, "blk.0.attn_k.weight", 99))),
        ("in.gguf", "'blk.0.attn_k.weight'", "invalid ggml type 99"), readme="gguf"),
    Row("quantize-imatrix-does-not-fit", quantize(gguf, "out.gguf", "--imatrix", misfit_imatrix),
        ("im.gguf", "blk.0.attn_k.weight"), readme="gguf"),
    Row("quantize-imatrix-fifo", quantize(gguf, "out.gguf", "--imatrix", fifo("im.dat")),
        ("im.dat", "FIFO"), subprocess=True, readme="fifo"),
    Row("quantize-output-is-imatrix", quantize(gguf, text("im.dat", "x"), "--imatrix", path("im.dat")),
        ("im.dat", "overwrite the input"), readme="same"),
    Row("quantize-stale-temp-swept", quantize(gguf, "out.gguf", setup=stale_temps), (r"wrote out\.gguf",),
        status=0, outputs=("out.gguf",), readme="stale"),
    # convert: checkpoint files
    Row("convert-safetensors-empty", convert(hf_weights(overwrite(b""))),
        ("model.safetensors", "not a safetensors file"), readme="checkpoint"),
    Row("convert-safetensors-random", convert(hf_weights(overwrite(bytes(range(256)) * 16))),
        ("model.safetensors", "corrupt safetensors header"), readme="checkpoint"),
    Row("convert-safetensors-truncated", convert(hf_weights(truncate_to(200_000))),
        ("model.safetensors", "truncated"), readme="checkpoint"),
    Row("convert-safetensors-corrupt-header", convert(hf_weights(corrupt_safetensors_header)),
        ("model.safetensors", "not JSON"), readme="checkpoint"),
    Row("convert-safetensors-overlapping", convert(hf_weights(overlapping_safetensors)),
        ("model.safetensors", "model.norm.weight"), readme="checkpoint"),
    Row("convert-safetensors-unknown-dtype", convert(hf_weights(unknown_dtype)),
        ("model.safetensors", "model.norm.weight", "F128"), readme="checkpoint"),
    Row("convert-safetensors-fifo", convert(hf_weights(replace_with_fifo)),
        ("model.safetensors", "FIFO"), subprocess=True, readme="fifo"),
    Row("convert-safetensors-unreadable", convert(hf_weights(unreadable)),
        ("model.safetensors", "Permission denied"), readme="checkpoint"),
    Row("convert-config-not-json", convert(hf_file("config.json", overwrite("{oops"))),
        ("config.json", "not valid JSON"), readme="checkpoint"),
    Row("convert-config-directory", convert(hf_file("config.json", replace_with_dir)),
        ("config.json", "directory"), readme="checkpoint"),
    Row("convert-tokenizer-json-garbage", convert(hf_file("tokenizer.json", overwrite(b"\x00\xff garbage"))),
        ("tokenizer.json",), readme="checkpoint"),
    Row("convert-model-dir-missing", convert(path("nowhere")), ("nowhere", "does not exist"), readme="input"),
    # convert: hyperparameters
    Row("convert-hidden_size-string", convert(hf_config(hidden_size="64")),
        ("config.json", "hidden_size", "string"), readme="metadata"),
    Row("convert-hidden_size-float", convert(hf_config(hidden_size=64.5)),
        ("config.json", "hidden_size", "integer"), readme="metadata"),
    Row("convert-layers-0", convert(hf_config(num_hidden_layers=0)),
        ("config.json", "num_hidden_layers", "= 0"), readme="metadata"),
    Row("convert-layers-huge", convert(hf_config(num_hidden_layers=10**9)),
        ("config.json", "num_hidden_layers", "at most 512"), readme="metadata"),
    Row("convert-heads-0", convert(hf_config(num_attention_heads=0)),
        ("config.json", "num_attention_heads", "= 0"), readme="metadata"),
    Row("convert-kv-heads-not-dividing", convert(hf_config(num_key_value_heads=3)),
        ("config.json", "num_key_value_heads", "does not divide"), readme="metadata"),
    Row("convert-heads-not-dividing-hidden",
        convert(hf_config(num_attention_heads=3, num_key_value_heads=3, head_dim=...)),
        ("config.json", "num_attention_heads", "does not divide hidden_size"), readme="metadata"),
    Row("convert-rms-eps-infinite", convert(hf_config(rms_norm_eps=INF)),
        ("config.json", "rms_norm_eps"), readme="metadata"),
    # convert: output
    Row("convert-output-is-a-directory", convert(hf, directory("d.gguf")),
        ("d.gguf", "is a directory"), readme="output"),
    Row("convert-output-is-an-input", convert(hf, "hf/model.safetensors"),
        ("model.safetensors", "overwrite the input"), readme="same"),
    Row("convert-output-read-only-dir", convert(hf, in_readonly_dir("out.gguf")),
        ("ro/out.gguf", NOT_WRITABLE), readme="output"),
    Row("convert-output-disk-full", convert(hf, in_full_disk("out.gguf")),
        ("full/out.gguf", FULL), readme="output"),
    Row("convert-output-parent-is-a-file", convert(hf, "f/out.gguf", setup=text("f", "")),
        ("f/out.gguf", "not a directory"), readme="output"),
    # convert: checkpoints that do not match their config (the converter's own validation)
    Row("convert-q_proj-wrong-shape", convert(hf_weights(reshaped("self_attn.q_proj", [32, 128]))),
        (Q_PROJ,), readme="converter"),
    Row("convert-more-layers-than-present", convert(hf_config(num_hidden_layers=3)),
        ("num_hidden_layers|layers.2",), readme="converter"),
    Row("convert-missing-tensor-of-a-layer",
        convert(hf_weights(lambda p: drop_safetensor(p, "model.layers.1.mlp.up_proj.weight"))),
        ("model.layers.1.mlp.up_proj.weight",), readme="converter"),
    Row("convert-2d-norm", convert(hf_weights(reshaped("input_layernorm", [8, 8]))),
        ("model.layers.0.input_layernorm.weight",), readme="converter"),
    Row("convert-5d-tensor", convert(hf_weights(reshaped("self_attn.o_proj", [4, 4, 4, 4, 16]))),
        ("model.layers.0.self_attn.o_proj.weight",), readme="converter"),
    Row("convert-extra-tensor",
        convert(hf_weights(lambda p: add_safetensor(p, "model.layers.0.mystery.weight", [64]))),
        ("model.layers.0.mystery.weight",), readme="converter"),
    # package
    Row("package-context_length-wrong-type", package(gguf_kvs(llama__context_length=string("256"))),
        ("in.gguf", "llama.context_length", "STRING"), readme="metadata"),
    Row("package-bos_token_id-wrong-type", package(gguf_kvs(tokenizer__ggml__bos_token_id=f32(1.0))),
        ("in.gguf", "tokenizer.ggml.bos_token_id", "FLOAT32"), readme="metadata"),
    Row("package-chat-template-not-utf8",
        package(gguf_kvs(tokenizer__chat_template=raw_string(b"{{ x }}\xff\xfe"))),
        ("in.gguf", "tokenizer.chat_template", "UTF-8"), readme="metadata"),
    Row("package-head_count-0", package(gguf_kvs(llama__attention__head_count=u32(0))),
        ("llama.attention.head_count",), readme="metadata"),
    Row("package-empty-stop", package(gguf, "out.zip", "--stop", ""), ("stop",), readme="stop"),
    Row("package-output-is-input", package(gguf, "in.gguf"), ("overwrite the input",), readme="same"),
    Row("package-output-hard-link-to-input", package(gguf, hard_link("hl.zip", "in.gguf")),
        ("hl.zip", "overwrite the input"), readme="same"),
    Row("package-output-is-metrics", package(gguf, text("m.json", "{}"), "--metrics", path("m.json")),
        ("m.json", "overwrite the input"), readme="same"),
    Row("package-output-is-a-directory", package(gguf, directory("d.zip")),
        ("d.zip", "is a directory"), readme="output"),
    Row("package-output-read-only-dir", package(gguf, in_readonly_dir("out.zip")),
        ("ro/out.zip", NOT_WRITABLE), readme="output"),
    Row("package-output-disk-full", package(gguf, in_full_disk("out.zip")),
        ("full/out.zip", FULL), readme="output"),
    Row("package-input-fifo", package(fifo("in.gguf")), ("in.gguf", "FIFO"), subprocess=True, readme="fifo"),
    Row("package-metrics-fifo", package(gguf, "out.zip", "--metrics", fifo("m.json")),
        ("m.json", "FIFO"), subprocess=True, readme="fifo"),
    Row("package-metrics-not-json", package(gguf, "out.zip", "--metrics", text("m.json", "{")),
        ("m.json", "JSON"), readme="input"),
    Row("package-chat-template-file-not-utf8",
        package(gguf, "out.zip", "--chat-template", text("t.jinja", b"\xff{{ x }}")),
        ("t.jinja", "UTF-8"), readme="input"),
    # verify
    Row("verify-local-header-size-changed",
        verify(pkg_damaged(lambda p: set_local_compressed_size(p, "tiny-f32.gguf", -1000))),
        ("pkg.zip", "tiny-f32.gguf", "local header"), readme="zip"),
    Row("verify-manifest-bomb", verify(bomb(400)),
        ("bomb.zip", "manifest.json", "more than the"), readme="zip"),
    Row("verify-manifest-bomb-lying-size", verify(bomb(64, declared=1000)), ("bomb.zip", "manifest.json"),
        readme="zip"),
    Row("verify-trailing-data", verify(pkg_damaged(append(b"hidden"))),
        ("pkg.zip", "trailing"), readme="zip"),
    Row("verify-prepended-data", verify(pkg_damaged(prepend)), ("pkg.zip",), readme="zip"),
    Row("verify-archive-comment", verify(pkg_damaged(archive_comment)), ("pkg.zip", "comment"), readme="zip"),
    Row("verify-symlink-member", verify(pkg_damaged(lambda p: set_member_mode(p, "Modelfile", 0o120777))),
        ("pkg.zip", "Modelfile", "mode 120777"), readme="zip"),
    Row("verify-package-fifo", verify(fifo("pkg.zip")), ("pkg.zip", "FIFO"), subprocess=True, readme="fifo"),
    Row("verify-package-directory", verify(directory("pkg.zip")), ("pkg.zip", "directory"), readme="input"),
    Row("verify-package-empty", verify(text("pkg.zip", b"")), ("pkg.zip",), readme="input"),
    Row("verify-tmp-dir-disk-full", verify(pkg, "--tmp-dir", in_full_disk()),
        ("full", FULL), readme="output"),
    Row("verify-tmp-dir-read-only", verify(pkg, "--tmp-dir", in_readonly_dir("")), ("ro", NOT_WRITABLE),
        readme="output"),
    Row("verify-tmp-dir-is-a-file", verify(pkg, "--tmp-dir", text("f", "")), ("f", "not a directory"),
        readme="output"),
    # compare and plots-template
    Row("compare-metrics-not-json", cmd("compare", text("m.json", "{")), ("m.json",), readme="input"),
    Row("compare-metrics-fifo", cmd("compare", fifo("m.json")), ("m.json", "FIFO"), subprocess=True,
        readme="fifo"),
    Row("compare-html-is-a-directory",
        cmd("compare", text("m.json", "{}"), "--html", directory("page.html")),
        ("page.html", "is a directory"), readme="output"),
    Row("plots_template-output-is-a-directory", cmd("plots-template", directory("t.html")),
        ("t.html", "is a directory"), readme="output"),
    Row("plots_template-output-read-only-dir", cmd("plots-template", in_readonly_dir("t.html")),
        ("ro/t.html", NOT_WRITABLE), readme="output"),
    # sweep (its own settings file and repository checks; the rest is in tests/sweep)
    Row("sweep-not-a-git-repository", cmd("sweep", "-S", "quant=q4_k_m"), ("not a git repository",),
        readme="input"),
    Row("sweep-settings-missing", cmd("sweep", "-S", "quant=q4_k_m", "--config", "nope.yaml", "-C", REPO_DIR),
        ("nope.yaml",), readme="input"),
    Row("sweep-settings-fifo", cmd("sweep", "-S", "quant=q4_k_m", "--config", fifo("s.yaml"), "-C", REPO_DIR),
        ("s.yaml", "FIFO"), subprocess=True, readme="fifo"),
    # stages (through stages/common.py run())
    Row("stage-check_params-unknown-key",
        stage("check_params", "--out", "ok.txt", setup=params(quant={"bogus": 1})),
        ("params.yaml", "unknown key quant.bogus"), readme="stages"),
    Row("stage-check_params-local-model-without-path",
        stage("check_params", "--out", "ok.txt",
              setup=params(model={"name": "local", "path": None, "hf_id": None, "revision": None})),
        ("params.yaml", "model=local needs model.path"), readme="stages"),
    Row("stage-convert-no-params", stage("convert", "--model", hf, "--out", "base.gguf"),
        ("params.yaml", "no such file"), readme="stages"),
    Row("stage-convert-params-not-yaml",
        stage("convert", "--model", hf, "--out", "b.gguf", setup=text("params.yaml", "model: [unclosed")),
        ("params.yaml", "YAML"), readme="stages"),
    Row("stage-convert-safetensors-empty",
        stage("convert", "--model", hf_weights(overwrite(b"")), "--out", "b.gguf", setup=params()),
        ("model.safetensors", "not a safetensors file"), readme="stages"),
    Row("stage-quantize-missing-param",
        stage("quantize", "--model", "hf", "--gguf", gguf, "--calib", "c", "--out", "v",
              setup=params(quant=...)),
        ("params.yaml", "missing key 'quant'"), readme="stages"),
    Row("stage-quantize-bad-gguf",
        stage("quantize", "--model", "hf", "--gguf", gguf_kvs(llama__block_count=u32(0)), "--calib", "c",
              "--out", "variant", setup=params()),
        ("in.gguf", "llama.block_count"), readme="stages"),
    Row("stage-package-metrics-not-json",
        stage("package", "--variant", "variant", "--metrics", text("m.json", "{"), "--out", "pkg",
              setup=lambda sb: (sb.params(), sb.path("variant").mkdir(), sb.gguf("variant/v.gguf"))),
        ("m.json",), readme="stages"),
    Row("stage-report-metrics-not-json",
        stage("report", "--base", text("m.json", "{"), "--variant", "m.json", "--summary", "s.md",
              "--plots", "p.json", "--headline", "h.json", setup=params()),
        ("m.json",), readme="stages"),
    Row("stage-evaluate-reference-missing",
        stage("evaluate", "--model", text("v.gguf", "no"), "--base", hf, "--reference", "r.safetensors",
              "--metrics", "m.json", "--generations", "g.json", "--tokens", "t.safetensors", setup=params()),
        ("r.safetensors",), readme="stages"),
    Row("stage-package-metrics-fifo",
        stage("package", "--variant", "variant", "--metrics", fifo("m.json"), "--out", "pkg",
              setup=lambda sb: (sb.params(), sb.path("variant").mkdir(), sb.gguf("variant/v.gguf"))),
        ("m.json", "FIFO"), subprocess=True, readme="fifo"),
    Row("stage-reference-model-missing",
        stage("reference", "--model", "nowhere", "--out", "r.st", setup=params()),
        ("nowhere",), readme="stages"),
    Row("stage-calibrate-model-missing",
        stage("calibrate", "--model", "nowhere", "--out", "calib", setup=params(quant={"imatrix": True})),
        ("nowhere",), readme="stages"),
    Row("stage-acquire-local-path-missing",
        stage("acquire", "--out", "hf-out",
              setup=params(model={"name": "x", "path": "nowhere", "hf_id": None})),
        ("nowhere",), readme="stages"),
]  # fmt: skip
