"""The GGUF reader and writer: layout, round trips, and the named errors for broken files."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from qhelpers import broken_gguf_cases, good_gguf_bytes, leftovers

from pocketquant.errors import GGUFFormatError
from pocketquant.gguf_file import KV, GGMLType, GGUFFile, GGUFValueType, TensorInfo, create_gguf


def _write_with_gguf_py(path: Path) -> dict[str, np.ndarray]:
    """A small file written by the `gguf` package (an independent writer)."""
    rng = np.random.default_rng(0)
    arrays = {
        "blk.0.attn_q.weight": rng.standard_normal((8, 64)).astype(np.float32),
        "blk.0.attn_norm.weight": rng.standard_normal(64).astype(np.float32),
        "token_embd.weight": rng.standard_normal((3, 96)).astype(np.float16),
    }
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_uint32("test.u32", 7)
    w.add_int64("test.i64", -5)
    w.add_float32("test.f32", 1.5)
    w.add_float64("test.f64", -2.25)
    w.add_bool("test.bool", True)
    w.add_string("test.str", "héllo")
    w.add_array("test.ints", [1, 2, 3])
    w.add_array("test.strs", ["a", "", "ü"])
    for name, a in arrays.items():
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return arrays


def test_reads_gguf_py_file_and_rewrites_it_byte_identically(tmp_path: Path):
    src = tmp_path / "a.gguf"
    arrays = _write_with_gguf_py(src)
    with GGUFFile(src) as f:
        assert f.version == 3 and f.alignment == 32
        assert f.get("test.u32") == 7 and f.get("test.i64") == -5
        assert f.get("test.f32") == 1.5 and f.get("test.f64") == -2.25
        assert f.get("test.bool") is True and f.get("test.str") == "héllo"
        assert f.get("test.ints").tolist() == [1, 2, 3]
        assert f.get("test.strs") == ["a", "", "ü"]
        assert [t.name for t in f.tensors] == list(arrays)
        for t in f.tensors:
            a = arrays[t.name]
            assert t.shape == tuple(reversed(a.shape))  # ggml order: row length first
            got = f.tensor_data(t).view(a.dtype).reshape(a.shape)
            np.testing.assert_array_equal(got, a)
        dst = tmp_path / "b.gguf"
        with create_gguf(dst, f.kv, f.tensors) as w:
            for t in f.tensors:
                w.write(f.tensor_data(t))
    assert dst.read_bytes() == src.read_bytes()


def test_writer_layout_matches_gguf_py_for_constructed_kvs(tmp_path: Path):
    """KVs built by us (no raw bytes) serialize exactly as the gguf package writes them."""
    src = tmp_path / "a.gguf"
    _write_with_gguf_py(src)
    with GGUFFile(src) as f:
        kvs = {k: KV(v.type, v.value, v.array_type) for k, v in f.kv.items()}  # drop raw
        dst = tmp_path / "b.gguf"
        with create_gguf(dst, kvs, f.tensors) as w:
            for t in f.tensors:
                w.write(f.tensor_data(t))
    assert dst.read_bytes() == src.read_bytes()


def test_writer_pads_every_tensor_and_honours_general_alignment(tmp_path: Path):
    kvs = {"general.alignment": KV.u32(64), "x": KV.string("y")}
    tensors = [TensorInfo("a", (3,), GGMLType.F32), TensorInfo("b", (5, 2), GGMLType.F16)]
    out = tmp_path / "al.gguf"
    with create_gguf(out, kvs, tensors) as w:
        w.write(np.arange(3, dtype=np.float32))
        w.write(np.ones(5, dtype=np.float16))  # a tensor may arrive in pieces
        w.write(np.ones(5, dtype=np.float16))
    with GGUFFile(out) as f:
        assert f.alignment == 64 and f.data_offset % 64 == 0
        assert [t.offset for t in f.tensors] == [0, 64]
        assert f.file_size == f.data_offset + 64 + 64  # last tensor padded too
        assert f.tensor_data("b").view(np.float16).tolist() == [1.0] * 10
        tail = Path(out).read_bytes()[f.data_offset + 12 : f.data_offset + 64]
        assert tail == bytes(52)  # zero padding


def test_writer_rejects_wrong_sizes_and_leaves_nothing(tmp_path: Path):
    out = tmp_path / "w.gguf"
    with pytest.raises(ValueError, match="expected 12"):
        with create_gguf(out, {}, [TensorInfo("a", (3,), GGMLType.F32)]) as w:
            w.write(np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="incomplete"):
        with create_gguf(out, {}, [TensorInfo("a", (3,), GGMLType.F32)]) as w:
            w.write(np.zeros(2, dtype=np.float32))
    assert not out.exists() and leftovers(tmp_path) == []


def test_kv_range_checked(tmp_path: Path):
    with pytest.raises(ValueError, match="out of range"):
        KV(GGUFValueType.UINT8, 300).serialize()


# ---- broken files: each names the file and the fault -------------------------------------------


def test_broken_files_raise_named_errors(tmp_path: Path):
    good = good_gguf_bytes(tmp_path)
    with GGUFFile(tmp_path / "good.gguf") as f:  # the patch positions really hit the fields
        assert [t.name for t in f.tensors] == ["t0", "t1"]
    for case, (data, message) in broken_gguf_cases(good).items():
        p = tmp_path / f"{case}.gguf"
        p.write_bytes(data)
        with pytest.raises(GGUFFormatError) as exc:
            GGUFFile(p)
        assert str(p) in str(exc.value), case
        assert message in str(exc.value), (case, str(exc.value))


def test_missing_file_is_a_named_error(tmp_path: Path):
    with pytest.raises(GGUFFormatError, match="no such file"):
        GGUFFile(tmp_path / "nope.gguf")
