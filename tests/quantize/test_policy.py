"""The per-tensor type policy on its own (no files): the rules of kquants.md §8 and llama-quant.cpp,
with expectations computed here independently of the implementation."""

from __future__ import annotations

import pytest

from pocketquant.errors import QuantizationError
from pocketquant.gguf_file import GGMLType, tensor_nbytes
from pocketquant.quantize.ftypes import FTYPES, parse_ftype
from pocketquant.quantize.policy import ModelInfo, PolicyOptions, TypePolicy, order_key, tensor_order
from pocketquant.testing.synthetic_gguf import LLAMA_3_2_3B, LlamaShape, llama_tensors

T = GGMLType


def plan(shape: LlamaShape, ftype: str, **opts) -> dict[str, GGMLType]:
    tensors = tensor_order(llama_tensors(shape, T.F16))
    model = ModelInfo("llama", shape.n_layer, shape.n_head, shape.n_head_kv)
    policy = TypePolicy(model, PolicyOptions(ftype=parse_ftype(ftype), **opts), [t.name for t in tensors])
    return {t.name: policy.choose(t).type for t in tensors}


def layers_with(types: dict[str, GGMLType], role: str, t: GGMLType) -> set[int]:
    return {int(n.split(".")[1]) for n, ty in types.items() if n.endswith(f"{role}.weight") and ty == t}


# use_more_bits sets from kquants.md §8.3 (computed there by hand from the C expression)
MORE_BITS = {
    16: {0, 1, 4, 7, 10, 13, 14, 15},
    24: {0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23},
    28: {0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27},
    30: {0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29},
    32: {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31},
}


@pytest.mark.parametrize("n_layer", sorted(MORE_BITS))
def test_q4_k_m_puts_q6_k_on_use_more_bits_layers(n_layer: int):
    shape = LlamaShape(n_layer=n_layer, n_embd=256, n_ff=512, n_head=4, n_head_kv=4, n_vocab=256)
    types = plan(shape, "Q4_K_M")
    assert layers_with(types, "attn_v", T.Q6_K) == MORE_BITS[n_layer]
    assert layers_with(types, "ffn_down", T.Q6_K) == MORE_BITS[n_layer]
    assert layers_with(types, "attn_q", T.Q4_K) == set(range(n_layer))
    assert types["token_embd.weight"] == T.Q6_K  # tied: the output rule
    assert types["output_norm.weight"] == T.F32 and types["blk.0.attn_norm.weight"] == T.F32


def test_llama_3_2_3b_q4_k_m_size_matches_the_rules():
    """kquants.md §8.5: Q6_K token_embd and 14 Q6_K attn_v/ffn_down layers, the rest Q4_K, F32 norms;
    about 2.0e9 bytes of tensor data (the "1.88 GB" of the papers is GiB)."""
    s = LLAMA_3_2_3B
    types = plan(s, "Q4_K_M")
    kv = s.n_head_kv * 128

    def q(n: int, t: GGMLType) -> int:
        return tensor_nbytes((n,), t)

    more = len(MORE_BITS[28])
    expected = q(3072 * 128256, T.Q6_K) + (2 * 28 + 1) * 3072 * 4
    expected += 28 * (q(3072 * 3072, T.Q4_K) * 2 + q(3072 * kv, T.Q4_K) + 2 * q(3072 * 8192, T.Q4_K))
    expected += more * (q(3072 * kv, T.Q6_K) + q(8192 * 3072, T.Q6_K))
    expected += (28 - more) * (q(3072 * kv, T.Q4_K) + q(8192 * 3072, T.Q4_K))
    got = sum(tensor_nbytes(t.shape, types[t.name]) for t in llama_tensors(s, T.F16))
    assert got == expected
    assert 1.99e9 < got < 2.03e9


def test_layer_rules_of_the_other_k_mixes():
    shape = LlamaShape(n_layer=16, n_embd=256, n_ff=256, n_head=8, n_head_kv=2, n_vocab=256, tied=False)
    q3m = plan(shape, "Q3_K_M")
    assert layers_with(q3m, "attn_v", T.Q5_K) == {0, 1}  # i_attention_wv < 2
    assert layers_with(q3m, "ffn_down", T.Q5_K) == {0}  # i < L/16
    assert layers_with(q3m, "attn_output", T.Q4_K) == set(range(16))
    q4s = plan(shape, "Q4_K_S")
    assert layers_with(q4s, "attn_v", T.Q5_K) == {0, 1, 2, 3}
    assert layers_with(q4s, "ffn_down", T.Q5_K) == {0, 1}  # i < L/8
    q2 = plan(shape, "Q2_K")
    assert layers_with(q2, "attn_v", T.Q4_K) == set(range(16))  # n_gqa = 4
    assert layers_with(q2, "ffn_down", T.Q3_K) == set(range(16))
    assert q2["output.weight"] == T.Q6_K and q2["token_embd.weight"] == T.Q2_K  # untied: default
    q4_0 = plan(shape, "Q4_0")
    assert layers_with(q4_0, "ffn_down", T.Q4_1) == set()
    q4_0_im = plan(shape, "Q4_0", has_imatrix=True)
    assert layers_with(q4_0_im, "ffn_down", T.Q4_1) == {0, 1}  # only with an imatrix
    assert plan(shape, "Q8_0")["output.weight"] == T.Q8_0


