"""Importance matrices: our GGUF writer and both readers, named errors, and quantizing with one
byte-identically to llama_model_quantize given the same imatrix."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from qhelpers import gguf_diff, leftovers, tensor_types

from pocketquant.cli import main
from pocketquant.errors import ImatrixError
from pocketquant.gguf_file import KV, GGMLType, GGUFFile, TensorInfo, create_gguf
from pocketquant.imatrix import load_imatrix, save_imatrix
from pocketquant.quantize import quantize_gguf
from pocketquant.quantize.ftypes import FTYPES

MATMULS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def write_model_imatrix(
    path: Path,
    model: Path,
    seed: int = 0,
    skip: str | None = None,
    bad_len: str | None = None,
    extra: dict[str, int] | None = None,
):
    """An imatrix like llama-imatrix records for `model`: every blk.* matmul weight (input-column
    sums of squares and a row count), nothing for token_embd / output unless given in `extra`
    (name -> length)."""
    rng = np.random.default_rng(seed)
    sums, counts = {}, {}
    for name, n in (extra or {}).items():
        counts[name] = 1000.0
        sums[name] = rng.gamma(0.7, 1.0, n).astype(np.float32) * 1000
    with GGUFFile(model) as f:
        for t in f.tensors:
            if t.name.startswith("blk.") and any(f"{m}.weight" in t.name for m in MATMULS) and t.name != skip:
                n = t.ne(0) + (3 if t.name == bad_len else 0)
                counts[t.name] = float(rng.integers(100, 5000))
                sums[t.name] = (rng.gamma(0.7, 1.0, n) * counts[t.name]).astype(np.float32)
    save_imatrix(path, sums, counts, datasets=["calib.txt"], chunk_count=7, chunk_size=512)
    return path


def test_gguf_round_trip_and_layout(tmp_path: Path):
    sums = {
        "blk.1.ffn_down.weight": np.array([4.0, 8.0, 0.5], dtype=np.float32),
        "blk.0.attn_q.weight": np.array([[1.0, 2.0], [3.0, 6.0]], dtype=np.float32),  # 2 "experts"
    }
    counts = {"blk.1.ffn_down.weight": 4.0, "blk.0.attn_q.weight": [2.0, 0.0]}
    p = tmp_path / "im.gguf"
    save_imatrix(p, sums, counts, datasets=["a.txt", "b.txt"], chunk_count=3, chunk_size=256)
    with GGUFFile(p) as f:  # llama-imatrix's layout
        assert list(f.kv) == ["general.type", "imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"]
        assert f.get("general.type") == "imatrix" and f.get("imatrix.datasets") == ["a.txt", "b.txt"]
        assert [(t.name, t.shape) for t in f.tensors] == [
            ("blk.0.attn_q.weight.in_sum2", (2, 2)),
            ("blk.0.attn_q.weight.counts", (1, 2)),
            ("blk.1.ffn_down.weight.in_sum2", (3,)),  # trailing 1s dropped, as ggml_n_dims
            ("blk.1.ffn_down.weight.counts", (1,)),
        ]
        assert all(t.type == GGMLType.F32 for t in f.tensors)
    im = load_imatrix(p)
    assert im.datasets == ["a.txt", "b.txt"] and im.chunk_count == 3 and im.chunk_size == 256
    assert not im.is_legacy and im.path == str(p)
    np.testing.assert_array_equal(im.values("blk.1.ffn_down.weight"), np.float32([1.0, 2.0, 0.125]))
    # a matrix with count 0 gets weight 1 (llama-quantize's rule)
    np.testing.assert_array_equal(im.values("blk.0.attn_q.weight"), np.float32([0.5, 1.0, 1.0, 1.0]))


def test_legacy_dat(tmp_path: Path):
    p = tmp_path / "im.dat"
    entries = {"blk.0.attn_k.weight": (10, [5.0, 20.0]), "output.weight": (0, [3.0])}
    blob = struct.pack("<i", len(entries))
    for name, (ncall, vals) in entries.items():
        blob += struct.pack("<i", len(name)) + name.encode() + struct.pack("<ii", ncall, len(vals))
        blob += np.float32(vals).tobytes()
    blob += struct.pack("<ii", 42, 9) + b"wiki.test"
    p.write_bytes(blob)
    im = load_imatrix(p)
    assert im.is_legacy and im.chunk_count == 42 and im.datasets == ["wiki.test"]
    np.testing.assert_array_equal(im.values("blk.0.attn_k.weight"), np.float32([0.5, 2.0]))
    np.testing.assert_array_equal(im.values("output.weight"), np.float32([3.0]))  # ncall 0: as stored


def test_broken_imatrix_files_are_named_errors(tmp_path: Path):
    text = tmp_path / "notes.txt"
    text.write_text("no imatrix here")
    with pytest.raises(ImatrixError, match="not an imatrix"):
        load_imatrix(text)
    with pytest.raises(ImatrixError, match="cannot read"):
        load_imatrix(tmp_path / "missing.gguf")
    lonely = tmp_path / "lonely.gguf"
    meta = {
        "imatrix.datasets": KV.strings([]),
        "imatrix.chunk_count": KV.u32(1),
        "imatrix.chunk_size": KV.u32(1),
    }
    with create_gguf(lonely, meta, [TensorInfo("w.in_sum2", (4, 1), GGMLType.F32)]) as w:
        w.write(np.ones(4, dtype=np.float32))
    with pytest.raises(ImatrixError, match="entry 'w' has no counts"):
        load_imatrix(lonely)
    model_like = tmp_path / "model.gguf"
    with create_gguf(model_like, {"general.architecture": KV.string("llama")}, []) as w:
        pass
    with pytest.raises(ImatrixError, match="missing imatrix metadata"):
        load_imatrix(model_like)
    with pytest.raises(ImatrixError, match="non-finite"):
        save_imatrix(tmp_path / "nan.gguf", {"w": np.float32([np.nan])}, {"w": 1.0})


IMATRIX_TYPES = [t for t in FTYPES if not FTYPES[t].is_float]


@pytest.fixture(scope="module")
def tiny_imatrix(tiny_f32: Path, tmp_path_factory) -> Path:
    return write_model_imatrix(tmp_path_factory.mktemp("im") / "tiny.imatrix.gguf", tiny_f32, seed=5)


@pytest.mark.parametrize("ftype", IMATRIX_TYPES)
def test_quantize_with_imatrix_matches_llama_cpp(ftype, tiny_f32, tiny_imatrix, tmp_path, llama_ref):
    """Same imatrix, same bytes: llama_model_quantize gets it through the params' imatrix array and
    the quantize.imatrix.* KV overrides llama-quantize's CLI adds."""
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    report = quantize_gguf(tiny_f32, ours, ftype, imatrix=tiny_imatrix, threads=2, progress=False)
    llama_ref.llama_quantize(tiny_f32, theirs, ftype, nthread=2, imatrix=tiny_imatrix)
    assert gguf_diff(ours, theirs) is None
    assert sum(p.imatrix for p in report.tensors) == 8 * len(MATMULS)
    with GGUFFile(ours) as f:
        assert f.get("quantize.imatrix.file") == str(tiny_imatrix)
        assert f.get("quantize.imatrix.entries_count") == 8 * len(MATMULS)
        assert (
            f.get("quantize.imatrix.chunks_count") == 7 and f.get("quantize.imatrix.dataset") == "calib.txt"
        )
    if ftype == "Q4_0":  # the imatrix-only rule: the first L/8 ffn_down get Q4_1
        types = tensor_types(ours)
        assert [types[f"blk.{i}.ffn_down.weight"] for i in range(3)] == ["Q4_1", "Q4_0", "Q4_0"]


