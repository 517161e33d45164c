"""Exercise 04's build task (multi-head causal attention with padding): its check accepts right
modules written differently and names the usual mistakes."""

import math

import pytest
import torch
from torch import nn

from minigpt.course import checks
from minigpt.course.checks import attention_build


class Attention(nn.Module):
    """A right answer (matmul, masked_fill), with switches for the usual mistakes."""

    def __init__(self, n_embd, n_head, scale="head", split="transpose", merge="transpose", mask_after=False,
                 pad_on="keys", causal="tril", zero_empty=True, detach=False):
        super().__init__()
        self.n_head, self.scale, self.split, self.merge = n_head, scale, split, merge
        self.mask_after, self.pad_on, self.causal, self.zero_empty = mask_after, pad_on, causal, zero_empty
        self.detach = detach
        self.q, self.k, self.v, self.proj = (nn.Linear(n_embd, n_embd) for _ in range(4))

    def heads(self, t):
        B, T, C = t.shape
        if self.split == "view":
            return t.view(B, self.n_head, T, C // self.n_head)
        return t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)

    def forward(self, x, is_real=None):
        B, T, C = x.shape
        q, k, v = self.heads(self.q(x)), self.heads(self.k(x)), self.heads(self.v(x))
        width = {"head": C // self.n_head, "width": C, "none": 1}[self.scale]
        scores = q @ k.transpose(-2, -1) / math.sqrt(width)
        if self.detach:
            scores = scores.detach()
        may = torch.ones(T, T, dtype=torch.bool)
        may = may.tril() if self.causal == "tril" else may.triu()
        if is_real is not None:
            may = may & (is_real[:, None, None, :] if self.pad_on == "keys" else is_real[:, None, :, None])
        if self.mask_after:
            weights = scores.softmax(-1).masked_fill(~may, 0.0)
        else:
            weights = scores.masked_fill(~may, float("-inf")).softmax(-1)
        if self.zero_empty == "in place":
            weights[weights.isnan()] = 0.0  # on the softmax's output, which its backward needs
        elif self.zero_empty:
            weights = weights.nan_to_num(0.0)
        y = weights @ v
        if self.merge == "view":
            y = y.reshape(B, T, C)
        elif self.merge == "transpose-view":
            y = y.transpose(1, 2).view(B, T, C)
        else:
            y = y.transpose(1, 2).reshape(B, T, C)
        return self.proj(y), weights


class EinsumAttention(nn.Module):
    """Right, written differently: einsum, an additive -inf bias; a query with no key gets a row of
    finite scores (bias 0) whose weights are then multiplied by 0, so no NaN arises."""

    def __init__(self, n_embd, n_head):
        super().__init__()
        self.h = n_head
        self.q, self.k, self.v = nn.Linear(n_embd, n_embd), nn.Linear(n_embd, n_embd), nn.Linear(n_embd, n_embd)
        self.proj = nn.Linear(n_embd, n_embd)

    def forward(self, x, is_real=None):
        B, T, C = x.shape
        d = C // self.h
        q, k, v = (layer(x).reshape(B, T, self.h, d) for layer in (self.q, self.k, self.v))  # (B, T, H, D)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * d ** -0.5
        pos = torch.arange(T)
        allowed = (pos[None, :] <= pos[:, None]).expand(B, 1, T, T)
        if is_real is not None:
            allowed = allowed & is_real.view(B, 1, 1, T)
        sees_some = allowed.any(-1, keepdim=True)  # (B, 1, T, 1)
        bias = torch.zeros(allowed.shape).masked_fill(~allowed & sees_some, float("-inf"))
        weights = torch.softmax(scores + bias, dim=-1) * sees_some
        y = torch.einsum("bhqk,bkhd->bqhd", weights, v).reshape(B, T, C)
        return self.proj(y), weights


class PackageBacked(nn.Module):
    """Right, a third way: separate layers fed into the package's scaled_dot_product_attention."""

    def __init__(self, n_embd, n_head):
        super().__init__()
        self.n_head = n_head
        for name in ("q", "k", "v", "proj"):
            setattr(self, name, nn.Linear(n_embd, n_embd))

    def forward(self, x, is_real=None):
        from minigpt.models.attention import causal_mask, scaled_dot_product_attention
        T = x.size(1)

        def split(t):
            return t.unflatten(-1, (self.n_head, -1)).permute(0, 2, 1, 3)

        mask = causal_mask(T) if is_real is None else causal_mask(T) & is_real[:, None, None, :]
        y, weights = scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)), mask)
        return self.proj(y.permute(0, 2, 1, 3).flatten(2)), weights