def test_overrides_pure_and_leave_output():
    shape = LlamaShape(n_layer=4, n_embd=256, n_ff=256, n_head=4, n_head_kv=4, n_vocab=256, tied=False)
    pure = plan(shape, "Q4_K_M", pure=True)
    assert {t for n, t in pure.items() if n.endswith("weight") and "norm" not in n} == {T.Q4_K}
    leave = plan(shape, "Q4_K_M", quantize_output_tensor=False)
    assert leave["output.weight"] == T.F16
    ov = plan(
        shape,
        "Q4_K_M",
        output_tensor_type=T.Q8_0,
        token_embedding_type=T.Q5_0,
        tensor_types=(("attn_q", T.Q8_0), ("blk\\.1\\.", T.Q2_K)),
    )
    assert ov["output.weight"] == T.Q8_0 and ov["token_embd.weight"] == T.Q5_0
    assert ov["blk.1.attn_q.weight"] == T.Q8_0  # first matching pattern wins
    assert ov["blk.1.ffn_up.weight"] == T.Q2_K
    with pytest.raises(QuantizationError, match="bad regular expression"):
        plan(shape, "Q4_K_M", tensor_types=(("(", T.Q8_0),))


def test_shape_fallbacks():
    """Row lengths 160 (not /256) and 200 (not even /32): the fallback table, then F16."""
    shape = LlamaShape(n_layer=2, n_embd=160, n_ff=200, n_head=5, n_head_kv=5, n_vocab=64)
    q4 = plan(shape, "Q4_K_M")
    assert q4["blk.0.attn_q.weight"] == T.Q5_0  # Q4_K -> Q5_0
    assert q4["blk.0.attn_v.weight"] == T.Q5_0
    assert q4["blk.1.attn_v.weight"] == T.Q8_0  # Q6_K (more bits: i >= 7L/8) -> Q8_0
    assert q4["blk.0.ffn_down.weight"] == T.F16  # 200 % 32 != 0
    assert q4["token_embd.weight"] == T.Q8_0  # tied, 160 % 256 != 0: Q8_0 directly
    assert plan(shape, "Q2_K")["blk.0.attn_q.weight"] == T.Q4_0
    assert plan(shape, "Q5_K_S")["blk.0.attn_q.weight"] == T.Q5_1
    assert plan(shape, "Q8_0")["blk.1.ffn_down.weight"] == T.F16


def test_float_ftypes_touch_only_quantizable_tensors():
    shape = LlamaShape(n_layer=2, n_embd=160, n_ff=200, n_head=5, n_head_kv=5, n_vocab=64)
    for name, t in (("F16", T.F16), ("BF16", T.BF16), ("F32", T.F32)):
        types = plan(shape, name)
        assert types["blk.0.ffn_down.weight"] == t and types["token_embd.weight"] == t
        assert types["blk.0.ffn_norm.weight"] == T.F32


def test_order_is_llama_cpp_weight_name_comparer():
    names = ["token_embd.weight", "blk.10.attn_q.weight", "blk.2.ffn_up.weight", "output.weight",
             "blk.2.attn_k.weight", "output_norm.weight", "rope_freqs.weight"]  # fmt: skip
    assert sorted(names, key=order_key) == [
        "output.weight",
        "output_norm.weight",
        "rope_freqs.weight",
        "token_embd.weight",
        "blk.2.attn_k.weight",
        "blk.2.ffn_up.weight",
        "blk.10.attn_q.weight",
    ]


def test_ftype_names():
    assert parse_ftype("q4_k_m") is FTYPES["Q4_K_M"] and parse_ftype("Q4_K") is FTYPES["Q4_K_M"]
    assert parse_ftype("bf16").id == 32 and parse_ftype("Q6_K").id == 18
    with pytest.raises(QuantizationError, match="valid types: F32, F16, BF16, Q8_0"):
        parse_ftype("Q7_K")
