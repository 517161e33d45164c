"""minigpt.models.attention: attention by hand equals torch's, masks hide what they should, heads
match nn.MultiheadAttention, and position encodings have the properties they are chosen for."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.models import attention, transformer


def qkv(B=2, H=3, T=5, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, T, D, generator=g) for _ in range(3))


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 12), D=st.integers(1, 16), causal=st.booleans(), seed=st.integers(0, 999))
def test_attention_by_hand_equals_torch(T, D, causal, seed):
    q, k, v = qkv(T=T, D=D, seed=seed)
    mask = attention.causal_mask(T) if causal else None
    out, weights = attention.scaled_dot_product_attention(q, k, v, mask)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert torch.allclose(out, want, atol=1e-5)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 3, T), atol=1e-5)  # rows are distributions
    if causal:
        assert (weights.triu(1) == 0).all()  # nothing from later positions


def test_weights_are_the_softmax_of_scaled_scores():
    q, k, v = qkv(T=4, D=16)
    _, weights = attention.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(weights, torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(16), -1))


def test_causal_mask_is_lower_triangular():
    assert attention.causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    with pytest.raises(ValueError, match="T must be >= 1"):
        attention.causal_mask(0)


def test_padding_is_invisible():
    """A padded sequence gives its real positions the same output as the sequence alone."""
    torch.manual_seed(0)
    mha = attention.MultiHeadAttention(16, 4, causal=True).eval()
    ids = torch.tensor([[5, 6, 7, 0, 0], [1, 2, 3, 4, 8]])
    x = torch.randn(2, 5, 16)
    x[0, 3:] = torch.randn(2, 16) * 100  # whatever sits in the padding must not matter
    mask = attention.padding_mask(ids, pad_id=0)
    assert mask.shape == (2, 1, 1, 5)
    padded = mha(x, mask=mask)
    alone = mha(x[:1, :3])
    assert torch.allclose(padded[0, :3], alone[0], atol=1e-5)
    _, w = mha(x, mask=mask, return_weights=True)
    assert (w[0, :, :, 3:] == 0).all()


def test_bidirectional_padding_is_invisible_too():
    torch.manual_seed(0)
    mha = attention.MultiHeadAttention(16, 2).eval()
    ids = torch.tensor([[5, 6, 0]])
    x = torch.randn(1, 3, 16)
    out = mha(x, mask=attention.padding_mask(ids, 0))
    assert torch.allclose(out[0, :2], mha(x[:, :2])[0], atol=1e-5)


def test_a_query_that_sees_nothing_gets_zeros():
    q, k, v = qkv(T=3)
    mask = torch.tensor([[False, False, False], [True, False, False], [True, True, True]])
    out, weights = attention.scaled_dot_product_attention(q, k, v, mask)
    assert (out[..., 0, :] == 0).all() and (weights[..., 0, :] == 0).all()
    assert torch.isfinite(out).all()


def test_bad_masks_and_shapes_are_reported():
    q, k, v = qkv(T=4)
    with pytest.raises(ValueError, match=r"mask of shape \(3, 3\) does not fit"):
        attention.scaled_dot_product_attention(q, k, v, attention.causal_mask(3))
    with pytest.raises(TypeError, match="boolean"):
        attention.scaled_dot_product_attention(q, k, v, torch.ones(4, 4))
    with pytest.raises(ValueError, match="same width"):
        attention.scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="same length"):
        attention.scaled_dot_product_attention(q, k, v[..., :2, :])
    mha = attention.MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match="does not fit"):
        mha(torch.randn(1, 4, 8), mask=attention.padding_mask(torch.ones(1, 5), 0))
    with pytest.raises(ValueError, match="divisible"):
        attention.MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="must be even"):
        attention.MultiHeadAttention(6, 2, rotary=True)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        attention.padding_mask(torch.ones(4), 0)


def test_multi_head_attention_equals_torch_nn_multiheadattention():
    torch.manual_seed(0)
    C, H, T = 12, 3, 6
    ours = attention.MultiHeadAttention(C, H, causal=True)
    theirs = torch.nn.MultiheadAttention(C, H, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.q.weight, ours.kv.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.q.bias, ours.kv.bias]))
        theirs.out_proj.weight.copy_(ours.proj.weight)
        theirs.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, T, C)
    fused = ours(x)
    by_hand, weights = ours(x, return_weights=True)
    # nn.MultiheadAttention's boolean mask is the other way round: True means "may not attend"
    want, want_w = theirs(x, x, x, attn_mask=~attention.causal_mask(T), average_attn_weights=False)
    assert torch.allclose(fused, want, atol=1e-5) and torch.allclose(by_hand, want, atol=1e-5)
    assert torch.allclose(weights, want_w, atol=1e-5)


def test_cross_attention_reads_memory_of_another_length():
    torch.manual_seed(0)
    mha = attention.MultiHeadAttention(8, 2)
    y, w = mha(torch.randn(2, 3, 8), memory=torch.randn(2, 7, 8), return_weights=True)
    assert y.shape == (2, 3, 8) and w.shape == (2, 2, 3, 7)
    with pytest.raises(ValueError, match="cross-attention sees all"):
        attention.MultiHeadAttention(8, 2, causal=True)(torch.randn(1, 3, 8), memory=torch.randn(1, 4, 8))


def test_without_positions_attention_ignores_order():
    torch.manual_seed(0)
    mha = attention.MultiHeadAttention(8, 2).eval()
    x = torch.randn(1, 6, 8)
    perm = torch.randperm(6)
    assert torch.allclose(mha(x)[:, perm], mha(x[:, perm]), atol=1e-5)  # permuted in, permuted out


def test_sinusoidal_encoding_values_and_errors():
    pe = attention.sinusoidal_encoding(50, 16)
    assert pe.shape == (50, 16)
    assert torch.allclose(pe[0, 0::2], torch.zeros(8)) and torch.allclose(pe[0, 1::2], torch.ones(8))
    t, i = 7, 3
    assert math.isclose(pe[t, 2 * i].item(), math.sin(t / 10000 ** (2 * i / 16)), abs_tol=1e-6)
    assert math.isclose(pe[t, 2 * i + 1].item(), math.cos(t / 10000 ** (2 * i / 16)), abs_tol=1e-6)
    assert len({tuple(row.round(decimals=4).tolist()) for row in pe}) == 50  # every position differs
    for bad in (7, 0):
        with pytest.raises(ValueError, match="even"):
            attention.sinusoidal_encoding(10, bad)


@settings(max_examples=20, deadline=None)
@given(m=st.integers(0, 60), n=st.integers(0, 60), shift=st.integers(0, 40), seed=st.integers(0, 999))
def test_rotary_dot_products_depend_only_on_the_offset(m, n, shift, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(1, 16, generator=g), torch.randn(1, 16, generator=g)

    def score(i, j):
        return (attention.apply_rotary(q, offset=i) @ attention.apply_rotary(k, offset=j).T).item()

    assert math.isclose(score(m, n), score(m + shift, n + shift), rel_tol=1e-4, abs_tol=1e-4)


def test_rotary_rotates_pairs_and_keeps_lengths():
    x = torch.randn(2, 5, 8)
    r = attention.apply_rotary(x)
    assert torch.allclose(r[:, 0], x[:, 0])  # position 0: no rotation
    pairs = lambda t: t.unflatten(-1, (4, 2)).norm(dim=-1)
    assert torch.allclose(pairs(r), pairs(x), atol=1e-5)
    angle = attention.rotary_angles(5, 8)[1, 0].item()  # position 1, first pair: 1 radian
    assert math.isclose(angle, 1.0)
    c, s = math.cos(angle), math.sin(angle)
    assert torch.allclose(r[:, 1, :2], torch.stack([x[:, 1, 0] * c - x[:, 1, 1] * s,
                                                    x[:, 1, 0] * s + x[:, 1, 1] * c], -1), atol=1e-6)
    with pytest.raises(ValueError, match="even"):
        attention.apply_rotary(torch.randn(3, 5))


def test_block_is_pre_norm_with_residuals_and_counts_its_parameters():
    torch.manual_seed(0)
    C = 16
    block = transformer.Block(C, 4, causal=True)
    ln, attn, mlp = 2 * C, (C * C + C) + (C * 2 * C + 2 * C) + (C * C + C), (C * 4 * C + 4 * C) + (4 * C * C + C)
    assert sum(p.numel() for p in block.parameters()) == 2 * ln + attn + mlp
    x = torch.randn(2, 5, C)
    want = x + block.attn(block.ln1(x))
    want = want + block.mlp(block.ln2(want))
    assert torch.allclose(block(x), want, atol=1e-6)
    y, w = block(x, return_weights=True)
    assert torch.allclose(y, want, atol=1e-5) and w["self"].shape == (2, 4, 5, 5)
    cross = transformer.Block(C, 4, causal=True, cross=True)
    with pytest.raises(ValueError, match="memory"):
        cross(x)
    y, w = cross(x, memory=torch.randn(2, 9, C), return_weights=True)
    assert y.shape == x.shape and w["cross"].shape == (2, 4, 5, 9)