def test_output_entry_used_and_misfit_token_embd_ignored_like_llama_cpp(tiny_f32, tmp_path, llama_ref):
    """llama-quantize uses an output.weight entry and skips a token_embd entry of the wrong size."""
    im = write_model_imatrix(
        tmp_path / "im.gguf", tiny_f32, seed=9, extra={"output.weight": 256, "token_embd.weight": 100}
    )
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    report = quantize_gguf(tiny_f32, ours, "Q3_K_S", imatrix=im, threads=2, progress=False)
    llama_ref.llama_quantize(tiny_f32, theirs, "Q3_K_S", nthread=2, imatrix=im)
    assert gguf_diff(ours, theirs) is None
    used = {p.name for p in report.tensors if p.imatrix}
    assert "output.weight" in used and "token_embd.weight" not in used


def test_imatrix_changes_the_result(tiny_f32, tiny_imatrix, tmp_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    quantize_gguf(tiny_f32, a, "Q4_K_S", threads=2, progress=False)
    quantize_gguf(tiny_f32, b, "Q4_K_S", imatrix=tiny_imatrix, threads=2, progress=False)
    with GGUFFile(a) as fa, GGUFFile(b) as fb:
        t = "blk.5.ffn_up.weight"
        assert not np.array_equal(fa.tensor_data(t), fb.tensor_data(t))


@pytest.mark.parametrize(
    "case, message",
    [
        ("skip", "no entry for tensor 'blk.4.attn_k.weight'"),
        ("bad_len", "entry 'blk.2.ffn_down.weight' has 259 values, but the tensor needs 256"),
    ],
)
def test_imatrix_that_does_not_fit_is_refused(case, message, tiny_f32, tmp_path, capsys):
    kw = {"skip": "blk.4.attn_k.weight"} if case == "skip" else {"bad_len": "blk.2.ffn_down.weight"}
    im = write_model_imatrix(tmp_path / "im.gguf", tiny_f32, **kw)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "q.gguf"
    rc = main(["quantize", str(tiny_f32), str(out), "q4_k_m", "--imatrix", str(im)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and str(im) in err, err
    assert not out.exists() and leftovers(out_dir) == []