def test_is_exported():
    assert attention_build.__all__ == ["check_multi_head_attention"]
    assert checks.check_multi_head_attention is attention_build.check_multi_head_attention


@pytest.mark.parametrize("right", [Attention, EinsumAttention, PackageBacked],
                         ids=["matmul-masked_fill", "einsum-additive-inf", "package-sdpa"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accepts_right_answers_written_differently(right, seed, capsys):
    checks.check_multi_head_attention(right, seed=seed)
    assert "passed" in capsys.readouterr().out


def test_reference_of_the_mistakes_is_the_package_when_right():
    for B, T, C, H, rows in attention_build._CASES:
        x, layers, is_real = attention_build._inputs(B, T, C, rows, 0)
        y, w = attention_build._slip(layers, x, is_real, H)
        want_y, want_w = attention_build._package(layers, x, is_real, H)
        torch.testing.assert_close((y, w), (want_y, want_w))


class Stub(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        raise NotImplementedError


class StubForward(Attention):
    def forward(self, x, is_real=None):
        raise NotImplementedError


@pytest.mark.parametrize("stub", [Stub, StubForward])
def test_stub_is_not_done_yet(stub):
    with pytest.raises(checks.NotDoneYet, match="replace `raise NotImplementedError`.*Hint:"):
        checks.check_multi_head_attention(stub)


def variant(**slip):
    return lambda n_embd, n_head: Attention(n_embd, n_head, **slip)


class WhereAfterNaN(Attention):
    """Right outputs, NaN gradients: additive -inf, then torch.where replaces the NaN rows."""

    def forward(self, x, is_real=None):
        B, T, C = x.shape
        q, k, v = self.heads(self.q(x)), self.heads(self.k(x)), self.heads(self.v(x))
        may = torch.ones(T, T, dtype=torch.bool).tril() & is_real[:, None, None, :] if is_real is not None else \
            torch.ones(T, T, dtype=torch.bool).tril()
        bias = torch.zeros(may.shape).masked_fill(~may, float("-inf"))
        weights = (q @ k.transpose(-2, -1) / math.sqrt(C // self.n_head) + bias).softmax(-1)
        weights = torch.where(weights.isnan(), torch.zeros(()), weights)
        return self.proj((weights @ v).transpose(1, 2).reshape(B, T, C)), weights


class YOnly(Attention):
    def forward(self, x, is_real=None):
        return super().forward(x, is_real)[0]


class OneProjection(Attention):
    """Keys and values from one fused layer, not the layers the task names."""

    def __init__(self, n_embd, n_head):
        super().__init__(n_embd, n_head)
        del self.k, self.v
        self.kv = nn.Linear(n_embd, 2 * n_embd)


WRONG = {
    "mask after the softmax": (variant(mask_after=True), "before the softmax"),
    "padding mask on queries": (variant(pad_on="queries"), "hides queries \\(rows\\) instead of keys"),
    "split by a bare view": (variant(split="view"), "split with a bare view"),
    "merged by a bare view": (variant(merge="view"), "merged with a bare view"),
    "view after transpose": (variant(merge="transpose-view"), "no longer contiguous"),
    "no scale": (variant(scale="none"), "not divided by sqrt\\(D\\)"),
    "sqrt of the full width": (variant(scale="width"), "divided by sqrt\\(C\\)"),
    "causal mask transposed": (variant(causal="triu"), "causal mask is transposed"),
    "empty rows left NaN": (variant(zero_empty=False), "nan_to_num"),
    "returns y only": (YOnly, "the pair \\(y, weights\\)"),
    "fused kv layer": (OneProjection, "self.k = nn.Linear"),
    "torch.where after a NaN softmax": (WhereAfterNaN, "gradient of self.q is NaN"),
    "NaN weights zeroed in place": (variant(zero_empty="in place"), "in-place change"),
    "scores detached": (variant(detach=True), "no gradient reached self.q"),
}


@pytest.mark.parametrize("name", WRONG)
def test_names_the_mistake(name):
    wrong, mistake = WRONG[name]
    with pytest.raises(AssertionError, match=mistake) as error:
        checks.check_multi_head_attention(wrong)
    assert "Hint:" in str(error.value) or "nn.Linear" in str(error.value)
    assert not isinstance(error.value, checks.NotDoneYet)
